// SPDX-License-Identifier: MIT
/*
 * tune-pressure.c - `ksmctl tune`'s own policy (--policy pressure, the
 * default).
 *
 * Three questions at every decision, each answered from the reading:
 *
 * 1. Is merging worth it?  Memory is needed when MemAvailable is below
 *    --available percent of MemTotal, or when tasks stall on memory (PSI
 *    "some avg10" at --psi percent or more).  It stays needed until
 *    MemAvailable is 5 points above the threshold and the stalls are under
 *    half of theirs (no flapping at the edge).  Not needed: run=0, which
 *    costs no CPU and keeps every merged page merged.  --always: always
 *    needed.
 *
 * 2. Is there anything to merge?  The pages saved (pages_sharing +
 *    ksm_zero_pages) and tracked (shared + sharing + unshared + volatile)
 *    are marked when they change by more than 1%, and the memory of
 *    mergeable processes when it grows by more than 2% (a guest arrives or
 *    grows before ksmd has seen its pages); SIGUSR1 marks too (libvirt's
 *    hook sends it when a guest starts).  Converging: a change since the
 *    mark.  Converged: what merging needs has been scanned since, without
 *    a change.  A page merges at a visit whose checksum equals the last
 *    one's: against the stable tree, or against a page the cursor passed
 *    earlier in the same full scan (the unstable tree lasts one full
 *    scan).  So new pages (a guest, pages tracked) need a whole full
 *    scan in which every page had been seen before: two full scans
 *    (full_scans) since they came.  A change of the pages saved alone
 *    (merging under way, pages written or freed) needs every page looked
 *    at once more with nothing merging: a full scan's worth (the pages
 *    tracked) of pages_scanned (6.6+) since the mark, up to a full scan
 *    sooner than two full scans; what could still merge in the scan after
 *    is a page written just before its visit, which idle's budget merges.
 *    Without pages_scanned (before 6.6), and always as well, two full
 *    scans since the mark.
 *    While converging it decides every second, not every interval: at the
 *    budget a full scan takes seconds, and the full scans ksmd makes after
 *    converging and before the next decision merge nothing (measured in
 *    BENCHMARKS.md, "Tuning": with the interval's 10 s, 39 full scans
 *    where the static settings made 29).  Idle, the daemon reads
 *    AnonPages every second between decisions (tune.c) and decides at
 *    once when it grew by more than the mergeable memory's 2% (64 MiB at
 *    least): a guest arriving then waited up to the interval.  Stopped,
 *    it reads MemAvailable the same way and decides at once when it falls
 *    below --available (merging started 5-10 s late in the benchmark).
 *
 * 3. How fast?  Converging: ksmd gets --max-cpu percent of a CPU, or
 *    less where a full scan of the mergeable memory every SCAN_PERIOD_S
 *    needs less: merging costs full scans, not time, and a full scan
 *    that spans several decisions shows where its changes were, so that
 *    the last change is seen near where it happened (at 30%, 3 GiB of
 *    guests took 4-5 full scans per arrival); idle,
 *    --idle-cpu, enough for ksmd to notice new pages and re-merge pages
 *    written meanwhile, at near-zero cost (its pages_to_scan rewritten
 *    only when the budget's is more than twice or less than half of it).  The cost of a page
 * (ksmd's CPU seconds per page scanned) is measured over every interval, from ksmd's CPU time and
 * pages_scanned (or, before 6.6, from the rate the knobs asked for), and the pages_to_scan of a
 * budget follows: a batch of P pages costs P * cost, then ksmd sleeps S, so its share of a CPU is
 * P*cost / (S + P*cost).
 *
 *    The kernel's scan-time advisor (6.8+) is not used unless --advisor
 *    asks for it, because it is the wrong tool here, measured (see
 *    BENCHMARKS.md, "Tuning"): writing advisor_mode=scan-time zeroes its
 *    context, so its first adjustment counts all of ksmd's CPU time since
 *    boot as spent on one scan and cuts pages_to_scan to a few dozen
 *    pages (90 from 21428 here), which makes the next full scan, and so
 *    the next adjustment, minutes away; and its floor of 10% CPU
 *    (KSM_ADVISOR_MIN_CPU) forbids idling.  Converging starts every time
 *    something arrives, when speed matters most.  With --advisor,
 *    converging is handed to it (advisor_max_cpu the budget,
 *    advisor_target_scan_time 1 for the fastest scan the budget allows,
 *    advisor_min_pages_to_scan the budget's pages) and idle turns it off.
 */
#include "tune.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define SLEEP_MS 100		     /* between batches, in every phase */
#define DEFAULT_COST 2e-6	     /* seconds of ksmd CPU per page until measured */
#define MIN_PAGES 16		     /* the smallest batch we set */
#define MAX_PAGES 1000000	     /* the largest */
#define ADVISOR_MIN_CPU 10	     /* the kernel's KSM_ADVISOR_MIN_CPU */
#define HYSTERESIS_PCT 5	     /* needed until MemAvailable is this far above */
#define MERGEABLE_MIN_KB (64 * 1024) /* growth of mergeable memory that counts */
#define IDLE_SLACK 2		     /* idle: pages_to_scan kept within this factor */
#define CONVERGING_CHECK_S 1.0	     /* converging: decide again this soon */
#define SCAN_PERIOD_S 3		     /* converging: a full scan takes no less (the log says 3) */

void pressure_defaults(struct pressure_conf *c)
{
	memset(c, 0, sizeof(*c));
	c->available_pct = 20;
	c->psi_pct = 1;
	c->max_cpu = 30;
	c->idle_cpu = 1;
}

long long pressure_pages_for(double cpu_pct, long long sleep_ms, double cost)
{
	double f = cpu_pct / 100, p;

	if (f >= 1)
		return MAX_PAGES;
	p = f * (double)sleep_ms / 1000 / (cost * (1 - f));
	return p < MIN_PAGES ? MIN_PAGES : p > MAX_PAGES ? MAX_PAGES : (long long)p;
}

static long long saved_pages(const struct tune_reading *r)
{
	return r->sharing + (r->zero_pages > 0 ? r->zero_pages : 0);
}

static long long tracked_pages(const struct tune_reading *r)
{
	return r->shared + r->sharing + r->unshared + r->volatile_pages;
}

/* Converging, the pages_to_scan that gives a full scan of the mergeable
 * memory (what ksmd tracks, or the mergeable processes' VmRSS if more)
 * every SCAN_PERIOD_S, or 0 if not known. */
static long long paced_pages(const struct tune_reading *r)
{
	long long pages = tracked_pages(r), kb_per_page = sysconf(_SC_PAGESIZE) / 1024;

	if (r->mergeable_kb > 0 && kb_per_page > 0 && r->mergeable_kb / kb_per_page > pages)
		pages = r->mergeable_kb / kb_per_page;
	if (pages <= 0)
		return 0;
	pages = pages * SLEEP_MS / (1000 * SCAN_PERIOD_S);
	return pages < MIN_PAGES ? MIN_PAGES : pages;
}

/* Growth of memory that counts as something new to merge, over base_kb
 * of mergeable memory: 2% of it, and MERGEABLE_MIN_KB at least. */
static long long growth_kb(long long base_kb)
{
	return base_kb / 50 > MERGEABLE_MIN_KB ? base_kb / 50 : MERGEABLE_MIN_KB;
}

bool pressure_wake(const struct pressure_state *s, long long base_kb, long long anon_kb)
{
	return s->phase == PHASE_IDLE && base_kb >= 0 && anon_kb >= 0 &&
	       anon_kb - base_kb > growth_kb(s->mark_mergeable > 0 ? s->mark_mergeable : 0);
}

bool pressure_wake_stopped(const struct pressure_conf *c, const struct pressure_state *s,
			   long long avail_kb, long long total_kb)
{
	return s->phase == PHASE_STOPPED && avail_kb >= 0 && total_kb > 0 &&
	       100.0 * (double)avail_kb / (double)total_kb < c->available_pct;
}

/* More than 1% (and 256 pages) away from the mark. */
static bool moved(long long now, long long mark)
{
	long long d = now - mark, tol = (mark > 0 ? mark : 0) / 100;

	return (d < 0 ? -d : d) > (tol > 256 ? tol : 256);
}

static double pct(long long part, long long whole)
{
	return whole > 0 && part >= 0 ? 100.0 * (double)part / (double)whole : NAN;
}

/* The stalls read, for a log line: "0.25%", or what it is where PSI is
 * not there (a kernel without it, or booted with it off, as Debian's are):
 * never "0.00%", which would say no task stalled. */
static void stalls_text(const struct tune_reading *r, char *buf, size_t len)
{
	if (isnan(r->psi_some10))
		snprintf(buf, len, "unknown (no PSI)");
	else
		snprintf(buf, len, "%.2f%%", r->psi_some10);
}

/* Memory needed?  Sets why; keeps s->needed with its hysteresis. */
static bool needed(const struct pressure_conf *c, struct pressure_state *s,
		   const struct tune_reading *r, char *why, size_t len)
{
	double avail = pct(r->mem_available_kb, r->mem_total_kb);
	bool low = avail < c->available_pct;
	bool stall = !isnan(r->psi_some10) && r->psi_some10 >= c->psi_pct;

	if (c->always) {
		snprintf(why, len, "merging always (--always)");
		return s->needed = true;
	}
	if (low || stall) {
		if (stall)
			snprintf(why, len, "memory needed: tasks stall on memory %.2f%% >= %g%%",
				 r->psi_some10, c->psi_pct);
		else
			snprintf(why, len, "memory needed: MemAvailable %.1f%% < %g%%", avail,
				 c->available_pct);
		return s->needed = true;
	}
	if (s->needed && (avail < c->available_pct + HYSTERESIS_PCT ||
			  (!isnan(r->psi_some10) && r->psi_some10 >= c->psi_pct / 2))) {
		snprintf(why, len, "memory still needed: MemAvailable %.1f%% < %g%% (hysteresis)",
			 avail, c->available_pct + HYSTERESIS_PCT);
		return true;
	}
	char stalls[64];
	stalls_text(r, stalls, sizeof(stalls));
	snprintf(why, len, "memory plentiful: MemAvailable %.1f%% >= %g%%, stalls %s%s%g%%", avail,
		 s->needed ? c->available_pct + HYSTERESIS_PCT : c->available_pct, stalls,
		 isnan(r->psi_some10) ? ", not compared with " : " < ", c->psi_pct);
	return s->needed = false;
}

/* A change: converging starts again from here.  new_pages: the change
 * brought pages ksmd has not visited twice (a guest, pages tracked). */
static void mark(struct pressure_state *s, const struct tune_reading *r, bool new_pages)
{
	s->mark_scans = r->full_scans;
	s->mark_scanned = r->scanned;
	if (new_pages)
		s->new_scans = r->full_scans;
	s->mark_saved = saved_pages(r);
	s->mark_items = tracked_pages(r);
	s->mark_mergeable = r->mergeable_kb;
}

/* Learns the cost of a page from the last interval, if ksmd ran under the
 * same knobs all along. */
static void learn_cost(struct pressure_state *s, const struct tune_reading *r)
{
	const struct tune_reading *p = &s->prev;
	double dt = r->t - p->t, dcpu = r->ksmd_cpu_s - p->ksmd_cpu_s, cost = 0;

	if (!s->have_prev || dt <= 0 || isnan(dcpu) || dcpu < 0 || p->run != 1 || r->run != 1)
		return;
	if (r->scanned >= 0 && p->scanned >= 0 && r->scanned - p->scanned >= 1000) {
		cost = dcpu / (double)(r->scanned - p->scanned);
	} else if (r->scanned < 0 && p->pages_to_scan == r->pages_to_scan &&
		   p->sleep_ms == r->sleep_ms && p->pages_to_scan > 0 && dcpu > 0) {
		/* f = P*cost / (S + P*cost), solved for cost. */
		double f = dcpu / dt;
		if (f < 0.99)
			cost =
			    f * (double)r->sleep_ms / 1000 / ((double)r->pages_to_scan * (1 - f));
	}
	if (cost > 0)
		s->cost = s->cost > 0 ? (s->cost + cost) / 2 : cost;
}

/* What ksmd's CPU was over the last interval, for the log: percent or NAN. */
static double cpu_pct(const struct pressure_state *s, const struct tune_reading *r)
{
	double dt = r->t - s->prev.t;

	if (!s->have_prev || dt <= 0 || isnan(r->ksmd_cpu_s) || isnan(s->prev.ksmd_cpu_s))
		return NAN;
	return 100 * (r->ksmd_cpu_s - s->prev.ksmd_cpu_s) / dt;
}

void pressure_decide(const struct pressure_conf *c, struct pressure_state *s,
		     const struct tune_reading *r, struct tune_decision *d)
{
	char need[160], what[256] = "";
	double cost, cpu = cpu_pct(s, r);
	bool use_advisor, paced = false;
	long long full = tracked_pages(r), scans = r->full_scans - s->mark_scans, scanned = -1;
	/* What counts as new pages, whichever change the log names first. */
	bool grew = full > s->mark_items && moved(full, s->mark_items);
	bool arrived = r->mergeable_kb >= 0 && s->mark_mergeable >= 0 &&
		       r->mergeable_kb - s->mark_mergeable > growth_kb(s->mark_mergeable);
	long long woken_kb = s->woken_kb;

	memset(&d->set, 0xff, sizeof(d->set)); /* every knob -1: left alone */
	s->woken_kb = 0;
	learn_cost(s, r);
	cost = s->cost > 0 ? s->cost : DEFAULT_COST;
	if (r->scanned >= 0 && s->mark_scanned >= 0 && r->scanned >= s->mark_scanned)
		scanned = r->scanned - s->mark_scanned;
	if (!needed(c, s, r, need, sizeof(need))) {
		s->phase = PHASE_STOPPED;
		d->set.run = 0;
		d->state = "stopped";
		snprintf(d->why, sizeof(d->why), "%s: run=0 (merged pages stay merged)", need);
		goto out;
	}
	if (s->phase == PHASE_STOPPED || s->kick || r->full_scans < s->mark_scans) {
		snprintf(what, sizeof(what), "%s",
			 s->kick		     ? "SIGUSR1: something new to merge"
			 : s->phase == PHASE_STOPPED ? "merging starts"
						     : "the counters were reset");
		mark(s, r, true);
		s->phase = PHASE_CONVERGING;
		s->kick = false;
	} else if (moved(saved_pages(r), s->mark_saved)) {
		snprintf(what, sizeof(what), "pages saved changed: %lld -> %lld", s->mark_saved,
			 saved_pages(r));
		mark(s, r, grew || arrived);
		s->phase = PHASE_CONVERGING;
	} else if (grew) {
		snprintf(what, sizeof(what), "new pages tracked: %lld -> %lld", s->mark_items,
			 full);
		mark(s, r, true);
		s->phase = PHASE_CONVERGING;
	} else if (arrived) {
		snprintf(what, sizeof(what), "mergeable processes grew: %lld -> %lld kB",
			 s->mark_mergeable, r->mergeable_kb);
		mark(s, r, true);
		s->phase = PHASE_CONVERGING;
	} else if (scans >= 2) {
		snprintf(what, sizeof(what), "converged: pages saved steady over %lld full scans",
			 scans);
		s->phase = PHASE_IDLE;
	} else if (scanned >= full && full > 0 && r->full_scans - s->new_scans >= 2) {
		snprintf(what, sizeof(what),
			 "converged: pages saved steady over %lld pages scanned (a full scan's "
			 "worth: %lld), new pages %lld full scans old",
			 scanned, full, r->full_scans - s->new_scans);
		s->phase = PHASE_IDLE;
	} else if (scanned >= 0 && full > 0) {
		snprintf(what, sizeof(what),
			 "%s: %lld of 2 full scans without change, or %lld of %lld pages scanned "
			 "(a full scan's worth) with new pages 2 full scans old (%lld)",
			 s->phase == PHASE_IDLE ? "idle" : "converging", scans, scanned, full,
			 r->full_scans - s->new_scans);
	} else {
		snprintf(what, sizeof(what), "%s: %lld of 2 full scans without change",
			 s->phase == PHASE_IDLE ? "idle" : "converging", scans);
	}
	if (woken_kb > 0) {
		size_t o = strlen(what);
		snprintf(what + o, sizeof(what) - o,
			 " (decided at once: AnonPages grew %lld kB since the last decision)",
			 woken_kb);
	}
	if (r->mergeable_kb >= 0 && (s->mark_mergeable < 0 || r->mergeable_kb < s->mark_mergeable))
		s->mark_mergeable = r->mergeable_kb;

	use_advisor = c->advisor && c->has_advisor && c->max_cpu >= ADVISOR_MIN_CPU &&
		      s->phase == PHASE_CONVERGING;
	d->set.run = 1;
	d->set.sleep_ms = SLEEP_MS;
	if (use_advisor) {
		d->set.advisor_max_cpu = (long long)c->max_cpu;
		d->set.advisor_target = 1;
		d->set.advisor_min_pages = pressure_pages_for(c->max_cpu, SLEEP_MS, cost);
		d->set.advisor_mode = 1;
	} else {
		long long p = pressure_pages_for(s->phase == PHASE_IDLE ? c->idle_cpu : c->max_cpu,
						 SLEEP_MS, cost),
			  pace = s->phase == PHASE_CONVERGING ? paced_pages(r) : 0;
		if (pace > 0 && pace < p) {
			p = pace;
			paced = true;
		}
		/* Idle, the cost measured over 10 s of a 1% budget wanders (a few
		 * clock ticks of ksmd): the value in place stands within a factor
		 * of IDLE_SLACK, so that idle is quiet. */
		if (s->phase == PHASE_IDLE && r->advisor_mode != 1 && r->pages_to_scan > 0 &&
		    p <= IDLE_SLACK * r->pages_to_scan && IDLE_SLACK * p >= r->pages_to_scan)
			p = r->pages_to_scan;
		if (c->has_advisor)
			d->set.advisor_mode = 0;
		d->set.pages_to_scan = p;
	}
	d->state = s->phase == PHASE_IDLE ? "idle" : "converging";
	/* Converging ends two full scans after the last change, which at the
	 * budget takes seconds: waiting the whole interval at the converging
	 * budget would spend it on full scans that merge nothing. */
	if (s->phase == PHASE_CONVERGING)
		d->next_s = CONVERGING_CHECK_S;
	snprintf(d->why, sizeof(d->why), "%s; %s; %s %g%% CPU at %.2f us/page%s", need, what,
		 s->phase == PHASE_IDLE ? "idle budget" : "budget",
		 s->phase == PHASE_IDLE ? c->idle_cpu : c->max_cpu, cost * 1e6,
		 use_advisor ? ", by the kernel's scan-time advisor"
		 : paced     ? ", paced to a full scan every 3 s"
			     : "");
out:;
	char cpu_text[32] = "not measured yet", stalls[64];
	if (!isnan(cpu))
		snprintf(cpu_text, sizeof(cpu_text), "%.1f%%", cpu);
	stalls_text(r, stalls, sizeof(stalls));
	snprintf(d->read, sizeof(d->read),
		 "MemAvailable %.1f%%, stalls %s, ksmd CPU %s, full_scans %lld, saved %lld, "
		 "tracked %lld, mergeable %lld kB in %d processes",
		 pct(r->mem_available_kb, r->mem_total_kb), stalls, cpu_text, r->full_scans,
		 saved_pages(r), tracked_pages(r), r->mergeable_kb, r->mergeable_procs);
	/* The next interval runs under the knobs decided now. */
	s->prev = *r;
	if (d->set.run >= 0)
		s->prev.run = d->set.run;
	if (d->set.pages_to_scan >= 0)
		s->prev.pages_to_scan = d->set.pages_to_scan;
	if (d->set.sleep_ms >= 0)
		s->prev.sleep_ms = d->set.sleep_ms;
	s->have_prev = true;
}
