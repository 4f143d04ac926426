// SPDX-License-Identifier: MIT
/*
 * wait.c - `ksmctl wait`: returns after N more full scans, or once merging
 * has converged: pages_sharing did not grow over two full scans.  This is
 * the signal that benchmarks and density tests need instead of a sleep.
 *
 * full_scans is sampled every 50 ms.  A run=2 resets it to 0; wait then
 * starts counting again.  Progress goes to stderr when it is a terminal.
 */
#include "ksmctl.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "json.h"

const char usage_wait[] =
    "wait [--scans N | --converged] [--timeout SECONDS] [--json]\n"
    "\n"
    "Waits until ksmd has completed N more full scans (default 1), or with\n"
    "--converged until pages_sharing has not grown over two full scans.\n"
    "Exits 1 if ksmd is not running, 4 on timeout.\n"
    "\n"
    "  --scans N          full scans to wait for\n"
    "  --converged        wait for pages_sharing to stop growing\n"
    "  --timeout SECONDS  give up after SECONDS, at most a year (default: never;\n"
    "                     0: check once)\n"
    "  --json             report the result as JSON\n";

/* pages_sharing at the end of recent full scans, newest last. */
struct history {
	long long scan[8], sharing[8];
	int n;
};

static void remember(struct history *h, long long scan, long long sharing)
{
	if (h->n == 8) {
		memmove(h->scan, h->scan + 1, sizeof(h->scan[0]) * 7);
		memmove(h->sharing, h->sharing + 1, sizeof(h->sharing[0]) * 7);
		h->n--;
	}
	h->scan[h->n] = scan, h->sharing[h->n] = sharing, h->n++;
}

/* Converged: the newest value is no larger than one two or more scans older. */
static bool converged(const struct history *h)
{
	for (int i = h->n - 2; i >= 0; i--)
		if (h->scan[h->n - 1] - h->scan[i] >= 2)
			return h->sharing[h->n - 1] <= h->sharing[i];
	return false;
}

static void report(bool json, const char *result, long long start, long long scans,
		   long long sharing, double elapsed)
{
	struct json j;

	if (!json) {
		printf("%s: full_scans %lld (+%lld), pages_sharing %lld, %.1f s\n", result, scans,
		       scans - start, sharing, elapsed);
		return;
	}
	json_init(&j, stdout);
	json_object_begin(&j, NULL);
	json_string(&j, "result", result);
	json_int(&j, "full_scans_start", start);
	json_int(&j, "full_scans", scans);
	json_int(&j, "pages_sharing", sharing);
	json_double(&j, "elapsed_seconds", elapsed);
	json_object_end(&j);
}

/* ksmd does not scan at all while no process has mergeable memory, and
 * full_scans then never moves: say so rather than wait in silence. */
static void warn_if_nothing_to_scan(void)
{
	struct proc_list l;

	if (others_unseen()) /* nothing is known of theirs */
		return;
	if (proc_list_collect(&l) == 0 && l.accounted && l.n == 0)
		ksmctl_warn("no process has mergeable memory, so ksmd does not scan and full_scans "
			    "will not advance (ksmctl doctor)");
	proc_list_free(&l);
}

int cmd_wait(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"scans", required_argument, NULL, 's'},   {"converged", no_argument, NULL, 'c'},
	    {"timeout", required_argument, NULL, 't'}, {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},	       {0},
	};
	long long want = -1, start, scans, sharing, base;
	double timeout = -1, t0 = now_seconds(); /* -1: no --timeout, never give up */
	bool conv = false, json = false, tty = isatty(2);
	struct history h = {.n = 0};
	char fix[64];
	int c, err;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 's' && (parse_count(optarg, &want) || want < 1))
			return ksmctl_fail(KSMCTL_USAGE, optarg,
					   "give a whole number of scans, 1 or more",
					   "wait: bad --scans");
		else if (c == 't' && parse_seconds(optarg, &timeout))
			return ksmctl_fail(KSMCTL_USAGE, optarg, "give " KSMCTL_TIMEOUT_RANGE,
					   "wait: bad --timeout");
		else if (c == 'c')
			conv = true;
		else if (c == 'j')
			json = true;
		else if (c != 's' && c != 't')
			return verb_usage(usage_wait, KSMCTL_USAGE);
	}
	if (optind < argc || (conv && want > 0))
		return ksmctl_fail(KSMCTL_USAGE,
				   optind < argc ? argv[optind] : "--scans --converged",
				   "give --scans N or --converged", "wait: bad arguments");
	if (want < 0)
		want = 1;
	if (opt.be->explain && (err = opt.be->available(opt.be)))
		return ksm_unavailable(err, NULL);
	if (knob_number("full_scans", &start))
		return ksmctl_fail(KSMCTL_NO, opt.be->where, "run `ksmctl check`",
				   "wait: KSM is not available");
	base = start;
	warn_if_nothing_to_scan();
	remember(&h, start, knob_or("pages_sharing", 0));
	for (;;) {
		double elapsed = now_seconds() - t0;

		scans = knob_or("full_scans", 0);
		sharing = knob_or("pages_sharing", 0);
		if (scans < base) /* run=2 reset the count: start over */
			base = start = scans, h.n = 0;
		if (h.n == 0 || scans != h.scan[h.n - 1])
			remember(&h, scans, sharing);
		if (conv ? converged(&h) : scans - base >= want) {
			if (tty)
				fputs("\r\033[K", stderr);
			report(json, conv ? "converged" : "scanned", start, scans, sharing,
			       elapsed);
			return KSMCTL_OK;
		}
		long long run = 0;
		/* run unreadable: samepaged stopped (--user) or KSM went away,
		 * which "start it" would not fix. */
		if (knob_number("run", &run) && (err = opt.be->available(opt.be))) {
			if (tty)
				fputs("\r\033[K", stderr);
			return ksm_unavailable(err, "run `ksmctl check`");
		}
		if (run != 1) {
			snprintf(fix, sizeof(fix), "start it: %s start", opt.self);
			return ksmctl_fail(KSMCTL_NO, "run", fix,
					   "wait: ksmd is not running (run = %lld)", run);
		}
		if (timeout >= 0 && elapsed >= timeout) {
			if (tty)
				fputs("\r\033[K", stderr);
			if (json)
				report(json, "timeout", start, scans, sharing, elapsed);
			return ksmctl_fail(KSMCTL_TIMEOUT, NULL, "give a longer --timeout",
					   "wait: not %s after %g s", conv ? "converged" : "done",
					   timeout);
		}
		if (tty)
			fprintf(stderr,
				"\r\033[Kfull_scans %lld (+%lld), pages_sharing %lld, %.0f s",
				scans, scans - start, sharing, elapsed);
		sleep_seconds(0.05);
	}
}
