// SPDX-License-Identifier: MIT
/*
 * pages.c - from a page id to its region and rmap item, and from an
 * address to its protection.
 *
 * Pages are numbered by a process-wide page id (a region's base_id plus the
 * page's index) so that one 32-bit link can name a page of any region: the
 * unstable tree's chains are such links.  Regions are kept sorted by
 * base_id, so a lookup is a binary search.
 */
#include "internal.h"

struct region *region_of_id(struct samepage *sp, uint32_t id, size_t *index, size_t *ri)
{
	size_t lo = 0, hi = sp->nregions;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		struct region *r = &sp->regions[mid];
		if (id < r->base_id)
			hi = mid;
		else if (id >= r->base_id + r->npages)
			lo = mid + 1;
		else {
			*index = id - r->base_id;
			if (ri)
				*ri = mid;
			return r;
		}
	}
	return NULL;
}

struct page_meta *meta_of_id(struct samepage *sp, uint32_t id)
{
	size_t idx;
	struct region *r = region_of_id(sp, id, &idx, NULL);
	return r ? &r->meta[idx] : NULL;
}

/* The protection of addr in r, from the maps last read; -1 if unmapped. */
int region_prot_at(const struct region *r, uintptr_t addr)
{
	size_t lo = 0, hi = r->nspans;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (addr < r->spans[mid].start)
			hi = mid;
		else if (addr >= r->spans[mid].end)
			lo = mid + 1;
		else
			return r->spans[mid].prot;
	}
	return -1;
}
