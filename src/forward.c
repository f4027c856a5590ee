/*
 * forward.c — the exact GLINT-RU forward pass for one window (SPEC §1) and
 * top-k selection.
 *
 * Only the output at the last real slot m-1 is needed, so the position-wise
 * layers run once; what spans the window is: the attention keys/values (the
 * sum S over all L slots, padding included, taken as Σ_t (q̂·k̂_t) v_t plus
 * (L-m) copies of the padding term), dense1 + conv1d for the GRU input, the
 * GRU recurrence, and the selective gate at slots m-2, m-1, m (conv1dforgru
 * looks one slot either side of m-1).  Slots m … L-1 hold item 0, so the two
 * look-ahead slots use the precomputed padding vectors.
 *
 * Numeric core: no PostgreSQL headers here.
 */
#include "forward.h"
#include "kernels.h"

#include <math.h>
#include <string.h>

size_t
glintru_forward_scratch_floats(const GlintruConfig *cfg)
{
	size_t		L = (size_t) cfg->max_seq_len;
	size_t		d = (size_t) cfg->d;

	/* X, K, V, a: L·d each; col, GI: (L+1)·3d each; C, Hs: (L+1)·d; vectors */
	return 4 * L * d + 2 * (L + 1) * 3 * d + 2 * (L + 1) * d + 32 * d;
}

/* selective gate at one slot: G = (W2 silu(W1 c + b1) + b2) ⊙ (P h + bp) */
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

void
glintru_forward_user_vector(const GlintruModel *m, const int32_t *rows, int64_t n,
					float *u, float *scratch)
{
	const int	d = m->config.d;
	const int	H = m->config.n_heads;
	const int	dh = d / H;
	const int	L = m->config.max_seq_len;
	const int	mlen = (int) (n < L ? n : L);
	const int32_t *win = rows + (n - mlen);
	/* conv/GRU slots that matter: 0 … last, where slot m exists only if m < L */
	const int	last = mlen < L ? mlen : L - 1;
	const float *E = glintru_param(m, GT_ITEM_EMBEDDING);
	float	   *X = scratch;
	float	   *K = X + (size_t) L * d;
	float	   *V = K + (size_t) L * d;
	float	   *A1 = V + (size_t) L * d;	/* dense1(x_t), t < m */
	float	   *col = A1 + (size_t) L * d;
	float	   *GI = col + (size_t) (L + 1) * 3 * d;
	float	   *C = GI + (size_t) (L + 1) * 3 * d;
	float	   *Hs = C + (size_t) (L + 1) * d;
	float	   *vec = Hs + (size_t) (L + 1) * d;
	float	   *q = vec,
			   *ctx = vec + d,
			   *att = vec + 2 * d,
			   *Y = vec + 3 * d,
			   *Mx = vec + 4 * d,
			   *g2 = vec + 5 * d,
			   *Z = vec + 6 * d,
			   *t3 = vec + 7 * d,
			   *t4 = vec + 8 * d,
			   *Gs = vec + 9 * d,	/* G at slots m-2, m-1, m: 3d */
			   *gcol = vec + 12 * d,	/* 3d */
			   *tmp = vec + 15 * d; /* 3d for gate, 3d for GRU */
	const float *x_last;
	double		ctxd[GLINTRU_MAX_D];	/* per-head accumulator */

	/* 1. embeddings of the window */
	for (int t = 0; t < mlen; t++)
		memcpy(X + (size_t) t * d, E + (size_t) win[t] * d, sizeof(float) * d);
	x_last = X + (size_t) (mlen - 1) * d;

	/* 2. attention expert at slot m-1 */
	glintru_linear(X, mlen, d, glintru_param(m, GT_ATT_K_W), glintru_param(m, GT_ATT_K_B), d, K);
	glintru_elu_l2_heads(K, mlen, d, H);
	glintru_linear(X, mlen, d, glintru_param(m, GT_ATT_V_W), glintru_param(m, GT_ATT_V_B), d, V);
	glintru_linear(x_last, 1, d, glintru_param(m, GT_ATT_Q_W), glintru_param(m, GT_ATT_Q_B), d, q);
	glintru_elu_l2_heads(q, 1, d, H);
	{
		const float *kp = glintru_pad_khat(m),
				   *vp = glintru_pad_v(m);
		double		scale = 1.0 / sqrt((double) dh);

		for (int h = 0; h < H; h++)
		{
			const float *qh = q + h * dh;
			double		w;

			for (int j = 0; j < dh; j++)
				ctxd[j] = 0.0;
			for (int t = 0; t < mlen; t++)
			{
				const float *kt = K + (size_t) t * d + h * dh;
				const float *vt = V + (size_t) t * d + h * dh;

				w = 0.0;
				for (int i = 0; i < dh; i++)
					w += (double) qh[i] * kt[i];
				for (int j = 0; j < dh; j++)
					ctxd[j] += w * vt[j];
			}
			/* the L-m padding slots each add (q̂·k̂_pad) v_pad */
			w = 0.0;
			for (int i = 0; i < dh; i++)
				w += (double) qh[i] * kp[h * dh + i];
			w *= (double) (L - mlen);
			for (int j = 0; j < dh; j++)
				ctx[h * dh + j] = (float) ((ctxd[j] + w * vp[h * dh + j]) * scale);
		}
	}
	glintru_linear(ctx, 1, d, glintru_param(m, GT_ATT_O_W), glintru_param(m, GT_ATT_O_B), d, att);
	for (int i = 0; i < d; i++)
		att[i] += x_last[i];
	glintru_layernorm(att, d, glintru_param(m, GT_ATT_LN_W), glintru_param(m, GT_ATT_LN_B),
					  m->config.layer_norm_eps, att);

	/* 3. dense1 + conv1d over slots 0 … last: a_t real for t < m, a_pad up to L-1, 0 beyond */
	glintru_linear(X, mlen, d, glintru_param(m, GT_DENSE1_W), glintru_param(m, GT_DENSE1_B), d, A1);
	{
		const float *apad = glintru_pad_a(m);
#define A_AT(t) ((t) < 0 || (t) >= L ? NULL : (t) < mlen ? A1 + (size_t) (t) * d : apad)

		for (int t = 0; t <= last; t++)
			glintru_conv3_column(A_AT(t - 1), A_AT(t), A_AT(t + 1), d, col + (size_t) t * 3 * d);
#undef A_AT
	}
	glintru_linear(col, last + 1, 3 * d, glintru_param(m, GT_CONV1D_W), glintru_param(m, GT_CONV1D_B), d, C);

	/* 4. GRU over slots 0 … last (h_{-1} = 0): input gates as one GEMM, then the recurrence */
	glintru_linear(C, last + 1, d, glintru_param(m, GT_GRU_W_IH), NULL, 3 * d, GI);
	for (int t = 0; t <= last; t++)
		glintru_gru_step(GI + (size_t) t * 3 * d, t ? Hs + (size_t) (t - 1) * d : NULL,
						 glintru_param(m, GT_GRU_W_HH), d, Hs + (size_t) t * d, tmp + 3 * d);

	/* 5. selective gate at slots m-2, m-1, m, then conv1dforgru at m-1 */
	for (int k = 0; k < 3; k++)
	{
		int			t = mlen - 2 + k;

		if (t < 0 || t > last)
			memset(Gs + k * d, 0, sizeof(float) * d);
		else
			gate_output(m, C + (size_t) t * d, Hs + (size_t) t * d, Gs + k * d, tmp);
	}
	glintru_conv3_column(Gs, Gs + d, Gs + 2 * d, d, gcol);
	glintru_linear(gcol, 1, 3 * d, glintru_param(m, GT_CONVG_W), glintru_param(m, GT_CONVG_B), d, Y);

	/* 6. softmax mix, GELU gate from dense2(x), dense + residual + LayerNorm */
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

	/* 7. gated MLP + residual + the same LayerNorm */
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

/* a beats b: higher score, or equal score and lower row */
static inline int
better(GlintruScored a, GlintruScored b)
{
	return a.score > b.score || (a.score == b.score && a.row < b.row);
}

/* min-heap on "better": heap[0] is the worst of the kept k */
static void
sift_down(GlintruScored *heap, int n, int i)
{
	for (;;)
	{
		int			l = 2 * i + 1,
					r = l + 1,
					w = i;
		GlintruScored tmp;

		if (l < n && better(heap[w], heap[l]))
			w = l;
		if (r < n && better(heap[w], heap[r]))
			w = r;
		if (w == i)
			return;
		tmp = heap[i];
		heap[i] = heap[w];
		heap[w] = tmp;
		i = w;
	}
}

int
glintru_top_k(const float *scores, int64_t n_rows, const uint8_t *exclude, int k,
			  GlintruScored *out)
{
	int			n = 0;

	if (k <= 0)
		return 0;
	for (int64_t j = 1; j < n_rows; j++)
	{
		GlintruScored c = {(int32_t) j, scores[j]};

		if (exclude && exclude[j])
			continue;
		if (n < k)
		{
			/* sift up */
			int			i = n++;

			out[i] = c;
			while (i > 0)
			{
				int			p = (i - 1) / 2;
				GlintruScored tmp;

				if (!better(out[p], out[i]))
					break;
				tmp = out[p];
				out[p] = out[i];
				out[i] = tmp;
				i = p;
			}
		}
		else if (better(c, out[0]))
		{
			out[0] = c;
			sift_down(out, n, 0);
		}
	}
	/* heap sort: repeatedly move the worst to the end → best first */
	for (int end = n - 1; end > 0; end--)
	{
		GlintruScored tmp = out[0];

		out[0] = out[end];
		out[end] = tmp;
		sift_down(out, end, 0);
	}
	return n;
}
