/*
 * score_bench.c — the numeric core outside the server, for the issue-2
 * benchmark (bench/recommend_history.sh).
 *
 *   score_bench gen OUT N_ITEMS D HEADS L SEED
 *       write a synthetic model (random weights, N_ITEMS+1 rows) as a
 *       safetensors file with the core's own writer.
 *   score_bench hist MODEL SEED LEN...
 *       one line per LEN: LEN random known external item ids (uniform over
 *       rows 1..N, with replacement), space separated.
 *   score_bench forward MODEL HISTFILE SECONDS
 *       per history line: forward pass (user vector) alone, and forward +
 *       scoring + top-10 (seen items excluded, as the SQL default), ms/call.
 *
 * Every time is the median of 5 batch means (see TIME_LOOP).
 *   score_bench score MODEL SECONDS
 *       scoring + top-10 over the whole catalogue (the 1M-item case), split
 *       into GEMV and top-k, beside a plain read of the item table (the
 *       memory-bandwidth bound) and a blocked GEMV+top-k variant.
 *
 * Build (done by the benchmark script):
 *   cc -O2 -std=c11 -D_GNU_SOURCE -I/usr/include/x86_64-linux-gnu/openblas-serial -Isrc/core \
 *      bench/score_bench.c src/core/model.c src/core/kernels.c src/core/forward.c src/core/safetensors.c src/core/rank.c src/core/util.c \
 *      -L/usr/lib/x86_64-linux-gnu/openblas-serial -Wl,-rpath,/usr/lib/x86_64-linux-gnu/openblas-serial \
 *      -lopenblas -lm -o build/score_bench
 */
#include "forward.h"
#include "rank.h"
#include "kernels.h"
#include "model.h"
#include "safetensors.h"
#include "util.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng_state = 88172645463325252ull;

static uint64_t
rng_next(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

static float
rng_uniform(float lo, float hi)
{
	return lo + (hi - lo) * (float) ((rng_next() >> 40) * (1.0 / 16777216.0));
}

static GlintruModel *
load_model(const char *path)
{
	size_t		len;
	uint8_t    *buf = glintru_read_file(path, &len);
	char		err[512];
	GlintruModel *m;

	if (!buf)
	{
		perror(path);
		exit(1);
	}
	m = glintru_safetensors_load(buf, len, err, sizeof err);

	if (!m)
	{
		fprintf(stderr, "%s: %s\n", path, err);
		exit(1);
	}
	free(buf);
	return m;
}

/* ---- gen ---- */
static int
cmd_gen(int argc, char **argv)
{
	GlintruConfig cfg;
	GlintruModel *m;
	uint64_t	bytes;
	char		err[256];
	size_t		len;
	uint8_t    *file;
	FILE	   *f;

	if (argc != 8)
		return fprintf(stderr, "usage: gen OUT N_ITEMS D HEADS L SEED\n"), 2;
	cfg.n_rows = atoll(argv[3]) + 1;
	cfg.d = atoi(argv[4]);
	cfg.n_heads = atoi(argv[5]);
	cfg.max_seq_len = atoi(argv[6]);
	cfg.layer_norm_eps = 1e-12f;
	rng_state ^= (uint64_t) atoll(argv[7]) * 0x9E3779B97F4A7C15ull;
	bytes = glintru_model_bytes(&cfg, false);
	m = glintru_model_init(malloc(bytes), &cfg, false);
	for (int t = 0; t < GT_COUNT; t++)
	{
		const GlintruTensorSlot *s = &m->layout.slot[t];
		float	   *p = glintru_param(m, (GlintruTensor) t);
		const char *name = glintru_tensor_names[t];

		if (t == GT_MIX_LOGITS)
		{
			p[0] = 0.4f;
			p[1] = 0.6f;
		}
		else if (strstr(name, "LayerNorm.weight"))
			for (uint64_t i = 0; i < s->numel; i++)
				p[i] = rng_uniform(0.9f, 1.1f);
		else if (t == GT_ITEM_EMBEDDING)
			for (uint64_t i = 0; i < s->numel; i++)
				p[i] = rng_uniform(-0.1f, 0.1f);
		else if (s->ndim >= 2)
		{
			float		b = sqrtf(6.0f / (float) (s->shape[0] + s->shape[1]));

			for (uint64_t i = 0; i < s->numel; i++)
				p[i] = rng_uniform(-b, b);
		}
		else
			for (uint64_t i = 0; i < s->numel; i++)
				p[i] = rng_uniform(-0.05f, 0.05f);
	}
	if (!glintru_model_finish(m, err, sizeof err))
		return fprintf(stderr, "%s\n", err), 1;
	file = glintru_safetensors_write(m, &len);
	if (!file)
		return fprintf(stderr, "out of memory\n"), 1;
	f = fopen(argv[2], "wb");
	if (!f || fwrite(file, 1, len, f) != len || fclose(f) != 0)
		return perror(argv[2]), 1;
	printf("wrote %s: %lld items, d %d, %zu bytes\n", argv[2], (long long) (cfg.n_rows - 1),
		   cfg.d, len);
	return 0;
}

/* ---- hist ---- */
static int
cmd_hist(int argc, char **argv)
{
	GlintruModel *m;
	const int64_t *ids;

	if (argc < 5)
		return fprintf(stderr, "usage: hist MODEL SEED LEN...\n"), 2;
	m = load_model(argv[2]);
	ids = glintru_item_ids(m);
	rng_state ^= (uint64_t) atoll(argv[3]) * 0x9E3779B97F4A7C15ull;
	for (int a = 4; a < argc; a++)
	{
		int			n = atoi(argv[a]);

		for (int i = 0; i < n; i++)
		{
			int64_t		row = 1 + (int64_t) (rng_next() % (uint64_t) (m->config.n_rows - 1));

			printf(i ? " %lld" : "%lld", (long long) ids[row]);
		}
		printf("\n");
	}
	return 0;
}

/* ---- forward ---- */

/*
 * ms per call of the statement: BATCHES batches of about seconds/BATCHES each
 * (after one warm-up call); result_ms = the median of the batch means, which a
 * noisy, shared machine disturbs less than one long mean.
 */
#define BATCHES 5

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

static double
median_batches(double *v)
{
	qsort(v, BATCHES, sizeof(double), cmp_double);
	return v[BATCHES / 2];
}

#define TIME_LOOP(seconds, result_ms, ...) \
	do { \
		double t0_, t1_, bm_[BATCHES]; \
		__VA_ARGS__; \
		for (int b_ = 0; b_ < BATCHES; b_++) { \
			long it_ = 0; \
			t0_ = now(); \
			do { __VA_ARGS__; it_++; t1_ = now(); } while (t1_ - t0_ < (seconds) / BATCHES); \
			bm_[b_] = (t1_ - t0_) * 1e3 / it_; \
		} \
		(result_ms) = median_batches(bm_); \
	} while (0)

static int
cmd_forward(int argc, char **argv)
{
	GlintruModel *m;
	FILE	   *f;
	double		secs;
	char	   *line = NULL;
	size_t		cap = 0;
	float	   *scratch,
			   *u,
			   *scores;
	uint8_t    *seen;
	GlintruScored best[10];

	if (argc != 5)
		return fprintf(stderr, "usage: forward MODEL HISTFILE SECONDS\n"), 2;
	m = load_model(argv[2]);
	secs = atof(argv[4]);
	f = fopen(argv[3], "r");
	if (!f)
		return perror(argv[3]), 1;
	scratch = malloc(sizeof(float) * glintru_forward_scratch_floats(&m->config));
	u = malloc(sizeof(float) * m->config.d);
	scores = malloc(sizeof(float) * m->config.n_rows);
	seen = malloc(m->config.n_rows);
	while (getline(&line, &cap, f) > 0)
	{
		int32_t    *rows = malloc(sizeof(int32_t) * (strlen(line) / 2 + 1));
		int64_t		n = 0;
		char	   *p = line,
				   *end;
		double		t_fwd,
					t_all;

		for (;;)
		{
			long long	id = strtoll(p, &end, 10);
			int64_t		r;

			if (end == p)
				break;
			p = end;
			r = glintru_item_row(m, id);
			if (r > 0)
				rows[n++] = (int32_t) r;
		}
		if (n == 0)
			continue;
		TIME_LOOP(secs / 2, t_fwd, glintru_forward_user_vector(m, rows, n, u, scratch));
		TIME_LOOP(secs / 2, t_all, {
			memset(seen, 0, m->config.n_rows);
			for (int64_t i = 0; i < n; i++)
				seen[rows[i]] = 1;
			glintru_forward_user_vector(m, rows, n, u, scratch);
			glintru_score_items(glintru_param(m, GT_ITEM_EMBEDDING), m->config.n_rows,
								m->config.d, u, scores);
			glintru_top_k(scores, m->config.n_rows, seen, 10, best);
		});
		printf("RESULT n=%lld fwd_ms=%.4f all_ms=%.4f\n", (long long) n, t_fwd, t_all);
		free(rows);
	}
	fclose(f);
	return 0;
}

/* ---- score: the 1M-item case ---- */

/* plain read of n floats, four vector accumulators: what the memory system allows */
static float
read_all(const float *E, size_t n)
{
#ifdef __SSE2__
	__m128		a0 = _mm_setzero_ps(),
				a1 = _mm_setzero_ps(),
				a2 = _mm_setzero_ps(),
				a3 = _mm_setzero_ps();
	float		out[4];

	for (size_t i = 0; i + 16 <= n; i += 16)
	{
		a0 = _mm_add_ps(a0, _mm_loadu_ps(E + i));
		a1 = _mm_add_ps(a1, _mm_loadu_ps(E + i + 4));
		a2 = _mm_add_ps(a2, _mm_loadu_ps(E + i + 8));
		a3 = _mm_add_ps(a3, _mm_loadu_ps(E + i + 12));
	}
	_mm_storeu_ps(out, _mm_add_ps(_mm_add_ps(a0, a1), _mm_add_ps(a2, a3)));
	return out[0] + out[1] + out[2] + out[3];
#else
	float		acc = 0;

	for (size_t i = 0; i < n; i++)
		acc += E[i];
	return acc;
#endif
}

/* heap helpers for the blocked variant (same order as forward.c) */
static inline int
better(GlintruScored a, GlintruScored b)
{
	return a.score > b.score || (a.score == b.score && a.row < b.row);
}

static void
sift_down(GlintruScored *h, int n, int i)
{
	for (;;)
	{
		int			l = 2 * i + 1,
					r = l + 1,
					w = i;
		GlintruScored t;

		if (l < n && better(h[w], h[l]))
			w = l;
		if (r < n && better(h[w], h[r]))
			w = r;
		if (w == i)
			return;
		t = h[i];
		h[i] = h[w];
		h[w] = t;
		i = w;
	}
}

/*
 * Proposal: GEMV in blocks of B rows into a cache-resident buffer, each block
 * fed straight to the bounded heap (a candidate is compared with the heap's
 * worst before anything else).  No n_rows-sized scores array, so no 4 MB
 * allocation / page faults / second pass per call.
 */
static int
blocked_top_k(const float *E, int64_t n_rows, int d, const float *u, const uint8_t *exclude,
			  int k, GlintruScored *out, float *buf, int B)
{
	int			n = 0;

	for (int64_t r0 = 0; r0 < n_rows; r0 += B)
	{
		int			nr = (int) (n_rows - r0 < B ? n_rows - r0 : B);

		cblas_sgemv(CblasRowMajor, CblasNoTrans, nr, d, 1.0f, E + r0 * d, d, u, 1, 0.0f, buf, 1);
		for (int i = 0; i < nr; i++)
		{
			int64_t		j = r0 + i;
			GlintruScored c = {(int32_t) j, buf[i]};

			if (j == 0 || (exclude && exclude[j]))
				continue;
			if (n < k)
			{
				int			p = n++;

				out[p] = c;
				while (p > 0)
				{
					int			q = (p - 1) / 2;
					GlintruScored t;

					if (!better(out[q], out[p]))
						break;
					t = out[q];
					out[q] = out[p];
					out[p] = t;
					p = q;
				}
			}
			else if (c.score >= out[0].score && better(c, out[0]))
			{
				out[0] = c;
				sift_down(out, n, 0);
			}
		}
	}
	for (int end = n - 1; end > 0; end--)
	{
		GlintruScored t = out[0];

		out[0] = out[end];
		out[end] = t;
		sift_down(out, end, 0);
	}
	return n;
}

/* the variants of the 1M-item measurement, timed interleaved (see cmd_score) */
enum
{
	V_READ, V_GEMV, V_TOPK, V_BOTH, V_ALLOC, V_BLOCKED, N_VARIANTS
};

static int
cmd_score(int argc, char **argv)
{
	GlintruModel *m;
	double		secs,
				t_fwd,
				ms[N_VARIANTS];
	double		rounds_ms[N_VARIANTS][BATCHES];
	int64_t		N1;
	int			d;
	const float *E;
	float	   *u,
			   *scores,
			   *buf,
			   *scratch;
	volatile float sink = 0;
	GlintruScored best[10],
				best2[10];
	int32_t		hist[50];
	double		gb;

	if (argc != 4)
		return fprintf(stderr, "usage: score MODEL SECONDS\n"), 2;
	m = load_model(argv[2]);
	secs = atof(argv[3]);
	N1 = m->config.n_rows;
	d = m->config.d;
	E = glintru_param(m, GT_ITEM_EMBEDDING);
	gb = (double) N1 * d * sizeof(float) / 1e9;
	u = malloc(sizeof(float) * d);
	scores = malloc(sizeof(float) * N1);
	buf = malloc(sizeof(float) * 4096);
	scratch = malloc(sizeof(float) * glintru_forward_scratch_floats(&m->config));
	for (int i = 0; i < 50; i++)
		hist[i] = 1 + (int32_t) (rng_next() % (uint64_t) (N1 - 1));
	TIME_LOOP(secs / 4, t_fwd, glintru_forward_user_vector(m, hist, 50, u, scratch));

	/*
	 * BATCHES rounds; in each, every variant runs for secs/BATCHES/N_VARIANTS
	 * seconds, so that all of them see the same background load; per variant
	 * the median of its round means.
	 */
	glintru_score_items(E, N1, d, u, scores);
	for (int r = 0; r < BATCHES; r++)
		for (int v = 0; v < N_VARIANTS; v++)
		{
			double		t0 = now(),
						t1;
			long		it = 0;

			do
			{
				switch (v)
				{
					case V_READ:
						sink += read_all(E, (size_t) N1 * d);
						break;
					case V_GEMV:
						glintru_score_items(E, N1, d, u, scores);
						break;
					case V_TOPK:
						glintru_top_k(scores, N1, NULL, 10, best);
						break;
					case V_BOTH:
						glintru_score_items(E, N1, d, u, scores);
						glintru_top_k(scores, N1, NULL, 10, best);
						break;
					case V_ALLOC:
						{
							/* as recommend.c does it: a fresh scores array and seen map per call */
							float	   *sc = malloc(sizeof(float) * N1);
							uint8_t    *seen = calloc(N1, 1);

							for (int i = 0; i < 50; i++)
								seen[hist[i]] = 1;
							glintru_score_items(E, N1, d, u, sc);
							glintru_top_k(sc, N1, seen, 10, best2);
							free(seen);
							free(sc);
						}
						break;
					case V_BLOCKED:
						blocked_top_k(E, N1, d, u, NULL, 10, best2, buf, 4096);
						break;
				}
				it++;
				t1 = now();
			} while (t1 - t0 < secs / BATCHES / N_VARIANTS);
			rounds_ms[v][r] = (t1 - t0) * 1e3 / it;
		}
	for (int v = 0; v < N_VARIANTS; v++)
		ms[v] = median_batches(rounds_ms[v]);
	glintru_score_items(E, N1, d, u, scores);
	glintru_top_k(scores, N1, NULL, 10, best);
	blocked_top_k(E, N1, d, u, NULL, 10, best2, buf, 4096);
	/* the blocked variant groups the GEMV differently: with some BLAS kernels its
	 * scores differ in the last bits, which may swap near-ties; reported, not fatal */
	for (int i = 0; i < 10; i++)
		if (best[i].row != best2[i].row || best[i].score != best2[i].score)
		{
			printf("note: blocked variant differs from sgemv + top-10 at rank %d (row %lld %.9g vs %lld %.9g)\n",
				   i, (long long) best[i].row, best[i].score, (long long) best2[i].row, best2[i].score);
			break;
		}
	printf("catalogue %lld rows x d %d = %.1f MB of item table; variants timed interleaved\n",
		   (long long) N1, d, gb * 1e3);
	printf("read item table (bound)   %8.3f ms  (%.1f GB/s)\n", ms[V_READ], gb / (ms[V_READ] / 1e3));
	printf("sgemv scores              %8.3f ms  (%.1f GB/s)\n", ms[V_GEMV], gb / (ms[V_GEMV] / 1e3));
	printf("top-10 heap over scores   %8.3f ms\n", ms[V_TOPK]);
	printf("sgemv + top-10            %8.3f ms\n", ms[V_BOTH]);
	printf("  + per-call malloc/seen  %8.3f ms  (what recommend.c does)\n", ms[V_ALLOC]);
	printf("blocked sgemv+top-10      %8.3f ms  (4096-row blocks, no scores array)\n", ms[V_BLOCKED]);
	printf("forward pass, 50 items    %8.3f ms\n", t_fwd);
	printf("RESULT read_ms=%.3f gemv_ms=%.3f topk_ms=%.3f gemv_topk_ms=%.3f alloc_ms=%.3f blocked_ms=%.3f\n",
		   ms[V_READ], ms[V_GEMV], ms[V_TOPK], ms[V_BOTH], ms[V_ALLOC], ms[V_BLOCKED]);
	(void) sink;
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "gen") == 0)
		return cmd_gen(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "hist") == 0)
		return cmd_hist(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "forward") == 0)
		return cmd_forward(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "score") == 0)
		return cmd_score(argc, argv);
	fprintf(stderr, "usage: score_bench gen|hist|forward|score ...\n");
	return 2;
}
