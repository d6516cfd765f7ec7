/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * guest.h - what the guest's test programs share: a 64-bit mixer and text
 * pages from a small dictionary (they compress well, as text does).
 */
#ifndef FOLDSWAP_GUEST_H
#define FOLDSWAP_GUEST_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static const char *const words[] = {
	"swap ", "page ", "memory ", "the ", "kernel ", "compress ", "merge ",
	"tree ", "zswap ", "of ", "and ", "a ", "folio ", "store ", "load ",
	"offset ", "pool ", "deduplicate ", "scanner ", "wake ",
};

static inline void fill_text(unsigned char *p, size_t len, uint64_t seed)
{
	uint64_t s = mix64(seed);
	size_t i = 0;

	while (i < len) {
		const char *w;
		size_t n;

		s = mix64(s + 0x9e3779b97f4a7c15ULL);
		w = words[s % (sizeof(words) / sizeof(words[0]))];
		n = strlen(w);
		if (n > len - i)
			n = len - i;
		memcpy(p + i, w, n);
		i += n;
	}
}

#endif /* FOLDSWAP_GUEST_H */
