-- glintru 0.1.0 -> 0.2.0: deferred refresh mode, glintru_refresh(), and the
-- 0.2.0 layout of glintru.user_state (the row's changing bytes at its end,
-- so that a HOT update logs little).  The states themselves are kept: the
-- library reads a 0.1.0 state (format GST2) by converting it exactly, and
-- writes the 0.2.0 format (GST3) the next time the user's state changes.
\echo Use "ALTER EXTENSION glintru UPDATE TO '0.2.0'" to load this file. \quit

ALTER TABLE glintru.attachments
    ADD COLUMN refresh text NOT NULL DEFAULT 'eager' CHECK (refresh IN ('eager', 'deferred'));

-- The columns in the 0.2.0 order (state before last_order) and last_order
-- as bytea (0.1.0 kept the same bytes as bytea's hex text): a new table,
-- the rows copied over.
ALTER TABLE glintru.user_state RENAME TO user_state_0_1_0;
ALTER INDEX glintru.user_state_pkey RENAME TO user_state_0_1_0_pkey;
CREATE TABLE glintru.user_state (
    attachment_id integer NOT NULL REFERENCES glintru.attachments(id) ON DELETE CASCADE,
    user_id       bigint NOT NULL,
    state         bytea NOT NULL,
    last_order    bytea,
    PRIMARY KEY (attachment_id, user_id)
) WITH (toast_tuple_target = 8160, fillfactor = 50);
ALTER TABLE glintru.user_state ALTER COLUMN state SET STORAGE MAIN;
REVOKE ALL ON glintru.user_state FROM PUBLIC;
INSERT INTO glintru.user_state (attachment_id, user_id, state, last_order)
    SELECT attachment_id, user_id, state, last_order::bytea FROM glintru.user_state_0_1_0;
DROP TABLE glintru.user_state_0_1_0;
SELECT pg_catalog.pg_extension_config_dump('glintru.user_state', '');

DROP FUNCTION glintru_attach(text, regclass, name, name, name);
CREATE FUNCTION glintru_attach(model text, interactions regclass,
                               user_column name DEFAULT 'user_id',
                               item_column name DEFAULT 'item_id',
                               order_column name DEFAULT 'ts',
                               refresh text DEFAULT 'eager')
RETURNS bigint
AS 'MODULE_PATHNAME', 'glintru_attach'
LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION glintru_refresh(interactions regclass, user_id bigint DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'glintru_refresh'
LANGUAGE C VOLATILE;

-- Build a model's shared copy now (a load already builds it when it commits;
-- this is for after a restart or an eviction); true if it is in shared memory
-- afterwards.  It only reads, and does nothing a first glintru_recommend_*
-- call would not do: EXECUTE stays with PUBLIC.
CREATE FUNCTION glintru_prewarm(model text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'glintru_prewarm'
LANGUAGE C VOLATILE STRICT;

REVOKE EXECUTE ON FUNCTION glintru_attach(text, regclass, name, name, name, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION glintru_refresh(regclass, bigint) FROM PUBLIC;

-- business filters and item scoring: candidates / exclude, glintru_score*
-- New trailing parameters change a function's signature, which CREATE OR
-- REPLACE cannot do (it would add an overload, and calls with the old
-- arguments would become ambiguous): drop and create.  A DROP fails if a
-- user's view or function depends on the old signature — that is wanted:
-- the upgrade stops instead of dropping the user's objects (no CASCADE).
-- Privileges granted or revoked on the old functions by the administrator
-- do not carry over; the defaults (EXECUTE for PUBLIC) apply again.

DROP FUNCTION glintru_recommend_history(text, bigint[], integer, boolean);
-- not STRICT: NULL candidates / exclude mean "no filter"; a NULL model,
-- history, k or exclude_seen still returns no rows (checked in C)
CREATE FUNCTION glintru_recommend_history(model text, history bigint[], k integer DEFAULT 10,
                                          exclude_seen boolean DEFAULT true,
                                          candidates bigint[] DEFAULT NULL,
                                          exclude bigint[] DEFAULT NULL)
RETURNS TABLE(item_id bigint, score real)
AS 'MODULE_PATHNAME', 'glintru_recommend_history'
LANGUAGE C STABLE PARALLEL SAFE ROWS 10;

DROP FUNCTION glintru_recommend(bigint, integer, boolean, regclass);
CREATE FUNCTION glintru_recommend(user_id bigint, k integer DEFAULT 10,
                                  exclude_seen boolean DEFAULT true,
                                  interactions regclass DEFAULT NULL,
                                  candidates bigint[] DEFAULT NULL,
                                  exclude bigint[] DEFAULT NULL)
RETURNS TABLE(item_id bigint, score real)
AS 'MODULE_PATHNAME', 'glintru_recommend'
LANGUAGE C STABLE ROWS 10;

DROP FUNCTION glintru_recommend_batch(bigint[], integer, boolean, regclass);
CREATE FUNCTION glintru_recommend_batch(user_ids bigint[], k integer DEFAULT 10,
                                        exclude_seen boolean DEFAULT true,
                                        interactions regclass DEFAULT NULL,
                                        candidates bigint[] DEFAULT NULL,
                                        exclude bigint[] DEFAULT NULL)
RETURNS TABLE(user_id bigint, item_id bigint, score real)
AS 'MODULE_PATHNAME', 'glintru_recommend_batch'
LANGUAGE C STABLE;

-- new in 0.2.0
CREATE FUNCTION glintru_score_history(model text, history bigint[], items bigint[])
RETURNS TABLE(item_id bigint, score real)
AS 'MODULE_PATHNAME', 'glintru_score_history'
LANGUAGE C STABLE STRICT PARALLEL SAFE ROWS 10;

CREATE FUNCTION glintru_score(user_id bigint, items bigint[], interactions regclass DEFAULT NULL)
RETURNS TABLE(item_id bigint, score real)
AS 'MODULE_PATHNAME', 'glintru_score'
LANGUAGE C STABLE ROWS 10;

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
