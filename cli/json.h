/* SPDX-License-Identifier: MIT */
/*
 * json.h - a small streaming JSON writer for ksmctl's --json output.
 *
 * Values are written in order as they are produced; the writer tracks only
 * the nesting and whether a comma is due, so output needs no memory beyond
 * one struct.  Every value call takes a key: the member name inside an
 * object, NULL inside an array or at the top.  Output is indented by two
 * spaces, one member per line (or all on one line: json_init_line), and
 * ends with a newline.  Non-finite numbers
 * are written as null, which JSON requires.  The API is stable: `ksmctl
 * estimate` uses it too.
 */
#ifndef KSMCTL_JSON_H
#define KSMCTL_JSON_H

#include <stdbool.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 16

struct json {
	FILE *f;
	int depth;
	bool one_line; /* json_init_line() */
	bool need_comma[JSON_MAX_DEPTH];
};

void json_init(struct json *j, FILE *f);
/* The same, each top-level value on one line ({"a": 1, "b": [2, 3]}):
 * for a stream of records, such as tune's decisions in the journal, where
 * a line is a record. */
void json_init_line(struct json *j, FILE *f);
/* Whether a JSON document was begun on stdout (json_init with stdout):
 * main() writes the error as JSON for a failed --json verb that wrote none. */
bool json_stdout_used(void);
/* Forgets it: main() at each start (the fuzzers run main() again and again). */
void json_stdout_reset(void);
void json_object_begin(struct json *j, const char *key);
void json_object_end(struct json *j);
void json_array_begin(struct json *j, const char *key);
void json_array_end(struct json *j);
void json_string(struct json *j, const char *key, const char *value); /* NULL: null */
void json_int(struct json *j, const char *key, long long value);
void json_uint(struct json *j, const char *key, unsigned long long value);
void json_double(struct json *j, const char *key, double value); /* NAN, inf: null */
void json_bool(struct json *j, const char *key, bool value);
void json_null(struct json *j, const char *key);

#endif
