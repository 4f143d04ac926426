/* SPDX-License-Identifier: MIT */
/*
 * splitmix.h - the page contents of the estimate workloads and benchmark:
 * splitmix64, so that different ids give different pages.
 */
#ifndef ESTIMATE_SPLITMIX_H
#define ESTIMATE_SPLITMIX_H

#include <stdint.h>

static inline uint64_t splitmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

#endif
