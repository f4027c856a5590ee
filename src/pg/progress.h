/*
 * progress.h — the epochs of trainings running in any session
 * (glintru_training_progress()), in shared memory when glintru is
 * preloaded, else visible to the training backend only; the live epoch of
 * background jobs and the server incarnation they are judged by.
 */
#ifndef GLINTRU_PROGRESS_H
#define GLINTRU_PROGRESS_H

#include "postgres.h"

/* ---- set-up, called by module.c ---- */

extern void glintru_progress_use_shared_memory(void);
extern void glintru_progress_shmem_request(void);
extern void glintru_progress_shmem_startup(void);

/* ---- a training's reports ---- */

extern int	glintru_progress_begin(const char *model, int epochs);
extern void glintru_progress_update(int slot, int epoch, int epochs, double loss, double val_ndcg10,
									double best_val_ndcg10, double elapsed, double eta);
extern void glintru_progress_end(int slot);

/* ---- background jobs (jobs.c) ---- */

/* What glintru_jobs() shows of a running job's training. */
typedef struct GlintruJobProgress
{
	int			epoch;			/* 0 until the first epoch ends */
	int			epochs;
	double		loss;
	double		val_ndcg10;
	double		best_val_ndcg10;
} GlintruJobProgress;

extern bool glintru_progress_incarnation(int64 *incarnation);
extern void glintru_progress_set_job(int64 job);
extern bool glintru_progress_of_job(int64 job, GlintruJobProgress *out);

#endif							/* GLINTRU_PROGRESS_H */
