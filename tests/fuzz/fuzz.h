/* SPDX-License-Identifier: MIT */
/*
 * fuzz.h - what the fuzz targets share: the kernel's parsing of a KSM knob
 * written independently of lib/knobs.c (the oracle the library is compared
 * with), the checks that a run may leave out, and a failure that libFuzzer
 * reports with the input.
 *
 * The oracle is Linux 6.18's: kstrtouint/kstrtoul(s, 10) take an optional
 * '+', decimal digits and one trailing newline, and say ERANGE on overflow
 * whatever follows; kstrtoint (max_page_sharing) also takes a '-' (then
 * EINVAL as less than 2, or ERANGE below INT_MIN); kstrtobool looks at the
 * first character only (EeYyTt1 true, DdNnFf0 false) or, after 'o'/'O', the
 * second (n on, f off); advisor_mode is "none" or "scan-time" with an
 * optional newline.  Checked on this machine's kernel by writing
 * /sys/kernel/mm/ksm (RELIABILITY.md).
 */
#ifndef SAMEPAGE_FUZZ_H
#define SAMEPAGE_FUZZ_H

#include <samepage.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A broken promise: print it and abort, so that libFuzzer keeps the input. */
#define FUZZ_ASSERT(cond, ...)                                                                     \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, #cond);                 \
			fprintf(stderr, __VA_ARGS__);                                              \
			fprintf(stderr, "\n");                                                     \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/*
 * Checks a run leaves out, named in $SAMEPAGE_FUZZ_EXCLUDE (comma-separated):
 * each is a known bug that a default run finds at once (RELIABILITY.md):
 *   kstrtobool  the library refuses what 6.18's kstrtobool takes (e, d, t, f)
 *   kstrtoint   max_page_sharing below INT_MIN: the kernel's ERANGE, the library's EINVAL
 *   nulls       NULL pointers given to samepage_read/write (issue 9, item 7)
 *   json        ksmctl's --json and --prometheus output must stay valid (issue 14)
 */
static inline bool fuzz_check(const char *name)
{
	const char *ex = getenv("SAMEPAGE_FUZZ_EXCLUDE");
	size_t n = strlen(name);
	for (const char *p = ex; p && *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] != 0))
		if (strncmp(p, name, n) == 0 && (p[n] == ',' || p[n] == 0))
			return false;
	return true;
}

/* The kernel's kstrtoull(s, 10): 0, -EINVAL or -ERANGE. */
static inline int model_decimal(const char *s, unsigned long long *out)
{
	unsigned long long v = 0;
	if (*s == '+')
		s++;
	if (!(*s >= '0' && *s <= '9'))
		return -22;
	bool overflow = false;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');
		if (v > (~0ULL - d) / 10)
			overflow = true;
		v = v * 10 + d;
	}
	if (overflow) /* _kstrtoull: before looking at what follows the digits */
		return -34;
	if (*s == '\n')
		s++;
	if (*s)
		return -22;
	*out = v;
	return 0;
}

/* The kernel's kstrtobool, or the library's narrower one when the
 * "kstrtobool" check is left out. */
static inline int model_bool(const char *s, unsigned long long *out)
{
	bool full = fuzz_check("kstrtobool");
	switch (s[0]) {
	case 'e':
	case 'E':
	case 't':
	case 'T':
		if (!full)
			return 1; /* skip: a known difference */
				  /* fall through */
	case 'y':
	case 'Y':
	case '1': *out = 1; return 0;
	case 'd':
	case 'D':
	case 'f':
	case 'F':
		if (!full)
			return 1;
		/* fall through */
	case 'n':
	case 'N':
	case '0': *out = 0; return 0;
	case 'o':
	case 'O':
		if (s[1] == 'n' || s[1] == 'N')
			return *out = 1, 0;
		if (s[1] == 'f' || s[1] == 'F')
			return *out = 0, 0;
		return -22;
	default: return -22;
	}
}

static inline bool sysfs_streq(const char *a, const char *b)
{
	size_t la = strlen(a);
	if (la && a[la - 1] == '\n')
		la--;
	return la == strlen(b) && memcmp(a, b, la) == 0;
}

/*
 * What writing value to knob k should give: 0 with *out, a negative errno,
 * or 1 when the input is a known difference left out of this run.  The
 * errno of a bad number is the kernel's: EINVAL, but ERANGE past the type
 * for max_page_sharing (kstrtoint) and merge_across_nodes (kstrtoul).
 */
static inline int model_parse(const struct samepage_knob *k, const char *value,
			      unsigned long long *out)
{
	unsigned long long v = 0;
	int err;
	if (k->format == SAMEPAGE_FMT_BOOL)
		return model_bool(value, out);
	if (k->format == SAMEPAGE_FMT_MODE) {
		if (sysfs_streq(value, "none"))
			return *out = 0, 0;
		if (sysfs_streq(value, "scan-time"))
			return *out = 1, 0;
		return -22;
	}
	bool mps = !strcmp(k->name, "max_page_sharing"),
	     man = !strcmp(k->name, "merge_across_nodes");
	if (mps && value[0] == '-') { /* kstrtoint takes a sign: below INT_MIN is ERANGE */
		err = value[1] == '+' ? -22 : model_decimal(value + 1, &v);
		if (err == -34 || (err == 0 && v > 2147483648ULL))
			return fuzz_check("kstrtoint") ? -34 : 1;
		return err ? err : -22; /* less than 2 */
	}
	err = model_decimal(value, &v);
	if (err == -34)
		return mps || man ? -34 : -22;
	if (err)
		return err;
	if (mps && v > 2147483647ULL)
		return -34; /* kstrtoint: past INT_MAX */
	if (v < k->min || v > k->max)
		return -22;
	*out = v;
	return 0;
}

#endif
