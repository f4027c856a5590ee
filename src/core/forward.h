/*
 * forward.h — the exact GLINT-RU forward pass (SPEC §1), organised around a
 * user's incremental state (SPEC §1, "Incremental evaluation").
 *
 * A state summarises a window of m ≤ L item rows: the committed GRU state
 * h_{m-2} and its gate output G_{m-2} (slot m-2 is the last whose conv1d
 * inputs are all real items), dense1 of the last two items (a_{m-2},
 * a_{m-1}), and the window's item rows; for m = 1, h, G and a_{m-2} are zero.
 * From it the user vector costs O(d² + m·d): two GRU steps against padding,
 * the attention over the window (Σ_t (q̂·k̂_t) v_t, with k̂ and v gathered from
 * the model's per-item tables, or computed in O(m·d²) for a model too large
 * to have them) plus its padding term, and the position-wise layers.
 * Keeping the attention out of the state keeps a state small (4·d floats and
 * the window), so updating it is cheap.  A new item advances it in O(d²)
 * while the window is not full; a full window slides and is rebuilt (the GRU
 * restarts at the new window start): m-1 fused GRU steps, their inputs
 * summed from the model's input tables (or, without them, from GEMMs over
 * the window).  The from-scratch forward is build + user vector, so there is
 * one implementation of the model.
 *
 * Numeric core: no PostgreSQL headers here.
 */
#ifndef GLINTRU_FORWARD_H
#define GLINTRU_FORWARD_H

#include "model.h"

#define GLINTRU_STATE_MAGIC 0x47535432u	/* "GST2" */

/*
 * Header of a serialised state; followed by floats h[d], G[d], a_prev[d],
 * a_last[d] and int32 rows[m] (the window, oldest first).
 */
typedef struct GlintruState
{
	uint32_t	magic;
	int32_t		d;
	int32_t		n_heads;
	int32_t		max_seq_len;
	int32_t		m;				/* items in the window, 1 … max_seq_len */
	int32_t		reserved;
} GlintruState;

/* Bytes of a state holding m window items. */
size_t		glintru_state_bytes(const GlintruConfig *cfg, int32_t m);

/* The state's vectors h, G, a_prev, a_last, right after the header. */
static inline float *
glintru_state_floats(const GlintruState *s)
{
	return (float *) (s + 1);
}

/* The window's rows, after the 4·d floats (forward.c's state_layout). */
static inline int32_t *
glintru_state_rows(const GlintruState *s)
{
	return (int32_t *) (glintru_state_floats(s) + 4 * (size_t) s->d);
}

/* Does a stored blob of len bytes hold a state that fits this model? */
bool		glintru_state_valid(const GlintruModel *m, const void *blob, size_t len);

/*
 * Floats of scratch space the functions below need for this model; one
 * scratch serves all of them, one call at a time.
 */
size_t		glintru_forward_scratch_floats(const GlintruConfig *cfg);

/*
 * Build the state of a history of item rows (oldest first, each in [1, N]);
 * only the last max_seq_len rows count.  n >= 1.  out has room for
 * glintru_state_bytes(cfg, min(n, L)).
 */
void		glintru_state_build(const GlintruModel *m, const int32_t *rows, int64_t n,
								GlintruState *out, float *scratch);

/*
 * Append one item row: out = state of (in's window + row).  O(d²) while the
 * window is not full, a rebuild over the slid window once it is.  out has
 * room for glintru_state_bytes(cfg, min(in->m + 1, L)); it may not alias in.
 */
void		glintru_state_push(const GlintruModel *m, const GlintruState *in, int32_t row,
							   GlintruState *out, float *scratch);

/* u = the user vector of a state, O(d² + m·d) (see above). */
void		glintru_state_user_vector(const GlintruModel *m, const GlintruState *s,
									  float *u, float *scratch);

/* u = the user vector of a history (build + user vector). n >= 1. */
void		glintru_forward_user_vector(const GlintruModel *m, const int32_t *rows, int64_t n,
										float *u, float *scratch);

#endif							/* GLINTRU_FORWARD_H */
