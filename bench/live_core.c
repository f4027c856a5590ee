/*
 * live_core.c — the numeric work of the live-state trigger and of
 * glintru_recommend, outside the server (bench/live.sh prints it beside the
 * in-database numbers, so the SQL/storage overhead is the difference).
 *
 *   live_core MODEL SECONDS
 *
 * Random known item rows (fixed seed).  Prints one "RESULT name us" line per
 * measurement, microseconds per call, each the median of 5 batch means:
 *   build200  glintru_state_build over a full window (L = 200): what a
 *             window slide costs (the GRU restarts at the new window start)
 *   build100  glintru_state_build of a 100-item history
 *   push      glintru_state_advance by one item onto a 100-item window (short history)
 *   uvec      glintru_state_user_vector of a full window (serving)
 *   score     sgemv over the catalogue + top-10 (serving)
 * the advances and refreshes of a full window (L = 200):
 *   adv_slide   glintru_state_advance by one item, eager (the ring slot + a rebuild)
 *   adv_defer   the same deferred (the ring slot only, the state left stale)
 *   refresh     glintru_state_refresh of that stale state (a rebuild)
 *   uvec_stale  glintru_state_user_vector of it (a rebuild in scratch + the user vector)
 * the same four on the GEMM path, the model's input tables switched off
 * (what a model too large for them runs), with "RATIO name x" lines:
 *   build200_gemm build100_gemm push_gemm uvec_gemm
 * and the pieces of build200:
 *   gru_step      one glintru_gru_fused (the selected kernel, AVX2+FMA if
 *                 the CPU has it); build200 runs L-1
 *   gru_step_c    its plain-C twin
 *   gru_step_old  glintru_gru_step (sgemv 3d x d, then the gates)
 *   gru_gemv      that sgemv alone
 *   elu           glintru_elu_l2_heads over L x d keys (models without item tables)
 *   gemm          one L x d x d glintru_linear (the GEMM path's rebuild runs
 *                 conv L x 3d x d and W_ih L x d x 3d)
 * and "STATEDIFF name bytes" lines: how many bytes of the stored state a
 * HOT update's WAL record carries (log_heap_update logs the new tuple minus
 * its longest common prefix and suffix with the old one, each counted only
 * if >= 3 bytes), between consecutive states:
 *   push_mean / push_max      eager pushes from 1 to 100 items (a short history)
 *   slide_mean / slide_max    2L eager one-item slides of a full window
 *   defer_mean / defer_max    2L deferred one-item slides
 *   refresh                   a full window 7 deferred slides on, refreshed
 * The state's share of the record; the tuple's other changed bytes (its
 * last_order) and the record's headers come on top.
 *
 * Build (done by bench/live.sh):
 *   cc -O2 -std=c11 -D_GNU_SOURCE -I<openblas-serial include> -Isrc/core bench/live_core.c \
 *      src/core/model.c src/core/kernels.c src/core/forward.c src/core/safetensors.c src/core/rank.c -lopenblas -lm
 */
#include "forward.h"
#include "rank.h"
#include "kernels.h"
#include "model.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCHES 5

/* Monotonic seconds. */
static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* qsort order of doubles, for the median. */
static int
dcmp(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : (x > y);
}

static double last_us;			/* the latest TIME_US result */

/* median of BATCHES batch means, microseconds per call */
#define TIME_US(name, seconds, ...) \
	do { \
		double bm_[BATCHES]; \
		__VA_ARGS__; \
		for (int b_ = 0; b_ < BATCHES; b_++) { \
			long it_ = 0; \
			double t0_ = now(), t1_; \
			do { __VA_ARGS__; it_++; t1_ = now(); } while (t1_ - t0_ < (seconds) / BATCHES); \
			bm_[b_] = (t1_ - t0_) * 1e6 / it_; \
		} \
		qsort(bm_, BATCHES, sizeof(double), dcmp); \
		last_us = bm_[BATCHES / 2]; \
		printf("RESULT %s %.2f\n", name, last_us); \
		fflush(stdout); \
	} while (0)

static volatile float sink;

/* The four serving calls timed on both paths, in the order of tabled[] / gemm[] in main. */
static const char *const serving[4] = {"build200", "build100", "push", "uvec"};

/* "name" + suffix, in a static buffer (TIME_US prints it before the next call). */
static const char *
name_of(const char *name, const char *suffix)
{
	static char buf[64];

	snprintf(buf, sizeof buf, "%s%s", name, suffix);
	return buf;
}

/* Bytes of new between the longest common prefix and suffix with old, as log_heap_update counts them. */
static size_t
logged_bytes(const void *old, const void *new, size_t len)
{
	const uint8_t *o = old,
			   *n = new;
	size_t		prefix = 0,
				suffix = 0;

	while (prefix < len && o[prefix] == n[prefix])
		prefix++;
	if (prefix < 3)
		prefix = 0;
	while (suffix < len - prefix && o[len - suffix - 1] == n[len - suffix - 1])
		suffix++;
	if (suffix < 3)
		suffix = 0;
	return len - prefix - suffix;
}

/* Print one STATEDIFF pair (mean, max) over a run of consecutive states. */
static void
print_diffs(const char *name, double sum, size_t worst, int n)
{
	printf("STATEDIFF %s_mean %.0f\nSTATEDIFF %s_max %zu\n", name, sum / n, name, worst);
}

/* The STATEDIFF lines (see the top): consecutive stored states of a short history and of slides. */
static void
state_diffs(const GlintruModel *m, const int32_t *rows, float *scratch)
{
	const int	L = m->config.max_seq_len;
	const size_t sb = glintru_state_bytes(&m->config);
	GlintruState *a = malloc(sb),
			   *b = malloc(sb),
			   *t;
	const int	n_short = L > 100 ? 100 : L;
	double		sum = 0;
	size_t		worst = 0;

	glintru_state_build(m, rows, 1, a, scratch);
	for (int p = 1; p < n_short; p++, t = a, a = b, b = t)
	{
		glintru_state_advance(m, a, rows + p, 1, false, b, scratch);
		sum += (double) logged_bytes(a, b, sb);
		worst = logged_bytes(a, b, sb) > worst ? logged_bytes(a, b, sb) : worst;
	}
	print_diffs("push", sum, worst, n_short - 1);
	for (int defer = 0; defer < 2; defer++)
	{
		sum = 0;
		worst = 0;
		glintru_state_build(m, rows, L, a, scratch);
		for (int p = L; p < 3 * L; p++, t = a, a = b, b = t)
		{
			glintru_state_advance(m, a, rows + p % (2 * L), 1, defer, b, scratch);
			sum += (double) logged_bytes(a, b, sb);
			worst = logged_bytes(a, b, sb) > worst ? logged_bytes(a, b, sb) : worst;
		}
		print_diffs(defer ? "defer" : "slide", sum, worst, 2 * L);
	}
	glintru_state_build(m, rows, L, a, scratch);
	glintru_state_advance(m, a, rows + L, 7, true, b, scratch);
	glintru_state_refresh(m, b, a, scratch);
	printf("STATEDIFF refresh %zu\n", logged_bytes(b, a, sb));
	free(a);
	free(b);
}

/* Load the model, time each piece, print RESULT / RATIO / STATEDIFF lines. */
int
main(int argc, char **argv)
{
	FILE	   *f;
	long		n;
	uint8_t    *buf;
	char		err[512];
	GlintruModel *m;
	const GlintruConfig *c;
	int			L,
				d;
	double		secs;
	float	   *scratch,
			   *u,
			   *scores,
			   *X,
			   *K,
			   *gh,
			   *h,
			   *ho;
	GlintruState *a,
			   *b;
	int32_t    *rows;
	uint8_t    *seen;
	GlintruScored best[10];
	double		tabled[4],		/* build200, build100, push, uvec: tabled, then GEMM path */
				gemm[4];
	unsigned	seed = 20250;

	if (argc != 3)
	{
		fprintf(stderr, "usage: live_core MODEL SECONDS\n");
		return 2;
	}
	secs = atof(argv[2]) / 20;	/* twenty measurements */
	if (!(f = fopen(argv[1], "rb")))
	{
		perror(argv[1]);
		return 1;
	}
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t) n);
	if (fread(buf, 1, (size_t) n, f) != (size_t) n)
		return 1;
	fclose(f);
	if (!(m = glintru_safetensors_load(buf, (size_t) n, err, sizeof err)))
	{
		fprintf(stderr, "%s: %s\n", argv[1], err);
		return 1;
	}
	c = &m->config;
	L = c->max_seq_len;
	d = c->d;
	scratch = malloc(sizeof(float) * glintru_forward_scratch_floats(c));
	a = malloc(glintru_state_bytes(c));
	b = malloc(glintru_state_bytes(c));
	rows = malloc(sizeof(int32_t) * 2 * L);
	u = malloc(sizeof(float) * d);
	scores = malloc(sizeof(float) * c->n_rows);
	seen = calloc(c->n_rows, 1);
	X = malloc(sizeof(float) * L * d);
	K = malloc(sizeof(float) * L * 3 * d);
	gh = malloc(sizeof(float) * 3 * d);
	h = malloc(sizeof(float) * d);
	ho = malloc(sizeof(float) * d);
	for (int i = 0; i < 2 * L; i++)
		rows[i] = 1 + (int32_t) (rand_r(&seed) % (unsigned) (c->n_rows - 1));
	for (int i = 0; i < L * d; i++)
		X[i] = (float) ((int) (rand_r(&seed) % 4001) - 2000) / 1000.0f;
	for (int i = 0; i < d; i++)
		h[i] = X[i] / 2;
	printf("INFO items %lld d %d heads %d L %d state_bytes(L) %zu input_tables %s fused_step %s\n",
		   (long long) c->n_rows - 1, d, c->n_heads, L, glintru_state_bytes(c),
		   m->input_tables_off ? "yes" : "no", glintru_use_simd(true) ? "avx2+fma" : "plain C");

	/* the four serving calls, then again on the GEMM path: this model without its input tables */
	for (int mode = 0; mode < 2; mode++)
	{
		const char *sfx = mode ? "_gemm" : "";
		uint64_t	saved = m->input_tables_off;
		double	   *us = mode ? gemm : tabled;

		if (mode)
			m->input_tables_off = 0;
		TIME_US(name_of("build200", sfx), secs, glintru_state_build(m, rows, L, a, scratch));
		us[0] = last_us;
		TIME_US(name_of("build100", sfx), secs, glintru_state_build(m, rows, 100, a, scratch));
		us[1] = last_us;
		glintru_state_build(m, rows, 100, a, scratch);
		TIME_US(name_of("push", sfx), secs, glintru_state_advance(m, a, rows + 150, 1, false, b, scratch));
		us[2] = last_us;
		glintru_state_build(m, rows, L, a, scratch);
		TIME_US(name_of("uvec", sfx), secs, glintru_state_user_vector(m, a, u, scratch));
		us[3] = last_us;
		m->input_tables_off = saved;
		if (mode)
			break;
		for (int i = glintru_state_window(m, a, (int32_t *) X) - 1; i >= 0; i--)
			seen[((int32_t *) X)[i]] = 1;
		TIME_US("score", secs,
				glintru_score_items(glintru_param(m, GT_ITEM_EMBEDDING), c->n_rows, d, u, scores);
				glintru_top_k(scores, c->n_rows, seen, 10, best));
	}
	for (int i = 0; i < 4; i++)
		printf("RATIO %s %.2f\n", serving[i], gemm[i] / tabled[i]);
	/* a full window: advanced eagerly, deferred, refreshed; the user vector of a stale one */
	glintru_state_build(m, rows, L, a, scratch);
	TIME_US("adv_slide", secs, glintru_state_advance(m, a, rows + L, 1, false, b, scratch));
	TIME_US("adv_defer", secs, glintru_state_advance(m, a, rows + L, 1, true, b, scratch));
	TIME_US("refresh", secs, glintru_state_refresh(m, b, a, scratch));
	TIME_US("uvec_stale", secs, glintru_state_user_vector(m, b, u, scratch));
	state_diffs(m, rows, scratch);
	/* pieces of build200 */
	TIME_US("gru_step", secs, glintru_gru_fused(K, h, glintru_whh_packed(m), d, ho));
	TIME_US("gru_step_c", secs, glintru_gru_fused_c(K, h, glintru_whh_packed(m), d, ho));
	TIME_US("gru_step_old", secs, glintru_gru_step(K, h, glintru_param(m, GT_GRU_W_HH), d, ho, gh));
	TIME_US("gru_gemv", secs, glintru_linear(h, 1, d, glintru_param(m, GT_GRU_W_HH), NULL, 3 * d, gh));
	TIME_US("elu", secs, memcpy(K, X, sizeof(float) * L * d); glintru_elu_l2_heads(K, L, d, c->n_heads));
	TIME_US("gemm", secs,
			glintru_linear(X, L, d, glintru_param(m, GT_ATT_K_W), glintru_param(m, GT_ATT_K_B), d, K));
	sink = u[0] + ho[0] + K[0];
	return 0;
}
