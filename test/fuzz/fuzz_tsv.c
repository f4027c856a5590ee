/*
 * fuzz_tsv.c — libFuzzer target for the interactions TSV reader (src/data.c,
 * glintru_read_interactions), built outside the server with ASan + UBSan
 * (test/fuzz/run.sh).
 *
 * The reader takes a path, so each input is written to an in-memory file
 * (memfd) and read back through /proc/self/fd/N (a path that does not end in
 * .xz, so no xz process is started).  An accepted input must give consistent
 * histories (users ascending, offsets monotone and covering every item), and
 * is then pushed through what the training tools do with it: the split on
 * its own vocabulary, the split for the bundled model (GLINTRU_FUZZ_MODEL,
 * when set), and the item-count filter followed by a split.  A rejected
 * input must come with a message.
 *
 * Metamorphic check (the reader finds its columns by name and ignores the
 * others, so an unnamed column in front must not matter — pandas writes one
 * for its index): the same input with one more column in front — an empty
 * name in the header, "0" on every non-empty row — must be accepted or
 * rejected alike and, when accepted, give the same histories.  Any violation
 * aborts.  GLINTRU_FUZZ_TSV_NO_SHIFT=1 turns this check off (to fuzz for
 * other defects while a known violation is unfixed).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "data.h"
#include "model.h"
#include "safetensors.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int			LLVMFuzzerInitialize(int *argc, char ***argv);

static int	mfd = -1,
			mfd2 = -1;
static char mpath[64],
			mpath2[64];
static GlintruModel *model = NULL;
static bool shift_check = true;

static void
die(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_tsv: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	abort();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *mp = getenv("GLINTRU_FUZZ_MODEL");

	(void) argc;
	(void) argv;
	shift_check = !(getenv("GLINTRU_FUZZ_TSV_NO_SHIFT") && *getenv("GLINTRU_FUZZ_TSV_NO_SHIFT") == '1');
	mfd = memfd_create("glintru-fuzz-tsv", 0);
	if (mfd < 0)
		die("memfd_create failed", NULL);
	snprintf(mpath, sizeof(mpath), "/proc/self/fd/%d", mfd);
	mfd2 = memfd_create("glintru-fuzz-tsv-shifted", 0);
	if (mfd2 < 0)
		die("memfd_create failed", NULL);
	snprintf(mpath2, sizeof(mpath2), "/proc/self/fd/%d", mfd2);
	if (mp && *mp)
	{
		FILE	   *f = fopen(mp, "rb");
		uint8_t    *buf;
		long		n;
		char		err[512];

		if (!f || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) <= 0 || fseek(f, 0, SEEK_SET) != 0)
			die("cannot read GLINTRU_FUZZ_MODEL", mp);
		buf = malloc((size_t) n);
		if (!buf || fread(buf, 1, (size_t) n, f) != (size_t) n)
			die("cannot read GLINTRU_FUZZ_MODEL", mp);
		fclose(f);
		model = glintru_safetensors_load(buf, (size_t) n, err, sizeof(err));
		if (!model)
			die("GLINTRU_FUZZ_MODEL does not load", err);
		free(buf);
	}
	return 0;
}

static void
check_interactions(const GlintruInteractions *x)
{
	if (x->n_users < 1 || x->off[0] != 0)
		die("accepted input gives no users or a bad first offset", NULL);
	for (int64_t u = 0; u < x->n_users; u++)
	{
		if (x->off[u + 1] <= x->off[u])
			die("a user has an empty or negative history", NULL);
		if (u > 0 && x->user_ids[u] <= x->user_ids[u - 1])
			die("user ids are not strictly ascending", NULL);
	}
}

static void
check_split(const GlintruSplit *s)
{
	for (int64_t u = 0; u < s->n_users; u++)
	{
		if (glintru_split_len(s, u) < 3)
			die("a split user has fewer than 3 interactions", NULL);
		for (int64_t i = s->off[u]; i < s->off[u + 1]; i++)
			if (s->rows[i] < 1 || s->rows[i] >= s->n_rows)
				die("a split row is out of range", NULL);
	}
}

static void
write_memfd(int fd, const void *data, size_t size)
{
	if (ftruncate(fd, 0) != 0 || (size > 0 && pwrite(fd, data, size, 0) != (ssize_t) size))
		die("cannot write the memfd", NULL);
}

/*
 * The input with a leading unnamed column: "\t" before the header line, "0\t"
 * before every data line that is not empty once its trailing \r are removed
 * (the reader skips empty lines).  Returns NULL when the property does not
 * apply: more than 62 tabs on a line (the reader keeps 64 fields).
 */
static uint8_t *
shift_columns(const uint8_t *data, size_t size, size_t *out_size)
{
	uint8_t    *out = malloc(size * 3 + 8);
	size_t		o = 0,
				i = 0;
	int			line = 0;

	if (!out)
		die("out of memory in the harness", NULL);
	while (i < size)
	{
		size_t		end = i,
					content;
		int			tabs = 0;

		while (end < size && data[end] != '\n')
			tabs += data[end++] == '\t';
		content = end;
		while (content > i && data[content - 1] == '\r')
			content--;
		if (tabs > 62)
		{
			free(out);
			return NULL;
		}
		if (line == 0)
		{
			out[o++] = '\t';
		}
		else if (content > i)
		{
			memcpy(out + o, "0\t", 2);
			o += 2;
		}
		memcpy(out + o, data + i, end - i);
		o += end - i;
		if (end < size)
			out[o++] = '\n';
		i = end + 1;
		line++;
	}
	*out_size = o;
	return out;
}

static bool
same_interactions(const GlintruInteractions *a, const GlintruInteractions *b)
{
	if (a->n_users != b->n_users)
		return false;
	for (int64_t u = 0; u < a->n_users; u++)
		if (a->user_ids[u] != b->user_ids[u] || a->off[u + 1] != b->off[u + 1])
			return false;
	for (int64_t i = 0; i < a->off[a->n_users]; i++)
		if (a->items[i] != b->items[i])
			return false;
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	GlintruInteractions x,
				y;
	GlintruSplit s;
	char		err[512],
				err2[512];
	bool		accepted,
				accepted2;
	uint8_t    *shifted;
	size_t		shifted_size = 0;

	write_memfd(mfd, data, size);
	err[0] = '\0';
	accepted = glintru_read_interactions(mpath, &x, err, sizeof(err));
	if (!accepted && (err[0] == '\0' || memchr(err, '\0', sizeof(err)) == NULL))
		die("rejected without a message", NULL);

	shifted = shift_check ? shift_columns(data, size, &shifted_size) : NULL;
	if (shifted)
	{
		write_memfd(mfd2, shifted, shifted_size);
		free(shifted);
		err2[0] = '\0';
		accepted2 = glintru_read_interactions(mpath2, &y, err2, sizeof(err2));
		if (accepted != accepted2)
		{
			fprintf(stderr, "original: %s\nwith a leading unnamed column: %s\n",
					accepted ? "accepted" : err, accepted2 ? "accepted" : err2);
			die("a leading unnamed column changes whether the input is accepted", NULL);
		}
		if (accepted)
		{
			if (!same_interactions(&x, &y))
				die("a leading unnamed column changes the histories read (header and rows split differently)", NULL);
			glintru_interactions_free(&y);
		}
	}
	if (!accepted)
		return 0;
	check_interactions(&x);

	if (glintru_split_build(&x, &s, err, sizeof(err)))
	{
		check_split(&s);
		glintru_split_free(&s);
	}
	if (model && glintru_split_for_model(&x, model, &s, err, sizeof(err)))
	{
		check_split(&s);
		glintru_split_free(&s);
	}
	if (glintru_filter_items(&x, 2) < 0)
		die("glintru_filter_items failed", NULL);
	if (glintru_split_build(&x, &s, err, sizeof(err)))
	{
		check_split(&s);
		glintru_split_free(&s);
	}
	glintru_interactions_free(&x);
	return 0;
}
