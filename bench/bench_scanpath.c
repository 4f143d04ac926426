// SPDX-License-Identifier: MIT
/*
 * bench_scanpath.c - the driver for the callgrind counts of the library's
 * per-page scan path.
 *
 * Runs libsamepage over --pages N pages for three full scans (the first
 * computes checksums, the second fills the unstable index or merges, the
 * third revisits), without smart scan, and prints pages_scanned.  --dup 0: all pages differ
 * (the scan-only path); --dup 1: the second half repeats the first (every
 * page merges, in runs); --dup 2: every page alike (ksm_tests -P's shape:
 * the content needs pages / max_page_sharing KSM pages, a chain of dups).
 * Run it under
 *   valgrind --tool=callgrind --toggle-collect=ksm_do_scan
 * so that only the scanner's work is counted: instructions are repeatable
 * where timings are not.  Never uses the kernel's KSM.
 */
#include "harness.h"

#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	size_t npages = 4096;
	int dup = 0;
	samepage_t *sp;
	long long scans = 0, scanned = 0;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--pages"))
			npages = strtoul(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--dup"))
			dup = atoi(argv[i + 1]);
	}
	char *p = map_pages(npages);
	for (size_t i = 0; i < npages; i++)
		fill_page(p + i * PG, dup == 2 ? 1 : dup ? i % (npages / 2) : i);
	int err = samepage_open(&sp);
	if (!err)
		err = samepage_write(sp, "pages_to_scan", "512");
	/* A pause between batches lets this thread read full_scans and stop
	 * the scanner right after the third scan (it overshoots by one batch
	 * at most); the pause costs no instructions. */
	if (!err)
		err = samepage_write(sp, "sleep_millisecs", "20");
	if (!err)
		err = samepage_write(sp, "smart_scan", "0");
	if (!err)
		err = samepage_madvise(sp, p, npages * PG, SAMEPAGE_MERGEABLE);
	if (!err)
		err = samepage_read_number(sp, "full_scans", &scans);
	if (err) {
		fprintf(stderr, "bench_scanpath: %s\n", samepage_strerror(err));
		return 1;
	}
	long long target = scans + 3;
	samepage_write(sp, "run", "1");
	while (!samepage_read_number(sp, "full_scans", &scans) && scans < target)
		sleep_ms(1);
	samepage_write(sp, "run", "0");
	samepage_read_number(sp, "pages_scanned", &scanned);
	printf("pages_scanned\t%lld\n", scanned);
	samepage_close(sp);
	return 0;
}
