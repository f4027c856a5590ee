/*
 * refresh.c — glintru_refresh(): brings the deferred states of an attached
 * table (or one user's) up to date.  A table attached with refresh =>
 * 'deferred' only records the items of an insert that slides a full window;
 * its state is then "stale" (the window is current, the GRU state is not),
 * served exactly by computing the window in memory, and made current here,
 * in bulk, when the application has time for it.  On a Citus coordinator a
 * distributed table is refreshed shard by shard on the shards' nodes.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#include "cache.h"
#include "catalog.h"
#include "citus.h"
#include "events.h"
#include "state.h"
#include "stats.h"

/* What a refresh needs and counts. */
typedef struct Refresh
{
	GlintruAttachment *a;
	GlintruTable *t;
	bool		have_user;
	int64		only_user;
	int64		refreshed;
} Refresh;

/* With the model pinned: lock each stale state, compute it, write it back. */
static void
refresh_pinned(const GlintruModel *m, void *arg)
{
	Refresh    *r = arg;
	GlintruWork w;
	GlintruStateRel sr;
	uint64		n;
	int64	   *users = glintru_state_users(r->a->id, r->have_user, r->only_user, &n);
	MemoryContext user_cxt = AllocSetContextCreate(CurrentMemoryContext, "glintru refresh",
												   ALLOCSET_DEFAULT_SIZES);

	glintru_work_init(&w, m);
	glintru_state_open(&sr);
	for (uint64 i = 0; i < n; i++)
	{
		MemoryContext old_cxt = MemoryContextSwitchTo(user_cxt);
		GlintruLockedState ls;

		/* under the row lock: a concurrent insert for this user waits, or is seen */
		glintru_state_lock(&sr, r->t, m, r->a->id, users[i], &ls);
		if (ls.exists && ls.state != NULL && glintru_state_stale(m, ls.state))
		{
			glintru_state_refresh(m, ls.state, w.a, w.scratch);
			(void) glintru_state_write(&sr, r->t, r->a->id, users[i], &ls, w.a, &m->config,
									   ls.last_order, ls.last_null);
			r->refreshed++;
		}
		MemoryContextSwitchTo(old_cxt);
		MemoryContextReset(user_cxt);
		CHECK_FOR_INTERRUPTS();
	}
	glintru_state_close(&sr);
}

/* Refresh one attachment's deferred states (of one user when have_user); how many. */
static int64
refresh_attachment(GlintruAttachment a, bool have_user, int64 only_user)
{
	GlintruTable t;
	Refresh		r;

	/* the lock a writer takes: attach and detach wait for the refresh */
	glintru_table_open(&a, RowExclusiveLock, &t);
	r.a = &a;
	r.t = &t;
	r.have_user = have_user;
	r.only_user = only_user;
	r.refreshed = 0;
	glintru_cache_with_pin(glintru_state_model(&a), refresh_pinned, &r);
	glintru_stats_add(glintru_stats_of_attachment(a.id), GLINTRU_STAT_REFRESHES, (uint64) r.refreshed);
	return r.refreshed;
}

/* A distributed table on the coordinator: each shard (or the user's) refreshed on its node. */
static int64
refresh_distributed(Oid logical_relid, bool have_user, int64 only_user)
{
	List	   *shards = glintru_citus_shards(logical_relid);
	int			only_shard = have_user ? glintru_citus_shard_of(shards, only_user) : -1;
	int64		refreshed = 0;
	ListCell   *lc;

	foreach(lc, shards)
	{
		Oid			types[3] = {INT8OID, REGCLASSOID, INT8OID};
		Datum		args[3];
		bool		isnull;

		if (only_shard >= 0 && foreach_current_index(lc) != only_shard)
			continue;
		args[0] = Int64GetDatum(have_user ? only_user : glintru_citus_route_value(lfirst(lc)));
		args[1] = ObjectIdGetDatum(logical_relid);
		args[2] = Int64GetDatum(only_user);
		glintru_spi_connect();
		glintru_spi_check(SPI_execute_with_args("SELECT * FROM glintru.citus_refresh($1, $2, $3)", 3, types, args,
												have_user ? NULL : "  n", false, 0),
						  SPI_OK_SELECT, "could not refresh a shard");
		if (SPI_processed == 1)
			refreshed += DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		glintru_spi_finish();
	}
	return refreshed;
}

/* SQL glintru_refresh(table, user_id): the number of deferred states brought up to date. */
PG_FUNCTION_INFO_V1(glintru_refresh);
Datum
glintru_refresh(PG_FUNCTION_ARGS)
{
	GlintruAttachment a;
	bool		have_user = !PG_ARGISNULL(1);
	int64		only_user = have_user ? PG_GETARG_INT64(1) : 0;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("interactions must not be null")));
	a = glintru_attachment_resolve(true, PG_GETARG_OID(0));
	if (GLINTRU_ATTACHMENT_IS_LOGICAL(&a))
		PG_RETURN_INT64(refresh_distributed(a.relid, have_user, only_user));
	PG_RETURN_INT64(refresh_attachment(a, have_user, only_user));
}

/* SQL glintru.citus_refresh(route, table, user_id): glintru_refresh of the shard of route, on its node. */
PG_FUNCTION_INFO_V1(glintru_citus_refresh);
Datum
glintru_citus_refresh(PG_FUNCTION_ARGS)
{
	GlintruAttachment a = glintru_attachment_resolve_user(true, PG_GETARG_OID(1), PG_GETARG_INT64(0));

	if (GLINTRU_ATTACHMENT_IS_LOGICAL(&a))
		glintru_citus_not_routed("glintru_refresh");
	PG_RETURN_INT64(refresh_attachment(a, !PG_ARGISNULL(2), PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2)));
}
