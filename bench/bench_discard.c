// SPDX-License-Identifier: MIT
/*
 * bench_discard.c - what madvise(MADV_DONTNEED) costs a program run on
 * libsamepage (`ksmctl --user run -- build/bench/bench_discard`), in the
 * program and in a child it forks (whose inherited engine's pool is a
 * "stale pool": unmerge.c).  It is an unmodified program, linked with
 * nothing of ours; run plainly, it gives the kernel's own cost.
 *
 * Usage: bench_discard [CALLS]   (default 20000)
 * Prints "parent: N us per madvise(DONTNEED)" and the same for "child".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* calls discards of one page, written again before each. */
static void discards(const char *who, int calls)
{
	char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	double t0 = now();
	for (int i = 0; i < calls; i++) {
		p[0] = 1;
		madvise(p, 4096, MADV_DONTNEED);
	}
	printf("%s: %.1f us per madvise(DONTNEED)\n", who, (now() - t0) / calls * 1e6);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	int calls = argc > 1 ? atoi(argv[1]) : 20000;
	if (calls <= 0) {
		fprintf(stderr, "usage: bench_discard [CALLS]\n");
		return 2;
	}
	/* Memory that merges (under merge-any): 64 MiB of one content. */
	size_t sz = 64UL << 20;
	char *m = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	memset(m, 7, sz);
	sleep(3); /* the engine's first full scans */
	discards("parent", calls);
	pid_t c = fork();
	if (c == 0) {
		discards("child", calls);
		_exit(0);
	}
	waitpid(c, NULL, 0);
	return 0;
}
