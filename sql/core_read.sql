-- core_read: get, list (filters, id order, keyset pagination), purge and the
-- stats view.
\set VERBOSITY default
\set SHOW_CONTEXT never
-- runnable alone too: the extension is created by core_enqueue otherwise
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txoutbox;
RESET client_min_messages;
TRUNCATE txoutbox.messages;
TRUNCATE txoutbox.routes;

-- Ten messages over two topics, two tenants and two orgs.
SELECT count(*) FROM generate_series(1, 10) g,
       LATERAL txoutbox.enqueue(CASE WHEN g % 2 = 0 THEN 'orders.created' ELSE 'billing.paid' END,
                                pg_catalog.jsonb_build_object('n', g),
                                message_key => 'k' || lpad(g::text, 2, '0'),
                                tenant_id => CASE WHEN g <= 5 THEN 'tenant-a' ELSE 'tenant-b' END,
                                org_id => CASE WHEN g % 3 = 0 THEN 'org-3' ELSE 'org-x' END,
                                available_at => '2020-01-01 00:00:00+00') e;
SELECT id AS k01 FROM txoutbox.messages WHERE message_key = 'k01' \gset
SELECT id AS k04 FROM txoutbox.messages WHERE message_key = 'k04' \gset

-- get(id): the whole row.
SELECT message_key, topic, payload, tenant_id, org_id, status, id = :'k04' AS same_id
  FROM txoutbox.get(:'k04');
SELECT g::text = m::text AS get_is_the_row
  FROM txoutbox.get(:'k01') g, txoutbox.messages m WHERE m.id = :'k01';

-- list(): every message in id order (= creation order) by default.
SELECT message_key, topic, tenant_id, org_id, status FROM txoutbox.list();
SELECT array_agg(message_key) = array_agg(message_key ORDER BY message_key) AS in_creation_order,
       array_agg(id) = array_agg(id ORDER BY id) AS in_id_order
  FROM txoutbox.list();
-- filters, alone and together
SELECT message_key FROM txoutbox.list(topic => 'orders.created');
SELECT message_key FROM txoutbox.list(tenant_id => 'tenant-b');
SELECT message_key FROM txoutbox.list(org_id => 'org-3');
SELECT message_key FROM txoutbox.list(topic => 'billing.paid', tenant_id => 'tenant-a', org_id => 'org-x');
SELECT message_key FROM txoutbox.list(topic => 'nothing');
-- status filter: claim two, fail one of them
SELECT message_key FROM txoutbox.claim('w1', 2, as_of => '2020-01-01 00:01:00+00');
SELECT status FROM txoutbox.mark_failed(:'k01', 'gone');
SELECT message_key, status FROM txoutbox.list(status => 'processing');
SELECT message_key, status FROM txoutbox.list(status => 'failed');
SELECT count(*) FROM txoutbox.list(status => 'pending');
SELECT count(*) FROM txoutbox.list(status => 'succeeded');
SELECT count(*) FROM txoutbox.list(status => 'retrying');
-- max_messages
SELECT message_key FROM txoutbox.list(max_messages => 3);
SELECT message_key FROM txoutbox.list(topic => 'orders.created', max_messages => 2);

-- Keyset pagination: pages of 4 by after_id = the last id of the page before.
SELECT message_key FROM txoutbox.list(max_messages => 4);
SELECT max(message_key) AS last_key FROM (SELECT message_key FROM txoutbox.list(max_messages => 4)) p \gset
SELECT id AS after FROM txoutbox.messages WHERE message_key = :'last_key' \gset
SELECT message_key FROM txoutbox.list(max_messages => 4, after_id => :'after');
SELECT max(message_key) AS last_key FROM (SELECT message_key FROM txoutbox.list(max_messages => 4, after_id => :'after')) p \gset
SELECT id AS after FROM txoutbox.messages WHERE message_key = :'last_key' \gset
SELECT message_key FROM txoutbox.list(max_messages => 4, after_id => :'after');
SELECT max(message_key) AS last_key FROM (SELECT message_key FROM txoutbox.list(max_messages => 4, after_id => :'after')) p \gset
SELECT id AS after FROM txoutbox.messages WHERE message_key = :'last_key' \gset
SELECT count(*) AS last_page FROM txoutbox.list(max_messages => 4, after_id => :'after');
-- pagination with a filter, and walking the whole table page by page
SELECT message_key FROM txoutbox.list(topic => 'orders.created', after_id => :'k04');
SELECT count(*) AS pages, sum(n) AS messages, bool_and(ordered) AS every_page_in_id_order
  FROM (WITH RECURSIVE pages(page, last_id, n, ordered) AS (
            SELECT 1, (SELECT max(id::text)::uuid FROM txoutbox.list(max_messages => 3)),
                   (SELECT count(*) FROM txoutbox.list(max_messages => 3)), true
          UNION ALL
            SELECT p.page + 1,
                   (SELECT max(l.id::text)::uuid FROM txoutbox.list(max_messages => 3, after_id => p.last_id) l),
                   (SELECT count(*) FROM txoutbox.list(max_messages => 3, after_id => p.last_id)),
                   (SELECT bool_and(l.id > p.last_id) FROM txoutbox.list(max_messages => 3, after_id => p.last_id) l)
              FROM pages p WHERE p.n = 3)
        SELECT * FROM pages) w
 WHERE n > 0;

-- purge(older_than, statuses): deletes finished messages whose updated_at is
-- older than older_than, succeeded only by default; returns how many.
TRUNCATE txoutbox.messages;
SELECT count(*) FROM generate_series(1, 6) g,
       LATERAL txoutbox.enqueue('purge', pg_catalog.to_jsonb(g), message_key => 'p' || g,
                                available_at => '2020-01-01 00:00:00+00') e;
SELECT count(*) FROM txoutbox.claim('w1', 10, as_of => '2020-01-01 00:01:00+00');
-- p1, p2 succeeded long ago; p3 succeeded now; p4 failed long ago; p5 failed
-- now; p6 stays processing (its lease long over).
SELECT r.message_key, r.status FROM txoutbox.messages m,
       LATERAL txoutbox.mark_succeeded(m.id, published_at => '2020-01-01 00:02:00+00') r
 WHERE m.message_key IN ('p1', 'p2') ORDER BY 1;
SELECT r.message_key, r.status FROM txoutbox.messages m, LATERAL txoutbox.mark_succeeded(m.id) r
 WHERE m.message_key = 'p3';
SELECT r.message_key, r.status FROM txoutbox.messages m,
       LATERAL txoutbox.mark_failed(m.id, 'x', failed_at => '2020-01-01 00:02:00+00') r
 WHERE m.message_key = 'p4';
SELECT r.message_key, r.status FROM txoutbox.messages m, LATERAL txoutbox.mark_failed(m.id, 'x') r
 WHERE m.message_key = 'p5';
SELECT txoutbox.purge(interval '1 day');
SELECT message_key, status FROM txoutbox.messages ORDER BY message_key;
SELECT txoutbox.purge(interval '1 day');
SELECT txoutbox.purge(interval '1 day', '{failed}');
SELECT message_key, status FROM txoutbox.messages ORDER BY message_key;
-- a long older_than keeps them; both statuses at once
SELECT txoutbox.purge(interval '100 years', '{succeeded,failed}');
SELECT txoutbox.purge(interval '0', '{succeeded,failed}');
SELECT message_key, status FROM txoutbox.messages ORDER BY message_key;
-- only finished statuses can be purged
SELECT txoutbox.purge(interval '0', '{pending}');
\echo :LAST_ERROR_SQLSTATE
SELECT txoutbox.purge(interval '0', '{processing}');
\echo :LAST_ERROR_SQLSTATE
SELECT txoutbox.purge(interval '0', '{retrying}');
\echo :LAST_ERROR_SQLSTATE
SELECT txoutbox.purge(interval '0', '{succeeded,pending}');
\echo :LAST_ERROR_SQLSTATE
SELECT txoutbox.purge(interval '0', '{bogus}');
\echo :LAST_ERROR_SQLSTATE
SELECT txoutbox.purge(interval '-1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT txoutbox.purge(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT txoutbox.purge(interval '1 day', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT message_key, status FROM txoutbox.messages ORDER BY message_key;

-- stats: per topic and status, the count, the age of the oldest message, and
-- whether the topic has a route (none here: all unrouted).
TRUNCATE txoutbox.messages;
SELECT count(*) FROM generate_series(1, 5) g,
       LATERAL txoutbox.enqueue(CASE WHEN g <= 3 THEN 'orders.created' ELSE 'audit.log' END,
                                pg_catalog.to_jsonb(g), available_at => '2020-01-01 00:00:00+00') e;
SELECT count(*) FROM txoutbox.claim('w1', 1, topic => 'orders.created', as_of => '2020-01-01 00:01:00+00');
SELECT topic, status, messages, route_id, publisher, unrouted,
       oldest_age >= interval '0' AS age_known,
       oldest_created_at = (SELECT min(created_at) FROM txoutbox.messages m
                             WHERE m.topic = s.topic AND m.status = s.status) AS oldest_is_min
  FROM txoutbox.stats s ORDER BY topic, status;
-- with a route for orders.*, orders.created is routed and audit.log is not
SELECT topic_pattern, publisher FROM txoutbox.add_route('orders.*', 'notify');
SELECT topic, status, messages, publisher, unrouted FROM txoutbox.stats ORDER BY topic, status;
TRUNCATE txoutbox.messages;
TRUNCATE txoutbox.routes;
