/*
 * metrics.c — ranking rules of the evaluation protocols (SPEC §4) and the
 * HR/NDCG/MRR accumulators; see metrics.h.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "util.h"

#define N_NEG 100

struct GlintruRanker
{
	GlintruProtocol protocol;
	int64_t		n_rows;
	double	   *cdf;			/* pop100: cumulative popularity over rows */
	uint8_t    *mark;			/* excluded rows of the current user */
	int32_t    *neg;
	uint64_t	seed;
};

/* The tools' and SQL's spelling of a protocol, so that reports name it the same way. */
bool
glintru_protocol_parse(const char *s, GlintruProtocol *out)
{
	if (strcmp(s, "full") == 0)
		*out = GLINTRU_PROTOCOL_FULL;
	else if (strcmp(s, "pop100") == 0)
		*out = GLINTRU_PROTOCOL_POP100;
	else if (strcmp(s, "uni100") == 0)
		*out = GLINTRU_PROTOCOL_UNI100;
	else
		return false;
	return true;
}

/* The inverse of glintru_protocol_parse, for reports. */
const char *
glintru_protocol_name(GlintruProtocol p)
{
	switch (p)
	{
		case GLINTRU_PROTOCOL_FULL:
			return "full";
		case GLINTRU_PROTOCOL_POP100:
			return "pop100";
		case GLINTRU_PROTOCOL_UNI100:
			return "uni100";
	}
	return "?";
}

/* k travels with the sums, so that every add applies the same cut-off. */
void
glintru_metrics_init(GlintruMetrics *m, int k)
{
	memset(m, 0, sizeof(*m));
	m->k = k;
}

/* A miss still counts as a ranked user: means are over all users, as SPEC §4 reports. */
void
glintru_metrics_add(GlintruMetrics *m, int64_t rank)
{
	m->n++;
	if (rank < 0 || rank >= m->k)
		return;
	m->hr += 1;
	m->ndcg += 1.0 / log2((double) rank + 2.0);
	m->mrr += 1.0 / ((double) rank + 1.0);
}

/* Per-thread accumulators merge before finishing: sums combine, means would not. */
void
glintru_metrics_merge(GlintruMetrics *m, const GlintruMetrics *o)
{
	m->n += o->n;
	m->hr += o->hr;
	m->ndcg += o->ndcg;
	m->mrr += o->mrr;
}

/* Sums become means only once, after every merge. */
void
glintru_metrics_finish(GlintruMetrics *m)
{
	if (m->n > 0)
	{
		m->hr /= (double) m->n;
		m->ndcg /= (double) m->n;
		m->mrr /= (double) m->n;
	}
}

/* pop100 samples by a CDF over rows, built once rather than per user. */
GlintruRanker *
glintru_ranker_new(GlintruProtocol protocol, int64_t n_rows, const float *popularity, uint64_t seed)
{
	GlintruRanker *r = calloc(1, sizeof(GlintruRanker));

	if (!r)
		return NULL;
	r->protocol = protocol;
	r->n_rows = n_rows;
	r->seed = seed;
	r->mark = calloc((size_t) n_rows, 1);
	r->neg = malloc(sizeof(int32_t) * N_NEG);
	if (!r->mark || !r->neg)
	{
		glintru_ranker_free(r);
		return NULL;
	}
	if (protocol == GLINTRU_PROTOCOL_POP100)
	{
		r->cdf = malloc(sizeof(double) * (size_t) n_rows);
		if (!r->cdf)
		{
			glintru_ranker_free(r);
			return NULL;
		}
		double		acc = 0;

		for (int64_t j = 0; j < n_rows; j++)
		{
			/* row 0 is never a candidate; negative or missing counts weigh 0 */
			double		p = (j == 0 || !popularity || !(popularity[j] > 0)) ? 0 : popularity[j];

			acc += p;
			r->cdf[j] = acc;
		}
	}
	return r;
}

/* Accepts a half-built ranker, so that glintru_ranker_new can unwind through it. */
void
glintru_ranker_free(GlintruRanker *r)
{
	if (!r)
		return;
	free(r->cdf);
	free(r->mark);
	free(r->neg);
	free(r);
}

/* Draw up to N_NEG distinct unmarked rows; marks them as it goes. */
static int
draw_negatives(GlintruRanker *r, uint64_t user_key)
{
	uint64_t	st = r->seed ^ (user_key * 0xD1B54A32D192ED03ull);
	int			n = 0;
	int64_t		N1 = r->n_rows;
	double		total = r->cdf ? r->cdf[N1 - 1] : 0;
	long		tries = 0;

	if (r->cdf && total <= 0)
		return 0;
	/* rejection sampling; bounded, then a deterministic scan fills the rest */
	while (n < N_NEG && tries < 200L * N_NEG)
	{
		int64_t		j;

		tries++;
		if (r->cdf)
		{
			double		u = (double) (glintru_splitmix64(&st) >> 11) * (1.0 / 9007199254740992.0) * total;
			int64_t		lo = 1,
						hi = N1 - 1;

			while (lo < hi)
			{
				int64_t		mid = (lo + hi) / 2;

				if (r->cdf[mid] > u)
					hi = mid;
				else
					lo = mid + 1;
			}
			j = lo;
			if (!(r->cdf[j] - r->cdf[j - 1] > 0))
				continue;
		}
		else
		{
			if (N1 <= 1)
				break;
			j = 1 + (int64_t) (glintru_splitmix64(&st) % (uint64_t) (N1 - 1));
		}
		if (r->mark[j])
			continue;
		r->mark[j] = 2;
		r->neg[n++] = (int32_t) j;
	}
	for (int64_t j = 1; n < N_NEG && j < N1; j++)
	{
		if (r->mark[j])
			continue;
		if (r->cdf && !(r->cdf[j] - r->cdf[j - 1] > 0))
			continue;
		r->mark[j] = 2;
		r->neg[n++] = (int32_t) j;
	}
	return n;
}

/* Marks are set and cleared per call, so that one ranker serves every user without a reset. */
int64_t
glintru_ranker_rank(GlintruRanker *r, const float *scores, int32_t target,
					const int32_t *hist, int32_t n_hist, uint64_t user_key)
{
	int64_t		rank = 0;
	float		ts;

	if (target <= 0 || target >= r->n_rows)
		return -1;				/* unknown target: a miss */
	ts = scores[target];
	for (int32_t i = 0; i < n_hist; i++)
		if (hist[i] > 0 && hist[i] < r->n_rows)
			r->mark[hist[i]] = 1;
	r->mark[0] = 1;
	r->mark[target] = 1;

	if (r->protocol == GLINTRU_PROTOCOL_FULL)
	{
		for (int64_t j = 1; j < r->n_rows; j++)
			if (!r->mark[j] && scores[j] > ts)
				rank++;
	}
	else
	{
		int			n = draw_negatives(r, user_key);

		for (int i = 0; i < n; i++)
		{
			if (scores[r->neg[i]] > ts)
				rank++;
			r->mark[r->neg[i]] = 0;
		}
	}
	for (int32_t i = 0; i < n_hist; i++)
		if (hist[i] > 0 && hist[i] < r->n_rows)
			r->mark[hist[i]] = 0;
	r->mark[target] = 0;
	r->mark[0] = 0;
	if (isnan(ts))
		return -1;
	return rank;
}

/* The baseline goes through the same ranker as the model, so that the numbers compare. */
void
glintru_popularity_metrics(const GlintruSplit *s, GlintruProtocol protocol, bool test, int k,
						   uint64_t seed, GlintruMetrics *out)
{
	GlintruRanker *r = glintru_ranker_new(protocol, s->n_rows, s->popularity, seed);

	glintru_metrics_init(out, k);
	if (!r)
		return;
	for (int64_t u = 0; u < s->n_users; u++)
	{
		const int32_t *h = s->rows + s->off[u];
		int32_t		n = glintru_split_len(s, u);
		int32_t		nh = test ? n - 1 : n - 2;

		glintru_metrics_add(out, glintru_ranker_rank(r, s->popularity, h[nh], h, nh, (uint64_t) u));
	}
	glintru_ranker_free(r);
	glintru_metrics_finish(out);
}
