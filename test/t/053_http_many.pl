# http publisher: 2,000 messages, at most txoutbox.http_max_concurrency
# connections open at once, and connections reused (keep-alive).
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
# a little latency per request, so that concurrency shows
write_sink_config($sink->{config}, { '/bulk' => { delay_ms => 10 } });

my $conc = 8;
my $node = PostgreSQL::Test::Cluster->new('http_many');
init_utf8($node);
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'txoutbox'
txoutbox.database = 'postgres'
txoutbox.http_max_concurrency = $conc
txoutbox.batch_size = 500
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION txoutbox');
$node->safe_psql('postgres',
	qq{SELECT txoutbox.add_route('bulk', 'http', '{"url": "$sink->{url}/bulk", "secret": "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM="}')});

# 2,000 messages, committed in four transactions
for my $part (0 .. 3)
{
	$node->safe_psql('postgres',
		qq{SELECT count(txoutbox.enqueue('bulk', jsonb_build_object('n', $part * 500 + i))) FROM generate_series(1, 500) i});
}
ok( $node->poll_query_until(
		'postgres', "SELECT count(*) = 2000 FROM txoutbox.messages WHERE status = 'succeeded'"),
	'all 2,000 messages were delivered');

my @ev = sink_events($sink);
my @req = grep { $_->{event} eq 'request' } @ev;
my %ids = map { (header($_, 'webhook-id') // '') => 1 } @req;
is(scalar(keys %ids), 2000, 'the sink saw 2,000 distinct webhook-ids');
my %n = map { (decode_json($_->{body})->{n}) => 1 } @req;
is(scalar(keys %n), 2000, 'and 2,000 distinct payloads');

my @opens = grep { $_->{event} eq 'open' } @ev;
my ($max_open) = sort { $b <=> $a } map { $_->{open_now} } @opens;
cmp_ok($max_open, '<=', $conc, "never more than http_max_concurrency ($conc) connections open at once");
cmp_ok($max_open, '>', 1, 'requests ran concurrently (more than one connection at once)');
cmp_ok(scalar(@opens), '<=', 2 * $conc, 'connections were reused: at most ' . (2 * $conc) . ' opened for 2,000 requests');
note 'connections opened: ' . scalar(@opens) . ", most open at once: $max_open, requests: " . scalar(@req);

# requests per connection: keep-alive carried many on each
my %per_conn;
$per_conn{ $_->{conn} }++ for @req;
my ($busiest) = sort { $b <=> $a } values %per_conn;
cmp_ok($busiest, '>=', 100, 'a connection carried many requests (keep-alive)');

# nothing left behind in the worker: it is idle and reports no error
is( $node->safe_psql('postgres', "SELECT count(*) FROM txoutbox.messages WHERE status <> 'succeeded'"),
	'0', 'no message left unfinished');

$node->stop;
$sink->{handle}->kill_kill;
done_testing();
