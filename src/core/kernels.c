/*
 * kernels.c — dense building blocks of the forward pass, each BLAS call with
 * a plain-C loop beside it, each SIMD kernel (AVX2+FMA, chosen at run time
 * by CPU features through a function pointer, as pgvector dispatches its
 * distances) with a plain-C twin (see kernels.h).
 *
 * Numeric core: no PostgreSQL headers here.
 */
#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define GLINTRU_X86_SIMD 1
#include <immintrin.h>
/* compiled for AVX2+FMA whatever the build's -march; called only if the CPU has them */
#define AVX2_FMA __attribute__((target("avx2,fma")))
#endif

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

/* σ(x) through glintru_fast_expf: the vectorisable gate of the BLAS path. */
static inline float
fast_sigmoid(float x)
{
	return 1.0f / (1.0f + glintru_fast_expf(-x));
}

/* tanh(a) = sign(a) (1 - e^{-2|a|}) / (1 + e^{-2|a|}): no overflow for any a, NaN passes. */
static inline float
fast_tanh(float a)
{
	float		t = glintru_fast_expf(-2.0f * (a < 0.0f ? -a : a));
	float		nn = (1.0f - t) / (1.0f + t);

	return a < 0.0f ? -nn : nn;
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
			g[i] = fast_sigmoid(x[i] + g[i]);
		for (int i = 0; i < d; i++)
			g[2 * d + i] = fast_tanh(x[2 * d + i] + g[i] * g[2 * d + i]);
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

/* ---- the fused GRU step over a packed W_hh ---- */

/* Hidden units per block of the packed W_hh: one AVX2 register of floats. */
#define GRU_LANES 8

/* Blocks of GRU_LANES units, the last one zero-padded: so any d works. */
size_t
glintru_gru_packed_floats(int d)
{
	size_t		blocks = ((size_t) d + GRU_LANES - 1) / GRU_LANES;

	return blocks * (size_t) d * 3 * GRU_LANES;
}

/* Column-major within a block, so that the step's loads are contiguous 8-lane vectors. */
void
glintru_gru_pack(const float *W_hh, int d, float *packed)
{
	int			blocks = (d + GRU_LANES - 1) / GRU_LANES;

	for (int b = 0; b < blocks; b++)
		for (int j = 0; j < d; j++)
			for (int g = 0; g < 3; g++)
				for (int l = 0; l < GRU_LANES; l++)
				{
					int			unit = b * GRU_LANES + l;

					packed[(((size_t) b * d + j) * 3 + g) * GRU_LANES + l] =
						unit < d ? W_hh[((size_t) g * d + unit) * d + j] : 0.0f;
				}
}

/* acc[g·8 + l] = row g (r, z, n) of lane l of one packed block times h: the twin's matvec. */
static void
block_matvec_c(const float *restrict w, const float *restrict h, int d, float *restrict acc)
{
	float		s[3 * GRU_LANES] = {0};

	for (int j = 0; j < d; j++, w += 3 * GRU_LANES)
	{
		float		hj = h[j];

#pragma GCC unroll 24
		for (int l = 0; l < 3 * GRU_LANES; l++)
			s[l] += w[l] * hj;
	}
	memcpy(acc, s, sizeof(s));
}

/*
 * Plain-C twin of the SIMD step, block by block as it: lanes past d work on
 * zeros in local copies, so that the gate loop has no branch and vectorises.
 */
void
glintru_gru_fused_c(const float *gi, const float *h_prev, const float *packed, int d, float *h_out)
{
	int			blocks = (d + GRU_LANES - 1) / GRU_LANES;

	for (int b = 0; b < blocks; b++)
	{
		float		acc[3 * GRU_LANES] = {0},
					x[3 * GRU_LANES] = {0},
					hp[GRU_LANES] = {0},
					out[GRU_LANES];
		int			u0 = b * GRU_LANES;
		int			nl = d - u0 < GRU_LANES ? d - u0 : GRU_LANES;

		for (int g = 0; g < 3; g++)
			memcpy(x + g * GRU_LANES, gi + (size_t) g * d + u0, sizeof(float) * nl);
		if (h_prev)
		{
			block_matvec_c(packed + (size_t) b * d * 3 * GRU_LANES, h_prev, d, acc);
			memcpy(hp, h_prev + u0, sizeof(float) * nl);
		}
		for (int l = 0; l < GRU_LANES; l++)
		{
			float		r = fast_sigmoid(x[l] + acc[l]);
			float		z = fast_sigmoid(x[GRU_LANES + l] + acc[GRU_LANES + l]);
			float		nn = fast_tanh(x[2 * GRU_LANES + l] + r * acc[2 * GRU_LANES + l]);

			out[l] = (1.0f - z) * nn + z * hp[l];
		}
		memcpy(h_out + u0, out, sizeof(float) * nl);
	}
}

#ifdef GLINTRU_X86_SIMD

/* glintru_fast_expf on 8 lanes: the same clamp, reduction and polynomial; NaN in, NaN out. */
static inline AVX2_FMA __m256
exp8(__m256 x)
{
	/* max_ps returns its second operand for a NaN: NaN becomes -87, as the scalar clamp */
	__m256		c = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
	__m256		n = _mm256_round_ps(_mm256_mul_ps(c, _mm256_set1_ps(1.44269504088896341f)),
									_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m256		r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), c);
	__m256		p = _mm256_set1_ps(1.9875691500E-4f);
	__m256i		e;

	r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
	p = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0f));
	e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
	return _mm256_blendv_ps(x, _mm256_mul_ps(p, _mm256_castsi256_ps(e)), _mm256_cmp_ps(x, x, _CMP_ORD_Q));
}

/* fast_sigmoid on 8 lanes. */
static inline AVX2_FMA __m256
sigmoid8(__m256 x)
{
	__m256		one = _mm256_set1_ps(1.0f);

	return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

/* fast_tanh on 8 lanes: the sign bit of a copied onto (1 - t) / (1 + t). */
static inline AVX2_FMA __m256
tanh8(__m256 a)
{
	__m256		sign = _mm256_set1_ps(-0.0f),
				one = _mm256_set1_ps(1.0f);
	__m256		t = exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), _mm256_andnot_ps(sign, a)));

	return _mm256_or_ps(_mm256_div_ps(_mm256_sub_ps(one, t), _mm256_add_ps(one, t)), _mm256_and_ps(a, sign));
}

/* The first nl lanes from src (the rest 0): a block past d reads nothing beyond it. */
static inline AVX2_FMA __m256
load_lanes(const float *src, __m256i mask, int nl)
{
	return nl == GRU_LANES ? _mm256_loadu_ps(src) : _mm256_maskload_ps(src, mask);
}

/* s_g += column j of block rows g (r, z, n) times h[j]: one packed column, three FMAs. */
#define GRU_COLUMN(w, hj, s0, s1, s2) \
	do { \
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps((w)), (hj), s0); \
		s1 = _mm256_fmadd_ps(_mm256_loadu_ps((w) + GRU_LANES), (hj), s1); \
		s2 = _mm256_fmadd_ps(_mm256_loadu_ps((w) + 2 * GRU_LANES), (hj), s2); \
	} while (0)

/*
 * acc[g] = rows g (r, z, n) of one packed block times h: four columns per
 * iteration into separate sums, so that twelve FMA chains hide their latency.
 */
static inline AVX2_FMA void
block_matvec8(const float *w, const float *h, int d, __m256 acc[3])
{
	__m256		a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, b0 = a0, b1 = a0, b2 = a0,
				c0 = a0, c1 = a0, c2 = a0, e0 = a0, e1 = a0, e2 = a0;
	int			j = 0;

	for (; j + 3 < d; j += 4, w += 12 * GRU_LANES)
	{
		GRU_COLUMN(w, _mm256_broadcast_ss(h + j), a0, a1, a2);
		GRU_COLUMN(w + 3 * GRU_LANES, _mm256_broadcast_ss(h + j + 1), b0, b1, b2);
		GRU_COLUMN(w + 6 * GRU_LANES, _mm256_broadcast_ss(h + j + 2), c0, c1, c2);
		GRU_COLUMN(w + 9 * GRU_LANES, _mm256_broadcast_ss(h + j + 3), e0, e1, e2);
	}
	for (; j < d; j++, w += 3 * GRU_LANES)
		GRU_COLUMN(w, _mm256_broadcast_ss(h + j), a0, a1, a2);
	acc[0] = _mm256_add_ps(_mm256_add_ps(a0, b0), _mm256_add_ps(c0, e0));
	acc[1] = _mm256_add_ps(_mm256_add_ps(a1, b1), _mm256_add_ps(c1, e1));
	acc[2] = _mm256_add_ps(_mm256_add_ps(a2, b2), _mm256_add_ps(c2, e2));
}

/* The fused step, 8 hidden units at a time: W_h· h, gates and update without leaving registers. */
static AVX2_FMA void
gru_fused_avx2(const float *gi, const float *h_prev, const float *packed, int d, float *h_out)
{
	int			blocks = (d + GRU_LANES - 1) / GRU_LANES;
	__m256		one = _mm256_set1_ps(1.0f);

	for (int b = 0; b < blocks; b++)
	{
		int			u0 = b * GRU_LANES;
		int			nl = d - u0 < GRU_LANES ? d - u0 : GRU_LANES;
		__m256i		mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(nl), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
		__m256		acc[3] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
		__m256		hp = _mm256_setzero_ps(),
					r,
					z,
					nn,
					out;

		if (h_prev)
		{
			block_matvec8(packed + (size_t) b * d * 3 * GRU_LANES, h_prev, d, acc);
			hp = load_lanes(h_prev + u0, mask, nl);
		}
		r = sigmoid8(_mm256_add_ps(load_lanes(gi + u0, mask, nl), acc[0]));
		z = sigmoid8(_mm256_add_ps(load_lanes(gi + d + u0, mask, nl), acc[1]));
		nn = tanh8(_mm256_fmadd_ps(r, acc[2], load_lanes(gi + 2 * d + u0, mask, nl)));
		out = _mm256_fmadd_ps(z, hp, _mm256_mul_ps(_mm256_sub_ps(one, z), nn));
		if (nl == GRU_LANES)
			_mm256_storeu_ps(h_out + u0, out);
		else
			_mm256_maskstore_ps(h_out + u0, mask, out);
	}
}

#endif							/* GLINTRU_X86_SIMD */

/*
 * Scoring has its own kernel rather than sgemv: a BLAS kernel sums a row in
 * an order that depends on where the row sits in the call (blocks of 4 rows,
 * a remainder path), so a candidate list scored on its own would differ in
 * the last bits from the catalogue scan.  Here every row is summed the same
 * way wherever it is: 8 lanes, lane l taking the elements i ≡ l (mod 8) in
 * order (products rounded, then added: no FMA, which a plain-C twin without
 * FMA hardware could not match), then ((l0+l4)+(l2+l6))+((l1+l5)+(l3+l7)).
 */

/* The fixed lane reduction of one row's partial sums. */
static inline float
lanes_sum(const float *a)
{
	return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

/* The elements past the last full block of 8 go to lanes 0, 1, … as in the blocks. */
static inline float
row_tail(float *a, const float *e, const float *u, int i, int d)
{
	for (; i < d; i++)
		a[i & 7] += e[i] * u[i];
	return lanes_sum(a);
}

/* Row r of E: row i of the call, or rows[i] when a list is given. */
static inline const float *
score_row_ptr(const float *E, int d, const int32_t *rows, int64_t i)
{
	return E + (size_t) (rows ? rows[i] : i) * d;
}

/* Plain-C twin of the scoring kernel: the same lanes and order (the oracle of the SIMD one). */
static void
score_rows_c(const float *E, int d, const float *u, const int32_t *rows, int64_t n, float *scores)
{
	for (int64_t j = 0; j < n; j++)
	{
		const float *e = score_row_ptr(E, d, rows, j);
		float		a[8] = {0};
		int			i = 0;

		for (; i + 8 <= d; i += 8)
			for (int l = 0; l < 8; l++)
				a[l] += e[i + l] * u[i + l];
		scores[j] = row_tail(a, e, u, i, d);
	}
}

#ifdef GLINTRU_X86_SIMD
/* The lanes of one row after its full blocks, then its tail (AVX2, no FMA: see above). */
__attribute__((target("avx2"))) static inline float
avx2_finish(__m256 acc, const float *e, const float *u, int d8, int d)
{
	float		a[8];

	_mm256_storeu_ps(a, acc);
	return row_tail(a, e, u, d8, d);
}

/* Four rows at a time: four independent add chains hide the add latency of one row. */
__attribute__((target("avx2"))) static void
score_rows_avx2(const float *E, int d, const float *u, const int32_t *rows, int64_t n, float *scores)
{
	const int	d8 = d & ~7;
	int64_t		j = 0;

	for (; j + 4 <= n; j += 4)
	{
		const float *e0 = score_row_ptr(E, d, rows, j),
				   *e1 = score_row_ptr(E, d, rows, j + 1),
				   *e2 = score_row_ptr(E, d, rows, j + 2),
				   *e3 = score_row_ptr(E, d, rows, j + 3);
		__m256		a0 = _mm256_setzero_ps(),
					a1 = a0,
					a2 = a0,
					a3 = a0;

		for (int i = 0; i < d8; i += 8)
		{
			__m256		x = _mm256_loadu_ps(u + i);

			a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_loadu_ps(e0 + i), x));
			a1 = _mm256_add_ps(a1, _mm256_mul_ps(_mm256_loadu_ps(e1 + i), x));
			a2 = _mm256_add_ps(a2, _mm256_mul_ps(_mm256_loadu_ps(e2 + i), x));
			a3 = _mm256_add_ps(a3, _mm256_mul_ps(_mm256_loadu_ps(e3 + i), x));
		}
		scores[j] = avx2_finish(a0, e0, u, d8, d);
		scores[j + 1] = avx2_finish(a1, e1, u, d8, d);
		scores[j + 2] = avx2_finish(a2, e2, u, d8, d);
		scores[j + 3] = avx2_finish(a3, e3, u, d8, d);
	}
	for (; j < n; j++)
	{
		const float *e = score_row_ptr(E, d, rows, j);
		__m256		a = _mm256_setzero_ps();

		for (int i = 0; i < d8; i += 8)
			a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_loadu_ps(e + i), _mm256_loadu_ps(u + i)));
		scores[j] = avx2_finish(a, e, u, d8, d);
	}
}
#endif							/* GLINTRU_X86_SIMD */

/* The selected scoring kernel; plain C until glintru_use_simd upgrades it. */
static void (*score_rows_impl) (const float *, int, const float *, const int32_t *, int64_t, float *) = score_rows_c;

/* One indirect call per request: the pointer is chosen once. */
void
glintru_score_rows(const float *E, int d, const float *u, const int32_t *rows, int64_t n,
				   float *scores)
{
	score_rows_impl(E, d, u, rows, n, scores);
}

/* The selected fused step; plain C until glintru_use_simd upgrades it. */
static void (*gru_fused_impl) (const float *, const float *, const float *, int, float *) = glintru_gru_fused_c;

/* One indirect call: the pointer is chosen once, never per step. */
void
glintru_gru_fused(const float *gi, const float *h_prev, const float *packed, int d, float *h_out)
{
	gru_fused_impl(gi, h_prev, packed, d, h_out);
}

/* CPU features are tested here, once, not in the kernels' loops. */
bool
glintru_use_simd(bool on)
{
#ifdef GLINTRU_X86_SIMD
	__builtin_cpu_init();
	if (on && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
	{
		gru_fused_impl = gru_fused_avx2;
		score_rows_impl = score_rows_avx2;
		return true;
	}
#else
	(void) on;
#endif
	gru_fused_impl = glintru_gru_fused_c;
	score_rows_impl = score_rows_c;
	return false;
}

/* At load (library or program): every caller gets the best kernels without an init call. */
__attribute__((constructor)) static void
select_simd_at_load(void)
{
	glintru_use_simd(true);
}

/* Left to right, ((b + x0) + x1) + x2, in one pass when all four are present (a rebuild's slots). */
void
glintru_sum4(const float *b, const float *x0, const float *x1, const float *x2, int n, float *y)
{
	const float *terms[4] = {b, x0, x1, x2};
	bool		first = true;

	if (b && x0 && x1 && x2)
	{
		const float *restrict p = b,
				   *restrict q = x0,
				   *restrict r = x1,
				   *restrict t = x2;
		float	   *restrict out = y;

		for (int i = 0; i < n; i++)
			out[i] = ((p[i] + q[i]) + r[i]) + t[i];
		return;
	}
	for (int k = 0; k < 4; k++)
	{
		const float *restrict x = terms[k];
		float	   *restrict out = y;

		if (!x)
			continue;
		if (first)
			memcpy(out, x, sizeof(float) * n);
		else
			for (int i = 0; i < n; i++)
				out[i] += x[i];
		first = false;
	}
	if (first)
		memset(y, 0, sizeof(float) * n);
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

/* The plain-C twin, callable by tests whatever glintru_use_simd selected. */
void
glintru_score_rows_c(const float *E, int d, const float *u, const int32_t *rows, int64_t n,
					 float *scores)
{
	score_rows_c(E, d, u, rows, n, scores);
}

/* The whole catalogue through the same kernel as a candidate list: equal scores, bit for bit. */
void
glintru_score_items(const float *E, int64_t n_rows, int d, const float *u, float *scores)
{
	glintru_score_rows(E, d, u, NULL, n_rows, scores);
}
