/*
 * state.c — rows of glintru.user_state: one user's incremental state per
 * attachment (forward.h: h, G, dense1 of the last two items and the window's
 * rows) and the order value of the user's latest event.
 *
 * Concurrency: a writer locks the user's state row (SELECT … FOR UPDATE)
 * before it reads and rewrites it, so concurrent inserts for one user
 * serialize and inserts for different users never wait on each other.  The
 * first state of a user is created with INSERT … ON CONFLICT DO NOTHING and
 * re-read under the lock if another session created it first.  Serving reads
 * a state with an index scan under the statement's snapshot, without a lock.
 *
 * Rows are read and written as the owner of glintru.user_state, so an
 * application role needs no rights on glintru's tables.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

#include "cache.h"
#include "catalog.h"
#include "events.h"
#include "schema.h"
#include "state.h"

/* Scratch space and two full-size states for computing states with model m. */
void
glintru_work_init(GlintruWork *w, const GlintruModel *m)
{
	size_t		sb = glintru_state_bytes(&m->config, m->config.max_seq_len);

	w->m = m;
	w->scratch = palloc_extended(sizeof(float) * glintru_forward_scratch_floats(&m->config), MCXT_ALLOC_HUGE);
	w->a = palloc(sb);
	w->b = palloc(sb);
}

/* Pin the attachment's model, insisting it is the version the states were built with. */
GlintruPin
glintru_state_model(const GlintruAttachment *a)
{
	GlintruCatalogEntry e;

	if (!glintru_catalog_find_id(a->model_id, &e))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the model of table %s no longer exists", get_rel_name(a->relid))));
	if (e.version != a->model_version)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the state of table %s was built with an older version of model \"%s\"",
						get_rel_name(a->relid), e.name),
				 errhint("Run glintru_attach('%s', '%s') again to rebuild it.", e.name,
						 get_rel_name(a->relid))));
	return glintru_cache_acquire(&e);
}

/* ---- reading without a lock ---- */

/* The stored state of one user, read without locking (serving path); NULL if none. */
bytea *
glintru_state_fetch(int32 attachment_id, int64 user_id)
{
	Relation	rel = table_open(glintru_catalog_relid(GLINTRU_USER_STATE), AccessShareLock);
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tup;
	bytea	   *out = NULL;

	ScanKeyInit(&keys[0], Anum_glintru_user_state_attachment_id, BTEqualStrategyNumber, F_INT4EQ,
				Int32GetDatum(attachment_id));
	ScanKeyInit(&keys[1], Anum_glintru_user_state_user_id, BTEqualStrategyNumber, F_INT8EQ,
				Int64GetDatum(user_id));
	scan = systable_beginscan(rel, glintru_catalog_relid(GLINTRU_USER_STATE_PKEY), true,
							  glintru_catalog_snapshot(), 2, keys);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_glintru_user_state_state, RelationGetDescr(rel), &isnull);

		if (!isnull)
			out = DatumGetByteaPCopy(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return out;
}

/* The users that have a state in an attachment (have_user: only only_user), ordered. */
int64 *
glintru_state_users(int32 attachment_id, bool have_user, int64 only_user, uint64 *n_out)
{
	Oid			types[2] = {INT4OID, INT8OID};
	Datum		args[2] = {Int32GetDatum(attachment_id), Int64GetDatum(only_user)};
	GlintruRoleSwitch rs;
	int64	   *users;
	uint64		n;

	glintru_spi_connect();
	glintru_become_owner_of(glintru_catalog_relid(GLINTRU_USER_STATE), &rs);
	n = glintru_spi_run(have_user
						? "SELECT user_id FROM glintru.user_state WHERE attachment_id OPERATOR(pg_catalog.=) $1 "
						"AND user_id OPERATOR(pg_catalog.=) $2"
						: "SELECT user_id FROM glintru.user_state WHERE attachment_id OPERATOR(pg_catalog.=) $1 "
						"ORDER BY user_id",
						have_user ? 2 : 1, types, args, true, 0, SPI_OK_SELECT,
						"could not read glintru.user_state");
	glintru_restore_role(&rs);
	/* the caller's memory: SPI's goes at SPI_finish */
	users = SPI_palloc(sizeof(int64) * (n > 0 ? n : 1));
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		users[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}
	glintru_spi_finish();
	*n_out = n;
	return users;
}

/* ---- locked reads and writes (the caller is connected to SPI) ---- */

static SPIPlanPtr plan_lock = NULL,
			plan_insert = NULL,
			plan_update = NULL,
			plan_delete = NULL;

/* Prepare a statement and keep its plan for the session. */
static SPIPlanPtr
keep_plan(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

	if (p == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql, SPI_result_code_string(SPI_result));
	glintru_spi_check(SPI_keepplan(p), 0, "SPI_keepplan failed");
	return p;
}

/* Prepare the four statements on state rows, once per session. */
void
glintru_state_prepare(void)
{
	Oid			t4[4] = {INT4OID, INT8OID, BYTEAOID, BYTEAOID};

	if (plan_lock)
		return;

	/*
	 * last_order is a text column: the bytea parameter of the writes below
	 * is stored in bytea's text form (byteaout), so read it back through
	 * byteain; without the cast the recv function would parse the hex text.
	 */
	plan_lock = keep_plan("SELECT last_order::pg_catalog.bytea, state FROM glintru.user_state "
						  "WHERE attachment_id OPERATOR(pg_catalog.=) $1 AND user_id OPERATOR(pg_catalog.=) $2 "
						  "FOR UPDATE", 2, t4);
	plan_insert = keep_plan("INSERT INTO glintru.user_state (attachment_id, user_id, last_order, state) "
							"VALUES ($1, $2, $3, $4) ON CONFLICT (attachment_id, user_id) DO NOTHING", 4, t4);
	plan_update = keep_plan("UPDATE glintru.user_state SET last_order = $3, state = $4 "
							"WHERE attachment_id OPERATOR(pg_catalog.=) $1 AND user_id OPERATOR(pg_catalog.=) $2",
							4, t4);
	plan_delete = keep_plan("DELETE FROM glintru.user_state "
							"WHERE attachment_id OPERATOR(pg_catalog.=) $1 AND user_id OPERATOR(pg_catalog.=) $2",
							2, t4);
}

/*
 * Run one of the plans above as the owner of glintru.user_state, with
 * sequential scans disabled, and check its result code.  The plans are kept
 * for the whole session and the plan cache settles on a generic plan after
 * a few executions; planned while user_state is small (its first statement,
 * a COPY into an empty table) that plan is a sequential scan, and every
 * later lookup of a COPY over thousands of users would then scan all the
 * states written so far.  Every lookup is by the (attachment_id, user_id)
 * key, so the index is the right access path whatever the size.  The
 * setting is undone at once, or by the transaction's abort on an error.
 */
static void
state_execute(SPIPlanPtr plan, Datum *args, const char *nulls, long tcount, int expected,
			  const char *what, int64 user_id)
{
	GlintruRoleSwitch rs;
	int			level;
	int			rc;

	glintru_become_owner_of(glintru_catalog_relid(GLINTRU_USER_STATE), &rs);
	level = NewGUCNestLevel();
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	rc = SPI_execute_plan(plan, args, nulls, false, tcount);
	AtEOXact_GUC(true, level);
	glintru_restore_role(&rs);
	if (rc != expected)
		elog(ERROR, "could not %s the state of user " INT64_FORMAT ": %s", what, user_id,
			 SPI_result_code_string(rc));
}

/* Lock a user's state row and read it (ls->state NULL if it does not fit model m). */
void
glintru_state_lock(const GlintruTable *t, const GlintruModel *m, int32 att_id, int64 user_id,
				   GlintruLockedState *ls)
{
	Datum		args[2] = {Int32GetDatum(att_id), Int64GetDatum(user_id)};

	state_execute(plan_lock, args, NULL, 1, SPI_OK_SELECT, "lock", user_id);
	ls->exists = SPI_processed > 0;
	ls->state = NULL;
	ls->last_null = true;
	if (ls->exists)
	{
		bool		isnull;
		Datum		lo = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &ls->last_null);
		Datum		st = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);

		if (!ls->last_null)
			ls->last_order = glintru_order_from_bytea(&t->order, DatumGetByteaPP(lo));
		if (!isnull)
		{
			bytea	   *b = DatumGetByteaPCopy(st);

			if (glintru_state_valid(m, VARDATA(b), VARSIZE(b) - VARHDRSZ))
				ls->state = (GlintruState *) VARDATA(b);
		}
	}
	/* everything needed was copied; the result set would live until SPI_finish */
	SPI_freetuptable(SPI_tuptable);
}

/* Write (insert or update) a user's state; returns false if an insert lost a race. */
bool
glintru_state_write(const GlintruTable *t, int32 att_id, int64 user_id, bool exists,
					const GlintruState *s, const GlintruConfig *cfg, Datum last_order, bool last_null)
{
	size_t		len = glintru_state_bytes(cfg, s->m);
	bytea	   *b = palloc(VARHDRSZ + len);
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	bool		lo_null;

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), s, len);
	args[0] = Int32GetDatum(att_id);
	args[1] = Int64GetDatum(user_id);
	args[2] = glintru_order_to_bytea(&t->order, last_order, last_null, &lo_null);
	if (lo_null)
		nulls[2] = 'n';
	args[3] = PointerGetDatum(b);
	state_execute(exists ? plan_update : plan_insert, args, nulls, 0,
				  exists ? SPI_OK_UPDATE : SPI_OK_INSERT, "write", user_id);
	return SPI_processed > 0;
}

/* Delete a user's state row (the user has no known item left). */
static void
state_delete(int32 att_id, int64 user_id)
{
	Datum		args[2] = {Int32GetDatum(att_id), Int64GetDatum(user_id)};

	state_execute(plan_delete, args, NULL, 0, SPI_OK_DELETE, "delete", user_id);
}

/* Delete every state of an attachment (TRUNCATE of its table, a new model version). */
void
glintru_state_delete_all(int32 att_id)
{
	Oid			types[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(att_id)};
	GlintruRoleSwitch rs;

	glintru_spi_connect();
	glintru_become_owner_of(glintru_catalog_relid(GLINTRU_USER_STATE), &rs);
	glintru_spi_run("DELETE FROM glintru.user_state WHERE attachment_id OPERATOR(pg_catalog.=) $1",
					1, types, args, false, 0, SPI_OK_DELETE, "could not delete from glintru.user_state");
	glintru_restore_role(&rs);
	glintru_spi_finish();
}

/* ---- states computed from the table ---- */

/* What a rebuild or a backfill writes a user's state with, and what happened. */
typedef struct Rebuild
{
	const GlintruTable *t;
	GlintruWork *w;
	int32		att_id;
	bool		exists;			/* the row is there (update) or not (insert) */
	bool		found;			/* the user had a known item */
	bool		written;		/* the write did not lose an insert race */
} Rebuild;

/* glintru_for_each_user() callback: build the user's state from its rows and write it. */
static void
write_built_state(void *arg, int64 user_id, const int32 *rows, int64 n, Datum last, bool last_null)
{
	Rebuild    *r = arg;
	GlintruWork *w = r->w;

	r->found = true;
	glintru_state_build(w->m, rows, n, w->a, w->scratch);
	r->written = glintru_state_write(r->t, r->att_id, user_id, r->exists, w->a, &w->m->config,
									 last, last_null);
}

/* Rebuild one user's state from the table, under its row lock. */
void
glintru_state_rebuild_user(const GlintruTable *t, GlintruWork *w, int32 att_id, int64 user_id)
{
	for (int attempt = 0; attempt < 2; attempt++)
	{
		GlintruLockedState ls;
		Rebuild		r = {t, w, att_id, false, false, false};

		glintru_state_lock(t, w->m, att_id, user_id, &ls);
		r.exists = ls.exists;
		glintru_for_each_user(t, w->m, true, user_id, true, write_built_state, &r);
		if (!r.found)
		{
			if (ls.exists)
				state_delete(att_id, user_id);
			return;
		}
		if (r.written)
			return;
		/* another session created the state first: lock it and rebuild again */
	}
	elog(ERROR, "could not create the state of user " INT64_FORMAT, user_id);
}

/* Write the state of every user of the table into an attachment with no states; the user count. */
int64
glintru_state_backfill(const GlintruTable *t, const GlintruModel *m, int32 att_id)
{
	GlintruWork w;
	Rebuild		r = {t, &w, att_id, false, false, false};

	glintru_work_init(&w, m);
	glintru_state_prepare();
	return glintru_for_each_user(t, m, false, 0, true, write_built_state, &r);
}
