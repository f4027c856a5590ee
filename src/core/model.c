/*
 * model.c — parameter layout, model allocation, the item vocabulary
 * (external id ↔ row, popularity order) and what is derived from the
 * parameters once at load: padding-slot vectors, the packed W_hh of the
 * fused GRU step, W_ih·b, and the per-item tables (model.h).
 *
 * Numeric core: no PostgreSQL headers here.
 */
#include "model.h"
#include "kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const glintru_tensor_names[GT_COUNT] = {
	[GT_ITEM_EMBEDDING] = "item_embedding.weight",
	[GT_DENSE1_W] = "dense1.weight",
	[GT_DENSE1_B] = "dense1.bias",
	[GT_DENSE2_W] = "dense2.weight",
	[GT_DENSE2_B] = "dense2.bias",
	[GT_CONV1D_W] = "conv1d.weight",
	[GT_CONV1D_B] = "conv1d.bias",
	[GT_GRU_W_IH] = "gru_layers.weight_ih_l0",
	[GT_GRU_W_HH] = "gru_layers.weight_hh_l0",
	[GT_PROJECTION_W] = "projection.weight",
	[GT_PROJECTION_B] = "projection.bias",
	[GT_GATE1_W] = "selective_gate.0.weight",
	[GT_GATE1_B] = "selective_gate.0.bias",
	[GT_GATE2_W] = "selective_gate.2.weight",
	[GT_GATE2_B] = "selective_gate.2.bias",
	[GT_CONVG_W] = "conv1dforgru.weight",
	[GT_CONVG_B] = "conv1dforgru.bias",
	[GT_ATT_Q_W] = "linearattention.query.weight",
	[GT_ATT_Q_B] = "linearattention.query.bias",
	[GT_ATT_K_W] = "linearattention.key.weight",
	[GT_ATT_K_B] = "linearattention.key.bias",
	[GT_ATT_V_W] = "linearattention.value.weight",
	[GT_ATT_V_B] = "linearattention.value.bias",
	[GT_ATT_O_W] = "linearattention.dense.weight",
	[GT_ATT_O_B] = "linearattention.dense.bias",
	[GT_ATT_LN_W] = "linearattention.LayerNorm.weight",
	[GT_ATT_LN_B] = "linearattention.LayerNorm.bias",
	[GT_MIX_LOGITS] = "weights",
	[GT_DENSE_W] = "dense.weight",
	[GT_DENSE_B] = "dense.bias",
	[GT_DENSE3_W] = "dense3.weight",
	[GT_DENSE3_B] = "dense3.bias",
	[GT_DENSE4_W] = "dense4.weight",
	[GT_DENSE4_B] = "dense4.bias",
	[GT_DENSEOUT_W] = "denseout.weight",
	[GT_DENSEOUT_B] = "denseout.bias",
	[GT_LN_W] = "LayerNorm.weight",
	[GT_LN_B] = "LayerNorm.bias",
};

/* Records one tensor at *cursor, padded to 16 floats so that the next starts on a cache line. */
static void
set_slot(GlintruLayout *layout, GlintruTensor t, uint64_t *cursor,
		 int ndim, int64_t s0, int64_t s1, int64_t s2)
{
	GlintruTensorSlot *s = &layout->slot[t];
	int64_t		shape[GLINTRU_MAX_DIMS] = {s0, s1, s2};
	uint64_t	numel = 1;

	s->ndim = ndim;
	for (int i = 0; i < GLINTRU_MAX_DIMS; i++)
	{
		s->shape[i] = i < ndim ? shape[i] : 0;
		if (i < ndim)
			numel *= (uint64_t) shape[i];
	}
	s->offset = *cursor;
	s->numel = numel;
	/* keep every tensor 16-float aligned so rows start on cache lines */
	*cursor += (numel + 15) & ~(uint64_t) 15;
}

/* Every shape follows from (n_rows, d), so a file's tensors can be checked against it. */
void
glintru_layout_init(GlintruLayout *layout, int64_t n_rows, int32_t d)
{
	uint64_t	cur = 0;
	int64_t		half = d / 2;

	memset(layout, 0, sizeof(*layout));
	layout->n_rows = n_rows;
	layout->d = d;

	for (int t = 0; t < GT_COUNT; t++)
	{
		switch ((GlintruTensor) t)
		{
			case GT_ITEM_EMBEDDING:
				set_slot(layout, t, &cur, 2, n_rows, d, 0);
				break;
			case GT_CONV1D_W:
			case GT_CONVG_W:
				set_slot(layout, t, &cur, 3, d, d, 3);
				break;
			case GT_GRU_W_IH:
			case GT_GRU_W_HH:
				set_slot(layout, t, &cur, 2, 3 * (int64_t) d, d, 0);
				break;
			case GT_GATE1_W:
				set_slot(layout, t, &cur, 2, half, d, 0);
				break;
			case GT_GATE1_B:
				set_slot(layout, t, &cur, 1, half, 0, 0);
				break;
			case GT_GATE2_W:
				set_slot(layout, t, &cur, 2, d, half, 0);
				break;
			case GT_MIX_LOGITS:
				set_slot(layout, t, &cur, 1, 2, 0, 0);
				break;
			case GT_DENSE1_W:
			case GT_DENSE2_W:
			case GT_PROJECTION_W:
			case GT_ATT_Q_W:
			case GT_ATT_K_W:
			case GT_ATT_V_W:
			case GT_ATT_O_W:
			case GT_DENSE_W:
			case GT_DENSE3_W:
			case GT_DENSE4_W:
			case GT_DENSEOUT_W:
				set_slot(layout, t, &cur, 2, d, d, 0);
				break;
			default:			/* biases and LayerNorm vectors */
				set_slot(layout, t, &cur, 1, d, 0, 0);
				break;
		}
	}
	layout->n_params = cur;
}

/* Arrays start on 64-byte boundaries: a cache line, and the widest SIMD load. */
static uint64_t
align64(uint64_t x)
{
	return (x + 63) & ~(uint64_t) 63;
}

/* Offsets of every array, computed once for sizing and for init. */
typedef struct ModelOffsets
{
	uint64_t	params,
				item_ids,
				id_index,
				popularity,
				popular_rows,
				pad,
				item_tables,
				whh_packed,
				gi_bias,
				input_tables,
				total;
} ModelOffsets;

/* One walk serves sizing and init, so that the two cannot disagree. */
static ModelOffsets
model_offsets(const GlintruConfig *cfg, const GlintruLayout *layout, bool has_popularity)
{
	ModelOffsets o;
	uint64_t	rows = (uint64_t) cfg->n_rows;
	uint64_t	cur = align64(sizeof(GlintruModel));
	uint64_t	item_bytes = rows * 3 * (uint64_t) cfg->d * sizeof(float),
				input_bytes = rows * 9 * (uint64_t) cfg->d * sizeof(float);

	o.params = cur;
	cur = align64(cur + layout->n_params * sizeof(float));
	o.item_ids = cur;
	cur = align64(cur + rows * sizeof(int64_t));
	o.id_index = cur;
	cur = align64(cur + rows * sizeof(int32_t));
	if (has_popularity)
	{
		o.popularity = cur;
		cur = align64(cur + rows * sizeof(float));
		o.popular_rows = cur;
		cur = align64(cur + rows * sizeof(int32_t));
	}
	else
		o.popularity = o.popular_rows = 0;
	o.pad = cur;
	cur = align64(cur + 4 * (uint64_t) cfg->d * sizeof(float));
	o.whh_packed = cur;
	cur = align64(cur + glintru_gru_packed_floats(cfg->d) * sizeof(float));
	o.gi_bias = cur;
	cur = align64(cur + 3 * (uint64_t) cfg->d * sizeof(float));
	/* one bound for all per-item tables: the input tables only with the item tables */
	o.item_tables = o.input_tables = 0;
	if (item_bytes <= GLINTRU_ITEM_TABLES_MAX_BYTES)
	{
		o.item_tables = cur;
		cur = align64(cur + item_bytes);
		if (item_bytes + input_bytes <= GLINTRU_ITEM_TABLES_MAX_BYTES)
		{
			o.input_tables = cur;
			cur = align64(cur + input_bytes);
		}
	}
	o.total = cur;
	return o;
}

/* The caller sizes the block first: it may be palloc'ed or in shared memory. */
uint64_t
glintru_model_bytes(const GlintruConfig *cfg, bool has_popularity)
{
	GlintruLayout layout;

	glintru_layout_init(&layout, cfg->n_rows, cfg->d);
	return model_offsets(cfg, &layout, has_popularity).total;
}

/* Offsets rather than pointers, so that the block works mapped at any address. */
GlintruModel *
glintru_model_init(void *dest, const GlintruConfig *cfg, bool has_popularity)
{
	GlintruModel *m = dest;
	GlintruLayout layout;
	ModelOffsets o;

	glintru_layout_init(&layout, cfg->n_rows, cfg->d);
	o = model_offsets(cfg, &layout, has_popularity);
	memset(dest, 0, o.total);
	m->magic = GLINTRU_MODEL_MAGIC;
	m->total_bytes = o.total;
	m->config = *cfg;
	m->layout = layout;
	m->params_off = o.params;
	m->item_ids_off = o.item_ids;
	m->id_index_off = o.id_index;
	m->popularity_off = o.popularity;
	m->popular_rows_off = o.popular_rows;
	m->pad_off = o.pad;
	m->item_tables_off = o.item_tables;
	m->whh_packed_off = o.whh_packed;
	m->gi_bias_off = o.gi_bias;
	m->input_tables_off = o.input_tables;
	/* default vocabulary: the external id of row j is j */
	{
		int64_t    *ids = (int64_t *) ((char *) m + m->item_ids_off);

		for (int64_t j = 0; j < cfg->n_rows; j++)
			ids[j] = j;
	}
	return m;
}

/* qsort context: C has no qsort_r everywhere, so sort (key, row) records. */
typedef struct KeyRow
{
	int64_t		id;				/* external id of row */
	float		pop;			/* its popularity (0 without) */
	int32_t		row;
} KeyRow;

/* By id, then row, so that a repeated id sits next to its twin and is reported. */
static int
cmp_id_row(const void *a, const void *b)
{
	const KeyRow *x = a,
			   *y = b;

	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->row < y->row ? -1 : (x->row > y->row);
}

/* Higher popularity first, ties to the lower row: one order for every backend. */
static int
cmp_pop_row(const void *a, const void *b)
{
	const KeyRow *x = a,
			   *y = b;

	if (x->pop != y->pop)
		return x->pop > y->pop ? -1 : 1;
	return x->row < y->row ? -1 : (x->row > y->row);
}

/* Rows 1 … N with their id and popularity (0 without), sorted by cmp; NULL (and a message) if memory runs out. */
static KeyRow *
sorted_rows(const GlintruModel *m, int (*cmp) (const void *, const void *), char *err, size_t errlen)
{
	int64_t		n = m->config.n_rows - 1;	/* real items */
	const int64_t *ids = glintru_item_ids(m);
	const float *pop = glintru_popularity(m);
	KeyRow	   *kr = malloc(sizeof(KeyRow) * (size_t) (n > 0 ? n : 1));

	if (kr == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (int64_t j = 0; j < n; j++)
	{
		kr[j].id = ids[j + 1];
		kr[j].pop = pop ? pop[j + 1] : 0.0f;
		kr[j].row = (int32_t) (j + 1);
	}
	qsort(kr, (size_t) n, sizeof(KeyRow), cmp);
	return kr;
}

/*
 * The id index (rows 1 … N by external id) and, given popularity, the
 * popular-rows order, from one sorted array; false (and a message) if an id
 * repeats or memory runs out.
 */
static bool
build_row_orders(GlintruModel *m, char *err, size_t errlen)
{
	const int64_t n = m->config.n_rows - 1;
	int32_t    *index = (int32_t *) ((char *) m + m->id_index_off);
	KeyRow	   *kr = sorted_rows(m, cmp_id_row, err, errlen);

	if (kr == NULL)
		return false;
	for (int64_t j = 0; j < n; j++)
	{
		if (j > 0 && kr[j].id == kr[j - 1].id)
		{
			snprintf(err, errlen, "item id %lld appears at rows %d and %d of item_ids",
					 (long long) kr[j].id, kr[j - 1].row, kr[j].row);
			free(kr);
			return false;
		}
		index[j] = kr[j].row;
	}
	if (m->popularity_off)
	{
		int32_t    *order = (int32_t *) ((char *) m + m->popular_rows_off);

		qsort(kr, (size_t) n, sizeof(KeyRow), cmp_pop_row);
		for (int64_t j = 0; j < n; j++)
			order[j] = kr[j].row;
	}
	free(kr);
	return true;
}

/* x_pad = E[0], a_pad = dense1(x_pad), k̂_pad, v_pad; the packed W_hh; W_ih·b */
static void
build_derived_vectors(GlintruModel *m)
{
	int			d = m->config.d;
	float	   *pad = (float *) ((char *) m + m->pad_off);
	float	   *x = pad,
			   *a = pad + d,
			   *kh = pad + 2 * d,
			   *v = pad + 3 * d;

	memcpy(x, glintru_param(m, GT_ITEM_EMBEDDING), sizeof(float) * d);
	glintru_linear(x, 1, d, glintru_param(m, GT_DENSE1_W), glintru_param(m, GT_DENSE1_B), d, a);
	glintru_linear(x, 1, d, glintru_param(m, GT_ATT_K_W), glintru_param(m, GT_ATT_K_B), d, kh);
	glintru_elu_l2_heads(kh, 1, d, m->config.n_heads);
	glintru_linear(x, 1, d, glintru_param(m, GT_ATT_V_W), glintru_param(m, GT_ATT_V_B), d, v);
	glintru_gru_pack(glintru_param(m, GT_GRU_W_HH), d, (float *) glintru_whh_packed(m));
	glintru_linear(glintru_param(m, GT_CONV1D_B), 1, d, glintru_param(m, GT_GRU_W_IH), NULL, 3 * d,
				   (float *) glintru_gi_bias(m));
}

/*
 * Input-table rows r0 … r0+nr-1 from their dense1 rows A (row stride 3d, as
 * in the item tables): for each tap k, T_k = W_ih (K_k a), the GEMM path's
 * two products (conv1d, then W_ih) split by tap.  work holds nr·5d + d²
 * floats.
 */
static void
build_input_rows(GlintruModel *m, const float *A, int64_t r0, int nr, float *work)
{
	const int	d = m->config.d;
	const float *W = glintru_param(m, GT_CONV1D_W);	/* [out, in, 3] */
	float	   *tab = (float *) glintru_input_tables(m, r0);
	float	   *a = work,		/* [nr, d] dense1 rows, contiguous */
			   *c = a + (size_t) nr * d,	/* [nr, d] K_k a */
			   *gi = c + (size_t) nr * d,	/* [nr, 3d] W_ih K_k a */
			   *Kk = gi + (size_t) nr * 3 * d;	/* [d, d] tap k of conv1d */

	for (int r = 0; r < nr; r++)
		memcpy(a + (size_t) r * d, A + (size_t) r * 3 * d, sizeof(float) * d);
	for (int k = 0; k < 3; k++)
	{
		for (int o = 0; o < d; o++)
			for (int i = 0; i < d; i++)
				Kk[(size_t) o * d + i] = W[((size_t) o * d + i) * 3 + k];
		glintru_linear(a, nr, d, Kk, NULL, d, c);
		glintru_linear(c, nr, d, glintru_param(m, GT_GRU_W_IH), NULL, 3 * d, gi);
		for (int r = 0; r < nr; r++)
			memcpy(tab + ((size_t) r * 3 + k) * 3 * d, gi + (size_t) r * 3 * d, sizeof(float) * 3 * d);
	}
}

/* The per-item tables, in blocks of rows so that the working space stays small. */
static bool
build_item_tables(GlintruModel *m, char *err, size_t errlen)
{
	static const GlintruTensor w[3] = {GT_DENSE1_W, GT_ATT_K_W, GT_ATT_V_W};
	const int64_t block = 256;
	const int	d = m->config.d;
	const float *E = glintru_param(m, GT_ITEM_EMBEDDING);
	float	   *tab = (float *) ((char *) m + m->item_tables_off);
	/* [block, d] for each table in turn; then build_input_rows's working space */
	float	   *tmp = malloc(sizeof(float) * ((size_t) block * 5 * d + (size_t) d * d));

	if (tmp == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return false;
	}
	for (int64_t r0 = 0; r0 < m->config.n_rows; r0 += block)
	{
		int			nr = (int) (m->config.n_rows - r0 < block ? m->config.n_rows - r0 : block);

		for (int k = 0; k < 3; k++)
		{
			glintru_linear(E + (size_t) r0 * d, nr, d, glintru_param(m, w[k]), glintru_param(m, w[k] + 1), d, tmp);
			if (k == 1)
				glintru_elu_l2_heads(tmp, nr, d, m->config.n_heads);
			for (int i = 0; i < nr; i++)
				memcpy(tab + ((size_t) (r0 + i) * 3 + k) * d, tmp + (size_t) i * d, sizeof(float) * d);
		}
		if (m->input_tables_off)
			build_input_rows(m, tab + (size_t) r0 * 3 * d, r0, nr, tmp);
	}
	free(tmp);
	return true;
}

/* Whatever derives from the parameters is computed once at load, never per request. */
bool
glintru_model_finish(GlintruModel *m, char *err, size_t errlen)
{
	if (!build_row_orders(m, err, errlen))
		return false;
	build_derived_vectors(m);
	if (m->item_tables_off && !build_item_tables(m, err, errlen))
		return false;
	return true;
}

/* Binary search of the id index: external ids are arbitrary int64, too sparse for a table. */
int64_t
glintru_item_row(const GlintruModel *m, int64_t item_id)
{
	const int64_t *ids = glintru_item_ids(m);
	const int32_t *index = (const int32_t *) ((const char *) m + m->id_index_off);
	int64_t		lo = 0,
				hi = m->config.n_rows - 1;	/* search [lo, hi) */

	while (lo < hi)
	{
		int64_t		mid = lo + (hi - lo) / 2;
		int64_t		key = ids[index[mid]];

		if (key == item_id)
			return index[mid];
		if (key < item_id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}
