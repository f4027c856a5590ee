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

REVOKE EXECUTE ON FUNCTION glintru_attach(text, regclass, name, name, name, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION glintru_refresh(regclass, bigint) FROM PUBLIC;
