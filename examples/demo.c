// SPDX-License-Identifier: MIT
/*
 * demo.c - `make demo`: the seed blog post's scenario, end to end.
 *
 * Several guest processes ("VMs") boot from one image: a part every guest
 * has at the same offsets (kernel, libraries), zero pages, and data of its
 * own.  Merging is turned on the way the blog post does it (run = 1,
 * pages_to_scan = 20000, sleep_millisecs = 200), and a live line shows the
 * memory saved so far per guest and in total, measured from outside
 * (each guest's Pss in /proc/PID/smaps_rollup, and /proc/meminfo).
 *
 *  1. libsamepage across processes: the demo starts its own samepaged and
 *     every guest calls samepage_connect("guests");
 *  2. the kernel's KSM on the same guests (madvise MADV_MERGEABLE), when
 *     this user may drive /sys/kernel/mm/ksm and nobody else uses it; the
 *     knobs it touches are put back at the end, even on Ctrl-C;
 *  then the two side by side.
 *
 * Usage: demo [--guests N] [--mib M] [--samepaged PATH] [--no-kernel]
 *             [--pages-to-scan N] [--sleep-ms N] [--hold S] [--tsv]
 * --hold S keeps the guests S seconds once merged and reports what the
 * scanner costs then (% of one CPU), as a host pays it for as long as its
 * VMs run.
 * --tsv prints bench/run.sh's result lines (workload 7-multi) on standard
 * output and everything else on standard error; SAMEPAGE_KSM_LOCK_HELD=1
 * says the caller holds the kernel-KSM lock file already.
 */
#include <samepage.h>

#include "procfs.h" /* common/: the /proc reader of the tree's programs */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG 4096UL
#define MAX_GUESTS 64
#define KSM "/sys/kernel/mm/ksm/"
static const char *seed_pages_to_scan = "20000", *seed_sleep_ms = "200";
static unsigned guests = 4, mib = 256, hold;
static FILE *tsv;
static const char *samepaged = "samepaged";

struct guest {
	pid_t pid;
	int cmd, res;
};

struct outcome {
	double before_mib, after_mib, secs, cpu_s;
	double daemon_mib; /* samepaged's Pss at the end (its share of the pool) */
	double system_mib; /* saved system-wide: AnonPages + Shmem + SUnreclaim */
	long long scans;   /* full scans until converged (the domain's least) */
	long long shared, sharing;
	double hold_pct; /* scanner CPU while converged (--hold), % of one CPU */
	bool ran;
};

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* A "Key: N kB" line of a /proc file, 0 if missing. */
static long long kb_of(const char *path, const char *field)
{
	long long v = procfs_number(path, field);
	return v < 0 ? 0 : v;
}

static long long pss_kb(pid_t pid)
{
	char path[64];
	return kb_of(procfs_path(path, sizeof(path), "/proc", (int)pid, "smaps_rollup"), "Pss");
}

/* The memory merging changes, system-wide: anonymous pages, shared memory
 * (a pool), and unreclaimable slab (the kernel's rmap_items and stable
 * nodes, the mappings of a merge). */
static long long system_kb(void)
{
	return kb_of("/proc/meminfo", "AnonPages") + kb_of("/proc/meminfo", "Shmem") +
	       kb_of("/proc/meminfo", "SUnreclaim");
}

/* CPU seconds of the threads or tasks named `comm` under /proc/PID/task. */
static double cpu_of(pid_t pid, const char *comm)
{
	char dir[64], path[128], name[64];
	struct procfs_stat st;
	double s = 0;
	int *tids, n;

	n = procfs_pids(procfs_path(dir, sizeof(dir), "/proc", (int)pid, "task"), &tids);
	for (int i = 0; i < n; i++)
		if (procfs_comm(procfs_path(path, sizeof(path), dir, tids[i], "comm"), name,
				sizeof(name)) == 0 &&
		    !strncmp(name, comm, strlen(comm)) &&
		    procfs_stat(procfs_path(path, sizeof(path), dir, tids[i], "stat"), &st) == 0)
			s += (double)(st.utime + st.stime) / (double)sysconf(_SC_CLK_TCK);
	free(tids);
	return s;
}

/* ---- the guests ---- */

/* The image: 60% shared (same contents at the same offsets in every
 * guest), 20% zero pages, 20% private (different in every guest). */
static uint64_t word(size_t i, size_t k, unsigned g)
{
	unsigned kind = (unsigned)(i * 7 % 10);
	if (kind < 6)
		return (i * 0x9e3779b97f4a7c15ULL) ^ k;
	if (kind < 8)
		return 0;
	return ((uint64_t)(g + 1) << 56) ^ (i * 0xc2b2ae3d27d4eb4fULL) ^ k;
}

static void guest_main(unsigned g, bool kernel, int cmd, int res)
{
	size_t pages = (size_t)mib * 256;
	samepage_t *sp = NULL;
	char *mem =
	    mmap(NULL, pages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	long long v = 0;
	if (mem == MAP_FAILED)
		_exit(3);
	madvise(mem, pages * PG, MADV_NOHUGEPAGE);
	for (size_t i = 0; i < pages; i++) {
		uint64_t *w = (uint64_t *)(mem + i * PG);
		for (size_t k = 0; k < PG / 8; k++)
			w[k] = word(i, k, g);
	}
	int err = kernel ? (madvise(mem, pages * PG, MADV_MERGEABLE) ? -errno : 0)
			 : samepage_connect(&sp, "guests");
	if (!err && sp)
		err = samepage_madvise(sp, mem, pages * PG, SAMEPAGE_MERGEABLE);
	v = err;
	if (write(res, &v, sizeof(v)) != sizeof(v) || err)
		_exit(4);
	char c;
	while (read(cmd, &c, 1) == 1 && c == 'v') { /* verify every page */
		v = 1;
		for (size_t i = 0; i < pages && v; i++)
			for (size_t k = 0; k < PG / 8; k += 61)
				v &= ((uint64_t *)(mem + i * PG))[k] == word(i, k, g);
		if (write(res, &v, sizeof(v)) != sizeof(v))
			break;
	}
	_exit(0);
}

static bool start_guests(struct guest *gs, bool kernel)
{
	for (unsigned g = 0; g < guests; g++) {
		int a[2], b[2];
		if (pipe(a) || pipe(b))
			return false;
		gs[g].pid = fork();
		if (gs[g].pid == 0) {
			close(a[1]);
			close(b[0]);
			guest_main(g, kernel, a[0], b[1]);
		}
		close(a[0]);
		close(b[1]);
		gs[g].cmd = a[1];
		gs[g].res = b[0];
	}
	bool ok = true;
	for (unsigned g = 0; g < guests; g++) {
		long long v = -1;
		if (read(gs[g].res, &v, sizeof(v)) != sizeof(v) || v) {
			fprintf(stderr, "demo: guest %u could not start: %s\n", g,
				v < 0 ? strerror((int)-v) : "it exited");
			ok = false;
		}
	}
	return ok;
}

static bool stop_guests(struct guest *gs)
{
	bool ok = true;
	for (unsigned g = 0; g < guests; g++) {
		long long v = 0;
		if (write(gs[g].cmd, "v", 1) != 1 || read(gs[g].res, &v, sizeof(v)) != sizeof(v))
			v = 0;
		ok &= v == 1;
		close(gs[g].cmd);
		close(gs[g].res);
		kill(gs[g].pid, SIGTERM);
		waitpid(gs[g].pid, NULL, 0);
	}
	return ok;
}

/* ---- the two back-ends, as the demo drives them ---- */

struct backend {
	const char *name;
	int (*set)(const char *name, const char *value);
	long long (*get)(const char *name);
	double (*cpu)(void);
};

static char sock[160], statedir[128];
static pid_t daemon_pid;

static int user_set(const char *name, const char *value)
{
	char req[128], reply[256];
	snprintf(req, sizeof(req), "SET %s %s", name, value);
	return samepage_control(sock, req, reply, sizeof(reply));
}

static long long user_get(const char *name)
{
	char req[128], reply[256];
	snprintf(req, sizeof(req), "GET %s", name);
	if (samepage_control(sock, req, reply, sizeof(reply)))
		return 0;
	char *sp = strrchr(reply, ' ');
	return sp ? atoll(sp + 1) : 0;
}

static struct guest *current;

static double user_cpu(void)
{
	double s = 0;
	for (unsigned g = 0; g < guests; g++)
		s += cpu_of(current[g].pid, "samepage-ksmd");
	return s;
}

static int kernel_set(const char *name, const char *value)
{
	char path[128];
	snprintf(path, sizeof(path), KSM "%s", name);
	int fd = open(path, O_WRONLY), err = 0;
	if (fd < 0)
		return -errno;
	if (write(fd, value, strlen(value)) < 0)
		err = -errno;
	close(fd);
	return err;
}

static long long kernel_get(const char *name)
{
	char path[128], buf[64];
	snprintf(path, sizeof(path), KSM "%s", name);
	return procfs_read(path, buf, sizeof(buf)) ? 0 : atoll(buf);
}

static double kernel_cpu(void)
{
	int pid = procfs_find_comm("/proc", "ksmd");
	return pid > 0 ? cpu_of(pid, "ksmd") : 0;
}

/* The kernel knobs the demo touches, put back by restore_kernel(). */
static const char *saved_names[] = {"run", "pages_to_scan", "sleep_millisecs"};
static char saved[3][32];
static bool kernel_saved;

static void restore_kernel(void)
{
	if (!kernel_saved)
		return;
	kernel_saved = false;
	kernel_set("run", "2"); /* drop the demo's merged pages first */
	for (int i = 2; i >= 0; i--)
		kernel_set(saved_names[i], saved[i]);
}

static void on_signal(int sig)
{
	restore_kernel();
	if (daemon_pid > 0)
		kill(daemon_pid, SIGTERM);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* ---- one run ---- */

static struct outcome run(const struct backend *be, bool kernel)
{
	struct outcome o = {.ran = true};
	static struct guest gs[MAX_GUESTS];
	const char *knobs[][2] = {{"pages_to_scan", seed_pages_to_scan},
				  {"sleep_millisecs", seed_sleep_ms}};
	long long sys0 = system_kb();

	printf("\n== %s: %u guests x %u MiB from one image (60%% shared, 20%% zero, 20%% own)\n",
	       be->name, guests, mib);
	current = gs;
	if (!start_guests(gs, kernel)) {
		o.ran = false;
		return o;
	}
	/* samepaged maps the whole pool too: its share of the pool's Pss is
	 * memory the merge costs outside the guests. */
	pid_t daemon = kernel ? 0 : daemon_pid;
	long long pss0 = daemon > 0 ? pss_kb(daemon) : 0;
	for (unsigned g = 0; g < guests; g++)
		pss0 += pss_kb(gs[g].pid);
	o.before_mib = (double)pss0 / 1024;
	printf("guests booted: %.0f MiB (their Pss), system (AnonPages+Shmem+SUnreclaim) +%lld "
	       "MiB\n",
	       o.before_mib, (system_kb() - sys0) / 1024);
	printf("turning merging on, as the seed blog post does:\n");
	for (int i = 0; i < 2; i++) {
		be->set(knobs[i][0], knobs[i][1]);
		printf("  echo %-6s > %s\n", knobs[i][1], knobs[i][0]);
	}
	double t0 = now(), cpu0 = be->cpu();
	long long system0 = system_kb();
	be->set("run", "1");
	printf("  echo 1      > run\n");

	/* Converged: pages_sharing unchanged over two full scans. */
	long long last = -1, stable = 0, scans = be->get("full_scans"), scans0 = scans;
	int tty = isatty(1);
	double last_print = 0;
	while (stable < 2 && now() - t0 < 600) {
		usleep(100000);
		long long s = be->get("full_scans"), sharing = be->get("pages_sharing");
		if (s != scans) {
			stable = sharing == last && s >= 2 ? stable + 1 : 0;
			last = sharing;
			scans = s;
		}
		if (now() - last_print < (tty ? 0.25 : 2.0))
			continue;
		last_print = now();
		long long total = daemon > 0 ? pss_kb(daemon) : 0;
		printf("%s[%5.1fs] scans %lld | saved per guest:", tty ? "\r" : "", now() - t0, s);
		for (unsigned g = 0; g < guests; g++) {
			long long p = pss_kb(gs[g].pid);
			total += p;
			printf(" %4lld", (long long)(o.before_mib * 1024 / guests - p) / 1024);
		}
		printf(" MiB | total %5lld MiB | system %5lld MiB%s", (pss0 - total) / 1024,
		       (system0 - system_kb()) / 1024, tty ? "   " : "\n");
		fflush(stdout);
	}
	o.secs = now() - t0;
	o.cpu_s = be->cpu() - cpu0;
	o.scans = be->get("full_scans") - scans0;
	o.shared = be->get("pages_shared");
	o.sharing = be->get("pages_sharing");
	if (hold) {
		/* What scanning costs once merged, for as long as the guests
		 * run: the figure a host pays every hour. */
		printf("\nconverged; holding the guests %u s to measure the scanner then\n", hold);
		double h0 = now(), c0 = be->cpu();
		while (now() - h0 < hold)
			usleep(100000);
		o.hold_pct = 100 * (be->cpu() - c0) / (now() - h0);
	}
	long long outside = daemon > 0 ? pss_kb(daemon) : 0, pss1 = outside;
	for (unsigned g = 0; g < guests; g++)
		pss1 += pss_kb(gs[g].pid);
	o.after_mib = (double)pss1 / 1024;
	o.daemon_mib = (double)outside / 1024;
	o.system_mib = (double)(system0 - system_kb()) / 1024;
	bool ok = stop_guests(gs);
	be->set("run", "2");
	printf("\n%s: %.0f MiB -> %.0f MiB in %.1f s; every guest's memory %s\n", be->name,
	       o.before_mib, o.after_mib, o.secs, ok ? "checked: intact" : "IS WRONG");
	if (!ok)
		exit(1);
	return o;
}

static bool start_daemon(void)
{
	snprintf(statedir, sizeof(statedir), "/dev/shm/samepage-demo-XXXXXX");
	if (!mkdtemp(statedir))
		return false;
	snprintf(sock, sizeof(sock), "%s/s.sock", statedir);
	setenv("SAMEPAGE_SOCKET", sock, 1);
	daemon_pid = fork();
	if (daemon_pid == 0) {
		char state[192];
		snprintf(state, sizeof(state), "%s/state", statedir);
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 2);
		execlp(samepaged, samepaged, "--foreground", "--socket", sock, "--state-dir", state,
		       (char *)NULL);
		_exit(127);
	}
	char reply[64];
	for (int i = 0; i < 2000; i++) {
		if (samepage_control(sock, "GET run", reply, sizeof(reply)) == 0)
			return true;
		if (waitpid(daemon_pid, NULL, WNOHANG) == daemon_pid) {
			daemon_pid = 0; /* it did not start (no such program, say) */
			return false;
		}
		usleep(5000);
	}
	return false;
}

/* Stops samepaged, if it runs, and removes its state directory. */
static void stop_daemon(void)
{
	char cmd[200];
	if (daemon_pid > 0) {
		kill(daemon_pid, SIGTERM);
		waitpid(daemon_pid, NULL, 0);
	}
	daemon_pid = 0;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", statedir);
	if (statedir[0] && system(cmd))
		fprintf(stderr, "demo: could not remove %s\n", statedir);
}

/* The kernel's KSM may be used: root, the files there, and nobody else
 * merging (the project's lock file, and pages_shared 0). */
static const char *kernel_unavailable(int *lockfd)
{
	if (access(KSM "run", W_OK))
		return "no writable /sys/kernel/mm/ksm (not root, or no CONFIG_KSM)";
	const char *held = getenv("SAMEPAGE_KSM_LOCK_HELD");
	*lockfd = -1;
	if (!(held && !strcmp(held, "1"))) {
		*lockfd = open("/tmp/samepage-kernel-ksm.lock", O_RDWR | O_CREAT, 0644);
		if (*lockfd < 0 || flock(*lockfd, LOCK_EX | LOCK_NB))
			return "another samepage test or benchmark is using it";
	}
	if (kernel_get("pages_shared") || kernel_get("run") == 1)
		return "it is in use on this host (run=1 or pages already shared)";
	return NULL;
}

int main(int argc, char **argv)
{
	bool no_kernel = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--guests") && i + 1 < argc)
			guests = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--mib") && i + 1 < argc)
			mib = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--samepaged") && i + 1 < argc)
			samepaged = argv[++i];
		else if (!strcmp(argv[i], "--no-kernel"))
			no_kernel = true;
		else if (!strcmp(argv[i], "--pages-to-scan") && i + 1 < argc)
			seed_pages_to_scan = argv[++i];
		else if (!strcmp(argv[i], "--sleep-ms") && i + 1 < argc)
			seed_sleep_ms = argv[++i];
		else if (!strcmp(argv[i], "--hold") && i + 1 < argc)
			hold = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--tsv")) {
			/* Result lines on stdout, the rest on stderr. */
			tsv = fdopen(dup(1), "w");
			dup2(2, 1);
		} else {
			fprintf(stderr, "usage: demo [--guests N] [--mib M] [--samepaged PATH] "
					"[--no-kernel] [--pages-to-scan N] [--sleep-ms N] [--hold "
					"S] [--tsv]\n");
			return 2;
		}
	}
	if (guests < 2 || guests > MAX_GUESTS || mib < 1) {
		fprintf(stderr, "demo: --guests must be 2 to %d and --mib at least 1\n",
			MAX_GUESTS);
		return 2;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	if (!start_daemon()) {
		fprintf(stderr, "demo: could not start %s (fix: --samepaged PATH)\n", samepaged);
		stop_daemon(); /* and its state directory goes */
		return 1;
	}
	struct backend user = {"libsamepage + samepaged", user_set, user_get, user_cpu};
	struct outcome u = run(&user, false);
	stop_daemon();
	if (!u.ran)
		return 1;

	struct outcome k = {0};
	int lockfd = -1;
	const char *why = no_kernel ? "--no-kernel" : kernel_unavailable(&lockfd);
	if (!why) {
		for (int i = 0; i < 3; i++) {
			long long v = kernel_get(saved_names[i]);
			snprintf(saved[i], sizeof(saved[i]), "%lld", v);
		}
		kernel_saved = true;
		atexit(restore_kernel);
		struct backend kern = {"the kernel's KSM", kernel_set, kernel_get, kernel_cpu};
		k = run(&kern, true);
		restore_kernel();
	} else {
		printf("\n(the kernel's KSM is not run for comparison: %s)\n", why);
	}

	printf("\n  %-28s %16s %16s\n", "", "libsamepage", k.ran ? "kernel KSM" : "");
	printf("  %-28s %16.0f", "memory before (MiB)", u.before_mib);
	k.ran ? printf(" %16.0f\n", k.before_mib) : printf("\n");
	printf("  %-28s %16.0f", "after merging (MiB)", u.after_mib);
	k.ran ? printf(" %16.0f\n", k.after_mib) : printf("\n");
	printf("  %-28s %16.0f", "  of which samepaged (MiB)", u.daemon_mib);
	k.ran ? printf(" %16s\n", "-") : printf("\n");
	printf("  %-28s %16.0f", "saved (MiB)", u.before_mib - u.after_mib);
	k.ran ? printf(" %16.0f\n", k.before_mib - k.after_mib) : printf("\n");
	printf("  %-28s %16.0f", "saved system-wide (MiB)", u.system_mib);
	k.ran ? printf(" %16.0f\n", k.system_mib) : printf("\n");
	printf("  %-28s %16lld", "pages_shared", u.shared);
	k.ran ? printf(" %16lld\n", k.shared) : printf("\n");
	printf("  %-28s %16lld", "pages_sharing", u.sharing);
	k.ran ? printf(" %16lld\n", k.sharing) : printf("\n");
	printf("  %-28s %16.1f", "time to converge (s)", u.secs);
	k.ran ? printf(" %16.1f\n", k.secs) : printf("\n");
	printf("  %-28s %16lld", "full scans to converge", u.scans);
	k.ran ? printf(" %16lld\n", k.scans) : printf("\n");
	printf("  %-28s %16.2f", "scanner CPU (s)", u.cpu_s);
	k.ran ? printf(" %16.2f\n", k.cpu_s) : printf("\n");
	if (hold) {
		printf("  %-28s %16.2f", "then, % of a CPU", u.hold_pct);
		k.ran ? printf(" %16.2f\n", k.hold_pct) : printf("\n");
	}
	printf("\n(pages_to_scan %s, sleep_millisecs %s%s; memory is the guests' Pss from "
	       "/proc/PID/smaps_rollup, with samepaged's (its share of the pool it maps); "
	       "system-wide is /proc/meminfo's AnonPages + Shmem + SUnreclaim, the kernel's "
	       "metadata and the merges' mappings included, from other processes too; scanner "
	       "CPU is the guests' samepage-ksmd threads vs ksmd)\n",
	       seed_pages_to_scan, seed_sleep_ms,
	       strcmp(seed_pages_to_scan, "20000") || strcmp(seed_sleep_ms, "200")
		   ? ""
		   : ", as the seed");
	for (int e = 0; tsv && e < 2; e++) {
		const struct outcome *o = e ? &k : &u;
		if (!o->ran)
			continue;
		const char *who = e ? "kernel" : "engine";
		fprintf(tsv, "7-multi\tidle\t%s\tconverge\ts\t%.6g\n", who, o->secs);
		fprintf(tsv, "7-multi\tidle\t%s\treturned\tMiB\t%.6g\n", who,
			o->before_mib - o->after_mib);
		fprintf(tsv, "7-multi\tidle\t%s\tcpu\ts\t%.6g\n", who, o->cpu_s);
		fprintf(tsv, "7-multi\tidle\t%s\tfull_scans\tscans\t%lld\n", who, o->scans);
		if (hold)
			fprintf(tsv, "7-multi\tidle\t%s\tcpu_converged\tpct\t%.6g\n", who,
				o->hold_pct);
	}
	if (tsv)
		fclose(tsv);
	if (lockfd >= 0)
		close(lockfd);
	return 0;
}
