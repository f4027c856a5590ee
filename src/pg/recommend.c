/*
 * recommend.c — SQL functions that run the model on a history given in the
 * call: glintru_user_vector() and glintru_recommend_history().
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "forward.h"
#include "rank.h"
#include "glintru.h"
#include "kernels.h"

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

static float *
user_vector(const GlintruModel *m, const int32 *rows, int64 n)
{
	float	   *u = palloc(sizeof(float) * m->config.d);
	float	   *scratch = palloc_extended(sizeof(float) * glintru_forward_scratch_floats(&m->config),
										  MCXT_ALLOC_HUGE);

	glintru_forward_user_vector(m, rows, n, u, scratch);
	pfree(scratch);
	return u;
}

PG_FUNCTION_INFO_V1(glintru_user_vector);
Datum
glintru_user_vector(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ArrayType  *hist = PG_GETARG_ARRAYTYPE_P(1);
	GlintruPin	pin = glintru_model_acquire(name);
	ArrayType  *result = NULL;

	PG_TRY();
	{
		const GlintruModel *m = pin.model;
		int64		n;
		int32	   *rows = history_rows(m, hist, &n);

		if (n > 0)
		{
			float	   *u = user_vector(m, rows, n);
			Datum	   *d = palloc(sizeof(Datum) * m->config.d);

			for (int i = 0; i < m->config.d; i++)
				d[i] = Float4GetDatum(u[i]);
			result = construct_array(d, m->config.d, FLOAT4OID, 4, true, TYPALIGN_INT);
		}
	}
	PG_FINALLY();
	{
		glintru_model_release(&pin);
	}
	PG_END_TRY();
	/* a history with no item the model knows has no user vector */
	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_ARRAYTYPE_P(result);
}

PG_FUNCTION_INFO_V1(glintru_recommend_history);
Datum
glintru_recommend_history(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ArrayType  *hist = PG_GETARG_ARRAYTYPE_P(1);
	int32		k = PG_GETARG_INT32(2);
	bool		exclude_seen = PG_GETARG_BOOL(3);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	GlintruPin	pin;

	if (k < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("k must be at least 1, not %d", k)));
	InitMaterializedSRF(fcinfo, 0);
	pin = glintru_model_acquire(name);
	PG_TRY();
	{
		const GlintruModel *m = pin.model;
		int64		n_rows = m->config.n_rows;
		int64		n;
		int32	   *rows = history_rows(m, hist, &n);
		int			kk = (int) Min((int64) k, n_rows - 1);
		GlintruScored *best = palloc(sizeof(GlintruScored) * kk);
		int			nb = 0;
		uint8	   *seen = NULL;

		if (exclude_seen && n > 0)
		{
			seen = palloc_extended(n_rows, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
			for (int64 i = 0; i < n; i++)
				seen[rows[i]] = 1;
		}
		if (n > 0)
		{
			float	   *u = user_vector(m, rows, n);
			float	   *scores = palloc_extended(sizeof(float) * n_rows, MCXT_ALLOC_HUGE);

			glintru_score_items(glintru_param(m, GT_ITEM_EMBEDDING), n_rows, m->config.d, u, scores);
			nb = glintru_top_k(scores, n_rows, seen, kk, best);
			pfree(scores);
		}
		else
			nb = glintru_popular_top_k(m, kk, best);	/* no known history */
		for (int i = 0; i < nb; i++)
		{
			Datum		values[2];
			bool		nulls[2] = {false, false};

			values[0] = Int64GetDatum(glintru_item_ids(m)[best[i].row]);
			values[1] = Float4GetDatum(best[i].score);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	PG_FINALLY();
	{
		glintru_model_release(&pin);
	}
	PG_END_TRY();
	return (Datum) 0;
}
