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
	char path[PATH_MAX];
	struct utsname u;

	/* proc/sys/kernel/osrelease is what a recorded tree carries. */
	snprintf(path, sizeof(path), "%s/sys/kernel/osrelease", opt.proc_root);
	if (read_text(path, buf, len) == 0)
		return 0;
	if (!opt.live || uname(&u))
		return -ENOENT;
	snprintf(buf, len, "%s", u.release);
	return 0;
}

long long host_meminfo_kb(const char *key)
{
	char path[PATH_MAX], text[8192];
	size_t klen = strlen(key);

	snprintf(path, sizeof(path), "%s/meminfo", opt.proc_root);
	if (read_text(path, text, sizeof(text)))
		return -1;
	for (char *line = text; line && *line;
	     line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
		if (strncmp(line, key, klen) == 0 && line[klen] == ':')
			return strtoll(line + klen + 1, NULL, 10);
	return -1;
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

/* Decompresses config.gz with gzip(1) through a pipe, without a shell. */
static int config_gz_says(const char *path)
{
	int fds[2], status, ret;
	pid_t pid;
	FILE *f;

	if (access(path, R_OK) || pipe(fds))
		return -1;
	pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execlp("gzip", "gzip", "-dc", path, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	f = fdopen(fds[0], "r");
	ret = f ? config_says(f) : -1;
	if (f)
		fclose(f);
	else
		close(fds[0]);
	waitpid(pid, &status, 0);
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

static int find_ksmd(void)
{
	char path[PATH_MAX], comm[64];
	DIR *d = opendir(opt.proc_root);
	struct dirent *e;
	int pid = -ENOENT;

	if (!d)
		return -errno;
	/* ksmd is a kernel thread started early: it has a small pid. */
	while ((e = readdir(d))) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		snprintf(path, sizeof(path), "%s/%s/comm", opt.proc_root, e->d_name);
		if (read_text(path, comm, sizeof(comm)) == 0 && strcmp(comm, "ksmd") == 0) {
			pid = atoi(e->d_name);
			break;
		}
	}
	closedir(d);
	return pid;
}

int host_ksmd_cpu(double *cpu_s, double *alive_s)
{
	char path[PATH_MAX], text[1024];
	unsigned long long f[23] = {0};
	double hz = (double)sysconf(_SC_CLK_TCK), uptime;
	int pid = find_ksmd(), err;
	char *p;

	if (pid < 0)
		return pid;
	snprintf(path, sizeof(path), "%s/%d/stat", opt.proc_root, pid);
	if ((err = read_text(path, text, sizeof(text))))
		return err;
	/* Fields count from 1; field 3 follows the ")" that ends comm. */
	if (!(p = strrchr(text, ')')))
		return -EINVAL;
	p = strtok(p + 1, " ");
	for (int i = 3; i <= 22 && p; i++, p = strtok(NULL, " "))
		f[i] = strtoull(p, NULL, 10);
	snprintf(path, sizeof(path), "%s/uptime", opt.proc_root);
	if ((err = read_text(path, text, sizeof(text))))
		return err;
	uptime = strtod(text, NULL);
	*cpu_s = (double)(f[14] + f[15]) / hz;
	*alive_s = uptime - (double)f[22] / hz;
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
	if ((err = read_text(path, text, sizeof(text))))
		return err;
	knob_selected(text, buf, len);
	return 0;
}
