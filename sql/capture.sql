-- capture: the change-capture trigger function.
--   CREATE TRIGGER ... AFTER INSERT OR UPDATE OR DELETE ON t FOR EACH ROW
--     EXECUTE FUNCTION txoutbox.capture('topic' [, 'key_column'])
-- enqueues one message per row change in the changing transaction, with
-- payload {"op", "table", "schema", "old", "new"} and message_key from the
-- named column (of the new row; of the old row for a DELETE).
-- Misuse is an error when the trigger fires: statement-level or TRUNCATE
-- (0A000), a wrong number of arguments (22023), an unknown key column (42703).
\set VERBOSITY default
\set SHOW_CONTEXT never
-- runnable alone too
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txoutbox;
RESET client_min_messages;
TRUNCATE txoutbox.messages;
DELETE FROM txoutbox.routes;

\set ECHO none
\i test/regress_helpers.sql
\set ECHO all
-- what was captured, in enqueue order
CREATE FUNCTION pg_temp.captured() RETURNS TABLE (topic text, message_key text, payload jsonb)
LANGUAGE sql AS $$
    SELECT m.topic, m.message_key, m.payload FROM txoutbox.messages m ORDER BY m.id
$$;

-- 1. INSERT, UPDATE, DELETE, keyed by a text column -------------------------
CREATE TABLE items (id int PRIMARY KEY, sku text, qty int, note text);
CREATE TRIGGER items_capture AFTER INSERT OR UPDATE OR DELETE ON items
    FOR EACH ROW EXECUTE FUNCTION txoutbox.capture('inventory.items', 'sku');

INSERT INTO items VALUES (1, 'A-1', 5, NULL);
SELECT * FROM pg_temp.captured();
UPDATE items SET qty = 4 WHERE id = 1;
-- the key follows the new row when the key column changes
UPDATE items SET sku = 'A-2' WHERE id = 1;
-- a DELETE is keyed by the old row
DELETE FROM items WHERE id = 1;
SELECT * FROM pg_temp.captured();
-- every captured message is a plain pending message with the defaults
SELECT count(*), count(*) FILTER (WHERE status = 'pending' AND attempt_count = 0
                                    AND headers = '{}' AND correlation_id IS NULL
                                    AND tenant_id IS NULL AND org_id IS NULL
                                    AND max_attempts = current_setting('txoutbox.max_attempts')::int)
  FROM txoutbox.messages;

-- 2. One message per row of a multi-row statement, in the statement's order;
-- an UPDATE that changes nothing is still a row change; a NULL key ----------
TRUNCATE txoutbox.messages;
INSERT INTO items SELECT g, 'S-' || g, g, 'n' FROM generate_series(1, 3) g;
UPDATE items SET note = note WHERE id = 2;
INSERT INTO items VALUES (4, NULL, 0, NULL);
SELECT message_key, payload ->> 'op' AS op, payload -> 'new' ->> 'id' AS new_id,
       payload -> 'old' ->> 'id' AS old_id
  FROM pg_temp.captured();
-- statements that touch no row capture nothing
UPDATE items SET qty = 0 WHERE id > 100;
DELETE FROM items WHERE id > 100;
SELECT count(*) FROM txoutbox.messages;

-- 3. Atomic with the change: a rolled-back change captures nothing --------------
TRUNCATE txoutbox.messages;
BEGIN;
INSERT INTO items VALUES (10, 'R-1', 1, NULL);
SELECT count(*) AS inside_the_transaction FROM txoutbox.messages;
ROLLBACK;
SELECT count(*) AS after_rollback FROM txoutbox.messages;
BEGIN;
INSERT INTO items VALUES (11, 'R-2', 1, NULL);
SAVEPOINT sp;
UPDATE items SET qty = 2 WHERE id = 11;
ROLLBACK TO SAVEPOINT sp;
COMMIT;
SELECT message_key, payload ->> 'op' AS op FROM pg_temp.captured();
-- a failing statement captures nothing either (the key is unique)
SELECT pg_temp.try($$INSERT INTO items VALUES (12, 'R-3', 1, NULL), (11, 'dup', 1, NULL)$$);
SELECT message_key, payload ->> 'op' AS op FROM pg_temp.captured();

-- 4. No key column: message_key is NULL; other column types; another schema,
-- names that need quoting ----------------------------------------------------
TRUNCATE txoutbox.messages;
SET TimeZone = 'UTC';
CREATE SCHEMA "Shop";
CREATE TABLE "Shop"."Order Lines" (line_no bigint, "Amount" numeric, tags text[], doc jsonb,
                                   at timestamptz, ok boolean);
CREATE TRIGGER lines_capture AFTER INSERT OR UPDATE OR DELETE ON "Shop"."Order Lines"
    FOR EACH ROW EXECUTE FUNCTION txoutbox.capture('shop.lines', 'line_no');
CREATE TRIGGER lines_capture_unkeyed AFTER INSERT ON "Shop"."Order Lines"
    FOR EACH ROW EXECUTE FUNCTION txoutbox.capture('shop.lines.unkeyed');
INSERT INTO "Shop"."Order Lines"
    VALUES (42, 19.90, '{a,"b c"}', '{"x": [1, null]}', '2024-05-06 07:08:09+00', true);
SELECT * FROM pg_temp.captured();
RESET TimeZone;

-- 5. A BEFORE ROW trigger works too and does not change the row -------------
TRUNCATE txoutbox.messages;
CREATE TABLE notes (id int, body text);
CREATE TRIGGER notes_capture BEFORE INSERT OR UPDATE OR DELETE ON notes
    FOR EACH ROW EXECUTE FUNCTION txoutbox.capture('notes', 'id');
INSERT INTO notes VALUES (1, 'hello');
UPDATE notes SET body = 'bye';
SELECT * FROM notes;
DELETE FROM notes;
SELECT count(*) AS notes_left FROM notes;
SELECT * FROM pg_temp.captured();

-- 6. Misuse: an error when the trigger fires, and the change is refused ------
TRUNCATE txoutbox.messages;
CREATE TABLE misuse (id int, k text);
-- statement level
CREATE TRIGGER misuse_stmt AFTER INSERT ON misuse
    FOR EACH STATEMENT EXECUTE FUNCTION txoutbox.capture('misuse');
SELECT pg_temp.try($$INSERT INTO misuse VALUES (1, 'a')$$);
DROP TRIGGER misuse_stmt ON misuse;
-- TRUNCATE (only possible as a statement trigger)
CREATE TRIGGER misuse_truncate BEFORE TRUNCATE ON misuse
    FOR EACH STATEMENT EXECUTE FUNCTION txoutbox.capture('misuse');
SELECT pg_temp.try($$TRUNCATE misuse$$);
DROP TRIGGER misuse_truncate ON misuse;
-- no arguments, three arguments
CREATE TRIGGER misuse_noargs AFTER INSERT ON misuse
    FOR EACH ROW EXECUTE FUNCTION txoutbox.capture();
SELECT pg_temp.try($$INSERT INTO misuse VALUES (1, 'a')$$);
DROP TRIGGER misuse_noargs ON misuse;
CREATE TRIGGER misuse_3args AFTER INSERT ON misuse
    FOR EACH ROW EXECUTE FUNCTION txoutbox.capture('misuse', 'k', 'extra');
SELECT pg_temp.try($$INSERT INTO misuse VALUES (1, 'a')$$);
DROP TRIGGER misuse_3args ON misuse;
-- an unknown key column (names are case-sensitive, as in to_jsonb)
CREATE TRIGGER misuse_col AFTER INSERT OR DELETE ON misuse
    FOR EACH ROW EXECUTE FUNCTION txoutbox.capture('misuse', 'K');
SELECT pg_temp.try($$INSERT INTO misuse VALUES (1, 'a')$$);
DROP TRIGGER misuse_col ON misuse;
-- a key column dropped after the trigger was made
CREATE TRIGGER misuse_dropped AFTER INSERT OR DELETE ON misuse
    FOR EACH ROW EXECUTE FUNCTION txoutbox.capture('misuse', 'k');
INSERT INTO misuse VALUES (2, 'b');
ALTER TABLE misuse DROP COLUMN k;
SELECT pg_temp.try($$DELETE FROM misuse$$);
DROP TRIGGER misuse_dropped ON misuse;
-- a bad topic is enqueue's error
CREATE TRIGGER misuse_topic AFTER INSERT ON misuse
    FOR EACH ROW EXECUTE FUNCTION txoutbox.capture('');
SELECT pg_temp.try($$INSERT INTO misuse VALUES (3)$$);
DROP TRIGGER misuse_topic ON misuse;
-- only the row inserted before the key column was dropped is there, and only
-- its INSERT was captured
SELECT * FROM misuse;
SELECT message_key, payload FROM pg_temp.captured();

-- 7. Captured messages go through an ordered route in change order ---------
TRUNCATE txoutbox.messages;
CREATE TABLE cap_log (n serial, key text, op text, qty text);
CREATE FUNCTION public.cap_sink(m txoutbox.messages) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO public.cap_log (key, op, qty)
    VALUES (m.message_key, m.payload ->> 'op', coalesce(m.payload -> 'new' ->> 'qty', m.payload -> 'old' ->> 'qty'))
$$;
SELECT topic_pattern FROM txoutbox.add_route('inventory.*', 'function',
    '{"function": "public.cap_sink", "ordered": true}');
INSERT INTO items VALUES (20, 'K-1', 1, NULL), (21, 'K-2', 1, NULL);
UPDATE items SET qty = qty + 1 WHERE id IN (20, 21);
UPDATE items SET qty = qty + 1 WHERE id = 20;
DELETE FROM items WHERE id = 20;
SELECT * FROM txoutbox.dispatch();
SELECT * FROM txoutbox.dispatch();
SELECT * FROM txoutbox.dispatch();
SELECT * FROM txoutbox.dispatch();
SELECT * FROM txoutbox.dispatch();
SELECT key, string_agg(op || ':' || qty, ' ' ORDER BY n) FROM cap_log GROUP BY key ORDER BY key;
SELECT status, count(*) FROM txoutbox.messages GROUP BY status;

TRUNCATE txoutbox.messages;
DELETE FROM txoutbox.routes;
DROP TABLE items, notes, misuse, cap_log;
DROP SCHEMA "Shop" CASCADE;
DROP FUNCTION public.cap_sink(txoutbox.messages);
