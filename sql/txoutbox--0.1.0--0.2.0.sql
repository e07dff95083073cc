/*
 * txoutbox--0.1.0--0.2.0.sql: ALTER EXTENSION txoutbox UPDATE from 0.1.0.
 *
 * Each change of txoutbox--0.2.0.sql since 0.1.0, made the same way, in the
 * order of that script; a change to 0.2.0 (it is edited in place until its
 * release) is made in both.  `make installcheck` checks that an extension
 * updated from 0.1.0 keeps every message and route (sql/upgrade_0_1_0.sql)
 * and has the same objects as a fresh install (sql/upgrade_catalog.sql).
 *
 * Nothing here rewrites rows.  There is no schema guard: the schema is the
 * extension's own by now (the install script's guard would refuse it, as it
 * is not empty).  A function added to a grant set is not granted to the
 * roles that hold the set already: a GRANT run here would be recorded as
 * one of the extension's initial privileges, which pg_dump leaves out, so a
 * restore would lose it.  Run grant_role() again after the update instead
 * (the WARNING at the end names the roles: an extension script's
 * notices are not shown).
 */

\echo Use "ALTER EXTENSION txoutbox UPDATE" to load this file. \quit

-- Messages ------------------------------------------------------------------

-- notified_since(): succeeded messages in publish order.  (Built here over
-- the succeeded messages there are; enqueue waits while it is built.)
CREATE INDEX messages_published_idx ON txoutbox.messages (published_at, id)
    WHERE status OPERATOR(pg_catalog.=) 'succeeded';

-- Fan-out, idempotency keys and expiry: four columns at the end, NULL for
-- every message there is (adding them rewrites no row).
--   route_id, fanout_of: the fan-out route this copy goes to (NULL: the
--     topic's route), and the first copy's id, shared by every copy
--   idempotency_key, expires_at: enqueue(idempotency_key => ...,
--     expires_at => ...)
ALTER TABLE txoutbox.messages
    ADD COLUMN route_id bigint,
    ADD COLUMN fanout_of uuid,
    ADD COLUMN idempotency_key text,
    ADD COLUMN expires_at timestamptz;

-- Idempotency keys: one message per topic, tenant and key, for as long as it
-- is kept.  The first copy of a fanned-out message holds the key here (its
-- other copies carry it too, for reading); a message without a tenant
-- conflicts with another without one (NULLS NOT DISTINCT).  Messages without
-- a key are not in it (here: none yet, but the table is read once).
CREATE UNIQUE INDEX messages_idempotency_idx ON txoutbox.messages (topic, tenant_id, idempotency_key)
    NULLS NOT DISTINCT
    WHERE idempotency_key IS NOT NULL
      AND (fanout_of IS NULL OR fanout_of OPERATOR(pg_catalog.=) id);

-- Fan-out: the copies of a message (destinations()).  Only copies are in it.
CREATE INDEX messages_fanout_idx ON txoutbox.messages (fanout_of)
    WHERE fanout_of IS NOT NULL;

-- Backups -------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('txoutbox.messages', '');
SELECT pg_catalog.pg_extension_config_dump('txoutbox.skipped_messages', '');
SELECT pg_catalog.pg_extension_config_dump('txoutbox.routes', '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('txoutbox.routes', 'id')::pg_catalog.regclass, '');

-- The state machine ------------------------------------------------------------

-- enqueue() takes idempotency_key and expires_at.  A function's arguments
-- cannot change in place, and making it again would drop the grants on it
-- (those of the producer and admin sets: pg_dump dumps them as changes
-- since the install, which a GRANT here would not be) and fail the calls
-- resolved to it but not run yet when the update commits ("cache lookup
-- failed"), while applications enqueue.  So enqueue keeps its identity
-- (its OID, grants and initial privileges): it is given the argument list
-- of a function made here with the new one, which is then dropped.  The C
-- function serves both lists (a call of the old one has 9 arguments), and
-- capture() calls it by name.
CREATE FUNCTION txoutbox._enqueue_0_2_0(
    topic text,
    payload jsonb,
    message_key text DEFAULT NULL,
    headers jsonb DEFAULT '{}',
    correlation_id text DEFAULT NULL,
    tenant_id text DEFAULT NULL,
    org_id text DEFAULT NULL,
    available_at timestamptz DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
    idempotency_key text DEFAULT NULL,
    expires_at timestamptz DEFAULT NULL)
RETURNS txoutbox.messages
    AS 'MODULE_PATHNAME', 'txoutbox_enqueue'
    LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
UPDATE pg_catalog.pg_proc p
   SET pronargs = n.pronargs, pronargdefaults = n.pronargdefaults, proargtypes = n.proargtypes,
       proargnames = n.proargnames, proargdefaults = n.proargdefaults
  FROM pg_catalog.pg_proc n
 WHERE p.oid OPERATOR(pg_catalog.=) 'txoutbox.enqueue(text,jsonb,text,jsonb,text,text,text,timestamptz,integer)'::pg_catalog.regprocedure
   AND n.oid OPERATOR(pg_catalog.=) 'txoutbox._enqueue_0_2_0(text,jsonb,text,jsonb,text,text,text,timestamptz,integer,text,timestamptz)'::pg_catalog.regprocedure;
DROP FUNCTION txoutbox._enqueue_0_2_0(text, jsonb, text, jsonb, text, text, text, timestamptz, integer, text, timestamptz);

-- worker_status() shows each dispatcher's database (one installation serves
-- every database).  Its result columns cannot change in place either: like
-- enqueue, it keeps its identity and is given those of a function made here.
-- (A view built on the old columns keeps working, without the new one.)
CREATE FUNCTION txoutbox._worker_status_0_2_0()
RETURNS TABLE (worker integer, pid integer, state text, started_at timestamptz,
               last_round_at timestamptz, rounds bigint, published bigint,
               failed bigint, last_error text, database name)
    AS 'MODULE_PATHNAME', 'txoutbox_worker_status'
    LANGUAGE C VOLATILE;
UPDATE pg_catalog.pg_proc p
   SET proallargtypes = n.proallargtypes, proargmodes = n.proargmodes, proargnames = n.proargnames
  FROM pg_catalog.pg_proc n
 WHERE p.oid OPERATOR(pg_catalog.=) 'txoutbox.worker_status()'::pg_catalog.regprocedure
   AND n.oid OPERATOR(pg_catalog.=) 'txoutbox._worker_status_0_2_0()'::pg_catalog.regprocedure;
DROP FUNCTION txoutbox._worker_status_0_2_0();

-- Reading -------------------------------------------------------------------

-- The destinations of a message: every copy of the message that id is a
-- copy of (one per fan-out route, and one for the topic's route), in id
-- order, each with its own status; a message that was not fanned out is its
-- own only destination.  Scoped to a bound tenant like get().
CREATE FUNCTION txoutbox.destinations(id uuid)
RETURNS SETOF txoutbox.messages
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    head uuid;
BEGIN
    IF destinations.id IS NULL THEN
        RAISE EXCEPTION 'id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT COALESCE(m.fanout_of, m.id) INTO head FROM txoutbox.messages m
     WHERE m.id OPERATOR(pg_catalog.=) destinations.id
       AND (COALESCE(pg_catalog.current_setting('txoutbox.tenant_id', true), '') OPERATOR(pg_catalog.=) ''
            OR m.tenant_id OPERATOR(pg_catalog.=) pg_catalog.current_setting('txoutbox.tenant_id', true));
    IF NOT FOUND THEN
        RAISE EXCEPTION 'message % does not exist', destinations.id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN QUERY
        SELECT m.* FROM txoutbox.messages m
         WHERE (m.fanout_of OPERATOR(pg_catalog.=) head OR m.id OPERATOR(pg_catalog.=) head)
           AND (COALESCE(pg_catalog.current_setting('txoutbox.tenant_id', true), '') OPERATOR(pg_catalog.=) ''
            OR m.tenant_id OPERATOR(pg_catalog.=) pg_catalog.current_setting('txoutbox.tenant_id', true))
         ORDER BY m.id;
END
$$;

REVOKE ALL ON FUNCTION txoutbox.destinations(uuid) FROM PUBLIC;

-- Catching up after a reconnect: NOTIFY keeps nothing for a session that is
-- not listening, so a listener reads what it missed here.  The succeeded
-- messages whose topic goes to a notify route now (the most specific
-- enabled match, as route_for(); for a fan-out copy, its own route, when
-- enabled; on that channel when given), published at since or later, in
-- publish order: published_at, then id.  Page on with
-- since => the last row's published_at and after_id => its id.  Scoped to a
-- bound tenant like list().
CREATE FUNCTION txoutbox.notified_since(
    since timestamptz,
    channel text DEFAULT NULL,
    topic_pattern text DEFAULT NULL,
    tenant_id text DEFAULT NULL,
    org_id text DEFAULT NULL,
    max_messages integer DEFAULT 100,
    after_id uuid DEFAULT NULL)
RETURNS SETOF txoutbox.messages
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF notified_since.since IS NULL THEN
        RAISE EXCEPTION 'since must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT pg_catalog.isfinite(notified_since.since) THEN
        RAISE EXCEPTION 'since must be a finite timestamp' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF notified_since.channel IS NOT NULL
       AND pg_catalog.octet_length(notified_since.channel) NOT BETWEEN 1 AND 63 THEN
        RAISE EXCEPTION 'notify channel must be 1 to 63 bytes long' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF notified_since.topic_pattern IS NOT NULL
       AND pg_catalog.length(notified_since.topic_pattern) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION 'topic_pattern must be 1 to 255 characters long, not %',
                        pg_catalog.length(notified_since.topic_pattern)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.strpos(pg_catalog.left(notified_since.topic_pattern, -1), '*') OPERATOR(pg_catalog.>) 0 THEN
        RAISE EXCEPTION 'invalid topic_pattern "%"', notified_since.topic_pattern
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A pattern is an exact topic or a prefix ending in "*", such as "orders.*".';
    END IF;
    IF notified_since.max_messages IS NULL THEN
        RAISE EXCEPTION 'max_messages must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF notified_since.max_messages OPERATOR(pg_catalog.<) 1 OR notified_since.max_messages OPERATOR(pg_catalog.>) 10000 THEN
        RAISE EXCEPTION 'max_messages must be between 1 and 10000, not %', notified_since.max_messages
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- (published_at, id) >= (since, the nil uuid) is published_at >= since;
    -- > (since, after_id) is the next page.  Planned per call, with the
    -- values: a recent since walks the end of messages_published_idx.
    RETURN QUERY EXECUTE pg_catalog.format($q$
        SELECT m.* FROM txoutbox.messages m
         CROSS JOIN LATERAL (SELECT f.* FROM txoutbox.routes f
                              WHERE f.id OPERATOR(pg_catalog.=) m.route_id AND f.enabled
                             UNION ALL
                             SELECT t.* FROM txoutbox.route_for(m.topic) t WHERE m.route_id IS NULL) r
         WHERE m.status OPERATOR(pg_catalog.=) 'succeeded'
           AND ROW(m.published_at, m.id) %s ROW($1, $2)
           AND r.publisher OPERATOR(pg_catalog.=) 'notify'
           AND ($3 IS NULL
                OR COALESCE(r.config OPERATOR(pg_catalog.->>) 'channel', 'txoutbox') OPERATOR(pg_catalog.=) $3)
           AND ($4 IS NULL OR m.topic OPERATOR(pg_catalog.=) $4
                OR (pg_catalog.right($4, 1) OPERATOR(pg_catalog.=) '*'
                    AND pg_catalog.starts_with(m.topic, pg_catalog.left($4, -1))))
           AND ($5 IS NULL OR m.tenant_id OPERATOR(pg_catalog.=) $5)
           AND ($6 IS NULL OR m.org_id OPERATOR(pg_catalog.=) $6)
           AND (COALESCE(pg_catalog.current_setting('txoutbox.tenant_id', true), '') OPERATOR(pg_catalog.=) ''
            OR m.tenant_id OPERATOR(pg_catalog.=) pg_catalog.current_setting('txoutbox.tenant_id', true))
         ORDER BY m.published_at, m.id
         LIMIT $7$q$,
        CASE WHEN notified_since.after_id IS NULL THEN 'OPERATOR(pg_catalog.>=)' ELSE 'OPERATOR(pg_catalog.>)' END)
    USING notified_since.since,
          COALESCE(notified_since.after_id, '00000000-0000-0000-0000-000000000000'::pg_catalog.uuid),
          notified_since.channel, notified_since.topic_pattern, notified_since.tenant_id,
          notified_since.org_id, notified_since.max_messages;
END
$$;

REVOKE ALL ON FUNCTION txoutbox.notified_since(timestamptz, text, text, text, text, integer, uuid) FROM PUBLIC;

-- Routes ---------------------------------------------------------------------

-- pause_route() / resume_route() keep a route's pause here.
ALTER TABLE txoutbox.routes ADD COLUMN paused_at timestamptz;

-- One ordinary route per pattern; fan-out routes ("fanout": true in their
-- config: each one a subscription of its own) may share a pattern.  The
-- constraint's index gives way to a partial one of the same name (the
-- same error for a duplicate).
ALTER TABLE txoutbox.routes DROP CONSTRAINT routes_topic_pattern_key;
CREATE UNIQUE INDEX routes_topic_pattern_key ON txoutbox.routes (topic_pattern)
    WHERE NOT COALESCE(config OPERATOR(pg_catalog.->) 'fanout' OPERATOR(pg_catalog.=) 'true'::pg_catalog.jsonb, false);

-- enqueue() keeps the routes it fans out to in each backend (fanout.c).
-- Every statement that writes txoutbox.routes invalidates that cache, in
-- this transaction at once and in every other backend when it commits (a
-- relcache invalidation of txoutbox.routes, transactional like a catalog
-- change's).
CREATE FUNCTION txoutbox._routes_changed()
RETURNS trigger
    AS 'MODULE_PATHNAME', 'txoutbox_routes_changed'
    LANGUAGE C;
REVOKE ALL ON FUNCTION txoutbox._routes_changed() FROM PUBLIC;

CREATE TRIGGER routes_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON txoutbox.routes
    FOR EACH STATEMENT EXECUTE FUNCTION txoutbox._routes_changed();

-- The route a topic is published through: the enabled exact match, else the
-- enabled prefix pattern with the longest prefix.  The rule is written once,
-- in C (routes.c, route_match_rank), and _route_index() applies it here as
-- it does in the dispatcher and in claim().  Fan-out routes are not
-- candidates: they are subscriptions, which get copies of their own at
-- enqueue (their patterns are NULL here, which _route_index() skips).
CREATE OR REPLACE FUNCTION txoutbox.route_for(topic text)
RETURNS txoutbox.routes
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.*
      FROM (SELECT pg_catalog.array_agg(rt.id ORDER BY rt.id) AS ids,
                   pg_catalog.array_agg(CASE WHEN rt.config OPERATOR(pg_catalog.->) 'fanout'
                                                  OPERATOR(pg_catalog.=) 'true'::pg_catalog.jsonb
                                             THEN NULL ELSE rt.topic_pattern END ORDER BY rt.id) AS patterns
              FROM txoutbox.routes rt WHERE rt.enabled) a
      JOIN txoutbox.routes r
        ON r.id OPERATOR(pg_catalog.=) a.ids[txoutbox._route_index(route_for.topic, a.patterns)]
$$;

-- Route health: the circuit breaker, rate limit and pause of each route.
-- pause_route(id): nothing of the route is claimed until resume_route(id);
-- its messages stay where they are and count no attempts.  The pause is
-- txoutbox.routes.paused_at, so it survives restarts.
CREATE FUNCTION txoutbox.pause_route(id bigint)
RETURNS txoutbox.routes
    AS 'MODULE_PATHNAME', 'txoutbox_pause_route'
    LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION txoutbox.resume_route(id bigint)
RETURNS txoutbox.routes
    AS 'MODULE_PATHNAME', 'txoutbox_resume_route'
    LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- Per route: closed / open / half-open (its circuit breaker) or paused, the
-- consecutive endpoint failures, since when it is in that state, the next
-- probe of an open breaker, the last endpoint error, its rate limit, the
-- rate it sent at over the last second, and until when its endpoint asked
-- it to wait (Retry-After).  Breaker and rate live in shared memory: a
-- restart closes every breaker.
CREATE FUNCTION txoutbox._route_health()
RETURNS TABLE (route_id bigint, topic_pattern text, publisher text, state text,
               consecutive_failures integer, since timestamptz, next_probe timestamptz,
               last_error text, rate_limit double precision, current_rate double precision,
               held_until timestamptz)
    AS 'MODULE_PATHNAME', 'txoutbox_route_health'
    LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE VIEW txoutbox.route_health AS SELECT * FROM txoutbox._route_health();

-- _route_index(), a pure function of its arguments, is called by the stats
-- view, whose functions run with its reader's privileges: executable by
-- anyone.  Made again rather than granted, so that the grants roles got
-- since 0.1.0 are not taken for the extension's initial privileges.
DROP FUNCTION txoutbox._route_index(text, text[]);
CREATE FUNCTION txoutbox._route_index(topic text, patterns text[])
RETURNS integer
    AS 'MODULE_PATHNAME', 'txoutbox_route_index'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
REVOKE ALL ON FUNCTION txoutbox._route_index(text, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION txoutbox._route_index(text, text[]) TO PUBLIC;
REVOKE ALL ON FUNCTION txoutbox.pause_route(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION txoutbox.resume_route(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION txoutbox._route_health() FROM PUBLIC;
REVOKE ALL ON txoutbox.route_health FROM PUBLIC;

-- The stats view finds a topic's route with _route_index(), the matcher in C,
-- per topic, status and route: a fan-out copy counts on its own route's row
-- (one row per destination).
CREATE OR REPLACE VIEW txoutbox.stats AS
SELECT s.topic,
       s.status,
       s.messages,
       s.oldest_created_at,
       pg_catalog.now() OPERATOR(pg_catalog.-) s.oldest_created_at AS oldest_age,
       r.id AS route_id,
       r.publisher,
       (r.id IS NULL) AS unrouted,
       CASE WHEN s.status OPERATOR(pg_catalog.=) 'failed'
                 AND r.config OPERATOR(pg_catalog.->) 'ordered' OPERATOR(pg_catalog.=) 'true'::pg_catalog.jsonb
            THEN (SELECT pg_catalog.count(DISTINCT f.message_key)
                    FROM txoutbox.messages f
                   WHERE f.topic OPERATOR(pg_catalog.=) s.topic
                     AND (f.route_id OPERATOR(pg_catalog.=) s.route_id
                          OR (f.route_id IS NULL AND s.route_id IS NULL))
                     AND (COALESCE(pg_catalog.current_setting('txoutbox.tenant_id', true), '') OPERATOR(pg_catalog.=) ''
            OR f.tenant_id OPERATOR(pg_catalog.=) pg_catalog.current_setting('txoutbox.tenant_id', true))
                     AND f.status OPERATOR(pg_catalog.=) 'failed'
                     AND f.message_key IS NOT NULL
                     AND NOT EXISTS (SELECT 1 FROM txoutbox.skipped_messages k
                                      WHERE k.id OPERATOR(pg_catalog.=) f.id))
            ELSE 0 END AS blocked_keys
  FROM (SELECT m.topic, m.status, m.route_id, pg_catalog.count(*) AS messages,
               pg_catalog.min(m.created_at) AS oldest_created_at
          FROM txoutbox.messages m
         WHERE (COALESCE(pg_catalog.current_setting('txoutbox.tenant_id', true), '') OPERATOR(pg_catalog.=) ''
            OR m.tenant_id OPERATOR(pg_catalog.=) pg_catalog.current_setting('txoutbox.tenant_id', true))
         GROUP BY m.topic, m.status, m.route_id) s
  LEFT JOIN LATERAL (
        SELECT rt.id, rt.publisher, rt.config
          FROM (SELECT pg_catalog.array_agg(a.id ORDER BY a.id) AS ids,
                       pg_catalog.array_agg(CASE WHEN a.config OPERATOR(pg_catalog.->) 'fanout'
                                                      OPERATOR(pg_catalog.=) 'true'::pg_catalog.jsonb
                                                 THEN NULL ELSE a.topic_pattern END ORDER BY a.id) AS patterns
                  FROM txoutbox.routes a WHERE a.enabled) e
          JOIN txoutbox.routes rt
            ON rt.enabled
           AND rt.id OPERATOR(pg_catalog.=) COALESCE(s.route_id, e.ids[txoutbox._route_index(s.topic, e.patterns)])) r ON true;

-- Privileges ----------------------------------------------------------------

-- The tuning settings the admin grant set may change: the breaker's too.
CREATE OR REPLACE FUNCTION txoutbox._tuning_settings()
RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY['txoutbox.batch_size', 'txoutbox.poll_interval', 'txoutbox.lock_timeout',
                 'txoutbox.max_attempts', 'txoutbox.retry_base_delay', 'txoutbox.retry_max_delay',
                 'txoutbox.retention', 'txoutbox.http_max_concurrency', 'txoutbox.http_timeout',
                 'txoutbox.breaker_failures', 'txoutbox.breaker_cooldown', 'txoutbox.breaker_max_cooldown',
                 'txoutbox.cloudevents_source']
$$;


-- The functions of the producer and consumer grant sets (admin has every
-- function).  A version that adds a function to a set replaces this one.
CREATE FUNCTION txoutbox._grant_set_functions(grant_set text)
RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE grant_set
        WHEN 'producer' THEN
            ARRAY['txoutbox.enqueue(text,jsonb,text,jsonb,text,text,text,timestamptz,integer,text,timestamptz)',
                  'txoutbox.capture()']
        WHEN 'consumer' THEN
            ARRAY['txoutbox.claim(text,integer,text,timestamptz,timestamptz)',
                  'txoutbox.mark_succeeded(uuid,timestamptz,text)',
                  'txoutbox.mark_failed(uuid,text,timestamptz,timestamptz,text)',
                  'txoutbox.get(uuid)',
                  'txoutbox.list(text,text,text,text,integer,uuid)',
                  'txoutbox.notified_since(timestamptz,text,text,text,text,integer,uuid)',
                  'txoutbox.destinations(uuid)']
    END
$$;

CREATE OR REPLACE FUNCTION txoutbox.grant_role(role_name regrole, grant_set text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn text;
    setting text;
    tuning text[] := txoutbox._tuning_settings();
BEGIN
    IF role_name IS NULL OR grant_set IS NULL THEN
        RAISE EXCEPTION 'role_name and grant_set must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM txoutbox._require_extension_owner();
    IF grant_set OPERATOR(pg_catalog.<>) ALL (ARRAY['producer', 'consumer', 'admin']) THEN
        RAISE EXCEPTION 'unknown grant set "%"', grant_set
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use producer, consumer or admin.';
    END IF;
    EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA txoutbox TO %s', role_name);
    IF grant_set OPERATOR(pg_catalog.=) 'admin' THEN
        EXECUTE pg_catalog.format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA txoutbox TO %s', role_name);
        EXECUTE pg_catalog.format('GRANT SELECT ON txoutbox.stats TO %s', role_name);
        EXECUTE pg_catalog.format('GRANT SELECT ON txoutbox.route_health TO %s', role_name);
        EXECUTE pg_catalog.format('GRANT SELECT, UPDATE (enabled) ON txoutbox.routes TO %s', role_name);
        FOREACH setting IN ARRAY tuning LOOP
            EXECUTE pg_catalog.format('GRANT SET, ALTER SYSTEM ON PARAMETER %s TO %s', setting, role_name);
        END LOOP;
        RETURN;
    END IF;
    FOREACH fn IN ARRAY txoutbox._grant_set_functions(grant_set) LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s', fn, role_name);
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION txoutbox._grant_set_functions(text) FROM PUBLIC;

-- The roles that hold the admin set (they have add_route) or the consumer
-- set (claim) get this version's new functions from grant_role(), run after
-- the update: say which (a WARNING: ALTER EXTENSION hides an update
-- script's notices).
DO $roles$
DECLARE
    roles text;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.format('%s (%s)', r.grantee::pg_catalog.regrole, r.grant_set), ', '
                                 ORDER BY r.grantee::pg_catalog.regrole::pg_catalog.text)
      INTO roles
      FROM (SELECT a.grantee,
                   CASE WHEN pg_catalog.bool_or(p.proname OPERATOR(pg_catalog.=) 'add_route')
                        THEN 'admin' ELSE 'consumer' END AS grant_set
              FROM pg_catalog.pg_proc p, LATERAL pg_catalog.aclexplode(p.proacl) a
             WHERE p.oid OPERATOR(pg_catalog.=) ANY (ARRAY[
                       'txoutbox.add_route(text,text,jsonb)'::pg_catalog.regprocedure,
                       'txoutbox.claim(text,integer,text,timestamptz,timestamptz)'::pg_catalog.regprocedure])
               AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
               AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
               AND a.grantee OPERATOR(pg_catalog.<>) 0
             GROUP BY a.grantee) r;
    IF roles IS NOT NULL THEN
        RAISE WARNING 'txoutbox 0.2.0 adds txoutbox.notified_since() and destinations() to the consumer and admin grant sets, and pause_route(), resume_route(), the route_health view and the breaker and cloudevents_source settings to the admin set'
            USING DETAIL = pg_catalog.format('Roles holding those sets: %s.', roles),
                  HINT = 'Run SELECT txoutbox.grant_role(role, set) for each of them after the update.';
    END IF;
END
$roles$;
