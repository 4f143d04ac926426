// SPDX-License-Identifier: MIT
/*
 * bench_cow.c - workload 5: copy-on-write break latency (ksm_tests -C).
 *
 * As -C: 4000 pages of '*'; first the time of a 1-byte write to every other
 * page while nothing is merged (present pages: no fault at all), then 2000
 * distinct pairs of duplicate pages are merged and a 1-byte write to the
 * first page of each pair is timed: 2000 copy-on-write breaks.  Added for
 * scale: the first-touch fault of 2000 fresh anonymous pages.  The scanner
 * is stopped (run=0, merged pages stay merged) before the timed writes, so
 * that it does not compete for the second CPU with the busy thread.
 */
#include "harness.h"

#include <string.h>
#include <sys/mman.h>

#define PAGES 4000

/* Seconds per page for a 1-byte write to every other page of p. */
static double write_every_other(struct engine *e, char *p, char c)
{
	busy_start(e);
	uint64_t t0 = now_ns();
	for (size_t i = 0; i < PAGES; i += 2)
		*(volatile char *)(p + i * PG) = c;
	double t = secs_since(t0);
	busy_stop(e);
	return t / (PAGES / 2);
}

int main(int argc, char **argv)
{
	struct bench b;

	bench_init(&b, argc, argv, "5-C");
	char *fresh = map_pages(PAGES);
	double fault = write_every_other(&b.e, fresh, 1);
	char *p = map_pages(PAGES);
	memset(p, '*', PAGES * PG);
	double unmerged = write_every_other(&b.e, p, '-');

	for (size_t i = 0; i < PAGES; i += 2) {
		memset(p + i * PG, '+', i / 2 + 1);
		memset(p + (i + 1) * PG, '+', i / 2 + 1);
	}
	int err = bench_advise(&b.e, p, PAGES * PG, true);
	if (err) {
		fprintf(stderr, "bench_cow: madvise(MERGEABLE): %s\n", strerror(-err));
		return 1;
	}
	bench_run(&b.e, 1);
	if (wait_full_scans(&b.e, 2, 60) < 0)
		return 1;
	bench_run(&b.e, 0);
	long long merged = bench_counter(&b.e, "pages_sharing");
	double cow = write_every_other(&b.e, p, '-');

	bench_result(&b.o, "first_touch_fault", "us", fault * 1e6);
	bench_result(&b.o, "write_unmerged", "us", unmerged * 1e6);
	bench_result(&b.o, "cow_break", "us", cow * 1e6);
	bench_result(&b.o, "pairs_merged", "pages", (double)merged);
	bench_close(&b.e);
	munmap(p, PAGES * PG);
	munmap(fresh, PAGES * PG);
	return 0;
}
