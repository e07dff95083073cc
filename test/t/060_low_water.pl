# The dispatcher's low-water mark (src/low_water.c): its claims start at a
# time before which nothing it could claim is available.  Every way a
# message can become available behind that mark must still get it
# delivered promptly: an explicit past available_at, a replay, a retry time
# in the past given by an external consumer, a transaction that enqueued
# before the mark moved and commits after, a transaction that started
# before the mark moved and enqueues after, a route added for old messages.
# poll_interval is an hour, so the periodic full rescan (the safety net)
# cannot be what delivers them: without each mechanism the message would
# wait an hour and the test would time out.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test/t';
use TxoutboxTest;
use HttpSink;

# a webhook endpoint that takes 1.5 s to answer
my $sink = start_sink('sink');
write_sink_config($sink->{config}, { '/slow' => { delay_ms => 1500 } });

my $node = txoutbox_node('low_water', 'txoutbox.poll_interval' => "'1h'",
	'txoutbox.http_max_concurrency' => '1');
$node->safe_psql('postgres', q{
	CREATE EXTENSION txoutbox;
	CREATE TABLE delivered (topic text, id uuid);
	CREATE TABLE failing (on_ boolean);
	INSERT INTO failing VALUES (true);
	CREATE FUNCTION deliver(m txoutbox.messages) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		IF m.topic = 'lw.flaky' AND (SELECT on_ FROM public.failing) THEN
			RAISE EXCEPTION 'flaky is failing';
		END IF;
		INSERT INTO public.delivered VALUES (m.topic, m.id);
	END
	$$;
	SELECT txoutbox.add_route('lw.*', 'function', '{"function": "public.deliver"}');
});
wait_for_workers($node, 1);

my $ticks = 0;

# A round runs and finds nothing left: the worker's mark moves to its clock.
sub advance
{
	$ticks++;
	my $id = $node->safe_psql('postgres', qq{SELECT id FROM txoutbox.enqueue('lw.tick', '{"n": $ticks}')});
	$node->poll_query_until('postgres', "SELECT count(*) = 1 FROM delivered WHERE id = '$id'")
	  or die "tick $ticks was not delivered";
	$node->safe_psql('postgres', 'SELECT pg_sleep(0.05)');
}

sub delivered
{
	my ($topic, $what) = @_;
	ok( $node->poll_query_until('postgres', "SELECT count(*) > 0 FROM delivered WHERE topic = '$topic'"),
		$what);
}

advance() for 1 .. 3;
pass('ticks flow');

# an explicit available_at in the past
advance();
$node->safe_psql('postgres', q{SELECT txoutbox.enqueue('lw.past', '{}', available_at => now() - interval '1 hour')});
delivered('lw.past', 'a message enqueued with a past available_at is delivered');

# a replay makes a failed message available from the start of its
# transaction, which began before the mark moved
my $writer = $node->background_psql('postgres');
my $flaky = $node->safe_psql('postgres', q{SELECT id FROM txoutbox.enqueue('lw.flaky', '{}', max_attempts => 1)});
$node->poll_query_until('postgres', "SELECT status = 'failed' FROM txoutbox.messages WHERE id = '$flaky'")
  or die 'flaky did not fail';
$node->safe_psql('postgres', 'UPDATE failing SET on_ = false');
$writer->query_safe('BEGIN; SELECT 1;');
advance();
$writer->query_safe("SELECT count(*) FROM txoutbox.replay('$flaky'); COMMIT;");
delivered('lw.flaky', 'a replayed message is delivered');

# an external consumer's mark_failed with a retry time in the past
my $ext = (split /\n/, $node->safe_psql('postgres', q{
	BEGIN;
	SELECT count(*) FROM txoutbox.enqueue('lw.external', '{}');
	SELECT id FROM txoutbox.claim('external', topic => 'lw.external', as_of => clock_timestamp());
	COMMIT;
}))[-1];
advance();
is($node->safe_psql('postgres', "SELECT status FROM txoutbox.messages WHERE id = '$ext'"),
	'processing', 'the external consumer holds its lease');
$node->safe_psql('postgres',
	"SELECT txoutbox.mark_failed('$ext', 'try again', next_attempt_at => now() - interval '1 hour', consumer => 'external')"
);
delivered('lw.external', 'a message retried with a past time by mark_failed() is delivered');

# a transaction that enqueued before the mark moved, and commits after
$writer->query_safe(q{BEGIN; SELECT txoutbox.enqueue('lw.long', '{}');});
advance() for 1 .. 3;
is($node->safe_psql('postgres', "SELECT count(*) FROM delivered WHERE topic = 'lw.long'"), '0',
	'an uncommitted message is not delivered');
$writer->query_safe('COMMIT');
delivered('lw.long', 'a message committed long after it was enqueued is delivered');

# a transaction that started before the mark moved, and enqueues after
$writer->query_safe(q{BEGIN; SELECT 1;});
advance() for 1 .. 3;
$writer->query_safe(q{SELECT txoutbox.enqueue('lw.late', '{}'); COMMIT;});
delivered('lw.late', 'a message enqueued late in an old transaction is delivered');
$writer->quit;

# a route added for messages that waited without one
$node->safe_psql('postgres', q{SELECT txoutbox.enqueue('other.topic', '{}')});
advance() for 1 .. 2;
$node->safe_psql('postgres',
	q{SELECT txoutbox.add_route('other.topic', 'function', '{"function": "public.deliver"}')});
delivered('other.topic', 'old messages of a newly routed topic are delivered');

# a route with no room this round (a webhook in flight, one at a time): its
# messages enqueued meanwhile are behind the mark others move, and must
# still go out when it has room again
$node->safe_psql('postgres',
	qq{SELECT txoutbox.add_route('hook', 'http', '{"url": "$sink->{url}/slow"}')});
$node->safe_psql('postgres', q{SELECT txoutbox.enqueue('hook', '{"n": 1}')});
ok(wait_until('the first webhook to be in flight', sub { scalar(sink_requests($sink, '/slow')) >= 1 }),
	'the first webhook is in flight');
$node->safe_psql('postgres', q{SELECT txoutbox.enqueue('hook', '{"n": 2}')});
advance() for 1 .. 3;
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM txoutbox.messages WHERE topic = 'hook' AND status = 'succeeded'"),
	'a message that waited for its route to have room is delivered');

# a paused route's messages stay behind the marks the others move, so the
# claim starts at a second mark, of the routes with room
# (low_water_room_mark).  While that set changes (the webhook in flight,
# then with room again), a message that waited behind it must still go
# out, and so must one made available in the past (a rescan), and the
# paused route's once it is resumed.
$node->safe_psql('postgres',
	q{SELECT txoutbox.add_route('held', 'function', '{"function": "public.deliver"}')});
my $held = $node->safe_psql('postgres', q{SELECT id FROM txoutbox.routes WHERE topic_pattern = 'held'});
$node->safe_psql('postgres', "SELECT txoutbox.pause_route($held)");
$node->safe_psql('postgres', q{SELECT txoutbox.enqueue('held', '{}')});
advance() for 1 .. 2;
$node->safe_psql('postgres', q{SELECT txoutbox.enqueue('hook', '{"n": 3}')});
ok(wait_until('the third webhook to be in flight', sub { scalar(sink_requests($sink, '/slow')) >= 3 }),
	'the third webhook is in flight');
$node->safe_psql('postgres', q{SELECT txoutbox.enqueue('hook', '{"n": 4}')});
advance() for 1 .. 3;
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 4 FROM txoutbox.messages WHERE topic = 'hook' AND status = 'succeeded'"),
	'beside a paused route, a message that waited for its route to have room is delivered');
is($node->safe_psql('postgres', "SELECT count(*) FROM delivered WHERE topic = 'held'"), '0',
	'nothing of the paused route is delivered');
advance();
$node->safe_psql('postgres',
	q{SELECT txoutbox.enqueue('lw.past_beside', '{}', available_at => now() - interval '1 hour')});
delivered('lw.past_beside', 'beside a paused route, a message enqueued with a past available_at is delivered');
# the second mark keeps below the writers as the first does
my $beside = $node->background_psql('postgres');
$beside->query_safe(q{BEGIN; SELECT txoutbox.enqueue('lw.long_beside', '{}');});
advance() for 1 .. 3;
$beside->query_safe('COMMIT');
delivered('lw.long_beside', 'beside a paused route, a message committed long after it was enqueued is delivered');
$beside->query_safe(q{BEGIN; SELECT 1;});
advance() for 1 .. 3;
$beside->query_safe(q{SELECT txoutbox.enqueue('lw.late_beside', '{}'); COMMIT;});
delivered('lw.late_beside', 'beside a paused route, a message enqueued late in an old transaction is delivered');
$beside->quit;
# a prefix route that matches the paused route's topic too: its marks and
# claims pass over the paused message (its own route has no room), and the
# resume must still find it
$node->safe_psql('postgres',
	q{SELECT txoutbox.add_route('hel*', 'function', '{"function": "public.deliver"}')});
$node->safe_psql('postgres', q{SELECT txoutbox.enqueue('helium', '{}')});
delivered('helium', 'beside a paused route, a message of a prefix route that matches its topic too is delivered');
advance() for 1 .. 2;
is($node->safe_psql('postgres', "SELECT count(*) FROM delivered WHERE topic = 'held'"), '0',
	'and the paused route\'s message is still not delivered');
$node->safe_psql('postgres', "SELECT txoutbox.resume_route($held)");
delivered('held', 'the paused route\'s message is delivered once it is resumed');

# with a snapshot pinned, batches still flow, each message once
my $pin = $node->background_psql('postgres');
$pin->query_safe(q{BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM txoutbox.messages;});
for my $b (1 .. 3)
{
	$node->safe_psql('postgres',
		"SELECT count(txoutbox.enqueue('lw.batch', jsonb_build_object('b', $b, 'i', i))) FROM generate_series(1, 500) i");
	advance();
}
ok( $node->poll_query_until('postgres', "SELECT count(*) = 1500 FROM delivered WHERE topic = 'lw.batch'"),
	'1,500 messages delivered under a pinned snapshot');
is($node->safe_psql('postgres', "SELECT count(DISTINCT id) FROM delivered WHERE topic = 'lw.batch'"),
	'1500', 'each once');
$pin->query_safe('COMMIT');
$pin->quit;

is($node->safe_psql('postgres',
		"SELECT count(*) FROM txoutbox.messages WHERE status <> 'succeeded'"),
	'0', 'nothing is left behind');
check_server_log($node);
$node->stop;
$sink->{handle}->kill_kill;
done_testing();
