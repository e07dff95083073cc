-- Security and tenancy (issue 6): no PUBLIC grants, the producer / consumer /
-- admin grant sets, a role with no grants, tenant binding through the
-- SECURITY DEFINER functions, and row-level security for direct table access.
-- Roles are cluster-wide: all are named txo_sec_* and dropped at the end.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txoutbox;

-- Leftovers of an interrupted earlier run.
DO $$
DECLARE r name;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles WHERE rolname LIKE 'txo\_sec\_%' LOOP
        EXECUTE format('DROP OWNED BY %I CASCADE', r);
        EXECUTE format('DROP ROLE %I', r);
    END LOOP;
END
$$;
DROP TABLE IF EXISTS public.txo_sec_ids, public.txo_sec_captured;
DROP FUNCTION IF EXISTS public.txo_sec_try(name, text);
SELECT txoutbox.remove_route(id) FROM txoutbox.routes WHERE topic_pattern LIKE 'sec.%';

-- ---------------------------------------------------------------------------
-- Nothing is granted to PUBLIC; every SECURITY DEFINER function pins its
-- search_path to pg_catalog, pg_temp.
-- ---------------------------------------------------------------------------
SELECT 'schema' AS kind, count(*) AS public_grants
  FROM pg_namespace n, aclexplode(n.nspacl) a
 WHERE n.nspname = 'txoutbox' AND a.grantee = 0
UNION ALL
SELECT 'functions', count(*)
  FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
 WHERE p.pronamespace = 'txoutbox'::regnamespace AND a.grantee = 0
   AND p.oid <> 'txoutbox._route_index(text, text[])'::regprocedure
UNION ALL
SELECT 'relations', count(*)
  FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
 WHERE c.relnamespace = 'txoutbox'::regnamespace AND a.grantee = 0;

-- ... but EXECUTE on _route_index(), the route matcher: a pure function of
-- its arguments (immutable, not SECURITY DEFINER, reads no table) that the
-- stats view calls, whose functions run with its reader's privileges
SELECT p.oid::regprocedure AS public_function, p.provolatile, p.prosecdef
  FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
 WHERE p.pronamespace = 'txoutbox'::regnamespace AND a.grantee = 0;

SELECT p.oid::regprocedure AS definer_function_without_pinned_search_path
  FROM pg_proc p
 WHERE p.pronamespace = 'txoutbox'::regnamespace AND p.prosecdef
   AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false);

SELECT count(*) > 0 AS has_definer_functions
  FROM pg_proc WHERE pronamespace = 'txoutbox'::regnamespace AND prosecdef;

-- ---------------------------------------------------------------------------
-- Roles and fixtures
-- ---------------------------------------------------------------------------
CREATE ROLE txo_sec_producer;
CREATE ROLE txo_sec_consumer;
CREATE ROLE txo_sec_admin;
CREATE ROLE txo_sec_nobody;
SELECT txoutbox.grant_role('txo_sec_producer', 'producer');
SELECT txoutbox.grant_role('txo_sec_consumer', 'consumer');
SELECT txoutbox.grant_role('txo_sec_admin', 'admin');

-- bad grant_role calls
SELECT txoutbox.grant_role('txo_sec_nobody', 'root');
SELECT txoutbox.grant_role('txo_sec_nobody', NULL);
SELECT txoutbox.grant_role('txo_sec_no_such_role', 'producer');

SELECT (txoutbox.add_route('sec.*', 'notify', '{"channel": "txo_sec"}')).id IS NOT NULL AS route_added;

-- ids the matrix calls use: a processing message, a failed one, a route
CREATE TABLE public.txo_sec_ids (name text PRIMARY KEY, id text NOT NULL);
INSERT INTO public.txo_sec_ids
SELECT 'processing', (txoutbox.enqueue('sec.matrix.processing', '{}')).id;
INSERT INTO public.txo_sec_ids
SELECT 'failed', (txoutbox.enqueue('sec.matrix.failed', '{}', max_attempts => 1)).id;
SELECT count(*) FROM txoutbox.claim('txo_sec', 10, topic => 'sec.matrix.processing');
SELECT count(*) FROM txoutbox.claim('txo_sec', 10, topic => 'sec.matrix.failed');
SELECT status FROM txoutbox.mark_failed((SELECT id::uuid FROM public.txo_sec_ids WHERE name = 'failed'), 'boom');
INSERT INTO public.txo_sec_ids
SELECT 'route', id::text FROM txoutbox.routes WHERE topic_pattern = 'sec.*';

-- A table every role may write, with a change-capture trigger made by the
-- superuser: the trigger's enqueue runs with the writer's rights.
CREATE TABLE public.txo_sec_captured (id int PRIMARY KEY, v text);
CREATE TRIGGER txo_sec_capture AFTER INSERT ON public.txo_sec_captured
    FOR EACH ROW EXECUTE FUNCTION txoutbox.capture('sec.capture', 'id');
GRANT INSERT ON public.txo_sec_captured TO txo_sec_producer, txo_sec_consumer, txo_sec_admin, txo_sec_nobody;

-- One table owned by each role, to try a capture trigger on.
DO $$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['producer', 'consumer', 'admin', 'nobody'] LOOP
        EXECUTE format('CREATE TABLE public.txo_sec_own_%s (id int)', r);
        EXECUTE format('ALTER TABLE public.txo_sec_own_%s OWNER TO txo_sec_%s', r, r);
    END LOOP;
END
$$;

-- txo_sec_try(role, sql): run sql (:role = the role's name without txo_sec_)
-- as role, then roll it back; 'ok' or the
-- SQLSTATE it raised.  Every call starts from the same state.
CREATE FUNCTION public.txo_sec_try(r name, q text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        EXECUTE format('SET LOCAL ROLE %I', r);
        EXECUTE replace(q, ':role', substr(r, 9));
        RAISE EXCEPTION 'undo' USING ERRCODE = 'T0X01';
    EXCEPTION WHEN OTHERS THEN
        IF SQLSTATE = 'T0X01' THEN
            RETURN 'ok';
        END IF;
        RETURN SQLSTATE;
    END;
END
$$;

-- ---------------------------------------------------------------------------
-- The grant matrix: each call as each role.  ok = allowed and worked;
-- 42501 = refused for lack of privilege.
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE calls (n int, call text, q text);
INSERT INTO calls VALUES
 (1,  'enqueue',            $q$SELECT txoutbox.enqueue('sec.matrix', '{"a": 1}')$q$),
 (2,  'capture trigger',    $q$INSERT INTO public.txo_sec_captured VALUES (1, 'x')$q$),
 (3,  'create capture trg', $q$CREATE TRIGGER t AFTER INSERT ON public.txo_sec_own_:role FOR EACH ROW EXECUTE FUNCTION txoutbox.capture('sec.own')$q$),
 (4,  'claim',              $q$SELECT txoutbox.claim('c', 1, topic => 'sec.matrix.none')$q$),
 (5,  'mark_succeeded',     $q$SELECT txoutbox.mark_succeeded(':processing')$q$),
 (6,  'mark_failed',        $q$SELECT txoutbox.mark_failed(':processing', 'no')$q$),
 (7,  'get',                $q$SELECT txoutbox.get(':processing')$q$),
 (8,  'list',               $q$SELECT txoutbox.list(topic => 'sec.matrix.processing')$q$),
 (9,  'replay',             $q$SELECT txoutbox.replay(':failed')$q$),
 (10, 'skip',               $q$SELECT txoutbox.skip(':failed')$q$),
 (11, 'purge',              $q$SELECT txoutbox.purge(interval '100 years')$q$),
 (12, 'add_route',          $q$SELECT txoutbox.add_route('sec.matrix.x', 'notify')$q$),
 (13, 'remove_route',       $q$SELECT txoutbox.remove_route(:route)$q$),
 (14, 'route_for',          $q$SELECT txoutbox.route_for('sec.x')$q$),
 (15, 'dispatch',           $q$SELECT txoutbox.dispatch(topic => 'sec.matrix.none')$q$),
 (16, 'worker_status',      $q$SELECT txoutbox.worker_status()$q$),
 (17, 'stats',              $q$SELECT count(*) FROM txoutbox.stats$q$),
 (18, 'select routes',      $q$SELECT config FROM txoutbox.routes$q$),
 (19, 'update routes',      $q$UPDATE txoutbox.routes SET enabled = false WHERE id = :route$q$),
 (20, 'routes config',      $q$UPDATE txoutbox.routes SET config = '{}' WHERE id = :route$q$),
 (21, 'insert routes',      $q$INSERT INTO txoutbox.routes (topic_pattern, publisher) VALUES ('sec.y', 'notify')$q$),
 (22, 'uuid_v7',            $q$SELECT txoutbox.uuid_v7()$q$),
 (23, 'select messages',    $q$SELECT count(*) FROM txoutbox.messages$q$),
 (24, 'insert messages',    $q$INSERT INTO txoutbox.messages (topic, payload, max_attempts) VALUES ('sec.x', '{}', 1)$q$),
 (25, 'update messages',    $q$UPDATE txoutbox.messages SET status = 'succeeded' WHERE id = ':processing'$q$),
 (26, 'delete messages',    $q$DELETE FROM txoutbox.messages WHERE id = ':processing'$q$),
 (27, 'truncate messages',  $q$TRUNCATE txoutbox.messages$q$),
 (28, 'trigger on messages',$q$CREATE TRIGGER t BEFORE INSERT ON txoutbox.messages FOR EACH ROW EXECUTE FUNCTION txoutbox.capture('x')$q$),
 (29, 'skipped_messages',   $q$SELECT count(*) FROM txoutbox.skipped_messages$q$),
 (30, 'grant_role',         $q$SELECT txoutbox.grant_role('txo_sec_nobody', 'admin')$q$),
 (31, 'create in schema',   $q$CREATE TABLE txoutbox.planted (x int)$q$),
 (32, 'tenant isolation',   $q$SELECT txoutbox.enable_tenant_isolation()$q$),
 (33, 'set tenant_id',      $q$SET txoutbox.tenant_id = 'other'$q$),
 (34, 'set allowed_hosts',  $q$SET txoutbox.http_allowed_hosts = ''$q$);

SELECT c.n, c.call,
       txo_sec_try('txo_sec_producer', x.q) AS producer,
       txo_sec_try('txo_sec_consumer', x.q) AS consumer,
       txo_sec_try('txo_sec_admin', x.q) AS admin,
       txo_sec_try('txo_sec_nobody', x.q) AS nobody
  FROM calls c,
       LATERAL (SELECT replace(replace(replace(c.q,
                    ':processing', (SELECT id FROM txo_sec_ids WHERE name = 'processing')),
                    ':failed', (SELECT id FROM txo_sec_ids WHERE name = 'failed')),
                    ':route', (SELECT id FROM txo_sec_ids WHERE name = 'route')) AS q) x
 ORDER BY c.n;

-- the matrix changed nothing (every call was rolled back)
SELECT topic, status FROM txoutbox.messages WHERE topic LIKE 'sec.%' ORDER BY topic;
SELECT topic_pattern, enabled FROM txoutbox.routes WHERE topic_pattern LIKE 'sec.%';

-- A role with no grants learns nothing from error messages about messages.
\set VERBOSITY terse
SET ROLE txo_sec_nobody;
SELECT txoutbox.enqueue('sec.x', '{}');
SELECT * FROM txoutbox.routes;
SELECT * FROM txoutbox.messages;
CREATE TRIGGER t BEFORE INSERT ON txoutbox.messages FOR EACH ROW EXECUTE FUNCTION txoutbox.capture('x');
RESET ROLE;

-- The producer really enqueues, through enqueue() and through a capture trigger.
SET ROLE txo_sec_producer;
SELECT topic, status, tenant_id FROM txoutbox.enqueue('sec.produced', '{"n": 1}');
INSERT INTO public.txo_sec_captured VALUES (7, 'seven');
RESET ROLE;
SELECT topic, message_key, payload->>'op' AS op, payload->'new'->>'v' AS v
  FROM txoutbox.messages WHERE topic IN ('sec.produced', 'sec.capture') ORDER BY topic;

-- The consumer really claims and marks.
SET ROLE txo_sec_consumer;
SELECT topic, status, locked_by FROM txoutbox.claim('txo_sec_consumer', 10, topic => 'sec.produced');
SELECT status FROM txoutbox.mark_succeeded((SELECT id FROM txoutbox.list(topic => 'sec.produced')), consumer => 'txo_sec_consumer');
RESET ROLE;

-- revoke_role takes everything back.
SELECT txoutbox.revoke_role('txo_sec_producer');
SELECT txo_sec_try('txo_sec_producer', $q$SELECT txoutbox.enqueue('sec.matrix', '{}')$q$) AS enqueue_after_revoke;
SELECT txo_sec_try('txo_sec_producer', $q$INSERT INTO public.txo_sec_captured VALUES (2, 'y')$q$) AS capture_after_revoke;
SELECT txoutbox.grant_role('txo_sec_producer', 'producer');

-- ---------------------------------------------------------------------------
-- Tenants.  A session is bound to a tenant by txoutbox.tenant_id, which only
-- a superuser can set (in production: ALTER ROLE ... SET, applied at login;
-- here the superuser sets it and then becomes the role).
-- ---------------------------------------------------------------------------
\set VERBOSITY sqlstate
CREATE ROLE txo_sec_tenant;
SELECT txoutbox.grant_role('txo_sec_tenant', 'producer');
SELECT txoutbox.grant_role('txo_sec_tenant', 'consumer');
GRANT EXECUTE ON FUNCTION txoutbox.replay(uuid), txoutbox.skip(uuid),
    txoutbox.purge(interval, text[]),
    txoutbox.dispatch(text, text, integer, interval, timestamptz) TO txo_sec_tenant;
GRANT SELECT ON txoutbox.stats TO txo_sec_tenant;

-- a non-superuser cannot set, reset or change the binding
SET ROLE txo_sec_tenant;
SET txoutbox.tenant_id = 'txo_sec_B';
SELECT set_config('txoutbox.tenant_id', 'txo_sec_B', false);
SELECT set_config('txoutbox.tenant_id', 'txo_sec_B', true);
ALTER ROLE txo_sec_tenant SET txoutbox.tenant_id = 'txo_sec_B';
CREATE FUNCTION pg_temp.unbind() RETURNS text LANGUAGE sql
    SET txoutbox.tenant_id = '' AS $$ SELECT current_setting('txoutbox.tenant_id') $$;
RESET ROLE;

-- fixtures, as the unbound superuser: tenant A and tenant B, every status
CREATE TEMP TABLE t (name text PRIMARY KEY, id uuid);
INSERT INTO t SELECT 'a1', (txoutbox.enqueue('sec.tenant', '{"t": "A1"}', tenant_id => 'txo_sec_A')).id;
INSERT INTO t SELECT 'b_pending', (txoutbox.enqueue('sec.tenant', '{"t": "B1"}', tenant_id => 'txo_sec_B')).id;
INSERT INTO t SELECT 'b_processing', (txoutbox.enqueue('sec.tenant.p', '{"t": "B2"}', tenant_id => 'txo_sec_B')).id;
INSERT INTO t SELECT 'b_failed', (txoutbox.enqueue('sec.tenant.f', '{"t": "B3"}', tenant_id => 'txo_sec_B', max_attempts => 1)).id;
INSERT INTO t SELECT 'b_succeeded', (txoutbox.enqueue('sec.tenant.s', '{"t": "B4"}', tenant_id => 'txo_sec_B')).id;
INSERT INTO t SELECT 'none', (txoutbox.enqueue('sec.tenant', '{"t": "none"}')).id;
SELECT count(*) FROM txoutbox.claim('txo_sec_b', 10, topic => 'sec.tenant.p');
SELECT count(*) FROM txoutbox.claim('txo_sec_b', 10, topic => 'sec.tenant.f');
SELECT count(*) FROM txoutbox.claim('txo_sec_b', 10, topic => 'sec.tenant.s');
SELECT status FROM txoutbox.mark_failed((SELECT id FROM t WHERE name = 'b_failed'), 'b failed');
SELECT status FROM txoutbox.mark_succeeded((SELECT id FROM t WHERE name = 'b_succeeded'));
UPDATE txoutbox.messages SET updated_at = now() - interval '1 hour'
 WHERE id IN (SELECT id FROM t WHERE name IN ('b_failed', 'b_succeeded'));
GRANT SELECT, INSERT ON t TO txo_sec_tenant;
\set VERBOSITY terse

SET txoutbox.tenant_id = 'txo_sec_A';
SET ROLE txo_sec_tenant;
SHOW txoutbox.tenant_id;
-- still cannot change it once bound
SET txoutbox.tenant_id = 'txo_sec_B';
RESET txoutbox.tenant_id;
SHOW txoutbox.tenant_id;

-- enqueue: defaults to the bound tenant, refuses another
INSERT INTO t SELECT 'a2', id FROM txoutbox.enqueue('sec.tenant', '{"t": "A2"}');
INSERT INTO t SELECT 'a3', id FROM txoutbox.enqueue('sec.tenant', '{"t": "A3"}', tenant_id => 'txo_sec_A');
SELECT name, tenant_id FROM t JOIN txoutbox.list(topic => 'sec.tenant') USING (id) ORDER BY 1;
\set VERBOSITY sqlstate
SELECT txoutbox.enqueue('sec.tenant', '{"t": "evil"}', tenant_id => 'txo_sec_B');
SELECT txoutbox.enqueue('sec.tenant', '{"t": "evil"}', tenant_id => '');
SELECT txoutbox.enqueue('sec.tenant', '{"t": "evil"}', tenant_id => 'txo_sec_a');
\set VERBOSITY terse

-- get: another tenant's message (or one with no tenant) does not exist
SELECT payload->>'t' AS t FROM txoutbox.get((SELECT id FROM t WHERE name = 'a1'));
\set VERBOSITY sqlstate
SELECT txoutbox.get((SELECT id FROM t WHERE name = 'b_pending'));
SELECT txoutbox.get((SELECT id FROM t WHERE name = 'b_failed'));
SELECT txoutbox.get((SELECT id FROM t WHERE name = 'none'));
\set VERBOSITY terse

-- list and stats cover only tenant A (SELECT on the stats view is all the
-- role was granted)
SELECT payload->>'t' AS t, tenant_id FROM txoutbox.list(topic => 'sec.tenant') ORDER BY 1;
SELECT count(*) FROM txoutbox.list(tenant_id => 'txo_sec_B');
SELECT count(*) FROM txoutbox.list(status => 'failed', topic => 'sec.tenant.f');
SELECT count(*) FROM txoutbox.list() WHERE tenant_id IS DISTINCT FROM 'txo_sec_A';
SELECT topic, status, messages FROM txoutbox.stats WHERE topic LIKE 'sec.tenant%' ORDER BY 1, 2;

-- marks, replay and skip on tenant B's messages: "does not exist" (P0002)
\set VERBOSITY sqlstate
SELECT txoutbox.mark_succeeded((SELECT id FROM t WHERE name = 'b_processing'));
SELECT txoutbox.mark_succeeded((SELECT id FROM t WHERE name = 'b_processing'), consumer => 'txo_sec_b');
SELECT txoutbox.mark_failed((SELECT id FROM t WHERE name = 'b_processing'), 'evil');
SELECT txoutbox.mark_failed((SELECT id FROM t WHERE name = 'b_processing'), 'evil', now() + interval '1 day');
SELECT txoutbox.replay((SELECT id FROM t WHERE name = 'b_failed'));
SELECT txoutbox.skip((SELECT id FROM t WHERE name = 'b_failed'));
\set VERBOSITY terse

-- claim takes only tenant A's messages (B1 and the tenant-less one stay)
SELECT payload->>'t' AS t, tenant_id, status, attempt_count FROM txoutbox.claim('txo_sec_a', 100, topic => 'sec.tenant') ORDER BY 1;
SELECT count(*) FROM txoutbox.claim('txo_sec_a', 100);
-- tenant A acts on its own messages
SELECT status FROM txoutbox.mark_succeeded((SELECT id FROM t WHERE name = 'a1'), consumer => 'txo_sec_a');
SELECT status FROM txoutbox.mark_failed((SELECT id FROM t WHERE name = 'a2'), 'a2 failed');
SELECT status FROM txoutbox.skip((SELECT id FROM t WHERE name = 'a2'));
SELECT status, attempt_count FROM txoutbox.replay((SELECT id FROM t WHERE name = 'a2'));
-- dispatch publishes tenant A's claimable message only
SELECT * FROM txoutbox.dispatch(consumer => 'txo_sec_a_dispatch', topic => 'sec.tenant');
SELECT * FROM txoutbox.dispatch(consumer => 'txo_sec_a_dispatch');
-- purge deletes tenant A's finished messages only (a1, a2)
SELECT txoutbox.purge(interval '0', '{succeeded,failed}');
RESET ROLE;
RESET txoutbox.tenant_id;
SHOW txoutbox.tenant_id;

-- tenant B's messages are as they were; tenant A's finished ones were purged
SELECT t.name, m.status, m.last_error, m.locked_by
  FROM t LEFT JOIN txoutbox.messages m USING (id) ORDER BY t.name;
SELECT tenant_id, status, count(*) FROM txoutbox.messages WHERE topic = 'sec.tenant'
 GROUP BY 1, 2 ORDER BY 1, 2;

-- ---------------------------------------------------------------------------
-- Row-level security for roles given the table itself.
-- ---------------------------------------------------------------------------
CREATE ROLE txo_sec_reader;
GRANT USAGE ON SCHEMA txoutbox TO txo_sec_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON txoutbox.messages TO txo_sec_reader;
SELECT txoutbox.enable_tenant_isolation();
SELECT relrowsecurity FROM pg_class WHERE oid = 'txoutbox.messages'::regclass;

SET txoutbox.tenant_id = 'txo_sec_B';
SET ROLE txo_sec_reader;
SELECT tenant_id, topic, status FROM txoutbox.messages WHERE topic LIKE 'sec.tenant%' ORDER BY topic;
-- writes cannot reach or create another tenant's rows
UPDATE txoutbox.messages SET last_error = 'evil' WHERE tenant_id IS DISTINCT FROM 'txo_sec_B';
DELETE FROM txoutbox.messages WHERE tenant_id IS DISTINCT FROM 'txo_sec_B';
INSERT INTO txoutbox.messages (id, topic, payload, max_attempts, tenant_id) VALUES (gen_random_uuid(), 'sec.rls', '{}', 1, 'txo_sec_A');
INSERT INTO txoutbox.messages (id, topic, payload, max_attempts) VALUES (gen_random_uuid(), 'sec.rls', '{}', 1);
UPDATE txoutbox.messages SET tenant_id = 'txo_sec_A' WHERE topic = 'sec.tenant.s';
RESET ROLE;
SET txoutbox.tenant_id = 'txo_sec_A';
SET ROLE txo_sec_reader;
SELECT tenant_id, topic, status FROM txoutbox.messages WHERE topic LIKE 'sec.tenant%' ORDER BY topic;
RESET ROLE;
RESET txoutbox.tenant_id;
SELECT count(*) FROM txoutbox.messages WHERE last_error = 'evil' OR topic = 'sec.rls';
SELECT txoutbox.disable_tenant_isolation();
SELECT relrowsecurity FROM pg_class WHERE oid = 'txoutbox.messages'::regclass;

-- ---------------------------------------------------------------------------
-- Clean up
-- ---------------------------------------------------------------------------
\set VERBOSITY default
DELETE FROM txoutbox.messages WHERE topic LIKE 'sec.%';
SELECT txoutbox.remove_route(id) FROM txoutbox.routes WHERE topic_pattern LIKE 'sec.%';
DROP TABLE public.txo_sec_ids, public.txo_sec_captured;
DROP FUNCTION public.txo_sec_try(name, text);
DO $$
DECLARE r name;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles WHERE rolname LIKE 'txo\_sec\_%' ORDER BY 1 LOOP
        PERFORM txoutbox.revoke_role(r::regrole);
        EXECUTE format('DROP OWNED BY %I CASCADE', r);
        EXECUTE format('DROP ROLE %I', r);
    END LOOP;
END
$$;
SELECT count(*) AS roles_left FROM pg_roles WHERE rolname LIKE 'txo\_sec\_%';
