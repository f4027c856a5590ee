-- search_path.sql — no glintru function trusts search_path: with a hostile
-- schema searched before pg_catalog (an "=" that is always true, a nextval
-- and a sha256 that lie), loading, dropping, attaching, triggers and
-- recommendations behave exactly as without it.
\set mfile `echo "${GLINTRU_TEST_DATA:-$PWD/test/data}"`/small/model.safetensors
SELECT pg_read_binary_file(:'mfile') AS f \gset
CREATE SCHEMA evil;
CREATE FUNCTION evil.always(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.always);
CREATE FUNCTION evil.always8(bigint, bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.always8);
CREATE FUNCTION evil.always4(integer, integer) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR evil.= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = evil.always4);
CREATE FUNCTION evil.nextval(regclass) RETURNS bigint LANGUAGE sql AS 'SELECT 1::bigint';
CREATE FUNCTION evil.sha256(bytea) RETURNS bytea LANGUAGE sql AS 'SELECT ''\x00''::bytea';
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS 'SELECT ''2000-01-01''::timestamptz';
CREATE TABLE sp_events (user_id bigint, item_id bigint, ts bigint);
INSERT INTO sp_events VALUES (1, 103, 1), (1, 106, 2), (2, 109, 1), (2, 112, 2);

SET search_path = evil, pg_catalog, public;
SELECT glintru_load_model('sp_a', :'f') > 0 AS loaded_a, glintru_load_model('sp_b', :'f') > 0 AS loaded_b;
SELECT glintru_load_model('sp_a', :'f', replace => true) > 0 AS replaced_a;
-- a hijacked "=" would have touched every row
SELECT name, checksum = encode(pg_catalog.sha256(:'f'::bytea), 'hex') AS true_checksum
FROM glintru.models WHERE name LIKE 'sp_%' ORDER BY name;
SELECT count(DISTINCT version) AS distinct_versions FROM glintru.models WHERE name LIKE 'sp_%';
SELECT glintru_drop_model('sp_a');
SELECT name FROM glintru_models() WHERE name LIKE 'sp_%' ORDER BY name;
SELECT glintru_attach('sp_b', 'sp_events') AS users;
INSERT INTO sp_events VALUES (1, 115, 3), (2, 118, 0);   -- one in order, one out of order
SELECT count(*) AS problems FROM glintru_verify_state('sp_events');
SELECT (SELECT array_agg(item_id) FROM glintru_recommend(1, 3, interactions => 'public.sp_events'))
       OPERATOR(pg_catalog.=)
       (SELECT array_agg(item_id) FROM glintru_recommend_history('sp_b', ARRAY[103, 106, 115]::bigint[], 3)) AS same_as_history;
DELETE FROM sp_events WHERE user_id OPERATOR(pg_catalog.=) 2;
SELECT count(*) AS states_left FROM glintru.user_state;
SELECT glintru_detach('sp_events');
RESET search_path;
SELECT glintru_drop_model('sp_b');
DROP TABLE sp_events;
DROP SCHEMA evil CASCADE;
