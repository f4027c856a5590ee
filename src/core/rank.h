/*
 * rank.h — rankings: the k best rows of a score vector or of a candidate
 * list, row-list set operations for filters, and the popularity ranking a
 * user without a state is served.
 *
 * Numeric core: no PostgreSQL headers here.
 */
#ifndef GLINTRU_RANK_H
#define GLINTRU_RANK_H

#include "model.h"

/* One recommended item: its row and score. */
typedef struct GlintruScored
{
	int32_t		row;
	float		score;
} GlintruScored;

/*
 * The k best rows of scores[1 .. n_rows-1] (row 0, the padding item, is never
 * recommended), best first, ties to the lower row, skipping rows for which
 * exclude[row] is set (exclude may be NULL).  Returns how many were written.
 */
int			glintru_top_k(const float *scores, int64_t n_rows, const uint8_t *exclude,
						  int k, GlintruScored *out);

/*
 * The k best of a list of rows, rows[i] scored scores[i]: the same order as
 * glintru_top_k (best first, ties to the lower row, exclude may be NULL), so
 * ranking a list equals ranking the catalogue restricted to it.  Rows <= 0
 * (padding, unknown) are skipped; the list should hold no duplicates.
 */
int			glintru_top_k_rows(const float *scores, const int32_t *rows, int64_t n,
							   const uint8_t *exclude, int k, GlintruScored *out);

/*
 * Sort rows (each in [0, n_rows)) ascending and drop duplicates in place;
 * returns the new count.  n_rows 0: no bound known (always qsort).
 */
int64_t		glintru_rows_sort_unique(int32_t *rows, int64_t n, int64_t n_rows);

/*
 * Remove from rows (sorted, unique) every row of minus (sorted, unique), in
 * place; returns the new count.
 */
int64_t		glintru_rows_subtract(int32_t *rows, int64_t n, const int32_t *minus,
								  int64_t n_minus);

/*
 * The k most popular rows of a model that carries item_popularity, scored by
 * popularity, most popular first (ties to the lower row); 0 rows without it.
 */
int			glintru_popular_top_k(const GlintruModel *m, int k, GlintruScored *out);

/* The same, skipping the rows of excl (sorted, unique; NULL with n_excl = 0: none). */
int			glintru_popular_top_k_excluding(const GlintruModel *m, int k, const int32_t *excl,
											int64_t n_excl, GlintruScored *out);

#endif							/* GLINTRU_RANK_H */
