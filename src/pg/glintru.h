/*
 * glintru.h — what the PostgreSQL glue files share: the model catalogue
 * lookups, the model cache (shared memory or backend-private) and pins.
 */
#ifndef GLINTRU_GLINTRU_H
#define GLINTRU_GLINTRU_H

#include "postgres.h"

#include "model.h"

/* A row of glintru.models, without the weights. */
typedef struct GlintruCatalogEntry
{
	int32		id;
	int64		version;
	char		name[NAMEDATALEN];
} GlintruCatalogEntry;

/* catalog.c */
typedef struct GlintruRoleSwitch
{
	Oid			save_user;
	int			save_sec;
} GlintruRoleSwitch;

extern void glintru_become_owner_of(Oid relid, GlintruRoleSwitch *rs);
extern void glintru_restore_role(const GlintruRoleSwitch *rs);
extern bool glintru_catalog_find(const char *name, GlintruCatalogEntry *entry);
extern bool glintru_catalog_find_id(int32 id, GlintruCatalogEntry *entry);
extern Oid	glintru_catalog_relid(const char *relname);
extern bytea *glintru_catalog_weights(int32 id, int64 version);
extern int32 glintru_load_model_bytes(const char *name, bytea *weights, bool replace);
extern GlintruModel *glintru_model_from_bytes(const uint8 *buf, size_t len,
											  void *(*alloc) (size_t, void *), void *arg);

/* A model in use by this backend: released at the end of the call or transaction. */
typedef struct GlintruPin
{
	const GlintruModel *model;
	int			slot;			/* cache slot, for release */
} GlintruPin;

/* live.c */
extern void glintru_rebuild_attachments(int32 model_id);

/* shmem.c */
extern int	glintru_shared_memory_mb;
extern void glintru_shmem_init(void);
extern bool glintru_shmem_active(void);
extern GlintruPin glintru_model_acquire(const char *name);
extern GlintruPin glintru_model_acquire_entry(const GlintruCatalogEntry *e);
extern void glintru_model_release(GlintruPin *pin);
extern bool glintru_model_cached(int32 id, int64 version);
extern void glintru_memory_usage(int64 *budget, int64 *used, int *models);
extern int	glintru_progress_begin(const char *model, int epochs);
extern void glintru_progress_update(int slot, int epoch, int epochs, double loss, double val_ndcg10,
									double best_val_ndcg10, double elapsed, double eta);
extern void glintru_progress_end(int slot);

#endif							/* GLINTRU_GLINTRU_H */
