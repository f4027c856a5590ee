-- filters.sql — business filters and item scoring: candidates (rank only
-- these) and exclude (never return these) on glintru_recommend,
-- glintru_recommend_history and glintru_recommend_batch, combined with
-- exclude_seen; glintru_score and glintru_score_history.
--
-- The reference everywhere is the unfiltered ranking: a filtered top-k must
-- be the full ranking (k = 1000) with the filtered-out items removed, cut at
-- k, with the very same scores (compared with =, not a tolerance: a
-- candidate list is scored by the catalogue scan's kernel).  Only booleans
-- and counts are printed.
--
-- Material: the bundled small model (30 items with ids 103, 106, ..., 190,
-- d = 8, max_seq_len 5, with item_popularity); users 1..4 with histories in
-- an attached table, user 99 without state (served by popularity).
\set mfile `echo "${GLINTRU_TEST_DATA:-$PWD/test/data}"`/small/model.safetensors
SELECT glintru_load_model_file('filters_m', :'mfile') > 0 AS loaded;

CREATE TABLE filt_events (user_id bigint, item_id bigint, ts bigint);
CREATE TABLE filt_items (item_id bigint PRIMARY KEY, category text, in_stock boolean);
INSERT INTO filt_items
SELECT i, CASE WHEN i % 2 = 0 THEN 'shoes' ELSE 'hats' END, i % 5 <> 0
FROM generate_series(103, 190, 3) i;
SELECT glintru_attach('filters_m', 'filt_events');
INSERT INTO filt_events VALUES
  (1, 103, 1), (1, 106, 2), (1, 109, 3), (1, 112, 4),
  (2, 190, 1), (2, 187, 2), (2, 184, 3),
  (3, 130, 1), (3, 133, 2), (3, 136, 3), (3, 139, 4), (3, 142, 5), (3, 145, 6), (3, 148, 7),
  (4, 160, 1), (4, 9999, 2);      -- an unknown item

-- ---- the reference: the unfiltered ranking restricted by the filters ----
-- true iff the filtered top-k equals the full ranking minus the filtered-out
-- items, cut at k: same items, same order, same scores (exactly)
CREATE FUNCTION pg_temp.restricted(got anyarray, full_items bigint[], full_scores real[],
                                   k int, cand bigint[], excl bigint[]) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce(got = (SELECT array_agg(row(i, s)::record ORDER BY n)
                         FROM (SELECT i, s, n FROM unnest(full_items, full_scores) WITH ORDINALITY f(i, s, n)
                               WHERE coalesce(cand IS NULL OR i IN (SELECT unnest(cand)), false) AND NOT coalesce(i IN (SELECT unnest(excl)), false)
                               ORDER BY n LIMIT k) x),
                  got IS NULL AND NOT EXISTS (
                    SELECT 1 FROM unnest(full_items) i
                    WHERE coalesce(cand IS NULL OR i IN (SELECT unnest(cand)), false) AND NOT coalesce(i IN (SELECT unnest(excl)), false))) $$;
-- glintru_recommend with filters against its own full ranking
CREATE FUNCTION pg_temp.check_user(u bigint, k int, seen boolean, cand bigint[], excl bigint[]) RETURNS boolean
LANGUAGE sql AS $$
  SELECT pg_temp.restricted(
    (SELECT array_agg(row(item_id, score)::record ORDER BY n)
     FROM glintru_recommend(u, k, seen, 'filt_events', cand, excl) WITH ORDINALITY r(item_id, score, n)),
    (SELECT array_agg(item_id ORDER BY n) FROM glintru_recommend(u, 1000, seen, 'filt_events') WITH ORDINALITY r(item_id, score, n)),
    (SELECT array_agg(score ORDER BY n) FROM glintru_recommend(u, 1000, seen, 'filt_events') WITH ORDINALITY r(item_id, score, n)),
    k, cand, excl) $$;
-- glintru_recommend_history with filters against its own full ranking
CREATE FUNCTION pg_temp.check_hist(h bigint[], k int, seen boolean, cand bigint[], excl bigint[]) RETURNS boolean
LANGUAGE sql AS $$
  SELECT pg_temp.restricted(
    (SELECT array_agg(row(item_id, score)::record ORDER BY n)
     FROM glintru_recommend_history('filters_m', h, k, seen, cand, excl) WITH ORDINALITY r(item_id, score, n)),
    (SELECT array_agg(item_id ORDER BY n) FROM glintru_recommend_history('filters_m', h, 1000, seen) WITH ORDINALITY r(item_id, score, n)),
    (SELECT array_agg(score ORDER BY n) FROM glintru_recommend_history('filters_m', h, 1000, seen) WITH ORDINALITY r(item_id, score, n)),
    k, cand, excl) $$;

-- the filter cases: candidates / exclude, with unknown ids, NULLs, duplicates, any order
CREATE TEMP TABLE cases (c int, cand bigint[], excl bigint[]);
INSERT INTO cases VALUES
  (1, NULL, NULL),
  (2, ARRAY[190, 103, 130, 160, 175, 106, 148], NULL),
  (3, NULL, ARRAY[136, 118, 115, 112, 166]),
  (4, ARRAY[190, 103, 130, 160, 175, 106, 148], ARRAY[103, 160]),
  (5, ARRAY[109, 109, 1, NULL, 142, 5000, 142, 109], ARRAY[NULL, 7]::bigint[]),   -- duplicates, unknown, NULL
  (6, ARRAY(SELECT item_id FROM filt_items WHERE category = 'shoes'), ARRAY(SELECT item_id FROM filt_items WHERE NOT in_stock)),
  (7, '{}', NULL),                                              -- empty candidates: nothing
  (8, NULL, ARRAY(SELECT item_id FROM filt_items)),              -- everything excluded
  (9, ARRAY[103, 106, 109, 112], ARRAY[103, 106, 109, 112]),     -- all candidates excluded
  (10, ARRAY[103, 106, 109, 112, 130, 133], NULL),               -- user 1's history and more
  (11, ARRAY[1, 2, 3]::bigint[], NULL),                          -- no known candidate
  (12, NULL, '{}'),                                              -- empty exclude: nothing excluded
  (13, ARRAY(SELECT generate_series(1, 100000)::bigint), NULL),  -- 100k ids: all items among them
  (14, NULL, ARRAY(SELECT generate_series(1, 100000)::bigint)),  -- 100k ids excluded: nothing left
  (15, ARRAY(SELECT generate_series(1, 100000)::bigint), ARRAY(SELECT generate_series(150, 100000)::bigint));

-- ---- glintru_recommend ----
SELECT count(*) AS checks, bool_and(pg_temp.check_user(u, k, seen, cand, excl)) AS all_restricted
FROM cases, unnest(ARRAY[1, 3, 4, 99]::bigint[]) u, unnest(ARRAY[1, 4, 30]) k, unnest(ARRAY[true, false]) seen
WHERE c < 13;
-- the 100k-id arrays (the reference is slow with them, not the filter)
SELECT c, bool_and(pg_temp.check_user(u, 30, true, cand, excl)) AS restricted
FROM cases, unnest(ARRAY[3, 99]::bigint[]) u WHERE c >= 13 GROUP BY c ORDER BY c;
-- k rows whenever k items qualify
SELECT c, (SELECT count(*) FROM glintru_recommend(3, 5, true, 'filt_events', cand, excl)) AS rows
FROM cases ORDER BY c;
-- exclude_seen with candidates: the window's items are not returned, unless exclude_seen => false
SELECT (SELECT count(*) FROM glintru_recommend(1, 10, true, 'filt_events', ARRAY[103, 106, 109, 112, 130])) AS seen_excluded,
       (SELECT count(*) FROM glintru_recommend(1, 10, false, 'filt_events', ARRAY[103, 106, 109, 112, 130])) AS seen_included,
       (SELECT array_agg(item_id) FROM glintru_recommend(1, 10, true, 'filt_events', ARRAY[103, 106, 109, 112, 130])) AS only;
-- candidate order, duplicates and unknown ids do not matter
SELECT (SELECT array_agg(row(item_id, score)) FROM glintru_recommend(2, 4, true, 'filt_events', ARRAY[103, 130, 160, 175, 106]))
     = (SELECT array_agg(row(item_id, score)) FROM glintru_recommend(2, 4, true, 'filt_events', ARRAY[106, 175, 1, 160, 130, 103, 130, NULL]))
       AS order_irrelevant;
-- named arguments; the defaults (k 10, exclude_seen, the only attachment) still apply
SELECT (SELECT array_agg(row(item_id, score)) FROM glintru_recommend(2, candidates => ARRAY[103, 130, 160, 175, 106]))
     = (SELECT array_agg(row(item_id, score)) FROM glintru_recommend(2, 10, true, 'filt_events', ARRAY[103, 130, 160, 175, 106]))
       AS named_arguments,
       (SELECT array_agg(row(item_id, score)) FROM glintru_recommend(2))
     = (SELECT array_agg(row(item_id, score)) FROM glintru_recommend(2, 10, true, NULL, NULL, NULL))
       AS null_filters_filter_nothing;
-- "never recommend anything the user ever bought": user 3's whole history, not only the window
SELECT count(*) AS rows,
       count(*) FILTER (WHERE item_id IN (SELECT item_id FROM filt_events WHERE user_id = 3)) AS bought
FROM glintru_recommend(3, 30, exclude => ARRAY(SELECT item_id FROM filt_events WHERE user_id = 3));
-- a user without state: the popular items, filtered, scored by popularity
SELECT (SELECT array_agg(row(item_id, score)) FROM glintru_recommend(99, 3, true, 'filt_events', ARRAY[190, 103, 130, 160]))
     = (SELECT (array_agg(row(item_id, score)) FILTER (WHERE item_id IN (190, 103, 130, 160)))[1:3]
        FROM glintru_recommend(99, 30, true, 'filt_events')) AS popular_restricted;

-- ---- glintru_recommend_history ----
CREATE TEMP TABLE hists (h bigint[]);
INSERT INTO hists VALUES (ARRAY[103, 106, 109]), (ARRAY[190, 187, 184, 103, 106, 109, 112, 115]),
                         (ARRAY[1, 2, 3]), ('{}'), (ARRAY[130, 1, 133, 130]);
SELECT count(*) AS checks, bool_and(pg_temp.check_hist(h, k, seen, cand, excl)) AS all_restricted
FROM cases, hists, unnest(ARRAY[1, 4, 30]) k, unnest(ARRAY[true, false]) seen WHERE c < 13;
SELECT c, bool_and(pg_temp.check_hist(h, 30, true, cand, excl)) AS restricted
FROM cases, hists WHERE c >= 13 GROUP BY c ORDER BY c;
-- exclude_seen removes the whole history (also before the window) from the candidates
SELECT count(*) AS rows,
       count(*) FILTER (WHERE item_id IN (190, 187, 184, 103, 106, 109, 112, 115)) AS seen_items
FROM glintru_recommend_history('filters_m', ARRAY[190, 187, 184, 103, 106, 109, 112, 115], 100,
                               candidates => ARRAY(SELECT item_id FROM filt_items));
SELECT count(*) AS rows FROM glintru_recommend_history('filters_m', ARRAY[103, 106], 10, true, ARRAY[103, 106]);
SELECT count(*) AS rows FROM glintru_recommend_history('filters_m', ARRAY[103, 106], 10, false, ARRAY[103, 106]);
-- NULL model, history, k or exclude_seen: still no rows (the function was STRICT before the filters)
SELECT (SELECT count(*) FROM glintru_recommend_history('filters_m', NULL)) AS null_history,
       (SELECT count(*) FROM glintru_recommend_history('filters_m', ARRAY[103], NULL)) AS null_k,
       (SELECT count(*) FROM glintru_recommend_history('filters_m', ARRAY[103], 10, NULL)) AS null_seen,
       (SELECT count(*) FROM glintru_recommend_history(NULL, ARRAY[103], candidates => ARRAY[106])) AS null_model;

-- ---- glintru_recommend_batch ----
-- with candidates: per user exactly glintru_recommend with the same filters
SELECT count(*) AS checks, bool_and(same) AS batch_equals_single
FROM (SELECT c, seen,
             coalesce((SELECT array_agg(row(user_id, item_id, score) ORDER BY n)
                       FROM glintru_recommend_batch(ARRAY[3, 99, 1, 4, 1]::bigint[], 4, seen, 'filt_events', cand, excl)
                            WITH ORDINALITY b(user_id, item_id, score, n))
                    = (SELECT array_agg(row(u, item_id, score) ORDER BY o, n)
                       FROM unnest(ARRAY[3, 99, 1, 4, 1]::bigint[]) WITH ORDINALITY x(u, o),
                            glintru_recommend(u, 4, seen, 'filt_events', cand, excl) WITH ORDINALITY r(item_id, score, n)),
                      NOT EXISTS (SELECT 1 FROM glintru_recommend_batch(ARRAY[3, 99, 1, 4, 1]::bigint[], 4, seen, 'filt_events', cand, excl)))
               AS same
      FROM cases, unnest(ARRAY[true, false]) seen WHERE cand IS NOT NULL AND c < 13) s;
-- exclude alone: the unfiltered batch ranking (one GEMM per block) restricted, same scores
SELECT count(*) AS checks, bool_and(same) AS batch_restricted
FROM (SELECT u, pg_temp.restricted(
               (SELECT array_agg(row(item_id, score)::record ORDER BY n)
                FROM glintru_recommend_batch(ARRAY[3, 99, 1, 4]::bigint[], 5, seen, 'filt_events', NULL, excl)
                     WITH ORDINALITY b(user_id, item_id, score, n) WHERE b.user_id = u),
               (SELECT array_agg(item_id ORDER BY n)
                FROM glintru_recommend_batch(ARRAY[3, 99, 1, 4]::bigint[], 1000, seen, 'filt_events')
                     WITH ORDINALITY b(user_id, item_id, score, n) WHERE b.user_id = u),
               (SELECT array_agg(score ORDER BY n)
                FROM glintru_recommend_batch(ARRAY[3, 99, 1, 4]::bigint[], 1000, seen, 'filt_events')
                     WITH ORDINALITY b(user_id, item_id, score, n) WHERE b.user_id = u),
               5, NULL, excl) AS same
      FROM cases, unnest(ARRAY[3, 99, 1, 4]::bigint[]) u, unnest(ARRAY[true, false]) seen WHERE cand IS NULL AND c < 13) s;
SELECT count(*) AS rows FROM glintru_recommend_batch(ARRAY[1, 2, 3]::bigint[], 5, true, 'filt_events', '{}');
SELECT count(*) AS rows FROM glintru_recommend_batch(ARRAY[1, 2, 99]::bigint[], 5, true, 'filt_events', NULL,
                                                     ARRAY(SELECT generate_series(1, 100000)::bigint));
SELECT user_id, count(*) AS rows FROM glintru_recommend_batch(ARRAY[1, 2, 99]::bigint[], 5, true, 'filt_events',
                                                              ARRAY(SELECT item_id FROM filt_items WHERE category = 'shoes'))
GROUP BY user_id ORDER BY user_id;

-- ---- glintru_score ----
-- the scores glintru_recommend prints, for every item (exclude_seen => false ranks them all)
SELECT u, bool_and(s.score = r.score) AS same_scores, count(*) AS items
FROM unnest(ARRAY[1, 2, 3, 4, 99]::bigint[]) u,
     glintru_score(u, ARRAY(SELECT item_id FROM filt_items ORDER BY item_id DESC), 'filt_events') s
     JOIN glintru_recommend(u, 1000, false, 'filt_events') r USING (item_id)
GROUP BY u ORDER BY u;
-- in the order given, duplicates repeated, unknown ids and NULLs with a NULL score
SELECT item_id, score IS NOT NULL AS scored
FROM glintru_score(1, ARRAY[190, 1, 103, NULL, 190, 100, 106], 'filt_events');
SELECT s.score = r.score AS same_as_candidates
FROM glintru_score(2, ARRAY[160], 'filt_events') s, glintru_recommend(2, 1, true, 'filt_events', ARRAY[160]) r;
SELECT count(*) AS rows FROM glintru_score(1, '{}', 'filt_events');
SELECT count(*) AS rows FROM glintru_score(1, ARRAY(SELECT generate_series(1, 100000)::bigint), 'filt_events');
SELECT count(score) AS scored FROM glintru_score(1, ARRAY(SELECT generate_series(1, 100000)::bigint));

-- ---- glintru_score_history ----
SELECT h, bool_and(s.score = r.score) AS same_scores, count(*) AS items
FROM hists, glintru_score_history('filters_m', h, ARRAY(SELECT item_id FROM filt_items)) s
     JOIN glintru_recommend_history('filters_m', h, 1000, false) r USING (item_id)
GROUP BY h ORDER BY h;
SELECT item_id, score IS NOT NULL AS scored
FROM glintru_score_history('filters_m', ARRAY[103, 106], ARRAY[109, NULL, 2, 109]);
-- a history with nothing known is scored by popularity, as glintru_recommend_history serves it
SELECT bool_and(s.score = r.score) AS popularity
FROM glintru_score_history('filters_m', ARRAY[1, 2], ARRAY[103, 106, 190]) s
     JOIN glintru_recommend_history('filters_m', '{}', 100) r USING (item_id);
SELECT count(*) AS rows FROM glintru_score_history('filters_m', ARRAY[103], NULL);

-- ---- a 0.1.0 declaration calling this library (no filter arguments) ----
CREATE FUNCTION pg_temp.rec_010(user_id bigint, k integer, exclude_seen boolean, interactions regclass)
RETURNS TABLE(item_id bigint, score real) AS '$libdir/glintru', 'glintru_recommend' LANGUAGE C STABLE;
CREATE FUNCTION pg_temp.hist_010(model text, history bigint[], k integer, exclude_seen boolean)
RETURNS TABLE(item_id bigint, score real) AS '$libdir/glintru', 'glintru_recommend_history' LANGUAGE C STABLE STRICT;
CREATE FUNCTION pg_temp.batch_010(user_ids bigint[], k integer, exclude_seen boolean, interactions regclass)
RETURNS TABLE(user_id bigint, item_id bigint, score real) AS '$libdir/glintru', 'glintru_recommend_batch' LANGUAGE C STABLE;
SELECT (SELECT array_agg(row(item_id, score)) FROM pg_temp.rec_010(3, 10, true, 'filt_events'))
     = (SELECT array_agg(row(item_id, score)) FROM glintru_recommend(3, 10, true, 'filt_events')) AS recommend_010,
       (SELECT array_agg(row(item_id, score)) FROM pg_temp.hist_010('filters_m', ARRAY[103, 106], 10, true))
     = (SELECT array_agg(row(item_id, score)) FROM glintru_recommend_history('filters_m', ARRAY[103, 106])) AS history_010,
       (SELECT array_agg(row(user_id, item_id, score)) FROM pg_temp.batch_010(ARRAY[1, 99]::bigint[], 10, true, 'filt_events'))
     = (SELECT array_agg(row(user_id, item_id, score)) FROM glintru_recommend_batch(ARRAY[1, 99]::bigint[])) AS batch_010;

-- ---- errors ----
SELECT * FROM glintru_recommend(1, 5, true, 'filt_events', ARRAY[[103, 106], [109, 112]]);
SELECT * FROM glintru_recommend(1, 5, true, 'filt_events', NULL, '{{103}}');
SELECT * FROM glintru_recommend_history('filters_m', ARRAY[103], 5, true, ARRAY[[103, 106]]);
SELECT * FROM glintru_recommend_batch(ARRAY[1]::bigint[], 5, true, 'filt_events', NULL, ARRAY[[103], [106]]);
SELECT * FROM glintru_recommend(1, 0, true, 'filt_events', ARRAY[103]);
SELECT * FROM glintru_score(NULL, ARRAY[103]);
SELECT * FROM glintru_score(1, NULL);
SELECT * FROM glintru_score(1, ARRAY[[103, 106]], 'filt_events');
SELECT * FROM glintru_score_history('filters_m', ARRAY[103], ARRAY[[103, 106]]);
SELECT * FROM glintru_score_history('filters_m', ARRAY[103, NULL], ARRAY[103]);
SELECT * FROM glintru_score_history('filters_nope', ARRAY[103], ARRAY[103]);
SELECT * FROM glintru_score(1, ARRAY[103], 'filt_items');

-- ---- clean up ----
SELECT glintru_detach('filt_events');
DROP TABLE filt_events, filt_items;
SELECT glintru_drop_model('filters_m');
