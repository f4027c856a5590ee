-- glintru 0.1.0 -> 0.2.0: deferred refresh mode, glintru_refresh(), and the
-- 0.2.0 state format (the row's changing bytes at its end, so that a HOT
-- update logs little).  States are rebuilt from the attached tables.
\echo Use "ALTER EXTENSION glintru UPDATE TO '0.2.0'" to load this file. \quit

ALTER TABLE glintru.attachments
    ADD COLUMN refresh text NOT NULL DEFAULT 'eager' CHECK (refresh IN ('eager', 'deferred'));

-- The 0.1.0 states are in the old format and the columns in the old order:
-- a new table, filled again by re-attaching every attached table below.
DROP TABLE glintru.user_state;
CREATE TABLE glintru.user_state (
    attachment_id integer NOT NULL REFERENCES glintru.attachments(id) ON DELETE CASCADE,
    user_id       bigint NOT NULL,
    state         bytea NOT NULL,
    last_order    bytea,
    PRIMARY KEY (attachment_id, user_id)
) WITH (toast_tuple_target = 8160, fillfactor = 50);
ALTER TABLE glintru.user_state ALTER COLUMN state SET STORAGE MAIN;
REVOKE ALL ON glintru.user_state FROM PUBLIC;
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

-- every attached table: triggers and states again, in the 0.2.0 format
SELECT glintru_attach(m.name, a.relid, a.user_column, a.item_column, a.order_column)
FROM glintru.attachments a JOIN glintru.models m ON m.id = a.model_id
ORDER BY a.id;
