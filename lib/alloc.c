// SPDX-License-Identifier: MIT
/*
 * alloc.c - the library's own memory, which is never merged.
 *
 * In merge-any mode every private anonymous mapping of the process is
 * mergeable, the C library's heap included.  The engine's own state must
 * not be: a thread that opens a merge window and then writes a page under
 * it waits for itself, and a thread that waits in a window while it holds
 * one of the engine's locks stops the scanner.  So the library allocates
 * its state here, from mappings of its own (lib_malloc and its kin), keeps
 * a table of them (and of its scanner threads' stacks and its .bss), and
 * merge-any never registers a page of that table (own_find()).
 */
#include "internal.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

struct owned {
	uintptr_t start, end;
};

static pthread_mutex_t own_lock = PTHREAD_MUTEX_INITIALIZER;
/* How many of the allocator's locks this thread is between locking and
 * unlocking: a fork from a signal handler that interrupted it must not
 * wait for them (alloc_fork_lock), nor allocate (lib_pages). */
static __thread int alloc_held;
_Thread_local bool fork_forking; /* internal.h */
#define ALLOC_LOCK(m) (alloc_held++, fork_held_lock(m))
#define ALLOC_UNLOCK(m) (fork_held_unlock(m), alloc_held--)
static struct owned *own; /* sorted by start; itself an owned range */
static size_t nown, own_cap;

static size_t round_pages(size_t n)
{
	return (n + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
}

static void own_insert_locked(uintptr_t start, uintptr_t end)
{
	size_t i = nown;
	while (i > 0 && own[i - 1].start > start)
		i--;
	memmove(&own[i + 1], &own[i], (nown - i) * sizeof(*own));
	own[i] = (struct owned){start, end};
	nown++;
}

static void own_remove_locked(uintptr_t start)
{
	for (size_t i = 0; i < nown; i++)
		if (own[i].start == start) {
			memmove(&own[i], &own[i + 1], (nown - i - 1) * sizeof(*own));
			nown--;
			return;
		}
}

/* Room for one more entry: the table grows by mremap, and stays one of
 * its own entries. */
static bool own_reserve_locked(void)
{
	if (nown + 2 <= own_cap)
		return true;
	size_t old = round_pages(own_cap * sizeof(*own)), len = old ? old * 2 : PAGE_SIZE;
	void *m;
	int err = own ? prim_mremap(&m, own, old, len, MREMAP_MAYMOVE, NULL)
		      : prim_mmap(&m, NULL, len, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (err)
		return false;
	uintptr_t was = (uintptr_t)own;
	own = m; /* the entries moved with it */
	own_cap = len / sizeof(*own);
	if (was)
		own_remove_locked(was);
	own_insert_locked((uintptr_t)own, (uintptr_t)own + len);
	return true;
}

/* [start, end) is the library's own (its arena, its metadata, its .bss). */
void own_add(uintptr_t start, uintptr_t end)
{
	ALLOC_LOCK(&own_lock);
	if (own_reserve_locked())
		own_insert_locked(start, end);
	ALLOC_UNLOCK(&own_lock);
}

void own_remove(uintptr_t start)
{
	ALLOC_LOCK(&own_lock);
	own_remove_locked(start);
	ALLOC_UNLOCK(&own_lock);
}

/* The first of the library's own ranges that overlaps [start, end):
 * false if none. */
bool own_find(uintptr_t start, uintptr_t end, uintptr_t *os, uintptr_t *oe)
{
	bool found = false;
	ALLOC_LOCK(&own_lock);
	for (size_t i = 0; i < nown && !found; i++)
		if (own[i].start < end && start < own[i].end) {
			*os = own[i].start;
			*oe = own[i].end;
			found = true;
		}
	ALLOC_UNLOCK(&own_lock);
	return found;
}

/* The process's address-space limit (RLIMIT_AS, `ulimit -v`, systemd's
 * LimitAS=) in bytes, 0 if none. */
uint64_t as_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_AS, &rl) || rl.rlim_cur == RLIM_INFINITY)
		return 0;
	return (uint64_t)rl.rlim_cur;
}

/* The address space the library reserves for one of its needs (its
 * arena, a local engine's pool): all it wants, whole, when the process's
 * address space is not limited; under a limit 1/div of it, at least
 * floor, so that the program keeps nearly all of it.  It took 5.5 GiB of
 * 8 (RELIABILITY.md 79).  A limit lowered after the reservation was made
 * does not shrink it. */
size_t as_share(size_t whole, unsigned div, size_t floor)
{
	uint64_t limit = as_limit();
	if (!limit)
		return whole;
	uint64_t share = (limit / div) & ~(uint64_t)(PAGE_SIZE - 1);
	return share < floor ? floor : share > whole ? whole : (size_t)share;
}

/* ---- pages: one arena, so that the library's allocations never land in
 * a hole the application just unmapped (and may map again) ---- */

#define ARENA_PAGES (1UL << 18) /* 1 GiB of address space; pages cost once touched */
/* Under an address-space limit: 1/64 of it, at least 8 MiB (the engine
 * takes 1.1 MiB at its start, its scanner's stack; the tables that grow
 * with the memory scanned, 2 bytes a page, fit 1/64 of any limit). */
#define ARENA_AS_SHARE 64
#define ARENA_MIN_PAGES (1UL << 11)
static char *arena;
static size_t arena_pages; /* ARENA_PAGES, or fewer under a limit */
static uint64_t arena_used[ARENA_PAGES / 64];
static size_t arena_next;
static pthread_mutex_t arena_lock = PTHREAD_MUTEX_INITIALIZER;

static bool arena_bit(size_t i)
{
	return (arena_used[i / 64] >> (i % 64)) & 1;
}

static void arena_mark(size_t i, size_t n, bool on)
{
	for (size_t k = i; k < i + n; k++)
		if (on)
			arena_used[k / 64] |= 1ULL << (k % 64);
		else
			arena_used[k / 64] &= ~(1ULL << (k % 64));
}

/* n free pages in a row, first fit from the last allocation on. */
static void *arena_take(size_t n)
{
	if (!arena) {
		void *m;
		size_t pages = as_share(ARENA_PAGES << PAGE_SHIFT, ARENA_AS_SHARE,
					ARENA_MIN_PAGES << PAGE_SHIFT) >>
			       PAGE_SHIFT;
		while (prim_mmap(&m, NULL, pages << PAGE_SHIFT, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0))
			if ((pages /= 2) < ARENA_MIN_PAGES)
				return NULL; /* tried again at the next call */
		arena = m;
		arena_pages = pages;
		own_add((uintptr_t)arena, (uintptr_t)arena + (pages << PAGE_SHIFT));
	}
	for (size_t pass = 0; pass < 2; pass++) {
		size_t run = 0;
		for (size_t i = pass ? 0 : arena_next; i < arena_pages; i++) {
			run = arena_bit(i) ? 0 : run + 1;
			if (run == n) {
				size_t first = i + 1 - n;
				arena_mark(first, n, true);
				arena_next = i + 1;
				return arena + (first << PAGE_SHIFT);
			}
		}
	}
	return NULL;
}

void *lib_pages(size_t len)
{
	size_t n = round_pages(len) >> PAGE_SHIFT;
	if (alloc_held)
		return NULL; /* re-entered by a signal handler's fork (fork.c copes) */
	ALLOC_LOCK(&arena_lock);
	void *m = n ? arena_take(n) : NULL;
	ALLOC_UNLOCK(&arena_lock);
	return m;
}

/* fork: the allocator's locks are held across it (fork.c), so that the
 * child finds them free and the state they guard whole.  The arena's is
 * taken first: arena_take() adds to the own list under it.  Not when this
 * thread holds one: a signal handler interrupted it to fork, and it
 * finishes its section when the handler returns, in the parent and in the
 * child (taken again here, the process waited for itself for ever). */
static bool arena_fork_taken, own_fork_taken;

void alloc_fork_lock(void)
{
	arena_fork_taken = prim_fork_mutex_take(&arena_lock, alloc_held);
	own_fork_taken = prim_fork_mutex_take(&own_lock, alloc_held);
}

void alloc_fork_unlock(void)
{
	if (own_fork_taken)
		pthread_mutex_unlock(&own_lock);
	if (arena_fork_taken)
		pthread_mutex_unlock(&arena_lock);
}

/* Gives the pages back (they read zeros when taken again).  Under the
 * application's mlockall the arena is locked (on fault), and MADV_DONTNEED
 * refuses locked memory: MADV_DONTNEED_LOCKED (Linux 5.18) discards it
 * all the same, and before it the pages are cleared by hand. */
void lib_pages_free(void *p, size_t len)
{
	if (!p || alloc_held)
		return; /* (re-entered by a signal handler's fork: kept) */
	size_t n = round_pages(len) >> PAGE_SHIFT, first = ((char *)p - arena) >> PAGE_SHIFT;
	if (prim_madvise(p, n << PAGE_SHIFT, MADV_DONTNEED) &&
	    prim_madvise(p, n << PAGE_SHIFT, MADV_DONTNEED_LOCKED))
		memset(p, 0, n << PAGE_SHIFT);
	ALLOC_LOCK(&arena_lock);
	arena_mark(first, n, false);
	if (first < arena_next)
		arena_next = first;
	ALLOC_UNLOCK(&arena_lock);
}

/* ---- malloc's kin: a mapping each, its length in a header ---- */

#define HEADER 16

void *lib_malloc(size_t n)
{
	if (n > SIZE_MAX - HEADER - PAGE_SIZE)
		return NULL;
	size_t len = round_pages(n + HEADER);
	char *m = lib_pages(len);
	if (!m)
		return NULL;
	*(size_t *)m = len;
	return m + HEADER;
}

void *lib_calloc(size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size)
		return NULL;
	return lib_malloc(n * size); /* fresh pages read zeros */
}

void lib_free(void *p)
{
	if (!p)
		return;
	char *m = (char *)p - HEADER;
	lib_pages_free(m, *(size_t *)m);
}

void *lib_realloc(void *p, size_t n)
{
	if (!p)
		return lib_malloc(n);
	char *m = (char *)p - HEADER;
	size_t len = *(size_t *)m;
	if (n + HEADER <= len)
		return p;
	void *q = lib_malloc(n < 2 * (len - HEADER) ? 2 * (len - HEADER) : n);
	if (!q)
		return NULL;
	memcpy(q, p, len - HEADER);
	lib_free(p);
	return q;
}
