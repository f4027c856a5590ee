/*
 * state.h — rows of glintru.user_state: one user's incremental model state
 * per attachment.  Reading (for serving), locking, writing and deleting
 * them, computing them from the interactions table, and pinning the model
 * version they were built with.
 *
 * Above the catalogue, the cache and the interactions table; below the
 * trigger, attach/verify and serving.
 */
#ifndef GLINTRU_STATE_H
#define GLINTRU_STATE_H

#include "postgres.h"

#include "cache.h"
#include "catalog.h"
#include "events.h"
#include "forward.h"

/* Working memory for one model's forward pass. */
typedef struct GlintruWork
{
	const GlintruModel *m;
	float	   *scratch;
	GlintruState *a,
			   *b;				/* two full-size states to ping-pong */
} GlintruWork;

extern void glintru_work_init(GlintruWork *w, const GlintruModel *m);

/* A user's state row, read under its row lock. */
typedef struct GlintruLockedState
{
	bool		exists;
	bool		last_null;
	Datum		last_order;
	GlintruState *state;		/* NULL if none or unusable */
} GlintruLockedState;

extern GlintruPin glintru_state_model(const GlintruAttachment *a);

extern bytea *glintru_state_fetch(int32 attachment_id, int64 user_id);
extern int64 *glintru_state_users(int32 attachment_id, bool have_user, int64 only_user, uint64 *n_out);

extern void glintru_state_prepare(void);
extern void glintru_state_lock(const GlintruTable *t, const GlintruModel *m, int32 att_id, int64 user_id,
							   GlintruLockedState *ls);
extern bool glintru_state_write(const GlintruTable *t, int32 att_id, int64 user_id, bool exists,
								const GlintruState *s, const GlintruConfig *cfg,
								Datum last_order, bool last_null);
extern void glintru_state_delete_all(int32 att_id);

extern void glintru_state_rebuild_user(const GlintruTable *t, GlintruWork *w, int32 att_id, int64 user_id);
extern int64 glintru_state_backfill(const GlintruTable *t, const GlintruModel *m, int32 att_id);

#endif							/* GLINTRU_STATE_H */
