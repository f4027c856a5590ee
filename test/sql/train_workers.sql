-- train_workers.sql — glintru_train's option "workers" (parts of every
-- batch and validation: this backend plus workers - 1 background workers):
-- its errors, the same model for a seed and a worker count, another model
-- for another count (the parts are real), and a statement timeout during a
-- parallel training stores nothing.  test/train_workers.sh compares the
-- models with glintru-train --threads N byte for byte and covers
-- pg_cancel_backend, a dying worker and a terminated leader.
SET client_min_messages = warning;   -- epoch NOTICEs carry timings
CREATE TABLE tw_ev AS SELECT * FROM glintru_synthetic_interactions(200, 90, 15, 3);

-- errors (the core's one options check: the CLI's --threads has the same range)
SELECT glintru_train('tw_x', 'tw_ev', options => '{"workers": 0}');
SELECT glintru_train('tw_x', 'tw_ev', options => '{"workers": 17}');
SELECT glintru_train('tw_x', 'tw_ev', options => '{"workers": 1.5}');
SELECT glintru_train('tw_x', 'tw_ev', options => '{"workers": "all"}');
SELECT count(*) AS failed_models FROM glintru_models() WHERE name = 'tw_x';

-- a seed and a worker count give one model; other counts, other models
SELECT w, glintru_train('tw_' || w || tag, 'tw_ev',
                        options => jsonb_build_object('d', 8, 'heads', 2, 'max_seq_len', 8, 'epochs', 2,
                                                      'seed', 3, 'workers', w)) > 0 AS trained
FROM (VALUES (1, ''), (2, 'a'), (2, 'b'), (3, '')) v(w, tag) ORDER BY w, tag;
WITH c AS (SELECT name, checksum FROM glintru_models() WHERE name LIKE 'tw\_%')
SELECT (SELECT checksum FROM c WHERE name = 'tw_2a') = (SELECT checksum FROM c WHERE name = 'tw_2b') AS same_workers_same_model,
       (SELECT count(DISTINCT checksum) FROM c WHERE name IN ('tw_1', 'tw_2a', 'tw_3')) AS distinct_models_of_1_2_3;
SELECT name, items, d, heads, max_seq_len FROM glintru_models() WHERE name LIKE 'tw\_%' ORDER BY name;
-- the parallel model serves like any other
SELECT count(*) AS recommended FROM glintru_recommend_history('tw_3', ARRAY[1001, 1002, 1003], 5);

-- a statement timeout stops the leader and its workers; nothing is stored
SET statement_timeout = '1s';
SELECT glintru_train('tw_cancel', 'tw_ev', options => '{"d": 8, "heads": 2, "max_seq_len": 8, "epochs": 100000, "patience": 100000, "batch_size": 1, "workers": 3}');
RESET statement_timeout;
SELECT count(*) AS cancelled_models FROM glintru_models() WHERE name = 'tw_cancel';
SELECT count(*) AS trainings_shown FROM glintru_training_progress();

SELECT glintru_drop_model(name) FROM glintru_models() WHERE name LIKE 'tw\_%' ORDER BY name;
DROP TABLE tw_ev;
RESET client_min_messages;
