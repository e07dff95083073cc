-- upgrade_catalog: in the upgrade pass, after upgrade_0_1_0.  The extension
-- updated from 0.1.0 has the same objects as one installed from the default
-- version's script, property for property (test/extension_objects.sql says
-- which): the lines only one of the two has are listed, and there are none
-- while txoutbox--0.2.0.sql and txoutbox--0.1.0--0.2.0.sql agree.
\set VERBOSITY default
\set SHOW_CONTEXT never
\set regress_db :DBNAME
SET client_min_messages = warning;
DROP DATABASE IF EXISTS txoutbox_fresh_install;
CREATE DATABASE txoutbox_fresh_install;
RESET client_min_messages;
\c txoutbox_fresh_install
CREATE EXTENSION txoutbox;
\set ECHO none
\set objects_var fresh_objects
\i test/extension_objects.sql
\c :regress_db
\set objects_var updated_objects
\i test/extension_objects.sql
\set ECHO all
SELECT extversion FROM pg_extension WHERE extname = 'txoutbox';
SELECT count(*) > 100 AS many_properties_compared,
       count(*) FILTER (WHERE line = '(undescribed)') AS undescribed
  FROM unnest(string_to_array(:'updated_objects', E'\n')) line;
SELECT line AS only_in_a_fresh_install FROM unnest(string_to_array(:'fresh_objects', E'\n')) line
EXCEPT ALL
SELECT unnest(string_to_array(:'updated_objects', E'\n'))
ORDER BY 1;
SELECT line AS only_after_the_update FROM unnest(string_to_array(:'updated_objects', E'\n')) line
EXCEPT ALL
SELECT unnest(string_to_array(:'fresh_objects', E'\n'))
ORDER BY 1;
DROP DATABASE txoutbox_fresh_install;
