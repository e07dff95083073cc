# http publisher: a hanging endpoint times out while other routes keep
# delivering, and SIGTERM is honoured with requests in flight.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use JSON::PP;
use File::Basename qw(dirname);
use Cwd qw(abs_path);

my $testdir = abs_path(dirname(__FILE__) . '/..');
my $tmp = PostgreSQL::Test::Utils::tempdir;

# the sink: start_sink, sink_events, sink_requests, header, wait_until
use lib 'test/t';
use HttpSink;
use TxoutboxTest qw(init_utf8);

my $sink = start_sink('sink');
write_sink_config($sink->{config},
	{ '/hang' => { delay_ms => 600000 }, '/hang2' => { delay_ms => 600000 } });

my $node = PostgreSQL::Test::Cluster->new('http_hang');
init_utf8($node);
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'txoutbox'
txoutbox.database = 'postgres'
txoutbox.workers = 1
txoutbox.poll_interval = '200ms'
txoutbox.retry_base_delay = '100ms'
txoutbox.retry_max_delay = '200ms'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION txoutbox');
$node->safe_psql(
	'postgres', qq{
SELECT txoutbox.add_route('hang', 'http', '{"url": "$sink->{url}/hang", "timeout_ms": 3000}');
SELECT txoutbox.add_route('fast.*', 'http', '{"url": "$sink->{url}/fast"}');
SELECT txoutbox.add_route('hang2', 'http', '{"url": "$sink->{url}/hang2", "timeout_ms": 120000}');
});

sub aborted_at
{
	my ($conn) = @_;
	my ($ev) = grep { $_->{event} eq 'aborted' && $_->{conn} == $conn } sink_events($sink);
	return $ev ? $ev->{t} : undef;
}

# ---- A: in one round, the fast messages do not wait for the hanging one ----------
# one statement, one transaction: the hanging message and five fast ones
my ($hang_id, $nfast) = split /\|/, $node->safe_psql(
	'postgres', q{
SELECT (SELECT id FROM txoutbox.enqueue('hang', '{"h": 1}', max_attempts => 2)),
       (SELECT count(*) FROM (SELECT txoutbox.enqueue('fast.a', jsonb_build_object('i', i))
                              FROM generate_series(1, 5) i) s)});
is($nfast, 5, 'A: five fast messages enqueued with the hanging one');
ok(wait_until('five fast requests', sub { sink_requests($sink, '/fast') >= 5 }),
	'A: the five fast messages were delivered');
my ($hang1) = sink_requests($sink, '/hang');
ok($hang1, 'A: the hanging request was sent');
my $last_fast = (sort { $a <=> $b } map { $_->{t} } sink_requests($sink, '/fast'))[-1];
my $abort1 = aborted_at($hang1->{conn});
ok(!defined $abort1 || $abort1 > $last_fast,
	'A: the fast requests were all sent while the hanging one was still open');
ok( $node->poll_query_until(
		'postgres', "SELECT attempt_count = 2 AND status = 'processing' FROM txoutbox.messages WHERE id = '$hang_id'"),
	'A: the hanging message timed out and is being tried again');
like(
	$node->safe_psql('postgres', "SELECT last_error FROM txoutbox.messages WHERE id = '$hang_id'"),
	qr/^timed out after \d+ ms waiting for the response \(timeout_ms 3000\)$/,
	'A: last_error says the request timed out waiting for the response');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM txoutbox.messages WHERE topic = 'fast.a' AND status = 'succeeded'"),
	'5', 'A: the fast messages are marked succeeded');

# ---- B: messages enqueued while a request hangs are not held up by it -------------
ok(wait_until('the second hanging request', sub { sink_requests($sink, '/hang') >= 2 }),
	'B: the hanging message is in flight again');
my $hang2 = (sink_requests($sink, '/hang'))[1];
is(header($hang2, 'webhook-id'), $hang_id, 'B: same webhook-id on the retry after a timeout');
$node->safe_psql('postgres', q{SELECT txoutbox.enqueue('fast.b', '{"b": 1}') FROM generate_series(1, 3)});
# the state of the hanging message at the moment the three are all delivered
my $hang_state;
for (1 .. 1200)
{
	my ($done, $state) = split /\|/, $node->safe_psql(
		'postgres', qq{
SELECT (SELECT count(*) FROM txoutbox.messages WHERE topic = 'fast.b' AND status = 'succeeded'),
       (SELECT status || ' ' || attempt_count FROM txoutbox.messages WHERE id = '$hang_id')});
	if ($done == 3)
	{
		$hang_state = $state;
		last;
	}
	select(undef, undef, undef, 0.05);
}
ok(defined $hang_state, 'B: the messages enqueued during the hang were delivered');
ok( $node->poll_query_until(
		'postgres', "SELECT status = 'failed' FROM txoutbox.messages WHERE id = '$hang_id'"),
	'B: the hanging message failed after its two attempts');
# requests stay in flight across rounds, so these three do not wait out the
# hanging request's timeout
is($hang_state // 'none', 'processing 2',
	'B: they were delivered while the hanging request was still waiting out its timeout');

# ---- C: SIGTERM is honoured with a request in flight --------------------------------
my $hang3_id = $node->safe_psql('postgres', q{SELECT id FROM txoutbox.enqueue('hang2', '{"h": 3}')});
ok(wait_until('a request to /hang2', sub { sink_requests($sink, '/hang2') >= 1 }),
	'C: a request with a 120 s timeout is in flight');
my $pid = $node->safe_psql('postgres', 'SELECT pid FROM txoutbox.worker_status() WHERE pid IS NOT NULL');
like($pid, qr/^\d+$/, 'C: the dispatcher is running');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
# far less than the request's 120 s timeout: the worker did not wait for it
my $gone = 0;
for (1 .. 200)
{
	$gone = 1 if $node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid") eq '0';
	last if $gone;
	select(undef, undef, undef, 0.1);
}
ok($gone, 'C: the dispatcher exited on SIGTERM without waiting for the request');
ok(wait_until('the sink to see the client leave', sub { defined aborted_at((sink_requests($sink, '/hang2'))[0]->{conn}) }),
	'C: its connection was closed');
# the restarted dispatcher takes the message back and sends it again
ok(wait_until('a second request to /hang2', sub { sink_requests($sink, '/hang2') >= 2 }),
	'C: the restarted dispatcher sent the message again');
my @h3 = sink_requests($sink, '/hang2');
is(header($h3[1], 'webhook-id'), $hang3_id, 'C: with the same webhook-id');

# ---- D: dispatch() in a session: a statement timeout ends the wait -------------
# (route and message in the caller's transaction: the worker sees neither)
my ($ret, $out, $err) = $node->psql(
	'postgres', qq{
BEGIN;
SELECT count(*) FROM txoutbox.add_route('hang.sql', 'http', '{"url": "$sink->{url}/hang", "timeout_ms": 60000}');
SELECT count(*) FROM txoutbox.enqueue('hang.sql', '{"d": 1}', max_attempts => 1);
SET LOCAL statement_timeout = '1s';
SELECT claimed, succeeded, retried, failed FROM txoutbox.dispatch(topic => 'hang.sql');
ROLLBACK;
BEGIN;
SELECT count(*) FROM txoutbox.enqueue('fast.sql', '{"d": 2}');
SELECT claimed, succeeded, retried, failed FROM txoutbox.dispatch(topic => 'fast.sql');
ROLLBACK;}, on_error_stop => 0);
note "out: $out\nerr: $err";
# a statement timeout cancels dispatch() like any statement (the caller's
# transaction is aborted, the request dropped); the session goes on
like($out . $err, qr/statement timeout/, 'D: the statement timeout interrupted the request');
unlike($out . $err, qr/FATAL|server closed/, 'D: the session survived');
like($out, qr/1\|1\|0\|0$/, 'D: the same session then delivers another message');
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'D: the server is fine');

note join("\n", map { sprintf('%.3f %s conn=%s %s %s', $_->{t}, $_->{event}, $_->{conn}, $_->{path} // '', $_->{body} // '') } sink_events($sink));

# a fast shutdown is not held up by the request in flight either
$node->stop('fast');
pass('C: the server stopped with a request in flight');
$sink->{handle}->kill_kill;
done_testing();
