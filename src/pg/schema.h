/*
 * schema.h — the names and column numbers of glintru's own tables.
 *
 * This mirrors sql/glintru--0.2.0.sql (and the upgrade script) by hand: the
 * C code reads these tables with index scans and heap_getattr(), which
 * address columns by number and indexes by name, so a change to a CREATE
 * TABLE there must be made here too (and nowhere else: every C file takes
 * the numbers from this header).  Between installing this library and
 * ALTER EXTENSION … UPDATE the tables are release 0.1.0's: attachments
 * without refresh (read as eager) and user_state with the state 4th (read
 * by name for serving; writers refuse those tables).
 */
#ifndef GLINTRU_SCHEMA_H
#define GLINTRU_SCHEMA_H

/* the schema CREATE EXTENSION makes for glintru's tables */
#define GLINTRU_SCHEMA_NAME "glintru"

/* glintru.models: one row per loaded model, the safetensors file in weights */
#define GLINTRU_MODELS "models"
#define GLINTRU_MODELS_PKEY "models_pkey"	/* (id) */
#define GLINTRU_MODELS_NAME_KEY "models_name_key"	/* (name) */
#define Anum_glintru_models_id 1
#define Anum_glintru_models_name 2
#define Anum_glintru_models_version 3
#define Anum_glintru_models_n_items 4
#define Anum_glintru_models_d 5
#define Anum_glintru_models_n_heads 6
#define Anum_glintru_models_max_seq_len 7
#define Anum_glintru_models_layer_norm_eps 8
#define Anum_glintru_models_checksum 9
#define Anum_glintru_models_bytes 10
#define Anum_glintru_models_loaded_at 11
#define Anum_glintru_models_weights 12

/* glintru.attachments: interactions tables whose users' state is kept */
#define GLINTRU_ATTACHMENTS "attachments"
#define GLINTRU_ATTACHMENTS_PKEY "attachments_pkey"	/* (id) */
#define GLINTRU_ATTACHMENTS_RELID_KEY "attachments_relid_key"	/* (relid) */
#define Anum_glintru_attachments_id 1
#define Anum_glintru_attachments_relid 2
#define Anum_glintru_attachments_model_id 3
#define Anum_glintru_attachments_model_version 4
#define Anum_glintru_attachments_user_column 5
#define Anum_glintru_attachments_item_column 6
#define Anum_glintru_attachments_order_column 7
#define Anum_glintru_attachments_attached_at 8
#define Anum_glintru_attachments_refresh 9
/* Citus (added at the end by ALTER TABLE): a shard's distributed table, its shard id and hash range */
#define Anum_glintru_attachments_logical_relid 10
#define Anum_glintru_attachments_shard_id 11
#define Anum_glintru_attachments_hash_min 12
#define Anum_glintru_attachments_hash_max 13

/* glintru.user_state: one row per (attachment, user) */
#define GLINTRU_USER_STATE "user_state"
#define GLINTRU_USER_STATE_PKEY "user_state_pkey"	/* (attachment_id, user_id) */
#define Anum_glintru_user_state_attachment_id 1
#define Anum_glintru_user_state_user_id 2
#define Anum_glintru_user_state_state 3
#define Anum_glintru_user_state_last_order 4
#define Natts_glintru_user_state 4

/* glintru.jobs: background trainings (jobs.c reads and writes it through SPI) */
#define GLINTRU_JOBS "jobs"

#endif							/* GLINTRU_SCHEMA_H */
