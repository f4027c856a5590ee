/*
 * attach.h — interactions tables attached to a model: what the model
 * loader needs when it replaces an attached model.
 *
 * Above the state rows; called by models.c only.
 */
#ifndef GLINTRU_ATTACH_H
#define GLINTRU_ATTACH_H

#include "postgres.h"

#include "catalog.h"
#include "model.h"

extern void glintru_attach_rebuild_model(const GlintruCatalogEntry *e, const GlintruModel *m);

#endif							/* GLINTRU_ATTACH_H */
