/*
 * stats.h — usage counters per (database, model, attachment or 0):
 * serving calls, rows and time, trigger events, rebuilds, deferred
 * refreshes and state bytes written (glintru_stats()), in shared memory
 * when glintru is preloaded, else this backend's own.
 *
 * Beside the cache and the progress slots; called by the state rows and
 * the SQL entry points above them.
 */
#ifndef GLINTRU_STATS_H
#define GLINTRU_STATS_H

#include "postgres.h"

#include "portability/instr_time.h"

/* The counters of one entry. */
typedef enum GlintruStat
{
	GLINTRU_STAT_CALLS,
	GLINTRU_STAT_ROWS,
	GLINTRU_STAT_TIME_NS,
	GLINTRU_STAT_MAX_TIME_NS,
	GLINTRU_STAT_TRIGGER_EVENTS,
	GLINTRU_STAT_REBUILDS,
	GLINTRU_STAT_REFRESHES,
	GLINTRU_STAT_STATE_BYTES,
	GLINTRU_STAT_COUNT
} GlintruStat;

/* One (database, model, attachment) entry; NULL where counting is impossible (the array is full). */
typedef struct GlintruStatsEntry GlintruStatsEntry;

/* ---- set-up, called by module.c ---- */

extern void glintru_stats_use_shared_memory(void);
extern void glintru_stats_shmem_request(void);
extern void glintru_stats_shmem_startup(void);

/* ---- counting ---- */

extern GlintruStatsEntry *glintru_stats_entry(int32 model_id, int32 att_id);
extern GlintruStatsEntry *glintru_stats_of_attachment(int32 att_id);
extern void glintru_stats_add(GlintruStatsEntry *e, GlintruStat which, uint64 n);
extern void glintru_stats_call(GlintruStatsEntry *e, uint64 rows, instr_time start);

#endif							/* GLINTRU_STATS_H */
