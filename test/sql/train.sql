-- train.sql — glintru_train / glintru_evaluate on a small synthetic table:
-- determinism for a seed, learning (more epochs beat fewer, the model beats
-- popularity), reproducible evaluation, option validation, cancellation.
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
SELECT glintru_train('train_x', 'train_ev', options => '[1, 2]');
SELECT glintru_train('train_x', 'train_ev', options => '{"epochs": 0}');
SELECT glintru_train('train_x', 'train_ev', item_column => 'nope');
CREATE TABLE train_empty (user_id bigint, item_id bigint, ts bigint);
SELECT glintru_train('train_x', 'train_empty');
CREATE TABLE train_text (user_id text, item_id bigint, ts bigint);
SELECT glintru_train('train_x', 'train_text');
SELECT * FROM glintru_evaluate('train_a', 'train_ev', protocol => 'pop50');
SELECT * FROM glintru_evaluate('train_a', 'train_ev', k => 0);
SELECT * FROM glintru_evaluate('no_such_model', 'train_ev');
SELECT count(*) AS failed_models FROM glintru_models() WHERE name = 'train_x';

-- replace => true retrains under the same name (same id)
SELECT glintru_train('train_a', 'train_ev', options => '{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 1, "seed": 9, "replace": true}') AS id \gset
SELECT :id = (SELECT id FROM glintru.models WHERE name = 'train_a') AS same_id;

-- cancellation: a statement timeout stops training between two batches and stores nothing
SET statement_timeout = '500ms';
SELECT glintru_train('train_cancel', 'train_ev', options => '{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 100000, "patience": 100000, "batch_size": 1}');
RESET statement_timeout;
SELECT count(*) AS cancelled_models FROM glintru_models() WHERE name = 'train_cancel';
SELECT count(*) AS trainings_shown FROM glintru_training_progress();

SELECT glintru_drop_model(name) FROM glintru_models() WHERE name LIKE 'train_%' ORDER BY name;
DROP TABLE train_ev, train_empty, train_text;
RESET client_min_messages;
