// SPDX-License-Identifier: MIT
/*
 * estimate-pass.c - several reads of the same pages, some time apart, so
 * that only pages whose content stays the same are counted, as ksmd counts
 * them: it merges a page only when the checksum it computes at a visit is
 * the one of its previous visit, and a page that keeps changing never gets
 * there (pages_volatile).
 *
 * Every pass reads the same processes and the same areas.  The passes
 * before the last record, for each page read, 32 bits of its XXH3 in a
 * per-process list of runs (4 bytes a page); each later pass looks every
 * page up (pages come in address order, so a cursor walks the list once)
 * and the last pass counts only the pages found with the same hash in every
 * pass.  A page not read in the previous pass (not present then, or mapped
 * since) is volatile too: ksmd would need a second visit.
 */
#include "estimate-internal.h"

#include <stdlib.h>
#include <string.h>

#define CHANGED 1u /* an odd word: the page changed in an earlier pass */

static uint32_t word_of(uint64_t h)
{
	return (uint32_t)(h >> 32) & ~CHANGED;
}

void est_begin_pass(struct est *e, int pass)
{
	e->pass = pass;
	e->final = pass >= e->cfg.passes;
	if (e->final && e->heavy.key)
		est_heavy_settle(e); /* what the first pass found heavy */
	/* Each pass sees every physical page afresh (a page shared since fork
	 * is read once per pass). */
	memset(e->pfns, 0, (e->pfn_mask + 1) * sizeof(*e->pfns));
	e->pfn_used = 0;
}

/* The word recorded for addr in the previous pass; false if none. */
static bool seen_find(struct est_seen *s, uint64_t addr, uint32_t *w)
{
	while (s->run < s->nruns) {
		uint64_t start = s->start[s->run],
			 end = start + (uint64_t)s->len[s->run] * EST_PAGE_SIZE;

		if (addr < start)
			return false;
		if (addr < end) {
			*w = s->w[s->base + (addr - start) / EST_PAGE_SIZE];
			return true;
		}
		s->base += s->len[s->run];
		s->run++;
	}
	return false;
}

/* Appends the word of the page at addr (after those of lower addresses). */
static void seen_add(struct est_seen *s, uint64_t addr, uint32_t w)
{
	uint32_t r = s->nruns;

	if (s->nw == s->w_cap) {
		uint64_t ncap = s->w_cap ? s->w_cap * 2 : 4096;
		uint32_t *n = est_xrealloc_array(s->w, ncap, sizeof(*n));

		if (!n)
			return; /* the page will look new next pass: volatile, not wrong */
		s->w = n;
		s->w_cap = ncap;
	}
	if (!r || s->start[r - 1] + (uint64_t)s->len[r - 1] * EST_PAGE_SIZE != addr) {
		if (r == s->runs_cap) {
			uint32_t ncap = s->runs_cap ? s->runs_cap * 2 : 64;
			uint64_t *ns = est_xrealloc_array(s->start, ncap, sizeof(*ns));
			uint32_t *nl = ns ? est_xrealloc_array(s->len, ncap, sizeof(*nl)) : NULL;

			if (ns)
				s->start = ns;
			if (!nl)
				return;
			s->len = nl;
			s->runs_cap = ncap;
		}
		s->start[r] = addr;
		s->len[r] = 0;
		s->nruns = ++r;
	}
	s->len[r - 1]++;
	s->w[s->nw++] = w;
}

bool est_seen_stable(struct est *e, uint64_t addr, uint64_t h)
{
	uint32_t w = word_of(h), old = CHANGED;
	bool stable;

	if (e->cfg.passes <= 1)
		return true;
	stable = e->pass > 1 && seen_find(&e->seen[e->cur], addr, &old) && old == w;
	if (!e->final)
		seen_add(&e->next, addr, e->pass == 1 || stable ? w : w | CHANGED);
	return stable;
}

void est_seen_end_proc(struct est *e)
{
	struct est_seen *s = &e->seen[e->cur], old = *s;

	if (e->cfg.passes <= 1)
		return;
	if (e->final) {
		est_seen_free(s);
		return;
	}
	/* This pass's record replaces the previous one, whose buffers are
	 * reused for the next process. */
	*s = e->next;
	s->run = 0;
	s->base = 0;
	e->next = old;
	e->next.nruns = 0;
	e->next.nw = 0;
}

void est_seen_free(struct est_seen *s)
{
	free(s->start);
	free(s->len);
	free(s->w);
	memset(s, 0, sizeof(*s));
}
