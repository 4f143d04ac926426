// SPDX-License-Identifier: MIT
/*
 * dupfill.c - a workload for ksmctl's real-kernel tests: maps MiB of
 * private anonymous memory, fills every page with one of a few patterns
 * (so most pages are duplicates), then sleeps until killed.
 *
 * It does not opt itself in: the tests start it under `ksmctl run`, so that
 * any merging proves that ksmctl made it mergeable.  With --madvise it calls
 * madvise(MADV_MERGEABLE) itself instead.
 *
 * usage: dupfill MIB SECONDS [--madvise]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: dupfill MIB SECONDS [--madvise]\n");
		return 2;
	}
	size_t len = (size_t)atol(argv[1]) << 20;
	long ps = sysconf(_SC_PAGESIZE);
	unsigned char *m =
	    mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED) {
		perror("dupfill: mmap");
		return 1;
	}
	if (argc > 3 && strcmp(argv[3], "--madvise") == 0 && madvise(m, len, MADV_MERGEABLE)) {
		perror("dupfill: madvise");
		return 1;
	}
	/* Four distinct, non-zero contents: zero pages are a separate case. */
	for (size_t off = 0; off < len; off += (size_t)ps)
		memset(m + off, 1 + (int)((off / (size_t)ps) % 4), (size_t)ps);
	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	sleep((unsigned)atoi(argv[2]));
	return 0;
}
