// SPDX-License-Identifier: MIT
/*
 * bench_vm.c - workload 2 (VM-like) and workload 6 (metadata per page).
 *
 * Four "guests" of 256 MiB each (32 MiB with --quick), mapped separately in
 * this process, hold the same image: runs of 1 to 256 pages, 70% of them
 * image pages identical in every guest at the same offsets, 10% private
 * data (different in every guest) and 20% zero pages.  Both engines run
 * with the same use_zero_pages (--zero).  Measured outside the engine: the
 * time until the pages saved stop changing (over two full scans), and the
 * memory returned (/proc/meminfo AnonPages+Shmem), sampled every 50 ms into
 * --series for the plot.  The engine's counters (pages_sharing and
 * ksm_zero_pages) are reported beside it, and the metadata spent per
 * tracked page once converged.
 */
#include "harness.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define GUESTS 4

int main(int argc, char **argv)
{
	struct bench b;
	struct span guests[GUESTS];
	FILE *series = NULL;

	bench_init(&b, argc, argv, "2-VM");
	if (b.o.use_zero_pages)
		b.o.workload = "2-VM-zero";
	size_t npages = (b.o.quick ? 32 : 256) * MIB / PG;
	double timeout = b.o.quick ? 30 : 120;
	unsigned char *kind = vm_layout(npages);
	for (size_t g = 0; g < GUESTS; g++) {
		char *p = map_pages(npages);
		vm_fill(p, npages, kind, (unsigned)g);
		guests[g] = (struct span){p, npages * PG};
	}
	if (b.o.series && !(series = fopen(b.o.series, "w"))) {
		perror(b.o.series);
		return 1;
	}

	bench_merge_begin(&b.e, guests, GUESTS, &b.m);
	b.m.wait_s = wait_converged(&b.e, &b.m, series, timeout);
	bench_merge_end(&b.e, &b.m);
	if (series)
		fclose(series);
	if (b.m.wait_s < 0) {
		fprintf(stderr, "bench_vm: not converged in %.0f s\n", timeout);
		return 1;
	}
	bench_result(&b.o, "converge", "s", b.m.wait_s);
	bench_merge_report(&b.o, &b.m);
	b.o.workload = b.o.use_zero_pages ? "6-metadata-zero" : "6-metadata";
	bench_result(&b.o, "per_page", "bytes", metadata_per_page(&b.e));
	bench_close(&b.e);
	for (size_t g = 0; g < GUESTS; g++)
		munmap(guests[g].addr, guests[g].len);
	free(kind);
	return 0;
}
