// SPDX-License-Identifier: MIT
/*
 * engine.c - libsamepage's public calls: an engine's life (open, close),
 * its ranges (madvise, alloc, free, discard), its knobs and counters.
 *
 * An engine is a domain (the stable index and the pool, domain.c/pool.c),
 * the process's mergeable ranges (region.c) and a scanner thread
 * (scan.c).  samepage_open() makes a domain of its own; samepage_connect()
 * (client.c) maps one samepaged shares between processes.  The knobs
 * behave as the kernel's sysfs files do (knob_store() in knobs.c), and the
 * counters have one definition (counters.c).
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ---- open / close ---- */

/* Makes an engine over a domain's two files (it owns the fds), of cap
 * nodes (DOM_NODES but for a local engine under an address-space limit). */
int engine_open(struct samepage **out, int index_fd, int pool_fd, uint32_t cap)
{
	index_fd = prim_own_fd(index_fd); /* its memfds, or samepaged's files */
	pool_fd = prim_own_fd(pool_fd);
	struct samepage *sp;
	int err;

	*out = NULL;
	sp = lib_calloc(1, sizeof(*sp));
	if (!sp) {
		prim_close(index_fd);
		prim_close(pool_fd);
		return -ENOMEM;
	}
	sp->owner = prim_getpid();
	pthread_mutex_init(&sp->lock, NULL);
	pthread_mutex_init(&sp->forget_lock, NULL);
	pthread_cond_init(&sp->wake, NULL);
	sp->pool.fd = -1;
	sp->stable.fd = -1;
	sp->conn_fd = -1;
	sp->buf = lib_pages(PAGE_SIZE);
	sp->pagemap = lib_calloc(BATCH_PAGES, sizeof(uint64_t));
	sp->reqs = lib_calloc(BATCH_PAGES * 2, sizeof(struct merge_req));
	if (prim_mmap((void **)&sp->fork, NULL, PAGE_SIZE, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0))
		sp->fork = NULL;
	err = domain_map(&sp->stable, index_fd, cap);
	if (err) {
		prim_close(index_fd);
		prim_close(pool_fd);
		goto fail;
	}
	sp->dom = sp->stable.dom;
	sp->knob = sp->dom->knob;
	sp->unmerge_epoch = atomic_load(&sp->dom->unmerge_epoch);
	err = pool_open(&sp->pool, pool_fd, cap);
	if (err) {
		if (sp->pool.fd < 0)
			prim_close(pool_fd);
		goto fail;
	}
	err = -ENOMEM;
	if (!sp->buf || !sp->pagemap || !sp->reqs || !sp->fork)
		goto fail;
	err = unstable_start(sp);
	if (err)
		goto fail;
	sp->c.max_map_count = (uint64_t)prim_max_map_count();
	guard_own_statics();
	handler_ensure();
	fork_init();
	*out = sp;
	return 0;
fail:
	engine_free(sp);
	return err;
}

/* Starts the scanner and lists the engine for interpose.c and fork. */
int engine_start(struct samepage *sp)
{
	engine_publish(sp); /* the counters readers see until the first batch */
	int err = ksmd_start(sp);
	if (!err)
		engines_add(sp);
	return err;
}

/* Frees what engine_open made; merged pages stay mapped and valid (their
 * mappings hold the pool file), nothing is punched. */
void engine_free(struct samepage *sp)
{
	for (size_t ri = 0; ri < sp->nregions; ri++) {
		own_remove((uintptr_t)sp->regions[ri].meta);
		prim_munmap(sp->regions[ri].meta,
			    sp->regions[ri].npages * sizeof(struct page_meta));
		lib_free(sp->regions[ri].spans);
	}
	lib_free(sp->regions);
	lib_free(sp->forget);
	lib_free(sp->moved);
	fork_forget_pins(sp);
	lib_free(sp->unstable.heads);
	domain_unmap(&sp->stable);
	if (sp->stable.fd >= 0)
		prim_close(sp->stable.fd);
	pool_destroy(&sp->pool);
	if (sp->fork)
		prim_munmap(sp->fork, PAGE_SIZE);
	lib_pages_free(sp->buf, PAGE_SIZE);
	lib_free(sp->pagemap);
	lib_free(sp->reqs);
	lib_free(sp);
}

int samepage_open(samepage_t **out)
{
	int index_fd, pool_fd, err;
	if (!out)
		return -EINVAL;
	*out = NULL;
	uint32_t cap = pool_pages_allowed();
	err = domain_create(&index_fd, &pool_fd, NULL, cap);
	if (err)
		return err;
	err = engine_open(out, index_fd, pool_fd, cap);
	if (!err && (err = engine_start(*out))) {
		engine_free(*out);
		*out = NULL;
	}
	return err;
}

void samepage_close(samepage_t *sp)
{
	if (!sp)
		return;
	bool alive = engine_alive(sp); /* not an inert copy in a forked child */
	if (alive)
		ksmd_stop(sp);
	/* Merged pages stay private mappings of the pool after close; this
	 * process's forks still count where someone reads them (a forked
	 * child's copy: its parent's area; a samepaged client's: its
	 * ledger's, which samepaged reads), before the engine leaves the
	 * list, so that no fork goes uncounted (unmerge.c). */
	if (alive && sp->ledger && sp->fork)
		fork_pin_at_close(sp);
	struct fork_shared *area = !alive || sp->ledger ? sp->fork : NULL;
	stale_pool_add(sp->pool.dev, sp->pool.ino, area, sp->ledger != NULL);
	if (area)
		sp->fork = NULL; /* the stale pools have it now */
	engines_remove(sp);
	if (sp->detach)
		sp->detach(sp);
	engine_free(sp);
}

/* ---- the application's ranges ---- */

static int check_range(void *addr, size_t *len)
{
	uintptr_t a = (uintptr_t)addr;
	if (a & (PAGE_SIZE - 1))
		return -EINVAL;
	size_t l = (*len + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
	if (l < *len || a + l < a)
		return -EINVAL;
	*len = l;
	return 0;
}

/* The checks every range call starts with; 1 when there is nothing to do. */
static int range_call(samepage_t *sp, void *addr, size_t *len)
{
	if (!sp)
		return -EINVAL;
	if (!engine_alive(sp))
		return -ECHILD;
	int err = check_range(addr, len);
	return err ? err : !*len;
}

/* MADV_MERGEABLE on [start, start+len), inside engine_enter(): the whole
 * range must be mapped (-ENOMEM otherwise, nothing changed); its private
 * anonymous parts become mergeable, and those whose mapping carries a
 * promise a merge would drop are kept out. */
int engine_register(struct samepage *sp, uintptr_t start, size_t len)
{
	int err = regions_check_mapped(sp, start, start + len);
	if (!err)
		err = regions_add(sp, start, start + len);
	if (!err)
		keep_protected_vmas(sp, start, start + len);
	return err;
}

int samepage_madvise(samepage_t *sp, void *addr, size_t len, int advice)
{
	if (sp && advice != SAMEPAGE_MERGEABLE && advice != SAMEPAGE_UNMERGEABLE)
		return -EINVAL;
	int err = range_call(sp, addr, &len);
	if (err)
		return err < 0 ? err : 0;
	engine_lock(sp);
	engine_enter(sp);
	if (advice == SAMEPAGE_MERGEABLE)
		err = engine_register(sp, (uintptr_t)addr, len);
	else if (!(err = regions_check_mapped(sp, (uintptr_t)addr, (uintptr_t)addr + len)))
		err = regions_unmerge(sp, (uintptr_t)addr, len);
	if (!err) /* merge-any leaves an unmergeable range alone */
		promise_set((uintptr_t)addr, (uintptr_t)addr + len, PROMISE_UNMERGEABLE,
			    advice == SAMEPAGE_UNMERGEABLE);
	engine_leave(sp);
	if (!err)
		pthread_cond_broadcast(&sp->wake);
	engine_unlock(sp);
	return err;
}

/* merge-any, as prctl(PR_SET_MEMORY_MERGE) for the kernel's KSM: on,
 * every private anonymous mapping is mergeable, present and future
 * (mergeany.c); off, everything is unmerged and forgotten, as the kernel
 * does.  An unmerge that fails (no memory for the copies: RELIABILITY.md
 * 52) leaves merge-any on and what is left registered, and the error is
 * returned, as the kernel's ksm_disable_merge_any() puts its VMAs back. */
int samepage_merge_any(samepage_t *sp, int on)
{
	int err = 0;
	if (!sp)
		return -EINVAL;
	if (!engine_alive(sp))
		return -ECHILD;
	engine_lock(sp);
	engine_enter(sp);
	if (on && !sp->merge_any) {
		sp->merge_any = true;
		merge_any_refresh(sp);
	} else if (!on && sp->merge_any) {
		sp->merge_any = false;
		while (sp->nregions && err >= 0) {
			struct region *r = &sp->regions[0];
			err = regions_unmerge(sp, r->start, r->npages << PAGE_SHIFT);
		}
		if (err < 0)
			sp->merge_any = true;
		else
			err = 0;
	}
	engine_leave(sp);
	pthread_cond_broadcast(&sp->wake);
	engine_unlock(sp);
	return err;
}

/* Whether merge-any is on. */
int samepage_merge_any_get(samepage_t *sp)
{
	return sp && engine_alive(sp) ? sp->merge_any : 0;
}

/* ---- memory owned by the library ---- */

int samepage_alloc(samepage_t *sp, size_t len, void **out)
{
	if (!sp || !out || !len)
		return -EINVAL;
	if (!engine_alive(sp))
		return -ECHILD;
	if (len > SIZE_MAX - PAGE_SIZE)
		return -EINVAL;
	len = (len + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
	void *m;
	int err =
	    prim_mmap(&m, NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (err)
		return err;
	promise_set((uintptr_t)m, (uintptr_t)m + len, 0, false); /* as interpose.c's mmap */
	err = samepage_madvise(sp, m, len, SAMEPAGE_MERGEABLE);
	if (err) {
		prim_munmap(m, len);
		return err;
	}
	*out = m;
	return 0;
}

int samepage_free(samepage_t *sp, void *addr, size_t len)
{
	int err = range_call(sp, addr, &len);
	if (err)
		return err < 0 ? err : 0;
	engine_lock(sp);
	engine_enter(sp);
	err = prim_munmap(addr, len);
	if (!err) {
		regions_forget(sp, (uintptr_t)addr, len);
		/* The other engines too, as the munmap() wrapper tells them:
		 * merge-any registers this memory in every engine that merges
		 * any, whose merged and zero pages here are gone now. */
		engine_note_unmap((uintptr_t)addr, len);
		promise_set((uintptr_t)addr, (uintptr_t)addr + len, 0, false);
	}
	engine_leave(sp);
	engine_unlock(sp);
	return err;
}

/* The safe MADV_DONTNEED: every private mapping of the pool in the range
 * becomes fresh anonymous memory (zeros; with copy, a private copy of its
 * contents, as after a write) and the pages' merge state is forgotten;
 * the range stays mergeable.  The caller then discards the rest with the
 * real madvise.  Called with sp->lock held. */
int engine_discard_locked(struct samepage *sp, uintptr_t start, size_t len, bool copy)
{
	/* No reread of the maps after it (pool_mappings_to_anon): a balloon
	 * discards page by page, and each reread of a VM monitor's 10,000s of
	 * mappings took milliseconds (inflating by 96 MiB took minutes). */
	int err = pool_mappings_to_anon(sp, start, start + len, copy);
	struct pooled pl = {0};
	if (err < 0) /* the caller gives up its call: those pages stay merged */
		pooled_read(sp, start, start + len, &pl);
	/* (err 1: some pages were unshared in place, private copies still in
	 * a mapping of the pool, which a discard must make anonymous first) */
	for (size_t ri = 0; ri < sp->nregions && err == 0; ri++) {
		struct region *r = &sp->regions[ri];
		if (start <= r->start && start + len >= region_addr(r, r->npages))
			r->merged = false; /* all of it is anonymous again */
	}
	for (size_t ri = 0; ri < sp->nregions; ri++) {
		struct region *r = &sp->regions[ri];
		size_t from, to;
		if (!region_clip(r, start, start + len, &from, &to))
			continue;
		for (size_t k = from; k < to; k++) {
			if ((r->meta[k].flags & PM_OFF) || pooled_has(&pl, region_addr(r, k)))
				continue;
			uint8_t keep = r->meta[k].flags & PM_KEEP; /* wipe-on-fork... */
			region_drop_page(sp, r, k);		   /* forgets its state... */
			/* ...and it stays mergeable (a private copy in a mapping of
			 * the pool if unshared in place: a discard must not read
			 * it back), or kept out for what kept it out */
			r->meta[k].flags = (uint8_t)((err > 0 ? PM_POOLMAP : 0) | keep);
			r->mergeable_pages++;
		}
	}
	pooled_free(&pl);
	return err;
}

/* Has the engine a region in the range?  (With the engine's lock held.) */
static bool hits(struct samepage *sp, uintptr_t start, size_t len)
{
	size_t from, to;
	for (size_t ri = 0; ri < sp->nregions; ri++)
		if (region_clip(&sp->regions[ri], start, start + len, &from, &to))
			return true;
	return false;
}

/* Takes the engine's lock if it is alive and has a region in the range:
 * whether it did.  (With engines_lock held: the list's order.)  Not for a
 * range outside its span (the bounds of its regions): its scanner may
 * hold the lock for long (waiting for a stopped peer's domain lock), and a
 * call on memory out of the engine's bounds need not wait for it.  A
 * region added after this look bumps regions_added, which the callers
 * check; after a second such change (all), every live engine is held, so
 * that none can add another. */
bool hold_if_hits(struct samepage *sp, uintptr_t start, size_t len, bool all)
{
	if (!engine_alive(sp) || (!all && !engine_spans(sp, start, len)))
		return false;
	engine_lock(sp);
	if (all || hits(sp, start, len))
		return true;
	engine_unlock(sp);
	return false;
}

/* Has any page of the range been merged since it was last made anonymous
 * again?  If not, a discard has nothing of ours to undo. */
static bool hits_merged(struct samepage *sp, uintptr_t start, size_t len)
{
	size_t from, to;
	for (size_t ri = 0; ri < sp->nregions; ri++)
		if (sp->regions[ri].merged &&
		    region_clip(&sp->regions[ri], start, start + len, &from, &to))
			return true;
	return false;
}

/*
 * Holds every engine of the process with a region in [start, start+len),
 * its lock taken in the list's order as everywhere, each prepared by
 * h->engine() (inside engine_enter()), then h->rest(); and returns with
 * the address-space lock held shared, once no engine has added a region
 * since the engines were held (regions_added): an engine that had none in
 * the range then (merge-any registering a new mapping, samepage_madvise
 * from another thread) could merge there before the caller's system call,
 * which the engines held cannot.  Else it holds them again, every live
 * engine from the third try, so that none can add another.  The held
 * engines are marked sp->held (under engines_lock, which stays taken);
 * engines_unhold() gives them back.  Whether engines_lock was taken (none
 * is when the process has no engine).
 */
static void release_held(void)
{
	for (struct samepage *sp = engines; sp; sp = sp->next_engine)
		if (sp->held) {
			sp->held = false;
			engine_unlock(sp);
		}
}

bool engines_hold(uintptr_t start, size_t len, const struct hold *h, void *ctx)
{
	bool locked = false;
	for (int tries = 0;; tries++) {
		unsigned long added = atomic_load(&regions_added);
		if (!locked && atomic_load(&nengines) > 0) {
			fork_held_lock(&engines_lock);
			locked = true;
		}
		for (struct samepage *sp = locked ? engines : NULL; sp; sp = sp->next_engine) {
			sp->held = hold_if_hits(sp, start, len, tries >= 2);
			if (sp->held && h->engine) {
				engine_enter(sp);
				h->engine(sp, start, len, ctx);
				engine_leave(sp);
			}
		}
		if (h->rest)
			h->rest(start, len, ctx);
		debug_pause(h->pause);
		as_lock_shared();
		if (atomic_load(&regions_added) == added)
			return locked;
		as_unlock(); /* a region was added: hold its engine too */
		if (locked)
			release_held();
	}
}

/* Gives back the engines engines_hold() held, and engines_lock if taken. */
void engines_unhold(bool locked)
{
	if (locked) {
		release_held();
		fork_held_unlock(&engines_lock);
	}
}

/*
 * MADV_DONTNEED and its kin on [addr, addr+len) (engines_discard), for the
 * whole process: every engine with a region there (a merge-any engine has
 * every private mapping) is held from before its merged pages there
 * become anonymous until the kernel has discarded the range (op): a page
 * its scanner merged in between would be a private mapping of the pool
 * when the kernel discards it, and read the pool's page (its old
 * contents) instead of zeros.  Pages merged by engines since closed read
 * zeros too.  0 or -errno.
 */
struct private
{
	bool copy;
	int err; /* the first replacement that failed */
};

static void private_engine(struct samepage *sp, uintptr_t start, size_t len, void *arg)
{
	struct private *pv = arg;
	int err = hits_merged(sp, start, len) ? engine_discard_locked(sp, start, len, pv->copy) : 0;
	if (err < 0 && !pv->err)
		pv->err = err;
}

static void private_stale(uintptr_t start, size_t len, void *arg)
{
	struct private *pv = arg;
	int err = pv->copy ? stale_pools_keep(start, start + len)
			   : stale_pools_discard(start, start + len);
	if (err < 0 && !pv->err)
		pv->err = err;
}

/* Where a merged page could not be made private (out of memory, of
 * mappings: RELIABILITY.md 52), op is not run: the call fails with that
 * error, as the kernel's may fail with ENOMEM, and those pages keep their
 * contents (a discard would read the pool's page back). */
static long engines_private_then(void *addr, size_t len, bool copy, long (*op)(void *), void *arg)
{
	static const struct hold h = {private_engine, private_stale, "discard"};
	size_t l = (len + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
	struct private pv = {copy, 0};
	bool locked = engines_hold((uintptr_t)addr, l, &h, &pv);
	long err = pv.err ? pv.err : op(arg);
	as_unlock();
	engines_unhold(locked);
	return err;
}

struct advice {
	void *addr;
	size_t len;
	int advice;
};

static long advise_op(void *arg)
{
	const struct advice *v = arg;
	return prim_madvise(v->addr, v->len, v->advice);
}

int engines_discard(void *addr, size_t len, int advice)
{
	struct advice v = {addr, len, advice};
	return (int)engines_private_then(addr, len, false, advise_op, &v);
}

/* op(arg) on [addr, addr+len) once no merged page is there: each is a
 * private copy of its contents (as after a write), and stays one until op
 * returns (the engines there are held).  mbind: the kernel keeps a policy
 * given to a mapping of the pool with the pool's file, for every process
 * that maps the same pages (promise.c). */
long engines_with_copies(void *addr, size_t len, long (*op)(void *), void *arg)
{
	return engines_private_then(addr, len, true, op, arg);
}

/* The engine's own merged pages, and those of every other engine of the
 * process (samepage_discard promises zeros, whoever merged them). */
int samepage_discard(samepage_t *sp, void *addr, size_t len)
{
	int err = range_call(sp, addr, &len);
	if (err)
		return err < 0 ? err : 0;
	return engines_discard(addr, len, MADV_DONTNEED);
}

/* ---- knobs and counters ---- */

int samepage_read_number(samepage_t *sp, const char *name, long long *out)
{
	int idx = knob_index(name);
	struct ksm_counts c;
	if (!sp || !out)
		return -EINVAL;
	if (idx < 0)
		return -ENOENT;
	if (!engine_alive(sp))
		return -ECHILD;
	/* Never waits for the scanner: the counters come from the snapshot
	 * it publishes after every batch (engines.c), a knob from the
	 * domain.  Only when the application unmapped registered memory, or
	 * its forked children are all gone, the engine catches up first, so that what is gone
	 * is counted as gone when the call that freed it has returned. */
	if (engine_behind(sp) || fork_children_gone(sp, NULL, NULL)) {
		engine_lock(sp);
		engine_enter(sp);
		fork_reap(sp);
		engine_leave(sp);
		engine_unlock(sp);
	}
	engine_snapshot(sp, &c);
	if (!counter_value(&c, idx, out))
		*out = (long long)sp->knob[idx];
	return 0;
}

int samepage_read(samepage_t *sp, const char *name, char *buf, size_t len)
{
	long long v;
	if (!buf || !len)
		return -EINVAL;
	int err = samepage_read_number(sp, name, &v);
	if (err)
		return err;
	int n = knob_format(knob_index(name), v, buf, len);
	return n < 0 || (size_t)n >= len ? -ERANGE : 0;
}

/* samepaged applies the knobs of its engines (they are daemon-wide). */
static int daemon_write(struct samepage *sp, const char *name, const char *value)
{
	char req[256], reply[512];
	snprintf(req, sizeof(req), "SET %s %s", name, value);
	/* Strip the newline the kernel's parsing accepts: one line per field. */
	req[strcspn(req, "\n")] = 0;
	int err = samepage_control(sp->socket_path, req, reply, sizeof(reply));
	/* The daemon is not running, died during the request or answered
	 * nothing in time (stopped: the write may or may not have been
	 * applied). */
	if (err == -ENOENT || err == -ECONNREFUSED || err == -ECONNRESET || err == -EPIPE ||
	    err == -ETIMEDOUT)
		return -ENOTCONN;
	return err;
}

int samepage_write(samepage_t *sp, const char *name, const char *value)
{
	unsigned long long v;
	bool unmerge;
	int idx, err;

	if (!sp)
		return -EINVAL;
	err = samepage_knob_parse(name, value, &v);
	if (err)
		return err;
	if (!engine_alive(sp))
		return -ECHILD;
	if (sp->socket_path[0])
		return daemon_write(sp, name, value);
	idx = knob_index(name);
	engine_lock(sp);
	bool mode_change = idx == KNOB_advisor_mode && v != KNOB(sp, advisor_mode);
	/* The kernel refuses while KSM pages exist (ksm_pages_shared); pool
	 * pages kept only for forked children are not KSM pages. */
	struct ksm_counts c;
	long long shared = 0;
	engine_counts(sp, &c);
	counter_value(&c, KNOB_pages_shared, &shared); /* zero pages' too, as the kernel's */
	err = knob_store(sp->knob, idx, v, shared > 0, &unmerge);
	if (!err && mode_change)
		memset(&sp->adv, 0, sizeof(sp->adv)); /* the advisor starts afresh */
	if (unmerge) {
		atomic_fetch_add(&sp->dom->unmerge_epoch, 1);
		engine_enter(sp);
		int e = unmerge_all(sp);
		if (e < 0) { /* the kernel's too: run=0 and the error */
			sp->knob[KNOB_run] = 0;
			err = e;
		}
		fork_reap(sp); /* children gone: their pool pages go too */
		engine_leave(sp);
	}
	pthread_cond_broadcast(&sp->wake);
	engine_unlock(sp);
	return err;
}
