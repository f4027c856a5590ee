/*
 * serve.c — the serving SQL functions: glintru_recommend(),
 * glintru_recommend_batch() and glintru_score() from the stored state of an
 * attached table's users, glintru_recommend_history(), glintru_score_history()
 * and glintru_user_vector() from a history given in the call.  A user or
 * history with nothing the model knows gets the most popular items.  The
 * recommend functions take business filters: candidates (rank only these,
 * scoring only their rows) and exclude (never return these).
 *
 * On a Citus coordinator a distributed table has no state of its own: a
 * call that Citus did not already run on the node of the user's shard (it
 * does for a plain SELECT * FROM glintru_recommend(...), the functions being
 * distributed functions) is forwarded there, and a batch is split by shard
 * and grouped by node, one routed call per node (citus.c).
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/lsyscache.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "cache.h"
#include "catalog.h"
#include "citus.h"
#include "forward.h"
#include "kernels.h"
#include "rank.h"
#include "state.h"
#include "stats.h"

/* users scored per GEMM: bounds the score matrix for large catalogues */
#define BATCH_USERS 64

/* What one serving call asks for. */
typedef struct Request
{
	ReturnSetInfo *rsinfo;
	int32		k;
	bool		exclude_seen;
	int32		att_id;			/* glintru_recommend, _batch */
	int32	   *att_ids;		/* a batch over several shards of a node: each user's */
	int64		user_id;		/* glintru_recommend */
	Datum	   *users;			/* glintru_recommend_batch */
	int			n_users;
	ArrayType  *history;		/* glintru_recommend_history, glintru_user_vector */
	ArrayType  *result;			/* glintru_user_vector */
	ArrayType  *candidates;		/* NULL: the whole catalogue */
	ArrayType  *exclude;		/* NULL: nothing beyond exclude_seen */
	ArrayType  *items;			/* glintru_score, glintru_score_history */
} Request;

/* A request's filters as model rows, resolved once the model is pinned. */
typedef struct Filter
{
	bool		restricted;		/* candidates given: rank only cand */
	int32	   *cand;			/* sorted, unique, known, excluded rows removed */
	int64		n_cand;
	int32	   *excl;			/* sorted, unique, known */
	int64		n_excl;
} Filter;

/* ---- shared pieces ---- */

/* k must be positive. */
static void
check_k(int32 k)
{
	if (k < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("k must be at least 1, not %d", k)));
}

/* How many items a top-k of this model can return: k, or every real item. */
static int
top_count(const GlintruModel *m, int32 k)
{
	return (int) Min((int64) k, m->config.n_rows - 1);
}

/* Scratch space of one forward pass. */
static float *
forward_scratch(const GlintruModel *m)
{
	return palloc_extended(sizeof(float) * glintru_forward_scratch_floats(&m->config), MCXT_ALLOC_HUGE);
}

/* Emit nb ranked items as result rows (item_id, score), after a user id if have_user. */
static void
put_items(ReturnSetInfo *rsinfo, const GlintruModel *m, const GlintruScored *best, int nb,
		  bool have_user, Datum user)
{
	for (int i = 0; i < nb; i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};
		int			c = 0;

		if (have_user)
			values[c++] = user;
		values[c++] = Int64GetDatum(glintru_item_ids(m)[best[i].row]);
		values[c++] = Float4GetDatum(best[i].score);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/* The kk best items for user vector u, skipping exclude[row] != 0 (NULL: none). */
static int
rank_vector(const GlintruModel *m, const float *u, const uint8 *exclude, int kk, GlintruScored *best)
{
	int64		n_rows = m->config.n_rows;
	float	   *scores = palloc_extended(sizeof(float) * n_rows, MCXT_ALLOC_HUGE);
	int			nb;

	glintru_score_items(glintru_param(m, GT_ITEM_EMBEDDING), n_rows, m->config.d, u, scores);
	nb = glintru_top_k(scores, n_rows, exclude, kk, best);
	pfree(scores);
	return nb;
}

/* The user vector of a user's stored state, and its window rows marked in exclude; false if no state. */
static bool
user_vector_from_state(const GlintruModel *m, int32 att_id, int64 user_id, float *u, float *scratch,
					   uint8 *exclude)
{
	bytea	   *b = glintru_state_fetch(att_id, user_id);
	GlintruState *s = glintru_state_of_blob(m, b);

	if (s == NULL)
		return false;
	glintru_state_user_vector(m, s, u, scratch);
	if (exclude)
	{
		int32	   *win = palloc(sizeof(int32) * m->config.max_seq_len);
		int32		n = glintru_state_window(m, s, win);

		for (int i = 0; i < n; i++)
			exclude[win[i]] = 1;
		pfree(win);
	}
	pfree(s);
	pfree(b);
	return true;
}

/* An item-id array argument, deconstructed; multi-dimensional arrays are an error. */
static int
id_array(ArrayType *arr, const char *what, const char *hint, Datum **elems, bool **nulls)
{
	int			n;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", what),
				 hint ? errhint("%s", hint) : 0));
	deconstruct_array(arr, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, elems, nulls, &n);
	return n;
}

/* The row of each element of an id array: -1 for a NULL or an id the model does not know. */
static int32 *
id_rows(const GlintruModel *m, ArrayType *arr, const char *what, const char *hint, int *n_out,
		Datum **elems, bool **nulls)
{
	int			n = id_array(arr, what, hint, elems, nulls);
	int32	   *rows = palloc(sizeof(int32) * (n > 0 ? n : 1));

	for (int i = 0; i < n; i++)
		rows[i] = (*nulls)[i] ? -1 : (int32) glintru_item_row(m, DatumGetInt64((*elems)[i]));
	*n_out = n;
	return rows;
}

/* History array → known item rows, in order (unknown ids skipped, NULLs an error). */
static int32 *
history_rows(const GlintruModel *m, ArrayType *arr, int64 *n_out)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int32	   *rows = id_rows(m, arr, "history", NULL, &n, &elems, &nulls);
	int64		k = 0;

	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("history must not contain null item ids"),
					 errdetail("Element %d is null.", i + 1)));
		if (rows[i] > 0)
			rows[k++] = rows[i];
	}
	pfree(elems);
	pfree(nulls);
	*n_out = k;
	return rows;
}

/*
 * A filter array → its known rows, sorted and unique: a filter is a set, so
 * order and duplicates do not matter, and NULL elements and unknown ids,
 * which name no item of the model, are ignored.
 */
static int32 *
filter_rows(const GlintruModel *m, ArrayType *arr, const char *what, int64 *n_out)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int32	   *rows = id_rows(m, arr, what, "Pass a flat bigint[] of item ids.", &n, &elems, &nulls);
	int64		k = 0;

	for (int i = 0; i < n; i++)
		if (rows[i] > 0)
			rows[k++] = rows[i];
	pfree(elems);
	pfree(nulls);
	*n_out = glintru_rows_sort_unique(rows, k, m->config.n_rows);
	return rows;
}

/* The request's candidates and exclude as rows; the candidates lose the excluded rows here, once. */
static void
filter_init(Filter *f, const GlintruModel *m, const Request *r)
{
	memset(f, 0, sizeof(*f));
	if (r->exclude)
		f->excl = filter_rows(m, r->exclude, "exclude", &f->n_excl);
	if (r->candidates)
	{
		f->restricted = true;
		f->cand = filter_rows(m, r->candidates, "candidates", &f->n_cand);
		f->n_cand = glintru_rows_subtract(f->cand, f->n_cand, f->excl, f->n_excl);
	}
}

/* Exclude n more rows of a model of f_rows rows (a history's seen items): from the candidates, or added to the exclude set. */
static void
filter_exclude_rows(Filter *f, const int32 *rows, int64 n, int64 f_rows)
{
	int32	   *more;
	int64		nm;

	if (n == 0)
		return;
	more = palloc(sizeof(int32) * (n + f->n_excl));
	memcpy(more, rows, sizeof(int32) * n);
	if (f->restricted)
	{
		nm = glintru_rows_sort_unique(more, n, f_rows);
		f->n_cand = glintru_rows_subtract(f->cand, f->n_cand, more, nm);
		pfree(more);
		return;
	}
	if (f->n_excl > 0)
		memcpy(more + n, f->excl, sizeof(int32) * f->n_excl);
	f->n_excl = glintru_rows_sort_unique(more, n + f->n_excl, f_rows);
	f->excl = more;
}

/*
 * The byte mask of excluded rows a ranking reads, or NULL if it excludes
 * nothing: the exclude rows marked for a catalogue scan (a candidate list
 * has lost them already), and room for the window when window is set.
 */
static uint8 *
exclusion_mask(const GlintruModel *m, const Filter *f, bool window)
{
	uint8	   *mask;

	if (!window && (f->restricted || f->n_excl == 0))
		return NULL;
	mask = palloc_extended(m->config.n_rows, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	if (!f->restricted)
		for (int64 i = 0; i < f->n_excl; i++)
			mask[f->excl[i]] = 1;
	return mask;
}

/*
 * The kk best items for user vector u under the filter, skipping mask[row]
 * != 0 (NULL: none): a candidate list scores only its rows, O(|list|·d), with
 * the kernel of the catalogue scan, so the scores are the same bits.
 */
static int
rank_filtered(const GlintruModel *m, const float *u, const Filter *f, const uint8 *mask, int kk,
			  GlintruScored *best)
{
	float	   *scores;
	int			nb;

	if (!f->restricted)
		return rank_vector(m, u, mask, kk, best);
	scores = palloc_extended(sizeof(float) * Max(f->n_cand, 1), MCXT_ALLOC_HUGE);
	glintru_score_rows(glintru_param(m, GT_ITEM_EMBEDDING), m->config.d, u, f->cand, f->n_cand, scores);
	nb = glintru_top_k_rows(scores, f->cand, f->n_cand, mask, kk, best);
	pfree(scores);
	return nb;
}

/* The kk most popular items under the filter, scored by popularity: what a user without state is served. */
static int
rank_popular(const GlintruModel *m, const Filter *f, int kk, GlintruScored *best)
{
	const float *pop = glintru_popularity(m);
	float	   *scores;
	int			nb;

	if (!f->restricted)
		return glintru_popular_top_k_excluding(m, kk, f->excl, f->n_excl, best);
	if (pop == NULL)
		return 0;				/* as without filters: nothing to say */
	scores = palloc_extended(sizeof(float) * Max(f->n_cand, 1), MCXT_ALLOC_HUGE);
	for (int64 i = 0; i < f->n_cand; i++)
		scores[i] = pop[f->cand[i]];
	nb = glintru_top_k_rows(scores, f->cand, f->n_cand, NULL, kk, best);
	pfree(scores);
	return nb;
}

/* The user vector of a history of known item rows. */
static float *
user_vector(const GlintruModel *m, const int32 *rows, int64 n)
{
	float	   *u = palloc(sizeof(float) * m->config.d);
	float	   *scratch = forward_scratch(m);

	glintru_forward_user_vector(m, rows, n, u, scratch);
	pfree(scratch);
	return u;
}

/*
 * The user vector of the request's history, or NULL if it has no item the
 * model knows; its known rows in *rows_out / *n_out when asked.
 */
static float *
history_user_vector(const GlintruModel *m, const Request *r, int32 **rows_out, int64 *n_out)
{
	int64		n;
	int32	   *rows = history_rows(m, r->history, &n);

	if (rows_out)
		*rows_out = rows;
	if (n_out)
		*n_out = n;
	return n > 0 ? user_vector(m, rows, n) : NULL;
}

/*
 * Serve a request from the attachment the optional interactions argument
 * (argument att_arg) names, or the only one: fn runs with the model its
 * states were built with.
 */
static void
serve_with(FunctionCallInfo fcinfo, Request *r, GlintruPinnedFn fn, GlintruAttachment a, instr_time start)
{
	GlintruStatsEntry *st;

	st = glintru_stats_entry(a.model_id, a.id);
	r->att_id = a.id;
	InitMaterializedSRF(fcinfo, 0);
	glintru_cache_with_pin(glintru_state_model(&a), fn, r);
	glintru_stats_call(st, (uint64) tuplestore_tuple_count(r->rsinfo->setResult), start);
}

/*
 * Serve a request from the attachment the optional interactions argument
 * (att_arg) names, or the only one; for a distributed table the shard of
 * r->user_id when by_user.  Returns the coordinator's record of a
 * distributed table instead of serving (*logical set, the result
 * initialised): the caller routes the call.
 */
static void
serve_attached(FunctionCallInfo fcinfo, Request *r, GlintruPinnedFn fn, int att_arg, bool by_user,
			   GlintruAttachment *logical)
{
	instr_time	start;
	GlintruAttachment a;
	bool		have_relid = !PG_ARGISNULL(att_arg);
	Oid			relid = have_relid ? PG_GETARG_OID(att_arg) : InvalidOid;

	INSTR_TIME_SET_CURRENT(start);
	a = by_user ? glintru_attachment_resolve_user(have_relid, relid, r->user_id)
		: glintru_attachment_resolve(have_relid, relid);
	logical->id = 0;
	if (GLINTRU_ATTACHMENT_IS_LOGICAL(&a))
	{
		*logical = a;
		InitMaterializedSRF(fcinfo, 0);
		return;
	}
	serve_with(fcinfo, r, fn, a, start);
}

/* The quoted schema of the SQL function being called (the extension's). */
static const char *
own_schema(FunctionCallInfo fcinfo)
{
	return quote_identifier(get_namespace_name(get_func_namespace(fcinfo->flinfo->fn_oid)));
}

/*
 * Serve a request from the model named name (functions given a history):
 * fn runs with the model pinned, and the call is counted for (model, 0).
 */
static void
serve_named(Request *r, const char *name, GlintruPinnedFn fn)
{
	instr_time	start;
	GlintruCatalogEntry e;
	GlintruStatsEntry *st;

	INSTR_TIME_SET_CURRENT(start);
	if (!glintru_catalog_find(name, &e))
		glintru_catalog_no_such_model(name);
	st = glintru_stats_entry(e.id, 0);
	glintru_cache_with_pin(glintru_cache_acquire(&e), fn, r);
	glintru_stats_call(st, r->rsinfo ? (uint64) tuplestore_tuple_count(r->rsinfo->setResult)
					   : (uint64) (r->result != NULL), start);
}

/* Read k and exclude_seen (arguments 1 and 2), which the caller checked are not NULL. */
static void
request_init(Request *r, FunctionCallInfo fcinfo)
{
	memset(r, 0, sizeof(*r));
	r->rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	r->k = PG_GETARG_INT32(1);
	r->exclude_seen = PG_GETARG_BOOL(2);
	check_k(r->k);
}

/*
 * The optional candidates and exclude arguments (argno, argno + 1): absent
 * when an older SQL declaration calls this library, or NULL, they filter
 * nothing.
 */
static void
request_filters(Request *r, FunctionCallInfo fcinfo, int argno)
{
	if (PG_NARGS() > argno && !PG_ARGISNULL(argno))
		r->candidates = PG_GETARG_ARRAYTYPE_P(argno);
	if (PG_NARGS() > argno + 1 && !PG_ARGISNULL(argno + 1))
		r->exclude = PG_GETARG_ARRAYTYPE_P(argno + 1);
}

/* ---- from stored state ---- */

/* glintru_recommend() with the model pinned. */
static void
recommend_pinned(const GlintruModel *m, void *arg)
{
	Request    *r = arg;
	int			kk = top_count(m, r->k);
	GlintruScored *best = palloc(sizeof(GlintruScored) * kk);
	float	   *u = palloc(sizeof(float) * m->config.d);
	Filter		f;
	uint8	   *exclude;
	int			nb;

	filter_init(&f, m, r);
	exclude = exclusion_mask(m, &f, r->exclude_seen);
	if (user_vector_from_state(m, r->att_id, r->user_id, u, forward_scratch(m),
							   r->exclude_seen ? exclude : NULL))
		nb = rank_filtered(m, u, &f, exclude, kk, best);
	else
		nb = rank_popular(m, &f, kk, best);	/* a user with no state */
	put_items(r->rsinfo, m, best, nb, false, (Datum) 0);
}

/* SQL glintru_recommend(user_id, k, exclude_seen, interactions): top-k from the user's state. */
PG_FUNCTION_INFO_V1(glintru_recommend);
Datum
glintru_recommend(PG_FUNCTION_ARGS)
{
	Request		r;
	GlintruAttachment logical;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("user_id, k and exclude_seen must not be null")));
	request_init(&r, fcinfo);
	r.user_id = PG_GETARG_INT64(0);
	request_filters(&r, fcinfo, 4);
	serve_attached(fcinfo, &r, recommend_pinned, 3, true, &logical);
	if (logical.id != 0)
	{
		/* a distributed table: the same call, run by Citus on the node of the user's shard */
		Oid			types[6] = {INT8OID, INT4OID, BOOLOID, REGCLASSOID, INT8ARRAYOID, INT8ARRAYOID};
		Datum		args[6] = {PG_GETARG_DATUM(0), PG_GETARG_DATUM(1), PG_GETARG_DATUM(2),
		ObjectIdGetDatum(logical.relid), PointerGetDatum(r.candidates), PointerGetDatum(r.exclude)};
		char		nulls[7] = "      ";

		nulls[4] = r.candidates ? ' ' : 'n';
		nulls[5] = r.exclude ? ' ' : 'n';
		glintru_citus_forward(psprintf("SELECT item_id, score FROM %s.glintru_recommend($1, $2, $3, $4, $5, $6)",
									   own_schema(fcinfo)),
							  6, types, args, nulls, r.rsinfo, "glintru_recommend");
	}
	return (Datum) 0;
}

/* The attachment whose state user i of a batch has. */
static int32
batch_att(const Request *r, int i)
{
	return r->att_ids ? r->att_ids[i] : r->att_id;
}

/* Mark the exclude rows in one user's slot of a batch's masks (cleared after its ranking). */
static void
batch_mark_excluded(const Filter *f, uint8 *slot)
{
	for (int64 i = 0; i < f->n_excl; i++)
		slot[f->excl[i]] = 1;
}

/* Score and emit one block of up to BATCH_USERS users of a batch (no candidates: one GEMM). */
static void
batch_block(const Request *r, const GlintruModel *m, const Filter *f, int b0, float *U, float *scores,
			uint8 *exclude, float *scratch, GlintruScored *best)
{
	const int	d = m->config.d;
	int64		n_rows = m->config.n_rows;
	int			kk = top_count(m, r->k);
	int			nb_users = Min(BATCH_USERS, r->n_users - b0);
	int			packed = 0;
	int			slot_of[BATCH_USERS];

	/* user vectors of the users with state, packed for one GEMM */
	for (int j = 0; j < nb_users; j++)
	{
		bool		has = user_vector_from_state(m, batch_att(r, b0 + j), DatumGetInt64(r->users[b0 + j]),
												 U + (size_t) packed * d, scratch,
												 r->exclude_seen ? exclude + (size_t) packed * n_rows : NULL);

		if (has)
			batch_mark_excluded(f, exclude + (size_t) packed * n_rows);
		slot_of[j] = has ? packed++ : -1;
	}
	if (packed > 0)
		glintru_linear(U, packed, d, glintru_param(m, GT_ITEM_EMBEDDING), NULL, (int) n_rows, scores);
	for (int j = 0; j < nb_users; j++)
	{
		int			nb;

		if (slot_of[j] >= 0)
		{
			uint8	   *ex = r->exclude_seen || f->n_excl > 0 ? exclude + (size_t) slot_of[j] * n_rows : NULL;

			nb = glintru_top_k(scores + (size_t) slot_of[j] * n_rows, n_rows, ex, kk, best);
			if (ex)
				memset(ex, 0, n_rows);
		}
		else
			nb = rank_popular(m, f, kk, best);
		put_items(r->rsinfo, m, best, nb, true, r->users[b0 + j]);
	}
}

/*
 * A batch with candidates: per user, the candidate rows only (no GEMM over
 * the catalogue).  One window mask serves every user: only candidate rows
 * are ever read, so clearing those readies it for the next user.
 */
static void
batch_candidates(const Request *r, const GlintruModel *m, const Filter *f)
{
	int			kk = top_count(m, r->k);
	GlintruScored *best = palloc(sizeof(GlintruScored) * kk);
	float	   *scratch = forward_scratch(m);
	float	   *u = palloc(sizeof(float) * m->config.d);
	uint8	   *mask = exclusion_mask(m, f, r->exclude_seen);

	for (int j = 0; j < r->n_users; j++)
	{
		int			nb;

		if (user_vector_from_state(m, batch_att(r, j), DatumGetInt64(r->users[j]), u, scratch, mask))
		{
			nb = rank_filtered(m, u, f, mask, kk, best);
			if (mask)
				for (int64 i = 0; i < f->n_cand; i++)
					mask[f->cand[i]] = 0;
		}
		else
			nb = rank_popular(m, f, kk, best);
		put_items(r->rsinfo, m, best, nb, true, r->users[j]);
	}
}

/* glintru_recommend_batch() with the model pinned. */
static void
recommend_batch_pinned(const GlintruModel *m, void *arg)
{
	Request    *r = arg;
	int64		n_rows = m->config.n_rows;
	GlintruScored *best;
	float	   *scratch,
			   *U,
			   *scores;
	uint8	   *exclude;
	Filter		f;

	filter_init(&f, m, r);
	if (f.restricted)
	{
		batch_candidates(r, m, &f);
		return;
	}
	best = palloc(sizeof(GlintruScored) * top_count(m, r->k));
	scratch = forward_scratch(m);
	U = palloc(sizeof(float) * m->config.d * BATCH_USERS);
	scores = palloc_extended(sizeof(float) * n_rows * BATCH_USERS, MCXT_ALLOC_HUGE);
	exclude = palloc_extended(n_rows * BATCH_USERS, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	for (int b0 = 0; b0 < r->n_users; b0 += BATCH_USERS)
		batch_block(r, m, &f, b0, U, scores, exclude, scratch, best);
}

/*
 * Read a batch request whose user_ids, k, exclude_seen, interactions,
 * candidates and exclude are arguments off … off + 5.
 */
static void
batch_request(FunctionCallInfo fcinfo, Request *r, int off)
{
	ArrayType  *arr;
	bool	   *nulls;

	if (PG_ARGISNULL(off) || PG_ARGISNULL(off + 1) || PG_ARGISNULL(off + 2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("user_ids, k and exclude_seen must not be null")));
	arr = PG_GETARG_ARRAYTYPE_P(off);
	memset(r, 0, sizeof(*r));
	r->rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	r->k = PG_GETARG_INT32(off + 1);
	r->exclude_seen = PG_GETARG_BOOL(off + 2);
	check_k(r->k);
	r->n_users = id_array(arr, "user_ids", NULL, &r->users, &nulls);
	for (int i = 0; i < r->n_users; i++)
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("user_ids must not contain nulls")));
	request_filters(r, fcinfo, off + 4);
}

/*
 * A batch on the coordinator's record of a distributed table: the users
 * split by the shard that holds them and grouped by that shard's node, one
 * call routed to each node (glintru.citus_recommend_batch, routed by the
 * group's first user), which serves its shards' users; the rows come node
 * by node.  Inside a transaction block, one call per shard instead: Citus
 * then runs each on the connection that wrote that shard in this
 * transaction (several may go to one node), so it sees those writes.
 */
static void
batch_distributed(const Request *r, Oid logical_relid)
{
	List	   *shards = glintru_citus_shards(logical_relid);
	int32	   *group_of = palloc(sizeof(int32) * Max(r->n_users, 1));
	bool	   *done = palloc0(sizeof(bool) * Max(r->n_users, 1));
	Datum	   *ids = palloc(sizeof(Datum) * Max(r->n_users, 1));

	bool		per_shard = IsTransactionBlock();

	for (int i = 0; i < r->n_users; i++)
	{
		int			sh = glintru_citus_shard_of(shards, DatumGetInt64(r->users[i]));

		group_of[i] = per_shard ? sh : ((GlintruCitusShard *) list_nth(shards, sh))->group_id;
	}
	for (int first = 0; first < r->n_users; first++)
	{
		int			n = 0;
		Oid			types[7] = {INT8OID, INT8ARRAYOID, INT4OID, BOOLOID, REGCLASSOID, INT8ARRAYOID, INT8ARRAYOID};
		Datum		args[7];
		char		nulls[8] = "       ";

		if (done[first])
			continue;
		for (int i = first; i < r->n_users; i++)
			if (group_of[i] == group_of[first])
			{
				ids[n++] = r->users[i];
				done[i] = true;
			}
		args[0] = ids[0];
		args[1] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[2] = Int32GetDatum(r->k);
		args[3] = BoolGetDatum(r->exclude_seen);
		args[4] = ObjectIdGetDatum(logical_relid);
		args[5] = PointerGetDatum(r->candidates);
		args[6] = PointerGetDatum(r->exclude);
		nulls[5] = r->candidates ? ' ' : 'n';
		nulls[6] = r->exclude ? ' ' : 'n';
		glintru_citus_forward("SELECT user_id, item_id, score FROM glintru.citus_recommend_batch($1, $2, $3, $4, $5, $6, $7)",
							  7, types, args, nulls, r->rsinfo, "glintru_recommend_batch");
	}
}

/* SQL glintru_recommend_batch(user_ids, k, exclude_seen, interactions): top-k of many users. */
PG_FUNCTION_INFO_V1(glintru_recommend_batch);
Datum
glintru_recommend_batch(PG_FUNCTION_ARGS)
{
	Request		r;
	GlintruAttachment logical;

	batch_request(fcinfo, &r, 0);
	serve_attached(fcinfo, &r, recommend_batch_pinned, 3, false, &logical);
	if (logical.id != 0)
		batch_distributed(&r, logical.relid);
	return (Datum) 0;
}

/*
 * SQL glintru.citus_recommend_batch(route, user_ids, ...): a batch of users
 * whose shards are on the node Citus routed it to by route (the first of
 * them); each user is served from the attachment of its shard.
 */
PG_FUNCTION_INFO_V1(glintru_citus_recommend_batch);
Datum
glintru_citus_recommend_batch(PG_FUNCTION_ARGS)
{
	Request		r;
	GlintruAttachment a;
	instr_time	start;
	List	   *shards;

	INSTR_TIME_SET_CURRENT(start);
	if (PG_ARGISNULL(0) || PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("route and interactions must not be null")));
	batch_request(fcinfo, &r, 1);
	a = glintru_attachment_resolve_user(true, PG_GETARG_OID(4), PG_GETARG_INT64(0));
	if (GLINTRU_ATTACHMENT_IS_LOGICAL(&a))
		glintru_citus_not_routed("glintru_recommend_batch");
	shards = glintru_attachments_of_logical(a.logical_relid);
	r.att_ids = palloc(sizeof(int32) * Max(r.n_users, 1));
	for (int i = 0; i < r.n_users; i++)
	{
		GlintruAttachment u = glintru_attachment_of_user(shards, a.logical_relid, DatumGetInt64(r.users[i]));

		/* one model for the whole batch: every shard is attached with the same one */
		if (u.model_id != a.model_id || u.model_version != a.model_version)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the shards of table %s on this node have states of different model versions",
							get_rel_name(a.logical_relid)),
					 errhint("Run glintru_citus_sync() on the coordinator.")));
		r.att_ids[i] = u.id;
	}
	serve_with(fcinfo, &r, recommend_batch_pinned, a, start);
	return (Datum) 0;
}

/* ---- from a history in the call ---- */

/* glintru_user_vector() with the model pinned. */
static void
user_vector_pinned(const GlintruModel *m, void *arg)
{
	Request    *r = arg;
	float	   *u = history_user_vector(m, r, NULL, NULL);

	if (u)
	{
		Datum	   *d = palloc(sizeof(Datum) * m->config.d);

		for (int i = 0; i < m->config.d; i++)
			d[i] = Float4GetDatum(u[i]);
		r->result = construct_array(d, m->config.d, FLOAT4OID, 4, true, TYPALIGN_INT);
	}
}

/* SQL glintru_user_vector(model, history): the model's user vector of a history. */
PG_FUNCTION_INFO_V1(glintru_user_vector);
Datum
glintru_user_vector(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Request		r = {0};

	r.history = PG_GETARG_ARRAYTYPE_P(1);
	serve_named(&r, name, user_vector_pinned);
	/* a history with no item the model knows has no user vector */
	if (r.result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_ARRAYTYPE_P(r.result);
}

/* glintru_recommend_history() with the model pinned. */
static void
recommend_history_pinned(const GlintruModel *m, void *arg)
{
	Request    *r = arg;
	int64		n;
	int32	   *rows;
	float	   *u = history_user_vector(m, r, &rows, &n);
	int			kk = top_count(m, r->k);
	GlintruScored *best = palloc(sizeof(GlintruScored) * kk);
	Filter		f;
	int			nb;

	filter_init(&f, m, r);
	/* the seen items are known here: a set to exclude like the exclude argument */
	if (r->exclude_seen)
		filter_exclude_rows(&f, rows, n, m->config.n_rows);
	if (u)
		nb = rank_filtered(m, u, &f, exclusion_mask(m, &f, false), kk, best);
	else
		nb = rank_popular(m, &f, kk, best);	/* no known history */
	put_items(r->rsinfo, m, best, nb, false, (Datum) 0);
}

/* SQL glintru_recommend_history(model, history, k, exclude_seen): top-k after a history. */
PG_FUNCTION_INFO_V1(glintru_recommend_history);
Datum
glintru_recommend_history(PG_FUNCTION_ARGS)
{
	char	   *name;
	Request		r = {0};

	InitMaterializedSRF(fcinfo, 0);
	/* no longer STRICT (NULL filters mean none), but NULL here still means no rows, as before */
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		return (Datum) 0;
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	r.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	r.history = PG_GETARG_ARRAYTYPE_P(1);
	r.k = PG_GETARG_INT32(2);
	r.exclude_seen = PG_GETARG_BOOL(3);
	check_k(r.k);
	request_filters(&r, fcinfo, 4);
	serve_named(&r, name, recommend_history_pinned);
	return (Datum) 0;
}

/* ---- scores of given items ---- */

/*
 * Emit one row per element of r->items, in order: the item and its score
 * for user vector u, or, with u NULL (no state, no known history), the
 * popularity score such a user is served; a NULL score where there is none
 * (a NULL element, an id the model does not know, no popularity).
 */
static void
put_scores(const Request *r, const GlintruModel *m, const float *u)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int32	   *rows = id_rows(m, r->items, "items", "Pass a flat bigint[] of item ids.", &n, &elems, &nulls);
	const float *pop = glintru_popularity(m);
	int32	   *known = palloc(sizeof(int32) * (n > 0 ? n : 1));
	float	   *ks = palloc(sizeof(float) * (n > 0 ? n : 1));
	int64		nk = 0;

	for (int i = 0; i < n; i++)
		if (rows[i] > 0)
			known[nk++] = rows[i];
	if (u)
		glintru_score_rows(glintru_param(m, GT_ITEM_EMBEDDING), m->config.d, u, known, nk, ks);
	else if (pop)
		for (int64 i = 0; i < nk; i++)
			ks[i] = pop[known[i]];
	nk = 0;
	for (int i = 0; i < n; i++)
	{
		Datum		values[2] = {elems[i], (Datum) 0};
		bool		isnull[2] = {nulls[i], rows[i] <= 0 || (u == NULL && pop == NULL)};

		if (rows[i] > 0)
			values[1] = Float4GetDatum(ks[nk++]);
		tuplestore_putvalues(r->rsinfo->setResult, r->rsinfo->setDesc, values, isnull);
	}
}

/* glintru_score() with the model pinned. */
static void
score_pinned(const GlintruModel *m, void *arg)
{
	Request    *r = arg;
	float	   *u = palloc(sizeof(float) * m->config.d);
	bool		has = user_vector_from_state(m, r->att_id, r->user_id, u, forward_scratch(m), NULL);

	put_scores(r, m, has ? u : NULL);
}

/* SQL glintru_score(user_id, items, interactions): the user's score of each given item. */
PG_FUNCTION_INFO_V1(glintru_score);
Datum
glintru_score(PG_FUNCTION_ARGS)
{
	Request		r = {0};
	GlintruAttachment logical;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("user_id and items must not be null"),
				 errhint("Pass an empty array to score no items.")));
	r.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	r.user_id = PG_GETARG_INT64(0);
	r.items = PG_GETARG_ARRAYTYPE_P(1);
	serve_attached(fcinfo, &r, score_pinned, 2, true, &logical);
	if (logical.id != 0)
	{
		Oid			types[3] = {INT8OID, INT8ARRAYOID, REGCLASSOID};
		Datum		args[3] = {PG_GETARG_DATUM(0), PointerGetDatum(r.items), ObjectIdGetDatum(logical.relid)};

		glintru_citus_forward(psprintf("SELECT item_id, score FROM %s.glintru_score($1, $2, $3)", own_schema(fcinfo)),
							  3, types, args, NULL, r.rsinfo, "glintru_score");
	}
	return (Datum) 0;
}

/* glintru_score_history() with the model pinned. */
static void
score_history_pinned(const GlintruModel *m, void *arg)
{
	put_scores(arg, m, history_user_vector(m, arg, NULL, NULL));
}

/* SQL glintru_score_history(model, history, items): the score of each given item after a history. */
PG_FUNCTION_INFO_V1(glintru_score_history);
Datum
glintru_score_history(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Request		r = {0};

	r.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	r.history = PG_GETARG_ARRAYTYPE_P(1);
	r.items = PG_GETARG_ARRAYTYPE_P(2);
	InitMaterializedSRF(fcinfo, 0);
	serve_named(&r, name, score_history_pinned);
	return (Datum) 0;
}
