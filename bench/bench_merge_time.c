// SPDX-License-Identifier: MIT
/*
 * bench_merge_time.c - workload 1 (ksm_tests -P) and the unmerge half of
 * workload 5 (ksm_tests -D).
 *
 * 256 MiB (64 with --quick) of all-identical pages ('*'), timed from
 * madvise(MERGEABLE) + run=1 until two more full scans have ended, as
 * ksm_tests -P does; then the same region is made UNMERGEABLE and that call
 * is timed, as -D does.  The scanner is stopped (run=0) before the unmerge
 * so that only the unmerging thread is measured.  Every page but one per
 * max_page_sharing group merges, so this is the engine's best case for
 * batching and the kernel's cheapest per-page work.
 */
#include "harness.h"

#include <string.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
	struct bench b;

	bench_init(&b, argc, argv, "1-P");
	size_t mib = b.o.quick ? 64 : 256, npages = mib * MIB / PG;
	char *p = map_pages(npages);
	memset(p, '*', npages * PG);
	struct span s = {p, npages * PG};

	bench_merge_begin(&b.e, &s, 1, &b.m);
	b.m.wait_s = wait_full_scans(&b.e, 2, 120);
	bench_merge_end(&b.e, &b.m);
	if (b.m.wait_s < 0) {
		fprintf(stderr, "bench_merge_time: no two full scans in 120 s\n");
		return 1;
	}
	bench_result(&b.o, "time", "s", b.m.wait_s);
	bench_result(&b.o, "speed", "MiB/s", (double)mib / b.m.wait_s);
	bench_merge_report(&b.o, &b.m);
	bench_result(&b.o, "merged_at_2_scans", "%",
		     100.0 * b.m.saved_mib / (double)(mib - mib / 256));

	/* -D: unmerge the merged region. */
	bench_run(&b.e, 0);
	b.o.workload = "5-D";
	busy_start(&b.e);
	uint64_t t0 = now_ns();
	int err = bench_advise(&b.e, p, npages * PG, false);
	double t = secs_since(t0);
	busy_stop(&b.e);
	if (err) {
		fprintf(stderr, "bench_merge_time: madvise(UNMERGEABLE): %s\n", strerror(-err));
		return 1;
	}
	bench_result(&b.o, "unmerge_time", "s", t);
	bench_result(&b.o, "unmerge_speed", "MiB/s", (double)mib / t);
	bench_close(&b.e);
	munmap(p, npages * PG);
	return 0;
}
