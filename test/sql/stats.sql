-- stats.sql — glintru_stats() and the glintru_stats view (issue 4): counts
-- after a known number of serving calls, inserts, deletes and refreshes,
-- the reset, and who may reset.  The cluster preloads glintru, so the
-- counters are shared.  Only counts and booleans are printed, never times.
-- Material: the bundled small model (ids 103, 106, ..., 190, max_seq_len 5).
\set mfile `echo "${GLINTRU_TEST_DATA:-$PWD/test/data}"`/small/model.safetensors
SELECT pg_read_binary_file(:'mfile') AS f \gset
SELECT glintru_load_model('st_small', :'f'::bytea) > 0 AS loaded;
SELECT glintru_stats_reset();
SELECT count(*) AS entries FROM glintru_stats;

-- ---- an eager table: the backfill, then serving calls ----
CREATE TABLE st_ev(user_id bigint, item_id bigint, ts bigserial);
CREATE INDEX ON st_ev(user_id, ts);
INSERT INTO st_ev(user_id, item_id) VALUES (1, 103), (1, 106), (2, 109);
SELECT glintru_attach('st_small', 'st_ev') AS users;
SELECT model, interactions, calls, trigger_events, rebuilds, state_bytes_written > 0 AS wrote
FROM glintru_stats WHERE model = 'st_small';
SELECT state_bytes_written AS backfill_bytes FROM glintru_stats WHERE interactions = 'st_ev'::regclass \gset

-- 5 calls of 3 rows, a batch of 2 users × 2 rows, a score of 2 items: 7 calls, 21 rows
SELECT count(*) FROM generate_series(1, 5) g, LATERAL glintru_recommend(g % 2 + 1, 3, interactions => 'st_ev');
SELECT count(*) FROM glintru_recommend_batch(ARRAY[1, 2], 2, interactions => 'st_ev');
SELECT count(*) FROM glintru_score(1, ARRAY[103, 999], 'st_ev');
-- from a history: 4 + 3 rows and one user vector: 3 calls, 8 rows, counted with no attachment
SELECT count(*) FROM glintru_recommend_history('st_small', ARRAY[103, 106], 4);
SELECT count(*) FROM glintru_score_history('st_small', ARRAY[103], ARRAY[106, 109, 112]);
SELECT glintru_user_vector('st_small', ARRAY[103]) IS NOT NULL AS has_vector;
-- a failing call is not counted
SELECT * FROM glintru_recommend(1, 0, interactions => 'st_ev');
SELECT model, interactions, calls, rows, total_time_ms > 0 AS timed,
       max_time_ms > 0 AND max_time_ms <= total_time_ms AS max_ok
FROM glintru_stats WHERE model = 'st_small' ORDER BY attachment_id NULLS FIRST;

-- ---- trigger events: 3 + 1 inserted, 1 deleted (a rebuild) ----
INSERT INTO st_ev(user_id, item_id) VALUES (1, 109), (2, 112), (3, 115);
INSERT INTO st_ev(user_id, item_id) VALUES (1, 118);
DELETE FROM st_ev WHERE user_id = 2 AND item_id = 109;
SELECT calls, trigger_events, rebuilds, deferred_refreshes,
       state_bytes_written > :backfill_bytes AS wrote_more
FROM glintru_stats WHERE interactions = 'st_ev'::regclass;

-- ---- a deferred table: sliding windows go stale, a refresh computes them ----
CREATE TABLE st_def(user_id bigint, item_id bigint, ts bigserial);
CREATE INDEX ON st_def(user_id, ts);
SELECT glintru_attach('st_small', 'st_def', refresh => 'deferred') AS users;
INSERT INTO st_def(user_id, item_id) SELECT 1, 103 + 3 * i FROM generate_series(0, 4) i;
INSERT INTO st_def(user_id, item_id) VALUES (1, 130);
INSERT INTO st_def(user_id, item_id) VALUES (2, 103);
SELECT glintru_refresh('st_def') AS refreshed;
SELECT trigger_events, rebuilds, deferred_refreshes FROM glintru_stats
WHERE interactions = 'st_def'::regclass;

-- ---- reset, then one more call ----
SELECT glintru_stats_reset();
SELECT count(*) AS entries FROM glintru_stats;
SELECT count(*) FROM glintru_recommend(1, 2, interactions => 'st_ev');
SELECT model, interactions, calls, rows, trigger_events FROM glintru_stats;

-- ---- rights: everyone reads the view, only granted roles reset ----
CREATE ROLE glintru_stats_reader;
SET ROLE glintru_stats_reader;
SELECT count(*) AS entries FROM glintru_stats;
SELECT glintru_stats_reset();
RESET ROLE;
DROP ROLE glintru_stats_reader;

-- ---- a dropped model's counters stay, without a name ----
SELECT glintru_detach('st_ev');
SELECT glintru_detach('st_def');
SELECT glintru_drop_model('st_small');
SELECT model IS NULL AS no_name, interactions IS NULL AS no_table, calls FROM glintru_stats;
SELECT glintru_stats_reset();
DROP TABLE st_ev, st_def;
