// SPDX-License-Identifier: MIT
/*
 * bench_scan.c - workload 3: no duplicates, the pure scanning cost.
 *
 * 512 MiB (64 with --quick) of pages that are all different.  The first
 * full scan creates the engine's per-page items and checksums; the next two
 * put every page into the unstable index and find nothing: those two are
 * measured, as the scanner's CPU seconds per GiB per full scan.  Smart scan
 * is left on (both engines' default): it starts skipping a page only at its
 * fourth visit, after the measured scans.
 */
#include "harness.h"

#include <sys/mman.h>

#define MEASURED_SCANS 2

int main(int argc, char **argv)
{
	struct bench b;

	bench_init(&b, argc, argv, "3-scan");
	size_t mib = b.o.quick ? 64 : 512, npages = mib * MIB / PG;
	double gib = (double)mib / 1024.0;
	char *p = map_pages(npages);
	for (size_t i = 0; i < npages; i++)
		fill_page(p + i * PG, (3ULL << 40) + i);
	struct span s = {p, npages * PG};

	bench_merge_begin(&b.e, &s, 1, &b.m);
	if (wait_full_scans(&b.e, 1, 120) < 0)
		return 1;
	uint64_t cpu0 = bench_cpu_ns(&b.e), t0 = now_ns();
	if (wait_full_scans(&b.e, MEASURED_SCANS, 120) < 0)
		return 1;
	double cpu = (double)(bench_cpu_ns(&b.e) - cpu0) / 1e9, wall = secs_since(t0);
	bench_merge_end(&b.e, &b.m);
	bench_result(&b.o, "cpu_per_GiB_scan", "s", cpu / gib / MEASURED_SCANS);
	bench_result(&b.o, "wall_per_GiB_scan", "s", wall / gib / MEASURED_SCANS);
	bench_result(&b.o, "returned", "MiB", b.m.returned_mib);
	bench_close(&b.e);
	munmap(p, npages * PG);
	return 0;
}
