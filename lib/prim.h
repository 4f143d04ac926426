/* SPDX-License-Identifier: MIT */
/*
 * prim.h - every call libsamepage makes to the operating system.
 *
 * The contract: each function returns 0 (or a count, where it says so) on
 * success and a negative errno on failure; none touches errno's meaning
 * for the caller, none goes through the C library's symbols that
 * libsamepage interposes (mmap, munmap, mremap, mprotect, madvise, mlock):
 * they are the kernel's calls, so that the engine's own changes never wait
 * on the address-space lock the interposed calls take.  One file
 * (prim-linux.c) implements them: it is the one place to audit, and the one
 * to substitute for a test or a measurement.
 */
#ifndef SAMEPAGE_PRIM_H
#define SAMEPAGE_PRIM_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* ---- system calls by number ---- */
/* syscall(2), made here, not by the C library's syscall(): the preload
 * library interposes that one (preload.c), so that a program's raw calls
 * reach the wrappers, and libsamepage's own calls must go straight to the
 * kernel.  The one call here that answers as syscall(2) does: -1 and
 * errno.  prim_syscall(NR, args...) takes up to six arguments. */
long prim_syscall6(long nr, long a, long b, long c, long d, long e, long f);
#define prim_syscall(...) PRIM_SYSCALL_(__VA_ARGS__, 0, 0, 0, 0, 0, 0, 0)
#define PRIM_SYSCALL_(nr, a, b, c, d, e, f, ...)                                                   \
	prim_syscall6(nr, (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))
/* Calls newer than the C library's headers (the same number on every
 * architecture). */
#ifndef SYS_mseal
#define SYS_mseal 462
#endif
/* Whether prim_syscall is this library's own (x86-64, arm64): where it is
 * the C library's, syscall() is not interposed. */
#if defined(__x86_64__) || defined(__aarch64__)
#define PRIM_OWN_SYSCALL 1
#endif

/* ---- the address space ---- */
int prim_mmap(void **out, void *addr, size_t len, int prot, int flags, int fd, off_t off);
int prim_munmap(void *addr, size_t len);
int prim_mprotect(void *addr, size_t len, int prot);
int prim_madvise(void *addr, size_t len, int advice);
int prim_populate(void *addr, size_t len); /* MADV_POPULATE_WRITE: a write cannot SIGBUS */
/* Whether a write(2) to a memfd may allocate a huge page
 * (/sys/kernel/mm/transparent_hugepage/shmem_enabled always, within_size
 * or force). */
bool prim_shmem_thp_possible(void);
bool prim_resident(const void *page); /* mincore: in memory (a file's page: not a hole) */
int prim_mremap(void **out, void *old, size_t old_len, size_t new_len, int flags, void *new_addr);
int prim_mlock(const void *addr, size_t len, unsigned int flags); /* mlock2 */
int prim_mlockall(int flags);
/* A mapping's memory policy (mbind(2)): the mode with its mode flags
 * (MPOL_F_STATIC_NODES...) and the nodes, up to PRIM_MAX_NODES. */
#define PRIM_MAX_NODES 1024
struct prim_policy {
	int mode; /* 0: MPOL_DEFAULT */
	unsigned long nodes[PRIM_MAX_NODES / (8 * sizeof(unsigned long))];
};
int prim_mbind(uintptr_t start, size_t len, const struct prim_policy *p);
/* mbind(2) as the application calls it (libnuma's prototype). */
long prim_mbind_raw(void *start, unsigned long len, int mode, const unsigned long *nodes,
		    unsigned long maxnode, unsigned flags);
int prim_munlockall(void);
int prim_munlock(const void *addr, size_t len);
/* userfaultfd write-protect: an fd with the write-protect features (for
 * anonymous memory and shmem), handling kernel-mode faults unless
 * user_only; registration (MODE_WP) of a range, or its removal; protect
 * or release a range (release wakes its waiters); wake a range. */
int prim_userfaultfd(bool user_only);
int prim_uffd_register(int fd, uintptr_t start, size_t len, bool reg);
int prim_uffd_writeprotect(int fd, uintptr_t start, size_t len, bool wp);
int prim_uffd_wake(int fd, uintptr_t start, size_t len);

/* ---- files ---- */
int prim_memfd(const char *name);			    /* an fd, close-on-exec */
int prim_truncate(int fd, off_t size);			    /* ftruncate */
int prim_punch(int fd, off_t off, off_t len);		    /* fallocate PUNCH_HOLE */
int prim_file_id(int fd, dev_t *dev, ino_t *ino);	    /* fstat */
int prim_path_id(const char *path, dev_t *dev, ino_t *ino); /* stat */
int prim_file_owner(int fd, uid_t *uid, mode_t *mode);	    /* fstat: owner and mode */
int prim_close(int fd);
int prim_random(void *buf, size_t len); /* getrandom */
/* pwrite of the whole buffer: 0, or -errno (-EIO if short) */
int prim_pwrite_all(int fd, const void *buf, size_t len, off_t off);
/* Maps all of a file MAP_SHARED for the library's own use, left out of core
 * dumps (MADV_DONTDUMP): 0 or -errno. */
int prim_map_own(void **out, size_t len, int prot, int fd);
/* Is dev/ino a file the library maps for itself (prim_map_own)? */
bool prim_own_file(dev_t dev, ino_t ino);
/* The library's own long-lived descriptors, which the program's close(),
 * close_range() and closefrom() leave open: fd marked (own) or not;
 * whether fd is one; the first one in [from, to], or -1. */
int prim_own_fd(int fd); /* marks it the library's, moved high: its new number */
bool prim_is_own_fd(int fd);
bool prim_is_brief_fd(int fd); /* one the library is reading, closed soon */
/* Around a program's dup2()/dup3(): no descriptor of the library's is
 * made meanwhile (false: one stayed under way for a second). */
bool prim_dup_begin(void);
void prim_dup_end(void);
int prim_own_fd_next(unsigned from, unsigned to);
/* In a forked child, first: none of the parent's descriptors is the
 * library's any more (its engines are inert); /proc/self's are closed. */
void prim_fork_child(void);
/* Sets bit 2 of /proc/self/coredump_filter (private file mappings) if bit 0
 * (private anonymous memory) is set: 1 if it set it, 0 if not, -errno. */
int prim_dump_private_file_mappings(void);

/* A message to the user on standard error, one write(2) of at most 512
 * bytes (what the library says where it refuses or ignores something). */
void prim_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- threads, signals, processes ---- */
int prim_futex_wait(_Atomic uint32_t *word, uint32_t val); /* FUTEX_WAIT_PRIVATE */
int prim_futex_wake(_Atomic uint32_t *word);		   /* wakes every waiter */
int prim_sigaction(int sig, const struct sigaction *act, struct sigaction *old);
int prim_sigmask(int how, const sigset_t *set, sigset_t *old); /* as pthread_sigmask */
/* Every signal but the synchronous ones (a thread's own faults: SIGSEGV,
 * SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS), which a library thread must
 * not block: its guarded reads rely on them, and one blocked is fatal. */
void prim_sigset_async(sigset_t *set);
bool prim_pid_alive(pid_t pid); /* kill(pid, 0) */
pid_t prim_getpid(void);
void prim_thread_mine(bool mine); /* this thread is the library's (or no more) */
/* This thread's nice value raised by inc, to 19 at most (what any thread
 * may do): 0, or -errno. */
int prim_thread_nicer(int inc);
/* No thread of the program's is left, only the library's (looked at once
 * a second for the process; false between): then *status is
 * its main thread's exit status (waitpid's), and prim_end_as_program()
 * ends the process as the program's last thread would have. */
bool prim_program_gone(int *status);
void prim_end_as_program(int status) __attribute__((noreturn));
pid_t prim_getppid(void);
uid_t prim_geteuid(void);
uint64_t prim_now_ns(void);			       /* CLOCK_MONOTONIC */
uint64_t prim_thread_cpu_ns(void);		       /* CLOCK_THREAD_CPUTIME_ID */
void prim_deadline(uint64_t ms, struct timespec *out); /* CLOCK_REALTIME + ms */

/* ---- /proc ---- */
#define PM_PRESENT (1ULL << 63)
#define PM_SWAPPED (1ULL << 62)
#define PM_FILE (1ULL << 61)
#define PM_EXCLUSIVE (1ULL << 56)
/* npages pagemap entries of this process from addr (absent ones read 0). */
int prim_pagemap(uintptr_t addr, size_t npages, uint64_t *out);
/* The size of a PMD-mapped transparent huge page (2 MiB on x86-64). */
size_t prim_pmd_size(void);
/* The ranges of [start, end) mapped by huge pages (a PMD-mapped THP):
 * their number (at most max, 16), or -errno (-ENOTTY before Linux 6.7). */
int prim_huge_ranges(uintptr_t start, uintptr_t end, uintptr_t (*out)[2], size_t max);
/* /proc/self/mem: reaches PROT_NONE and read-only pages (FOLL_FORCE), and
 * fails cleanly where nothing is mapped.  Return the bytes moved. */
ssize_t prim_mem_read(uintptr_t addr, void *buf, size_t len);
ssize_t prim_self_read(void *dst, const void *src, size_t len);
ssize_t prim_mem_write(uintptr_t addr, const void *buf, size_t len);
/* The heap brk(2) grows and shrinks: [start_brk, the break now). */
int prim_brk_range(uintptr_t *start, uintptr_t *end);
long prim_max_map_count(void); /* vm.max_map_count; the kernel's default if unreadable */
unsigned long long prim_starttime(pid_t pid); /* /proc/PID/stat field 22, 0 if gone */

/* A line of /proc/PID/maps. */
struct map_entry {
	uintptr_t start, end;
	int prot;
	bool shared;
	unsigned long long pgoff; /* in bytes */
	dev_t dev;
	ino_t ino;
	/* No file: anonymous, [heap], [stack], [anon:NAME]; from the maps,
	 * not the kernel's own mappings ([vdso], [vvar], ...), which no
	 * region holds (PROCMAP_QUERY says no name: anon there too). */
	bool anon;
};
/* Calls fn for each line of /proc/PID/maps (pid 0: this process) until it
 * returns non-zero, which is returned.  Allocates nothing. */
typedef int (*maps_fn)(const struct map_entry *e, void *arg);
int prim_maps_walk(pid_t pid, maps_fn fn, void *arg);
/* The mapping of this process that holds addr, as its maps line would say
 * (PROCMAP_QUERY, Linux 6.11: nothing formatted, one mapping): 0, -ENOENT
 * where nothing is mapped, -ENOTTY on a kernel without it. */
int prim_map_at(uintptr_t addr, struct map_entry *e);
bool prim_map_at_works(void);
/* prim_maps_walk() for this process's mappings that meet [start, end)
 * only, in order, each asked of the kernel (PROCMAP_QUERY): a few system
 * calls instead of reading maps that run to 10,000s of lines.  Without
 * PROCMAP_QUERY, the whole maps: fn must skip what lies outside. */
int prim_maps_walk_range(uintptr_t start, uintptr_t end, maps_fn fn, void *arg);
/* Calls fn for each mapping of /proc/self/smaps (its maps line) with the
 * two-letter VmFlags it has (a string such as " rd wr mr mw me ac lo"). */
typedef int (*vmflags_fn)(const struct map_entry *e, const char *flags, void *arg);
int prim_vmflags_walk(vmflags_fn fn, void *arg);

/* ---- the control socket (samepaged) ---- */
/* Connects a SOCK_SEQPACKET socket to path; *peer_uid from SO_PEERCRED. */
int prim_unix_connect(const char *path, uid_t *peer_uid);
int prim_unix_peer(int fd, uid_t *peer_uid); /* SO_PEERCRED */
int prim_send(int fd, const void *buf, size_t len, bool dontwait);
/* Sends and receives on fd wait ms at most (EAGAIN after), 0 for ever. */
int prim_sock_timeout(int fd, unsigned ms);
/* One packet into buf (returns its length) with up to nfds descriptors
 * (close-on-exec; extra ones are closed); *nfds_out says how many came. */
ssize_t prim_recv_fds(int fd, void *buf, size_t len, bool dontwait, int *fds, int nfds,
		      int *nfds_out);
bool prim_hung_up(int fd); /* the peer closed: poll(POLLRDHUP) */
/* Whether fd has something to read (or hung up) within ms milliseconds. */
bool prim_readable(int fd, unsigned ms);
/* fork's prepare handlers: takes m unless the calling thread holds it
 * (entered: it was inside its section); false if not taken. */
bool prim_fork_mutex_take(pthread_mutex_t *m, bool entered);
/* From the futex word of m (glibc): whether a thread may be waiting for it
 * (m held by the caller; after a hand-over glibc sets the mark once more
 * than needed), and whether any thread holds it. */
bool prim_mutex_waiters(pthread_mutex_t *m);
bool prim_mutex_held(pthread_mutex_t *m);

/* A debug build's pause where SAMEPAGE_DEBUG_PAUSE names the point (a test
 * widens a race's window); nothing in a release build. */
void debug_pause(const char *point);

#endif
