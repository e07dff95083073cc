-- core_trigger: the transactional outbox use case.  A business table whose
-- AFTER INSERT trigger calls enqueue(): a committed insert gives exactly one
-- message, a rolled-back insert gives none.
\set VERBOSITY default
\set SHOW_CONTEXT never
-- runnable alone too: the extension is created by core_enqueue otherwise
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txoutbox;
RESET client_min_messages;
TRUNCATE txoutbox.messages;

CREATE TABLE shop_orders (
    id       integer PRIMARY KEY,
    customer text NOT NULL,
    total    numeric NOT NULL CHECK (total >= 0),
    tenant   text
);
CREATE FUNCTION shop_orders_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM txoutbox.enqueue(
        topic => 'orders.created',
        payload => pg_catalog.to_jsonb(NEW),
        message_key => NEW.id::text,
        headers => pg_catalog.jsonb_build_object('x-table', TG_TABLE_NAME),
        correlation_id => 'order-' || NEW.id,
        tenant_id => NEW.tenant);
    RETURN NULL;
END
$$;
CREATE TRIGGER shop_orders_outbox AFTER INSERT ON shop_orders
    FOR EACH ROW EXECUTE FUNCTION shop_orders_outbox();

-- A committed insert: one message, carrying the row.
INSERT INTO shop_orders VALUES (1, 'alice', 10.50, 'tenant-a');
SELECT topic, message_key, payload, headers, correlation_id, tenant_id, status, attempt_count
  FROM txoutbox.messages ORDER BY id;

-- A rolled-back insert: the message existed inside the transaction, and is
-- gone with it.
BEGIN;
INSERT INTO shop_orders VALUES (2, 'bob', 20, 'tenant-b');
SELECT count(*) AS messages_inside FROM txoutbox.messages;
ROLLBACK;
SELECT count(*) AS messages_after_rollback FROM txoutbox.messages;
SELECT count(*) FROM shop_orders;

-- A statement that fails (the second row breaks the CHECK) leaves no message
-- for the row that was inserted before the failure.
INSERT INTO shop_orders VALUES (3, 'carol', 5, NULL), (4, 'dave', -1, NULL);
SELECT count(*) AS messages FROM txoutbox.messages;

-- A savepoint rolled back takes its message with it; the rest commits.
BEGIN;
INSERT INTO shop_orders VALUES (5, 'erin', 1, NULL);
SAVEPOINT s;
INSERT INTO shop_orders VALUES (6, 'frank', 2, NULL);
ROLLBACK TO SAVEPOINT s;
INSERT INTO shop_orders VALUES (7, 'grace', 3, NULL);
COMMIT;
SELECT message_key FROM txoutbox.messages ORDER BY id;

-- A multi-row insert: one message per row, in row order.
INSERT INTO shop_orders SELECT g, 'bulk', g, NULL FROM generate_series(10, 14) g;
SELECT message_key, payload->>'customer' AS customer FROM txoutbox.messages ORDER BY id;

-- Exactly one message per committed order, none for the others.
SELECT count(*) AS orders,
       count(m.id) AS with_message,
       (SELECT count(*) FROM txoutbox.messages) AS messages
  FROM shop_orders o
  LEFT JOIN txoutbox.messages m ON m.message_key = o.id::text;

-- The messages are claimed like any other.
SELECT count(*) FROM txoutbox.claim('w1', 100, topic => 'orders.created', as_of => now() + interval '1 second');
SELECT status, count(*) FROM txoutbox.messages GROUP BY status;

DROP TABLE shop_orders;
DROP FUNCTION shop_orders_outbox();
TRUNCATE txoutbox.messages;
