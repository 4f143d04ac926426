/* SPDX-License-Identifier: MIT */
/*
 * types.h - libsamepage's structures.
 *
 * The words are the kernel's (mm/ksm.c): a tracked page has an "rmap item"
 * (here struct page_meta, 12 bytes instead of 64), merged pages hang on
 * "stable nodes" (one per KSM page, i.e. per pool page), pages seen
 * unchanged for one full scan wait in the "unstable tree" (here a hash index
 * keyed by the page checksum, rebuilt every full scan), and the scanner
 * thread is "ksmd".  The invariants written here are checked by
 * invariants_check() (debug.c) in debug builds.
 */
#ifndef SAMEPAGE_TYPES_H
#define SAMEPAGE_TYPES_H

#include "samepage.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PAGE_SIZE 4096UL
#define PAGE_SHIFT 12
#define NIL UINT32_MAX /* the empty link in every index */

/* The most pages one batch reads, hashes and merges under one hold of the
 * address-space lock.  512 pages = 2 MiB: long enough to make runs, short
 * enough that an application's munmap() never waits long. */
#define BATCH_PAGES 512
/* Maps read this recently are taken as they are (region.c, scan.c). */
#define MAPS_REREAD_NS 1000000000ULL

/*
 * page_meta.flags.  Zero means "mergeable, no state", so an untouched page
 * of a sparse range costs no memory.
 *   PM_OFF       not mergeable (unregistered, or gone)
 *   PM_ITEM      has an rmap item: seen present, counted in ksm_rmap_items
 *   PM_UNSTABLE  in the unstable tree of scan seqnr (low 8 bits)
 *   PM_STABLE    maps the pool page of stable node `link`
 *   PM_ZERO      merged with the zero page (use_zero_pages)
 *   PM_PENDING   a merge is decided and waits for the batch to run
 *   PM_KEEP      scanned and counted, never merged: its mapping carries a
 *                promise a merge would drop (mlock, wipe-on-fork...)
 *   PM_POOLMAP   its mapping is a private mapping of the pool (it was merged
 *                since the range was last made anonymous): MADV_DONTNEED
 *                there would bring the pool page back, not zeros
 */
#define PM_OFF 0x01
#define PM_ITEM 0x02
#define PM_UNSTABLE 0x04
#define PM_STABLE 0x08
#define PM_ZERO 0x10
#define PM_PENDING 0x20
#define PM_KEEP 0x40
#define PM_POOLMAP 0x80

/*
 * The rmap item of one tracked page.  12 bytes, plus 2 to 4 bytes of
 * unstable-bucket head per page (see struct unstable_index): 16 at most.
 * Invariants: PM_STABLE => link is a live stable node whose mapcount
 * counts this page; PM_UNSTABLE with seqnr == the current scan's => the page
 * is on the bucket chain of checksum, linked through `link`; the two flags
 * are never set together.
 */
struct page_meta {
	uint32_t checksum; /* low 32 bits of XXH3-64 at the last visit */
	uint32_t link;	   /* stable node index, or next page id in the bucket */
	uint8_t flags;
	uint8_t age;		 /* smart scan: visits, saturating at 255 */
	uint8_t remaining_skips; /* smart scan: visits still to skip */
	uint8_t seqnr;		 /* low 8 bits of full_scans when put in the unstable tree */
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
	size_t mergeable_pages; /* pages without PM_OFF */
	bool merged; /* a merge (or a zero page dropped) here since the range was last made
			anonymous */
};

/*
 * One KSM page: a page of the pool memfd and the mappings that share it.
 * 20 bytes.  Node i is pool page i.  Dups of one content (made when a KSM
 * page is full at max_page_sharing) all sit in the same hash bucket: the
 * bucket walk finds them, so no separate chain list is kept.
 */
struct stable_node {
	uint32_t checksum; /* a node's index is its pool page's offset */
	uint32_t dupnext;  /* the next older dup of the same contents, plus one (0 ends) */
	uint32_t mapcount; /* verified mappings in all processes (rmap_hlist_len) */
	uint32_t hnext;	   /* next node in the bucket, plus one (0 ends) */
	uint16_t pending;  /* merges decided in a batch, not yet done */
	uint8_t in_use;	   /* NODE_USED, NODE_SOLO */
	uint8_t pinned;	   /* processes whose forked children may map it (255: for ever) */
};
#define NODE_USED 1
#define NODE_SOLO 2 /* made for a partner in another process: keep with one mapping */

/*
 * A domain: the stable index and the pool allocator, in one shared file,
 * so that the processes of one security domain (samepaged) merge with each
 * other.  A local engine has a domain of its own.  Sizes are fixed and the
 * file is sparse: only what is used costs memory.  Heads and links hold
 * index + 1 so that zeroed memory is an empty table.
 */
#define DOM_MAGIC 0x31444d4f44505353ULL /* "SSPDOMD1" */
#define DOM_NODES (16u << 20)		/* 64 GiB of KSM pages per domain */
#define DOM_BUCKETS (1u << 18)
#define DOM_HINTS (1u << 18)
#define DOM_OFF_NODES 8192UL
#define DOM_OFF_FREE (DOM_OFF_NODES + (size_t)DOM_NODES * sizeof(struct stable_node))
#define DOM_OFF_HEADS (DOM_OFF_FREE + (size_t)DOM_NODES * sizeof(uint32_t))
#define DOM_OFF_HINTS (DOM_OFF_HEADS + (size_t)DOM_BUCKETS * sizeof(uint32_t))
#define DOM_SIZE (DOM_OFF_HINTS + (size_t)DOM_HINTS * sizeof(uint64_t))

struct domain {
	uint64_t magic;
	uint64_t instance;    /* random: tells a restarted daemon's new domain from the old */
	pthread_mutex_t lock; /* robust and process-shared */
	unsigned long long knob[64];
	_Atomic uint64_t unmerge_epoch; /* run=2 written: every process unmerges */
	uint32_t nr;			/* pool pages ever used: the high-water mark */
	uint32_t free_top;		/* entries on the free stack (may be stale: check in_use) */
	uint32_t last_alloc;
	uint32_t live; /* nodes in use = pool pages held */
	uint64_t pages_shared, pages_sharing, chains, dups, reclaimed;
	char name[72];
	/* samepaged's count of the engines connected to the domain: they
	 * share pages_to_scan, the domain's rate as ksmd's is the system's
	 * (0 for a local engine's own domain) */
	_Atomic uint32_t scanners;
	/* KSM pages made for a partner in another process (scan.c), ever:
	 * a process looks for its partners only when it grew */
	_Atomic uint32_t partner_made;
	/* new KSM pages samepaged did not write: its memory cgroup had no
	 * room (daemon/pool.c), ever */
	_Atomic uint64_t refused;
	/* threads waiting for lock (domain_lock): when to hand it over */
	_Atomic uint32_t lock_waiters;
	uint32_t layout; /* SHARED_LAYOUT of the samepaged (or engine) that made it */
};
_Static_assert(sizeof(struct domain) <= DOM_OFF_NODES, "domain header");

/* The process-local view of a domain. */
struct stable_index {
	struct domain *dom;
	struct stable_node *nodes;
	uint32_t *free;
	uint32_t *heads;
	_Atomic uint64_t *hints;
	/* samepaged's domains (NULL for a local engine): this process's
	 * references per pool page (its ledger: mappings, merges under way,
	 * pins for forked children), and the daemon's "dying" marks, one
	 * byte per pool page, read-only here (see client.c). */
	_Atomic uint32_t *refs;
	_Atomic uint32_t *held; /* of refs, those not mappings: see index.c */
	const _Atomic uint8_t *guard;
	int fd;
	uint32_t cap; /* nodes mapped: DOM_NODES, or fewer for a local engine */
	size_t size;  /* of the mapping */
};

struct unstable_index {
	uint32_t *heads; /* bucket -> first page id, or NIL */
	uint32_t mask;
};

/* The pool: one memfd of DOM_NODES pages (sparse), mapped MAP_SHARED at
 * `view` for the engine's own reads and writes.  Which pages are used is
 * the domain's business (pool_alloc/pool_release). */
struct pool {
	int fd;
	char *view;
	size_t view_pages;
	dev_t dev;
	ino_t ino;
	bool thp_possible;    /* shmem may give a write huge pages (pool_write) */
	uint64_t thp_read_ns; /* when that was read (a local engine's full scans) */
};

/* A pending merge: this page should map `node`'s pool page (or the zero
 * page).  Collected per batch, sorted by address and done run by run. */
struct merge_req {
	uintptr_t addr;
	uint32_t region; /* index in sp->regions */
	uint32_t index;	 /* page index in the region */
	uint32_t node;	 /* NIL for the zero page */
	uint32_t pool_off;
	bool merged; /* its result, until the domain's lock is back */
};

/*
 * A strip (scan.c): a run of pages with one content, merged onto `size`
 * dups of it at consecutive pool pages, the run's k-th page onto dup
 * base + k % size, so that `size` pages map with one mapping instead of
 * one each.  size is the number of dups the kernel would make for the run
 * (ceil(pages / max_page_sharing)), so the counters stay the kernel's.
 * The scanner's own state, for one run of one full scan; size 0: none.
 */
struct strip {
	uintptr_t next, end;  /* the run's pages still to come: [next, end) */
	uintptr_t none_from;  /* the last run found too short: no run */
	uintptr_t none_until; /* starts in [none_from, none_until) */
	uint32_t base, size;  /* pool pages [base, base + size) */
	uint32_t made;	      /* dups made so far: the first `made` */
	uint32_t k;	      /* pages of the run given a dup so far */
	uint32_t checksum;
};

/* A lap strip (scan.c): dups of one content at consecutive pool pages,
 * made for a run shorter than max_page_sharing, that later runs of the
 * same content map again, one lap each.  A small cache by checksum,
 * checked against the index at each use. */
#define LAP_STRIPS 64
struct lap_strip {
	uint32_t checksum, base, size;
};

/* Shared with forked children (MAP_SHARED): they register here so that the
 * parent keeps every pool page they may map until they are gone. */
#define MAX_FORK_CHILDREN 1000 /* the page holds the pids of this many forks */
/* pids[k] of a child fork_reap_pages() found gone (0: not written yet). */
#define FORK_PID_GONE ((pid_t)-1)
struct fork_shared {
	_Atomic uint32_t started;    /* forks begun by a process of this engine */
	_Atomic uint32_t registered; /* children that wrote their pid */
	_Atomic pid_t pids[MAX_FORK_CHILDREN];
};

/* Why pages are kept out of merging (kept.def): KEPT_wipeonfork, ... */
enum kept_reason {
#define SAMEPAGE_KEPT(n, promises, why) KEPT_##n,
#include "kept.def"
	KEPT_COUNT
};

/* This process's counters; the domain-wide ones are in struct domain. */
struct counters {
	uint64_t merging_pages, pages_unshared, rmap_items;
	uint64_t pages_scanned, pages_skipped, full_scans, zero_pages;
	uint64_t skipped_map_budget, skipped_pool_full, cow_ksm;
	/* pages kept out of merging, by reason: counted during a full scan,
	 * published at its end */
	uint64_t kept[KEPT_COUNT], kept_scan[KEPT_COUNT];
	uint64_t map_count, max_map_count;
	/* the mapping budget: the engine's mappings of the pool, as last
	 * counted; runs the budget refused this full scan; the vm.max_map_count
	 * that would have let the last full scan merge them all (0: none
	 * refused); map_count when it was last recounted from the maps, and
	 * when */
	uint64_t pool_maps, budget_runs_scan, map_count_needed, map_recounted, map_recount_ns;
};

struct advisor {
	uint64_t start_ns;  /* wall time at the start of the full scan */
	uint64_t cpu_ns;    /* scanner CPU time at the last advice */
	uint64_t scan_time; /* seconds of the last full scan */
	uint64_t change;    /* EWMA of the change factor */
};

/*
 * The counters, as numbers: what the kernel's sysfs and ksm_stat names are
 * derived from (counters.c).  The library fills one from an engine, the
 * daemon from the sums of its domains and clients' ledgers, so that the
 * derived counters (pages_volatile, general_profit, ksm_process_profit)
 * have one definition.
 */
struct ksm_counts {
	bool process; /* one process's counts (else a daemon's sums) */
	/* the knobs the counters' meaning depends on */
	bool use_zero_pages;
	uint64_t max_page_sharing;
	/* the domain's (a daemon: summed over its domains) */
	uint64_t pages_shared, pages_sharing, chains, dups, pool_pages, reclaimed, refused;
	/* the process's (a daemon: summed over its clients) */
	uint64_t rmap_items, merging_pages, unshared, zero_pages, full_scans;
	uint64_t pages_scanned, pages_skipped, pages_tracked, metadata_bytes;
	/* a daemon's only: its clients' zero pages as counter_value() counts
	 * each client's in ksm_merging_pages with use_zero_pages 0, summed
	 * (counts_add_process) */
	uint64_t zero_merged;
	/* the process's only */
	uint64_t metadata_per_page, skipped_map_budget, skipped_pool_full, map_count, max_map_count,
	    map_count_needed, cow_ksm, window_waits, window_kind, skipped_io;
	uint64_t kept[KEPT_COUNT]; /* pages_kept_*, by reason (kept.def) */
};

struct samepage {
	pthread_mutex_t lock;	 /* everything below; the scanner holds it per batch */
	_Atomic int app_waiting; /* application threads waiting for lock (engine_lock) */
	bool dom_waiters;	 /* under lock: the domain lock had waiters (index_waited) */
	pthread_cond_t wake;
	pthread_t thread;
	void *stack; /* the scanner's (alloc.c) */
	bool thread_started, stopping;
	pid_t owner; /* the process that opened it; a forked child's copy is inert */

	unsigned long long *knob; /* tunables, by knob_index(): the domain's */

	struct region *regions;
	size_t nregions, regions_cap;
	uint32_t next_page_id;
	uint64_t tracked_pages;

	/* the scan cursor */
	size_t cur_region;
	size_t cur_index;

	struct stable_index stable;
	struct domain *dom;	/* = stable.dom */
	uint64_t unmerge_epoch; /* the domain's, when this process last unmerged */
	struct unstable_index unstable;
	struct pool pool;
	struct counters c;
	struct ksm_counts snap;	   /* published for lock-free reads (engines.c) */
	_Atomic uint32_t snap_seq; /* odd while snap is being written */
	struct advisor adv;
	struct fork_shared *fork;
	uint32_t *pins; /* the nodes this process pinned for its children, sorted */
	size_t npins;
	bool maps_dirty;       /* protections or mappings changed: reread /proc/self/maps */
	uint64_t maps_read_ns; /* when regions_refresh() last read them */
	/* merges_mapped when they were read, plus this engine's own merges
	 * since: less than merges_mapped, another engine merged (region.c) */
	unsigned long maps_merges;
	uint64_t maps_reads;  /* how often (tests) */
	bool merge_any;	      /* every private anonymous mapping is mergeable (mergeany.c) */
	_Atomic bool any_new; /* merge-any: the application mapped anonymous memory */
	uint64_t any_read_ns; /* merge-any: when the maps were last read for new mappings */
	/* What the regions span, for the wrappers (read without sp->lock):
	 * an unmap or mprotect outside it is none of this engine's business. */
	_Atomic uintptr_t span_lo, span_hi;

	struct merge_req *reqs;
	size_t nreqs;
	char *buf;		 /* one page: the contents of the page being merged */
	uint64_t *pagemap;	 /* BATCH_PAGES entries */
	bool scan_running;	 /* a full scan has started and not ended */
	uintptr_t last_new_addr; /* to keep runs of new KSM pages contiguous */
	uint32_t last_new_off;
	uint32_t hints_posted; /* this full scan: pages other processes may make KSM pages of */
	uint32_t partner_seen; /* dom->partner_made when merge_partners() last looked */
	/* The signal stacks noted when a batch last looked (guard.c). */
	uint32_t altstack_seen;
	bool sealed_found; /* a merge found sealed memory (merge.c: keep_sealed()) */
	struct strip strip;
	struct lap_strip laps[LAP_STRIPS];

	/* Ranges the application unmapped or protected anew (interpose.c),
	 * to catch up with at the next batch; on overflow, every region is
	 * forgotten (an unmap lost) or read again (a protection lost). */
	pthread_mutex_t forget_lock;
	struct unmapped *forget;
	size_t nforget, forget_cap;
	bool forget_lost, prot_lost;
	size_t forget_mark;   /* nforget when a batch let the address-space lock go */
	bool place_let_go;    /* ...which it did, waiting for samepaged (client.c) */
	_Atomic bool changed; /* maps_dirty, set from application threads */
	/* Unmaps noted (forget list), caught up with (sync), and counted in
	 * the published counters: a read is behind while they differ. */
	_Atomic uint64_t unmap_gen, published_gen;
	uint64_t synced_gen;

	/* samepaged (client.c): the connection, the ledger this process's
	 * references are counted in, and whether merging is paused because
	 * the daemon went away. */
	int conn_fd;
	struct ledger *ledger;
	bool detached;
	uint64_t reconnect_ns;
	/* The socket (dev/ino) of a daemon that answered with other files
	 * for the domain, and when: not asked again until the socket
	 * changes, or for 10 minutes. */
	bool stale;
	uint64_t stale_ns;
	dev_t stale_dev;
	ino_t stale_ino;
	/* The ledger this process maps: a reconnection must hand it back. */
	dev_t ledger_dev;
	ino_t ledger_ino;
	char domain_name[72];
	char socket_path[108];
	/* Set by client.c: called by the scanner between batches, and by
	 * samepage_close() (so the engine needs no link to the client). */
	void (*poll)(struct samepage *sp);
	void (*detach)(struct samepage *sp);
	/* How new KSM pages reach the pool and freed ones leave it (pool.c):
	 * NULL for a local engine, which writes and punches its own pool.  A
	 * samepaged client stages them for the daemon (place, flush before a
	 * batch merges); the daemon checks every client's references before
	 * it punches (punch). */
	void (*place)(struct samepage *sp, uint32_t off, const void *page);
	bool (*place_room)(struct samepage *sp); /* a staging page for the next place */
	/* let_go: the address-space lock may be let go while samepaged
	 * answers; returns whether it was (forget_mark says from where the
	 * application's changes meanwhile are in the forget list). */
	bool (*place_flush)(struct samepage *sp, bool let_go);
	const void *(*staged)(struct samepage *sp, uint32_t off); /* a page placed, not written */
	void (*punch)(struct samepage *sp, uint32_t off);
	uint32_t nplace; /* pages staged this batch */
	/* The staging pages touched since they were last given back, and
	 * the full scan that last staged one (client.c): a client that has
	 * staged nothing for a whole full scan gives them back. */
	uint32_t staging_touched;
	uint64_t staged_scan;
	/* full_scans + 1 while samepaged refuses new KSM pages (its memory
	 * cgroup is full): none are made until the next full scan */
	uint64_t pool_full_scan;
	/* The pool pages the last PLACE did not write (samepaged had no
	 * room): this batch's merges onto them do not read them. */
	uint32_t unplaced[BATCH_PAGES], nunplaced; /* BATCH_PAGES: PLACE_MAX */
	/* The pages of the ledger's refs and held arrays that this process
	 * has allocated (ledger_ready), one bit per page of each. */
	uint64_t ledger_pages[DOM_NODES / (PAGE_SIZE / sizeof(uint32_t)) / 64];

	struct samepage *next_engine; /* the process's list of engines */
	bool held;		      /* by engines_hold(), under engines_lock */
	/* The parts of an mremap's old range the engine had registered, as
	 * offsets, while the mremap wrapper holds it (interpose.c): every
	 * one (lib_realloc'd, kept for the next mremap). */
	size_t nmoved, moved_cap;
	struct moved_part {
		size_t off, len;
	} * moved;
};

/*
 * A client's ledger: a file of samepaged's state directory, shared between
 * the client (which writes it) and the daemon (which reads it).
 *   header     struct ledger: who, and the counters (ksmctl --user top)
 *   place      the pool offsets of the pages staged below (PLACE)
 *   fork       struct fork_shared: the client's forked children, whose
 *              mappings of the pool the daemon keeps after the client dies
 *   staging    new KSM pages for the daemon to write into the pool
 *   refs       refs[i]: the client's references to pool page i: mappings,
 *              merges under way, pins for forked children
 *   held       held[i]: of refs[i], the merges under way, and LEDGER_PIN
 *              if one of them is the client's pin for its forked children
 *              (so that the daemon reaping a gone client takes only its
 *              mappings off the page's mapping count, and its pins once
 *              its children are gone)
 * Sparse: 4 bytes per KSM page the client maps, in practice.
 */
#define LEDGER_MAGIC 0x33474452444c5353ULL /* "SSLDRDG3" */
#define PLACE_MAX BATCH_PAGES		   /* new KSM pages of one batch, at most */
#define LEDGER_PIN (1U << 31)		   /* in held[i] */
#define LEDGER_OFF_PLACE 4096UL
#define LEDGER_OFF_FORK 8192UL
#define LEDGER_OFF_STAGING 12288UL
#define LEDGER_OFF_REFS (LEDGER_OFF_STAGING + (size_t)PLACE_MAX * PAGE_SIZE)
#define LEDGER_OFF_HELD (LEDGER_OFF_REFS + (size_t)DOM_NODES * sizeof(uint32_t))
#define LEDGER_SIZE (LEDGER_OFF_HELD + (size_t)DOM_NODES * sizeof(uint32_t))
struct ledger {
	uint64_t magic;
	int32_t pid;
	uint64_t starttime; /* /proc/PID/stat field 22: tells a reused pid */
	_Atomic int64_t rmap_items, merging_pages, zero_pages, unshared, full_scans;
	_Atomic int64_t process_profit, tracked_pages, metadata_bytes, pages_scanned, pages_skipped;
	char comm[32];
	/* the mapping budget (samepage(3): map_count ... max_map_count_needed) */
	_Atomic int64_t map_count, max_map_count, map_count_needed, skipped_map_budget;
	/* pages kept out of merging, by reason (samepage(3): pages_kept_*) */
	_Atomic int64_t kept[KEPT_COUNT];
	uint32_t layout; /* SHARED_LAYOUT of the samepaged that made it */
};
_Static_assert(sizeof(struct ledger) <= LEDGER_OFF_PLACE, "ledger header");
_Static_assert(PLACE_MAX * sizeof(uint32_t) <= LEDGER_OFF_FORK - LEDGER_OFF_PLACE, "place");
_Static_assert(sizeof(struct fork_shared) <= LEDGER_OFF_STAGING - LEDGER_OFF_FORK, "fork");

/* The guard file: one byte per pool page, written by the daemon only; a
 * page marked is being rewritten or punched, and no client may start a
 * merge onto it. */
#define GUARD_SIZE ((size_t)DOM_NODES)

/*
 * The layout of what samepaged shares with its clients: the domain file,
 * the pool, the ledger (its fork area too), the guard, and the protocol.
 * A client must never map files of another layout (an upgraded library
 * against a samepaged still running, or the reverse): HELLO carries the
 * client's SHARED_LAYOUT, the daemon refuses another (EPROTONOSUPPORT) and
 * keeps a domain file of another layout out of use, and the client checks
 * the domain's and the ledger's headers.  LAYOUT_SUM weighs the sizes and
 * offsets: when one changes, the assertion below fails until SHARED_LAYOUT
 * is raised and the new sum written in (and the layout of the HELLOs in
 * tests/daemon/fuzz_corpus).
 */
#define SHARED_LAYOUT 4
#define LAYOUT_SUM                                                                                 \
	((uint64_t)DOM_MAGIC % 1000003 + (uint64_t)LEDGER_MAGIC % 1000033 +                        \
	 3 * (uint64_t)DOM_NODES + 5 * (uint64_t)DOM_BUCKETS + 7 * (uint64_t)DOM_HINTS +           \
	 11 * (uint64_t)DOM_OFF_NODES + 13 * sizeof(struct stable_node) +                          \
	 17 * sizeof(struct domain) + 19 * offsetof(struct domain, layout) +                       \
	 23 * sizeof(struct ledger) + 29 * (uint64_t)LEDGER_OFF_PLACE +                            \
	 31 * (uint64_t)LEDGER_OFF_FORK + 37 * (uint64_t)LEDGER_OFF_STAGING +                      \
	 41 * (uint64_t)PLACE_MAX + 43 * sizeof(struct fork_shared) + 47 * (uint64_t)LEDGER_PIN +  \
	 53 * (uint64_t)PAGE_SIZE + 59 * offsetof(struct ledger, layout))
_Static_assert(LAYOUT_SUM == 100987727412ULL,
	       "the shared files' layout changed: raise SHARED_LAYOUT");

/* The control protocol (one message per SOCK_SEQPACKET packet, text):
 *   HELLO <domain> <layout> -> OK <instance>, with the index, pool and ledger fds
 *   GET [name]            -> OK, then "name value" lines
 *   SET <name> <value>    -> OK
 *   CLIENTS               -> OK, then one line per client (see samepaged.c)
 * An error is "ERR <errno> <message>". */
#define PROTO_MAX 65536

#endif
