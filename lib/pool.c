// SPDX-License-Identifier: MIT
/*
 * pool.c - the pool of KSM pages: one memfd, and its allocator.
 *
 * Every KSM page is a page of this file (pool page i belongs to stable
 * node i).  The engine maps the whole file MAP_SHARED at `view` to write
 * new KSM pages (read-only in samepaged's clients: the daemon writes
 * them) and to compare pages with them; the application's merged
 * pages map it MAP_PRIVATE, so a write gets a private copy from the kernel
 * (copy-on-write) and the pool page stays unchanged.  The file is sparse:
 * a page costs memory from its first write until it is punched.
 *
 * Runs: two VMs holding the same image at the same offsets merge onto one
 * contiguous run of pool pages, so that each run is one mapping (one VMA).
 * pool_alloc() therefore prefers the page the caller wants (the one after
 * the previous page's), then the page after the last one it gave.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

/* The smallest view of the pool a local engine makes do with. */
#define POOL_MIN_PAGES (1u << 11) /* 8 MiB */
/* Under an address-space limit a local engine's pool takes 1/16 of it. */
#define POOL_AS_SHARE 16

/* The KSM pages a local engine may hold: all DOM_NODES (64 GiB of address
 * space, no memory) where the process's address space is not limited;
 * under a limit (RLIMIT_AS: `ulimit -v`, systemd's LimitAS=) 1/16 of it,
 * at least 8 MiB.  The pool's view took the largest power of two that
 * fitted, and the program was left with little (RELIABILITY.md 79); with
 * its index and the arena the library now takes about 1/12 of a limit. */
uint32_t pool_pages_allowed(void)
{
	return (uint32_t)(as_share((size_t)DOM_NODES << PAGE_SHIFT, POOL_AS_SHARE,
				   (size_t)POOL_MIN_PAGES << PAGE_SHIFT) >>
			  PAGE_SHIFT);
}

/* Maps cap pages of the pool (DOM_NODES for samepaged's domains) where
 * the process may, else the largest half, quarter, ... of it down to 8
 * MiB (valgrind's 32 GiB address space, which RLIMIT_AS does not say):
 * view_pages says how much.  A local engine then holds that many KSM
 * pages at most (pool_capacity, merges_skipped_pool_full); samepaged and
 * its clients need it all (the other processes' pages may be anywhere). */
int pool_open(struct pool *p, int fd, uint32_t cap)
{
	memset(p, 0, sizeof(*p));
	p->fd = fd;
	int err = -ENOMEM;
	for (size_t pages = cap; pages >= POOL_MIN_PAGES || pages == cap; pages /= 2) {
		p->view_pages = pages;
		/* Not in core dumps: 64 GiB of holes that a dump would fill. */
		err = prim_map_own((void **)&p->view, pages << PAGE_SHIFT, PROT_READ | PROT_WRITE,
				   fd);
		if (err == -EACCES) /* samepaged hands its clients the pool read-only */
			err = prim_map_own((void **)&p->view, pages << PAGE_SHIFT, PROT_READ, fd);
		if (err != -ENOMEM && err != -EINVAL)
			break;
	}
	if (err) {
		p->view = NULL;
		return err;
	}
	return prim_file_id(fd, &p->dev, &p->ino);
}

void pool_destroy(struct pool *p)
{
	/* The application's mappings keep their pages (and the file) alive:
	 * closing the fd and unmapping the view frees nothing they use. */
	if (p->view)
		prim_munmap(p->view, p->view_pages << PAGE_SHIFT);
	if (p->fd >= 0)
		prim_close(p->fd);
	memset(p, 0, sizeof(*p));
	p->fd = -1;
}

static bool page_free(struct samepage *sp, uint32_t o)
{
	return o < sp->dom->nr && !sp->stable.nodes[o].in_use && !sp->stable.nodes[o].pending;
}

/* Whether pool_alloc() would give pool page off to a caller that wants it. */
bool pool_can_take(struct samepage *sp, uint32_t off)
{
	return off < pool_capacity(sp) && (off == sp->dom->nr || page_free(sp, off));
}

/* A samepaged domain's files are on tmpfs, where a page that cannot be
 * allocated is a SIGBUS at the first write (measured: samepaged and its
 * client both killed when the state directory's filesystem filled up).
 * So a page of the index or of this process's ledger is allocated
 * (prim_populate) before anything is first written there, and a merge
 * that finds no room does not happen.  This one: the page of the ledger's
 * refs and held arrays that node idx's counts are on (each page holds
 * 1024 nodes'); once per page.  False if there is no room. */
bool ledger_ready(struct samepage *sp, uint32_t idx)
{
	if (!sp->stable.refs)
		return true;
	uint32_t pg = idx / (uint32_t)(PAGE_SIZE / sizeof(uint32_t));
	uint64_t bit = 1ULL << (pg % 64);
	if (sp->ledger_pages[pg / 64] & bit)
		return true;
	if (prim_populate((void *)&sp->stable.refs[idx], sizeof(uint32_t)) ||
	    prim_populate((void *)&sp->stable.held[idx], sizeof(uint32_t)))
		return false;
	sp->ledger_pages[pg / 64] |= bit;
	return true;
}

/* Whether the last PLACE left pool page idx unwritten (client.c): it
 * must not be read (a hole of a full tmpfs is a SIGBUS). */
bool pool_unplaced(struct samepage *sp, uint32_t idx)
{
	for (uint32_t k = 0; k < sp->nunplaced; k++)
		if (sp->unplaced[k] == idx)
			return true;
	return false;
}

/* The pages a new node at o writes, allocated first (see ledger_ready()):
 * in the index, a page of nodes that a new high-water mark starts; in a
 * samepaged client, its ledger's counts and a staging page.  False if
 * there is no room: no node is made. */
static bool node_room(struct samepage *sp, uint32_t o)
{
	struct stable_node *n = &sp->stable.nodes[o];
	uintptr_t first = (uintptr_t)n, last = (uintptr_t)(n + 1) - 1;
	if (o == sp->dom->nr && (first - 1) / PAGE_SIZE != last / PAGE_SIZE &&
	    prim_populate(n, sizeof(*n)))
		return false;
	return ledger_ready(sp, o) && (!sp->place_room || sp->place_room(sp));
}

/* Called with the domain locked.  The free stack may hold pages taken
 * since by `want`: they are skipped when popped. */
int pool_alloc(struct samepage *sp, uint32_t want, uint32_t *off)
{
	struct domain *d = sp->dom;
	uint32_t cand[2] = {want, d->last_alloc == NIL ? NIL : d->last_alloc + 1};
	uint32_t o = NIL;

	for (int c = 0; c < 2 && o == NIL; c++)
		if (cand[c] != NIL && pool_can_take(sp, cand[c]))
			o = cand[c];
	while (o == NIL && d->free_top) {
		uint32_t f = sp->stable.free[--d->free_top];
		if (page_free(sp, f))
			o = f;
	}
	if (o == NIL)
		o = d->nr;
	if (o >= pool_capacity(sp) || !node_room(sp, o))
		return -ENOSPC;
	if (o == d->nr)
		d->nr++;
	*off = o;
	d->last_alloc = o;
	return 0;
}

/* Writes the contents of a new KSM page at pool page off: into our own
 * pool, or staged for samepaged to write (its clients' views are
 * read-only).  Into our own with a write to the file: a write through our
 * view would fault, and the kernel clears a new shmem page before our
 * copy and maps it here (2-VM converged 6% sooner without that).  But
 * where shmem may have huge pages (shmem_enabled always or within_size)
 * a write to the file allocates 2 MiB for one page: then through the
 * view, which has none (prim_map_own). */
void pool_write(struct samepage *sp, uint32_t off, const void *page)
{
	if (sp->place)
		sp->place(sp, off, page);
	else if (sp->pool.thp_possible ||
		 prim_pwrite_all(sp->pool.fd, page, PAGE_SIZE, (off_t)off << PAGE_SHIFT))
		memcpy(pool_page(&sp->pool, off), page, PAGE_SIZE);
}

/* What pool page off holds for the index's compares: what this batch
 * placed there, while samepaged has not written it yet. */
const void *pool_contents(struct samepage *sp, uint32_t off)
{
	const void *staged = sp->nplace && sp->staged ? sp->staged(sp, off) : NULL;
	return staged ? staged : pool_page(&sp->pool, off);
}

/* Gives a pool page back to the allocator, and to the kernel (fallocate
 * PUNCH_HOLE): at once for our own pool, after samepaged's check that no
 * client still refers to it for a domain's.  Only when no mapping can
 * still read it. */
void pool_release(struct samepage *sp, uint32_t off)
{
	struct domain *d = sp->dom;
	if (sp->punch)
		sp->punch(sp, off);
	else if (!sp->stable.refs)
		prim_punch(sp->pool.fd, (off_t)off << PAGE_SHIFT, (off_t)PAGE_SIZE);
	d->reclaimed++;
	/* A page of the free stack is allocated when the stack first reaches
	 * it (ledger_ready()); without room, the page is not stacked (a new
	 * node takes another). */
	if (d->free_top < sp->stable.cap &&
	    (d->free_top % (PAGE_SIZE / sizeof(uint32_t)) ||
	     !prim_populate(&sp->stable.free[d->free_top], sizeof(uint32_t))))
		sp->stable.free[d->free_top++] = off;
}
