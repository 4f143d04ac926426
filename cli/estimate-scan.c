// SPDX-License-Identifier: MIT
/*
 * estimate-scan.c - reads other processes' private anonymous pages, hashes
 * them and counts identical contents, for `ksmctl estimate`.
 *
 * DOC: Overview
 *
 * For each target process: parse /proc/PID/maps and keep the areas that KSM
 * could merge; read /proc/PID/pagemap for those areas to learn which pages
 * are present, swapped, exclusively mapped, and (as root) their PFNs; read
 * the present pages in batches with one process_vm_readv per batch (one
 * remote iovec per run of present pages); hash each page with XXH3-64; look
 * the hash up in an open-addressing table of contents.  The target is never
 * stopped: a page that changes while it is read gives a slightly wrong
 * answer for that page, never a crash (see "Confirmation").
 *
 * Confirmation: a match on a 64-bit hash is confirmed byte for byte before
 * a page is counted as a copy.  The bytes of the first copy are found, in
 * order of cost: in a store of confirmed references (4 KiB per content that
 * has two copies or more, within a memory budget); in the batch buffer just
 * read; or by reading the first copy again from its process.  Memory is so
 * spent only on contents that really have duplicates, and a content with
 * many copies costs one extra read at most.  When the budget is spent every
 * confirmation reads again: slower, still exact.  If the first copy changed
 * meanwhile (its hash differs), the current page becomes the reference; if
 * it cannot be read any more (its process exited) the match is accepted on
 * the hash alone.  Both cases are counted and reported.
 *
 * Sampling: with --sample F, a non-zero content enters the table only if its
 * hash falls in the lowest fraction F of the hash space, or it has many
 * copies (estimate-heavy.c: those are counted exactly).  Every copy of a
 * sampled content is seen, so the saving per sampled content is exact and
 * the total is a Horvitz-Thompson estimate; estimate.c states the interval.
 */
#include "estimate-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/*
 * The engine's files: estimate-table.c (the PFN set, the reference store,
 * the content table), estimate-confirm.c (batched reads, lookup and
 * byte-for-byte confirmation, counting), estimate-read.c (smaps, pagemap,
 * one process's scan), estimate-pass.c (the hashes kept between passes);
 * this one creates the engine and computes the kernel's model and the most
 * duplicated contents at the end.
 */

static const unsigned char zero_page[EST_PAGE_SIZE];

/* --------------------------------------------------------- Lifecycle ---- */

/* Finds the PFN of the shared zero page by reading a fresh page of our own. */
static void probe_zero_pfn(struct est *e)
{
	volatile unsigned char *m;
	uint64_t pm = 0;
	int fd;

	m = mmap(NULL, EST_PAGE_SIZE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return;
	(void)m[0]; /* a read fault maps the zero page */
	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (pread(fd, &pm, 8, (off_t)((uintptr_t)m / EST_PAGE_SIZE * 8)) == 8 &&
		    (pm & PM_PRESENT) && (pm & PM_PFN_MASK)) {
			e->zero_pfn = pm & PM_PFN_MASK;
			e->have_pfns = true;
		}
		close(fd);
	}
	munmap((void *)m, EST_PAGE_SIZE);
}

int est_new(const struct est_config *cfg, struct est **out)
{
	struct est *e = calloc(1, sizeof(*e));

	if (!e)
		return -ENOMEM;
	e->cfg = *cfg;
	if (e->cfg.passes < 1)
		e->cfg.passes = 1;
	e->pass = 1;
	e->final = e->cfg.passes == 1;
	if (e->cfg.max_page_sharing < 2)
		e->cfg.max_page_sharing = 2;
	if (!(e->cfg.sample > 0) || e->cfg.sample >= 1.0)
		e->thresh = UINT64_MAX;
	else
		e->thresh = (uint64_t)(e->cfg.sample * 18446744073709551616.0);
	e->zero_hash = XXH3_64bits(zero_page, EST_PAGE_SIZE);
	e->store_limit = cfg->confirm_budget / EST_PAGE_SIZE;
	e->kpageflags_fd = -1;
	e->mem_fd = -1;
	e->pfn_mask = 4095;
	e->pfns = calloc(e->pfn_mask + 1, sizeof(*e->pfns));
	/* Page-aligned: the kernel copies whole pages into them, and a copy to
	 * a misaligned destination measured twice as slow. */
	e->b.buf = aligned_alloc(EST_PAGE_SIZE, (size_t)BATCH_PAGES * EST_PAGE_SIZE);
	e->page2 = aligned_alloc(EST_PAGE_SIZE, EST_PAGE_SIZE);
	e->scratch = aligned_alloc(EST_PAGE_SIZE, (size_t)BATCH_PAGES * EST_PAGE_SIZE);
	if (!e->pfns || !e->b.buf || !e->page2 || !e->scratch) {
		est_free(e);
		return -ENOMEM;
	}
	if (e->thresh != UINT64_MAX && e->cfg.passes > 1 && est_heavy_init(e)) {
		est_free(e);
		return -ENOMEM;
	}
	probe_zero_pfn(e);
	if (e->have_pfns)
		e->kpageflags_fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	*out = e;
	return 0;
}

void est_free(struct est *e)
{
	if (!e)
		return;
	for (uint32_t i = 0; i < e->store_pages; i += STORE_CHUNK)
		free(e->store[i / STORE_CHUNK]);
	free(e->store);
	free(e->tab);
	free(e->occ);
	free(e->pfns);
	free(e->b.buf);
	free(e->page2);
	free(e->scratch);
	est_heavy_free(e);
	for (int i = 0; i < e->ncgroups; i++)
		free(e->cgroups[i].path);
	free(e->cgroups);
	for (int i = 0; i < e->nprocs; i++)
		est_seen_free(&e->seen[i]);
	est_seen_free(&e->next);
	free(e->seen);
	free(e->procs);
	if (e->kpageflags_fd >= 0)
		close(e->kpageflags_fd);
	free(e);
}

int est_add_cgroup(struct est *e, const char *path)
{
	for (int i = 0; i < e->ncgroups; i++)
		if (!strcmp(e->cgroups[i].path, path))
			return i;
	if (e->ncgroups == e->cgroups_cap) {
		int ncap = e->cgroups_cap ? e->cgroups_cap * 2 : 16;
		struct est_cgroup *n = est_xrealloc_array(e->cgroups, (size_t)ncap, sizeof(*n));

		if (!n)
			return -ENOMEM;
		e->cgroups = n;
		e->cgroups_cap = ncap;
	}
	memset(&e->cgroups[e->ncgroups], 0, sizeof(e->cgroups[0]));
	e->cgroups[e->ncgroups].path = strdup(path);
	if (!e->cgroups[e->ncgroups].path)
		return -ENOMEM;
	return e->ncgroups++;
}

int est_add_proc(struct est *e, pid_t pid, int cgroup)
{
	if (e->nprocs == e->procs_cap) {
		int ncap = e->procs_cap ? e->procs_cap * 2 : 64;
		struct est_proc *n = est_xrealloc_array(e->procs, (size_t)ncap, sizeof(*n));
		struct est_seen *ns;

		if (!n)
			return -ENOMEM;
		e->procs = n;
		ns = est_xrealloc_array(e->seen, (size_t)ncap, sizeof(*ns));
		if (!ns)
			return -ENOMEM;
		e->seen = ns;
		e->procs_cap = ncap;
	}
	memset(&e->procs[e->nprocs], 0, sizeof(e->procs[0]));
	memset(&e->seen[e->nprocs], 0, sizeof(e->seen[0]));
	e->procs[e->nprocs].pid = pid;
	e->procs[e->nprocs].cgroup = cgroup;
	e->cgroups[cgroup].nprocs++;
	return e->nprocs++;
}

/* What the kernel would show for one content of n copies (ksm_tests oracle). */
static void kernel_model(const struct est *e, uint64_t n, uint64_t *shared, uint64_t *saved)
{
	uint64_t mps = e->cfg.max_page_sharing;

	*shared = n / mps + (n % mps >= 2);
	*saved = n - (n + mps - 1) / mps;
}

void est_finish(struct est *e, struct est_totals *t)
{
	double f = e->thresh == UINT64_MAX ? 1.0 : e->cfg.sample;
	double s_saved = 0, s_ksm = 0;
	double nz[2][3] = {{0}}; /* sampled, heavy: pages_shared, pages_sharing, chains */
	uint64_t shared, saved, distinct = 0, heavy_seen = 0;

	for (uint64_t i = 0; e->tab && i <= e->tab_mask; i++) {
		uint64_t n = e->tab[i].count;

		if (!n)
			continue;
		bool heavy = e->heavy.used && est_heavy_has(e, e->tab[i].hash);
		kernel_model(e, n, &shared, &saved);
		nz[heavy][0] += (double)shared;
		nz[heavy][1] += (double)saved;
		nz[heavy][2] += n > e->cfg.max_page_sharing;
		heavy_seen += heavy;
		if (heavy)
			continue; /* counted exactly: no variance */
		distinct++;
		s_saved += (double)(n - 1) * (double)(n - 1);
		s_ksm += (double)saved * (double)saved;
	}
	*t = e->tot;
	t->u = e->total;
	t->ksm_pages_shared = (uint64_t)(nz[0][0] / f + nz[1][0] + 0.5);
	t->ksm_pages_sharing = (uint64_t)(nz[0][1] / f + nz[1][1] + 0.5);
	t->ksm_stable_node_chains = (uint64_t)(nz[0][2] / f + nz[1][2] + 0.5);
	t->heavy_known = e->heavy.settled;
	t->heavy_contents = heavy_seen; /* seen in the last pass, counted exactly */
	/* Zero pages inside huge pages go to the zero page when ksmd splits
	 * the huge page, uncounted; the others are the kernel's copies. */
	t->ksm_zero_huge = e->zero.count - e->zero_small;
	if (e->zero_small) {
		if (e->cfg.use_zero_pages) {
			t->ksm_zero_pages = e->zero_small;
		} else {
			kernel_model(e, e->zero_small, &shared, &saved);
			t->ksm_pages_shared += shared;
			t->ksm_pages_sharing += saved;
			t->ksm_stable_node_chains += e->zero_small > e->cfg.max_page_sharing;
		}
	}
	/* Horvitz-Thompson variance estimates: each content is kept with
	 * probability f, independently (by its hash). */
	t->var_saved = (1 - f) / (f * f) * s_saved;
	t->var_ksm_saved = (1 - f) / (f * f) * s_ksm;
	t->var_distinct = (1 - f) / (f * f) * (double)distinct;
}

static void top_fill(struct est *e, const struct est_entry *ent, bool zero, struct est_top *t)
{
	memset(t, 0, sizeof(*t));
	t->hash = ent->hash;
	t->copies = ent->count;
	t->zero = zero;
	if (zero) {
		t->head_known = true;
	} else if (ent->ref) {
		memcpy(t->head, est_store_page(e, ent->ref), sizeof(t->head));
		t->head_known = true;
	}
	/* The list runs from the last process to the first: count, then fill
	 * the first ones in scan order. */
	int n = 0;
	for (uint32_t o = ent->occ; o != OCC_NONE; o = e->occ[o - 1].next)
		n++;
	t->nprocs = ent->occ == OCC_NONE ? 1 : n;
	if (ent->occ == OCC_NONE) {
		t->proc[0] = (int)ent->proc;
		t->copies_in[0] = ent->count;
		t->shown = 1;
		return;
	}
	t->shown = n < 8 ? n : 8;
	int k = n;
	for (uint32_t o = ent->occ; o != OCC_NONE; o = e->occ[o - 1].next) {
		k--;
		if (k < t->shown) {
			t->proc[k] = (int)e->occ[o - 1].proc;
			t->copies_in[k] = e->occ[o - 1].copies;
		}
	}
}

int est_top(struct est *e, struct est_top *out, int k)
{
	const struct est_entry **best;
	int n = 0;

	if (k <= 0)
		return 0;
	best = calloc((size_t)k, sizeof(*best));
	if (!best)
		return 0;
	for (uint64_t i = 0; e->tab && i <= e->tab_mask + 1; i++) {
		const struct est_entry *ent = i <= e->tab_mask ? &e->tab[i] : &e->zero;
		int j;

		if (ent->count < 2)
			continue;
		if (n == k && ent->count <= best[n - 1]->count)
			continue;
		j = n < k ? n++ : k - 1;
		while (j > 0 && best[j - 1]->count < ent->count) {
			best[j] = best[j - 1];
			j--;
		}
		best[j] = ent;
	}
	if (!e->tab && e->zero.count >= 2)
		best[n++] = &e->zero;
	for (int i = 0; i < n; i++)
		top_fill(e, best[i], best[i] == &e->zero, &out[i]);
	free(best);
	return n;
}

int est_nprocs(const struct est *e)
{
	return e->nprocs;
}

struct est_proc *est_proc_at(struct est *e, int i)
{
	return &e->procs[i];
}

int est_ncgroups(const struct est *e)
{
	return e->ncgroups;
}

struct est_cgroup *est_cgroup_at(struct est *e, int i)
{
	return &e->cgroups[i];
}

bool est_have_pfns(const struct est *e)
{
	return e->have_pfns;
}

uint64_t est_bytes_read(const struct est *e)
{
	return e->tot.bytes_read;
}
