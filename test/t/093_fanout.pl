# Fan-out through the worker: every message of orders.* goes to two http
# sinks (paths /a and /b of the sink, fan-out routes) and a notify route
# (the topic's ordinary route).  /b answers 503 for a while: /a and the
# listener get every message once, in key order, while /b's copies are
# retried; /a and notify get nothing again; then /b recovers and gets
# each message, in key order too.  Each destination's state is its own
# (destinations(), stats).
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HttpSink;
use TxoutboxTest;
use JSON::PP;

my $sink = start_sink('sink');
write_sink_config($sink->{config}, { '/b' => { status => 503, body => 'b is down' } });

my $node = txoutbox_node('fanout', 'txoutbox.retry_base_delay' => "'100ms'",
	'txoutbox.retry_max_delay' => "'300ms'");
$node->safe_psql('postgres', qq{
	CREATE EXTENSION txoutbox;
	SELECT txoutbox.add_route('orders.*', 'notify', '{"channel": "orders_fan"}');
	SELECT txoutbox.add_route('orders.*', 'http', '{"url": "$sink->{url}/a", "fanout": true, "ordered": true}');
	SELECT txoutbox.add_route('orders.*', 'http', '{"url": "$sink->{url}/b", "fanout": true, "ordered": true,
	                                               "max_attempts": 1000}');
});
wait_for_workers($node, 1);
my $l = TxoutboxTest::Listener->new($node, 'postgres', 'orders_fan');

# 20 messages on 4 keys, in one transaction
$node->safe_psql('postgres', q{
	SELECT count(txoutbox.enqueue('orders.created', jsonb_build_object('n', g), message_key => 'k' || (g % 4)))
	  FROM generate_series(1, 20) g;
});
is($node->safe_psql('postgres', q{SELECT count(*), count(DISTINCT fanout_of) FROM txoutbox.messages}),
	'60|20', '20 messages, 3 destinations each: 60 rows');

# /a and notify get everything while /b fails
ok( $node->poll_query_until('postgres', q{SELECT count(*) = 40 FROM txoutbox.messages WHERE status = 'succeeded'}),
	'the /a and notify copies all succeeded while /b failed');
ok(wait_until('/b retried', sub { scalar(sink_requests($sink, '/b')) >= 6 }), '/b was retried meanwhile');
$l->pump_until(sub { $l->notifications >= 20 }, 'the 20 notifications');
my @a = sink_requests($sink, '/a');
is(scalar @a, 20, '/a got 20 requests');
my %a_ids;
$a_ids{ header($_, 'webhook-id') }++ for @a;
is(scalar(keys %a_ids), 20, '/a got each of its copies once');
# per-key order at /a: the n of each key increase
my %last;
my $in_order = 1;
for my $r (@a)
{
	my $n = decode_json($r->{body})->{n};
	my $k = $n % 4;
	$in_order = 0 if defined $last{$k} && $last{$k} > $n;
	$last{$k} = $n;
}
ok($in_order, '/a got each key in order');
my $b_now = $node->safe_psql('postgres', q{
	SELECT string_agg(DISTINCT status, ',') FROM txoutbox.messages m JOIN txoutbox.routes r ON r.id = m.route_id
	 WHERE r.config ->> 'url' LIKE '%/b'});
unlike($b_now, qr/succeeded|failed/, "/b's copies are retrying or waiting behind their keys' heads: $b_now");
my @b_heads = map { decode_json($_->{body})->{n} } sink_requests($sink, '/b');
my %b_n;
$b_n{$_}++ for @b_heads;
is_deeply([ sort { $a <=> $b } keys %b_n ], [ 1, 2, 3, 4 ], "/b only got its keys' heads (ordered per destination)");

# the failing destination holds back no one: nothing more to /a or notify
sleep 1;
is(scalar(sink_requests($sink, '/a')), 20, '/a got nothing again while /b was retried');
$l->pump_for(0.3);
is(scalar($l->notifications), 20, 'notify got nothing again');

# destinations() and stats show each destination
my $first = $node->safe_psql('postgres', q{SELECT id FROM txoutbox.messages WHERE payload ->> 'n' = '1' AND route_id IS NULL});
my $dest = $node->safe_psql('postgres', qq{
	SELECT string_agg(coalesce(r.publisher, '-') || ':' || d.status, ' ' ORDER BY d.id)
	  FROM txoutbox.destinations('$first') d LEFT JOIN txoutbox.routes r ON r.id = d.route_id});
like($dest, qr/^-:succeeded http:succeeded http:(?:retrying|processing)$/, "destinations() of message 1: $dest");
is( $node->safe_psql('postgres', q{
		SELECT string_agg(publisher || '/' || status || '=' || messages, ' ' ORDER BY route_id, status)
		  FROM txoutbox.stats WHERE topic = 'orders.created' AND status = 'succeeded'}),
	'notify/succeeded=20 http/succeeded=20', 'stats: one succeeded row per delivered destination');

# /b recovers: its copies go out, once each, in key order
write_sink_config($sink->{config}, { '/b' => { status => 200 } });
ok($node->poll_query_until('postgres', q{SELECT count(*) = 60 FROM txoutbox.messages WHERE status = 'succeeded'}),
	'every copy succeeded once /b recovered');
my @b_ok = grep { $_->{status} == 200 } sink_requests($sink, '/b');
is(scalar @b_ok, 20, '/b accepted each of its 20 copies once');
%last = ();
$in_order = 1;
for my $r (@b_ok)
{
	my $n = decode_json($r->{body})->{n};
	$in_order = 0 if defined $last{ $n % 4 } && $last{ $n % 4 } > $n;
	$last{ $n % 4 } = $n;
}
ok($in_order, '/b got each key in order');
is(scalar(sink_requests($sink, '/a')), 20, '/a still got each message once');
$l->pump_for(0.3);
is(scalar($l->notifications), 20, 'notify still got each message once');
isnt(header($b_ok[0], 'webhook-id'), header($a[0], 'webhook-id'),
	'each destination has a message id (webhook-id) of its own');

$l->quit;
check_server_log($node);
$node->stop;
done_testing();
