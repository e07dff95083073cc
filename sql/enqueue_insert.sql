-- enqueue_insert: enqueue() inserts its row without an executor per call,
-- keeping the index descriptions per backend and the prepared constraints
-- per transaction.  It must do exactly what an INSERT would: every index
-- entry, every constraint (also one added mid-transaction, a deferred one,
-- one whose function was replaced), triggers and read-only transactions
-- respected, big payloads toasted, subtransaction aborts and many
-- transactions survived.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txoutbox;
CREATE EXTENSION IF NOT EXISTS amcheck;
RESET client_min_messages;
TRUNCATE txoutbox.messages;

-- many rows in one statement: every row and every index entry is there
SELECT count(*) AS enqueued
  FROM (SELECT txoutbox.enqueue('bulk.' || (g % 3), jsonb_build_object('i', g),
                                message_key => CASE WHEN g % 2 = 0 THEN 'k' || (g % 7) END)
          FROM generate_series(1, 3000) g) s;
SELECT count(*) AS rows, count(DISTINCT id) AS ids, min(status) AS status,
       count(message_key) AS keyed
  FROM txoutbox.messages;
-- amcheck: each index holds exactly the heap's (matching) rows
SELECT c.relname, bt_index_check(c.oid, heapallindexed => true)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid = 'txoutbox.messages'::regclass
 ORDER BY c.relname;
-- the partial indexes are used and agree with the table
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT count(*) AS claimable FROM txoutbox.messages
 WHERE status = ANY (ARRAY['pending', 'retrying', 'processing']) AND available_at <= now() + interval '1 hour';
SELECT count(*) AS keyed FROM txoutbox.messages
 WHERE message_key = 'k0' AND topic IN ('bulk.0', 'bulk.1', 'bulk.2')
   AND status = ANY (ARRAY['pending', 'processing', 'retrying', 'failed']);
RESET enable_seqscan;
RESET enable_bitmapscan;

-- the returned row is the stored row (read by the next statement: a row
-- inserted by a statement is not visible to that statement, as for INSERT)
SELECT (e).id AS returned_id, (e).topic, (e).payload, (e).status, (e).attempt_count,
       (e).max_attempts, (e).headers, (e).created_at = (e).updated_at AS same_stamps
  FROM (SELECT txoutbox.enqueue('returned', '{"a": 1}', max_attempts => 4,
                                headers => '{"h": "v"}') AS e) s \gset
SELECT :'topic' AS topic, :'payload' AS payload, :'status' AS status, :'same_stamps' AS same_stamps;
SELECT m.topic, m.payload, m.status, m.attempt_count, m.max_attempts, m.headers,
       m.available_at BETWEEN m.created_at AND clock_timestamp() AS available_now
  FROM txoutbox.messages m WHERE m.id = :'returned_id';

-- a big payload is toasted, and comes back whole
SELECT (txoutbox.enqueue('big', jsonb_build_object('blob', repeat('xyz', 400000)))).id AS big_id \gset
SELECT length(payload ->> 'blob') AS stored_length,
       pg_column_size(payload) < length(payload ->> 'blob') AS compressed_or_toasted
  FROM txoutbox.messages WHERE id = :'big_id';
-- a payload passed straight from another table's toasted column
CREATE TABLE big_source (doc jsonb);
ALTER TABLE big_source ALTER COLUMN doc SET STORAGE EXTERNAL;
INSERT INTO big_source SELECT jsonb_build_object('blob', repeat('abc', 100000));
SELECT (txoutbox.enqueue('big.source', doc)).id AS source_id FROM big_source \gset
SELECT m.payload = b.doc AS same_payload, length(m.payload ->> 'blob') AS stored_length
  FROM big_source b, txoutbox.messages m WHERE m.id = :'source_id';
DROP TABLE big_source;

-- a constraint added between two calls of one expression is checked for
-- the later calls (the check says so as it runs)
CREATE FUNCTION noting(t text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'checked %', t;
    RETURN t <> 'forbidden';
END
$$;
DO $$
BEGIN
    FOR i IN 1..3 LOOP
        IF i = 2 THEN
            ALTER TABLE txoutbox.messages ADD CONSTRAINT noted CHECK (public.noting(topic)) NOT VALID;
        END IF;
        PERFORM txoutbox.enqueue('noted.' || i, '{}');
    END LOOP;
END
$$;
\set VERBOSITY terse
SELECT txoutbox.enqueue('forbidden', '{}');
\set VERBOSITY default
ALTER TABLE txoutbox.messages DROP CONSTRAINT noted;
DROP FUNCTION noting(text);
SELECT array_agg(topic ORDER BY id) AS noted FROM txoutbox.messages WHERE topic LIKE 'noted.%';

-- an index created between two calls gets the later rows
DO $$
BEGIN
    FOR i IN 1..3 LOOP
        IF i = 2 THEN
            CREATE INDEX messages_corr_idx ON txoutbox.messages (correlation_id)
                WHERE correlation_id IS NOT NULL;
        END IF;
        PERFORM txoutbox.enqueue('indexed', '{}', correlation_id => 'c' || i);
    END LOOP;
END
$$;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT array_agg(correlation_id ORDER BY correlation_id) AS via_index
  FROM txoutbox.messages WHERE correlation_id IN ('c1', 'c2', 'c3');
RESET enable_seqscan;
RESET enable_bitmapscan;
SELECT bt_index_check('txoutbox.messages_corr_idx', heapallindexed => true);
DROP INDEX txoutbox.messages_corr_idx;

-- a unique index is enforced, and the failed statement leaves nothing
CREATE UNIQUE INDEX messages_corr_unique ON txoutbox.messages (correlation_id);
SELECT txoutbox.enqueue('dup', '{}', correlation_id => 'same') FROM generate_series(1, 2);
SELECT count(*) AS dups FROM txoutbox.messages WHERE topic = 'dup';

-- a subtransaction that fails after an enqueue rolls it back; the next
-- calls of the same expression still work
DO $$
BEGIN
    FOR i IN 1..4 LOOP
        BEGIN
            PERFORM txoutbox.enqueue('sub', jsonb_build_object('i', i));
            IF i % 2 = 0 THEN
                RAISE EXCEPTION 'undo %', i;
            END IF;
        EXCEPTION WHEN raise_exception THEN
            NULL;
        END;
    END LOOP;
END
$$;
SELECT array_agg((payload ->> 'i')::int ORDER BY id) AS kept FROM txoutbox.messages WHERE topic = 'sub';

-- a trigger on the table fires (enqueue then runs a real INSERT)
CREATE TABLE seen_topics (topic text);
CREATE FUNCTION note_topic() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.seen_topics VALUES (NEW.topic);
    RETURN NEW;
END
$$;
CREATE TRIGGER note_topic AFTER INSERT ON txoutbox.messages
    FOR EACH ROW EXECUTE FUNCTION note_topic();
SELECT (txoutbox.enqueue('with.trigger', '{}')).status;
SELECT topic FROM seen_topics;
DROP TRIGGER note_topic ON txoutbox.messages;
SELECT (txoutbox.enqueue('without.trigger', '{}')).status;
SELECT topic FROM seen_topics;
DROP TABLE seen_topics;
DROP FUNCTION note_topic();

-- a constraint that fails while it is being prepared (its immutable
-- function raises when folded): the call fails, and the next calls in the
-- same session check that constraint again, whole (the half-prepared
-- constraints are not reused: they would let rows through unchecked)
CREATE TABLE boom_switch (mode text);
INSERT INTO boom_switch VALUES ('raise');
CREATE FUNCTION boom() RETURNS boolean IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT mode FROM public.boom_switch) = 'raise' THEN
        RAISE EXCEPTION 'boom while preparing the constraint';
    END IF;
    RETURN (SELECT mode FROM public.boom_switch) = 'pass';
END
$$;
ALTER TABLE txoutbox.messages ADD CONSTRAINT boom CHECK (public.boom()) NOT VALID;
DO $$
DECLARE
    r txoutbox.messages;
BEGIN
    BEGIN
        r := txoutbox.enqueue('boom.1', '{}');
    EXCEPTION WHEN raise_exception THEN
        RAISE NOTICE 'first call: %', SQLERRM;
    END;
    UPDATE boom_switch SET mode = 'fail';
    BEGIN
        r := txoutbox.enqueue('boom.2', '{}');
        RAISE NOTICE 'second call: stored, unchecked';
    EXCEPTION WHEN check_violation THEN
        RAISE NOTICE 'second call: %', SQLERRM;
    END;
    UPDATE boom_switch SET mode = 'pass';
    r := txoutbox.enqueue('boom.3', '{}');
    RAISE NOTICE 'third call: %', r.status;
END
$$;
ALTER TABLE txoutbox.messages DROP CONSTRAINT boom;
DROP FUNCTION boom();
DROP TABLE boom_switch;
SELECT array_agg(topic) AS boom FROM txoutbox.messages WHERE topic LIKE 'boom.%';

-- tables the fast path would not fill exactly as INSERT does take the INSERT:
-- a rule,
CREATE TABLE ruled (topic text);
CREATE RULE note_insert AS ON INSERT TO txoutbox.messages
    DO ALSO INSERT INTO public.ruled VALUES (NEW.topic);
SELECT (txoutbox.enqueue('with.rule', '{}')).status;
DROP RULE note_insert ON txoutbox.messages;
SELECT topic FROM ruled;
DROP TABLE ruled;
-- a default on a column enqueue leaves null,
ALTER TABLE txoutbox.messages ALTER COLUMN locked_by SET DEFAULT 'nobody';
SELECT (txoutbox.enqueue('with.default', '{}')).locked_by;
ALTER TABLE txoutbox.messages ALTER COLUMN locked_by DROP DEFAULT;
-- a column of another type,
ALTER TABLE txoutbox.messages ALTER COLUMN org_id TYPE varchar(20);
SELECT (txoutbox.enqueue('with.varchar', '{}', org_id => 'acme')).org_id;
SELECT txoutbox.enqueue('with.varchar', '{}', org_id => repeat('x', 21));
ALTER TABLE txoutbox.messages ALTER COLUMN org_id TYPE text;
-- an index of another access method (GIN)
CREATE INDEX messages_payload_gin ON txoutbox.messages USING gin (payload);
SELECT (txoutbox.enqueue('with.gin', '{"gin": 1}')).status;
SET enable_seqscan = off;
SELECT topic FROM txoutbox.messages WHERE payload @> '{"gin": 1}';
RESET enable_seqscan;
DROP INDEX txoutbox.messages_payload_gin;

-- a read-only transaction refuses it, as it would an INSERT
BEGIN TRANSACTION READ ONLY;
SELECT txoutbox.enqueue('read.only', '{}');
ROLLBACK;

-- everything above left the indexes consistent
SELECT c.relname, bt_index_check(c.oid, heapallindexed => true)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid = 'txoutbox.messages'::regclass
 ORDER BY c.relname;
DROP INDEX txoutbox.messages_corr_unique;

-- a deferrable unique constraint: its check is queued for the commit (or
-- SET CONSTRAINTS ... IMMEDIATE), which only the INSERT's executor does;
-- enqueue takes the INSERT, and the second row fails the commit
ALTER TABLE txoutbox.messages ADD CONSTRAINT messages_corr_deferred
    UNIQUE (correlation_id) DEFERRABLE INITIALLY DEFERRED;
BEGIN;
SELECT (txoutbox.enqueue('deferred', '{}', correlation_id => 'twice')).status;
SELECT (txoutbox.enqueue('deferred', '{}', correlation_id => 'twice')).status;
COMMIT;
SELECT count(*) AS committed FROM txoutbox.messages WHERE topic = 'deferred';
BEGIN;
SELECT (txoutbox.enqueue('deferred', '{}', correlation_id => 'once')).status;
SELECT (txoutbox.enqueue('deferred', '{}', correlation_id => 'once')).status;
SET CONSTRAINTS txoutbox.messages_corr_deferred IMMEDIATE;
ROLLBACK;
-- one row per value commits
SELECT count(*) AS enqueued
  FROM (SELECT txoutbox.enqueue('deferred', '{}', correlation_id => 'd' || g)
          FROM generate_series(1, 3) g) s;
SELECT count(*) AS committed FROM txoutbox.messages WHERE topic = 'deferred';
ALTER TABLE txoutbox.messages DROP CONSTRAINT messages_corr_deferred;

-- prepared constraints last no longer than their transaction, nor than the
-- functions they use: a CHECK whose immutable function was folded to a
-- constant when it was prepared, then replaced (which invalidates nothing
-- of the table), is checked with the new definition, as an INSERT would
CREATE FUNCTION public.max_key_length() RETURNS integer IMMUTABLE LANGUAGE sql AS 'SELECT 10';
ALTER TABLE txoutbox.messages ADD CONSTRAINT key_length
    CHECK (length(message_key) <= public.max_key_length()) NOT VALID;
SELECT (txoutbox.enqueue('key.length', '{}', message_key => 'abcdefgh')).status;
CREATE OR REPLACE FUNCTION public.max_key_length() RETURNS integer IMMUTABLE LANGUAGE sql AS 'SELECT 6';
\set VERBOSITY terse
-- the next transaction
SELECT txoutbox.enqueue('key.length', '{}', message_key => 'abcdefgh');
-- the same transaction
BEGIN;
SELECT (txoutbox.enqueue('key.length', '{}', message_key => 'abcdef')).status;
CREATE OR REPLACE FUNCTION public.max_key_length() RETURNS integer IMMUTABLE LANGUAGE sql AS 'SELECT 4';
SELECT txoutbox.enqueue('key.length', '{}', message_key => 'abcdef');
ROLLBACK;
-- an INSERT agrees
INSERT INTO txoutbox.messages (id, topic, payload, headers, status, attempt_count, max_attempts,
                               available_at, created_at, updated_at, message_key)
     VALUES (txoutbox.uuid_v7(), 'key.length', '{}', '{}', 'pending', 0, 1, now(), now(), now(), 'abcdefgh');
\set VERBOSITY default
SELECT array_agg(message_key ORDER BY id) AS key_length FROM txoutbox.messages WHERE topic = 'key.length';

-- many transactions in one statement (a DO block that commits), the state
-- made afresh by each: every other one rolled back, the check still holds
DO $$
BEGIN
    FOR i IN 1..200 LOOP
        PERFORM txoutbox.enqueue('many.xacts', jsonb_build_object('i', i), message_key => 'k' || (i % 100));
        IF i % 2 = 0 THEN
            COMMIT;
        ELSE
            ROLLBACK;
        END IF;
    END LOOP;
END
$$;
SELECT count(*) AS committed, min((payload ->> 'i')::int) AS first, max((payload ->> 'i')::int) AS last,
       bool_and((payload ->> 'i')::int % 2 = 0) AS only_even
  FROM txoutbox.messages WHERE topic = 'many.xacts';
DO $$
BEGIN
    FOR i IN 1..20 LOOP
        BEGIN
            PERFORM txoutbox.enqueue('many.checked', '{}', message_key => repeat('x', i));
        EXCEPTION WHEN check_violation THEN
            RAISE NOTICE 'transaction %: key of % characters refused', i, i;
        END;
        COMMIT;
    END LOOP;
END
$$;
SELECT array_agg(length(message_key) ORDER BY id) AS key_lengths FROM txoutbox.messages WHERE topic = 'many.checked';

-- savepoints: a call an error cut short inside one (its constraint check
-- failed half-way through the constraints), rolled back to; the
-- transaction's next calls check every constraint again
ALTER TABLE txoutbox.messages ADD CONSTRAINT no_bad_topic CHECK (topic <> 'sp.bad') NOT VALID;
BEGIN;
SELECT (txoutbox.enqueue('sp.good', '{}', message_key => 'a')).status;
SAVEPOINT s1;
\set VERBOSITY terse
SELECT txoutbox.enqueue('sp.good', '{}', message_key => 'abcdefgh');
ROLLBACK TO SAVEPOINT s1;
SELECT (txoutbox.enqueue('sp.good', '{}', message_key => 'b')).status;
SAVEPOINT s2;
SELECT txoutbox.enqueue('sp.bad', '{}', message_key => 'c');
ROLLBACK TO SAVEPOINT s2;
SAVEPOINT s3;
SELECT txoutbox.enqueue('sp.good', '{}', message_key => 'abcdefgh');
ROLLBACK TO SAVEPOINT s3;
\set VERBOSITY default
SELECT (txoutbox.enqueue('sp.good', '{}', message_key => 'd')).status;
RELEASE SAVEPOINT s1;
COMMIT;
SELECT array_agg(topic || ':' || message_key ORDER BY id) AS kept FROM txoutbox.messages WHERE topic LIKE 'sp.%';
-- a subtransaction begun and rolled back during a call (by a function a
-- constraint calls) does not end the call
CREATE FUNCTION public.catches_its_error(t text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        PERFORM 1 / (length(t) - length(t));
    EXCEPTION WHEN division_by_zero THEN
        RETURN true;
    END;
    RETURN false;
END
$$;
ALTER TABLE txoutbox.messages ADD CONSTRAINT catches CHECK (public.catches_its_error(topic)) NOT VALID;
SELECT count(*) AS enqueued
  FROM (SELECT txoutbox.enqueue('catches', jsonb_build_object('i', g), message_key => 'k' || g)
          FROM generate_series(1, 50) g) s;
\set VERBOSITY terse
SELECT txoutbox.enqueue('sp.bad', '{}');
\set VERBOSITY default
SELECT count(*) AS caught FROM txoutbox.messages WHERE topic = 'catches';
ALTER TABLE txoutbox.messages DROP CONSTRAINT catches;
ALTER TABLE txoutbox.messages DROP CONSTRAINT no_bad_topic;
ALTER TABLE txoutbox.messages DROP CONSTRAINT key_length;
DROP FUNCTION public.catches_its_error(text);
DROP FUNCTION public.max_key_length();
SELECT c.relname, bt_index_check(c.oid, heapallindexed => true)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid = 'txoutbox.messages'::regclass
 ORDER BY c.relname;
TRUNCATE txoutbox.messages;
