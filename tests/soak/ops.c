// SPDX-License-Identifier: MIT
/*
 * ops.c - the operations of a worker thread on the regions it owns, each
 * followed by a comparison of the pages it touched with their shadow.
 *
 * A region is registered mergeable (from samepage_alloc(), or mmap() and
 * samepage_madvise()) and filled with pages of a few patterns, so that its
 * pages merge with each other and with other regions of the engine; the
 * shadow is plain memory nobody registers.  Every operation updates the
 * shadow as the memory should change, then compares.  A difference is a
 * mismatch: counted, the first few recorded with their address and bytes,
 * then the shadow takes the memory's contents so that the same damage is
 * not counted twice.  A system call that writes into the region and fails
 * with EFAULT, or comes back short, is counted too; what it left in memory
 * is unknown, so the shadow takes the memory's contents for that range.
 */
#include "soak.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static __thread const char *thread_who = "engine";

static samepage_t *engine_get(struct worker *w, struct region *r)
{
	struct engine *e = &w->env->engines[r->engine];
	pthread_rwlock_rdlock(&e->lock);
	return e->sp;
}

static void engine_put(struct worker *w, struct region *r)
{
	pthread_rwlock_unlock(&w->env->engines[r->engine].lock);
}

static void api_error(const char *call, int err)
{
	atomic_fetch_add(&stats->api_errors, 1);
	note("%s: %s", call, samepage_strerror(err));
}

static void syscall_error(const char *call)
{
	atomic_fetch_add(&stats->syscall_errors, 1);
	note("%s: %s", call, strerror(errno));
}

static void record(struct region *r, size_t page, size_t off, size_t bytes, enum op op)
{
	atomic_fetch_add(&stats->mismatch_pages, 1);
	atomic_fetch_add(&stats->mismatch_bytes, bytes);
	uint32_t i = atomic_fetch_add(&stats->nrecords, 1);
	if (i >= SOAK_RECORDS)
		return;
	struct mismatch *m = &stats->rec[i];
	m->addr = (uint64_t)(uintptr_t)(r->addr + page * PG + off);
	m->bytes = (uint32_t)bytes;
	m->expected = (uint8_t)r->shadow[page * PG + off];
	m->actual = (uint8_t)r->addr[page * PG + off];
	m->found_by = (uint8_t)op;
	m->last_write = r->last_write[page];
	m->alloced = r->alloced;
	m->pid = getpid();
	snprintf(m->who, sizeof(m->who), "%s", thread_who);
}

size_t check_pages(struct worker *w, struct region *r, size_t first, size_t n, enum op op)
{
	size_t bad = 0;
	for (size_t p = first; p < first + n && p < r->npages; p++) {
		const char *mem = r->addr + p * PG;
		char *sh = r->shadow + p * PG;
		atomic_fetch_add(&stats->bytes_checked, PG);
		if (!memcmp(mem, sh, PG))
			continue;
		size_t off = PG, bytes = 0;
		for (size_t i = 0; i < PG; i++)
			if (mem[i] != sh[i]) {
				bytes++;
				if (off == PG)
					off = i;
			}
		if (!bytes)
			continue; /* it changed back under our eyes: a writer of its own? */
		record(r, p, off, bytes, op);
		memcpy(sh, mem, PG); /* count this damage once */
		bad++;
	}
	return bad;
}

static void mark(struct region *r, size_t first_byte, size_t len, enum op op)
{
	for (size_t p = first_byte / PG; p <= (first_byte + len - 1) / PG && p < r->npages; p++)
		r->last_write[p] = (uint8_t)op;
}

/* After a failed read the range holds what the kernel left: the shadow takes it. */
static void resync(struct region *r, size_t first_byte, size_t len)
{
	memcpy(r->shadow + first_byte, r->addr + first_byte, len);
}

static unsigned pick_pattern(struct worker *w)
{
	unsigned p = (unsigned)rnd_below(&w->rng, NPATTERNS);
	return p ? w->env->pattern_base + p : 0;
}

static void fill_region(struct worker *w, struct region *r)
{
	for (size_t p = 0; p < r->npages; p++) {
		char *sh = r->shadow + p * PG;
		fill_pattern(sh, pick_pattern(w));
		if (rnd_below(&w->rng, 8) == 0) /* a page of its own */
			memcpy(sh + rnd_below(&w->rng, PG - 8), &w->rng, 8);
		memcpy(r->addr + p * PG, sh, PG);
		r->last_write[p] = OP_MMAP;
	}
}

void region_map(struct worker *w, struct region *r)
{
	size_t len = r->npages * PG;
	samepage_t *sp = engine_get(w, r);
	int err = 0;
	if (r->alloced) {
		void *p = NULL;
		err = samepage_alloc(sp, len, &p);
		r->addr = err ? NULL : p;
		if (err)
			api_error("samepage_alloc", err);
	}
	if (!r->addr) {
		r->alloced = false;
		r->addr =
		    mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (r->addr == MAP_FAILED) {
			fprintf(stderr, "soak: mmap of %zu bytes: %s\n", len, strerror(errno));
			exit(2);
		}
		madvise(r->addr, len, MADV_NOHUGEPAGE);
	}
	fill_region(w, r);
	r->split = false;
	r->locked = false;
	memset(r->advice, 0, r->npages); /* a new mapping: no advice */
	if (!r->alloced && sp) {
		err = samepage_madvise(sp, r->addr, len, SAMEPAGE_MERGEABLE);
		if (err)
			api_error("samepage_madvise(MERGEABLE)", err);
	}
	engine_put(w, r);
	check_pages(w, r, 0, r->npages, OP_MMAP);
}

void region_unmap(struct worker *w, struct region *r)
{
	size_t len = r->npages * PG;
	samepage_t *sp = engine_get(w, r);
	if (r->alloced && sp) {
		int err = samepage_free(sp, r->addr, len);
		if (err)
			api_error("samepage_free", err);
	} else if (munmap(r->addr, len)) {
		syscall_error("munmap");
	}
	r->addr = NULL; /* under the lock: an engine reopened meanwhile skips it */
	engine_put(w, r);
}

/* ---- the operations ---- */

static bool is_zero(const char *page)
{
	return page[0] == 0 && !memcmp(page, page + 1, PG - 1);
}

/* mlockall(MCL_CURRENT | MCL_FUTURE) is in force, and how many
 * munlockall calls were made (op_mlock). */
static _Atomic int all_locked;
static _Atomic unsigned unlock_epoch;
static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;

/* Whether the kernel may refuse to discard [part of] the region, since it
 * is locked. */
static bool maybe_locked(const struct region *r)
{
	return atomic_load(&all_locked) ||
	       (r->locked && r->lock_epoch == atomic_load(&unlock_epoch));
}

static void op_write(struct worker *w, struct region *r)
{
	size_t page = rnd_below(&w->rng, r->npages);
	switch (rnd_below(&w->rng, 4)) {
	case 0: { /* whole pages of one pattern: duplicates (zeros included) */
		size_t n = 1 + rnd_below(&w->rng, 4);
		unsigned pat = pick_pattern(w);
		if (page + n > r->npages)
			n = r->npages - page;
		for (size_t p = page; p < page + n; p++) {
			fill_pattern(r->shadow + p * PG, pat);
			memcpy(r->addr + p * PG, r->shadow + p * PG, PG);
		}
		mark(r, page * PG, n * PG, OP_WRITE);
		check_pages(w, r, page, n, OP_WRITE);
		break;
	}
	case 1: { /* a zero page: what use_zero_pages merges */
		memset(r->shadow + page * PG, 0, PG);
		memset(r->addr + page * PG, 0, PG);
		mark(r, page * PG, PG, OP_WRITE);
		check_pages(w, r, page, 1, OP_WRITE);
		break;
	}
	case 2: { /* a few bytes: breaks a merged page */
		for (int k = 0; k < 3; k++) {
			size_t off = page * PG + rnd_below(&w->rng, PG);
			char v = (char)rnd(&w->rng);
			r->addr[off] = v;
			r->shadow[off] = v;
		}
		mark(r, page * PG, PG, OP_WRITE);
		check_pages(w, r, page, 1, OP_WRITE);
		break;
	}
	default: { /* a byte range across a page boundary, from a pattern */
		char src[2 * PG];
		size_t start = page * PG + rnd_below(&w->rng, PG);
		size_t len = 1 + rnd_below(&w->rng, 2 * PG - 1);
		if (start + len > r->npages * PG)
			len = r->npages * PG - start;
		fill_pattern(src, pick_pattern(w));
		fill_pattern(src + PG, pick_pattern(w));
		memcpy(r->addr + start, src, len);
		memcpy(r->shadow + start, src, len);
		mark(r, start, len, OP_WRITE);
		check_pages(w, r, start / PG, (start + len - 1) / PG - start / PG + 1, OP_WRITE);
		break;
	}
	}
}

/* A read that fails or comes back short: counted, the range resynced. */
static void read_failed(struct region *r, size_t start, size_t len, ssize_t got, enum op op)
{
	if (got < 0 && errno == EFAULT) {
		atomic_fetch_add(&stats->efault[op], 1);
		note("%s into %p (%zu bytes) failed with EFAULT", op_name[op],
		     (void *)(r->addr + start), len);
	} else if (got < 0) {
		syscall_error(op_name[op]);
	} else {
		atomic_fetch_add(&stats->short_reads[op], 1);
		note("%s into %p came back short: %zd of %zu bytes", op_name[op],
		     (void *)(r->addr + start), got, len);
	}
	resync(r, start, len);
}

/* A byte range of the region for a read: [*start, *start + len). */
static size_t read_range(struct worker *w, struct region *r, bool aligned, size_t *start)
{
	size_t len;
	if (aligned) {
		size_t n = 1 + rnd_below(&w->rng, 4);
		if (n > r->npages)
			n = r->npages;
		*start = rnd_below(&w->rng, r->npages - n + 1) * PG;
		return n * PG;
	}
	len = 1 + rnd_below(&w->rng, 3 * PG);
	if (len > r->npages * PG)
		len = r->npages * PG;
	*start = rnd_below(&w->rng, r->npages * PG - len + 1);
	return len;
}

static void after_read(struct worker *w, struct region *r, size_t start, size_t len,
		       const char *src, ssize_t got, enum op op)
{
	if (got == (ssize_t)len)
		memcpy(r->shadow + start, src, len);
	else
		read_failed(r, start, len, got, op);
	mark(r, start, len, op);
	check_pages(w, r, start / PG, (start + len - 1) / PG - start / PG + 1, op);
}

static void op_pread(struct worker *w, struct region *r, bool direct)
{
	size_t start, len = read_range(w, r, direct, &start);
	size_t foff = direct ? rnd_below(&w->rng, FILE_PAGES - len / PG + 1) * PG
			     : rnd_below(&w->rng, FILE_PAGES * PG - len + 1);
	ssize_t got =
	    pread(direct ? w->env->fd_direct : w->env->fd, r->addr + start, len, (off_t)foff);
	after_read(w, r, start, len, w->env->file_shadow + foff, got,
		   direct ? OP_DIRECT : OP_PREAD);
}

static void op_readv(struct worker *w, struct region *r)
{
	size_t start, len = read_range(w, r, false, &start);
	size_t foff = rnd_below(&w->rng, FILE_PAGES * PG - len + 1);
	struct iovec iov[3];
	int n = 0;
	for (size_t done = 0; done < len && n < 3; n++) {
		size_t part = n == 2 ? len - done : 1 + rnd_below(&w->rng, len - done);
		iov[n].iov_base = r->addr + start + done;
		iov[n].iov_len = part;
		done += part;
	}
	ssize_t got = preadv(w->env->fd, iov, n, (off_t)foff);
	after_read(w, r, start, len, w->env->file_shadow + foff, got, OP_READV);
}

static void op_recv(struct worker *w, struct region *r)
{
	size_t start, len = read_range(w, r, false, &start);
	const char *src = w->env->file_shadow + rnd_below(&w->rng, FILE_PAGES * PG - len + 1);
	if (send(w->sock[1], src, len, MSG_NOSIGNAL) != (ssize_t)len) {
		syscall_error("send to the socketpair");
		return;
	}
	ssize_t got;
	if (rnd_below(&w->rng, 2)) {
		got = recv(w->sock[0], r->addr + start, len, MSG_WAITALL);
	} else { /* recvmsg, two iovecs */
		size_t half = len / 2;
		struct iovec iov[2] = {{r->addr + start, half},
				       {r->addr + start + half, len - half}};
		struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
		got = recvmsg(w->sock[0], &msg, MSG_WAITALL);
	}
	if (got != (ssize_t)len) { /* what is left of the message would be read next time */
		int saved = errno;
		char sink[4096];
		while (recv(w->sock[0], sink, sizeof(sink), MSG_DONTWAIT) > 0)
			;
		errno = saved;
	}
	after_read(w, r, start, len, src, got, OP_RECV);
}

static void op_discard(struct worker *w, struct region *r)
{
	size_t n = 1 + rnd_below(&w->rng, 16);
	if (n > r->npages)
		n = r->npages;
	size_t page = rnd_below(&w->rng, r->npages - n + 1);
	samepage_t *sp = engine_get(w, r);
	bool locked = maybe_locked(r);
	int err = 0;
	if (r->alloced && sp)
		err = samepage_discard(sp, r->addr + page * PG, n * PG);
	else if (madvise(r->addr + page * PG, n * PG, MADV_DONTNEED))
		err = -errno;
	engine_put(w, r);
	if (err == -EINVAL && (locked || maybe_locked(r))) {
		/* The kernel refuses to discard locked memory, after it has
		 * discarded the mappings before it in the range: each page
		 * reads either what it held or zeros. */
		for (size_t p = page; p < page + n; p++)
			if (memcmp(r->addr + p * PG, r->shadow + p * PG, PG) &&
			    is_zero(r->addr + p * PG)) {
				memset(r->shadow + p * PG, 0, PG);
				mark(r, p * PG, PG, OP_DISCARD);
			}
		check_pages(w, r, page, n, OP_DISCARD);
		return;
	}
	if (err && r->alloced && sp)
		api_error("samepage_discard", err);
	else if (err)
		syscall_error("madvise(MADV_DONTNEED)");
	memset(r->shadow + page * PG, 0, n * PG);
	mark(r, page * PG, n * PG, OP_DISCARD);
	check_pages(w, r, page, n, OP_DISCARD);
}

/* How many mappings (VMAs) /proc/self/smaps shows in [p, p + len), how
 * many of them map a file (the pool), and the distinct VmFlags among them
 * (what keeps them apart), as many as fit in flags. */
static int mappings_in(const char *p, size_t len, int *files, char *flags, size_t size)
{
	char line[512];
	int n = 0, in = 0;
	FILE *f = fopen("/proc/self/smaps", "r");
	*files = 0;
	flags[0] = '\0';
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi, inode = 0;
		if (sscanf(line, "%lx-%lx %*s %*s %*s %lu", &lo, &hi, &inode) == 3) {
			in = hi > (uintptr_t)p && lo < (uintptr_t)p + len;
			n += in;
			*files += in && inode != 0;
		} else if (in && !strncmp(line, "VmFlags:", 8)) {
			/* "[ rd wr ... ]": bracketed, so that one set is never
			 * found inside a longer one (" ac " in " ac nh ") */
			char v[160];
			size_t used = strlen(flags);
			int k = snprintf(v, sizeof(v), "[%.*s]", (int)strcspn(line + 8, "\n"),
					 line + 8);
			if (k > 0 && (size_t)k < sizeof(v) && !strstr(flags, v) &&
			    used + (size_t)k < size)
				memcpy(flags + used, v, (size_t)k + 1);
		}
	}
	fclose(f);
	return n;
}

static void reregister(samepage_t *sp, struct region *r)
{
	if (!sp)
		return;
	int err = samepage_madvise(sp, r->addr, r->npages * PG, SAMEPAGE_MERGEABLE);
	if (err)
		api_error("samepage_madvise(MERGEABLE) again", err);
}

/* The region moved with MREMAP_DONTUNMAP (as userfaultfd-based migration
 * and garbage collectors move memory): the old range stays mapped, empty,
 * and must read zeros (no merge may map anything there), then goes. */
static void move_dontunmap(struct region *r)
{
	size_t len = r->npages * PG;
	char *old = r->addr, *q = mremap(old, len, len, MREMAP_MAYMOVE | MREMAP_DONTUNMAP);
	if (q == MAP_FAILED) {
		if (errno != EINVAL) /* EINVAL: before Linux 5.7 */
			syscall_error("mremap(MREMAP_DONTUNMAP)");
		return;
	}
	r->addr = q;
	static const char zeros[PG];
	for (size_t i = 0; i < r->npages; i++)
		if (memcmp(old + i * PG, zeros, PG)) {
			atomic_fetch_add(&stats->mismatch_pages, 1);
			note("%s: page %zu of the range MREMAP_DONTUNMAP left is not zeros",
			     thread_who, i);
		}
	if (munmap(old, len))
		syscall_error("munmap (the old range of MREMAP_DONTUNMAP)");
}

static void op_mmap(struct worker *w, struct region *r)
{
	size_t len = r->npages * PG;
	switch (rnd_below(&w->rng, 4)) {
	case 0: /* unmap, and a new region in its place */
		region_unmap(w, r);
		region_map(w, r);
		return;
	case 1: {	      /* mremap: grow by a page (it may move), then shrink back */
		if (r->split) /* the kernel resizes one VMA only */
			break;
		samepage_t *sp = engine_get(w, r);
		if (!r->alloced && rnd_below(&w->rng, 2)) {
			move_dontunmap(r);
			reregister(sp, r);
			engine_put(w, r);
			break;
		}
		char *q = mremap(r->addr, len, len + PG, MREMAP_MAYMOVE);
		if (q == MAP_FAILED) {
			char flags[200];
			int saved = errno, files,
			    maps = mappings_in(r->addr, len, &files, flags, sizeof(flags));
			atomic_fetch_add(&stats->syscall_errors, 1);
			note("%s: mremap of %p (%zu bytes, %d mappings, %d of a file, %s; VmFlags "
			     "%s) to grow by a page: %s",
			     thread_who, (void *)r->addr, len, maps, files,
			     r->alloced ? "from samepage_alloc" : "mmap", flags, strerror(saved));
		} else {
			r->addr = q;
			if (mremap(q, len + PG, len, 0) == MAP_FAILED)
				syscall_error("mremap (shrink)");
			reregister(sp, r);
		}
		engine_put(w, r);
		break;
	}
	case 2: { /* read-only for a moment, then a write */
		if (mprotect(r->addr, len, PROT_READ)) {
			syscall_error("mprotect(PROT_READ)");
			break;
		}
		check_pages(w, r, 0, r->npages, OP_MMAP);
		if (mprotect(r->addr, len, PROT_READ | PROT_WRITE)) {
			syscall_error("mprotect(PROT_READ|PROT_WRITE)");
			exit(2); /* the region cannot be written any more */
		}
		op_write(w, r);
		break;
	}
	default: { /* one page replaced by a fresh one (MAP_FIXED), the range registered again */
		size_t page = rnd_below(&w->rng, r->npages);
		samepage_t *sp = engine_get(w, r);
		if (mmap(r->addr + page * PG, PG, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED) {
			syscall_error("mmap(MAP_FIXED)");
			exit(2); /* a hole in the region */
		}
		r->split = true; /* a VMA of its own, even without us */
		r->advice[page] = 0;
		memset(r->shadow + page * PG, 0, PG);
		mark(r, page * PG, PG, OP_MMAP);
		reregister(sp, r);
		engine_put(w, r);
		break;
	}
	}
	check_pages(w, r, 0, r->npages, OP_MMAP);
}

/* Whether this process may lock memory: root (CAP_IPC_LOCK) or no limit.
 * Otherwise the mlock operation is a write: RLIMIT_MEMLOCK's 8 MiB would
 * refuse it, which is the kernel's rule, not the library's. */
static bool may_lock(void)
{
	struct rlimit rl;
	return geteuid() == 0 ||
	       (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur == RLIM_INFINITY);
}

/* Locked memory merges and stays locked (the kernel's KSM merges it too):
 * a range of the region locked, or the whole region unlocked, then written
 * and checked; now and then the whole process locked (mlockall, current
 * and future mappings) or unlocked (munlockall) by whichever worker comes. */
static void op_mlock(struct worker *w, struct region *r)
{
	size_t n = 1 + rnd_below(&w->rng, r->npages);
	size_t page = rnd_below(&w->rng, r->npages - n + 1);
	if (!may_lock()) {
		op_write(w, r);
		return;
	}
	switch (rnd_below(&w->rng, 16)) {
	case 0: /* the flag is set before the call and cleared after it */
		pthread_mutex_lock(&all_lock);
		if (!SOAK_SANITIZED && !all_locked) {
			all_locked = 1;
			if (mlockall(MCL_CURRENT | MCL_FUTURE))
				syscall_error("mlockall(MCL_CURRENT | MCL_FUTURE)");
		}
		pthread_mutex_unlock(&all_lock);
		break;
	case 1:
		pthread_mutex_lock(&all_lock);
		if (all_locked) {
			if (munlockall())
				syscall_error("munlockall");
			atomic_fetch_add(&unlock_epoch, 1);
			all_locked = 0;
		}
		pthread_mutex_unlock(&all_lock);
		break;
	case 2:
	case 3:
	case 4:
	case 5:
		if (munlock(r->addr, r->npages * PG))
			syscall_error("munlock");
		r->locked = false;
		break;
	default: /* not while another worker calls munlockall: the epoch says */
		pthread_mutex_lock(&all_lock);
		if (mlock(r->addr + page * PG, n * PG))
			syscall_error("mlock");
		r->locked = true;
		r->lock_epoch = atomic_load(&unlock_epoch);
		pthread_mutex_unlock(&all_lock);
		r->split |= n < r->npages; /* the kernel splits the VMA at the lock */
		break;
	}
	check_pages(w, r, 0, r->npages, OP_MLOCK);
	op_write(w, r);
}

/* What the application asks of its memory beside merging: each advice
 * must hold on merged pages as on any (the kernel's KSM keeps the flags
 * of the VMA), which a forked child shows (child_view). */
static void op_advise(struct worker *w, struct region *r)
{
	static const struct {
		int advice;
		const char *name;
		uint8_t set, clear;
	} kinds[] = {
	    {MADV_DONTFORK, "MADV_DONTFORK", ADV_DONTFORK, 0},
	    {MADV_DOFORK, "MADV_DOFORK", 0, ADV_DONTFORK},
	    {MADV_WIPEONFORK, "MADV_WIPEONFORK", ADV_WIPEONFORK, 0},
	    {MADV_KEEPONFORK, "MADV_KEEPONFORK", 0, ADV_WIPEONFORK},
	    {MADV_DONTDUMP, "MADV_DONTDUMP", 0, 0},
	    {MADV_DODUMP, "MADV_DODUMP", 0, 0},
	};
	unsigned k = (unsigned)rnd_below(&w->rng, sizeof(kinds) / sizeof(kinds[0]));
	size_t n = 1 + rnd_below(&w->rng, r->npages);
	size_t page = rnd_below(&w->rng, r->npages - n + 1);
	samepage_t *sp = engine_get(w, r); /* not while the engine is reopened */
	if (madvise(r->addr + page * PG, n * PG, kinds[k].advice)) {
		int saved = errno;
		atomic_fetch_add(&stats->syscall_errors, 1);
		note("%s: madvise(%s) of %zu pages (%s): %s", thread_who, kinds[k].name, n,
		     r->alloced ? "from samepage_alloc" : "mmap", strerror(saved));
	} else {
		for (size_t p = page; p < page + n; p++)
			r->advice[p] = (uint8_t)((r->advice[p] | kinds[k].set) & ~kinds[k].clear);
		r->split |= n < r->npages; /* the kernel splits the VMA there */
	}
	(void)sp;
	engine_put(w, r);
	check_pages(w, r, 0, r->npages, OP_ADVISE);
	op_write(w, r);
}

/* A forked child's view of the regions, from their advice: a DONTFORK
 * page is not mapped (then replaced by a fresh page here, so that the
 * child can go on), a WIPEONFORK page reads zeros. */
static void child_view(struct region *r)
{
	for (size_t p = 0; p < r->npages; p++) {
		char *a = r->addr + p * PG;
		if (r->advice[p] & ADV_DONTFORK) {
			if (!(msync(a, PG, MS_ASYNC) == -1 && errno == ENOMEM)) {
				atomic_fetch_add(&stats->mismatch_pages, 1);
				note(
				    "child of a fork: a MADV_DONTFORK page is mapped in the child");
			}
			if (mmap(a, PG, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
				_exit(3);
			memset(r->shadow + p * PG, 0, PG);
		} else if (r->advice[p] & ADV_WIPEONFORK) {
			memset(r->shadow + p * PG, 0, PG);
		}
	}
}

/* A child checks its copy of the worker's regions, writes and checks. */
static void child_main(struct worker *w)
{
	thread_who = "child of a fork";
	for (int i = 0; i < w->nregions; i++)
		child_view(&w->regions[i]);
	for (int i = 0; i < w->nregions; i++)
		check_pages(w, &w->regions[i], 0, w->regions[i].npages, OP_CHILD);
	for (int round = 0; round < 8; round++) {
		for (int k = 0; k < 16; k++)
			op_write(w, &w->regions[rnd_below(&w->rng, w->nregions)]);
		usleep(2000);
	}
	for (int i = 0; i < w->nregions; i++)
		check_pages(w, &w->regions[i], 0, w->regions[i].npages, OP_CHILD);
	_exit(0);
}

static void op_fork(struct worker *w)
{
	atomic_fetch_add(&w->env->children_alive, 1);
	pid_t pid = fork();
	if (pid < 0) {
		syscall_error("fork");
	} else if (pid == 0) {
		child_main(w);
	} else {
		int status = 0;
		pid_t got = 0;
		atomic_fetch_add(&stats->children, 1);
		/* A child does little: one still there after a minute hangs. */
		for (int i = 0; i < 60000 && (got = waitpid(pid, &status, WNOHANG)) == 0; i++)
			usleep(1000);
		if (got == 0) {
			atomic_fetch_add(&stats->hangs, 1);
			note("a forked child (pid %d) of %s hung for 60 s: killed", (int)pid,
			     thread_who);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
		} else if (got < 0) {
			syscall_error("waitpid");
		} else if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			atomic_fetch_add(&stats->child_crashes, 1);
			if (WIFSIGNALED(status))
				note("a forked child of %s was killed by signal %d (%s)",
				     thread_who, WTERMSIG(status), strsignal(WTERMSIG(status)));
			else
				note("a forked child of %s exited with status %d", thread_who,
				     WEXITSTATUS(status));
		}
	}
	atomic_fetch_sub(&w->env->children_alive, 1);
}

/* ---- the worker ---- */

/* Relative frequencies of the worker's operations. */
static const unsigned weight[NOPS] = {
    [OP_WRITE] = 24,  [OP_PREAD] = 4, [OP_DIRECT] = 3, [OP_READV] = 3, [OP_RECV] = 3,
    [OP_DISCARD] = 2, [OP_MMAP] = 1,  [OP_FORK] = 1,   [OP_MLOCK] = 1, [OP_ADVISE] = 1};

static enum op pick_op(struct worker *w, double *next_fork)
{
	unsigned total = 0;
	for (int k = 0; k < NOPS; k++)
		total += opts->on[k] && (!w->sigblock || k == OP_WRITE) ? weight[k] : 0;
	if (!total)
		return OP_VERIFY;
	unsigned x = (unsigned)rnd_below(&w->rng, total);
	for (int k = 0; k < NOPS; k++) {
		unsigned wk = opts->on[k] && (!w->sigblock || k == OP_WRITE) ? weight[k] : 0;
		if (x < wk) {
			/* At most two forks a second per worker: a fork keeps the
			 * KSM pages it saw until its child is gone, and more
			 * would leave little to merge. */
			if (k == OP_FORK) {
				double t = soak_now();
				if (t < *next_fork)
					return OP_WRITE;
				*next_fork = t + 0.5;
			}
			return (enum op)k;
		}
		x -= wk;
	}
	return OP_VERIFY;
}

void worker_setup(struct worker *w, struct env *env, int nregions, int first_engine, uint64_t seed,
		  bool sigblock)
{
	memset(w, 0, sizeof(*w));
	w->env = env;
	w->rng = seed | 1;
	w->sigblock = sigblock;
	w->nregions = nregions;
	w->regions = calloc((size_t)nregions, sizeof(*w->regions));
	w->sock[0] = w->sock[1] = -1;
	if (!w->regions) {
		fprintf(stderr, "soak: out of memory\n");
		exit(2);
	}
	if (opts->on[OP_RECV] && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, w->sock)) {
		fprintf(stderr, "soak: socketpair: %s\n", strerror(errno));
		exit(2);
	}
	for (int i = 0; i < nregions; i++) {
		struct region *r = &w->regions[i];
		r->npages = (size_t)opts->pages;
		r->engine = (first_engine + i) % env->nengines;
		r->alloced = i % 2 == 1;
		r->shadow = mmap(NULL, r->npages * PG, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		r->last_write = calloc(r->npages, 1);
		r->advice = calloc(r->npages, 1);
		if (r->shadow == MAP_FAILED || !r->last_write || !r->advice) {
			fprintf(stderr, "soak: out of memory for the shadow\n");
			exit(2);
		}
		region_map(w, r);
	}
}

void *worker_main(void *arg)
{
	struct worker *w = arg;
	double next_fork = 0;
	thread_who = w->env->who;
	if (w->sigblock) {
		sigset_t all;
		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, NULL);
	}
	for (uint64_t n = 1; !soak_stopping(); n++) {
		struct region *r = &w->regions[rnd_below(&w->rng, w->nregions)];
		enum op op = pick_op(w, &next_fork);
		switch (op) {
		case OP_WRITE: op_write(w, r); break;
		case OP_PREAD: op_pread(w, r, false); break;
		case OP_DIRECT: op_pread(w, r, true); break;
		case OP_READV: op_readv(w, r); break;
		case OP_RECV: op_recv(w, r); break;
		case OP_DISCARD: op_discard(w, r); break;
		case OP_MMAP: op_mmap(w, r); break;
		case OP_FORK: op_fork(w); break;
		case OP_MLOCK: op_mlock(w, r); break;
		case OP_ADVISE: op_advise(w, r); break;
		default: check_pages(w, r, 0, r->npages, OP_VERIFY); break;
		}
		atomic_fetch_add(&stats->ops[op], 1);
		if (n % 32 == 0) { /* pages nobody touched lately */
			r = &w->regions[rnd_below(&w->rng, w->nregions)];
			check_pages(w, r, 0, r->npages, OP_VERIFY);
			atomic_fetch_add(&stats->ops[OP_VERIFY], 1);
		}
		if (opts->pause_us)
			usleep(opts->pause_us);
	}
	for (int i = 0; i < w->nregions; i++)
		check_pages(w, &w->regions[i], 0, w->regions[i].npages, OP_VERIFY);
	return NULL;
}

/* After the engines closed: merged memory must still read right. */
void worker_teardown(struct worker *w)
{
	for (int i = 0; i < w->nregions; i++) {
		struct region *r = &w->regions[i];
		check_pages(w, r, 0, r->npages, OP_VERIFY);
		munmap(r->addr, r->npages * PG);
		munmap(r->shadow, r->npages * PG);
		free(r->last_write);
		free(r->advice);
	}
	free(w->regions);
	if (w->sock[0] >= 0) {
		close(w->sock[0]);
		close(w->sock[1]);
	}
}
