/*
 * catalog.c — storage: lookups and writes of glintru.models and
 * glintru.attachments, the owner-role switch, and SPI with checked return
 * codes.  Nothing here knows about the model cache, user states or SQL entry
 * points; those call down into this file.
 *
 * Serving reads the catalogue the way PostgreSQL reads its own catalogues:
 * an index scan under the query's snapshot, with no SPI and no permission
 * check, so that a role allowed to call glintru_recommend_history() needs no
 * rights on the table, and a model replaced in a committed transaction is
 * seen atomically by the next statement.  Writes go through SPI with
 * schema-qualified names and operators, so search_path cannot redirect them.
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "catalog.h"
#include "schema.h"

/* ---- SPI with checked return codes ---- */

/* SPI_connect, an internal error if it fails. */
void
glintru_spi_connect(void)
{
	int			rc = SPI_connect();

	if (rc != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(rc));
}

/* SPI_finish, an internal error if it fails. */
void
glintru_spi_finish(void)
{
	int			rc = SPI_finish();

	if (rc != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed: %s", SPI_result_code_string(rc));
}

/* An SPI result other than the expected one is an internal error naming what was done. */
void
glintru_spi_check(int rc, int expected, const char *what)
{
	if (rc != expected)
		elog(ERROR, "%s: %s", what, SPI_result_code_string(rc));
}

/* Run one statement with parameters (none NULL), check its code; returns SPI_processed. */
uint64
glintru_spi_run(const char *sql, int nargs, Oid *types, Datum *args, bool read_only,
				long tcount, int expected, const char *what)
{
	glintru_spi_check(SPI_execute_with_args(sql, nargs, types, args, NULL, read_only, tcount),
					  expected, what);
	return SPI_processed;
}

/* Column c (1-based) of row r of the last SPI result, a column that is never NULL. */
static Datum
spi_value(uint64 r, int c)
{
	bool		isnull;

	return SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, c, &isnull);
}

/* ---- running as the owner of a table ---- */

/* The owner of a relation, from the syscache. */
static Oid
rel_owner(Oid relid)
{
	HeapTuple	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
	ReleaseSysCache(tp);
	return owner;
}

/*
 * Like PostgreSQL's foreign-key triggers, glintru writes its own tables as
 * their owner: EXECUTE on a function is the whole permission check, and the
 * caller needs no rights on glintru's tables.  An error restores the role
 * through the transaction's abort.
 */
void
glintru_become_owner_of(Oid relid, GlintruRoleSwitch *rs)
{
	GetUserIdAndSecContext(&rs->save_user, &rs->save_sec);
	SetUserIdAndSecContext(rel_owner(relid),
						   rs->save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_NOFORCE_RLS);
}

/* Back to the role glintru_become_owner_of() replaced. */
void
glintru_restore_role(const GlintruRoleSwitch *rs)
{
	SetUserIdAndSecContext(rs->save_user, rs->save_sec);
}

/* ---- lookups ---- */

/* The OID of the schema glintru, or a hint to create the extension. */
static Oid
catalog_namespace(void)
{
	Oid			nsp = get_namespace_oid(GLINTRU_SCHEMA_NAME, true);

	if (!OidIsValid(nsp))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_SCHEMA),
				 errmsg("schema \"glintru\" does not exist"),
				 errhint("Run CREATE EXTENSION glintru in this database.")));
	return nsp;
}

/* The OID of one of glintru's tables or indexes (schema.h names them). */
Oid
glintru_catalog_relid(const char *relname)
{
	Oid			relid = get_relname_relid(relname, catalog_namespace());

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"glintru.%s\" does not exist", relname),
				 errhint("The glintru extension is damaged; recreate it.")));
	return relid;
}

/* The snapshot index scans of glintru's tables read under: the statement's. */
Snapshot
glintru_catalog_snapshot(void)
{
	return ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot();
}

/* Find the single row with key = value through the given unique index. */
static HeapTuple
catalog_fetch(Relation rel, const char *index, AttrNumber attno, RegProcedure eqproc,
			  Oid collation, Datum value, SysScanDesc *scan_out)
{
	ScanKeyData key;
	SysScanDesc scan;

	ScanKeyEntryInitialize(&key, 0, attno, BTEqualStrategyNumber, InvalidOid,
						   collation, eqproc, value);
	scan = systable_beginscan(rel, glintru_catalog_relid(index), true,
							  glintru_catalog_snapshot(), 1, &key);
	*scan_out = scan;
	return systable_getnext(scan);
}

/* The catalogue row with key = value (by name or by id), without its weights. */
static bool
catalog_find_by(const char *index, AttrNumber attno, RegProcedure eqproc, Oid collation,
				Datum value, GlintruCatalogEntry *entry)
{
	Relation	rel = table_open(glintru_catalog_relid(GLINTRU_MODELS), AccessShareLock);
	SysScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	tup = catalog_fetch(rel, index, attno, eqproc, collation, value, &scan);
	if (HeapTupleIsValid(tup))
	{
		TupleDesc	desc = RelationGetDescr(rel);
		bool		isnull;

		entry->id = DatumGetInt32(heap_getattr(tup, Anum_glintru_models_id, desc, &isnull));
		entry->version = DatumGetInt64(heap_getattr(tup, Anum_glintru_models_version, desc, &isnull));
		strlcpy(entry->name,
				TextDatumGetCString(heap_getattr(tup, Anum_glintru_models_name, desc, &isnull)),
				sizeof(entry->name));
		found = true;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/* The model row of this name, if any (the statement's snapshot). */
bool
glintru_catalog_find(const char *name, GlintruCatalogEntry *entry)
{
	return catalog_find_by(GLINTRU_MODELS_NAME_KEY, Anum_glintru_models_name, F_TEXTEQ,
						   DEFAULT_COLLATION_OID, CStringGetTextDatum(name), entry);
}

/* The model row of this id, if any (the statement's snapshot). */
bool
glintru_catalog_find_id(int32 id, GlintruCatalogEntry *entry)
{
	return catalog_find_by(GLINTRU_MODELS_PKEY, Anum_glintru_models_id, F_INT4EQ, InvalidOid,
						   Int32GetDatum(id), entry);
}

/*
 * The model row of this name, locked FOR KEY SHARE until the transaction
 * ends, for a caller that keeps its version (an attach): a replacement (FOR
 * UPDATE) or a drop of the row then waits for this transaction, and one in
 * progress is waited for.  The values returned are those of the row as
 * locked: in READ COMMITTED the newest version, even when a replacement
 * committed while the lock was awaited (a snapshot of the caller's statement
 * would show the old one); in REPEATABLE READ such a replacement is a
 * serialization failure.  Row locks need UPDATE on the table: run as its owner.
 */
bool
glintru_catalog_lock(const char *name, GlintruCatalogEntry *entry)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(name)};
	bool		found;
	GlintruRoleSwitch rs;

	glintru_spi_connect();
	glintru_become_owner_of(glintru_catalog_relid(GLINTRU_MODELS), &rs);
	found = glintru_spi_run("SELECT id, version FROM glintru.models WHERE name OPERATOR(pg_catalog.=) $1 "
							"FOR KEY SHARE",
							1, types, args, false, 1, SPI_OK_SELECT, "could not lock glintru.models") > 0;
	if (found)
	{
		entry->id = DatumGetInt32(spi_value(0, 1));
		entry->version = DatumGetInt64(spi_value(0, 2));
		strlcpy(entry->name, name, sizeof(entry->name));
	}
	glintru_restore_role(&rs);
	glintru_spi_finish();
	return found;
}

/* The error every lookup of a model by name raises when there is none. */
void
glintru_catalog_no_such_model(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("model \"%s\" does not exist", name),
			 errhint("glintru_models() lists the loaded models.")));
}

/* A copy of the stored file of model id, which must still be at this version. */
bytea *
glintru_catalog_weights(int32 id, int64 version)
{
	Relation	rel = table_open(glintru_catalog_relid(GLINTRU_MODELS), AccessShareLock);
	SysScanDesc scan;
	HeapTuple	tup;
	bytea	   *result = NULL;

	tup = catalog_fetch(rel, GLINTRU_MODELS_PKEY, Anum_glintru_models_id, F_INT4EQ, InvalidOid,
						Int32GetDatum(id), &scan);
	if (HeapTupleIsValid(tup))
	{
		TupleDesc	desc = RelationGetDescr(rel);
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_glintru_models_weights, desc, &isnull);

		/* the bytes must be those of the version the caller keys them by */
		if (!isnull &&
			DatumGetInt64(heap_getattr(tup, Anum_glintru_models_version, desc, &isnull)) == version)
			result = DatumGetByteaPCopy(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (result == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model with id %d changed or disappeared while it was being read", id),
				 errhint("Retry the statement.")));
	return result;
}

/* ---- writes of glintru.models ---- */

/*
 * Like glintru_spi_run() (not read-only, at most one row), with a generic
 * plan: the parameters stay parameters.  A custom plan would fold each into
 * a constant, and makeConst() keeps a detoasted copy of a varlena.
 */
static uint64
spi_run_generic(const char *sql, int nargs, Oid *types, Datum *args, int expected, const char *what)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, types, CURSOR_OPT_GENERIC_PLAN);

	if (plan == NULL)
		elog(ERROR, "%s: %s", what, SPI_result_code_string(SPI_result));
	glintru_spi_check(SPI_execute_plan(plan, args, NULL, false, 1), expected, what);
	return SPI_processed;
}

/* The sha256 of the bytes, in hex (the checksum column). */
static text *
sha256_hex(const uint8 *buf, size_t len)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char		hex[2 * PG_SHA256_DIGEST_LENGTH + 1];

	if (pg_cryptohash_init(ctx) < 0 || pg_cryptohash_update(ctx, buf, len) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute the sha256 of the weights: %s", pg_cryptohash_error(ctx))));
	pg_cryptohash_free(ctx);
	hex_encode((const char *) digest, sizeof(digest), hex);
	hex[sizeof(hex) - 1] = '\0';
	return cstring_to_text(hex);
}

/*
 * An in-memory TOAST pointer to value (VARTAG_INDIRECT, as PostgreSQL's
 * logical decoding and regress.c make): the executor's slots and
 * heap_form_tuple copy this pointer, not the bytes, and toasting the row
 * copies them once.  A 264 MB bytea passed as it is would be copied by each.
 */
static Datum
indirect_datum(bytea *value)
{
	struct varatt_indirect redirect;
	struct varlena *p = palloc(INDIRECT_POINTER_SIZE);

	redirect.pointer = (struct varlena *) value;
	SET_VARTAG_EXTERNAL(p, VARTAG_INDIRECT);
	memcpy(VARDATA_EXTERNAL(p), &redirect, sizeof(redirect));
	return PointerGetDatum(p);
}

/*
 * Insert or (replace) update the row of model name with a file already
 * validated, whose configuration is cfg.  Every write gives the row a new
 * version.  Returns whether an existing row was replaced; *stored is the
 * row as written.  The checksum and length are computed here, not in SQL,
 * and the write has a generic plan and an indirect pointer to the bytes
 * (spi_run_generic, indirect_datum): the only copy of them is the one the
 * toaster makes (weights is STORAGE EXTERNAL: no compression).
 */
bool
glintru_catalog_store(const char *name, const GlintruConfig *cfg, bytea *weights, bool replace,
					  const GlintruCatalogEntry *as, GlintruCatalogEntry *stored)
{
	Datum		args[10];
	Oid			types[10] = {TEXTOID, INT8OID, INT4OID, INT4OID, INT4OID, FLOAT4OID, BYTEAOID, TEXTOID,
	INT8OID, INT4OID};
	bool		exists;
	GlintruRoleSwitch rs;

	args[0] = CStringGetTextDatum(name);
	args[1] = Int64GetDatum(cfg->n_rows - 1);
	args[2] = Int32GetDatum(cfg->d);
	args[3] = Int32GetDatum(cfg->n_heads);
	args[4] = Int32GetDatum(cfg->max_seq_len);
	args[5] = Float4GetDatum(cfg->layer_norm_eps);
	args[6] = VARATT_IS_EXTENDED(weights) ? PointerGetDatum(weights) : indirect_datum(weights);
	args[7] = PointerGetDatum(sha256_hex((const uint8 *) VARDATA_ANY(weights), VARSIZE_ANY_EXHDR(weights)));
	args[8] = Int64GetDatum((int64) VARSIZE_ANY_EXHDR(weights));

	glintru_spi_connect();
	glintru_become_owner_of(glintru_catalog_relid(GLINTRU_MODELS), &rs);
	exists = glintru_spi_run("SELECT id FROM glintru.models WHERE name OPERATOR(pg_catalog.=) $1 FOR UPDATE",
							 1, types, args, false, 1, SPI_OK_SELECT, "could not read glintru.models") > 0;
	if (exists && !replace)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("model \"%s\" already exists", name),
				 errhint("Pass replace => true to replace it.")));
	if (exists && as && DatumGetInt32(spi_value(0, 1)) != as->id)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("model \"%s\" has id %d on this node, not %d as on the coordinator", name,
						DatumGetInt32(spi_value(0, 1)), as->id),
				 errhint("Drop the model on this node (it was not loaded through the coordinator) and run glintru_citus_sync() on the coordinator.")));
	if (exists)
	{
		args[9] = spi_value(0, 1);
		spi_run_generic("UPDATE glintru.models SET "
						"version = pg_catalog.nextval('glintru.model_version_seq'::pg_catalog.regclass), "
						"n_items = $2, d = $3, n_heads = $4, max_seq_len = $5, layer_norm_eps = $6, "
						"checksum = $8, bytes = $9, loaded_at = pg_catalog.now(), weights = $7 "
						"WHERE id OPERATOR(pg_catalog.=) $10 RETURNING id, version",
						10, types, args, SPI_OK_UPDATE_RETURNING, "could not update glintru.models");
	}
	else
		spi_run_generic("INSERT INTO glintru.models "
						"(name, n_items, d, n_heads, max_seq_len, layer_norm_eps, checksum, bytes, weights) "
						"VALUES ($1, $2, $3, $4, $5, $6, $8, $9, $7) RETURNING id, version",
						9, types, args, SPI_OK_INSERT_RETURNING, "could not insert into glintru.models");
	if (SPI_processed != 1)
		elog(ERROR, "could not write the row of model \"%s\"", name);
	if (as)
	{
		/* a copy of the coordinator's model (Citus): its id and version, not this node's sequences' */
		Oid			as_types[3] = {INT4OID, INT8OID, INT4OID};
		Datum		as_args[3] = {Int32GetDatum(as->id), Int64GetDatum(as->version), spi_value(0, 1)};

		glintru_spi_run("UPDATE glintru.models SET id = $1, version = $2 WHERE id OPERATOR(pg_catalog.=) $3 "
						"RETURNING id, version",
						3, as_types, as_args, false, 0, SPI_OK_UPDATE_RETURNING, "could not update glintru.models");
	}
	stored->id = DatumGetInt32(spi_value(0, 1));
	stored->version = DatumGetInt64(spi_value(0, 2));
	strlcpy(stored->name, name, sizeof(stored->name));
	glintru_restore_role(&rs);
	glintru_spi_finish();
	return exists;
}

/* Delete the row of model name unless a table is attached to it; false if there is none. */
bool
glintru_catalog_drop(text *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1] = {PointerGetDatum(name)};
	uint64		n;
	GlintruRoleSwitch rs;

	glintru_spi_connect();
	glintru_become_owner_of(glintru_catalog_relid(GLINTRU_MODELS), &rs);
	if (glintru_spi_run("SELECT a.relid::pg_catalog.text FROM glintru.attachments a "
						"JOIN glintru.models m ON m.id OPERATOR(pg_catalog.=) a.model_id "
						"WHERE m.name OPERATOR(pg_catalog.=) $1 ORDER BY 1",
						1, types, args, true, 0, SPI_OK_SELECT, "could not read glintru.attachments") > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("model \"%s\" is attached to table %s", text_to_cstring(name),
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)),
				 errhint("Detach it first with glintru_detach().")));
	n = glintru_spi_run("DELETE FROM glintru.models WHERE name OPERATOR(pg_catalog.=) $1",
						1, types, args, false, 0, SPI_OK_DELETE, "could not delete from glintru.models");
	glintru_restore_role(&rs);
	glintru_spi_finish();
	return n > 0;
}

/* ---- glintru.attachments ---- */

/* Decode a row of glintru.attachments. */
static void
attachment_from_tuple(HeapTuple tup, TupleDesc desc, GlintruAttachment *a)
{
	bool		isnull;

	a->id = DatumGetInt32(heap_getattr(tup, Anum_glintru_attachments_id, desc, &isnull));
	a->relid = DatumGetObjectId(heap_getattr(tup, Anum_glintru_attachments_relid, desc, &isnull));
	a->model_id = DatumGetInt32(heap_getattr(tup, Anum_glintru_attachments_model_id, desc, &isnull));
	a->model_version = DatumGetInt64(heap_getattr(tup, Anum_glintru_attachments_model_version,
												  desc, &isnull));
	a->user_col = *DatumGetName(heap_getattr(tup, Anum_glintru_attachments_user_column, desc, &isnull));
	a->item_col = *DatumGetName(heap_getattr(tup, Anum_glintru_attachments_item_column, desc, &isnull));
	a->order_col = *DatumGetName(heap_getattr(tup, Anum_glintru_attachments_order_column, desc, &isnull));
	/* release 0.1.0's table (ALTER EXTENSION … UPDATE not yet run) has no refresh column: eager */
	a->deferred = false;
	if (desc->natts >= Anum_glintru_attachments_refresh)
	{
		Datum		refresh = heap_getattr(tup, Anum_glintru_attachments_refresh, desc, &isnull);

		a->deferred = !isnull && strcmp(TextDatumGetCString(refresh), "deferred") == 0;
	}
	/* the Citus columns (NULL for a plain table; absent before ALTER EXTENSION … UPDATE) */
	a->logical_relid = InvalidOid;
	a->shard_id = 0;
	a->hash_min = a->hash_max = 0;
	if (desc->natts >= Anum_glintru_attachments_hash_max)
	{
		Datum		v = heap_getattr(tup, Anum_glintru_attachments_logical_relid, desc, &isnull);

		if (!isnull)
			a->logical_relid = DatumGetObjectId(v);
		v = heap_getattr(tup, Anum_glintru_attachments_shard_id, desc, &isnull);
		if (!isnull)
		{
			a->shard_id = DatumGetInt64(v);
			a->hash_min = DatumGetInt32(heap_getattr(tup, Anum_glintru_attachments_hash_min, desc, &isnull));
			a->hash_max = DatumGetInt32(heap_getattr(tup, Anum_glintru_attachments_hash_max, desc, &isnull));
		}
	}
}

/* The attachment of table relid as the given snapshot shows it, if any (an index scan, no SPI). */
bool
glintru_attachment_by_relid_in(Oid relid, Snapshot snapshot, GlintruAttachment *a)
{
	Relation	rel = table_open(glintru_catalog_relid(GLINTRU_ATTACHMENTS), AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	ScanKeyInit(&key, Anum_glintru_attachments_relid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, glintru_catalog_relid(GLINTRU_ATTACHMENTS_RELID_KEY), true,
							  snapshot, 1, &key);
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

/* The attachment of table relid, if any (the statement's snapshot). */
bool
glintru_attachment_by_relid(Oid relid, GlintruAttachment *a)
{
	return glintru_attachment_by_relid_in(relid, glintru_catalog_snapshot(), a);
}

/*
 * The attachment of table relid as last committed (the latest snapshot),
 * for a caller holding a lock on the table that keeps attach, detach and
 * rebuild (they take ShareRowExclusiveLock) from committing until it ends:
 * the statement's snapshot can predate one that committed while that lock
 * was awaited.  Under REPEATABLE READ or SERIALIZABLE the transaction reads
 * everything else with its own snapshot, so an attachment other than the
 * one that snapshot shows cannot be used: a serialization failure.
 */
bool
glintru_attachment_by_relid_latest(Oid relid, GlintruAttachment *a)
{
	bool		found = glintru_attachment_by_relid_in(relid, GetLatestSnapshot(), a);
	GlintruAttachment seen;

	if (IsolationUsesXactSnapshot() &&
		(glintru_attachment_by_relid(relid, &seen) != found ||
		 (found && (seen.id != a->id || seen.model_version != a->model_version))))
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent update"),
				 errdetail("Table %s was attached, detached or rebuilt with a new version of its model by a transaction "
						   "that committed after this transaction's snapshot was taken.",
						   get_rel_name(relid) ? get_rel_name(relid) : "(unknown)"),
				 errhint("The transaction might succeed if retried.")));
	return found;
}

/* All attachments as the given snapshot shows them, a List of palloc'ed GlintruAttachment. */
List *
glintru_attachments_all_in(Snapshot snapshot)
{
	Relation	rel = table_open(glintru_catalog_relid(GLINTRU_ATTACHMENTS), AccessShareLock);
	SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, snapshot, 0, NULL);
	HeapTuple	tup;
	List	   *out = NIL;

	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		GlintruAttachment *a = palloc(sizeof(GlintruAttachment));

		attachment_from_tuple(tup, RelationGetDescr(rel), a);
		out = lappend(out, a);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return out;
}

/* All attachments (the statement's snapshot). */
List *
glintru_attachments_all(void)
{
	return glintru_attachments_all_in(glintru_catalog_snapshot());
}

/* "table X is not attached" for a call naming a table that has no attachment. */
static void
not_attached(Oid relid)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("table %s is not attached to a glintru model",
					get_rel_name(relid) ? get_rel_name(relid) : "(unknown)"),
			 errhint("Attach it with glintru_attach(model, table).")));
}

/* The table an attachment serves: a shard's distributed table, else its own. */
static Oid
attachment_table(const GlintruAttachment *a)
{
	return OidIsValid(a->logical_relid) ? a->logical_relid : a->relid;
}

/* The shard attachments of a distributed table on this node, a List of GlintruAttachment. */
List *
glintru_attachments_of_logical(Oid logical_relid)
{
	List	   *out = NIL;
	ListCell   *lc;

	foreach(lc, glintru_attachments_all())
	{
		GlintruAttachment *a = lfirst(lc);

		if (a->logical_relid == logical_relid && a->shard_id != 0)
			out = lappend(out, a);
	}
	return out;
}

/*
 * Of the attachments of one table (list), the one that serves user_id: a
 * plain table's, the shard whose hash range holds the user (Citus hashes a
 * bigint, int or smallint distribution column with hashint8, which agrees
 * across the three), else the coordinator's record of the distributed table
 * (its callers route the call to the shards).
 */
static GlintruAttachment
attachment_for_user(List *list, Oid table, bool have_user, int64 user_id)
{
	int32		h = have_user ? DatumGetInt32(DirectFunctionCall1(hashint8, Int64GetDatum(user_id))) : 0;
	GlintruAttachment *logical = NULL;
	ListCell   *lc;

	foreach(lc, list)
	{
		GlintruAttachment *a = lfirst(lc);

		if (!OidIsValid(a->logical_relid))
			return *a;
		if (a->shard_id == 0)
			logical = a;
		else if (have_user && h >= a->hash_min && h <= a->hash_max)
			return *a;
	}
	if (logical)
		return *logical;
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 have_user ? errmsg("the shard of table %s that holds user " INT64_FORMAT " is not attached on this node",
								get_rel_name(table) ? get_rel_name(table) : "(unknown)", user_id)
			 : errmsg("table %s is distributed: name one of its shards", get_rel_name(table) ? get_rel_name(table) : "(unknown)"),
			 errhint("Call glintru functions on the coordinator; after moving or splitting shards, run glintru_citus_sync() there.")));
	pg_unreachable();
}

/* Of the shard attachments of a distributed table (list), the one of the shard that holds user_id. */
GlintruAttachment
glintru_attachment_of_user(List *shards, Oid table, int64 user_id)
{
	return attachment_for_user(shards, table, true, user_id);
}

/*
 * The attachment a serving or verifying call means: the given table, or the
 * only one; for a distributed table (Citus), the attachment of the shard
 * that holds user_id when have_user.
 */
static GlintruAttachment
attachment_resolve(bool have_relid, Oid relid, bool have_user, int64 user_id)
{
	GlintruAttachment a;
	List	   *all,
			   *of_table = NIL;
	ListCell   *lc;
	StringInfoData names;
	Oid			table = InvalidOid;
	int			n_tables = 0;

	if (have_relid)
	{
		if (glintru_attachment_by_relid(relid, &a) && (!GLINTRU_ATTACHMENT_IS_LOGICAL(&a) || !have_user))
			return a;
		/* a distributed table: its shards on this node (and the coordinator's record) */
		all = glintru_attachments_all();
		foreach(lc, all)
			if (attachment_table(lfirst(lc)) == relid)
				of_table = lappend(of_table, lfirst(lc));
		if (of_table == NIL)
			not_attached(relid);
		return attachment_for_user(of_table, relid, have_user, user_id);
	}
	all = glintru_attachments_all();
	initStringInfo(&names);
	foreach(lc, all)
	{
		GlintruAttachment *x = lfirst(lc);
		Oid			xt = attachment_table(x);

		if (n_tables == 0 || xt != table)
		{
			bool		listed = false;
			ListCell   *lc2;

			foreach(lc2, of_table)
				listed |= attachment_table(lfirst(lc2)) == xt;
			if (!listed)
			{
				char	   *relname = get_rel_name(xt);

				n_tables++;
				table = xt;
				appendStringInfo(&names, "%s%s", names.len ? ", " : "",
								 relname ? quote_identifier(relname) : "(dropped table)");
			}
		}
		of_table = lappend(of_table, x);
	}
	if (n_tables == 1)
		return attachment_for_user(of_table, table, have_user, user_id);
	if (all == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("no interactions table is attached to a glintru model"),
				 errhint("Attach one with glintru_attach(model, table).")));
	ereport(ERROR,
			(errcode(ERRCODE_AMBIGUOUS_PARAMETER),
			 errmsg("more than one interactions table is attached: %s", names.data),
			 errhint("Pass interactions => 'table' to choose one.")));
	pg_unreachable();
}

/* The attachment a verifying or refreshing call means: the given table, or the only one. */
GlintruAttachment
glintru_attachment_resolve(bool have_relid, Oid relid)
{
	return attachment_resolve(have_relid, relid, false, 0);
}

/* The attachment that serves user_id: see attachment_resolve(). */
GlintruAttachment
glintru_attachment_resolve_user(bool have_relid, Oid relid, int64 user_id)
{
	return attachment_resolve(have_relid, relid, true, user_id);
}

/* Write the attachment row of a->relid (replacing any earlier one and, by cascade, its states); its id. */
int32
glintru_attachment_insert(const GlintruAttachment *a)
{
	Oid			types[11] = {OIDOID, INT4OID, INT8OID, NAMEOID, NAMEOID, NAMEOID, TEXTOID, OIDOID, INT8OID,
	INT4OID, INT4OID};
	Datum		args[11];
	char		nulls[11] = "          ";
	GlintruRoleSwitch rs;
	int32		id;

	args[0] = ObjectIdGetDatum(a->relid);
	args[1] = Int32GetDatum(a->model_id);
	args[2] = Int64GetDatum(a->model_version);
	args[3] = NameGetDatum(&a->user_col);
	args[4] = NameGetDatum(&a->item_col);
	args[5] = NameGetDatum(&a->order_col);
	args[6] = CStringGetTextDatum(a->deferred ? "deferred" : "eager");
	args[7] = ObjectIdGetDatum(a->logical_relid);
	args[8] = Int64GetDatum(a->shard_id);
	args[9] = Int32GetDatum(a->hash_min);
	args[10] = Int32GetDatum(a->hash_max);
	if (!OidIsValid(a->logical_relid))
		nulls[7] = 'n';
	if (a->shard_id == 0)
		nulls[8] = nulls[9] = nulls[10] = 'n';
	glintru_spi_connect();
	glintru_become_owner_of(glintru_catalog_relid(GLINTRU_ATTACHMENTS), &rs);
	glintru_spi_run("DELETE FROM glintru.attachments WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass",
					1, types, args, false, 0, SPI_OK_DELETE, "could not delete from glintru.attachments");
	glintru_spi_check(SPI_execute_with_args("INSERT INTO glintru.attachments "
											"(relid, model_id, model_version, user_column, item_column, order_column, refresh, "
											"logical_relid, shard_id, hash_min, hash_max) "
											"VALUES ($1::pg_catalog.regclass, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
											11, types, args, nulls, false, 0),
					  SPI_OK_INSERT_RETURNING, "could not insert into glintru.attachments");
	if (SPI_processed != 1)
		elog(ERROR, "could not insert into glintru.attachments");
	id = DatumGetInt32(spi_value(0, 1));
	glintru_restore_role(&rs);
	glintru_spi_finish();
	return id;
}

/* Run one statement on glintru.attachments keyed by id (and a version), as its owner. */
static void
attachment_write(const char *sql, int32 id, int64 version, int expected, const char *what)
{
	Oid			types[2] = {INT4OID, INT8OID};
	Datum		args[2] = {Int32GetDatum(id), Int64GetDatum(version)};
	GlintruRoleSwitch rs;

	glintru_spi_connect();
	glintru_become_owner_of(glintru_catalog_relid(GLINTRU_ATTACHMENTS), &rs);
	glintru_spi_run(sql, strstr(sql, "$2") ? 2 : 1, types, args, false, 0, expected, what);
	glintru_restore_role(&rs);
	glintru_spi_finish();
}

/* Delete an attachment row (its states go by cascade). */
void
glintru_attachment_delete(int32 id)
{
	attachment_write("DELETE FROM glintru.attachments WHERE id OPERATOR(pg_catalog.=) $1",
					 id, 0, SPI_OK_DELETE, "could not delete from glintru.attachments");
}

/* Record that an attachment's states are now built with this model version. */
void
glintru_attachment_set_version(int32 id, int64 version)
{
	attachment_write("UPDATE glintru.attachments SET model_version = $2 WHERE id OPERATOR(pg_catalog.=) $1",
					 id, version, SPI_OK_UPDATE, "could not update glintru.attachments");
}
