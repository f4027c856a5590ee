/*
 * trigger.c — glintru_trigger(), the statement-level trigger that keeps each
 * user's state in glintru.user_state exact in the same transaction as the
 * application's writes to an attached interactions table.
 *
 * Events of one statement are grouped by user, so a multi-row INSERT or a
 * COPY writes each user's state once (glintru_state_advance, forward.h):
 * while a user's window is not full a new item costs O(d²); a sliding
 * window is rebuilt once per statement.  An event older than the user's latest, a DELETE, an UPDATE of
 * the user/item/order columns and TRUNCATE rebuild the affected users from
 * the table, so the state always equals a from-scratch computation.
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "utils/datum.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "cache.h"
#include "catalog.h"
#include "events.h"
#include "state.h"
#include "stats.h"

/* One event of a statement (a row of a transition table). */
typedef struct Event
{
	int64		user_id;
	int64		item_id;
	Datum		order;
	bool		order_null;
	int64		seq;			/* position in the statement: ties keep it */
} Event;

/* What every user's update in one firing needs. */
typedef struct Firing
{
	TriggerData *td;
	const GlintruTable *t;
	GlintruWork *w;
	GlintruStateRel *sr;		/* glintru.user_state, opened once per firing */
	int32		att_id;
	MemoryContext user_cxt;		/* reset after each user */
} Firing;

/* Sort order of an INSERT's events: by user, then order, then position. */
static int
event_cmp(const void *x, const void *y, void *arg)
{
	const Event *a = x,
			   *b = y;
	int			c;

	if (a->user_id != b->user_id)
		return a->user_id < b->user_id ? -1 : 1;
	c = glintru_order_cmp(arg, a->order, a->order_null, b->order, b->order_null);
	if (c != 0)
		return c;
	return a->seq < b->seq ? -1 : (a->seq > b->seq);
}

/* Sort order of an UPDATE's or DELETE's rows: by user, item, order (a multiset per user). */
static int
event_item_cmp(const void *x, const void *y, void *arg)
{
	const Event *a = x,
			   *b = y;

	if (a->user_id != b->user_id)
		return a->user_id < b->user_id ? -1 : 1;
	if (a->item_id != b->item_id)
		return a->item_id < b->item_id ? -1 : 1;
	return glintru_order_cmp(arg, a->order, a->order_null, b->order, b->order_null);
}

/* A new user's window: the known item rows of its events, and the index of the last known one. */
static int
known_rows(const GlintruModel *m, const Event *ev, int n_ev, int32 *rows, int *last_known)
{
	int			nk = 0;

	*last_known = -1;
	for (int i = 0; i < n_ev; i++)
	{
		int64		r = glintru_item_row(m, ev[i].item_id);

		if (r > 0)
		{
			rows[nk++] = (int32) r;
			*last_known = i;
		}
	}
	return nk;
}

/*
 * Apply one user's new events (sorted by order) to the state: pushes while
 * the window has room, one rebuild over the final window otherwise; a rebuild
 * from the table when an event is not newer than the user's latest.
 *
 * "Not newer" includes a tie: one statement can insert rows and also update
 * or delete rows (INSERT ... ON CONFLICT DO UPDATE, MERGE, a writable CTE),
 * and its UPDATE/DELETE trigger may fire first and rebuild the user from a
 * table that already holds the inserted rows; the newest of them then ties
 * the stored latest and must not be pushed a second time.
 */
static void
apply_events(const Firing *f, const Event *ev, int n_ev)
{
	GlintruWork *w = f->w;
	const GlintruModel *m = w->m;
	int64		user_id = ev[0].user_id;
	int32	   *rows = palloc(sizeof(int32) * n_ev);
	int			last_known;
	int			nk = known_rows(m, ev, n_ev, rows, &last_known);

	if (nk == 0)
		return;					/* unknown items leave the state unchanged */
	for (int attempt = 0; attempt < 2; attempt++)
	{
		GlintruLockedState ls;

		glintru_state_lock(f->sr, f->t, m, f->att_id, user_id, &ls);
		if (ls.exists && (ls.state == NULL ||
						  glintru_order_cmp(&f->t->order, ev[0].order, ev[0].order_null,
											ls.last_order, ls.last_null) <= 0))
		{
			/* out of order, a tie (or unreadable state): recompute from the table */
			glintru_state_rebuild_user(f->sr, f->t, w, f->att_id, user_id);
			return;
		}
		if (ls.exists)
			glintru_state_advance(m, ls.state, rows, nk, f->t->deferred, w->a, w->scratch);
		else
			glintru_state_compute(f->t, w, rows, nk, NULL);
		if (glintru_state_write(f->sr, f->t, f->att_id, user_id, &ls, w->a, &m->config,
								ev[last_known].order, ev[last_known].order_null))
			return;
		/* another session created the state first: lock it and apply again */
	}
	elog(ERROR, "could not create the state of user " INT64_FORMAT, user_id);
}

/* Read (user, item, order) of every row of a transition table. */
static Event *
read_events(Tuplestorestate *ts, Relation rel, const GlintruTable *t, int *n_out, bool keep_null_items)
{
	TupleTableSlot *slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsMinimalTuple);
	int64		count = tuplestore_tuple_count(ts);
	int			cap,
				n = 0;
	Event	   *ev;

	/* sized once: doubling a COPY's worth of events would copy it ~20 times */
	if (count > (int64) (MaxAllocHugeSize / sizeof(Event)) || count >= INT_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many rows in one statement for the glintru state trigger")));
	cap = Max((int) count, 1);
	ev = palloc_extended(sizeof(Event) * cap, MCXT_ALLOC_HUGE);
	tuplestore_rescan(ts);
	while (tuplestore_gettupleslot(ts, true, false, slot))
	{
		bool		unull,
					inull;
		Datum		u = slot_getattr(slot, t->user_att, &unull);
		Datum		it = slot_getattr(slot, t->item_att, &inull);

		/* rows with a NULL user or item change no state */
		if (unull || (inull && !keep_null_items))
			continue;
		if (n == cap)
		{
			cap *= 2;
			ev = repalloc_huge(ev, sizeof(Event) * cap);
		}
		ev[n].user_id = glintru_integer_value(u, t->user_type);
		ev[n].item_id = inull ? 0 : glintru_integer_value(it, t->item_type);
		ev[n].order = slot_getattr(slot, t->order_att, &ev[n].order_null);
		if (!ev[n].order_null && !t->order.typbyval)
			ev[n].order = datumCopy(ev[n].order, t->order.typbyval, t->order.typlen);
		ev[n].seq = n;
		n++;
	}
	ExecDropSingleTupleTableSlot(slot);
	*n_out = n;
	return ev;
}

/* qsort comparator of user ids. */
static int
int64_cmp(const void *a, const void *b)
{
	int64		x = *(const int64 *) a,
				y = *(const int64 *) b;

	return x < y ? -1 : (x > y);
}

/* Sort ids and drop repeats; the new count. */
static int
sort_unique(int64 *ids, int n)
{
	int			k = 0;

	qsort(ids, n, sizeof(int64), int64_cmp);
	for (int i = 0; i < n; i++)
		if (i == 0 || ids[i] != ids[i - 1])
			ids[k++] = ids[i];
	return k;
}

/* Do two runs of one user's rows (sorted by event_item_cmp) hold the same (item, order) multiset? */
static bool
same_rows(const GlintruOrderKey *k, const Event *a, int na, const Event *b, int nb)
{
	if (na != nb)
		return false;
	for (int j = 0; j < na; j++)
		if (a[j].item_id != b[j].item_id ||
			glintru_order_cmp(k, a[j].order, a[j].order_null, b[j].order, b[j].order_null) != 0)
			return false;
	return true;
}

/* Users of a set of events whose (item, order) rows differ between old and new. */
static int64 *
changed_users(const GlintruTable *t, Event *old, int n_old, Event *new, int n_new, int *n_out)
{
	int64	   *users = palloc(sizeof(int64) * (n_old + n_new + 1));
	int			n = 0;

	for (int i = 0; i < n_old; i++)
		users[n++] = old[i].user_id;
	for (int i = 0; i < n_new; i++)
		users[n++] = new[i].user_id;
	n = sort_unique(users, n);
	/* an UPDATE that left a user's (item, order) multiset alone changes nothing */
	if (old && new)
	{
		int			k = 0,
					io = 0,
					in = 0;

		for (int u = 0; u < n; u++)
		{
			int			so = io,
						sn = in;

			while (io < n_old && old[io].user_id == users[u])
				io++;
			while (in < n_new && new[in].user_id == users[u])
				in++;
			if (!same_rows(&t->order, old + so, io - so, new + sn, in - sn))
				users[k++] = users[u];
		}
		n = k;
	}
	*n_out = n;
	return users;
}

/* An INSERT: apply each user's new events, one user at a time in bounded memory. */
static void
fire_insert(const Firing *f, TriggerData *td)
{
	int			n;
	Event	   *ev = read_events(td->tg_newtable, td->tg_relation, f->t, &n, false);

	glintru_stats_add(glintru_stats_of_attachment(f->att_id), GLINTRU_STAT_TRIGGER_EVENTS, (uint64) n);

	qsort_arg(ev, n, sizeof(Event), event_cmp, (void *) &f->t->order);
	for (int i = 0; i < n;)
	{
		int			j = i;
		MemoryContext old_cxt;

		while (j < n && ev[j].user_id == ev[i].user_id)
			j++;
		old_cxt = MemoryContextSwitchTo(f->user_cxt);
		apply_events(f, ev + i, j - i);
		MemoryContextSwitchTo(old_cxt);
		MemoryContextReset(f->user_cxt);
		i = j;
	}
}

/* A DELETE or an UPDATE: rebuild the users whose rows changed. */
static void
fire_change(const Firing *f, TriggerData *td)
{
	int			n_old = 0,
				n_new = 0,
				n_users;
	Event	   *old = td->tg_oldtable ? read_events(td->tg_oldtable, td->tg_relation, f->t, &n_old, true) : NULL;
	Event	   *new = (TRIGGER_FIRED_BY_UPDATE(td->tg_event) && td->tg_newtable)
		? read_events(td->tg_newtable, td->tg_relation, f->t, &n_new, true) : NULL;
	int64	   *users;

	if (old)
		qsort_arg(old, n_old, sizeof(Event), event_item_cmp, (void *) &f->t->order);
	if (new)
		qsort_arg(new, n_new, sizeof(Event), event_item_cmp, (void *) &f->t->order);
	glintru_stats_add(glintru_stats_of_attachment(f->att_id), GLINTRU_STAT_TRIGGER_EVENTS,
					  (uint64) (n_new > 0 ? n_new : n_old));
	users = changed_users(f->t, old, n_old, new, n_new, &n_users);
	for (int i = 0; i < n_users; i++)
	{
		MemoryContext old_cxt = MemoryContextSwitchTo(f->user_cxt);

		glintru_state_rebuild_user(f->sr, f->t, f->w, f->att_id, users[i]);
		MemoryContextSwitchTo(old_cxt);
		MemoryContextReset(f->user_cxt);
	}
}

/* Dispatch one firing by its event, with the model pinned; arg is the Firing. */
static void
fire(const GlintruModel *m, void *arg)
{
	Firing	   *f = arg;
	GlintruWork w;
	GlintruStateRel sr;

	if (TRIGGER_FIRED_BY_TRUNCATE(f->td->tg_event))
	{
		glintru_state_delete_all(f->att_id);
		return;
	}

	/*
	 * Setup once per statement: the model's working memory, glintru.user_state
	 * and its indexes, and SPI (only rebuilds read the interactions table
	 * through it).  What one user's update allocates (its rows, the state
	 * read and written, the order values) is freed before the next user, so
	 * a COPY that touches thousands of users runs in bounded memory.
	 */
	glintru_spi_connect();
	f->user_cxt = AllocSetContextCreate(CurrentMemoryContext, "glintru user", ALLOCSET_DEFAULT_SIZES);
	f->w = &w;
	f->sr = &sr;
	glintru_work_init(&w, m);
	glintru_state_open(&sr);
	if (TRIGGER_FIRED_BY_INSERT(f->td->tg_event))
		fire_insert(f, f->td);
	else
		fire_change(f, f->td);
	glintru_state_close(&sr);
	glintru_spi_finish();
}

/* SQL glintru_trigger(): AFTER … FOR EACH STATEMENT on an attached table. */
PG_FUNCTION_INFO_V1(glintru_trigger);
Datum
glintru_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	GlintruAttachment a;
	GlintruTable t;
	Firing		f;
	GlintruPin	pin;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) ||
		!TRIGGER_FIRED_AFTER(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("glintru_trigger() must be fired AFTER ... FOR EACH STATEMENT"),
				 errhint("glintru_attach() creates the triggers it needs.")));

	/*
	 * The attachment and its model as last committed, not as the statement's
	 * snapshot shows them: the state rows are read with a new snapshot per
	 * query, and a COPY's snapshot is taken before it waits for its table
	 * lock behind an attach or a model replacement.  The RowExclusiveLock
	 * this statement holds keeps any other from committing until it ends.
	 */
	/*
	 * Never silently: a table whose triggers fire without an attachment
	 * (triggers copied by hand or by Citus onto a shard, an attachment row
	 * deleted) would let its users' states go stale unnoticed.  A detach
	 * drops the triggers under AccessExclusiveLock, so no statement of this
	 * table can see its triggers without the attachment it committed with.
	 */
	if (!glintru_attachment_by_relid_latest(RelationGetRelid(td->tg_relation), &a))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table %s has glintru's trigger but is not attached to a glintru model",
						RelationGetRelationName(td->tg_relation)),
				 errdetail("Writes to it would leave its users' states stale."),
				 errhint("Attach it with glintru_attach(model, table) (on a Citus coordinator, or glintru_citus_sync() "
						 "after moving shards), or drop the trigger %s.", td->tg_trigger->tgname)));
	glintru_table_init(td->tg_relation, &a, &t);
	f.td = td;
	f.t = &t;
	f.att_id = a.id;
	/* the model's version and weights with a snapshot as new as the attachment's */
	PushActiveSnapshot(GetLatestSnapshot());
	pin = glintru_state_model(&a);
	PopActiveSnapshot();
	glintru_cache_with_pin(pin, fire, &f);
	return PointerGetDatum(NULL);
}
