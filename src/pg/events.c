/*
 * events.c — the application's interactions table: finding the attached
 * user, item and order columns, comparing and serialising order values, and
 * streaming the users' histories out of the table in order.
 *
 * The table is read as its owner (like PostgreSQL's foreign-key triggers),
 * with every identifier quoted and every operator schema-qualified.
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "catalog.h"
#include "events.h"

/* rows fetched from the table per round trip of the cursor */
#define FETCH_ROWS 10000

/* ---- the order column ---- */

/* How to compare and (de)serialise values of the order column's type. */
static void
order_key_init(Oid typid, Oid collation, GlintruOrderKey *k)
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

/* Compare two order values; NULLs sort last, as in ORDER BY order_column. */
int
glintru_order_cmp(const GlintruOrderKey *k, Datum a, bool anull, Datum b, bool bnull)
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
Datum
glintru_order_to_bytea(const GlintruOrderKey *k, Datum v, bool isnull, bool *out_null)
{
	*out_null = isnull;
	if (isnull)
		return (Datum) 0;
	return PointerGetDatum(OidSendFunctionCall(k->send, v));
}

/* An order value back from its stored send form. */
Datum
glintru_order_from_bytea(const GlintruOrderKey *k, bytea *b)
{
	StringInfoData buf;

	buf.data = VARDATA_ANY(b);
	buf.len = VARSIZE_ANY_EXHDR(b);
	buf.maxlen = buf.len;
	buf.cursor = 0;
	return OidReceiveFunctionCall(k->recv, &buf, k->ioparam, -1);
}

/* ---- the columns ---- */

/* Is t one of the integer types users and items may be? */
static bool
is_integer_type(Oid t)
{
	return t == INT2OID || t == INT4OID || t == INT8OID;
}

/* A user or item id read from a column of integer type t. */
int64
glintru_integer_value(Datum d, Oid t)
{
	return t == INT2OID ? DatumGetInt16(d) : t == INT4OID ? DatumGetInt32(d) : DatumGetInt64(d);
}

/* The attribute number (and type, collation) of the column named for a role. */
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

/* The user or item column must hold integers. */
static void
check_integer_column(const char *role, const NameData *col, Oid type)
{
	if (!is_integer_type(type))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("%s column \"%s\" is of type %s, expected an integer type",
						role, NameStr(*col), format_type_be(type))));
}

/* Find the attachment's columns in an open interactions table and check their types. */
void
glintru_table_init(Relation rel, const GlintruAttachment *a, GlintruTable *t)
{
	Oid			otype,
				ocoll;

	t->relid = RelationGetRelid(rel);
	t->deferred = a->deferred;
	t->qualname = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											 RelationGetRelationName(rel));
	t->user_att = column(rel, NameStr(a->user_col), "user", &t->user_type, NULL);
	t->item_att = column(rel, NameStr(a->item_col), "item", &t->item_type, NULL);
	t->order_att = column(rel, NameStr(a->order_col), "order", &otype, &ocoll);
	t->user_q = quote_identifier(NameStr(a->user_col));
	t->item_q = quote_identifier(NameStr(a->item_col));
	t->order_q = quote_identifier(NameStr(a->order_col));
	check_integer_column("user", &a->user_col, t->user_type);
	check_integer_column("item", &a->item_col, t->item_type);
	order_key_init(otype, ocoll, &t->order);
}

/* glintru_table_init() on the attachment's table, taking (and keeping) the lock mode. */
void
glintru_table_open(const GlintruAttachment *a, LOCKMODE mode, GlintruTable *t)
{
	Relation	rel = table_open(a->relid, mode);

	glintru_table_init(rel, a, t);
	table_close(rel, NoLock);
}

/* ---- histories ---- */

/* One user's known item rows while the table is streamed, and the last one's order. */
typedef struct UserRows
{
	int64		user_id;
	int32	   *rows;
	int64		n;
	int64		cap;
	Datum		last;
	bool		last_null;
} UserRows;

/* Append a row to the current user (its order value copied into memory cxt). */
static void
user_rows_add(UserRows *u, const GlintruOrderKey *k, int32 row, Datum order, bool onull,
			  MemoryContext cxt)
{
	MemoryContext old;

	if (u->n == u->cap)
	{
		u->cap *= 2;
		u->rows = repalloc_huge(u->rows, sizeof(int32) * u->cap);
	}
	u->rows[u->n++] = row;
	if (!u->last_null && !k->typbyval)
		pfree(DatumGetPointer(u->last));
	u->last_null = onull;
	if (!onull)
	{
		old = MemoryContextSwitchTo(cxt);
		u->last = datumCopy(order, k->typbyval, k->typlen);
		MemoryContextSwitchTo(old);
	}
}

/* Hand the current user to the callback (as the caller's role, in the caller's context). */
static void
user_rows_flush(UserRows *u, GlintruUserCallback cb, void *arg, Oid relid, GlintruRoleSwitch *rs,
				MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);

	glintru_restore_role(rs);
	cb(arg, u->user_id, u->rows, u->n, u->last, u->last_null);
	glintru_become_owner_of(relid, rs);
	MemoryContextSwitchTo(old);
	u->n = 0;
}

/*
 * Stream the table ordered by user, order, ctid and call cb once per user
 * with its known item rows (have_user: just only_user).  Runs as the
 * table's owner.  Returns the number of users with at least one known item.
 */
int64
glintru_for_each_user(const GlintruTable *t, const GlintruModel *m, bool have_user, int64 only_user,
					  bool fresh_snapshot, GlintruUserCallback cb, void *arg)
{
	char	   *q;
	GlintruRoleSwitch rs;
	Portal		portal;
	int64		users = 0;
	bool		have = false;
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(only_user)};
	MemoryContext outer = CurrentMemoryContext;
	UserRows	u = {0};

	u.cap = 1024;
	u.rows = palloc(sizeof(int32) * u.cap);
	u.last_null = true;
	q = psprintf("SELECT %s::pg_catalog.int8, %s::pg_catalog.int8, %s FROM %s "
				 "WHERE %s IS NOT NULL AND %s IS NOT NULL %s ORDER BY 1, 3, ctid",
				 t->user_q, t->item_q, t->order_q, t->qualname, t->user_q, t->item_q,
				 have_user ? psprintf("AND %s OPERATOR(pg_catalog.=) $1", t->user_q) : "");
	glintru_become_owner_of(t->relid, &rs);

	/*
	 * A backfill or a rebuild reads with a new snapshot (read_only = false;
	 * in READ COMMITTED) so rows committed while attach waited for its table
	 * lock are seen; verification reads under the statement's snapshot, the
	 * one its stored states are read with.
	 */
	portal = SPI_cursor_open_with_args(NULL, q, have_user ? 1 : 0, argtypes, args, NULL,
									   !fresh_snapshot, 0);
	for (;;)
	{
		SPITupleTable *tt;
		uint64		nrows;

		SPI_cursor_fetch(portal, true, FETCH_ROWS);
		/* the callback runs SPI too: keep this batch's own pointers */
		tt = SPI_tuptable;
		nrows = SPI_processed;
		if (nrows == 0)
			break;
		for (uint64 i = 0; i < nrows; i++)
		{
			bool		isnull,
						onull;
			int64		user = DatumGetInt64(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull));
			int64		item = DatumGetInt64(SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull));
			Datum		o = SPI_getbinval(tt->vals[i], tt->tupdesc, 3, &onull);
			int64		row = glintru_item_row(m, item);

			if (have && user != u.user_id && u.n > 0)
			{
				user_rows_flush(&u, cb, arg, t->relid, &rs, outer);
				users++;
			}
			have = true;
			u.user_id = user;
			if (row > 0)
				user_rows_add(&u, &t->order, (int32) row, o, onull, outer);
		}
		SPI_freetuptable(tt);
	}
	if (have && u.n > 0)
	{
		user_rows_flush(&u, cb, arg, t->relid, &rs, outer);
		users++;
	}
	SPI_cursor_close(portal);
	glintru_restore_role(&rs);
	return users;
}
