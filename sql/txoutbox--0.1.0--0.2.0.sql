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
 * is not empty).
 */

\echo Use "ALTER EXTENSION txoutbox UPDATE" to load this file. \quit

-- Backups -------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('txoutbox.messages', '');
SELECT pg_catalog.pg_extension_config_dump('txoutbox.skipped_messages', '');
SELECT pg_catalog.pg_extension_config_dump('txoutbox.routes', '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('txoutbox.routes', 'id')::pg_catalog.regclass, '');
