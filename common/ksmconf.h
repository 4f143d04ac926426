/* SPDX-License-Identifier: MIT */
/*
 * ksmconf.h - the one reader of KSM config files ("name = value" lines,
 * '#' comments): `ksmctl apply` (/etc/ksm.conf) and `samepaged --config`
 * read a file through it, so a file one accepts the other accepts, and a
 * refused line gets the same cause, input and fix from both.
 *
 * A line is empty, a comment, or NAME = VALUE with one word on each side;
 * a NUL byte anywhere in it refuses it (a C string would end there).  A
 * UTF-8 byte-order mark at the start of the file is skipped.
 * NAME must be a tunable of the knob table (lib/knobs.def), VALUE what the
 * kernel's store function for it accepts (samepage_knob_parse), and each
 * NAME may come once.  Needs libsamepage's knob table: link
 * samepage_ksmconf (it brings samepage_static).
 */
#ifndef SAMEPAGE_COMMON_KSMCONF_H
#define SAMEPAGE_COMMON_KSMCONF_H

#include <stdbool.h>
#include <stddef.h>

#include "samepage.h"

#define KSMCONF_MAX 64 /* settings per file: the table has fewer tunables */

/* The longest value, as written, that any reader of settings takes: the
 * kernel's kstrtouint() takes any number of leading zeros, but a setting
 * is kept as written in an entry's value[] (ksmconf_check_value). */
#define KSMCONF_VALUE_MAX 63

/* One setting, checked against the knob table. */
struct ksmconf_entry {
	const struct samepage_knob *knob;
	unsigned long long v; /* as parsed */
	int line;
	char value[KSMCONF_VALUE_MAX + 1]; /* as written: "300", "scan-time", "y" */
	char origin[1024];		   /* "FILE:LINE" */
};

/* A whole file: its settings in file order. */
struct ksmconf_file {
	int n;
	struct ksmconf_entry e[KSMCONF_MAX];
};

/* Why a file was refused, in the three parts every program prints:
 * "CAUSE", "  input: INPUT", "  fix: FIX". */
struct ksmconf_error {
	char cause[256];  /* "bad value for pages_to_scan" */
	char input[1024]; /* "FILE:LINE: pages_to_scan = 300 junk" */
	char fix[256];	  /* "give a whole number from 0 to 4294967295" */
};

/* Reads and checks the whole of path into out ("-": standard input, named
 * "(standard input)" in messages and origins): 0, or -errno with *err
 * filled (-EINVAL: a line is refused, or path is not a regular file or a
 * pipe; -EISDIR: a directory; another -errno: it cannot be opened, or a
 * read failed, even part-way; -ENOENT too for an empty path, which names
 * no file).  On an error out holds no setting (out->n is 0), whatever the
 * lines before the refused one were. */
int ksmconf_read(const char *path, struct ksmconf_file *out, struct ksmconf_error *err);

/* How messages name path: "(standard input)" for "-", else path. */
const char *ksmconf_name(const char *path);

/* A config line's first len bytes as printable text for a message, as a
 * process name is shown (procfs_escape_n: a NUL byte and invisible
 * characters as "\xHH"), its trailing newline left out.  Returns out. */
const char *ksmconf_show(const char *line, size_t len, char *out, size_t outlen);

/* Whether line lineno of path (len bytes, as getline counted them) holds a
 * NUL byte, which a C string would end at, dropping the rest unseen: then
 * *err says so (file:line, the line shown).  Both readers of config files
 * (this one and ksmctl tune's of ksmtuned.conf) refuse such a line. */
bool ksmconf_nul_line(const char *path, int lineno, const char *line, size_t len,
		      struct ksmconf_error *err);

/* pages_to_scan with advisor_mode=scan-time in one command or file: the
 * kernel refuses pages_to_scan under the advisor, and writing advisor_mode
 * resets it, so whatever the order, one of the two is lost.  ksmconf_read
 * refuses such a file (for `ksmctl apply` and `samepaged --config` alike),
 * `ksmctl set` such a command line (cli/set.c), `ksmctl --user run` such
 * --set options (ksmconf_check_advisor), exit 2, with this cause
 * and fix, the input as "pages_to_scan=VALUE (ORIGIN)". */
#define KSMCONF_ADVISOR_CAUSE "pages_to_scan cannot be set with advisor_mode=scan-time"
#define KSMCONF_ADVISOR_FIX                                                                        \
	"leave pages_to_scan out (the advisor sets it), or set advisor_mode=none"

/* The rule above on settings already checked one by one, from a file or
 * not (`ksmctl --user run --set`, whose entries have the origin "--set"):
 * 0, or -EINVAL with *err naming pages_to_scan as "pages_to_scan=VALUE
 * (ORIGIN)".  ksmconf_read applies it to every file. */
int ksmconf_check_advisor(const struct ksmconf_file *conf, struct ksmconf_error *err);

/* One setting, NAME and VALUE as given, checked by the rules every taker
 * of settings shares: a config file (ksmconf_read), `ksmctl set`, `apply`
 * and `--user run --set` (cli/set.c's plan_add), and samepaged's SET
 * (daemon/protocol.c).  NAME must be a tunable of the knob table, VALUE
 * what the kernel's store function takes (samepage_knob_parse) in at most
 * KSMCONF_VALUE_MAX characters.  0 with *knob and *v set (knob and v may
 * be NULL), or samepage_knob_parse's -errno with err->cause and err->fix
 * filled (err->input is left to the caller, who knows where the setting
 * came from): -ENOENT no such knob (its fix is unknown_fix, or for NULL
 * "use a knob of /sys/kernel/mm/ksm..."), -EACCES a counter, -EINVAL a
 * value refused, or one too long ("N characters long").
 * A value is refused before its length, so that a bad long value is
 * called bad. */
int ksmconf_check_value(const char *name, const char *value, const struct samepage_knob **knob,
			unsigned long long *v, const char *unknown_fix, struct ksmconf_error *err);

/* The values a knob accepts, for fixes: "a whole number from 0 to 2". */
const char *ksmconf_range(const struct samepage_knob *k, char *buf, size_t len);

#endif
