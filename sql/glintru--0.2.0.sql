-- glintru 0.2.0: model catalogue, loading/export, exact inference and top-k,
-- live state kept by triggers (eager or deferred), training and evaluation.
\echo Use "CREATE EXTENSION glintru" to load this file. \quit

-- The catalogue lives in its own schema; functions go to the extension's schema.
CREATE SCHEMA glintru;
REVOKE ALL ON SCHEMA glintru FROM PUBLIC;

-- version changes on every load/replace: shared memory caches (model id, version)
CREATE SEQUENCE glintru.model_version_seq;

CREATE TABLE glintru.models (
    id            serial PRIMARY KEY,
    name          text NOT NULL UNIQUE CHECK (name <> ''),
    version       bigint NOT NULL DEFAULT nextval('glintru.model_version_seq'),
    n_items       bigint NOT NULL,
    d             integer NOT NULL,
    n_heads       integer NOT NULL,
    max_seq_len   integer NOT NULL,
    layer_norm_eps real NOT NULL,
    checksum      text NOT NULL,          -- sha256 of weights, hex
    bytes         bigint NOT NULL,
    loaded_at     timestamptz NOT NULL DEFAULT now(),
    weights       bytea NOT NULL          -- the safetensors file, byte for byte
);
-- float data does not compress: store it out of line, uncompressed
ALTER TABLE glintru.models ALTER COLUMN weights SET STORAGE EXTERNAL;
REVOKE ALL ON glintru.models FROM PUBLIC;
-- glintru_models() lists what is loaded to anyone; the weights stay private
GRANT USAGE ON SCHEMA glintru TO PUBLIC;
GRANT SELECT (id, name, version, n_items, d, n_heads, max_seq_len, layer_norm_eps,
              checksum, bytes, loaded_at) ON glintru.models TO PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('glintru.models', '');
SELECT pg_catalog.pg_extension_config_dump('glintru.models_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('glintru.model_version_seq', '');

CREATE FUNCTION glintru_load_model(name text, weights bytea, replace boolean DEFAULT false)
RETURNS integer
AS 'MODULE_PATHNAME', 'glintru_load_model'
LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION glintru_load_model_file(name text, path text, replace boolean DEFAULT false)
RETURNS integer
AS 'MODULE_PATHNAME', 'glintru_load_model_file'
LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION glintru_export_model(name text)
RETURNS bytea
AS 'MODULE_PATHNAME', 'glintru_export_model'
LANGUAGE C STABLE STRICT;

CREATE FUNCTION glintru_drop_model(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'glintru_drop_model'
LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION glintru_models(
    OUT name text, OUT items bigint, OUT d integer, OUT heads integer,
    OUT max_seq_len integer, OUT bytes bigint, OUT checksum text,
    OUT loaded_at timestamptz, OUT in_shared_memory boolean)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'glintru_models'
LANGUAGE C STABLE;

CREATE FUNCTION glintru_memory(
    OUT mode text, OUT budget_bytes bigint, OUT used_bytes bigint, OUT models integer)
RETURNS record
AS 'MODULE_PATHNAME', 'glintru_memory'
LANGUAGE C VOLATILE;

-- Build a model's shared copy now (a load already builds it when it commits;
-- this is for after a restart or an eviction); true if it is in shared memory
-- afterwards.  It only reads, and does nothing a first glintru_recommend_*
-- call would not do: EXECUTE stays with PUBLIC.
CREATE FUNCTION glintru_prewarm(model text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'glintru_prewarm'
LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION glintru_user_vector(model text, history bigint[])
RETURNS real[]
AS 'MODULE_PATHNAME', 'glintru_user_vector'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

-- not STRICT: NULL candidates / exclude mean "no filter"; a NULL model,
-- history, k or exclude_seen still returns no rows (checked in C)
CREATE FUNCTION glintru_recommend_history(model text, history bigint[], k integer DEFAULT 10,
                                          exclude_seen boolean DEFAULT true,
                                          candidates bigint[] DEFAULT NULL,
                                          exclude bigint[] DEFAULT NULL)
RETURNS TABLE(item_id bigint, score real)
AS 'MODULE_PATHNAME', 'glintru_recommend_history'
LANGUAGE C STABLE PARALLEL SAFE ROWS 10;

CREATE FUNCTION glintru_score_history(model text, history bigint[], items bigint[])
RETURNS TABLE(item_id bigint, score real)
AS 'MODULE_PATHNAME', 'glintru_score_history'
LANGUAGE C STABLE STRICT PARALLEL SAFE ROWS 10;

-- Loading, replacing and dropping models changes what every session serves.
REVOKE EXECUTE ON FUNCTION glintru_load_model(text, bytea, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION glintru_load_model_file(text, text, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION glintru_drop_model(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION glintru_export_model(text) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Live recommendations: tables attached to a model, per-user state kept by
-- triggers in the same transaction as the application's inserts.

CREATE TABLE glintru.attachments (
    id            serial PRIMARY KEY,
    relid         regclass NOT NULL UNIQUE,       -- the interactions table
    model_id      integer NOT NULL REFERENCES glintru.models(id),
    model_version bigint NOT NULL,                -- the version the state was built with
    user_column   name NOT NULL,
    item_column   name NOT NULL,
    order_column  name NOT NULL,
    attached_at   timestamptz NOT NULL DEFAULT now(),
    -- eager: every state is current after each statement; deferred: an insert
    -- that slides a full window only records its items (glintru_refresh)
    refresh       text NOT NULL DEFAULT 'eager' CHECK (refresh IN ('eager', 'deferred'))
);
REVOKE ALL ON glintru.attachments FROM PUBLIC;

-- One row per (attachment, user): the incremental state of the user's window
-- (src/core/forward.h: the window's item rows, then the committed GRU state
-- h, then a trailer with the window length and flags; no attention sums: the
-- attention is recomputed over the window when serving) and the order value
-- of the latest event (the order type's binary send form).  Columns and state
-- are ordered so that what an event changes lies at the end of the row: a HOT
-- update then logs only those bytes.
CREATE TABLE glintru.user_state (
    attachment_id integer NOT NULL REFERENCES glintru.attachments(id) ON DELETE CASCADE,
    user_id       bigint NOT NULL,
    state         bytea NOT NULL,
    last_order    bytea,
    PRIMARY KEY (attachment_id, user_id)
) WITH (toast_tuple_target = 8160, fillfactor = 50);
-- keep states (a few kB) inline and uncompressed: one heap write per update
ALTER TABLE glintru.user_state ALTER COLUMN state SET STORAGE MAIN;
REVOKE ALL ON glintru.user_state FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('glintru.attachments', '');
SELECT pg_catalog.pg_extension_config_dump('glintru.attachments_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('glintru.user_state', '');

CREATE FUNCTION glintru_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'glintru_trigger'
LANGUAGE C;

CREATE FUNCTION glintru_attach(model text, interactions regclass,
                               user_column name DEFAULT 'user_id',
                               item_column name DEFAULT 'item_id',
                               order_column name DEFAULT 'ts',
                               refresh text DEFAULT 'eager')
RETURNS bigint
AS 'MODULE_PATHNAME', 'glintru_attach'
LANGUAGE C VOLATILE STRICT;

-- Bring deferred states up to date (all users, or one); the number refreshed.
CREATE FUNCTION glintru_refresh(interactions regclass, user_id bigint DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'glintru_refresh'
LANGUAGE C VOLATILE;

CREATE FUNCTION glintru_detach(interactions regclass)
RETURNS void
AS 'MODULE_PATHNAME', 'glintru_detach'
LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION glintru_verify_state(interactions regclass, user_id bigint DEFAULT NULL)
RETURNS TABLE(user_id bigint, problem text)
AS 'MODULE_PATHNAME', 'glintru_verify_state'
LANGUAGE C VOLATILE;

CREATE FUNCTION glintru_recommend(user_id bigint, k integer DEFAULT 10,
                                  exclude_seen boolean DEFAULT true,
                                  interactions regclass DEFAULT NULL,
                                  candidates bigint[] DEFAULT NULL,
                                  exclude bigint[] DEFAULT NULL)
RETURNS TABLE(item_id bigint, score real)
AS 'MODULE_PATHNAME', 'glintru_recommend'
LANGUAGE C STABLE ROWS 10;

CREATE FUNCTION glintru_recommend_batch(user_ids bigint[], k integer DEFAULT 10,
                                        exclude_seen boolean DEFAULT true,
                                        interactions regclass DEFAULT NULL,
                                        candidates bigint[] DEFAULT NULL,
                                        exclude bigint[] DEFAULT NULL)
RETURNS TABLE(user_id bigint, item_id bigint, score real)
AS 'MODULE_PATHNAME', 'glintru_recommend_batch'
LANGUAGE C STABLE;

CREATE FUNCTION glintru_score(user_id bigint, items bigint[], interactions regclass DEFAULT NULL)
RETURNS TABLE(item_id bigint, score real)
AS 'MODULE_PATHNAME', 'glintru_score'
LANGUAGE C STABLE ROWS 10;

REVOKE EXECUTE ON FUNCTION glintru_attach(text, regclass, name, name, name, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION glintru_refresh(regclass, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION glintru_detach(regclass) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION glintru_verify_state(regclass, bigint) FROM PUBLIC;

-- A dropped interactions table takes its attachment (and, by cascade, its
-- state) with it.
CREATE FUNCTION glintru_forget_dropped_tables()
RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM glintru.attachments a
    WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) a.relid::pg_catalog.oid);
END
$$;
REVOKE EXECUTE ON FUNCTION glintru_forget_dropped_tables() FROM PUBLIC;
CREATE EVENT TRIGGER glintru_forget_dropped_tables ON sql_drop
    EXECUTE FUNCTION glintru_forget_dropped_tables();

-- ---------------------------------------------------------------------------
-- Training and evaluation inside the database.

CREATE FUNCTION glintru_train(name text, interactions regclass,
                              user_column name DEFAULT 'user_id',
                              item_column name DEFAULT 'item_id',
                              order_column name DEFAULT 'ts',
                              options jsonb DEFAULT '{}')
RETURNS integer
AS 'MODULE_PATHNAME', 'glintru_train_sql'
LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION glintru_evaluate(model text, interactions regclass,
                                 user_column name DEFAULT 'user_id',
                                 item_column name DEFAULT 'item_id',
                                 order_column name DEFAULT 'ts',
                                 protocol text DEFAULT 'full', k integer DEFAULT 10)
RETURNS TABLE(metric text, value double precision)
AS 'MODULE_PATHNAME', 'glintru_evaluate'
LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION glintru_training_progress(
    OUT pid integer, OUT model text, OUT epoch integer, OUT epochs integer,
    OUT loss double precision, OUT val_ndcg10 double precision,
    OUT best_val_ndcg10 double precision, OUT elapsed_s double precision,
    OUT eta_s double precision)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'glintru_training_progress'
LANGUAGE C VOLATILE;

REVOKE EXECUTE ON FUNCTION glintru_train(text, regclass, name, name, name, jsonb) FROM PUBLIC;

-- Synthetic interactions with sequential structure, for demos and tests:
-- items fall into clusters of 30; each user stays in one cluster and walks
-- it with a user-specific stride (the next item follows from the last ones),
-- and 15% of events are a random item drawn with a popularity skew.
CREATE FUNCTION glintru_synthetic_interactions(n_users integer, n_items integer DEFAULT 300,
                                               events_per_user integer DEFAULT 30, seed integer DEFAULT 1)
RETURNS TABLE(user_id bigint, item_id bigint, ts bigint)
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH p AS (
        SELECT u, t,
               hashint8((u::int8 << 32) # (t::int8 << 8) # seed) AS h,
               hashint8((u::int8 << 20) # seed) AS hu
        FROM generate_series(1, n_users) u, generate_series(0, events_per_user - 1) t
    )
    SELECT u::int8,
           1000 + CASE
               WHEN abs(h % 100) < 15   -- noise: skewed towards low item numbers
                   THEN (abs(h / 100) % n_items) * (abs(h / 100) % n_items) / n_items + 1
               ELSE (abs(hu) % greatest(n_items / 30, 1)) * 30
                    + (abs(hu / 7) % 30 + t * (1 + abs(hu / 11) % 3)) % 30 + 1
           END::int8,
           t::int8
    FROM p
$$;

-- usage counters (new in 0.2.0): per model and attachment, in shared memory
-- with shared_preload_libraries, else this backend's own
CREATE FUNCTION glintru_stats(
    OUT model_id integer, OUT attachment_id integer,
    OUT calls bigint, OUT rows bigint,
    OUT total_time_ms double precision, OUT max_time_ms double precision,
    OUT trigger_events bigint, OUT rebuilds bigint,
    OUT deferred_refreshes bigint, OUT state_bytes_written bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'glintru_stats'
LANGUAGE C VOLATILE;

CREATE FUNCTION glintru_stats_reset() RETURNS void
AS 'MODULE_PATHNAME', 'glintru_stats_reset'
LANGUAGE C VOLATILE;

REVOKE EXECUTE ON FUNCTION glintru_stats_reset() FROM PUBLIC;

-- the counters with the model's name and the interactions table (NULL once dropped)
CREATE VIEW glintru_stats AS
  SELECT m.name AS model, s.model_id, a.relid::regclass AS interactions, s.attachment_id,
         s.calls, s.rows, s.total_time_ms, s.max_time_ms, s.trigger_events, s.rebuilds,
         s.deferred_refreshes, s.state_bytes_written
  FROM glintru_stats() s
  LEFT JOIN glintru.models m ON m.id OPERATOR(pg_catalog.=) s.model_id
  LEFT JOIN glintru.attachments a ON a.id OPERATOR(pg_catalog.=) s.attachment_id;

GRANT SELECT ON glintru_stats TO PUBLIC;

-- ---------------------------------------------------------------------------
-- Background training jobs (issue 12, part 2): glintru_train_start() runs a
-- glintru_train() in a background worker; src/pg/jobs.c owns these objects.

-- one row per job; written as its owner by jobs.c (queued → running → done,
-- failed or cancelled); read through glintru_jobs()
CREATE TABLE glintru.jobs (
    id              bigserial PRIMARY KEY,
    model           text NOT NULL,
    interactions    oid NOT NULL,              -- the table (regclass; a dropped one fails the job)
    user_column     name NOT NULL,
    item_column     name NOT NULL,
    order_column    name NOT NULL,
    options         jsonb NOT NULL,
    role            oid NOT NULL,              -- the job runs as this role
    state           text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    incarnation     bigint NOT NULL,           -- the server start that registered its worker
    pid             integer,                   -- the worker, once running
    epoch           integer,                   -- the last epoch's numbers, once ended
    epochs          integer,
    loss            double precision,
    val_ndcg10      double precision,
    best_val_ndcg10 double precision,
    model_id        integer,                   -- the stored model (done)
    created         timestamptz NOT NULL DEFAULT now(),
    started         timestamptz,
    finished        timestamptz,
    error           text
);
REVOKE ALL ON glintru.jobs FROM PUBLIC;

CREATE FUNCTION glintru_train_start(name text, interactions regclass,
                                    user_column name DEFAULT 'user_id',
                                    item_column name DEFAULT 'item_id',
                                    order_column name DEFAULT 'ts',
                                    options jsonb DEFAULT '{}')
RETURNS bigint
AS 'MODULE_PATHNAME', 'glintru_train_start'
LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION glintru_train_cancel(job bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'glintru_train_cancel'
LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION glintru_jobs(
    OUT id bigint, OUT model text, OUT interactions regclass, OUT role text, OUT state text,
    OUT epoch integer, OUT epochs integer, OUT loss double precision,
    OUT val_ndcg10 double precision, OUT best_val_ndcg10 double precision,
    OUT created timestamptz, OUT started timestamptz, OUT finished timestamptz,
    OUT model_id integer, OUT error text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'glintru_jobs'
LANGUAGE C VOLATILE;

-- the same privileges as glintru_train(); the list is open to everyone
REVOKE EXECUTE ON FUNCTION glintru_train_start(text, regclass, name, name, name, jsonb) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION glintru_train_cancel(bigint) FROM PUBLIC;

-- end of background training jobs
-- ---------------------------------------------------------------------------

-- Citus (new in 0.2.0; docs/scale-out.md).  glintru's tables stay local to
-- each node.  On a distributed interactions table every shard placement has
-- its own attachment (the shard's distributed table, id and hash range of
-- user ids) and state, on the node that holds it; the coordinator records
-- the distributed table itself (logical_relid = relid, no shard, no state)
-- and routes serving calls to the shards.  Models, attachments and
-- detachments reach every node through a reference table the coordinator
-- creates on first use (glintru.citus_ops, not part of the extension: Citus
-- must create it on the workers), whose trigger applies each row on each
-- node inside Citus's two-phase commit.
ALTER TABLE glintru.attachments
    ADD COLUMN logical_relid oid,
    ADD COLUMN shard_id bigint,
    ADD COLUMN hash_min integer,
    ADD COLUMN hash_max integer;

-- the trigger of glintru.citus_ops: applies a model, attach or detach on this node
CREATE FUNCTION glintru_citus_apply()
RETURNS trigger
AS 'MODULE_PATHNAME', 'glintru_citus_apply'
LANGUAGE C;

-- on the coordinator: every model and every distributed attachment to every
-- node again (a node added later, shards moved, split or rebalanced)
CREATE FUNCTION glintru_citus_sync()
RETURNS void
AS 'MODULE_PATHNAME', 'glintru_citus_sync'
LANGUAGE C VOLATILE;

-- calls the coordinator routes to the node of one shard (distributed
-- functions, distribution argument route: a user id the shard holds)
CREATE FUNCTION glintru.citus_recommend_batch(route bigint, user_ids bigint[], k integer,
                                              exclude_seen boolean, interactions regclass,
                                              candidates bigint[], exclude bigint[])
RETURNS TABLE(user_id bigint, item_id bigint, score real)
AS 'MODULE_PATHNAME', 'glintru_citus_recommend_batch'
LANGUAGE C STABLE;

CREATE FUNCTION glintru.citus_verify_state(route bigint, interactions regclass, user_id bigint)
RETURNS TABLE(user_id bigint, problem text)
AS 'MODULE_PATHNAME', 'glintru_citus_verify_state'
LANGUAGE C VOLATILE;

CREATE FUNCTION glintru.citus_refresh(route bigint, interactions regclass, user_id bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'glintru_citus_refresh'
LANGUAGE C VOLATILE;

CREATE FUNCTION glintru.citus_shard_users(route bigint, interactions regclass)
RETURNS bigint
AS 'MODULE_PATHNAME', 'glintru_citus_shard_users'
LANGUAGE C STABLE;

REVOKE EXECUTE ON FUNCTION glintru_citus_apply() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION glintru_citus_sync() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION glintru.citus_verify_state(bigint, regclass, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION glintru.citus_refresh(bigint, regclass, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION glintru.citus_shard_users(bigint, regclass) FROM PUBLIC;
-- end of the Citus section
