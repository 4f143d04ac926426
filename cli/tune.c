// SPDX-License-Identifier: MIT
/*
 * tune.c - `ksmctl tune`: a small daemon that drives pages_to_scan,
 * sleep_millisecs and run (and the scan-time advisor's knobs) of the
 * kernel's KSM, or of samepaged with --user.
 *
 * Every interval, or at once on SIGUSR1 (libvirt's hook and ksmtuned's
 * `retune`) or, idle under the pressure policy, when AnonPages grows (one
 * file read a second), it takes a reading (tune-read.c), lets the policy decide
 * (tune-pressure.c, the default; tune-ksmtuned.c, ksmtuned's algorithm),
 * writes the knobs that differ, in the kernel's order, and logs one line:
 * what it read, what it set and why (the daemon: only a decision that
 * changes something, or that SIGUSR1 asked for).  --once decides once and exits;
 * --state FILE keeps the policy's memory across --once runs (cron).
 * SIGTERM, SIGINT and SIGHUP end it; it leaves the knobs as they are,
 * unless --restore asks it to put back those it found.
 */
#include "ksmctl.h"
#include "tune.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "json.h"

const char usage_tune[] =
    "tune [--policy pressure|ksmtuned] [--interval SECONDS] [--once] [--json]\n"
    "       [--dry-run] [--restore] [--state FILE]\n"
    "       [--available PCT] [--psi PCT] [--always] [--max-cpu PCT] [--idle-cpu PCT]\n"
    "       [--advisor]                                 (--policy pressure)\n"
    "       [--config FILE]                             (--policy ksmtuned)\n"
    "\n"
    "Drives pages_to_scan, sleep_millisecs and run: a small daemon, ksmtuned's\n"
    "successor.  A decision that changes a knob or the state, and every one\n"
    "SIGUSR1 asks for, is logged in one line: what it read, what it set, why.\n"
    "SIGUSR1 decides at once.\n"
    "\n"
    "  --policy pressure  (default) merge while memory is needed (MemAvailable,\n"
    "                     PSI), within a CPU budget for ksmd, near-idle once\n"
    "                     merging has converged\n"
    "  --policy ksmtuned  ksmtuned's algorithm and /etc/ksmtuned.conf\n"
    "  --interval SECONDS between decisions (pressure: 10; ksmtuned:\n"
    "                     KSM_MONITOR_INTERVAL, 60)\n"
    "  --once             decide once, now, and exit\n"
    "  --json             print each decision as a JSON object, one per line\n"
    "  --dry-run          decide and log, write nothing\n"
    "  --restore          on exit, put back the knobs found at start\n"
    "  --state FILE       keep the policy's memory in FILE (for --once from cron), a\n"
    "                     regular file replaced by a rename (a directory, or a file\n"
    "                     that is no state file, is refused)\n"
    "  --available PCT    memory is needed below PCT% of MemTotal available (20)\n"
    "  --psi PCT          ... or when tasks stall on memory PCT% of the time (1)\n"
    "  --always           merge whether memory is needed or not\n"
    "  --max-cpu PCT      ksmd's CPU budget while merging, % of one CPU (30)\n"
    "  --idle-cpu PCT     its budget once merging has converged (1)\n"
    "  --advisor          let the kernel's scan-time advisor (6.8+) keep ksmd\n"
    "                     within the budget while merging (see ksmctl(1))\n"
    "  --config FILE      ksmtuned's file (default /etc/ksmtuned.conf; defaults\n"
    "                     if that is missing)\n";

/* The knobs a decision may set, in the order they are written: the
 * advisor's before advisor_mode (the mode starts from them), advisor_mode
 * before pages_to_scan (a change of mode resets pages_to_scan), run last. */
static const struct {
	const char *name;
	size_t off;
} order[] = {
    {"advisor_max_cpu", offsetof(struct tune_settings, advisor_max_cpu)},
    {"advisor_min_pages_to_scan", offsetof(struct tune_settings, advisor_min_pages)},
    {"advisor_target_scan_time", offsetof(struct tune_settings, advisor_target)},
    {"advisor_mode", offsetof(struct tune_settings, advisor_mode)},
    {"pages_to_scan", offsetof(struct tune_settings, pages_to_scan)},
    {"sleep_millisecs", offsetof(struct tune_settings, sleep_ms)},
    {"run", offsetof(struct tune_settings, run)},
};
#define NORDER (sizeof(order) / sizeof(order[0]))

static long long *setting(struct tune_settings *s, size_t i)
{
	return (long long *)((char *)s + order[i].off);
}

struct tuner {
	bool ksmtuned, once, json, dry, restore;
	bool journal;	   /* stdout is the journal, which stamps each line itself */
	bool usr1;	   /* this decision was asked for by SIGUSR1 */
	const char *state; /* the last decision's state */
	double interval;
	const char *state_file;
	struct ksmtuned_conf kc;
	struct ksmtuned_state ks;
	struct pressure_conf pc;
	struct pressure_state ps;
	struct tune_settings found; /* the knobs at start, for --restore */
	int decisions;
	bool unreadable; /* the last reading failed: said once, until one works */
	double next;	 /* seconds to the next decision */
	long long anon;	 /* AnonPages at the last decision, the lowest since; -1 unknown */
};

/* ---- writing ---- */

/* The text of knob i's value v: advisor_mode's by name, others' numbers. */
static const char *value_text(size_t i, long long v, char *buf, size_t len)
{
	if (strcmp(order[i].name, "advisor_mode") == 0)
		return v ? "scan-time" : "none";
	snprintf(buf, len, "%lld", v);
	return buf;
}

/* Writes the knobs of s that differ from their current value (dry: only
 * lists them), "name=value ..." in done: 0, or the first error (-errno)
 * with *failed naming the knob. */
static int write_settings(struct tune_settings *s, bool dry, const char **failed, char *done,
			  size_t len)
{
	int err = 0;
	size_t o = 0;

	done[0] = '\0';
	for (size_t i = 0; i < NORDER; i++) {
		long long want = *setting(s, i), now;
		char buf[32];
		const char *text;

		if (want < 0 || (knob_number(order[i].name, &now) == 0 && now == want))
			continue;
		text = value_text(i, want, buf, sizeof(buf));
		if (!dry && (err = opt.be->write(opt.be, order[i].name, text))) {
			*failed = order[i].name;
			return err;
		}
		if (o < len)
			o += (size_t)snprintf(done + o, len - o, "%s%s=%s", o ? " " : "",
					      order[i].name, text);
	}
	return 0;
}

static void describe(const struct tune_settings *s, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < NORDER && o < len; i++) {
		long long v = *setting((struct tune_settings *)s, i);
		char text[32];

		if (v >= 0)
			o += (size_t)snprintf(buf + o, len - o, "%s%s=%s", o ? " " : "",
					      order[i].name, value_text(i, v, text, sizeof(text)));
	}
}

/* ---- logging ---- */

/* A reading's count, null where it is not known here (-1); its doubles
 * are NAN there, which json_double() writes as null. */
static void json_known(struct json *j, const char *key, long long v)
{
	if (v < 0)
		json_null(j, key);
	else
		json_int(j, key, v);
}

static void json_reading(struct json *j, const struct tune_reading *r)
{
	json_object_begin(j, "read");
	json_double(j, "uptime_seconds", r->t);
	json_known(j, "mem_total_kb", r->mem_total_kb);
	json_known(j, "mem_free_kb", r->mem_free_kb);
	json_known(j, "buffers_kb", r->buffers_kb);
	json_known(j, "cached_kb", r->cached_kb);
	json_known(j, "mem_available_kb", r->mem_available_kb);
	json_double(j, "psi_memory_some_avg10", r->psi_some10);
	json_known(j, "committed_kb", r->committed_kb);
	json_known(j, "mergeable_kb", r->mergeable_kb);
	json_known(j, "mergeable_processes", r->mergeable_procs);
	json_double(j, "ksmd_cpu_seconds", r->ksmd_cpu_s);
	json_known(j, "run", r->run);
	json_known(j, "pages_to_scan", r->pages_to_scan);
	json_known(j, "sleep_millisecs", r->sleep_ms);
	/* As set writes it (and the "set" part below says it): a word. */
	json_string(j, "advisor_mode",
		    r->advisor_mode < 0 ? NULL
		    : r->advisor_mode	? "scan-time"
					: "none");
	json_known(j, "full_scans", r->full_scans);
	json_known(j, "pages_shared", r->shared);
	json_known(j, "pages_sharing", r->sharing);
	json_known(j, "pages_unshared", r->unshared);
	json_known(j, "pages_volatile", r->volatile_pages);
	json_known(j, "ksm_zero_pages", r->zero_pages);
	json_known(j, "pages_scanned", r->scanned);
	json_object_end(j);
}

/* changes: the knobs written, or with --dry-run those that would be: the
 * text line names only them (the JSON's "set" is the whole decision). */
static void log_decision(const struct tuner *t, const struct tune_reading *r,
			 const struct tune_decision *d, const char *changes, int err,
			 const char *failed)
{
	const char *written = t->dry ? "" : changes;
	char set[256];

	describe(&d->set, set, sizeof(set));
	if (t->json) {
		struct json j;

		json_init_line(&j, stdout); /* a decision per line: the journal's records */
		json_object_begin(&j, NULL);
		json_string(&j, "policy", t->ksmtuned ? "ksmtuned" : "pressure");
		json_string(&j, "state", d->state);
		json_reading(&j, r);
		json_object_begin(&j, "set");
		for (size_t i = 0; i < NORDER; i++) {
			long long v = *setting((struct tune_settings *)&d->set, i);
			if (v >= 0 && strcmp(order[i].name, "advisor_mode") == 0)
				json_string(&j, order[i].name, v ? "scan-time" : "none");
			else if (v >= 0)
				json_int(&j, order[i].name, v);
		}
		json_object_end(&j);
		json_string(&j, "written", written);
		json_bool(&j, "dry_run", t->dry);
		json_string(&j, "error", err ? strerror(-err) : NULL);
		json_string(&j, "why", d->why);
		json_object_end(&j);
	} else {
		char stamp[32] = "";
		time_t now = time(NULL);

		if (!t->journal)
			strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S ", localtime(&now));
		/* Only what changes: "set advisor_mode=none" of a knob that was
		 * none already would read as a change. */
		bool already = !*changes && set[0] && !err;

		printf("%stune %s %s: read %s; set %s%s%s%s%s; why %s\n", stamp,
		       t->ksmtuned ? "ksmtuned" : "pressure", d->state, d->read,
		       *changes ? changes : "nothing",
		       err		    ? " (failed)"
		       : t->dry && *changes ? " (dry run: nothing written)"
					    : "",
		       already ? " (already " : "", already ? set : "", already ? ")" : "", d->why);
	}
	if (err)
		ksmctl_warn("tune: writing %s: %s", failed, strerror(-err));
	fflush(stdout);
}

/* Is stdout the journal?  systemd says so in JOURNAL_STREAM=DEV:INODE. */
static bool stdout_is_journal(void)
{
	const char *v = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	return v && sscanf(v, "%llu:%llu", &dev, &ino) == 2 && fstat(STDOUT_FILENO, &st) == 0 &&
	       (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

/* ---- the policy's memory across --once runs ---- */

#define F(s, m, kind)                                                                              \
	{                                                                                          \
#s "." #m, offsetof(struct tuner, s.m), kind                                       \
	}
enum { LL, DBL, BOOL, INT };
static const struct {
	const char *name;
	size_t off;
	int kind;
} state_fields[] = {
    F(ks, started, BOOL),
    F(ks, total, LL),
    F(ks, sleep, LL),
    F(ks, thres, LL),
    F(ks, npages, LL),
    F(ps, have_prev, BOOL),
    F(ps, needed, BOOL),
    F(ps, phase, INT),
    F(ps, mark_scans, LL),
    F(ps, mark_scanned, LL),
    F(ps, new_scans, LL),
    F(ps, mark_saved, LL),
    F(ps, mark_items, LL),
    F(ps, mark_mergeable, LL),
    F(ps, cost, DBL),
    F(ps, prev.t, DBL),
    F(ps, prev.ksmd_cpu_s, DBL),
    F(ps, prev.run, LL),
    F(ps, prev.pages_to_scan, LL),
    F(ps, prev.sleep_ms, LL),
    F(ps, prev.scanned, LL),
};
#undef F

/* state_save writes FILE.tmp, then renames it over FILE. */
static void state_tmp(const struct tuner *t, char *tmp, size_t len)
{
	snprintf(tmp, len, "%s.tmp", t->state_file);
}

/* Why state_save's rename over the state file would fail, checked before
 * any knob is written (with --dry-run too): 0, or the exit status.  A
 * directory (or a device) cannot be replaced, nor a file of another user
 * in a sticky directory such as /tmp; a file FILE.tmp can be written where
 * those can (state_save only warned then, at every decision). */
static int state_check(const struct tuner *t)
{
	static const char fix[] = "name a file in a directory you can write, or leave --state out";
	char dir[PATH_MAX];
	const char *slash = strrchr(t->state_file, '/');
	struct stat st, ds;

	if (stat(t->state_file, &st))
		return errno == ENOENT
			   ? 0 /* none yet */
			   : ksmctl_fail(KSMCTL_USAGE, t->state_file, fix,
					 "tune: cannot use the state file: %s", strerror(errno));
	int ret = ksmctl_replaceable("tune", t->state_file, "the state file",
				     "name a file (e.g. DIR/ksm-tune.state), or leave --state out");
	if (ret)
		return ret;
	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - t->state_file) + 1 : 1,
		 slash ? t->state_file : ".");
	if (geteuid() != 0 && st.st_uid != geteuid() && stat(dir, &ds) == 0 &&
	    (ds.st_mode & S_ISVTX) && ds.st_uid != geteuid())
		return ksmctl_fail(KSMCTL_USAGE, t->state_file, fix,
				   "tune: cannot replace the state file: another user's file in a "
				   "sticky directory (%s)",
				   dir);
	return 0;
}

/* Loads the state file, if there is one: 0, or the exit status for a
 * state file that could not be written (before any knob is). */
static int state_load(struct tuner *t)
{
	char line[256] = "", name[128], tmp[PATH_MAX];
	double v;
	FILE *f;
	int fd, ret;

	if (!t->state_file)
		return 0;
	if ((ret = state_check(t)))
		return ret;
	state_tmp(t, tmp, sizeof(tmp));
	if (!t->dry && (fd = open(tmp, O_WRONLY | O_CREAT | O_CLOEXEC, 0644)) < 0)
		return ksmctl_fail(KSMCTL_USAGE, t->state_file,
				   "name a file in a directory you can write, or leave --state out",
				   "tune: cannot write the state file: %s", strerror(errno));
	if (!t->dry) {
		close(fd);
		unlink(tmp);
	}
	if (!(f = fopen(t->state_file, "re")))
		return 0; /* none yet: the policy starts afresh */
	int known = 0;
	while (fgets(line, sizeof(line), f)) {
		size_t i;
		if (sscanf(line, "%127s %lf", name, &v) != 2)
			break;
		for (i = 0; i < sizeof(state_fields) / sizeof(state_fields[0]); i++)
			if (strcmp(name, state_fields[i].name) == 0)
				break;
		if (i == sizeof(state_fields) / sizeof(state_fields[0]))
			break;
		char *p = (char *)t + state_fields[i].off;
		if (state_fields[i].kind == LL)
			*(long long *)p = (long long)v;
		else if (state_fields[i].kind == DBL)
			*(double *)p = v;
		else if (state_fields[i].kind == BOOL)
			*(bool *)p = v != 0;
		else
			*(int *)p = (int)v;
		known++;
	}
	if (!feof(f) && !known) {
		/* Not one at all (a typo'd --state /etc/passwd): the first
		 * decision would replace it. */
		char shown[PROCFS_ESCAPED_SIZE(60)];
		line[strcspn(line, "\n")] = '\0';
		line[60] = '\0';
		fclose(f);
		return ksmctl_fail(
		    KSMCTL_USAGE, t->state_file,
		    "name the file ksmctl tune keeps its state in (a new one is "
		    "made), or remove this one if it is a state file after all",
		    "tune: not a state file ksmctl wrote (its first line is \"%s\"): "
		    "tune would replace it",
		    procfs_escape(line, shown, sizeof(shown)));
	}
	if (!feof(f)) {
		line[strcspn(line, "\n")] = '\0';
		ksmctl_warn("tune: %s: not a state file this ksmctl wrote (line \"%.60s\"); "
			    "starting afresh",
			    t->state_file, line);
		memset(&t->ks, 0, sizeof(t->ks));
		memset(&t->ps, 0, sizeof(t->ps));
	}
	fclose(f);
	return 0;
}

static void state_save(const struct tuner *t)
{
	char tmp[PATH_MAX];
	FILE *f;

	if (!t->state_file || t->dry)
		return;
	state_tmp(t, tmp, sizeof(tmp));
	if (!(f = fopen(tmp, "we"))) {
		ksmctl_warn("tune: cannot write %s: %s", tmp, strerror(errno));
		return;
	}
	for (size_t i = 0; i < sizeof(state_fields) / sizeof(state_fields[0]); i++) {
		const char *p = (const char *)t + state_fields[i].off;
		double v = state_fields[i].kind == LL	  ? (double)*(const long long *)p
			   : state_fields[i].kind == DBL  ? *(const double *)p
			   : state_fields[i].kind == BOOL ? *(const bool *)p
							  : *(const int *)p;
		fprintf(f, "%s %.17g\n", state_fields[i].name, v);
	}
	if (fclose(f) || rename(tmp, t->state_file))
		ksmctl_warn("tune: cannot write %s: %s", t->state_file, strerror(errno));
}

/* ---- one decision ---- */

static int decide(struct tuner *t)
{
	struct tune_reading r;
	struct tune_decision d = {.state = ""};
	const char *failed = NULL;
	char changes[256] = ""; /* written, or with --dry-run would be */
	int err = tune_read(&r);

	if (err && t->decisions == 0)
		return ksmctl_fail(KSMCTL_NO, opt.be->where,
				   "check that KSM is there and PROC/meminfo and PROC/uptime are "
				   "readable",
				   "tune: cannot read the memory or KSM state: %s", strerror(-err));
	if (err) { /* later: samepaged restarting, say; the next interval retries */
		char cause[512] = "", fix[512];
		int gone = opt.be->available(opt.be);

		if (gone && opt.be->explain)
			opt.be->explain(opt.be, gone, cause, sizeof(cause), fix, sizeof(fix));
		/* Once per outage: one line each interval would fill the journal. */
		if (!t->unreadable)
			ksmctl_warn("tune: cannot read the memory or KSM state: %s; retrying every "
				    "interval, quietly until it can",
				    cause[0] ? cause : strerror(-err));
		t->unreadable = true;
		return 0;
	}
	if (t->unreadable)
		ksmctl_warn("tune: the memory and KSM state can be read again");
	t->unreadable = false;
	if (t->ksmtuned) {
		ksmtuned_decide(&t->kc, &t->ks, &r, &d);
	} else {
		pressure_decide(&t->pc, &t->ps, &r, &d);
	}
	err = write_settings(&d.set, t->dry, &failed, changes, sizeof(changes));
	/* The daemon logs what changes something, not every unchanged
	 * decision (8640 lines a day at the default interval). */
	if (t->once || t->dry || !t->decisions || t->usr1 || err || changes[0] ||
	    strcmp(d.state, t->state))
		log_decision(t, &r, &d, changes, err, failed);
	t->state = d.state;
	t->anon = r.anon_kb;
	t->next = d.next_s > 0 && d.next_s < t->interval ? d.next_s : t->interval;
	t->usr1 = false;
	t->decisions++;
	state_save(t);
	if (err && t->decisions == 1)
		return err == -EACCES || err == -EPERM || err == -EROFS ? KSMCTL_PERM
									: KSMCTL_REFUSED;
	return 0;
}

/* ---- --restore ---- */

static void remember_found(struct tuner *t)
{
	memset(&t->found, 0xff, sizeof(t->found));
	for (size_t i = 0; i < NORDER; i++) {
		long long v;
		if (knob_number(order[i].name, &v) == 0)
			*setting(&t->found, i) = v;
	}
}

static void restore_found(struct tuner *t)
{
	struct tune_settings s = t->found;
	const char *failed = NULL;
	char done[256];
	int err;

	/* Under the advisor pages_to_scan is its own: leave it. */
	if (s.advisor_mode == 1)
		s.pages_to_scan = -1;
	err = write_settings(&s, false, &failed, done, sizeof(done));
	if (err)
		ksmctl_warn("tune: restoring %s: %s", failed, strerror(-err));
	else if (!t->json)
		printf("tune: restored %s\n", done[0] ? done : "nothing (unchanged)");
}

/* ---- options ---- */

static int bad_number(const char *opt_name, const char *value, const char *range)
{
	char fix[128];

	snprintf(fix, sizeof(fix), "give %s", range);
	return ksmctl_fail(KSMCTL_USAGE, value, fix, "tune: bad value for %s", opt_name);
}

static int parse_pct(const char *name, const char *s, double lo, double *out)
{
	double v;

	if (parse_plain_number(s, &v) || !(v >= lo && v <= 100)) {
		char range[64];
		snprintf(range, sizeof(range), "a percentage from %g to 100", lo);
		return bad_number(name, s, range);
	}
	*out = v;
	return 0;
}

static int parse_options(struct tuner *t, int argc, char **argv, const char **config,
			 bool *pressure_opt)
{
	static const struct option lo[] = {
	    {"policy", required_argument, NULL, 'p'},  {"interval", required_argument, NULL, 'i'},
	    {"once", no_argument, NULL, 'o'},	       {"json", no_argument, NULL, 'j'},
	    {"dry-run", no_argument, NULL, 'n'},       {"restore", no_argument, NULL, 'r'},
	    {"state", required_argument, NULL, 's'},   {"available", required_argument, NULL, 'a'},
	    {"psi", required_argument, NULL, 'P'},     {"always", no_argument, NULL, 'A'},
	    {"max-cpu", required_argument, NULL, 'm'}, {"idle-cpu", required_argument, NULL, 'I'},
	    {"advisor", no_argument, NULL, 'N'},       {"config", required_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},	       {0},
	};
	int c, ret = 0;

	while (!ret && (c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (strchr("aPAmIN", c))
			*pressure_opt = true;
		switch (c) {
		case 'p':
			if (strcmp(optarg, "ksmtuned") && strcmp(optarg, "pressure"))
				return ksmctl_fail(KSMCTL_USAGE, optarg,
						   "give --policy pressure or --policy ksmtuned",
						   "tune: unknown policy");
			t->ksmtuned = strcmp(optarg, "ksmtuned") == 0;
			break;
		case 'i':
			if (parse_seconds(optarg, &t->interval) || t->interval < 0.1 ||
			    t->interval > 86400)
				return bad_number("--interval", optarg,
						  "a number of seconds from 0.1 to 86400");
			break;
		case 'o': t->once = true; break;
		case 'j': t->json = true; break;
		case 'n': t->dry = true; break;
		case 'r': t->restore = true; break;
		case 's':
			if (!*optarg)
				return ksmctl_empty_value(
				    "tune", "--state", "a file",
				    "name the state file, or leave --state out");
			t->state_file = optarg;
			break;
		case 'a': ret = parse_pct("--available", optarg, 0, &t->pc.available_pct); break;
		case 'P': ret = parse_pct("--psi", optarg, 0, &t->pc.psi_pct); break;
		case 'A': t->pc.always = true; break;
		case 'm': ret = parse_pct("--max-cpu", optarg, 0.1, &t->pc.max_cpu); break;
		case 'I': ret = parse_pct("--idle-cpu", optarg, 0.01, &t->pc.idle_cpu); break;
		case 'N': t->pc.advisor = true; break;
		case 'c':
			if (!*optarg)
				return ksmctl_empty_value(
				    "tune", "--config", "a file",
				    "name ksmtuned's file, or leave --config out for its defaults");
			*config = optarg;
			break;
		default: return verb_usage(usage_tune, KSMCTL_USAGE);
		}
	}
	if (ret)
		return ret;
	if (optind < argc)
		return ksmctl_fail(KSMCTL_USAGE, argv[optind], "see ksmctl tune --help",
				   "tune: unexpected argument");
	if (t->ksmtuned && *pressure_opt)
		return ksmctl_fail(KSMCTL_USAGE, "--policy ksmtuned",
				   "leave out --available, --psi, --always, --max-cpu, --idle-cpu "
				   "and --advisor: ksmtuned's algorithm takes its values from "
				   "ksmtuned.conf",
				   "tune: options of the pressure policy with --policy ksmtuned");
	if (!t->ksmtuned && *config)
		return ksmctl_fail(KSMCTL_USAGE, *config,
				   "add --policy ksmtuned, or leave --config out",
				   "tune: --config is ksmtuned's file, for --policy ksmtuned");
	if (t->pc.advisor && t->pc.max_cpu < 10)
		return ksmctl_fail(KSMCTL_USAGE, "--advisor",
				   "give --max-cpu 10 or more, or leave --advisor out",
				   "tune: the scan-time advisor keeps ksmd at 10%% CPU at least");
	if (t->pc.idle_cpu > t->pc.max_cpu)
		return ksmctl_fail(KSMCTL_USAGE, "--idle-cpu",
				   "give an --idle-cpu no larger than --max-cpu",
				   "tune: the idle budget is above the budget (%g%% > %g%%)",
				   t->pc.idle_cpu, t->pc.max_cpu);
	return 0;
}

static int read_ksmtuned_conf(struct tuner *t, const char *config)
{
	struct ksmconf_error err;
	const char *path = config ? config : "/etc/ksmtuned.conf";
	int ret = ksmtuned_conf_read(path, &t->kc, &err);

	if (ret == -ENOENT && !config)
		return 0; /* as ksmtuned: no file, the defaults */
	if (ret)
		return ksmctl_fail(KSMCTL_USAGE, err.input, err.fix, "%s", err.cause);
	return 0;
}

/* ---- the loop ---- */

/* Waits up to seconds for a signal of set: the signal, or 0 on timeout. */
static int wait_signal(const sigset_t *set, double seconds)
{
	struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
	int sig;

	do
		sig = sigtimedwait(set, NULL, &ts);
	while (sig < 0 && errno == EINTR);
	return sig < 0 ? 0 : sig;
}

/* Seconds of CLOCK_MONOTONIC. */
static double monotonic_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits for the next decision: t->next seconds, or less for a signal of
 * set (returned; 0 otherwise).  Idle or stopped, the pressure policy
 * decides only every interval, so that a guest arriving then waited up to
 * 10 s for ksmd's converging budget (BENCHMARKS.md, "Tuning"), and memory
 * that ran short as long for merging to start; instead /proc/meminfo is
 * read every IDLE_CHECK_S, one file and no walk of PROC: idle, AnonPages
 * grown beyond what the policy counts as new (pressure_wake()), stopped,
 * MemAvailable below --available (pressure_wake_stopped()) decide now. */
#define IDLE_CHECK_S 1.0
static int wait_next(struct tuner *t, const sigset_t *set)
{
	double end = monotonic_s() + t->next, left;
	long long anon, avail, total;
	int sig;

	if (t->ksmtuned || (t->ps.phase == PHASE_IDLE && t->anon < 0) ||
	    (t->ps.phase != PHASE_IDLE && t->ps.phase != PHASE_STOPPED))
		return wait_signal(set, t->next);
	while ((left = end - monotonic_s()) > 0) {
		if ((sig = wait_signal(set, left < IDLE_CHECK_S ? left : IDLE_CHECK_S)))
			return sig;
		tune_read_mem(&anon, &avail, &total);
		if (pressure_wake_stopped(&t->pc, &t->ps, avail, total))
			return 0;
		if (t->ps.phase != PHASE_IDLE || anon < 0)
			continue;
		if (pressure_wake(&t->ps, t->anon, anon)) {
			t->ps.woken_kb = anon - t->anon;
			return 0;
		}
		/* The lowest since the decision: a guest that leaves and another
		 * that comes is something new. */
		if (anon < t->anon)
			t->anon = anon;
	}
	return 0;
}

int cmd_tune(int argc, char **argv)
{
	struct tuner t = {.interval = -1, .anon = -1, .ps.mark_scanned = -1};
	const char *config = NULL;
	bool pressure_opt = false;
	sigset_t set;
	int ret, pid;

	ksmtuned_defaults(&t.kc);
	pressure_defaults(&t.pc);
	if ((ret = parse_options(&t, argc, argv, &config, &pressure_opt)))
		return ret;
	if (t.ksmtuned && (ret = read_ksmtuned_conf(&t, config)))
		return ret;
	if (t.interval < 0)
		t.interval = t.ksmtuned ? (double)t.kc.interval : 10;
	if ((ret = opt.be->available(opt.be)))
		return ksm_unavailable(ret, "use a kernel built with CONFIG_KSM=y");
	if (!t.dry && (ret = opt.be->writable(opt.be, "run"))) {
		char path[320], why[256], fix[512];
		snprintf(path, sizeof(path), "%s/run", opt.be->where);
		if (!opt.user && root_refusal(path, ret, why, sizeof(why), fix, sizeof(fix)))
			return ksmctl_fail(
			    KSMCTL_PERM, path, fix,
			    "tune: cannot change KSM, though ksmctl runs as root: %s", why);
		return ksmctl_fail(KSMCTL_PERM, opt.be->where,
				   ret == -EROFS ? "tune KSM from the host: /sys is read-only here"
						 : "run as root, or add --dry-run",
				   "tune: cannot change KSM: %s", strerror(-ret));
	}
	if (!opt.user && (pid = tune_ksmtuned_pid()))
		ksmctl_warn("tune: ksmtuned is running (pid %d) and rewrites the same knobs; "
			    "stop it: systemctl disable --now ksmtuned.service",
			    pid);
	/* Another ksmctl tune daemon on the same KSM (ksm-tune.service, while
	 * one is started by hand or from cron): each undoes the other's
	 * decisions.  set and apply say so; so does tune. */
	if (!t.dry && (pid = tune_daemon_pid()))
		ksmctl_warn("tune: another ksmctl tune (pid %d) drives the same %s and rewrites "
			    "the same knobs at its decisions; stop one of them (systemctl stop "
			    "ksm-tune.service)",
			    pid, opt.user ? "samepaged" : "KSM");
	t.pc.has_advisor = knob_present("advisor_mode");
	if (t.pc.advisor && !t.pc.has_advisor)
		ksmctl_warn(
		    "tune: %s has no scan-time advisor (Linux 6.8+): ksmctl keeps ksmd within "
		    "the budget itself",
		    opt.be->who);
	if ((ret = state_load(&t)))
		return ret;
	t.journal = stdout_is_journal();
	if (t.restore)
		remember_found(&t);

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	/* ksmtuned decides after its first interval; the pressure policy at once. */
	int sig = t.ksmtuned && !t.once ? wait_signal(&set, t.interval) : 0;
	while (sig == 0 || sig == SIGUSR1) {
		if (sig == SIGUSR1)
			t.ps.kick = t.usr1 = true;
		if ((ret = decide(&t)) || t.once)
			break;
		sig = wait_next(&t, &set);
	}
	if (t.restore && !t.dry)
		restore_found(&t);
	return ret;
}
