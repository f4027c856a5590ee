/*
 * test_grad.c — finite-difference check of the training engine's backward
 * pass: every parameter tensor of a tiny model, in the float64 build of the
 * engine (compiled with -DGLINTRU_TRAIN_DOUBLE), with dropout masks on and
 * off, over windows shorter than, equal to and longer than max_seq_len
 * (the last through the overlapping chunks of long histories).
 *
 * In float64 a central difference with step 1e-5 has truncation error
 * ~1e-10 and round-off ~1e-11 relative to the loss, so analytic and
 * numeric gradients must agree to 1e-6 relative (1e-8 absolute floor);
 * a wrong term in any backward function shows up orders of magnitude
 * above that.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train.h"

#ifndef GLINTRU_TRAIN_DOUBLE
#error "test_grad needs the float64 build of the engine (-DGLINTRU_TRAIN_DOUBLE)"
#endif

static uint64_t rs = 12345;

static double
urand(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return (double) (rs >> 11) / 9007199254740992.0;
}

static double
loss_at(const GlintruNet *net, const GlintruChunk *ch, int nc, const GlintruDropout *dr, GlintruWork *w)
{
	return glintru_net_loss_grad(net, ch, nc, dr, 1.0, NULL, true, w);
}

static int
check(GlintruNet *net, const GlintruChunk *ch, int nc, const GlintruDropout *dr, const char *label)
{
	uint64_t	np = net->layout.n_params;
	double	   *g = calloc(np, sizeof(double));
	GlintruWork *w = glintru_work_new();
	int			bad = 0;
	double		worst_all = 0;

	double		L0 = glintru_net_loss_grad(net, ch, nc, dr, 1.0, g, true, w);
	double		L1 = loss_at(net, ch, nc, dr, w);

	if (fabs(L0 - L1) > 1e-12 * fabs(L0))
	{
		printf("FAIL %s: loss with and without backward differ: %.17g vs %.17g\n", label, L0, L1);
		bad++;
	}
	for (int t = 0; t < GT_COUNT; t++)
	{
		const GlintruTensorSlot *sl = &net->layout.slot[t];
		double		worst = 0,
					gmax = 0;

		for (uint64_t i = 0; i < sl->numel; i++)
		{
			double	   *p = net->params + sl->offset + i;
			double		save = *p,
						h = 1e-5;

			*p = save + h;
			double		lp = loss_at(net, ch, nc, dr, w);

			*p = save - h;
			double		lm = loss_at(net, ch, nc, dr, w);

			*p = save;
			double		num = (lp - lm) / (2 * h);
			double		ana = g[sl->offset + i];
			double		err = fabs(num - ana) / fmax(1e-2, fmax(fabs(num), fabs(ana)));

			if (fabs(num - ana) < 1e-8)
				err = 0;
			if (err > worst)
				worst = err;
			if (fabs(ana) > gmax)
				gmax = fabs(ana);
		}
		if (worst > worst_all)
			worst_all = worst;
		if (worst > 1e-6 || gmax == 0)
		{
			printf("FAIL %s: %-34s max rel err %.3g (max |grad| %.3g)\n", label,
				   glintru_tensor_names[t], worst, gmax);
			bad++;
		}
	}
	printf("%s %s: %d tensors, loss %.6f, worst relative error %.2e\n",
		   bad ? "FAIL" : "ok", label, GT_COUNT, L0, worst_all);
	free(g);
	glintru_work_free(w);
	return bad;
}

int
main(void)
{
	const int	L = 4;
	GlintruNet *net = glintru_net_new(9, 6, 2, L, 1e-12);
	int			bad = 0;

	if (!net)
	{
		printf("FAIL: cannot allocate net\n");
		return 1;
	}
	glintru_net_init(net, 7);
	/* non-trivial biases and LayerNorm weights so that every term is exercised */
	for (uint64_t i = 0; i < net->layout.n_params; i++)
		net->params[i] += 0.2 * (urand() - 0.5);

	/*
	 * Training histories (rows 1..8).  Chunks: n=3 -> one window of 2 (< L);
	 * n=5 -> one window of 4 (= L, the last position has no slot after it);
	 * n=8 -> windows [0,4), then a=2 (len 4, p_lo 2), a=4 (len 3 < L, p_lo 2);
	 * n=11 -> windows starting at 0, 2, 4, 6, all of length L.
	 */
	static const int32_t h1[] = {3, 1, 4};
	static const int32_t h2[] = {2, 7, 1, 8, 2};
	static const int32_t h3[] = {5, 6, 2, 5, 3, 5, 8, 8};
	static const int32_t h4[] = {1, 2, 3, 4, 5, 6, 7, 8, 1, 3, 5};
	const int32_t *hs[] = {h1, h2, h3, h4};
	const int32_t ns[] = {3, 5, 8, 11};
	GlintruChunk ch[32];
	int			nc = 0;
	int			seen_short = 0,
				seen_full = 0,
				seen_late = 0,
				seen_late_short = 0;

	for (int i = 0; i < 4; i++)
		nc += glintru_history_chunks(hs[i], ns[i], L, (uint64_t) nc, ch + nc, 32 - nc);
	for (int i = 0; i < nc; i++)
	{
		seen_short += ch[i].len < L && ch[i].p_lo == 0;
		seen_full += ch[i].len == L && ch[i].p_lo == 0;
		seen_late += ch[i].p_lo > 0;
		seen_late_short += ch[i].p_lo > 0 && ch[i].len < L;
	}
	printf("%d windows: %d shorter than L, %d of length L, %d later-starting (%d of them short)\n",
		   nc, seen_short, seen_full, seen_late, seen_late_short);
	if (!seen_short || !seen_full || !seen_late || !seen_late_short)
	{
		printf("FAIL: window coverage\n");
		bad++;
	}

	GlintruDropout off = {false, 0, 0, 0, 0};
	GlintruDropout on = {true, 0.2, 0.2, 0.3, 99};

	bad += check(net, ch, nc, &off, "eval mode");
	bad += check(net, ch, nc, &on, "dropout masks on");

	/* an embedding row that appears only as input must get exactly zero
	 * gradient from the output path when it is not a target: sanity of
	 * the published padding_idx rule (row 0 input path off) */
	{
		uint64_t	np = net->layout.n_params;
		double	   *ga = calloc(np, sizeof(double));
		double	   *gb = calloc(np, sizeof(double));
		GlintruWork *w = glintru_work_new();
		int			d = net->d;

		glintru_net_loss_grad(net, ch, nc, &off, 1.0, ga, true, w);
		glintru_net_loss_grad(net, ch, nc, &off, 1.0, gb, false, w);
		int			differ0 = 0,
					differ_other = 0;

		for (uint64_t i = 0; i < np; i++)
		{
			bool		row0 = i < (uint64_t) d;	/* E[0] is the first d floats */

			if (ga[i] != gb[i])
			{
				if (row0)
					differ0++;
				else
					differ_other++;
			}
		}
		if (differ0 == 0 || differ_other != 0)
		{
			printf("FAIL padding_idx rule: %d row-0 and %d other entries differ\n", differ0, differ_other);
			bad++;
		}
		else
			printf("ok padding_idx rule: only E[0] loses its input-path gradient\n");
		free(ga);
		free(gb);
		glintru_work_free(w);
	}
	glintru_net_free(net);
	printf(bad ? "test_grad: FAILED\n" : "test_grad: all passed\n");
	return bad ? 1 : 0;
}
