// SPDX-License-Identifier: MIT
/*
 * fuzz_knob_engine.c - samepage_write/read/read_number on a live engine.
 *
 * One engine for the whole run, with 32 registered pages of four contents
 * (so that run=1 merges and max_page_sharing can be busy).  Each input is a
 * program of operations; before it, every tunable goes back to its default.
 * Each answer must keep the API's promises (samepage.h):
 *  - write: an unknown name -ENOENT, a counter -EACCES; a value the kernel
 *    refuses (fuzz.h's oracle) -EINVAL or -ERANGE as the kernel; an accepted
 *    value 0 and read back, or -EBUSY (max_page_sharing, merge_across_nodes
 *    while pages are merged), or -EINVAL (pages_to_scan under the advisor);
 *    a refused write changes nothing;
 *  - read: 0 with a terminated string that fits, -ERANGE if it does not,
 *    -ENOENT for an unknown name; never a byte past len (the buffer is a
 *    heap block of exactly len bytes: ASan sees any overflow);
 *  - read_number agrees with read.
 * With the "nulls" check (the default), NULL names, values and buffers are
 * given too (in a child process): a NULL value or buffer must give -EINVAL,
 * a NULL name -EINVAL or -ENOENT (samepage.h: every call returns 0 or a
 * negative errno; issue 9, item 7).
 */
#include "fuzz.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static samepage_t *sp;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int err = samepage_open(&sp);
	if (err) {
		fprintf(stderr, "samepage_open: %s\n", samepage_strerror(err));
		exit(1);
	}
	char *p = mmap(NULL, 32 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		exit(1);
	for (int i = 0; i < 32; i++)
		memset(p + i * 4096, i % 4 + 1, 4096);
	if (samepage_madvise(sp, p, 32 * 4096, SAMEPAGE_MERGEABLE))
		exit(1);
	return 0;
}

/* A reader of the input. */
struct in {
	const uint8_t *p;
	size_t n;
};

static unsigned byte(struct in *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

/* Bytes up to a NUL (or the end of the input). */
static void take_string(struct in *in, char *buf, size_t len)
{
	size_t i = 0;
	while (in->n && i + 1 < len) {
		unsigned c = byte(in);
		if (!c)
			break;
		buf[i++] = (char)c;
	}
	buf[i] = 0;
}

/* A name: one of the table (most often), or a string. */
static void take_name(struct in *in, char *buf, size_t len)
{
	unsigned b = byte(in);
	if (b < 224)
		snprintf(buf, len, "%s", samepage_knob_at((int)(b % samepage_knob_count()))->name);
	else
		take_string(in, buf, len);
}

static long long number(const char *name)
{
	long long v = -1;
	FUZZ_ASSERT(samepage_read_number(sp, name, &v) == 0, "read_number(%s)", name);
	return v;
}

static void op_write(struct in *in)
{
	char name[80], value[80];
	take_name(in, name, sizeof(name));
	take_string(in, value, sizeof(value));
	const struct samepage_knob *k = samepage_knob_find(name);
	bool advisor = number("advisor_mode") == 1;
	long long before = k ? number(name) : 0;
	int err = samepage_write(sp, name, value);
	if (!k) {
		FUZZ_ASSERT(err == -ENOENT, "write of unknown [%s]: %d", name, err);
		return;
	}
	if (k->kind != SAMEPAGE_KNOB_TUNABLE) {
		FUZZ_ASSERT(err == -EACCES, "write of counter %s: %d", name, err);
		return;
	}
	unsigned long long want = 0;
	int expect = model_parse(k, value, &want);
	bool p2s = !strcmp(name, "pages_to_scan"); /* the advisor changes it as it likes */
	if (expect == 1)
		return;
	if (expect) {
		FUZZ_ASSERT(err == expect, "%s = [%s]: %d (%s), the kernel %d", name, value, err,
			    samepage_strerror(err), expect);
	} else if (err == -EBUSY) {
		FUZZ_ASSERT(!strcmp(name, "max_page_sharing") ||
				!strcmp(name, "merge_across_nodes"),
			    "%s = [%s]: EBUSY", name, value);
	} else if (err == -EINVAL) {
		FUZZ_ASSERT(p2s && advisor, "%s = [%s]: EINVAL for a value the kernel takes", name,
			    value);
	} else {
		FUZZ_ASSERT(err == 0, "%s = [%s]: %d (%s)", name, value, err,
			    samepage_strerror(err));
		if (!(p2s && advisor))
			FUZZ_ASSERT((unsigned long long)number(name) == want,
				    "%s = [%s] reads %lld, not %llu", name, value, number(name),
				    want);
	}
	if (err && !(p2s && advisor))
		FUZZ_ASSERT(number(name) == before, "%s = [%s] refused (%d) but changed it", name,
			    value, err);
}

static void op_read(struct in *in)
{
	char name[80], big[128];
	take_name(in, name, sizeof(name));
	size_t len = byte(in) % 72;
	char *buf = malloc(len ? len : 1);
	int err = samepage_read(sp, name, buf, len);
	const struct samepage_knob *k = samepage_knob_find(name);
	/* len 0: "too small" (-ERANGE) or no buffer at all (-EINVAL), both fair */
	FUZZ_ASSERT(k ? (err == 0 || err == -ERANGE || (!len && err == -EINVAL))
		      : err == -ENOENT || (!len && err == -EINVAL),
		    "read(%s, %zu): %d", name, len, err);
	if (!err)
		FUZZ_ASSERT(memchr(buf, 0, len) != NULL, "read(%s, %zu): no terminating NUL", name,
			    len);
	free(buf);
	if (!k)
		return;
	long long v;
	FUZZ_ASSERT(samepage_read(sp, name, big, sizeof(big)) == 0, "read(%s) in 128 bytes", name);
	FUZZ_ASSERT(samepage_read_number(sp, name, &v) == 0, "read_number(%s)", name);
	if (k->format == SAMEPAGE_FMT_MODE)
		FUZZ_ASSERT(!strcmp(big, v ? "none [scan-time]" : "[none] scan-time"),
			    "%s: %s vs %lld", name, big, v);
	else if (strcmp(name, "pages_to_scan") && k->kind == SAMEPAGE_KNOB_TUNABLE)
		FUZZ_ASSERT(strtoull(big, NULL, 10) == (unsigned long long)v, "%s: [%s] vs %lld",
			    name, big, v);
}

/* One call with a NULL pointer, in a child with an engine of its own: a
 * crash there must not take the fuzzer with it (and a SIGSEGV in a process
 * with an engine may never end: see RELIABILITY.md), so the child is given
 * five seconds. */
static void op_nulls(struct in *in)
{
	static const char *const what[] = {
	    "samepage_write(sp, NULL, \"1\")", "samepage_write(sp, \"run\", NULL)",
	    "samepage_read(sp, NULL, buf, 64)", "samepage_read(sp, \"run\", NULL, 10)",
	    "samepage_read_number(sp, NULL, &v)"};
	unsigned which = byte(in) % 5;
	pid_t pid = fork();
	if (pid == 0) {
		samepage_t *own;
		char buf[64];
		long long v;
		int err = -1;
		if (samepage_open(&own))
			_exit(2);
		switch (which) {
		case 0: err = samepage_write(own, NULL, "1"); break;
		case 1: err = samepage_write(own, "run", NULL); break;
		case 2: err = samepage_read(own, NULL, buf, sizeof(buf)); break;
		case 3: err = samepage_read(own, "run", NULL, 10); break;
		default: err = samepage_read_number(own, NULL, &v); break;
		}
		/* A NULL name is no name: -EINVAL, or -ENOENT as an unknown one. */
		bool name = which == 0 || which == 2 || which == 4;
		_exit(err == -EINVAL || (name && err == -ENOENT) ? 0 : 3);
	}
	FUZZ_ASSERT(pid > 0, "fork");
	int status = 0;
	pid_t got = 0;
	for (int i = 0; i < 5000 && (got = waitpid(pid, &status, WNOHANG)) == 0; i++)
		usleep(1000);
	if (got == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		FUZZ_ASSERT(0, "%s: still running after 5 s", what[which]);
	}
	FUZZ_ASSERT(!WIFSIGNALED(status), "%s: killed by signal %d", what[which], WTERMSIG(status));
	FUZZ_ASSERT(WEXITSTATUS(status) == 0, "%s: not -EINVAL (exit %d)", what[which],
		    WEXITSTATUS(status));
}

/* Every tunable to its default, everything unmerged first. */
static void reset(void)
{
	char def[32];
	samepage_write(sp, "advisor_mode", "none");
	samepage_write(sp, "run", "2");
	for (int i = 0; i < samepage_knob_count(); i++) {
		const struct samepage_knob *k = samepage_knob_at(i);
		if (k->kind != SAMEPAGE_KNOB_TUNABLE || k->format == SAMEPAGE_FMT_MODE)
			continue;
		snprintf(def, sizeof(def), "%llu", k->def);
		FUZZ_ASSERT(samepage_write(sp, k->name, def) == 0, "reset %s to %s", k->name, def);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = {data, size};
	bool nulls = fuzz_check("nulls");
	reset();
	for (int ops = 0; in.n && ops < 64; ops++) {
		switch (byte(&in) % 5) {
		case 0:
		case 1: op_write(&in); break;
		case 2:
		case 3: op_read(&in); break;
		default:
			if (nulls) /* one a program: a fork each */
				op_nulls(&in);
			nulls = false;
			break;
		}
	}
	return 0;
}
