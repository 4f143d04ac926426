// SPDX-License-Identifier: MIT
/*
 * doctor.c - `ksmctl doctor`: "why isn't it merging?"
 *
 * Gathers the facts once (knobs, counters, per-process accounting, host),
 * then runs a table of checks.  Each check that fires gives a finding with
 * its severity, the evidence (the numbers it saw) and the fix.  The order
 * of the table is the order a person should fix things in.
 */
#include "ksmctl.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "tune.h"

const char usage_doctor[] =
    "doctor [--json]\n"
    "\n"
    "Explains why KSM is not merging, or not merging well: each finding with\n"
    "its evidence and the fix.  Exit 0 if nothing is wrong, 1 if a finding is a\n"
    "warning or an error.\n";

enum severity { NONE, INFO, WARN, ERROR };
static const char *const severity_name[] = {"none", "info", "warning", "error"};

struct facts {
	struct ksm_derived d;
	bool ksm;
	int absent;   /* available()'s -errno when !ksm */
	int writable; /* 0 or -errno for run */
	long long run, full_scans, max_sharing, chains, skipped, scanned, smart, advisor;
	long long pages_to_scan, target, max_cpu, across_nodes;
	long long pool_refused, pool_pages; /* samepaged's (0 for the kernel) */
	int numa_nodes;
	int ksmtuned; /* its pid, 0 if not running */
	int tuner;    /* a `ksmctl tune` daemon's pid, 0 if none */
	int systemd;  /* its version, 0 if not systemd: MemoryKSM= needs 254 */
	char thp[32], release[128], kconfig_src[512];
	int kconfig;
	struct proc_list procs;
	bool procs_ok;
	struct guest_list guests;
	int guest_vms, guest_out_vms;	     /* VM monitors; those with memory out of reach */
	int guest_optout_vms;		     /* those whose private guest RAM is not marked */
	long long guest_out_kb, guest_in_kb; /* shared + hugetlbfs; private, large areas */
};

struct finding {
	const char *id;
	char summary[200], evidence[1024], fix[768];
};

typedef enum severity (*check_fn)(const struct facts *f, struct finding *out);

#define SAY(field, ...) snprintf(out->field, sizeof(out->field), __VA_ARGS__)

static enum severity no_ksm(const struct facts *f, struct finding *out)
{
	if (f->ksm)
		return NONE;
	if (opt.be->explain) { /* samepaged: no daemon, not a kernel without KSM */
		out->id = "no-samepaged";
		SAY(summary, "%s is not reachable", opt.be->who);
		opt.be->explain(opt.be, f->absent, out->evidence, sizeof(out->evidence), out->fix,
				sizeof(out->fix));
		return ERROR;
	}
	SAY(summary, "this kernel has no KSM");
	SAY(evidence, "%s does not exist; CONFIG_KSM: %s (%s)", opt.be->where,
	    f->kconfig < 0 ? "unknown"
	    : f->kconfig   ? "y"
			   : "not set",
	    f->kconfig_src);
	SAY(fix,
	    "use a kernel built with CONFIG_KSM=y (and /sys mounted), or libsamepage/samepaged "
	    "to merge in user space");
	return ERROR;
}

/* ksmtuned rewrites run, pages_to_scan and sleep_millisecs every minute. */
static enum severity ksmtuned_running(const struct facts *f, struct finding *out)
{
	if (!f->ksmtuned)
		return NONE;
	SAY(summary, "ksmtuned is running: it undoes ksmctl apply and set");
	SAY(evidence,
	    "pid %d is ksmtuned; it writes run, pages_to_scan and sleep_millisecs every "
	    "KSM_MONITOR_INTERVAL (60 s), whatever /etc/ksm.conf says",
	    f->ksmtuned);
	SAY(fix, "systemctl disable --now ksmtuned.service; then either ksmctl install-service "
		 "(static knobs from /etc/ksm.conf) or ksmctl install-service --tune (ksmctl tune: "
		 "by memory pressure; ksmtuned's own algorithm with --policy ksmtuned)");
	return WARN;
}

static enum severity not_running(const struct facts *f, struct finding *out)
{
	if (f->run == 1)
		return NONE;
	SAY(summary, "ksmd is not running");
	SAY(evidence, "run = %lld", f->run);
	if (opt.user)
		SAY(fix,
		    "%s start; to start merging with the daemon, put \"run = 1\" in the "
		    "file of samepaged --config FILE",
		    opt.self);
	else
		SAY(fix, "ksmctl start; to keep it across reboots, put \"run = 1\" in "
			 "/etc/ksm.conf and run ksmctl install-service");
	return ERROR;
}

static enum severity read_only(const struct facts *f, struct finding *out)
{
	if (f->writable == 0)
		return NONE;
	if (f->writable == -EROFS) {
		SAY(summary, "sysfs is read-only here (a container?)");
		SAY(evidence, "%s/run is on a read-only mount", opt.be->where);
		SAY(fix, "change KSM from the host, or give the container a writable /sys");
		return WARN;
	}
	char path[320], why[256], how[512];
	snprintf(path, sizeof(path), "%s/run", opt.be->where);
	if (!opt.user && root_refusal(path, f->writable, why, sizeof(why), how, sizeof(how))) {
		SAY(summary, "root cannot change KSM here");
		SAY(evidence, "writing %s: %s", path, why);
		SAY(fix, "%s", how);
		return WARN;
	}
	SAY(summary, "this user cannot change KSM");
	SAY(evidence, "writing %s/run: %s", opt.be->where, strerror(-f->writable));
	SAY(fix, "run the fixes below as root");
	return INFO;
}

static enum severity nothing_mergeable(const struct facts *f, struct finding *out)
{
	/* Tracked pages anywhere mean someone opted in, even a process this
	 * user cannot see; a process that opted in but was not scanned yet
	 * (run = 0) shows up in its ksm_stat. */
	if (f->d.rmap_items > 0 || (f->procs_ok && f->procs.n > 0))
		return NONE;
	SAY(summary, "no process has mergeable memory");
	if (opt.user) {
		SAY(evidence, "no client of samepaged at %s has tracked or merged pages",
		    opt.be->where);
		SAY(fix, "connect programs with samepage_connect(&sp, \"DOMAIN\") and mark their "
			 "memory with samepage_madvise(sp, addr, len, SAMEPAGE_MERGEABLE)");
		return WARN;
	}
	/* ksm_stat is readable by its owner only (S_IRUSR): another user's
	 * processes may have opted in, unseen. */
	if (f->procs.accounted && others_unseen()) {
		SAY(summary, "none of this user's processes has mergeable memory");
		SAY(evidence,
		    "no /proc/PID/ksm_stat of this user's shows tracked or merged pages; "
		    "rmap_items %lld; other users' are readable by root only",
		    f->d.rmap_items);
		SAY(fix, "run ksmctl doctor as root to see every process");
		return INFO;
	}
	if (f->procs.accounted)
		SAY(evidence,
		    "no /proc/PID/ksm_stat shows tracked or merged pages; rmap_items %lld",
		    f->d.rmap_items);
	else
		SAY(evidence,
		    "pages_shared + pages_sharing + pages_unshared + pages_volatile = %lld",
		    f->d.rmap_items);
	SAY(fix,
	    "%sopt programs in: ksmctl run -- PROGRAM,%s QEMU -machine mem-merge=on, or "
	    "madvise(MADV_MERGEABLE) in the program",
	    f->guest_out_vms ? "the VMs here keep their memory out of KSM's reach (see "
			       "guest-memory); for the rest, "
			     : "",
	    f->systemd >= 254 ? " systemd's MemoryKSM=yes," : "");
	return WARN;
}

/* In --user mode, samepaged's clients only: another VM is not its business. */
static bool guest_counts(const struct facts *f, const struct guest_memory *g)
{
	if (!opt.user)
		return true;
	for (int i = 0; f->procs_ok && i < f->procs.n; i++)
		if (f->procs.p[i].pid == g->p.pid)
			return true;
	return false;
}

/* The most memory out of reach first, then by pid. */
static int guest_cmp(const void *a, const void *b)
{
	const struct guest_memory *x = a, *y = b;
	long long dx = guest_unmergeable_kb(x, opt.user), dy = guest_unmergeable_kb(y, opt.user);

	if (dx != dy)
		return dx > dy ? -1 : 1;
	return (x->p.pid > y->p.pid) - (x->p.pid < y->p.pid);
}

/* A VM that never marked its private guest RAM mergeable: QEMU's
 * -machine mem-merge=off, libvirt's <nosharepages/>.  The kernel's marks
 * only: under samepaged the library takes the madvise, no "mg" is set. */
static long long opted_out_kb(const struct guest_memory *g)
{
	return opt.user ? 0 : guest_opted_out_kb(g);
}

static void guest_totals(struct facts *f)
{
	if (f->guests.n > 1)
		qsort(f->guests.g, (size_t)f->guests.n, sizeof(f->guests.g[0]), guest_cmp);
	for (int i = 0; i < f->guests.n; i++) {
		const struct guest_memory *g = &f->guests.g[i];
		long long kb = guest_unmergeable_kb(g, opt.user);

		if (!guest_counts(f, g))
			continue;
		f->guest_vms++;
		f->guest_in_kb += guest_mergeable_kb(g, opt.user);
		if (kb) {
			f->guest_out_vms++;
			f->guest_out_kb += kb;
		}
		f->guest_optout_vms += opted_out_kb(g) > 0;
	}
}

/* Appends "NAME (COMM, pid N): WHAT" to the evidence for the first four VMs
 * that describe() has something to say about (it returns false for the
 * others), then "; N more" for the rest of the n such VMs.  Returns the
 * length of the evidence. */
static size_t list_guests(const struct facts *f, struct finding *out, int n,
			  bool (*describe)(const struct guest_memory *g, char *buf, size_t len))
{
	int listed = 0;
	size_t at = 0;

	for (int i = 0; i < f->guests.n && at < sizeof(out->evidence); i++) {
		const struct guest_memory *g = &f->guests.g[i];
		char what[128];

		if (!guest_counts(f, g) || !describe(g, what, sizeof(what)))
			continue;
		if (listed == 4) {
			at += (size_t)snprintf(out->evidence + at, sizeof(out->evidence) - at,
					       "; %d more", n - listed);
			break;
		}
		at += (size_t)snprintf(out->evidence + at, sizeof(out->evidence) - at,
				       "%s%s (%s, pid %d): %s", listed++ ? "; " : "",
				       g->p.vm[0] ? g->p.vm : g->p.comm, g->p.comm, g->p.pid, what);
	}
	return at < sizeof(out->evidence) ? at : sizeof(out->evidence);
}

static bool describe_unmergeable(const struct guest_memory *g, char *buf, size_t len)
{
	char a[32];

	if (!guest_unmergeable_kb(g, opt.user))
		return false;
	buf[0] = '\0';
	if (g->shared_kb)
		snprintf(buf, len, "%s shared",
			 fmt_bytes(a, sizeof(a), (double)g->shared_kb * 1024));
	if (g->hugetlb_kb)
		snprintf(buf + strlen(buf), len - strlen(buf), "%s%s hugetlbfs", buf[0] ? ", " : "",
			 fmt_bytes(a, sizeof(a), (double)g->hugetlb_kb * 1024));
	if (opt.user && g->file_kb)
		snprintf(buf + strlen(buf), len - strlen(buf), "%s%s in a private file mapping",
			 buf[0] ? ", " : "", fmt_bytes(a, sizeof(a), (double)g->file_kb * 1024));
	return true;
}

/* VM monitors whose guest RAM is shared or hugetlbfs memory (guests.c):
 * out of every KSM's reach, whatever the knobs.  A warning when such
 * memory is more than the VM monitors' private memory, information
 * otherwise (a host may give hugepages to a few VMs on purpose). */
static enum severity guest_memory(const struct facts *f, struct finding *out)
{
	char a[32], b[32];
	size_t at;

	if (!f->guest_out_vms)
		return NONE;
	at = list_guests(f, out, f->guest_out_vms, describe_unmergeable);
	snprintf(out->evidence + at, sizeof(out->evidence) - at,
		 ". In all %s out of reach, against %s of private memory in these VM "
		 "monitors' large areas, which KSM can merge",
		 fmt_bytes(a, sizeof(a), (double)f->guest_out_kb * 1024),
		 fmt_bytes(b, sizeof(b), (double)f->guest_in_kb * 1024));
	SAY(summary, "%d of %d VMs keep guest memory that KSM cannot merge", f->guest_out_vms,
	    f->guest_vms);
	SAY(fix,
	    "%s merges private memory only. Shared guest RAM (share=on on QEMU's memory "
	    "backend, libvirt's <access mode='shared'/>, which vhost-user and virtiofs need): "
	    "drop it where nothing needs it. Hugetlbfs guest RAM (-mem-path on hugetlbfs, "
	    "libvirt's <hugepages/>): use transparent huge pages instead, which KSM splits "
	    "to merge, or leave these VMs out of KSM's account%s",
	    opt.user ? "libsamepage, like the kernel's KSM," : "KSM",
	    opt.user ? ". Guest RAM in a private file mapping (-mem-path on tmpfs, a "
		       "memory-backend-file with share=off): libsamepage merges anonymous memory "
		       "only; drop -mem-path, or merge these VMs with the kernel's KSM"
		     : "");
	return f->guest_out_kb > f->guest_in_kb ? WARN : INFO;
}

static bool describe_opted_out(const struct guest_memory *g, char *buf, size_t len)
{
	char a[32];

	if (!opted_out_kb(g))
		return false;
	snprintf(buf, len, "%s of private memory, none marked mergeable",
		 fmt_bytes(a, sizeof(a), (double)g->private_kb * 1024));
	return true;
}

/* VMs whose private guest RAM is not marked mergeable: opted out. */
static enum severity vm_opted_out(const struct facts *f, struct finding *out)
{
	if (!f->guest_optout_vms)
		return NONE;
	list_guests(f, out, f->guest_optout_vms, describe_opted_out);
	SAY(summary, "%d of %d VMs opted out of KSM", f->guest_optout_vms, f->guest_vms);
	SAY(fix,
	    "QEMU marks guest RAM mergeable unless -machine mem-merge=off (libvirt's "
	    "<memoryBacking><nosharepages/>): remove it where the VM may share pages, or start "
	    "the VM under ksmctl run (merge-any); keep it for VMs that must share no page with "
	    "others");
	return INFO;
}

static enum severity first_scan(const struct facts *f, struct finding *out)
{
	if (f->run != 1 || f->full_scans >= 2 || f->d.sharing > 0)
		return NONE;
	/* With nothing mergeable ksmd does not scan: waiting would never end
	 * (nothing-mergeable says what to do). */
	if (f->d.rmap_items == 0 && !(f->procs_ok && f->procs.n > 0))
		return NONE;
	if (f->advisor != 1 && f->pages_to_scan == 0)
		return NONE; /* no scan ever ends: scans-nothing says why */
	SAY(summary, "ksmd has not finished two full scans yet");
	SAY(evidence, "full_scans = %lld; a page merges on its second visit at the earliest",
	    f->full_scans);
	SAY(fix, "wait: %s wait --scans 2", opt.self);
	return INFO;
}

static enum severity mostly_volatile(const struct facts *f, struct finding *out)
{
	if (f->d.rmap_items < 100 || !(f->d.volatile_fraction > 0.5))
		return NONE;
	SAY(summary, "most tracked pages change too fast to merge");
	SAY(evidence, "pages_volatile %lld of %lld tracked (%.0f%%)", f->d.volatile_pages,
	    f->d.rmap_items, 100 * f->d.volatile_fraction);
	SAY(fix, "mark only long-lived, read-mostly memory mergeable (madvise ranges instead of "
		 "the whole process)");
	return WARN;
}

static enum severity wasted_effort(const struct facts *f, struct finding *out)
{
	if (f->d.unshared < 1000 || f->d.unshared <= 10 * f->d.sharing)
		return NONE;
	SAY(summary, "most scanned pages are unique: wasted effort");
	SAY(evidence, "pages_unshared %lld vs pages_sharing %lld", f->d.unshared, f->d.sharing);
	SAY(fix,
	    "opt in only workloads with duplicate memory (see %s top); a slower scan "
	    "(sleep_millisecs) costs less CPU",
	    opt.self);
	return WARN;
}

static enum severity capped(const struct facts *f, struct finding *out)
{
	bool at_cap = f->max_sharing > 1 && f->d.sharing_ratio >= (double)f->max_sharing - 1.5;

	if (f->chains <= 0 && !at_cap)
		return NONE;
	SAY(summary, "sharing is capped by max_page_sharing");
	SAY(evidence,
	    "max_page_sharing %lld, stable_node_chains %lld, pages_sharing/pages_shared %.1f",
	    f->max_sharing, f->chains, f->d.sharing_ratio);
	SAY(fix,
	    "raise it: %s set --unmerge max_page_sharing=N (longer rmap walks on "
	    "swap, compaction and migration)",
	    opt.self);
	return INFO;
}

static enum severity smart_skipping(const struct facts *f, struct finding *out)
{
	if (f->smart != 1 || f->scanned <= 0 || f->skipped * 2 < f->scanned)
		return NONE;
	SAY(summary, "smart scan skips most pages");
	SAY(evidence, "pages_skipped %lld, pages_scanned %lld (smart_scan = 1)", f->skipped,
	    f->scanned);
	SAY(fix,
	    "expected for pages that never merged; %s set smart_scan=0 re-checks them on "
	    "every scan, at more CPU",
	    opt.self);
	return INFO;
}

static enum severity advisor(const struct facts *f, struct finding *out)
{
	if (f->advisor != 1)
		return NONE;
	SAY(summary, "the scan-time advisor sets pages_to_scan");
	SAY(evidence,
	    "advisor_mode scan-time, pages_to_scan %lld, advisor_target_scan_time %lld s, "
	    "advisor_max_cpu %lld%%",
	    f->pages_to_scan, f->target, f->max_cpu);
	SAY(fix, "tune advisor_target_scan_time or advisor_max_cpu; pages_to_scan cannot be set "
		 "until advisor_mode=none");
	return INFO;
}

/* pages_to_scan 0, which the kernel takes: ksmd runs and scans nothing. */
static enum severity scans_nothing(const struct facts *f, struct finding *out)
{
	if (f->advisor == 1 || f->run != 1 || f->pages_to_scan != 0)
		return NONE;
	SAY(summary, "ksmd scans nothing: pages_to_scan is 0");
	SAY(evidence, "run = 1, pages_to_scan = 0: every batch is empty, no full scan ends and "
		      "no page merges");
	SAY(fix,
	    "%s set pages_to_scan=100 (the default), or let %s tune it: %s set "
	    "advisor_mode=scan-time",
	    opt.self, opt.user ? "samepaged" : "the kernel", opt.self);
	return ERROR;
}

static enum severity slow_scan(const struct facts *f, struct finding *out)
{
	if (f->advisor == 1 || !(f->d.full_scan_seconds > 600))
		return NONE;
	SAY(summary, "a full scan takes a long time: merging is slow");
	SAY(evidence, "%lld tracked pages at %.0f pages/s: about %.0f s per full scan",
	    f->d.scan_pages, f->d.scan_rate, f->d.full_scan_seconds);
	SAY(fix,
	    "raise pages_to_scan or lower sleep_millisecs, or let %s tune it: "
	    "%s set advisor_mode=scan-time",
	    opt.user ? "samepaged" : "the kernel", opt.self);
	return WARN;
}

static enum severity negative_profit(const struct facts *f, struct finding *out)
{
	if (!f->d.has_profit || f->d.general_profit >= 0 || f->d.rmap_items == 0)
		return NONE;
	SAY(summary, "KSM costs more metadata than it saves");
	SAY(evidence, "general_profit %lld bytes", f->d.general_profit);
	SAY(fix, "opt out processes with negative profit (%s top)", opt.self);
	return WARN;
}

/* The process with the highest score above 0, or NULL. */
static const struct ksm_process *worst_process(const struct facts *f,
					       long long (*score)(const struct ksm_process *))
{
	const struct ksm_process *worst = NULL;
	for (int i = 0; f->procs_ok && i < f->procs.n; i++) {
		const struct ksm_process *p = &f->procs.p[i];
		if (score(p) > 0 && (!worst || score(p) > score(worst)))
			worst = p;
	}
	return worst;
}

/* A process not scanned yet (a client of samepaged at run = 0, or just
 * started) has only its metadata to show: no loss to report yet. */
static long long loss(const struct ksm_process *p)
{
	if (p->full_scans == 0)
		return 0;
	return p->profit != LLONG_MIN && p->profit < 0 ? -p->profit : 0;
}

/* The kernel's rule: a process whose profit is negative should drop its
 * madvise, once it was scanned. */
static enum severity process_loses(const struct facts *f, struct finding *out)
{
	const struct ksm_process *worst = worst_process(f, loss);
	char a[32];

	if (!worst)
		return NONE;
	SAY(summary, "a process loses memory to KSM");
	SAY(evidence, "%s (pid %d, %s): ksm_process_profit %s, %lld pages tracked, %lld merged",
	    worst->comm, worst->pid, worst->cgroup, fmt_bytes(a, sizeof(a), (double)worst->profit),
	    worst->rmap_items, worst->merging_pages);
	SAY(fix,
	    "stop marking its memory mergeable (drop %s%s run, or its madvise); "
	    "%s top lists every process's profit",
	    f->systemd >= 254 ? "MemoryKSM=yes, " : "", opt.self, opt.self);
	return INFO;
}

static long long budget_short(const struct ksm_process *p)
{
	return p->map_count_needed > p->max_map_count ? p->map_count_needed : 0;
}

/* Pages libsamepage keeps out of merging (samepaged's clients), which the
 * kernel's KSM would merge: by reason (lib/kept.def), with the process that
 * keeps most. */
static const char *const kept_name[KEPT_REASONS] = {
#define SAMEPAGE_KEPT(n, promises, why) #n,
#include "../lib/kept.def"
};
static const char *const kept_why[KEPT_REASONS] = {
#define SAMEPAGE_KEPT(n, promises, why) why,
#include "../lib/kept.def"
};

/* One process's pages kept out, by reason (0 for unknown). */
static void kept_by_reason(const struct ksm_process *p, long long r[KEPT_REASONS])
{
	for (int i = 0; i < KEPT_REASONS; i++)
		r[i] = p->kept[i] > 0 ? p->kept[i] : 0;
}

static long long kept(const struct ksm_process *p)
{
	long long r[KEPT_REASONS], sum = 0;
	kept_by_reason(p, r);
	for (int i = 0; i < KEPT_REASONS; i++)
		sum += r[i];
	return sum;
}

static enum severity kept_out(const struct facts *f, struct finding *out)
{
	const struct ksm_process *worst = worst_process(f, kept);
	long long t[KEPT_REASONS] = {0}, all = 0;
	int n = 0;
	char a[32];

	if (!worst)
		return NONE;
	for (int i = 0; i < f->procs.n; i++) {
		long long r[KEPT_REASONS];
		kept_by_reason(&f->procs.p[i], r);
		n += kept(&f->procs.p[i]) > 0;
		for (int k = 0; k < KEPT_REASONS; k++)
			t[k] += r[k], all += r[k];
	}
	long long m = t[KEPT_malloc];
	SAY(summary, "libsamepage keeps %s of its processes' memory out of merging",
	    fmt_bytes(a, sizeof(a), (double)all * (double)page_size()));
	size_t at =
	    (size_t)SAY(evidence, "%d process%s, at its last full scan:", n, n == 1 ? "" : "es");
	for (int k = 0; k < KEPT_REASONS && at < sizeof(out->evidence); k++)
		at += (size_t)snprintf(out->evidence + at, sizeof(out->evidence) - at,
				       "%s pages_kept_%s %lld (%s)", k ? "," : "", kept_name[k],
				       t[k], kept_why[k]);
	if (at < sizeof(out->evidence))
		snprintf(out->evidence + at, sizeof(out->evidence) - at,
			 "; most in %s (pid %d, domain %s): %lld pages", worst->comm, worst->pid,
			 worst->domain, kept(worst));
	SAY(fix,
	    "none needed: merging these pages could lose the program's writes or break what it "
	    "asked of them (samepage(3), merge-any); the kernel's KSM would merge them. Memory the "
	    "program marks MADV_MERGEABLE itself merges wherever it is%s",
	    m > 0 ? ". For malloc's heap, run the program with "
		    "GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072 (ksmctl --user run -- env "
		    "GLIBC_TUNABLES=... PROGRAM) and glibc maps every block of 128 KiB or more by "
		    "itself, which merges (without it, the threshold rises to the largest block "
		    "freed, up to 32 MiB, and such blocks go to the heap); blocks allocated and "
		    "freed often then cost a system call each"
		  : "");
	return INFO;
}

/* libsamepage's mapping budget refused merges (samepaged's clients). */
static enum severity map_budget(const struct facts *f, struct finding *out)
{
	const struct ksm_process *worst = worst_process(f, budget_short);
	char a[32];

	if (!worst)
		return NONE;
	long long more = worst->map_count_needed - worst->map_count;
	SAY(summary, "the mapping budget stops merges");
	SAY(evidence,
	    "%s (pid %d, domain %s): %lld merges refused so far, %lld of vm.max_map_count %lld "
	    "mappings used; every merge of its last full scan needs vm.max_map_count %lld",
	    worst->comm, worst->pid, worst->domain, worst->skipped_map_budget, worst->map_count,
	    worst->max_map_count, worst->map_count_needed);
	SAY(fix,
	    "sysctl -w vm.max_map_count=%lld (persist it in /etc/sysctl.d/); the %lld more "
	    "mappings cost the kernel about %s of slab",
	    worst->map_count_needed, more > 0 ? more : 0,
	    fmt_bytes(a, sizeof(a), (double)(more > 0 ? more : 0) * 240));
	return WARN;
}

static enum severity pool_room(const struct facts *f, struct finding *out)
{
	char a[32];

	if (f->pool_refused <= 0)
		return NONE;
	SAY(summary, "samepaged stops new KSM pages: no room for its pool");
	SAY(evidence,
	    "pool_pages_refused %lld: samepaged writes the pool, %lld pages (%s), and its "
	    "memory cgroup was within 4 MiB of its limit, or the tmpfs of its state directory "
	    "had less than 64 MiB or 1%% free (its log says which)",
	    f->pool_refused, f->pool_pages,
	    fmt_bytes(a, sizeof(a), (double)f->pool_pages * (double)page_size()));
	SAY(fix, "raise MemoryMax= of samepaged.service (systemctl [--user] edit "
		 "samepaged.service) above the pool's size, or give its state directory a larger "
		 "tmpfs (--state-dir); see samepaged(8), Memory accounting and --state-dir");
	return WARN;
}

static enum severity thp(const struct facts *f, struct finding *out)
{
	if (strcmp(f->thp, "always"))
		return NONE;
	SAY(summary, "transparent huge pages are always on");
	SAY(evidence, "transparent_hugepage/enabled = always");
	SAY(fix, "KSM merges a huge page only after splitting it, and the split needs a match "
		 "first; set THP to madvise, or MADV_NOHUGEPAGE the mergeable memory");
	return INFO;
}

static enum severity numa(const struct facts *f, struct finding *out)
{
	if (f->numa_nodes < 2 || f->across_nodes != 0)
		return NONE;
	SAY(summary, "pages merge only within a NUMA node");
	SAY(evidence, "%d NUMA nodes, merge_across_nodes = 0", f->numa_nodes);
	SAY(fix,
	    "%s set --unmerge merge_across_nodes=1 merges more, at the cost of remote "
	    "accesses",
	    opt.self);
	return INFO;
}

/* ksmctl tune writes the same knobs at each decision: set and apply last
 * until then. */
static enum severity tuner_running(const struct facts *f, struct finding *out)
{
	if (!f->tuner)
		return NONE;
	SAY(summary, "ksmctl tune drives run, pages_to_scan and sleep_millisecs");
	SAY(evidence,
	    "pid %d is ksmctl tune; what ksmctl set or apply writes to those knobs lasts until "
	    "its next decision",
	    f->tuner);
	SAY(fix, "give tune its limits instead (KSMCTL_TUNE_ARGS in /etc/default/ksm-tune: "
		 "--max-cpu, --available, --always; then systemctl reload-or-restart ksm-tune), "
		 "or stop it to set them by hand: systemctl disable --now ksm-tune.service");
	return INFO;
}

static const struct {
	const char *id;
	check_fn fn;
} checks[] = {
    {"no-ksm", no_ksm},
    {"ksmtuned", ksmtuned_running},
    {"tuner", tuner_running},
    {"not-running", not_running},
    {"read-only", read_only},
    {"nothing-mergeable", nothing_mergeable},
    {"guest-memory", guest_memory},
    {"vm-opted-out", vm_opted_out},
    {"first-scan", first_scan},
    {"mostly-volatile", mostly_volatile},
    {"wasted-effort", wasted_effort},
    {"negative-profit", negative_profit},
    {"scans-nothing", scans_nothing},
    {"slow-scan", slow_scan},
    {"process-loses", process_loses},
    {"map-budget", map_budget},
    {"kept-out", kept_out},
    {"pool-room", pool_room},
    {"capped", capped},
    {"smart-scan", smart_skipping},
    {"advisor", advisor},
    {"thp", thp},
    {"numa", numa},
};

static void gather(struct facts *f)
{
	memset(f, 0, sizeof(*f));
	host_release(f->release, sizeof(f->release));
	f->kconfig = host_kconfig_ksm(f->kconfig_src, sizeof(f->kconfig_src));
	f->absent = opt.be->available(opt.be);
	f->ksm = f->absent == 0;
	if (!f->ksm)
		return;
	ksm_derive(&f->d);
	f->writable = opt.be->writable(opt.be, "run");
	f->run = knob_or("run", -1);
	f->full_scans = knob_or("full_scans", 0);
	f->max_sharing = knob_or("max_page_sharing", 0);
	f->chains = knob_or("stable_node_chains", 0);
	f->skipped = knob_or("pages_skipped", 0);
	f->scanned = knob_or("pages_scanned", 0);
	f->smart = knob_or("smart_scan", 0);
	f->advisor = knob_or("advisor_mode", 0);
	f->pages_to_scan = knob_or("pages_to_scan", -1);
	f->target = knob_or("advisor_target_scan_time", 0);
	f->max_cpu = knob_or("advisor_max_cpu", 0);
	f->across_nodes = knob_or("merge_across_nodes", 1);
	f->pool_refused = knob_or("pool_pages_refused", 0);
	f->pool_pages = knob_or("pool_pages", 0);
	f->numa_nodes = host_numa_nodes();
	f->ksmtuned = opt.user ? 0 : tune_ksmtuned_pid(); /* it drives the kernel's only */
	f->tuner = tune_daemon_pid();
	f->systemd = host_systemd_version();
	if (host_thp(f->thp, sizeof(f->thp)))
		f->thp[0] = '\0';
	f->procs_ok = proc_list_collect(&f->procs) == 0 && f->procs.accounted;
	if (guest_list_collect(opt.proc_root, &f->guests) == 0)
		guest_totals(f);
}

int cmd_doctor(int argc, char **argv)
{
	struct facts f;
	struct json j;
	bool json = false;
	int c, worst = NONE, n = 0;

	if ((c = verb_json_only(argc, argv, usage_doctor, &json)))
		return c;
	gather(&f);
	if (json) {
		json_init(&j, stdout);
		json_object_begin(&j, NULL);
		json_string(&j, "kernel", f.release[0] ? f.release : NULL); /* null: unknown */
		json_array_begin(&j, "findings");
	} else {
		printf("KSM doctor, Linux %s\n", f.release[0] ? f.release : "unknown");
	}
	for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
		struct finding out = {.id = checks[i].id};
		enum severity s = checks[i].fn(&f, &out);

		if (s == NONE)
			continue;
		n++;
		worst = (int)s > worst ? (int)s : worst;
		if (json) {
			json_object_begin(&j, NULL);
			json_string(&j, "id", out.id);
			json_string(&j, "severity", severity_name[s]);
			json_string(&j, "summary", out.summary);
			json_string(&j, "evidence", out.evidence);
			json_string(&j, "fix", out.fix);
			json_object_end(&j);
		} else {
			printf("\n[%s] %s (%s)\n  evidence: %s\n  fix: %s\n", severity_name[s],
			       out.summary, out.id, out.evidence, out.fix);
		}
		if (!f.ksm)
			break; /* nothing else can be checked */
	}
	if (json) {
		json_array_end(&j);
		json_bool(&j, "ok", worst < WARN);
		json_object_end(&j);
	} else if (worst < WARN) {
		char a[32];
		printf("\nNo problems found%s: KSM saves %s.\n",
		       n ? " (the findings are for information)" : "",
		       fmt_bytes(a, sizeof(a), f.d.saved_bytes));
	}
	proc_list_free(&f.procs);
	guest_list_free(&f.guests);
	return worst >= WARN ? KSMCTL_NO : KSMCTL_OK;
}
