/*
 * train_workers.c — the worker processes of the training engine: the only
 * file that forks, maps shared memory or uses pipes.  Evaluation workers
 * rank a share of the users each; step workers compute the gradient of a
 * part of every batch into a shared gradient block.
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

/* users per forward pass of an evaluation worker */
#define EVAL_BATCH 128

/* One evaluation worker's share: users u0 .. u1-1 and their metrics. */
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
	GlintruMetrics m;
	bool		ok;
} EvalJob;

/* Ranks the users of one job (validation or test item) into j->m. */
static void
eval_worker(EvalJob *j)
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

/*
 * Parallelism note.  Debian's serial OpenBLAS is built without locking: two
 * threads calling cblas_sgemm at the same time corrupt each other's
 * buffers (measured: wrong products within seconds).  So the engine's
 * parallel paths run their extra workers as forked processes, each with its
 * own OpenBLAS state, and exchange results through pipes and shared memory.
 */

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

/* Writes exactly n bytes to fd; false on error. */
static bool
write_all(int fd, const void *p, size_t n)
{
	/* io_all does not write through c when wr is true */
	return io_all(fd, (char *) p, n, true);
}

/* Reads exactly n bytes from fd; false on EOF or error. */
static bool
read_all(int fd, void *p, size_t n)
{
	return io_all(fd, p, n, false);
}

/* Metrics of a net on a split; parts 1.. of the users run in forked processes. */
bool
glintru_net_evaluate(const GlintruNet *net, const GlintruSplit *split, GlintruProtocol protocol,
					 bool test, int k, uint64_t seed, int n_threads, GlintruMetrics *out)
{
	EvalJob		jobs[GLINTRU_TRAIN_MAX_WORKERS];
	pid_t		pid[GLINTRU_TRAIN_MAX_WORKERS];
	int			fds[GLINTRU_TRAIN_MAX_WORKERS][2];
	bool		ok = true;

	if (n_threads < 1)
		n_threads = 1;
	if (n_threads > GLINTRU_TRAIN_MAX_WORKERS)
		n_threads = GLINTRU_TRAIN_MAX_WORKERS;
	for (int t = 0; t < n_threads; t++)
	{
		jobs[t] = (EvalJob) {net, split, protocol, test, k, seed,
			split->n_users * t / n_threads, split->n_users * (t + 1) / n_threads, {0}, false};
		pid[t] = -1;
	}
	fflush(NULL);
	for (int t = 1; t < n_threads; t++)
	{
		if (pipe(fds[t]) != 0)
			continue;
		pid[t] = fork();
		if (pid[t] == 0)
		{
			close(fds[t][0]);
			eval_worker(&jobs[t]);
			write_all(fds[t][1], &jobs[t].m, sizeof(GlintruMetrics));
			write_all(fds[t][1], &jobs[t].ok, sizeof(bool));
			_exit(0);
		}
		close(fds[t][1]);
		if (pid[t] < 0)
			close(fds[t][0]);
	}
	eval_worker(&jobs[0]);
	for (int t = 1; t < n_threads; t++)
	{
		if (pid[t] > 0)
		{
			bool		got = read_all(fds[t][0], &jobs[t].m, sizeof(GlintruMetrics)) &&
				read_all(fds[t][0], &jobs[t].ok, sizeof(bool));

			close(fds[t][0]);
			waitpid(pid[t], NULL, 0);
			if (!got)
				jobs[t].ok = false;
		}
		else
			eval_worker(&jobs[t]);	/* no process: do it here */
	}
	glintru_metrics_init(out, k);
	for (int t = 0; t < n_threads; t++)
	{
		ok = ok && jobs[t].ok;
		glintru_metrics_merge(out, &jobs[t].m);
	}
	glintru_metrics_finish(out);
	return ok;
}


/* ------------------------------------------------------------------ */
/* step workers                                                         */
/* ------------------------------------------------------------------ */

/* A step for a worker process: chunks order[first .. first+n) of the epoch. */
typedef struct StepCmd
{
	int			type;			/* 1 step, 0 exit */
	int64_t		first;
	int			n;
	uint64_t	drop_seed;
	double		scale;
} StepCmd;

/* Runs one part of a batch: zeroes its gradient block, then loss and gradient. */
static void
step_run(GlintruStepJob *j)
{
	memset(j->grad, 0, sizeof(R) * j->net->layout.n_params);
	j->loss = j->n > 0 ? glintru_net_loss_grad(j->net, j->ch, j->n, &j->drop, j->scale, j->grad,
											   false, j->w) : 0;
}

/* The life of a step worker process: a step per command, until told to exit. */
static void
worker_loop(int cmd_fd, int done_fd, const GlintruNet *net, const GlintruChunk *chunks,
			const int64_t *order, R *grad, const GlintruTrainOptions *opt)
{
	GlintruWork *w = glintru_work_new();
	GlintruChunk *bch = malloc(sizeof(GlintruChunk) * (size_t) opt->batch_size);
	StepCmd		c;

	while (w && bch && read_all(cmd_fd, &c, sizeof c) && c.type == 1)
	{
		GlintruStepJob j;

		for (int i = 0; i < c.n; i++)
			bch[i] = chunks[order[c.first + i]];
		j = (GlintruStepJob) {net, bch, c.n, {true, opt->p_emb, opt->p_att, opt->p_inner, c.drop_seed},
			c.scale, grad, w, 0};
		step_run(&j);
		if (!write_all(done_fd, &j.loss, sizeof(double)))
			break;
	}
	_exit(0);
}

/* A pool of nt parts with no mapping and no processes yet. */
void
glintru_pool_init(GlintruPool *p, int nt)
{
	memset(p, 0, sizeof(*p));
	p->nt = nt;
	p->shm = MAP_FAILED;
	for (int t = 0; t < GLINTRU_TRAIN_MAX_WORKERS; t++)
	{
		p->pid[t] = -1;
		p->cmd[t] = -1;
		p->done[t] = -1;
	}
}

/*
 * Maps the memory the worker processes see: parameters, their gradient
 * blocks and the epoch's window order; grads[0] is the parent's (malloc).
 */
bool
glintru_pool_map(GlintruPool *p, uint64_t np, int64_t n_chunks, char *err, size_t errlen)
{
	p->shm_bytes = sizeof(R) * np * (size_t) p->nt + sizeof(int64_t) * (size_t) n_chunks;
	p->shm = mmap(NULL, p->shm_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p->shm == MAP_FAILED)
	{
		snprintf(err, errlen, "out of memory (shared mapping)");
		return false;
	}
	p->params = (R *) p->shm;
	p->order = (int64_t *) ((char *) p->shm + sizeof(R) * np * (size_t) p->nt);
	for (int t = 0; t < p->nt; t++)
	{
		p->grads[t] = t == 0 ? malloc(sizeof(R) * np) : (R *) p->shm + np * (size_t) t;
		if (!p->grads[t])
		{
			snprintf(err, errlen, "out of memory");
			return false;
		}
	}
	return true;
}

/* Forks the workers for parts 1..nt-1 (they see net, chunks and the order). */
bool
glintru_pool_start(GlintruPool *p, const GlintruNet *net, const GlintruChunk *chunks,
				   const GlintruTrainOptions *opt, char *err, size_t errlen)
{
	fflush(NULL);
	for (int t = 1; t < p->nt; t++)
	{
		int			c[2],
					d[2];

		if (pipe(c) != 0 || pipe(d) != 0)
		{
			snprintf(err, errlen, "cannot create pipes for worker processes");
			return false;
		}
		p->pid[t] = fork();
		if (p->pid[t] == 0)
		{
			close(c[1]);
			close(d[0]);
			for (int q = 1; q < t; q++)
			{
				close(p->cmd[q]);
				close(p->done[q]);
			}
			worker_loop(c[0], d[1], net, chunks, p->order, p->grads[t], opt);
		}
		close(c[0]);
		close(d[1]);
		p->cmd[t] = c[1];
		p->done[t] = d[0];
		if (p->pid[t] < 0)
		{
			snprintf(err, errlen, "cannot fork a worker process");
			return false;
		}
	}
	return true;
}

/*
 * One batch: parts 1.. to the workers (their windows as positions in the
 * order, batch start first0; bch is the batch), part 0 here, then the
 * workers' losses into jobs[t].loss.
 */
bool
glintru_pool_step(GlintruPool *p, GlintruStepJob *jobs, int64_t first0, const GlintruChunk *bch,
				  char *err, size_t errlen)
{
	for (int t = 1; t < p->nt; t++)
	{
		StepCmd		cmd;

		/* whole struct zeroed: its padding bytes go through the pipe too */
		memset(&cmd, 0, sizeof cmd);
		cmd.type = 1;
		cmd.first = (int64_t) (jobs[t].ch - bch) + first0;
		cmd.n = jobs[t].n;
		cmd.drop_seed = jobs[t].drop.seed;
		cmd.scale = jobs[t].scale;

		if (!write_all(p->cmd[t], &cmd, sizeof cmd))
		{
			snprintf(err, errlen, "training worker %d died", t);
			return false;
		}
	}
	step_run(&jobs[0]);
	for (int t = 1; t < p->nt; t++)
		if (!read_all(p->done[t], &jobs[t].loss, sizeof(double)))
		{
			snprintf(err, errlen, "training worker %d died", t);
			return false;
		}
	return true;
}

/* Tells the workers to exit, waits for them, unmaps and frees the blocks. */
void
glintru_pool_close(GlintruPool *p)
{
	for (int t = 1; t < p->nt; t++)
	{
		if (p->cmd[t] >= 0)
		{
			StepCmd		quit;

			memset(&quit, 0, sizeof quit);
			write_all(p->cmd[t], &quit, sizeof quit);
			close(p->cmd[t]);
		}
		if (p->done[t] >= 0)
			close(p->done[t]);
		if (p->pid[t] > 0)
			waitpid(p->pid[t], NULL, 0);
	}
	free(p->grads[0]);
	if (p->shm != MAP_FAILED)
		munmap(p->shm, p->shm_bytes);
	glintru_pool_init(p, p->nt);
}
