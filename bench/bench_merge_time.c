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
	struct bench_opts o;
	struct engine e;
	struct merge_run m;

	bench_parse(argc, argv, "1-P", &o);
	size_t mib = o.quick ? 64 : 256, npages = mib * MIB / PG;
	bench_open(&e, &o, BENCH_PAGES_TO_SCAN);
	char *p = map_pages(npages);
	memset(p, '*', npages * PG);
	struct span s = {p, npages * PG};

	bench_merge_begin(&e, &s, 1, &m);
	m.wait_s = wait_full_scans(&e, 2, 120);
	bench_merge_end(&e, &m);
	if (m.wait_s < 0) {
		fprintf(stderr, "bench_merge_time: no two full scans in 120 s\n");
		return 1;
	}
	bench_result(&o, "time", "s", m.wait_s);
	bench_result(&o, "speed", "MiB/s", (double)mib / m.wait_s);
	bench_merge_report(&o, &m);
	bench_result(&o, "merged_at_2_scans", "%", 100.0 * m.saved_mib / (double)(mib - mib / 256));

	/* -D: unmerge the merged region. */
	bench_run(&e, 0);
	o.workload = "5-D";
	busy_start(&e);
	uint64_t t0 = now_ns();
	int err = bench_advise(&e, p, npages * PG, false);
	double t = secs_since(t0);
	busy_stop(&e);
	if (err) {
		fprintf(stderr, "bench_merge_time: madvise(UNMERGEABLE): %s\n", strerror(-err));
		return 1;
	}
	bench_result(&o, "unmerge_time", "s", t);
	bench_result(&o, "unmerge_speed", "MiB/s", (double)mib / t);
	bench_close(&e);
	munmap(p, npages * PG);
	return 0;
}
