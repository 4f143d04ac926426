// SPDX-License-Identifier: MIT
/*
 * domain.c - the shared half of an engine: the stable index, the pool
 * allocator, the knobs and the domain-wide counters, in one file.
 *
 * A local engine (samepage_open) makes a domain of its own; an engine
 * connected to samepaged (samepage_connect) maps the file of its security
 * domain, which every process of that domain maps too, so that a page of
 * one process can merge onto a KSM page another made.  The lock is a
 * robust, process-shared mutex: a process that dies holding it leaves the
 * next taker EOWNERDEAD, and the state is consistent again because every
 * change made under the lock is a counter or a link written last.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#define POOL_BYTES ((off_t)DOM_NODES << PAGE_SHIFT)

/* Makes the two files of a new domain (memfds here; samepaged passes
 * files of its state directory), with the knobs at their defaults. */
int domain_create(int *index_fd, int *pool_fd, const char *name)
{
	struct stable_index s;
	int ifd = prim_memfd("samepage-index"), pfd = prim_memfd("samepage-pool"), err;

	if (ifd < 0 || pfd < 0)
		goto fail_errno;
	if (ftruncate(ifd, (off_t)DOM_SIZE) || ftruncate(pfd, POOL_BYTES))
		goto fail_errno;
	err = domain_map(&s, ifd);
	if (err)
		goto fail;
	struct domain *d = s.dom;
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&d->lock, &a);
	pthread_mutexattr_destroy(&a);
	for (int i = 0; i < samepage_knob_count(); i++)
		d->knob[i] = samepage_knob_at(i)->def;
	d->last_alloc = NIL;
	if (getrandom(&d->instance, sizeof(d->instance), 0) != sizeof(d->instance))
		d->instance = (uint64_t)prim_now_ns() ^ (uint64_t)getpid();
	snprintf(d->name, sizeof(d->name), "%s", name ? name : "");
	d->magic = DOM_MAGIC;
	domain_unmap(&s);
	*index_fd = ifd;
	*pool_fd = pfd;
	return 0;
fail_errno:
	err = -errno;
fail:
	if (ifd >= 0)
		close(ifd);
	if (pfd >= 0)
		close(pfd);
	return err;
}

int domain_map(struct stable_index *s, int index_fd)
{
	memset(s, 0, sizeof(*s));
	char *m = prim_mmap(NULL, DOM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
			    index_fd, 0);
	if (m == MAP_FAILED)
		return -errno;
	s->dom = (struct domain *)m;
	s->nodes = (struct stable_node *)(m + DOM_OFF_NODES);
	s->free = (uint32_t *)(m + DOM_OFF_FREE);
	s->heads = (uint32_t *)(m + DOM_OFF_HEADS);
	s->hints = (_Atomic uint64_t *)(m + DOM_OFF_HINTS);
	s->fd = index_fd;
	return 0;
}

void domain_unmap(struct stable_index *s)
{
	if (s->dom)
		prim_munmap(s->dom, DOM_SIZE);
	s->dom = NULL;
}

void domain_lock(struct samepage *sp)
{
	struct domain *d = sp->dom;
	int err = pthread_mutex_lock(&d->lock);
	if (err == EOWNERDEAD) {
		/* A process died in the middle of a batch.  Nodes it was
		 * merging into keep a pending count: clear them, and free the
		 * nodes nothing maps (made for merges that never happened). */
		for (uint32_t i = 0; i < d->nr; i++) {
			struct stable_node *n = &sp->stable.nodes[i];
			n->pending = 0;
			if (n->in_use)
				stable_drop(sp, i, 0, false);
		}
		pthread_mutex_consistent(&d->lock);
	}
}

void domain_unlock(struct samepage *sp)
{
	pthread_mutex_unlock(&sp->dom->lock);
}
