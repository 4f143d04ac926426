// SPDX-License-Identifier: MIT
/*
 * scan.c - ksmd: the scanner thread and the merge decision.
 *
 * DOC: Overview
 *
 * As in mm/ksm.c.  The scanner walks every mergeable range in order, one
 * batch of pages at a time, pages_to_scan present pages per wake-up, then
 * sleeps sleep_millisecs.  A full pass over all ranges is a "full scan"
 * (the full_scans counter).  For each present page (cmp_and_merge_page):
 *
 *  - a page that maps a KSM page is left alone, unless the application
 *    wrote it since (the kernel copied it): then it leaves its stable node;
 *  - its checksum is computed; if it differs from the last visit's, the
 *    page is "volatile": remember the checksum and go on.  So a page needs
 *    two visits (two full scans) before it can merge;
 *  - an all-zero page is dropped (MADV_DONTNEED: the kernel's zero page
 *    backs it), whatever use_zero_pages says: it costs no mapping and no
 *    pool page.  The counters show it as the kernel would for the knob's
 *    value (counters.c): in ksm_zero_pages, or as pages of a zero-content
 *    KSM page (pages_shared/pages_sharing in max_page_sharing groups);
 *  - a page that starts a run of pages with its contents, long enough
 *    that the kernel would make several KSM pages of them (max_page_sharing),
 *    is merged onto a strip: that many KSM pages side by side in the pool,
 *    the run's pages onto them in turn, so that each lap is one mapping
 *    (strip_node());
 *  - the stable index is searched: an equal KSM page with room
 *    (max_page_sharing) takes the page;
 *  - else the unstable index (pages seen unchanged, this full scan) is
 *    searched: an equal page there and this one become a new KSM page;
 *  - else the page goes into the unstable index; in a samepaged domain
 *    it leaves a hint there, and a process whose page finds another's
 *    hint makes the KSM page; the hinting process merges its pages onto
 *    such KSM pages before it throws its unstable index away
 *    (merge_partners()), as the kernel merges both pages of a match.
 *
 * Decisions are collected for a batch and carried out together by
 * merge_batch(), one write-protect and one mmap per run of pages, which is
 * where a user-space engine wins over per-page work.  Smart scan and the
 * scan-time advisor are the kernel's, with its constants.
 */
#include "internal.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>

uint32_t zero_checksum;

static bool buf_is_zero(const void *page)
{
	const unsigned char *b = page;
	return !b[0] && !memcmp(b, b + 1, PAGE_SIZE - 1);
}

/* calc_checksum: the low 32 bits of XXH3-64 of the page's copy in sp->buf.
 * The checksum files what the scanner compares and maps, so both come from
 * one read: a page written between two reads became a KSM page of its new
 * contents under its old contents' checksum, found by nothing again. */
static bool calc_checksum(struct samepage *sp, const void *page, uint32_t *out, uint64_t *hash)
{
	if (!guarded_copy(sp->buf, page, PAGE_SIZE))
		return false;
	*hash = page_hash(sp->buf);
	*out = (uint32_t)*hash;
	return true;
}

/* Across processes (client.c): is this page waiting in another live
 * process's unstable tree?  If not, say that it waits in ours.  A hint is
 * the high half of the hash, the pid (22 bits, pid_max's limit) and when
 * it was posted (seconds, 10 bits); the low half of the hash chooses a
 * bucket of HINT_WAYS hints, one cache line.  A new hint takes an empty
 * place, or the oldest: every process posts its waiting pages' hints again
 * at each full scan, so an old hint is one that nothing waits on any more.
 * (With one hint a slot, a process's unique pages, posted again at every
 * full scan, overwrote the hints of pages whose twins had not come yet;
 * those pages failed to merge, the smart scan started skipping them, and
 * 4 processes of one image converged in 11-22 full scans instead of 4-5.)
 * A hint of a process that is gone is ignored. */
#define HINT_WAYS 8
#define HINT_PID_BITS 22
#define HINT_PID_MASK ((1u << HINT_PID_BITS) - 1)
#define HINT_KEY_MASK 0xffffffff00000000ULL

static bool other_process_has(struct samepage *sp, uint64_t hash)
{
	_Atomic uint64_t *b = &sp->stable.hints[hash % (DOM_HINTS / HINT_WAYS) * HINT_WAYS];
	uint32_t me = (uint32_t)sp->owner & HINT_PID_MASK; /* the scanner runs in its owner */
	uint32_t now = (uint32_t)(prim_now_ns() / 1000000000ULL) & 1023;
	uint64_t key = hash & HINT_KEY_MASK;
	unsigned victim = 0, best = 0;
	for (unsigned j = 0; j < HINT_WAYS; j++) {
		uint64_t old = atomic_load(&b[j]);
		uint32_t who = (uint32_t)old & HINT_PID_MASK, when = (uint32_t)old >> HINT_PID_BITS;
		if (old && (old & HINT_KEY_MASK) == key) {
			if (who != me && prim_pid_alive((pid_t)who))
				return true;
			victim = j; /* ours, or a dead process's: post it again here */
			break;
		}
		unsigned score = old ? ((now - when) & 1023) : 1024; /* empty first, then oldest */
		if (score > best || j == 0) {
			best = score;
			victim = j;
		}
	}
	atomic_store(&b[victim], key | (uint64_t)now << HINT_PID_BITS | me);
	return false;
}

/* The kernel's smart scan (6.7): pages that keep failing to merge are
 * skipped for 1, 2, 4 then 8 scans. */
static unsigned skip_age(uint8_t age)
{
	if (age <= 3)
		return 1;
	if (age <= 5)
		return 2;
	if (age <= 8)
		return 4;
	return 8;
}

static bool should_skip_rmap_item(struct samepage *sp, struct page_meta *m, uint32_t id)
{
	if (!KNOB(sp, smart_scan))
		return false;
	uint8_t age = m->age;
	if (age != 255)
		m->age++;
	if (age < 3)
		return false;
	if (!m->remaining_skips) {
		m->remaining_skips = (uint8_t)skip_age(age);
		return false;
	}
	sp->c.pages_skipped++;
	m->remaining_skips--;
	remove_rmap_item_from_tree(sp, id);
	return true;
}

static void queue_merge(struct samepage *sp, size_t ri, size_t i, uint32_t node)
{
	struct region *r = &sp->regions[ri];
	if (node != NIL && !ledger_ready(sp, node)) {
		sp->c.skipped_pool_full++; /* no room to count it: no merge */
		return;
	}
	struct merge_req *q = &sp->reqs[sp->nreqs++];
	q->addr = region_addr(r, i);
	q->region = (uint32_t)ri;
	q->index = (uint32_t)i;
	q->node = node;
	q->pool_off = node == NIL ? 0 : node; /* a node is its pool page */
	if (node != NIL) {
		sp->stable.nodes[node].pending++;
		ledger_hold(sp, node); /* before the page is compared: see index.c */
	}
	r->meta[i].flags |= PM_PENDING;
}

/* ---- strips: a run of one content, one mapping per max_page_sharing ---- */

#define RUN_FLAGS (PM_OFF | PM_ITEM | PM_STABLE | PM_ZERO | PM_PENDING | PM_KEEP)

/* The pages from page i of r on that had its contents at their last visit
 * (the same checksum) and would merge now: the run page i starts. */
static size_t run_length(const struct region *r, size_t i, uint32_t checksum)
{
	size_t j = i + 1;
	while (j < r->npages && r->meta[j].checksum == checksum &&
	       (r->meta[j].flags & RUN_FLAGS) == PM_ITEM)
		j++;
	return j - i;
}

/*
 * A run shorter than max_page_sharing: the kernel maps it onto one KSM page
 * (a mapping per page here).  Once its contents have merged a run's worth
 * elsewhere and their KSM pages have no room left for this run, it is
 * merged onto a lap strip instead: as many new dups as it has pages, at
 * consecutive pool pages, one mapping; and the next runs of the contents
 * map the same dups again, one lap (one mapping) each, while they have
 * room.  Malloc'd blocks of one content (a header page, then a run) are
 * such runs: 200 blocks of 1 MiB took 51,244 mappings.  The price is the
 * dups: a run of L pages holds L KSM pages where the kernel would hold
 * ceil(L / max_page_sharing) more of its sharing pages; paid back from the
 * second run on the strip.
 */
static bool lap_strip_start(struct samepage *sp, uintptr_t a, size_t len, uint32_t checksum)
{
	struct strip *s = &sp->strip;
	struct lap_strip *l = &sp->laps[checksum % LAP_STRIPS];
	uint32_t head = stable_chain_head(sp, sp->buf, checksum), base, size, made;
	uint64_t held, room;

	if (head == NIL)
		return false; /* the first run of its contents: as the kernel */
	bool known = l->checksum == checksum && l->size >= 2;
	size = made = 0;
	if (known) {
		/* From its first dup with room: runs of different lengths
		 * fill the first dups first. */
		size_t j = 0, m = 0;
		while (j < l->size && !stable_dup_has_room(sp, l->base + j, checksum))
			j++;
		while (m < len && j + m < l->size &&
		       stable_dup_has_room(sp, l->base + (uint32_t)(j + m), checksum))
			m++;
		base = l->base + (uint32_t)j;
		size = made = (uint32_t)m;
	}
	if (size < 2) {
		stable_chain_load(sp, head, checksum, &held, &room);
		if (held < len || (!known && room >= len) ||
		    (uint64_t)sp->dom->nr + len > pool_capacity(sp))
			return false;
		base = sp->dom->nr;
		size = (uint32_t)len;
		made = 0;
		*l = (struct lap_strip){.checksum = checksum, .base = base, .size = size};
	}
	*s = (struct strip){.next = a,
			    .end = a + (uintptr_t)size * PAGE_SIZE,
			    .none_from = s->none_from,
			    .none_until = s->none_until,
			    .base = base,
			    .size = size,
			    .made = made,
			    .checksum = checksum};
	return true;
}

/* Starts a strip at page i if its run needs two dups or more in the
 * kernel: the kernel fills one KSM page to max_page_sharing, then makes
 * the next, and leaves the last page alone when one is left over.  The
 * strip makes the same number of dups and fills them in turn, page after
 * page: the same counters, ceil(pages / dups) mappings instead of one per
 * page.  Its pool pages start at the pool's high-water mark, free for
 * them. */
static bool strip_start(struct samepage *sp, struct region *r, size_t i, uint32_t checksum)
{
	struct strip *s = &sp->strip;
	uintptr_t a = region_addr(r, i);
	uint64_t mps = KNOB(sp, max_page_sharing);

	s->size = 0;
	if (a >= s->none_from && a < s->none_until)
		return false; /* inside a run already found too short */
	size_t len = run_length(r, i, checksum);
	/* The run's own range: regions are scanned in the order they were
	 * registered, not by address. */
	s->none_from = a;
	s->none_until = a + len * PAGE_SIZE;
	if (len >= 2 && len < mps)
		return lap_strip_start(sp, a, len, checksum);
	if (len % mps == 1)
		len--;
	uint64_t size = (len + mps - 1) / mps;
	if (size < 2 || (uint64_t)sp->dom->nr + size > pool_capacity(sp))
		return false;
	*s = (struct strip){.next = a,
			    .end = a + len * PAGE_SIZE,
			    .none_from = s->none_from,
			    .none_until = s->none_until,
			    .base = sp->dom->nr,
			    .size = (uint32_t)size,
			    .checksum = checksum};
	return true;
}

/* The dup of the strip that page i (contents in sp->buf) should map, made
 * if it is the first lap; NIL if the page is in no strip, or its dup is
 * full (the usual search then finds it another). */
static uint32_t strip_node(struct samepage *sp, struct region *r, size_t i, uint32_t checksum)
{
	struct strip *s = &sp->strip;
	uintptr_t a = region_addr(r, i);

	if (!(s->size && a >= s->next && a < s->end && checksum == s->checksum) &&
	    !strip_start(sp, r, i, checksum))
		return NIL;
	uint32_t slot = s->k % s->size, off = s->base + slot, node;
	struct stable_node *n = &sp->stable.nodes[off];
	s->next = a + PAGE_SIZE;
	if (slot < s->made && n->in_use && n->checksum == checksum) {
		s->k++;
		return n->mapcount + n->pending < KNOB(sp, max_page_sharing) ? off : NIL;
	}
	/* Its first page, or its pages' merges failed and it went: made at
	 * its place in the strip, or the strip ends (the page was taken). */
	if (!pool_can_take(sp, off) || stable_insert(sp, sp->buf, checksum, off, &node)) {
		s->size = 0;
		return NIL;
	}
	n->in_use |= NODE_SOLO; /* one mapping until the next lap: keep it */
	if (slot == s->made)
		s->made++;
	s->k++;
	return node;
}

/* A new KSM page of sp->buf's contents for `page`: placed right after the
 * previous new one when this page follows that one's page, so that runs
 * stay runs in the pool (one mapping each, in every process that maps
 * them).  0, or an error from stable_insert(). */
static int new_ksm_page(struct samepage *sp, const void *page, uint32_t checksum, uint32_t *node,
			unsigned pages)
{
	if (sp->pool_full_scan == sp->c.full_scans + 1)
		return -ENOSPC; /* samepaged has no room for more (client.c) */
	uint32_t want =
	    sp->last_new_addr + PAGE_SIZE == (uintptr_t)page ? sp->last_new_off + 1 : NIL;
	int err = stable_insert(sp, sp->buf, checksum, want, node);
	if (err == -ENOSPC)
		sp->c.skipped_pool_full += pages; /* the pages that would have merged */
	if (!err) {
		sp->last_new_addr = (uintptr_t)page;
		sp->last_new_off = *node; /* a node is its pool page */
	}
	return err;
}

static void cmp_and_merge_page(struct samepage *sp, size_t ri, size_t i)
{
	struct region *r = &sp->regions[ri];
	struct page_meta *m = &r->meta[i];
	uint32_t id = r->base_id + (uint32_t)i, checksum, node, tree;
	uint64_t hash;
	const void *page = (const void *)region_addr(r, i);
	bool all_full;

	remove_rmap_item_from_tree(sp, id);
	if (!calc_checksum(sp, page, &checksum, &hash))
		return; /* unreadable now: the range changed under us */
	if (checksum != m->checksum) {
		m->checksum = checksum;
		return; /* volatile */
	}
	if (checksum == zero_checksum && buf_is_zero(sp->buf)) {
		queue_merge(sp, ri, i, NIL); /* merge_batch() looks again */
		return;
	}
	node = strip_node(sp, r, i, checksum);
	if (node == NIL)
		node = stable_search(sp, sp->buf, checksum, &all_full);
	if (node != NIL) {
		queue_merge(sp, ri, i, node);
		return;
	}
	tree = unstable_search_insert(sp, id, sp->buf, checksum);
	if (tree == NIL) {
		if (!sp->ledger)
			return;
		if (!other_process_has(sp, hash)) {
			sp->hints_posted++;
			return;
		}
		/* Make the KSM page for the other process to find. */
		if (new_ksm_page(sp, page, checksum, &node, 1))
			return;
		unstable_remove(sp, id);
		sp->stable.nodes[node].in_use |= NODE_SOLO;
		atomic_fetch_add(&sp->dom->partner_made, 1);
		queue_merge(sp, ri, i, node);
		return;
	}

	/* try_to_merge_two_pages: both become mappings of a new KSM page. */
	size_t tidx, tri;
	region_of_id(sp, tree, &tidx, &tri);
	unstable_remove(sp, tree);
	if (new_ksm_page(sp, page, checksum, &node, 2))
		return;
	queue_merge(sp, tri, tidx, node);
	queue_merge(sp, ri, i, node);
}

/* ---- the scan-time advisor (6.8), the kernel's arithmetic ---- */

#define EWMA_WEIGHT 30
#define KSM_ADVISOR_MIN_CPU 10

static void advisor_start_scan(struct samepage *sp)
{
	sp->adv.start_ns = prim_now_ns();
}

static void scan_time_advisor(struct samepage *sp)
{
	uint64_t elapsed_ms = (prim_now_ns() - sp->adv.start_ns) / 1000000;
	uint64_t scan_time = elapsed_ms / 1000 ? elapsed_ms / 1000 : 1;
	uint64_t cpu_now = prim_thread_cpu_ns();
	uint64_t cpu_ms = (cpu_now - sp->adv.cpu_ns) / 1000000;
	uint64_t cpu_pct = cpu_ms * 100 / (scan_time * 1000);
	uint64_t last = sp->adv.scan_time ? sp->adv.scan_time : scan_time;
	uint64_t factor, change, pages, ppc;

	if (cpu_pct < 1)
		cpu_pct = 1;
	factor = KNOB(sp, advisor_target_scan_time) * 100 / scan_time;
	if (factor < 1)
		factor = 1;
	change = scan_time * 100 / last;
	if (change < 1)
		change = 1;
	change = ((100 - EWMA_WEIGHT) * sp->adv.change + EWMA_WEIGHT * change) / 100;
	pages = KNOB(sp, pages_to_scan) * 100 / factor;
	pages = pages * change / 100;
	ppc = KNOB(sp, pages_to_scan) / cpu_pct;
	if (ppc < 1)
		ppc = 1;
	if (pages > ppc * KNOB(sp, advisor_max_cpu))
		pages = ppc * KNOB(sp, advisor_max_cpu);
	if (pages < ppc * KSM_ADVISOR_MIN_CPU)
		pages = ppc * KSM_ADVISOR_MIN_CPU;
	if (pages > KNOB(sp, advisor_max_pages_to_scan))
		pages = KNOB(sp, advisor_max_pages_to_scan);
	sp->adv.change = change;
	sp->adv.scan_time = scan_time;
	sp->adv.cpu_ns = cpu_now;
	KNOB(sp, pages_to_scan) = pages;
}

/* ---- the scan loop ---- */

/* The maps are read again at the start of a full scan if they were not
 * read for a while: a change the wrappers see makes the next batch read
 * them (engine_sync), one they cannot see (a raw system call) is caught
 * then.  A read costs about a microsecond per mapping under the
 * address-space lock, which the application's mmap, mprotect and munmap
 * wait for: read at every full scan of a small range with many mappings,
 * it cut an application's mmap rate 20-fold (9-churn); read once a second,
 * it was more than half of what 16 merged processes of 64 MiB spent
 * scanning (the demo's --hold: 9.9% of a CPU, 4.3% without).  So where
 * the kernel answers PROCMAP_QUERY, a merge asks it about its own run
 * instead (regions_range_current()), and the whole maps are read every
 * MAPS_QUERIED_REREAD_NS, for what else a raw call changed (new mappings
 * under merge-any, pool pages no longer mapped); without it, every
 * MAPS_REREAD_NS. */
#define MAPS_QUERIED_REREAD_NS (10 * MAPS_REREAD_NS)

static uint64_t maps_reread_ns(void)
{
	return prim_map_at_works() ? MAPS_QUERIED_REREAD_NS : MAPS_REREAD_NS;
}

static void start_full_scan(struct samepage *sp)
{
	advisor_start_scan(sp);
	engine_enter(sp);
	uint64_t now = prim_now_ns(), every = maps_reread_ns();
	if (now - sp->maps_read_ns >= every)
		regions_refresh(sp); /* what the wrappers could not see */
	if (!sp->place && now - sp->pool.thp_read_ns >= every) {
		/* shmem_enabled, which an administrator may change */
		sp->pool.thp_possible = prim_shmem_thp_possible();
		sp->pool.thp_read_ns = now;
	}
	/* merge-any: take what the application mapped (the wrappers saw it),
	 * or what anything else did (a thread's stack), looked for as often:
	 * the maps of a VM monitor with merged memory run to 10,000s of
	 * lines. */
	if (sp->merge_any &&
	    (atomic_exchange(&sp->any_new, false) || now - sp->any_read_ns >= every)) {
		merge_any_refresh(sp);
		sp->any_read_ns = now;
	}
	fork_reap_pages(sp); /* unpin the pool pages no forked child maps */
	engine_leave(sp);
	unstable_start(sp); /* the unstable tree lives one full scan */
	memset(&sp->strip, 0, sizeof(sp->strip));
	sp->scan_running = true;
	sp->cur_region = 0;
	sp->cur_index = 0;
}

static void end_full_scan(struct samepage *sp)
{
	if (KNOB(sp, advisor_mode) == 1)
		scan_time_advisor(sp);
	sp->c.full_scans++;
	memcpy(sp->c.kept, sp->c.kept_scan, sizeof(sp->c.kept));
	memset(sp->c.kept_scan, 0, sizeof(sp->c.kept_scan));
	/* Every refused run needs a mapping of the pool and a split at most;
	 * the budget keeps 1/8 of the limit for the application.  While the
	 * budget stays full, what was said stands (smart scan skips the pages
	 * refused before, so a later scan refuses fewer). */
	uint64_t want = sp->c.map_count + 2 * sp->c.budget_runs_scan;
	uint64_t need = sp->c.budget_runs_scan ? want + want / 7 + 1 : 0;
	uint64_t max = sp->c.max_map_count;
	bool full = sp->c.map_count + 2 > max - max / 8;
	if (need > sp->c.map_count_needed || !full)
		sp->c.map_count_needed = need;
	sp->c.budget_runs_scan = 0;
	sp->c.max_map_count = (uint64_t)prim_max_map_count(); /* an administrator may raise it */
	sp->scan_running = false;
	invariants_check(sp);
	engine_publish(sp);
}

/* One page of the batch: updates what its pagemap entry says happened to
 * it, and returns whether it is a present page to process. */
static bool page_visit(struct samepage *sp, struct region *r, size_t i, uint64_t pm)
{
	struct page_meta *m = &r->meta[i];
	uint32_t id = r->base_id + (uint32_t)i;
	bool present = pm & PM_PRESENT;

	if (m->flags & PM_STABLE) {
		if (!present || (pm & PM_FILE))
			return present; /* still a KSM page (counted as scanned) */
		/* The application wrote it: the kernel gave it a copy. */
		sp->c.cow_ksm++;
		remove_rmap_item_from_tree(sp, id);
	}
	if (m->flags & PM_ZERO) {
		if (!(present && (pm & PM_EXCLUSIVE)))
			return false; /* still the zero page, or never touched */
		m->flags &= (uint8_t)~PM_ZERO;
		sp->c.zero_pages--;
	}
	if (!present || (pm & PM_FILE)) {
		/* Gone (discarded, swapped, or not ours): drop its rmap item. */
		if (m->flags & PM_ITEM) {
			remove_rmap_item_from_tree(sp, id);
			m->flags &= (uint8_t)~PM_ITEM;
			sp->c.rmap_items--;
		}
		return false;
	}
	if (m->flags & PM_KEEP) {
		/* Kept out: in no tree and without an rmap item, so that
		 * pages_volatile (items neither merged nor in the unstable
		 * tree) does not call it a page that changes too fast. */
		if (m->flags & PM_ITEM) {
			remove_rmap_item_from_tree(sp, id);
			m->flags &= (uint8_t)~PM_ITEM;
			sp->c.rmap_items--;
		}
		return true;
	}
	if (!(m->flags & PM_ITEM)) {
		m->flags |= PM_ITEM;
		m->checksum = 0;
		m->age = 0;
		m->remaining_skips = 0;
		sp->c.rmap_items++;
	}
	return true;
}

/* One batch of at most BATCH_PAGES pages of the current region, within the
 * budget.  Returns the budget used. */
static uint64_t scan_batch(struct samepage *sp, uint64_t budget)
{
	uint64_t used = 0;

	/* Take the lock first, then look at what the application unmapped
	 * while it could: after this, nothing changes until we let go. */
	engine_enter(sp);
	keep_altstacks(sp); /* before any merge is queued: RELIABILITY.md 97 */
	keep_sealed(sp);
	if (sp->cur_region >= sp->nregions || sp->cur_index >= sp->regions[sp->cur_region].npages) {
		engine_leave(sp);
		return 0; /* the range went away: the caller moves on */
	}
	struct region *r = &sp->regions[sp->cur_region];
	size_t ri = sp->cur_region, from = sp->cur_index, n = r->npages - from, i;
	if (n > BATCH_PAGES)
		n = BATCH_PAGES;
	/* The page tables are read without the domain's lock: in a domain of
	 * samepaged the other processes' scanners go on meanwhile (this is a
	 * third of a scanner's time).  The address-space lock stays held, so
	 * the regions cannot change, unless another process kept the domain's
	 * lock and the address-space lock was let go while waiting for it
	 * (index_lock_as()): if the application changed its mappings then,
	 * the batch again, once engine_enter() caught up.  What the entries
	 * say may change, as it may after any read: a merge compares the
	 * pages again under its window. */
	index_release(sp);
	int err = prim_pagemap(region_addr(r, from), n, sp->pagemap);
	if (index_retake(sp)) {
		engine_leave(sp);
		return 0;
	}
	if (err) {
		engine_leave(sp);
		sp->cur_index += n;
		return 0;
	}
	for (i = 0; i < n && used < budget; i++) {
		struct page_meta *m = &r->meta[from + i];
		if (m->flags & PM_OFF)
			continue;
		bool ksm = m->flags & PM_STABLE;
		if (!page_visit(sp, r, from + i, sp->pagemap[i]))
			continue;
		if (ksm && (m->flags & PM_STABLE)) {
			used++;
			sp->c.pages_scanned++;
			continue;
		}
		if (m->flags & PM_KEEP) { /* scanned, never merged: say why */
			unsigned why = promise_flags(region_addr(r, from + i));
#define SAMEPAGE_KEPT(n, promises, w) sp->c.kept_scan[KEPT_##n] += !!(why & (promises));
#include "kept.def"
			used++;
			sp->c.pages_scanned++;
			continue;
		}
		if (should_skip_rmap_item(sp, m, r->base_id + (uint32_t)(from + i)))
			continue;
		used++;
		sp->c.pages_scanned++;
		cmp_and_merge_page(sp, ri, from + i);
	}
	merge_batch(sp);
	engine_leave(sp);
	sp->cur_index = from + i;
	engine_publish(sp);
	return used;
}

/* Lets an application thread that waits for sp->lock have it, and a
 * thread of any process that waited for the domain lock: glibc's mutexes
 * are not fair, and unlock-then-lock would starve them. */
static void let_application_in(struct samepage *sp)
{
	bool dom_waited = index_waited(sp); /* and the domain lock's */
	pthread_mutex_unlock(&sp->lock);
	if (dom_waited)
		domain_hand_over(sp->dom);
	sched_yield();
	for (int i = 0; i < 1000 && atomic_load(&sp->app_waiting); i++)
		sched_yield();
	pthread_mutex_lock(&sp->lock);
}

/*
 * Partners in other processes.  The kernel merges a page that finds its
 * twin in the unstable tree together with the twin, at once.  In a domain
 * the twin may be in another process, whose memory this one cannot map:
 * the page that finds the other's hint makes the KSM page
 * (other_process_has()), and the twin would find it only when its own
 * process visits it again, a full scan later: guests under samepaged
 * converged a full scan after the kernel's.  So before this process
 * throws its unstable tree away, the pages still in it whose contents
 * have a KSM page now are merged: the twin's half of
 * try_to_merge_two_pages, one full scan sooner.  It is not a visit (the
 * kernel's twin is not visited either): pages_scanned does not count it.
 * Only while the domain makes such KSM pages (partner_made): once merging
 * has converged, no walk over every page at every full scan.
 */
#define PARTNER_CHUNK 4096 /* pages looked at under one engine_enter() */

static void merge_partners(struct samepage *sp)
{
	uint32_t made = sp->ledger ? atomic_load(&sp->dom->partner_made) : 0;
	bool look = sp->hints_posted && made != sp->partner_seen;
	sp->hints_posted = 0;
	sp->partner_seen = made;
	if (!look)
		return; /* no KSM page made for anyone since: nothing to find */
	for (size_t ri = 0, i = 0; !sp->stopping && !sp->detached && KNOB(sp, run) == 1;) {
		engine_enter(sp);
		keep_altstacks(sp);
		keep_sealed(sp);
		if (ri >= sp->nregions) {
			engine_leave(sp);
			return;
		}
		struct region *r = &sp->regions[ri];
		if (i > r->npages)
			i = r->npages; /* the range shrank meanwhile */
		size_t end = r->npages - i > PARTNER_CHUNK ? i + PARTNER_CHUNK : r->npages;
		for (; i < end; i++) {
			struct page_meta *m = &r->meta[i];
			uint32_t node;
			bool all_full;
			if ((m->flags & RUN_FLAGS) != PM_ITEM || !unstable_in_last_scan(sp, m) ||
			    !stable_has_checksum(sp, m->checksum) ||
			    !guarded_copy(sp->buf, (const void *)region_addr(r, i), PAGE_SIZE))
				continue;
			node = stable_search(sp, sp->buf, m->checksum, &all_full);
			if (node == NIL)
				continue;
			unstable_remove(sp, r->base_id + (uint32_t)i);
			queue_merge(sp, ri, i, node);
			if (sp->nreqs >= BATCH_PAGES && merge_batch(sp)) {
				i++; /* the next chunk from here, after a catch-up */
				break;
			}
		}
		merge_batch(sp);
		if (i >= r->npages) {
			ri++;
			i = 0;
		}
		engine_leave(sp);
		engine_publish(sp);
		let_application_in(sp);
	}
}

/* pages_to_scan is a domain's rate, as it is ksmd's for the whole system:
 * each of the n engines samepaged counts in the domain scans 1/n of it per
 * wake-up (rounded up), so that the domain's scanners together scan what
 * ksmd would. */
static unsigned long long scan_share(struct samepage *sp)
{
	unsigned long long pages = KNOB(sp, pages_to_scan);
	uint32_t n = atomic_load(&sp->dom->scanners);
	return n > 1 ? (pages + n - 1) / n : pages;
}

/* Scans up to budget pages; like the kernel's ksm_do_scan, it returns at
 * the end of a full scan, so ksmd sleeps even when nothing is present. */
void ksm_do_scan(struct samepage *sp, uint64_t budget)
{
	while (budget && (sp->nregions || sp->merge_any) && !sp->stopping && !sp->detached &&
	       KNOB(sp, run) == 1) {
		handler_ensure(); /* the guarded reads need our SIGSEGV handler */
		if (!sp->scan_running) {
			merge_partners(sp);
			start_full_scan(sp);
		}
		if (sp->cur_region >= sp->nregions) {
			end_full_scan(sp);
			return;
		}
		if (sp->cur_index >= sp->regions[sp->cur_region].npages) {
			sp->cur_region++;
			sp->cur_index = 0;
			continue;
		}
		budget -= scan_batch(sp, budget);
		if (sp->poll)
			sp->poll(sp);
		let_application_in(sp);
	}
}

/* If no thread of the program is left (prim_program_gone(), which looks
 * once a second), the process ends as its last thread's end would have
 * ended it. */
static void end_with_program(struct samepage *sp)
{
	int status;
	if (!prim_program_gone(&status))
		return;
	pthread_mutex_unlock(&sp->lock); /* for the program's atexit handlers */
	prim_end_as_program(status);
}

static void *ksmd(void *arg)
{
	struct samepage *sp = arg;

	prim_thread_mine(true);
	/* At nice 5 above the program's, as ksmd runs (set_user_nice(current,
	 * 5) in mm/ksm.c): on a busy host the scanner yields to the program's
	 * own threads (a VM's vCPUs) as ksmd yields to every process. */
	prim_thread_nicer(5);
	pthread_mutex_lock(&sp->lock);
	sp->adv.cpu_ns = prim_thread_cpu_ns();
	while (!sp->stopping) {
		end_with_program(sp);
		if (atomic_load(&sp->dom->unmerge_epoch) != sp->unmerge_epoch) {
			/* run = 2 was written by another process of the domain. */
			engine_enter(sp);
			unmerge_all(sp);
			fork_reap(sp);
			engine_leave(sp);
			engine_publish(sp); /* the counters say so at once */
		}
		/* While samepaged is away (detached), merging pauses: no scan,
		 * as ksmd's with run 0, so that full_scans does not count scans
		 * that could merge nothing (`ksmctl wait --converged` would
		 * take them for convergence). */
		if (KNOB(sp, run) == 1 && (sp->nregions || sp->merge_any) && !sp->detached) {
			ksm_do_scan(sp, scan_share(sp));
			if (sp->stopping)
				break;
			uint64_t ms = KNOB(sp, sleep_millisecs);
			if (!ms || !KNOB(sp, pages_to_scan)) {
				/* No sleep (or no budget): still let others in. */
				let_application_in(sp);
				if (!KNOB(sp, pages_to_scan))
					ms = 1;
			}
			if (ms) {
				struct timespec ts;
				prim_deadline(ms, &ts);
				pthread_cond_timedwait(&sp->wake, &sp->lock, &ts);
			}
		} else if (sp->socket_path[0]) {
			/* samepaged's knobs change in the shared domain, where no
			 * condition variable reaches us: look again soon. */
			struct timespec ts;
			prim_deadline(100, &ts);
			pthread_cond_timedwait(&sp->wake, &sp->lock, &ts);
			if (sp->poll)
				sp->poll(sp);
		} else {
			/* Idle: awake once a second, to see the program still runs. */
			struct timespec ts;
			prim_deadline(1000, &ts);
			pthread_cond_timedwait(&sp->wake, &sp->lock, &ts);
		}
	}
	pthread_mutex_unlock(&sp->lock);
	prim_thread_mine(false);
	return NULL;
}

static void zero_checksum_init(void)
{
	static const char zeros[PAGE_SIZE];
	zero_checksum = (uint32_t)page_hash(zeros);
}

#define KSMD_STACK (1UL << 20)

/* The guard page goes back to the arena writable, as it came: the arena
 * hands it out again to the library's next allocation. */
static void stack_free(struct samepage *sp)
{
	prim_mprotect(sp->stack, PAGE_SIZE, PROT_READ | PROT_WRITE);
	lib_pages_free(sp->stack, KSMD_STACK + PAGE_SIZE);
	sp->stack = NULL;
}

int ksmd_start(struct samepage *sp)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, zero_checksum_init);
	/* Its own stack, never merged (alloc.c): ksmd writes it inside its
	 * merge windows.  A page of it is a guard. */
	sp->stack = lib_pages(KSMD_STACK + PAGE_SIZE);
	if (!sp->stack)
		return -ENOMEM;
	prim_mprotect(sp->stack, PAGE_SIZE, PROT_NONE);
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setstack(&a, (char *)sp->stack + PAGE_SIZE, KSMD_STACK);
	/* ksmd takes none of the application's signals, as the kernel's is
	 * no thread of it: a handler run here could write into a merge
	 * window this thread holds open and wait for itself (Python's
	 * SIGCHLD handler did), and a signal every application thread
	 * blocks (for sigwait or a signalfd) would be taken here instead.
	 * Only the synchronous ones, its own faults, stay unblocked. */
	sigset_t all, old;
	prim_sigset_async(&all);
	prim_sigmask(SIG_SETMASK, &all, &old); /* the thread starts with it */
	int err = pthread_create(&sp->thread, &a, ksmd, sp);
	prim_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&a);
	if (err) {
		stack_free(sp);
		return -err;
	}
	pthread_setname_np(sp->thread, "samepage-ksmd");
	sp->thread_started = true;
	return 0;
}

void ksmd_stop(struct samepage *sp)
{
	if (!sp->thread_started)
		return;
	pthread_mutex_lock(&sp->lock);
	sp->stopping = true;
	pthread_cond_broadcast(&sp->wake);
	pthread_mutex_unlock(&sp->lock);
	if (pthread_equal(pthread_self(), sp->thread))
		return; /* the program's atexit handler, run by ksmd: it ends here */
	pthread_join(sp->thread, NULL);
	sp->thread_started = false;
	stack_free(sp);
}
