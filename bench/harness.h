/* SPDX-License-Identifier: MIT */
/*
 * harness.h - what every benchmark of bench/ shares: the two engines under
 * one interface (libsamepage, and the kernel's KSM through sysfs), the
 * kernel-KSM lock and knob save/restore, the busy/idle cases, waiting for
 * full scans and for convergence, the workload builders, the measurements
 * taken outside the engine (/proc/meminfo, smaps_rollup, /proc/self/maps,
 * thread CPU clocks) and the result lines that bench/run.sh collects.
 *
 * A benchmark program measures one engine in one case per run
 * ("--engine lib|kernel --case idle|busy"), so that the two engines never
 * share an address space or a memory baseline; run.sh runs both and
 * computes the ratios.
 */
#ifndef SAMEPAGE_BENCH_HARNESS_H
#define SAMEPAGE_BENCH_HARNESS_H

#include <samepage.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define PG 4096UL
#define MIB (1024UL * 1024UL)

/* The pages_to_scan both engines get (sleep_millisecs is always 0): the
 * value the design notes (../shared/docs/design.md §2) measured the kernel with. */
#define BENCH_PAGES_TO_SCAN 25600

enum engine_kind { ENGINE_LIB, ENGINE_KERNEL };

struct bench_opts {
	enum engine_kind engine;
	bool busy;	      /* --case busy: a thread of ours spins meanwhile */
	bool quick;	      /* --quick: the reduced sizes of make bench QUICK=1 */
	int use_zero_pages;   /* --zero 0|1, both engines alike */
	const char *series;   /* --series FILE: memory returned over time */
	const char *workload; /* the name on every result line */
	size_t mib;	      /* --mib N: the workload's size, where it has one (0: its own) */
	long max_map_count;   /* --max-map-count N: vm.max_map_count for the run, put back after */
};

/* What the kernel's slab holds for one more mapping (VMA): the
 * vm_area_struct, its anon_vma_chain and maple-tree share, as the library
 * counts it (lib/engines.c), measured here: ~15 MB of Slab for ~65k. */
#define MAPPING_SLAB_BYTES 240

/* Parses the common options; exits with a usage message on a bad one. */
void bench_parse(int argc, char **argv, const char *workload, struct bench_opts *o);

/* One result line: workload, case, engine, metric, unit, value. */
void bench_result(const struct bench_opts *o, const char *metric, const char *unit, double v);

/* ---- time and CPU ---- */

uint64_t now_ns(void);
double secs_since(uint64_t t0_ns);
/* Prints "bench: WHAT: strerror(errno)" and exits 1. */
void bench_die(const char *what);
void sleep_ms(unsigned ms);

/* ---- memory, measured outside the engine ---- */

long long meminfo_kb(const char *field);
/* AnonPages + Shmem: private memory plus the library's pool (a memfd). */
long long mem_used_kb(void);
long long self_rollup_kb(const char *field);
/* Lines of /proc/self/maps: the mappings (VMAs) this process holds. */
long long self_map_count(void);

/* ---- workload builders ---- */

/* Private anonymous pages, without transparent huge pages (THP is
 * "always" here; neither engine merges inside a huge page without
 * splitting it first, and -P measures normal pages). */
char *map_pages(size_t npages);
/* Fills a page with contents that depend only on key (a different key
 * gives a different page). */
void fill_page(char *page, uint64_t key);
/* A reproducible pseudo-random sequence (splitmix64). */
uint64_t rng_next(uint64_t *state);

/* A guest's memory, as workload 2 (VM-like) lays it out: runs of 1 to 256
 * pages, 70% of them image pages (identical in every guest at the same
 * offsets), 10% private (different in every guest), 20% zero pages. */
enum vm_page_kind { VM_IMAGE, VM_PRIVATE, VM_ZERO };
/* The kind of every page of npages (malloc'd), the same on every call. */
unsigned char *vm_layout(size_t npages);
/* Fills guest's npages at p as layout says (zero pages are touched). */
void vm_fill(char *p, size_t npages, const unsigned char *layout, unsigned guest);

/* ---- the engine under test ---- */

struct engine {
	enum engine_kind kind;
	samepage_t *sp; /* ENGINE_LIB */
	int cpu_clock;	/* the scanner's CPU clock: samepage-ksmd, or ksmd */
	pid_t cpu_task; /* its tid or pid (for the /proc fallback) */
	bool cpu_is_thread;
	bool busy;
};

/* Opens the engine: for the kernel, takes the kernel-KSM lock, waits until
 * nobody else uses KSM, saves every knob (restored at exit and on
 * SIGINT/SIGTERM/SIGHUP) and unmerges everything (run=2).  Sets
 * pages_to_scan, sleep_millisecs=0 and use_zero_pages on both. */
void bench_open(struct engine *e, const struct bench_opts *o, unsigned pages_to_scan);
/* madvise(MERGEABLE or UNMERGEABLE): samepage_madvise or madvise. */
int bench_advise(struct engine *e, void *addr, size_t len, bool mergeable);
void bench_run(struct engine *e, int run);
/* A counter by its sysfs name, or a /proc/self/ksm_stat name for the
 * kernel (ksm_rmap_items, ksm_merging_pages, ksm_process_profit). */
long long bench_counter(struct engine *e, const char *name);
/* Pages saved: pages_sharing + ksm_zero_pages (the kernel's definition). */
long long bench_saved_pages(struct engine *e);
uint64_t bench_cpu_ns(struct engine *e);
/* Stops the engine; the kernel's merged pages of this process are
 * unmerged (run=2) and the knobs restored. */
void bench_close(struct engine *e);

/* ---- idle and busy ---- */

/* busy: a thread of this process spins on a CPU until busy_stop(), as the
 * kernel selftest's busy-poll of full_scans does; idle: nothing. */
void busy_start(struct engine *e);
void busy_stop(struct engine *e);

/* Waits (nanosleep polling, 1 ms) until full_scans has grown by n.
 * Returns the seconds waited, or -1 after timeout_s. */
double wait_full_scans(struct engine *e, long long n, double timeout_s);

/* ---- one merge measurement, shared by the merge workloads ---- */

struct span {
	void *addr;
	size_t len;
};

struct merge_run {
	long long base_kb, base_pss_kb, base_maps; /* before */
	long long base_proc_kb;			   /* process_memory_kb() before */
	uint64_t t0, cpu0;
	double wait_s;		 /* set by the caller: time to merged/converged */
	double read_max_s;	 /* longest counter read while waiting */
	double cpu_s;		 /* the scanner's CPU over the run */
	double returned_mib;	 /* AnonPages+Shmem drop, /proc/meminfo */
	double pss_returned_mib; /* this process's Pss drop, smaps_rollup */
	double net_returned_mib; /* minus the kernel's slab metadata */
	double saved_mib;	 /* the engine's own count (pages_sharing + zero) */
	long long maps_added;	 /* /proc/self/maps lines added */
};

/* Records the baselines, starts the busy thread (case busy), then, timed
 * from here as ksm_tests does, marks the spans mergeable and writes run=1. */
void bench_merge_begin(struct engine *e, const struct span *spans, size_t nspans,
		       struct merge_run *m);
/* Stops the busy thread and takes the measurements after. */
void bench_merge_end(struct engine *e, struct merge_run *m);
/* The result lines every merge workload gives. */
void bench_merge_report(const struct bench_opts *o, const struct merge_run *m);
/*
 * Waits until the pages saved are the same at the end of two full scans
 * running (three scan ends with the same value).  With series, a thread
 * samples memory returned every 50 ms: process_memory_kb() and /proc/meminfo
 * drops from their values before.  Returns the time from m->t0 to the first
 * scan end seen with the final value (the convergence time), or -1 after
 * timeout_s; sets m->read_max_s, the longest a counter read took.
 */
double wait_converged(struct engine *e, struct merge_run *m, FILE *series, double timeout_s);

/* This process's memory, cheap enough to sample every 50 ms (Pss takes
 * ~60 ms to read with 50k mappings, and holds the mmap lock): RssAnon plus
 * the library's memfds (pool and index, from their allocated blocks), or,
 * for the kernel, RssAnon minus the mappings KSM saved (pages_sharing +
 * ksm_zero_pages), because RssAnon counts a KSM page once per mapping. */
long long process_memory_kb(struct engine *e);

/* What a workload program holds: its options, its engine, its merge run. */
struct bench {
	struct bench_opts o;
	struct engine e;
	struct merge_run m;
};

/* Parses the options and opens the engine with BENCH_PAGES_TO_SCAN. */
void bench_init(struct bench *b, int argc, char **argv, const char *workload);

/* One merge of [addr, addr + len) timed to convergence (at most
 * timeout_s), reported ("converge" and bench_merge_report()'s lines):
 * 0, or 1 after saying that it did not converge. */
int bench_converge(struct bench *b, void *addr, size_t len, double timeout_s);

/* Metadata bytes per tracked page: the library's own counter, or the
 * kernel's KSM slabs (/proc/slabinfo) per rmap item. */
double metadata_per_page(struct engine *e);

#endif
