/*
 * catalog.h — storage: rows of glintru's own tables (glintru.models and
 * glintru.attachments) and the two rules every access follows: SPI return
 * codes are checked, and glintru's tables are written as their owner.
 *
 * The lowest layer of the glue: it calls the numeric core only (the model
 * configuration it stores), never the cache, the state or the SQL entry
 * points above it.
 */
#ifndef GLINTRU_CATALOG_H
#define GLINTRU_CATALOG_H

#include "postgres.h"

#include "nodes/pg_list.h"
#include "utils/snapshot.h"

#include "model.h"

/* ---- SPI with checked return codes ---- */

extern void glintru_spi_connect(void);
extern void glintru_spi_finish(void);
extern void glintru_spi_check(int rc, int expected, const char *what);
extern uint64 glintru_spi_run(const char *sql, int nargs, Oid *types, Datum *args,
							  bool read_only, long tcount, int expected, const char *what);

/* ---- running as the owner of a table ---- */

/* The role a glintru_become_owner_of() replaced, for glintru_restore_role(). */
typedef struct GlintruRoleSwitch
{
	Oid			save_user;
	int			save_sec;
} GlintruRoleSwitch;

extern void glintru_become_owner_of(Oid relid, GlintruRoleSwitch *rs);
extern void glintru_restore_role(const GlintruRoleSwitch *rs);

/* ---- lookups ---- */

extern Oid	glintru_catalog_relid(const char *relname);
extern Snapshot glintru_catalog_snapshot(void);

/* A row of glintru.models, without the weights. */
typedef struct GlintruCatalogEntry
{
	int32		id;
	int64		version;
	char		name[NAMEDATALEN];
} GlintruCatalogEntry;

extern bool glintru_catalog_find(const char *name, GlintruCatalogEntry *entry);
extern bool glintru_catalog_find_id(int32 id, GlintruCatalogEntry *entry);
extern bool glintru_catalog_lock(const char *name, GlintruCatalogEntry *entry);
extern void glintru_catalog_no_such_model(const char *name) pg_attribute_noreturn();
extern bytea *glintru_catalog_weights(int32 id, int64 version);

/* ---- writes of glintru.models ---- */

extern bool glintru_catalog_store(const char *name, const GlintruConfig *cfg, bytea *weights,
								  bool replace, const GlintruCatalogEntry *as, GlintruCatalogEntry *stored);
extern bool glintru_catalog_drop(text *name);

/* ---- glintru.attachments ---- */

/* A row of glintru.attachments: a table whose users' state is kept. */
typedef struct GlintruAttachment
{
	int32		id;
	Oid			relid;
	int32		model_id;
	int64		model_version;	/* the version the state was built with */
	NameData	user_col;
	NameData	item_col;
	NameData	order_col;
	bool		deferred;		/* refresh 'deferred': slides only record the items */

	/*
	 * Citus: on a node holding shards, the attachment of one shard placement
	 * records its distributed table (that node's OID of it), the shard id and
	 * the shard's range of hashed user ids; on the coordinator, the
	 * distributed table itself is recorded with logical_relid = relid and no
	 * shard (no state there: calls are routed to the shards).  Plain tables:
	 * InvalidOid and 0.
	 */
	Oid			logical_relid;
	int64		shard_id;
	int32		hash_min;
	int32		hash_max;
} GlintruAttachment;

/* Is the attachment the coordinator's record of a distributed table (no state of its own)? */
#define GLINTRU_ATTACHMENT_IS_LOGICAL(a) \
	(OidIsValid((a)->logical_relid) && (a)->shard_id == 0)

extern bool glintru_attachment_by_relid(Oid relid, GlintruAttachment *a);
extern bool glintru_attachment_by_relid_in(Oid relid, Snapshot snapshot, GlintruAttachment *a);
extern bool glintru_attachment_by_relid_latest(Oid relid, GlintruAttachment *a);
extern List *glintru_attachments_all(void);
extern List *glintru_attachments_all_in(Snapshot snapshot);
extern GlintruAttachment glintru_attachment_resolve(bool have_relid, Oid relid);
extern GlintruAttachment glintru_attachment_resolve_user(bool have_relid, Oid relid, int64 user_id);
extern List *glintru_attachments_of_logical(Oid logical_relid);
extern GlintruAttachment glintru_attachment_of_user(List *shards, Oid table, int64 user_id);
extern int32 glintru_attachment_insert(const GlintruAttachment *a);
extern void glintru_attachment_delete(int32 id);
extern void glintru_attachment_set_version(int32 id, int64 version);

#endif							/* GLINTRU_CATALOG_H */
