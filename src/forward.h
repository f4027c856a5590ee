/*
 * forward.h — the exact GLINT-RU forward pass (SPEC §1) for one window of
 * item rows, and top-k selection over the catalogue.
 *
 * Numeric core: no PostgreSQL headers here.
 */
#ifndef GLINTRU_FORWARD_H
#define GLINTRU_FORWARD_H

#include "model.h"

/* Floats of scratch space glintru_forward_user_vector() needs for this model. */
size_t		glintru_forward_scratch_floats(const GlintruConfig *cfg);

/*
 * u = the user vector of a history of item rows (oldest first, every row in
 * [1, N]).  Only the last max_seq_len rows are used.  n must be >= 1.
 */
void		glintru_forward_user_vector(const GlintruModel *m, const int32_t *rows, int64_t n,
								float *u, float *scratch);

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

#endif							/* GLINTRU_FORWARD_H */
