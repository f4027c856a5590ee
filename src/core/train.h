/*
 * train.h — the GLINT-RU training engine (numeric core, no PostgreSQL
 * headers): forward and backward of every layer over all prefixes of a
 * sequence window at once (SPEC §1 "All prefixes of a sequence at once"),
 * cross-entropy over all item rows, AdamW with gradient clipping, the
 * dropout defaults chosen from the data, and the epoch loop with
 * validation NDCG@10 and early stopping.
 *
 * Parameters, gradients and Adam moments are three blocks laid out by the
 * same GlintruLayout as the model file (src/model.h).  The element type is
 * GlintruReal: float normally, double when the engine is compiled with
 * -DGLINTRU_TRAIN_DOUBLE (the gradient-check build), so one source serves
 * both a fast trainer and an exact finite-difference test.
 */
#ifndef GLINTRU_TRAIN_H
#define GLINTRU_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "data.h"
#include "metrics.h"

#ifdef GLINTRU_TRAIN_DOUBLE
typedef double GlintruReal;
#else
typedef float GlintruReal;
#endif

/* A network being trained: hyper-parameters plus its parameter block. */
typedef struct GlintruNet
{
	GlintruLayout layout;
	int32_t		d;
	int32_t		n_heads;
	int32_t		max_seq_len;
	double		ln_eps;
	GlintruReal *params;		/* layout.n_params */
} GlintruNet;

/*
 * One window of a sequence (rows of the item table, oldest first).  Position
 * p (0-based, window-relative) stands for the prefix items[0..p]; positions
 * p_lo .. len-1 are evaluated ("head" positions).  targets, when not NULL,
 * gives the row to predict at each head position (targets[p - p_lo]).
 * uid keys the dropout masks so that they do not depend on batching or
 * threads.
 */
typedef struct GlintruChunk
{
	const int32_t *items;
	int32_t		len;			/* 1 .. max_seq_len */
	int32_t		p_lo;			/* 0 .. len-1 */
	const int32_t *targets;
	uint64_t	uid;
} GlintruChunk;

/* Dropout probabilities as in the published model; active=false: eval. */
typedef struct GlintruDropout
{
	bool		active;
	double		p_emb;			/* embeddings (published 0.2) */
	double		p_att;			/* attention output (published 0.2) */
	double		p_inner;		/* selective gate, mix, MLP (published 0.3) */
	uint64_t	seed;			/* mixed with chunk uid and position */
} GlintruDropout;

/* Reusable scratch memory of one thread (opaque). */
typedef struct GlintruWork GlintruWork;

GlintruWork *glintru_work_new(void);
void		glintru_work_free(GlintruWork *w);

/*
 * Whether the engine's 8-lane loops run (true, the default) or their
 * plain-C twins; both give the same bits, which tests check.  Returns the
 * previous setting.  In the float64 build only the twins exist.
 */
bool		glintru_train_use_simd(bool on);

/* Allocate a net with zeroed parameters; NULL on allocation failure. */
GlintruNet *glintru_net_new(int64_t n_rows, int32_t d, int32_t n_heads,
							int32_t max_seq_len, double ln_eps);
void		glintru_net_free(GlintruNet *net);

/* Published initialisation (xavier for linears, GRU, embedding; PyTorch default for convs). */
void		glintru_net_init(GlintruNet *net, uint64_t seed);

/*
 * Forward (and, if grad != NULL, backward) over a set of chunks.  Returns
 * the summed cross-entropy of all targets; adds loss_scale * d(sum)/dθ to
 * grad.  pad_input_grad=false reproduces the published padding_idx=0: the
 * embedding row 0 gets no gradient through its use as padding input (it
 * still learns as output class 0).  Returns NaN on allocation failure.
 */
double		glintru_net_loss_grad(const GlintruNet *net, const GlintruChunk *chunks,
								  int n_chunks, const GlintruDropout *drop,
								  double loss_scale, GlintruReal *grad,
								  bool pad_input_grad, GlintruWork *w);

/*
 * User vectors (eval mode) of each chunk's last position into
 * out[n_chunks * d].  Returns false on allocation failure.
 */
bool		glintru_net_user_vectors(const GlintruNet *net, const GlintruChunk *chunks,
									 int n_chunks, GlintruReal *out, GlintruWork *w);

/* All head-position user vectors (eval mode), rows in chunk order. */
bool		glintru_net_head_vectors(const GlintruNet *net, const GlintruChunk *chunks,
									 int n_chunks, const GlintruDropout *drop,
									 GlintruReal *out, GlintruWork *w);

/*
 * AdamW (PyTorch's torch.optim.AdamW besides lr and weight_decay), step t
 * counts from 1: param *= 1 - lr·weight_decay, then the Adam step; gscale
 * multiplies the gradient first (gradient clipping).  weight_decay 0 is Adam.
 */
void		glintru_adam_step(GlintruReal *param, const GlintruReal *grad,
							  GlintruReal *m, GlintruReal *v, uint64_t n,
							  double lr, double beta1, double beta2, double eps, int64_t t,
							  double weight_decay, double gscale);

/* The L2 norm of n gradient entries (summed in double, in index order). */
double		glintru_grad_norm(const GlintruReal *g, uint64_t n);

/*
 * The training samples of one history (rows, oldest first) as windows:
 * targets j <= L use the exact window [0, j); beyond, a chunk starting at
 * a = k*s (s = max(1, L/2)) serves targets j in (a + L - s, a + L] with
 * window [a, j) (SPEC §4).  Writes up to max_out chunks and returns how
 * many the history needs.
 */
int			glintru_history_chunks(const int32_t *hist, int32_t n, int32_t max_seq_len,
								   uint64_t uid_base, GlintruChunk *out, int max_out);

/*
 * Limits of the training options, one set for SQL (glintru_train) and the
 * command line (glintru-train), checked by glintru_train_options_check.
 * They are the SQL function's long-standing ranges: a training runs
 * inside a backend, so d and L bound its memory, and d = 2 (one unit per
 * head) trains to NaN at once, so the CLI's old d ≥ 2 never worked.
 */
#define GLINTRU_TRAIN_MIN_D 4
#define GLINTRU_TRAIN_MAX_D 512
#define GLINTRU_TRAIN_MAX_HEADS GLINTRU_TRAIN_MAX_D
#define GLINTRU_TRAIN_MAX_SEQ_LEN 4096
#define GLINTRU_TRAIN_MAX_EPOCHS 100000
#define GLINTRU_TRAIN_MAX_BATCH (1 << 20)
#define GLINTRU_TRAIN_MAX_PATIENCE 100000
/* worker processes of training and evaluation (each one a full OpenBLAS state) */
#define GLINTRU_TRAIN_MAX_WORKERS 16
/* AdamW's decoupled weight decay: per step a weight shrinks by lr * weight_decay */
#define GLINTRU_TRAIN_MAX_WEIGHT_DECAY 1.0
/* gradient-norm clipping threshold (0 = off); above this it clips nothing */
#define GLINTRU_TRAIN_MAX_CLIP_NORM 1e6

/*
 * Defaults chosen from the data when the user names no dropout (see
 * glintru_train_resolve): the embedding/attention dropout falls from 0.5 on
 * sparse data (at most GLINTRU_SPARSE_DENSITY training interactions per
 * item) to the published 0.2 on dense data (at least GLINTRU_DENSE_DENSITY),
 * linearly in log density; the gate/mix/MLP dropout is 0.1 above it, as the
 * published pair 0.2 / 0.3.
 */
#define GLINTRU_SPARSE_DENSITY 20.0
#define GLINTRU_DENSE_DENSITY 200.0
#define GLINTRU_SPARSE_DROPOUT 0.5
#define GLINTRU_DENSE_DROPOUT 0.2
#define GLINTRU_INNER_DROPOUT_EXTRA 0.1

/* Architecture options given explicitly (GlintruTrainOptions.arch_set bits). */
#define GLINTRU_ARCH_D 1u
#define GLINTRU_ARCH_HEADS 2u
#define GLINTRU_ARCH_MAX_SEQ_LEN 4u
#define GLINTRU_ARCH_LN_EPS 8u

/*
 * A worker pool: how the processes that run parts 1..n of every training
 * step and evaluation are started and signalled.  What they compute is the
 * engine's: it lays out one shared area (offsets, no pointers: each process
 * may map it at another address), writes a command into it, and every
 * worker runs glintru_area_worker_run on its own mapping.  Gradients come
 * back in per-part blocks that the engine sums in part order, so the model
 * depends on the number of parts, never on which pool ran them.
 *
 * The command-line tools use the fork pool of train_workers.c (fork, an
 * anonymous shared mapping, pipes); the extension passes PostgreSQL dynamic
 * background workers on a dynamic shared memory segment
 * (src/pg/train_pool.c).  A backend must never fork, so the glue always
 * passes its own pool.  Calls come in this order: map, start, then
 * (run, wait)* , then close (also after any failure).  Failures return
 * NULL / -1 / false with a message in err.
 */
typedef struct GlintruWorkerPool GlintruWorkerPool;
struct GlintruWorkerPool
{
	/* shared memory of bytes that every worker will see */
	void	   *(*map) (GlintruWorkerPool *pool, size_t bytes, char *err, size_t errlen);
	/* start up to n workers (parts 1..); how many run, 0..n, or -1 */
	int			(*start) (GlintruWorkerPool *pool, int n, char *err, size_t errlen);
	/* the workers run the command now in the area (part 0 runs meanwhile) */
	bool		(*run) (GlintruWorkerPool *pool, char *err, size_t errlen);
	/* until every worker finished it; false if one died or on a cancel */
	bool		(*wait) (GlintruWorkerPool *pool, char *err, size_t errlen);
	/* stop the workers, wait until they exited, release the area */
	void		(*close) (GlintruWorkerPool *pool);
};

/* A worker's state over its mapping of the area (opaque). */
typedef struct GlintruAreaWorker GlintruAreaWorker;

/* In a worker process: the state of part (1..) over area; NULL if out of memory. */
GlintruAreaWorker *glintru_area_worker_new(void *area, int part);

/*
 * Runs the area's current command (a step's part, or an evaluation's share
 * of the users) and leaves the result in the area.  should_stop (may be
 * NULL) is asked between evaluation batches.  False if it failed (out of
 * memory, stopped); the engine sees that in the area too.
 */
bool		glintru_area_worker_run(GlintruAreaWorker *w, bool (*should_stop) (void *arg), void *arg);
void		glintru_area_worker_free(GlintruAreaWorker *w);

/* Dropouts given explicitly (GlintruTrainOptions.dropout_set bits); others come from the data. */
#define GLINTRU_DROPOUT_SET 1u		/* p_emb and p_att */
#define GLINTRU_INNER_DROPOUT_SET 2u	/* p_inner */

/* Options of the training loop. */
typedef struct GlintruTrainOptions
{
	int32_t		d;
	int32_t		n_heads;
	int32_t		max_seq_len;
	double		ln_eps;
	int			epochs;
	int			batch_size;		/* chunks (sequence windows) per Adam step */
	double		lr;
	double		weight_decay;	/* AdamW, decoupled: weights (not biases, LN) *= 1 - lr·wd */
	double		clip_norm;		/* the batch gradient's L2 norm is clipped to this; 0: off */
	double		p_emb;
	double		p_att;
	double		p_inner;
	uint32_t	dropout_set;	/* GLINTRU_*DROPOUT_SET given by the user */
	int			patience;
	uint64_t	seed;
	/*
	 * Parts of every batch and evaluation ("workers" in SQL, --threads): the
	 * caller and n_threads - 1 worker processes of the pool below.
	 */
	int			n_threads;
	/* who runs parts 1..: NULL is the fork pool (command-line tools only) */
	GlintruWorkerPool *pool;
	bool		quiet;
	/*
	 * Warm start: a model to start from (NULL: a fresh model).  Its config
	 * is the architecture (glintru_train_options_inherit copies what
	 * arch_set does not name; the check rejects a contradiction), and
	 * glintru_net_warm_start maps its rows onto the split's vocabulary.
	 */
	const GlintruModel *init_from;
	uint32_t	arch_set;		/* GLINTRU_ARCH_* given by the user */
	/* asked between batches; true stops training with the error "cancelled" */
	bool		(*should_stop) (void *arg);
	void	   *stop_arg;
} GlintruTrainOptions;

void		glintru_train_defaults(GlintruTrainOptions *o);

/*
 * The one check of training options, after parsing: every limit above,
 * lr in (0, 1), weight_decay in [0, 1], clip_norm in [0, 1e6], dropouts in
 * [0, 1), d even and divisible by n_heads.  On
 * failure false with a message naming the option as SQL spells it (e.g.
 * option "epochs" must be an integer from 1 to 100000).
 */
bool		glintru_train_options_check(const GlintruTrainOptions *o, char *err, size_t errlen);

/*
 * With init_from set: its d, heads, max_seq_len and layer_norm_eps replace
 * the options arch_set does not name (the ones it names stay, so that the
 * check can reject a contradiction).  Nothing happens without init_from.
 */
void		glintru_train_options_inherit(GlintruTrainOptions *o);

/*
 * Warm start of a net that glintru_net_init initialised for the seed:
 * every tensor but the item embedding is taken from model m, and so are
 * the embedding rows of the items m knows (vocab[r] is the external id of
 * net row r; row 0, the padding row, is m's row 0).  Rows of items m does
 * not know keep their fresh initialisation, so they start exactly as in a
 * fresh model with this vocabulary and seed.  Returns the number of item
 * rows taken from m, or -1 with a message if the shapes differ.
 */
int64_t		glintru_net_warm_start(GlintruNet *net, const int64_t *vocab, const GlintruModel *m,
								   char *err, size_t errlen);

/*
 * Training interactions per item of a split (its histories less the
 * validation and test items, over the N items): the density the dropout
 * defaults follow.
 */
double		glintru_split_density(const GlintruSplit *split);

/* The embedding/attention dropout the data's density calls for (see GLINTRU_SPARSE_DENSITY). */
double		glintru_dropout_for_density(double density);

/*
 * Fill the dropouts the user did not give (dropout_set) from the split's
 * density; glintru_train calls it, callers may too (to report them).
 */
void		glintru_train_resolve(GlintruTrainOptions *o, const GlintruSplit *split);

/* What the loop reports after each epoch. */
typedef struct GlintruEpochReport
{
	int			epoch;			/* 1-based */
	int			epochs;
	double		loss;			/* mean cross-entropy per target */
	double		val_ndcg10;
	double		best_val_ndcg10;
	int			best_epoch;
	double		epoch_seconds;
	double		elapsed_seconds;
	double		eta_seconds;
	bool		stopped;		/* early stopping triggered */
	const GlintruNet *best;		/* best net so far, valid during the callback */
} GlintruEpochReport;

typedef void (*GlintruProgressFn) (const GlintruEpochReport *r, void *arg);

/*
 * Train on a split dataset (data.h) and return the best-validation net
 * (caller frees), or NULL with a message in err.  With opt->init_from the
 * net starts from that model (glintru_net_warm_start; the split is then
 * usually glintru_split_extend's).  Each batch of windows is
 * cut into n_threads parts of about equal rows; parts 1.. run in the
 * processes of opt->pool, which share parameters, the split, the window
 * order and gradient blocks through the pool's shared area; gradients are
 * summed in part order, so a seed gives the same model for a given number
 * of parts, whichever pool ran them.  Validation uses the same workers.  If
 * the pool starts fewer workers than asked, training runs with that many
 * parts (and gives that many parts' model).
 */
GlintruNet *glintru_train(const GlintruSplit *split, const GlintruTrainOptions *opt,
						  GlintruProgressFn progress, void *progress_arg,
						  char *err, size_t errlen);

/*
 * Build a model (malloc'ed, float parameters, item ids and popularity from
 * the split's vocabulary) ready for glintru_safetensors_write.
 */
GlintruModel *glintru_net_to_model(const GlintruNet *net, const GlintruSplit *split,
								   char *err, size_t errlen);

/* A net holding a model's parameters (for evaluation of a file). */
GlintruNet *glintru_net_from_model(const GlintruModel *m);

/*
 * Score histories against all items: out[i * n_rows + j] = u_i · E[j]
 * (eval mode, window = last L items).  Returns false on allocation failure.
 */
bool		glintru_net_score(const GlintruNet *net, const int32_t *const *hists,
							  const int32_t *lens, int n, float *out, GlintruWork *w);

/*
 * Quality of a net on a split: each user's validation item (history: the
 * training items) or test item (history: training + validation items),
 * window = the last max_seq_len items of that history.  n_threads > 1 forks
 * n_threads-1 worker processes (the fork pool: Debian's serial OpenBLAS is
 * not safe to call from two threads at once); inside a PostgreSQL backend
 * pass 1.  Returns false on allocation failure.
 */
bool		glintru_net_evaluate(const GlintruNet *net, const GlintruSplit *split,
								 GlintruProtocol protocol, bool test, int k, uint64_t seed,
								 int n_threads, GlintruMetrics *out);

#endif							/* GLINTRU_TRAIN_H */
