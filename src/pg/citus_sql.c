/*
 * citus_sql.c — the SQL entry points of glintru on Citus:
 * glintru_citus_apply(), the row trigger of the reference table
 * glintru.citus_ops that applies each operation of the coordinator on every
 * node inside the coordinator's distributed transaction (citus.c explains
 * why), and glintru_citus_sync(), which sends every model and every
 * distributed attachment to every node again.
 *
 * On the coordinator a model operation was applied already (by the load or
 * drop that sent it); attach and detach operations act on the shard
 * placements a node holds, which the coordinator normally has none of.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"

#include "attach.h"
#include "catalog.h"
#include "citus.h"
#include "models.h"

/* Column c (1-based) of the operation row as text, NULL if it is NULL. */
static char *
op_text(HeapTuple row, TupleDesc desc, int c)
{
	bool		isnull;
	Datum		d = heap_getattr(row, c, desc, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* The table an operation names (its qualified name as the coordinator sent it), on this node. */
static Oid
op_table(const char *name)
{
	Oid			relid;

	if (name == NULL)
		elog(ERROR, "glintru.citus_ops: an attach or detach without a table");
	relid = DatumGetObjectId(DirectFunctionCall1(to_regclass, CStringGetTextDatum(name)));
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("distributed table %s does not exist on this node", name),
				 errhint("Citus creates it on every node with metadata; check citus_add_node().")));
	return relid;
}

/* Store the coordinator's model on this node, under its id and version (nothing if it has them). */
static void
apply_model(HeapTuple row, TupleDesc desc)
{
	char	   *name = op_text(row, desc, 2);
	bool		isnull;
	GlintruCatalogEntry as = {0},
				here;

	as.id = DatumGetInt32(heap_getattr(row, 3, desc, &isnull));
	as.version = DatumGetInt64(heap_getattr(row, 4, desc, &isnull));
	strlcpy(as.name, name, sizeof(as.name));
	if (glintru_catalog_find(name, &here) && here.id == as.id && here.version == as.version)
		return;
	(void) glintru_models_store_as(name, DatumGetByteaPP(heap_getattr(row, 5, desc, &isnull)), true, &as);
}

/* Attach this node's shard placements of the distributed table as the coordinator asked. */
static void
apply_attach(HeapTuple row, TupleDesc desc, const char *fnschema)
{
	char	   *model = op_text(row, desc, 2);
	Oid			logical = op_table(op_text(row, desc, 6));
	GlintruCatalogEntry e;
	GlintruAttachment tmpl = {0};
	bool		isnull;
	bool		rebuild = DatumGetBool(heap_getattr(row, 11, desc, &isnull));
	char	   *refresh = op_text(row, desc, 10);

	if (!glintru_catalog_lock(model, &e))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" does not exist on this node", model),
				 errhint("Run glintru_citus_sync() on the coordinator: it sends every model to every node.")));
	tmpl.user_col = *DatumGetName(heap_getattr(row, 7, desc, &isnull));
	tmpl.item_col = *DatumGetName(heap_getattr(row, 8, desc, &isnull));
	tmpl.order_col = *DatumGetName(heap_getattr(row, 9, desc, &isnull));
	tmpl.deferred = refresh && strcmp(refresh, "deferred") == 0;
	glintru_attach_shards(logical, &e, &tmpl, rebuild, fnschema);
}

/* One operation on this node (the applying flag set: the loaders accept it on a worker). */
static void
apply(HeapTuple row, TupleDesc desc, bool coordinator, const char *fnschema)
{
	char	   *op = op_text(row, desc, 1);

	if (strcmp(op, "model") == 0)
	{
		if (!coordinator)
			apply_model(row, desc);
	}
	else if (strcmp(op, "drop") == 0)
	{
		GlintruCatalogEntry here;
		char	   *name = op_text(row, desc, 2);

		if (!coordinator && glintru_catalog_find(name, &here))
			(void) glintru_catalog_drop(cstring_to_text(name));
	}
	else if (strcmp(op, "attach") == 0)
		apply_attach(row, desc, fnschema);
	else if (strcmp(op, "detach") == 0)
		glintru_detach_shards(op_table(op_text(row, desc, 6)));
	else
		elog(ERROR, "glintru.citus_ops: unknown operation \"%s\"", op);
}

/* SQL glintru_citus_apply(): AFTER INSERT … FOR EACH ROW on glintru.citus_ops, on every node. */
PG_FUNCTION_INFO_V1(glintru_citus_apply);
Datum
glintru_citus_apply(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	bool		coordinator;
	const char *fnschema;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(td->tg_event) ||
		RelationGetDescr(td->tg_relation)->natts != GLINTRU_CITUS_OPS_NATTS)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("glintru_citus_apply() must be fired AFTER INSERT ... FOR EACH ROW on glintru.citus_ops")));
	coordinator = glintru_citus_coordinator();
	fnschema = quote_identifier(get_namespace_name(get_func_namespace(fcinfo->flinfo->fn_oid)));
	glintru_citus_set_applying(true);
	PG_TRY();
	{
		apply(td->tg_trigtuple, RelationGetDescr(td->tg_relation), coordinator, fnschema);
	}
	PG_FINALLY();
	{
		glintru_citus_set_applying(false);
	}
	PG_END_TRY();
	return PointerGetDatum(td->tg_trigtuple);
}

/*
 * SQL glintru_citus_sync(): on the coordinator, every model and every
 * attached distributed table sent to every node again, in one distributed
 * transaction.  A node that has a model at the same id and version keeps
 * it; shards a node holds and has not attached (moved or split there,
 * a node added) are attached and backfilled, shards it no longer holds are
 * detached.  Run it after citus_add_node, shard moves, splits and
 * rebalancing.
 */
PG_FUNCTION_INFO_V1(glintru_citus_sync);
Datum
glintru_citus_sync(PG_FUNCTION_ARGS)
{
	ListCell   *lc;
	List	   *models = NIL;

	if (!glintru_citus_coordinator())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("glintru_citus_sync() runs on the Citus coordinator")));
	/* a node added since the last operation: give it the operation log first */
	glintru_citus_replicate_ops();
	glintru_spi_connect();
	glintru_spi_check(SPI_execute("SELECT name FROM glintru.models ORDER BY id", true, 0),
					  SPI_OK_SELECT, "could not read glintru.models");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		MemoryContext spi_cxt = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

		models = lappend(models, pstrdup(SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1)));
		MemoryContextSwitchTo(spi_cxt);
	}
	glintru_spi_finish();
	foreach(lc, models)
	{
		GlintruCatalogEntry e;
		GlintruCitusOp op = {.op = "model"};

		if (!glintru_catalog_lock(lfirst(lc), &e))
			continue;			/* dropped meanwhile */
		op.model = e.name;
		op.model_id = e.id;
		op.version = e.version;
		op.weights = glintru_catalog_weights(e.id, e.version);
		glintru_citus_send(&op);
	}
	foreach(lc, glintru_attachments_all())
	{
		GlintruAttachment *a = lfirst(lc);
		GlintruCatalogEntry e;
		GlintruCitusOp op = {.op = "attach", .table = a->relid, .user_col = NameStr(a->user_col),
		.item_col = NameStr(a->item_col), .order_col = NameStr(a->order_col), .deferred = a->deferred,
		.rebuild = false};

		if (!GLINTRU_ATTACHMENT_IS_LOGICAL(a) || !get_rel_name(a->relid) ||
			!glintru_catalog_find_id(a->model_id, &e))
			continue;
		op.model = e.name;
		op.model_id = e.id;
		op.version = e.version;
		glintru_citus_send(&op);
	}
	PG_RETURN_VOID();
}
