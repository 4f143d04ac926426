// SPDX-License-Identifier: MIT
/*
 * estimate-scan.c - reads other processes' private anonymous pages, hashes
 * them and counts identical contents, for `ksmctl estimate`.
 *
 * DOC: Overview
 *
 * For each target process: parse /proc/PID/maps and keep the areas that KSM
 * could merge; read /proc/PID/pagemap for those areas to learn which pages
 * are present, swapped, exclusively mapped, and (as root) their PFNs; read
 * the present pages in batches with one process_vm_readv per batch (one
 * remote iovec per run of present pages); hash each page with XXH3-64; look
 * the hash up in an open-addressing table of contents.  The target is never
 * stopped: a page that changes while it is read gives a slightly wrong
 * answer for that page, never a crash (see "Confirmation").
 *
 * Confirmation: a match on a 64-bit hash is confirmed byte for byte before
 * a page is counted as a copy.  The bytes of the first copy are found, in
 * order of cost: in a store of confirmed references (4 KiB per content that
 * has two copies or more, within a memory budget); in the batch buffer just
 * read; or by reading the first copy again from its process.  Memory is so
 * spent only on contents that really have duplicates, and a content with
 * many copies costs one extra read at most.  When the budget is spent every
 * confirmation reads again: slower, still exact.  If the first copy changed
 * meanwhile (its hash differs), the current page becomes the reference; if
 * it cannot be read any more (its process exited) the match is accepted on
 * the hash alone.  Both cases are counted and reported.
 *
 * Sampling: with --sample F, a non-zero content enters the table only if its
 * hash falls in the lowest fraction F of the hash space.  Every copy of a
 * sampled content is seen, so the saving per sampled content is exact and
 * the total is a Horvitz-Thompson estimate; estimate.c states the interval.
 */
#include "estimate-scan.h"
#include "procfs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#define XXH_INLINE_ALL /* Debian's libxxhash-dev header: inlined, nothing to link */
#include <xxhash.h>

/* /proc/PID/pagemap bits (Documentation/admin-guide/mm/pagemap.rst). */
#define PM_PFN_MASK ((1ULL << 55) - 1)
#define PM_EXCLUSIVE (1ULL << 56)
#define PM_FILE (1ULL << 61)
#define PM_SWAP (1ULL << 62)
#define PM_PRESENT (1ULL << 63)
/* /proc/kpageflags bits. */
#define KPF_KSM 21
#define KPF_ZERO_PAGE 24

/*
 * The PAGEMAP_SCAN ioctl of Linux 6.7 (include/uapi/linux/fs.h), declared
 * here because the build machines' kernel headers may predate it.
 */
#define EST_PAGE_IS_PRESENT (1 << 3)
#define EST_PAGE_IS_SWAPPED (1 << 4)
struct est_page_region {
	uint64_t start, end, categories;
};
struct est_pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define EST_PAGEMAP_SCAN _IOWR('f', 16, struct est_pm_scan_arg)

/*
 * 128 pages (512 KiB) per read: small enough that hashing finds the pages
 * still in the L2/L3 cache after process_vm_readv wrote them, large enough
 * that the system call costs little (measured in estimate_bench).
 */
#define BATCH_PAGES 128
#define PAGEMAP_CHUNK 8192 /* entries per pagemap read: 32 MiB of address space */
#define STORE_CHUNK 256	   /* reference pages per store allocation */
#define OCC_NONE 0

/* ------------------------------------------------------------ Tables ---- */

/*
 * One content.  count == 0 marks an empty slot.  (proc, addr) locate the
 * first copy seen, so it can be read again for confirmation; ref, when not
 * zero, is a 1-based index into the reference store holding its bytes.
 * last_proc/last_cg are 1-based indexes of the last process and cgroup that
 * held a copy: scans go process by process, cgroup by cgroup, so "not the
 * last one" means "first copy in this unit".
 */
#define ADDR_SHARED 1ULL /* in est_entry.addr: the first copy was not exclusive */

struct est_entry {
	uint64_t hash;
	uint64_t addr; /* page-aligned, | ADDR_SHARED */
	uint32_t proc;
	uint32_t count;
	uint32_t last_proc;
	uint32_t last_cg;
	uint32_t ref;
	uint32_t occ; /* 1-based head of the list of processes, once count >= 2 */
};

/* A (content, process) pair, for the "most duplicated contents" report. */
struct est_occ {
	uint32_t proc;
	uint32_t copies;
	uint32_t next;
};

/* The set of PFNs already seen, for pages mapped more than once. */
#define PFN_KSM (1ULL << 63)
#define PFN_ZERO (1ULL << 62)

struct est_batch {
	unsigned char *buf;		   /* BATCH_PAGES pages */
	uint64_t addr[BATCH_PAGES];	   /* remote address of each page, ascending */
	unsigned char valid[BATCH_PAGES];  /* page was read and accounted */
	unsigned char shared[BATCH_PAGES]; /* not exclusively mapped: read via /proc/PID/mem */
	unsigned char state[BATCH_PAGES];  /* 0 to read, 1 read, 2 failed */
	int count;
	int done; /* pages [0, done) are accounted (or failed) */
};

/* A page of the batch waiting for the first copy of its content. */
struct est_pend {
	int j;	       /* page index in the batch */
	uint64_t slot; /* the table entry it matched by hash */
	uint64_t h;
};

struct est {
	struct est_config cfg;
	uint64_t thresh;    /* keep a non-zero content iff hash <= thresh */
	uint64_t zero_hash; /* XXH3 of a page of zeros */

	struct est_entry *tab;
	uint64_t tab_mask;
	uint64_t tab_used;
	struct est_entry zero; /* the zero content, outside the table */

	struct est_occ *occ;
	uint32_t nocc, occ_cap;

	unsigned char **store;
	uint32_t store_pages, store_cap_chunks;
	uint64_t store_limit; /* pages */

	uint64_t *pfns; /* open addressing, key pfn+1 in low bits, flags high */
	uint64_t pfn_mask, pfn_used;
	uint64_t zero_pfn;
	bool have_pfns;
	bool no_pagemap_scan; /* the ioctl is missing: read all of pagemap */
	int kpageflags_fd;

	struct est_proc *procs;
	int nprocs, procs_cap;
	struct est_cgroup *cgroups;
	int ncgroups, cgroups_cap;

	struct est_unit total;
	struct est_totals tot; /* counters of confirmation, bytes read */

	/* The process being scanned. */
	int cur;
	int mem_fd; /* /proc/PID/mem, opened on the first unreadable page */
	struct est_batch b;
	unsigned char *page2;	/* one page for re-reads */
	unsigned char *scratch; /* BATCH_PAGES pages for batched re-reads */
	struct est_pend pend[BATCH_PAGES];
	int npend;
};

static const unsigned char zero_page[EST_PAGE_SIZE];

static bool page_is_zero(const unsigned char *p)
{
	const uint64_t *w = (const uint64_t *)p;
	uint64_t acc = 0;

	for (size_t i = 0; i < EST_PAGE_SIZE / 8; i++)
		acc |= w[i];
	return acc == 0;
}

static void *xrealloc_array(void *p, size_t n, size_t size)
{
	if (n && size > SIZE_MAX / n)
		return NULL;
	return realloc(p, n * size);
}

/* ----------------------------------------------------- PFN set ---- */

static int pfn_grow(struct est *e)
{
	uint64_t ncap = (e->pfn_mask + 1) * 2;
	uint64_t *n = calloc(ncap, sizeof(*n));

	if (!n)
		return -ENOMEM;
	for (uint64_t i = 0; i <= e->pfn_mask; i++) {
		uint64_t v = e->pfns[i];

		if (!v)
			continue;
		uint64_t j = XXH3_64bits(&(uint64_t){v & PM_PFN_MASK}, 8) & (ncap - 1);
		while (n[j])
			j = (j + 1) & (ncap - 1);
		n[j] = v;
	}
	free(e->pfns);
	e->pfns = n;
	e->pfn_mask = ncap - 1;
	return 0;
}

/* Returns the slot of pfn: *slot is 0 if the pfn was not there yet. */
static uint64_t *pfn_slot(struct est *e, uint64_t pfn)
{
	uint64_t key = pfn + 1;
	uint64_t j;

	if ((e->pfn_used + 1) * 10 > (e->pfn_mask + 1) * 7 && pfn_grow(e))
		return NULL;
	j = XXH3_64bits(&key, 8) & e->pfn_mask;
	while (e->pfns[j] && (e->pfns[j] & PM_PFN_MASK) != key)
		j = (j + 1) & e->pfn_mask;
	return &e->pfns[j];
}

static uint64_t kpageflags(struct est *e, uint64_t pfn)
{
	uint64_t f = 0;

	if (e->kpageflags_fd < 0 || pread(e->kpageflags_fd, &f, 8, (off_t)(pfn * 8)) != 8)
		return 0;
	return f;
}

/* ---------------------------------------------------- Reference store ---- */

/* Copies page into the store: its 1-based index, or 0 when the budget is spent. */
static uint32_t store_add(struct est *e, const unsigned char *page)
{
	uint32_t i = e->store_pages;

	if (i >= e->store_limit || i == UINT32_MAX - 1)
		return 0;
	if (i % STORE_CHUNK == 0) {
		uint32_t c = i / STORE_CHUNK;

		if (c >= e->store_cap_chunks) {
			uint32_t ncap = e->store_cap_chunks ? e->store_cap_chunks * 2 : 16;
			unsigned char **n = xrealloc_array(e->store, ncap, sizeof(*n));

			if (!n)
				return 0;
			e->store = n;
			e->store_cap_chunks = ncap;
		}
		e->store[c] = malloc((size_t)STORE_CHUNK * EST_PAGE_SIZE);
		if (!e->store[c])
			return 0;
	}
	memcpy(e->store[i / STORE_CHUNK] + (size_t)(i % STORE_CHUNK) * EST_PAGE_SIZE, page,
	       EST_PAGE_SIZE);
	e->store_pages++;
	return i + 1;
}

static const unsigned char *store_page(const struct est *e, uint32_t ref)
{
	uint32_t i = ref - 1;

	return e->store[i / STORE_CHUNK] + (size_t)(i % STORE_CHUNK) * EST_PAGE_SIZE;
}

/* ------------------------------------------------------- Content table ---- */

static int tab_grow(struct est *e)
{
	uint64_t ncap = e->tab ? (e->tab_mask + 1) * 2 : 1 << 16;
	struct est_entry *n = calloc(ncap, sizeof(*n));

	if (!n)
		return -ENOMEM;
	for (uint64_t i = 0; e->tab && i <= e->tab_mask; i++) {
		struct est_entry *o = &e->tab[i];

		if (!o->count)
			continue;
		uint64_t j = o->hash & (ncap - 1);
		while (n[j].count)
			j = (j + 1) & (ncap - 1);
		n[j] = *o;
	}
	free(e->tab);
	e->tab = n;
	e->tab_mask = ncap - 1;
	return 0;
}

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

enum { MATCH, COLLISION, PENDING, NOMEM };

/* Makes the current page the reference of ent (its first copy is gone or
 * changed). */
static void adopt(struct est *e, struct est_entry *ent, const unsigned char *page, uint64_t addr)
{
	ent->proc = (uint32_t)e->cur;
	ent->addr = addr;
	if (!ent->ref)
		ent->ref = store_add(e, page);
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
			ent->ref = store_add(e, page);
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
		if (memcmp(store_page(e, ent->ref), page, EST_PAGE_SIZE)) {
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

static void occ_note(struct est *e, struct est_entry *ent)
{
	uint32_t cur = (uint32_t)e->cur;

	if (ent->occ != OCC_NONE && e->occ[ent->occ - 1].proc == cur) {
		e->occ[ent->occ - 1].copies++;
		return;
	}
	/* Room for two records: the first copy's, created lazily, and ours. */
	if (e->nocc + 2 > e->occ_cap) {
		uint32_t ncap = e->occ_cap ? e->occ_cap * 2 : 4096;
		struct est_occ *n = xrealloc_array(e->occ, ncap, sizeof(*n));

		if (!n)
			return; /* the list is for display only: lose it, not the scan */
		e->occ = n;
		e->occ_cap = ncap;
	}
	if (ent->occ == OCC_NONE) {
		/* count is 1: the one earlier copy was in ent->proc. */
		e->occ[e->nocc] = (struct est_occ){ent->proc, 1, OCC_NONE};
		ent->occ = ++e->nocc;
		if (ent->proc == cur) {
			e->occ[ent->occ - 1].copies++;
			return;
		}
	}
	e->occ[e->nocc] = (struct est_occ){cur, 1, ent->occ};
	ent->occ = ++e->nocc;
}

/* ------------------------------------------------------------ Scanning ---- */

#define BUMP(pu, cu, tu, field)                                                                    \
	do {                                                                                       \
		(pu)->field++;                                                                     \
		(cu)->field++;                                                                     \
		(tu)->field++;                                                                     \
	} while (0)

/* Counts one more copy of ent, found in the current process. */
static void count_copy(struct est *e, struct est_entry *ent, bool zero)
{
	struct est_proc *p = &e->procs[e->cur];
	struct est_unit *pu = &p->u, *cu = &e->cgroups[p->cgroup].u, *tu = &e->total;
	uint32_t i = ent->count;
	bool ksm_saved = zero && e->cfg.use_zero_pages ? true : i % e->cfg.max_page_sharing != 0;

	if (zero) {
		if (ent->last_proc != (uint32_t)e->cur + 1)
			pu->zero_distinct++;
		if (ent->last_cg != (uint32_t)p->cgroup + 1)
			cu->zero_distinct++;
		if (i == 0)
			tu->zero_distinct++;
		else
			BUMP(pu, cu, tu, zero_saved);
		if (ksm_saved)
			BUMP(pu, cu, tu, zero_ksm_saved);
	} else {
		if (ent->last_proc != (uint32_t)e->cur + 1)
			pu->tbl_distinct++;
		if (ent->last_cg != (uint32_t)p->cgroup + 1)
			cu->tbl_distinct++;
		if (i == 0)
			tu->tbl_distinct++;
		else
			BUMP(pu, cu, tu, tbl_saved);
		if (ksm_saved)
			BUMP(pu, cu, tu, tbl_ksm_saved);
	}
	ent->last_proc = (uint32_t)e->cur + 1;
	ent->last_cg = (uint32_t)p->cgroup + 1;
	if (i >= 1)
		occ_note(e, ent);
	if (ent->count < UINT32_MAX)
		ent->count++;
}

static void count_table_copy(struct est *e, struct est_entry *ent)
{
	struct est_proc *p = &e->procs[e->cur];

	BUMP(&p->u, &e->cgroups[p->cgroup].u, &e->total, tbl_pages);
	count_copy(e, ent, false);
}

static void count_unreadable(struct est *e)
{
	struct est_proc *p = &e->procs[e->cur];

	BUMP(&p->u, &e->cgroups[p->cgroup].u, &e->total, unreadable);
}

/* Hashes and counts page j of the batch, or leaves it pending. */
static void account_page(struct est *e, int j)
{
	struct est_proc *p = &e->procs[e->cur];
	struct est_unit *pu = &p->u, *cu = &e->cgroups[p->cgroup].u, *tu = &e->total;
	const unsigned char *page = e->b.buf + (size_t)j * EST_PAGE_SIZE;
	uint64_t addr = e->b.addr[j] | (e->b.shared[j] ? ADDR_SHARED : 0);
	uint64_t h = XXH3_64bits(page, EST_PAGE_SIZE), slot = 0;
	struct est_entry *ent = NULL;

	e->b.done = j; /* batch_lookup sees the pages before this one only */
	BUMP(pu, cu, tu, scanned);
	if (h == e->zero_hash && page_is_zero(page)) {
		BUMP(pu, cu, tu, zero);
		if (!e->zero.count) {
			e->zero.hash = h;
			e->zero.proc = (uint32_t)e->cur;
			e->zero.addr = addr;
		}
		count_copy(e, &e->zero, true);
		return;
	}
	if (h > e->thresh)
		return; /* sampled out: scanned, not counted */
	switch (tab_find(e, page, addr, h, h & e->tab_mask, true, &ent, &slot)) {
	case MATCH: count_table_copy(e, ent); break;
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
			count_table_copy(e, ent);
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
static int batch_flush(struct est *e)
{
	struct est_batch *b = &e->b;
	struct est_proc *p = &e->procs[e->cur];
	struct iovec local[BATCH_PAGES], remote[BATCH_PAGES];
	int ret = 0, pos = 0;

	/* Grow the table now, not in the middle of the batch (see tab_find). */
	while (!e->tab || (e->tab_used + BATCH_PAGES) * 10 > (e->tab_mask + 1) * 7)
		if (tab_grow(e))
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

static int batch_add(struct est *e, uint64_t addr, bool shared)
{
	struct est_batch *b = &e->b;

	b->valid[b->count] = 0;
	b->shared[b->count] = shared;
	b->addr[b->count++] = addr;
	return b->count == BATCH_PAGES ? batch_flush(e) : 0;
}

/* Classifies one pagemap entry: 0 not to read it, 1 to read an exclusive
 * page, 2 to read a page mapped elsewhere too. */
static int classify(struct est *e, uint64_t pm)
{
	struct est_proc *p = &e->procs[e->cur];
	struct est_unit *pu = &p->u, *cu = &e->cgroups[p->cgroup].u, *tu = &e->total;
	uint64_t pfn, *slot;

	if (!(pm & PM_PRESENT)) {
		if (pm & PM_SWAP)
			BUMP(pu, cu, tu, swapped);
		return 0;
	}
	BUMP(pu, cu, tu, present);
	if (pm & PM_EXCLUSIVE) {
		BUMP(pu, cu, tu, rmap_items);
		return 1;
	}
	pfn = pm & PM_PFN_MASK;
	if (!pfn) {
		/*
		 * Mapped more than once, and no PFN to tell the zero page from a
		 * page shared since fork (not root): counted apart, not read.
		 */
		BUMP(pu, cu, tu, already_shared);
		return 0;
	}
	if (pfn == e->zero_pfn) {
		BUMP(pu, cu, tu, zero_mapped);
		return 0;
	}
	slot = pfn_slot(e, pfn);
	if (slot && *slot) {
		if (*slot & PFN_ZERO) {
			BUMP(pu, cu, tu, zero_mapped);
			return 0;
		}
		BUMP(pu, cu, tu, rmap_items);
		BUMP(pu, cu, tu, already_shared);
		if (*slot & PFN_KSM)
			BUMP(pu, cu, tu, already_ksm);
		return 0;
	}
	uint64_t f = kpageflags(e, pfn);
	if (slot) {
		*slot = (pfn + 1) | (f & (1ULL << KPF_KSM) ? PFN_KSM : 0) |
			(f & (1ULL << KPF_ZERO_PAGE) ? PFN_ZERO : 0);
		e->pfn_used++;
	}
	if (f & (1ULL << KPF_ZERO_PAGE)) { /* the huge zero page */
		BUMP(pu, cu, tu, zero_mapped);
		return 0;
	}
	BUMP(pu, cu, tu, rmap_items);
	return 2;
}

struct vma {
	uint64_t start, end;
};

struct maps_acc {
	const struct est *e;
	struct vma *v;
	int n, cap;
};

/* Keeps the areas KSM could merge: private, anonymous, not special. */
static bool vma_mergeable(const struct procfs_map *m)
{
	if (m->perms[3] != 'p' || m->inode != 0)
		return false;
	if (!*m->path)
		return true;
	return !strcmp(m->path, "[heap]") || !strncmp(m->path, "[stack", 6) ||
	       !strncmp(m->path, "[anon:", 6);
}

static int maps_keep(const struct procfs_map *m, void *arg)
{
	struct maps_acc *a = arg;
	uint64_t start = m->start, end = m->end;

	if (!vma_mergeable(m))
		return 0;
	if (a->e->cfg.range_end) {
		start = start > a->e->cfg.range_start ? start : a->e->cfg.range_start;
		end = end < a->e->cfg.range_end ? end : a->e->cfg.range_end;
		if (start >= end)
			return 0;
	}
	if (a->n == a->cap) {
		int ncap = a->cap ? a->cap * 2 : 64;
		struct vma *nv = xrealloc_array(a->v, (size_t)ncap, sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		a->v = nv;
		a->cap = ncap;
	}
	a->v[a->n++] = (struct vma){start, end};
	return 0;
}

static int read_maps(const struct est *e, pid_t pid, struct vma **out, int *n)
{
	char path[64];
	struct maps_acc a = {.e = e};
	int err =
	    procfs_maps(procfs_path(path, sizeof(path), "/proc", (int)pid, "maps"), maps_keep, &a);

	if (err) {
		free(a.v);
		return err;
	}
	*out = a.v;
	*n = a.n;
	return 0;
}

static void read_comm(struct est_proc *p)
{
	char path[64], raw[64];

	if (procfs_comm(procfs_path(path, sizeof(path), "/proc", (int)p->pid, "comm"), raw,
			sizeof(raw)) == 0)
		procfs_escape(raw, p->comm, sizeof(p->comm));
}

static bool is_zombie(pid_t pid)
{
	char path[64];
	struct procfs_stat st;

	if (procfs_stat(procfs_path(path, sizeof(path), "/proc", (int)pid, "stat"), &st))
		return true; /* gone altogether */
	return st.state == 'Z' || st.state == 'X';
}

static enum est_status status_of(int err)
{
	switch (err) {
	case -ENOENT:
	case -ESRCH: return EST_GONE;
	case -EACCES:
	case -EPERM: return EST_DENIED;
	default: return EST_FAILED;
	}
}

/* Reads pagemap for [start, end) and queues the pages to read. */
static int scan_range(struct est *e, int fd, uint64_t *pm, uint64_t start, uint64_t end)
{
	int ret = 0;

	for (uint64_t a = start; a < end && !ret;) {
		uint64_t npages = (end - a) / EST_PAGE_SIZE;
		ssize_t n;

		if (npages > PAGEMAP_CHUNK)
			npages = PAGEMAP_CHUNK;
		n = pread(fd, pm, npages * 8, (off_t)(a / EST_PAGE_SIZE * 8));
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ESRCH; /* pagemap reads nothing once the mm is gone */
		npages = (uint64_t)n / 8;
		for (uint64_t k = 0; k < npages && !ret; k++) {
			int c = classify(e, pm[k]);

			if (c)
				ret = batch_add(e, a + k * EST_PAGE_SIZE, c == 2);
		}
		a += npages * EST_PAGE_SIZE;
	}
	return ret;
}

/*
 * Scans one area.  With PAGEMAP_SCAN (Linux 6.7) the kernel lists the runs
 * of present or swapped pages, skipping empty page tables, so that huge
 * sparse reservations (a sanitizer's shadow, a JIT's heap: terabytes of
 * address space) cost nothing; pagemap is then read for those runs only.
 */
static int scan_area(struct est *e, int fd, uint64_t *pm, uint64_t start, uint64_t end)
{
	struct est_page_region r[64];
	int ret = 0;

	if (e->no_pagemap_scan)
		return scan_range(e, fd, pm, start, end);
	for (uint64_t a = start; a < end && !ret;) {
		struct est_pm_scan_arg arg = {
		    .size = sizeof(arg),
		    .start = a,
		    .end = end,
		    .vec = (uint64_t)(uintptr_t)r,
		    .vec_len = 64,
		    .category_anyof_mask = EST_PAGE_IS_PRESENT | EST_PAGE_IS_SWAPPED,
		    .return_mask = EST_PAGE_IS_PRESENT | EST_PAGE_IS_SWAPPED,
		};
		int n = ioctl(fd, EST_PAGEMAP_SCAN, &arg);

		if (n < 0) {
			if (errno == ENOTTY || errno == EINVAL || errno == EOPNOTSUPP) {
				e->no_pagemap_scan = true; /* before Linux 6.7 */
				return scan_range(e, fd, pm, a, end);
			}
			return errno == ENOENT ? -ESRCH : -errno;
		}
		for (int i = 0; i < n && !ret; i++) {
			if (r[i].categories & EST_PAGE_IS_PRESENT) {
				ret = scan_range(e, fd, pm, r[i].start, r[i].end);
			} else {
				struct est_proc *p = &e->procs[e->cur];
				uint64_t k = (r[i].end - r[i].start) / EST_PAGE_SIZE;

				p->u.swapped += k;
				e->cgroups[p->cgroup].u.swapped += k;
				e->total.swapped += k;
			}
		}
		if (arg.walk_end <= a)
			break;
		a = arg.walk_end;
	}
	return ret;
}

int est_scan_proc(struct est *e, int idx)
{
	struct est_proc *p = &e->procs[idx];
	uint64_t *pm = NULL;
	struct vma *v = NULL;
	int nv = 0, fd = -1, ret;
	char path[64];
	uint64_t before = e->tot.bytes_read;

	e->cur = idx;
	e->mem_fd = -1;
	if (!p->comm[0])
		read_comm(p);
	ret = read_maps(e, p->pid, &v, &nv);
	if (ret)
		goto fail;
	if (!nv) {
		/* No memory of its own: a zombie (it has exited), or a kernel
		 * thread. */
		if (is_zombie(p->pid)) {
			p->status = EST_EXITED;
			p->err = ESRCH;
			ret = -ESRCH;
		} else {
			p->status = EST_NO_MM;
		}
		goto out;
	}
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)p->pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		goto fail;
	}
	pm = malloc(PAGEMAP_CHUNK * sizeof(*pm));
	if (!pm) {
		ret = -ENOMEM;
		goto fail;
	}
	for (int i = 0; i < nv && !ret; i++)
		ret = scan_area(e, fd, pm, v[i].start, v[i].end);
	if (!ret && e->b.count)
		ret = batch_flush(e);
	e->b.count = 0;
	if (ret == -ESRCH) {
		p->status = EST_EXITED;
		p->err = ESRCH;
		ret = e->tot.bytes_read > before ? 0 : -ESRCH;
		goto out;
	}
	if (ret)
		goto fail;
	p->status = EST_OK;
	goto out;
fail:
	p->status = status_of(ret);
	p->err = -ret;
	/* Part of the process may have been read before the failure. */
	if (e->tot.bytes_read > before)
		ret = 0;
out:
	if (e->mem_fd >= 0)
		close(e->mem_fd);
	e->mem_fd = -1;
	if (fd >= 0)
		close(fd);
	free(pm);
	free(v);
	return ret;
}

/* --------------------------------------------------------- Lifecycle ---- */

/* Finds the PFN of the shared zero page by reading a fresh page of our own. */
static void probe_zero_pfn(struct est *e)
{
	volatile unsigned char *m;
	uint64_t pm = 0;
	int fd;

	m = mmap(NULL, EST_PAGE_SIZE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return;
	(void)m[0]; /* a read fault maps the zero page */
	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (pread(fd, &pm, 8, (off_t)((uintptr_t)m / EST_PAGE_SIZE * 8)) == 8 &&
		    (pm & PM_PRESENT) && (pm & PM_PFN_MASK)) {
			e->zero_pfn = pm & PM_PFN_MASK;
			e->have_pfns = true;
		}
		close(fd);
	}
	munmap((void *)m, EST_PAGE_SIZE);
}

int est_new(const struct est_config *cfg, struct est **out)
{
	struct est *e = calloc(1, sizeof(*e));

	if (!e)
		return -ENOMEM;
	e->cfg = *cfg;
	if (e->cfg.max_page_sharing < 2)
		e->cfg.max_page_sharing = 2;
	if (!(e->cfg.sample > 0) || e->cfg.sample >= 1.0)
		e->thresh = UINT64_MAX;
	else
		e->thresh = (uint64_t)(e->cfg.sample * 18446744073709551616.0);
	e->zero_hash = XXH3_64bits(zero_page, EST_PAGE_SIZE);
	e->store_limit = cfg->confirm_budget / EST_PAGE_SIZE;
	e->kpageflags_fd = -1;
	e->mem_fd = -1;
	e->pfn_mask = 4095;
	e->pfns = calloc(e->pfn_mask + 1, sizeof(*e->pfns));
	/* Page-aligned: the kernel copies whole pages into them, and a copy to
	 * a misaligned destination measured twice as slow. */
	e->b.buf = aligned_alloc(EST_PAGE_SIZE, (size_t)BATCH_PAGES * EST_PAGE_SIZE);
	e->page2 = aligned_alloc(EST_PAGE_SIZE, EST_PAGE_SIZE);
	e->scratch = aligned_alloc(EST_PAGE_SIZE, (size_t)BATCH_PAGES * EST_PAGE_SIZE);
	if (!e->pfns || !e->b.buf || !e->page2 || !e->scratch) {
		est_free(e);
		return -ENOMEM;
	}
	probe_zero_pfn(e);
	if (e->have_pfns)
		e->kpageflags_fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	*out = e;
	return 0;
}

void est_free(struct est *e)
{
	if (!e)
		return;
	for (uint32_t i = 0; i < e->store_pages; i += STORE_CHUNK)
		free(e->store[i / STORE_CHUNK]);
	free(e->store);
	free(e->tab);
	free(e->occ);
	free(e->pfns);
	free(e->b.buf);
	free(e->page2);
	free(e->scratch);
	for (int i = 0; i < e->ncgroups; i++)
		free(e->cgroups[i].path);
	free(e->cgroups);
	free(e->procs);
	if (e->kpageflags_fd >= 0)
		close(e->kpageflags_fd);
	free(e);
}

int est_add_cgroup(struct est *e, const char *path)
{
	for (int i = 0; i < e->ncgroups; i++)
		if (!strcmp(e->cgroups[i].path, path))
			return i;
	if (e->ncgroups == e->cgroups_cap) {
		int ncap = e->cgroups_cap ? e->cgroups_cap * 2 : 16;
		struct est_cgroup *n = xrealloc_array(e->cgroups, (size_t)ncap, sizeof(*n));

		if (!n)
			return -ENOMEM;
		e->cgroups = n;
		e->cgroups_cap = ncap;
	}
	memset(&e->cgroups[e->ncgroups], 0, sizeof(e->cgroups[0]));
	e->cgroups[e->ncgroups].path = strdup(path);
	if (!e->cgroups[e->ncgroups].path)
		return -ENOMEM;
	return e->ncgroups++;
}

int est_add_proc(struct est *e, pid_t pid, int cgroup)
{
	if (e->nprocs == e->procs_cap) {
		int ncap = e->procs_cap ? e->procs_cap * 2 : 64;
		struct est_proc *n = xrealloc_array(e->procs, (size_t)ncap, sizeof(*n));

		if (!n)
			return -ENOMEM;
		e->procs = n;
		e->procs_cap = ncap;
	}
	memset(&e->procs[e->nprocs], 0, sizeof(e->procs[0]));
	e->procs[e->nprocs].pid = pid;
	e->procs[e->nprocs].cgroup = cgroup;
	e->cgroups[cgroup].nprocs++;
	return e->nprocs++;
}

/* What the kernel would show for one content of n copies (ksm_tests oracle). */
static void kernel_model(const struct est *e, uint64_t n, uint64_t *shared, uint64_t *saved)
{
	uint64_t mps = e->cfg.max_page_sharing;

	*shared = n / mps + (n % mps >= 2);
	*saved = n - (n + mps - 1) / mps;
}

void est_finish(struct est *e, struct est_totals *t)
{
	double f = e->thresh == UINT64_MAX ? 1.0 : e->cfg.sample;
	double s_saved = 0, s_ksm = 0, nz_shared = 0, nz_sharing = 0, nz_chains = 0;
	uint64_t shared, saved, distinct = 0;

	for (uint64_t i = 0; e->tab && i <= e->tab_mask; i++) {
		uint64_t n = e->tab[i].count;

		if (!n)
			continue;
		distinct++;
		kernel_model(e, n, &shared, &saved);
		nz_shared += (double)shared;
		nz_sharing += (double)saved;
		nz_chains += n > e->cfg.max_page_sharing;
		s_saved += (double)(n - 1) * (double)(n - 1);
		s_ksm += (double)saved * (double)saved;
	}
	*t = e->tot;
	t->u = e->total;
	t->ksm_pages_shared = (uint64_t)(nz_shared / f + 0.5);
	t->ksm_pages_sharing = (uint64_t)(nz_sharing / f + 0.5);
	t->ksm_stable_node_chains = (uint64_t)(nz_chains / f + 0.5);
	if (e->zero.count) {
		if (e->cfg.use_zero_pages) {
			t->ksm_zero_pages = e->zero.count;
		} else {
			kernel_model(e, e->zero.count, &shared, &saved);
			t->ksm_pages_shared += shared;
			t->ksm_pages_sharing += saved;
			t->ksm_stable_node_chains += e->zero.count > e->cfg.max_page_sharing;
		}
	}
	/* Horvitz-Thompson variance estimates: each content is kept with
	 * probability f, independently (by its hash). */
	t->var_saved = (1 - f) / (f * f) * s_saved;
	t->var_ksm_saved = (1 - f) / (f * f) * s_ksm;
	t->var_distinct = (1 - f) / (f * f) * (double)distinct;
}

static void top_fill(struct est *e, const struct est_entry *ent, bool zero, struct est_top *t)
{
	memset(t, 0, sizeof(*t));
	t->hash = ent->hash;
	t->copies = ent->count;
	t->zero = zero;
	if (zero) {
		t->head_known = true;
	} else if (ent->ref) {
		memcpy(t->head, store_page(e, ent->ref), sizeof(t->head));
		t->head_known = true;
	}
	/* The list runs from the last process to the first: count, then fill
	 * the first ones in scan order. */
	int n = 0;
	for (uint32_t o = ent->occ; o != OCC_NONE; o = e->occ[o - 1].next)
		n++;
	t->nprocs = ent->occ == OCC_NONE ? 1 : n;
	if (ent->occ == OCC_NONE) {
		t->proc[0] = (int)ent->proc;
		t->copies_in[0] = ent->count;
		t->shown = 1;
		return;
	}
	t->shown = n < 8 ? n : 8;
	int k = n;
	for (uint32_t o = ent->occ; o != OCC_NONE; o = e->occ[o - 1].next) {
		k--;
		if (k < t->shown) {
			t->proc[k] = (int)e->occ[o - 1].proc;
			t->copies_in[k] = e->occ[o - 1].copies;
		}
	}
}

int est_top(struct est *e, struct est_top *out, int k)
{
	const struct est_entry **best;
	int n = 0;

	if (k <= 0)
		return 0;
	best = calloc((size_t)k, sizeof(*best));
	if (!best)
		return 0;
	for (uint64_t i = 0; e->tab && i <= e->tab_mask + 1; i++) {
		const struct est_entry *ent = i <= e->tab_mask ? &e->tab[i] : &e->zero;
		int j;

		if (ent->count < 2)
			continue;
		if (n == k && ent->count <= best[n - 1]->count)
			continue;
		j = n < k ? n++ : k - 1;
		while (j > 0 && best[j - 1]->count < ent->count) {
			best[j] = best[j - 1];
			j--;
		}
		best[j] = ent;
	}
	if (!e->tab && e->zero.count >= 2)
		best[n++] = &e->zero;
	for (int i = 0; i < n; i++)
		top_fill(e, best[i], best[i] == &e->zero, &out[i]);
	free(best);
	return n;
}

int est_nprocs(const struct est *e)
{
	return e->nprocs;
}

struct est_proc *est_proc_at(struct est *e, int i)
{
	return &e->procs[i];
}

int est_ncgroups(const struct est *e)
{
	return e->ncgroups;
}

struct est_cgroup *est_cgroup_at(struct est *e, int i)
{
	return &e->cgroups[i];
}

bool est_have_pfns(const struct est *e)
{
	return e->have_pfns;
}
