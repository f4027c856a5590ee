-- recommend.sql — glintru_recommend_history() and glintru_user_vector() on a
-- history given in the call (issue 2 item 4): defaults, ordering, exclusion
-- of seen items, unknown items, empty histories (popularity), windowing to
-- max_seq_len, and the errors.  Material: the bundled small model (30 items
-- with ids 103, 106, ..., 190 in rows 1..30, d = 8, 2 heads, max_seq_len 5,
-- with item_popularity).  Scores are rounded to 4 decimals.
\set mfile `echo "${GLINTRU_TEST_DATA:-$PWD/test/data}"`/small/model.safetensors
SELECT pg_read_binary_file(:'mfile') AS f \gset

-- ---- helpers: read the file's own tensors, and drop one ----
CREATE FUNCTION pg_temp.st_hlen(b bytea) RETURNS int LANGUAGE sql IMMUTABLE AS $$
  SELECT sum(get_byte(b, i)::bigint << (8 * i))::int FROM generate_series(0, 7) i $$;
CREATE FUNCTION pg_temp.st_header(b bytea) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT convert_from(substring(b FROM 9 FOR pg_temp.st_hlen(b)), 'UTF8')::jsonb $$;
-- the bytes of one tensor
CREATE FUNCTION pg_temp.st_tensor(b bytea, tensor text) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
  SELECT substring(b FROM 9 + pg_temp.st_hlen(b) + (pg_temp.st_header(b)->tensor->'data_offsets'->>0)::int
                   FOR (pg_temp.st_header(b)->tensor->'data_offsets'->>1)::int
                       - (pg_temp.st_header(b)->tensor->'data_offsets'->>0)::int) $$;
-- little-endian I64 and (finite) F32 values
CREATE FUNCTION pg_temp.le_i64(b bytea, o int) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
  SELECT sum(get_byte(b, o + i)::bigint << (8 * i))::bigint FROM generate_series(0, 7) i $$;
CREATE FUNCTION pg_temp.le_f32(b bytea, o int) RETURNS float8 LANGUAGE sql IMMUTABLE AS $$
  SELECT (CASE WHEN bits >> 31 = 1 THEN -1 ELSE 1 END)
         * CASE WHEN (bits >> 23) & 255 = 0 THEN (bits & 8388607) * 2.0::float8 ^ -149
                ELSE (1 + (bits & 8388607) / 8388608.0::float8) * 2.0::float8 ^ (((bits >> 23) & 255) - 127) END
  FROM (SELECT sum(get_byte(b, o + i)::bigint << (8 * i)) ::bigint AS bits FROM generate_series(0, 3) i) s $$;
-- remove a tensor: its header entry and its bytes, later offsets shifted
CREATE FUNCTION pg_temp.st_drop(b bytea, tensor text) RETURNS bytea LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  n int := pg_temp.st_hlen(b);
  h jsonb := pg_temp.st_header(b);
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

-- the catalogue as the file has it: row, external id, popularity
CREATE TEMP TABLE items AS
SELECT r AS row, pg_temp.le_i64(pg_temp.st_tensor(:'f', 'item_ids'), 8 * r) AS item_id,
       pg_temp.le_f32(pg_temp.st_tensor(:'f', 'item_popularity'), 4 * r) AS popularity
FROM generate_series(1, 30) r;
SELECT count(*) AS items, min(item_id), max(item_id), sum(popularity) AS total_count FROM items;

SELECT glintru_load_model('recommend_m', :'f') > 0 AS loaded;
SELECT glintru_load_model('recommend_nopop', pg_temp.st_drop(:'f', 'item_popularity')) > 0 AS loaded_without_popularity;

-- ---- defaults: k = 10, exclude_seen = true; best first ----
SELECT item_id, round(score::numeric, 4) AS score
FROM glintru_recommend_history('recommend_m', ARRAY[103, 106, 109]);
SELECT count(*) AS rows,
       bool_and(score <= prev) AS non_increasing,
       count(*) FILTER (WHERE item_id IN (103, 106, 109)) AS history_items,
       count(DISTINCT item_id) AS distinct_items
FROM (SELECT item_id, score, lag(score, 1, 'Infinity') OVER (ORDER BY ord) AS prev
      FROM glintru_recommend_history('recommend_m', ARRAY[103, 106, 109]) WITH ORDINALITY r(item_id, score, ord)) s;
-- the defaults are k => 10, exclude_seen => true
SELECT (SELECT array_agg(item_id) FROM glintru_recommend_history('recommend_m', ARRAY[103, 106, 109]))
     = (SELECT array_agg(item_id) FROM glintru_recommend_history('recommend_m', ARRAY[103, 106, 109], 10, true))
       AS defaults_are_10_true;

-- ---- exclude_seen => false includes the history's items ----
SELECT item_id, round(score::numeric, 4) AS score, item_id IN (103, 106, 109) AS seen
FROM glintru_recommend_history('recommend_m', ARRAY[103, 106, 109], exclude_seen => false);
-- exclude_seen => true is the full ranking without the history's items
SELECT (SELECT array_agg(item_id ORDER BY ord)
        FROM glintru_recommend_history('recommend_m', ARRAY[103, 106, 109], 10) WITH ORDINALITY r(item_id, score, ord))
     = (SELECT (array_agg(item_id ORDER BY ord) FILTER (WHERE item_id NOT IN (103, 106, 109)))[1:10]
        FROM glintru_recommend_history('recommend_m', ARRAY[103, 106, 109], 30, false) WITH ORDINALITY r(item_id, score, ord))
       AS excluded_from_full_ranking;

-- ---- k beyond the catalogue: the whole catalogue ----
SELECT count(*) AS rows, count(DISTINCT item_id) AS distinct_items,
       bool_and(item_id IN (SELECT item_id FROM items)) AS all_known,
       bool_and(score <= prev) AS non_increasing
FROM (SELECT item_id, score, lag(score, 1, 'Infinity') OVER (ORDER BY ord) AS prev
      FROM glintru_recommend_history('recommend_m', ARRAY[103, 106, 109], 1000, false) WITH ORDINALITY r(item_id, score, ord)) s;
SELECT count(*) AS rows_excluding_seen
FROM glintru_recommend_history('recommend_m', ARRAY[103, 106, 109, 106], 2147483647);
SELECT item_id, round(score::numeric, 4) AS score FROM glintru_recommend_history('recommend_m', ARRAY[103, 106, 109], 1);

-- ---- unknown items are skipped ----
SELECT (SELECT array_agg(row(item_id, score)) FROM glintru_recommend_history('recommend_m', ARRAY[103, 106, 109]))
     = (SELECT array_agg(row(item_id, score))
        FROM glintru_recommend_history('recommend_m', ARRAY[1, 103, 0, 106, -5, 109, 9223372036854775807, 104]))
       AS unknown_skipped,
       (SELECT array_agg(row(item_id, score)) FROM glintru_recommend_history('recommend_m', ARRAY[103, 106, 109], 30, false))
     = (SELECT array_agg(row(item_id, score))
        FROM glintru_recommend_history('recommend_m', ARRAY[1, 103, 0, 106, -5, 109, 9223372036854775807, 104], 30, false))
       AS unknown_skipped_full;

-- ---- no known item: the most popular items, scored by their count ----
SELECT item_id, score FROM glintru_recommend_history('recommend_m', '{}');
-- the same as the file's item_popularity, most popular first, ties to the lower row
SELECT (SELECT array_agg(row(item_id, score::float8)) FROM glintru_recommend_history('recommend_m', '{}', 30))
     = (SELECT array_agg(row(item_id, popularity) ORDER BY popularity DESC, row) FROM items)
       AS popularity_order;
SELECT (SELECT array_agg(row(item_id, score)) FROM glintru_recommend_history('recommend_m', '{}'))
     = (SELECT array_agg(row(item_id, score)) FROM glintru_recommend_history('recommend_m', ARRAY[1, 2, 999]))
       AS unknown_only_is_empty,
       (SELECT array_agg(row(item_id, score)) FROM glintru_recommend_history('recommend_m', '{}', 10, false))
     = (SELECT array_agg(row(item_id, score)) FROM glintru_recommend_history('recommend_m', '{}', 10, true))
       AS exclude_seen_irrelevant;
SELECT count(*) AS whole_catalogue FROM glintru_recommend_history('recommend_m', '{}', 100);
SELECT item_id, score FROM glintru_recommend_history('recommend_m', ARRAY[5, 6], 3);
-- a model without item_popularity has nothing to say about an empty history
SELECT count(*) AS rows FROM glintru_recommend_history('recommend_nopop', '{}');
SELECT count(*) AS rows FROM glintru_recommend_history('recommend_nopop', ARRAY[1, 2, 999]);
-- ... but ranks histories exactly as the full model does
SELECT (SELECT array_agg(row(item_id, score)) FROM glintru_recommend_history('recommend_m', ARRAY[103, 106, 109]))
     = (SELECT array_agg(row(item_id, score)) FROM glintru_recommend_history('recommend_nopop', ARRAY[103, 106, 109]))
       AS same_ranking;

-- ---- errors ----
SELECT * FROM glintru_recommend_history('recommend_m', ARRAY[103, NULL, 109]);
SELECT * FROM glintru_recommend_history('recommend_m', ARRAY[NULL]::bigint[]);
SELECT * FROM glintru_recommend_history('recommend_m', ARRAY[103], 0);
SELECT * FROM glintru_recommend_history('recommend_m', ARRAY[103], -1);
SELECT * FROM glintru_recommend_history('recommend_nope', ARRAY[103]);
SELECT * FROM glintru_recommend_history('recommend_m', ARRAY[[103, 106], [109, 112]]);
SELECT * FROM glintru_recommend_history('recommend_m', '{{103}}');
SELECT glintru_user_vector('recommend_m', ARRAY[103, NULL]);
SELECT glintru_user_vector('recommend_nope', ARRAY[103]);
SELECT glintru_user_vector('recommend_m', ARRAY[[103, 106], [109, 112]]);
-- strict: NULL arguments give no rows / NULL
SELECT count(*) AS rows FROM glintru_recommend_history('recommend_m', NULL);
SELECT count(*) AS rows FROM glintru_recommend_history('recommend_m', ARRAY[103], NULL);
SELECT glintru_user_vector('recommend_m', NULL) IS NULL AS null_vector;
-- a lower bound other than 1 is fine
SELECT (SELECT array_agg(item_id) FROM glintru_recommend_history('recommend_m', '[0:2]={103,106,109}'::bigint[]))
     = (SELECT array_agg(item_id) FROM glintru_recommend_history('recommend_m', ARRAY[103, 106, 109]))
       AS lower_bound_ignored;

-- ---- windowing: only the last max_seq_len = 5 items count ----
SELECT (SELECT array_agg(row(item_id, score))
        FROM glintru_recommend_history('recommend_m', ARRAY[190, 187, 184, 103, 106, 109, 112, 115], 30, false))
     = (SELECT array_agg(row(item_id, score))
        FROM glintru_recommend_history('recommend_m', ARRAY[103, 106, 109, 112, 115], 30, false))
       AS last_5_only,
       glintru_user_vector('recommend_m', ARRAY[190, 187, 184, 103, 106, 109, 112, 115])
     = glintru_user_vector('recommend_m', ARRAY[103, 106, 109, 112, 115]) AS same_user_vector;
-- unknown items do not take a slot of the window
SELECT glintru_user_vector('recommend_m', ARRAY[190, 103, 1, 106, 2, 109, 3, 112, 4, 115, 5])
     = glintru_user_vector('recommend_m', ARRAY[103, 106, 109, 112, 115]) AS unknown_not_in_window;
-- a history of 1000 items: its last five
SELECT glintru_user_vector('recommend_m', array_append(array_fill(190::bigint, ARRAY[995]) || ARRAY[103, 106, 109, 112]::bigint[], 115))
     = glintru_user_vector('recommend_m', ARRAY[103, 106, 109, 112, 115]) AS long_history;
-- within the window every item counts, and order matters
SELECT glintru_user_vector('recommend_m', ARRAY[187, 103, 106, 109, 112])
    <> glintru_user_vector('recommend_m', ARRAY[103, 106, 109, 112]) AS fifth_item_counts,
       glintru_user_vector('recommend_m', ARRAY[103, 106, 109])
    <> glintru_user_vector('recommend_m', ARRAY[109, 106, 103]) AS order_counts;
-- exclude_seen excludes the whole history, also items before the window
SELECT count(*) AS rows,
       count(*) FILTER (WHERE item_id IN (190, 187, 184, 103, 106, 109, 112, 115)) AS seen_items
FROM glintru_recommend_history('recommend_m', ARRAY[190, 187, 184, 103, 106, 109, 112, 115], 100);

-- ---- glintru_user_vector ----
SELECT array_length(uv, 1) AS d, array_ndims(uv) AS ndims,
       (SELECT bool_and(v NOT IN ('NaN', 'Infinity', '-Infinity')) FROM unnest(uv) v) AS finite
FROM glintru_user_vector('recommend_m', ARRAY[103, 106, 109]) uv;
SELECT glintru_user_vector('recommend_m', ARRAY[1, 2, 999]) IS NULL AS unknown_only_null,
       glintru_user_vector('recommend_m', '{}') IS NULL AS empty_null,
       glintru_user_vector('recommend_nopop', '{}') IS NULL AS empty_null_nopop;
-- the scores are the user vector's dot products with the item embeddings:
-- the best item's score, recomputed from the file's item_embedding.weight
SELECT abs((SELECT sum(u * pg_temp.le_f32(pg_temp.st_tensor(:'f', 'item_embedding.weight'), 4 * (8 * i.row + (j - 1)::int)))
            FROM unnest(glintru_user_vector('recommend_m', ARRAY[103, 106, 109])) WITH ORDINALITY x(u, j))
           - r.score) < 1e-5 AS score_is_dot_product
FROM glintru_recommend_history('recommend_m', ARRAY[103, 106, 109], 1) r JOIN items i USING (item_id);

-- ---- clean up ----
SELECT glintru_drop_model('recommend_m'), glintru_drop_model('recommend_nopop');
