// SPDX-License-Identifier: MIT
/*
 * guard.c - what lets the engine change pages under a running program:
 * the address-space lock, merge windows with the fault handler, and reads
 * of application memory that survive a fault.
 *
 * The address-space lock: the application's own mmap/munmap/mremap/
 * mprotect/madvise calls (interpose.c) take it shared, a batch of merges
 * takes it exclusive, so that an application that unmaps or re-protects a
 * range never races with a merge of that range (which would map memory
 * back where it was removed, or undo its protection): the kernel's mmap
 * lock, in user space.
 *
 * Merge windows: while a run of pages is compared and replaced, it is
 * write-protected (mprotect without PROT_WRITE).  A writer faults; the
 * SIGSEGV handler sees the address in an open window, waits (futex) until
 * the window closes, and returns: the write is retried on whatever the
 * page then is.  Any other fault goes to the application's own handler.
 *
 * Guarded reads: the scanner reads pages directly (6 GB/s, against 2.5
 * for /proc/self/mem), under a guard: a fault in the scanner thread (a
 * PROT_NONE page, a range unmapped by a raw syscall) jumps back and the
 * caller falls back to /proc/self/mem, which reads PROT_NONE pages and
 * fails cleanly where nothing is mapped.
 */
#include "internal.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
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

/* Set while the scanner reads guarded.  volatile: the compiler must not
 * drop the store around a memcpy it believes cannot fault. */
static __thread sigjmp_buf *volatile guard_jmp;
/* The last fault this thread took outside any window, to tell a fault
 * whose window closed just before we looked (retry) from a real one. */
static __thread uintptr_t last_fault;
static __thread uint32_t last_fault_seq;

static int window_slot(uintptr_t start, uintptr_t end)
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

static void window_slot_close(int slot)
{
	atomic_store(&windows[slot].start, 0);
	atomic_store(&windows[slot].end, 0);
	atomic_fetch_add(&window_seq, 1);
	prim_futex_wake(&window_seq);
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
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	prim_sigaction(sig, &dfl, NULL);
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
			prim_futex_wait(&window_seq, seq);
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
		prim_sigaction(sigs[i], NULL, &cur);
		if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == fault_handler)
			continue;
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = fault_handler;
		sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK | SA_RESTART;
		sigemptyset(&sa.sa_mask);
		*saved[i] = cur;
		prim_sigaction(sigs[i], &sa, NULL);
	}
}

/*
 * Opens a window over [start, end) and write-protects it (if prot has
 * PROT_WRITE): from here until window_close(), a writer waits.  Returns
 * the slot, or a negative errno (nothing changed).
 */
int window_open(uintptr_t start, uintptr_t end, int prot)
{
	handler_ensure(); /* writers must wait in our handler, not crash */
	int slot = window_slot(start, end);
	if (slot < 0)
		return -EBUSY;
	if (prot & PROT_WRITE) {
		int err = prim_mprotect((void *)start, end - start, prot & ~PROT_WRITE);
		if (err) {
			window_slot_close(slot);
			return err;
		}
	}
	return slot;
}

/* Gives [start, end) its protection back (where the caller did not
 * replace the mapping itself) and wakes the writers. */
void window_restore(uintptr_t start, uintptr_t end, int prot)
{
	if (prot & PROT_WRITE)
		prim_mprotect((void *)start, end - start, prot);
}

void window_close(int slot)
{
	window_slot_close(slot);
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
	return prim_mem_read((uintptr_t)src, dst, len) == (ssize_t)len;
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

/*
 * Makes the page at a a private copy by writing it: an atomic add of zero
 * to its first byte when the application may write it (a real write, so
 * the kernel copies the page, that cannot lose a concurrent writer's
 * store), else a rewrite through /proc/self/mem, which forces the same
 * copy and races with no writer.  prot is the page's protection.
 */
int guarded_touch(uintptr_t a, int prot)
{
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
	ssize_t n = prim_mem_read(a, &b, 1);
	if (n == 1)
		n = prim_mem_write(a, &b, 1);
	return n == 1 ? 0 : n < 0 ? (int)n : -EFAULT;
}
