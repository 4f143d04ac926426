// SPDX-License-Identifier: MIT
/*
 * fuzz_ksmconf.c - the one config file parser (common/ksmconf.c), which
 * `ksmctl apply` and `samepaged --config` share, against the file format of
 * ksmctl(1) read apart here.
 *
 * Input: the bytes of a config file, read by ksmconf_read() from a memfd
 * (through /proc/self/fd, a regular file).  The model below reads the same
 * bytes by the documented rules: lines split at '\n' (the last one may lack
 * it), a UTF-8 byte-order mark skipped at the start, a NUL byte refusing its
 * line, '#' starting a comment, blank lines skipped, else NAME = VALUE with
 * one word on each side (spaces and tabs around them, and \r at their ends,
 * are no part of them), NAME a tunable of the knob table, VALUE what the
 * kernel's store function takes (fuzz.h's model_parse, written apart from
 * lib/knobs.c), each NAME once, and no pages_to_scan beside
 * advisor_mode = scan-time.  The parser's one limit of its own is modelled
 * too: a value of 64 bytes or more (struct ksmconf_entry keeps it as
 * written) is refused.
 *
 * Promises checked:
 *  - the same answer: the file accepted, or refused at the same line with
 *    -EINVAL, a cause, a fix and an input "FILE:LINE: LINE-AS-SHOWN" with no
 *    control byte printed raw (the advisor's rule names the pages_to_scan
 *    line as "pages_to_scan=VALUE (FILE:LINE)"); nothing of a refused file
 *    kept (out->n is 0, so no caller can apply half of it);
 *  - accepted: the model's settings in file order, each value the kernel's,
 *    within the knob table's range, its origin "FILE:LINE";
 *  - round trip: the settings printed back in the documented format, once
 *    as written and once as numbers (with a byte-order mark, comments and
 *    a blank line), read back as the same settings.
 */
#include "fuzz.h"

#include <errno.h>
#include <ksmconf.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

struct model_entry {
	const struct samepage_knob *knob;
	unsigned long long v;
	int line;
	char value[64];
};

struct model {
	int n;
	struct model_entry e[KSMCONF_MAX];
	int bad_line;  /* the first refused line, 0 if none */
	bool advisor;  /* refused for pages_to_scan with advisor_mode=scan-time */
	int pts_index; /* then: the pages_to_scan entry */
};

static bool blank(char c)
{
	return c == ' ' || c == '\t';
}

/* [*s, *e) without the spaces and tabs before it, nor the spaces, tabs
 * and \r after it. */
static void model_trim(const char **s, const char **e)
{
	while (*s < *e && blank(**s))
		(*s)++;
	while (*e > *s && (blank((*e)[-1]) || (*e)[-1] == '\r'))
		(*e)--;
}

/* One line, len bytes without its '\n': 0 (blank or a setting added), -1
 * (refused), or 1 (a value the oracle leaves out of this run: skip). */
static int model_line(struct model *m, int lineno, const char *s, size_t len)
{
	const char *e = s + len, *eq, *ns, *ne, *vs, *ve;
	char name[128], value[4096];

	if (memchr(s, '\0', len))
		return -1;
	const char *hash = memchr(s, '#', len);
	if (hash)
		e = hash;
	model_trim(&s, &e);
	if (s == e)
		return 0;
	eq = memchr(s, '=', (size_t)(e - s));
	if (!eq)
		return -1;
	ns = s, ne = eq, vs = eq + 1, ve = e;
	model_trim(&ns, &ne);
	model_trim(&vs, &ve);
	if (ns == ne || vs == ve)
		return -1;
	for (const char *p = ns; p < ne; p++)
		if (blank(*p))
			return -1;
	for (const char *p = vs; p < ve; p++)
		if (blank(*p))
			return -1;
	if ((size_t)(ne - ns) >= sizeof(name) || (size_t)(ve - vs) >= sizeof(value))
		return -1; /* no knob's name; a value far past the 64 bytes kept */
	memcpy(name, ns, (size_t)(ne - ns));
	name[ne - ns] = '\0';
	memcpy(value, vs, (size_t)(ve - vs));
	value[ve - vs] = '\0';

	const struct samepage_knob *k = samepage_knob_find(name);
	if (!k || k->kind != SAMEPAGE_KNOB_TUNABLE)
		return -1;
	unsigned long long v = 0;
	int r = model_parse(k, value, &v);
	if (r == 1)
		return 1;
	if (r || strlen(value) >= sizeof(m->e[0].value))
		return -1;
	for (int i = 0; i < m->n; i++)
		if (m->e[i].knob == k)
			return -1;
	FUZZ_ASSERT(m->n < KSMCONF_MAX, "more settings than tunables");
	m->e[m->n] = (struct model_entry){.knob = k, .v = v, .line = lineno};
	snprintf(m->e[m->n].value, sizeof(m->e[0].value), "%s", value);
	m->n++;
	return 0;
}

/* The whole file: 0, or 1 to skip the input. */
static int model_read(struct model *m, const uint8_t *data, size_t size)
{
	const char *s = (const char *)data, *end = s + size;
	int lineno = 0;

	memset(m, 0, sizeof(*m));
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *le = nl ? nl : end;
		lineno++;
		if (lineno == 1 && le - s >= 3 && !memcmp(s, "\xef\xbb\xbf", 3))
			s += 3;
		int r = model_line(m, lineno, s, (size_t)(le - s));
		if (r == 1)
			return 1;
		if (r < 0) {
			m->bad_line = lineno;
			return 0;
		}
		s = nl ? nl + 1 : end;
	}
	int pts = -1;
	bool scan_time = false;
	for (int i = 0; i < m->n; i++) {
		if (!strcmp(m->e[i].knob->name, "pages_to_scan"))
			pts = i;
		if (!strcmp(m->e[i].knob->name, "advisor_mode") && m->e[i].v == 1)
			scan_time = true;
	}
	if (pts >= 0 && scan_time)
		m->advisor = true, m->pts_index = pts;
	return 0;
}

static int conf_fd = -1;
static char conf_path[64];

/* Reads text through ksmconf_read() as the file conf_path. */
static int read_text(const void *text, size_t len, struct ksmconf_file *out,
		     struct ksmconf_error *err)
{
	if (conf_fd < 0) {
		conf_fd = memfd_create("ksm.conf", MFD_CLOEXEC);
		FUZZ_ASSERT(conf_fd >= 0, "memfd_create: %s", strerror(errno));
		snprintf(conf_path, sizeof(conf_path), "/proc/self/fd/%d", conf_fd);
	}
	FUZZ_ASSERT(ftruncate(conf_fd, 0) == 0, "ftruncate: %s", strerror(errno));
	FUZZ_ASSERT(len == 0 || pwrite(conf_fd, text, len, 0) == (ssize_t)len, "pwrite: %s",
		    strerror(errno));
	return ksmconf_read(conf_path, out, err);
}

static bool has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* The settings of conf, printed back as the documented format, read back
 * the same. */
static void round_trip(const struct ksmconf_file *conf, bool numbers)
{
	static struct ksmconf_file again;
	struct ksmconf_error err;
	char text[KSMCONF_MAX * 200];
	size_t len = 0;

	len +=
	    (size_t)snprintf(text + len, sizeof(text) - len, "%s# printed back by fuzz_ksmconf\n\n",
			     numbers ? "\xef\xbb\xbf" : "");
	for (int i = 0; i < conf->n; i++) {
		const struct ksmconf_entry *e = &conf->e[i];
		char v[64];
		if (!numbers)
			snprintf(v, sizeof(v), "%s", e->value);
		else if (e->knob->format == SAMEPAGE_FMT_MODE)
			snprintf(v, sizeof(v), "%s", e->v ? "scan-time" : "none");
		else
			snprintf(v, sizeof(v), "%llu", e->v);
		len += (size_t)snprintf(text + len, sizeof(text) - len, "%s%s=%s\t# was line %d\n",
					numbers ? "" : "  ", e->knob->name, v, e->line);
	}
	FUZZ_ASSERT(len < sizeof(text), "round trip text too long");
	int r = read_text(text, len, &again, &err);
	FUZZ_ASSERT(r == 0, "printed back (%s), refused: %s / %s\n%s",
		    numbers ? "as numbers" : "as written", err.cause, err.input, text);
	FUZZ_ASSERT(again.n == conf->n, "printed back: %d settings, not %d", again.n, conf->n);
	for (int i = 0; i < conf->n; i++)
		FUZZ_ASSERT(again.e[i].knob == conf->e[i].knob && again.e[i].v == conf->e[i].v,
			    "printed back: setting %d is %s = %llu, not %s = %llu", i,
			    again.e[i].knob->name, again.e[i].v, conf->e[i].knob->name,
			    conf->e[i].v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct model m;
	static struct ksmconf_file conf;
	struct ksmconf_error err;
	char prefix[128];

	if (size > 65536 || model_read(&m, data, size))
		return 0;
	memset(&conf, 0xa5, sizeof(conf)); /* nothing left from the last input */
	int r = read_text(data, size, &conf, &err);
	bool refused = m.bad_line || m.advisor;

	if (!refused) {
		FUZZ_ASSERT(r == 0, "a good file refused (%d): %s / %s / %s", r, err.cause,
			    err.input, err.fix);
		FUZZ_ASSERT(conf.n == m.n, "%d settings read, the model has %d", conf.n, m.n);
		for (int i = 0; i < m.n; i++) {
			const struct ksmconf_entry *e = &conf.e[i];
			const struct samepage_knob *k = m.e[i].knob;
			char origin[96];
			FUZZ_ASSERT(e->knob == k && e->line == m.e[i].line,
				    "setting %d: %s on line %d, the model's %s on line %d", i,
				    e->knob ? e->knob->name : "(null)", e->line, k->name,
				    m.e[i].line);
			FUZZ_ASSERT(e->v == m.e[i].v, "%s = [%s]: %llu, the kernel's %llu", k->name,
				    m.e[i].value, e->v, m.e[i].v);
			FUZZ_ASSERT(e->v >= k->min && e->v <= k->max,
				    "%s = %llu outside %llu..%llu", k->name, e->v, k->min, k->max);
			FUZZ_ASSERT(!strcmp(e->value, m.e[i].value),
				    "%s: value kept as [%s], not [%s]", k->name, e->value,
				    m.e[i].value);
			snprintf(origin, sizeof(origin), "%s:%d", conf_path, m.e[i].line);
			FUZZ_ASSERT(!strcmp(e->origin, origin), "origin %s, not %s", e->origin,
				    origin);
		}
		round_trip(&conf, false);
		round_trip(&conf, true);
		return 0;
	}

	FUZZ_ASSERT(r == -EINVAL, "a bad file (line %d%s) gives %d, not -EINVAL", m.bad_line,
		    m.advisor ? ", advisor" : "", r);
	FUZZ_ASSERT(conf.n == 0, "a refused file keeps %d settings", conf.n);
	FUZZ_ASSERT(err.cause[0] && err.fix[0], "no cause or fix: [%s] [%s]", err.cause, err.fix);
	FUZZ_ASSERT(!has_control(err.cause) && !has_control(err.input) && !has_control(err.fix),
		    "a control byte printed raw: %s / %s / %s", err.cause, err.input, err.fix);
	if (m.bad_line) {
		int n = snprintf(prefix, sizeof(prefix), "%s:%d: ", conf_path, m.bad_line);
		FUZZ_ASSERT(!strncmp(err.input, prefix, (size_t)n),
			    "refused, but the input is [%s], not the model's line %d (%s)",
			    err.input, m.bad_line, err.cause);
	} else {
		const struct model_entry *e = &m.e[m.pts_index];
		snprintf(prefix, sizeof(prefix), "pages_to_scan=%s (%s:%d)", e->value, conf_path,
			 e->line);
		FUZZ_ASSERT(!strcmp(err.input, prefix), "advisor: the input is [%s], not [%s]",
			    err.input, prefix);
		FUZZ_ASSERT(!strcmp(err.cause, KSMCONF_ADVISOR_CAUSE), "advisor: cause [%s]",
			    err.cause);
	}
	return 0;
}
