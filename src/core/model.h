/*
 * model.h — the GLINT-RU model in memory: one contiguous float block of all
 * parameters with a table of named offsets (the layout that also serves
 * gradients and optimizer state), plus the item vocabulary.
 *
 * A GlintruModel is a single position-independent allocation (every internal
 * reference is a byte offset from the struct), so the same bytes work in a
 * backend's private memory and in shared memory mapped at any address.
 *
 * Numeric core: no PostgreSQL headers here.
 */
#ifndef GLINTRU_MODEL_H
#define GLINTRU_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Every parameter tensor of the published model, in block order. */
typedef enum GlintruTensor
{
	GT_ITEM_EMBEDDING,			/* item_embedding.weight      [N1, d] */
	GT_DENSE1_W,				/* dense1.weight              [d, d] */
	GT_DENSE1_B,				/* dense1.bias                [d] */
	GT_DENSE2_W,
	GT_DENSE2_B,
	GT_CONV1D_W,				/* conv1d.weight              [d, d, 3] */
	GT_CONV1D_B,
	GT_GRU_W_IH,				/* gru_layers.weight_ih_l0    [3d, d], gates r,z,n */
	GT_GRU_W_HH,				/* gru_layers.weight_hh_l0    [3d, d] */
	GT_PROJECTION_W,
	GT_PROJECTION_B,
	GT_GATE1_W,					/* selective_gate.0.weight    [d/2, d] */
	GT_GATE1_B,					/* selective_gate.0.bias      [d/2] */
	GT_GATE2_W,					/* selective_gate.2.weight    [d, d/2] */
	GT_GATE2_B,					/* selective_gate.2.bias      [d] */
	GT_CONVG_W,					/* conv1dforgru.weight        [d, d, 3] */
	GT_CONVG_B,
	GT_ATT_Q_W,					/* linearattention.query.*    */
	GT_ATT_Q_B,
	GT_ATT_K_W,
	GT_ATT_K_B,
	GT_ATT_V_W,
	GT_ATT_V_B,
	GT_ATT_O_W,					/* linearattention.dense.*    */
	GT_ATT_O_B,
	GT_ATT_LN_W,				/* linearattention.LayerNorm.* */
	GT_ATT_LN_B,
	GT_MIX_LOGITS,				/* weights                    [2] */
	GT_DENSE_W,
	GT_DENSE_B,
	GT_DENSE3_W,
	GT_DENSE3_B,
	GT_DENSE4_W,
	GT_DENSE4_B,
	GT_DENSEOUT_W,
	GT_DENSEOUT_B,
	GT_LN_W,					/* LayerNorm.*  (shared by steps 6 and 7) */
	GT_LN_B,
	GT_COUNT
} GlintruTensor;

#define GLINTRU_MAX_DIMS 3

/* Where one tensor sits in the parameter block, and its shape. */
typedef struct GlintruTensorSlot
{
	uint64_t	offset;			/* in floats from the start of the block */
	uint64_t	numel;
	int32_t		ndim;
	int64_t		shape[GLINTRU_MAX_DIMS];
} GlintruTensorSlot;

typedef struct GlintruLayout
{
	int64_t		n_rows;			/* N + 1: item rows including padding row 0 */
	int32_t		d;
	uint64_t	n_params;		/* floats in the whole block */
	GlintruTensorSlot slot[GT_COUNT];
} GlintruLayout;

/* Published parameter name of each tensor (safetensors key). */
extern const char *const glintru_tensor_names[GT_COUNT];

/* Fill a layout for a model of n_rows item rows and hidden size d. */
void		glintru_layout_init(GlintruLayout *layout, int64_t n_rows, int32_t d);

/* Hyper-parameters carried by a model file. */
typedef struct GlintruConfig
{
	int64_t		n_rows;			/* N + 1 */
	int32_t		d;
	int32_t		n_heads;
	int32_t		max_seq_len;
	float		layer_norm_eps;
} GlintruConfig;

/* Bounds a model file must respect (scratch space and row numbers fit). */
#define GLINTRU_MAX_D 4096
#define GLINTRU_MAX_SEQ_LEN 65536
#define GLINTRU_MAX_ROWS ((int64_t) 0x7fffffff)

#define GLINTRU_MODEL_MAGIC 0x474C5255u	/* "GLRU" */

/*
 * The model as one allocation.  Arrays follow the header at the byte offsets
 * given; an offset of 0 means "absent".
 */
typedef struct GlintruModel
{
	uint32_t	magic;
	uint32_t	has_item_ids;	/* file carried item_ids (else id = row) */
	uint64_t	total_bytes;	/* size of the whole allocation */
	GlintruConfig config;
	GlintruLayout layout;
	uint64_t	params_off;		/* float[n_params] */
	uint64_t	item_ids_off;	/* int64[n_rows]: external id of each row */
	uint64_t	id_index_off;	/* int32[n_rows-1]: rows 1..N sorted by external id */
	uint64_t	popularity_off; /* float[n_rows], or 0 */
	uint64_t	popular_rows_off;	/* int32[n_rows-1]: rows by popularity desc, or 0 */
	uint64_t	pad_off;		/* float[4*d]: x_pad, a_pad, khat_pad, v_pad */
	uint64_t	item_tables_off;	/* float[n_rows * 3d]: per row dense1(x), k̂, v; or 0 */
	uint64_t	whh_packed_off; /* float[glintru_gru_packed_floats(d)]: W_hh for the fused step */
	uint64_t	gi_bias_off;	/* float[3d]: W_ih · conv1d.bias */
	uint64_t	input_tables_off;	/* float[n_rows * 9d]: per row T₀, T₁, T₂; or 0 */
} GlintruModel;

/*
 * Per-item tables turn window-wide GEMMs into row gathers.  The item tables
 * (dense1 of each embedding, the attention's normalised key and its value,
 * 3·d floats per item) serve the attention of a request and the dense1 of a
 * rebuild; the input tables (the GRU input each item contributes through
 * conv1d and W_ih at each of the three taps, T_k[row] = W_ih K_k
 * dense1(E[row]), 9·d floats per item) make a rebuild's GRU inputs
 * gi_t = W_ih·b + T₀[i_{t-1}] + T₁[i_t] + T₂[i_{t+1}] three row sums.  All
 * per-item tables together stay within this bound: a model gets both kinds
 * if they fit, else the item tables alone if those fit, else none, and is
 * then served by GEMMs with the same results (within float round-off).
 */
#define GLINTRU_ITEM_TABLES_MAX_BYTES ((uint64_t) 64 * 1024 * 1024)

/* Row r of the item tables: a = dense1(E[r]), then k̂, then v (d each); NULL if absent. */
static inline const float *
glintru_item_tables(const GlintruModel *m, int64_t row)
{
	return m->item_tables_off
		? (const float *) ((const char *) m + m->item_tables_off) + (size_t) row * 3 * m->config.d
		: NULL;
}

/* Row r of the input tables: T₀, T₁, T₂ (3d each, gates r, z, n); NULL if absent. */
static inline const float *
glintru_input_tables(const GlintruModel *m, int64_t row)
{
	return m->input_tables_off
		? (const float *) ((const char *) m + m->input_tables_off) + (size_t) row * 9 * m->config.d
		: NULL;
}

/* W_ih · conv1d.bias [3d]: the part of every GRU input that no item contributes. */
static inline const float *
glintru_gi_bias(const GlintruModel *m)
{
	return (const float *) ((const char *) m + m->gi_bias_off);
}

/* W_hh in the fused step's packed layout (kernels.h). */
static inline const float *
glintru_whh_packed(const GlintruModel *m)
{
	return (const float *) ((const char *) m + m->whh_packed_off);
}

/* The parameter block: every tensor at its layout offset. */
static inline float *
glintru_params(const GlintruModel *m)
{
	return (float *) ((char *) m + m->params_off);
}

/* One parameter tensor, by its slot in the layout. */
static inline float *
glintru_param(const GlintruModel *m, GlintruTensor t)
{
	return glintru_params(m) + m->layout.slot[t].offset;
}

/* External id of each row (row 0 ignored). */
static inline const int64_t *
glintru_item_ids(const GlintruModel *m)
{
	return (const int64_t *) ((const char *) m + m->item_ids_off);
}

/* Training-set count of each row, or NULL if the file had none. */
static inline const float *
glintru_popularity(const GlintruModel *m)
{
	return m->popularity_off ? (const float *) ((const char *) m + m->popularity_off) : NULL;
}

/* Rows 1 … N by popularity, highest first, or NULL. */
static inline const int32_t *
glintru_popular_rows(const GlintruModel *m)
{
	return m->popular_rows_off ? (const int32_t *) ((const char *) m + m->popular_rows_off) : NULL;
}

/* Precomputed padding-slot vectors (functions of E[0] only); x_pad = E[0]. */
static inline const float *
glintru_pad_x(const GlintruModel *m)
{
	return (const float *) ((const char *) m + m->pad_off);
}

/* a_pad = dense1(x_pad). */
static inline const float *
glintru_pad_a(const GlintruModel *m)
{
	return glintru_pad_x(m) + m->config.d;
}

/* k̂ of the padding slot. */
static inline const float *
glintru_pad_khat(const GlintruModel *m)
{
	return glintru_pad_x(m) + 2 * m->config.d;
}

/* v of the padding slot. */
static inline const float *
glintru_pad_v(const GlintruModel *m)
{
	return glintru_pad_x(m) + 3 * m->config.d;
}

/* Bytes needed for a model of this configuration. */
uint64_t	glintru_model_bytes(const GlintruConfig *cfg, bool has_popularity);

/*
 * Lay out an empty model in dest (glintru_model_bytes() bytes): header,
 * layout and offsets set, arrays zeroed.  The caller fills the parameter
 * block, item ids and popularity, then calls glintru_model_finish().
 */
GlintruModel *glintru_model_init(void *dest, const GlintruConfig *cfg, bool has_popularity);

/*
 * Build the derived arrays (id index, popularity order, padding vectors,
 * packed W_hh, W_ih·b, per-item tables).  Returns false and writes a message if item ids repeat
 * or memory runs out.
 */
bool		glintru_model_finish(GlintruModel *m, char *err, size_t errlen);

/* Row of an external item id, or -1 if the model does not know it. */
int64_t		glintru_item_row(const GlintruModel *m, int64_t item_id);

#endif							/* GLINTRU_MODEL_H */
