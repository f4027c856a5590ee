/*
 * module.c — the module's entry point: _PG_init defines glintru's settings
 * and, when glintru is preloaded, registers the shared memory hooks that
 * give the model cache, the training progress and the usage counters their
 * shared memory.  The top of the glue: it calls their set-up, nothing calls it.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/guc.h"

#include <limits.h>

#include "cache.h"
#include "progress.h"
#include "stats.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* glintru.shared_memory_size, in MB: the model cache's budget */
static int	shared_memory_mb = 128;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* shmem_request_hook: the cache's region, the progress slots and the usage counters, with their locks. */
static void
glintru_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	glintru_cache_shmem_request(shared_memory_mb);
	glintru_progress_shmem_request();
	glintru_stats_shmem_request();
}

/* shmem_startup_hook: create or find all three. */
static void
glintru_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	glintru_cache_shmem_startup(shared_memory_mb);
	glintru_progress_shmem_startup();
	glintru_stats_shmem_startup();
}

/* Module load: settings and, when preloading, shared memory. */
void
_PG_init(void)
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
							&shared_memory_mb,
							128, 1, INT_MAX / 2,
							PGC_POSTMASTER, GUC_UNIT_MB,
							NULL, NULL, NULL);
	MarkGUCPrefixReserved("glintru");
	glintru_cache_use_shared_memory();
	glintru_progress_use_shared_memory();
	glintru_stats_use_shared_memory();
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = glintru_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = glintru_shmem_startup;
}
