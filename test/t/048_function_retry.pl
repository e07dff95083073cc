# A function publisher that raises: the message is retried with growing
# delays (exponential backoff with jitter between retry_base_delay and
# retry_max_delay), then failed after max_attempts with the raised message
# in last_error.  The worker keeps running throughout.
#
# The history of each message is recorded by a trigger on txoutbox.messages
# (the publisher function's own writes roll back with its raise, but the
# worker's claim and mark updates commit).
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxoutboxTest;

my $node = txoutbox_node('function_retry',
	'txoutbox.poll_interval' => "'30s'",
	'txoutbox.retry_base_delay' => "'100ms'",
	'txoutbox.retry_max_delay' => "'1s'");
$node->safe_psql('postgres', q{
	CREATE EXTENSION txoutbox;
	CREATE TABLE hist (
		seq bigserial PRIMARY KEY, id uuid, status text, attempt_count int,
		available_at timestamptz, updated_at timestamptz, locked_at timestamptz,
		last_error text, at timestamptz DEFAULT clock_timestamp());
	-- fires inside the worker's transactions: names qualified
	CREATE FUNCTION public.record_hist() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.hist (id, status, attempt_count, available_at, updated_at, locked_at, last_error)
		VALUES (NEW.id, NEW.status, NEW.attempt_count, NEW.available_at, NEW.updated_at,
		        NEW.locked_at, NEW.last_error);
		RETURN NULL;
	END $$;
	CREATE TRIGGER record_hist AFTER UPDATE ON txoutbox.messages
		FOR EACH ROW EXECUTE FUNCTION public.record_hist();

	CREATE TABLE side_effects (id uuid, attempt int);
	-- always raises (after a write that the raise rolls back)
	CREATE FUNCTION public.always_fails(m txoutbox.messages) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.side_effects VALUES (m.id, m.attempt_count);
		RAISE EXCEPTION 'boom: downstream unavailable (attempt %)', m.attempt_count
			USING ERRCODE = 'connection_failure';
	END $$;
	-- fails the first two attempts, then succeeds
	CREATE FUNCTION public.third_time_lucky(m txoutbox.messages) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.side_effects VALUES (m.id, m.attempt_count);
		IF m.attempt_count < 3 THEN
			RAISE EXCEPTION 'not yet (attempt %)', m.attempt_count;
		END IF;
	END $$;
	SELECT txoutbox.add_route('fail.*', 'function', '{"function": "public.always_fails"}');
	SELECT txoutbox.add_route('lucky', 'function', '{"function": "public.third_time_lucky"}');
});
my ($pid) = wait_for_workers($node, 1);

my $ids = $node->safe_psql('postgres', q{
	SELECT (txoutbox.enqueue('fail.four', '{}', max_attempts => 4)).id;
	SELECT (txoutbox.enqueue('fail.eight', '{}', max_attempts => 8)).id;
	SELECT (txoutbox.enqueue('lucky', '{}', max_attempts => 5)).id;
});
my ($four, $eight, $lucky) = split /\n/, $ids;

$node->poll_query_until('postgres', qq{
	SELECT count(*) = 3 FROM txoutbox.messages
	 WHERE (id IN ('$four', '$eight') AND status = 'failed')
	    OR (id = '$lucky' AND status = 'succeeded')})
  or die 'messages did not finish: '
  . $node->safe_psql('postgres', 'SELECT topic, status, attempt_count FROM txoutbox.messages');

# --- the message with max_attempts 4 ---------------------------------------
my $final = $node->safe_psql('postgres',
	"SELECT status, attempt_count, published_at IS NULL, locked_by IS NULL FROM txoutbox.messages WHERE id = '$four'");
is($final, 'failed|4|t|t', 'failed after exactly max_attempts (4) attempts, never published, not locked');
like($node->safe_psql('postgres', "SELECT last_error FROM txoutbox.messages WHERE id = '$four'"),
	qr/boom: downstream unavailable \(attempt 4\)/, 'last_error holds the message raised by the last attempt');

# The outcomes in order ('processing' may or may not be written: a claim
# and its outcome can commit together for a transactional publisher).
sub outcomes
{
	my ($id) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT string_agg(status || ':' || attempt_count, ' ' ORDER BY seq)
		  FROM hist WHERE id = '$id' AND status <> 'processing'});
}
is(outcomes($four), 'retrying:1 retrying:2 retrying:3 failed:4',
	'retried three times, then failed');
like($node->safe_psql('postgres',
		"SELECT last_error FROM hist WHERE id = '$four' AND status = 'retrying' ORDER BY seq LIMIT 1"),
	qr/boom: downstream unavailable \(attempt 1\)/, 'each retry records the raised message');

# Delays: the available_at a retry was given, minus when it was marked.
sub delays_ms
{
	my ($id) = @_;
	return split /\n/, $node->safe_psql('postgres', qq{
		SELECT round(extract(epoch FROM available_at - updated_at) * 1000)
		  FROM hist WHERE id = '$id' AND status = 'retrying' ORDER BY seq});
}

# How long after each retry was due its attempt was over (its outcome was
# marked), in ms; negative if it was attempted early.
sub claim_lateness_ms
{
	my ($id) = @_;
	return split /\n/, $node->safe_psql('postgres', qq{
		SELECT round(extract(epoch FROM c.updated_at - r.available_at) * 1000)
		  FROM hist r
		  JOIN hist c ON c.id = r.id AND c.status IN ('retrying', 'failed', 'succeeded')
		             AND c.attempt_count = r.attempt_count + 1
		 WHERE r.id = '$id' AND r.status = 'retrying' ORDER BY r.seq});
}

my @d = delays_ms($four);
diag("retry delays (ms), max_attempts 4: @d");
is(scalar @d, 3, 'three retry delays');
cmp_ok($d[0], '>=', 100, 'the first delay is at least retry_base_delay');
cmp_ok($d[0], '<=', 125, 'the first delay is about retry_base_delay');
cmp_ok($d[1], '>', $d[0], 'the second delay is longer than the first');
cmp_ok($d[2], '>', $d[1], 'the third delay is longer than the second');
cmp_ok($d[1], '>=', 150, 'the second delay is about twice the base (minus jitter)');
cmp_ok($d[2], '>=', 300, 'the third delay is about four times the base (minus jitter)');

my @late = claim_lateness_ms($four);
diag("retry claimed late by (ms): @late");
is(scalar @late, 3, 'three retries were attempted');
is(scalar(grep { $_ < 0 } @late), 0, 'no retry was attempted before it was due');
is(scalar(grep { $_ > 1500 } @late), 0,
	'each retry was attempted soon after it was due (poll_interval is 30 s)');

# --- max_attempts 8: the delays reach retry_max_delay and stay under it ----
@d = delays_ms($eight);
diag("retry delays (ms), max_attempts 8: @d");
is(scalar @d, 7, 'seven retry delays');
is(scalar(grep { $_ > 1000 } @d), 0, 'no delay exceeds retry_max_delay (1 s)');
for my $i (1 .. 3)
{
	cmp_ok($d[$i], '>', $d[ $i - 1 ], "delay " . ($i + 1) . " is longer than delay $i");
}
cmp_ok($d[5], '>=', 700, 'late delays are capped near retry_max_delay (jitter at most 20% off)');
cmp_ok($d[6], '>=', 700, 'the last delay too');
is($node->safe_psql('postgres', "SELECT status, attempt_count FROM txoutbox.messages WHERE id = '$eight'"),
	'failed|8', 'failed after 8 attempts');

# --- a publisher that fails twice, then succeeds ---------------------------
is( $node->safe_psql('postgres',
		"SELECT status, attempt_count, published_at IS NOT NULL FROM txoutbox.messages WHERE id = '$lucky'"),
	'succeeded|3|t', 'succeeded at the third attempt');
is(outcomes($lucky), 'retrying:1 retrying:2 succeeded:3', 'retried twice, then succeeded');
is($node->safe_psql('postgres',
		"SELECT string_agg(attempt::text, ',') FROM side_effects WHERE id = '$lucky'"),
	'3', 'only the successful call\'s writes were kept (raising calls rolled back)');
is($node->safe_psql('postgres', "SELECT count(*) FROM side_effects WHERE id IN ('$four', '$eight')"),
	'0', 'an always-failing publisher left no writes');

# --- the worker kept running, and reports the failures ---------------------
is_deeply([ worker_pids($node) ], [$pid], 'the same worker process ran throughout');
is($node->safe_psql('postgres', 'SELECT failed, state FROM txoutbox.worker_status()'),
	'2|idle', 'worker_status counts the two failed messages and is idle');
like($node->safe_psql('postgres', 'SELECT last_error FROM txoutbox.worker_status()'),
	qr/boom|not yet/, 'worker_status shows the last publisher error');

# a failed message can be replayed and is retried again from attempt 1
$node->safe_psql('postgres', "SELECT txoutbox.replay('$four')");
$node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM hist WHERE id = '$four' AND status = 'failed'")
  or die 'replayed message did not fail again';
is(outcomes($four),
	'retrying:1 retrying:2 retrying:3 failed:4 pending:0 retrying:1 retrying:2 retrying:3 failed:4',
	'a replayed message is attempted again from attempt 1, and fails again');

check_server_log($node, worker_errors => 1);
$node->stop;
done_testing();
