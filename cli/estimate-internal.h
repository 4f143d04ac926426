/* SPDX-License-Identifier: MIT */
/*
 * estimate-internal.h - what the parts of the estimate engine share (see
 * estimate-scan.h for the engine's interface and estimate-scan.c for how
 * it works): the tables (estimate-table.c), the batched reads and their
 * byte-for-byte confirmation (estimate-confirm.c), the readers of a
 * process's maps and pagemap (estimate-read.c), and the hashes kept from
 * one pass to the next (estimate-pass.c).
 */
#ifndef KSMCTL_ESTIMATE_INTERNAL_H
#define KSMCTL_ESTIMATE_INTERNAL_H

#include "estimate-scan.h"

#include <stddef.h>
#include <stdint.h>

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
 * 128 pages (512 KiB) per read: small enough that hashing finds the pages
 * still in the L2/L3 cache after process_vm_readv wrote them, large enough
 * that the system call costs little (measured in estimate_bench).
 */
#define BATCH_PAGES 128
#define STORE_CHUNK 256 /* reference pages per store allocation */
#define OCC_NONE 0

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
	unsigned char huge[BATCH_PAGES];   /* inside a PMD-mapped transparent huge page */
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

/*
 * The hashes of one process's pages read in a pass, in address order: runs
 * of consecutive pages, one word per page (32 bits of the XXH3, the low bit
 * cleared; an odd word marks a page that already changed once), and a cursor
 * for the lookups of the next pass, which come in address order too.
 */
struct est_seen {
	uint64_t *start; /* first address of each run */
	uint32_t *len;	 /* pages in each run */
	uint32_t *w;	 /* one word per page, run after run */
	uint32_t nruns, runs_cap;
	uint64_t nw, w_cap;
	uint32_t run;  /* lookup cursor: its run, */
	uint64_t base; /* and the index in w of that run's first page */
};

/* The contents with many copies (estimate-heavy.c). */
struct est_heavy {
	uint64_t *key, *spare_key;
	uint32_t *n, *spare_n; /* counts; 0: an empty slot */
	uint32_t used;
	bool settled; /* the last pass's set: contents of EST_HEAVY_COPIES or more */
};

struct est {
	struct est_config cfg;
	int pass;		/* 1 to cfg.passes */
	bool final;		/* the last pass: the one that counts */
	uint64_t thresh;	/* keep a non-zero content iff hash <= thresh, */
	struct est_heavy heavy; /* or it is heavy (with --sample, two passes or more) */
	uint64_t zero_hash;	/* XXH3 of a page of zeros */

	struct est_entry *tab;
	uint64_t tab_mask;
	uint64_t tab_used;
	struct est_entry zero; /* the zero content, outside the table */
	uint64_t zero_small;   /* zero pages outside huge pages: the kernel's copies */

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

	struct est_seen *seen; /* per process: the hashes of the previous pass */
	struct est_seen next;  /* the current process's, for the next pass */

	/* The process being scanned, and the units its pages count in: its
	 * own, its cgroup's and the total in the last pass, scratch ones in
	 * the passes that only record hashes (sink). */
	int cur;
	struct est_unit *pu, *cu, *tu;
	struct est_unit sink[3];
	int mem_fd; /* /proc/PID/mem, opened on the first unreadable page */
	struct est_batch b;
	unsigned char *page2;	/* one page for re-reads */
	unsigned char *scratch; /* BATCH_PAGES pages for batched re-reads */
	struct est_pend pend[BATCH_PAGES];
	int npend;
};

/* Counts one more of field for the current process, its cgroup and the total. */
#define BUMP(e, field)                                                                             \
	do {                                                                                       \
		(e)->pu->field++;                                                                  \
		(e)->cu->field++;                                                                  \
		(e)->tu->field++;                                                                  \
	} while (0)

/* ---- estimate-table.c: the PFN set, the reference store, the content
 * table and the list of (content, process) pairs ---- */

bool est_page_is_zero(const unsigned char *p);
void *est_xrealloc_array(void *p, size_t n, size_t size);
/* The slot of pfn in the set of PFNs seen (*slot is 0 if it was not there
 * yet), or NULL when the set cannot grow. */
uint64_t *est_pfn_slot(struct est *e, uint64_t pfn);
/* The /proc/kpageflags word of pfn, 0 if unknown. */
uint64_t est_kpageflags(struct est *e, uint64_t pfn);
/* Copies page into the store: its 1-based index, or 0 when the budget is spent. */
uint32_t est_store_add(struct est *e, const unsigned char *page);
const unsigned char *est_store_page(const struct est *e, uint32_t ref);
/* Doubles the content table: 0 or -ENOMEM. */
int est_tab_grow(struct est *e);
/* Notes one more copy of ent in the current process, for est_top(). */
void est_occ_note(struct est *e, struct est_entry *ent);

/* ---- estimate-confirm.c: the batch of pages to read, and the
 * confirmation of every match byte for byte ---- */

/* Queues the page at addr of the current process (shared: mapped
 * elsewhere too; huge: in a transparent huge page), reading the batch when
 * it is full: 0 or -errno. */
int est_batch_add(struct est *e, uint64_t addr, bool shared, bool huge);
/* Reads and accounts the queued pages: 0, -ESRCH (gone) or -EPERM. */
int est_batch_flush(struct est *e);

/* ---- estimate-heavy.c: contents with many copies, exact under --sample ---- */

int est_heavy_init(struct est *e); /* 0 or -1 (out of memory) */
void est_heavy_free(struct est *e);
void est_heavy_add(struct est *e, uint64_t h); /* a page of the first pass */
void est_heavy_settle(struct est *e);	       /* before the last pass */
bool est_heavy_has(const struct est *e, uint64_t h);

/* ---- estimate-pass.c: the hashes kept from one pass to the next ---- */

/*
 * Whether the page at addr of the current process, of hash h, is unchanged
 * since the previous passes (always true with one pass), and records it for
 * the next pass unless this is the last.  Called in address order.
 */
bool est_seen_stable(struct est *e, uint64_t addr, uint64_t h);
/* After a process's scan: its record becomes the one of this pass. */
void est_seen_end_proc(struct est *e);
void est_seen_free(struct est_seen *s);

#endif
