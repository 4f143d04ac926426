// SPDX-License-Identifier: MIT
/*
 * promise.c - what the application asked of its mappings, kept when a
 * merge or an unmerge replaces them.
 *
 * The kernel's KSM merges a page inside its VMA, which keeps its flags.  A
 * merge here replaces the page's mapping by a mapping of the pool (and an
 * unmerge by a new anonymous mapping): a new VMA, without the flags the
 * application set on the old one.  So the flags are remembered per address
 * range, from the interposed madvise(MADV_DONTFORK/DOFORK/DONTDUMP/DODUMP/
 * NOHUGEPAGE/HUGEPAGE)
 * and mlock/munlock calls and from /proc/self/smaps when a range is
 * registered, and set again on every mapping the engine puts in place:
 *
 *   PROMISE_DONTFORK  MADV_DONTFORK: a child does not inherit the range
 *   PROMISE_DONTDUMP  MADV_DONTDUMP: not in a core dump
 *   PROMISE_LOCKED    mlock: resident, never swapped
 *   PROMISE_NOHUGEPAGE, PROMISE_HUGEPAGE  MADV_NOHUGEPAGE, MADV_HUGEPAGE:
 *                     also what lets a replacement join its neighbours
 *                     into one mapping again (the VMAs' flags must match);
 *                     never set on a merged mapping of the pool (see
 *                     merge.c's merge_run)
 *
 * Two more say why a range is kept out of merging (regions_keep), for the
 * counters pages_kept_wipeonfork and pages_kept_malloc:
 *
 *   PROMISE_WIPEONFORK  MADV_WIPEONFORK, which the kernel allows on private
 *                       anonymous mappings only, not on a mapping of the pool
 *   PROMISE_MALLOC      a heap of the C library's malloc, which it discards
 *                       with its own madvise(MADV_DONTNEED) and then trusts
 *                       to read zeros (merge-any only: see mergeany.c)
 *
 * and one more for pages_kept_uffd:
 *
 *   PROMISE_UFFD        the application registered the range with its own
 *                       userfaultfd (a range takes one only, and merge windows
 *                       need the library's): kept until it unregisters it
 *
 * And one says what merge-any must leave alone:
 *
 *   PROMISE_UNMERGEABLE the application made the range MADV_UNMERGEABLE
 *
 * The range's memory policy (mbind(2): QEMU's memory backends with
 * policy=bind, libvirt's <numatune>) is kept too, as the number of its
 * policy in a table (the PROMISE_POLICY_MASK bits), and given to every
 * anonymous mapping an unmerge, a discard or a merge puts there: without
 * it the range lost its policy for good once unmerged.  Not to a mapping
 * of the pool: the kernel keeps a shared memory file's policy with the
 * file (shmem_set_policy), so it would reach every process that maps the
 * same pool pages (and the interposed mbind makes merged pages private
 * copies before the kernel sees it).  A merged page's copy-on-write is
 * allocated by the writing thread's policy and its cpuset (libvirt's
 * strict <numatune> sets cpuset.mems too), where the kernel's KSM uses
 * the VMA's.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

struct promise {
	uintptr_t start, end;
	unsigned flags;
};

static pthread_mutex_t promise_lock = PTHREAD_MUTEX_INITIALIZER;

/* fork: the prepare handler holds the lock across the fork (another
 * thread of the parent could hold it then, and the child's copy would stay
 * locked for ever: its first madvise or mmap would wait). */
void promise_fork_lock(void)
{
	pthread_mutex_lock(&promise_lock);
}

void promise_fork_unlock(void)
{
	pthread_mutex_unlock(&promise_lock);
}
static struct promise *promises; /* sorted by start, not overlapping */
static size_t npromises, promises_cap;

/* The memory policies the application gave ranges (mbind), by number
 * (1..255; 0 is the default policy, none to keep), with promise_lock. */
#define MAX_POLICIES 255
static struct prim_policy policies[MAX_POLICIES + 1];
static unsigned npolicies;

/* Makes room for one more interval at index i. */
static bool promise_insert(size_t i, struct promise p)
{
	if (npromises == promises_cap) {
		size_t cap = promises_cap ? promises_cap * 2 : 16;
		struct promise *n = lib_realloc(promises, cap * sizeof(*n));
		if (!n)
			return false;
		promises = n;
		promises_cap = cap;
	}
	memmove(&promises[i + 1], &promises[i], (npromises - i) * sizeof(*promises));
	promises[i] = p;
	npromises++;
	return true;
}

/* Splits the interval holding addr, so that one starts exactly there. */
static void promise_split(uintptr_t addr)
{
	for (size_t i = 0; i < npromises; i++) {
		struct promise *p = &promises[i];
		if (p->start < addr && addr < p->end) {
			struct promise tail = {addr, p->end, p->flags};
			p->end = addr;
			promise_insert(i + 1, tail);
			return;
		}
	}
}

/* Drops empty intervals and joins neighbours with the same flags. */
static void promise_tidy(void)
{
	size_t k = 0;
	for (size_t i = 0; i < npromises; i++) {
		struct promise p = promises[i];
		if (!p.flags)
			continue;
		if (k && promises[k - 1].end == p.start && promises[k - 1].flags == p.flags)
			promises[k - 1].end = p.end;
		else
			promises[k++] = p;
	}
	npromises = k;
}

/* [start, end) gains (on) or loses a flag; flag 0 with on false forgets
 * every flag (the range was unmapped). */
void promise_set(uintptr_t start, uintptr_t end, unsigned flag, bool on)
{
	if (end <= start || (!on && !npromises))
		return;
	fork_held_lock(&promise_lock);
	promise_split(start);
	promise_split(end);
	uintptr_t covered = start;
	size_t i = 0;
	while (i < npromises && promises[i].end <= start)
		i++;
	for (; i < npromises && promises[i].start < end; i++) {
		if (on && promises[i].start > covered &&
		    promise_insert(i, (struct promise){covered, promises[i].start, flag}))
			i++; /* the hole before it, now an interval */
		struct promise *p = &promises[i];
		p->flags = on ? p->flags | flag : flag ? p->flags & ~flag : 0;
		covered = p->end;
	}
	if (on && covered < end) /* before promises[i], the first past end */
		promise_insert(i, (struct promise){covered, end, flag});
	promise_tidy();
	fork_held_unlock(&promise_lock);
}

/* The number of policy p in the table (added if new), 0 if the table is
 * full.  With promise_lock held. */
static unsigned policy_number(const struct prim_policy *p)
{
	for (unsigned k = 1; k <= npolicies; k++)
		if (!memcmp(&policies[k], p, sizeof(*p)))
			return k;
	if (npolicies == MAX_POLICIES)
		return 0;
	policies[++npolicies] = *p;
	return npolicies;
}

/* The application's mbind(start, end - start, mode, nodes, maxnode) took:
 * remembered for the mappings a merge or an unmerge puts there later
 * (mode 0, MPOL_DEFAULT: nothing to keep). */
void promise_set_policy(uintptr_t start, uintptr_t end, int mode, const unsigned long *nodes,
			unsigned long maxnode)
{
	struct prim_policy p = {.mode = mode};
	unsigned long bits = maxnode ? maxnode - 1 : 0; /* mbind's count, one too many */
	for (unsigned long b = 0; nodes && mode && b < bits && b < PRIM_MAX_NODES; b++)
		if (nodes[b / (8 * sizeof(long))] & (1UL << (b % (8 * sizeof(long)))))
			p.nodes[b / (8 * sizeof(long))] |= 1UL << (b % (8 * sizeof(long)));
	fork_held_lock(&promise_lock);
	unsigned id = mode ? policy_number(&p) : 0;
	fork_held_unlock(&promise_lock);
	for (unsigned b = 0; b < 8; b++)
		promise_set(start, end, 1u << (PROMISE_POLICY_SHIFT + b), id & (1u << b));
}

/* What apply_at() sets on a new mapping from the range's promises. */
enum {
	APPLY_MARKS = 1,  /* MADV_DONTFORK, MADV_DONTDUMP, mlock */
	APPLY_ANON = 2,	  /* MADV_[NO]HUGEPAGE, MADV_WIPEONFORK: anonymous memory only */
	APPLY_POLICY = 4, /* mbind: anonymous memory only (see above) */
};

/* The process that asked mlockall(MCL_FUTURE), or 0: the kernel then
 * locks every new mapping, the library's too (interpose.c). */
static _Atomic pid_t future_locked;

void promise_future_locked(bool on)
{
	atomic_store(&future_locked, on ? prim_getpid() : 0);
}

/* Under mlockall(MCL_FUTURE) the kernel locked the mapping at [at, ...)
 * that the library just put in place: where the application's memory was
 * not locked (MCL_FUTURE alone, or munlock after), it is unlocked, as the
 * application's memory there is.  Locked, a discard of it failed with
 * EINVAL (after its merged pages were zeroed), and a registration read
 * the lock back as the application's (RELIABILITY.md 56). */
static void unlock_unpromised(uintptr_t start, uintptr_t end, uintptr_t at)
{
	uintptr_t p = start, fs, fe;
	pid_t locker = atomic_load(&future_locked);
	/* (getpid() is a system call: asked only under MCL_FUTURE, not at
	 * every merge) */
	if (!locker || locker != prim_getpid())
		return;
	while (p < end) {
		bool found = promise_find(p, end, PROMISE_LOCKED, &fs, &fe);
		uintptr_t gap_end = found ? (fs > p ? fs : p) : end;
		if (gap_end > p)
			prim_munlock((void *)(at + (p - start)), gap_end - p);
		p = found ? fe : end;
	}
}

/* What the promises of [start, end) ask, set on the same parts of
 * [at, at + end - start); lock_flags are mlock2's. */
static void apply_at(uintptr_t start, uintptr_t end, uintptr_t at, unsigned lock_flags,
		     unsigned what)
{
	if (what & APPLY_MARKS)
		unlock_unpromised(start, end, at);
	fork_held_lock(&promise_lock);
	for (size_t i = 0; i < npromises; i++) {
		const struct promise *p = &promises[i];
		if (p->end <= start || p->start >= end)
			continue;
		uintptr_t s = (p->start > start ? p->start : start) - start + at;
		uintptr_t e = (p->end < end ? p->end : end) - start + at;
		unsigned f = p->flags, id = (f & PROMISE_POLICY_MASK) >> PROMISE_POLICY_SHIFT;
		if ((what & APPLY_MARKS) && (f & PROMISE_DONTFORK))
			prim_madvise((void *)s, e - s, MADV_DONTFORK);
		if ((what & APPLY_MARKS) && (f & PROMISE_DONTDUMP))
			prim_madvise((void *)s, e - s, MADV_DONTDUMP);
		if ((what & APPLY_MARKS) && (f & PROMISE_LOCKED))
			prim_mlock((void *)s, e - s,
				   lock_flags | (f & PROMISE_ONFAULT ? MLOCK_ONFAULT : 0));
		if ((what & APPLY_ANON) && (f & PROMISE_NOHUGEPAGE))
			prim_madvise((void *)s, e - s, MADV_NOHUGEPAGE);
		if ((what & APPLY_ANON) && (f & PROMISE_HUGEPAGE))
			prim_madvise((void *)s, e - s, MADV_HUGEPAGE);
		if ((what & APPLY_ANON) && (f & PROMISE_WIPEONFORK))
			prim_madvise((void *)s, e - s, MADV_WIPEONFORK);
		if ((what & APPLY_POLICY) && id && id <= npolicies)
			prim_mbind(s, e - s, &policies[id]);
	}
	fork_held_unlock(&promise_lock);
}

/* The flags of [start, end) set again on the mapping now there (after an
 * unmerge replaced it with anonymous memory). */
void promise_apply(uintptr_t start, uintptr_t end)
{
	apply_at(start, end, start, 0, APPLY_MARKS | APPLY_ANON | APPLY_POLICY);
}

/* The same on anonymous memory a merge put there that must not be
 * populated (zeros in a locked range: the zero page), locked on fault. */
void promise_apply_onfault(uintptr_t start, uintptr_t end)
{
	apply_at(start, end, start, MLOCK_ONFAULT, APPLY_MARKS | APPLY_ANON | APPLY_POLICY);
}

/* The same on a merged range, a private mapping of the pool, without its
 * memory policy (see above): locked memory is locked on fault
 * (MLOCK_ONFAULT), and the merge's read faults then map and lock the pool
 * pages.  A plain mlock (or MAP_LOCKED) populates a private writable
 * mapping with write faults, which copy every page: the merge was undone
 * at once, and redone at the next visit, for ever. */
void promise_apply_merged(uintptr_t start, uintptr_t end)
{
	apply_at(start, end, start, MLOCK_ONFAULT, APPLY_MARKS);
}

/* The flags of [start, end) set on the mapping at [at, at + end - start):
 * a copy about to be moved over the range, so that it joins its
 * neighbours there.  Its policy was given before the copy
 * (promise_policy_apply_at). */
void promise_apply_at(uintptr_t start, uintptr_t end, uintptr_t at)
{
	apply_at(start, end, at, 0, APPLY_MARKS | APPLY_ANON);
}

/* The memory policy of [start, end) alone on [at, at + end - start),
 * before a copy is written there: the pages it allocates follow it. */
void promise_policy_apply_at(uintptr_t start, uintptr_t end, uintptr_t at)
{
	apply_at(start, end, at, 0, APPLY_POLICY);
}

/* mremap moved [old, old + len) to new: its flags go with it (they are
 * the VMA's), every interval of them.  keep_old (MREMAP_DONTUNMAP): the
 * old range stays mapped with its flags but its lock, as the kernel leaves
 * its VMA; otherwise it is forgotten. */
void promise_move(uintptr_t old, size_t len, uintptr_t new, bool keep_old)
{
	struct promise *moved = NULL;
	size_t n = 0;
	fork_held_lock(&promise_lock);
	for (size_t i = 0; i < npromises; i++)
		n += promises[i].end > old && promises[i].start < old + len;
	if (n && !(moved = lib_malloc(n * sizeof(*moved))))
		n = 0; /* no memory: the new place has none (as mmap's) */
	for (size_t i = 0, k = 0; i < npromises && k < n; i++) {
		const struct promise *p = &promises[i];
		if (p->end <= old || p->start >= old + len)
			continue;
		uintptr_t s = p->start > old ? p->start : old;
		uintptr_t e = p->end < old + len ? p->end : old + len;
		moved[k++] = (struct promise){s - old + new, e - old + new, p->flags};
	}
	fork_held_unlock(&promise_lock);
	if (keep_old)
		promise_set(old, old + len, PROMISE_LOCKED | PROMISE_ONFAULT, false);
	else
		promise_set(old, old + len, 0, false);
	for (size_t i = 0; i < n; i++)
		for (unsigned f = 1; f <= PROMISE_LAST; f <<= 1)
			if (moved[i].flags & f)
				promise_set(moved[i].start, moved[i].end, f, true);
	lib_free(moved);
}

/* The first range with flag that overlaps [start, end): false if none. */
bool promise_find(uintptr_t start, uintptr_t end, unsigned flag, uintptr_t *fs, uintptr_t *fe)
{
	bool found = false;
	fork_held_lock(&promise_lock);
	for (size_t i = 0; i < npromises && !found; i++) {
		const struct promise *p = &promises[i];
		if (p->start < end && start < p->end && (p->flags & flag)) {
			*fs = p->start;
			*fe = p->end;
			found = true;
		}
	}
	fork_held_unlock(&promise_lock);
	return found;
}

/* MAP_LOCKED when all of [start, end) is locked, else 0: a mapping put in
 * place there is then locked from its first instant (mlock after the mmap
 * would leave a moment when the application's locked memory is not). */
int promise_map_locked(uintptr_t start, uintptr_t end)
{
	uintptr_t fs, fe;
	return promise_find(start, end, PROMISE_LOCKED, &fs, &fe) && fs <= start && fe >= end &&
		       !promise_find(start, end, PROMISE_ONFAULT, &fs, &fe)
		   ? MAP_LOCKED
		   : 0; /* locked on fault: locked by promise_apply(), not populated */
}

/* The flags of the page at addr. */
unsigned promise_flags(uintptr_t addr)
{
	unsigned f = 0;
	fork_held_lock(&promise_lock);
	size_t lo = 0, hi = npromises;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (addr < promises[mid].start)
			hi = mid;
		else if (addr >= promises[mid].end)
			lo = mid + 1;
		else {
			f = promises[mid].flags;
			break;
		}
	}
	fork_held_unlock(&promise_lock);
	return f;
}
