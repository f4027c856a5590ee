/*
 * refresh.c — glintru_refresh(): brings the deferred states of an attached
 * table (or one user's) up to date.  A table attached with refresh =>
 * 'deferred' only records the items of an insert that slides a full window;
 * its state is then "stale" (the window is current, the GRU state is not),
 * served exactly by computing the window in memory, and made current here,
 * in bulk, when the application has time for it.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#include "cache.h"
#include "catalog.h"
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

/* SQL glintru_refresh(table, user_id): the number of deferred states brought up to date. */
PG_FUNCTION_INFO_V1(glintru_refresh);
Datum
glintru_refresh(PG_FUNCTION_ARGS)
{
	GlintruAttachment a;
	GlintruTable t;
	Refresh		r;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("interactions must not be null")));
	a = glintru_attachment_resolve(true, PG_GETARG_OID(0));
	/* the lock a writer takes: attach and detach wait for the refresh */
	glintru_table_open(&a, RowExclusiveLock, &t);
	r.a = &a;
	r.t = &t;
	r.have_user = !PG_ARGISNULL(1);
	r.only_user = r.have_user ? PG_GETARG_INT64(1) : 0;
	r.refreshed = 0;
	glintru_cache_with_pin(glintru_state_model(&a), refresh_pinned, &r);
	glintru_stats_add(glintru_stats_of_attachment(a.id), GLINTRU_STAT_REFRESHES, (uint64) r.refreshed);
	PG_RETURN_INT64(r.refreshed);
}
