// SPDX-License-Identifier: MIT
/*
 * estimate-confirm.c - the batch of pages read from the process being
 * scanned (one process_vm_readv per batch, /proc/PID/mem for pages shared
 * with others), the hash lookup of each page, and the byte-for-byte
 * confirmation of every match (estimate-scan.c, "Confirmation"), with
 * the counting of copies per process, cgroup and total.
 */
#include "estimate-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

enum { MATCH, COLLISION, PENDING, NOMEM };

/* Opens /proc/PID/mem of the process being scanned, once. */
static int cur_mem_fd(struct est *e)
{
	char path[64];

	if (e->mem_fd < 0) {
		snprintf(path, sizeof(path), "/proc/%d/mem", (int)e->procs[e->cur].pid);
		e->mem_fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	return e->mem_fd;
}

/*
 * Reads one page through /proc/PID/mem.  That path takes no FOLL_PIN
 * reference, so reading a page shared since fork, or a KSM page, does not
 * make the kernel unshare it (a read-only pin by process_vm_readv does:
 * gup_must_unshare() since Linux 5.19), and it also reads PROT_NONE areas.
 */
static int read_mem(struct est *e, int proc, uint64_t addr, unsigned char *buf)
{
	char path[64];
	int fd, tmp = -1;
	ssize_t n;

	if (proc == e->cur) {
		fd = cur_mem_fd(e);
	} else {
		snprintf(path, sizeof(path), "/proc/%d/mem", (int)e->procs[proc].pid);
		fd = tmp = open(path, O_RDONLY | O_CLOEXEC);
	}
	if (fd < 0)
		return -errno;
	n = pread(fd, buf, EST_PAGE_SIZE, (off_t)addr);
	if (tmp >= 0)
		close(tmp);
	return n == EST_PAGE_SIZE ? 0 : n < 0 ? -errno : -EIO;
}

/* Reads one page of process index proc at taddr (tagged, see ADDR_SHARED). */
static int read_one(struct est *e, int proc, uint64_t taddr, unsigned char *buf)
{
	uint64_t addr = taddr & ~(uint64_t)ADDR_SHARED;
	struct iovec l = {buf, EST_PAGE_SIZE};
	struct iovec r = {(void *)(uintptr_t)addr, EST_PAGE_SIZE};

	if (!(taddr & ADDR_SHARED) &&
	    process_vm_readv(e->procs[proc].pid, &l, 1, &r, 1, 0) == EST_PAGE_SIZE)
		return 0;
	return read_mem(e, proc, addr, buf);
}

/* The bytes of the first copy of ent, if still in the batch buffer. */
static const unsigned char *batch_lookup(struct est *e, const struct est_entry *ent)
{
	struct est_batch *b = &e->b;
	int lo = 0, hi = b->done - 1;

	uint64_t addr = ent->addr & ~(uint64_t)ADDR_SHARED;

	if ((int)ent->proc != e->cur || hi < 0 || addr < b->addr[0] || addr > b->addr[hi])
		return NULL;
	while (lo <= hi) {
		int mid = (lo + hi) / 2;

		if (b->addr[mid] == addr)
			return b->valid[mid] ? b->buf + (size_t)mid * EST_PAGE_SIZE : NULL;
		if (b->addr[mid] < addr)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

/* Makes the current page the reference of ent (its first copy is gone or
 * changed). */
static void adopt(struct est *e, struct est_entry *ent, const unsigned char *page, uint64_t addr)
{
	ent->proc = (uint32_t)e->cur;
	ent->addr = addr;
	if (!ent->ref)
		ent->ref = est_store_add(e, page);
}

/*
 * Decides whether page (hash h) is a copy of ent, given the bytes of ent's
 * first copy as read again (ref), or NULL if they could not be read.
 */
static int judge(struct est *e, struct est_entry *ent, const unsigned char *ref,
		 const unsigned char *page, uint64_t addr, uint64_t h)
{
	if (!ref) {
		/* The first copy is gone (its process exited, or the area was
		 * unmapped): the hash is all that is left to go on. */
		e->tot.unconfirmed++;
		adopt(e, ent, page, addr);
		return MATCH;
	}
	if (!memcmp(ref, page, EST_PAGE_SIZE)) {
		e->tot.confirmed++;
		/* Keep the bytes from the third copy on: most contents that have
		 * two copies have only two (two VMs of one image), and storing
		 * them would cost a page each for nothing. */
		if (ent->count >= 2 && !ent->ref)
			ent->ref = est_store_add(e, page);
		return MATCH;
	}
	if (XXH3_64bits(ref, EST_PAGE_SIZE) != h) {
		/* The first copy was written to since it was hashed: the current
		 * page, which does have this hash, becomes the reference. */
		e->tot.reference_changed++;
		adopt(e, ent, page, addr);
		return MATCH;
	}
	e->tot.collisions++;
	return COLLISION;
}

/* Confirms that page (hash h, at addr in the current process) equals ent,
 * or returns PENDING when that needs a read the caller may batch. */
static int confirm(struct est *e, struct est_entry *ent, const unsigned char *page, uint64_t addr,
		   uint64_t h, bool may_defer)
{
	const unsigned char *ref;

	if (ent->ref) {
		/* A stored reference hashes to h by construction: a difference is a
		 * true collision of the 64-bit hash. */
		if (memcmp(est_store_page(e, ent->ref), page, EST_PAGE_SIZE)) {
			e->tot.collisions++;
			return COLLISION;
		}
		e->tot.confirmed++;
		return MATCH;
	}
	ref = batch_lookup(e, ent);
	if (ref)
		return judge(e, ent, ref, page, addr, h);
	if (may_defer)
		return PENDING;
	e->tot.rereads++;
	ref = read_one(e, (int)ent->proc, ent->addr, e->page2) ? NULL : e->page2;
	return judge(e, ent, ref, page, addr, h);
}

/*
 * Finds or inserts the content of page, probing from slot `from`: MATCH with
 * *out set, PENDING with *slot set (the entry there needs its first copy
 * read), or NOMEM.  The table is grown only between batches, so that slot
 * numbers of pending pages stay valid.
 */
static int tab_find(struct est *e, const unsigned char *page, uint64_t addr, uint64_t h,
		    uint64_t from, bool may_defer, struct est_entry **out, uint64_t *slot)
{
	if (!e->tab || e->tab_used * 10 >= (e->tab_mask + 1) * 9)
		return NOMEM;
	for (uint64_t j = from;; j = (j + 1) & e->tab_mask) {
		struct est_entry *ent = &e->tab[j];
		int r;

		if (!ent->count) {
			memset(ent, 0, sizeof(*ent));
			ent->hash = h;
			ent->addr = addr;
			ent->proc = (uint32_t)e->cur;
			e->tab_used++;
			*out = ent;
			return MATCH;
		}
		if (ent->hash != h)
			continue;
		r = confirm(e, ent, page, addr, h, may_defer);
		if (r == MATCH) {
			*out = ent;
			return MATCH;
		}
		if (r == PENDING) {
			*slot = j;
			return PENDING;
		}
	}
}

/*
 * Counts one more copy of ent, found in the current process.  kernel_n is
 * how many copies the kernel has seen before this one, for its arithmetic
 * (the table's count, or for zero pages those outside huge pages); kernel
 * is false for a copy the kernel frees without counting it (a zero page in
 * a huge page it splits).
 */
static void count_copy(struct est *e, struct est_entry *ent, bool zero, bool heavy,
		       uint64_t kernel_n, bool kernel)
{
	struct est_proc *p = &e->procs[e->cur];
	uint32_t i = ent->count;
	bool ksm_saved =
	    kernel &&
	    (zero && e->cfg.use_zero_pages ? true : kernel_n % e->cfg.max_page_sharing != 0);
	bool first_in_proc = ent->last_proc != (uint32_t)e->cur + 1;
	bool first_in_cg = ent->last_cg != (uint32_t)p->cgroup + 1;

	/* One class of copies (zero, table, the table's heavy part): its
	 * distinct contents in each unit, its copies after the first, and
	 * those the kernel frees. */
#define COUNT(distinct, saved, ksm)                                                                \
	do {                                                                                       \
		e->pu->distinct += first_in_proc;                                                  \
		e->cu->distinct += first_in_cg;                                                    \
		if (i == 0)                                                                        \
			e->tu->distinct++;                                                         \
		else                                                                               \
			BUMP(e, saved);                                                            \
		if (ksm_saved)                                                                     \
			BUMP(e, ksm);                                                              \
	} while (0)
	if (zero)
		COUNT(zero_distinct, zero_saved, zero_ksm_saved);
	else
		COUNT(tbl_distinct, tbl_saved, tbl_ksm_saved);
	if (heavy)
		COUNT(hv_distinct, hv_saved, hv_ksm_saved);
#undef COUNT
	ent->last_proc = (uint32_t)e->cur + 1;
	ent->last_cg = (uint32_t)p->cgroup + 1;
	if (i >= 1)
		est_occ_note(e, ent);
	if (ent->count < UINT32_MAX)
		ent->count++;
}

/* A copy of a table content; heavy: counted whatever its hash
 * (estimate-heavy.c). */
static void count_table_copy(struct est *e, struct est_entry *ent, bool heavy)
{
	BUMP(e, tbl_pages);
	if (heavy)
		BUMP(e, hv_pages);
	count_copy(e, ent, false, heavy, ent->count, true);
}

static void count_unreadable(struct est *e)
{
	BUMP(e, unreadable);
}

/*
 * Hashes and counts page j of the batch, or leaves it pending.  A page
 * that changed between passes is volatile and counts nowhere else; in the
 * passes before the last, pages are only hashed and recorded.
 */
static void account_page(struct est *e, int j)
{
	const unsigned char *page = e->b.buf + (size_t)j * EST_PAGE_SIZE;
	uint64_t addr = e->b.addr[j] | (e->b.shared[j] ? ADDR_SHARED : 0);
	uint64_t h = XXH3_64bits(page, EST_PAGE_SIZE), slot = 0;
	struct est_entry *ent = NULL;

	e->b.done = j; /* batch_lookup sees the pages before this one only */
	if (e->pass == 1 && !e->final && e->heavy.key && h != e->zero_hash)
		est_heavy_add(e, h);
	if (!est_seen_stable(e, e->b.addr[j], h)) {
		if (e->final)
			BUMP(e, volatile_pages);
		return;
	}
	if (!e->final)
		return;
	BUMP(e, scanned);
	if (h == e->zero_hash && est_page_is_zero(page)) {
		bool huge = e->b.huge[j];

		BUMP(e, zero);
		if (huge)
			BUMP(e, zero_huge);
		if (!e->zero.count) {
			e->zero.hash = h;
			e->zero.proc = (uint32_t)e->cur;
			e->zero.addr = addr;
		}
		count_copy(e, &e->zero, true, false, e->zero_small, !huge);
		e->zero_small += !huge;
		return;
	}
	bool heavy = e->heavy.used && est_heavy_has(e, h);
	if (h > e->thresh && !heavy)
		return; /* sampled out: scanned, not counted */
	switch (tab_find(e, page, addr, h, h & e->tab_mask, true, &ent, &slot)) {
	case MATCH: count_table_copy(e, ent, heavy); break;
	case PENDING: e->pend[e->npend++] = (struct est_pend){j, slot, h}; break;
	default: count_unreadable(e); /* out of memory: say so rather than guess */
	}
}

/*
 * Settles the pages of the batch whose match needs the first copy of a
 * content read again: one process_vm_readv per process for all of them,
 * rather than one system call per page (two VMs of one image would need
 * one for every page).
 */
static void resolve_pending(struct est *e)
{
	uint64_t rslot[BATCH_PAGES];
	bool ok[BATCH_PAGES], done[BATCH_PAGES];
	int nr = 0;

	for (int i = 0; i < e->npend; i++) {
		uint64_t s = e->pend[i].slot;
		int k;

		if (e->tab[s].ref)
			continue;
		for (k = 0; k < nr && rslot[k] != s; k++)
			;
		if (k == nr) {
			rslot[nr] = s;
			ok[nr] = done[nr] = false;
			nr++;
		}
	}
	e->tot.rereads += (uint64_t)nr;
	for (int k = 0; k < nr; k++) {
		struct iovec local[BATCH_PAGES], remote[BATCH_PAGES];
		uint32_t proc = e->tab[rslot[k]].proc;
		int idx[BATCH_PAGES], n = 0;
		ssize_t got;

		if (done[k])
			continue;
		if (e->tab[rslot[k]].addr & ADDR_SHARED) {
			/* A first copy that was shared: through /proc/PID/mem. */
			done[k] = true;
			ok[k] = !read_one(e, (int)proc, e->tab[rslot[k]].addr,
					  e->scratch + (size_t)k * EST_PAGE_SIZE);
			continue;
		}
		for (int q = k; q < nr; q++) {
			/* First copies that were shared are read one by one. */
			if (done[q] || e->tab[rslot[q]].proc != proc ||
			    (e->tab[rslot[q]].addr & ADDR_SHARED))
				continue;
			local[n] =
			    (struct iovec){e->scratch + (size_t)q * EST_PAGE_SIZE, EST_PAGE_SIZE};
			remote[n] =
			    (struct iovec){(void *)(uintptr_t)e->tab[rslot[q]].addr, EST_PAGE_SIZE};
			idx[n++] = q;
			done[q] = true;
		}
		got = process_vm_readv(e->procs[proc].pid, local, (unsigned long)n, remote,
				       (unsigned long)n, 0);
		for (int q = 0; q < n; q++) {
			if (got >= (ssize_t)(q + 1) * EST_PAGE_SIZE)
				ok[idx[q]] = true;
			else
				ok[idx[q]] = !read_one(e, (int)proc, e->tab[rslot[idx[q]]].addr,
						       e->scratch + (size_t)idx[q] * EST_PAGE_SIZE);
		}
	}
	for (int i = 0; i < e->npend; i++) {
		struct est_pend *pd = &e->pend[i];
		struct est_entry *ent = &e->tab[pd->slot];
		const unsigned char *page = e->b.buf + (size_t)pd->j * EST_PAGE_SIZE;
		uint64_t addr = e->b.addr[pd->j] | (e->b.shared[pd->j] ? ADDR_SHARED : 0);
		int r;

		if (ent->ref) {
			r = confirm(e, ent, page, addr, pd->h, false);
		} else {
			int k;

			for (k = 0; k < nr && rslot[k] != pd->slot; k++)
				;
			r = judge(e, ent,
				  k < nr && ok[k] ? e->scratch + (size_t)k * EST_PAGE_SIZE : NULL,
				  page, addr, pd->h);
		}
		if (r == COLLISION)
			r = tab_find(e, page, addr, pd->h, (pd->slot + 1) & e->tab_mask, false,
				     &ent, &pd->slot);
		if (r == MATCH)
			count_table_copy(e, ent, est_heavy_has(e, pd->h));
		else
			count_unreadable(e);
	}
	e->npend = 0;
}

/*
 * Reads and accounts the pages of the batch.  Exclusive pages are read with
 * process_vm_readv, one remote iovec per run; shared ones through
 * /proc/PID/mem (see read_mem()).  Returns 0, or -ESRCH when the process is
 * gone, -EPERM when it may not be read.
 */
int est_batch_flush(struct est *e)
{
	struct est_batch *b = &e->b;
	struct est_proc *p = &e->procs[e->cur];
	struct iovec local[BATCH_PAGES], remote[BATCH_PAGES];
	int ret = 0, pos = 0;

	/* Grow the table now, not in the middle of the batch (see tab_find). */
	while (!e->tab || (e->tab_used + BATCH_PAGES) * 10 > (e->tab_mask + 1) * 7)
		if (est_tab_grow(e))
			break;
	for (int i = 0; i < b->count; i++) {
		b->state[i] = 0;
		if (b->shared[i])
			b->state[i] =
			    read_mem(e, e->cur, b->addr[i], b->buf + (size_t)i * EST_PAGE_SIZE) ? 2
												: 1;
	}
	while (pos < b->count) {
		int nr = 0;
		ssize_t n;

		for (int i = pos; i < b->count; i++) {
			unsigned char *dst = b->buf + (size_t)i * EST_PAGE_SIZE;

			if (b->state[i])
				continue;
			if (nr &&
			    (uint64_t)(uintptr_t)remote[nr - 1].iov_base + remote[nr - 1].iov_len ==
				b->addr[i] &&
			    (unsigned char *)local[nr - 1].iov_base + local[nr - 1].iov_len ==
				dst) {
				remote[nr - 1].iov_len += EST_PAGE_SIZE;
				local[nr - 1].iov_len += EST_PAGE_SIZE;
			} else {
				remote[nr] =
				    (struct iovec){(void *)(uintptr_t)b->addr[i], EST_PAGE_SIZE};
				local[nr] = (struct iovec){dst, EST_PAGE_SIZE};
				nr++;
			}
		}
		if (!nr)
			break;
		n = process_vm_readv(p->pid, local, (unsigned long)nr, remote, (unsigned long)nr,
				     0);
		if (n < 0 && (errno == ESRCH || errno == EPERM)) {
			ret = -errno;
			break;
		}
		/* Pages are filled in order: mark those the bytes cover. */
		int i;
		for (i = pos; i < b->count; i++) {
			if (b->state[i])
				continue;
			if (n < EST_PAGE_SIZE)
				break;
			b->state[i] = 1;
			n -= EST_PAGE_SIZE;
		}
		if (i == b->count)
			break;
		/*
		 * Page i failed: unmapped since pagemap was read, or in an area
		 * without read permission, which /proc/PID/mem can still read
		 * (FOLL_FORCE), as ksmd would merge such a page too.
		 */
		b->state[i] =
		    read_mem(e, e->cur, b->addr[i], b->buf + (size_t)i * EST_PAGE_SIZE) ? 2 : 1;
		if (b->state[i] == 2 && kill(p->pid, 0) && errno == ESRCH) {
			ret = -ESRCH;
			break;
		}
		pos = i + 1;
	}
	for (int i = 0; i < b->count; i++) {
		if (b->state[i] == 1) {
			e->tot.bytes_read += EST_PAGE_SIZE;
			account_page(e, i);
			b->valid[i] = 1;
		} else if (b->state[i] == 2) {
			count_unreadable(e);
		}
	}
	b->done = b->count;
	resolve_pending(e);
	b->count = 0;
	b->done = 0;
	if (e->cfg.progress)
		e->cfg.progress(e->cfg.progress_arg, e->tot.bytes_read, p);
	return ret;
}

int est_batch_add(struct est *e, uint64_t addr, bool shared, bool huge)
{
	struct est_batch *b = &e->b;

	b->valid[b->count] = 0;
	b->shared[b->count] = shared;
	b->huge[b->count] = huge;
	b->addr[b->count++] = addr;
	return b->count == BATCH_PAGES ? est_batch_flush(e) : 0;
}
