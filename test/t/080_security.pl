# Security (issue 6), the parts that need a cluster of their own:
#  - install hijack: functions, operators, casts and tables planted in public
#    before CREATE EXTENSION, with the database's search_path putting public
#    first, are never called or touched by the extension or its worker;
#  - a pre-existing txoutbox schema (owned by another role, or not empty)
#    makes CREATE EXTENSION fail with 42501;
#  - a tenant binding set with ALTER ROLE holds at login: a bound role cannot
#    change it through SET, RESET ALL, DISCARD ALL, ALTER ROLE or connection
#    options;
#  - the function publisher runs the function as its owner, not as the
#    worker's superuser;
#  - route secrets (webhook secret, Authorization header, URL password) never
#    show in stats, worker_status(), pg_stat_activity, last_error or the log.
use strict;
use warnings;

use lib 'test/t';
use MIME::Base64 qw(encode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use TxoutboxTest;

my $node = txoutbox_node('security', log_min_messages => 'debug1');

# Queries of the test itself must not trip the planted objects: they run with
# only pg_catalog on the path.
sub q_safe
{
	my ($db, $sql) = @_;
	return $node->safe_psql($db, "SET search_path = pg_catalog;\n$sql");
}

sub poll_safe
{
	my ($db, $sql, $what) = @_;
	for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
	{
		return 1 if q_safe($db, $sql) eq 't';
		usleep(100_000);
	}
	die "timed out waiting for $what";
}

# ===========================================================================
# 1. Install hijack
# ===========================================================================
$node->safe_psql('postgres', q{
CREATE ROLE txo_sec_mallory;
GRANT CREATE ON SCHEMA public TO txo_sec_mallory;
CREATE TABLE public.hijack_log (what text, who text DEFAULT current_user, at timestamptz DEFAULT clock_timestamp());
GRANT INSERT, SELECT ON public.hijack_log TO PUBLIC;
CREATE FUNCTION public.hijacked(what text) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.hijack_log (what) VALUES (what) $$;
GRANT EXECUTE ON FUNCTION public.hijacked(text) TO PUBLIC;
ALTER FUNCTION public.hijacked(text) OWNER TO txo_sec_mallory;
});

# The planted objects, made by mallory (casts need a superuser, they are
# global).  Each returns what the real one would, after logging.
$node->safe_psql('postgres', q{
SET ROLE txo_sec_mallory;
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('now()'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION public.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('clock_timestamp()'); RETURN pg_catalog.clock_timestamp(); END $$;
CREATE FUNCTION public.format(text, text, integer, integer) RETURNS text LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('format()'); RETURN pg_catalog.format($1, $2, $3, $4); END $$;
CREATE FUNCTION public.format(text, regrole) RETURNS text LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('format(text,regrole)'); RETURN pg_catalog.format($1, $2); END $$;
CREATE FUNCTION public.current_setting(text, boolean) RETURNS text LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('current_setting()'); RETURN pg_catalog.current_setting($1, $2); END $$;
CREATE FUNCTION public.jsonb_build_object(text, text, text, name, text, name, text, jsonb, text, jsonb) RETURNS jsonb LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('jsonb_build_object()'); RETURN '{}'; END $$;
CREATE FUNCTION public.to_jsonb(anyelement) RETURNS jsonb LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('to_jsonb()'); RETURN '{}'; END $$;
CREATE FUNCTION public.length(text) RETURNS integer LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('length()'); RETURN 1; END $$;
CREATE FUNCTION public.starts_with(text, text) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('starts_with()'); RETURN true; END $$;
CREATE FUNCTION public."right"(text, integer) RETURNS text LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('right()'); RETURN '*'; END $$;
CREATE FUNCTION public."left"(text, integer) RETURNS text LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('left()'); RETURN ''; END $$;
CREATE FUNCTION public.isfinite(interval) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('isfinite()'); RETURN true; END $$;
CREATE FUNCTION public.array_position(text[], text) RETURNS integer LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('array_position()'); RETURN NULL; END $$;
CREATE FUNCTION public.pg_notify(text, text) RETURNS void LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('pg_notify()'); END $$;
CREATE FUNCTION public.uuid_v7() RETURNS uuid LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('uuid_v7()'); RETURN '00000000-0000-0000-0000-000000000000'; END $$;

-- operators: each logs and answers "true"
CREATE FUNCTION public.hj_eq_text(text, text) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('text = text'); RETURN true; END $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.hj_eq_text);
CREATE FUNCTION public.hj_ne_text(text, text) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('text <> text'); RETURN true; END $$;
CREATE OPERATOR public.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = public.hj_ne_text);
CREATE FUNCTION public.hj_eq_uuid(uuid, uuid) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('uuid = uuid'); RETURN true; END $$;
CREATE OPERATOR public.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = public.hj_eq_uuid);
CREATE FUNCTION public.hj_gt_uuid(uuid, uuid) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('uuid > uuid'); RETURN true; END $$;
CREATE OPERATOR public.> (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = public.hj_gt_uuid);
CREATE FUNCTION public.hj_le_ts(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('timestamptz <= timestamptz'); RETURN true; END $$;
CREATE OPERATOR public.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = public.hj_le_ts);
CREATE FUNCTION public.hj_lt_ts(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('timestamptz < timestamptz'); RETURN true; END $$;
CREATE OPERATOR public.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = public.hj_lt_ts);
CREATE FUNCTION public.hj_minus_ts(timestamptz, interval) RETURNS timestamptz LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('timestamptz - interval'); RETURN pg_catalog.now(); END $$;
CREATE OPERATOR public.- (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = public.hj_minus_ts);
CREATE FUNCTION public.hj_arrow(jsonb, text) RETURNS jsonb LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('jsonb -> text'); RETURN 'true'; END $$;
CREATE OPERATOR public.-> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = public.hj_arrow);
CREATE FUNCTION public.hj_prefix(text, text) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('text ^@ text'); RETURN true; END $$;
CREATE OPERATOR public.^@ (LEFTARG = text, RIGHTARG = text, FUNCTION = public.hj_prefix);
CREATE FUNCTION public.hj_plus_int(integer, integer) RETURNS integer LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('integer + integer'); RETURN 0; END $$;
CREATE OPERATOR public.+ (LEFTARG = integer, RIGHTARG = integer, FUNCTION = public.hj_plus_int);
CREATE FUNCTION public.hj_ge_int(integer, integer) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('integer >= integer'); RETURN true; END $$;
CREATE OPERATOR public.>= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = public.hj_ge_int);

-- tables and views named like ours: writes logged by a trigger, reads of
-- the views logged by the function in their select list
CREATE TABLE public.messages (id uuid, tenant_id text, org_id text, topic text, message_key text,
    payload jsonb, headers jsonb, correlation_id text, status text, attempt_count int,
    max_attempts int, last_error text, available_at timestamptz, locked_at timestamptz,
    locked_by text, published_at timestamptz, created_at timestamptz, updated_at timestamptz);
INSERT INTO public.messages (id, topic, payload, status, attempt_count, max_attempts, available_at)
    VALUES ('11111111-1111-1111-1111-111111111111', 'planted', '{"planted": true}', 'pending', 0, 5, '2000-01-01');
CREATE FUNCTION public.hj_trigger() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked(TG_OP || ' on public.' || TG_TABLE_NAME); RETURN NULL; END $$;
CREATE TRIGGER hj BEFORE INSERT OR UPDATE OR DELETE ON public.messages
    FOR EACH ROW EXECUTE FUNCTION public.hj_trigger();
CREATE TRIGGER hj_truncate BEFORE TRUNCATE ON public.messages
    FOR EACH STATEMENT EXECUTE FUNCTION public.hj_trigger();
CREATE TABLE public.skipped_messages (id uuid, skipped_at timestamptz);
CREATE TRIGGER hj BEFORE INSERT OR UPDATE OR DELETE ON public.skipped_messages
    FOR EACH ROW EXECUTE FUNCTION public.hj_trigger();
CREATE FUNCTION public.hj_read(what text) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked(what); RETURN true; END $$;
CREATE VIEW public.routes AS
    SELECT 1::bigint AS id, '*'::text AS topic_pattern, 'notify'::text AS publisher,
           '{"ordered": true}'::jsonb AS config, public.hj_read('read public.routes') AS enabled,
           pg_catalog.now() AS created_at;
CREATE VIEW public.stats AS SELECT public.hj_read('read public.stats') AS x;
GRANT ALL ON public.messages, public.skipped_messages, public.routes, public.stats TO PUBLIC;
RESET ROLE;

-- casts (global; a superuser plants them, as a careless one might)
CREATE FUNCTION public.hj_text_to_jsonb(text) RETURNS jsonb LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('cast text -> jsonb'); RETURN '{}'; END $$;
CREATE CAST (text AS jsonb) WITH FUNCTION public.hj_text_to_jsonb(text) AS IMPLICIT;
CREATE FUNCTION public.hj_uuid_to_text(uuid) RETURNS text LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('cast uuid -> text'); RETURN 'x'; END $$;
CREATE CAST (uuid AS text) WITH FUNCTION public.hj_uuid_to_text(uuid) AS IMPLICIT;
CREATE FUNCTION public.hj_int_to_text(integer) RETURNS text LANGUAGE plpgsql
    AS $$ BEGIN PERFORM public.hijacked('cast integer -> text'); RETURN 'x'; END $$;
CREATE CAST (integer AS text) WITH FUNCTION public.hj_int_to_text(integer) AS IMPLICIT;

ALTER DATABASE postgres SET search_path = public, pg_catalog;
});

# the plants work: an unqualified lookup in a new session hits them
is($node->safe_psql('postgres', q{SELECT 'a'::text = 'b'::text}), 't',
	'sanity: the planted text = text answers true');
is(q_safe('postgres', 'SELECT count(*) FROM public.hijack_log'), '1',
	'sanity: and logs the call');
q_safe('postgres', 'TRUNCATE public.hijack_log');

# The worker reads the database's search_path when it connects: restart.
$node->restart;
q_safe('postgres', 'CREATE EXTENSION txoutbox');
# (wait_for_workers() would itself use the planted = operator)
poll_safe('postgres', q{SELECT count(*) = 1 FROM txoutbox.worker_status()
	WHERE pid IS NOT NULL AND state IN ('idle', 'dispatching')}, 'the worker');
my @pids = worker_pids($node);
is(q_safe('postgres', 'SELECT count(*) FROM public.hijack_log'), '0',
	'CREATE EXTENSION called nothing planted in public');

my $l = TxoutboxTest::Listener->new($node, 'postgres', 'txo_sec_hj');

# Every function, in sessions whose search_path is public, pg_catalog (the
# database default), as the superuser, as a bound tenant and as grant-set
# roles.
my $calls = q{
SHOW search_path;
SELECT txoutbox.add_route('hj.*', 'notify', '{"channel": "txo_sec_hj"}') IS NOT NULL;
SELECT txoutbox.add_route('hj.ordered.*', 'notify', '{"channel": "txo_sec_hj", "ordered": true}') IS NOT NULL;
SELECT (txoutbox.route_for('hj.x')).publisher;
CREATE TABLE public.hj_src (id int PRIMARY KEY, v text);
CREATE TRIGGER cap AFTER INSERT OR UPDATE OR DELETE ON public.hj_src
    FOR EACH ROW EXECUTE FUNCTION txoutbox.capture('hj.captured', 'id');
INSERT INTO public.hj_src VALUES (1, 'one');
UPDATE public.hj_src SET v = 'uno';
DELETE FROM public.hj_src;
SELECT txoutbox.enqueue('hj.full', '{"a": 1}', message_key => 'k', headers => '{"h": "v"}',
    correlation_id => 'c', tenant_id => 't', org_id => 'o',
    available_at => pg_catalog.now(), max_attempts => 3) IS NOT NULL;
SELECT txoutbox.enqueue('hj.ordered.a', '{"n": 1}', message_key => 'k1') IS NOT NULL;
BEGIN;
SELECT txoutbox.enqueue('hj.manual', '{"n": 1}', max_attempts => 1) IS NOT NULL;
SELECT txoutbox.enqueue('hj.manual', '{"n": 2}') IS NOT NULL;
CREATE TEMP TABLE c AS SELECT * FROM txoutbox.claim('hj-consumer', 10, topic => 'hj.manual');
SELECT pg_catalog.count(*) FROM c;
SELECT (txoutbox.mark_failed(id, 'boom', consumer => 'hj-consumer')).status FROM c WHERE payload OPERATOR(pg_catalog.@>) '{"n": 1}';
SELECT (txoutbox.mark_succeeded(id, consumer => 'hj-consumer')).status FROM c WHERE payload OPERATOR(pg_catalog.@>) '{"n": 2}';
SELECT (txoutbox.skip(id)).status FROM c WHERE payload OPERATOR(pg_catalog.@>) '{"n": 1}';
SELECT (txoutbox.replay(id)).status FROM c WHERE payload OPERATOR(pg_catalog.@>) '{"n": 1}';
SELECT (txoutbox.get(id)).status FROM c WHERE payload OPERATOR(pg_catalog.@>) '{"n": 1}';
COMMIT;
SELECT pg_catalog.count(*) FROM txoutbox.list(topic => 'hj.manual', max_messages => 10);
SELECT pg_catalog.count(*) FROM txoutbox.list(status => 'succeeded', tenant_id => 't', org_id => 'o', after_id => txoutbox.uuid_v7_floor('2000-01-01'));
SELECT pg_catalog.count(*) FROM txoutbox.stats;
SELECT * FROM txoutbox.dispatch(consumer => 'hj-sql', topic => 'hj.manual');
SELECT txoutbox.purge(interval '0', '{succeeded,failed}') OPERATOR(pg_catalog.>=) 0;
SELECT pg_catalog.count(*) FROM txoutbox.worker_status();
SELECT txoutbox.enable_tenant_isolation();
SELECT txoutbox.disable_tenant_isolation();
SELECT txoutbox.add_route('hj.gone', 'notify') IS NOT NULL;
SELECT txoutbox.remove_route((SELECT id FROM txoutbox.routes WHERE topic_pattern OPERATOR(pg_catalog.=) 'hj.gone'));
};
my ($ret, $out, $err) = $node->psql('postgres', $calls, on_error_stop => 1);
is($ret, 0, 'every call succeeded in a session whose search_path puts public first')
  or diag($err);
like($out, qr/^public, pg_catalog$/m, 'those sessions had public first on the search_path');

# as roles of the three grant sets, and as a bound tenant
$node->safe_psql('postgres', q{
CREATE ROLE txo_sec_p; CREATE ROLE txo_sec_c; CREATE ROLE txo_sec_a;
SELECT txoutbox.grant_role('txo_sec_p', 'producer');
SELECT txoutbox.grant_role('txo_sec_c', 'consumer');
SELECT txoutbox.grant_role('txo_sec_a', 'admin');
GRANT INSERT, UPDATE, DELETE ON public.hj_src TO txo_sec_p;
});
($ret, $out, $err) = $node->psql('postgres', q{
SET ROLE txo_sec_p;
SELECT txoutbox.enqueue('hj.roles', '{"by": "producer"}', max_attempts => 2) IS NOT NULL;
INSERT INTO public.hj_src VALUES (2, 'two');
RESET ROLE;
SET txoutbox.tenant_id = 'txo_sec_T';
SET ROLE txo_sec_p;
SELECT txoutbox.enqueue('hjt.tenant', '{"by": "tenant"}') IS NOT NULL;
RESET ROLE;
SET ROLE txo_sec_c;
SELECT pg_catalog.count(*) FROM txoutbox.claim('hj-tenant', 10, topic => 'hjt.tenant');
SELECT pg_catalog.count(*) FROM txoutbox.list(topic => 'hjt.tenant');
RESET ROLE;
RESET txoutbox.tenant_id;
SET ROLE txo_sec_c;
SELECT pg_catalog.count(*) FROM txoutbox.claim('hj-c', 1, topic => 'hj.roles');
RESET ROLE;
SET ROLE txo_sec_a;
SELECT pg_catalog.count(*) FROM txoutbox.stats;
SELECT * FROM txoutbox.dispatch(consumer => 'hj-admin', topic => 'hj.roles', claim_lock_to => pg_catalog.now() OPERATOR(pg_catalog.+) interval '1 hour');
RESET ROLE;
}, on_error_stop => 1);
is($ret, 0, 'grant-set roles and a bound tenant called the functions with public first')
  or diag($err);

# the worker delivers through the notify route (own search_path pinned)
$l->pump_until(sub { (grep { $_->{topic} eq 'hj.captured' } $l->envelopes) >= 4 }, 'captured changes');
$l->pump_until(sub { grep { $_->{topic} eq 'hj.full' } $l->envelopes }, 'hj.full');
$l->pump_until(sub { grep { $_->{topic} eq 'hj.ordered.a' } $l->envelopes }, 'hj.ordered.a');
my ($full) = grep { $_->{topic} eq 'hj.full' } $l->envelopes;
is_deeply([ $full->{payload}, $full->{headers}, $full->{message_key}, $full->{tenant_id} ],
	[ { a => 1 }, { h => 'v' }, 'k', 't' ], 'the worker delivered the message intact');
my @cap = grep { $_->{topic} eq 'hj.captured' } $l->envelopes;
is_deeply([ sort map { $_->{payload}{op} } @cap ], [qw(DELETE INSERT INSERT UPDATE)],
	'capture() built its payloads with the real jsonb_build_object and to_jsonb');
poll_safe('postgres', q{SELECT count(*) = 0 FROM txoutbox.messages
	WHERE topic LIKE 'hj.%' AND status IN ('pending', 'retrying')},
	'worker to finish the hj messages');
# the worker also ran its retention purge and its due-time query
$node->append_conf('postgresql.conf', "txoutbox.retention = '1ms'\n");
$node->reload;
poll_safe('postgres', q{SELECT count(*) = 0 FROM txoutbox.messages WHERE topic = 'hj.full'},
	'retention purge by the worker');
$node->append_conf('postgresql.conf', "txoutbox.retention = '7d'\n");
$node->reload;

is(q_safe('postgres', q{SELECT count(*) FROM txoutbox.messages WHERE tenant_id = 'txo_sec_T' AND status = 'processing'}),
	'1', 'the bound tenant claimed its message');
is(q_safe('postgres', 'SELECT coalesce(string_agg(DISTINCT what, \', \'), \'\') FROM public.hijack_log'),
	'', 'nothing planted in public was ever called (hijack_log is empty)');
is(q_safe('postgres', q{SELECT count(*) || ' ' || string_agg(pg_catalog.format('%s', id) || topic || payload::text || status || available_at::text, '')
	FROM public.messages}),
	"1 11111111-1111-1111-1111-111111111111planted{\"planted\": true}pending2000-01-01 00:00:00+00",
	'the planted public.messages table is untouched');
is(q_safe('postgres', 'SELECT count(*) FROM public.skipped_messages'), '0',
	'the planted public.skipped_messages table is untouched');
ok(!grep({ $_->{payload} && ref $_->{payload} eq 'HASH' && $_->{payload}{planted} } $l->envelopes),
	'the planted message was never published');
is(join(',', worker_pids($node)), join(',', @pids), 'the worker is the same process');
$l->quit;

# ===========================================================================
# 2. A txoutbox schema made beforehand
# ===========================================================================
$node->safe_psql('postgres', q{
CREATE DATABASE txo_sec_pre1;
CREATE DATABASE txo_sec_pre2;
CREATE DATABASE txo_sec_pre3;
});
$node->safe_psql('txo_sec_pre1', q{CREATE SCHEMA txoutbox AUTHORIZATION txo_sec_mallory});
($ret, $out, $err) = $node->psql('txo_sec_pre1', "\\set VERBOSITY verbose\nCREATE EXTENSION txoutbox");
isnt($ret, 0, 'CREATE EXTENSION fails when schema txoutbox is owned by another role');
like($err, qr/ERROR:  42501:/, '... with SQLSTATE 42501');
is($node->safe_psql('txo_sec_pre1', q{SELECT count(*) FROM pg_extension WHERE extname = 'txoutbox'}),
	'0', '... and nothing was installed');

$node->safe_psql('txo_sec_pre2', q{
CREATE SCHEMA txoutbox;
CREATE FUNCTION txoutbox.enqueue(text, jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
});
($ret, $out, $err) = $node->psql('txo_sec_pre2', "\\set VERBOSITY verbose\nCREATE EXTENSION txoutbox");
isnt($ret, 0, 'CREATE EXTENSION fails when schema txoutbox already holds a function');
like($err, qr/ERROR:  42501:/, '... with SQLSTATE 42501');

$node->safe_psql('txo_sec_pre3', q{
CREATE SCHEMA txoutbox;
CREATE TABLE txoutbox.routes (id int);
});
($ret, $out, $err) = $node->psql('txo_sec_pre3', "\\set VERBOSITY verbose\nCREATE EXTENSION txoutbox");
isnt($ret, 0, 'CREATE EXTENSION fails when schema txoutbox already holds a table');
like($err, qr/ERROR:  42501:/, '... with SQLSTATE 42501');
$node->safe_psql('postgres', q{
DROP DATABASE txo_sec_pre1; DROP DATABASE txo_sec_pre2; DROP DATABASE txo_sec_pre3;
});

# ===========================================================================
# 3. Tenant binding at login
# ===========================================================================
$node->safe_psql('postgres', q{
CREATE ROLE txo_sec_bound LOGIN;
ALTER ROLE txo_sec_bound SET txoutbox.tenant_id = 'txo_sec_A';
SELECT txoutbox.grant_role('txo_sec_bound', 'producer');
SELECT txoutbox.grant_role('txo_sec_bound', 'consumer');
SELECT txoutbox.enqueue('hj.bound', '{"t": "B"}', tenant_id => 'txo_sec_B');
});
my $bound = $node->connstr('postgres') . ' user=txo_sec_bound';

sub as_bound
{
	my ($sql, %opts) = @_;
	my ($stdout, $stderr) = ('', '');
	my $rc = IPC::Run::run(
		[ 'psql', '-XAtq', '-d', $opts{connstr} // $bound, '-c', "SET search_path = pg_catalog",
		  map { ('-c', $_) } split /;\s*/, $sql ],
		'>', \$stdout, '2>', \$stderr);
	chomp $stdout;
	return wantarray ? ($rc, $stdout, $stderr) : $stdout;
}

is(scalar as_bound('SHOW txoutbox.tenant_id'), 'txo_sec_A', 'a role bound with ALTER ROLE is bound at login');
is(scalar as_bound(q{SELECT tenant_id FROM txoutbox.enqueue('hj.bound', '{"t": "A"}')}), 'txo_sec_A',
	'its enqueue defaults to its tenant');
is(scalar as_bound(q{SELECT count(*) FROM txoutbox.list(topic => 'hj.bound')}), '1',
	'it lists only its own message');
my ($rc, $o, $e) = as_bound(q{SET txoutbox.tenant_id = 'txo_sec_B'});
like($e, qr/permission denied to set parameter "txoutbox.tenant_id"/, 'SET is refused');
is(scalar as_bound(q{RESET ALL; SHOW txoutbox.tenant_id}), 'txo_sec_A', 'RESET ALL keeps the binding');
is(scalar as_bound(q{DISCARD ALL; SHOW txoutbox.tenant_id}), 'txo_sec_A', 'DISCARD ALL keeps the binding');
($rc, $o, $e) = as_bound(q{ALTER ROLE CURRENT_USER RESET txoutbox.tenant_id});
like($e, qr/permission denied/, 'ALTER ROLE ... RESET txoutbox.tenant_id is refused');
($rc, $o, $e) = as_bound(q{ALTER ROLE CURRENT_USER SET txoutbox.tenant_id = 'txo_sec_B'});
like($e, qr/permission denied/, 'ALTER ROLE ... SET txoutbox.tenant_id is refused');
as_bound(q{ALTER ROLE CURRENT_USER RESET ALL});
is(scalar as_bound('SHOW txoutbox.tenant_id'), 'txo_sec_A', 'ALTER ROLE ... RESET ALL leaves the binding');
($rc, $o, $e) = as_bound('SHOW txoutbox.tenant_id',
	connstr => "$bound options='-c txoutbox.tenant_id=txo_sec_B'");
like($e, qr/permission denied to set parameter "txoutbox.tenant_id"/,
	'a connection option cannot set another tenant');
isnt($o, 'txo_sec_B', '... and no session runs bound to it');
{
	local $ENV{PGOPTIONS} = '-c txoutbox.tenant_id=';
	($rc, $o, $e) = as_bound('SHOW txoutbox.tenant_id');
	ok($o eq 'txo_sec_A' || ($o eq '' && $e =~ /permission denied to set parameter/),
		'PGOPTIONS cannot unbind the session') or diag("out: $o err: $e");
}
is(q_safe('postgres', q{SELECT string_agg(coalesce(tenant_id, '-'), ',' ORDER BY tenant_id) FROM txoutbox.messages WHERE topic = 'hj.bound'}),
	'txo_sec_A,txo_sec_B', 'tenant B message untouched, no unbound message made');

# ===========================================================================
# 4. The function publisher runs the function as its owner
# ===========================================================================
$node->safe_psql('postgres', q{
SET search_path = pg_catalog;
CREATE ROLE txo_sec_fnowner;
CREATE TABLE public.fn_calls (who text, sess text, path text, topic text);
GRANT INSERT ON public.fn_calls TO txo_sec_fnowner;
GRANT USAGE ON SCHEMA txoutbox TO txo_sec_fnowner;
CREATE FUNCTION public.txo_sec_pub(m txoutbox.messages) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.fn_calls VALUES (current_user, session_user,
        pg_catalog.current_setting('search_path'), m.topic);
    IF m.topic OPERATOR(pg_catalog.=) 'fn.escalate' THEN
        ALTER ROLE txo_sec_fnowner SUPERUSER;
    END IF;
END $$;
ALTER FUNCTION public.txo_sec_pub(txoutbox.messages) OWNER TO txo_sec_fnowner;
SELECT txoutbox.add_route('fn.*', 'function', '{"function": "public.txo_sec_pub"}');
SELECT txoutbox.enqueue('fn.ok', '{}');
SELECT txoutbox.enqueue('fn.escalate', '{}', max_attempts => 1);
});
poll_safe('postgres', q{SELECT count(*) = 2 FROM txoutbox.messages
	WHERE topic LIKE 'fn.%' AND status IN ('succeeded', 'failed')}, 'function route');
is(q_safe('postgres', q{SELECT string_agg(who || ' ' || path, ';') FROM public.fn_calls}),
	'txo_sec_fnowner pg_catalog, pg_temp',
	'the worker called the function as its owner with search_path pinned to pg_catalog, pg_temp');
is(q_safe('postgres', q{SELECT status FROM txoutbox.messages WHERE topic = 'fn.escalate'}),
	'failed', 'the function could not use the worker\'s superuser rights');
like(q_safe('postgres', q{SELECT last_error FROM txoutbox.messages WHERE topic = 'fn.escalate'}),
	qr/permission denied|must be superuser/, '... its error says it lacks the privilege');
is(q_safe('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'txo_sec_fnowner'}), 'f',
	'and the owner is no superuser');

# An admin (not a superuser) must not run code as a function's owner with a
# search_path of its choosing: dispatch() in its session calls a publisher
# function owned by the superuser that uses an unqualified name.
$node->safe_psql('postgres', q{
SET search_path = pg_catalog;
CREATE ROLE txo_sec_esc LOGIN;
SELECT txoutbox.grant_role('txo_sec_esc', 'admin');
CREATE SCHEMA evil AUTHORIZATION txo_sec_esc;
CREATE FUNCTION public.txo_sec_su_pub(m txoutbox.messages) RETURNS void LANGUAGE plpgsql
    AS $$ BEGIN PERFORM lower(m.topic); END $$;
SELECT txoutbox.add_route('esc.*', 'function', '{"function": "public.txo_sec_su_pub"}');
});
{
	local $ENV{PGOPTIONS} = '-c search_path=evil,pg_catalog';
	my ($r, $so, $se) = $node->psql('postgres', q{
CREATE FUNCTION evil.lower(text) RETURNS text LANGUAGE plpgsql
    AS $$ BEGIN EXECUTE 'ALTER ROLE txo_sec_esc SUPERUSER'; RETURN $1; END $$;
BEGIN;
SELECT (txoutbox.enqueue('esc.x', '{}')).status;
SELECT * FROM txoutbox.dispatch(consumer => 'esc', topic => 'esc.x');
COMMIT;
}, connstr => $node->connstr('postgres') . ' user=txo_sec_esc', on_error_stop => 0);
}
is(q_safe('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'txo_sec_esc'}), 'f',
	'an admin cannot become superuser through dispatch() and a superuser-owned publisher function');
q_safe('postgres', q{ALTER ROLE txo_sec_esc NOSUPERUSER; DELETE FROM txoutbox.routes WHERE topic_pattern = 'esc.*'});

# ===========================================================================
# 5. Route secrets stay secret
# ===========================================================================
my $key = 'TXO-RAW-KEY-0123456789';
my $secret = 'whsec_' . encode_base64($key, '');
my $token = 's3cr3t-TXO-TOKEN-42';
my $urlpass = 'urlp4ss-TXO-99';
my $port = PostgreSQL::Test::Cluster::get_free_port();    # nothing listens there
my @secrets = ($secret, substr($secret, 6), $key, $token, $urlpass);

($ret, $out, $err) = $node->psql('postgres', qq{
SET search_path = pg_catalog;
SELECT txoutbox.add_route('sec.http', 'http',
    '{"url": "http://127.0.0.1:$port/hook", "secret": "$secret",
      "headers": {"Authorization": "Bearer $token"}, "timeout_ms": 2000}') IS NOT NULL;
SELECT txoutbox.add_route('sec.http2', 'http',
    '{"url": "http://txo:$urlpass\@127.0.0.1:$port/hook", "timeout_ms": 2000}') IS NOT NULL;
});
is($ret, 0, 'http routes with a secret, an Authorization header and a URL password were added')
  or diag($err);

# bad configs that carry a secret: the error does not repeat it
for my $bad (
	qq{{"url": "http://127.0.0.1:$port/hook", "secret": "$secret", "timeout_ms": -1}},
	qq{{"url": "http://127.0.0.1:$port/hook", "secret": "whsec_$token!!"}},
	qq{{"url": "http://127.0.0.1:$port/hook", "headers": {"Authorization": "Bearer $token\\nX: y"}}},
	qq{{"url": "http://127.0.0.1:$port/hook", "headers": {"Host": "$token"}}},
	qq{{"url": "gopher://txo:$urlpass\@127.0.0.1/", "secret": "$secret"}},
	qq{{"url": "http://127.0.0.1:$port/hook", "secret": "$secret", "bogus": "$token"}})
{
	my ($r, $so, $se) = $node->psql('postgres', "\\set VERBOSITY verbose\nSELECT txoutbox.add_route('sec.bad', 'http', '$bad')");
	isnt($r, 0, 'a bad http config is refused');
	(my $msg = $se) =~ s/^(?:LINE \d+|STATEMENT):.*$//mg;    # the echoed statement is the client's own
	$msg =~ s/^\s+\^\s*$//mg;
	for my $s (@secrets)
	{
		unlike($msg, qr/\Q$s\E/, "the add_route error does not show a secret ($s)");
	}
}

$node->safe_psql('postgres', q{
SET search_path = pg_catalog;
SELECT txoutbox.enqueue('sec.http', '{"x": 1}', max_attempts => 3);
SELECT txoutbox.enqueue('sec.http2', '{"x": 2}', max_attempts => 3);
});
poll_safe('postgres', q{SELECT count(*) = 2 FROM txoutbox.messages
	WHERE topic LIKE 'sec.http%' AND attempt_count >= 2 AND last_error IS NOT NULL},
	'failed http attempts');
# dispatch() in a session too (errors there go to the client and the log)
$node->psql('postgres', q{SET search_path = pg_catalog;
	UPDATE txoutbox.messages SET available_at = now() WHERE topic LIKE 'sec.http%' AND status = 'retrying';
	SELECT * FROM txoutbox.dispatch(consumer => 'sec-sql', topic => 'sec.http')});

my %seen = (
	'stats' => q_safe('postgres', 'SELECT string_agg(s::text, E\'\n\') FROM txoutbox.stats s'),
	'worker_status()' => q_safe('postgres', 'SELECT string_agg(w::text, E\'\n\') FROM txoutbox.worker_status() w'),
	'last_error' => q_safe('postgres', q{SELECT string_agg(last_error, E'\n') FROM txoutbox.messages WHERE topic LIKE 'sec.http%'}),
	'pg_stat_activity' => '',
	'server log' => '');
like($seen{last_error}, qr/\S/, 'the failures were recorded (last_error is set)');
for (1 .. 20)
{
	$seen{pg_stat_activity} .= q_safe('postgres',
		'SELECT string_agg(a::text, E\'\n\') FROM pg_stat_activity a WHERE backend_type LIKE \'%txoutbox%\' OR application_name LIKE \'txoutbox%\'');
	usleep(50_000);
}
like($seen{pg_stat_activity}, qr/txoutbox/, 'the worker shows in pg_stat_activity');
$seen{'server log'} = slurp_file($node->logfile);
# the log holds the statements this test sent (add_route with the secret)
# only where a statement failed; drop those echoes, they are the client's own
$seen{'server log'} =~ s/^[^\n]*(?:STATEMENT|LOG:  statement):[^\n]*(?:\n\t[^\n]*)*//mg;
for my $where (sort keys %seen)
{
	for my $s (@secrets)
	{
		unlike($seen{$where}, qr/\Q$s\E/, "$where does not show the secret $s");
	}
}

is(q_safe('postgres', 'SELECT count(*) FROM public.hijack_log'), '0',
	'still nothing planted was called');
check_server_log($node);
$node->stop;
done_testing();
