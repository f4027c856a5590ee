/*
 * safetensors.c — strict reader and writer of GLINT-RU safetensors files
 * (SPEC §2).  The reader trusts nothing: the header length, the JSON, every
 * shape, dtype and offset are checked before a byte of data is used, and the
 * data section must be covered exactly, without holes or overlaps (as the
 * safetensors reference implementation requires).
 *
 * Numeric core: no PostgreSQL headers here.
 */
#include "safetensors.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader assumes a little-endian host"
#endif

#define MAX_TENSORS 256
#define MAX_STRING 1024
#define MAX_JSON_DEPTH 16

typedef enum
{
	DT_F32,
	DT_I64,
	DT_OTHER
} DType;

typedef struct TensorInfo
{
	char		name[MAX_STRING];
	char		dtype[16];
	DType		dt;
	int			ndim;
	int64_t		shape[8];
	uint64_t	begin,
				end;
} TensorInfo;

typedef struct Header
{
	TensorInfo *t;				/* MAX_TENSORS entries */
	int			n;
	bool		has_max_seq_len,
				has_heads,
				has_eps;
	long long	max_seq_len,
				n_heads;
	double		eps;
} Header;

typedef struct Parser
{
	const char *p,
			   *start,
			   *end;
	char	   *err;
	size_t		errlen;
	bool		failed;
} Parser;

static bool fail(Parser *ps, const char *fmt,...) __attribute__((format(printf, 2, 3)));

/* Keeps the first error only: it names the real cause, later ones are consequences. */
static bool
fail(Parser *ps, const char *fmt,...)
{
	va_list		ap;

	if (!ps->failed)
	{
		va_start(ap, fmt);
		vsnprintf(ps->err, ps->errlen, fmt, ap);
		va_end(ap);
		ps->failed = true;
	}
	return false;
}

/* JSON whitespace only (not isspace): the safetensors header is strict JSON. */
static void
skip_ws(Parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

/* Reports the byte offset, so that a hand-edited header can be fixed. */
static bool
expect(Parser *ps, char c)
{
	skip_ws(ps);
	if (ps->p >= ps->end || *ps->p != c)
		return fail(ps, "invalid safetensors header: expected '%c' at byte %ld of the JSON header",
					c, (long) (ps->p - ps->start));
	ps->p++;
	return true;
}

/* After a member of an object or array: a ',' means *more, else the closing c must follow. */
static bool
list_next(Parser *ps, char close, bool *more)
{
	skip_ws(ps);
	*more = ps->p < ps->end && *ps->p == ',';
	if (*more)
	{
		ps->p++;
		return true;
	}
	return expect(ps, close);
}

/* -1 for a non-hex byte, so that the \u escape loop reports the error with its context. */
static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A JSON string into out (UTF-8, NUL-terminated, at most MAX_STRING-1 bytes). */
static bool
parse_string(Parser *ps, char *out)
{
	size_t		n = 0;

	skip_ws(ps);
	if (ps->p >= ps->end || *ps->p != '"')
		return fail(ps, "invalid safetensors header: expected a JSON string");
	ps->p++;
	while (ps->p < ps->end && *ps->p != '"')
	{
		unsigned char c = (unsigned char) *ps->p++;
		unsigned int cp;

		if (c < 0x20)
			return fail(ps, "invalid safetensors header: control character in a JSON string");
		/* like \u escapes below: non-ASCII bytes become '?', so messages stay valid text */
		if (c >= 0x80)
			c = '?';
		if (c == '\\')
		{
			if (ps->p >= ps->end)
				break;
			c = (unsigned char) *ps->p++;
			switch (c)
			{
				case '"':
				case '\\':
				case '/':
					break;
				case 'b':
					c = '\b';
					break;
				case 'f':
					c = '\f';
					break;
				case 'n':
					c = '\n';
					break;
				case 'r':
					c = '\r';
					break;
				case 't':
					c = '\t';
					break;
				case 'u':
					if (ps->end - ps->p < 4)
						return fail(ps, "invalid safetensors header: truncated \\u escape");
					cp = 0;
					for (int i = 0; i < 4; i++)
					{
						int			h = hexval(ps->p[i]);

						if (h < 0)
							return fail(ps, "invalid safetensors header: bad \\u escape");
						cp = cp * 16 + (unsigned) h;
					}
					ps->p += 4;
					/* names we accept are ASCII; anything else is kept as '?' */
					c = cp < 0x80 && cp > 0 ? (unsigned char) cp : '?';
					break;
				default:
					return fail(ps, "invalid safetensors header: bad escape in a JSON string");
			}
		}
		if (n + 1 >= MAX_STRING)
			return fail(ps, "invalid safetensors header: a string is longer than %d bytes", MAX_STRING - 1);
		out[n++] = (char) c;
	}
	if (ps->p >= ps->end)
		return fail(ps, "invalid safetensors header: unterminated JSON string");
	ps->p++;
	out[n] = '\0';
	return true;
}

/* A non-negative JSON integer below 2^53. */
static bool
parse_uint(Parser *ps, uint64_t *out)
{
	uint64_t	v = 0;
	const char *start;

	skip_ws(ps);
	start = ps->p;
	while (ps->p < ps->end && isdigit((unsigned char) *ps->p))
	{
		v = v * 10 + (uint64_t) (*ps->p - '0');
		if (v > ((uint64_t) 1 << 53))
			return fail(ps, "invalid safetensors header: a shape or offset is absurdly large");
		ps->p++;
	}
	if (ps->p == start)
		return fail(ps, "invalid safetensors header: expected a non-negative integer");
	if (ps->p < ps->end && (*ps->p == '.' || *ps->p == 'e' || *ps->p == 'E'))
		return fail(ps, "invalid safetensors header: expected an integer, found a fraction");
	*out = v;
	return true;
}

/* Skip any JSON value (unknown fields). */
static bool
skip_value(Parser *ps, int depth)
{
	bool		more;

	char		buf[MAX_STRING];

	if (depth > MAX_JSON_DEPTH)
		return fail(ps, "invalid safetensors header: JSON nested too deeply");
	skip_ws(ps);
	if (ps->p >= ps->end)
		return fail(ps, "invalid safetensors header: truncated JSON");
	switch (*ps->p)
	{
		case '"':
			return parse_string(ps, buf);
		case '{':
		case '[':
			{
				char		close = *ps->p == '{' ? '}' : ']';
				bool		obj = close == '}';

				ps->p++;
				skip_ws(ps);
				if (ps->p < ps->end && *ps->p == close)
				{
					ps->p++;
					return true;
				}
				for (;;)
				{
					if (obj && !(parse_string(ps, buf) && expect(ps, ':')))
						return false;
					if (!skip_value(ps, depth + 1))
						return false;
					if (!list_next(ps, close, &more))
						return false;
					if (!more)
						return true;
				}
			}
		default:
			{
				/* number, true, false, null */
				const char *start = ps->p;

				while (ps->p < ps->end && (isalnum((unsigned char) *ps->p) || *ps->p == '-' ||
										   *ps->p == '+' || *ps->p == '.'))
					ps->p++;
				if (ps->p == start)
					return fail(ps, "invalid safetensors header: unexpected character in JSON");
				return true;
			}
	}
}

/* Only the keys we know are interpreted; other tools' metadata is allowed and ignored. */
static bool
parse_metadata(Parser *ps, Header *h)
{
	bool		more;

	char		key[MAX_STRING],
				val[MAX_STRING];

	if (!expect(ps, '{'))
		return false;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == '}')
	{
		ps->p++;
		return true;
	}
	for (;;)
	{
		char	   *endp;

		if (!parse_string(ps, key) || !expect(ps, ':') || !parse_string(ps, val))
			return fail(ps, "invalid safetensors header: __metadata__ must map strings to strings");
		if (strcmp(key, "format") == 0)
		{
			/* files written by other tools say "pt"; anything that names itself otherwise is refused */
			if (strcmp(val, "glintru") != 0 && strcmp(val, "pt") != 0)
				return fail(ps, "metadata format is \"%s\", expected \"glintru\"", val);
		}
		else if (strcmp(key, "max_seq_len") == 0 || strcmp(key, "n_heads") == 0)
		{
			long long	v;

			errno = 0;
			v = strtoll(val, &endp, 10);
			if (errno || endp == val || *endp != '\0')
				return fail(ps, "metadata %s is \"%s\", not an integer", key, val);
			if (key[0] == 'm')
			{
				h->max_seq_len = v;
				h->has_max_seq_len = true;
			}
			else
			{
				h->n_heads = v;
				h->has_heads = true;
			}
		}
		else if (strcmp(key, "layer_norm_eps") == 0)
		{
			errno = 0;
			h->eps = strtod(val, &endp);
			if (errno || endp == val || *endp != '\0')
				return fail(ps, "metadata layer_norm_eps is \"%s\", not a number", val);
			h->has_eps = true;
		}
		if (!list_next(ps, '}', &more))
			return false;
		if (!more)
			return true;
	}
}

/* Unknown fields are skipped, so files from newer writers still load. */
static bool
parse_tensor(Parser *ps, TensorInfo *t)
{
	bool		more;

	char		key[MAX_STRING];
	bool		has_dtype = false,
				has_shape = false,
				has_offsets = false;

	if (!expect(ps, '{'))
		return false;
	for (;;)
	{
		if (!parse_string(ps, key) || !expect(ps, ':'))
			return false;
		if (strcmp(key, "dtype") == 0)
		{
			char		dt[MAX_STRING];

			if (!parse_string(ps, dt))
				return false;
			memcpy(t->dtype, dt, sizeof(t->dtype) - 1);
			t->dtype[sizeof(t->dtype) - 1] = '\0';
			t->dt = strcmp(dt, "F32") == 0 ? DT_F32 : strcmp(dt, "I64") == 0 ? DT_I64 : DT_OTHER;
			has_dtype = true;
		}
		else if (strcmp(key, "shape") == 0)
		{
			t->ndim = 0;
			if (!expect(ps, '['))
				return false;
			skip_ws(ps);
			if (ps->p < ps->end && *ps->p == ']')
				ps->p++;
			else
				for (;;)
				{
					uint64_t	v;

					if (t->ndim >= 8)
						return fail(ps, "tensor \"%s\" has more than 8 dimensions", t->name);
					if (!parse_uint(ps, &v))
						return false;
					t->shape[t->ndim++] = (int64_t) v;
					if (!list_next(ps, ']', &more))
						return false;
					if (!more)
						break;
				}
			has_shape = true;
		}
		else if (strcmp(key, "data_offsets") == 0)
		{
			if (!expect(ps, '[') || !parse_uint(ps, &t->begin) || !expect(ps, ',') ||
				!parse_uint(ps, &t->end) || !expect(ps, ']'))
				return fail(ps, "tensor \"%s\": data_offsets must be [begin, end]", t->name);
			has_offsets = true;
		}
		else if (!skip_value(ps, 1))
			return false;
		if (!list_next(ps, '}', &more))
			return false;
		if (!more)
			break;
	}
	if (!has_dtype || !has_shape || !has_offsets)
		return fail(ps, "tensor \"%s\" lacks %s", t->name,
					!has_dtype ? "a dtype" : !has_shape ? "a shape" : "data_offsets");
	return true;
}

/* Duplicate names are refused here: the later one would otherwise silently win. */
static bool
parse_header(Parser *ps, Header *h)
{
	bool		more;

	char		key[MAX_STRING];

	if (!expect(ps, '{'))
		return false;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == '}')
		ps->p++;
	else
		for (;;)
		{
			if (!parse_string(ps, key) || !expect(ps, ':'))
				return false;
			if (strcmp(key, "__metadata__") == 0)
			{
				if (!parse_metadata(ps, h))
					return false;
			}
			else
			{
				TensorInfo *t;

				if (h->n >= MAX_TENSORS)
					return fail(ps, "the file holds more than %d tensors", MAX_TENSORS);
				for (int i = 0; i < h->n; i++)
					if (strcmp(h->t[i].name, key) == 0)
						return fail(ps, "tensor \"%s\" appears twice in the header", key);
				t = &h->t[h->n++];
				memset(t, 0, sizeof(*t));
				memcpy(t->name, key, sizeof(t->name));
				if (!parse_tensor(ps, t))
					return false;
			}
			if (!list_next(ps, '}', &more))
				return false;
			if (!more)
				break;
		}
	skip_ws(ps);
	if (ps->p != ps->end)
		return fail(ps, "invalid safetensors header: trailing bytes after the JSON object");
	return true;
}

/* Orders tensors by data offset, so that overlaps and holes are adjacent pairs. */
static int
cmp_begin(const void *a, const void *b)
{
	const TensorInfo *x = *(TensorInfo *const *) a,
			   *y = *(TensorInfo *const *) b;

	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	return x->end < y->end ? -1 : (x->end > y->end);
}

/* A linear scan: at most MAX_TENSORS entries, looked up a few dozen times per load. */
static const TensorInfo *
find_tensor(const Header *h, const char *name)
{
	for (int i = 0; i < h->n; i++)
		if (strcmp(h->t[i].name, name) == 0)
			return &h->t[i];
	return NULL;
}

/* Bounded by len, so that an 8-dimensional shape cannot overrun an error message. */
static void
shape_str(const int64_t *shape, int ndim, char *out, size_t len)
{
	size_t		n = 0;

	n += (size_t) snprintf(out + n, len - n, "[");
	for (int i = 0; i < ndim && n < len; i++)
		n += (size_t) snprintf(out + n, len - n, i ? ", %lld" : "%lld", (long long) shape[i]);
	if (n < len)
		snprintf(out + n, len - n, "]");
}

/* Shapes match byte sizes and the tensors tile the data section: no byte is read unchecked. */
static bool
check_data_section(Parser *ps, Header *h, uint64_t data_len)
{
	TensorInfo *sorted[MAX_TENSORS];
	char		s1[128];
	uint64_t	at = 0;

	/* every tensor: known dtype, shape ↔ byte size, inside the data section */
	for (int i = 0; i < h->n; i++)
	{
		TensorInfo *t = &h->t[i];
		uint64_t	numel = 1;

		if (t->dt == DT_OTHER)
			return fail(ps, "tensor \"%s\" has dtype %s, expected %s", t->name, t->dtype,
						strcmp(t->name, "item_popularity") == 0 ? "F32 or I64" :
						strcmp(t->name, "item_ids") == 0 ? "I64" : "F32");
		for (int k = 0; k < t->ndim; k++)
			if (__builtin_mul_overflow(numel, (uint64_t) t->shape[k], &numel) || numel > ((uint64_t) 1 << 40))
				return fail(ps, "tensor \"%s\" has an absurd shape", t->name);
		if (t->begin > t->end || t->end > data_len)
			return fail(ps, "tensor \"%s\" has data_offsets [%llu, %llu] outside the %llu data bytes (file truncated?)",
						t->name, (unsigned long long) t->begin, (unsigned long long) t->end,
						(unsigned long long) data_len);
		if (t->end - t->begin != numel * (t->dt == DT_F32 ? 4 : 8))
			return fail(ps, "tensor \"%s\" of shape %s and dtype %s needs %llu bytes, data_offsets give %llu",
						t->name, (shape_str(t->shape, t->ndim, s1, sizeof(s1)), s1), t->dtype,
						(unsigned long long) (numel * (t->dt == DT_F32 ? 4 : 8)),
						(unsigned long long) (t->end - t->begin));
		sorted[i] = t;
	}
	/* the data section is covered exactly: no overlap, no hole, nothing after */
	qsort(sorted, (size_t) h->n, sizeof(sorted[0]), cmp_begin);
	for (int i = 0; i < h->n; i++)
	{
		if (sorted[i]->begin < at)
			return fail(ps, "tensors \"%s\" and \"%s\" overlap", sorted[i - 1]->name, sorted[i]->name);
		if (sorted[i]->begin > at)
			return fail(ps, "data bytes %llu to %llu belong to no tensor",
						(unsigned long long) at, (unsigned long long) sorted[i]->begin);
		at = sorted[i]->end;
	}
	if (at != data_len)
		return fail(ps, "file has %llu bytes after the last tensor", (unsigned long long) (data_len - at));
	return true;
}

/* The dimensions (item table, metadata) are range-checked before any shape derives from them. */
static bool
check_config(Parser *ps, const Header *h, GlintruConfig *cfg)
{
	const TensorInfo *emb = find_tensor(h, glintru_tensor_names[GT_ITEM_EMBEDDING]);

	if (emb == NULL)
		return fail(ps, "missing tensor \"%s\"", glintru_tensor_names[GT_ITEM_EMBEDDING]);
	if (emb->ndim != 2)
		return fail(ps, "tensor \"%s\" must have 2 dimensions", emb->name);
	if (emb->shape[0] < 2 || emb->shape[0] > GLINTRU_MAX_ROWS)
		return fail(ps, "item table has %lld row%s; a model needs at least one item besides padding row 0 and at most %lld rows",
					(long long) emb->shape[0], emb->shape[0] == 1 ? "" : "s", (long long) GLINTRU_MAX_ROWS);
	if (emb->shape[1] < 2 || emb->shape[1] > GLINTRU_MAX_D)
		return fail(ps, "hidden size d = %lld is out of range (2 to %d)", (long long) emb->shape[1], GLINTRU_MAX_D);
	if (!h->has_max_seq_len)
		return fail(ps, "metadata lacks max_seq_len");
	if (!h->has_heads)
		return fail(ps, "metadata lacks n_heads");
	if (h->max_seq_len < 1 || h->max_seq_len > GLINTRU_MAX_SEQ_LEN)
		return fail(ps, "max_seq_len %lld is out of range (1 to %d)", h->max_seq_len, GLINTRU_MAX_SEQ_LEN);
	if (h->n_heads < 1 || h->n_heads > emb->shape[1])
		return fail(ps, "n_heads %lld is out of range (1 to the hidden size %lld)", h->n_heads, (long long) emb->shape[1]);
	if (emb->shape[1] % h->n_heads != 0)
		return fail(ps, "hidden size %lld is not divisible by n_heads %lld", (long long) emb->shape[1], h->n_heads);
	if (h->has_eps && !(h->eps > 0.0 && h->eps < 1.0))
		return fail(ps, "layer_norm_eps %g is out of range (0 to 1, exclusive)", h->eps);
	if (h->has_eps && (float) h->eps == 0.0f)
		return fail(ps, "layer_norm_eps %g is too small for float32", h->eps);

	cfg->n_rows = emb->shape[0];
	cfg->d = (int32_t) emb->shape[1];
	cfg->n_heads = (int32_t) h->n_heads;
	cfg->max_seq_len = (int32_t) h->max_seq_len;
	cfg->layer_norm_eps = h->has_eps ? (float) h->eps : 1e-12f;
	return true;
}

/* Published shapes and nothing unknown: a misnamed tensor must not be silently ignored. */
static bool
check_tensors(Parser *ps, const Header *h, const GlintruConfig *cfg, bool *has_pop)
{
	GlintruLayout layout;
	char		s1[128],
				s2[128];

	glintru_layout_init(&layout, cfg->n_rows, cfg->d);
	for (int k = 0; k < GT_COUNT; k++)
	{
		const TensorInfo *t = find_tensor(h, glintru_tensor_names[k]);
		const GlintruTensorSlot *s = &layout.slot[k];
		bool		same = t && t->ndim == s->ndim;

		if (t == NULL)
			return fail(ps, "missing tensor \"%s\"", glintru_tensor_names[k]);
		for (int i = 0; same && i < s->ndim; i++)
			same = t->shape[i] == s->shape[i];
		if (!same)
		{
			shape_str(t->shape, t->ndim, s1, sizeof(s1));
			shape_str(s->shape, s->ndim, s2, sizeof(s2));
			return fail(ps, "tensor \"%s\" has shape %s, expected %s for d = %d", t->name, s1, s2, cfg->d);
		}
		if (t->dt != DT_F32)
			return fail(ps, "tensor \"%s\" has dtype %s, expected F32", t->name, t->dtype);
	}
	*has_pop = false;
	for (int i = 0; i < h->n; i++)
	{
		const TensorInfo *t = &h->t[i];
		bool		known = false;

		for (int k = 0; k < GT_COUNT && !known; k++)
			known = strcmp(t->name, glintru_tensor_names[k]) == 0;
		if (known)
			continue;
		if (strcmp(t->name, "item_ids") == 0 || strcmp(t->name, "item_popularity") == 0)
		{
			if (t->ndim != 1 || t->shape[0] != cfg->n_rows)
				return fail(ps, "tensor \"%s\" must have shape [%lld], one entry per item row",
							t->name, (long long) cfg->n_rows);
			if (t->name[5] == 'i' && t->dt != DT_I64)
				return fail(ps, "tensor \"item_ids\" has dtype %s, expected I64", t->dtype);
			if (t->name[5] == 'p')
				*has_pop = true;
			continue;
		}
		return fail(ps, "unknown tensor \"%s\" (not a GLINT-RU parameter)", t->name);
	}
	return true;
}

/*
 * Everything that can be checked without reading tensor data.  On success
 * h holds the parsed header and *data points at the data section.
 */
static bool
check_file(const uint8_t *buf, size_t len, Header *h, GlintruConfig *cfg, bool *has_pop,
		   const uint8_t **data, char *err, size_t errlen)
{
	uint64_t	hlen = 0;
	Parser		ps = {0};

	ps.err = err;
	ps.errlen = errlen;
	if (len < 8)
		return fail(&ps, "file is %zu bytes, too short for a safetensors header", len);
	for (int i = 7; i >= 0; i--)
		hlen = (hlen << 8) | buf[i];
	if (hlen < 2 || hlen > GLINTRU_MAX_HEADER_BYTES)
		return fail(&ps, "safetensors header length %llu is out of range", (unsigned long long) hlen);
	if (hlen > len - 8)
		return fail(&ps, "file is truncated: the header needs %llu bytes, %zu remain",
					(unsigned long long) hlen, len - 8);
	ps.p = ps.start = (const char *) buf + 8;
	ps.end = ps.p + hlen;
	if (!parse_header(&ps, h))
		return false;
	*data = buf + 8 + hlen;
	if (!check_data_section(&ps, h, len - 8 - hlen) || !check_config(&ps, h, cfg) ||
		!check_tensors(&ps, h, cfg, has_pop))
		return false;
	{
		/* scratch space of the forward pass stays bounded */
		uint64_t	ld = (uint64_t) cfg->max_seq_len * (uint64_t) cfg->d;

		if (ld > ((uint64_t) 1 << 24))
			return fail(&ps, "max_seq_len × d = %llu is too large (limit 16777216)", (unsigned long long) ld);
	}
	return true;
}

/* On the heap: MAX_TENSORS entries of MAX_STRING names are too large for a backend's stack. */
static Header *
header_alloc(void)
{
	Header	   *h = calloc(1, sizeof(Header));

	if (h)
		h->t = calloc(MAX_TENSORS, sizeof(TensorInfo));
	if (h && !h->t)
	{
		free(h);
		h = NULL;
	}
	return h;
}

/* Accepts NULL, so that every exit path can free unconditionally. */
static void
header_free(Header *h)
{
	if (h)
		free(h->t);
	free(h);
}

/* Separate from the build, so that the caller can size (and allocate) the model first. */
bool
glintru_safetensors_check(const uint8_t *buf, size_t len, GlintruConfig *cfg, bool *has_popularity,
						  char *err, size_t errlen)
{
	Header	   *h = header_alloc();
	const uint8_t *data;
	bool		ok;

	if (h == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return false;
	}
	ok = check_file(buf, len, h, cfg, has_popularity, &data, err, errlen);
	header_free(h);
	return ok;
}

/* Non-finite values are refused here, where the data is copied anyway. */
GlintruModel *
glintru_safetensors_build(const uint8_t *buf, size_t len, void *dest, char *err, size_t errlen)
{
	Header	   *h = header_alloc();
	const uint8_t *data;
	GlintruConfig cfg;
	bool		has_pop;
	GlintruModel *m = NULL;

	if (h == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (!check_file(buf, len, h, &cfg, &has_pop, &data, err, errlen))
		goto done;
	m = glintru_model_init(dest, &cfg, has_pop);
	for (int k = 0; k < GT_COUNT; k++)
	{
		const TensorInfo *t = find_tensor(h, glintru_tensor_names[k]);
		float	   *p = glintru_param(m, k);

		memcpy(p, data + t->begin, t->end - t->begin);
		for (uint64_t i = 0; i < m->layout.slot[k].numel; i++)
			if (!isfinite(p[i]))
			{
				snprintf(err, errlen, "tensor \"%s\" holds a non-finite value (%s) at index %llu",
						 t->name, isnan(p[i]) ? "NaN" : "Inf", (unsigned long long) i);
				m = NULL;
				goto done;
			}
	}
	for (int i = 0; i < h->n; i++)
	{
		const TensorInfo *t = &h->t[i];

		if (strcmp(t->name, "item_ids") == 0)
		{
			memcpy((char *) m + m->item_ids_off, data + t->begin, t->end - t->begin);
			m->has_item_ids = 1;
		}
		else if (strcmp(t->name, "item_popularity") == 0)
		{
			float	   *pop = (float *) ((char *) m + m->popularity_off);

			for (int64_t j = 0; j < cfg.n_rows; j++)
			{
				if (t->dt == DT_F32)
					memcpy(&pop[j], data + t->begin + 4 * j, 4);
				else
				{
					int64_t		v;

					memcpy(&v, data + t->begin + 8 * j, 8);
					pop[j] = (float) v;
				}
				if (!isfinite(pop[j]) || pop[j] < 0)
				{
					snprintf(err, errlen, "item_popularity[%lld] is %g; counts must be finite and non-negative",
							 (long long) j, (double) pop[j]);
					m = NULL;
					goto done;
				}
			}
		}
	}
	if (!glintru_model_finish(m, err, errlen))
		m = NULL;
done:
	header_free(h);
	return m;
}

/* The tools' and tests' path; the server allocates through glintru_safetensors_build. */
GlintruModel *
glintru_safetensors_load(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	GlintruConfig cfg;
	bool		has_pop;
	void	   *mem;
	GlintruModel *m;

	if (!glintru_safetensors_check(buf, len, &cfg, &has_pop, err, errlen))
		return NULL;
	mem = malloc(glintru_model_bytes(&cfg, has_pop));
	if (mem == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	m = glintru_safetensors_build(buf, len, mem, err, errlen);
	if (m == NULL)
		free(mem);
	return m;
}

/* ---- writer ---- */

typedef struct OutTensor
{
	const char *name;
	const char *dtype;
	int			ndim;
	int64_t		shape[GLINTRU_MAX_DIMS];
	const void *data;
	uint64_t	bytes;
} OutTensor;

/* Tensors by name, so that the header reads like one the safetensors library writes. */
static int
cmp_out_name(const void *a, const void *b)
{
	return strcmp(((const OutTensor *) a)->name, ((const OutTensor *) b)->name);
}

/* The inverse of the reader, so that a model trained here loads anywhere safetensors does. */
uint8_t *
glintru_safetensors_write(const GlintruModel *m, size_t *len)
{
	OutTensor	t[GT_COUNT + 2];
	int			n = 0;
	uint64_t	off = 0,
				data_bytes = 0;
	char	   *json;
	size_t		cap = 65536,
				jl = 0;
	uint8_t    *out;
	uint64_t	hlen;

	for (int k = 0; k < GT_COUNT; k++)
	{
		const GlintruTensorSlot *s = &m->layout.slot[k];

		t[n].name = glintru_tensor_names[k];
		t[n].dtype = "F32";
		t[n].ndim = s->ndim;
		memcpy(t[n].shape, s->shape, sizeof(s->shape));
		t[n].data = glintru_param(m, k);
		t[n].bytes = s->numel * 4;
		n++;
	}
	t[n] = (OutTensor) {"item_ids", "I64", 1, {m->config.n_rows}, glintru_item_ids(m),
	(uint64_t) m->config.n_rows * 8};
	n++;
	if (m->popularity_off)
	{
		t[n] = (OutTensor) {"item_popularity", "F32", 1, {m->config.n_rows}, glintru_popularity(m),
		(uint64_t) m->config.n_rows * 4};
		n++;
	}
	qsort(t, (size_t) n, sizeof(OutTensor), cmp_out_name);

	json = malloc(cap);
	if (json == NULL)
		return NULL;
	jl += (size_t) snprintf(json + jl, cap - jl,
							"{\"__metadata__\":{\"format\":\"glintru\",\"max_seq_len\":\"%d\",\"n_heads\":\"%d\",\"layer_norm_eps\":\"%.9g\"}",
							m->config.max_seq_len, m->config.n_heads, (double) m->config.layer_norm_eps);
	for (int i = 0; i < n; i++)
	{
		char		shp[128];

		shape_str(t[i].shape, t[i].ndim, shp, sizeof(shp));
		jl += (size_t) snprintf(json + jl, cap - jl,
								",\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%llu,%llu]}",
								t[i].name, t[i].dtype, shp, (unsigned long long) off,
								(unsigned long long) (off + t[i].bytes));
		off += t[i].bytes;
	}
	jl += (size_t) snprintf(json + jl, cap - jl, "}");
	data_bytes = off;
	/* pad the header with spaces so the data starts 8-byte aligned */
	hlen = (jl + 7) & ~(size_t) 7;
	*len = 8 + hlen + data_bytes;
	out = malloc(*len);
	if (out == NULL)
	{
		free(json);
		return NULL;
	}
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t) (hlen >> (8 * i));
	memcpy(out + 8, json, jl);
	memset(out + 8 + jl, ' ', hlen - jl);
	free(json);
	off = 8 + hlen;
	for (int i = 0; i < n; i++)
	{
		memcpy(out + off, t[i].data, t[i].bytes);
		off += t[i].bytes;
	}
	return out;
}
