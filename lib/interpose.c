// SPDX-License-Identifier: MIT
/*
 * interpose.c - the application's own address-space calls.
 *
 * The kernel's KSM holds the mm's mmap lock while it merges, so munmap(),
 * mremap() and mprotect() never race with a merge.  libsamepage defines
 * these functions itself (they are found before the C library's), and
 * makes each take the address-space lock shared while a batch of merges
 * holds it exclusive; then it tells the engines what changed.  So an
 * application may unmap, move or re-protect a mergeable range at any time,
 * from any thread, and no merge maps memory back where it was removed.
 *
 *  - munmap, and mmap with MAP_FIXED over a range: the range is forgotten;
 *  - mremap: merged pages of the old range get private copies first (the
 *    pool pages they map could otherwise be reclaimed), and the new range
 *    stays mergeable, as VM_MERGEABLE moves with a kernel VMA;
 *  - mprotect: the engines reread the protections before merging again;
 *  - madvise(MADV_DONTNEED/FREE/REMOVE): merged pages become fresh zeroed
 *    memory, as they would be without us (see the hazard in samepage.h).
 *
 * Calls that bypass the C library (a system call instruction in the
 * program's own code, glibc's own internal munmap in free(); syscall()
 * itself outside the preload library, which routes it here) are not seen;
 * for those, the engine asks the kernel about a run's mapping before it
 * merges there (PROCMAP_QUERY, where the maps it read are over a second
 * old), rereads /proc/self/maps every 10 s (every second before Linux
 * 6.11), reads memory only under a fault guard, and never reclaims a pool
 * page that some mapping may still read.  With no engine open, every
 * wrapper is one atomic load and the syscall.
 */
#include "internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/userfaultfd.h>
#include <linux/vfio.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* Set by the preload library (preload.c): where the program's own
 * MADV_MERGEABLE/MADV_UNMERGEABLE go, and what a forked child must do at
 * its first interposed call. */
int (*interpose_merge_advice)(void *addr, size_t len, int advice);
void (*_Atomic interpose_pending)(void);

/* The wrappers keep promises (promise.c) before any engine is open too,
 * under a lock a forked child must not find held: fork's handlers (which
 * take it across the fork) are there from the start. */
static void blocks_check(void);

__attribute__((constructor)) static void interpose_init(void)
{
	blocks_check();
	fork_init();
}

/* Whether an engine is open (then the calls take the locks); runs what is
 * pending first. */
bool interpose_active(void)
{
	void (*f)(void) = atomic_load(&interpose_pending);
	if (f && atomic_compare_exchange_strong(&interpose_pending, &f, NULL))
		f();
	return atomic_load(&nengines) > 0;
}

#define active() interpose_active()

/* The C library's convention, from prim's 0-or-negative-errno. */
static int libc_result(int err)
{
	if (err < 0) {
		errno = -err;
		return -1;
	}
	return err;
}

static void *libc_map_result(int err, void *const *m)
{
	if (err < 0) {
		errno = -err;
		return MAP_FAILED;
	}
	return *m;
}

static void lock_new_mapping(void *addr, size_t len);

/* What a new mapping at [a, a + l) is promised: nothing left by memory
 * unmapped unseen here (samepage_free, the C library's own munmap), but
 * its own MAP_LOCKED (a registration may have read `lo` from smaps before
 * this: RELIABILITY.md 48) and mlockall's MCL_FUTURE. */
static void promise_new_mapping(void *m, size_t l, int flags)
{
	uintptr_t a = (uintptr_t)m;
	promise_set(a, a + l, 0, false);
	if (flags & MAP_LOCKED)
		promise_set(a, a + l, PROMISE_LOCKED, true);
	lock_new_mapping(m, l);
}

/* A length as the kernel takes it: whole pages, the last one partly
 * asked for too (munmap(p, 4097) unmaps two pages). */
static size_t pages_len(size_t len)
{
	return (len + PAGE_SIZE - 1) & ~(size_t)(PAGE_SIZE - 1);
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	void *m = NULL;
	size_t l = pages_len(len);
	bool anon = (flags & MAP_ANONYMOUS) && (flags & MAP_TYPE) == MAP_PRIVATE;
	if (!active() || !(flags & MAP_FIXED) || (flags & MAP_FIXED_NOREPLACE)) {
		int err = prim_mmap(&m, addr, len, prot, flags, fd, off);
		if (!err) {
			debug_pause("mmap");
			promise_new_mapping(m, l, flags);
		}
		if (!err && anon && active())
			engine_note_new();
		return libc_map_result(err, &m);
	}
	as_lock_shared();
	int err = prim_mmap(&m, addr, len, prot, flags, fd, off);
	if (!err) {
		engine_note_unmap((uintptr_t)addr, l);
		promise_new_mapping(m, l, flags);
		if (anon)
			engine_note_new();
	}
	as_unlock();
	return libc_map_result(err, &m);
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
    __attribute__((alias("mmap")));

EXPORT int munmap(void *addr, size_t len)
{
	if (!active())
		return libc_result(prim_munmap(addr, len));
	as_lock_shared();
	int err = prim_munmap(addr, len);
	if (!err) {
		size_t l = pages_len(len);
		engine_note_unmap((uintptr_t)addr, l);
		promise_set((uintptr_t)addr, (uintptr_t)addr + l, 0, false);
	}
	as_unlock();
	return libc_result(err);
}

/* mprotect (pkey -1) or pkey_mprotect under the address-space lock, the
 * change noted for the engines: -errno or 0. */
static int protect(void *addr, size_t len, int prot, int pkey)
{
	bool on = active();
	if (on)
		as_lock_shared();
	int err = pkey == -1 ? prim_mprotect(addr, len, prot) : 0;
	if (pkey != -1 && prim_syscall(SYS_pkey_mprotect, addr, len, prot, pkey))
		err = -errno;
	if (on && !err)
		engine_note_change((uintptr_t)addr, len);
	if (on)
		as_unlock();
	return err;
}

EXPORT int mprotect(void *addr, size_t len, int prot)
{
	return libc_result(protect(addr, len, prot, -1));
}

/* Runs fn on every engine of this process that has a region in range,
 * inside engine_enter(). */
static int for_engines_in(uintptr_t start, size_t len,
			  int (*fn)(struct samepage *sp, uintptr_t start, size_t len))
{
	int err = 0;
	fork_held_lock(&engines_lock);
	for (struct samepage *sp = engines; sp; sp = sp->next_engine) {
		if (!hold_if_hits(sp, start, len, false))
			continue;
		engine_enter(sp);
		int e = fn(sp, start, len);
		engine_leave(sp);
		if (e && !err)
			err = e;
		engine_unlock(sp);
	}
	fork_held_unlock(&engines_lock);
	return err;
}

/* mremap: the engine's merged pages in the range are one anonymous
 * mapping with the contents again (what the application mapped), and the
 * parts it had registered are noted, to register them again where they
 * move to (engines_hold() keeps the engine held until then, so that no
 * merge happens between the unmerge and the move). */
static void prepare_move(struct samepage *sp, uintptr_t start, size_t len, void *ctx)
{
	int *failed = ctx;
	sp->nmoved = 0;
	for (size_t ri = 0; ri < sp->nregions; ri++) {
		struct region *r = &sp->regions[ri];
		size_t from, to;
		if (!region_clip(r, start, start + len, &from, &to))
			continue;
		int err = unmerge_for_mremap(sp, r, from, to);
		if (err < 0 && !*failed) /* (-EBUSY: I/O in flight kept a chunk) */
			*failed = err == -EBUSY ? -ENOMEM : err;
		if (sp->nmoved == sp->moved_cap) {
			size_t cap = sp->moved_cap ? 2 * sp->moved_cap : 16;
			struct moved_part *m = lib_realloc(sp->moved, cap * sizeof(*m));
			if (!m)
				continue; /* no memory: not registered where it lands */
			sp->moved = m;
			sp->moved_cap = cap;
		}
		sp->moved[sp->nmoved].off = region_addr(r, from) - start;
		sp->moved[sp->nmoved].len = (to - from) << PAGE_SHIFT;
		sp->nmoved++;
	}
}

/* The promises follow an mremap: what moved is promised where it lands
 * (the rest of a new place is new memory), what it grew is new memory, and
 * what it gave up (a shrink, or the old place) is forgotten, but for the
 * old place MREMAP_DONTUNMAP leaves mapped (its flags stay but the lock).
 * With no engine open too: the promises outlive the engines
 * (RELIABILITY.md 56). */
static void mremap_promises(uintptr_t o, size_t olen, uintptr_t m, size_t nlen, int flags)
{
	if (m != o) {
		bool keep_old = flags & MREMAP_DONTUNMAP; /* (olen == nlen) */
		promise_set(m, m + nlen, 0, false);	  /* as mmap's */
		promise_move(o, olen < nlen ? olen : nlen, m, keep_old);
		if (!keep_old)
			promise_set(o, o + olen, 0, false);
	} else if (nlen > olen) {
		promise_set(o + olen, o + nlen, 0, false); /* grown in place */
	} else if (nlen < olen) {
		promise_set(o + nlen, o + olen, 0, false); /* shrunk in place */
	}
}

EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	void *new_addr = NULL;
	if (flags & MREMAP_FIXED) {
		va_list ap;
		va_start(ap, flags);
		new_addr = va_arg(ap, void *);
		va_end(ap);
	}
	void *m = NULL;
	uintptr_t o = (uintptr_t)old;
	size_t olen = pages_len(old_len);
	if (!active()) {
		/* Pages merged by engines since closed: one mapping again. */
		if (!(o & (PAGE_SIZE - 1)) && mremap_one_mapping(o, o + olen) > 0)
			guard_disarm(o, o + olen);
		int err = prim_mremap(&m, old, old_len, new_len, flags, new_addr);
		if (!err)
			mremap_promises(o, olen, (uintptr_t)m, pages_len(new_len), flags);
		if (!err)
			stale_pools_moved();
		return libc_map_result(err, &m);
	}
	static const struct hold h = {prepare_move, NULL, "mremap"};
	int failed = 0;
	bool locked = engines_hold(o, olen, &h, &failed);
	bool any = false;
	for (struct samepage *sp = locked ? engines : NULL; sp; sp = sp->next_engine)
		any |= sp->held;
	/* Registering a part of a mapping for merge windows split it, as
	 * MADV_MERGEABLE splits a kernel VMA; mremap wants one mapping.  The
	 * moved parts are registered again where they land.  Pages merged by
	 * engines since closed, or a range still split, are made one mapping
	 * again too. */
	bool stale = !(o & (PAGE_SIZE - 1)) && mremap_one_mapping(o, o + olen) > 0;
	if ((any || stale) && !failed) /* (not moved: its merges go on as they were) */
		guard_disarm(o, o + olen);

	/* Merged pages that could not be made one mapping again (out of
	 * memory, of mappings) stay merged where they are: the call fails,
	 * with nothing moved (RELIABILITY.md 52). */
	int err = failed ? failed : prim_mremap(&m, old, old_len, new_len, flags, new_addr);
	size_t nlen = pages_len(new_len);
	if (!err)
		mremap_promises(o, olen, (uintptr_t)m, nlen, flags);
	if (!err) {
		engine_note_unmap(o, olen);
		if (flags & MREMAP_FIXED)
			engine_note_unmap((uintptr_t)new_addr, nlen);
	}
	as_unlock();
	if (!err)
		stale_pools_moved();
	/* VM_MERGEABLE moves with a kernel VMA: the same parts stay mergeable,
	 * with the same engine, where they are now (and where they were too,
	 * if MREMAP_DONTUNMAP left that mapped: the kernel keeps the flag on
	 * the old VMA). */
	for (struct samepage *sp = locked ? engines : NULL; sp; sp = sp->next_engine) {
		if (!sp->held)
			continue;
		engine_enter(sp); /* forgets the old range first */
		for (size_t p = 0; !err && p < sp->nmoved; p++) {
			size_t off = sp->moved[p].off, len = sp->moved[p].len;
			if (off >= nlen)
				continue;
			if (off + len > nlen)
				len = nlen - off;
			engine_register(sp, (uintptr_t)m + off, len);
			if (flags & MREMAP_DONTUNMAP)
				engine_register(sp, o + off, len);
		}
		engine_leave(sp);
	}
	engines_unhold(locked);
	return libc_map_result(err, &m);
}

/* Guard regions (Linux 6.13), for C libraries whose headers predate them. */
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

/* MADV_DONTNEED and its kin: engines_discard() (engine.c), for every
 * engine of the process.  The kernel refuses locked memory (but for
 * MADV_DONTNEED_LOCKED) with EINVAL once it reaches it, after it has done
 * the mappings before: so here, and the merged pages of the locked part
 * keep their contents (they were made zeros first, then refused). */
static int discard_advice(void *addr, size_t len, int advice)
{
	active(); /* what a forked child must do first */
	uintptr_t a = (uintptr_t)addr, e = a + pages_len(len), fs, fe;
	if (advice == MADV_DONTNEED_LOCKED || !promise_find(a, e, PROMISE_LOCKED, &fs, &fe))
		return libc_result(engines_discard(addr, len, advice));
	int err = fs > a ? engines_discard(addr, fs - a, advice) : 0;
	return libc_result(err ? err : -EINVAL);
}

/* The flags the kernel sets on the mappings and promise.c remembers for
 * the mappings a merge puts there later: the promise and the call under
 * the address-space lock, so that a registration (which reads the
 * mappings' flags from smaps into the promises, inside engine_enter())
 * sees both or neither (RELIABILITY.md 48). */
static int nohuge_pool(const struct map_entry *m, void *arg);

static int advice_promised(void *addr, size_t len, int advice, unsigned flag, bool on)
{
	uintptr_t a = (uintptr_t)addr, e = a + len, r[2] = {a, e};
	as_lock_shared();
	promise_set(a, e, flag, on);
	if (flag == PROMISE_NOHUGEPAGE) /* one or the other */
		promise_set(a, e, PROMISE_HUGEPAGE, !on);
	debug_pause("advice");
	int err = prim_madvise(addr, len, advice);
	if (!err && advice == MADV_HUGEPAGE)
		prim_maps_walk_range(a, e, nohuge_pool, r);
	as_unlock();
	return libc_result(err);
}

/* Merged pages (private mappings of a pool) never take the application's
 * MADV_HUGEPAGE, which the kernel just gave them: khugepaged would
 * collapse the pool's pages, for every process that maps them (README,
 * "Transparent huge pages"). */
static int nohuge_pool(const struct map_entry *m, void *arg)
{
	const uintptr_t *r = arg;
	if (m->anon || m->shared || !prim_own_file(m->dev, m->ino))
		return 0;
	uintptr_t s = m->start > r[0] ? m->start : r[0], t = m->end < r[1] ? m->end : r[1];
	if (s < t)
		prim_madvise((void *)s, t - s, MADV_NOHUGEPAGE);
	return 0;
}

static int keep(struct samepage *sp, uintptr_t start, size_t len)
{
	return regions_keep(sp, start, len);
}

static int unkeep(struct samepage *sp, uintptr_t start, size_t len)
{
	regions_unkeep(sp, start, len);
	return 0;
}

/* Pages the application made unmergeable by a flag of their mapping
 * (wipe-on-fork, a protection key): promised, and kept out by every engine
 * that has them, those since closed included (their merged pages get
 * private copies first). */
static void keep_out(uintptr_t a, size_t l, unsigned flag)
{
	promise_set(a, a + l, flag, true);
	if (active())
		for_engines_in(a, l, keep);
	stale_pools_keep(a, a + l);
}

/*
 * pkey_mprotect: a protection key is the mapping's, and a merge or an
 * unmerge puts a new mapping in place, with the default key 0: writes and
 * reads the key forbade went through (RELIABILITY.md 94).  Memory given
 * another key is kept out of merging, as wipe-on-fork is (its merged
 * pages get private copies first, which the key then covers); key 0 lets
 * it merge again.  Key -1 is mprotect's call.
 */
EXPORT int pkey_mprotect(void *addr, size_t len, int prot, int pkey)
{
	uintptr_t a = (uintptr_t)addr;
	size_t l = pages_len(len);
	bool whole = !(a & (PAGE_SIZE - 1)) && l;
	if (whole && pkey > 0)
		keep_out(a, l, PROMISE_PKEY);
	int err = protect(addr, len, prot, pkey);
	if (!err && whole && !pkey) {
		promise_set(a, a + l, PROMISE_PKEY, false);
		if (active())
			for_engines_in(a, l, unkeep);
	}
	return libc_result(err);
}

/* remove_advice(): whether the first mapping of [r[0], r[1]) that
 * MADV_REMOVE refuses (any but a shared mapping of a file, writable) is a
 * merged page, a private mapping of one of the library's pools: 1 if so,
 * 2 if another. */
static int refused_is_merged(const struct map_entry *m, void *arg)
{
	const uintptr_t *r = arg;
	if (m->end <= r[0] || m->start >= r[1] || (m->shared && !m->anon && (m->prot & PROT_WRITE)))
		return 0;
	return !m->anon && !m->shared && prim_own_file(m->dev, m->ino) ? 1 : 2;
}

/* MADV_REMOVE frees a shared file's pages, and the kernel refuses it on
 * private anonymous memory with EINVAL; a merged page, a private mapping
 * of a pool (a file), it refuses with EACCES: said as it would be for the
 * memory the application mapped (RELIABILITY.md 114).  Nothing is removed
 * from a mapping it refuses either way. */
static int remove_advice(void *addr, size_t len)
{
	uintptr_t r[2] = {(uintptr_t)addr, (uintptr_t)addr + pages_len(len)};
	int err = prim_madvise(addr, len, MADV_REMOVE);
	if (err == -EACCES && prim_maps_walk_range(r[0], r[1], refused_is_merged, r) == 1)
		err = -EINVAL;
	return libc_result(err);
}

/*
 * mseal (Linux 6.10): no mapping may replace sealed memory, so a merged
 * page sealed could never be discarded (MADV_DONTNEED maps new memory
 * over a mapping of the pool) or unmerged again: both failed with EPERM
 * (RELIABILITY.md 113).  The range is kept out of merging first, its
 * merged pages given private copies, as the kernel's own sealed memory
 * holds them; a seal refused lets it merge again.  (A seal made by a
 * system call no wrapper sees is found in the maps at registration, or
 * by the first merge it refuses: merge.c.)
 */
EXPORT int mseal(void *addr, size_t len, unsigned long flags)
{
	uintptr_t a = (uintptr_t)addr;
	size_t l = pages_len(len);
	bool whole = !(a & (PAGE_SIZE - 1)) && l && !flags;
	if (whole)
		keep_out(a, l, PROMISE_SEALED);
	long rc = prim_syscall(SYS_mseal, a, len, flags); /* (-1 and errno) */
	if (rc && whole) {
		int saved = errno;
		promise_set(a, a + l, PROMISE_SEALED, false);
		if (active())
			for_engines_in(a, l, unkeep);
		errno = saved;
	}
	return (int)rc;
}

/*
 * MADV_DONTNEED and its kin: merged pages are private mappings of the pool
 * and would read back the pool's contents: they become fresh anonymous
 * memory first (also those of engines closed or inherited from a parent).
 * MADV_DONTFORK, MADV_DONTDUMP, MADV_[NO]HUGEPAGE and their undoing: the
 * kernel sets the flag on the mappings there now, promise.c remembers it
 * for the mappings a merge puts there later (advice_promised()).
 * MADV_WIPEONFORK cannot be set on a mapping of the pool: the range's
 * pages are kept out of merging.
 */
EXPORT int madvise(void *addr, size_t len, int advice)
{
	uintptr_t a = (uintptr_t)addr;
	size_t l = pages_len(len);
	if (a & (PAGE_SIZE - 1) || !l)
		return libc_result(prim_madvise(addr, len, advice));
	switch (advice) {
	case MADV_MERGEABLE:
	case MADV_UNMERGEABLE:
		if (interpose_merge_advice) /* the preload library's engine */
			return libc_result(interpose_merge_advice(addr, len, advice));
		break;
	case MADV_DONTNEED:
	case MADV_FREE:
	case MADV_GUARD_INSTALL: /* zaps the pages: removed, they read zeros */
	case MADV_DONTNEED_LOCKED: return discard_advice(addr, len, advice);
	case MADV_REMOVE: return remove_advice(addr, len);
	case MADV_POPULATE_WRITE: {
		/* Not into an open merge window (a batch of merges holds the
		 * lock exclusive): the kernel's write faults fail there with
		 * EFAULT or EINVAL (the uffd-user and mprotect windows) where
		 * they break a KSM page under the kernel's KSM (QEMU
		 * preallocates hot-plugged memory so: RELIABILITY.md 48). */
		as_lock_shared();
		int err = prim_madvise(addr, len, advice);
		as_unlock();
		return libc_result(err);
	}
	case MADV_WIPEONFORK:
		keep_out(a, l, PROMISE_WIPEONFORK);
		debug_pause("wipeonfork");
		break;
	case MADV_KEEPONFORK: {
		/* The pages merge again, as under the kernel's KSM, where
		 * wipe-on-fork never kept them out (RELIABILITY.md 48). */
		int rc = advice_promised(addr, l, advice, PROMISE_WIPEONFORK, false);
		if (!rc && active())
			for_engines_in(a, l, unkeep);
		return rc;
	}
	case MADV_DONTFORK: return advice_promised(addr, l, advice, PROMISE_DONTFORK, true);
	case MADV_DOFORK: return advice_promised(addr, l, advice, PROMISE_DONTFORK, false);
	case MADV_DONTDUMP: return advice_promised(addr, l, advice, PROMISE_DONTDUMP, true);
	case MADV_DODUMP: return advice_promised(addr, l, advice, PROMISE_DONTDUMP, false);
	case MADV_NOHUGEPAGE: return advice_promised(addr, l, advice, PROMISE_NOHUGEPAGE, true);
	case MADV_HUGEPAGE: return advice_promised(addr, l, advice, PROMISE_NOHUGEPAGE, false);
	}
	return libc_result(prim_madvise(addr, len, advice));
}

/*
 * sigaltstack: the kernel writes a signal's frame on the signal stack, and
 * its writes into an open merge window fail under the uffd-user and
 * mprotect windows: the signal could not be delivered, and the kernel
 * killed the process with SIGSEGV (RELIABILITY.md 97).  The new stack is
 * noted, with no lock taken and nothing allocated (the call is
 * async-signal-safe, and sanitizers' threads make it as they start): no
 * window opens over it from then on, and the scanners keep its pages out
 * of merging at their next batch (guard.c).
 */
EXPORT int sigaltstack(const stack_t *ss, stack_t *old)
{
	return guard_sigaltstack(ss, old);
}

/* Whether pidfd is this process's (PIDFD_SELF_THREAD and
 * PIDFD_SELF_THREAD_GROUP, Linux 6.15, or a pidfd of a thread of it, asked
 * with PIDFD_GET_INFO, Linux 6.13: before it, process_madvise() refused
 * this process the advice that matters here). */
static bool pidfd_is_self(int pidfd)
{
	struct {
		uint64_t mask, cgroupid;
		uint32_t pid, tgid, rest[10];
	} info = {.mask = 1}; /* PIDFD_INFO_PID: struct pidfd_info's first 64 bytes */
	_Static_assert(sizeof(info) == 64, "PIDFD_INFO_SIZE_VER0");
	if (pidfd == -10000 || pidfd == -20000)
		return true;
	return pidfd >= 0 && prim_syscall(SYS_ioctl, pidfd, _IOWR(0xFF, 11, info), &info) == 0 &&
	       (info.mask & 1) && (pid_t)info.tgid == prim_getpid();
}

/* Copies iov[from, from + n) of the caller's array, which may be a bad
 * pointer (guarded_copy): false, errno EFAULT, where the kernel would say
 * so. */
static bool iov_copy(struct iovec *to, const struct iovec *iov, size_t from, size_t n)
{
	if (guarded_copy(to, iov + from, n * sizeof(*to)))
		return true;
	errno = EFAULT;
	return false;
}

/* process_madvise(2) on this process (Linux 6.13 lets a process give
 * itself any advice so): each range goes through madvise() above, as the
 * kernel's walk gives each its advice, so a MADV_DONTNEED of merged pages
 * reads zeros (the pool's contents came back) and the rest is kept as
 * there.  The kernel says first whether it takes the call at all (the
 * same call without its ranges), and a bad iovec array is EFAULT before
 * any advice, as the kernel reads the whole array first. */
EXPORT ssize_t process_madvise(int pidfd, const struct iovec *iov, size_t n, int advice,
			       unsigned int flags)
{
	enum { CHUNK = 32 }; /* iovecs read at a time: small on a thread's stack */
	if (!pidfd_is_self(pidfd) || n > 1024 /* UIO_MAXIOV: the kernel's EINVAL */)
		return prim_syscall(SYS_process_madvise, pidfd, iov, n, advice, flags);
	long rc = prim_syscall(SYS_process_madvise, pidfd, iov, 0, advice, flags);
	if (rc < 0)
		return rc;
	struct iovec v[CHUNK];
	for (size_t i = 0; i < n; i += CHUNK)
		if (!iov_copy(v, iov, i, n - i < CHUNK ? n - i : CHUNK))
			return -1;
	ssize_t done = 0;
	for (size_t i = 0; i < n; i += CHUNK) {
		size_t k = n - i < CHUNK ? n - i : CHUNK;
		if (!iov_copy(v, iov, i, k)) /* unmapped meanwhile by another thread */
			return done ? done : -1;
		for (size_t j = 0; j < k; j++) {
			if (!v[j].iov_len)
				continue;
			if (madvise(v[j].iov_base, v[j].iov_len, advice))
				return done ? done : -1;
			done += (ssize_t)v[j].iov_len;
		}
	}
	return done;
}

/* mbind (libnuma's, which QEMU's memory backends call with policy=bind):
 * the policy is remembered for the mappings a merge or an unmerge puts
 * in the range later, as the kernel's KSM keeps it on the VMA.  Under the
 * address-space lock (engines_with_copies takes it for mbind_op), as
 * mprotect: a merge batch maps, then gives the remembered policy.  Merged
 * pages in the range become private copies first (engines_with_copies):
 * given to a mapping of the pool, the policy would be the pool file's, for
 * every process mapping those pages. */
struct mbind_call {
	void *addr;
	unsigned long len, maxnode;
	int mode;
	const unsigned long *nodes;
	unsigned flags;
};

static long mbind_op(void *arg)
{
	const struct mbind_call *c = arg;
	uintptr_t a = (uintptr_t)c->addr;
	uintptr_t e = (a + c->len + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
	long rc = prim_mbind_raw(c->addr, c->len, c->mode, c->nodes, c->maxnode, c->flags);
	rc = rc ? -errno : 0;
	if (rc == 0 && !(a & (PAGE_SIZE - 1)))
		promise_set_policy(a, e, c->mode, c->nodes, c->maxnode);
	return rc;
}

EXPORT long mbind(void *addr, unsigned long len, int mode, const unsigned long *nodes,
		  unsigned long maxnode, unsigned flags)
{
	struct mbind_call c = {addr, len, maxnode, mode, nodes, flags};
	if ((uintptr_t)addr & (PAGE_SIZE - 1) || !len) {
		as_lock_shared();
		int rc = (int)mbind_op(&c); /* the kernel says what it thinks of it */
		as_unlock();
		return libc_result(rc);
	}
	active(); /* what a forked child must do first */
	return libc_result((int)engines_with_copies(addr, len, mbind_op, &c));
}

/* mlock and munlock: as MADV_DONTFORK above, the kernel locks what is
 * there now and promise.c what a merge puts there later. */
static void lock_promise(const void *addr, size_t len, bool on, unsigned flags)
{
	uintptr_t a = (uintptr_t)addr & ~(PAGE_SIZE - 1);
	uintptr_t e = ((uintptr_t)addr + len + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
	promise_set(a, e, PROMISE_LOCKED, on);
	promise_set(a, e, PROMISE_ONFAULT, on && (flags & MLOCK_ONFAULT));
}

/* Under the address-space lock, as mprotect: a merge batch decides from
 * the promise whether the pages it maps are locked, and maps them after;
 * a lock or an unlock between the two would be lost. */
struct relock {
	uintptr_t start, end;
	unsigned flags;
};

static int promise_as_locked(const struct map_entry *m, const char *vmflags, void *arg)
{
	const struct relock *r = arg;
	if (m->end <= r->start || m->start >= r->end || !strstr(vmflags, " lo"))
		return 0;
	uintptr_t s = m->start > r->start ? m->start : r->start;
	uintptr_t e = m->end < r->end ? m->end : r->end;
	promise_set(s, e, PROMISE_LOCKED, true);
	promise_set(s, e, PROMISE_ONFAULT, r->flags & MLOCK_ONFAULT);
	return 0;
}

static int lock_range(const void *addr, size_t len, bool on, unsigned flags)
{
	as_lock_shared();
	lock_promise(addr, len, on, flags);
	int err = on ? prim_mlock(addr, len, flags) : prim_munlock(addr, len);
	if (err && on) {
		/* Refused (RLIMIT_MEMLOCK), or stopped at a hole: what is
		 * locked is what the kernel locked (a promise of a lock it
		 * refused made later discards fail with EINVAL: RELIABILITY.md
		 * 56). */
		struct relock r = {(uintptr_t)addr & ~(PAGE_SIZE - 1),
				   ((uintptr_t)addr + len + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1),
				   flags};
		lock_promise(addr, len, false, 0);
		prim_vmflags_walk(promise_as_locked, &r);
	}
	as_unlock();
	return libc_result(err);
}

EXPORT int mlock(const void *addr, size_t len)
{
	return lock_range(addr, len, true, 0);
}

EXPORT int mlock2(const void *addr, size_t len, unsigned int flags)
{
	return lock_range(addr, len, true, flags);
}

EXPORT int munlock(const void *addr, size_t len)
{
	return lock_range(addr, len, false, 0);
}

/*
 * mlockall.  The kernel's would lock and populate every mapping, the
 * library's own too: its pool and index are sparse files of up to 64 GiB
 * (under QEMU's -overcommit mem-lock=on, the host's memory), and a merged
 * page's private mapping of the pool would be populated with write faults,
 * which copy it.  So MCL_CURRENT locks each mapping of /proc/self/maps
 * but the library's own files, merged pages on fault and read in (as
 * promise_apply_merged), and remembers the promise for later merges;
 * MCL_FUTURE is given to the kernel with MCL_ONFAULT, so that the
 * library's new mappings are not populated, and the application's mmap
 * calls seen here are then populated as the kernel would have.
 */
static _Atomic int lock_future;	      /* 0, MCL_FUTURE, or MCL_FUTURE | MCL_ONFAULT */
static _Atomic pid_t lock_future_pid; /* a child of fork does not inherit it */

struct lock_all {
	unsigned flags;		  /* mlock2's */
	unsigned long long bytes; /* the first pass: what would be locked */
	bool count;		  /* the first pass */
	int err;
};

/* Would the library lock this mapping for mlockall, and how: -1 no (the
 * library's own file, [vsyscall]), else mlock2's flags; *pool: a private
 * mapping of the library's pool (merged pages). */
static int lock_how(const struct map_entry *e, unsigned app_flags, bool *pool)
{
	uintptr_t os, oe;
	bool own_file = !e->anon && prim_own_file(e->dev, e->ino);
	*pool = own_file && !e->shared;
	if (own_file && e->shared)
		return -1; /* the library's own file: never populated */
	if (e->start >= (uintptr_t)1 << 56)
		return -1; /* [vsyscall]: the kernel's, not in the address space */
	if (*pool || own_find(e->start, e->end, &os, &oe))
		return MLOCK_ONFAULT; /* merged pages; the library's arena and metadata */
	return (int)app_flags;
}

static int lock_one(const struct map_entry *e, void *arg)
{
	struct lock_all *l = arg;
	bool pool;
	int how = lock_how(e, l->flags, &pool);
	if (how < 0)
		return 0;
	if (l->count) {
		l->bytes += e->end - e->start;
		return 0;
	}
	int err = prim_mlock((void *)e->start, e->end - e->start, (unsigned)how);
	if (pool && !err && (e->prot & PROT_READ)) /* merged pages: mapped and locked */
		prim_madvise((void *)e->start, e->end - e->start, MADV_POPULATE_READ);
	if (!e->shared) {
		promise_set(e->start, e->end, PROMISE_LOCKED, true);
		promise_set(e->start, e->end, PROMISE_ONFAULT, l->flags & MLOCK_ONFAULT);
	}
	/* As the kernel's mlockall, what could not be populated (PROT_NONE:
	 * ENOMEM from mlock) is no error; being refused the lock is. */
	if ((err == -EPERM || err == -EAGAIN) && !l->err)
		l->err = err;
	return 0;
}

/* The kernel's mlockall refuses MCL_CURRENT (ENOMEM) when the address
 * space is larger than RLIMIT_MEMLOCK and the caller may not lock more
 * (CAP_IPC_LOCK); the same check, on what the library would lock. */
static bool may_lock(unsigned long long bytes)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_MEMLOCK, &rl) || rl.rlim_cur == RLIM_INFINITY || bytes <= rl.rlim_cur)
		return true;
	char line[128];
	bool cap = false;
	FILE *f = fopen("/proc/self/status", "re");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "CapEff:", 7))
			cap = (strtoull(line + 7, NULL, 16) >> 14) & 1; /* CAP_IPC_LOCK */
	if (f)
		fclose(f);
	return cap;
}

EXPORT int mlockall(int flags)
{
	if (!(flags & (MCL_CURRENT | MCL_FUTURE)) ||
	    (flags & ~(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)))
		return libc_result(-EINVAL);
	int err = 0;
	as_lock_shared(); /* as lock_range */
	if (flags & MCL_FUTURE) {
		err = prim_mlockall(MCL_FUTURE | MCL_ONFAULT);
		if (!err) {
			atomic_store(&lock_future_pid, prim_getpid());
			atomic_store(&lock_future, MCL_FUTURE | (flags & MCL_ONFAULT));
			promise_future_locked(true);
		}
	}
	if (!err && (flags & MCL_CURRENT)) {
		struct lock_all l = {.flags = (flags & MCL_ONFAULT) ? MLOCK_ONFAULT : 0,
				     .count = true};
		err = prim_maps_walk(0, lock_one, &l);
		if (!err && !may_lock(l.bytes))
			err = -ENOMEM;
		l.count = false;
		if (!err)
			err = prim_maps_walk(0, lock_one, &l);
		if (!err)
			err = l.err;
	}
	as_unlock();
	return libc_result(err);
}

EXPORT int munlockall(void)
{
	as_lock_shared();
	atomic_store(&lock_future, 0);
	promise_future_locked(false);
	promise_set(0, UINTPTR_MAX & ~(uintptr_t)(PAGE_SIZE - 1), PROMISE_LOCKED, false);
	promise_set(0, UINTPTR_MAX & ~(uintptr_t)(PAGE_SIZE - 1), PROMISE_ONFAULT, false);
	int err = prim_munlockall();
	as_unlock();
	return libc_result(err);
}

/* A new mapping of the application's under mlockall(MCL_FUTURE): locked
 * (the kernel did it, on fault) and, unless MCL_ONFAULT was asked for,
 * populated, as the kernel's MCL_FUTURE does. */
static void lock_new_mapping(void *addr, size_t len)
{
	int future = atomic_load(&lock_future);
	if (!future || atomic_load(&lock_future_pid) != prim_getpid())
		return;
	uintptr_t a = (uintptr_t)addr, e = (a + len + PAGE_SIZE - 1) & ~(uintptr_t)(PAGE_SIZE - 1);
	promise_set(a, e, PROMISE_LOCKED, true);
	promise_set(a, e, PROMISE_ONFAULT, future & MCL_ONFAULT);
	if (!(future & MCL_ONFAULT))
		prim_mlock(addr, e - a, 0);
}

/*
 * The application's own userfaultfd.  A range takes one userfaultfd only,
 * and merge windows register mergeable memory with the library's: the
 * application's UFFDIO_REGISTER there failed with EBUSY (QEMU registers
 * guest RAM for a postcopy migration's incoming side and for a background
 * snapshot).  Now the range stops merging first: its merged pages get
 * private copies, the library's registration goes, and its pages are
 * counted (pages_kept_uffd) until the application's UFFDIO_UNREGISTER,
 * after which they merge again.  The scanner does not read kept pages, so
 * it never waits on the application's faults.
 */
static bool is_userfaultfd(int fd)
{
	char path[64], link[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return false;
	link[n] = 0;
	return !strcmp(link, "anon_inode:[userfaultfd]");
}

static void app_uffd(uintptr_t a, size_t l, bool registered)
{
	promise_set(a, a + l, PROMISE_UFFD, registered); /* for engines opened later */
	if (!active())
		return; /* no engine: no registration of ours to take away */
	for_engines_in(a, l, registered ? keep : unkeep);
	if (registered)
		guard_disarm(a, a + l);
}

/*
 * Device DMA.  VFIO (device assignment: a GPU, an SR-IOV network function)
 * and iommufd map the process's memory for a device, pinning its pages for
 * as long as the mapping lasts; the device then writes into those pages,
 * not into whatever the addresses map later.  A merge replaces the
 * mapping, so what the device writes afterwards is lost (the kernel's KSM
 * skips pinned pages; user space cannot see pins).  With an engine open
 * the mapping is refused (EPERM), with the reason: run such a program, QEMU
 * with a passthrough device, without the library (its memory, all pinned,
 * would not merge under the kernel's KSM either).
 */
#define IOMMUFD_TYPE ';'
#define IOMMUFD_CMD_IOAS_MAP 0x85
#define IOMMU_IOAS_MAP _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP)
static bool dma_map_refused(unsigned long request)
{
	if ((request != VFIO_IOMMU_MAP_DMA && request != IOMMU_IOAS_MAP) || !active())
		return false;
	prim_say("samepage: refusing a device DMA mapping (%s) to this process: the device "
		 "writes into pages the kernel pins, and a page merged meanwhile would lose what "
		 "it writes (fix: run this program without samepage; see samepage(3))\n",
		 request == VFIO_IOMMU_MAP_DMA ? "VFIO_IOMMU_MAP_DMA" : "IOMMU_IOAS_MAP");
	errno = EPERM;
	return true;
}

EXPORT int ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	va_start(ap, request);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	if (dma_map_refused(request))
		return -1;
	const struct uffdio_range *r = NULL;
	struct uffdio_range range = {0};
	if (request == UFFDIO_REGISTER && arg && is_userfaultfd(fd))
		r = &((const struct uffdio_register *)arg)->range;
	else if (request == UFFDIO_UNREGISTER && arg && is_userfaultfd(fd))
		r = arg;
	/* Read guarded: a bad pointer is the kernel's EFAULT, not a crash. */
	if (r && !guarded_copy(&range, r, sizeof(range)))
		range.len = 0;
	uintptr_t a = (uintptr_t)range.start, fs, fe;
	size_t l = (size_t)range.len;
	bool was = l && promise_find(a, a + l, PROMISE_UFFD, &fs, &fe);
	if (l && request == UFFDIO_REGISTER) {
		app_uffd(a, l, true);
		debug_pause("uffd_register");
	}
	long rc = prim_syscall(SYS_ioctl, fd, request, arg);
	if (l && request == UFFDIO_REGISTER && rc && !was)
		app_uffd(a, l, false); /* refused: as it was */
	else if (l && request == UFFDIO_UNREGISTER && !rc)
		app_uffd(a, l, false);
	return (int)rc;
}

/* The next definition of name after this library's (the C library's, or
 * another library's in front of it), resolved at the first call and kept
 * in *cache.  dlsym may allocate and free: a call that comes back here
 * meanwhile gets fallback. */
void *interpose_next(const char *name, void *_Atomic *cache, void *fallback)
{
	static _Thread_local bool resolving;
	void *f = atomic_load(cache);
	if (f || resolving)
		return f ? f : fallback;
	resolving = true;
	f = dlsym(RTLD_NEXT, name);
	resolving = false;
	if (!f)
		f = fallback;
	atomic_store(cache, f);
	return f;
}

/* ---- the library's own descriptors ---- */

/*
 * A program that closes every descriptor it did not open (a daemon's
 * start: a loop of close(), close_range(), closefrom()) closed the
 * library's too, and the files it opened next took their numbers: the
 * library then punched the holes of freed KSM pages in them, and read or
 * wrote /proc/self's files through them (RELIABILITY.md 72).  These leave
 * the library's open (prim_own_fd) and answer as if they had closed them;
 * the numbers stay taken, so a file opened next gets another.  The
 * library's are kept above the numbers a program chooses for its files
 * (a shell's "exec 3>file"), and a dup2() or dup3() onto one of them is
 * refused with EBUSY, which Linux's dup2() may return, rather than let the
 * program's file take the library's place (RELIABILITY.md 73).
 */
typedef int (*close_fn)(int);
typedef int (*close_range_fn)(unsigned, unsigned, int);
typedef int (*dup2_fn)(int, int);
typedef int (*dup3_fn)(int, int, int);
static void *_Atomic real_close, *_Atomic real_close_range, *_Atomic real_dup2, *_Atomic real_dup3;

static int raw_close(int fd)
{
	return (int)prim_syscall(SYS_close, fd);
}

static int raw_close_range(unsigned first, unsigned last, int flags)
{
	return (int)prim_syscall(SYS_close_range, first, last, flags);
}

static int raw_dup2(int fd, int to)
{
	if (fd == to) /* dup2's answer; dup3's would be EINVAL */
		return prim_syscall(SYS_fcntl, fd, F_GETFD) < 0 ? -1 : to;
	return (int)prim_syscall(SYS_dup3, fd, to, 0);
}

static int raw_dup3(int fd, int to, int flags)
{
	return (int)prim_syscall(SYS_dup3, fd, to, flags);
}

/* Onto a file the library is reading (a /proc file, for a few
 * milliseconds): once the library has closed it, as an open() in another
 * thread of the program would be waited for.  Onto a long-lived one, or
 * one still open after a second (the caller's signal handler interrupted
 * the library's read): EBUSY. */
static bool dup_refused(int to)
{
	for (int waited = 0; prim_is_own_fd(to); waited++) {
		if (!prim_is_brief_fd(to) || waited == 1000) {
			errno = EBUSY;
			return true;
		}
		nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
	}
	return false;
}

/* The dup itself, while the library makes no descriptor (prim_dup_begin):
 * one made between dup_refused() and then is waited for like any other.
 * A kernel's EBUSY is then the program's own open in flight, and stands. */
static int dup_onto(int fd, int to, int flags, bool two)
{
	for (;;) {
		if (dup_refused(to))
			return -1;
		bool alone = prim_dup_begin();
		if (alone && prim_is_own_fd(to)) {
			prim_dup_end();
			continue;
		}
		int rc =
		    two ? ((dup2_fn)interpose_next("dup2", &real_dup2, (void *)raw_dup2))(fd, to)
			: ((dup3_fn)interpose_next("dup3", &real_dup3, (void *)raw_dup3))(fd, to,
											  flags);
		int err = errno;
		if (alone)
			prim_dup_end();
		errno = err;
		return rc;
	}
}

EXPORT int dup2(int fd, int to)
{
	return dup_onto(fd, to, 0, true);
}

EXPORT int dup3(int fd, int to, int flags)
{
	return dup_onto(fd, to, flags, false);
}

EXPORT int close(int fd)
{
	if (prim_is_own_fd(fd))
		return 0;
	return ((close_fn)interpose_next("close", &real_close, (void *)raw_close))(fd);
}

EXPORT int close_range(unsigned first, unsigned last, int flags)
{
	close_range_fn f = (close_range_fn)interpose_next("close_range", &real_close_range,
							  (void *)raw_close_range);
	int own = prim_own_fd_next(first, last);
	if (own < 0 || (flags & CLOSE_RANGE_CLOEXEC) || first > last)
		return f(first, last, flags); /* marking close-on-exec: the library's are */
	for (;;) {
		int rc = (unsigned)own > first ? f(first, (unsigned)own - 1, flags) : 0;
		if (rc)
			return rc;
		flags &= ~CLOSE_RANGE_UNSHARE; /* unshared by the first call */
		if ((unsigned)own >= last)
			return 0;
		first = (unsigned)own + 1;
		own = prim_own_fd_next(first, last);
		if (own < 0)
			return f(first, last, flags);
	}
}

EXPORT void closefrom(int low)
{
	if (low < 0)
		low = 0;
	if (close_range((unsigned)low, ~0U, 0) == 0)
		return;
	/* No close_range (before Linux 5.9): one by one, as the C library's. */
	struct rlimit rl;
	int top =
	    getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
	for (int fd = low; fd < top; fd++)
		close(fd);
}

/* ---- malloc's blocks ---- */

/*
 * The C library's malloc maps a block by itself at or above its mmap
 * threshold (128 KiB to 32 MiB) and unmaps it with its own munmap, or moves
 * it with its own mremap, in free() and realloc(), which no wrapper of
 * munmap sees; the next block is often mapped at the same address.  So
 * free() and realloc() are the library's too: one that may unmap a block
 * (its chunk's IS_MMAPPED bit) takes the address-space lock shared around
 * the C library's, as munmap() does, and tells the engines what went; no
 * block goes while a batch of merges runs, and merge-any merges them
 * (QEMU's 8-11 MiB blocks: RELIABILITY.md 41 and 42).  The other frees
 * cost a load of the chunk's header, which the C library's free reads
 * anyway.
 *
 * Only when the C library's malloc is the program's (its free is next
 * after this library's, and this library's is the one the program calls),
 * and not under valgrind or a sanitizer (whose mallocs have no such
 * header): otherwise merge-any keeps malloc's blocks out where it finds
 * them (mergeany.c).
 * The C library's own frees call free() through its PLT (checked on
 * Debian's glibc 2.36: the only direct calls to its free are from free and
 * realloc themselves), so they come here too; a thread's cache of small
 * chunks, freed at its exit, never holds a block.
 */

/* A sanitizer's malloc is the program's (GCC says ASan and TSan with
 * __SANITIZE_*__, clang with __has_feature), and ASan calls free() while it
 * starts, before the shadow memory that this file's code would write
 * exists: free() and realloc() are left to it. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZER_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                         \
    __has_feature(memory_sanitizer) || __has_feature(hwaddress_sanitizer)
#define SANITIZER_MALLOC 1
#endif
#endif

#if defined(SANITIZER_MALLOC)
static void blocks_check(void)
{
}
#else
extern void __libc_free(void *p);
extern void *__libc_realloc(void *p, size_t n);

typedef void (*free_fn)(void *);
typedef void *(*realloc_fn)(void *, size_t);
static void *_Atomic real_free, *_Atomic real_realloc;

static free_fn next_free(void)
{
	return (free_fn)interpose_next("free", &real_free, (void *)__libc_free);
}

static realloc_fn next_realloc(void)
{
	return (realloc_fn)interpose_next("realloc", &real_realloc, (void *)__libc_realloc);
}

/* The mapping of the block p was allocated in, if malloc mapped it by
 * itself: its chunk's header (the offset to the mapping's start, then the
 * size with the flags) is just before p. */
static bool mmapped_block(const void *p, uintptr_t *start, uintptr_t *end)
{
	const size_t *h = (const size_t *)p - 2;
	if (!(h[1] & CHUNK_IS_MMAPPED))
		return false;
	*start = (uintptr_t)h - h[0];
	*end = (uintptr_t)h + (h[1] & ~CHUNK_FLAGS);
	return true;
}

/* [start, end), a block's mapping or part of one, is gone: forgotten, as
 * munmap's wrapper forgets what it unmaps.  Under the address-space lock. */
static void block_gone(uintptr_t start, uintptr_t end)
{
	if (end <= start)
		return;
	engine_note_unmap(start, end - start);
	promise_set(start, end, 0, false);
}

/* Whether free(p) or realloc(p) takes the lock: a block of the C
 * library's malloc (in a fork handler, the forking thread holds it
 * already: fork_held_lock()). */
static bool locked_block(void *p, uintptr_t *s, uintptr_t *e)
{
	return p && merge_any_blocks && mmapped_block(p, s, e);
}

/* While blocks_check() calls the program's free and realloc (probing),
 * whether they came here (probed). */
static _Thread_local bool probing, probed;

static void free_impl(void *p)
{
	uintptr_t s, e;
	if (!locked_block(p, &s, &e)) {
		if (!p && probing)
			probed = true;
		next_free()(p);
		return;
	}
	as_lock_shared();
	next_free()(p);
	block_gone(s, e);
	as_unlock();
}

static void *realloc_impl(void *p, size_t n)
{
	uintptr_t s, e, ns, ne;
	if (!p && probing) {
		probed = true;
		return NULL; /* allocates nothing: only blocks_check() calls it so */
	}
	if (!locked_block(p, &s, &e))
		return next_realloc()(p, n);
	as_lock_shared();
	void *r = next_realloc()(p, n);
	if (r != p && (r || !n))
		block_gone(s, e); /* moved or freed */
	else if (r == p && mmapped_block(r, &ns, &ne) && ns == s && ne < e)
		block_gone(ne, e); /* shrunk in place */
	as_unlock();
	return r;
}

EXPORT void free(void *p) __attribute__((alias("free_impl")));
EXPORT void *realloc(void *p, size_t n) __attribute__((alias("realloc_impl")));

/* Whether f, the program's free or realloc as dlsym() finds it, is this
 * library's (ours), or calls it.  A program built without PIE that takes
 * free's address in its code may have its own PLT entry as free's
 * address, for dlsym() and every object (Node.js's builds do), and that
 * entry calls the free the program was bound to: called here with what
 * does nothing (free(NULL), realloc(NULL, 0) answered here without
 * allocating), it tells. */
static bool program_calls(void *f, void *ours, bool is_free)
{
	if (f == ours)
		return true;
	if (!f)
		return false;
	probing = true;
	probed = false;
	if (is_free)
		((free_fn)f)(NULL);
	else
		((realloc_fn)f)(NULL, 0); /* another's: a block left, once */
	bool r = probed;
	probing = false;
	return r;
}

/* Whether the program's free and realloc are this library's, with the C
 * library's next. */
static void blocks_check(void)
{
	const char *pre = getenv("LD_PRELOAD");
	merge_any_blocks =
	    !(pre && strstr(pre, "vgpreload")) &&
	    program_calls(dlsym(RTLD_DEFAULT, "free"), (void *)free_impl, true) &&
	    program_calls(dlsym(RTLD_DEFAULT, "realloc"), (void *)realloc_impl, false) &&
	    next_free() == (free_fn)__libc_free && next_realloc() == (realloc_fn)__libc_realloc;
}
#endif
