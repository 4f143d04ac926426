// SPDX-License-Identifier: MIT
/*
 * tune-read.c - what `ksmctl tune` reads before each decision: memory
 * (PROC/meminfo, PROC/pressure/memory), the processes that KSM concerns
 * (their VmRSS, from PROC/PID/status, cheap to read even for a large
 * guest), the scanner's CPU time, and the knobs and counters through the
 * back-end.  Every path comes from the global roots, so a recorded tree
 * is read as the machine it was recorded on; its clock is PROC/uptime.
 * Between decisions, while idle, the daemon reads AnonPages alone
 * (tune_read_mem(): one file, no walk of PROC) every second, and
 * MemAvailable while stopped.
 *
 * The scanner is ksmd for the kernel; for samepaged (--user) it is the
 * "samepage-ksmd" thread of every client, whose CPU times are summed.
 */
#include "ksmctl.h"
#include "tune.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* "some avg10=1.23 avg60=..." of PROC/pressure/memory, or NAN where there
 * is none (a kernel built without PSI, or booted with psi=0) or it is no percentage. */
static double psi_some10(void)
{
	char path[PATH_MAX], text[512], *end;
	const char *v;

	snprintf(path, sizeof(path), "%s/pressure/memory", opt.proc_root);
	if (procfs_read(path, text, sizeof(text)) || strncmp(text, "some ", 5) ||
	    !(v = strstr(text, "avg10=")))
		return NAN;
	double pct = strtod(v + 6, &end);
	if (end == v + 6 || (*end && *end != ' ' && *end != '\n') || !(pct >= 0 && pct <= 100))
		return NAN;
	return pct;
}

static long long meminfo_field(const char *text, const char *key)
{
	const char *v = procfs_find_key(text, key);

	return v ? strtoll(v, NULL, 10) : -1;
}

static int read_memory(struct tune_reading *r)
{
	char path[PATH_MAX], text[8192];
	int err;

	snprintf(path, sizeof(path), "%s/uptime", opt.proc_root);
	if ((err = procfs_read(path, text, sizeof(text))))
		return err;
	r->t = strtod(text, NULL);
	snprintf(path, sizeof(path), "%s/meminfo", opt.proc_root);
	if ((err = procfs_read(path, text, sizeof(text))))
		return err;
	r->mem_total_kb = meminfo_field(text, "MemTotal");
	r->mem_free_kb = meminfo_field(text, "MemFree");
	r->buffers_kb = meminfo_field(text, "Buffers");
	r->cached_kb = meminfo_field(text, "Cached");
	r->mem_available_kb = meminfo_field(text, "MemAvailable");
	r->anon_kb = meminfo_field(text, "AnonPages");
	if (r->mem_total_kb <= 0)
		return -EINVAL;
	/* Before 3.14 there is no MemAvailable: ksmtuned's free is the nearest. */
	if (r->mem_available_kb < 0)
		r->mem_available_kb = r->mem_free_kb + (r->buffers_kb > 0 ? r->buffers_kb : 0) +
				      (r->cached_kb > 0 ? r->cached_kb : 0);
	r->psi_some10 = psi_some10();
	return 0;
}

/* Does PROC/PID/ksm_stat say the process has mergeable memory? */
static bool ksm_stat_mergeable(int pid)
{
	char path[PATH_MAX], text[1024];
	const char *v;

	if (procfs_read(procfs_path(path, sizeof(path), opt.proc_root, pid, "ksm_stat"), text,
			sizeof(text)))
		return false;
	return ((v = procfs_find_key(text, "ksm_mergeable")) && strncmp(v, "yes", 3) == 0) ||
	       ((v = procfs_find_key(text, "ksm_merge_any")) && strncmp(v, "yes", 3) == 0) ||
	       ((v = procfs_find_key(text, "ksm_rmap_items")) && atoll(v) > 0) ||
	       ((v = procfs_find_key(text, "ksm_merging_pages")) && atoll(v) > 0);
}

/* CPU seconds of the process's threads named name (PROC/PID/task/TID). */
static double threads_cpu(int pid, const char *name)
{
	char dir[PATH_MAX], path[PATH_MAX + 32], comm[64];
	struct procfs_stat st;
	int *tids, n;
	double s = 0;

	procfs_path(dir, sizeof(dir), opt.proc_root, pid, "task");
	if ((n = procfs_pids(dir, &tids)) < 0)
		return 0;
	for (int i = 0; i < n; i++)
		if (procfs_comm(procfs_path(path, sizeof(path), dir, tids[i], "comm"), comm,
				sizeof(comm)) == 0 &&
		    strcmp(comm, name) == 0 &&
		    procfs_stat(procfs_path(path, sizeof(path), dir, tids[i], "stat"), &st) == 0)
			s += (double)(st.utime + st.stime) / (double)sysconf(_SC_CLK_TCK);
	free(tids);
	return s;
}

/* One process: counted as QEMU (committed) and/or as mergeable. */
static void add_process(struct tune_reading *r, int pid, bool mergeable)
{
	char path[PATH_MAX], comm[64];
	long long rss =
	    procfs_number(procfs_path(path, sizeof(path), opt.proc_root, pid, "status"), "VmRSS");
	bool qemu;

	if (rss < 0 || procfs_comm(procfs_path(path, sizeof(path), opt.proc_root, pid, "comm"),
				   comm, sizeof(comm)))
		return; /* a kernel thread, or gone */
	qemu = tune_is_qemu(comm);
	if (qemu)
		r->committed_kb += rss;
	if (mergeable || qemu) { /* QEMU marks guest memory mergeable by default */
		r->mergeable_kb += rss;
		r->mergeable_procs++;
	}
}

static int user_client(const struct ksm_process *p, void *arg)
{
	struct tune_reading *r = arg;

	add_process(r, p->pid, true);
	r->ksmd_cpu_s += threads_cpu(p->pid, "samepage-ksmd");
	return 0;
}

static void read_processes(struct tune_reading *r)
{
	int *pids, n;
	double alive;

	r->committed_kb = r->mergeable_kb = 0;
	r->mergeable_procs = 0;
	if (opt.user) {
		r->ksmd_cpu_s = 0;
		if (opt.be->for_each_process(opt.be, user_client, r) < 0)
			r->ksmd_cpu_s = NAN;
		return;
	}
	if (host_ksmd_cpu(&r->ksmd_cpu_s, &alive))
		r->ksmd_cpu_s = NAN;
	if ((n = procfs_pids(opt.proc_root, &pids)) < 0) {
		r->committed_kb = r->mergeable_kb = -1;
		return;
	}
	for (int i = 0; i < n; i++)
		add_process(r, pids[i], ksm_stat_mergeable(pids[i]));
	free(pids);
}

int tune_read(struct tune_reading *r)
{
	static const struct {
		const char *name;
		size_t off;
	} files[] = {
	    {"run", offsetof(struct tune_reading, run)},
	    {"pages_to_scan", offsetof(struct tune_reading, pages_to_scan)},
	    {"sleep_millisecs", offsetof(struct tune_reading, sleep_ms)},
	    {"advisor_mode", offsetof(struct tune_reading, advisor_mode)},
	    {"full_scans", offsetof(struct tune_reading, full_scans)},
	    {"pages_sharing", offsetof(struct tune_reading, sharing)},
	    {"pages_shared", offsetof(struct tune_reading, shared)},
	    {"pages_unshared", offsetof(struct tune_reading, unshared)},
	    {"pages_volatile", offsetof(struct tune_reading, volatile_pages)},
	    {"ksm_zero_pages", offsetof(struct tune_reading, zero_pages)},
	    {"pages_scanned", offsetof(struct tune_reading, scanned)},
	};
	int err;

	memset(r, 0, sizeof(*r));
	if ((err = read_memory(r)))
		return err;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		*(long long *)((char *)r + files[i].off) = knob_or(files[i].name, -1);
	if (r->run < 0)
		return -ENOENT;
	read_processes(r);
	return 0;
}

void tune_read_mem(long long *anon_kb, long long *avail_kb, long long *total_kb)
{
	char path[PATH_MAX], text[8192];

	*anon_kb = *avail_kb = *total_kb = -1;
	snprintf(path, sizeof(path), "%s/meminfo", opt.proc_root);
	if (procfs_read(path, text, sizeof(text)))
		return;
	*anon_kb = meminfo_field(text, "AnonPages");
	*avail_kb = meminfo_field(text, "MemAvailable");
	*total_kb = meminfo_field(text, "MemTotal");
}

int tune_ksmtuned_pid(void)
{
	int pid = procfs_find_comm(opt.proc_root, "ksmtuned");

	return pid > 0 ? pid : 0;
}

/* Whether PATH and the root given to a ksmctl name the same directory. */
static bool same_root(const char *theirs, const char *ours)
{
	char a[PATH_MAX], b[PATH_MAX];

	if (!realpath(theirs, a) || !realpath(ours, b))
		return strcmp(theirs, ours) == 0;
	return strcmp(a, b) == 0;
}

int tune_daemon_pid(void)
{
	int *pids, n = procfs_pids("/proc", &pids), found = 0;

	for (int i = 0; i < n && !found; i++) {
		char path[64], cmd[4096];
		int len;

		if (pids[i] == (int)getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%d/cmdline", pids[i]);
		if ((len = procfs_cmdline(path, cmd, sizeof(cmd))) <= 0)
			continue;
		const char *a = cmd, *end = cmd + len, *prog = strrchr(cmd, '/');
		const char *sys = "/sys";
		bool user = false, verb = false, seen = false, daemon = true;

		if (strcmp(prog ? prog + 1 : cmd, "ksmctl"))
			continue;
		for (a += strlen(a) + 1; a < end && !seen; a += strlen(a) + 1) {
			const char *v = a + strlen(a) + 1;
			if (!strcmp(a, "--sysfs-root") && v < end)
				sys = v, a = v;
			else if (!strncmp(a, "--sysfs-root=", 13))
				sys = a + 13;
			else if ((!strcmp(a, "--proc-root") || !strcmp(a, "--boot-root")) &&
				 v < end)
				a = v;
			else if (!strcmp(a, "--user") || !strncmp(a, "--socket", 8))
				user = true, a = strcmp(a, "--socket") || v >= end ? a : v;
			else if (a[0] != '-') /* the verb: the first word not an option's */
				seen = true, verb = daemon = !strcmp(a, "tune");
		}
		for (; a < end && daemon; a += strlen(a) + 1)
			daemon = strcmp(a, "--once") && strcmp(a, "--dry-run") &&
				 strcmp(a, "--help") && strcmp(a, "-h");
		/* A relative root is the daemon's: below its working directory. */
		char theirs[PATH_MAX + 64];
		if (sys[0] != '/')
			snprintf(theirs, sizeof(theirs), "/proc/%d/cwd/%s", pids[i], sys);
		else
			snprintf(theirs, sizeof(theirs), "%s", sys);
		if (verb && daemon && user == opt.user && (user || same_root(theirs, opt.sys_root)))
			found = pids[i];
	}
	if (n > 0)
		free(pids);
	return found;
}
