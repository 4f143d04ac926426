// SPDX-License-Identifier: MIT
/*
 * pool.c - the pool of KSM pages: one memfd.
 *
 * Every KSM page is a page of this file.  The engine maps the whole file
 * MAP_SHARED at `view` to write new KSM pages and to compare pages with
 * them; the application's merged pages map it MAP_PRIVATE, so a write gets
 * a private copy from the kernel (copy-on-write) and the pool page stays
 * unchanged.  The view is a reserved range, mapped further as the file
 * grows, so that pool page addresses never move.
 *
 * Runs: two VMs holding the same image at the same offsets merge onto one
 * contiguous run of pool pages, so that each run is one mapping (one VMA).
 * pool_alloc() therefore prefers the page after the one it gave last.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* 64 GiB of address space per engine: a reservation costs nothing. */
#define POOL_VIEW_PAGES (16UL << 20)
#define POOL_GROW_PAGES 4096UL

int pool_init(struct pool *p)
{
	struct stat st;
	memset(p, 0, sizeof(*p));
	p->fd = prim_memfd("samepage-pool");
	if (p->fd < 0)
		return -errno;
	p->view_pages = POOL_VIEW_PAGES;
	p->view = prim_mmap(NULL, p->view_pages << PAGE_SHIFT, PROT_NONE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p->view == MAP_FAILED) {
		int err = -errno;
		close(p->fd);
		return err;
	}
	if (fstat(p->fd, &st) == 0) {
		p->dev = st.st_dev;
		p->ino = st.st_ino;
	}
	p->last_alloc = NIL;
	return 0;
}

void pool_destroy(struct pool *p)
{
	/* The application's mappings keep their pages (and the file) alive:
	 * closing the fd and unmapping the view frees nothing they use. */
	if (p->view)
		prim_munmap(p->view, p->view_pages << PAGE_SHIFT);
	if (p->fd >= 0)
		close(p->fd);
	free(p->free_list);
	memset(p, 0, sizeof(*p));
	p->fd = -1;
}

static int pool_grow(struct pool *p, size_t pages)
{
	size_t size = p->file_pages + POOL_GROW_PAGES;
	if (size < pages)
		size = pages;
	if (size > p->view_pages)
		return -ENOSPC;
	if (ftruncate(p->fd, (off_t)(size << PAGE_SHIFT)) < 0)
		return -errno;
	void *m = prim_mmap(p->view + (p->file_pages << PAGE_SHIFT),
			    (size - p->file_pages) << PAGE_SHIFT, PROT_READ | PROT_WRITE,
			    MAP_SHARED | MAP_FIXED, p->fd, (off_t)(p->file_pages << PAGE_SHIFT));
	if (m == MAP_FAILED)
		return -errno;
	p->file_pages = size;
	return 0;
}

static bool take_free(struct pool *p, uint32_t o)
{
	/* Only the recent frees are searched: enough to extend a run. */
	for (size_t i = p->nfree, seen = 0; i-- > 0 && seen < 64; seen++) {
		if (p->free_list[i] == o) {
			p->free_list[i] = p->free_list[--p->nfree];
			return true;
		}
	}
	return false;
}

/* Takes offset `want` if it is free (to extend a run), else the page after
 * the last one given, else any free page, else a new one. */
int pool_alloc(struct pool *p, uint32_t want, uint32_t *off)
{
	uint32_t cand[2] = {want, p->last_alloc == NIL ? NIL : p->last_alloc + 1};
	uint32_t o = NIL;

	for (int c = 0; c < 2 && o == NIL; c++) {
		if (cand[c] == NIL || cand[c] > p->next)
			continue;
		if (cand[c] == p->next || take_free(p, cand[c]))
			o = cand[c];
	}
	if (o == NIL && p->nfree)
		o = p->free_list[--p->nfree];
	if (o == NIL || o == p->next) {
		if (p->next >= p->file_pages) {
			int err = pool_grow(p, (size_t)p->next + 1);
			if (err)
				return err;
		}
		o = p->next++;
	}
	*off = o;
	p->last_alloc = o;
	p->used++;
	return 0;
}

/* Gives a pool page back.  With punch, its memory goes back to the kernel
 * (fallocate PUNCH_HOLE): only when no mapping can still read it. */
void pool_release(struct pool *p, uint32_t off, bool punch)
{
	if (punch) {
		fallocate(p->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			  (off_t)off << PAGE_SHIFT, (off_t)PAGE_SIZE);
		p->reclaimed++;
	}
	if (p->nfree == p->free_cap) {
		size_t cap = p->free_cap ? p->free_cap * 2 : 1024;
		uint32_t *n = realloc(p->free_list, cap * sizeof(*n));
		if (!n)
			return; /* the page is lost to reuse, not to correctness */
		p->free_list = n;
		p->free_cap = cap;
	}
	p->free_list[p->nfree++] = off;
	p->used--;
}
