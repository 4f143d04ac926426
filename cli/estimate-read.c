// SPDX-License-Identifier: MIT
/*
 * estimate-read.c - the readers of one process: its ksm_stat and smaps (the
 * areas ksmd would scan), its pagemap (present, swapped, exclusive pages
 * and their PFNs, with PAGEMAP_SCAN to skip empty page tables and file
 * pages and to see huge pages), its comm and state; the pages found are
 * queued in the batch (estimate-confirm.c).
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
#define EST_PAGE_IS_FILE (1 << 2)
#define EST_PAGE_IS_PRESENT (1 << 3)
#define EST_PAGE_IS_SWAPPED (1 << 4)
#define EST_PAGE_IS_HUGE (1 << 6)
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
	uint64_t pfn, *slot;

	if (pm & PM_FILE)
		return 0; /* a file page (of a private file mapping): ksmd skips it */
	if (!(pm & PM_PRESENT)) {
		if (pm & PM_SWAP)
			BUMP(e, swapped);
		return 0;
	}
	BUMP(e, present);
	if (pm & PM_EXCLUSIVE) {
		BUMP(e, rmap_items);
		return 1;
	}
	pfn = pm & PM_PFN_MASK;
	if (!pfn) {
		/*
		 * Mapped more than once, and no PFN to tell the zero page from a
		 * page shared since fork (not root): counted apart, not read.
		 */
		BUMP(e, already_shared);
		return 0;
	}
	if (pfn == e->zero_pfn) {
		BUMP(e, zero_mapped);
		return 0;
	}
	slot = est_pfn_slot(e, pfn);
	if (slot && *slot) {
		if (*slot & PFN_ZERO) {
			BUMP(e, zero_mapped);
			return 0;
		}
		BUMP(e, rmap_items);
		BUMP(e, already_shared);
		if (*slot & PFN_KSM)
			BUMP(e, already_ksm);
		return 0;
	}
	uint64_t f = est_kpageflags(e, pfn);
	if (slot) {
		*slot = (pfn + 1) | (f & (1ULL << KPF_KSM) ? PFN_KSM : 0) |
			(f & (1ULL << KPF_ZERO_PAGE) ? PFN_ZERO : 0);
		e->pfn_used++;
	}
	if (f & (1ULL << KPF_ZERO_PAGE)) { /* the huge zero page */
		BUMP(e, zero_mapped);
		return 0;
	}
	BUMP(e, rmap_items);
	return 2;
}

struct vma {
	uint64_t start, end;
};

/* The areas of one process to read, from its smaps. */
struct maps_acc {
	const struct est *e;
	struct vma *v;
	int n, cap;
};

/*
 * Whether ksmd would scan an area of these VmFlags: marked mergeable ("mg"),
 * or, when every is set (merge-any, --all-memory), compatible: what
 * vma_ksm_compatible() accepts, not shared ("sh", "ms"), PFN-mapped ("pf"),
 * I/O ("io"), non-expandable ("de"), hugetlb ("ht"), mixed ("mm") or
 * droppable ("dp").
 */
static bool flags_scanned(const char *flags, bool private, bool every)
{
	static const char *const refused[] = {"sh", "ms", "pf", "io", "de", "ht", "mm", "dp"};

	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		if (procfs_vmflag(flags, refused[i]))
			return false;
	return private && (every || procfs_vmflag(flags, "mg"));
}

/* A number of at most max digits in base 16 or 10 at *p, which is moved
 * past it: false if there is none, or it is longer or does not fit. */
static bool maps_number(const char **p, unsigned base, int max, uint64_t *out)
{
	const char *s = *p;
	uint64_t v = 0;

	for (;; s++) {
		unsigned d;

		if (*s >= '0' && *s <= '9')
			d = (unsigned)(*s - '0');
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = (unsigned)(*s - 'a' + 10);
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = (unsigned)(*s - 'A' + 10);
		else
			break;
		if (s - *p == max || v > (UINT64_MAX - d) / base)
			return false;
		v = v * base + d;
	}
	if (s == *p)
		return false;
	*p = s;
	*out = v;
	return true;
}

/*
 * Written here rather than with sscanf (procfs_parse_map): sscanf's %llx
 * takes a sign, a "0x" and spaces, and "%4s" a shorter word, so a line the
 * kernel never writes would give an area of any bounds, or permissions
 * whose fourth byte, the one that says private, was never written.
 */
int est_maps_line(const char *line, uint64_t *start, uint64_t *end)
{
	const char *p = line, *path;
	uint64_t s, e, n;
	bool private;

	if (!maps_number(&p, 16, 16, &s) || *p++ != '-' || !maps_number(&p, 16, 16, &e) ||
	    *p++ != ' ')
		return -EINVAL;
	if ((p[0] != 'r' && p[0] != '-') || (p[1] != 'w' && p[1] != '-') ||
	    (p[2] != 'x' && p[2] != '-') || (p[3] != 'p' && p[3] != 's') || p[4] != ' ')
		return -EINVAL;
	private = p[3] == 'p';
	p += 5;
	if (!maps_number(&p, 16, 16, &n) || *p++ != ' ' || !maps_number(&p, 16, 8, &n) ||
	    *p++ != ':' || !maps_number(&p, 16, 8, &n) || *p++ != ' ' ||
	    !maps_number(&p, 10, 20, &n) || (*p && *p != '\n' && *p != ' '))
		return -EINVAL;
	if (s >= e || s % EST_PAGE_SIZE || e % EST_PAGE_SIZE)
		return -EINVAL;
	path = p + strspn(p, " ");
	*start = s;
	*end = e;
	/* [vsyscall] is the kernel's gate area, no area of the mm. */
	return private && !(!strncmp(path, "[vsyscall]", 10) && (!path[10] || path[10] == '\n'));
}

int est_smaps_line(struct est_smaps *s, const char *line, uint64_t *start, uint64_t *end)
{
	uint64_t a, b;
	int r;

	if (!strncmp(line, "VmFlags:", 8)) {
		bool scan = s->end && flags_scanned(line + 8, s->private, s->every);

		if (scan) {
			*start = s->start;
			*end = s->end;
		}
		s->end = 0;
		return scan;
	}
	r = est_maps_line(line, &a, &b);
	if (r >= 0) {
		s->start = a;
		s->end = b;
		s->private = r;
		s->areas++;
	}
	return 0;
}

static int maps_keep(struct maps_acc *a, uint64_t start, uint64_t end)
{
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

/* The areas ksmd would scan, from /proc/PID/smaps (est_smaps_line): each
 * area's header line, then its "VmFlags:" line.  *areas is the number of
 * areas of every kind (0: the process has no memory, a kernel thread or a
 * zombie). */
static int read_smaps(const struct est *e, pid_t pid, bool every, struct vma **out, int *n,
		      int *areas)
{
	char path[64];
	struct maps_acc a = {.e = e};
	struct est_smaps sm = {.every = every};
	FILE *f = fopen(procfs_path(path, sizeof(path), "/proc", (int)pid, "smaps"), "re");
	char *line = NULL;
	size_t cap = 0;
	int err = 0;

	if (!f)
		return -errno;
	while (!err && getline(&line, &cap, f) > 0) {
		uint64_t start, end;

		if (est_smaps_line(&sm, line, &start, &end) == 1)
			err = maps_keep(&a, start, end);
	}
	if (!err && ferror(f))
		err = -EIO;
	free(line);
	fclose(f);
	if (err) {
		free(a.v);
		return err;
	}
	*out = a.v;
	*n = a.n;
	*areas = sm.areas;
	return 0;
}

/*
 * Which memory of process p ksmd would scan: every compatible area with
 * all_memory or merge-any (ksm_stat's "ksm_merge_any: yes", Linux 6.15),
 * else the areas marked mergeable; none at all when ksm_stat says the
 * process never had any ("ksm_mergeable: no").
 */
static enum est_memory memory_of(const struct est *e, pid_t pid)
{
	char path[64], text[512];
	const char *v;

	if (e->cfg.all_memory)
		return EST_MEM_ALL;
	if (procfs_read(procfs_path(path, sizeof(path), "/proc", (int)pid, "ksm_stat"), text,
			sizeof(text)))
		return EST_MEM_MADVISE;
	if ((v = procfs_find_key(text, "ksm_merge_any")) && !strncmp(v, "yes", 3))
		return EST_MEM_MERGE_ANY;
	if ((v = procfs_find_key(text, "ksm_mergeable")) && !strncmp(v, "no", 2))
		return EST_MEM_NONE;
	return EST_MEM_MADVISE;
}

static void read_comm(struct est_proc *p)
{
	char path[64], raw[64];

	if (procfs_comm(procfs_path(path, sizeof(path), "/proc", (int)p->pid, "comm"), raw,
			sizeof(raw)) == 0)
		procfs_escape(raw, p->comm, sizeof(p->comm));
}

/*
 * Whether a process without memory of its own is a kernel thread, rather
 * than a process that has exited (a zombie) or is exiting: its memory is
 * released before it becomes a zombie, and freeing a large one takes long
 * enough for a pass to find it there, running, with no memory.  "Kthread:"
 * in its status (Linux 6.x); before that, kernel threads are kthreadd (PID
 * 2) and its children.
 */
static bool is_kthread(pid_t pid)
{
	char path[64], text[2048];
	struct procfs_stat st;
	const char *v;

	if (procfs_read(procfs_path(path, sizeof(path), "/proc", (int)pid, "status"), text,
			sizeof(text)) == 0 &&
	    (v = procfs_find_key(text, "Kthread")))
		return *v == '1';
	if (procfs_stat(procfs_path(path, sizeof(path), "/proc", (int)pid, "stat"), &st))
		return false; /* gone altogether */
	return st.state != 'Z' && st.state != 'X' && (pid == 2 || st.ppid == 2);
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
static int scan_range(struct est *e, int fd, uint64_t *pm, uint64_t start, uint64_t end, bool huge)
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
				ret = est_batch_add(e, a + k * EST_PAGE_SIZE, c == 2, huge);
		}
		a += npages * EST_PAGE_SIZE;
	}
	return ret;
}

/*
 * Scans one area.  With PAGEMAP_SCAN (Linux 6.7) the kernel lists the runs
 * of present or swapped pages that are not file pages, skipping empty page
 * tables, so that huge sparse reservations (a sanitizer's shadow, a JIT's
 * heap: terabytes of address space) and the file pages of a private file
 * mapping cost nothing; pagemap is then read for those runs only.  The runs
 * also say which pages are in PMD-mapped huge pages (before Linux 6.7,
 * none is taken to be: see docs/estimate.md).
 */
static int scan_area(struct est *e, int fd, uint64_t *pm, uint64_t start, uint64_t end)
{
	struct est_page_region r[64];
	int ret = 0;

	if (e->no_pagemap_scan)
		return scan_range(e, fd, pm, start, end, false);
	for (uint64_t a = start; a < end && !ret;) {
		struct est_pm_scan_arg arg = {
		    .size = sizeof(arg),
		    .start = a,
		    .end = end,
		    .vec = (uint64_t)(uintptr_t)r,
		    .vec_len = 64,
		    .category_inverted = EST_PAGE_IS_FILE,
		    .category_mask = EST_PAGE_IS_FILE,
		    .category_anyof_mask = EST_PAGE_IS_PRESENT | EST_PAGE_IS_SWAPPED,
		    .return_mask = EST_PAGE_IS_PRESENT | EST_PAGE_IS_SWAPPED | EST_PAGE_IS_HUGE,
		};
		int n = ioctl(fd, EST_PAGEMAP_SCAN, &arg);

		if (n < 0) {
			if (errno == ENOTTY || errno == EINVAL || errno == EOPNOTSUPP) {
				e->no_pagemap_scan = true; /* before Linux 6.7 */
				return scan_range(e, fd, pm, a, end, false);
			}
			return errno == ENOENT ? -ESRCH : -errno;
		}
		for (int i = 0; i < n && !ret; i++) {
			if (r[i].categories & EST_PAGE_IS_PRESENT) {
				ret = scan_range(e, fd, pm, r[i].start, r[i].end,
						 r[i].categories & EST_PAGE_IS_HUGE);
			} else {
				uint64_t k = (r[i].end - r[i].start) / EST_PAGE_SIZE;

				e->pu->swapped += k;
				e->cu->swapped += k;
				e->tu->swapped += k;
			}
		}
		if (arg.walk_end <= a)
			break;
		a = arg.walk_end;
	}
	return ret;
}

/* The units the current process's pages count in (see struct est). */
static void set_units(struct est *e, struct est_proc *p)
{
	if (e->final) {
		e->pu = &p->u;
		e->cu = &e->cgroups[p->cgroup].u;
		e->tu = &e->total;
	} else {
		e->pu = &e->sink[0];
		e->cu = &e->sink[1];
		e->tu = &e->sink[2];
	}
}

int est_scan_proc(struct est *e, int idx)
{
	struct est_proc *p = &e->procs[idx];
	uint64_t *pm = NULL;
	struct vma *v = NULL;
	int nv = 0, areas = 0, fd = -1, ret;
	char path[64];
	uint64_t before = e->tot.bytes_read;

	e->cur = idx;
	e->mem_fd = -1;
	set_units(e, p);
	if (!p->comm[0])
		read_comm(p);
	p->memory = memory_of(e, p->pid);
	ret = p->memory == EST_MEM_NONE
		  ? 0
		  : read_smaps(e, p->pid, p->memory != EST_MEM_MADVISE, &v, &nv, &areas);
	if (ret)
		goto fail;
	if (p->memory == EST_MEM_NONE || (!nv && areas)) {
		/* Memory, but none that ksmd would scan. */
		if (p->memory == EST_MEM_MADVISE)
			p->memory = EST_MEM_NONE;
		p->status = EST_OK;
		goto out;
	}
	if (!nv) {
		/* No memory of its own: a kernel thread, or a process that
		 * has exited or is exiting. */
		if (!is_kthread(p->pid)) {
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
	if (e->tot.bytes_read > before)
		p->read_pass = e->pass;
	est_seen_end_proc(e);
	if (e->mem_fd >= 0)
		close(e->mem_fd);
	e->mem_fd = -1;
	if (fd >= 0)
		close(fd);
	free(pm);
	free(v);
	return ret;
}
