/*
 * jobs.c — trainings as background jobs: glintru_train_start() records a
 * job in glintru.jobs and registers a dynamic background worker that runs
 * the same request as glintru_train() (train_sql.c) as the role that
 * started it; glintru_jobs() lists the jobs with the live epoch of running
 * ones (progress.c); glintru_train_cancel() cancels one.
 *
 * A job's life, and who writes its row (as the owner of glintru.jobs):
 *
 *   queued     glintru_train_start(), in the caller's transaction, which also
 *              registers the worker.  The worker first waits for that
 *              transaction to end (XactLockTableWait on its xid); a rolled
 *              back start leaves no row, and the worker exits.
 *   running    the worker, in a transaction of its own, once it has locked
 *              the row and found it still queued.
 *   done       the worker, in the transaction that stores the model (and
 *              rebuilds the attached tables' states): all or nothing.
 *   cancelled  glintru_train_cancel(); at its commit the worker of a running
 *              job gets SIGINT (as pg_cancel_backend), stops between two
 *              mini-batches and stores nothing.  Any cancel of the worker
 *              ends the job so.
 *   failed     the worker, with the error, when the training fails; or
 *              glintru_jobs() / glintru_train_cancel() for a job whose
 *              worker is gone: one of an earlier server incarnation (a
 *              restart or a crash; progress.c) or a worker that exited
 *              without finishing.
 *
 * The worker reads the table in one transaction, trains in a second one
 * that holds no snapshot (so VACUUM is not held back for the hours a large
 * training takes, and the table's lock is released), and stores in that
 * second transaction after locking its job row: a cancel committed before
 * that point wins, one after it finds the job done.
 *
 * LOCK MAP: no shared state of its own.  The job row's lock (SELECT … FOR
 * UPDATE) orders the worker's final write against glintru_train_cancel();
 * pending cancel signals are this backend's until its transaction ends.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include <signal.h>

#include "catalog.h"
#include "progress.h"
#include "schema.h"
#include "train_sql.h"

PGDLLEXPORT void glintru_job_main(Datum main_arg);

/* What the worker is told besides its job id (bgw_extra). */
typedef struct JobWorkerArgs
{
	Oid			dboid;
	Oid			roleid;
	TransactionId creator;		/* glintru_train_start()'s transaction */
} JobWorkerArgs;

/* The arguments of a job, as its row holds them. */
typedef struct JobRow
{
	char		model[NAMEDATALEN];
	Oid			relid;
	char		ucol[NAMEDATALEN];
	char		icol[NAMEDATALEN];
	char		ocol[NAMEDATALEN];
	Jsonb	   *options;
} JobRow;

/* ---- helpers ---- */

/* Connect SPI and become the owner of glintru.jobs (undone by end_jobs_access). */
static void
begin_jobs_access(GlintruRoleSwitch *rs)
{
	glintru_spi_connect();
	glintru_become_owner_of(glintru_catalog_relid(GLINTRU_JOBS), rs);
}

/* Back to the caller's role; SPI finished. */
static void
end_jobs_access(const GlintruRoleSwitch *rs)
{
	glintru_restore_role(rs);
	glintru_spi_finish();
}

/* Column c (1-based) of row r of an SPI result; *isnull set when given. */
static Datum
spi_col(SPITupleTable *tt, uint64 r, int c, bool *isnull)
{
	bool		dummy;

	return SPI_getbinval(tt->vals[r], tt->tupdesc, c, isnull ? isnull : &dummy);
}

/* A text column of an SPI result, copied, "" when NULL. */
static char *
spi_text(SPITupleTable *tt, uint64 r, int c)
{
	bool		isnull;
	Datum		d = spi_col(tt, r, c, &isnull);

	return isnull ? pstrdup("") : TextDatumGetCString(d);
}

/* The server incarnation jobs are judged by; an error without shared memory. */
static int64
current_incarnation(void)
{
	int64		inc;

	if (!glintru_progress_incarnation(&inc))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("background training jobs need glintru in shared_preload_libraries"),
				 errhint("Add glintru to shared_preload_libraries and restart the server, or train with glintru_train().")));
	return inc;
}

/*
 * Whether the worker of a queued or running job may still be at work: it
 * belongs to this server incarnation and, once running, its process is a
 * background worker of this database and role.
 */
static bool
job_alive(const char *state, int64 incarnation, bool pid_null, int pid, Oid roleid,
		  int64 now_incarnation, const char **why)
{
	PGPROC	   *proc;

	if (incarnation != now_incarnation)
	{
		*why = psprintf("server restarted while the job was %s; nothing was stored", state);
		return false;
	}
	if (strcmp(state, "running") != 0 || pid_null)
		return true;
	proc = BackendPidGetProc(pid);
	if (proc != NULL && proc->isBackgroundWorker && proc->databaseId == MyDatabaseId && proc->roleId == roleid)
		return true;
	*why = "the job's background worker exited before the job finished; nothing was stored";
	return false;
}

/*
 * Record that the worker of job is gone (job_alive said why), unless the row
 * changed meanwhile or this transaction cannot write.  Runs inside
 * begin_jobs_access().
 */
static void
settle_dead_job(int64 job, int64 incarnation, const char *why)
{
	Oid			types[3] = {INT8OID, INT8OID, TEXTOID};
	Datum		args[3] = {Int64GetDatum(job), Int64GetDatum(incarnation), CStringGetTextDatum(why)};

	if (RecoveryInProgress() || XactReadOnly)
		return;
	glintru_spi_run("UPDATE glintru.jobs SET state = 'failed', error = $3 "
					"WHERE id OPERATOR(pg_catalog.=) $1 AND incarnation OPERATOR(pg_catalog.=) $2 "
					"AND state OPERATOR(pg_catalog.=) ANY ('{queued,running}'::pg_catalog.text[])",
					3, types, args, false, 0, SPI_OK_UPDATE, "could not update glintru.jobs");
}

/* ---- glintru_train_start ---- */

/*
 * SQL glintru_train_start(name, table, ..., options): check the arguments as
 * glintru_train() does, record the job and register its worker; returns
 * the job's id at once.  The worker starts training when this transaction
 * commits.
 */
PG_FUNCTION_INFO_V1(glintru_train_start);
Datum
glintru_train_start(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			relid = PG_GETARG_OID(1);
	char	   *ucol = NameStr(*PG_GETARG_NAME(2));
	char	   *icol = NameStr(*PG_GETARG_NAME(3));
	char	   *ocol = NameStr(*PG_GETARG_NAME(4));
	Jsonb	   *options = PG_GETARG_JSONB_P(5);
	int64		incarnation = current_incarnation();
	Oid			roleid = GetUserId();
	HeapTuple	role;
	bool		canlogin;
	Oid			types[8] = {TEXTOID, OIDOID, NAMEOID, NAMEOID, NAMEOID, JSONBOID, OIDOID, INT8OID};
	Datum		args[8];
	GlintruRoleSwitch rs;
	int64		job;
	BackgroundWorker worker = {0};
	JobWorkerArgs wargs;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "glintru_train_start", ALLOCSET_DEFAULT_SIZES);
	MemoryContext old;

	/* PostgreSQL 15 connects a background worker only as a role that may log in */
	role = SearchSysCache1(AUTHOID, ObjectIdGetDatum(roleid));
	if (!HeapTupleIsValid(role))
		elog(ERROR, "cache lookup failed for role %u", roleid);
	canlogin = ((Form_pg_authid) GETSTRUCT(role))->rolcanlogin;
	ReleaseSysCache(role);
	if (!canlogin)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" cannot log in, so a background job cannot run as it", GetUserNameFromId(roleid, false)),
				 errhint("Start the job as a role with LOGIN: its worker connects as the role that starts it.")));
	/* every check glintru_train() makes before reading the table (the request is then dropped) */
	old = MemoryContextSwitchTo(cxt);
	(void) glintru_train_request(name, relid, ucol, icol, ocol, options);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);

	args[0] = CStringGetTextDatum(name);
	args[1] = ObjectIdGetDatum(relid);
	args[2] = PG_GETARG_DATUM(2);
	args[3] = PG_GETARG_DATUM(3);
	args[4] = PG_GETARG_DATUM(4);
	args[5] = JsonbPGetDatum(options);
	args[6] = ObjectIdGetDatum(roleid);
	args[7] = Int64GetDatum(incarnation);
	begin_jobs_access(&rs);
	glintru_spi_run("INSERT INTO glintru.jobs (model, interactions, user_column, item_column, order_column, "
					"options, role, incarnation) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
					8, types, args, false, 0, SPI_OK_INSERT_RETURNING, "could not insert into glintru.jobs");
	job = DatumGetInt64(spi_col(SPI_tuptable, 0, 1, NULL));
	end_jobs_access(&rs);

	wargs.dboid = MyDatabaseId;
	wargs.roleid = roleid;
	wargs.creator = GetTopTransactionId();
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "glintru", sizeof(worker.bgw_library_name));
	strlcpy(worker.bgw_function_name, "glintru_job_main", sizeof(worker.bgw_function_name));
	snprintf(worker.bgw_name, sizeof(worker.bgw_name), "glintru job %lld", (long long) job);
	strlcpy(worker.bgw_type, "glintru job", sizeof(worker.bgw_type));
	worker.bgw_main_arg = Int64GetDatum(job);
	memcpy(worker.bgw_extra, &wargs, sizeof(wargs));
	worker.bgw_notify_pid = 0;
	if (!RegisterDynamicBackgroundWorker(&worker, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("no free background worker slot for a training job"),
				 errhint("Raise max_worker_processes (now %d), or wait until a running job finishes.",
						 max_worker_processes)));
	PG_RETURN_INT64(job);
}

/* ---- glintru_train_cancel ---- */

/* pids of job workers to cancel when this transaction commits */
static List *pending_cancels = NIL;
static bool xact_callback_registered = false;

/* At commit, signal the workers of the jobs this transaction cancelled; at abort, forget them. */
static void
cancel_at_commit(XactEvent event, void *arg)
{
	ListCell   *lc;

	(void) arg;
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PARALLEL_COMMIT && event != XACT_EVENT_PARALLEL_ABORT)
		return;
	if (event == XACT_EVENT_COMMIT)
		foreach(lc, pending_cancels)
		{
			int			pid = lfirst_int(lc);
			PGPROC	   *proc = BackendPidGetProc(pid);

			/* as pg_cancel_backend() does; the worker turns it into state cancelled */
			if (proc != NULL && proc->isBackgroundWorker)
				(void) kill(pid, SIGINT);
		}
	list_free(pending_cancels);
	pending_cancels = NIL;
}

/*
 * SQL glintru_train_cancel(job): a queued job never runs, a running one
 * stops within about a second and stores nothing; true if it was cancelled,
 * false (with a NOTICE) if it had already ended.  Allowed to the role that
 * started the job, its members and superusers.
 */
PG_FUNCTION_INFO_V1(glintru_train_cancel);
Datum
glintru_train_cancel(PG_FUNCTION_ARGS)
{
	int64		job = PG_GETARG_INT64(0);
	int64		now_inc = current_incarnation();
	Oid			types[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(job)};
	GlintruRoleSwitch rs;
	Oid			roleid;
	char	   *state;
	int64		inc;
	bool		pid_null;
	int			pid;
	const char *why = NULL;
	bool		cancelled = false;

	begin_jobs_access(&rs);
	if (glintru_spi_run("SELECT role, state, incarnation, pid FROM glintru.jobs WHERE id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
						1, types, args, false, 0, SPI_OK_SELECT, "could not read glintru.jobs") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("job %lld does not exist", (long long) job),
				 errhint("glintru_jobs() lists the jobs.")));
	roleid = DatumGetObjectId(spi_col(SPI_tuptable, 0, 1, NULL));
	state = spi_text(SPI_tuptable, 0, 2);
	inc = DatumGetInt64(spi_col(SPI_tuptable, 0, 3, NULL));
	pid = DatumGetInt32(spi_col(SPI_tuptable, 0, 4, &pid_null));
	/* the role's own check (has_privs_of_role): the caller is still itself here */
	glintru_restore_role(&rs);
	if (!has_privs_of_role(GetUserId(), roleid))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to cancel job %lld", (long long) job),
				 errdetail("Only the role that started a job (or a member of it) and superusers may cancel it.")));
	glintru_become_owner_of(glintru_catalog_relid(GLINTRU_JOBS), &rs);
	if (strcmp(state, "queued") != 0 && strcmp(state, "running") != 0)
		ereport(NOTICE, (errmsg("job %lld has already ended (%s)", (long long) job, state)));
	else if (!job_alive(state, inc, pid_null, pid, roleid, now_inc, &why))
	{
		settle_dead_job(job, inc, why);
		ereport(NOTICE, (errmsg("job %lld has already ended (failed: %s)", (long long) job, why)));
	}
	else
	{
		glintru_spi_run("UPDATE glintru.jobs SET state = 'cancelled', finished = pg_catalog.clock_timestamp() "
						"WHERE id OPERATOR(pg_catalog.=) $1",
						1, types, args, false, 0, SPI_OK_UPDATE, "could not update glintru.jobs");
		if (strcmp(state, "running") == 0 && !pid_null)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			if (!xact_callback_registered)
			{
				RegisterXactCallback(cancel_at_commit, NULL);
				xact_callback_registered = true;
			}
			pending_cancels = lappend_int(pending_cancels, pid);
			MemoryContextSwitchTo(old);
		}
		cancelled = true;
	}
	end_jobs_access(&rs);
	PG_RETURN_BOOL(cancelled);
}

/* ---- glintru_jobs ---- */

#define JOBS_COLS 15

/*
 * Whether the latest committed version of job's row is still queued or
 * running: a row read under an older snapshot may show a job whose worker
 * has finished it since, and exited.
 */
static bool
job_still_open(int64 job)
{
	Oid			types[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(job)};
	SPIPlanPtr	plan = SPI_prepare("SELECT 1 FROM glintru.jobs WHERE id OPERATOR(pg_catalog.=) $1 "
								   "AND state OPERATOR(pg_catalog.=) ANY ('{queued,running}'::pg_catalog.text[])",
								   1, types);
	bool		open;

	if (plan == NULL)
		elog(ERROR, "could not prepare a query of glintru.jobs: %s", SPI_result_code_string(SPI_result));
	glintru_spi_check(SPI_execute_snapshot(plan, args, NULL, GetLatestSnapshot(), InvalidSnapshot, true, false, 1),
					  SPI_OK_SELECT, "could not read glintru.jobs");
	open = SPI_processed > 0;
	SPI_freeplan(plan);
	return open;
}

/*
 * SQL glintru_jobs(): every job of this database, oldest first; a running
 * job shows its live epoch, and a job whose worker is gone is shown failed
 * and recorded so (when this transaction can write without a conflict).
 */
PG_FUNCTION_INFO_V1(glintru_jobs);
Datum
glintru_jobs(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		now_inc;

	/*
	 * Workers are judged against this server's incarnation: not on a standby,
	 * whose jobs run on the primary; not without shared memory.
	 */
	bool		judge = glintru_progress_incarnation(&now_inc) && !RecoveryInProgress();
	GlintruRoleSwitch rs;
	uint64		n;
	SPITupleTable *rows;

	InitMaterializedSRF(fcinfo, 0);
	begin_jobs_access(&rs);
	n = glintru_spi_run("SELECT id, model, interactions, role, state, epoch, epochs, loss, val_ndcg10, best_val_ndcg10, "
						"created, started, finished, model_id, error, incarnation, pid "
						"FROM glintru.jobs ORDER BY id",
						0, NULL, NULL, false, 0, SPI_OK_SELECT, "could not read glintru.jobs");
	rows = SPI_tuptable;		/* kept: the checks below run queries of their own */
	for (uint64 r = 0; r < n; r++)
	{
		Datum		values[JOBS_COLS];
		bool		nulls[JOBS_COLS];
		int64		job = DatumGetInt64(spi_col(rows, r, 1, NULL));
		Oid			roleid = DatumGetObjectId(spi_col(rows, r, 4, NULL));
		char	   *state = spi_text(rows, r, 5);
		bool		open = strcmp(state, "queued") == 0 || strcmp(state, "running") == 0;
		char	   *rolename = GetUserNameFromId(roleid, true);
		int64		inc = DatumGetInt64(spi_col(rows, r, 16, NULL));
		bool		pid_null;
		int			pid = DatumGetInt32(spi_col(rows, r, 17, &pid_null));
		const char *why;
		GlintruJobProgress live;

		/* the row's columns; the role by name */
		for (int c = 0; c < JOBS_COLS; c++)
			values[c] = spi_col(rows, r, c + 1, &nulls[c]);
		values[3] = rolename ? CStringGetTextDatum(rolename) : (Datum) 0;
		nulls[3] = rolename == NULL;
		if (judge && open && !job_alive(state, inc, pid_null, pid, roleid, now_inc, &why) && job_still_open(job))
		{
			/* under a transaction snapshot the write could conflict: show it only */
			if (!IsolationUsesXactSnapshot())
				settle_dead_job(job, inc, why);
			values[4] = CStringGetTextDatum("failed");
			values[14] = CStringGetTextDatum(why);
			nulls[14] = false;
		}
		else if (judge && open && glintru_progress_of_job(job, &live) && live.epoch > 0)
		{
			values[5] = Int32GetDatum(live.epoch);
			values[6] = Int32GetDatum(live.epochs);
			values[7] = Float8GetDatum(live.loss);
			values[8] = Float8GetDatum(live.val_ndcg10);
			values[9] = Float8GetDatum(live.best_val_ndcg10);
			for (int c = 5; c <= 9; c++)
				nulls[c] = false;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	end_jobs_access(&rs);
	return (Datum) 0;
}

/* ---- the worker ---- */

static int64 worker_job;
static GlintruTrainRequest *worker_request;

/* Run one statement on the worker's job row, as the owner of glintru.jobs. */
static uint64
job_row_run(const char *sql, int nargs, Oid *types, Datum *args, int expected)
{
	GlintruRoleSwitch rs;
	uint64		n;

	begin_jobs_access(&rs);
	n = glintru_spi_run(sql, nargs, types, args, false, 0, expected, "could not write glintru.jobs");
	end_jobs_access(&rs);
	return n;
}

/*
 * Lock the job's row and take the job if it is still queued (a cancel may
 * have come first); its arguments into *row, in the worker's context.
 */
static bool
take_job(JobRow *row, MemoryContext cxt)
{
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		args[2] = {Int64GetDatum(worker_job), Int32GetDatum(MyProcPid)};
	GlintruRoleSwitch rs;
	bool		taken = false;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	begin_jobs_access(&rs);
	if (glintru_spi_run("SELECT model, interactions, user_column::pg_catalog.text, item_column::pg_catalog.text, "
						"order_column::pg_catalog.text, options FROM glintru.jobs "
						"WHERE id OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'queued' FOR UPDATE",
						1, types, args, false, 0, SPI_OK_SELECT, "could not read glintru.jobs") == 1)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		strlcpy(row->model, spi_text(SPI_tuptable, 0, 1), sizeof(row->model));
		row->relid = DatumGetObjectId(spi_col(SPI_tuptable, 0, 2, NULL));
		strlcpy(row->ucol, spi_text(SPI_tuptable, 0, 3), sizeof(row->ucol));
		strlcpy(row->icol, spi_text(SPI_tuptable, 0, 4), sizeof(row->icol));
		strlcpy(row->ocol, spi_text(SPI_tuptable, 0, 5), sizeof(row->ocol));
		row->options = DatumGetJsonbPCopy(spi_col(SPI_tuptable, 0, 6, NULL));
		MemoryContextSwitchTo(old);
		glintru_spi_run("UPDATE glintru.jobs SET state = 'running', pid = $2, started = pg_catalog.clock_timestamp() "
						"WHERE id OPERATOR(pg_catalog.=) $1",
						2, types, args, false, 0, SPI_OK_UPDATE, "could not update glintru.jobs");
		taken = true;
	}
	end_jobs_access(&rs);
	PopActiveSnapshot();
	CommitTransactionCommand();
	return taken;
}

/* hook: the table is read; train in a new transaction that holds no snapshot or table lock */
static void
job_after_read(void *arg)
{
	(void) arg;
	PopActiveSnapshot();
	CommitTransactionCommand();
	StartTransactionCommand();
}

/* hook: about to store; a snapshot again, and the job must still be running (its row locked) */
static void
job_before_store(void *arg)
{
	Oid			types[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(worker_job)};

	(void) arg;
	PushActiveSnapshot(GetTransactionSnapshot());
	if (job_row_run("SELECT 1 FROM glintru.jobs WHERE id OPERATOR(pg_catalog.=) $1 "
					"AND state OPERATOR(pg_catalog.=) 'running' FOR UPDATE",
					1, types, args, SPI_OK_SELECT) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("job %lld was cancelled", (long long) worker_job)));
}

/*
 * Write the job's end: its state, the model's id (done), the error
 * (failed), and the last epoch's numbers.  A job already cancelled stays
 * cancelled; a queued one is ended too (taking it failed: this worker is
 * the only one that will ever run it).
 */
static void
finish_job(const char *state, int32 model_id, const char *error)
{
	const GlintruEpochReport *last = worker_request ? glintru_train_request_last(worker_request) : NULL;
	bool		have_epoch = last != NULL && last->epoch > 0;
	Oid			types[9] = {INT8OID, TEXTOID, INT4OID, TEXTOID, INT4OID, INT4OID, FLOAT8OID, FLOAT8OID, FLOAT8OID};
	Datum		args[9];
	char		nulls[9];
	GlintruRoleSwitch rs;

	memset(nulls, ' ', sizeof(nulls));
	args[0] = Int64GetDatum(worker_job);
	args[1] = CStringGetTextDatum(state);
	args[2] = Int32GetDatum(model_id);
	nulls[2] = model_id > 0 ? ' ' : 'n';
	args[3] = error ? CStringGetTextDatum(error) : (Datum) 0;
	nulls[3] = error ? ' ' : 'n';
	args[4] = Int32GetDatum(have_epoch ? last->epoch : 0);
	args[5] = Int32GetDatum(have_epoch ? last->epochs : 0);
	args[6] = Float8GetDatum(have_epoch ? last->loss : 0);
	args[7] = Float8GetDatum(have_epoch ? last->val_ndcg10 : 0);
	args[8] = Float8GetDatum(have_epoch ? last->best_val_ndcg10 : 0);
	for (int i = 4; i < 9; i++)
		nulls[i] = have_epoch ? ' ' : 'n';
	begin_jobs_access(&rs);
	glintru_spi_check(SPI_execute_with_args("UPDATE glintru.jobs SET "
											"state = CASE WHEN state OPERATOR(pg_catalog.=) 'cancelled' THEN 'cancelled' ELSE $2 END, "
											"model_id = $3, "
											"error = CASE WHEN state OPERATOR(pg_catalog.=) 'cancelled' THEN NULL ELSE $4 END, "
											"finished = COALESCE(finished, pg_catalog.clock_timestamp()), "
											"epoch = COALESCE($5, epoch), epochs = COALESCE($6, epochs), "
											"loss = COALESCE($7, loss), val_ndcg10 = COALESCE($8, val_ndcg10), "
											"best_val_ndcg10 = COALESCE($9, best_val_ndcg10) "
											"WHERE id OPERATOR(pg_catalog.=) $1 "
											"AND state OPERATOR(pg_catalog.=) ANY ('{queued,running,cancelled}'::pg_catalog.text[])",
											9, types, args, nulls, false, 0),
					  SPI_OK_UPDATE, "could not update glintru.jobs");
	end_jobs_access(&rs);
}

/* Train the job: read, train, store and mark it done in the last transaction. */
static void
run_job(const JobRow *row, MemoryContext cxt)
{
	GlintruTrainHooks hooks = {job_after_read, job_before_store, NULL};
	MemoryContext old;
	int32		model_id;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (get_rel_name(row->relid) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the job's interactions table (OID %u) no longer exists", row->relid)));
	/* the request (and an init_from model's copy) outlives the first transaction */
	old = MemoryContextSwitchTo(cxt);
	worker_request = glintru_train_request(row->model, row->relid, row->ucol, row->icol, row->ocol,
										   row->options);
	MemoryContextSwitchTo(old);
	model_id = glintru_train_execute(worker_request, &hooks);
	finish_job("done", model_id, NULL);
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * Background worker entry point (bgw_main_arg: the job id): connect as the
 * job's role, wait for glintru_train_start()'s transaction, take the job,
 * train it, and record how it ended.
 */
void
glintru_job_main(Datum main_arg)
{
	JobWorkerArgs wargs;
	JobRow		row;
	MemoryContext cxt;

	worker_job = DatumGetInt64(main_arg);
	memcpy(&wargs, MyBgworkerEntry->bgw_extra, sizeof(wargs));
	/* a termination request stops the engine between batches (as in a backend), not in a handler */
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(wargs.dboid, wargs.roleid, 0);
	pgstat_report_appname(psprintf("glintru job %lld", (long long) worker_job));
	cxt = AllocSetContextCreate(TopMemoryContext, "glintru job", ALLOCSET_DEFAULT_SIZES);
	glintru_progress_set_job(worker_job);

	/*
	 * The job's row is visible (or gone, if the start rolled back) once its
	 * transaction ends.  A cancel of the waiting worker is ignored: the job
	 * is not running yet, and an error here would leave it queued with no
	 * worker (glintru_train_cancel() of a queued job needs no signal).
	 */
	HOLD_CANCEL_INTERRUPTS();
	StartTransactionCommand();
	XactLockTableWait(wargs.creator, NULL, NULL, XLTW_None);
	CommitTransactionCommand();
	QueryCancelPending = false;
	RESUME_CANCEL_INTERRUPTS();

	PG_TRY();
	{
		if (take_job(&row, cxt))
		{
			pgstat_report_activity(STATE_RUNNING, psprintf("glintru job %lld: training model %s",
														   (long long) worker_job, row.model));
			run_job(&row, cxt);
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		bool		cancel;

		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		cancel = edata->sqlerrcode == ERRCODE_QUERY_CANCELED;
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		finish_job(cancel ? "cancelled" : "failed", 0, edata->message);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
	proc_exit(0);
}
