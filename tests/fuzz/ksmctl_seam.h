/* SPDX-License-Identifier: MIT */
/*
 * ksmctl_seam.h - ksmctl in the fuzzer's process.
 *
 * tests/fuzz/CMakeLists.txt builds the sources of cli/ again with main() renamed
 * ksmctl_main(); ksmctl_run() calls it with the global options as at
 * start-up (main() sets them from argv), stdout captured, its messages on
 * stderr dropped, LeakSanitizer off (a program that ends may keep what it
 * allocated).  The trees are
 * scratch copies of sysfs/procfs under a directory of /dev/shm.
 */
#ifndef SAMEPAGE_KSMCTL_SEAM_H
#define SAMEPAGE_KSMCTL_SEAM_H

#include <stddef.h>

/* Runs `ksmctl ARGS...` (argv[0] is "ksmctl"); returns its exit status and
 * what it printed on stdout (a NUL-terminated buffer, valid until the next
 * call). */
int ksmctl_run(int argc, char **argv, const char **out, size_t *outlen);

/* A scratch directory, made once (and removed at exit). */
const char *scratch_dir(void);
/* Removes everything below dir (not dir itself). */
void tree_clear(const char *dir);
/* Writes dir/rel (making its directories); rel is checked: relative, no
 * "..", only [A-Za-z0-9._/-].  0 or -1. */
int tree_put(const char *dir, const char *rel, const void *data, size_t len);

/* Checks that text is one valid JSON value (UTF-8 strings, no control
 * bytes), and Prometheus text (UTF-8, each line a comment or
 * `name{labels} value`); NULL if so, else what is wrong. */
const char *json_error(const char *text, size_t len);
const char *prometheus_error(const char *text, size_t len);

#endif
