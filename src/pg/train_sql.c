/*
 * train_sql.c — training and evaluation from SQL: glintru_train() reads an
 * interactions table under the statement's snapshot, trains with the C
 * engine (train.c) in this backend and its background workers
 * (train_pool.c, option "workers"), and stores the best model in the
 * catalogue (from scratch, or warm-started from a stored model with the
 * option init_from); glintru_evaluate() measures a model on a table
 * (SPEC §4) beside the popularity baseline; glintru_training_progress()
 * shows the epochs of trainings running in any session.
 *
 * A training is a request (glintru_train_request: the arguments parsed and
 * checked) run by glintru_train_execute (read the table, train, store the
 * model): glintru_train() runs one in its statement, a background job
 * (jobs.c) in its worker, with hooks at the points where the worker
 * changes transaction; so every option means the same in both.
 *
 * The engine allocates with malloc, so it is never left by longjmp: a
 * cancel request (pg_cancel_backend, statement_timeout) makes it return
 * between two batches, everything is freed, and only then is the interrupt
 * serviced.  Nothing is stored unless training finished.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "data.h"
#include "cache.h"
#include "catalog.h"
#include "metrics.h"
#include "models.h"
#include "progress.h"
#include "safetensors.h"
#include "train.h"
#include "train_pool.h"
#include "train_sql.h"

/* Interactions of a table as (user, item, order rank) triples, in order. */
typedef struct Triples
{
	int64	   *users;
	int64	   *items;
	int64	   *order;
	int64		n;
} Triples;

/* A column of the table for a role; user and item columns must be integers. */
static void
check_integer_column(Oid relid, const char *col, const char *role)
{
	AttrNumber	att = get_attnum(relid, col);
	Oid			t;

	if (att == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist", col, get_rel_name(relid)),
				 errhint("Name the %s column with %s_column => 'column'.", role, role)));
	t = get_atttype(relid, att);
	if (t != INT2OID && t != INT4OID && t != INT8OID && strcmp(role, "order") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("%s column \"%s\" is of type %s, expected an integer type", role, col, format_type_be(t))));
}

/*
 * Read the table's (user, item) pairs ordered by user, order column and
 * physical position (the caller's privileges apply: it must be able to
 * SELECT the table).
 */
static Triples
read_table(Oid relid, const char *ucol, const char *icol, const char *ocol)
{
	Triples		tr = {0};
	char	   *qual = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), get_rel_name(relid));
	char	   *q;
	Portal		portal;
	int64		cap = 1 << 16;

	check_integer_column(relid, ucol, "user");
	check_integer_column(relid, icol, "item");
	check_integer_column(relid, ocol, "order");
	q = psprintf("SELECT %s::pg_catalog.int8, %s::pg_catalog.int8 FROM %s WHERE %s IS NOT NULL AND %s IS NOT NULL "
				 "ORDER BY 1, %s, ctid",
				 quote_identifier(ucol), quote_identifier(icol), qual,
				 quote_identifier(ucol), quote_identifier(icol), quote_identifier(ocol));
	tr.users = palloc_extended(sizeof(int64) * cap, MCXT_ALLOC_HUGE);
	tr.items = palloc_extended(sizeof(int64) * cap, MCXT_ALLOC_HUGE);
	glintru_spi_connect();
	portal = SPI_cursor_open_with_args(NULL, q, 0, NULL, NULL, NULL, true, 0);
	for (;;)
	{
		MemoryContext old;

		SPI_cursor_fetch(portal, true, 50000);
		if (SPI_processed == 0)
			break;
		old = MemoryContextSwitchTo(GetMemoryChunkContext(tr.users));
		if (tr.n + (int64) SPI_processed > cap)
		{
			while (tr.n + (int64) SPI_processed > cap)
				cap *= 2;
			tr.users = repalloc_huge(tr.users, sizeof(int64) * cap);
			tr.items = repalloc_huge(tr.items, sizeof(int64) * cap);
		}
		MemoryContextSwitchTo(old);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;

			tr.users[tr.n] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
			tr.items[tr.n] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
			tr.n++;
		}
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
	glintru_spi_finish();
	/* rows arrive in order: their position is the order key */
	tr.order = palloc_extended(sizeof(int64) * (tr.n > 0 ? tr.n : 1), MCXT_ALLOC_HUGE);
	for (int64 i = 0; i < tr.n; i++)
		tr.order[i] = i;
	return tr;
}

/* Interactions (malloc'ed by the core) of a table; errors are ereported. */
static void
table_interactions(Oid relid, const char *ucol, const char *icol, const char *ocol,
				   GlintruInteractions *x)
{
	Triples		tr = read_table(relid, ucol, icol, ocol);
	char		err[256];

	if (tr.n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("table \"%s\" has no interactions with a user and an item", get_rel_name(relid))));
	if (!glintru_interactions_from_triples(tr.users, tr.items, tr.order, tr.n, x, err, sizeof(err)))
		ereport(ERROR, (errcode(ERRCODE_DATA_EXCEPTION), errmsg("%s", err)));
	pfree(tr.users);
	pfree(tr.items);
	pfree(tr.order);
}

/* ---- options ---- */

typedef struct TrainSqlOptions
{
	GlintruTrainOptions train;
	int64		min_item_count;
	bool		replace;
	char		init_from[NAMEDATALEN]; /* model name, or "" */
} TrainSqlOptions;

/* A numeric option's value, else an error naming the option. */
static double
option_number(JsonbValue *v, const char *key)
{
	if (v->type != jbvNumeric)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be a number", key)));
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v->val.numeric)));
}

/* An integer option in lo..hi, else an error naming the option and range. */
static int
option_int(JsonbValue *v, const char *key, int lo, int hi)
{
	double		x = option_number(v, key);

	if (x != (double) (int64) x || x < lo || x > hi)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be an integer from %d to %d", key, lo, hi)));
	return (int) x;
}

/* A copy of the pinned model, in the memory context of the call. */
static void
copy_pinned_model(const GlintruModel *m, void *arg)
{
	GlintruModel **copy = arg;

	*copy = palloc_extended(m->total_bytes, MCXT_ALLOC_HUGE);
	memcpy(*copy, m, m->total_bytes);
}

/*
 * init_from: a private copy of the named model (its bytes are position
 * independent), so that nothing stays pinned while training runs and the
 * model can be replaced by its own successor.
 */
static const GlintruModel *
init_from_model(const char *name)
{
	GlintruCatalogEntry e;
	GlintruModel *copy = NULL;

	if (!glintru_catalog_find(name, &e))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("init_from model \"%s\" does not exist", name),
				 errhint("glintru_models() lists the loaded models.")));
	glintru_cache_with_pin(glintru_cache_acquire(&e), copy_pinned_model, &copy);
	return copy;
}

/* The options object of glintru_train(), checked by the core's one check. */
static void
parse_options(Jsonb *jb, TrainSqlOptions *o)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char		key[64] = "";
	char		err[256];

	glintru_train_defaults(&o->train);
	o->train.n_threads = glintru_train_pool_default_workers();	/* option "workers" */
	o->train.quiet = true;
	o->min_item_count = 0;
	o->replace = false;
	o->init_from[0] = '\0';
	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options must be a JSON object")));
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			snprintf(key, sizeof(key), "%.*s", v.val.string.len, v.val.string.val);
			continue;
		}
		if (tok != WJB_VALUE)
			continue;
		if (strcmp(key, "d") == 0)
		{
			o->train.d = option_int(&v, key, GLINTRU_TRAIN_MIN_D, GLINTRU_TRAIN_MAX_D);
			o->train.arch_set |= GLINTRU_ARCH_D;
		}
		else if (strcmp(key, "heads") == 0)
		{
			o->train.n_heads = option_int(&v, key, 1, GLINTRU_TRAIN_MAX_HEADS);
			o->train.arch_set |= GLINTRU_ARCH_HEADS;
		}
		else if (strcmp(key, "max_seq_len") == 0)
		{
			o->train.max_seq_len = option_int(&v, key, 1, GLINTRU_TRAIN_MAX_SEQ_LEN);
			o->train.arch_set |= GLINTRU_ARCH_MAX_SEQ_LEN;
		}
		else if (strcmp(key, "init_from") == 0)
		{
			if (v.type != jbvString || v.val.string.len == 0 || v.val.string.len >= NAMEDATALEN)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("option \"init_from\" must be the name of a model")));
			snprintf(o->init_from, sizeof(o->init_from), "%.*s", v.val.string.len, v.val.string.val);
		}
		else if (strcmp(key, "epochs") == 0)
			o->train.epochs = option_int(&v, key, 1, GLINTRU_TRAIN_MAX_EPOCHS);
		else if (strcmp(key, "batch_size") == 0)
			o->train.batch_size = option_int(&v, key, 1, GLINTRU_TRAIN_MAX_BATCH);
		else if (strcmp(key, "patience") == 0)
			o->train.patience = option_int(&v, key, 0, GLINTRU_TRAIN_MAX_PATIENCE);
		else if (strcmp(key, "seed") == 0)
			o->train.seed = (uint64_t) option_int(&v, key, 0, INT_MAX);
		else if (strcmp(key, "workers") == 0)
			o->train.n_threads = option_int(&v, key, 1, GLINTRU_TRAIN_MAX_WORKERS);
		else if (strcmp(key, "min_item_count") == 0)
			o->min_item_count = option_int(&v, key, 0, INT_MAX);
		else if (strcmp(key, "lr") == 0)
			o->train.lr = option_number(&v, key);	/* range: glintru_train_options_check */
		else if (strcmp(key, "weight_decay") == 0)
			o->train.weight_decay = option_number(&v, key);	/* range: the check */
		else if (strcmp(key, "clip_norm") == 0)
			o->train.clip_norm = option_number(&v, key);	/* range: the check */
		else if (strcmp(key, "dropout") == 0)
		{
			/* embedding and attention; the inner one follows (+0.1) unless given (train.h) */
			o->train.p_emb = o->train.p_att = option_number(&v, key);
			o->train.dropout_set |= GLINTRU_DROPOUT_SET;
		}
		else if (strcmp(key, "inner_dropout") == 0)
		{
			o->train.p_inner = option_number(&v, key);
			o->train.dropout_set |= GLINTRU_INNER_DROPOUT_SET;
		}
		else if (strcmp(key, "replace") == 0)
		{
			if (v.type != jbvBool)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("option \"replace\" must be true or false")));
			o->replace = v.val.boolean;
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown option \"%s\"", key),
					 errhint("Options are d, heads, max_seq_len, epochs, batch_size, lr, weight_decay, clip_norm, dropout, inner_dropout, patience, seed, min_item_count, replace, init_from, workers.")));
	}
	/* a warm start takes the architecture of its model (train.h) */
	if (o->init_from[0])
		o->train.init_from = init_from_model(o->init_from);
	glintru_train_options_inherit(&o->train);
	/* the limits the command line has too (train.h) */
	if (!glintru_train_options_check(&o->train, err, sizeof(err)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", err)));
}

/* ---- the request ---- */

/* glintru_train()'s arguments, parsed and checked (train_sql.h). */
struct GlintruTrainRequest
{
	char		name[NAMEDATALEN];
	Oid			relid;
	NameData	ucol;
	NameData	icol;
	NameData	ocol;
	TrainSqlOptions o;
	GlintruEpochReport last;	/* the last epoch's report; epoch 0 before the first */
};

/*
 * Parse and check a training's arguments (everything that can be judged
 * before the table is read); the request, and the copy of an init_from
 * model, live in the current memory context.
 */
GlintruTrainRequest *
glintru_train_request(const char *name, Oid relid, const char *ucol, const char *icol,
					  const char *ocol, Jsonb *options)
{
	GlintruTrainRequest *req = palloc0(sizeof(GlintruTrainRequest));
	GlintruCatalogEntry existing;

	glintru_models_check_name(name);
	strlcpy(req->name, name, sizeof(req->name));
	req->relid = relid;
	namestrcpy(&req->ucol, ucol);
	namestrcpy(&req->icol, icol);
	namestrcpy(&req->ocol, ocol);
	parse_options(options, &req->o);
	check_integer_column(relid, ucol, "user");
	check_integer_column(relid, icol, "item");
	check_integer_column(relid, ocol, "order");
	if (glintru_catalog_find(name, &existing) && !req->o.replace)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("model \"%s\" already exists", name),
				 errhint("Pass options => '{\"replace\": true}' to replace it.")));
	return req;
}

/* The last epoch's report of the request's training (epoch 0: none ended). */
const GlintruEpochReport *
glintru_train_request_last(const GlintruTrainRequest *req)
{
	return &req->last;
}

/* ---- training ---- */

typedef struct Progress
{
	int			slot;
	GlintruTrainRequest *req;
} Progress;

/* The engine's report after each epoch: shown to every session and as a NOTICE. */
static void
on_epoch(const GlintruEpochReport *r, void *arg)
{
	Progress   *p = arg;

	p->req->last = *r;
	p->req->last.best = NULL;	/* valid during the callback only */
	glintru_progress_update(p->slot, r->epoch, r->epochs, r->loss, r->val_ndcg10,
							r->best_val_ndcg10, r->elapsed_seconds, r->eta_seconds);
	ereport(NOTICE,
			(errmsg("epoch %d/%d: loss %.4f, validation NDCG@10 %.4f (best %.4f at epoch %d), %.1f s",
					r->epoch, r->epochs, r->loss, r->val_ndcg10, r->best_val_ndcg10, r->best_epoch,
					r->epoch_seconds)));
}

/* a cancel or termination request is pending (serviced after the engine returns) */
static bool
cancel_requested(void *arg)
{
	(void) arg;
	return QueryCancelPending || ProcDiePending;
}

/*
 * Run a request: read the table under the active snapshot (the caller's
 * SELECT rights apply), train, and store the best model (replacing one when
 * the request says so, with the attached tables rebuilt in the same
 * transaction).  hooks (may be NULL) run after the table is read and before
 * the model is stored.  Returns the model's id; stores nothing on an error
 * or a cancel.
 */
int32
glintru_train_execute(GlintruTrainRequest *req, const GlintruTrainHooks *hooks)
{
	TrainSqlOptions *o = &req->o;
	GlintruInteractions x = {0};
	GlintruSplit split = {0};
	GlintruNet *volatile net = NULL;	/* volatile: freed in PG_CATCH */
	GlintruModel *volatile m = NULL;
	uint8_t    *volatile file = NULL;
	size_t		file_len = 0;
	char		err[512] = "";
	Progress	prog;
	bytea	   *weights;

	table_interactions(req->relid, NameStr(req->ucol), NameStr(req->icol), NameStr(req->ocol), &x);
	/* a warm start keeps every item its model knows: the filter judges new items only */
	if (o->min_item_count > 1)
		glintru_filter_new_items(&x, o->min_item_count, o->train.init_from);
	if (!(o->train.init_from ? glintru_split_extend(&x, o->train.init_from, &split, err, sizeof(err))
		  : glintru_split_build(&x, &split, err, sizeof(err))))
	{
		glintru_interactions_free(&x);
		ereport(ERROR, (errcode(ERRCODE_DATA_EXCEPTION), errmsg("%s", err)));
	}
	glintru_interactions_free(&x);
	if (o->train.init_from)
		ereport(NOTICE,
				(errmsg("init_from \"%s\": %lld items keep their rows, %lld new items",
						o->init_from, (long long) o->train.init_from->config.n_rows - 1,
						(long long) (split.n_rows - o->train.init_from->config.n_rows))));

	o->train.should_stop = cancel_requested;
	o->train.stop_arg = NULL;
	/* parts 1.. in background workers (train_pool.c): a backend never forks */
	o->train.pool = glintru_train_pool_new();
	prog.req = req;
	prog.slot = -1;
	PG_TRY();
	{
		if (hooks && hooks->after_read)
			hooks->after_read(hooks->arg);
		prog.slot = glintru_progress_begin(req->name, o->train.epochs);
		net = glintru_train(&split, &o->train, on_epoch, &prog, err, sizeof(err));
		if (net)
		{
			m = glintru_net_to_model(net, &split, err, sizeof(err));
			if (m)
				file = glintru_safetensors_write(m, &file_len);
		}
	}
	PG_CATCH();
	{
		/* the engine's memory is malloc'ed: free it on the way out too */
		glintru_progress_end(prog.slot);
		if (net)
			glintru_net_free(net);
		free(m);
		glintru_split_free(&split);
		PG_RE_THROW();
	}
	PG_END_TRY();
	glintru_progress_end(prog.slot);
	if (net)
		glintru_net_free(net);
	free(m);
	glintru_split_free(&split);
	/* a cancel stops the engine between batches; now honour it */
	CHECK_FOR_INTERRUPTS();
	if (file == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("training failed: %s", err[0] ? err : "out of memory")));
	weights = palloc_extended(VARHDRSZ + file_len, MCXT_ALLOC_HUGE);
	SET_VARSIZE(weights, VARHDRSZ + file_len);
	memcpy(VARDATA(weights), file, file_len);
	free(file);
	if (hooks && hooks->before_store)
		hooks->before_store(hooks->arg);
	return glintru_models_store(req->name, weights, o->replace);
}

/* SQL glintru_train(name, table, ..., options): train a model and store it. */
PG_FUNCTION_INFO_V1(glintru_train_sql);
Datum
glintru_train_sql(PG_FUNCTION_ARGS)
{
	GlintruTrainRequest *req = glintru_train_request(text_to_cstring(PG_GETARG_TEXT_PP(0)),
													 PG_GETARG_OID(1),
													 NameStr(*PG_GETARG_NAME(2)),
													 NameStr(*PG_GETARG_NAME(3)),
													 NameStr(*PG_GETARG_NAME(4)),
													 PG_GETARG_JSONB_P(5));

	PG_RETURN_INT32(glintru_train_execute(req, NULL));
}

/* ---- evaluation ---- */

/* the sampled protocols draw the same negatives as glintru-eval's default */
#define EVAL_SEED 42

/* One result row of glintru_evaluate(): a metric and its value. */
static void
put_metric(ReturnSetInfo *rsinfo, const char *metric, double value)
{
	Datum		values[2] = {CStringGetTextDatum(metric), Float8GetDatum(value)};
	bool		nulls[2] = {false, false};

	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* SQL glintru_evaluate(model, table, ..., protocol, k): the model's metrics beside popularity's. */
PG_FUNCTION_INFO_V1(glintru_evaluate);
Datum
glintru_evaluate(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			relid = PG_GETARG_OID(1);
	char	   *ucol = NameStr(*PG_GETARG_NAME(2));
	char	   *icol = NameStr(*PG_GETARG_NAME(3));
	char	   *ocol = NameStr(*PG_GETARG_NAME(4));
	char	   *protocol_name = text_to_cstring(PG_GETARG_TEXT_PP(5));
	int32		k = PG_GETARG_INT32(6);
	GlintruProtocol protocol;
	GlintruPin	pin;

	if (!glintru_protocol_parse(protocol_name, &protocol))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown protocol \"%s\"", protocol_name),
				 errhint("Protocols are full, pop100 and uni100.")));
	if (k < 1 || k > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("k must be from 1 to 1000, not %d", k)));
	InitMaterializedSRF(fcinfo, 0);
	pin = glintru_cache_acquire_name(name);
	PG_TRY();
	{
		GlintruInteractions x = {0};
		GlintruSplit split = {0};
		GlintruNet *net;
		GlintruMetrics mm,
					pop;
		char		err[256];
		bool		ok;

		table_interactions(relid, ucol, icol, ocol, &x);
		ok = glintru_split_for_model(&x, pin.model, &split, err, sizeof(err));
		glintru_interactions_free(&x);
		if (!ok)
			ereport(ERROR, (errcode(ERRCODE_DATA_EXCEPTION), errmsg("%s", err)));
		net = glintru_net_from_model(pin.model);
		ok = net && glintru_net_evaluate(net, &split, protocol, true, k, EVAL_SEED, 1, &mm);
		if (net)
			glintru_net_free(net);
		glintru_popularity_metrics(&split, protocol, true, k, EVAL_SEED, &pop);
		glintru_split_free(&split);
		if (!ok)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory evaluating model \"%s\"", name)));
		put_metric(rsinfo, psprintf("HR@%d", k), mm.hr);
		put_metric(rsinfo, psprintf("NDCG@%d", k), mm.ndcg);
		put_metric(rsinfo, psprintf("MRR@%d", k), mm.mrr);
		put_metric(rsinfo, psprintf("popularity HR@%d", k), pop.hr);
		put_metric(rsinfo, psprintf("popularity NDCG@%d", k), pop.ndcg);
		put_metric(rsinfo, psprintf("popularity MRR@%d", k), pop.mrr);
		put_metric(rsinfo, "users", (double) mm.n);
	}
	PG_FINALLY();
	{
		glintru_cache_release(&pin);
	}
	PG_END_TRY();
	return (Datum) 0;
}
