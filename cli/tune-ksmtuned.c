// SPDX-License-Identifier: MIT
/*
 * tune-ksmtuned.c - ksmtuned's algorithm (`ksmctl tune --policy ksmtuned`)
 * and its configuration file, /etc/ksmtuned.conf.
 *
 * The arithmetic is ksmtuned.sh's (bash integer arithmetic, kB): at start
 *   sleep = KSM_SLEEP_MSEC * 16 * 1024 * 1024 / MemTotal, at least 10
 *   thres = max(MemTotal * KSM_THRES_COEF / 100, KSM_THRES_CONST)
 * then at every decision, with free = MemFree + Buffers + Cached and
 * committed = the VmRSS of the processes named like QEMU:
 *   committed + thres < MemTotal and free > thres: run=0 (npages kept)
 *   else npages += free < thres ? KSM_NPAGES_BOOST : KSM_NPAGES_DECAY,
 *        clamped to [KSM_NPAGES_MIN, KSM_NPAGES_MAX];
 *        pages_to_scan=npages sleep_millisecs=sleep run=1
 * One difference: where the scan-time advisor is on, it is turned off
 * first (ksmtuned's write of pages_to_scan would fail with EINVAL).
 *
 * The file is sourced by ksmtuned as shell; here it is read as what it
 * holds in practice: NAME=VALUE lines (optionally "export NAME=VALUE",
 * the value optionally quoted), blank lines and '#' comments.  Anything
 * else is refused with its file:line, so a typo is not silently ignored.
 */
#include "tune.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define U32_MAX 4294967295LL

static const struct var {
	const char *name;
	size_t off; /* in struct ksmtuned_conf; SIZE_MAX: accepted, unused */
	long long min, max, def;
	const char *unit;
} vars[] = {
    {"KSM_MONITOR_INTERVAL", offsetof(struct ksmtuned_conf, interval), 1, 86400, 60, "seconds"},
    {"KSM_SLEEP_MSEC", offsetof(struct ksmtuned_conf, sleep_msec), 0, U32_MAX, 10,
     "milliseconds for a 16 GiB host"},
    {"KSM_NPAGES_BOOST", offsetof(struct ksmtuned_conf, boost), -U32_MAX, U32_MAX, 300, "pages"},
    {"KSM_NPAGES_DECAY", offsetof(struct ksmtuned_conf, decay), -U32_MAX, U32_MAX, -50, "pages"},
    {"KSM_NPAGES_MIN", offsetof(struct ksmtuned_conf, npages_min), 0, U32_MAX, 64, "pages"},
    {"KSM_NPAGES_MAX", offsetof(struct ksmtuned_conf, npages_max), 0, U32_MAX, 1250, "pages"},
    {"KSM_THRES_COEF", offsetof(struct ksmtuned_conf, thres_coef), 0, 100, 20,
     "percent of MemTotal"},
    {"KSM_THRES_CONST", offsetof(struct ksmtuned_conf, thres_const), 0, 1LL << 40, 2048, "kB"},
    {"LOGFILE", SIZE_MAX, 0, 0, 0, NULL},
    {"DEBUG", SIZE_MAX, 0, 0, 0, NULL},
};
#define NVARS (sizeof(vars) / sizeof(vars[0]))

static long long *field(struct ksmtuned_conf *c, const struct var *v)
{
	return (long long *)((char *)c + v->off);
}

void ksmtuned_defaults(struct ksmtuned_conf *c)
{
	for (size_t i = 0; i < NVARS; i++)
		if (vars[i].off != SIZE_MAX)
			*field(c, &vars[i]) = vars[i].def;
}

/* The value without its quotes and trailing comment, or NULL if it is not
 * one word as the shell would read it. */
static char *unquote(char *v)
{
	char *end;

	if (*v == '"' || *v == '\'') {
		end = strchr(v + 1, *v);
		if (!end)
			return NULL;
		*end++ = '\0';
		v++;
	} else {
		end = v + strcspn(v, " \t");
		if (*end)
			*end++ = '\0';
	}
	end += strspn(end, " \t");
	return *end == '\0' || *end == '#' ? v : NULL;
}

/* Fills err for a refused line: cause and fix; the caller adds input. */
#define REFUSE(...)                                                                                \
	do {                                                                                       \
		snprintf(err->cause, sizeof(err->cause), __VA_ARGS__);                             \
		goto refused;                                                                      \
	} while (0)

static int check_line(char *text, struct ksmtuned_conf *c, int *seen, int lineno,
		      struct ksmconf_error *err)
{
	char *eq, *name, *value;
	const struct var *v = NULL;
	long long n;

	if (strncmp(text, "export ", 7) == 0)
		text += 7 + strspn(text + 7, " \t");
	eq = strchr(text, '=');
	if (!eq) {
		snprintf(
		    err->fix, sizeof(err->fix),
		    "write one NAME=VALUE per line, as ksmtuned.conf does: KSM_NPAGES_MAX=1250");
		REFUSE("syntax error: not NAME=VALUE");
	}
	*eq = '\0';
	name = text;
	if (!*name || strpbrk(name, " \t")) {
		snprintf(err->fix, sizeof(err->fix),
			 "no space around \"=\" (the file is shell): KSM_NPAGES_MAX=1250");
		REFUSE("syntax error: a space before \"=\"");
	}
	for (size_t i = 0; i < NVARS; i++)
		if (strcmp(name, vars[i].name) == 0)
			v = &vars[i];
	if (!v) {
		snprintf(err->fix, sizeof(err->fix),
			 "use KSM_MONITOR_INTERVAL, KSM_SLEEP_MSEC, KSM_NPAGES_BOOST, "
			 "KSM_NPAGES_DECAY, KSM_NPAGES_MIN, KSM_NPAGES_MAX, KSM_THRES_COEF, "
			 "KSM_THRES_CONST, LOGFILE or DEBUG");
		char shown[160];
		REFUSE("unknown variable \"%s\"",
		       ksmconf_show(name, strlen(name), shown, sizeof(shown)));
	}
	value = unquote(eq + 1);
	if (!value) {
		snprintf(err->fix, sizeof(err->fix),
			 "give one word, or quote it: %s=\"...\"; comments start with #", v->name);
		REFUSE("syntax error: more than one word after \"=\"");
	}
	if (v->off == SIZE_MAX)
		return 0;
	if (parse_ll(value, &n) || n < v->min || n > v->max || strchr(value, '\n')) {
		snprintf(err->fix, sizeof(err->fix), "give a whole number from %lld to %lld (%s)",
			 v->min, v->max, v->unit);
		REFUSE("bad value for %s", v->name);
	}
	if (seen[v - vars]) {
		snprintf(err->fix, sizeof(err->fix), "give each variable once");
		REFUSE("%s is set twice (first on line %d)", v->name, seen[v - vars]);
	}
	seen[v - vars] = lineno;
	*field(c, v) = n;
	return 0;
refused:
	return -EINVAL;
}

int ksmtuned_conf_read(const char *path, struct ksmtuned_conf *c, struct ksmconf_error *err)
{
	char *line = NULL, shown[600];
	size_t cap = 0;
	int lineno = 0, ret = 0, seen[NVARS] = {0};
	ssize_t got = 0;
	FILE *f = fopen(path, "re");

	memset(err, 0, sizeof(*err));
	ksmtuned_defaults(c);
	if (!f) {
		ret = -errno;
		snprintf(err->cause, sizeof(err->cause), "cannot read the ksmtuned config: %s",
			 strerror(-ret));
		snprintf(err->input, sizeof(err->input), "%s", path);
		snprintf(err->fix, sizeof(err->fix),
			 "name an existing file, or leave --config out for ksmtuned's defaults");
		return ret;
	}
	while (!ret && (got = getline(&line, &cap, f)) > 0) {
		char *text = line + strspn(line, " \t");

		lineno++;
		if (ksmconf_nul_line(path, lineno, line, (size_t)got, err)) {
			ret = -EINVAL;
			break;
		}
		text[strcspn(text, "\r\n")] = '\0';
		if (*text == '\0' || *text == '#')
			continue;
		ksmconf_show(text, strlen(text), shown, sizeof(shown));
		if ((ret = check_line(text, c, seen, lineno, err)))
			snprintf(err->input, sizeof(err->input), "%.400s:%d: %s", path, lineno,
				 shown);
	}
	/* getline's -1 is the end of the file or an error (a directory reads
	 * as EISDIR): an explicit --config that cannot be read is refused, as
	 * apply refuses its file, not taken for an empty one (the defaults). */
	if (!ret && got < 0 && ferror(f)) {
		ret = errno ? -errno : -EIO;
		snprintf(err->cause, sizeof(err->cause),
			 "cannot read the ksmtuned config: %s; none of it is used", strerror(-ret));
		if (lineno)
			snprintf(err->input, sizeof(err->input), "%.400s, after line %d", path,
				 lineno);
		else
			snprintf(err->input, sizeof(err->input), "%s", path);
		snprintf(err->fix, sizeof(err->fix),
			 "name ksmtuned's file (a regular file), or leave --config out for "
			 "/etc/ksmtuned.conf");
	}
	fclose(f);
	free(line);
	if (!ret && c->npages_min > c->npages_max) {
		int at = seen[4] > seen[5] ? seen[4] : seen[5];
		snprintf(err->cause, sizeof(err->cause),
			 "KSM_NPAGES_MIN (%lld) is above KSM_NPAGES_MAX (%lld)", c->npages_min,
			 c->npages_max);
		snprintf(err->input, sizeof(err->input), "%.400s:%d", path, at);
		snprintf(err->fix, sizeof(err->fix), "give KSM_NPAGES_MIN <= KSM_NPAGES_MAX");
		ret = -EINVAL;
	}
	return ret;
}

void ksmtuned_decide(const struct ksmtuned_conf *c, struct ksmtuned_state *s,
		     const struct tune_reading *r, struct tune_decision *d)
{
	/* awk sums the lines that are there. */
	long long free_kb = (r->mem_free_kb > 0 ? r->mem_free_kb : 0) +
			    (r->buffers_kb > 0 ? r->buffers_kb : 0) +
			    (r->cached_kb > 0 ? r->cached_kb : 0);
	long long committed = r->committed_kb;

	if (!s->started) {
		s->total = r->mem_total_kb;
		s->sleep = c->sleep_msec * 16 * 1024 * 1024 / s->total;
		if (s->sleep <= 10)
			s->sleep = 10;
		s->thres = s->total * c->thres_coef / 100;
		if (c->thres_const > s->thres)
			s->thres = c->thres_const;
		s->started = true;
	}
	memset(&d->set, 0xff, sizeof(d->set)); /* every knob -1: left alone */
	snprintf(d->read, sizeof(d->read), "committed %lld free %lld total %lld thres %lld",
		 committed, free_kb, s->total, s->thres);
	if (committed + s->thres < s->total && free_kb > s->thres) {
		d->set.run = 0;
		d->state = "stopped";
		snprintf(d->why, sizeof(d->why), "%lld < %lld and free > %lld, stop ksm",
			 committed + s->thres, s->total, s->thres);
		return;
	}
	bool boost = free_kb < s->thres;
	s->npages += boost ? c->boost : c->decay;
	if (s->npages < c->npages_min)
		s->npages = c->npages_min;
	else if (s->npages > c->npages_max)
		s->npages = c->npages_max;
	if (r->advisor_mode == 1)
		d->set.advisor_mode = 0;
	d->set.pages_to_scan = s->npages;
	d->set.sleep_ms = s->sleep;
	d->set.run = 1;
	d->state = boost ? "boost" : "decay";
	/* ksmtuned's debug lines, in one. */
	snprintf(d->why, sizeof(d->why), "%lld %s %lld, start ksm; %lld %s %lld, %s",
		 committed + s->thres, committed + s->thres < s->total ? "<" : ">=", s->total,
		 free_kb, boost ? "<" : ">=", s->thres, boost ? "boost" : "decay");
}

bool tune_is_qemu(const char *comm)
{
	size_t n = strlen(comm);

	if (strncmp(comm, "qemu", 4))
		return false;
	if (strcmp(comm + 4, "-kvm") == 0)
		return true;
	if (strncmp(comm + 4, "-system-", 8) == 0)
		return n > 12;
	return comm[4] == ':' && n >= 6 && n <= 16;
}
