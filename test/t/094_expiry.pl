# Expiry through the worker.  An http endpoint answers 503 until after a
# message's expiry: the message is retried until then, ends failed
# "expired" with the 503 as its last error, and the endpoint sees no
# request after the expiry.  The same with a route's ttl_ms.  And a
# message whose expiry passes while it waits behind a hanging request of
# its route (http_max_concurrency 1) is failed "expired" and never sent.
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HttpSink;
use TxoutboxTest;

my $sink = start_sink('sink');
write_sink_config($sink->{config}, {
	'/down' => { status => 503, body => 'not yet' },
	'/ttl' => { status => 503, body => 'not yet either' },
	'/hang' => { status => 200, delay_ms => 4000 },
});

my $node = txoutbox_node('expiry', 'txoutbox.retry_base_delay' => "'200ms'",
	'txoutbox.retry_max_delay' => "'400ms'", 'txoutbox.breaker_failures' => '0',
	'txoutbox.http_max_concurrency' => '1');
$node->safe_psql('postgres', qq{
	CREATE EXTENSION txoutbox;
	SELECT txoutbox.add_route('exp.down', 'http', '{"url": "$sink->{url}/down"}');
	SELECT txoutbox.add_route('exp.ttl', 'http', '{"url": "$sink->{url}/ttl", "ttl_ms": 2500}');
	SELECT txoutbox.add_route('exp.hang', 'http', '{"url": "$sink->{url}/hang", "timeout_ms": 6000}');
});
wait_for_workers($node, 1);

# --- retried until its expiry, never sent after it ---------------------------
my ($down, $down_expires) = split /\|/, $node->safe_psql('postgres', q{
	SELECT id, extract(epoch FROM expires_at)
	  FROM txoutbox.enqueue('exp.down', '{}', expires_at => clock_timestamp() + interval '2.5 seconds')});
my ($ttl, $ttl_expires) = split /\|/, $node->safe_psql('postgres', q{
	SELECT id, extract(epoch FROM created_at + interval '2.5 seconds') FROM txoutbox.enqueue('exp.ttl', '{}')});
ok($node->poll_query_until('postgres', qq{SELECT status = 'failed' FROM txoutbox.messages WHERE id = '$down'}),
	'the message with expires_at ended failed');
ok($node->poll_query_until('postgres', qq{SELECT status = 'failed' FROM txoutbox.messages WHERE id = '$ttl'}),
	'the message of the ttl_ms route ended failed');
for my $case ([ 'expires_at', $down, $down_expires, '/down', 'not yet' ], [ 'ttl_ms', $ttl, $ttl_expires, '/ttl', 'not yet either' ])
{
	my ($what, $id, $expires, $path, $body) = @$case;
	my ($attempts, $error, $failed_at) = split /\|/, $node->safe_psql('postgres', qq{
		SELECT attempt_count, last_error, extract(epoch FROM updated_at) FROM txoutbox.messages WHERE id = '$id'});
	is($error, "expired (last error: HTTP 503: $body)", "$what: last_error says expired, and the last 503");
	my @req = sink_requests($sink, $path);
	cmp_ok(scalar @req, '>=', 3, "$what: retried until its expiry (" . scalar(@req) . ' requests)');
	is(scalar @req, $attempts, "$what: one request per attempt counted");
	is(scalar(grep { $_->{t} >= $expires } @req), 0, "$what: no request at or after the expiry");
	cmp_ok($failed_at, '>=', $expires - 0.01, "$what: failed at its expiry, not before");
	cmp_ok($failed_at, '<', $expires + 2, "$what: and soon after it");
}

# --- expired while waiting behind a hanging request: never sent ---------------
# (one transaction: both are claimed in one round, the second waits in the
# worker for the route's one request at a time)
my $waiting = $node->safe_psql('postgres', q{
	BEGIN;
	SELECT count(*) FROM txoutbox.enqueue('exp.hang', '{"n": 1}');
	SELECT id FROM txoutbox.enqueue('exp.hang', '{"n": 2}', expires_at => clock_timestamp() + interval '1 second');
	COMMIT;
});
($waiting) = grep { /-/ } split /\n/, $waiting;
ok(wait_until('the first request to hang', sub { scalar(sink_requests($sink, '/hang')) == 1 }),
	'the first request of the route hangs (4 s)');
ok($node->poll_query_until('postgres', qq{SELECT status = 'failed' FROM txoutbox.messages WHERE id = '$waiting'}),
	'the message waiting behind it expired');
my ($error, $attempts, $failed_at) = split /\|/, $node->safe_psql('postgres',
	qq{SELECT last_error, attempt_count, extract(epoch FROM updated_at) FROM txoutbox.messages WHERE id = '$waiting'});
is($error, 'expired', 'it failed "expired"');
is($attempts, 0, 'its claim\'s attempt was given back (it was not sent)');
ok($node->poll_query_until('postgres', q{
		SELECT status = 'succeeded' FROM txoutbox.messages WHERE topic = 'exp.hang' AND payload ->> 'n' = '1'}),
	'the hanging request finished');
my @hang = sink_requests($sink, '/hang');
is(scalar @hang, 1, 'the expired message was never sent');
my ($done) = grep { $_->{event} eq 'done' && $_->{path} eq '/hang' } sink_events($sink);
cmp_ok($failed_at, '<', $done->{t}, 'it was failed while the other request still ran');

check_server_log($node);
$node->stop;
done_testing();
