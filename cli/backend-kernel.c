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

#include <ctype.h>
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

	return err ? err : read_text(path, buf, len);
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

/* "ksm_rmap_items 12" or "ksm_merge_any: yes": the value after the key. */
static void parse_ksm_stat(char *text, struct ksm_process *p)
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

	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		size_t klen = strcspn(line, " :");
		const char *val = line + klen + strspn(line + klen, " :");

		for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
			if (strlen(fields[i].key) != klen || strncmp(line, fields[i].key, klen))
				continue;
			char *dst = (char *)p + fields[i].off;
			if (fields[i].yesno)
				*(int *)dst = strncmp(val, "yes", 3) == 0;
			else
				*(long long *)dst = strtoll(val, NULL, 10);
		}
	}
}

/* The "KSM:" and "Rss:" lines of smaps_rollup, in kB. */
static void parse_smaps_rollup(const char *text, struct ksm_process *p)
{
	const char *s;

	if ((s = strstr(text, "\nKSM:")))
		p->ksm_kb = strtoll(s + 5, NULL, 10);
	if ((s = strstr(text, "\nRss:")))
		p->rss_kb = strtoll(s + 5, NULL, 10);
}

/* cgroup v2 is the "0::" line; on v1 the name=systemd line names the unit. */
static void parse_cgroup(const char *text, struct ksm_process *p)
{
	const char *s = strncmp(text, "0::", 3) == 0 ? text : strstr(text, "\n0::");

	if (!s && (s = strstr(text, "name=systemd:")))
		s += strlen("name=systemd:") - 3;
	if (!s)
		return;
	s += s[0] == '\n' ? 4 : 3;
	snprintf(p->cgroup, sizeof(p->cgroup), "%.*s", (int)strcspn(s, "\n"), s);
}

void ksm_process_init(struct ksm_process *p, int pid)
{
	memset(p, 0, sizeof(*p));
	p->pid = pid;
	p->rmap_items = p->zero_pages = p->merging_pages = -1;
	p->profit = LLONG_MIN;
	p->merge_any = p->mergeable = -1;
	p->ksm_kb = p->rss_kb = -1;
}

void ksm_process_read_cgroup(const char *proc_root, struct ksm_process *p)
{
	char path[PATH_MAX], text[8192];

	snprintf(path, sizeof(path), "%s/%d/cgroup", proc_root, p->pid);
	if (read_text(path, text, sizeof(text)) == 0)
		parse_cgroup(text, p);
}

static void read_process(const char *proc, int pid, struct ksm_process *p)
{
	char path[PATH_MAX], text[8192];

	ksm_process_init(p, pid);

	snprintf(path, sizeof(path), "%s/%d/comm", proc, pid);
	if (read_text(path, text, sizeof(text)) == 0)
		snprintf(p->comm, sizeof(p->comm), "%.63s", text);
	snprintf(path, sizeof(path), "%s/%d/ksm_merging_pages", proc, pid);
	read_ll(path, &p->merging_pages);
	snprintf(path, sizeof(path), "%s/%d/ksm_stat", proc, pid);
	if (read_text(path, text, sizeof(text)) == 0)
		parse_ksm_stat(text, p);
	snprintf(path, sizeof(path), "%s/%d/smaps_rollup", proc, pid);
	if (read_text(path, text + 1, sizeof(text) - 1) == 0) {
		text[0] = '\n'; /* so every key, the first too, follows a newline */
		parse_smaps_rollup(text, p);
	}
	ksm_process_read_cgroup(proc, p);
}

static int by_pid(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

static int kernel_for_each_process(const struct ksm_backend *be, ksm_process_fn fn, void *arg)
{
	DIR *d = opendir(priv(be)->proc);
	struct dirent *e;
	int *pids = NULL, n = 0, cap = 0, ret = 0;

	if (!d)
		return -errno;
	/* Collect first: a sorted walk makes the output stable and readdir
	 * of /proc is not disturbed by the (slow) per-process reads. */
	while ((e = readdir(d))) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		if (n == cap) {
			int *np = realloc(pids, sizeof(int) * (size_t)(cap = cap ? 2 * cap : 256));
			if (!np) {
				ret = -ENOMEM;
				break;
			}
			pids = np;
		}
		pids[n++] = atoi(e->d_name);
	}
	closedir(d);
	qsort(pids, (size_t)n, sizeof(int), by_pid);
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
