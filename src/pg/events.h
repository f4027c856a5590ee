/*
 * events.h — the application's interactions table: its user, item and
 * order columns, comparing and serialising order values, and reading the
 * users' histories from it.
 *
 * Above the catalogue (the attachment says which columns; reads run as the
 * table's owner), below the state rows and everything that keeps them.
 */
#ifndef GLINTRU_EVENTS_H
#define GLINTRU_EVENTS_H

#include "postgres.h"

#include "fmgr.h"
#include "utils/rel.h"

#include "catalog.h"
#include "model.h"

/* How to compare and store values of the order column. */
typedef struct GlintruOrderKey
{
	Oid			typid;
	int16		typlen;
	bool		typbyval;
	int16		intlen;			/* 2, 4 or 8: compare as that signed integer;
								 * 0: call cmp */
	FmgrInfo	cmp;
	Oid			collation;
	Oid			send;
	Oid			recv;
	Oid			ioparam;
} GlintruOrderKey;

/* An attached interactions table: where its columns are and what they hold. */
typedef struct GlintruTable
{
	Oid			relid;
	bool		deferred;		/* attached with refresh => 'deferred' */
	char	   *qualname;
	const char *user_q,			/* quoted column names, for queries */
			   *item_q,
			   *order_q;
	AttrNumber	user_att,
				item_att,
				order_att;
	Oid			user_type,
				item_type;
	GlintruOrderKey order;
} GlintruTable;

extern void glintru_table_init(Relation rel, const GlintruAttachment *a, GlintruTable *t);
extern void glintru_table_open(const GlintruAttachment *a, LOCKMODE mode, GlintruTable *t);
extern int64 glintru_integer_value(Datum d, Oid type);

extern int	glintru_order_cmp(const GlintruOrderKey *k, Datum a, bool anull, Datum b, bool bnull);
extern Datum glintru_order_to_bytea(const GlintruOrderKey *k, Datum v, bool isnull, bool *out_null);
extern Datum glintru_order_from_bytea(const GlintruOrderKey *k, bytea *b);

/* Called once per user by glintru_for_each_user() with the user's known item rows. */
typedef void (*GlintruUserCallback) (void *arg, int64 user_id, const int32 *rows, int64 n,
									 Datum last_order, bool last_null);

extern int64 glintru_for_each_user(const GlintruTable *t, const GlintruModel *m, bool have_user,
								   int64 only_user, bool fresh_snapshot, GlintruUserCallback cb,
								   void *arg);

#endif							/* GLINTRU_EVENTS_H */
