/*
 * verify.c — glintru_verify_state(): compares every stored state of an
 * attached table (or one user's) with a from-scratch computation over the
 * table, under the statement's snapshot, and reports the users that differ.
 * On a Citus coordinator a distributed table is verified shard by shard on
 * the shards' nodes.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"

#include <math.h>

#include "cache.h"
#include "catalog.h"
#include "citus.h"
#include "events.h"
#include "state.h"

/* What a verification needs per user, and what it found. */
typedef struct Verify
{
	GlintruWork *w;
	int32		att_id;
	ReturnSetInfo *rsinfo;
	HTAB	   *seen;			/* users with a known item in the table */
	const GlintruTable *t;
	bool		have_user;		/* only_user alone, or every user */
	int64		only_user;
} Verify;

/* One result row: a user and what is wrong with its state. */
static void
report(Verify *v, int64 user_id, const char *problem)
{
	Datum		values[2] = {Int64GetDatum(user_id), CStringGetTextDatum(problem)};
	bool		nulls[2] = {false, false};

	tuplestore_putvalues(v->rsinfo->setResult, v->rsinfo->setDesc, values, nulls);
}

/* NULL if two states hold the same window (oldest first), else what differs. */
static char *
window_difference(const GlintruModel *m, const GlintruState *stored, const GlintruState *built)
{
	int32	   *ws = palloc(sizeof(int32) * m->config.max_seq_len),
			   *wt = palloc(sizeof(int32) * m->config.max_seq_len);
	int32		ns = glintru_state_window(m, stored, ws),
				nt = glintru_state_window(m, built, wt);
	char	   *problem = NULL;

	if (ns != nt || memcmp(ws, wt, sizeof(int32) * ns) != 0)
		problem = psprintf("window differs: stored %d items, table %d", ns, nt);
	pfree(ws);
	pfree(wt);
	return problem;
}

/* glintru_for_each_user() callback: compare the user's stored state with its rows' state. */
static void
verify_user(void *arg, int64 user_id, const int32 *rows, int64 n, Datum last, bool last_null)
{
	Verify	   *v = arg;
	const GlintruModel *m = v->w->m;
	bytea	   *stored = glintru_state_fetch(v->att_id, user_id);
	float	   *u1 = palloc(sizeof(float) * m->config.d),
			   *u2 = palloc(sizeof(float) * m->config.d);
	GlintruState *s;
	char	   *problem;
	double		worst = 0;

	(void) last;
	(void) last_null;
	hash_search(v->seen, &user_id, HASH_ENTER, NULL);
	if (stored == NULL)
	{
		report(v, user_id, "missing state");
		return;
	}
	if ((s = glintru_state_of_blob(m, stored)) == NULL)
	{
		report(v, user_id, "unreadable state");
		return;
	}
	glintru_state_build(m, rows, n, v->w->a, v->w->scratch);
	if ((problem = window_difference(m, s, v->w->a)) != NULL)
	{
		report(v, user_id, problem);
		return;
	}
	glintru_state_user_vector(m, s, u1, v->w->scratch);
	glintru_state_user_vector(m, v->w->a, u2, v->w->scratch);
	for (int i = 0; i < m->config.d; i++)
		worst = Max(worst, fabs((double) u1[i] - u2[i]));
	if (worst > 1e-4)
		report(v, user_id, psprintf("user vector differs by %.3g", worst));
}

/* Check the users of the table, then report states of users the table does not have. */
static void
verify_pinned(const GlintruModel *m, void *arg)
{
	Verify	   *v = arg;
	GlintruWork w;
	HASHCTL		ctl = {0};
	int64	   *users;
	uint64		n;

	glintru_work_init(&w, m);
	v->w = &w;
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(int64);
	ctl.hcxt = CurrentMemoryContext;
	v->seen = hash_create("glintru verify", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	glintru_spi_connect();
	glintru_for_each_user(v->t, m, v->have_user, v->only_user, false, verify_user, v);
	glintru_spi_finish();

	/* states of users that have no known item in the table */
	users = glintru_state_users(v->att_id, v->have_user, v->only_user, &n);
	for (uint64 i = 0; i < n; i++)
		if (!hash_search(v->seen, &users[i], HASH_FIND, NULL))
			report(v, users[i], "state without interactions");
}

/* Verify one attachment (one user's state when have_user) into the result of fcinfo. */
static void
verify_attachment(FunctionCallInfo fcinfo, GlintruAttachment a, bool have_user, int64 only_user)
{
	GlintruTable t;
	Verify		v;

	glintru_table_open(&a, AccessShareLock, &t);
	v.att_id = a.id;
	v.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	v.t = &t;
	v.have_user = have_user;
	v.only_user = only_user;
	glintru_cache_with_pin(glintru_state_model(&a), verify_pinned, &v);
}

/* A distributed table on the coordinator: every shard (or the user's) verified on its node. */
static void
verify_distributed(ReturnSetInfo *rsinfo, Oid logical_relid, bool have_user, int64 only_user)
{
	List	   *shards = glintru_citus_shards(logical_relid);
	int			only_shard = have_user ? glintru_citus_shard_of(shards, only_user) : -1;
	ListCell   *lc;

	foreach(lc, shards)
	{
		Oid			types[3] = {INT8OID, REGCLASSOID, INT8OID};
		Datum		args[3];

		if (only_shard >= 0 && foreach_current_index(lc) != only_shard)
			continue;
		args[0] = Int64GetDatum(have_user ? only_user : glintru_citus_route_value(lfirst(lc)));
		args[1] = ObjectIdGetDatum(logical_relid);
		args[2] = Int64GetDatum(only_user);
		glintru_citus_forward("SELECT user_id, problem FROM glintru.citus_verify_state($1, $2, $3)",
							  3, types, args, have_user ? NULL : "  n", rsinfo, "glintru_verify_state");
	}
}

/* SQL glintru_verify_state(table, user_id): the users whose state is not what the table gives. */
PG_FUNCTION_INFO_V1(glintru_verify_state);
Datum
glintru_verify_state(PG_FUNCTION_ARGS)
{
	GlintruAttachment a;
	bool		have_user = !PG_ARGISNULL(1);
	int64		only_user = have_user ? PG_GETARG_INT64(1) : 0;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("interactions must not be null")));
	a = glintru_attachment_resolve(true, PG_GETARG_OID(0));
	InitMaterializedSRF(fcinfo, 0);
	if (GLINTRU_ATTACHMENT_IS_LOGICAL(&a))
		verify_distributed((ReturnSetInfo *) fcinfo->resultinfo, a.relid, have_user, only_user);
	else
		verify_attachment(fcinfo, a, have_user, only_user);
	return (Datum) 0;
}

/* SQL glintru.citus_verify_state(route, table, user_id): glintru_verify_state of the shard of route, on its node. */
PG_FUNCTION_INFO_V1(glintru_citus_verify_state);
Datum
glintru_citus_verify_state(PG_FUNCTION_ARGS)
{
	GlintruAttachment a = glintru_attachment_resolve_user(true, PG_GETARG_OID(1), PG_GETARG_INT64(0));

	if (GLINTRU_ATTACHMENT_IS_LOGICAL(&a))
		glintru_citus_not_routed("glintru_verify_state");
	InitMaterializedSRF(fcinfo, 0);
	verify_attachment(fcinfo, a, !PG_ARGISNULL(2), PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2));
	return (Datum) 0;
}
