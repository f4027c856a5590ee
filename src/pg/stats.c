/*
 * stats.c — usage counters, as pg_stat_statements keeps them: a fixed array
 * of entries keyed by (database oid, model id, attachment id or 0), each
 * with its counters (glintru_stats(), glintru_stats_reset()).
 *
 * LOCK MAP: Stats.mutex (a spinlock) serialises claiming an entry: under it
 * a backend rescans the entries in use, writes a new entry's key and only
 * then, after a write barrier, raises n_used.  A key never changes once
 * published (entries are never freed; a reset zeroes the counters), so
 * finding an entry takes no lock: read n_used, a read barrier, scan.  The
 * counters are pg_atomic_uint64: a call adds with one atomic add each (the
 * maximum with a compare-and-swap loop), and readers and a reset read and
 * write them without any lock, so a snapshot of an entry is not taken at
 * one instant (its counters may be a call apart).  Each backend remembers
 * the entries it used last (recent[]), so a statement finds its entry
 * without scanning the array, and the trigger's and state writes' counts
 * find the entry glintru_state_model() looked up for the statement.
 * Without preloading the entries are this backend's own (private memory).
 * When all entries are taken, new (model, attachment) pairs are not counted
 * until a restart.
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "stats.h"

#define STATS_ENTRIES 1024
#define STATS_RECENT 8

/* One (database, model, attachment) pair's counters. */
struct GlintruStatsEntry
{
	Oid			dboid;
	int32		model_id;
	int32		att_id;			/* 0: functions given a history */
	pg_atomic_uint64 c[GLINTRU_STAT_COUNT];
};

/* All entries; in shared memory when preloaded. */
typedef struct Stats
{
	slock_t		mutex;			/* see LOCK MAP */
	pg_atomic_uint32 n_used;	/* entries[0 .. n_used) have their keys */
	GlintruStatsEntry entries[STATS_ENTRIES];
} Stats;

/* An entry this backend used lately. */
typedef struct Recent
{
	Oid			dboid;
	int32		model_id;
	int32		att_id;
	GlintruStatsEntry *e;
} Recent;

static bool shared_mode = false;
static Stats *shared_stats = NULL;
static Stats *private_stats = NULL;
static Recent recent[STATS_RECENT];
static int	n_recent = 0;		/* filled slots of recent[] */
static int	next_recent = 0;	/* the slot the next miss replaces */
static int	last_recent = -1;	/* the slot used last */

/* glintru is being preloaded: the counters go to shared memory. */
void
glintru_stats_use_shared_memory(void)
{
	shared_mode = true;
}

/* Ask for the entries (shmem_request_hook). */
void
glintru_stats_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(Stats)));
}

/* Set up an empty array of entries. */
static void
stats_init(Stats *s)
{
	memset(s, 0, sizeof(*s));
	SpinLockInit(&s->mutex);
	pg_atomic_init_u32(&s->n_used, 0);
	for (int i = 0; i < STATS_ENTRIES; i++)
		for (int k = 0; k < GLINTRU_STAT_COUNT; k++)
			pg_atomic_init_u64(&s->entries[i].c[k], 0);
}

/* Create (postmaster) or find the entries (shmem_startup_hook). */
void
glintru_stats_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared_stats = ShmemInitStruct("glintru usage statistics", sizeof(Stats), &found);
	if (!found)
		stats_init(shared_stats);
	LWLockRelease(AddinShmemInitLock);
}

/* The entries this backend counts in, NULL before shared memory exists. */
static Stats *
stats(void)
{
	if (shared_mode)
		return shared_stats;
	if (private_stats == NULL)
	{
		private_stats = MemoryContextAlloc(TopMemoryContext, sizeof(Stats));
		stats_init(private_stats);
	}
	return private_stats;
}

/* The entry of a key among entries[from .. to), or NULL. */
static GlintruStatsEntry *
scan(Stats *s, uint32 from, uint32 to, int32 model_id, int32 att_id)
{
	for (uint32 i = from; i < to; i++)
	{
		GlintruStatsEntry *e = &s->entries[i];

		if (e->att_id == att_id && e->model_id == model_id && e->dboid == MyDatabaseId)
			return e;
	}
	return NULL;
}

/* The entry of a key, claimed if new; NULL when the array is full. */
static GlintruStatsEntry *
find_or_claim(Stats *s, int32 model_id, int32 att_id)
{
	uint32		n = pg_atomic_read_u32(&s->n_used);
	uint32		now;
	GlintruStatsEntry *e;

	pg_read_barrier();
	e = scan(s, 0, n, model_id, att_id);
	if (e != NULL)
		return e;
	SpinLockAcquire(&s->mutex);
	now = pg_atomic_read_u32(&s->n_used);
	e = scan(s, n, now, model_id, att_id);
	if (e == NULL && now < STATS_ENTRIES)
	{
		e = &s->entries[now];
		e->dboid = MyDatabaseId;
		e->model_id = model_id;
		e->att_id = att_id;
		pg_write_barrier();
		pg_atomic_write_u32(&s->n_used, now + 1);
	}
	SpinLockRelease(&s->mutex);
	return e;
}

/* The entry of (this database, model, attachment or 0), for the counts of one statement. */
GlintruStatsEntry *
glintru_stats_entry(int32 model_id, int32 att_id)
{
	Stats	   *s = stats();
	GlintruStatsEntry *e;

	for (int i = 0; i < n_recent; i++)
		if (recent[i].att_id == att_id && recent[i].model_id == model_id &&
			recent[i].dboid == MyDatabaseId)
		{
			last_recent = i;
			return recent[i].e;
		}
	if (s == NULL)
		return NULL;
	e = find_or_claim(s, model_id, att_id);
	if (e == NULL)
		return NULL;
	recent[next_recent] = (Recent) {MyDatabaseId, model_id, att_id, e};
	last_recent = next_recent;
	next_recent = (next_recent + 1) % STATS_RECENT;
	n_recent = Min(n_recent + 1, STATS_RECENT);
	return e;
}

/*
 * The entry this backend used last for an attachment (whose model the
 * caller does not know): the one glintru_state_model() looked up for the
 * statement; NULL if none.
 */
GlintruStatsEntry *
glintru_stats_of_attachment(int32 att_id)
{
	if (last_recent >= 0 && recent[last_recent].att_id == att_id &&
		recent[last_recent].dboid == MyDatabaseId)
		return recent[last_recent].e;
	for (int i = 0; i < n_recent; i++)
		if (recent[i].att_id == att_id && recent[i].dboid == MyDatabaseId)
			return recent[i].e;
	return NULL;
}

/* Add n to a counter of an entry (NULL: not counted). */
void
glintru_stats_add(GlintruStatsEntry *e, GlintruStat which, uint64 n)
{
	if (e != NULL && n != 0)
		pg_atomic_fetch_add_u64(&e->c[which], (int64) n);
}

/* Count a serving call that started at start and returned rows rows. */
void
glintru_stats_call(GlintruStatsEntry *e, uint64 rows, instr_time start)
{
	instr_time	end;
	uint64		ns;
	uint64		max;

	if (e == NULL)
		return;
	INSTR_TIME_SET_CURRENT(end);
	INSTR_TIME_SUBTRACT(end, start);
	ns = (uint64) (INSTR_TIME_GET_DOUBLE(end) * 1e9);
	pg_atomic_fetch_add_u64(&e->c[GLINTRU_STAT_CALLS], 1);
	glintru_stats_add(e, GLINTRU_STAT_ROWS, rows);
	glintru_stats_add(e, GLINTRU_STAT_TIME_NS, ns);
	max = pg_atomic_read_u64(&e->c[GLINTRU_STAT_MAX_TIME_NS]);
	while (ns > max && !pg_atomic_compare_exchange_u64(&e->c[GLINTRU_STAT_MAX_TIME_NS], &max, ns))
		;
}

/* SQL glintru_stats(): the counters of this database's entries that counted anything. */
PG_FUNCTION_INFO_V1(glintru_stats);
Datum
glintru_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Stats	   *s = stats();
	uint32		n;

	InitMaterializedSRF(fcinfo, 0);
	if (s == NULL)
		return (Datum) 0;
	n = pg_atomic_read_u32(&s->n_used);
	pg_read_barrier();
	for (uint32 i = 0; i < n; i++)
	{
		GlintruStatsEntry *e = &s->entries[i];
		uint64		c[GLINTRU_STAT_COUNT];
		bool		any = false;
		Datum		values[2 + GLINTRU_STAT_COUNT];
		bool		nulls[2 + GLINTRU_STAT_COUNT] = {0};

		if (e->dboid != MyDatabaseId)
			continue;
		for (int k = 0; k < GLINTRU_STAT_COUNT; k++)
		{
			c[k] = pg_atomic_read_u64(&e->c[k]);
			any |= c[k] != 0;
		}
		if (!any)
			continue;
		values[0] = Int32GetDatum(e->model_id);
		values[1] = Int32GetDatum(e->att_id);
		nulls[1] = e->att_id == 0;
		for (int k = 0; k < GLINTRU_STAT_COUNT; k++)
			values[2 + k] = (k == GLINTRU_STAT_TIME_NS || k == GLINTRU_STAT_MAX_TIME_NS)
				? Float8GetDatum((double) c[k] / 1e6) : Int64GetDatum((int64) c[k]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* SQL glintru_stats_reset(): zero the counters of this database's entries. */
PG_FUNCTION_INFO_V1(glintru_stats_reset);
Datum
glintru_stats_reset(PG_FUNCTION_ARGS)
{
	Stats	   *s = stats();
	uint32		n;

	(void) fcinfo;
	if (s == NULL)
		PG_RETURN_VOID();
	n = pg_atomic_read_u32(&s->n_used);
	pg_read_barrier();
	for (uint32 i = 0; i < n; i++)
		if (s->entries[i].dboid == MyDatabaseId)
			for (int k = 0; k < GLINTRU_STAT_COUNT; k++)
				pg_atomic_write_u64(&s->entries[i].c[k], 0);
	PG_RETURN_VOID();
}
