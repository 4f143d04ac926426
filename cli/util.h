/* SPDX-License-Identifier: MIT */
/*
 * util.h - ksmctl's shared helpers: exit codes, the one error exit path,
 * small file readers and number formatting.
 *
 * Every verb reports a failure through ksmctl_fail(), so that each message
 * has the same shape (cause, offending input, fix) and each exit status
 * means the same thing everywhere.  The API is stable: `ksmctl estimate`
 * (cli/estimate.c) uses it too.
 */
#ifndef KSMCTL_UTIL_H
#define KSMCTL_UTIL_H

#include <limits.h>

#include <stdbool.h>
#include <stddef.h>

#include "procfs.h" /* procfs_read() reads a small file, sysfs's too */

/* Exit statuses, documented in ksmctl(1). */
enum {
	KSMCTL_OK = 0,
	KSMCTL_NO = 1,	    /* a negative answer: not supported, not converged, problems found */
	KSMCTL_USAGE = 2,   /* bad command line, knob name, value or file */
	KSMCTL_PERM = 3,    /* not allowed: not root, or sysfs read-only */
	KSMCTL_TIMEOUT = 4, /* --timeout passed */
	KSMCTL_REFUSED = 5, /* the kernel's state forbids it, or the kernel failed */
};

/*
 * Prints "ksmctl: CAUSE", then "  input: INPUT" and "  fix: FIX" when they
 * are given, to stderr, and returns code so callers can write
 * "return ksmctl_fail(...)".  Nothing is changed by the caller afterwards.
 */
int ksmctl_fail(int code, const char *input, const char *fix, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void ksmctl_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The last failure ksmctl_fail() reported, for a verb that also reports it
 * as JSON on stdout (apply --check --json): "" where not given. */
struct ksmctl_error {
	char cause[1024], input[1024], fix[1024];
};
const struct ksmctl_error *ksmctl_last_error(void);
/*
 * Refuses an empty value of a path option (exit status 2): "--root" with
 * an unset variable ("--root \"$DESTDIR\"") must not mean the default,
 * which is this machine.  what is "a directory", fix the usual way out.
 * Returns KSMCTL_USAGE.
 */
int ksmctl_empty_value(const char *verb, const char *option, const char *what, const char *fix);
/*
 * A file the verb will replace by a rename (status --output, tune --state)
 * must be a regular file, or none yet: a directory cannot be, and root's
 * rename over /dev/null would turn the device into a file.  0, or exit
 * status 2 said as "VERB: WHAT is a directory" with fix.
 */
int ksmctl_replaceable(const char *verb, const char *path, const char *what, const char *fix);

/* Reads a file holding one decimal number: 0 or -errno (-EINVAL: not a number). */
int read_ll(const char *path, long long *out);
/* Parses a clean, optionally signed decimal number: 0 or -EINVAL. */
int parse_ll(const char *s, long long *out);
/* The same for an unsigned decimal number up to 2^64-1 (the kernel's
 * unsigned long knobs): 0 or -EINVAL. */
int parse_ull(const char *s, unsigned long long *out);

/* Sums and products of counts read from /proc and sysfs, which any value
 * may reach: they stop at LLONG_MIN and LLONG_MAX instead of overflowing. */
static inline long long sat_add(long long a, long long b)
{
	long long r;
	return __builtin_add_overflow(a, b, &r) ? (b > 0 ? LLONG_MAX : LLONG_MIN) : r;
}
static inline long long sat_mul(long long a, long long b)
{
	long long r;
	return __builtin_mul_overflow(a, b, &r) ? ((a < 0) != (b < 0) ? LLONG_MIN : LLONG_MAX) : r;
}
/* "1.5 GiB", "12 KiB", "0 B": binary units, one decimal. */
const char *fmt_bytes(char *buf, size_t len, double bytes);
/* The shortest of "%.15g", "%.16g" and "%.17g" that reads back as v: for JSON and
 * Prometheus, where a number must not lose digits.  Integers are printed
 * with %lld, never through a double. */
const char *fmt_double(char *buf, size_t len, double v);
/* Compares a release "6.18.44-fc" with a version "6.8": <0, 0, >0. */
int version_cmp(const char *release, const char *version);
/* Monotonic seconds. */
double now_seconds(void);
/* Sleeps, returning early on a signal. */
void sleep_seconds(double s);
/* The longest --timeout (wait, unmerge, set --unmerge): a year, in seconds;
 * longer is a typo ("1e99"), refused, not an endless wait. */
#define KSMCTL_MAX_SECONDS 31536000
#define KSMCTL_TIMEOUT_RANGE "a number of seconds from 0 to 31536000 (a year)"
/* Parses a whole number given on the command line (a count, a number of
 * pages): digits only, up to LLONG_MAX; 0 or -EINVAL.  parse_ll() also
 * takes a sign and blanks around, as a file's contents may have them. */
int parse_count(const char *s, long long *out);
/* Parses a plain decimal number, digits with at most one '.' ("2", "0.5",
 * ".5", "5."): 0 or -EINVAL.  No sign, blank, exponent, hexadecimal, inf or
 * nan, all of which strtod() takes ("0x10" is 16). */
int parse_plain_number(const char *s, double *out);
/* Parses a non-negative number of seconds as parse_plain_number() does, up
 * to KSMCTL_MAX_SECONDS: 0 or -EINVAL. */
int parse_seconds(const char *s, double *out);
/* The columns a terminal gives s, printable UTF-8 (names as procfs_escape
 * leaves them): a wide character two, a combining mark none. */
int text_columns(const char *s);
/*
 * Why root was refused writing path (a knob file) with err, -EPERM or
 * -EACCES, which for another user would just mean "not root": the file's
 * immutable or append-only attribute, CAP_DAC_OVERRIDE dropped, a user
 * namespace that does not own the file, else a security module.  Fills
 * why ("the file has the immutable attribute (EPERM)") and fix, and
 * returns true, when ksmctl runs as root (euid 0); false otherwise.
 */
bool root_refusal(const char *path, int err, char *why, size_t wlen, char *fix, size_t flen);

#endif
