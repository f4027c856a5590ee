/*
 * kernels.h — the dense building blocks of the forward pass: linear layers,
 * LayerNorm, activations, the GRU cell, the kernel-3 convolution as one GEMM,
 * and scoring.  Each BLAS call has a plain-C loop beside it; setting
 * glintru_use_blas = false runs the loops (the test oracle).
 *
 * Numeric core: no PostgreSQL headers here.
 */
#ifndef GLINTRU_KERNELS_H
#define GLINTRU_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

/* true (default): OpenBLAS; false: plain loops, the oracle for tests. */
extern bool glintru_use_blas;

/* Y[n,out] = X[n,in] · W[out,in]ᵀ + b (b may be NULL). */
void		glintru_linear(const float *X, int n, int in, const float *W, const float *b,
						   int out, float *Y);

/* y = LayerNorm(x) over d values, statistics in double. y may alias x. */
void		glintru_layernorm(const float *x, int d, const float *w, const float *b,
							  float eps, float *y);

/* In place on n rows of d values: ELU (α = 1), then L2-normalise each head. */
void		glintru_elu_l2_heads(float *x, int n, int d, int n_heads);

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
 * Kernel-3 convolution inputs as rows of 3d: col[i*3 + k] = x_{t-1+k}[i]
 * (PyTorch's weight [out, in, 3] is then a plain [out, 3·in] matrix).
 * prev / next NULL mean zero.
 */
void		glintru_conv3_column(const float *prev, const float *cur, const float *next,
								 int d, float *col);

/* scores[j] = E[j] · u for j in [0, n_rows). */
void		glintru_score_items(const float *E, int64_t n_rows, int d, const float *u,
								float *scores);

#endif							/* GLINTRU_KERNELS_H */
