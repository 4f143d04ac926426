// SPDX-License-Identifier: MIT
/*
 * bench_tune.c - who drives the kernel's KSM best: the seed's static
 * settings, ksmtuned's algorithm, the kernel's scan-time advisor, or
 * `ksmctl tune`, side by side on the same workload (BENCHMARKS.md,
 * "Tuning").
 *
 * The workload, the same for every configuration:
 *   - guests: GUESTS processes named "qemu-system-x86" (so that ksmtuned's
 *     process match counts them), one arriving every ARRIVE seconds, each
 *     holding MIB MiB of one image's layout (bench_vm's, harness.h's
 *     vm_layout: 70% image pages identical in every guest, 10% private,
 *     20% zero), marked mergeable; each second a guest rewrites 8 private pages
 *     and 2 image pages (a working set: volatile pages, copy-on-write
 *     breaks of merged pages);
 *   - memory pressure from PRESSURE_AT seconds: a balloon process takes
 *     what MemAvailable has beyond AVAILABLE% of MemTotal and keeps it
 *     (oom_score_adj 1000, so that it is the first to go if anything runs
 *     short; it gives memory back if MemAvailable falls below 4% of
 *     MemTotal, for the other users of the machine).
 * It samples every second: the pages saved (pages_sharing +
 * ksm_zero_pages), full_scans, the knobs as the controller left them,
 * ksmd's CPU time (/proc/PID/stat of the ksmd thread) and MemAvailable.
 *
 * The kernel's KSM is taken as every benchmark takes it (kernel-ksm.c:
 * the lock, waiting until nobody else uses KSM, every knob saved and put
 * back at exit and on signals), for one configuration at a time.  Before
 * and after each: run=2 (all unmerged), then the kernel's defaults for the
 * knobs a controller sets.
 *
 * usage: bench_tune --ksmctl PATH --out DIR [--guests N] [--mib M]
 *                   [--arrive S] [--pressure-at S] [--duration S]
 *                   [--available PCT] CONFIG...
 * CONFIG: static, advisor, ksmtuned, tune, tune-always, tune-advisor.
 * Writes DIR/series-CONFIG.tsv (every second) and DIR/summary.tsv, and
 * prints the summary: the pages saved at the end (the mean of the last 10 s),
 * when 95% of that was first reached (t95) and when 95% of the static
 * settings' final figure was (t_static), when MemAvailable first fell
 * below 20% of MemTotal, where both tuners' defaults want merging
 * (t_need), ksmd's CPU seconds over the run, the plentiful phase, the
 * pressure phase and the last 60 s, and ksmd's CPU since boot when the
 * configuration started (the advisor counts it, see ksmctl(1), TUNE), and
 * the tuner's own CPU seconds over the run (nan for knobs written once).
 */
#include "harness.h"
#include "kernel-ksm.h"
#include "procfs.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_GUESTS 64
#define BALLOON_CHUNK (64 * MIB)

struct params {
	const char *ksmctl, *out;
	int guests, mib, arrive, pressure_at, duration;
	double available; /* percent of MemTotal the balloon leaves */
};

/* A configuration: knobs written once at t=0, or a ksmctl tune command. */
struct config {
	const char *name;
	const char *knobs[8]; /* "name=value", in order */
	const char *tune[8];  /* arguments after `ksmctl tune`, NULL-ended */
};

static const struct config configs[] = {
    {"static", {"pages_to_scan=20000", "sleep_millisecs=200", "run=1"}, {NULL}},
    {"advisor", {"sleep_millisecs=20", "advisor_mode=scan-time", "run=1"}, {NULL}},
    {"ksmtuned", {NULL}, {"--policy", "ksmtuned", "--config", "/dev/null", NULL}},
    {"tune", {NULL}, {NULL}},
    {"tune-always", {NULL}, {"--always", NULL}},
    {"tune-advisor", {NULL}, {"--advisor", NULL}},
};
#define NCONFIGS (sizeof(configs) / sizeof(configs[0]))

/* ---- the workload ---- */

static void die_with_parent(const char *name)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	prctl(PR_SET_NAME, name);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
}

/* A random page of the given kind, or -1 if there is none. */
static long pick(const unsigned char *kind, size_t npages, enum vm_page_kind k, uint64_t *rng)
{
	for (int tries = 0; tries < 1000; tries++) {
		size_t i = (size_t)(rng_next(rng) % npages);
		if (kind[i] == k)
			return (long)i;
	}
	return -1;
}

static void guest(int g, size_t npages, const unsigned char *kind)
{
	uint64_t rng = 1000 + (uint64_t)g, key = (uint64_t)(g + 1) << 48;
	char *p;

	die_with_parent("qemu-system-x86");
	p = map_pages(npages);
	vm_fill(p, npages, kind, (unsigned)g);
	if (madvise(p, npages * PG, MADV_MERGEABLE))
		bench_die("madvise(MADV_MERGEABLE)");
	for (;;) {
		sleep_ms(1000);
		for (int n = 0; n < 10; n++) {
			long i = pick(kind, npages, n < 8 ? VM_PRIVATE : VM_IMAGE, &rng);
			if (i >= 0)
				fill_page(p + (size_t)i * PG, key++);
		}
	}
}

static long long total_kb(void)
{
	return meminfo_kb("MemTotal");
}

static void balloon(double available_pct)
{
	long long floor_kb = total_kb() * 4 / 100;
	long long target_kb = (long long)((double)total_kb() * available_pct / 100);
	char *chunk[4096];
	int n = 0;
	FILE *f;

	die_with_parent("balloon");
	if ((f = fopen("/proc/self/oom_score_adj", "w"))) {
		fputs("1000", f);
		fclose(f);
	}
	while (n < 4096 &&
	       meminfo_kb("MemAvailable") - (long long)(BALLOON_CHUNK / 1024) > target_kb) {
		chunk[n] = mmap(NULL, BALLOON_CHUNK, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (chunk[n] == MAP_FAILED)
			break;
		memset(chunk[n], 0x5a, BALLOON_CHUNK);
		n++;
	}
	for (;;) {
		sleep_ms(500);
		while (n > 0 && meminfo_kb("MemAvailable") < floor_kb)
			munmap(chunk[--n], BALLOON_CHUNK);
	}
}

static pid_t spawn_guest(int g, size_t npages, const unsigned char *kind)
{
	pid_t pid = fork();

	if (pid < 0)
		bench_die("fork");
	if (pid == 0) {
		guest(g, npages, kind);
		_exit(0);
	}
	return pid;
}

static pid_t spawn_balloon(double available_pct)
{
	pid_t pid = fork();

	if (pid < 0)
		bench_die("fork");
	if (pid == 0) {
		balloon(available_pct);
		_exit(0);
	}
	return pid;
}

static pid_t spawn_tune(const struct params *p, const struct config *c)
{
	char log[4096];
	const char *argv[16] = {p->ksmctl, "tune"};
	int argc = 2;
	pid_t pid;

	for (int i = 0; c->tune[i]; i++)
		argv[argc++] = c->tune[i];
	argv[argc] = NULL;
	snprintf(log, sizeof(log), "%s/tune-%s.log", p->out, c->name);
	pid = fork();
	if (pid < 0)
		bench_die("fork");
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(p->ksmctl, (char *const *)argv);
		_exit(127);
	}
	return pid;
}

static void stop_child(pid_t pid, int sig)
{
	if (pid <= 0)
		return;
	kill(pid, sig);
	waitpid(pid, NULL, 0);
}

/* ---- the kernel's side ---- */

static double ksmd_cpu_s(void)
{
	static int pid;
	char path[64];
	struct procfs_stat st;

	if (pid <= 0)
		pid = procfs_find_comm("/proc", "ksmd");
	if (pid <= 0 || procfs_stat(procfs_path(path, sizeof(path), "/proc", pid, "stat"), &st))
		return NAN;
	return (double)(st.utime + st.stime) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds (utime + stime) of process pid, or NAN. */
static double process_cpu_s(pid_t pid)
{
	char path[64];
	struct procfs_stat st;

	if (pid <= 0 || procfs_stat(procfs_path(path, sizeof(path), "/proc", pid, "stat"), &st))
		return NAN;
	return (double)(st.utime + st.stime) / (double)sysconf(_SC_CLK_TCK);
}

static void write_knob(const char *assignment)
{
	char name[64];
	const char *eq = strchr(assignment, '=');

	snprintf(name, sizeof(name), "%.*s", (int)(eq - assignment), assignment);
	kernel_ksm_write(name, eq + 1);
}

/* Every merged page unmerged, then the kernel's defaults for what the
 * configurations set: each starts from the same state. */
static void reset_ksm(void)
{
	kernel_ksm_write("run", "2");
	for (int i = 0; i < 600 && (kernel_ksm_number("pages_shared") > 0 ||
				    kernel_ksm_number("ksm_zero_pages") > 0);
	     i++)
		sleep_ms(100);
	kernel_ksm_write("run", "0");
	if (kernel_ksm_number("advisor_mode") >= 0)
		kernel_ksm_write("advisor_mode", "none");
	kernel_ksm_write("use_zero_pages", "0");
	kernel_ksm_write("pages_to_scan", "100");
	kernel_ksm_write("sleep_millisecs", "20");
}

/* ---- one configuration ---- */

struct sample {
	double t, cpu;
	long long saved, full_scans, run, pages_to_scan, sleep_ms, avail_kb;
	int advisor;
};

struct summary {
	double saved_end_mib, t95, cpu_total, cpu_plenty, cpu_pressure, cpu_last60;
	double saved_at_pressure_mib;
	double t_static;    /* first time saved >= 95% of static's final, NAN never */
	double t_need;	    /* first time MemAvailable < 20% of MemTotal, NAN never */
	double ksmd_before; /* ksmd's CPU seconds since boot at the start */
	double tuner_cpu;   /* the tuner's own CPU seconds over the run, NAN without one */
	struct sample *s;   /* every second */
	int n;
};

static void take_sample(struct sample *s, double t, double cpu0)
{
	char mode[64] = "";
	FILE *f = fopen("/sys/kernel/mm/ksm/advisor_mode", "r");

	if (f) {
		if (!fgets(mode, sizeof(mode), f))
			mode[0] = '\0';
		fclose(f);
	}
	s->t = t;
	s->cpu = ksmd_cpu_s() - cpu0;
	s->saved =
	    kernel_ksm_number("pages_sharing") +
	    (kernel_ksm_number("ksm_zero_pages") > 0 ? kernel_ksm_number("ksm_zero_pages") : 0);
	s->full_scans = kernel_ksm_number("full_scans");
	s->run = kernel_ksm_number("run");
	s->pages_to_scan = kernel_ksm_number("pages_to_scan");
	s->sleep_ms = kernel_ksm_number("sleep_millisecs");
	s->avail_kb = meminfo_kb("MemAvailable");
	s->advisor = strstr(mode, "[scan-time]") != NULL;
}

static double mib(long long pages)
{
	return (double)pages * PG / MIB;
}

static void summarize(const struct params *p, const struct sample *s, int n, struct summary *r)
{
	double sum = 0;
	int k = 0;

	for (int i = n - 1; i >= 0 && s[i].t >= p->duration - 10; i--, k++)
		sum += mib(s[i].saved);
	r->saved_end_mib = k ? sum / k : 0;
	r->t95 = NAN;
	for (int i = 0; i < n; i++)
		if (mib(s[i].saved) >= 0.95 * r->saved_end_mib && r->saved_end_mib > 0) {
			r->t95 = s[i].t;
			break;
		}
	r->cpu_total = s[n - 1].cpu;
	r->cpu_plenty = r->cpu_pressure = r->cpu_last60 = 0;
	r->saved_at_pressure_mib = 0;
	for (int i = 0; i < n; i++) {
		if (s[i].t <= p->pressure_at) {
			r->cpu_plenty = s[i].cpu;
			r->saved_at_pressure_mib = mib(s[i].saved);
		}
		if (s[i].t <= p->duration - 60)
			r->cpu_last60 = s[i].cpu;
	}
	r->cpu_pressure = r->cpu_total - r->cpu_plenty;
	/* Memory is needed by both tuners' defaults below 20% available
	 * (ksmctl tune --available 20; ksmtuned's KSM_THRES_COEF 20). */
	r->t_need = NAN;
	for (int i = 0; i < n && isnan(r->t_need); i++)
		if ((double)s[i].avail_kb < 0.2 * (double)total_kb())
			r->t_need = s[i].t;
	r->cpu_last60 = r->cpu_total - r->cpu_last60;
}

static void run_config(const struct params *p, const struct config *c, struct summary *r)
{
	size_t npages = (size_t)p->mib * MIB / PG;
	unsigned char *kind = vm_layout(npages);
	pid_t guests[MAX_GUESTS] = {0}, tune = 0, ball = 0;
	int n = 0, ng = 0, cap = p->duration + 2;
	struct sample *s = calloc((size_t)cap, sizeof(*s));
	char path[4096];
	FILE *series;
	uint64_t t0;
	double cpu0;

	snprintf(path, sizeof(path), "%s/series-%s.tsv", p->out, c->name);
	if (!s || !(series = fopen(path, "w")))
		bench_die(path);
	fprintf(series, "# t\tsaved_mib\tfull_scans\tksmd_cpu_s\tavailable_mib\trun\t"
			"pages_to_scan\tsleep_millisecs\tadvisor\n");
	reset_ksm();
	cpu0 = ksmd_cpu_s();
	t0 = now_ns();
	for (int i = 0; c->knobs[i]; i++)
		write_knob(c->knobs[i]);
	if (!c->knobs[0])
		tune = spawn_tune(p, c);
	for (int sec = 0; sec <= p->duration; sec++) {
		while (secs_since(t0) < sec)
			sleep_ms(10);
		if (ng < p->guests && sec >= ng * p->arrive) {
			guests[ng] = spawn_guest(ng, npages, kind);
			ng++;
		}
		if (sec == p->pressure_at)
			ball = spawn_balloon(p->available);
		take_sample(&s[n], secs_since(t0), cpu0);
		fprintf(series, "%.1f\t%.1f\t%lld\t%.2f\t%.0f\t%lld\t%lld\t%lld\t%d\n", s[n].t,
			mib(s[n].saved), s[n].full_scans, s[n].cpu, (double)s[n].avail_kb / 1024,
			s[n].run, s[n].pages_to_scan, s[n].sleep_ms, s[n].advisor);
		fflush(series);
		n++;
	}
	r->tuner_cpu = process_cpu_s(tune); /* before it ends: its own, not its children's */
	stop_child(tune, SIGTERM);
	stop_child(ball, SIGKILL);
	for (int i = 0; i < ng; i++)
		stop_child(guests[i], SIGKILL);
	fclose(series);
	summarize(p, s, n, r);
	r->s = s;
	r->n = n;
	r->ksmd_before = cpu0;
	free(kind);
	reset_ksm();
}

static void usage(void)
{
	fprintf(stderr,
		"usage: bench_tune --ksmctl PATH --out DIR [--guests N] [--mib M] "
		"[--arrive S] [--pressure-at S] [--duration S] [--available PCT] "
		"CONFIG...\nCONFIG: static advisor ksmtuned tune tune-always tune-advisor\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct params p = {.guests = 6,
			   .mib = 512,
			   .arrive = 15,
			   .pressure_at = 120,
			   .duration = 360,
			   .available = 12};
	const struct config *run[NCONFIGS * 4];
	struct summary r[NCONFIGS * 4];
	int nrun = 0;
	char path[4096];
	FILE *sum;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--ksmctl") == 0 && v)
			p.ksmctl = v, i++;
		else if (strcmp(a, "--out") == 0 && v)
			p.out = v, i++;
		else if (strcmp(a, "--guests") == 0 && v)
			p.guests = atoi(v), i++;
		else if (strcmp(a, "--mib") == 0 && v)
			p.mib = atoi(v), i++;
		else if (strcmp(a, "--arrive") == 0 && v)
			p.arrive = atoi(v), i++;
		else if (strcmp(a, "--pressure-at") == 0 && v)
			p.pressure_at = atoi(v), i++;
		else if (strcmp(a, "--duration") == 0 && v)
			p.duration = atoi(v), i++;
		else if (strcmp(a, "--available") == 0 && v)
			p.available = atof(v), i++;
		else {
			size_t k;
			for (k = 0; k < NCONFIGS && strcmp(a, configs[k].name); k++)
				;
			if (k == NCONFIGS || nrun == (int)(sizeof(run) / sizeof(run[0])))
				usage();
			run[nrun++] = &configs[k];
		}
	}
	if (!p.ksmctl || !p.out || !nrun || p.guests < 1 || p.guests > MAX_GUESTS || p.mib < 1 ||
	    p.duration < 60)
		usage();
	/* The lock is taken for one configuration at a time (about 7 minutes),
	 * so that the tests of other builds waiting for it (15 minutes at
	 * most) get their turn in between. */
	for (int i = 0; i < nrun; i++) {
		kernel_ksm_acquire();
		fprintf(stderr, "bench_tune: %s\n", run[i]->name);
		run_config(&p, run[i], &r[i]);
		kernel_ksm_release();
	}
	for (int i = 0; i < nrun; i++) {
		r[i].t_static = NAN;
		for (int k = 0; k < nrun; k++)
			if (strcmp(run[k]->name, "static") == 0)
				for (int j = 0; j < r[i].n && isnan(r[i].t_static); j++)
					if (mib(r[i].s[j].saved) >= 0.95 * r[k].saved_end_mib)
						r[i].t_static = r[i].s[j].t;
	}
	snprintf(path, sizeof(path), "%s/summary.tsv", p.out);
	if (!(sum = fopen(path, "w")))
		bench_die(path);
	fprintf(sum,
		"# guests %d x %d MiB, one every %d s; pressure at %d s (MemAvailable "
		"%.0f%%); %d s\n",
		p.guests, p.mib, p.arrive, p.pressure_at, p.available, p.duration);
	fprintf(sum, "config\tsaved_end_mib\tsaved_at_pressure_mib\tt95_s\tt_static_s\tt_need_s\t"
		     "cpu_total_s\tcpu_plenty_s\tcpu_pressure_s\tcpu_last60_s\tksmd_before_s\t"
		     "tuner_cpu_s\n");
	for (int i = 0; i < nrun; i++)
		fprintf(sum,
			"%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f\t%.2f\n",
			run[i]->name, r[i].saved_end_mib, r[i].saved_at_pressure_mib, r[i].t95,
			r[i].t_static, r[i].t_need, r[i].cpu_total, r[i].cpu_plenty,
			r[i].cpu_pressure, r[i].cpu_last60, r[i].ksmd_before, r[i].tuner_cpu);
	fclose(sum);
	snprintf(path, sizeof(path), "cat '%s/summary.tsv'", p.out);
	return system(path) == 0 ? 0 : 1;
}
