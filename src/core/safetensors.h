/*
 * safetensors.h — reading and writing GLINT-RU models as safetensors files
 * (SPEC §2): 8-byte little-endian header length, JSON header, raw data.
 *
 * Numeric core: no PostgreSQL headers here.
 */
#ifndef GLINTRU_SAFETENSORS_H
#define GLINTRU_SAFETENSORS_H

#include "model.h"

/* Largest header accepted (the safetensors reference limit). */
#define GLINTRU_MAX_HEADER_BYTES (100u * 1024 * 1024)

/*
 * Validate a whole file and work out the model it describes.  On success
 * returns true and sets *cfg and *has_popularity; the model is then built by
 * glintru_safetensors_build() into glintru_model_bytes() bytes.  On failure
 * returns false with a one-line, lower-case message in err (no period).
 */
bool		glintru_safetensors_check(const uint8_t *buf, size_t len,
									  GlintruConfig *cfg, bool *has_popularity,
									  char *err, size_t errlen);

/*
 * Build the model from a file that glintru_safetensors_check() accepted,
 * into dest.  Fails only on what needs the data (non-finite values,
 * duplicate item ids), with a message in err.
 */
GlintruModel *glintru_safetensors_build(const uint8_t *buf, size_t len, void *dest,
										char *err, size_t errlen);

/* Convenience: check + allocate with malloc + build.  NULL on error. */
GlintruModel *glintru_safetensors_load(const uint8_t *buf, size_t len,
									   char *err, size_t errlen);

/*
 * Serialise a model (all parameters, item_ids, item_popularity if present,
 * metadata) as a safetensors file.  Returns a malloc'ed buffer and its size
 * in *len, or NULL on allocation failure.
 */
uint8_t    *glintru_safetensors_write(const GlintruModel *m, size_t *len);

#endif							/* GLINTRU_SAFETENSORS_H */
