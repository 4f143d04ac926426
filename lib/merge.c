// SPDX-License-Identifier: MIT
/*
 * merge.c - replacing duplicate pages by the pool's page, without losing a
 * write.
 *
 * The merge of a run of pages (consecutive addresses onto consecutive pool
 * pages) is, as in the kernel's write_protect_page() + replace_page():
 *
 *   1. open a merge window over the run (guard.c): from here a writer
 *      waits until the window closes, then its write happens again (on
 *      whatever the page then is);
 *   2. compare every page with its pool page, now that it cannot change;
 *   3. mmap the pool pages MAP_PRIVATE|MAP_FIXED over the pages that are
 *      equal (one mmap per equal sub-run): the kernel frees the anonymous
 *      pages at once; give the protection back to those that are not;
 *   4. close the window and wake the writers.
 *
 * The writers' retried writes then go to the pool mapping, where the kernel
 * copies the page for them (copy-on-write): nothing is lost.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

/* Sorts a batch's requests by address.  Insertion sort: a batch comes
 * nearly sorted (pages are scanned in order), and the C library's qsort
 * may allocate, which the scanner must not do (alloc.c). */
static void sort_reqs(struct merge_req *q, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		struct merge_req x = q[i];
		size_t j = i;
		for (; j > 0 && q[j - 1].addr > x.addr; j--)
			q[j] = q[j - 1];
		q[j] = x;
	}
}

/* The mapping budget: every merged run can split one anonymous VMA into
 * three (+2), and costs less next to a mapping it joins or already splits;
 * the count is that upper bound, made exact from the maps when it is near
 * the limit and merges happened since the last count.  Keep 1/8 of
 * vm.max_map_count for the application. */
static bool map_budget_allows(struct samepage *sp)
{
	uint64_t max = sp->c.max_map_count;
	if (sp->c.map_count + 2 <= max - max / 8)
		return true;
	/* The count may be high (regions_catch_up() adds two for each change
	 * of the application's it did not read): counted again from the
	 * maps, once a second at most (50,000 lines at the budget). */
	uint64_t now = prim_now_ns();
	if (sp->c.map_count == sp->c.map_recounted || now - sp->c.map_recount_ns < MAPS_REREAD_NS)
		return false;
	regions_count_maps(sp);
	sp->c.map_recounted = sp->c.map_count;
	sp->c.map_recount_ns = now;
	return sp->c.map_count + 2 <= max - max / 8;
}

/* A merged page is a private mapping of the pool, which a core dump leaves
 * out unless /proc/self/coredump_filter dumps private file mappings; the
 * kernel's KSM pages are anonymous memory, and dumped.  So the process's
 * first merge sets that bit, when the filter dumps private anonymous
 * memory (the default).  The library's own mappings are never dumped. */
static void dump_merged_pages(void)
{
	static _Atomic bool done;
	if (!atomic_exchange(&done, true))
		prim_dump_private_file_mappings();
}

static void finish_page(struct samepage *sp, const struct merge_req *q, bool merged)
{
	struct region *r = &sp->regions[q->region];
	struct page_meta *m = &r->meta[q->index];

	m->flags &= (uint8_t)~PM_PENDING;
	if (q->node == NIL) {
		if (merged) {
			/* Dropped, or given a fresh anonymous mapping: either
			 * way its mapping is anonymous now. */
			m->flags |= PM_ZERO;
			m->flags &= (uint8_t) ~(PM_ITEM | PM_POOLMAP);
			sp->c.rmap_items--;
			sp->c.zero_pages++;
			/* a discard of the range must forget it (interpose.c) */
			r->merged = true;
		}
		return;
	}
	/* The ledger first, then the node's pending count: a process killed
	 * in between leaves the count one too high (the node kept), never one
	 * too low (samepaged's reaper takes what its ledger holds off it). */
	struct stable_node *n = &sp->stable.nodes[q->node];
	if (merged) {
		r->merged = true;
		m->flags |= PM_STABLE | PM_POOLMAP;
		m->link = q->node;
		stable_get(sp, q->node);
		ledger_unhold(sp, q->node, true); /* the merge's reference: a mapping now */
		n->pending--;
		return;
	}
	ledger_unhold(sp, q->node, false); /* the merge's reference goes */
	n->pending--;
	if (n->mapcount == 0 && n->pending == 0) {
		stable_put(sp, q->node); /* frees the unused node */
	}
}

/* Is any of [start, end) locked (mlock)? */
static bool locked_any(uintptr_t start, uintptr_t end)
{
	uintptr_t fs, fe;
	return promise_find(start, end, PROMISE_LOCKED, &fs, &fe);
}

/* Is the page of q in a private mapping of the pool? */
static bool req_poolmap(struct samepage *sp, const struct merge_req *q)
{
	return sp->regions[q->region].meta[q->index].flags & PM_POOLMAP;
}

/* A merge found [s, e) sealed by a call no wrapper saw (a raw mseal):
 * promised kept out, and kept out of sp's regions at its next batch
 * (keep_sealed(): not here, in the middle of a batch of merges).  EPERM
 * says so of memory that is not executable only: mapping the pool
 * PROT_EXEC from a noexec mount (samepaged's state directory on a
 * hardened /dev/shm) is refused with EPERM too. */
static void note_sealed(struct samepage *sp, uintptr_t s, uintptr_t e)
{
	promise_set(s, e, PROMISE_SEALED, true);
	sp->sealed_found = true;
}

/* Merges q[0..n), a run: consecutive addresses of one region with one
 * protection, onto consecutive pool pages (or all onto the zero page, all
 * in anonymous mappings or all in mappings of the pool). */
static void merge_run(struct samepage *sp, struct merge_req *q, size_t n, int prot)
{
	uintptr_t start = q[0].addr, end = q[n - 1].addr + PAGE_SIZE;
	bool zero = q[0].node == NIL;
	bool poolmap = req_poolmap(sp, &q[0]);
	bool ok[BATCH_PAGES * 2];
	int slot = regions_range_current(sp, start, end, prot, poolmap)
		       ? window_open(start, end, prot)
		       : -EAGAIN;
	/* Another engine merged since the maps were read, and the kernel
	 * cannot be asked what is mapped here (no PROCMAP_QUERY): these pages
	 * may be a private mapping of its pool, where MADV_DONTNEED would
	 * bring its page back. */
	bool unsure = zero && !poolmap && regions_merged_by_another(sp) && !prim_map_at_works();

	if (slot < 0) {
		for (size_t i = 0; i < n; i++)
			q[i].merged = false;
		if (slot == -EPERM && !(prot & PROT_EXEC)) /* mprotect's window, sealed memory */
			note_sealed(sp, start, end);
		return;
	}
	debug_pause("merge_window");
	for (size_t i = 0; i < n; i++)
		ok[i] = zero ? guarded_is_zero((void *)q[i].addr, PAGE_SIZE)
			     : !pool_unplaced(sp, q[i].pool_off) &&
				   !pool_page_dying(sp, q[i].pool_off) &&
				   guarded_equal((void *)q[i].addr,
						 pool_page(&sp->pool, q[i].pool_off), PAGE_SIZE);
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && ok[j] == ok[i])
			j++;
		uintptr_t a = q[i].addr, e = q[j - 1].addr + PAGE_SIZE;
		int err = -1;
		void *m;
		if (ok[i] && zero && (poolmap || unsure || locked_any(a, e))) {
			/* All zeros, but a private copy inside a mapping of a
			 * pool (a discard would bring the pool page back), or
			 * locked memory (MADV_DONTNEED refuses it): a new
			 * anonymous mapping, locked on fault, reads zeros (the
			 * zero page). */
			err = prim_mmap(&m, (void *)a, e - a, prot,
					MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
			if (!err) {
				guard_arm(a, e);
				promise_apply_onfault(a, e); /* locked: the zero page */
				sp->c.map_count += 2;
				regions_note_merge(sp);
			}
		} else if (ok[i] && zero) {
			/* The page is all zeros: drop it; reads map the zero page. */
			err = prim_madvise((void *)a, e - a, MADV_DONTNEED);
			if (!err)
				window_restore(slot, a, e, prot);
		} else if (ok[i]) {
			/* Not MAP_LOCKED: it populates a private writable
			 * mapping with write faults, copying every page. */
			err = prim_mmap(&m, (void *)a, e - a, prot, MAP_PRIVATE | MAP_FIXED,
					sp->pool.fd, (off_t)q[i].pool_off << PAGE_SHIFT);
			if (!err) {
				promise_apply_merged(a, e); /* dont-fork, dont-dump, locked */
				/* Never a huge page of the pool where a write to shmem
				 * may allocate one (shmem_enabled always): khugepaged
				 * would collapse the pool's pages through this mapping,
				 * the freed pages' holes filled with zeros. */
				if (sp->pool.thp_possible)
					prim_madvise((void *)a, e - a, MADV_NOHUGEPAGE);
				dump_merged_pages();
				/* Map the pool pages now (read faults only), as the
				 * kernel's KSM leaves its PTEs in place: the pages
				 * show in the RSS and in pagemap as file pages.
				 * Before the mapping is registered for the windows:
				 * the kernel does no fault-around in a mapping
				 * registered with userfaultfd, so that would be a
				 * fault a page instead of one per 16 (test_merge's
				 * populate_fault_around). */
				if (prot & PROT_READ)
					prim_madvise((void *)a, e - a, MADV_POPULATE_READ);
				guard_arm(a, e);
				sp->c.map_count += 2;
				sp->c.pool_maps++;
				regions_note_merge(sp);
			}
		}
		if (err) {
			/* (err is still -1, -EPERM's value, where nothing was tried) */
			if (ok[i] && err == -EPERM && !(prot & PROT_EXEC))
				note_sealed(sp, a, e); /* no mapping may replace sealed memory */
			for (size_t k = i; k < j; k++)
				ok[k] = false;
			window_restore(slot, a, e, prot);
		}
		i = j;
	}
	window_close(slot);
	for (size_t i = 0; i < n; i++)
		q[i].merged = ok[i];
}

/*
 * Transparent huge pages.  A merge inside a THP that the kernel maps with
 * one page-table entry (PMD) unmaps part of it, and the kernel frees the
 * unmapped pages only when it splits the THP, under memory pressure:
 * measured, 111 MiB merged out of THPs left MemAvailable where it was
 * until a drop_caches ran the shrinker that splits them.  The kernel's
 * KSM splits the THP it merges from.  Here each such block that a merge
 * of the batch touches is first replaced by a copy in small pages
 * (huge_block_to_small()), so that the THP goes whole, at once.
 */
static void break_huge_blocks(struct samepage *sp, const struct merge_req *q, size_t n)
{
	size_t pmd = prim_pmd_size();
	uintptr_t huge[16][2], last = 0;
	int nh =
	    prim_huge_ranges(q[0].addr & ~(pmd - 1), (q[n - 1].addr | (pmd - 1)) + 1, huge, 16);
	for (size_t i = 0; i < n && nh > 0; i++) {
		uintptr_t b = q[i].addr & ~(pmd - 1);
		if (b == last)
			continue;
		last = b;
		bool is_huge = false;
		for (int k = 0; k < nh && !is_huge; k++)
			is_huge = huge[k][0] <= b && b + pmd <= huge[k][1];
		struct region *r = &sp->regions[q[i].region];
		int prot = region_prot_at(r, b);
		if (!is_huge || b < r->start || b + pmd > region_addr(r, r->npages) || prot < 0 ||
		    region_prot_at(r, b + pmd - PAGE_SIZE) != prot || !map_budget_allows(sp) ||
		    !regions_range_current(sp, b, b + pmd, prot, false))
			continue;
		if (huge_block_to_small(b, b + pmd, prot) == 0)
			sp->c.map_count += 2;
	}
}

/* Whether the application unmapped or re-protected a page of the batch
 * (sorted) since it let the address-space lock go, or lost track of such
 * changes (no memory to note them). */
static bool batch_touched(struct samepage *sp, const struct merge_req *q, size_t n)
{
	uintptr_t lo = q[0].addr, hi = q[n - 1].addr + PAGE_SIZE;
	pthread_mutex_lock(&sp->forget_lock);
	bool hit = sp->forget_lost || sp->prot_lost;
	for (size_t i = sp->forget_mark; i < sp->nforget && !hit; i++)
		hit = sp->forget[i].start < hi && sp->forget[i].start + sp->forget[i].len > lo;
	pthread_mutex_unlock(&sp->forget_lock);
	return hit;
}

/*
 * Does every pending merge of the batch, run by run.  The runs change this
 * process's address space only, so a samepaged client does them with its
 * domain's lock let go: the other processes' scanners merge at the same
 * time (one lock held through every batch's merges made a domain merge
 * at one CPU's rate: 4 processes of one image converged in 1.3 s against
 * 0.92-1.02 s).  What keeps the batch's nodes and pool pages meanwhile:
 * each merge's pending count (no node is freed while it has one) and its
 * reference in the ledger (samepaged rewrites or punches no page a ledger
 * refers to).  The results go to the nodes once the lock is back.
 * Returns whether the application changed its mappings meanwhile (the
 * address-space lock was let go to wait for the domain's lock): then the
 * caller merges nothing more before engine_enter() again.
 */
bool merge_batch(struct samepage *sp)
{
	struct merge_req *q = sp->reqs;
	size_t n = sp->nreqs;

	/* samepaged writes the new KSM pages; if the application unmapped or
	 * re-protected pages of the batch while it waited for that with the
	 * address-space lock let go, nothing merges before engine_enter()
	 * caught up (changes elsewhere wait for it as usual). */
	bool let_go = sp->nplace && sp->place_flush && sp->place_flush(sp, true);
	if (!n)
		return let_go && atomic_load(&sp->changed);
	sort_reqs(q, n);
	bool placed_moved = let_go && batch_touched(sp, q, n);
	index_release(sp);
	if (!placed_moved)
		break_huge_blocks(sp, q, n);
	for (size_t i = 0; i < n && placed_moved; i++)
		q[i].merged = false;
	for (size_t i = 0; i < n && !placed_moved;) {
		struct region *r = &sp->regions[q[i].region];
		int prot = region_prot_at(r, q[i].addr);
		size_t j = i + 1;
		while (j < n && q[j].region == q[i].region &&
		       q[j].addr == q[j - 1].addr + PAGE_SIZE &&
		       (q[i].node == NIL) == (q[j].node == NIL) &&
		       (q[i].node == NIL || q[j].pool_off == q[j - 1].pool_off + 1) &&
		       (q[i].node != NIL || req_poolmap(sp, &q[i]) == req_poolmap(sp, &q[j])) &&
		       region_prot_at(r, q[j].addr) == prot)
			j++;
		if (prot < 0 || (q[i].node != NIL && !map_budget_allows(sp))) {
			if (prot >= 0) {
				sp->c.skipped_map_budget += j - i;
				sp->c.budget_runs_scan++;
			}
			for (size_t k = i; k < j; k++)
				q[k].merged = false;
		} else {
			merge_run(sp, &q[i], j - i, prot);
		}
		i = j;
	}
	/* The mappings changed while the address-space lock was let go:
	 * the merges stand (what was unmapped since is forgotten at the next
	 * engine_enter()), but no page is touched again until then. */
	bool moved = index_retake(sp) || placed_moved;
	for (size_t i = 0; i < n; i++)
		finish_page(sp, &q[i], q[i].merged);
	sp->nreqs = 0;
	sp->nunplaced = 0; /* their nodes are gone with their merges */

	/* A node made from an unstable match whose partner changed before
	 * it could be merged holds a single mapping: break it, as the kernel
	 * does (break_cow after a failed try_to_merge_two_pages). */
	for (size_t i = 0; i < n && !moved; i++) {
		if (q[i].node == NIL)
			continue;
		struct stable_node *nd = &sp->stable.nodes[q[i].node];
		struct region *r = &sp->regions[q[i].region];
		if (nd->in_use == NODE_USED && nd->mapcount == 1 && nd->pending == 0 &&
		    (r->meta[q[i].index].flags & PM_STABLE) &&
		    r->meta[q[i].index].link == q[i].node)
			break_cow(sp, r, q[i].index);
	}
	return moved;
}
