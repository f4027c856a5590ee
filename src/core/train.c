/*
 * train.c — the training engine's nets and loop: allocation and the
 * published initialisation, AdamW, the training windows of a history,
 * conversion to and from models, scoring, the training options (defaults
 * and the one check SQL and the CLI share), the warm start from a model
 * and the epoch loop with validation and early stopping.  The layers are
 * in train_layers.c, the all-prefix pass in train_pass.c, the worker
 * processes in train_workers.c.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train_internal.h"
#include "metrics.h"
#include "util.h"

/* ------------------------------------------------------------------ */
/* nets, initialisation, Adam                                           */
/* ------------------------------------------------------------------ */

/* A net with zeroed parameters, or NULL (bad shape or out of memory). */
GlintruNet *
glintru_net_new(int64_t n_rows, int32_t d, int32_t n_heads, int32_t max_seq_len, double ln_eps)
{
	GlintruNet *net;

	if (d <= 0 || d % 2 != 0 || n_heads <= 0 || d % n_heads != 0 || d > GLINTRU_TRAIN_MAX_D ||
		max_seq_len <= 0 || n_rows < 2)
		return NULL;
	net = calloc(1, sizeof(GlintruNet));
	if (!net)
		return NULL;
	glintru_layout_init(&net->layout, n_rows, d);
	net->d = d;
	net->n_heads = n_heads;
	net->max_seq_len = max_seq_len;
	net->ln_eps = ln_eps;
	net->params = calloc(net->layout.n_params, sizeof(R));
	if (!net->params)
	{
		free(net);
		return NULL;
	}
	return net;
}

/* Frees a net (NULL is fine). */
void
glintru_net_free(GlintruNet *net)
{
	if (!net)
		return;
	free(net->params);
	free(net);
}

/* A uniform draw in [0, 1) from SplitMix64 state *st (53 bits). */
static double
rng_uniform(uint64_t *st)
{
	*st += GLINTRU_SPLITMIX64_GAMMA;
	return (double) (glintru_mix64(*st) >> 11) * (1.0 / 9007199254740992.0);
}

/* A standard normal draw (Box–Muller). */
static double
rng_normal(uint64_t *st)
{
	double		u1 = rng_uniform(st),
				u2 = rng_uniform(st);

	if (u1 < 1e-300)
		u1 = 1e-300;
	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/*
 * The published _init_weights: xavier_normal for the embedding (row 0
 * included: it overwrites the zero padding row), xavier_uniform for linear
 * and GRU weights, zero linear biases; the convolutions keep PyTorch's
 * default U(±1/√(3d)); LayerNorms 1/0; mixing logits [0.5, 0.5].
 */
void
glintru_net_init(GlintruNet *net, uint64_t seed)
{
	uint64_t	st = glintru_mix64(seed ^ 0x5EEDull);
	int			d = net->d;

	for (int t = 0; t < GT_COUNT; t++)
	{
		const GlintruTensorSlot *sl = &net->layout.slot[t];
		R		   *p = net->params + sl->offset;

		switch (t)
		{
			case GT_ITEM_EMBEDDING:
				{
					double		sd = sqrt(2.0 / (double) (sl->shape[0] + sl->shape[1]));

					for (uint64_t i = 0; i < sl->numel; i++)
						p[i] = (R) (sd * rng_normal(&st));
				}
				break;
			case GT_CONV1D_W:
			case GT_CONVG_W:
			case GT_CONV1D_B:
			case GT_CONVG_B:
				{
					double		b = 1.0 / sqrt(3.0 * d);

					for (uint64_t i = 0; i < sl->numel; i++)
						p[i] = (R) ((2 * rng_uniform(&st) - 1) * b);
				}
				break;
			case GT_ATT_LN_W:
			case GT_LN_W:
				for (uint64_t i = 0; i < sl->numel; i++)
					p[i] = 1;
				break;
			case GT_MIX_LOGITS:
				p[0] = p[1] = (R) 0.5;
				break;
			default:
				if (sl->ndim == 2)
				{
					double		b = sqrt(6.0 / (double) (sl->shape[0] + sl->shape[1]));

					for (uint64_t i = 0; i < sl->numel; i++)
						p[i] = (R) ((2 * rng_uniform(&st) - 1) * b);
				}
				else
					memset(p, 0, sizeof(R) * sl->numel);
		}
	}
}

/* One AdamW step over n parameters (PyTorch's formulas; see train.h). */
GLINTRU_VEC void
glintru_adam_step(GlintruReal *param, const GlintruReal *grad, GlintruReal *m, GlintruReal *v,
				  uint64_t n, double lr, double beta1, double beta2, double eps, int64_t t,
				  double weight_decay, double gscale)
{
	double		bc1 = 1 - pow(beta1, (double) t),
				bc2 = 1 - pow(beta2, (double) t);
	R			step = (R) (lr / bc1);
	R			rb2 = (R) (1.0 / sqrt(bc2));
	R			b1 = (R) beta1,
				b2 = (R) beta2,
				e = (R) eps,
				keep = (R) (1 - lr * weight_decay),
				gs = (R) gscale;

	/* PyTorch's AdamW: p *= 1 - lr·wd; p -= lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps) */
	for (uint64_t i = 0; i < n; i++)
	{
		R			g = grad[i] * gs;

		m[i] = b1 * m[i] + (1 - b1) * g;
		v[i] = b2 * v[i] + (1 - b2) * g * g;
		param[i] = param[i] * keep - step * m[i] / (RSQRTF(v[i]) * rb2 + e);
	}
}

/* The L2 norm of a gradient block (double sums, index order: reproducible). */
GLINTRU_VEC double
glintru_grad_norm(const GlintruReal *g, uint64_t n)
{
	double		lane[8] = {0};
	uint64_t	n8 = n & ~(uint64_t) 7;
	double		s = 0;

	/* eight lanes in a fixed order: the loop vectorises and the sum stays deterministic */
	for (uint64_t i = 0; i < n8; i += 8)
		for (int k = 0; k < 8; k++)
			lane[k] += (double) g[i + k] * g[i + k];
	for (uint64_t i = n8; i < n; i++)
		s += (double) g[i] * g[i];
	for (int k = 0; k < 8; k++)
		s += lane[k];
	return sqrt(s);
}

/* The training windows of one history (SPEC §4; see train.h). */
int
glintru_history_chunks(const int32_t *hist, int32_t n, int32_t L, uint64_t uid_base,
					   GlintruChunk *out, int max_out)
{
	int			k = 0;
	int32_t		s = L / 2 > 0 ? L / 2 : 1;

	if (n < 2)
		return 0;
	/* targets j = 1 .. min(L, n-1) from window [0, j): positions 0 .. len-1 */
	{
		int32_t		len = n - 1 < L ? n - 1 : L;

		if (k < max_out)
			out[k] = (GlintruChunk) {hist, len, 0, hist + 1, uid_base + (uint64_t) k};
		k++;
	}
	/* chunk at a = i·s serves targets j in (a + L - s, a + L], positions L-s .. */
	for (int64_t a = s; a + L - s + 1 <= n - 1; a += s)
	{
		int32_t		len = (int32_t) (n - 1 - a < L ? n - 1 - a : L);
		int32_t		p_lo = L - s;

		if (k < max_out)
			out[k] = (GlintruChunk) {hist + a, len, p_lo, hist + a + p_lo + 1, uid_base + (uint64_t) k};
		k++;
	}
	return k;
}

/* ------------------------------------------------------------------ */
/* models and scores                                                    */
/* ------------------------------------------------------------------ */

/* Scores of histories against all items (eval mode, last L items). */
bool
glintru_net_score(const GlintruNet *net, const int32_t *const *hists, const int32_t *lens, int n,
				  float *out, GlintruWork *w)
{
	int			d = net->d,
				L = net->max_seq_len;
	int64_t		N1 = net->layout.n_rows;
	GlintruChunk *ch = calloc(n > 0 ? n : 1, sizeof(GlintruChunk));
	R		   *U = malloc(sizeof(R) * (size_t) (n > 0 ? n : 1) * d);
	R		   *row = malloc(sizeof(R) * (size_t) N1);
	bool		ok = false;

	if (!ch || !U || !row)
		goto out;
	for (int i = 0; i < n; i++)
	{
		int32_t		len = lens[i] < L ? lens[i] : L;

		if (len <= 0)
			goto out;
		ch[i] = (GlintruChunk) {hists[i] + lens[i] - len, len, len - 1, NULL, 0};
	}
	if (!glintru_net_user_vectors(net, ch, n, U, w))
		goto out;
	for (int i = 0; i < n; i++)
	{
		GEMM(RM, NT, TR, 1, (int) N1, d, 1, U + (size_t) i * d, d, PRM(net, GT_ITEM_EMBEDDING), d, 0, row, (int) N1);
		for (int64_t q = 0; q < N1; q++)
			out[(size_t) i * N1 + q] = (float) row[q];
	}
	ok = true;
out:
	free(ch);
	free(U);
	free(row);
	return ok;
}

/* A model (float parameters, the split's vocabulary) of a trained net. */
GlintruModel *
glintru_net_to_model(const GlintruNet *net, const GlintruSplit *split, char *err, size_t errlen)
{
	GlintruConfig cfg;
	GlintruModel *m;
	void	   *mem;

	memset(&cfg, 0, sizeof(cfg));
	cfg.n_rows = net->layout.n_rows;
	cfg.d = net->d;
	cfg.n_heads = net->n_heads;
	cfg.max_seq_len = net->max_seq_len;
	cfg.layer_norm_eps = (float) net->ln_eps;
	if (split->n_rows != cfg.n_rows)
	{
		snprintf(err, errlen, "vocabulary has %lld rows, net has %lld",
				 (long long) split->n_rows, (long long) cfg.n_rows);
		return NULL;
	}
	mem = malloc(glintru_model_bytes(&cfg, true));
	if (!mem)
	{
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	m = glintru_model_init(mem, &cfg, true);
	{
		float	   *p = glintru_params(m);

		for (uint64_t i = 0; i < net->layout.n_params; i++)
			p[i] = (float) net->params[i];
	}
	m->has_item_ids = 1;
	memcpy((char *) m + m->item_ids_off, split->item_ids, sizeof(int64_t) * (size_t) cfg.n_rows);
	memcpy((char *) m + m->popularity_off, split->popularity, sizeof(float) * (size_t) cfg.n_rows);
	if (!glintru_model_finish(m, err, errlen))
	{
		free(mem);
		return NULL;
	}
	return m;
}

/* A net holding a model's parameters. */
GlintruNet *
glintru_net_from_model(const GlintruModel *m)
{
	GlintruNet *net = glintru_net_new(m->config.n_rows, m->config.d, m->config.n_heads,
									  m->config.max_seq_len, m->config.layer_norm_eps);
	const float *p;

	if (!net)
		return NULL;
	p = glintru_params(m);
	for (uint64_t i = 0; i < net->layout.n_params; i++)
		net->params[i] = (R) p[i];
	return net;
}

/* ------------------------------------------------------------------ */
/* options                                                              */
/* ------------------------------------------------------------------ */

/* The published architecture, AdamW with clipping, dropouts from the data; 2 workers. */
void
glintru_train_defaults(GlintruTrainOptions *o)
{
	memset(o, 0, sizeof(*o));
	o->d = 64;
	o->n_heads = 4;
	o->max_seq_len = 200;
	o->ln_eps = 1e-12;
	o->epochs = 200;
	o->batch_size = 32;
	o->lr = 1e-3;
	o->weight_decay = 1e-2;
	o->clip_norm = 1.0;
	/* published values; unless given, glintru_train_resolve sets them from the data */
	o->p_emb = GLINTRU_DENSE_DROPOUT;
	o->p_att = GLINTRU_DENSE_DROPOUT;
	o->p_inner = GLINTRU_DENSE_DROPOUT + GLINTRU_INNER_DROPOUT_EXTRA;
	o->patience = 10;
	o->seed = 42;
	o->n_threads = 2;
}

/* v in lo..hi, else the message for option name. */
static bool
int_option_ok(const char *name, long long v, long long lo, long long hi, char *err, size_t errlen)
{
	if (v >= lo && v <= hi)
		return true;
	snprintf(err, errlen, "option \"%s\" must be an integer from %lld to %lld", name, lo, hi);
	return false;
}

/* A dropout probability in [0, 1), else the message for option name. */
static bool
dropout_ok(const char *name, double p, char *err, size_t errlen)
{
	if (p >= 0 && p < 1)
		return true;
	snprintf(err, errlen, "option \"%s\" must be at least 0 and below 1", name);
	return false;
}

/* An architecture option that contradicts init_from's config, else true. */
static bool
init_from_ok(const GlintruTrainOptions *o, char *err, size_t errlen)
{
	const GlintruConfig *c;
	const char *name = NULL;
	double		have = 0,
				want = 0;

	if (!o->init_from)
		return true;
	c = &o->init_from->config;
	if (o->d != c->d)
		name = "d", have = o->d, want = c->d;
	else if (o->n_heads != c->n_heads)
		name = "heads", have = o->n_heads, want = c->n_heads;
	else if (o->max_seq_len != c->max_seq_len)
		name = "max_seq_len", have = o->max_seq_len, want = c->max_seq_len;
	else if ((float) o->ln_eps != c->layer_norm_eps)
		name = "layer_norm_eps", have = o->ln_eps, want = c->layer_norm_eps;
	if (!name)
		return true;
	snprintf(err, errlen, "option \"%s\" is %g, but the init_from model has %s = %g: "
			 "the architecture comes from init_from (leave \"%s\" out)", name, have, name, want, name);
	return false;
}

/* The one check of training options (see train.h); names as in SQL. */
bool
glintru_train_options_check(const GlintruTrainOptions *o, char *err, size_t errlen)
{
	if (!int_option_ok("d", o->d, GLINTRU_TRAIN_MIN_D, GLINTRU_TRAIN_MAX_D, err, errlen) ||
		!int_option_ok("heads", o->n_heads, 1, GLINTRU_TRAIN_MAX_HEADS, err, errlen) ||
		!int_option_ok("max_seq_len", o->max_seq_len, 1, GLINTRU_TRAIN_MAX_SEQ_LEN, err, errlen) ||
		!int_option_ok("epochs", o->epochs, 1, GLINTRU_TRAIN_MAX_EPOCHS, err, errlen) ||
		!int_option_ok("batch_size", o->batch_size, 1, GLINTRU_TRAIN_MAX_BATCH, err, errlen) ||
		!int_option_ok("patience", o->patience, 0, GLINTRU_TRAIN_MAX_PATIENCE, err, errlen) ||
		!int_option_ok("workers", o->n_threads, 1, GLINTRU_TRAIN_MAX_WORKERS, err, errlen))
		return false;
	if (!(o->lr > 0 && o->lr < 1))
	{
		snprintf(err, errlen, "option \"lr\" must be between 0 and 1");
		return false;
	}
	if (!(o->weight_decay >= 0 && o->weight_decay <= GLINTRU_TRAIN_MAX_WEIGHT_DECAY))
	{
		snprintf(err, errlen, "option \"weight_decay\" must be from 0 to %g", GLINTRU_TRAIN_MAX_WEIGHT_DECAY);
		return false;
	}
	if (!(o->clip_norm >= 0 && o->clip_norm <= GLINTRU_TRAIN_MAX_CLIP_NORM))
	{
		snprintf(err, errlen, "option \"clip_norm\" must be from 0 (off) to %g", GLINTRU_TRAIN_MAX_CLIP_NORM);
		return false;
	}
	if (!dropout_ok("dropout", o->p_emb, err, errlen) ||
		!dropout_ok("dropout", o->p_att, err, errlen) ||
		!dropout_ok("inner_dropout", o->p_inner, err, errlen))
		return false;
	if (o->d % o->n_heads != 0 || o->d % 2 != 0)
	{
		snprintf(err, errlen, "d = %d must be even and divisible by heads = %d", o->d, o->n_heads);
		return false;
	}
	return init_from_ok(o, err, errlen);
}

/* Training interactions per item (see train.h). */
double
glintru_split_density(const GlintruSplit *split)
{
	int64_t		n = 0;

	for (int64_t u = 0; u < split->n_users; u++)
		n += glintru_split_len(split, u) - 2;
	return split->n_rows > 1 ? (double) n / (double) (split->n_rows - 1) : 0;
}

/* 0.5 at ≤ 20 interactions per item, 0.2 at ≥ 200, linear in log density between. */
double
glintru_dropout_for_density(double density)
{
	double		f;

	if (!(density > GLINTRU_SPARSE_DENSITY))
		return GLINTRU_SPARSE_DROPOUT;
	if (density >= GLINTRU_DENSE_DENSITY)
		return GLINTRU_DENSE_DROPOUT;
	f = log(density / GLINTRU_SPARSE_DENSITY) / log(GLINTRU_DENSE_DENSITY / GLINTRU_SPARSE_DENSITY);
	/* two decimals: a default a user can read back and pass again */
	return round(100 * (GLINTRU_SPARSE_DROPOUT + f * (GLINTRU_DENSE_DROPOUT - GLINTRU_SPARSE_DROPOUT))) / 100;
}

/* The dropouts not given, from the split's density (see train.h). */
void
glintru_train_resolve(GlintruTrainOptions *o, const GlintruSplit *split)
{
	if (!(o->dropout_set & GLINTRU_DROPOUT_SET))
		o->p_emb = o->p_att = glintru_dropout_for_density(glintru_split_density(split));
	if (!(o->dropout_set & GLINTRU_INNER_DROPOUT_SET))
		o->p_inner = fmin(0.9, o->p_emb + GLINTRU_INNER_DROPOUT_EXTRA);
}

/* init_from's architecture fills what the user did not name (see train.h). */
void
glintru_train_options_inherit(GlintruTrainOptions *o)
{
	const GlintruConfig *c;

	if (!o->init_from)
		return;
	c = &o->init_from->config;
	if (!(o->arch_set & GLINTRU_ARCH_D))
		o->d = c->d;
	if (!(o->arch_set & GLINTRU_ARCH_HEADS))
		o->n_heads = c->n_heads;
	if (!(o->arch_set & GLINTRU_ARCH_MAX_SEQ_LEN))
		o->max_seq_len = c->max_seq_len;
	if (!(o->arch_set & GLINTRU_ARCH_LN_EPS))
		o->ln_eps = c->layer_norm_eps;
}

/* A net row of a known item, or the padding row, gets m's row; -1 if the shapes differ. */
int64_t
glintru_net_warm_start(GlintruNet *net, const int64_t *vocab, const GlintruModel *m,
					   char *err, size_t errlen)
{
	int			d = net->d;
	int64_t		kept = 0;

	if (m->config.d != d || m->config.n_heads != net->n_heads ||
		m->config.max_seq_len != net->max_seq_len || m->layout.n_rows < 2)
	{
		snprintf(err, errlen, "init_from model has d %d, heads %d, max_seq_len %d; the net has %d, %d, %d",
				 m->config.d, m->config.n_heads, m->config.max_seq_len, d, net->n_heads, net->max_seq_len);
		return -1;
	}
	for (int t = 0; t < GT_COUNT; t++)
	{
		const float *src = glintru_param(m, (GlintruTensor) t);
		R		   *dst = net->params + net->layout.slot[t].offset;

		/* every tensor but the embedding has the same shape in both */
		if (t != GT_ITEM_EMBEDDING)
			for (uint64_t i = 0; i < net->layout.slot[t].numel; i++)
				dst[i] = (R) src[i];
	}
	{
		const float *E_old = glintru_param(m, GT_ITEM_EMBEDDING);
		R		   *E = PRM(net, GT_ITEM_EMBEDDING);

		for (int64_t r = 0; r < net->layout.n_rows; r++)
		{
			int64_t		o = r == 0 ? 0 : glintru_item_row(m, vocab[r]);

			if (o < 0)
				continue;	/* a new item: its fresh row stays */
			for (int j = 0; j < d; j++)
				E[(size_t) r * d + j] = (R) E_old[(size_t) o * d + j];
			kept += r > 0;
		}
	}
	return kept;
}

/* ------------------------------------------------------------------ */
/* the training loop                                                    */
/* ------------------------------------------------------------------ */

/* Everything one training run holds. */
typedef struct TrainRun
{
	const GlintruSplit *split;
	const GlintruTrainOptions *opt;
	int			nt;				/* parts per batch (1 + worker processes) */
	GlintruNet *net;			/* params point into the pool's shared block */
	GlintruNet *best;
	R		   *own_params;		/* net's own block, restored at the end */
	GlintruChunk *chunks;		/* all training windows */
	GlintruChunk *bch;			/* the current batch */
	int64_t		n_chunks;
	int64_t		n_targets_total;
	uint64_t	np;
	R		   *mom,
			   *vel;
	int64_t		adam_t;
	GlintruWork *works[GLINTRU_TRAIN_MAX_WORKERS];
	GlintruPool pool;
	int			best_epoch;
	double		best_ndcg;
	double		t_start;
} TrainRun;

/* Seconds of a monotonic clock. */
static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The training windows of every user (see train_internal.h). */
int64_t
glintru_train_windows(const GlintruSplit *split, int32_t L, GlintruChunk *out, int64_t cap)
{
	int64_t		k = 0;

	for (int64_t u = 0; u < split->n_users; u++)
		k += glintru_history_chunks(split->rows + split->off[u], glintru_split_len(split, u) - 2,
									L, (uint64_t) k, out ? out + k : NULL, out ? (int) (cap - k) : 0);
	return k;
}

/*
 * Everything before the first epoch: initialised net in the shared block,
 * the windows, Adam moments, workspaces and the worker processes.
 */
static bool
train_setup(TrainRun *T, char *err, size_t errlen)
{
	const GlintruTrainOptions *opt = T->opt;
	const GlintruSplit *split = T->split;

	glintru_net_init(T->net, opt->seed);
	if (opt->init_from && glintru_net_warm_start(T->net, split->item_ids, opt->init_from, err, errlen) < 0)
		return false;
	T->np = T->net->layout.n_params;
	T->n_chunks = glintru_train_windows(split, opt->max_seq_len, NULL, 0);
	if (T->n_chunks == 0)
	{
		snprintf(err, errlen, "no training samples: every user needs at least 4 interactions for one training prefix");
		return false;
	}
	T->chunks = malloc(sizeof(GlintruChunk) * (size_t) T->n_chunks);
	if (!glintru_pool_map(&T->pool, opt->pool, T->net, split, T->n_chunks, opt, err, errlen))
		return false;
	T->own_params = T->net->params;
	T->net->params = T->pool.params;
	memcpy(T->net->params, T->own_params, sizeof(R) * T->np);
	T->bch = malloc(sizeof(GlintruChunk) * (size_t) opt->batch_size);
	T->mom = calloc(T->np, sizeof(R));
	T->vel = calloc(T->np, sizeof(R));
	T->best = glintru_net_new(split->n_rows, opt->d, opt->n_heads, opt->max_seq_len, opt->ln_eps);
	T->works[0] = glintru_work_new();	/* the workers have their own */
	if (!T->chunks || !T->bch || !T->mom || !T->vel || !T->best || !T->works[0])
	{
		snprintf(err, errlen, "out of memory");
		return false;
	}
	glintru_train_windows(split, opt->max_seq_len, T->chunks, T->n_chunks);
	for (int64_t i = 0; i < T->n_chunks; i++)
	{
		T->pool.order[i] = i;
		T->n_targets_total += T->chunks[i].len - T->chunks[i].p_lo;
	}
	memcpy(T->best->params, T->net->params, sizeof(R) * T->np);
	if (!glintru_pool_start(&T->pool, err, errlen))
		return false;
	T->nt = T->pool.nt;			/* the pool may run fewer workers than asked */
	return true;
}

/*
 * One batch of nb windows from position b0 of the order: cut into nt parts
 * of about equal rows, run the parts, sum their gradients in part order (the
 * result does not depend on timing) and take an Adam step.
 */
static bool
train_batch(TrainRun *T, int64_t b0, int nb, int epoch, double *loss_sum, char *err, size_t errlen)
{
	const GlintruTrainOptions *opt = T->opt;
	GlintruStepJob jobs[GLINTRU_TRAIN_MAX_WORKERS];
	int64_t		rows = 0,
				tg = 0;
	int			start = 0;
	int64_t		acc = 0;

	for (int i = 0; i < nb; i++)
	{
		T->bch[i] = T->chunks[T->pool.order[b0 + i]];
		rows += T->bch[i].len;
		tg += T->bch[i].len - T->bch[i].p_lo;
	}
	for (int t = 0; t < T->nt; t++)
	{
		int			end = start;

		if (t == T->nt - 1)
			end = nb;
		else
			while (end < nb && acc + T->bch[end].len <= rows * (t + 1) / T->nt)
				acc += T->bch[end++].len;
		jobs[t] = (GlintruStepJob) {T->net, T->bch + start, end - start,
			{true, opt->p_emb, opt->p_att, opt->p_inner, glintru_mix64(opt->seed + (uint64_t) epoch)},
			1.0 / (double) tg, T->pool.grads[t], T->works[t], 0};
		start = end;
	}
	if (!glintru_pool_step(&T->pool, jobs, b0, T->bch, err, errlen))
		return false;
	for (int t = 0; t < T->nt; t++)
	{
		if (isnan(jobs[t].loss))
		{
			snprintf(err, errlen, "out of memory in a training step");
			return false;
		}
		*loss_sum += jobs[t].loss;
		if (t > 0)
			for (uint64_t i = 0; i < T->np; i++)
				T->pool.grads[0][i] += T->pool.grads[t][i];
	}
	T->adam_t++;
	{
		double		gscale = 1;

		/* clip the batch gradient's L2 norm (torch.nn.utils.clip_grad_norm_) */
		if (opt->clip_norm > 0)
		{
			double		norm = glintru_grad_norm(T->pool.grads[0], T->np);

			if (norm > opt->clip_norm)
				gscale = opt->clip_norm / (norm + 1e-6);
		}
		/* decoupled weight decay on weights (ndim ≥ 2: embedding, linear, GRU, conv), not on biases, LN, mix */
		for (int t = 0; t < GT_COUNT; t++)
		{
			const GlintruTensorSlot *sl = &T->net->layout.slot[t];

			glintru_adam_step(T->net->params + sl->offset, T->pool.grads[0] + sl->offset,
							  T->mom + sl->offset, T->vel + sl->offset, sl->numel, opt->lr,
							  0.9, 0.999, 1e-8, T->adam_t, sl->ndim >= 2 ? opt->weight_decay : 0, gscale);
		}
	}
	return true;
}

/* One pass over the shuffled windows; the summed loss into *loss_sum. */
static bool
train_epoch(TrainRun *T, int epoch, double *loss_sum, char *err, size_t errlen)
{
	const GlintruTrainOptions *opt = T->opt;
	int64_t    *order = T->pool.order;
	uint64_t	st = glintru_mix64(opt->seed ^ (0xE90C00ull + (uint64_t) epoch));

	/* shuffle the windows (Fisher–Yates, seeded per epoch) */
	for (int64_t i = T->n_chunks - 1; i > 0; i--)
	{
		int64_t		j = (int64_t) (glintru_mix64(st + (uint64_t) i) % (uint64_t) (i + 1));
		int64_t		tmp = order[i];

		order[i] = order[j];
		order[j] = tmp;
	}
	for (int64_t b0 = 0; b0 < T->n_chunks; b0 += opt->batch_size)
	{
		int			nb = (int) (T->n_chunks - b0 < opt->batch_size ? T->n_chunks - b0 : opt->batch_size);

		if (opt->should_stop && opt->should_stop(opt->stop_arg))
		{
			snprintf(err, errlen, "cancelled");
			return false;
		}
		if (!train_batch(T, b0, nb, epoch, loss_sum, err, errlen))
			return false;
	}
	return true;
}

/*
 * After an epoch: validation NDCG@10, the best net so far, the progress
 * report.  *stop is set when early stopping triggers.
 */
static bool
train_validate(TrainRun *T, int epoch, double t0, double loss_sum, GlintruProgressFn progress,
			   void *progress_arg, bool *stop, char *err, size_t errlen)
{
	const GlintruTrainOptions *opt = T->opt;
	GlintruMetrics val;
	GlintruEpochReport r;

	if (!glintru_pool_evaluate(&T->pool, T->net, T->split, GLINTRU_PROTOCOL_FULL, false, 10, opt->seed,
							   opt->should_stop, opt->stop_arg, &val, err, errlen))
		return false;
	if (val.ndcg > T->best_ndcg)
	{
		T->best_ndcg = val.ndcg;
		T->best_epoch = epoch;
		memcpy(T->best->params, T->net->params, sizeof(R) * T->np);
	}

	double		t1 = now_seconds();

	r.epoch = epoch;
	r.epochs = opt->epochs;
	r.loss = loss_sum / (double) T->n_targets_total;
	r.val_ndcg10 = val.ndcg;
	r.best_val_ndcg10 = T->best_ndcg;
	r.best_epoch = T->best_epoch;
	r.epoch_seconds = t1 - t0;
	r.elapsed_seconds = t1 - T->t_start;
	r.eta_seconds = (t1 - T->t_start) / epoch * (opt->epochs - epoch);
	r.stopped = opt->patience > 0 && epoch - T->best_epoch >= opt->patience;
	r.best = T->best;
	if (progress)
		progress(&r, progress_arg);
	*stop = r.stopped;
	return true;
}

/* Stops the workers and frees the run (not the best net). */
static void
train_free(TrainRun *T)
{
	glintru_pool_close(&T->pool);
	glintru_work_free(T->works[0]);
	if (T->own_params)
		T->net->params = T->own_params;
	free(T->chunks);
	free(T->bch);
	free(T->mom);
	free(T->vel);
	glintru_net_free(T->net);
}

/* Trains on a split and returns the best-validation net (see train.h). */
GlintruNet *
glintru_train(const GlintruSplit *split, const GlintruTrainOptions *opt,
			  GlintruProgressFn progress, void *progress_arg, char *err, size_t errlen)
{
	GlintruTrainOptions ro = *opt;
	TrainRun	T = {.split = split, .opt = &ro, .best_ndcg = -1, .t_start = now_seconds()};
	bool		ok = false;

	glintru_train_resolve(&ro, split);
	opt = &ro;
	if (!glintru_train_options_check(opt, err, errlen))
		return NULL;
	T.nt = opt->n_threads;
	glintru_pool_init(&T.pool, T.nt);
	T.net = glintru_net_new(split->n_rows, opt->d, opt->n_heads, opt->max_seq_len, opt->ln_eps);
	if (!T.net)
	{
		snprintf(err, errlen, "invalid model shape (d %d must be even and divisible by heads %d, d <= %d) or out of memory",
				 opt->d, opt->n_heads, GLINTRU_TRAIN_MAX_D);
		return NULL;
	}
	if (!train_setup(&T, err, errlen))
		goto out;
	for (int epoch = 1; epoch <= opt->epochs; epoch++)
	{
		double		t0 = now_seconds();
		double		loss_sum = 0;
		bool		stop;

		if (!train_epoch(&T, epoch, &loss_sum, err, errlen) ||
			!train_validate(&T, epoch, t0, loss_sum, progress, progress_arg, &stop, err, errlen))
			goto out;
		if (stop)
			break;
	}
	ok = true;
out:
	train_free(&T);
	if (!ok)
	{
		glintru_net_free(T.best);
		return NULL;
	}
	return T.best;
}
