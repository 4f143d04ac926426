// SPDX-License-Identifier: MIT
/*
 * bench_scatter.c - workload 4: scattered duplicates, the worst case for
 * the library's mapping budget.
 *
 * 256 MiB (32 with --quick): every page is, with even odds, unique or a
 * copy of one of 1024 contents, at random places.  No two neighbours merge
 * onto neighbouring pool pages, so every merged page costs the library a
 * mapping of its own (two more VMAs), and vm.max_map_count bounds what it
 * can merge; the kernel has no such limit.  Reported: memory returned,
 * mappings used (/proc/self/maps), the merges the library skipped for its
 * budget (merges_skipped_map_budget), time to converge.
 */
#include "harness.h"

#include <sys/mman.h>

#define CONTENTS 1024

int main(int argc, char **argv)
{
	struct bench b;

	bench_init(&b, argc, argv, "4-scatter");
	size_t npages = (b.o.quick ? 32 : 256) * MIB / PG;
	double timeout = b.o.quick ? 30 : 120;
	char *p = map_pages(npages);
	uint64_t rng = 7;
	for (size_t i = 0; i < npages; i++) {
		uint64_t r = rng_next(&rng);
		fill_page(p + i * PG,
			  r & 1 ? (4ULL << 40) + (r >> 1) % CONTENTS : (5ULL << 40) + i);
	}
	if (bench_converge(&b, p, npages * PG, timeout))
		return 1;
	bench_result(
	    &b.o, "merges_skipped", "pages",
	    b.e.kind == ENGINE_LIB ? (double)bench_counter(&b.e, "merges_skipped_map_budget") : 0);
	bench_close(&b.e);
	munmap(p, npages * PG);
	return 0;
}
