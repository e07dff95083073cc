# ALTER EXTENSION txoutbox UPDATE from 0.1.0 while the worker runs (issue
# 10).  A database still at 0.1.0 is not served by this library (it needs
# 0.2.0's objects): the worker says so once and waits, while the 0.1.0 SQL
# functions keep working.  Messages made at 0.1.0 (pending, delayed, one
# retrying, one under the worker's lease) and messages enqueued by two
# clients during the update are all delivered once the update is done,
# once each, in order per key, with no worker error; the new index holds
# exactly the succeeded messages; and notified_since() sees them.
use strict;
use warnings;

use lib 'test/t';
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxoutboxTest;

my $node = txoutbox_node('upgrade', 'txoutbox.lock_timeout' => "'3s'");
$node->safe_psql('postgres', q{
	CREATE EXTENSION txoutbox VERSION '0.1.0';
	CREATE EXTENSION amcheck;
	CREATE TABLE public.up_log (id uuid NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
	CREATE FUNCTION public.up_publish(m txoutbox.messages) RETURNS void
	LANGUAGE sql AS $$ INSERT INTO public.up_log (id) VALUES (m.id) $$;
	SELECT count(*) FROM (VALUES
		(txoutbox.add_route('up.*', 'notify', '{"channel": "up_ch"}')),
		(txoutbox.add_route('up.ordered', 'notify', '{"channel": "up_ch", "ordered": true}')),
		(txoutbox.add_route('up.fn', 'function', '{"function": "public.up_publish"}'))) r;
	CREATE VIEW public.up_workers AS SELECT * FROM txoutbox.worker_status();
});
my $l = TxoutboxTest::Listener->new($node, 'postgres', 'up_ch');

# --- at 0.1.0: the worker of this library waits for the update ---------------
ok( $node->poll_query_until('postgres',
		q{SELECT state = 'waiting for extension' FROM txoutbox.worker_status() WHERE pid IS NOT NULL}),
	'at 0.1.0 the worker waits');
ok(wait_for_log_since($node, qr/extension txoutbox 0\.1\.0 is installed in database "postgres"; this library needs 0\.2\.0; waiting/, 0),
	'and says why, once');
$node->safe_psql('postgres', q{
	SELECT count(txoutbox.enqueue('up.before', jsonb_build_object('n', i))) FROM generate_series(1, 50) i;
	SELECT count(txoutbox.enqueue('up.fn', jsonb_build_object('n', i))) FROM generate_series(1, 10) i;
});
sleep 1;
is($node->safe_psql('postgres', q{SELECT count(*) FROM txoutbox.messages WHERE status = 'pending'}),
	'60', 'messages enqueued at 0.1.0 wait, untouched');

# Waiting at 0.1.0 when the update runs: delayed messages (10 of one
# ordered key), one retrying, one leased to the worker's name (as if an
# earlier life of it had claimed it; the running worker waits out its lease).
$node->safe_psql('postgres', q{
	SELECT count(txoutbox.enqueue('up.delayed', jsonb_build_object('n', i),
	                              available_at => now() + interval '4 seconds')) FROM generate_series(1, 20) i;
	SELECT count(txoutbox.enqueue('up.ordered', jsonb_build_object('seq', i), message_key => 'k',
	                              available_at => now() + interval '4 seconds')) FROM generate_series(1, 10) i;
});
# (enqueued and claimed in one transaction: the worker never sees them pending)
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT count(txoutbox.enqueue('up.retrying', '{}'));
	SELECT count(*) FROM txoutbox.claim('sql', topic => 'up.retrying', as_of => clock_timestamp());
	SELECT status FROM txoutbox.mark_failed((SELECT id FROM txoutbox.messages WHERE topic = 'up.retrying'),
	                                        'timeout', next_attempt_at => now() + interval '4 seconds');
	SELECT count(txoutbox.enqueue('up.leased', '{}'));
	SELECT count(*) FROM txoutbox.claim('txoutbox-worker-0', topic => 'up.leased', as_of => clock_timestamp(),
	                                    lock_until => clock_timestamp() + interval '4 seconds');
	COMMIT;
});
is( $node->safe_psql('postgres', q{
		SELECT string_agg(status || ':' || n, ',' ORDER BY status) FROM
		  (SELECT status, count(*) AS n FROM txoutbox.messages WHERE status <> 'succeeded' GROUP BY status) s}),
	'pending:90,processing:1,retrying:1', 'at 0.1.0: pending, delayed, retrying and leased messages wait');

# --- the update, while two clients enqueue ----------------------------------
my $script = PostgreSQL::Test::Utils::tempdir . '/enqueue.sql';
open(my $fh, '>', $script) or die $!;
print $fh "SELECT 1 FROM txoutbox.enqueue('up.load', '{}');\n";
close $fh;
my ($out, $err) = ('', '');
my $bench = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '2', '-R', '500', '-T', '3', '-f', $script, '-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \$out, '2>', \$err);
$node->poll_query_until('postgres', q{SELECT count(*) > 100 FROM txoutbox.messages WHERE topic = 'up.load'})
  or die 'the clients did not start';
$node->safe_psql('postgres', 'ALTER EXTENSION txoutbox UPDATE');
is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'txoutbox'}),
	'0.2.0', 'updated to 0.2.0 while the worker and two clients ran');
is($node->safe_psql('postgres', q{SELECT worker, state IS NOT NULL FROM public.up_workers}), '0|t',
	'a view made on worker_status() at 0.1.0 still works (its nine columns)');
is($node->safe_psql('postgres', q{SELECT database FROM txoutbox.worker_status()}), 'postgres',
	'and worker_status() itself shows the database column');
$bench->finish;
is($?, 0, 'the clients enqueued through the update without an error') or diag($err);
my $load = $node->safe_psql('postgres', q{SELECT count(*) FROM txoutbox.messages WHERE topic = 'up.load'});
cmp_ok($load, '>', 100, "the clients enqueued $load messages");
$node->safe_psql('postgres', q{SELECT count(txoutbox.enqueue('up.after', '{}')) FROM generate_series(1, 10)});

# --- every message is delivered once -----------------------------------------
my $total = 60 + 32 + $load + 10;
$node->poll_query_until('postgres', qq{
	SELECT count(*) = $total FROM txoutbox.messages WHERE status = 'succeeded'})
  or diag($node->safe_psql('postgres',
	'SELECT topic, status, count(*), min(available_at) FROM txoutbox.messages GROUP BY 1, 2'));
is($node->safe_psql('postgres', q{SELECT count(*) FROM txoutbox.messages WHERE status <> 'succeeded'}),
	'0', "all $total messages succeeded");
$l->pump_until(sub { $l->notifications >= $total - 10 }, 'every notification');
$l->pump_for(0.5);
my %seen;
$seen{ $_->{id} }++ for $l->envelopes;
is(scalar(keys %seen), $total - 10, 'the listener got every notify message');
is(scalar(grep { $_ > 1 } values %seen), 0, 'none twice');
my @seq = map { $_->{payload}{seq} } grep { $_->{topic} eq 'up.ordered' } $l->envelopes;
is_deeply(\@seq, [ 1 .. 10 ], 'the ordered key made at 0.1.0 went out in order');
is($node->safe_psql('postgres', q{SELECT count(*), count(DISTINCT id) FROM public.up_log}),
	'10|10', 'the function route published its messages once');
is( $node->safe_psql('postgres', q{SELECT attempt_count FROM txoutbox.messages WHERE topic = 'up.leased'}),
	'2', 'the leased message was claimed again after its lease');

# the index 0.2.0 added holds exactly the succeeded messages
is( $node->safe_psql('postgres',
		q{SELECT bt_index_check('txoutbox.messages_published_idx', heapallindexed => true)}),
	'', 'messages_published_idx is consistent with the table (amcheck)');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM txoutbox.notified_since('2000-01-01', topic_pattern => 'up.before', max_messages => 10000)}),
	'50', 'notified_since() lists the notify messages made at 0.1.0');

$l->quit;
check_server_log($node, worker_errors => 1);
$node->stop;
done_testing();
