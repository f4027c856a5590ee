-- glintru 0.1.0: model catalogue, loading/export, exact inference and top-k.
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

CREATE FUNCTION glintru_user_vector(model text, history bigint[])
RETURNS real[]
AS 'MODULE_PATHNAME', 'glintru_user_vector'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

CREATE FUNCTION glintru_recommend_history(model text, history bigint[], k integer DEFAULT 10,
                                          exclude_seen boolean DEFAULT true)
RETURNS TABLE(item_id bigint, score real)
AS 'MODULE_PATHNAME', 'glintru_recommend_history'
LANGUAGE C STABLE STRICT PARALLEL SAFE ROWS 10;

-- Loading, replacing and dropping models changes what every session serves.
REVOKE EXECUTE ON FUNCTION glintru_load_model(text, bytea, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION glintru_load_model_file(text, text, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION glintru_drop_model(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION glintru_export_model(text) FROM PUBLIC;
