/*
 * train_pool.h — the training engine's worker pool inside PostgreSQL:
 * dynamic background workers sharing the engine's area through a dynamic
 * shared memory segment (see train_pool.c).
 */
#ifndef GLINTRU_TRAIN_POOL_H
#define GLINTRU_TRAIN_POOL_H

#include "train.h"

/*
 * A pool for one call of glintru_train (palloc'ed in the current memory
 * context; the engine calls it, then closes it).  It never forks: its
 * workers are started by the postmaster.
 */
GlintruWorkerPool *glintru_train_pool_new(void);

/*
 * The default of the option "workers" (parts of every batch, the calling
 * backend included): the CPUs online, at most GLINTRU_TRAIN_MAX_WORKERS and
 * 1 + max_worker_processes.  Slots other extensions or parallel queries hold
 * are not visible beforehand: the pool then runs with the workers it gets.
 */
int			glintru_train_pool_default_workers(void);

#endif							/* GLINTRU_TRAIN_POOL_H */
