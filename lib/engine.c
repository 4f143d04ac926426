// SPDX-License-Identifier: MIT
/*
 * engine.c - samepage_open/close, the knobs and counters, fork.
 *
 * The knobs behave as the kernel's sysfs files do (kernel-ksm-reference.md
 * §1 and §7.7): run 2 unmerges everything and resets full_scans;
 * pages_to_scan is refused while the scan-time advisor is on; changing
 * max_page_sharing or merge_across_nodes is refused (EBUSY) while KSM
 * pages exist; changing advisor_mode resets pages_to_scan.
 *
 * fork(): the child gets copies of the parent's mappings, including private
 * mappings of the pool.  The parent must then never punch or reuse a pool
 * page the child may still read, so at fork every KSM page is pinned; the
 * child writes its pid in a page shared with the parent, and the parent
 * unpins once no child maps the pool any more (it exited or exec'd).  The
 * child's copy of the engine is inert (-ECHILD): it may open its own.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

pthread_mutex_t engines_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_rwlock_t engines_rw = PTHREAD_RWLOCK_INITIALIZER; /* the list, for the wrappers */
struct samepage *engines;
_Atomic int nengines;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

bool engine_alive(const struct samepage *sp)
{
	return sp && sp->owner == getpid();
}

/* ---- fork ---- */

/* Pins every KSM page this process maps, once per process: `pinned`
 * counts the processes (of the domain) whose children may map the page.
 * Runs in the fork handler, so it allocates nothing from the C library
 * (a sanitizer's or allocator's fork lock may be held): a bitmap of the
 * nodes, then the sorted list, both mapped with raw mmap. */
static void pins_free(uint32_t *pins, size_t n)
{
	if (pins)
		prim_munmap(pins, (n * sizeof(*pins) + PAGE_SIZE) & ~(PAGE_SIZE - 1));
}

static void pin_mapped_nodes(struct samepage *sp)
{
	size_t nr = sp->dom->nr, bytes = ((nr + 63) / 64) * 8, n = 0;
	if (!nr)
		return;
	uint64_t *bits =
	    prim_mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (bits == MAP_FAILED)
		bits = NULL;
	for (size_t ri = 0; ri < sp->nregions; ri++) {
		struct region *r = &sp->regions[ri];
		for (size_t i = 0; i < r->npages; i++) {
			if (!(r->meta[i].flags & PM_STABLE))
				continue;
			uint32_t id = r->meta[i].link;
			if (!bits) {
				sp->stable.nodes[id].pinned = 255; /* cannot count: for ever */
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
	uint32_t *ids = n ? prim_mmap(NULL, (n * sizeof(*ids) + PAGE_SIZE) & ~(PAGE_SIZE - 1),
				      PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
			  : NULL;
	if (ids == MAP_FAILED) {
		prim_munmap(bits, bytes);
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
		if (!had && sp->stable.nodes[id].pinned < 255)
			sp->stable.nodes[id].pinned++;
	}
	prim_munmap(bits, bytes);
	pins_free(sp->pins, sp->npins);
	sp->pins = ids;
	sp->npins = u;
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
		domain_lock(sp);
		pin_mapped_nodes(sp);
		domain_unlock(sp);
	}
	as_lock_exclusive(); /* no merge window is open across the fork */
}

static void fork_parent(void)
{
	as_unlock();
	for (struct samepage *sp = engines; sp; sp = sp->next_engine)
		if (engine_alive(sp))
			pthread_mutex_unlock(&sp->lock);
	pthread_mutex_unlock(&engines_lock);
}

static void fork_child(void)
{
	pid_t parent = getppid();
	as_reinit(); /* the parent's thread held it: it cannot be released here */
	for (struct samepage *sp = engines; sp; sp = sp->next_engine) {
		uint32_t k = atomic_fetch_add(&sp->fork->registered, 1);
		if (k < MAX_FORK_CHILDREN)
			atomic_store(&sp->fork->pids[k], getpid());
		/* Our merged pages map its pool: discards must still read zeros. */
		stale_pool_add(sp->pool.dev, sp->pool.ino);
		if (sp->owner != parent)
			continue;	    /* not locked in fork_prepare */
		sp->thread_started = false; /* threads do not survive fork */
		pthread_mutex_unlock(&sp->lock);
	}
	pthread_mutex_unlock(&engines_lock);
}

/* Does process pid still map our pool? */
static bool pid_maps_pool(struct samepage *sp, pid_t pid)
{
	char path[64], line[512], ino[32];
	bool found = false;
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	snprintf(ino, sizeof(ino), " %lu ", (unsigned long)sp->pool.ino);
	FILE *f = fopen(path, "re");
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, ino) && strstr(line, "samepage-pool");
	fclose(f);
	return found;
}

/* Unpins the pool once every forked child has let go of it. */
void fork_reap(struct samepage *sp)
{
	uint32_t started = atomic_load(&sp->fork->started);
	uint32_t reg = atomic_load(&sp->fork->registered);
	if (!started || reg != started || reg > MAX_FORK_CHILDREN)
		return;
	for (uint32_t k = 0; k < reg; k++)
		if (pid_maps_pool(sp, atomic_load(&sp->fork->pids[k])))
			return;
	/* The counters are only reset if no fork began meanwhile. */
	if (!atomic_compare_exchange_strong(&sp->fork->started, &started, 0))
		return;
	atomic_store(&sp->fork->registered, 0);
	for (size_t k = 0; k < sp->npins; k++) {
		struct stable_node *n = &sp->stable.nodes[sp->pins[k]];
		if (n->pinned && n->pinned < 255)
			n->pinned--;
		stable_drop(sp, sp->pins[k], 0, false); /* frees it if nothing maps it */
	}
	pins_free(sp->pins, sp->npins);
	sp->pins = NULL;
	sp->npins = 0;
}

static void register_atfork(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* ---- unmaps seen by interpose.c ---- */

/*
 * The application's unmaps, noted while its thread holds the address-space
 * lock shared.  They walk the engine list under engines_rw, never under
 * engines_lock: fork and the madvise wrapper hold engines_lock while they
 * wait for the address-space lock, and waiting for it here would deadlock.
 */
void engine_note_unmap(uintptr_t start, size_t len)
{
	pthread_rwlock_rdlock(&engines_rw);
	for (struct samepage *sp = engines; sp; sp = sp->next_engine) {
		if (!engine_alive(sp))
			continue;
		pthread_mutex_lock(&sp->forget_lock);
		if (sp->nforget == sp->forget_cap) {
			size_t cap = sp->forget_cap ? sp->forget_cap * 2 : 64;
			void *n = realloc(sp->forget, cap * sizeof(*sp->forget));
			if (n) {
				sp->forget = n;
				sp->forget_cap = cap;
			}
		}
		if (sp->nforget < sp->forget_cap) {
			sp->forget[sp->nforget].start = start;
			sp->forget[sp->nforget].len = len;
			sp->nforget++;
		} else {
			/* No memory to remember it: stop merging this engine's
			 * ranges rather than risk merging the new mapping. */
			sp->forget_lost = true;
		}
		atomic_store(&sp->changed, true);
		pthread_mutex_unlock(&sp->forget_lock);
	}
	pthread_rwlock_unlock(&engines_rw);
}

void engine_note_change(void)
{
	pthread_rwlock_rdlock(&engines_rw);
	for (struct samepage *sp = engines; sp; sp = sp->next_engine)
		atomic_store(&sp->changed, true);
	pthread_rwlock_unlock(&engines_rw);
}

/* sp->lock for an application thread: the scanner hands it over between
 * batches when someone waits (glibc's mutexes are not fair). */
void engine_lock(struct samepage *sp)
{
	atomic_fetch_add(&sp->app_waiting, 1);
	pthread_mutex_lock(&sp->lock);
	atomic_fetch_sub(&sp->app_waiting, 1);
}

/* Takes what a change of pages or trees needs, in order: sp->lock (held by
 * the caller), the address-space lock, the domain lock; then catches up
 * with what the application unmapped. */
void engine_enter(struct samepage *sp)
{
	as_lock_exclusive();
	domain_lock(sp);
	engine_sync(sp);
}

void engine_leave(struct samepage *sp)
{
	domain_unlock(sp);
	as_unlock();
}

/* Forgets what the application unmapped and rereads the maps if anything
 * changed.  Called inside engine_enter(). */
void engine_sync(struct samepage *sp)
{
	if (!atomic_load(&sp->changed) && !sp->maps_dirty)
		return;
	pthread_mutex_lock(&sp->forget_lock);
	regions_forget_unmapped(sp, sp->forget, sp->nforget);
	sp->nforget = 0;
	if (sp->forget_lost) {
		for (size_t ri = sp->nregions; ri-- > 0;)
			regions_forget(sp, sp->regions[ri].start,
				       sp->regions[ri].npages << PAGE_SHIFT);
		sp->forget_lost = false;
	}
	atomic_store(&sp->changed, false);
	pthread_mutex_unlock(&sp->forget_lock);
	regions_refresh(sp);
}

/* ---- open / close ---- */

/* Makes an engine over a domain's two files (it owns the fds). */
int engine_open(struct samepage **out, int index_fd, int pool_fd)
{
	struct samepage *sp;
	int err = -ENOMEM;
	static const char zeros[PAGE_SIZE];

	*out = NULL;
	sp = calloc(1, sizeof(*sp));
	if (!sp) {
		close(index_fd);
		close(pool_fd);
		return -ENOMEM;
	}
	sp->owner = getpid();
	pthread_mutex_init(&sp->lock, NULL);
	pthread_mutex_init(&sp->forget_lock, NULL);
	pthread_cond_init(&sp->wake, NULL);
	sp->pool.fd = -1;
	sp->stable.fd = -1;
	sp->conn_fd = -1;
	sp->buf = aligned_alloc(PAGE_SIZE, PAGE_SIZE);
	sp->pagemap = calloc(BATCH_PAGES, sizeof(uint64_t));
	sp->reqs = calloc(BATCH_PAGES * 2, sizeof(struct merge_req));
	sp->fork =
	    prim_mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sp->fork == MAP_FAILED)
		sp->fork = NULL;
	err = domain_map(&sp->stable, index_fd);
	if (err) {
		close(index_fd);
		close(pool_fd);
		goto fail;
	}
	sp->dom = sp->stable.dom;
	sp->knob = sp->dom->knob;
	sp->unmerge_epoch = atomic_load(&sp->dom->unmerge_epoch);
	err = pool_open(&sp->pool, pool_fd);
	if (err) {
		close(pool_fd);
		goto fail;
	}
	err = -ENOMEM;
	if (!sp->buf || !sp->pagemap || !sp->reqs || !sp->fork)
		goto fail;
	err = unstable_resize(sp, 0);
	if (err)
		goto fail;
	zero_checksum = (uint32_t)XXH3_64bits(zeros, PAGE_SIZE);
	sp->c.max_map_count = (uint64_t)prim_max_map_count();
	merge_init();
	pthread_once(&atfork_once, register_atfork);
	*out = sp;
	return 0;
fail:
	engine_free(sp);
	return err;
}

/* Starts the scanner and lists the engine for interpose.c and fork. */
int engine_start(struct samepage *sp)
{
	int err = ksmd_start(sp);
	if (err)
		return err;
	pthread_mutex_lock(&engines_lock);
	pthread_rwlock_wrlock(&engines_rw);
	sp->next_engine = engines;
	engines = sp;
	atomic_fetch_add(&nengines, 1);
	pthread_rwlock_unlock(&engines_rw);
	pthread_mutex_unlock(&engines_lock);
	return 0;
}

/* Frees what engine_open made; merged pages stay mapped and valid (their
 * mappings hold the pool file), nothing is punched. */
void engine_free(struct samepage *sp)
{
	for (size_t ri = 0; ri < sp->nregions; ri++) {
		prim_munmap(sp->regions[ri].meta,
			    sp->regions[ri].npages * sizeof(struct page_meta));
		free(sp->regions[ri].spans);
	}
	free(sp->regions);
	free(sp->forget);
	pins_free(sp->pins, sp->npins);
	free(sp->unstable.heads);
	domain_unmap(&sp->stable);
	if (sp->stable.fd >= 0)
		close(sp->stable.fd);
	pool_destroy(&sp->pool);
	if (sp->fork)
		prim_munmap(sp->fork, PAGE_SIZE);
	free(sp->buf);
	free(sp->pagemap);
	free(sp->reqs);
	free(sp);
}

int samepage_open(samepage_t **out)
{
	int index_fd, pool_fd, err;
	if (!out)
		return -EINVAL;
	*out = NULL;
	err = domain_create(&index_fd, &pool_fd, NULL);
	if (err)
		return err;
	err = engine_open(out, index_fd, pool_fd);
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
	if (engine_alive(sp))
		ksmd_stop(sp);
	pthread_mutex_lock(&engines_lock);
	pthread_rwlock_wrlock(&engines_rw);
	for (struct samepage **pp = &engines; *pp; pp = &(*pp)->next_engine) {
		if (*pp == sp) {
			*pp = sp->next_engine;
			atomic_fetch_sub(&nengines, 1);
			break;
		}
	}
	pthread_rwlock_unlock(&engines_rw);
	pthread_mutex_unlock(&engines_lock);
	/* Merged pages stay private mappings of the pool after close. */
	stale_pool_add(sp->pool.dev, sp->pool.ino);
	engine_detach(sp);
	engine_free(sp);
}

/* ---- madvise ---- */

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

int samepage_madvise(samepage_t *sp, void *addr, size_t len, int advice)
{
	if (sp && advice != SAMEPAGE_MERGEABLE && advice != SAMEPAGE_UNMERGEABLE)
		return -EINVAL;
	int err = range_call(sp, addr, &len);
	if (err)
		return err < 0 ? err : 0;
	engine_lock(sp);
	engine_enter(sp);
	err = regions_mark(sp, (uintptr_t)addr, len, advice == SAMEPAGE_MERGEABLE);
	engine_leave(sp);
	if (!err)
		pthread_cond_broadcast(&sp->wake);
	pthread_mutex_unlock(&sp->lock);
	return err;
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
	void *m = prim_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return -errno;
	int err = samepage_madvise(sp, m, len, SAMEPAGE_MERGEABLE);
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
	if (prim_munmap(addr, len))
		err = -errno;
	else
		regions_forget(sp, (uintptr_t)addr, len);
	engine_leave(sp);
	pthread_mutex_unlock(&sp->lock);
	return err;
}

/* The safe MADV_DONTNEED: every private mapping of the pool in the range
 * becomes fresh anonymous memory (zeros) and the pages' merge state is
 * forgotten; the range stays mergeable.  The caller then discards the
 * rest with the real madvise.  Called with sp->lock held. */
int engine_discard_locked(struct samepage *sp, uintptr_t start, size_t len)
{
	int err = pool_mappings_to_anon(sp, start, start + len, false);
	for (size_t ri = 0; ri < sp->nregions; ri++) {
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
			if (r->meta[k].flags & PM_OFF)
				continue;
			region_drop_page(sp, r, k); /* forgets its state... */
			/* ...and it stays mergeable (still a pool mapping if the
			 * replacement failed: a discard must not read it back) */
			r->meta[k].flags = err ? PM_POOLMAP : 0;
			r->mergeable_pages++;
		}
	}
	return err;
}

int samepage_discard(samepage_t *sp, void *addr, size_t len)
{
	int err = range_call(sp, addr, &len);
	if (err)
		return err < 0 ? err : 0;
	engine_lock(sp);
	engine_enter(sp);
	err = engine_discard_locked(sp, (uintptr_t)addr, len);
	engine_leave(sp);
	if (!err && prim_madvise(addr, len, MADV_DONTNEED))
		err = -errno;
	pthread_mutex_unlock(&sp->lock);
	return err;
}

/* ---- knobs and counters ---- */

/* What the engine's metadata costs: the per-page items and the unstable
 * index, and this process's share of the domain's stable nodes and
 * buckets (the whole of them for a local engine). */
uint64_t metadata_bytes(struct samepage *sp)
{
	uint64_t b = sp->tracked_pages * sizeof(struct page_meta);
	/* The buckets are hashed: every node may touch a page of them. */
	uint64_t nodes = sp->dom->nr, head_pages = DOM_BUCKETS * sizeof(uint32_t) / PAGE_SIZE;
	b += ((uint64_t)sp->unstable.mask + 1) * sizeof(uint32_t);
	b += nodes * sizeof(struct stable_node) +
	     (nodes < head_pages ? nodes : head_pages) * PAGE_SIZE;
	for (size_t ri = 0; ri < sp->nregions; ri++)
		b += sp->regions[ri].nspans * sizeof(struct prot_span) + sizeof(struct region);
	return b;
}

/* run = 2 in this process.  Called inside engine_enter(). */
void unmerge_all(struct samepage *sp)
{
	for (size_t ri = 0; ri < sp->nregions; ri++) {
		struct region *r = &sp->regions[ri];
		unmerge_range(sp, r, 0, r->npages);
		/* run=2 frees every rmap item; the ranges stay registered. */
		for (size_t i = 0; i < r->npages; i++) {
			struct page_meta *m = &r->meta[i];
			remove_rmap_item_from_tree(sp, r->base_id + (uint32_t)i);
			if (m->flags & PM_ITEM)
				sp->c.rmap_items--;
			m->flags &= PM_OFF;
			m->age = m->remaining_skips = 0;
			m->checksum = 0;
		}
	}
	fork_reap(sp); /* children gone: their pool pages go too */
	sp->c.full_scans = 0;
	sp->unmerge_epoch = atomic_load(&sp->dom->unmerge_epoch);
	sp->scan_running = false;
	sp->cur_region = sp->cur_index = 0;
}

static long long read_value(struct samepage *sp, int idx)
{
	struct counters *c = &sp->c;
	long long meta = (long long)metadata_bytes(sp);
	/* general_profit as the kernel's, with our real metadata instead of
	 * 64-byte rmap_items; ksm_process_profit counts this process's
	 * merging pages, as the kernel's ksm_process_profit() does. */
	long long profit = (long long)((sp->dom->pages_sharing + c->zero_pages) * PAGE_SIZE) - meta;
	long long process_profit =
	    (long long)((c->merging_pages + c->zero_pages) * PAGE_SIZE) - meta;
	long long v;

	switch (idx) {
	case KNOB_pages_scanned: return (long long)c->pages_scanned;
	case KNOB_pages_shared: return (long long)sp->dom->pages_shared;
	case KNOB_pages_sharing: return (long long)sp->dom->pages_sharing;
	case KNOB_pages_unshared: return (long long)c->pages_unshared;
	case KNOB_pages_volatile:
		v = (long long)c->rmap_items - (long long)(c->merging_pages + c->pages_unshared);
		return v < 0 ? 0 : v;
	case KNOB_pages_skipped: return (long long)c->pages_skipped;
	case KNOB_ksm_zero_pages: return (long long)c->zero_pages;
	case KNOB_full_scans: return (long long)c->full_scans;
	case KNOB_stable_node_chains: return (long long)sp->dom->chains;
	case KNOB_stable_node_dups: return (long long)sp->dom->dups;
	case KNOB_general_profit: return profit;
	case KNOB_ksm_rmap_items: return (long long)c->rmap_items;
	case KNOB_ksm_merging_pages: return (long long)c->merging_pages;
	case KNOB_ksm_process_profit: return process_profit;
	case KNOB_metadata_bytes_per_page: {
		/* The rmap item's equivalent: what every tracked page costs. */
		uint64_t per_page = sp->tracked_pages * sizeof(struct page_meta) +
				    ((uint64_t)sp->unstable.mask + 1) * sizeof(uint32_t);
		return sp->tracked_pages
			   ? (long long)((per_page + sp->tracked_pages / 2) / sp->tracked_pages)
			   : 0;
	}
	case KNOB_metadata_bytes: return (long long)metadata_bytes(sp);
	case KNOB_pages_tracked: {
		/* The pages still in mergeable ranges (not the metadata's size). */
		long long t = 0;
		for (size_t ri = 0; ri < sp->nregions; ri++)
			t += (long long)sp->regions[ri].mergeable_pages;
		return t;
	}
	case KNOB_pool_pages: return (long long)sp->dom->live;
	case KNOB_pool_pages_reclaimed: return (long long)sp->dom->reclaimed;
	case KNOB_merges_skipped_map_budget: return (long long)c->skipped_map_budget;
	case KNOB_map_count: return (long long)c->map_count;
	case KNOB_max_map_count: return (long long)c->max_map_count;
	case KNOB_cow_ksm: return (long long)c->cow_ksm;
	case KNOB_merge_window_waits: return (long long)atomic_load(&merge_window_waits);
	default: return (long long)sp->knob[idx];
	}
}

int samepage_read_number(samepage_t *sp, const char *name, long long *out)
{
	int idx = knob_index(name);
	if (!sp || !out)
		return -EINVAL;
	if (idx < 0)
		return -ENOENT;
	if (!engine_alive(sp))
		return -ECHILD;
	engine_lock(sp);
	/* Count what the application unmapped as gone already. */
	engine_enter(sp);
	fork_reap(sp);
	*out = read_value(sp, idx);
	engine_leave(sp);
	pthread_mutex_unlock(&sp->lock);
	return 0;
}

int samepage_read(samepage_t *sp, const char *name, char *buf, size_t len)
{
	long long v;
	if (!buf || !len)
		return -EINVAL;
	int err = samepage_read_number(sp, name, &v), n;
	if (err)
		return err;
	if (knob_index(name) == KNOB_advisor_mode)
		n = snprintf(buf, len, "%s", v ? "none [scan-time]" : "[none] scan-time");
	else if (samepage_knob_find(name)->format == SAMEPAGE_FMT_SIGNED)
		n = snprintf(buf, len, "%lld", v);
	else
		n = snprintf(buf, len, "%llu", (unsigned long long)v);
	return n < 0 || (size_t)n >= len ? -ERANGE : 0;
}

/*
 * The kernel's rules for a knob write, on a knob array (an engine's domain,
 * or samepaged's daemon-wide copy): 0 or -errno, nothing changed on error.
 * *unmerge is set when run went to 2: the caller unmerges.
 */
int knob_store(unsigned long long *knob, int idx, unsigned long long v, bool ksm_pages_exist,
	       bool *unmerge)
{
	*unmerge = false;
	switch (idx) {
	case KNOB_run: *unmerge = v == 2 && knob[KNOB_run] != 2; break;
	case KNOB_pages_to_scan:
		if (knob[KNOB_advisor_mode] == 1)
			return -EINVAL; /* the advisor owns pages_to_scan */
		break;
	case KNOB_max_page_sharing:
	case KNOB_merge_across_nodes:
		if (v != knob[idx] && ksm_pages_exist)
			return -EBUSY; /* the kernel: only after run=2 */
		break;
	case KNOB_advisor_mode:
		if (v != knob[KNOB_advisor_mode])
			knob[KNOB_pages_to_scan] = v ? knob[KNOB_advisor_min_pages_to_scan]
						     : samepage_knob_find("pages_to_scan")->def;
		break;
	}
	knob[idx] = v;
	return 0;
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
	if (sp->socket_path[0]) /* knobs are daemon-wide: samepaged applies them */
		return client_write(sp, name, value);
	idx = knob_index(name);
	engine_lock(sp);
	bool mode_change = idx == KNOB_advisor_mode && v != KNOB(sp, advisor_mode);
	/* The kernel refuses while KSM pages exist (ksm_pages_shared); pool
	 * pages kept only for forked children are not KSM pages. */
	err = knob_store(sp->knob, idx, v, sp->dom->pages_shared > 0, &unmerge);
	if (!err && mode_change)
		memset(&sp->adv, 0, sizeof(sp->adv)); /* the advisor starts afresh */
	if (unmerge) {
		atomic_fetch_add(&sp->dom->unmerge_epoch, 1);
		engine_enter(sp);
		unmerge_all(sp);
		engine_leave(sp);
	}
	pthread_cond_broadcast(&sp->wake);
	pthread_mutex_unlock(&sp->lock);
	return err;
}
