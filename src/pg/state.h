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

#include "nodes/execnodes.h"
#include "utils/rel.h"

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
			   *b;				/* two states (glintru_state_bytes each) */
} GlintruWork;

extern void glintru_work_init(GlintruWork *w, const GlintruModel *m);

/* glintru.user_state opened for one statement's writes (glintru_state_open). */
typedef struct GlintruStateRel
{
	Relation	rel;
	Relation	pkey;			/* the (attachment_id, user_id) index, one of indexes */
	int			n_indexes;
	Relation   *indexes;
	IndexInfo **index_info;
	TupleTableSlot *locked;		/* a row as found and locked */
	TupleTableSlot *out;		/* a row to write */
} GlintruStateRel;

/* A user's state row, read under its row lock. */
typedef struct GlintruLockedState
{
	bool		exists;
	ItemPointerData tid;		/* of the locked version, if exists */
	bool		last_null;
	Datum		last_order;
	GlintruState *state;		/* NULL if none or unusable */
} GlintruLockedState;

extern GlintruPin glintru_state_model(const GlintruAttachment *a);

extern GlintruState *glintru_state_of_blob(const GlintruModel *m, const bytea *b);
extern bytea *glintru_state_fetch(int32 attachment_id, int64 user_id);
extern int64 *glintru_state_users(int32 attachment_id, bool have_user, int64 only_user, uint64 *n_out);

extern void glintru_state_check_release(void);
extern void glintru_state_open(GlintruStateRel *sr);
extern void glintru_state_close(GlintruStateRel *sr);
extern void glintru_state_lock(GlintruStateRel *sr, const GlintruTable *t, const GlintruModel *m,
							   int32 att_id, int64 user_id, GlintruLockedState *ls);
extern bool glintru_state_write(GlintruStateRel *sr, const GlintruTable *t, int32 att_id, int64 user_id,
								const GlintruLockedState *ls, const GlintruState *s,
								const GlintruConfig *cfg, Datum last_order, bool last_null);
extern void glintru_state_delete_all(int32 att_id);

extern void glintru_state_compute(const GlintruTable *t, GlintruWork *w, const int32 *rows, int64 n,
								  const GlintruState *prev);
extern void glintru_state_rebuild_user(GlintruStateRel *sr, const GlintruTable *t, GlintruWork *w,
									   int32 att_id, int64 user_id);
extern int64 glintru_state_backfill(const GlintruTable *t, const GlintruModel *m, int32 att_id);

#endif							/* GLINTRU_STATE_H */
