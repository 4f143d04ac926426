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
 * write-protected, and a write from anywhere waits until the window
 * closes, then happens on whatever the page then is.  The best mechanism
 * the process is allowed:
 *
 *   uffd       userfaultfd write-protect (UFFDIO_WRITEPROTECT), handling
 *              kernel-mode faults too (root, CAP_SYS_PTRACE, access to
 *              /dev/userfaultfd, or vm.unprivileged_userfaultfd=1): a
 *              writing thread, a read(2) into the page, KVM's fault path
 *              all sleep in the kernel; no signal is involved;
 *   uffd-user  the same for user-mode faults only (UFFD_USER_MODE_ONLY,
 *              what an unprivileged process gets): a system call that
 *              writes into the window would fail with EFAULT, so the
 *              C library's reading calls are interposed (interpose-io.c)
 *              and wait for the window before they start;
 *   mprotect   mprotect without PROT_WRITE: a writer faults, the SIGSEGV
 *              handler sees the address in an open window, waits (futex)
 *              until the window closes and returns, so the write is
 *              retried; any other fault goes to the application's own
 *              handler.  The reading calls are interposed as above, and
 *              threads may not block SIGSEGV (sigprocmask is interposed).
 *
 * SAMEPAGE_WINDOW=uffd|uffd-user|mprotect (or 2|1|0, merge_window's
 * numbers) in the environment chooses one (for tests and measurements);
 * the default is the best one that works.  Another value is said on
 * standard error, once, and taken as unset.
 *
 * I/O in flight: a reading call interposed by interpose-io.c marks its
 * buffer in flight for its duration (a direct-I/O read pins the page and
 * writes it later, after any window check), and libaio's reads until
 * their completion is seen.  A window never opens over a page with I/O in
 * flight (the merge is skipped and counted), and a read never starts in
 * an open window (it waits until the window closes).
 *
 * Guarded reads: the scanner reads pages directly (6 GB/s, against 2.5
 * for /proc/self/mem), under a guard: a fault in the scanner thread (a
 * PROT_NONE page, a range unmapped by a raw syscall) jumps back and the
 * caller falls back to /proc/self/mem, which reads PROT_NONE pages and
 * fails cleanly where nothing is mapped.
 */
#include "internal.h"

#include <errno.h>
#include <linux/userfaultfd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <xxhash.h>
#if defined(__x86_64__) && __has_include(<xxh_x86dispatch.h>)
/* libxxhash's run-time dispatch: the same XXH3-64, with AVX2 or AVX-512
 * where the CPU has them (4x faster here than the SSE2 baseline Debian
 * builds XXH3_64bits for).  The header makes XXH3_64bits call it. */
#include <xxh_x86dispatch.h>
#endif

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

/* The forking thread holds it for writing (fork_held_lock()). */
void as_lock_exclusive(void)
{
	pthread_once(&as_once, as_init);
	if (!fork_forking)
		pthread_rwlock_wrlock(&as_rwlock);
}

void as_lock_shared(void)
{
	pthread_once(&as_once, as_init);
	if (!fork_forking)
		pthread_rwlock_rdlock(&as_rwlock);
}

/* Whether it took it for writing, without waiting. */
bool as_trylock_exclusive(void)
{
	pthread_once(&as_once, as_init);
	return fork_forking || !pthread_rwlock_trywrlock(&as_rwlock);
}

void as_unlock(void)
{
	if (!fork_forking)
		pthread_rwlock_unlock(&as_rwlock);
}

/* In a forked child: the parent's thread held the lock at the fork, and a
 * rwlock can only be released by its owner. */
void as_reinit(void)
{
	pthread_once(&as_once, as_init);
	as_init();
}

/* ---- the window mechanism ---- */

static int uffd = -1;
static int window_kind = WINDOW_MPROTECT;
static pthread_once_t kind_once = PTHREAD_ONCE_INIT;

/* SAMEPAGE_WINDOW as samepage(3) lists it (uffd or 2, uffd-user or 1,
 * mprotect or 0): the mechanism wanted, or -1 for the best one (unset or
 * empty; any other value is said once, then taken as unset). */
static int window_wanted(void)
{
	static const struct {
		const char *name, *number;
		int kind;
	} names[] = {{"uffd", "2", WINDOW_UFFD},
		     {"uffd-user", "1", WINDOW_UFFD_USER},
		     {"mprotect", "0", WINDOW_MPROTECT}};
	static atomic_bool said;
	const char *want = getenv("SAMEPAGE_WINDOW");
	if (!want || !*want)
		return -1;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(want, names[i].name) || !strcmp(want, names[i].number))
			return names[i].kind;
	if (!atomic_exchange(&said, true))
		prim_say(
		    "samepage: SAMEPAGE_WINDOW=%.40s: not a merge window (fix: uffd, uffd-user "
		    "or mprotect, or 2, 1 or 0; unset, the best one this process may use); the "
		    "best one is used\n",
		    want);
	return -1;
}

void guard_window_env_check(void)
{
	(void)window_wanted();
}

static void window_kind_init(void)
{
	int want = window_wanted(), kind = want < 0 ? WINDOW_UFFD : want;
	if (kind == WINDOW_MPROTECT)
		return;
	uffd = prim_userfaultfd(kind == WINDOW_UFFD_USER);
	if (uffd < 0 && kind == WINDOW_UFFD) { /* the next, as unset does */
		kind = WINDOW_UFFD_USER;
		uffd = prim_userfaultfd(true);
	}
	if (uffd >= 0)
		window_kind = kind;
}

int guard_window_kind(void)
{
	pthread_once(&kind_once, window_kind_init);
	return window_kind;
}

/* Releases every page of [start, end) that userfaultfd write-protected,
 * whatever else is mapped there: the whole range in one call, or, if a
 * mapping in it is not registered (the kernel stops there), page by page. */
static void uffd_release(uintptr_t start, uintptr_t end)
{
	if (prim_uffd_writeprotect(uffd, start, end - start, false))
		for (uintptr_t a = start; a < end; a += PAGE_SIZE)
			prim_uffd_writeprotect(uffd, a, PAGE_SIZE, false);
}

/* Write-protects (wp) or releases [start, end) with userfaultfd; a range
 * not registered yet is registered first.  The kernel write-protects a
 * range mapping after mapping and stops at the first one it cannot (a
 * private mapping of a file outside tmpfs: a samepaged pool on a disk),
 * leaving the ones before it protected: a failure releases them all, or
 * their writers would wait for a window that never closes (RELIABILITY.md
 * 65). */
static int uffd_protect(uintptr_t start, uintptr_t end, bool wp)
{
	int err = prim_uffd_writeprotect(uffd, start, end - start, wp);
	if (err == -ENOENT || err == -EINVAL) {
		guard_arm(start, end);
		err = prim_uffd_writeprotect(uffd, start, end - start, wp);
	}
	if (err)
		uffd_release(start, end);
	return err;
}

/* New mappings of a mergeable range (registered, moved, replaced by a
 * merge): write-protecting them later needs them registered. */
void guard_arm(uintptr_t start, uintptr_t end)
{
	if (guard_window_kind() != WINDOW_MPROTECT && end > start)
		prim_uffd_register(uffd, start, end - start, true);
}

/* A range no longer mergeable: the application may register it itself. */
void guard_disarm(uintptr_t start, uintptr_t end)
{
	if (guard_window_kind() != WINDOW_MPROTECT && end > start)
		prim_uffd_register(uffd, start, end - start, false);
}

/* ---- merge windows, I/O in flight and the fault handler ---- */

/* One window at a time per engine is enough (a batch does its runs one
 * after the other); a few slots let several engines merge at once. */
#define MAX_WINDOWS 16
static struct {
	_Atomic uintptr_t start, end;
	bool uffd; /* write-protected with userfaultfd, else mprotect */
} windows[MAX_WINDOWS];
static _Atomic uint32_t window_seq; /* futex word: bumped when a window closes */
/* The slots this thread opened, and the one it is publishing (slot + 1,
 * the end it publishes): a signal handler's sigaltstack() must not wait
 * for a window of its own thread (windows_wait()). */
static __thread volatile uint32_t windows_mine, window_claim;
static __thread volatile uintptr_t window_claim_end;
_Atomic uint64_t merge_window_waits;
_Atomic uint64_t merges_skipped_io;

/* The buffers of reads in flight; io_lock orders them with the windows. */
static pthread_mutex_t io_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t io_cond = PTHREAD_COND_INITIALIZER;
/* Whether this thread is between its lock and unlock of io_lock, and
 * whether it waits on io_cond: a fork from a signal handler that
 * interrupted it must not take the lock again, nor make the condition
 * new under its own wait (guard_fork_lock, guard_fork_child). */
static __thread bool io_entered, io_waiting;

static void io_lock_take(void)
{
	io_entered = true;
	fork_held_lock(&io_lock);
}

static void io_lock_drop(void)
{
	fork_held_unlock(&io_lock);
	io_entered = false;
}

static void io_cond_wait(void)
{
	io_waiting = true;
	pthread_cond_wait(&io_cond, &io_lock);
	io_waiting = false;
}
static struct io_range {
	uintptr_t start, end;
	uintptr_t key; /* libaio's iocb, or 0 */
} * inflight;
static size_t ninflight, inflight_cap;

static struct sigaction chained_segv, chained_bus;

/* Set while the scanner reads guarded.  volatile: the compiler must not
 * drop the store around a memcpy it believes cannot fault. */
static __thread sigjmp_buf *volatile guard_jmp;
/* The last fault this thread took outside any window, to tell a fault
 * whose window closed just before we looked (retry) from a real one. */
static __thread uintptr_t last_fault;
static __thread uint32_t last_fault_seq;
/* While this thread's handler chains a real fault to the handler it
 * replaced: that fault's address, and the handler's frame. */
static __thread uintptr_t chain_addr;
static __thread uintptr_t chain_frame;

static bool overlaps(uintptr_t a, uintptr_t b, uintptr_t s, uintptr_t e)
{
	return a < e && s < b;
}

static bool window_overlaps(uintptr_t start, uintptr_t end)
{
	for (int i = 0; i < MAX_WINDOWS; i++) {
		uintptr_t e = atomic_load(&windows[i].end);
		if (e && overlaps(start, end, atomic_load(&windows[i].start), e))
			return true;
	}
	return false;
}

static bool io_overlaps(uintptr_t start, uintptr_t end)
{
	for (size_t k = 0; k < ninflight; k++)
		if (overlaps(start, end, inflight[k].start, inflight[k].end))
			return true;
	return false;
}

/* libaio's completion rings (io_context_t is the ring's address): their
 * completions end iocbs in flight even when the program reads the ring
 * itself and never calls io_getevents. */
#define AIO_RING_MAGIC 0xa10a10a1
struct aio_ring_head {
	unsigned id, nr, head, tail, magic, compat_features, incompat_features, header_length;
};
struct aio_event {
	uint64_t data, obj;
	int64_t res, res2;
};
#define MAX_RINGS 64
static struct {
	uintptr_t ctx;
	unsigned tail; /* the completions before it are seen */
} rings[MAX_RINGS];
static int nrings;

static void io_end_key_locked(uintptr_t key)
{
	for (size_t k = ninflight; k-- > 0;)
		if (inflight[k].key == key)
			inflight[k] = inflight[--ninflight];
}

/* Ends the iocbs whose completions ring k gained since it was last read. */
static void ring_reap_locked(int k)
{
	struct aio_ring_head h;
	uintptr_t ctx = rings[k].ctx;
	if (!guarded_copy(&h, (const void *)ctx, sizeof(h)) || h.magic != AIO_RING_MAGIC || !h.nr ||
	    h.tail >= h.nr)
		return;
	for (unsigned t = rings[k].tail % h.nr; t != h.tail; t = (t + 1) % h.nr) {
		struct aio_event ev;
		if (!guarded_copy(&ev, (const void *)(ctx + h.header_length + t * sizeof(ev)),
				  sizeof(ev)))
			break;
		io_end_key_locked((uintptr_t)ev.obj);
	}
	rings[k].tail = h.tail;
}

static void rings_reap_locked(void)
{
	for (int k = 0; k < nrings; k++)
		ring_reap_locked(k);
}

/* A libaio context the program submits to: reads its new completions
 * (and starts following it). */
void io_ring_reap(uintptr_t ctx)
{
	struct aio_ring_head h;
	io_lock_take();
	int k = 0;
	while (k < nrings && rings[k].ctx != ctx)
		k++;
	if (k < nrings) {
		ring_reap_locked(k);
	} else if (nrings < MAX_RINGS && guarded_copy(&h, (const void *)ctx, sizeof(h)) &&
		   h.magic == AIO_RING_MAGIC) {
		rings[nrings].ctx = ctx;
		rings[nrings++].tail = h.tail;
	}
	io_lock_drop();
}

/* io_destroy: the ring goes away (its iocbs are cancelled or completed). */
void io_ring_forget(uintptr_t ctx)
{
	io_lock_take();
	for (int k = 0; k < nrings; k++)
		if (rings[k].ctx == ctx) {
			ring_reap_locked(k);
			rings[k] = rings[--nrings];
			break;
		}
	io_lock_drop();
}

/* A slot for [start, end), unless I/O is in flight there.  Under io_lock,
 * as io_begin() checks the windows: a read and a window never overlap. */
static int window_slot(uintptr_t start, uintptr_t end)
{
	int slot = -EBUSY;
	io_lock_take();
	bool busy = io_overlaps(start, end);
	if (busy && nrings) {
		rings_reap_locked(); /* libaio reads may have completed unseen */
		busy = io_overlaps(start, end);
	}
	if (busy) {
		atomic_fetch_add(&merges_skipped_io, 1);
	} else {
		window_claim_end = end;
		for (int i = 0; i < MAX_WINDOWS && slot < 0; i++) {
			uintptr_t zero = 0;
			window_claim = (uint32_t)i + 1;
			atomic_signal_fence(memory_order_seq_cst);
			if (atomic_compare_exchange_strong(&windows[i].end, &zero, end)) {
				windows_mine |= 1u << i;
				atomic_store(&windows[i].start, start);
				slot = i;
			}
		}
		atomic_signal_fence(memory_order_seq_cst);
		window_claim = 0;
	}
	io_lock_drop();
	return slot;
}

static void window_slot_close(int slot)
{
	atomic_store(&windows[slot].start, 0);
	atomic_store(&windows[slot].end, 0);
	atomic_signal_fence(memory_order_seq_cst);
	windows_mine &= ~(1u << slot); /* after: windows_wait() */
	atomic_fetch_add(&window_seq, 1);
	prim_futex_wake(&window_seq);
	io_lock_take();
	pthread_cond_broadcast(&io_cond);
	io_lock_drop();
}

/* fork (fork.c's handlers, after every other lock of the library but the
 * allocator's): the reads in flight are held still across it.  Not when
 * the forking thread holds the lock itself: a signal handler forked while
 * it was inside one of the sections below, which it finishes when the
 * handler returns, in the parent and in the child (taken again here, the
 * process waited for itself for ever). */
static bool io_fork_taken;
static pid_t fork_tid; /* the forking thread's */

void guard_fork_lock(void)
{
	io_fork_taken = prim_fork_mutex_take(&io_lock, io_entered);
	fork_tid = (pid_t)prim_syscall(SYS_gettid);
}

static void altstacks_fork_child(void);

void guard_fork_parent(void)
{
	if (io_fork_taken)
		pthread_mutex_unlock(&io_lock);
}

/*
 * In the forked child, alone in it.  The reads in flight were other
 * threads' (not copied) or libaio's (the child has no AIO context), and
 * the condition may count their waits: the child starts with none (but
 * for this thread's own wait, if a signal handler forked during it, and
 * the list this thread was changing when it did).
 *
 * A userfaultfd acts on the address space that created it: the child's
 * windows need one of the child's own, or they would protect the parent's
 * pages instead of the child's (a child killed in a window left its
 * parent's writers waiting forever).  The child's mappings lost their
 * registrations at the fork; uffd_protect() registers them again.  No
 * window is open across a fork (fork.c holds the address-space lock).
 */
void guard_fork_child(void)
{
	altstacks_fork_child();
	if (io_fork_taken) {
		ninflight = 0;
		nrings = 0;
		if (!io_waiting)
			pthread_cond_init(&io_cond, NULL);
		pthread_mutex_unlock(&io_lock);
	}
	if (uffd < 0)
		return;
	int inherited = uffd;
	uffd = prim_userfaultfd(window_kind == WINDOW_UFFD_USER);
	if (uffd < 0)
		window_kind = WINDOW_MPROTECT; /* as a process that could not open one */
	prim_close(inherited);
}

static bool in_window(uintptr_t a)
{
	return window_overlaps(a, a + 1);
}

/* A read into [start, end) begins: it waits while a window is open there,
 * then the range is in flight until io_end(). */
void io_begin(uintptr_t start, uintptr_t end, uintptr_t key)
{
	io_lock_take();
	while (window_overlaps(start, end)) {
		atomic_fetch_add(&merge_window_waits, 1);
		io_cond_wait();
	}
	if (ninflight == inflight_cap) {
		size_t cap = inflight_cap ? inflight_cap * 2 : 64;
		struct io_range *n = lib_realloc(inflight, cap * sizeof(*n));
		if (!n) {
			/* Cannot remember it: wait for no window instead of
			 * failing the read; merges may then race with it, as
			 * without us.  (Out of memory.) */
			io_lock_drop();
			return;
		}
		inflight = n;
		inflight_cap = cap;
	}
	inflight[ninflight++] = (struct io_range){start, end, key};
	io_lock_drop();
}

/* The reads marked with key are done: every span of one call's flight, or
 * every buffer of libaio's iocb key. */
void io_end(uintptr_t key)
{
	io_lock_take();
	io_end_key_locked(key);
	io_lock_drop();
}

/* Is an iocb still in flight (libaio)? */
bool io_pending(uintptr_t key)
{
	bool found = false;
	io_lock_take();
	for (size_t k = 0; k < ninflight && !found; k++)
		found = inflight[k].key == key;
	io_lock_drop();
	return found;
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

/* A SIGSEGV or SIGBUS some process sent (kill, raise, sigqueue: si_code
 * <= 0) is no fault: nothing to wait for or retry, and returning does not
 * send it again.  It goes where it would go without us: the handler we
 * replaced, nowhere if that ignores it, else the default action (the
 * process dies of it, as the shell's 128+n shows). */
static void sent_signal(int sig, siginfo_t *si, void *uc)
{
	const struct sigaction *old = sig == SIGSEGV ? &chained_segv : &chained_bus;
	if (old->sa_handler == SIG_IGN)
		return;
	if (old->sa_handler != SIG_DFL) {
		chain(old, sig, si, uc);
		return;
	}
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	prim_sigaction(sig, &dfl, NULL);
	raise(sig); /* unblocked here (SA_NODEFER): delivered at once */
}

static void fault_handler(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;
	uintptr_t a = (uintptr_t)si->si_addr;

	if (si->si_code <= 0) { /* SI_FROMUSER */
		sent_signal(sig, si, uc);
		errno = saved;
		return;
	}
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
	/* A handler installed after ours that saved ours as its previous one
	 * chains back to us: the same fault, deeper on the same stack, while
	 * we chain to it.  Then nobody handles it: the default action (as
	 * chain() does when nobody is there), not a recursion between the two
	 * for ever. */
	uintptr_t frame = (uintptr_t)__builtin_frame_address(0);
	if (chain_frame && chain_addr == a && frame < chain_frame) {
		struct sigaction dfl = {.sa_handler = SIG_DFL};
		prim_sigaction(sig, &dfl, NULL);
		errno = saved;
		return;
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
	chain_addr = a;
	chain_frame = frame;
	chain(sig == SIGSEGV ? &chained_segv : &chained_bus, sig, si, uc);
	chain_frame = 0;
}

/* Installs the handler, or re-installs it if the application replaced it
 * since (and then chains to the application's handler).  Called before
 * every batch, so an application may install its handler at any time.
 * (sigsetjmp(jb, 0) in the guards: SA_NODEFER keeps SIGSEGV unblocked in
 * the handler, so there is no mask to restore and no syscall to pay.) */
static _Atomic bool handler_set; /* handler_ensure() ran: an engine was started */

void handler_ensure(void)
{
	atomic_store(&handler_set, true);
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

static bool altstack_overlaps(uintptr_t start, uintptr_t end);

/*
 * Opens a window over [start, end) and write-protects it (if prot has
 * PROT_WRITE): from here until window_close(), a writer waits.  Returns
 * the slot, or a negative errno (nothing changed): -EBUSY when I/O is in
 * flight in the range or every slot is taken.
 */
int window_open(uintptr_t start, uintptr_t end, int prot)
{
	int slot = window_slot(start, end);
	if (slot < 0)
		return slot;
	debug_pause("window_open");
	/* Not over a signal stack (RELIABILITY.md 97): looked at once the
	 * slot is published, so that a sigaltstack() noted after this waits
	 * for the window to close (guard_sigaltstack()). */
	if (altstack_overlaps(start, end)) {
		window_slot_close(slot);
		return -EBUSY;
	}
	windows[slot].uffd = false;
	if (!(prot & PROT_WRITE))
		return slot;
	if (guard_window_kind() != WINDOW_MPROTECT && !uffd_protect(start, end, true)) {
		windows[slot].uffd = true; /* writers wait in the kernel */
		return slot;
	}
	handler_ensure(); /* the mprotect fallback's writers wait in our handler */
	int err = prim_mprotect((void *)start, end - start, prot & ~PROT_WRITE);
	if (err) {
		window_slot_close(slot);
		return err;
	}
	return slot;
}

/* Gives [start, end), part of window slot, its protection back (where the
 * caller did not replace the mapping itself); its writers go on. */
void window_restore(int slot, uintptr_t start, uintptr_t end, int prot)
{
	if (!(prot & PROT_WRITE))
		return;
	if (windows[slot].uffd)
		uffd_protect(start, end, false);
	else
		prim_mprotect((void *)start, end - start, prot);
}

/* Closes the window and wakes its writers: those of replaced mappings
 * retry on the new mapping. */
void window_close(int slot)
{
	uintptr_t start = atomic_load(&windows[slot].start), end = atomic_load(&windows[slot].end);
	if (windows[slot].uffd)
		prim_uffd_wake(uffd, start, end - start);
	window_slot_close(slot);
}

/* ---- signal stacks (sigaltstack) ---- */

/*
 * The kernel writes a signal's frame on the thread's signal stack, and a
 * kernel write into an open window fails under the uffd-user and mprotect
 * windows: the signal cannot be delivered, and the kernel kills the
 * process with SIGSEGV (RELIABILITY.md 97).  So no window opens over a
 * signal stack.  sigaltstack() notes the new stack here, with no lock and
 * nothing allocated (it is async-signal-safe, and sanitizers' threads call
 * it as they start), then waits for the windows open over it to close:
 * a window that opens after the note sees it (window_open() checks it
 * after it published its own slot, the note is published before the
 * windows are looked at, both sequentially consistent: one of the two
 * sees the other).  The scanners read the notes at their next batch and
 * keep those pages out of merging (altstack_each()).
 *
 * A slot is a thread's (its tid) and a call's number in it; the call's
 * successful change lets the thread's earlier slots go (a stack replaced
 * or disabled may merge again: the pages it noted stay kept out, by the
 * promise the scanner set), but for the stacks its last calls replaced
 * and the one it runs on: a signal handler's change is undone by the
 * kernel as the handler returns, and nested handlers' in turn (those
 * slots go at a later call); a stack noted again lets its older slot go.
 * A slot whose thread ended is freed where a window meets it, by a
 * scanner's first look at it, or by a call that finds the table full.
 * When every slot is taken by a live thread, the stack goes into one
 * spill range, the union of the stacks the table could not hold, where no
 * window opens for the process's life (nothing merges there: safe, at a
 * cost to merging only).
 */
#define ALTSTACK_SLOTS 256
#define ALTSTACK_FREEING UINT64_MAX /* an owner: a thread other than the slot's frees it */
static struct altstack_slot {
	_Atomic uint64_t owner; /* tid << 32 | the thread's call number; 0: free */
	_Atomic uint32_t seq;	/* odd while start and end change */
	_Atomic uint32_t noted; /* altstack_gen its note made; 0 until then */
	_Atomic uintptr_t start, end;
} altstacks[ALTSTACK_SLOTS];
static _Atomic uintptr_t spill_lo = UINTPTR_MAX, spill_hi;
static _Atomic uint32_t altstack_gen; /* bumped at each stack noted */
static _Atomic int altstack_top;      /* the slots ever taken are below it */
static __thread uint32_t altstack_calls, altstack_depth;
/* The stacks replaced by the thread's last calls that set one: a signal
 * handler's frame holds the stack the kernel puts back as it returns, and
 * nested handlers each hold one (RELIABILITY.md 112). */
#define ALTSTACK_REPLACED 3 /* a handler's handler's handler */
static __thread struct {
	uintptr_t s, e;
} altstack_replaced[ALTSTACK_REPLACED];
static __thread _Atomic uint32_t altstack_replaced_n;

/* Notes [s, e) as replaced by the thread's latest call.  The entry is
 * taken first, by one instruction a signal cannot split: a nested
 * handler's call coming in while it is written takes the next one,
 * instead of writing its own over this one's half (which left an entry
 * made of two stacks' halves, both lost).  Read at depth 1 only, which no
 * write of the thread's is under way beneath. */
static void replaced_add(uintptr_t s, uintptr_t e)
{
	uint32_t n = atomic_fetch_add_explicit(&altstack_replaced_n, 1, memory_order_relaxed);
	altstack_replaced[n % ALTSTACK_REPLACED].s = s;
	altstack_replaced[n % ALTSTACK_REPLACED].e = e;
	atomic_signal_fence(memory_order_seq_cst);
}

/* Whether [s, e) meets one of the thread's stacks replaced lately. */
static bool replaced_lately(uintptr_t s, uintptr_t e)
{
	uint32_t n = atomic_load_explicit(&altstack_replaced_n, memory_order_relaxed);
	for (uint32_t i = 0; i < n && i < ALTSTACK_REPLACED; i++)
		if (overlaps(s, e, altstack_replaced[i].s, altstack_replaced[i].e))
			return true;
	return false;
}

/* The range of slot k, false if none; *busy if it is being written. */
static bool slot_range(struct altstack_slot *k, uintptr_t *s, uintptr_t *e, bool *busy)
{
	*busy = false;
	if (!atomic_load(&k->owner))
		return false;
	uint32_t q = atomic_load(&k->seq);
	*s = atomic_load(&k->start);
	*e = atomic_load(&k->end);
	if ((q & 1) || atomic_load(&k->seq) != q) {
		*busy = true;
		return false;
	}
	return *e > *s;
}

static void slot_write(struct altstack_slot *k, uintptr_t s, uintptr_t e)
{
	atomic_fetch_add(&k->seq, 1);
	atomic_store(&k->start, s);
	atomic_store(&k->end, e);
	atomic_fetch_add(&k->seq, 1);
}

static void slot_free(struct altstack_slot *k)
{
	slot_write(k, 0, 0);
	atomic_store(&k->noted, 0); /* before the slot can be taken again */
	atomic_store(&k->owner, 0);
}

/* Might [start, end) be a signal stack now (or about to be one)? */
static bool slot_reap(struct altstack_slot *k, pid_t pid);

/* A slot of a thread that ended is freed where it is met (its stack takes
 * no frame any more, and its memory may be mapped again for anything: a
 * sanitizer runtime's threads set a stack as they start and unmap it,
 * with its own system calls, as they end). */
static bool altstack_overlaps(uintptr_t start, uintptr_t end)
{
	uintptr_t hi = atomic_load(&spill_hi), lo = atomic_load(&spill_lo);
	if (hi && overlaps(start, end, lo, hi))
		return true;
	pid_t pid = 0;
	for (int i = 0, top = atomic_load(&altstack_top); i < top; i++) {
		uintptr_t s, e;
		bool busy;
		if (!slot_range(&altstacks[i], &s, &e, &busy)) {
			if (busy)
				return true;
			continue;
		}
		if (!overlaps(start, end, s, e))
			continue;
		if (!pid)
			pid = prim_getpid();
		if (!slot_reap(&altstacks[i], pid))
			return true;
	}
	return false;
}

/* Frees slot k if its thread has ended (tgkill(0): ESRCH).  The slot is
 * taken first (ALTSTACK_FREEING) and the thread looked at then: a slot
 * freed and taken again meanwhile by a thread of the same tid and call
 * number is that thread's, alive, and given back. */
static bool slot_reap(struct altstack_slot *k, pid_t pid)
{
	uint64_t o = atomic_load(&k->owner);
	if (!o || o == ALTSTACK_FREEING ||
	    !atomic_compare_exchange_strong(&k->owner, &o, ALTSTACK_FREEING))
		return false;
	int saved = errno;
	bool dead = prim_syscall(SYS_tgkill, pid, (pid_t)(o >> 32), 0) && errno == ESRCH;
	errno = saved;
	if (dead)
		slot_free(k);
	else /* (unless its thread freed it meanwhile: a failed call's note) */
		atomic_compare_exchange_strong(&k->owner, &(uint64_t){ALTSTACK_FREEING}, o);
	return dead;
}

/* A slot for the stack [s, e) of the call me, or the spill range (NULL).
 * A full table first frees the slots of threads that ended. */
static struct altstack_slot *altstack_note(uint64_t me, uintptr_t s, uintptr_t e)
{
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < ALTSTACK_SLOTS; i++) {
			uint64_t free = 0;
			if (atomic_load(&altstacks[i].owner))
				continue;
			/* The bound first: a reader that sees the slot taken scans it. */
			int top = atomic_load(&altstack_top);
			while (top < i + 1 &&
			       !atomic_compare_exchange_weak(&altstack_top, &top, i + 1))
				;
			if (atomic_compare_exchange_strong(&altstacks[i].owner, &free, me)) {
				slot_write(&altstacks[i], s, e);
				return &altstacks[i];
			}
		}
		bool reaped = false;
		for (int i = 0, top = atomic_load(&altstack_top); !pass && i < top; i++)
			reaped |= slot_reap(&altstacks[i], prim_getpid());
		if (!reaped)
			break;
	}
	uintptr_t v = atomic_load(&spill_lo); /* the low end first: see altstack_overlaps() */
	while (s < v && !atomic_compare_exchange_weak(&spill_lo, &v, s))
		;
	v = atomic_load(&spill_hi);
	while (e > v && !atomic_compare_exchange_weak(&spill_hi, &v, e))
		;
	return NULL;
}

/* Waits until no window but this thread's own is open over [s, e). */
static void windows_wait(uintptr_t s, uintptr_t e)
{
	for (;;) {
		uint32_t seq = atomic_load(&window_seq);
		bool open = false;
		for (int i = 0; i < MAX_WINDOWS && !open; i++) {
			uintptr_t we = atomic_load(&windows[i].end);
			bool mine = (windows_mine & (1u << i)) ||
				    (window_claim == (uint32_t)i + 1 && we == window_claim_end);
			open = !mine && we && overlaps(s, e, atomic_load(&windows[i].start), we);
		}
		if (!open)
			return;
		prim_futex_wait(&window_seq, seq);
	}
}

/*
 * Whether slot k (its owner o when looked at) stays noted after the call
 * me (tid << 32 | its number in the thread) set a stack, with its own
 * stack at sp, and noted [ns, ne) in slot mine (or nothing: NULL).  The
 * thread's other slots go: a stack replaced or disabled takes no frame any
 * more (its pages stay kept out by the promise the scanner set).
 */
static bool slot_still_needed(struct altstack_slot *k, uint64_t o, uint64_t me, uintptr_t sp,
			      struct altstack_slot *mine, uintptr_t ns, uintptr_t ne)
{
	uintptr_t s, e;
	bool busy;
	/* Another thread's (or one being reaped): not this call's to free. */
	if (o >> 32 != me >> 32)
		return true;
	/* This call's own, or a later call's of the thread (a signal
	 * handler's, come in meanwhile: its stack may be the one set now). */
	if ((int32_t)((uint32_t)o - (uint32_t)me) >= 0)
		return true;
	/* No range (freed, or being written): nothing to free. */
	if (!slot_range(k, &s, &e, &busy))
		return true;
	/* Within the stack this call noted: noted twice (a thread going back
	 * and forth between two stacks keeps two slots). */
	if (mine && k != mine && s >= ns && e <= ne)
		return false;
	/* The stack this call runs on: a signal handler running on a stack
	 * set with SS_AUTODISARM gets it back from the kernel as it returns. */
	if (sp >= s && sp < e)
		return true;
	/* A stack replaced, by this call or one of the thread's last ones: a
	 * signal handler's change is undone by the kernel as the handler
	 * returns (rt_sigreturn puts back the stack its frame saved), and so
	 * is each nested handler's, in turn (RELIABILITY.md 112). */
	return replaced_lately(s, e);
}

/*
 * sigaltstack(2), noted first (see above).  Async-signal-safe: no lock,
 * no allocation; a signal handler's call inside this one (depth 2) lets
 * no slot go, nor does this one after it (the handler's stack may be the
 * one set now): those slots stay until the thread's next call.
 */
int guard_sigaltstack(const stack_t *ss, stack_t *old)
{
	uint32_t call = ++altstack_calls;
	uint64_t me = (uint64_t)(uint32_t)prim_syscall(SYS_gettid) << 32 | call;
	struct altstack_slot *mine = NULL;
	stack_t want = {0}, was = {0};
	bool set = false;
	if (ss) {
		ssize_t r = prim_self_read(&want, ss, sizeof(want));
		if (r != -EFAULT && r != (ssize_t)sizeof(want))
			want = *ss; /* process_vm_readv refused (seccomp) */
		set = r != -EFAULT;
	}
	altstack_depth++;
	uintptr_t high = (uintptr_t)want.ss_sp + want.ss_size, ns = 0, ne = 0;
	if (set && !(want.ss_flags & SS_DISABLE) && want.ss_size && high > (uintptr_t)want.ss_sp) {
		ns = (uintptr_t)want.ss_sp & ~(uintptr_t)(PAGE_SIZE - 1);
		ne = (high + PAGE_SIZE - 1) & ~(uintptr_t)(PAGE_SIZE - 1);
		ne = ne ? ne : UINTPTR_MAX;
		mine = altstack_note(me, ns, ne);
		uint32_t gen = atomic_fetch_add(&altstack_gen, 1) + 1;
		if (mine) /* its range first: see altstack_each() */
			atomic_store(&mine->noted, gen);
		windows_wait(ns, ne);
	}
	int saved = errno;
	/* The stack replaced, from the kernel: the caller's old, or ours. */
	long rc = prim_syscall(SYS_sigaltstack, ss, old ? old : &was);
	if (rc)
		saved = errno;
	/* EFAULT writing old comes after the change (the kernel's order):
	 * the stack is set, its note stays. */
	if (rc && mine && !(old && saved == EFAULT))
		slot_free(mine);
	if (!rc && old && prim_self_read(&was, old, sizeof(was)) != (ssize_t)sizeof(was))
		set = false; /* the stack replaced unknown: nothing let go */
	uintptr_t ws = (uintptr_t)was.ss_sp, we = ws + was.ss_size;
	if (!rc && set && !(was.ss_flags & SS_DISABLE) && we > ws) /* SS_DISABLE: no stack */
		replaced_add(ws, we);
	/* The thread's earlier slots go (RELIABILITY.md 97), but for those
	 * slot_still_needed() keeps, only:
	 * - after a change made (rc 0) whose stack replaced is known (set);
	 * - in the thread's outermost call (depth 1): a signal handler's call
	 *   inside another lets nothing go;
	 * - if no signal handler's call came in since this one was counted
	 *   (its stack may be the one set now).
	 * The slots kept go at a later call. */
	if (!rc && set && altstack_depth == 1 && altstack_calls == call)
		for (int i = 0, top = atomic_load(&altstack_top); i < top; i++) {
			uint64_t o = atomic_load(&altstacks[i].owner);
			if (!slot_still_needed(&altstacks[i], o, me, (uintptr_t)&want, mine, ns,
					       ne) &&
			    atomic_compare_exchange_strong(&altstacks[i].owner, &o,
							   ALTSTACK_FREEING))
				slot_free(&altstacks[i]);
		}
	altstack_depth--;
	errno = saved;
	return (int)rc;
}

/* In a forked child, alone in it: the forking thread's signal stacks are
 * its own still (it has a tid of its own now), the other threads' went
 * with them (one stopped by the fork halfway through its note would have
 * kept its slot busy, and every window shut, for ever). */
static void altstacks_fork_child(void)
{
	uint64_t me = (uint64_t)(uint32_t)prim_syscall(SYS_gettid) << 32;
	for (int i = 0, top = atomic_load(&altstack_top); i < top; i++) {
		struct altstack_slot *k = &altstacks[i];
		uint64_t o = atomic_load(&k->owner);
		if (o && o != ALTSTACK_FREEING && (pid_t)(o >> 32) == fork_tid) {
			atomic_store(&k->owner, me | (uint32_t)o);
		} else if (o) {
			atomic_store(&k->seq, 0);
			atomic_store(&k->noted, 0);
			atomic_store(&k->start, 0);
			atomic_store(&k->end, 0);
			atomic_store(&k->owner, 0);
		}
	}
}

/* The scanner: fn(s, e, arg) for every signal stack noted since *seen
 * said (the caller's last look; 0: never looked); the slot of a thread that
 * ended is freed instead (its stack cannot take a frame any more).  A slot
 * looked at before is not looked at again, so a batch after thread starts
 * costs one tgkill() per new stack, not one per stack noted (ended threads'
 * slots left over are freed where a window meets them, or when the table
 * fills).  A slot's range is published before its generation (0 until
 * then: looked at), and the generation after altstack_gen counts it: a
 * slot whose noted is at most *seen was in the table, in full, at the last
 * look. */
void altstack_each(uint32_t *seen, void (*fn)(uintptr_t s, uintptr_t e, void *arg), void *arg)
{
	uint32_t gen = atomic_load(&altstack_gen), since = *seen;
	if (gen == since)
		return;
	*seen = gen;
	pid_t pid = prim_getpid();
	for (int i = 0, top = atomic_load(&altstack_top); i < top; i++) {
		struct altstack_slot *k = &altstacks[i];
		uintptr_t s, e;
		bool busy;
		if (!slot_range(k, &s, &e, &busy))
			continue;
		uint32_t noted = atomic_load(&k->noted);
		if (since && noted && (int32_t)(noted - since) <= 0)
			continue;	/* looked at before */
		if (!slot_reap(k, pid)) /* an ended thread's: no frame goes there */
			fn(s, e, arg);
	}
}

/* ---- what a thread must never put in a window of its own ---- */

/* The mapping holding the library's static data (its .bss: the windows,
 * the locks): the library's own, never merged (alloc.c). */
static int own_statics(const struct map_entry *e, void *arg)
{
	uintptr_t a = (uintptr_t)arg;
	if (a >= e->start && a < e->end) {
		own_add(e->start, e->end);
		return 1;
	}
	return 0;
}

static void own_statics_once(void)
{
	prim_maps_walk(0, own_statics, (void *)&window_seq);
}

void guard_own_statics(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, own_statics_once);
}

/* Does [start, end) overlap the calling thread's stack?  A thread that
 * opened a window there would wait for itself at its next call. */
bool guard_on_own_stack(uintptr_t start, uintptr_t end)
{
	static __thread uintptr_t lo, hi;
	if (!hi) {
		pthread_attr_t a;
		void *base;
		size_t size;
		if (pthread_getattr_np(pthread_self(), &a) == 0) {
			if (pthread_attr_getstack(&a, &base, &size) == 0) {
				lo = (uintptr_t)base;
				hi = lo + size;
			}
			pthread_attr_destroy(&a);
		}
		if (!hi) { /* unknown: around this frame */
			lo = (uintptr_t)&a - (1UL << 20);
			hi = (uintptr_t)&a + (1UL << 16);
		}
	}
	return start < hi && lo < end;
}

/* ---- guarded reads ---- */

#ifdef __SANITIZE_ADDRESS__
#define APP_ACCESS __attribute__((no_sanitize_address))
/* The engine reads the application's memory as the kernel's KSM does, a
 * page at a time, whatever the application's allocator keeps in it (under
 * AddressSanitizer: redzones); those reads are not the program's. */
APP_ACCESS static void app_copy(void *dst, const void *src, size_t len)
{
	const volatile unsigned char *s = src;
	unsigned char *d = dst;
	for (size_t i = 0; i < len; i++)
		d[i] = s[i];
}

APP_ACCESS static int app_cmp(const void *a, const void *b, size_t len)
{
	const volatile unsigned char *x = a, *y = b;
	for (size_t i = 0; i < len; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}
#else
#define APP_ACCESS
#define app_copy memcpy
#define app_cmp memcmp
#endif

/* Reads len bytes at src, memory the application owns or a call was given,
 * which may be a bad pointer: false where the kernel would refuse it with
 * EFAULT.  Under the fault guard once this library's handler is in place
 * (an engine was started); before, with process_vm_readv, a system call
 * (the wrappers that may run then, ioctl's userfaultfd registrations, are
 * rare). */
bool guarded_copy(void *dst, const void *src, size_t len)
{
	sigjmp_buf jb;
	if (!atomic_load_explicit(&handler_set, memory_order_relaxed))
		return prim_self_read(dst, src, len) == (ssize_t)len;
	if (sigsetjmp(jb, 0) == 0) {
		guard_jmp = &jb;
		app_copy(dst, src, len);
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
		eq = app_cmp(a, b, len) == 0;
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

/* XXH3-64 of a page of the engine's own memory (the dispatched one). */
uint64_t page_hash(const void *page)
{
	return XXH3_64bits(page, PAGE_SIZE);
}

/*
 * Makes the page at a a private copy by writing it: an atomic add of zero
 * to its first byte when the application may write it (a real write, so
 * the kernel copies the page, that cannot lose a concurrent writer's
 * store), else a rewrite through /proc/self/mem, which forces the same
 * copy and races with no writer.  prot is the page's protection.
 */
APP_ACCESS int guarded_touch(uintptr_t a, int prot)
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
