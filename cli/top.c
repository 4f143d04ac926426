// SPDX-License-Identifier: MIT
/*
 * top.c - `ksmctl top`: KSM savings per process, or per cgroup (a systemd
 * unit, a container, a VM's scope), sorted by profit.
 *
 * The numbers are the kernel's own per-process accounting: /proc/PID/
 * ksm_stat (6.1+), ksm_merging_pages (5.19+) and the "KSM:" line of
 * smaps_rollup (6.6+).  Processes with no KSM activity are left out.
 */
#include "ksmctl.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"

const char usage_top[] = "top [--json] [--by process|cgroup] [--limit N]\n"
			 "\n"
			 "Lists the processes (or cgroups: systemd units, containers, VMs) whose\n"
			 "memory KSM merges, with pages merged, pages tracked, memory saved and\n"
			 "profit (saved minus KSM's metadata), largest profit first.\n"
			 "\n"
			 "  --json              a JSON object with one entry per row\n"
			 "  --by process|cgroup group rows (default: process)\n"
			 "  --limit N           show the first N rows only\n";

static bool process_active(const struct ksm_process *p)
{
	return p->rmap_items > 0 || p->merging_pages > 0 || p->ksm_kb > 0 || p->zero_pages > 0 ||
	       p->merge_any == 1 || p->mergeable == 1;
}

static int collect_one(const struct ksm_process *p, void *arg)
{
	struct proc_list *l = arg;

	l->accounted |= p->merging_pages >= 0 || p->rmap_items >= 0 || p->ksm_kb >= 0;
	if (!process_active(p))
		return 0;
	struct ksm_process *np = realloc(l->p, sizeof(*np) * (size_t)(l->n + 1));
	if (!np)
		return -ENOMEM;
	l->p = np;
	l->p[l->n++] = *p;
	return 0;
}

int proc_list_collect(struct proc_list *l)
{
	memset(l, 0, sizeof(*l));
	l->accounted = opt.user; /* samepaged accounts every client, even with none */
	return opt.be->for_each_process(opt.be, collect_one, l);
}

void proc_list_free(struct proc_list *l)
{
	free(l->p);
	l->p = NULL;
	l->n = 0;
}

double process_saved(const struct ksm_process *p)
{
	if (p->merging_pages >= 0)
		return (double)(p->merging_pages + (p->zero_pages > 0 ? p->zero_pages : 0)) *
		       (double)page_size();
	return p->ksm_kb >= 0 ? (double)p->ksm_kb * 1024 : 0;
}

/* A row of the report: one process, or the sum over one cgroup. */
struct row {
	char name[512]; /* comm, or the cgroup path */
	char cgroup[512];
	char unit[256];		  /* the systemd unit (or container, VM scope) of cgroup */
	int pid;		  /* 0 for a cgroup */
	int merge_any, mergeable; /* the process's ksm_stat flags, -1 unknown */
	int processes;
	long long merging, zero, rmap;
	double saved, profit;
	bool has_rmap, has_profit;
};

/* The systemd unit a cgroup belongs to: the innermost .service, .scope or
 * .slice component ("machine-qemu\x2d1\x2dvm.scope/libvirt/emulator" is
 * the VM's scope), else the last component. */
static void cgroup_unit(const char *cgroup, char *buf, size_t len)
{
	const char *best = NULL, *last = cgroup;
	size_t best_len = 0;

	for (const char *s = cgroup; *s;) {
		size_t n = strcspn(s, "/");
		if (n > 6 &&
		    (strncmp(s + n - 8, ".service", 8) == 0 ||
		     strncmp(s + n - 6, ".scope", 6) == 0 || strncmp(s + n - 6, ".slice", 6) == 0))
			best = s, best_len = n;
		if (n)
			last = s;
		s += n + (s[n] == '/');
	}
	if (!best)
		best = last, best_len = strlen(last);
	snprintf(buf, len, "%.*s", (int)best_len, best);
}

static void row_add(struct row *r, const struct ksm_process *p)
{
	long long meta = 64; /* sizeof(struct ksm_rmap_item) on 64-bit */

	r->processes++;
	r->merging += p->merging_pages > 0 ? p->merging_pages : 0;
	r->zero += p->zero_pages > 0 ? p->zero_pages : 0;
	r->rmap += p->rmap_items > 0 ? p->rmap_items : 0;
	r->has_rmap |= p->rmap_items >= 0;
	r->saved += process_saved(p);
	/* Before 6.4 there is no ksm_process_profit: derive it as the kernel does. */
	if (p->profit != LLONG_MIN)
		r->profit += (double)p->profit, r->has_profit = true;
	else if (p->rmap_items >= 0)
		r->profit += process_saved(p) - (double)(p->rmap_items * meta),
		    r->has_profit = true;
}

static int by_profit(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	double px = x->has_profit ? x->profit : x->saved, py = y->has_profit ? y->profit : y->saved;

	if (px != py)
		return px < py ? 1 : -1;
	if (x->pid != y->pid)
		return x->pid - y->pid;
	return strcmp(x->name, y->name);
}

static int build_rows(const struct proc_list *l, bool by_cgroup, struct row **out)
{
	struct row *rows = calloc((size_t)l->n + 1, sizeof(*rows));
	int n = 0;

	if (!rows)
		return -ENOMEM;
	for (int i = 0; i < l->n; i++) {
		const struct ksm_process *p = &l->p[i];
		const char *cg = p->cgroup[0] ? p->cgroup : "(unknown)";
		int r = n;

		if (by_cgroup)
			for (r = 0; r < n && strcmp(rows[r].cgroup, cg); r++)
				;
		if (r == n) {
			n++;
			snprintf(rows[r].cgroup, sizeof(rows[r].cgroup), "%s", cg);
			cgroup_unit(cg, rows[r].unit, sizeof(rows[r].unit));
			snprintf(rows[r].name, sizeof(rows[r].name), "%s",
				 by_cgroup ? cg : p->comm);
			rows[r].pid = by_cgroup ? 0 : p->pid;
			rows[r].merge_any = p->merge_any;
			rows[r].mergeable = p->mergeable;
		}
		row_add(&rows[r], p);
	}
	qsort(rows, (size_t)n, sizeof(*rows), by_profit);
	*out = rows;
	return n;
}

/* ksm_stat's yes/no lines (6.15+): true, false, or null before. */
static void json_yes_no(struct json *j, const char *key, int v)
{
	if (v < 0)
		json_null(j, key);
	else
		json_bool(j, key, v);
}

static void print_rows_json(const struct row *rows, int n, bool by_cgroup)
{
	struct json j;

	json_init(&j, stdout);
	json_object_begin(&j, NULL);
	json_string(&j, "by", by_cgroup ? "cgroup" : "process");
	json_int(&j, "page_size", page_size());
	json_array_begin(&j, "rows");
	for (int i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		json_object_begin(&j, NULL);
		if (by_cgroup) {
			json_string(&j, "cgroup", r->cgroup);
			json_string(&j, "unit", r->unit);
			json_int(&j, "processes", r->processes);
		} else {
			json_int(&j, "pid", r->pid);
			json_string(&j, "comm", r->name);
			json_string(&j, "cgroup", r->cgroup);
			json_string(&j, "unit", r->unit);
			json_yes_no(&j, "merge_any", r->merge_any);
			json_yes_no(&j, "mergeable", r->mergeable);
		}
		json_int(&j, "merging_pages", r->merging);
		json_int(&j, "zero_pages", r->zero);
		if (r->has_rmap)
			json_int(&j, "rmap_items", r->rmap);
		else
			json_null(&j, "rmap_items");
		json_double(&j, "saved_bytes", r->saved);
		if (r->has_profit)
			json_double(&j, "profit_bytes", r->profit);
		else
			json_null(&j, "profit_bytes");
		json_object_end(&j);
	}
	json_array_end(&j);
	json_object_end(&j);
}

static void print_rows_text(const struct row *rows, int n, bool by_cgroup)
{
	char saved[32], profit[32];
	double total_saved = 0, total_profit = 0;

	if (by_cgroup)
		printf("%5s %10s %10s %10s %11s %11s  %-28s %s\n", "PROCS", "MERGING", "ZERO",
		       "TRACKED", "SAVED", "PROFIT", "UNIT", "CGROUP");
	else
		printf("%7s %-15s %10s %10s %10s %11s %11s  %s\n", "PID", "COMMAND", "MERGING",
		       "ZERO", "TRACKED", "SAVED", "PROFIT", "CGROUP");
	for (int i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		char tracked[24];

		snprintf(tracked, sizeof(tracked), r->has_rmap ? "%lld" : "-", r->rmap);
		fmt_bytes(saved, sizeof(saved), r->saved);
		if (r->has_profit)
			fmt_bytes(profit, sizeof(profit), r->profit);
		else
			snprintf(profit, sizeof(profit), "-");
		if (by_cgroup)
			printf("%5d ", r->processes);
		else
			printf("%7d %-15s ", r->pid, r->name);
		printf("%10lld %10lld %10s %11s %11s  ", r->merging, r->zero, tracked, saved,
		       profit);
		if (by_cgroup)
			printf("%-28s ", r->unit);
		printf("%s\n", r->cgroup);
		total_saved += r->saved;
		total_profit += r->has_profit ? r->profit : 0;
	}
	printf("total: %d %s, %s saved, %s profit\n", n, by_cgroup ? "cgroups" : "processes",
	       fmt_bytes(saved, sizeof(saved), total_saved),
	       fmt_bytes(profit, sizeof(profit), total_profit));
}

int cmd_top(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"by", required_argument, NULL, 'b'},
	    {"limit", required_argument, NULL, 'l'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	bool json = false, by_cgroup = false;
	long long limit = -1;
	struct proc_list l;
	struct row *rows;
	int c, n, err;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'j') {
			json = true;
		} else if (c == 'b') {
			if (strcmp(optarg, "process") && strcmp(optarg, "cgroup"))
				return ksmctl_fail(KSMCTL_USAGE, optarg,
						   "use --by process or --by cgroup",
						   "top: unknown grouping");
			by_cgroup = strcmp(optarg, "cgroup") == 0;
		} else if (c == 'l') {
			if (parse_ll(optarg, &limit) || limit < 0)
				return ksmctl_fail(KSMCTL_USAGE, optarg, "give a row count",
						   "top: bad --limit");
		} else {
			return verb_usage(usage_top, KSMCTL_USAGE);
		}
	}
	if (optind < argc)
		return ksmctl_fail(KSMCTL_USAGE, argv[optind], "top takes no arguments",
				   "top: unexpected argument");
	if ((err = proc_list_collect(&l)) && opt.be->explain)
		return ksm_unavailable(err, NULL);
	if (err)
		return ksmctl_fail(KSMCTL_REFUSED, opt.proc_root, "check that /proc is mounted",
				   "top: cannot list processes: %s", strerror(-err));
	if (!l.accounted) {
		proc_list_free(&l);
		return ksmctl_fail(
		    KSMCTL_NO, opt.proc_root,
		    "per-process KSM accounting needs Linux 5.19 (ksm_merging_pages) "
		    "or 6.1 (ksm_stat); `ksmctl status` shows the global counters",
		    "top: this kernel does not account KSM per process");
	}
	/* ksm_stat is readable by its owner only (S_IRUSR). */
	if (opt.live && !opt.user && geteuid() != 0)
		ksmctl_warn("not root: only your own processes are shown");
	n = build_rows(&l, by_cgroup, &rows);
	proc_list_free(&l);
	if (n < 0)
		return ksmctl_fail(KSMCTL_REFUSED, NULL, NULL, "top: out of memory");
	if (limit >= 0 && limit < n)
		n = (int)limit;
	if (json)
		print_rows_json(rows, n, by_cgroup);
	else
		print_rows_text(rows, n, by_cgroup);
	free(rows);
	return KSMCTL_OK;
}
