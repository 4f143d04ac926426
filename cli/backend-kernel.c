// SPDX-License-Identifier: MIT
/*
 * backend-kernel.c - the kernel's KSM as a ksm_backend.
 *
 * Knobs and counters are the files of SYS/kernel/mm/ksm, found by listing
 * the directory, so the same code reads a 2.6.32 layout (nine files) and a
 * 6.18 one (twenty-four).  Processes are PROC/PID, whose KSM files came one
 * by one (ksm_merging_pages 5.19, ksm_stat 6.1 and later fields, the smaps
 * "KSM:" line 6.6); whatever is missing stays -1.
 */
#include "backend.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "util.h"

struct kernel_priv {
	char ksm_dir[PATH_MAX];
	char proc[PATH_MAX];
};

static const struct kernel_priv *priv(const struct ksm_backend *be)
{
	return be->priv;
}

/* Builds DIR/NAME, refusing names that could leave the directory. */
static int knob_path(const struct ksm_backend *be, const char *name, char *path, size_t len)
{
	if (!*name || strchr(name, '/') || name[0] == '.')
		return -ENOENT;
	if ((size_t)snprintf(path, len, "%s/%s", priv(be)->ksm_dir, name) >= len)
		return -ENAMETOOLONG;
	return 0;
}

static int kernel_available(const struct ksm_backend *be)
{
	return access(priv(be)->ksm_dir, F_OK) ? -errno : 0;
}

static int kernel_list(const struct ksm_backend *be, ksm_name_fn fn, void *arg)
{
	DIR *d = opendir(priv(be)->ksm_dir);
	struct dirent *e;
	int ret = 0;

	if (!d)
		return -errno;
	while (!ret && (e = readdir(d)))
		if (e->d_name[0] != '.')
			ret = fn(e->d_name, arg);
	closedir(d);
	return ret;
}

static int kernel_read(const struct ksm_backend *be, const char *name, char *buf, size_t len)
{
	char path[PATH_MAX];
	int err = knob_path(be, name, path, sizeof(path));

	return err ? err : procfs_read(path, buf, len);
}

static int kernel_write(const struct ksm_backend *be, const char *name, const char *value)
{
	char path[PATH_MAX], line[128];
	int err = knob_path(be, name, path, sizeof(path));
	int n = snprintf(line, sizeof(line), "%s\n", value);
	ssize_t w;

	if (err)
		return err;
	if (n < 0 || (size_t)n >= sizeof(line))
		return -EINVAL;
	/* O_TRUNC as echo's ">" does; sysfs ignores it, a recorded tree needs it. */
	int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	w = write(fd, line, (size_t)n);
	err = w < 0 ? -errno : 0;
	if (close(fd) && !err)
		err = -errno;
	return err;
}

static int kernel_writable(const struct ksm_backend *be, const char *name)
{
	char path[PATH_MAX];
	struct statvfs st;
	int err = knob_path(be, name, path, sizeof(path));

	if (err)
		return err;
	/* A container's /sys is often mounted read-only: say so, not EACCES. */
	if (statvfs(path, &st) == 0 && (st.f_flag & ST_RDONLY))
		return -EROFS;
	return access(path, W_OK) ? -errno : 0;
}

/* ksm_stat's "ksm_rmap_items 12" and "ksm_merge_any: yes" lines. */
static void parse_ksm_stat(const char *text, struct ksm_process *p)
{
	static const struct {
		const char *key;
		size_t off;
		bool yesno;
	} fields[] = {
	    {"ksm_rmap_items", offsetof(struct ksm_process, rmap_items), false},
	    {"ksm_zero_pages", offsetof(struct ksm_process, zero_pages), false},
	    {"ksm_merging_pages", offsetof(struct ksm_process, merging_pages), false},
	    {"ksm_process_profit", offsetof(struct ksm_process, profit), false},
	    {"ksm_merge_any", offsetof(struct ksm_process, merge_any), true},
	    {"ksm_mergeable", offsetof(struct ksm_process, mergeable), true},
	};

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		const char *val = procfs_find_key(text, fields[i].key);
		char *dst = (char *)p + fields[i].off;

		if (!val)
			continue;
		if (fields[i].yesno)
			*(int *)dst = strncmp(val, "yes", 3) == 0;
		else
			*(long long *)dst = strtoll(val, NULL, 10);
	}
}

void ksm_process_init(struct ksm_process *p, int pid)
{
	memset(p, 0, sizeof(*p));
	p->pid = pid;
	p->rmap_items = p->zero_pages = p->merging_pages = -1;
	p->profit = LLONG_MIN;
	p->merge_any = p->mergeable = -1;
	p->ksm_kb = p->rss_kb = -1;
	p->map_count = p->max_map_count = p->map_count_needed = p->skipped_map_budget = -1;
	for (int k = 0; k < KEPT_REASONS; k++)
		p->kept[k] = -1;
	p->full_scans = -1;
}

void ksm_process_read_cgroup(const char *proc_root, struct ksm_process *p)
{
	char path[PATH_MAX], raw[4096];

	if (procfs_cgroup(procfs_path(path, sizeof(path), proc_root, p->pid, "cgroup"), raw,
			  sizeof(raw)) == 0)
		procfs_escape(raw, p->cgroup, sizeof(p->cgroup));
}

/* The guest name of one -name argument, parsed as QEMU's QemuOpts do:
 * items separated by single commas (",," is a comma in a value), the first
 * one without "=" the implied guest=, or guest=NAME anywhere
 * ("process=qemu-ci,guest=ci").  False if it names no guest. */
static bool qemu_guest(const char *v, char *buf, size_t blen)
{
	bool found = false;

	for (bool first = true; *v; first = false) {
		size_t len = strcspn(v, "=,"), o = 0;
		bool guest = len && v[len] != '=' && first; /* NAME,... */

		if (!guest) {
			guest = len == 5 && strncmp(v, "guest", 5) == 0 && v[len] == '=';
			v += len;
			if (*v == ',') { /* a flag, no value */
				v++;
				continue;
			}
			v += *v == '=';
		}
		for (; *v; v++) {
			if (*v == ',' && v[1] != ',')
				break;
			v += *v == ',';
			if (guest && o + 1 < blen)
				buf[o++] = *v;
		}
		if (guest)
			buf[o] = '\0', found = o > 0;
		v += *v == ',';
	}
	return found;
}

/* QEMU's -name (or --name: QEMU takes every option with two dashes too):
 * the guest name of the last one that gives one, as QEMU merges repeated
 * -name options.  False if the command line has none, or is not QEMU's
 * (qemu-system-x86_64, qemu-kvm). */
static bool qemu_name(const char *cmd, int len, char *buf, size_t blen)
{
	const char *prog = strrchr(cmd, '/') ? strrchr(cmd, '/') + 1 : cmd;
	bool found = false;

	if (strncmp(prog, "qemu", 4))
		return false; /* another program's "-name" is not a VM's */
	for (const char *a = cmd + strlen(cmd) + 1; a < cmd + len; a += strlen(a) + 1) {
		const char *v = a + strlen(a) + 1;
		char one[256];

		if ((strcmp(a, "-name") && strcmp(a, "--name")) || v >= cmd + len)
			continue;
		if (qemu_guest(v, one, sizeof(one)))
			found = true, snprintf(buf, blen, "%s", one);
		a = v; /* the value is no option */
	}
	return found;
}

/* The NAME of libvirt's machine scope "machine-qemu\x2d1\x2dNAME.scope"
 * (older libvirt: "machine-qemu\x2dNAME.scope"), systemd's \xHH undone. */
static bool machine_scope_name(const char *cgroup, char *buf, size_t blen)
{
	const char *s = strstr(cgroup, "/machine-");
	size_t o = 0, n;

	if (!s)
		return false;
	s += strlen("/machine-");
	n = strcspn(s, "/");
	if (n < 6 || strncmp(s + n - 6, ".scope", 6))
		return false;
	n -= 6;
	for (size_t i = 0; i < n && o + 1 < blen; i++) {
		unsigned v;
		if (s[i] == '\\' && s[i + 1] == 'x' && sscanf(s + i + 2, "%2x", &v) == 1 &&
		    i + 4 <= n)
			buf[o++] = (char)v, i += 3;
		else
			buf[o++] = s[i];
	}
	buf[o] = '\0';
	/* "qemu-1-web": the driver, the machine id, then the name.  Only
	 * QEMU's: another machine's scope (systemd-nspawn's
	 * machine-my\x2dcontainer.scope, libvirt's LXC) is no VM. */
	if (strncmp(buf, "qemu-", 5))
		return false;
	char *name = buf + 5;
	if (*name >= '0' && *name <= '9' && name[strspn(name, "0123456789")] == '-')
		name += strspn(name, "0123456789") + 1;
	memmove(buf, name, strlen(name) + 1);
	return *buf != '\0';
}

void ksm_process_read_vm(const char *proc_root, struct ksm_process *p)
{
	char path[PATH_MAX], cmd[8192], name[256];
	int n = procfs_cmdline(procfs_path(path, sizeof(path), proc_root, p->pid, "cmdline"), cmd,
			       sizeof(cmd));

	if ((n > 0 && qemu_name(cmd, n, name, sizeof(name))) ||
	    machine_scope_name(p->cgroup, name, sizeof(name)))
		procfs_escape(name, p->vm, sizeof(p->vm));
}

static void read_process(const char *proc, int pid, struct ksm_process *p)
{
	char path[PATH_MAX], text[8192];

	ksm_process_init(p, pid);
	if (procfs_comm(procfs_path(path, sizeof(path), proc, pid, "comm"), text, sizeof(text)) ==
	    0)
		procfs_escape(text, p->comm, sizeof(p->comm));
	read_ll(procfs_path(path, sizeof(path), proc, pid, "ksm_merging_pages"), &p->merging_pages);
	if (procfs_read(procfs_path(path, sizeof(path), proc, pid, "ksm_stat"), text,
			sizeof(text)) == 0)
		parse_ksm_stat(text, p);
	/* The "KSM:" and "Rss:" lines of smaps_rollup, in kB: only where
	 * ksm_merging_pages (5.19) is missing.  smaps_rollup walks every page
	 * table of the process under its mmap lock, some 4 ms per GiB
	 * resident: for 50 VMs of 32 GiB, seconds of CPU at every status
	 * --prometheus (every 30 s under ksm-prometheus.timer), top or doctor. */
	procfs_path(path, sizeof(path), proc, pid, "smaps_rollup");
	if (p->merging_pages < 0 && procfs_read(path, text, sizeof(text)) == 0) {
		const char *v;

		if ((v = procfs_find_key(text, "KSM")))
			p->ksm_kb = strtoll(v, NULL, 10);
		if ((v = procfs_find_key(text, "Rss")))
			p->rss_kb = strtoll(v, NULL, 10);
	}
	ksm_process_read_cgroup(proc, p);
	ksm_process_read_vm(proc, p);
}

static int kernel_for_each_process(const struct ksm_backend *be, ksm_process_fn fn, void *arg)
{
	/* A sorted list first: the output is stable, and the (slow) per-process
	 * reads do not disturb a readdir of /proc. */
	int *pids, n = procfs_pids(priv(be)->proc, &pids), ret = 0;

	if (n < 0)
		return n;
	for (int i = 0; !ret && i < n; i++) {
		struct ksm_process p;

		read_process(priv(be)->proc, pids[i], &p);
		ret = fn(&p, arg);
	}
	free(pids);
	return ret;
}

const struct ksm_backend *backend_kernel(const char *sys_root, const char *proc_root)
{
	static struct kernel_priv kp;
	static struct ksm_backend be = {
	    .name = "kernel",
	    .who = "the kernel",
	    .available = kernel_available,
	    .list = kernel_list,
	    .read = kernel_read,
	    .write = kernel_write,
	    .writable = kernel_writable,
	    .for_each_process = kernel_for_each_process,
	    .priv = &kp,
	};

	snprintf(kp.ksm_dir, sizeof(kp.ksm_dir), "%s/kernel/mm/ksm", sys_root);
	snprintf(kp.proc, sizeof(kp.proc), "%s", proc_root);
	be.where = kp.ksm_dir;
	return &be;
}
