// SPDX-License-Identifier: MIT
/*
 * estimate-heavy.c - the contents with many copies, counted exactly when
 * `ksmctl estimate --sample` keeps only a fraction of the others.
 *
 * Sampling by content (estimate-scan.c) is exact for every content it keeps
 * and unbiased overall, but a content of n copies adds (n - 1)^2 (1 - F) / F
 * to the variance: when a few contents hold most duplicates (buffers filled
 * with one byte value), the sample keeps none of them or scales one up
 * 1/F times, and the figure is far off, its interval with it.
 *
 * So the first pass (when there are two or more, the default) also feeds
 * every non-zero page's hash to a Misra-Gries summary of HEAVY_SLOTS
 * counters: a content of more than N / (HEAVY_SLOTS + 1) copies among N
 * pages is in it at the end, its count short by at most that.  Before the
 * last pass the summary keeps the contents counted EST_HEAVY_COPIES times or
 * more: the last pass counts those exactly, whatever their hash, and the
 * sample's scaling and variance apply to the others only.  Which contents
 * are heavy depends on the pages, not on their hashes, so the estimate of
 * the rest stays unbiased.  With one pass there is no summary and every
 * content is sampled alike.
 *
 * Memory: 3 MiB (two tables of 131072 slots of 12 bytes), only with
 * --sample and two passes or more.
 */
#include "estimate-internal.h"

#include <stdlib.h>
#include <string.h>

#define HEAVY_SLOTS 65536u  /* counters of the summary */
#define HEAVY_TABLE 131072u /* open addressing, half full at most */

static uint32_t slot_of(uint64_t h)
{
	return (uint32_t)(h ^ h >> 29) & (HEAVY_TABLE - 1);
}

int est_heavy_init(struct est *e)
{
	struct est_heavy *hv = &e->heavy;

	hv->key = calloc(HEAVY_TABLE, sizeof(*hv->key));
	hv->n = calloc(HEAVY_TABLE, sizeof(*hv->n));
	hv->spare_key = calloc(HEAVY_TABLE, sizeof(*hv->spare_key));
	hv->spare_n = calloc(HEAVY_TABLE, sizeof(*hv->spare_n));
	return hv->key && hv->n && hv->spare_key && hv->spare_n ? 0 : -1;
}

void est_heavy_free(struct est *e)
{
	struct est_heavy *hv = &e->heavy;

	free(hv->key);
	free(hv->n);
	free(hv->spare_key);
	free(hv->spare_n);
	memset(hv, 0, sizeof(*hv));
}

/* The slot of h, or the empty slot where it would go (n 0: empty). */
static uint32_t find(const struct est_heavy *hv, uint64_t h)
{
	uint32_t s = slot_of(h);

	while (hv->n[s] && hv->key[s] != h)
		s = (s + 1) & (HEAVY_TABLE - 1);
	return s;
}

/* Keeps the counters of at least min, less sub, in a table built anew. */
static void rebuild(struct est_heavy *hv, uint32_t min, uint32_t sub)
{
	uint64_t *key = hv->spare_key;
	uint32_t *n = hv->spare_n, used = 0;

	memset(n, 0, HEAVY_TABLE * sizeof(*n));
	for (uint32_t i = 0; i < HEAVY_TABLE; i++) {
		if (hv->n[i] < min || hv->n[i] <= sub)
			continue;
		uint32_t s = slot_of(hv->key[i]);

		while (n[s])
			s = (s + 1) & (HEAVY_TABLE - 1);
		key[s] = hv->key[i];
		n[s] = hv->n[i] - sub;
		used++;
	}
	hv->spare_key = hv->key;
	hv->spare_n = hv->n;
	hv->key = key;
	hv->n = n;
	hv->used = used;
}

void est_heavy_add(struct est *e, uint64_t h)
{
	struct est_heavy *hv = &e->heavy;
	uint32_t s = find(hv, h);

	if (hv->n[s]) {
		if (hv->n[s] < UINT32_MAX)
			hv->n[s]++;
		return;
	}
	if (hv->used < HEAVY_SLOTS) {
		hv->key[s] = h;
		hv->n[s] = 1;
		hv->used++;
		return;
	}
	/* Full: this page and one count of every content cancel out. */
	rebuild(hv, 0, 1);
}

void est_heavy_settle(struct est *e)
{
	rebuild(&e->heavy, EST_HEAVY_COPIES, 0);
	e->heavy.settled = true;
}

bool est_heavy_has(const struct est *e, uint64_t h)
{
	const struct est_heavy *hv = &e->heavy;

	return hv->settled && hv->used && hv->n[find(hv, h)];
}
