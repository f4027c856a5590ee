/*
 * glintru-train — train a GLINT-RU model on an interaction file with the C
 * engine (src/core/train*.c) and write it as safetensors.
 *
 *   glintru-train --data FILE --out MODEL.safetensors [options]
 *
 * With --init-from OLD.safetensors training starts from that model (a warm
 * start; glintru_net_warm_start in src/core/train.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "train.h"
#include "util.h"

/* The option summary. */
static void
usage(FILE *f)
{
	fprintf(f,
			"usage: glintru-train --data FILE --out MODEL.safetensors [options]\n"
			"  --data FILE          TSV with header user_id, item_id, seq (or ts); .xz read via xz -dc\n"
			"  --out FILE           model file to write (safetensors)\n"
			"  --d N                hidden size (default 64)\n"
			"  --heads N            attention heads (default 4)\n"
			"  --max-seq-len N      window length L (default 200)\n"
			"  --epochs N           maximum epochs (default 200)\n"
			"  --batch-size N       sequence windows per Adam step (default 32)\n"
			"  --lr X               AdamW learning rate (default 0.001)\n"
			"  --weight-decay X     AdamW decoupled weight decay of the weights (default 0.01)\n"
			"  --clip-norm X        clip the batch gradient's L2 norm to X (default 1, 0 = off)\n"
			"  --dropout X          embedding and attention-output dropout (default: from the\n"
			"                       data, 0.5 at <= 20 training interactions per item, 0.2 at\n"
			"                       >= 200, log-linear between)\n"
			"  --inner-dropout X    gate, mix and MLP dropout (default: --dropout + 0.1)\n"
			"  --patience N         early stopping patience in epochs (default 10, 0 = off)\n"
			"  --seed N             random seed (default 42)\n"
			"  --min-item-count N   drop items with fewer interactions (default 0 = keep all;\n"
			"                       with --init-from, new items only)\n"
			"  --init-from FILE     warm start from this model (its architecture; its items\n"
			"                       keep their rows, new items are appended)\n"
			"  --threads N          worker threads (default 2)\n"
			"  --quiet              no progress lines\n");
}

typedef struct Ctx
{
	const GlintruSplit *split;
	const char *out;
	bool		quiet;
} Ctx;

static bool save_model(const GlintruNet *net, const GlintruSplit *split, const char *out, size_t *len);

/* Per epoch: checkpoint an improvement, print a progress line. */
static void
progress(const GlintruEpochReport *r, void *arg)
{
	Ctx		   *ctx = arg;

	/* checkpoint every improvement: an interrupted run keeps its best model */
	if (r->best_epoch == r->epoch)
	{
		size_t		len;

		if (!save_model(r->best, ctx->split, ctx->out, &len))
			fprintf(stderr, "glintru-train: warning: checkpoint to \"%s\" failed\n", ctx->out);
	}
	if (ctx->quiet)
		return;
	fprintf(stderr,
			"epoch %3d/%d  loss %.4f  val NDCG@10 %.4f (best %.4f @%d)  %.1f s/epoch  elapsed %.0f s  ETA %.0f s%s\n",
			r->epoch, r->epochs, r->loss, r->val_ndcg10, r->best_val_ndcg10, r->best_epoch,
			r->epoch_seconds, r->elapsed_seconds, r->eta_seconds,
			r->stopped ? "  (early stop)" : "");
}

/* Writes the net as a safetensors file (via a temporary and rename). */
static bool
save_model(const GlintruNet *net, const GlintruSplit *split, const char *out, size_t *len)
{
	char		err[512];
	GlintruModel *m = glintru_net_to_model(net, split, err, sizeof err);
	uint8_t    *buf;
	FILE	   *f;
	bool		ok;
	char		tmp[4096];

	if (!m)
	{
		fprintf(stderr, "glintru-train: %s\n", err);
		return false;
	}
	buf = glintru_safetensors_write(m, len);
	free(m);
	if (!buf)
		return false;
	/* write then rename: readers never see a half-written model */
	snprintf(tmp, sizeof tmp, "%s.tmp", out);
	f = fopen(tmp, "wb");
	ok = f && fwrite(buf, 1, *len, f) == *len;
	if (f && fclose(f) != 0)
		ok = false;
	ok = ok && rename(tmp, out) == 0;
	free(buf);
	return ok;
}

/* The model of a safetensors file (malloc'ed), else a message and NULL. */
static GlintruModel *
load_model(const char *path)
{
	char		err[512];
	size_t		len;
	uint8_t    *buf = glintru_read_file(path, &len);
	GlintruModel *m;

	if (!buf)
	{
		fprintf(stderr, "glintru-train: cannot read \"%s\"\n", path);
		return NULL;
	}
	m = glintru_safetensors_load(buf, len, err, sizeof err);
	free(buf);
	if (!m)
		fprintf(stderr, "glintru-train: %s: %s\n", path, err);
	return m;
}

/* The number of option name in [lo, hi], else a message and false. */
static bool
num_arg(const char *name, const char *v, double lo, double hi, double *out)
{
	char	   *end;
	double		x;

	if (!v)
	{
		fprintf(stderr, "glintru-train: %s needs a value\n", name);
		return false;
	}
	x = strtod(v, &end);
	if (*v == '\0' || *end != '\0' || x < lo || x > hi)
	{
		fprintf(stderr, "glintru-train: bad value for %s: \"%s\"\n", name, v);
		return false;
	}
	*out = x;
	return true;
}

/* Parse, check, read and split the data, train, save, report the test split. */
int
main(int argc, char **argv)
{
	GlintruTrainOptions o;
	const char *data = NULL,
			   *out = NULL,
			   *init_from = NULL;
	GlintruModel *from = NULL;
	double		min_count = 0;
	char		err[512];

	glintru_train_defaults(&o);
	for (int i = 1; i < argc; i++)
	{
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		double		x;

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
		{
			usage(stdout);
			return 0;
		}
		else if (strcmp(a, "--quiet") == 0)
		{
			o.quiet = true;
			continue;
		}
		else if (strcmp(a, "--data") == 0 && v)
			data = v;
		else if (strcmp(a, "--out") == 0 && v)
			out = v;
		else if (strcmp(a, "--init-from") == 0 && v)
			init_from = v;
#define NUM(flag, lo, hi, dst) \
		else if (strcmp(a, flag) == 0) { if (!num_arg(flag, v, lo, hi, &x)) return 2; dst = x; }
		/* integer ranges are the engine's limits (train.h); reals are judged by
		 * glintru_train_options_check below, as in SQL */
		/* architecture options are marked given: with --init-from they must agree */
#define ARCH(flag, lo, hi, dst, bit) \
		else if (strcmp(a, flag) == 0) { if (!num_arg(flag, v, lo, hi, &x)) return 2; dst = x; o.arch_set |= bit; }
		ARCH("--d", GLINTRU_TRAIN_MIN_D, GLINTRU_TRAIN_MAX_D, o.d, GLINTRU_ARCH_D)
		ARCH("--heads", 1, GLINTRU_TRAIN_MAX_HEADS, o.n_heads, GLINTRU_ARCH_HEADS)
		ARCH("--max-seq-len", 1, GLINTRU_TRAIN_MAX_SEQ_LEN, o.max_seq_len, GLINTRU_ARCH_MAX_SEQ_LEN)
#undef ARCH
		NUM("--epochs", 1, GLINTRU_TRAIN_MAX_EPOCHS, o.epochs)
		NUM("--batch-size", 1, GLINTRU_TRAIN_MAX_BATCH, o.batch_size)
		NUM("--lr", -HUGE_VAL, HUGE_VAL, o.lr)
		NUM("--weight-decay", -HUGE_VAL, HUGE_VAL, o.weight_decay)
		NUM("--clip-norm", -HUGE_VAL, HUGE_VAL, o.clip_norm)
		/* dropouts are marked given: the others come from the data (glintru_train_resolve) */
#define DROP(flag, dst, bit) \
		else if (strcmp(a, flag) == 0) { if (!num_arg(flag, v, -HUGE_VAL, HUGE_VAL, &x)) return 2; dst = x; o.dropout_set |= bit; }
		DROP("--dropout", o.p_emb, GLINTRU_DROPOUT_SET)
		DROP("--inner-dropout", o.p_inner, GLINTRU_INNER_DROPOUT_SET)
#undef DROP
		NUM("--patience", 0, GLINTRU_TRAIN_MAX_PATIENCE, o.patience)
		NUM("--seed", 0, 1.8e19, o.seed)
		NUM("--min-item-count", 0, 1e12, min_count)
		NUM("--threads", 1, GLINTRU_TRAIN_MAX_WORKERS, o.n_threads)
#undef NUM
		else
		{
			fprintf(stderr, "glintru-train: unknown or incomplete option \"%s\"\n", a);
			usage(stderr);
			return 2;
		}
		i++;
	}
	o.p_att = o.p_emb;			/* published: the same 0.2 for both */
	if (!data || !out)
	{
		usage(stderr);
		return 2;
	}
	if (init_from && !(from = load_model(init_from)))
		return 1;
	o.init_from = from;
	glintru_train_options_inherit(&o);
	if (!glintru_train_options_check(&o, err, sizeof err))
	{
		fprintf(stderr, "glintru-train: %s%s\n", err, from ? " (--init-from)" : "");
		return 2;
	}

	GlintruInteractions x;
	GlintruSplit split;

	if (!glintru_read_interactions(data, &x, err, sizeof err))
	{
		fprintf(stderr, "glintru-train: %s\n", err);
		return 1;
	}
	int64_t		n_all = x.off[x.n_users];
	int64_t		dropped = glintru_filter_new_items(&x, (int64_t) min_count, from);

	if (!(from ? glintru_split_extend(&x, from, &split, err, sizeof err)
		  : glintru_split_build(&x, &split, err, sizeof err)))
	{
		fprintf(stderr, "glintru-train: %s\n", err);
		return 1;
	}
	glintru_interactions_free(&x);
	if (!o.quiet)
		fprintf(stderr, "data: %lld interactions (%lld dropped by --min-item-count %.0f), %lld users (%lld with < 3 dropped), %lld items\n",
				(long long) n_all, (long long) dropped, min_count, (long long) split.n_users,
				(long long) split.n_dropped_users, (long long) split.n_rows - 1);
	glintru_train_resolve(&o, &split);
	if (!o.quiet)
		fprintf(stderr, "training: dropout %.2f, inner dropout %.2f%s (%.1f training interactions per item), "
				"AdamW lr %g weight decay %g, clip norm %g\n", o.p_emb, o.p_inner,
				o.dropout_set == (GLINTRU_DROPOUT_SET | GLINTRU_INNER_DROPOUT_SET) ? "" : " (from the data)",
				glintru_split_density(&split), o.lr, o.weight_decay, o.clip_norm);
	if (from && !o.quiet)
		fprintf(stderr, "init from %s: %lld items it knows, %lld new\n", init_from,
				(long long) from->config.n_rows - 1, (long long) (split.n_rows - from->config.n_rows));

	Ctx			ctx = {&split, out, o.quiet};
	GlintruNet *net = glintru_train(&split, &o, progress, &ctx, err, sizeof err);
	size_t		len;

	if (!net)
	{
		fprintf(stderr, "glintru-train: %s\n", err);
		return 1;
	}
	if (!save_model(net, &split, out, &len))
	{
		fprintf(stderr, "glintru-train: cannot write \"%s\"\n", out);
		return 1;
	}
	if (!o.quiet)
	{
		GlintruMetrics t;

		if (glintru_net_evaluate(net, &split, GLINTRU_PROTOCOL_FULL, true, 10, o.seed, o.n_threads, &t))
			fprintf(stderr, "wrote %s (%zu bytes); test full ranking: HR@10 %.4f NDCG@10 %.4f MRR@10 %.4f\n",
					out, len, t.hr, t.ndcg, t.mrr);
	}
	glintru_net_free(net);
	glintru_split_free(&split);
	free(from);
	return 0;
}
