// SPDX-License-Identifier: MIT
/*
 * workload.c - an unmodified program (it knows nothing of libsamepage) for
 * the tests of `ksmctl --user run` (test_preload.c).
 *
 *   workload fill MIB BYTE [madvise|prctl|dontfork|syscall]
 *       maps MIB of private anonymous memory filled with BYTE (optionally
 *       marked MADV_MERGEABLE, merge-any by prctl, or MADV_DONTFORK then
 *       MADV_MERGEABLE as QEMU does with guest RAM; or "distinct": every
 *       page differs, the same pages in every process), says "ready" on
 *       stdout, waits for a line on stdin, checks every byte, exits 0 if
 *       all are right.  "syscall": marked MADV_MERGEABLE by syscall(2),
 *       and its first half discarded by syscall(SYS_madvise, MADV_DONTNEED)
 *       before the check (it must read zeros)
 *   workload fork MIB BYTE
 *       the same, in a child of a fork (the parent waits for it)
 *   workload exec MIB BYTE
 *       execs itself as "fill MIB BYTE" (the environment goes with it)
 *   workload malloc SECONDS THREADS
 *       threads allocate, fill, check and free blocks of many sizes with
 *       malloc, calloc and realloc (calloc's must read zeros), for SECONDS;
 *       exits 0 if no block ever read wrong, 1 with the first wrong one
 *   workload blocks MIB BYTE
 *       as fill, in blocks of 1 MiB that malloc maps by itself
 *   workload reuse SECONDS THREADS
 *       threads free blocks that malloc mapped by themselves and allocate
 *       them again (often at the same address), each filled with one of a
 *       few contents so that they merge, for SECONDS: exits 0 if no block
 *       ever read other than what was written, 1 with the first wrong one
 *   workload kvm
 *       opens /dev/kvm by five names (/dev/kvm, /dev/./kvm, kvm in /dev
 *       by openat and by a relative path, /proc/self/cwd/kvm): prints the
 *       errno of each (0: opened), exits 0 if any opened, 1 if none did
 *   workload dma
 *       asks VFIO's and iommufd's device DMA mapping of its memory (of
 *       /dev/null): exits 0 if both failed with ENOTTY (the kernel's
 *       answer), 1 if both were refused with EPERM, 3 else
 *   workload uring
 *       sets up an io_uring ring through liburing.so.2: exits 0 if it
 *       was made, 1 if refused with EPERM, 2 without liburing, 3 else
 *   workload rawcalls
 *       through syscall(2): sets up an io_uring ring, opens /dev/kvm with
 *       openat and openat2, blocks SIGSEGV, destroys AIO context 0, closes
 *       descriptor -1; prints
 *       the errno of each (0: done; for SIGSEGV, 1 if it is blocked after),
 *       exits 0
 *   workload libaio
 *       reads a page of a file into its memory through libaio.so.1
 *       (io_setup, io_submit, io_getevents, io_destroy): exits 0 if it
 *       read it, 2 without libaio, 1 else
 *   workload open
 *       opens /dev/null: exits 0 if it did
 *   workload opennull
 *       open and openat of NULL and of an unmapped address fail with
 *       EFAULT, as the kernel says: exits 0 if all four did
 *   workload sigwait
 *       blocks SIGUSR1 (the engine's thread is already running), sends it
 *       to itself and takes it with sigwait: exits 0; killed by it (128+10)
 *       if another thread took it
 *   workload forks N
 *       threads call madvise(MADV_MERGEABLE/MADV_UNMERGEABLE), read(2),
 *       mmap and munmap without pause while the main thread forks N
 *       times; each child makes the same calls once and exits: exits 0 if
 *       every child did, 1 if one hung (20 s) or failed
 *   workload kill SIGNAL
 *       fills 8 MiB, lets the engine work a while, then sends itself
 *       SIGNAL with kill(2): dies of it as any program would, or exits 0
 *       if it survived
 *   workload altstack ROUNDS
 *       16 mergeable pages of one content, the upper 8 its signal stack
 *       (set with syscall(SYS_sigaltstack)), written back to that content
 *       between ROUNDS raise(SIGUSR1)s at random intervals under 1 ms:
 *       exits 0 if every signal was handled (killed by SIGSEGV if a
 *       signal's frame met a merge window)
 *   workload seal
 *       16 mergeable pages of one content, once merged (a mapping of a
 *       file in its maps: 4 if not within 10 s) sealed with
 *       syscall(SYS_mseal) (2 without mseal), then discarded: exits 0 if
 *       the discard worked and they read zeros, 1 if not (RELIABILITY.md
 *       113)
 */
#include <dlfcn.h>
#include <linux/vfio.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/aio_abi.h>
#include <linux/io_uring.h>
#include <linux/openat2.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG 4096UL

/* Says "ready" and waits for a line on stdin: false at its end. */
static void *last_worker(void *arg)
{
	(void)arg;
	usleep(100000); /* after the main thread's end */
	printf("the last thread\n");
	return NULL;
}

static bool ready_then_wait(void)
{
	char line[16];
	printf("ready\n");
	fflush(stdout);
	return fgets(line, sizeof(line), stdin) != NULL;
}

/* n private anonymous pages of one content, marked MADV_MERGEABLE (NULL
 * if they could not be mapped). */
static char *mergeable_pages(size_t n, int byte)
{
	char *p = mmap(NULL, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	memset(p, byte, n * PG);
	madvise(p, n * PG, MADV_MERGEABLE);
	return p;
}

static volatile sig_atomic_t alt_handled;

static void alt_handler(int sig)
{
	(void)sig;
	alt_handled++;
}

static int altstack(long rounds)
{
	const size_t n = 16;
	char *p = mergeable_pages(n, 'a');
	if (!p)
		return 2;
	usleep(100000); /* merged meanwhile */
	stack_t ss = {.ss_sp = p + n / 2 * PG, .ss_size = n / 2 * PG};
	struct sigaction sa = {.sa_handler = alt_handler, .sa_flags = SA_ONSTACK};
	if (syscall(SYS_sigaltstack, &ss, NULL) || sigaction(SIGUSR1, &sa, NULL))
		return 3;
	unsigned seed = 1;
	for (long i = 0; i < rounds; i++) {
		memset(p + n / 2 * PG, 'a', n / 2 * PG);
		usleep((useconds_t)(rand_r(&seed) % 1000));
		raise(SIGUSR1);
	}
	return alt_handled == rounds ? 0 : 1;
}

/* Whether the page at p is a mapping of a file (merged: the pool's). */
static bool file_mapped(const char *p)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	bool file = false;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long s, e, ino;
		if (sscanf(line, "%lx-%lx %*s %*s %*s %lu", &s, &e, &ino) == 3 &&
		    s <= (uintptr_t)p && (uintptr_t)p < e)
			file = ino != 0;
	}
	if (f)
		fclose(f);
	return file;
}

static int seal(void)
{
	const size_t n = 16;
	char *p = mergeable_pages(n, 's');
	if (!p)
		return 2;
	for (int i = 0; i < 200 && !file_mapped(p); i++)
		usleep(50000); /* merged meanwhile */
	if (!file_mapped(p))
		return 4;
	if (syscall(462 /* SYS_mseal */, p, n * PG, 0UL))
		return errno == ENOSYS ? 2 : 3;
	if (madvise(p, n * PG, MADV_DONTNEED))
		return 1;
	for (size_t i = 0; i < n * PG; i++)
		if (p[i])
			return 1;
	return 0;
}

static int fill(size_t mib, int byte, const char *how)
{
	size_t len = mib << 20;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 2;
	madvise(p, len, MADV_NOHUGEPAGE);
	memset(p, byte, len);
	bool distinct = how && !strcmp(how, "distinct");
	for (size_t i = 0; distinct && i < len / PG; i++)
		memcpy(p + i * PG, &i, sizeof(i)); /* pages differ, the same in every process */
	if (how && !strcmp(how, "dontfork") && madvise(p, len, MADV_DONTFORK))
		return 3;
	if (how && (!strcmp(how, "madvise") || !strcmp(how, "dontfork")) &&
	    madvise(p, len, MADV_MERGEABLE))
		return 4;
	bool raw = how && !strcmp(how, "syscall");
	if (raw && syscall(SYS_madvise, p, len, MADV_MERGEABLE))
		return 4;
	/* The kernel's rules (Linux 6.18, checked on this machine): any
	 * non-zero argument turns merge-any on; unused arguments must be 0,
	 * PR_GET_MEMORY_MERGE's too. */
	if (how && !strcmp(how, "prctl") &&
	    (prctl(67 /* PR_SET_MEMORY_MERGE */, 2, 0, 0, 0) ||
	     prctl(68 /* PR_GET_MEMORY_MERGE */, 0, 0, 0, 0) != 1 || prctl(68, 1, 0, 0, 0) != -1 ||
	     errno != EINVAL || prctl(67, 1, 1, 0, 0) != -1 || errno != EINVAL))
		return 5;
	if (!ready_then_wait())
		return 6;
	size_t zeroed = raw ? len / 2 : 0;
	if (raw && syscall(SYS_madvise, p, zeroed, MADV_DONTNEED))
		return 7;
	for (size_t i = 0; i < len; i++) {
		char want = i < zeroed ? 0 : (char)byte;
		size_t pg = i / PG, off = i % PG;
		if (distinct && off < sizeof(pg))
			want = ((char *)&pg)[off];
		if (p[i] != want) {
			fprintf(stderr, "workload: byte %zu reads %d, not %d\n", i, p[i], want);
			return 1;
		}
	}
	return 0;
}

/* malloc maps a block by itself from here, and keeps doing so: freeing
 * one no longer raises the threshold (M_MMAP_THRESHOLD, mallopt(3)). */
#define BLOCK (1UL << 20)
static void blocks_mapped(void)
{
	mallopt(M_MMAP_THRESHOLD, 256 << 10);
}

static int fill_blocks(size_t mib, int byte)
{
	char **b = calloc(mib, sizeof(*b));
	if (!b)
		return 2;
	blocks_mapped();
	for (size_t k = 0; k < mib; k++) {
		if (!(b[k] = malloc(BLOCK)))
			return 2;
		memset(b[k], byte, BLOCK);
	}
	if (!ready_then_wait())
		return 6;
	for (size_t k = 0; k < mib; k++) {
		for (size_t i = 0; i < BLOCK; i++)
			if (b[k][i] != (char)byte) {
				fprintf(stderr,
					"workload: byte %zu of block %zu reads %d, not %d\n", i, k,
					b[k][i], byte);
				return 1;
			}
		free(b[k]);
	}
	free(b);
	return 0;
}

static atomic_int bad;
static double deadline;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Each block holds its own pattern: byte i of block b is (b + i) * 31. */
static bool holds(const unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i += 61)
		if (p[i] != (unsigned char)((seed + i) * 31))
			return false;
	return true;
}

static void put(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)((seed + i) * 31);
}

static void *churn(void *arg)
{
	enum { SLOTS = 256 };
	unsigned char *blk[SLOTS] = {0};
	size_t len[SLOTS] = {0};
	unsigned seed[SLOTS] = {0};
	uint64_t s = 0x9e3779b97f4a7c15ULL * ((uintptr_t)arg + 1);
	while (now() < deadline && !atomic_load(&bad)) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		int k = (int)(s % SLOTS);
		if (blk[k] && !holds(blk[k], len[k], seed[k])) {
			fprintf(stderr, "workload: a block of %zu bytes changed\n", len[k]);
			atomic_store(&bad, 1);
			break;
		}
		/* sizes from 16 bytes to 4 MiB: the small bins, the arenas'
		 * heaps, and chunks malloc maps by themselves */
		size_t n = (size_t)16 << (s >> 20) % 19;
		n += (s >> 40) % n;
		switch ((s >> 8) % 3) {
		case 0:
			free(blk[k]);
			blk[k] = calloc(1, n);
			if (blk[k])
				for (size_t i = 0; i < n; i += 97)
					if (blk[k][i]) {
						fprintf(stderr,
							"workload: calloc of %zu bytes "
							"read %d at %zu\n",
							n, blk[k][i], i);
						atomic_store(&bad, 1);
					}
			break;
		case 1:
			free(blk[k]);
			blk[k] = malloc(n);
			break;
		default:
			if (blk[k]) {
				unsigned char *r = realloc(blk[k], n);
				if (r && !holds(r, n < len[k] ? n : len[k], seed[k])) {
					fprintf(stderr, "workload: realloc lost a block\n");
					atomic_store(&bad, 1);
				}
				blk[k] = r;
			} else {
				blk[k] = malloc(n);
			}
		}
		if (!blk[k])
			continue;
		len[k] = n;
		seed[k] = (unsigned)(s >> 32) % 4; /* few contents: blocks merge */
		put(blk[k], n, seed[k]);
		if (s % 1024 == 0)
			malloc_trim(0); /* what QEMU's RCU thread does */
	}
	for (int k = 0; k < SLOTS; k++)
		free(blk[k]);
	return NULL;
}

/* Is every page of block p (len bytes) what put() wrote with seed?  Says
 * where it is not, and what the mapping there is. */
static bool block_holds(const unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i += PG / 2) {
		if (p[i] == (unsigned char)((seed + i) * 31) &&
		    p[i + 1] == (unsigned char)((seed + i + 1) * 31))
			continue;
		uintptr_t at = (uintptr_t)(p + i), s, e;
		fprintf(stderr, "workload: block %p of seed %u: byte %zu reads %d, not %d\n",
			(void *)p, seed, i, p[i], (unsigned char)((seed + i) * 31));
		char line[512];
		FILE *f = fopen("/proc/self/maps", "r");
		while (f && fgets(line, sizeof(line), f))
			if (sscanf(line, "%lx-%lx", &s, &e) == 2 && s <= at && at < e)
				fprintf(stderr, "workload: mapped there: %s", line);
		if (f)
			fclose(f);
		return false;
	}
	return true;
}

/* A thread of `workload reuse`: blocks freed and allocated again while the
 * engine merges them.  A merge whose window met a free and the next
 * malloc at the same address, and a write, would put back the content the
 * merge compared: the block then reads another seed's pattern. */
static void *reuse(void *arg)
{
	enum { SLOTS = 8 };
	unsigned char *blk[SLOTS] = {0};
	unsigned seed[SLOTS] = {0};
	uint64_t s = 0x9e3779b97f4a7c15ULL * ((uintptr_t)arg + 1);
	for (unsigned long n = 0; now() < deadline && !atomic_load(&bad); n++) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		int k = (int)(s % SLOTS);
		if (blk[k] && !block_holds(blk[k], BLOCK, seed[k])) {
			atomic_store(&bad, 1);
			break;
		}
		free(blk[k]);
		if (!(blk[k] = malloc(BLOCK)))
			continue;
		seed[k] = (unsigned)(s >> 32) % 3;
		put(blk[k], BLOCK, seed[k]);
		if (n % 16 == 0)
			usleep(1000); /* some blocks live long enough to merge */
	}
	for (int k = 0; k < SLOTS; k++)
		free(blk[k]);
	return NULL;
}

/* len bytes of one content, mapped for merge-any to take. */
static char *alike_memory(size_t len)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	return memset(p, 7, len);
}

static atomic_int forking;

/* What the threads of a merging program do while another one forks: each
 * call goes through the library's wrappers and locks. */
static int busy_reads(int fd, char *p)
{
	return read(fd, p, 64) == 64 ? 0 : 1;
}

static int busy_maps(void)
{
	void *m = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED || madvise(m, 4 * PG, MADV_MERGEABLE) ||
	    madvise(m, 4 * PG, MADV_UNMERGEABLE) || munmap(m, 4 * PG))
		return 1;
	return 0;
}

/* Thread 0 reads, thread 1 maps and advises. */
static void *busy_loop(void *arg)
{
	char *p = arg;
	int fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	bool maps = ((uintptr_t)p / PG) & 1;
	while (fd >= 0 && atomic_load(&forking))
		if (maps ? busy_maps() : busy_reads(fd, p))
			break;
	close(fd);
	return NULL;
}

static int forks(int n)
{
	char *p = alike_memory(1UL << 20);
	if (!p)
		return 2;
	pthread_t t[2];
	atomic_store(&forking, 1);
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, busy_loop, p + i * PG);
	int failed = 0;
	for (int k = 0; k < n && !failed; k++) {
		pid_t pid = fork();
		if (pid < 0)
			return 2;
		if (pid == 0) {
			int fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
			_exit(fd < 0 || busy_reads(fd, p + 2 * PG) || busy_maps());
		}
		int st = 0, ms = 0;
		pid_t got;
		while ((got = waitpid(pid, &st, WNOHANG)) == 0 && ms++ < 20000)
			usleep(1000);
		if (got == 0) {
			fprintf(stderr, "workload: fork %d: the child hung\n", k + 1);
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			failed = 1;
		} else if (!WIFEXITED(st) || WEXITSTATUS(st)) {
			fprintf(stderr, "workload: fork %d: the child failed (status %#x)\n", k + 1,
				st);
			failed = 1;
		}
	}
	atomic_store(&forking, 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	return failed;
}

#ifdef WORKLOAD_NOPIE
/* Built without PIE, the program takes free's and realloc's addresses in
 * its code, as Node.js's builds do: the linker then makes the program's own
 * PLT entries their addresses, which dlsym() returns for every object. */
static void (*volatile own_free)(void *);
static void *(*volatile own_realloc)(void *, size_t);
#endif

int main(int argc, char **argv)
{
#ifdef WORKLOAD_NOPIE
	own_free = free;
	own_realloc = realloc;
#endif
	if (argc >= 4 && !strcmp(argv[1], "fill"))
		return fill(strtoul(argv[2], NULL, 10), atoi(argv[3]), argc > 4 ? argv[4] : NULL);
	if (argc >= 4 && !strcmp(argv[1], "fork")) {
		pid_t pid = fork();
		if (pid == 0)
			return fill(strtoul(argv[2], NULL, 10), atoi(argv[3]), NULL);
		int st;
		waitpid(pid, &st, 0);
		return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
	}
	if (argc >= 4 && !strcmp(argv[1], "forklater")) {
		/* Fills MIB (marked mergeable with a fourth argument "madvise"),
		 * then forks at the first line read: the child writes it all
		 * again (its own copy) and, without "madvise", fills a new
		 * mapping of MIB too; then as fill(). */
		size_t len = strtoul(argv[2], NULL, 10) << 20;
		int byte = atoi(argv[3]);
		bool marked = argc >= 5 && !strcmp(argv[4], "madvise");
		char *p =
		    mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return 2;
		madvise(p, len, MADV_NOHUGEPAGE);
		memset(p, byte, len);
		if (marked && madvise(p, len, MADV_MERGEABLE))
			return 4;
		if (!ready_then_wait())
			return 6;
		pid_t pid = fork();
		if (pid > 0) {
			int st;
			waitpid(pid, &st, 0);
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
		}
		char *q = marked ? NULL
				 : mmap(NULL, len, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (q == MAP_FAILED)
			return 2;
		if (marked) { /* an interposed call: the child's engine is made */
			void *one = mmap(NULL, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (one != MAP_FAILED)
				munmap(one, PG);
		} else
			madvise(q, len, MADV_NOHUGEPAGE), memset(q, byte, len);
		for (size_t i = 0; i < len; i += PG)
			p[i] = (char)byte; /* each page the child's own */
		if (!ready_then_wait())
			return 6;
		for (size_t i = 0; i < len; i++)
			if (p[i] != (char)byte || (q && q[i] != (char)byte)) {
				fprintf(stderr, "workload: byte %zu reads %d, not %d\n", i,
					p[i] != (char)byte ? p[i] : q[i], byte);
				return 1;
			}
		return 0;
	}
	if (argc >= 4 && !strcmp(argv[1], "exec")) {
		char *args[] = {argv[0], "fill", argv[2], argv[3], NULL};
		execv("/proc/self/exe", args);
		return 127;
	}
	if (argc >= 4 && !strcmp(argv[1], "blocks"))
		return fill_blocks(strtoul(argv[2], NULL, 10), atoi(argv[3]));
	if (argc >= 4 && (!strcmp(argv[1], "malloc") || !strcmp(argv[1], "reuse"))) {
		bool blocks = !strcmp(argv[1], "reuse");
		int n = atoi(argv[3]);
		pthread_t t[64];
		deadline = now() + atof(argv[2]);
		if (blocks)
			blocks_mapped();
		for (long i = 0; i < n && i < 64; i++)
			pthread_create(&t[i], NULL, blocks ? reuse : churn, (void *)i);
		for (int i = 0; i < n && i < 64; i++)
			pthread_join(t[i], NULL);
		return atomic_load(&bad) ? 1 : 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "kvm")) {
		/* /dev/kvm by every name a program may give it: the errno of
		 * each, 0 where it opened. */
		int dev = open("/dev", O_RDONLY | O_DIRECTORY), fds[5], opened = 0;
		fds[0] = open("/dev/kvm", O_RDWR);
		fds[1] = open("/dev/./kvm", O_RDWR);
		fds[2] = openat(dev, "kvm", O_RDWR);
		fds[3] = chdir("/dev") == 0 ? open("kvm", O_RDWR) : -1;
		fds[4] = open("/proc/self/cwd/kvm", O_RDWR);
		for (int i = 0; i < 5; i++) {
			printf("%d%c", fds[i] < 0 ? errno : 0, i < 4 ? ' ' : '\n');
			if (fds[i] >= 0)
				close(fds[i]), opened++;
		}
		return opened ? 0 : 1;
	}
	if (argc >= 2 && !strcmp(argv[1], "dma")) {
		/* A device DMA mapping of 1 MiB, VFIO's and iommufd's, asked
		 * of /dev/null: the kernel says ENOTTY, the library EPERM. */
		static char buf[1 << 20];
		struct vfio_iommu_type1_dma_map map = {
		    .argsz = sizeof(map),
		    .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		    .vaddr = (uintptr_t)buf,
		    .size = sizeof(buf),
		};
		uint64_t ioas[6] = {sizeof(ioas), 0, 0, (uintptr_t)buf, sizeof(buf), 0};
		int fd = open("/dev/null", O_RDWR), e[2];
		e[0] = ioctl(fd, VFIO_IOMMU_MAP_DMA, &map) < 0 ? errno : 0;
		e[1] = ioctl(fd, _IO(';', 0x85), ioas) < 0 ? errno : 0; /* IOMMU_IOAS_MAP */
		return e[0] == ENOTTY && e[1] == ENOTTY ? 0
		       : e[0] == EPERM && e[1] == EPERM ? 1
							: 3;
	}
#ifndef WORKLOAD_STATIC
	if (argc >= 2 && !strcmp(argv[1], "uring")) {
		/* As a program linked with liburing calls it (the global
		 * scope, where a preloaded library comes first). */
		if (!dlopen("liburing.so.2", RTLD_NOW | RTLD_GLOBAL))
			return 2;
		int (*init)(unsigned, void *, unsigned) =
		    (int (*)(unsigned, void *, unsigned))dlsym(RTLD_DEFAULT, "io_uring_queue_init");
		void (*fini)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "io_uring_queue_exit");
		static _Alignas(64) char ring[4096]; /* struct io_uring, 216 bytes in 2.3 */
		int rc = init && fini ? init(8, ring, 0) : -ENOSYS;
		if (rc >= 0)
			fini(ring);
		return rc >= 0 ? 0 : rc == -EPERM ? 1 : 3;
	}
	if (argc >= 2 && !strcmp(argv[1], "libaio")) {
		/* libaio makes its calls with syscall(): under the library's
		 * syscall(), which routes them to its io_submit wrapper, that
		 * came back into libaio without end (a stack overflow). */
		/* As a program linked with libaio calls it (QEMU): the global
		 * scope, where the preloaded library's wrappers come first. */
		void *aio = dlopen("libaio.so.1", RTLD_NOW | RTLD_GLOBAL);
		if (!aio)
			return 2;
		typedef int (*setup_fn)(int, aio_context_t *);
		typedef int (*submit_fn)(aio_context_t, long, struct iocb **);
		typedef int (*getevents_fn)(aio_context_t, long, long, struct io_event *,
					    struct timespec *);
		typedef int (*destroy_fn)(aio_context_t);
		setup_fn setup = (setup_fn)dlsym(RTLD_DEFAULT, "io_setup");
		submit_fn submit = (submit_fn)dlsym(RTLD_DEFAULT, "io_submit");
		getevents_fn getev = (getevents_fn)dlsym(RTLD_DEFAULT, "io_getevents");
		destroy_fn destroy = (destroy_fn)dlsym(RTLD_DEFAULT, "io_destroy");
		static char src[PG], dst[PG];
		memset(src, 'a', PG);
		int fd = memfd_create("aio", 0);
		aio_context_t ctx = 0;
		struct iocb cb = {.aio_lio_opcode = IOCB_CMD_PREAD,
				  .aio_fildes = (uint32_t)fd,
				  .aio_buf = (uintptr_t)dst,
				  .aio_nbytes = PG};
		struct iocb *cbs[1] = {&cb};
		struct io_event ev;
		if (fd < 0 || write(fd, src, PG) != (ssize_t)PG || !setup || !submit || !getev ||
		    !destroy || setup(4, &ctx) || submit(ctx, 1, cbs) != 1 ||
		    getev(ctx, 1, 1, &ev, NULL) != 1 || ev.res != (long)PG || destroy(ctx))
			return 1;
		return memcmp(src, dst, PG) ? 1 : 0;
	}
#endif
	if (argc >= 2 && !strcmp(argv[1], "rawcalls")) {
		/* Through syscall(2), as programs that make their own calls
		 * do (libuv's io_uring, for one). */
		struct io_uring_params prm = {0};
		long ring = syscall(SYS_io_uring_setup, 4, &prm);
		int e_ring = ring < 0 ? errno : 0;
		long kvm = syscall(SYS_openat, AT_FDCWD, "/dev/kvm", O_RDWR);
		int e_kvm = kvm < 0 ? errno : 0;
		struct open_how oh = {.flags = O_RDWR};
		long kvm2 = syscall(SYS_openat2, AT_FDCWD, "/dev/kvm", &oh, sizeof(oh));
		int e_kvm2 = kvm2 < 0 ? errno : 0;
		uint64_t segv = 1ULL << (SIGSEGV - 1), mask = 0;
		syscall(SYS_rt_sigprocmask, SIG_BLOCK, &segv, NULL, 8);
		syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &mask, 8);
		syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &segv, NULL, 8);
		int e_aio = syscall(SYS_io_destroy, 0) < 0 ? errno : 0;
		int e_close = syscall(SYS_close, -1) < 0 ? errno : 0; /* not routed: the kernel's */
		printf("%d %d %d %d %d %d\n", e_ring, e_kvm, e_kvm2,
		       (int)(mask >> (SIGSEGV - 1) & 1), e_aio, e_close);
		for (long fd = ring; fd >= 0; fd = -1)
			close((int)fd);
		if (kvm >= 0)
			close((int)kvm);
		if (kvm2 >= 0)
			close((int)kvm2);
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "mapsgrep")) {
		/* Whether this process runs on the preload library, and
		 * merge-any's state. */
		FILE *f = fopen("/proc/self/maps", "r");
		char line[512];
		int on = 0;
		while (f && fgets(line, sizeof(line), f))
			on |= strstr(line, "libsamepage-preload") != NULL;
		if (f)
			fclose(f);
		printf("preload=%d any=%d\n", on, prctl(68 /* PR_GET_MEMORY_MERGE */, 0, 0, 0, 0));
		return 0;
	}
	if (argc >= 3 && !strcmp(argv[1], "execenv")) {
		/* This program again (mapsgrep), by argv[2]'s way, with an
		 * environment of its own. */
		const char *how = argv[2];
		char *args[] = {argv[0], "mapsgrep", NULL}, *env[] = {"X=1", NULL};
		fflush(stdout);
		if (!strcmp(how, "anyoff")) {
			if (prctl(67 /* PR_SET_MEMORY_MERGE */, 0, 0, 0, 0))
				return 3;
			execv("/proc/self/exe", args);
		} else if (!strcmp(how, "execve")) {
			execve("/proc/self/exe", args, env);
		} else if (!strcmp(how, "execle")) {
			execle("/proc/self/exe", argv[0], "mapsgrep", (char *)NULL, env);
		} else if (!strcmp(how, "execvpe")) {
			execvpe("/proc/self/exe", args, env);
		} else if (!strcmp(how, "fexecve")) {
			int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
			fexecve(fd, args, env);
		} else if (!strcmp(how, "clearenv")) {
			clearenv();
			execv("/proc/self/exe", args);
		} else if (!strcmp(how, "syscall")) {
			syscall(SYS_execve, "/proc/self/exe", args, env);
		} else if (!strcmp(how, "posix_spawn")) {
			pid_t pid;
			int st;
			if (posix_spawn(&pid, "/proc/self/exe", NULL, NULL, args, env))
				return 4;
			waitpid(pid, &st, 0);
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
		} else if (!strcmp(how, "vfork")) {
			pid_t pid = vfork();
			if (pid == 0) {
				execve("/proc/self/exe", args, env);
				_exit(127);
			}
			int st;
			waitpid(pid, &st, 0);
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
		}
		return 127;
	}
	if (argc >= 2 && !strcmp(argv[1], "mainexit")) {
		/* The main thread ends by pthread_exit(); a worker prints a
		 * line (not flushed: the C library's exit() at the last
		 * thread's end flushes it) and returns. */
		pthread_t t;
		if (pthread_create(&t, NULL, last_worker, NULL))
			return 2;
		pthread_exit(NULL);
	}
	if (argc >= 3 && !strcmp(argv[1], "strict")) {
		/* SECCOMP_MODE_STRICT: read, write, _exit and sigreturn only;
		 * its end is the exit system call of its one thread. */
		if (prctl(PR_SET_SECCOMP, 1 /* SECCOMP_MODE_STRICT */))
			return 2;
		if (write(1, "strict\n", 7) != 7)
			syscall(SYS_exit, 4);
		syscall(SYS_exit, atoi(argv[2]));
	}
	if (argc >= 2 && !strcmp(argv[1], "dupown")) {
		/* dup2() and dup3(), and syscall()'s, onto the library's pool:
		 * their errno each (EBUSY: refused). */
		int pool = -1, null = open("/dev/null", O_RDONLY | O_CLOEXEC);
		char path[64], target[256];
		for (int fd = 3; fd < 4096 && pool < 0; fd++) {
			snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
			ssize_t len = readlink(path, target, sizeof(target) - 1);
			target[len > 0 ? len : 0] = 0;
			if (strstr(target, "memfd:samepage-pool"))
				pool = fd;
		}
		if (pool < 0 || null < 0)
			return 2;
		int e[4];
		e[0] = dup2(null, pool) < 0 ? errno : 0;
		e[1] = dup3(null, pool, O_CLOEXEC) < 0 ? errno : 0;
		e[2] = syscall(SYS_dup2, null, pool) < 0 ? errno : 0;
		e[3] = syscall(SYS_dup3, null, pool, 0) < 0 ? errno : 0;
		printf("%d %d %d %d %d\n", pool, e[0], e[1], e[2], e[3]);
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "open")) {
		int fd = open("/dev/null", O_RDONLY);
		return fd >= 0 && close(fd) == 0 ? 0 : 1;
	}
	if (argc >= 2 && !strcmp(argv[1], "opennull")) {
		/* NULL, and an address with nothing mapped (a page taken
		 * back): EFAULT from the kernel, no crash. */
		const char *volatile none = NULL;
		char *gone = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		munmap(gone, 4096);
		int a = open(none, O_RDONLY), ea = errno;
		int b = openat(AT_FDCWD, none, O_RDONLY), eb = errno;
		int c = open(gone, O_RDONLY), ec = errno;
		int d = openat(AT_FDCWD, gone, O_RDONLY), ed = errno;
		return a == -1 && ea == EFAULT && b == -1 && eb == EFAULT && c == -1 &&
			       ec == EFAULT && d == -1 && ed == EFAULT
			   ? 0
			   : 1;
	}
	if (argc >= 2 && !strcmp(argv[1], "sigwait")) {
		if (!alike_memory(8UL << 20))
			return 2;
		sigset_t set;
		int sig = 0;
		sigemptyset(&set);
		sigaddset(&set, SIGUSR1);
		pthread_sigmask(SIG_BLOCK, &set, NULL);
		usleep(100000);
		kill(getpid(), SIGUSR1);
		return sigwait(&set, &sig) == 0 && sig == SIGUSR1 ? 0 : 3;
	}
	if (argc >= 3 && !strcmp(argv[1], "forks"))
		return forks(atoi(argv[2]));
	if (argc >= 3 && !strcmp(argv[1], "altstack"))
		return altstack(atol(argv[2]));
	if (argc >= 2 && !strcmp(argv[1], "seal"))
		return seal();
	if (argc >= 3 && !strcmp(argv[1], "kill")) {
		if (!alike_memory(8UL << 20))
			return 2;
		usleep(300000);
		kill(getpid(), atoi(argv[2]));
		usleep(100000);
		return 0;
	}
	fprintf(
	    stderr,
	    "usage: workload fill|fork|exec|blocks MIB BYTE [how] | malloc|reuse SECONDS THREADS "
	    "| kvm | opennull | sigwait | forks N | kill SIGNAL | altstack ROUNDS\n");
	return 2;
}
