// SPDX-License-Identifier: MIT
/*
 * json.c - the streaming JSON writer (see json.h).
 */
#include "json.h"

#include <math.h>

#include "procfs.h"
#include "util.h"

static bool stdout_used;

bool json_stdout_used(void)
{
	return stdout_used;
}

void json_stdout_reset(void)
{
	stdout_used = false;
}

void json_init(struct json *j, FILE *f)
{
	stdout_used |= f == stdout;
	j->f = f;
	j->depth = 0;
	j->one_line = false;
	j->need_comma[0] = false;
}

void json_init_line(struct json *j, FILE *f)
{
	json_init(j, f);
	j->one_line = true;
}

/* Any bytes give a valid JSON string: printable UTF-8 is kept, control
 * characters are JSON escapes, and other bytes (not UTF-8) are written as
 * the text "\xHH", as procfs_escape() writes them. */
static void put_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		size_t n = procfs_printable(p);

		if (n == 1 && (*p == '"' || *p == '\\'))
			fprintf(f, "\\%c", *p);
		else if (n)
			fwrite(p, 1, n, f);
		else if (*p == '\n')
			fputs("\\n", f);
		else if (*p == '\t')
			fputs("\\t", f);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(f, "\\u%04x", *p);
		else
			fprintf(f, "\\\\x%02x", *p);
		p += n ? n : 1;
	}
	fputc('"', f);
}

/* Writes the separator, indentation and key that precede every value. */
static void prefix(struct json *j, const char *key)
{
	if (j->need_comma[j->depth])
		fputs(j->one_line ? ", " : ",", j->f);
	if (j->depth && !j->one_line)
		fprintf(j->f, "\n%*s", 2 * j->depth, "");
	j->need_comma[j->depth] = true;
	if (key) {
		put_string(j->f, key);
		fputs(": ", j->f);
	}
}

static void open_(struct json *j, const char *key, char c)
{
	prefix(j, key);
	fputc(c, j->f);
	if (j->depth + 1 < JSON_MAX_DEPTH)
		j->depth++;
	j->need_comma[j->depth] = false;
}

static void close_(struct json *j, char c)
{
	bool empty = !j->need_comma[j->depth];

	if (j->depth)
		j->depth--;
	if (!empty && !j->one_line)
		fprintf(j->f, "\n%*s", 2 * j->depth, "");
	fputc(c, j->f);
	if (!j->depth)
		fputc('\n', j->f);
}

void json_object_begin(struct json *j, const char *key)
{
	open_(j, key, '{');
}

void json_object_end(struct json *j)
{
	close_(j, '}');
}

void json_array_begin(struct json *j, const char *key)
{
	open_(j, key, '[');
}

void json_array_end(struct json *j)
{
	close_(j, ']');
}

void json_string(struct json *j, const char *key, const char *value)
{
	prefix(j, key);
	if (value)
		put_string(j->f, value);
	else
		fputs("null", j->f);
}

void json_int(struct json *j, const char *key, long long value)
{
	prefix(j, key);
	fprintf(j->f, "%lld", value);
}

void json_uint(struct json *j, const char *key, unsigned long long value)
{
	prefix(j, key);
	fprintf(j->f, "%llu", value);
}

void json_double(struct json *j, const char *key, double value)
{
	prefix(j, key);
	char buf[32];

	if (isfinite(value))
		fputs(fmt_double(buf, sizeof(buf), value), j->f);
	else
		fputs("null", j->f);
}

void json_bool(struct json *j, const char *key, bool value)
{
	prefix(j, key);
	fputs(value ? "true" : "false", j->f);
}

void json_null(struct json *j, const char *key)
{
	prefix(j, key);
	fputs("null", j->f);
}
