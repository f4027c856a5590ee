/*
 * citus.c — glintru's side of Citus, through SQL only: whether Citus is
 * installed in this database and whether this node is its coordinator, the
 * shards of a distributed table (pg_dist_shard, pg_dist_placement), the
 * operation log glintru.citus_ops, the distributed serving functions, and
 * forwarding a serving call to the node of a shard.
 *
 * Why a reference table for the operations: a write to a Citus reference
 * table reaches every node's placement in the coordinator's transaction,
 * under Citus's two-phase commit.  The coordinator inserts one row per
 * operation (a model with its bytes and the coordinator's id and version,
 * a drop, an attach or detach of a distributed table) and deletes it again
 * in the same transaction; the row trigger on each placement
 * (glintru_citus_apply, citus_sql.c) applies it to that node's own glintru
 * tables.  A node that refuses (an error in its trigger) aborts the whole
 * distributed transaction, so every node keeps what it had.  Citus's
 * run_command_on_* functions would not do: they commit on their own
 * connections.
 *
 * No shared state: the only static is a flag of this backend (forwarding).
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"

#include "catalog.h"
#include "citus.h"
#include "schema.h"

/* The operation log's table, in schema glintru (created by the coordinator on first use). */
#define CITUS_OPS "citus_ops"

/* set while this backend forwards a call (glintru_citus_forward): a call that comes back was not routed */
static bool forwarding = false;

/* set while this backend applies an operation of the coordinator (glintru_citus_apply) */
static bool applying = false;

/* Is the citus extension installed in this database? */
bool
glintru_citus_present(void)
{
	return OidIsValid(get_extension_oid("citus", true));
}

/* One boolean from a query without parameters (caller connected to SPI). */
static bool
spi_bool(const char *sql, const char *what)
{
	bool		isnull;
	Datum		d;

	glintru_spi_check(SPI_execute(sql, false, 1), SPI_OK_SELECT, what);
	if (SPI_processed != 1)
		elog(ERROR, "%s: no row", what);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return !isnull && DatumGetBool(d);
}

/* Is Citus installed here and this node its coordinator (citus_is_coordinator())? */
bool
glintru_citus_coordinator(void)
{
	bool		yes;

	if (!glintru_citus_present())
		return false;
	glintru_spi_connect();
	yes = spi_bool("SELECT pg_catalog.citus_is_coordinator()", "could not ask Citus for the coordinator");
	glintru_spi_finish();
	return yes;
}

/* Is Citus installed here and this node one of its workers? */
bool
glintru_citus_worker(void)
{
	return glintru_citus_present() && !glintru_citus_coordinator();
}

/*
 * Is relid a hash-distributed Citus table?  Other Citus tables (reference,
 * single-shard, Citus-local, append) are refused: a user's events must
 * live on one shard, chosen by the user id.
 */
bool
glintru_citus_distributed(Oid relid)
{
	Oid			types[1] = {OIDOID};
	Datum		args[1] = {ObjectIdGetDatum(relid)};
	bool		found = false,
				by_hash = false;

	if (!glintru_citus_present())
		return false;
	glintru_spi_connect();
	if (glintru_spi_run("SELECT partmethod::pg_catalog.text, "
						"pg_catalog.column_to_column_name(logicalrelid, partkey) "
						"FROM pg_catalog.pg_dist_partition WHERE logicalrelid OPERATOR(pg_catalog.=) $1",
						1, types, args, true, 1, SPI_OK_SELECT, "could not read pg_dist_partition") == 1)
	{
		char	   *method = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		found = true;
		by_hash = method && strcmp(method, "h") == 0 &&
			SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2) != NULL;
	}
	glintru_spi_finish();
	if (!found)
		return false;
	if (!by_hash)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("table %s is a Citus table that is not distributed by hash", get_rel_name(relid)),
				 errhint("Attach a table distributed by its user column: create_distributed_table('%s', 'user_id').",
						 get_rel_name(relid))));
	return true;
}

/* The quoted name of the schema of the glintru extension (its functions; caller connected to SPI). */
static char *
extension_schema(void)
{
	glintru_spi_check(SPI_execute("SELECT n.nspname FROM pg_catalog.pg_extension e "
								  "JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace "
								  "WHERE e.extname OPERATOR(pg_catalog.=) 'glintru'", true, 1),
					  SPI_OK_SELECT, "could not read pg_extension");
	if (SPI_processed != 1)
		elog(ERROR, "extension glintru is not installed");
	return pstrdup(quote_identifier(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)));
}

/*
 * Create glintru.citus_ops as a reference table with its row trigger, once
 * (caller connected to SPI, on the coordinator).  Not a table of the
 * extension's script: Citus creates a reference table on every node itself,
 * and one the extension had already made there would collide.  Citus
 * refuses triggers on reference tables unless citus.enable_unsafe_triggers
 * is on; it is on for the CREATE TRIGGER only.
 */
static void
ensure_ops_table(void)
{
	Oid			nsp = get_namespace_oid(GLINTRU_SCHEMA_NAME, false);
	Oid			types[1] = {TEXTOID};
	Datum		args[1];

	if (OidIsValid(get_relname_relid(CITUS_OPS, nsp)))
		return;
	args[0] = CStringGetTextDatum(GetConfigOption("citus.enable_unsafe_triggers", false, false));
	glintru_spi_check(SPI_execute("CREATE TABLE glintru." CITUS_OPS " ("
								  "op text NOT NULL, model text, model_id integer, version bigint, weights bytea, "
								  "interactions text, user_column name, item_column name, order_column name, "
								  "refresh text, rebuild boolean)", false, 0),
					  SPI_OK_UTILITY, "could not create glintru." CITUS_OPS);
	glintru_spi_check(SPI_execute("REVOKE ALL ON glintru." CITUS_OPS " FROM PUBLIC", false, 0),
					  SPI_OK_UTILITY, "could not revoke on glintru." CITUS_OPS);
	glintru_spi_check(SPI_execute("SELECT pg_catalog.create_reference_table('glintru." CITUS_OPS "')", false, 0),
					  SPI_OK_SELECT, "could not make glintru." CITUS_OPS " a reference table");
	glintru_spi_check(SPI_execute("SELECT pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true)",
								  false, 0),
					  SPI_OK_SELECT, "could not set citus.enable_unsafe_triggers");
	glintru_spi_check(SPI_execute(psprintf("CREATE TRIGGER glintru_apply AFTER INSERT ON glintru." CITUS_OPS
										   " FOR EACH ROW EXECUTE FUNCTION %s.glintru_citus_apply()",
										   extension_schema()), false, 0),
					  SPI_OK_UTILITY, "could not create the trigger of glintru." CITUS_OPS);
	/* back to what the session had */
	glintru_spi_run("SELECT pg_catalog.set_config('citus.enable_unsafe_triggers', $1, true)",
					1, types, args, false, 0, SPI_OK_SELECT, "could not reset citus.enable_unsafe_triggers");
}

/* The qualified name of a table, as a text Datum another node resolves. */
static Datum
table_name_datum(Oid relid)
{
	return CStringGetTextDatum(quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
														  get_rel_name(relid)));
}

/*
 * Send an operation to every node in this transaction: insert its row into
 * glintru.citus_ops (each node's trigger applies it there), then delete it
 * again, so that the table stays empty and a node added later copies no
 * stale operation.  On the coordinator only; as the table's owner.
 */
void
glintru_citus_send(const GlintruCitusOp *op)
{
	Oid			types[GLINTRU_CITUS_OPS_NATTS] = {TEXTOID, TEXTOID, INT4OID, INT8OID, BYTEAOID, TEXTOID,
	NAMEOID, NAMEOID, NAMEOID, TEXTOID, BOOLOID};
	Datum		args[GLINTRU_CITUS_OPS_NATTS] = {0};
	char		nulls[GLINTRU_CITUS_OPS_NATTS + 1] = "nnnnnnnnnnn";
	NameData	cols[3];
	GlintruRoleSwitch rs;

	args[0] = CStringGetTextDatum(op->op);
	nulls[0] = ' ';
	if (op->model)
	{
		args[1] = CStringGetTextDatum(op->model);
		args[2] = Int32GetDatum(op->model_id);
		args[3] = Int64GetDatum(op->version);
		nulls[1] = nulls[2] = nulls[3] = ' ';
	}
	if (op->weights)
	{
		args[4] = PointerGetDatum(op->weights);
		nulls[4] = ' ';
	}
	if (OidIsValid(op->table))
	{
		args[5] = table_name_datum(op->table);
		nulls[5] = ' ';
	}
	if (op->user_col)
	{
		namestrcpy(&cols[0], op->user_col);
		namestrcpy(&cols[1], op->item_col);
		namestrcpy(&cols[2], op->order_col);
		args[6] = NameGetDatum(&cols[0]);
		args[7] = NameGetDatum(&cols[1]);
		args[8] = NameGetDatum(&cols[2]);
		args[9] = CStringGetTextDatum(op->deferred ? "deferred" : "eager");
		args[10] = BoolGetDatum(op->rebuild);
		nulls[6] = nulls[7] = nulls[8] = nulls[9] = nulls[10] = ' ';
	}
	glintru_spi_connect();
	ensure_ops_table();
	glintru_become_owner_of(glintru_catalog_relid(CITUS_OPS), &rs);
	glintru_spi_check(SPI_execute_with_args("INSERT INTO glintru." CITUS_OPS " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
											GLINTRU_CITUS_OPS_NATTS, types, args, nulls, false, 0),
					  SPI_OK_INSERT, "could not send an operation to the Citus nodes");
	glintru_spi_check(SPI_execute("DELETE FROM glintru." CITUS_OPS, false, 0),
					  SPI_OK_DELETE, "could not clear glintru." CITUS_OPS);
	glintru_restore_role(&rs);
	glintru_spi_finish();
}

/*
 * Make glintru.citus_ops have a placement on every node (a node added with
 * citus_add_node gets reference tables only when Citus next needs them
 * there): replicate_reference_tables(), on the coordinator.
 */
void
glintru_citus_replicate_ops(void)
{
	glintru_spi_connect();
	ensure_ops_table();
	glintru_spi_check(SPI_execute("SELECT pg_catalog.replicate_reference_tables('block_writes')", false, 0),
					  SPI_OK_SELECT, "could not replicate the reference tables");
	glintru_spi_finish();
}

/* Mark this backend as applying an operation of the coordinator (or no longer). */
void
glintru_citus_set_applying(bool on)
{
	applying = on;
}

/* Is this backend applying an operation of the coordinator? */
bool
glintru_citus_applying(void)
{
	return applying;
}

/*
 * The shards of a distributed table by hash range, as this node's Citus
 * metadata shows them (the coordinator's, or a worker's synced copy): a
 * List of GlintruCitusShard, with the shard's table when this node holds
 * an active placement of it.
 */
List *
glintru_citus_shards(Oid logical_relid)
{
	Oid			types[1] = {OIDOID};
	Datum		args[1] = {ObjectIdGetDatum(logical_relid)};
	List	   *out = NIL;
	MemoryContext caller = CurrentMemoryContext;

	glintru_spi_connect();
	glintru_spi_run("SELECT s.shardid, s.shardminvalue::pg_catalog.int4, s.shardmaxvalue::pg_catalog.int4, "
					"EXISTS (SELECT 1 FROM pg_catalog.pg_dist_placement p "
					"        WHERE p.shardid OPERATOR(pg_catalog.=) s.shardid "
					"        AND p.groupid OPERATOR(pg_catalog.=) (SELECT groupid FROM pg_catalog.pg_dist_local_group)), "
					"pg_catalog.to_regclass(pg_catalog.shard_name(s.logicalrelid, s.shardid))::pg_catalog.oid, "
					"(SELECT p.groupid FROM pg_catalog.pg_dist_placement p "
					" WHERE p.shardid OPERATOR(pg_catalog.=) s.shardid ORDER BY p.groupid LIMIT 1) "
					"FROM pg_catalog.pg_dist_shard s WHERE s.logicalrelid OPERATOR(pg_catalog.=) $1 "
					"ORDER BY 2",
					1, types, args, true, 0, SPI_OK_SELECT, "could not read pg_dist_shard");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	row = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		GlintruCitusShard *s = MemoryContextAllocZero(caller, sizeof(GlintruCitusShard));
		MemoryContext spi_cxt;
		bool		isnull;
		Datum		relid;

		s->shard_id = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
		s->hash_min = DatumGetInt32(SPI_getbinval(row, desc, 2, &isnull));
		s->hash_max = DatumGetInt32(SPI_getbinval(row, desc, 3, &isnull));
		s->local = DatumGetBool(SPI_getbinval(row, desc, 4, &isnull));
		relid = SPI_getbinval(row, desc, 5, &isnull);
		s->relid = isnull ? InvalidOid : DatumGetObjectId(relid);
		s->local &= OidIsValid(s->relid);
		s->group_id = DatumGetInt32(SPI_getbinval(row, desc, 6, &isnull));
		if (isnull)
			s->group_id = -1;
		/* the list outlives SPI's memory: built in the caller's context */
		spi_cxt = MemoryContextSwitchTo(caller);
		out = lappend(out, s);
		MemoryContextSwitchTo(spi_cxt);
	}
	glintru_spi_finish();
	return out;
}

/* The index in shards (glintru_citus_shards) of the shard that holds user_id. */
int
glintru_citus_shard_of(List *shards, int64 user_id)
{
	int32		h = DatumGetInt32(DirectFunctionCall1(hashint8, Int64GetDatum(user_id)));
	ListCell   *lc;

	foreach(lc, shards)
	{
		GlintruCitusShard *s = lfirst(lc);

		if (h >= s->hash_min && h <= s->hash_max)
			return foreach_current_index(lc);
	}
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("no shard holds hash value %d of user " INT64_FORMAT, h, user_id)));
	pg_unreachable();
}

/*
 * A user id that the shard holds, to route a call about the whole shard
 * (verify, refresh) to its node: the smallest non-negative one.  Hash values
 * are uniform, so a shard of 1/n of the range is found in about n tries.
 */
int64
glintru_citus_route_value(const GlintruCitusShard *s)
{
	for (int64 v = 0; v < INT64CONST(100000000); v++)
	{
		int32		h = DatumGetInt32(DirectFunctionCall1(hashint8, Int64GetDatum(v)));

		if (h >= s->hash_min && h <= s->hash_max)
			return v;
	}
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("no user id below 100000000 falls into shard " INT64_FORMAT, s->shard_id)));
	pg_unreachable();
}

/*
 * Make the serving functions distributed functions co-located with the
 * table, their first argument (a user id) the distribution argument, so
 * that Citus runs a call on the node of the user's shard.  force_delegation
 * lets Citus route them inside a transaction block too, on the connection
 * that wrote the shard (the call sees the transaction's own writes).  One
 * co-location group only: a function is distributed once.
 */
void
glintru_citus_distribute_functions(Oid logical_relid, Oid extension_namespace)
{
	const char *nsp = quote_identifier(get_namespace_name(extension_namespace));
	const char *const functions[] = {
		psprintf("%s.glintru_recommend(bigint, integer, boolean, regclass, bigint[], bigint[])", nsp),
		psprintf("%s.glintru_score(bigint, bigint[], regclass)", nsp),
		"glintru.citus_recommend_batch(bigint, bigint[], integer, boolean, regclass, bigint[], bigint[])",
		"glintru.citus_verify_state(bigint, regclass, bigint)",
		"glintru.citus_refresh(bigint, regclass, bigint)",
		"glintru.citus_shard_users(bigint, regclass)",
	};
	Oid			types[2] = {TEXTOID, OIDOID};

	glintru_spi_connect();
	for (int i = 0; i < (int) lengthof(functions); i++)
	{
		Datum		args[2] = {CStringGetTextDatum(functions[i]), ObjectIdGetDatum(logical_relid)};
		bool		isnull;
		Datum		other;

		/* distributed already: with this table's co-location group, or refused */
		if (glintru_spi_run("SELECT o.colocationid IS NOT DISTINCT FROM p.colocationid, "
							"(SELECT pg_catalog.string_agg(d.logicalrelid::pg_catalog.text, ', ') "
							" FROM pg_catalog.pg_dist_partition d "
							" WHERE d.colocationid OPERATOR(pg_catalog.=) o.colocationid) "
							"FROM pg_catalog.pg_dist_object o, pg_catalog.pg_dist_partition p "
							"WHERE o.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass "
							"AND o.objid OPERATOR(pg_catalog.=) $1::pg_catalog.regprocedure::pg_catalog.oid "
							"AND o.colocationid IS NOT NULL "
							"AND p.logicalrelid OPERATOR(pg_catalog.=) $2",
							2, types, args, true, 1, SPI_OK_SELECT, "could not read pg_dist_object") == 1)
		{
			if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
				continue;
			other = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("table %s is not co-located with %s, whose glintru calls are routed already",
							get_rel_name(logical_relid), isnull ? "(dropped tables)" : TextDatumGetCString(other)),
					 errhint("Distribute it with create_distributed_table(..., colocate_with => '%s').",
							 isnull ? "..." : TextDatumGetCString(other))));
		}
		glintru_spi_run("SELECT pg_catalog.create_distributed_function($1::pg_catalog.regprocedure, '$1', "
						"colocate_with => $2::pg_catalog.regclass::pg_catalog.text, force_delegation => true)",
						2, types, args, false, 0, SPI_OK_SELECT, "could not distribute a glintru function");
	}
	glintru_spi_finish();
}

/* The error of a call the coordinator could not hand to the node of the user's shard. */
void
glintru_citus_not_routed(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("%s on a distributed table could not be routed to the node of the shard", what),
			 errdetail("The coordinator holds no state of a distributed table; Citus runs the call on a worker "
					   "when the user id is a constant or a parameter of a plain call."),
			 errhint("Call it as SELECT * FROM %s(...) with a constant user id, or run glintru_citus_sync() "
					 "if the shards moved.", what)));
}

/* SPI_execute_with_args with the forwarding flag set meanwhile (caller connected to SPI). */
static int
run_forwarded(const char *sql, int nargs, Oid *types, Datum *args, const char *nulls)
{
	int			rc = 0;

	forwarding = true;
	PG_TRY();
	{
		rc = SPI_execute_with_args(sql, nargs, types, args, nulls, false, 0);
	}
	PG_FINALLY();
	{
		forwarding = false;
	}
	PG_END_TRY();
	return rc;
}

/*
 * Run a read-only query that Citus routes to a worker (a distributed
 * function call) and append its rows to the caller's tuplestore, whose
 * columns they match.  If the call comes back to this backend (Citus did
 * not route it), it fails with glintru_citus_not_routed() instead of
 * recursing.
 *
 * Outside a transaction block the call is a read: Citus would otherwise
 * treat a query run from inside a function (this one) as part of a
 * multi-statement transaction (citus.function_opens_transaction_block),
 * send the call as a modification and end the statement with a
 * (two-phase) commit on every worker it reached.  Inside a block the
 * default stays: the call then runs on the connection that wrote the
 * shard and sees the transaction's own writes.
 */
void
glintru_citus_forward(const char *sql, int nargs, Oid *types, Datum *args, const char *nulls,
					  ReturnSetInfo *rsinfo, const char *what)
{
	int			rc;
	int			guc_level = -1;

	if (forwarding)
		glintru_citus_not_routed(what);
	if (!IsTransactionBlock())
	{
		guc_level = NewGUCNestLevel();
		(void) set_config_option("citus.function_opens_transaction_block", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	}
	glintru_spi_connect();
	rc = run_forwarded(sql, nargs, types, args, nulls);
	/* an error restores the setting with the transaction's abort */
	if (guc_level >= 0)
		AtEOXact_GUC(true, guc_level);
	glintru_spi_check(rc, SPI_OK_SELECT, what);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		Datum		values[8];
		bool		isnull[8];
		int			n = SPI_tuptable->tupdesc->natts;

		Assert(n <= 8);
		for (int c = 0; c < n; c++)
			values[c] = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, c + 1, &isnull[c]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
	}
	glintru_spi_finish();
}
