/*
 * forward.c — the exact GLINT-RU forward pass (SPEC §1) through a user's
 * incremental state (see forward.h): building, advancing, refreshing and
 * validating a serialised state, and the user vector at its last real slot.
 *
 * Only the output at the last real slot m-1 is ever needed, so the
 * position-wise layers run once per request.  The GRU side of the window —
 * dense1 + conv1d feeding the recurrence up to slot m-2 — is summarised in
 * the state by h_{m-2}.  A request recomputes the gate output G_{m-2} from
 * it and the last three items, adds the two GRU steps whose convolution
 * looks one slot ahead into padding (or past the window end, where it is
 * zero), and the attention at slot m-1: Σ_t (q̂·k̂_t) v_t over the window's
 * items plus (L-m) copies of the padding slot's term.
 *
 * A rebuild's cost is the recurrence: with the model's input tables each
 * slot's GRU input is three table rows summed (no window-wide GEMM) and each
 * step one pass of the fused kernel over the packed W_hh.  A model too large
 * for the tables takes the GEMM path (same results).
 *
 * All working memory is the caller's scratch, carved by one table
 * (scratch_layout); the serialised state likewise (state_layout).
 *
 * Numeric core: no PostgreSQL headers here.
 */
#include "forward.h"
#include "kernels.h"

#include <math.h>
#include <string.h>

#define LENGTH(a) (sizeof(a) / sizeof((a)[0]))

/* One named buffer of a layout table: where its pointer goes, its size. */
typedef struct Buffer
{
	float	  **at;
	size_t		floats;
} Buffer;

/* Places a table's buffers back to back from base (NULL: sizes only), so no offset is written by hand. */
static size_t
place(const Buffer *table, size_t n, float *base)
{
	size_t		used = 0;

	for (size_t i = 0; i < n; i++)
	{
		if (base)
			*table[i].at = base + used;
		used += table[i].floats;
	}
	return used;
}

/* ---- the serialised state (forward.h) ---- */

/* A state's parts by name. */
typedef struct StateView
{
	int32_t    *slots;			/* [L] the ring, ring index i at slots[L-1-i] */
	float	   *h;				/* [d] h_{m-2} */
	GlintruStateTrailer *tr;
	int			L;
} StateView;

/* The one definition of the v3 layout: the byte offsets of h and of the trailer, and the size. */
static size_t
state_layout(const GlintruConfig *cfg, size_t *h_at, size_t *tr_at)
{
	*h_at = sizeof(int32_t) * (size_t) cfg->max_seq_len;
	*tr_at = *h_at + sizeof(float) * (size_t) cfg->d;
	return *tr_at + sizeof(GlintruStateTrailer);
}

/* The named parts of s; a view of a const state is read only by convention. */
static StateView
state_view(const GlintruModel *m, const GlintruState *s)
{
	char	   *base = (char *) s;
	size_t		h_at,
				tr_at;
	StateView	v;

	state_layout(&m->config, &h_at, &tr_at);
	v.slots = (int32_t *) base;
	v.h = (float *) (base + h_at);
	v.tr = (GlintruStateTrailer *) (base + tr_at);
	v.L = m->config.max_seq_len;
	return v;
}

/* Where the window's j-th item (0 = oldest) is stored: ring index head + j, mirrored. */
static inline int32_t *
window_slot(const StateView *v, int j)
{
	int			i = v->tr->head + j;

	if (i >= v->L)
		i -= v->L;
	return v->slots + (v->L - 1 - i);
}

/* Every state of a model has this size, so its length word never changes. */
size_t
glintru_state_bytes(const GlintruConfig *cfg)
{
	size_t		h_at,
				tr_at;

	return state_layout(cfg, &h_at, &tr_at);
}

/* A state is read back from a table any session can write: trust nothing in it. */
bool
glintru_state_valid(const GlintruModel *model, const void *blob, size_t len)
{
	const GlintruConfig *cfg = &model->config;
	StateView	v;
	const GlintruStateTrailer *tr;

	if (blob == NULL || len != glintru_state_bytes(cfg))
		return false;
	v = state_view(model, blob);
	tr = v.tr;
	if (tr->magic != GLINTRU_STATE_MAGIC || tr->d != cfg->d || tr->n_heads != cfg->n_heads ||
		tr->max_seq_len != cfg->max_seq_len || tr->m < 1 || tr->m > cfg->max_seq_len ||
		tr->head < 0 || tr->head >= cfg->max_seq_len || (tr->m < cfg->max_seq_len && tr->head != 0) ||
		(tr->flags & ~GLINTRU_STATE_STALE) != 0)
		return false;
	for (int j = 0; j < tr->m; j++)
	{
		int32_t		r = *window_slot(&v, j);

		if (r < 1 || r >= cfg->n_rows)
			return false;
	}
	return true;
}

/* The window oldest first; m. */
int32_t
glintru_state_window(const GlintruModel *m, const GlintruState *s, int32_t *rows_out)
{
	StateView	v = state_view(m, s);

	if (rows_out)
		for (int j = 0; j < v.tr->m; j++)
			rows_out[j] = *window_slot(&v, j);
	return v.tr->m;
}

/* The stale flag of the trailer. */
bool
glintru_state_stale(const GlintruModel *m, const GlintruState *s)
{
	return (state_view(m, s).tr->flags & GLINTRU_STATE_STALE) != 0;
}

/* The stored h, for tests and tools. */
const float *
glintru_state_h(const GlintruModel *m, const GlintruState *s)
{
	return state_view(m, s).h;
}

/*
 * Zeroes the slots of a state of mlen rows at head 0 and writes a trailer
 * that validates against the model; the rows (window_slot) and h are left
 * to the caller.
 */
static StateView
state_lay_trailer(const GlintruModel *m, int mlen, uint32_t flags, GlintruState *out)
{
	const int	L = m->config.max_seq_len;
	StateView	v = state_view(m, out);

	memset(v.slots, 0, sizeof(int32_t) * (size_t) L);
	*v.tr = (GlintruStateTrailer) {
		.magic = GLINTRU_STATE_MAGIC, .d = m->config.d, .n_heads = m->config.n_heads,
		.max_seq_len = L, .m = mlen, .head = 0, .flags = flags
	};
	return v;
}

/* Lays out a state of the last min(n, L) rows (state_lay_trailer); h is left to the caller. */
static StateView
state_lay_window(const GlintruModel *m, const int32_t *rows, int64_t n, uint32_t flags, GlintruState *out)
{
	const int	L = m->config.max_seq_len;
	const int	mlen = (int) (n < L ? n : L);
	StateView	v = state_lay_trailer(m, mlen, flags, out);

	for (int j = 0; j < mlen; j++)
		*window_slot(&v, j) = rows[n - mlen + j];
	return v;
}

/* The header of a release 0.1.0 state (forward.h, format v2). */
typedef struct StateV2Header
{
	uint32_t	magic;			/* GLINTRU_STATE_V2_MAGIC */
	int32_t		d;
	int32_t		n_heads;
	int32_t		max_seq_len;
	int32_t		m;
	int32_t		reserved;
} StateV2Header;

/* A 0.1.0 state checked as 0.1.0 checked it, and laid out fresh in v3: its rows, its h. */
bool
glintru_state_from_v2(const GlintruModel *m, const void *blob, size_t len, GlintruState *out)
{
	const GlintruConfig *cfg = &m->config;
	const char *p = blob;
	/* after the header: h, G, a_prev, a_last (d floats each), then the rows */
	const size_t rows_at = sizeof(StateV2Header) + 4 * sizeof(float) * (size_t) cfg->d;
	StateV2Header hd;
	StateView	v;

	if (blob == NULL || len < sizeof(hd))
		return false;
	memcpy(&hd, p, sizeof(hd));
	if (hd.magic != GLINTRU_STATE_V2_MAGIC || hd.d != cfg->d || hd.n_heads != cfg->n_heads ||
		hd.max_seq_len != cfg->max_seq_len || hd.m < 1 || hd.m > cfg->max_seq_len ||
		len != rows_at + sizeof(int32_t) * (size_t) hd.m)
		return false;
	v = state_lay_trailer(m, hd.m, 0, out);
	for (int j = 0; j < hd.m; j++)
	{
		int32_t		r;

		memcpy(&r, p + rows_at + sizeof(int32_t) * (size_t) j, sizeof(r));
		if (r < 1 || r >= cfg->n_rows)
			return false;
		*window_slot(&v, j) = r;
	}
	memcpy(v.h, p + sizeof(hd), sizeof(float) * (size_t) cfg->d);
	return true;
}

/* ---- scratch ---- */

/* Every working buffer of the functions below, carved by scratch_layout. */
typedef struct Scratch
{
	/* window-wide: a rebuild (A: dense1 without item tables; C, col: GEMM path); k̂ and v without item tables */
	float	   *X,
			   *A,
			   *C,
			   *col,
			   *GI,
			   *K,
			   *V,
			   *win;
	/* one GRU slot and its selective gate */
	float	   *h,
			   *h_next,
			   *h_state,
			   *tap_a,
			   *slot_col,
			   *slot_c,
			   *slot_gi,
			   *gh,
			   *gate_hidden,
			   *gate_s,
			   *gate_p;
	/* the layers of the user vector */
	float	   *G0,
			   *h1,
			   *h2,
			   *G1,
			   *G2,
			   *gcol,
			   *Y,
			   *q,
			   *ctx,
			   *att,
			   *g2,
			   *Mx,
			   *Z,
			   *t3,
			   *t4;
} Scratch;

/*
 * The one table of scratch buffers and their sizes in floats: walked to size
 * the scratch (base NULL) and to point sc's fields into it.
 */
static size_t
scratch_layout(const GlintruConfig *cfg, float *base, Scratch *sc)
{
	const size_t L = (size_t) cfg->max_seq_len;
	const size_t d = (size_t) cfg->d;
	const Buffer table[] = {
		{&sc->X, L * d},		/* [L, d] item embeddings (models without item tables) */
		{&sc->A, L * d},		/* [L, d] dense1 of the window's items (no item tables) */
		{&sc->C, L * d},		/* [L, d] conv1d at the committed slots 0 … m-2 (GEMM path) */
		{&sc->col, L * 3 * d},	/* [L, 3d] conv1d input columns of those slots (GEMM path) */
		{&sc->GI, L * 3 * d},	/* [L, 3d] W_ih c of those slots */
		{&sc->K, L * d},		/* [L, d] k̂ of the window's items (no item tables) */
		{&sc->V, L * d},		/* [L, d] v of the window's items (no item tables) */
		{&sc->win, L},			/* [L] int32: a state's window, oldest first */
		{&sc->h, d},			/* [d] the running GRU state … */
		{&sc->h_next, d},		/* [d] … and its next value, in turn */
		{&sc->h_state, d},		/* [d] h_{m-2} rebuilt for a stale state or a history */
		{&sc->tap_a, 5 * d},	/* [5, d] dense1 of the last items (no item tables) */
		{&sc->slot_col, 3 * d},	/* [3d] conv1d input column of one slot */
		{&sc->slot_c, d},		/* [d] conv1d output c of one slot */
		{&sc->slot_gi, 3 * d},	/* [3d] W_ih c of one slot */
		{&sc->gh, 3 * d},		/* [3d] W_hh h, then the gates r, z, n (oracle step) */
		{&sc->gate_hidden, d / 2},	/* [d/2] silu(W_g1 c + b_g1) */
		{&sc->gate_s, d},		/* [d] s = W_g2 … + b_g2 */
		{&sc->gate_p, d},		/* [d] projection(h) */
		{&sc->G0, d},			/* [d] G_{m-2} (0 if m = 1) */
		{&sc->h1, d},			/* [d] h_{m-1} (looks ahead into padding) */
		{&sc->h2, d},			/* [d] h_m */
		{&sc->G1, d},			/* [d] G_{m-1} */
		{&sc->G2, d},			/* [d] G_m (0 once m = L) */
		{&sc->gcol, 3 * d},		/* [3d] conv1dforgru input column at slot m-1 */
		{&sc->Y, d},			/* [d] GRU expert output */
		{&sc->q, d},			/* [d] q̂ at slot m-1 */
		{&sc->ctx, d},			/* [d] attention context, per head */
		{&sc->att, d},			/* [d] attention expert output A */
		{&sc->g2, d},			/* [d] dense2(x) */
		{&sc->Mx, d},			/* [d] M ⊙ gelu(dense2(x)) */
		{&sc->Z, d},			/* [d] Z */
		{&sc->t3, d},			/* [d] dense3(Z), then ⊙ gelu(dense4(Z)) */
		{&sc->t4, d},			/* [d] dense4(Z) */
	};

	return place(table, LENGTH(table), base);
}

/* Callers allocate scratch once per model and reuse it for every request. */
size_t
glintru_forward_scratch_floats(const GlintruConfig *cfg)
{
	Scratch		unused;

	return scratch_layout(cfg, NULL, &unused);
}

/* The named buffers of a caller's scratch. */
static Scratch
scratch_carve(const GlintruConfig *cfg, float *scratch)
{
	Scratch		sc;

	scratch_layout(cfg, scratch, &sc);
	return sc;
}

/* ---- layers ---- */

/* x = LayerNorm(x + residual): the post-norm residual every block ends with. */
static void
add_layernorm(float *x, const float *residual, int d, const float *w, const float *b, float eps)
{
	for (int i = 0; i < d; i++)
		x[i] += residual[i];
	glintru_layernorm(x, d, w, b, eps, x);
}

/* Selective gate G = (W2 silu(W1 c + b1) + b2) ⊙ (P h + bp): no sigmoid, as published. */
static void
gate_output(const GlintruModel *m, const float *c, const float *h, float *G, const Scratch *sc)
{
	int			d = m->config.d;
	int			half = d / 2;
	float	   *s1 = sc->gate_hidden,
			   *s = sc->gate_s,
			   *p = sc->gate_p;

	glintru_linear(c, 1, d, glintru_param(m, GT_GATE1_W), glintru_param(m, GT_GATE1_B), half, s1);
	for (int i = 0; i < half; i++)
		s1[i] = glintru_silu(s1[i]);
	glintru_linear(s1, 1, half, glintru_param(m, GT_GATE2_W), glintru_param(m, GT_GATE2_B), d, s);
	glintru_linear(h, 1, d, glintru_param(m, GT_PROJECTION_W), glintru_param(m, GT_PROJECTION_B), d, p);
	for (int i = 0; i < d; i++)
		G[i] = s[i] * p[i];
}

/*
 * The three conv1d inputs of one GRU slot: dense1 vectors (NULL: zero, the
 * convolution's padding) and the rows they are dense1 of (-1 where a is
 * NULL; 0 for a padding slot), so that its GRU input can be tabled.
 */
typedef struct Taps
{
	const float *a[3];
	int32_t		row[3];
} Taps;

/* Does the build table its GRU inputs?  The input tables come with the item tables (model.h). */
static inline bool
tabled(const GlintruModel *m)
{
	return m->input_tables_off && m->item_tables_off;
}

/*
 * dense1, k̂ and v of n item rows: gathered from the model's item tables, or
 * computed (three GEMMs over X) when the model is too large to have them.
 * Any output may be NULL.
 */
static void
item_projections(const GlintruModel *m, const int32_t *rows, int n, float *A, float *K, float *V,
				 float *X)
{
	const int	d = m->config.d;

	if (m->item_tables_off)
	{
		for (int t = 0; t < n; t++)
		{
			const float *tab = glintru_item_tables(m, rows[t]);

			if (A)
				memcpy(A + (size_t) t * d, tab, sizeof(float) * d);
			if (K)
				memcpy(K + (size_t) t * d, tab + d, sizeof(float) * d);
			if (V)
				memcpy(V + (size_t) t * d, tab + 2 * d, sizeof(float) * d);
		}
		return;
	}
	for (int t = 0; t < n; t++)
		memcpy(X + (size_t) t * d, glintru_param(m, GT_ITEM_EMBEDDING) + (size_t) rows[t] * d, sizeof(float) * d);
	if (A)
		glintru_linear(X, n, d, glintru_param(m, GT_DENSE1_W), glintru_param(m, GT_DENSE1_B), d, A);
	if (K)
	{
		glintru_linear(X, n, d, glintru_param(m, GT_ATT_K_W), glintru_param(m, GT_ATT_K_B), d, K);
		glintru_elu_l2_heads(K, n, d, m->config.n_heads);
	}
	if (V)
		glintru_linear(X, n, d, glintru_param(m, GT_ATT_V_W), glintru_param(m, GT_ATT_V_B), d, V);
}

/* The row at position p of a window of mlen items: the item, 0 in a padding slot, -1 before it or past L. */
static inline int32_t
position_row(const int32_t *win, int mlen, int L, int p)
{
	return p < 0 ? -1 : p < mlen ? win[p] : p < L ? 0 : -1;
}

/*
 * Taps of the slots read by n ≤ 5 consecutive conv1d inputs rows[0..n-1]
 * (rows as position_row gives them): tp[k] covers rows k … k+2.  dense1
 * comes from the item tables or the padding vector, or is computed into
 * sc->tap_a for a model without item tables.
 */
static void
row_taps(const GlintruModel *m, const int32_t *rows, int n, Taps *tp, const Scratch *sc)
{
	const int	d = m->config.d;
	const float *a[5];

	for (int i = 0; i < n; i++)
	{
		if (rows[i] < 0)
			a[i] = NULL;
		else if (rows[i] == 0)
			a[i] = glintru_pad_a(m);
		else if (m->item_tables_off)
			a[i] = glintru_item_tables(m, rows[i]);
		else
		{
			item_projections(m, &rows[i], 1, sc->tap_a + (size_t) i * d, NULL, NULL, sc->X);
			a[i] = sc->tap_a + (size_t) i * d;
		}
	}
	for (int k = 0; k + 2 < n; k++)
		for (int j = 0; j < 3; j++)
		{
			tp[k].a[j] = a[k + j];
			tp[k].row[j] = a[k + j] ? rows[k + j] : -1;
		}
}

/* c = conv1d of one slot's taps (one d × 3d GEMV). */
static void
slot_conv(const GlintruModel *m, const Taps *tp, float *c, const Scratch *sc)
{
	int			d = m->config.d;

	glintru_conv3_column(tp->a[0], tp->a[1], tp->a[2], d, sc->slot_col);
	glintru_linear(sc->slot_col, 1, 3 * d, glintru_param(m, GT_CONV1D_W), glintru_param(m, GT_CONV1D_B), d, c);
}

/* gi = W_ih·b + Σ_k T_k[row_k]: a slot's GRU input from the input tables. */
static void
tabled_gi(const GlintruModel *m, const int32_t row[3], float *gi)
{
	const int	d3 = 3 * m->config.d;
	const float *t[3];

	for (int k = 0; k < 3; k++)
		t[k] = row[k] >= 0 ? glintru_input_tables(m, row[k]) + (size_t) k * d3 : NULL;
	glintru_sum4(glintru_gi_bias(m), t[0], t[1], t[2], d3, gi);
}

/* h_out = GRU(h_prev, gi): the fused step, or the plain-loop oracle when glintru_use_blas is off. */
static void
gru_step(const GlintruModel *m, const float *gi, const float *h_prev, float *h_out, const Scratch *sc)
{
	if (glintru_use_blas)
		glintru_gru_fused(gi, h_prev, glintru_whh_packed(m), m->config.d, h_out);
	else
		glintru_gru_step(gi, h_prev, glintru_param(m, GT_GRU_W_HH), m->config.d, h_out, sc->gh);
}

/*
 * One slot of the GRU branch from its taps: h_out = GRU(h_prev, W_ih c) and,
 * if G is not NULL, G = gate(c, h_out) — a push (no gate) and the
 * per-request steps, where a GEMM over slots does not apply.  W_ih c comes
 * from the input tables when the model has them; c = conv1d is then needed
 * only for the gate.
 */
static void
gru_slot(const GlintruModel *m, const Taps *tp, const float *h_prev, float *h_out, float *G,
		 const Scratch *sc)
{
	int			d = m->config.d;

	if (G || !tabled(m))
		slot_conv(m, tp, sc->slot_c, sc);
	if (tabled(m))
		tabled_gi(m, tp->row, sc->slot_gi);
	else
		glintru_linear(sc->slot_c, 1, d, glintru_param(m, GT_GRU_W_IH), NULL, 3 * d, sc->slot_gi);
	gru_step(m, sc->slot_gi, h_prev, h_out, sc);
	if (G)
		gate_output(m, sc->slot_c, h_out, G, sc);
}

/*
 * GRU inputs GI of the committed slots 0 … steps-1 from dense1 output A:
 * conv1d and W_ih as GEMMs over all slots at once (models without input
 * tables).
 */
static void
gru_inputs_gemm(const GlintruModel *m, const float *A, int steps, const Scratch *sc)
{
	const int	d = m->config.d;

	for (int t = 0; t < steps; t++)
		glintru_conv3_column(t ? A + (size_t) (t - 1) * d : NULL, A + (size_t) t * d,
							 A + (size_t) (t + 1) * d, d, sc->col + (size_t) t * 3 * d);
	glintru_linear(sc->col, steps, 3 * d, glintru_param(m, GT_CONV1D_W), glintru_param(m, GT_CONV1D_B),
				   d, sc->C);
	glintru_linear(sc->C, steps, d, glintru_param(m, GT_GRU_W_IH), NULL, 3 * d, sc->GI);
}

/* GRU inputs GI of the committed slots 0 … steps-1 of window win: three table rows each. */
static void
gru_inputs_tabled(const GlintruModel *m, const int32_t *win, int steps, const Scratch *sc)
{
	for (int t = 0; t < steps; t++)
	{
		const int32_t row[3] = {t > 0 ? win[t - 1] : -1, win[t], win[t + 1]};

		tabled_gi(m, row, sc->GI + (size_t) t * 3 * m->config.d);
	}
}

/* h = h_{steps-1} of the recurrence over GI from h_{-1} = 0: the only sequential part. */
static void
gru_recur(const GlintruModel *m, int steps, float *h, const Scratch *sc)
{
	const int	d = m->config.d;
	float	   *cur = sc->h,
			   *next = sc->h_next;

	memset(cur, 0, sizeof(float) * d);
	for (int t = 0; t < steps; t++)
	{
		float	   *done = next;

		gru_step(m, sc->GI + (size_t) t * 3 * d, t ? cur : NULL, next, sc);
		next = cur;
		cur = done;
	}
	memcpy(h, cur, sizeof(float) * d);
}

/*
 * h = h_{mlen-2} of a window (0 if mlen = 1): the rebuild.  With input
 * tables nothing window-wide is computed; without, dense1, conv1d and W_ih
 * are GEMMs over the window.  h may not be sc->h or sc->h_next.
 */
static void
gru_rebuild(const GlintruModel *m, const int32_t *win, int mlen, float *h, const Scratch *sc)
{
	const int	steps = mlen - 1;

	if (tabled(m))
		gru_inputs_tabled(m, win, steps, sc);
	else if (steps > 0)
	{
		item_projections(m, win, steps + 1, sc->A, NULL, NULL, sc->X);
		gru_inputs_gemm(m, sc->A, steps, sc);
	}
	gru_recur(m, steps, h, sc);
}

/*
 * The GRU expert's output Y at slot m-1 from h = h_{m-2}: conv1dforgru over
 * G_{m-2} (recomputed from h and the last three items) and the two slots a
 * state cannot commit, whose conv1d looks ahead into padding (or past L,
 * where it reads zero).
 */
static void
gru_expert(const GlintruModel *m, const float *h, const int32_t *win, int mlen, const Scratch *sc)
{
	const int	d = m->config.d;
	const int	L = m->config.max_seq_len;
	int32_t		rows[5];
	Taps		tp[3];			/* slots m-2, m-1, m */

	for (int i = 0; i < 5; i++)
		rows[i] = position_row(win, mlen, L, mlen - 3 + i);
	row_taps(m, rows, 5, tp, sc);
	if (mlen >= 2)
	{
		slot_conv(m, &tp[0], sc->slot_c, sc);
		gate_output(m, sc->slot_c, h, sc->G0, sc);
	}
	else
		memset(sc->G0, 0, sizeof(float) * d);
	gru_slot(m, &tp[1], h, sc->h1, sc->G1, sc);
	if (mlen < L)
		gru_slot(m, &tp[2], sc->h1, sc->h2, sc->G2, sc);
	else
		memset(sc->G2, 0, sizeof(float) * d);
	glintru_conv3_column(sc->G0, sc->G1, sc->G2, d, sc->gcol);
	glintru_linear(sc->gcol, 1, 3 * d, glintru_param(m, GT_CONVG_W), glintru_param(m, GT_CONVG_B), d, sc->Y);
}

/*
 * Linear attention at slot m-1 of the window rows[0..mlen-1], per head:
 * ctx = (Σ_t (q̂·k̂_t) v_t + (L-m) (q̂·k̂_pad) v_pad) / √dh — the padding
 * slots are identical, so they cost one term; sums in double, as the
 * reference.
 */
static void
attention_context(const GlintruModel *m, const int32_t *rows, int mlen, const float *q, float *ctx,
				  const Scratch *sc)
{
	const int	d = m->config.d;
	const int	H = m->config.n_heads;
	const int	dh = d / H;
	const int	L = m->config.max_seq_len;
	const float *kp = glintru_pad_khat(m),
			   *vp = glintru_pad_v(m);
	double		scale = 1.0 / sqrt((double) dh);
	double		acc[GLINTRU_MAX_D];

	if (!m->item_tables_off)
		item_projections(m, rows, mlen, NULL, sc->K, sc->V, sc->X);
	for (int i = 0; i < d; i++)
		acc[i] = 0.0;
	for (int t = 0; t < mlen; t++)
	{
		const float *kt = m->item_tables_off ? glintru_item_tables(m, rows[t]) + d : sc->K + (size_t) t * d;
		const float *vt = m->item_tables_off ? glintru_item_tables(m, rows[t]) + 2 * d : sc->V + (size_t) t * d;

		for (int hd = 0; hd < H; hd++)
		{
			double		w = 0.0;

			for (int i = hd * dh; i < (hd + 1) * dh; i++)
				w += (double) q[i] * kt[i];
			for (int j = hd * dh; j < (hd + 1) * dh; j++)
				acc[j] += w * vt[j];
		}
	}
	for (int hd = 0; hd < H; hd++)
	{
		double		wpad = 0.0;

		for (int i = hd * dh; i < (hd + 1) * dh; i++)
			wpad += (double) q[i] * kp[i];
		wpad *= (double) (L - mlen);
		for (int j = hd * dh; j < (hd + 1) * dh; j++)
			ctx[j] = (float) ((acc[j] + wpad * vp[j]) * scale);
	}
}

/* The attention expert's output A = LN_att(W_o ctx + b_o + x) at slot m-1, from its q̂ alone. */
static void
attention_expert(const GlintruModel *m, const int32_t *win, int mlen, const float *x, const Scratch *sc)
{
	const int	d = m->config.d;

	glintru_linear(x, 1, d, glintru_param(m, GT_ATT_Q_W), glintru_param(m, GT_ATT_Q_B), d, sc->q);
	glintru_elu_l2_heads(sc->q, 1, d, m->config.n_heads);
	attention_context(m, win, mlen, sc->q, sc->ctx, sc);
	glintru_linear(sc->ctx, 1, d, glintru_param(m, GT_ATT_O_W), glintru_param(m, GT_ATT_O_B), d, sc->att);
	add_layernorm(sc->att, x, d, glintru_param(m, GT_ATT_LN_W), glintru_param(m, GT_ATT_LN_B),
				  m->config.layer_norm_eps);
}

/* Z = LN(dense((w₀ Y + w₁ A) ⊙ gelu(dense2(x))) + x): the experts mixed by learned softmax weights. */
static void
mix_experts(const GlintruModel *m, const float *x, const Scratch *sc)
{
	const int	d = m->config.d;
	const float *lg = glintru_param(m, GT_MIX_LOGITS);
	double		w[2];
	float		w0,
				w1;

	glintru_softmax2(lg[0], lg[1], w);
	w0 = (float) w[0];
	w1 = (float) w[1];

	glintru_linear(x, 1, d, glintru_param(m, GT_DENSE2_W), glintru_param(m, GT_DENSE2_B), d, sc->g2);
	for (int i = 0; i < d; i++)
		sc->Mx[i] = (w0 * sc->Y[i] + w1 * sc->att[i]) * glintru_gelu(sc->g2[i]);
	glintru_linear(sc->Mx, 1, d, glintru_param(m, GT_DENSE_W), glintru_param(m, GT_DENSE_B), d, sc->Z);
	add_layernorm(sc->Z, x, d, glintru_param(m, GT_LN_W), glintru_param(m, GT_LN_B),
				  m->config.layer_norm_eps);
}

/* u = LN(denseout(dense3(Z) ⊙ gelu(dense4(Z))) + Z): the gated MLP reuses LN, as published. */
static void
gated_mlp(const GlintruModel *m, const Scratch *sc, float *u)
{
	const int	d = m->config.d;

	glintru_linear(sc->Z, 1, d, glintru_param(m, GT_DENSE3_W), glintru_param(m, GT_DENSE3_B), d, sc->t3);
	glintru_linear(sc->Z, 1, d, glintru_param(m, GT_DENSE4_W), glintru_param(m, GT_DENSE4_B), d, sc->t4);
	for (int i = 0; i < d; i++)
		sc->t3[i] *= glintru_gelu(sc->t4[i]);
	glintru_linear(sc->t3, 1, d, glintru_param(m, GT_DENSEOUT_W), glintru_param(m, GT_DENSEOUT_B), d, u);
	add_layernorm(u, sc->Z, d, glintru_param(m, GT_LN_W), glintru_param(m, GT_LN_B),
				  m->config.layer_norm_eps);
}

/* ---- the public passes ---- */

/* u = U_{m-1} (SPEC §1) of a window and its h_{m-2}: the two experts, their mix, the gated MLP. */
static void
user_vector_at(const GlintruModel *m, const float *h, const int32_t *win, int mlen, float *u,
			   const Scratch *sc)
{
	const float *x_last = glintru_param(m, GT_ITEM_EMBEDDING) + (size_t) win[mlen - 1] * m->config.d;

	gru_expert(m, h, win, mlen, sc);
	attention_expert(m, win, mlen, x_last, sc);
	mix_experts(m, x_last, sc);
	gated_mlp(m, sc, u);
}

/* A state from scratch: the GRU restarts at the window's first slot (SPEC §1). */
void
glintru_state_build(const GlintruModel *m, const int32_t *rows, int64_t n,
					GlintruState *out, float *scratch)
{
	const int	L = m->config.max_seq_len;
	const int	mlen = (int) (n < L ? n : L);
	Scratch		sc = scratch_carve(&m->config, scratch);
	StateView	v = state_lay_window(m, rows, n, 0, out);

	gru_rebuild(m, rows + (n - mlen), mlen, v.h, &sc);
}

/* The rows alone: what a deferred refresh mode records, with prev's h bytes kept. */
void
glintru_state_build_stale(const GlintruModel *m, const int32_t *rows, int64_t n,
						  const GlintruState *prev, GlintruState *out)
{
	StateView	v = state_view(m, out);

	if (prev == NULL)
		memset(v.h, 0, sizeof(float) * (size_t) m->config.d);
	else if (prev != out)
		memcpy(v.h, state_view(m, prev).h, sizeof(float) * (size_t) m->config.d);
	state_lay_window(m, rows, n, GLINTRU_STATE_STALE, out);
}

/* Pushes onto a fresh window with room: each new item commits exactly one GRU slot, m-1. */
static void
state_push(const GlintruModel *m, const StateView *v, const int32_t *rows, int nk, const Scratch *sc)
{
	const float *cur = v->h;
	float	   *next = sc->h;

	for (int i = 0; i < nk; i++)
	{
		const int	mlen = v->tr->m;
		const int32_t taps_rows[3] = {mlen >= 2 ? *window_slot(v, mlen - 2) : -1, *window_slot(v, mlen - 1), rows[i]};
		Taps		tp;

		row_taps(m, taps_rows, 3, &tp, sc);
		gru_slot(m, &tp, cur, next, NULL, sc);
		*window_slot(v, mlen) = rows[i];
		v->tr->m = mlen + 1;
		cur = next;
		next = cur == sc->h ? sc->h_next : sc->h;
	}
	if (nk > 0)
		memcpy(v->h, cur, sizeof(float) * (size_t) m->config.d);
}

/* Write nk rows into the ring: into free slots while m < L, then each over the oldest (one slot each). */
static void
ring_write(StateView *v, const int32_t *rows, int64_t nk)
{
	for (int64_t i = 0; i < nk; i++)
	{
		GlintruStateTrailer *tr = v->tr;

		if (tr->m < v->L)
			*window_slot(v, tr->m++) = rows[i];
		else
		{
			v->slots[v->L - 1 - tr->head] = rows[i];
			tr->head = tr->head + 1 == v->L ? 0 : tr->head + 1;
		}
	}
}

/* h rebuilt over the state's window in place, and the state marked fresh; the slots stay as they are. */
static void
refresh_h(const GlintruModel *m, GlintruState *s, const Scratch *sc)
{
	StateView	v = state_view(m, s);
	int32_t    *win = (int32_t *) sc->win;
	int			mlen = glintru_state_window(m, s, win);

	gru_rebuild(m, win, mlen, v.h, sc);
	v.tr->flags &= ~GLINTRU_STATE_STALE;
}

/* Pushes while they fit a fresh window; else the ring takes the rows and h is rebuilt once, or deferred. */
void
glintru_state_advance(const GlintruModel *m, const GlintruState *in, const int32_t *rows, int64_t nk,
					  bool defer, GlintruState *out, float *scratch)
{
	Scratch		sc = scratch_carve(&m->config, scratch);
	StateView	v;

	memcpy(out, in, glintru_state_bytes(&m->config));
	v = state_view(m, out);
	if (!(v.tr->flags & GLINTRU_STATE_STALE) && v.tr->m + nk <= v.L)
	{
		state_push(m, &v, rows, (int) nk, &sc);
		return;
	}
	ring_write(&v, rows, nk);
	if (defer)
		v.tr->flags |= GLINTRU_STATE_STALE;
	else
		refresh_h(m, out, &sc);
}

/* A stale state made fresh by a rebuild over its window; a fresh one is copied. */
void
glintru_state_refresh(const GlintruModel *m, const GlintruState *in, GlintruState *out, float *scratch)
{
	Scratch		sc = scratch_carve(&m->config, scratch);

	if (out != in)
		memcpy(out, in, glintru_state_bytes(&m->config));
	if (glintru_state_stale(m, out))
		refresh_h(m, out, &sc);
}

/* The user vector of a state; a stale one gets its h rebuilt in scratch first. */
void
glintru_state_user_vector(const GlintruModel *m, const GlintruState *s, float *u, float *scratch)
{
	Scratch		sc = scratch_carve(&m->config, scratch);
	int32_t    *win = (int32_t *) sc.win;
	int			mlen = glintru_state_window(m, s, win);
	const float *h = glintru_state_h(m, s);

	if (glintru_state_stale(m, s))
	{
		gru_rebuild(m, win, mlen, sc.h_state, &sc);
		h = sc.h_state;
	}
	user_vector_at(m, h, win, mlen, u, &sc);
}

/* The from-scratch forward is the rebuild + user vector: one implementation of the model. */
void
glintru_forward_user_vector(const GlintruModel *m, const int32_t *rows, int64_t n,
							float *u, float *scratch)
{
	const int	L = m->config.max_seq_len;
	const int	mlen = (int) (n < L ? n : L);
	Scratch		sc = scratch_carve(&m->config, scratch);

	gru_rebuild(m, rows + (n - mlen), mlen, sc.h_state, &sc);
	user_vector_at(m, sc.h_state, rows + (n - mlen), mlen, u, &sc);
}
