// SPDX-License-Identifier: MIT
/*
 * util.c - ksmctl's error exit path and small helpers (see util.h).
 */
#include "util.h"

#include "procfs.h"

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include <linux/fs.h> /* FS_IOC_GETFLAGS */

static struct ksmctl_error last_error;

const struct ksmctl_error *ksmctl_last_error(void)
{
	return &last_error;
}

int ksmctl_fail(int code, const char *input, const char *fix, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	va_start(ap, fmt);
	vsnprintf(last_error.cause, sizeof(last_error.cause), fmt, ap);
	va_end(ap);
	snprintf(last_error.input, sizeof(last_error.input), "%s", input ? input : "");
	snprintf(last_error.fix, sizeof(last_error.fix), "%s", fix ? fix : "");
	fputs("ksmctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (input)
		fprintf(stderr, "  input: %s\n", input);
	if (fix)
		fprintf(stderr, "  fix: %s\n", fix);
	return code;
}

void ksmctl_warn(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("ksmctl: warning: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int ksmctl_empty_value(const char *verb, const char *option, const char *what, const char *fix)
{
	char input[64], full[512];

	snprintf(input, sizeof(input), "%s \"\"", option);
	snprintf(full, sizeof(full), "%s (%s \"$VAR\" with VAR unset gives an empty one)", fix,
		 option);
	return ksmctl_fail(KSMCTL_USAGE, input, full, "%s: %s needs %s, not an empty string", verb,
			   option, what);
}

int ksmctl_replaceable(const char *verb, const char *path, const char *what, const char *fix)
{
	struct stat st;

	if (stat(path, &st) || S_ISREG(st.st_mode))
		return 0;
	return ksmctl_fail(KSMCTL_USAGE, path, fix, "%s: %s is %s", verb, what,
			   S_ISDIR(st.st_mode) ? "a directory" : "not a regular file");
}

/* Nothing but blanks and newlines after a number. */
static bool only_blanks(const char *end)
{
	while (*end == ' ' || *end == '\n')
		end++;
	return !*end;
}

int parse_ll(const char *s, long long *out)
{
	char *end;

	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (end == s || errno || !only_blanks(end))
		return -EINVAL;
	*out = v;
	return 0;
}

int parse_ull(const char *s, unsigned long long *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || !only_blanks(end))
		return -EINVAL;
	*out = v;
	return 0;
}

int read_ll(const char *path, long long *out)
{
	char buf[64];
	int err = procfs_read(path, buf, sizeof(buf));

	return err ? err : parse_ll(buf, out);
}

const char *fmt_bytes(char *buf, size_t len, double bytes)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double a = bytes < 0 ? -bytes : bytes;
	int u = 0;

	while (a >= 1024 && u < 5)
		a /= 1024, u++;
	if (u == 0)
		snprintf(buf, len, "%.0f B", bytes);
	else
		snprintf(buf, len, "%.1f %s", bytes < 0 ? -a : a, unit[u]);
	return buf;
}

const char *fmt_double(char *buf, size_t len, double v)
{
	for (int digits = 15; digits <= 17; digits++) {
		snprintf(buf, len, "%.*g", digits, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	return buf;
}

static void version_split(const char *s, int v[3])
{
	v[0] = v[1] = v[2] = 0;
	for (int i = 0; i < 3 && *s >= '0' && *s <= '9'; i++) {
		v[i] = (int)strtol(s, (char **)&s, 10);
		if (*s != '.')
			break;
		s++;
	}
}

int version_cmp(const char *release, const char *version)
{
	int a[3], b[3];

	version_split(release, a);
	version_split(version, b);
	for (int i = 0; i < 3; i++)
		if (a[i] != b[i])
			return a[i] < b[i] ? -1 : 1;
	return 0;
}

double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int parse_plain_number(const char *s, double *out)
{
	size_t digits = strspn(s, "0123456789"), frac = 0;
	char *end;

	if (s[digits] == '.')
		frac = strspn(s + digits + 1, "0123456789") + 1;
	if (s[digits + frac] || digits + frac == 0 || (digits == 0 && frac == 1))
		return -EINVAL;
	errno = 0;
	double v = strtod(s, &end);
	if (*end || errno || !isfinite(v))
		return -EINVAL;
	*out = v;
	return 0;
}

int parse_count(const char *s, long long *out)
{
	long long v = 0;

	if (!*s || s[strspn(s, "0123456789")])
		return -EINVAL;
	for (; *s; s++)
		if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *s - '0', &v))
			return -EINVAL;
	*out = v;
	return 0;
}

int parse_seconds(const char *s, double *out)
{
	double v;

	if (parse_plain_number(s, &v) || v > KSMCTL_MAX_SECONDS)
		return -EINVAL;
	*out = v;
	return 0;
}

void sleep_seconds(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};

	nanosleep(&ts, NULL);
}

/* The columns a terminal gives a name (the back-ends escaped every byte
 * that is not printable UTF-8): wcwidth(3) of each character in C.UTF-8,
 * whatever the user's locale (a CJK character two, a combining mark
 * none); one per character where C.UTF-8 is missing. */
int text_columns(const char *s)
{
	static locale_t utf8;
	static bool tried;
	int n = 0;

	if (!tried) {
		utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
		tried = true;
	}
	if (!utf8) {
		for (; *s; s++)
			n += ((unsigned char)*s & 0xc0) != 0x80;
		return n;
	}
	locale_t old = uselocale(utf8);
	mbstate_t st = {0};
	for (size_t len = strlen(s); len;) {
		wchar_t wc;
		size_t k = mbrtowc(&wc, s, len, &st);
		int w;

		if (k == (size_t)-1 || k == (size_t)-2) { /* not UTF-8: a byte a column */
			memset(&st, 0, sizeof(st));
			k = 1;
			w = 1;
		} else {
			w = wcwidth(wc);
		}
		n += w < 0 ? 1 : w;
		s += k;
		len -= k;
	}
	uselocale(old);
	return n;
}

/* The file's attribute flags (lsattr), or 0 where its filesystem has none. */
static long file_attrs(const char *path)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	int flags = 0;

	if (fd < 0)
		return 0;
	if (ioctl(fd, FS_IOC_GETFLAGS, &flags))
		flags = 0;
	close(fd);
	return flags;
}

/* Whether this process has capability cap in its effective set (CapEff of
 * /proc/self/status: this process, whatever --proc-root says). */
static bool has_capability(int cap)
{
	char text[4096], *line;
	unsigned long long eff;

	if (procfs_read("/proc/self/status", text, sizeof(text)) ||
	    !(line = strstr(text, "\nCapEff:")) ||
	    sscanf(line + strlen("\nCapEff:"), "%llx", &eff) != 1)
		return true; /* unknown: not the reason given */
	return (eff >> cap) & 1;
}

/* Whether this process runs in a user namespace other than the first one
 * (whose uid_map maps every id to itself). */
static bool in_user_namespace(void)
{
	char text[256];
	unsigned long long in, out, count;

	if (procfs_read("/proc/self/uid_map", text, sizeof(text)) ||
	    sscanf(text, "%llu %llu %llu", &in, &out, &count) != 3)
		return false;
	return !(in == 0 && out == 0 && count == 4294967295ULL);
}

bool root_refusal(const char *path, int err, char *why, size_t wlen, char *fix, size_t flen)
{
	const char *name = err == -EPERM ? "EPERM" : "EACCES";
	long attrs;

	if (geteuid() != 0 || (err != -EPERM && err != -EACCES))
		return false;
	attrs = file_attrs(path);
	if (attrs & FS_IMMUTABLE_FL) {
		snprintf(why, wlen, "the file has the immutable attribute (%s)", name);
		snprintf(fix, flen, "chattr -i %s (lsattr shows the i)", path);
	} else if (attrs & FS_APPEND_FL) {
		snprintf(why, wlen, "the file has the append-only attribute (%s)", name);
		snprintf(fix, flen, "chattr -a %s (lsattr shows the a)", path);
	} else if (err == -EACCES && !has_capability(1 /* CAP_DAC_OVERRIDE */)) {
		snprintf(why, wlen,
			 "this root lacks CAP_DAC_OVERRIDE (capabilities dropped: a container, "
			 "or a unit's CapabilityBoundingSet=), and the file's mode does not let "
			 "it write (%s)",
			 name);
		snprintf(fix, flen,
			 "give ksmctl CAP_DAC_OVERRIDE (docker run --cap-add DAC_OVERRIDE, the "
			 "unit's CapabilityBoundingSet=), or change KSM from the host");
	} else if (in_user_namespace()) {
		snprintf(why, wlen,
			 "ksmctl is root of a user namespace (a rootless container), which does "
			 "not own the file (%s)",
			 name);
		snprintf(fix, flen, "change KSM from the host, outside the container");
	} else {
		snprintf(why, wlen,
			 "the kernel denied it to root (%s): a security module (SELinux, "
			 "AppArmor) or a seccomp filter",
			 name);
		snprintf(fix, flen,
			 "find the denial in the audit log (journalctl -k | grep -i denied; "
			 "ausearch -m avc) and allow the write in the policy, or change KSM "
			 "from the host");
	}
	return true;
}
