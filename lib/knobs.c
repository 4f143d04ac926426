// SPDX-License-Identifier: MIT
/*
 * knobs.c - the table of knob and counter names, and the kernel's parsing.
 *
 * The table is generated from knobs.def.  samepage_knob_parse() accepts what
 * the kernel's store functions accept and refuses what they refuse, with the
 * same errno: kstrtouint/kstrtoul take an optional '+', decimal digits and
 * one trailing newline; a bad number is -EINVAL, except that
 * max_page_sharing and merge_across_nodes pass the parser's -ERANGE on
 * overflow through, as mm/ksm.c does; kstrtobool
 * looks only at the first one or two characters; advisor_mode takes "none" or
 * "scan-time" with an optional newline (sysfs_streq).
 *
 * knob_store() is the kernel's rules for a write (mm/ksm.c's store
 * functions): run 2 unmerges everything; pages_to_scan is refused while
 * the scan-time advisor is on; max_page_sharing and merge_across_nodes are
 * refused (EBUSY) while KSM pages exist; advisor_mode resets pages_to_scan.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const struct samepage_knob knob_table[] = {
#define SAMEPAGE_KNOB(n, k, f, d, lo, hi, since, help)                                             \
	{#n, SAMEPAGE_KNOB_##k, SAMEPAGE_FMT_##f, d, lo, hi, since, help},
#include "knobs.def"
#undef SAMEPAGE_KNOB
};

#define KNOB_COUNT ((int)(sizeof(knob_table) / sizeof(knob_table[0])))

int samepage_knob_count(void)
{
	return KNOB_COUNT;
}

const struct samepage_knob *samepage_knob_at(int i)
{
	if (i < 0 || i >= KNOB_COUNT)
		return NULL;
	return &knob_table[i];
}

const struct samepage_knob *samepage_knob_find(const char *name)
{
	if (!name)
		return NULL;
	for (int i = 0; i < KNOB_COUNT; i++)
		if (strcmp(knob_table[i].name, name) == 0)
			return &knob_table[i];
	return NULL;
}

int knob_index(const char *name)
{
	const struct samepage_knob *k = samepage_knob_find(name);
	return k ? (int)(k - knob_table) : -1;
}

/* kstrtoull(s, 10): optional '+', digits, one optional trailing newline. */
static int parse_decimal(const char *s, unsigned long long *out)
{
	unsigned long long v = 0;
	const char *p = s;

	if (*p == '+')
		p++;
	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (~0ULL - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	if (*p == '\n')
		p++;
	if (*p)
		return -EINVAL;
	*out = v;
	return 0;
}

/* kstrtoint's negative numbers, for max_page_sharing: all are below its
 * minimum (-EINVAL from the store), except those below INT_MIN (-ERANGE
 * from the parser). */
static int parse_negative_int(const char *s)
{
	unsigned long long m;
	if (s[1] == '+')
		return -EINVAL;
	int err = parse_decimal(s + 1, &m);
	return err ? err : m > 2147483648ULL ? -ERANGE : -EINVAL;
}

/* kstrtobool (Linux 6.18): only the first one or two characters count:
 * "yes", "true", "enable", "1" and "on"; "no", "false", "disable", "0"
 * and "off". */
static int parse_bool(const char *s, unsigned long long *out)
{
	switch (s[0]) {
	case 'e':
	case 'E':
	case 't':
	case 'T':
	case 'y':
	case 'Y':
	case '1': *out = 1; return 0;
	case 'd':
	case 'D':
	case 'f':
	case 'F':
	case 'n':
	case 'N':
	case '0': *out = 0; return 0;
	case 'o':
	case 'O':
		if (s[1] == 'n' || s[1] == 'N') {
			*out = 1;
			return 0;
		}
		if (s[1] == 'f' || s[1] == 'F') {
			*out = 0;
			return 0;
		}
		return -EINVAL;
	default: return -EINVAL;
	}
}

/* sysfs_streq: equal, ignoring one trailing newline on either side. */
static int streq_sysfs(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la && a[la - 1] == '\n')
		la--;
	return la == lb && memcmp(a, b, la) == 0;
}

int samepage_knob_parse(const char *name, const char *value, unsigned long long *out)
{
	const struct samepage_knob *k = samepage_knob_find(name);
	unsigned long long v = 0;
	int err;

	if (!k)
		return -ENOENT;
	if (k->kind != SAMEPAGE_KNOB_TUNABLE)
		return -EACCES;
	if (!value || !out)
		return -EINVAL;

	switch (k->format) {
	case SAMEPAGE_FMT_BOOL: err = parse_bool(value, &v); break;
	case SAMEPAGE_FMT_MODE:
		if (streq_sysfs(value, "none"))
			v = 0, err = 0;
		else if (streq_sysfs(value, "scan-time"))
			v = 1, err = 0;
		else
			err = -EINVAL;
		break;
	default:
		if (value[0] == '-' && !strcmp(k->name, "max_page_sharing"))
			return parse_negative_int(value);
		err = parse_decimal(value, &v);
		if (!err && (v > k->max || v < k->min))
			err = -EINVAL;
		/* mm/ksm.c returns kstrtoint's/kstrtoul's own error (ERANGE past
		 * the type) for these two, and EINVAL for any bad number in the
		 * other store functions. */
		if (!strcmp(k->name, "max_page_sharing") && (err == -ERANGE || v > k->max))
			err = -ERANGE;
		else if (err == -ERANGE && strcmp(k->name, "merge_across_nodes"))
			err = -EINVAL;
		break;
	}
	if (err)
		return err;
	*out = v;
	return 0;
}

/*
 * The kernel's rules for a knob write, on a knob array (an engine's domain,
 * or samepaged's daemon-wide copy): 0 or -errno, nothing changed on error.
 * *unmerge is set when run went to 2: the caller unmerges.
 */
int knob_store(unsigned long long *knob, int idx, unsigned long long v, bool ksm_pages_exist,
	       bool *unmerge)
{
	*unmerge = false;
	switch (idx) {
	case KNOB_run: *unmerge = v == 2 && knob[KNOB_run] != 2; break;
	case KNOB_pages_to_scan:
		if (knob[KNOB_advisor_mode] == 1)
			return -EINVAL; /* the advisor owns pages_to_scan */
		break;
	case KNOB_max_page_sharing:
	case KNOB_merge_across_nodes:
		if (v != knob[idx] && ksm_pages_exist)
			return -EBUSY; /* the kernel: only after run=2 */
		break;
	case KNOB_advisor_mode:
		if (v != knob[KNOB_advisor_mode])
			knob[KNOB_pages_to_scan] = v ? knob[KNOB_advisor_min_pages_to_scan]
						     : samepage_knob_find("pages_to_scan")->def;
		break;
	}
	knob[idx] = v;
	return 0;
}

/* Prints a value as the kernel's sysfs file does (without the newline):
 * advisor_mode as "[none] scan-time", signed or unsigned numbers.  The
 * snprintf result. */
int knob_format(int idx, long long v, char *buf, size_t len)
{
	const struct samepage_knob *k = samepage_knob_at(idx);
	if (idx == KNOB_advisor_mode)
		return snprintf(buf, len, "%s", v ? "none [scan-time]" : "[none] scan-time");
	if (k->format == SAMEPAGE_FMT_SIGNED)
		return snprintf(buf, len, "%lld", v);
	return snprintf(buf, len, "%llu", (unsigned long long)v);
}

const char *samepage_strerror(int err)
{
	switch (-err) {
	case 0: return "success";
	case ENOENT: return "no such knob or counter, or no samepaged socket at that path";
	case EACCES:
		return "permission denied: a counter cannot be written, or samepaged (or a file "
		       "it handed over) belongs to another user";
	case EINVAL: return "invalid argument";
	case ERANGE: return "value out of range, or the buffer is too small";
	case EBUSY: return "busy: pages are merged; write run=2 to unmerge first";
	case ENOMEM: return "out of memory, or the range is not mapped";
	case ENOSPC: return "no room: samepaged's state directory is full";
	case ECHILD: return "this handle belongs to the parent process (it was inherited by fork)";
	case ECONNREFUSED: return "no samepaged listens at the socket (start samepaged)";
	case ENOTCONN:
		return "samepaged is not running (start it: merged memory stays valid meanwhile)";
	case EPROTO: return "samepaged's answer was not understood (another version?)";
	case EPROTONOSUPPORT:
		return "samepaged is of another samepage version than this library (restart "
		       "samepaged, or the program, with the same version)";
	case EPIPE: return "samepaged closed the connection without saying why";
	default: return strerror(err < 0 ? -err : err);
	}
}
