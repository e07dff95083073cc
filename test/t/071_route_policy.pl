# Route delivery policy in the background worker (issue 7): a route's
# "max_attempts" overrides the message's (both ways), "retry_base_delay_ms"
# / "retry_max_delay_ms" replace the backoff settings, a function route's
# "timeout_ms" cancels a call that runs too long (a retryable failure that
# does not disturb the worker), and a route whose function was dropped keeps
# its messages on the normal backoff.  No timing is asserted: delays are read
# from available_at - updated_at, which the worker computes from one clock
# reading.
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxoutboxTest;

my $node = txoutbox_node('route_policy',
	'txoutbox.workers' => 1,
	'txoutbox.retry_base_delay' => "'3s'",
	'txoutbox.retry_max_delay' => "'1h'");
$node->safe_psql('postgres', q{
	CREATE EXTENSION txoutbox;
	CREATE TABLE delivered (topic text, key text, attempt int, consumer text);
	CREATE FUNCTION public.pol_fail(m txoutbox.messages) RETURNS void
	LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'downstream is down'; END $$;
	CREATE FUNCTION public.pol_ok(m txoutbox.messages) RETURNS void
	LANGUAGE sql AS $$
		INSERT INTO public.delivered VALUES (m.topic, m.message_key, m.attempt_count, m.locked_by)
	$$;
	CREATE FUNCTION public.pol_slow(m txoutbox.messages) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM pg_sleep(30);
		INSERT INTO public.delivered VALUES (m.topic, m.message_key, m.attempt_count, m.locked_by);
	END
	$$;
	CREATE FUNCTION public.pol_gone(m txoutbox.messages) RETURNS void
	LANGUAGE sql AS $$ SELECT NULL $$;
	SELECT txoutbox.add_route('pol.two', 'function',
		'{"function": "public.pol_fail", "max_attempts": 2, "retry_base_delay_ms": 1500, "retry_max_delay_ms": 1500}');
	SELECT txoutbox.add_route('pol.three', 'function',
		'{"function": "public.pol_fail", "max_attempts": 3, "retry_base_delay_ms": 50}');
	SELECT txoutbox.add_route('pol.slow', 'function',
		'{"function": "public.pol_slow", "timeout_ms": 300, "max_attempts": 2, "retry_base_delay_ms": 50}');
	SELECT txoutbox.add_route('pol.ok', 'function', '{"function": "public.pol_ok", "timeout_ms": 5000}');
	SELECT txoutbox.add_route('pol.gone', 'function', '{"function": "public.pol_gone"}');
});
my @pids = wait_for_workers($node, 1);

# 1. max_attempts 2 on the route, 10 on the message; the route's 1.5 s backoff
# instead of the 3 s setting.
$node->safe_psql('postgres',
	q{SELECT txoutbox.enqueue('pol.two', '{}', message_key => 'two', max_attempts => 10)});
$node->poll_query_until('postgres',
	q{SELECT status = 'retrying' FROM txoutbox.messages WHERE message_key = 'two'})
  or die 'pol.two did not go to retrying';
my ($attempts, $delay_ok, $due) = split /\|/, $node->safe_psql('postgres', q{
	SELECT attempt_count, available_at - updated_at BETWEEN '1.2 s' AND '1.5 s', available_at
	  FROM txoutbox.messages WHERE message_key = 'two'});
is($attempts, 1, 'pol.two: retrying after attempt 1');
is($delay_ok, 't', "pol.two: retry due after the route's retry_base_delay_ms (1.5 s, 20% jitter at most)");
$node->poll_query_until('postgres',
	q{SELECT status = 'failed' FROM txoutbox.messages WHERE message_key = 'two'})
  or die 'pol.two did not fail';
is( $node->safe_psql('postgres', qq{
		SELECT attempt_count, max_attempts, updated_at >= '$due', last_error
		  FROM txoutbox.messages WHERE message_key = 'two'}),
	'2|10|t|public.pol_fail(txoutbox.messages) raised: downstream is down',
	"pol.two: failed after the route's 2 attempts (the message's 10 notwithstanding), not before its retry was due");

# 2. max_attempts 3 on the route, 1 on the message: three attempts.
$node->safe_psql('postgres',
	q{SELECT txoutbox.enqueue('pol.three', '{}', message_key => 'three', max_attempts => 1)});
$node->poll_query_until('postgres',
	q{SELECT status = 'failed' FROM txoutbox.messages WHERE message_key = 'three'})
  or die 'pol.three did not fail';
is($node->safe_psql('postgres', q{SELECT attempt_count FROM txoutbox.messages WHERE message_key = 'three'}),
	'3', "pol.three: failed after the route's 3 attempts (the message's 1 notwithstanding)");

# 3. timeout_ms: each call of the 30 s function is cancelled after 300 ms, a
# retryable failure; the worker carries on (a message on another route,
# enqueued behind it, is delivered) and is not restarted.
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT txoutbox.enqueue('pol.slow', '{}', message_key => 'slow');
	SELECT txoutbox.enqueue('pol.ok', '{}', message_key => 'ok1');
	COMMIT;
});
$node->poll_query_until('postgres',
	q{SELECT status = 'failed' FROM txoutbox.messages WHERE message_key = 'slow'})
  or die 'pol.slow did not fail';
is( $node->safe_psql('postgres',
		q{SELECT attempt_count, last_error LIKE '%statement timeout%' FROM txoutbox.messages WHERE message_key = 'slow'}),
	'2|t', 'pol.slow: each call was cancelled by the route timeout_ms, failed after 2 attempts')
  or diag($node->safe_psql('postgres', q{SELECT last_error FROM txoutbox.messages WHERE message_key = 'slow'}));
$node->poll_query_until('postgres',
	q{SELECT status = 'succeeded' FROM txoutbox.messages WHERE message_key = 'ok1'})
  or die 'pol.ok message not delivered';
# later rounds run normally: a fast call under a generous timeout_ms succeeds
$node->safe_psql('postgres', q{SELECT txoutbox.enqueue('pol.ok', '{}', message_key => 'ok2')});
$node->poll_query_until('postgres',
	q{SELECT status = 'succeeded' FROM txoutbox.messages WHERE message_key = 'ok2'})
  or die 'second pol.ok message not delivered';
is($node->safe_psql('postgres', q{SELECT string_agg(key || ':' || attempt, ',' ORDER BY key) FROM delivered}),
	'ok1:1,ok2:1', 'the other route delivered at the first attempt; the slow function never completed');
is_deeply([ worker_pids($node) ], \@pids, 'the dispatcher was not restarted by the timeouts');
is($node->safe_psql('postgres', 'SELECT state FROM txoutbox.worker_status()'),
	'idle', 'the dispatcher is idle, not in error backoff');

# 4. A route whose function was dropped: its message waits the backoff
# setting (3 s) between attempts, it is not retried at once.
$node->safe_psql('postgres', q{
	DROP FUNCTION public.pol_gone(txoutbox.messages);
	SELECT txoutbox.enqueue('pol.gone', '{}', message_key => 'gone', max_attempts => 5);
});
$node->poll_query_until('postgres',
	q{SELECT attempt_count >= 1 AND status <> 'processing' FROM txoutbox.messages WHERE message_key = 'gone'})
  or die 'pol.gone was not attempted';
is( $node->safe_psql('postgres', q{
		SELECT status, attempt_count, available_at - updated_at >= '2.4 s', last_error LIKE '%misconfigured%'
		  FROM txoutbox.messages WHERE message_key = 'gone'}),
	'retrying|1|t|t', 'pol.gone: retrying after attempt 1, due after the backoff setting, with the reason');

check_server_log($node);
$node->stop;
done_testing();
