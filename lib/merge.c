// SPDX-License-Identifier: MIT
/*
 * merge.c - replacing duplicate pages by the pool's page, without losing a
 * write.
 *
 * The merge of a run of pages (consecutive addresses onto consecutive pool
 * pages) is, as in the kernel's write_protect_page() + replace_page():
 *
 *   1. open a merge window over the run, then write-protect it (mprotect
 *      without PROT_WRITE): from here a writer faults, and our SIGSEGV
 *      handler makes it wait until the window closes, then lets the write
 *      happen again (on whatever the page then is);
 *   2. compare every page with its pool page, now that it cannot change;
 *   3. mmap the pool pages MAP_PRIVATE|MAP_FIXED over the pages that are
 *      equal (one mmap per equal sub-run): the kernel frees the anonymous
 *      pages at once; give the protection back to those that are not;
 *   4. close the window and wake the writers.
 *
 * The writers' retried writes then go to the pool mapping, where the kernel
 * copies the page for them (copy-on-write): nothing is lost.
 *
 * The address-space lock: the application's own mmap/munmap/mremap/
 * mprotect/madvise calls (interpose.c) take it shared, a batch takes it
 * exclusive, so that an application that unmaps or re-protects a range
 * never races with a merge of that range (which would map memory back where
 * it was removed, or undo its protection).
 *
 * Reading application memory: the scanner reads pages directly (6 GB/s,
 * against 2.5 for /proc/self/mem), under a guard: a fault in the scanner
 * thread (a PROT_NONE page, a range unmapped by a raw syscall) jumps back
 * and the caller falls back to /proc/self/mem, which reads PROT_NONE pages
 * and fails cleanly where nothing is mapped.
 */
#include "internal.h"

#include <errno.h>
#include <linux/futex.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <xxhash.h>

/* ---- the address-space lock ---- */

static pthread_rwlock_t as_rwlock;
static pthread_once_t as_once = PTHREAD_ONCE_INIT;

static void as_init(void)
{
	pthread_rwlockattr_t a;
	pthread_rwlockattr_init(&a);
	/* A steady stream of application munmaps must not starve the scanner. */
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&as_rwlock, &a);
	pthread_rwlockattr_destroy(&a);
}

void as_lock_exclusive(void)
{
	pthread_once(&as_once, as_init);
	pthread_rwlock_wrlock(&as_rwlock);
}

void as_lock_shared(void)
{
	pthread_once(&as_once, as_init);
	pthread_rwlock_rdlock(&as_rwlock);
}

void as_unlock(void)
{
	pthread_rwlock_unlock(&as_rwlock);
}

/* In a forked child: the parent's thread held the lock at the fork, and a
 * rwlock can only be released by its owner. */
void as_reinit(void)
{
	pthread_once(&as_once, as_init);
	as_init();
}

/* ---- merge windows and the fault handler ---- */

/* One window at a time per engine is enough (a batch does its runs one
 * after the other); a few slots let several engines merge at once. */
#define MAX_WINDOWS 16
static struct {
	_Atomic uintptr_t start, end;
} windows[MAX_WINDOWS];
static _Atomic uint32_t window_seq; /* futex word: bumped when a window closes */
_Atomic uint64_t merge_window_waits;

static struct sigaction chained_segv, chained_bus;
static _Atomic int handler_installed;

/* Set while the scanner reads guarded.  volatile: the compiler must not
 * drop the store around a memcpy it believes cannot fault. */
static __thread sigjmp_buf *volatile guard_jmp;
/* The last fault this thread took outside any window, to tell a fault
 * whose window closed just before we looked (retry) from a real one. */
static __thread uintptr_t last_fault;
static __thread uint32_t last_fault_seq;

static int window_open(uintptr_t start, uintptr_t end)
{
	for (int i = 0; i < MAX_WINDOWS; i++) {
		uintptr_t zero = 0;
		if (atomic_compare_exchange_strong(&windows[i].end, &zero, end)) {
			atomic_store(&windows[i].start, start);
			return i;
		}
	}
	return -1;
}

static void window_close(int slot)
{
	atomic_store(&windows[slot].start, 0);
	atomic_store(&windows[slot].end, 0);
	atomic_fetch_add(&window_seq, 1);
	syscall(SYS_futex, &window_seq, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

static bool in_window(uintptr_t a)
{
	for (int i = 0; i < MAX_WINDOWS; i++) {
		uintptr_t e = atomic_load(&windows[i].end);
		if (e && a < e && a >= atomic_load(&windows[i].start))
			return true;
	}
	return false;
}

static void chain(const struct sigaction *old, int sig, siginfo_t *si, void *uc)
{
	if (old->sa_flags & SA_SIGINFO) {
		if (old->sa_sigaction) {
			old->sa_sigaction(sig, si, uc);
			return;
		}
	} else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
		old->sa_handler(sig);
		return;
	}
	/* Nobody else handles it: the default action, as if we were not here.
	 * Returning re-runs the faulting instruction, which faults again. */
	signal(sig, SIG_DFL);
}

static void fault_handler(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;
	uintptr_t a = (uintptr_t)si->si_addr;

	if (guard_jmp) /* the scanner's guarded read hit an unreadable page */
		siglongjmp(*guard_jmp, 1);
	if (sig == SIGSEGV && in_window(a)) {
		atomic_fetch_add(&merge_window_waits, 1);
		while (in_window(a)) {
			uint32_t seq = atomic_load(&window_seq);
			if (!in_window(a))
				break;
			syscall(SYS_futex, &window_seq, FUTEX_WAIT_PRIVATE, seq, NULL, NULL, 0);
		}
		errno = saved;
		return; /* the write is retried on the merged (or restored) page */
	}
	uint32_t seq = atomic_load(&window_seq);
	if (sig == SIGSEGV && (a != last_fault || seq != last_fault_seq)) {
		/* A window may have closed between the fault and this check:
		 * retry once; a real fault comes back at once with nothing
		 * closed meanwhile, and goes to the application. */
		last_fault = a;
		last_fault_seq = seq;
		errno = saved;
		return;
	}
	last_fault = 0;
	errno = saved;
	chain(sig == SIGSEGV ? &chained_segv : &chained_bus, sig, si, uc);
}

/* Installs the handler, or re-installs it if the application replaced it
 * since (and then chains to the application's handler).  Called before
 * every batch, so an application may install its handler at any time.
 * (sigsetjmp(jb, 0) in the guards: SA_NODEFER keeps SIGSEGV unblocked in
 * the handler, so there is no mask to restore and no syscall to pay.) */
void handler_ensure(void)
{
	struct sigaction cur, sa;
	int sigs[2] = {SIGSEGV, SIGBUS};
	struct sigaction *saved[2] = {&chained_segv, &chained_bus};

	for (int i = 0; i < 2; i++) {
		sigaction(sigs[i], NULL, &cur);
		if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == fault_handler)
			continue;
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = fault_handler;
		sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK | SA_RESTART;
		sigemptyset(&sa.sa_mask);
		*saved[i] = cur;
		sigaction(sigs[i], &sa, NULL);
	}
	atomic_store(&handler_installed, 1);
}

int merge_init(void)
{
	handler_ensure();
	return 0;
}

/* ---- guarded reads ---- */

bool guarded_copy(void *dst, const void *src, size_t len)
{
	sigjmp_buf jb;
	if (sigsetjmp(jb, 0) == 0) {
		guard_jmp = &jb;
		memcpy(dst, src, len);
		guard_jmp = NULL;
		return true;
	}
	guard_jmp = NULL;
	ssize_t n = prim_mem_read((uintptr_t)src, dst, len);
	return n == (ssize_t)len;
}

/* Compares application memory a with b (engine memory). */
bool guarded_equal(const void *a, const void *b, size_t len)
{
	sigjmp_buf jb;
	volatile int eq = 0;
	if (sigsetjmp(jb, 0) == 0) {
		guard_jmp = &jb;
		eq = memcmp(a, b, len) == 0;
		guard_jmp = NULL;
		return eq;
	}
	guard_jmp = NULL;
	char tmp[PAGE_SIZE];
	for (size_t off = 0; off < len; off += PAGE_SIZE) {
		size_t n = len - off < PAGE_SIZE ? len - off : PAGE_SIZE;
		if (prim_mem_read((uintptr_t)a + off, tmp, n) != (ssize_t)n ||
		    memcmp(tmp, (const char *)b + off, n))
			return false;
	}
	return true;
}

bool guarded_is_zero(const void *a, size_t len)
{
	static const char zeros[PAGE_SIZE];
	for (size_t off = 0; off < len; off += PAGE_SIZE)
		if (!guarded_equal((const char *)a + off, zeros, PAGE_SIZE))
			return false;
	return true;
}

/* ---- merging a batch ---- */

static int cmp_req(const void *a, const void *b)
{
	const struct merge_req *x = a, *y = b;
	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

/* The mapping budget: every merged run can split one anonymous VMA into
 * three.  Keep 1/8 of vm.max_map_count for the application. */
static bool map_budget_allows(struct samepage *sp)
{
	uint64_t max = sp->c.max_map_count;
	return sp->c.map_count + 2 <= max - max / 8;
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
		}
		return;
	}
	struct stable_node *n = &sp->stable.nodes[q->node];
	n->pending--;
	if (merged) {
		r->merged = true;
		m->flags |= PM_STABLE | PM_POOLMAP;
		m->link = q->node;
		stable_get(sp, q->node);
	} else if (n->mapcount == 0 && n->pending == 0) {
		stable_put(sp, q->node); /* frees the unused node */
	}
}

/* Is the page of q in a private mapping of the pool? */
static bool req_poolmap(struct samepage *sp, const struct merge_req *q)
{
	return sp->regions[q->region].meta[q->index].flags & PM_POOLMAP;
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
	int slot = window_open(start, end);

	if (slot < 0 ||
	    (prot & PROT_WRITE && prim_mprotect((void *)start, end - start, prot & ~PROT_WRITE))) {
		if (slot >= 0)
			window_close(slot);
		for (size_t i = 0; i < n; i++)
			finish_page(sp, &q[i], false);
		return;
	}
	for (size_t i = 0; i < n; i++)
		ok[i] = zero ? guarded_is_zero((void *)q[i].addr, PAGE_SIZE)
			     : guarded_equal((void *)q[i].addr, pool_page(&sp->pool, q[i].pool_off),
					     PAGE_SIZE);
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && ok[j] == ok[i])
			j++;
		void *a = (void *)q[i].addr;
		size_t len = (j - i) << PAGE_SHIFT;
		if (ok[i] && zero && poolmap) {
			/* All zeros, but a private copy inside a mapping of the
			 * pool: a discard would bring the pool page back.  A new
			 * anonymous mapping reads zeros (the zero page). */
			if (prim_mmap(a, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
				      0) == MAP_FAILED) {
				for (size_t k = i; k < j; k++)
					ok[k] = false;
				if (prot & PROT_WRITE)
					prim_mprotect(a, len, prot);
			} else {
				sp->c.map_count += 2;
			}
		} else if (ok[i] && zero) {
			/* The page is all zeros: drop it; reads map the zero page. */
			if (prim_madvise(a, len, MADV_DONTNEED) ||
			    (prot & PROT_WRITE && prim_mprotect(a, len, prot)))
				for (size_t k = i; k < j; k++)
					ok[k] = false;
		} else if (ok[i]) {
			void *m = prim_mmap(a, len, prot, MAP_PRIVATE | MAP_FIXED, sp->pool.fd,
					    (off_t)q[i].pool_off << PAGE_SHIFT);
			if (m == MAP_FAILED) {
				for (size_t k = i; k < j; k++)
					ok[k] = false;
				if (prot & PROT_WRITE)
					prim_mprotect(a, len, prot);
			} else {
				/* Map the pool pages now (read faults only), as the
				 * kernel's KSM leaves its PTEs in place: the pages
				 * show in the RSS and in pagemap as file pages. */
				if (prot & PROT_READ)
					prim_madvise(a, len, MADV_POPULATE_READ);
				sp->c.map_count += 2;
			}
		} else if (prot & PROT_WRITE) {
			prim_mprotect(a, len, prot);
		}
		i = j;
	}
	window_close(slot);
	for (size_t i = 0; i < n; i++)
		finish_page(sp, &q[i], ok[i]);
}

/* Does every pending merge of the batch, run by run. */
void merge_batch(struct samepage *sp)
{
	struct merge_req *q = sp->reqs;
	size_t n = sp->nreqs;

	if (!n)
		return;
	handler_ensure();
	qsort(q, n, sizeof(*q), cmp_req);
	for (size_t i = 0; i < n;) {
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
			if (prot >= 0)
				sp->c.skipped_map_budget += j - i;
			for (size_t k = i; k < j; k++)
				finish_page(sp, &q[k], false);
		} else {
			merge_run(sp, &q[i], j - i, prot);
		}
		i = j;
	}
	sp->nreqs = 0;

	/* A node made from an unstable match whose partner changed before
	 * it could be merged holds a single mapping: break it, as the kernel
	 * does (break_cow after a failed try_to_merge_two_pages). */
	for (size_t i = 0; i < n; i++) {
		if (q[i].node == NIL)
			continue;
		struct stable_node *nd = &sp->stable.nodes[q[i].node];
		struct region *r = &sp->regions[q[i].region];
		if (nd->in_use == NODE_USED && nd->mapcount == 1 && nd->pending == 0 &&
		    (r->meta[q[i].index].flags & PM_STABLE) &&
		    r->meta[q[i].index].link == q[i].node)
			break_cow(sp, r, q[i].index);
	}
}

/* ---- unmerging ---- */

/*
 * break_cow: gives the page at r[i] a private copy again.  A writable page
 * gets an atomic add of zero to its first byte: a real write (so the kernel
 * copies the page) that cannot lose a concurrent writer's store.  A page the
 * application cannot write (read-only, PROT_NONE) is rewritten through
 * /proc/self/mem, which forces the same copy and races with no writer.
 */
static int unshare_page(struct region *r, uintptr_t a)
{
	int prot = region_prot_at(r, a);
	if (prot < 0)
		return -ENOMEM;
	if ((prot & (PROT_READ | PROT_WRITE)) == (PROT_READ | PROT_WRITE)) {
		sigjmp_buf jb;
		if (sigsetjmp(jb, 0) == 0) {
			guard_jmp = &jb;
			__atomic_fetch_add((volatile char *)a, 0, __ATOMIC_SEQ_CST);
			guard_jmp = NULL;
			return 0;
		}
		guard_jmp = NULL; /* protection changed under us: fall through */
	}
	char b;
	if (prim_mem_read(a, &b, 1) != 1 || prim_mem_write(a, &b, 1) != 1)
		return -errno;
	return 0;
}

/* Forgets that page i was merged (its mapping no longer counts). */
static void forget_merge(struct samepage *sp, struct page_meta *m)
{
	m->flags &= (uint8_t)~PM_STABLE;
	stable_put(sp, m->link);
	m->link = NIL;
	m->flags &= (uint8_t)~PM_ITEM;
	sp->c.rmap_items--;
	m->checksum = 0;
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
		return unshare_page(r, a);
	return 0;
}

/* One page back to a private copy, in place (its mapping stays a private
 * mapping of the pool): for a merge that must be undone at once. */
int break_cow(struct samepage *sp, struct region *r, size_t i)
{
	struct page_meta *m = &r->meta[i];
	uintptr_t a = region_addr(r, i);
	uint64_t pm = 0;

	if (m->flags & PM_STABLE) {
		if (!(prim_pagemap(a, 1, &pm) == 0 && (pm & PM_PRESENT) && !(pm & PM_FILE))) {
			int err = unshare_page(r, a);
			if (err)
				return err;
		}
		forget_merge(sp, m);
	} else if (m->flags & PM_ZERO) {
		return unshare_zero_page(sp, r, i);
	}
	return 0;
}

/*
 * Replaces [s, e), a private mapping of the pool, by anonymous memory with
 * the same protection: with the same contents (copy), or zeros.  A page
 * copied at a write stays in the pool's mapping, and MADV_DONTNEED there
 * would bring the pool's page back instead of zeros: only a real anonymous
 * mapping behaves as the application's memory did before merging.  The
 * copy is made inside a merge window, so no write is lost: writers wait
 * until the new mapping is in place (mremap moves it there atomically).
 */
static int replace_with_anon(uintptr_t s, uintptr_t e, int prot, bool copy)
{
	size_t len = e - s;
	int err = 0;

	if (!copy) {
		void *m =
		    prim_mmap((void *)s, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		return m == MAP_FAILED ? -errno : 0;
	}
	handler_ensure(); /* writers must wait in our handler, not crash */
	int slot = window_open(s, e);
	if (slot < 0)
		return -EBUSY;
	if (prot & PROT_WRITE)
		prim_mprotect((void *)s, len, prot & ~PROT_WRITE);
	char *scratch = prim_mmap(NULL, len, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (scratch == MAP_FAILED) {
		err = -ENOMEM;
	} else if (!guarded_copy(scratch, (const void *)s, len)) {
		err = -EFAULT;
	} else if ((prot != (PROT_READ | PROT_WRITE) && prim_mprotect(scratch, len, prot)) ||
		   prim_mremap(scratch, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)s) ==
		       MAP_FAILED) {
		err = -errno;
	} else {
		scratch = NULL; /* it is the application's memory now */
	}
	if (err && (prot & PROT_WRITE))
		prim_mprotect((void *)s, len, prot);
	if (scratch && scratch != MAP_FAILED)
		prim_munmap(scratch, len);
	window_close(slot);
	return err;
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

/* Collects the private mappings of the pools in [start, end), joining
 * neighbours of one protection (each merged page may be its own mapping:
 * one replacement covers them all). */
static int collect_piece(const struct map_entry *e, void *arg)
{
	struct pieces *p = arg;
	bool ours = false;
	if (e->end <= p->start || e->start >= p->end || e->shared || e->anon)
		return 0;
	for (size_t k = 0; k < p->nids && !ours; k++)
		ours = e->dev == p->ids[k].dev && e->ino == p->ids[k].ino;
	if (!ours)
		return 0;
	uintptr_t s = e->start > p->start ? e->start : p->start;
	uintptr_t t = e->end < p->end ? e->end : p->end;
	if (p->n && p->spans[p->n - 1].end == s && p->spans[p->n - 1].prot == e->prot) {
		p->spans[p->n - 1].end = t;
		return 0;
	}
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct prot_span *ns = realloc(p->spans, cap * sizeof(*ns));
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
			 bool copy)
{
	struct pieces p = {.ids = ids, .nids = nids, .start = start, .end = end};
	int err = prim_maps_walk(collect_piece, &p);
	for (size_t k = 0; k < p.n; k++) {
		int e = replace_with_anon(p.spans[k].start, p.spans[k].end, p.spans[k].prot, copy);
		if (e && !err)
			err = e;
	}
	free(p.spans);
	return err;
}

/* Called inside engine_enter(). */
int pool_mappings_to_anon(struct samepage *sp, uintptr_t start, uintptr_t end, bool copy)
{
	struct pool_id id = {sp->pool.dev, sp->pool.ino};
	sp->maps_dirty = true;
	return pools_to_anon(&id, 1, start, end, copy);
}

/* The pools of engines this process no longer runs (closed, or inherited
 * from a parent by fork): their merged pages are still private mappings
 * of the pool, and MADV_DONTNEED there must still read zeros. */
#define MAX_STALE_POOLS 64
static struct pool_id stale_pools[MAX_STALE_POOLS];
static _Atomic int nstale;
static pthread_mutex_t stale_lock = PTHREAD_MUTEX_INITIALIZER;

void stale_pool_add(dev_t dev, ino_t ino)
{
	pthread_mutex_lock(&stale_lock);
	int n = atomic_load(&nstale);
	bool known = false;
	for (int k = 0; k < n && !known; k++)
		known = stale_pools[k].dev == dev && stale_pools[k].ino == ino;
	if (!known && n < MAX_STALE_POOLS) {
		stale_pools[n] = (struct pool_id){dev, ino};
		atomic_store(&nstale, n + 1);
	}
	pthread_mutex_unlock(&stale_lock);
}

int stale_pools_discard(uintptr_t start, uintptr_t end)
{
	if (!atomic_load(&nstale))
		return 0;
	pthread_mutex_lock(&stale_lock);
	int err = pools_to_anon(stale_pools, (size_t)atomic_load(&nstale), start, end, false);
	pthread_mutex_unlock(&stale_lock);
	return err;
}

static int piece_seen(const struct map_entry *e, void *arg)
{
	struct pieces *p = arg;
	return e->end > p->start && e->start < p->end && !e->shared && !e->anon &&
	       e->dev == p->ids[0].dev && e->ino == p->ids[0].ino;
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
	int err = 0, prot = region_prot_at(r, p.start);
	if (prim_maps_walk(piece_seen, &p) == 1 && prot >= 0) {
		err = replace_with_anon(p.start, p.end, prot, true);
		sp->maps_dirty = true;
	}
	for (size_t i = from; i < to; i++)
		if (r->meta[i].flags & PM_STABLE)
			forget_merge(sp, &r->meta[i]);
	return err;
}

/* MADV_UNMERGEABLE and run = 2 on r[from, to): the merged pages become
 * private anonymous memory with their contents, as in the kernel. */
int unmerge_range(struct samepage *sp, struct region *r, size_t from, size_t to)
{
	int err = pool_mappings_to_anon(sp, region_addr(r, from), region_addr(r, to), true);
	for (size_t i = from; i < to; i++) {
		struct page_meta *m = &r->meta[i];
		if (!err)
			m->flags &= (uint8_t)~PM_POOLMAP;
		if (m->flags & PM_STABLE) {
			forget_merge(sp, m);
		} else if (m->flags & PM_ZERO) {
			int e = unshare_zero_page(sp, r, i);
			if (e && !err)
				err = e;
		}
	}
	return err;
}

/* XXH3-64 of an application page, read under the guard. */
bool guarded_hash(const void *page, uint64_t *h)
{
	sigjmp_buf jb;
	if (sigsetjmp(jb, 0) == 0) {
		guard_jmp = &jb;
		*h = XXH3_64bits(page, PAGE_SIZE);
		guard_jmp = NULL;
		return true;
	}
	guard_jmp = NULL;
	char tmp[PAGE_SIZE];
	if (prim_mem_read((uintptr_t)page, tmp, PAGE_SIZE) != (ssize_t)PAGE_SIZE)
		return false;
	*h = XXH3_64bits(tmp, PAGE_SIZE);
	return true;
}
