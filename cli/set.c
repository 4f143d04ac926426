// SPDX-License-Identifier: MIT
/*
 * set.c - `ksmctl set`, `start`, `stop`, `unmerge`, and the plan they and
 * `apply` share (plan.h): validate every value before writing any, follow
 * the kernel's ordering rules, roll back on failure, read back.
 *
 * The kernel's rules (mm/ksm.c):
 *  - advisor_mode first: changing it resets pages_to_scan, and pages_to_scan
 *    is EINVAL while advisor_mode is scan-time;
 *  - merge_across_nodes and max_page_sharing are EBUSY while pages_shared is
 *    not 0: with --unmerge we write run=2 first and restore run after;
 *  - run last, so ksmd starts with the new settings.
 */
#include "ksmctl.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "json.h"
#include "ksmconf.h"
#include "plan.h"
#include "tune.h" /* tune_daemon_pid */

const char usage_set[] =
    "set [--unmerge] [--json] [--dry-run] [--timeout SECONDS] NAME=VALUE...\n"
    "\n"
    "Writes knobs of /sys/kernel/mm/ksm.  Every value is checked before any is\n"
    "written; if a write fails, or a value reads back other than written,\n"
    "those already made are undone.  Writes follow the kernel's order\n"
    "(advisor_mode, advisor_*, pages_to_scan, others, merge_across_nodes and\n"
    "max_page_sharing, run last).\n"
    "\n"
    "  --unmerge          allow changing merge_across_nodes or max_page_sharing\n"
    "                     while pages are merged: write run=2, wait for\n"
    "                     pages_shared to reach 0, change, restore run\n"
    "  --dry-run          check only, and show what would change\n"
    "  --json             report the read-back values as JSON (with --dry-run:\n"
    "                     what would change)\n"
    "  --timeout SECONDS  how long to wait for the unmerge (default 60); its\n"
    "                     progress is shown on a terminal\n";
const char usage_start[] =
    "start [--json] [--dry-run] [NPAGES [SLEEP]]\n"
    "\n"
    "Starts ksmd: writes run=1; with NPAGES, pages_to_scan=NPAGES first, and\n"
    "with SLEEP, sleep_millisecs=SLEEP (the form of Debian's ksmtuned package,\n"
    "`ksmctl start 5000 100`).  On a kernel with max_kernel_pages (2.6.32), it\n"
    "is set to $KSM_MAX_KERNEL_PAGES, or half the RAM's pages, as that\n"
    "package's ksmctl did.\n";
const char usage_stop[] =
    "stop [--json] [--dry-run]\n\nStops ksmd and keeps merged pages: writes run=0.\n";
const char usage_info[] =
    "info\n"
    "\n"
    "Prints \"flags RUN, pages_to_scan N, sleep_time MS\", the line of the\n"
    "original ksmctl's info (flags 1: ksmd runs; sleep_time is sleep_millisecs,\n"
    "in milliseconds).  `ksmctl status` tells more.\n";
const char usage_unmerge[] =
    "unmerge [--json] [--timeout SECONDS]\n\n"
    "Stops ksmd and unmerges every merged page: writes run=2 and waits until\n"
    "pages_shared is 0 (default 60 s), with its progress on a terminal.  This\n"
    "needs as much free memory as KSM saved (see `ksmctl status`, unmerge cost).\n";

/* ---- checking values ---- */

static void canonical(const struct samepage_knob *k, unsigned long long v, char *buf, size_t len)
{
	if (k->format == SAMEPAGE_FMT_MODE)
		snprintf(buf, len, "%s", v ? "scan-time" : "none");
	else
		snprintf(buf, len, "%llu", v);
}

int plan_add(struct plan *p, const char *name, const char *value, const char *origin)
{
	const struct samepage_knob *k;
	struct ksmconf_error e;
	char input[512], fix[sizeof(e.fix)];
	unsigned long long v;

	snprintf(input, sizeof(input), "%s=%s (%s)", name, value, origin);
	/* The rules of a config file and of samepaged's SET (ksmconf.h), so
	 * that set and apply take the same values, with the same messages. */
	snprintf(fix, sizeof(fix), "use a name of %s; `%s status` lists them",
		 opt.user ? "samepaged's knobs" : "/sys/kernel/mm/ksm", opt.self);
	if (ksmconf_check_value(name, value, &k, &v, fix, &e))
		return ksmctl_fail(KSMCTL_USAGE, input, e.fix, "%s", e.cause);
	for (int i = 0; i < p->n; i++)
		if (p->c[i].k == k)
			return ksmctl_fail(KSMCTL_USAGE, input, "give each knob once",
					   "%s is set twice (first at %s)", name, p->c[i].origin);
	if (p->n == PLAN_MAX)
		return ksmctl_fail(KSMCTL_USAGE, input, "give fewer settings", "too many settings");
	struct change *c = &p->c[p->n++];
	memset(c, 0, sizeof(*c));
	c->k = k;
	c->v = v;
	canonical(k, v, c->value, sizeof(c->value));
	snprintf(c->origin, sizeof(c->origin), "%s", origin);
	return 0;
}

static struct change *plan_find(struct plan *p, const char *name)
{
	for (int i = 0; i < p->n; i++)
		if (strcmp(p->c[i].k->name, name) == 0)
			return &p->c[i];
	return NULL;
}

static bool needs_unmerge(const struct change *c)
{
	return c->write && (strcmp(c->k->name, "merge_across_nodes") == 0 ||
			    strcmp(c->k->name, "max_page_sharing") == 0);
}

/* Reads the current value of c's knob into c->old and decides c->write. */
static int read_old(struct change *c)
{
	char text[128];
	unsigned long long cur;
	int err = opt.be->read(opt.be, c->k->name, text, sizeof(text));

	if (err)
		return err;
	if (c->k->format == SAMEPAGE_FMT_MODE)
		knob_selected(text, c->old, sizeof(c->old));
	else
		snprintf(c->old, sizeof(c->old), "%.63s", text);
	c->write = samepage_knob_parse(c->k->name, c->old, &cur) || cur != c->v;
	return 0;
}

/* "name=value (origin)": how messages name a change. */
static const char *change_input(const struct change *c, char *buf, size_t len)
{
	snprintf(buf, len, "%s=%s (%s)", c->k->name, c->value, c->origin);
	return buf;
}

static int check_writable(const struct change *c)
{
	int err = opt.be->writable(opt.be, c->k->name);
	char input[320], why[256], fix[512];

	snprintf(input, sizeof(input), "%s/%s", opt.be->where, c->k->name);
	if (err == -EROFS)
		return ksmctl_fail(KSMCTL_PERM, input,
				   "run ksmctl on the host, or give the container a writable /sys",
				   "sysfs is mounted read-only here (a container?)");
	if ((err == -EACCES || err == -EPERM) && !opt.user &&
	    root_refusal(input, err, why, sizeof(why), fix, sizeof(fix)))
		return ksmctl_fail(KSMCTL_PERM, input, fix,
				   "cannot write %s, though ksmctl runs as root: %s", c->k->name,
				   why);
	if (err == -EACCES || err == -EPERM)
		return ksmctl_fail(KSMCTL_PERM, input, "run as root (sudo ksmctl ...)",
				   "changing KSM needs root");
	if (err)
		return ksmctl_fail(KSMCTL_REFUSED, input, NULL, "cannot write %s: %s", c->k->name,
				   strerror(-err));
	return 0;
}

/* Drops a change the kernel has no file for (apply), or refuses it (set). */
static int check_present(struct plan *p, int i, const char *release)
{
	const struct change *c = &p->c[i];
	char input[320];

	change_input(c, input, sizeof(input));
	if (p->skip_absent) {
		ksmctl_warn("this kernel (Linux %s) has no %s (added in Linux %s); skipped: %s",
			    release, c->k->name, c->k->since, input);
		memmove(&p->c[i], &p->c[i + 1], sizeof(p->c[0]) * (size_t)(p->n - i - 1));
		p->n--;
		return 0;
	}
	return ksmctl_fail(KSMCTL_USAGE, input,
			   "leave it out; `ksmctl check` lists the knobs this kernel has",
			   "this kernel (Linux %s) has no %s (added in Linux %s)", release,
			   c->k->name, c->k->since);
}

/* The way out of a plan that sets pages_to_scan under the scan-time
 * advisor: a file (apply) gets "advisor_mode = none" added; set and start
 * (which cannot take advisor_mode) the whole `ksmctl set` command that
 * does it, in the plan's order: "ksmctl set advisor_mode=none
 * pages_to_scan=5000 sleep_millisecs=100 run=1". */
static const char *advisor_fix(const struct plan *p, char *fix, size_t len)
{
	size_t n;

	if (p->skip_absent) {
		snprintf(fix, len,
			 "add \"advisor_mode = none\" to the file, or leave pages_to_scan out");
		return fix;
	}
	n = (size_t)snprintf(fix, len, "%s set advisor_mode=none", opt.self);
	for (int i = 0; i < p->n && n < len; i++)
		n += (size_t)snprintf(fix + n, len - n, " %s=%s", p->c[i].k->name, p->c[i].value);
	if (n < len)
		snprintf(fix + n, len - n, ", or leave pages_to_scan out");
	return fix;
}

int plan_check(struct plan *p)
{
	char release[128] = "unknown", a[32], b[32], fix[400], input[320];
	struct change *pts, *adv;
	bool warned = false;
	int err, ret;

	if ((err = opt.be->available(opt.be)))
		return ksm_unavailable(
		    err, "build the kernel with CONFIG_KSM=y; `ksmctl check` says more");
	host_release(release, sizeof(release));
	for (int i = 0; i < p->n; i++) {
		err = read_old(&p->c[i]);
		if (err == -ENOENT) {
			if ((ret = check_present(p, i--, release)))
				return ret;
		} else if (err) {
			return ksmctl_fail(KSMCTL_REFUSED, p->c[i].k->name, NULL,
					   "cannot read %s: %s", p->c[i].k->name, strerror(-err));
		}
	}
	pts = plan_find(p, "pages_to_scan"), adv = plan_find(p, "advisor_mode");
	if (pts && adv && adv->v == 1)
		return ksmctl_fail(KSMCTL_USAGE, change_input(pts, input, sizeof(input)),
				   KSMCONF_ADVISOR_FIX, KSMCONF_ADVISOR_CAUSE);
	if (pts && !adv && knob_or("advisor_mode", 0) == 1)
		return ksmctl_fail(KSMCTL_REFUSED, change_input(pts, input, sizeof(input)),
				   advisor_fix(p, fix, sizeof(fix)),
				   "pages_to_scan cannot be set while advisor_mode is scan-time "
				   "(the advisor sets it)");
	/* Writing advisor_mode resets pages_to_scan: written after it even
	 * if it has the value asked for now. */
	if (pts && adv && adv->write && !pts->write)
		pts->write = pts->again = true;
	for (int i = 0; i < p->n; i++) {
		struct change *c = &p->c[i];
		long long shared = knob_or("pages_shared", 0);

		if (needs_unmerge(c) && shared > 0 && !p->unmerge) {
			struct ksm_derived d;
			ksm_derive(&d);
			snprintf(
			    fix, sizeof(fix),
			    "add --unmerge: ksmctl writes run=2, waits for pages_shared to "
			    "reach 0, changes %s and restores run; the unmerge needs %s of free "
			    "memory (MemAvailable %s)",
			    c->k->name, fmt_bytes(a, sizeof(a), d.unmerge_cost_bytes),
			    fmt_bytes(b, sizeof(b), d.mem_available_bytes));
			return ksmctl_fail(KSMCTL_REFUSED, change_input(c, input, sizeof(input)),
					   fix,
					   "changing %s needs every page unmerged first "
					   "(pages_shared is %lld)",
					   c->k->name, shared);
		}
		if (c->write && p->dry && !warned && (err = opt.be->writable(opt.be, c->k->name))) {
			char path[320], why[256], how[512];
			snprintf(path, sizeof(path), "%s/%s", opt.be->where, c->k->name);
			if (err == -EROFS)
				ksmctl_warn("%s is on a read-only file system: the changes below "
					    "cannot be made here",
					    path);
			else if (!opt.user &&
				 root_refusal(path, err, why, sizeof(why), how, sizeof(how)))
				ksmctl_warn("%s cannot be written, though ksmctl runs as root: %s "
					    "(fix: %s)",
					    path, why, how);
			else
				ksmctl_warn("this user cannot write %s: the changes below need "
					    "root (sudo ksmctl ...)",
					    c->k->name);
			warned = true;
		}
		if (c->write && !p->validate && !p->dry && (ret = check_writable(c)))
			return ret;
	}
	return 0;
}

/* ---- writing ---- */

static int rank(const struct samepage_knob *k)
{
	if (strcmp(k->name, "advisor_mode") == 0)
		return 0;
	if (strncmp(k->name, "advisor_", 8) == 0)
		return 1;
	if (strcmp(k->name, "pages_to_scan") == 0)
		return 2;
	if (strcmp(k->name, "merge_across_nodes") == 0 || strcmp(k->name, "max_page_sharing") == 0)
		return 4;
	return strcmp(k->name, "run") == 0 ? 5 : 3;
}

static int by_rank(const void *a, const void *b)
{
	const struct change *x = a, *y = b;
	int d = rank(x->k) - rank(y->k);

	return d ? d : (int)(x->k - y->k);
}

static void die_interrupted(const char *prev);

static int write_error(const struct change *c, int err)
{
	char input[320], path[320], why[256], fix[512];

	change_input(c, input, sizeof(input));
	snprintf(path, sizeof(path), "%s/%s", opt.be->where, c->k->name);
	if ((err == -EACCES || err == -EPERM) && !opt.user &&
	    root_refusal(path, err, why, sizeof(why), fix, sizeof(fix)))
		return ksmctl_fail(KSMCTL_PERM, input, fix,
				   "%s refused writing %s, though ksmctl runs as root: %s",
				   opt.be->who, path, why);
	if (err == -EACCES || err == -EPERM)
		return ksmctl_fail(KSMCTL_PERM, input,
				   opt.user ? "run as samepaged's user"
					    : "run as root (sudo ksmctl ...)",
				   "%s refused the write: %s", opt.be->who, strerror(-err));
	if (err == -EBUSY)
		return ksmctl_fail(KSMCTL_REFUSED, input, "add --unmerge",
				   "%s refused the write: pages are merged (EBUSY)", opt.be->who);
	if (err == -EINTR && !strcmp(c->k->name, "run"))
		die_interrupted(c->old);
	if (err == -ETIMEDOUT)
		return ksmctl_fail(
		    KSMCTL_TIMEOUT, input, "give a longer --timeout",
		    "pages_shared did not reach 0 after run=2; run is back as it was");
	return ksmctl_fail(KSMCTL_REFUSED, input, "see `ksmctl doctor`; nothing was changed",
			   "%s refused the write: %s", opt.be->who, strerror(-err));
}

/* Pages an unmerge has yet to give back their own copy. */
static long long merged_pages(void)
{
	return knob_or("pages_shared", 0) + knob_or("pages_sharing", 0) +
	       knob_or("ksm_zero_pages", 0);
}

/*
 * The progress of an unmerge, on a terminal, once it has taken a second: a
 * child process reads the merged pages left five times a second while this
 * one writes run=2 (the kernel's write returns only when every page is
 * unmerged) and waits for pages_shared to reach 0.  Returns its pid, or 0.
 * The child ends with its parent: killed (SIGTERM, SIGKILL), the parent
 * cannot stop it, and it would write to the terminal forever.
 */
static pid_t progress_start(void)
{
	long long total = merged_pages(), left;
	double start = now_seconds();
	pid_t pid, parent = getpid();

	if (!isatty(STDERR_FILENO) || total <= 0)
		return 0;
	fflush(stdout);
	fflush(stderr);
	if ((pid = fork()) != 0)
		return pid > 0 ? pid : 0;
	for (;;) {
		sleep_seconds(0.2);
		if (getppid() != parent)
			_exit(0);
		if (now_seconds() - start < 1)
			continue;
		left = merged_pages();
		left = left > total ? total : left;
		fprintf(stderr, "\r\033[Kunmerging: %3.0f%%, %lld of %lld merged pages left",
			100.0 * (double)(total - left) / (double)total, left, total);
	}
}

static void progress_stop(pid_t pid, double start)
{
	if (!pid)
		return;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	if (now_seconds() - start >= 1)
		fprintf(stderr, "\r\033[Kunmerging: done in %.1f s\n", now_seconds() - start);
}

/* A signal that ends ksmctl during an unmerge, or SIGALRM: its --timeout
 * (the kernel's write of run=2 returns only when every page is unmerged,
 * or when a signal interrupts it, which leaves run at 0). */
static volatile sig_atomic_t unmerge_signal;

static void on_unmerge_signal(int sig)
{
	unmerge_signal = sig;
}

/* Writes run=2, then waits until no page is shared, showing progress:
 * 0, the write's -errno, or -ETIMEDOUT after timeout seconds, with run
 * put back to prev (its value before).  Interrupted by SIGINT, SIGTERM or
 * SIGHUP, it puts run back too, says so, and ends by that signal. */
static int run_unmerge(double timeout, const char *prev)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGALRM};
	struct sigaction sa = {.sa_handler = on_unmerge_signal}, old[4];
	double t = timeout < 1e9 ? timeout : 1e9; /* past that, no alarm */
	struct itimerval alarm_at = {.it_value = {(time_t)t,
						  (suseconds_t)((t - (double)(time_t)t) * 1e6)}},
			 off = {{0, 0}, {0, 0}};
	double start = now_seconds();

	unmerge_signal = 0;
	for (int i = 0; i < 4; i++) { /* no SA_RESTART: the kernel's write stops */
		sigaction(sigs[i], &sa, &old[i]);
		if (old[i].sa_handler == SIG_IGN && sigs[i] != SIGALRM)
			sigaction(sigs[i], &old[i], NULL); /* ignored (a background job's) */
	}
	pid_t progress = progress_start();
	if (t < 1e9 && (alarm_at.it_value.tv_sec || alarm_at.it_value.tv_usec))
		setitimer(ITIMER_REAL, &alarm_at, NULL);
	int err = opt.be->write(opt.be, "run", "2");

	while (!err && !unmerge_signal && knob_or("pages_shared", 0) > 0) {
		if (now_seconds() - start > timeout)
			err = -ETIMEDOUT;
		else
			sleep_seconds(0.1);
	}
	setitimer(ITIMER_REAL, &off, NULL);
	for (int i = 0; i < 4; i++)
		sigaction(sigs[i], &old[i], NULL);
	progress_stop(progress, start);
	int sig = unmerge_signal;
	if (sig == SIGALRM)
		err = -ETIMEDOUT;
	else if (sig)
		err = -EINTR;
	if ((err == -ETIMEDOUT || err == -EINTR) && strcmp(prev, "2") &&
	    opt.be->write(opt.be, "run", prev))
		ksmctl_warn("could not restore run=%s", prev);
	return err;
}

/* After run_unmerge()'s -EINTR, and what was changed before it undone:
 * says so, and ends by the signal, as ksmctl would have without it. */
static void die_interrupted(const char *prev)
{
	int sig = unmerge_signal;
	char name[16];
	snprintf(name, sizeof(name), "SIG%s", sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
	ksmctl_fail(0, "run=2", "run `ksmctl unmerge` again and let it finish",
		    "interrupted by %s while unmerging: %lld merged pages left; %s%s%s, and "
		    "nothing else was changed",
		    name, merged_pages(),
		    strcmp(prev, "2") ? "run is back as it was (" : "run is as the unmerge left it",
		    strcmp(prev, "2") ? prev : "", strcmp(prev, "2") ? ")" : "");
	fflush(NULL);
	signal(sig, SIG_DFL);
	raise(sig);
	exit(128 + sig);
}

/* --unmerge: run=2 before a knob that needs it. */
static int unmerge_all(const struct plan *p, long long prev_run)
{
	char prev[24];
	int err;

	snprintf(prev, sizeof(prev), "%lld", prev_run);
	err = run_unmerge(p->timeout, prev);
	if (err == -EINTR)
		die_interrupted(prev);
	if (err == -ETIMEDOUT)
		return ksmctl_fail(KSMCTL_TIMEOUT, "run=2 (--unmerge)", "give a longer --timeout",
				   "pages_shared did not reach 0; run is back as it was");
	if (err)
		return ksmctl_fail(err == -EACCES || err == -EPERM ? KSMCTL_PERM : KSMCTL_REFUSED,
				   "run=2 (--unmerge)", "free memory, or stop a merging workload",
				   "unmerging failed: %s", strerror(-err));
	return 0;
}

static void undo(struct plan *p)
{
	for (int i = p->n - 1; i >= 0; i--) {
		struct change *c = &p->c[i];
		if (c->done && opt.be->write(opt.be, c->k->name, c->old))
			ksmctl_warn("could not restore %s=%s", c->k->name, c->old);
		c->done = false;
	}
}

static void report(const struct plan *p, bool unmerged, int mismatches)
{
	struct json j;

	const char *const *x = p->extra;

	if (!p->json) {
		if (x && strcmp(x[1], x[2]))
			printf("%s: %s -> %s\n", x[0], x[1], x[2]);
		for (int i = 0; i < p->n; i++) {
			const struct change *c = &p->c[i];
			/* Written with the value it had: run=2 again, or run put
			 * back after --unmerge's run=2. */
			if (c->again)
				printf("%s: %s (written again: writing advisor_mode resets it)\n",
				       c->k->name, c->value);
			else if (c->write && strcmp(c->old, c->value) == 0)
				printf("%s: %s (%s)\n", c->k->name, c->value,
				       strcmp(c->value, "2") ? "put back after the unmerge"
							     : "written again");
			else if (c->write)
				printf("%s: %s -> %s\n", c->k->name, c->old, c->value);
			else
				printf("%s: %s (unchanged)\n", c->k->name, c->value);
		}
		return;
	}
	json_init(&j, stdout);
	json_object_begin(&j, NULL);
	json_bool(&j, "unmerged", unmerged);
	json_bool(&j, "ok", mismatches == 0);
	json_array_begin(&j, "changes");
	if (x) {
		char now[128] = "", sel[64];
		opt.be->read(opt.be, x[0], now, sizeof(now));
		knob_selected(now, sel, sizeof(sel));
		json_object_begin(&j, NULL);
		json_string(&j, "name", x[0]);
		json_string(&j, "old", x[1]);
		json_string(&j, "new", x[2]);
		json_bool(&j, "written", true);
		json_string(&j, "read_back", sel);
		json_object_end(&j);
	}
	for (int i = 0; i < p->n; i++) {
		const struct change *c = &p->c[i];
		char now[128] = "", sel[64];

		opt.be->read(opt.be, c->k->name, now, sizeof(now));
		knob_selected(now, sel, sizeof(sel));
		json_object_begin(&j, NULL);
		json_string(&j, "name", c->k->name);
		json_string(&j, "old", c->old);
		json_string(&j, "new", c->value);
		json_bool(&j, "written", c->write);
		json_string(&j, "read_back", sel);
		json_object_end(&j);
	}
	json_array_end(&j);
	json_object_end(&j);
}

/* Compares what the kernel now reports with what was written: how many
 * differ, and the first of them (*first). */
static int read_back(const struct plan *p, const struct change **first)
{
	int bad = 0;

	for (int i = 0; i < p->n; i++) {
		const struct change *c = &p->c[i];
		char text[128], sel[64];
		unsigned long long v;

		if (opt.be->read(opt.be, c->k->name, text, sizeof(text)))
			text[0] = '\0';
		knob_selected(text, sel, sizeof(sel));
		if (samepage_knob_parse(c->k->name, sel, &v) || v != c->v) {
			ksmctl_warn("%s reads back \"%s\", not %s", c->k->name, sel, c->value);
			if (!bad++)
				*first = c;
		}
	}
	return bad;
}

/* The kernel resets pages_to_scan when advisor_mode changes: say so when
 * the plan did not set pages_to_scan itself. */
static void note_advisor_reset(struct plan *p)
{
	struct change *adv = plan_find(p, "advisor_mode");

	if (adv && adv->done && !plan_find(p, "pages_to_scan") && knob_present("pages_to_scan"))
		ksmctl_warn("changing advisor_mode reset pages_to_scan to %lld (the kernel does "
			    "that)",
			    knob_or("pages_to_scan", 0));
}

/* ksmctl tune (ksm-tune.service) writes run, pages_to_scan and
 * sleep_millisecs (and advisor_mode) at every decision: a value written
 * here lasts until its next one, which the admin should hear of now. */
static void note_tuner(const struct plan *p)
{
	static const char *const driven[] = {"run", "pages_to_scan", "sleep_millisecs",
					     "advisor_mode"};
	char which[128] = "";
	size_t n = 0, count = 0;
	int pid;

	/* Every driven knob this changed, in the plan's (the write) order. */
	for (int i = 0; i < p->n; i++)
		for (size_t k = 0; k < sizeof(driven) / sizeof(driven[0]); k++)
			if (p->c[i].done && strcmp(p->c[i].k->name, driven[k]) == 0 &&
			    n < sizeof(which)) {
				n += (size_t)snprintf(which + n, sizeof(which) - n, "%s%s",
						      count++ ? ", " : "", driven[k]);
			}
	if (count && (pid = tune_daemon_pid()))
		ksmctl_warn("ksmctl tune (pid %d) drives run, pages_to_scan and sleep_millisecs: "
			    "it will set %s again at its next decision (to keep %s, stop "
			    "it: systemctl disable --now ksm-tune.service)",
			    pid, which, count == 1 ? "this value" : "these values");
}

int plan_apply(struct plan *p)
{
	bool unmerge = false, unmerged = false;
	long long prev_run = knob_or("run", 0);
	int err, bad;

	if (p->n)
		qsort(p->c, (size_t)p->n, sizeof(p->c[0]), by_rank);
	for (int i = 0; i < p->n; i++)
		unmerge |= p->unmerge && needs_unmerge(&p->c[i]) && knob_or("pages_shared", 0) > 0;
	if (unmerge) {
		if ((err = unmerge_all(p, prev_run)))
			return err;
		/* Give run back: the requested value, or the one before the unmerge. */
		struct change *run = plan_find(p, "run");
		if (!run && prev_run != 2) {
			char v[8];
			snprintf(v, sizeof(v), "%lld", prev_run);
			if ((err = plan_add(p, "run", v, "restoring run after --unmerge")))
				return err;
			run = &p->c[p->n - 1];
			snprintf(run->old, sizeof(run->old), "%lld", prev_run);
		}
		if (run)
			run->write = true;
	}
	for (int i = 0; i < p->n; i++) {
		struct change *c = &p->c[i];
		if (!c->write)
			continue;
		bool run2 = strcmp(c->k->name, "run") == 0 && strcmp(c->value, "2") == 0;
		if ((err = run2 ? run_unmerge(p->timeout, c->old)
				: opt.be->write(opt.be, c->k->name, c->value))) {
			undo(p);
			if (unmerge && prev_run != 2) {
				char v[8];
				snprintf(v, sizeof(v), "%lld", prev_run);
				opt.be->write(opt.be, "run", v);
			}
			return write_error(c, err);
		}
		c->done = true;
		unmerged |= run2;
	}
	const struct change *first = NULL;
	bad = read_back(p, &first);
	if (bad) {
		/* All or nothing: what the kernel did not keep undoes the rest. */
		char input[320];
		undo(p);
		return ksmctl_fail(KSMCTL_REFUSED, change_input(first, input, sizeof(input)),
				   "check the value against the kernel's documentation "
				   "(admin-guide/mm/ksm)",
				   "the kernel kept %d value%s other than written (above); every "
				   "change was undone",
				   bad, bad == 1 ? "" : "s");
	}
	/* unmerged: every page was unmerged, by --unmerge or by run=2 itself. */
	report(p, unmerge || unmerged, bad);
	note_advisor_reset(p);
	note_tuner(p);
	return KSMCTL_OK;
}

void plan_diff(const struct plan *p, const char *file, const char *const extra[3])
{
	bool extra_changes = extra && strcmp(extra[1], extra[2]);
	int n = extra_changes;

	if (p->json) {
		struct json j;
		json_init(&j, stdout);
		json_object_begin(&j, NULL);
		json_bool(&j, "dry_run", true);
		if (file)
			json_string(&j, "file", file);
		json_array_begin(&j, "changes");
		if (extra) {
			json_object_begin(&j, NULL);
			json_string(&j, "name", extra[0]);
			json_string(&j, "old", extra[1]);
			json_string(&j, "new", extra[2]);
			json_bool(&j, "change", extra_changes);
			json_object_end(&j);
		}
		for (int i = 0; i < p->n; i++) {
			const struct change *c = &p->c[i];
			json_object_begin(&j, NULL);
			json_string(&j, "name", c->k->name);
			json_string(&j, "old", c->old);
			json_string(&j, "new", c->value);
			json_bool(&j, "change", c->write);
			json_object_end(&j);
			n += c->write;
		}
		json_array_end(&j);
		json_int(&j, "changed", n);
		json_object_end(&j);
		return;
	}
	if (extra_changes)
		printf("%s: %s -> %s\n", extra[0], extra[1], extra[2]);
	for (int i = 0; i < p->n; i++) {
		const struct change *c = &p->c[i];
		if (c->again)
			printf("%s: %s (written again: writing advisor_mode resets it)\n",
			       c->k->name, c->value);
		else if (c->write)
			printf("%s: %s -> %s\n", c->k->name, c->old, c->value);
		n += c->write;
	}
	if (!n)
		printf("no changes\n");
}

/* ---- the verbs ---- */

/* The options of set, stop and unmerge; each verb takes those its usage
 * lists (allowed: their letters), and refuses the others as unknown. */
static int set_args(int argc, char **argv, struct plan *p, bool *dry, const char *usage,
		    const char *allowed)
{
	static const struct option all[] = {
	    {"unmerge", no_argument, NULL, 'u'}, {"json", no_argument, NULL, 'j'},
	    {"dry-run", no_argument, NULL, 'n'}, {"timeout", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},
	};
	struct option lo[sizeof(all) / sizeof(all[0]) + 1] = {{0}};
	int c, n = 0;

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (all[i].val == 'h' || strchr(allowed, all[i].val))
			lo[n++] = all[i];
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'u')
			p->unmerge = true;
		else if (c == 'j')
			p->json = true;
		else if (c == 'n')
			*dry = p->dry = true;
		else if (c == 't' && parse_seconds(optarg, &p->timeout) == 0)
			continue;
		else if (c == 't')
			return ksmctl_fail(KSMCTL_USAGE, optarg, "give " KSMCTL_TIMEOUT_RANGE,
					   "%s: bad --timeout", argv[0]);
		else
			return verb_usage(usage, KSMCTL_USAGE);
	}
	return 0;
}

int cmd_set(int argc, char **argv)
{
	struct plan p = {.timeout = 60};
	bool dry = false;
	int ret = set_args(argc, argv, &p, &dry, usage_set, "ujnt");

	if (ret)
		return ret;
	if (optind == argc)
		return ksmctl_fail(KSMCTL_USAGE, "set", "give NAME=VALUE, e.g. ksmctl set run=1",
				   "set: nothing to set");
	for (int i = optind; i < argc; i++) {
		char name[64], origin[32];
		const char *eq = strchr(argv[i], '=');

		if (!eq || eq == argv[i] || (size_t)(eq - argv[i]) >= sizeof(name))
			return ksmctl_fail(KSMCTL_USAGE, argv[i], "write NAME=VALUE, e.g. run=1",
					   "set: expected NAME=VALUE");
		snprintf(name, sizeof(name), "%.*s", (int)(eq - argv[i]), argv[i]);
		snprintf(origin, sizeof(origin), "argument %d", i - optind + 1);
		if ((ret = plan_add(&p, name, eq + 1, origin)))
			return ret;
	}
	if ((ret = plan_check(&p)))
		return ret;
	if (dry) {
		plan_diff(&p, NULL, NULL);
		return KSMCTL_OK;
	}
	return plan_apply(&p);
}

/* start, stop and unmerge: set run=N. */
static int set_run(int argc, char **argv, const char *value, const char *usage, const char *allowed)
{
	struct plan p = {.timeout = 60};
	bool dry = false;
	int ret = set_args(argc, argv, &p, &dry, usage, allowed);

	if (ret)
		return ret;
	if (optind < argc)
		return ksmctl_fail(KSMCTL_USAGE, argv[optind], "it takes no arguments",
				   "%s: unexpected argument", argv[0]);
	if ((ret = plan_add(&p, "run", value, argv[0])) || (ret = plan_check(&p)))
		return ret;
	/* run=2 twice unmerges again (pages merged since): always write it. */
	p.c[0].write |= strcmp(value, "2") == 0;
	if (dry) {
		plan_diff(&p, NULL, NULL);
		return KSMCTL_OK;
	}
	return plan_apply(&p);
}

/* max_kernel_pages (2.6.32 only): $KSM_MAX_KERNEL_PAGES, or half the RAM's
 * pages (PROC/meminfo's MemTotal), as the ksmctl of Debian's ksmtuned package wrote at start.
 * *old is empty when this kernel has no such file. */
static int max_kernel_pages(char *old, size_t olen, char *value, size_t vlen)
{
	const char *env = getenv("KSM_MAX_KERNEL_PAGES");
	long long v;

	old[0] = '\0';
	if (opt.user || opt.be->read(opt.be, "max_kernel_pages", old, olen)) {
		old[0] = '\0';
		return 0;
	}
	if (env && *env) {
		if (parse_count(env, &v))
			return ksmctl_fail(KSMCTL_USAGE, env,
					   "give a number of pages, or unset it for half the RAM",
					   "start: bad KSM_MAX_KERNEL_PAGES");
	} else {
		/* The RAM of the machine --proc-root names (a recorded tree's
		 * meminfo), not this one's. */
		long long kb = host_meminfo_kb("MemTotal");
		if (kb <= 0) {
			char path[PATH_MAX];
			snprintf(path, sizeof(path), "%s/meminfo", opt.proc_root);
			return ksmctl_fail(KSMCTL_REFUSED, path,
					   "set KSM_MAX_KERNEL_PAGES to a number of pages",
					   "start: no MemTotal to size max_kernel_pages from");
		}
		v = sat_mul(kb, 1024) / page_size() / 2;
	}
	snprintf(value, vlen, "%lld", v);
	return 0;
}

int cmd_start(int argc, char **argv)
{
	static const char *const legacy[] = {"pages_to_scan", "sleep_millisecs"};
	struct plan p = {.timeout = 60};
	char old[64], mkp[32] = "", origin[64];
	bool dry = false;
	int ret = set_args(argc, argv, &p, &dry, usage_start, "jn"), err;

	if (ret)
		return ret;
	if (argc - optind > 2)
		return ksmctl_fail(KSMCTL_USAGE, argv[optind + 2],
				   "give at most NPAGES and SLEEP: ksmctl start 5000 100",
				   "start: unexpected argument");
	for (int i = optind; i < argc; i++) {
		long long v;
		if (parse_count(argv[i], &v))
			return ksmctl_fail(KSMCTL_USAGE, argv[i],
					   i == optind ? "NPAGES is pages_to_scan, e.g. 5000"
						       : "SLEEP is sleep_millisecs, e.g. 100",
					   "start: %s must be a whole number",
					   i == optind ? "NPAGES" : "SLEEP");
		snprintf(origin, sizeof(origin), "start %s", i == optind ? "NPAGES" : "SLEEP");
		if ((ret = plan_add(&p, legacy[i - optind], argv[i], origin)))
			return ret;
	}
	if ((ret = plan_add(&p, "run", "1", argv[0])) || (ret = plan_check(&p)) ||
	    (ret = max_kernel_pages(old, sizeof(old), mkp, sizeof(mkp))))
		return ret;
	if (dry) {
		const char *const extra[3] = {"max_kernel_pages", old, mkp};
		plan_diff(&p, NULL, old[0] ? extra : NULL);
		return KSMCTL_OK;
	}
	if (old[0] && (err = opt.be->write(opt.be, "max_kernel_pages", mkp)))
		return ksmctl_fail(KSMCTL_REFUSED, mkp, NULL,
				   "the kernel refused max_kernel_pages: %s", strerror(-err));
	const char *const written[3] = {"max_kernel_pages", old, mkp};
	if (old[0])
		p.extra = written;
	ret = plan_apply(&p);
	if (ret && old[0])
		opt.be->write(opt.be, "max_kernel_pages", old);
	return ret;
}

int cmd_info(int argc, char **argv)
{
	int err;

	if (argc > 1)
		return ksmctl_fail(KSMCTL_USAGE, argv[1],
				   "info takes no arguments; for scripts, ksmctl status --json",
				   "info: unexpected argument");
	if ((err = opt.be->available(opt.be)))
		return ksm_unavailable(err, "build the kernel with CONFIG_KSM=y");
	/* A knob that cannot be read is an error, not a 0: "flags 0" would
	 * tell a script that ksmd is stopped. */
	static const char *const names[] = {"run", "pages_to_scan", "sleep_millisecs"};
	long long v[3];
	for (int i = 0; i < 3; i++)
		if ((err = knob_number(names[i], &v[i])))
			return ksmctl_fail(KSMCTL_REFUSED, names[i],
					   "`ksmctl status` shows every knob and counter",
					   "info: cannot read %s: %s", names[i], strerror(-err));
	printf("flags %lld, pages_to_scan %lld, sleep_time %lld\n", v[0], v[1], v[2]);
	return KSMCTL_OK;
}

int cmd_stop(int argc, char **argv)
{
	return set_run(argc, argv, "0", usage_stop, "jn");
}

int cmd_unmerge(int argc, char **argv)
{
	return set_run(argc, argv, "2", usage_unmerge, "jt");
}
