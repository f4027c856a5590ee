/*
 * train_pass.c — the all-prefix pass of SPEC §1 ("All prefixes of a
 * sequence at once") over a set of windows: a forward, a loss step and a
 * backward, each a short list of per-layer calls (train_layers.c), and the
 * public entry points that run it (loss and gradient, user vectors).
 *
 * Row layout.  The windows (chunks) of one call are stacked: every position
 * of every chunk is a "trunk row" (embedding, dense1, conv taps, GRU trunk,
 * key/value); the positions that predict something are also "head rows"
 * (query, the two GRU branch steps, conv over G, mix, MLP, loss).  Row-wise
 * layers are single GEMMs over all rows of the call; only the GRU recurrence
 * and the causal attention sums loop over positions, and the GRU recurrence
 * steps all chunks in lockstep so that each step is one GEMM too.
 *
 * The order of every floating-point operation is the one the trainer has
 * always had: a seed gives the same model bit for bit.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"

/* One pass: its inputs, its shape and the workspace holding its activations. */
typedef struct Pass
{
	const GlintruNet *net;
	const GlintruDropout *drop;
	GlintruRows rw;
	int			n_tr,
				n_hd,
				maxlen;
	int			d,
				dh,
				L;
	bool		train,			/* dropout active */
				inner,			/* gate, mix and MLP masks in use */
				attd;			/* attention-output mask in use */
	R			w0,
				w1;				/* softmax mix weights */
	double		w0d,
				w1d;			/* the same before rounding to R (see mix_bwd) */
	R		   *grad;			/* NULL: forward and loss only */
	GlintruWork *w;
} Pass;

/* Counts rows, sizes the workspace and fills the row maps; false on OOM. */
static bool
pass_setup(Pass *P, const GlintruNet *net, const GlintruChunk *ch, int nc,
		   const GlintruDropout *drop, R *grad, GlintruWork *w)
{
	*P = (Pass) {.net = net, .drop = drop, .grad = grad, .w = w,
		.d = net->d, .dh = net->d / net->n_heads, .L = net->max_seq_len};
	P->train = drop && drop->active;
	P->inner = P->train && drop->p_inner > 0;
	P->attd = P->train && drop->p_att > 0;
	for (int c = 0; c < nc; c++)
	{
		P->n_tr += ch[c].len;
		P->n_hd += ch[c].len - ch[c].p_lo;
		if (ch[c].len > P->maxlen)
			P->maxlen = ch[c].len;
	}
	if (!glintru_work_reserve(w, net, P->n_tr, P->n_hd, nc))
		return false;
	P->rw = (GlintruRows) {ch, nc, w->tr_off, w->hd_off};
	for (int c = 0, t = 0, h = 0; c < nc; c++)
	{
		w->tr_off[c] = t;
		w->hd_off[c] = h;
		for (int p = ch[c].p_lo; p < ch[c].len; p++, h++)
		{
			w->hrow[h] = t + p;
			w->hpos[h] = p;
			w->htgt[h] = ch[c].targets ? ch[c].targets[p - ch[c].p_lo] : -1;
		}
		t += ch[c].len;
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* forward                                                              */
/* ------------------------------------------------------------------ */

/* Padding-slot vectors (functions of E[0]; no dropout) and the conv repacks. */
static void
pad_fwd(Pass *P)
{
	const GlintruNet *net = P->net;
	GlintruWork *w = P->w;
	GlintruPad *pd = &w->pd;
	int			d = P->d;

	memcpy(pd->x, PRM(net, GT_ITEM_EMBEDDING), sizeof(R) * d);
	glintru_linear_fwd(pd->x, 1, d, PRM(net, GT_DENSE1_W), PRM(net, GT_DENSE1_B), pd->a, d);
	glintru_linear_fwd(pd->x, 1, d, PRM(net, GT_ATT_K_W), PRM(net, GT_ATT_K_B), pd->kraw, d);
	glintru_elunorm_fwd(pd->kraw, 1, d, P->dh, pd->kh, pd->kinv);
	glintru_linear_fwd(pd->x, 1, d, PRM(net, GT_ATT_V_W), PRM(net, GT_ATT_V_B), pd->v, d);
	glintru_conv_repack(PRM(net, GT_CONV1D_W), d, w->K);
	glintru_conv_repack(PRM(net, GT_CONVG_W), d, w->Kg);
	/* K1·apad and K2·apad: the conv taps that see padding slots */
	for (int o = 0; o < d; o++)
	{
		R			s1 = 0,
					s2 = 0;

		for (int i = 0; i < d; i++)
		{
			s1 += w->K[(size_t) 1 * d * d + (size_t) o * d + i] * pd->a[i];
			s2 += w->K[(size_t) 2 * d * d + (size_t) o * d + i] * pd->a[i];
		}
		pd->kap1[o] = s1;
		pd->kap2[o] = s2;
	}
}

/*
 * Trunk rows: embedding + dropout, dense1, the three conv taps, key and
 * value, then the conv over real items c_t = P0_{t-1} + P1_t + P2_{t+1} + b
 * and its GRU input products.
 */
static void
trunk_fwd(Pass *P)
{
	const GlintruNet *net = P->net;
	const GlintruChunk *ch = P->rw.ch;
	GlintruWork *w = P->w;
	int			d = P->d,
				n_tr = P->n_tr;
	const R    *E = PRM(net, GT_ITEM_EMBEDDING);

	for (int c = 0; c < P->rw.nc; c++)
		for (int p = 0; p < ch[c].len; p++)
		{
			size_t		row = (size_t) (w->tr_off[c] + p);

			memcpy(w->x + row * d, E + (size_t) ch[c].items[p] * d, sizeof(R) * d);
			if (P->train && P->drop->p_emb > 0)
			{
				glintru_mask_row(w->mx + row * d, d, P->drop->p_emb, P->drop->seed, ch[c].uid, p, 1);
				glintru_dropout_fwd(w->x + row * d, w->mx + row * d, d);
			}
		}
	glintru_linear_fwd(w->x, n_tr, d, PRM(net, GT_DENSE1_W), PRM(net, GT_DENSE1_B), w->a, d);
	GEMM(RM, NT, TR, n_tr, d, d, 1, w->a, d, w->K, d, 0, w->P0, d);
	GEMM(RM, NT, TR, n_tr, d, d, 1, w->a, d, w->K + (size_t) d * d, d, 0, w->P1, d);
	GEMM(RM, NT, TR, n_tr, d, d, 1, w->a, d, w->K + (size_t) 2 * d * d, d, 0, w->P2, d);
	glintru_linear_fwd(w->x, n_tr, d, PRM(net, GT_ATT_K_W), PRM(net, GT_ATT_K_B), w->kraw, d);
	glintru_elunorm_fwd(w->kraw, n_tr, d, P->dh, w->kh, w->kinv);
	glintru_linear_fwd(w->x, n_tr, d, PRM(net, GT_ATT_V_W), PRM(net, GT_ATT_V_B), w->v, d);

	const R    *cb = PRM(net, GT_CONV1D_B);
	GlintruUnit *tr = &w->tr;

	for (int c = 0; c < P->rw.nc; c++)
		for (int t = 0; t < ch[c].len; t++)
		{
			size_t		row = (size_t) (w->tr_off[c] + t);
			R		   *ct = tr->c + row * d;

			for (int j = 0; j < d; j++)
			{
				R			v = cb[j] + w->P1[row * d + j];

				if (t > 0)
					v += w->P0[(row - 1) * d + j];
				if (t + 1 < ch[c].len)
					v += w->P2[(row + 1) * d + j];
				ct[j] = v;
			}
		}
	GEMM(RM, NT, TR, n_tr, 3 * d, d, 1, tr->c, d, PRM(net, GT_GRU_W_IH), d, 0, tr->gi, 3 * d);
}

/* The chunks that take GRU step t (t + 1 < len) into w->act; returns how many. */
static int
lockstep_active(const Pass *P, int t)
{
	int			na = 0;

	for (int c = 0; c < P->rw.nc; c++)
		if (t + 1 < P->rw.ch[c].len)
			P->w->act[na++] = c;
	return na;
}

/*
 * GRU trunk, all chunks in lockstep, then its gate masks and selective gate.
 * Only steps t <= len-2 are needed (h_{len-1} feeds nothing); the last row
 * of each chunk gets h = 0.
 */
static void
trunk_gru_fwd(Pass *P)
{
	const GlintruNet *net = P->net;
	const GlintruChunk *ch = P->rw.ch;
	GlintruWork *w = P->w;
	GlintruUnit *tr = &w->tr;
	int			d = P->d,
				n_tr = P->n_tr;

	memset(tr->hprev, 0, sizeof(R) * n_tr * d);
	memset(tr->h, 0, sizeof(R) * n_tr * d);
	memset(tr->gh, 0, sizeof(R) * n_tr * 3 * d);
	for (int t = 0; t + 1 < P->maxlen; t++)
	{
		int			na = lockstep_active(P, t);

		if (t > 0)
		{
			for (int i = 0; i < na; i++)
				memcpy(w->tH + (size_t) i * d, tr->h + (size_t) (w->tr_off[w->act[i]] + t - 1) * d, sizeof(R) * d);
			GEMM(RM, NT, TR, na, 3 * d, d, 1, w->tH, d, PRM(net, GT_GRU_W_HH), d, 0, w->tGH, 3 * d);
		}
		for (int i = 0; i < na; i++)
		{
			size_t		row = (size_t) (w->tr_off[w->act[i]] + t);

			if (t > 0)
			{
				memcpy(tr->gh + row * 3 * d, w->tGH + (size_t) i * 3 * d, sizeof(R) * 3 * d);
				memcpy(tr->hprev + row * d, tr->h + (row - 1) * d, sizeof(R) * d);
			}
			glintru_gru_cell_fwd(tr->gi + row * 3 * d, tr->gh + row * 3 * d, tr->hprev + row * d, 1, d,
								 tr->r + row * d, tr->z + row * d, tr->nn + row * d, tr->ghn + row * d,
								 tr->h + row * d);
		}
	}
	tr->ms = P->inner ? tr->msbuf : NULL;
	if (tr->ms)
		for (int c = 0; c < P->rw.nc; c++)
			for (int t = 0; t < ch[c].len; t++)
				glintru_mask_row(tr->ms + (size_t) (w->tr_off[c] + t) * d, d, P->drop->p_inner,
								 P->drop->seed, ch[c].uid, t, 2);
	glintru_unit_post_fwd(net, tr, n_tr);
}

/* Head-row masks, keyed by (chunk uid, position, layer): o, D, O, branch gates. */
static void
head_masks(Pass *P)
{
	const GlintruChunk *ch = P->rw.ch;
	const GlintruDropout *dr = P->drop;
	GlintruWork *w = P->w;
	int			d = P->d;

	for (int c = 0; c < P->rw.nc && P->train; c++)
		for (int p = ch[c].p_lo; p < ch[c].len; p++)
		{
			size_t		o = (size_t) (w->hd_off[c] + p - ch[c].p_lo) * d;

			if (dr->p_att > 0)
				glintru_mask_row(w->mo + o, d, dr->p_att, dr->seed, ch[c].uid, p, 3);
			if (dr->p_inner > 0)
			{
				glintru_mask_row(w->mD + o, d, dr->p_inner, dr->seed, ch[c].uid, p, 4);
				glintru_mask_row(w->mO + o, d, dr->p_inner, dr->seed, ch[c].uid, p, 5);
				glintru_mask_row(w->b1.msbuf + o, d, dr->p_inner, dr->seed, ch[c].uid, p, 6);
				glintru_mask_row(w->b2.msbuf + o, d, dr->p_inner, dr->seed, ch[c].uid, p, 7);
			}
		}
	w->b1.ms = P->inner ? w->b1.msbuf : NULL;
	w->b2.ms = P->inner ? w->b2.msbuf : NULL;
}

/* Attention expert on head rows: A = LN_att(drop(W_o ctx + b_o) + x). */
static void
attention_expert_fwd(Pass *P)
{
	const GlintruNet *net = P->net;
	GlintruWork *w = P->w;
	int			d = P->d,
				n_hd = P->n_hd;

	for (int i = 0; i < n_hd; i++)
		memcpy(w->xh + (size_t) i * d, w->x + (size_t) w->hrow[i] * d, sizeof(R) * d);
	glintru_linear_fwd(w->xh, n_hd, d, PRM(net, GT_ATT_Q_W), PRM(net, GT_ATT_Q_B), w->qraw, d);
	glintru_elunorm_fwd(w->qraw, n_hd, d, P->dh, w->qh, w->qinv);
	glintru_attention_fwd(net, &P->rw, w->kh, w->v, w->qh, w->pd.kh, w->pd.v, w->ctx, w->pd.S);
	glintru_linear_fwd(w->ctx, n_hd, d, PRM(net, GT_ATT_O_W), PRM(net, GT_ATT_O_B), w->o, d);
	head_masks(P);
	if (P->attd)
		glintru_dropout_fwd(w->o, w->mo, (size_t) n_hd * d);
	for (size_t i = 0; i < (size_t) n_hd * d; i++)
		w->o[i] += w->xh[i];
	glintru_layernorm_fwd(w->o, n_hd, d, PRM(net, GT_ATT_LN_W), PRM(net, GT_ATT_LN_B), net->ln_eps,
						  w->Ah, w->Ars, w->A);
}

/*
 * The two GRU branch steps of every head row and the conv over G:
 * c1 = P0_{p-1} + P1_p + [p+1<L] K2 apad + b, h1 = GRU(h_{p-1}, c1);
 * c2 = P0_p + [p+1<L] K1 apad + [p+2<L] K2 apad + b, h2 = GRU(h1, c2);
 * Y = K'0 G_{p-1} + K'1 G1 + K'2 G2 + b'.
 */
static void
branches_fwd(Pass *P)
{
	const GlintruNet *net = P->net;
	GlintruWork *w = P->w;
	GlintruUnit *b1 = &w->b1,
			   *b2 = &w->b2;
	int			d = P->d,
				n_hd = P->n_hd;
	const R    *cb = PRM(net, GT_CONV1D_B);

	for (int i = 0; i < n_hd; i++)
	{
		int			row = w->hrow[i],
					p = w->hpos[i];
		R			lt1 = (R) (p + 1 < P->L),
					lt2 = (R) (p + 2 < P->L);
		R		   *c1 = b1->c + (size_t) i * d,
				   *c2 = b2->c + (size_t) i * d;

		for (int j = 0; j < d; j++)
		{
			R			prev = p > 0 ? w->P0[(size_t) (row - 1) * d + j] : 0;

			c1[j] = cb[j] + prev + w->P1[(size_t) row * d + j] + lt1 * w->pd.kap2[j];
			c2[j] = cb[j] + w->P0[(size_t) row * d + j] + lt1 * w->pd.kap1[j] + lt2 * w->pd.kap2[j];
		}
		if (p > 0)
		{
			memcpy(b1->hprev + (size_t) i * d, w->tr.h + (size_t) (row - 1) * d, sizeof(R) * d);
			memcpy(w->Gp + (size_t) i * d, w->tr.G + (size_t) (row - 1) * d, sizeof(R) * d);
		}
		else
		{
			memset(b1->hprev + (size_t) i * d, 0, sizeof(R) * d);
			memset(w->Gp + (size_t) i * d, 0, sizeof(R) * d);
		}
	}
	glintru_gru_unit_fwd(net, b1, n_hd);
	memcpy(b2->hprev, b1->h, sizeof(R) * n_hd * d);
	glintru_gru_unit_fwd(net, b2, n_hd);
	/* G2 = 0 when the window is full (p+1 == L): the slot after it does not exist */
	for (int i = 0; i < n_hd; i++)
		if (w->hpos[i] + 1 >= P->L)
			memset(b2->G + (size_t) i * d, 0, sizeof(R) * d);
	glintru_linear_fwd(w->Gp, n_hd, d, w->Kg, PRM(net, GT_CONVG_B), w->Y, d);
	GEMM(RM, NT, TR, n_hd, d, d, 1, b1->G, d, w->Kg + (size_t) d * d, d, 1, w->Y, d);
	GEMM(RM, NT, TR, n_hd, d, d, 1, b2->G, d, w->Kg + (size_t) 2 * d * d, d, 1, w->Y, d);
}

/*
 * The residual tail of both MLP blocks over head rows: pre = drop(W X + b)
 * + res (mask when inner dropout is on), out = LN(pre), the shared LayerNorm.
 */
static void
residual_ln_fwd(Pass *P, const R *X, int tw, int tb, const R *mask, const R *res, R *pre,
				R *xhat, R *rstd, R *out)
{
	const GlintruNet *net = P->net;
	size_t		hd = (size_t) P->n_hd * P->d;

	glintru_linear_fwd(X, P->n_hd, P->d, PRM(net, tw), PRM(net, tb), pre, P->d);
	if (P->inner)
		glintru_dropout_fwd(pre, mask, hd);
	for (size_t i = 0; i < hd; i++)
		pre[i] += res[i];
	glintru_layernorm_fwd(pre, P->n_hd, P->d, PRM(net, GT_LN_W), PRM(net, GT_LN_B), net->ln_eps,
						  xhat, rstd, out);
}

/*
 * Mix and MLP head: M = w0 Y + w1 A;
 * Z = LN(drop(dense(M ⊙ gelu(dense2(x)))) + x);
 * U = LN(drop(denseout(dense3(Z) ⊙ gelu(dense4(Z)))) + Z).
 */
static void
head_fwd(Pass *P)
{
	const GlintruNet *net = P->net;
	GlintruWork *w = P->w;
	int			d = P->d,
				n_hd = P->n_hd;
	size_t		hd = (size_t) n_hd * d;
	const R    *ml = PRM(net, GT_MIX_LOGITS);
	double		mm = ml[0] > ml[1] ? ml[0] : ml[1];
	double		e0 = exp(ml[0] - mm),
				e1 = exp(ml[1] - mm);

	P->w0d = e0 / (e0 + e1);
	P->w1d = e1 / (e0 + e1);
	P->w0 = (R) P->w0d;
	P->w1 = (R) P->w1d;
	for (size_t i = 0; i < hd; i++)
		w->M[i] = P->w0 * w->Y[i] + P->w1 * w->A[i];

	glintru_linear_fwd(w->xh, n_hd, d, PRM(net, GT_DENSE2_W), PRM(net, GT_DENSE2_B), w->d2, d);
	glintru_gelu_fwd(w->d2, w->d2g, hd);
	for (size_t i = 0; i < hd; i++)
		w->Pm[i] = w->M[i] * w->d2g[i];
	residual_ln_fwd(P, w->Pm, GT_DENSE_W, GT_DENSE_B, w->mD, w->xh, w->D, w->Zh, w->Zrs, w->Z);

	glintru_linear_fwd(w->Z, n_hd, d, PRM(net, GT_DENSE3_W), PRM(net, GT_DENSE3_B), w->X3, d);
	glintru_linear_fwd(w->Z, n_hd, d, PRM(net, GT_DENSE4_W), PRM(net, GT_DENSE4_B), w->X4, d);
	glintru_gelu_fwd(w->X4, w->g4, hd);
	for (size_t i = 0; i < hd; i++)
		w->Q[i] = w->X3[i] * w->g4[i];
	residual_ln_fwd(P, w->Q, GT_DENSEOUT_W, GT_DENSEOUT_B, w->mO, w->Z, w->O, w->Uh, w->Urs, w->U);
}

/* The forward of the whole model: every activation, user vectors in w->U. */
static void
pass_forward(Pass *P)
{
	pad_fwd(P);
	trunk_fwd(P);
	trunk_gru_fwd(P);
	attention_expert_fwd(P);
	branches_fwd(P);
	head_fwd(P);
}

/* ------------------------------------------------------------------ */
/* loss                                                                 */
/* ------------------------------------------------------------------ */

/*
 * Summed cross-entropy of the head rows with targets, in blocks of
 * GLINTRU_LOGIT_BLOCK rows to bound the logits buffer; with a gradient,
 * also dU (scaled by loss_scale) and the output side of dE.
 */
static double
pass_loss(Pass *P, double loss_scale)
{
	const GlintruNet *net = P->net;
	GlintruWork *w = P->w;
	int			d = P->d,
				n_hd = P->n_hd;
	bool		want_grad = P->grad != NULL;
	double		loss = 0;
	int			i = 0;

	if (want_grad)
		memset(w->dU, 0, sizeof(R) * n_hd * d);
	while (i < n_hd)
	{
		int			cnt = 0;
		int			tg[GLINTRU_LOGIT_BLOCK];
		int			idx[GLINTRU_LOGIT_BLOCK];

		while (i < n_hd && cnt < GLINTRU_LOGIT_BLOCK)
		{
			if (w->htgt[i] >= 0)
			{
				idx[cnt] = i;
				tg[cnt] = w->htgt[i];
				cnt++;
			}
			i++;
		}
		if (cnt == 0)
			continue;
		/* gather rows (usually already contiguous) */
		bool		contig = idx[cnt - 1] - idx[0] == cnt - 1;
		R		   *Ub = contig ? w->U + (size_t) idx[0] * d : w->Ug;
		R		   *dUb = contig ? w->dU + (size_t) idx[0] * d : w->dUg;

		if (!contig)
			for (int k = 0; k < cnt; k++)
				memcpy(w->Ug + (size_t) k * d, w->U + (size_t) idx[k] * d, sizeof(R) * d);
		loss += glintru_ce_fwd_bwd(net, Ub, tg, cnt, w->logits, loss_scale,
								   want_grad ? dUb : NULL,
								   want_grad ? GRD(P->grad, net, GT_ITEM_EMBEDDING) : NULL, w->Us);
		if (!contig && want_grad)
			for (int k = 0; k < cnt; k++)
				memcpy(w->dU + (size_t) idx[k] * d, dUb + (size_t) k * d, sizeof(R) * d);
	}
	return loss;
}

/* ------------------------------------------------------------------ */
/* backward                                                             */
/* ------------------------------------------------------------------ */

/* LayerNorm backward over head rows with tensors (tw, tb); dx overwritten. */
static void
head_ln_bwd(Pass *P, int tw, int tb, const R *dy, const R *xhat, const R *rstd, R *dx)
{
	glintru_layernorm_bwd(dy, P->n_hd, P->d, PRM(P->net, tw), xhat, rstd, dx, false,
						  GRD(P->grad, P->net, tw), GRD(P->grad, P->net, tb));
}

/* A d→d linear's backward over head rows with tensors (tw, tb): dX (+)= (beta). */
static void
head_linear_bwd(Pass *P, int tw, int tb, const R *X, const R *dY, R *dX, R beta)
{
	glintru_linear_bwd(X, dY, P->n_hd, P->d, P->d, PRM(P->net, tw), dX, beta,
					   GRD(P->grad, P->net, tw), GRD(P->grad, P->net, tb));
}

/*
 * Backward of residual_ln_fwd from dy: dpre = LN backward, dres = dpre
 * (the residual path, overwritten), then through the mask and the linear
 * (X, tw, tb) into dX (overwritten).
 */
static void
residual_ln_bwd(Pass *P, const R *dy, const R *xhat, const R *rstd, R *dpre, R *dres,
				const R *mask, const R *X, int tw, int tb, R *dX)
{
	size_t		hd = (size_t) P->n_hd * P->d;

	head_ln_bwd(P, GT_LN_W, GT_LN_B, dy, xhat, rstd, dpre);
	memcpy(dres, dpre, sizeof(R) * hd);
	if (P->inner)
		glintru_dropout_bwd(dpre, mask, hd);
	head_linear_bwd(P, tw, tb, X, dpre, dX, 0);
}

/* Backward of the MLP head (head_fwd after the mix): from dU to dM and dxh. */
static void
head_bwd(Pass *P)
{
	GlintruWork *w = P->w;
	size_t		hd = (size_t) P->n_hd * P->d;

	/* U = LN(Upre) ; Upre = drop(O) + Z */
	residual_ln_bwd(P, w->dU, w->Uh, w->Urs, w->dUp, w->dZ, w->mO, w->Q, GT_DENSEOUT_W, GT_DENSEOUT_B, w->dQ);
	for (size_t i = 0; i < hd; i++)
	{
		w->dX3[i] = w->dQ[i] * w->g4[i];
		w->dQ[i] = w->dQ[i] * w->X3[i];	/* d g4 */
	}
	glintru_gelu_bwd(w->X4, w->dQ, w->dX4, hd);
	head_linear_bwd(P, GT_DENSE3_W, GT_DENSE3_B, w->Z, w->dX3, w->dZ, 1);
	head_linear_bwd(P, GT_DENSE4_W, GT_DENSE4_B, w->Z, w->dX4, w->dZ, 1);
	/* Z = LN(Zpre) ; Zpre = drop(dense(Pm)) + x */
	residual_ln_bwd(P, w->dZ, w->Zh, w->Zrs, w->dZp, w->dxh, w->mD, w->Pm, GT_DENSE_W, GT_DENSE_B, w->dPm);
	for (size_t i = 0; i < hd; i++)
	{
		w->dM[i] = w->dPm[i] * w->d2g[i];
		w->dd2g[i] = w->dPm[i] * w->M[i];
	}
	glintru_gelu_bwd(w->d2, w->dd2g, w->dd2, hd);
	head_linear_bwd(P, GT_DENSE2_W, GT_DENSE2_B, w->xh, w->dd2, w->dxh, 1);
}

/* Backward of the mix M = w0 Y + w1 A: dY, dA and the two mix logits. */
static void
mix_bwd(Pass *P)
{
	GlintruWork *w = P->w;
	size_t		hd = (size_t) P->n_hd * P->d;
	R			w0 = P->w0,
				w1 = P->w1;
	double		g0 = 0,
				g1 = 0;

	for (size_t i = 0; i < hd; i++)
	{
		g0 += (double) w->dM[i] * w->Y[i];
		g1 += (double) w->dM[i] * w->A[i];
		w->dY[i] = w0 * w->dM[i];
		w->dA[i] = w1 * w->dM[i];
	}
	/*
	 * The softmax backward takes the weights unrounded, except w0 in gs:
	 * that is what the engine has always computed (GCC 12 vectorised the
	 * softmax and kept its double quotients here, at -O2 and -O3), and
	 * models stay bit-identical only if it still does.  In the float64
	 * build both spellings are the same number.
	 */
	double		gs = (double) w0 * g0 + P->w1d * g1;
	R		   *gm = GRD(P->grad, P->net, GT_MIX_LOGITS);

	gm[0] += (R) (P->w0d * (g0 - gs));
	gm[1] += (R) (P->w1d * (g1 - gs));
}

/* Backward of the attention expert: dxh (added), dk, dv, the pad's dk̂, dv. */
static void
attention_expert_bwd(Pass *P)
{
	GlintruWork *w = P->w;
	size_t		hd = (size_t) P->n_hd * P->d;

	head_ln_bwd(P, GT_ATT_LN_W, GT_ATT_LN_B, w->dA, w->Ah, w->Ars, w->dAp);
	for (size_t i = 0; i < hd; i++)
		w->dxh[i] += w->dAp[i];
	if (P->attd)
		glintru_dropout_bwd(w->dAp, w->mo, hd);
	head_linear_bwd(P, GT_ATT_O_W, GT_ATT_O_B, w->ctx, w->dAp, w->dctx, 0);
	memset(w->pd.dkh, 0, sizeof(R) * P->d);
	memset(w->pd.dv, 0, sizeof(R) * P->d);
	glintru_attention_bwd(P->net, &P->rw, w->kh, w->v, w->qh, w->pd.kh, w->pd.v, w->dctx,
						  w->dq, w->dk, w->dv, w->pd.dkh, w->pd.dv, w->pd.S);
	glintru_elunorm_bwd(w->qraw, w->qh, w->qinv, w->dq, P->n_hd, P->d, P->dh, w->dqraw);
	head_linear_bwd(P, GT_ATT_Q_W, GT_ATT_Q_B, w->xh, w->dqraw, w->dxh, 1);
}

/*
 * Backward of branches_fwd: the conv over G, branch 2, then branch 1 (whose
 * dh1 gets branch 2's path), leaving dGp and b1->dpj (d h_{p-1}).
 */
static void
branches_bwd(Pass *P)
{
	const GlintruNet *net = P->net;
	GlintruWork *w = P->w;
	GlintruUnit *b1 = &w->b1,
			   *b2 = &w->b2;
	R		   *grad = P->grad;
	int			d = P->d,
				n_hd = P->n_hd;

	memset(w->dKg, 0, sizeof(R) * 3 * d * d);
	glintru_linear_bwd(w->Gp, w->dY, n_hd, d, d, w->Kg, w->dGp, 0, w->dKg, GRD(grad, net, GT_CONVG_B));
	glintru_linear_bwd(b1->G, w->dY, n_hd, d, d, w->Kg + (size_t) d * d, b1->dG, 0, w->dKg + (size_t) d * d, NULL);
	glintru_linear_bwd(b2->G, w->dY, n_hd, d, d, w->Kg + (size_t) 2 * d * d, b2->dG, 0,
					   w->dKg + (size_t) 2 * d * d, NULL);
	glintru_conv_unpack_add(w->dKg, d, GRD(grad, net, GT_CONVG_W));
	for (int i = 0; i < n_hd; i++)
		if (w->hpos[i] + 1 >= P->L)
			memset(b2->dG + (size_t) i * d, 0, sizeof(R) * d);
	/* branch 2 into dh1 (direct z-path + W_hh path), then branch 1 into d h_{p-1} */
	glintru_gru_unit_bwd(net, b2, n_hd, false, b1->dh, grad);
	glintru_gru_unit_bwd(net, b1, n_hd, true, b1->dpj, grad);
}

/*
 * Backward of the GRU trunk: the head rows' dG_{p-1} and dh_{p-1}, the
 * trunk gate and projection, then BPTT in lockstep and the input side.
 */
static void
trunk_gru_bwd(Pass *P)
{
	const GlintruNet *net = P->net;
	GlintruWork *w = P->w;
	GlintruUnit *tr = &w->tr;
	int			d = P->d,
				n_tr = P->n_tr;

	memset(tr->dG, 0, sizeof(R) * n_tr * d);
	memset(tr->dh, 0, sizeof(R) * n_tr * d);
	for (int i = 0; i < P->n_hd; i++)
	{
		if (w->hpos[i] == 0)
			continue;
		size_t		o = (size_t) (w->hrow[i] - 1) * d;

		for (int j = 0; j < d; j++)
		{
			tr->dG[o + j] += w->dGp[(size_t) i * d + j];
			tr->dh[o + j] += w->b1.dpj[(size_t) i * d + j];
		}
	}
	glintru_unit_post_bwd(net, tr, n_tr, P->grad, true);
	memset(tr->dgh, 0, sizeof(R) * n_tr * 3 * d);
	memset(tr->dgi, 0, sizeof(R) * n_tr * 3 * d);
	for (int t = P->maxlen - 2; t >= 0; t--)
	{
		int			na = lockstep_active(P, t);

		for (int i = 0; i < na; i++)
		{
			size_t		row = (size_t) (w->tr_off[w->act[i]] + t);

			glintru_gru_cell_bwd(tr->dh + row * d, tr->hprev + row * d, tr->r + row * d, tr->z + row * d,
								 tr->nn + row * d, tr->ghn + row * d, 1, d, tr->dgi + row * 3 * d,
								 tr->dgh + row * 3 * d, w->direct);
			if (t > 0)
			{
				R		   *hp = tr->dh + (row - 1) * d;

				for (int j = 0; j < d; j++)
					hp[j] += w->direct[j];
				memcpy(w->tGH + (size_t) i * 3 * d, tr->dgh + row * 3 * d, sizeof(R) * 3 * d);
			}
		}
		if (t > 0 && na > 0)
		{
			GEMM(RM, NT, NT, na, d, 3 * d, 1, w->tGH, 3 * d, PRM(net, GT_GRU_W_HH), d, 0, w->tH, d);
			for (int i = 0; i < na; i++)
			{
				R		   *hp = tr->dh + (size_t) (w->tr_off[w->act[i]] + t - 1) * d;
				const R    *s = w->tH + (size_t) i * d;

				for (int j = 0; j < d; j++)
					hp[j] += s[j];
			}
		}
	}
	glintru_gru_input_bwd(net, tr, n_tr, P->grad);
}

/*
 * Conv taps, rows: from dc (trunk), dc1, dc2 (head) to dP0, dP1, dP2, the
 * conv bias and the pad taps dkap1, dkap2.
 */
static void
conv_taps_rows_bwd(Pass *P)
{
	const GlintruChunk *ch = P->rw.ch;
	GlintruWork *w = P->w;
	GlintruPad *pd = &w->pd;
	int			d = P->d;
	R		   *cbg = GRD(P->grad, P->net, GT_CONV1D_B);

	memset(w->dP0, 0, sizeof(R) * P->n_tr * d);
	memset(w->dP1, 0, sizeof(R) * P->n_tr * d);
	memset(w->dP2, 0, sizeof(R) * P->n_tr * d);
	memset(pd->dkap1, 0, sizeof(R) * d);
	memset(pd->dkap2, 0, sizeof(R) * d);
	for (int c = 0; c < P->rw.nc; c++)
		for (int t = 0; t + 1 < ch[c].len; t++)
		{
			size_t		row = (size_t) (w->tr_off[c] + t);
			const R    *g = w->tr.dc + row * d;

			for (int j = 0; j < d; j++)
			{
				cbg[j] += g[j];
				w->dP1[row * d + j] += g[j];
				if (t > 0)
					w->dP0[(row - 1) * d + j] += g[j];
				w->dP2[(row + 1) * d + j] += g[j];
			}
		}
	for (int i = 0; i < P->n_hd; i++)
	{
		int			row = w->hrow[i],
					p = w->hpos[i];
		R			lt1 = (R) (p + 1 < P->L),
					lt2 = (R) (p + 2 < P->L);
		const R    *g1 = w->b1.dc + (size_t) i * d;
		const R    *g2 = w->b2.dc + (size_t) i * d;

		for (int j = 0; j < d; j++)
		{
			cbg[j] += g1[j] + g2[j];
			if (p > 0)
				w->dP0[(size_t) (row - 1) * d + j] += g1[j];
			w->dP1[(size_t) row * d + j] += g1[j];
			w->dP0[(size_t) row * d + j] += g2[j];
			pd->dkap2[j] += lt1 * g1[j] + lt2 * g2[j];
			pd->dkap1[j] += lt1 * g2[j];
		}
	}
}

/* Conv taps, weights: da (trunk and pad) and the conv1d weight gradient. */
static void
conv_taps_weights_bwd(Pass *P)
{
	GlintruWork *w = P->w;
	GlintruPad *pd = &w->pd;
	int			d = P->d,
				n_tr = P->n_tr;

	memset(w->dK, 0, sizeof(R) * 3 * d * d);
	GEMM(RM, NT, NT, n_tr, d, d, 1, w->dP0, d, w->K, d, 0, w->da, d);
	GEMM(RM, NT, NT, n_tr, d, d, 1, w->dP1, d, w->K + (size_t) d * d, d, 1, w->da, d);
	GEMM(RM, NT, NT, n_tr, d, d, 1, w->dP2, d, w->K + (size_t) 2 * d * d, d, 1, w->da, d);
	GEMM(RM, TR, NT, d, d, n_tr, 1, w->dP0, d, w->a, d, 1, w->dK, d);
	GEMM(RM, TR, NT, d, d, n_tr, 1, w->dP1, d, w->a, d, 1, w->dK + (size_t) d * d, d);
	GEMM(RM, TR, NT, d, d, n_tr, 1, w->dP2, d, w->a, d, 1, w->dK + (size_t) 2 * d * d, d);
	/* pad taps: kap_k = K_k apad */
	for (int o = 0; o < d; o++)
		for (int i = 0; i < d; i++)
		{
			w->dK[(size_t) d * d + (size_t) o * d + i] += pd->dkap1[o] * pd->a[i];
			w->dK[(size_t) 2 * d * d + (size_t) o * d + i] += pd->dkap2[o] * pd->a[i];
		}
	for (int i = 0; i < d; i++)
	{
		R			s = 0;

		for (int o = 0; o < d; o++)
			s += w->K[(size_t) d * d + (size_t) o * d + i] * pd->dkap1[o]
				+ w->K[(size_t) 2 * d * d + (size_t) o * d + i] * pd->dkap2[o];
		pd->da[i] = s;
	}
	glintru_conv_unpack_add(w->dK, d, GRD(P->grad, P->net, GT_CONV1D_W));
}

/* dense1, key and value of n rows x (trunk or pad) back into dx (overwritten). */
static void
input_proj_bwd(Pass *P, int n, const R *x, const R *da, const R *kraw, const R *kh,
			   const R *kinv, const R *dk, R *dkraw, const R *dv, R *dx)
{
	const GlintruNet *net = P->net;
	R		   *grad = P->grad;
	int			d = P->d;

	glintru_linear_bwd(x, da, n, d, d, PRM(net, GT_DENSE1_W), dx, 0,
					   GRD(grad, net, GT_DENSE1_W), GRD(grad, net, GT_DENSE1_B));
	glintru_elunorm_bwd(kraw, kh, kinv, dk, n, d, P->dh, dkraw);
	glintru_linear_bwd(x, dkraw, n, d, d, PRM(net, GT_ATT_K_W), dx, 1,
					   GRD(grad, net, GT_ATT_K_W), GRD(grad, net, GT_ATT_K_B));
	glintru_linear_bwd(x, dv, n, d, d, PRM(net, GT_ATT_V_W), dx, 1,
					   GRD(grad, net, GT_ATT_V_W), GRD(grad, net, GT_ATT_V_B));
}

/*
 * Input side: dense1, key and value of trunk rows and pad, the head rows'
 * dxh back to their trunk rows, embedding dropout, then the input side of dE
 * (pad_input_grad=false: row 0 gets nothing through its use as input).
 */
static void
input_bwd(Pass *P, bool pad_input_grad)
{
	const GlintruChunk *ch = P->rw.ch;
	GlintruWork *w = P->w;
	GlintruPad *pd = &w->pd;
	int			d = P->d;
	R		   *dE = GRD(P->grad, P->net, GT_ITEM_EMBEDDING);

	input_proj_bwd(P, P->n_tr, w->x, w->da, w->kraw, w->kh, w->kinv, w->dk, w->dkraw, w->dv, w->dx);
	input_proj_bwd(P, 1, pd->x, pd->da, pd->kraw, pd->kh, pd->kinv, pd->dkh, pd->dkraw, pd->dv, pd->dx);
	for (int i = 0; i < P->n_hd; i++)
	{
		R		   *dst = w->dx + (size_t) w->hrow[i] * d;
		const R    *src = w->dxh + (size_t) i * d;

		for (int j = 0; j < d; j++)
			dst[j] += src[j];
	}
	if (P->train && P->drop->p_emb > 0)
		glintru_dropout_bwd(w->dx, w->mx, (size_t) P->n_tr * d);
	for (int c = 0; c < P->rw.nc; c++)
		for (int p = 0; p < ch[c].len; p++)
		{
			int			it = ch[c].items[p];
			const R    *src = w->dx + (size_t) (w->tr_off[c] + p) * d;

			/* published padding_idx=0: no gradient through the lookup of row 0 */
			if (it == 0 && !pad_input_grad)
				continue;
			for (int j = 0; j < d; j++)
				dE[(size_t) it * d + j] += src[j];
		}
	if (pad_input_grad)
		for (int j = 0; j < d; j++)
			dE[j] += pd->dx[j];
}

/* The backward of the whole model from dU into P->grad. */
static void
pass_backward(Pass *P, bool pad_input_grad)
{
	head_bwd(P);
	mix_bwd(P);
	attention_expert_bwd(P);
	branches_bwd(P);
	trunk_gru_bwd(P);
	conv_taps_rows_bwd(P);
	conv_taps_weights_bwd(P);
	input_bwd(P, pad_input_grad);
}

/* ------------------------------------------------------------------ */
/* entry points                                                         */
/* ------------------------------------------------------------------ */

/*
 * Forward, loss, and (grad != NULL) backward over a set of chunks; copies
 * the head rows' user vectors to out_u when given.  NaN on OOM.
 */
static double
model_pass(const GlintruNet *net, const GlintruChunk *ch, int nc, const GlintruDropout *drop,
		   double loss_scale, R *grad, bool pad_input_grad, GlintruWork *w, R *out_u)
{
	Pass		P;

	if (!pass_setup(&P, net, ch, nc, drop, grad, w))
		return NAN;
	pass_forward(&P);
	if (out_u)
		memcpy(out_u, w->U, sizeof(R) * P.n_hd * P.d);

	double		loss = pass_loss(&P, loss_scale);

	if (grad)
		pass_backward(&P, pad_input_grad);
	return loss;
}

/* Summed cross-entropy of the chunks' targets, its gradient added to grad. */
double
glintru_net_loss_grad(const GlintruNet *net, const GlintruChunk *chunks, int n_chunks,
					  const GlintruDropout *drop, double loss_scale, GlintruReal *grad,
					  bool pad_input_grad, GlintruWork *w)
{
	return model_pass(net, chunks, n_chunks, drop, loss_scale, grad, pad_input_grad, w, NULL);
}

/* User vectors of every head position of the chunks, in row order. */
bool
glintru_net_head_vectors(const GlintruNet *net, const GlintruChunk *chunks, int n_chunks,
						 const GlintruDropout *drop, GlintruReal *out, GlintruWork *w)
{
	double		r = model_pass(net, chunks, n_chunks, drop, 0, NULL, false, w, out);

	return !isnan(r);
}

/* User vectors (eval mode) of each chunk's last position. */
bool
glintru_net_user_vectors(const GlintruNet *net, const GlintruChunk *chunks, int n_chunks,
						 GlintruReal *out, GlintruWork *w)
{
	/* evaluate only each chunk's last position */
	GlintruChunk *c2 = calloc(n_chunks > 0 ? n_chunks : 1, sizeof(GlintruChunk));
	bool		ok;

	if (!c2)
		return false;
	for (int i = 0; i < n_chunks; i++)
	{
		c2[i] = chunks[i];
		c2[i].p_lo = chunks[i].len - 1;
		c2[i].targets = NULL;
	}
	ok = glintru_net_head_vectors(net, c2, n_chunks, NULL, out, w);
	free(c2);
	return ok;
}
