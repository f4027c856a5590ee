/*
 * train_work.c — the workspace of a pass: ONE table of every activation and
 * gradient buffer with its shape.  The table is walked once to size the
 * arena and once to point the GlintruWork fields into it, so a buffer
 * cannot be carved without being counted.
 *
 * Shapes use T = trunk rows (every position of every chunk), Hh = head rows
 * (positions that predict), nc = chunks, d, H = heads, dh = d/H, N1 = item
 * rows (item 0 included), B = GLINTRU_LOGIT_BLOCK.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"

/* How many rows a buffer has. */
typedef enum WorkRows
{
	ROWS_T,						/* trunk rows */
	ROWS_HH,					/* head rows */
	ROWS_NC,					/* chunks */
	ROWS_B,						/* GLINTRU_LOGIT_BLOCK */
	ROWS_1,
	ROWS_UNIT_T,				/* a GlintruUnit over trunk rows (unit_fields) */
	ROWS_UNIT_HH,				/* a GlintruUnit over head rows (unit_fields) */
	ROWS_KINDS
} WorkRows;

/* How many columns a buffer has. */
typedef enum WorkCols
{
	COLS_D,						/* d */
	COLS_3D,					/* 3d: the r, z, n gates */
	COLS_HALF,					/* d/2: the selective gate's hidden layer */
	COLS_H,						/* one per head */
	COLS_1,
	COLS_N1,					/* one per item row */
	COLS_3DD,					/* three d×d conv tap matrices */
	COLS_DDH,					/* d×dh: one attention state per head */
	COLS_KINDS
} WorkCols;

/* One buffer: where its pointer lives (byte offset in the struct) and its shape. */
typedef struct WorkField
{
	size_t		off;
	WorkRows	rows;
	WorkCols	cols;
} WorkField;

#define W_(f, r, c) {offsetof(GlintruWork, f), ROWS_##r, COLS_##c}
#define U_(f, c) {offsetof(GlintruUnit, f), ROWS_1, COLS_##c}

/* A unit over n rows (rows come from the table entry that places the unit). */
static const WorkField unit_fields[] = {
	U_(c, D),					/* c [n×d]        conv output, GRU input */
	U_(hprev, D),				/* hprev [n×d]    GRU state before the step */
	U_(h, D),					/* h [n×d]        GRU state after the step */
	U_(r, D),					/* r [n×d]        reset gate */
	U_(z, D),					/* z [n×d]        update gate */
	U_(nn, D),					/* nn [n×d]       candidate state */
	U_(ghn, D),					/* ghn [n×d]      W_hn hprev, kept for backward */
	U_(pj, D),					/* pj [n×d]       projection(h) */
	U_(G, D),					/* G [n×d]        s ⊙ pj */
	U_(s, D),					/* s [n×d]        selective gate output */
	U_(msbuf, D),				/* msbuf [n×d]    gate dropout mask */
	U_(dc, D),					/* dc [n×d] */
	U_(dh, D),					/* dh [n×d] */
	U_(ds, D),					/* ds [n×d] */
	U_(dpj, D),					/* dpj [n×d]      (branch 1: also d hprev) */
	U_(dG, D),					/* dG [n×d] */
	U_(gi, 3D),					/* gi [n×3d]      W_ih c */
	U_(gh, 3D),					/* gh [n×3d]      W_hh hprev */
	U_(dgi, 3D),				/* dgi [n×3d] */
	U_(dgh, 3D),				/* dgh [n×3d] */
	U_(g1, HALF),				/* g1 [n×d/2]     gate1(c) */
	U_(g1a, HALF),				/* g1a [n×d/2]    silu(g1) */
	U_(dg1, HALF),				/* dg1 [n×d/2] */
};

/* Every buffer of a pass, in arena order. */
static const WorkField work_fields[] = {
	/* trunk rows */
	W_(x, T, D),				/* x [T×d]        embedding after dropout */
	W_(mx, T, D),				/* mx [T×d]       embedding dropout mask */
	W_(a, T, D),				/* a [T×d]        dense1(x) */
	W_(P0, T, D),				/* P0 [T×d]       K0 a (conv tap 0) */
	W_(P1, T, D),				/* P1 [T×d]       K1 a */
	W_(P2, T, D),				/* P2 [T×d]       K2 a */
	W_(kraw, T, D),				/* kraw [T×d]     key before ELU+norm */
	W_(kh, T, D),				/* kh [T×d]       k̂ */
	W_(kinv, T, H),				/* kinv [T×H]     1/‖elu(k)‖ per head */
	W_(v, T, D),				/* v [T×d]        value */
	W_(tr, UNIT_T, 1),			/* tr             the GRU trunk unit [T rows] */
	W_(dx, T, D),				/* dx [T×d] */
	W_(da, T, D),				/* da [T×d] */
	W_(dP0, T, D),				/* dP0 [T×d] */
	W_(dP1, T, D),				/* dP1 [T×d] */
	W_(dP2, T, D),				/* dP2 [T×d] */
	W_(dk, T, D),				/* dk [T×d]       d k̂ */
	W_(dv, T, D),				/* dv [T×d] */
	W_(dkraw, T, D),			/* dkraw [T×d] */
	/* head rows */
	W_(xh, HH, D),				/* xh [Hh×d]      x at the head row's position */
	W_(qraw, HH, D),			/* qraw [Hh×d]    query before ELU+norm */
	W_(qh, HH, D),				/* qh [Hh×d]      q̂ */
	W_(qinv, HH, H),			/* qinv [Hh×H]    1/‖elu(q)‖ per head */
	W_(ctx, HH, D),				/* ctx [Hh×d]     attention context */
	W_(o, HH, D),				/* o [Hh×d]       attention output + x */
	W_(mo, HH, D),				/* mo [Hh×d]      attention dropout mask */
	W_(Ah, HH, D),				/* Ah [Hh×d]      LN_att x̂ */
	W_(Ars, HH, 1),				/* Ars [Hh]       LN_att 1/σ */
	W_(A, HH, D),				/* A [Hh×d]       attention expert */
	W_(Gp, HH, D),				/* Gp [Hh×d]      trunk G at p-1 */
	W_(Y, HH, D),				/* Y [Hh×d]       conv over G */
	W_(M, HH, D),				/* M [Hh×d]       w0 Y + w1 A */
	W_(d2, HH, D),				/* d2 [Hh×d]      dense2(x) */
	W_(d2g, HH, D),				/* d2g [Hh×d]     gelu(d2) */
	W_(Pm, HH, D),				/* Pm [Hh×d]      M ⊙ d2g */
	W_(D, HH, D),				/* D [Hh×d]       dense(Pm), dropped, + x */
	W_(mD, HH, D),				/* mD [Hh×d]      mask of D */
	W_(Zh, HH, D),				/* Zh [Hh×d]      LN x̂ */
	W_(Zrs, HH, 1),				/* Zrs [Hh]       LN 1/σ */
	W_(Z, HH, D),				/* Z [Hh×d]       LN(D) */
	W_(X3, HH, D),				/* X3 [Hh×d]      dense3(Z) */
	W_(X4, HH, D),				/* X4 [Hh×d]      dense4(Z) */
	W_(g4, HH, D),				/* g4 [Hh×d]      gelu(X4) */
	W_(Q, HH, D),				/* Q [Hh×d]       X3 ⊙ g4 */
	W_(O, HH, D),				/* O [Hh×d]       denseout(Q), dropped, + Z */
	W_(mO, HH, D),				/* mO [Hh×d]      mask of O */
	W_(Uh, HH, D),				/* Uh [Hh×d]      LN x̂ */
	W_(Urs, HH, 1),				/* Urs [Hh]       LN 1/σ */
	W_(U, HH, D),				/* U [Hh×d]       user vectors */
	W_(b1, UNIT_HH, 1),			/* b1             GRU branch 1 unit [Hh rows] */
	W_(b2, UNIT_HH, 1),			/* b2             GRU branch 2 unit [Hh rows] */
	W_(dxh, HH, D),				/* dxh [Hh×d] */
	W_(dq, HH, D),				/* dq [Hh×d]      d q̂ */
	W_(dqraw, HH, D),			/* dqraw [Hh×d] */
	W_(dctx, HH, D),			/* dctx [Hh×d] */
	W_(dA, HH, D),				/* dA [Hh×d] */
	W_(dAp, HH, D),				/* dAp [Hh×d]     d(o + x) */
	W_(dY, HH, D),				/* dY [Hh×d] */
	W_(dM, HH, D),				/* dM [Hh×d] */
	W_(dGp, HH, D),				/* dGp [Hh×d] */
	W_(dPm, HH, D),				/* dPm [Hh×d] */
	W_(dd2g, HH, D),			/* dd2g [Hh×d] */
	W_(dd2, HH, D),				/* dd2 [Hh×d] */
	W_(dZ, HH, D),				/* dZ [Hh×d] */
	W_(dZp, HH, D),				/* dZp [Hh×d]     d(D) */
	W_(dQ, HH, D),				/* dQ [Hh×d]      dQ, then d g4 */
	W_(dX3, HH, D),				/* dX3 [Hh×d] */
	W_(dX4, HH, D),				/* dX4 [Hh×d] */
	W_(dU, HH, D),				/* dU [Hh×d] */
	W_(dUp, HH, D),				/* dUp [Hh×d]     d(O) */
	W_(logits, B, N1),			/* logits [B×N1]  one cross-entropy block */
	/* lockstep GRU */
	W_(tH, NC, D),				/* tH [nc×d]      states of the active chunks */
	W_(tGH, NC, 3D),			/* tGH [nc×3d]    their W_hh products */
	/* conv weights */
	W_(K, 1, 3DD),				/* K [3×d×d]      conv1d taps */
	W_(dK, 1, 3DD),				/* dK [3×d×d] */
	W_(Kg, 1, 3DD),				/* Kg [3×d×d]     conv over G taps */
	W_(dKg, 1, 3DD),			/* dKg [3×d×d] */
	/* rows gathered for a cross-entropy block whose targets are not contiguous */
	W_(Ug, B, D),				/* Ug [B×d] */
	W_(dUg, B, D),				/* dUg [B×d] */
	W_(Us, B, D),				/* Us [B×d]       a block's U rows times scale/Σexp */
	/* BPTT: the direct z-path of one row */
	W_(direct, 1, D),			/* direct [d] */
	/* the padding slot */
	W_(pd.x, 1, D),				/* pd.x [d]       E[0] */
	W_(pd.a, 1, D),				/* pd.a [d]       dense1(E[0]) */
	W_(pd.kraw, 1, D),			/* pd.kraw [d] */
	W_(pd.kh, 1, D),			/* pd.kh [d]      k̂ of the pad */
	W_(pd.kinv, 1, D),			/* pd.kinv [d]    (H used) */
	W_(pd.v, 1, D),				/* pd.v [d] */
	W_(pd.kap1, 1, D),			/* pd.kap1 [d]    K1 a_pad */
	W_(pd.kap2, 1, D),			/* pd.kap2 [d]    K2 a_pad */
	W_(pd.dkh, 1, D),			/* pd.dkh [d] */
	W_(pd.dkraw, 1, D),			/* pd.dkraw [d] */
	W_(pd.dv, 1, D),			/* pd.dv [d] */
	W_(pd.da, 1, D),			/* pd.da [d] */
	W_(pd.dkap1, 1, D),			/* pd.dkap1 [d] */
	W_(pd.dkap2, 1, D),			/* pd.dkap2 [d] */
	W_(pd.dx, 1, D),			/* pd.dx [d] */
	W_(pd.S, 1, DDH),			/* pd.S [d×dh]    attention state scratch */
};

#undef W_
#undef U_

/* The int row maps: same walk, element int. */
#define I_(f, r) {offsetof(GlintruWork, f), ROWS_##r, COLS_1}
static const WorkField int_fields[] = {
	I_(tr_off, NC),				/* tr_off [nc] */
	I_(hd_off, NC),				/* hd_off [nc] */
	I_(act, NC),				/* act [nc] */
	I_(hrow, HH),				/* hrow [Hh] */
	I_(hpos, HH),				/* hpos [Hh] */
	I_(htgt, HH),				/* htgt [Hh] */
};
#undef I_

/* The sizes a pass needs, per row and column kind. */
typedef struct WorkDims
{
	size_t		rows[ROWS_KINDS];
	size_t		cols[COLS_KINDS];
} WorkDims;

/*
 * Walk a table: with base NULL only count, else also point each field of
 * obj at its place after *at (elem bytes per element).  Returns elements.
 */
static size_t
work_walk(const WorkField *tab, size_t n, const WorkDims *dm, size_t unit_rows,
		  char *obj, char *base, size_t elem, size_t at)
{
	for (size_t i = 0; i < n; i++)
	{
		const WorkField *f = &tab[i];

		if (f->rows == ROWS_UNIT_T || f->rows == ROWS_UNIT_HH)
		{
			size_t		ur = dm->rows[f->rows == ROWS_UNIT_T ? ROWS_T : ROWS_HH];

			at = work_walk(unit_fields, sizeof unit_fields / sizeof unit_fields[0], dm, ur,
						   obj ? obj + f->off : NULL, base, elem, at);
			continue;
		}
		size_t		rows = tab == unit_fields ? unit_rows : dm->rows[f->rows];

		if (base)
		{
			void	   *ptr = base + at * elem;

			/* memcpy: the field is an R * or int *, written without type punning */
			memcpy(obj + f->off, &ptr, sizeof ptr);
		}
		at += rows * dm->cols[f->cols];
	}
	return at;
}

/* (Re)allocate *arena to hold need elements if it is smaller. */
static bool
work_grow(void **arena, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return true;
	/* grow with slack: batches vary in rows, and fresh pages cost faults */
	need += need / 4;
	free(*arena);
	*arena = malloc(need * elem);
	*cap = *arena ? need : 0;
	return *arena != NULL;
}

/* Size and carve the workspace for n_tr trunk rows, n_hd head rows and nc chunks. */
bool
glintru_work_reserve(GlintruWork *w, const GlintruNet *net, int n_tr, int n_hd, int nc)
{
	size_t		d = (size_t) net->d,
				H = (size_t) net->n_heads;
	WorkDims	dm = {
		.rows = {[ROWS_T] = (size_t) n_tr,[ROWS_HH] = (size_t) n_hd,[ROWS_NC] = (size_t) nc,
		[ROWS_B] = GLINTRU_LOGIT_BLOCK,[ROWS_1] = 1},
		.cols = {[COLS_D] = d,[COLS_3D] = 3 * d,[COLS_HALF] = d / 2,[COLS_H] = H,[COLS_1] = 1,
		[COLS_N1] = (size_t) net->layout.n_rows,[COLS_3DD] = 3 * d * d,[COLS_DDH] = d * (d / H)},
	};
	size_t		nr = sizeof work_fields / sizeof work_fields[0],
				ni = sizeof int_fields / sizeof int_fields[0];
	/* + 1: never a zero-byte arena */
	size_t		need = work_walk(work_fields, nr, &dm, 0, NULL, NULL, 0, 0) + 1,
				ineed = work_walk(int_fields, ni, &dm, 0, NULL, NULL, 0, 0) + 1;

	if (!work_grow((void **) &w->arena, &w->cap, need, sizeof(R)) ||
		!work_grow((void **) &w->iarena, &w->icap, ineed, sizeof(int)))
		return false;
	work_walk(work_fields, nr, &dm, 0, (char *) w, (char *) w->arena, sizeof(R), 0);
	work_walk(int_fields, ni, &dm, 0, (char *) w, (char *) w->iarena, sizeof(int), 0);
	return true;
}

/* An empty workspace; the first pass sizes it. */
GlintruWork *
glintru_work_new(void)
{
	return calloc(1, sizeof(GlintruWork));
}

/* Frees a workspace and its arenas (NULL is fine). */
void
glintru_work_free(GlintruWork *w)
{
	if (!w)
		return;
	free(w->arena);
	free(w->iarena);
	free(w);
}
