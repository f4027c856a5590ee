/*
 * fuzz_safetensors.c — libFuzzer target for the strict safetensors reader
 * (src/safetensors.c), built outside the server with ASan + UBSan
 * (test/fuzz/run.sh).
 *
 * Every input goes through glintru_safetensors_load().  An input the reader
 * accepts must also be safe to use and must survive a round trip, so for an
 * accepted model the target additionally
 *   - runs the forward pass (state build, one advance deferred and eager,
 *     user vectors of the stale and the fresh state, scores,
 *     top-k) on a short history derived from the input, and
 *   - writes the model with glintru_safetensors_write(), reads that back and
 *     insists on the same model, byte for byte (only has_item_ids may differ:
 *     the writer always emits item_ids).
 * A rejected input must come with a non-empty, NUL-terminated message.
 * Any violation aborts, which libFuzzer reports as a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "rank.h"
#include "kernels.h"
#include "model.h"
#include "safetensors.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
die(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_safetensors: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	abort();
}

/* Forward pass over a short history; every row in [1, n_rows). */
static void
exercise(const GlintruModel *m, const uint8_t *data, size_t size)
{
	const GlintruConfig *cfg = &m->config;
	int64_t		items = cfg->n_rows - 1;
	int			L = cfg->max_seq_len;
	int			n = L < 6 ? L + 1 : 6;	/* one past a full window when L is small */
	int32_t		rows[6];
	float	   *scratch,
			   *u,
			   *scores;
	GlintruState *s1,
			   *s2;
	GlintruScored best[10];
	uint8_t    *exclude;
	int			got;

	/* keep the work bounded: huge catalogues only come from huge inputs */
	if (cfg->n_rows > (1 << 20))
		return;
	for (int i = 0; i < n; i++)
		rows[i] = (int32_t) (1 + (size > 0 ? data[(size_t) i * 7919 % size] : i) % items);

	scratch = malloc(sizeof(float) * glintru_forward_scratch_floats(cfg));
	s1 = malloc(glintru_state_bytes(cfg));
	s2 = malloc(glintru_state_bytes(cfg));
	u = malloc(sizeof(float) * (size_t) cfg->d);
	scores = malloc(sizeof(float) * (size_t) cfg->n_rows);
	exclude = calloc((size_t) cfg->n_rows, 1);
	if (!scratch || !s1 || !s2 || !u || !scores || !exclude)
		die("out of memory in the harness", NULL);

	/* build over n-1 items, advance by the last (slides the window when n > L), deferred too */
	glintru_state_build(m, rows, n - 1, s1, scratch);
	if (!glintru_state_valid(m, s1, glintru_state_bytes(cfg)))
		die("glintru_state_build produced a state glintru_state_valid rejects", NULL);
	glintru_state_advance(m, s1, rows + n - 1, 1, true, s2, scratch);
	if (!glintru_state_valid(m, s2, glintru_state_bytes(cfg)))
		die("a deferred glintru_state_advance produced a state glintru_state_valid rejects", NULL);
	glintru_state_user_vector(m, s2, u, scratch);
	glintru_state_advance(m, s1, rows + n - 1, 1, false, s2, scratch);
	if (!glintru_state_valid(m, s2, glintru_state_bytes(cfg)) || glintru_state_stale(m, s2))
		die("glintru_state_advance produced a state glintru_state_valid rejects", NULL);
	glintru_state_user_vector(m, s2, u, scratch);
	glintru_score_items(glintru_param(m, GT_ITEM_EMBEDDING), cfg->n_rows, cfg->d, u, scores);
	for (int i = 0; i < n; i++)
		exclude[rows[i]] = 1;
	got = glintru_top_k(scores, cfg->n_rows, exclude, 10, best);
	if (got < 0 || got > 10)
		die("glintru_top_k returned an impossible count", NULL);
	for (int i = 0; i < got; i++)
		if (best[i].row < 1 || best[i].row >= cfg->n_rows || exclude[best[i].row])
			die("glintru_top_k returned an excluded or out-of-range row", NULL);
	/* every known external id maps back to its row */
	for (int i = 0; i < n; i++)
		if (glintru_item_row(m, glintru_item_ids(m)[rows[i]]) != rows[i])
			die("glintru_item_row does not invert item_ids", NULL);

	free(scratch);
	free(s1);
	free(s2);
	free(u);
	free(scores);
	free(exclude);
}

/* write → read must give the same model */
static void
round_trip(const GlintruModel *m)
{
	size_t		len = 0;
	uint8_t    *out = glintru_safetensors_write(m, &len);
	GlintruModel *again;
	char		err[512];

	if (out == NULL)
		die("glintru_safetensors_write failed", NULL);
	err[0] = '\0';
	again = glintru_safetensors_load(out, len, err, sizeof(err));
	if (again == NULL)
		die("the reader rejects what the writer wrote", err);
	if (again->total_bytes != m->total_bytes)
		die("round trip changed the model size", NULL);
	again->has_item_ids = m->has_item_ids;
	if (memcmp(again, m, m->total_bytes) != 0)
		die("round trip changed the model bytes", NULL);
	free(again);
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char		err[512];
	GlintruModel *m;

	memset(err, 0x7f, sizeof(err));
	err[sizeof(err) - 1] = '\0';
	m = glintru_safetensors_load(data, size, err, sizeof(err));
	if (m == NULL)
	{
		if (memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0' || err[0] == 0x7f)
			die("rejected without a message", NULL);
		return 0;
	}
	if (m->magic != GLINTRU_MODEL_MAGIC || m->config.n_rows < 2 || m->config.d < 2)
		die("accepted model has an impossible header", NULL);
	exercise(m, data, size);
	round_trip(m);
	free(m);
	return 0;
}
