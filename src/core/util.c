/*
 * util.c — reading a whole file for the command-line tools and tests (the
 * server reads files through PostgreSQL's own functions instead).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "util.h"

/* stdio, not PostgreSQL's file API: only the tools and tests read files this way. */
uint8_t *
glintru_read_file(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	uint8_t    *buf;
	long		n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
	{
		fclose(f);
		return NULL;
	}
	buf = malloc((size_t) n + 1);
	if (!buf || fread(buf, 1, (size_t) n, f) != (size_t) n)
	{
		int			saved = ferror(f) ? errno : EIO;

		free(buf);
		fclose(f);
		errno = saved;
		return NULL;
	}
	fclose(f);
	*len = (size_t) n;
	return buf;
}
