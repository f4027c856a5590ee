/*
 * train.c — the GLINT-RU training engine: one forward and one backward
 * function per layer, the all-prefix forward/backward of SPEC §1 ("All
 * prefixes of a sequence at once") over a set of windows, cross-entropy over
 * all item rows, Adam, initialisation, evaluation, and the epoch loop with
 * its worker processes (end of this file).
 *
 * Row layout.  The windows (chunks) of one call are stacked: every position
 * of every chunk is a "trunk row" (embedding, dense1, conv taps, GRU trunk,
 * key/value); the positions that predict something are also "head rows"
 * (query, the two GRU branch steps, conv over G, mix, MLP, loss).  Row-wise
 * layers are single GEMMs over all rows of the call; only the GRU recurrence
 * and the causal attention sums loop over positions, and the GRU recurrence
 * steps all chunks in lockstep so that each step is one GEMM too.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cblas.h>

#include "train.h"
#include "kernels.h"
#include "metrics.h"
#include "util.h"

typedef GlintruReal R;

#ifdef GLINTRU_TRAIN_DOUBLE
#define GEMM cblas_dgemm
#define REXP exp
#define RTANH tanh
#define RERF erf
#define RSQRTF sqrt
#else
/*
 * Float build: exp through the branch-free polynomial of kernels.h, which
 * the compiler vectorises, because libm's expf/tanhf calls were a quarter of
 * the training time (perf: softmax over all items, GRU gates).  The float64
 * build keeps libm for the exact gradient check.
 */
static inline float
fast_tanhf(float x)
{
	return 2.0f / (1.0f + glintru_fast_expf(-2.0f * x)) - 1.0f;
}

#define GEMM cblas_sgemm
#define REXP glintru_fast_expf
#define RTANH fast_tanhf
#define RERF erff
#define RSQRTF sqrtf
#endif

#define NT CblasNoTrans
#define TR CblasTrans
#define RM CblasRowMajor

/* ------------------------------------------------------------------ */
/* small helpers                                                        */
/* ------------------------------------------------------------------ */

/* Y[n×out] = X[n×in] W^T + b  (W is [out×in] as in PyTorch) */
static void
linear_fwd(const R *X, int n, int in, const R *W, const R *b, R *Y, int out)
{
	if (n <= 0)
		return;
	for (int i = 0; i < n; i++)
		memcpy(Y + (size_t) i * out, b, sizeof(R) * out);
	GEMM(RM, NT, TR, n, out, in, 1, X, in, W, in, 1, Y, out);
}

/*
 * Backward of linear_fwd: dX (+)= dY W (beta 0 overwrites, 1 adds), dW +=
 * dY^T X, db += colsum(dY).  dX may be NULL.
 */
static void
linear_bwd(const R *X, const R *dY, int n, int in, int out, const R *W,
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

static inline R
sigm(R x)
{
	return 1 / (1 + REXP(-x));
}

/* GELU, exact erf form (PyTorch nn.GELU default) */
static void
gelu_fwd(const R *x, R *y, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = (R) 0.5 * x[i] * (1 + RERF(x[i] * (R) 0.70710678118654752440));
}

static void
gelu_bwd(const R *x, const R *dy, R *dx, size_t n)
{
	for (size_t i = 0; i < n; i++)
	{
		R			cdf = (R) 0.5 * (1 + RERF(x[i] * (R) 0.70710678118654752440));
		R			pdf = REXP((R) -0.5 * x[i] * x[i]) * (R) 0.39894228040143267794;

		dx[i] = dy[i] * (cdf + x[i] * pdf);
	}
}

/* SiLU x·σ(x) */
static void
silu_fwd(const R *x, R *y, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = x[i] * sigm(x[i]);
}

static void
silu_bwd(const R *x, const R *dy, R *dx, size_t n)
{
	for (size_t i = 0; i < n; i++)
	{
		R			s = sigm(x[i]);

		dx[i] = dy[i] * s * (1 + x[i] * (1 - s));
	}
}

/* Dropout: y = x ⊙ mask (mask holds 0 or 1/(1-p)); mask NULL = identity. */
static void
dropout_fwd(R *x, const R *mask, size_t n)
{
	if (!mask)
		return;
	for (size_t i = 0; i < n; i++)
		x[i] *= mask[i];
}

static void
dropout_bwd(R *dx, const R *mask, size_t n)
{
	dropout_fwd(dx, mask, n);
}

/*
 * Dropout masks are a hash of (seed, chunk uid, position, layer, column):
 * masks do not depend on how chunks are batched or split across threads,
 * which keeps training deterministic for a seed, and a gradient check sees
 * the same masks on every evaluation.
 */

static void
make_mask_row(R *m, int n, double p, uint64_t seed, uint64_t uid, int pos, int layer)
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
static void
layernorm_fwd(const R *x, int n, int d, const R *g, const R *b, double eps,
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
static void
layernorm_bwd(const R *dy, int n, int d, const R *g, const R *xhat, const R *rstd,
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
static void
elunorm_fwd(const R *x, int n, int d, int dh, R *y, R *inv)
{
	int			H = d / dh;

	for (int i = 0; i < n; i++)
		for (int h = 0; h < H; h++)
		{
			const R    *xi = x + (size_t) i * d + h * dh;
			R		   *yi = y + (size_t) i * d + h * dh;
			double		s = 0;

			for (int j = 0; j < dh; j++)
			{
				yi[j] = xi[j] > 0 ? xi[j] : REXP(xi[j]) - 1;
				s += (double) yi[j] * yi[j];
			}
			R			iv = (R) (1.0 / sqrt(s));

			inv[(size_t) i * H + h] = iv;
			for (int j = 0; j < dh; j++)
				yi[j] *= iv;
		}
}

/* dx = elunorm backward (overwrites dx); y is the normalised output. */
static void
elunorm_bwd(const R *x, const R *y, const R *inv, const R *dy, int n, int d, int dh, R *dx)
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
			for (int j = 0; j < dh; j++)
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
static void
gru_cell_fwd(const R *gi, const R *gh, const R *hprev, int n, int d,
			 R *r, R *z, R *nn, R *ghn, R *h)
{
	for (int i = 0; i < n; i++)
	{
		const R    *a = gi + (size_t) i * 3 * d;
		const R    *b = gh + (size_t) i * 3 * d;
		const R    *hp = hprev + (size_t) i * d;
		size_t		o = (size_t) i * d;

		for (int j = 0; j < d; j++)
		{
			R			rr = sigm(a[j] + b[j]);
			R			zz = sigm(a[d + j] + b[d + j]);
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
static void
gru_cell_bwd(const R *dh, const R *hprev, const R *r, const R *z, const R *nn,
			 const R *ghn, int n, int d, R *dgi, R *dgh, R *dhp_direct)
{
	for (int i = 0; i < n; i++)
	{
		size_t		o = (size_t) i * d;
		R		   *gi = dgi + (size_t) i * 3 * d;
		R		   *gh = dgh + (size_t) i * 3 * d;

		for (int j = 0; j < d; j++)
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

/* ------------------------------------------------------------------ */
/* workspace                                                            */
/* ------------------------------------------------------------------ */

/*
 * Activations and gradients of one "unit": conv output c -> GRU step ->
 * selective gate and projection -> G.  The trunk is one unit over trunk
 * rows; branch 1 and branch 2 are units over head rows.
 */
typedef struct Unit
{
	R		   *c,
			   *hprev,
			   *gi,
			   *gh,
			   *r,
			   *z,
			   *nn,
			   *ghn,
			   *h,
			   *g1,
			   *g1a,
			   *s,
			   *ms,			/* mask in use, or NULL (eval) */
			   *msbuf,
			   *pj,
			   *G;
	/* gradients */
	R		   *dc,
			   *dh,
			   *dgi,
			   *dgh,
			   *dg1,
			   *ds,
			   *dpj,
			   *dG;
} Unit;

struct GlintruWork
{
	R		   *arena;
	size_t		cap;			/* in R */
	int		   *ci;				/* per-chunk ints: tr_off, hd_off */
	size_t		ci_cap;
	int		   *hrow;			/* head row -> trunk row */
	int		   *hpos;			/* head row -> position in chunk */
	int		   *htgt;			/* head row -> target (-1 none) */
	size_t		hcap;

	/* trunk rows */
	R		   *x,
			   *mx,
			   *a,
			   *P0,
			   *P1,
			   *P2,
			   *kraw,
			   *kh,
			   *kinv,
			   *v;
	Unit		tr;
	/* head rows */
	R		   *xh,
			   *qraw,
			   *qh,
			   *qinv,
			   *ctx,
			   *o,
			   *mo,
			   *Ah,
			   *Ars,
			   *A,
			   *Gp,
			   *Y,
			   *M,
			   *d2,
			   *d2g,
			   *Pm,
			   *D,
			   *mD,
			   *Zh,
			   *Zrs,
			   *Z,
			   *X3,
			   *X4,
			   *g4,
			   *Q,
			   *O,
			   *mO,
			   *Uh,
			   *Urs,
			   *U;
	Unit		b1,
				b2;
	/* gradients, trunk */
	R		   *dx,
			   *da,
			   *dP0,
			   *dP1,
			   *dP2,
			   *dk,
			   *dv,
			   *dkraw;
	/* gradients, head */
	R		   *dxh,
			   *dq,
			   *dqraw,
			   *dctx,
			   *dA,
			   *dAp,
			   *dY,
			   *dM,
			   *dGp,
			   *dPm,
			   *dd2g,
			   *dd2,
			   *dZ,
			   *dZp,
			   *dQ,
			   *dX3,
			   *dX4,
			   *dU,
			   *dUp,
			   *logits;
	/* lockstep GRU temporaries */
	R		   *tH,
			   *tGH;
	int		   *act;
	/* repacked conv weights K_k [d×d] and their gradients */
	R		   *K,
			   *dK,
			   *Kg,
			   *dKg;
};

GlintruWork *
glintru_work_new(void)
{
	return calloc(1, sizeof(GlintruWork));
}

void
glintru_work_free(GlintruWork *w)
{
	if (!w)
		return;
	free(w->arena);
	free(w->ci);
	free(w->hrow);
	free(w->hpos);
	free(w->htgt);
	free(w->act);
	free(w);
}

#define LOGIT_BLOCK 256

/* Carve the arena for n_tr trunk rows, n_hd head rows and nc chunks. */
static bool
work_reserve(GlintruWork *w, const GlintruNet *net, int n_tr, int n_hd, int nc)
{
	int			d = net->d,
				H = net->n_heads;
	size_t		T = (size_t) n_tr,
				Hh = (size_t) n_hd;
	size_t		unit_sz;
	size_t		need;

	/* unit: c hprev h r z nn ghn pj G s ms dc dh ds dpj dG (16·d) + gi gh dgi dgh (4·3d) + g1 g1a dg1 (3·d/2) */
	unit_sz = 16 * (size_t) d + 12 * (size_t) d + 3 * (size_t) (d / 2);
	need = T * (10 * (size_t) d + H) + T * unit_sz	/* trunk acts + unit */
		+ T * 8 * (size_t) d	/* trunk grads */
		+ Hh * (32 * (size_t) d + 3 * H) + 2 * Hh * unit_sz	/* head acts + 2 units */
		+ Hh * 22 * (size_t) d	/* head grads */
		+ (size_t) LOGIT_BLOCK * (size_t) net->layout.n_rows
		+ (size_t) nc * 4 * d	/* tH, tGH */
		+ 12 * (size_t) d * d + 64;

	if (need > w->cap)
	{
		/* grow with slack: batches vary in rows, and fresh pages cost faults */
		need += need / 4;
		free(w->arena);
		w->arena = malloc(need * sizeof(R));
		if (!w->arena)
		{
			w->cap = 0;
			return false;
		}
		w->cap = need;
	}
	if ((size_t) nc * 2 + 2 > w->ci_cap)
	{
		free(w->ci);
		free(w->act);
		w->ci_cap = (size_t) nc * 2 + 2;
		w->ci = malloc(w->ci_cap * sizeof(int));
		w->act = malloc(w->ci_cap * sizeof(int));
		if (!w->ci || !w->act)
			return false;
	}
	if (Hh + 1 > w->hcap)
	{
		free(w->hrow);
		free(w->hpos);
		free(w->htgt);
		w->hcap = Hh + 1;
		w->hrow = malloc(w->hcap * sizeof(int));
		w->hpos = malloc(w->hcap * sizeof(int));
		w->htgt = malloc(w->hcap * sizeof(int));
		if (!w->hrow || !w->hpos || !w->htgt)
			return false;
	}

	R		   *p = w->arena;
#define TAKE(ptr, cnt) do { (ptr) = p; p += (cnt); } while (0)
#define UNIT(u, rows) do { \
		TAKE((u).c, (rows) * d); TAKE((u).hprev, (rows) * d); TAKE((u).h, (rows) * d); \
		TAKE((u).r, (rows) * d); TAKE((u).z, (rows) * d); TAKE((u).nn, (rows) * d); \
		TAKE((u).ghn, (rows) * d); TAKE((u).pj, (rows) * d); TAKE((u).G, (rows) * d); \
		TAKE((u).s, (rows) * d); TAKE((u).msbuf, (rows) * d); TAKE((u).dc, (rows) * d); \
		TAKE((u).dh, (rows) * d); TAKE((u).ds, (rows) * d); TAKE((u).dpj, (rows) * d); \
		TAKE((u).dG, (rows) * d); \
		TAKE((u).gi, (rows) * 3 * d); TAKE((u).gh, (rows) * 3 * d); \
		TAKE((u).dgi, (rows) * 3 * d); TAKE((u).dgh, (rows) * 3 * d); \
		TAKE((u).g1, (rows) * (d / 2)); TAKE((u).g1a, (rows) * (d / 2)); TAKE((u).dg1, (rows) * (d / 2)); \
	} while (0)

	TAKE(w->x, T * d);
	TAKE(w->mx, T * d);
	TAKE(w->a, T * d);
	TAKE(w->P0, T * d);
	TAKE(w->P1, T * d);
	TAKE(w->P2, T * d);
	TAKE(w->kraw, T * d);
	TAKE(w->kh, T * d);
	TAKE(w->kinv, T * H);
	TAKE(w->v, T * d);
	UNIT(w->tr, T);
	TAKE(w->dx, T * d);
	TAKE(w->da, T * d);
	TAKE(w->dP0, T * d);
	TAKE(w->dP1, T * d);
	TAKE(w->dP2, T * d);
	TAKE(w->dk, T * d);
	TAKE(w->dv, T * d);
	TAKE(w->dkraw, T * d);

	TAKE(w->xh, Hh * d);
	TAKE(w->qraw, Hh * d);
	TAKE(w->qh, Hh * d);
	TAKE(w->qinv, Hh * H);
	TAKE(w->ctx, Hh * d);
	TAKE(w->o, Hh * d);
	TAKE(w->mo, Hh * d);
	TAKE(w->Ah, Hh * d);
	TAKE(w->Ars, Hh);
	TAKE(w->A, Hh * d);
	TAKE(w->Gp, Hh * d);
	TAKE(w->Y, Hh * d);
	TAKE(w->M, Hh * d);
	TAKE(w->d2, Hh * d);
	TAKE(w->d2g, Hh * d);
	TAKE(w->Pm, Hh * d);
	TAKE(w->D, Hh * d);
	TAKE(w->mD, Hh * d);
	TAKE(w->Zh, Hh * d);
	TAKE(w->Zrs, Hh);
	TAKE(w->Z, Hh * d);
	TAKE(w->X3, Hh * d);
	TAKE(w->X4, Hh * d);
	TAKE(w->g4, Hh * d);
	TAKE(w->Q, Hh * d);
	TAKE(w->O, Hh * d);
	TAKE(w->mO, Hh * d);
	TAKE(w->Uh, Hh * d);
	TAKE(w->Urs, Hh);
	TAKE(w->U, Hh * d);
	UNIT(w->b1, Hh);
	UNIT(w->b2, Hh);
	TAKE(w->dxh, Hh * d);
	TAKE(w->dq, Hh * d);
	TAKE(w->dqraw, Hh * d);
	TAKE(w->dctx, Hh * d);
	TAKE(w->dA, Hh * d);
	TAKE(w->dAp, Hh * d);
	TAKE(w->dY, Hh * d);
	TAKE(w->dM, Hh * d);
	TAKE(w->dGp, Hh * d);
	TAKE(w->dPm, Hh * d);
	TAKE(w->dd2g, Hh * d);
	TAKE(w->dd2, Hh * d);
	TAKE(w->dZ, Hh * d);
	TAKE(w->dZp, Hh * d);
	TAKE(w->dQ, Hh * d);
	TAKE(w->dX3, Hh * d);
	TAKE(w->dX4, Hh * d);
	TAKE(w->dU, Hh * d);
	TAKE(w->dUp, Hh * d);
	TAKE(w->logits, (size_t) LOGIT_BLOCK * (size_t) net->layout.n_rows);
	TAKE(w->tH, (size_t) nc * d);
	TAKE(w->tGH, (size_t) nc * 3 * d);
	TAKE(w->K, 3 * (size_t) d * d);
	TAKE(w->dK, 3 * (size_t) d * d);
	TAKE(w->Kg, 3 * (size_t) d * d);
	TAKE(w->dKg, 3 * (size_t) d * d);
#undef TAKE
#undef UNIT
	if ((size_t) (p - w->arena) > w->cap)
	{
		fprintf(stderr, "glintru: internal error: workspace overflow\n");
		abort();
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* layer groups                                                         */
/* ------------------------------------------------------------------ */

#define PRM(net, t) ((net)->params + (net)->layout.slot[(t)].offset)
#define GRD(g, net, t) ((g) + (net)->layout.slot[(t)].offset)

/* conv weight [out,in,3] -> three [out×in] matrices K_k (tap k) */
static void
conv_repack(const R *W, int d, R *K)
{
	for (int o = 0; o < d; o++)
		for (int i = 0; i < d; i++)
			for (int k = 0; k < 3; k++)
				K[(size_t) k * d * d + (size_t) o * d + i] = W[((size_t) o * d + i) * 3 + k];
}

static void
conv_unpack_add(const R *K, int d, R *W)
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
static void
unit_post_fwd(const GlintruNet *net, Unit *u, int n)
{
	int			d = net->d,
				d2 = d / 2;

	linear_fwd(u->c, n, d, PRM(net, GT_GATE1_W), PRM(net, GT_GATE1_B), u->g1, d2);
	silu_fwd(u->g1, u->g1a, (size_t) n * d2);
	linear_fwd(u->g1a, n, d2, PRM(net, GT_GATE2_W), PRM(net, GT_GATE2_B), u->s, d);
	if (u->ms)
		dropout_fwd(u->s, u->ms, (size_t) n * d);
	linear_fwd(u->h, n, d, PRM(net, GT_PROJECTION_W), PRM(net, GT_PROJECTION_B), u->pj, d);
	for (size_t i = 0; i < (size_t) n * d; i++)
		u->G[i] = u->s[i] * u->pj[i];
}

/*
 * Backward of unit_post_fwd from u->dG: dh (+)= proj part (add selects),
 * dc = gate part (overwrites).
 */
static void
unit_post_bwd(const GlintruNet *net, Unit *u, int n, R *grad, bool add_dh)
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
		dropout_bwd(u->ds, u->ms, nd);
	linear_bwd(u->h, u->dpj, n, d, d, PRM(net, GT_PROJECTION_W), u->dh, add_dh ? 1 : 0,
			   GRD(grad, net, GT_PROJECTION_W), GRD(grad, net, GT_PROJECTION_B));
	linear_bwd(u->g1a, u->ds, n, d2, d, PRM(net, GT_GATE2_W), u->dg1, 0,
			   GRD(grad, net, GT_GATE2_W), GRD(grad, net, GT_GATE2_B));
	silu_bwd(u->g1, u->dg1, u->dg1, (size_t) n * d2);
	linear_bwd(u->c, u->dg1, n, d, d2, PRM(net, GT_GATE1_W), u->dc, 0,
			   GRD(grad, net, GT_GATE1_W), GRD(grad, net, GT_GATE1_B));
}

/*
 * Causal linear attention with the padding term, per chunk:
 * ctx_p = [Σ_{t≤p} (q̂_p·k̂_t) v_t + (L-p-1)(q̂_p·k̂pad) vpad] / √dh.
 * Keeps a running dh×dh state per head (O(len·d·dh) per chunk).
 */
static void
attention_fwd(const GlintruNet *net, const GlintruChunk *ch, int nc, const int *tr_off,
			  const int *hd_off, const R *kh, const R *v, const R *qh,
			  const R *kpad, const R *vpad, R *ctx, R *S)
{
	int			d = net->d,
				H = net->n_heads,
				dh = d / H,
				L = net->max_seq_len;
	R			sc = (R) (1.0 / sqrt((double) dh));

	for (int c = 0; c < nc; c++)
	{
		memset(S, 0, sizeof(R) * d * dh);
		for (int p = 0; p < ch[c].len; p++)
		{
			const R    *kt = kh + (size_t) (tr_off[c] + p) * d;
			const R    *vt = v + (size_t) (tr_off[c] + p) * d;

			for (int h = 0; h < H; h++)
				for (int i = 0; i < dh; i++)
				{
					R			ki = kt[h * dh + i];
					R		   *Si = S + (size_t) h * dh * dh + (size_t) i * dh;

					for (int j = 0; j < dh; j++)
						Si[j] += ki * vt[h * dh + j];
				}
			if (p < ch[c].p_lo)
				continue;
			int			row = hd_off[c] + p - ch[c].p_lo;
			const R    *q = qh + (size_t) row * d;
			R		   *out = ctx + (size_t) row * d;
			R			npad = (R) (L - p - 1);

			for (int h = 0; h < H; h++)
			{
				const R    *Sh = S + (size_t) h * dh * dh;
				R			qk = 0;

				for (int i = 0; i < dh; i++)
					qk += q[h * dh + i] * kpad[h * dh + i];
				for (int j = 0; j < dh; j++)
				{
					R			acc = npad * qk * vpad[h * dh + j];

					for (int i = 0; i < dh; i++)
						acc += q[h * dh + i] * Sh[(size_t) i * dh + j];
					out[h * dh + j] = acc * sc;
				}
			}
		}
	}
}

/*
 * Backward of attention_fwd from dctx: dq (head rows, overwritten), dk, dv
 * (trunk rows, overwritten), dkpad, dvpad (accumulated).  A forward sweep
 * rebuilds the state for dq, a backward sweep accumulates
 * Rt = Σ_{p≥t} q̂_p g_pᵀ for dk = Rt v, dv = Rtᵀ k̂.
 */
static void
attention_bwd(const GlintruNet *net, const GlintruChunk *ch, int nc, const int *tr_off,
			  const int *hd_off, const R *kh, const R *v, const R *qh,
			  const R *kpad, const R *vpad, const R *dctx,
			  R *dq, R *dk, R *dv, R *dkpad, R *dvpad, R *S)
{
	int			d = net->d,
				H = net->n_heads,
				dh = d / H,
				L = net->max_seq_len;
	R			sc = (R) (1.0 / sqrt((double) dh));

	for (int c = 0; c < nc; c++)
	{
		memset(S, 0, sizeof(R) * d * dh);
		for (int p = 0; p < ch[c].len; p++)
		{
			const R    *kt = kh + (size_t) (tr_off[c] + p) * d;
			const R    *vt = v + (size_t) (tr_off[c] + p) * d;

			for (int h = 0; h < H; h++)
				for (int i = 0; i < dh; i++)
				{
					R			ki = kt[h * dh + i];
					R		   *Si = S + (size_t) h * dh * dh + (size_t) i * dh;

					for (int j = 0; j < dh; j++)
						Si[j] += ki * vt[h * dh + j];
				}
			if (p < ch[c].p_lo)
				continue;
			int			row = hd_off[c] + p - ch[c].p_lo;
			const R    *g = dctx + (size_t) row * d;
			const R    *q = qh + (size_t) row * d;
			R		   *dqr = dq + (size_t) row * d;
			R			npad = (R) (L - p - 1);

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
					dkpad[h * dh + i] += sc * npad * gv * q[h * dh + i];
				}
				for (int j = 0; j < dh; j++)
					dvpad[h * dh + j] += sc * npad * qk * g[h * dh + j];
			}
		}
		/* backward sweep */
		memset(S, 0, sizeof(R) * d * dh);
		for (int t = ch[c].len - 1; t >= 0; t--)
		{
			if (t >= ch[c].p_lo)
			{
				int			row = hd_off[c] + t - ch[c].p_lo;
				const R    *g = dctx + (size_t) row * d;
				const R    *q = qh + (size_t) row * d;

				for (int h = 0; h < H; h++)
					for (int i = 0; i < dh; i++)
					{
						R			qi = q[h * dh + i] * sc;
						R		   *Si = S + (size_t) h * dh * dh + (size_t) i * dh;

						for (int j = 0; j < dh; j++)
							Si[j] += qi * g[h * dh + j];
					}
			}
			const R    *kt = kh + (size_t) (tr_off[c] + t) * d;
			const R    *vt = v + (size_t) (tr_off[c] + t) * d;
			R		   *dkt = dk + (size_t) (tr_off[c] + t) * d;
			R		   *dvt = dv + (size_t) (tr_off[c] + t) * d;

			for (int h = 0; h < H; h++)
			{
				const R    *Sh = S + (size_t) h * dh * dh;

				for (int i = 0; i < dh; i++)
				{
					R			acc = 0;

					for (int j = 0; j < dh; j++)
						acc += Sh[(size_t) i * dh + j] * vt[h * dh + j];
					dkt[h * dh + i] = acc;
				}
				for (int j = 0; j < dh; j++)
				{
					R			acc = 0;

					for (int i = 0; i < dh; i++)
						acc += Sh[(size_t) i * dh + j] * kt[h * dh + i];
					dvt[h * dh + j] = acc;
				}
			}
		}
	}
}

/*
 * Cross-entropy over all n_rows classes (item 0 included, as published) for
 * a block of rows: returns the summed loss; writes dU = scale·(softmax -
 * onehot) E and accumulates dE += scale·(softmax - onehot)ᵀ U.
 */
static double
ce_fwd_bwd(const GlintruNet *net, const R *U, const int *tgt, int n, R *logits,
		   double scale, R *dU, R *dE)
{
	int			d = net->d;
	int64_t		N1 = net->layout.n_rows;
	const R    *E = PRM(net, GT_ITEM_EMBEDDING);
	double		loss = 0;

	GEMM(RM, NT, TR, n, (int) N1, d, 1, U, d, E, d, 0, logits, (int) N1);
	for (int i = 0; i < n; i++)
	{
		R		   *l = logits + (size_t) i * N1;
		R			mx = l[0];
		double		s = 0;
		R			lane[8];
		int64_t		j8 = N1 & ~(int64_t) 7;

		/* eight independent lanes: max and sum vectorise without -ffast-math */
		for (int k = 0; k < 8; k++)
			lane[k] = l[0];
		for (int64_t j = 0; j < j8; j += 8)
			for (int k = 0; k < 8; k++)
				lane[k] = l[j + k] > lane[k] ? l[j + k] : lane[k];
		for (int k = 0; k < 8; k++)
			mx = lane[k] > mx ? lane[k] : mx;
		for (int64_t j = j8; j < N1; j++)
			mx = l[j] > mx ? l[j] : mx;
		for (int64_t j = 0; j < N1; j++)
			l[j] = REXP(l[j] - mx);
		for (int k = 0; k < 8; k++)
			lane[k] = 0;
		for (int64_t j = 0; j < j8; j += 8)
			for (int k = 0; k < 8; k++)
				lane[k] += l[j + k];
		for (int k = 0; k < 8; k++)
			s += lane[k];
		for (int64_t j = j8; j < N1; j++)
			s += l[j];
		int			t = tgt[i];

		/* l[t] = exp(logit_t - max): loss = log Σ - log l[t] */
		loss += log(s) - log((double) l[t]);
		if (dU)
		{
			R			inv = (R) (scale / s);

			for (int64_t j = 0; j < N1; j++)
				l[j] *= inv;
			l[t] -= (R) scale;
		}
	}
	if (dU)
	{
		GEMM(RM, NT, NT, n, d, (int) N1, 1, logits, (int) N1, E, d, 0, dU, d);
		GEMM(RM, TR, NT, (int) N1, d, n, 1, logits, (int) N1, U, d, 1, dE, d);
	}
	return loss;
}

/* ------------------------------------------------------------------ */
/* the whole model over a set of chunks                                 */
/* ------------------------------------------------------------------ */

typedef struct Pad
{
	R		   *x,
			   *a,
			   *kraw,
			   *kh,
			   *kinv,
			   *v,
			   *kap1,
			   *kap2,
			   *dkh,
			   *dkraw,
			   *dv,
			   *da,
			   *dkap1,
			   *dkap2,
			   *dx;
	R		   *S;				/* attention state scratch d×dh */
} Pad;

/*
 * Forward pass.  Fills every activation; if want_grad, also the backward
 * pass into grad.  Returns summed loss over targets (0 if none).
 */
static double
model_pass(const GlintruNet *net, const GlintruChunk *ch, int nc, const GlintruDropout *drop,
		   double loss_scale, R *grad, bool pad_input_grad, GlintruWork *w, R *out_u)
{
	int			d = net->d,
				H = net->n_heads,
				dh = d / H,
				L = net->max_seq_len;
	int			n_tr = 0,
				n_hd = 0,
				maxlen = 0;
	bool		train = drop && drop->active;
	double		loss = 0;

	for (int c = 0; c < nc; c++)
	{
		n_tr += ch[c].len;
		n_hd += ch[c].len - ch[c].p_lo;
		if (ch[c].len > maxlen)
			maxlen = ch[c].len;
	}
	if (!work_reserve(w, net, n_tr, n_hd, nc))
		return NAN;

	int		   *tr_off = w->ci,
			   *hd_off = w->ci + nc;

	for (int c = 0, t = 0, h = 0; c < nc; c++)
	{
		tr_off[c] = t;
		hd_off[c] = h;
		for (int p = ch[c].p_lo; p < ch[c].len; p++, h++)
		{
			w->hrow[h] = t + p;
			w->hpos[h] = p;
			w->htgt[h] = ch[c].targets ? ch[c].targets[p - ch[c].p_lo] : -1;
		}
		t += ch[c].len;
	}

	/* padding-slot vectors (functions of E[0]; no dropout on them) */
	Pad			pd;
	R			padbuf[16 * 512];
	R		   *pb = padbuf;

	if (d > 512)
		return NAN;
	pd.x = pb; pb += d;
	pd.a = pb; pb += d;
	pd.kraw = pb; pb += d;
	pd.kh = pb; pb += d;
	pd.kinv = pb; pb += d;
	pd.v = pb; pb += d;
	pd.kap1 = pb; pb += d;
	pd.kap2 = pb; pb += d;
	pd.dkh = pb; pb += d;
	pd.dkraw = pb; pb += d;
	pd.dv = pb; pb += d;
	pd.da = pb; pb += d;
	pd.dkap1 = pb; pb += d;
	pd.dkap2 = pb; pb += d;
	pd.dx = pb; pb += d;
	pd.S = malloc(sizeof(R) * d * dh);
	if (!pd.S)
		return NAN;

	const R    *E = PRM(net, GT_ITEM_EMBEDDING);

	memcpy(pd.x, E, sizeof(R) * d);
	linear_fwd(pd.x, 1, d, PRM(net, GT_DENSE1_W), PRM(net, GT_DENSE1_B), pd.a, d);
	linear_fwd(pd.x, 1, d, PRM(net, GT_ATT_K_W), PRM(net, GT_ATT_K_B), pd.kraw, d);
	elunorm_fwd(pd.kraw, 1, d, dh, pd.kh, pd.kinv);
	linear_fwd(pd.x, 1, d, PRM(net, GT_ATT_V_W), PRM(net, GT_ATT_V_B), pd.v, d);
	conv_repack(PRM(net, GT_CONV1D_W), d, w->K);
	conv_repack(PRM(net, GT_CONVG_W), d, w->Kg);
	/* K1·apad and K2·apad: the conv taps that see padding slots */
	for (int o = 0; o < d; o++)
	{
		R			s1 = 0,
					s2 = 0;

		for (int i = 0; i < d; i++)
		{
			s1 += w->K[(size_t) 1 * d * d + (size_t) o * d + i] * pd.a[i];
			s2 += w->K[(size_t) 2 * d * d + (size_t) o * d + i] * pd.a[i];
		}
		pd.kap1[o] = s1;
		pd.kap2[o] = s2;
	}

	/* ---- trunk rows: embedding + dropout ---- */
	for (int c = 0; c < nc; c++)
		for (int p = 0; p < ch[c].len; p++)
		{
			size_t		row = (size_t) (tr_off[c] + p);

			memcpy(w->x + row * d, E + (size_t) ch[c].items[p] * d, sizeof(R) * d);
			if (train && drop->p_emb > 0)
			{
				make_mask_row(w->mx + row * d, d, drop->p_emb, drop->seed, ch[c].uid, p, 1);
				dropout_fwd(w->x + row * d, w->mx + row * d, d);
			}
		}
	linear_fwd(w->x, n_tr, d, PRM(net, GT_DENSE1_W), PRM(net, GT_DENSE1_B), w->a, d);
	GEMM(RM, NT, TR, n_tr, d, d, 1, w->a, d, w->K, d, 0, w->P0, d);
	GEMM(RM, NT, TR, n_tr, d, d, 1, w->a, d, w->K + (size_t) d * d, d, 0, w->P1, d);
	GEMM(RM, NT, TR, n_tr, d, d, 1, w->a, d, w->K + (size_t) 2 * d * d, d, 0, w->P2, d);
	linear_fwd(w->x, n_tr, d, PRM(net, GT_ATT_K_W), PRM(net, GT_ATT_K_B), w->kraw, d);
	elunorm_fwd(w->kraw, n_tr, d, dh, w->kh, w->kinv);
	linear_fwd(w->x, n_tr, d, PRM(net, GT_ATT_V_W), PRM(net, GT_ATT_V_B), w->v, d);

	/* conv over real items for the trunk: c_t = P0_{t-1} + P1_t + P2_{t+1} + b */
	const R    *cb = PRM(net, GT_CONV1D_B);
	Unit	   *tr = &w->tr;

	for (int c = 0; c < nc; c++)
		for (int t = 0; t < ch[c].len; t++)
		{
			size_t		row = (size_t) (tr_off[c] + t);
			R		   *ct = tr->c + row * d;

			for (int j = 0; j < d; j++)
			{
				R			v = cb[j] + w->P1[row * d + j];

				if (t > 0)
					v += w->P0[(row - 1) * d + j];
				if (t + 1 < ch[c].len)
					v += w->P2[(row + 1) * d + j];
				ct[j] = v;
			}
		}
	GEMM(RM, NT, TR, n_tr, 3 * d, d, 1, tr->c, d, PRM(net, GT_GRU_W_IH), d, 0, tr->gi, 3 * d);

	/*
	 * GRU trunk, all chunks in lockstep.  Only steps t <= len-2 are needed
	 * (h_{len-1} feeds nothing); the last row of each chunk gets h = 0.
	 */
	memset(tr->hprev, 0, sizeof(R) * n_tr * d);
	memset(tr->h, 0, sizeof(R) * n_tr * d);
	memset(tr->gh, 0, sizeof(R) * n_tr * 3 * d);
	for (int t = 0; t + 1 < maxlen; t++)
	{
		int			na = 0;

		for (int c = 0; c < nc; c++)
			if (t + 1 < ch[c].len)
				w->act[na++] = c;
		if (t > 0)
		{
			for (int i = 0; i < na; i++)
				memcpy(w->tH + (size_t) i * d, tr->h + (size_t) (tr_off[w->act[i]] + t - 1) * d, sizeof(R) * d);
			GEMM(RM, NT, TR, na, 3 * d, d, 1, w->tH, d, PRM(net, GT_GRU_W_HH), d, 0, w->tGH, 3 * d);
		}
		for (int i = 0; i < na; i++)
		{
			size_t		row = (size_t) (tr_off[w->act[i]] + t);

			if (t > 0)
			{
				memcpy(tr->gh + row * 3 * d, w->tGH + (size_t) i * 3 * d, sizeof(R) * 3 * d);
				memcpy(tr->hprev + row * d, tr->h + (row - 1) * d, sizeof(R) * d);
			}
			gru_cell_fwd(tr->gi + row * 3 * d, tr->gh + row * 3 * d, tr->hprev + row * d, 1, d,
						 tr->r + row * d, tr->z + row * d, tr->nn + row * d, tr->ghn + row * d,
						 tr->h + row * d);
		}
	}
	/* trunk gate masks */
	tr->ms = (train && drop->p_inner > 0) ? tr->msbuf : NULL;
	if (tr->ms)
		for (int c = 0; c < nc; c++)
			for (int t = 0; t < ch[c].len; t++)
				make_mask_row(tr->ms + (size_t) (tr_off[c] + t) * d, d, drop->p_inner, drop->seed,
							  ch[c].uid, t, 2);
	unit_post_fwd(net, tr, n_tr);

	/* ---- head rows ---- */
	for (int i = 0; i < n_hd; i++)
		memcpy(w->xh + (size_t) i * d, w->x + (size_t) w->hrow[i] * d, sizeof(R) * d);
	linear_fwd(w->xh, n_hd, d, PRM(net, GT_ATT_Q_W), PRM(net, GT_ATT_Q_B), w->qraw, d);
	elunorm_fwd(w->qraw, n_hd, d, dh, w->qh, w->qinv);
	attention_fwd(net, ch, nc, tr_off, hd_off, w->kh, w->v, w->qh, pd.kh, pd.v, w->ctx, pd.S);
	linear_fwd(w->ctx, n_hd, d, PRM(net, GT_ATT_O_W), PRM(net, GT_ATT_O_B), w->o, d);
	/* head-row masks, keyed by (chunk uid, position, layer) */
	for (int c = 0; c < nc && train; c++)
		for (int p = ch[c].p_lo; p < ch[c].len; p++)
		{
			int			row = hd_off[c] + p - ch[c].p_lo;

			if (drop->p_att > 0)
				make_mask_row(w->mo + (size_t) row * d, d, drop->p_att, drop->seed, ch[c].uid, p, 3);
			if (drop->p_inner > 0)
			{
				make_mask_row(w->mD + (size_t) row * d, d, drop->p_inner, drop->seed, ch[c].uid, p, 4);
				make_mask_row(w->mO + (size_t) row * d, d, drop->p_inner, drop->seed, ch[c].uid, p, 5);
				make_mask_row(w->b1.msbuf + (size_t) row * d, d, drop->p_inner,
							  drop->seed, ch[c].uid, p, 6);
				make_mask_row(w->b2.msbuf + (size_t) row * d, d, drop->p_inner,
							  drop->seed, ch[c].uid, p, 7);
			}
		}
	bool		inner = train && drop->p_inner > 0;
	bool		attd = train && drop->p_att > 0;

	if (attd)
		dropout_fwd(w->o, w->mo, (size_t) n_hd * d);
	for (size_t i = 0; i < (size_t) n_hd * d; i++)
		w->o[i] += w->xh[i];
	layernorm_fwd(w->o, n_hd, d, PRM(net, GT_ATT_LN_W), PRM(net, GT_ATT_LN_B), net->ln_eps,
				  w->Ah, w->Ars, w->A);

	/* branch 1: c1 = P0_{p-1} + P1_p + [p+1<L]·K2 apad + b, h1 = GRU(h_{p-1}, c1) */
	Unit	   *b1 = &w->b1,
			   *b2 = &w->b2;

	b1->ms = inner ? b1->msbuf : NULL;
	b2->ms = inner ? b2->msbuf : NULL;
	for (int i = 0; i < n_hd; i++)
	{
		int			row = w->hrow[i],
					p = w->hpos[i];
		R			lt1 = (R) (p + 1 < L),
					lt2 = (R) (p + 2 < L);
		R		   *c1 = b1->c + (size_t) i * d,
				   *c2 = b2->c + (size_t) i * d;

		for (int j = 0; j < d; j++)
		{
			R			prev = p > 0 ? w->P0[(size_t) (row - 1) * d + j] : 0;

			c1[j] = cb[j] + prev + w->P1[(size_t) row * d + j] + lt1 * pd.kap2[j];
			c2[j] = cb[j] + w->P0[(size_t) row * d + j] + lt1 * pd.kap1[j] + lt2 * pd.kap2[j];
		}
		if (p > 0)
		{
			memcpy(b1->hprev + (size_t) i * d, tr->h + (size_t) (row - 1) * d, sizeof(R) * d);
			memcpy(w->Gp + (size_t) i * d, tr->G + (size_t) (row - 1) * d, sizeof(R) * d);
		}
		else
		{
			memset(b1->hprev + (size_t) i * d, 0, sizeof(R) * d);
			memset(w->Gp + (size_t) i * d, 0, sizeof(R) * d);
		}
	}
	GEMM(RM, NT, TR, n_hd, 3 * d, d, 1, b1->c, d, PRM(net, GT_GRU_W_IH), d, 0, b1->gi, 3 * d);
	GEMM(RM, NT, TR, n_hd, 3 * d, d, 1, b1->hprev, d, PRM(net, GT_GRU_W_HH), d, 0, b1->gh, 3 * d);
	gru_cell_fwd(b1->gi, b1->gh, b1->hprev, n_hd, d, b1->r, b1->z, b1->nn, b1->ghn, b1->h);
	unit_post_fwd(net, b1, n_hd);
	/* branch 2: c2 = P0_p + [p+1<L] K1 apad + [p+2<L] K2 apad + b, h2 = GRU(h1, c2) */
	memcpy(b2->hprev, b1->h, sizeof(R) * n_hd * d);
	GEMM(RM, NT, TR, n_hd, 3 * d, d, 1, b2->c, d, PRM(net, GT_GRU_W_IH), d, 0, b2->gi, 3 * d);
	GEMM(RM, NT, TR, n_hd, 3 * d, d, 1, b2->hprev, d, PRM(net, GT_GRU_W_HH), d, 0, b2->gh, 3 * d);
	gru_cell_fwd(b2->gi, b2->gh, b2->hprev, n_hd, d, b2->r, b2->z, b2->nn, b2->ghn, b2->h);
	unit_post_fwd(net, b2, n_hd);
	/* G2 = 0 when the window is full (p+1 == L): the slot after it does not exist */
	for (int i = 0; i < n_hd; i++)
		if (w->hpos[i] + 1 >= L)
			memset(b2->G + (size_t) i * d, 0, sizeof(R) * d);

	/* Y = K'0 G_{p-1} + K'1 G1 + K'2 G2 + b' */
	linear_fwd(w->Gp, n_hd, d, w->Kg, PRM(net, GT_CONVG_B), w->Y, d);
	GEMM(RM, NT, TR, n_hd, d, d, 1, b1->G, d, w->Kg + (size_t) d * d, d, 1, w->Y, d);
	GEMM(RM, NT, TR, n_hd, d, d, 1, b2->G, d, w->Kg + (size_t) 2 * d * d, d, 1, w->Y, d);

	/* mix */
	const R    *ml = PRM(net, GT_MIX_LOGITS);
	double		mm = ml[0] > ml[1] ? ml[0] : ml[1];
	double		e0 = exp(ml[0] - mm),
				e1 = exp(ml[1] - mm);
	R			w0 = (R) (e0 / (e0 + e1)),
				w1 = (R) (e1 / (e0 + e1));

	for (size_t i = 0; i < (size_t) n_hd * d; i++)
		w->M[i] = w0 * w->Y[i] + w1 * w->A[i];

	/* Z = LN(drop(dense(M ⊙ gelu(dense2(x)))) + x) */
	linear_fwd(w->xh, n_hd, d, PRM(net, GT_DENSE2_W), PRM(net, GT_DENSE2_B), w->d2, d);
	gelu_fwd(w->d2, w->d2g, (size_t) n_hd * d);
	for (size_t i = 0; i < (size_t) n_hd * d; i++)
		w->Pm[i] = w->M[i] * w->d2g[i];
	linear_fwd(w->Pm, n_hd, d, PRM(net, GT_DENSE_W), PRM(net, GT_DENSE_B), w->D, d);
	if (inner)
		dropout_fwd(w->D, w->mD, (size_t) n_hd * d);
	for (size_t i = 0; i < (size_t) n_hd * d; i++)
		w->D[i] += w->xh[i];
	layernorm_fwd(w->D, n_hd, d, PRM(net, GT_LN_W), PRM(net, GT_LN_B), net->ln_eps, w->Zh, w->Zrs, w->Z);

	/* U = LN(drop(denseout(dense3(Z) ⊙ gelu(dense4(Z)))) + Z) */
	linear_fwd(w->Z, n_hd, d, PRM(net, GT_DENSE3_W), PRM(net, GT_DENSE3_B), w->X3, d);
	linear_fwd(w->Z, n_hd, d, PRM(net, GT_DENSE4_W), PRM(net, GT_DENSE4_B), w->X4, d);
	gelu_fwd(w->X4, w->g4, (size_t) n_hd * d);
	for (size_t i = 0; i < (size_t) n_hd * d; i++)
		w->Q[i] = w->X3[i] * w->g4[i];
	linear_fwd(w->Q, n_hd, d, PRM(net, GT_DENSEOUT_W), PRM(net, GT_DENSEOUT_B), w->O, d);
	if (inner)
		dropout_fwd(w->O, w->mO, (size_t) n_hd * d);
	for (size_t i = 0; i < (size_t) n_hd * d; i++)
		w->O[i] += w->Z[i];
	layernorm_fwd(w->O, n_hd, d, PRM(net, GT_LN_W), PRM(net, GT_LN_B), net->ln_eps, w->Uh, w->Urs, w->U);

	if (out_u)
		memcpy(out_u, w->U, sizeof(R) * n_hd * d);

	/* ---- loss (and dU) ---- */
	bool		want_grad = grad != NULL;

	if (want_grad)
		memset(w->dU, 0, sizeof(R) * n_hd * d);
	{
		/* rows with targets, in blocks to bound the logits buffer */
		int			i = 0;

		while (i < n_hd)
		{
			int			cnt = 0;
			int			tg[LOGIT_BLOCK];
			int			idx[LOGIT_BLOCK];

			while (i < n_hd && cnt < LOGIT_BLOCK)
			{
				if (w->htgt[i] >= 0)
				{
					idx[cnt] = i;
					tg[cnt] = w->htgt[i];
					cnt++;
				}
				i++;
			}
			if (cnt == 0)
				continue;
			/* gather rows (usually already contiguous) */
			bool		contig = idx[cnt - 1] - idx[0] == cnt - 1;
			R		   *Ub = contig ? w->U + (size_t) idx[0] * d : w->dUp;
			R		   *dUb = contig ? w->dU + (size_t) idx[0] * d : w->dUp + (size_t) LOGIT_BLOCK * d;

			if (!contig)
				for (int k = 0; k < cnt; k++)
					memcpy(w->dUp + (size_t) k * d, w->U + (size_t) idx[k] * d, sizeof(R) * d);
			loss += ce_fwd_bwd(net, Ub, tg, cnt, w->logits, loss_scale,
							   want_grad ? dUb : NULL,
							   want_grad ? GRD(grad, net, GT_ITEM_EMBEDDING) : NULL);
			if (!contig && want_grad)
				for (int k = 0; k < cnt; k++)
					memcpy(w->dU + (size_t) idx[k] * d, dUb + (size_t) k * d, sizeof(R) * d);
		}
	}
	if (!want_grad)
	{
		free(pd.S);
		return loss;
	}

	/* ================= backward ================= */
	size_t		hd = (size_t) n_hd * d;

	/* U = LN(Upre) ; Upre = drop(O) + Z */
	layernorm_bwd(w->dU, n_hd, d, PRM(net, GT_LN_W), w->Uh, w->Urs, w->dUp, false,
				  GRD(grad, net, GT_LN_W), GRD(grad, net, GT_LN_B));
	memcpy(w->dZ, w->dUp, sizeof(R) * hd);
	if (inner)
		dropout_bwd(w->dUp, w->mO, hd);
	linear_bwd(w->Q, w->dUp, n_hd, d, d, PRM(net, GT_DENSEOUT_W), w->dQ, 0,
			   GRD(grad, net, GT_DENSEOUT_W), GRD(grad, net, GT_DENSEOUT_B));
	for (size_t i = 0; i < hd; i++)
	{
		w->dX3[i] = w->dQ[i] * w->g4[i];
		w->dQ[i] = w->dQ[i] * w->X3[i];	/* d g4 */
	}
	gelu_bwd(w->X4, w->dQ, w->dX4, hd);
	linear_bwd(w->Z, w->dX3, n_hd, d, d, PRM(net, GT_DENSE3_W), w->dZ, 1,
			   GRD(grad, net, GT_DENSE3_W), GRD(grad, net, GT_DENSE3_B));
	linear_bwd(w->Z, w->dX4, n_hd, d, d, PRM(net, GT_DENSE4_W), w->dZ, 1,
			   GRD(grad, net, GT_DENSE4_W), GRD(grad, net, GT_DENSE4_B));
	/* Z = LN(Zpre) ; Zpre = drop(dense(Pm)) + x */
	layernorm_bwd(w->dZ, n_hd, d, PRM(net, GT_LN_W), w->Zh, w->Zrs, w->dZp, false,
				  GRD(grad, net, GT_LN_W), GRD(grad, net, GT_LN_B));
	memcpy(w->dxh, w->dZp, sizeof(R) * hd);
	if (inner)
		dropout_bwd(w->dZp, w->mD, hd);
	linear_bwd(w->Pm, w->dZp, n_hd, d, d, PRM(net, GT_DENSE_W), w->dPm, 0,
			   GRD(grad, net, GT_DENSE_W), GRD(grad, net, GT_DENSE_B));
	for (size_t i = 0; i < hd; i++)
	{
		w->dM[i] = w->dPm[i] * w->d2g[i];
		w->dd2g[i] = w->dPm[i] * w->M[i];
	}
	gelu_bwd(w->d2, w->dd2g, w->dd2, hd);
	linear_bwd(w->xh, w->dd2, n_hd, d, d, PRM(net, GT_DENSE2_W), w->dxh, 1,
			   GRD(grad, net, GT_DENSE2_W), GRD(grad, net, GT_DENSE2_B));

	/* mix: M = w0 Y + w1 A */
	{
		double		g0 = 0,
					g1 = 0;

		for (size_t i = 0; i < hd; i++)
		{
			g0 += (double) w->dM[i] * w->Y[i];
			g1 += (double) w->dM[i] * w->A[i];
			w->dY[i] = w0 * w->dM[i];
			w->dA[i] = w1 * w->dM[i];
		}
		double		gs = w0 * g0 + w1 * g1;
		R		   *gm = GRD(grad, net, GT_MIX_LOGITS);

		gm[0] += (R) (w0 * (g0 - gs));
		gm[1] += (R) (w1 * (g1 - gs));
	}

	/* attention expert: A = LN_att(drop(o) + x), o = dense(ctx) */
	layernorm_bwd(w->dA, n_hd, d, PRM(net, GT_ATT_LN_W), w->Ah, w->Ars, w->dAp, false,
				  GRD(grad, net, GT_ATT_LN_W), GRD(grad, net, GT_ATT_LN_B));
	for (size_t i = 0; i < hd; i++)
		w->dxh[i] += w->dAp[i];
	if (attd)
		dropout_bwd(w->dAp, w->mo, hd);
	linear_bwd(w->ctx, w->dAp, n_hd, d, d, PRM(net, GT_ATT_O_W), w->dctx, 0,
			   GRD(grad, net, GT_ATT_O_W), GRD(grad, net, GT_ATT_O_B));
	memset(pd.dkh, 0, sizeof(R) * d);
	memset(pd.dv, 0, sizeof(R) * d);
	attention_bwd(net, ch, nc, tr_off, hd_off, w->kh, w->v, w->qh, pd.kh, pd.v, w->dctx,
				  w->dq, w->dk, w->dv, pd.dkh, pd.dv, pd.S);
	elunorm_bwd(w->qraw, w->qh, w->qinv, w->dq, n_hd, d, dh, w->dqraw);
	linear_bwd(w->xh, w->dqraw, n_hd, d, d, PRM(net, GT_ATT_Q_W), w->dxh, 1,
			   GRD(grad, net, GT_ATT_Q_W), GRD(grad, net, GT_ATT_Q_B));

	/* conv over G: Y = K'0 Gp + K'1 G1 + K'2 G2 + b' */
	memset(w->dKg, 0, sizeof(R) * 3 * d * d);
	linear_bwd(w->Gp, w->dY, n_hd, d, d, w->Kg, w->dGp, 0, w->dKg, GRD(grad, net, GT_CONVG_B));
	linear_bwd(b1->G, w->dY, n_hd, d, d, w->Kg + (size_t) d * d, b1->dG, 0, w->dKg + (size_t) d * d, NULL);
	linear_bwd(b2->G, w->dY, n_hd, d, d, w->Kg + (size_t) 2 * d * d, b2->dG, 0, w->dKg + (size_t) 2 * d * d, NULL);
	conv_unpack_add(w->dKg, d, GRD(grad, net, GT_CONVG_W));
	for (int i = 0; i < n_hd; i++)
		if (w->hpos[i] + 1 >= L)
			memset(b2->dG + (size_t) i * d, 0, sizeof(R) * d);

	/* branch 2 */
	unit_post_bwd(net, b2, n_hd, grad, false);
	gru_cell_bwd(b2->dh, b2->hprev, b2->r, b2->z, b2->nn, b2->ghn, n_hd, d, b2->dgi, b2->dgh, b1->dh);
	/* dc2 += dgi2 W_ih ; dh1 += dgh2 W_hh (dh1 already holds the direct z-path) */
	GEMM(RM, NT, NT, n_hd, d, 3 * d, 1, b2->dgi, 3 * d, PRM(net, GT_GRU_W_IH), d, 1, b2->dc, d);
	GEMM(RM, NT, NT, n_hd, d, 3 * d, 1, b2->dgh, 3 * d, PRM(net, GT_GRU_W_HH), d, 1, b1->dh, d);
	GEMM(RM, TR, NT, 3 * d, d, n_hd, 1, b2->dgi, 3 * d, b2->c, d, 1, GRD(grad, net, GT_GRU_W_IH), d);
	GEMM(RM, TR, NT, 3 * d, d, n_hd, 1, b2->dgh, 3 * d, b2->hprev, d, 1, GRD(grad, net, GT_GRU_W_HH), d);

	/* branch 1: dh1 = proj part + (from branch 2) */
	unit_post_bwd(net, b1, n_hd, grad, true);
	gru_cell_bwd(b1->dh, b1->hprev, b1->r, b1->z, b1->nn, b1->ghn, n_hd, d, b1->dgi, b1->dgh, b1->dpj);
	/* b1->dpj now holds the direct path into h_{p-1}; add the W_hh path */
	GEMM(RM, NT, NT, n_hd, d, 3 * d, 1, b1->dgh, 3 * d, PRM(net, GT_GRU_W_HH), d, 1, b1->dpj, d);
	GEMM(RM, NT, NT, n_hd, d, 3 * d, 1, b1->dgi, 3 * d, PRM(net, GT_GRU_W_IH), d, 1, b1->dc, d);
	GEMM(RM, TR, NT, 3 * d, d, n_hd, 1, b1->dgi, 3 * d, b1->c, d, 1, GRD(grad, net, GT_GRU_W_IH), d);
	GEMM(RM, TR, NT, 3 * d, d, n_hd, 1, b1->dgh, 3 * d, b1->hprev, d, 1, GRD(grad, net, GT_GRU_W_HH), d);

	/* into the trunk: dG_{p-1} and dh_{p-1} */
	memset(tr->dG, 0, sizeof(R) * n_tr * d);
	memset(tr->dh, 0, sizeof(R) * n_tr * d);
	for (int i = 0; i < n_hd; i++)
	{
		int			row = w->hrow[i];

		if (w->hpos[i] == 0)
			continue;
		R		   *g = tr->dG + (size_t) (row - 1) * d;
		R		   *hh = tr->dh + (size_t) (row - 1) * d;
		const R    *s1 = w->dGp + (size_t) i * d;
		const R    *s2 = b1->dpj + (size_t) i * d;

		for (int j = 0; j < d; j++)
		{
			g[j] += s1[j];
			hh[j] += s2[j];
		}
	}
	/* trunk post (gate, projection); dh accumulates the projection path */
	unit_post_bwd(net, tr, n_tr, grad, true);
	/* BPTT in lockstep */
	memset(tr->dgh, 0, sizeof(R) * n_tr * 3 * d);
	memset(tr->dgi, 0, sizeof(R) * n_tr * 3 * d);
	for (int t = maxlen - 2; t >= 0; t--)
	{
		int			na = 0;

		for (int c = 0; c < nc; c++)
			if (t + 1 < ch[c].len)
				w->act[na++] = c;
		for (int i = 0; i < na; i++)
		{
			size_t		row = (size_t) (tr_off[w->act[i]] + t);
			R			direct[512];

			gru_cell_bwd(tr->dh + row * d, tr->hprev + row * d, tr->r + row * d, tr->z + row * d,
						 tr->nn + row * d, tr->ghn + row * d, 1, d, tr->dgi + row * 3 * d,
						 tr->dgh + row * 3 * d, direct);
			if (t > 0)
			{
				R		   *hp = tr->dh + (row - 1) * d;

				for (int j = 0; j < d; j++)
					hp[j] += direct[j];
				memcpy(w->tGH + (size_t) i * 3 * d, tr->dgh + row * 3 * d, sizeof(R) * 3 * d);
			}
		}
		if (t > 0 && na > 0)
		{
			GEMM(RM, NT, NT, na, d, 3 * d, 1, w->tGH, 3 * d, PRM(net, GT_GRU_W_HH), d, 0, w->tH, d);
			for (int i = 0; i < na; i++)
			{
				R		   *hp = tr->dh + (size_t) (tr_off[w->act[i]] + t - 1) * d;
				const R    *s = w->tH + (size_t) i * d;

				for (int j = 0; j < d; j++)
					hp[j] += s[j];
			}
		}
	}
	GEMM(RM, NT, NT, n_tr, d, 3 * d, 1, tr->dgi, 3 * d, PRM(net, GT_GRU_W_IH), d, 1, tr->dc, d);
	GEMM(RM, TR, NT, 3 * d, d, n_tr, 1, tr->dgi, 3 * d, tr->c, d, 1, GRD(grad, net, GT_GRU_W_IH), d);
	GEMM(RM, TR, NT, 3 * d, d, n_tr, 1, tr->dgh, 3 * d, tr->hprev, d, 1, GRD(grad, net, GT_GRU_W_HH), d);

	/* conv taps: from dc (trunk), dc1, dc2 (head) to dP0, dP1, dP2 and the pad taps */
	{
		R		   *cbg = GRD(grad, net, GT_CONV1D_B);

		memset(w->dP0, 0, sizeof(R) * n_tr * d);
		memset(w->dP1, 0, sizeof(R) * n_tr * d);
		memset(w->dP2, 0, sizeof(R) * n_tr * d);
		memset(pd.dkap1, 0, sizeof(R) * d);
		memset(pd.dkap2, 0, sizeof(R) * d);
		for (int c = 0; c < nc; c++)
			for (int t = 0; t + 1 < ch[c].len; t++)
			{
				size_t		row = (size_t) (tr_off[c] + t);
				const R    *g = tr->dc + row * d;

				for (int j = 0; j < d; j++)
				{
					cbg[j] += g[j];
					w->dP1[row * d + j] += g[j];
					if (t > 0)
						w->dP0[(row - 1) * d + j] += g[j];
					w->dP2[(row + 1) * d + j] += g[j];
				}
			}
		for (int i = 0; i < n_hd; i++)
		{
			int			row = w->hrow[i],
						p = w->hpos[i];
			R			lt1 = (R) (p + 1 < L),
						lt2 = (R) (p + 2 < L);
			const R    *g1 = b1->dc + (size_t) i * d;
			const R    *g2 = b2->dc + (size_t) i * d;

			for (int j = 0; j < d; j++)
			{
				cbg[j] += g1[j] + g2[j];
				if (p > 0)
					w->dP0[(size_t) (row - 1) * d + j] += g1[j];
				w->dP1[(size_t) row * d + j] += g1[j];
				w->dP0[(size_t) row * d + j] += g2[j];
				pd.dkap2[j] += lt1 * g1[j] + lt2 * g2[j];
				pd.dkap1[j] += lt1 * g2[j];
			}
		}
		memset(w->dK, 0, sizeof(R) * 3 * d * d);
		GEMM(RM, NT, NT, n_tr, d, d, 1, w->dP0, d, w->K, d, 0, w->da, d);
		GEMM(RM, NT, NT, n_tr, d, d, 1, w->dP1, d, w->K + (size_t) d * d, d, 1, w->da, d);
		GEMM(RM, NT, NT, n_tr, d, d, 1, w->dP2, d, w->K + (size_t) 2 * d * d, d, 1, w->da, d);
		GEMM(RM, TR, NT, d, d, n_tr, 1, w->dP0, d, w->a, d, 1, w->dK, d);
		GEMM(RM, TR, NT, d, d, n_tr, 1, w->dP1, d, w->a, d, 1, w->dK + (size_t) d * d, d);
		GEMM(RM, TR, NT, d, d, n_tr, 1, w->dP2, d, w->a, d, 1, w->dK + (size_t) 2 * d * d, d);
		/* pad taps: kap_k = K_k apad */
		for (int o = 0; o < d; o++)
			for (int i = 0; i < d; i++)
			{
				w->dK[(size_t) d * d + (size_t) o * d + i] += pd.dkap1[o] * pd.a[i];
				w->dK[(size_t) 2 * d * d + (size_t) o * d + i] += pd.dkap2[o] * pd.a[i];
			}
		for (int i = 0; i < d; i++)
		{
			R			s = 0;

			for (int o = 0; o < d; o++)
				s += w->K[(size_t) d * d + (size_t) o * d + i] * pd.dkap1[o]
					+ w->K[(size_t) 2 * d * d + (size_t) o * d + i] * pd.dkap2[o];
			pd.da[i] = s;
		}
		conv_unpack_add(w->dK, d, GRD(grad, net, GT_CONV1D_W));
	}

	/* dense1 (trunk rows and pad), key/value (trunk rows and pad) into dx */
	linear_bwd(w->x, w->da, n_tr, d, d, PRM(net, GT_DENSE1_W), w->dx, 0,
			   GRD(grad, net, GT_DENSE1_W), GRD(grad, net, GT_DENSE1_B));
	elunorm_bwd(w->kraw, w->kh, w->kinv, w->dk, n_tr, d, dh, w->dkraw);
	linear_bwd(w->x, w->dkraw, n_tr, d, d, PRM(net, GT_ATT_K_W), w->dx, 1,
			   GRD(grad, net, GT_ATT_K_W), GRD(grad, net, GT_ATT_K_B));
	linear_bwd(w->x, w->dv, n_tr, d, d, PRM(net, GT_ATT_V_W), w->dx, 1,
			   GRD(grad, net, GT_ATT_V_W), GRD(grad, net, GT_ATT_V_B));
	linear_bwd(pd.x, pd.da, 1, d, d, PRM(net, GT_DENSE1_W), pd.dx, 0,
			   GRD(grad, net, GT_DENSE1_W), GRD(grad, net, GT_DENSE1_B));
	elunorm_bwd(pd.kraw, pd.kh, pd.kinv, pd.dkh, 1, d, dh, pd.dkraw);
	linear_bwd(pd.x, pd.dkraw, 1, d, d, PRM(net, GT_ATT_K_W), pd.dx, 1,
			   GRD(grad, net, GT_ATT_K_W), GRD(grad, net, GT_ATT_K_B));
	linear_bwd(pd.x, pd.dv, 1, d, d, PRM(net, GT_ATT_V_W), pd.dx, 1,
			   GRD(grad, net, GT_ATT_V_W), GRD(grad, net, GT_ATT_V_B));

	/* head-row input gradients back to their trunk rows, then the embedding */
	for (int i = 0; i < n_hd; i++)
	{
		R		   *dst = w->dx + (size_t) w->hrow[i] * d;
		const R    *src = w->dxh + (size_t) i * d;

		for (int j = 0; j < d; j++)
			dst[j] += src[j];
	}
	if (train && drop->p_emb > 0)
		dropout_bwd(w->dx, w->mx, (size_t) n_tr * d);
	{
		R		   *dE = GRD(grad, net, GT_ITEM_EMBEDDING);

		for (int c = 0; c < nc; c++)
			for (int p = 0; p < ch[c].len; p++)
			{
				int			it = ch[c].items[p];
				const R    *src = w->dx + (size_t) (tr_off[c] + p) * d;

				/* published padding_idx=0: no gradient through the lookup of row 0 */
				if (it == 0 && !pad_input_grad)
					continue;
				for (int j = 0; j < d; j++)
					dE[(size_t) it * d + j] += src[j];
			}
		if (pad_input_grad)
			for (int j = 0; j < d; j++)
				dE[j] += pd.dx[j];
	}
	free(pd.S);
	return loss;
}

double
glintru_net_loss_grad(const GlintruNet *net, const GlintruChunk *chunks, int n_chunks,
					  const GlintruDropout *drop, double loss_scale, GlintruReal *grad,
					  bool pad_input_grad, GlintruWork *w)
{
	return model_pass(net, chunks, n_chunks, drop, loss_scale, grad, pad_input_grad, w, NULL);
}

bool
glintru_net_head_vectors(const GlintruNet *net, const GlintruChunk *chunks, int n_chunks,
						 const GlintruDropout *drop, GlintruReal *out, GlintruWork *w)
{
	double		r = model_pass(net, chunks, n_chunks, drop, 0, NULL, false, w, out);

	return !isnan(r);
}

bool
glintru_net_user_vectors(const GlintruNet *net, const GlintruChunk *chunks, int n_chunks,
						 GlintruReal *out, GlintruWork *w)
{
	/* evaluate only each chunk's last position */
	GlintruChunk *c2 = calloc(n_chunks > 0 ? n_chunks : 1, sizeof(GlintruChunk));
	bool		ok;

	if (!c2)
		return false;
	for (int i = 0; i < n_chunks; i++)
	{
		c2[i] = chunks[i];
		c2[i].p_lo = chunks[i].len - 1;
		c2[i].targets = NULL;
	}
	ok = glintru_net_head_vectors(net, c2, n_chunks, NULL, out, w);
	free(c2);
	return ok;
}

/* ------------------------------------------------------------------ */
/* nets, initialisation, Adam                                           */
/* ------------------------------------------------------------------ */

GlintruNet *
glintru_net_new(int64_t n_rows, int32_t d, int32_t n_heads, int32_t max_seq_len, double ln_eps)
{
	GlintruNet *net;

	if (d <= 0 || d % 2 != 0 || n_heads <= 0 || d % n_heads != 0 || d > 512 ||
		max_seq_len <= 0 || n_rows < 2)
		return NULL;
	net = calloc(1, sizeof(GlintruNet));
	if (!net)
		return NULL;
	glintru_layout_init(&net->layout, n_rows, d);
	net->d = d;
	net->n_heads = n_heads;
	net->max_seq_len = max_seq_len;
	net->ln_eps = ln_eps;
	net->params = calloc(net->layout.n_params, sizeof(R));
	if (!net->params)
	{
		free(net);
		return NULL;
	}
	return net;
}

void
glintru_net_free(GlintruNet *net)
{
	if (!net)
		return;
	free(net->params);
	free(net);
}

static double
rng_uniform(uint64_t *st)
{
	*st += GLINTRU_SPLITMIX64_GAMMA;
	return (double) (glintru_mix64(*st) >> 11) * (1.0 / 9007199254740992.0);
}

static double
rng_normal(uint64_t *st)
{
	double		u1 = rng_uniform(st),
				u2 = rng_uniform(st);

	if (u1 < 1e-300)
		u1 = 1e-300;
	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/*
 * The published _init_weights: xavier_normal for the embedding (row 0
 * included: it overwrites the zero padding row), xavier_uniform for linear
 * and GRU weights, zero linear biases; the convolutions keep PyTorch's
 * default U(±1/√(3d)); LayerNorms 1/0; mixing logits [0.5, 0.5].
 */
void
glintru_net_init(GlintruNet *net, uint64_t seed)
{
	uint64_t	st = glintru_mix64(seed ^ 0x5EEDull);
	int			d = net->d;

	for (int t = 0; t < GT_COUNT; t++)
	{
		const GlintruTensorSlot *sl = &net->layout.slot[t];
		R		   *p = net->params + sl->offset;

		switch (t)
		{
			case GT_ITEM_EMBEDDING:
				{
					double		sd = sqrt(2.0 / (double) (sl->shape[0] + sl->shape[1]));

					for (uint64_t i = 0; i < sl->numel; i++)
						p[i] = (R) (sd * rng_normal(&st));
				}
				break;
			case GT_CONV1D_W:
			case GT_CONVG_W:
			case GT_CONV1D_B:
			case GT_CONVG_B:
				{
					double		b = 1.0 / sqrt(3.0 * d);

					for (uint64_t i = 0; i < sl->numel; i++)
						p[i] = (R) ((2 * rng_uniform(&st) - 1) * b);
				}
				break;
			case GT_ATT_LN_W:
			case GT_LN_W:
				for (uint64_t i = 0; i < sl->numel; i++)
					p[i] = 1;
				break;
			case GT_MIX_LOGITS:
				p[0] = p[1] = (R) 0.5;
				break;
			default:
				if (sl->ndim == 2)
				{
					double		b = sqrt(6.0 / (double) (sl->shape[0] + sl->shape[1]));

					for (uint64_t i = 0; i < sl->numel; i++)
						p[i] = (R) ((2 * rng_uniform(&st) - 1) * b);
				}
				else
					memset(p, 0, sizeof(R) * sl->numel);
		}
	}
}

void
glintru_adam_step(GlintruReal *param, const GlintruReal *grad, GlintruReal *m, GlintruReal *v,
				  uint64_t n, double lr, double beta1, double beta2, double eps, int64_t t)
{
	double		bc1 = 1 - pow(beta1, (double) t),
				bc2 = 1 - pow(beta2, (double) t);
	R			step = (R) (lr / bc1);
	R			rb2 = (R) (1.0 / sqrt(bc2));
	R			b1 = (R) beta1,
				b2 = (R) beta2,
				e = (R) eps;

	/* PyTorch's formula: p -= lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps) */
	for (uint64_t i = 0; i < n; i++)
	{
		R			g = grad[i];

		m[i] = b1 * m[i] + (1 - b1) * g;
		v[i] = b2 * v[i] + (1 - b2) * g * g;
		param[i] -= step * m[i] / (RSQRTF(v[i]) * rb2 + e);
	}
}

int
glintru_history_chunks(const int32_t *hist, int32_t n, int32_t L, uint64_t uid_base,
					   GlintruChunk *out, int max_out)
{
	int			k = 0;
	int32_t		s = L / 2 > 0 ? L / 2 : 1;

	if (n < 2)
		return 0;
	/* targets j = 1 .. min(L, n-1) from window [0, j): positions 0 .. len-1 */
	{
		int32_t		len = n - 1 < L ? n - 1 : L;

		if (k < max_out)
			out[k] = (GlintruChunk) {hist, len, 0, hist + 1, uid_base + (uint64_t) k};
		k++;
	}
	/* chunk at a = i·s serves targets j in (a + L - s, a + L], positions L-s .. */
	for (int64_t a = s; a + L - s + 1 <= n - 1; a += s)
	{
		int32_t		len = (int32_t) (n - 1 - a < L ? n - 1 - a : L);
		int32_t		p_lo = L - s;

		if (k < max_out)
			out[k] = (GlintruChunk) {hist + a, len, p_lo, hist + a + p_lo + 1, uid_base + (uint64_t) k};
		k++;
	}
	return k;
}

/* ------------------------------------------------------------------ */
/* evaluation                                                           */
/* ------------------------------------------------------------------ */

#define EVAL_BATCH 128

typedef struct EvalJob
{
	const GlintruNet *net;
	const GlintruSplit *split;
	GlintruProtocol protocol;
	bool		test;
	int			k;
	uint64_t	seed;
	int64_t		u0,
				u1;
	GlintruMetrics m;
	bool		ok;
} EvalJob;

static void *
eval_worker(void *arg)
{
	EvalJob    *j = arg;
	const GlintruNet *net = j->net;
	const GlintruSplit *s = j->split;
	int			d = net->d,
				L = net->max_seq_len;
	int64_t		N1 = net->layout.n_rows;
	GlintruWork *w = glintru_work_new();
	GlintruRanker *rk = glintru_ranker_new(j->protocol, N1, s->popularity, j->seed);
	GlintruChunk ch[EVAL_BATCH];
	R		   *U = malloc(sizeof(R) * EVAL_BATCH * d);
	R		   *S = malloc(sizeof(R) * EVAL_BATCH * (size_t) N1);
	float	   *Sf = malloc(sizeof(float) * (size_t) N1);

	glintru_metrics_init(&j->m, j->k);
	j->ok = false;
	if (!w || !rk || !U || !S || !Sf)
		goto out;
	for (int64_t u = j->u0; u < j->u1; u += EVAL_BATCH)
	{
		int			nb = (int) (j->u1 - u < EVAL_BATCH ? j->u1 - u : EVAL_BATCH);

		for (int i = 0; i < nb; i++)
		{
			const int32_t *h = s->rows + s->off[u + i];
			int32_t		nh = glintru_split_len(s, u + i) - (j->test ? 1 : 2);
			int32_t		len = nh < L ? nh : L;

			ch[i] = (GlintruChunk) {h + nh - len, len, len - 1, NULL, 0};
		}
		if (!glintru_net_user_vectors(net, ch, nb, U, w))
			goto out;
		GEMM(RM, NT, TR, nb, (int) N1, d, 1, U, d, PRM(net, GT_ITEM_EMBEDDING), d, 0, S, (int) N1);
		for (int i = 0; i < nb; i++)
		{
			const int32_t *h = s->rows + s->off[u + i];
			int32_t		nh = glintru_split_len(s, u + i) - (j->test ? 1 : 2);
			const R    *row = S + (size_t) i * N1;

			for (int64_t q = 0; q < N1; q++)
				Sf[q] = (float) row[q];
			glintru_metrics_add(&j->m, glintru_ranker_rank(rk, Sf, h[nh], h, nh, (uint64_t) (u + i)));
		}
	}
	j->ok = true;
out:
	glintru_work_free(w);
	glintru_ranker_free(rk);
	free(U);
	free(S);
	free(Sf);
	return NULL;
}

/*
 * Parallelism note.  Debian's serial OpenBLAS is built without locking: two
 * threads calling cblas_sgemm at the same time corrupt each other's
 * buffers (measured: wrong products within seconds).  So the engine's
 * parallel paths run their extra workers as forked processes, each with its
 * own OpenBLAS state, and exchange results through pipes and shared memory.
 */
static bool
write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0)
	{
		ssize_t		k = write(fd, c, n);

		if (k <= 0)
			return false;
		c += k;
		n -= (size_t) k;
	}
	return true;
}

static bool
read_all(int fd, void *p, size_t n)
{
	char	   *c = p;

	while (n > 0)
	{
		ssize_t		k = read(fd, c, n);

		if (k <= 0)
			return false;
		c += k;
		n -= (size_t) k;
	}
	return true;
}

bool
glintru_net_evaluate(const GlintruNet *net, const GlintruSplit *split, GlintruProtocol protocol,
					 bool test, int k, uint64_t seed, int n_threads, GlintruMetrics *out)
{
	EvalJob		jobs[16];
	pid_t		pid[16];
	int			fds[16][2];
	bool		ok = true;

	if (n_threads < 1)
		n_threads = 1;
	if (n_threads > 16)
		n_threads = 16;
	for (int t = 0; t < n_threads; t++)
	{
		jobs[t] = (EvalJob) {net, split, protocol, test, k, seed,
			split->n_users * t / n_threads, split->n_users * (t + 1) / n_threads, {0}, false};
		pid[t] = -1;
	}
	fflush(NULL);
	for (int t = 1; t < n_threads; t++)
	{
		if (pipe(fds[t]) != 0)
			continue;
		pid[t] = fork();
		if (pid[t] == 0)
		{
			close(fds[t][0]);
			eval_worker(&jobs[t]);
			write_all(fds[t][1], &jobs[t].m, sizeof(GlintruMetrics));
			write_all(fds[t][1], &jobs[t].ok, sizeof(bool));
			_exit(0);
		}
		close(fds[t][1]);
		if (pid[t] < 0)
			close(fds[t][0]);
	}
	eval_worker(&jobs[0]);
	for (int t = 1; t < n_threads; t++)
	{
		if (pid[t] > 0)
		{
			bool		got = read_all(fds[t][0], &jobs[t].m, sizeof(GlintruMetrics)) &&
				read_all(fds[t][0], &jobs[t].ok, sizeof(bool));

			close(fds[t][0]);
			waitpid(pid[t], NULL, 0);
			if (!got)
				jobs[t].ok = false;
		}
		else
			eval_worker(&jobs[t]);	/* no process: do it here */
	}
	glintru_metrics_init(out, k);
	for (int t = 0; t < n_threads; t++)
	{
		ok = ok && jobs[t].ok;
		glintru_metrics_merge(out, &jobs[t].m);
	}
	glintru_metrics_finish(out);
	return ok;
}

bool
glintru_net_score(const GlintruNet *net, const int32_t *const *hists, const int32_t *lens, int n,
				  float *out, GlintruWork *w)
{
	int			d = net->d,
				L = net->max_seq_len;
	int64_t		N1 = net->layout.n_rows;
	GlintruChunk *ch = calloc(n > 0 ? n : 1, sizeof(GlintruChunk));
	R		   *U = malloc(sizeof(R) * (size_t) (n > 0 ? n : 1) * d);
	R		   *row = malloc(sizeof(R) * (size_t) N1);
	bool		ok = false;

	if (!ch || !U || !row)
		goto out;
	for (int i = 0; i < n; i++)
	{
		int32_t		len = lens[i] < L ? lens[i] : L;

		if (len <= 0)
			goto out;
		ch[i] = (GlintruChunk) {hists[i] + lens[i] - len, len, len - 1, NULL, 0};
	}
	if (!glintru_net_user_vectors(net, ch, n, U, w))
		goto out;
	for (int i = 0; i < n; i++)
	{
		GEMM(RM, NT, TR, 1, (int) N1, d, 1, U + (size_t) i * d, d, PRM(net, GT_ITEM_EMBEDDING), d, 0, row, (int) N1);
		for (int64_t q = 0; q < N1; q++)
			out[(size_t) i * N1 + q] = (float) row[q];
	}
	ok = true;
out:
	free(ch);
	free(U);
	free(row);
	return ok;
}

/* ------------------------------------------------------------------ */
/* models                                                               */
/* ------------------------------------------------------------------ */

GlintruModel *
glintru_net_to_model(const GlintruNet *net, const GlintruSplit *split, char *err, size_t errlen)
{
	GlintruConfig cfg;
	GlintruModel *m;
	void	   *mem;

	memset(&cfg, 0, sizeof(cfg));
	cfg.n_rows = net->layout.n_rows;
	cfg.d = net->d;
	cfg.n_heads = net->n_heads;
	cfg.max_seq_len = net->max_seq_len;
	cfg.layer_norm_eps = (float) net->ln_eps;
	if (split->n_rows != cfg.n_rows)
	{
		snprintf(err, errlen, "vocabulary has %lld rows, net has %lld",
				 (long long) split->n_rows, (long long) cfg.n_rows);
		return NULL;
	}
	mem = malloc(glintru_model_bytes(&cfg, true));
	if (!mem)
	{
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	m = glintru_model_init(mem, &cfg, true);
	{
		float	   *p = glintru_params(m);

		for (uint64_t i = 0; i < net->layout.n_params; i++)
			p[i] = (float) net->params[i];
	}
	m->has_item_ids = 1;
	memcpy((char *) m + m->item_ids_off, split->item_ids, sizeof(int64_t) * (size_t) cfg.n_rows);
	memcpy((char *) m + m->popularity_off, split->popularity, sizeof(float) * (size_t) cfg.n_rows);
	if (!glintru_model_finish(m, err, errlen))
	{
		free(mem);
		return NULL;
	}
	return m;
}

GlintruNet *
glintru_net_from_model(const GlintruModel *m)
{
	GlintruNet *net = glintru_net_new(m->config.n_rows, m->config.d, m->config.n_heads,
									  m->config.max_seq_len, m->config.layer_norm_eps);
	const float *p;

	if (!net)
		return NULL;
	p = glintru_params(m);
	for (uint64_t i = 0; i < net->layout.n_params; i++)
		net->params[i] = (R) p[i];
	return net;
}

/* ------------------------------------------------------------------ */
/* the training loop                                                    */
/* ------------------------------------------------------------------ */

void
glintru_train_defaults(GlintruTrainOptions *o)
{
	memset(o, 0, sizeof(*o));
	o->d = 64;
	o->n_heads = 4;
	o->max_seq_len = 200;
	o->ln_eps = 1e-12;
	o->epochs = 200;
	o->batch_size = 32;
	o->lr = 1e-3;
	o->p_emb = 0.2;
	o->p_att = 0.2;
	o->p_inner = 0.3;
	o->patience = 10;
	o->seed = 42;
	o->n_threads = 2;
}

typedef struct StepJob
{
	const GlintruNet *net;
	const GlintruChunk *ch;
	int			n;
	GlintruDropout drop;
	double		scale;
	R		   *grad;
	GlintruWork *w;
	double		loss;
} StepJob;

static void *
step_worker(void *arg)
{
	StepJob    *j = arg;

	memset(j->grad, 0, sizeof(R) * j->net->layout.n_params);
	j->loss = j->n > 0 ? model_pass(j->net, j->ch, j->n, &j->drop, j->scale, j->grad, false, j->w, NULL) : 0;
	return NULL;
}

/* A step for a worker process: chunks order[first .. first+n) of the epoch. */
typedef struct StepCmd
{
	int			type;			/* 1 step, 0 exit */
	int64_t		first;
	int			n;
	uint64_t	drop_seed;
	double		scale;
} StepCmd;

typedef struct Worker
{
	pid_t		pid;
	int			cmd;			/* parent writes commands */
	int			done;			/* parent reads losses */
} Worker;

static void
worker_loop(int cmd_fd, int done_fd, const GlintruNet *net, const GlintruChunk *chunks,
			const int64_t *order, R *grad, const GlintruTrainOptions *opt)
{
	GlintruWork *w = glintru_work_new();
	GlintruChunk *bch = malloc(sizeof(GlintruChunk) * (size_t) opt->batch_size);
	StepCmd		c;

	while (w && bch && read_all(cmd_fd, &c, sizeof c) && c.type == 1)
	{
		StepJob		j;

		for (int i = 0; i < c.n; i++)
			bch[i] = chunks[order[c.first + i]];
		j = (StepJob) {net, bch, c.n, {true, opt->p_emb, opt->p_att, opt->p_inner, c.drop_seed},
			c.scale, grad, w, 0};
		step_worker(&j);
		if (!write_all(done_fd, &j.loss, sizeof(double)))
			break;
	}
	_exit(0);
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + ts.tv_nsec * 1e-9;
}

GlintruNet *
glintru_train(const GlintruSplit *split, const GlintruTrainOptions *opt,
			  GlintruProgressFn progress, void *progress_arg, char *err, size_t errlen)
{
	int			nt = opt->n_threads < 1 ? 1 : opt->n_threads > 16 ? 16 : opt->n_threads;
	GlintruNet *net = glintru_net_new(split->n_rows, opt->d, opt->n_heads, opt->max_seq_len, opt->ln_eps);
	GlintruNet *best = NULL;
	GlintruChunk *chunks = NULL;
	GlintruChunk *bch = NULL;
	int64_t		n_chunks = 0;
	uint64_t	np;
	R		   *grads[16] = {NULL};
	R		   *mom = NULL,
			   *vel = NULL;
	GlintruWork *works[16] = {NULL};
	int64_t    *order = NULL;
	int64_t		n_targets_total = 0;
	double		t_start = now_seconds();
	int			best_epoch = 0;
	double		best_ndcg = -1;
	int64_t		adam_t = 0;
	bool		ok = false;
	Worker		wk[16];
	void	   *shm = MAP_FAILED;
	size_t		shm_bytes = 0;
	R		   *own_params = NULL;

	for (int t = 0; t < 16; t++)
		wk[t] = (Worker) {-1, -1, -1};

	if (!net)
	{
		snprintf(err, errlen, "invalid model shape (d %d must be even and divisible by heads %d, d <= 512) or out of memory",
				 opt->d, opt->n_heads);
		return NULL;
	}
	if (opt->batch_size < 1 || opt->epochs < 1 || !(opt->lr > 0))
	{
		snprintf(err, errlen, "batch size, epochs and learning rate must be positive");
		glintru_net_free(net);
		return NULL;
	}
	glintru_net_init(net, opt->seed);
	np = net->layout.n_params;

	/* all training windows */
	for (int64_t u = 0; u < split->n_users; u++)
		n_chunks += glintru_history_chunks(split->rows + split->off[u], glintru_split_len(split, u) - 2,
										   opt->max_seq_len, 0, NULL, 0);
	if (n_chunks == 0)
	{
		snprintf(err, errlen, "no training samples: every user needs at least 4 interactions for one training prefix");
		goto out;
	}
	chunks = malloc(sizeof(GlintruChunk) * (size_t) n_chunks);
	/*
	 * Memory the worker processes see: parameters, their gradient blocks
	 * and the epoch's window order.
	 */
	shm_bytes = sizeof(R) * np * (size_t) nt + sizeof(int64_t) * (size_t) n_chunks;
	shm = mmap(NULL, shm_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shm == MAP_FAILED)
	{
		snprintf(err, errlen, "out of memory (shared mapping)");
		goto out;
	}
	own_params = net->params;
	net->params = (R *) shm;
	memcpy(net->params, own_params, sizeof(R) * np);
	order = (int64_t *) ((R *) shm + np * (size_t) nt);
	bch = malloc(sizeof(GlintruChunk) * (size_t) opt->batch_size);
	mom = calloc(np, sizeof(R));
	vel = calloc(np, sizeof(R));
	best = glintru_net_new(split->n_rows, opt->d, opt->n_heads, opt->max_seq_len, opt->ln_eps);
	if (!chunks || !bch || !mom || !vel || !best)
	{
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (int t = 0; t < nt; t++)
	{
		grads[t] = t == 0 ? malloc(sizeof(R) * np) : (R *) shm + np * (size_t) t;
		works[t] = glintru_work_new();
		if (!grads[t] || !works[t])
		{
			snprintf(err, errlen, "out of memory");
			goto out;
		}
	}
	{
		int64_t		k = 0;

		for (int64_t u = 0; u < split->n_users; u++)
			k += glintru_history_chunks(split->rows + split->off[u], glintru_split_len(split, u) - 2,
										opt->max_seq_len, (uint64_t) k, chunks + k, (int) (n_chunks - k));
		for (int64_t i = 0; i < n_chunks; i++)
		{
			order[i] = i;
			n_targets_total += chunks[i].len - chunks[i].p_lo;
		}
	}
	memcpy(best->params, net->params, sizeof(R) * np);

	/* worker processes for parts 1..nt-1 of every batch */
	fflush(NULL);
	for (int t = 1; t < nt; t++)
	{
		int			c[2],
					d[2];

		if (pipe(c) != 0 || pipe(d) != 0)
		{
			snprintf(err, errlen, "cannot create pipes for worker processes");
			goto out;
		}
		wk[t].pid = fork();
		if (wk[t].pid == 0)
		{
			close(c[1]);
			close(d[0]);
			for (int q = 1; q < t; q++)
			{
				close(wk[q].cmd);
				close(wk[q].done);
			}
			worker_loop(c[0], d[1], net, chunks, order, grads[t], opt);
		}
		close(c[0]);
		close(d[1]);
		wk[t].cmd = c[1];
		wk[t].done = d[0];
		if (wk[t].pid < 0)
		{
			snprintf(err, errlen, "cannot fork a worker process");
			goto out;
		}
	}

	for (int epoch = 1; epoch <= opt->epochs; epoch++)
	{
		double		t0 = now_seconds();
		double		loss_sum = 0;
		uint64_t	st = glintru_mix64(opt->seed ^ (0xE90C00ull + (uint64_t) epoch));

		/* shuffle the windows (Fisher–Yates, seeded per epoch) */
		for (int64_t i = n_chunks - 1; i > 0; i--)
		{
			int64_t		j = (int64_t) (glintru_mix64(st + (uint64_t) i) % (uint64_t) (i + 1));
			int64_t		tmp = order[i];

			order[i] = order[j];
			order[j] = tmp;
		}
		for (int64_t b0 = 0; b0 < n_chunks; b0 += opt->batch_size)
		{
			int			nb = (int) (n_chunks - b0 < opt->batch_size ? n_chunks - b0 : opt->batch_size);

			if (opt->should_stop && opt->should_stop(opt->stop_arg))
			{
				snprintf(err, errlen, "cancelled");
				goto out;
			}
			int64_t		rows = 0,
						tg = 0;
			StepJob		jobs[16];

			for (int i = 0; i < nb; i++)
			{
				bch[i] = chunks[order[b0 + i]];
				rows += bch[i].len;
				tg += bch[i].len - bch[i].p_lo;
			}
			/* split the batch into nt contiguous parts of about equal rows */
			{
				int			start = 0;
				int64_t		acc = 0;

				for (int t = 0; t < nt; t++)
				{
					int			end = start;

					if (t == nt - 1)
						end = nb;
					else
						while (end < nb && acc + bch[end].len <= rows * (t + 1) / nt)
							acc += bch[end++].len;
					jobs[t] = (StepJob) {net, bch + start, end - start,
						{true, opt->p_emb, opt->p_att, opt->p_inner, glintru_mix64(opt->seed + (uint64_t) epoch)},
						1.0 / (double) tg, grads[t], works[t], 0};
					start = end;
				}
			}
			for (int t = 1; t < nt; t++)
			{
				StepCmd		cmd;

				/* whole struct zeroed: its padding bytes go through the pipe too */
				memset(&cmd, 0, sizeof cmd);
				cmd.type = 1;
				cmd.first = (int64_t) (jobs[t].ch - bch) + b0;
				cmd.n = jobs[t].n;
				cmd.drop_seed = jobs[t].drop.seed;
				cmd.scale = jobs[t].scale;

				if (!write_all(wk[t].cmd, &cmd, sizeof cmd))
				{
					snprintf(err, errlen, "training worker %d died", t);
					goto out;
				}
			}
			step_worker(&jobs[0]);
			for (int t = 1; t < nt; t++)
				if (!read_all(wk[t].done, &jobs[t].loss, sizeof(double)))
				{
					snprintf(err, errlen, "training worker %d died", t);
					goto out;
				}
			/* reduce in a fixed order: the result does not depend on timing */
			for (int t = 0; t < nt; t++)
			{
				if (isnan(jobs[t].loss))
				{
					snprintf(err, errlen, "out of memory in a training step");
					goto out;
				}
				loss_sum += jobs[t].loss;
				if (t > 0)
					for (uint64_t i = 0; i < np; i++)
						grads[0][i] += grads[t][i];
			}
			adam_t++;
			glintru_adam_step(net->params, grads[0], mom, vel, np, opt->lr, 0.9, 0.999, 1e-8, adam_t);
		}

		GlintruMetrics val;

		if (!glintru_net_evaluate(net, split, GLINTRU_PROTOCOL_FULL, false, 10, opt->seed, nt, &val))
		{
			snprintf(err, errlen, "out of memory in validation");
			goto out;
		}
		if (val.ndcg > best_ndcg)
		{
			best_ndcg = val.ndcg;
			best_epoch = epoch;
			memcpy(best->params, net->params, sizeof(R) * np);
		}

		GlintruEpochReport r;
		double		t1 = now_seconds();

		r.epoch = epoch;
		r.epochs = opt->epochs;
		r.loss = loss_sum / (double) n_targets_total;
		r.val_ndcg10 = val.ndcg;
		r.best_val_ndcg10 = best_ndcg;
		r.best_epoch = best_epoch;
		r.epoch_seconds = t1 - t0;
		r.elapsed_seconds = t1 - t_start;
		r.eta_seconds = (t1 - t_start) / epoch * (opt->epochs - epoch);
		r.stopped = opt->patience > 0 && epoch - best_epoch >= opt->patience;
		r.best = best;
		if (progress)
			progress(&r, progress_arg);
		if (r.stopped)
			break;
	}
	ok = true;
out:
	for (int t = 1; t < nt; t++)
	{
		if (wk[t].cmd >= 0)
		{
			StepCmd		quit;

			memset(&quit, 0, sizeof quit);
			write_all(wk[t].cmd, &quit, sizeof quit);
			close(wk[t].cmd);
		}
		if (wk[t].done >= 0)
			close(wk[t].done);
		if (wk[t].pid > 0)
			waitpid(wk[t].pid, NULL, 0);
	}
	free(grads[0]);
	for (int t = 0; t < nt; t++)
		glintru_work_free(works[t]);
	if (own_params)
		net->params = own_params;
	if (shm != MAP_FAILED)
		munmap(shm, shm_bytes);
	free(chunks);
	free(bch);
	free(mom);
	free(vel);
	glintru_net_free(net);
	if (!ok)
	{
		glintru_net_free(best);
		return NULL;
	}
	return best;
}
