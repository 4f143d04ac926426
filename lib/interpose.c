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
 * Calls that bypass the C library (a raw syscall(2), glibc's own internal
 * munmap in free()) are not seen; for those, the engine rereads
 * /proc/self/maps every full scan, reads memory only under a fault guard,
 * and never reclaims a pool page that some mapping may still read.
 * With no engine open, every wrapper is one atomic load and the syscall.
 */
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

static bool active(void)
{
	return atomic_load(&nengines) > 0;
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if (!active() || !(flags & MAP_FIXED) || (flags & MAP_FIXED_NOREPLACE))
		return prim_mmap(addr, len, prot, flags, fd, off);
	as_lock_shared();
	void *m = prim_mmap(addr, len, prot, flags, fd, off);
	int saved = errno;
	if (m != MAP_FAILED)
		engine_note_unmap((uintptr_t)addr, len);
	as_unlock();
	errno = saved;
	return m;
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
	__attribute__((alias("mmap")));

EXPORT int munmap(void *addr, size_t len)
{
	if (!active())
		return prim_munmap(addr, len);
	as_lock_shared();
	int rc = prim_munmap(addr, len);
	int saved = errno;
	if (rc == 0)
		engine_note_unmap((uintptr_t)addr, len);
	as_unlock();
	errno = saved;
	return rc;
}

EXPORT int mprotect(void *addr, size_t len, int prot)
{
	if (!active())
		return prim_mprotect(addr, len, prot);
	as_lock_shared();
	int rc = prim_mprotect(addr, len, prot);
	int saved = errno;
	if (rc == 0)
		engine_note_change();
	as_unlock();
	errno = saved;
	return rc;
}

/* Runs fn on every engine of this process that has a region in range,
 * with the engine's lock held. */
static int for_engines_in(uintptr_t start, size_t len,
			  int (*fn)(struct samepage *sp, uintptr_t start, size_t len))
{
	int err = 0;
	pthread_mutex_lock(&engines_lock);
	for (struct samepage *sp = engines; sp; sp = sp->next_engine) {
		if (!engine_alive(sp))
			continue;
		pthread_mutex_lock(&sp->lock);
		bool hit = false;
		for (size_t ri = 0; ri < sp->nregions && !hit; ri++) {
			struct region *r = &sp->regions[ri];
			hit = r->start < start + len && region_addr(r, r->npages) > start;
		}
		if (hit) {
			int e = fn(sp, start, len);
			if (e && !err)
				err = e;
		}
		pthread_mutex_unlock(&sp->lock);
	}
	pthread_mutex_unlock(&engines_lock);
	return err;
}

static int unmerge_for_move(struct samepage *sp, uintptr_t start, size_t len)
{
	int err = 0;
	engine_enter(sp);
	for (size_t ri = 0; ri < sp->nregions; ri++) {
		struct region *r = &sp->regions[ri];
		size_t from, to;
		if (!region_clip(r, start, start + len, &from, &to))
			continue;
		int e = unmerge_range(sp, r, from, to);
		if (e && !err)
			err = e;
	}
	engine_leave(sp);
	return err;
}

static int remark(struct samepage *sp, uintptr_t start, size_t len)
{
	engine_enter(sp); /* forgets the old range first, then marks the new one */
	int err = regions_mark(sp, start, len, true);
	engine_leave(sp);
	return err;
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
	if (!active())
		return prim_mremap(old, old_len, new_len, flags, new_addr);

	uintptr_t o = (uintptr_t)old;
	size_t olen = (old_len + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
	bool was_mergeable = false;
	pthread_mutex_lock(&engines_lock);
	for (struct samepage *sp = engines; sp && !was_mergeable; sp = sp->next_engine)
		for (size_t ri = 0; engine_alive(sp) && ri < sp->nregions; ri++) {
			struct region *r = &sp->regions[ri];
			if (r->start < o + olen && region_addr(r, r->npages) > o)
				was_mergeable = true;
		}
	pthread_mutex_unlock(&engines_lock);
	if (was_mergeable)
		for_engines_in(o, olen, unmerge_for_move);

	as_lock_shared();
	void *m = prim_mremap(old, old_len, new_len, flags, new_addr);
	int saved = errno;
	if (m != MAP_FAILED) {
		engine_note_unmap(o, olen);
		if (flags & MREMAP_FIXED)
			engine_note_unmap((uintptr_t)new_addr, new_len);
	}
	as_unlock();
	if (m != MAP_FAILED && was_mergeable) {
		pthread_mutex_lock(&engines_lock);
		for (struct samepage *sp = engines; sp; sp = sp->next_engine) {
			if (!engine_alive(sp))
				continue;
			pthread_mutex_lock(&sp->lock);
			remark(sp, (uintptr_t)m, new_len);
			pthread_mutex_unlock(&sp->lock);
		}
		pthread_mutex_unlock(&engines_lock);
	}
	errno = saved;
	return m;
}

static int discard(struct samepage *sp, uintptr_t start, size_t len)
{
	return engine_discard(sp, start, len);
}

EXPORT int madvise(void *addr, size_t len, int advice)
{
	if (active() && (advice == MADV_DONTNEED || advice == MADV_FREE ||
			 advice == MADV_REMOVE || advice == MADV_DONTNEED_LOCKED) &&
	    !((uintptr_t)addr & (PAGE_SIZE - 1)))
		for_engines_in((uintptr_t)addr, (len + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1), discard);
	return prim_madvise(addr, len, advice);
}
