// SPDX-License-Identifier: MIT
/*
 * host.c - facts about the machine that are not KSM files but decide what
 * KSM can do: the kernel release and config, MemAvailable, ksmd's CPU time,
 * prctl support, NUMA nodes and THP.  All paths come from the global roots,
 * so a recorded tree answers as the machine it was recorded on would.
 */
#include "ksmctl.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PR_GET_MEMORY_MERGE
#define PR_GET_MEMORY_MERGE 68
#endif

long page_size(void)
{
	return sysconf(_SC_PAGESIZE);
}

int host_release(char *buf, size_t len)
{
	char path[PATH_MAX], rel[128];
	struct utsname u;

	/* proc/sys/kernel/osrelease is what a recorded tree carries; an
	 * empty one names no release.  buf is left as it was without one. */
	snprintf(path, sizeof(path), "%s/sys/kernel/osrelease", opt.proc_root);
	if (procfs_read(path, rel, sizeof(rel)) == 0 && rel[0]) {
		snprintf(buf, len, "%s", rel);
		return 0;
	}
	if (!opt.live || uname(&u))
		return -ENOENT;
	snprintf(buf, len, "%s", u.release);
	return 0;
}

long long host_meminfo_kb(const char *key)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/meminfo", opt.proc_root);
	return procfs_number(path, key);
}

/* Scans kernel config text for CONFIG_KSM: 1, 0, or -1 when not mentioned. */
static int config_says(FILE *f)
{
	char line[512];
	int ret = -1;

	while (fgets(line, sizeof(line), f)) {
		if (strcmp(line, "CONFIG_KSM=y\n") == 0)
			ret = 1;
		else if (strcmp(line, "# CONFIG_KSM is not set\n") == 0)
			ret = 0;
	}
	return ret;
}

/* Runs argv (found in PATH, no shell) with its stdout on the FILE returned,
 * or NULL; close with command_close(). */
static FILE *command_open(char *const argv[], pid_t *pid)
{
	int fds[2];
	FILE *f;

	if (pipe(fds))
		return NULL;
	*pid = fork();
	if (*pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return NULL;
	}
	if (*pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(fds[1], 1);
		if (null >= 0)
			dup2(null, 2);
		close(fds[0]);
		close(fds[1]);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(fds[1]);
	if (!(f = fdopen(fds[0], "r")))
		close(fds[0]);
	return f;
}

/* Closes f and reaps the command: its exit status, or -1. */
static int command_close(FILE *f, pid_t pid)
{
	int status;

	if (f)
		fclose(f);
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/* Decompresses config.gz with gzip(1) through a pipe, without a shell. */
static int config_gz_says(const char *path)
{
	char *argv[] = {"gzip", "-dc", (char *)path, NULL};
	pid_t pid;
	FILE *f;
	int ret;

	if (access(path, R_OK) || !(f = command_open(argv, &pid)))
		return -1;
	ret = config_says(f);
	command_close(f, pid);
	return ret;
}

int host_kconfig_ksm(char *src, size_t len)
{
	char rel[128], path[PATH_MAX];
	FILE *f;
	int ret;

	if (host_release(rel, sizeof(rel)) == 0) {
		snprintf(path, sizeof(path), "%s/config-%s", opt.boot_root, rel);
		if ((f = fopen(path, "r"))) {
			ret = config_says(f);
			fclose(f);
			snprintf(src, len, "%s", path);
			return ret;
		}
	}
	snprintf(path, sizeof(path), "%s/config.gz", opt.proc_root);
	ret = config_gz_says(path);
	snprintf(src, len, "%s", ret < 0 ? "no kernel config found" : path);
	return ret;
}

int host_ksmd_cpu(double *cpu_s, double *alive_s)
{
	char path[PATH_MAX], text[128];
	double hz = (double)sysconf(_SC_CLK_TCK);
	struct procfs_stat st;
	/* ksmd is a kernel thread started early: it has a small pid. */
	int pid = procfs_find_comm(opt.proc_root, "ksmd"), err;

	if (pid < 0)
		return pid;
	if ((err = procfs_stat(procfs_path(path, sizeof(path), opt.proc_root, pid, "stat"), &st)))
		return err;
	snprintf(path, sizeof(path), "%s/uptime", opt.proc_root);
	if ((err = procfs_read(path, text, sizeof(text))))
		return err;
	*cpu_s = (double)(st.utime + st.stime) / hz;
	*alive_s = strtod(text, NULL) - (double)st.starttime / hz;
	return 0;
}

int host_prctl_merge(const char *release, const char **how)
{
	if (opt.live) {
		*how = "probed with prctl(PR_GET_MEMORY_MERGE)";
		return prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0) >= 0;
	}
	*how = "inferred from the kernel version";
	return version_cmp(release, "6.4") >= 0 && knob_present("run");
}

int host_systemd_version(void)
{
	char path[PATH_MAX], comm[64], line[256] = "";
	char *argv[] = {"systemctl", "--version", NULL};
	pid_t pid;
	FILE *f;
	int v = 0;

	if (procfs_comm(procfs_path(path, sizeof(path), opt.proc_root, 1, "comm"), comm,
			sizeof(comm)) ||
	    strcmp(comm, "systemd"))
		return 0;
	if (!(f = command_open(argv, &pid)))
		return 0;
	/* "systemd 252 (252.36-1~deb12u1)" */
	if (fgets(line, sizeof(line), f) && strncmp(line, "systemd ", 8) == 0)
		v = atoi(line + 8);
	return command_close(f, pid) == 0 ? v : 0;
}

int host_numa_nodes(void)
{
	char path[PATH_MAX];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "%s/devices/system/node", opt.sys_root);
	if (!(d = opendir(path)))
		return 1;
	while ((e = readdir(d)))
		if (strncmp(e->d_name, "node", 4) == 0 && isdigit((unsigned char)e->d_name[4]))
			n++;
	closedir(d);
	return n ? n : 1;
}

int host_thp(char *buf, size_t len)
{
	char path[PATH_MAX], text[256];
	int err;

	snprintf(path, sizeof(path), "%s/kernel/mm/transparent_hugepage/enabled", opt.sys_root);
	if ((err = procfs_read(path, text, sizeof(text))))
		return err;
	knob_selected(text, buf, len);
	return 0;
}
