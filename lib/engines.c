// SPDX-License-Identifier: MIT
/*
 * engines.c - the process's list of engines, and the order of the locks.
 *
 * The locks, always taken in this order:
 *
 *   engines_lock     the list, for fork and the madvise/mremap wrappers that
 *                    walk it and lock each engine
 *   sp->lock         one engine: its regions, counters, scan cursor; the
 *                    scanner holds it per batch, application calls take it
 *                    through engine_lock() (the scanner hands it over)
 *   address space    as_lock (guard.c): shared by the application's
 *                    mmap/munmap/mremap/mprotect/madvise, exclusive for a
 *                    batch of merges
 *   domain lock      the stable index and pool allocator (index_lock)
 *   stale_lock       the pools of engines since closed (unmerge.c): taken
 *                    with the address-space lock held, or alone
 *
 * engine_enter()/engine_leave() take and release the address-space and
 * domain locks, for a change of pages or trees; the domain lock is waited
 * for with the address-space lock let go (index_lock_as()), since another
 * process may hold it while it is stopped.  The application's unmaps are noted under
 * engines_rw (a read lock), never engines_lock: fork and the madvise
 * wrapper hold engines_lock while they wait for the address-space lock,
 * and waiting for it there would deadlock.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

pthread_mutex_t engines_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_rwlock_t engines_rw = PTHREAD_RWLOCK_INITIALIZER; /* the list, for the wrappers */
struct samepage *engines;
_Atomic int nengines;

/* A forked child's copy of the parent's engine is inert. */
bool engine_alive(const struct samepage *sp)
{
	return sp && sp->owner == prim_getpid();
}

/* Lists a started engine, for interpose.c and fork. */
void engines_add(struct samepage *sp)
{
	pthread_mutex_lock(&engines_lock);
	pthread_rwlock_wrlock(&engines_rw);
	sp->next_engine = engines;
	engines = sp;
	atomic_fetch_add(&nengines, 1);
	pthread_rwlock_unlock(&engines_rw);
	pthread_mutex_unlock(&engines_lock);
}

void engines_remove(struct samepage *sp)
{
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
}

/* Whether a change of [start, start + len) can concern sp's regions (read
 * without its lock: the span grows before a region is added). */
bool engine_spans(struct samepage *sp, uintptr_t start, size_t len)
{
	return __atomic_load_n(&sp->merge_any, __ATOMIC_RELAXED) ||
	       (start < atomic_load(&sp->span_hi) && start + len > atomic_load(&sp->span_lo));
}

/* The application's unmaps and changes of protection (keep), noted while
 * its thread holds the address-space lock shared (see the lock order
 * above). */
static void note_range(uintptr_t start, size_t len, bool keep)
{
	pthread_rwlock_rdlock(&engines_rw);
	for (struct samepage *sp = engines; sp; sp = sp->next_engine) {
		if (!engine_alive(sp) || !engine_spans(sp, start, len))
			continue;
		pthread_mutex_lock(&sp->forget_lock);
		if (sp->nforget == sp->forget_cap) {
			size_t cap = sp->forget_cap ? sp->forget_cap * 2 : 64;
			void *n = lib_realloc(sp->forget, cap * sizeof(*sp->forget));
			if (n) {
				sp->forget = n;
				sp->forget_cap = cap;
			}
		}
		if (sp->nforget < sp->forget_cap) {
			sp->forget[sp->nforget++] =
			    (struct unmapped){.start = start, .len = len, .keep = keep};
		} else if (keep) {
			sp->prot_lost = true; /* no memory: read every region again */
		} else {
			/* No memory to remember it: stop merging this engine's
			 * ranges rather than risk merging the new mapping. */
			sp->forget_lost = true;
		}
		atomic_store(&sp->changed, true);
		if (!keep)
			atomic_fetch_add(&sp->unmap_gen, 1);
		pthread_mutex_unlock(&sp->forget_lock);
	}
	pthread_rwlock_unlock(&engines_rw);
}

void engine_note_unmap(uintptr_t start, size_t len)
{
	note_range(start, len, false);
}

void engine_note_change(uintptr_t start, size_t len)
{
	note_range(start, len, true);
}

/* The application mapped private anonymous memory: engines that merge any
 * look for it at their next full scan (else once a second: scan.c). */
void engine_note_new(void)
{
	pthread_rwlock_rdlock(&engines_rw);
	for (struct samepage *sp = engines; sp; sp = sp->next_engine)
		if (sp->merge_any)
			atomic_store(&sp->any_new, true);
	pthread_rwlock_unlock(&engines_rw);
}

/* sp->lock for an application thread: the scanner hands it over between
 * batches when someone waits (glibc's mutexes are not fair). */
void engine_lock(struct samepage *sp)
{
	atomic_fetch_add(&sp->app_waiting, 1);
	fork_held_lock(&sp->lock);
	atomic_fetch_sub(&sp->app_waiting, 1);
}

/* Takes what a change of pages or trees needs, in order: sp->lock (held by
 * the caller), the address-space lock, the domain lock; then catches up
 * with what the application unmapped. */
void engine_enter(struct samepage *sp)
{
	as_lock_exclusive();
	index_lock_as(sp);
	engine_sync(sp);
}

void engine_leave(struct samepage *sp)
{
	index_unlock(sp);
	as_unlock();
}

/* Catches up with what the application unmapped or protected anew
 * (regions_catch_up(): the maps are read only where that needs them).
 * Called inside engine_enter(). */
void engine_sync(struct samepage *sp)
{
	if (!atomic_load(&sp->changed) && !sp->maps_dirty)
		return;
	pthread_mutex_lock(&sp->forget_lock);
	sp->synced_gen = atomic_load(&sp->unmap_gen);
	bool lost = sp->forget_lost;
	if (lost) {
		for (size_t ri = sp->nregions; ri-- > 0;)
			regions_forget(sp, sp->regions[ri].start,
				       sp->regions[ri].npages << PAGE_SHIFT);
		sp->forget_lost = false;
	}
	regions_catch_up(sp, sp->forget, sp->nforget, lost || sp->prot_lost || sp->maps_dirty);
	sp->nforget = 0;
	sp->prot_lost = false;
	atomic_store(&sp->changed, false);
	pthread_mutex_unlock(&sp->forget_lock);
}

/* ---- the counters, read without waiting ---- */

/* What the mappings the engine made cost the kernel: each mapping of the
 * pool, and the split of the anonymous mapping it sits in, is a VMA with
 * its anon_vma_chain and maple-tree share: about 240 bytes of slab each
 * (measured here: ~15 MB of Slab for ~65k mappings).  The kernel's KSM
 * makes none; counting them keeps the comparison with its 64-byte
 * rmap_item fair. */
#define MAPPING_SLAB_BYTES 240
static uint64_t mappings_bytes(struct samepage *sp)
{
	return sp->c.pool_maps * 2 * MAPPING_SLAB_BYTES;
}

/* What the engine's metadata costs: the per-page items and the unstable
 * index, and this process's share of the domain's stable nodes and
 * buckets (the whole of them for a local engine). */
static uint64_t metadata_bytes(struct samepage *sp)
{
	uint64_t b = sp->tracked_pages * sizeof(struct page_meta);
	/* The buckets are hashed: every node may touch a page of them. */
	uint64_t nodes = sp->dom->nr, head_pages = DOM_BUCKETS * sizeof(uint32_t) / PAGE_SIZE;
	b += ((uint64_t)sp->unstable.mask + 1) * sizeof(uint32_t);
	b += nodes * sizeof(struct stable_node) +
	     (nodes < head_pages ? nodes : head_pages) * PAGE_SIZE;
	for (size_t ri = 0; ri < sp->nregions; ri++)
		b += sp->regions[ri].nspans * sizeof(struct prot_span) + sizeof(struct region);
	return b + mappings_bytes(sp);
}

/* This engine's counts (domain-wide ones from the domain).  With sp->lock. */
void engine_counts(struct samepage *sp, struct ksm_counts *out)
{
	const struct counters *c = &sp->c;
	const struct domain *d = sp->dom;
	uint64_t tracked = 0;
	for (size_t ri = 0; ri < sp->nregions; ri++)
		tracked += sp->regions[ri].mergeable_pages;
	/* The rmap item's equivalent: what every tracked page costs. */
	uint64_t per_page = sp->tracked_pages * sizeof(struct page_meta) +
			    ((uint64_t)sp->unstable.mask + 1) * sizeof(uint32_t) +
			    mappings_bytes(sp);
	*out = (struct ksm_counts){
	    .process = true,
	    .use_zero_pages = KNOB(sp, use_zero_pages),
	    .max_page_sharing = KNOB(sp, max_page_sharing),
	    .pages_shared = d->pages_shared,
	    .pages_sharing = d->pages_sharing,
	    .chains = d->chains,
	    .dups = d->dups,
	    .pool_pages = d->live,
	    .reclaimed = d->reclaimed,
	    .refused = atomic_load(&d->refused),
	    .rmap_items = c->rmap_items,
	    .merging_pages = c->merging_pages,
	    .unshared = c->pages_unshared,
	    .zero_pages = c->zero_pages,
	    .full_scans = c->full_scans,
	    .pages_scanned = c->pages_scanned,
	    .pages_skipped = c->pages_skipped,
	    .pages_tracked = tracked,
	    .metadata_bytes = metadata_bytes(sp),
	    .metadata_per_page =
		sp->tracked_pages ? (per_page + sp->tracked_pages / 2) / sp->tracked_pages : 0,
	    .skipped_map_budget = c->skipped_map_budget,
	    .skipped_pool_full = c->skipped_pool_full,
	    .map_count = c->map_count,
	    .max_map_count = c->max_map_count,
	    .map_count_needed = c->map_count_needed,
	    .cow_ksm = c->cow_ksm,
	    .window_waits = atomic_load(&merge_window_waits),
	    .window_kind = (uint64_t)guard_window_kind(),
	    .skipped_io = atomic_load(&merges_skipped_io),
	};
	memcpy(out->kept, c->kept, sizeof(out->kept));
}

/* Publishes the counters for readers that must not wait (seqlock): after
 * every batch of the scanner and every application call that changed the
 * engine.  With sp->lock. */
void engine_publish(struct samepage *sp)
{
	atomic_fetch_add_explicit(&sp->snap_seq, 1, memory_order_acq_rel);
	engine_counts(sp, &sp->snap);
	atomic_fetch_add_explicit(&sp->snap_seq, 1, memory_order_release);
	atomic_store(&sp->published_gen, sp->synced_gen);
}

/* The last counters published. */
void engine_snapshot(struct samepage *sp, struct ksm_counts *out)
{
	for (;;) {
		uint32_t a = atomic_load_explicit(&sp->snap_seq, memory_order_acquire);
		if (a & 1)
			continue;
		memcpy(out, (const void *)&sp->snap, sizeof(*out));
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&sp->snap_seq, memory_order_relaxed) == a)
			return;
	}
}

/* Whether the published counters may still count what the application
 * unmapped (the wrappers' forget list). */
bool engine_behind(struct samepage *sp)
{
	return atomic_load(&sp->unmap_gen) != atomic_load(&sp->published_gen);
}

/* Lets go of sp->lock, the counters published first. */
void engine_unlock(struct samepage *sp)
{
	engine_publish(sp);
	fork_held_unlock(&sp->lock);
}
