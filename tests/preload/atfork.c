// SPDX-License-Identifier: MIT
/*
 * atfork.c - a library loaded before the preload library (after it in
 * LD_PRELOAD: initialized first), whose fork handlers, registered first,
 * allocate and free a block that malloc maps by itself (64 MiB, above its
 * largest mmap threshold).  Its parent and child handlers run before the
 * preload library's, while the forking thread holds the library's locks
 * (test_preload atfork).
 */
#include <pthread.h>
#include <stdlib.h>

static void block(void)
{
	volatile char *b = malloc(64 << 20);
	if (b) {
		b[0] = 1;
		free((void *)b);
	}
}

__attribute__((constructor)) static void atfork_init(void)
{
	pthread_atfork(block, block, block);
}
