// SPDX-License-Identifier: MIT
/*
 * unmerge.c - giving merged pages their own memory back.
 *
 *  - break_cow(): one page becomes a private copy in place (its mapping
 *    stays a private mapping of the pool): for a merge undone at once;
 *  - unmerge_range(): MADV_UNMERGEABLE and run = 2, as in the kernel: the
 *    merged pages become private anonymous memory with their contents;
 *  - pool_mappings_to_anon(): the MADV_DONTNEED of merged memory (zeros),
 *    and the replacement unmerge uses (contents);
 *  - regions_keep(): pages whose mapping carries a promise no mapping of
 *    the pool can keep (wipe-on-fork), or that the C library discards
 *    behind our back (malloc's heaps, in merge-any), stay out of merging;
 *  - stale pools: pools of engines this process no longer runs.
 *
 * Why a replacement, not a write: a page copied at a write stays in the
 * pool's mapping, and MADV_DONTNEED there would bring the pool's page back
 * instead of zeros.  Only a real anonymous mapping behaves as the
 * application's memory did before merging.
 */
#include "internal.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ---- one page ---- */

/* Forgets that a page was merged (its mapping no longer counts). */
static void forget_merge(struct samepage *sp, struct page_meta *m)
{
	m->flags &= (uint8_t)~PM_STABLE;
	stable_put(sp, m->link);
	m->link = NIL;
	m->flags &= (uint8_t)~PM_ITEM;
	sp->c.rmap_items--;
	m->checksum = 0;
}

static int touch_page(struct region *r, uintptr_t a)
{
	int prot = region_prot_at(r, a);
	return prot < 0 ? -ENOMEM : guarded_touch(a, prot);
}

/* The kernel unshares KSM zero pages too: a fresh private page. */
static int unshare_zero_page(struct samepage *sp, struct region *r, size_t i)
{
	struct page_meta *m = &r->meta[i];
	uintptr_t a = region_addr(r, i);
	uint64_t pm = 0;
	m->flags &= (uint8_t)~PM_ZERO;
	sp->c.zero_pages--;
	if (prim_pagemap(a, 1, &pm) == 0 && !((pm & PM_PRESENT) && (pm & PM_EXCLUSIVE)))
		return touch_page(r, a);
	return 0;
}

int break_cow(struct samepage *sp, struct region *r, size_t i)
{
	struct page_meta *m = &r->meta[i];
	uintptr_t a = region_addr(r, i);
	uint64_t pm = 0;

	if (m->flags & PM_STABLE) {
		if (!(prim_pagemap(a, 1, &pm) == 0 && (pm & PM_PRESENT) && !(pm & PM_FILE))) {
			int err = touch_page(r, a);
			if (err)
				return err;
		}
		forget_merge(sp, m);
	} else if (m->flags & PM_ZERO) {
		return unshare_zero_page(sp, r, i);
	}
	return 0;
}

/* ---- mappings of the pool made anonymous again ---- */

/*
 * Replaces [s, e), a private mapping of the pool, by anonymous memory with
 * the same protection: with the same contents (copy), or zeros.
 *
 * The copy is made a chunk at a time, each inside its own merge window, so
 * no write is lost and none waits longer than one chunk's copy: the chunk
 * is copied into a scratch mapping, which mremap moves over it atomically.
 * The chunks come from one scratch mapping, so the kernel joins them again
 * into one mapping where they land.  A chunk with I/O in flight, or on the
 * calling thread's own stack, gets no window: its pages are unshared in
 * place instead (each written, so the kernel copies it), and stay in the
 * pool's mapping.  Returns 0, 1 if some
 * pages stayed in the pool's mapping that way, or -errno.
 */
#define UNMERGE_CHUNK (64 * PAGE_SIZE)
static int replace_chunked(uintptr_t s, uintptr_t e, int prot, bool copy, size_t chunk, bool small);

static int replace_with_anon(uintptr_t s, uintptr_t e, int prot, bool copy)
{
	return replace_chunked(s, e, prot, copy, UNMERGE_CHUNK, false);
}

/*
 * A block of anonymous memory the kernel maps with one huge page (a THP)
 * is replaced by a copy in small pages, in one chunk (one window), before
 * pages of it merge: the THP leaves the block whole and is freed at once.
 * A merge inside the THP would unmap part of it instead, and the kernel
 * frees a THP's unmapped pages only when it splits it, under memory
 * pressure: until then the memory merged is not available (the kernel's
 * KSM splits a THP it merges from).  The copy's scratch mapping takes no
 * huge page (scratch_off_huge()); the block keeps its mapping's flags.
 * 0, 1 if the window could not open (I/O in flight: nothing done), or
 * -errno.
 */
int huge_block_to_small(uintptr_t s, uintptr_t e, int prot)
{
	return replace_chunked(s, e, prot, true, e - s, true);
}

/*
 * The scratch mapping of a huge page's block (len at most a huge page)
 * takes small pages whatever THP's mode, without MADV_NOHUGEPAGE: that
 * flag would move in with the copy and stay on the application's memory
 * (it loses THP there, and the block no longer joins its neighbours: after
 * a registration read the flag back and run=2 the range stayed many
 * mappings and its mremap failed with EFAULT, RELIABILITY.md 57).  A mapping that
 * starts a page off the huge page alignment holds no aligned block, so the
 * kernel's faults give it small pages; PROT_NONE pages either side (from
 * *flank, SCRATCH_FLANKS pages in all) keep it from joining a neighbour.
 */
#define SCRATCH_FLANKS 3
static int scratch_off_huge(char **scratch, char **flank, size_t len)
{
	size_t pmd = prim_pmd_size();
	char *r;
	int err = prim_mmap((void **)&r, NULL, len + SCRATCH_FLANKS * PAGE_SIZE, PROT_NONE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (err)
		return err;
	char *s = r + PAGE_SIZE;
	if (((uintptr_t)s & (pmd - 1)) == 0)
		s += PAGE_SIZE;
	void *m;
	err = prim_mmap(&m, s, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
			-1, 0);
	if (err) {
		prim_munmap(r, len + SCRATCH_FLANKS * PAGE_SIZE);
		return err;
	}
	*scratch = s;
	*flank = r;
	return 0;
}

static int replace_chunked(uintptr_t s, uintptr_t e, int prot, bool copy, size_t chunk, bool small)
{
	size_t len = e - s, off = 0;
	void *m;
	int err, in_place = 0;

	if (!copy) {
		int locked = promise_map_locked(s, e);
		err = prim_mmap(&m, (void *)s, len, prot,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | locked, -1, 0);
		/* Near RLIMIT_MEMLOCK the kernel counts the new mapping before
		 * the locked one it replaces goes: unlocked first, locked by
		 * promise_apply() right after (RELIABILITY.md 56). */
		if (err == -EAGAIN && locked)
			err = prim_mmap(&m, (void *)s, len, prot,
					MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		if (!err) {
			guard_arm(s, e);
			promise_apply(s, e);
		}
		return err;
	}
	char *scratch, *flank = NULL;
	err = small ? scratch_off_huge(&scratch, &flank, len)
		    : prim_mmap((void **)&scratch, NULL, len, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (err)
		return err;
	for (; off < len && !err; off += chunk) {
		size_t n = len - off < chunk ? len - off : chunk;
		uintptr_t a = s + off;
		/* Not over this thread's own stack (merge-any merges stacks):
		 * it would wait for its own window. */
		int slot = guard_on_own_stack(a, a + n) ? -EBUSY : window_open(a, a + n, prot);
		if (slot == -EBUSY) {
			for (uintptr_t p = a; p < a + n && !err; p += PAGE_SIZE)
				err = guarded_touch(p, prot);
			in_place = 1;
			prim_munmap(scratch + off, n);
			continue;
		}
		if (slot < 0) {
			err = slot;
			break;
		}
		/* The range's memory policy first: the copy's pages follow it. */
		promise_policy_apply_at(a, a + n, (uintptr_t)scratch + off);
		if (!guarded_copy(scratch + off, (const void *)a, n))
			err = -EFAULT;
		else if (prot != (PROT_READ | PROT_WRITE))
			err = prim_mprotect(scratch + off, n, prot);
		/* Locked before it moves in: VM_LOCKED goes with the mapping.
		 * Near RLIMIT_MEMLOCK (the range's own pages still count):
		 * locked by promise_apply() once moved in, a moment later. */
		if (!err && promise_map_locked(a, a + n)) {
			err = prim_mlock(scratch + off, n, 0);
			if (err == -ENOMEM || err == -EAGAIN)
				err = 0;
		}
		if (!err) /* the range's flags before the move: it joins its neighbours */
			promise_apply_at(a, a + n, (uintptr_t)scratch + off);
		if (!err)
			err = prim_mremap(&m, scratch + off, n, n, MREMAP_MAYMOVE | MREMAP_FIXED,
					  (void *)a);
		if (err) {
			window_restore(slot, a, a + n, prot);
		} else {
			guard_arm(a, a + n);
			promise_apply(a, a + n);
		}
		window_close(slot);
		if (err)
			break; /* scratch + off is still ours: unmapped below */
	}
	if (off < len)
		prim_munmap(scratch + off, len - off);
	if (flank) { /* not what lies between: the copy's place may be mapped again */
		prim_munmap(flank, (size_t)(scratch - flank));
		prim_munmap(scratch + len, SCRATCH_FLANKS * PAGE_SIZE - (size_t)(scratch - flank));
	}
	return err ? err : in_place;
}

struct pool_id {
	dev_t dev;
	ino_t ino;
};

struct pieces {
	const struct pool_id *ids;
	size_t nids;
	uintptr_t start, end;
	struct prot_span *spans;
	size_t n, cap;
};

static bool is_pool_entry(const struct pieces *p, const struct map_entry *e)
{
	if (e->end <= p->start || e->start >= p->end || e->shared || e->anon)
		return false;
	for (size_t k = 0; k < p->nids; k++)
		if (e->dev == p->ids[k].dev && e->ino == p->ids[k].ino)
			return true;
	return false;
}

/* Collects the private mappings of the pools in [start, end), joining
 * neighbours of one protection (each merged page may be its own mapping:
 * one replacement covers them all). */
static int collect_piece(const struct map_entry *e, void *arg)
{
	struct pieces *p = arg;
	if (!is_pool_entry(p, e))
		return 0;
	uintptr_t s = e->start > p->start ? e->start : p->start;
	uintptr_t t = e->end < p->end ? e->end : p->end;
	if (p->n && p->spans[p->n - 1].end == s && p->spans[p->n - 1].prot == e->prot) {
		p->spans[p->n - 1].end = t;
		return 0;
	}
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct prot_span *ns = lib_realloc(p->spans, cap * sizeof(*ns));
		if (!ns)
			return -ENOMEM;
		p->spans = ns;
		p->cap = cap;
	}
	p->spans[p->n++] = (struct prot_span){s, t, e->prot};
	return 0;
}

/* Every private mapping of the given pools in [start, end) becomes
 * anonymous memory again (copy: same contents; else zeros).  Read from the
 * maps (pages copied at a write are covered too), then changed. */
static int pools_to_anon(const struct pool_id *ids, size_t nids, uintptr_t start, uintptr_t end,
			 bool copy, size_t *replaced)
{
	struct pieces p = {.ids = ids, .nids = nids, .start = start, .end = end};
	int err = prim_maps_walk_range(start, end, collect_piece, &p), in_place = 0;
	if (replaced)
		*replaced = p.n;
	for (size_t k = 0; k < p.n; k++) {
		int e = replace_with_anon(p.spans[k].start, p.spans[k].end, p.spans[k].prot, copy);
		if (e > 0)
			in_place = 1;
		else if (e && !err)
			err = e;
	}
	lib_free(p.spans);
	return err ? err : in_place;
}

/* Called inside engine_enter().  0, 1 if some pages stay (unshared) in
 * mappings of the pool, or -errno.  Each mapping replaced may split its
 * neighbours (+2 to the mapping budget's upper bound); the regions stand
 * (the same protection, anonymous), unless it failed: then the maps are
 * read again. */
int pool_mappings_to_anon(struct samepage *sp, uintptr_t start, uintptr_t end, bool copy)
{
	struct pool_id id = {sp->pool.dev, sp->pool.ino};
	size_t replaced = 0;
	int err = pools_to_anon(&id, 1, start, end, copy, &replaced);
	sp->c.map_count += 2 * replaced;
	if (err < 0)
		sp->maps_dirty = true;
	return err;
}

/*
 * After a replacement that failed partway (no memory for the scratch
 * mapping, vm.max_map_count, RLIMIT_AS or RLIMIT_MEMLOCK): which pages of
 * [start, end) still map sp's pool.  Those stay merged, their pool pages
 * theirs: forgotten, the pool page would be punched (or given to other
 * contents) under a page that still maps it, which would read zeros.
 * Asked in address order.  Maps that cannot be read: every page.
 */
void pooled_read(struct samepage *sp, uintptr_t start, uintptr_t end, struct pooled *pl)
{
	struct pool_id id = {sp->pool.dev, sp->pool.ino};
	struct pieces p = {.ids = &id, .nids = 1, .start = start, .end = end};
	pl->all = prim_maps_walk_range(start, end, collect_piece, &p) != 0;
	pl->spans = p.spans;
	pl->n = p.n;
	pl->read = true;
}

bool pooled_has(const struct pooled *pl, uintptr_t a)
{
	if (!pl->read)
		return false; /* nothing failed */
	if (pl->all)
		return true;
	/* The spans come in address order; the regions asked about do not
	 * (they are in the order they were registered). */
	size_t lo = 0, hi = pl->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (pl->spans[mid].end <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < pl->n && pl->spans[lo].start <= a;
}

void pooled_free(struct pooled *pl)
{
	lib_free(pl->spans);
	*pl = (struct pooled){0};
}

/* The pools of engines this process no longer runs (closed, or inherited
 * from a parent by fork): their merged pages are still private mappings
 * of the pool, and MADV_DONTNEED there must still read zeros.  A full
 * table forgets the pools nothing maps any more (an application that
 * reopens engines all day closes more than it could hold). */
#define MAX_STALE_POOLS 256
static struct pool_id stale_pools[MAX_STALE_POOLS];
static _Atomic int nstale;
static pthread_mutex_t stale_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * And the fork areas of the engines closed here that someone still reads:
 * a forked child's copy of its parent's engine (the parent's area: the
 * parent unpins its pool pages once every process forked from it has let
 * go of them), or a samepaged client's (in its ledger: the daemon reaps a
 * gone client's references by it; a domain's clients share one pool, so
 * one pool may have several).  This process's forks after the close,
 * which map the same pool pages, count there still (fork.c's handlers);
 * forgotten, a grandchild, or a child of a client that closed its engine,
 * read zeros once the pages were punched under it (RELIABILITY.md 53).
 * unmap: the page is the process's own mapping of it, let go with the
 * entry, once nothing here maps the pool.  With stale_lock held.
 */
#define MAX_KEPT_FORKS 256
static struct {
	struct pool_id pool;
	struct fork_shared *area;
	bool unmap;
} kept_forks[MAX_KEPT_FORKS];
static int nkept_forks;

/*
 * Where the stale pools are mapped (stale_extents_hit()), with stale_lock
 * held: read from the maps once and kept until something may have moved
 * them, so that a discard elsewhere reads nothing (in a forked child every
 * MADV_DONTNEED read the whole maps, 36 us against 2).  The extents cover
 * every private mapping of a stale pool, and more where there are more
 * mappings than the table holds: neighbours closer than a gap are joined,
 * the gap doubling until they fit.  Read again (stale_extents_read false)
 * after a pool is added, after pages of them were made anonymous, and
 * after every mremap, which can move them.
 */
#define MAX_STALE_EXTENTS 256
static struct {
	uintptr_t start, end;
} stale_extents[MAX_STALE_EXTENTS];
static size_t nstale_extents;
static uintptr_t stale_gap; /* extents closer than this are one */
static bool stale_extents_read;

static int mark_mapped_pool(const struct map_entry *e, void *arg)
{
	bool *mapped = arg;
	int n = atomic_load(&nstale);
	for (int k = 0; k < n && !e->anon && !e->shared; k++)
		if (e->dev == stale_pools[k].dev && e->ino == stale_pools[k].ino)
			mapped[k] = true;
	return 0;
}

/* With stale_lock held.  Reads the maps, allocates nothing (the fork
 * handler may call it): forgets the pools nothing maps any more, and the
 * fork areas of those (no fork can map their pages now). */
static void stale_pools_prune(void)
{
	bool mapped[MAX_STALE_POOLS] = {false};
	if (prim_maps_walk(0, mark_mapped_pool, mapped) < 0)
		return;
	int n = atomic_load(&nstale), kept = 0, live = 0;
	for (int j = 0; j < nkept_forks; j++) {
		int k = 0;
		while (k < n && !(stale_pools[k].dev == kept_forks[j].pool.dev &&
				  stale_pools[k].ino == kept_forks[j].pool.ino))
			k++;
		if (k == n || mapped[k]) /* (a pool not listed: kept, to be safe) */
			kept_forks[live++] = kept_forks[j];
		else if (kept_forks[j].unmap)
			prim_munmap(kept_forks[j].area, PAGE_SIZE);
	}
	nkept_forks = live;
	for (int k = 0; k < n; k++)
		if (mapped[k])
			stale_pools[kept++] = stale_pools[k];
	atomic_store(&nstale, kept);
}

/* An engine's pool this process no longer runs, and the fork area its
 * forks must still count in (or NULL). */
void stale_pool_add(dev_t dev, ino_t ino, struct fork_shared *area, bool unmap)
{
	fork_held_lock(&stale_lock);
	int n = atomic_load(&nstale);
	bool known = false;
	for (int k = 0; k < n && !known; k++)
		known = stale_pools[k].dev == dev && stale_pools[k].ino == ino;
	if ((!known && n == MAX_STALE_POOLS) || (area && nkept_forks == MAX_KEPT_FORKS)) {
		stale_pools_prune();
		n = atomic_load(&nstale);
	}
	if (!known && n < MAX_STALE_POOLS) {
		stale_pools[n] = (struct pool_id){dev, ino};
		atomic_store(&nstale, n + 1);
		stale_extents_read = false;
	}
	for (int j = 0; area && j < nkept_forks; j++)
		if (kept_forks[j].area == area)
			area = NULL; /* counted there already */
	if (area && nkept_forks < MAX_KEPT_FORKS) {
		kept_forks[nkept_forks++] = (typeof(kept_forks[0])){{dev, ino}, area, unmap};
		area = NULL;
	}
	fork_held_unlock(&stale_lock);
	if (area && unmap) /* no room: cannot be counted (256 closed engines' pools all mapped) */
		prim_munmap(area, PAGE_SIZE);
}

/* fork, with stale_lock held (stale_pools_lock()): a fork begins... */
void stale_forks_started(void)
{
	for (int j = 0; j < nkept_forks; j++)
		atomic_fetch_add(&kept_forks[j].area->started, 1);
}

/* ...and, in the child, it is one of the processes mapping the pages. */
void stale_forks_register(pid_t pid)
{
	for (int j = 0; j < nkept_forks; j++) {
		struct fork_shared *f = kept_forks[j].area;
		uint32_t r = atomic_fetch_add(&f->registered, 1);
		if (r < MAX_FORK_CHILDREN)
			atomic_store(&f->pids[r], pid);
	}
}

/* fork: the prepare handler holds the lock across the fork (a child
 * whose copy was held by another thread could never add its pools). */
void stale_pools_lock(void)
{
	pthread_mutex_lock(&stale_lock);
}

void stale_pools_unlock(void)
{
	pthread_mutex_unlock(&stale_lock);
}

/* A full table: the gap doubles, and the extents it now joins are one. */
static void stale_extents_coarsen(void)
{
	while (nstale_extents == MAX_STALE_EXTENTS) {
		stale_gap = stale_gap ? stale_gap * 2 : PAGE_SIZE;
		size_t k = 0;
		for (size_t i = 1; i < nstale_extents; i++)
			if (stale_extents[i].start - stale_extents[k].end <= stale_gap)
				stale_extents[k].end = stale_extents[i].end;
			else
				stale_extents[++k] = stale_extents[i];
		nstale_extents = k + 1;
	}
}

static int note_stale_extent(const struct map_entry *e, void *arg)
{
	(void)arg;
	struct pieces p = {.ids = stale_pools,
			   .nids = (size_t)atomic_load(&nstale),
			   .start = 0,
			   .end = UINTPTR_MAX};
	if (!is_pool_entry(&p, e))
		return 0;
	/* The maps come in address order. */
	if (nstale_extents == MAX_STALE_EXTENTS)
		stale_extents_coarsen();
	size_t n = nstale_extents;
	if (n && e->start - stale_extents[n - 1].end <= stale_gap) {
		stale_extents[n - 1].end = e->end;
	} else {
		stale_extents[n].start = e->start;
		stale_extents[n].end = e->end;
		nstale_extents = n + 1;
	}
	return 0;
}

/* Whether [start, end) may hold a page of a stale pool. */
static bool stale_extents_hit(uintptr_t start, uintptr_t end)
{
	if (!stale_extents_read) {
		nstale_extents = 0;
		stale_gap = 0;
		if (prim_maps_walk(0, note_stale_extent, NULL) < 0)
			return true; /* unread: every range may */
		stale_extents_read = true;
	}
	for (size_t k = 0; k < nstale_extents; k++)
		if (stale_extents[k].start < end && start < stale_extents[k].end)
			return true;
	return false;
}

/* After an mremap, which may have moved pages of the stale pools. */
void stale_pools_moved(void)
{
	if (!atomic_load(&nstale))
		return;
	fork_held_lock(&stale_lock);
	stale_extents_read = false;
	fork_held_unlock(&stale_lock);
}

static int stale_pools_to_anon(uintptr_t start, uintptr_t end, bool copy)
{
	if (!atomic_load(&nstale))
		return 0;
	int err = 0;
	fork_held_lock(&stale_lock);
	if (stale_extents_hit(start, end)) {
		err = pools_to_anon(stale_pools, (size_t)atomic_load(&nstale), start, end, copy,
				    NULL);
		stale_extents_read = false;
	}
	fork_held_unlock(&stale_lock);
	return err;
}

int stale_pools_discard(uintptr_t start, uintptr_t end)
{
	return stale_pools_to_anon(start, end, false);
}

/* Their merged pages in [start, end) become anonymous copies: the kernel
 * refuses MADV_WIPEONFORK on a mapping of a file. */
int stale_pools_keep(uintptr_t start, uintptr_t end)
{
	return stale_pools_to_anon(start, end, true);
}

/* A copy of a whole range touches every page of it (an untouched page
 * too): ranges past this size are copied run by run (and may stay several
 * mappings), not whole (merge-any registers every private mapping, a
 * sanitizer's gigabytes of shadow among them). */
#define WHOLE_COPY_MAX (64UL << 20)

/* The protection of [start, end) if it is all mapped with one, else -1;
 * and in how many mappings. */
struct one_prot {
	uintptr_t start, end, next;
	int prot, mappings;
};

static int same_prot(const struct map_entry *e, void *arg)
{
	struct one_prot *o = arg;
	if (e->end <= o->start || e->start >= o->end)
		return 0;
	if (e->start > o->next || (o->prot >= 0 && e->prot != o->prot)) {
		o->prot = -1; /* a hole, or another protection */
		return 1;
	}
	o->prot = e->prot;
	o->next = e->end;
	o->mappings++;
	return 0;
}

static int range_prot(uintptr_t start, uintptr_t end, int *mappings)
{
	struct one_prot o = {start, end, start, -1, 0};
	if (prim_maps_walk_range(start, end, same_prot, &o) != 0 || o.next < end)
		return -1;
	if (mappings)
		*mappings = o.mappings;
	return o.prot;
}

static int piece_seen(const struct map_entry *e, void *arg)
{
	return is_pool_entry(arg, e);
}

/* Does p's range still map one of p's pools, or (split) is it still
 * several mappings of one protection? */
static bool pieces_left(struct pieces *p, bool split)
{
	int mappings = 0;
	return prim_maps_walk_range(p->start, p->end, piece_seen, p) == 1 ||
	       (split && range_prot(p->start, p->end, &mappings) >= 0 && mappings > 1);
}

/* p's range, with every page's contents, as one anonymous mapping of
 * protection prot again, if any page of it maps one of p's pools or it is
 * split (mremap needs one mapping: never leave pages in a pool's, nor the
 * range split, retried while I/O in flight keeps a chunk where it is).  1
 * if it was replaced, 0 if there was no need, or -errno. */
static int pieces_to_one_mapping(struct pieces *p, int prot, bool split)
{
	int err = 0, tries = 0;
	bool left = false;
	if (!split && prim_maps_walk_range(p->start, p->end, piece_seen, p) != 1)
		return 0;
	for (;;) {
		err = replace_with_anon(p->start, p->end, prot, true);
		if (err <= 0 || !(left = pieces_left(p, split)) || ++tries == 1000)
			break;
		sched_yield(); /* the I/O that kept a chunk in place may end */
	}
	return err < 0 ? err : left ? -EBUSY : 1;
}

/* Before the application moves r[from, to) with mremap: the range was one
 * mapping when the application made it, and must be one again (merging
 * split it), with its contents and no pool mapping.  Called inside
 * engine_enter(). */
int unmerge_for_mremap(struct samepage *sp, struct region *r, size_t from, size_t to)
{
	struct pool_id id = {sp->pool.dev, sp->pool.ino};
	struct pieces p = {
	    .ids = &id, .nids = 1, .start = region_addr(r, from), .end = region_addr(r, to)};
	int err = 0, prot = range_prot(p.start, p.end, NULL);
	struct pooled pl = {0};
	if (prot >= 0 && (err = pieces_to_one_mapping(&p, prot, false)) > 0)
		err = 0;
	if (err < 0)
		pooled_read(sp, p.start, p.end, &pl); /* the wrapper refuses the mremap */
	sp->maps_dirty = true;
	for (size_t i = from; i < to; i++)
		if ((r->meta[i].flags & PM_STABLE) && !pooled_has(&pl, region_addr(r, i)))
			forget_merge(sp, &r->meta[i]);
	pooled_free(&pl);
	return err;
}

/* Before the application moves [start, end) with mremap, after the
 * engines did their part (unmerge_for_mremap): if it has one protection
 * but is still several mappings (pages that map a pool of an engine since
 * closed, or copies of runs unmerged one by one while the range had
 * several protections, each with its own anon_vma), one anonymous mapping
 * with the pages' contents, as the kernel would have left it.  1 if it was
 * replaced, 0 if not, or -errno. */
int mremap_one_mapping(uintptr_t start, uintptr_t end)
{
	int mappings = 0, prot = range_prot(start, end, &mappings);
	if (prot < 0 || end - start > WHOLE_COPY_MAX)
		return 0; /* not one mapping for the application either, or big */
	fork_held_lock(&stale_lock);
	struct pieces p = {
	    .ids = stale_pools, .nids = (size_t)atomic_load(&nstale), .start = start, .end = end};
	int err = pieces_to_one_mapping(&p, prot, mappings > 1);
	fork_held_unlock(&stale_lock);
	return err;
}

/* ---- ranges ---- */

/* [start, end), where some pages map sp's pool, as anonymous memory with
 * its contents: in one copy if it has one protection, so that it is one
 * mapping again (copies of each merged run could not join their
 * neighbours: their pages are another anon_vma's), else run by run.  0, 1
 * if some pages stay unshared in the pool's mapping, or -errno. */
static int range_to_anon(struct samepage *sp, uintptr_t start, uintptr_t end)
{
	struct pool_id id = {sp->pool.dev, sp->pool.ino};
	struct pieces p = {.ids = &id, .nids = 1, .start = start, .end = end};
	if (prim_maps_walk_range(start, end, piece_seen, &p) != 1)
		return 0;
	int prot = range_prot(start, end, NULL);
	sp->maps_dirty = true;
	if (prot < 0 || end - start > WHOLE_COPY_MAX)
		return pool_mappings_to_anon(sp, start, end, true);
	return replace_with_anon(start, end, prot, true);
}

/* MADV_UNMERGEABLE and run = 2 on r[from, to): the merged pages become
 * private anonymous memory with their contents, as in the kernel. */
int unmerge_range(struct samepage *sp, struct region *r, size_t from, size_t to)
{
	int err = range_to_anon(sp, region_addr(r, from), region_addr(r, to));
	bool anon = err == 0;
	struct pooled pl = {0};
	if (err > 0)
		err = 0; /* unshared in place: private, in the pool's mapping */
	else if (err < 0)
		pooled_read(sp, region_addr(r, from), region_addr(r, to), &pl);
	for (size_t i = from; i < to; i++) {
		struct page_meta *m = &r->meta[i];
		if (anon)
			m->flags &= (uint8_t)~PM_POOLMAP;
		if (m->flags & PM_STABLE) {
			if (!pooled_has(&pl, region_addr(r, i))) /* else still merged */
				forget_merge(sp, m);
		} else if (m->flags & PM_ZERO) {
			int e = unshare_zero_page(sp, r, i);
			if (e && !err)
				err = e;
		}
	}
	pooled_free(&pl);
	return err;
}

/* Every merged page of [start, start+len) gets a private anonymous copy
 * back; with keep, the range's pages never merge again (they are still
 * scanned and counted, as the kernel scans such VMAs). */
static int unmerge_span(struct samepage *sp, uintptr_t start, size_t len, bool keep)
{
	int err = 0;
	for (size_t ri = 0; ri < sp->nregions; ri++) {
		struct region *r = &sp->regions[ri];
		size_t from, to;
		if (!region_clip(r, start, start + len, &from, &to))
			continue;
		int e = unmerge_range(sp, r, from, to);
		if (e && !err)
			err = e;
		/* (A page still merged, its unmerge failed, stays so, kept out
		 * once a write or a discard has made it its own again.) */
		for (size_t i = from; keep && i < to; i++)
			if (!(r->meta[i].flags & PM_OFF)) {
				if (!(r->meta[i].flags & PM_STABLE))
					remove_rmap_item_from_tree(sp, r->base_id + (uint32_t)i);
				r->meta[i].flags |= PM_KEEP;
			}
	}
	return err;
}

/* MADV_UNMERGEABLE on [start, start+len): a private copy for every merged
 * page, then the pages are forgotten.  Called inside engine_enter(). */
int regions_unmerge(struct samepage *sp, uintptr_t start, size_t len)
{
	int err = unmerge_span(sp, start, len, false);
	if (err < 0)
		return err; /* as the kernel's: the range stays mergeable */
	regions_forget(sp, start, len);
	guard_disarm(start, start + len);
	return err;
}

/* run = 2 in this process.  Called inside engine_enter().  0, or the first
 * error of an unmerge that failed: its pages stay merged (RELIABILITY.md
 * 52), as the kernel's stay when its unmerge fails. */
int unmerge_all(struct samepage *sp)
{
	int err = 0;
	for (size_t ri = 0; ri < sp->nregions; ri++) {
		struct region *r = &sp->regions[ri];
		int e = unmerge_range(sp, r, 0, r->npages);
		if (e < 0 && !err)
			err = e;
		/* run=2 frees every rmap item; the ranges stay registered. */
		for (size_t i = 0; i < r->npages; i++) {
			struct page_meta *m = &r->meta[i];
			if (m->flags & PM_STABLE)
				continue; /* still merged */
			remove_rmap_item_from_tree(sp, r->base_id + (uint32_t)i);
			if (m->flags & PM_ITEM)
				sp->c.rmap_items--;
			m->flags &= PM_OFF | PM_KEEP; /* kept out still: wipe-on-fork... */
			m->age = m->remaining_skips = 0;
			m->checksum = 0;
		}
	}
	sp->c.full_scans = 0;
	/* No full scan may come to count the mappings gone (and their slab
	 * in metadata_bytes): counted now. */
	regions_count_maps(sp);
	sp->unmerge_epoch = atomic_load(&sp->dom->unmerge_epoch);
	sp->scan_running = false;
	sp->cur_region = sp->cur_index = 0;
	return err;
}

/* Pages of [start, start+len) keep their own mapping from now on: merged
 * ones get a private anonymous copy back, and none merges again.  Called
 * inside engine_enter(). */
int regions_keep(struct samepage *sp, uintptr_t start, size_t len)
{
	return unmerge_span(sp, start, len, true);
}

/* The VmFlags that say what the application asked of a mapping, and the
 * promise each makes.  Those of PROMISE_KEEPS keep its pages out of
 * merging (keep_promised()): wipe-on-fork cannot be set on a mapping of
 * the pool; a mapping a merge puts at the bottom of a stack does not grow
 * down (neither a mapping of the pool nor the new anonymous memory of
 * locked zero pages is VM_GROWSDOWN: the next deeper call died with
 * SIGSEGV, RELIABILITY.md 95); no merge may map sealed memory (mseal by a
 * call no wrapper saw, RELIABILITY.md 113). */
static const struct {
	const char *flag;
	unsigned promise;
} vm_promises[] = {
    {" dc", PROMISE_DONTFORK}, {" dd", PROMISE_DONTDUMP},   {" nh", PROMISE_NOHUGEPAGE},
    {" hg", PROMISE_HUGEPAGE}, {" wf", PROMISE_WIPEONFORK}, {" gd", PROMISE_GROWSDOWN},
    {" sl", PROMISE_SEALED},
};

static int remember_flags(const struct map_entry *m, const char *flags, void *arg)
{
	const uintptr_t *k = arg; /* the range registered */
	/* Only the application's own anonymous mappings say what it asked:
	 * a merged page's mapping of a pool has the flags the merge gave it
	 * (its promises, already known, and MADV_NOHUGEPAGE of its own, which
	 * taken for the application's would stay on the page's copy at the
	 * unmerge and split the range, and an mremap of it would fail). */
	if (!m->anon || m->shared || m->end <= k[0] || m->start >= k[1])
		return 0;
	uintptr_t from = m->start > k[0] ? m->start : k[0];
	uintptr_t to = m->end < k[1] ? m->end : k[1];
	for (size_t i = 0; i < sizeof(vm_promises) / sizeof(vm_promises[0]); i++)
		if (strstr(flags, vm_promises[i].flag))
			promise_set(from, to, vm_promises[i].promise, true);
	/* A lock the wrappers saw (mlock, mlock2, mlockall) is promised as
	 * the application asked it; the maps may show the library's own
	 * doing there (locked zero pages merge into mappings locked on fault,
	 * merge.c), which taken for the application's would lock copies on
	 * fault in part, split the range and fail its mremap (RELIABILITY.md
	 * 54).  Only a lock no wrapper saw is read from them. */
	uintptr_t ls, le;
	bool seen = promise_find(from, to, PROMISE_LOCKED, &ls, &le) && ls <= from && le >= to;
	if (!seen && strstr(flags, " lo"))
		promise_set(from, to, PROMISE_LOCKED, true);
	if (!seen && strstr(flags, " lf"))
		promise_set(from, to, PROMISE_ONFAULT, true);
	return 0;
}

/* The pages of [start, end) that a promise of flags keeps out of merging:
 * kept out of sp's regions. */
static void keep_promised(struct samepage *sp, uintptr_t start, uintptr_t end, unsigned flags)
{
	uintptr_t p = start, fs, fe;
	while (p < end && promise_find(p, end, flags, &fs, &fe)) {
		uintptr_t s = fs > p ? fs : p, e = fe < end ? fe : end;
		regions_keep(sp, s, e - s);
		p = e;
	}
}

/* What the application asked of the mappings of a range being registered
 * (VmFlags in /proc/self/smaps, vm_promises): remembered, so that every
 * mapping a merge puts in place gets it again (promise.c); and the pages
 * a promise keeps out of merging are kept out: those of the maps, and
 * those the wrappers promised (the application's own userfaultfd,
 * wipe-on-fork that its madvise is about to set: the wrapper promises it
 * first, and the smaps read may come before the kernel sets it, finding
 * 47; a protection key other than the default; a seal). */
void keep_protected_vmas(struct samepage *sp, uintptr_t start, uintptr_t end)
{
	uintptr_t range[2] = {start, end};
	prim_vmflags_walk(remember_flags, range);
	keep_promised(sp, start, end, PROMISE_KEEPS);
}

/* Whether [s, e) is promised kept out and sp keeps every page of it out. */
static bool altstack_kept(struct samepage *sp, uintptr_t s, uintptr_t e)
{
	uintptr_t fs, fe;
	if (!promise_find(s, e, PROMISE_ALTSTACK, &fs, &fe) || fs > s || fe < e)
		return false;
	for (size_t ri = 0; ri < sp->nregions; ri++) {
		struct region *r = &sp->regions[ri];
		size_t from, to;
		if (!region_clip(r, s, e, &from, &to))
			continue;
		for (size_t i = from; i < to; i++)
			if (!(r->meta[i].flags & (PM_KEEP | PM_OFF)))
				return false;
	}
	return true;
}

/* A signal stack's pages (RELIABILITY.md 97): promised out of merging,
 * for the engines and the registrations to come too, and kept out of
 * sp's regions (its merged pages there get private copies: in place, as
 * window_open() opens no window over a signal stack). */
static void keep_altstack(uintptr_t s, uintptr_t e, void *arg)
{
	if (altstack_kept(arg, s, e)) /* a stack may be looked at again (altstack_each()) */
		return;
	promise_set(s, e, PROMISE_ALTSTACK, true);
	regions_keep(arg, s, e - s);
}

/* Memory merges found sealed (merge.c's note_sealed()): kept out of sp's
 * regions, at the start of a batch, inside engine_enter(). */
void keep_sealed(struct samepage *sp)
{
	if (!sp->sealed_found)
		return;
	sp->sealed_found = false;
	for (size_t ri = 0; ri < sp->nregions; ri++) {
		const struct region *r = &sp->regions[ri];
		keep_promised(sp, r->start, region_addr(r, r->npages), PROMISE_SEALED);
	}
}

/* The signal stacks sigaltstack() noted since sp last looked (guard.c):
 * at the start of a batch, inside engine_enter(). */
void keep_altstacks(struct samepage *sp)
{
	altstack_each(&sp->altstack_seen, keep_altstack, sp);
}

/* The application unregistered [start, start+len) from its own
 * userfaultfd, or undid MADV_WIPEONFORK there: its pages merge again,
 * unless another reason keeps them (the other of the two, a malloc
 * heap), and merge windows may register them again.  Called inside
 * engine_enter(). */
void regions_unkeep(struct samepage *sp, uintptr_t start, size_t len)
{
	const unsigned still = PROMISE_KEEPS | PROMISE_MALLOC;
	for (size_t ri = 0; ri < sp->nregions; ri++) {
		struct region *r = &sp->regions[ri];
		size_t from, to;
		if (!region_clip(r, start, start + len, &from, &to))
			continue;
		for (size_t i = from; i < to; i++)
			if ((r->meta[i].flags & PM_KEEP) &&
			    !(promise_flags(region_addr(r, i)) & still))
				r->meta[i].flags &= (uint8_t)~PM_KEEP;
		regions_arm(region_addr(r, from), region_addr(r, to));
	}
}
