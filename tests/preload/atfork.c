// SPDX-License-Identifier: MIT
/*
 * atfork.c - a library loaded before the preload library (after it in
 * LD_PRELOAD: initialized first), whose fork handlers, registered first,
 * allocate and free a block that malloc maps by itself (64 MiB, above its
 * largest mmap threshold), and map, re-protect and unmap memory of their
 * own.  Its parent and child handlers run before the preload library's,
 * while the forking thread holds the library's locks (test_preload
 * atfork).
 */
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

static void block(void)
{
	volatile char *b = malloc(64 << 20);
	if (b) {
		b[0] = 1;
		free((void *)b);
	}
	char *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		abort();
	m[0] = 1;
	if (mmap(m, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
		 0) != m ||
	    mprotect(m, 1 << 20, PROT_READ) || madvise(m, 1 << 20, MADV_DONTNEED) ||
	    munmap(m, 1 << 20))
		abort();
}

__attribute__((constructor)) static void atfork_init(void)
{
	pthread_atfork(block, block, block);
}
