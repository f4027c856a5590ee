-- bad_input.sql — issue 2 item 6: bad input never crashes.  Every malformed
-- model file (truncated, corrupted header, wrong dtype/shape, missing or
-- unknown tensors, non-finite values, duplicate ids, absurd sizes, broken
-- offsets, broken JSON) is rejected with a clear error, and the server stays
-- up.  The material is the bundled small model (31 rows, d = 8, 2 heads,
-- max_seq_len 5), edited with the helpers below.
\set VERBOSITY terse
\set mfile `echo "${GLINTRU_TEST_DATA:-$PWD/test/data}"`/small/model.safetensors
SELECT pg_read_binary_file(:'mfile') AS f \gset
SELECT length(:'f'::bytea) AS file_bytes;

-- ---- helpers (session-local) ----
-- the header length: 8 bytes, little-endian
CREATE FUNCTION pg_temp.st_hlen(b bytea) RETURNS numeric LANGUAGE sql IMMUTABLE AS $$
  SELECT sum(get_byte(b, i)::numeric * 256::numeric ^ i) FROM generate_series(0, 7) i $$;
-- the JSON header
CREATE FUNCTION pg_temp.st_header(b bytea) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT convert_from(substring(b FROM 9 FOR pg_temp.st_hlen(b)::int), 'UTF8')::jsonb $$;
-- the data section
CREATE FUNCTION pg_temp.st_data(b bytea) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
  SELECT substring(b FROM 9 + pg_temp.st_hlen(b)::int) $$;
-- 8-byte little-endian length + header text (taken as is) + data
CREATE FUNCTION pg_temp.st_build(h text, data bytea) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
  SELECT decode(string_agg(lpad(to_hex((octet_length(h)::bigint >> (8 * i)) & 255), 2, '0'), '' ORDER BY i), 'hex')
         || convert_to(h, 'UTF8') || data
  FROM generate_series(0, 7) i $$;
-- a new header, the original data section
CREATE FUNCTION pg_temp.st_rebuild(b bytea, h jsonb) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
  SELECT pg_temp.st_build(h::text, pg_temp.st_data(b)) $$;
CREATE FUNCTION pg_temp.st_rebuild_text(b bytea, h text) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
  SELECT pg_temp.st_build(h, pg_temp.st_data(b)) $$;
-- overwrite bytes of a tensor's data, at byte offset off within the tensor
CREATE FUNCTION pg_temp.st_patch(b bytea, tensor text, off int, v bytea) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
  SELECT overlay(b PLACING v FROM 9 + pg_temp.st_hlen(b)::int
                 + (pg_temp.st_header(b)->tensor->'data_offsets'->>0)::int + off) $$;
-- set one field of one header entry
CREATE FUNCTION pg_temp.st_set(b bytea, path text[], v jsonb) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
  SELECT pg_temp.st_rebuild(b, jsonb_set(pg_temp.st_header(b), path, v)) $$;
-- replace data bytes [lo, hi) by v; offsets at or after hi move along
CREATE FUNCTION pg_temp.st_splice(b bytea, lo int, hi int, v bytea) RETURNS bytea LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  h jsonb := pg_temp.st_header(b);
  d bytea := pg_temp.st_data(b);
  delta int := length(v) - (hi - lo);
  k text;
BEGIN
  FOR k IN SELECT jsonb_object_keys(h) LOOP
    IF k <> '__metadata__' AND (h->k->'data_offsets'->>0)::int >= hi THEN
      h := jsonb_set(h, ARRAY[k, 'data_offsets'],
                     jsonb_build_array((h->k->'data_offsets'->>0)::int + delta,
                                       (h->k->'data_offsets'->>1)::int + delta));
    END IF;
  END LOOP;
  RETURN pg_temp.st_build(h::text, substring(d FROM 1 FOR lo) || v || substring(d FROM hi + 1));
END $$;
-- remove a tensor: its header entry and its bytes
CREATE FUNCTION pg_temp.st_drop(b bytea, tensor text) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
  SELECT pg_temp.st_splice(pg_temp.st_rebuild(b, pg_temp.st_header(b) - tensor),
                           (pg_temp.st_header(b)->tensor->'data_offsets'->>0)::int,
                           (pg_temp.st_header(b)->tensor->'data_offsets'->>1)::int, '') $$;
-- a message with the numbers (not those inside names like F32) and the quoted names abstracted
CREATE FUNCTION pg_temp.norm(msg text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT regexp_replace(regexp_replace(regexp_replace(msg, '"[^"]*"', '"…"', 'g'),
                                       'dtype [^ ,]+', 'dtype …', 'g'), '\m[0-9]+\M', 'N', 'g') $$;
-- try to load, and serve what loads; the error message, or 'loaded'
CREATE FUNCTION pg_temp.try_load(b bytea) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  PERFORM glintru_load_model('bad_input_probe', b, replace => true);
  PERFORM glintru_recommend_history('bad_input_probe', ARRAY[103, 106, 109, 112, 115, 118], 30, false);
  PERFORM glintru_recommend_history('bad_input_probe', '{}');
  RETURN 'loaded';
EXCEPTION WHEN others THEN
  RETURN SQLERRM;
END $$;

-- the helpers reproduce the file exactly, and it loads
SELECT pg_temp.st_rebuild_text(:'f', convert_from(substring(:'f'::bytea FROM 9 FOR pg_temp.st_hlen(:'f')::int), 'UTF8')) = :'f'::bytea AS helpers_round_trip;
SELECT pg_temp.st_hlen(:'f')::bigint AS header_bytes, jsonb_pretty(pg_temp.st_header(:'f')->'__metadata__') AS metadata;
SELECT glintru_load_model('bad_input_ok', :'f') > 0 AS loaded;
SELECT pg_temp.st_rebuild(:'f', pg_temp.st_header(:'f')) <> :'f'::bytea AS reserialised,
       glintru_load_model('bad_input_ok', pg_temp.st_rebuild(:'f', pg_temp.st_header(:'f')), replace => true) > 0 AS loads_too;
SELECT glintru_load_model('bad_input_nopop', pg_temp.st_drop(:'f', 'item_popularity')) > 0 AS loads_without_popularity;

-- ---- every prefix of the file is rejected ----
CREATE TEMP TABLE prefix_result AS
SELECT n, pg_temp.try_load(substring(:'f'::bytea FROM 1 FOR n)) AS msg
FROM generate_series(0, length(:'f'::bytea) - 1) n;
SELECT count(*) AS prefixes, count(*) FILTER (WHERE msg <> 'loaded') AS rejected FROM prefix_result;
-- the messages, with numbers and names abstracted
SELECT pg_temp.norm(msg) AS message, count(*), min(n) AS from_len, max(n) AS to_len
FROM prefix_result GROUP BY 1 ORDER BY min(n);
-- a few in full
SELECT n, msg FROM prefix_result WHERE n IN (0, 7, 8, 9, 100, 3175, 3176, 3177, 3208, 11283) ORDER BY n;

-- ---- single-byte corruption of every header byte (length prefix included) ----
-- each byte replaced by '{', '"', '9', 0xff and NUL, where that changes it
CREATE TEMP TABLE corrupt_result AS
SELECT i, v, pg_temp.try_load(set_byte(:'f'::bytea, i, v)) AS msg
FROM generate_series(0, 8 + pg_temp.st_hlen(:'f')::int - 1) i,
     unnest(ARRAY[ascii('{'), ascii('"'), ascii('9'), 255, 0]) v
WHERE get_byte(:'f'::bytea, i) <> v;
SELECT CASE v WHEN 0 THEN 'NUL' WHEN 255 THEN '0xff' ELSE chr(v) END AS byte,
       count(*) AS corruptions,
       count(*) FILTER (WHERE msg = 'loaded') AS loaded,
       count(*) FILTER (WHERE msg <> 'loaded') AS rejected
FROM corrupt_result GROUP BY v ORDER BY v;
-- the corruptions that still load (and serve): a renamed (so ignored) optional metadata
-- key, or another valid number
SELECT (regexp_match(left(h, i - 8), '[^"]*$'))[1] || (regexp_match(substring(h FROM i - 7), '^[^"]*'))[1] AS token,
       string_agg(DISTINCT CASE v WHEN 0 THEN 'NUL' WHEN 255 THEN '0xff' ELSE chr(v) END, ' ') AS replaced_by,
       count(*)
FROM corrupt_result, convert_from(substring(:'f'::bytea FROM 9 FOR pg_temp.st_hlen(:'f')::int), 'UTF8') h
WHERE msg = 'loaded' GROUP BY 1 ORDER BY 1;
SELECT pg_temp.norm(msg) AS message, count(*)
FROM corrupt_result WHERE msg <> 'loaded' GROUP BY 1 ORDER BY 2 DESC, 1;

-- ---- wrong dtypes ----
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{dense1.weight,dtype}', '"F16"')) AS f16_weight;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{item_embedding.weight,dtype}', '"I32"')) AS i32_embedding;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{item_ids,dtype}', '"I32"')) AS i32_item_ids;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{item_popularity,dtype}', '"F16"')) AS f16_popularity;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{dense1.bias,dtype}', '"I64"')) AS i64_bias;  -- 8 I64 need 64 bytes

-- ---- wrong shapes ----
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{dense1.weight,shape}', '[4, 16]')) AS same_size_other_shape;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{dense1.weight,shape}', '[8, 4]')) AS size_mismatch;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{conv1d.weight,shape}', '[8, 24]')) AS conv_2d;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{item_embedding.weight,shape}', '[248]')) AS embedding_1d;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{item_ids,shape}', '[31, 1]')) AS item_ids_2d;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{weights,shape}', '[1, 2]')) AS mix_logits_2d;

-- ---- missing, unknown, duplicate tensors ----
SELECT pg_temp.try_load(pg_temp.st_drop(:'f', 'dense3.bias')) AS missing_tensor;
SELECT pg_temp.try_load(pg_temp.st_drop(:'f', 'item_embedding.weight')) AS missing_embedding;
SELECT pg_temp.try_load(pg_temp.st_rebuild(:'f', pg_temp.st_header(:'f') - 'dense3.bias')) AS header_entry_missing;
SELECT pg_temp.try_load(pg_temp.st_build(
         (pg_temp.st_header(:'f') || '{"extra.weight": {"dtype": "F32", "shape": [2], "data_offsets": [8108, 8116]}}')::text,
         pg_temp.st_data(:'f') || '\x0000803f00000040'::bytea)) AS unknown_tensor;
SELECT pg_temp.try_load(pg_temp.st_rebuild_text(:'f',
         rtrim(convert_from(substring(:'f'::bytea FROM 9 FOR pg_temp.st_hlen(:'f')::int), 'UTF8'), ' }')
         || '},"weights":{"dtype":"F32","shape":[2],"data_offsets":[8100,8108]}}')) AS duplicate_key;

SELECT pg_temp.try_load(pg_temp.st_build(
         '{' || string_agg(format('"t%s":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}', i), ',') || '}', '')) AS too_many_tensors
FROM generate_series(1, 300) i;
SELECT pg_temp.try_load(pg_temp.st_rebuild(:'f', pg_temp.st_header(:'f')
         || jsonb_build_object(convert_from('\xc3a9'::bytea, 'UTF8'), '{"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}'::jsonb)))
       AS non_ascii_name;
SELECT pg_temp.try_load(set_byte(:'f'::bytea, position('"item_ids"'::bytea IN :'f'::bytea) + 4, 255)) AS invalid_utf8_name;

-- ---- non-finite values, bad popularity, duplicate item ids ----
SELECT pg_temp.try_load(pg_temp.st_patch(:'f', 'dense2.weight', 4 * 10, '\x0000c07f')) AS nan_weight;
SELECT pg_temp.try_load(pg_temp.st_patch(:'f', 'item_embedding.weight', 4 * 17, '\x0000807f')) AS inf_embedding;
SELECT pg_temp.try_load(pg_temp.st_patch(:'f', 'LayerNorm.bias', 0, '\x000080ff')) AS minus_inf_bias;
SELECT pg_temp.try_load(pg_temp.st_patch(:'f', 'item_popularity', 4 * 3, '\x000080bf')) AS negative_popularity;
SELECT pg_temp.try_load(pg_temp.st_patch(:'f', 'item_popularity', 4 * 4, '\x0000c07f')) AS nan_popularity;
SELECT pg_temp.try_load(pg_temp.st_patch(:'f', 'item_ids', 8 * 5, '\x6700000000000000')) AS duplicate_item_id;  -- row 5 := 103

-- ---- metadata ----
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{__metadata__,n_heads}', '"3"')) AS heads_3;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{__metadata__,n_heads}', '"0"')) AS heads_0;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{__metadata__,n_heads}', '"-2"')) AS heads_negative;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{__metadata__,n_heads}', '"16"')) AS heads_more_than_d;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{__metadata__,n_heads}', '"two"')) AS heads_not_a_number;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{__metadata__,n_heads}', '2')) AS heads_json_number;
SELECT pg_temp.try_load(pg_temp.st_rebuild(:'f', pg_temp.st_header(:'f') #- '{__metadata__,n_heads}')) AS no_heads;
SELECT pg_temp.try_load(pg_temp.st_rebuild(:'f', pg_temp.st_header(:'f') #- '{__metadata__,max_seq_len}')) AS no_max_seq_len;
SELECT pg_temp.try_load(pg_temp.st_rebuild(:'f', pg_temp.st_header(:'f') - '__metadata__')) AS no_metadata;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{__metadata__,max_seq_len}', '"0"')) AS max_seq_len_0;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{__metadata__,max_seq_len}', '"1000000000"')) AS max_seq_len_1e9;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{__metadata__,max_seq_len}', '"99999999999999999999"')) AS max_seq_len_overflow;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{__metadata__,layer_norm_eps}', '"0"')) AS eps_0;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{__metadata__,layer_norm_eps}', '"NaN"')) AS eps_nan;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{__metadata__,layer_norm_eps}', '"1e-50"')) AS eps_underflows_float;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{__metadata__,format}', '"other"')) AS format_other;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{__metadata__,format}', '"pt"')) AS format_pt;

-- ---- absurd sizes ----
SELECT pg_temp.try_load(overlay(:'f'::bytea PLACING '\x0000000000000080'::bytea FROM 1)) AS header_len_2_63;
SELECT pg_temp.try_load(overlay(:'f'::bytea PLACING '\xffffffffffffffff'::bytea FROM 1)) AS header_len_2_64_minus_1;
SELECT pg_temp.try_load(overlay(:'f'::bytea PLACING '\x142c000000000000'::bytea FROM 1)) AS header_len_file_len;  -- 11284
SELECT pg_temp.try_load(overlay(:'f'::bytea PLACING '\x0000000000000000'::bytea FROM 1)) AS header_len_0;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{item_embedding.weight,shape}', '[1, 248]')) AS one_row;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{item_embedding.weight,shape}', '[248, 1]')) AS d_1;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{item_embedding.weight,shape}', '[1000000000000000, 8]')) AS rows_1e15;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{item_embedding.weight,shape}', '[100000000000000000000, 8]')) AS rows_1e20;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{dense1.bias,shape}', '[1099511627776, 1099511627776]')) AS numel_overflows;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{dense1.bias,shape}', '[1, 1, 1, 1, 1, 1, 1, 1, 8]')) AS nine_dims;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{dense1.bias,shape}', '[8.0]')) AS fractional_dim;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{dense1.bias,shape}', '[-8]')) AS negative_dim;

-- ---- data offsets ----
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{LayerNorm.weight,data_offsets}', '[16, 48]')) AS overlapping;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{LayerNorm.weight,data_offsets}', '[0, 32]')) AS identical_ranges;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{weights,data_offsets}', '[8104, 8112]')) AS past_the_end;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{weights,data_offsets}', '[8108, 8100]')) AS begin_after_end;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{weights,data_offsets}', '[18446744073709551615, 8]')) AS offset_2_64;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{weights,data_offsets}', '[8100]')) AS one_offset;
SELECT pg_temp.try_load(pg_temp.st_splice(:'f', 32, 32, '\x00000000')) AS hole;
SELECT pg_temp.try_load(:'f'::bytea || '\x00000000'::bytea) AS bytes_after_last_tensor;

-- ---- broken JSON ----
SELECT pg_temp.try_load(pg_temp.st_rebuild_text(:'f', pg_temp.st_header(:'f')::text || ' x')) AS trailing_garbage;
SELECT pg_temp.try_load(pg_temp.st_rebuild_text(:'f', pg_temp.st_header(:'f')::text || '{}')) AS two_objects;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{dense1.bias,extra}', (repeat('[', 17) || repeat(']', 17))::jsonb)) AS nested_17;
SELECT pg_temp.try_load(pg_temp.st_set(:'f', '{dense1.bias,extra}', (repeat('[', 15) || repeat(']', 15))::jsonb)) AS nested_15;
SELECT pg_temp.try_load(pg_temp.st_rebuild_text(:'f', repeat('[', 100000) || repeat(']', 100000))) AS nested_100000;
SELECT pg_temp.try_load(pg_temp.st_rebuild_text(:'f', '{"a":' || repeat('{"a":', 100000) || '1' || repeat('}', 100001))) AS nested_objects;
SELECT pg_temp.try_load(pg_temp.st_rebuild_text(:'f', '{"__metadata__":{"format":"glintru}}')) AS unterminated_string;
SELECT pg_temp.try_load(pg_temp.st_rebuild_text(:'f', '{"__metadata__":{"format":"gl\qintru"}}')) AS bad_escape;
SELECT pg_temp.try_load(pg_temp.st_rebuild_text(:'f', '{"__metadata__":{"format":"\u12"}}')) AS truncated_unicode_escape;
SELECT pg_temp.try_load(pg_temp.st_rebuild_text(:'f', '{"__metadata__":{"format":"gl' || chr(10) || 'intru"}}')) AS control_character;
SELECT pg_temp.try_load(pg_temp.st_rebuild_text(:'f', '{"__metadata__":{"max_seq_len":5}}')) AS metadata_number;
SELECT pg_temp.try_load(pg_temp.st_rebuild_text(:'f', '[1, 2, 3]')) AS array_header;
SELECT pg_temp.try_load(pg_temp.st_rebuild_text(:'f', '"glintru"')) AS string_header;
SELECT pg_temp.try_load(pg_temp.st_rebuild_text(:'f', '{}')) AS empty_object;
SELECT pg_temp.try_load(pg_temp.st_rebuild_text(:'f', '  ')) AS blank_header;
SELECT pg_temp.try_load(pg_temp.st_rebuild_text(:'f', '{"__metadata__":{"format":"glintru"},}')) AS trailing_comma;
SELECT pg_temp.try_load(pg_temp.st_rebuild_text(:'f', '{"dense1.bias":{"dtype":"F32","shape":[8],"data_offsets":[0,32]')) AS unclosed_object;
SELECT pg_temp.try_load(pg_temp.st_rebuild_text(:'f', '{"dense1.bias":{}}')) AS empty_tensor_entry;
SELECT pg_temp.try_load(pg_temp.st_rebuild_text(:'f', '{"' || repeat('x', 2000) || '":{}}')) AS very_long_name;
SELECT pg_temp.try_load('\x'::bytea) AS empty_file;

-- the server is still up, and serving
SELECT 1 AS still_up;
SELECT count(*) AS recommendations, bool_and(item_id > 0) AS real_items
FROM glintru_recommend_history('bad_input_ok', ARRAY[103, 106, 109]);
SELECT count(*) AS popular_items FROM glintru_recommend_history('bad_input_ok', '{}');
SELECT count(*) AS no_popularity_no_rows FROM glintru_recommend_history('bad_input_nopop', '{}');
SELECT name FROM glintru_models() WHERE name LIKE 'bad_input%' ORDER BY name;

SELECT glintru_drop_model('bad_input_ok'), glintru_drop_model('bad_input_nopop'), glintru_drop_model('bad_input_probe');
SELECT count(*) AS models_left FROM glintru_models() WHERE name LIKE 'bad_input%';
