-- catalog.sql — the model catalogue (issue 2 item 2): loading, replacing,
-- listing, export, drop, names, transactions, shared memory, privileges.
-- Material: the bundled small model (30 items with ids 103, 106, ..., 190,
-- d = 8, 2 heads, max_seq_len 5, with item_popularity).
\set mfile `echo "${GLINTRU_TEST_DATA:-$PWD/test/data}"`/small/model.safetensors
SELECT pg_read_binary_file(:'mfile') AS f \gset

-- a variant of the file without item_ids (rows are then their own ids):
-- the tensor's header entry and bytes removed, later offsets shifted
CREATE FUNCTION pg_temp.st_hlen(b bytea) RETURNS int LANGUAGE sql IMMUTABLE AS $$
  SELECT sum(get_byte(b, i)::bigint << (8 * i))::int FROM generate_series(0, 7) i $$;
CREATE FUNCTION pg_temp.st_drop(b bytea, tensor text) RETURNS bytea LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  n int := pg_temp.st_hlen(b);
  h jsonb := convert_from(substring(b FROM 9 FOR n), 'UTF8')::jsonb;
  d bytea := substring(b FROM 9 + n);
  lo int := (h->tensor->'data_offsets'->>0)::int;
  hi int := (h->tensor->'data_offsets'->>1)::int;
  k text;
  t text;
BEGIN
  h := h - tensor;
  FOR k IN SELECT jsonb_object_keys(h) LOOP
    IF k <> '__metadata__' AND (h->k->'data_offsets'->>0)::int >= hi THEN
      h := jsonb_set(h, ARRAY[k, 'data_offsets'],
                     jsonb_build_array((h->k->'data_offsets'->>0)::int - (hi - lo),
                                       (h->k->'data_offsets'->>1)::int - (hi - lo)));
    END IF;
  END LOOP;
  t := h::text;
  RETURN (SELECT decode(string_agg(lpad(to_hex((octet_length(t)::bigint >> (8 * i)) & 255), 2, '0'), '' ORDER BY i), 'hex')
          FROM generate_series(0, 7) i)
         || convert_to(t, 'UTF8') || substring(d FROM 1 FOR lo) || substring(d FROM hi + 1);
END $$;
SELECT pg_temp.st_drop(:'f', 'item_ids') AS f_noids \gset

-- ---- load: returns the catalogue id ----
SELECT glintru_load_model('catalog_m', :'f') AS id \gset
SELECT :id > 0 AS id_positive, id = :id AS id_matches FROM glintru.models WHERE name = 'catalog_m';
-- a second name from a server file: another id
SELECT glintru_load_model_file('catalog_file', :'mfile') AS id2 \gset
SELECT :id2 <> :id AS new_id;
-- the same name again: error, unless replace => true (which keeps the id)
SELECT glintru_load_model('catalog_m', :'f');
SELECT glintru_load_model_file('catalog_m', :'mfile');
SELECT glintru_load_model('catalog_m', :'f', replace => true) = :id AS replaced_same_id;
SELECT glintru_load_model_file('catalog_m', :'mfile', true) = :id AS replaced_same_id;
-- replace => true on a new name simply loads it
SELECT glintru_load_model('catalog_new', :'f', replace => true) NOT IN (:id, :id2) AS new_model;

-- ---- glintru_models(): one row per model (loaded_at omitted) ----
SELECT name, items, d, heads, max_seq_len, bytes, checksum = encode(sha256(:'f'), 'hex') AS checksum_is_sha256,
       in_shared_memory
FROM glintru_models() WHERE name LIKE 'catalog%' ORDER BY name;
SELECT checksum FROM glintru_models() WHERE name = 'catalog_m';
SELECT loaded_at <= now() AS loaded_at_set FROM glintru_models() WHERE name = 'catalog_m';

-- ---- shared memory: a load builds the model there when it commits ----
SELECT count(*) AS recommended FROM glintru_recommend_history('catalog_m', ARRAY[103, 106, 109]);
SELECT name, in_shared_memory FROM glintru_models() WHERE name LIKE 'catalog%' ORDER BY name;
SELECT mode, budget_bytes = pg_size_bytes(current_setting('glintru.shared_memory_size')) AS budget_is_setting,
       used_bytes > 0 AS used, used_bytes <= budget_bytes AS within_budget, models >= 1 AS has_models
FROM glintru_memory();

-- ---- export: byte for byte what was loaded, and loadable again ----
SELECT glintru_export_model('catalog_m') = :'f'::bytea AS identical,
       sha256(glintru_export_model('catalog_m')) = sha256(pg_read_binary_file(:'mfile')) AS same_sha256,
       length(glintru_export_model('catalog_m')) AS bytes;
SELECT glintru_load_model('catalog_reloaded', glintru_export_model('catalog_m')) > 0 AS reloaded;
SELECT a.checksum = b.checksum AS same_checksum
FROM glintru_models() a, glintru_models() b WHERE a.name = 'catalog_m' AND b.name = 'catalog_reloaded';
SELECT (SELECT array_agg(item_id) FROM glintru_recommend_history('catalog_m', ARRAY[103, 106, 109]))
     = (SELECT array_agg(item_id) FROM glintru_recommend_history('catalog_reloaded', ARRAY[103, 106, 109]))
       AS same_recommendations;
SELECT glintru_export_model('catalog_nope');

-- ---- drop ----
SELECT glintru_drop_model('catalog_reloaded');
SELECT glintru_drop_model('catalog_reloaded');
SELECT glintru_drop_model('catalog_nope');
SELECT glintru_recommend_history('catalog_reloaded', ARRAY[103]);
SELECT count(*) AS listed FROM glintru_models() WHERE name = 'catalog_reloaded';
-- the name is free again
SELECT glintru_load_model('catalog_reloaded', :'f') > 0 AS loaded_again;
SELECT glintru_drop_model('catalog_reloaded');

-- ---- names ----
SELECT glintru_load_model('', :'f');
SELECT glintru_load_model_file('', :'mfile');
SELECT glintru_load_model(repeat('n', 64), :'f');
SELECT glintru_load_model('catalog_' || repeat('n', 55), :'f') > 0 AS name_of_63_bytes;
SELECT length(name) FROM glintru_models() WHERE name LIKE 'catalog_nnn%';
SELECT glintru_drop_model('catalog_' || repeat('n', 55));
-- names are case-sensitive and taken as they are
SELECT glintru_export_model('CATALOG_M');
SELECT glintru_load_model('catalog m ', :'f') > 0 AS spaces_kept;
SELECT '"' || name || '"' AS name FROM glintru_models() WHERE name LIKE 'catalog m%';
SELECT glintru_drop_model('catalog m ');
-- NULL arguments: the functions are strict
SELECT glintru_load_model(NULL, :'f') IS NULL AS null_name, glintru_load_model('catalog_x', NULL) IS NULL AS null_bytes;

-- ---- server files ----
SELECT glintru_load_model_file('catalog_x', 'no/such/model.safetensors');
SELECT glintru_load_model_file('catalog_x', '.');
SELECT count(*) AS not_loaded FROM glintru_models() WHERE name = 'catalog_x';

-- ---- a replace rolled back: the old model keeps serving ----
-- the variant has no item_ids: rows 1..30 are its ids, so a history
-- [1, 2, 3, 103, 106, 109] means rows 1-3 to both files (each skips the
-- ids it does not know), and the two differ only in the ids they return
CREATE TEMP TABLE before_replace AS
SELECT * FROM glintru_recommend_history('catalog_m', ARRAY[1, 2, 3, 103, 106, 109], 5) WITH ORDINALITY r(item_id, score, rank);
SELECT rank, item_id, round(score::numeric, 4) AS score FROM before_replace ORDER BY rank;
BEGIN;
SELECT glintru_load_model('catalog_m', :'f_noids', replace => true) = :id AS replaced_same_id;
SELECT bytes, checksum = encode(sha256(:'f'), 'hex') AS old_checksum FROM glintru_models() WHERE name = 'catalog_m';
SELECT rank, item_id, round(score::numeric, 4) AS score
FROM glintru_recommend_history('catalog_m', ARRAY[1, 2, 3, 103, 106, 109], 5) WITH ORDINALITY r(item_id, score, rank);
ROLLBACK;
SELECT bytes, checksum = encode(sha256(:'f'), 'hex') AS old_checksum FROM glintru_models() WHERE name = 'catalog_m';
SELECT (SELECT array_agg(item_id ORDER BY rank) FROM before_replace)
     = (SELECT array_agg(item_id ORDER BY rank)
        FROM glintru_recommend_history('catalog_m', ARRAY[1, 2, 3, 103, 106, 109], 5) WITH ORDINALITY r(item_id, score, rank))
       AS old_model_serves,
       (SELECT array_agg(score ORDER BY rank) FROM before_replace)
     = (SELECT array_agg(score ORDER BY rank)
        FROM glintru_recommend_history('catalog_m', ARRAY[1, 2, 3, 103, 106, 109], 5) WITH ORDINALITY r(item_id, score, rank))
       AS same_scores;
SELECT glintru_export_model('catalog_m') = :'f'::bytea AS export_unchanged;
-- a committed replace does take effect
SELECT glintru_load_model('catalog_m', :'f_noids', replace => true) = :id AS replaced_same_id;
SELECT array_agg(item_id ORDER BY rank) AS ids
FROM glintru_recommend_history('catalog_m', ARRAY[1, 2, 3, 103, 106, 109], 5) WITH ORDINALITY r(item_id, score, rank);
SELECT glintru_load_model('catalog_m', :'f', replace => true) = :id AS restored;
SELECT array_agg(item_id ORDER BY rank) AS ids
FROM glintru_recommend_history('catalog_m', ARRAY[1, 2, 3, 103, 106, 109], 5) WITH ORDINALITY r(item_id, score, rank);
-- a drop rolled back leaves the model in place
BEGIN;
SELECT glintru_drop_model('catalog_m');
SELECT count(*) AS listed FROM glintru_models() WHERE name = 'catalog_m';
ROLLBACK;
SELECT count(*) AS recommended FROM glintru_recommend_history('catalog_m', ARRAY[103, 106, 109]);

-- ---- privileges ----
CREATE ROLE regress_glintru_catalog_nobody;
CREATE ROLE regress_glintru_catalog_loader;
GRANT EXECUTE ON FUNCTION glintru_load_model_file(text, text, boolean) TO regress_glintru_catalog_loader;
SET glintru_catalog_test.path = :'mfile';
SELECT has_table_privilege('regress_glintru_catalog_nobody', 'glintru.models', 'SELECT') AS can_read_models,
       has_column_privilege('regress_glintru_catalog_nobody', 'glintru.models', 'weights', 'SELECT') AS can_read_weights;
SET ROLE regress_glintru_catalog_nobody;
-- no rights: model management is refused
SELECT glintru_load_model('catalog_x', :'f');
SELECT glintru_load_model_file('catalog_x', 'model.safetensors');
SELECT glintru_drop_model('catalog_m');
SELECT glintru_export_model('catalog_m');
-- serving needs no rights on glintru.models (nor on its weights column)
SELECT count(*) AS recommended, bool_and(item_id BETWEEN 103 AND 190) AS known_ids
FROM glintru_recommend_history('catalog_m', ARRAY[103, 106, 109]);
SELECT array_length(glintru_user_vector('catalog_m', ARRAY[103, 106, 109]), 1) AS user_vector_length;
SELECT mode FROM glintru_memory();
RESET ROLE;
-- EXECUTE granted, but not a member of pg_read_server_files: refused before
-- the file is opened (the path is masked: it depends on the checkout)
SET ROLE regress_glintru_catalog_loader;
DO $$
BEGIN
  PERFORM glintru_load_model_file('catalog_x', current_setting('glintru_catalog_test.path'));
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE '%', replace(SQLERRM, current_setting('glintru_catalog_test.path'), '<path>');
END $$;
RESET ROLE;
-- with pg_read_server_files the check passes; storing the model also needs
-- rights on the catalogue table
GRANT pg_read_server_files TO regress_glintru_catalog_loader;
SET ROLE regress_glintru_catalog_loader;
SELECT glintru_load_model_file('catalog_x', 'no/such/model.safetensors');
RESET ROLE;
GRANT USAGE ON SCHEMA glintru TO regress_glintru_catalog_loader;
GRANT SELECT, INSERT, UPDATE ON glintru.models TO regress_glintru_catalog_loader;
GRANT USAGE ON SEQUENCE glintru.models_id_seq, glintru.model_version_seq TO regress_glintru_catalog_loader;
SET ROLE regress_glintru_catalog_loader;
SELECT glintru_load_model_file('catalog_by_loader', current_setting('glintru_catalog_test.path')) > 0 AS loaded_by_loader;
RESET ROLE;
SELECT name, items FROM glintru_models() WHERE name = 'catalog_by_loader';
DROP OWNED BY regress_glintru_catalog_nobody, regress_glintru_catalog_loader;
DROP ROLE regress_glintru_catalog_nobody, regress_glintru_catalog_loader;
RESET glintru_catalog_test.path;

-- ---- prewarm, and the shared copy a load installs ----
SELECT glintru_prewarm('catalog_no_such');
-- a load is in shared memory at commit, without any call
SELECT glintru_load_model('catalog_warm', :'f') > 0 AS loaded;
SELECT in_shared_memory FROM glintru_models() WHERE name = 'catalog_warm';
SELECT glintru_prewarm('catalog_warm') AS prewarmed;
SELECT in_shared_memory FROM glintru_models() WHERE name = 'catalog_warm';
-- a rollback of a load leaves nothing cached and nothing used
SELECT glintru_drop_model(name) FROM glintru_models() WHERE name LIKE 'catalog%' ORDER BY name;
SELECT used_bytes AS used_before, models AS models_before FROM glintru_memory() \gset
BEGIN;
SELECT glintru_load_model('catalog_rb', :'f') > 0 AS loaded;
SELECT models = :models_before + 1 AS cached_in_the_load, used_bytes > :used_before AS uses_memory FROM glintru_memory();
ROLLBACK;
SELECT count(*) AS rolled_back_models FROM glintru_models() WHERE name = 'catalog_rb';
SELECT used_bytes = :used_before AS used_unchanged, models = :models_before AS models_unchanged FROM glintru_memory();
-- the same in a subtransaction that is rolled back
BEGIN;
SAVEPOINT s;
SELECT glintru_load_model('catalog_rb', :'f') > 0 AS loaded;
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT used_bytes = :used_before AS used_unchanged, models = :models_before AS models_unchanged FROM glintru_memory();
-- a load refused in a transaction that goes on (the model exists) caches nothing more
BEGIN;
SELECT glintru_load_model('catalog_warm', :'f') > 0 AS loaded;
SAVEPOINT s;
SELECT glintru_load_model('catalog_warm', :'f');
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT models = :models_before + 1 AS one_more_model FROM glintru_memory();
-- a replace: the new version is cached at commit, the old one freed
SELECT glintru_load_model('catalog_warm', :'f', replace => true) > 0 AS replaced;
SELECT in_shared_memory FROM glintru_models() WHERE name = 'catalog_warm';
SELECT models = :models_before + 1 AS one_more_model FROM glintru_memory();
SELECT count(*) AS recommended FROM glintru_recommend_history('catalog_warm', ARRAY[103, 106, 109]);
SELECT models = :models_before + 1 AS still_one_more_model FROM glintru_memory();
-- ---- clean up ----
SELECT glintru_drop_model(name) FROM glintru_models() WHERE name LIKE 'catalog%' ORDER BY name;
SELECT count(*) AS models_left FROM glintru_models() WHERE name LIKE 'catalog%';
