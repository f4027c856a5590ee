/*
 * rank.h — rankings: the k best rows of a score vector, and the popularity
 * ranking a user without a state is served.
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
 * The k most popular rows of a model that carries item_popularity, scored by
 * popularity, most popular first (ties to the lower row); 0 rows without it.
 */
int			glintru_popular_top_k(const GlintruModel *m, int k, GlintruScored *out);

#endif							/* GLINTRU_RANK_H */
