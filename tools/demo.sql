-- tools/demo.sql — glintru end to end on the bundled small model: load it,
-- attach an interactions table, watch a click change the recommendations.
\pset footer off
\echo == load the bundled model (30 items, d 8) and list it
CREATE EXTENSION glintru;
\set mfile :data '/small/model.safetensors'
\set weights `od -An -v -tx1 :mfile | tr -d ' \n'`
SELECT glintru_load_model('demo', decode(:'weights', 'hex')) AS model_id;
SELECT name, items, d, heads, max_seq_len, bytes FROM glintru_models();

\echo == an interactions table with two users, attached to the model
CREATE TABLE events (user_id bigint, item_id bigint, ts timestamptz DEFAULT now());
INSERT INTO events (user_id, item_id, ts) VALUES
  (1, 103, '2026-11-01'), (1, 142, '2026-11-02'), (1, 118, '2026-11-03'),
  (2, 190, '2026-11-01'), (2, 157, '2026-11-02');
SELECT glintru_attach('demo', 'events') AS users_with_state;

\echo == user 1 before and after a new click (item 169)
SELECT * FROM glintru_recommend(1, 5);
INSERT INTO events (user_id, item_id) VALUES (1, 169);
SELECT * FROM glintru_recommend(1, 5);

\echo == a rolled-back click leaves no trace
BEGIN;
INSERT INTO events (user_id, item_id) VALUES (1, 190);
ROLLBACK;
SELECT * FROM glintru_recommend(1, 5);

\echo == an unknown user gets the most popular items; the state checks out
SELECT * FROM glintru_recommend(42, 3);
SELECT count(*) AS users_with_wrong_state FROM glintru_verify_state('events');
SELECT * FROM glintru_memory();
