/*
 * test_train_smoke.c — end-to-end check of the training engine on tiny
 * synthetic data: bad input files are rejected with clear errors, the loss
 * decreases, training is deterministic for a seed (two threads), the saved
 * file loads with glintru_safetensors_load, and the extension's forward
 * pass (src/forward.c) gives the engine's user vectors, for every prefix of
 * histories shorter and longer than max_seq_len; and the warm start (a
 * grown vocabulary keeps a model's rows bit for bit before the first step).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "forward.h"
#include "safetensors.h"
#include "train.h"

static int	failures = 0;

#define CHECK(cond, ...) do { if (cond) printf("ok   "); else { printf("FAIL "); failures++; } \
		printf(__VA_ARGS__); printf("\n"); err[0] = '\0'; } while (0)

static char err[512];

static char tmpdir[] = "/tmp/glintru-smoke-XXXXXX";

/* Writes text to tmpdir/name; the path (static buffer), or NULL. */
static const char *
write_tmp(const char *name, const char *text)
{
	static char path[512];
	FILE	   *f;

	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	if (!f)
		return NULL;
	fputs(text, f);
	fclose(f);
	return path;
}

/* A file with this text must be rejected with a message containing expect. */
static void
bad_file(const char *name, const char *text, const char *expect)
{
	GlintruInteractions x;
	const char *p = write_tmp(name, text);
	bool		ok = glintru_read_interactions(p, &x, err, sizeof err);

	CHECK(!ok && strstr(err, expect) != NULL, "%s rejected: %s", name, err);
	if (ok)
		glintru_interactions_free(&x);
}

/* Records each epoch's loss and prints it. */
static void
progress(const GlintruEpochReport *r, void *arg)
{
	double	   *losses = arg;

	losses[r->epoch - 1] = r->loss;
	printf("     epoch %d loss %.4f val NDCG@10 %.4f\n", r->epoch, r->loss, r->val_ndcg10);
}

/*
 * Warm start from model lm (30 items 100..129, d 16): grown data where
 * users 1..20 walk the old ring and users 21..60 a new ring of items
 * 200..209.  The vocabulary keeps lm's rows and appends the new items; the
 * mapping copies old rows and every other tensor bit for bit before the
 * first step, and new rows start as in a fresh net of the seed.
 */
static void
check_warm_start(const GlintruModel *lm)
{
	int64_t		us[60 * 12],
				it[60 * 12];
	int			n = 0;
	GlintruInteractions gx;
	GlintruSplit gs;

	for (int u = 1; u <= 60; u++)
		for (int t = 0; t < 12; t++, n++)
		{
			us[n] = u;
			it[n] = u <= 20 ? 100 + (u + t) % 30 : 200 + (u + 3 * t) % 10;
		}
	CHECK(glintru_interactions_from_triples(us, it, NULL, n, &gx, err, sizeof err), "grown triples %s", err);
	CHECK(glintru_filter_new_items(&gx, 1000, lm) == 40 * 12 && gx.off[gx.n_users] == 20 * 12,
		  "warm-start filter: rare new items dropped, rare old items kept");
	glintru_interactions_free(&gx);
	glintru_interactions_from_triples(us, it, NULL, n, &gx, err, sizeof err);
	CHECK(glintru_split_extend(&gx, lm, &gs, err, sizeof err), "extended split %s", err);
	{
		bool		same = gs.n_rows == lm->config.n_rows + 10;

		for (int64_t r = 1; same && r < gs.n_rows; r++)
			same = gs.item_ids[r] == (r < lm->config.n_rows ? glintru_item_ids(lm)[r] : 200 + r - lm->config.n_rows);
		CHECK(same, "vocabulary: the model's %lld items in order, then 10 new ones appended",
			  (long long) lm->config.n_rows - 1);
	}

	GlintruNet *fresh = glintru_net_new(gs.n_rows, 16, 2, 8, lm->config.layer_norm_eps);
	GlintruNet *warm = glintru_net_new(gs.n_rows, 16, 2, 8, lm->config.layer_norm_eps);

	glintru_net_init(fresh, 11);
	glintru_net_init(warm, 11);
	CHECK(glintru_net_warm_start(warm, gs.item_ids, lm, err, sizeof err) == 30, "warm start keeps 30 rows %s", err);
	{
		const float *E_old = glintru_param(lm, GT_ITEM_EMBEDDING);
		const GlintruReal *E = warm->params + warm->layout.slot[GT_ITEM_EMBEDDING].offset;
		const GlintruReal *F = fresh->params + fresh->layout.slot[GT_ITEM_EMBEDDING].offset;
		int64_t		old_rows = lm->config.n_rows;
		bool		old_same = true,
					new_fresh = true,
					rest_same = true;

		for (int64_t q = 0; q < gs.n_rows * 16; q++)
		{
			if (q < old_rows * 16)
				old_same = old_same && E[q] == (GlintruReal) E_old[q];
			else
				new_fresh = new_fresh && E[q] == F[q];
		}
		for (int t = 1; t < GT_COUNT; t++)
			for (uint64_t i = 0; i < warm->layout.slot[t].numel; i++)
				rest_same = rest_same && warm->params[warm->layout.slot[t].offset + i] ==
					(GlintruReal) glintru_param(lm, (GlintruTensor) t)[i];
		CHECK(old_same && rest_same, "old rows (padding included) and all other tensors bit-identical to the model");
		CHECK(new_fresh, "new rows as a fresh net of the seed initialises them");
	}
	/* the mapping goes by id, not by position: a vocabulary in another order */
	{
		int64_t		vocab[4] = {0, 205, 129, 100};
		GlintruNet *v4 = glintru_net_new(4, 16, 2, 8, lm->config.layer_norm_eps);
		GlintruNet *f4 = glintru_net_new(4, 16, 2, 8, lm->config.layer_norm_eps);
		const GlintruReal *E;
		const GlintruReal *F;

		glintru_net_init(v4, 11);
		glintru_net_init(f4, 11);
		CHECK(glintru_net_warm_start(v4, vocab, lm, err, sizeof err) == 2, "two of three rows known");
		E = v4->params;
		F = f4->params;
		CHECK(memcmp(E + 16, F + 16, sizeof(GlintruReal) * 16) == 0 &&
			  E[2 * 16] == (GlintruReal) glintru_param(lm, GT_ITEM_EMBEDDING)[glintru_item_row(lm, 129) * 16] &&
			  E[3 * 16 + 5] == (GlintruReal) glintru_param(lm, GT_ITEM_EMBEDDING)[glintru_item_row(lm, 100) * 16 + 5],
			  "rows found by item id");
		glintru_net_free(v4);
		glintru_net_free(f4);
	}

	/* the options: architecture from the model, a contradiction is an error */
	{
		GlintruTrainOptions o;

		glintru_train_defaults(&o);
		o.init_from = lm;
		o.arch_set = GLINTRU_ARCH_D;
		o.d = 32;
		glintru_train_options_inherit(&o);
		CHECK(!glintru_train_options_check(&o, err, sizeof err) && strstr(err, "\"d\" is 32") &&
			  strstr(err, "init_from"), "contradicting d rejected: %s", err);
		o.arch_set = 0;
		glintru_train_options_inherit(&o);
		CHECK(glintru_train_options_check(&o, err, sizeof err) && o.d == 16 && o.n_heads == 2 &&
			  o.max_seq_len == 8, "architecture inherited %s", err);
		o.epochs = 2;
		o.batch_size = 8;
		o.patience = 0;
		o.n_threads = 2;

		GlintruNet *net = glintru_train(&gs, &o, NULL, NULL, err, sizeof err);

		CHECK(net && net->layout.n_rows == gs.n_rows, "warm-started training runs %s", net ? "" : err);
		glintru_net_free(net);
	}
	glintru_net_free(fresh);
	glintru_net_free(warm);
	glintru_split_free(&gs);
	glintru_interactions_free(&gx);
}

/* Bad files, the item filter and split on hand-made triples, and the synthetic walk file. */
static void
check_inputs(void)
{
	/* ---- bad files ---- */
	bad_file("empty.tsv", "", "empty input");
	bad_file("nocol.tsv", "user_id\tseq\n1\t0\n", "missing item_id");
	bad_file("noorder.tsv", "user_id\titem_id\n1\t2\n", "missing seq/ts");
	bad_file("nonnum.tsv", "user_id\titem_id\tseq\n1\tabc\t0\n", "item_id \"abc\" is not an integer");
	bad_file("headeronly.tsv", "user_id\titem_id\tseq\n", "no interactions");
	{
		GlintruInteractions x;
		bool		ok = glintru_read_interactions("/nonexistent/x.tsv", &x, err, sizeof err);

		CHECK(!ok && strstr(err, "cannot read"), "missing file rejected: %s", err);
	}

	/* ---- item filter and leave-one-out split on hand-made triples ---- */
	{
		/* user 7: items 1 2 3 9 (order scrambled); user 5: 2 3 2; user 6: 1 2 (too short) */
		const int64_t us[] = {7, 5, 7, 6, 5, 7, 6, 5, 7};
		const int64_t it[] = {9, 2, 1, 1, 3, 3, 2, 2, 2};
		const int64_t od[] = {40, 1, 10, 1, 2, 30, 2, 3, 20};
		GlintruInteractions tx;
		GlintruSplit ts;

		CHECK(glintru_interactions_from_triples(us, it, od, 9, &tx, err, sizeof err), "triples %s", err);
		CHECK(tx.n_users == 3 && tx.items[tx.off[2]] == 1 && tx.items[tx.off[2] + 3] == 9,
			  "users sorted, histories in order");
		CHECK(glintru_filter_items(&tx, 2) == 1, "min_item_count 2 drops the single interaction of item 9");
		CHECK(glintru_split_build(&tx, &ts, err, sizeof err), "split %s", err);
		CHECK(ts.n_users == 2 && ts.n_dropped_users == 1, "users with < 3 interactions dropped (kept %lld)",
			  (long long) ts.n_users);
		/* rows: 1->item 1, 2->item 2, 3->item 3; user 5: 2 3 2 -> train [2], val 3, test 2 */
		CHECK(ts.n_rows == 4 && ts.item_ids[3] == 3, "vocabulary rows in id order");
		CHECK(ts.popularity[2] == 1 && ts.popularity[1] == 1 && ts.popularity[3] == 0,
			  "popularity counts training items only (%.0f %.0f %.0f)",
			  ts.popularity[1], ts.popularity[2], ts.popularity[3]);
		glintru_split_free(&ts);
		glintru_interactions_free(&tx);
	}

	/*
	 * ---- synthetic data: 120 users walking a ring of 30 items with steps
	 * of +1 (mostly) or +2, in shuffled column order with an extra column
	 */
	{
		size_t		cap = 1 << 20;
		char	   *text = malloc(cap);
		size_t		pos = 0;
		uint64_t	s = 7;

		pos += (size_t) snprintf(text + pos, cap - pos, "item_id\trating\tuser_id\tts\n");
		for (int u = 1; u <= 120; u++)
		{
			int			n = 5 + u % 19;
			int			it = u % 30;

			for (int t = 0; t < n; t++)
			{
				s = s * 6364136223846793005ull + 1442695040888963407ull;
				it = (it + ((s >> 33) % 5 == 0 ? 2 : 1)) % 30;
				/* rows written in reverse time order: the reader must sort */
				pos += (size_t) snprintf(text + pos, cap - pos, "%d\t5\t%d\t%d\n", 100 + it, u, 1000 - t);
			}
		}
		/* ts ascending is time order, so each walk runs backwards in time: still a pattern */
		write_tmp("walk.tsv", text);
		free(text);
	}
}

/* The engine end to end on small files and triples (see the header). */
int
main(void)
{
	if (!mkdtemp(tmpdir))
	{
		perror("mkdtemp");
		return 1;
	}

	check_inputs();

	GlintruInteractions x;
	GlintruSplit split;
	char		path[512];

	snprintf(path, sizeof path, "%s/walk.tsv", tmpdir);
	CHECK(glintru_read_interactions(path, &x, err, sizeof err), "read synthetic data %s", err);
	CHECK(x.n_users == 120, "120 users (got %lld)", (long long) x.n_users);
	CHECK(glintru_split_build(&x, &split, err, sizeof err), "split %s", err);
	CHECK(split.n_rows == 31, "vocabulary of 30 items + padding (got %lld rows)", (long long) split.n_rows);

	GlintruTrainOptions o;
	double		losses[64] = {0};

	glintru_train_defaults(&o);
	o.d = 16;
	o.n_heads = 2;
	o.max_seq_len = 8;
	o.epochs = 12;
	o.batch_size = 8;
	o.lr = 5e-3;
	o.patience = 0;
	o.n_threads = 2;
	o.seed = 3;

	GlintruNet *net = glintru_train(&split, &o, progress, losses, err, sizeof err);

	CHECK(net != NULL, "training ran %s", net ? "" : err);
	if (!net)
		return 1;
	CHECK(losses[o.epochs - 1] < 0.7 * losses[0], "loss decreases: %.4f -> %.4f", losses[0], losses[o.epochs - 1]);

	/* determinism */
	{
		GlintruNet *again = glintru_train(&split, &o, NULL, NULL, err, sizeof err);

		CHECK(again && memcmp(again->params, net->params, sizeof(GlintruReal) * net->layout.n_params) == 0,
			  "same seed, same parameters (bitwise, 2 threads)");
		glintru_net_free(again);
		/* the 8-lane loops (exp, GRU cells, softmax, norms, gates) against their plain-C twins */
		glintru_train_use_simd(false);
		again = glintru_train(&split, &o, NULL, NULL, err, sizeof err);
		glintru_train_use_simd(true);
		CHECK(again && memcmp(again->params, net->params, sizeof(GlintruReal) * net->layout.n_params) == 0,
			  "8-lane loops and their plain-C twins train the same parameters (bitwise)");
		glintru_net_free(again);
	}

	/* the new optimiser options: AdamW decay and clipping change the model, limits are checked */
	{
		GlintruTrainOptions q = o;
		GlintruNet *other;

		q.weight_decay = 0;
		q.clip_norm = 0;
		other = glintru_train(&split, &q, NULL, NULL, err, sizeof err);
		CHECK(other && memcmp(other->params, net->params, sizeof(GlintruReal) * net->layout.n_params) != 0,
			  "weight_decay 0 and clip_norm 0 (plain Adam) train another model");
		glintru_net_free(other);
		q = o;
		q.weight_decay = -0.1;
		CHECK(!glintru_train_options_check(&q, err, sizeof err) && strstr(err, "\"weight_decay\""),
			  "negative weight_decay rejected: %s", err);
		q = o;
		q.clip_norm = -1;
		CHECK(!glintru_train_options_check(&q, err, sizeof err) && strstr(err, "\"clip_norm\""),
			  "negative clip_norm rejected: %s", err);
	}

	/* dropouts from the data's density unless given */
	{
		GlintruTrainOptions q;

		CHECK(glintru_dropout_for_density(5) == 0.5 && glintru_dropout_for_density(20) == 0.5 &&
			  glintru_dropout_for_density(200) == 0.2 && glintru_dropout_for_density(1e4) == 0.2 &&
			  fabs(glintru_dropout_for_density(sqrt(20.0 * 200.0)) - 0.35) < 1e-12,
			  "dropout from density: 0.5 sparse, 0.2 dense, log-linear between");
		glintru_train_defaults(&q);
		glintru_train_resolve(&q, &split);
		CHECK(q.p_emb == glintru_dropout_for_density(glintru_split_density(&split)) && q.p_att == q.p_emb &&
			  fabs(q.p_inner - (q.p_emb + 0.1)) < 1e-12, "unset dropouts resolved (%.2f / %.2f at %.1f per item)",
			  q.p_emb, q.p_inner, glintru_split_density(&split));
		q.p_emb = q.p_att = 0.05;
		q.p_inner = 0.07;
		q.dropout_set = GLINTRU_DROPOUT_SET | GLINTRU_INNER_DROPOUT_SET;
		glintru_train_resolve(&q, &split);
		CHECK(q.p_emb == 0.05 && q.p_inner == 0.07, "given dropouts kept");
	}

	/* quality well above popularity on this easy pattern */
	{
		GlintruMetrics mt,
					pop;

		glintru_net_evaluate(net, &split, GLINTRU_PROTOCOL_FULL, true, 10, 1, 2, &mt);
		glintru_popularity_metrics(&split, GLINTRU_PROTOCOL_FULL, true, 10, 1, &pop);
		CHECK(mt.ndcg > pop.ndcg + 0.1, "test NDCG@10 %.4f vs popularity %.4f", mt.ndcg, pop.ndcg);
	}

	/* save, load, compare with the extension's forward pass */
	GlintruModel *m = glintru_net_to_model(net, &split, err, sizeof err);

	CHECK(m != NULL, "model built %s", m ? "" : err);
	size_t		len = 0;
	uint8_t    *buf = m ? glintru_safetensors_write(m, &len) : NULL;
	GlintruModel *lm = buf ? glintru_safetensors_load(buf, len, err, sizeof err) : NULL;

	CHECK(lm != NULL, "saved file loads with glintru_safetensors_load %s", lm ? "" : err);
	if (lm)
	{
		CHECK(lm->config.max_seq_len == 8 && lm->config.n_heads == 2 && lm->config.d == 16,
			  "metadata round-trips");
		CHECK(glintru_item_row(lm, 100) == 1 && glintru_item_row(lm, 129) == 30, "item ids round-trip");
		CHECK(glintru_popularity(lm) != NULL && glintru_popularity(lm)[1] == split.popularity[1],
			  "popularity round-trips");

		GlintruNet *ln = glintru_net_from_model(lm);
		GlintruWork *w = glintru_work_new();
		float	   *scratch = malloc(sizeof(float) * glintru_forward_scratch_floats(&lm->config));
		double		worst = 0;
		int			compared = 0;

		/* every prefix of a long history: windows < L, = L and sliding */
		const int32_t *h = split.rows + split.off[17];
		int32_t		n = glintru_split_len(&split, 17);

		for (int32_t p = 1; p <= n; p++)
		{
			GlintruChunk c = {h + (p > 8 ? p - 8 : 0), p > 8 ? 8 : p, 0, NULL, 0};
			GlintruReal uv[16];
			float		fv[16];

			c.p_lo = c.len - 1;
			glintru_net_user_vectors(ln, &c, 1, uv, w);
			glintru_forward_user_vector(lm, h, p, fv, scratch);
			for (int j = 0; j < 16; j++)
			{
				double		e = fabs((double) uv[j] - fv[j]);

				if (e > worst)
					worst = e;
			}
			compared++;
		}
		CHECK(n > 10 && worst < 1e-4, "engine vs extension forward: %d prefixes (history of %d), max |diff| %.2e",
			  compared, n, worst);

		/* the all-prefix pass gives the per-prefix vectors at every position */
		{
			GlintruChunk c = {h, 8, 0, NULL, 0};
			GlintruReal U[8 * 16];

			glintru_net_head_vectors(ln, &c, 1, NULL, U, w);
			worst = 0;
			for (int p = 0; p < 8; p++)
			{
				float		fv[16];

				glintru_forward_user_vector(lm, h, p + 1, fv, scratch);
				for (int j = 0; j < 16; j++)
					worst = fmax(worst, fabs((double) U[p * 16 + j] - fv[j]));
			}
			CHECK(worst < 1e-4, "all-prefix pass vs per-prefix forward: max |diff| %.2e", worst);
		}
		free(scratch);
		glintru_work_free(w);
		glintru_net_free(ln);
		check_warm_start(lm);
		free(lm);
	}
	free(buf);
	free(m);
	glintru_net_free(net);
	glintru_split_free(&split);
	glintru_interactions_free(&x);

	/* clean up the temporary directory */
	{
		const char *names[] = {"empty.tsv", "nocol.tsv", "noorder.tsv", "nonnum.tsv", "headeronly.tsv", "walk.tsv"};

		for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		{
			snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
			unlink(path);
		}
		rmdir(tmpdir);
	}
	printf(failures ? "test_train_smoke: %d FAILED\n" : "test_train_smoke: all passed\n", failures);
	return failures ? 1 : 0;
}
