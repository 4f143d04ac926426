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
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define POOL_BYTES ((off_t)DOM_NODES << PAGE_SHIFT)

/* Where the parts of the index are in its file, for a domain of cap
 * nodes: the size of the file.  samepaged's domains (cap DOM_NODES) have
 * them at the fixed offsets of types.h, which its clients share; a local
 * engine's domain of fewer nodes (its address space is limited:
 * pool_pages_allowed()) has them packed one after the other, so that its
 * mapping is no larger than its pool needs (RELIABILITY.md 79: 387 MiB
 * for every limit, 6 MiB now under 8 GiB). */
static size_t dom_layout(uint32_t cap, size_t *free_off, size_t *heads_off, size_t *hints_off)
{
	if (cap >= DOM_NODES) {
		*free_off = DOM_OFF_FREE;
		*heads_off = DOM_OFF_HEADS;
		*hints_off = DOM_OFF_HINTS;
		return DOM_SIZE;
	}
	size_t round = PAGE_SIZE - 1;
	*free_off = DOM_OFF_NODES + (((size_t)cap * sizeof(struct stable_node) + round) & ~round);
	*heads_off = *free_off + (((size_t)cap * sizeof(uint32_t) + round) & ~round);
	*hints_off = *heads_off + (size_t)DOM_BUCKETS * sizeof(uint32_t);
	return *hints_off + (size_t)DOM_HINTS * sizeof(uint64_t);
}

/* Makes the two files of a new domain of cap nodes (memfds here;
 * samepaged passes files of its state directory, of DOM_NODES), with the
 * knobs at their defaults. */
int domain_create(int *index_fd, int *pool_fd, const char *name, uint32_t cap)
{
	struct stable_index s;
	size_t f, h, hi;
	int ifd = prim_memfd("samepage-index"), pfd = prim_memfd("samepage-pool"), err;

	err = ifd < 0 ? ifd : pfd < 0 ? pfd : 0;
	if (!err)
		err = prim_truncate(ifd, (off_t)dom_layout(cap, &f, &h, &hi));
	if (!err)
		err = prim_truncate(pfd, POOL_BYTES);
	if (!err)
		err = domain_map(&s, ifd, cap);
	if (err) {
		if (ifd >= 0)
			prim_close(ifd);
		if (pfd >= 0)
			prim_close(pfd);
		return err;
	}
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
	if (prim_random(&d->instance, sizeof(d->instance)))
		d->instance = (uint64_t)prim_now_ns() ^ (uint64_t)prim_getpid();
	snprintf(d->name, sizeof(d->name), "%s", name ? name : "");
	d->layout = SHARED_LAYOUT;
	d->magic = DOM_MAGIC;
	domain_unmap(&s);
	*index_fd = ifd;
	*pool_fd = pfd;
	return 0;
}

/* Maps the index of a domain of cap nodes (see dom_layout()). */
int domain_map(struct stable_index *s, int index_fd, uint32_t cap)
{
	memset(s, 0, sizeof(*s));
	char *m;
	size_t f, h, hi, size = dom_layout(cap, &f, &h, &hi);
	int err = prim_map_own((void **)&m, size, PROT_READ | PROT_WRITE, index_fd);
	if (err)
		return err;
	s->dom = (struct domain *)m;
	s->nodes = (struct stable_node *)(m + DOM_OFF_NODES);
	s->free = (uint32_t *)(m + f);
	s->heads = (uint32_t *)(m + h);
	s->hints = (_Atomic uint64_t *)(m + hi);
	s->fd = index_fd;
	s->cap = cap < DOM_NODES ? cap : DOM_NODES;
	s->size = size;
	return 0;
}

void domain_unmap(struct stable_index *s)
{
	if (s->dom)
		prim_munmap(s->dom, s->size);
	s->dom = NULL;
}

/* Takes the domain's lock: 0, or EOWNERDEAD when a process died holding
 * it (then the caller repairs what it may have left half done, see
 * index_lock(), and marks the lock consistent). */
int domain_lock(struct domain *d)
{
	int err = pthread_mutex_trylock(&d->lock);
	if (err == EBUSY) { /* counted while it waits: domain_unlock() */
		atomic_fetch_add(&d->lock_waiters, 1);
		err = pthread_mutex_lock(&d->lock);
		atomic_fetch_sub(&d->lock_waiters, 1);
	}
	return err == EOWNERDEAD ? EOWNERDEAD : 0;
}

/* The same, waiting at most ms milliseconds: EBUSY when another thread
 * holds the lock that long (samepaged never waits longer for a lock its
 * clients hold: index_trylock()). */
int domain_trylock(struct domain *d, unsigned ms)
{
	struct timespec deadline;
	prim_deadline(ms, &deadline);
	int err = pthread_mutex_trylock(&d->lock);
	if (err == EBUSY && ms) {
		atomic_fetch_add(&d->lock_waiters, 1);
		err = pthread_mutex_timedlock(&d->lock, &deadline);
		atomic_fetch_sub(&d->lock_waiters, 1);
	}
	return err == EOWNERDEAD ? err : err ? EBUSY : 0;
}

/* Unlocks: true if a thread (of any process) waits for the lock, for
 * domain_hand_over(): the futex word says so (glibc marks it also once
 * more than needed, after a waiter took the lock) and so does the count
 * of waiters (which a waiter killed while it waited leaves too high). */
bool domain_unlock(struct domain *d)
{
	bool waiters = prim_mutex_waiters(&d->lock) && atomic_load(&d->lock_waiters);
	pthread_mutex_unlock(&d->lock);
	return waiters;
}

/*
 * After an unlock with waiters, lets one of them have the lock before this
 * thread takes it again.  glibc's mutexes are not fair: the woken waiter
 * must still be scheduled to take it, and a scanner that locks again at
 * once (with sleep_millisecs 0 it does, batch after batch) wins nearly
 * every time.  Clients of a domain scanning hot on a loaded machine
 * starved another's scanner for minutes, and that scanner held its
 * process's address-space lock meanwhile, which the application's munmap
 * waits for (RELIABILITY.md, finding 29).  At most 2 ms, only when
 * someone waited.
 */
void domain_hand_over(struct domain *d)
{
	const struct timespec pause = {0, 50000};
	for (int i = 0; i < 40 && !prim_mutex_held(&d->lock); i++)
		nanosleep(&pause, NULL);
}
