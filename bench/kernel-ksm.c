// SPDX-License-Identifier: MIT
/*
 * kernel-ksm.c - the benchmarks' care of the kernel's KSM (kernel-ksm.h).
 *
 * The kernel's KSM is one global state shared with anything else on the
 * machine, so the kernel side is careful: it takes the lock file
 * /tmp/samepage-kernel-ksm.lock (flock(2), the same lock the project's tests
 * and bench/run.sh take), waits until nobody else merges or registers
 * mergeable memory, saves every tunable and puts each back at exit, on
 * SIGINT/SIGTERM/SIGHUP and on failure, with run=2 first (the kernel
 * refuses max_page_sharing and merge_across_nodes changes while pages are
 * merged) and never leaves run=1 behind.
 */
#include "kernel-ksm.h"
#include "harness.h"
#include "procfs.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define KSM_DIR "/sys/kernel/mm/ksm/"
#define KSM_LOCK "/tmp/samepage-kernel-ksm.lock"

/* Every tunable of /sys/kernel/mm/ksm, in the order they are put back:
 * run=2 comes first (see restore_knobs), advisor_mode before pages_to_scan
 * (changing the mode resets pages_to_scan), run itself last. */
static const char *const knob_names[] = {
    "advisor_mode",
    "max_page_sharing",
    "merge_across_nodes",
    "use_zero_pages",
    "smart_scan",
    "stable_node_chains_prune_millisecs",
    "advisor_max_cpu",
    "advisor_min_pages_to_scan",
    "advisor_max_pages_to_scan",
    "advisor_target_scan_time",
    "sleep_millisecs",
    "pages_to_scan",
    "run",
};
#define NKNOBS (sizeof(knob_names) / sizeof(knob_names[0]))
static char saved_knob[NKNOBS][32];
static bool knob_present[NKNOBS];
static volatile sig_atomic_t knobs_saved;
static int lock_fd = -1;

/* Reads a sysfs value; advisor_mode's "[none] scan-time" reads "none".
 * Only read/open: safe in a signal handler. */
static int sysfs_read(const char *name, char *buf, size_t len)
{
	char path[128] = KSM_DIR;
	strncat(path, name, sizeof(path) - strlen(path) - 1);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = 0;
	char *nl = strchr(buf, '\n');
	if (nl)
		*nl = 0;
	char *l = strchr(buf, '['), *r = l ? strchr(l, ']') : NULL;
	if (l && r) {
		memmove(buf, l + 1, (size_t)(r - l - 1));
		buf[r - l - 1] = 0;
	}
	return 0;
}

int bench_write_file(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, value, strlen(value));
	int saved = errno;
	close(fd);
	errno = saved;
	return n == (ssize_t)strlen(value) ? 0 : -1;
}

static int sysfs_write(const char *name, const char *value)
{
	char path[128] = KSM_DIR;
	strncat(path, name, sizeof(path) - strlen(path) - 1);
	return bench_write_file(path, value);
}

long long kernel_ksm_number(const char *name)
{
	char buf[64];
	return sysfs_read(name, buf, sizeof(buf)) ? -1 : atoll(buf);
}

void kernel_ksm_write(const char *name, const char *value)
{
	if (sysfs_write(name, value)) {
		fprintf(stderr, "bench: writing %s to %s%s: %s\n", value, KSM_DIR, name,
			strerror(errno));
		exit(1);
	}
}

/* Puts every saved knob back (async-signal-safe: open/read/write only). */
static void restore_knobs(void)
{
	char cur[32];
	if (!knobs_saved)
		return;
	knobs_saved = 0;
	sysfs_write("run", "2"); /* unmerge ours: needed before max_page_sharing */
	for (size_t i = 0; i + 1 < NKNOBS; i++)
		if (knob_present[i] && !sysfs_read(knob_names[i], cur, sizeof(cur)) &&
		    strcmp(cur, saved_knob[i]))
			sysfs_write(knob_names[i], saved_knob[i]);
	sysfs_write("run", saved_knob[NKNOBS - 1]);
}

/* One sysctl a benchmark changed (bench_sysctl_set), put back with the
 * knobs: at exit and on SIGINT/SIGTERM/SIGHUP. */
static char sysctl_path[64], sysctl_saved[32];

static void restore_sysctl(void)
{
	if (sysctl_path[0] && bench_write_file(sysctl_path, sysctl_saved) == 0)
		sysctl_path[0] = 0;
}

static void on_signal(int sig)
{
	restore_knobs();
	restore_sysctl();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void catch_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

static void restore_sysctl_at_exit(void)
{
	restore_sysctl();
	if (sysctl_path[0])
		fprintf(stderr, "bench: could not put %s back to %s\n", sysctl_path, sysctl_saved);
}

void bench_sysctl_set(const char *path, const char *value)
{
	if (procfs_read(path, sysctl_saved, sizeof(sysctl_saved)))
		bench_die(path);
	snprintf(sysctl_path, sizeof(sysctl_path), "%s", path);
	atexit(restore_sysctl_at_exit);
	catch_signals();
	if (bench_write_file(path, value)) {
		fprintf(stderr, "bench: writing %s to %s: %s (root?)\n", value, path,
			strerror(errno));
		exit(1);
	}
}

/* Is anyone else using the kernel's KSM? */
static bool kernel_ksm_busy(char *why, size_t len)
{
	if (kernel_ksm_number("run") != 0) {
		snprintf(why, len, "run is not 0");
		return true;
	}
	if (kernel_ksm_number("pages_shared") > 0 || kernel_ksm_number("ksm_zero_pages") > 0) {
		snprintf(why, len, "pages are merged");
		return true;
	}
	int *pids, n = procfs_pids("/proc", &pids);
	bool busy = false;

	for (int i = 0; !busy && i < n; i++) {
		char path[64], text[2048];
		const char *v;

		if (pids[i] == getpid() ||
		    procfs_read(procfs_path(path, sizeof(path), "/proc", pids[i], "ksm_stat"), text,
				sizeof(text)))
			continue;
		busy = ((v = procfs_find_key(text, "ksm_mergeable")) && !strncmp(v, "yes", 3)) ||
		       ((v = procfs_find_key(text, "ksm_merge_any")) && !strncmp(v, "yes", 3)) ||
		       ((v = procfs_find_key(text, "ksm_merging_pages")) && atoll(v) > 0);
		if (busy)
			snprintf(why, len, "pid %d has mergeable memory", pids[i]);
	}
	free(pids);
	return busy;
}

void kernel_ksm_acquire(void)
{
	char why[128];
	if (!getenv("SAMEPAGE_KSM_LOCK_HELD")) {
		lock_fd = open(KSM_LOCK, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
		if (lock_fd < 0)
			bench_die(KSM_LOCK);
		if (flock(lock_fd, LOCK_EX | LOCK_NB)) {
			fprintf(stderr, "bench: waiting for %s\n", KSM_LOCK);
			if (flock(lock_fd, LOCK_EX))
				bench_die("flock");
		}
	}
	for (int i = 0; kernel_ksm_busy(why, sizeof(why)); i++) {
		if (i == 900) {
			fprintf(stderr, "bench: the kernel's KSM stayed in use (%s)\n", why);
			exit(1);
		}
		if (i % 30 == 0)
			fprintf(stderr, "bench: kernel KSM in use (%s), waiting\n", why);
		sleep_ms(1000);
	}
	for (size_t i = 0; i < NKNOBS; i++)
		knob_present[i] = !sysfs_read(knob_names[i], saved_knob[i], sizeof(saved_knob[i]));
	if (!knob_present[NKNOBS - 1]) {
		fprintf(stderr, "bench: no %s: the kernel has no KSM\n", KSM_DIR);
		exit(77);
	}
	knobs_saved = 1;
	atexit(restore_knobs);
	catch_signals();
}

/* After restore_knobs(): is every knob back?  (Someone else writing a
 * knob meanwhile would show here too: we hold the lock, they should not.) */
static bool knobs_restored(void)
{
	char cur[32];
	bool ok = true;
	for (size_t i = 0; i < NKNOBS; i++)
		if (knob_present[i] &&
		    (sysfs_read(knob_names[i], cur, sizeof(cur)) || strcmp(cur, saved_knob[i]))) {
			fprintf(stderr, "bench: %s is %s, was %s before\n", knob_names[i], cur,
				saved_knob[i]);
			ok = false;
		}
	return ok;
}

void kernel_ksm_release(void)
{
	restore_knobs();
	if (!knobs_restored())
		exit(1);
	if (lock_fd >= 0) {
		close(lock_fd);
		lock_fd = -1;
	}
}
