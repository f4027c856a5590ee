/*
 * cache.h — the model cache: parsed models keyed by (database, model id,
 * version), in shared memory when glintru is preloaded, else per backend;
 * and the one place a model file is validated and built.
 *
 * Above the catalogue (a miss reads the weights from glintru.models), below
 * everything that serves, attaches or loads.
 */
#ifndef GLINTRU_CACHE_H
#define GLINTRU_CACHE_H

#include "postgres.h"

#include "catalog.h"
#include "model.h"

/* ---- set-up, called by module.c ---- */

extern void glintru_cache_use_shared_memory(void);
extern void glintru_cache_shmem_request(int size_mb);
extern void glintru_cache_shmem_startup(int size_mb);
extern bool glintru_cache_shared(void);

/* ---- model files ---- */

extern void glintru_model_check(const uint8 *buf, size_t len, GlintruConfig *cfg, bool *has_pop);
extern GlintruModel *glintru_model_build(const uint8 *buf, size_t len, void *dest);

/* ---- pins ---- */

/* A model in use by this backend: released at the end of the call or transaction. */
typedef struct GlintruPin
{
	const GlintruModel *model;
	int			slot;			/* cache slot, for release; -1: a private build */
} GlintruPin;

extern GlintruPin glintru_cache_acquire(const GlintruCatalogEntry *entry);
extern GlintruPin glintru_cache_acquire_name(const char *name);
extern GlintruPin glintru_cache_install(const GlintruCatalogEntry *e, const uint8 *buf, size_t len,
										const GlintruConfig *cfg, bool has_pop);
extern void glintru_cache_release(GlintruPin *pin);

/* Work done with a pinned model, by glintru_cache_with_pin(). */
typedef void (*GlintruPinnedFn) (const GlintruModel *m, void *arg);

extern void glintru_cache_with_pin(GlintruPin pin, GlintruPinnedFn fn, void *arg);

/* ---- what is cached ---- */

extern bool glintru_cache_contains(int32 id, int64 version);
extern void glintru_cache_usage(int64 *budget, int64 *used, int *models);

#endif							/* GLINTRU_CACHE_H */
