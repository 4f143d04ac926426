/* SPDX-License-Identifier: MIT */
/*
 * tune.h - `ksmctl tune`: what it reads, its two policies, and what they
 * decide.
 *
 * A decision is a pure function of a reading (struct tune_reading: the
 * files of /proc and /sys/kernel/mm/ksm, or samepaged's counters, at one
 * moment), the policy's configuration and its state (what it remembers from
 * earlier decisions).  tune-read.c takes readings, tune-ksmtuned.c and
 * tune-pressure.c decide, tune.c writes the decision and logs it; the tests
 * run the policies on recorded trees (--sysfs-root, --proc-root) and check
 * the knobs written.
 */
#ifndef KSMCTL_TUNE_H
#define KSMCTL_TUNE_H

#include <stdbool.h>
#include <stddef.h>

#include "ksmconf.h"

/* What a decision reads.  -1 (or NAN) is "not known here". */
struct tune_reading {
	double t; /* seconds since boot: PROC/uptime, so that a recorded tree has a clock */
	long long mem_total_kb, mem_free_kb, buffers_kb, cached_kb, mem_available_kb;
	long long anon_kb;	/* AnonPages: what the idle check between decisions watches */
	double psi_some10;	/* PROC/pressure/memory "some avg10", percent; NAN without PSI */
	long long committed_kb; /* ksmtuned's: VmRSS of the processes named like QEMU */
	long long mergeable_kb; /* VmRSS of the processes with mergeable memory */
	int mergeable_procs;
	double ksmd_cpu_s; /* the scanner's CPU time: ksmd, or samepaged's clients' threads */
	/* The knobs as they are. */
	long long run, pages_to_scan, sleep_ms,
	    advisor_mode; /* advisor_mode: 0 none, 1 scan-time */
	/* The counters. */
	long long full_scans, sharing, shared, unshared, volatile_pages, zero_pages, scanned;
};

/* What a decision sets; -1 leaves a knob as it is. */
struct tune_settings {
	long long run, pages_to_scan, sleep_ms;
	long long advisor_mode, advisor_max_cpu, advisor_min_pages, advisor_target;
};

struct tune_decision {
	struct tune_settings set;
	const char *state; /* "stopped", "converging", "idle"; ksmtuned's "boost", "decay" */
	double next_s;	   /* decide again within this many seconds; 0: at the interval */
	char read[320];	   /* what it read, for the log line */
	char why[768];	   /* the reasons */
};

/* ---- ksmtuned's algorithm (tune-ksmtuned.c) ---- */

/* /etc/ksmtuned.conf's variables, with ksmtuned's defaults. */
struct ksmtuned_conf {
	long long interval;		  /* KSM_MONITOR_INTERVAL, seconds: 60 */
	long long sleep_msec;		  /* KSM_SLEEP_MSEC, for a 16 GiB host: 10 */
	long long boost, decay;		  /* KSM_NPAGES_BOOST 300, KSM_NPAGES_DECAY -50 */
	long long npages_min, npages_max; /* KSM_NPAGES_MIN 64, KSM_NPAGES_MAX 1250 */
	long long thres_coef;		  /* KSM_THRES_COEF, percent of MemTotal: 20 */
	long long thres_const;		  /* KSM_THRES_CONST, kB: 2048 */
};

/* What ksmtuned computes once at start (total, sleep, thres) and npages. */
struct ksmtuned_state {
	bool started;
	long long total, sleep, thres, npages;
};

void ksmtuned_defaults(struct ksmtuned_conf *c);
/* Reads a ksmtuned.conf (shell "NAME=VALUE" lines, '#' comments, the
 * variables above plus LOGFILE and DEBUG, which are accepted and unused):
 * 0, or -errno with err filled as common/ksmconf.c fills it (the file and
 * line, the cause, the fix).  A missing file is -ENOENT. */
int ksmtuned_conf_read(const char *path, struct ksmtuned_conf *c, struct ksmconf_error *err);
/* ksmtuned's adjust(): stop below the thresholds, else boost or decay
 * npages and start. */
void ksmtuned_decide(const struct ksmtuned_conf *c, struct ksmtuned_state *s,
		     const struct tune_reading *r, struct tune_decision *d);

/* ---- the pressure policy (tune-pressure.c) ---- */

struct pressure_conf {
	double available_pct; /* merging is needed below this MemAvailable, % of MemTotal */
	double psi_pct;	      /* ... or at this memory "some avg10" stall, percent */
	bool always;	      /* merging is always needed */
	double max_cpu;	      /* ksmd's budget, percent of one CPU, while converging */
	double idle_cpu;      /* its budget once converged */
	bool advisor;	      /* --advisor: the kernel's scan-time advisor while converging */
	bool has_advisor;     /* the back-end has advisor_mode */
};

enum pressure_phase { PHASE_STOPPED, PHASE_CONVERGING, PHASE_IDLE };

struct pressure_state {
	bool have_prev;
	struct tune_reading prev;
	bool needed; /* merging was needed at the last decision */
	enum pressure_phase phase;
	long long mark_scans;	  /* full_scans when the savings last changed */
	long long mark_scanned;	  /* pages_scanned then, -1 unknown */
	long long mark_saved;	  /* pages saved then */
	long long mark_items;	  /* pages tracked then */
	long long mark_mergeable; /* mergeable processes' kB, the lowest since */
	long long new_scans;	  /* full_scans when new pages last came */
	double cost;		  /* ksmd CPU seconds per page scanned, 0 unknown */
	bool kick;		  /* SIGUSR1: something new arrived */
	long long woken_kb;	  /* AnonPages growth that asked for this decision, 0 none */
};

void pressure_defaults(struct pressure_conf *c);
void pressure_decide(const struct pressure_conf *c, struct pressure_state *s,
		     const struct tune_reading *r, struct tune_decision *d);
/* Between decisions while idle: does AnonPages at anon_kb, against base_kb
 * (its lowest since the last decision), say that something new may have
 * arrived, so that the next decision should come now? */
bool pressure_wake(const struct pressure_state *s, long long base_kb, long long anon_kb);
/* Between decisions while stopped: is MemAvailable (of MemTotal) below
 * --available, so that merging should start now? */
bool pressure_wake_stopped(const struct pressure_conf *c, const struct pressure_state *s,
			   long long avail_kb, long long total_kb);
/* The pages_to_scan that gives ksmd cpu_pct percent of a CPU with
 * sleep_ms between batches, at cost seconds per page. */
long long pressure_pages_for(double cpu_pct, long long sleep_ms, double cost);

/* ---- shared ---- */

/* ksmtuned's process match: pgrep '^qemu(-(kvm|system-.+)|:.{1,11})$'. */
bool tune_is_qemu(const char *comm);
/* The pid of a running ksmtuned under the proc root, or 0. */
int tune_ksmtuned_pid(void);
/* A running `ksmctl tune` daemon (not --once, not --dry-run) that drives
 * what this ksmctl drives: the kernel's KSM under the same --sysfs-root, or
 * samepaged (--user).  Looked for in this machine's /proc whatever
 * --proc-root says (a daemon writing a recorded tree runs here).  Its pid,
 * or 0. */
int tune_daemon_pid(void);
/* Takes a reading through opt's back-end and roots: 0 or -errno. */
int tune_read(struct tune_reading *r);
/* AnonPages, MemAvailable and MemTotal of PROC/meminfo in kB (one file
 * read; -1 each if it cannot be read). */
void tune_read_mem(long long *anon_kb, long long *avail_kb, long long *total_kb);

#endif
