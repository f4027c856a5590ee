/*
 * train_workers.c — the parts of the training engine's steps and
 * evaluations: the shared area that worker processes see (its layout, what
 * a worker computes from it), the run-level GlintruPool that hands parts to
 * a worker pool, and the fork pool of the command-line tools (the only
 * code of the core that forks, maps shared memory or uses pipes).  Step
 * workers compute the gradient of a part of every batch into their own
 * block of the area; evaluation workers rank a share of the users.
 *
 * Sharing: the leader (the process that called glintru_train) writes a
 * command into the area and calls the pool's run; until the pool's wait
 * returns, workers only read the area's parameters, split and order and
 * write their own part's slot and gradient block; the leader only reads
 * and writes part 0's memory.  The pool's run and wait are the memory
 * barriers (pipes here; a spinlock and latches in src/pg/train_pool.c).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "train_internal.h"
#include "metrics.h"

/* users per forward pass of an evaluation part */
#define EVAL_BATCH 128

/*
 * Parallelism note.  Debian's serial OpenBLAS is built without locking: two
 * threads calling cblas_sgemm at the same time corrupt each other's
 * buffers (measured: wrong products within seconds).  So the engine's
 * parallel paths run their extra parts in other processes, each with its
 * own OpenBLAS state, and exchange results through shared memory.
 */

/* ------------------------------------------------------------------ */
/* the area                                                             */
/* ------------------------------------------------------------------ */

#define AREA_MAGIC 0x474c494e54415231ull	/* "GLINTAR1" */
#define AREA_ALIGN 64

enum
{
	AREA_STEP = 1,
	AREA_EVAL = 2
};

/* One part's command and result. */
typedef struct AreaPart
{
	/*
	 * step: window positions order[first .. first+n), the part's dropout
	 * (the leader's GlintruDropout as is: a new field reaches the workers
	 * without a change here) and loss scale
	 */
	int64_t		first;
	int32_t		n;
	GlintruDropout drop;
	double		scale;
	/* results */
	double		loss;			/* step (NaN: out of memory) */
	GlintruMetrics m;			/* evaluation: sums of this part's users */
	int32_t		ok;				/* evaluation finished */
} AreaPart;

/*
 * The area: this header, then (at the offsets it names) parameters,
 * gradient blocks of parts 1..nt-1, the window order, and the split's
 * offsets, rows and popularity.  Offsets count from the header's address.
 */
typedef struct Area
{
	uint64_t	magic;
	int32_t		nt;				/* parts the area has room for */
	int32_t		cmd;			/* AREA_STEP or AREA_EVAL */
	/* the net's shape */
	int64_t		n_rows;
	int32_t		d,
				n_heads,
				max_seq_len;
	double		ln_eps;
	uint64_t	n_params;
	/* training */
	int32_t		batch_size;
	int64_t		n_chunks;		/* 0: an evaluation-only area */
	/* evaluation */
	int32_t		protocol,
				test,
				k;
	uint64_t	seed;
	/* the split (no vocabulary: workers need rows only) */
	int64_t		n_users;
	int64_t		n_split_rows;
	/* offsets */
	uint64_t	params_off,
				grads_off,
				order_off,
				split_off_off,
				split_rows_off,
				popularity_off,
				total;
	AreaPart	part[GLINTRU_TRAIN_MAX_WORKERS];
} Area;

/* n rounded up to the area's alignment. */
static uint64_t
area_align(uint64_t n)
{
	return (n + AREA_ALIGN - 1) / AREA_ALIGN * AREA_ALIGN;
}

/* The header of a run with nt parts (offsets and sizes; nothing copied). */
static void
area_layout(Area *a, int nt, const GlintruNet *net, const GlintruSplit *split, int64_t n_chunks,
			const GlintruTrainOptions *opt)
{
	uint64_t	np = net->layout.n_params;
	uint64_t	o = area_align(sizeof(Area));

	memset(a, 0, sizeof(*a));
	a->magic = AREA_MAGIC;
	a->nt = nt;
	a->n_rows = net->layout.n_rows;
	a->d = net->d;
	a->n_heads = net->n_heads;
	a->max_seq_len = net->max_seq_len;
	a->ln_eps = net->ln_eps;
	a->n_params = np;
	if (opt)
		a->batch_size = opt->batch_size;
	a->n_chunks = n_chunks;
	a->n_users = split->n_users;
	a->n_split_rows = split->off[split->n_users];
	a->params_off = o;
	o = area_align(o + sizeof(R) * np);
	a->grads_off = o;
	if (n_chunks > 0)
		o = area_align(o + sizeof(R) * np * (uint64_t) (nt - 1));
	a->order_off = o;
	o = area_align(o + sizeof(int64_t) * (uint64_t) n_chunks);
	a->split_off_off = o;
	o = area_align(o + sizeof(int64_t) * (uint64_t) (split->n_users + 1));
	a->split_rows_off = o;
	o = area_align(o + sizeof(int32_t) * (uint64_t) a->n_split_rows);
	a->popularity_off = o;
	o = area_align(o + sizeof(float) * (uint64_t) split->n_rows);
	a->total = o;
}

#define AREA_AT(a, off, type) ((type *) ((char *) (a) + (off)))

/* Part t's gradient block (t >= 1, training areas only). */
static R *
area_grad(Area *a, int t)
{
	return AREA_AT(a, a->grads_off, R) + a->n_params * (uint64_t) (t - 1);
}

/* ------------------------------------------------------------------ */
/* what a part computes                                                 */
/* ------------------------------------------------------------------ */

/* One evaluation share: users u0 .. u1-1 and their metrics. */
typedef struct EvalJob
{
	const GlintruNet *net;
	const GlintruSplit *split;
	GlintruProtocol protocol;
	bool		test;
	int			k;
	uint64_t	seed;
	int64_t		u0,
				u1;
	bool		(*should_stop) (void *arg);
	void	   *stop_arg;
	GlintruMetrics m;
	bool		ok;
} EvalJob;

/* Ranks the users of one job (validation or test item) into j->m. */
static void
eval_run(EvalJob *j)
{
	const GlintruNet *net = j->net;
	const GlintruSplit *s = j->split;
	int			d = net->d,
				L = net->max_seq_len;
	int64_t		N1 = net->layout.n_rows;
	GlintruWork *w = glintru_work_new();
	GlintruRanker *rk = glintru_ranker_new(j->protocol, N1, s->popularity, j->seed);
	GlintruChunk ch[EVAL_BATCH];
	R		   *U = malloc(sizeof(R) * EVAL_BATCH * d);
	R		   *S = malloc(sizeof(R) * EVAL_BATCH * (size_t) N1);
	float	   *Sf = malloc(sizeof(float) * (size_t) N1);

	glintru_metrics_init(&j->m, j->k);
	j->ok = false;
	if (!w || !rk || !U || !S || !Sf)
		goto out;
	for (int64_t u = j->u0; u < j->u1; u += EVAL_BATCH)
	{
		int			nb = (int) (j->u1 - u < EVAL_BATCH ? j->u1 - u : EVAL_BATCH);

		if (j->should_stop && j->should_stop(j->stop_arg))
			goto out;
		for (int i = 0; i < nb; i++)
		{
			const int32_t *h = s->rows + s->off[u + i];
			int32_t		nh = glintru_split_len(s, u + i) - (j->test ? 1 : 2);
			int32_t		len = nh < L ? nh : L;

			ch[i] = (GlintruChunk) {h + nh - len, len, len - 1, NULL, 0};
		}
		if (!glintru_net_user_vectors(net, ch, nb, U, w))
			goto out;
		GEMM(RM, NT, TR, nb, (int) N1, d, 1, U, d, PRM(net, GT_ITEM_EMBEDDING), d, 0, S, (int) N1);
		for (int i = 0; i < nb; i++)
		{
			const int32_t *h = s->rows + s->off[u + i];
			int32_t		nh = glintru_split_len(s, u + i) - (j->test ? 1 : 2);
			const R    *row = S + (size_t) i * N1;

			for (int64_t q = 0; q < N1; q++)
				Sf[q] = (float) row[q];
			glintru_metrics_add(&j->m, glintru_ranker_rank(rk, Sf, h[nh], h, nh, (uint64_t) (u + i)));
		}
	}
	j->ok = true;
out:
	glintru_work_free(w);
	glintru_ranker_free(rk);
	free(U);
	free(S);
	free(Sf);
}

/* Runs one part of a batch: zeroes its gradient block, then loss and gradient. */
static void
step_run(GlintruStepJob *j)
{
	memset(j->grad, 0, sizeof(R) * j->net->layout.n_params);
	j->loss = j->n > 0 ? glintru_net_loss_grad(j->net, j->ch, j->n, &j->drop, j->scale, j->grad,
											   false, j->w) : 0;
}

/* The evaluation share of part t of nt: users [n*t/nt, n*(t+1)/nt). */
static EvalJob
eval_share(const Area *a, const GlintruNet *net, const GlintruSplit *split, int t, int nt)
{
	return (EvalJob) {net, split, (GlintruProtocol) a->protocol, a->test != 0, a->k, a->seed,
		split->n_users * t / nt, split->n_users * (t + 1) / nt, NULL, NULL, {0}, false};
}

/* A worker's view of the area: a net and a split over its mapping. */
struct GlintruAreaWorker
{
	Area	   *a;
	int			part;
	GlintruNet	net;
	GlintruSplit split;
	GlintruChunk *chunks;		/* every training window, as the leader has them */
	GlintruChunk *bch;
	GlintruWork *w;
};

/* A worker's state for part over area (see train.h). */
GlintruAreaWorker *
glintru_area_worker_new(void *area, int part)
{
	Area	   *a = area;
	GlintruAreaWorker *w;

	if (a->magic != AREA_MAGIC || part < 1 || part >= a->nt)
		return NULL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->a = a;
	w->part = part;
	glintru_layout_init(&w->net.layout, a->n_rows, a->d);
	w->net.d = a->d;
	w->net.n_heads = a->n_heads;
	w->net.max_seq_len = a->max_seq_len;
	w->net.ln_eps = a->ln_eps;
	w->net.params = AREA_AT(a, a->params_off, R);
	w->split.n_rows = a->n_rows;
	w->split.n_users = a->n_users;
	w->split.off = AREA_AT(a, a->split_off_off, int64_t);
	w->split.rows = AREA_AT(a, a->split_rows_off, int32_t);
	w->split.popularity = AREA_AT(a, a->popularity_off, float);
	w->w = glintru_work_new();
	if (!w->w)
		goto fail;
	if (a->n_chunks > 0)
	{
		/* the same function over the same rows: the leader's windows, uids included */
		w->chunks = malloc(sizeof(GlintruChunk) * (size_t) a->n_chunks);
		w->bch = malloc(sizeof(GlintruChunk) * (size_t) a->batch_size);
		if (!w->chunks || !w->bch ||
			glintru_train_windows(&w->split, a->max_seq_len, w->chunks, a->n_chunks) != a->n_chunks)
			goto fail;
	}
	return w;
fail:
	glintru_area_worker_free(w);
	return NULL;
}

/* Runs the area's current command for this worker's part (see train.h). */
bool
glintru_area_worker_run(GlintruAreaWorker *w, bool (*should_stop) (void *arg), void *arg)
{
	Area	   *a = w->a;
	AreaPart   *pp = &a->part[w->part];

	if (a->cmd == AREA_STEP && a->n_chunks > 0)
	{
		const int64_t *order = AREA_AT(a, a->order_off, int64_t);
		GlintruStepJob j;

		for (int i = 0; i < pp->n; i++)
			w->bch[i] = w->chunks[order[pp->first + i]];
		j = (GlintruStepJob) {&w->net, w->bch, pp->n, pp->drop, pp->scale, area_grad(a, w->part), w->w, 0};
		step_run(&j);
		pp->loss = j.loss;
		return !isnan(j.loss);
	}
	if (a->cmd == AREA_EVAL)
	{
		EvalJob		j = eval_share(a, &w->net, &w->split, w->part, a->nt);

		j.should_stop = should_stop;
		j.stop_arg = arg;
		eval_run(&j);
		pp->m = j.m;
		pp->ok = j.ok;
		return j.ok;
	}
	return false;
}

/* Frees a worker's state (NULL is fine); the area stays. */
void
glintru_area_worker_free(GlintruAreaWorker *w)
{
	if (!w)
		return;
	glintru_work_free(w->w);
	free(w->chunks);
	free(w->bch);
	free(w);
}

/* ------------------------------------------------------------------ */
/* the fork pool (command-line tools)                                   */
/* ------------------------------------------------------------------ */

/* Forked children on an anonymous shared mapping, one command pipe and one done pipe each. */
typedef struct ForkPool
{
	GlintruWorkerPool ops;		/* first: the engine's handle */
	void	   *shm;
	size_t		bytes;
	int			n;
	pid_t		pid[GLINTRU_TRAIN_MAX_WORKERS];
	int			cmd[GLINTRU_TRAIN_MAX_WORKERS];	/* leader writes a byte per command */
	int			done[GLINTRU_TRAIN_MAX_WORKERS];	/* worker writes a byte per result */
} ForkPool;

/* Moves exactly n bytes through fd (write or read); false on EOF or error. */
static bool
io_all(int fd, char *c, size_t n, bool wr)
{
	while (n > 0)
	{
		ssize_t		k = wr ? write(fd, c, n) : read(fd, c, n);

		if (k <= 0)
			return false;
		c += k;
		n -= (size_t) k;
	}
	return true;
}

/* An anonymous shared mapping, inherited by the children. */
static void *
fork_map(GlintruWorkerPool *pool, size_t bytes, char *err, size_t errlen)
{
	ForkPool   *fp = (ForkPool *) pool;

	fp->shm = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (fp->shm == MAP_FAILED)
	{
		fp->shm = NULL;
		snprintf(err, errlen, "out of memory (shared mapping)");
		return NULL;
	}
	fp->bytes = bytes;
	return fp->shm;
}

/* A child's life: a command per byte on cmd_fd, a byte back on done_fd, until EOF. */
static void
fork_child(void *area, int part, int cmd_fd, int done_fd)
{
	GlintruAreaWorker *w = glintru_area_worker_new(area, part);
	char		c;

	while (io_all(cmd_fd, &c, 1, false))
	{
		/* without state the part reports its failure through the area */
		if (w)
			glintru_area_worker_run(w, NULL, NULL);
		else
		{
			((Area *) area)->part[part].loss = NAN;
			((Area *) area)->part[part].ok = 0;
		}
		if (!io_all(done_fd, &c, 1, true))
			break;
	}
	_exit(0);
}

/* Forks n children for parts 1..n. */
static int
fork_start(GlintruWorkerPool *pool, int n, char *err, size_t errlen)
{
	ForkPool   *fp = (ForkPool *) pool;

	fflush(NULL);
	for (int t = 1; t <= n; t++)
	{
		int			c[2],
					d[2];

		if (pipe(c) != 0)
			goto pipes;
		if (pipe(d) != 0)
		{
			close(c[0]);
			close(c[1]);
			goto pipes;
		}
		fp->pid[t] = fork();
		if (fp->pid[t] == 0)
		{
			close(c[1]);
			close(d[0]);
			for (int q = 1; q < t; q++)
			{
				close(fp->cmd[q]);
				close(fp->done[q]);
			}
			fork_child(fp->shm, t, c[0], d[1]);
		}
		close(c[0]);
		close(d[1]);
		fp->cmd[t] = c[1];
		fp->done[t] = d[0];
		if (fp->pid[t] < 0)
		{
			snprintf(err, errlen, "cannot fork a worker process");
			return -1;
		}
		fp->n = t;
	}
	return n;
pipes:
	snprintf(err, errlen, "cannot create pipes for worker processes");
	return -1;
}

/* A byte to every child: run the area's command. */
static bool
fork_run(GlintruWorkerPool *pool, char *err, size_t errlen)
{
	ForkPool   *fp = (ForkPool *) pool;
	char		c = 1;

	for (int t = 1; t <= fp->n; t++)
		if (!io_all(fp->cmd[t], &c, 1, true))
		{
			snprintf(err, errlen, "training worker %d died", t);
			return false;
		}
	return true;
}

/* A byte from every child: its part is done. */
static bool
fork_wait(GlintruWorkerPool *pool, char *err, size_t errlen)
{
	ForkPool   *fp = (ForkPool *) pool;
	char		c;

	for (int t = 1; t <= fp->n; t++)
		if (!io_all(fp->done[t], &c, 1, false))
		{
			snprintf(err, errlen, "training worker %d died", t);
			return false;
		}
	return true;
}

/* Closes the pipes (the children exit on EOF), waits for them, unmaps, frees the pool. */
static void
fork_close(GlintruWorkerPool *pool)
{
	ForkPool   *fp = (ForkPool *) pool;

	for (int t = 1; t < GLINTRU_TRAIN_MAX_WORKERS; t++)
	{
		if (fp->cmd[t] >= 0)
			close(fp->cmd[t]);
		if (fp->done[t] >= 0)
			close(fp->done[t]);
		if (fp->pid[t] > 0)
			waitpid(fp->pid[t], NULL, 0);
	}
	if (fp->shm)
		munmap(fp->shm, fp->bytes);
	free(fp);
}

/* A new fork pool, or NULL. */
static GlintruWorkerPool *
fork_pool_new(void)
{
	ForkPool   *fp = calloc(1, sizeof(ForkPool));

	if (!fp)
		return NULL;
	fp->ops = (GlintruWorkerPool) {fork_map, fork_start, fork_run, fork_wait, fork_close};
	for (int t = 0; t < GLINTRU_TRAIN_MAX_WORKERS; t++)
	{
		fp->pid[t] = -1;
		fp->cmd[t] = -1;
		fp->done[t] = -1;
	}
	return &fp->ops;
}

/* ------------------------------------------------------------------ */
/* the parts of a run                                                   */
/* ------------------------------------------------------------------ */

/* A run of nt parts with no area and no workers yet. */
void
glintru_pool_init(GlintruPool *p, int nt)
{
	memset(p, 0, sizeof(*p));
	p->nt = nt < 1 ? 1 : nt > GLINTRU_TRAIN_MAX_WORKERS ? GLINTRU_TRAIN_MAX_WORKERS : nt;
}

/* The run's area: mapped by the pool (nt > 1) or malloc'ed; the split copied in. */
bool
glintru_pool_map(GlintruPool *p, GlintruWorkerPool *wp, const GlintruNet *net,
				 const GlintruSplit *split, int64_t n_chunks, const GlintruTrainOptions *opt,
				 char *err, size_t errlen)
{
	Area		hdr;
	Area	   *a;
	uint64_t	np = net->layout.n_params;

	area_layout(&hdr, p->nt, net, split, n_chunks, opt);
	if (p->nt > 1)
	{
		if (!wp)
		{
			if (!(p->own = fork_pool_new()))
			{
				snprintf(err, errlen, "out of memory");
				return false;
			}
			wp = p->own;
		}
		p->wp = wp;
		p->area = wp->map(wp, hdr.total, err, errlen);
		p->area_mapped = p->area != NULL;
	}
	else
		p->area = malloc(hdr.total);
	if (!p->area)
	{
		if (p->nt <= 1)
			snprintf(err, errlen, "out of memory");
		return false;
	}
	a = p->area;
	*a = hdr;
	p->params = AREA_AT(a, a->params_off, R);
	p->order = AREA_AT(a, a->order_off, int64_t);
	if (n_chunks > 0)
	{
		p->grads[0] = malloc(sizeof(R) * np);
		if (!p->grads[0])
		{
			snprintf(err, errlen, "out of memory");
			return false;
		}
		for (int t = 1; t < p->nt; t++)
			p->grads[t] = area_grad(a, t);
	}
	memcpy(AREA_AT(a, a->split_off_off, int64_t), split->off, sizeof(int64_t) * (size_t) (split->n_users + 1));
	memcpy(AREA_AT(a, a->split_rows_off, int32_t), split->rows, sizeof(int32_t) * (size_t) a->n_split_rows);
	memcpy(AREA_AT(a, a->popularity_off, float), split->popularity, sizeof(float) * (size_t) split->n_rows);
	return true;
}

/* Starts workers for parts 1..nt-1; fewer running means fewer parts. */
bool
glintru_pool_start(GlintruPool *p, char *err, size_t errlen)
{
	int			n;

	if (p->nt <= 1)
		return true;
	n = p->wp->start(p->wp, p->nt - 1, err, errlen);
	if (n < 0)
		return false;
	p->nt = 1 + n;
	((Area *) p->area)->nt = p->nt;
	return true;
}

/* One batch: parts 1.. to the workers, part 0 here, then their losses. */
bool
glintru_pool_step(GlintruPool *p, GlintruStepJob *jobs, int64_t first0, const GlintruChunk *bch,
				  char *err, size_t errlen)
{
	Area	   *a = p->area;

	if (p->nt > 1)
	{
		a->cmd = AREA_STEP;
		for (int t = 1; t < p->nt; t++)
		{
			AreaPart   *pp = &a->part[t];

			pp->first = (int64_t) (jobs[t].ch - bch) + first0;
			pp->n = jobs[t].n;
			pp->drop = jobs[t].drop;
			pp->scale = jobs[t].scale;
			pp->loss = NAN;
		}
		if (!p->wp->run(p->wp, err, errlen))
			return false;
	}
	step_run(&jobs[0]);
	if (p->nt > 1 && !p->wp->wait(p->wp, err, errlen))
		return false;
	for (int t = 1; t < p->nt; t++)
		jobs[t].loss = a->part[t].loss;
	return true;
}

/* Metrics of net on split, users shared among the parts (see train_internal.h). */
bool
glintru_pool_evaluate(GlintruPool *p, const GlintruNet *net, const GlintruSplit *split,
					  GlintruProtocol protocol, bool test, int k, uint64_t seed,
					  bool (*should_stop) (void *arg), void *stop_arg,
					  GlintruMetrics *out, char *err, size_t errlen)
{
	Area	   *a = p->area;
	EvalJob		j0;
	bool		ok;

	a->cmd = AREA_EVAL;
	a->protocol = (int32_t) protocol;
	a->test = test;
	a->k = k;
	a->seed = seed;
	for (int t = 1; t < p->nt; t++)
		a->part[t].ok = 0;
	if (p->nt > 1 && !p->wp->run(p->wp, err, errlen))
		return false;
	j0 = eval_share(a, net, split, 0, p->nt);
	j0.should_stop = should_stop;
	j0.stop_arg = stop_arg;
	eval_run(&j0);
	if (!j0.ok && should_stop && should_stop(stop_arg))
	{
		snprintf(err, errlen, "cancelled");
		return false;
	}
	if (p->nt > 1 && !p->wp->wait(p->wp, err, errlen))
		return false;
	/* merged in part order: the sums do not depend on timing */
	glintru_metrics_init(out, k);
	glintru_metrics_merge(out, &j0.m);
	ok = j0.ok;
	for (int t = 1; t < p->nt; t++)
	{
		ok = ok && a->part[t].ok;
		glintru_metrics_merge(out, &a->part[t].m);
	}
	glintru_metrics_finish(out);
	if (!ok)
		snprintf(err, errlen, "out of memory in validation");
	return ok;
}

/* Stops the workers, releases the area and the caller's gradient block. */
void
glintru_pool_close(GlintruPool *p)
{
	free(p->grads[0]);
	if (p->wp)
		p->wp->close(p->wp);	/* releases a mapped area; frees a fork pool */
	if (!p->area_mapped)
		free(p->area);
	glintru_pool_init(p, p->nt);
}

/* ------------------------------------------------------------------ */
/* evaluation of a net outside training                                 */
/* ------------------------------------------------------------------ */

/* Metrics of a net on a split; parts 1.. of the users run in forked processes. */
bool
glintru_net_evaluate(const GlintruNet *net, const GlintruSplit *split, GlintruProtocol protocol,
					 bool test, int k, uint64_t seed, int n_threads, GlintruMetrics *out)
{
	GlintruPool p;
	GlintruNet	view;
	char		err[256];
	bool		ok;

	if (n_threads <= 1)
	{
		EvalJob		j = {net, split, protocol, test, k, seed, 0, split->n_users, NULL, NULL, {0}, false};

		eval_run(&j);
		*out = j.m;
		glintru_metrics_finish(out);
		return j.ok;
	}
	glintru_pool_init(&p, n_threads);
	ok = glintru_pool_map(&p, NULL, net, split, 0, NULL, err, sizeof err);
	if (ok)
	{
		/* the workers read the parameters from the area */
		memcpy(p.params, net->params, sizeof(R) * net->layout.n_params);
		view = *net;
		view.params = p.params;
		ok = glintru_pool_start(&p, err, sizeof err) &&
			glintru_pool_evaluate(&p, &view, split, protocol, test, k, seed, NULL, NULL, out, err, sizeof err);
	}
	glintru_pool_close(&p);
	return ok;
}
