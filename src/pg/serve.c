/*
 * serve.c — the serving SQL functions: glintru_recommend() and
 * glintru_recommend_batch() from the stored state of an attached table's
 * users, glintru_recommend_history() and glintru_user_vector() from a
 * history given in the call.  A user or history with nothing the model
 * knows gets the most popular items.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "cache.h"
#include "catalog.h"
#include "forward.h"
#include "kernels.h"
#include "rank.h"
#include "state.h"

/* users scored per GEMM: bounds the score matrix for large catalogues */
#define BATCH_USERS 64

/* What one serving call asks for. */
typedef struct Request
{
	ReturnSetInfo *rsinfo;
	int32		k;
	bool		exclude_seen;
	int32		att_id;			/* glintru_recommend, _batch */
	int64		user_id;		/* glintru_recommend */
	Datum	   *users;			/* glintru_recommend_batch */
	int			n_users;
	ArrayType  *history;		/* glintru_recommend_history, glintru_user_vector */
	ArrayType  *result;			/* glintru_user_vector */
} Request;

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

/* History array → known item rows (unknown ids skipped). */
static int32 *
history_rows(const GlintruModel *m, ArrayType *arr, int64 *n_out)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int32	   *rows;
	int64		k = 0;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("history must be a one-dimensional array")));
	deconstruct_array(arr, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, &nulls, &n);
	rows = palloc(sizeof(int32) * (n > 0 ? n : 1));
	for (int i = 0; i < n; i++)
	{
		int64		r;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("history must not contain null item ids"),
					 errdetail("Element %d is null.", i + 1)));
		r = glintru_item_row(m, DatumGetInt64(elems[i]));
		if (r > 0)
			rows[k++] = (int32) r;
	}
	pfree(elems);
	pfree(nulls);
	*n_out = k;
	return rows;
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
 * Serve a request from the attachment the optional interactions argument
 * (argument 3) names, or the only one: fn runs with the model its states
 * were built with.
 */
static void
serve_attached(FunctionCallInfo fcinfo, Request *r, GlintruPinnedFn fn)
{
	GlintruAttachment a = glintru_attachment_resolve(!PG_ARGISNULL(3),
													 PG_ARGISNULL(3) ? InvalidOid : PG_GETARG_OID(3));

	r->att_id = a.id;
	InitMaterializedSRF(fcinfo, 0);
	glintru_cache_with_pin(glintru_state_model(&a), fn, r);
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

/* ---- from stored state ---- */

/* glintru_recommend() with the model pinned. */
static void
recommend_pinned(const GlintruModel *m, void *arg)
{
	Request    *r = arg;
	int			kk = top_count(m, r->k);
	GlintruScored *best = palloc(sizeof(GlintruScored) * kk);
	float	   *u = palloc(sizeof(float) * m->config.d);
	uint8	   *exclude = r->exclude_seen
		? palloc_extended(m->config.n_rows, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO) : NULL;
	int			nb;

	if (user_vector_from_state(m, r->att_id, r->user_id, u, forward_scratch(m), exclude))
		nb = rank_vector(m, u, exclude, kk, best);
	else
		nb = glintru_popular_top_k(m, kk, best);	/* a user with no state */
	put_items(r->rsinfo, m, best, nb, false, (Datum) 0);
}

/* SQL glintru_recommend(user_id, k, exclude_seen, interactions): top-k from the user's state. */
PG_FUNCTION_INFO_V1(glintru_recommend);
Datum
glintru_recommend(PG_FUNCTION_ARGS)
{
	Request		r;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("user_id, k and exclude_seen must not be null")));
	request_init(&r, fcinfo);
	r.user_id = PG_GETARG_INT64(0);
	serve_attached(fcinfo, &r, recommend_pinned);
	return (Datum) 0;
}

/* Score and emit one block of up to BATCH_USERS users of a batch. */
static void
batch_block(const Request *r, const GlintruModel *m, int b0, float *U, float *scores, uint8 *exclude,
			float *scratch, GlintruScored *best)
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
		bool		has = user_vector_from_state(m, r->att_id, DatumGetInt64(r->users[b0 + j]),
												 U + (size_t) packed * d, scratch,
												 r->exclude_seen ? exclude + (size_t) packed * n_rows : NULL);

		slot_of[j] = has ? packed++ : -1;
	}
	if (packed > 0)
		glintru_linear(U, packed, d, glintru_param(m, GT_ITEM_EMBEDDING), NULL, (int) n_rows, scores);
	for (int j = 0; j < nb_users; j++)
	{
		int			nb;

		if (slot_of[j] >= 0)
		{
			uint8	   *ex = r->exclude_seen ? exclude + (size_t) slot_of[j] * n_rows : NULL;

			nb = glintru_top_k(scores + (size_t) slot_of[j] * n_rows, n_rows, ex, kk, best);
			if (ex)
				memset(ex, 0, n_rows);
		}
		else
			nb = glintru_popular_top_k(m, kk, best);
		put_items(r->rsinfo, m, best, nb, true, r->users[b0 + j]);
	}
}

/* glintru_recommend_batch() with the model pinned. */
static void
recommend_batch_pinned(const GlintruModel *m, void *arg)
{
	Request    *r = arg;
	int64		n_rows = m->config.n_rows;
	GlintruScored *best = palloc(sizeof(GlintruScored) * top_count(m, r->k));
	float	   *scratch = forward_scratch(m);
	float	   *U = palloc(sizeof(float) * m->config.d * BATCH_USERS);
	float	   *scores = palloc_extended(sizeof(float) * n_rows * BATCH_USERS, MCXT_ALLOC_HUGE);
	uint8	   *exclude = palloc_extended(n_rows * BATCH_USERS, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);

	for (int b0 = 0; b0 < r->n_users; b0 += BATCH_USERS)
		batch_block(r, m, b0, U, scores, exclude, scratch, best);
}

/* SQL glintru_recommend_batch(user_ids, k, exclude_seen, interactions): top-k of many users. */
PG_FUNCTION_INFO_V1(glintru_recommend_batch);
Datum
glintru_recommend_batch(PG_FUNCTION_ARGS)
{
	Request		r;
	ArrayType  *arr;
	bool	   *nulls;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("user_ids, k and exclude_seen must not be null")));
	arr = PG_GETARG_ARRAYTYPE_P(0);
	request_init(&r, fcinfo);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("user_ids must be a one-dimensional array")));
	deconstruct_array(arr, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &r.users, &nulls, &r.n_users);
	for (int i = 0; i < r.n_users; i++)
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("user_ids must not contain nulls")));
	serve_attached(fcinfo, &r, recommend_batch_pinned);
	return (Datum) 0;
}

/* ---- from a history in the call ---- */

/* glintru_user_vector() with the model pinned. */
static void
user_vector_pinned(const GlintruModel *m, void *arg)
{
	Request    *r = arg;
	int64		n;
	int32	   *rows = history_rows(m, r->history, &n);

	if (n > 0)
	{
		float	   *u = user_vector(m, rows, n);
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
	glintru_cache_with_pin(glintru_cache_acquire_name(name), user_vector_pinned, &r);
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
	int32	   *rows = history_rows(m, r->history, &n);
	int			kk = top_count(m, r->k);
	GlintruScored *best = palloc(sizeof(GlintruScored) * kk);
	uint8	   *seen = NULL;
	int			nb;

	if (r->exclude_seen && n > 0)
	{
		seen = palloc_extended(m->config.n_rows, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
		for (int64 i = 0; i < n; i++)
			seen[rows[i]] = 1;
	}
	if (n > 0)
		nb = rank_vector(m, user_vector(m, rows, n), seen, kk, best);
	else
		nb = glintru_popular_top_k(m, kk, best);	/* no known history */
	put_items(r->rsinfo, m, best, nb, false, (Datum) 0);
}

/* SQL glintru_recommend_history(model, history, k, exclude_seen): top-k after a history. */
PG_FUNCTION_INFO_V1(glintru_recommend_history);
Datum
glintru_recommend_history(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Request		r = {0};

	r.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	r.history = PG_GETARG_ARRAYTYPE_P(1);
	r.k = PG_GETARG_INT32(2);
	r.exclude_seen = PG_GETARG_BOOL(3);
	check_k(r.k);
	InitMaterializedSRF(fcinfo, 0);
	glintru_cache_with_pin(glintru_cache_acquire_name(name), recommend_history_pinned, &r);
	return (Datum) 0;
}
