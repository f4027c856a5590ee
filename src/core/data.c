/*
 * data.c — the TSV reader of interaction files, the item-count filter,
 * vocabularies and the leave-one-out split; see data.h.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data.h"

typedef struct Triple
{
	int64_t		user;
	int64_t		item;
	double		order;
	int64_t		line;
} Triple;

/* User, then order, then file line: ties keep file order, so the sort is deterministic. */
static int
cmp_triple(const void *a, const void *b)
{
	const Triple *x = a,
			   *y = b;

	if (x->user != y->user)
		return x->user < y->user ? -1 : 1;
	if (x->order != y->order)
		return x->order < y->order ? -1 : 1;
	return (x->line > y->line) - (x->line < y->line);
}

/* The one place histories are laid out, shared by the file reader and the SQL glue. */
static bool
build_from_triples(Triple *t, int64_t n, GlintruInteractions *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (n <= 0)
	{
		snprintf(err, errlen, "no interactions");
		return false;
	}
	qsort(t, (size_t) n, sizeof(Triple), cmp_triple);
	int64_t		nu = 1;

	for (int64_t i = 1; i < n; i++)
		if (t[i].user != t[i - 1].user)
			nu++;
	out->n_users = nu;
	out->user_ids = malloc(sizeof(int64_t) * (size_t) nu);
	out->off = malloc(sizeof(int64_t) * (size_t) (nu + 1));
	out->items = malloc(sizeof(int64_t) * (size_t) n);
	if (!out->user_ids || !out->off || !out->items)
	{
		glintru_interactions_free(out);
		snprintf(err, errlen, "out of memory");
		return false;
	}
	int64_t		u = -1;

	for (int64_t i = 0; i < n; i++)
	{
		if (i == 0 || t[i].user != t[i - 1].user)
		{
			u++;
			out->user_ids[u] = t[i].user;
			out->off[u] = i;
		}
		out->items[i] = t[i].item;
	}
	out->off[nu] = n;
	return true;
}

/* Without an order column the array order is the time order. */
bool
glintru_interactions_from_triples(const int64_t *users, const int64_t *items, const int64_t *order,
								  int64_t n, GlintruInteractions *out, char *err, size_t errlen)
{
	Triple	   *t = malloc(sizeof(Triple) * (size_t) (n > 0 ? n : 1));
	bool		ok;

	if (!t)
	{
		snprintf(err, errlen, "out of memory");
		return false;
	}
	for (int64_t i = 0; i < n; i++)
	{
		t[i].user = users[i];
		t[i].item = items[i];
		t[i].order = order ? (double) order[i] : (double) i;
		t[i].line = i;
	}
	ok = build_from_triples(t, n, out, err, errlen);
	free(t);
	return ok;
}

/* Strict integer parse of a whole field. */
static bool
parse_i64(const char *s, int64_t *v)
{
	char	   *end;

	if (*s == '\0')
		return false;
	errno = 0;
	long long	x = strtoll(s, &end, 10);

	if (errno || *end != '\0')
		return false;
	*v = (int64_t) x;
	return true;
}

/* Strict like parse_i64, and finite only: the order column feeds a sort. */
static bool
parse_f64(const char *s, double *v)
{
	char	   *end;

	if (*s == '\0')
		return false;
	errno = 0;
	*v = strtod(s, &end);
	/* NaN would make the sort's comparison inconsistent (undefined behaviour in qsort) */
	return errno == 0 && *end == '\0' && isfinite(*v);
}

/* Decompression is chosen by suffix alone, so that a plain file never goes through a shell. */
static bool
ends_with(const char *s, const char *suf)
{
	size_t		a = strlen(s),
				b = strlen(suf);

	return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Positions of the columns the header line names (-1: absent). */
typedef struct Columns
{
	int			user,
				item,
				order,
				n;
} Columns;

/* An .xz file is read through xz -dc, so that the shared datasets need no unpacked copy. */
static FILE *
open_input(const char *path, bool piped, char *err, size_t errlen)
{
	FILE	   *f;

	if (access(path, R_OK) != 0)
	{
		snprintf(err, errlen, "cannot read \"%s\": %s", path, strerror(errno));
		return NULL;
	}
	if (piped)
	{
		/* quote for the shell: single quotes, with embedded ones escaped */
		size_t		L = strlen(path);
		char	   *cmd = malloc(L * 4 + 32);
		char	   *p;

		if (!cmd)
		{
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
		p = cmd + sprintf(cmd, "xz -dc -- '");
		for (const char *s = path; *s; s++)
		{
			if (*s == '\'')
			{
				memcpy(p, "'\\''", 4);
				p += 4;
			}
			else
				*p++ = *s;
		}
		strcpy(p, "'");
		f = popen(cmd, "r");
		free(cmd);
	}
	else
		f = fopen(path, "r");
	if (!f)
		snprintf(err, errlen, "cannot open \"%s\": %s", path, strerror(errno));
	return f;
}

/*
 * The header line: columns found by name, splitting at every tab exactly as
 * the rows are split (an empty name, e.g. pandas' index column, is a column
 * too; strtok would merge it away and shift the rest).
 */
static bool
read_header(char *line, const char *path, Columns *col, char *err, size_t errlen)
{
	int			c = 0;

	for (char *tok = line;; c++)
	{
		char	   *tab = strchr(tok, '\t');

		if (tab)
			*tab = '\0';
		if (strcmp(tok, "user_id") == 0)
			col->user = c;
		else if (strcmp(tok, "item_id") == 0)
			col->item = c;
		else if (col->order < 0 && (strcmp(tok, "seq") == 0 || strcmp(tok, "ts") == 0 ||
									strcmp(tok, "timestamp") == 0))
			col->order = c;
		if (!tab)
			break;
		tok = tab + 1;
	}
	col->n = c + 1;
	if (col->user >= 64 || col->item >= 64 || col->order >= 64)
	{
		snprintf(err, errlen, "%s: user_id, item_id and the order column must be among the first 64 columns", path);
		return false;
	}
	if (col->user < 0 || col->item < 0 || col->order < 0)
	{
		snprintf(err, errlen, "%s: header must name columns user_id, item_id and seq (or ts); missing %s",
				 path, col->user < 0 ? "user_id" : col->item < 0 ? "item_id" : "seq/ts");
		return false;
	}
	return true;
}

/* One data line into tr; every field is parsed strictly, so that a shifted column fails loudly. */
static bool
read_row(char *line, const char *path, int64_t lineno, const Columns *col, Triple *tr,
		 char *err, size_t errlen)
{
	char	   *fields[64];
	int			nf = 0;
	char	   *s = line;

	for (;;)
	{
		if (nf < 64)
			fields[nf++] = s;
		char	   *tab = strchr(s, '\t');

		if (!tab)
			break;
		*tab = '\0';
		s = tab + 1;
	}
	if (nf < col->n && (col->user >= nf || col->item >= nf || col->order >= nf))
	{
		snprintf(err, errlen, "%s:%lld: expected %d tab-separated columns, found %d",
				 path, (long long) lineno, col->n, nf);
		return false;
	}
	if (!parse_i64(fields[col->user], &tr->user))
	{
		snprintf(err, errlen, "%s:%lld: user_id \"%.40s\" is not an integer", path, (long long) lineno, fields[col->user]);
		return false;
	}
	if (!parse_i64(fields[col->item], &tr->item))
	{
		snprintf(err, errlen, "%s:%lld: item_id \"%.40s\" is not an integer", path, (long long) lineno, fields[col->item]);
		return false;
	}
	if (!parse_f64(fields[col->order], &tr->order))
	{
		snprintf(err, errlen, "%s:%lld: order value \"%.40s\" is not a number", path, (long long) lineno, fields[col->order]);
		return false;
	}
	tr->line = lineno;
	return true;
}

/* Rows are collected, then sorted once: files need not be grouped by user. */
bool
glintru_read_interactions(const char *path, GlintruInteractions *out, char *err, size_t errlen)
{
	FILE	   *f;
	bool		piped = ends_with(path, ".xz");
	char	   *line = NULL;
	size_t		cap = 0;
	ssize_t		len;
	Columns		col = {-1, -1, -1, 0};
	Triple	   *t = NULL;
	int64_t		n = 0,
				tcap = 0,
				lineno = 0;
	bool		ok = false;

	memset(out, 0, sizeof(*out));
	f = open_input(path, piped, err, errlen);
	if (!f)
		return false;
	while ((len = getline(&line, &cap, f)) >= 0)
	{
		Triple		tr;

		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (lineno == 1)
		{
			if (!read_header(line, path, &col, err, errlen))
				goto done;
			continue;
		}
		if (len == 0)
			continue;
		if (!read_row(line, path, lineno, &col, &tr, err, errlen))
			goto done;
		if (n == tcap)
		{
			tcap = tcap ? tcap * 2 : 1 << 16;
			Triple	   *nt = realloc(t, sizeof(Triple) * (size_t) tcap);

			if (!nt)
			{
				snprintf(err, errlen, "out of memory");
				goto done;
			}
			t = nt;
		}
		t[n++] = tr;
	}
	if (lineno == 0)
	{
		snprintf(err, errlen, "%s: empty input (no header line)", path);
		goto done;
	}
	if (n == 0)
	{
		snprintf(err, errlen, "%s: no interactions after the header", path);
		goto done;
	}
	ok = true;
done:
	free(line);
	if (piped)
	{
		int			st = pclose(f);

		if (ok && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
		{
			snprintf(err, errlen, "%s: xz -dc failed (corrupt or not an xz file?)", path);
			ok = false;
		}
	}
	else
		fclose(f);
	if (ok)
		ok = build_from_triples(t, n, out, err, errlen);
	free(t);
	return ok;
}

/* Zeroed after, so that a second free (an error path, then cleanup) is harmless. */
void
glintru_interactions_free(GlintruInteractions *x)
{
	free(x->user_ids);
	free(x->off);
	free(x->items);
	memset(x, 0, sizeof(*x));
}

/* Without subtraction, which overflows for ids far apart. */
static int
cmp_i64(const void *a, const void *b)
{
	int64_t		x = *(const int64_t *) a,
				y = *(const int64_t *) b;

	return (x > y) - (x < y);
}

/* Sorted distinct values of v[0..n) into *out; returns count or -1. */
static int64_t
distinct_sorted(const int64_t *v, int64_t n, int64_t **out)
{
	int64_t    *s = malloc(sizeof(int64_t) * (size_t) (n > 0 ? n : 1));
	int64_t		m = 0;

	if (!s)
		return -1;
	memcpy(s, v, sizeof(int64_t) * (size_t) n);
	qsort(s, (size_t) n, sizeof(int64_t), cmp_i64);
	for (int64_t i = 0; i < n; i++)
		if (m == 0 || s[i] != s[m - 1])
			s[m++] = s[i];
	*out = s;
	return m;
}

/* Binary search: ids are arbitrary int64, too sparse for a direct table. */
static int64_t
find_sorted(const int64_t *s, int64_t n, int64_t key)
{
	int64_t		lo = 0,
				hi = n - 1;

	while (lo <= hi)
	{
		int64_t		mid = lo + (hi - lo) / 2;

		if (s[mid] == key)
			return mid;
		if (s[mid] < key)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

/* Items only, in one pass: SPEC §4's 5-core drops rare items, never users. */
int64_t
glintru_filter_items(GlintruInteractions *x, int64_t min_count)
{
	return glintru_filter_new_items(x, min_count, NULL);
}

/* The filter, sparing the items of known (a warm start's model keeps their rows). */
int64_t
glintru_filter_new_items(GlintruInteractions *x, int64_t min_count, const GlintruModel *known)
{
	int64_t		n = x->off[x->n_users];
	int64_t    *ids;
	int64_t		m;
	int64_t    *cnt;
	int64_t		w = 0,
				dropped;

	if (min_count <= 1)
		return 0;
	m = distinct_sorted(x->items, n, &ids);
	if (m < 0)
		return -1;
	cnt = calloc((size_t) m, sizeof(int64_t));
	if (!cnt)
	{
		free(ids);
		return -1;
	}
	for (int64_t i = 0; i < n; i++)
		cnt[find_sorted(ids, m, x->items[i])]++;
	for (int64_t u = 0; u < x->n_users; u++)
	{
		int64_t		start = x->off[u];

		x->off[u] = w;
		/* off[u + 1] is still the original end: it is rewritten on the next turn */
		for (int64_t i = start; i < x->off[u + 1]; i++)
			if (cnt[find_sorted(ids, m, x->items[i])] >= min_count ||
				(known && glintru_item_row(known, x->items[i]) > 0))
				x->items[w++] = x->items[i];
	}
	x->off[x->n_users] = w;
	dropped = n - w;
	free(ids);
	free(cnt);
	return dropped;
}

/* Shared part of the two split builders: rows[] per interaction, -1 = drop. */
static bool
split_from_rows(const GlintruInteractions *x, const int32_t *row_of, int64_t n_rows,
				const int64_t *item_ids, GlintruSplit *out, char *err, size_t errlen)
{
	int64_t		n = x->off[x->n_users];

	memset(out, 0, sizeof(*out));
	out->n_rows = n_rows;
	out->item_ids = malloc(sizeof(int64_t) * (size_t) n_rows);
	out->popularity = calloc((size_t) n_rows, sizeof(float));
	out->user_ids = malloc(sizeof(int64_t) * (size_t) (x->n_users + 1));
	out->off = malloc(sizeof(int64_t) * (size_t) (x->n_users + 1));
	out->rows = malloc(sizeof(int32_t) * (size_t) (n > 0 ? n : 1));
	if (!out->item_ids || !out->popularity || !out->user_ids || !out->off || !out->rows)
	{
		glintru_split_free(out);
		snprintf(err, errlen, "out of memory");
		return false;
	}
	memcpy(out->item_ids, item_ids, sizeof(int64_t) * (size_t) n_rows);
	int64_t		w = 0,
				nu = 0;

	for (int64_t u = 0; u < x->n_users; u++)
	{
		int64_t		start = w;

		for (int64_t i = x->off[u]; i < x->off[u + 1]; i++)
			if (row_of[i] > 0)
				out->rows[w++] = row_of[i];
		if (w - start < 3)
		{
			w = start;
			out->n_dropped_users++;
			continue;
		}
		out->user_ids[nu] = x->user_ids[u];
		out->off[nu] = start;
		nu++;
		/* popularity: training part only (SPEC §2: training-set counts) */
		for (int64_t i = start; i < w - 2; i++)
			out->popularity[out->rows[i]] += 1;
	}
	out->off[nu] = w;
	out->n_users = nu;
	if (nu == 0)
	{
		glintru_split_free(out);
		snprintf(err, errlen, "no user has the 3 interactions a leave-one-out split needs");
		return false;
	}
	return true;
}

/* Rows numbered by ascending external id, so that a vocabulary does not depend on file order. */
bool
glintru_split_build(const GlintruInteractions *x, GlintruSplit *out, char *err, size_t errlen)
{
	int64_t		n = x->off[x->n_users];
	int64_t    *ids;
	int64_t		m = distinct_sorted(x->items, n, &ids);
	int32_t    *row_of;
	int64_t    *item_ids;
	bool		ok;

	if (m < 0)
	{
		snprintf(err, errlen, "out of memory");
		return false;
	}
	if (m + 1 > INT32_MAX)
	{
		free(ids);
		snprintf(err, errlen, "too many distinct items (%lld)", (long long) m);
		return false;
	}
	row_of = malloc(sizeof(int32_t) * (size_t) (n > 0 ? n : 1));
	item_ids = malloc(sizeof(int64_t) * (size_t) (m + 1));
	if (!row_of || !item_ids)
	{
		free(ids);
		free(row_of);
		free(item_ids);
		snprintf(err, errlen, "out of memory");
		return false;
	}
	item_ids[0] = 0;
	memcpy(item_ids + 1, ids, sizeof(int64_t) * (size_t) m);
	for (int64_t i = 0; i < n; i++)
		row_of[i] = (int32_t) (find_sorted(ids, m, x->items[i]) + 1);
	ok = split_from_rows(x, row_of, m + 1, item_ids, out, err, errlen);
	free(ids);
	free(row_of);
	free(item_ids);
	return ok;
}

/*
 * A split on model m's vocabulary, with n_new more rows for the sorted ids
 * fresh[] (items m does not know); the interactions of any other unknown
 * item are dropped.
 */
static bool
split_on_model(const GlintruInteractions *x, const GlintruModel *m, const int64_t *fresh,
			   int64_t n_new, GlintruSplit *out, char *err, size_t errlen)
{
	int64_t		n = x->off[x->n_users];
	int64_t		n_old = m->config.n_rows;
	int32_t    *row_of = malloc(sizeof(int32_t) * (size_t) (n > 0 ? n : 1));
	int64_t    *item_ids = malloc(sizeof(int64_t) * (size_t) (n_old + n_new));
	bool		ok;

	if (!row_of || !item_ids)
	{
		free(row_of);
		free(item_ids);
		snprintf(err, errlen, "out of memory");
		return false;
	}
	for (int64_t i = 0; i < n; i++)
	{
		int64_t		r = glintru_item_row(m, x->items[i]);

		if (r <= 0 && n_new > 0 && (r = find_sorted(fresh, n_new, x->items[i])) >= 0)
			r += n_old;
		row_of[i] = r > 0 ? (int32_t) r : -1;
	}
	for (int64_t j = 0; j < n_old; j++)
		item_ids[j] = m->has_item_ids ? glintru_item_ids(m)[j] : j;
	if (n_new > 0)
		memcpy(item_ids + n_old, fresh, sizeof(int64_t) * (size_t) n_new);
	ok = split_from_rows(x, row_of, n_old + n_new, item_ids, out, err, errlen);
	free(row_of);
	free(item_ids);
	return ok;
}

/* Items the model does not know are dropped, as serving would ignore them. */
bool
glintru_split_for_model(const GlintruInteractions *x, const GlintruModel *m, GlintruSplit *out,
						char *err, size_t errlen)
{
	return split_on_model(x, m, NULL, 0, out, err, errlen);
}

/* The model's rows as they are, the data's new items appended (see data.h). */
bool
glintru_split_extend(const GlintruInteractions *x, const GlintruModel *m, GlintruSplit *out,
					 char *err, size_t errlen)
{
	int64_t		n = x->off[x->n_users];
	int64_t    *unknown = malloc(sizeof(int64_t) * (size_t) (n > 0 ? n : 1));
	int64_t    *fresh = NULL;
	int64_t		nu = 0,
				n_new;
	bool		ok;

	if (!unknown)
	{
		snprintf(err, errlen, "out of memory");
		return false;
	}
	for (int64_t i = 0; i < n; i++)
		if (glintru_item_row(m, x->items[i]) <= 0)
			unknown[nu++] = x->items[i];
	n_new = distinct_sorted(unknown, nu, &fresh);
	free(unknown);
	if (n_new < 0)
	{
		snprintf(err, errlen, "out of memory");
		return false;
	}
	if (m->config.n_rows + n_new > INT32_MAX)
	{
		free(fresh);
		snprintf(err, errlen, "too many distinct items (%lld)", (long long) (m->config.n_rows - 1 + n_new));
		return false;
	}
	ok = split_on_model(x, m, fresh, n_new, out, err, errlen);
	free(fresh);
	return ok;
}

/* Zeroes the struct, so that freeing twice is harmless. */
void
glintru_split_free(GlintruSplit *s)
{
	free(s->item_ids);
	free(s->popularity);
	free(s->user_ids);
	free(s->off);
	free(s->rows);
	memset(s, 0, sizeof(*s));
}
