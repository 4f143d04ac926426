// SPDX-License-Identifier: MIT
/*
 * prim-linux.c - prim.h on Linux: the only file of libsamepage that calls
 * the operating system.
 *
 * Address-space calls go straight to the kernel (prim_syscall), never
 * through the C library's symbols: libsamepage interposes mmap, munmap,
 * mremap, mprotect, madvise and mlock (interpose.c) to keep the
 * application's address-space changes from racing with a merge, and its
 * own calls must not wait on that lock.  Every function returns 0 (or a
 * count) or a negative errno, as prim.h says.
 */
#include "prim.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/futex.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define PAGE_SHIFT 12

/* The system call instruction, as the kernel's ABI has it. */
long prim_syscall6(long nr, long a, long b, long c, long d, long e, long f)
{
#if defined(__x86_64__)
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long rc;
	__asm__ volatile("syscall"
			 : "=a"(rc)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
#elif defined(__aarch64__)
	register long x8 __asm__("x8") = nr;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	register long x4 __asm__("x4") = e;
	register long x5 __asm__("x5") = f;
	__asm__ volatile("svc 0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
			 : "memory", "cc");
	long rc = x0;
#else
	return syscall(nr, a, b, c, d, e, f);
#endif
#ifdef PRIM_OWN_SYSCALL
	if ((unsigned long)rc > -4096UL) { /* -errno */
		errno = (int)-rc;
		return -1;
	}
	return rc;
#endif
}

/* The C library's read, pread and recvmsg are interposed (interpose-io.c):
 * the library's own reads go straight to the kernel. */
static ssize_t sys_read(int fd, void *buf, size_t len)
{
	return prim_syscall(SYS_read, fd, buf, len);
}

static ssize_t sys_pread(int fd, void *buf, size_t len, off_t off)
{
	return prim_syscall(SYS_pread64, fd, buf, len, off);
}

/* The library's descriptors (its memfds, its userfaultfd, /proc/self's
 * files, its connection to samepaged, and for as long as it reads them the
 * /proc and /sys files it reads): the close(), close_range() and
 * closefrom() wrappers leave them open, since a program that closes every
 * descriptor it did not open (a daemon's start) and opens files after
 * would otherwise give their numbers to its own files, and the library
 * would punch holes in them (RELIABILITY.md 72).  The long-lived ones are
 * kept above the numbers programs choose for their own files (a shell's
 * "exec 3>file", a dup2(fd, 3)), at the top of the first 1024 or of
 * RLIMIT_NOFILE if it is lower; a dup2() or dup3() onto one of them is
 * refused, and one onto a file the library is reading waits until the
 * library has closed it (RELIABILITY.md 73).  What is left: the few
 * instructions between the kernel's answer to an open and the mark. */
#define OWN_FD_MAX 65536
#define OWN_FD_ROOM 64 /* numbers below the top for the long-lived ones */
static _Atomic uint64_t own_fd_bits[OWN_FD_MAX / 64], brief_fd_bits[OWN_FD_MAX / 64];

static bool fd_bit(_Atomic uint64_t *bits, int fd)
{
	return fd >= 0 && fd < OWN_FD_MAX &&
	       (atomic_load_explicit(&bits[fd / 64], memory_order_relaxed) >> (fd % 64) & 1);
}

static void fd_bit_set(_Atomic uint64_t *bits, int fd, bool set)
{
	if (fd < 0 || fd >= OWN_FD_MAX)
		return;
	uint64_t bit = 1ULL << (fd % 64);
	if (set)
		atomic_fetch_or(&bits[fd / 64], bit);
	else
		atomic_fetch_and(&bits[fd / 64], ~bit);
}

/* A descriptor the library just made, marked until it is closed or made
 * long-lived; fd itself. */
static int fd_brief(int fd)
{
	fd_bit_set(brief_fd_bits, fd, true);
	fd_bit_set(own_fd_bits, fd, true);
	return fd;
}

/* Around each call that makes descriptors, and each dup2() or dup3() of
 * the program's: the two never overlap, or the program's could replace a
 * descriptor the library has made and not yet marked (at the lowest free
 * number, the one a shell's "exec 3>file" chooses).  Each says it is
 * under way before it looks at the other (sequentially consistent), so at
 * least one sees the other; the library's then steps back and waits, up to
 * 100 ms (a program's signal handler may interrupt its own dup2() and
 * fault into the library). */
static _Atomic int fds_in_flight, dups_in_flight;

static void fd_make_begin(void)
{
	for (int waited = 0;; waited++) {
		atomic_fetch_add(&fds_in_flight, 1);
		if (!atomic_load(&dups_in_flight) || waited >= 1000)
			return;
		atomic_fetch_sub(&fds_in_flight, 1);
		prim_syscall(SYS_nanosleep, &(struct timespec){.tv_nsec = 100000}, NULL);
	}
}

bool prim_dup_begin(void)
{
	atomic_fetch_add(&dups_in_flight, 1);
	for (int waited = 0; atomic_load(&fds_in_flight); waited++) {
		if (waited >= 10000) { /* a second: one stuck in a receive */
			atomic_fetch_sub(&dups_in_flight, 1);
			return false;
		}
		prim_syscall(SYS_nanosleep, &(struct timespec){.tv_nsec = 100000}, NULL);
	}
	return true;
}

void prim_dup_end(void)
{
	atomic_fetch_sub(&dups_in_flight, 1);
}

static int fd_make_end(int fd)
{
	if (fd >= 0)
		fd_brief(fd);
	atomic_fetch_sub(&fds_in_flight, 1);
	return fd;
}

/* Syscalls, not the C library's open and openat (the preload library's
 * /dev/kvm check asks guard_window_kind(), whose first call probes
 * userfaultfd and opens /dev/userfaultfd: through the wrapper, that
 * waited for itself). */
static int sys_open(const char *path, int flags)
{
	fd_make_begin();
	return fd_make_end((int)prim_syscall(SYS_openat, AT_FDCWD, path, flags, 0));
}

/* Not the wrapper either, which leaves the library's own open; the mark
 * goes after the descriptor (a program's dup2() onto it waits meanwhile). */
static int sys_close(int fd)
{
	int rc = (int)prim_syscall(SYS_close, fd);
	int err = errno;
	fd_bit_set(own_fd_bits, fd, false);
	fd_bit_set(brief_fd_bits, fd, false);
	errno = err;
	return rc;
}

int prim_own_fd(int fd)
{
	struct rlimit rl;
	if (fd < 0)
		return fd;
	fd_brief(fd);
	rlim_t top = getrlimit(RLIMIT_NOFILE, &rl) ? 0 : rl.rlim_cur < 1024 ? rl.rlim_cur : 1024;
	if (top >= 4 * OWN_FD_ROOM && fd < (int)top - OWN_FD_ROOM) {
		/* Where it is, if the room is full (the program's files, or
		 * many engines). */
		fd_make_begin();
		int high = fd_make_end(
		    (int)prim_syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, (int)top - OWN_FD_ROOM));
		if (high >= 0) {
			sys_close(fd);
			fd = high;
		}
	}
	fd_bit_set(own_fd_bits, fd, true);
	fd_bit_set(brief_fd_bits, fd, false);
	return fd;
}

bool prim_is_own_fd(int fd)
{
	return fd_bit(own_fd_bits, fd);
}

bool prim_is_brief_fd(int fd)
{
	return fd_bit(brief_fd_bits, fd);
}

/* ioctl is interposed too (the application's own userfaultfd). */
static int sys_ioctl(int fd, unsigned long request, void *arg)
{
	return (int)prim_syscall(SYS_ioctl, fd, request, arg);
}

/* syscall(2) says -1 and errno; the contract says -errno. */
static long sys_result(long rc)
{
	return rc == -1 ? -errno : rc;
}

/* ---- the address space ---- */

int prim_mmap(void **out, void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	long rc = prim_syscall(SYS_mmap, addr, len, prot, flags, fd, off);
	if (rc == -1)
		return -errno;
	*out = (void *)rc;
	return 0;
}

/* The library's own shared mappings (prim_map_own): its pools, indexes,
 * ledgers and guards, sparse files of up to 64 GiB that nothing must ever
 * populate (mlockall would).  A slot is claimed with start 1, then filled. */
#define OWN_MAPS 64
static struct {
	_Atomic uintptr_t start;
	uintptr_t end;
	dev_t dev;
	ino_t ino;
} own_maps[OWN_MAPS];

static void own_map_add(uintptr_t start, uintptr_t end, int fd)
{
	dev_t dev;
	ino_t ino;
	if (prim_file_id(fd, &dev, &ino))
		return;
	for (int i = 0; i < OWN_MAPS; i++) {
		uintptr_t none = 0;
		if (atomic_compare_exchange_strong(&own_maps[i].start, &none, 1)) {
			own_maps[i].end = end;
			own_maps[i].dev = dev;
			own_maps[i].ino = ino;
			atomic_store(&own_maps[i].start, start);
			return;
		}
	}
}

int prim_own_fd_next(unsigned from, unsigned to)
{
	for (unsigned fd = from; fd <= to && fd < OWN_FD_MAX; fd++) {
		uint64_t w = atomic_load_explicit(&own_fd_bits[fd / 64], memory_order_relaxed);
		if (!w) {
			fd |= 63; /* the next word */
			continue;
		}
		if (w >> (fd % 64) & 1)
			return (int)fd;
	}
	return -1;
}

bool prim_own_file(dev_t dev, ino_t ino)
{
	for (int i = 0; i < OWN_MAPS; i++)
		if (atomic_load(&own_maps[i].start) > 1 && own_maps[i].dev == dev &&
		    own_maps[i].ino == ino)
			return true;
	return false;
}

int prim_munmap(void *addr, size_t len)
{
	int err = (int)sys_result(prim_syscall(SYS_munmap, addr, len));
	for (int i = 0; !err && i < OWN_MAPS; i++) {
		uintptr_t a = (uintptr_t)addr;
		if (atomic_load(&own_maps[i].start) == a && own_maps[i].end == a + len)
			atomic_store(&own_maps[i].start, 0);
	}
	return err;
}

int prim_mprotect(void *addr, size_t len, int prot)
{
	return (int)sys_result(prim_syscall(SYS_mprotect, addr, len, prot));
}

int prim_madvise(void *addr, size_t len, int advice)
{
	return (int)sys_result(prim_syscall(SYS_madvise, addr, len, advice));
}

/* Allocates the pages of a shared file mapping under [addr, addr + len)
 * now, so that writing them later cannot fault with SIGBUS (a full tmpfs:
 * samepaged's state directory): 0, or -errno (EFAULT: no room).  0 where
 * the kernel predates MADV_POPULATE_WRITE (5.14): as before. */
int prim_populate(void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr & ~(uintptr_t)((1UL << PAGE_SHIFT) - 1),
		  e = ((uintptr_t)addr + len + (1UL << PAGE_SHIFT) - 1) &
		      ~(uintptr_t)((1UL << PAGE_SHIFT) - 1);
	int err = prim_madvise((void *)a, e - a, MADV_POPULATE_WRITE);
	return err == -EINVAL ? 0 : err;
}

bool prim_resident(const void *page)
{
	unsigned char v = 0;
	return prim_syscall(SYS_mincore, page, (size_t)1 << PAGE_SHIFT, &v) == 0 && (v & 1);
}

int prim_mremap(void **out, void *old, size_t old_len, size_t new_len, int flags, void *new_addr)
{
	long rc = prim_syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
	if (rc == -1)
		return -errno;
	*out = (void *)rc;
	return 0;
}

int prim_mlock(const void *addr, size_t len, unsigned int flags)
{
	return (int)sys_result(prim_syscall(SYS_mlock2, addr, len, flags));
}

int prim_mbind(uintptr_t start, size_t len, const struct prim_policy *p)
{
	return (int)sys_result(
	    prim_syscall(SYS_mbind, start, len, p->mode, p->nodes, PRIM_MAX_NODES + 1, 0));
}

long prim_mbind_raw(void *start, unsigned long len, int mode, const unsigned long *nodes,
		    unsigned long maxnode, unsigned flags)
{
	return prim_syscall(SYS_mbind, start, len, mode, nodes, maxnode, flags);
}

int prim_mlockall(int flags)
{
	return (int)sys_result(prim_syscall(SYS_mlockall, flags));
}

int prim_munlockall(void)
{
	return (int)sys_result(prim_syscall(SYS_munlockall));
}

#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13) /* Linux 6.4 */
#endif

/* The API handshake: write-protect faults, on shmem too (the pool's private
 * mappings), and on none ptes where the kernel has it. */
static int uffd_api(int fd)
{
	const uint64_t need = UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	struct uffdio_api api = {.api = UFFD_API, .features = need | UFFD_FEATURE_WP_UNPOPULATED};
	if (sys_ioctl(fd, UFFDIO_API, &api) == 0)
		return 0;
	api = (struct uffdio_api){.api = UFFD_API, .features = need}; /* before 6.4 */
	return sys_ioctl(fd, UFFDIO_API, &api) ? -errno : 0;
}

int prim_userfaultfd(bool user_only)
{
	int flags = O_CLOEXEC | O_NONBLOCK | (user_only ? UFFD_USER_MODE_ONLY : 0);
	fd_make_begin();
	int fd = fd_make_end((int)prim_syscall(SYS_userfaultfd, flags));
	if (fd < 0 && !user_only) {
		/* Not privileged: /dev/userfaultfd may still be ours to use. */
		int dev = sys_open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (dev >= 0) {
			fd_make_begin();
			fd = fd_make_end(sys_ioctl(dev, USERFAULTFD_IOC_NEW,
						   (void *)(uintptr_t)(O_CLOEXEC | O_NONBLOCK)));
			sys_close(dev);
		}
	}
	if (fd < 0)
		return -errno;
	int err = uffd_api(fd);
	if (err) {
		sys_close(fd);
		return err;
	}
	return prim_own_fd(fd);
}

int prim_uffd_register(int fd, uintptr_t start, size_t len, bool reg)
{
	struct uffdio_register r = {.range = {start, len}, .mode = UFFDIO_REGISTER_MODE_WP};
	int rc =
	    reg ? sys_ioctl(fd, UFFDIO_REGISTER, &r) : sys_ioctl(fd, UFFDIO_UNREGISTER, &r.range);
	return rc ? -errno : 0;
}

int prim_uffd_writeprotect(int fd, uintptr_t start, size_t len, bool wp)
{
	struct uffdio_writeprotect w = {.range = {start, len},
					.mode = wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0};
	return sys_ioctl(fd, UFFDIO_WRITEPROTECT, &w) ? -errno : 0;
}

int prim_uffd_wake(int fd, uintptr_t start, size_t len)
{
	struct uffdio_range r = {start, len};
	return sys_ioctl(fd, UFFDIO_WAKE, &r) ? -errno : 0;
}

int prim_munlock(const void *addr, size_t len)
{
	return (int)sys_result(prim_syscall(SYS_munlock, addr, len));
}

/* ---- files ---- */

int prim_memfd(const char *name)
{
	fd_make_begin();
	return fd_make_end((int)sys_result(prim_syscall(SYS_memfd_create, name, MFD_CLOEXEC)));
}

int prim_truncate(int fd, off_t size)
{
	return ftruncate(fd, size) ? -errno : 0;
}

int prim_punch(int fd, off_t off, off_t len)
{
	return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) ? -errno : 0;
}

int prim_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	ssize_t n = prim_syscall(SYS_pwrite64, fd, buf, len, off);
	return n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
}

int prim_map_own(void **out, size_t len, int prot, int fd)
{
	int err = prim_mmap(out, NULL, len, prot, MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (!err) {
		prim_madvise(*out, len, MADV_DONTDUMP);
		/* No huge page of these files through this mapping, whatever
		 * shmem_enabled or the tmpfs's huge= say: one KSM page would
		 * take 2 MiB, and khugepaged would fill a sparse pool's holes. */
		prim_madvise(*out, len, MADV_NOHUGEPAGE);
		own_map_add((uintptr_t)*out, (uintptr_t)*out + len, fd);
	}
	return err;
}

int prim_dump_private_file_mappings(void)
{
	char buf[32];
	int fd = sys_open("/proc/self/coredump_filter", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = sys_read(fd, buf, sizeof(buf) - 1);
	int rc = n < 0 ? -errno : n == 0 ? -EIO : 0;
	if (n > 0) {
		buf[n] = 0;
		unsigned long v = strtoul(buf, NULL, 16);
		if ((v & 1) && !(v & 4)) {
			int len = snprintf(buf, sizeof(buf), "0x%lx", v | 4);
			rc = pwrite(fd, buf, (size_t)len, 0) == len ? 1 : -errno;
		}
	}
	sys_close(fd);
	return rc;
}

int prim_file_id(int fd, dev_t *dev, ino_t *ino)
{
	struct stat st;
	if (fstat(fd, &st))
		return -errno;
	*dev = st.st_dev;
	*ino = st.st_ino;
	return 0;
}

int prim_path_id(const char *path, dev_t *dev, ino_t *ino)
{
	struct stat st;
	if (stat(path, &st))
		return -errno;
	*dev = st.st_dev;
	*ino = st.st_ino;
	return 0;
}

int prim_file_owner(int fd, uid_t *uid, mode_t *mode)
{
	struct stat st;
	if (fstat(fd, &st))
		return -errno;
	*uid = st.st_uid;
	*mode = st.st_mode;
	return 0;
}

int prim_close(int fd)
{
	return sys_close(fd) ? -errno : 0;
}

int prim_random(void *buf, size_t len)
{
	ssize_t n = getrandom(buf, len, 0);
	return n < 0 ? -errno : (size_t)n == len ? 0 : -EIO;
}

/* ---- threads, signals, processes ---- */

int prim_futex_wait(_Atomic uint32_t *word, uint32_t val)
{
	return (int)sys_result(
	    prim_syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0));
}

int prim_futex_wake(_Atomic uint32_t *word)
{
	return (int)sys_result(
	    prim_syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0));
}

int prim_sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	return sigaction(sig, act, old) ? -errno : 0;
}

void prim_sigset_async(sigset_t *set)
{
	static const int sync[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS};
	sigfillset(set);
	for (size_t i = 0; i < sizeof(sync) / sizeof(sync[0]); i++)
		sigdelset(set, sync[i]);
}

/* The calling thread's mask, as pthread_sigmask (interposed, not called
 * here): never blocking the signals the C library keeps for itself (those
 * below SIGRTMIN: cancellation's, setxid's, which setuid() sends every
 * thread and waits for). */
int prim_sigmask(int how, const sigset_t *set, sigset_t *old)
{
	sigset_t copy;
	if (set && how != SIG_UNBLOCK) {
		copy = *set;
		for (int s = 32; s < SIGRTMIN; s++)
			sigdelset(&copy, s);
		set = &copy;
	}
	return (int)sys_result(prim_syscall(SYS_rt_sigprocmask, how, set, old, _NSIG / 8));
}

bool prim_pid_alive(pid_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

pid_t prim_getpid(void)
{
	return getpid();
}

pid_t prim_getppid(void)
{
	return getppid();
}

uid_t prim_geteuid(void)
{
	return geteuid();
}

static uint64_t clock_ns(clockid_t c)
{
	struct timespec t;
	clock_gettime(c, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

uint64_t prim_now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

int prim_thread_nicer(int inc)
{
	long tid = prim_syscall(SYS_gettid);
	errno = 0;
	int now = getpriority(PRIO_PROCESS, (id_t)tid);
	if (now == -1 && errno)
		return -errno;
	int to = now + inc > 19 ? 19 : now + inc;
	return setpriority(PRIO_PROCESS, (id_t)tid, to) ? -errno : 0;
}

uint64_t prim_thread_cpu_ns(void)
{
	return clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

void prim_deadline(uint64_t ms, struct timespec *out)
{
	clock_gettime(CLOCK_REALTIME, out);
	out->tv_sec += (time_t)(ms / 1000);
	out->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (out->tv_nsec >= 1000000000L) {
		out->tv_sec++;
		out->tv_nsec -= 1000000000L;
	}
}

/* ---- /proc ---- */

/* The descriptors are opened once per process and reopened after a fork
 * (they name "self", which /proc resolves at open time). */
static int pagemap_fd = -1, mem_fd = -1, maps_fd = -1;
static pid_t fds_pid;

void prim_fork_child(void)
{
	/* The parent's descriptors are the parent's engines' (inert here): a
	 * child may close them (a helper that closes every descriptor lets
	 * samepaged see its parent go); the child's own are marked anew. */
	for (size_t i = 0; i < OWN_FD_MAX / 64; i++) {
		atomic_store_explicit(&own_fd_bits[i], 0, memory_order_relaxed);
		atomic_store_explicit(&brief_fd_bits[i], 0, memory_order_relaxed);
	}
	/* /proc/self's files name the parent: opened again at their next
	 * use, closed now, before the program could reuse their numbers. */
	int *self[] = {&pagemap_fd, &mem_fd, &maps_fd};
	for (size_t i = 0; i < 3; i++) {
		if (*self[i] >= 0)
			sys_close(*self[i]);
		*self[i] = -1;
	}
	fds_pid = 0;
}

static void open_self_files(void)
{
	pid_t pid = getpid();
	if (fds_pid == pid && pagemap_fd >= 0 && mem_fd >= 0 && maps_fd >= 0)
		return;
	if (pagemap_fd >= 0)
		prim_close(pagemap_fd);
	if (mem_fd >= 0)
		prim_close(mem_fd);
	if (maps_fd >= 0)
		prim_close(maps_fd);
	pagemap_fd = prim_own_fd(sys_open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
	mem_fd = prim_own_fd(sys_open("/proc/self/mem", O_RDWR | O_CLOEXEC));
	maps_fd = prim_own_fd(sys_open("/proc/self/maps", O_RDONLY | O_CLOEXEC));
	fds_pid = pid;
}

int prim_pagemap(uintptr_t addr, size_t npages, uint64_t *out)
{
	size_t want = npages * sizeof(uint64_t);
	open_self_files();
	if (pagemap_fd < 0)
		return -EACCES;
	ssize_t n =
	    sys_pread(pagemap_fd, out, want, (off_t)((addr >> PAGE_SHIFT) * sizeof(uint64_t)));
	if (n < 0)
		return -errno;
	/* A short read means the end of the address space: not present. */
	if ((size_t)n < want)
		memset((char *)out + n, 0, want - (size_t)n);
	return 0;
}

/* PAGEMAP_SCAN (Linux 6.7), from its manual page, ioctl_pagemap_scan(2),
 * for C libraries whose kernel headers predate it. */
#ifndef PAGEMAP_SCAN
struct page_region {
	uint64_t start, end, categories;
};
struct pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGE_IS_HUGE (1 << 6)
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

int prim_huge_ranges(uintptr_t start, uintptr_t end, uintptr_t (*out)[2], size_t max)
{
	struct page_region r[16];
	struct pm_scan_arg a = {.size = sizeof(a),
				.start = start,
				.end = end,
				.vec = (uintptr_t)r,
				.vec_len = max < 16 ? max : 16,
				.category_mask = PAGE_IS_HUGE,
				.return_mask = PAGE_IS_HUGE};
	open_self_files();
	if (pagemap_fd < 0)
		return -EACCES;
	int n = sys_ioctl(pagemap_fd, PAGEMAP_SCAN, &a);
	if (n < 0)
		return -errno;
	for (int i = 0; i < n; i++) {
		out[i][0] = (uintptr_t)r[i].start;
		out[i][1] = (uintptr_t)r[i].end;
	}
	return n;
}

/* PROCMAP_QUERY (Linux 6.11), from its description in the kernel's
 * include/uapi/linux/fs.h, for C libraries whose headers predate it. */
#ifndef PROCMAP_QUERY
struct procmap_query {
	uint64_t size, query_flags, query_addr;
	uint64_t vma_start, vma_end, vma_flags, vma_page_size, vma_offset, inode;
	uint32_t dev_major, dev_minor, vma_name_size, build_id_size;
	uint64_t vma_name_addr, build_id_addr;
};
#define PROCMAP_QUERY _IOWR('f', 17, struct procmap_query)
#define PROCMAP_QUERY_VMA_READABLE 0x01
#define PROCMAP_QUERY_VMA_WRITABLE 0x02
#define PROCMAP_QUERY_VMA_EXECUTABLE 0x04
#define PROCMAP_QUERY_VMA_SHARED 0x08
#endif

#ifndef PROCMAP_QUERY_COVERING_OR_NEXT_VMA
#define PROCMAP_QUERY_COVERING_OR_NEXT_VMA 0x10
#endif

static _Atomic int map_at_works = -1; /* not asked yet */

/* The mapping that holds addr, or with next the first one after it. */
static int map_query(uintptr_t addr, bool next, struct map_entry *e)
{
	struct procmap_query q = {.size = sizeof(q),
				  .query_flags = next ? PROCMAP_QUERY_COVERING_OR_NEXT_VMA : 0,
				  .query_addr = addr};
	if (!atomic_load(&map_at_works))
		return -ENOTTY;
	open_self_files();
	if (maps_fd < 0)
		return -EACCES;
	if (sys_ioctl(maps_fd, PROCMAP_QUERY, &q) < 0) {
		int err = errno;
		if (err == ENOTTY || err == EINVAL) { /* a kernel before 6.11 */
			atomic_store(&map_at_works, 0);
			return -ENOTTY;
		}
		if (err == ENOENT)
			atomic_store(&map_at_works, 1); /* asked, and answered: nothing there */
		return -err;
	}
	atomic_store(&map_at_works, 1);
	*e = (struct map_entry){
	    .start = (uintptr_t)q.vma_start,
	    .end = (uintptr_t)q.vma_end,
	    .prot = (q.vma_flags & PROCMAP_QUERY_VMA_READABLE ? PROT_READ : 0) |
		    (q.vma_flags & PROCMAP_QUERY_VMA_WRITABLE ? PROT_WRITE : 0) |
		    (q.vma_flags & PROCMAP_QUERY_VMA_EXECUTABLE ? PROT_EXEC : 0),
	    .shared = q.vma_flags & PROCMAP_QUERY_VMA_SHARED,
	    .pgoff = q.vma_offset,
	    .dev = makedev(q.dev_major, q.dev_minor),
	    .ino = (ino_t)q.inode,
	    .anon = q.inode == 0,
	};
	return 0;
}

int prim_map_at(uintptr_t addr, struct map_entry *e)
{
	return map_query(addr, false, e);
}

int prim_maps_walk_range(uintptr_t start, uintptr_t end, maps_fn fn, void *arg)
{
	for (uintptr_t at = start; at < end;) {
		struct map_entry e;
		int err = map_query(at, true, &e);
		if (err == -ENOTTY && at == start)
			return prim_maps_walk(0, fn, arg); /* before Linux 6.11 */
		if (err == -ENOENT)
			return 0;
		if (err)
			return err;
		if (e.start >= end)
			return 0;
		if ((err = fn(&e, arg)))
			return err;
		at = e.end;
	}
	return 0;
}

bool prim_map_at_works(void)
{
	if (atomic_load(&map_at_works) < 0) {
		struct map_entry e;
		prim_map_at((uintptr_t)&map_at_works, &e);
	}
	return atomic_load(&map_at_works) == 1;
}

void prim_say(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0 && write(2, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1) < 0)
		return; /* nowhere to say it */
}

ssize_t prim_mem_read(uintptr_t addr, void *buf, size_t len)
{
	open_self_files();
	if (mem_fd < 0)
		return -EACCES;
	ssize_t n = sys_pread(mem_fd, buf, len, (off_t)addr);
	return n < 0 ? -errno : n;
}

/* This process's memory at src, read by the kernel (process_vm_readv):
 * -EFAULT where it is not readable, with no fault here and no file. */
ssize_t prim_self_read(void *dst, const void *src, size_t len)
{
	struct iovec local = {dst, len}, remote = {(void *)src, len};
	ssize_t n = prim_syscall(SYS_process_vm_readv, prim_getpid(), &local, 1, &remote, 1, 0);
	return n < 0 ? -errno : n;
}

ssize_t prim_mem_write(uintptr_t addr, const void *buf, size_t len)
{
	open_self_files();
	if (mem_fd < 0)
		return -EACCES;
	ssize_t n = pwrite(mem_fd, buf, len, (off_t)addr);
	return n < 0 ? -errno : n;
}

/* Reads a small /proc file whole into buf (NUL-terminated); its length. */
static ssize_t read_small(const char *path, char *buf, size_t len)
{
	int fd = sys_open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = sys_read(fd, buf, len - 1);
	int err = errno;
	sys_close(fd);
	if (n < 0)
		return -err;
	buf[n] = 0;
	return n;
}

bool prim_shmem_thp_possible(void)
{
	char buf[128];
	ssize_t n =
	    read_small("/sys/kernel/mm/transparent_hugepage/shmem_enabled", buf, sizeof(buf));
	if (n == -ENOENT)
		return false; /* no THP in this kernel */
	if (n <= 0)
		return true; /* unknown: the safe answer */
	/* advise: only for mappings that ask (MADV_HUGEPAGE), never a write */
	return strstr(buf, "[always]") || strstr(buf, "[within_size]") || strstr(buf, "[force]");
}

long prim_max_map_count(void)
{
	char buf[32];
	long v = 0;
	if (read_small("/proc/sys/vm/max_map_count", buf, sizeof(buf)) > 0)
		v = strtol(buf, NULL, 10);
	return v > 0 ? v : 65530; /* the kernel's default */
}

size_t prim_pmd_size(void)
{
	static _Atomic size_t cached;
	char buf[32];
	size_t v = atomic_load(&cached);
	if (v)
		return v;
	if (read_small("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", buf, sizeof(buf)) > 0)
		v = (size_t)strtoull(buf, NULL, 10);
	if (!v || (v & (v - 1)))
		v = 2UL << 20; /* x86-64's, and arm64's with 4 KiB pages */
	atomic_store(&cached, v);
	return v;
}

/* ---- the program's threads ---- */

/*
 * The library's threads (each engine's samepage-ksmd, the preload
 * library's samepage-wait) are pthreads, so the C library counts them: a
 * program whose main thread ended by pthread_exit() (or a raw exit, as a
 * SECCOMP_MODE_STRICT program's does) no longer ends when its last thread
 * does, and since the library's threads block the program's signals, a
 * SIGTERM no longer ends it either (a zombie main thread, a live process;
 * RELIABILITY.md 77).  So they say who they are, and look, once a second,
 * whether any thread of the program is left.
 */
#define LIB_THREADS 64
static _Atomic pid_t lib_tids[LIB_THREADS];

void prim_thread_mine(bool mine)
{
	pid_t tid = (pid_t)prim_syscall(SYS_gettid), want = mine ? 0 : tid;
	for (int i = 0; i < LIB_THREADS; i++) {
		pid_t t = want;
		if (atomic_compare_exchange_strong(&lib_tids[i], &t, mine ? tid : 0))
			return;
	}
}

static bool lib_tid(pid_t tid)
{
	for (int i = 0; i < LIB_THREADS; i++)
		if (atomic_load_explicit(&lib_tids[i], memory_order_relaxed) == tid)
			return true;
	return false;
}

struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

bool prim_program_gone(int *status)
{
	/* Once a second for the process, whichever of its threads asks. */
	static _Atomic uint64_t looked;
	uint64_t now = prim_now_ns(), last = atomic_load(&looked);
	if (now - last < 1000000000ULL || !atomic_compare_exchange_strong(&looked, &last, now))
		return false;
	char buf[1024];
	if (read_small("/proc/self/stat", buf, sizeof(buf)) <= 0)
		return false;
	/* The main thread's state (field 3) and exit code (field 52). */
	const char *p = strrchr(buf, ')');
	if (!p || (p[2] != 'Z' && p[2] != 'X'))
		return false;
	for (int f = 2; p && f < 52; f++)
		p = strchr(p + 1, ' ');
	*status = p ? (int)strtol(p + 1, NULL, 10) : 0;
	int fd = sys_open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return false;
	pid_t leader = prim_getpid();
	bool gone = true;
	for (long n; gone && (n = prim_syscall(SYS_getdents64, fd, buf, sizeof(buf))) > 0;) {
		for (long off = 0; off < n;) {
			const struct linux_dirent64 *d = (const void *)(buf + off);
			off += d->d_reclen;
			pid_t tid = (pid_t)strtol(d->d_name, NULL, 10);
			if (tid > 0 && tid != leader && !lib_tid(tid))
				gone = false; /* a thread of the program's */
		}
	}
	sys_close(fd);
	return gone;
}

void prim_end_as_program(int status)
{
	int sig = status & 0x7f;
	if (!sig)
		exit((status >> 8) & 0xff); /* as the C library's last thread does */
	sigset_t one;
	sigemptyset(&one);
	sigaddset(&one, sig);
	signal(sig, SIG_DFL);
	prim_sigmask(SIG_UNBLOCK, &one, NULL);
	prim_syscall(SYS_tgkill, prim_getpid(), prim_syscall(SYS_gettid), sig);
	prim_syscall(SYS_kill, prim_getpid(), SIGKILL);
	_exit(128 + sig);
}

/* Field `field` (counted from 1, as proc(5) does) of /proc/PID/stat, or 0. */
static unsigned long long stat_field(pid_t pid, int field)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (read_small(path, buf, sizeof(buf)) <= 0)
		return 0;
	/* The comm may hold spaces and parentheses: fields count from the
	 * last ')'.  state is field 3. */
	char *p = strrchr(buf, ')');
	for (int f = 2; p && f < field; f++)
		p = strchr(p + 1, ' ');
	return p ? strtoull(p + 1, NULL, 10) : 0;
}

unsigned long long prim_starttime(pid_t pid)
{
	return stat_field(pid, 22);
}

int prim_brk_range(uintptr_t *start, uintptr_t *end)
{
	*start = (uintptr_t)stat_field(prim_getpid(), 47); /* start_brk */
	*end = (uintptr_t)prim_syscall(SYS_brk, 0);	   /* the break: nothing moves */
	return *start && *end >= *start ? 0 : -ENOENT;
}

/* Calls fn on every complete line of the file, read with read(2) into a
 * fixed buffer: no allocation, so it is safe while the engine holds its
 * locks (and inside a fork handler). */
static int lines_walk(const char *path, int (*fn)(char *line, void *arg), void *arg)
{
	char buf[65536];
	size_t have = 0;
	int fd = sys_open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n = sys_read(fd, buf + have, sizeof(buf) - 1 - have);
		if (n < 0) {
			int err = -errno;
			sys_close(fd);
			return err;
		}
		have += (size_t)n;
		buf[have] = 0;
		char *line = buf, *nl;
		while ((nl = memchr(line, '\n', have - (size_t)(line - buf)))) {
			*nl = 0;
			int stop = fn(line, arg);
			if (stop) {
				sys_close(fd);
				return stop;
			}
			line = nl + 1;
		}
		size_t rest = have - (size_t)(line - buf);
		memmove(buf, line, rest);
		have = rest;
		if (n == 0)
			break;
	}
	sys_close(fd);
	return 0;
}

/* A number in base 16 or 10 ending at `end` (or, for end ' ', at the end
 * of the line); returns what follows, or NULL. */
static const char *maps_number(const char *s, unsigned base, char end, unsigned long long *v)
{
	unsigned long long x = 0;
	const char *p = s;
	for (;; p++) {
		unsigned d;
		if (*p >= '0' && *p <= '9')
			d = (unsigned)(*p - '0');
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			d = (unsigned)(*p - 'a' + 10);
		else
			break;
		if (x > (~0ULL - d) / base)
			return NULL; /* too big for 64 bits */
		x = x * base + d;
	}
	if (p == s || (*p != end && !(end == ' ' && *p == 0)))
		return NULL;
	*v = x;
	return *p ? p + 1 : p;
}

/* Is the mapping named s (after the inode's spaces) one of the kernel's
 * own ([vdso], [vvar], [vvar_vclock], [vsyscall], [uprobes]: VM_SPECIAL,
 * which its KSM leaves alone: some of their pages fault when read, the
 * others are the kernel's, and a merge would map the pool over the clock
 * the vDSO reads)?  Anonymous memory's names are [heap], [stack] and
 * [anon:NAME] (PR_SET_VMA_ANON_NAME). */
static bool kernel_mapping_name(const char *s)
{
	while (*s == ' ')
		s++;
	return *s == '[' && strncmp(s, "[heap]", 6) && strncmp(s, "[stack", 6) &&
	       strncmp(s, "[anon:", 6);
}

/* "start-end perms offset maj:min inode [path]", parsed by hand: a full
 * scan rereads the maps, hundreds of thousands of lines once merges have
 * split them, and sscanf(3) was a sixth of a scanner's time there (8
 * processes of 1 GiB in one domain: 38-40 s to converge, against 47-50). */
static bool parse_maps_line(const char *line, struct map_entry *e)
{
	unsigned long long start, end, off, maj, min, inode;
	const char *s = line, *perms;
	if (!(s = maps_number(s, 16, '-', &start)) || !(s = maps_number(s, 16, ' ', &end)))
		return false;
	perms = s;
	for (int k = 0; k < 4; k++)
		if (!s[k] || s[k] == ' ')
			return false;
	if (s[4] != ' ')
		return false;
	s += 5;
	if (!(s = maps_number(s, 16, ' ', &off)) || !(s = maps_number(s, 16, ':', &maj)) ||
	    !(s = maps_number(s, 16, ' ', &min)) || !(s = maps_number(s, 10, ' ', &inode)))
		return false;
	*e = (struct map_entry){
	    .start = (uintptr_t)start,
	    .end = (uintptr_t)end,
	    .prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
		    (perms[2] == 'x' ? PROT_EXEC : 0),
	    .shared = perms[3] == 's',
	    .pgoff = off,
	    .dev = makedev((unsigned)maj, (unsigned)min),
	    .ino = (ino_t)inode,
	    .anon = inode == 0 && !kernel_mapping_name(s),
	};
	return true;
}

struct maps_walk {
	maps_fn fn;
	void *arg;
};

static int maps_line(char *line, void *arg)
{
	struct maps_walk *w = arg;
	struct map_entry e;
	return parse_maps_line(line, &e) ? w->fn(&e, w->arg) : 0;
}

int prim_maps_walk(pid_t pid, maps_fn fn, void *arg)
{
	char path[64];
	struct maps_walk w = {fn, arg};
	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/maps");
	return lines_walk(path, maps_line, &w);
}

struct vmflags_walk {
	vmflags_fn fn;
	void *arg;
	struct map_entry e;
};

static int smaps_line(char *line, void *arg)
{
	struct vmflags_walk *w = arg;
	struct map_entry e;
	if (!strncmp(line, "VmFlags:", 8))
		return w->fn(&w->e, line + 8, w->arg);
	if (parse_maps_line(line, &e))
		w->e = e;
	return 0;
}

int prim_vmflags_walk(vmflags_fn fn, void *arg)
{
	struct vmflags_walk w = {.fn = fn, .arg = arg};
	return lines_walk("/proc/self/smaps", smaps_line, &w);
}

/* ---- the control socket ---- */

int prim_unix_peer(int fd, uid_t *peer_uid)
{
	struct ucred cr;
	socklen_t l = sizeof(cr);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l) < 0)
		return -errno;
	*peer_uid = cr.uid;
	return 0;
}

int prim_unix_connect(const char *path, uid_t *peer_uid)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, path);
	fd_make_begin();
	int fd = fd_make_end(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
	if (fd < 0)
		return -errno;
	int err = connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ? -errno : 0;
	if (!err)
		err = prim_unix_peer(fd, peer_uid);
	if (err) {
		sys_close(fd);
		return err;
	}
	return fd;
}

int prim_sock_timeout(int fd, unsigned ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)))
		return -errno;
	return 0;
}

int prim_send(int fd, const void *buf, size_t len, bool dontwait)
{
	/* A socket with a timeout (prim_sock_timeout) is never restarted
	 * after a signal handler, SA_RESTART or not: again. */
	ssize_t n;
	do
		n = send(fd, buf, len, MSG_NOSIGNAL | (dontwait ? MSG_DONTWAIT : 0));
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : 0;
}

ssize_t prim_recv_fds(int fd, void *buf, size_t len, bool dontwait, int *fds, int nfds,
		      int *nfds_out)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 8)];
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr msg = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	int got = 0;
	ssize_t n;
	fd_make_begin(); /* descriptors may come */
	do		 /* again after a signal handler, as prim_send() */
		n = prim_syscall(SYS_recvmsg, fd, &msg,
				 MSG_CMSG_CLOEXEC | (dontwait ? MSG_DONTWAIT : 0));
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		int err = -errno;
		fd_make_end(-1);
		return err;
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (int i = 0; i < k; i++) {
			int f;
			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			fd_brief(f);
			if (got < nfds)
				fds[got++] = f;
			else
				sys_close(f);
		}
	}
	fd_make_end(-1); /* each marked above */
	*nfds_out = got;
	return n;
}

bool prim_readable(int fd, unsigned ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int n;
	while ((n = poll(&p, 1, (int)ms)) < 0 && errno == EINTR)
		;
	return n != 0; /* readable, closed, or an error the read will see */
}

bool prim_hung_up(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLRDHUP};
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR));
}

/*
 * fork's prepare handlers: takes m, unless the calling thread holds it
 * already, which only a signal handler that forked can find (a thread
 * interrupted inside one of the library's short sections, which it
 * finishes when the handler returns, in the parent and in the child;
 * taken again, the process waited for itself for ever).  entered: the
 * thread was between its lock and unlock calls.  False if not taken.
 */
bool prim_fork_mutex_take(pthread_mutex_t *m, bool entered)
{
	if (!entered) {
		pthread_mutex_lock(m);
		return true;
	}
	for (int tries = 0;; tries++) {
		if (pthread_mutex_trylock(m) == 0)
			return true; /* interrupted before it took the lock */
#ifdef __GLIBC__
		int owner = m->__data.__owner, self = (int)prim_syscall(SYS_gettid);
		if (owner == self)
			return false;
		if (owner) { /* another thread's: this one waited for it */
			pthread_mutex_lock(m);
			return true;
		}
		/* Taken, its owner not written (or already cleared): another
		 * thread's for a few instructions, or this one's, interrupted
		 * there. */
		if (tries >= 2000)
			return false;
		if (tries % 500 == 499)
			sched_yield(); /* the other thread may have been preempted there */
#else
		(void)tries;
		return false;
#endif
	}
}

/* The futex word of m (glibc's): its owner's thread id, FUTEX_WAITERS. */
static int mutex_word(pthread_mutex_t *m)
{
#ifdef __GLIBC__
	return atomic_load((_Atomic int *)&m->__data.__lock);
#else
	(void)m;
	return FUTEX_TID_MASK; /* held, nobody waits: no hand-over */
#endif
}

bool prim_mutex_waiters(pthread_mutex_t *m)
{
	return mutex_word(m) & FUTEX_WAITERS;
}

bool prim_mutex_held(pthread_mutex_t *m)
{
	return mutex_word(m) & FUTEX_TID_MASK;
}

/* In a debug build, a pause of the given microseconds where
 * SAMEPAGE_DEBUG_PAUSE=point:microseconds[,point:microseconds...] names
 * this point: a test widens the window of a race it means to show closed
 * (a few microseconds otherwise).  Nothing in a release build.  Here, at
 * the bottom of the layers, so that every file may pause (guard.c's
 * window_open() does). */
void debug_pause(const char *point)
{
#ifndef SAMEPAGE_DEBUG
#define SAMEPAGE_DEBUG 0
#endif
	if (SAMEPAGE_DEBUG < 2)
		return;
	size_t n = strlen(point);
	for (const char *w = getenv("SAMEPAGE_DEBUG_PAUSE"); w && *w; w += strcspn(w, ",")) {
		w += *w == ',';
		if (strncmp(w, point, n) || w[n] != ':')
			continue;
		long us = atol(w + n + 1);
		struct timespec t = {us / 1000000, us % 1000000 * 1000};
		if (us > 0)
			nanosleep(&t, NULL);
		return;
	}
}
