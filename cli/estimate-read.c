// SPDX-License-Identifier: MIT
/*
 * estimate-read.c - the readers of one process: its maps (the areas KSM
 * could merge), its pagemap (present, swapped, exclusive pages and their
 * PFNs, with PAGEMAP_SCAN to skip empty page tables), its comm and state;
 * the pages found are queued in the batch (estimate-confirm.c).
 */
#include "estimate-internal.h"
#include "procfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define PAGEMAP_CHUNK 8192 /* entries per pagemap read: 32 MiB of address space */

/*
 * The PAGEMAP_SCAN ioctl of Linux 6.7 (include/uapi/linux/fs.h), declared
 * here because the build machines' kernel headers may predate it.
 */
#define EST_PAGE_IS_PRESENT (1 << 3)
#define EST_PAGE_IS_SWAPPED (1 << 4)
struct est_page_region {
	uint64_t start, end, categories;
};
struct est_pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define EST_PAGEMAP_SCAN _IOWR('f', 16, struct est_pm_scan_arg)

/* Classifies one pagemap entry: 0 not to read it, 1 to read an exclusive
 * page, 2 to read a page mapped elsewhere too. */
static int classify(struct est *e, uint64_t pm)
{
	struct est_proc *p = &e->procs[e->cur];
	struct est_unit *pu = &p->u, *cu = &e->cgroups[p->cgroup].u, *tu = &e->total;
	uint64_t pfn, *slot;

	if (!(pm & PM_PRESENT)) {
		if (pm & PM_SWAP)
			BUMP(pu, cu, tu, swapped);
		return 0;
	}
	BUMP(pu, cu, tu, present);
	if (pm & PM_EXCLUSIVE) {
		BUMP(pu, cu, tu, rmap_items);
		return 1;
	}
	pfn = pm & PM_PFN_MASK;
	if (!pfn) {
		/*
		 * Mapped more than once, and no PFN to tell the zero page from a
		 * page shared since fork (not root): counted apart, not read.
		 */
		BUMP(pu, cu, tu, already_shared);
		return 0;
	}
	if (pfn == e->zero_pfn) {
		BUMP(pu, cu, tu, zero_mapped);
		return 0;
	}
	slot = est_pfn_slot(e, pfn);
	if (slot && *slot) {
		if (*slot & PFN_ZERO) {
			BUMP(pu, cu, tu, zero_mapped);
			return 0;
		}
		BUMP(pu, cu, tu, rmap_items);
		BUMP(pu, cu, tu, already_shared);
		if (*slot & PFN_KSM)
			BUMP(pu, cu, tu, already_ksm);
		return 0;
	}
	uint64_t f = est_kpageflags(e, pfn);
	if (slot) {
		*slot = (pfn + 1) | (f & (1ULL << KPF_KSM) ? PFN_KSM : 0) |
			(f & (1ULL << KPF_ZERO_PAGE) ? PFN_ZERO : 0);
		e->pfn_used++;
	}
	if (f & (1ULL << KPF_ZERO_PAGE)) { /* the huge zero page */
		BUMP(pu, cu, tu, zero_mapped);
		return 0;
	}
	BUMP(pu, cu, tu, rmap_items);
	return 2;
}

struct vma {
	uint64_t start, end;
};

struct maps_acc {
	const struct est *e;
	struct vma *v;
	int n, cap;
};

/* Keeps the areas KSM could merge: private, anonymous, not special. */
static bool vma_mergeable(const struct procfs_map *m)
{
	if (m->perms[3] != 'p' || m->inode != 0)
		return false;
	if (!*m->path)
		return true;
	return !strcmp(m->path, "[heap]") || !strncmp(m->path, "[stack", 6) ||
	       !strncmp(m->path, "[anon:", 6);
}

static int maps_keep(const struct procfs_map *m, void *arg)
{
	struct maps_acc *a = arg;
	uint64_t start = m->start, end = m->end;

	if (!vma_mergeable(m))
		return 0;
	if (a->e->cfg.range_end) {
		start = start > a->e->cfg.range_start ? start : a->e->cfg.range_start;
		end = end < a->e->cfg.range_end ? end : a->e->cfg.range_end;
		if (start >= end)
			return 0;
	}
	if (a->n == a->cap) {
		int ncap = a->cap ? a->cap * 2 : 64;
		struct vma *nv = est_xrealloc_array(a->v, (size_t)ncap, sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		a->v = nv;
		a->cap = ncap;
	}
	a->v[a->n++] = (struct vma){start, end};
	return 0;
}

static int read_maps(const struct est *e, pid_t pid, struct vma **out, int *n)
{
	char path[64];
	struct maps_acc a = {.e = e};
	int err =
	    procfs_maps(procfs_path(path, sizeof(path), "/proc", (int)pid, "maps"), maps_keep, &a);

	if (err) {
		free(a.v);
		return err;
	}
	*out = a.v;
	*n = a.n;
	return 0;
}

static void read_comm(struct est_proc *p)
{
	char path[64], raw[64];

	if (procfs_comm(procfs_path(path, sizeof(path), "/proc", (int)p->pid, "comm"), raw,
			sizeof(raw)) == 0)
		procfs_escape(raw, p->comm, sizeof(p->comm));
}

static bool is_zombie(pid_t pid)
{
	char path[64];
	struct procfs_stat st;

	if (procfs_stat(procfs_path(path, sizeof(path), "/proc", (int)pid, "stat"), &st))
		return true; /* gone altogether */
	return st.state == 'Z' || st.state == 'X';
}

static enum est_status status_of(int err)
{
	switch (err) {
	case -ENOENT:
	case -ESRCH: return EST_GONE;
	case -EACCES:
	case -EPERM: return EST_DENIED;
	default: return EST_FAILED;
	}
}

/* Reads pagemap for [start, end) and queues the pages to read. */
static int scan_range(struct est *e, int fd, uint64_t *pm, uint64_t start, uint64_t end)
{
	int ret = 0;

	for (uint64_t a = start; a < end && !ret;) {
		uint64_t npages = (end - a) / EST_PAGE_SIZE;
		ssize_t n;

		if (npages > PAGEMAP_CHUNK)
			npages = PAGEMAP_CHUNK;
		n = pread(fd, pm, npages * 8, (off_t)(a / EST_PAGE_SIZE * 8));
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ESRCH; /* pagemap reads nothing once the mm is gone */
		npages = (uint64_t)n / 8;
		for (uint64_t k = 0; k < npages && !ret; k++) {
			int c = classify(e, pm[k]);

			if (c)
				ret = est_batch_add(e, a + k * EST_PAGE_SIZE, c == 2);
		}
		a += npages * EST_PAGE_SIZE;
	}
	return ret;
}

/*
 * Scans one area.  With PAGEMAP_SCAN (Linux 6.7) the kernel lists the runs
 * of present or swapped pages, skipping empty page tables, so that huge
 * sparse reservations (a sanitizer's shadow, a JIT's heap: terabytes of
 * address space) cost nothing; pagemap is then read for those runs only.
 */
static int scan_area(struct est *e, int fd, uint64_t *pm, uint64_t start, uint64_t end)
{
	struct est_page_region r[64];
	int ret = 0;

	if (e->no_pagemap_scan)
		return scan_range(e, fd, pm, start, end);
	for (uint64_t a = start; a < end && !ret;) {
		struct est_pm_scan_arg arg = {
		    .size = sizeof(arg),
		    .start = a,
		    .end = end,
		    .vec = (uint64_t)(uintptr_t)r,
		    .vec_len = 64,
		    .category_anyof_mask = EST_PAGE_IS_PRESENT | EST_PAGE_IS_SWAPPED,
		    .return_mask = EST_PAGE_IS_PRESENT | EST_PAGE_IS_SWAPPED,
		};
		int n = ioctl(fd, EST_PAGEMAP_SCAN, &arg);

		if (n < 0) {
			if (errno == ENOTTY || errno == EINVAL || errno == EOPNOTSUPP) {
				e->no_pagemap_scan = true; /* before Linux 6.7 */
				return scan_range(e, fd, pm, a, end);
			}
			return errno == ENOENT ? -ESRCH : -errno;
		}
		for (int i = 0; i < n && !ret; i++) {
			if (r[i].categories & EST_PAGE_IS_PRESENT) {
				ret = scan_range(e, fd, pm, r[i].start, r[i].end);
			} else {
				struct est_proc *p = &e->procs[e->cur];
				uint64_t k = (r[i].end - r[i].start) / EST_PAGE_SIZE;

				p->u.swapped += k;
				e->cgroups[p->cgroup].u.swapped += k;
				e->total.swapped += k;
			}
		}
		if (arg.walk_end <= a)
			break;
		a = arg.walk_end;
	}
	return ret;
}

int est_scan_proc(struct est *e, int idx)
{
	struct est_proc *p = &e->procs[idx];
	uint64_t *pm = NULL;
	struct vma *v = NULL;
	int nv = 0, fd = -1, ret;
	char path[64];
	uint64_t before = e->tot.bytes_read;

	e->cur = idx;
	e->mem_fd = -1;
	if (!p->comm[0])
		read_comm(p);
	ret = read_maps(e, p->pid, &v, &nv);
	if (ret)
		goto fail;
	if (!nv) {
		/* No memory of its own: a zombie (it has exited), or a kernel
		 * thread. */
		if (is_zombie(p->pid)) {
			p->status = EST_EXITED;
			p->err = ESRCH;
			ret = -ESRCH;
		} else {
			p->status = EST_NO_MM;
		}
		goto out;
	}
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)p->pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		goto fail;
	}
	pm = malloc(PAGEMAP_CHUNK * sizeof(*pm));
	if (!pm) {
		ret = -ENOMEM;
		goto fail;
	}
	for (int i = 0; i < nv && !ret; i++)
		ret = scan_area(e, fd, pm, v[i].start, v[i].end);
	if (!ret && e->b.count)
		ret = est_batch_flush(e);
	e->b.count = 0;
	if (ret == -ESRCH) {
		p->status = EST_EXITED;
		p->err = ESRCH;
		ret = e->tot.bytes_read > before ? 0 : -ESRCH;
		goto out;
	}
	if (ret)
		goto fail;
	p->status = EST_OK;
	goto out;
fail:
	p->status = status_of(ret);
	p->err = -ret;
	/* Part of the process may have been read before the failure. */
	if (e->tot.bytes_read > before)
		ret = 0;
out:
	if (e->mem_fd >= 0)
		close(e->mem_fd);
	e->mem_fd = -1;
	if (fd >= 0)
		close(fd);
	free(pm);
	free(v);
	return ret;
}
