/* SPDX-License-Identifier: MIT */
/*
 * internal.h - libsamepage's cross-file declarations, layer by layer.
 *
 * Each file calls only files listed above it (tests/lib/layers.sh checks
 * this with nm), so a page's path reads top to bottom:
 *
 *   prim-linux.c  every call to the operating system (prim.h), debug_pause()
 *   knobs.c       the knob table, the kernel's parsing and write rules
 *   counters.c    the counters' one definition
 *   control.c     the samepaged socket: one request, trust checks
 *   alloc.c       the library's own memory, never merged
 *   guard.c       the address-space lock, merge windows, guarded reads
 *   promise.c     the flags of the application's mappings, kept across merges
 *   domain.c      the shared half of an engine: one file, its lock
 *   pool.c        the pool memfd and its allocator
 *   pages.c       page id -> region and rmap item
 *   index.c       the stable and unstable trees
 *   debug.c       invariant walkers (debug builds)
 *   region.c      mergeable ranges, and what /proc/self/maps says of them
 *   unmerge.c     giving merged pages their own memory back
 *   merge.c       merging a batch, run by run
 *   engines.c     the list of engines and the lock order
 *   fork.c        fork() keeps its semantics
 *   mergeany.c    merge-any: every private anonymous mapping is mergeable
 *   scan.c        ksmd: the scan loop and the merge decision
 *   engine.c      the public calls: open, close, madvise, knobs, counters
 *   client.c      samepage_connect: an engine of a samepaged domain
 *   interpose.c   the application's mmap/munmap/mremap/mprotect/madvise/mlock
 *   interpose-io.c the application's reading calls, libaio, signal masks
 *   preload.c     unmodified programs: LD_PRELOAD=libsamepage-preload.so
 */
#ifndef SAMEPAGE_INTERNAL_H
#define SAMEPAGE_INTERNAL_H

#include "prim.h"
#include "types.h"

#define KNOB(sp, name) ((sp)->knob[KNOB_##name])
enum {
#define SAMEPAGE_KNOB(n, k, f, d, lo, hi, since, help) KNOB_##n,
#include "knobs.def"
#undef SAMEPAGE_KNOB
	KNOB_COUNT_
};

/* Debug assertions, graded: SAMEPAGE_DEBUG 1 checks what is cheap (O(1)),
 * 2 also walks every page at the end of each full scan (debug.c).  On in
 * the sanitizer build; off (and free) otherwise. */
#ifndef SAMEPAGE_DEBUG
#define SAMEPAGE_DEBUG 0
#endif
void debug_fail(const char *file, int line, const char *cond);
#define SP_ASSERT(level, cond)                                                                     \
	do {                                                                                       \
		if (SAMEPAGE_DEBUG >= (level) && !(cond))                                          \
			debug_fail(__FILE__, __LINE__, #cond);                                     \
	} while (0)

/* knobs.c */
int knob_index(const char *name);
int knob_store(unsigned long long *knob, int idx, unsigned long long v, bool ksm_pages_exist,
	       bool *unmerge);
int knob_format(int idx, long long v, char *buf, size_t len);

/* counters.c */
bool counter_value(const struct ksm_counts *c, int idx, long long *out);
void counts_add_process(struct ksm_counts *sum, const struct ksm_counts *one);

/* control.c */
bool domain_name_ok(const char *name);
#define HELLO_FDS 4 /* index, pool, ledger, guard */
/* How long a request to samepaged waits for its answer (-ETIMEDOUT), and
 * a scanner's HELLO to a daemon that was away (asked again each second). */
#define CONTROL_TIMEOUT_MS 10000
#define RECONNECT_TIMEOUT_MS 1000
int control_hello(const char *socket_path, const char *domain, unsigned timeout_ms, int *conn,
		  int fds[HELLO_FDS]);
/* One request on a client's connection; if its answer has not come in
 * CONTROL_QUICK_MS, slow(arg) is called (if given) before the wait goes
 * on, which has no limit. */
#define CONTROL_QUICK_MS 20
int control_request(int fd, const char *request, char *reply, size_t len, void (*slow)(void *),
		    void *arg);

/* alloc.c */
/* This thread is forking (set by fork.c, defined in alloc.c, the lowest
 * file that looks at it): between the prepare handler and the parent's or
 * the child's, it holds every lock of the library (the other fork handlers
 * run then, and may free memory). */
extern _Thread_local bool fork_forking;
/* The library's locks that fork_prepare() takes: a no-op in the forking
 * thread, which holds them (RELIABILITY.md 44). */
static inline void fork_held_lock(pthread_mutex_t *m)
{
	if (!fork_forking)
		pthread_mutex_lock(m);
}
static inline void fork_held_unlock(pthread_mutex_t *m)
{
	if (!fork_forking)
		pthread_mutex_unlock(m);
}
void own_add(uintptr_t start, uintptr_t end);
void own_remove(uintptr_t start);
bool own_find(uintptr_t start, uintptr_t end, uintptr_t *os, uintptr_t *oe);
uint64_t as_limit(void);
size_t as_share(size_t whole, unsigned div, size_t floor);
void *lib_pages(size_t len);
void lib_pages_free(void *p, size_t len);
void *lib_malloc(size_t n);
void *lib_calloc(size_t n, size_t size);
void *lib_realloc(void *p, size_t n);
void lib_free(void *p);
void alloc_fork_lock(void);
void alloc_fork_unlock(void);

/* guard.c */
enum { WINDOW_MPROTECT, WINDOW_UFFD_USER, WINDOW_UFFD }; /* the window mechanisms */
int guard_window_kind(void);
void guard_window_env_check(void);
void guard_arm(uintptr_t start, uintptr_t end);
void guard_disarm(uintptr_t start, uintptr_t end);
void io_begin(uintptr_t start, uintptr_t end, uintptr_t key);
void io_end(uintptr_t key);
bool io_pending(uintptr_t key);
void io_ring_reap(uintptr_t ctx);
void io_ring_forget(uintptr_t ctx);
void as_lock_exclusive(void);
void as_lock_shared(void);
bool as_trylock_exclusive(void);
void as_unlock(void);
void as_reinit(void);
void guard_fork_lock(void);
void guard_fork_parent(void);
void guard_fork_child(void);
void handler_ensure(void);
void guard_own_statics(void);
bool guard_on_own_stack(uintptr_t start, uintptr_t end);
int window_open(uintptr_t start, uintptr_t end, int prot);
void window_restore(int slot, uintptr_t start, uintptr_t end, int prot);
void window_close(int slot);
int guard_sigaltstack(const stack_t *ss, stack_t *old);
void altstack_each(uint32_t *seen, void (*fn)(uintptr_t s, uintptr_t e, void *arg), void *arg);
bool guarded_copy(void *dst, const void *src, size_t len);
bool guarded_equal(const void *a, const void *b, size_t len);
bool guarded_is_zero(const void *a, size_t len);
uint64_t page_hash(const void *page);
int guarded_touch(uintptr_t a, int prot);
extern _Atomic uint64_t merge_window_waits, merges_skipped_io;

/* promise.c */
#define PROMISE_DONTFORK 0x01
#define PROMISE_DONTDUMP 0x02
#define PROMISE_LOCKED 0x04
#define PROMISE_WIPEONFORK 0x08
#define PROMISE_MALLOC 0x10
#define PROMISE_UNMERGEABLE 0x20
#define PROMISE_NOHUGEPAGE 0x40
#define PROMISE_HUGEPAGE 0x80
#define PROMISE_UFFD 0x100 /* registered with the application's own userfaultfd */
/* Eight bits of a memory policy's number in promise.c's table (mbind). */
#define PROMISE_POLICY_SHIFT 9
#define PROMISE_POLICY_MASK (0xffu << PROMISE_POLICY_SHIFT)
#define PROMISE_ONFAULT (0x100u << PROMISE_POLICY_SHIFT) /* locked on fault (MLOCK_ONFAULT) */
/* A protection key other than 0 (pkey_mprotect): kept out of merging. */
#define PROMISE_PKEY (0x200u << PROMISE_POLICY_SHIFT)
/* A stack that grows down (VM_GROWSDOWN: the main thread's [stack],
 * MAP_GROWSDOWN): kept out of merging. */
#define PROMISE_GROWSDOWN (0x400u << PROMISE_POLICY_SHIFT)
/* A signal stack (sigaltstack), noted by a scanner (altstack_each()):
 * kept out of merging until the memory is unmapped. */
#define PROMISE_ALTSTACK (0x800u << PROMISE_POLICY_SHIFT)
/* Sealed (mseal): no mapping may replace it, so a merged page could never
 * be discarded or unmerged again; kept out of merging for good. */
#define PROMISE_SEALED (0x1000u << PROMISE_POLICY_SHIFT)
#define PROMISE_LAST PROMISE_SEALED
/* What keeps pages out of merging, of what a mapping promises (a malloc
 * heap, PROMISE_MALLOC, keeps them out too, found by other means). */
#define PROMISE_KEEPS                                                                              \
	(PROMISE_UFFD | PROMISE_WIPEONFORK | PROMISE_PKEY | PROMISE_GROWSDOWN | PROMISE_ALTSTACK | \
	 PROMISE_SEALED)
void promise_set(uintptr_t start, uintptr_t end, unsigned flag, bool on);
void promise_apply(uintptr_t start, uintptr_t end);
void promise_future_locked(bool on);
void promise_fork_lock(void);
void promise_fork_unlock(void);
void promise_apply_merged(uintptr_t start, uintptr_t end);
void promise_apply_onfault(uintptr_t start, uintptr_t end);
void promise_apply_at(uintptr_t start, uintptr_t end, uintptr_t at);
void promise_set_policy(uintptr_t start, uintptr_t end, int mode, const unsigned long *nodes,
			unsigned long maxnode);
void promise_policy_apply_at(uintptr_t start, uintptr_t end, uintptr_t at);
void promise_move(uintptr_t old, size_t len, uintptr_t new, bool keep_old);
unsigned promise_flags(uintptr_t addr);
int promise_map_locked(uintptr_t start, uintptr_t end);
bool promise_find(uintptr_t start, uintptr_t end, unsigned flag, uintptr_t *fs, uintptr_t *fe);

/* domain.c */
int domain_create(int *index_fd, int *pool_fd, const char *name, uint32_t cap);
int domain_map(struct stable_index *s, int index_fd, uint32_t cap);
void domain_unmap(struct stable_index *s);
int domain_lock(struct domain *d);
int domain_trylock(struct domain *d, unsigned ms);
bool domain_unlock(struct domain *d);
void domain_hand_over(struct domain *d);

/* pool.c */
int pool_open(struct pool *p, int fd, uint32_t cap);
uint32_t pool_pages_allowed(void);
void pool_destroy(struct pool *p);
int pool_alloc(struct samepage *sp, uint32_t want, uint32_t *off);
bool pool_can_take(struct samepage *sp, uint32_t off);
const void *pool_contents(struct samepage *sp, uint32_t off);
void pool_write(struct samepage *sp, uint32_t off, const void *page);
void pool_release(struct samepage *sp, uint32_t off);
bool ledger_ready(struct samepage *sp, uint32_t idx);
bool pool_unplaced(struct samepage *sp, uint32_t idx);
static inline char *pool_page(struct pool *p, uint32_t off)
{
	return p->view + ((size_t)off << PAGE_SHIFT);
}
/* How many KSM pages the engine may hold: DOM_NODES, or fewer for a
 * local engine whose address space could not map the whole pool. */
static inline uint32_t pool_capacity(const struct samepage *sp)
{
	return (uint32_t)sp->pool.view_pages;
}

/* pages.c */
struct region *region_of_id(struct samepage *sp, uint32_t id, size_t *index, size_t *ri);
struct page_meta *meta_of_id(struct samepage *sp, uint32_t id);
int region_prot_at(const struct region *r, uintptr_t addr);
static inline uintptr_t region_addr(const struct region *r, size_t i)
{
	return r->start + (i << PAGE_SHIFT);
}
/* The pages [*from, *to) of r inside [start, end); false if none. */
static inline bool region_clip(const struct region *r, uintptr_t start, uintptr_t end, size_t *from,
			       size_t *to)
{
	uintptr_t rend = region_addr(r, r->npages);
	if (rend <= start || r->start >= end)
		return false;
	*from = start > r->start ? (start - r->start) >> PAGE_SHIFT : 0;
	*to = end < rend ? (end - r->start) >> PAGE_SHIFT : r->npages;
	return true;
}

/* index.c */
void ledger_unref(struct samepage *sp, uint32_t idx);
void ledger_hold(struct samepage *sp, uint32_t idx);
void ledger_unhold(struct samepage *sp, uint32_t idx, bool mapped);
void ledger_pin(struct samepage *sp, uint32_t idx);
void ledger_unpin(struct samepage *sp, uint32_t idx);
bool ledger_reap(struct samepage *sp, uint32_t idx, uint32_t refs, uint32_t held,
		 bool children_gone);
void stable_unpin(struct samepage *sp, uint32_t idx);
bool pool_page_dying(struct samepage *sp, uint32_t idx);
void stable_hide(struct samepage *sp, uint32_t idx);
void index_lock(struct samepage *sp);
bool index_lock_as(struct samepage *sp);
bool index_trylock(struct samepage *sp);
void index_unlock(struct samepage *sp);
bool index_waited(struct samepage *sp);
void index_release(struct samepage *sp);
bool index_retake(struct samepage *sp);
void index_as_retake(struct samepage *sp);
bool index_chains_ok(struct samepage *sp);
uint32_t stable_chain_head(struct samepage *sp, const void *page, uint32_t checksum);
void stable_chain_load(struct samepage *sp, uint32_t head, uint32_t checksum, uint64_t *held,
		       uint64_t *room);
bool stable_dup_has_room(struct samepage *sp, uint32_t off, uint32_t checksum);
bool stable_has_checksum(struct samepage *sp, uint32_t checksum);
uint32_t stable_search(struct samepage *sp, const void *page, uint32_t checksum, bool *all_full);
int stable_insert(struct samepage *sp, const void *page, uint32_t checksum, uint32_t want_off,
		  uint32_t *out);
void stable_get(struct samepage *sp, uint32_t node);
void stable_put(struct samepage *sp, uint32_t node);
void stable_drop(struct samepage *sp, uint32_t node, uint32_t count, bool mine);
int unstable_start(struct samepage *sp);
uint32_t unstable_search_insert(struct samepage *sp, uint32_t id, const void *page,
				uint32_t checksum);
void unstable_remove(struct samepage *sp, uint32_t id);
bool unstable_in_last_scan(struct samepage *sp, const struct page_meta *m);
void remove_rmap_item_from_tree(struct samepage *sp, uint32_t id);

/* debug.c */
void invariants_check(struct samepage *sp);

/* region.c */
extern _Atomic unsigned long regions_added;
void regions_note_merge(struct samepage *sp);
bool regions_merged_by_another(const struct samepage *sp);
int regions_refresh(struct samepage *sp);
void regions_count_maps(struct samepage *sp);
bool regions_range_current(struct samepage *sp, uintptr_t a, uintptr_t e, int prot, bool poolmap);
int regions_check_mapped(struct samepage *sp, uintptr_t start, uintptr_t end);
int regions_add(struct samepage *sp, uintptr_t start, uintptr_t end);
int regions_add_anon(struct samepage *sp, uintptr_t start, uintptr_t end);
void regions_arm(uintptr_t s, uintptr_t t);
void regions_forget(struct samepage *sp, uintptr_t start, size_t len);
struct unmapped {
	uintptr_t start;
	size_t len;
	bool keep; /* given another protection, not unmapped */
};
void regions_catch_up(struct samepage *sp, const struct unmapped *u, size_t n, bool dirty);
void region_drop_page(struct samepage *sp, struct region *r, size_t i);

/* unmerge.c */
int break_cow(struct samepage *sp, struct region *r, size_t i);
int huge_block_to_small(uintptr_t s, uintptr_t e, int prot);
int unmerge_range(struct samepage *sp, struct region *r, size_t from, size_t to);
int regions_unmerge(struct samepage *sp, uintptr_t start, size_t len);
int unmerge_all(struct samepage *sp);
int regions_keep(struct samepage *sp, uintptr_t start, size_t len);
void regions_unkeep(struct samepage *sp, uintptr_t start, size_t len);
void keep_protected_vmas(struct samepage *sp, uintptr_t start, uintptr_t end);
void keep_altstacks(struct samepage *sp);
void keep_sealed(struct samepage *sp);
int pool_mappings_to_anon(struct samepage *sp, uintptr_t start, uintptr_t end, bool copy);
struct pooled {
	struct prot_span *spans;
	size_t n;
	bool read, all;
};
void pooled_read(struct samepage *sp, uintptr_t start, uintptr_t end, struct pooled *pl);
bool pooled_has(const struct pooled *pl, uintptr_t a);
void pooled_free(struct pooled *pl);
int unmerge_for_mremap(struct samepage *sp, struct region *r, size_t from, size_t to);
void stale_pool_add(dev_t dev, ino_t ino, struct fork_shared *area, bool unmap);
void stale_forks_started(void);
void stale_forks_register(pid_t pid);
void stale_pools_lock(void);
void stale_pools_unlock(void);
int stale_pools_discard(uintptr_t start, uintptr_t end);
int stale_pools_keep(uintptr_t start, uintptr_t end);
void stale_pools_moved(void);
int mremap_one_mapping(uintptr_t start, uintptr_t end);

/* merge.c */
bool merge_batch(struct samepage *sp);

/* engines.c */
extern pthread_mutex_t engines_lock;
extern pthread_rwlock_t engines_rw;
extern struct samepage *engines;
extern _Atomic int nengines;
bool engine_alive(const struct samepage *sp);
bool engine_spans(struct samepage *sp, uintptr_t start, size_t len);
void engines_add(struct samepage *sp);
void engines_remove(struct samepage *sp);
void engine_note_unmap(uintptr_t start, size_t len);
void engine_note_change(uintptr_t start, size_t len);
void engine_note_new(void);
void engine_lock(struct samepage *sp);
void engine_enter(struct samepage *sp);
void engine_leave(struct samepage *sp);
void engine_sync(struct samepage *sp);
void engine_counts(struct samepage *sp, struct ksm_counts *out);
void engine_publish(struct samepage *sp);
void engine_snapshot(struct samepage *sp, struct ksm_counts *out);
bool engine_behind(struct samepage *sp);
void engine_unlock(struct samepage *sp);

/* fork.c */
void fork_init(void);
bool fork_children_gone(struct samepage *sp, uint32_t *started, uint32_t *registered);
bool fork_area_live(const struct fork_shared *f, uint32_t started, uint32_t reg,
		    bool (*maps)(pid_t pid, void *arg), void *arg);
void fork_reap(struct samepage *sp);
void fork_pin_at_close(struct samepage *sp);
void fork_reap_pages(struct samepage *sp);
void fork_forget_pins(struct samepage *sp);

/* mergeany.c */
/* glibc's malloc chunk header, just before the memory it gives: the size
 * of the chunk with 3 flags; IS_MMAPPED: a block mapped by itself, whose
 * first word is its offset from the mapping's start. */
#define CHUNK_FLAGS 7UL
#define CHUNK_IS_MMAPPED 2UL
extern bool merge_any_blocks;
void merge_any_refresh(struct samepage *sp);

/* scan.c */
int ksmd_start(struct samepage *sp);
void ksmd_stop(struct samepage *sp);
void ksm_do_scan(struct samepage *sp, uint64_t budget);
extern uint32_t zero_checksum;

/* engine.c */
int engine_open(struct samepage **out, int index_fd, int pool_fd, uint32_t cap);
int engine_start(struct samepage *sp);
void engine_free(struct samepage *sp);
int engine_register(struct samepage *sp, uintptr_t start, size_t len);
int engine_discard_locked(struct samepage *sp, uintptr_t start, size_t len, bool copy);
bool hold_if_hits(struct samepage *sp, uintptr_t start, size_t len, bool all);
struct hold {
	/* each engine held, inside engine_enter(); then the rest, each try */
	void (*engine)(struct samepage *sp, uintptr_t start, size_t len, void *ctx);
	void (*rest)(uintptr_t start, size_t len, void *ctx);
	const char *pause; /* debug_pause()'s point before the address-space lock */
};
bool engines_hold(uintptr_t start, size_t len, const struct hold *h, void *ctx);
void engines_unhold(bool locked);
int engines_discard(void *addr, size_t len, int advice);
long engines_with_copies(void *addr, size_t len, long (*op)(void *), void *arg);

/* interpose.c */
void *interpose_next(const char *name, void *_Atomic *cache, void *fallback);
extern int (*interpose_merge_advice)(void *addr, size_t len, int advice);
extern void (*_Atomic interpose_pending)(void);
bool interpose_active(void);

/* interpose-io.c */
long interpose_rt_sigprocmask(int how, const void *set, void *old, size_t size);

#endif
