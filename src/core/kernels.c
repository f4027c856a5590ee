/*
 * kernels.c — dense building blocks of the forward pass, each BLAS call with
 * a plain-C loop beside it (see kernels.h).
 *
 * Numeric core: no PostgreSQL headers here.
 */
#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

bool		glintru_use_blas = true;

/* A single row goes to GEMV: GEMM's packing buys nothing for n = 1. */
void
glintru_linear(const float *X, int n, int in, const float *W, const float *b,
			   int out, float *Y)
{
	if (glintru_use_blas)
	{
		if (b)
			for (int r = 0; r < n; r++)
				memcpy(Y + (size_t) r * out, b, sizeof(float) * out);
		if (n == 1)
			cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, W, in, X, 1,
						b ? 1.0f : 0.0f, Y, 1);
		else
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f,
						X, in, W, in, b ? 1.0f : 0.0f, Y, out);
		return;
	}
	for (int r = 0; r < n; r++)
	{
		const float *x = X + (size_t) r * in;

		for (int o = 0; o < out; o++)
		{
			const float *w = W + (size_t) o * in;
			double		acc = b ? b[o] : 0.0;

			for (int i = 0; i < in; i++)
				acc += (double) w[i] * x[i];
			Y[(size_t) r * out + o] = (float) acc;
		}
	}
}

/* Statistics in double, as the float64 reference computes them. */
void
glintru_layernorm(const float *x, int d, const float *w, const float *b, float eps, float *y)
{
	double		mean = 0.0,
				var = 0.0,
				inv;

	for (int i = 0; i < d; i++)
		mean += x[i];
	mean /= d;
	for (int i = 0; i < d; i++)
	{
		double		c = x[i] - mean;

		var += c * c;
	}
	var /= d;
	inv = 1.0 / sqrt(var + eps);
	for (int i = 0; i < d; i++)
		y[i] = (float) ((x[i] - mean) * inv * w[i] + b[i]);
}

/* The BLAS path takes the fast expf so the loop vectorises; the oracle keeps expm1f. */
void
glintru_elu_l2_heads(float *x, int n, int d, int n_heads)
{
	int			dh = d / n_heads;

	for (int r = 0; r < n; r++)
		for (int h = 0; h < n_heads; h++)
		{
			float	   *v = x + (size_t) r * d + (size_t) h * dh;
			double		ss = 0.0;

			if (glintru_use_blas)
				for (int i = 0; i < dh; i++)
					v[i] = v[i] > 0.0f ? v[i] : glintru_fast_expf(v[i]) - 1.0f;
			else
				for (int i = 0; i < dh; i++)
					v[i] = v[i] > 0.0f ? v[i] : expm1f(v[i]);
			for (int i = 0; i < dh; i++)
				ss += (double) v[i] * v[i];
			/* ELU output > -1, so a head is all-zero only if every input was 0 */
			if (ss > 0.0)
			{
				float		inv = (float) (1.0 / sqrt(ss));

				for (int i = 0; i < dh; i++)
					v[i] *= inv;
			}
		}
}

/* The larger logit is subtracted first, so that large logits cannot overflow exp. */
void
glintru_softmax2(double l0, double l1, double w[2])
{
	double		mx = l0 > l1 ? l0 : l1;
	double		e0 = exp(l0 - mx),
				e1 = exp(l1 - mx);

	w[0] = e0 / (e0 + e1);
	w[1] = e1 / (e0 + e1);
}

/* Exact erf GELU, not the tanh approximation: the published model uses nn.GELU(). */
float
glintru_gelu(float x)
{
	return (float) (0.5 * x * (1.0 + erf(x * 0.70710678118654752440)));
}

/* In double, as the reference; the vectorised GRU gates use glintru_fast_expf instead. */
float
glintru_sigmoid(float x)
{
	return (float) (1.0 / (1.0 + exp(-(double) x)));
}

/* The selective gate's activation (SPEC §1.4), through the double-precision sigmoid. */
float
glintru_silu(float x)
{
	return x * glintru_sigmoid(x);
}

/* Gates overwrite gh in place, so that a step needs no scratch beyond W_hh h. */
void
glintru_gru_step(const float *gi, const float *h_prev, const float *W_hh, int d,
				 float *h_out, float *gh)
{
	if (h_prev)
		glintru_linear(h_prev, 1, d, W_hh, NULL, 3 * d, gh);
	else
		memset(gh, 0, sizeof(float) * 3 * d);
	if (glintru_use_blas)
	{
		/* vectorisable loops: gh[0, 2d) := r, z; gh[2d, 3d) := n; then h */
		float	   *restrict g = gh;
		const float *restrict x = gi;

		for (int i = 0; i < 2 * d; i++)
			g[i] = 1.0f / (1.0f + glintru_fast_expf(-(x[i] + g[i])));
		for (int i = 0; i < d; i++)
		{
			float		a = x[2 * d + i] + g[i] * g[2 * d + i];
			float		t = glintru_fast_expf(-2.0f * (a < 0.0f ? -a : a));
			float		nn = (1.0f - t) / (1.0f + t);

			g[2 * d + i] = a < 0.0f ? -nn : nn;
		}
		if (h_prev)
			for (int i = 0; i < d; i++)
				h_out[i] = (1.0f - g[d + i]) * g[2 * d + i] + g[d + i] * h_prev[i];
		else
			for (int i = 0; i < d; i++)
				h_out[i] = (1.0f - g[d + i]) * g[2 * d + i];
		return;
	}
	for (int i = 0; i < d; i++)
	{
		float		r = glintru_sigmoid(gi[i] + gh[i]);
		float		z = glintru_sigmoid(gi[d + i] + gh[d + i]);
		float		nn = tanhf(gi[2 * d + i] + r * gh[2 * d + i]);
		float		hp = h_prev ? h_prev[i] : 0.0f;

		h_out[i] = (1.0f - z) * nn + z * hp;
	}
}

/* Interleaved as PyTorch's [out, in, 3] weight, so that conv1d is one plain GEMM. */
void
glintru_conv3_column(const float *prev, const float *cur, const float *next, int d, float *col)
{
	for (int i = 0; i < d; i++)
	{
		col[3 * i + 0] = prev ? prev[i] : 0.0f;
		col[3 * i + 1] = cur ? cur[i] : 0.0f;
		col[3 * i + 2] = next ? next[i] : 0.0f;
	}
}

/* Blocks of 2^24 rows, because sgemv's dimensions are int and catalogues need not fit. */
void
glintru_score_items(const float *E, int64_t n_rows, int d, const float *u, float *scores)
{
	if (glintru_use_blas)
	{
		/* sgemv takes int dimensions: walk very large tables in blocks */
		const int64_t block = 1 << 24;

		for (int64_t r0 = 0; r0 < n_rows; r0 += block)
		{
			int			nr = (int) (n_rows - r0 < block ? n_rows - r0 : block);

			cblas_sgemv(CblasRowMajor, CblasNoTrans, nr, d, 1.0f, E + r0 * d, d, u, 1,
						0.0f, scores + r0, 1);
		}
		return;
	}
	for (int64_t j = 0; j < n_rows; j++)
	{
		double		acc = 0.0;

		for (int i = 0; i < d; i++)
			acc += (double) E[j * d + i] * u[i];
		scores[j] = (float) acc;
	}
}
