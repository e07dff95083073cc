# The function publisher's execution context (issue 11, item 1).  A route's
# function runs as its owner, in a security-restricted operation, with
# search_path pinned, inside a GUC nest level rolled back when it returns:
# nothing it sets outlives the call.  Here an unprivileged role owns a
# schema of shadow objects (functions, aggregates, operators, a domain
# named like the ones the worker's and dispatch()'s statements use; each
# records that it ran and tries to make the role superuser) and owns two
# route functions that put that schema first on search_path (set_config()
# and a plain SET), set default_transaction_read_only, statement_timeout,
# application_name and work_mem for the session, and try SET ROLE.  After
# the worker and then dispatch() (in a superuser's session) published
# through them:
#  - the functions ran as their owner, with search_path = pg_catalog, pg_temp,
#    and SET ROLE was refused;
#  - the worker's own statements saw none of the settings (a trigger on the
#    messages table records what the worker's session has), other routes
#    keep flowing and the worker is not in error backoff;
#  - the dispatch() caller's session shows the settings it had, and its
#    now() is the real one;
#  - no shadow object ever ran, and the role is no superuser.
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use TxoutboxTest;

my $node = txoutbox_node('publisher_context');

# Poll $sql until it returns 't', at most $seconds; true when it did.
sub poll_for
{
	my ($sql, $seconds) = @_;
	for (1 .. 10 * $seconds)
	{
		return 1 if $node->safe_psql('postgres', $sql) eq 't';
		usleep(100_000);
	}
	return 0;
}

$node->safe_psql('postgres', q{
CREATE EXTENSION txoutbox;
CREATE ROLE txo_pc_owner;
CREATE ROLE txo_pc_other;
GRANT txo_pc_other TO txo_pc_owner;         -- SET ROLE would work outside the call
CREATE SCHEMA shadow AUTHORIZATION txo_pc_owner;
GRANT USAGE ON SCHEMA txoutbox TO txo_pc_owner;

-- what the shadow objects record, whoever runs them
CREATE TABLE public.shadow_calls (what text, who text DEFAULT current_user);
GRANT INSERT ON public.shadow_calls TO PUBLIC;
-- what the route functions record: who they ran as, with what search_path
CREATE TABLE public.pub_calls (topic text, who text, path text, role_error text);
GRANT INSERT ON public.pub_calls TO txo_pc_owner;

-- what a session had set each time it changed a message (the worker's
-- marks run this trigger in the worker's own session); every name qualified
CREATE TABLE public.session_seen (pid int, topic text, status text, path text,
    dflt_read_only text, stmt_timeout text, app text, work_mem text, who text);
CREATE FUNCTION public.note_session() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.session_seen VALUES (pg_catalog.pg_backend_pid(), NEW.topic, NEW.status,
        pg_catalog.current_setting('search_path'),
        pg_catalog.current_setting('default_transaction_read_only'),
        pg_catalog.current_setting('statement_timeout'),
        pg_catalog.current_setting('application_name'),
        pg_catalog.current_setting('work_mem'),
        CURRENT_USER);
    RETURN NULL;
END $$;
CREATE TRIGGER note_session AFTER UPDATE ON txoutbox.messages
    FOR EACH ROW EXECUTE FUNCTION public.note_session();

-- a route of another owner, to see that the worker keeps flowing
CREATE FUNCTION public.other_pub(m txoutbox.messages) RETURNS void LANGUAGE plpgsql
    AS $$ BEGIN NULL; END $$;
SELECT txoutbox.add_route('other.*', 'function', '{"function": "public.other_pub"}');
});

# The role's objects.  The shadow objects stand in for what the extension's
# statements use unqualified-looking: each records its call and, when run
# by a superuser, makes the role one.
$node->safe_psql('postgres', q{
SET ROLE txo_pc_owner;
CREATE FUNCTION shadow.note(called pg_catalog.text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.shadow_calls (what) VALUES (called);
    BEGIN
        EXECUTE 'ALTER ROLE txo_pc_owner SUPERUSER';
    EXCEPTION WHEN insufficient_privilege THEN
        NULL;
    END;
    RETURN true;
END $$;
CREATE FUNCTION shadow.jsonb_typeof(pg_catalog.jsonb) RETURNS pg_catalog.text LANGUAGE plpgsql
    AS $$ BEGIN PERFORM shadow.note('jsonb_typeof()'); RETURN pg_catalog.jsonb_typeof($1); END $$;
CREATE FUNCTION shadow.now() RETURNS pg_catalog.timestamptz LANGUAGE plpgsql
    AS $$ BEGIN PERFORM shadow.note('now()'); RETURN '2000-01-01 00:00:00+00'; END $$;
CREATE FUNCTION shadow.format(pg_catalog.text, pg_catalog.text, integer, integer) RETURNS pg_catalog.text
    LANGUAGE plpgsql
    AS $$ BEGIN PERFORM shadow.note('format()'); RETURN pg_catalog.format($1, $2, $3, $4); END $$;
CREATE FUNCTION shadow.agg_step(pg_catalog.text[], pg_catalog.text) RETURNS pg_catalog.text[]
    LANGUAGE plpgsql
    AS $$ BEGIN PERFORM shadow.note('array_agg(text)'); RETURN pg_catalog.array_append($1, $2); END $$;
CREATE AGGREGATE shadow.array_agg(pg_catalog.text) (SFUNC = shadow.agg_step, STYPE = pg_catalog.text[]);
CREATE FUNCTION shadow.or_step(boolean, boolean) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM shadow.note('bool_or()'); RETURN $1 OR $2; END $$;
CREATE AGGREGATE shadow.bool_or(boolean) (SFUNC = shadow.or_step, STYPE = boolean);
CREATE FUNCTION shadow.unnest(uuid[]) RETURNS SETOF uuid LANGUAGE plpgsql
    AS $$ BEGIN PERFORM shadow.note('unnest(uuid[])'); RETURN QUERY SELECT * FROM pg_catalog.unnest($1); END $$;
CREATE FUNCTION shadow.eq_text(pg_catalog.text, pg_catalog.text) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM shadow.note('text = text'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR shadow.= (LEFTARG = pg_catalog.text, RIGHTARG = pg_catalog.text, FUNCTION = shadow.eq_text);
CREATE FUNCTION shadow.eq_uuid(uuid, uuid) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM shadow.note('uuid = uuid'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR shadow.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = shadow.eq_uuid);
CREATE FUNCTION shadow.le_ts(pg_catalog.timestamptz, pg_catalog.timestamptz) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM shadow.note('timestamptz <= timestamptz'); RETURN $1 OPERATOR(pg_catalog.<=) $2; END $$;
CREATE OPERATOR shadow.<= (LEFTARG = pg_catalog.timestamptz, RIGHTARG = pg_catalog.timestamptz,
                           FUNCTION = shadow.le_ts);
CREATE FUNCTION shadow.arrow(pg_catalog.jsonb, pg_catalog.text) RETURNS pg_catalog.jsonb LANGUAGE plpgsql
    AS $$ BEGIN PERFORM shadow.note('jsonb -> text'); RETURN $1 OPERATOR(pg_catalog.->) $2; END $$;
CREATE OPERATOR shadow.-> (LEFTARG = pg_catalog.jsonb, RIGHTARG = pg_catalog.text, FUNCTION = shadow.arrow);
CREATE FUNCTION shadow.plus_int(integer, integer) RETURNS integer LANGUAGE plpgsql
    AS $$ BEGIN PERFORM shadow.note('integer + integer'); RETURN $1 OPERATOR(pg_catalog.+) $2; END $$;
CREATE OPERATOR shadow.+ (LEFTARG = integer, RIGHTARG = integer, FUNCTION = shadow.plus_int);
CREATE FUNCTION shadow.prefix(pg_catalog.text, pg_catalog.text) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM shadow.note('text ^@ text'); RETURN $1 OPERATOR(pg_catalog.^@) $2; END $$;
CREATE OPERATOR shadow.^@ (LEFTARG = pg_catalog.text, RIGHTARG = pg_catalog.text, FUNCTION = shadow.prefix);
-- a type named like one the statements cast to
CREATE DOMAIN shadow.text AS pg_catalog.text CHECK (shadow.note('cast to shadow.text'));

-- the route functions: record, try SET ROLE, then set everything for the
-- session (search_path last: nothing of this function runs after it)
CREATE FUNCTION shadow.publish_a(m txoutbox.messages) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    role_error pg_catalog.text;
BEGIN
    BEGIN
        SET ROLE txo_pc_other;
    EXCEPTION WHEN OTHERS THEN
        role_error := SQLERRM;
    END;
    INSERT INTO public.pub_calls VALUES (m.topic, CURRENT_USER,
        pg_catalog.current_setting('search_path'), role_error);
    PERFORM pg_catalog.set_config('default_transaction_read_only', 'on', false);
    PERFORM pg_catalog.set_config('statement_timeout', '4242ms', false);
    PERFORM pg_catalog.set_config('application_name', 'txo_pc_leaked', false);
    PERFORM pg_catalog.set_config('search_path', 'shadow, pg_catalog', false);
END $$;
CREATE FUNCTION shadow.publish_b(m txoutbox.messages) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.pub_calls VALUES (m.topic, CURRENT_USER,
        pg_catalog.current_setting('search_path'), NULL);
    SET default_transaction_read_only = on;
    SET statement_timeout = '4343ms';
    SET work_mem = '777kB';
    SET search_path = shadow, pg_catalog;
END $$;
RESET ROLE;
SELECT txoutbox.add_route('ctx.a', 'function', '{"function": "shadow.publish_a"}');
SELECT txoutbox.add_route('ctx.b', 'function', '{"function": "shadow.publish_b"}');
});

# sanity: the shadow objects run (and record) when the schema comes first;
# run by the role itself, they cannot make it superuser
is($node->safe_psql('postgres', q{
	SET ROLE txo_pc_owner;
	SET search_path = shadow, pg_catalog;
	SELECT now() IS NOT NULL, 'a'::pg_catalog.text = 'a';
	RESET ROLE;
	SET search_path = pg_catalog;
	SELECT count(*) FROM public.shadow_calls;
	TRUNCATE public.shadow_calls}), "t|t\n2", 'sanity: the shadow now() and = run when shadow comes first');
is($node->safe_psql('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'txo_pc_owner'}), 'f',
	'sanity: run by the role, they do not make it superuser');

my ($pid) = wait_for_workers($node, 1);

# ===========================================================================
# 1. Through the worker
# ===========================================================================
$node->safe_psql('postgres', q{
SELECT txoutbox.enqueue('ctx.a', '{"n": 1}');
SELECT txoutbox.enqueue('ctx.b', '{"n": 2}');
});
ok(poll_for(q{SELECT count(*) = 2 FROM txoutbox.messages WHERE topic LIKE 'ctx.%' AND status = 'succeeded'}, 60),
	'the worker published through both functions');

# later rounds: other routes flow, and the same functions again
$node->safe_psql('postgres', q{
SELECT txoutbox.enqueue('other.' || g, '{}') FROM generate_series(1, 5) g;
SELECT txoutbox.enqueue('ctx.a', '{"n": 3}');
SELECT txoutbox.enqueue('ctx.b', '{"n": 4}');
SELECT txoutbox.enqueue('other.last', '{}');
});
ok(poll_for(q{SELECT count(*) = 10 FROM txoutbox.messages WHERE status = 'succeeded'}, 30),
	'later rounds publish every route: the worker is not stuck')
  or diag($node->safe_psql('postgres',
	'SELECT topic, status, attempt_count, last_error FROM txoutbox.messages ORDER BY id'));
is($node->safe_psql('postgres', q{SELECT count(*) FROM txoutbox.messages WHERE attempt_count <> 1}), '0',
	'each message took one attempt');
my ($state, $werr) = split /\|/, $node->safe_psql('postgres',
	q{SELECT state, coalesce(last_error, '') FROM txoutbox.worker_status()});
isnt($state, 'error backoff', 'the worker is not in error backoff');
is($werr, '', 'the worker reports no error');

is($node->safe_psql('postgres', qq{
	SELECT count(*) FROM public.session_seen WHERE pid = $pid AND status = 'succeeded'}), '10',
	'the worker marked the ten messages (seen by the trigger in its session; function messages are leased first)');
is($node->safe_psql('postgres', qq{
	SELECT string_agg(DISTINCT concat_ws(' | ', path, dflt_read_only, stmt_timeout, app, work_mem), ', ')
	  FROM public.session_seen WHERE pid = $pid}),
	'pg_catalog, pg_temp | off | 0 |  | 4MB',
	"the worker's session kept its own settings after every call (search_path, "
	  . 'default_transaction_read_only, statement_timeout, application_name, work_mem)');
is($node->safe_psql('postgres', q{
	SELECT string_agg(DISTINCT who || ' ' || path, ', ') FROM public.pub_calls}),
	'txo_pc_owner pg_catalog, pg_temp',
	'the functions ran as their owner, with search_path pinned to pg_catalog, pg_temp');
like($node->safe_psql('postgres', q{
	SELECT string_agg(DISTINCT role_error, ', ') FROM public.pub_calls WHERE topic = 'ctx.a'}),
	qr/^cannot set parameter "role" within security-(?:definer function|restricted operation)$/,
	'SET ROLE was refused inside the call');
is($node->safe_psql('postgres', q{SELECT count(*) FROM public.shadow_calls}), '0',
	'no shadow object ran in the worker');
is($node->safe_psql('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'txo_pc_owner'}), 'f',
	'the role is no superuser');
is(join(',', worker_pids($node)), $pid, 'the worker is the same process');

# ===========================================================================
# 2. Through dispatch() in a superuser's session
# ===========================================================================
# The messages are enqueued in the same transaction (invisible to the
# worker), published and marked by dispatch().
my $show = q{
SHOW search_path;
SHOW default_transaction_read_only;
SHOW statement_timeout;
SHOW application_name;
SHOW work_mem;
SELECT now() > '2020-01-01' AS real_now;
SELECT CURRENT_USER = session_user AS same_user;
};
my ($ret, $out, $err) = $node->psql('postgres', qq{
SET application_name = 'txo_pc_caller';
SET statement_timeout = '5min';
BEGIN;
SELECT count(*) FROM (SELECT txoutbox.enqueue('ctx.a', '{"n": 5}') UNION ALL
                      SELECT txoutbox.enqueue('ctx.b', '{"n": 6}')) s;
SELECT claimed, succeeded FROM txoutbox.dispatch(consumer => 'pc-sql');
$show
COMMIT;
$show
});
my $expected_show = join("\n", '"$user", public', 'off', '5min', 'txo_pc_caller', '4MB', 't', 't');
is($ret, 0, 'the dispatch() session ran every statement') or diag($err);
is($out, join("\n", '2', '2|2', $expected_show, $expected_show),
	"dispatch() published through both functions; the caller's settings are unchanged "
	  . 'inside its transaction and after the commit, and its now() is the real one');
is($node->safe_psql('postgres', q{
	SELECT string_agg(who || ' ' || path, ', ' ORDER BY topic) FROM public.pub_calls
	 WHERE topic LIKE 'ctx.%' AND path IS NOT NULL
	   AND (SELECT count(*) FROM public.pub_calls) = 6}),
	'txo_pc_owner pg_catalog, pg_temp, ' x 5 . 'txo_pc_owner pg_catalog, pg_temp',
	'in dispatch() too the functions ran as their owner with the pinned search_path');
is($node->safe_psql('postgres', q{
	SELECT string_agg(DISTINCT concat_ws(' | ', path, dflt_read_only, stmt_timeout, app, work_mem), ', ')
	  FROM public.session_seen WHERE app = 'txo_pc_caller'}),
	'pg_catalog, pg_temp | off | 5min | txo_pc_caller | 4MB',
	"dispatch()'s own marks ran with its pinned search_path and the caller's other settings");
is($node->safe_psql('postgres', q{SELECT count(*) FROM public.shadow_calls}), '0',
	'no shadow object ran, in the worker or in dispatch()');
is($node->safe_psql('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'txo_pc_owner'}), 'f',
	'the role is still no superuser');

check_server_log($node, worker_errors => 1);
$node->stop;
done_testing();
