/*
 * live.c — live recommendations: interactions tables attached to a model
 * (glintru_attach / glintru_detach), the per-user state in glintru.user_state
 * kept by statement-level triggers in the same transaction as the
 * application's writes, glintru_recommend / glintru_recommend_batch served
 * from that state, and glintru_verify_state.
 *
 * Events of one statement are grouped by user, so a multi-row INSERT or a
 * COPY writes each user's state once.  While a user's window is not full a
 * new item costs O(d²) (forward.h); a sliding window is rebuilt once per
 * statement.  An event older than the user's latest, a DELETE, an UPDATE of
 * the user/item/order columns and TRUNCATE rebuild the affected users from
 * the table, so the state always equals a from-scratch computation.
 *
 * Concurrency: each user's state row is locked (SELECT … FOR UPDATE) before
 * it is read and rewritten, so concurrent inserts for one user serialize and
 * inserts for different users never wait on each other.  The first state of
 * a user is created with INSERT … ON CONFLICT DO NOTHING and re-read under
 * the lock if another session created it first.
 *
 * Privileges: like PostgreSQL's foreign-key triggers, state rows are read
 * and written as the owner of glintru.user_state and the interactions table
 * is read as its owner, so an application role needs no rights on glintru's
 * tables.  Every identifier in dynamic SQL is quoted and every operator is
 * schema-qualified.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include <math.h>

#include "forward.h"
#include "rank.h"
#include "glintru.h"
#include "kernels.h"

/* attribute numbers of glintru.attachments and glintru.user_state */
#define ATT_ID 1
#define ATT_RELID 2
#define ATT_MODEL_ID 3
#define ATT_MODEL_VERSION 4
#define ATT_USER_COL 5
#define ATT_ITEM_COL 6
#define ATT_ORDER_COL 7
#define ST_ATTACHMENT 1
#define ST_USER 2
#define ST_LAST_ORDER 3
#define ST_STATE 4

typedef struct Attachment
{
	int32		id;
	Oid			relid;
	int32		model_id;
	int64		model_version;
	NameData	user_col;
	NameData	item_col;
	NameData	order_col;
} Attachment;

/* How to compare and store values of the order column. */
typedef struct OrderKey
{
	Oid			typid;
	int16		typlen;
	bool		typbyval;
	int16		intlen;			/* 2, 4 or 8: compare as that signed integer;
								 * 0: call cmp */
	FmgrInfo	cmp;
	Oid			collation;
	Oid			send;
	Oid			recv;
	Oid			ioparam;
} OrderKey;

/* One event of a statement, or one row of a rebuild. */
typedef struct Event
{
	int64		user_id;
	int64		item_id;
	Datum		order;
	bool		order_null;
	int64		seq;			/* position in the statement: ties keep it */
} Event;

/* ---- catalogue access ---- */

static Snapshot
current_snapshot(void)
{
	return ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot();
}

static void
attachment_from_tuple(HeapTuple tup, TupleDesc desc, Attachment *a)
{
	bool		isnull;

	a->id = DatumGetInt32(heap_getattr(tup, ATT_ID, desc, &isnull));
	a->relid = DatumGetObjectId(heap_getattr(tup, ATT_RELID, desc, &isnull));
	a->model_id = DatumGetInt32(heap_getattr(tup, ATT_MODEL_ID, desc, &isnull));
	a->model_version = DatumGetInt64(heap_getattr(tup, ATT_MODEL_VERSION, desc, &isnull));
	a->user_col = *DatumGetName(heap_getattr(tup, ATT_USER_COL, desc, &isnull));
	a->item_col = *DatumGetName(heap_getattr(tup, ATT_ITEM_COL, desc, &isnull));
	a->order_col = *DatumGetName(heap_getattr(tup, ATT_ORDER_COL, desc, &isnull));
}

static bool
attachment_by_relid(Oid relid, Attachment *a)
{
	Relation	rel = table_open(glintru_catalog_relid("attachments"), AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	ScanKeyInit(&key, ATT_RELID, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, glintru_catalog_relid("attachments_relid_key"), true,
							  current_snapshot(), 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		attachment_from_tuple(tup, RelationGetDescr(rel), a);
		found = true;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/* All attachments (for the "which table?" question). */
static List *
attachments_all(void)
{
	Relation	rel = table_open(glintru_catalog_relid("attachments"), AccessShareLock);
	SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, current_snapshot(), 0, NULL);
	HeapTuple	tup;
	List	   *out = NIL;

	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Attachment *a = palloc(sizeof(Attachment));

		attachment_from_tuple(tup, RelationGetDescr(rel), a);
		out = lappend(out, a);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return out;
}

/* The attachment a recommend call means: the given table, or the only one. */
static Attachment
resolve_attachment(bool have_relid, Oid relid)
{
	Attachment	a;

	if (have_relid)
	{
		if (!attachment_by_relid(relid, &a))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("table %s is not attached to a glintru model", get_rel_name(relid) ? get_rel_name(relid) : "(unknown)"),
					 errhint("Attach it with glintru_attach(model, table).")));
		return a;
	}
	{
		List	   *all = attachments_all();
		ListCell   *lc;
		StringInfoData names;

		if (list_length(all) == 1)
			return *(Attachment *) linitial(all);
		if (all == NIL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("no interactions table is attached to a glintru model"),
					 errhint("Attach one with glintru_attach(model, table).")));
		initStringInfo(&names);
		foreach(lc, all)
		{
			Attachment *x = lfirst(lc);
			char	   *relname = get_rel_name(x->relid);

			appendStringInfo(&names, "%s%s", names.len ? ", " : "",
							 relname ? quote_identifier(relname) : "(dropped table)");
		}
		ereport(ERROR,
				(errcode(ERRCODE_AMBIGUOUS_PARAMETER),
				 errmsg("more than one interactions table is attached: %s", names.data),
				 errhint("Pass interactions => 'table' to choose one.")));
	}
	return a;					/* not reached */
}

/* The stored state of one user, read without locking (serving path). */
static bytea *
state_fetch(int32 attachment_id, int64 user_id)
{
	Relation	rel = table_open(glintru_catalog_relid("user_state"), AccessShareLock);
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tup;
	bytea	   *out = NULL;

	ScanKeyInit(&keys[0], ST_ATTACHMENT, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(attachment_id));
	ScanKeyInit(&keys[1], ST_USER, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(user_id));
	scan = systable_beginscan(rel, glintru_catalog_relid("user_state_pkey"), true,
							  current_snapshot(), 2, keys);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, ST_STATE, RelationGetDescr(rel), &isnull);

		if (!isnull)
			out = DatumGetByteaPCopy(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return out;
}

/* Pin the attachment's model, insisting it is the version the state was built with. */
static GlintruPin
attachment_model(const Attachment *a)
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
	return glintru_model_acquire_entry(&e);
}

/* ---- the order column ---- */

static void
order_key_init(Oid typid, Oid collation, OrderKey *k)
{
	TypeCacheEntry *tc = lookup_type_cache(typid, TYPECACHE_CMP_PROC_FINFO);
	bool		varlena;

	if (!OidIsValid(tc->cmp_proc_finfo.fn_oid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("order column type %s has no ordering", format_type_be(typid)),
				 errhint("Use a timestamp or an increasing integer key.")));
	k->typid = typid;
	k->cmp = tc->cmp_proc_finfo;

	/*
	 * The btree order of these types is the order of their by-value integer
	 * representation (timestamps and dates included: their infinities are
	 * the extreme integers), so the sort of a large statement's events need
	 * not go through the function manager for every comparison.
	 */
	switch (typid)
	{
		case INT2OID:
			k->intlen = 2;
			break;
		case INT4OID:
		case DATEOID:
			k->intlen = 4;
			break;
		case INT8OID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			k->intlen = FLOAT8PASSBYVAL ? 8 : 0;
			break;
		default:
			k->intlen = 0;
			break;
	}
	k->collation = collation;
	get_typlenbyval(typid, &k->typlen, &k->typbyval);
	getTypeBinaryOutputInfo(typid, &k->send, &varlena);
	getTypeBinaryInputInfo(typid, &k->recv, &k->ioparam);
}

/* NULLs sort last, as in ORDER BY order_column */
static int
order_cmp(const OrderKey *k, Datum a, bool anull, Datum b, bool bnull)
{
	if (anull || bnull)
		return anull == bnull ? 0 : (anull ? 1 : -1);
	if (k->intlen != 0)
	{
		/* decode through the type's width: no reliance on sign extension */
		int64		x = k->intlen == 2 ? DatumGetInt16(a) : k->intlen == 4 ? DatumGetInt32(a) : DatumGetInt64(a);
		int64		y = k->intlen == 2 ? DatumGetInt16(b) : k->intlen == 4 ? DatumGetInt32(b) : DatumGetInt64(b);

		return x < y ? -1 : (x > y);
	}
	return DatumGetInt32(FunctionCall2Coll((FmgrInfo *) &k->cmp, k->collation, a, b));
}

/* The order value as stored in user_state.last_order (binary send form). */
static Datum
order_to_bytea(const OrderKey *k, Datum v, bool isnull, bool *out_null)
{
	*out_null = isnull;
	if (isnull)
		return (Datum) 0;
	return PointerGetDatum(OidSendFunctionCall(k->send, v));
}

static Datum
order_from_bytea(const OrderKey *k, bytea *b)
{
	StringInfoData buf;

	buf.data = VARDATA_ANY(b);
	buf.len = VARSIZE_ANY_EXHDR(b);
	buf.maxlen = buf.len;
	buf.cursor = 0;
	return OidReceiveFunctionCall(k->recv, &buf, k->ioparam, -1);
}

/* ---- the interactions table ---- */

typedef struct Table
{
	Oid			relid;
	char	   *qualname;
	AttrNumber	user_att,
				item_att,
				order_att;
	Oid			user_type,
				item_type;
	OrderKey	order;
} Table;

static bool
is_integer_type(Oid t)
{
	return t == INT2OID || t == INT4OID || t == INT8OID;
}

static int64
integer_value(Datum d, Oid t)
{
	return t == INT2OID ? DatumGetInt16(d) : t == INT4OID ? DatumGetInt32(d) : DatumGetInt64(d);
}

static AttrNumber
column(Relation rel, const char *name, const char *role, Oid *type, Oid *collation)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
		{
			*type = att->atttypid;
			if (collation)
				*collation = att->attcollation;
			return att->attnum;
		}
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("column \"%s\" of relation \"%s\" does not exist", name, RelationGetRelationName(rel)),
			 errhint("Name the %s column with %s => 'column'.", role,
					 role[0] == 'u' ? "user_column" : role[0] == 'i' ? "item_column" : "order_column")));
	return InvalidAttrNumber;
}

static void
table_init(Relation rel, const Attachment *a, Table *t)
{
	Oid			otype,
				ocoll;

	t->relid = RelationGetRelid(rel);
	t->qualname = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											 RelationGetRelationName(rel));
	t->user_att = column(rel, NameStr(a->user_col), "user", &t->user_type, NULL);
	t->item_att = column(rel, NameStr(a->item_col), "item", &t->item_type, NULL);
	t->order_att = column(rel, NameStr(a->order_col), "order", &otype, &ocoll);
	if (!is_integer_type(t->user_type))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("user column \"%s\" is of type %s, expected an integer type",
						NameStr(a->user_col), format_type_be(t->user_type))));
	if (!is_integer_type(t->item_type))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("item column \"%s\" is of type %s, expected an integer type",
						NameStr(a->item_col), format_type_be(t->item_type))));
	order_key_init(otype, ocoll, &t->order);
}

static int
event_cmp(const void *x, const void *y, void *arg)
{
	const Event *a = x,
			   *b = y;
	int			c;

	if (a->user_id != b->user_id)
		return a->user_id < b->user_id ? -1 : 1;
	c = order_cmp(arg, a->order, a->order_null, b->order, b->order_null);
	if (c != 0)
		return c;
	return a->seq < b->seq ? -1 : (a->seq > b->seq);
}

/*
 * The known item rows of one user's interactions, in order (ties by
 * physical position), and the order value of the last one.  Runs as the
 * table's owner.
 */
static int32 *
user_history(const Table *t, const GlintruModel *m, int64 user_id, int64 *n_out,
			 Datum *last_order, bool *last_null)
{
	StringInfoData q;
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(user_id)};
	GlintruRoleSwitch	rs;
	int32	   *rows;
	int64		n = 0;
	TupleDesc	relDesc;
	Relation	rel = table_open(t->relid, AccessShareLock);

	relDesc = RelationGetDescr(rel);
	initStringInfo(&q);
	appendStringInfo(&q,
					 "SELECT %s::pg_catalog.int8, %s FROM %s WHERE %s OPERATOR(pg_catalog.=) $1 "
					 "AND %s IS NOT NULL ORDER BY %s, ctid",
					 quote_identifier(NameStr(TupleDescAttr(relDesc, t->item_att - 1)->attname)),
					 quote_identifier(NameStr(TupleDescAttr(relDesc, t->order_att - 1)->attname)),
					 t->qualname,
					 quote_identifier(NameStr(TupleDescAttr(relDesc, t->user_att - 1)->attname)),
					 quote_identifier(NameStr(TupleDescAttr(relDesc, t->item_att - 1)->attname)),
					 quote_identifier(NameStr(TupleDescAttr(relDesc, t->order_att - 1)->attname)));
	table_close(rel, AccessShareLock);

	glintru_become_owner_of(t->relid, &rs);
	if (SPI_execute_with_args(q.data, 1, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the interactions of user " INT64_FORMAT, user_id);
	glintru_restore_role(&rs);
	rows = palloc(sizeof(int32) * (SPI_processed > 0 ? SPI_processed : 1));
	*last_null = true;
	*last_order = (Datum) 0;
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		item = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		int64		row = glintru_item_row(m, item);

		if (row <= 0)
			continue;
		rows[n++] = (int32) row;
		*last_order = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, last_null);
	}
	if (!*last_null)
		*last_order = datumCopy(*last_order, t->order.typbyval, t->order.typlen);
	/* nothing points into the result set any more; it would live until SPI_finish */
	SPI_freetuptable(SPI_tuptable);
	*n_out = n;
	return rows;
}

/* ---- state rows (as the owner of glintru.user_state) ---- */

static SPIPlanPtr plan_lock = NULL,
			plan_insert = NULL,
			plan_update = NULL,
			plan_delete = NULL;

static SPIPlanPtr
keep_plan(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

	if (p == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql, SPI_result_code_string(SPI_result));
	SPI_keepplan(p);
	return p;
}

static void
prepare_state_plans(void)
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
 * sequential scans disabled.  The plans are kept for the whole session and
 * the plan cache settles on a generic plan after a few executions; planned
 * while user_state is small (its first statement, a COPY into an empty
 * table) that plan is a sequential scan, and every later lookup of a COPY
 * over thousands of users would then scan all the states written so far.
 * Every lookup is by the (attachment_id, user_id) key, so the index is the
 * right access path whatever the size.  The setting is undone at once, or by
 * the transaction's abort on an error.
 */
static int
state_execute(SPIPlanPtr plan, Datum *args, const char *nulls, long tcount)
{
	GlintruRoleSwitch	rs;
	int			level;
	int			rc;

	glintru_become_owner_of(glintru_catalog_relid("user_state"), &rs);
	level = NewGUCNestLevel();
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	rc = SPI_execute_plan(plan, args, nulls, false, tcount);
	AtEOXact_GUC(true, level);
	glintru_restore_role(&rs);
	return rc;
}

typedef struct LockedState
{
	bool		exists;
	bool		last_null;
	Datum		last_order;
	GlintruState *state;		/* NULL if none or unusable */
} LockedState;

static void
state_lock(const Table *t, const GlintruModel *m, int32 att_id, int64 user_id, LockedState *ls)
{
	Datum		args[2] = {Int32GetDatum(att_id), Int64GetDatum(user_id)};

	if (state_execute(plan_lock, args, NULL, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not lock the state of user " INT64_FORMAT, user_id);
	ls->exists = SPI_processed > 0;
	ls->state = NULL;
	ls->last_null = true;
	if (ls->exists)
	{
		bool		isnull;
		Datum		lo = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &ls->last_null);
		Datum		st = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);

		if (!ls->last_null)
			ls->last_order = order_from_bytea(&t->order, DatumGetByteaPP(lo));
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
static bool
state_write(const Table *t, int32 att_id, int64 user_id, bool exists, const GlintruState *s,
			const GlintruConfig *cfg, Datum last_order, bool last_null)
{
	size_t		len = glintru_state_bytes(cfg, s->m);
	bytea	   *b = palloc(VARHDRSZ + len);
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	bool		lo_null;
	int			rc;

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), s, len);
	args[0] = Int32GetDatum(att_id);
	args[1] = Int64GetDatum(user_id);
	args[2] = order_to_bytea(&t->order, last_order, last_null, &lo_null);
	if (lo_null)
		nulls[2] = 'n';
	args[3] = PointerGetDatum(b);
	rc = state_execute(exists ? plan_update : plan_insert, args, nulls, 0);
	if (rc != (exists ? SPI_OK_UPDATE : SPI_OK_INSERT))
		elog(ERROR, "could not write the state of user " INT64_FORMAT, user_id);
	return SPI_processed > 0;
}

static void
state_delete(int32 att_id, int64 user_id)
{
	Datum		args[2] = {Int32GetDatum(att_id), Int64GetDatum(user_id)};

	if (state_execute(plan_delete, args, NULL, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete the state of user " INT64_FORMAT, user_id);
}

/* Working memory for one model's forward pass. */
typedef struct Work
{
	const GlintruModel *m;
	float	   *scratch;
	GlintruState *a,
			   *b;				/* two full-size states to ping-pong */
} Work;

static void
work_init(Work *w, const GlintruModel *m)
{
	size_t		sb = glintru_state_bytes(&m->config, m->config.max_seq_len);

	w->m = m;
	w->scratch = palloc_extended(sizeof(float) * glintru_forward_scratch_floats(&m->config), MCXT_ALLOC_HUGE);
	w->a = palloc(sb);
	w->b = palloc(sb);
}

/* Rebuild one user's state from the table (under the row lock). */
static void
rebuild_user(const Table *t, Work *w, int32 att_id, int64 user_id)
{
	LockedState ls;
	int64		n;
	Datum		last;
	bool		last_null;
	int32	   *rows;

	for (int attempt = 0; attempt < 2; attempt++)
	{
		state_lock(t, w->m, att_id, user_id, &ls);
		rows = user_history(t, w->m, user_id, &n, &last, &last_null);
		if (n == 0)
		{
			if (ls.exists)
				state_delete(att_id, user_id);
			return;
		}
		glintru_state_build(w->m, rows, n, w->a, w->scratch);
		if (state_write(t, att_id, user_id, ls.exists, w->a, &w->m->config, last, last_null))
			return;
		/* another session created the state first: lock it and rebuild again */
	}
	elog(ERROR, "could not create the state of user " INT64_FORMAT, user_id);
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
apply_events(const Table *t, Work *w, int32 att_id, const Event *ev, int n_ev)
{
	const GlintruModel *m = w->m;
	const int	L = m->config.max_seq_len;
	int64		user_id = ev[0].user_id;
	int32	   *rows = palloc(sizeof(int32) * n_ev);
	int			nk = 0,
				last_known = -1;

	for (int i = 0; i < n_ev; i++)
	{
		int64		r = glintru_item_row(m, ev[i].item_id);

		if (r > 0)
		{
			rows[nk++] = (int32) r;
			last_known = i;
		}
	}
	if (nk == 0)
		return;					/* unknown items leave the state unchanged */

	for (int attempt = 0; attempt < 2; attempt++)
	{
		LockedState ls;
		GlintruState *s;

		state_lock(t, m, att_id, user_id, &ls);
		if (ls.exists && (ls.state == NULL ||
						  order_cmp(&t->order, ev[0].order, ev[0].order_null, ls.last_order, ls.last_null) <= 0))
		{
			/* out of order, a tie (or unreadable state): recompute from the table */
			rebuild_user(t, w, att_id, user_id);
			return;
		}
		if (!ls.exists)
			glintru_state_build(m, rows, nk, w->a, w->scratch);
		else if (ls.state->m + nk <= L)
		{
			GlintruState *cur = ls.state;

			for (int i = 0; i < nk; i++)
			{
				GlintruState *next = (cur == w->a) ? w->b : w->a;

				glintru_state_push(m, cur, rows[i], next, w->scratch);
				cur = next;
			}
			if (cur != w->a)
				memcpy(w->a, cur, glintru_state_bytes(&m->config, cur->m));
		}
		else
		{
			/* the window slides: one rebuild over its final contents */
			int32	   *win = palloc(sizeof(int32) * L);
			int			keep = L - nk > 0 ? L - nk : 0;
			const int32 *old = glintru_state_rows(ls.state);

			memcpy(win, old + (ls.state->m - keep), sizeof(int32) * keep);
			memcpy(win + keep, rows + (nk - (L - keep)), sizeof(int32) * (L - keep));
			glintru_state_build(m, win, L, w->a, w->scratch);
			pfree(win);
		}
		s = w->a;
		if (state_write(t, att_id, user_id, ls.exists, s, &m->config,
						ev[last_known].order, ev[last_known].order_null))
			return;
	}
	elog(ERROR, "could not create the state of user " INT64_FORMAT, user_id);
}

/* Read (user, item, order) of every row of a transition table. */
static Event *
read_events(Tuplestorestate *ts, Relation rel, const Table *t, int *n_out, bool keep_null_items)
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
		ev[n].user_id = integer_value(u, t->user_type);
		ev[n].item_id = inull ? 0 : integer_value(it, t->item_type);
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

static int
int64_cmp(const void *a, const void *b)
{
	int64		x = *(const int64 *) a,
				y = *(const int64 *) b;

	return x < y ? -1 : (x > y);
}

/* Users of a set of events whose (item, order) rows differ between old and new. */
static int64 *
changed_users(const Table *t, Event *old, int n_old, Event *new, int n_new, int *n_out)
{
	int64	   *users = palloc(sizeof(int64) * (n_old + n_new + 1));
	int			n = 0;

	for (int i = 0; i < n_old; i++)
		users[n++] = old[i].user_id;
	for (int i = 0; i < n_new; i++)
		users[n++] = new[i].user_id;
	qsort(users, n, sizeof(int64), int64_cmp);
	{
		int			k = 0;

		for (int i = 0; i < n; i++)
			if (i == 0 || users[i] != users[i - 1])
				users[k++] = users[i];
		n = k;
	}
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
			bool		same;

			while (io < n_old && old[io].user_id == users[u])
				io++;
			while (in < n_new && new[in].user_id == users[u])
				in++;
			same = (io - so) == (in - sn);
			for (int j = 0; same && j < io - so; j++)
				same = old[so + j].item_id == new[sn + j].item_id &&
					order_cmp(&t->order, old[so + j].order, old[so + j].order_null,
							  new[sn + j].order, new[sn + j].order_null) == 0;
			if (!same)
				users[k++] = users[u];
		}
		n = k;
	}
	*n_out = n;
	return users;
}

static int
event_item_cmp(const void *x, const void *y, void *arg)
{
	const Event *a = x,
			   *b = y;

	if (a->user_id != b->user_id)
		return a->user_id < b->user_id ? -1 : 1;
	if (a->item_id != b->item_id)
		return a->item_id < b->item_id ? -1 : 1;
	return order_cmp(arg, a->order, a->order_null, b->order, b->order_null);
}

PG_FUNCTION_INFO_V1(glintru_trigger);
Datum
glintru_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	Attachment	a;
	Table		t;
	GlintruPin	pin;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) ||
		!TRIGGER_FIRED_AFTER(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("glintru_trigger() must be fired AFTER ... FOR EACH STATEMENT"),
				 errhint("glintru_attach() creates the triggers it needs.")));
	rel = td->tg_relation;
	if (!attachment_by_relid(RelationGetRelid(rel), &a))
		return PointerGetDatum(NULL);	/* left behind by a detach in progress */
	table_init(rel, &a, &t);
	pin = attachment_model(&a);
	PG_TRY();
	{
		Work		w;
		MemoryContext user_cxt,
					old_cxt;

		SPI_connect();

		/*
		 * What one user's update allocates (its rows, the state read and
		 * written, the order values) is freed before the next user, so a
		 * COPY that touches thousands of users runs in bounded memory.
		 */
		user_cxt = AllocSetContextCreate(CurrentMemoryContext, "glintru user", ALLOCSET_DEFAULT_SIZES);
		prepare_state_plans();
		work_init(&w, pin.model);
		if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
		{
			Oid			types[1] = {INT4OID};
			Datum		args[1] = {Int32GetDatum(a.id)};
			GlintruRoleSwitch	rs;

			glintru_become_owner_of(glintru_catalog_relid("user_state"), &rs);
			SPI_execute_with_args("DELETE FROM glintru.user_state WHERE attachment_id OPERATOR(pg_catalog.=) $1",
								  1, types, args, NULL, false, 0);
			glintru_restore_role(&rs);
		}
		else if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
		{
			int			n;
			Event	   *ev = read_events(td->tg_newtable, rel, &t, &n, false);

			qsort_arg(ev, n, sizeof(Event), event_cmp, &t.order);
			for (int i = 0; i < n;)
			{
				int			j = i;

				while (j < n && ev[j].user_id == ev[i].user_id)
					j++;
				old_cxt = MemoryContextSwitchTo(user_cxt);
				apply_events(&t, &w, a.id, ev + i, j - i);
				MemoryContextSwitchTo(old_cxt);
				MemoryContextReset(user_cxt);
				i = j;
			}
		}
		else
		{
			/* DELETE or UPDATE: rebuild the users whose rows changed */
			int			n_old = 0,
						n_new = 0,
						n_users;
			Event	   *old = td->tg_oldtable ? read_events(td->tg_oldtable, rel, &t, &n_old, true) : NULL;
			Event	   *new = (TRIGGER_FIRED_BY_UPDATE(td->tg_event) && td->tg_newtable)
				? read_events(td->tg_newtable, rel, &t, &n_new, true) : NULL;
			int64	   *users;

			if (old)
				qsort_arg(old, n_old, sizeof(Event), event_item_cmp, &t.order);
			if (new)
				qsort_arg(new, n_new, sizeof(Event), event_item_cmp, &t.order);
			users = changed_users(&t, old, n_old, new, n_new, &n_users);
			for (int i = 0; i < n_users; i++)
			{
				old_cxt = MemoryContextSwitchTo(user_cxt);
				rebuild_user(&t, &w, a.id, users[i]);
				MemoryContextSwitchTo(old_cxt);
				MemoryContextReset(user_cxt);
			}
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		glintru_model_release(&pin);
	}
	PG_END_TRY();
	return PointerGetDatum(NULL);
}

/* ---- backfill and verification: one ordered pass over the table ---- */

typedef void (*UserCallback) (void *arg, int64 user_id, const int32 *rows, int64 n,
							  Datum last_order, bool last_null);


/*
 * Stream the table ordered by user, order, ctid and call cb once per user
 * with its known item rows (only_user: just that user).  Runs as the
 * table's owner.  Returns the number of users with at least one known item.
 */
static int64
for_each_user(const Table *t, const Attachment *a, const GlintruModel *m, bool have_user, int64 only_user,
			  bool fresh_snapshot, UserCallback cb, void *arg)
{
	StringInfoData q;
	GlintruRoleSwitch	rs;
	Portal		portal;
	int64		users = 0,
				cur_user = 0,
				n = 0;
	int64		cap = 1024;
	int32	   *rows = palloc(sizeof(int32) * cap);
	Datum		last = (Datum) 0;
	bool		last_null = true,
				have = false;
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(only_user)};
	MemoryContext outer = CurrentMemoryContext;

	initStringInfo(&q);
	appendStringInfo(&q, "SELECT %s::pg_catalog.int8, %s::pg_catalog.int8, %s FROM %s "
					 "WHERE %s IS NOT NULL AND %s IS NOT NULL %s ORDER BY 1, 3, ctid",
					 quote_identifier(NameStr(a->user_col)), quote_identifier(NameStr(a->item_col)),
					 quote_identifier(NameStr(a->order_col)), t->qualname,
					 quote_identifier(NameStr(a->user_col)), quote_identifier(NameStr(a->item_col)),
					 have_user ? psprintf("AND %s OPERATOR(pg_catalog.=) $1", quote_identifier(NameStr(a->user_col))) : "");
	glintru_become_owner_of(t->relid, &rs);
	/*
	 * A backfill reads with a new snapshot (read_only = false; in READ
	 * COMMITTED) so rows committed while attach waited for its table lock are
	 * seen; verification reads under the statement's snapshot, the one its
	 * stored states are read with.
	 */
	portal = SPI_cursor_open_with_args(NULL, q.data, have_user ? 1 : 0, argtypes, args, NULL,
									   !fresh_snapshot, 0);
	for (;;)
	{
		SPITupleTable *tt;
		uint64		nrows;

		SPI_cursor_fetch(portal, true, 10000);
		/* the callback runs SPI too: keep this batch's own pointers */
		tt = SPI_tuptable;
		nrows = SPI_processed;
		if (nrows == 0)
			break;
		for (uint64 i = 0; i < nrows; i++)
		{
			bool		isnull,
						onull;
			int64		u = DatumGetInt64(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull));
			int64		item = DatumGetInt64(SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull));
			Datum		o = SPI_getbinval(tt->vals[i], tt->tupdesc, 3, &onull);
			int64		row = glintru_item_row(m, item);

			if (have && u != cur_user && n > 0)
			{
				MemoryContext old = MemoryContextSwitchTo(outer);

				glintru_restore_role(&rs);
				cb(arg, cur_user, rows, n, last, last_null);
				glintru_become_owner_of(t->relid, &rs);
				MemoryContextSwitchTo(old);
				users++;
				n = 0;
			}
			have = true;
			cur_user = u;
			if (row > 0)
			{
				if (n == cap)
				{
					cap *= 2;
					rows = repalloc_huge(rows, sizeof(int32) * cap);
				}
				rows[n++] = (int32) row;
				if (!last_null && !t->order.typbyval)
					pfree(DatumGetPointer(last));
				last_null = onull;
				if (!onull)
				{
					MemoryContext old = MemoryContextSwitchTo(outer);

					last = datumCopy(o, t->order.typbyval, t->order.typlen);
					MemoryContextSwitchTo(old);
				}
			}
		}
		SPI_freetuptable(tt);
	}
	if (have && n > 0)
	{
		glintru_restore_role(&rs);
		cb(arg, cur_user, rows, n, last, last_null);
		glintru_become_owner_of(t->relid, &rs);
		users++;
	}
	SPI_cursor_close(portal);
	glintru_restore_role(&rs);
	return users;
}

typedef struct Backfill
{
	const Table *t;
	Work	   *w;
	int32		att_id;
} Backfill;

static void
backfill_user(void *arg, int64 user_id, const int32 *rows, int64 n, Datum last, bool last_null)
{
	Backfill   *b = arg;

	glintru_state_build(b->w->m, rows, n, b->w->a, b->w->scratch);
	state_write(b->t, b->att_id, user_id, false, b->w->a, &b->w->m->config, last, last_null);
}

static void
check_owner(Oid relid)
{
	if (!pg_class_ownercheck(relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s", get_rel_name(relid)),
				 errhint("Only the owner of an interactions table can attach or detach it.")));
}

static void
drop_triggers(Oid relid, const char *qualname)
{
	static const char *const names[] = {"glintru_insert", "glintru_update", "glintru_delete", "glintru_truncate"};

	for (int i = 0; i < 4; i++)
	{
		Oid			types[2] = {OIDOID, TEXTOID};
		Datum		args[2] = {ObjectIdGetDatum(relid), CStringGetTextDatum(names[i])};

		/* DROP TRIGGER IF EXISTS would NOTICE about each missing one */
		if (SPI_execute_with_args("SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid OPERATOR(pg_catalog.=) $1 "
								  "AND tgname OPERATOR(pg_catalog.=) $2::pg_catalog.name",
								  2, types, args, NULL, true, 1) == SPI_OK_SELECT && SPI_processed > 0)
			SPI_execute(psprintf("DROP TRIGGER %s ON %s", names[i], qualname), false, 0);
	}
}

/*
 * Rebuilding a user (an out-of-order or tied event, DELETE, UPDATE) reads the
 * user's rows: without an index led by the user column that is a scan of
 * the whole table inside the writing transaction.
 */
static void
warn_without_user_index(Relation rel, AttrNumber user_att, AttrNumber order_att)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	bool		found = false;

	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), AccessShareLock);

		if (idx->rd_index->indnatts > 0 && idx->rd_index->indkey.values[0] == user_att)
			found = true;
		index_close(idx, AccessShareLock);
	}
	if (!found)
		ereport(NOTICE,
				(errmsg("table \"%s\" has no index led by its user column",
						RelationGetRelationName(rel)),
				 errdetail("Rebuilding a user's state after a delete, an update or an out-of-order event then scans the whole table."),
				 errhint("CREATE INDEX ON %s (%s, %s);", quote_identifier(RelationGetRelationName(rel)),
						 quote_identifier(NameStr(TupleDescAttr(RelationGetDescr(rel), user_att - 1)->attname)),
						 quote_identifier(NameStr(TupleDescAttr(RelationGetDescr(rel), order_att - 1)->attname)))));
}

PG_FUNCTION_INFO_V1(glintru_attach);
Datum
glintru_attach(PG_FUNCTION_ARGS)
{
	char	   *model = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			relid = PG_GETARG_OID(1);
	Attachment	a = {0};
	GlintruCatalogEntry e;
	Relation	rel;
	Table		t;
	char		relkind;
	volatile int64 users = 0;
	GlintruPin	pin;

	if (!glintru_catalog_find(model, &e))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" does not exist", model),
				 errhint("glintru_models() lists the loaded models.")));
	relkind = get_rel_relkind(relid);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", get_rel_name(relid)),
				 errhint("Attach the table that holds the interactions.")));
	check_owner(relid);
	a.relid = relid;
	a.model_id = e.id;
	a.model_version = e.version;
	namestrcpy(&a.user_col, NameStr(*PG_GETARG_NAME(2)));
	namestrcpy(&a.item_col, NameStr(*PG_GETARG_NAME(3)));
	namestrcpy(&a.order_col, NameStr(*PG_GETARG_NAME(4)));

	/* block writers while the state is built from the table */
	rel = table_open(relid, ShareRowExclusiveLock);
	table_init(rel, &a, &t);
	warn_without_user_index(rel, t.user_att, t.order_att);
	table_close(rel, NoLock);

	pin = glintru_model_acquire_entry(&e);
	PG_TRY();
	{
		Oid			types[7] = {OIDOID, INT4OID, INT8OID, NAMEOID, NAMEOID, NAMEOID, INT4OID};
		Datum		args[7];
		GlintruRoleSwitch	rs;
		Work		w;
		Backfill	b;
		bool		isnull;
		const char *tg = "CREATE TRIGGER %s AFTER %s ON %s %s FOR EACH STATEMENT EXECUTE FUNCTION %s.glintru_trigger()";
		const char *fnschema = quote_identifier(get_namespace_name(get_func_namespace(fcinfo->flinfo->fn_oid)));

		SPI_connect();
		prepare_state_plans();
		/* re-attaching: the old attachment and its state go */
		drop_triggers(relid, t.qualname);
		args[0] = ObjectIdGetDatum(relid);
		glintru_become_owner_of(glintru_catalog_relid("attachments"), &rs);
		SPI_execute_with_args("DELETE FROM glintru.attachments WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass",
							  1, types, args, NULL, false, 0);
		args[1] = Int32GetDatum(a.model_id);
		args[2] = Int64GetDatum(a.model_version);
		args[3] = NameGetDatum(&a.user_col);
		args[4] = NameGetDatum(&a.item_col);
		args[5] = NameGetDatum(&a.order_col);
		if (SPI_execute_with_args("INSERT INTO glintru.attachments (relid, model_id, model_version, user_column, item_column, order_column) "
								  "VALUES ($1::pg_catalog.regclass, $2, $3, $4, $5, $6) RETURNING id",
								  6, types, args, NULL, false, 0) != SPI_OK_INSERT_RETURNING)
			elog(ERROR, "could not insert into glintru.attachments");
		a.id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		glintru_restore_role(&rs);

		/* the triggers belong to the table, created by its owner (the caller) */
		SPI_execute(psprintf(tg, "glintru_insert", "INSERT", t.qualname, "REFERENCING NEW TABLE AS glintru_new", fnschema), false, 0);
		SPI_execute(psprintf(tg, "glintru_update", "UPDATE", t.qualname,
							 "REFERENCING OLD TABLE AS glintru_old NEW TABLE AS glintru_new", fnschema), false, 0);
		SPI_execute(psprintf(tg, "glintru_delete", "DELETE", t.qualname, "REFERENCING OLD TABLE AS glintru_old", fnschema), false, 0);
		SPI_execute(psprintf(tg, "glintru_truncate", "TRUNCATE", t.qualname, "", fnschema), false, 0);

		work_init(&w, pin.model);
		b.t = &t;
		b.w = &w;
		b.att_id = a.id;
		users = for_each_user(&t, &a, pin.model, false, 0, true, backfill_user, &b);
		SPI_finish();
	}
	PG_FINALLY();
	{
		glintru_model_release(&pin);
	}
	PG_END_TRY();
	PG_RETURN_INT64(users);
}

/*
 * A model was replaced: every table attached to it gets its state rebuilt
 * with the new weights, in the same transaction.
 */
static void
rebuild_attachment(const Attachment *a, const GlintruCatalogEntry *e)
{
	Relation	rel;
	Table		t;
	GlintruPin	pin;

	rel = table_open(a->relid, ShareRowExclusiveLock);
	table_init(rel, a, &t);
	table_close(rel, NoLock);
	pin = glintru_model_acquire_entry(e);
	PG_TRY();
	{
		Oid			types[2] = {INT4OID, INT8OID};
		Datum		args[2] = {Int32GetDatum(a->id), Int64GetDatum(e->version)};
		GlintruRoleSwitch	rs;
		Work		w;
		Backfill	b;

		SPI_connect();
		prepare_state_plans();
		glintru_become_owner_of(glintru_catalog_relid("attachments"), &rs);
		SPI_execute_with_args("UPDATE glintru.attachments SET model_version = $2 WHERE id OPERATOR(pg_catalog.=) $1",
							  2, types, args, NULL, false, 0);
		SPI_execute_with_args("DELETE FROM glintru.user_state WHERE attachment_id OPERATOR(pg_catalog.=) $1",
							  1, types, args, NULL, false, 0);
		glintru_restore_role(&rs);
		work_init(&w, pin.model);
		b.t = &t;
		b.w = &w;
		b.att_id = a->id;
		for_each_user(&t, a, pin.model, false, 0, true, backfill_user, &b);
		SPI_finish();
	}
	PG_FINALLY();
	{
		glintru_model_release(&pin);
	}
	PG_END_TRY();
}

/*
 * A model was replaced: every table attached to it gets its state rebuilt
 * with the new weights, in the same transaction.
 */
void
glintru_rebuild_attachments(int32 model_id)
{
	List	   *all = attachments_all();
	ListCell   *lc;
	GlintruCatalogEntry e;

	if (!glintru_catalog_find_id(model_id, &e))
		return;
	foreach(lc, all)
	{
		Attachment *a = lfirst(lc);

		/* a dropped table's attachment stays until detached: nothing to rebuild */
		if (a->model_id == model_id && SearchSysCacheExists1(RELOID, ObjectIdGetDatum(a->relid)))
			rebuild_attachment(a, &e);
	}
}

PG_FUNCTION_INFO_V1(glintru_detach);
Datum
glintru_detach(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Attachment	a;
	Oid			types[1] = {INT4OID};
	Datum		args[1];
	GlintruRoleSwitch	rs;
	char	   *qualname;

	if (!attachment_by_relid(relid, &a))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table %s is not attached to a glintru model",
						get_rel_name(relid) ? get_rel_name(relid) : psprintf("with OID %u", relid))));
	if (SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
	{
		check_owner(relid);
		qualname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), get_rel_name(relid));
	}
	else
		qualname = NULL;		/* a dropped table: its triggers went with it */
	SPI_connect();
	if (qualname)
		drop_triggers(relid, qualname);
	args[0] = Int32GetDatum(a.id);
	glintru_become_owner_of(glintru_catalog_relid("attachments"), &rs);
	SPI_execute_with_args("DELETE FROM glintru.attachments WHERE id OPERATOR(pg_catalog.=) $1",
						  1, types, args, NULL, false, 0);
	glintru_restore_role(&rs);
	SPI_finish();
	PG_RETURN_VOID();
}

typedef struct Verify
{
	Work	   *w;
	int32		att_id;
	ReturnSetInfo *rsinfo;
	HTAB	   *seen;
	const OrderKey *order;
} Verify;

static void
report(Verify *v, int64 user_id, const char *problem)
{
	Datum		values[2] = {Int64GetDatum(user_id), CStringGetTextDatum(problem)};
	bool		nulls[2] = {false, false};

	tuplestore_putvalues(v->rsinfo->setResult, v->rsinfo->setDesc, values, nulls);
}

static void
verify_user(void *arg, int64 user_id, const int32 *rows, int64 n, Datum last, bool last_null)
{
	Verify	   *v = arg;
	const GlintruModel *m = v->w->m;
	bytea	   *stored = state_fetch(v->att_id, user_id);
	float	   *u1 = palloc(sizeof(float) * m->config.d),
			   *u2 = palloc(sizeof(float) * m->config.d);
	GlintruState *s;
	double		worst = 0;

	(void) last;
	(void) last_null;
	hash_search(v->seen, &user_id, HASH_ENTER, NULL);
	if (stored == NULL)
	{
		report(v, user_id, "missing state");
		return;
	}
	if (!glintru_state_valid(m, VARDATA_ANY(stored), VARSIZE_ANY_EXHDR(stored)))
	{
		report(v, user_id, "unreadable state");
		return;
	}
	s = (GlintruState *) VARDATA_ANY(stored);
	glintru_state_build(m, rows, n, v->w->a, v->w->scratch);
	if (s->m != v->w->a->m ||
		memcmp(glintru_state_rows(s), glintru_state_rows(v->w->a), sizeof(int32) * s->m) != 0)
	{
		report(v, user_id, psprintf("window differs: stored %d items, table %d", s->m, v->w->a->m));
		return;
	}
	glintru_state_user_vector(m, s, u1, v->w->scratch);
	glintru_state_user_vector(m, v->w->a, u2, v->w->scratch);
	for (int i = 0; i < m->config.d; i++)
		worst = Max(worst, fabs((double) u1[i] - u2[i]));
	if (worst > 1e-4)
		report(v, user_id, psprintf("user vector differs by %.3g", worst));
}

PG_FUNCTION_INFO_V1(glintru_verify_state);
Datum
glintru_verify_state(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Attachment	a;
	Table		t;
	Relation	rel;
	GlintruPin	pin;
	bool		have_user = !PG_ARGISNULL(1);
	int64		only_user = have_user ? PG_GETARG_INT64(1) : 0;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("interactions must not be null")));
	a = resolve_attachment(true, PG_GETARG_OID(0));
	InitMaterializedSRF(fcinfo, 0);
	rel = table_open(a.relid, AccessShareLock);
	table_init(rel, &a, &t);
	table_close(rel, NoLock);
	pin = attachment_model(&a);
	PG_TRY();
	{
		Work		w;
		Verify		v;
		HASHCTL		ctl = {0};

		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(int64);
		ctl.hcxt = CurrentMemoryContext;
		SPI_connect();
		work_init(&w, pin.model);
		v.w = &w;
		v.att_id = a.id;
		v.rsinfo = rsinfo;
		v.order = &t.order;
		v.seen = hash_create("glintru verify", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		for_each_user(&t, &a, pin.model, have_user, only_user, false, verify_user, &v);

		/* states of users that have no known item in the table */
		{
			Oid			types[2] = {INT4OID, INT8OID};
			Datum		args[2] = {Int32GetDatum(a.id), Int64GetDatum(only_user)};
			GlintruRoleSwitch	rs;

			glintru_become_owner_of(glintru_catalog_relid("user_state"), &rs);
			SPI_execute_with_args(have_user
								  ? "SELECT user_id FROM glintru.user_state WHERE attachment_id OPERATOR(pg_catalog.=) $1 AND user_id OPERATOR(pg_catalog.=) $2"
								  : "SELECT user_id FROM glintru.user_state WHERE attachment_id OPERATOR(pg_catalog.=) $1 ORDER BY user_id",
								  have_user ? 2 : 1, types, args, NULL, true, 0);
			glintru_restore_role(&rs);
			for (uint64 i = 0; i < SPI_processed; i++)
			{
				bool		isnull;
				int64		u = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));

				if (!hash_search(v.seen, &u, HASH_FIND, NULL))
					report(&v, u, "state without interactions");
			}
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		glintru_model_release(&pin);
	}
	PG_END_TRY();
	return (Datum) 0;
}

/* ---- serving ---- */

/* Rows of the user's window to exclude, and the user vector; false if no state. */
static bool
user_vector_from_state(const GlintruModel *m, int32 att_id, int64 user_id, float *u, float *scratch,
					   uint8 *exclude)
{
	bytea	   *b = state_fetch(att_id, user_id);
	GlintruState *s;

	if (b == NULL || !glintru_state_valid(m, VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b)))
		return false;
	/* copy: the state's floats must be aligned */
	s = palloc(VARSIZE_ANY_EXHDR(b));
	memcpy(s, VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b));
	glintru_state_user_vector(m, s, u, scratch);
	if (exclude)
		for (int i = 0; i < s->m; i++)
			exclude[glintru_state_rows(s)[i]] = 1;
	pfree(s);
	pfree(b);
	return true;
}

static void
check_k(int32 k)
{
	if (k < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("k must be at least 1, not %d", k)));
}

PG_FUNCTION_INFO_V1(glintru_recommend);
Datum
glintru_recommend(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		user_id;
	int32		k;
	bool		exclude_seen;
	Attachment	a;
	GlintruPin	pin;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("user_id, k and exclude_seen must not be null")));
	user_id = PG_GETARG_INT64(0);
	k = PG_GETARG_INT32(1);
	exclude_seen = PG_GETARG_BOOL(2);
	check_k(k);
	a = resolve_attachment(!PG_ARGISNULL(3), PG_ARGISNULL(3) ? InvalidOid : PG_GETARG_OID(3));
	InitMaterializedSRF(fcinfo, 0);
	pin = attachment_model(&a);
	PG_TRY();
	{
		const GlintruModel *m = pin.model;
		int64		n_rows = m->config.n_rows;
		int			kk = (int) Min((int64) k, n_rows - 1);
		GlintruScored *best = palloc(sizeof(GlintruScored) * kk);
		float	   *u = palloc(sizeof(float) * m->config.d);
		float	   *scratch = palloc_extended(sizeof(float) * glintru_forward_scratch_floats(&m->config), MCXT_ALLOC_HUGE);
		uint8	   *exclude = exclude_seen ? palloc_extended(n_rows, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO) : NULL;
		int			nb;

		if (user_vector_from_state(m, a.id, user_id, u, scratch, exclude))
		{
			float	   *scores = palloc_extended(sizeof(float) * n_rows, MCXT_ALLOC_HUGE);

			glintru_score_items(glintru_param(m, GT_ITEM_EMBEDDING), n_rows, m->config.d, u, scores);
			nb = glintru_top_k(scores, n_rows, exclude, kk, best);
		}
		else
			nb = glintru_popular_top_k(m, kk, best);	/* a user with no state */
		for (int i = 0; i < nb; i++)
		{
			Datum		values[2] = {Int64GetDatum(glintru_item_ids(m)[best[i].row]), Float4GetDatum(best[i].score)};
			bool		nulls[2] = {false, false};

			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	PG_FINALLY();
	{
		glintru_model_release(&pin);
	}
	PG_END_TRY();
	return (Datum) 0;
}

/* users scored per GEMM: bounds the score matrix for large catalogues */
#define BATCH_USERS 64

PG_FUNCTION_INFO_V1(glintru_recommend_batch);
Datum
glintru_recommend_batch(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ArrayType  *arr;
	int32		k;
	bool		exclude_seen;
	Attachment	a;
	GlintruPin	pin;
	Datum	   *elems;
	bool	   *nulls;
	int			n_users;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("user_ids, k and exclude_seen must not be null")));
	arr = PG_GETARG_ARRAYTYPE_P(0);
	k = PG_GETARG_INT32(1);
	exclude_seen = PG_GETARG_BOOL(2);
	check_k(k);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("user_ids must be a one-dimensional array")));
	deconstruct_array(arr, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, &nulls, &n_users);
	for (int i = 0; i < n_users; i++)
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("user_ids must not contain nulls")));
	a = resolve_attachment(!PG_ARGISNULL(3), PG_ARGISNULL(3) ? InvalidOid : PG_GETARG_OID(3));
	InitMaterializedSRF(fcinfo, 0);
	pin = attachment_model(&a);
	PG_TRY();
	{
		const GlintruModel *m = pin.model;
		const int	d = m->config.d;
		int64		n_rows = m->config.n_rows;
		int			kk = (int) Min((int64) k, n_rows - 1);
		GlintruScored *best = palloc(sizeof(GlintruScored) * kk);
		float	   *scratch = palloc_extended(sizeof(float) * glintru_forward_scratch_floats(&m->config), MCXT_ALLOC_HUGE);
		float	   *U = palloc(sizeof(float) * d * BATCH_USERS);
		float	   *scores = palloc_extended(sizeof(float) * n_rows * BATCH_USERS, MCXT_ALLOC_HUGE);
		uint8	   *exclude = palloc_extended(n_rows * BATCH_USERS, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
		bool		has[BATCH_USERS];

		for (int b0 = 0; b0 < n_users; b0 += BATCH_USERS)
		{
			int			nb_users = Min(BATCH_USERS, n_users - b0);
			int			packed = 0;
			int			slot_of[BATCH_USERS];

			/* user vectors of the users with state, packed for one GEMM */
			for (int j = 0; j < nb_users; j++)
			{
				has[j] = user_vector_from_state(m, a.id, DatumGetInt64(elems[b0 + j]), U + (size_t) packed * d,
												scratch, exclude_seen ? exclude + (size_t) packed * n_rows : NULL);
				slot_of[j] = has[j] ? packed++ : -1;
			}
			if (packed > 0)
				glintru_linear(U, packed, d, glintru_param(m, GT_ITEM_EMBEDDING), NULL, (int) n_rows, scores);
			for (int j = 0; j < nb_users; j++)
			{
				int			nb;

				if (has[j])
				{
					nb = glintru_top_k(scores + (size_t) slot_of[j] * n_rows, n_rows,
									   exclude_seen ? exclude + (size_t) slot_of[j] * n_rows : NULL, kk, best);
					if (exclude_seen)
						memset(exclude + (size_t) slot_of[j] * n_rows, 0, n_rows);
				}
				else
					nb = glintru_popular_top_k(m, kk, best);
				for (int i = 0; i < nb; i++)
				{
					Datum		values[3] = {elems[b0 + j], Int64GetDatum(glintru_item_ids(m)[best[i].row]),
					Float4GetDatum(best[i].score)};
					bool		vnulls[3] = {false, false, false};

					tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, vnulls);
				}
			}
		}
	}
	PG_FINALLY();
	{
		glintru_model_release(&pin);
	}
	PG_END_TRY();
	return (Datum) 0;
}
