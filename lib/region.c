// SPDX-License-Identifier: MIT
/*
 * region.c - the mergeable ranges, and what the application did to them.
 *
 * The kernel knows its VMAs; we learn ours from /proc/self/maps.  The maps
 * are read when a range is registered, whenever an application call seen
 * by interpose.c changed the address space, and at the start of a full
 * scan once they are 10 s old (1 s on a kernel without PROCMAP_QUERY,
 * scan.c); a merge in maps over a second old asks the kernel about its
 * own run first (regions_range_current()).  A page that is no longer in
 * an anonymous private mapping (or a private mapping of our pool) is
 * forgotten, as the kernel forgets the rmap items of an unmapped range.
 *
 * Reclaim: a pool page is punched when its last mapping is gone.  If the
 * application moved a merged page with a raw mremap(2) that we did not see,
 * /proc/self/maps still shows the pool mapped there, and the pool page is
 * kept (pinned) instead: never punch what something may still read.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ---- reading /proc/self/maps ---- */

struct maps {
	struct map_entry *e;
	size_t n, cap;
	unsigned long merges; /* merges_mapped before they were read */
};

/*
 * Bumped by every merge that mapped something over the application's pages
 * (a pool's pages, or fresh anonymous memory for zeros), by any engine of
 * the process.  Two engines may have regions over the same pages (merge-any
 * registers every private mapping, another engine's ranges too): a page
 * one engine's maps call anonymous may since be a private mapping of the
 * other's pool, where MADV_DONTNEED, which drops a page of zeros, brings
 * the pool's page back instead of zeros (RELIABILITY.md 67).  An engine
 * whose count (maps_merges) is behind trusts its maps no more.
 */
static _Atomic unsigned long merges_mapped;

void regions_note_merge(struct samepage *sp)
{
	atomic_fetch_add(&merges_mapped, 1);
	sp->maps_merges++;
}

bool regions_merged_by_another(const struct samepage *sp)
{
	return atomic_load(&merges_mapped) != sp->maps_merges;
}

static int maps_collect(const struct map_entry *e, void *arg)
{
	struct maps *m = arg;
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 256;
		struct map_entry *ne = lib_realloc(m->e, cap * sizeof(*ne));
		if (!ne)
			return -ENOMEM;
		m->e = ne;
		m->cap = cap;
	}
	m->e[m->n++] = *e;
	return 0;
}

static int maps_read(struct samepage *sp, struct maps *m)
{
	memset(m, 0, sizeof(*m));
	sp->maps_reads++;
	m->merges = atomic_load(&merges_mapped);
	int err = prim_maps_walk(0, maps_collect, m);
	if (err) {
		lib_free(m->e);
		memset(m, 0, sizeof(*m));
	}
	return err;
}

/* Mergeable kinds of mapping: private anonymous memory (the kernel's
 * vma_ksm_compatible), and private mappings of our own pool (pages that
 * are merged already). */
static bool mergeable_entry(struct samepage *sp, const struct map_entry *e)
{
	if (e->shared)
		return false;
	if (e->anon)
		return true;
	return e->dev == sp->pool.dev && e->ino == sp->pool.ino &&
	       !(e->start >= (uintptr_t)sp->pool.view &&
		 e->end <= (uintptr_t)sp->pool.view + (sp->pool.view_pages << PAGE_SHIFT));
}

/* A private mapping of our pool made by a merge (not our own view). */
static bool is_pool_map(struct samepage *sp, const struct map_entry *e)
{
	return !e->anon && !e->shared && mergeable_entry(sp, e);
}

static int count_entry(const struct map_entry *e, void *arg)
{
	struct samepage *sp = arg;
	sp->c.map_count++;
	sp->c.pool_maps += is_pool_map(sp, e);
	return 0;
}

/* Counts this process's mappings, and the engine's among them, from the
 * maps (the mapping budget, near its limit). */
void regions_count_maps(struct samepage *sp)
{
	uint64_t n = sp->c.map_count, pool = sp->c.pool_maps;
	sp->c.map_count = sp->c.pool_maps = 0;
	sp->maps_reads++;
	if (prim_maps_walk(0, count_entry, sp)) {
		sp->c.map_count = n;
		sp->c.pool_maps = pool;
	}
}

/*
 * Is [a, e) still what the maps said when they were read: private
 * mappings of protection prot, anonymous (poolmap: of our pool)?  A raw
 * system call the wrappers do not see may have changed it since, and a
 * merge maps what the regions say.  Maps read under MAPS_REREAD_NS ago
 * are taken as they are, unless another engine merged since; older ones,
 * each mapping of the range is asked for (PROCMAP_QUERY), and a difference
 * has the next batch read them again (engine_sync).  Without PROCMAP_QUERY
 * the maps are never older than that at a full scan's start (scan.c), and
 * the range is taken (the caller minds another engine's merges).
 */
bool regions_range_current(struct samepage *sp, uintptr_t a, uintptr_t e, int prot, bool poolmap)
{
	if (prim_now_ns() - sp->maps_read_ns < MAPS_REREAD_NS && !regions_merged_by_another(sp))
		return true;
	for (uintptr_t at = a; at < e;) {
		struct map_entry m;
		int err = prim_map_at(at, &m);
		if (err == -ENOTTY)
			return true;
		if (err || !mergeable_entry(sp, &m) || m.prot != prot || m.anon == poolmap ||
		    m.end <= at) {
			sp->maps_dirty = true;
			return false;
		}
		at = m.end;
	}
	return true;
}

/* Is pool page `off` mapped anywhere but in our own view? */
static bool pool_page_mapped(struct samepage *sp, const struct maps *m, uint32_t off)
{
	for (size_t k = 0; k < m->n; k++) {
		const struct map_entry *e = &m->e[k];
		if (e->anon || e->shared || e->dev != sp->pool.dev || e->ino != sp->pool.ino)
			continue;
		uint64_t first = e->pgoff >> PAGE_SHIFT;
		uint64_t last = first + ((e->end - e->start) >> PAGE_SHIFT);
		if (off >= first && off < last)
			return true;
	}
	return false;
}

/* Forgets page i of r: out of every tree, no rmap item, not mergeable. */
static void forget_page(struct samepage *sp, struct region *r, size_t i, const struct maps *m)
{
	struct page_meta *pm = &r->meta[i];
	uint32_t id = r->base_id + (uint32_t)i;

	if (pm->flags & PM_STABLE) {
		struct stable_node *n = &sp->stable.nodes[pm->link];
		if (m && n->mapcount == 1 && pool_page_mapped(sp, m, pm->link))
			n->pinned = 255; /* still mapped where we cannot see: keep it */
	}
	remove_rmap_item_from_tree(sp, id);
	if (pm->flags & PM_ZERO)
		sp->c.zero_pages--;
	if (pm->flags & PM_ITEM)
		sp->c.rmap_items--;
	if (!(pm->flags & PM_OFF))
		r->mergeable_pages--;
	pm->flags = PM_OFF;
	pm->link = NIL;
}

void region_drop_page(struct samepage *sp, struct region *r, size_t i)
{
	forget_page(sp, r, i, NULL);
}

/* Pages [from, to) of r are no longer mergeable.  Only pages with state
 * are written: a sparse range's untouched metadata stays untouched. */
static void forget_pages(struct samepage *sp, struct region *r, size_t from, size_t to,
			 const struct maps *m)
{
	if (from == 0 && to == r->npages) {
		for (size_t i = 0; i < r->npages; i++)
			if (r->meta[i].flags & ~PM_OFF)
				forget_page(sp, r, i, m);
		r->mergeable_pages = 0; /* region_free follows */
		return;
	}
	for (size_t i = from; i < to; i++)
		if (!(r->meta[i].flags & PM_OFF))
			forget_page(sp, r, i, m);
}

static void region_free(struct samepage *sp, size_t ri)
{
	struct region *r = &sp->regions[ri];
	forget_pages(sp, r, 0, r->npages, NULL);
	own_remove((uintptr_t)r->meta);
	prim_munmap(r->meta, r->npages * sizeof(struct page_meta));
	lib_free(r->spans);
	sp->tracked_pages -= r->npages;
	/* Page ids are 32-bit: the last region's go back to the pool of ids. */
	if (ri == sp->nregions - 1)
		sp->next_page_id = r->base_id;
	memmove(&sp->regions[ri], &sp->regions[ri + 1],
		(sp->nregions - ri - 1) * sizeof(struct region));
	sp->nregions--;
	if (sp->cur_region > ri) {
		sp->cur_region--;
	} else if (sp->cur_region == ri) {
		sp->cur_index = 0;
	}
}

/* Rebuilds r's protection spans from the maps, and forgets the pages that
 * are no longer in a mergeable mapping. */
/* Called inside engine_enter(), as everything below that changes trees. */
static void region_sync(struct samepage *sp, struct region *r, const struct maps *m)
{
	uintptr_t end = region_addr(r, r->npages), covered = r->start;
	size_t ns = 0;
	struct prot_span *spans = NULL;

	/* Binary search for the first entry ending after r->start. */
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (m->e[mid].end <= r->start)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t k = lo; k < m->n && m->e[k].start < end; k++) {
		const struct map_entry *e = &m->e[k];
		uintptr_t s = e->start > r->start ? e->start : r->start;
		uintptr_t t = e->end < end ? e->end : end;
		bool ok = mergeable_entry(sp, e);
		/* Pages before this entry, or in an unmergeable one: gone. */
		uintptr_t gone_to = ok ? s : t;
		for (uintptr_t a = covered; a < gone_to; a += PAGE_SIZE) {
			size_t i = (a - r->start) >> PAGE_SHIFT;
			if (!(r->meta[i].flags & PM_OFF))
				forget_page(sp, r, i, m);
		}
		covered = t;
		if (!ok)
			continue;
		/* A private mapping of the pool that this engine did not make
		 * here (a domain's pool mapped by an engine of this process
		 * before, since closed; a parent's, in a forked child that
		 * connected again): MADV_DONTNEED there would read the pool
		 * page back, so its pages are marked as the merges mark theirs
		 * (RELIABILITY.md 67).  Anonymous mappings' pages are not
		 * touched: a sparse range's metadata stays unwritten. */
		if (is_pool_map(sp, e)) {
			for (uintptr_t a = s; a < t; a += PAGE_SIZE)
				r->meta[(a - r->start) >> PAGE_SHIFT].flags |= PM_POOLMAP;
			r->merged = true; /* a discard must make them anonymous first */
		}
		if (ns && spans[ns - 1].end == s && spans[ns - 1].prot == e->prot) {
			spans[ns - 1].end = t;
			continue;
		}
		struct prot_span *n2 = lib_realloc(spans, (ns + 1) * sizeof(*spans));
		if (!n2)
			break;
		spans = n2;
		spans[ns++] = (struct prot_span){s, t, e->prot};
	}
	for (uintptr_t a = covered; a < end; a += PAGE_SIZE) {
		size_t i = (a - r->start) >> PAGE_SHIFT;
		if (!(r->meta[i].flags & PM_OFF))
			forget_page(sp, r, i, m);
	}
	lib_free(r->spans);
	r->spans = spans;
	r->nspans = ns;
}

/* The regions as the maps m say, which the caller frees. */
static void regions_refresh_from(struct samepage *sp, const struct maps *m)
{
	sp->maps_read_ns = prim_now_ns();
	sp->maps_merges = m->merges;
	sp->c.map_count = m->n;
	sp->c.max_map_count = (uint64_t)prim_max_map_count();
	sp->c.pool_maps = 0;
	for (size_t k = 0; k < m->n; k++)
		sp->c.pool_maps += is_pool_map(sp, &m->e[k]);
	for (size_t ri = 0; ri < sp->nregions; ri++)
		region_sync(sp, &sp->regions[ri], m);
	for (size_t ri = sp->nregions; ri-- > 0;)
		if (!sp->regions[ri].mergeable_pages)
			region_free(sp, ri);
	sp->maps_dirty = false;
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	for (size_t ri = 0; ri < sp->nregions; ri++) {
		const struct region *r = &sp->regions[ri];
		lo = r->start < lo ? r->start : lo;
		hi = region_addr(r, r->npages) > hi ? region_addr(r, r->npages) : hi;
	}
	atomic_store(&sp->span_lo, lo);
	atomic_store(&sp->span_hi, hi);
}

int regions_refresh(struct samepage *sp)
{
	struct maps m;
	int err = maps_read(sp, &m);
	if (err)
		return err;
	regions_refresh_from(sp, &m);
	lib_free(m.e);
	return 0;
}

/* ---- registering ranges (samepage_madvise) ---- */

/* Bumped by every region an engine adds, once it is there (its span grown
 * first), inside engine_enter() (its lock and the address-space lock
 * held).  A wrapper that read the count, then held the engines with a
 * region in its range (hold_if_hits, which skips an engine whose span
 * misses the range), and finds the count unchanged once it holds the
 * address-space lock knows that no other engine has a region there, so
 * none can merge there (a batch of merges takes that lock exclusive) until
 * it lets go: merge-any registers new mappings from its own thread, at any
 * time (RELIABILITY.md 46).  Bumped before the span grew, a wrapper could
 * read the new count and the old span. */
_Atomic unsigned long regions_added;

static int region_add(struct samepage *sp, uintptr_t start, size_t npages)
{
	/* The span grows before the region exists (the wrappers see it). */
	uintptr_t end = start + (npages << PAGE_SHIFT);
	if (start < atomic_load(&sp->span_lo))
		atomic_store(&sp->span_lo, start);
	if (end > atomic_load(&sp->span_hi))
		atomic_store(&sp->span_hi, end);
	if ((uint64_t)sp->next_page_id + npages >= NIL)
		return -ENOMEM; /* page ids are 32-bit: 16 TiB registered over a lifetime */
	if (sp->nregions == sp->regions_cap) {
		size_t cap = sp->regions_cap ? sp->regions_cap * 2 : 16;
		struct region *n = lib_realloc(sp->regions, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		sp->regions = n;
		sp->regions_cap = cap;
	}
	void *meta;
	int err = prim_mmap(&meta, NULL, npages * sizeof(struct page_meta), PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (err)
		return err;
	own_add((uintptr_t)meta, (uintptr_t)meta + npages * sizeof(struct page_meta));
	struct region *r = &sp->regions[sp->nregions++];
	*r = (struct region){.start = start,
			     .npages = npages,
			     .base_id = sp->next_page_id,
			     .meta = meta,
			     .mergeable_pages = npages};
	/* meta[] stays untouched: zero is a mergeable page with no state. */
	sp->next_page_id += (uint32_t)npages;
	sp->tracked_pages += npages;
	atomic_fetch_add(&regions_added, 1);
	debug_pause("region_add");
	return 0;
}

/* Marks the part [s, t) of a mergeable mapping: pages of existing regions
 * become mergeable again, the rest becomes new regions. */
static int mark_mergeable(struct samepage *sp, uintptr_t s, uintptr_t t)
{
	while (s < t) {
		struct region *hit = NULL;
		uintptr_t next_start = t;
		for (size_t ri = 0; ri < sp->nregions; ri++) {
			struct region *r = &sp->regions[ri];
			uintptr_t rend = region_addr(r, r->npages);
			if (s >= r->start && s < rend)
				hit = r;
			else if (r->start > s && r->start < next_start)
				next_start = r->start;
		}
		if (hit) {
			uintptr_t rend = region_addr(hit, hit->npages);
			uintptr_t stop = rend < t ? rend : t;
			for (; s < stop; s += PAGE_SIZE) {
				struct page_meta *m = &hit->meta[(s - hit->start) >> PAGE_SHIFT];
				if (m->flags & PM_OFF) {
					m->flags &= PM_POOLMAP; /* (it may still be) */
					hit->mergeable_pages++;
				}
			}
			continue;
		}
		int err = region_add(sp, s, (next_start - s) >> PAGE_SHIFT);
		if (err)
			return err;
		s = next_start;
	}
	return 0;
}

struct mark_arg {
	struct samepage *sp;
	uintptr_t start, end, covered;
	int err;
	bool apply;
};

/* The merge windows' userfaultfd on [s, t), but for the parts the
 * application registered with its own (a range takes one only: its
 * UFFDIO_REGISTER would fail with EBUSY, and the pages are kept out of
 * merging: RELIABILITY.md 48). */
void regions_arm(uintptr_t s, uintptr_t t)
{
	uintptr_t fs, fe;
	while (s < t && promise_find(s, t, PROMISE_UFFD, &fs, &fe)) {
		if (fs > s)
			guard_arm(s, fs);
		s = fe;
	}
	if (s < t)
		guard_arm(s, t);
}

static int mark_walk(const struct map_entry *e, void *arg)
{
	struct mark_arg *a = arg;
	if (e->end <= a->start || e->start >= a->end)
		return 0;
	if (e->start > a->covered)
		return 1; /* a hole in the range */
	a->covered = e->end;
	if (a->apply && mergeable_entry(a->sp, e)) {
		uintptr_t s = e->start > a->start ? e->start : a->start;
		uintptr_t t = e->end < a->end ? e->end : a->end;
		a->err = mark_mergeable(a->sp, s, t);
		if (!a->err)
			regions_arm(s, t); /* merge windows write-protect it */
		if (a->err)
			return 2;
	}
	return 0;
}

/* Is every page of [start, end) mapped?  -ENOMEM if not, as madvise
 * says; nothing is changed. */
int regions_check_mapped(struct samepage *sp, uintptr_t start, uintptr_t end)
{
	struct mark_arg a = {.sp = sp, .start = start, .end = end, .covered = start};
	int stop = prim_maps_walk(0, mark_walk, &a);
	if (stop < 0)
		return stop;
	return stop == 1 || a.covered < end ? -ENOMEM : 0;
}

/* Registers [start, end), known to be private anonymous memory (merge-any
 * read the maps): the caller refreshes the regions once afterwards. */
int regions_add_anon(struct samepage *sp, uintptr_t start, uintptr_t end)
{
	int err = mark_mergeable(sp, start, end);
	if (!err) {
		regions_arm(start, end);
		sp->maps_dirty = true;
	}
	return err;
}

/* Registers the mergeable kinds of mapping of [start, end): private
 * anonymous memory, and pages of our pool already merged.  The caller
 * checked the range is mapped. */
int regions_add(struct samepage *sp, uintptr_t start, uintptr_t end)
{
	struct mark_arg a = {.sp = sp, .start = start, .end = end, .covered = start, .apply = true};
	prim_maps_walk(0, mark_walk, &a);
	sp->maps_dirty = true;
	return a.err ? a.err : regions_refresh(sp);
}

static void forget_ranges(struct samepage *sp, uintptr_t start, size_t len, const struct maps *m);

/* Does [start, start + len) hold a page of a region (*hit), and a
 * merged one (the return)? */
static bool regions_hit(struct samepage *sp, uintptr_t start, size_t len, bool *hit)
{
	for (size_t ri = 0; ri < sp->nregions; ri++) {
		const struct region *r = &sp->regions[ri];
		size_t from, to;
		if (!region_clip(r, start, start + len, &from, &to))
			continue;
		*hit = true;
		for (size_t i = from; i < to; i++)
			if (r->meta[i].flags & PM_STABLE)
				return true;
	}
	return false;
}

/*
 * Catches up with the ranges the application unmapped or gave another
 * protection (u, seen by interpose.c) and, with dirty, with what else may
 * have changed: the unmapped pages forgotten, the regions read again from
 * the maps.  The maps are read once, and only where needed: for a merged
 * page unmapped (its pool page may still be mapped somewhere, a range
 * moved, and must not be punched), a region's page given another
 * protection, or dirty.  Else the unmapped pages are forgotten without
 * them: a JVM maps its heap's bookkeeping anew 4 KiB at a time, hundreds
 * of times a second, and a read of its 57,000 mappings at each of the
 * scanner's batches took a third of its process's time.  The mapping count,
 * which a change of the application's raises by two at most, is then
 * counted high until the next read, or a recount near the budget.
 */
void regions_catch_up(struct samepage *sp, const struct unmapped *u, size_t n, bool dirty)
{
	bool read = dirty;
	for (size_t k = 0; k < n && !read; k++) {
		bool hit = false, merged = regions_hit(sp, u[k].start, u[k].len, &hit);
		read = merged || (hit && u[k].keep);
	}
	struct maps m;
	bool have = read && maps_read(sp, &m) == 0;
	for (size_t k = 0; k < n; k++)
		if (!u[k].keep)
			forget_ranges(sp, u[k].start, u[k].len, have ? &m : NULL);
	if (have) {
		regions_refresh_from(sp, &m);
		lib_free(m.e);
	} else {
		sp->c.map_count += 2 * n;
	}
}

/* Pages [start, start+len) are no longer mergeable: forgotten, and the
 * regions left empty freed. */
void regions_forget(struct samepage *sp, uintptr_t start, size_t len)
{
	forget_ranges(sp, start, len, NULL);
}

static void forget_ranges(struct samepage *sp, uintptr_t start, size_t len, const struct maps *m)
{
	uintptr_t end = start + len;
	for (size_t ri = 0; ri < sp->nregions; ri++) {
		struct region *r = &sp->regions[ri];
		size_t from, to;
		if (!region_clip(r, start, end, &from, &to))
			continue;
		forget_pages(sp, r, from, to, m);
	}
	for (size_t ri = sp->nregions; ri-- > 0;)
		if (!sp->regions[ri].mergeable_pages)
			region_free(sp, ri);
}
