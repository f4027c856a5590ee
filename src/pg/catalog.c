/*
 * catalog.c — the model catalogue glintru.models: loading (validated before
 * anything is stored), export, drop, listing, and the lookups the serving
 * path uses.
 *
 * Serving reads the catalogue the way PostgreSQL reads its own catalogues:
 * an index scan under the query's snapshot, with no SPI and no permission
 * check, so that a role allowed to call glintru_recommend_history() needs no
 * rights on the table, and a model replaced in a committed transaction is
 * seen atomically by the next statement.  Writes go through SPI with
 * schema-qualified names and operators, so search_path cannot redirect them.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include <sys/stat.h>

#include "glintru.h"
#include "safetensors.h"

/* attribute numbers of glintru.models (sql/glintru--*.sql) */
#define ANUM_ID 1
#define ANUM_NAME 2
#define ANUM_VERSION 3
#define ANUM_WEIGHTS 12

static Oid
catalog_namespace(void)
{
	Oid			nsp = get_namespace_oid("glintru", true);

	if (!OidIsValid(nsp))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_SCHEMA),
				 errmsg("schema \"glintru\" does not exist"),
				 errhint("Run CREATE EXTENSION glintru in this database.")));
	return nsp;
}

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

/*
 * Like PostgreSQL's foreign-key triggers, glintru writes its own tables as
 * their owner: EXECUTE on a function is the whole permission check, and the
 * caller needs no rights on glintru's tables.
 */

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

void
glintru_become_owner_of(Oid relid, GlintruRoleSwitch *rs)
{
	GetUserIdAndSecContext(&rs->save_user, &rs->save_sec);
	SetUserIdAndSecContext(rel_owner(relid),
						   rs->save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_NOFORCE_RLS);
}

void
glintru_restore_role(const GlintruRoleSwitch *rs)
{
	SetUserIdAndSecContext(rs->save_user, rs->save_sec);
}

/* Find the single row with key = value through the given unique index. */
static HeapTuple
catalog_fetch(Relation rel, const char *index, AttrNumber attno, RegProcedure eqproc,
			  Oid collation, Datum value, SysScanDesc *scan_out)
{
	ScanKeyData key;
	SysScanDesc scan;
	Snapshot	snap = ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot();

	ScanKeyEntryInitialize(&key, 0, attno, BTEqualStrategyNumber, InvalidOid,
						   collation, eqproc, value);
	scan = systable_beginscan(rel, glintru_catalog_relid(index), true, snap, 1, &key);
	*scan_out = scan;
	return systable_getnext(scan);
}

/* The catalogue row with key = value (by name or by id), without its weights. */
static bool
catalog_find_by(const char *index, AttrNumber attno, RegProcedure eqproc, Oid collation,
				Datum value, GlintruCatalogEntry *entry)
{
	Relation	rel = table_open(glintru_catalog_relid("models"), AccessShareLock);
	SysScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	tup = catalog_fetch(rel, index, attno, eqproc, collation, value, &scan);
	if (HeapTupleIsValid(tup))
	{
		TupleDesc	desc = RelationGetDescr(rel);
		bool		isnull;

		entry->id = DatumGetInt32(heap_getattr(tup, ANUM_ID, desc, &isnull));
		entry->version = DatumGetInt64(heap_getattr(tup, ANUM_VERSION, desc, &isnull));
		strlcpy(entry->name, TextDatumGetCString(heap_getattr(tup, ANUM_NAME, desc, &isnull)),
				sizeof(entry->name));
		found = true;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

bool
glintru_catalog_find(const char *name, GlintruCatalogEntry *entry)
{
	return catalog_find_by("models_name_key", ANUM_NAME, F_TEXTEQ, DEFAULT_COLLATION_OID,
						   CStringGetTextDatum(name), entry);
}

bool
glintru_catalog_find_id(int32 id, GlintruCatalogEntry *entry)
{
	return catalog_find_by("models_pkey", ANUM_ID, F_INT4EQ, InvalidOid, Int32GetDatum(id), entry);
}

bytea *
glintru_catalog_weights(int32 id, int64 version)
{
	Relation	rel = table_open(glintru_catalog_relid("models"), AccessShareLock);
	SysScanDesc scan;
	HeapTuple	tup;
	bytea	   *result = NULL;

	tup = catalog_fetch(rel, "models_pkey", ANUM_ID, F_INT4EQ, InvalidOid,
						Int32GetDatum(id), &scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, ANUM_WEIGHTS, RelationGetDescr(rel), &isnull);

		/* the bytes must be those of the version the caller keys them by */
		if (!isnull && DatumGetInt64(heap_getattr(tup, ANUM_VERSION, RelationGetDescr(rel), &isnull)) == version)
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

/*
 * Validate a safetensors file completely and build the model in memory from
 * alloc(bytes, arg).  Every defect becomes an ERROR naming it.
 */
GlintruModel *
glintru_model_from_bytes(const uint8 *buf, size_t len, void *(*alloc) (size_t, void *), void *arg)
{
	GlintruConfig cfg;
	bool		has_pop;
	char		err[512];
	GlintruModel *m;

	if (!glintru_safetensors_check(buf, len, &cfg, &has_pop, err, sizeof(err)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid model file: %s", err)));
	m = glintru_safetensors_build(buf, len, alloc(glintru_model_bytes(&cfg, has_pop), arg),
								  err, sizeof(err));
	if (m == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid model file: %s", err)));
	return m;
}

static void *
palloc_huge(size_t n, void *arg)
{
	(void) arg;
	return palloc_extended(n, MCXT_ALLOC_HUGE);
}

static void
check_model_name(const char *name)
{
	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model name must not be empty")));
	if (strlen(name) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("model name \"%s\" is too long", name),
				 errdetail("Model names are at most %d bytes.", NAMEDATALEN - 1)));
}

/* Validate and store; shared by both loaders and glintru_train(). */
int32
glintru_load_model_bytes(const char *name, bytea *weights, bool replace)
{
	GlintruModel *m;
	Datum		args[8];
	Oid			types[8] = {TEXTOID, INT8OID, INT4OID, INT4OID, INT4OID, FLOAT4OID, BYTEAOID, INT4OID};
	int32		id = 0;
	bool		exists;
	GlintruRoleSwitch rs;
	MemoryContext oldcxt = CurrentMemoryContext;
	MemoryContext tmp = AllocSetContextCreate(CurrentMemoryContext, "glintru load",
											  ALLOCSET_DEFAULT_SIZES);

	check_model_name(name);
	MemoryContextSwitchTo(tmp);
	m = glintru_model_from_bytes((const uint8 *) VARDATA_ANY(weights), VARSIZE_ANY_EXHDR(weights),
								 palloc_huge, NULL);
	MemoryContextSwitchTo(oldcxt);

	args[0] = CStringGetTextDatum(name);
	args[1] = Int64GetDatum(m->config.n_rows - 1);
	args[2] = Int32GetDatum(m->config.d);
	args[3] = Int32GetDatum(m->config.n_heads);
	args[4] = Int32GetDatum(m->config.max_seq_len);
	args[5] = Float4GetDatum(m->config.layer_norm_eps);
	args[6] = PointerGetDatum(weights);
	MemoryContextDelete(tmp);

	SPI_connect();
	glintru_become_owner_of(glintru_catalog_relid("models"), &rs);
	if (SPI_execute_with_args("SELECT id FROM glintru.models WHERE name OPERATOR(pg_catalog.=) $1 FOR UPDATE",
							  1, types, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read glintru.models");
	exists = SPI_processed > 0;
	if (exists && !replace)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("model \"%s\" already exists", name),
				 errhint("Pass replace => true to replace it.")));
	if (exists)
	{
		bool		isnull;

		args[7] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (SPI_execute_with_args("UPDATE glintru.models SET "
								  "version = pg_catalog.nextval('glintru.model_version_seq'::pg_catalog.regclass), "
								  "n_items = $2, d = $3, n_heads = $4, max_seq_len = $5, layer_norm_eps = $6, "
								  "checksum = pg_catalog.encode(pg_catalog.sha256($7), 'hex'), "
								  "bytes = pg_catalog.length($7), loaded_at = pg_catalog.now(), weights = $7 "
								  "WHERE id OPERATOR(pg_catalog.=) $8 RETURNING id",
								  8, types, args, NULL, false, 1) != SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "could not update glintru.models");
	}
	else if (SPI_execute_with_args("INSERT INTO glintru.models "
								   "(name, n_items, d, n_heads, max_seq_len, layer_norm_eps, checksum, bytes, weights) "
								   "VALUES ($1, $2, $3, $4, $5, $6, pg_catalog.encode(pg_catalog.sha256($7), 'hex'), "
								   "pg_catalog.length($7), $7) RETURNING id",
								   7, types, args, NULL, false, 1) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not insert into glintru.models");
	{
		bool		isnull;

		id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	glintru_restore_role(&rs);
	SPI_finish();
	if (exists)
	{
		/* tables attached to this model: rebuild their state with the new weights */
		CommandCounterIncrement();
		PushCopiedSnapshot(GetActiveSnapshot());
		UpdateActiveSnapshotCommandId();
		glintru_rebuild_attachments(id);
		PopActiveSnapshot();
	}
	return id;
}

PG_FUNCTION_INFO_V1(glintru_load_model);
Datum
glintru_load_model(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	bytea	   *weights = PG_GETARG_BYTEA_PP(1);

	PG_RETURN_INT32(glintru_load_model_bytes(name, weights, PG_GETARG_BOOL(2)));
}

PG_FUNCTION_INFO_V1(glintru_load_model_file);
Datum
glintru_load_model_file(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(1));
	FILE	   *f;
	struct stat st;
	bytea	   *buf;

	/* the same rule as pg_read_binary_file() */
	if (!has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read server file \"%s\"", path),
				 errhint("Only superusers and members of pg_read_server_files may load a model from a server file; "
						 "others can pass the bytes to glintru_load_model().")));
	f = AllocateFile(path, PG_BINARY_R);
	if (f == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\" for reading: %m", path)));
	if (fstat(fileno(f), &st) < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat file \"%s\": %m", path)));
	if (!S_ISREG(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a regular file", path)));
	if ((Size) st.st_size > MaxAllocSize - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("file \"%s\" is too large (%lld bytes)", path, (long long) st.st_size),
				 errdetail("A model is stored as a bytea, which holds at most 1 GB.")));
	buf = palloc(VARHDRSZ + st.st_size);
	if (fread(VARDATA(buf), 1, st.st_size, f) != (size_t) st.st_size)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read file \"%s\": %m", path)));
	FreeFile(f);
	SET_VARSIZE(buf, VARHDRSZ + st.st_size);
	PG_RETURN_INT32(glintru_load_model_bytes(name, buf, PG_GETARG_BOOL(2)));
}

static void
no_such_model(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("model \"%s\" does not exist", name),
			 errhint("glintru_models() lists the loaded models.")));
}

PG_FUNCTION_INFO_V1(glintru_export_model);
Datum
glintru_export_model(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	GlintruCatalogEntry e;

	if (!glintru_catalog_find(name, &e))
		no_such_model(name);
	PG_RETURN_BYTEA_P(glintru_catalog_weights(e.id, e.version));
}

PG_FUNCTION_INFO_V1(glintru_drop_model);
Datum
glintru_drop_model(PG_FUNCTION_ARGS)
{
	text	   *name = PG_GETARG_TEXT_PP(0);
	Oid			types[1] = {TEXTOID};
	Datum		args[1] = {PointerGetDatum(name)};
	uint64		n;
	GlintruRoleSwitch rs;

	SPI_connect();
	glintru_become_owner_of(glintru_catalog_relid("models"), &rs);
	if (SPI_execute_with_args("SELECT a.relid::pg_catalog.text FROM glintru.attachments a "
							  "JOIN glintru.models m ON m.id OPERATOR(pg_catalog.=) a.model_id "
							  "WHERE m.name OPERATOR(pg_catalog.=) $1 ORDER BY 1",
							  1, types, args, NULL, true, 0) == SPI_OK_SELECT && SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("model \"%s\" is attached to table %s", text_to_cstring(name),
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)),
				 errhint("Detach it first with glintru_detach().")));
	if (SPI_execute_with_args("DELETE FROM glintru.models WHERE name OPERATOR(pg_catalog.=) $1",
							  1, types, args, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete from glintru.models");
	n = SPI_processed;
	glintru_restore_role(&rs);
	SPI_finish();
	if (n == 0)
		no_such_model(text_to_cstring(name));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(glintru_models);
Datum
glintru_models(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	if (SPI_execute("SELECT name, n_items, d, n_heads, max_seq_len, bytes, checksum, loaded_at, id, version "
					"FROM glintru.models ORDER BY name", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read glintru.models");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		Datum		values[9];
		bool		nulls[9] = {0};
		bool		isnull;

		for (int c = 0; c < 8; c++)
			values[c] = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, c + 1, &nulls[c]);
		values[8] = BoolGetDatum(glintru_shmem_active() &&
								 glintru_model_cached(DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 9, &isnull)),
													  DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 10, &isnull))));
		/* text datums point into SPI memory: the tuplestore copies them */
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(glintru_memory);
Datum
glintru_memory(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {0};
	int64		budget,
				used;
	int			models;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	glintru_memory_usage(&budget, &used, &models);
	values[0] = CStringGetTextDatum(glintru_shmem_active() ? "shared" : "private");
	values[1] = Int64GetDatum(budget);
	nulls[1] = budget < 0;
	values[2] = Int64GetDatum(used);
	values[3] = Int32GetDatum(models);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
