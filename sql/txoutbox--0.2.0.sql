/*
 * txoutbox--0.2.0.sql: the outbox table, routes and the SQL surface.
 *
 * 0.2.0 has not shipped: it is edited in place until its release.  Every
 * change made here since 0.1.0 is made in txoutbox--0.1.0--0.2.0.sql too;
 * `make installcheck` checks that an extension updated from 0.1.0 has the
 * same objects as one installed from this script (sql/upgrade_catalog.sql).
 */

\echo Use "CREATE EXTENSION txoutbox" to load this file. \quit

-- The schema must be ours: a schema called txoutbox created beforehand by
-- another role could hold objects that shadow the ones below.  (A restore
-- of pg_dump's output creates the schema, empty, and gives it to the role
-- that owned it, a superuser, before CREATE EXTENSION runs.)
DO $guard$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
                WHERE n.nspname OPERATOR(pg_catalog.=) 'txoutbox'
                  AND r.rolname OPERATOR(pg_catalog.<>) CURRENT_USER AND NOT r.rolsuper)
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                   WHERE n.nspname OPERATOR(pg_catalog.=) 'txoutbox')
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
                   WHERE n.nspname OPERATOR(pg_catalog.=) 'txoutbox') THEN
        RAISE EXCEPTION 'schema txoutbox already exists and is not empty or not owned by % or a superuser', CURRENT_USER
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Drop the schema txoutbox (it was not made by CREATE EXTENSION) and try again.';
    END IF;
END
$guard$;

-- Messages.  The hot set (pending, retrying, processing) is found through a
-- small partial index; finished rows leave it.  fillfactor leaves room on each
-- page for the new versions a claim and a mark write, and autovacuum is told
-- to visit this churning table far more often than the default 20%.
CREATE TABLE txoutbox.messages (
    id              uuid        NOT NULL,
    tenant_id       text,
    org_id          text,
    topic           text        NOT NULL,
    message_key     text,
    payload         jsonb       NOT NULL,
    headers         jsonb       NOT NULL DEFAULT '{}'::pg_catalog.jsonb,
    correlation_id  text,
    status          text        NOT NULL DEFAULT 'pending',
    attempt_count   integer     NOT NULL DEFAULT 0,
    max_attempts    integer     NOT NULL,
    last_error      text,
    available_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    locked_at       timestamptz,
    locked_by       text,
    published_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- fan-out: the fan-out route this copy goes to (NULL: the topic's route),
    -- and the first copy's id, shared by every copy of the message
    route_id        bigint,
    fanout_of       uuid,
    -- enqueue(idempotency_key => ...), enqueue(expires_at => ...)
    idempotency_key text,
    expires_at      timestamptz,
    CONSTRAINT messages_pkey PRIMARY KEY (id),
    CONSTRAINT messages_status_check CHECK (status OPERATOR(pg_catalog.=) ANY
        (ARRAY['pending', 'processing', 'retrying', 'succeeded', 'failed']::pg_catalog.text[])),
    CONSTRAINT messages_topic_check CHECK (pg_catalog.length(topic) OPERATOR(pg_catalog.>=) 1
        AND pg_catalog.length(topic) OPERATOR(pg_catalog.<=) 255),
    CONSTRAINT messages_attempts_check CHECK (max_attempts OPERATOR(pg_catalog.>=) 1
        AND attempt_count OPERATOR(pg_catalog.>=) 0)
) WITH (
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);

COMMENT ON TABLE txoutbox.messages IS 'txoutbox messages: enqueue with txoutbox.enqueue(), published after commit';

-- The claim scan: claimable messages in available_at order.  Only unfinished
-- rows are in it, so it stays small however many messages succeeded.
CREATE INDEX messages_claim_idx ON txoutbox.messages (available_at, id)
    WHERE status OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'retrying', 'processing']::pg_catalog.text[]);

-- Ordered routes: the claim looks for an older unfinished message of the same
-- topic and key.  Only keyed, unfinished (or failed, which blocks its key)
-- rows are in this index; a succeeded message leaves it.
CREATE INDEX messages_key_order_idx ON txoutbox.messages (topic, message_key, id)
    WHERE message_key IS NOT NULL
      AND status OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'processing', 'retrying', 'failed']::pg_catalog.text[]);

-- notified_since(): succeeded messages in publish order.  Only succeeded
-- rows are in it: a message gets its one entry from the mark that makes it
-- succeeded (that UPDATE writes new index entries anyway).
CREATE INDEX messages_published_idx ON txoutbox.messages (published_at, id)
    WHERE status OPERATOR(pg_catalog.=) 'succeeded';

-- Idempotency keys: one message per topic, tenant and key, for as long as it
-- is kept.  The first copy of a fanned-out message holds the key here (its
-- other copies carry it too, for reading); a message without a tenant
-- conflicts with another without one (NULLS NOT DISTINCT).  Messages without
-- a key are not in it.
CREATE UNIQUE INDEX messages_idempotency_idx ON txoutbox.messages (topic, tenant_id, idempotency_key)
    NULLS NOT DISTINCT
    WHERE idempotency_key IS NOT NULL
      AND (fanout_of IS NULL OR fanout_of OPERATOR(pg_catalog.=) id);

-- Fan-out: the copies of a message (destinations()).  Only copies are in it.
CREATE INDEX messages_fanout_idx ON txoutbox.messages (fanout_of)
    WHERE fanout_of IS NOT NULL;

-- Failed messages an operator skipped with skip(): they no longer block
-- their key on an ordered route.
CREATE TABLE txoutbox.skipped_messages (
    id          uuid        NOT NULL,
    skipped_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT skipped_messages_pkey PRIMARY KEY (id)
);

-- Routes: which publisher a topic goes to.
CREATE TABLE txoutbox.routes (
    id             bigint      GENERATED ALWAYS AS IDENTITY,
    topic_pattern  text        NOT NULL,
    publisher      text        NOT NULL,
    config         jsonb       NOT NULL DEFAULT '{}'::pg_catalog.jsonb,
    enabled        boolean     NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    paused_at      timestamptz,
    CONSTRAINT routes_pkey PRIMARY KEY (id)
);

-- One ordinary route per pattern; fan-out routes ("fanout": true in their
-- config: each one a subscription of its own) may share a pattern.
CREATE UNIQUE INDEX routes_topic_pattern_key ON txoutbox.routes (topic_pattern)
    WHERE NOT COALESCE(config OPERATOR(pg_catalog.->) 'fanout' OPERATOR(pg_catalog.=) 'true'::pg_catalog.jsonb, false);

COMMENT ON TABLE txoutbox.routes IS 'txoutbox routes: topic pattern (exact, or prefix ending in *) to publisher';

-- Backups: pg_dump leaves the rows of an extension's tables behind unless
-- they are registered here.  A dump carries every message (in every status,
-- with its id, attempts, lease and error), the skipped ones, the routes, and
-- where route ids go on.
SELECT pg_catalog.pg_extension_config_dump('txoutbox.messages', '');
SELECT pg_catalog.pg_extension_config_dump('txoutbox.skipped_messages', '');
SELECT pg_catalog.pg_extension_config_dump('txoutbox.routes', '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('txoutbox.routes', 'id')::pg_catalog.regclass, '');

-- Ids ------------------------------------------------------------------------

CREATE FUNCTION txoutbox.uuid_v7() RETURNS uuid
    AS 'MODULE_PATHNAME', 'txoutbox_uuid_v7'
    LANGUAGE C VOLATILE PARALLEL SAFE;

CREATE FUNCTION txoutbox.uuid_v7_floor(ts timestamptz) RETURNS uuid
    AS 'MODULE_PATHNAME', 'txoutbox_uuid_v7_floor'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

ALTER TABLE txoutbox.messages ALTER COLUMN id SET DEFAULT txoutbox.uuid_v7();

-- The state machine (C, cached plans) ------------------------------------------

CREATE FUNCTION txoutbox.enqueue(
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

CREATE FUNCTION txoutbox.claim(
    consumer text,
    max_messages integer DEFAULT 100,
    topic text DEFAULT NULL,
    lock_until timestamptz DEFAULT NULL,
    as_of timestamptz DEFAULT pg_catalog.now())
RETURNS SETOF txoutbox.messages
    AS 'MODULE_PATHNAME', 'txoutbox_claim'
    LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp ROWS 100;

CREATE FUNCTION txoutbox.mark_succeeded(
    id uuid,
    published_at timestamptz DEFAULT pg_catalog.now(),
    consumer text DEFAULT NULL)
RETURNS txoutbox.messages
    AS 'MODULE_PATHNAME', 'txoutbox_mark_succeeded'
    LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION txoutbox.mark_failed(
    id uuid,
    reason text,
    next_attempt_at timestamptz DEFAULT NULL,
    failed_at timestamptz DEFAULT pg_catalog.now(),
    consumer text DEFAULT NULL)
RETURNS txoutbox.messages
    AS 'MODULE_PATHNAME', 'txoutbox_mark_failed'
    LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION txoutbox.replay(id uuid)
RETURNS txoutbox.messages
    AS 'MODULE_PATHNAME', 'txoutbox_replay'
    LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION txoutbox.skip(id uuid)
RETURNS txoutbox.messages
    AS 'MODULE_PATHNAME', 'txoutbox_skip'
    LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- Used by claim(): the position in patterns of the route a topic goes to.
CREATE FUNCTION txoutbox._route_index(topic text, patterns text[])
RETURNS integer
    AS 'MODULE_PATHNAME', 'txoutbox_route_index'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- Reading and housekeeping (SQL) ------------------------------------------------

CREATE FUNCTION txoutbox.get(id uuid)
RETURNS txoutbox.messages
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result txoutbox.messages;
BEGIN
    IF get.id IS NULL THEN
        RAISE EXCEPTION 'id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT m.* INTO result FROM txoutbox.messages m
     WHERE m.id OPERATOR(pg_catalog.=) get.id
       AND (COALESCE(pg_catalog.current_setting('txoutbox.tenant_id', true), '') OPERATOR(pg_catalog.=) ''
            OR m.tenant_id OPERATOR(pg_catalog.=) pg_catalog.current_setting('txoutbox.tenant_id', true));
    IF NOT FOUND THEN
        RAISE EXCEPTION 'message % does not exist', get.id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN result;
END
$$;

CREATE FUNCTION txoutbox.list(
    status text DEFAULT NULL,
    topic text DEFAULT NULL,
    tenant_id text DEFAULT NULL,
    org_id text DEFAULT NULL,
    max_messages integer DEFAULT 100,
    after_id uuid DEFAULT NULL)
RETURNS SETOF txoutbox.messages
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF list.status IS NOT NULL AND list.status OPERATOR(pg_catalog.<>) ALL
        (ARRAY['pending', 'processing', 'retrying', 'succeeded', 'failed']) THEN
        RAISE EXCEPTION 'invalid status "%"', list.status
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use one of pending, processing, retrying, succeeded, failed.';
    END IF;
    IF list.max_messages IS NULL THEN
        RAISE EXCEPTION 'max_messages must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF list.max_messages OPERATOR(pg_catalog.<) 1 OR list.max_messages OPERATOR(pg_catalog.>) 10000 THEN
        RAISE EXCEPTION 'max_messages must be between 1 and 10000, not %', list.max_messages
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
        SELECT m.* FROM txoutbox.messages m
         WHERE (list.status IS NULL OR m.status OPERATOR(pg_catalog.=) list.status)
           AND (list.topic IS NULL OR m.topic OPERATOR(pg_catalog.=) list.topic)
           AND (list.tenant_id IS NULL OR m.tenant_id OPERATOR(pg_catalog.=) list.tenant_id)
           AND (list.org_id IS NULL OR m.org_id OPERATOR(pg_catalog.=) list.org_id)
           AND (list.after_id IS NULL OR m.id OPERATOR(pg_catalog.>) list.after_id)
           AND (COALESCE(pg_catalog.current_setting('txoutbox.tenant_id', true), '') OPERATOR(pg_catalog.=) ''
            OR m.tenant_id OPERATOR(pg_catalog.=) pg_catalog.current_setting('txoutbox.tenant_id', true))
         ORDER BY m.id
         LIMIT list.max_messages;
END
$$;

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

CREATE FUNCTION txoutbox.purge(
    older_than interval,
    statuses text[] DEFAULT '{succeeded}')
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    deleted bigint;
BEGIN
    IF purge.older_than IS NULL OR purge.statuses IS NULL THEN
        RAISE EXCEPTION 'older_than and statuses must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT pg_catalog.isfinite(purge.older_than) OR purge.older_than OPERATOR(pg_catalog.<) interval '0' THEN
        RAISE EXCEPTION 'older_than must be a finite, non-negative interval, not %', purge.older_than
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.array_position(purge.statuses, NULL) IS NOT NULL
       OR NOT (purge.statuses OPERATOR(pg_catalog.<@) ARRAY['succeeded', 'failed']) THEN
        RAISE EXCEPTION 'only finished statuses can be purged: %', purge.statuses
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name succeeded and/or failed.';
    END IF;
    WITH gone AS (
        DELETE FROM txoutbox.messages m
         WHERE m.status OPERATOR(pg_catalog.=) ANY (purge.statuses)
           AND m.updated_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) purge.older_than)
           AND (COALESCE(pg_catalog.current_setting('txoutbox.tenant_id', true), '') OPERATOR(pg_catalog.=) ''
            OR m.tenant_id OPERATOR(pg_catalog.=) pg_catalog.current_setting('txoutbox.tenant_id', true))
        RETURNING m.id
    ), unskip AS (
        DELETE FROM txoutbox.skipped_messages k USING gone WHERE k.id OPERATOR(pg_catalog.=) gone.id
    )
    SELECT pg_catalog.count(*) INTO deleted FROM gone;
    RETURN deleted;
END
$$;

-- Routes ------------------------------------------------------------------------

CREATE FUNCTION txoutbox.add_route(
    topic_pattern text,
    publisher text,
    config jsonb DEFAULT '{}')
RETURNS txoutbox.routes
    AS 'MODULE_PATHNAME', 'txoutbox_add_route'
    LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION txoutbox.remove_route(id bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF remove_route.id IS NULL THEN
        RAISE EXCEPTION 'id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    DELETE FROM txoutbox.routes r WHERE r.id OPERATOR(pg_catalog.=) remove_route.id;
    RETURN FOUND;
END
$$;

-- enqueue() keeps the routes it fans out to in each backend (fanout.c).
-- Every statement that writes txoutbox.routes invalidates that cache, in
-- this transaction at once and in every other backend when it commits (a
-- relcache invalidation of txoutbox.routes, transactional like a catalog
-- change's).
CREATE FUNCTION txoutbox._routes_changed()
RETURNS trigger
    AS 'MODULE_PATHNAME', 'txoutbox_routes_changed'
    LANGUAGE C;

CREATE TRIGGER routes_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON txoutbox.routes
    FOR EACH STATEMENT EXECUTE FUNCTION txoutbox._routes_changed();

-- The route a topic is published through: the enabled exact match, else the
-- enabled prefix pattern with the longest prefix.  The rule is written once,
-- in C (routes.c, route_match_rank), and _route_index() applies it here as
-- it does in the dispatcher and in claim().  Fan-out routes are not
-- candidates: they are subscriptions, which get copies of their own at
-- enqueue (their patterns are NULL here, which _route_index() skips).
CREATE FUNCTION txoutbox.route_for(topic text)
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

-- Dispatching -------------------------------------------------------------------

CREATE FUNCTION txoutbox.dispatch(
    consumer text DEFAULT 'sql',
    topic text DEFAULT NULL,
    max_messages integer DEFAULT 100,
    retry_delay interval DEFAULT NULL,
    claim_lock_to timestamptz DEFAULT NULL)
RETURNS TABLE (claimed integer, succeeded integer, retried integer, failed integer)
    AS 'MODULE_PATHNAME', 'txoutbox_dispatch'
    LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- One row per dispatcher slot in use, of every database served (worker is
-- the slot's number in its database).
CREATE FUNCTION txoutbox.worker_status()
RETURNS TABLE (worker integer, pid integer, state text, started_at timestamptz,
               last_round_at timestamptz, rounds bigint, published bigint,
               failed bigint, last_error text, database name)
    AS 'MODULE_PATHNAME', 'txoutbox_worker_status'
    LANGUAGE C VOLATILE;

-- Change capture: CREATE TRIGGER ... AFTER INSERT OR UPDATE OR DELETE ON t
--   FOR EACH ROW EXECUTE FUNCTION txoutbox.capture('topic' [, 'key_column']);
-- enqueues {"op","table","schema","old","new"} per row change, keyed by the
-- named column (of the new row, or the old one for a DELETE).
CREATE FUNCTION txoutbox.capture()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old_row jsonb;
    new_row jsonb;
    key text;
BEGIN
    IF TG_LEVEL OPERATOR(pg_catalog.<>) 'ROW' OR TG_OP OPERATOR(pg_catalog.=) 'TRUNCATE' THEN
        RAISE EXCEPTION 'txoutbox.capture() must be a FOR EACH ROW trigger on INSERT, UPDATE or DELETE'
            USING ERRCODE = 'feature_not_supported';
    END IF;
    IF TG_NARGS OPERATOR(pg_catalog.<) 1 OR TG_NARGS OPERATOR(pg_catalog.>) 2 THEN
        RAISE EXCEPTION 'txoutbox.capture() takes a topic and optionally a key column, not % arguments', TG_NARGS
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF TG_OP OPERATOR(pg_catalog.<>) 'INSERT' THEN
        old_row := pg_catalog.to_jsonb(OLD);
    END IF;
    IF TG_OP OPERATOR(pg_catalog.<>) 'DELETE' THEN
        new_row := pg_catalog.to_jsonb(NEW);
    END IF;
    IF TG_NARGS OPERATOR(pg_catalog.=) 2 THEN
        IF NOT (COALESCE(new_row, old_row) OPERATOR(pg_catalog.?) TG_ARGV[1]) THEN
            RAISE EXCEPTION 'column "%" does not exist in table %.%', TG_ARGV[1], TG_TABLE_SCHEMA, TG_TABLE_NAME
                USING ERRCODE = 'undefined_column';
        END IF;
        key := COALESCE(new_row, old_row) OPERATOR(pg_catalog.->>) TG_ARGV[1];
    END IF;
    PERFORM txoutbox.enqueue(
        topic => TG_ARGV[0],
        payload => pg_catalog.jsonb_build_object('op', TG_OP, 'table', TG_TABLE_NAME,
                                                 'schema', TG_TABLE_SCHEMA, 'old', old_row, 'new', new_row),
        message_key => key);
    IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;

-- Per topic, status and route: how many messages, the age of the oldest, and
-- the route (publisher is NULL and unrouted is true when no enabled route
-- matches).  A fan-out copy counts on its own route's row, whatever the
-- topic's route is: one row per destination.  blocked_keys: on an ordered
-- route, the keys a failed (not skipped) message holds up, counted on the
-- failed row of the topic and route.
CREATE VIEW txoutbox.stats AS
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

-- Tenant isolation for direct table access ---------------------------------------
-- Every function above already limits a session bound to a tenant (the
-- superuser-only setting txoutbox.tenant_id, set per role with ALTER ROLE) to
-- that tenant's messages.  These policies do the same for roles that were
-- granted access to the table itself; enable_tenant_isolation() turns them on.
CREATE POLICY messages_tenant_isolation ON txoutbox.messages
    USING (COALESCE(pg_catalog.current_setting('txoutbox.tenant_id', true), '') OPERATOR(pg_catalog.=) ''
            OR messages.tenant_id OPERATOR(pg_catalog.=) pg_catalog.current_setting('txoutbox.tenant_id', true))
    WITH CHECK (COALESCE(pg_catalog.current_setting('txoutbox.tenant_id', true), '') OPERATOR(pg_catalog.=) ''
            OR messages.tenant_id OPERATOR(pg_catalog.=) pg_catalog.current_setting('txoutbox.tenant_id', true));

CREATE FUNCTION txoutbox.enable_tenant_isolation()
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    ALTER TABLE txoutbox.messages ENABLE ROW LEVEL SECURITY;
END
$$;

CREATE FUNCTION txoutbox.disable_tenant_isolation()
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    ALTER TABLE txoutbox.messages DISABLE ROW LEVEL SECURITY;
END
$$;

-- Privileges ----------------------------------------------------------------------
-- Nothing is granted to PUBLIC.  Three grant sets, given with grant_role():
--   producer: enqueue (and capture() for change-capture triggers)
--   consumer: claim, mark_succeeded, mark_failed, get, list, notified_since,
--             destinations
--   admin:    everything: routes, replay, skip, purge, dispatch, stats,
--             worker_status, tenant isolation, and SET / ALTER SYSTEM on the
--             tuning settings (not database, workers, tenant_id,
--             http_allowed_hosts, which stay with superusers)
-- grant_role() and revoke_role() run with the caller's rights: only a role
-- that may grant these (the extension's owner, a superuser) can use them.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA txoutbox FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA txoutbox FROM PUBLIC;
REVOKE ALL ON SCHEMA txoutbox FROM PUBLIC;
-- ... but for _route_index(), a pure function of its arguments: the stats
-- view calls it, and a view's functions run with its reader's privileges.
GRANT EXECUTE ON FUNCTION txoutbox._route_index(text, text[]) TO PUBLIC;

-- The settings the admin grant set may change; txoutbox.database, workers,
-- tenant_id and http_allowed_hosts stay with superusers.
CREATE FUNCTION txoutbox._tuning_settings()
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

-- grant_role and revoke_role: only the extension's owner (or a superuser).
CREATE FUNCTION txoutbox._require_extension_owner()
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT pg_catalog.pg_has_role(CURRENT_USER,
            (SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'txoutbox'),
            'USAGE') THEN
        RAISE EXCEPTION 'permission denied to grant or revoke txoutbox privileges'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Only the owner of the extension txoutbox (or a superuser) can.';
    END IF;
END
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

CREATE FUNCTION txoutbox.grant_role(role_name regrole, grant_set text)
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

CREATE FUNCTION txoutbox.revoke_role(role_name regrole)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    setting text;
    tuning text[] := txoutbox._tuning_settings();
BEGIN
    IF role_name IS NULL THEN
        RAISE EXCEPTION 'role_name must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM txoutbox._require_extension_owner();
    EXECUTE pg_catalog.format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA txoutbox FROM %s', role_name);
    EXECUTE pg_catalog.format('REVOKE ALL ON ALL TABLES IN SCHEMA txoutbox FROM %s', role_name);
    EXECUTE pg_catalog.format('REVOKE ALL ON SCHEMA txoutbox FROM %s', role_name);
    FOREACH setting IN ARRAY tuning LOOP
        EXECUTE pg_catalog.format('REVOKE SET, ALTER SYSTEM ON PARAMETER %s FROM %s', setting, role_name);
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION txoutbox._tuning_settings() FROM PUBLIC;
REVOKE ALL ON FUNCTION txoutbox._grant_set_functions(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION txoutbox._require_extension_owner() FROM PUBLIC;
REVOKE ALL ON FUNCTION txoutbox.grant_role(regrole, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION txoutbox.revoke_role(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION txoutbox.enable_tenant_isolation() FROM PUBLIC;
REVOKE ALL ON FUNCTION txoutbox.disable_tenant_isolation() FROM PUBLIC;
