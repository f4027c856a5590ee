/*
 * attach.c — attaching an interactions table to a model (glintru_attach:
 * the triggers and a backfill of every user's state), detaching it
 * (glintru_detach), and rebuilding the states of attached tables when their
 * model is replaced.
 *
 * A Citus distributed table, attached on the coordinator, is recorded there
 * and sent to every node (citus.c), where each shard placement is attached
 * like a table of its own (glintru_attach_shards) with the shard's id and
 * hash range; glintru_citus_sync() repeats that after shards moved.
 *
 * The triggers belong to the table and are created by its owner (the
 * caller); glintru's rows are written as their owner (catalog.c).  Every
 * identifier in dynamic SQL is quoted and every operator schema-qualified.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "attach.h"
#include "cache.h"
#include "catalog.h"
#include "citus.h"
#include "events.h"
#include "state.h"
#include "stats.h"

/* the statement-level triggers glintru_attach() creates, and what fires them */
static const char *const trigger_names[] = {"glintru_insert", "glintru_update", "glintru_delete", "glintru_truncate"};
static const char *const trigger_events[] = {"INSERT", "UPDATE", "DELETE", "TRUNCATE"};
static const char *const trigger_tables[] = {
	"REFERENCING NEW TABLE AS glintru_new",
	"REFERENCING OLD TABLE AS glintru_old NEW TABLE AS glintru_new",
	"REFERENCING OLD TABLE AS glintru_old",
	""
};

/* Only the owner of a table may attach or detach it. */
static void
check_owner(Oid relid)
{
	if (!pg_class_ownercheck(relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s", get_rel_name(relid)),
				 errhint("Only the owner of an interactions table can attach or detach it.")));
}

/* Drop those of glintru's triggers the table has (caller connected to SPI). */
static void
drop_triggers(Oid relid, const char *qualname)
{
	for (int i = 0; i < (int) lengthof(trigger_names); i++)
	{
		Oid			types[2] = {OIDOID, TEXTOID};
		Datum		args[2] = {ObjectIdGetDatum(relid), CStringGetTextDatum(trigger_names[i])};

		/* DROP TRIGGER IF EXISTS would NOTICE about each missing one */
		if (glintru_spi_run("SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid OPERATOR(pg_catalog.=) $1 "
							"AND tgname OPERATOR(pg_catalog.=) $2::pg_catalog.name",
							2, types, args, true, 1, SPI_OK_SELECT, "could not read pg_trigger") > 0)
			glintru_spi_check(SPI_execute(psprintf("DROP TRIGGER %s ON %s", trigger_names[i], qualname),
										  false, 0),
							  SPI_OK_UTILITY, "could not drop a glintru trigger");
	}
}

/* Create the four triggers on the table, calling glintru_trigger() in schema fnschema. */
static void
create_triggers(const char *qualname, const char *fnschema)
{
	for (int i = 0; i < (int) lengthof(trigger_names); i++)
		glintru_spi_check(SPI_execute(psprintf("CREATE TRIGGER %s AFTER %s ON %s %s FOR EACH STATEMENT "
											   "EXECUTE FUNCTION %s.glintru_trigger()",
											   trigger_names[i], trigger_events[i], qualname,
											   trigger_tables[i], fnschema),
									  false, 0),
						  SPI_OK_UTILITY, "could not create a glintru trigger");
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

/* What a backfill with a pinned model writes, and how many users it wrote. */
typedef struct Backfill
{
	const GlintruTable *t;
	int32		att_id;
	int64		users;
} Backfill;

/* Backfill the states of one attachment with the model pinned. */
static void
backfill_pinned(const GlintruModel *m, void *arg)
{
	Backfill   *b = arg;

	glintru_spi_connect();
	b->users = glintru_state_backfill(b->t, m, b->att_id);
	glintru_spi_finish();
}

/* The attachment glintru_attach() is asked for, the arguments checked. */
static GlintruAttachment
attach_arguments(FunctionCallInfo fcinfo, GlintruCatalogEntry *e)
{
	char	   *model = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			relid = PG_GETARG_OID(1);
	GlintruAttachment a = {0};
	char		relkind;

	/*
	 * The version the states are built with, from the model row locked until
	 * commit: a replacement committed while the lock was awaited is the
	 * version read, one not yet begun waits for this attach and then
	 * rebuilds the new table too (glintru_attach_rebuild_model).
	 */
	if (!glintru_catalog_lock(model, e))
		glintru_catalog_no_such_model(model);
	relkind = get_rel_relkind(relid);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", get_rel_name(relid)),
				 errhint("Attach the table that holds the interactions.")));
	check_owner(relid);
	a.relid = relid;
	a.model_id = e->id;
	a.model_version = e->version;
	namestrcpy(&a.user_col, NameStr(*PG_GETARG_NAME(2)));
	namestrcpy(&a.item_col, NameStr(*PG_GETARG_NAME(3)));
	namestrcpy(&a.order_col, NameStr(*PG_GETARG_NAME(4)));
	/* 0.1.0's SQL declaration has no refresh argument: the library serves both */
	if (PG_NARGS() > 5)
	{
		char	   *refresh = text_to_cstring(PG_GETARG_TEXT_PP(5));

		if (strcmp(refresh, "deferred") == 0)
			a.deferred = true;
		else if (strcmp(refresh, "eager") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("refresh must be 'eager' or 'deferred', not \"%s\"", refresh),
					 errhint("'eager' keeps every state current after each statement; 'deferred' computes a slid window when it is asked for.")));
	}
	return a;
}

/*
 * Attach one table (or one shard placement, a->shard_id set) to the model
 * of e, locked by the caller: triggers calling fnschema.glintru_trigger(),
 * the attachment row and every user's state; the user count.
 */
static int64
attach_relation(GlintruAttachment *a, const GlintruCatalogEntry *e, const char *fnschema)
{
	Relation	rel;
	GlintruTable t;
	Backfill	b;
	GlintruPin	pin;

	/* the library installed, ALTER EXTENSION … UPDATE not yet run: a clear error, nothing written */
	glintru_state_check_release();
	/* block writers while the state is built from the table */
	rel = table_open(a->relid, ShareRowExclusiveLock);
	glintru_table_init(rel, a, &t);
	/* a shard's indexes are its table's: the coordinator warned about them */
	if (a->shard_id == 0)
		warn_without_user_index(rel, t.user_att, t.order_att);
	table_close(rel, NoLock);

	/* re-attaching: the old triggers, attachment and states go */
	glintru_spi_connect();
	drop_triggers(a->relid, t.qualname);
	a->id = glintru_attachment_insert(a);
	create_triggers(t.qualname, fnschema);
	glintru_spi_finish();

	b.t = &t;
	b.att_id = a->id;
	b.users = 0;
	/* the counters the backfill's state writes add to (glintru_stats_of_attachment) */
	(void) glintru_stats_entry(a->model_id, a->id);
	/* the weights of the version locked, which the statement's snapshot may predate */
	PushActiveSnapshot(GetLatestSnapshot());
	pin = glintru_cache_acquire(e);
	PopActiveSnapshot();
	glintru_cache_with_pin(pin, backfill_pinned, &b);
	return b.users;
}

/* The users with state in every shard of a distributed table, counted on the shards' nodes. */
static int64
count_shard_users(Oid logical_relid)
{
	int64		users = 0;
	ListCell   *lc;

	foreach(lc, glintru_citus_shards(logical_relid))
	{
		Oid			types[2] = {INT8OID, REGCLASSOID};
		Datum		args[2] = {Int64GetDatum(glintru_citus_route_value(lfirst(lc))),
		ObjectIdGetDatum(logical_relid)};
		bool		isnull;

		glintru_spi_connect();
		glintru_spi_run("SELECT * FROM glintru.citus_shard_users($1, $2)", 2, types, args, false, 0,
						SPI_OK_SELECT, "could not count the users of a shard");
		if (SPI_processed == 1)
			users += DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		glintru_spi_finish();
	}
	return users;
}

/*
 * glintru_attach() of a Citus distributed table on the coordinator: the
 * table recorded here (no triggers, no state: writes go to the shards),
 * the serving functions made distributed functions co-located with it, and
 * an attach sent to every node, which attaches each shard placement it
 * holds, in this distributed transaction.  The user count is the shards'.
 */
static int64
attach_distributed(GlintruAttachment *a, const GlintruCatalogEntry *e, Oid fn_namespace)
{
	Relation	rel = table_open(a->relid, ShareRowExclusiveLock);
	GlintruTable t;
	GlintruCitusOp op = {.op = "attach", .table = a->relid, .user_col = NameStr(a->user_col),
	.item_col = NameStr(a->item_col), .order_col = NameStr(a->order_col), .deferred = a->deferred,
	.rebuild = true};

	glintru_state_check_release();
	glintru_table_init(rel, a, &t);
	warn_without_user_index(rel, t.user_att, t.order_att);
	table_close(rel, NoLock);
	a->logical_relid = a->relid;
	a->id = glintru_attachment_insert(a);
	glintru_citus_distribute_functions(a->relid, fn_namespace);
	op.model = e->name;
	op.model_id = e->id;
	op.version = e->version;
	glintru_citus_send(&op);
	return count_shard_users(a->relid);
}

/* SQL glintru_attach(model, table, ...): triggers, then every user's state; the user count. */
PG_FUNCTION_INFO_V1(glintru_attach);
Datum
glintru_attach(PG_FUNCTION_ARGS)
{
	GlintruCatalogEntry e;
	GlintruAttachment a = attach_arguments(fcinfo, &e);
	Oid			fn_namespace = get_func_namespace(fcinfo->flinfo->fn_oid);

	if (glintru_citus_distributed(a.relid))
	{
		if (!glintru_citus_coordinator())
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("attach the distributed table %s on the Citus coordinator", get_rel_name(a.relid))));
		PG_RETURN_INT64(attach_distributed(&a, &e, fn_namespace));
	}
	PG_RETURN_INT64(attach_relation(&a, &e, quote_identifier(get_namespace_name(fn_namespace))));
}

/* Drop a shard's triggers (if its table still exists) and its attachment. */
static void
detach_shard(const GlintruAttachment *a)
{
	if (SearchSysCacheExists1(RELOID, ObjectIdGetDatum(a->relid)))
	{
		LockRelationOid(a->relid, AccessExclusiveLock);
		glintru_spi_connect();
		drop_triggers(a->relid, quote_qualified_identifier(get_namespace_name(get_rel_namespace(a->relid)),
														   get_rel_name(a->relid)));
		glintru_spi_finish();
	}
	glintru_attachment_delete(a->id);
}

/*
 * On a Citus node, applying an attach from the coordinator: attach every
 * shard placement of the distributed table this node holds to the model
 * of e (with the columns and mode of tmpl), or only those not attached as
 * asked when !rebuild (glintru_citus_sync), and detach the shards it no
 * longer holds (moved away, split).  fnschema: glintru_trigger()'s schema.
 */
void
glintru_attach_shards(Oid logical_relid, const GlintruCatalogEntry *e, const GlintruAttachment *tmpl,
					  bool rebuild, const char *fnschema)
{
	List	   *shards = glintru_citus_shards(logical_relid);
	ListCell   *lc;

	foreach(lc, glintru_attachments_of_logical(logical_relid))
	{
		GlintruAttachment *old = lfirst(lc);
		bool		held = false;
		ListCell   *lc2;

		foreach(lc2, shards)
		{
			GlintruCitusShard *s = lfirst(lc2);

			held |= s->local && s->relid == old->relid && s->shard_id == old->shard_id;
		}
		if (!held)
			detach_shard(old);
	}
	foreach(lc, shards)
	{
		GlintruCitusShard *s = lfirst(lc);
		GlintruAttachment a = *tmpl;
		GlintruAttachment now;

		if (!s->local)
			continue;
		if (!rebuild && glintru_attachment_by_relid_latest(s->relid, &now) &&
			now.model_id == e->id && now.model_version == e->version && now.shard_id == s->shard_id &&
			now.deferred == tmpl->deferred && namestrcmp(&now.user_col, NameStr(tmpl->user_col)) == 0 &&
			namestrcmp(&now.item_col, NameStr(tmpl->item_col)) == 0 &&
			namestrcmp(&now.order_col, NameStr(tmpl->order_col)) == 0)
			continue;
		a.relid = s->relid;
		a.model_id = e->id;
		a.model_version = e->version;
		a.logical_relid = logical_relid;
		a.shard_id = s->shard_id;
		a.hash_min = s->hash_min;
		a.hash_max = s->hash_max;
		(void) attach_relation(&a, e, fnschema);
	}
}

/* On a Citus node, applying a detach from the coordinator: every shard of the table this node has. */
void
glintru_detach_shards(Oid logical_relid)
{
	ListCell   *lc;

	foreach(lc, glintru_attachments_of_logical(logical_relid))
		detach_shard(lfirst(lc));
}

/* SQL glintru.citus_shard_users(route, table): users with state in the shard of route, on its node. */
PG_FUNCTION_INFO_V1(glintru_citus_shard_users);
Datum
glintru_citus_shard_users(PG_FUNCTION_ARGS)
{
	GlintruAttachment a = glintru_attachment_resolve_user(true, PG_GETARG_OID(1), PG_GETARG_INT64(0));
	uint64		n;

	if (GLINTRU_ATTACHMENT_IS_LOGICAL(&a))
		glintru_citus_not_routed("glintru_attach");
	(void) glintru_state_users(a.id, false, 0, &n);
	PG_RETURN_INT64((int64) n);
}

/* Do two lists of attachments hold the same attachments of model model_id? */
static bool
same_attachments(List *x, List *y, int32 model_id)
{
	ListCell   *lc;
	int			nx = 0,
				ny = 0;

	foreach(lc, y)
		ny += ((GlintruAttachment *) lfirst(lc))->model_id == model_id;
	foreach(lc, x)
	{
		GlintruAttachment *a = lfirst(lc);
		ListCell   *lc2;
		bool		found = false;

		if (a->model_id != model_id)
			continue;
		nx++;
		foreach(lc2, y)
			found |= ((GlintruAttachment *) lfirst(lc2))->id == a->id;
		if (!found)
			return false;
	}
	return nx == ny;
}

/*
 * The model of e was replaced by the already validated model m, at version
 * e->version: every table attached to it gets its state rebuilt with the new
 * weights, in the same transaction.  m is used as it is (no cache lookup):
 * the file was parsed once, by the load.
 */
void
glintru_attach_rebuild_model(const GlintruCatalogEntry *e, const GlintruModel *m)
{
	/*
	 * Listed with a snapshot taken after the FOR UPDATE of the model row
	 * (glintru_catalog_store): an attach to it (FOR KEY SHARE of that row)
	 * committed before is listed, a later one waits for this transaction.
	 * The statement's snapshot predates the wait for the lock.
	 */
	List	   *all = glintru_attachments_all_in(GetLatestSnapshot());
	ListCell   *lc;

	/* REPEATABLE READ reads the tables and states with its snapshot: they must be those it shows attached */
	if (IsolationUsesXactSnapshot() && !same_attachments(all, glintru_attachments_all(), e->id))
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent update"),
				 errdetail("The tables attached to model \"%s\" changed in a transaction that committed "
						   "after this transaction's snapshot was taken.", e->name),
				 errhint("The transaction might succeed if retried.")));
	foreach(lc, all)
	{
		GlintruAttachment *a = lfirst(lc);
		GlintruAttachment now;
		GlintruTable t;

		/* a dropped table's attachment stays until detached: nothing to rebuild */
		if (a->model_id != e->id || !SearchSysCacheExists1(RELOID, ObjectIdGetDatum(a->relid)))
			continue;
		/* the coordinator's record of a distributed table: each node rebuilds its shards */
		if (GLINTRU_ATTACHMENT_IS_LOGICAL(a))
		{
			glintru_attachment_set_version(a->id, e->version);
			continue;
		}
		LockRelationOid(a->relid, ShareRowExclusiveLock);
		/* a detach or a re-attach to another model may have committed while the lock was awaited */
		if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(a->relid)) ||
			!glintru_attachment_by_relid_latest(a->relid, &now) || now.id != a->id)
			continue;
		glintru_table_open(a, ShareRowExclusiveLock, &t);
		glintru_attachment_set_version(a->id, e->version);
		glintru_state_delete_all(a->id);
		{
			Backfill	b = {&t, a->id, 0};

			(void) glintru_stats_entry(e->id, a->id);
			backfill_pinned(m, &b);
		}
	}
}

/* The error of glintru_detach() on a table that is not attached. */
static void
detach_not_attached(Oid relid)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("table %s is not attached to a glintru model",
					get_rel_name(relid) ? get_rel_name(relid) : psprintf("with OID %u", relid))));
}

/* SQL glintru_detach(table): drop the triggers, the attachment and its states. */
PG_FUNCTION_INFO_V1(glintru_detach);
Datum
glintru_detach(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	GlintruAttachment a;

	if (!glintru_attachment_by_relid(relid, &a))
		detach_not_attached(relid);
	/* a distributed table (Citus): every node detaches its shards, in this transaction */
	if (GLINTRU_ATTACHMENT_IS_LOGICAL(&a) && SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
	{
		GlintruCitusOp op = {.op = "detach", .table = relid};

		check_owner(relid);
		LockRelationOid(relid, ShareRowExclusiveLock);
		glintru_citus_send(&op);
		glintru_attachment_delete(a.id);
		PG_RETURN_VOID();
	}
	/* a dropped table: its triggers went with it */
	if (SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
	{
		check_owner(relid);
		/*
		 * The attachment as committed once attach and rebuild are locked
		 * out, under the lock DROP TRIGGER takes: a weaker one first would
		 * be upgraded, deadlocking with a reader that then writes.
		 */
		LockRelationOid(relid, AccessExclusiveLock);
		if (!glintru_attachment_by_relid_latest(relid, &a))
			detach_not_attached(relid);
		glintru_spi_connect();
		drop_triggers(relid, quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
														get_rel_name(relid)));
		glintru_spi_finish();
	}
	glintru_attachment_delete(a.id);
	PG_RETURN_VOID();
}
