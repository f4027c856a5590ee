/*
 * rank.c — turning scores into a ranking: top-k over the catalogue by a
 * bounded heap (ties to the lower row), and the popularity ranking served to
 * users without a state.
 *
 * Numeric core: no PostgreSQL headers here.
 */
#include "rank.h"

/* a beats b: higher score, or equal score and lower row */
static inline int
better(GlintruScored a, GlintruScored b)
{
	return a.score > b.score || (a.score == b.score && a.row < b.row);
}

/* min-heap on "better": heap[0] is the worst of the kept k */
static void
sift_down(GlintruScored *heap, int n, int i)
{
	for (;;)
	{
		int			l = 2 * i + 1,
					r = l + 1,
					w = i;
		GlintruScored tmp;

		if (l < n && better(heap[w], heap[l]))
			w = l;
		if (r < n && better(heap[w], heap[r]))
			w = r;
		if (w == i)
			return;
		tmp = heap[i];
		heap[i] = heap[w];
		heap[w] = tmp;
		i = w;
	}
}

/* A bounded heap of k: O(n log k) over the catalogue, without copying or sorting the scores. */
int
glintru_top_k(const float *scores, int64_t n_rows, const uint8_t *exclude, int k,
			  GlintruScored *out)
{
	int			n = 0;

	if (k <= 0)
		return 0;
	for (int64_t j = 1; j < n_rows; j++)
	{
		GlintruScored c = {(int32_t) j, scores[j]};

		if (exclude && exclude[j])
			continue;
		if (n < k)
		{
			/* sift up */
			int			i = n++;

			out[i] = c;
			while (i > 0)
			{
				int			p = (i - 1) / 2;
				GlintruScored tmp;

				if (!better(out[p], out[i]))
					break;
				tmp = out[p];
				out[p] = out[i];
				out[i] = tmp;
				i = p;
			}
		}
		else if (better(c, out[0]))
		{
			out[0] = c;
			sift_down(out, n, 0);
		}
	}
	/* heap sort: repeatedly move the worst to the end → best first */
	for (int end = n - 1; end > 0; end--)
	{
		GlintruScored tmp = out[0];

		out[0] = out[end];
		out[end] = tmp;
		sift_down(out, end, 0);
	}
	return n;
}

/* Read off the order computed at load, so that a cold-start request costs O(k). */
int
glintru_popular_top_k(const GlintruModel *m, int k, GlintruScored *out)
{
	const int32_t *order = glintru_popular_rows(m);
	const float *pop = glintru_popularity(m);
	int			n = 0;

	if (order == NULL)
		return 0;
	for (int64_t i = 0; i < m->config.n_rows - 1 && n < k; i++)
	{
		out[n].row = order[i];
		out[n].score = pop[order[i]];
		n++;
	}
	return n;
}
