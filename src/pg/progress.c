/*
 * progress.c — training progress: one slot per running training (which
 * model, the last epoch's loss and validation NDCG@10, the time so far and
 * the estimate), written by the training backend after every epoch and read
 * by glintru_training_progress() in any session.  A training that runs as a
 * background job (jobs.c) carries its job id, so that glintru_jobs() shows
 * its live epoch from here; and the shared struct holds the server
 * incarnation (a timestamp taken when the shared memory was created, new
 * after every restart and crash), by which glintru_jobs() tells a job left
 * behind by an earlier incarnation.
 *
 * LOCK MAP: Progress.mutex (a spinlock) protects every slot.  It is taken to
 * claim, update or free a slot (only the owning backend writes its slot) and
 * to copy all slots for glintru_training_progress(); each critical section
 * is a few stores or one copy of the slots, with no call that can fail, so
 * a spinlock fits (as pg_stat_statements' per-entry counters).  Without
 * preloading the slots are this backend's own, under the same (uncontended)
 * spinlock.  The incarnation is written once, before any backend exists.
 * glintru_train() frees its slot however the training ends (PG_FINALLY),
 * and a backend that exits frees its slots (release_at_exit), so a failed
 * or killed training leaves nothing behind.
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "progress.h"

#define PROGRESS_SLOTS 16

/* A training running in some backend. */
typedef struct TrainingProgress
{
	int			pid;			/* 0: free */
	Oid			dboid;
	int64		job;			/* glintru.jobs id, 0 for glintru_train() */
	char		model[NAMEDATALEN];
	int			epoch;
	int			epochs;
	double		loss;
	double		val_ndcg10;
	double		best_val_ndcg10;
	double		elapsed;
	double		eta;
} TrainingProgress;

/* All slots; in shared memory when preloaded. */
typedef struct Progress
{
	slock_t		mutex;			/* see LOCK MAP */
	int64		incarnation;	/* when this shared memory was created */
	TrainingProgress slots[PROGRESS_SLOTS];
} Progress;

static bool shared_mode = false;
static Progress *shared_progress = NULL;
static Progress private_progress;
static bool private_ready = false;
static bool exit_registered = false;
static int64 current_job = 0;	/* the job this backend trains (a job worker) */

/* glintru is being preloaded: progress goes to shared memory. */
void
glintru_progress_use_shared_memory(void)
{
	shared_mode = true;
}

/* Ask for the slots (shmem_request_hook). */
void
glintru_progress_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(Progress)));
}

/* Create (postmaster) or find the slots (shmem_startup_hook). */
void
glintru_progress_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared_progress = ShmemInitStruct("glintru training progress", sizeof(Progress), &found);
	if (!found)
	{
		memset(shared_progress, 0, sizeof(Progress));
		SpinLockInit(&shared_progress->mutex);
		shared_progress->incarnation = (int64) GetCurrentTimestamp();
	}
	LWLockRelease(AddinShmemInitLock);
}

/* The slots this backend reports to, NULL before shared memory exists. */
static Progress *
progress(void)
{
	if (shared_mode)
		return shared_progress;
	if (!private_ready)
	{
		SpinLockInit(&private_progress.mutex);
		private_ready = true;
	}
	return &private_progress;
}

/*
 * Backend exit: free the slots of a backend that dies while training (a
 * FATAL exits without unwinding to glintru_train()'s PG_FINALLY, which frees
 * the slot on every other way out).
 */
static void
release_at_exit(int code, Datum arg)
{
	Progress   *p = progress();

	(void) code;
	(void) arg;
	if (p == NULL)
		return;
	SpinLockAcquire(&p->mutex);
	for (int i = 0; i < PROGRESS_SLOTS; i++)
		if (p->slots[i].pid == MyProcPid)
			p->slots[i].pid = 0;
	SpinLockRelease(&p->mutex);
}

/* Claim a slot for a training of model; -1 when all are taken (training goes on unseen). */
int
glintru_progress_begin(const char *model, int epochs)
{
	Progress   *p = progress();
	int			slot = -1;

	if (!exit_registered)
	{
		before_shmem_exit(release_at_exit, (Datum) 0);
		exit_registered = true;
	}
	SpinLockAcquire(&p->mutex);
	for (int i = 0; i < PROGRESS_SLOTS && slot < 0; i++)
		if (p->slots[i].pid == 0)
			slot = i;
	if (slot >= 0)
	{
		TrainingProgress *t = &p->slots[slot];

		memset(t, 0, sizeof(*t));
		t->pid = MyProcPid;
		t->dboid = MyDatabaseId;
		t->job = current_job;
		strlcpy(t->model, model, sizeof(t->model));
		t->epochs = epochs;
	}
	SpinLockRelease(&p->mutex);
	return slot;
}

/* Report the epoch that just ended. */
void
glintru_progress_update(int slot, int epoch, int epochs, double loss, double val_ndcg10,
						double best_val_ndcg10, double elapsed, double eta)
{
	Progress   *p = progress();
	TrainingProgress *t;

	if (slot < 0)
		return;
	SpinLockAcquire(&p->mutex);
	t = &p->slots[slot];
	if (t->pid == MyProcPid)
	{
		t->epoch = epoch;
		t->epochs = epochs;
		t->loss = loss;
		t->val_ndcg10 = val_ndcg10;
		t->best_val_ndcg10 = best_val_ndcg10;
		t->elapsed = elapsed;
		t->eta = eta;
	}
	SpinLockRelease(&p->mutex);
}

/* The training finished or failed (glintru_train()'s PG_FINALLY): free its slot. */
void
glintru_progress_end(int slot)
{
	Progress   *p = progress();

	if (slot < 0)
		return;
	SpinLockAcquire(&p->mutex);
	if (p->slots[slot].pid == MyProcPid)
		p->slots[slot].pid = 0;
	SpinLockRelease(&p->mutex);
}

/*
 * The server incarnation (see the file comment): false without shared
 * memory, where jobs are not available.
 */
bool
glintru_progress_incarnation(int64 *incarnation)
{
	if (!shared_mode || shared_progress == NULL)
		return false;
	*incarnation = shared_progress->incarnation;
	return true;
}

/* This backend is the worker of job: the trainings it reports carry the job's id. */
void
glintru_progress_set_job(int64 job)
{
	current_job = job;
}

/* The last report of job's training, if one is running in this database (epoch 0: none yet). */
bool
glintru_progress_of_job(int64 job, GlintruJobProgress *out)
{
	Progress   *p = progress();
	bool		found = false;

	SpinLockAcquire(&p->mutex);
	for (int i = 0; i < PROGRESS_SLOTS && !found; i++)
	{
		TrainingProgress *t = &p->slots[i];

		if (t->pid != 0 && t->job == job && t->dboid == MyDatabaseId)
		{
			out->epoch = t->epoch;
			out->epochs = t->epochs;
			out->loss = t->loss;
			out->val_ndcg10 = t->val_ndcg10;
			out->best_val_ndcg10 = t->best_val_ndcg10;
			found = true;
		}
	}
	SpinLockRelease(&p->mutex);
	return found;
}

/* SQL glintru_training_progress(): the trainings running in this database. */
PG_FUNCTION_INFO_V1(glintru_training_progress);
Datum
glintru_training_progress(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Progress   *p = progress();
	TrainingProgress snap[PROGRESS_SLOTS];

	InitMaterializedSRF(fcinfo, 0);
	SpinLockAcquire(&p->mutex);
	memcpy(snap, p->slots, sizeof(snap));
	SpinLockRelease(&p->mutex);
	for (int i = 0; i < PROGRESS_SLOTS; i++)
	{
		TrainingProgress *t = &snap[i];
		Datum		values[9];
		bool		nulls[9] = {0};

		if (t->pid == 0 || t->dboid != MyDatabaseId)
			continue;
		values[0] = Int32GetDatum(t->pid);
		values[1] = CStringGetTextDatum(t->model);
		values[2] = Int32GetDatum(t->epoch);
		values[3] = Int32GetDatum(t->epochs);
		values[4] = Float8GetDatum(t->loss);
		values[5] = Float8GetDatum(t->val_ndcg10);
		values[6] = Float8GetDatum(t->best_val_ndcg10);
		values[7] = Float8GetDatum(t->elapsed);
		values[8] = Float8GetDatum(t->eta);
		/* before the first epoch ends there is nothing to show but the start */
		for (int k = 4; k < 9; k++)
			nulls[k] = t->epoch == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
