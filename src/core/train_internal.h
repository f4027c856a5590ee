/*
 * train_internal.h — what the files of the training engine share and the
 * rest of the tree does not see: the element type and BLAS spelling of the
 * engine, the workspace (GlintruWork, sized and carved by train_work.c),
 * the per-layer forward/backward functions (train_layers.c) and the step
 * and evaluation workers (train_workers.c).
 *
 *   train_layers.c   one forward and one backward function per layer
 *   train_work.c     the workspace table: arena size and pointers
 *   train_pass.c     the all-prefix pass (SPEC §1) as per-layer calls
 *   train.c          nets, initialisation, Adam, windows, models, epoch loop
 *   train_workers.c  the parts of steps and evaluations, their shared area
 *                    and the fork pool (the only fork/mmap/pipe code)
 *
 * Every function declared here is global in the extension's shared object,
 * so every name starts with glintru_ (see README: symbol clashes with
 * OpenBLAS internals crash the server).
 */
#ifndef GLINTRU_TRAIN_INTERNAL_H
#define GLINTRU_TRAIN_INTERNAL_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cblas.h>

#include "train.h"
#include "kernels.h"

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
glintru_fast_tanhf(float x)
{
	return 2.0f / (1.0f + glintru_fast_expf(-2.0f * x)) - 1.0f;
}

/*
 * 8-lane vectors (GCC vector extensions) for the loops that call exp: GCC
 * does not vectorise the scalar glintru_fast_expf (its selects count as
 * control flow), so the hot loops spell the same operations on 8 lanes.
 * Every lane computes exactly what the scalar code computes (same
 * operations in the same order, no FMA), so the vector path and its
 * plain-C twin (glintru_train_simd = false) give the same bits.
 */
#define GLINTRU_V8 1
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float glintru_v8f __attribute__((vector_size(32)));
typedef int32_t glintru_v8i __attribute__((vector_size(32)));
typedef float glintru_v8fu __attribute__((vector_size(32), aligned(4)));

#define V8LOAD(p) (*(const glintru_v8fu *) (p))
#define V8STORE(p, v) (*(glintru_v8fu *) (p) = (v))

/* all lanes x */
static inline glintru_v8f
v8_splat(float x)
{
	return (glintru_v8f) {x, x, x, x, x, x, x, x};
}

/* lane-wise m ? a : b (m: all ones or zero per lane, as comparisons give) */
static inline glintru_v8f
v8_sel(glintru_v8i m, glintru_v8f a, glintru_v8f b)
{
	return (glintru_v8f) ((m & (glintru_v8i) a) | (~m & (glintru_v8i) b));
}

/* glintru_fast_expf on 8 lanes, operation for operation */
static inline glintru_v8f
glintru_v8_exp(glintru_v8f x)
{
	glintru_v8f c,
				n,
				r,
				p;
	glintru_v8i e;

	c = v8_sel(x > v8_splat(-87.0f), x, v8_splat(-87.0f));
	c = v8_sel(c < v8_splat(88.0f), c, v8_splat(88.0f));
	n = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
	r = c - n * 0.693359375f;
	r = r + n * 2.12194440e-4f;
	p = v8_splat(1.9875691500E-4f);
	p = p * r + 1.3981999507E-3f;
	p = p * r + 8.3334519073E-3f;
	p = p * r + 4.1665795894E-2f;
	p = p * r + 1.6666665459E-1f;
	p = p * r + 5.0000001201E-1f;
	p = p * r * r + r + 1.0f;
	e = (__builtin_convertvector(n, glintru_v8i) + 127) << 23;
	return v8_sel(x == x, p * (glintru_v8f) e, x);
}

/* the logistic sigmoid and tanh of glintru_sigm / glintru_fast_tanhf on 8 lanes */
static inline glintru_v8f
glintru_v8_sigm(glintru_v8f x)
{
	return 1.0f / (1.0f + glintru_v8_exp(-x));
}

static inline glintru_v8f
glintru_v8_tanh(glintru_v8f x)
{
	return 2.0f / (1.0f + glintru_v8_exp(-2.0f * x)) - 1.0f;
}

#define GEMM cblas_sgemm
#define REXP glintru_fast_expf
#define RTANH glintru_fast_tanhf
#define RERF erff
#define RSQRTF sqrtf
#endif

/*
 * The element-wise loops of the engine (GRU cells, softmax, norms, gates,
 * attention sums) are compiled twice, for AVX2 and for the base x86-64, and
 * the loader picks one per CPU (GCC's target_clones, an ifunc): 8 floats
 * per instruction where the CPU has them, without -march flags that would
 * break other machines.  No FMA and no reassociation (ISO C's
 * -ffp-contract=off), so both clones compute the same bits.
 */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GLINTRU_VEC __attribute__((target_clones("avx2", "default")))
#else
#define GLINTRU_VEC
#endif

#define NT CblasNoTrans
#define TR CblasTrans
#define RM CblasRowMajor

/* a parameter tensor of the net, and the same tensor's slot in a gradient block */
#define PRM(net, t) ((net)->params + (net)->layout.slot[(t)].offset)
#define GRD(g, net, t) ((g) + (net)->layout.slot[(t)].offset)

/* head rows per cross-entropy block: bounds the logits buffer to 256 × n_rows */
#define GLINTRU_LOGIT_BLOCK 256

/* logistic sigmoid in the engine's precision */
static inline R
glintru_sigm(R x)
{
	return 1 / (1 + REXP(-x));
}

/* ------------------------------------------------------------------ */
/* workspace                                                            */
/* ------------------------------------------------------------------ */

/*
 * Activations and gradients of one "unit": conv output c -> GRU step ->
 * selective gate and projection -> G.  The trunk is one unit over trunk
 * rows; branch 1 and branch 2 are units over head rows.  Shapes (n = the
 * unit's rows) are in train_work.c's table.
 */
typedef struct GlintruUnit
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
			   *ms,				/* mask in use (msbuf), or NULL (eval) */
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
} GlintruUnit;

/* The padding slot's vectors (functions of E[0]) and their gradients. */
typedef struct GlintruPad
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
} GlintruPad;

/*
 * Reusable scratch of one thread: one arena of R holding every activation
 * and gradient of a pass, one of int for the row maps.  Which pointer gets
 * how much is train_work.c's table (the only place that knows the shapes).
 */
struct GlintruWork
{
	R		   *arena;
	size_t		cap;			/* in R */
	int		   *iarena;
	size_t		icap;			/* in int */

	/* row maps */
	int		   *tr_off,			/* chunk -> its first trunk row */
			   *hd_off,			/* chunk -> its first head row */
			   *act,			/* chunks active in a GRU lockstep step */
			   *hrow,			/* head row -> trunk row */
			   *hpos,			/* head row -> position in chunk */
			   *htgt;			/* head row -> target (-1 none) */

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
	GlintruUnit tr;
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
	GlintruUnit b1,
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
			   *tGH,
			   *direct;
	/* repacked conv weights K_k [d×d] and their gradients */
	R		   *K,
			   *dK,
			   *Kg,
			   *dKg;
	/* cross-entropy rows gathered when a block's targets are not contiguous */
	R		   *Ug,
			   *dUg,
			   *Us;
	GlintruPad	pd;
};

/* the 8-lane loops run (glintru_train_use_simd in train.h) */
extern bool glintru_train_simd;

/* Size the workspace for a pass of n_tr trunk rows, n_hd head rows, nc chunks. */
bool		glintru_work_reserve(GlintruWork *w, const GlintruNet *net, int n_tr, int n_hd, int nc);

/* ------------------------------------------------------------------ */
/* layers (train_layers.c)                                              */
/* ------------------------------------------------------------------ */

void		glintru_linear_fwd(const R *X, int n, int in, const R *W, const R *b, R *Y, int out);
void		glintru_linear_bwd(const R *X, const R *dY, int n, int in, int out, const R *W,
							   R *dX, R beta_dx, R *dW, R *db);
void		glintru_gelu_fwd(const R *x, R *y, size_t n);
void		glintru_gelu_bwd(const R *x, const R *dy, R *dx, size_t n);
void		glintru_silu_fwd(const R *x, R *y, size_t n);
void		glintru_silu_bwd(const R *x, const R *dy, R *dx, size_t n);
void		glintru_dropout_fwd(R *x, const R *mask, size_t n);
void		glintru_dropout_bwd(R *dx, const R *mask, size_t n);
void		glintru_mask_row(R *m, int n, double p, uint64_t seed, uint64_t uid, int pos, int layer);
void		glintru_layernorm_fwd(const R *x, int n, int d, const R *g, const R *b, double eps,
								  R *xhat, R *rstd, R *y);
void		glintru_layernorm_bwd(const R *dy, int n, int d, const R *g, const R *xhat,
								  const R *rstd, R *dx, bool add, R *dg, R *db);
void		glintru_elunorm_fwd(const R *x, int n, int d, int dh, R *y, R *inv);
void		glintru_elunorm_bwd(const R *x, const R *y, const R *inv, const R *dy, int n, int d,
								int dh, R *dx);
void		glintru_gru_cell_fwd(const R *gi, const R *gh, const R *hprev, int n, int d,
								 R *r, R *z, R *nn, R *ghn, R *h);
void		glintru_gru_cell_bwd(const R *dh, const R *hprev, const R *r, const R *z, const R *nn,
								 const R *ghn, int n, int d, R *dgi, R *dgh, R *dhp_direct);
void		glintru_conv_repack(const R *W, int d, R *K);
void		glintru_conv_unpack_add(const R *K, int d, R *W);
void		glintru_unit_post_fwd(const GlintruNet *net, GlintruUnit *u, int n);
void		glintru_unit_post_bwd(const GlintruNet *net, GlintruUnit *u, int n, R *grad, bool add_dh);
void		glintru_gru_unit_fwd(const GlintruNet *net, GlintruUnit *u, int n);
void		glintru_gru_unit_bwd(const GlintruNet *net, GlintruUnit *u, int n, bool add_dh,
								 R *dhprev, R *grad);
void		glintru_gru_input_bwd(const GlintruNet *net, GlintruUnit *u, int n, R *grad);

/* The chunks of a pass and their row offsets (what the attention sums need). */
typedef struct GlintruRows
{
	const GlintruChunk *ch;
	int			nc;
	const int  *tr_off;
	const int  *hd_off;
} GlintruRows;

void		glintru_attention_fwd(const GlintruNet *net, const GlintruRows *rw, const R *kh,
								  const R *v, const R *qh, const R *kpad, const R *vpad,
								  R *ctx, R *S);
void		glintru_attention_bwd(const GlintruNet *net, const GlintruRows *rw, const R *kh,
								  const R *v, const R *qh, const R *kpad, const R *vpad,
								  const R *dctx, R *dq, R *dk, R *dv, R *dkpad, R *dvpad, R *S);
double		glintru_ce_fwd_bwd(const GlintruNet *net, const R *U, const int *tgt, int n,
							   R *logits, double scale, R *dU, R *dE, R *Us);

/* ------------------------------------------------------------------ */
/* workers (train_workers.c)                                            */
/* ------------------------------------------------------------------ */

/* One part of a batch: its windows, masks, loss scale and gradient block. */
typedef struct GlintruStepJob
{
	const GlintruNet *net;
	const GlintruChunk *ch;
	int			n;
	GlintruDropout drop;
	double		scale;
	R		   *grad;
	GlintruWork *w;
	double		loss;
} GlintruStepJob;

/*
 * The parts of a training run or an evaluation and the area they share
 * (train_workers.c): params, gradient blocks 1..nt-1 and the epoch's
 * window order point into the area (grads[0] is the caller's own); the
 * area also holds a copy of the split for the worker processes.  With one
 * part the area is plain memory and no pool is used.
 */
typedef struct GlintruPool
{
	int			nt;				/* parts: 1 + running workers */
	GlintruWorkerPool *wp;		/* the pool in use (nt > 1), else NULL */
	GlintruWorkerPool *own;		/* a fork pool made here (freed at close) */
	void	   *area;
	bool		area_mapped;	/* by wp (else malloc'ed) */
	R		   *params;
	R		   *grads[GLINTRU_TRAIN_MAX_WORKERS];
	int64_t    *order;
} GlintruPool;

/* The training windows of every user (histories minus validation and test). */
int64_t		glintru_train_windows(const GlintruSplit *split, int32_t L, GlintruChunk *out, int64_t cap);

void		glintru_pool_init(GlintruPool *p, int nt);
/*
 * The area of a run with up to p->nt parts: net's shape, the split (copied)
 * and room for n_chunks window positions (0: evaluation only); wp NULL
 * means the fork pool.  Parameters are not copied: the caller fills
 * p->params.
 */
bool		glintru_pool_map(GlintruPool *p, GlintruWorkerPool *wp, const GlintruNet *net,
							 const GlintruSplit *split, int64_t n_chunks,
							 const GlintruTrainOptions *opt, char *err, size_t errlen);
/* Starts the workers; p->nt becomes the number of parts that can run. */
bool		glintru_pool_start(GlintruPool *p, char *err, size_t errlen);
/* One batch: parts 1.. to the workers (positions first0 + offset in bch), part 0 here. */
bool		glintru_pool_step(GlintruPool *p, GlintruStepJob *jobs, int64_t first0,
							  const GlintruChunk *bch, char *err, size_t errlen);
/*
 * Metrics of net (params: p->params) on split, users shared among the
 * parts; should_stop (may be NULL) is asked between batches of users.
 */
bool		glintru_pool_evaluate(GlintruPool *p, const GlintruNet *net, const GlintruSplit *split,
								  GlintruProtocol protocol, bool test, int k, uint64_t seed,
								  bool (*should_stop) (void *arg), void *stop_arg,
								  GlintruMetrics *out, char *err, size_t errlen);
void		glintru_pool_close(GlintruPool *p);

#endif							/* GLINTRU_TRAIN_INTERNAL_H */
