// SPDX-License-Identifier: MIT
/*
 * soak.c - libsamepage and samepaged under everything a program does to
 * its memory, for minutes, with every byte checked against a shadow copy.
 *
 * The supervisor (this file) starts the engine process and, with "daemon",
 * its own samepaged (--socket and --state-dir in temporary directories) and
 * clients in two domains, which it SIGKILLs and restarts at random, and
 * SIGSTOPs for a moment (one may hold its domain's lock then).  It
 * samples the memory (smaps_rollup Pss) of every process, restarts the
 * engine process if it crashes, and at the end prints the figures and
 * exits 1 on any mismatch, EFAULT, short read, crash, unexpected error or
 * if nothing merged at all.  See --help, and RELIABILITY.md.
 */
#include "soak.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SOAK_NAME(e, name, help) name,
#define SOAK_HELP(e, name, help) help,
const char *const op_name[NWHO] = {SOAK_OPS(SOAK_NAME) "verify", "fork child"};
const char *const op_help[NOPS] = {SOAK_OPS(SOAK_HELP)};

struct soak_stats *stats;
const struct soak_opts *opts;
static struct soak_opts o = {
    .duration = 60,
    .seed = 1,
    .workers = 4,
    .regions = 3,
    .pages = 256,
    .engines = 3,
    .sigblock_threads = 2,
    .clients = 4,
    .pause_us = 50,
    .report_every = 0, /* duration / 10 */
};

/* ---- shared helpers ---- */

uint64_t seed_for(uint64_t seed, uint64_t a, uint64_t b)
{
	uint64_t z = seed ^ (a * 0x9e3779b97f4a7c15ULL) ^ (b * 0xbf58476d1ce4e5b9ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return (z ^ (z >> 31)) | 1;
}

void fill_pattern(char *page, unsigned p)
{
	uint64_t *w = (uint64_t *)page;
	if (!p) {
		memset(page, 0, PG);
		return;
	}
	for (size_t k = 0; k < PG / 8; k++)
		w[k] = seed_for(p, k, 7);
}

void note(const char *fmt, ...)
{
	struct soak_note *n = NULL;
	for (int i = 0; i < SOAK_NOTES && !n; i++) {
		uintptr_t cur = 0; /* a free slot is claimed; a taken one may be ours */
		if (atomic_compare_exchange_strong(&stats->notes[i].fmt, &cur, (uintptr_t)fmt) ||
		    cur == (uintptr_t)fmt)
			n = &stats->notes[i];
	}
	if (!n) {
		atomic_fetch_add(&stats->notes_lost, 1);
		return;
	}
	if (atomic_fetch_add(&n->count, 1) == 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(n->text, sizeof(n->text), fmt, ap);
		va_end(ap);
		atomic_store(&n->ready, 1);
	}
}

bool soak_stopping(void)
{
	return atomic_load(&stats->stop);
}

double soak_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- options ---- */

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: samepage_soak [options]\n"
	    "  --duration SECONDS   how long (default 60)\n"
	    "  --seed N             random seed (default 1); the same seed, the same choices\n"
	    "  --ops LIST|all       the kinds of operation (default all), comma-separated\n"
	    "  --without LIST       all but these\n"
	    "  --workers N          worker threads of the engine process (default 4)\n"
	    "  --regions N          regions per worker (default 3)\n"
	    "  --pages N            pages per region (default 256)\n"
	    "  --engines N          engines in the engine process, with \"engines\" (default 3)\n"
	    "  --sigblock-threads N signal-blocking writers, with \"sigblock\" (default 2)\n"
	    "  --clients N          samepaged clients, with \"daemon\" (default 4, two domains)\n"
	    "  --pause-us N         pause after each operation (default 50)\n"
	    "  --report-every S     seconds between progress lines (default duration/10)\n"
	    "  --samepaged PATH     the daemon (needed with \"daemon\")\n"
	    "  --ksmctl PATH        also check `ksmctl --user status` against it\n"
	    "  --dir DIR            a directory on disk for the file read with O_DIRECT\n"
	    "                       (default $TMPDIR or /var/tmp)\n"
	    "  --csv FILE           the memory samples, as CSV\n"
	    "Operation kinds:\n");
	for (int k = 0; k < NOPS; k++)
		fprintf(f, "  %-11s %s\n", op_name[k], op_help[k]);
	fprintf(f, "Exit status: 0 clean, 1 a failure was seen, 2 bad usage or set-up.\n");
}

static int parse_ops(const char *list, bool on)
{
	char buf[512], *save = NULL;
	snprintf(buf, sizeof(buf), "%s", list);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int k;
		if (!strcmp(t, "all")) {
			for (k = 0; k < NOPS; k++)
				o.on[k] = on;
			continue;
		}
		for (k = 0; k < NOPS && strcmp(op_name[k], t); k++)
			;
		if (k == NOPS) {
			fprintf(stderr,
				"samepage_soak: unknown operation kind '%s' (fix: see --help)\n",
				t);
			return -1;
		}
		o.on[k] = on;
	}
	return 0;
}

static int number(const char *opt, const char *s, long long min, long long *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < min) {
		fprintf(stderr, "samepage_soak: %s '%s': not a number >= %lld\n", opt, s, min);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_args(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"duration", 1, 0, 'd'},  {"seed", 1, 0, 's'},     {"ops", 1, 0, 'o'},
	    {"without", 1, 0, 'x'},   {"workers", 1, 0, 'w'},  {"regions", 1, 0, 'r'},
	    {"pages", 1, 0, 'p'},     {"engines", 1, 0, 'e'},  {"sigblock-threads", 1, 0, 'b'},
	    {"clients", 1, 0, 'c'},   {"pause-us", 1, 0, 'u'}, {"report-every", 1, 0, 'R'},
	    {"samepaged", 1, 0, 'D'}, {"ksmctl", 1, 0, 'K'},   {"dir", 1, 0, 'T'},
	    {"csv", 1, 0, 'C'},	      {"help", 0, 0, 'h'},     {0, 0, 0, 0}};
	long long v;
	int c;
	parse_ops("all", true);
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		int bad = 0;
		switch (c) {
		case 'd':
			bad = number("--duration", optarg, 1, &v);
			o.duration = (double)v;
			break;
		case 's':
			bad = number("--seed", optarg, 0, &v);
			o.seed = (uint64_t)v;
			break;
		case 'o':
			parse_ops("all", false);
			bad = parse_ops(optarg, true);
			break;
		case 'x': bad = parse_ops(optarg, false); break;
		case 'w':
			bad = number("--workers", optarg, 1, &v);
			o.workers = (int)v;
			break;
		case 'r':
			bad = number("--regions", optarg, 1, &v);
			o.regions = (int)v;
			break;
		case 'p':
			bad = number("--pages", optarg, 4, &v);
			o.pages = (int)v;
			break;
		case 'e':
			bad = number("--engines", optarg, 1, &v);
			o.engines = (int)v;
			break;
		case 'b':
			bad = number("--sigblock-threads", optarg, 1, &v);
			o.sigblock_threads = (int)v;
			break;
		case 'c':
			bad = number("--clients", optarg, 1, &v);
			o.clients = (int)v;
			break;
		case 'u':
			bad = number("--pause-us", optarg, 0, &v);
			o.pause_us = (unsigned)v;
			break;
		case 'R':
			bad = number("--report-every", optarg, 1, &v);
			o.report_every = (double)v;
			break;
		case 'D': o.samepaged = optarg; break;
		case 'K': o.ksmctl = optarg; break;
		case 'T': o.dir = optarg; break;
		case 'C': o.csv = optarg; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
		if (bad)
			return -1;
	}
	if (optind < argc) {
		fprintf(stderr, "samepage_soak: unexpected argument '%s' (fix: see --help)\n",
			argv[optind]);
		return -1;
	}
	if (o.on[OP_DAEMON] && !o.samepaged) {
		fprintf(stderr,
			"samepage_soak: \"daemon\" needs the daemon (fix: --samepaged PATH, "
			"or --without daemon)\n");
		return -1;
	}
	if (!o.dir)
		o.dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp";
	if (!o.report_every)
		o.report_every = o.duration >= 20 ? o.duration / 10 : 2;
	return 0;
}

/* ---- the temporary directories and the file ---- */

static char tmpdir[400], statedir[440], sockpath[480];

static int write_file(void)
{
	char page[PG];
	snprintf(o.file, sizeof(o.file), "%s/file", tmpdir);
	int fd = open(o.file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	for (unsigned i = 0; i < FILE_PAGES; i++) { /* mostly duplicates, a few of their own */
		fill_pattern(page, i % 5 == 4 ? 5000 + i : i % NPATTERNS);
		if (write(fd, page, PG) != (ssize_t)PG) {
			close(fd);
			return -1;
		}
	}
	fsync(fd);
	close(fd);
	if (o.on[OP_DIRECT]) { /* tmpfs has no O_DIRECT */
		fd = open(o.file, O_RDONLY | O_DIRECT | O_CLOEXEC);
		if (fd < 0) {
			fprintf(
			    stderr,
			    "samepage_soak: %s does not support O_DIRECT: %s (fix: --dir on a disk "
			    "file system, or --without direct)\n",
			    o.dir, strerror(errno));
			return -2;
		}
		close(fd);
	}
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void cleanup_dirs(void)
{
	if (statedir[0])
		nftw(statedir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (tmpdir[0])
		nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- processes ---- */

enum role { R_ENGINE, R_CLIENT, R_DAEMON };
struct proc {
	pid_t pid;
	enum role role;
	int domain, index;
	bool killed; /* by us: not a crash */
};

#define MAXPROCS 256
static struct proc procs[MAXPROCS];
static int nprocs;
static int crashes[3], restarts, clients_killed, clients_stopped, daemon_kills, ksmctl_checks;
static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	interrupted = 1;
}

static void child_init(void)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the supervisor */
	signal(SIGINT, SIG_IGN);	  /* the supervisor stops everyone */
}

static struct proc *proc_add(pid_t pid, enum role role, int domain, int index)
{
	for (int i = 0; i < MAXPROCS; i++)
		if (!procs[i].pid) {
			procs[i] = (struct proc){pid, role, domain, index, false};
			if (i >= nprocs)
				nprocs = i + 1;
			return &procs[i];
		}
	fprintf(stderr, "samepage_soak: too many processes\n");
	exit(2);
}

static struct proc *proc_find(pid_t pid)
{
	for (int i = 0; i < nprocs; i++)
		if (procs[i].pid == pid)
			return &procs[i];
	return NULL;
}

static struct proc *proc_of(enum role role, int nth)
{
	for (int i = 0; i < nprocs; i++)
		if (procs[i].pid && procs[i].role == role && !procs[i].killed && nth-- == 0)
			return &procs[i];
	return NULL;
}

static int count_role(enum role role)
{
	int n = 0;
	while (proc_of(role, n))
		n++;
	return n;
}

static int generation, client_serial;

static void start_engine_process(void)
{
	int gen = generation++;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		child_init();
		_exit(engine_process_main(gen));
	}
	if (pid < 0) {
		perror("samepage_soak: fork");
		exit(2);
	}
	proc_add(pid, R_ENGINE, 0, gen);
}

static void start_client(int domain)
{
	int serial = client_serial++;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		child_init();
		_exit(client_process_main(domain, serial, seed_for(o.seed, 200, (uint64_t)serial)));
	}
	if (pid < 0) {
		perror("samepage_soak: fork");
		exit(2);
	}
	proc_add(pid, R_CLIENT, domain, serial);
}

static bool daemon_answers(void)
{
	char reply[256];
	return samepage_control(sockpath, "GET run", reply, sizeof(reply)) == 0;
}

static void start_daemon(void)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		child_init();
		int null = open("/dev/null", O_WRONLY);
		if (null >= 0 && getenv("SOAK_DAEMON_LOG") == NULL) /* its log: only if asked */
			dup2(null, 2);
		execl(o.samepaged, o.samepaged, "--foreground", "--socket", sockpath, "--state-dir",
		      statedir, (char *)NULL);
		_exit(127);
	}
	if (pid < 0) {
		perror("samepage_soak: fork");
		exit(2);
	}
	proc_add(pid, R_DAEMON, 0, 0);
	for (int i = 0; i < 5000 && !daemon_answers(); i++)
		usleep(2000);
	if (!daemon_answers()) {
		fprintf(stderr, "samepage_soak: %s did not answer on %s\n", o.samepaged, sockpath);
		atomic_fetch_add(&stats->syscall_errors, 1);
	}
}

/* `ksmctl --user status` against our daemon, which is up: exit 0 expected. */
static void check_ksmctl(void)
{
	if (!o.ksmctl)
		return;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		dup2(null, 2);
		execl(o.ksmctl, o.ksmctl, "--user", "--socket", sockpath, "status", (char *)NULL);
		_exit(127);
	}
	int status = 0;
	pid_t got = 0;
	for (int i = 0; i < 3000 && (got = waitpid(pid, &status, WNOHANG)) == 0; i++)
		usleep(10000);
	ksmctl_checks++;
	if (got == 0) { /* 30 s: it waits for an answer that does not come */
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		atomic_fetch_add(&stats->hangs, 1);
		note("ksmctl --user --socket %s status: no answer within 30 s with the daemon up",
		     sockpath);
	} else if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		atomic_fetch_add(&stats->api_errors, 1);
		note("ksmctl --user --socket %s status: exit %d with the daemon up", sockpath,
		     WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	}
}

static void kill_proc(struct proc *p)
{
	p->killed = true;
	kill(p->pid, SIGKILL);
}

/* Reaps what ended: a death we did not cause is a crash; the engine
 * process and the daemon are started again. */
static void reap(bool restart)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct proc *p = proc_find(pid);
		if (!p)
			continue;
		struct proc dead = *p;
		p->pid = 0;
		if (dead.killed)
			continue;
		static const char *const role_name[] = {"the engine process", "a client",
							"samepaged"};
		if (WIFSIGNALED(status)) {
			crashes[dead.role]++;
			note("%s (pid %d) was killed by signal %d (%s)", role_name[dead.role],
			     (int)pid, WTERMSIG(status), strsignal(WTERMSIG(status)));
		} else if (WEXITSTATUS(status) != 0 || (dead.role == R_DAEMON && restart)) {
			crashes[dead.role]++;
			note("%s (pid %d) exited with status %d", role_name[dead.role], (int)pid,
			     WEXITSTATUS(status));
		}
		if (!restart)
			continue;
		if (dead.role == R_ENGINE) {
			restarts++;
			start_engine_process();
		} else if (dead.role == R_DAEMON) {
			start_daemon();
		} else {
			start_client(dead.domain);
		}
	}
}

/* Waits for every process but the daemon to finish its last checks. */
static void wait_all(double limit)
{
	double end = soak_now() + limit;
	for (;;) {
		reap(false);
		bool left = false;
		for (int i = 0; i < nprocs; i++)
			left |= procs[i].pid && procs[i].role != R_DAEMON;
		if (!left)
			return;
		if (soak_now() > end)
			break;
		usleep(20000);
	}
	for (int i = 0; i < nprocs; i++)
		if (procs[i].pid && procs[i].role != R_DAEMON) {
			atomic_fetch_add(&stats->hangs, 1);
			note("pid %d did not finish within %.0f s of the end: killed",
			     (int)procs[i].pid, limit);
			kill_proc(&procs[i]);
		}
	reap(false);
}

/* ---- memory over time ---- */

static long long pss_kb(pid_t pid)
{
	char path[64], line[256];
	long long v = 0;
	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "Pss:", 4)) {
			v = atoll(line + 4);
			break;
		}
	fclose(f);
	return v;
}

struct sample {
	double t;
	uint64_t ops, bytes, mismatches, efault, shorts;
	long long kb[3];
};
#define MAXSAMPLES 4096
static struct sample samples[MAXSAMPLES];
static int nsamples;

static uint64_t sum(_Atomic uint64_t *a, int n)
{
	uint64_t s = 0;
	for (int i = 0; i < n; i++)
		s += atomic_load(&a[i]);
	return s;
}

static void take_sample(double t)
{
	struct sample s = {.t = t};
	s.ops = sum(stats->ops, NWHO);
	s.bytes = atomic_load(&stats->bytes_checked);
	s.mismatches = atomic_load(&stats->mismatch_pages);
	s.efault = sum(stats->efault, NWHO);
	s.shorts = sum(stats->short_reads, NWHO);
	for (int i = 0; i < nprocs; i++)
		if (procs[i].pid)
			s.kb[procs[i].role] += pss_kb(procs[i].pid);
	printf("t=%5.0fs ops %10llu checked %8.2f GiB mismatches %llu EFAULT %llu short %llu "
	       "crashes %d | Pss MiB: engine %.1f clients %.1f samepaged %.1f\n",
	       t, (unsigned long long)s.ops, (double)s.bytes / (1 << 30),
	       (unsigned long long)s.mismatches, (unsigned long long)s.efault,
	       (unsigned long long)s.shorts, crashes[0] + crashes[1] + crashes[2],
	       (double)s.kb[0] / 1024, (double)s.kb[1] / 1024, (double)s.kb[2] / 1024);
	fflush(stdout);
	if (nsamples < MAXSAMPLES)
		samples[nsamples++] = s;
}

static void write_csv(void)
{
	if (!o.csv)
		return;
	FILE *f = fopen(o.csv, "w");
	if (!f) {
		fprintf(stderr, "samepage_soak: cannot write %s: %s\n", o.csv, strerror(errno));
		return;
	}
	fprintf(f, "seconds,ops,bytes_checked,mismatch_pages,efault,short_reads,pss_kb_engine,"
		   "pss_kb_clients,pss_kb_samepaged\n");
	for (int i = 0; i < nsamples; i++) {
		struct sample *s = &samples[i];
		fprintf(f, "%.1f,%llu,%llu,%llu,%llu,%llu,%lld,%lld,%lld\n", s->t,
			(unsigned long long)s->ops, (unsigned long long)s->bytes,
			(unsigned long long)s->mismatches, (unsigned long long)s->efault,
			(unsigned long long)s->shorts, s->kb[0], s->kb[1], s->kb[2]);
	}
	fclose(f);
}

/* ---- the run ---- */

/* A client stopped (SIGSTOP) for a moment, as a debugger or a frozen
 * cgroup stops a VM: it may hold its domain's lock meanwhile, and the
 * others must go on (RELIABILITY.md 45). */
static pid_t stopped_pid;
static double stopped_until, next_client_stop = 1;

static void stop_or_continue(double t, uint64_t *rng)
{
	if (stopped_pid && t >= stopped_until) {
		kill(stopped_pid, SIGCONT); /* killed meanwhile: ESRCH, or a zombie */
		stopped_pid = 0;
		next_client_stop = t + 1 + (double)rnd_below(rng, 2000) / 1000;
	}
	if (!stopped_pid && t >= next_client_stop && count_role(R_CLIENT) > 0) {
		struct proc *p =
		    proc_of(R_CLIENT, (int)rnd_below(rng, (uint64_t)count_role(R_CLIENT)));
		if (kill(p->pid, SIGSTOP) == 0) {
			stopped_pid = p->pid;
			stopped_until = t + 0.2 + (double)rnd_below(rng, 800) / 1000;
			clients_stopped++;
		}
	}
}

static void chaos(double t, double *next_client_kill, double *next_daemon_kill, double *daemon_back,
		  uint64_t *rng)
{
	stop_or_continue(t, rng);
	if (*daemon_back && t >= *daemon_back) {
		*daemon_back = 0;
		start_daemon();
		check_ksmctl();
	}
	if (t >= *next_client_kill && count_role(R_CLIENT) > 0) {
		struct proc *p =
		    proc_of(R_CLIENT, (int)rnd_below(rng, (uint64_t)count_role(R_CLIENT)));
		kill_proc(p);
		clients_killed++;
		start_client(p->domain);
		*next_client_kill = t + 2 + (double)rnd_below(rng, 4000) / 1000;
	}
	if (!*daemon_back && t >= *next_daemon_kill) {
		struct proc *d = proc_of(R_DAEMON, 0);
		if (d) {
			check_ksmctl();
			kill_proc(d);
			daemon_kills++;
		}
		*daemon_back = t + 0.2 + (double)rnd_below(rng, 1800) / 1000;
		*next_daemon_kill = *daemon_back + 8 + (double)rnd_below(rng, 8000) / 1000;
	}
}

static void print_ops(void)
{
	char list[512] = "";
	for (int k = 0; k < NOPS; k++)
		if (o.on[k])
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
				 list[0] ? "," : "", op_name[k]);
	printf("%s", list[0] ? list : "(none)");
}

static int report(double elapsed)
{
	uint64_t ops = sum(stats->ops, NWHO), efault = sum(stats->efault, NWHO),
		 shorts = sum(stats->short_reads, NWHO);
	uint64_t mism = atomic_load(&stats->mismatch_pages);
	int crash = crashes[0] + crashes[1] + crashes[2] + (int)atomic_load(&stats->child_crashes);
	uint64_t sys = atomic_load(&stats->syscall_errors), api = atomic_load(&stats->api_errors);
	uint64_t hangs = atomic_load(&stats->hangs);
	bool merged = atomic_load(&stats->merged_peak) > 0 &&
		      (!o.on[OP_DAEMON] || atomic_load(&stats->merged_peak_daemon) > 0);

	printf("\nsamepage soak: %.0f s, seed %llu, ops ", elapsed, (unsigned long long)o.seed);
	print_ops();
	printf("\noperations       %llu (", (unsigned long long)ops);
	for (int k = 0, first = 1; k < NWHO; k++)
		if (atomic_load(&stats->ops[k])) {
			printf("%s%s %llu", first ? "" : ", ", op_name[k],
			       (unsigned long long)atomic_load(&stats->ops[k]));
			first = 0;
		}
	printf(")\nbytes checked    %llu (%.1f GiB)\n",
	       (unsigned long long)atomic_load(&stats->bytes_checked),
	       (double)atomic_load(&stats->bytes_checked) / (1 << 30));
	printf("mismatches       %llu pages, %llu bytes\n", (unsigned long long)mism,
	       (unsigned long long)atomic_load(&stats->mismatch_bytes));
	printf("EFAULT           %llu", (unsigned long long)efault);
	for (int k = 0; k < NWHO; k++)
		if (atomic_load(&stats->efault[k]))
			printf(" (%s %llu)", op_name[k],
			       (unsigned long long)atomic_load(&stats->efault[k]));
	printf("\nshort reads      %llu", (unsigned long long)shorts);
	for (int k = 0; k < NWHO; k++)
		if (atomic_load(&stats->short_reads[k]))
			printf(" (%s %llu)", op_name[k],
			       (unsigned long long)atomic_load(&stats->short_reads[k]));
	printf("\ncrashes          %d (engine process %d, clients %d, samepaged %d, fork children "
	       "%llu of %llu)\n",
	       crash, crashes[R_ENGINE], crashes[R_CLIENT], crashes[R_DAEMON],
	       (unsigned long long)atomic_load(&stats->child_crashes),
	       (unsigned long long)atomic_load(&stats->children));
	printf("hangs            %llu\n", (unsigned long long)hangs);
	printf("syscall errors   %llu\nAPI errors       %llu\n", (unsigned long long)sys,
	       (unsigned long long)api);
	printf("merging          pages_sharing peak %llu (engines), %llu (samepaged domains); "
	       "cow_ksm %llu; merge_window_waits %llu\n",
	       (unsigned long long)atomic_load(&stats->merged_peak),
	       (unsigned long long)atomic_load(&stats->merged_peak_daemon),
	       (unsigned long long)atomic_load(&stats->cow_ksm),
	       (unsigned long long)atomic_load(&stats->merge_window_waits));
	printf("events           knob writes %llu (ENOTCONN %llu), knob "
	       "reads %llu, run=2 %llu, "
	       "engines reopened %llu, engine process restarts %d, clients killed %d, clients "
	       "stopped %d, samepaged killed %d, ksmctl checks %d\n",
	       (unsigned long long)atomic_load(&stats->knob_writes),
	       (unsigned long long)atomic_load(&stats->knobs_enotconn),
	       (unsigned long long)atomic_load(&stats->knob_reads),
	       (unsigned long long)atomic_load(&stats->runs2),
	       (unsigned long long)atomic_load(&stats->engines_reopened), restarts, clients_killed,
	       clients_stopped, daemon_kills, ksmctl_checks);
	if (nsamples) {
		long long lo[3], hi[3];
		for (int r = 0; r < 3; r++) {
			lo[r] = hi[r] = samples[0].kb[r];
			for (int i = 1; i < nsamples; i++) {
				lo[r] = samples[i].kb[r] < lo[r] ? samples[i].kb[r] : lo[r];
				hi[r] = samples[i].kb[r] > hi[r] ? samples[i].kb[r] : hi[r];
			}
		}
		printf(
		    "memory (Pss MiB) engine %.1f..%.1f, clients %.1f..%.1f, samepaged %.1f..%.1f "
		    "over %d samples\n",
		    (double)lo[0] / 1024, (double)hi[0] / 1024, (double)lo[1] / 1024,
		    (double)hi[1] / 1024, (double)lo[2] / 1024, (double)hi[2] / 1024, nsamples);
	}
	uint32_t nrec = atomic_load(&stats->nrecords);
	for (uint32_t i = 0; i < nrec && i < SOAK_RECORDS; i++) {
		struct mismatch *m = &stats->rec[i];
		printf("mismatch %u: %s pid %d at 0x%llx (%s): expected 0x%02x, found 0x%02x (%u "
		       "bytes of the page differ); found after %s, last written by %s\n",
		       i + 1, m->who, m->pid, (unsigned long long)m->addr,
		       m->alloced ? "samepage_alloc" : "mmap", m->expected, m->actual, m->bytes,
		       op_name[m->found_by], op_name[m->last_write]);
	}
	for (int i = 0; i < SOAK_NOTES; i++) {
		struct soak_note *n = &stats->notes[i];
		if (atomic_load(&n->ready))
			printf("note: %s (%llu time%s)\n", n->text,
			       (unsigned long long)atomic_load(&n->count),
			       atomic_load(&n->count) == 1 ? "" : "s");
	}
	if (atomic_load(&stats->notes_lost))
		printf("note: ... and %llu of other kinds\n",
		       (unsigned long long)atomic_load(&stats->notes_lost));

	bool fail = mism || efault || shorts || crash || hangs || sys || api || !merged;
	printf("RESULT: %s", fail ? "FAIL" : "PASS");
	if (fail) {
		const char *sep = " (";
#define WHY(cond, text)                                                                            \
	if (cond) {                                                                                \
		printf("%s%s", sep, text);                                                         \
		sep = ", ";                                                                        \
	}
		WHY(mism, "mismatches");
		WHY(efault, "EFAULT");
		WHY(shorts, "short reads");
		WHY(crash, "crashes");
		WHY(hangs, "hangs");
		WHY(sys, "system call errors");
		WHY(api, "API errors");
		WHY(!merged, "nothing merged");
#undef WHY
		printf(")");
	}
	printf("\n");
	return fail ? 1 : 0;
}

int main(int argc, char **argv)
{
	opts = &o;
	if (parse_args(argc, argv))
		return 2;
	stats =
	    mmap(NULL, sizeof(*stats), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (stats == MAP_FAILED)
		return 2;
	snprintf(tmpdir, sizeof(tmpdir), "%s/samepage-soak-XXXXXX", o.dir);
	if (!mkdtemp(tmpdir)) {
		fprintf(stderr,
			"samepage_soak: cannot make a directory in %s: %s (fix: --dir DIR)\n",
			o.dir, strerror(errno));
		return 2;
	}
	int err = write_file();
	if (err) {
		if (err == -1)
			fprintf(stderr, "samepage_soak: cannot write %s: %s\n", o.file,
				strerror(errno));
		cleanup_dirs();
		return 2;
	}
	if (o.on[OP_DAEMON]) { /* samepaged wants its state on tmpfs */
		struct stat st;
		snprintf(statedir, sizeof(statedir), "%s/samepage-soak-XXXXXX",
			 stat("/dev/shm", &st) == 0 ? "/dev/shm" : tmpdir);
		if (!mkdtemp(statedir)) {
			fprintf(stderr, "samepage_soak: cannot make the state directory: %s\n",
				strerror(errno));
			cleanup_dirs();
			return 2;
		}
		snprintf(sockpath, sizeof(sockpath), "%s/sock", statedir);
		o.socket = sockpath;
	}
	signal(SIGINT, on_sigint);
	signal(SIGTERM, on_sigint);
	printf("samepage soak: %.0f s, seed %llu, ops ", o.duration, (unsigned long long)o.seed);
	print_ops();
	printf("\n");

	double t0 = soak_now(), next_report = o.report_every;
	double next_client_kill = 3, next_daemon_kill = 6, daemon_back = 0;
	uint64_t rng = seed_for(o.seed, 300, 0);
	if (o.on[OP_DAEMON]) {
		start_daemon();
		check_ksmctl();
		for (int i = 0; i < o.clients; i++)
			start_client(i % 2);
	}
	start_engine_process();
	double t;
	while ((t = soak_now() - t0) < o.duration && !interrupted) {
		usleep(50000);
		reap(true);
		if (o.on[OP_DAEMON])
			chaos(t, &next_client_kill, &next_daemon_kill, &daemon_back, &rng);
		if (t >= next_report) {
			take_sample(t);
			next_report += o.report_every;
		}
	}
	atomic_store(&stats->stop, 1);
	if (stopped_pid)
		kill(stopped_pid, SIGCONT);
	take_sample(soak_now() - t0);
	wait_all(120);
	if (o.on[OP_DAEMON]) {
		struct proc *d = proc_of(R_DAEMON, 0);
		if (d) {
			kill_proc(d);
			waitpid(d->pid, NULL, 0);
		}
	}
	write_csv();
	cleanup_dirs();
	return report(soak_now() - t0);
}
