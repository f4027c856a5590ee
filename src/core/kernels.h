/*
 * kernels.h — the dense building blocks of the forward pass: linear layers,
 * LayerNorm, activations, the GRU cell (plain, and fused over a packed W_hh
 * with an AVX2+FMA variant chosen at run time), the kernel-3 convolution as
 * one GEMM, and scoring.  Each BLAS call has a plain-C loop beside it;
 * setting glintru_use_blas = false runs the loops (the test oracle).  Each
 * SIMD kernel has a plain-C twin; glintru_use_simd(false) selects the twins.
 *
 * Numeric core: no PostgreSQL headers here.
 */
#ifndef GLINTRU_KERNELS_H
#define GLINTRU_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* true (default): OpenBLAS; false: plain loops, the oracle for tests. */
extern bool glintru_use_blas;

/*
 * Shared by the serving kernels and the training engine: one definition.
 */
/*
 * expf for a vector loop: x = n ln2 + r, |r| <= ln2/2, 2^n by exponent bits,
 * e^r by a degree-6 polynomial (Cephes coefficients); branch-free so that GCC
 * vectorises the loops that call it.  Relative error ~2 ulp on [-87, 88].
 */
static inline float
glintru_fast_expf(float x)
{
	union { float f; int32_t i; } u;
	float		n, r, p,
				c;

	/*
	 * Clamp so that NaN fails both comparisons and becomes -87: the int
	 * conversion below is then always defined (a NaN there is undefined
	 * behaviour); NaN itself is passed through at the end.
	 */
	c = x > -87.0f ? x : -87.0f;
	c = c < 88.0f ? c : 88.0f;
	n = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f;	/* round to nearest */
	r = c - n * 0.693359375f;
	r = r + n * 2.12194440e-4f;
	p = 1.9875691500E-4f;
	p = p * r + 1.3981999507E-3f;
	p = p * r + 8.3334519073E-3f;
	p = p * r + 4.1665795894E-2f;
	p = p * r + 1.6666665459E-1f;
	p = p * r + 5.0000001201E-1f;
	p = p * r * r + r + 1.0f;
	u.i = ((int32_t) n + 127) << 23;
	return x == x ? p * u.f : x;	/* NaN in, NaN out (as expf) */
}

/* Y[n,out] = X[n,in] · W[out,in]ᵀ + b (b may be NULL). */
void		glintru_linear(const float *X, int n, int in, const float *W, const float *b,
						   int out, float *Y);

/* y = LayerNorm(x) over d values, statistics in double. y may alias x. */
void		glintru_layernorm(const float *x, int d, const float *w, const float *b,
							  float eps, float *y);

/* In place on n rows of d values: ELU (α = 1), then L2-normalise each head. */
void		glintru_elu_l2_heads(float *x, int n, int d, int n_heads);

/* w = softmax(l0, l1), in double: the two experts' mix weights (SPEC §1.5). */
void		glintru_softmax2(double l0, double l1, double w[2]);

float		glintru_gelu(float x);	/* exact: x Φ(x) via erf */
float		glintru_sigmoid(float x);
float		glintru_silu(float x);

/*
 * One bias-free GRU step (PyTorch gate order r, z, n):
 * gi = W_ih c (3d, precomputed), h_out = GRU(h_prev).  h_prev NULL means 0.
 * scratch: 3d floats.  h_out must not alias h_prev.
 */
void		glintru_gru_step(const float *gi, const float *h_prev, const float *W_hh, int d,
							 float *h_out, float *scratch);

/*
 * The fused GRU step reads W_hh packed by blocks of 8 hidden units: for
 * block b and column j, 24 floats — rows r, z, n of units 8b … 8b+7 (zero
 * past d) — so one pass accumulates all three gates' W_h· h with vertical
 * FMAs and finishes the gates and the update while they are in registers.
 */
size_t		glintru_gru_packed_floats(int d);

/* packed (glintru_gru_packed_floats(d) floats) = W_hh [3d, d] in the layout above. */
void		glintru_gru_pack(const float *W_hh, int d, float *packed);

/*
 * One bias-free GRU step in one pass over the packed W_hh: the same gates
 * and approximations as glintru_gru_step's BLAS path (glintru_fast_expf).
 * gi = W_ih c (3d); h_prev NULL means 0; h_out must not alias h_prev.
 * Runs the AVX2+FMA kernel when selected (glintru_use_simd), else the plain-C one.
 */
void		glintru_gru_fused(const float *gi, const float *h_prev, const float *packed, int d,
							  float *h_out);

/* The portable plain-C fused step (the oracle of the SIMD one); same contract. */
void		glintru_gru_fused_c(const float *gi, const float *h_prev, const float *packed, int d,
								float *h_out);

/*
 * Select the SIMD kernels (on: if this CPU has AVX2 and FMA) or their plain-C
 * twins; returns whether the SIMD kernels are now in use.  Called once at
 * load with true; tests call it to run the twins.
 */
bool		glintru_use_simd(bool on);

/* y[n] = b + x0 + x1 + x2, any of the four NULL meaning 0: a GRU input from tabled terms. */
void		glintru_sum4(const float *b, const float *x0, const float *x1, const float *x2, int n,
						 float *y);

/*
 * Kernel-3 convolution inputs as rows of 3d: col[i*3 + k] = x_{t-1+k}[i]
 * (PyTorch's weight [out, in, 3] is then a plain [out, 3·in] matrix).
 * prev / next NULL mean zero.
 */
void		glintru_conv3_column(const float *prev, const float *cur, const float *next,
								 int d, float *col);

/*
 * scores[j] = E[j] · u for j in [0, n_rows): glintru_score_rows over every
 * row, so that a row scores the same bits in a full scan as in a list.
 */
void		glintru_score_items(const float *E, int64_t n_rows, int d, const float *u,
								float *scores);

/*
 * scores[i] = E[rows[i]] · u for i in [0, n) (rows NULL: row i), each row
 * summed in one fixed order whatever its position or the list's length (8
 * lanes, no FMA), so a gathered candidate list scores exactly as the
 * catalogue scan.  O(n·d).  SIMD (AVX2) or its plain-C twin, per
 * glintru_use_simd; both give identical results.
 */
void		glintru_score_rows(const float *E, int d, const float *u, const int32_t *rows,
							   int64_t n, float *scores);

/* The plain-C twin of glintru_score_rows, whatever glintru_use_simd selected (tests). */
void		glintru_score_rows_c(const float *E, int d, const float *u, const int32_t *rows,
								 int64_t n, float *scores);

#endif							/* GLINTRU_KERNELS_H */
