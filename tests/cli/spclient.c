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
 * a mapping of their own each (the mapping budget).
 *
 * usage: spclient DOMAIN MIB [scatter]
 */
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

	if (argc != 3 && !(argc == 4 && !strcmp(argv[3], "scatter"))) {
		fprintf(stderr, "usage: spclient DOMAIN MIB [scatter]\n");
		return 2;
	}
	size_t len = (size_t)atol(argv[2]) << 20;
	long ps = sysconf(_SC_PAGESIZE);
	if ((err = samepage_connect(&sp, argv[1]))) {
		fprintf(stderr, "spclient: samepage_connect(%s): %s\n", argv[1],
			samepage_strerror(err));
		return 1;
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
		if (argc == 4 && page % 2)
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
