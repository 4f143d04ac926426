// SPDX-License-Identifier: MIT
/*
 * mergeany.c - merge-any: every private anonymous mapping of the process
 * is mergeable, present and future, as prctl(PR_SET_MEMORY_MERGE) makes
 * them for the kernel's KSM (6.4+).
 *
 * At the start of a full scan after a mapping the wrappers saw, and every
 * 10 s (1 s before Linux 6.11) for those they did not, the maps are read
 * and the private anonymous mappings not registered yet are registered,
 * but:
 *
 *  - the library's own memory (alloc.c), which it writes inside its merge
 *    windows;
 *  - ranges the application made MADV_UNMERGEABLE since (PROMISE_UNMERGEABLE);
 *  - PROT_NONE reservations (registered when they become accessible: the
 *    mprotect is seen) and mappings larger than 4 TiB (sanitizers' shadow);
 *  - the C library's malloc memory, registered but kept out of merging and
 *    counted (pages_kept_malloc): malloc maps, unmaps, shrinks and grows it
 *    with its own system calls, which the library cannot see:
 *      - the heaps of its secondary arenas: it shrinks them with its own
 *        madvise(MADV_DONTNEED) and then trusts the pages to read zeros; a
 *        merged page would read its pool page back;
 *      - the main arena's heap, which it shrinks and grows with brk, and
 *        the blocks it maps by themselves (at or above its mmap
 *        threshold), which free() unmaps and the next malloc() maps again,
 *        often at the same address: a merge whose window such a pair fell
 *        into mapped the pool over the new memory after it was written,
 *        and the write was lost (RELIABILITY.md 41: a Python worker's
 *        buffer read one page of the previous task's).  A merge cannot
 *        tell: the mapping it replaces is gone without a trace.
 *        Except the blocks, when the program's free() and realloc() are
 *        the library's (merge_any_blocks): only those unmap a block, and
 *        they take the address-space lock shared as munmap() does, so no
 *        block goes while a batch of merges runs (interpose.c).  Found
 *        otherwise from a mapping's start, block after block, which
 *        misses some (RELIABILITY.md 42);
 *      - for the same reason, the stacks of the threads it makes
 *        (thread_stack()), which it unmaps when its cache of them is full.
 */
#include "internal.h"

#include <sys/mman.h>

#define MAX_MAPPING (4ULL << 40)

struct anon_ranges {
	struct prot_span *r;
	size_t n, cap;
	bool failed;
};

static void add_range(struct anon_ranges *a, uintptr_t s, uintptr_t e, int prot)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		struct prot_span *n = lib_realloc(a->r, cap * sizeof(*n));
		if (!n) {
			a->failed = true;
			return;
		}
		a->r = n;
		a->cap = cap;
	}
	a->r[a->n++] = (struct prot_span){s, e, prot};
}

static int collect_anon(const struct map_entry *e, void *arg)
{
	struct anon_ranges *a = arg;
	if (e->anon && !e->shared && e->prot != PROT_NONE && e->end - e->start <= MAX_MAPPING)
		add_range(a, e->start, e->end, e->prot);
	return 0;
}

/* Is [s, e) registered already (every page mergeable or kept)? */
/* Is [s, e) registered, and mergeable?  A part of a region that was
 * unmapped, then mapped again (mmap(MAP_FIXED) inside it, or an mmap the
 * kernel put in the hole), is registered but off (PM_OFF): new memory,
 * which merge-any makes mergeable as the kernel does a new VMA.  (What
 * the application made unmergeable the caller has left out.) */
static bool registered(struct samepage *sp, uintptr_t s, uintptr_t e)
{
	for (size_t ri = 0; ri < sp->nregions; ri++) {
		const struct region *r = &sp->regions[ri];
		if (r->start > s || e > region_addr(r, r->npages))
			continue;
		if (r->mergeable_pages == r->npages)
			return true;
		for (uintptr_t a = s; a < e; a += PAGE_SIZE)
			if (r->meta[(a - r->start) >> PAGE_SHIFT].flags & PM_OFF)
				return false;
		return true;
	}
	return false;
}

/* glibc's heap_info, at the start of every heap of a secondary arena: a
 * mapping aligned to HEAP_MAX_SIZE (64 MiB on 64-bit systems) whose arena
 * pointer points just after it (the arena's first heap) or into the head
 * of another such heap. */
#define MALLOC_HEAP_MAX (64UL << 20)
struct heap_head {
	uintptr_t ar_ptr, prev;
	size_t size, mprotect_size;
};

static bool heap_head_ok(uintptr_t at, struct heap_head *h)
{
	return guarded_copy(h, (const void *)at, sizeof(*h)) && h->size >= PAGE_SIZE &&
	       h->size <= MALLOC_HEAP_MAX && h->mprotect_size >= h->size &&
	       h->mprotect_size <= MALLOC_HEAP_MAX;
}

static bool malloc_heap(uintptr_t start, int prot)
{
	struct heap_head h, first;
	if (start % MALLOC_HEAP_MAX || !(prot & PROT_WRITE) || !heap_head_ok(start, &h))
		return false;
	if (h.ar_ptr > start && h.ar_ptr < start + 256)
		return true; /* the arena's first heap: the arena follows */
	uintptr_t head = h.ar_ptr - h.ar_ptr % MALLOC_HEAP_MAX;
	return head != start && h.ar_ptr - head < 256 && heap_head_ok(head, &first) &&
	       first.ar_ptr == h.ar_ptr;
}

/* A block malloc mapped by itself, at p (in a mapping malloc made: read
 * and write, nothing else; not [vsyscall], execute-only, whose read is a
 * SIGSEGV the library's own threads do not guard): its chunk's header
 * (prev_size 0, then the size with IS_MMAPPED, 2) says the mapping's
 * length, which fits before e.  Its length, or 0. */
#define RW (PROT_READ | PROT_WRITE)
static size_t malloc_block(uintptr_t p, uintptr_t e)
{
	size_t h[2];
	if (!guarded_copy(h, (const void *)p, sizeof(h)) || h[0] ||
	    (h[1] & CHUNK_FLAGS) != CHUNK_IS_MMAPPED)
		return 0;
	size_t len = h[1] & ~CHUNK_FLAGS;
	return len && len % PAGE_SIZE == 0 && len <= e - p ? len : 0;
}

/* [s, e) is malloc's: kept out (its pages registered since too). */
static void keep_malloc(struct samepage *sp, uintptr_t s, uintptr_t e)
{
	promise_set(s, e, PROMISE_MALLOC, true);
	regions_keep(sp, s, e - s);
}

/* A thread's stack as the C library maps it (pthread_create), which it
 * unmaps itself once its cache of stacks is full, the next thread's stack
 * often at the same address: the thread's descriptor sits at its top and,
 * on x86-64, starts with a header whose first and third words point at it
 * (tcbhead_t: tcb, dtv, self).  The top two pages are looked at, of
 * read-write mappings up to 64 MiB (the guest RAM of a VM is no stack). */
static bool thread_stack(struct prot_span m)
{
#if defined(__x86_64__)
	uintptr_t w[34]; /* 256 bytes a read, and the two words past them */
	if (m.prot != RW || m.end - m.start < 2 * PAGE_SIZE || m.end - m.start > (64UL << 20))
		return false;
	for (uintptr_t at = m.end - 256; at >= m.end - 2 * PAGE_SIZE; at -= 256) {
		size_t n = at + sizeof(w) <= m.end ? sizeof(w) : 256;
		if (!guarded_copy(w, (const void *)at, n))
			return false;
		for (size_t i = 0; i + 2 < n / sizeof(w[0]); i += 2)
			if (w[i] == at + i * sizeof(w[0]) && w[i + 2] == w[i])
				return true;
	}
#else
	(void)m;
#endif
	return false;
}

/* Set when the program's free() and realloc() are the library's, in front
 * of the C library's (interpose.c): malloc's blocks merge. */
bool merge_any_blocks;

/* Keeps out the blocks malloc mapped that follow each other from p in the
 * mapping m (unless they merge). */
static void keep_malloc_blocks(struct samepage *sp, uintptr_t p, struct prot_span m)
{
	for (size_t n;
	     !merge_any_blocks && p < m.end && m.prot == RW && (n = malloc_block(p, m.end)); p += n)
		keep_malloc(sp, p, p + n);
}

/* Registers what merge-any makes mergeable and is not registered yet.
 * Called inside engine_enter(). */
void merge_any_refresh(struct samepage *sp)
{
	struct anon_ranges a = {0};
	bool added = false;
	sp->maps_reads++;
	if (prim_maps_walk(0, collect_anon, &a) < 0 || a.failed) {
		lib_free(a.r);
		return;
	}
	for (size_t k = 0; k < a.n; k++) {
		uintptr_t s = a.r[k].start, e = a.r[k].end, os, oe;
		bool grew = false;
		while (s < e) {
			/* The part before the next range of the library's own. */
			uintptr_t t = e;
			if (own_find(s, e, &os, &oe)) {
				t = os > s ? os : s;
				if (os <= s) {
					s = oe < e ? oe : e;
					continue;
				}
			}
			for (uintptr_t p = s, us, ue; p < t;) {
				/* and not what the application made unmergeable */
				uintptr_t q = t;
				if (promise_find(p, t, PROMISE_UNMERGEABLE, &us, &ue))
					q = us > p ? us : p;
				if (q > p && !registered(sp, p, q) && !regions_add_anon(sp, p, q)) {
					added = grew = true;
					keep_malloc_blocks(sp, p, a.r[k]);
				}
				p = q < t ? (ue < t ? ue : t) : t;
			}
			s = t;
		}
		/* A block mapped where an older one was (its range registered
		 * still) is new only past the old one's end: its header is at
		 * the mapping's start, or after other blocks there. */
		if (grew)
			keep_malloc_blocks(sp, a.r[k].start, a.r[k]);
		if (grew && thread_stack(a.r[k]))
			keep_malloc(sp, a.r[k].start, a.r[k].end);
		if (malloc_heap(a.r[k].start, a.r[k].prot))
			keep_malloc(sp, a.r[k].start, a.r[k].start + MALLOC_HEAP_MAX);
	}
	uintptr_t hs, he;
	if (prim_brk_range(&hs, &he) == 0 && he > hs)
		keep_malloc(sp, hs & ~(PAGE_SIZE - 1), (he + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1));
	if (added) {
		regions_refresh(sp);
		keep_protected_vmas(sp, 0, UINTPTR_MAX);
	}
	lib_free(a.r);
}
