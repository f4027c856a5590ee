-- tools/demo.sql — glintru end to end on bundled synthetic data: generate an
-- interactions table with sequential structure, train a model in the
-- database, evaluate it against popularity, attach it to the table, and
-- watch new clicks change a user's recommendations.
\pset footer off
CREATE EXTENSION glintru;

\echo == 1. an interactions table: 1,000 users x 30 events over 300 items (glintru_synthetic_interactions)
CREATE TABLE events (user_id bigint, item_id bigint, ts bigint);
INSERT INTO events SELECT * FROM glintru_synthetic_interactions(1000, 300, 30);
CREATE INDEX ON events (user_id, ts);
SELECT count(*) AS interactions, count(DISTINCT user_id) AS users, count(DISTINCT item_id) AS items FROM events;

\echo == 2. train in the database (progress per epoch; other sessions see glintru_training_progress())
SELECT glintru_train('demo', 'events',
                     options => '{"d": 32, "heads": 2, "max_seq_len": 20, "epochs": 8, "batch_size": 64, "seed": 1}') AS model_id;
SELECT name, items, d, heads, max_seq_len, bytes FROM glintru_models();

\echo == 3. test-split quality (SPEC §4: last item of each user, full ranking) against popularity
SELECT metric, round(value::numeric, 4) AS value FROM glintru_evaluate('demo', 'events');

\echo == 4. attach the model to the table: every user gets a live state
SELECT glintru_attach('demo', 'events') AS users_with_state;

\echo == user 7: the last five events, then recommendations
SELECT item_id, ts FROM events WHERE user_id = 7 ORDER BY ts DESC LIMIT 5;
SELECT item_id, round(score::numeric, 3) AS score FROM glintru_recommend(7, 5);

\echo == user 7 jumps to another part of the catalogue: three new clicks, same transaction as the trigger
INSERT INTO events VALUES (7, 1151, 100), (7, 1153, 101), (7, 1155, 102);
SELECT item_id, round(score::numeric, 3) AS score FROM glintru_recommend(7, 5);

\echo == a rolled-back click leaves no trace
BEGIN;
INSERT INTO events VALUES (7, 1001, 103);
ROLLBACK;
SELECT item_id, round(score::numeric, 3) AS score FROM glintru_recommend(7, 5);

\echo == a new user gets the most popular items; every stored state checks out
SELECT item_id, score AS training_count FROM glintru_recommend(424242, 3);
SELECT count(*) AS users_with_wrong_state FROM glintru_verify_state('events');
SELECT * FROM glintru_memory();
