/*
 * models.h — storing a model file: validated once, written to
 * glintru.models, and the states of tables attached to a replaced model
 * rebuilt with it.  Used by the loaders in models.c and by glintru_train().
 */
#ifndef GLINTRU_MODELS_H
#define GLINTRU_MODELS_H

#include "postgres.h"

#include "catalog.h"

extern void glintru_models_check_name(const char *name);
extern int32 glintru_models_store(const char *name, bytea *weights, bool replace);
extern int32 glintru_models_store_as(const char *name, bytea *weights, bool replace,
									 const GlintruCatalogEntry *as);

#endif							/* GLINTRU_MODELS_H */
