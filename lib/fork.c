// SPDX-License-Identifier: MIT
/*
 * fork.c - fork() keeps its semantics.
 *
 * The child gets copies of the parent's mappings, including private
 * mappings of the pool.  The parent must then never punch or reuse a pool
 * page the child may still read, so at fork every KSM page is pinned; the
 * child writes its pid in a page shared with the parent, and the parent
 * unpins once no child maps the pool any more (it exited or exec'd).  The
 * child's copy of the engine is inert (-ECHILD): it may open its own.
 */
#include "internal.h"

#include <errno.h>

/* Pins every KSM page this process maps, once per process: `pinned`
 * counts the processes (of the domain) whose children may map the page.
 * Runs in the fork handler, so it allocates nothing from the C library
 * (a sanitizer's or allocator's fork lock may be held): a bitmap of the
 * nodes, then the sorted list, both mapped with raw mmap. */
static void pins_free(uint32_t *pins, size_t n)
{
	if (pins)
		lib_pages_free(pins, n * sizeof(*pins));
}

/* engine_free(): the pin list goes with the engine. */
void fork_forget_pins(struct samepage *sp)
{
	pins_free(sp->pins, sp->npins);
	sp->pins = NULL;
	sp->npins = 0;
}

static void pin_mapped_nodes(struct samepage *sp)
{
	size_t nr = sp->dom->nr, bytes = ((nr + 63) / 64) * 8, n = 0;
	if (!nr)
		return;
	uint64_t *bits = lib_pages(bytes);
	for (size_t ri = 0; ri < sp->nregions; ri++) {
		struct region *r = &sp->regions[ri];
		for (size_t i = 0; i < r->npages; i++) {
			if (!(r->meta[i].flags & PM_STABLE))
				continue;
			uint32_t id = r->meta[i].link;
			if (!bits) {
				/* cannot count: for ever (and a reference that
				 * samepaged keeps until this process is gone) */
				if (sp->stable.nodes[id].pinned != 255)
					ledger_pin(sp, id);
				sp->stable.nodes[id].pinned = 255;
				continue;
			}
			if (!(bits[id / 64] & (1ULL << (id % 64)))) {
				bits[id / 64] |= 1ULL << (id % 64);
				n++;
			}
		}
	}
	if (!bits)
		return;
	for (size_t k = 0; k < sp->npins; k++) /* the old pins stay pins */
		if (!(bits[sp->pins[k] / 64] & (1ULL << (sp->pins[k] % 64)))) {
			bits[sp->pins[k] / 64] |= 1ULL << (sp->pins[k] % 64);
			n++;
		}
	uint32_t *ids = n ? lib_pages(n * sizeof(*ids)) : NULL; /* what pins_free() frees */
	if (n && !ids) {
		lib_pages_free(bits, bytes);
		return;
	}
	size_t u = 0, old = 0;
	for (uint32_t id = 0; id < nr && u < n; id++) {
		if (!(bits[id / 64] & (1ULL << (id % 64))))
			continue;
		ids[u++] = id;
		/* Count this process once on the nodes it had not pinned yet. */
		while (old < sp->npins && sp->pins[old] < id)
			old++;
		bool had = old < sp->npins && sp->pins[old] == id;
		if (!had && sp->stable.nodes[id].pinned < 255) {
			sp->stable.nodes[id].pinned++;
			ledger_pin(sp, id); /* samepaged keeps it for the children too */
		}
	}
	lib_pages_free(bits, bytes);
	pins_free(sp->pins, sp->npins);
	sp->pins = ids;
	sp->npins = u;
}

/* A samepaged client closing its engine: the KSM pages it maps are pinned
 * as at a fork, since a child it forks after the close maps them too
 * (counted in the fork area its stale pool keeps: unmerge.c); samepaged
 * keeps them while such a child lives, and drops them with the rest once
 * the process and its children are gone (RELIABILITY.md 53). */
void fork_pin_at_close(struct samepage *sp)
{
	pthread_mutex_lock(&sp->lock);
	index_lock(sp);
	pin_mapped_nodes(sp);
	index_unlock(sp);
	pthread_mutex_unlock(&sp->lock);
}

/* The domain lock is not held across fork (a robust mutex cannot be
 * released by the child): the KSM pages this process maps are pinned
 * before, while sp->lock keeps the scanner from making new ones. */
static void fork_prepare(void)
{
	pthread_mutex_lock(&engines_lock);
	for (struct samepage *sp = engines; sp; sp = sp->next_engine) {
		/* Every fork counts, a forked child's too: its own children
		 * (grandchildren) map the same pool pages. */
		atomic_fetch_add(&sp->fork->started, 1);
		if (!engine_alive(sp))
			continue;
		pthread_mutex_lock(&sp->lock);
		index_lock(sp);
		pin_mapped_nodes(sp);
		index_unlock(sp);
	}
	as_lock_exclusive(); /* no merge window is open across the fork */
	stale_pools_lock();  /* the child adds to them */
	stale_forks_started();
	promise_fork_lock(); /* the child's wrappers take it */
	guard_fork_lock();   /* the reads in flight */
	alloc_fork_lock();   /* last: every lock above allocates under it */
	fork_forking = true;
}

static void fork_parent(void)
{
	fork_forking = false;
	alloc_fork_unlock();
	guard_fork_parent();
	promise_fork_unlock();
	stale_pools_unlock();
	as_unlock();
	for (struct samepage *sp = engines; sp; sp = sp->next_engine)
		if (engine_alive(sp))
			pthread_mutex_unlock(&sp->lock);
	pthread_mutex_unlock(&engines_lock);
}

static void fork_child(void)
{
	pid_t parent = prim_getppid();
	prim_fork_child();
	fork_forking = false;
	alloc_fork_unlock();
	guard_fork_child(); /* its own userfaultfd, no reads in flight */
	promise_fork_unlock();
	/* The wrappers' readers of the list were other threads, not copied
	 * (its writers hold engines_lock, which this thread took). */
	pthread_rwlock_init(&engines_rw, NULL);
	stale_forks_register(prim_getpid());
	stale_pools_unlock();
	as_reinit(); /* the parent's thread held it: it cannot be released here */
	for (struct samepage *sp = engines; sp; sp = sp->next_engine) {
		uint32_t k = atomic_fetch_add(&sp->fork->registered, 1);
		if (k < MAX_FORK_CHILDREN)
			atomic_store(&sp->fork->pids[k], prim_getpid());
		/* Our merged pages map its pool: discards must still read zeros. */
		stale_pool_add(sp->pool.dev, sp->pool.ino, NULL, false);
		if (sp->owner != parent)
			continue;	    /* not locked in fork_prepare */
		sp->thread_started = false; /* threads do not survive fork */
		pthread_mutex_unlock(&sp->lock);
	}
	pthread_mutex_unlock(&engines_lock);
}

/* Does process pid still map our pool? */
static int maps_our_pool(const struct map_entry *e, void *arg)
{
	const struct pool *p = arg;
	return !e->anon && e->dev == p->dev && e->ino == p->ino;
}

static bool pid_maps_pool(struct samepage *sp, pid_t pid)
{
	return prim_maps_walk(pid, maps_our_pool, &sp->pool) == 1;
}

/* Whether a child that the fork area f names (started forks, registered
 * children) may still map the pool: one whose pid is not written yet, a
 * fork begun and not registered, more children than f can name, or one
 * that maps(pid, arg) says maps it.  samepaged asks it too, with a maps()
 * that looks for the ledger in the named process's maps, and does not take
 * a gone client's word for the rest: daemon/state.c's ledger_holder()
 * then looks for a process that maps the ledger. */
bool fork_area_live(const struct fork_shared *f, uint32_t started, uint32_t reg,
		    bool (*maps)(pid_t pid, void *arg), void *arg)
{
	if (reg != started || reg > MAX_FORK_CHILDREN)
		return true;
	for (uint32_t k = 0; k < reg; k++) {
		pid_t pid = atomic_load(&f->pids[k]);
		if (!pid || (pid != FORK_PID_GONE && maps(pid, arg)))
			return true; /* its pid not written yet, or it maps the pool */
	}
	return false;
}

static bool pid_maps_our_pool(pid_t pid, void *sp)
{
	return pid_maps_pool(sp, pid);
}

/* Whether every forked child has let go of the pool (exited or exec'd),
 * with no fork under way: what fork_reap() waits for.  Needs no lock: a
 * counter read asks it first, and waits for the scanner only when there is
 * something to reap (a live child would make every read wait). */
bool fork_children_gone(struct samepage *sp, uint32_t *started_out, uint32_t *reg_out)
{
	uint32_t started = atomic_load(&sp->fork->started);
	uint32_t reg = atomic_load(&sp->fork->registered);
	if (started_out)
		*started_out = started, *reg_out = reg;
	return started && !fork_area_live(sp->fork, started, reg, pid_maps_our_pool, sp);
}

/* This process's pin on node id goes (the node is freed if nothing maps
 * it any more). */
static void unpin(struct samepage *sp, uint32_t id)
{
	ledger_unpin(sp, id);
	stable_unpin(sp, id);
}

/* Unpins the pool once every forked child has let go of it. */
void fork_reap(struct samepage *sp)
{
	uint32_t started, reg;
	if (!fork_children_gone(sp, &started, &reg))
		return;
	/* The counters are only reset if no fork began meanwhile. */
	if (!atomic_compare_exchange_strong(&sp->fork->started, &started, 0))
		return;
	/* The next children write their pids here (0: not written yet); they
	 * are forked once this thread lets go of sp->lock. */
	for (uint32_t k = 0; k < reg; k++)
		atomic_store(&sp->fork->pids[k], 0);
	atomic_store(&sp->fork->registered, 0);
	for (size_t k = 0; k < sp->npins; k++)
		unpin(sp, sp->pins[k]);
	pins_free(sp->pins, sp->npins);
	sp->pins = NULL;
	sp->npins = 0;
}

/* The pool pages a live child maps, from its /proc/PID/maps: a node is its
 * pool page. */
struct coverage {
	const struct pool *pool;
	uint64_t *bits;
	size_t nr;
	bool any;
};

static int cover(const struct map_entry *e, void *arg)
{
	struct coverage *c = arg;
	/* The engine's own view of the whole pool (shared) is no page of
	 * the application's: the child's copy of the engine is inert. */
	if (e->anon || e->shared || e->dev != c->pool->dev || e->ino != c->pool->ino)
		return 0;
	c->any = true;
	uint64_t first = e->pgoff >> PAGE_SHIFT, n = (e->end - e->start) >> PAGE_SHIFT;
	for (uint64_t o = first; o < first + n && o < c->nr; o++)
		c->bits[o / 64] |= 1ULL << (o % 64);
	return 0;
}

/*
 * At the end of a full scan: while some forked children live, unpins the
 * pool pages none of them maps any more.  fork_reap() only unpins when
 * every child is gone: a program that keeps one child for its lifetime
 * (a logger, a server's helper) and forks others kept every KSM page
 * mapped at any of its forks pinned for good, its pool growing as its
 * contents changed.  A child only loses mappings of the pool (it makes
 * its own merges in a pool of its own, or maps the domain's, which only
 * keeps more pinned), and a child forked after its maps were read (a
 * grandchild) maps what its parent mapped then: a fork begun meanwhile
 * (started moved) makes this wait for the next full scan.
 */
void fork_reap_pages(struct samepage *sp)
{
	uint32_t started = atomic_load(&sp->fork->started);
	uint32_t reg = atomic_load(&sp->fork->registered);
	fork_reap(sp);
	if (!started || reg != started || reg > MAX_FORK_CHILDREN || !sp->npins ||
	    !atomic_load(&sp->fork->started))
		return; /* a fork under way, too many children, or all reaped */
	size_t nr = sp->dom->nr, bytes = ((nr + 63) / 64) * 8;
	struct coverage c = {&sp->pool, lib_pages(bytes), nr, false};
	if (!c.bits)
		return;
	for (uint32_t k = 0; k < reg; k++) {
		pid_t pid = atomic_load(&sp->fork->pids[k]);
		if (pid == FORK_PID_GONE)
			continue;
		if (!pid)
			goto out; /* its pid not written yet */
		c.any = false;
		int err = prim_maps_walk(pid, cover, &c);
		if (err < 0 && err != -ENOENT && err != -ESRCH)
			goto out; /* a child whose maps are closed to us keeps every pin */
		if (!c.any)
			atomic_store(&sp->fork->pids[k], FORK_PID_GONE); /* gone, or exec'd */
	}
	if (atomic_load(&sp->fork->started) != started)
		goto out;
	size_t keep = 0;
	for (size_t k = 0; k < sp->npins; k++)
		keep += (c.bits[sp->pins[k] / 64] >> (sp->pins[k] % 64)) & 1;
	if (keep == sp->npins)
		goto out;
	uint32_t *ids = keep ? lib_pages(keep * sizeof(*ids)) : NULL;
	if (keep && !ids)
		goto out;
	size_t u = 0;
	for (size_t k = 0; k < sp->npins; k++) {
		uint32_t id = sp->pins[k];
		if ((c.bits[id / 64] >> (id % 64)) & 1)
			ids[u++] = id;
		else
			unpin(sp, id);
	}
	pins_free(sp->pins, sp->npins);
	sp->pins = ids;
	sp->npins = u;
out:
	lib_pages_free(c.bits, bytes);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void register_atfork(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

void fork_init(void)
{
	pthread_once(&atfork_once, register_atfork);
}
