/*
 * models.c — the SQL functions of the model catalogue: loading (from bytes
 * or a server file), prewarm, export, drop, glintru_models() and
 * glintru_memory().
 *
 * A load validates the file exactly once and builds the model once: the
 * check gives the row's columns; after the catalogue write the model is
 * built straight into the cache under the new version (glintru_cache_install:
 * a version no other session can look up before the load commits, freed if
 * it aborts), so the first call after the load finds it built; when an
 * attached model is replaced that same copy rebuilds the attached tables'
 * states (attach.c), in the same transaction as the catalogue write, so the
 * replacement is atomic.
 *
 * On a Citus coordinator every load, replacement and drop is also sent to
 * every node in the same distributed transaction (citus.c), which stores it
 * there under the coordinator's id and version; a worker refuses loads of
 * its own, which would give ids the coordinator does not know.
 *
 * Memory: the file's bytes, plus one transient copy while the row is toasted
 * (catalog.c), then the built model: about twice the file at the peak.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include <sys/stat.h>

#include "attach.h"
#include "cache.h"
#include "catalog.h"
#include "citus.h"
#include "models.h"

/* Model names are non-empty and fit a NameData, as glintru_models() shows them. */
void
glintru_models_check_name(const char *name)
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

/* glintru_cache_with_pin() callback: rebuild the tables attached to the replaced model. */
static void
rebuild_pinned(const GlintruModel *m, void *arg)
{
	glintru_attach_rebuild_model((const GlintruCatalogEntry *) arg, m);
}

/* On a Citus worker, models come from the coordinator only. */
static void
refuse_on_citus_worker(const char *what)
{
	if (!glintru_citus_applying() && glintru_citus_worker())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot %s on a Citus worker", what),
				 errhint("Load, replace and drop models on the coordinator: it sends them to every node.")));
}

/*
 * Validate (once) and store a model file under name; replace an existing
 * model only when asked; with as, under that id and version (a copy sent by
 * the Citus coordinator).  Returns the model's id.
 */
int32
glintru_models_store_as(const char *name, bytea *weights, bool replace, const GlintruCatalogEntry *as)
{
	const uint8 *buf = (const uint8 *) VARDATA_ANY(weights);
	size_t		len = VARSIZE_ANY_EXHDR(weights);
	GlintruConfig cfg;
	bool		has_pop;
	GlintruCatalogEntry stored;
	GlintruPin	pin;
	bool		replaced;

	glintru_models_check_name(name);
	refuse_on_citus_worker("load a model");
	glintru_model_check(buf, len, &cfg, &has_pop);
	/* the write first: its transient copy of the bytes is gone before the model is built */
	replaced = glintru_catalog_store(name, &cfg, weights, replace, as, &stored);
	pin = glintru_cache_install(&stored, buf, len, &cfg, has_pop);
	if (replaced)
	{
		/* tables attached to this model: rebuild their state with the new weights */
		CommandCounterIncrement();
		PushCopiedSnapshot(GetActiveSnapshot());
		UpdateActiveSnapshotCommandId();
		glintru_cache_with_pin(pin, rebuild_pinned, &stored);
		PopActiveSnapshot();
	}
	else
		glintru_cache_release(&pin);
	/* a Citus coordinator: the same row on every node, in this transaction */
	if (as == NULL && glintru_citus_coordinator())
	{
		GlintruCitusOp op = {.op = "model", .model = name, .model_id = stored.id,
		.version = stored.version, .weights = weights};

		glintru_citus_send(&op);
	}
	return stored.id;
}

/*
 * Validate (once) and store a model file under name; replace an existing
 * model only when asked.  Shared by both loaders and glintru_train().
 * Returns the model's id.
 */
int32
glintru_models_store(const char *name, bytea *weights, bool replace)
{
	return glintru_models_store_as(name, weights, replace, NULL);
}

/* SQL glintru_load_model(name, weights, replace): store a model from its bytes. */
PG_FUNCTION_INFO_V1(glintru_load_model);
Datum
glintru_load_model(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	bytea	   *weights = PG_GETARG_BYTEA_PP(1);

	PG_RETURN_INT32(glintru_models_store(name, weights, PG_GETARG_BOOL(2)));
}

/* The whole of a regular server file as a bytea (the caller checked the privilege). */
static bytea *
read_server_file(const char *path)
{
	FILE	   *f;
	struct stat st;
	bytea	   *buf;

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
	return buf;
}

/* SQL glintru_load_model_file(name, path, replace): store a model from a server file. */
PG_FUNCTION_INFO_V1(glintru_load_model_file);
Datum
glintru_load_model_file(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(1));

	/* the same rule as pg_read_binary_file() */
	if (!has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read server file \"%s\"", path),
				 errhint("Only superusers and members of pg_read_server_files may load a model from a server file; "
						 "others can pass the bytes to glintru_load_model().")));
	PG_RETURN_INT32(glintru_models_store(name, read_server_file(path), PG_GETARG_BOOL(2)));
}

/*
 * SQL glintru_prewarm(model): build the model's shared copy now (a no-op if
 * it is built); true if it is in shared memory afterwards.  Without
 * shared_preload_libraries it builds this backend's private copy: false.
 */
PG_FUNCTION_INFO_V1(glintru_prewarm);
Datum
glintru_prewarm(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	GlintruCatalogEntry e;
	GlintruPin	pin;

	if (!glintru_catalog_find(name, &e))
		glintru_catalog_no_such_model(name);
	pin = glintru_cache_acquire(&e);
	glintru_cache_release(&pin);
	PG_RETURN_BOOL(glintru_cache_shared() && glintru_cache_contains(e.id, e.version));
}

/* SQL glintru_export_model(name): the stored file, byte for byte. */
PG_FUNCTION_INFO_V1(glintru_export_model);
Datum
glintru_export_model(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	GlintruCatalogEntry e;

	if (!glintru_catalog_find(name, &e))
		glintru_catalog_no_such_model(name);
	PG_RETURN_BYTEA_P(glintru_catalog_weights(e.id, e.version));
}

/* SQL glintru_drop_model(name): remove a model no table is attached to. */
PG_FUNCTION_INFO_V1(glintru_drop_model);
Datum
glintru_drop_model(PG_FUNCTION_ARGS)
{
	text	   *name = PG_GETARG_TEXT_PP(0);

	refuse_on_citus_worker("drop a model");
	if (!glintru_catalog_drop(name))
		glintru_catalog_no_such_model(text_to_cstring(name));
	if (glintru_citus_coordinator())
	{
		GlintruCitusOp op = {.op = "drop", .model = text_to_cstring(name)};

		glintru_citus_send(&op);
	}
	PG_RETURN_VOID();
}

/* SQL glintru_models(): one row per model, and whether it is in shared memory. */
PG_FUNCTION_INFO_V1(glintru_models);
Datum
glintru_models(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	glintru_spi_connect();
	glintru_spi_check(SPI_execute("SELECT name, n_items, d, n_heads, max_seq_len, bytes, checksum, loaded_at, id, version "
								  "FROM glintru.models ORDER BY name", true, 0),
					  SPI_OK_SELECT, "could not read glintru.models");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	row = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Datum		values[9];
		bool		nulls[9] = {0};
		bool		isnull;

		for (int c = 0; c < 8; c++)
			values[c] = SPI_getbinval(row, desc, c + 1, &nulls[c]);
		values[8] = BoolGetDatum(glintru_cache_shared() &&
								 glintru_cache_contains(DatumGetInt32(SPI_getbinval(row, desc, 9, &isnull)),
														DatumGetInt64(SPI_getbinval(row, desc, 10, &isnull))));
		/* text datums point into SPI memory: the tuplestore copies them */
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	glintru_spi_finish();
	return (Datum) 0;
}

/* SQL glintru_memory(): where models are cached, the budget and what is used. */
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
	glintru_cache_usage(&budget, &used, &models);
	values[0] = CStringGetTextDatum(glintru_cache_shared() ? "shared" : "private");
	values[1] = Int64GetDatum(budget);
	nulls[1] = budget < 0;
	values[2] = Int64GetDatum(used);
	values[3] = Int32GetDatum(models);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
