/*
 * forward.c — the exact GLINT-RU forward pass (SPEC §1) through a user's
 * incremental state (see forward.h): building, pushing and serialising a
 * state, and the user vector at its last real slot.
 *
 * Only the output at the last real slot m-1 is ever needed, so the
 * position-wise layers run once per request.  The GRU side of the window —
 * dense1 + conv1d feeding the recurrence up to slot m-2 — is summarised in
 * the state.  A request adds the two GRU steps whose convolution looks one
 * slot ahead into padding (or past the window end, where it is zero), and
 * the attention at slot m-1: Σ_t (q̂·k̂_t) v_t over the window's items plus
 * (L-m) copies of the padding slot's term.
 *
 * A rebuild's cost is the recurrence: with the model's input tables each
 * slot's GRU input is three table rows summed (no window-wide GEMM), each
 * step one pass of the fused kernel over the packed W_hh, and conv1d runs
 * only at the last committed slot, whose c the selective gate needs.  A
 * model too large for the tables takes the GEMM path (same results).
 *
 * All working memory is the caller's scratch, carved by one table
 * (scratch_layout); the state's vectors likewise (state_layout).
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

/* ---- the state's vectors (forward.h) ---- */

/* A state's float vectors by name. */
typedef struct StateView
{
	float	   *h,
			   *G,
			   *a_prev,
			   *a_last;
} StateView;

/*
 * Sizes a state's vectors and, given a state, names them: the serialised
 * order of forward.h, whose glintru_state_rows() relies on their 4·d total.
 */
static size_t
state_layout(size_t d, const GlintruState *s, StateView *v)
{
	const Buffer table[] = {
		{&v->h, d},				/* [d] h_{m-2}, the committed GRU state (0 if m = 1) */
		{&v->G, d},				/* [d] G_{m-2}, its gate output (0 if m = 1) */
		{&v->a_prev, d},		/* [d] dense1 of item m-2 (0 if m = 1: conv1d's zero padding) */
		{&v->a_last, d},		/* [d] dense1 of item m-1 */
	};

	return place(table, LENGTH(table), s ? glintru_state_floats(s) : NULL);
}

/* The named vectors of s; a view of a const state is read only by convention. */
static StateView
state_view(const GlintruState *s)
{
	StateView	v;

	state_layout((size_t) s->d, s, &v);
	return v;
}

/* Sizes from the one layout, so the serialised size cannot drift from it. */
size_t
glintru_state_bytes(const GlintruConfig *cfg, int32_t m)
{
	StateView	unused;

	return sizeof(GlintruState) + state_layout((size_t) cfg->d, NULL, &unused) * sizeof(float) +
		(size_t) m * sizeof(int32_t);
}

/* A state is read back from a table any session can write: trust nothing in it. */
bool
glintru_state_valid(const GlintruModel *model, const void *blob, size_t len)
{
	const GlintruState *s = blob;
	const GlintruConfig *cfg = &model->config;
	const int32_t *rows;

	if (len < sizeof(GlintruState) || s->magic != GLINTRU_STATE_MAGIC ||
		s->d != cfg->d || s->n_heads != cfg->n_heads || s->max_seq_len != cfg->max_seq_len ||
		s->m < 1 || s->m > cfg->max_seq_len || len != glintru_state_bytes(cfg, s->m))
		return false;
	rows = glintru_state_rows(s);
	for (int32_t t = 0; t < s->m; t++)
		if (rows[t] < 1 || rows[t] >= cfg->n_rows)
			return false;
	return true;
}

/* Fills in a state's header, so that it validates against the model that built it. */
static void
state_header(const GlintruModel *m, GlintruState *s, int32_t mlen)
{
	s->magic = GLINTRU_STATE_MAGIC;
	s->d = m->config.d;
	s->n_heads = m->config.n_heads;
	s->max_seq_len = m->config.max_seq_len;
	s->m = mlen;
	s->reserved = 0;
}

/* ---- scratch ---- */

/* Every working buffer of the functions below, carved by scratch_layout. */
typedef struct Scratch
{
	/* window-wide: the build (C, col: GEMM path only); k̂ and v when the model has no item tables */
	float	   *X,
			   *A,
			   *C,
			   *col,
			   *GI,
			   *K,
			   *V,
			   *slide_rows;
	/* one GRU slot and its selective gate */
	float	   *h,
			   *h_next,
			   *slot_col,
			   *slot_c,
			   *slot_gi,
			   *gh,
			   *gate_hidden,
			   *gate_s,
			   *gate_p;
	/* a push; the layers of the user vector */
	float	   *a_new,
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
	/* the state glintru_forward_user_vector builds */
	float	   *state;
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
		{&sc->A, L * d},		/* [L, d] dense1 of the window's items */
		{&sc->C, L * d},		/* [L, d] conv1d at the committed slots 0 … m-2 (GEMM path) */
		{&sc->col, L * 3 * d},	/* [L, 3d] conv1d input columns of those slots (GEMM path) */
		{&sc->GI, L * 3 * d},	/* [L, 3d] W_ih c of those slots */
		{&sc->K, L * d},		/* [L, d] k̂ of the window's items (no item tables) */
		{&sc->V, L * d},		/* [L, d] v of the window's items (no item tables) */
		{&sc->slide_rows, L},	/* [L] int32: the window after a slide */
		{&sc->h, d},			/* [d] the build's running GRU state … */
		{&sc->h_next, d},		/* [d] … and its next value, in turn */
		{&sc->slot_col, 3 * d},	/* [3d] conv1d input column of one slot */
		{&sc->slot_c, d},		/* [d] conv1d output c of one slot */
		{&sc->slot_gi, 3 * d},	/* [3d] W_ih c of one slot */
		{&sc->gh, 3 * d},		/* [3d] W_hh h, then the gates r, z, n (oracle step) */
		{&sc->gate_hidden, d / 2},	/* [d/2] silu(W_g1 c + b_g1) */
		{&sc->gate_s, d},		/* [d] s = W_g2 … + b_g2 */
		{&sc->gate_p, d},		/* [d] projection(h) */
		{&sc->a_new, d},		/* [d] dense1 of a pushed item */
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
		/* one full state, in floats */
		{&sc->state, (glintru_state_bytes(cfg, cfg->max_seq_len) + sizeof(float) - 1) / sizeof(float)},
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

/* Tap k: dense1 vector a of item row (a NULL: zero, row -1). */
static inline void
set_tap(Taps *tp, int k, const float *a, int32_t row)
{
	tp->a[k] = a;
	tp->row[k] = a ? row : -1;
}

/* Does the build table its GRU inputs?  The input tables come with the item tables (model.h). */
static inline bool
tabled(const GlintruModel *m)
{
	return m->input_tables_off && m->item_tables_off;
}

/* Taps of committed slot t of a window (t+1 < m: all three are real items), from the item tables. */
static Taps
window_taps(const GlintruModel *m, const int32_t *win, int t)
{
	Taps		tp;

	for (int k = 0; k < 3; k++)
	{
		int			s = t - 1 + k;

		set_tap(&tp, k, s >= 0 ? glintru_item_tables(m, win[s]) : NULL, s >= 0 ? win[s] : -1);
	}
	return tp;
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
 * One slot of the GRU branch from its taps: c = conv1d, h_out = GRU(h_prev,
 * W_ih c), G = gate(c, h_out) — the per-request steps and a push, where a
 * GEMM over slots does not apply.  W_ih c comes from the input tables when
 * the model has them; c itself is needed for the gate either way.
 */
static void
gru_slot(const GlintruModel *m, const Taps *tp, const float *h_prev, float *h_out, float *G,
		 const Scratch *sc)
{
	int			d = m->config.d;

	slot_conv(m, tp, sc->slot_c, sc);
	if (tabled(m))
		tabled_gi(m, tp->row, sc->slot_gi);
	else
		glintru_linear(sc->slot_c, 1, d, glintru_param(m, GT_GRU_W_IH), NULL, 3 * d, sc->slot_gi);
	gru_step(m, sc->slot_gi, h_prev, h_out, sc);
	gate_output(m, sc->slot_c, h_out, G, sc);
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

/*
 * GRU inputs GI of the committed slots 0 … steps-1 from dense1 output A:
 * conv1d and W_ih as GEMMs over all slots at once (models without input
 * tables); C keeps conv1d's output for the gate.
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
		Taps		tp = window_taps(m, win, t);

		tabled_gi(m, tp.row, sc->GI + (size_t) t * 3 * m->config.d);
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
 * The committed part of a window's state (steps = m - 1): h = h_{steps-1}
 * and G its gate (both 0 if steps = 0), a_prev and a_last = dense1 of the
 * last two items (a_prev 0 for a single item).  With input tables nothing
 * window-wide is computed: conv1d runs at the last committed slot alone.
 */
static void
gru_trunk(const GlintruModel *m, const int32_t *win, int steps, const StateView *v, const Scratch *sc)
{
	const int	d = m->config.d;
	const float *A = sc->A,
			   *c = sc->slot_c;

	memset(v->G, 0, sizeof(float) * d);
	memset(v->a_prev, 0, sizeof(float) * d);
	if (tabled(m))
	{
		gru_inputs_tabled(m, win, steps, sc);
		gru_recur(m, steps, v->h, sc);
		if (steps > 0)
		{
			Taps		tp = window_taps(m, win, steps - 1);

			slot_conv(m, &tp, sc->slot_c, sc);
			memcpy(v->a_prev, tp.a[1], sizeof(float) * d);
		}
		memcpy(v->a_last, glintru_item_tables(m, win[steps]), sizeof(float) * d);
	}
	else
	{
		item_projections(m, win, steps + 1, sc->A, NULL, NULL, sc->X);
		if (steps > 0)
		{
			gru_inputs_gemm(m, A, steps, sc);
			c = sc->C + (size_t) (steps - 1) * d;
			memcpy(v->a_prev, A + (size_t) (steps - 1) * d, sizeof(float) * d);
		}
		gru_recur(m, steps, v->h, sc);
		memcpy(v->a_last, A + (size_t) steps * d, sizeof(float) * d);
	}
	if (steps > 0)
		gate_output(m, c, v->h, v->G, sc);
}

/*
 * The GRU expert's output Y at slot m-1: conv1dforgru over G_{m-2} (from the
 * state) and the two slots the state could not commit, whose conv1d looks
 * ahead into padding (or past L, where it reads zero).
 */
static void
gru_expert(const GlintruModel *m, const GlintruState *s, const Scratch *sc)
{
	const int	d = m->config.d;
	const int	L = m->config.max_seq_len;
	const int	mlen = s->m;
	const float *apad = glintru_pad_a(m);
	StateView	v = state_view(s);

	const int32_t *rows = glintru_state_rows(s);
	Taps		tp;

	/* slot m-1: its look-ahead is a padding slot, or past L */
	set_tap(&tp, 0, mlen >= 2 ? v.a_prev : NULL, mlen >= 2 ? rows[mlen - 2] : -1);
	set_tap(&tp, 1, v.a_last, rows[mlen - 1]);
	set_tap(&tp, 2, mlen < L ? apad : NULL, 0);
	gru_slot(m, &tp, v.h, sc->h1, sc->G1, sc);
	if (mlen < L)
	{
		/* slot m, a padding slot: looks ahead into padding, or past L */
		set_tap(&tp, 0, v.a_last, rows[mlen - 1]);
		set_tap(&tp, 1, apad, 0);
		set_tap(&tp, 2, mlen + 1 < L ? apad : NULL, 0);
		gru_slot(m, &tp, sc->h1, sc->h2, sc->G2, sc);
	}
	else
		memset(sc->G2, 0, sizeof(float) * d);
	glintru_conv3_column(v.G, sc->G1, sc->G2, d, sc->gcol);
	glintru_linear(sc->gcol, 1, 3 * d, glintru_param(m, GT_CONVG_W), glintru_param(m, GT_CONVG_B), d, sc->Y);
}

/*
 * Linear attention at slot m-1, per head: ctx = (Σ_t (q̂·k̂_t) v_t + (L-m)
 * (q̂·k̂_pad) v_pad) / √dh — the padding slots are identical, so they cost one
 * term; sums in double, as the reference.
 */
static void
attention_context(const GlintruModel *m, const GlintruState *s, const float *q, float *ctx,
				  const Scratch *sc)
{
	const int	d = m->config.d;
	const int	H = m->config.n_heads;
	const int	dh = d / H;
	const int	L = m->config.max_seq_len;
	const int	mlen = s->m;
	const int32_t *rows = glintru_state_rows(s);
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
attention_expert(const GlintruModel *m, const GlintruState *s, const float *x, const Scratch *sc)
{
	const int	d = m->config.d;

	glintru_linear(x, 1, d, glintru_param(m, GT_ATT_Q_W), glintru_param(m, GT_ATT_Q_B), d, sc->q);
	glintru_elu_l2_heads(sc->q, 1, d, m->config.n_heads);
	attention_context(m, s, sc->q, sc->ctx, sc);
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

/* A state from scratch: the GRU restarts at the window's first slot (SPEC §1). */
void
glintru_state_build(const GlintruModel *m, const int32_t *rows, int64_t n,
					GlintruState *out, float *scratch)
{
	const int	L = m->config.max_seq_len;
	const int	mlen = (int) (n < L ? n : L);
	const int32_t *win = rows + (n - mlen);
	Scratch		sc = scratch_carve(&m->config, scratch);
	StateView	v;

	state_header(m, out, mlen);
	v = state_view(out);
	gru_trunk(m, win, mlen - 1, &v, &sc);
	memcpy(glintru_state_rows(out), win, sizeof(int32_t) * mlen);
}

/* A new item gives slot m-1 its real look-ahead, so exactly one GRU slot commits. */
void
glintru_state_push(const GlintruModel *m, const GlintruState *in, int32_t row,
				   GlintruState *out, float *scratch)
{
	const int	d = m->config.d;
	const int	L = m->config.max_seq_len;
	Scratch		sc = scratch_carve(&m->config, scratch);
	StateView	vi,
				vo;
	Taps		tp;

	if (in->m >= L)
	{
		/* the window slides: the GRU restarts at the new window start */
		int32_t    *rows = (int32_t *) sc.slide_rows;

		memcpy(rows, glintru_state_rows(in) + 1, sizeof(int32_t) * (L - 1));
		rows[L - 1] = row;
		glintru_state_build(m, rows, L, out, scratch);
		return;
	}
	state_header(m, out, in->m + 1);
	vi = state_view(in);
	vo = state_view(out);
	item_projections(m, &row, 1, sc.a_new, NULL, NULL, sc.X);
	set_tap(&tp, 0, in->m >= 2 ? vi.a_prev : NULL, in->m >= 2 ? glintru_state_rows(in)[in->m - 2] : -1);
	set_tap(&tp, 1, vi.a_last, glintru_state_rows(in)[in->m - 1]);
	set_tap(&tp, 2, sc.a_new, row);
	gru_slot(m, &tp, vi.h, vo.h, vo.G, &sc);
	memcpy(vo.a_prev, vi.a_last, sizeof(float) * d);
	memcpy(vo.a_last, sc.a_new, sizeof(float) * d);
	memcpy(glintru_state_rows(out), glintru_state_rows(in), sizeof(int32_t) * in->m);
	glintru_state_rows(out)[in->m] = row;
}

/* The user vector U_{m-1} (SPEC §1): the two experts, their mix, the gated MLP. */
void
glintru_state_user_vector(const GlintruModel *m, const GlintruState *s, float *u, float *scratch)
{
	const float *x_last = glintru_param(m, GT_ITEM_EMBEDDING) +
		(size_t) glintru_state_rows(s)[s->m - 1] * m->config.d;
	Scratch		sc = scratch_carve(&m->config, scratch);

	gru_expert(m, s, &sc);
	attention_expert(m, s, x_last, &sc);
	mix_experts(m, x_last, &sc);
	gated_mlp(m, &sc, u);
}

/* The from-scratch forward is build + user vector: one implementation of the model. */
void
glintru_forward_user_vector(const GlintruModel *m, const int32_t *rows, int64_t n,
							float *u, float *scratch)
{
	Scratch		sc = scratch_carve(&m->config, scratch);
	GlintruState *s = (GlintruState *) sc.state;

	glintru_state_build(m, rows, n, s, scratch);
	glintru_state_user_vector(m, s, u, scratch);
}
