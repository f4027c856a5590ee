/*
 * forward.h — the exact GLINT-RU forward pass (SPEC §1), organised around a
 * user's incremental state (SPEC §1, "Incremental evaluation").
 *
 * A state summarises a window of m ≤ L item rows by the rows themselves and
 * the committed GRU state h_{m-2} (slot m-2 is the last whose conv1d inputs
 * are all real items; h is zero for m = 1).  From it the user vector costs
 * O(d² + m·d): the gate output G_{m-2} = gate(c_{m-2}) ⊙ proj(h_{m-2}) and
 * dense1 of the last items are recomputed (table rows and a few GEMVs), then
 * two GRU steps against padding, the attention over the window (Σ_t (q̂·k̂_t)
 * v_t, k̂ and v gathered from the model's per-item tables, or computed in
 * O(m·d²) for a model too large to have them) plus its padding term, and the
 * position-wise layers.  A new item advances a state in O(d²) while the
 * window is not full; a full window slides and is rebuilt (the GRU restarts
 * at the new window start: m-1 fused GRU steps, their inputs summed from the
 * model's input tables or, without them, from GEMMs over the window) — or,
 * deferred, only records the new rows and marks the state stale (h is then
 * not current; a refresh or a user vector rebuilds it).  The from-scratch
 * forward is the same rebuild + user vector, so there is one implementation
 * of the model.
 *
 * Serialised format v3 ("GST3"), one FIXED size per model
 * (glintru_state_bytes), native byte order:
 *
 *   int32 slots[L]         the window's item rows, a ring (see below)
 *   float h[d]             h_{m-2}; not current when the state is stale
 *   GlintruStateTrailer    magic, d, n_heads, max_seq_len, m, head, flags
 *
 * Why so: every insert into an attached table rewrites the user's state
 * row, and PostgreSQL's WAL record of a HOT update logs only the bytes of the
 * new tuple between the longest common prefix and the longest common suffix
 * with the old one.  So nothing moves and the length never changes (a fixed
 * size keeps the bytea's length word and every offset still), and what
 * changes on every event — h and the trailer's m / head — sits at the end,
 * after the bytes that change rarely or once.  The rows form a ring of L
 * slots whose ring index i is stored at slots[L-1-i], i.e. mirrored, so the
 * window grows from the end of the slot area towards its start: while
 * m < L, item j (0 = oldest) is at ring index j, head = 0, and a new item
 * writes ring index m, just before the items already there; the logged
 * range of a push is then that slot, the m older rows, h and the trailer
 * (4(m+1) + 4d + 28 bytes), which for the many users with short histories
 * is much less than the unused slots would be if the window grew the other
 * way.  Once full, head = ring index of the oldest item and a slide
 * overwrites that ONE slot and advances head: the logged range is that slot
 * up to the trailer, L/2 slots on average plus h.  Unused slots are zero.
 * A stale write leaves the old h bytes as they were (they are only logged
 * because they lie between the changed slot and the trailer).  Blobs of
 * any other format are rejected by glintru_state_valid, and the glue then
 * rebuilds the state from the interactions table — except release 0.1.0's
 * (below), which glintru_state_from_v2 converts exactly.
 *
 * Format v2 ("GST2", release 0.1.0; read, never written): a header
 * {magic "GST2", d, n_heads, max_seq_len, m, reserved} (int32s), then
 * floats h[d], G[d], a_prev[d], a_last[d] and int32 rows[m], oldest first.
 * h is the same h_{m-2}; G and dense1 are recomputed now, so rows and h are
 * all a v3 state needs.  Blobs from a table may be unaligned: it is read
 * with memcpy.
 *
 * Numeric core: no PostgreSQL headers here.
 */
#ifndef GLINTRU_FORWARD_H
#define GLINTRU_FORWARD_H

#include "model.h"

#define GLINTRU_STATE_MAGIC 0x47535433u	/* "GST3" */

/* flags: the rows are current but h is not (a deferred advance) */
#define GLINTRU_STATE_STALE 0x1u

/* A serialised state: glintru_state_bytes() bytes laid out as above; opaque. */
typedef struct GlintruState GlintruState;

/* The last bytes of every state: the unchanging fields first, then what an event changes. */
typedef struct GlintruStateTrailer
{
	uint32_t	magic;			/* GLINTRU_STATE_MAGIC */
	int32_t		d;
	int32_t		n_heads;
	int32_t		max_seq_len;	/* L */
	int32_t		m;				/* items in the window, 1 … L */
	int32_t		head;			/* ring index of the oldest item: 0 while m < L, in [0, L) */
	uint32_t	flags;			/* GLINTRU_STATE_STALE, or 0 */
} GlintruStateTrailer;

/* Bytes of every state of a model of this configuration. */
size_t		glintru_state_bytes(const GlintruConfig *cfg);

/* Does a stored blob of len bytes hold a state that fits this model? */
bool		glintru_state_valid(const GlintruModel *m, const void *blob, size_t len);

/* the magic of a release 0.1.0 state (format v2) */
#define GLINTRU_STATE_V2_MAGIC 0x47535432u	/* "GST2" */

/*
 * Is blob (len bytes, any alignment) a release 0.1.0 state (GST2) that fits
 * this model (magic, d, n_heads, L, 1 ≤ m ≤ L, exact length, rows in
 * [1, n_rows))?  If so, out = the same state in this format (fresh: the rows
 * where glintru_state_build puts them, h copied) and true; else false (out
 * then undefined).
 */
bool		glintru_state_from_v2(const GlintruModel *m, const void *blob, size_t len, GlintruState *out);

/* Copy the window's rows oldest first into rows_out (NULL: only count them); returns m. */
int32_t		glintru_state_window(const GlintruModel *m, const GlintruState *s, int32_t *rows_out);

/* Is h not current (rows recorded by a deferred advance, or a stale build)? */
bool		glintru_state_stale(const GlintruModel *m, const GlintruState *s);

/* The stored h[d] (h_{m-2}; meaningless while the state is stale). */
const float *glintru_state_h(const GlintruModel *m, const GlintruState *s);

/*
 * Floats of scratch space the functions below need for this model; one
 * scratch serves all of them, one call at a time.
 */
size_t		glintru_forward_scratch_floats(const GlintruConfig *cfg);

/*
 * Build the fresh state of a history of item rows (oldest first, each in
 * [1, N]); only the last max_seq_len rows count.  n >= 1.
 */
void		glintru_state_build(const GlintruModel *m, const int32_t *rows, int64_t n,
								GlintruState *out, float *scratch);

/*
 * The stale state of a history: its window, no model computation.  h is
 * copied from prev when given (so its bytes stay unchanged; prev may be
 * out), else zero.  n >= 1.
 */
void		glintru_state_build_stale(const GlintruModel *m, const int32_t *rows, int64_t n,
									  const GlintruState *prev, GlintruState *out);

/*
 * out = the state after nk >= 0 new known rows (oldest first).  While the
 * window has room and in is fresh, each row is a push, O(d²).  Once the
 * window would slide, or if in is stale: the new rows are written into the
 * ring (only their slots and the trailer change), then defer leaves out
 * stale (h's bytes untouched, no model computation), else h is rebuilt over
 * the final window (one rebuild, however many rows).  out may not alias in.
 */
void		glintru_state_advance(const GlintruModel *m, const GlintruState *in, const int32_t *rows,
								  int64_t nk, bool defer, GlintruState *out, float *scratch);

/* out = in made fresh: h rebuilt over its window if stale (slots unchanged); out may be in. */
void		glintru_state_refresh(const GlintruModel *m, const GlintruState *in, GlintruState *out,
								  float *scratch);

/*
 * u = the user vector of a state, O(d² + m·d) (see above); a stale state
 * first rebuilds h in scratch, O(m·d²).
 */
void		glintru_state_user_vector(const GlintruModel *m, const GlintruState *s,
									  float *u, float *scratch);

/* u = the user vector of a history (rebuild + user vector). n >= 1. */
void		glintru_forward_user_vector(const GlintruModel *m, const int32_t *rows, int64_t n,
										float *u, float *scratch);

#endif							/* GLINTRU_FORWARD_H */
