-- Included by sql/upgrade_catalog.sql (\set objects_var <name>, then \i):
-- \gset the psql variable named by :objects_var to a description of the
-- extension txoutbox in this database, one line per object and property,
-- sorted, with no OIDs in it: its members, config tables, functions
-- (definition, ACL, comment), relations, columns, constraints, indexes,
-- views, sequences, policies, triggers, types, the schema and the initial
-- privileges pg_dump compares ACLs with.  Two databases with equal
-- descriptions have the same extension objects.  (A property that comes out
-- NULL is "(undescribed)", so that it cannot drop out unseen.)
SELECT pg_catalog.string_agg(coalesce(pg_catalog.regexp_replace(line, '\s+', ' ', 'g'), '(undescribed)'),
                             E'\n' ORDER BY line) AS :objects_var
FROM (
    SELECT 'member ' || pg_describe_object(d.classid, d.objid, d.objsubid) AS line
      FROM pg_depend d JOIN pg_extension e ON d.refobjid = e.oid
     WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' AND e.extname = 'txoutbox'
    UNION ALL
    SELECT 'extension ' || e.extname || ' schema ' || e.extnamespace::regnamespace
           || ' relocatable ' || e.extrelocatable || ' owner ' || e.extowner::regrole
      FROM pg_extension e WHERE e.extname = 'txoutbox'
    UNION ALL
    SELECT 'config table ' || c.cfg::regclass || ' where ' || coalesce(c.cond, '')
      FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS c(cfg, cond)
     WHERE e.extname = 'txoutbox'
    UNION ALL
    SELECT 'schema ' || n.nspname || ' owner ' || n.nspowner::regrole || ' acl ' || coalesce(n.nspacl::text, '-')
      FROM pg_namespace n WHERE n.nspname = 'txoutbox'
    UNION ALL
    SELECT 'function ' || p.oid::regprocedure || ' acl ' || coalesce(p.proacl::text, '-')
           || ' comment ' || coalesce(obj_description(p.oid, 'pg_proc'), '-') || ': ' || pg_get_functiondef(p.oid)
      FROM pg_proc p WHERE p.pronamespace = 'txoutbox'::regnamespace
    UNION ALL
    SELECT 'relation ' || c.oid::regclass || ' kind ' || c.relkind::text || ' persistence ' || c.relpersistence::text
           || ' options ' || coalesce(c.reloptions::text, '-') || ' rls ' || c.relrowsecurity || '/' || c.relforcerowsecurity
           || ' acl ' || coalesce(c.relacl::text, '-') || ' comment ' || coalesce(obj_description(c.oid, 'pg_class'), '-')
      FROM pg_class c WHERE c.relnamespace = 'txoutbox'::regnamespace
    UNION ALL
    SELECT 'column ' || a.attrelid::regclass || ' ' || a.attnum || ' ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
           || ' notnull ' || a.attnotnull || ' identity ' || a.attidentity::text || ' generated ' || a.attgenerated::text
           || ' dropped ' || a.attisdropped || ' collation ' || a.attcollation::regcollation
           || ' default ' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '-') || ' acl ' || coalesce(a.attacl::text, '-')
           || ' comment ' || coalesce(col_description(a.attrelid, a.attnum), '-')
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
      LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
     WHERE c.relnamespace = 'txoutbox'::regnamespace AND a.attnum > 0
    UNION ALL
    SELECT 'constraint ' || coalesce(nullif(co.conrelid, 0)::regclass::text, '-') || ' ' || co.conname || ': '
           || pg_get_constraintdef(co.oid)
      FROM pg_constraint co WHERE co.connamespace = 'txoutbox'::regnamespace
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid)
      FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = 'txoutbox'::regnamespace
    UNION ALL
    SELECT 'view ' || c.oid::regclass || ': ' || pg_get_viewdef(c.oid)
      FROM pg_class c WHERE c.relkind::text IN ('v', 'm') AND c.relnamespace = 'txoutbox'::regnamespace
    UNION ALL
    SELECT 'sequence ' || s.seqrelid::regclass || ' ' || format_type(s.seqtypid, NULL) || ' start ' || s.seqstart
           || ' increment ' || s.seqincrement || ' min ' || s.seqmin || ' max ' || s.seqmax
           || ' cache ' || s.seqcache || ' cycle ' || s.seqcycle
      FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid WHERE c.relnamespace = 'txoutbox'::regnamespace
    UNION ALL
    SELECT 'policy ' || p.polrelid::regclass || ' ' || p.polname || ' cmd ' || p.polcmd::text || ' permissive ' || p.polpermissive
           || ' roles ' || p.polroles::regrole[]::text || ' using ' || coalesce(pg_get_expr(p.polqual, p.polrelid), '-')
           || ' check ' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '-')
      FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE c.relnamespace = 'txoutbox'::regnamespace
    UNION ALL
    SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled ' || t.tgenabled::text
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
     WHERE c.relnamespace = 'txoutbox'::regnamespace AND NOT t.tgisinternal
    UNION ALL
    SELECT 'type ' || t.oid::regtype || ' kind ' || t.typtype::text
      FROM pg_type t WHERE t.typnamespace = 'txoutbox'::regnamespace
    UNION ALL
    SELECT 'initial privileges ' || pg_describe_object(ip.classoid, ip.objoid, ip.objsubid) || ' ' || ip.privtype::text
           || ' ' || ip.initprivs::text
      FROM pg_init_privs ip
     WHERE ip.privtype::text = 'e'
) o \gset
