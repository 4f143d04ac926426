// SPDX-License-Identifier: MIT
/*
 * ksmconf.c - the KSM config file reader (see ksmconf.h).
 */
#include "ksmconf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "procfs.h" /* procfs_printable: names are shown as ps-like tools show them */

const char *ksmconf_range(const struct samepage_knob *k, char *buf, size_t len)
{
	if (k->format == SAMEPAGE_FMT_BOOL)
		snprintf(buf, len, "0 or 1 (or y/n, on/off)");
	else if (k->format == SAMEPAGE_FMT_MODE)
		snprintf(buf, len, "none or scan-time");
	else
		snprintf(buf, len, "a whole number from %llu to %llu", k->min, k->max);
	return buf;
}

const char *ksmconf_name(const char *path)
{
	return strcmp(path, "-") ? path : "(standard input)";
}

static char *trim(char *s)
{
	char *e;

	s += strspn(s, " \t");
	e = s + strlen(s);
	while (e > s && strchr(" \t\r\n", e[-1]))
		*--e = '\0';
	return s;
}

const char *ksmconf_show(const char *line, size_t len, char *out, size_t outlen)
{
	while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	return procfs_escape_n(line, len, out, outlen);
}

bool ksmconf_nul_line(const char *path, int lineno, const char *line, size_t len,
		      struct ksmconf_error *err)
{
	char shown[600];
	if (!memchr(line, '\0', len))
		return false;
	snprintf(err->cause, sizeof(err->cause), "the line contains a NUL byte");
	snprintf(err->fix, sizeof(err->fix),
		 "remove it: a config file is text (tr -d '\\000' < FILE > NEW)");
	snprintf(err->input, sizeof(err->input), "%.400s:%d: %s", path, lineno,
		 ksmconf_show(line, len, shown, sizeof(shown)));
	return true;
}

int ksmconf_check_value(const char *name, const char *value, const struct samepage_knob **knob,
			unsigned long long *v, const char *unknown_fix, struct ksmconf_error *err)
{
	const struct samepage_knob *k = samepage_knob_find(name);
	char range[96], shown[160];
	unsigned long long parsed;
	int r = samepage_knob_parse(name, value, &parsed);

	if (r == -ENOENT) {
		snprintf(err->cause, sizeof(err->cause), "unknown knob \"%s\"",
			 ksmconf_show(name, strlen(name), shown, sizeof(shown)));
		snprintf(err->fix, sizeof(err->fix), "%s",
			 unknown_fix ? unknown_fix
				     : "use a knob of /sys/kernel/mm/ksm: `ksmctl apply --sample` "
				       "lists them");
	} else if (r == -EACCES) {
		snprintf(err->cause, sizeof(err->cause), "\"%.64s\" is a counter, not a knob",
			 name);
		snprintf(err->fix, sizeof(err->fix), "only tunables can be set: leave it out");
	} else if (r) {
		snprintf(err->cause, sizeof(err->cause), "bad value for %s", k->name);
		snprintf(err->fix, sizeof(err->fix), "give %s",
			 ksmconf_range(k, range, sizeof(range)));
	} else if (strlen(value) > KSMCONF_VALUE_MAX) {
		r = -EINVAL;
		snprintf(err->cause, sizeof(err->cause), "bad value for %s: %zu characters long",
			 k->name, strlen(value));
		snprintf(err->fix, sizeof(err->fix),
			 "give %s in at most %d characters (without leading zeros)",
			 ksmconf_range(k, range, sizeof(range)), KSMCONF_VALUE_MAX);
	}
	if (r)
		return r;
	if (knob)
		*knob = k;
	if (v)
		*v = parsed;
	return 0;
}

/* Checks one "name = value" line into s: 0 or -EINVAL with err filled. */
static int check_line(char *text, struct ksmconf_entry *s, const struct ksmconf_entry *prev,
		      int nprev, struct ksmconf_error *err)
{
	char *eq = strchr(text, '='), *name, *value;
	int r;

	if (!eq) {
		snprintf(err->cause, sizeof(err->cause), "syntax error: no \"=\"");
		snprintf(err->fix, sizeof(err->fix),
			 "write one \"name = value\" per line, e.g. run = 1");
		return -EINVAL;
	}
	*eq = '\0';
	name = trim(text);
	value = trim(eq + 1);
	if (!*name || !*value || strpbrk(name, " \t") || strpbrk(value, " \t")) {
		snprintf(err->cause, sizeof(err->cause), "syntax error: %s",
			 !*name || !*value ? "a name and a value are needed"
					   : "one word on each side of \"=\"");
		snprintf(err->fix, sizeof(err->fix),
			 "write one \"name = value\" per line, e.g. run = 1 (a comment starts "
			 "with #)");
		return -EINVAL;
	}
	r = ksmconf_check_value(name, value, &s->knob, &s->v, NULL, err);
	if (r)
		return -EINVAL;
	for (int i = 0; i < nprev; i++)
		if (prev[i].knob == s->knob) {
			snprintf(err->cause, sizeof(err->cause),
				 "%s is set twice (first on line %d)", s->knob->name, prev[i].line);
			snprintf(err->fix, sizeof(err->fix), "give each knob once");
			return -EINVAL;
		}
	snprintf(s->value, sizeof(s->value), "%s", value);
	return 0;
}

/* pages_to_scan and advisor_mode=scan-time in one file, in either order
 * (ksmconf.h): -EINVAL, *err naming the pages_to_scan line. */
int ksmconf_check_advisor(const struct ksmconf_file *conf, struct ksmconf_error *err)
{
	const struct ksmconf_entry *pts = NULL;
	bool scan_time = false;

	for (int i = 0; i < conf->n; i++)
		if (!strcmp(conf->e[i].knob->name, "pages_to_scan"))
			pts = &conf->e[i];
		else if (!strcmp(conf->e[i].knob->name, "advisor_mode"))
			scan_time = conf->e[i].v == 1;
	if (!pts || !scan_time)
		return 0;
	snprintf(err->cause, sizeof(err->cause), "%s", KSMCONF_ADVISOR_CAUSE);
	snprintf(err->input, sizeof(err->input), "pages_to_scan=%s (%.900s)", pts->value,
		 pts->origin);
	snprintf(err->fix, sizeof(err->fix), "%s", KSMCONF_ADVISOR_FIX);
	return -EINVAL;
}

int ksmconf_read(const char *path, struct ksmconf_file *out, struct ksmconf_error *err)
{
	char *line = NULL;
	size_t cap = 0;
	int lineno = 0, ret = 0;
	bool std_in = !strcmp(path, "-");
	FILE *f = std_in ? stdin : *path ? fopen(path, "re") : NULL;

	memset(err, 0, sizeof(*err));
	out->n = 0;
	if (!*path) { /* "$CONF" with CONF unset: not a file that is missing */
		snprintf(err->cause, sizeof(err->cause), "the config file's name is empty");
		snprintf(err->input, sizeof(err->input), "\"\"");
		snprintf(err->fix, sizeof(err->fix),
			 "name a config file (an unset variable gives an empty name)");
		return -ENOENT;
	}
	if (!f) {
		ret = -errno;
		snprintf(err->cause, sizeof(err->cause), "cannot read the config file: %s",
			 strerror(-ret));
		snprintf(err->input, sizeof(err->input), "%s", path);
		if (ret == -EACCES || ret == -EPERM)
			snprintf(err->fix, sizeof(err->fix),
				 "make it readable by this user (chmod, chown), or run as root");
		else
			snprintf(err->fix, sizeof(err->fix),
				 "create it (`ksmctl apply --sample > FILE`) or name another file");
		return ret;
	}
	path = ksmconf_name(path);
	/* A directory reads as an error, a device as endless or empty text:
	 * only a regular file (or a pipe, as from <(...)) is a config file. */
	struct stat st;
	if (fstat(fileno(f), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode)) {
		ret = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		snprintf(err->cause, sizeof(err->cause),
			 "the config file is not a regular file: %s",
			 S_ISDIR(st.st_mode)	? "a directory"
			 : S_ISCHR(st.st_mode)	? "a character device"
			 : S_ISBLK(st.st_mode)	? "a block device"
			 : S_ISSOCK(st.st_mode) ? "a socket"
						: "not a file");
		snprintf(err->input, sizeof(err->input), "%s", path);
		snprintf(err->fix, sizeof(err->fix), "%s",
			 std_in ? "give a file on standard input (- < FILE, or a pipe), or name "
				  "the file"
				: "name a config file (`ksmctl apply --sample > FILE` writes one)");
		if (!std_in)
			fclose(f);
		return ret;
	}
	ssize_t got = 0;
	while (!ret && (got = getline(&line, &cap, f)) > 0) {
		struct ksmconf_entry *e = &out->e[out->n];
		char *text, shown[600];

		lineno++;
		/* A UTF-8 byte-order mark (Windows editors write one) is no
		 * part of the first name. */
		if (lineno == 1 && got >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0) {
			memmove(line, line + 3, (size_t)got - 2);
			got -= 3;
		}
		if (ksmconf_nul_line(path, lineno, line, (size_t)got, err)) {
			ret = -EINVAL;
			break;
		}
		line[strcspn(line, "#")] = '\0';
		text = trim(line);
		if (!*text)
			continue;
		ksmconf_show(text, strlen(text), shown, sizeof(shown));
		if (out->n == KSMCONF_MAX) {
			snprintf(err->cause, sizeof(err->cause), "too many settings");
			snprintf(err->fix, sizeof(err->fix), "give each knob once");
			ret = -E2BIG;
		} else {
			e->line = lineno;
			ret = check_line(text, e, out->e, out->n, err);
		}
		if (ret) {
			snprintf(err->input, sizeof(err->input), "%.400s:%d: %s", path, lineno,
				 shown);
		} else {
			snprintf(e->origin, sizeof(e->origin), "%.1000s:%d", path, lineno);
			out->n++;
		}
	}
	/* getline's -1 is the end of the file or an error: an error part-way
	 * must not leave the lines before it to be applied. */
	if (!ret && got < 0 && ferror(f)) {
		ret = errno ? -errno : -EIO;
		out->n = 0;
		snprintf(err->cause, sizeof(err->cause),
			 "cannot read the config file: %s; none of it is used", strerror(-ret));
		if (lineno)
			snprintf(err->input, sizeof(err->input), "%.1000s, after line %d", path,
				 lineno);
		else
			snprintf(err->input, sizeof(err->input), "%s", path);
		snprintf(err->fix, sizeof(err->fix),
			 "check the file (its disk or filesystem) and run again");
	}
	if (!ret)
		ret = ksmconf_check_advisor(out, err);
	/* A refused file gives no settings at all, not those of the lines
	 * before the refused one: no caller can apply half of it. */
	if (ret)
		out->n = 0;
	if (!std_in)
		fclose(f);
	free(line);
	return ret;
}
