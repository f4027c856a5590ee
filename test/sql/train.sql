-- train.sql — glintru_train / glintru_evaluate on a small synthetic table:
-- determinism for a seed, learning (more epochs beat fewer, the model beats
-- popularity), reproducible evaluation, option validation, cancellation,
-- and the warm start from a stored model on grown data (init_from).
SET client_min_messages = warning;   -- epoch NOTICEs carry timings
CREATE TABLE train_ev AS SELECT * FROM glintru_synthetic_interactions(300, 120, 20, 7);
SELECT count(*) AS interactions, count(DISTINCT user_id) AS users, count(DISTINCT item_id) AS items FROM train_ev;

-- same seed, same model (byte for byte); a different seed, a different one
SELECT glintru_train('train_a', 'train_ev', options => '{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 3, "batch_size": 32, "seed": 5}') > 0 AS trained;
SELECT glintru_train('train_b', 'train_ev', options => '{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 3, "batch_size": 32, "seed": 5}') > 0 AS trained;
SELECT glintru_train('train_c', 'train_ev', options => '{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 3, "batch_size": 32, "seed": 6}') > 0 AS trained;
SELECT (SELECT checksum FROM glintru_models() WHERE name = 'train_a') = (SELECT checksum FROM glintru_models() WHERE name = 'train_b') AS same_seed_same_model,
       (SELECT checksum FROM glintru_models() WHERE name = 'train_a') <> (SELECT checksum FROM glintru_models() WHERE name = 'train_c') AS other_seed_other_model;
SELECT name, items, d, heads, max_seq_len FROM glintru_models() WHERE name LIKE 'train_%' ORDER BY name;

-- learning: one epoch < three epochs, and both beat popularity clearly
SELECT glintru_train('train_1ep', 'train_ev', options => '{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 1, "batch_size": 32, "seed": 5}') > 0 AS trained;
WITH e AS (SELECT m, metric, value FROM unnest(ARRAY['train_1ep', 'train_a']) m, glintru_evaluate(m, 'train_ev'))
SELECT (SELECT value FROM e WHERE m = 'train_a' AND metric = 'NDCG@10') > (SELECT value FROM e WHERE m = 'train_1ep' AND metric = 'NDCG@10') AS more_epochs_better,
       (SELECT value FROM e WHERE m = 'train_a' AND metric = 'NDCG@10') > 2 * (SELECT value FROM e WHERE m = 'train_a' AND metric = 'popularity NDCG@10') AS beats_popularity,
       (SELECT value FROM e WHERE m = 'train_a' AND metric = 'users') AS users;

-- evaluation is reproducible, for every protocol; metrics are in [0, 1] and ordered
SELECT p, bool_and(a.value = b.value) AS reproducible,
       bool_and(a.value BETWEEN 0 AND 1 OR a.metric = 'users') AS in_range
FROM unnest(ARRAY['full', 'pop100', 'uni100']) p,
     LATERAL (SELECT * FROM glintru_evaluate('train_a', 'train_ev', protocol => p)) a
     JOIN LATERAL (SELECT * FROM glintru_evaluate('train_a', 'train_ev', protocol => p)) b USING (metric)
GROUP BY p ORDER BY p;
SELECT metric FROM glintru_evaluate('train_a', 'train_ev', k => 5) ORDER BY metric;
SELECT (SELECT value FROM glintru_evaluate('train_a', 'train_ev') WHERE metric = 'HR@10')
       >= (SELECT value FROM glintru_evaluate('train_a', 'train_ev') WHERE metric = 'NDCG@10') AS hr_at_least_ndcg;

-- the trained model serves: attach and recommend
SELECT glintru_attach('train_a', 'train_ev') AS users_with_state;
SELECT count(*) AS recommended FROM glintru_recommend(1, 5);
SELECT count(*) AS problems FROM glintru_verify_state('train_ev');
SELECT glintru_detach('train_ev');

-- errors
SELECT glintru_train('train_a', 'train_ev', options => '{"epochs": 1}');
SELECT glintru_train('train_x', 'train_ev', options => '{"epochz": 1}');
SELECT glintru_train('train_x', 'train_ev', options => '{"d": "big"}');
SELECT glintru_train('train_x', 'train_ev', options => '{"d": 30, "heads": 4}');
SELECT glintru_train('train_x', 'train_ev', options => '{"lr": 0}');
SELECT glintru_train('train_x', 'train_ev', options => '{"dropout": 1.5}');
SELECT glintru_train('train_x', 'train_ev', options => '{"inner_dropout": -0.1}');
SELECT glintru_train('train_x', 'train_ev', options => '{"weight_decay": -0.01}');
SELECT glintru_train('train_x', 'train_ev', options => '{"clip_norm": -1}');
SELECT glintru_train('train_x', 'train_ev', options => '{"clip_norm": "big"}');
SELECT glintru_train('train_x', 'train_ev', options => '[1, 2]');
SELECT glintru_train('train_x', 'train_ev', options => '{"epochs": 0}');
-- init_from: an unknown model, an architecture that contradicts the model's, a non-name
SELECT glintru_train('train_x', 'train_ev', options => '{"init_from": "no_such_model"}');
SELECT glintru_train('train_x', 'train_ev', options => '{"init_from": "train_a", "d": 32}');
SELECT glintru_train('train_x', 'train_ev', options => '{"init_from": "train_a", "heads": 4}');
SELECT glintru_train('train_x', 'train_ev', options => '{"init_from": "train_a", "max_seq_len": 20}');
SELECT glintru_train('train_x', 'train_ev', options => '{"init_from": 5}');
SELECT glintru_train('train_x', 'train_ev', item_column => 'nope');
CREATE TABLE train_empty (user_id bigint, item_id bigint, ts bigint);
SELECT glintru_train('train_x', 'train_empty');
CREATE TABLE train_text (user_id text, item_id bigint, ts bigint);
SELECT glintru_train('train_x', 'train_text');
SELECT * FROM glintru_evaluate('train_a', 'train_ev', protocol => 'pop50');
SELECT * FROM glintru_evaluate('train_a', 'train_ev', k => 0);
SELECT * FROM glintru_evaluate('no_such_model', 'train_ev');
SELECT count(*) AS failed_models FROM glintru_models() WHERE name = 'train_x';

-- the optimiser options: AdamW's decay and the clipping change the model (plain Adam: both 0)
SELECT glintru_train('train_adam', 'train_ev', options => '{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 3, "batch_size": 32, "seed": 5, "weight_decay": 0, "clip_norm": 0}') > 0 AS trained;
SELECT glintru_train('train_drop', 'train_ev', options => '{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 3, "batch_size": 32, "seed": 5, "dropout": 0.1, "inner_dropout": 0.2}') > 0 AS trained;
SELECT count(DISTINCT checksum) AS distinct_models FROM glintru_models() WHERE name IN ('train_a', 'train_adam', 'train_drop');

-- replace => true retrains under the same name (same id)
SELECT glintru_train('train_a', 'train_ev', options => '{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 1, "seed": 9, "replace": true}') AS id \gset
SELECT :id = (SELECT id FROM glintru.models WHERE name = 'train_a') AS same_id;

-- cancellation: a statement timeout stops training between two batches and stores nothing
SET statement_timeout = '500ms';
SELECT glintru_train('train_cancel', 'train_ev', options => '{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 100000, "patience": 100000, "batch_size": 1}');
RESET statement_timeout;
SELECT count(*) AS cancelled_models FROM glintru_models() WHERE name = 'train_cancel';
SELECT count(*) AS trainings_shown FROM glintru_training_progress();

-- warm start (init_from): model A on a first part; the table grows by 300
-- users and 60 new items (a second synthetic run, items shifted by 60: half
-- of the new users walk A's clusters, half two new ones); B starts from A,
-- C from scratch, for the same 2 epochs
CREATE TABLE train_grow AS SELECT * FROM glintru_synthetic_interactions(300, 120, 20, 7);
SELECT glintru_train('train_warm_a', 'train_grow', options => '{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 4, "seed": 5}') > 0 AS trained;
SELECT glintru_attach('train_warm_a', 'train_grow') AS users_with_state;
INSERT INTO train_grow SELECT user_id + 1000, item_id + 60, ts FROM glintru_synthetic_interactions(300, 120, 20, 8);
CREATE TEMP TABLE train_new_users AS
    SELECT user_id FROM train_grow WHERE item_id > 1120 GROUP BY user_id HAVING count(*) >= 15;
SELECT (SELECT count(DISTINCT item_id) FROM train_grow WHERE item_id > 1120) AS new_items,
       (SELECT count(*) FROM train_new_users) AS users_mostly_new;
SELECT glintru_train('train_warm_b', 'train_grow', options => '{"init_from": "train_warm_a", "epochs": 2, "seed": 5}') > 0 AS trained;
SELECT glintru_train('train_warm_c', 'train_grow', options => '{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 2, "seed": 5}') > 0 AS trained;
-- the architecture comes from A; A's 120 items keep their rows, the new ones are appended
SELECT name, items, d, heads, max_seq_len FROM glintru_models() WHERE name LIKE 'train_warm_%' ORDER BY name;
WITH e AS (SELECT m, value FROM unnest(ARRAY['train_warm_a', 'train_warm_b', 'train_warm_c']) m,
                  glintru_evaluate(m, 'train_grow') WHERE metric = 'NDCG@10')
SELECT (SELECT value FROM e WHERE m = 'train_warm_b') > (SELECT value FROM e WHERE m = 'train_warm_a') + 0.03 AS warm_beats_old,
       (SELECT value FROM e WHERE m = 'train_warm_b') > (SELECT value FROM e WHERE m = 'train_warm_c') + 0.03 AS warm_beats_scratch;
-- B recommends new items (top-10 of the users whose histories are mostly new items); A cannot
SELECT m, count(*) FILTER (WHERE r.item_id > 1120) > 0 AS recommends_new_items
FROM unnest(ARRAY['train_warm_a', 'train_warm_b']) m, train_new_users u,
     LATERAL glintru_recommend_history(m, (SELECT array_agg(item_id ORDER BY ts) FROM train_grow g WHERE g.user_id = u.user_id), 10) r
GROUP BY m ORDER BY m;
-- min_item_count judges new items only: A's items keep their rows even when rare
SELECT glintru_train('train_warm_d', 'train_grow', options => '{"init_from": "train_warm_a", "d": 16, "epochs": 1, "min_item_count": 1000000}') > 0 AS trained;
SELECT items FROM glintru_models() WHERE name = 'train_warm_d';
-- the nightly retrain: warm-start A from itself and replace it; the attached
-- states are rebuilt in the same statement, their windows now with the new items
SELECT count(*) FILTER (WHERE item_id > 1120) AS new_items_served_before
FROM glintru_recommend_batch(ARRAY(SELECT user_id FROM train_new_users), 10);
SELECT glintru_train('train_warm_a', 'train_grow', options => '{"init_from": "train_warm_a", "epochs": 2, "seed": 5, "replace": true}') > 0 AS replaced;
SELECT (SELECT checksum FROM glintru_models() WHERE name = 'train_warm_a') = (SELECT checksum FROM glintru_models() WHERE name = 'train_warm_b') AS same_as_b;
SELECT count(*) FILTER (WHERE item_id > 1120) > 0 AS new_items_served_after
FROM glintru_recommend_batch(ARRAY(SELECT user_id FROM train_new_users), 10);
SELECT count(*) AS problems FROM glintru_verify_state('train_grow');
SELECT count(*) AS state_differs_from_history FROM train_new_users u
WHERE ARRAY(SELECT item_id FROM glintru_recommend(u.user_id, 5, false) ORDER BY 1)
   <> ARRAY(SELECT item_id FROM glintru_recommend_history('train_warm_a',
            (SELECT array_agg(item_id ORDER BY ts) FROM train_grow g WHERE g.user_id = u.user_id), 5, false) ORDER BY 1);
SELECT glintru_detach('train_grow');

SELECT glintru_drop_model(name) FROM glintru_models() WHERE name LIKE 'train_%' ORDER BY name;
DROP TABLE train_ev, train_empty, train_text, train_grow;
RESET client_min_messages;
