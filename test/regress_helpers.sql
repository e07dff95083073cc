-- Helpers for the pg_regress suites.  A suite includes them quietly with
--   \set ECHO none / \i test/regress_helpers.sql / \set ECHO all
-- (pg_regress runs psql from the repository root).
-- try(sql, id): run sql; 'ok', or the SQLSTATE and the message, with the id
-- (when given) replaced by <id> so the output shows the message names it.
CREATE FUNCTION pg_temp.try(cmd text, id uuid DEFAULT NULL) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE cmd;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || CASE WHEN id IS NULL THEN SQLERRM
                                    ELSE replace(SQLERRM, id::text, '<id>') END;
END
$$;
-- try_unchanged(sql, id): try(), and say whether the message row changed.
CREATE FUNCTION pg_temp.try_unchanged(cmd text, id uuid) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    before text;
    after text;
    r text;
BEGIN
    SELECT m::text INTO before FROM txoutbox.messages m WHERE m.id = try_unchanged.id;
    r := pg_temp.try(cmd, id);
    SELECT m::text INTO after FROM txoutbox.messages m WHERE m.id = try_unchanged.id;
    RETURN r || CASE WHEN before IS NOT DISTINCT FROM after THEN ' [row unchanged]'
                     ELSE ' [ROW CHANGED]' END;
END
$$;
