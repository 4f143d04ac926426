// SPDX-License-Identifier: MIT
/*
 * bench_cow_vmas.c - why a copy-on-write break of a merged page costs the
 * engine more than the kernel's KSM (workload 5-C, BENCHMARKS.md): the
 * kernel alone, no engine.  2000 pages of a memfd (the pool's kind of
 * file) mapped private and read in, then one 1-byte write to each, timed:
 *   one    the 2000 pages in one mapping (a run merged in one go)
 *   vmas   each page its own mapping, as 5-C's merged pairs are (every
 *          pair of pages shares one pool page, so no two neighbours are
 *          consecutive in the pool): the first write in a mapping makes
 *          its anon_vma, once per mapping instead of once
 *   anon   one mapping whose anon_vma a first write made before the timing
 * The kernel's KSM breaks copy-on-write in a mapping that has its anon_vma
 * already (the application's own anonymous memory).
 *
 * Usage: bench_cow_vmas one|vmas|anon [ROUNDS]   (default 25)
 * Prints the median and the lowest microseconds per write over ROUNDS.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PG 4096UL
#define PAGES 2000UL

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void fail(const char *what)
{
	perror(what);
	exit(1);
}

/* Microseconds per copy-on-write break of one round in the given layout. */
static double round_us(const char *layout)
{
	int fd = memfd_create("bench-pool", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)(PAGES * PG)))
		fail("memfd");
	char *w = mmap(NULL, PAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (w == MAP_FAILED)
		fail("mmap");
	memset(w, '*', PAGES * PG);
	/* Every other page: no two mappings of the vmas layout can merge. */
	char *area = mmap(NULL, 2 * PAGES * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		fail("mmap");
	bool vmas = !strcmp(layout, "vmas");
	size_t step = vmas ? 2 * PG : PG, n = PAGES;
	if (vmas) {
		for (size_t i = 0; i < PAGES; i++)
			if (mmap(area + i * step, PG, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_FIXED, fd, (off_t)(i * PG)) == MAP_FAILED)
				fail("mmap");
	} else if (mmap(area, PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0) ==
		   MAP_FAILED) {
		fail("mmap");
	}
	for (size_t i = 0; i < PAGES; i++)
		if (madvise(area + i * step, PG, MADV_POPULATE_READ))
			fail("MADV_POPULATE_READ");
	if (!strcmp(layout, "anon"))
		area[--n * PG] = 1; /* the last page: the mapping's anon_vma made */
	double t0 = now();
	for (size_t i = 0; i < n; i++)
		*(volatile char *)(area + i * step) = 1;
	double us = (now() - t0) / (double)n * 1e6;
	munmap(area, 2 * PAGES * PG);
	munmap(w, PAGES * PG);
	close(fd);
	return us;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	if (argc < 2 ||
	    (strcmp(argv[1], "one") && strcmp(argv[1], "vmas") && strcmp(argv[1], "anon"))) {
		fprintf(stderr, "usage: %s one|vmas|anon [ROUNDS]\n", argv[0]);
		return 2;
	}
	int rounds = argc > 2 ? atoi(argv[2]) : 25;
	if (rounds < 1 || rounds > 10000) {
		fprintf(stderr, "%s: ROUNDS from 1 to 10000, not %s\n", argv[0], argv[2]);
		return 2;
	}
	double *us = calloc((size_t)rounds, sizeof(*us));
	if (!us)
		fail("calloc");
	for (int r = 0; r < rounds; r++)
		us[r] = round_us(argv[1]);
	qsort(us, (size_t)rounds, sizeof(*us), cmp);
	printf("%s: %.3f us per copy-on-write break (median of %d), lowest %.3f\n", argv[1],
	       us[rounds / 2], rounds, us[0]);
	free(us);
	return 0;
}
