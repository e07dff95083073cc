# The circuit breaker of a broker route: a redis-server stopped while
# messages wait opens the route's breaker (route_health says so), nothing
# fails and no attempt is used meanwhile, the probes find the server when
# it is started again, the breaker closes and every message goes.
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RedisServer;
use TxoutboxTest;

my $redis = RedisServer->new(name => 'breaker', persistent => 1);
my $port = $redis->{port};
my $node = txoutbox_node('broker_breaker');
$node->safe_psql('postgres', qq{
	CREATE EXTENSION txoutbox;
	SELECT txoutbox.add_route('rb', 'redis', '{"url": "redis://127.0.0.1:$port", "stream": "rb",
		"breaker_failures": 3, "breaker_cooldown_ms": 500, "breaker_max_cooldown_ms": 2000}');
});
wait_for_workers($node, 1);

sub state_of
{
	return $node->safe_psql('postgres', "SELECT state FROM txoutbox.route_health WHERE topic_pattern = 'rb'");
}

# the route works
$node->safe_psql('postgres', q{SELECT count(txoutbox.enqueue('rb', jsonb_build_object('i', i))) FROM generate_series(1, 10) i});
ok($node->poll_query_until('postgres', "SELECT count(*) = 10 FROM txoutbox.messages WHERE status = 'succeeded'"),
	'with the server up the route delivers');
is(state_of(), 'closed', 'and its breaker is closed');

# the broker goes away
$redis->stop;
$node->safe_psql('postgres', q{SELECT count(txoutbox.enqueue('rb', jsonb_build_object('i', i))) FROM generate_series(11, 210) i});
ok( $node->poll_query_until('postgres', "SELECT state IN ('open', 'half-open') FROM txoutbox.route_health WHERE topic_pattern = 'rb'"),
	'with the server down the breaker opens');
like($node->safe_psql('postgres', "SELECT last_error FROM txoutbox.route_health WHERE topic_pattern = 'rb'"),
	qr/127\.0\.0\.1:$port/, 'route_health names the server it could not reach');
sleep 3;
is($node->safe_psql('postgres', "SELECT count(*) FROM txoutbox.messages WHERE status = 'failed'"), '0',
	'no message failed while the server was down');
is($node->safe_psql('postgres', "SELECT max(attempt_count) FROM txoutbox.messages WHERE status <> 'succeeded'"), '0',
	'and none used an attempt (nothing reached a server)');

# the broker is back
$redis->start;
ok($node->poll_query_until('postgres', "SELECT count(*) = 210 FROM txoutbox.messages WHERE status = 'succeeded'"),
	'once the server is back every message is delivered');
is(state_of(), 'closed', 'and the breaker closed again');
is($redis->cli('XLEN', 'rb'), '210', 'the stream has them all');

check_server_log($node);
$node->stop;
done_testing();
