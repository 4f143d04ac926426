/* SPDX-License-Identifier: MIT */
/*
 * plan.h - a set of knob writes checked as a whole before any is made.
 *
 * `set`, `apply`, `start`, `stop` and `unmerge` build a plan, check it
 * against the table (values), the kernel (which knobs exist, the advisor
 * and unmerge rules, permissions) and only then write, in the kernel's
 * order, rolling back on failure and reading back what was written.
 */
#ifndef KSMCTL_PLAN_H
#define KSMCTL_PLAN_H

#include <stdbool.h>

#include "samepage.h"

#define PLAN_MAX 64

struct change {
	const struct samepage_knob *k;
	char value[32]; /* canonical text to write: "1", "scan-time" */
	unsigned long long v;
	char origin[256]; /* where it came from: "argument 2", "/etc/ksm.conf:12" */
	char old[64];	  /* the value before, as read */
	bool write;	  /* differs from the current value */
	bool again;	  /* written though it has the value: advisor_mode resets it */
	bool done;	  /* written */
};

struct plan {
	struct change c[PLAN_MAX];
	int n;
	bool unmerge;	  /* --unmerge: allowed to write run=2 first */
	bool skip_absent; /* knobs this kernel lacks are warnings (apply) */
	bool validate;	  /* apply --check: the file, not this user's permission */
	bool dry;	  /* --dry-run, apply --diff: this user's permission a warning */
	bool json;
	double timeout; /* seconds to wait for pages_shared to reach 0 */
	/* {name, old, new} written before the plan, outside the knob table
	 * (start's max_kernel_pages): plan_apply reports it first. */
	const char *const *extra;
};

/* Adds NAME=VALUE after checking both against the knob table: 0 or an exit status. */
int plan_add(struct plan *p, const char *name, const char *value, const char *origin);
/* Checks the plan against the kernel's state and rules: 0 or an exit status. */
int plan_check(struct plan *p);
/* Writes the plan (after plan_check) and reports: 0 or an exit status. */
int plan_apply(struct plan *p);
/* Prints what plan_apply would change: "name: old -> new", or with
 * p->json an object {"dry_run": true, "file": file (if not NULL),
 * "changes": [{"name", "old", "new", "change"}], "changed": N}.  extra,
 * if not NULL, is one more {name, old, new} outside the knob table
 * (start's max_kernel_pages), listed first. */
void plan_diff(const struct plan *p, const char *file, const char *const extra[3]);

#endif
