/*
 * citus.h — talking to Citus, the distributed PostgreSQL engine, through
 * SQL only (glintru never links against it): is it installed here, is this
 * node the coordinator, which shards a distributed table has and where,
 * sending an operation to every node in the coordinator's distributed
 * transaction (glintru.citus_ops), making the serving functions distributed
 * functions, and forwarding a call to the node of a shard.
 *
 * Above the catalogue (SPI, the owner role); below attach, the SQL entry
 * points and citus_sql.c, which applies the operations on each node.
 */
#ifndef GLINTRU_CITUS_H
#define GLINTRU_CITUS_H

#include "postgres.h"

#include "funcapi.h"
#include "nodes/pg_list.h"

/* An operation the coordinator sends to every node (a row of glintru.citus_ops). */
typedef struct GlintruCitusOp
{
	const char *op;				/* "model", "drop", "attach", "detach" */
	const char *model;			/* model: its name */
	int32		model_id;		/* model: id and version on the coordinator */
	int64		version;
	bytea	   *weights;		/* model: the file */
	Oid			table;			/* attach, detach: the distributed table */
	const char *user_col,		/* attach */
			   *item_col,
			   *order_col;
	bool		deferred;		/* attach: refresh 'deferred' */
	bool		rebuild;		/* attach: rebuild shards already attached */
} GlintruCitusOp;

/* The column numbers of glintru.citus_ops (created by glintru_citus_send). */
#define GLINTRU_CITUS_OPS_NATTS 11

/* A shard of a distributed table, as the node's Citus metadata shows it. */
typedef struct GlintruCitusShard
{
	int64		shard_id;
	int32		hash_min;
	int32		hash_max;
	int32		group_id;		/* the node group of its (first) placement */
	bool		local;			/* an active placement on this node */
	Oid			relid;			/* the shard's table on this node, if local */
} GlintruCitusShard;

extern bool glintru_citus_present(void);
extern bool glintru_citus_coordinator(void);
extern bool glintru_citus_distributed(Oid relid);
extern bool glintru_citus_worker(void);

extern void glintru_citus_send(const GlintruCitusOp *op);
extern void glintru_citus_replicate_ops(void);
extern void glintru_citus_set_applying(bool on);
extern bool glintru_citus_applying(void);

extern List *glintru_citus_shards(Oid logical_relid);
extern int	glintru_citus_shard_of(List *shards, int64 user_id);
extern int64 glintru_citus_route_value(const GlintruCitusShard *s);
extern void glintru_citus_distribute_functions(Oid logical_relid, Oid extension_namespace);
extern void glintru_citus_forward(const char *sql, int nargs, Oid *types, Datum *args, const char *nulls,
								  ReturnSetInfo *rsinfo, const char *what);
extern void glintru_citus_not_routed(const char *what) pg_attribute_noreturn();

#endif							/* GLINTRU_CITUS_H */
