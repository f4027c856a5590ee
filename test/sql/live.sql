-- live.sql — live recommendations (issue 3): glintru_attach / glintru_detach,
-- the statement-level state triggers, glintru_recommend(_batch) and
-- glintru_verify_state.
--
-- After every phase of a deterministic pseudo-random stream (single-row and
-- multi-row INSERTs, COPY, out-of-order events, unknown items, NULL rows,
-- DELETE, UPDATE of each column, MERGE, statements that insert and update or
-- delete at once, rollbacks, savepoints, TRUNCATE)
-- pg_temp.check_live() asserts that
--   * every user with a known item has a state and no other user has one,
--   * glintru_verify_state() finds nothing,
--   * for every user glintru_recommend(u, k) equals
--     glintru_recommend_history(model, <u's last L known items>, k) — items in
--     order, scores within 1e-5 — and with exclude_seen => false equals
--     glintru_recommend_history(model, <u's whole history>, k, false).
-- Only counts and booleans are printed.  History order is (order column,
-- ctid); the streams give each user distinct order values, so ties never
-- depend on physical position (ties are tested on an append-only table).
--
-- Material: the bundled small model (30 items with ids 103, 106, ..., 190,
-- d = 8, 2 heads, max_seq_len L = 5, with item_popularity), and a second
-- model made from it by negating five item embeddings.
\set p `echo "${GLINTRU_TEST_DATA:-$PWD/test/data}"`/small/model.safetensors
SELECT pg_read_binary_file(:'p') AS f \gset
SELECT glintru_load_model_file('live_m', :'p') > 0 AS loaded;
CREATE FUNCTION pg_temp.negate_rows(b bytea, rows int[]) RETURNS bytea LANGUAGE plpgsql AS $$
DECLARE
  hlen int := (SELECT sum(get_byte(b, i)::bigint << (8 * i))::int FROM generate_series(0, 7) i);
  h jsonb := convert_from(substring(b FROM 9 FOR hlen), 'UTF8')::jsonb;
  base int := 8 + hlen + (h->'item_embedding.weight'->'data_offsets'->>0)::int;
  d int := (h->'item_embedding.weight'->'shape'->>1)::int;
  r int;
  pos int;
BEGIN
  FOREACH r IN ARRAY rows LOOP
    FOR c IN 0 .. d - 1 LOOP
      pos := base + (r * d + c) * 4 + 3;          -- the sign byte of a little-endian F32
      b := set_byte(b, pos, get_byte(b, pos) # 128);
    END LOOP;
  END LOOP;
  RETURN b;
END $$;
SELECT glintru_load_model('live_m2', pg_temp.negate_rows(:'f', ARRAY[1, 2, 3, 10, 20])) > 0 AS loaded;
SELECT name, items, d, heads, max_seq_len FROM glintru_models() WHERE name LIKE 'live%' ORDER BY name;

-- ---- helpers ----
-- item ids the models know
CREATE FUNCTION pg_temp.known(i bigint) RETURNS boolean LANGUAGE sql IMMUTABLE AS
$$ SELECT i BETWEEN 103 AND 190 AND (i - 100) % 3 = 0 $$;
-- deterministic pseudo-random integer in [0, n)
CREATE FUNCTION pg_temp.rnd(seed bigint, n int) RETURNS int LANGUAGE sql IMMUTABLE AS
$$ SELECT ((hashint8(seed)::bigint + 2147483648) % n)::int $$;
-- a user: mostly 1..30 (long histories), sometimes 31..40 (short ones)
CREATE FUNCTION pg_temp.user_of(seed bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN pg_temp.rnd(seed * 3 + 1, 100) < 85 THEN 1 + pg_temp.rnd(seed * 5 + 2, 30)
               ELSE 31 + pg_temp.rnd(seed * 7 + 3, 10) END::bigint $$;
-- an item: mostly known, sometimes unknown (100 is row 0's id: padding, not an item)
CREATE FUNCTION pg_temp.item_of(seed bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN pg_temp.rnd(seed * 11 + 4, 100) < 88 THEN 100 + 3 * (1 + pg_temp.rnd(seed * 13 + 5, 30))
               ELSE (ARRAY[100, 101, 193, 1000, 5000])[1 + pg_temp.rnd(seed * 17 + 6, 5)] END::bigint $$;
-- the n-th minute of the stream
CREATE FUNCTION pg_temp.t(minutes float8) RETURNS timestamptz LANGUAGE sql IMMUTABLE AS
$$ SELECT '2024-01-01 00:00:00+00'::timestamptz + minutes * interval '1 minute' $$;

-- recommend(u) vs recommend_history(model, hist): same items in order, scores within 1e-5
CREATE FUNCTION pg_temp.same_recs(u bigint, tbl regclass, model text, hist bigint[], k int, excl boolean)
RETURNS boolean LANGUAGE sql AS $$
  SELECT coalesce(bool_and(coalesce(a.item_id = b.item_id AND abs(a.score - b.score) <= 1e-5, false)), false)
  FROM glintru_recommend(u, k, excl, tbl) WITH ORDINALITY a(item_id, score, n)
  FULL JOIN glintru_recommend_history(model, hist, k, excl) WITH ORDINALITY b(item_id, score, n) USING (n) $$;

CREATE FUNCTION pg_temp.check_live(tbl regclass, model text, ucol text DEFAULT 'user_id',
                                   icol text DEFAULT 'item_id', ocol text DEFAULT 'ts', k int DEFAULT 10)
RETURNS TABLE(users bigint, states bigint, verify_problems bigint, rec_mismatches bigint, rec_all_mismatches bigint)
LANGUAGE plpgsql AS $f$
BEGIN
  RETURN QUERY EXECUTE format($q$
    WITH h AS (
      SELECT %1$I::bigint AS u, array_agg(%2$I::bigint ORDER BY %3$I, ctid) AS hist
      FROM %4$s WHERE %1$I IS NOT NULL AND pg_temp.known(%2$I) GROUP BY 1),
    w AS (SELECT u, hist, hist[greatest(1, cardinality(hist) - $2 + 1):] AS win FROM h)
    SELECT (SELECT count(*) FROM w),
           (SELECT count(*) FROM glintru.user_state s JOIN glintru.attachments a ON a.id = s.attachment_id
             WHERE a.relid = $1),
           (SELECT count(*) FROM glintru_verify_state($1)),
           (SELECT count(*) FROM w WHERE NOT pg_temp.same_recs(u, $1, $3, win, $4, true)),
           (SELECT count(*) FROM w WHERE NOT pg_temp.same_recs(u, $1, $3, hist, $4, false))
  $q$, ucol, icol, ocol, tbl)
  USING tbl, (SELECT max_seq_len FROM glintru_models() WHERE name = model), model, k;
END $f$;

-- a digest of the table's states (to show that something changed nothing)
CREATE FUNCTION pg_temp.state_digest(tbl regclass) RETURNS text LANGUAGE sql AS $$
  SELECT md5(coalesce(string_agg(s.user_id || ':' || coalesce(s.last_order, '-') || ':' || md5(s.state), ','
                                 ORDER BY s.user_id), ''))
  FROM glintru.user_state s JOIN glintru.attachments a ON a.id = s.attachment_id WHERE a.relid = tbl $$;
CREATE FUNCTION pg_temp.has_state(tbl regclass, u bigint) RETURNS boolean LANGUAGE sql AS $$
  SELECT EXISTS (SELECT FROM glintru.user_state s JOIN glintru.attachments a ON a.id = s.attachment_id
                 WHERE a.relid = tbl AND s.user_id = u) $$;
-- reads of a table in this transaction (a rebuild reads the table, a push does not)
CREATE FUNCTION pg_temp.table_reads(tbl regclass) RETURNS bigint LANGUAGE sql AS $$
  SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables WHERE relid = tbl $$;

-- ---- attach: errors (nothing attached yet) ----
CREATE TABLE events (user_id bigint, item_id integer, ts timestamptz, note text)
  WITH (autovacuum_enabled = false);   -- keep physical positions deterministic
CREATE VIEW events_v AS SELECT * FROM events;
CREATE TABLE text_users (user_id text, item_id bigint, ts bigint);
CREATE TABLE text_items (user_id bigint, item_id text, ts bigint);
CREATE TABLE json_order (user_id bigint, item_id bigint, ts json);
SELECT glintru_attach('live_m', 'events_v');
SELECT glintru_attach('live_m', 'no_such_table');
SELECT glintru_attach('no_such_model', 'events');
SELECT glintru_attach('live_m', 'events', 'uid');
SELECT glintru_attach('live_m', 'events', item_column => 'item');
SELECT glintru_attach('live_m', 'events', order_column => 'created_at');
SELECT glintru_attach('live_m', 'text_users', order_column => 'ts');
SELECT glintru_attach('live_m', 'text_items', order_column => 'ts');
SELECT glintru_attach('live_m', 'json_order', order_column => 'ts');
SELECT glintru_attach(NULL, 'events') IS NULL AS null_model_is_null;
SELECT glintru_detach('events');
SELECT * FROM glintru_recommend(1, 5);
SELECT count(*) AS attachments FROM glintru.attachments;

-- ---- backfill ----
-- users 1..25 before the attach (users 26..40 first appear in the streams);
-- unknown items, NULL users and NULL items among them
INSERT INTO events
SELECT CASE WHEN pg_temp.rnd(g, 40) = 0 THEN NULL ELSE 1 + pg_temp.rnd(g * 3, 25) END,
       CASE WHEN pg_temp.rnd(g, 41) = 1 THEN NULL ELSE pg_temp.item_of(g) END,
       pg_temp.t(g), 'backfill'
FROM generate_series(1, 150) g;
SELECT count(DISTINCT user_id) FILTER (WHERE pg_temp.known(item_id)) AS users_with_known_items,
       count(*) FILTER (WHERE user_id IS NULL) AS null_users, count(*) FILTER (WHERE item_id IS NULL) AS null_items,
       count(*) FILTER (WHERE NOT pg_temp.known(item_id)) AS unknown_items
FROM events;
SELECT glintru_attach('live_m', 'events', 'user_id', 'item_id', 'ts') AS attached_users;
SELECT tgname, tgtype FROM pg_trigger WHERE tgrelid = 'events'::regclass ORDER BY tgname;
SELECT * FROM pg_temp.check_live('events', 'live_m');

-- ---- a second table: quoted names, integer order column ----
CREATE SCHEMA "Live Schema";
CREATE TABLE "Live Schema"."My ""Events""" ("User ID" integer, "Item'Id" integer, "Order Key" integer,
                                            "select" text) WITH (autovacuum_enabled = false);
INSERT INTO "Live Schema"."My ""Events""" SELECT 1 + g % 7, 100 + 3 * (1 + g % 30), 10 * g, 'x'
FROM generate_series(1, 40) g;
SELECT glintru_attach('live_m', '"Live Schema"."My ""Events"""', 'User ID', 'Item''Id', 'Order Key') AS attached_users;
SELECT * FROM pg_temp.check_live('"Live Schema"."My ""Events"""', 'live_m', 'User ID', 'Item''Id', 'Order Key');

-- ---- recommend: errors ----
SELECT * FROM glintru_recommend(1, 5);          -- two tables attached: which one?
SELECT * FROM glintru_recommend(1, 5, true, 'text_users');
SELECT * FROM glintru_recommend(1, 0, true, 'events');
SELECT * FROM glintru_recommend(1, -3, true, 'events');
SELECT * FROM glintru_recommend(NULL, 5, true, 'events');
SELECT * FROM glintru_recommend(1, NULL, true, 'events');
SELECT * FROM glintru_recommend(1, 5, NULL, 'events');
SELECT * FROM glintru_recommend_batch(ARRAY[1, NULL]::bigint[], 5, true, 'events');
SELECT * FROM glintru_recommend_batch(ARRAY[[1, 2], [3, 4]]::bigint[], 5, true, 'events');
SELECT * FROM glintru_recommend_batch(ARRAY[1]::bigint[], 0, true, 'events');
SELECT * FROM glintru_recommend_batch(NULL, 5, true, 'events');
SELECT * FROM glintru_recommend_batch(ARRAY[1]::bigint[], 5);
SELECT * FROM glintru_verify_state(NULL);
SELECT * FROM glintru_verify_state('text_users');
SELECT count(*) AS rows FROM glintru_recommend_batch('{}'::bigint[], 5, true, 'events');

-- the same user id in two tables: two independent states
SELECT pg_temp.same_recs(1, 'events', 'live_m',
                         (SELECT array_agg(item_id::bigint ORDER BY ts) FROM
                           (SELECT * FROM events WHERE user_id = 1 AND pg_temp.known(item_id)
                            ORDER BY ts DESC LIMIT 5) s), 10, true) AS events_user_1,
       pg_temp.same_recs(1, '"Live Schema"."My ""Events"""', 'live_m',
                         (SELECT array_agg("Item'Id"::bigint ORDER BY "Order Key") FROM
                           (SELECT * FROM "Live Schema"."My ""Events""" WHERE "User ID" = 1
                            ORDER BY "Order Key" DESC LIMIT 5) s), 10, true) AS my_events_user_1;

-- ---- stream 1: single-row INSERTs (one statement each), in order ----
DO $$ BEGIN
  FOR g IN 1 .. 200 LOOP
    INSERT INTO events VALUES (pg_temp.user_of(1000 + g), pg_temp.item_of(1000 + g), pg_temp.t(1000 + g), 's1');
  END LOOP;
END $$;
INSERT INTO events VALUES (41, 103, pg_temp.t(1300), 'new user');
INSERT INTO events VALUES (41, 106, pg_temp.t(1301), 'new user');
INSERT INTO events VALUES (7, 109, NULL, 'no order value: last of user 7');
SELECT * FROM pg_temp.check_live('events', 'live_m');

-- ---- stream 2: multi-row INSERTs, rows in random order inside a statement ----
-- ~8 events per user per statement: the window slides by more than L
INSERT INTO events
SELECT pg_temp.user_of(2000 + g), pg_temp.item_of(2000 + g), pg_temp.t(2000 + g), 's2'
FROM generate_series(1, 300) g ORDER BY pg_temp.rnd(g, 1000), g;
SELECT * FROM pg_temp.check_live('events', 'live_m');
-- 2 events for each of users 1..45: full windows slide by 2, short ones push, 42..45 are new
INSERT INTO events
SELECT u, 100 + 3 * (1 + pg_temp.rnd(u * 100 + j, 30)), pg_temp.t(3000 + 2 * u + j), 's2b'
FROM generate_series(1, 45) u, generate_series(0, 1) j ORDER BY pg_temp.rnd(u * 2 + j, 97), u, j;
SELECT * FROM pg_temp.check_live('events', 'live_m');

-- ---- the checks can fail: a state swapped between two users is caught ----
BEGIN;
UPDATE glintru.user_state s SET state = (SELECT state FROM glintru.user_state x
                                         WHERE x.attachment_id = s.attachment_id AND x.user_id = 2)
WHERE user_id = 1 AND attachment_id = (SELECT id FROM glintru.attachments WHERE relid = 'events'::regclass);
SELECT * FROM pg_temp.check_live('events', 'live_m');
SELECT * FROM glintru_verify_state('events');
ROLLBACK;

-- ---- the single-row path is incremental: in-order inserts never read the table ----
BEGIN;
SELECT pg_temp.table_reads('events') AS r0 \gset
INSERT INTO events VALUES (1, 190, pg_temp.t(3500), 'push');   -- full window: slides
INSERT INTO events VALUES (2, 187, pg_temp.t(3501), 'push');
INSERT INTO events VALUES (46, 103, pg_temp.t(3502), 'push');  -- new user
INSERT INTO events VALUES (46, 106, pg_temp.t(3503), 'push');  -- short window: O(d²) push
INSERT INTO events VALUES (46, 1000, pg_temp.t(3504), 'push'); -- unknown item
INSERT INTO events SELECT 47, 100 + 3 * g, pg_temp.t(3505 + g), 'push' FROM generate_series(1, 3) g;
SELECT pg_temp.table_reads('events') - :r0 AS table_reads_in_order;
INSERT INTO events VALUES (46, 109, pg_temp.t(3400), 'older');
SELECT pg_temp.table_reads('events') - :r0 > 0 AS out_of_order_reads_table;
COMMIT;
SELECT * FROM pg_temp.check_live('events', 'live_m');

-- ---- stream 3: COPY (NULLs, unknown items, out of order within and across) ----
COPY events (user_id, item_id, ts, note) FROM STDIN;
5	103	2024-01-05 00:00:00+00	copy
5	106	2024-01-04 23:00:00+00	copy
5	109	2024-01-05 01:00:00+00	copy
6	1000	2024-01-05 00:00:00+00	copy unknown
6	112	2024-01-05 00:01:00+00	copy
\N	115	2024-01-05 00:02:00+00	copy null user
8	\N	2024-01-05 00:03:00+00	copy null item
9	118	2024-01-01 00:00:30+00	copy out of order
9	121	2024-01-05 00:04:00+00	copy
48	124	2024-01-05 00:05:00+00	copy new user
48	193	2024-01-05 00:06:00+00	copy unknown
48	127	2024-01-05 00:07:00+00	copy
10	130	2024-01-05 00:10:00+00	copy
10	133	2024-01-05 00:11:00+00	copy
10	136	2024-01-05 00:12:00+00	copy
10	139	2024-01-05 00:13:00+00	copy
10	142	2024-01-05 00:14:00+00	copy
10	145	2024-01-05 00:15:00+00	copy
10	148	2024-01-05 00:09:00+00	copy
\.
SELECT * FROM pg_temp.check_live('events', 'live_m');

-- ---- stream 4: out-of-order events ----
DO $$ BEGIN
  FOR g IN 1 .. 60 LOOP
    INSERT INTO events VALUES (pg_temp.user_of(4000 + g), pg_temp.item_of(4000 + g),
                               pg_temp.t(pg_temp.rnd(4000 + g, 3000) + 0.001 * g), 's4 old');
  END LOOP;
END $$;
SELECT * FROM pg_temp.check_live('events', 'live_m');
-- one statement mixing old and new events of the same users
INSERT INTO events
SELECT pg_temp.user_of(5000 + g), pg_temp.item_of(5000 + g),
       CASE WHEN g % 3 = 0 THEN pg_temp.t(pg_temp.rnd(5000 + g, 3000) + 0.5 + 0.0001 * g) ELSE pg_temp.t(6000 + g) END, 's4 mixed'
FROM generate_series(1, 120) g;
SELECT * FROM pg_temp.check_live('events', 'live_m');

-- ---- unknown items and NULL users/items change no state ----
SELECT pg_temp.state_digest('events') AS d0 \gset
INSERT INTO events VALUES (1, 1000, pg_temp.t(7000), 'unknown');
INSERT INTO events VALUES (2, 100, pg_temp.t(1), 'unknown, older');
INSERT INTO events VALUES (NULL, 103, pg_temp.t(7001), 'null user');
INSERT INTO events VALUES (3, NULL, pg_temp.t(7002), 'null item');
INSERT INTO events VALUES (NULL, NULL, pg_temp.t(7003), 'both null');
INSERT INTO events VALUES (500, 5000, pg_temp.t(7004), 'unknown, new user');
INSERT INTO events SELECT u, (ARRAY[100, 101, 193, 1000, 5000])[1 + u % 5], pg_temp.t(7010 + u), 'unknown multi'
FROM generate_series(1, 50) u;
INSERT INTO events SELECT NULL, 100 + 3 * u, pg_temp.t(7100 + u), 'null users multi' FROM generate_series(1, 30) u;
COPY events (user_id, item_id, ts, note) FROM STDIN;
11	\N	2024-01-09 00:00:00+00	copy null item
\N	103	2024-01-09 00:00:00+00	copy null user
12	101	2024-01-09 00:00:00+00	copy unknown
\.
SELECT pg_temp.state_digest('events') = :'d0' AS states_unchanged, pg_temp.has_state('events', 500) AS user_500_has_state;
SELECT * FROM pg_temp.check_live('events', 'live_m');

-- ---- DELETE ----
DELETE FROM events WHERE pg_temp.rnd(extract(epoch FROM ts)::bigint * 31 + coalesce(item_id, 0), 6) = 0;
SELECT * FROM pg_temp.check_live('events', 'live_m');
DELETE FROM events WHERE user_id = 3;                                   -- a user disappears
SELECT pg_temp.has_state('events', 3) AS user_3_has_state;
DELETE FROM events WHERE user_id = 5 AND ts = (SELECT max(ts) FROM events WHERE user_id = 5);  -- the latest
INSERT INTO events SELECT 5, 151, max(ts) - interval '1 second', 'between' FROM events WHERE user_id = 5;
DELETE FROM events WHERE user_id = 48 AND pg_temp.known(item_id);       -- only unknown items left
SELECT pg_temp.has_state('events', 48) AS user_48_has_state;
DELETE FROM events WHERE user_id = 6 AND NOT pg_temp.known(item_id);
SELECT * FROM pg_temp.check_live('events', 'live_m');

-- ---- UPDATE of the item, user and order columns ----
UPDATE events SET item_id = pg_temp.item_of(item_id * 7 + user_id)
WHERE pg_temp.rnd(extract(epoch FROM ts)::bigint * 17, 8) = 0;
SELECT * FROM pg_temp.check_live('events', 'live_m');
UPDATE events SET user_id = 11 WHERE user_id = 10;                      -- merge two users
UPDATE events SET user_id = 300 WHERE user_id = 12 AND ts > pg_temp.t(2000);  -- split one
SELECT pg_temp.has_state('events', 10) AS user_10_has_state, pg_temp.has_state('events', 300) AS user_300_has_state;
UPDATE events SET ts = ts + interval '1 year' WHERE user_id = 13 AND ts < pg_temp.t(1500);  -- old becomes new
UPDATE events SET ts = ts - interval '1 year' WHERE user_id = 14 AND ts > pg_temp.t(2000);  -- new becomes old
UPDATE events SET ts = pg_temp.t(9000) WHERE user_id = 7 AND ts IS NULL;
SELECT * FROM pg_temp.check_live('events', 'live_m');
UPDATE events SET user_id = NULL WHERE user_id = 15 AND ts > pg_temp.t(3000);
UPDATE events SET item_id = NULL WHERE user_id = 16 AND ts > pg_temp.t(3000);
UPDATE events SET user_id = 17 WHERE user_id IS NULL AND item_id = 103;
UPDATE events SET item_id = 190 WHERE user_id = 16 AND item_id IS NULL AND ts > pg_temp.t(6000);
SELECT * FROM pg_temp.check_live('events', 'live_m');
-- an UPDATE of other columns, or one that leaves (item, order) as they were, changes no state
SELECT pg_temp.state_digest('events') AS d1 \gset
UPDATE events SET note = 'touched' WHERE user_id BETWEEN 19 AND 22;
UPDATE events SET item_id = item_id, ts = ts WHERE user_id = 23;
SELECT pg_temp.state_digest('events') = :'d1' AS states_unchanged;
SELECT * FROM pg_temp.check_live('events', 'live_m');

-- ---- MERGE and INSERT ... ON CONFLICT ----
MERGE INTO events e
USING (SELECT u AS user_id, 100 + 3 * (1 + u % 30) AS item_id, pg_temp.t(9100 + u) AS ts
       FROM generate_series(20, 29) u) s
ON e.user_id = s.user_id AND e.ts = (SELECT max(ts) FROM events x WHERE x.user_id = s.user_id)
WHEN MATCHED AND s.user_id % 2 = 0 THEN UPDATE SET item_id = s.item_id
WHEN MATCHED THEN DELETE
WHEN NOT MATCHED THEN INSERT VALUES (s.user_id, s.item_id, s.ts, 'merge');
SELECT * FROM pg_temp.check_live('events', 'live_m');

-- one statement that inserts and also updates or deletes rows of the same users: the
-- UPDATE/DELETE trigger may fire first and rebuild from a table that already holds
-- the inserted rows, which must not then be pushed a second time
CREATE TABLE combo (user_id bigint, item_id bigint, ts integer, UNIQUE (user_id, ts));
INSERT INTO combo SELECT u, 100 + 3 * (1 + (u * 7 + g) % 30), g FROM generate_series(1, 6) u, generate_series(1, 3) g;
SELECT glintru_attach('live_m', 'combo') AS attached_users;
WITH i AS (INSERT INTO combo VALUES (1, 190, 10) RETURNING *) DELETE FROM combo WHERE user_id = 1 AND ts = 1;
WITH i AS (INSERT INTO combo VALUES (2, 190, 10) RETURNING *) UPDATE combo SET item_id = 187 WHERE user_id = 2 AND ts = 1;
WITH d AS (DELETE FROM combo WHERE user_id = 3 AND ts = 1 RETURNING *) INSERT INTO combo VALUES (3, 190, 10);
INSERT INTO combo VALUES (4, 121, 30), (4, 124, 2), (5, 127, 2)
ON CONFLICT (user_id, ts) DO UPDATE SET item_id = excluded.item_id;
MERGE INTO combo c USING (VALUES (5, 130, 1), (5, 133, 20), (6, 136, 2), (6, 139, 3), (6, 142, 40)) s(u, i, t)
ON c.user_id = s.u AND c.ts = s.t
WHEN MATCHED AND s.i < 137 THEN UPDATE SET item_id = s.i
WHEN MATCHED THEN DELETE
WHEN NOT MATCHED THEN INSERT VALUES (s.u, s.i, s.t);
SELECT * FROM pg_temp.check_live('combo', 'live_m');
SELECT glintru_detach('combo');
DROP TABLE combo;

-- ---- rollbacks leave no trace ----
SELECT pg_temp.state_digest('events') AS d2 \gset
BEGIN;
INSERT INTO events VALUES (1, 103, pg_temp.t(9500), 'rolled back');
INSERT INTO events SELECT pg_temp.user_of(9600 + g), pg_temp.item_of(9600 + g), pg_temp.t(9600 + g), 'rolled back'
FROM generate_series(1, 80) g;
INSERT INTO events VALUES (2, 106, pg_temp.t(2), 'rolled back, old');
INSERT INTO events VALUES (600, 109, pg_temp.t(9700), 'rolled back, new user');
DELETE FROM events WHERE user_id = 4;
UPDATE events SET item_id = 190 WHERE user_id = 24;
SELECT pg_temp.state_digest('events') <> :'d2' AS changed_inside, pg_temp.has_state('events', 600) AS user_600_has_state;
SELECT * FROM pg_temp.check_live('events', 'live_m');
ROLLBACK;
SELECT pg_temp.state_digest('events') = :'d2' AS states_restored, pg_temp.has_state('events', 600) AS user_600_has_state;
-- savepoints
BEGIN;
INSERT INTO events VALUES (1, 106, pg_temp.t(9800), 'kept');
SAVEPOINT s1;
INSERT INTO events VALUES (1, 109, pg_temp.t(9801), 'rolled back to s1');
INSERT INTO events VALUES (601, 109, pg_temp.t(9801), 'rolled back to s1');
DELETE FROM events WHERE user_id = 25;
SAVEPOINT s2;
INSERT INTO events VALUES (2, 112, pg_temp.t(9802), 'rolled back to s2');
ROLLBACK TO s2;
INSERT INTO events VALUES (26, 115, pg_temp.t(9803), 'rolled back to s1');
ROLLBACK TO s1;
INSERT INTO events VALUES (2, 118, pg_temp.t(9804), 'kept');
RELEASE s1;
COMMIT;
SELECT count(*) AS rolled_back_rows FROM events WHERE note LIKE 'rolled back%';
SELECT pg_temp.has_state('events', 601) AS user_601_has_state, pg_temp.has_state('events', 25) AS user_25_has_state;
SELECT * FROM pg_temp.check_live('events', 'live_m');
-- an error after the state trigger ran (a later statement trigger fails): the statement leaves no trace
CREATE FUNCTION live_reject() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT FROM new_rows WHERE note = 'reject') THEN RAISE EXCEPTION 'rejected'; END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER zz_reject AFTER INSERT ON events REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION live_reject();
SELECT pg_temp.state_digest('events') AS d3 \gset
INSERT INTO events VALUES (1, 121, pg_temp.t(9900), 'reject');
INSERT INTO events VALUES (1, 121, pg_temp.t(9900), 'ok'), (602, 124, pg_temp.t(9900), 'reject');
BEGIN;
SAVEPOINT s;
INSERT INTO events VALUES (1, 124, pg_temp.t(9901), 'reject');
ROLLBACK TO s;
COMMIT;
SELECT pg_temp.state_digest('events') = :'d3' AS states_unchanged, pg_temp.has_state('events', 602) AS user_602_has_state;
DROP TRIGGER zz_reject ON events;
DROP FUNCTION live_reject();

-- ---- the other table: a stream through quoted names and an integer order column ----
INSERT INTO "Live Schema"."My ""Events""" VALUES (1, 106, 1000, 'single');
INSERT INTO "Live Schema"."My ""Events""" VALUES (2, 109, 5, 'single, old');
INSERT INTO "Live Schema"."My ""Events"""
SELECT 1 + pg_temp.rnd(g, 9), pg_temp.item_of(g + 77), 1000 + g * 3 - 200 * (g % 4 = 0)::int, 'multi'
FROM generate_series(1, 60) g;
COPY "Live Schema"."My ""Events""" ("User ID", "Item'Id", "Order Key") FROM STDIN;
3	112	2000
3	115	1999
\N	118	2001
4	\N	2002
\.
DELETE FROM "Live Schema"."My ""Events""" WHERE "Order Key" % 7 = 0;
UPDATE "Live Schema"."My ""Events""" SET "Order Key" = -"Order Key" WHERE "User ID" = 5;
UPDATE "Live Schema"."My ""Events""" SET "User ID" = 8 WHERE "User ID" = 6;
UPDATE "Live Schema"."My ""Events""" SET "select" = 'y' WHERE "User ID" = 7;
SELECT * FROM pg_temp.check_live('"Live Schema"."My ""Events"""', 'live_m', 'User ID', 'Item''Id', 'Order Key');
BEGIN;
TRUNCATE "Live Schema"."My ""Events""";
SELECT * FROM pg_temp.check_live('"Live Schema"."My ""Events"""', 'live_m', 'User ID', 'Item''Id', 'Order Key');
ROLLBACK;
SELECT * FROM pg_temp.check_live('"Live Schema"."My ""Events"""', 'live_m', 'User ID', 'Item''Id', 'Order Key');

-- ---- order columns of other types: text (collation "C"), smallint, date ----
CREATE TABLE by_text (user_id integer, item_id smallint, ts text COLLATE "C");
CREATE TABLE by_small (user_id smallint, item_id bigint, ts smallint);
CREATE TABLE by_date (user_id bigint, item_id integer, ts date);
SELECT glintru_attach('live_m', 'by_text'), glintru_attach('live_m', 'by_small'), glintru_attach('live_m', 'by_date');
-- users 1..4 in turn; every third event falls between the user's two latest
DO $$ DECLARE o int; BEGIN
  FOR g IN 1 .. 60 LOOP
    o := 24000 + 100 * g - CASE WHEN g % 3 = 0 THEN 450 ELSE 0 END;
    INSERT INTO by_text VALUES (1 + g % 4, pg_temp.item_of(g), 'k' || o);
    INSERT INTO by_small VALUES (1 + g % 4, pg_temp.item_of(g), o);
    INSERT INTO by_date VALUES (1 + g % 4, pg_temp.item_of(g), date '2024-01-01' + o);
  END LOOP;
END $$;
SELECT * FROM pg_temp.check_live('by_text', 'live_m');
SELECT * FROM pg_temp.check_live('by_small', 'live_m');
SELECT * FROM pg_temp.check_live('by_date', 'live_m');
SELECT glintru_detach('by_text'), glintru_detach('by_small'), glintru_detach('by_date');
DROP TABLE by_text, by_small, by_date;

-- ---- batch and popular ----
-- 110 users in a shuffled order (more than one GEMM block of 64): 1..48 mostly with state, the rest without
SELECT array_agg(u ORDER BY pg_temp.rnd(u * 991, 100000), u) AS us FROM generate_series(1, 110) u \gset
CREATE FUNCTION pg_temp.batch_mismatches(us bigint[], k int, excl boolean) RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM
    (SELECT user_id, row_number() OVER (PARTITION BY user_id ORDER BY n) AS n, item_id, score
     FROM glintru_recommend_batch(us, k, excl, 'events') WITH ORDINALITY b(user_id, item_id, score, n)) b
  FULL JOIN
    (SELECT u AS user_id, r.n, r.item_id, r.score
     FROM unnest(us) u, glintru_recommend(u, k, excl, 'events') WITH ORDINALITY r(item_id, score, n)) s
  USING (user_id, n)
  WHERE NOT coalesce(b.item_id = s.item_id AND abs(b.score - s.score) <= 1e-5, false) $$;
SELECT pg_temp.batch_mismatches(:'us', 10, true) AS batch_mismatches,
       pg_temp.batch_mismatches(:'us', 10, false) AS batch_mismatches_all,
       pg_temp.batch_mismatches(:'us', 100, true) AS batch_mismatches_k100;
SELECT count(*) FILTER (WHERE pg_temp.has_state('events', u)) AS with_state,
       count(*) FILTER (WHERE NOT pg_temp.has_state('events', u)) AS without_state
FROM unnest(:'us'::bigint[]) u;
SELECT count(*) AS rows FROM glintru_recommend_batch(ARRAY[1, 1, 999]::bigint[], 3, true, 'events');
-- a user without state gets the popular items (recommend_history of an empty history)
SELECT pg_temp.same_recs(999, 'events', 'live_m', '{}', 10, true) AS popular,
       pg_temp.same_recs(999, 'events', 'live_m', '{}', 10, false) AS popular_all;
SELECT * FROM glintru_recommend(999, 3, true, 'events');
-- k beyond the catalogue: every item not excluded
SELECT (SELECT count(*) FROM glintru_recommend(1, 100, true, 'events')) AS full_window_user,
       (SELECT count(*) FROM glintru_recommend(1, 100, false, 'events')) AS no_exclusion,
       (SELECT count(*) FROM glintru_recommend(999, 100, true, 'events')) AS popular_user;

-- ---- a role with INSERT only (and EXECUTE on glintru_recommend) ----
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_glintru_app;     -- left by an interrupted run
RESET client_min_messages;
CREATE ROLE regress_glintru_app;
GRANT INSERT ON events TO regress_glintru_app;
GRANT EXECUTE ON FUNCTION glintru_recommend(bigint, integer, boolean, regclass, bigint[], bigint[]) TO regress_glintru_app;
SET ROLE regress_glintru_app;
INSERT INTO events VALUES (31, 103, pg_temp.t(10000), 'app');                   -- push
INSERT INTO events VALUES (31, 106, pg_temp.t(10), 'app, old');                  -- rebuild: reads the table
INSERT INTO events VALUES (700, 109, pg_temp.t(10001), 'app, new user');
INSERT INTO events SELECT 32, 100 + 3 * g, pg_temp.t(10010 + g), 'app' FROM generate_series(1, 12) g;  -- slide
SELECT count(*) AS recommended FROM glintru_recommend(700, 5, true, 'events');
SELECT count(*) FROM glintru.user_state;
SELECT count(*) FROM events;
SELECT glintru_attach('live_m', 'events');
RESET ROLE;
SELECT * FROM pg_temp.check_live('events', 'live_m');

-- ---- re-attach: the same model, then another ----
SELECT id AS old_attachment FROM glintru.attachments WHERE relid = 'events'::regclass \gset
SELECT glintru_attach('live_m', 'events') AS attached_users;
SELECT id <> :old_attachment AS new_attachment FROM glintru.attachments WHERE relid = 'events'::regclass;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'events'::regclass;
SELECT * FROM pg_temp.check_live('events', 'live_m');
SELECT glintru_attach('live_m2', 'events') AS attached_users;
SELECT * FROM pg_temp.check_live('events', 'live_m2');
-- the state really changed: some users' recommendations differ from the first model's
SELECT count(*) > 0 AS differs_from_live_m FROM (SELECT DISTINCT user_id FROM events WHERE user_id IS NOT NULL) u
WHERE pg_temp.has_state('events', user_id) AND NOT pg_temp.same_recs(user_id, 'events', 'live_m',
  (SELECT array_agg(item_id::bigint ORDER BY ts) FROM events e WHERE e.user_id = u.user_id AND pg_temp.known(item_id)), 10, false);
INSERT INTO events SELECT pg_temp.user_of(11000 + g), pg_temp.item_of(11000 + g), pg_temp.t(11000 + g), 'm2'
FROM generate_series(1, 50) g;
SELECT * FROM pg_temp.check_live('events', 'live_m2');
-- replacing the model rebuilds the state of the tables attached to it (rolled back: no trace)
SELECT pg_temp.state_digest('events') AS d5 \gset
BEGIN;
SELECT glintru_load_model('live_m2', :'f', replace => true) > 0 AS replaced;   -- now live_m's weights
SELECT * FROM pg_temp.check_live('events', 'live_m2');
SELECT count(*) AS differ_from_live_m FROM (SELECT DISTINCT user_id FROM events WHERE user_id IS NOT NULL) u
WHERE pg_temp.has_state('events', user_id) AND NOT pg_temp.same_recs(user_id, 'events', 'live_m',
  (SELECT array_agg(item_id::bigint ORDER BY ts) FROM events e WHERE e.user_id = u.user_id AND pg_temp.known(item_id)), 10, false);
ROLLBACK;
SELECT pg_temp.state_digest('events') = :'d5' AS states_restored;
SELECT * FROM pg_temp.check_live('events', 'live_m2');
SELECT glintru_drop_model('live_m2');
SELECT count(*) AS verify_one_user FROM glintru_verify_state('events', 1);

-- ---- TRUNCATE ----
SELECT pg_temp.state_digest('events') AS d4 \gset
BEGIN;
TRUNCATE events;
SELECT * FROM pg_temp.check_live('events', 'live_m2');
ROLLBACK;
SELECT pg_temp.state_digest('events') = :'d4' AS states_restored;
TRUNCATE events;
SELECT * FROM pg_temp.check_live('events', 'live_m2');
INSERT INTO events SELECT pg_temp.user_of(12000 + g), pg_temp.item_of(12000 + g), pg_temp.t(12000 + g), 'after truncate'
FROM generate_series(1, 100) g;
SELECT * FROM pg_temp.check_live('events', 'live_m2');

-- ---- ties in the order column keep insertion order (append-only table) ----
CREATE TABLE ties (user_id bigint, item_id bigint, ts integer) WITH (autovacuum_enabled = false);
INSERT INTO ties VALUES (1, 103, 1), (1, 106, 1);
SELECT glintru_attach('live_m', 'ties') AS attached_users;
INSERT INTO ties VALUES (1, 109, 1);
INSERT INTO ties VALUES (1, 112, 1), (1, 115, 1), (2, 118, 7), (2, 121, 7);
INSERT INTO ties VALUES (2, 124, 7);
SELECT * FROM pg_temp.check_live('ties', 'live_m');
SELECT pg_temp.same_recs(1, 'ties', 'live_m', '{103, 106, 109, 112, 115}', 10, true) AS user_1_insertion_order,
       pg_temp.same_recs(2, 'ties', 'live_m', '{118, 121, 124}', 10, true) AS user_2_insertion_order;

-- ---- a dropped attached table: its attachment and state go with it ----
CREATE TABLE dropped (user_id bigint, item_id bigint, ts integer);
INSERT INTO dropped VALUES (1, 103, 1), (2, 106, 1);
SELECT glintru_attach('live_m', 'dropped') AS attached_users;
SELECT 'dropped'::regclass::oid AS dropped_oid \gset
DROP TABLE dropped;
SELECT glintru_load_model('live_m', :'f', replace => true) > 0 AS replaced;
SELECT * FROM pg_temp.check_live('ties', 'live_m');
SELECT count(*) AS left_behind FROM glintru.attachments WHERE relid = :dropped_oid;
SELECT count(*) AS orphan_states FROM glintru.user_state WHERE attachment_id NOT IN (SELECT id FROM glintru.attachments);

-- ---- refresh => 'deferred': slides only record the items; served exactly ----
-- the same stream into an eager and a deferred table: after every phase both
-- check out (verify finds nothing, recommend = recommend_history) and serve
-- the same items; glintru_refresh() makes the deferred states current
CREATE TABLE ev_eager (user_id bigint, item_id bigint, ts bigint);
CREATE TABLE ev_def (user_id bigint, item_id bigint, ts bigint);
CREATE INDEX ON ev_eager (user_id, ts);
CREATE INDEX ON ev_def (user_id, ts);
SELECT glintru_attach('live_m', 'ev_def', refresh => 'lazy');
SELECT glintru_attach('live_m', 'ev_eager') AS eager_users, glintru_attach('live_m', 'ev_def', refresh => 'deferred') AS deferred_users;
SELECT relid, refresh FROM glintru.attachments WHERE relid IN ('ev_eager'::regclass, 'ev_def'::regclass) ORDER BY relid::text;
CREATE FUNCTION pg_temp.both(sql text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format(sql, 'ev_eager');
  EXECUTE format(sql, 'ev_def');
END $$;
CREATE FUNCTION pg_temp.same_both(k int DEFAULT 10) RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM (SELECT DISTINCT user_id FROM ev_eager WHERE pg_temp.known(item_id)) u
  WHERE (SELECT array_agg(item_id ORDER BY n) FROM glintru_recommend(u.user_id, k, true, 'ev_eager') WITH ORDINALITY a(item_id, score, n))
        IS DISTINCT FROM
        (SELECT array_agg(item_id ORDER BY n) FROM glintru_recommend(u.user_id, k, true, 'ev_def') WITH ORDINALITY a(item_id, score, n)) $$;
-- short windows (pushes), then windows that fill and slide, one row per statement
SELECT pg_temp.both('INSERT INTO %s VALUES (1, 103, 1), (2, 106, 1), (2, 109, 2)');
DO $$ BEGIN FOR g IN 2 .. 14 LOOP
  PERFORM pg_temp.both(format('INSERT INTO %%s VALUES (1, %s, %s)', pg_temp.item_of(g), 10 + g));
END LOOP; END $$;
SELECT * FROM pg_temp.check_live('ev_def', 'live_m');
SELECT * FROM pg_temp.check_live('ev_eager', 'live_m');
SELECT pg_temp.same_both() AS eager_deferred_differ;
-- served read-only (as on a standby): the window is computed in memory
BEGIN READ ONLY;
SELECT count(*) AS recommended FROM glintru_recommend(1, 5, true, 'ev_def');
COMMIT;
-- multi-row statements, out-of-order events, updates, deletes, a rollback
SELECT pg_temp.both('INSERT INTO %s SELECT 1 + mod(g, 3), pg_temp.item_of(100 + g), 100 + g FROM generate_series(1, 40) g');
SELECT pg_temp.both('INSERT INTO %s VALUES (1, 190, 5), (3, 187, 50)');
SELECT pg_temp.both('UPDATE %s SET item_id = 184 WHERE user_id = 2 AND ts = 119');
SELECT pg_temp.both('DELETE FROM %s WHERE user_id = 3 AND ts > 130');
BEGIN;
SELECT pg_temp.both('INSERT INTO %s SELECT 2, 103, 1000 + g FROM generate_series(1, 9) g');
ROLLBACK;
SELECT * FROM pg_temp.check_live('ev_def', 'live_m');
SELECT pg_temp.same_both() AS eager_deferred_differ;
-- refresh: one user, then all; nothing left to do afterwards; an eager table has nothing to refresh
SELECT glintru_refresh('ev_def', 1) AS refreshed_user_1, glintru_refresh('ev_def', 1) AS again;
SELECT glintru_refresh('ev_def') > 0 AS refreshed_others, glintru_refresh('ev_def') AS again,
       glintru_refresh('ev_eager') AS eager;
SELECT * FROM pg_temp.check_live('ev_def', 'live_m');
SELECT pg_temp.same_both() AS eager_deferred_differ;
-- more slides after the refresh, then a model swap rebuilds both
DO $$ BEGIN FOR g IN 200 .. 206 LOOP
  PERFORM pg_temp.both(format('INSERT INTO %%s VALUES (2, %s, %s)', pg_temp.item_of(g), 10000 + g));
END LOOP; END $$;
SELECT glintru_load_model('live_m', :'f', replace => true) > 0 AS replaced;
SELECT * FROM pg_temp.check_live('ev_def', 'live_m');
SELECT pg_temp.same_both() AS eager_deferred_differ;
-- errors
SELECT glintru_refresh('text_users');
SELECT glintru_refresh(NULL);
-- re-attached eagerly: every state current again
SELECT glintru_attach('live_m', 'ev_def') AS eager_again;
SELECT glintru_refresh('ev_def') AS nothing_to_refresh;
SELECT glintru_detach('ev_eager'), glintru_detach('ev_def');
DROP TABLE ev_eager, ev_def;

-- ---- detach ----
SELECT glintru_detach('ties');
SELECT glintru_detach('"Live Schema"."My ""Events"""');
SELECT glintru_detach('events');
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid IN ('events'::regclass, 'ties'::regclass,
                                                               '"Live Schema"."My ""Events"""'::regclass);
SELECT count(*) AS attachments FROM glintru.attachments;
SELECT count(*) AS states FROM glintru.user_state;
INSERT INTO events VALUES (1, 103, pg_temp.t(20000), 'after detach');
SELECT count(*) AS states FROM glintru.user_state;
SELECT * FROM glintru_recommend(1, 5, true, 'events');
SELECT glintru_detach('events');

-- never silent: glintru's trigger on a table that is not attached (copied by
-- hand, or by Citus onto a shard) refuses the write instead of ignoring it
CREATE TRIGGER glintru_insert AFTER INSERT ON events REFERENCING NEW TABLE AS glintru_new
    FOR EACH STATEMENT EXECUTE FUNCTION glintru_trigger();
INSERT INTO events VALUES (1, 106, pg_temp.t(20001), 'no attachment');
SELECT count(*) AS rows_kept FROM events WHERE note = 'no attachment';
DROP TRIGGER glintru_insert ON events;

-- ---- clean up ----
SELECT glintru_drop_model('live_m');
SELECT glintru_drop_model('live_m2');
REVOKE ALL ON events FROM regress_glintru_app;
REVOKE ALL ON FUNCTION glintru_recommend(bigint, integer, boolean, regclass, bigint[], bigint[]) FROM regress_glintru_app;
DROP ROLE regress_glintru_app;
DROP SCHEMA "Live Schema" CASCADE;
DROP VIEW events_v;
DROP TABLE events, ties, text_users, text_items, json_order;
