/*
 * metrics.h — top-k quality metrics of next-item prediction (numeric core,
 * no PostgreSQL headers): the rank of a target under the evaluation
 * protocols of SPEC §4 (full ranking, 100 popularity-sampled or uniformly
 * sampled negatives), HR@k / NDCG@k / MRR@k, and the popularity baseline.
 * Callers (the training loop, glintru-eval, the SQL glue) supply scores;
 * this module owns only the ranking rules.
 */
#ifndef GLINTRU_METRICS_H
#define GLINTRU_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data.h"

typedef enum GlintruProtocol
{
	GLINTRU_PROTOCOL_FULL,		/* all items but row 0 and the history */
	GLINTRU_PROTOCOL_POP100,	/* target + 100 negatives ∝ training popularity */
	GLINTRU_PROTOCOL_UNI100		/* target + 100 uniform negatives */
} GlintruProtocol;

/* "full", "pop100", "uni100"; false if unknown. */
bool		glintru_protocol_parse(const char *s, GlintruProtocol *out);
const char *glintru_protocol_name(GlintruProtocol p);

/* Accumulated metrics at cut-off k. */
typedef struct GlintruMetrics
{
	int			k;
	int64_t		n;				/* users ranked */
	double		hr;				/* sums until glintru_metrics_finish, then means */
	double		ndcg;
	double		mrr;
} GlintruMetrics;

void		glintru_metrics_init(GlintruMetrics *m, int k);
/* rank is 0-based: the number of candidates scored above the target. */
void		glintru_metrics_add(GlintruMetrics *m, int64_t rank);
/* Sums of another accumulator (threads), before finishing. */
void		glintru_metrics_merge(GlintruMetrics *m, const GlintruMetrics *other);
void		glintru_metrics_finish(GlintruMetrics *m);

/*
 * Ranks targets under one protocol.  Holds scratch memory, so use one per
 * thread.  Negatives of the sampled protocols come from a generator keyed
 * by (seed, user_key): the same user gets the same negatives in every run.
 */
typedef struct GlintruRanker GlintruRanker;

GlintruRanker *glintru_ranker_new(GlintruProtocol protocol, int64_t n_rows,
								  const float *popularity, uint64_t seed);
void		glintru_ranker_free(GlintruRanker *r);

/*
 * 0-based rank of row target among the protocol's candidates, given scores
 * over all n_rows rows; rows in hist (the user's items before the target)
 * and row 0 are never candidates.  Ties count in the target's favour (only
 * strictly higher scores rank above it).
 */
int64_t		glintru_ranker_rank(GlintruRanker *r, const float *scores, int32_t target,
								const int32_t *hist, int32_t n_hist, uint64_t user_key);

/*
 * Popularity baseline on a split: score = training popularity; test=true
 * ranks each user's test item (history: training + validation items),
 * else the validation item (history: training items).
 */
void		glintru_popularity_metrics(const GlintruSplit *s, GlintruProtocol protocol,
									   bool test, int k, uint64_t seed, GlintruMetrics *out);

#endif							/* GLINTRU_METRICS_H */
