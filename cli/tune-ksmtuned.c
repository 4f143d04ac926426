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
 *
 * A number is read as ksmtuned's bash reads it (Debian's ksmtuned
 * 4.20150326 and Fedora's script are the same there), which depends on
 * where the script uses the variable:
 *   KSM_MONITOR_INTERVAL   `sleep $KSM_MONITOR_INTERVAL` (coreutils):
 *                          decimal, leading zeros too;
 *   KSM_SLEEP_MSEC, KSM_THRES_COEF, KSM_NPAGES_BOOST, KSM_NPAGES_DECAY
 *                          only in $[ ] arithmetic: a leading 0 makes the
 *                          number octal (0300 is 192), 0x hex; 08 and 09
 *                          are errors there ("value too great for base"),
 *                          after which ksmtuned runs on with the variable
 *                          it was computing empty (a sleep or a thres of
 *                          nothing, npages written as ""): refused here;
 *   KSM_NPAGES_MIN, KSM_NPAGES_MAX, KSM_THRES_CONST
 *                          compared by `[ -lt ]`/`[ -gt ]` (decimal), then
 *                          copied into npages or thres, which the next $[ ]
 *                          reads as octal: with a leading 0 ksmtuned uses
 *                          two numbers (KSM_NPAGES_MAX=01250 clamps npages
 *                          to 1250, whose next step starts from 680).  Here
 *                          the decimal one, throughout, with a warning; hex
 *                          is refused, as `[` refuses it.
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

/* Where ksmtuned's script uses a variable, which decides how bash reads
 * its number (the header above). */
enum reading {
	AS_SLEEP, /* `sleep $V`: decimal */
	AS_ARITH, /* $[ ] only: a leading 0 octal, 0x hex */
	AS_TEST,  /* [ -lt ] (decimal), then $[ ] (octal): decimal, warned */
	AS_TEXT,  /* not a number: LOGFILE, DEBUG */
};

static const struct var {
	const char *name;
	size_t off; /* in struct ksmtuned_conf; SIZE_MAX: accepted, unused */
	long long min, max, def;
	const char *unit;
	enum reading how;
} vars[] = {
    {"KSM_MONITOR_INTERVAL", offsetof(struct ksmtuned_conf, interval), 1, 86400, 60, "seconds",
     AS_SLEEP},
    {"KSM_SLEEP_MSEC", offsetof(struct ksmtuned_conf, sleep_msec), 0, U32_MAX, 10,
     "milliseconds for a 16 GiB host", AS_ARITH},
    {"KSM_NPAGES_BOOST", offsetof(struct ksmtuned_conf, boost), -U32_MAX, U32_MAX, 300, "pages",
     AS_ARITH},
    {"KSM_NPAGES_DECAY", offsetof(struct ksmtuned_conf, decay), -U32_MAX, U32_MAX, -50, "pages",
     AS_ARITH},
    {"KSM_NPAGES_MIN", offsetof(struct ksmtuned_conf, npages_min), 0, U32_MAX, 64, "pages",
     AS_TEST},
    {"KSM_NPAGES_MAX", offsetof(struct ksmtuned_conf, npages_max), 0, U32_MAX, 1250, "pages",
     AS_TEST},
    {"KSM_THRES_COEF", offsetof(struct ksmtuned_conf, thres_coef), 0, 100, 20,
     "percent of MemTotal", AS_ARITH},
    {"KSM_THRES_CONST", offsetof(struct ksmtuned_conf, thres_const), 0, 1LL << 40, 2048, "kB",
     AS_TEST},
    {"LOGFILE", SIZE_MAX, 0, 0, 0, NULL, AS_TEXT},
    {"DEBUG", SIZE_MAX, 0, 0, 0, NULL, AS_TEXT},
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

/* A number as bash reads it (the header): blanks around, a sign, then
 * digits; in arithmetic (arith) a leading 0 makes them octal and 0x hex,
 * elsewhere they are decimal.  0 with *out; -EDOM for a digit the base
 * does not have (bash's "value too great for base": 08 in arithmetic),
 * -ERANGE past 64 bits, -EINVAL for anything else. */
static int bash_number(const char *s, bool arith, long long *out)
{
	unsigned long long v = 0;
	unsigned base = 10;
	bool neg = false;
	int digits = 0;

	s += strspn(s, " \t");
	if (*s == '-' || *s == '+')
		neg = *s++ == '-';
	if (arith && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		base = 16, s += 2;
	else if (arith && s[0] == '0')
		base = 8;
	for (; *s && !strchr(" \t", *s); s++, digits++) {
		unsigned d = *s >= '0' && *s <= '9'   ? (unsigned)(*s - '0')
			     : *s >= 'a' && *s <= 'f' ? (unsigned)(*s - 'a' + 10)
			     : *s >= 'A' && *s <= 'F' ? (unsigned)(*s - 'A' + 10)
						      : 99;
		if (d == 99 || (d >= 10 && base != 16))
			return -EINVAL;
		if (d >= base)
			return -EDOM;
		if (v > (ULLONG_MAX - d) / base)
			return -ERANGE;
		v = v * base + d;
	}
	if (!digits || s[strspn(s, " \t")] || v > (unsigned long long)LLONG_MAX)
		return -EINVAL;
	*out = neg ? -(long long)v : (long long)v;
	return 0;
}

/* Fills err for a refused line: cause and fix; the caller adds input. */
#define REFUSE(...)                                                                                \
	do {                                                                                       \
		snprintf(err->cause, sizeof(err->cause), __VA_ARGS__);                             \
		goto refused;                                                                      \
	} while (0)

static int check_line(const char *path, char *text, struct ksmtuned_conf *c, int *seen, int lineno,
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
	if (v->how == AS_TEXT)
		return 0;
	/* A leading 0 (not 0 alone): octal where ksmtuned's arithmetic
	 * reads the value, at once (AS_ARITH) or once npages or thres has
	 * taken it (AS_TEST). */
	const char *sign = value + strspn(value, " \t"),
		   *digits = sign + (*sign == '-' || *sign == '+');
	bool octal = v->how != AS_SLEEP && digits[0] == '0' && digits[1] >= '0' && digits[1] <= '9';
	long long as_octal = 0;
	int r = bash_number(value, v->how == AS_ARITH, &n);
	if (octal && bash_number(value, true, &as_octal) == -EDOM) {
		snprintf(
		    err->fix, sizeof(err->fix),
		    "write %s=%s%.*s: without its leading 0 (ksmtuned's bash fails on it: \"value "
		    "too great for base\")",
		    v->name, *sign == '-' ? "-" : "",
		    (int)strcspn(digits + strspn(digits, "0"), " \t"),
		    digits + strspn(digits, "0"));
		REFUSE("bad value for %s: %.*s is octal in ksmtuned's arithmetic%s (a leading 0), "
		       "where 8 and 9 are not digits",
		       v->name, (int)strcspn(digits, " \t"), digits,
		       v->how == AS_TEST ? " once npages or thres takes it" : "");
	}
	if (r || n < v->min || n > v->max || strchr(value, '\n')) {
		snprintf(err->fix, sizeof(err->fix), "give a whole number from %lld to %lld (%s)%s",
			 v->min, v->max, v->unit,
			 v->how == AS_TEST && digits[0] == '0' &&
				 (digits[1] == 'x' || digits[1] == 'X')
			     ? " in decimal (ksmtuned compares it with [ -lt ], which reads no hex)"
			     : "");
		REFUSE("bad value for %s", v->name);
	}
	/* ksmtuned compares the decimal number, then does arithmetic on the
	 * octal one: the decimal one is used here, throughout. */
	if (v->how == AS_TEST && octal && as_octal != n)
		ksmctl_warn(
		    "tune: %.400s:%d: %s=%s is taken as %lld; ksmtuned compares it as %lld, "
		    "but its arithmetic reads it as octal, %lld, once npages or thres is set "
		    "to it (fix: write %s=%lld)",
		    path, lineno, v->name, value, n, n, as_octal, v->name, n);
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
		if ((ret = check_line(path, text, c, seen, lineno, err)))
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
