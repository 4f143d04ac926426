/* SPDX-License-Identifier: MIT */
/*
 * internal.h - libsamepage's structures and cross-file declarations.
 *
 * The words are the kernel's (mm/ksm.c): a tracked page has an "rmap item"
 * (here struct page_meta, 12 bytes instead of 64), merged pages hang on
 * "stable nodes" (one per KSM page, i.e. per pool page), pages seen
 * unchanged for one full scan wait in the "unstable tree" (here a hash index
 * keyed by the page checksum, rebuilt every full scan), and the scanner
 * thread is "ksmd".
 */
#ifndef SAMEPAGE_INTERNAL_H
#define SAMEPAGE_INTERNAL_H

#include "samepage.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define PAGE_SIZE 4096UL
#define PAGE_SHIFT 12
#define NIL UINT32_MAX /* the empty link in every index */

/* The most pages one batch reads, hashes and merges under one hold of the
 * address-space lock.  512 pages = 2 MiB: long enough to make runs, short
 * enough that an application's munmap() never waits long. */
#define BATCH_PAGES 512

/* page_meta.flags */
#define PM_MERGEABLE 0x01 /* inside a MADV_MERGEABLE range */
#define PM_ITEM 0x02      /* has an rmap item: seen present, counted in ksm_rmap_items */
#define PM_UNSTABLE 0x04  /* in the unstable tree of scan seqnr (low 8 bits) */
#define PM_STABLE 0x08    /* maps the pool page of stable node `link` */
#define PM_ZERO 0x10      /* merged with the zero page (use_zero_pages) */
#define PM_PENDING 0x20   /* a merge is decided and waits for the batch to run */

/*
 * The rmap item of one tracked page.  12 bytes, plus 2 to 4 bytes of
 * unstable-bucket head per page (see struct unstable_index): 16 at most.
 * Invariants: PM_STABLE => link is a live stable node whose mapcount
 * counts this page; PM_UNSTABLE with seqnr == the current scan's => the page
 * is on the bucket chain of checksum, linked through `link`; the two flags
 * are never set together.
 */
struct page_meta {
	uint32_t checksum;       /* low 32 bits of XXH3-64 at the last visit */
	uint32_t link;           /* stable node index, or next page id in the bucket */
	uint8_t flags;
	uint8_t age;             /* smart scan: visits, saturating at 255 */
	uint8_t remaining_skips; /* smart scan: visits still to skip */
	uint8_t seqnr;           /* low 8 bits of full_scans when put in the unstable tree */
};

/* A protection span of a region, from /proc/self/maps. */
struct prot_span {
	uintptr_t start, end;
	int prot;
};

/*
 * A range the application marked mergeable.  Pages are numbered by a
 * process-wide page id (base_id + index) so that one 32-bit link can name a
 * page of any region.  meta[] is mmap'd: untouched parts of a sparse range
 * cost no memory.
 */
struct region {
	uintptr_t start;
	size_t npages;
	uint32_t base_id;
	struct page_meta *meta;
	struct prot_span *spans; /* sorted, covering [start, end) where mapped */
	size_t nspans;
	size_t mergeable_pages; /* pages with PM_MERGEABLE */
};

/*
 * One KSM page: a page of the pool memfd and the mappings that share it.
 * 20 bytes.  Dups of one content (made when a KSM page is full at
 * max_page_sharing) all sit in the same hash bucket: the bucket walk finds
 * them, so no separate chain list is kept.
 */
struct stable_node {
	uint32_t checksum;
	uint32_t pool_off; /* page offset in the pool */
	uint32_t mapcount; /* verified mappings (the kernel's rmap_hlist_len) */
	uint32_t hnext;    /* next node in the stable hash bucket, or the free list */
	uint16_t pending;  /* merges decided in this batch, not yet done */
	uint8_t in_use;
	uint8_t pinned; /* a forked child may map it: never punch */
};

struct stable_index {
	struct stable_node *nodes;
	uint32_t nr, cap; /* nodes[0..nr) allocated, free ones on free_head */
	uint32_t free_head;
	uint32_t *heads; /* hash buckets by checksum */
	uint32_t mask;
	uint32_t live;
};

struct unstable_index {
	uint32_t *heads; /* bucket -> first page id, or NIL */
	uint32_t mask;
};

/* The pool: one memfd, mapped MAP_SHARED at `view` for the engine's own
 * reads and writes.  Pages are allocated from `next` or the free list, and
 * a freed page is punched (its memory given back). */
struct pool {
	int fd;
	char *view;          /* reserved address range, mapped as the file grows */
	size_t view_pages;   /* reservation size */
	size_t file_pages;   /* ftruncate'd size */
	uint32_t next;       /* first never-used page */
	uint32_t *free_list; /* freed offsets (a stack) */
	size_t nfree, free_cap;
	uint32_t last_alloc; /* to keep runs contiguous */
	uint64_t used;
	uint64_t reclaimed;
	dev_t dev;
	ino_t ino;
};

/* A pending merge: this page should map `node`'s pool page (or the zero
 * page).  Collected per batch, sorted by address and done run by run. */
struct merge_req {
	uintptr_t addr;
	uint32_t region; /* index in sp->regions */
	uint32_t index;  /* page index in the region */
	uint32_t node;   /* NIL for the zero page */
	uint32_t pool_off;
};

/* Shared with forked children (MAP_SHARED): they register here so that the
 * parent keeps every pool page they may map until they are gone. */
#define MAX_FORK_CHILDREN 64
struct fork_shared {
	_Atomic uint32_t started;    /* forks begun by a process of this engine */
	_Atomic uint32_t registered; /* children that wrote their pid */
	_Atomic pid_t pids[MAX_FORK_CHILDREN];
};

struct counters {
	uint64_t pages_shared, pages_sharing, pages_unshared, rmap_items;
	uint64_t pages_scanned, pages_skipped, full_scans, zero_pages;
	uint64_t chains, dups;
	uint64_t skipped_map_budget, cow_ksm;
	uint64_t map_count, max_map_count;
};

struct advisor {
	uint64_t start_ns;   /* wall time at the start of the full scan */
	uint64_t cpu_ns;     /* scanner CPU time at the last advice */
	uint64_t scan_time;  /* seconds of the last full scan */
	uint64_t change;     /* EWMA of the change factor */
};

struct samepage {
	pthread_mutex_t lock; /* everything below; the scanner holds it per batch */
	pthread_cond_t wake;
	pthread_t thread;
	bool thread_started, stopping;
	pid_t owner; /* the process that opened it; a forked child's copy is inert */

	unsigned long long knob[64]; /* tunables, by knob_index() */

	struct region *regions;
	size_t nregions, regions_cap;
	uint32_t next_page_id;
	uint64_t tracked_pages;

	/* the scan cursor */
	size_t cur_region;
	size_t cur_index;

	struct stable_index stable;
	struct unstable_index unstable;
	struct pool pool;
	struct counters c;
	struct advisor adv;
	struct fork_shared *fork;
	bool maps_dirty; /* protections or mappings changed: reread /proc/self/maps */

	struct merge_req *reqs;
	size_t nreqs;
	char *buf;         /* one page: the contents of the page being merged */
	uint64_t *pagemap; /* BATCH_PAGES entries */
	bool scan_running; /* a full scan has started and not ended */
	uintptr_t last_new_addr; /* to keep runs of new KSM pages contiguous */
	uint32_t last_new_off;

	/* Ranges the application unmapped (interpose.c), to forget at the
	 * next batch; on overflow, maps_dirty makes the scanner reread all. */
	pthread_mutex_t forget_lock;
	struct {
		uintptr_t start;
		size_t len;
	} forget[128];
	size_t nforget;
	_Atomic bool changed; /* maps_dirty, set from application threads */

	struct samepage *next_engine; /* the process's list of engines */
};

/* knobs.c */
int knob_index(const char *name);

/* prim-linux.c: the only place that changes the address space. */
void *prim_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int prim_munmap(void *addr, size_t len);
int prim_mprotect(void *addr, size_t len, int prot);
int prim_madvise(void *addr, size_t len, int advice);
void *prim_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr);
int prim_memfd(const char *name);
int prim_pagemap(uintptr_t addr, size_t npages, uint64_t *out);
ssize_t prim_mem_read(uintptr_t addr, void *buf, size_t len);
ssize_t prim_mem_write(uintptr_t addr, const void *buf, size_t len);
uint64_t prim_now_ns(void);
uint64_t prim_thread_cpu_ns(void);
long prim_max_map_count(void);
#define PM_PRESENT (1ULL << 63)
#define PM_SWAPPED (1ULL << 62)
#define PM_FILE (1ULL << 61)
#define PM_EXCLUSIVE (1ULL << 56)

/* A line of /proc/self/maps. */
struct map_entry {
	uintptr_t start, end;
	int prot;
	bool shared;
	unsigned long long pgoff; /* in bytes */
	dev_t dev;
	ino_t ino;
	bool anon; /* no file: anonymous, [heap], [stack] */
};
typedef int (*maps_fn)(const struct map_entry *e, void *arg);
int prim_maps_walk(maps_fn fn, void *arg);

/* pool.c */
int pool_init(struct pool *p);
void pool_destroy(struct pool *p);
int pool_alloc(struct pool *p, uint32_t want, uint32_t *off);
void pool_release(struct pool *p, uint32_t off, bool punch);
static inline char *pool_page(struct pool *p, uint32_t off)
{
	return p->view + ((size_t)off << PAGE_SHIFT);
}

/* index.c */
int stable_init(struct stable_index *s);
void stable_destroy(struct stable_index *s);
uint32_t stable_search(struct samepage *sp, const void *page, uint32_t checksum, bool *all_full);
int stable_insert(struct samepage *sp, const void *page, uint32_t checksum, uint32_t want_off,
		  uint32_t *out);
void stable_get(struct samepage *sp, uint32_t node);
void stable_put(struct samepage *sp, uint32_t node);
int unstable_resize(struct samepage *sp, uint64_t pages);
void unstable_reset(struct samepage *sp);
uint32_t unstable_search_insert(struct samepage *sp, uint32_t id, const void *page,
				uint32_t checksum);
void unstable_remove(struct samepage *sp, uint32_t id);
void remove_rmap_item_from_tree(struct samepage *sp, uint32_t id);

/* region.c */
struct region *region_of_id(struct samepage *sp, uint32_t id, size_t *index, size_t *ri);
struct page_meta *meta_of_id(struct samepage *sp, uint32_t id);
static inline uintptr_t region_addr(const struct region *r, size_t i)
{
	return r->start + (i << PAGE_SHIFT);
}
int region_prot_at(const struct region *r, uintptr_t addr);
int regions_refresh(struct samepage *sp);
int regions_mark(struct samepage *sp, uintptr_t start, size_t len, bool mergeable);
void regions_forget(struct samepage *sp, uintptr_t start, size_t len);
void region_drop_page(struct samepage *sp, struct region *r, size_t i);

/* merge.c */
int merge_init(void);
bool guarded_copy(void *dst, const void *src, size_t len);
bool guarded_equal(const void *a, const void *b, size_t len);
bool guarded_is_zero(const void *a, size_t len);
bool guarded_hash(const void *page, uint64_t *h);
void merge_batch(struct samepage *sp);
int break_cow(struct samepage *sp, struct region *r, size_t i);
int unmerge_range(struct samepage *sp, struct region *r, size_t from, size_t to);
void as_lock_exclusive(void);
void as_unlock(void);
void as_lock_shared(void);
extern _Atomic uint64_t merge_window_waits;

/* scan.c */
int ksmd_start(struct samepage *sp);
void ksmd_stop(struct samepage *sp);
void ksm_do_scan(struct samepage *sp, uint64_t budget);
extern uint32_t zero_checksum;

/* engine.c */
extern pthread_mutex_t engines_lock;
extern struct samepage *engines;
extern _Atomic int nengines;
void engine_note_unmap(uintptr_t start, size_t len);
void engine_note_change(void);
void engine_sync(struct samepage *sp);
bool engine_alive(const struct samepage *sp);
int engine_discard(struct samepage *sp, uintptr_t start, size_t len);
uint64_t metadata_bytes(struct samepage *sp);
void unmerge_all(struct samepage *sp);
void fork_reap(struct samepage *sp);
#define KNOB(sp, name) ((sp)->knob[KNOB_##name])
enum {
#define SAMEPAGE_KNOB(n, k, f, d, lo, hi, since, help) KNOB_##n,
#include "knobs.def"
#undef SAMEPAGE_KNOB
	KNOB_COUNT_
};

#endif
