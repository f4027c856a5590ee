/*
 * train_layers.c — the layers of the training engine, each a forward
 * function and the backward function that undoes it (X_fwd / X_bwd):
 * linear, GELU, SiLU, dropout and its masks, LayerNorm, ELU+L2 norm, the
 * GRU cell, the conv repack, the selective gate of a GRU unit, the causal
 * linear attention and the cross-entropy over all items.  Row-wise layers
 * work on n stacked rows at once; train_pass.c strings them together.
 *
 * Floating-point order matters here: the trainer is reproducible bit for
 * bit, so sums run in the order written (no reassociation).
 */
#include <math.h>
#include <string.h>

#include "train_internal.h"
#include "util.h"

bool		glintru_train_simd = true;

/* Select the 8-lane loops or their plain-C twins (see train.h). */
bool
glintru_train_use_simd(bool on)
{
	bool		was = glintru_train_simd;

	glintru_train_simd = on;
	return was;
}

/*
 * V8_LOOP(j, n): the 8-lane part of a loop over j < n, when it runs; the
 * plain-C loop after it starts from j and does the rest (or everything).
 */
#ifdef GLINTRU_V8
#define V8_LOOP(j, n) if (glintru_train_simd) for (; (j) + 8 <= (n); (j) += 8)
#define V8_ON glintru_train_simd
#else
#define V8_LOOP(j, n) if (0) for (;;)
#define V8_ON false
#endif

/* Y[n×out] = X[n×in] W^T + b  (W is [out×in] as in PyTorch) */
void
glintru_linear_fwd(const R *X, int n, int in, const R *W, const R *b, R *Y, int out)
{
	if (n <= 0)
		return;
	for (int i = 0; i < n; i++)
		memcpy(Y + (size_t) i * out, b, sizeof(R) * out);
	GEMM(RM, NT, TR, n, out, in, 1, X, in, W, in, 1, Y, out);
}

/*
 * Backward of glintru_linear_fwd: dX (+)= dY W (beta 0 overwrites, 1 adds), dW +=
 * dY^T X, db += colsum(dY).  dX may be NULL.
 */
void
glintru_linear_bwd(const R *X, const R *dY, int n, int in, int out, const R *W,
		   R *dX, R beta_dx, R *dW, R *db)
{
	if (n <= 0)
		return;
	if (dX)
		GEMM(RM, NT, NT, n, in, out, 1, dY, out, W, in, beta_dx, dX, in);
	GEMM(RM, TR, NT, out, in, n, 1, dY, out, X, in, 1, dW, in);
	if (db)
		for (int i = 0; i < n; i++)
		{
			const R    *g = dY + (size_t) i * out;

			for (int j = 0; j < out; j++)
				db[j] += g[j];
		}
}

/* GELU, exact erf form (PyTorch nn.GELU default) */
GLINTRU_VEC void
glintru_gelu_fwd(const R *x, R *y, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = (R) 0.5 * x[i] * (1 + RERF(x[i] * (R) 0.70710678118654752440));
}

/* Backward of glintru_gelu_fwd: dx = dy · (Φ(x) + x φ(x)). */
GLINTRU_VEC void
glintru_gelu_bwd(const R *x, const R *dy, R *dx, size_t n)
{
	for (size_t i = 0; i < n; i++)
	{
		R			cdf = (R) 0.5 * (1 + RERF(x[i] * (R) 0.70710678118654752440));
		R			pdf = REXP((R) -0.5 * x[i] * x[i]) * (R) 0.39894228040143267794;

		dx[i] = dy[i] * (cdf + x[i] * pdf);
	}
}

/* SiLU x·σ(x) */
GLINTRU_VEC void
glintru_silu_fwd(const R *x, R *y, size_t n)
{
	size_t		i = 0;

#ifdef GLINTRU_V8
	V8_LOOP(i, n)
	{
		glintru_v8f xv = V8LOAD(x + i);

		V8STORE(y + i, xv * glintru_v8_sigm(xv));
	}
#endif
	for (; i < n; i++)
		y[i] = x[i] * glintru_sigm(x[i]);
}

/* Backward of glintru_silu_fwd: dx = dy · σ(x)(1 + x(1 - σ(x))). */
GLINTRU_VEC void
glintru_silu_bwd(const R *x, const R *dy, R *dx, size_t n)
{
	size_t		i = 0;

#ifdef GLINTRU_V8
	V8_LOOP(i, n)
	{
		glintru_v8f xv = V8LOAD(x + i);
		glintru_v8f sv = glintru_v8_sigm(xv);

		V8STORE(dx + i, V8LOAD(dy + i) * sv * (1.0f + xv * (1.0f - sv)));
	}
#endif
	for (; i < n; i++)
	{
		R			s = glintru_sigm(x[i]);

		dx[i] = dy[i] * s * (1 + x[i] * (1 - s));
	}
}

/* Dropout: y = x ⊙ mask (mask holds 0 or 1/(1-p)); mask NULL = identity. */
void
glintru_dropout_fwd(R *x, const R *mask, size_t n)
{
	if (!mask)
		return;
	for (size_t i = 0; i < n; i++)
		x[i] *= mask[i];
}

/* Backward of dropout: the same mask scales the gradient. */
void
glintru_dropout_bwd(R *dx, const R *mask, size_t n)
{
	glintru_dropout_fwd(dx, mask, n);
}

/*
 * Dropout masks are a hash of (seed, chunk uid, position, layer, column):
 * masks do not depend on how chunks are batched or split across threads,
 * which keeps training deterministic for a seed, and a gradient check sees
 * the same masks on every evaluation.  One row of n columns into m.
 */
void
glintru_mask_row(R *m, int n, double p, uint64_t seed, uint64_t uid, int pos, int layer)
{
	uint64_t	base = glintru_mix64(seed ^ glintru_mix64(uid * 0x100000001B3ull + (uint64_t) pos * 131 + (uint64_t) layer));
	uint32_t	thr = (uint32_t) (p * 4294967296.0);
	R			keep = (R) (1.0 / (1.0 - p));

	for (int j = 0; j < n; j++)
	{
		uint32_t	u = (uint32_t) (glintru_mix64(base + (uint64_t) j) >> 32);

		m[j] = u < thr ? 0 : keep;
	}
}

/* LayerNorm over rows of width d: y = xhat·γ + β; stores xhat and rstd. */
GLINTRU_VEC void
glintru_layernorm_fwd(const R *x, int n, int d, const R *g, const R *b, double eps,
			  R *xhat, R *rstd, R *y)
{
	for (int i = 0; i < n; i++)
	{
		const R    *xi = x + (size_t) i * d;
		R		   *hi = xhat + (size_t) i * d;
		R		   *yi = y + (size_t) i * d;
		double		mu = 0,
					var = 0;

		for (int j = 0; j < d; j++)
			mu += xi[j];
		mu /= d;
		for (int j = 0; j < d; j++)
			var += (xi[j] - mu) * (xi[j] - mu);
		var /= d;
		R			rs = (R) (1.0 / sqrt(var + eps));

		rstd[i] = rs;
		for (int j = 0; j < d; j++)
		{
			hi[j] = (R) ((xi[j] - mu) * rs);
			yi[j] = hi[j] * g[j] + b[j];
		}
	}
}

/* dx (+)= LN backward; dg, db accumulate. */
GLINTRU_VEC void
glintru_layernorm_bwd(const R *dy, int n, int d, const R *g, const R *xhat, const R *rstd,
			  R *dx, bool add, R *dg, R *db)
{
	for (int i = 0; i < n; i++)
	{
		const R    *dyi = dy + (size_t) i * d;
		const R    *hi = xhat + (size_t) i * d;
		R		   *dxi = dx + (size_t) i * d;
		double		s1 = 0,
					s2 = 0;

		for (int j = 0; j < d; j++)
		{
			R			dh = dyi[j] * g[j];

			s1 += dh;
			s2 += dh * hi[j];
			dg[j] += dyi[j] * hi[j];
			db[j] += dyi[j];
		}
		s1 /= d;
		s2 /= d;
		for (int j = 0; j < d; j++)
		{
			R			v = rstd[i] * (R) (dyi[j] * g[j] - s1 - hi[j] * s2);

			dxi[j] = add ? dxi[j] + v : v;
		}
	}
}

/* ELU then L2 normalisation per head of width dh; stores 1/norm per head. */
GLINTRU_VEC void
glintru_elunorm_fwd(const R *x, int n, int d, int dh, R *y, R *inv)
{
	int			H = d / dh;

	for (int i = 0; i < n; i++)
		for (int h = 0; h < H; h++)
		{
			const R    *xi = x + (size_t) i * d + h * dh;
			R		   *yi = y + (size_t) i * d + h * dh;
			double		s = 0;

			int			j = 0;

			/* exp - 1 as the serving forward computes it (not expm1: same bits) */
#ifdef GLINTRU_V8
			V8_LOOP(j, dh)
			{
				glintru_v8f xv = V8LOAD(xi + j);

				V8STORE(yi + j, v8_sel(xv > v8_splat(0), xv, glintru_v8_exp(xv) - 1.0f));
			}
#endif
			for (; j < dh; j++)
				yi[j] = xi[j] > 0 ? xi[j] : REXP(xi[j]) - 1;
			for (j = 0; j < dh; j++)
				s += (double) yi[j] * yi[j];
			/*
			 * A zero vector (dropout took a whole input row while the biases are
			 * still zero, likely at small d) stays zero, with zero gradient,
			 * instead of 0/0 = NaN poisoning the attention sums.
			 */
			R			iv = s > 0 ? (R) (1.0 / sqrt(s)) : 0;

			inv[(size_t) i * H + h] = iv;
			for (int j = 0; j < dh; j++)
				yi[j] *= iv;
		}
}

/* dx = elunorm backward (overwrites dx); y is the normalised output. */
GLINTRU_VEC void
glintru_elunorm_bwd(const R *x, const R *y, const R *inv, const R *dy, int n, int d, int dh, R *dx)
{
	int			H = d / dh;

	for (int i = 0; i < n; i++)
		for (int h = 0; h < H; h++)
		{
			size_t		o = (size_t) i * d + h * dh;
			double		dot = 0;
			R			iv = inv[(size_t) i * H + h];

			for (int j = 0; j < dh; j++)
				dot += (double) y[o + j] * dy[o + j];
			int			j = 0;

#ifdef GLINTRU_V8
			V8_LOOP(j, dh)
			{
				glintru_v8f xv = V8LOAD(x + o + j);
				glintru_v8f de = (V8LOAD(dy + o + j) - V8LOAD(y + o + j) * (R) dot) * iv;

				V8STORE(dx + o + j, de * v8_sel(xv > v8_splat(0), v8_splat(1), glintru_v8_exp(xv)));
			}
#endif
			for (; j < dh; j++)
			{
				R			de = (dy[o + j] - y[o + j] * (R) dot) * iv;
				R			der = x[o + j] > 0 ? 1 : REXP(x[o + j]);

				dx[o + j] = de * der;
			}
		}
}

/*
 * GRU cell (bias-free, PyTorch gate order r, z, n) over n rows, given
 * gi = W_ih c and gh = W_hh h_prev (each [n×3d]).  Stores r, z, nn and
 * gh_n for the backward pass.
 */
GLINTRU_VEC void
glintru_gru_cell_fwd(const R *gi, const R *gh, const R *hprev, int n, int d,
			 R *r, R *z, R *nn, R *ghn, R *h)
{
	for (int i = 0; i < n; i++)
	{
		const R    *a = gi + (size_t) i * 3 * d;
		const R    *b = gh + (size_t) i * 3 * d;
		const R    *hp = hprev + (size_t) i * d;
		size_t		o = (size_t) i * d;

		int			j = 0;

#ifdef GLINTRU_V8
		V8_LOOP(j, d)
		{
			glintru_v8f rr = glintru_v8_sigm(V8LOAD(a + j) + V8LOAD(b + j));
			glintru_v8f zz = glintru_v8_sigm(V8LOAD(a + d + j) + V8LOAD(b + d + j));
			glintru_v8f bn = V8LOAD(b + 2 * d + j);
			glintru_v8f nv = glintru_v8_tanh(V8LOAD(a + 2 * d + j) + rr * bn);

			V8STORE(r + o + j, rr);
			V8STORE(z + o + j, zz);
			V8STORE(nn + o + j, nv);
			V8STORE(ghn + o + j, bn);
			V8STORE(h + o + j, (1.0f - zz) * nv + zz * V8LOAD(hp + j));
		}
#endif
		for (; j < d; j++)
		{
			R			rr = glintru_sigm(a[j] + b[j]);
			R			zz = glintru_sigm(a[d + j] + b[d + j]);
			R			nv = RTANH(a[2 * d + j] + rr * b[2 * d + j]);

			r[o + j] = rr;
			z[o + j] = zz;
			nn[o + j] = nv;
			ghn[o + j] = b[2 * d + j];
			h[o + j] = (1 - zz) * nv + zz * hp[j];
		}
	}
}

/*
 * Backward of the cell: from dh (total gradient of h) to dgi, dgh ([n×3d]);
 * the direct path z ⊙ dh into h_prev is written to dhp_direct (may be NULL
 * when h_prev is the constant zero).
 */
GLINTRU_VEC void
glintru_gru_cell_bwd(const R *dh, const R *hprev, const R *r, const R *z, const R *nn,
			 const R *ghn, int n, int d, R *dgi, R *dgh, R *dhp_direct)
{
	for (int i = 0; i < n; i++)
	{
		size_t		o = (size_t) i * d;
		R		   *gi = dgi + (size_t) i * 3 * d;
		R		   *gh = dgh + (size_t) i * 3 * d;

		int			j = 0;

#ifdef GLINTRU_V8
		V8_LOOP(j, d)
		{
			glintru_v8f g = V8LOAD(dh + o + j);
			glintru_v8f zz = V8LOAD(z + o + j),
						rr = V8LOAD(r + o + j),
						nv = V8LOAD(nn + o + j);
			glintru_v8f hp = hprev ? V8LOAD(hprev + o + j) : v8_splat(0);
			glintru_v8f dn = g * (1.0f - zz);
			glintru_v8f dzz = g * (hp - nv);
			glintru_v8f dan = dn * (1.0f - nv * nv);
			glintru_v8f daz = dzz * zz * (1.0f - zz);
			glintru_v8f dar = dan * V8LOAD(ghn + o + j) * rr * (1.0f - rr);

			V8STORE(gi + j, dar);
			V8STORE(gh + j, dar);
			V8STORE(gi + d + j, daz);
			V8STORE(gh + d + j, daz);
			V8STORE(gi + 2 * d + j, dan);
			V8STORE(gh + 2 * d + j, dan * rr);
			if (dhp_direct)
				V8STORE(dhp_direct + o + j, g * zz);
		}
#endif
		for (; j < d; j++)
		{
			R			g = dh[o + j];
			R			zz = z[o + j],
						rr = r[o + j],
						nv = nn[o + j];
			R			hp = hprev ? hprev[o + j] : 0;
			R			dn = g * (1 - zz);
			R			dzz = g * (hp - nv);
			R			dan = dn * (1 - nv * nv);
			R			daz = dzz * zz * (1 - zz);
			R			dar = dan * ghn[o + j] * rr * (1 - rr);

			gi[j] = dar;
			gh[j] = dar;
			gi[d + j] = daz;
			gh[d + j] = daz;
			gi[2 * d + j] = dan;
			gh[2 * d + j] = dan * rr;
			if (dhp_direct)
				dhp_direct[o + j] = g * zz;
		}
	}
}

/* conv weight [out,in,3] -> three [out×in] matrices K_k (tap k) */
void
glintru_conv_repack(const R *W, int d, R *K)
{
	for (int o = 0; o < d; o++)
		for (int i = 0; i < d; i++)
			for (int k = 0; k < 3; k++)
				K[(size_t) k * d * d + (size_t) o * d + i] = W[((size_t) o * d + i) * 3 + k];
}

/* Adds three [out×in] tap matrices back into a conv weight [out,in,3]. */
void
glintru_conv_unpack_add(const R *K, int d, R *W)
{
	for (int o = 0; o < d; o++)
		for (int i = 0; i < d; i++)
			for (int k = 0; k < 3; k++)
				W[((size_t) o * d + i) * 3 + k] += K[(size_t) k * d * d + (size_t) o * d + i];
}

/*
 * Selective gate and projection of a unit (rows n): s = W2 silu(W1 c + b1)
 * + b2, dropped; pj = proj(h); G = s ⊙ pj.
 */
GLINTRU_VEC void
glintru_unit_post_fwd(const GlintruNet *net, GlintruUnit *u, int n)
{
	int			d = net->d,
				d2 = d / 2;

	glintru_linear_fwd(u->c, n, d, PRM(net, GT_GATE1_W), PRM(net, GT_GATE1_B), u->g1, d2);
	glintru_silu_fwd(u->g1, u->g1a, (size_t) n * d2);
	glintru_linear_fwd(u->g1a, n, d2, PRM(net, GT_GATE2_W), PRM(net, GT_GATE2_B), u->s, d);
	if (u->ms)
		glintru_dropout_fwd(u->s, u->ms, (size_t) n * d);
	glintru_linear_fwd(u->h, n, d, PRM(net, GT_PROJECTION_W), PRM(net, GT_PROJECTION_B), u->pj, d);
	for (size_t i = 0; i < (size_t) n * d; i++)
		u->G[i] = u->s[i] * u->pj[i];
}

/*
 * Backward of glintru_unit_post_fwd from u->dG: dh (+)= proj part (add selects),
 * dc = gate part (overwrites).
 */
GLINTRU_VEC void
glintru_unit_post_bwd(const GlintruNet *net, GlintruUnit *u, int n, R *grad, bool add_dh)
{
	int			d = net->d,
				d2 = d / 2;
	size_t		nd = (size_t) n * d;

	for (size_t i = 0; i < nd; i++)
	{
		u->ds[i] = u->dG[i] * u->pj[i];
		u->dpj[i] = u->dG[i] * u->s[i];
	}
	if (u->ms)
		glintru_dropout_bwd(u->ds, u->ms, nd);
	glintru_linear_bwd(u->h, u->dpj, n, d, d, PRM(net, GT_PROJECTION_W), u->dh, add_dh ? 1 : 0,
			   GRD(grad, net, GT_PROJECTION_W), GRD(grad, net, GT_PROJECTION_B));
	glintru_linear_bwd(u->g1a, u->ds, n, d2, d, PRM(net, GT_GATE2_W), u->dg1, 0,
			   GRD(grad, net, GT_GATE2_W), GRD(grad, net, GT_GATE2_B));
	glintru_silu_bwd(u->g1, u->dg1, u->dg1, (size_t) n * d2);
	glintru_linear_bwd(u->c, u->dg1, n, d, d2, PRM(net, GT_GATE1_W), u->dc, 0,
			   GRD(grad, net, GT_GATE1_W), GRD(grad, net, GT_GATE1_B));
}

/*
 * A GRU unit over n rows from its inputs c and hprev: gi = W_ih c,
 * gh = W_hh hprev, the cell, then the selective gate and projection.
 */
void
glintru_gru_unit_fwd(const GlintruNet *net, GlintruUnit *u, int n)
{
	int			d = net->d;

	GEMM(RM, NT, TR, n, 3 * d, d, 1, u->c, d, PRM(net, GT_GRU_W_IH), d, 0, u->gi, 3 * d);
	GEMM(RM, NT, TR, n, 3 * d, d, 1, u->hprev, d, PRM(net, GT_GRU_W_HH), d, 0, u->gh, 3 * d);
	glintru_gru_cell_fwd(u->gi, u->gh, u->hprev, n, d, u->r, u->z, u->nn, u->ghn, u->h);
	glintru_unit_post_fwd(net, u, n);
}

/*
 * The input side of a GRU unit's backward, given dgi, dgh: dc += dgi W_ih
 * and the weight gradients of W_ih and W_hh.
 */
void
glintru_gru_input_bwd(const GlintruNet *net, GlintruUnit *u, int n, R *grad)
{
	int			d = net->d;

	GEMM(RM, NT, NT, n, d, 3 * d, 1, u->dgi, 3 * d, PRM(net, GT_GRU_W_IH), d, 1, u->dc, d);
	GEMM(RM, TR, NT, 3 * d, d, n, 1, u->dgi, 3 * d, u->c, d, 1, GRD(grad, net, GT_GRU_W_IH), d);
	GEMM(RM, TR, NT, 3 * d, d, n, 1, u->dgh, 3 * d, u->hprev, d, 1, GRD(grad, net, GT_GRU_W_HH), d);
}

/*
 * Backward of glintru_gru_unit_fwd from u->dG (and u->dh, which add_dh
 * keeps): dc, and the gradient of hprev into dhprev (overwritten: the
 * direct z-path, plus dgh W_hh).
 */
void
glintru_gru_unit_bwd(const GlintruNet *net, GlintruUnit *u, int n, bool add_dh, R *dhprev, R *grad)
{
	int			d = net->d;

	glintru_unit_post_bwd(net, u, n, grad, add_dh);
	glintru_gru_cell_bwd(u->dh, u->hprev, u->r, u->z, u->nn, u->ghn, n, d, u->dgi, u->dgh, dhprev);
	GEMM(RM, NT, NT, n, d, 3 * d, 1, u->dgh, 3 * d, PRM(net, GT_GRU_W_HH), d, 1, dhprev, d);
	glintru_gru_input_bwd(net, u, n, grad);
}

/* The attention state of every head: S_h += (a_h · scale) b_hᵀ (dh×dh per head). */
static inline __attribute__((always_inline)) void
attention_state_add(R *S, const R *a, R scale, const R *b, int H, int dh)
{
	for (int h = 0; h < H; h++)
		for (int i = 0; i < dh; i++)
		{
			R			ai = a[h * dh + i] * scale;
			R		   *Si = S + (size_t) h * dh * dh + (size_t) i * dh;

			for (int j = 0; j < dh; j++)
				Si[j] += ai * b[h * dh + j];
		}
}

/* The state after position p of chunk c: S += k̂_p v_pᵀ. */
static inline __attribute__((always_inline)) void
attention_state_step(const GlintruNet *net, const GlintruRows *rw, int c, int p,
					 const R *kh, const R *v, R *S)
{
	int			d = net->d,
				dh = d / net->n_heads;
	size_t		row = (size_t) (rw->tr_off[c] + p);

	/* · 1 is exact: the forward state is Σ k̂ v̂ᵀ as before */
	attention_state_add(S, kh + row * d, 1, v + row * d, net->n_heads, dh);
}

/* What a forward sweep over a chunk's positions computes at each head row. */
typedef struct AttRow
{
	const R    *qh,
			   *kpad,
			   *vpad;
	R		   *ctx;			/* forward: the context rows */
	const R    *dctx;			/* backward: their gradient (NULL in the forward) */
	R		   *dq,
			   *dkpad,
			   *dvpad;
} AttRow;

/* Forward at a head row (q̂ = q, npad padding slots): its ctx from the state S. */
static inline __attribute__((always_inline)) void
attention_row_fwd(int H, int dh, R sc, R npad, const AttRow *a, const R *q, R *out, const R *S)
{
	const R    *kpad = a->kpad,
			   *vpad = a->vpad;

	for (int h = 0; h < H; h++)
	{
		const R    *Sh = S + (size_t) h * dh * dh;
		R			qk = 0;

		R		   *o = out + h * dh;

		for (int i = 0; i < dh; i++)
			qk += q[h * dh + i] * kpad[h * dh + i];
		/* i outside, j inside: each o[j] sums in the same order, and the j loop vectorises */
		for (int j = 0; j < dh; j++)
			o[j] = npad * qk * vpad[h * dh + j];
		for (int i = 0; i < dh; i++)
		{
			R			qi = q[h * dh + i];
			const R    *Si = Sh + (size_t) i * dh;

			for (int j = 0; j < dh; j++)
				o[j] += qi * Si[j];
		}
		for (int j = 0; j < dh; j++)
			o[j] *= sc;
	}
}

/* Backward at a head row from its dctx g: dq (overwritten), dkpad, dvpad (accumulated). */
static inline __attribute__((always_inline)) void
attention_row_bwd_q(int H, int dh, R sc, R npad, const AttRow *a, const R *q, const R *g,
					R *dqr, const R *S)
{
	const R    *kpad = a->kpad,
			   *vpad = a->vpad;

	for (int h = 0; h < H; h++)
	{
		const R    *Sh = S + (size_t) h * dh * dh;
		R			gv = 0,
					qk = 0;

		for (int j = 0; j < dh; j++)
			gv += g[h * dh + j] * vpad[h * dh + j];
		for (int i = 0; i < dh; i++)
			qk += q[h * dh + i] * kpad[h * dh + i];
		for (int i = 0; i < dh; i++)
		{
			R			acc = npad * gv * kpad[h * dh + i];

			for (int j = 0; j < dh; j++)
				acc += Sh[(size_t) i * dh + j] * g[h * dh + j];
			dqr[h * dh + i] = acc * sc;
			a->dkpad[h * dh + i] += sc * npad * gv * q[h * dh + i];
		}
		for (int j = 0; j < dh; j++)
			a->dvpad[h * dh + j] += sc * npad * qk * g[h * dh + j];
	}
}

/*
 * The forward sweep over chunk c: the running state, and at every head
 * row the forward (a->dctx NULL) or the backward's dq part.
 */
GLINTRU_VEC static void
attention_sweep(const GlintruNet *net, const GlintruRows *rw, int c, const R *kh, const R *v,
				const AttRow *a, R *S)
{
	const GlintruChunk *ch = &rw->ch[c];
	int			d = net->d,
				H = net->n_heads,
				dh = d / H;
	R			sc = (R) (1.0 / sqrt((double) dh));

	memset(S, 0, sizeof(R) * d * dh);
	for (int p = 0; p < ch->len; p++)
	{
		attention_state_step(net, rw, c, p, kh, v, S);
		if (p < ch->p_lo)
			continue;
		size_t		row = (size_t) (rw->hd_off[c] + p - ch->p_lo) * d;
		R			npad = (R) (net->max_seq_len - p - 1);

		if (a->dctx)
			attention_row_bwd_q(H, dh, sc, npad, a, a->qh + row, a->dctx + row, a->dq + row, S);
		else
			attention_row_fwd(H, dh, sc, npad, a, a->qh + row, a->ctx + row, S);
	}
}

/*
 * Causal linear attention with the padding term, per chunk:
 * ctx_p = [Σ_{t≤p} (q̂_p·k̂_t) v_t + (L-p-1)(q̂_p·k̂pad) vpad] / √dh.
 * Keeps a running dh×dh state per head (O(len·d·dh) per chunk).
 */
void
glintru_attention_fwd(const GlintruNet *net, const GlintruRows *rw, const R *kh,
					  const R *v, const R *qh, const R *kpad, const R *vpad, R *ctx, R *S)
{
	AttRow		a = {.qh = qh, .kpad = kpad, .vpad = vpad, .ctx = ctx};

	for (int c = 0; c < rw->nc; c++)
		attention_sweep(net, rw, c, kh, v, &a, S);
}

/*
 * Backward, backward sweep of one chunk: accumulates Rt = Σ_{p≥t} q̂_p g_pᵀ
 * (scaled by 1/√dh) for dk_t = Rt v_t, dv_t = Rtᵀ k̂_t (both overwritten).
 */
GLINTRU_VEC static void
attention_bwd_kv(const GlintruNet *net, const GlintruRows *rw, int c, const R *kh,
				 const R *v, const R *qh, const R *dctx, R *dk, R *dv, R *S)
{
	int			d = net->d,
				H = net->n_heads,
				dh = d / H;
	R			sc = (R) (1.0 / sqrt((double) dh));
	const GlintruChunk *ch = &rw->ch[c];

	memset(S, 0, sizeof(R) * d * dh);
	for (int t = ch->len - 1; t >= 0; t--)
	{
		if (t >= ch->p_lo)
		{
			size_t		row = (size_t) (rw->hd_off[c] + t - ch->p_lo);

			attention_state_add(S, qh + row * d, sc, dctx + row * d, H, dh);
		}
		size_t		tr = (size_t) (rw->tr_off[c] + t);
		const R    *kt = kh + tr * d;
		const R    *vt = v + tr * d;

		for (int h = 0; h < H; h++)
		{
			const R    *Sh = S + (size_t) h * dh * dh;

			for (int i = 0; i < dh; i++)
			{
				R			acc = 0;

				for (int j = 0; j < dh; j++)
					acc += Sh[(size_t) i * dh + j] * vt[h * dh + j];
				dk[tr * d + h * dh + i] = acc;
			}
			R		   *dvt = dv + tr * d + h * dh;

			/* i outside: the same sums per j, vectorised over j */
			for (int j = 0; j < dh; j++)
				dvt[j] = 0;
			for (int i = 0; i < dh; i++)
				for (int j = 0; j < dh; j++)
					dvt[j] += Sh[(size_t) i * dh + j] * kt[h * dh + i];
		}
	}
}

/*
 * Backward of glintru_attention_fwd from dctx: dq (head rows, overwritten),
 * dk, dv (trunk rows, overwritten), dkpad, dvpad (accumulated).
 */
void
glintru_attention_bwd(const GlintruNet *net, const GlintruRows *rw, const R *kh,
					  const R *v, const R *qh, const R *kpad, const R *vpad,
					  const R *dctx, R *dq, R *dk, R *dv, R *dkpad, R *dvpad, R *S)
{
	AttRow		a = {.qh = qh, .kpad = kpad, .vpad = vpad, .dctx = dctx,
	.dq = dq, .dkpad = dkpad, .dvpad = dvpad};

	/* per chunk: a forward sweep rebuilds the state for dq, a backward one gives dk, dv */
	for (int c = 0; c < rw->nc; c++)
	{
		attention_sweep(net, rw, c, kh, v, &a, S);
		attention_bwd_kv(net, rw, c, kh, v, qh, dctx, dk, dv, S);
	}
}

/*
 * Cross-entropy over all n_rows classes (item 0 included, as published) for
 * a block of rows: returns the summed loss; writes dU = scale·(softmax -
 * onehot) E and accumulates dE += scale·(softmax - onehot)ᵀ U.
 *
 * Two passes over the logits per row (max; exp and sum in one), then the
 * target's entry becomes e_t - Σe: the block holds Σe·(softmax - onehot)
 * unscaled, and the per-row factor scale/Σe goes onto the n×d sides (dU's
 * rows after one GEMM, U's rows before the other) instead of a third pass
 * over the n×N1 block.  Us [n×d] is scratch.
 */
GLINTRU_VEC double
glintru_ce_fwd_bwd(const GlintruNet *net, const R *U, const int *tgt, int n, R *logits,
				   double scale, R *dU, R *dE, R *Us)
{
	int			d = net->d;
	int64_t		N1 = net->layout.n_rows;
	const R    *E = PRM(net, GT_ITEM_EMBEDDING);
	double		loss = 0;
	R			rs[GLINTRU_LOGIT_BLOCK];

	GEMM(RM, NT, TR, n, (int) N1, d, 1, U, d, E, d, 0, logits, (int) N1);
	for (int i = 0; i < n; i++)
	{
		R		   *l = logits + (size_t) i * N1;
		R			mx = l[0];
		double		s = 0;
		R			lane[8];
		int64_t		j8 = N1 & ~(int64_t) 7;
		int			t = tgt[i];

		/* eight independent lanes for max and sum: the 8-lane loop and its twin agree */
		if (V8_ON)
		{
#ifdef GLINTRU_V8
			glintru_v8f m8 = v8_splat(l[0]),
						s8 = v8_splat(0),
						mxv;

			for (int64_t j = 0; j < j8; j += 8)
			{
				glintru_v8f v = V8LOAD(l + j);

				m8 = v8_sel(v > m8, v, m8);
			}
			for (int k = 0; k < 8; k++)
				mx = m8[k] > mx ? m8[k] : mx;
			for (int64_t j = j8; j < N1; j++)
				mx = l[j] > mx ? l[j] : mx;
			mxv = v8_splat(mx);
			for (int64_t j = 0; j < j8; j += 8)
			{
				glintru_v8f e = glintru_v8_exp(V8LOAD(l + j) - mxv);

				V8STORE(l + j, e);
				s8 += e;
			}
			for (int k = 0; k < 8; k++)
				lane[k] = s8[k];
#endif
		}
		else
		{
			for (int k = 0; k < 8; k++)
				lane[k] = l[0];
			for (int64_t j = 0; j < j8; j += 8)
				for (int k = 0; k < 8; k++)
					lane[k] = l[j + k] > lane[k] ? l[j + k] : lane[k];
			for (int k = 0; k < 8; k++)
				mx = lane[k] > mx ? lane[k] : mx;
			for (int64_t j = j8; j < N1; j++)
				mx = l[j] > mx ? l[j] : mx;
			for (int k = 0; k < 8; k++)
				lane[k] = 0;
			for (int64_t j = 0; j < j8; j += 8)
				for (int k = 0; k < 8; k++)
				{
					R			e = REXP(l[j + k] - mx);

					l[j + k] = e;
					lane[k] += e;
				}
		}
		for (int64_t j = j8; j < N1; j++)
			s += l[j] = REXP(l[j] - mx);
		for (int k = 0; k < 8; k++)
			s += lane[k];
		/* l[t] = exp(logit_t - max): loss = log Σ - log l[t] */
		loss += log(s) - log((double) l[t]);
		l[t] -= (R) s;
		rs[i] = (R) (scale / s);
	}
	if (dU)
	{
		for (int i = 0; i < n; i++)
			for (int k = 0; k < d; k++)
				Us[(size_t) i * d + k] = U[(size_t) i * d + k] * rs[i];
		GEMM(RM, NT, NT, n, d, (int) N1, 1, logits, (int) N1, E, d, 0, dU, d);
		GEMM(RM, TR, NT, (int) N1, d, n, 1, logits, (int) N1, Us, d, 1, dE, d);
		for (int i = 0; i < n; i++)
			for (int k = 0; k < d; k++)
				dU[(size_t) i * d + k] *= rs[i];
	}
	return loss;
}
