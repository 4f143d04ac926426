// SPDX-License-Identifier: MIT
/*
 * estimate-table.c - the estimate engine's tables: the set of PFNs already
 * seen (pages mapped more than once), the store of reference pages kept
 * for confirmation, the open-addressing table of contents, and the list of
 * processes holding each duplicated content.
 */
#include "estimate-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool est_page_is_zero(const unsigned char *p)
{
	const uint64_t *w = (const uint64_t *)p;
	uint64_t acc = 0;

	for (size_t i = 0; i < EST_PAGE_SIZE / 8; i++)
		acc |= w[i];
	return acc == 0;
}

void *est_xrealloc_array(void *p, size_t n, size_t size)
{
	if (n && size > SIZE_MAX / n)
		return NULL;
	return realloc(p, n * size);
}

static int pfn_grow(struct est *e)
{
	uint64_t ncap = (e->pfn_mask + 1) * 2;
	uint64_t *n = calloc(ncap, sizeof(*n));

	if (!n)
		return -ENOMEM;
	for (uint64_t i = 0; i <= e->pfn_mask; i++) {
		uint64_t v = e->pfns[i];

		if (!v)
			continue;
		uint64_t j = XXH3_64bits(&(uint64_t){v & PM_PFN_MASK}, 8) & (ncap - 1);
		while (n[j])
			j = (j + 1) & (ncap - 1);
		n[j] = v;
	}
	free(e->pfns);
	e->pfns = n;
	e->pfn_mask = ncap - 1;
	return 0;
}

/* Returns the slot of pfn: *slot is 0 if the pfn was not there yet. */
uint64_t *est_pfn_slot(struct est *e, uint64_t pfn)
{
	uint64_t key = pfn + 1;
	uint64_t j;

	if ((e->pfn_used + 1) * 10 > (e->pfn_mask + 1) * 7 && pfn_grow(e))
		return NULL;
	j = XXH3_64bits(&key, 8) & e->pfn_mask;
	while (e->pfns[j] && (e->pfns[j] & PM_PFN_MASK) != key)
		j = (j + 1) & e->pfn_mask;
	return &e->pfns[j];
}

uint64_t est_kpageflags(struct est *e, uint64_t pfn)
{
	uint64_t f = 0;

	if (e->kpageflags_fd < 0 || pread(e->kpageflags_fd, &f, 8, (off_t)(pfn * 8)) != 8)
		return 0;
	return f;
}

/* Copies page into the store: its 1-based index, or 0 when the budget is spent. */
uint32_t est_store_add(struct est *e, const unsigned char *page)
{
	uint32_t i = e->store_pages;

	if (i >= e->store_limit || i == UINT32_MAX - 1)
		return 0;
	if (i % STORE_CHUNK == 0) {
		uint32_t c = i / STORE_CHUNK;

		if (c >= e->store_cap_chunks) {
			uint32_t ncap = e->store_cap_chunks ? e->store_cap_chunks * 2 : 16;
			unsigned char **n = est_xrealloc_array(e->store, ncap, sizeof(*n));

			if (!n)
				return 0;
			e->store = n;
			e->store_cap_chunks = ncap;
		}
		e->store[c] = malloc((size_t)STORE_CHUNK * EST_PAGE_SIZE);
		if (!e->store[c])
			return 0;
	}
	memcpy(e->store[i / STORE_CHUNK] + (size_t)(i % STORE_CHUNK) * EST_PAGE_SIZE, page,
	       EST_PAGE_SIZE);
	e->store_pages++;
	return i + 1;
}

const unsigned char *est_store_page(const struct est *e, uint32_t ref)
{
	uint32_t i = ref - 1;

	return e->store[i / STORE_CHUNK] + (size_t)(i % STORE_CHUNK) * EST_PAGE_SIZE;
}

int est_tab_grow(struct est *e)
{
	uint64_t ncap = e->tab ? (e->tab_mask + 1) * 2 : 1 << 16;
	struct est_entry *n = calloc(ncap, sizeof(*n));

	if (!n)
		return -ENOMEM;
	for (uint64_t i = 0; e->tab && i <= e->tab_mask; i++) {
		struct est_entry *o = &e->tab[i];

		if (!o->count)
			continue;
		uint64_t j = o->hash & (ncap - 1);
		while (n[j].count)
			j = (j + 1) & (ncap - 1);
		n[j] = *o;
	}
	free(e->tab);
	e->tab = n;
	e->tab_mask = ncap - 1;
	return 0;
}

void est_occ_note(struct est *e, struct est_entry *ent)
{
	uint32_t cur = (uint32_t)e->cur;

	if (ent->occ != OCC_NONE && e->occ[ent->occ - 1].proc == cur) {
		e->occ[ent->occ - 1].copies++;
		return;
	}
	/* Room for two records: the first copy's, created lazily, and ours. */
	if (e->nocc + 2 > e->occ_cap) {
		uint32_t ncap = e->occ_cap ? e->occ_cap * 2 : 4096;
		struct est_occ *n = est_xrealloc_array(e->occ, ncap, sizeof(*n));

		if (!n)
			return; /* the list is for display only: lose it, not the scan */
		e->occ = n;
		e->occ_cap = ncap;
	}
	if (ent->occ == OCC_NONE) {
		/* count is 1: the one earlier copy was in ent->proc. */
		e->occ[e->nocc] = (struct est_occ){ent->proc, 1, OCC_NONE};
		ent->occ = ++e->nocc;
		if (ent->proc == cur) {
			e->occ[ent->occ - 1].copies++;
			return;
		}
	}
	e->occ[e->nocc] = (struct est_occ){cur, 1, ent->occ};
	ent->occ = ++e->nocc;
}
