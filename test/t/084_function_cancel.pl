# A query cancel in the worker during a function publisher's call on a
# route with "timeout_ms" (issue 11, item 10).  Only the route's own
# statement timeout is that message's failure; any other cancel (here the
# function's own pg_cancel_backend(), as an operator's would be) ends the
# round like a cancel of any statement: the round rolls back, and the
# message goes out in a later round (its attempt was counted before the
# call, as for any function publisher: user code that ends the round or
# the process cannot be retried forever).  Two cases:
#  - the cancel is still pending when the call returns (the function's last
#    act: no interrupt check runs between it and the return), which the
#    worker used to clear, swallowing it;
#  - the cancel is raised inside the call, which used to count as the
#    message's failure;
# and the route's own timeout, which stays the message's failure.  A
# sequence (not rolled back) counts the calls.
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxoutboxTest;

# log_min_messages = warning: the worker's errors are logged (at log they
# are not: LOG sorts above ERROR there)
my $node = txoutbox_node('function_cancel',
	'log_min_messages' => "'warning'",
	'txoutbox.retry_base_delay' => "'100ms'");
$node->safe_psql('postgres', q{
CREATE EXTENSION txoutbox;
CREATE SEQUENCE public.after_calls;
CREATE SEQUENCE public.inside_calls;
CREATE TABLE public.side_effects (topic text, call bigint);
-- the first call's last act cancels the worker's statement: a RETURN
-- whose expression sends the signal, after which plpgsql checks for no
-- interrupt before the call is over
CREATE FUNCTION public.cancel_after(m txoutbox.messages) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    n bigint := pg_catalog.nextval('public.after_calls');
BEGIN
    INSERT INTO public.side_effects VALUES (m.topic, n);
    IF n OPERATOR(pg_catalog.=) 1 THEN
        RETURN pg_catalog.pg_cancel_backend(pg_catalog.pg_backend_pid());
    END IF;
    RETURN true;
END $$;
-- the first call is cancelled while it runs (the next statement checks)
CREATE FUNCTION public.cancel_inside(m txoutbox.messages) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    n bigint := pg_catalog.nextval('public.inside_calls');
BEGIN
    INSERT INTO public.side_effects VALUES (m.topic, n);
    IF n OPERATOR(pg_catalog.=) 1 THEN
        PERFORM pg_catalog.pg_cancel_backend(pg_catalog.pg_backend_pid());
        PERFORM pg_catalog.pg_sleep(5);
    END IF;
END $$;
-- the first call runs past the route's timeout_ms
CREATE FUNCTION public.too_slow(m txoutbox.messages) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF m.attempt_count OPERATOR(pg_catalog.=) 1 THEN
        PERFORM pg_catalog.pg_sleep(30);
    END IF;
END $$;
SELECT txoutbox.add_route('cancel.after', 'function', '{"function": "public.cancel_after", "timeout_ms": 60000}');
SELECT txoutbox.add_route('cancel.inside', 'function', '{"function": "public.cancel_inside", "timeout_ms": 60000}');
SELECT txoutbox.add_route('slow', 'function', '{"function": "public.too_slow", "timeout_ms": 200}');
});
my ($pid) = wait_for_workers($node, 1);
my $log_start = -s $node->logfile;

# --- a cancel pending when the call returns ---------------------------------
my $id = $node->safe_psql('postgres', q{SELECT (txoutbox.enqueue('cancel.after', '{}')).id});
$node->poll_query_until('postgres', qq{SELECT status = 'succeeded' FROM txoutbox.messages WHERE id = '$id'})
  or die 'cancel.after was not published';
is($node->safe_psql('postgres', q{SELECT last_value FROM public.after_calls}), '2',
	'the function was called twice: the cancel pending after the first call ended that round');
like($node->safe_psql('postgres', qq{SELECT attempt_count || ' ' || last_error FROM txoutbox.messages WHERE id = '$id'}),
	qr/^2 attempt 1 by txoutbox-worker-0 ended without an outcome \(its worker exited or its round failed\)$/,
	'the cancelled round was rolled back: its attempt ended without an outcome, the next one published it');
is($node->safe_psql('postgres', q{SELECT string_agg(call::text, ',') FROM public.side_effects WHERE topic = 'cancel.after'}),
	'2', 'only the second call\'s writes were kept');
ok(wait_for_log_since($node, qr/ERROR:  canceling statement due to user request/, $log_start),
	'the worker logged the cancel');
my $after_cancel = -s $node->logfile;

# --- a cancel raised inside the call ----------------------------------------
$id = $node->safe_psql('postgres', q{SELECT (txoutbox.enqueue('cancel.inside', '{}')).id});
$node->poll_query_until('postgres', qq{SELECT status = 'succeeded' FROM txoutbox.messages WHERE id = '$id'})
  or die 'cancel.inside was not published';
is($node->safe_psql('postgres', q{SELECT last_value FROM public.inside_calls}), '2',
	'the function was called twice');
like($node->safe_psql('postgres', qq{SELECT attempt_count || ' ' || last_error FROM txoutbox.messages WHERE id = '$id'}),
	qr/^2 attempt 1 by txoutbox-worker-0 ended without an outcome \(its worker exited or its round failed\)$/,
	'a cancel inside the call ended the round, it was no failure of the message (its reason is not the cancel)');
ok(wait_for_log_since($node, qr/ERROR:  canceling statement due to user request/, $after_cancel),
	'the worker logged that cancel too');

# --- the route's own timeout is the message's failure -----------------------
$id = $node->safe_psql('postgres', q{SELECT (txoutbox.enqueue('slow', '{}')).id});
$node->poll_query_until('postgres', qq{SELECT status = 'succeeded' FROM txoutbox.messages WHERE id = '$id'})
  or die 'slow was not published';
like($node->safe_psql('postgres', qq{SELECT attempt_count || ' ' || last_error FROM txoutbox.messages WHERE id = '$id'}),
	qr/^2 public\.too_slow\(txoutbox\.messages\) raised: canceling statement due to statement timeout$/,
	'the route timeout failed the first attempt; the second succeeded');

is(join(',', worker_pids($node)), $pid, 'the worker is the same process');
like($node->safe_psql('postgres', q{SELECT state FROM txoutbox.worker_status()}), qr/^(?:idle|dispatching)$/,
	'and not in error backoff');
check_server_log($node, worker_errors => 1);
$node->stop;
done_testing();
