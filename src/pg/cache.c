/*
 * cache.c — the model cache: parsed models keyed by (database, model id,
 * version), and the validation and building of model files.
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
 * A load installs the version it writes: the file it validated is built
 * once, straight into a slot keyed by (database, id, new version), before
 * the load commits (glintru_cache_install).  Nobody else can name that
 * version until the load commits (readers take the version from the
 * catalogue under their snapshot), so the slot needs no hiding; it is only
 * marked pending (pending_pid: the loading backend) so that no other backend
 * evicts it before the commit, and this backend frees it if the load's
 * transaction or subtransaction aborts.  At commit the mark is cleared and
 * the model's older unpinned versions are freed.  So the first call after a
 * load finds the model built.
 *
 * Pins are held for the duration of one function call, released by the
 * caller (glintru_cache_release) and, as a safety net, at transaction end
 * and backend exit.
 *
 * LOCK MAP (shared mode; in private mode there is one backend and no lock)
 *
 *   ModelCache.lock ("glintru" tranche, lock 0) protects slots[] (every
 *   field: the key, ready, pending_pid, refcount, last_used, bytes, the
 *   allocation), clock and used.
 *     LW_EXCLUSIVE: looking up and pinning (a pin writes refcount and
 *       last_used), releasing pins, reserving, evicting and freeing slots,
 *       publishing a built slot (ready = true), setting and clearing
 *       pending_pid (install, commit, abort).
 *     LW_SHARED: glintru_cache_contains() and glintru_cache_usage(), which
 *       only read.
 *     Never held across reading the weights or building a model (they can
 *     fail and take long); only across slot bookkeeping and DSA allocation.
 *
 *   ModelCache.build_lock ("glintru" tranche, lock 1), LW_EXCLUSIVE only:
 *     one build at a time, so two backends that miss on the same version do
 *     not both build it.  Held from the re-check after a miss across reading
 *     the weights, reserving, building and publishing; taken before
 *     ModelCache.lock, never after (lock order build_lock → lock).  The bytes
 *     of a slot that is not ready are written only by the build_lock holder;
 *     nobody else reads a slot before ready is set.  An ERROR while building
 *     frees the slot under lock; the abort releases build_lock.
 *     A load's install (glintru_cache_install) builds without build_lock:
 *     its slot is keyed by a version no other backend can look up before
 *     the load commits, so nobody else builds, reads or frees it (a slot
 *     with pending_pid set is never a victim); it writes the slot's bytes
 *     before ready is set, like a builder.
 *
 *   budget and dsa_tranche are written once, in shmem startup under
 *   AddinShmemInitLock, and only read afterwards (no lock).  my_pins[] and
 *   pending_subxact[] are this backend's own (no lock).
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/dsa.h"
#include "utils/memutils.h"

#include "cache.h"
#include "catalog.h"
#include "safetensors.h"

#define CACHE_SLOTS 64

/* One cached model version (or a free slot: id 0). */
typedef struct CacheSlot
{
	Oid			dboid;			/* catalogue ids are per database */
	int32		id;				/* 0: empty */
	int64		version;
	bool		ready;			/* fully built */
	int			pending_pid;	/* an uncommitted load's version: its backend, else 0 */
	int32		refcount;
	uint64		last_used;
	Size		bytes;
	dsa_pointer dp;				/* shared mode */
	void	   *local;			/* private mode */
} CacheSlot;

/* The cache; in shared mode at the start of the shared region. */
typedef struct ModelCache
{
	LWLock	   *lock;			/* see LOCK MAP */
	LWLock	   *build_lock;		/* see LOCK MAP */
	int			dsa_tranche;
	uint64		clock;
	Size		budget;
	Size		used;
	CacheSlot	slots[CACHE_SLOTS];
} ModelCache;

static bool shared_mode = false;	/* preloaded: cache in shared memory */
static ModelCache *shared_cache = NULL;
static void *area_place = NULL;
static dsa_area *area = NULL;
static ModelCache private_cache;

/* this backend's pins per slot, released at transaction end */
static int	my_pins[CACHE_SLOTS];
/* the (sub)transaction of each slot this backend installed and has not committed yet */
static SubTransactionId pending_subxact[CACHE_SLOTS];
static bool callbacks_registered = false;

/* ---- set-up ---- */

/* glintru is being preloaded: the cache goes to shared memory. */
void
glintru_cache_use_shared_memory(void)
{
	shared_mode = true;
}

/* Is the cache in shared memory? */
bool
glintru_cache_shared(void)
{
	return shared_mode;
}

/* The shared region: the cache's header, then the DSA area of size_mb. */
static Size
region_size(int size_mb)
{
	return MAXALIGN(sizeof(ModelCache)) + (Size) size_mb * 1024 * 1024;
}

/* Ask for the region and the cache's two locks (shmem_request_hook). */
void
glintru_cache_shmem_request(int size_mb)
{
	RequestAddinShmemSpace(region_size(size_mb));
	RequestNamedLWLockTranche("glintru", 2);
}

/* Create (postmaster) or find the region (shmem_startup_hook). */
void
glintru_cache_shmem_startup(int size_mb)
{
	bool		found;
	char	   *region;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	region = ShmemInitStruct("glintru model cache", region_size(size_mb), &found);
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
		shared_cache->budget = (Size) size_mb * 1024 * 1024;
		a = dsa_create_in_place(area_place, shared_cache->budget, shared_cache->dsa_tranche, NULL);
		/* never grow into extra DSM segments: the budget is the budget */
		dsa_set_size_limit(a, shared_cache->budget);
		/* the postmaster's handle is not inherited: each backend attaches */
	}
	LWLockRelease(AddinShmemInitLock);
}

/* This backend's view of the cache, attaching to the DSA area on first use. */
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

/* Take ModelCache.lock in the given mode (no-op in private mode). */
static void
lock(ModelCache *c, LWLockMode mode)
{
	if (c->lock)
		LWLockAcquire(c->lock, mode);
}

/* Release ModelCache.lock. */
static void
unlock(ModelCache *c)
{
	if (c->lock)
		LWLockRelease(c->lock);
}

/* ---- model files ---- */

/*
 * Validate a whole safetensors file and work out the model it describes (its
 * configuration and whether it carries popularity); a defect is an ERROR
 * naming it.  This is the one validation of a file being loaded.
 */
void
glintru_model_check(const uint8 *buf, size_t len, GlintruConfig *cfg, bool *has_pop)
{
	char		err[512];

	if (!glintru_safetensors_check(buf, len, cfg, has_pop, err, sizeof(err)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid model file: %s", err)));
}

/*
 * Build a model from a file glintru_safetensors_check() accepted into dest
 * (glintru_model_bytes() of its configuration).  Only what needs the data
 * (non-finite values, duplicate item ids) can still fail: an ERROR.
 */
GlintruModel *
glintru_model_build(const uint8 *buf, size_t len, void *dest)
{
	char		err[512];
	GlintruModel *m = glintru_safetensors_build(buf, len, dest, err, sizeof(err));

	if (m == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid model file: %s", err)));
	return m;
}

/* ---- slots (caller holds ModelCache.lock exclusively unless noted) ---- */

/* Where a slot's model lives in this backend. */
static void *
slot_address(const CacheSlot *s)
{
	return shared_mode ? dsa_get_address(area, s->dp) : s->local;
}

/* The slot of (this database, id, version), or -1; the lock in any mode. */
static int
find_slot(ModelCache *c, int32 id, int64 version)
{
	for (int i = 0; i < CACHE_SLOTS; i++)
		if (c->slots[i].id == id && c->slots[i].version == version &&
			c->slots[i].dboid == MyDatabaseId)
			return i;
	return -1;
}

/* Free an unpinned slot and its memory. */
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

/* The least recently used unpinned ready slot, -1 if none. */
static int
lru_victim(ModelCache *c)
{
	int			victim = -1;

	for (int i = 0; i < CACHE_SLOTS; i++)
	{
		CacheSlot  *s = &c->slots[i];

		if (s->id != 0 && s->ready && s->refcount == 0 && s->pending_pid == 0 &&
			(victim < 0 || s->last_used < c->slots[victim].last_used))
			victim = i;
	}
	return victim;
}

/* Allocate bytes for free slot i and key it by e; false if the area has no room. */
static bool
fill_slot(ModelCache *c, int i, const GlintruCatalogEntry *e, Size bytes)
{
	CacheSlot  *s = &c->slots[i];

	if (shared_mode)
	{
		s->dp = dsa_allocate_extended(area, bytes, DSA_ALLOC_HUGE | DSA_ALLOC_NO_OOM);
		if (!DsaPointerIsValid(s->dp))
			return false;
	}
	else
	{
		s->local = MemoryContextAllocExtended(TopMemoryContext, bytes,
											  MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
		if (s->local == NULL)
			return false;
	}
	s->dboid = MyDatabaseId;
	s->id = e->id;
	s->version = e->version;
	s->bytes = bytes;
	s->ready = false;
	s->pending_pid = 0;
	s->refcount = 0;
	c->used += bytes;
	return true;
}

/* The error of a model that does not fit; releases the lock first. */
static void
no_room(ModelCache *c, const GlintruCatalogEntry *e, Size bytes)
{
	Size		used = c->used;

	unlock(c);
	if (shared_mode)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("model \"%s\" needs %zu kB of shared memory, which glintru.shared_memory_size = %d MB cannot hold",
						e->name, bytes / 1024, (int) (c->budget / (1024 * 1024))),
				 errdetail("%zu kB are held by models in use.", used / 1024),
				 errhint("Raise glintru.shared_memory_size in postgresql.conf and restart the server.")));
	ereport(ERROR,
			(errcode(ERRCODE_OUT_OF_MEMORY),
			 errmsg("out of memory building model \"%s\" (%zu kB)", e->name, bytes / 1024)));
}

/* Free the unpinned built versions of model id other than version (none pending). */
static void
free_other_versions(ModelCache *c, int32 id, int64 version)
{
	for (int i = 0; i < CACHE_SLOTS; i++)
		if (c->slots[i].id == id && c->slots[i].dboid == MyDatabaseId &&
			c->slots[i].version != version && c->slots[i].refcount == 0 &&
			c->slots[i].ready && c->slots[i].pending_pid == 0)
			free_slot(c, i);
}

/* A free slot of the given size for e, evicting least recently used ones; -1 if it cannot fit. */
static int
try_reserve(ModelCache *c, const GlintruCatalogEntry *e, Size bytes)
{
	for (;;)
	{
		int			free_i = -1;
		int			victim;

		for (int i = 0; i < CACHE_SLOTS && free_i < 0; i++)
			if (c->slots[i].id == 0)
				free_i = i;
		if (free_i >= 0 && fill_slot(c, free_i, e, bytes))
			return free_i;
		victim = lru_victim(c);
		if (victim < 0)
			return -1;
		free_slot(c, victim);
	}
}

/*
 * Reserve a slot for (id, version) of the given size, evicting as needed
 * (older versions of the same model first).  Returns the slot, or raises an
 * error (after releasing the lock) when the model cannot fit.
 */
static int
reserve_slot(ModelCache *c, const GlintruCatalogEntry *e, Size bytes)
{
	int			i;

	free_other_versions(c, e->id, e->version);
	i = try_reserve(c, e, bytes);
	if (i < 0)
		no_room(c, e, bytes);
	return i;
}

/* ---- pins ---- */

/* Drop every pin this backend holds (transaction end, backend exit). */
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
			lock(c, LW_EXCLUSIVE);
			c->slots[i].refcount -= my_pins[i];
			unlock(c);
			my_pins[i] = 0;
		}
}

/*
 * Free the slots this backend installed in subtransaction subxact (every one
 * when InvalidSubTransactionId): their load aborted, so nobody else can have
 * pinned them; this backend's own pins on them go too.
 */
static void
drop_pending(SubTransactionId subxact)
{
	ModelCache *c = shared_mode ? shared_cache : &private_cache;

	for (int i = 0; i < CACHE_SLOTS; i++)
		if (pending_subxact[i] != InvalidSubTransactionId &&
			(subxact == InvalidSubTransactionId || pending_subxact[i] == subxact))
		{
			lock(c, LW_EXCLUSIVE);
			c->slots[i].refcount -= my_pins[i];
			my_pins[i] = 0;
			free_slot(c, i);
			unlock(c);
			pending_subxact[i] = InvalidSubTransactionId;
		}
}

/*
 * The loads of this transaction committed: their slots become ordinary
 * cache entries and the older unpinned versions of their models go.  Runs
 * after the commit: takes the lock and frees DSA memory, which cannot fail.
 */
static void
publish_pending(void)
{
	ModelCache *c = shared_mode ? shared_cache : &private_cache;

	for (int i = 0; i < CACHE_SLOTS; i++)
		if (pending_subxact[i] != InvalidSubTransactionId)
		{
			lock(c, LW_EXCLUSIVE);
			c->slots[i].pending_pid = 0;
			free_other_versions(c, c->slots[i].id, c->slots[i].version);
			unlock(c);
			pending_subxact[i] = InvalidSubTransactionId;
		}
}

/* Transaction end: a pin never outlives its transaction; a load's slot is published or freed. */
static void
xact_callback(XactEvent event, void *arg)
{
	(void) arg;
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE)
		release_all_pins();
	if (event == XACT_EVENT_COMMIT)
		publish_pending();
	/* a prepared transaction commits elsewhere: its model is built on first use */
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PREPARE)
		drop_pending(InvalidSubTransactionId);
}

/* Subtransaction end: an aborted one frees its loads' slots, a committed one hands them up. */
static void
subxact_callback(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid, void *arg)
{
	(void) arg;
	if (event == SUBXACT_EVENT_ABORT_SUB)
		drop_pending(mySubid);
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
		for (int i = 0; i < CACHE_SLOTS; i++)
			if (pending_subxact[i] == mySubid)
				pending_subxact[i] = parentSubid;
}

/* Backend exit: give back the pins of a backend that dies mid-transaction, and its uncommitted loads. */
static void
exit_callback(int code, Datum arg)
{
	(void) code;
	(void) arg;
	release_all_pins();
	drop_pending(InvalidSubTransactionId);
}

/* Install the safety nets above, once per backend. */
static void
register_callbacks(void)
{
	if (!callbacks_registered)
	{
		RegisterXactCallback(xact_callback, NULL);
		RegisterSubXactCallback(subxact_callback, NULL);
		before_shmem_exit(exit_callback, (Datum) 0);
		callbacks_registered = true;
	}
}

/* Pin slot i for this backend. */
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

/* Mark slot i, just built, ready for every backend and pin it for this one. */
static GlintruPin
publish_slot(ModelCache *c, int i)
{
	GlintruPin	pin;

	lock(c, LW_EXCLUSIVE);
	c->slots[i].ready = true;
	pin = pin_slot(c, i);
	unlock(c);
	return pin;
}

/* Pin the ready slot of (id, version) if there is one; false on a miss. */
static bool
try_pin(ModelCache *c, const GlintruCatalogEntry *e, GlintruPin *pin)
{
	int			i;
	bool		hit;

	lock(c, LW_EXCLUSIVE);
	i = find_slot(c, e->id, e->version);
	hit = i >= 0 && c->slots[i].ready;
	if (hit)
		*pin = pin_slot(c, i);
	unlock(c);
	return hit;
}

/*
 * A miss, under build_lock: read the stored file, validate it once, build it
 * straight into a new slot and publish the slot pinned.
 */
static GlintruPin
build_and_pin(ModelCache *c, const GlintruCatalogEntry *e)
{
	bytea	   *w = glintru_catalog_weights(e->id, e->version);
	const uint8 *buf = (const uint8 *) VARDATA_ANY(w);
	size_t		len = VARSIZE_ANY_EXHDR(w);
	GlintruConfig cfg;
	bool		has_pop;
	char		err[256];
	volatile int i;

	if (!glintru_safetensors_check(buf, len, &cfg, &has_pop, err, sizeof(err)))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("model \"%s\" in glintru.models is not a valid model file: %s", e->name, err)));
	lock(c, LW_EXCLUSIVE);
	i = reserve_slot(c, e, glintru_model_bytes(&cfg, has_pop));
	unlock(c);
	PG_TRY();
	{
		glintru_model_build(buf, len, slot_address(&c->slots[i]));
	}
	PG_CATCH();
	{
		lock(c, LW_EXCLUSIVE);
		free_slot(c, i);
		unlock(c);
		PG_RE_THROW();
	}
	PG_END_TRY();
	pfree(w);
	return publish_slot(c, i);
}

/* Pin the model version the caller found in the catalogue, building it on a miss. */
GlintruPin
glintru_cache_acquire(const GlintruCatalogEntry *entry)
{
	ModelCache *c;
	GlintruPin	pin;

	register_callbacks();
	c = cache();
	if (try_pin(c, entry, &pin))
		return pin;
	/* miss: build it, one builder at a time so nobody builds twice */
	if (c->build_lock)
		LWLockAcquire(c->build_lock, LW_EXCLUSIVE);
	if (!try_pin(c, entry, &pin))
		pin = build_and_pin(c, entry);
	if (c->build_lock)
		LWLockRelease(c->build_lock);
	return pin;
}

/* Pin the current version of the model of this name. */
GlintruPin
glintru_cache_acquire_name(const char *name)
{
	GlintruCatalogEntry e;

	if (!glintru_catalog_find(name, &e))
		glintru_catalog_no_such_model(name);
	return glintru_cache_acquire(&e);
}

/*
 * A load: build the version it just wrote (a file glintru_model_check()
 * accepted, configuration cfg) once, straight into a slot of the cache that
 * stays this transaction's until it commits (see the header), and pin it.
 * When the cache cannot hold it the model is built in private memory for
 * the load alone (slot -1) and the first use builds it as after a restart.
 */
GlintruPin
glintru_cache_install(const GlintruCatalogEntry *e, const uint8 *buf, size_t len,
					  const GlintruConfig *cfg, bool has_pop)
{
	Size		bytes = glintru_model_bytes(cfg, has_pop);
	ModelCache *c;
	int			i;
	GlintruPin	pin;

	register_callbacks();
	c = cache();
	lock(c, LW_EXCLUSIVE);
	i = find_slot(c, e->id, e->version) < 0 ? try_reserve(c, e, bytes) : -1;
	if (i >= 0)
	{
		/* from here an abort of this (sub)transaction frees the slot, an ERROR below included */
		c->slots[i].pending_pid = MyProcPid;
		pending_subxact[i] = GetCurrentSubTransactionId();
	}
	unlock(c);
	pin.slot = i;
	if (i < 0)
	{
		pin.model = glintru_model_build(buf, len, palloc_extended(bytes, MCXT_ALLOC_HUGE));
		return pin;
	}
	glintru_model_build(buf, len, slot_address(&c->slots[i]));
	return publish_slot(c, i);
}

/* Release a pin (a released or empty pin is ignored; a private build is freed). */
void
glintru_cache_release(GlintruPin *pin)
{
	ModelCache *c;

	if (pin->model == NULL)
		return;
	if (pin->slot < 0)
	{
		pfree((void *) pin->model);
		pin->model = NULL;
		return;
	}
	c = shared_mode ? shared_cache : &private_cache;
	if (my_pins[pin->slot] > 0)
	{
		lock(c, LW_EXCLUSIVE);
		c->slots[pin->slot].refcount--;
		unlock(c);
		my_pins[pin->slot]--;
	}
	pin->model = NULL;
}

/* Run fn with the pinned model and release the pin however fn ends (an ERROR included). */
void
glintru_cache_with_pin(GlintruPin pin, GlintruPinnedFn fn, void *arg)
{
	PG_TRY();
	{
		fn(pin.model, arg);
	}
	PG_CATCH();
	{
		glintru_cache_release(&pin);
		PG_RE_THROW();
	}
	PG_END_TRY();
	glintru_cache_release(&pin);
}

/* ---- what is cached ---- */

/* Is (id, version) of this database built in the cache? */
bool
glintru_cache_contains(int32 id, int64 version)
{
	ModelCache *c = cache();
	int			i;
	bool		ready;

	lock(c, LW_SHARED);
	i = find_slot(c, id, version);
	ready = i >= 0 && c->slots[i].ready;
	unlock(c);
	return ready;
}

/* The budget (-1 in private mode), the bytes in use and the number of built models. */
void
glintru_cache_usage(int64 *budget, int64 *used, int *models)
{
	ModelCache *c = cache();

	lock(c, LW_SHARED);
	*budget = shared_mode ? (int64) c->budget : -1;
	*used = (int64) c->used;
	*models = 0;
	for (int i = 0; i < CACHE_SLOTS; i++)
		if (c->slots[i].id != 0 && c->slots[i].ready)
			(*models)++;
	unlock(c);
}
