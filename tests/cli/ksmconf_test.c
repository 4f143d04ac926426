// SPDX-License-Identifier: MIT
/*
 * ksmconf_test.c - common/ksmconf.c's promises on made-up files, apart
 * from the programs that read it (cli.config runs those): a refused file
 * leaves no setting in the result, whichever rule refused it (ksmconf_read
 * kept the lines before the refused one, which a caller that looked at the
 * count alone would have applied); a good file gives its settings in order
 * with their origins.  tests/fuzz/fuzz_ksmconf.c checks the same promises
 * on any bytes.
 *
 * usage: ksmconf_test TMPDIR
 */
#include "ksmconf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/check.h"

static const char *dir;

/* Writes len bytes of text to DIR/name: its path. */
static const char *put(const char *name, const char *text, size_t len)
{
	static char path[4200];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f || fwrite(text, 1, len, f) != len || fclose(f)) {
		perror(path);
		exit(1);
	}
	return path;
}

#define PUT(name, text) put(name, text, sizeof(text) - 1)

/* Each file's first lines are good, a later one is refused: nothing is
 * left of the good ones. */
static void test_refused_keeps_nothing(void)
{
	static const struct {
		const char *name, *text;
		size_t len;
		int line;
	} cases[] = {
#define CASE(name, text, line) {name, text, sizeof(text) - 1, line}
	    CASE("junk.conf", "run = 1\nsleep_millisecs = 50\npages_to_scan = 300 junk\n", 3),
	    CASE("unknown.conf", "run = 1\nfrobnicate = 1\n", 2),
	    CASE("counter.conf", "run = 1\npages_shared = 0\n", 2),
	    CASE("range.conf", "run = 1\nmax_page_sharing = 1\n", 2),
	    CASE("twice.conf", "run = 1\nsleep_millisecs = 10\nrun = 0\n", 3),
	    CASE("nul.conf", "run = 1\npages_to_scan = 1000\0run=1\n", 2),
	    CASE("advisor.conf", "run = 1\npages_to_scan = 200\nadvisor_mode = scan-time\n", 0),
#undef CASE
	};
	static struct ksmconf_file conf;
	struct ksmconf_error err;
	char want[4300];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *path = put(cases[i].name, cases[i].text, cases[i].len);

		memset(&conf, 0, sizeof(conf));
		int r = ksmconf_read(path, &conf, &err);
		if (r != -EINVAL || conf.n != 0)
			fprintf(stderr, "  %s: %d, %d settings left\n", cases[i].name, r, conf.n);
		CHECK(r == -EINVAL);
		CHECK(conf.n == 0);
		CHECK(err.cause[0] && err.fix[0]);
		if (cases[i].line) {
			snprintf(want, sizeof(want), "%s:%d: ", path, cases[i].line);
			CHECK(!strncmp(err.input, want, strlen(want)));
		} else {
			snprintf(want, sizeof(want), "pages_to_scan=200 (%s:2)", path);
			CHECK(!strcmp(err.input, want));
		}
	}
}

/* A good file: its settings in order, values as written and as parsed,
 * origins FILE:LINE; comments, blank lines, a byte-order mark and \r\n
 * line ends are no settings. */
static void test_good(void)
{
	static struct ksmconf_file conf;
	struct ksmconf_error err;
	char want[4300];
	const char *path = PUT("good.conf", "\xef\xbb\xbfpages_to_scan = 300   # per batch\r\n"
					    "# the seed\n\n\tuse_zero_pages=y\nrun = 1");

	CHECK(ksmconf_read(path, &conf, &err) == 0);
	CHECK(conf.n == 3);
	if (conf.n != 3)
		return;
	CHECK(!strcmp(conf.e[0].knob->name, "pages_to_scan") && conf.e[0].v == 300);
	CHECK(!strcmp(conf.e[0].value, "300") && conf.e[0].line == 1);
	CHECK(!strcmp(conf.e[1].knob->name, "use_zero_pages") && conf.e[1].v == 1);
	CHECK(!strcmp(conf.e[1].value, "y") && conf.e[1].line == 4);
	CHECK(!strcmp(conf.e[2].knob->name, "run") && conf.e[2].v == 1 && conf.e[2].line == 5);
	snprintf(want, sizeof(want), "%s:5", path);
	CHECK(!strcmp(conf.e[2].origin, want));
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: ksmconf_test TMPDIR\n");
		return 2;
	}
	dir = argv[1];
	test_refused_keeps_nothing();
	test_good();
	return check_report("ksmconf");
}
