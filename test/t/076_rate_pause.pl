# A route's rate limit (a token bucket shared by the dispatchers: 200
# messages a second, measured over 10 s with two dispatchers), Retry-After
# holding the whole route, and pause_route() / resume_route() across a
# restart (a paused route keeps its messages and counts no attempts, and
# they do not hold up a prefix route that matches their topic too).
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use TxoutboxTest;
use HttpSink;

my $sink = start_sink('sink');
write_sink_config($sink->{config},
	{ '/busy' => [ { status => 429, retry_after => '3' }, { status => 200, delay_ms => 300 } ] });

my $node = txoutbox_node('ratepause', 'txoutbox.workers' => 2,
	'txoutbox.http_max_concurrency' => 1, 'txoutbox.retry_max_delay' => "'10s'");
$node->safe_psql('postgres', qq{
	CREATE EXTENSION txoutbox;
	SELECT txoutbox.add_route('rl', 'notify', '{"channel": "rl", "rate_limit": 200}');
	SELECT txoutbox.add_route('busy', 'http', '{"url": "$sink->{url}/busy"}');
	SELECT txoutbox.add_route('pz', 'notify', '{"channel": "pz"}');
});
wait_for_workers($node, 2);

# ---- rate limit: 200 a second, whatever the number of dispatchers --------------
$node->safe_psql('postgres',
	q{SELECT count(txoutbox.enqueue('rl', jsonb_build_object('i', i))) FROM generate_series(1, 3000) i});
$node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM txoutbox.messages WHERE topic = 'rl' AND status = 'succeeded'")
  or die 'nothing published';
$node->poll_query_until('postgres', q{
	SELECT pg_catalog.now() > min(published_at) + interval '11.5 s'
	  FROM txoutbox.messages WHERE topic = 'rl' AND status = 'succeeded'})
  or die 'the measurement did not end';
my ($n, $workers) = split /\|/, $node->safe_psql('postgres', q{
	WITH t AS (SELECT min(published_at) AS t0 FROM txoutbox.messages WHERE topic = 'rl' AND status = 'succeeded')
	SELECT count(*), count(DISTINCT m.locked_by) FROM txoutbox.messages m, t
	 WHERE m.topic = 'rl' AND m.status = 'succeeded'
	   AND m.published_at >= t.t0 + interval '1 s' AND m.published_at < t.t0 + interval '11 s'});
note("rate limit 200/s: $n messages published in the 10 s after the first second");
cmp_ok($n, '>=', 1800, "at least 1,800 in 10 s ($n)");
cmp_ok($n, '<=', 2200, "at most 2,200 in 10 s ($n): the two dispatchers share one bucket");
is($node->safe_psql('postgres', "SELECT count(*) FROM txoutbox.messages WHERE topic = 'rl' AND attempt_count > 1"),
	'0', 'waiting for tokens counted no attempts');
my @published = split /\|/, $node->safe_psql('postgres',
	"SELECT string_agg(published::text, '|' ORDER BY worker) FROM txoutbox.worker_status()");
is(scalar(grep { $_ > 0 } @published), 2, 'both dispatchers published messages of the route');
my ($rate) = $node->safe_psql('postgres',
	"SELECT round(current_rate) FROM txoutbox.route_health WHERE topic_pattern = 'rl'");
cmp_ok($rate, '>', 0, "route_health shows the rate it sends at ($rate/s)");
is($node->safe_psql('postgres', "SELECT rate_limit FROM txoutbox.route_health WHERE topic_pattern = 'rl'"),
	'200', 'and its rate limit');

# ---- Retry-After holds the whole route -------------------------------------------
# The dispatcher that reads the 429 holds the route in shared memory at once
# (route_state_hold); the other one's first request may be on its way, and
# its answer (300 ms later) comes well after the hold, so it sends no second.
$node->safe_psql('postgres',
	q{SELECT count(txoutbox.enqueue('busy', jsonb_build_object('i', i))) FROM generate_series(1, 20) i});
ok(wait_until('the first request to /busy', sub { sink_requests($sink, '/busy') >= 1 }), 'the route sent a request');
my ($first) = sink_requests($sink, '/busy');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 20 FROM txoutbox.messages WHERE topic = 'busy' AND status = 'succeeded'"),
	'after Retry-After every message of the route succeeded');
my @busy = sink_requests($sink, '/busy');
my @soon = grep { $_->{t} > $first->{t} && $_->{t} < $first->{t} + 2.9 } @busy;
cmp_ok(scalar @soon, '<=', 1, 'after the 429 with Retry-After: 3, the whole route waited (at most the other dispatcher\'s request was on its way)');
my @later = grep { $_->{t} >= $first->{t} + 2.9 } @busy;
cmp_ok(scalar @later, '>=', 12, 'and then sent the rest');

# ---- pause and resume, across a restart -------------------------------------------
my $pz = $node->safe_psql('postgres', "SELECT id FROM txoutbox.routes WHERE topic_pattern = 'pz'");
is($node->safe_psql('postgres', "SELECT paused_at IS NOT NULL FROM txoutbox.pause_route($pz)"), 't',
	'pause_route returns the paused route');
is($node->safe_psql('postgres', "SELECT state FROM txoutbox.route_health WHERE route_id = $pz"), 'paused',
	'route_health says paused');
$node->safe_psql('postgres',
	q{SELECT count(txoutbox.enqueue('pz', jsonb_build_object('i', i))) FROM generate_series(1, 10) i});
sleep 2;
is($node->safe_psql('postgres',
		"SELECT count(*) FILTER (WHERE status = 'pending' AND attempt_count = 0) FROM txoutbox.messages WHERE topic = 'pz'"),
	'10', 'a paused route keeps its messages, untouched');
$node->restart;
wait_for_workers($node, 2);
sleep 2;
is($node->safe_psql('postgres', "SELECT state FROM txoutbox.route_health WHERE route_id = $pz"), 'paused',
	'the pause survived the restart');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM txoutbox.messages WHERE topic = 'pz' AND status = 'pending' AND attempt_count = 0"),
	'10', 'and the messages are still untouched');

# ---- a paused route's messages do not stall a prefix route that also matches them --
# p* takes "pa"; "pz" stays pz's.  With batch_size 3 the ten paused
# messages ahead of "pa" would fill every claim if claims counted them.
$node->safe_psql('postgres', q{SELECT count(*) FROM txoutbox.enqueue('pa', '{}')});
$node->safe_psql('postgres', 'ALTER SYSTEM SET txoutbox.batch_size = 3');
$node->reload;
sleep 2;
$node->safe_psql('postgres', q{SELECT txoutbox.add_route('p*', 'notify', '{"channel": "pwide"}')});
ok($node->poll_query_until('postgres', q{SELECT status = 'succeeded' FROM txoutbox.messages WHERE topic = 'pa'}),
	'a message of the prefix route p* went past the ten of the paused route pz');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM txoutbox.messages WHERE topic = 'pz' AND status = 'pending' AND attempt_count = 0"),
	'10', 'which are still untouched');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET txoutbox.batch_size');
$node->reload;
is($node->safe_psql('postgres', "SELECT paused_at IS NULL FROM txoutbox.resume_route($pz)"), 't',
	'resume_route');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 10 FROM txoutbox.messages WHERE topic = 'pz' AND status = 'succeeded' AND attempt_count = 1"),
	'after resume_route its messages were published, once each');
my ($code) = $node->psql('postgres', 'SELECT txoutbox.pause_route(424242)');
isnt($code, 0, 'pause_route of an unknown route is an error');

check_server_log($node);
$node->stop;
done_testing();
