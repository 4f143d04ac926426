/* SPDX-License-Identifier: MIT */
/*
 * samepage.h - Kernel Samepage Merging in user space.
 *
 * libsamepage finds pages of identical contents in memory that the program
 * has marked mergeable, keeps one write-protected copy of each content in a
 * memfd "pool", maps that copy at every address that held it and gives the
 * duplicates back to the kernel.  A write to a merged page gets a private
 * copy from the kernel's own copy-on-write (the pool is mapped MAP_PRIVATE),
 * so the program never notices, except in the memory it no longer uses.
 *
 * The knobs and counters are those of /sys/kernel/mm/ksm/ in Linux 6.18,
 * with the kernel's names, defaults, text formats and errors; see
 * samepage_read() and samepage_write(), and samepage(3).
 *
 * Every call returns 0 or a negative errno; samepage_strerror() names it.
 * All calls are thread-safe.
 *
 * Hazard (read this): a merged page is a private mapping of the pool file,
 * and MADV_DONTNEED there brings back the pool's contents on the next read,
 * not zeros as on anonymous memory (MADV_FREE is refused with EINVAL).
 * libsamepage interposes madvise() so that calls made through the C
 * library on a mergeable range are handled (the merged mappings become
 * fresh anonymous memory first), but a raw syscall(SYS_madvise, ...) is
 * not seen, nor are calls after samepage_close().  Memory that a program
 * discards by other means must be made UNMERGEABLE first (that gives it
 * anonymous mappings back), or come from samepage_alloc() and be
 * discarded with samepage_discard().
 */
#ifndef SAMEPAGE_H
#define SAMEPAGE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SAMEPAGE_API __attribute__((visibility("default")))
#else
#define SAMEPAGE_API
#endif

#define SAMEPAGE_VERSION_MAJOR 0
#define SAMEPAGE_VERSION_MINOR 1
#define SAMEPAGE_VERSION_PATCH 0
#define SAMEPAGE_VERSION_STRING "0.1.0"

/* The advice values: the same numbers as MADV_MERGEABLE / MADV_UNMERGEABLE. */
#define SAMEPAGE_MERGEABLE 12
#define SAMEPAGE_UNMERGEABLE 13

typedef struct samepage samepage_t; /* opaque: one engine, its pool and scanner */

/* ---------------------------------------------------------------------
 * Engine
 * ------------------------------------------------------------------- */

/* Opens an engine with its own scanner thread ("ksmd").  Like the kernel,
 * it starts with run = 0: nothing is merged until "run" is written 1. */
SAMEPAGE_API int samepage_open(samepage_t **out);

/* Stops scanning and frees the engine's metadata.  Every merged page stays
 * valid and readable/writable (its pool page stays referenced by the
 * mappings themselves). */
SAMEPAGE_API void samepage_close(samepage_t *sp);

/* Marks [addr, addr+len) of private anonymous memory mergeable or not, as
 * madvise(MADV_MERGEABLE/MADV_UNMERGEABLE) does for the kernel's KSM.
 * addr must be page-aligned.  -EINVAL: bad alignment or advice; -ENOMEM: a
 * part of the range is not mapped.  Shared, file-backed and hugetlb areas
 * are silently ignored, as the kernel does.  UNMERGEABLE gives every merged
 * page in the range a private copy again and stops scanning it. */
SAMEPAGE_API int samepage_madvise(samepage_t *sp, void *addr, size_t len, int advice);

/* merge-any, as prctl(PR_SET_MEMORY_MERGE) is for the kernel's KSM: on
 * (non-zero), every private anonymous mapping of the process is
 * mergeable, those mapped later too, but for what the library keeps out
 * (its own memory, ranges made SAMEPAGE_UNMERGEABLE, the heaps of the C
 * library's secondary malloc arenas: see samepage(3)); off, every merged
 * page is unmerged and every range forgotten.  _get says whether it is
 * on. */
SAMEPAGE_API int samepage_merge_any(samepage_t *sp, int on);
SAMEPAGE_API int samepage_merge_any_get(samepage_t *sp);

/* ---------------------------------------------------------------------
 * Knobs and counters: the names of /sys/kernel/mm/ksm/, plus the
 * per-process names of /proc/self/ksm_stat and a few of our own.
 * ------------------------------------------------------------------- */

/* Writes a knob as text, with the kernel's parsing ("100", "100\n").
 * -ENOENT: unknown name; -EACCES: read-only name; -EINVAL: bad value;
 * -ERANGE: max_page_sharing or merge_across_nodes past their type (as the
 * kernel); -EBUSY: the change needs every page unmerged first (run = 2);
 * -ENOTCONN: a samepage_connect() engine whose daemon is not running,
 * died during the request, or answered nothing in 10 s (stopped: SIGSTOP,
 * a debugger); then the write may or may not have been applied. */
SAMEPAGE_API int samepage_write(samepage_t *sp, const char *name, const char *value);

/* Reads a knob or counter as the kernel prints it, without the newline.
 * -ENOENT: unknown name; -ERANGE: buf too small. */
SAMEPAGE_API int samepage_read(samepage_t *sp, const char *name, char *buf, size_t len);

/* Reads a numeric knob or counter (advisor_mode reads 0 none, 1 scan-time). */
SAMEPAGE_API int samepage_read_number(samepage_t *sp, const char *name, long long *out);

SAMEPAGE_API const char *samepage_strerror(int err);

/* ---------------------------------------------------------------------
 * The one table of names.  The library, samepaged's config file and ksmctl
 * validate against it, so a value refused by one is refused by all.
 * ------------------------------------------------------------------- */

enum samepage_knob_kind {
	SAMEPAGE_KNOB_TUNABLE = 0, /* read-write, in /sys/kernel/mm/ksm */
	SAMEPAGE_KNOB_COUNTER = 1, /* read-only, in /sys/kernel/mm/ksm */
	SAMEPAGE_KNOB_PROCESS = 2, /* read-only, in /proc/PID/ksm_stat */
	SAMEPAGE_KNOB_EXTRA = 3,   /* read-only, libsamepage's own */
};

enum samepage_knob_format {
	SAMEPAGE_FMT_UNSIGNED = 0, /* kstrtouint/kstrtoul: a clean decimal number */
	SAMEPAGE_FMT_SIGNED = 1,   /* printed "%ld" (general_profit) */
	SAMEPAGE_FMT_BOOL = 2,	   /* kstrtobool: 0/1/y/n/on/off; printed 0 or 1 */
	SAMEPAGE_FMT_MODE = 3,	   /* advisor_mode: "none" or "scan-time" */
};

struct samepage_knob {
	const char *name;
	enum samepage_knob_kind kind;
	enum samepage_knob_format format;
	unsigned long long def; /* default (tunables) */
	unsigned long long min; /* smallest accepted value (tunables) */
	unsigned long long max; /* largest accepted value (tunables) */
	const char *since;	/* the Linux version that added the file */
	const char *help;	/* one line, the kernel documentation's words */
};

SAMEPAGE_API int samepage_knob_count(void);
SAMEPAGE_API const struct samepage_knob *samepage_knob_at(int i);
SAMEPAGE_API const struct samepage_knob *samepage_knob_find(const char *name);

/* Checks a value for a tunable as the kernel would parse it, without any
 * state: 0 and *out set, or -ENOENT (unknown), -EACCES (read-only),
 * -EINVAL (not a clean number, out of range, unknown mode). */
SAMEPAGE_API int samepage_knob_parse(const char *name, const char *value, unsigned long long *out);

/* ---------------------------------------------------------------------
 * samepaged: merging across the processes of one security domain.
 * ------------------------------------------------------------------- */

/* Connects to samepaged and returns an engine like samepage_open()'s,
 * whose memory merges with that of every process connected to the same
 * domain of the same daemon (and never with another domain's).  The knobs
 * are the daemon's (samepage_write asks it).  The counters pages_shared,
 * pages_sharing, stable_node_chains, stable_node_dups, pool_pages and
 * pool_pages_reclaimed are the domain's; general_profit is the domain's
 * pages_sharing and this process's zero pages less this process's
 * metadata; the others are this process's.  domain: 1 to 64 of [A-Za-z0-9._-], not starting with
 * '.'. The socket is $SAMEPAGE_SOCKET, else $XDG_RUNTIME_DIR/samepaged.sock, else
 * /run/samepaged.sock.  -ENOENT/-ECONNREFUSED: no daemon there; -ENOTCONN: the daemon died
 * during the call, or answered nothing in 10 s (stopped); -EACCES: the daemon is
 * not run by this user or root (SO_PEERCRED), refused us, or handed over a file that is not
 * its own or that others may write; -EINVAL: bad domain name. If the daemon goes away, merged
 * memory stays valid; merging pauses and resumes when the daemon is back. */
SAMEPAGE_API int samepage_connect(samepage_t **out, const char *domain);

/* The socket path samepage_connect() uses, as described above. */
SAMEPAGE_API int samepage_socket_path(char *buf, size_t len);

/* One request of samepaged's control protocol ("GET", "GET name",
 * "SET name value", "CLIENTS", "MAY domain"); reply gets the answer's text
 * (an "ERR errno message" line too).  Returns 0,
 * the -errno of an "ERR" answer, or the -errno of the connection
 * (-ETIMEDOUT: no answer in 10 s, the daemon stopped or stuck). */
SAMEPAGE_API int samepage_control(const char *socket_path, const char *request, char *reply,
				  size_t len);

/* ---------------------------------------------------------------------
 * Memory owned by the library: discard is always safe.
 * ------------------------------------------------------------------- */

/* Maps len bytes (rounded up to pages) of zeroed private memory, already
 * registered mergeable with sp. */
SAMEPAGE_API int samepage_alloc(samepage_t *sp, size_t len, void **out);

/* Unmaps memory from samepage_alloc() (or any registered range). */
SAMEPAGE_API int samepage_free(samepage_t *sp, void *addr, size_t len);

/* The MADV_DONTNEED of merged memory: afterwards the range reads as zeros,
 * its memory is given back, and it stays mergeable. */
SAMEPAGE_API int samepage_discard(samepage_t *sp, void *addr, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* SAMEPAGE_H */
