// SPDX-License-Identifier: MIT
/*
 * status.c - `ksmctl status`: every knob and counter this kernel has, and
 * what they mean for a person: memory saved, sharing ratio, wasted effort,
 * general_profit, the worst-case cost of unmerging everything against
 * MemAvailable, ksmd's CPU use, scan rate and time per full scan.
 *
 * Three renderings of the same snapshot: plain text, --json, and
 * --prometheus (node_exporter's node_ksmd_* names for the files it knows,
 * samepage_ksm_* for the rest and for derived and per-process series).
 * --watch SECONDS redraws it, with rates measured over the interval.
 */
#include "ksmctl.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"

const char usage_status[] =
    "status [--json | --prometheus [--no-node-ksmd]] [--watch SECONDS] [--output FILE]\n"
    "\n"
    "Shows every KSM knob and counter this kernel has, and derived figures:\n"
    "memory saved, sharing ratio, wasted effort, general_profit, the memory an\n"
    "unmerge of everything would need against MemAvailable, ksmd CPU use, scan\n"
    "rate and time per full scan.\n"
    "\n"
    "  --json            one JSON object\n"
    "  --prometheus      Prometheus text format (node_ksmd_* and samepage_ksm_*)\n"
    "  --watch SECONDS   redraw every SECONDS (0.1 to 86400) until interrupted,\n"
    "                    with the scan rate and ksmd CPU measured over the\n"
    "                    interval (--json: pages_per_second_measured,\n"
    "                    ksmd_cpu_percent_interval)\n"
    "  --output FILE     write to FILE, replaced at once (rename) every time, so a\n"
    "                    reader such as node_exporter's textfile collector never\n"
    "                    sees half a file\n"
    "  --no-node-ksmd    samepage_ksm_* instead of node_ksmd_* names, for hosts\n"
    "                    where node_exporter's --collector.ksmd exports those\n";

static double ratio(long long a, long long b)
{
	return b > 0 && a >= 0 ? (double)a / (double)b : NAN;
}

void ksm_derive(struct ksm_derived *d)
{
	long ps = page_size();
	long long avail = host_meminfo_kb("MemAvailable");
	long long pts = knob_or("pages_to_scan", -1), sleep_ms = knob_or("sleep_millisecs", -1);
	double alive;

	d->shared = knob_or("pages_shared", 0);
	d->sharing = knob_or("pages_sharing", 0);
	d->unshared = knob_or("pages_unshared", 0);
	d->volatile_pages = knob_or("pages_volatile", 0);
	d->zero_pages = knob_or("ksm_zero_pages", 0);
	d->rmap_items =
	    sat_add(sat_add(d->shared, d->sharing), sat_add(d->unshared, d->volatile_pages));
	/* samepaged's clients visit the pages they keep out too (counted,
	 * never merged, no rmap item): a full scan's time covers them. */
	d->scan_pages = d->rmap_items;
#define SAMEPAGE_KEPT(n, promises, why)                                                            \
	d->scan_pages = sat_add(d->scan_pages, knob_or("pages_kept_" #n, 0));
#include "../lib/kept.def"
	d->has_profit = knob_number("general_profit", &d->general_profit) == 0;
	if (!d->has_profit)
		d->general_profit = -1;
	d->saved_bytes = sat_mul(sat_add(d->sharing, d->zero_pages), ps);
	d->sharing_ratio = ratio(d->sharing, d->shared);
	d->unshared_ratio = ratio(d->unshared, d->sharing);
	d->volatile_fraction = ratio(d->volatile_pages, d->rmap_items);
	/* Unmerging gives every mapping of a KSM page its own copy again:
	 * exactly the pages saved come back. */
	d->unmerge_cost_bytes = d->saved_bytes;
	d->mem_available_bytes = avail < 0 ? -1 : sat_mul(avail, 1024);
	/* samepaged's scanning runs in its clients' threads: no ksmd to time. */
	if (!opt.user && host_ksmd_cpu(&d->ksmd_cpu_seconds, &alive) == 0)
		d->ksmd_cpu_percent = alive > 0 ? 100 * d->ksmd_cpu_seconds / alive : NAN;
	else
		d->ksmd_cpu_seconds = d->ksmd_cpu_percent = NAN;
	/* pages_to_scan 0 (the kernel takes it): ksmd wakes and scans nothing,
	 * however short its sleep; no full scan ever ends. */
	if (pts < 0 || sleep_ms < 0)
		d->scan_rate = NAN;
	else if (pts == 0)
		d->scan_rate = 0;
	else
		d->scan_rate = sleep_ms ? (double)pts * 1000.0 / (double)sleep_ms : INFINITY;
	if (knob_or("advisor_mode", 0) == 1)
		d->full_scan_seconds = (double)knob_or("advisor_target_scan_time", -1);
	else
		d->full_scan_seconds = d->scan_pages && isfinite(d->scan_rate) && d->scan_rate > 0
					   ? (double)d->scan_pages / d->scan_rate
					   : NAN;
}

/* ---- the knob list: table order first, then the back-end's other names
 * (files the table lacks; samepaged's own counters, such as pool_pages) ---- */

struct extra_names {
	char names[64][64];
	int n;
};

static int add_extra(const char *name, void *arg)
{
	struct extra_names *x = arg;

	const struct samepage_knob *k = samepage_knob_find(name);

	if ((!k || k->kind > SAMEPAGE_KNOB_COUNTER) && x->n < 64)
		snprintf(x->names[x->n++], sizeof(x->names[0]), "%s", name);
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void list_extras(struct extra_names *x)
{
	x->n = 0;
	opt.be->list(opt.be, add_extra, x);
	if (x->n)
		qsort(x->names, (size_t)x->n, sizeof(x->names[0]), by_name);
}

static bool has_extras(void)
{
	struct extra_names x;

	list_extras(&x);
	return x.n > 0;
}

/* Calls fn(name, knob-or-NULL, value text) for every file present. */
static void for_each_value(void (*fn)(const char *, const struct samepage_knob *, const char *,
				      void *),
			   void *arg)
{
	struct extra_names x;
	char text[128], sel[64];

	for (int i = 0; i < samepage_knob_count(); i++) {
		const struct samepage_knob *k = samepage_knob_at(i);
		if (k->kind != SAMEPAGE_KNOB_TUNABLE && k->kind != SAMEPAGE_KNOB_COUNTER)
			continue;
		if (opt.be->read(opt.be, k->name, text, sizeof(text)))
			continue;
		if (k->format == SAMEPAGE_FMT_MODE) {
			knob_selected(text, sel, sizeof(sel));
			fn(k->name, k, sel, arg);
		} else {
			fn(k->name, k, text, arg);
		}
	}
	list_extras(&x);
	for (int i = 0; i < x.n; i++)
		if (opt.be->read(opt.be, x.names[i], text, sizeof(text)) == 0)
			fn(x.names[i], NULL, text, arg);
}

/* ---- plain text ---- */

static const char *run_words(long long run)
{
	static const char *const w[] = {"stopped (run = 0, merged pages kept)", "running (run = 1)",
					"stopped and unmerged (run = 2)"};
	return run >= 0 && run <= 2 ? w[run] : "unknown";
}

static void text_value(const char *name, const struct samepage_knob *k, const char *value,
		       void *arg)
{
	int *section = arg;
	int want = k ? (int)k->kind : 2;

	if (want != *section)
		return;
	if (k && k->kind == SAMEPAGE_KNOB_TUNABLE) {
		char def[32];
		if (k->format == SAMEPAGE_FMT_MODE)
			snprintf(def, sizeof(def), "%s", k->def ? "scan-time" : "none");
		else
			snprintf(def, sizeof(def), "%llu", k->def);
		printf("  %-36s %-12s (default %s)\n", name, value, def);
	} else {
		printf("  %-36s %s\n", name, value);
	}
}

static void text_line(const char *label, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void text_line(const char *label, const char *fmt, ...)
{
	va_list ap;

	printf("  %-16s ", label);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static void print_text(const struct ksm_derived *d, double measured_rate, double cpu_interval)
{
	char rel[128] = "unknown", a[32], b[32];
	static const char *const sections[] = {"Tunables", "Counters", "Other files"};
	long long run = knob_or("run", -1);

	host_release(rel, sizeof(rel));
	printf("KSM on Linux %s (%s back-end, %s)\n", rel, opt.be->name, opt.be->where);
	text_line("state", "%s", run_words(run));
	text_line("memory saved", "%s (pages_sharing %lld + ksm_zero_pages %lld, %ld-byte pages)",
		  fmt_bytes(a, sizeof(a), (double)d->saved_bytes), d->sharing, d->zero_pages,
		  page_size());
	long long meta = -1;
	if (d->has_profit && opt.user && knob_number("metadata_bytes", &meta) == 0)
		/* libsamepage's metadata is not 64 bytes per rmap item: the
		 * tracked pages' items, the index and the merges' mappings. */
		text_line("general_profit",
			  "%s (saved minus metadata_bytes %s: per-page items, index and the "
			  "merges' mappings)",
			  fmt_bytes(a, sizeof(a), (double)d->general_profit),
			  fmt_bytes(b, sizeof(b), (double)meta));
	else if (d->has_profit)
		text_line("general_profit", "%s (saved minus %lld rmap_items of metadata)",
			  fmt_bytes(a, sizeof(a), (double)d->general_profit), d->rmap_items);
	else
		text_line("general_profit", "not reported by this kernel (6.4+)");
	if (isnan(d->sharing_ratio))
		text_line("sharing ratio", "none yet (pages_shared is 0)");
	else
		text_line("sharing ratio",
			  "%.2f mappings saved per KSM page (pages_sharing/pages_shared)",
			  d->sharing_ratio);
	if (isnan(d->unshared_ratio))
		text_line("wasted effort", "%lld unshared pages checked, none sharing yet",
			  d->unshared);
	else
		text_line("wasted effort",
			  "%.2f unshared pages per sharing page (pages_unshared/pages_sharing)",
			  d->unshared_ratio);
	if (!isnan(d->volatile_fraction))
		text_line("volatile", "%.1f%% of tracked pages change too fast to merge",
			  100 * d->volatile_fraction);
	if (d->mem_available_bytes < 0)
		text_line("unmerge cost", "%s if every merged page were unmerged",
			  fmt_bytes(a, sizeof(a), (double)d->unmerge_cost_bytes));
	else
		text_line("unmerge cost",
			  "%s if every merged page were unmerged; MemAvailable %s (%.1f%%)",
			  fmt_bytes(a, sizeof(a), (double)d->unmerge_cost_bytes),
			  fmt_bytes(b, sizeof(b), (double)d->mem_available_bytes),
			  100 * (double)d->unmerge_cost_bytes / (double)d->mem_available_bytes);
	if (!isnan(cpu_interval))
		text_line("ksmd CPU", "%.1f%% over the last interval", cpu_interval);
	else if (!isnan(d->ksmd_cpu_percent))
		text_line("ksmd CPU", "%.2f%% average since it started (%.0f s of CPU)",
			  d->ksmd_cpu_percent, d->ksmd_cpu_seconds);
	else if (opt.user) /* no one thread to time (status.c's ksm_derive) */
		text_line("ksmd CPU", "not one thread: each client scans in its own samepage-ksmd "
				      "thread (ps -eLo pid,comm,time | grep samepage-ksmd)");
	else
		text_line("ksmd CPU", "unknown (no ksmd thread found)");
	if (!isnan(measured_rate))
		text_line("scan rate", "%.0f pages/s measured (pages_scanned)", measured_rate);
	bool scans_nothing = knob_or("advisor_mode", 0) != 1 && d->scan_rate == 0;
	if (scans_nothing)
		text_line("scan rate", "0 pages/s: pages_to_scan is 0, ksmd scans nothing");
	else if (isinf(d->scan_rate))
		text_line("scan rate", "unbounded (sleep_millisecs is 0)");
	else if (!isnan(d->scan_rate))
		text_line("scan rate", "%.0f pages/s at most (pages_to_scan %lld every %lld ms)",
			  d->scan_rate, knob_or("pages_to_scan", 0), knob_or("sleep_millisecs", 0));
	if (knob_or("advisor_mode", 0) == 1)
		text_line("full scan", "%.0f s targeted by the scan-time advisor",
			  d->full_scan_seconds);
	else if (scans_nothing)
		text_line("full scan", "never: pages_to_scan is 0");
	else if (!d->scan_pages)
		text_line("full scan", "no pages tracked yet");
	else if (isnan(d->full_scan_seconds))
		text_line("full scan", "%lld tracked pages, as fast as ksmd can go", d->scan_pages);
	else
		text_line("full scan", "%.1f s at least for %lld tracked pages",
			  d->full_scan_seconds, d->scan_pages);
	for (int s = 0; s < 3; s++) {
		if (s == 2 && !has_extras())
			break;
		printf("%s:\n", sections[s]);
		for_each_value(text_value, &s);
	}
}

/* ---- JSON ---- */

static void json_value(const char *name, const struct samepage_knob *k, const char *value,
		       void *arg)
{
	unsigned long long u;
	long long v;

	if (parse_ll(value, &v) == 0)
		json_int(arg, name, v);
	else if (parse_ull(value, &u) == 0)
		json_uint(arg, name, u); /* beyond 2^63: the advisor's unsigned longs */
	else
		json_string(arg, name, value);
	(void)k;
}

/* one_line: --watch to standard output, a stream of reports, one a line
 * (JSON Lines), which line-based readers and jq take alike.  watch: the
 * figures measured over the interval (null in the first report, and
 * where they cannot be), as the text view shows them, beside the
 * since-boot CPU share and the configured rate. */
static void print_json(const struct ksm_derived *d, bool one_line, bool watch, double measured_rate,
		       double cpu_interval)
{
	struct json j;
	char rel[128] = "";

	if (one_line)
		json_init_line(&j, stdout);
	else
		json_init(&j, stdout);
	json_object_begin(&j, NULL);
	json_string(&j, "backend", opt.be->name);
	json_string(&j, "path", opt.be->where);
	json_string(&j, "kernel", host_release(rel, sizeof(rel)) ? NULL : rel);
	json_int(&j, "page_size", page_size());
	json_object_begin(&j, "files");
	for_each_value(json_value, &j);
	json_object_end(&j);
	json_object_begin(&j, "derived");
	json_int(&j, "saved_bytes", d->saved_bytes);
	if (d->has_profit)
		json_int(&j, "general_profit_bytes", d->general_profit);
	else
		json_null(&j, "general_profit_bytes");
	json_int(&j, "rmap_items", d->rmap_items);
	json_double(&j, "sharing_ratio", d->sharing_ratio);
	json_double(&j, "unshared_per_sharing", d->unshared_ratio);
	json_double(&j, "volatile_fraction", d->volatile_fraction);
	json_int(&j, "unmerge_cost_bytes", d->unmerge_cost_bytes);
	if (d->mem_available_bytes < 0)
		json_null(&j, "mem_available_bytes");
	else
		json_int(&j, "mem_available_bytes", d->mem_available_bytes);
	json_double(&j, "ksmd_cpu_seconds", d->ksmd_cpu_seconds);
	json_double(&j, "ksmd_cpu_percent", d->ksmd_cpu_percent);
	json_double(&j, "scan_rate_pages_per_second", d->scan_rate);
	json_double(&j, "full_scan_seconds", d->full_scan_seconds);
	if (watch) {
		json_double(&j, "ksmd_cpu_percent_interval", cpu_interval);
		json_double(&j, "pages_per_second_measured", measured_rate);
	}
	json_object_end(&j);
	json_object_end(&j);
}

/* ---- Prometheus ---- */

/* samepaged's series (--user) are samepaged_* instead of node_ksmd_* and
 * samepage_ksm_*, so that one node_exporter can export both the kernel's
 * KSM and samepaged without a clash (samepaged_pages_sharing, ...). */
/* --no-node-ksmd: node_exporter's own ksmd collector exports the
 * node_ksmd_* series; with both, node_exporter sees every one twice. */
static bool no_node_ksmd;

static const char *prom_name(const char *name, char *buf, size_t len)
{
	static const char *const ours[] = {"node_ksmd_", "samepage_ksm_"};

	for (size_t i = 0; opt.user && i < sizeof(ours) / sizeof(ours[0]); i++)
		if (strncmp(name, ours[i], strlen(ours[i])) == 0) {
			snprintf(buf, len, "samepaged_%s", name + strlen(ours[i]));
			return buf;
		}
	if (no_node_ksmd && strncmp(name, "node_ksmd_", 10) == 0) {
		snprintf(buf, len, "samepage_ksm_%s", name + 10);
		return buf;
	}
	return name;
}

/* A sample's value: integers exactly (a byte count beyond 2^53 too), other
 * numbers with the digits that read back as the same double. */
static void prom_number(double v, long long exact, bool is_int)
{
	char buf[32];

	if (is_int)
		printf(" %lld\n", exact);
	else
		printf(" %s\n", fmt_double(buf, sizeof(buf), v));
}

/* "# HELP", "# TYPE" and the start of the sample line. */
static void prom_head(const char *metric, const char *type, const char *help)
{
	char buf[160];
	const char *name = prom_name(metric, buf, sizeof(buf));

	printf("# HELP %s %s\n# TYPE %s %s\n%s", name, help, name, type, name);
}

static void prom_metric(const char *metric, const char *type, const char *help, double v)
{
	if (isnan(v) || isinf(v))
		return;
	prom_head(metric, type, help);
	prom_number(v, 0, false);
}

static void prom_metric_int(const char *metric, const char *type, const char *help, long long v)
{
	prom_head(metric, type, help);
	prom_number(0, v, true);
}

/* The files node_exporter's ksmd collector reads, named as it names them,
 * so that existing dashboards keep working. */
static const char *const node_ksmd_files[] = {
    "full_scans",     "merge_across_nodes", "pages_shared", "pages_sharing",   "pages_to_scan",
    "pages_unshared", "pages_volatile",	    "run",	    "sleep_millisecs",
};

static void prom_metric_text(const char *metric, const char *type, const char *help,
			     const char *number)
{
	prom_head(metric, type, help);
	printf(" %s\n", number);
}

/*
 * Knobs whose file is not in a Prometheus base unit (seconds; a fraction
 * 0-1 as a ratio), or whose name does not say its unit: exported in the
 * base unit under a name ending in it, so that a query can set them
 * against the series in that unit (samepage_ksm_full_scan_seconds,
 * rate(samepage_ksm_ksmd_cpu_seconds_total)); sleep_millisecs as
 * node_exporter's collector does.  The name used before, in the file's
 * unit, is written too until PROM_OLD_NAMES_UNTIL, its HELP saying it is
 * deprecated and what replaces it, so that a dashboard or an alert on it
 * keeps working for a release while it is moved.
 */
#define PROM_OLD_NAMES_UNTIL "samepage 0.2"
static const struct prom_unit {
	const char *file, *metric, *old; /* old: the deprecated name, or NULL */
	double divisor;			 /* the file's value / divisor: the base unit's */
	const char *unit;		 /* for the HELP: "in seconds" */
} prom_units[] = {
    {"sleep_millisecs", "node_ksmd_sleep_seconds", NULL, 1000, "in seconds"},
    {"stable_node_chains_prune_millisecs", "samepage_ksm_stable_node_chains_prune_seconds",
     "samepage_ksm_stable_node_chains_prune_millisecs", 1000, "in seconds"},
    {"advisor_target_scan_time", "samepage_ksm_advisor_target_scan_time_seconds",
     "samepage_ksm_advisor_target_scan_time", 1, "in seconds"},
    {"advisor_max_cpu", "samepage_ksm_advisor_max_cpu_ratio", "samepage_ksm_advisor_max_cpu", 100,
     "as a fraction of one CPU: 0.7 is 70%"},
};

static const struct prom_unit *prom_unit_of(const char *file)
{
	for (size_t i = 0; i < sizeof(prom_units) / sizeof(prom_units[0]); i++)
		if (strcmp(file, prom_units[i].file) == 0)
			return &prom_units[i];
	return NULL;
}

/* One of prom_units: its series in the base unit, then the old one. */
static void prom_unit_value(const struct prom_unit *pu, const char *help, const char *num, double v)
{
	char named[160], text[512];

	snprintf(text, sizeof(text), "%.*s (here %s).", (int)strlen(help) - 1, help, pu->unit);
	prom_metric(pu->metric, "gauge", text, v / pu->divisor);
	if (!pu->old)
		return;
	snprintf(text, sizeof(text), "DEPRECATED, removed after %s: use %s (%s). %s",
		 PROM_OLD_NAMES_UNTIL, prom_name(pu->metric, named, sizeof(named)), pu->unit, help);
	prom_metric_text(pu->old, "gauge", text, num);
}

static void prom_value(const char *name, const struct samepage_knob *k, const char *value,
		       void *arg)
{
	char metric[128], help[256], num[32];
	const struct prom_unit *pu;
	unsigned long long u;
	long long v;
	bool node = false, big = false;

	/* A file whose name makes no metric name is not one of KSM's (a
	 * fuzzer's tree, say): left out, as node_exporter does. */
	if (name[strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")])
		return;
	for (size_t i = 0; i < sizeof(node_ksmd_files) / sizeof(node_ksmd_files[0]); i++)
		node |= strcmp(name, node_ksmd_files[i]) == 0;
	if (k && k->format == SAMEPAGE_FMT_MODE)
		v = strcmp(value, "scan-time") == 0;
	else if (parse_ll(value, &v) == 0)
		;
	else if (parse_ull(value, &u) == 0)
		big = true, v = LLONG_MAX; /* beyond 2^63: the advisor's unsigned longs */
	else
		return;
	/* The sample's value exactly, as the file has it. */
	if (big)
		snprintf(num, sizeof(num), "%llu", u);
	else
		snprintf(num, sizeof(num), "%lld", v);
	/* samepaged's own counters (pool_pages_reclaimed) come as extra
	 * names: their help is the table's all the same. */
	const struct samepage_knob *hk = k ? k : samepage_knob_find(name);
	snprintf(help, sizeof(help), "%s '%s'%s%s%s%s.", opt.user ? "samepaged's" : "ksmd", name,
		 opt.user ? "" : " file", hk ? ": " : "", hk ? hk->help : "",
		 hk && hk->format == SAMEPAGE_FMT_MODE ? " (1 = scan-time)" : "");
	/* A counter never goes down.  samepaged's full_scans is the fewest of
	 * its connected clients', and its pages_scanned and pages_skipped
	 * their sums: one that joins or leaves takes them down, so they are
	 * gauges (without _total) there.  Its pool_pages_reclaimed and
	 * pool_pages_refused count for the daemon's life: counters. */
	bool user_sum =
	    opt.user && (strcmp(name, "pages_scanned") == 0 || strcmp(name, "pages_skipped") == 0);
	if (opt.user && strcmp(name, "full_scans") == 0)
		prom_metric_text("node_ksmd_full_scans", "gauge",
				 "samepaged's full_scans: the fewest full scans any connected "
				 "client has completed (a client that joins takes it down).",
				 num);
	else if (strcmp(name, "full_scans") == 0)
		prom_metric_text("node_ksmd_full_scans_total", "counter", help, num);
	else if (user_sum) {
		snprintf(metric, sizeof(metric), "samepage_ksm_%s", name);
		snprintf(help, sizeof(help),
			 "samepaged's %s: summed over the connected clients (a client that "
			 "exits takes its share away).",
			 name);
		prom_metric_text(metric, "gauge", help, num);
	} else if (strcmp(name, "pool_pages_reclaimed") == 0 ||
		   strcmp(name, "pool_pages_refused") == 0) {
		snprintf(metric, sizeof(metric), "samepage_ksm_%s_total", name);
		prom_metric_text(metric, "counter", help, num);
	} else if ((pu = prom_unit_of(name)))
		prom_unit_value(pu, help, num, big ? (double)u : (double)v);
	else if (strcmp(name, "general_profit") == 0)
		prom_metric_text("samepage_ksm_general_profit_bytes", "gauge", help, num);
	else if (node) {
		snprintf(metric, sizeof(metric), "node_ksmd_%s", name);
		prom_metric_text(metric, "gauge", help, num);
	} else if (strcmp(name, "pages_scanned") == 0 || strcmp(name, "pages_skipped") == 0) {
		snprintf(metric, sizeof(metric), "samepage_ksm_%s_total", name);
		prom_metric_text(metric, "counter", help, num);
	} else {
		snprintf(metric, sizeof(metric), "samepage_ksm_%s", name);
		prom_metric_text(metric, "gauge", help, num);
	}
	(void)arg;
}

/* Appends name="value" to a label set: the value valid for any bytes
 * (procfs_escape()'s printable UTF-8, then the exposition format's escapes
 * of backslash and double quote). */
static void prom_label(char *set, size_t len, const char *name, const char *value)
{
	char text[PROCFS_ESCAPED_SIZE(512)];
	size_t o = strlen(set);

	o += (size_t)snprintf(set + o, len - o, "%s%s=\"", o ? "," : "", name);
	for (const char *p = procfs_escape(value, text, sizeof(text)); *p && o + 3 < len; p++) {
		if (*p == '\\' || *p == '"')
			set[o++] = '\\';
		set[o++] = *p;
	}
	snprintf(set + o, len - o, "\"");
}

/* The labels of a process's series: its VM, else its unit and command (and
 * samepaged's domain), never its pid, so that a restarted VM or service
 * continues its series instead of starting new ones. */
static void process_labels(const struct ksm_process *p, char *set, size_t len)
{
	char unit[256];

	set[0] = '\0';
	if (p->vm[0]) {
		prom_label(set, len, "vm", p->vm);
	} else {
		cgroup_unit(p->cgroup[0] ? p->cgroup : "(unknown)", unit, sizeof(unit));
		prom_label(set, len, "unit", unit);
		prom_label(set, len, "comm", p->comm);
	}
	if (opt.user)
		prom_label(set, len, "domain", p->domain);
}

/* One family of per-process series: # HELP/# TYPE once, then one sample
 * per label set, summed over the processes that share it (the threads of a
 * service, a VM's helper processes); get gives LLONG_MIN for "not
 * reported". */
static void prom_processes(const struct proc_list *l, const char *metric, const char *help,
			   long long (*get)(const struct ksm_process *))
{
	struct series {
		char labels[2048];
		long long v;
	} *s = calloc((size_t)l->n + 1, sizeof(*s));
	char buf[160];
	const char *name = prom_name(metric, buf, sizeof(buf));
	int n = 0;

	for (int i = 0; s && i < l->n; i++) {
		char set[sizeof(s->labels)];
		long long v = get(&l->p[i]);
		int k;

		if (v == LLONG_MIN)
			continue;
		process_labels(&l->p[i], set, sizeof(set));
		for (k = 0; k < n && strcmp(s[k].labels, set); k++)
			;
		if (k == n)
			snprintf(s[n++].labels, sizeof(s->labels), "%s", set);
		s[k].v = sat_add(s[k].v, v);
	}
	if (n)
		printf("# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
	for (int k = 0; k < n; k++)
		printf("%s{%s} %lld\n", name, s[k].labels, s[k].v);
	free(s);
}

static long long get_merging(const struct ksm_process *p)
{
	return p->merging_pages < 0 ? LLONG_MIN : p->merging_pages;
}

static long long get_profit(const struct ksm_process *p)
{
	return p->profit;
}

static long long get_rmap(const struct ksm_process *p)
{
	return p->rmap_items < 0 ? LLONG_MIN : p->rmap_items;
}

/* samepage_ksm_up (samepaged_up with --user): 1 above the figures, 0 alone
 * in a report written while KSM (samepaged) did not answer, so that a
 * textfile collector does not go on exporting the last figures as now's. */
static void prom_up(int up)
{
	prom_metric_int("samepage_ksm_up", "gauge",
			"1: the figures were read; 0: KSM (with --user, samepaged) did not answer "
			"and there are none.",
			up);
}

static void print_prometheus(const struct ksm_derived *d)
{
	struct proc_list l;

	prom_up(1);
	for_each_value(prom_value, NULL);
	prom_metric_int("samepage_ksm_saved_bytes", "gauge",
			"Memory saved: (pages_sharing + ksm_zero_pages) * page size.",
			d->saved_bytes);
	prom_metric("samepage_ksm_sharing_ratio", "gauge",
		    "pages_sharing / pages_shared: mappings saved per KSM page.", d->sharing_ratio);
	prom_metric("samepage_ksm_unshared_per_sharing_ratio", "gauge",
		    "pages_unshared / pages_sharing: wasted scanning effort.", d->unshared_ratio);
	prom_metric_int("samepage_ksm_unmerge_cost_bytes", "gauge",
			"Memory needed if every merged page were unmerged.", d->unmerge_cost_bytes);
	if (d->mem_available_bytes >= 0)
		prom_metric_int("samepage_ksm_mem_available_bytes", "gauge",
				"MemAvailable from /proc/meminfo.", d->mem_available_bytes);
	prom_metric("samepage_ksm_ksmd_cpu_seconds_total", "counter", "CPU time used by ksmd.",
		    d->ksmd_cpu_seconds);
	prom_metric("samepage_ksm_scan_rate_pages_per_second", "gauge",
		    "Most pages ksmd scans per second: pages_to_scan per sleep_millisecs.",
		    d->scan_rate);
	prom_metric("samepage_ksm_full_scan_seconds", "gauge",
		    "Estimated seconds per full scan of all tracked pages.", d->full_scan_seconds);
	if (proc_list_collect(&l) == 0) {
		prom_processes(&l, "samepage_ksm_process_merging_pages",
			       "Pages that map a KSM page (ksm_merging_pages), per VM or per unit "
			       "and command.",
			       get_merging);
		prom_processes(&l, "samepage_ksm_process_profit_bytes",
			       "ksm_process_profit, per VM or per unit and command.", get_profit);
		prom_processes(&l, "samepage_ksm_process_rmap_items",
			       "Pages tracked by KSM (ksm_rmap_items), per VM or per unit and "
			       "command.",
			       get_rmap);
		proc_list_free(&l);
	}
}

/* ---- the verb ---- */

/* --output FILE: each report goes to a new file beside FILE, which then
 * replaces FILE at once (rename), so that a reader such as node_exporter's
 * textfile collector never sees half a file.  The temporary name starts
 * with a dot and does not end in .prom, so the collector skips it. */
struct output {
	const char *path;
	char tmp[4096];
	int saved_stdout;
	sigset_t mask; /* the signal mask before output_begin() */
};

/*
 * From mkstemp() to the rename (or the unlink), every signal that could
 * end ksmctl waits: SIGHUP (a closed terminal, systemd's reload), SIGTERM,
 * SIGINT, SIGQUIT, SIGALRM, SIGXFSZ (a write past RLIMIT_FSIZE then fails
 * with EFBIG, and the file is removed) and the rest; a signal that ended
 * ksmctl there left the temporary file behind for good.  A pending signal
 * acts at output_commit(), once the file is in place or gone.  Faults,
 * which are not sent but raised by the code itself, are left unblocked.
 */
static void output_block(struct output *o)
{
	static const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS};
	sigset_t all;

	sigfillset(&all);
	for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
		sigdelset(&all, faults[i]);
	sigprocmask(SIG_BLOCK, &all, &o->mask);
}

static int output_begin(struct output *o)
{
	const char *slash = strrchr(o->path, '/');
	int fd;

	fflush(stdout);
	snprintf(o->tmp, sizeof(o->tmp), "%.*s.%s.XXXXXX", slash ? (int)(slash - o->path + 1) : 0,
		 o->path, slash ? slash + 1 : o->path);
	output_block(o);
	if ((fd = mkstemp(o->tmp)) < 0) {
		int err = -errno;
		sigprocmask(SIG_SETMASK, &o->mask, NULL);
		return err;
	}
	/* Readable by node_exporter's own user, as a file written by > is. */
	fchmod(fd, 0644);
	o->saved_stdout = dup(STDOUT_FILENO);
	dup2(fd, STDOUT_FILENO);
	close(fd);
	return 0;
}

static int output_commit(struct output *o)
{
	int err = fflush(stdout) || fsync(STDOUT_FILENO) ? -errno : 0;

	clearerr(stdout); /* the file's error is said here, not again at exit for stdout */
	dup2(o->saved_stdout, STDOUT_FILENO);
	close(o->saved_stdout);
	if (!err && rename(o->tmp, o->path))
		err = -errno;
	if (err)
		unlink(o->tmp);
	sigprocmask(SIG_SETMASK, &o->mask, NULL);
	return err;
}

/* The report written while KSM (samepaged) does not answer: up 0 alone,
 * to --output's file too.  0, or output_commit()'s error. */
static int report_down(struct output *o)
{
	if (o->path && output_begin(o))
		return 0; /* no temporary file: the file stays as it was */
	prom_up(0);
	return o->path ? output_commit(o) : 0;
}

static int output_error(const struct output *o, int err)
{
	bool full = err == -ENOSPC || err == -EDQUOT;

	return ksmctl_fail(err == -EACCES || err == -EPERM ? KSMCTL_PERM : KSMCTL_USAGE, o->path,
			   full ? "make room on its filesystem (the file as it was is kept)"
				: "give a file in an existing, writable directory (Debian's "
				  "node_exporter reads /var/lib/prometheus/node-exporter/*.prom)",
			   "status: cannot write the output file: %s", strerror(-err));
}

static volatile sig_atomic_t stop_watch;

static void on_signal(int sig)
{
	(void)sig;
	stop_watch = 1;
}

enum { FMT_TEXT, FMT_JSON, FMT_PROM };

int cmd_status(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"prometheus", no_argument, NULL, 'p'},
	    {"watch", required_argument, NULL, 'w'},
	    {"output", required_argument, NULL, 'o'},
	    {"no-node-ksmd", no_argument, NULL, 'n'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct output out = {0};
	int fmt = FMT_TEXT, c, err;
	double interval = 0, last_t = 0, last_cpu = NAN;
	long long last_scanned = -1;
	bool tty = isatty(1);

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'j' || c == 'p') {
			if (fmt != FMT_TEXT)
				return ksmctl_fail(KSMCTL_USAGE, "--json --prometheus",
						   "choose one output format",
						   "status: two formats given");
			fmt = c == 'j' ? FMT_JSON : FMT_PROM;
		} else if (c == 'o') {
			if (!*optarg)
				return ksmctl_empty_value(
				    "status", "--output", "a file",
				    "name the file to write, or leave --output "
				    "out for stdout");
			if ((err = ksmctl_replaceable("status", optarg, "the output file",
						      "name a regular file, replaced at once by a "
						      "rename (leave --output out for stdout)")))
				return err;
			out.path = optarg;
		} else if (c == 'n') {
			no_node_ksmd = true;
		} else if (c == 'w') {
			if (parse_seconds(optarg, &interval) || interval < 0.1 || interval > 86400)
				return ksmctl_fail(
				    KSMCTL_USAGE, optarg,
				    "give a number of seconds from 0.1 to 86400 (a day)",
				    "status: bad --watch interval");
		} else {
			return verb_usage(usage_status, KSMCTL_USAGE);
		}
	}
	if (optind < argc)
		return ksmctl_fail(KSMCTL_USAGE, argv[optind], "status takes no arguments",
				   "status: unexpected argument");
	if (no_node_ksmd && fmt != FMT_PROM)
		return ksmctl_fail(KSMCTL_USAGE, "--no-node-ksmd", "add --prometheus",
				   "status: --no-node-ksmd names Prometheus series");
	if (out.path && fmt == FMT_TEXT)
		return ksmctl_fail(KSMCTL_USAGE, "--output", "add --prometheus or --json",
				   "status: --output writes a machine-readable format");
	if ((err = opt.be->available(opt.be))) {
		/* A report still, saying so: the last one's figures must go. */
		if (fmt == FMT_PROM && report_down(&out))
			ksmctl_warn("status: cannot write the output file %s", out.path);
		return ksm_unavailable(err,
				       "build the kernel with CONFIG_KSM=y, or run `ksmctl check`");
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	bool first = true;
	do {
		struct ksm_derived d;
		double t = now_seconds(), rate = NAN, cpu = NAN;
		long long scanned;

		/* --watch: samepaged may stop meanwhile (or come back).  A report
		 * of what could not be read would be zeros under up 1. */
		if (!first && (err = opt.be->available(opt.be))) {
			char cause[512] = "", fix[512] = "";
			if (opt.be->explain)
				opt.be->explain(opt.be, err, cause, sizeof(cause), fix,
						sizeof(fix));
			ksmctl_warn("%s", cause[0] ? cause : strerror(-err));
			if (fmt == FMT_PROM && (err = report_down(&out)))
				return output_error(&out, err);
			last_t = 0;
			if (fflush(stdout) || ferror(stdout))
				break; /* standard output is lost: main() says so, exit 1 */
			sleep_seconds(interval);
			continue;
		}
		first = false;
		scanned = knob_or("pages_scanned", -1);
		ksm_derive(&d);
		if (last_t > 0 && t > last_t) {
			/* pages_scanned gone down (samepaged's sum over its
			 * clients, one of which left): no rate to tell. */
			if (scanned >= 0 && last_scanned >= 0 && scanned >= last_scanned)
				rate = (double)(scanned - last_scanned) / (t - last_t);
			cpu = 100 * (d.ksmd_cpu_seconds - last_cpu) / (t - last_t);
		}
		last_t = t, last_scanned = scanned, last_cpu = d.ksmd_cpu_seconds;
		if (interval > 0 && fmt == FMT_TEXT && tty)
			fputs("\033[H\033[2J", stdout); /* home, clear: a live view */
		if (out.path && (err = output_begin(&out)))
			return output_error(&out, err);
		if (fmt == FMT_JSON)
			print_json(&d, interval > 0 && !out.path, interval > 0, rate, cpu);
		else if (fmt == FMT_PROM)
			print_prometheus(&d);
		else
			print_text(&d, rate, cpu);
		if (out.path && (err = output_commit(&out)))
			return output_error(&out, err);
		if (interval > 0 && fmt == FMT_TEXT)
			printf("\nEvery %g s; Ctrl-C to quit.\n", interval);
		/* A report that did not reach standard output (a full disk under
		 * --watch >> FILE): stop, rather than go on for days writing
		 * nothing, or leave a half line in a stream of JSON Lines;
		 * main() says why, exit 1. */
		if (fflush(stdout) || ferror(stdout))
			break;
		if (interval > 0 && !stop_watch)
			sleep_seconds(interval);
	} while (interval > 0 && !stop_watch);
	return KSMCTL_OK;
}
