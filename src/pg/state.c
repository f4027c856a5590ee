/*
 * state.c — rows of glintru.user_state: one user's incremental state per
 * attachment (forward.h: the window's rows and the committed GRU state, in
 * a blob of one fixed size per model, its changing bytes last) and the
 * order value of the user's latest event.
 *
 * Concurrency: a writer locks the user's state row (as SELECT … FOR UPDATE
 * would) before it reads and rewrites it, so concurrent inserts for one user
 * serialize and inserts for different users never wait on each other.  The
 * first state of a user is created by a speculative insertion (as INSERT …
 * ON CONFLICT DO NOTHING) and re-read under the lock if another session
 * created it first.  Serving reads a state with an index scan under the
 * statement's snapshot, without a lock.
 *
 * The writes go straight through the table AM (no SPI, no role switch: an
 * application role needs no rights on glintru's tables); the few statements
 * still run through SPI (listing users, deleting all states) run as the
 * owner of glintru.user_state.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#include "cache.h"
#include "catalog.h"
#include "events.h"
#include "schema.h"
#include "state.h"
#include "stats.h"

/* Scratch space and two states for computing states with model m. */
void
glintru_work_init(GlintruWork *w, const GlintruModel *m)
{
	size_t		sb = glintru_state_bytes(&m->config);

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
	/* the statement's usage counters, found here once (glintru_stats_of_attachment) */
	(void) glintru_stats_entry(a->model_id, a->id);
	return glintru_cache_acquire(&e);
}

/* ---- reading a state ---- */

/*
 * The state of a stored blob for model m, in this release's format and
 * aligned: a copy of a valid GST3 blob, or the conversion of release
 * 0.1.0's GST2 (a restored 0.1.0 dump, or a row not rewritten since the
 * update; writers then write GST3); NULL if it is neither (the writers
 * rebuild the user from the table).
 */
GlintruState *
glintru_state_of_blob(const GlintruModel *m, const bytea *b)
{
	size_t		sb = glintru_state_bytes(&m->config);
	size_t		len;
	GlintruState *s;

	if (b == NULL)
		return NULL;
	len = VARSIZE_ANY_EXHDR(b);
	s = palloc(sb);
	if (len == sb)
	{
		memcpy(s, VARDATA_ANY(b), sb);
		if (glintru_state_valid(m, s, sb))
			return s;
	}
	if (glintru_state_from_v2(m, VARDATA_ANY(b), len, s))
		return s;
	pfree(s);
	return NULL;
}

/*
 * The column number of the state in glintru.user_state: this release's, or
 * 4 in release 0.1.0's (attachment_id, user_id, last_order text, state),
 * which serving reads until ALTER EXTENSION glintru UPDATE (writers refuse
 * it: check_state_columns).
 */
static AttrNumber
stored_state_attnum(TupleDesc desc)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && att->atttypid == BYTEAOID && strcmp(NameStr(att->attname), "state") == 0)
			return att->attnum;
	}
	elog(ERROR, "glintru.user_state has no state column");
}

/* The stored state of one user, read without locking (serving path); NULL if none. */
bytea *
glintru_state_fetch(int32 attachment_id, int64 user_id)
{
	Relation	rel = table_open(glintru_catalog_relid(GLINTRU_USER_STATE), AccessShareLock);
	AttrNumber	state_att = stored_state_attnum(RelationGetDescr(rel));
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
		Datum		d = heap_getattr(tup, state_att, RelationGetDescr(rel), &isnull);

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

/* ---- locked reads and writes, straight through the table AM ---- */

/*
 * The trigger reads, locks and rewrites one state row per user and event
 * batch.  Through SPI each of those was a plan execution with a role switch
 * and a GUC nest level; here they are the calls PostgreSQL's executor makes
 * for SELECT … FOR UPDATE, UPDATE and INSERT … ON CONFLICT DO NOTHING: an
 * index lookup with a dirty snapshot (which sees rows of transactions in
 * progress, so that we wait for them), table_tuple_lock on the latest
 * version, table_tuple_update (HOT when the page has room, index entries
 * otherwise), and a speculative insertion for a user's first state, so that
 * two sessions creating the same user's state never both succeed.  Row
 * locks, MVCC, WAL and HOT are the table AM's, so standbys replay it as any
 * update.  No permission check is involved: glintru.user_state is the
 * extension's own table and these calls are the trusted path to it.
 */

/*
 * The library writes rows by column number: refuse a glintru.user_state of
 * another release (the library was installed, ALTER EXTENSION … UPDATE not
 * yet run), rather than write into the wrong columns.
 */
static void
check_state_columns(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);

	if (desc->natts != Natts_glintru_user_state ||
		strcmp(NameStr(TupleDescAttr(desc, Anum_glintru_user_state_state - 1)->attname), "state") != 0 ||
		TupleDescAttr(desc, Anum_glintru_user_state_last_order - 1)->atttypid != BYTEAOID)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("glintru's tables are those of an older version of the extension"),
				 errhint("Run ALTER EXTENSION glintru UPDATE.")));
}

/* Refuse to go on with glintru's tables of an older release, before anything is written (attach). */
void
glintru_state_check_release(void)
{
	Relation	rel = table_open(glintru_catalog_relid(GLINTRU_USER_STATE), AccessShareLock);

	check_state_columns(rel);
	table_close(rel, AccessShareLock);
}

/* Open glintru.user_state and its indexes for the writes of one statement. */
void
glintru_state_open(GlintruStateRel *sr)
{
	List	   *indexes;
	ListCell   *lc;
	int			i = 0;
	Oid			pkey = glintru_catalog_relid(GLINTRU_USER_STATE_PKEY);

	sr->rel = table_open(glintru_catalog_relid(GLINTRU_USER_STATE), RowExclusiveLock);
	check_state_columns(sr->rel);
	sr->pkey = NULL;
	indexes = RelationGetIndexList(sr->rel);
	sr->n_indexes = list_length(indexes);
	sr->indexes = palloc(sizeof(Relation) * Max(sr->n_indexes, 1));
	sr->index_info = palloc(sizeof(IndexInfo *) * Max(sr->n_indexes, 1));
	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), RowExclusiveLock);
		IndexInfo  *ii = BuildIndexInfo(idx);

		/* an expression or partial index would need an executor state to maintain */
		if (ii->ii_Expressions != NIL || ii->ii_Predicate != NIL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("index \"%s\" on glintru.user_state is not supported",
							RelationGetRelationName(idx)),
					 errhint("Indexes on glintru.user_state may only be on plain columns.")));
		sr->indexes[i] = idx;
		sr->index_info[i] = ii;
		if (RelationGetRelid(idx) == pkey)
			sr->pkey = idx;
		i++;
	}
	list_free(indexes);
	if (sr->pkey == NULL)
		elog(ERROR, "glintru.user_state has no primary key index");
	sr->locked = table_slot_create(sr->rel, NULL);
	sr->out = MakeSingleTupleTableSlot(RelationGetDescr(sr->rel), &TTSOpsVirtual);
}

/* Close what glintru_state_open() opened (locks stay until the transaction ends). */
void
glintru_state_close(GlintruStateRel *sr)
{
	ExecDropSingleTupleTableSlot(sr->locked);
	ExecDropSingleTupleTableSlot(sr->out);
	for (int i = 0; i < sr->n_indexes; i++)
		index_close(sr->indexes[i], NoLock);
	table_close(sr->rel, NoLock);
}

/* Raise the error a REPEATABLE READ transaction gets when a row it writes changed since its snapshot. */
static void pg_attribute_noreturn()
serialization_failure(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not serialize access due to concurrent %s", what)));
}

/*
 * Find the user's row with a dirty snapshot, waiting out any transaction
 * that is inserting, updating or deleting it; false if there is none.
 */
static bool
find_state_row(GlintruStateRel *sr, int32 att_id, int64 user_id, ItemPointer tid)
{
	for (;;)
	{
		SnapshotData dirty;
		ScanKeyData keys[2];
		IndexScanDesc scan;
		bool		found;
		TransactionId xwait;

		InitDirtySnapshot(dirty);
		ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(att_id));
		ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(user_id));
		scan = index_beginscan(sr->rel, sr->pkey, &dirty, 2, 0);
		index_rescan(scan, keys, 2, NULL, 0);
		found = index_getnext_slot(scan, ForwardScanDirection, sr->locked);
		index_endscan(scan);
		if (!found)
		{
			ExecClearTuple(sr->locked);
			return false;
		}
		*tid = sr->locked->tts_tid;
		ExecClearTuple(sr->locked);
		/* a transaction in progress is writing the row: wait for it, then look again */
		xwait = TransactionIdIsValid(dirty.xmin) ? dirty.xmin : dirty.xmax;
		if (!TransactionIdIsValid(xwait))
			return true;
		if (dirty.speculativeToken)
			SpeculativeInsertionWait(dirty.xmin, dirty.speculativeToken);
		else
			XactLockTableWait(xwait, sr->rel, tid, XLTW_Lock);
	}
}

/*
 * Lock the latest version of the row at tid as SELECT … FOR UPDATE would;
 * false if it was deleted meanwhile (READ COMMITTED: look it up again).
 * At REPEATABLE READ and SERIALIZABLE a row changed since the transaction's
 * snapshot is a serialization failure, as it is for SQL.
 */
static bool
lock_state_row(GlintruStateRel *sr, ItemPointer tid)
{
	bool		xact_snapshot = IsolationUsesXactSnapshot();
	TM_FailureData tmfd;
	TM_Result	res;

	res = table_tuple_lock(sr->rel, tid, GetActiveSnapshot(), sr->locked, GetCurrentCommandId(false),
						   LockTupleExclusive, LockWaitBlock,
						   xact_snapshot ? 0 : TUPLE_LOCK_FLAG_FIND_LAST_VERSION, &tmfd);
	switch (res)
	{
		case TM_Ok:
			break;
		case TM_Deleted:
			if (xact_snapshot)
				serialization_failure("delete");
			return false;
		case TM_Updated:
			if (xact_snapshot)
				serialization_failure("update");
			elog(ERROR, "unexpected concurrent update of a glintru.user_state row");
			break;
		default:
			elog(ERROR, "could not lock a glintru.user_state row: table_tuple_lock returned %d", (int) res);
	}
	if (xact_snapshot)
	{
		/* the latest version must be one the transaction's snapshot sees */
		bool		should_free;
		HeapTuple	tup = ExecFetchSlotHeapTuple(sr->locked, false, &should_free);
		TransactionId xmin = HeapTupleHeaderGetXmin(tup->t_data);

		if (!TransactionIdIsCurrentTransactionId(xmin) && XidInMVCCSnapshot(xmin, GetActiveSnapshot()))
			serialization_failure("update");
		if (should_free)
			heap_freetuple(tup);
	}
	*tid = sr->locked->tts_tid;
	return true;
}

/* Lock a user's state row and read it (ls->state NULL if it does not fit model m; GST2 converted). */
void
glintru_state_lock(GlintruStateRel *sr, const GlintruTable *t, const GlintruModel *m, int32 att_id,
				   int64 user_id, GlintruLockedState *ls)
{
	ls->exists = false;
	ls->state = NULL;
	ls->last_null = true;
	while (find_state_row(sr, att_id, user_id, &ls->tid))
	{
		bool		isnull;
		Datum		d;

		if (!lock_state_row(sr, &ls->tid))
			continue;			/* deleted while we waited: look again */
		ls->exists = true;
		d = slot_getattr(sr->locked, Anum_glintru_user_state_last_order, &ls->last_null);
		if (!ls->last_null)
			ls->last_order = glintru_order_from_bytea(&t->order, DatumGetByteaPP(d));
		d = slot_getattr(sr->locked, Anum_glintru_user_state_state, &isnull);
		if (!isnull)
			ls->state = glintru_state_of_blob(m, DatumGetByteaPP(d));
		break;
	}
	/* drop the buffer pin now: the values needed were copied */
	ExecClearTuple(sr->locked);
}

/* Insert index entries for the tuple in sr->out; false if a unique index found a possible conflict. */
static bool
insert_index_entries(GlintruStateRel *sr, bool update, bool speculative)
{
	bool		ok = true;

	for (int i = 0; i < sr->n_indexes; i++)
	{
		Datum		values[INDEX_MAX_KEYS];
		bool		isnull[INDEX_MAX_KEYS];
		Relation	idx = sr->indexes[i];
		IndexUniqueCheck check = !idx->rd_index->indisunique ? UNIQUE_CHECK_NO
			: speculative ? UNIQUE_CHECK_PARTIAL : UNIQUE_CHECK_YES;

		FormIndexDatum(sr->index_info[i], sr->out, NULL, values, isnull);
		if (!index_insert(idx, values, isnull, &sr->out->tts_tid, sr->rel, check, update,
						  sr->index_info[i]))
			ok = false;
	}
	return ok;
}

/*
 * Write (update, or insert if !ls->exists) a user's state; false if an
 * insert found that another session created the state first (the caller
 * locks it and computes again).
 */
bool
glintru_state_write(GlintruStateRel *sr, const GlintruTable *t, int32 att_id, int64 user_id,
					const GlintruLockedState *ls, const GlintruState *s, const GlintruConfig *cfg,
					Datum last_order, bool last_null)
{
	size_t		len = glintru_state_bytes(cfg);
	bytea	   *b = palloc(VARHDRSZ + len);
	TupleTableSlot *out = sr->out;
	bool		lo_null;
	Datum		lo;
	bool		written = true;

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), s, len);
	lo = glintru_order_to_bytea(&t->order, last_order, last_null, &lo_null);
	ExecClearTuple(out);
	out->tts_values[Anum_glintru_user_state_attachment_id - 1] = Int32GetDatum(att_id);
	out->tts_values[Anum_glintru_user_state_user_id - 1] = Int64GetDatum(user_id);
	out->tts_values[Anum_glintru_user_state_last_order - 1] = lo_null ? (Datum) 0 : lo;
	out->tts_values[Anum_glintru_user_state_state - 1] = PointerGetDatum(b);
	memset(out->tts_isnull, 0, sizeof(bool) * out->tts_tupleDescriptor->natts);
	out->tts_isnull[Anum_glintru_user_state_last_order - 1] = lo_null;
	ExecStoreVirtualTuple(out);
	if (ls->exists)
	{
		bool		update_indexes;
		ItemPointerData otid = ls->tid;

		/* the row is locked by us: a concurrent change is impossible */
		simple_table_tuple_update(sr->rel, &otid, out, GetActiveSnapshot(), &update_indexes);
		if (update_indexes)
			(void) insert_index_entries(sr, true, false);
	}
	else
	{
		/* ON CONFLICT DO NOTHING, as the executor does it */
		uint32		token = SpeculativeInsertionLockAcquire(GetCurrentTransactionId());

		table_tuple_insert_speculative(sr->rel, out, GetCurrentCommandId(true), 0, NULL, token);
		written = insert_index_entries(sr, false, true);
		table_tuple_complete_speculative(sr->rel, out, token, written);
		SpeculativeInsertionLockRelease(GetCurrentTransactionId());
	}
	ExecClearTuple(out);
	if (written)
		glintru_stats_add(glintru_stats_of_attachment(att_id), GLINTRU_STAT_STATE_BYTES, VARHDRSZ + len);
	/* later lookups and locks of this statement must see the new version */
	CommandCounterIncrement();
	return written;
}

/* Delete a user's locked state row (the user has no known item left). */
static void
state_delete(GlintruStateRel *sr, const GlintruLockedState *ls)
{
	ItemPointerData tid = ls->tid;

	simple_table_tuple_delete(sr->rel, &tid, GetActiveSnapshot());
	CommandCounterIncrement();
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
	GlintruStateRel *sr;
	const GlintruTable *t;
	GlintruWork *w;
	int32		att_id;
	const GlintruLockedState *ls;	/* the row as locked (exists: update) */
	bool		found;			/* the user had a known item */
	bool		written;		/* the write did not lose an insert race */
} Rebuild;

/*
 * w->a = the state of a history as the table's mode wants it: a full window
 * of a deferred table only records its rows (no model computation; prev's h
 * bytes are kept, so the row's stored bytes change little), else computed.
 */
void
glintru_state_compute(const GlintruTable *t, GlintruWork *w, const int32 *rows, int64 n,
					  const GlintruState *prev)
{
	if (t->deferred && n >= w->m->config.max_seq_len)
		glintru_state_build_stale(w->m, rows, n, prev, w->a);
	else
		glintru_state_build(w->m, rows, n, w->a, w->scratch);
}

/* glintru_for_each_user() callback: build the user's state from its rows and write it. */
static void
write_built_state(void *arg, int64 user_id, const int32 *rows, int64 n, Datum last, bool last_null)
{
	Rebuild    *r = arg;
	GlintruWork *w = r->w;

	r->found = true;
	glintru_state_compute(r->t, w, rows, n, r->ls->state);
	r->written = glintru_state_write(r->sr, r->t, r->att_id, user_id, r->ls, w->a, &w->m->config,
									 last, last_null);
}

/* Rebuild one user's state from the table, under its row lock. */
void
glintru_state_rebuild_user(GlintruStateRel *sr, const GlintruTable *t, GlintruWork *w, int32 att_id,
						   int64 user_id)
{
	glintru_stats_add(glintru_stats_of_attachment(att_id), GLINTRU_STAT_REBUILDS, 1);
	for (int attempt = 0; attempt < 2; attempt++)
	{
		GlintruLockedState ls;
		Rebuild		r = {sr, t, w, att_id, &ls, false, false};

		glintru_state_lock(sr, t, w->m, att_id, user_id, &ls);
		glintru_for_each_user(t, w->m, true, user_id, true, write_built_state, &r);
		if (!r.found)
		{
			if (ls.exists)
				state_delete(sr, &ls);
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
	GlintruStateRel sr;
	GlintruLockedState none = {0};
	Rebuild		r = {&sr, t, &w, att_id, &none, false, false};
	int64		users;

	glintru_work_init(&w, m);
	glintru_state_open(&sr);
	users = glintru_for_each_user(t, m, false, 0, true, write_built_state, &r);
	glintru_state_close(&sr);
	return users;
}
