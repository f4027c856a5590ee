/*
 * data.h — interaction data for training and evaluation (numeric core, no
 * PostgreSQL headers): the tab-separated reader of the shared datasets, the
 * k-core item filter, the item vocabulary and the leave-one-out split of
 * SPEC §4 (last item test, the one before validation, the rest training).
 */
#ifndef GLINTRU_DATA_H
#define GLINTRU_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* Histories in external ids, one per user, in time order. */
typedef struct GlintruInteractions
{
	int64_t		n_users;
	int64_t	   *user_ids;		/* [n_users], ascending */
	int64_t	   *off;			/* [n_users + 1] into items */
	int64_t	   *items;			/* external item ids */
} GlintruInteractions;

/*
 * Read a TSV file with a header line naming the columns user_id, item_id and
 * an order column (seq, ts or timestamp); other columns are ignored.  A path
 * ending in .xz is read through "xz -dc".  Rows are ordered by user, then by
 * the order column (ties keep file order).  On error returns false with a
 * message naming the file and line.
 */
bool		glintru_read_interactions(const char *path, GlintruInteractions *out,
									  char *err, size_t errlen);

/* Build from arrays of (user, item, order) triples (tests, SQL glue). */
bool		glintru_interactions_from_triples(const int64_t *users, const int64_t *items,
											  const int64_t *order, int64_t n,
											  GlintruInteractions *out,
											  char *err, size_t errlen);

void		glintru_interactions_free(GlintruInteractions *x);

/*
 * Drop every interaction of items with fewer than min_count interactions
 * (one pass, as SASRec's 5-core ML-1M); min_count <= 1 keeps all.  Returns
 * the number of interactions dropped.
 */
int64_t		glintru_filter_items(GlintruInteractions *x, int64_t min_count);

/*
 * The filter of a warm start: as glintru_filter_items, but items model
 * known knows are never dropped (they keep their rows even when rare now);
 * known = NULL filters every item.
 */
int64_t		glintru_filter_new_items(GlintruInteractions *x, int64_t min_count,
									 const GlintruModel *known);

/*
 * Histories as item-table rows with the leave-one-out split.  Only users
 * with at least 3 interactions are kept (training history of >= 1 item, a
 * validation and a test item).  User u's full history is rows[off[u] ..
 * off[u+1]); its last entry is the test target, the one before it the
 * validation target, the rest (train_len(u) items) the training history.
 */
typedef struct GlintruSplit
{
	int64_t		n_rows;			/* N + 1, row 0 = padding */
	int64_t	   *item_ids;		/* [n_rows] external id of each row (row 0: 0) */
	float	   *popularity;		/* [n_rows] training-history counts */
	int64_t		n_users;
	int64_t	   *user_ids;
	int64_t	   *off;			/* [n_users + 1] */
	int32_t	   *rows;
	int64_t		n_dropped_users;	/* users with < 3 interactions */
} GlintruSplit;

static inline int32_t
glintru_split_len(const GlintruSplit *s, int64_t u)
{
	return (int32_t) (s->off[u + 1] - s->off[u]);
}

/*
 * Vocabulary from the data: rows 1..N are the distinct item ids in
 * ascending order.
 */
bool		glintru_split_build(const GlintruInteractions *x, GlintruSplit *out,
								char *err, size_t errlen);

/*
 * Vocabulary of a model: items the model does not know are dropped from the
 * histories before splitting (this reproduces the item filter the model was
 * trained with).
 */
bool		glintru_split_for_model(const GlintruInteractions *x, const GlintruModel *m,
									GlintruSplit *out, char *err, size_t errlen);

/*
 * Vocabulary of a warm start from model m: m's rows 0..N in m's order
 * (every item it knows, also one the data no longer has), then the items
 * of the data that m does not know, appended in ascending id order.
 */
bool		glintru_split_extend(const GlintruInteractions *x, const GlintruModel *m,
								 GlintruSplit *out, char *err, size_t errlen);

void		glintru_split_free(GlintruSplit *s);

#endif							/* GLINTRU_DATA_H */
