# At-least-once across crashes: a dispatcher SIGKILLed mid-dispatch (the
# postmaster then restarts everything, restart_after_crash = on), and the
# server stopped in immediate mode mid-dispatch and started again.  After
# each, every committed message is published at least once and none is left
# pending, processing or retrying.
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxoutboxTest;

my $node = txoutbox_node('crash',
	'txoutbox.workers' => 2,
	'txoutbox.batch_size' => 20);
$node->safe_psql('postgres', q{
	CREATE EXTENSION txoutbox;
	-- the publisher: a slow function that logs each call (the log commits
	-- only with the round that marks the message succeeded)
	CREATE TABLE pub_log (id uuid NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
	CREATE FUNCTION public.slow_publish(m txoutbox.messages) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM pg_sleep(0.004);
		INSERT INTO public.pub_log (id) VALUES (m.id);
	END
	$$;
	SELECT txoutbox.add_route('crash.*', 'function', '{"function": "public.slow_publish"}');
});
my @pids = wait_for_workers($node, 2);

# Wait until the dispatchers are busy with the batch of topic $topic: some
# of it published, most not.
sub wait_mid_dispatch
{
	my ($topic, $total) = @_;
	$node->poll_query_until('postgres', qq{
		SELECT count(*) >= 100 FROM pub_log JOIN txoutbox.messages m USING (id)
		 WHERE m.topic = '$topic'})
	  or die "dispatch of $topic did not start";
	my $done = $node->safe_psql('postgres',
		"SELECT count(*) FROM txoutbox.messages WHERE topic = '$topic' AND status = 'succeeded'");
	cmp_ok($done, '<', $total, "$topic: interrupted mid-dispatch ($done of $total done)");
	return;
}

# Every committed message of $topic is published at least once and finished.
sub check_all_published
{
	my ($topic, $total, $what) = @_;
	$node->poll_query_until('postgres', qq{
		SELECT count(*) = 0 FROM txoutbox.messages
		 WHERE topic = '$topic' AND status <> 'succeeded'})
	  or diag($node->safe_psql('postgres',
		"SELECT status, locked_by, min(available_at), count(*) FROM txoutbox.messages GROUP BY 1, 2"));
	is( $node->safe_psql('postgres',
			"SELECT status, count(*) FROM txoutbox.messages WHERE topic = '$topic' GROUP BY 1"),
		"succeeded|$total", "$what: all $total messages succeeded, none left stuck");
	is( $node->safe_psql('postgres', qq{
			SELECT count(*) FROM txoutbox.messages m
			 WHERE topic = '$topic' AND NOT EXISTS (SELECT 1 FROM pub_log p WHERE p.id = m.id)}),
		'0', "$what: every committed message was published at least once");
	my $dups = $node->safe_psql('postgres', qq{
		SELECT count(*) FROM (SELECT id FROM pub_log JOIN txoutbox.messages USING (id)
		 WHERE topic = '$topic' GROUP BY id HAVING count(*) > 1) d});
	note("$what: $dups message(s) published more than once");
	return;
}

# --- 1. a dispatcher SIGKILLed mid-dispatch --------------------------------
$node->safe_psql('postgres', q{
	SELECT count(txoutbox.enqueue('crash.kill', jsonb_build_object('n', i)))
	  FROM generate_series(1, 1500) i});
# Five messages held by a claim of "txoutbox-worker-0" with a 10-minute
# lease, as if an earlier life of that slot had claimed them and died: a
# restarted dispatcher must take them back rather than wait out the lease.
$node->safe_psql('postgres', q{
	SELECT count(txoutbox.enqueue('crash.leased', jsonb_build_object('n', i)))
	  FROM generate_series(1, 5) i;
	SELECT count(*) FROM txoutbox.claim('txoutbox-worker-0', 5, topic => 'crash.leased',
	                                    lock_until => now() + interval '10 minutes');
});
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM txoutbox.messages WHERE topic = 'crash.leased' AND status = 'processing'"),
	'5', 'five messages held under a long lease by txoutbox-worker-0');

wait_mid_dispatch('crash.kill', 1500);
my $victim = $node->safe_psql('postgres',
	"SELECT pid FROM txoutbox.worker_status() WHERE worker = 0");
ok($victim =~ /^\d+$/, "dispatcher 0 runs (pid $victim)");
is(kill('KILL', $victim), 1, 'SIGKILL sent to dispatcher 0');

# the postmaster restarts everything; the dispatchers come back
my $log_pos = -s $node->logfile;
ok(wait_for_log_since($node, qr/all server processes terminated; reinitializing/, 0),
	'the postmaster reinitialised after the crash');
my @after = wait_for_workers($node, 2);
ok(!grep({ $_ == $victim } @after), 'new dispatchers run after the crash');

check_all_published('crash.kill', 1500, 'after SIGKILL');
check_all_published('crash.leased', 5, 'after SIGKILL, the leased messages');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM txoutbox.messages
		 WHERE topic = 'crash.leased' AND published_at > created_at + interval '5 minutes'}),
	'0', 'the leased messages were taken back, not left to their 10-minute lease');

# --- 2. the server stopped in immediate mode mid-dispatch ------------------
$node->safe_psql('postgres', q{
	SELECT count(txoutbox.enqueue('crash.immediate', jsonb_build_object('n', i)))
	  FROM generate_series(1, 1500) i});
wait_mid_dispatch('crash.immediate', 1500);
$node->stop('immediate');
$node->start;
wait_for_workers($node, 2);
check_all_published('crash.immediate', 1500, 'after an immediate shutdown');

# --- 3. again, and nobody commits after the restart ------------------------
# (the restarted dispatchers must find the old work without a wake-up)
$node->safe_psql('postgres', q{
	SELECT count(txoutbox.enqueue('crash.twice', jsonb_build_object('n', i)))
	  FROM generate_series(1, 1000) i});
wait_mid_dispatch('crash.twice', 1000);
$node->stop('immediate');
$node->append_conf('postgresql.conf', "txoutbox.poll_interval = '30s'\n");
$node->start;
check_all_published('crash.twice', 1000, 'after a second immediate shutdown');

is( $node->safe_psql('postgres',
		"SELECT count(*) FROM txoutbox.messages WHERE status <> 'succeeded'"),
	'0', 'nothing is left pending, processing or retrying');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM txoutbox.worker_status() WHERE state IN ('idle', 'dispatching')"),
	'2', 'both dispatchers serve the database');

check_server_log($node, allowed_crashes => 1, allowed_worker_exits => 4, worker_errors => 1);
$node->stop;
done_testing();
