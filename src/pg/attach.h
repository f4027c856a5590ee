/*
 * attach.h — interactions tables attached to a model: what the model
 * loader needs when it replaces an attached model.
 *
 * Above the state rows; called by models.c and citus_sql.c.
 */
#ifndef GLINTRU_ATTACH_H
#define GLINTRU_ATTACH_H

#include "postgres.h"

#include "catalog.h"
#include "model.h"

extern void glintru_attach_rebuild_model(const GlintruCatalogEntry *e, const GlintruModel *m);
extern void glintru_attach_shards(Oid logical_relid, const GlintruCatalogEntry *e,
								  const GlintruAttachment *tmpl, bool rebuild, const char *fnschema);
extern void glintru_detach_shards(Oid logical_relid);

#endif							/* GLINTRU_ATTACH_H */
