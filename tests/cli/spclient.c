// SPDX-License-Identifier: MIT
/*
 * spclient.c - a samepaged client for ksmctl's --user tests: connects to
 * the daemon of $SAMEPAGE_SOCKET in DOMAIN, maps MIB of private anonymous
 * memory, fills every page with one of four non-zero patterns (so nearly
 * all pages are duplicates), marks it SAMEPAGE_MERGEABLE, prints
 * "ready PID" and sleeps until killed.  Its engine's scanner merges the
 * pages once ksmctl writes run=1 to the daemon.
 *
 * With "scatter", every other page is unique instead: scattered duplicates,
 * a mapping of their own each (the mapping budget).  With "malloc", the
 * engine is in merge-any mode and the MIB are blocks of malloc's main heap
 * (120 KiB each, below its mmap threshold), which merge-any keeps out
 * (pages_kept_malloc).
 *
 * usage: spclient DOMAIN MIB [scatter|malloc]
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "samepage.h"

int main(int argc, char **argv)
{
	samepage_t *sp;
	int err;

	bool scatter = argc == 4 && !strcmp(argv[3], "scatter");
	bool use_malloc = argc == 4 && !strcmp(argv[3], "malloc");
	if (argc != 3 && !scatter && !use_malloc) {
		fprintf(stderr, "usage: spclient DOMAIN MIB [scatter|malloc]\n");
		return 2;
	}
	size_t len = (size_t)atol(argv[2]) << 20;
	long ps = sysconf(_SC_PAGESIZE);
	if ((err = samepage_connect(&sp, argv[1]))) {
		fprintf(stderr, "spclient: samepage_connect(%s): %s\n", argv[1],
			samepage_strerror(err));
		return 1;
	}
	if (use_malloc) {
		if ((err = samepage_merge_any(sp, 1))) {
			fprintf(stderr, "spclient: samepage_merge_any: %s\n",
				samepage_strerror(err));
			return 1;
		}
		for (size_t k = 0; k <= len / (120 << 10); k++) {
			char *b = malloc(120 << 10);
			if (!b)
				return 1;
			memset(b, 'm', 120 << 10);
		}
		printf("ready %d\n", (int)getpid());
		fflush(stdout);
		for (;;)
			pause();
	}
	unsigned char *m =
	    mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		perror("spclient: mmap");
		return 1;
	}
	for (size_t off = 0; off < len; off += (size_t)ps) {
		size_t page = off / (size_t)ps;
		memset(m + off, 1 + (int)(page % 4), (size_t)ps);
		if (scatter && page % 2)
			memcpy(m + off, &page, sizeof(page));
	}
	if ((err = samepage_madvise(sp, m, len, SAMEPAGE_MERGEABLE))) {
		fprintf(stderr, "spclient: samepage_madvise: %s\n", samepage_strerror(err));
		return 1;
	}
	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	for (;;)
		pause();
}
