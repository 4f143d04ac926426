// SPDX-License-Identifier: MIT
/*
 * workload.c - synthetic processes of known contents for the tests of
 * `ksmctl estimate`, so that every expected figure can be computed from the
 * command line that built them.
 *
 * Each process maps one region at a fixed address (BASE, the same in every
 * process, so the tests can pass --range and ignore the incidental memory
 * of the C library) and fills it, in this order:
 *   --mutate N     N pages rewritten all the time by a thread, switching
 *                  between a copy of dup content 0 and a page of its own
 *                  (first, so that a first copy can change under the scan)
 *   --rewrite N    N pages rewritten every --period MS milliseconds (default
 *                  50) by a thread: each round writes 8 new contents, page i
 *                  a copy of content i % 8, so that any snapshot finds
 *                  duplicates there but ksmd, which visits a page less often,
 *                  finds them changed every time (pages_volatile)
 *   --unique N     N pages of contents found nowhere else
 *   --dup K:N      K contents, N copies of each, the same in every process
 *   --zero N       N pages written, then cleared: real pages of zeros
 *   --read-only N  N pages only read: they map the kernel's zero page
 *   --prot-none N  N copies of one more content, then made PROT_NONE
 * and, in a second region at THP_BASE (2 MiB aligned, within BASE's
 * terabyte):
 *   --thp N        N transparent huge pages (MADV_HUGEPAGE), each with 256
 *                  zero subpages then 256 copies of 16 contents (subpage j
 *                  holds content j % 16, the same in every huge page)
 * Then:
 *   --procs P      P processes built independently (no sharing between them)
 *   --fork         each process forks a child that keeps the pages shared
 *   --madvise      MADV_MERGEABLE on the regions (for the kernel comparison)
 *   --merge-any    prctl(PR_SET_MEMORY_MERGE): every area mergeable
 *   --exit-after MS  each process exits after MS milliseconds
 *   --salt S       a namespace for contents, so two runs differ
 *   --name NAME    the processes' name (comm, 15 bytes at most)
 * It prints "ready PID PID ..." once every process is built, then waits for
 * its standard input to close (or for SIGTERM), and kills its processes.
 */
#include "splitmix.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define BASE ((uintptr_t)0x6e0000000000ULL)
#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67 /* Linux 6.4: headers older than the kernel */
#endif
#define THP_BASE (BASE + ((uintptr_t)1 << 30))
#define HUGE (2UL << 20)

static long n_mutate, n_rewrite, period_ms = 50, n_unique, n_dup_k, n_dup_n, n_zero, n_ro,
				 n_protnone;
static long n_thp, n_procs = 1, exit_after_ms = -1;
static int do_fork, do_madvise, do_merge_any;
static uint64_t salt;

/* Fills a page with the content named id: different ids, different pages. */
static void fill(unsigned char *p, uint64_t id)
{
	uint64_t *w = (uint64_t *)p;

	w[0] = id;
	for (int i = 1; i < PAGE / 8; i++)
		w[i] = splitmix(id * 4099 + (uint64_t)i);
}

/* Content names: a kind in the top byte, the salt, then an index. */
#define ID(kind, proc, i)                                                                          \
	(((uint64_t)(kind) << 56) ^ (salt << 36) ^ ((uint64_t)(proc) << 24) ^ (uint64_t)(i))

struct mut {
	unsigned char *p;
	long n;
};

static void *mutator(void *arg)
{
	struct mut *m = arg;

	for (uint64_t it = 0;; it++) {
		for (long i = 0; i < m->n; i++) {
			if ((it + (uint64_t)i) % 2)
				fill(m->p + i * PAGE, ID(2, 0, 0)); /* dup content 0 */
			else
				fill(m->p + i * PAGE, ID(7, getpid(), it * 65536 + (uint64_t)i));
		}
	}
	return NULL;
}

struct rewrite {
	unsigned char *p;
	long n;
	int proc;
};

static void *rewriter(void *arg)
{
	struct rewrite *rw = arg;
	static unsigned char tmpl[8][PAGE];
	struct timespec ts = {period_ms / 1000, period_ms % 1000 * 1000000L};

	for (uint64_t round = 1;; round++) {
		for (int k = 0; k < 8; k++)
			fill(tmpl[k], ID(5, rw->proc + 1, round * 8 + (uint64_t)k));
		for (long i = 0; i < rw->n; i++)
			memcpy(rw->p + i * PAGE, tmpl[i % 8], PAGE);
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static void build(int proc)
{
	long total = n_mutate + n_rewrite + n_unique + n_dup_k * n_dup_n + n_zero + n_ro;
	unsigned char *r, *p;

	r = mmap((void *)BASE, (size_t)(total + n_protnone + 1) * PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (r == MAP_FAILED) {
		perror("workload: mmap");
		exit(1);
	}
	/* No THP: a huge page would make untouched neighbours present zeros. */
	madvise(r, (size_t)(total + n_protnone + 1) * PAGE, MADV_NOHUGEPAGE);
	p = r;
	if (n_mutate) {
		static struct mut m;
		pthread_t th;

		m.p = p;
		m.n = n_mutate;
		for (long i = 0; i < n_mutate; i++)
			fill(p + i * PAGE, ID(7, getpid(), i));
		pthread_create(&th, NULL, mutator, &m);
		p += n_mutate * PAGE;
	}
	if (n_rewrite) {
		static struct rewrite rw;
		pthread_t th;

		rw = (struct rewrite){p, n_rewrite, proc};
		for (long i = 0; i < n_rewrite; i++)
			fill(p + i * PAGE, ID(5, proc + 1, (uint64_t)(i % 8)));
		pthread_create(&th, NULL, rewriter, &rw);
		p += n_rewrite * PAGE;
	}
	for (long i = 0; i < n_unique; i++, p += PAGE)
		fill(p, ID(1, proc + 1, i));
	/* Copies interleaved, as scattered duplicates are in real memory. */
	for (long c = 0; c < n_dup_n; c++)
		for (long k = 0; k < n_dup_k; k++, p += PAGE)
			fill(p, ID(2, 0, k));
	for (long i = 0; i < n_zero; i++, p += PAGE) {
		fill(p, ID(3, proc + 1, i));
		memset(p, 0, PAGE);
	}
	for (long i = 0; i < n_ro; i++, p += PAGE)
		(void)*(volatile unsigned char *)p;
	if (n_protnone) {
		p += PAGE; /* a gap page, so the PROT_NONE area is its own VMA */
		for (long i = 0; i < n_protnone; i++)
			fill(p + i * PAGE, ID(4, 0, 0));
		mprotect(p, (size_t)n_protnone * PAGE, PROT_NONE);
	}
	if (do_madvise && madvise(r, (size_t)(total + n_protnone + 1) * PAGE, MADV_MERGEABLE)) {
		perror("workload: madvise(MADV_MERGEABLE)");
		exit(1);
	}
	if (n_thp) {
		size_t len = (size_t)n_thp * HUGE;

		r = mmap((void *)THP_BASE, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (r == MAP_FAILED) {
			perror("workload: mmap (--thp)");
			exit(1);
		}
		madvise(r, len, MADV_HUGEPAGE);
		for (long h = 0; h < n_thp; h++)
			for (long j = HUGE / PAGE / 2; j < (long)(HUGE / PAGE); j++)
				fill(r + (size_t)h * HUGE + (size_t)j * PAGE, ID(6, 0, j % 16));
		if (do_madvise && madvise(r, len, MADV_MERGEABLE)) {
			perror("workload: madvise(MADV_MERGEABLE)");
			exit(1);
		}
	}
	if (do_merge_any && prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0)) {
		perror("workload: prctl(PR_SET_MEMORY_MERGE)");
		exit(1);
	}
}

static long num(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*end || v < 0) {
		fprintf(stderr, "workload: bad number %s\n", s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	int ready[2];
	pid_t pids[64];
	int np = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--fork")) {
			do_fork = 1;
			continue;
		}
		if (!strcmp(a, "--madvise")) {
			do_madvise = 1;
			continue;
		}
		if (!strcmp(a, "--merge-any")) {
			do_merge_any = 1;
			continue;
		}
		if (!v) {
			fprintf(stderr, "workload: %s needs a value\n", a);
			return 2;
		}
		i++;
		if (!strcmp(a, "--mutate"))
			n_mutate = num(v);
		else if (!strcmp(a, "--rewrite"))
			n_rewrite = num(v);
		else if (!strcmp(a, "--period"))
			period_ms = num(v);
		else if (!strcmp(a, "--unique"))
			n_unique = num(v);
		else if (!strcmp(a, "--dup")) {
			if (sscanf(v, "%ld:%ld", &n_dup_k, &n_dup_n) != 2)
				return 2;
		} else if (!strcmp(a, "--zero"))
			n_zero = num(v);
		else if (!strcmp(a, "--read-only"))
			n_ro = num(v);
		else if (!strcmp(a, "--thp"))
			n_thp = num(v);
		else if (!strcmp(a, "--prot-none"))
			n_protnone = num(v);
		else if (!strcmp(a, "--procs"))
			n_procs = num(v);
		else if (!strcmp(a, "--exit-after"))
			exit_after_ms = num(v);
		else if (!strcmp(a, "--salt"))
			salt = (uint64_t)num(v);
		else if (!strcmp(a, "--name"))
			prctl(PR_SET_NAME, v); /* its processes' comm */
		else {
			fprintf(stderr, "workload: unknown option %s\n", a);
			return 2;
		}
	}
	if (n_procs < 1 || n_procs > 16 || pipe(ready))
		return 2;
	for (int k = 0; k < n_procs; k++) {
		pid_t pid = fork();

		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			close(ready[0]);
			build(k);
			pid_t child = 0;
			if (do_fork) {
				child = fork();
				if (child == 0) {
					prctl(PR_SET_PDEATHSIG, SIGKILL);
					pid_t me = getpid();
					if (write(ready[1], &me, sizeof(me)) != sizeof(me))
						_exit(1);
					for (;;)
						pause();
				}
			}
			pid_t me = getpid();
			if (write(ready[1], &me, sizeof(me)) != sizeof(me))
				_exit(1);
			if (exit_after_ms >= 0) {
				struct timespec ts = {exit_after_ms / 1000,
						      exit_after_ms % 1000 * 1000000L};
				nanosleep(&ts, NULL);
				if (child > 0)
					kill(child, SIGKILL);
				_exit(0);
			}
			for (;;)
				pause();
		}
		if (pid < 0) {
			perror("workload: fork");
			return 1;
		}
		pids[np++] = pid;
	}
	close(ready[1]);
	/* Report every process (children included) once all are built. */
	printf("ready");
	pid_t got;
	int nready = 0;
	while (read(ready[0], &got, sizeof(got)) == sizeof(got)) {
		printf(" %d", (int)got);
		if (++nready == n_procs * (do_fork ? 2 : 1))
			break;
	}
	printf("\n");
	fflush(stdout);
	/* Wait for the test to close our stdin, then take everything down. */
	char c;
	while (read(0, &c, 1) > 0)
		;
	for (int k = 0; k < np; k++)
		kill(pids[k], SIGKILL);
	for (int k = 0; k < np; k++)
		waitpid(pids[k], NULL, 0);
	return 0;
}
