// SPDX-License-Identifier: MIT
/*
 * bench_scale.c - workload 10: one process at VM scale (issue 13).
 *
 * 2 GiB (--mib N; 256 MiB with --quick) whose pages are, at random
 * places: 25% all zero, 25% copies of one of 1000 contents, 50% unique.
 * Zero pages cost the library no mapping; the scattered copies need one
 * each (no two neighbours hold neighbouring contents), so vm.max_map_count
 * bounds what the library can merge of them; run.sh measures it at the
 * default limit and at 1048576 (--max-map-count), the default of several
 * current distributions.  Reported, beside the merge figures: what a
 * perfect merge frees (every zero page, every copy but one per content),
 * the share of it returned net of metadata (the kernel's rmap items, the
 * library's mappings' slab), the merges the budget refused and the limit
 * that would have let them all happen (max_map_count_needed).
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define CONTENTS 1000

int main(int argc, char **argv)
{
	struct bench b;

	char name[48];
	bench_init(&b, argc, argv, "10-scale");
	if (b.o.max_map_count) { /* its own line in the table */
		snprintf(name, sizeof(name), "10-scale@%ld", b.o.max_map_count);
		b.o.workload = name;
	}
	size_t mib = b.o.mib ? b.o.mib : b.o.quick ? 256 : 2048, npages = mib * MIB / PG;
	char *p = map_pages(npages);
	bool *used = calloc(CONTENTS, sizeof(*used));
	size_t zero = 0, copies = 0, distinct = 0;
	uint64_t rng = 10;
	if (!used)
		bench_die("calloc");
	for (size_t i = 0; i < npages; i++) {
		uint64_t r = rng_next(&rng), kind = r % 4, c = (r >> 8) % CONTENTS;
		if (kind == 0) {
			memset(p + i * PG, 0, PG); /* present, all zero */
			zero++;
		} else if (kind == 1) {
			fill_page(p + i * PG, (6ULL << 40) + c);
			copies++;
			distinct += !used[c];
			used[c] = true;
		} else {
			fill_page(p + i * PG, (7ULL << 40) + i);
		}
	}
	double perfect = (double)(zero + copies - distinct) * PG / MIB;
	if (bench_converge(&b, p, npages * PG, 600))
		return 1;
	bench_result(&b.o, "perfect", "MiB", perfect);
	bench_result(&b.o, "of_perfect_net", "%", 100.0 * b.m.net_returned_mib / perfect);
	if (b.e.kind == ENGINE_LIB) {
		bench_result(&b.o, "merges_skipped", "pages",
			     (double)bench_counter(&b.e, "merges_skipped_map_budget"));
		bench_result(&b.o, "max_map_count_needed", "maps",
			     (double)bench_counter(&b.e, "max_map_count_needed"));
	}
	bench_close(&b.e);
	munmap(p, npages * PG);
	free(used);
	return 0;
}
