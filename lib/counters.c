// SPDX-License-Identifier: MIT
/*
 * counters.c - the counters' one definition.
 *
 * The kernel derives three of its counters from others: pages_volatile
 * (rmap items neither merged nor waiting in the unstable tree),
 * general_profit (pages saved, zero pages included, less the metadata) and
 * ksm_process_profit (the same for one process).  The library (one
 * engine), samepaged (sums over its domains and clients, and each client's
 * own in CLIENTS) and the client's ledger all answer through
 * counter_value(), and samepaged's sums are made of its clients' counts by
 * counts_add_process(), so they cannot disagree: a domain's
 * ksm_merging_pages, ksm_rmap_items and ksm_zero_pages are the sums of its
 * clients'.
 * general_profit subtracts our real metadata (metadata_bytes), not 64
 * bytes per rmap item.
 */
#include "internal.h"

/*
 * All-zero pages are dropped whatever use_zero_pages says (scan.c).  The
 * kernel counts them in ksm_zero_pages with use_zero_pages=1, and otherwise
 * as pages merged onto KSM pages of zeros, max_page_sharing to a page (a
 * content of n pages makes n / max_page_sharing full KSM pages and one more
 * for a remainder of two or more: the kernel selftests' arithmetic).  Here
 * is that second view of z zero pages.
 */
struct zero_view {
	uint64_t shared, sharing, chains, dups;
};

static struct zero_view zero_as_ksm_pages(uint64_t z, uint64_t mps)
{
	struct zero_view v = {0};
	if (!z || mps < 2)
		return v;
	uint64_t q = z / mps, r = z % mps;
	v.shared = q + (r >= 2);
	v.sharing = q * (mps - 1) + (r >= 2 ? r - 1 : 0);
	if (v.shared >= 2) {
		v.chains = 1;
		v.dups = v.shared;
	}
	return v;
}

bool counter_value(const struct ksm_counts *in, int idx, long long *out)
{
	struct ksm_counts cc = *in, *c = &cc;
	long long v;
	if (!c->use_zero_pages) {
		struct zero_view z = zero_as_ksm_pages(c->zero_pages, c->max_page_sharing);
		/* a process's own merged zero pages; a daemon's, its clients' */
		uint64_t merged = c->process ? z.shared + z.sharing : c->zero_merged;
		c->pages_shared += z.shared;
		c->pages_sharing += z.sharing;
		c->chains += z.chains;
		c->dups += z.dups;
		c->merging_pages += merged;
		c->rmap_items += merged;
		c->zero_pages = 0;
	}
	switch (idx) {
	case KNOB_pages_scanned: v = (long long)c->pages_scanned; break;
	case KNOB_pages_shared: v = (long long)c->pages_shared; break;
	case KNOB_pages_sharing: v = (long long)c->pages_sharing; break;
	case KNOB_pages_unshared: v = (long long)c->unshared; break;
	case KNOB_pages_volatile:
		v = (long long)c->rmap_items - (long long)(c->merging_pages + c->unshared);
		if (v < 0)
			v = 0;
		break;
	case KNOB_pages_skipped: v = (long long)c->pages_skipped; break;
	case KNOB_ksm_zero_pages: v = (long long)c->zero_pages; break;
	case KNOB_full_scans: v = (long long)c->full_scans; break;
	case KNOB_stable_node_chains: v = (long long)c->chains; break;
	case KNOB_stable_node_dups: v = (long long)c->dups; break;
	case KNOB_general_profit:
		v = (long long)((c->pages_sharing + c->zero_pages) * PAGE_SIZE) -
		    (long long)c->metadata_bytes;
		break;
	case KNOB_ksm_rmap_items: v = (long long)c->rmap_items; break;
	case KNOB_ksm_merging_pages: v = (long long)c->merging_pages; break;
	case KNOB_metadata_bytes: v = (long long)c->metadata_bytes; break;
	case KNOB_pages_tracked: v = (long long)c->pages_tracked; break;
	case KNOB_pool_pages: v = (long long)c->pool_pages; break;
	case KNOB_pool_pages_reclaimed: v = (long long)c->reclaimed; break;
	case KNOB_pool_pages_refused: v = (long long)c->refused; break;
#define SAMEPAGE_KEPT(n, promises, why)                                                            \
	case KNOB_pages_kept_##n:                                                                  \
		v = (long long)c->kept[KEPT_##n];                                                  \
		break;
#include "kept.def"
	default:
		if (!c->process)
			return false; /* one process's only, or a tunable */
		switch (idx) {
		case KNOB_ksm_process_profit:
			v = (long long)((c->merging_pages + c->zero_pages) * PAGE_SIZE) -
			    (long long)c->metadata_bytes;
			break;
		case KNOB_metadata_bytes_per_page: v = (long long)c->metadata_per_page; break;
		case KNOB_merges_skipped_map_budget: v = (long long)c->skipped_map_budget; break;
		case KNOB_merges_skipped_pool_full: v = (long long)c->skipped_pool_full; break;
		case KNOB_map_count: v = (long long)c->map_count; break;
		case KNOB_max_map_count: v = (long long)c->max_map_count; break;
		case KNOB_max_map_count_needed: v = (long long)c->map_count_needed; break;
		case KNOB_cow_ksm: v = (long long)c->cow_ksm; break;
		case KNOB_merge_window_waits: v = (long long)c->window_waits; break;
		case KNOB_merge_window: v = (long long)c->window_kind; break;
		case KNOB_merges_skipped_io: v = (long long)c->skipped_io; break;
		default: return false; /* a tunable */
		}
	}
	*out = v;
	return true;
}

/* Adds one process's counts (process: a client's, from its ledger) to a
 * daemon's sums, its zero pages as counter_value() counts them for it:
 * what CLIENTS says of each client then sums to what GET says. */
void counts_add_process(struct ksm_counts *sum, const struct ksm_counts *one)
{
	struct zero_view z = zero_as_ksm_pages(one->zero_pages, one->max_page_sharing);
	sum->rmap_items += one->rmap_items;
	sum->merging_pages += one->merging_pages;
	sum->unshared += one->unshared;
	sum->zero_pages += one->zero_pages;
	sum->zero_merged += z.shared + z.sharing;
	sum->pages_scanned += one->pages_scanned;
	sum->pages_skipped += one->pages_skipped;
	sum->pages_tracked += one->pages_tracked;
	sum->metadata_bytes += one->metadata_bytes;
	for (int k = 0; k < KEPT_COUNT; k++)
		sum->kept[k] += one->kept[k];
}
