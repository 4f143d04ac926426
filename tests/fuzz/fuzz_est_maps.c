// SPDX-License-Identifier: MIT
/*
 * fuzz_est_maps.c - the smaps parser of `ksmctl estimate` (est_maps_line()
 * and est_smaps_line(), cli/estimate-read.c) against a reading of proc(5)
 * written apart here.
 *
 * Input: a flags byte (bit 0: every compatible area, as under merge-any or
 * --all-memory, not only those marked mergeable), then the text of a
 * /proc/PID/smaps, given line by line with its newlines as getline() gives
 * them.  The oracle splits a maps line into its five fields at single
 * spaces and checks each against the kernel's format (show_map_vma):
 * "START-END" of 1 to 16 hex digits each, PERMS one of [r-][w-][x-][ps],
 * OFFSET 1 to 16 hex digits, MAJOR:MINOR 1 to 8 hex digits each, INODE 1
 * to 20 decimal digits within 64 bits, then nothing or a space and the
 * path after padding; an area is empty, reversed or not page-aligned only
 * in text the kernel never writes, so such a line is none.  KSM could
 * merge the area if it is private and not [vsyscall]; with its VmFlags,
 * if no flag of an area ksmd refuses (sh ms pf io de ht mm dp) is there,
 * and "mg" is, or every compatible area is wanted.
 *
 * Promises checked: est_maps_line() gives the oracle's answer and bounds
 * for every line; an accepted area is page-aligned with start < end; the
 * line printed again as the kernel prints it (%08lx, the path padded to
 * its column) gives the same answer; est_smaps_line() keeps exactly the
 * oracle's areas, in order, and counts the same number of areas.
 */
#include "fuzz.h"

#include <errno.h>
#include <estimate-scan.h>
#include <stdint.h>

#define PAGE 4096

struct oracle_map {
	uint64_t start, end;
	char perms[5];
	unsigned long long offset, major, minor, inode;
	const char *path;
};

/* s is all digits of the base (10 or 16) and 1 to max of them. */
static bool digits(const char *s, int base, size_t max)
{
	size_t n = strspn(s, base == 16 ? "0123456789abcdefABCDEF" : "0123456789");
	return n == strlen(s) && n >= 1 && n <= max;
}

/* The line (up to its newline) in buf, cut into fields: 1 private and not
 * [vsyscall], 0 not, -EINVAL no maps line. */
static int oracle_maps(const char *line, char *buf, size_t buflen, struct oracle_map *m)
{
	char *field[5], *p = buf;
	size_t len = strcspn(line, "\n");

	if (len >= buflen)
		return -EINVAL;
	memcpy(buf, line, len);
	buf[len] = '\0';
	for (int i = 0; i < 5; i++) {
		char *sp = strchr(p, ' ');
		field[i] = p;
		if (i < 4 && !sp)
			return -EINVAL;
		if (sp) {
			*sp = '\0';
			p = sp + 1;
		} else {
			p += strlen(p);
		}
	}
	m->path = p + strspn(p, " ");

	char *dash = strchr(field[0], '-');
	if (!dash)
		return -EINVAL;
	*dash = '\0';
	if (!digits(field[0], 16, 16) || !digits(dash + 1, 16, 16))
		return -EINVAL;
	m->start = strtoull(field[0], NULL, 16);
	m->end = strtoull(dash + 1, NULL, 16);

	const char *pm = field[1];
	if (strlen(pm) != 4 || !strchr("r-", pm[0]) || !strchr("w-", pm[1]) ||
	    !strchr("x-", pm[2]) || !strchr("ps", pm[3]))
		return -EINVAL;
	memcpy(m->perms, pm, 5);

	if (!digits(field[2], 16, 16))
		return -EINVAL;
	m->offset = strtoull(field[2], NULL, 16);
	char *colon = strchr(field[3], ':');
	if (!colon)
		return -EINVAL;
	*colon = '\0';
	if (!digits(field[3], 16, 8) || !digits(colon + 1, 16, 8))
		return -EINVAL;
	m->major = strtoull(field[3], NULL, 16);
	m->minor = strtoull(colon + 1, NULL, 16);
	if (!digits(field[4], 10, 20))
		return -EINVAL;
	errno = 0;
	m->inode = strtoull(field[4], NULL, 10);
	if (errno == ERANGE)
		return -EINVAL;

	if (m->start >= m->end || m->start % PAGE || m->end % PAGE)
		return -EINVAL;
	return m->perms[3] == 'p' && strcmp(m->path, "[vsyscall]") != 0;
}

/* Whether the VmFlags text (after "VmFlags:") holds the two-letter flag. */
static bool has_flag(const char *flags, const char *flag)
{
	size_t len = strcspn(flags, "\n");
	char *buf = strndup(flags, len);
	bool found = false;

	for (char *save = NULL, *t = strtok_r(buf, " ", &save); t && !found;
	     t = strtok_r(NULL, " ", &save))
		found = !strcmp(t, flag);
	free(buf);
	return found;
}

static bool oracle_scanned(const char *flags, bool every)
{
	static const char *const no[] = {"sh", "ms", "pf", "io", "de", "ht", "mm", "dp"};

	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (has_flag(flags, no[i]))
			return false;
	return every || has_flag(flags, "mg");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 65536)
		return 0;
	bool every = data[0] & 1;
	char *text = malloc(size), *buf = malloc(size + 1), *again = malloc(size + 128);
	memcpy(text, data + 1, size - 1);
	size_t len = size - 1, areas = 0;
	struct est_smaps sm = {.every = every};
	bool open = false, open_private = false;
	uint64_t open_start = 0, open_end = 0;

	for (size_t at = 0; at < len;) {
		char *nl = memchr(text + at, '\n', len - at);
		size_t ll = (nl ? (size_t)(nl - text) + 1 : len) - at;
		char *line = malloc(ll + 1);
		memcpy(line, text + at, ll);
		line[ll] = '\0';
		at += ll;

		struct oracle_map m;
		uint64_t s = 1, e = 1;
		int want = oracle_maps(line, buf, size + 1, &m);
		int got = est_maps_line(line, &s, &e);
		FUZZ_ASSERT(got == want, "[%s]: est_maps_line %d, the oracle %d", line, got, want);
		if (got >= 0) {
			FUZZ_ASSERT(s == m.start && e == m.end && s < e && s % PAGE == 0 &&
					e % PAGE == 0,
				    "[%s]: %llx-%llx, the oracle %llx-%llx", line,
				    (unsigned long long)s, (unsigned long long)e,
				    (unsigned long long)m.start, (unsigned long long)m.end);
			/* As show_map_vma() prints it: the path from column 74. */
			int n = snprintf(again, size + 128,
					 "%08llx-%08llx %s %08llx %02llx:%02llx %llu ",
					 (unsigned long long)m.start, (unsigned long long)m.end,
					 m.perms, m.offset, m.major, m.minor, m.inode);
			if (*m.path)
				snprintf(again + n, size + 128 - (size_t)n, "%*s%s\n",
					 n < 73 ? 73 - n : 0, "", m.path);
			uint64_t s2 = 0, e2 = 0;
			FUZZ_ASSERT(est_maps_line(again, &s2, &e2) == got && s2 == s && e2 == e,
				    "[%s] printed again as [%s]: another answer", line, again);
		} else {
			FUZZ_ASSERT(s == 1 && e == 1, "[%s]: refused, but the bounds were written",
				    line);
		}

		/* The area rule over the whole file. */
		bool vmflags = !strncmp(line, "VmFlags:", 8);
		bool want_keep = false;
		if (vmflags) {
			want_keep = open && open_private && oracle_scanned(line + 8, every);
			open = false;
		} else if (want >= 0) {
			open = true;
			open_private = want == 1;
			open_start = m.start;
			open_end = m.end;
			areas++;
		}
		s = e = 0;
		int keep = est_smaps_line(&sm, line, &s, &e);
		FUZZ_ASSERT(keep == want_keep, "[%s] (every %d): est_smaps_line %d, the oracle %d",
			    line, every, keep, want_keep);
		if (keep)
			FUZZ_ASSERT(s == open_start && e == open_end,
				    "kept %llx-%llx, the oracle's area %llx-%llx",
				    (unsigned long long)s, (unsigned long long)e,
				    (unsigned long long)open_start, (unsigned long long)open_end);
		free(line);
	}
	FUZZ_ASSERT((size_t)sm.areas == areas, "%d areas counted, the oracle %zu", sm.areas, areas);
	free(text);
	free(buf);
	free(again);
	return 0;
}
