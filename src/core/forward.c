/*
 * forward.c — the exact GLINT-RU forward pass (SPEC §1) through a user's
 * incremental state (see forward.h), and top-k selection.
 *
 * Only the output at the last real slot m-1 is ever needed, so the
 * position-wise layers run once per request.  The GRU side of the window —
 * dense1 + conv1d feeding the recurrence up to slot m-2 — is summarised in
 * the state.  A request adds the two GRU steps whose convolution looks one
 * slot ahead into padding (or past the window end, where it is zero), and
 * the attention at slot m-1: Σ_t (q̂·k̂_t) v_t over the window's items plus
 * (L-m) copies of the padding slot's term.
 *
 * Numeric core: no PostgreSQL headers here.
 */
#include "forward.h"
#include "kernels.h"

#include <math.h>
#include <string.h>

static size_t
s_floats(const GlintruConfig *cfg)
{
	return 4 * (size_t) cfg->d;
}

size_t
glintru_state_bytes(const GlintruConfig *cfg, int32_t m)
{
	return sizeof(GlintruState) + s_floats(cfg) * sizeof(float) + (size_t) m * sizeof(int32_t);
}

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

/* working space: X, A1, K, V, C: L·d each; col, GI: L·3d each; rows L; vectors 40d */
static size_t
work_floats(const GlintruConfig *cfg)
{
	size_t		L = (size_t) cfg->max_seq_len;
	size_t		d = (size_t) cfg->d;

	return 11 * L * d + L + 40 * d;
}

/* the 40d vectors at the end of the working space */
static float *
work_vectors(const GlintruConfig *cfg, float *scratch)
{
	return scratch + work_floats(cfg) - 40 * (size_t) cfg->d;
}

size_t
glintru_forward_scratch_floats(const GlintruConfig *cfg)
{
	/* plus room for one full state (glintru_forward_user_vector) */
	return work_floats(cfg) + (glintru_state_bytes(cfg, cfg->max_seq_len) + sizeof(float) - 1) / sizeof(float);
}

/* selective gate at one slot: G = (W2 silu(W1 c + b1) + b2) ⊙ (P h + bp); tmp 3d */
static void
gate_output(const GlintruModel *m, const float *c, const float *h, float *G, float *tmp)
{
	int			d = m->config.d;
	int			half = d / 2;
	float	   *s1 = tmp,
			   *s = tmp + d,
			   *p = tmp + 2 * d;

	glintru_linear(c, 1, d, glintru_param(m, GT_GATE1_W), glintru_param(m, GT_GATE1_B), half, s1);
	for (int i = 0; i < half; i++)
		s1[i] = glintru_silu(s1[i]);
	glintru_linear(s1, 1, half, glintru_param(m, GT_GATE2_W), glintru_param(m, GT_GATE2_B), d, s);
	glintru_linear(h, 1, d, glintru_param(m, GT_PROJECTION_W), glintru_param(m, GT_PROJECTION_B), d, p);
	for (int i = 0; i < d; i++)
		G[i] = s[i] * p[i];
}

/*
 * One slot of the GRU branch from its three conv1d inputs: c = conv1d(prev,
 * cur, next), h_out = GRU(h_prev, c), G = gate(c, h_out).  tmp: 12d.
 */
static void
gru_slot(const GlintruModel *m, const float *prev, const float *cur, const float *next,
		 const float *h_prev, float *h_out, float *G, float *tmp)
{
	int			d = m->config.d;
	float	   *col = tmp,
			   *c = tmp + 3 * d,
			   *gi = tmp + 4 * d,
			   *work = tmp + 7 * d;

	glintru_conv3_column(prev, cur, next, d, col);
	glintru_linear(col, 1, 3 * d, glintru_param(m, GT_CONV1D_W), glintru_param(m, GT_CONV1D_B), d, c);
	glintru_linear(c, 1, d, glintru_param(m, GT_GRU_W_IH), NULL, 3 * d, gi);
	glintru_gru_step(gi, h_prev, glintru_param(m, GT_GRU_W_HH), d, h_out, work);
	gate_output(m, c, h_out, G, work);
}

/* state pointers */
#define ST_H(s) (glintru_state_floats(s))
#define ST_G(s) (glintru_state_floats(s) + (s)->d)
#define ST_APREV(s) (glintru_state_floats(s) + 2 * (s)->d)
#define ST_ALAST(s) (glintru_state_floats(s) + 3 * (s)->d)

/*
 * dense1, k̂ and v of n item rows: gathered from the model's item tables, or
 * computed (three GEMMs) when the model has none.  Any output may be NULL.
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

void
glintru_state_build(const GlintruModel *m, const int32_t *rows, int64_t n,
					GlintruState *out, float *scratch)
{
	const int	d = m->config.d;
	const int	L = m->config.max_seq_len;
	const int	mlen = (int) (n < L ? n : L);
	const int32_t *win = rows + (n - mlen);
	float	   *X = scratch;
	float	   *A1 = X + (size_t) L * d;
	float	   *C = A1 + (size_t) 3 * L * d;	/* after A1, K, V */
	float	   *col = C + (size_t) L * d;
	float	   *GI = col + (size_t) L * 3 * d;
	float	   *vec = work_vectors(&m->config, scratch);
	float	   *h = vec,
			   *hnext = vec + d,
			   *tmp = vec + 2 * d;
	const int	steps = mlen - 1;	/* committed GRU slots 0 … m-2 */

	state_header(m, out, mlen);
	item_projections(m, win, mlen, A1, NULL, NULL, X);

	/* conv1d + GRU over the slots whose look-ahead is real */
	memset(h, 0, sizeof(float) * d);
	memset(ST_G(out), 0, sizeof(float) * d);
	if (steps > 0)
	{
		for (int t = 0; t < steps; t++)
			glintru_conv3_column(t ? A1 + (size_t) (t - 1) * d : NULL, A1 + (size_t) t * d,
								 A1 + (size_t) (t + 1) * d, d, col + (size_t) t * 3 * d);
		glintru_linear(col, steps, 3 * d, glintru_param(m, GT_CONV1D_W), glintru_param(m, GT_CONV1D_B), d, C);
		glintru_linear(C, steps, d, glintru_param(m, GT_GRU_W_IH), NULL, 3 * d, GI);
		for (int t = 0; t < steps; t++)
		{
			glintru_gru_step(GI + (size_t) t * 3 * d, t ? h : NULL, glintru_param(m, GT_GRU_W_HH), d,
							 hnext, tmp);
			memcpy(h, hnext, sizeof(float) * d);
		}
		gate_output(m, C + (size_t) (steps - 1) * d, h, ST_G(out), tmp);
	}
	memcpy(ST_H(out), h, sizeof(float) * d);
	if (mlen >= 2)
		memcpy(ST_APREV(out), A1 + (size_t) (mlen - 2) * d, sizeof(float) * d);
	else
		memset(ST_APREV(out), 0, sizeof(float) * d);
	memcpy(ST_ALAST(out), A1 + (size_t) (mlen - 1) * d, sizeof(float) * d);
	memcpy(glintru_state_rows(out), win, sizeof(int32_t) * mlen);
}

void
glintru_state_push(const GlintruModel *m, const GlintruState *in, int32_t row,
				   GlintruState *out, float *scratch)
{
	const int	d = m->config.d;
	const int	L = m->config.max_seq_len;
	float	   *vec = work_vectors(&m->config, scratch);
	float	   *a_new = vec,
			   *tmp = vec + d;

	if (in->m >= L)
	{
		/* the window slides: the GRU restarts at the new window start */
		int32_t    *rows = (int32_t *) (scratch + 11 * (size_t) L * d);

		memcpy(rows, glintru_state_rows(in) + 1, sizeof(int32_t) * (L - 1));
		rows[L - 1] = row;
		glintru_state_build(m, rows, L, out, scratch);
		return;
	}
	state_header(m, out, in->m + 1);
	item_projections(m, &row, 1, a_new, NULL, NULL, scratch);
	/* slot m-1 now has a real look-ahead: commit it */
	gru_slot(m, ST_APREV(in), ST_ALAST(in), a_new, ST_H(in), ST_H(out), ST_G(out), tmp);
	memcpy(ST_APREV(out), ST_ALAST(in), sizeof(float) * d);
	memcpy(ST_ALAST(out), a_new, sizeof(float) * d);
	memcpy(glintru_state_rows(out), glintru_state_rows(in), sizeof(int32_t) * in->m);
	glintru_state_rows(out)[in->m] = row;
}

void
glintru_state_user_vector(const GlintruModel *m, const GlintruState *s, float *u, float *scratch)
{
	const int	d = m->config.d;
	const int	H = m->config.n_heads;
	const int	dh = d / H;
	const int	L = m->config.max_seq_len;
	const int	mlen = s->m;
	const float *x_last = glintru_param(m, GT_ITEM_EMBEDDING) +
		(size_t) glintru_state_rows(s)[mlen - 1] * d;
	const float *apad = glintru_pad_a(m);
	float	   *vec = work_vectors(&m->config, scratch);
	float	   *h1 = vec,
			   *h2 = vec + d,
			   *Gs = vec + 2 * d,	/* G_{m-2}, G_{m-1}, G_m */
			   *gcol = vec + 5 * d,
			   *Y = vec + 8 * d,
			   *q = vec + 9 * d,
			   *ctx = vec + 10 * d,
			   *att = vec + 11 * d,
			   *g2 = vec + 12 * d,
			   *Mx = vec + 13 * d,
			   *Z = vec + 14 * d,
			   *t3 = vec + 15 * d,
			   *t4 = vec + 16 * d,
			   *tmp = vec + 17 * d; /* 12d */

	/* GRU branch: slot m-1 looks ahead into padding (or past L: zero), slot m likewise */
	memcpy(Gs, ST_G(s), sizeof(float) * d);
	gru_slot(m, ST_APREV(s), ST_ALAST(s), mlen < L ? apad : NULL, ST_H(s), h1, Gs + d, tmp);
	if (mlen < L)
		gru_slot(m, ST_ALAST(s), apad, mlen + 1 < L ? apad : NULL, h1, h2, Gs + 2 * d, tmp);
	else
		memset(Gs + 2 * d, 0, sizeof(float) * d);
	glintru_conv3_column(Gs, Gs + d, Gs + 2 * d, d, gcol);
	glintru_linear(gcol, 1, 3 * d, glintru_param(m, GT_CONVG_W), glintru_param(m, GT_CONVG_B), d, Y);

	/* attention expert at slot m-1: the window's items plus L-m padding slots */
	glintru_linear(x_last, 1, d, glintru_param(m, GT_ATT_Q_W), glintru_param(m, GT_ATT_Q_B), d, q);
	glintru_elu_l2_heads(q, 1, d, H);
	{
		const int32_t *rows = glintru_state_rows(s);
		const float *kp = glintru_pad_khat(m),
				   *vp = glintru_pad_v(m);
		float	   *K = scratch + (size_t) L * d,	/* the build's K, V areas */
				   *V = K + (size_t) L * d;
		double		scale = 1.0 / sqrt((double) dh);
		double		acc[GLINTRU_MAX_D];

		if (!m->item_tables_off)
			item_projections(m, rows, mlen, NULL, K, V, scratch);
		for (int i = 0; i < d; i++)
			acc[i] = 0.0;
		for (int t = 0; t < mlen; t++)
		{
			const float *kt = m->item_tables_off ? glintru_item_tables(m, rows[t]) + d : K + (size_t) t * d;
			const float *vt = m->item_tables_off ? glintru_item_tables(m, rows[t]) + 2 * d : V + (size_t) t * d;

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
	glintru_linear(ctx, 1, d, glintru_param(m, GT_ATT_O_W), glintru_param(m, GT_ATT_O_B), d, att);
	for (int i = 0; i < d; i++)
		att[i] += x_last[i];
	glintru_layernorm(att, d, glintru_param(m, GT_ATT_LN_W), glintru_param(m, GT_ATT_LN_B),
					  m->config.layer_norm_eps, att);

	/* softmax mix, GELU gate from dense2(x), dense + residual + LayerNorm */
	{
		const float *lg = glintru_param(m, GT_MIX_LOGITS);
		double		mx = lg[0] > lg[1] ? lg[0] : lg[1];
		double		e0 = exp(lg[0] - mx),
					e1 = exp(lg[1] - mx);
		float		w0 = (float) (e0 / (e0 + e1)),
					w1 = (float) (e1 / (e0 + e1));

		glintru_linear(x_last, 1, d, glintru_param(m, GT_DENSE2_W), glintru_param(m, GT_DENSE2_B), d, g2);
		for (int i = 0; i < d; i++)
			Mx[i] = (w0 * Y[i] + w1 * att[i]) * glintru_gelu(g2[i]);
	}
	glintru_linear(Mx, 1, d, glintru_param(m, GT_DENSE_W), glintru_param(m, GT_DENSE_B), d, Z);
	for (int i = 0; i < d; i++)
		Z[i] += x_last[i];
	glintru_layernorm(Z, d, glintru_param(m, GT_LN_W), glintru_param(m, GT_LN_B),
					  m->config.layer_norm_eps, Z);

	/* gated MLP + residual + the same LayerNorm */
	glintru_linear(Z, 1, d, glintru_param(m, GT_DENSE3_W), glintru_param(m, GT_DENSE3_B), d, t3);
	glintru_linear(Z, 1, d, glintru_param(m, GT_DENSE4_W), glintru_param(m, GT_DENSE4_B), d, t4);
	for (int i = 0; i < d; i++)
		t3[i] *= glintru_gelu(t4[i]);
	glintru_linear(t3, 1, d, glintru_param(m, GT_DENSEOUT_W), glintru_param(m, GT_DENSEOUT_B), d, u);
	for (int i = 0; i < d; i++)
		u[i] += Z[i];
	glintru_layernorm(u, d, glintru_param(m, GT_LN_W), glintru_param(m, GT_LN_B),
					  m->config.layer_norm_eps, u);
}

void
glintru_forward_user_vector(const GlintruModel *m, const int32_t *rows, int64_t n,
							float *u, float *scratch)
{
	/* the state lives at the end of scratch, after the working space */
	GlintruState *s = (GlintruState *) (scratch + work_floats(&m->config));

	glintru_state_build(m, rows, n, s, scratch);
	glintru_state_user_vector(m, s, u, scratch);
}
