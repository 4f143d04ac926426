// SPDX-License-Identifier: MIT
/*
 * debug.c - the invariants types.h writes down, checked.
 *
 * In a debug build (SAMEPAGE_DEBUG >= 2, on in the sanitizer build),
 * invariants_check() walks every tracked page at the end of each full scan
 * and aborts with the first broken promise: a test then fails where the
 * state went wrong, not where it was later read.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void debug_fail(const char *file, int line, const char *cond)
{
	fprintf(stderr, "libsamepage: %s:%d: invariant broken: %s\n", file, line, cond);
	abort();
}

/* Called with sp->lock held (the scanner, at the end of a full scan). */
void invariants_check(struct samepage *sp)
{
	if (SAMEPAGE_DEBUG < 2)
		return;
	bool local = !sp->stable.refs; /* the domain is this engine's alone */
	uint64_t items = 0, merging = 0, zero = 0, unshared = 0, tracked = 0;
	uint32_t *maps = NULL;
	if (local && sp->dom->nr)
		maps = lib_calloc(sp->dom->nr, sizeof(*maps));
	for (size_t ri = 0; ri < sp->nregions; ri++) {
		const struct region *r = &sp->regions[ri];
		size_t mergeable = 0;
		SP_ASSERT(2, ri == 0 || sp->regions[ri - 1].base_id < r->base_id);
		tracked += r->npages;
		for (size_t i = 0; i < r->npages; i++) {
			const struct page_meta *m = &r->meta[i];
			SP_ASSERT(2, !((m->flags & PM_STABLE) && (m->flags & PM_UNSTABLE)));
			SP_ASSERT(2, !(m->flags & PM_PENDING));
			SP_ASSERT(2, !((m->flags & PM_OFF) && (m->flags & ~PM_OFF & ~PM_POOLMAP)));
			mergeable += !(m->flags & PM_OFF);
			items += !!(m->flags & PM_ITEM);
			zero += !!(m->flags & PM_ZERO);
			unshared += !!(m->flags & PM_UNSTABLE);
			if (m->flags & PM_STABLE) {
				merging++;
				SP_ASSERT(2, m->link < sp->dom->nr);
				/* A domain's index is shared and writable by every
				 * client: only this engine's own is promised. */
				SP_ASSERT(2, !local || sp->stable.nodes[m->link].in_use);
				if (maps)
					maps[m->link]++;
			}
		}
		SP_ASSERT(2, mergeable == r->mergeable_pages);
	}
	SP_ASSERT(2, tracked == sp->tracked_pages);
	SP_ASSERT(2, items == sp->c.rmap_items);
	SP_ASSERT(2, merging == sp->c.merging_pages);
	SP_ASSERT(2, zero == sp->c.zero_pages);
	SP_ASSERT(2, unshared == sp->c.pages_unshared);
	SP_ASSERT(2, !local || index_chains_ok(sp));
	if (maps) {
		/* A local engine's nodes are mapped by its own pages only. */
		uint64_t shared = 0, sharing = 0;
		for (uint32_t n = 0; n < sp->dom->nr; n++) {
			const struct stable_node *nd = &sp->stable.nodes[n];
			if (!nd->in_use)
				continue;
			SP_ASSERT(2, nd->mapcount == maps[n]);
			/* Filed under its own contents' checksum, or no page of
			 * those contents finds it again. */
			SP_ASSERT(2, !nd->mapcount ||
					 (uint32_t)page_hash(pool_contents(sp, n)) == nd->checksum);
			shared += nd->mapcount > 0;
			sharing += nd->mapcount > 1 ? nd->mapcount - 1 : 0;
		}
		SP_ASSERT(2, shared == sp->dom->pages_shared);
		SP_ASSERT(2, sharing == sp->dom->pages_sharing);
		lib_free(maps);
	}
}
