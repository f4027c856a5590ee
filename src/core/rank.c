/*
 * rank.c — turning scores into a ranking: top-k over the catalogue by a
 * bounded heap (ties to the lower row), and the popularity ranking served to
 * users without a state.
 *
 * Numeric core: no PostgreSQL headers here.
 */
#include "rank.h"

#include <stdlib.h>

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

/* Offer c to the kept best *n of at most k (a min-heap on "better"). */
static inline void
heap_offer(GlintruScored *heap, int *n, int k, GlintruScored c)
{
	if (*n < k)
	{
		/* sift up */
		int			i = (*n)++;

		heap[i] = c;
		while (i > 0)
		{
			int			p = (i - 1) / 2;
			GlintruScored tmp;

			if (!better(heap[p], heap[i]))
				break;
			tmp = heap[p];
			heap[p] = heap[i];
			heap[i] = tmp;
			i = p;
		}
	}
	else if (better(c, heap[0]))
	{
		heap[0] = c;
		sift_down(heap, *n, 0);
	}
}

/* Heap sort in place: repeatedly move the worst to the end → best first. */
static int
heap_finish(GlintruScored *heap, int n)
{
	for (int end = n - 1; end > 0; end--)
	{
		GlintruScored tmp = heap[0];

		heap[0] = heap[end];
		heap[end] = tmp;
		sift_down(heap, end, 0);
	}
	return n;
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
		if (!(exclude && exclude[j]))
			heap_offer(out, &n, k, (GlintruScored) {(int32_t) j, scores[j]});
	return heap_finish(out, n);
}

/* The same heap over a list: the ranking of a list is the catalogue's ranking restricted to it. */
int
glintru_top_k_rows(const float *scores, const int32_t *rows, int64_t n_list,
				   const uint8_t *exclude, int k, GlintruScored *out)
{
	int			n = 0;

	if (k <= 0)
		return 0;
	for (int64_t i = 0; i < n_list; i++)
		if (rows[i] > 0 && !(exclude && exclude[rows[i]]))
			heap_offer(out, &n, k, (GlintruScored) {rows[i], scores[i]});
	return heap_finish(out, n);
}

/* qsort order of row numbers. */
static int
row_cmp(const void *a, const void *b)
{
	int32_t		x = *(const int32_t *) a,
				y = *(const int32_t *) b;

	return (x > y) - (x < y);
}

/*
 * Sorting first makes duplicates adjacent and later subtractions a merge.
 * A list that is a sizeable part of the catalogue (a large exclude set) is
 * sorted through a bitmap of the rows instead: O(n + n_rows / 8), where
 * qsort's O(n log n) comparisons through a function pointer dominated.
 */
int64_t
glintru_rows_sort_unique(int32_t *rows, int64_t n, int64_t n_rows)
{
	int64_t		w = 0;

	if (n <= 0)
		return 0;
	if (n_rows > 0 && n >= n_rows / 32)
	{
		uint64_t   *bits = calloc((size_t) (n_rows + 63) / 64, sizeof(uint64_t));

		if (bits != NULL)
		{
			for (int64_t i = 0; i < n; i++)
				bits[rows[i] >> 6] |= (uint64_t) 1 << (rows[i] & 63);
			for (int64_t b = 0; b < (n_rows + 63) / 64; b++)
				for (uint64_t x = bits[b]; x != 0; x &= x - 1)
					rows[w++] = (int32_t) (b * 64 + __builtin_ctzll(x));
			free(bits);
			return w;
		}
	}
	qsort(rows, (size_t) n, sizeof(int32_t), row_cmp);
	for (int64_t i = 0; i < n; i++)
		if (w == 0 || rows[i] != rows[w - 1])
			rows[w++] = rows[i];
	return w;
}

/* One merge pass over two sorted lists: O(n + n_minus). */
int64_t
glintru_rows_subtract(int32_t *rows, int64_t n, const int32_t *minus, int64_t n_minus)
{
	int64_t		w = 0,
				j = 0;

	for (int64_t i = 0; i < n; i++)
	{
		while (j < n_minus && minus[j] < rows[i])
			j++;
		if (j < n_minus && minus[j] == rows[i])
			continue;
		rows[w++] = rows[i];
	}
	return w;
}

/* Binary search of a sorted list. */
static bool
rows_contain(const int32_t *rows, int64_t n, int32_t row)
{
	int64_t		lo = 0,
				hi = n;

	while (lo < hi)
	{
		int64_t		mid = lo + (hi - lo) / 2;

		if (rows[mid] < row)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && rows[lo] == row;
}

/* Read off the order computed at load, so that a cold-start request costs O(k). */
int
glintru_popular_top_k(const GlintruModel *m, int k, GlintruScored *out)
{
	return glintru_popular_top_k_excluding(m, k, NULL, 0, out);
}

/* The popularity order, skipping excluded rows: O((k + n_excl) log n_excl), not a catalogue scan. */
int
glintru_popular_top_k_excluding(const GlintruModel *m, int k, const int32_t *excl, int64_t n_excl,
								GlintruScored *out)
{
	const int32_t *order = glintru_popular_rows(m);
	const float *pop = glintru_popularity(m);
	int			n = 0;

	if (order == NULL)
		return 0;
	for (int64_t i = 0; i < m->config.n_rows - 1 && n < k; i++)
	{
		if (n_excl > 0 && rows_contain(excl, n_excl, order[i]))
			continue;
		out[n].row = order[i];
		out[n].score = pop[order[i]];
		n++;
	}
	return n;
}
