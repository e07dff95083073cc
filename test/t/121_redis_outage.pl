# redis publisher through failures, against a real redis-server that
# persists every write before answering (appendonly yes, appendfsync
# always: without it a restarted redis is empty and "0 lost" would mean
# nothing): the server SIGKILLed mid-stream and started again, then the
# worker SIGKILLed mid-stream.  Nothing lost either time (every message id
# is in the stream afterwards), duplicates counted and reported; while the
# server is down no message fails, attempts are not used up, and another
# route keeps flowing.  Then the server frozen (SIGSTOP) under a pipeline
# that mixes messages its stream takes and messages it refuses (WRONGTYPE):
# the replies that time out take their connection with them, so no late
# reply is taken for another message's.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

use lib 'test/t';
use RedisServer;
use TxoutboxTest qw(txoutbox_node wait_for_workers check_server_log);

my $n = 20000;
my $redis = RedisServer->new(name => 'redis', persistent => 1);
my $port = $redis->{port};
note "redis-server $redis->{version} on port $port";

my $node = txoutbox_node('redis_outage', 'txoutbox.batch_size' => 1000);
$node->safe_psql('postgres', 'CREATE EXTENSION txoutbox');
# rate_limit: 20,000 messages take 5 s, so the kills below land mid-stream
# (unlimited, the whole stream was in redis in about a second, sometimes
# before the test's poll saw the first 1,000 succeed)
$node->safe_psql('postgres',
	qq{SELECT txoutbox.add_route('out.*', 'redis', '{"url": "redis://127.0.0.1:$port", "stream": "{topic}", "rate_limit": 4000}')});
$node->safe_psql('postgres', q{SELECT txoutbox.add_route('other', 'notify', '{"channel": "other"}')});

sub count_status
{
	my ($topic, $status) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM txoutbox.messages WHERE topic = '$topic' AND status = '$status'");
}

sub enqueue
{
	my ($topic) = @_;
	$node->safe_psql('postgres',
		"SELECT count(txoutbox.enqueue('$topic', jsonb_build_object('n', i), message_key => (i % 50)::text)) FROM generate_series(1, $n) i"
	);
}

# Wait until at least $at messages of $topic succeeded; returns how many had.
sub wait_succeeded
{
	my ($topic, $at) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		my $c = count_status($topic, 'succeeded');
		return $c if $c >= $at;
		usleep(10_000);
	}
	die "$topic: $at messages did not succeed in time";
}

# Every message of $topic is in its stream: (lost, duplicates, entries).
sub check_stream
{
	my ($topic) = @_;
	my %seen;
	my @entries = $redis->xrange($topic);
	$seen{ $_->[1]{id} }++ for @entries;
	my @ids = split /\n/, $node->safe_psql('postgres', "SELECT id FROM txoutbox.messages WHERE topic = '$topic'");
	my $lost = grep { !$seen{$_} } @ids;
	my $dups = scalar(@entries) - scalar(keys %seen);
	return ($lost, $dups, scalar @entries, scalar @ids);
}

# ---- the server killed mid-stream, started again ----
enqueue('out.a');
wait_succeeded('out.a', 1000);
$redis->stop('KILL');
my $at_kill = count_status('out.a', 'succeeded');
cmp_ok($at_kill, '<', $n, "redis-server was SIGKILLed mid-stream ($at_kill of $n succeeded)");

# while it is down: nothing fails, another route flows
$node->safe_psql('postgres', q{SELECT count(txoutbox.enqueue('other', jsonb_build_object('n', i))) FROM generate_series(1, 100) i});
ok($node->poll_query_until('postgres', "SELECT count(*) = 100 FROM txoutbox.messages WHERE topic = 'other' AND status = 'succeeded'"),
	'a notify route delivered its messages while redis was down');
usleep(1_500_000);
is(count_status('out.a', 'failed'), '0', 'no redis message failed while the server was down');
like($node->safe_psql('postgres', "SELECT last_error FROM txoutbox.messages WHERE topic = 'out.a' AND last_error IS NOT NULL LIMIT 1"),
	qr/redis:\/\/127\.0\.0\.1:$port/, 'the waiting messages say why: the server');
my $during = $node->safe_psql('postgres',
	"SELECT string_agg(status || ' ' || n, ', ' ORDER BY status) FROM (SELECT status, count(*) n FROM txoutbox.messages WHERE topic = 'out.a' GROUP BY status) s");
note "during the outage: $during";

$redis->start;
ok( $node->poll_query_until('postgres', "SELECT count(*) = $n FROM txoutbox.messages WHERE topic = 'out.a' AND status = 'succeeded'"),
	"all $n messages succeeded after the server came back");
my ($lost, $dups, $entries, $ids) = check_stream('out.a');
is($ids, $n, "the table has the $n messages");
is($lost, 0, 'server restart: 0 lost (every message id is in the stream)');
diag("server SIGKILLed after $at_kill of $n: $entries entries for $n messages, $dups duplicates");
cmp_ok($node->safe_psql('postgres', "SELECT max(attempt_count) FROM txoutbox.messages WHERE topic = 'out.a'"),
	'<=', 2,
	'attempts: those on the wire when the server died counted one more, the others none (nothing was sent)');

# ---- the worker killed mid-stream ----
my ($pid) = wait_for_workers($node, 1);
enqueue('out.b');
my $at_worker_kill = wait_succeeded('out.b', 1000);
my $log_pos = -s $node->logfile;
kill 'KILL', $pid;    # the postmaster restarts everything (restart_after_crash)
cmp_ok($at_worker_kill, '<', $n, "the worker was SIGKILLed mid-stream (about $at_worker_kill of $n succeeded)");
TxoutboxTest::wait_for_crash_restart($node, $log_pos);
my ($new_pid) = wait_for_workers($node, 1);
ok( $node->poll_query_until('postgres', "SELECT count(*) = $n FROM txoutbox.messages WHERE topic = 'out.b' AND status = 'succeeded'"),
	"all $n messages succeeded after the restart");
($lost, $dups, $entries, $ids) = check_stream('out.b');
is($lost, 0, 'worker killed: 0 lost');
diag("worker SIGKILLed after $at_worker_kill of $n: $entries entries for $n messages, $dups duplicates (sent, not yet marked)");
isnt($new_pid, $pid, 'a new worker took over');

# ---- the server frozen with refused XADDs pipelined before good ones ----
# Replies come in order: were the late WRONGTYPE replies of the timed-out
# XADDs matched to the good XADDs sent after them, those would get the
# WRONGTYPE and refused ones would be marked succeeded.
$redis->cli('SET', 'stall-bad', 'a string, not a stream');
$node->safe_psql('postgres',
	qq{SELECT txoutbox.add_route('stall.bad', 'redis', '{"url": "redis://127.0.0.1:$port", "stream": "stall-bad", "timeout_ms": 400, "breaker_failures": 0}')});
$node->safe_psql('postgres',
	qq{SELECT txoutbox.add_route('stall.good', 'redis', '{"url": "redis://127.0.0.1:$port", "stream": "stall-good", "timeout_ms": 5000}')});
$redis->pause;
$node->safe_psql('postgres',
	q{SELECT count(txoutbox.enqueue('stall.bad', jsonb_build_object('n', i), max_attempts => 100)) FROM generate_series(1, 100) i});
ok( $node->poll_query_until(
		'postgres', "SELECT count(*) > 0 FROM txoutbox.messages WHERE topic = 'stall.bad' AND last_error LIKE 'timed out after 400 ms%'"),
	'frozen server: the XADDs time out');
$node->safe_psql('postgres',
	q{SELECT count(txoutbox.enqueue('stall.good', jsonb_build_object('n', i))) FROM generate_series(1, 100) i});
usleep(800_000);    # the good ones are on the wire by now
$redis->resume;
ok( $node->poll_query_until(
		'postgres', "SELECT count(*) = 100 FROM txoutbox.messages WHERE topic = 'stall.good' AND status = 'succeeded'"),
	'thawed: the 100 messages its stream takes succeeded');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM txoutbox.messages WHERE topic = 'stall.good' AND last_error LIKE '%WRONGTYPE%'"),
	'0',
	'none of them was given a WRONGTYPE meant for another XADD');
ok( $node->poll_query_until(
		'postgres', "SELECT count(*) = 100 FROM txoutbox.messages WHERE topic = 'stall.bad' AND last_error LIKE '%WRONGTYPE%'"),
	'the 100 refused ones got their WRONGTYPE');
is($node->safe_psql('postgres', "SELECT count(*) FROM txoutbox.messages WHERE topic = 'stall.bad' AND status = 'succeeded'"),
	'0', 'and none of them was marked succeeded');
my %good;
$good{ $_->[1]{id} }++ for $redis->xrange('stall-good');
is( scalar(grep { !$good{$_} } split /\n/,
		$node->safe_psql('postgres', "SELECT id FROM txoutbox.messages WHERE topic = 'stall.good'")),
	0,
	'every good message is in the stream');
is($redis->cli('TYPE', 'stall-bad'), 'string', 'the refusing key is still a string');

check_server_log($node, allowed_crashes => 1);
$node->stop;
$redis->stop;
done_testing();
