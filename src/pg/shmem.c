/*
 * shmem.c — the model cache: parsed models keyed by (database, model id,
 * version).
 *
 * With shared_preload_libraries = 'glintru' the cache lives in shared memory
 * (a fixed region of glintru.shared_memory_size holding a DSA area), so a
 * model exists once for all backends.  Without preloading each backend keeps
 * private copies in the same structure.
 *
 * Atomic replacement: a query looks up its model's (id, version) in the
 * catalogue under its own snapshot, then pins the cache entry of exactly that
 * version (building it from the catalogue's bytes on a miss).  Replacing a
 * model commits a new version; entries are freed only when nobody pins them,
 * so a query never sees a half-built or freed model.  Old versions are
 * evicted when space is needed (least recently used first) or when a newer
 * version of the same model is built.
 *
 * Pins are held for the duration of one function call, released by the
 * caller (glintru_model_release) and, as a safety net, at transaction end
 * and backend exit.
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/dsa.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "glintru.h"
#include "safetensors.h"

#define CACHE_SLOTS 64

typedef struct CacheSlot
{
	Oid			dboid;			/* catalogue ids are per database */
	int32		id;				/* 0: empty */
	int64		version;
	bool		ready;			/* fully built */
	int32		refcount;
	uint64		last_used;
	Size		bytes;
	dsa_pointer dp;				/* shared mode */
	void	   *local;			/* private mode */
} CacheSlot;

/* A training running in some backend (glintru_training_progress). */
#define PROGRESS_SLOTS 16

typedef struct TrainingProgress
{
	int			pid;			/* 0: free */
	Oid			dboid;
	char		model[NAMEDATALEN];
	int			epoch;
	int			epochs;
	double		loss;
	double		val_ndcg10;
	double		best_val_ndcg10;
	double		elapsed;
	double		eta;
} TrainingProgress;

typedef struct ModelCache
{
	LWLock	   *lock;			/* slots, clock, used */
	LWLock	   *build_lock;		/* one build at a time: no duplicate builds */
	int			dsa_tranche;
	uint64		clock;
	Size		budget;
	Size		used;
	CacheSlot	slots[CACHE_SLOTS];
	TrainingProgress progress[PROGRESS_SLOTS];
} ModelCache;

int			glintru_shared_memory_mb = 128;

static bool shared_mode = false;	/* preloaded: cache in shared memory */
static ModelCache *shared_cache = NULL;
static void *area_place = NULL;
static dsa_area *area = NULL;
static ModelCache private_cache;

/* this backend's pins per slot, released at transaction end */
static int	my_pins[CACHE_SLOTS];
static bool callbacks_registered = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
region_size(void)
{
	return MAXALIGN(sizeof(ModelCache)) + (Size) glintru_shared_memory_mb * 1024 * 1024;
}

static void
glintru_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(region_size());
	RequestNamedLWLockTranche("glintru", 2);
}

static void
glintru_shmem_startup(void)
{
	bool		found;
	char	   *region;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	region = ShmemInitStruct("glintru model cache", region_size(), &found);
	shared_cache = (ModelCache *) region;
	area_place = region + MAXALIGN(sizeof(ModelCache));
	if (!found)
	{
		LWLockPadded *locks = GetNamedLWLockTranche("glintru");
		dsa_area   *a;

		memset(shared_cache, 0, sizeof(ModelCache));
		shared_cache->lock = &locks[0].lock;
		shared_cache->build_lock = &locks[1].lock;
		shared_cache->dsa_tranche = LWLockNewTrancheId();
		shared_cache->budget = (Size) glintru_shared_memory_mb * 1024 * 1024;
		a = dsa_create_in_place(area_place, shared_cache->budget, shared_cache->dsa_tranche, NULL);
		/* never grow into extra DSM segments: the budget is the budget */
		dsa_set_size_limit(a, shared_cache->budget);
		/* the postmaster's handle is not inherited: each backend attaches */
	}
	LWLockRelease(AddinShmemInitLock);
}

void
glintru_shmem_init(void)
{
	/*
	 * A server-start setting can only be defined while preloading (later it
	 * is a FATAL error); without preloading the cache is private anyway.
	 */
	if (!process_shared_preload_libraries_in_progress)
		return;
	DefineCustomIntVariable("glintru.shared_memory_size",
							"Shared memory reserved for models (with shared_preload_libraries).",
							"Every model in use must fit; raise it for large catalogues.",
							&glintru_shared_memory_mb,
							128, 1, INT_MAX / 2,
							PGC_POSTMASTER, GUC_UNIT_MB,
							NULL, NULL, NULL);
	MarkGUCPrefixReserved("glintru");
	shared_mode = true;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = glintru_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = glintru_shmem_startup;
}

bool
glintru_shmem_active(void)
{
	return shared_mode;
}

static ModelCache *
cache(void)
{
	if (!shared_mode)
		return &private_cache;
	if (area == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		LWLockRegisterTranche(shared_cache->dsa_tranche, "glintru_dsa");
		area = dsa_attach_in_place(area_place, NULL);
		dsa_pin_mapping(area);
		MemoryContextSwitchTo(old);
	}
	return shared_cache;
}

static void
lock(ModelCache *c)
{
	if (c->lock)
		LWLockAcquire(c->lock, LW_EXCLUSIVE);
}

static void
unlock(ModelCache *c)
{
	if (c->lock)
		LWLockRelease(c->lock);
}

static void *
slot_address(const CacheSlot *s)
{
	return shared_mode ? dsa_get_address(area, s->dp) : s->local;
}

/* caller holds the lock */
static int
find_slot(ModelCache *c, int32 id, int64 version)
{
	for (int i = 0; i < CACHE_SLOTS; i++)
		if (c->slots[i].id == id && c->slots[i].version == version &&
			c->slots[i].dboid == MyDatabaseId)
			return i;
	return -1;
}

/* caller holds the lock; the slot must be unpinned */
static void
free_slot(ModelCache *c, int i)
{
	CacheSlot  *s = &c->slots[i];

	if (shared_mode)
	{
		if (DsaPointerIsValid(s->dp))
			dsa_free(area, s->dp);
	}
	else if (s->local)
		pfree(s->local);
	c->used -= s->bytes;
	memset(s, 0, sizeof(*s));
}

/* caller holds the lock: least recently used unpinned slot, -1 if none */
static int
lru_victim(ModelCache *c)
{
	int			victim = -1;

	for (int i = 0; i < CACHE_SLOTS; i++)
	{
		CacheSlot  *s = &c->slots[i];

		if (s->id != 0 && s->ready && s->refcount == 0 &&
			(victim < 0 || s->last_used < c->slots[victim].last_used))
			victim = i;
	}
	return victim;
}

static void
release_all_pins(void)
{
	ModelCache *c;

	if (!shared_mode && !callbacks_registered)
		return;
	c = shared_mode ? shared_cache : &private_cache;
	if (c == NULL)
		return;
	for (int i = 0; i < CACHE_SLOTS; i++)
		if (my_pins[i] > 0)
		{
			lock(c);
			c->slots[i].refcount -= my_pins[i];
			unlock(c);
			my_pins[i] = 0;
		}
}

static void release_my_progress(void);

static void
xact_callback(XactEvent event, void *arg)
{
	(void) arg;
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		release_all_pins();
		release_my_progress();
	}
}

static void
exit_callback(int code, Datum arg)
{
	(void) code;
	(void) arg;
	release_all_pins();
	release_my_progress();
}

static void
register_callbacks(void)
{
	if (!callbacks_registered)
	{
		RegisterXactCallback(xact_callback, NULL);
		before_shmem_exit(exit_callback, (Datum) 0);
		callbacks_registered = true;
	}
}

static GlintruPin
pin_slot(ModelCache *c, int i)
{
	GlintruPin	pin;

	c->slots[i].refcount++;
	c->slots[i].last_used = ++c->clock;
	my_pins[i]++;
	pin.slot = i;
	pin.model = slot_address(&c->slots[i]);
	return pin;
}

static void *
alloc_in_slot(size_t bytes, void *arg)
{
	ModelCache *c = cache();
	CacheSlot  *s = &c->slots[*(int *) arg];

	(void) bytes;
	return slot_address(s);
}

/*
 * Reserve a slot for (id, version) of the given size, evicting as needed.
 * Caller holds the lock.  Returns the slot, or raises an error (after
 * releasing the lock) when the model cannot fit.
 */
static int
reserve_slot(ModelCache *c, const GlintruCatalogEntry *e, Size bytes)
{
	int			free_i = -1;

	/* older versions of the same model go first */
	for (int i = 0; i < CACHE_SLOTS; i++)
		if (c->slots[i].id == e->id && c->slots[i].dboid == MyDatabaseId &&
			c->slots[i].refcount == 0 && c->slots[i].ready)
			free_slot(c, i);
	for (;;)
	{
		bool		fits;

		free_i = -1;
		for (int i = 0; i < CACHE_SLOTS && free_i < 0; i++)
			if (c->slots[i].id == 0)
				free_i = i;
		if (free_i >= 0)
		{
			CacheSlot  *s = &c->slots[free_i];

			if (shared_mode)
			{
				s->dp = dsa_allocate_extended(area, bytes, DSA_ALLOC_HUGE | DSA_ALLOC_NO_OOM);
				fits = DsaPointerIsValid(s->dp);
			}
			else
			{
				s->local = MemoryContextAllocExtended(TopMemoryContext, bytes,
													  MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
				fits = s->local != NULL;
			}
			if (fits)
			{
				s->dboid = MyDatabaseId;
				s->id = e->id;
				s->version = e->version;
				s->bytes = bytes;
				s->ready = false;
				s->refcount = 0;
				c->used += bytes;
				return free_i;
			}
		}
		{
			int			victim = lru_victim(c);

			if (victim < 0)
				break;
			free_slot(c, victim);
		}
	}
	{
		Size		used = c->used;

		unlock(c);
		if (shared_mode)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("model \"%s\" needs %zu kB of shared memory, which glintru.shared_memory_size = %d MB cannot hold",
							e->name, bytes / 1024, glintru_shared_memory_mb),
					 errdetail("%zu kB are held by models in use.", used / 1024),
					 errhint("Raise glintru.shared_memory_size in postgresql.conf and restart the server.")));
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory building model \"%s\" (%zu kB)", e->name, bytes / 1024)));
	}
	return -1;					/* not reached */
}

GlintruPin
glintru_model_acquire(const char *name)
{
	GlintruCatalogEntry e;

	if (!glintru_catalog_find(name, &e))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" does not exist", name),
				 errhint("glintru_models() lists the loaded models.")));
	return glintru_model_acquire_entry(&e);
}

/* Pin the model version the caller found in the catalogue. */
GlintruPin
glintru_model_acquire_entry(const GlintruCatalogEntry *entry)
{
	GlintruCatalogEntry e = *entry;
	const char *name = e.name;
	ModelCache *c;
	int			i;
	GlintruPin	pin;

	register_callbacks();
	c = cache();

	lock(c);
	i = find_slot(c, e.id, e.version);
	if (i >= 0 && c->slots[i].ready)
	{
		pin = pin_slot(c, i);
		unlock(c);
		return pin;
	}
	unlock(c);

	/* miss: build it, one builder at a time so nobody builds twice */
	if (c->build_lock)
		LWLockAcquire(c->build_lock, LW_EXCLUSIVE);
	lock(c);
	i = find_slot(c, e.id, e.version);
	if (i >= 0 && c->slots[i].ready)
	{
		pin = pin_slot(c, i);
		unlock(c);
		if (c->build_lock)
			LWLockRelease(c->build_lock);
		return pin;
	}
	unlock(c);
	{
		bytea	   *w = glintru_catalog_weights(e.id, e.version);
		const uint8 *buf = (const uint8 *) VARDATA_ANY(w);
		size_t		len = VARSIZE_ANY_EXHDR(w);
		GlintruConfig cfg;
		bool		has_pop;
		char		err[256];

		if (!glintru_safetensors_check(buf, len, &cfg, &has_pop, err, sizeof(err)))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("model \"%s\" in glintru.models is not a valid model file: %s", name, err)));
		lock(c);
		i = reserve_slot(c, &e, glintru_model_bytes(&cfg, has_pop));
		unlock(c);
		PG_TRY();
		{
			glintru_model_from_bytes(buf, len, alloc_in_slot, &i);
		}
		PG_CATCH();
		{
			lock(c);
			free_slot(c, i);
			unlock(c);
			PG_RE_THROW();
		}
		PG_END_TRY();
		pfree(w);
	}
	lock(c);
	c->slots[i].ready = true;
	pin = pin_slot(c, i);
	unlock(c);
	if (c->build_lock)
		LWLockRelease(c->build_lock);
	return pin;
}

void
glintru_model_release(GlintruPin *pin)
{
	ModelCache *c;

	if (pin->model == NULL)
		return;
	c = shared_mode ? shared_cache : &private_cache;
	if (my_pins[pin->slot] > 0)
	{
		lock(c);
		c->slots[pin->slot].refcount--;
		unlock(c);
		my_pins[pin->slot]--;
	}
	pin->model = NULL;
}

bool
glintru_model_cached(int32 id, int64 version)
{
	ModelCache *c = cache();
	int			i;
	bool		ready;

	lock(c);
	i = find_slot(c, id, version);
	ready = i >= 0 && c->slots[i].ready;
	unlock(c);
	return ready;
}

void
glintru_memory_usage(int64 *budget, int64 *used, int *models)
{
	ModelCache *c = cache();

	lock(c);
	*budget = shared_mode ? (int64) c->budget : -1;
	*used = (int64) c->used;
	*models = 0;
	for (int i = 0; i < CACHE_SLOTS; i++)
		if (c->slots[i].id != 0 && c->slots[i].ready)
			(*models)++;
	unlock(c);
}

/* ---- training progress, visible to every session ---- */

static void
release_my_progress(void)
{
	ModelCache *c = shared_mode ? shared_cache : &private_cache;

	if (c == NULL)
		return;
	lock(c);
	for (int i = 0; i < PROGRESS_SLOTS; i++)
		if (c->progress[i].pid == MyProcPid)
			c->progress[i].pid = 0;
	unlock(c);
}

int
glintru_progress_begin(const char *model, int epochs)
{
	ModelCache *c = cache();
	int			slot = -1;

	register_callbacks();
	lock(c);
	for (int i = 0; i < PROGRESS_SLOTS && slot < 0; i++)
		if (c->progress[i].pid == 0)
			slot = i;
	if (slot >= 0)
	{
		TrainingProgress *p = &c->progress[slot];

		memset(p, 0, sizeof(*p));
		p->pid = MyProcPid;
		p->dboid = MyDatabaseId;
		strlcpy(p->model, model, sizeof(p->model));
		p->epochs = epochs;
	}
	unlock(c);
	return slot;				/* -1: too many trainings to show; training goes on */
}

void
glintru_progress_update(int slot, int epoch, int epochs, double loss, double val_ndcg10,
						double best_val_ndcg10, double elapsed, double eta)
{
	ModelCache *c = cache();
	TrainingProgress *p;

	if (slot < 0)
		return;
	lock(c);
	p = &c->progress[slot];
	if (p->pid == MyProcPid)
	{
		p->epoch = epoch;
		p->epochs = epochs;
		p->loss = loss;
		p->val_ndcg10 = val_ndcg10;
		p->best_val_ndcg10 = best_val_ndcg10;
		p->elapsed = elapsed;
		p->eta = eta;
	}
	unlock(c);
}

void
glintru_progress_end(int slot)
{
	ModelCache *c = cache();

	if (slot < 0)
		return;
	lock(c);
	if (c->progress[slot].pid == MyProcPid)
		c->progress[slot].pid = 0;
	unlock(c);
}

PG_FUNCTION_INFO_V1(glintru_training_progress);
Datum
glintru_training_progress(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ModelCache *c = cache();
	TrainingProgress snap[PROGRESS_SLOTS];

	InitMaterializedSRF(fcinfo, 0);
	lock(c);
	memcpy(snap, c->progress, sizeof(snap));
	unlock(c);
	for (int i = 0; i < PROGRESS_SLOTS; i++)
	{
		TrainingProgress *p = &snap[i];
		Datum		values[9];
		bool		nulls[9] = {0};

		if (p->pid == 0 || p->dboid != MyDatabaseId)
			continue;
		values[0] = Int32GetDatum(p->pid);
		values[1] = CStringGetTextDatum(p->model);
		values[2] = Int32GetDatum(p->epoch);
		values[3] = Int32GetDatum(p->epochs);
		values[4] = Float8GetDatum(p->loss);
		values[5] = Float8GetDatum(p->val_ndcg10);
		values[6] = Float8GetDatum(p->best_val_ndcg10);
		values[7] = Float8GetDatum(p->elapsed);
		values[8] = Float8GetDatum(p->eta);
		/* before the first epoch ends there is nothing to show but the start */
		for (int k = 4; k < 9; k++)
			nulls[k] = p->epoch == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
