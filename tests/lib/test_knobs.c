// SPDX-License-Identifier: MIT
/* test_knobs.c - the knob table and the kernel's parsing rules. */
#include "check.h"

#include <samepage.h>
#include <errno.h>

static void expect_parse(const char *name, const char *value, int want_err, unsigned long long want)
{
	unsigned long long v = 12345;
	int err = samepage_knob_parse(name, value, &v);
	CHECK_EQ_INT(err, want_err);
	if (!want_err)
		CHECK_EQ_U64(v, want);
}

int main(void)
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
	return check_report("knobs");
}
