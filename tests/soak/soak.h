/* SPDX-License-Identifier: MIT */
/*
 * soak.h - what the soak's processes share: the operation kinds, the
 * options, the statistics block (one MAP_SHARED page set, written by every
 * process of the run, read by the supervisor), the memory regions with
 * their shadow copies, and the operations on them.
 *
 * Processes of a run (soak.c starts them):
 *  - the supervisor: options, samepaged, the chaos (SIGKILL of clients and
 *    of the daemon), memory sampling, the report; it maps no registered
 *    memory itself;
 *  - the engine process (engines.c, engine_process_main): several engines
 *    of samepage_open(), worker threads, signal-blocking writers and the
 *    knob thread; restarted by the supervisor if it crashes;
 *  - samepaged clients (engines.c, client_process_main): samepage_connect()
 *    in one of two domains, worker threads over their own regions.
 * Workers (ops.c) own their regions: every operation on a region is
 * followed by a comparison of the pages it touched with the shadow copy.
 */
#ifndef SAMEPAGE_SOAK_H
#define SAMEPAGE_SOAK_H

#include <pthread.h>
#include <samepage.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PG 4096UL

/* The kinds of operation, each switched on and off by --ops/--without. */
#define SOAK_OPS(X)                                                                                \
	X(WRITE, "write", "threads write whole pages (duplicates, zeros) and bytes")               \
	X(PREAD, "pread", "buffered pread() of a file on disk into registered memory")             \
	X(DIRECT, "direct", "O_DIRECT pread() of the file into registered memory")                 \
	X(READV, "readv", "buffered preadv() with several iovecs into registered memory")          \
	X(RECV, "recv", "recv()/recvmsg() from a socketpair into registered memory")               \
	X(FORK, "fork", "fork(): children check their copy, write, check again")                   \
	X(DISCARD, "discard", "MADV_DONTNEED (interposed) and samepage_discard()")                 \
	X(MMAP, "mmap", "munmap+mmap, mremap, mprotect, a page replaced by MAP_FIXED")             \
	X(KNOBS, "knobs", "every tunable written and read back, run=2 then run=1, counters")       \
	X(ZERO_PAGES, "zero-pages", "use_zero_pages toggled (with knobs)")                         \
	X(MPS, "mps", "max_page_sharing and merge_across_nodes changed after run=2")               \
	X(SMART_SCAN, "smart-scan", "smart_scan toggled (with knobs)")                             \
	X(ENGINES, "engines", "several engines in one process, closed and reopened")               \
	X(DAEMON, "daemon", "samepaged clients in two domains; clients and daemon SIGKILLed")      \
	X(SIGBLOCK, "sigblock", "threads that block every signal write into registered memory")    \
	X(MLOCK, "mlock", "mlock/munlock of ranges, mlockall/munlockall (not under sanitizers)")   \
	X(ADVISE, "advise", "MADV_DONTFORK/DOFORK, WIPEONFORK/KEEPONFORK, DONTDUMP/DODUMP")        \
	X(MERGE_ANY, "merge-any",                                                                  \
	  "the engine process's first engine merges every private mapping (not under sanitizers)")

/* Sanitizers map terabytes of shadow memory: mlockall would lock it, and
 * merge-any would scan it. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SOAK_SANITIZED 1
#else
#define SOAK_SANITIZED 0
#endif

/* What a page was advised, for a forked child's view of it. */
#define ADV_DONTFORK 1	 /* not in the child */
#define ADV_WIPEONFORK 2 /* zeros in the child */

#define SOAK_ENUM(e, name, help) OP_##e,
enum op { SOAK_OPS(SOAK_ENUM) NOPS, OP_VERIFY = NOPS, OP_CHILD, NWHO };
#undef SOAK_ENUM

extern const char *const op_name[NWHO];
extern const char *const op_help[NOPS];

struct soak_opts {
	double duration; /* seconds */
	uint64_t seed;
	bool on[NOPS];
	int workers; /* worker threads of the engine process */
	int regions; /* regions per worker */
	int pages;   /* pages per region */
	int engines; /* engines of the engine process (1 without "engines") */
	int sigblock_threads;
	int clients;	       /* samepaged clients, split over two domains */
	unsigned pause_us;     /* pause after each operation, so that pages stay put and merge */
	double report_every;   /* seconds between progress lines and memory samples */
	const char *samepaged; /* the daemon binary */
	const char *ksmctl;    /* optional: `ksmctl --user status` checked while the daemon runs */
	const char *dir;       /* a directory on disk, for the file (O_DIRECT) */
	const char *csv;       /* memory samples written here */
	const char *socket;    /* samepaged's socket (the supervisor's temporary directory) */
	char file[512];	       /* the file read into registered memory */
};

/* A mismatch: a page whose bytes differ from its shadow. */
struct mismatch {
	uint64_t addr;	/* the first differing byte */
	uint32_t bytes; /* bytes of the page that differ */
	uint8_t expected, actual;
	uint8_t found_by;   /* the operation after which it was found (enum op) */
	uint8_t last_write; /* the last operation that wrote the page */
	bool alloced;	    /* in memory from samepage_alloc (else mmap) */
	int pid;
	char who[24]; /* "engine", "client A0", "child of engine" */
};

#define SOAK_RECORDS 8
#define SOAK_NOTES 24

/* A kind of failure (one call of note(), by its format): how often, and
 * the text of its first occurrence. */
struct soak_note {
	_Atomic uintptr_t fmt;
	_Atomic uint64_t count;
	_Atomic int ready;
	char text[400];
};

struct soak_stats {
	_Atomic int stop;
	_Atomic uint64_t ops[NWHO];
	_Atomic uint64_t bytes_checked;
	_Atomic uint64_t mismatch_pages, mismatch_bytes;
	_Atomic uint64_t efault[NWHO], short_reads[NWHO];
	_Atomic uint64_t syscall_errors; /* unexpected errors of mmap, munmap, fork... */
	_Atomic uint64_t api_errors; /* the library refused what it should accept, or the reverse */
	_Atomic uint64_t knob_writes, knob_reads, knobs_enotconn;
	_Atomic uint64_t runs2; /* run=2 written */
	_Atomic uint64_t children, child_crashes;
	_Atomic uint64_t hangs; /* a process that did not finish in a minute, killed */
	_Atomic uint64_t engines_reopened;
	_Atomic uint64_t merged_peak;		      /* the most pages_sharing an engine showed */
	_Atomic uint64_t merged_peak_daemon;	      /* ... and a samepaged domain */
	_Atomic uint64_t cow_ksm, merge_window_waits; /* summed when engines close */
	_Atomic uint32_t nrecords;
	struct mismatch rec[SOAK_RECORDS];
	struct soak_note notes[SOAK_NOTES];
	_Atomic uint64_t notes_lost; /* of kinds past SOAK_NOTES */
};

extern struct soak_stats *stats;
extern const struct soak_opts *opts;

/* The file read into registered memory: FILE_PAGES pages of patterns. */
#define FILE_PAGES 64
#define NPATTERNS 8

/* An engine of the process, and the lock that keeps it from being closed
 * while an operation uses its handle (workers take it shared). */
struct engine {
	samepage_t *sp;
	pthread_rwlock_t lock;
};

/* A process's environment for its workers. */
struct env {
	struct engine *engines;
	int nengines;
	const char *who;       /* "engine", "client A0" */
	unsigned pattern_base; /* domains use different contents */
	int fd, fd_direct;     /* the file, buffered and O_DIRECT */
	char *file_shadow;     /* the file's contents */
	_Atomic int children_alive;
};

struct region {
	char *addr, *shadow;
	uint8_t *last_write; /* per page: the last operation that wrote it */
	uint8_t *advice;     /* per page: ADV_DONTFORK, ADV_WIPEONFORK (op_advise) */
	size_t npages;
	int engine;
	bool alloced; /* from samepage_alloc (else mmap + samepage_madvise) */
	bool split;   /* a page was mapped again with MAP_FIXED: several VMAs */
	bool locked;  /* mlock'd (part of it) since munlockall number lock_epoch */
	unsigned lock_epoch;
};

struct worker {
	struct env *env;
	struct region *regions;
	int nregions;
	uint64_t rng;
	int sock[2];   /* a socketpair for recv */
	bool sigblock; /* a thread that blocks every signal: writes only */
	pthread_t thread;
};

/* Random numbers (xorshift64*), one state per thread. */
static inline uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}
static inline uint64_t rnd_below(uint64_t *s, uint64_t n)
{
	return n ? rnd(s) % n : 0;
}
uint64_t seed_for(uint64_t seed, uint64_t a, uint64_t b);

/* Fills a page with pattern p (0: zeros). */
void fill_pattern(char *page, unsigned p);

/* Failures that are not mismatches: counted by the caller, and by note()
 * per kind (its format: every process of a run is a fork of the
 * supervisor, so a format has the same address in all of them). */
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
bool soak_stopping(void);
double soak_now(void); /* monotonic seconds */

/* ops.c */
void region_map(struct worker *w, struct region *r);
void region_unmap(struct worker *w, struct region *r);
size_t check_pages(struct worker *w, struct region *r, size_t first, size_t n, enum op op);
void worker_setup(struct worker *w, struct env *env, int nregions, int first_engine, uint64_t seed,
		  bool sigblock);
void *worker_main(void *arg);
void worker_teardown(struct worker *w);

/* engines.c */
int engine_process_main(int generation);
int client_process_main(int domain, int index, uint64_t seed);

#endif
