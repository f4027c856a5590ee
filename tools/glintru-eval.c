/*
 * glintru-eval — test-split quality of a model file on an interaction file
 * (SPEC §4 leave-one-out), printing one "NAME VALUE" pair per line.
 *
 *   glintru-eval --data FILE --model MODEL.safetensors --protocol full|pop100|uni100
 *   glintru-eval --data FILE --baseline popularity --protocol full
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "util.h"
#include "train.h"

/* The option summary. */
static void
usage(FILE *f)
{
	fprintf(f,
			"usage: glintru-eval --data FILE (--model MODEL.safetensors | --baseline popularity)\n"
			"                    [--protocol full|pop100|uni100] [--split test|valid]\n"
			"                    [--min-item-count N] [--seed N] [--threads N]\n"
			"Items the model does not know are dropped from the histories (this repeats\n"
			"the item filter the model was trained with).\n");
}

/* Evaluate a model file (or the popularity baseline) on a data file's split. */
int
main(int argc, char **argv)
{
	const char *data = NULL,
			   *model = NULL,
			   *baseline = NULL,
			   *proto = "full",
			   *which = "test";
	long long	min_count = 0;
	unsigned long long seed = 42;
	int			threads = 2;
	char		err[512];
	GlintruProtocol protocol;

	for (int i = 1; i < argc; i++)
	{
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
		{
			usage(stdout);
			return 0;
		}
		if (!v)
		{
			fprintf(stderr, "glintru-eval: unknown or incomplete option \"%s\"\n", a);
			usage(stderr);
			return 2;
		}
		if (strcmp(a, "--data") == 0)
			data = v;
		else if (strcmp(a, "--model") == 0)
			model = v;
		else if (strcmp(a, "--baseline") == 0)
			baseline = v;
		else if (strcmp(a, "--protocol") == 0)
			proto = v;
		else if (strcmp(a, "--split") == 0)
			which = v;
		else if (strcmp(a, "--min-item-count") == 0)
			min_count = atoll(v);
		else if (strcmp(a, "--seed") == 0)
			seed = strtoull(v, NULL, 10);
		else if (strcmp(a, "--threads") == 0)
			threads = atoi(v);
		else
		{
			fprintf(stderr, "glintru-eval: unknown option \"%s\"\n", a);
			usage(stderr);
			return 2;
		}
		i++;
	}
	if (!glintru_protocol_parse(proto, &protocol))
	{
		fprintf(stderr, "glintru-eval: --protocol must be full, pop100 or uni100, not \"%s\"\n", proto);
		return 2;
	}
	if (strcmp(which, "test") != 0 && strcmp(which, "valid") != 0)
	{
		fprintf(stderr, "glintru-eval: --split must be test or valid\n");
		return 2;
	}
	if (!data || (!model == !baseline) || (baseline && strcmp(baseline, "popularity") != 0))
	{
		usage(stderr);
		return 2;
	}
	if (threads < 1 || threads > GLINTRU_TRAIN_MAX_WORKERS)
		threads = 2;

	GlintruInteractions x;
	GlintruSplit split;
	GlintruMetrics r;
	bool		test = strcmp(which, "test") == 0;

	if (!glintru_read_interactions(data, &x, err, sizeof err))
	{
		fprintf(stderr, "glintru-eval: %s\n", err);
		return 1;
	}
	glintru_filter_items(&x, min_count);
	if (baseline)
	{
		if (!glintru_split_build(&x, &split, err, sizeof err))
		{
			fprintf(stderr, "glintru-eval: %s\n", err);
			return 1;
		}
		glintru_popularity_metrics(&split, protocol, test, 10, seed, &r);
	}
	else
	{
		size_t		len;
		uint8_t    *buf = glintru_read_file(model, &len);
		GlintruModel *m;
		GlintruNet *net;

		if (!buf)
		{
			fprintf(stderr, "glintru-eval: cannot read \"%s\"\n", model);
			return 1;
		}
		m = glintru_safetensors_load(buf, len, err, sizeof err);
		free(buf);
		if (!m)
		{
			fprintf(stderr, "glintru-eval: %s: %s\n", model, err);
			return 1;
		}
		if (!glintru_split_for_model(&x, m, &split, err, sizeof err))
		{
			fprintf(stderr, "glintru-eval: %s\n", err);
			return 1;
		}
		net = glintru_net_from_model(m);
		if (!net || !glintru_net_evaluate(net, &split, protocol, test, 10, seed, threads, &r))
		{
			fprintf(stderr, "glintru-eval: out of memory\n");
			return 1;
		}
		glintru_net_free(net);
		free(m);
	}
	printf("HR@10 %.4f\nNDCG@10 %.4f\nMRR@10 %.4f\n", r.hr, r.ndcg, r.mrr);
	glintru_split_free(&split);
	glintru_interactions_free(&x);
	return 0;
}
