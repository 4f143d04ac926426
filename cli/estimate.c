// SPDX-License-Identifier: MIT
/*
 * estimate.c - `ksmctl estimate`: options, choice of target processes,
 * progress bar and the report (text or JSON) of what the kernel's KSM would
 * save on them.  The reading and counting is in estimate-scan.c.
 *
 * Targets are gathered (--pid, --cgroup, --all), each is tagged with its
 * cgroup v2 path from /proc/PID/cgroup, and they are scanned sorted by
 * cgroup then PID, which the engine needs for its per-unit counts.  They
 * are read --passes times, --interval seconds apart, and only the pages
 * that stayed the same are counted (the engine's passes).  A target that
 * cannot be read gets one message on stderr and a "status" in the report;
 * the exit status is non-zero only when nothing could be read.
 */
#include "estimate.h"
#include "estimate-scan.h"
#include "json.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define KSM_SYSFS "/sys/kernel/mm/ksm/"
#define DEFAULT_CONFIRM_MIB 256
/* Two reads one second apart: see docs/estimate.md, "Volatile pages", for
 * the measurements behind these defaults. */
#define DEFAULT_PASSES 2
#define DEFAULT_INTERVAL 1.0
#define MAX_PASSES 100
#define Z95 1.959963984540054 /* two-sided 95% quantile of the normal law */

static const char usage[] =
    "usage: ksmctl estimate [--pid PID ...] [--cgroup PATH ...] [--all] [--json]\n"
    "                       [--all-memory] [--passes N] [--interval SECONDS]\n"
    "                       [--sample FRACTION] [--max-page-sharing N] [--use-zero-pages 0|1]\n"
    "                       [--top N] [--range START-END] [--no-progress]\n"
    "\n"
    "Reads the memory the kernel's KSM would scan in running processes, without stopping\n"
    "them or enabling KSM, and reports how many pages a merge would free: a perfect merge,\n"
    "and the kernel's KSM with its current knobs (pages_sharing + ksm_zero_pages as it\n"
    "would count them with max_page_sharing and use_zero_pages; 64 bytes of metadata per\n"
    "scanned page, i.e. general_profit).  Per process, per cgroup and in total.\n"
    "Counted: the areas marked mergeable (madvise MADV_MERGEABLE, e.g. QEMU's guest RAM)\n"
    "and every area of a process with merge-any (prctl PR_SET_MEMORY_MERGE, systemd\n"
    "MemoryKSM=), and only the pages whose content stayed the same from one pass to the\n"
    "next: the others are volatile, as ksmd would find them.\n"
    "\n"
    "  --pid PID           a process to read (repeatable, or PID,PID,...)\n"
    "  --cgroup PATH       the processes of a cgroup v2 and of its descendants (repeatable);\n"
    "                      PATH as in /proc/PID/cgroup (/system.slice/x.service) or a path\n"
    "                      under the cgroup2 mount\n"
    "  --all               every process (the default when no target is given)\n"
    "  --json              JSON on stdout\n"
    "  --all-memory        count every area KSM could merge, marked mergeable or not: what\n"
    "                      merge-any (prctl, MemoryKSM=) would make mergeable everywhere\n"
    "  --passes N          read every page N times (default 2); 1: a snapshot, no page is\n"
    "                      found volatile\n"
    "  --interval SECONDS  time between passes (default 1): a page that changes within it\n"
    "                      is volatile; ksmd's own time between two visits of a page is\n"
    "                      what it models\n"
    "  --sample FRACTION   keep only that fraction of the contents (chosen by hash) to bound\n"
    "                      memory on very large hosts; every page is still read; figures are\n"
    "                      scaled and given with a 95% confidence interval; contents of 64\n"
    "                      copies or more (found by the first of two passes) are exact\n"
    "  --max-page-sharing N, --use-zero-pages 0|1\n"
    "                      model these knob values instead of the kernel's current ones\n"
    "  --top N             list the N most duplicated contents (default 10)\n"
    "  --range START-END   read only addresses in [START, END) (hex), e.g. one VM's RAM\n"
    "  --no-progress       no progress bar on stderr (shown only on a terminal, after 1 s,\n"
    "                      and while waiting between passes)\n"
    "\n"
    "Exit status: 0 if at least one process was read, 1 if none could be, 2 on bad usage\n"
    "(a --cgroup that does not exist too).\n"
    "Needs root (or CAP_SYS_PTRACE) to read other users' processes, and CAP_SYS_ADMIN to\n"
    "see PFNs, which tell pages shared since fork or already merged apart.\n";

struct target {
	pid_t pid;
	char *cgroup; /* cgroup v2 path, "?" if unknown */
	bool named;   /* given by --pid: a kernel thread is then worth a message */
};

struct targets {
	struct target *v;
	int n, cap;
};

static int targets_add(struct targets *t, pid_t pid, bool named)
{
	for (int i = 0; i < t->n; i++) {
		if (t->v[i].pid == pid) {
			t->v[i].named |= named;
			return 0;
		}
	}
	if (t->n == t->cap) {
		int ncap = t->cap ? t->cap * 2 : 64;
		struct target *n = realloc(t->v, (size_t)ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		t->v = n;
		t->cap = ncap;
	}
	t->v[t->n++] = (struct target){pid, NULL, named};
	return 0;
}

static int target_cmp(const void *a, const void *b)
{
	const struct target *x = a, *y = b;
	int c = strcmp(x->cgroup, y->cgroup);

	return c ? c : (x->pid > y->pid) - (x->pid < y->pid);
}

/* The cgroup v2 path of pid as printable text, "?" when unknown. */
static char *pid_cgroup(pid_t pid)
{
	char path[64], cg[4096], text[PROCFS_ESCAPED_SIZE(4096)];

	procfs_path(path, sizeof(path), "/proc", (int)pid, "cgroup");
	if (procfs_cgroup(path, cg, sizeof(cg)))
		return strdup("?");
	return strdup(procfs_escape(cg, text, sizeof(text)));
}

/* Where cgroup2 is mounted ("/sys/fs/cgroup", or ".../unified" on hybrid
 * hosts): 0 or -ENOENT. */
static int cgroup2_mount(char *buf, size_t len)
{
	char *line = NULL;
	size_t cap = 0;
	int ret = -ENOENT;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		return -errno;
	while (ret && getline(&line, &cap, f) > 0) {
		char *sep = strstr(line, " - ");
		char mnt[4096];

		if (!sep || strncmp(sep, " - cgroup2 ", 11))
			continue;
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) == 1 && strlen(mnt) < len) {
			strcpy(buf, mnt);
			ret = 0;
		}
	}
	free(line);
	fclose(f);
	return ret;
}

/* Adds the processes of dir and of its descendants. */
static int cgroup_walk(struct targets *t, const char *dir, int depth)
{
	char path[4096];
	FILE *f;
	DIR *d;
	struct dirent *de;
	long pid;

	if (depth > 64)
		return 0;
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fscanf(f, "%ld", &pid) == 1)
		if (targets_add(t, (pid_t)pid, false))
			break;
	fclose(f);
	d = opendir(dir);
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		if (de->d_type != DT_DIR || de->d_name[0] == '.')
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) < sizeof(path))
			cgroup_walk(t, path, depth + 1);
	}
	closedir(d);
	return 0;
}

static int add_cgroup(struct targets *t, const char *arg)
{
	char mnt[4096], dir[8192];
	struct stat st;
	size_t ml;

	if (cgroup2_mount(mnt, sizeof(mnt)))
		return ksmctl_fail(KSMCTL_NO, arg, "mount cgroup2, or use --pid",
				   "estimate: no cgroup v2 hierarchy is mounted");
	ml = strlen(mnt);
	if (!strncmp(arg, mnt, ml) && (arg[ml] == '/' || !arg[ml]))
		snprintf(dir, sizeof(dir), "%s", arg);
	else
		snprintf(dir, sizeof(dir), "%s%s%s", mnt, arg[0] == '/' ? "" : "/", arg);
	if (stat(dir, &st) || !S_ISDIR(st.st_mode))
		return ksmctl_fail(KSMCTL_USAGE, arg,
				   "give a path as in /proc/PID/cgroup (\"0::\" line), "
				   "e.g. /system.slice/foo.service",
				   "estimate: no such cgroup: %s does not exist", dir);
	if (cgroup_walk(t, dir, 0))
		return ksmctl_fail(KSMCTL_NO, arg, NULL,
				   "estimate: cannot read %s/cgroup.procs: %s", dir,
				   strerror(errno));
	return 0;
}

static int add_all(struct targets *t)
{
	int *pids, n = procfs_pids("/proc", &pids);

	if (n < 0)
		return n;
	for (int i = 0; i < n; i++)
		/* Not ourselves: our own buffers would count as duplicates. */
		if (pids[i] != getpid() && targets_add(t, (pid_t)pids[i], false))
			break;
	free(pids);
	return 0;
}

/* PID[,PID...]: every item a pid, none empty ("5," and "5,,6" are typos,
 * refused; strtok_r skipped their empty items).  0 or -EINVAL. */
static int add_pids(struct targets *t, const char *arg)
{
	char *copy = strdup(arg), *rest = copy, *s;
	int ret = 0;

	if (!copy)
		return -ENOMEM;
	while ((s = strsep(&rest, ","))) {
		long long v;

		if (parse_ll(s, &v) || v <= 0 || v > 0x7fffffff) {
			ret = -EINVAL;
			break;
		}
		targets_add(t, (pid_t)v, true);
	}
	free(copy);
	return ret;
}

/* ------------------------------------------------------------- Progress ---- */

struct progress {
	bool on;
	double start, last;
	uint64_t total;	     /* expected bytes per pass: RssAnon of the targets, then pass 1's */
	uint64_t pass_start; /* bytes read before this pass */
	int pass, passes;
	bool shown;
};

static void progress_cb(void *arg, uint64_t done, const struct est_proc *p)
{
	struct progress *pr = arg;
	double now = now_seconds();
	char a[32], b[32], what[32] = "";
	int width = 30, fill;
	double frac;

	if (!pr->on || now - pr->start < 1.0 || now - pr->last < 0.1)
		return;
	pr->last = now;
	pr->shown = true;
	done -= pr->pass_start;
	frac = pr->total ? (double)done / (double)pr->total : 0;
	if (frac > 1)
		frac = 1;
	fill = (int)(frac * width);
	if (pr->passes > 1)
		snprintf(what, sizeof(what), " pass %d/%d", pr->pass, pr->passes);
	fprintf(stderr, "\r\033[Kestimate%s [%.*s%*s] %3.0f%% %s of ~%s, pid %d (%s)", what, fill,
		"##############################", width - fill, "", frac * 100,
		fmt_bytes(a, sizeof(a), (double)done), fmt_bytes(b, sizeof(b), (double)pr->total),
		(int)p->pid, p->comm);
	fflush(stderr);
}

/* Waits until `until`, saying why on a terminal. */
static void progress_wait(struct progress *pr, double until)
{
	char a[32];

	for (double now = now_seconds(); now < until; now = now_seconds()) {
		double left = until - now;

		if (pr->on && left >= 0.2) {
			fprintf(
			    stderr,
			    "\r\033[Kestimate: pass %d/%d read %s; pass %d in %.1f s (a page that "
			    "changes meanwhile is volatile)",
			    pr->pass, pr->passes, fmt_bytes(a, sizeof(a), (double)pr->total),
			    pr->pass + 1, left);
			fflush(stderr);
			pr->shown = true;
		}
		sleep_seconds(left < 0.1 ? left : 0.1);
	}
}

static uint64_t rss_anon(pid_t pid)
{
	char path[64];
	long long kb =
	    procfs_number(procfs_path(path, sizeof(path), "/proc", (int)pid, "status"), "RssAnon");

	return kb > 0 ? (uint64_t)kb * 1024 : 0;
}

/* ------------------------------------------------------------- Figures ---- */

/* A unit's figures as reported: sampled parts scaled by 1/fraction. */
struct figs {
	double present, scanned, volatile_pages, zero, zero_huge, distinct, saved, saved_within;
	double ksm_saved, rmap_items, profit, already_shared, already_ksm, zero_mapped, swapped;
	double unreadable;
};

static struct figs figs_of(const struct est_unit *u, double f, bool uzp)
{
	struct figs r;
	double nz = (double)(u->scanned - u->zero);
	/* The heavy contents' part (hv_*, within tbl_*) is exact. */
	double hv_within = (double)u->hv_pages - (double)u->hv_distinct;
	double nz_within =
	    ((double)u->tbl_pages - (double)u->tbl_distinct - hv_within) / f + hv_within;

	if (nz_within > nz)
		nz_within = nz;
	r.present = (double)u->present;
	r.scanned = (double)u->scanned;
	r.volatile_pages = (double)u->volatile_pages;
	r.zero = (double)u->zero;
	r.zero_huge = (double)u->zero_huge;
	r.saved =
	    (double)u->zero_saved + (double)u->hv_saved + (double)(u->tbl_saved - u->hv_saved) / f;
	r.saved_within = (u->zero ? (double)u->zero - 1 : 0) + nz_within;
	r.distinct = r.scanned - r.saved_within;
	r.ksm_saved = (double)u->zero_ksm_saved + (double)u->hv_ksm_saved +
		      (double)(u->tbl_ksm_saved - u->hv_ksm_saved) / f;
	/* A page that ends up as the zero page (merged into it with
	 * use_zero_pages, or a zero subpage of a huge page ksmd split) loses
	 * its rmap_item at the next pass: ksmd no longer finds a page there. */
	r.rmap_items = (double)u->rmap_items - (double)(uzp ? u->zero : u->zero_huge);
	r.profit = r.ksm_saved * EST_PAGE_SIZE - r.rmap_items * EST_RMAP_ITEM_SIZE;
	r.already_shared = (double)u->already_shared;
	r.already_ksm = (double)u->already_ksm;
	r.zero_mapped = (double)u->zero_mapped;
	r.swapped = (double)u->swapped;
	r.unreadable = (double)u->unreadable;
	return r;
}

static long long rnd(double v)
{
	return (long long)llround(v);
}

static const char *status_name(enum est_status s)
{
	static const char *const names[] = {"ok", "gone", "exited", "denied", "no_mm", "failed"};

	return names[s];
}

static const char *status_text(const struct est_proc *p, char *buf, size_t len)
{
	switch (p->status) {
	case EST_OK: return NULL;
	case EST_GONE: return "no such process";
	case EST_EXITED:
		if (!p->u.present)
			return p->read_pass ? "exited before the last pass: its memory is gone, "
					      "nothing counted"
					    : "exited before it could be read";
		return "exited during the scan: the pages read before are counted";
	case EST_DENIED:
		if (geteuid() == 0)
			return "permission denied, even to root: the process is protected "
			       "(not dumpable, or another user namespace)";
		return "permission denied: run as root, or with CAP_SYS_PTRACE";
	case EST_NO_MM: return "a kernel thread: no memory to read";
	default: snprintf(buf, len, "cannot read: %s", strerror(p->err)); return buf;
	}
}

static void json_figs(struct json *j, const struct figs *r)
{
	json_int(j, "pages_present", rnd(r->present));
	json_int(j, "pages_scanned", rnd(r->scanned));
	json_int(j, "pages_volatile", rnd(r->volatile_pages));
	json_int(j, "pages_zero", rnd(r->zero));
	json_int(j, "pages_zero_huge", rnd(r->zero_huge));
	json_int(j, "distinct_contents", rnd(r->distinct));
	json_int(j, "pages_saved", rnd(r->saved));
	json_int(j, "bytes_saved", rnd(r->saved) * EST_PAGE_SIZE);
	json_int(j, "pages_saved_within", rnd(r->saved_within));
	json_int(j, "ksm_pages_saved", rnd(r->ksm_saved));
	json_int(j, "ksm_bytes_saved", rnd(r->ksm_saved) * EST_PAGE_SIZE);
	json_int(j, "ksm_rmap_items", rnd(r->rmap_items));
	json_int(j, "ksm_metadata_bytes", rnd(r->rmap_items) * EST_RMAP_ITEM_SIZE);
	json_int(j, "ksm_general_profit", rnd(r->profit));
	json_int(j, "pages_already_shared", rnd(r->already_shared));
	json_int(j, "pages_already_ksm", rnd(r->already_ksm));
	json_int(j, "pages_zero_mapped", rnd(r->zero_mapped));
	json_int(j, "pages_swapped", rnd(r->swapped));
	json_int(j, "pages_unreadable", rnd(r->unreadable));
}

struct report {
	struct est *e;
	struct est_totals t;
	struct est_top *top;
	int ntop;
	unsigned mps;
	bool uzp;
	const char *knob_source;
	double sample;
	double seconds, cpu_seconds;
	bool all_memory;
	int passes;
	double interval;
	long long pages_to_scan, sleep_ms; /* the kernel's, -1 unknown */
	double *pass_seconds, *pass_cpu;   /* per pass */
	uint64_t *pass_bytes;
	bool *named; /* per process index: given by --pid */
	int denied;  /* other users' processes not named, not read: said once */
};

static void interval(double v, double var, double lo_min, double hi_max, double out[2])
{
	double h = Z95 * sqrt(var > 0 ? var : 0);

	out[0] = v - h < lo_min ? lo_min : v - h;
	out[1] = v + h > hi_max ? hi_max : v + h;
}

/* A process is listed unless it is a kernel thread nobody asked for. */
static bool listed(const struct report *r, int i)
{
	return est_proc_at(r->e, i)->status != EST_NO_MM || r->named[i];
}

/* Read, at least in part (a process that exited during the scan is). */
static bool was_read(const struct est_proc *p)
{
	return p->status == EST_OK || (p->status == EST_EXITED && p->u.present);
}

/* Gone before anything could be read: processes found by --all or
 * --cgroup come and go. */
static bool vanished(const struct est_proc *p)
{
	return p->status == EST_GONE || (p->status == EST_EXITED && !p->u.present);
}

/* Read, but with nothing ksmd would scan. */
static bool not_mergeable(const struct est_proc *p)
{
	return p->status == EST_OK && p->memory == EST_MEM_NONE;
}

/* A row of the text table: listed, and named or with something to show. */
static bool shown_row(const struct report *r, int i)
{
	const struct est_proc *p = est_proc_at(r->e, i);
	return listed(r, i) && (r->named[i] || !(not_mergeable(p) || vanished(p)));
}

static const char *memory_name(enum est_memory m)
{
	static const char *const names[] = {"no", "madvise", "merge_any", "all_memory"};

	return names[m];
}

static void json_doubles(struct json *j, const char *key, const double *v, int n)
{
	json_array_begin(j, key);
	for (int i = 0; i < n; i++)
		json_double(j, NULL, v[i]);
	json_array_end(j);
}

static void print_json(const struct report *r)
{
	struct json j;
	struct figs tf = figs_of(&r->t.u, r->sample, r->uzp);
	double ci[2];
	char buf[128];

	json_init(&j, stdout);
	json_object_begin(&j, NULL);
	json_int(&j, "page_size", EST_PAGE_SIZE);
	json_figs(&j, &tf);
	json_double(&j, "percent_saved", tf.scanned ? 100.0 * tf.saved / tf.scanned : 0);
	json_int(&j, "ksm_max_page_sharing", r->mps);
	json_bool(&j, "ksm_use_zero_pages", r->uzp);
	json_string(&j, "ksm_knobs_from", r->knob_source);
	json_int(&j, "ksm_pages_shared", (long long)r->t.ksm_pages_shared);
	json_int(&j, "ksm_pages_sharing", (long long)r->t.ksm_pages_sharing);
	json_int(&j, "ksm_zero_pages", (long long)r->t.ksm_zero_pages);
	json_int(&j, "ksm_zero_pages_huge", (long long)r->t.ksm_zero_huge);
	json_int(&j, "ksm_stable_node_chains", (long long)r->t.ksm_stable_node_chains);
	json_bool(&j, "pfns_visible", est_have_pfns(r->e));
	json_bool(&j, "all_memory", r->all_memory);
	json_int(&j, "passes", r->passes);
	json_double(&j, "interval_seconds", r->interval);
	json_double(&j, "sample", r->sample);
	if (r->t.heavy_known)
		json_uint(&j, "heavy_contents", r->t.heavy_contents);
	else
		json_null(&j, "heavy_contents");
	json_object_begin(&j, "confidence_95");
	interval(tf.saved, r->t.var_saved, 0, tf.scanned, ci);
	json_array_begin(&j, "pages_saved");
	json_int(&j, NULL, rnd(ci[0]));
	json_int(&j, NULL, rnd(ci[1]));
	json_array_end(&j);
	interval(tf.ksm_saved, r->t.var_ksm_saved, 0, tf.scanned, ci);
	json_array_begin(&j, "ksm_pages_saved");
	json_int(&j, NULL, rnd(ci[0]));
	json_int(&j, NULL, rnd(ci[1]));
	json_array_end(&j);
	interval(tf.distinct, r->t.var_saved, tf.scanned ? 1 : 0, tf.scanned, ci);
	json_array_begin(&j, "distinct_contents");
	json_int(&j, NULL, rnd(ci[0]));
	json_int(&j, NULL, rnd(ci[1]));
	json_array_end(&j);
	json_object_end(&j);
	json_object_begin(&j, "confirmation");
	json_int(&j, "confirmed", (long long)r->t.confirmed);
	json_int(&j, "rereads", (long long)r->t.rereads);
	json_int(&j, "collisions", (long long)r->t.collisions);
	json_int(&j, "unconfirmed", (long long)r->t.unconfirmed);
	json_int(&j, "reference_changed", (long long)r->t.reference_changed);
	json_object_end(&j);
	json_int(&j, "bytes_read", (long long)r->t.bytes_read);
	json_double(&j, "seconds", r->seconds);
	json_double(&j, "cpu_seconds", r->cpu_seconds);
	json_doubles(&j, "pass_seconds", r->pass_seconds, r->passes);
	json_doubles(&j, "pass_cpu_seconds", r->pass_cpu, r->passes);
	json_array_begin(&j, "pass_bytes_read");
	for (int i = 0; i < r->passes; i++)
		json_int(&j, NULL, (long long)r->pass_bytes[i]);
	json_array_end(&j);

	int ok = 0, failed = 0, mergeable = 0;
	json_array_begin(&j, "processes");
	for (int i = 0; i < est_nprocs(r->e); i++) {
		struct est_proc *p = est_proc_at(r->e, i);
		struct figs pf = figs_of(&p->u, r->sample, r->uzp);

		if (!listed(r, i))
			continue;
		if (was_read(p))
			ok++;
		else
			failed++;
		mergeable += was_read(p) && p->memory != EST_MEM_NONE;
		json_object_begin(&j, NULL);
		json_int(&j, "pid", p->pid);
		json_string(&j, "comm", p->comm);
		json_string(&j, "cgroup", est_cgroup_at(r->e, p->cgroup)->path);
		json_string(&j, "mergeable", was_read(p) ? memory_name(p->memory) : NULL);
		json_string(&j, "status", status_name(p->status));
		json_string(&j, "error", status_text(p, buf, sizeof(buf)));
		json_figs(&j, &pf);
		json_object_end(&j);
	}
	json_array_end(&j);
	json_int(&j, "processes_read", ok);
	json_int(&j, "processes_mergeable", mergeable);
	json_int(&j, "processes_failed", failed);

	json_array_begin(&j, "cgroups");
	for (int i = 0; i < est_ncgroups(r->e); i++) {
		struct est_cgroup *c = est_cgroup_at(r->e, i);
		struct figs cf = figs_of(&c->u, r->sample, r->uzp);

		json_object_begin(&j, NULL);
		json_string(&j, "cgroup", c->path);
		json_int(&j, "processes", c->nprocs);
		json_figs(&j, &cf);
		json_object_end(&j);
	}
	json_array_end(&j);

	json_array_begin(&j, "top_contents");
	for (int i = 0; i < r->ntop; i++) {
		const struct est_top *t = &r->top[i];
		char hex[40];

		json_object_begin(&j, NULL);
		snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)t->hash);
		json_string(&j, "xxh3", hex);
		json_int(&j, "copies", t->copies);
		json_bool(&j, "zero", t->zero);
		if (t->head_known) {
			for (int k = 0; k < 16; k++)
				snprintf(hex + 2 * k, 3, "%02x", t->head[k]);
			json_string(&j, "head", hex);
		}
		json_int(&j, "processes_holding", t->nprocs);
		json_array_begin(&j, "processes");
		for (int k = 0; k < t->shown; k++) {
			json_object_begin(&j, NULL);
			json_int(&j, "pid", est_proc_at(r->e, t->proc[k])->pid);
			json_int(&j, "copies", t->copies_in[k]);
			json_object_end(&j);
		}
		json_array_end(&j);
		json_object_end(&j);
	}
	json_array_end(&j);
	json_object_end(&j);
}

static const char *mib(char *buf, size_t len, double pages)
{
	return fmt_bytes(buf, len, pages * EST_PAGE_SIZE);
}

/*
 * A page counts as stable when it did not change within --interval; ksmd
 * merges it when it did not change between two of its visits.  Says how
 * far apart those are with the kernel's pages_to_scan and sleep_millisecs
 * (its own CPU time and other processes' pages make it longer), when that
 * is much longer than the interval.
 */
static void say_revisit(const struct report *r, double pages)
{
	double s;

	if (r->passes < 2 || r->pages_to_scan < 1 || r->sleep_ms < 0)
		return;
	s = ceil(pages / (double)r->pages_to_scan) * (double)r->sleep_ms / 1000;
	if (s > 2 * r->interval)
		printf("  note: ksmd would visit each of these pages every %.0f s or more "
		       "(pages_to_scan %lld, sleep_millisecs %lld): a page that changes less often "
		       "than every %g s but more often than that will not merge; --interval %.0f "
		       "reads the pages that far apart\n",
		       s, r->pages_to_scan, r->sleep_ms, r->interval, s);
}

static void print_text(const struct report *r)
{
	struct figs tf = figs_of(&r->t.u, r->sample, r->uzp);
	char a[32], b[32], c[32];
	double ci[2];
	bool sampled = r->sample < 1;

	double last = r->pass_seconds[r->passes - 1], last_cpu = r->pass_cpu[r->passes - 1];
	int hidden = 0, gone = 0;

	printf("ksmctl estimate: %s of %s memory read",
	       fmt_bytes(a, sizeof(a), (double)r->pass_bytes[r->passes - 1]),
	       r->all_memory ? "private anonymous" : "mergeable");
	if (r->passes > 1)
		printf(" %d times, %g s apart,", r->passes, r->interval);
	printf(" in %.2f s (last pass %.2f s, %.2f GB/s per core)%s\n", r->seconds, last,
	       last_cpu > 0 ? (double)r->pass_bytes[r->passes - 1] / last_cpu / 1e9 : 0,
	       sampled ? ", contents sampled" : "");
	printf("\nper process (SAVED: pages freed by a perfect merge, each content's first copy\n"
	       "kept where it was seen first; KSM: what the kernel would free; VOLATILE: changed\n"
	       "between passes, not counted):\n");
	/* COMM as wide as the widest name shown (a name escaped as \xHH
	 * is wider than its 15 bytes), in the columns a terminal gives it. */
	int comm_width = 15;
	for (int i = 0; i < est_nprocs(r->e); i++) {
		struct est_proc *p = est_proc_at(r->e, i);
		if (shown_row(r, i) && text_columns(p->comm) > comm_width)
			comm_width = text_columns(p->comm);
	}
	printf("%8s %-*s %10s %9s %10s %10s %10s %9s %9s  %s\n", "PID", comm_width, "COMM",
	       "SCANNED", "ZERO", "DISTINCT", "SAVED", "KSM", "VOLATILE", "SHARED", "CGROUP");
	for (int i = 0; i < est_nprocs(r->e); i++) {
		struct est_proc *p = est_proc_at(r->e, i);
		struct figs f = figs_of(&p->u, r->sample, r->uzp);
		char buf[128];

		if (!listed(r, i))
			continue;
		if (!shown_row(r, i)) {
			hidden += not_mergeable(p);
			gone += vanished(p);
			continue;
		}
		printf("%8d %s%*s %10lld %9lld %10lld %10lld %10lld %9lld %9lld  %s", (int)p->pid,
		       p->comm, comm_width - text_columns(p->comm), "", rnd(f.scanned), rnd(f.zero),
		       rnd(f.distinct), rnd(f.saved), rnd(f.ksm_saved), rnd(f.volatile_pages),
		       rnd(f.already_shared + f.zero_mapped), est_cgroup_at(r->e, p->cgroup)->path);
		if (p->status != EST_OK)
			printf("  (%s)", status_text(p, buf, sizeof(buf)));
		else if (not_mergeable(p))
			printf("  (no mergeable memory)");
		putchar('\n');
	}
	if (hidden)
		printf("%8s %d more processes without mergeable memory: not counted (--all-memory "
		       "counts them)\n",
		       "", hidden);
	if (gone)
		printf("%8s %d more processes exited before they could be read\n", "", gone);
	if (est_ncgroups(r->e) > 1) {
		printf("\nper cgroup:\n%-40s %6s %10s %10s %10s %10s\n", "CGROUP", "PROCS",
		       "SCANNED", "DISTINCT", "SAVED", "KSM");
		for (int i = 0; i < est_ncgroups(r->e); i++) {
			struct est_cgroup *cg = est_cgroup_at(r->e, i);
			struct figs f = figs_of(&cg->u, r->sample, r->uzp);

			printf("%-40s %6d %10lld %10lld %10lld %10lld\n", cg->path, cg->nprocs,
			       rnd(f.scanned), rnd(f.distinct), rnd(f.saved), rnd(f.ksm_saved));
		}
	}
	printf("\ntotal:\n");
	printf("  pages scanned          %12lld  %s\n", rnd(tf.scanned),
	       mib(a, sizeof(a), tf.scanned));
	if (r->passes > 1)
		printf(
		    "  volatile, not counted  %12lld  %s (changed within %d passes %g s apart)\n",
		    rnd(tf.volatile_pages), mib(a, sizeof(a), tf.volatile_pages), r->passes,
		    r->interval);
	printf("  zero pages             %12lld  %s\n", rnd(tf.zero), mib(a, sizeof(a), tf.zero));
	printf("  distinct contents      %12lld\n", rnd(tf.distinct));
	printf("  perfect merge frees    %12lld  %s (%.1f%% of scanned)\n", rnd(tf.saved),
	       mib(a, sizeof(a), tf.saved), tf.scanned ? 100 * tf.saved / tf.scanned : 0);
	if (sampled) {
		interval(tf.saved, r->t.var_saved, 0, tf.scanned, ci);
		printf("                          95%% interval %lld .. %lld pages (sample %g of "
		       "contents; exact: zero pages",
		       rnd(ci[0]), rnd(ci[1]), r->sample);
		if (r->t.heavy_known)
			printf(" and %llu contents of %d copies or more)\n",
			       (unsigned long long)r->t.heavy_contents, EST_HEAVY_COPIES);
		else
			printf("; with --passes 1, contents of many copies are sampled too)\n");
	}
	printf("  kernel KSM (max_page_sharing %u, use_zero_pages %d, %s):\n", r->mps, r->uzp,
	       r->knob_source);
	printf("    pages_shared %llu, pages_sharing %llu, ksm_zero_pages %llu\n",
	       (unsigned long long)r->t.ksm_pages_shared,
	       (unsigned long long)r->t.ksm_pages_sharing, (unsigned long long)r->t.ksm_zero_pages);
	printf("    frees                %12lld  %s (pages_sharing + ksm_zero_pages)\n",
	       rnd(tf.ksm_saved), mib(a, sizeof(a), tf.ksm_saved));
	if (r->t.ksm_zero_huge)
		printf("    and, uncounted       %12llu  %s: zero pages of huge pages it splits\n",
		       (unsigned long long)r->t.ksm_zero_huge,
		       mib(b, sizeof(b), (double)r->t.ksm_zero_huge));
	if (sampled) {
		interval(tf.ksm_saved, r->t.var_ksm_saved, 0, tf.scanned, ci);
		printf("                          95%% interval %lld .. %lld pages\n", rnd(ci[0]),
		       rnd(ci[1]));
	}
	printf("    costs                %12lld  rmap_items x 64 B = %s\n", rnd(tf.rmap_items),
	       fmt_bytes(b, sizeof(b), tf.rmap_items * EST_RMAP_ITEM_SIZE));
	printf("    general_profit       %12s\n", fmt_bytes(c, sizeof(c), tf.profit));
	printf("  already shared, not counted as savings: %lld mappings of pages seen elsewhere "
	       "(%lld KSM pages), %lld of the zero page%s\n",
	       rnd(tf.already_shared), rnd(tf.already_ksm), rnd(tf.zero_mapped),
	       est_have_pfns(r->e) ? "" : " (no PFNs visible: not root)");
	if (tf.swapped || tf.unreadable)
		printf("  not read: %lld swapped out, %lld unreadable\n", rnd(tf.swapped),
		       rnd(tf.unreadable));
	say_revisit(r, tf.rmap_items);
	if (r->ntop) {
		printf("\nmost duplicated contents:\n%10s  %-34s %s\n", "COPIES", "CONTENT",
		       "PROCESSES (copies)");
		for (int i = 0; i < r->ntop; i++) {
			const struct est_top *t = &r->top[i];
			char what[40] = "?";

			if (t->zero)
				snprintf(what, sizeof(what), "zeros");
			else if (t->head_known)
				for (int k = 0; k < 16; k++)
					snprintf(what + 2 * k, 3, "%02x", t->head[k]);
			printf("%10u  %-34s", t->copies, what);
			for (int k = 0; k < t->shown; k++)
				printf(" %d(%u)", (int)est_proc_at(r->e, t->proc[k])->pid,
				       t->copies_in[k]);
			if (t->nprocs > t->shown)
				printf(" and %d more", t->nprocs - t->shown);
			putchar('\n');
		}
	}
}

/* ---------------------------------------------------------------- Main ---- */

static int parse_uint_opt(const char *name, const char *s, long long lo, long long hi,
			  long long *out)
{
	if (parse_count(s, out) || *out < lo || *out > hi)
		return ksmctl_fail(KSMCTL_USAGE, s, "see ksmctl estimate --help",
				   "estimate: %s takes a whole number from %lld to %lld", name, lo,
				   hi);
	return 0;
}

/* What the command line asked for. */
struct request {
	struct targets t;
	struct est_config cfg;
	bool all, json, noprog, any_target, help;
	int ncgroups;		 /* --cgroup given, all of them existing */
	const char *cgroup;	 /* the last one */
	long long mps, uzp, top; /* -1: the kernel's current knob */
	double interval;
};

/* Parses the options into rq: 0, or an exit status (usage printed). */
static int parse_options(int argc, char **argv, struct request *rq)
{
	enum {
		OPT_MPS = 256,
		OPT_UZP,
		OPT_TOP,
		OPT_NOPROG,
		OPT_RANGE,
		OPT_ALLMEM,
		OPT_PASSES,
		OPT_INTERVAL
	};
	static const struct option longopts[] = {
	    {"pid", required_argument, NULL, 'p'},
	    {"cgroup", required_argument, NULL, 'c'},
	    {"all", no_argument, NULL, 'a'},
	    {"json", no_argument, NULL, 'j'},
	    {"sample", required_argument, NULL, 's'},
	    {"max-page-sharing", required_argument, NULL, OPT_MPS},
	    {"use-zero-pages", required_argument, NULL, OPT_UZP},
	    {"top", required_argument, NULL, OPT_TOP},
	    {"no-progress", no_argument, NULL, OPT_NOPROG},
	    {"range", required_argument, NULL, OPT_RANGE},
	    {"all-memory", no_argument, NULL, OPT_ALLMEM},
	    {"passes", required_argument, NULL, OPT_PASSES},
	    {"interval", required_argument, NULL, OPT_INTERVAL},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c, ret;
	long long passes = DEFAULT_PASSES;

	rq->cfg.sample = 1.0;
	rq->interval = DEFAULT_INTERVAL;
	rq->mps = rq->uzp = -1;
	rq->top = 10;
	optind = 0; /* glibc: start afresh, main() may have used getopt */
	opterr = 0; /* our own message, in ksmctl's shape */
	while ((c = getopt_long(argc, argv, "+p:c:ajs:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'p':
			rq->any_target = true;
			if (!*optarg)
				return ksmctl_empty_value("estimate", "--pid", "a process id",
							  "give process ids, e.g. --pid 1234");
			if (add_pids(&rq->t, optarg))
				return ksmctl_fail(
				    KSMCTL_USAGE, optarg,
				    "give process ids, e.g. --pid 1234 or --pid 1234,5678",
				    "estimate: --pid takes process ids (positive numbers) "
				    "separated by commas, none empty");
			break;
		case 'c':
			/* Not the root cgroup: that is every process. */
			if (!*optarg)
				return ksmctl_empty_value("estimate", "--cgroup", "a cgroup path",
							  "give a path as in /proc/PID/cgroup, "
							  "or --all for every process");
			rq->any_target = true;
			/* One that does not exist is a typo: nothing is read. */
			if ((ret = add_cgroup(&rq->t, optarg)))
				return ret;
			rq->ncgroups++, rq->cgroup = optarg;
			break;
		case 'a': rq->all = true; break;
		case 'j': rq->json = true; break;
		case 's': {
			if (parse_plain_number(optarg, &rq->cfg.sample) ||
			    !(rq->cfg.sample > 0 && rq->cfg.sample <= 1))
				return ksmctl_fail(KSMCTL_USAGE, optarg, "e.g. --sample 0.1",
						   "estimate: --sample takes a fraction in (0, 1]");
			break;
		}
		case OPT_MPS:
			if ((ret = parse_uint_opt("--max-page-sharing", optarg, 2, 0x7fffffff,
						  &rq->mps)))
				return ret;
			break;
		case OPT_UZP:
			if ((ret = parse_uint_opt("--use-zero-pages", optarg, 0, 1, &rq->uzp)))
				return ret;
			break;
		case OPT_TOP:
			if ((ret = parse_uint_opt("--top", optarg, 0, 1000, &rq->top)))
				return ret;
			break;
		case OPT_NOPROG: rq->noprog = true; break;
		case OPT_ALLMEM: rq->cfg.all_memory = true; break;
		case OPT_PASSES:
			if ((ret = parse_uint_opt("--passes", optarg, 1, MAX_PASSES, &passes)))
				return ret;
			break;
		case OPT_INTERVAL: {
			if (parse_plain_number(optarg, &rq->interval) || rq->interval > 3600)
				return ksmctl_fail(
				    KSMCTL_USAGE, optarg, "e.g. --interval 2.5",
				    "estimate: --interval takes seconds from 0 to 3600");
			break;
		}
		case OPT_RANGE: {
			unsigned long long lo, hi;
			int pos = 0;

			if (sscanf(optarg, "%llx-%llx%n", &lo, &hi, &pos) != 2 || optarg[pos] ||
			    lo >= hi)
				return ksmctl_fail(
				    KSMCTL_USAGE, optarg, "e.g. --range 7f0000000000-7f0040000000",
				    "estimate: --range takes START-END in hex, START < END");
			rq->cfg.range_start = lo & ~(uint64_t)(EST_PAGE_SIZE - 1);
			rq->cfg.range_end =
			    (hi + EST_PAGE_SIZE - 1) & ~(uint64_t)(EST_PAGE_SIZE - 1);
			break;
		}
		case 'h':
			fputs(usage, stdout);
			rq->help = true;
			return KSMCTL_OK;
		default:
			return ksmctl_fail(KSMCTL_USAGE, argv[optind - 1],
					   "see ksmctl estimate --help",
					   optopt ? "estimate: bad option or missing value"
						  : "estimate: unknown option");
		}
	}
	if (optind < argc)
		return ksmctl_fail(KSMCTL_USAGE, argv[optind],
				   "targets are given with --pid or --cgroup",
				   "estimate: unexpected argument");
	rq->cfg.passes = (int)passes;
	return KSMCTL_OK;
}

/* The knobs to model: the kernel's current values unless given. */
static void choose_knobs(const struct request *rq, struct report *r)
{
	long long mps = rq->mps, uzp = rq->uzp, v;

	r->knob_source = "current values";
	if (mps < 0) {
		if (read_ll(KSM_SYSFS "max_page_sharing", &v) || v < 2) {
			v = 256;
			r->knob_source = "kernel defaults: /sys/kernel/mm/ksm unreadable";
		}
		mps = v;
	} else {
		r->knob_source = "given values";
	}
	if (uzp < 0) {
		if (read_ll(KSM_SYSFS "use_zero_pages", &v))
			v = 0;
		uzp = v != 0;
	} else {
		r->knob_source = "given values";
	}
	r->mps = (unsigned)mps;
	r->uzp = uzp;
	if (read_ll(KSM_SYSFS "pages_to_scan", &r->pages_to_scan) || r->pages_to_scan < 1)
		r->pages_to_scan = -1;
	if (read_ll(KSM_SYSFS "sleep_millisecs", &r->sleep_ms) || r->sleep_ms < 0)
		r->sleep_ms = -1;
	r->sample = rq->cfg.sample >= 1 ? 1.0 : rq->cfg.sample;
}

/* Tags every target with its cgroup, sorts them by cgroup then pid (the
 * engine's order) and adds them to the engine: 0 or -ENOMEM. */
static int add_targets(struct targets *t, struct report *r, struct progress *pr)
{
	for (int i = 0; i < t->n; i++) {
		if (!(t->v[i].cgroup = pid_cgroup(t->v[i].pid)))
			return -ENOMEM;
		pr->total += rss_anon(t->v[i].pid);
	}
	if (t->n)
		qsort(t->v, (size_t)t->n, sizeof(*t->v), target_cmp);
	if (!(r->named = calloc((size_t)t->n + 1, sizeof(*r->named))))
		return -ENOMEM;
	for (int i = 0; i < t->n; i++) {
		int cg = est_add_cgroup(r->e, t->v[i].cgroup);

		if (cg < 0 || est_add_proc(r->e, t->v[i].pid, cg) < 0)
			return -ENOMEM;
		r->named[i] = t->v[i].named;
	}
	return 0;
}

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	       (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_usec / 1e6;
}

/* One message on stderr for a process of the last pass that could not be
 * read, or that was named and has nothing mergeable. */
static void say_status(struct report *r, int i, struct progress *pr)
{
	struct est_proc *p = est_proc_at(r->e, i);
	char buf[128];
	const char *what = status_text(p, buf, sizeof(buf));

	if (not_mergeable(p) && r->named[i])
		what = "no mergeable memory (not marked MADV_MERGEABLE, no merge-any): not "
		       "counted; --all-memory counts it";
	else if (p->status == EST_OK || !listed(r, i) || (vanished(p) && !r->named[i]))
		return;
	else if (p->status == EST_DENIED && !r->named[i] && geteuid() != 0) {
		r->denied++; /* a line each would bury the report: one for all */
		return;
	}
	if (pr->shown)
		fputs("\r\033[K", stderr);
	fprintf(stderr, "ksmctl: estimate: pid %d%s%s%s: %s\n", (int)p->pid, p->comm[0] ? " (" : "",
		p->comm, p->comm[0] ? ")" : "", what);
}

/*
 * Reads every target --passes times, each pass starting --interval seconds
 * after the previous one began (or when it ends, if it took longer), so
 * that each page is read twice at least that far apart; one message on
 * stderr for each target that cannot be read in the last pass.  Returns
 * the number of processes read.
 */
static int scan_targets(int n, struct report *r, struct progress *pr)
{
	double cpu0 = cpu_seconds();
	int nread = 0;

	pr->start = now_seconds();
	pr->passes = r->passes;
	for (int pass = 1; pass <= r->passes; pass++) {
		double t0 = now_seconds(), c0 = cpu_seconds();
		uint64_t b0 = pr->pass_start;

		pr->pass = pass;
		est_begin_pass(r->e, pass);
		for (int i = 0; i < n; i++) {
			est_scan_proc(r->e, i);
			if (pass == r->passes) {
				nread += was_read(est_proc_at(r->e, i));
				say_status(r, i, pr);
			}
		}
		r->pass_seconds[pass - 1] = now_seconds() - t0;
		r->pass_cpu[pass - 1] = cpu_seconds() - c0;
		r->pass_bytes[pass - 1] = est_bytes_read(r->e) - b0;
		pr->pass_start = est_bytes_read(r->e);
		pr->total = r->pass_bytes[pass - 1]; /* what the next pass will read */
		/* Nothing read (every target gone, or nothing mergeable): no
		 * page to see change, no reason to wait. */
		if (pass < r->passes && r->pass_bytes[pass - 1])
			progress_wait(pr, t0 + r->interval);
	}
	r->seconds = now_seconds() - pr->start;
	r->cpu_seconds = cpu_seconds() - cpu0;
	if (pr->shown)
		fputs("\r\033[K", stderr);
	if (r->denied)
		fprintf(stderr,
			"ksmctl: estimate: %d processes of other users not read (permission "
			"denied): run as root, or with CAP_SYS_PTRACE\n",
			r->denied);
	return nread;
}

int ksmctl_estimate(int argc, char **argv)
{
	struct request rq = {0};
	struct report r = {0};
	struct progress pr = {0};
	int ret = parse_options(argc, argv, &rq), nread;

	if (ret || rq.help)
		goto out;
	if (rq.all || !rq.any_target)
		add_all(&rq.t);
	choose_knobs(&rq, &r);
	rq.cfg.max_page_sharing = r.mps;
	rq.cfg.use_zero_pages = r.uzp;
	rq.cfg.confirm_budget = (uint64_t)DEFAULT_CONFIRM_MIB << 20;
	rq.cfg.progress = progress_cb;
	rq.cfg.progress_arg = &pr;
	r.all_memory = rq.cfg.all_memory;
	r.passes = rq.cfg.passes;
	r.interval = rq.interval;
	r.pass_seconds = calloc((size_t)r.passes, sizeof(*r.pass_seconds));
	r.pass_cpu = calloc((size_t)r.passes, sizeof(*r.pass_cpu));
	r.pass_bytes = calloc((size_t)r.passes, sizeof(*r.pass_bytes));
	if (!r.pass_seconds || !r.pass_cpu || !r.pass_bytes || est_new(&rq.cfg, &r.e) ||
	    add_targets(&rq.t, &r, &pr)) {
		ret = ksmctl_fail(KSMCTL_NO, NULL, NULL, "estimate: out of memory");
		goto out;
	}
	pr.on = !rq.noprog && isatty(STDERR_FILENO);
	nread = scan_targets(rq.t.n, &r, &pr);
	est_finish(r.e, &r.t);
	r.top = calloc((size_t)rq.top + 1, sizeof(*r.top));
	r.ntop = r.top ? est_top(r.e, r.top, (int)rq.top) : 0;
	if (!nread) {
		/* Nothing read: a report of zeros would only hide the error. */
		char input[256] = "";
		size_t len = 0;
		for (int i = 0; i < rq.t.n && len < 200; i++)
			len += (size_t)snprintf(input + len, sizeof(input) - len, "%s%d",
						i	     ? " "
						: rq.t.n > 1 ? "pids "
							     : "pid ",
						(int)rq.t.v[i].pid);
		if (rq.t.n > 1 && len >= 200)
			snprintf(input + len, sizeof(input) - len, " ... (%d processes)", rq.t.n);
		if (!rq.t.n && rq.ncgroups)
			/* Not "give --cgroup": it was given, and exists. */
			ret = ksmctl_fail(KSMCTL_NO, rq.ncgroups > 1 ? "--cgroup" : rq.cgroup,
					  "give a cgroup that holds processes, or --pid or --all",
					  "estimate: no process could be read: %s",
					  rq.ncgroups > 1 ? "the cgroups given hold none"
							  : "the cgroup given holds none");
		else
			ret = ksmctl_fail(
			    KSMCTL_NO, rq.t.n ? input : "estimate",
			    rq.t.n
				? "check the PIDs, and run as root to read other users' processes"
				: "give --pid, --cgroup or --all",
			    "estimate: no process could be read");
		goto out;
	}
	if (rq.json)
		print_json(&r);
	else
		print_text(&r);
	fflush(stdout);
out:
	for (int i = 0; i < rq.t.n; i++)
		free(rq.t.v[i].cgroup);
	free(rq.t.v);
	free(r.top);
	free(r.named);
	free(r.pass_seconds);
	free(r.pass_cpu);
	free(r.pass_bytes);
	est_free(r.e);
	return ret;
}
