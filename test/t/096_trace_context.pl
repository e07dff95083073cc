# W3C trace context from producer to consumer: the traceparent / tracestate
# of the enqueuing transaction (SET LOCAL txoutbox.traceparent, or given in
# the message's headers) is stored with the message and received by the
# http sink as the traceparent and tracestate headers (on every attempt),
# and by a notify listener in the envelope's headers.
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HttpSink;
use TxoutboxTest;

my $sink = start_sink('sink');
write_sink_config($sink->{config}, { '/flaky' => [ { status => 503 }, { status => 200 } ] });
my $node = txoutbox_node('trace_context');
$node->safe_psql('postgres', qq{
	CREATE EXTENSION txoutbox;
	SELECT txoutbox.add_route('t.http', 'http', '{"url": "$sink->{url}/hook"}');
	SELECT txoutbox.add_route('t.flaky', 'http', '{"url": "$sink->{url}/flaky"}');
	SELECT txoutbox.add_route('t.notify', 'notify', '{"channel": "trace_ch"}');
});
wait_for_workers($node, 1);
my $l = TxoutboxTest::Listener->new($node, 'postgres', 'trace_ch');

my $tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
my $tp2 = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
$node->safe_psql('postgres', qq{
	BEGIN;
	SET LOCAL txoutbox.traceparent = '$tp';
	SET LOCAL txoutbox.tracestate = 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE';
	SELECT count(txoutbox.enqueue(t, '{}')) FROM unnest(ARRAY['t.http', 't.flaky', 't.notify']) t;
	COMMIT;
	SELECT count(*) FROM txoutbox.enqueue('t.http', '{"own": true}', headers => '{"traceparent": "$tp2"}');
	SELECT count(*) FROM txoutbox.enqueue('t.http', '{"none": true}');
});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 5 FROM txoutbox.messages WHERE status = 'succeeded'}),
	'all delivered');

my @hook = sink_requests($sink, '/hook');
my ($from_setting) = grep { $_->{body} eq '{}' } @hook;
my ($own) = grep { $_->{body} =~ /own/ } @hook;
my ($none) = grep { $_->{body} =~ /none/ } @hook;
is(header($from_setting, 'traceparent'), $tp, 'the sink got the transaction\'s traceparent');
is(header($from_setting, 'tracestate'), 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE', 'and its tracestate');
is(header($own, 'traceparent'), $tp2, 'a traceparent given in the headers is sent');
ok(!defined header($none, 'traceparent'), 'no traceparent when there is none');
my @flaky = sink_requests($sink, '/flaky');
is(scalar @flaky, 2, 'the flaky endpoint was retried');
is_deeply([ map { header($_, 'traceparent') } @flaky ], [ $tp, $tp ], 'the same traceparent on every attempt');
$l->pump_until(sub { $l->notifications >= 1 }, 'the notification');
my ($env) = $l->envelopes('trace_ch');
is($env->{headers}{traceparent}, $tp, 'notify: the envelope\'s headers carry the traceparent');

$l->quit;
check_server_log($node);
$node->stop;
done_testing();
