/* SPDX-License-Identifier: MIT */
/*
 * estimate-scan.h - the engine behind `ksmctl estimate`: reads the private
 * anonymous memory of running processes and counts identical pages.
 *
 * The engine knows nothing of options or output (cli/estimate.c does that).
 * It is given processes one at a time, already sorted by cgroup, reads each
 * one's present pages, and keeps one table of contents for the whole scan.
 * Every figure is kept three times, for the process, its cgroup and the
 * total, so that each level can be reported without a second pass.
 *
 * What is counted, and why (the kernel's KSM rules, mm/ksm.c):
 *  - only areas the kernel would scan: by default those marked mergeable
 *    (VmFlags "mg" in /proc/PID/smaps: madvise(MADV_MERGEABLE)), every
 *    compatible area of a process with merge-any (prctl PR_SET_MEMORY_MERGE,
 *    systemd MemoryKSM=), or every compatible area with all_memory; an area
 *    is compatible unless it is shared, PFN-mapped, I/O, hugetlb, mixed or
 *    droppable (vma_ksm_compatible());
 *  - in them, only anonymous pages (a private file mapping's copy-on-write
 *    pages, not its file pages), present (pagemap bit 63): ksmd does not swap
 *    pages in;
 *  - a physical page mapped in several places (after fork, or already a KSM
 *    page) is hashed once; its other mappings are "already shared" and are
 *    not savings; mappings of the shared zero page are counted apart too
 *    (ksmd skips them, they cost nothing);
 *  - with several passes, only pages whose content was the same in every
 *    pass: ksmd merges a page only when its checksum is unchanged since its
 *    previous visit; the others are "volatile";
 *  - a zero page inside a transparent huge page is freed when ksmd splits
 *    that huge page to merge (the split maps zero-filled subpages to the
 *    shared zero page) and is counted in neither pages_sharing nor
 *    ksm_zero_pages: it is reported apart;
 *  - a page is a duplicate only after a byte-for-byte comparison with the
 *    first page of that content (see estimate-scan.c, "Confirmation").
 */
#ifndef KSMCTL_ESTIMATE_SCAN_H
#define KSMCTL_ESTIMATE_SCAN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define EST_PAGE_SIZE 4096
#define EST_RMAP_ITEM_SIZE 64 /* sizeof(struct ksm_rmap_item) on 64-bit */
/* Under --sample, a content of this many copies or more (in the first of
 * two passes or more) is counted exactly, not sampled (estimate-heavy.c). */
#define EST_HEAVY_COPIES 64

/*
 * Counts for one unit: a process, a cgroup or the total.
 *
 * Pages whose content went into the table ("tbl_*") are the sampled ones
 * when --sample is below 1, so they are scaled by 1/fraction when reported,
 * but for the heavy contents' part ("hv_*", included in tbl_*), which is
 * counted whatever the hash (estimate-heavy.c); zero pages are never
 * sampled out: those figures are exact.
 *
 * Invariants: scanned = zero + tbl_pages + sampled_out (volatile pages
 * are read but not scanned: they enter no count but their own);
 * tbl_saved <= tbl_pages; zero_saved <= zero.  At the total level
 * tbl_pages - tbl_saved = tbl_distinct (every copy but the first is saved).
 */
struct est_unit {
	uint64_t present;	 /* present mappings in eligible areas, all kinds */
	uint64_t scanned;	 /* physical pages read and hashed (first mapping of each) */
	uint64_t volatile_pages; /* read, but changed between passes: not scanned */
	uint64_t zero;		 /* scanned pages that are all zeros */
	uint64_t zero_huge;	 /* of those, inside a transparent huge page */
	uint64_t rmap_items;	 /* mappings ksmd would track: present, not the zero page */
	uint64_t already_shared; /* further mappings of a physical page already counted */
	uint64_t already_ksm;	 /* of those, KSM pages (kpageflags KPF_KSM) */
	uint64_t zero_mapped;	 /* mappings of the kernel's shared zero page */
	uint64_t swapped;	 /* swapped out: not scanned, as ksmd does not */
	uint64_t unreadable;	 /* present but could not be read (unmapped meanwhile, ...) */
	uint64_t tbl_pages;	 /* non-zero pages that entered the table */
	uint64_t tbl_distinct;	 /* distinct table contents within this unit */
	uint64_t tbl_saved;	 /* copies after the first, in scan order (perfect merge) */
	uint64_t tbl_ksm_saved;	 /* copies the kernel would free, in scan order */
	uint64_t hv_pages;	 /* of tbl_*, the heavy contents' (exact under --sample): */
	uint64_t hv_distinct;
	uint64_t hv_saved;
	uint64_t hv_ksm_saved;
	uint64_t zero_distinct;	 /* 1 if the unit holds a zero page */
	uint64_t zero_saved;	 /* zero pages freed by a perfect merge, attributed */
	uint64_t zero_ksm_saved; /* zero pages the kernel would free, attributed */
};

/* Which of a process's memory the kernel would scan, so which is read. */
enum est_memory {
	EST_MEM_NONE,	   /* nothing mergeable: not read */
	EST_MEM_MADVISE,   /* the areas marked mergeable ("mg") */
	EST_MEM_MERGE_ANY, /* merge-any: every compatible area */
	EST_MEM_ALL,	   /* all_memory: every compatible area */
};

enum est_status {
	EST_OK = 0,
	EST_GONE,   /* no such process when the scan began */
	EST_EXITED, /* exited while being read (or a zombie): what was read is kept */
	EST_DENIED, /* not allowed to read it */
	EST_NO_MM,  /* a kernel thread: nothing to read */
	EST_FAILED, /* another error, in err */
};

struct est_proc {
	pid_t pid;
	char comm[65]; /* printable: procfs_escape()d, 16 bytes at most 4 each */
	int cgroup;    /* index into est->cgroups */
	enum est_memory memory;
	enum est_status status;
	int err;       /* errno of the failure, when status is not EST_OK */
	int read_pass; /* the last pass in which any of its pages was read, or 0 */
	struct est_unit u;
};

struct est_cgroup {
	char *path; /* the cgroup v2 path, "/" for the root, "?" when unknown */
	int nprocs;
	struct est_unit u;
};

/* One content with two copies or more, for the "most duplicated" list. */
struct est_top {
	uint64_t hash;
	uint32_t copies;
	bool zero;
	int nprocs;  /* processes that hold a copy */
	int shown;   /* entries filled in proc[] and copies_in[] */
	int proc[8]; /* process indexes, in scan order */
	uint32_t copies_in[8];
	bool head_known; /* head[] holds the content's first bytes */
	unsigned char head[16];
};

struct est_totals {
	struct est_unit u;
	uint64_t ksm_pages_shared;  /* kernel's pages_shared after merging */
	uint64_t ksm_pages_sharing; /* kernel's pages_sharing */
	uint64_t ksm_zero_pages;    /* kernel's ksm_zero_pages (use_zero_pages=1) */
	uint64_t ksm_zero_huge;	    /* zero pages freed by huge page splits, uncounted */
	uint64_t ksm_stable_node_chains;
	/* Sums over sampled contents for the variances (see estimate.c). */
	double var_saved, var_ksm_saved, var_distinct;
	uint64_t heavy_contents;    /* contents counted exactly beyond the sample */
	bool heavy_known;	    /* a first pass looked for them (--sample, passes >= 2) */
	uint64_t confirmed;	    /* duplicates confirmed byte for byte */
	uint64_t rereads;	    /* first copies read a second time to confirm */
	uint64_t collisions;	    /* equal hashes, different bytes */
	uint64_t unconfirmed;	    /* accepted on the hash alone: reference gone */
	uint64_t reference_changed; /* the first copy changed before it was compared */
	uint64_t bytes_read;
};

typedef void (*est_progress_fn)(void *arg, uint64_t bytes_read, const struct est_proc *p);

struct est;

struct est_config {
	unsigned max_page_sharing; /* >= 2 */
	bool use_zero_pages;
	double sample;		 /* fraction of contents kept, (0, 1] */
	uint64_t confirm_budget; /* bytes kept for byte confirmation */
	uint64_t range_start;	 /* read only [range_start, range_end) when range_end */
	uint64_t range_end;
	bool all_memory;	  /* every compatible area, not only the mergeable ones */
	int passes;		  /* reads of every page; > 1: unchanged pages only */
	est_progress_fn progress; /* called after each batch, may be NULL */
	void *progress_arg;
};

/* Creates an engine: 0 or -errno. */
int est_new(const struct est_config *cfg, struct est **out);
void est_free(struct est *e);

/* Adds a cgroup (returns its index) and a process in it (returns its index). */
int est_add_cgroup(struct est *e, const char *path);
int est_add_proc(struct est *e, pid_t pid, int cgroup);

/*
 * Starts pass `pass` (1 to cfg.passes, in order).  Every pass reads the
 * same processes; the passes before the last only record each page's hash,
 * and the last one counts, keeping only the pages whose hash never changed
 * (cfg.passes == 1: every page, a snapshot).  The time between passes is
 * the caller's (cli/estimate.c waits for --interval).
 */
void est_begin_pass(struct est *e, int pass);

/*
 * Scans process i in the current pass.  Processes must be scanned in index
 * order, and the processes of one cgroup one after the other, so that
 * per-unit distinct counts need only a "last seen in" mark per content.
 * Fills the process's status and memory; returns 0 if anything was read
 * (or if it has nothing mergeable to read), or -errno.
 */
int est_scan_proc(struct est *e, int i);

/* Computes the kernel model and the sums; call once, after the scan. */
void est_finish(struct est *e, struct est_totals *t);

/* The k most duplicated contents (copies >= 2), most copies first. */
int est_top(struct est *e, struct est_top *out, int k);

int est_nprocs(const struct est *e);
struct est_proc *est_proc_at(struct est *e, int i);
int est_ncgroups(const struct est *e);
struct est_cgroup *est_cgroup_at(struct est *e, int i);

/* Whether PFNs (and so fork/KSM sharing) could be seen: needs CAP_SYS_ADMIN. */
bool est_have_pfns(const struct est *e);

/* Bytes read so far, over every pass. */
uint64_t est_bytes_read(const struct est *e);

/*
 * The parsing half of the smaps reader (estimate-read.c), apart so that the
 * tests and the fuzzer (tests/fuzz/fuzz_est_maps.c) can give it any text.
 *
 * est_maps_line: one line in the format of /proc/PID/maps (proc(5)), which
 * is each area's first line in /proc/PID/smaps too: "START-END PERMS OFFSET
 * MAJOR:MINOR INODE [PATH]", the inode in decimal, the other numbers in
 * hex, one space between fields, PATH (anything, spaces included, or
 * nothing) after padding, the line's newline optional.  Returns 1 for an
 * area KSM could merge as far as this line tells (private: PERMS end in
 * 'p'; not [vsyscall], the kernel's gate area, no area of the process), 0
 * for one it could not (shared), -EINVAL for a line that is no maps line
 * (smaps's other lines, or an area that is empty, reversed or not
 * page-aligned, which the kernel never writes).  [*start, *end) is the
 * area, set only when 0 or 1 is returned.
 */
int est_maps_line(const char *line, uint64_t *start, uint64_t *end);

/*
 * The rest of the rule, over a whole /proc/PID/smaps: each line in order is
 * given to est_smaps_line(), which returns 1 with [*start, *end) when the
 * line is the "VmFlags:" line that ends an area ksmd would scan (private by
 * est_maps_line, and by its VmFlags marked mergeable, or with every set
 * compatible: see estimate-read.c), else 0.  Start with every set as wanted
 * and the rest zero.
 */
struct est_smaps {
	bool every;	     /* every compatible area (merge-any, all_memory), not only "mg" */
	int areas;	     /* areas of every kind seen: 0 for a process without memory */
	uint64_t start, end; /* the area being read; end is 0 once its VmFlags is read */
	bool private;	     /* est_maps_line's answer for it */
};
int est_smaps_line(struct est_smaps *s, const char *line, uint64_t *start, uint64_t *end);

#endif
