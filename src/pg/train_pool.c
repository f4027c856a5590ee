/*
 * train_pool.c — the training engine's worker pool inside PostgreSQL
 * (GlintruWorkerPool, train.h): parts 1.. of every training step and
 * validation run in dynamic background workers (no database connection:
 * pure number crunching), which the postmaster forks — a backend never
 * forks.  Everything they need is in one dynamic shared memory segment,
 * laid out with shm_toc as PostgreSQL's parallel.c does:
 *
 *   KEY_CONTROL  PoolControl: the command generation, the stop flag, the
 *                leader's and each worker's PGPROC (their latches), and per
 *                worker its part, the last generation it finished, an error
 *   KEY_AREA     the engine's area (parameters, split, window order,
 *                gradient blocks, commands and results; train_workers.c)
 *
 * Lock map: PoolControl.mutex (a spinlock) guards every PoolControl field
 * after creation (gen, stop, slot[*]); nothing is done while holding it.
 * The area needs no lock: the leader writes a command, then bumps gen under
 * the mutex (the release is the barrier) and sets the workers' latches; a
 * worker reads gen under the mutex, computes, writes its own part's results,
 * sets done_gen under the mutex and the leader's latch.
 *
 * Failure and cancellation.  The leader waits with WaitLatch on its own
 * latch and never longjmps out of the engine (its memory is malloc'ed):
 * a pending cancel or termination makes the wait return "cancelled", the
 * engine frees everything and train_sql.c then services the interrupt.  A
 * worker that exits before finishing its part (an error, SIGTERM) fails the
 * wait; its error message, when it had one, is in its slot.  Workers stop
 * at the stop flag (set by close, and by the leader's on_dsm_detach callback
 * when the leader errors out or exits), when the leader's process is gone,
 * and on SIGTERM (die: checked between commands and evaluation batches).
 */
#include "postgres.h"

#include <signal.h>
#include <unistd.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shm_toc.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"

#include "train_pool.h"

#define POOL_TOC_MAGIC UINT64CONST(0x474c494e54504f4c)	/* "GLINTPOL" */
#define KEY_CONTROL 1
#define KEY_AREA 2
/* a worker checks that its leader still exists this often (ms) */
#define LEADER_CHECK_MS 1000
/* close: workers that ignore the stop flag this long (ms) get SIGTERM */
#define STOP_GRACE_MS 2000

/* One worker's slot (index: registration order). */
typedef struct PoolSlot
{
	PGPROC	   *proc;			/* set when the worker is attached */
	bool		ready;
	int			part;			/* 1.., assigned once every worker settled */
	uint32		done_gen;		/* last command finished */
	char		error[256];		/* the ERROR that ended the worker, if any */
} PoolSlot;

/* The shared control block (lock map: the file's comment). */
typedef struct PoolControl
{
	slock_t		mutex;
	uint32		gen;			/* commands issued */
	bool		stop;
	PGPROC	   *leader;
	pid_t		leader_pid;
	PoolSlot	slot[GLINTRU_TRAIN_MAX_WORKERS];
} PoolControl;

/* The leader's side of a pool. */
typedef struct BgwPool
{
	GlintruWorkerPool ops;		/* first: the engine's handle */
	dsm_segment *seg;
	PoolControl *ctl;
	int			n_registered;
	BackgroundWorkerHandle *handle[GLINTRU_TRAIN_MAX_WORKERS];
	int			n_parts;		/* running workers = parts 1..n_parts */
	int			slot_of_part[GLINTRU_TRAIN_MAX_WORKERS];
} BgwPool;

PGDLLEXPORT void glintru_train_worker_main(Datum arg);

/* a cancel or termination of the leader is pending (serviced after the engine returns) */
static bool
leader_interrupted(void)
{
	return QueryCancelPending || ProcDiePending;
}

/* The message of the error being handled, into err; the error is flushed. */
static void
catch_error(MemoryContext cxt, char *err, size_t errlen)
{
	ErrorData  *ed;

	MemoryContextSwitchTo(cxt);
	ed = CopyErrorData();
	FlushErrorState();
	snprintf(err, errlen, "%s", ed->message);
	FreeErrorData(ed);
}

/* Sets the stop flag and wakes every attached worker. */
static void
control_stop(PoolControl *ctl)
{
	PGPROC	   *procs[GLINTRU_TRAIN_MAX_WORKERS];

	SpinLockAcquire(&ctl->mutex);
	ctl->stop = true;
	for (int s = 0; s < GLINTRU_TRAIN_MAX_WORKERS; s++)
		procs[s] = ctl->slot[s].proc;
	SpinLockRelease(&ctl->mutex);
	for (int s = 0; s < GLINTRU_TRAIN_MAX_WORKERS; s++)
		if (procs[s])
			SetLatch(&procs[s]->procLatch);
}

/* on_dsm_detach in the leader: however it leaves (error, exit), the workers stop. */
static void
leader_detached(dsm_segment *seg, Datum arg)
{
	(void) seg;
	control_stop((PoolControl *) DatumGetPointer(arg));
}

/* Waits on the leader's latch (at most timeout ms); exits if the postmaster dies. */
static void
leader_sleep(long timeout)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, timeout, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
}

/* map: a segment with the control block and the engine's area of bytes. */
static void *
pool_map(GlintruWorkerPool *pool, size_t bytes, char *err, size_t errlen)
{
	BgwPool    *p = (BgwPool *) pool;
	MemoryContext cxt = CurrentMemoryContext;
	void	   *volatile area = NULL;

	PG_TRY();
	{
		shm_toc_estimator e;
		shm_toc    *toc;

		shm_toc_initialize_estimator(&e);
		shm_toc_estimate_chunk(&e, sizeof(PoolControl));
		shm_toc_estimate_chunk(&e, bytes);
		shm_toc_estimate_keys(&e, 2);
		p->seg = dsm_create(shm_toc_estimate(&e), DSM_CREATE_NULL_IF_MAXSEGMENTS);
		if (p->seg)
		{
			toc = shm_toc_create(POOL_TOC_MAGIC, dsm_segment_address(p->seg), dsm_segment_map_length(p->seg));
			p->ctl = shm_toc_allocate(toc, sizeof(PoolControl));
			memset(p->ctl, 0, sizeof(PoolControl));
			SpinLockInit(&p->ctl->mutex);
			p->ctl->leader = MyProc;
			p->ctl->leader_pid = MyProcPid;
			shm_toc_insert(toc, KEY_CONTROL, p->ctl);
			area = shm_toc_allocate(toc, bytes);
			shm_toc_insert(toc, KEY_AREA, area);
			on_dsm_detach(p->seg, leader_detached, PointerGetDatum(p->ctl));
		}
		else
			snprintf(err, errlen, "too many dynamic shared memory segments");
	}
	PG_CATCH();
	{
		catch_error(cxt, err, errlen);
		area = NULL;
	}
	PG_END_TRY();
	return area;
}

/*
 * start: registers up to n workers, waits until each is attached or gone,
 * and gives the attached ones parts 1.. in registration order.  A refused
 * registration (no free slot of max_worker_processes) means fewer parts.
 */
static int
pool_start(GlintruWorkerPool *pool, int n, char *err, size_t errlen)
{
	BgwPool    *p = (BgwPool *) pool;
	MemoryContext cxt = CurrentMemoryContext;
	bool		gone[GLINTRU_TRAIN_MAX_WORKERS] = {false};
	volatile bool failed = false;

	PG_TRY();
	{
		for (int s = 0; s < n; s++)
		{
			BackgroundWorker w;

			memset(&w, 0, sizeof(w));
			w.bgw_flags = BGWORKER_SHMEM_ACCESS;
			w.bgw_start_time = BgWorkerStart_ConsistentState;
			w.bgw_restart_time = BGW_NEVER_RESTART;
			snprintf(w.bgw_library_name, BGW_MAXLEN, "glintru");
			snprintf(w.bgw_function_name, BGW_MAXLEN, "glintru_train_worker_main");
			snprintf(w.bgw_name, BGW_MAXLEN, "glintru training worker %d for PID %d", s + 1, MyProcPid);
			snprintf(w.bgw_type, BGW_MAXLEN, "glintru training worker");
			w.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(p->seg));
			memcpy(w.bgw_extra, &s, sizeof(s));
			w.bgw_notify_pid = MyProcPid;
			if (!RegisterDynamicBackgroundWorker(&w, &p->handle[s]))
				break;
			p->n_registered++;
		}
	}
	PG_CATCH();
	{
		catch_error(cxt, err, errlen);
		failed = true;
	}
	PG_END_TRY();
	if (failed)
		return -1;

	for (;;)
	{
		bool		settled = true;

		for (int s = 0; s < p->n_registered; s++)
		{
			pid_t		pid;
			bool		ready;

			SpinLockAcquire(&p->ctl->mutex);
			ready = p->ctl->slot[s].ready;
			SpinLockRelease(&p->ctl->mutex);
			if (ready || gone[s])
				continue;
			if (GetBackgroundWorkerPid(p->handle[s], &pid) == BGWH_STOPPED)
				gone[s] = true;
			else
				settled = false;
		}
		if (settled)
			break;
		if (leader_interrupted())
		{
			snprintf(err, errlen, "cancelled");
			return -1;
		}
		leader_sleep(LEADER_CHECK_MS);
	}
	SpinLockAcquire(&p->ctl->mutex);
	for (int s = 0; s < p->n_registered; s++)
		if (p->ctl->slot[s].ready)
		{
			p->ctl->slot[s].part = ++p->n_parts;
			p->slot_of_part[p->n_parts] = s;
		}
	SpinLockRelease(&p->ctl->mutex);
	if (p->n_parts < n)
		ereport(NOTICE,
				(errmsg("glintru_train: %d of %d training workers started, training with workers = %d",
						p->n_parts, n, p->n_parts + 1),
				 errdetail("Background worker slots are limited by max_worker_processes = %d and shared with other users.",
						   max_worker_processes),
				 errhint("The model is the one of %d workers (glintru-train --threads %d).",
						 p->n_parts + 1, p->n_parts + 1)));
	return p->n_parts;
}

/* run: a new command generation; wake the workers. */
static bool
pool_run(GlintruWorkerPool *pool, char *err, size_t errlen)
{
	BgwPool    *p = (BgwPool *) pool;

	(void) err;
	(void) errlen;
	SpinLockAcquire(&p->ctl->mutex);
	p->ctl->gen++;
	SpinLockRelease(&p->ctl->mutex);
	for (int t = 1; t <= p->n_parts; t++)
		SetLatch(&p->ctl->slot[p->slot_of_part[t]].proc->procLatch);
	return true;
}

/* wait: until every part finished this generation, a worker is gone, or a cancel. */
static bool
pool_wait(GlintruWorkerPool *pool, char *err, size_t errlen)
{
	BgwPool    *p = (BgwPool *) pool;

	for (;;)
	{
		bool		all_done = true;

		for (int t = 1; t <= p->n_parts; t++)
		{
			int			s = p->slot_of_part[t];
			PoolSlot   *sl = &p->ctl->slot[s];
			bool		done;
			pid_t		pid;

			SpinLockAcquire(&p->ctl->mutex);
			done = sl->done_gen == p->ctl->gen;
			SpinLockRelease(&p->ctl->mutex);
			if (done)
				continue;
			all_done = false;
			if (GetBackgroundWorkerPid(p->handle[s], &pid) == BGWH_STOPPED)
			{
				char		why[256];

				SpinLockAcquire(&p->ctl->mutex);
				strlcpy(why, sl->error, sizeof(why));
				SpinLockRelease(&p->ctl->mutex);
				snprintf(err, errlen, "training worker %d exited before finishing its part: %s", t,
						 why[0] ? why : "terminated (see the server log)");
				control_stop(p->ctl);
				return false;
			}
		}
		if (all_done)
			return true;
		if (leader_interrupted())
		{
			control_stop(p->ctl);
			snprintf(err, errlen, "cancelled");
			return false;
		}
		leader_sleep(LEADER_CHECK_MS);
	}
}

/*
 * close: stop flag, then wait until every registered worker has exited
 * (SIGTERM to those still running after STOP_GRACE_MS), then detach.  No
 * CHECK_FOR_INTERRUPTS here: the engine is still to free its memory.
 */
static void
pool_close(GlintruWorkerPool *pool)
{
	BgwPool    *p = (BgwPool *) pool;
	TimestampTz start = GetCurrentTimestamp();
	bool		terminated = false;

	if (!p->seg)
		return;
	control_stop(p->ctl);
	for (;;)
	{
		bool		running = false;

		for (int s = 0; s < p->n_registered; s++)
		{
			pid_t		pid;

			if (GetBackgroundWorkerPid(p->handle[s], &pid) != BGWH_STOPPED)
				running = true;
		}
		if (!running)
			break;
		if (!terminated && TimestampDifferenceExceeds(start, GetCurrentTimestamp(), STOP_GRACE_MS))
		{
			for (int s = 0; s < p->n_registered; s++)
				TerminateBackgroundWorker(p->handle[s]);
			terminated = true;
		}
		leader_sleep(100);
	}
	dsm_detach(p->seg);
	p->seg = NULL;
	p->ctl = NULL;
}

/* A pool for one training (see train_pool.h). */
GlintruWorkerPool *
glintru_train_pool_new(void)
{
	BgwPool    *p = palloc0(sizeof(BgwPool));

	p->ops = (GlintruWorkerPool) {pool_map, pool_start, pool_run, pool_wait, pool_close};
	return &p->ops;
}

/* The default of the option "workers" (see train_pool.h). */
int
glintru_train_pool_default_workers(void)
{
	long		cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int			n = cpus < 1 ? 1 : (int) Min(cpus, GLINTRU_TRAIN_MAX_WORKERS);

	return Min(n, 1 + max_worker_processes);
}

/* ------------------------------------------------------------------ */
/* the worker process                                                   */
/* ------------------------------------------------------------------ */

/* asked by the engine between evaluation batches: stop flag or SIGTERM */
static bool
worker_should_stop(void *arg)
{
	PoolControl *ctl = arg;
	bool		stop;

	SpinLockAcquire(&ctl->mutex);
	stop = ctl->stop;
	SpinLockRelease(&ctl->mutex);
	return stop || ProcDiePending;
}

/* The commands of one worker until the stop flag, the leader's exit or SIGTERM. */
static void
worker_loop(PoolControl *ctl, PoolSlot *sl, void *area)
{
	GlintruAreaWorker *aw = NULL;
	uint32		seen = 0;

	for (;;)
	{
		uint32		gen;
		bool		stop;
		int			part;

		SpinLockAcquire(&ctl->mutex);
		gen = ctl->gen;
		stop = ctl->stop;
		part = sl->part;
		SpinLockRelease(&ctl->mutex);
		if (stop)
			break;
		if (gen != seen)
		{
			seen = gen;
			if (!aw && !(aw = glintru_area_worker_new(area, part)))
				ereport(ERROR,
						(errcode(ERRCODE_OUT_OF_MEMORY),
						 errmsg("out of memory in glintru training worker %d", part)));
			(void) glintru_area_worker_run(aw, worker_should_stop, ctl);
			CHECK_FOR_INTERRUPTS();
			SpinLockAcquire(&ctl->mutex);
			sl->done_gen = gen;
			SpinLockRelease(&ctl->mutex);
			SetLatch(&ctl->leader->procLatch);
			continue;
		}
		if (kill(ctl->leader_pid, 0) != 0 && errno == ESRCH)
			break;				/* the leader is gone without detaching */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 LEADER_CHECK_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	glintru_area_worker_free(aw);
}

/*
 * A training worker's entry point (bgw_function_name): attach the segment
 * (bgw_main_arg), take slot bgw_extra, run commands.  An error is copied
 * into the slot for the leader's message, then ends the process as usual.
 */
void
glintru_train_worker_main(Datum arg)
{
	dsm_segment *seg;
	shm_toc    *toc;
	PoolControl *ctl;
	PoolSlot   *sl;
	void	   *area;
	int			s;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	memcpy(&s, MyBgworkerEntry->bgw_extra, sizeof(s));
	seg = dsm_attach(DatumGetUInt32(arg));
	if (seg == NULL)
		return;					/* the leader has already given up: nothing to do */
	toc = shm_toc_attach(POOL_TOC_MAGIC, dsm_segment_address(seg));
	if (toc == NULL || s < 0 || s >= GLINTRU_TRAIN_MAX_WORKERS)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("glintru training worker: invalid shared memory segment")));
	ctl = shm_toc_lookup(toc, KEY_CONTROL, false);
	area = shm_toc_lookup(toc, KEY_AREA, false);
	sl = &ctl->slot[s];
	SpinLockAcquire(&ctl->mutex);
	sl->proc = MyProc;
	sl->ready = true;
	SpinLockRelease(&ctl->mutex);
	SetLatch(&ctl->leader->procLatch);
	PG_TRY();
	{
		worker_loop(ctl, sl, area);
	}
	PG_CATCH();
	{
		ErrorData  *ed;

		MemoryContextSwitchTo(TopMemoryContext);
		ed = CopyErrorData();
		SpinLockAcquire(&ctl->mutex);
		strlcpy(sl->error, ed->message, sizeof(sl->error));
		SpinLockRelease(&ctl->mutex);
		PG_RE_THROW();
	}
	PG_END_TRY();
	dsm_detach(seg);
}
