/*
 * util.h — small helpers the numeric core, its command-line tools and its
 * tests share: SplitMix64 (the one generator behind every seeded draw) and
 * reading a whole file.
 *
 * Numeric core: no PostgreSQL headers here.
 */
#ifndef GLINTRU_UTIL_H
#define GLINTRU_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* SplitMix64's golden-ratio increment. */
#define GLINTRU_SPLITMIX64_GAMMA 0x9E3779B97F4A7C15ull

/* SplitMix64's output function of z + gamma: a stateless 64-bit hash. */
static inline uint64_t
glintru_mix64(uint64_t z)
{
	z += GLINTRU_SPLITMIX64_GAMMA;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* The next draw of the SplitMix64 generator whose state is *s. */
static inline uint64_t
glintru_splitmix64(uint64_t *s)
{
	uint64_t	z = *s;

	*s += GLINTRU_SPLITMIX64_GAMMA;
	return glintru_mix64(z);
}

/*
 * The whole file at path, malloc'ed (one spare byte, so an empty file is not
 * a NULL); *len its size.  NULL with errno set if it cannot be read.
 */
uint8_t    *glintru_read_file(const char *path, size_t *len);

#endif							/* GLINTRU_UTIL_H */
