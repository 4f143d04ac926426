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

const char usage_top[] =
    "top [--json] [--by process|cgroup|vm|domain] [--limit N]\n"
    "\n"
    "Lists the processes (or cgroups: systemd units, containers; or VMs; or\n"
    "samepaged's domains) whose memory KSM merges, largest profit first:\n"
    "  MERGING  pages that map a KSM page (ksm_merging_pages)\n"
    "  ZERO     pages merged with the zero page (ksm_zero_pages)\n"
    "  TRACKED  pages KSM scans (ksm_rmap_items)\n"
    "  MERGED   (MERGING + ZERO) x page size: memory in merged pages, each\n"
    "           mapping counted, the copy KSM keeps too\n"
    "  PROFIT   ksm_process_profit: MERGED minus KSM's metadata\n"
    "The sum of MERGED is (pages_shared + pages_sharing + ksm_zero_pages) pages,\n"
    "more than what is saved: of N mappings of one KSM page, N - 1 are saved.\n"
    "The total line gives what is saved host-wide, as `ksmctl status` does\n"
    "((pages_sharing + ksm_zero_pages) x page size).  Names are printed with\n"
    "every byte that is not printable UTF-8 as \\xHH.\n"
    "\n"
    "  --json              a JSON object with one entry per row\n"
    "  --by process|cgroup|vm|domain\n"
    "                      group rows (default: process); vm: QEMU's -name\n"
    "                      guest=NAME or libvirt's machine scope; domain:\n"
    "                      samepaged's domains (with --user)\n"
    "  --limit N           show the first N rows only (the total line still\n"
    "                      sums every row)\n";

enum by { BY_PROCESS, BY_CGROUP, BY_VM, BY_DOMAIN };
static const char *const by_names[] = {"process", "cgroup", "vm", "domain"};

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

long long process_merged_bytes(const struct ksm_process *p)
{
	if (p->merging_pages >= 0)
		return sat_mul(sat_add(p->merging_pages, p->zero_pages > 0 ? p->zero_pages : 0),
			       page_size());
	return p->ksm_kb >= 0 ? sat_mul(p->ksm_kb, 1024) : 0;
}

/* A row of the report: one process, or the sum over one cgroup, VM or
 * domain.  Names are printable text already (the back-ends escape them). */
struct row {
	char name[512]; /* comm, cgroup path, VM name or domain */
	char cgroup[512];
	char unit[256]; /* the systemd unit (or container, VM scope) of cgroup */
	char vm[sizeof(((struct ksm_process *)0)->vm)];
	char domain[sizeof(((struct ksm_process *)0)->domain)];
	int pid;		  /* 0 for a group */
	int merge_any, mergeable; /* the process's ksm_stat flags, -1 unknown */
	int processes;
	long long merging, zero, rmap, merged, profit;
	bool has_rmap, has_profit;
};

/* The systemd unit a cgroup belongs to: the innermost .service, .scope or
 * .slice component ("machine-qemu\x2d1\x2dvm.scope/libvirt/emulator" is
 * the VM's scope), else the last component. */
void cgroup_unit(const char *cgroup, char *buf, size_t len)
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

	/* A process connected to two samepaged domains comes twice: one row. */
	r->processes += r->pid == 0 || r->processes == 0;
	r->merging = sat_add(r->merging, p->merging_pages > 0 ? p->merging_pages : 0);
	r->zero = sat_add(r->zero, p->zero_pages > 0 ? p->zero_pages : 0);
	r->rmap = sat_add(r->rmap, p->rmap_items > 0 ? p->rmap_items : 0);
	r->has_rmap |= p->rmap_items >= 0;
	r->merged = sat_add(r->merged, process_merged_bytes(p));
	/* Before 6.4 there is no ksm_process_profit: derive it as the kernel does. */
	if (p->profit != LLONG_MIN)
		r->profit = sat_add(r->profit, p->profit), r->has_profit = true;
	else if (p->rmap_items >= 0)
		r->profit = sat_add(
		    r->profit, sat_add(process_merged_bytes(p), -sat_mul(p->rmap_items, meta))),
		r->has_profit = true;
}

static int by_profit(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	long long px = x->has_profit ? x->profit : x->merged;
	long long py = y->has_profit ? y->profit : y->merged;

	if (px != py)
		return px < py ? 1 : -1;
	if (x->pid != y->pid)
		return x->pid - y->pid;
	return strcmp(x->name, y->name);
}

/* What a row is named by: its grouping key. */
static const char *row_key(const struct ksm_process *p, enum by by)
{
	switch (by) {
	case BY_CGROUP: return p->cgroup[0] ? p->cgroup : "(unknown)";
	case BY_VM: return p->vm[0] ? p->vm : "(not a VM)";
	case BY_DOMAIN: return p->domain[0] ? p->domain : "(none)";
	default: return p->comm;
	}
}

static int build_rows(const struct proc_list *l, enum by by, struct row **out)
{
	struct row *rows = calloc((size_t)l->n + 1, sizeof(*rows));
	int n = 0;

	if (!rows)
		return -ENOMEM;
	for (int i = 0; i < l->n; i++) {
		const struct ksm_process *p = &l->p[i];
		const char *key = row_key(p, by);
		int r;

		for (r = 0; r < n; r++)
			if (by == BY_PROCESS ? rows[r].pid == p->pid : !strcmp(rows[r].name, key))
				break;
		if (r == n) {
			n++;
			snprintf(rows[r].name, sizeof(rows[r].name), "%s", key);
			snprintf(rows[r].cgroup, sizeof(rows[r].cgroup), "%s",
				 p->cgroup[0] ? p->cgroup : "(unknown)");
			cgroup_unit(rows[r].cgroup, rows[r].unit, sizeof(rows[r].unit));
			snprintf(rows[r].vm, sizeof(rows[r].vm), "%s", p->vm);
			snprintf(rows[r].domain, sizeof(rows[r].domain), "%s", p->domain);
			rows[r].pid = by == BY_PROCESS ? p->pid : 0;
			rows[r].merge_any = p->merge_any;
			rows[r].mergeable = p->mergeable;
		}
		row_add(&rows[r], p);
	}
	if (n)
		qsort(rows, (size_t)n, sizeof(*rows), by_profit);
	*out = rows;
	return n;
}

/* What is saved host-wide: (pages_sharing + ksm_zero_pages) x page size, as
 * `ksmctl status` says. */
static long long host_saved_bytes(void)
{
	return sat_mul(sat_add(knob_or("pages_sharing", 0), knob_or("ksm_zero_pages", 0)),
		       page_size());
}

/* ksm_stat's yes/no lines (6.15+): true, false, or null before. */
static void json_yes_no(struct json *j, const char *key, int v)
{
	if (v < 0)
		json_null(j, key);
	else
		json_bool(j, key, v);
}

/* The first shown of n rows; the totals sum all n, as the text's total
 * line does (--limit shortens the list, not the total). */
static void print_rows_json(const struct row *rows, int n, int shown, enum by by)
{
	long long total_merged = 0, total_profit = 0;
	struct json j;

	for (int i = 0; i < n; i++) {
		total_merged = sat_add(total_merged, rows[i].merged);
		total_profit = sat_add(total_profit, rows[i].has_profit ? rows[i].profit : 0);
	}
	json_init(&j, stdout);
	json_object_begin(&j, NULL);
	json_string(&j, "by", by_names[by]);
	json_int(&j, "page_size", page_size());
	json_int(&j, "saved_bytes", host_saved_bytes());
	json_int(&j, "total_rows", n);
	json_int(&j, "total_merged_bytes", total_merged);
	json_int(&j, "total_profit_bytes", total_profit);
	json_array_begin(&j, "rows");
	for (int i = 0; i < shown; i++) {
		const struct row *r = &rows[i];
		json_object_begin(&j, NULL);
		if (by == BY_PROCESS) {
			json_int(&j, "pid", r->pid);
			json_string(&j, "comm", r->name);
			json_string(&j, "cgroup", r->cgroup);
			json_string(&j, "unit", r->unit);
			json_string(&j, "vm", r->vm[0] ? r->vm : NULL);
			if (opt.user)
				json_string(&j, "domain", r->domain);
			json_yes_no(&j, "merge_any", r->merge_any);
			json_yes_no(&j, "mergeable", r->mergeable);
		} else {
			/* null: the processes that are in no VM, or no domain. */
			json_string(&j, by_names[by],
				    (by == BY_VM && !r->vm[0]) || (by == BY_DOMAIN && !r->domain[0])
					? NULL
					: r->name);
			if (by == BY_CGROUP)
				json_string(&j, "unit", r->unit);
			json_int(&j, "processes", r->processes);
		}
		json_int(&j, "merging_pages", r->merging);
		json_int(&j, "zero_pages", r->zero);
		if (r->has_rmap)
			json_int(&j, "rmap_items", r->rmap);
		else
			json_null(&j, "rmap_items");
		json_int(&j, "merged_bytes", r->merged);
		if (r->has_profit)
			json_int(&j, "profit_bytes", r->profit);
		else
			json_null(&j, "profit_bytes");
		json_object_end(&j);
	}
	json_array_end(&j);
	json_object_end(&j);
}

/* The first shown of n rows; the total line sums all n (--limit shortens
 * the list, not the total). */
static void print_rows_text(const struct row *rows, int n, int shown, enum by by)
{
	static const char *const last[] = {"CGROUP", "UNIT", "VM", "DOMAIN"};
	static const char *const plural[] = {"processes", "cgroups", "VMs", "domains"};
	static const char *const singular[] = {"process", "cgroup", "VM", "domain"};
	char merged[32], profit[32], saved[32];
	long long total_merged = 0, total_profit = 0;
	int groups = 0, groups_shown = 0; /* rows that are a VM (--by vm), else every row */
	int unit_width = 28;		  /* --by cgroup: as wide as the widest unit shown */
	int name_width = 15;		  /* a command's 15 bytes, wider where shown as \xHH */

	for (int i = 0; by == BY_CGROUP && i < shown; i++)
		if (text_columns(rows[i].unit) > unit_width)
			unit_width = text_columns(rows[i].unit);
	for (int i = 0; by == BY_PROCESS && i < shown; i++)
		if (text_columns(rows[i].name) > name_width)
			name_width = text_columns(rows[i].name);
	if (by == BY_PROCESS)
		printf("%7s %-*s ", "PID", name_width, "COMMAND");
	else
		printf("%5s ", "PROCS");
	printf("%10s %10s %10s %11s %11s  %s", "MERGING", "ZERO", "TRACKED", "MERGED", "PROFIT",
	       last[by]);
	if (by == BY_CGROUP)
		printf("%*s CGROUP", unit_width - (int)strlen(last[by]), "");
	printf("\n");
	for (int i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		char tracked[24];

		groups += by != BY_VM || r->vm[0];
		total_merged = sat_add(total_merged, r->merged);
		total_profit = sat_add(total_profit, r->has_profit ? r->profit : 0);
		if (i >= shown)
			continue;
		groups_shown += by != BY_VM || r->vm[0];
		snprintf(tracked, sizeof(tracked), r->has_rmap ? "%lld" : "-", r->rmap);
		fmt_bytes(merged, sizeof(merged), (double)r->merged);
		if (r->has_profit)
			fmt_bytes(profit, sizeof(profit), (double)r->profit);
		else
			snprintf(profit, sizeof(profit), "-");
		if (by == BY_PROCESS)
			printf("%7d %s%*s ", r->pid, r->name, name_width - text_columns(r->name),
			       "");
		else
			printf("%5d ", r->processes);
		printf("%10lld %10lld %10s %11s %11s  ", r->merging, r->zero, tracked, merged,
		       profit);
		if (by == BY_CGROUP)
			printf("%s%*s %s\n", r->unit, unit_width - text_columns(r->unit), "",
			       r->cgroup);
		else
			printf("%s\n", by == BY_PROCESS ? r->cgroup : r->name);
	}
	printf("total: %d %s", groups, groups == 1 ? singular[by] : plural[by]);
	if (shown < n)
		printf(" (%d shown, --limit)", groups_shown);
	printf(", %s merged, %s profit; saved host-wide: %s "
	       "(pages_sharing + ksm_zero_pages, as in status)\n",
	       fmt_bytes(merged, sizeof(merged), (double)total_merged),
	       fmt_bytes(profit, sizeof(profit), (double)total_profit),
	       fmt_bytes(saved, sizeof(saved), (double)host_saved_bytes()));
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
	bool json = false;
	enum by by = BY_PROCESS;
	long long limit = -1;
	struct proc_list l;
	struct row *rows;
	int c, n, err;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'j') {
			json = true;
		} else if (c == 'b') {
			for (by = 0; by <= BY_DOMAIN && strcmp(optarg, by_names[by]); by++)
				;
			if (by > BY_DOMAIN)
				return ksmctl_fail(KSMCTL_USAGE, optarg,
						   "use --by process, cgroup, vm or domain",
						   "top: unknown grouping");
			if (by == BY_DOMAIN && !opt.user)
				return ksmctl_fail(
				    KSMCTL_USAGE, optarg,
				    "domains are samepaged's: ksmctl --user top --by "
				    "domain; for the kernel's KSM, --by vm or --by cgroup",
				    "top: the kernel's KSM has no domains");
		} else if (c == 'l') {
			if (parse_count(optarg, &limit))
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
	if (others_unseen())
		ksmctl_warn("not root: only your own processes are shown");
	n = build_rows(&l, by, &rows);
	proc_list_free(&l);
	if (n < 0)
		return ksmctl_fail(KSMCTL_REFUSED, NULL, NULL, "top: out of memory");
	if (json)
		print_rows_json(rows, n, limit >= 0 && limit < n ? (int)limit : n, by);
	else
		print_rows_text(rows, n, limit >= 0 && limit < n ? (int)limit : n, by);
	free(rows);
	return KSMCTL_OK;
}
