# Signals: SIGHUP (pg_reload_conf) applies new settings to the running
# dispatcher, which keeps its pid and keeps delivering; txoutbox.workers
# changes on reload; SIGTERM (pg_terminate_backend) ends a dispatcher
# promptly, the launcher starts a new one, and delivery continues with
# nothing lost; SIGTERM to the launcher does not leave two dispatchers
# serving one slot.
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use TxoutboxTest;

my $node = txoutbox_node('signals', 'txoutbox.batch_size' => 500);
$node->safe_psql('postgres', q{
	CREATE EXTENSION txoutbox;
	CREATE TABLE pub_log (id uuid NOT NULL, txid bigint NOT NULL, pid int NOT NULL);
	CREATE FUNCTION public.log_publish(m txoutbox.messages) RETURNS void
	LANGUAGE sql AS $$
		INSERT INTO public.pub_log VALUES (m.id, txid_current(), pg_backend_pid())
	$$;
	CREATE FUNCTION public.slow_publish(m txoutbox.messages) RETURNS void
	LANGUAGE sql AS $$
		SELECT pg_sleep(0.005);
		INSERT INTO public.pub_log VALUES (m.id, txid_current(), pg_backend_pid())
	$$;
	SELECT txoutbox.add_route('sig.fast', 'function', '{"function": "public.log_publish"}');
	SELECT txoutbox.add_route('sig.slow', 'function', '{"function": "public.slow_publish"}');
});
my ($pid) = wait_for_workers($node, 1);

# Enqueue $n messages of $topic in one transaction and wait until all of
# them succeeded; returns the tag used in their payloads.
my $batch = 0;
sub deliver
{
	my ($topic, $n, $what) = @_;
	$batch++;
	$node->safe_psql('postgres', qq{
		SELECT count(txoutbox.enqueue('$topic', jsonb_build_object('batch', $batch, 'i', i)))
		  FROM generate_series(1, $n) i});
	ok( $node->poll_query_until('postgres', qq{
			SELECT count(*) = $n FROM txoutbox.messages
			 WHERE payload->>'batch' = '$batch' AND status = 'succeeded'}),
		"$what: $n messages delivered");
	return $batch;
}

# The dispatcher processes, as the server sees them.
sub dispatcher_processes
{
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'txoutbox worker'");
}

deliver('sig.fast', 50, 'before any signal');

# --- SIGHUP: batch_size and poll_interval change, same process -------------
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET txoutbox.batch_size = 7;
	ALTER SYSTEM SET txoutbox.poll_interval = '250ms';
	SELECT pg_reload_conf();
});
$node->poll_query_until('postgres', q{SELECT current_setting('txoutbox.batch_size') = '7'})
  or die 'reload not seen';
sleep 1;    # the dispatcher handles its SIGHUP at once; leave it a moment
my $b = deliver('sig.fast', 50, 'after SIGHUP');
is( $node->safe_psql('postgres', qq{
		SELECT max(n) FROM (SELECT count(*) n FROM pub_log l
		  JOIN txoutbox.messages m USING (id) WHERE m.payload->>'batch' = '$b' GROUP BY txid) t}),
	'7', 'after the reload, rounds claim at most the new batch_size (7) messages');
is_deeply([ worker_pids($node) ], [$pid], 'the dispatcher kept its pid across SIGHUP');

# --- SIGHUP: txoutbox.workers 1 -> 2 -> 1 ----------------------------------
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET txoutbox.workers = 2;
	SELECT pg_reload_conf();
});
my @two = wait_for_workers($node, 2);
is($two[0], $pid, 'raising txoutbox.workers keeps dispatcher 0');
deliver('sig.fast', 200, 'with two dispatchers');

$node->safe_psql('postgres', q{
	ALTER SYSTEM SET txoutbox.workers = 1;
	SELECT pg_reload_conf();
});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM txoutbox.worker_status() WHERE pid IS NOT NULL}),
	'lowering txoutbox.workers stops dispatcher 1');
is_deeply([ worker_pids($node) ], [$pid], 'dispatcher 0 is still the same process');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'txoutbox worker'"),
	'one dispatcher process is left');
deliver('sig.fast', 20, 'back to one dispatcher');

# --- txoutbox.workers 1 -> 0 -> 1, five times: a voluntary stop is not a
# crash, so the dispatcher comes back at once every time (the restart
# backoff for crashes grows 1, 2, 4, 8, 16 s and would show by the fifth)
for my $cycle (1 .. 5)
{
	$node->safe_psql('postgres', q{
		ALTER SYSTEM SET txoutbox.workers = 0;
		SELECT pg_reload_conf();
	});
	$node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'txoutbox worker'")
	  or die "cycle $cycle: the dispatcher did not stop";
	$node->safe_psql('postgres', q{
		ALTER SYSTEM SET txoutbox.workers = 1;
		SELECT pg_reload_conf();
	});
	my $t0 = time();
	wait_for_workers($node, 1);
	my $took = time() - $t0;
	cmp_ok($took, '<=', 5, sprintf('workers 1 -> 0 -> 1, cycle %d: a dispatcher is back within 5 s (took %.1f s)', $cycle, $took));
}
($pid) = wait_for_workers($node, 1);
deliver('sig.fast', 20, 'after the stop and start cycles');

# --- SIGTERM to an idle dispatcher -----------------------------------------
my $log_pos = -s $node->logfile;
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)"), 't',
	'pg_terminate_backend(dispatcher)');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid"),
	'the dispatcher exits promptly on SIGTERM');
my ($pid2) = wait_for_workers($node, 1);
isnt($pid2, $pid, "the launcher started a new dispatcher (pid $pid2)");
deliver('sig.fast', 20, 'after SIGTERM');
my $log = log_since($node, $log_pos);
like($log, qr/background worker "txoutbox worker" \(PID $pid\) exited with exit code 1/,
	'the terminated dispatcher exited normally (exit code 1, not a crash)');
unlike($log, qr/terminated by signal|reinitializing/, 'no crash restart after SIGTERM');

# --- SIGTERM to a dispatcher in the middle of a round ----------------------
$batch++;
$node->safe_psql('postgres', qq{
	SELECT count(txoutbox.enqueue('sig.slow', jsonb_build_object('batch', $batch, 'i', i)))
	  FROM generate_series(1, 300) i});
$node->poll_query_until('postgres', qq{
	SELECT count(*) >= 14 FROM pub_log l JOIN txoutbox.messages m USING (id)
	 WHERE m.payload->>'batch' = '$batch'})
  or die 'slow batch did not start';
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid2)"), 't',
	'pg_terminate_backend(dispatcher) mid-dispatch');
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid2"),
	'it exits promptly mid-dispatch');
ok( $node->poll_query_until('postgres', qq{
		SELECT count(*) = 300 FROM txoutbox.messages
		 WHERE payload->>'batch' = '$batch' AND status = 'succeeded'}),
	'every message of the interrupted batch succeeded afterwards');
is( $node->safe_psql('postgres', qq{
		SELECT count(DISTINCT id) FROM pub_log l JOIN txoutbox.messages m USING (id)
		 WHERE m.payload->>'batch' = '$batch'}),
	'300', 'each was published');
my ($pid3) = wait_for_workers($node, 1);

# --- SIGTERM to the launcher -------------------------------------------------
my $launcher = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'txoutbox launcher'");
ok($launcher =~ /^\d+$/, "the launcher runs (pid $launcher)");
$node->safe_psql('postgres', "SELECT pg_terminate_backend($launcher)");
ok( $node->poll_query_until('postgres', qq{
		SELECT count(*) = 1 FROM pg_stat_activity
		 WHERE backend_type = 'txoutbox launcher' AND pid <> $launcher}),
	'the postmaster restarts the launcher');
sleep 3;    # leave the new launcher time to (wrongly) start a second dispatcher
is(dispatcher_processes(), '1', 'still exactly one dispatcher process after the launcher restarted');
my @after = wait_for_workers($node, 1);
is(scalar @after, 1, 'worker_status shows one dispatcher');
deliver('sig.fast', 20, 'after the launcher restarted');

check_server_log($node, allowed_worker_exits => 8, worker_errors => 1);
$node->stop;
done_testing();
