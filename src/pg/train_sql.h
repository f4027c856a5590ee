/*
 * train_sql.h — a training as a request: glintru_train()'s arguments parsed
 * and checked, then run (read the table, train, store the model) by
 * glintru_train() in its statement or by a background job (jobs.c) in its
 * worker.
 */
#ifndef GLINTRU_TRAIN_SQL_H
#define GLINTRU_TRAIN_SQL_H

#include "postgres.h"

#include "utils/jsonb.h"

#include "train.h"

typedef struct GlintruTrainRequest GlintruTrainRequest;

/*
 * Where a job worker changes transaction: after_read once the table is read
 * (the training itself needs no snapshot), before_store before the model is
 * written.  Either may be NULL.
 */
typedef struct GlintruTrainHooks
{
	void		(*after_read) (void *arg);
	void		(*before_store) (void *arg);
	void	   *arg;
} GlintruTrainHooks;

extern GlintruTrainRequest *glintru_train_request(const char *name, Oid relid, const char *ucol,
												  const char *icol, const char *ocol, Jsonb *options);
extern const GlintruEpochReport *glintru_train_request_last(const GlintruTrainRequest *req);
extern int32 glintru_train_execute(GlintruTrainRequest *req, const GlintruTrainHooks *hooks);

#endif							/* GLINTRU_TRAIN_SQL_H */
