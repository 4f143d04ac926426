// SPDX-License-Identifier: MIT
/* test_knobs.c - the knob table and the kernel's parsing rules, and the
 * errors samepage(3) gives for values outside a knob's range (its examples
 * under KNOBS AND COUNTERS, read from docs/samepage.3). */
#include "check.h"

#include <samepage.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

static void expect_parse(const char *name, const char *value, int want_err, unsigned long long want)
{
	unsigned long long v = 12345;
	int err = samepage_knob_parse(name, value, &v);
	CHECK_EQ_INT(err, want_err);
	if (!want_err)
		CHECK_EQ_U64(v, want);
}

/* A number past every knob's type: the parser's ERANGE, which only
 * max_page_sharing and merge_across_nodes return (the kernel's store
 * functions of the others say EINVAL); one past the type of the unsigned
 * int and int knobs: ERANGE for max_page_sharing (an int) only. */
static void check_widths(void)
{
	for (int i = 0; i < samepage_knob_count(); i++) {
		const struct samepage_knob *k = samepage_knob_at(i);
		unsigned long long v;
		char past[32];
		if (k->kind != SAMEPAGE_KNOB_TUNABLE || k->format != SAMEPAGE_FMT_UNSIGNED)
			continue;
		bool mps = !strcmp(k->name, "max_page_sharing");
		int err = samepage_knob_parse(k->name, "18446744073709551616", &v);
		if (err != (mps || !strcmp(k->name, "merge_across_nodes") ? -ERANGE : -EINVAL))
			printf("%s = 18446744073709551616: %d\n", k->name, err);
		CHECK_EQ_INT(err,
			     mps || !strcmp(k->name, "merge_across_nodes") ? -ERANGE : -EINVAL);
		if (k->max == 18446744073709551615ULL)
			continue;
		snprintf(past, sizeof(past), "%llu", k->max + 1);
		err = samepage_knob_parse(k->name, past, &v);
		if (err != (mps ? -ERANGE : -EINVAL))
			printf("%s = %s: %d\n", k->name, past, err);
		CHECK_EQ_INT(err, mps ? -ERANGE : -EINVAL);
	}
}

/* samepage(3)'s examples of refused values (KNOBS AND COUNTERS: lines
 * "name value ERRNO" between .nf and .fi): what samepage_write() and
 * samepage_knob_parse() return. */
static void check_man_examples(const char *man)
{
	FILE *f = fopen(man, "r");
	char line[256];
	bool section = false, block = false;
	int n = 0;
	samepage_t *sp;
	CHECK(f != NULL);
	CHECK_EQ_INT(samepage_open(&sp), 0);
	while (f && fgets(line, sizeof(line), f)) {
		if (!strncmp(line, ".SH ", 4))
			section = !strcmp(line, ".SH KNOBS AND COUNTERS\n");
		else if (section && !strncmp(line, ".nf", 3))
			block = true;
		else if (section && !strncmp(line, ".fi", 3))
			block = false;
		if (!section || !block || line[0] == '.')
			continue;
		char name[64], raw[64], value[64], errname[16];
		REQUIRE(sscanf(line, "%63s %63s %15s", name, raw, errname) == 3);
		size_t o = 0; /* roff's \- is a minus */
		for (const char *r = raw; *r && o < sizeof(value) - 1; r++)
			if (!(r[0] == '\\' && r[1] == '-'))
				value[o++] = *r;
		value[o] = 0;
		int want = !strcmp(errname, "ERANGE")	? -ERANGE
			   : !strcmp(errname, "EINVAL") ? -EINVAL
							: 1;
		unsigned long long v;
		int parsed = samepage_knob_parse(name, value, &v),
		    written = samepage_write(sp, name, value);
		printf("%s %s: samepage(3) %s, parse %d, write %d\n", name, value, errname, parsed,
		       written);
		CHECK_EQ_INT(parsed, want);
		CHECK_EQ_INT(written, want);
		n++;
	}
	if (f)
		fclose(f);
	samepage_close(sp);
	CHECK(n >= 8); /* the examples are there */
}

int main(int argc, char **argv)
{
	CHECK(samepage_knob_count() > 30);
	CHECK(samepage_knob_find("run") != NULL);
	CHECK(samepage_knob_find("no_such_knob") == NULL);
	CHECK_EQ_U64(samepage_knob_find("pages_to_scan")->def, 100);
	CHECK_EQ_U64(samepage_knob_find("max_page_sharing")->def, 256);

	expect_parse("run", "1", 0, 1);
	expect_parse("run", "2\n", 0, 2);
	expect_parse("run", "+1", 0, 1);
	expect_parse("run", "3", -EINVAL, 0);
	expect_parse("run", "1x", -EINVAL, 0);
	expect_parse("run", " 1", -EINVAL, 0);
	expect_parse("run", "", -EINVAL, 0);
	expect_parse("run", "-1", -EINVAL, 0);
	expect_parse("pages_to_scan", "4294967295", 0, 4294967295ULL);
	expect_parse("pages_to_scan", "4294967296", -EINVAL, 0);    /* the store says EINVAL */
	expect_parse("max_page_sharing", "2147483648", -ERANGE, 0); /* kstrtoint's ERANGE */
	expect_parse("merge_across_nodes", "99999999999999999999", -ERANGE, 0);
	expect_parse("merge_across_nodes", "2", -EINVAL, 0);
	expect_parse("pages_to_scan", "0x10", -EINVAL, 0);
	expect_parse("max_page_sharing", "1", -EINVAL, 0);
	expect_parse("max_page_sharing", "2", 0, 2);
	expect_parse("advisor_target_scan_time", "0", -EINVAL, 0);
	expect_parse("use_zero_pages", "yes", 0, 1);
	expect_parse("use_zero_pages", "off", 0, 0);
	expect_parse("use_zero_pages", "maybe", -EINVAL, 0);
	/* Linux 6.18's kstrtobool (written to the kernel's use_zero_pages) */
	expect_parse("use_zero_pages", "true", 0, 1);
	expect_parse("use_zero_pages", "enable", 0, 1);
	expect_parse("use_zero_pages", "T", 0, 1);
	expect_parse("use_zero_pages", "false", 0, 0);
	expect_parse("use_zero_pages", "disable", 0, 0);
	expect_parse("use_zero_pages", "o", -EINVAL, 0);
	/* kstrtoint's sign (the kernel's max_page_sharing, written here) */
	expect_parse("max_page_sharing", "-3000000000", -ERANGE, 0);
	expect_parse("max_page_sharing", "-2147483649", -ERANGE, 0);
	expect_parse("max_page_sharing", "-2147483648", -EINVAL, 0);
	expect_parse("max_page_sharing", "-3", -EINVAL, 0);
	expect_parse("max_page_sharing", "-", -EINVAL, 0);
	expect_parse("max_page_sharing", "-+3", -EINVAL, 0);
	expect_parse("pages_to_scan", "-3000000000", -EINVAL, 0);
	expect_parse("advisor_mode", "scan-time\n", 0, 1);
	expect_parse("advisor_mode", "none", 0, 0);
	expect_parse("advisor_mode", "scan", -EINVAL, 0);
	expect_parse("pages_shared", "1", -EACCES, 0);
	expect_parse("bogus", "1", -ENOENT, 0);
	check_widths();
	check_man_examples(argc > 1 ? argv[1] : "docs/samepage.3");
	return check_report("knobs");
}
