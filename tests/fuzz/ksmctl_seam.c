// SPDX-License-Identifier: MIT
/*
 * ksmctl_seam.c - ksmctl_main() in the fuzzer's process, scratch trees, and
 * the checks of what ksmctl prints (see ksmctl_seam.h).
 */
#include "ksmctl_seam.h"

#include "ksmctl.h" /* cli/: the global options */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <sanitizer/lsan_interface.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int ksmctl_main(int argc, char **argv);

static int out_fd = -1;
static char *out_buf;
static size_t out_cap;

int ksmctl_run(int argc, char **argv, const char **out, size_t *outlen)
{
	static struct ksmctl_options initial;
	static bool saved;
	if (!saved) {
		initial = opt;
		saved = true;
		out_fd = memfd_create("ksmctl-stdout", MFD_CLOEXEC);
		if (out_fd < 0 || dup2(out_fd, STDOUT_FILENO) < 0) {
			perror("ksmctl_run: stdout");
			exit(1);
		}
	}
	opt = initial;
	optind = 0;
	fflush(stdout);
	clearerr(stdout);
	if (ftruncate(STDOUT_FILENO, 0) || lseek(STDOUT_FILENO, 0, SEEK_SET) < 0) {
		perror("ksmctl_run: stdout");
		exit(1);
	}
	/* ksmctl's messages (stdio's stderr) go nowhere; a sanitizer's report
	 * (written to fd 2) and the target's own still reach the log. */
	static FILE *devnull;
	if (!devnull && !(devnull = fopen("/dev/null", "w"))) {
		perror("/dev/null");
		exit(1);
	}
	FILE *err_stream = stderr;
	stderr = devnull;
	__lsan_disable();
	int status = ksmctl_main(argc, argv);
	__lsan_enable();
	stderr = err_stream;
	fflush(stdout);
	off_t n = lseek(STDOUT_FILENO, 0, SEEK_CUR);
	if (n < 0)
		n = 0;
	if ((size_t)n + 1 > out_cap) {
		out_cap = (size_t)n + 1;
		out_buf = realloc(out_buf, out_cap);
		if (!out_buf)
			exit(1);
	}
	ssize_t got = pread(STDOUT_FILENO, out_buf, (size_t)n, 0);
	out_buf[got > 0 ? got : 0] = 0;
	*out = out_buf;
	*outlen = got > 0 ? (size_t)got : 0;
	return status;
}

/* ---- scratch trees ---- */

static char scratch[64];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return ftw->level ? remove(path) : 0;
}

static void scratch_remove(void)
{
	tree_clear(scratch);
	rmdir(scratch);
}

const char *scratch_dir(void)
{
	if (!scratch[0]) {
		snprintf(scratch, sizeof(scratch), "/dev/shm/samepage-fuzz-XXXXXX");
		if (!mkdtemp(scratch)) {
			perror("mkdtemp");
			exit(1);
		}
		atexit(scratch_remove);
	}
	return scratch;
}

void tree_clear(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int tree_put(const char *dir, const char *rel, const void *data, size_t len)
{
	char path[512];
	if (!*rel || rel[0] == '/' || strstr(rel, "..") || strlen(rel) > 200 ||
	    strspn(rel, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/-") !=
		strlen(rel))
		return -1;
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	mkdir(dir, 0755);
	for (char *s = path + strlen(dir) + 1; (s = strchr(s, '/')); s++) {
		*s = 0;
		mkdir(path, 0755);
		*s = '/';
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	bool ok = write(fd, data, len) == (ssize_t)len;
	close(fd);
	return ok ? 0 : -1;
}

/* ---- output checks ---- */

/* Length of the UTF-8 sequence at p (n bytes left), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	size_t len;
	unsigned min;
	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2, min = 0x80;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3, min = 0x800;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4, min = 0x10000;
	else
		return 0;
	if (len > n)
		return 0;
	unsigned cp = p[0] & (0x7f >> len);
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

struct json {
	const unsigned char *p, *end;
	const char *err;
};

static void ws(struct json *j)
{
	while (j->p < j->end && strchr(" \t\r\n", *j->p) && *j->p)
		j->p++;
}

static bool fail(struct json *j, const char *why)
{
	if (!j->err)
		j->err = why;
	return false;
}

static bool lit(struct json *j, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n))
		return fail(j, "bad literal");
	j->p += n;
	return true;
}

static bool digits(struct json *j)
{
	const unsigned char *s = j->p;
	while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
		j->p++;
	return j->p > s;
}

static bool number(struct json *j)
{
	if (j->p < j->end && *j->p == '-')
		j->p++;
	if (j->p < j->end && *j->p == '0')
		j->p++;
	else if (!digits(j))
		return fail(j, "bad number");
	if (j->p < j->end && *j->p == '.') {
		j->p++;
		if (!digits(j))
			return fail(j, "bad fraction");
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		if (!digits(j))
			return fail(j, "bad exponent");
	}
	return true;
}

static bool string(struct json *j)
{
	j->p++; /* the opening quote */
	while (j->p < j->end) {
		unsigned char c = *j->p;
		if (c == '"') {
			j->p++;
			return true;
		}
		if (c < 0x20)
			return fail(j, "a control byte in a string");
		if (c == '\\') {
			if (j->end - j->p < 2)
				return fail(j, "a cut escape");
			unsigned char e = j->p[1];
			if (e == 'u') {
				if (j->end - j->p < 6)
					return fail(j, "a cut \\u escape");
				for (int i = 2; i < 6; i++)
					if (!strchr("0123456789abcdefABCDEF", j->p[i]) || !j->p[i])
						return fail(j, "a bad \\u escape");
				j->p += 6;
			} else if (strchr("\"\\/bfnrt", e) && e) {
				j->p += 2;
			} else {
				return fail(j, "a bad escape");
			}
			continue;
		}
		size_t n = utf8_len(j->p, (size_t)(j->end - j->p));
		if (!n)
			return fail(j, "a string that is not UTF-8");
		j->p += n;
	}
	return fail(j, "an unterminated string");
}

static bool value(struct json *j, int depth)
{
	if (depth > 64)
		return fail(j, "nested too deep");
	ws(j);
	if (j->p >= j->end)
		return fail(j, "a missing value");
	switch (*j->p) {
	case '{':
	case '[': {
		bool obj = *j->p == '{';
		j->p++;
		ws(j);
		if (j->p < j->end && *j->p == (obj ? '}' : ']')) {
			j->p++;
			return true;
		}
		for (;;) {
			ws(j);
			if (obj) {
				if (j->p >= j->end || *j->p != '"' || !string(j))
					return fail(j, "a bad key");
				ws(j);
				if (j->p >= j->end || *j->p != ':')
					return fail(j, "a missing ':'");
				j->p++;
			}
			if (!value(j, depth + 1))
				return false;
			ws(j);
			if (j->p < j->end && *j->p == ',') {
				j->p++;
				continue;
			}
			if (j->p < j->end && *j->p == (obj ? '}' : ']')) {
				j->p++;
				return true;
			}
			return fail(j, obj ? "a missing '}'" : "a missing ']'");
		}
	}
	case '"': return string(j);
	case 't': return lit(j, "true");
	case 'f': return lit(j, "false");
	case 'n': return lit(j, "null");
	default: return number(j);
	}
}

const char *json_error(const char *text, size_t len)
{
	struct json j = {(const unsigned char *)text, (const unsigned char *)text + len, NULL};
	if (!value(&j, 0))
		return j.err;
	ws(&j);
	return j.p == j.end ? NULL : "bytes after the value";
}

static bool metric_name(const char **s)
{
	const char *p = *s;
	if (!(*p == '_' || *p == ':' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
		return false;
	while (*p == '_' || *p == ':' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
	       (*p >= '0' && *p <= '9'))
		p++;
	*s = p;
	return true;
}

/* One sample line: name{label="value",...} number */
static const char *prometheus_line(const char *p, const char *end)
{
	if (!metric_name(&p))
		return "a bad metric name";
	if (*p == '{') {
		p++;
		while (*p != '}') {
			if (!metric_name(&p) || *p++ != '=' || *p++ != '"')
				return "a bad label";
			while (p < end && *p != '"') {
				if (*p == '\\') {
					if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
						return "a bad escape in a label value";
					p += 2;
				} else {
					p++;
				}
			}
			if (p >= end)
				return "an unterminated label value";
			p++;
			if (*p == ',')
				p++;
			else if (*p != '}')
				return "a missing '}'";
		}
		p++;
	}
	if (*p++ != ' ')
		return "no space before the value";
	char *num_end;
	strtod(p, &num_end);
	if (num_end == p)
		return "a bad value";
	return *num_end == 0 || *num_end == ' ' ? NULL : "bytes after the value";
}

const char *prometheus_error(const char *text, size_t len)
{
	for (size_t i = 0; i < len;) {
		size_t n = utf8_len((const unsigned char *)text + i, len - i);
		if (!n)
			return "a byte that is not UTF-8";
		if (text[i] == 0)
			return "a NUL byte";
		i += n;
	}
	const char *p = text, *end = text + len;
	char line[4096];
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			return "a last line without a newline";
		size_t n = (size_t)(nl - p);
		if (n >= sizeof(line))
			return "a line too long";
		memcpy(line, p, n);
		line[n] = 0;
		if (n && line[0] != '#') {
			const char *why = prometheus_line(line, line + n);
			if (why) { /* the reason, and the line */
				static char msg[sizeof(line) + 64];
				snprintf(msg, sizeof(msg), "%s: %s", why, line);
				return msg;
			}
		}
		p = nl + 1;
	}
	return NULL;
}
