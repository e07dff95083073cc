# Fan-out to an http sink and a broker, the broker failing: every message
# of orders.* goes to the sink (/a, the topic's ordinary route) and to a
# redis stream (a fan-out route), both ordered.  redis-server is stopped before the messages commit:
# the sink gets every message once, in key order, while the redis copies
# wait (a broker down counts no attempt); then redis-server starts again
# and the stream gets each message once, in key order, and the sink
# nothing more.  Each destination keeps its own state (destinations()).
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HttpSink;
use RedisServer;
use TxoutboxTest;
use JSON::PP;

my $sink = start_sink('sink');
my $redis = RedisServer->new(name => 'redis');
my $node = txoutbox_node('fanout_broker', 'txoutbox.retry_base_delay' => "'100ms'",
	'txoutbox.retry_max_delay' => "'300ms'",
	# short cool-downs: the broker's route opens its breaker while it is down
	'txoutbox.breaker_cooldown' => "'200ms'", 'txoutbox.breaker_max_cooldown' => "'400ms'");
my $redis_url = "redis://127.0.0.1:$redis->{port}/0";
$node->safe_psql('postgres', qq{
	CREATE EXTENSION txoutbox;
	SELECT txoutbox.add_route('orders.*', 'http', '{"url": "$sink->{url}/a", "ordered": true}');
	SELECT txoutbox.add_route('orders.*', 'redis', '{"url": "$redis_url", "stream": "orders",
	                                                "fanout": true, "ordered": true}');
});
wait_for_workers($node, 1);
$redis->stop;

# 20 messages on 4 keys, in one transaction
$node->safe_psql('postgres', q{
	SELECT count(txoutbox.enqueue('orders.created', jsonb_build_object('n', g), message_key => 'k' || (g % 4)))
	  FROM generate_series(1, 20) g;
});
is($node->safe_psql('postgres', q{SELECT count(*), count(DISTINCT fanout_of) FROM txoutbox.messages}),
	'40|20', '20 messages, 2 destinations each: 40 rows');
ok( $node->poll_query_until('postgres', q{
		SELECT count(*) = 20 FROM txoutbox.messages WHERE route_id IS NULL AND status = 'succeeded'}),
	'the sink copies all succeeded while redis was down');
my $redis_now = $node->safe_psql('postgres', q{
	SELECT string_agg(DISTINCT m.status, ',') || ' max attempts ' || max(m.attempt_count)
	  FROM txoutbox.messages m JOIN txoutbox.routes r ON r.id = m.route_id WHERE r.publisher = 'redis'});
like($redis_now, qr/^(?!.*(?:succeeded|failed)).* max attempts 0$/,
	"the redis copies wait, no attempt counted (nothing could be sent): $redis_now");
my @a = sink_requests($sink, '/a');
is(scalar @a, 20, 'the sink got 20 requests');
my %ids;
$ids{ header($_, 'webhook-id') }++ for @a;
is(scalar(keys %ids), 20, 'the sink got each of its copies once');

sub in_key_order
{
	my $in_order = 1;
	my %last;
	for my $n (@_)
	{
		$in_order = 0 if defined $last{ $n % 4 } && $last{ $n % 4 } > $n;
		$last{ $n % 4 } = $n;
	}
	return $in_order;
}
ok(in_key_order(map { decode_json($_->{body})->{n} } @a), 'the sink got each key in order');

# redis is back: its copies go out once each, in key order
$redis->start;
ok( $node->poll_query_until('postgres', q{SELECT count(*) = 40 FROM txoutbox.messages WHERE status = 'succeeded'}),
	'every copy succeeded once redis was back');
my @entries = $redis->xrange('orders');
is(scalar @entries, 20, 'the stream got 20 entries');
my %entry_ids;
$entry_ids{ $_->[1]{id} }++ for @entries;
is(scalar(keys %entry_ids), 20, 'each redis copy once');
ok(in_key_order(map { decode_json($_->[1]{payload})->{n} } @entries), 'the stream got each key in order');
is(scalar(grep { $ids{$_} } keys %entry_ids), 0, 'each destination has message ids of its own');
is(scalar(sink_requests($sink, '/a')), 20, 'the sink got nothing again');

# destinations() of one message
my $first = $node->safe_psql('postgres', q{SELECT id FROM txoutbox.messages WHERE payload ->> 'n' = '1' AND route_id IS NULL});
is( $node->safe_psql('postgres', qq{
		SELECT string_agg(coalesce(r.publisher, '-') || ':' || d.status, ' ' ORDER BY r.publisher NULLS FIRST)
		  FROM txoutbox.destinations('$first') d LEFT JOIN txoutbox.routes r ON r.id = d.route_id}),
	'-:succeeded redis:succeeded', 'destinations() of message 1: the topic route\'s copy and the subscription\'s');

$redis->stop;
check_server_log($node);
$node->stop;
done_testing();
