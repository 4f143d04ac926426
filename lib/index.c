// SPDX-License-Identifier: MIT
/*
 * index.c - the stable and unstable trees, as hash indexes.
 *
 * The kernel keeps both trees ordered by memcmp of whole pages, O(log n)
 * memcmps per lookup.  Here both are hash tables keyed by the page's 32-bit
 * checksum (the low half of its XXH3-64), and every hit is confirmed by a
 * full memcmp, so a checksum collision never merges different pages.
 *
 * Stable index: one stable_node per KSM page.  Dups of one content (made
 * when a KSM page reaches max_page_sharing) share a bucket, and the
 * kernel's rules pick among them: a dup is a sharing candidate while
 * mapcount + pending < max_page_sharing, the fullest candidate wins, and
 * when every dup is full the search fails so that a new dup is made from an
 * unstable match (stable_node_chains/dups count contents with two or more
 * dups, as the kernel's chains).
 *
 * Unstable index: bucket heads, with the chains linked through the pages'
 * own page_meta.link, so it costs 2 to 4 bytes per tracked page.  It is
 * thrown away at the start of every full scan by clearing the heads; a
 * page's PM_UNSTABLE flag only counts while its seqnr is the current one.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- stable index (in the domain: called with the domain locked) ---- */

#define BUCKET(c) ((c) & (DOM_BUCKETS - 1))

/*
 * The dups of one content (the kernel's stable_node_chain) are linked
 * newest first through dupnext, in the order of their bucket (both take a
 * new node at their head), so the first node of the bucket that holds the
 * contents is the chain's head: one memcmp finds every dup.  A chain is
 * followed only while its nodes are in use with the same checksum: a
 * domain's index is shared, and a merge compares the bytes again anyway.
 * A node's checksum may be of other contents than its pool page (a writer
 * changed the page between the scanner's hash and its copy): it is found
 * by its bytes, so it never joins another content's chain.
 */
static uint32_t dup_head(struct samepage *sp, const void *page, uint32_t checksum)
{
	struct stable_index *s = &sp->stable;
	for (uint32_t l = s->heads[BUCKET(checksum)]; l; l = s->nodes[l - 1].hnext)
		if (s->nodes[l - 1].checksum == checksum &&
		    !memcmp(pool_contents(sp, l - 1), page, PAGE_SIZE))
			return l - 1;
	return NIL;
}

/* Whether a KSM page with this checksum may exist: the bucket alone, no
 * memcmp (a search confirms it). */
bool stable_has_checksum(struct samepage *sp, uint32_t checksum)
{
	struct stable_index *s = &sp->stable;
	for (uint32_t l = s->heads[BUCKET(checksum)]; l; l = s->nodes[l - 1].hnext)
		if (s->nodes[l - 1].checksum == checksum && s->nodes[l - 1].in_use)
			return true;
	return false;
}

/* The chain head of `page`'s contents, or NIL. */
uint32_t stable_chain_head(struct samepage *sp, const void *page, uint32_t checksum)
{
	return dup_head(sp, page, checksum);
}

static uint32_t dup_next(struct samepage *sp, uint32_t i, uint32_t checksum)
{
	uint32_t l = sp->stable.nodes[i].dupnext;
	if (!l || l > sp->dom->nr)
		return NIL;
	const struct stable_node *n = &sp->stable.nodes[l - 1];
	return n->in_use && n->checksum == checksum ? l - 1 : NIL;
}

/* Calls fn on every dup of `page`'s contents from `head`; returns how many
 * there are. */
static uint32_t for_each_dup_from(struct samepage *sp, uint32_t head, uint32_t checksum,
				  void (*fn)(struct samepage *, uint32_t, void *), void *arg)
{
	uint32_t count = 0;
	for (uint32_t i = head; i != NIL && count <= sp->dom->nr; i = dup_next(sp, i, checksum)) {
		count++;
		if (fn)
			fn(sp, i, arg);
	}
	return count;
}

static uint32_t for_each_dup(struct samepage *sp, const void *page, uint32_t checksum,
			     void (*fn)(struct samepage *, uint32_t, void *), void *arg)
{
	return for_each_dup_from(sp, dup_head(sp, page, checksum), checksum, fn, arg);
}

/* For debug.c, what is wrong with node i's chain, on stderr. */
static void chain_print(struct samepage *sp, uint32_t i, uint32_t head)
{
	struct stable_index *s = &sp->stable;
	const struct stable_node *n = &s->nodes[i];
	fprintf(stderr, "libsamepage: node %u (checksum %08x): bucket", i, n->checksum);
	for (uint32_t l = s->heads[BUCKET(n->checksum)]; l; l = s->nodes[l - 1].hnext) {
		const struct stable_node *b = &s->nodes[l - 1];
		if (b->checksum == n->checksum)
			fprintf(stderr, " %u%s(next %d, maps %u, pending %u)", l - 1,
				memcmp(pool_contents(sp, l - 1), pool_contents(sp, i), PAGE_SIZE)
				    ? "[other]"
				    : "",
				(int)b->dupnext - 1, b->mapcount, b->pending);
	}
	fprintf(stderr, "; chain from %d:", (int)head);
	for (uint32_t c = head, k = 0; c != NIL && k <= sp->dom->nr;
	     c = dup_next(sp, c, n->checksum), k++)
		fprintf(stderr, " %u", c);
	fprintf(stderr, "\n");
}

/* For debug.c: whether every node's chain holds exactly the dups its
 * bucket holds (a memcmp of each), and the chains' count is the domain's;
 * what is wrong goes to stderr. */
bool index_chains_ok(struct samepage *sp)
{
	struct stable_index *s = &sp->stable;
	uint64_t chains = 0, dups = 0;
	for (uint32_t i = 0; i < sp->dom->nr; i++) {
		const struct stable_node *n = &s->nodes[i];
		if (!n->in_use)
			continue;
		const void *page = pool_contents(sp, i);
		uint32_t by_bucket = 0;
		for (uint32_t l = s->heads[BUCKET(n->checksum)]; l; l = s->nodes[l - 1].hnext)
			by_bucket += s->nodes[l - 1].checksum == n->checksum &&
				     !memcmp(pool_contents(sp, l - 1), page, PAGE_SIZE);
		uint32_t head = dup_head(sp, page, n->checksum);
		if (by_bucket != for_each_dup_from(sp, head, n->checksum, NULL, NULL)) {
			chain_print(sp, i, head);
			return false;
		}
		if (head == i && by_bucket >= 2)
			chains++, dups += by_bucket;
	}
	if (chains == sp->dom->chains && dups == sp->dom->dups)
		return true;
	fprintf(stderr, "libsamepage: %llu chains of %llu dups counted, %llu of %llu found\n",
		(unsigned long long)sp->dom->chains, (unsigned long long)sp->dom->dups,
		(unsigned long long)chains, (unsigned long long)dups);
	return false;
}

struct load {
	uint64_t held, room, mps;
};

static void add_load(struct samepage *sp, uint32_t i, void *arg)
{
	struct load *l = arg;
	const struct stable_node *n = &sp->stable.nodes[i];
	uint64_t held = (uint64_t)n->mapcount + n->pending;
	l->held += held;
	l->room += held < l->mps ? l->mps - held : 0;
}

/* The mappings (and merges under way) the dups of a chain hold, and the
 * room left in them under max_page_sharing. */
void stable_chain_load(struct samepage *sp, uint32_t head, uint32_t checksum, uint64_t *held,
		       uint64_t *room)
{
	struct load l = {0, 0, KNOB(sp, max_page_sharing)};
	for_each_dup_from(sp, head, checksum, add_load, &l);
	*held = l.held;
	*room = l.room;
}

/* Whether pool page off is a KSM page of these contents (by checksum: the
 * merge compares the pages) that may take one more mapping. */
bool stable_dup_has_room(struct samepage *sp, uint32_t off, uint32_t checksum)
{
	if (off >= sp->dom->nr)
		return false;
	const struct stable_node *n = &sp->stable.nodes[off];
	return n->in_use && n->checksum == checksum &&
	       (uint64_t)n->mapcount + n->pending < KNOB(sp, max_page_sharing);
}

static bool is_page_sharing_candidate(struct samepage *sp, const struct stable_node *n)
{
	uint64_t held = (uint64_t)n->mapcount + n->pending;
	return held && held < KNOB(sp, max_page_sharing);
}

struct best {
	uint32_t node;
	bool any;
};

static void pick_fullest(struct samepage *sp, uint32_t i, void *arg)
{
	struct best *b = arg;
	struct stable_node *n = &sp->stable.nodes[i], *cur;
	b->any = true;
	if (!is_page_sharing_candidate(sp, n))
		return;
	cur = b->node == NIL ? NULL : &sp->stable.nodes[b->node];
	if (!cur || n->mapcount + n->pending > cur->mapcount + cur->pending)
		b->node = i;
}

/* stable_tree_search: the dup that should take one more mapping of `page`,
 * or NIL (with *all_full when the content exists but every dup is full). */
uint32_t stable_search(struct samepage *sp, const void *page, uint32_t checksum, bool *all_full)
{
	struct best b = {NIL, false};
	for_each_dup(sp, page, checksum, pick_fullest, &b);
	*all_full = b.any && b.node == NIL;
	return b.node;
}

/* A content with k >= 2 dups is a chain of k dups. */
static void chain_counts(struct samepage *sp, uint32_t before, uint32_t after)
{
	struct domain *d = sp->dom;
	if (before >= 2) {
		d->chains--;
		d->dups -= before;
	}
	if (after >= 2) {
		d->chains++;
		d->dups += after;
	}
}

/* stable_tree_insert: a new KSM page holding `page`'s contents, at pool
 * offset want_off if that is free.  It starts with no mapping; the merges
 * that follow add them.  It becomes the newest dup of its contents' chain
 * (found by its bytes: dup_head()). */
int stable_insert(struct samepage *sp, const void *page, uint32_t checksum, uint32_t want_off,
		  uint32_t *out)
{
	struct stable_index *s = &sp->stable;
	uint32_t idx, head = dup_head(sp, page, checksum);
	int err = pool_alloc(sp, want_off, &idx);
	if (err)
		return err;
	pool_write(sp, idx, page);
	uint32_t dups = for_each_dup_from(sp, head, checksum, NULL, NULL);
	chain_counts(sp, dups, dups + 1);

	struct stable_node *n = &s->nodes[idx];
	*n = (struct stable_node){
	    .checksum = checksum, .dupnext = head == NIL ? 0 : head + 1, .in_use = NODE_USED};
	n->hnext = s->heads[BUCKET(checksum)];
	s->heads[BUCKET(checksum)] = idx + 1; /* linked last: a dying writer leaves no half node */
	sp->dom->live++;
	*out = idx;
	return 0;
}

/* samepaged's ledger: this process's references to pool page idx, which
 * the daemon checks before it rewrites or punches the page.  A reference
 * is taken when a merge is queued (before the page is compared) and kept
 * by the mapping; dropped when the merge fails or the mapping goes. */
static void counter_down(_Atomic uint32_t *c)
{
	if (atomic_load(c))
		atomic_fetch_sub(c, 1);
}

/* A mapping's reference goes. */
void ledger_unref(struct samepage *sp, uint32_t idx)
{
	if (sp->stable.refs)
		counter_down(&sp->stable.refs[idx]);
}

/* A reference that is no mapping: a merge under way (a pin for forked
 * children: ledger_pin).  Counted in held too, held first: a process
 * killed in between leaves held at least its share, and samepaged's
 * reaper takes refs - held off the page's mapping count (ledger_reap),
 * never too many. */
void ledger_hold(struct samepage *sp, uint32_t idx)
{
	if (sp->stable.refs) {
		atomic_fetch_add(&sp->stable.held[idx], 1);
		atomic_fetch_add(&sp->stable.refs[idx], 1);
	}
}

/* Its end: the reference goes (refs first, for the same reason), or stays
 * as the mapping a merge made (mapped: after stable_get counted it). */
void ledger_unhold(struct samepage *sp, uint32_t idx, bool mapped)
{
	if (!sp->stable.refs)
		return;
	if (!mapped)
		counter_down(&sp->stable.refs[idx]);
	if (atomic_load(&sp->stable.held[idx]) & ~LEDGER_PIN) /* never the pin's bit */
		atomic_fetch_sub(&sp->stable.held[idx], 1);
}

/* This process pins node idx for its forked children (at most once: the
 * node's `pinned` counts processes): a reference, marked by LEDGER_PIN in
 * held rather than counted there, so that samepaged, reaping this process
 * once its children are gone, knows which nodes' `pinned` it had raised. */
void ledger_pin(struct samepage *sp, uint32_t idx)
{
	if (sp->stable.refs && !(atomic_fetch_or(&sp->stable.held[idx], LEDGER_PIN) & LEDGER_PIN))
		atomic_fetch_add(&sp->stable.refs[idx], 1);
}

void ledger_unpin(struct samepage *sp, uint32_t idx)
{
	if (sp->stable.refs && (atomic_load(&sp->stable.held[idx]) & LEDGER_PIN)) {
		counter_down(&sp->stable.refs[idx]);
		atomic_fetch_and(&sp->stable.held[idx], ~LEDGER_PIN);
	}
}

/* Of a ledger's refs[idx], those that are no mappings: the merges under
 * way counted in held, and the pin it marks. */
static uint32_t ledger_held_refs(uint32_t held)
{
	return (held & ~LEDGER_PIN) + !!(held & LEDGER_PIN);
}

/* Whether samepaged is rewriting or punching pool page idx: checked after
 * the reference is taken (a full fence between), as the daemon checks the
 * references after it marks the page, so one of the two sees the other. */
bool pool_page_dying(struct samepage *sp, uint32_t idx)
{
	if (!sp->stable.guard)
		return false;
	atomic_thread_fence(memory_order_seq_cst);
	return atomic_load(&sp->stable.guard[idx]) != 0;
}

/* A verified mapping joins the node: the first makes it a shared page, the
 * others are "sharing" (pages saved). */
void stable_get(struct samepage *sp, uint32_t idx)
{
	struct stable_node *n = &sp->stable.nodes[idx];
	if (n->mapcount++ == 0)
		sp->dom->pages_shared++;
	else
		sp->dom->pages_sharing++;
	sp->c.merging_pages++; /* the ledger counted it when the merge was queued */
}

/* The head of node idx's chain, by the links alone (no pool page is read:
 * it may be a hole samepaged could not write): the newest node of its
 * bucket with its checksum from which idx is reached; idx if none is. */
static uint32_t chain_head_of(struct samepage *sp, uint32_t idx)
{
	struct stable_index *s = &sp->stable;
	uint32_t checksum = s->nodes[idx].checksum;
	for (uint32_t l = s->heads[BUCKET(checksum)]; l; l = s->nodes[l - 1].hnext) {
		if (s->nodes[l - 1].checksum != checksum || !s->nodes[l - 1].in_use)
			continue;
		uint32_t k = 0;
		for (uint32_t i = l - 1; i != NIL && k <= sp->dom->nr;
		     i = dup_next(sp, i, checksum), k++)
			if (i == idx)
				return l - 1;
	}
	return idx;
}

/* Takes node idx out of its chain and its bucket: nobody finds it any
 * more. */
static void stable_unlink(struct samepage *sp, uint32_t idx)
{
	struct stable_index *s = &sp->stable;
	struct stable_node *n = &s->nodes[idx];
	uint32_t *pp = &s->heads[BUCKET(n->checksum)];

	uint32_t head = chain_head_of(sp, idx);
	uint32_t dups = for_each_dup_from(sp, head, n->checksum, NULL, NULL);
	chain_counts(sp, dups, dups - 1);
	/* Out of its chain (the head leaves by leaving the bucket), then out of
	 * the bucket. */
	for (uint32_t i = head; i != NIL && i != idx; i = dup_next(sp, i, n->checksum))
		if (s->nodes[i].dupnext == idx + 1) {
			s->nodes[i].dupnext = n->dupnext;
			break;
		}
	while (*pp && *pp != idx + 1)
		pp = &s->nodes[*pp - 1].hnext;
	if (*pp)
		*pp = n->hnext;
	n->hnext = 0;
	n->dupnext = 0;
}

/* A node made in this batch whose pool page samepaged did not write (no
 * room, client.c): out of the index at once, so that no process compares
 * a page with that hole; its merges under way fail and free it. */
void stable_hide(struct samepage *sp, uint32_t idx)
{
	if (sp->stable.nodes[idx].in_use)
		stable_unlink(sp, idx);
}

static void stable_free(struct samepage *sp, uint32_t idx)
{
	stable_unlink(sp, idx);
	sp->stable.nodes[idx].in_use = 0;
	sp->dom->live--;
	pool_release(sp, idx);
}

/* Drops one mapping count of node idx; frees the node (and punches its
 * pool page) when nothing maps it, nothing is about to, and no forked
 * child may.  Shared with samepaged's reaper (mine = false). */
void stable_drop(struct samepage *sp, uint32_t idx, uint32_t count, bool mine)
{
	struct stable_node *n = &sp->stable.nodes[idx];
	for (; count && n->mapcount; count--) {
		if (--n->mapcount == 0)
			sp->dom->pages_shared--;
		else
			sp->dom->pages_sharing--;
		if (mine) {
			sp->c.merging_pages--;
			ledger_unref(sp, idx);
		}
	}
	if (n->in_use && n->mapcount == 0 && n->pending == 0 && !n->pinned)
		stable_free(sp, idx);
}

/* A process's pin on node idx goes: the node is freed (its pool page
 * punched) if nothing else maps it, is about to, or pins it.  A node
 * pinned for good (255: the pins could not be counted) stays. */
void stable_unpin(struct samepage *sp, uint32_t idx)
{
	struct stable_node *n = &sp->stable.nodes[idx];
	if (n->pinned && n->pinned < 255)
		n->pinned--;
	stable_drop(sp, idx, 0, false);
}

/* samepaged's reaper: the references a gone process's ledger counts to
 * node idx (refs, of which held says which are no mappings).  Its
 * mappings leave the node's count, and its merges under way (held, less
 * the pin's bit) the node's pending count: a client merges with the lock
 * let go (merge_batch), so it may die with merges under way without it.
 * Its pin (the result: whether it had one) goes only with children_gone:
 * until its forked children are gone they may still read the page. */
bool ledger_reap(struct samepage *sp, uint32_t idx, uint32_t refs, uint32_t held,
		 bool children_gone)
{
	uint32_t not_mapped = ledger_held_refs(held), under_way = held & ~LEDGER_PIN;
	struct stable_node *n = &sp->stable.nodes[idx];
	n->pending = n->pending > under_way ? (uint16_t)(n->pending - under_way) : 0;
	stable_drop(sp, idx, refs > not_mapped ? refs - not_mapped : 0, false);
	if (children_gone && (held & LEDGER_PIN))
		stable_unpin(sp, idx);
	return held & LEDGER_PIN;
}

/* A mapping left the node (copy-on-write, unmerge, unmap). */
void stable_put(struct samepage *sp, uint32_t idx)
{
	stable_drop(sp, idx, 1, true);
}

/* After the domain lock was taken from a process that died holding it:
 * free the nodes nothing maps and nothing is about to (made for merges
 * that never happened).  The pending counts it left on nodes it was
 * merging into stay until samepaged reaps its ledger, which holds them
 * (ledger_reap): other processes' merges under way count there too, as
 * they merge with the lock let go.  Every other change made under the
 * lock is a counter or a link written last, so the rest is consistent. */
static void index_repair(struct samepage *sp)
{
	struct domain *d = sp->dom;
	uint32_t nr = d->nr < DOM_NODES ? d->nr : DOM_NODES; /* a client may have written it */
	for (uint32_t i = 0; i < nr; i++) {
		struct stable_node *n = &sp->stable.nodes[i];
		if (n->in_use)
			stable_drop(sp, i, 0, false);
	}
	pthread_mutex_consistent(&d->lock);
}

/* Takes the domain lock for a change of the stable index. */
void index_lock(struct samepage *sp)
{
	if (domain_lock(sp->dom) == EOWNERDEAD)
		index_repair(sp);
}

/*
 * The domain lock, for a thread that holds the address-space lock for
 * writing (engine_enter(), a batch taking the lock back), and holds it
 * again on return.  Another process of the domain may hold the domain lock
 * for as long as it is stopped (SIGSTOP, a debugger, a frozen cgroup):
 * waiting for it with the address-space lock held stopped every mmap,
 * munmap, mprotect and free() of a mapped block in this process, a VM
 * monitor's threads with them (RELIABILITY.md 45).  So it waits with the
 * address-space lock let go.  Returns whether it let it go: the
 * application may have changed its mappings meanwhile (sp->changed says
 * whether it did, engine_sync() catches up).
 */
static bool index_lock_now(struct samepage *sp)
{
	int err = domain_trylock(sp->dom, 0);
	if (err == EOWNERDEAD)
		index_repair(sp);
	return err != EBUSY;
}

bool index_lock_as(struct samepage *sp)
{
	if (index_lock_now(sp))
		return false;
	as_unlock();
	for (;;) {
		index_lock(sp); /* the wait, with no address-space lock held */
		if (as_trylock_exclusive())
			return true;
		index_unlock(sp);
		as_lock_exclusive();
		if (index_lock_now(sp))
			return true;
		as_unlock();
	}
}

/* The same for samepaged, which must never wait long for it: a client
 * holds it through a whole batch, and may wait in it for samepaged's
 * answer to PLACE.  It waits 50 ms: a client's scanner that sees it
 * waiting lets it have the lock at the end of its batch (domain_hand_over);
 * with no wait at all, clients scanning hot kept it from the lock for
 * minutes.  False if another process held it all that time. */
bool index_trylock(struct samepage *sp)
{
	int err = domain_trylock(sp->dom, 50);
	if (err == EOWNERDEAD)
		index_repair(sp);
	return err != EBUSY;
}

void index_unlock(struct samepage *sp)
{
	sp->dom_waiters |= domain_unlock(sp->dom);
}

/* A samepaged client lets its domain's lock go while it works on its own
 * address space alone (reading its page tables, merging a batch): the
 * other processes' scanners and samepaged go on meanwhile.  A local
 * engine's domain is its own: it keeps the lock. */
void index_release(struct samepage *sp)
{
	if (sp->ledger)
		index_unlock(sp);
}

/* ...and takes it back, after a thread that waited for it had its turn,
 * with the address-space lock held for writing: whether the application
 * changed its mappings while that was let go (index_lock_as()); then the
 * caller touches no page before engine_enter() caught up. */
bool index_retake(struct samepage *sp)
{
	if (!sp->ledger)
		return false;
	if (index_waited(sp))
		domain_hand_over(sp->dom);
	return index_lock_as(sp) && atomic_load(&sp->changed);
}

/* The address-space lock taken back for writing by a batch that let it go
 * for a wait while it kept the domain lock (samepaged's answer to PLACE,
 * client.c): if a thread holds it, the domain lock is let go meanwhile, as
 * index_lock_as() does. */
void index_as_retake(struct samepage *sp)
{
	if (!as_trylock_exclusive()) {
		index_unlock(sp);
		as_lock_exclusive();
		index_lock_as(sp);
	}
}

/* Whether a thread waited for the domain lock at an index_unlock() since
 * the last call (then the caller lets it have the lock before taking it
 * again: domain_hand_over()).  Under sp->lock. */
bool index_waited(struct samepage *sp)
{
	bool waited = sp->dom_waiters;
	sp->dom_waiters = false;
	return waited;
}

/* ---- unstable index ---- */

/* The unstable tree lives one full scan: it is thrown away at the start of
 * each, and sized then for the pages the last full scan found present
 * (rmap_items), two per head, not for the address space registered.
 * Under merge-any that space is many times what is present (3 QEMU
 * guests: 1.2 million pages tracked, 147,000 present), and every head is
 * written at every reset: 1 MiB a guest, resident for nothing.  Grows at
 * once, shrinks when 4 times too large; an allocation that fails keeps
 * the table it had (a longer chain, never a wrong one). */
int unstable_start(struct samepage *sp)
{
	uint64_t want = 1024, have = sp->unstable.heads ? (uint64_t)sp->unstable.mask + 1 : 0;
	while (want < sp->c.rmap_items / 2 && want < (1ULL << 31))
		want <<= 1;
	if (want > have || want * 4 <= have) {
		uint32_t *h = lib_malloc(want * sizeof(uint32_t));
		if (!h && !have)
			return -ENOMEM;
		if (h) {
			lib_free(sp->unstable.heads);
			sp->unstable.heads = h;
			sp->unstable.mask = (uint32_t)(want - 1);
		}
	}
	memset(sp->unstable.heads, 0xff, ((size_t)sp->unstable.mask + 1) * sizeof(uint32_t));
	return 0;
}

static bool in_unstable_now(struct samepage *sp, const struct page_meta *m)
{
	return (m->flags & PM_UNSTABLE) && m->seqnr == (uint8_t)sp->c.full_scans;
}

/* Whether the full scan that has just ended left page m in its tree (the
 * tree is thrown away when the next one starts). */
bool unstable_in_last_scan(struct samepage *sp, const struct page_meta *m)
{
	return (m->flags & PM_UNSTABLE) && m->seqnr == (uint8_t)(sp->c.full_scans - 1);
}

/* unstable_tree_search_insert: a page id of equal contents already in the
 * tree (confirmed by memcmp of its live contents), or NIL after inserting
 * this page. */
uint32_t unstable_search_insert(struct samepage *sp, uint32_t id, const void *page,
				uint32_t checksum)
{
	uint32_t *head = &sp->unstable.heads[checksum & sp->unstable.mask];
	struct page_meta *me = meta_of_id(sp, id);

	for (uint32_t t = *head; t != NIL;) {
		size_t idx, ri;
		struct region *r = region_of_id(sp, t, &idx, &ri);
		struct page_meta *m = r ? &r->meta[idx] : NULL;
		if (!m || !in_unstable_now(sp, m))
			break; /* a stale chain: the rest is from an older scan */
		if (m->checksum == checksum && t != id && !(m->flags & PM_OFF) &&
		    guarded_equal((const void *)region_addr(r, idx), page, PAGE_SIZE))
			return t;
		t = m->link;
	}
	me->flags |= PM_UNSTABLE;
	me->seqnr = (uint8_t)sp->c.full_scans;
	me->link = *head;
	*head = id;
	sp->c.pages_unshared++;
	return NIL;
}

/* Unlinks a page from its bucket chain if it is in this scan's tree. */
void unstable_remove(struct samepage *sp, uint32_t id)
{
	struct page_meta *me = meta_of_id(sp, id);
	if (!(me->flags & PM_UNSTABLE))
		return;
	if (in_unstable_now(sp, me)) {
		uint32_t *pp = &sp->unstable.heads[me->checksum & sp->unstable.mask];
		while (*pp != NIL && *pp != id) {
			struct page_meta *m = meta_of_id(sp, *pp);
			if (!m || !in_unstable_now(sp, m))
				break;
			pp = &m->link;
		}
		if (*pp == id)
			*pp = me->link;
	}
	me->flags &= (uint8_t)~PM_UNSTABLE;
	me->link = NIL;
	sp->c.pages_unshared--;
}

/* remove_rmap_item_from_tree: out of whichever tree holds the page. */
void remove_rmap_item_from_tree(struct samepage *sp, uint32_t id)
{
	struct page_meta *me = meta_of_id(sp, id);
	if (me->flags & PM_STABLE) {
		me->flags &= (uint8_t)~PM_STABLE;
		stable_put(sp, me->link);
		me->link = NIL;
	} else if (me->flags & PM_UNSTABLE) {
		unstable_remove(sp, id);
	}
}
