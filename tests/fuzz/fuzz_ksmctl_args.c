// SPDX-License-Identifier: MIT
/*
 * fuzz_ksmctl_args.c - ksmctl's argument handling, in this process.
 *
 * Input: the words after `ksmctl`, one a line (or NUL-separated).  ksmctl
 * runs on a scratch copy of the golden tests' Linux 6.18 tree, rewritten
 * before each input (so `set`, `apply` and `unmerge` write into the copy;
 * its pages_shared is 0, so that --unmerge finds everything unmerged),
 * with --user talking to a socket nobody listens on.  Left out, because
 * they act on this machine, not on the tree: the verbs run (executes a
 * program), install-service (writes under /etc), wait (waits for the real
 * ksmd) and estimate (reads every process), --watch (runs until SIGINT),
 * the root and socket options, any word with a '/' (a FILE for apply
 * is one of tests/cli/conf's, by name: host.conf, bad-value.conf...) and
 * "-" (apply's standard input, the fuzzer's own).
 * Promises checked: no crash, no memory error, an exit status of
 * ksmctl(1) (0..5), and with the "json" check, --json output that is one
 * valid JSON value (when it starts as JSON: --help and its abbreviations
 * win over --json).
 */
#include "fuzz.h"
#include "ksmctl_seam.h"

#include <ftw.h>
#include <stdint.h>
#include <sys/stat.h>

#ifndef SAMEPAGE_SOURCE_DIR
#error "SAMEPAGE_SOURCE_DIR: the source tree (tests/fuzz/CMakeLists.txt defines it)"
#endif

/* The base tree, kept in memory. */
struct file {
	char rel[200];
	char *data;
	size_t len;
};
static struct file files[256];
static int nfiles;
static size_t base_len;
static const char *base;

static int load(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (flag != FTW_F || nfiles == 256)
		return 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	struct file *e = &files[nfiles++];
	snprintf(e->rel, sizeof(e->rel), "%s", path + base_len + 1);
	e->data = malloc((size_t)st->st_size + 1);
	e->len = fread(e->data, 1, (size_t)st->st_size, f);
	fclose(f);
	if (strstr(e->rel, "kernel/mm/ksm/pages_shared")) /* --unmerge finds it done */
		e->len = (size_t)sprintf(e->data, "0\n");
	return 0;
}

static const char *const confs[] = {"host.conf", "bad-value.conf", "syntax-error.conf",
				    "unknown.conf"};
static char conf_path[4][200], tree[160], sys[200], proc[200], boot[200];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	base = SAMEPAGE_SOURCE_DIR "/tests/cli/trees/linux-6.18";
	base_len = strlen(base);
	nftw(base, load, 16, FTW_PHYS);
	if (!nfiles) {
		fprintf(stderr, "fuzz_ksmctl_args: no tree in %s\n", base);
		exit(1);
	}
	for (int i = 0; i < 4; i++)
		snprintf(conf_path[i], sizeof(conf_path[i]), "%s/tests/cli/conf/%s",
			 SAMEPAGE_SOURCE_DIR, confs[i]);
	snprintf(tree, sizeof(tree), "%s/t", scratch_dir());
	snprintf(sys, sizeof(sys), "%s/sys", tree);
	snprintf(proc, sizeof(proc), "%s/proc", tree);
	snprintf(boot, sizeof(boot), "%s/boot", tree);
	char sock[200];
	snprintf(sock, sizeof(sock), "%s/nobody.sock", scratch_dir());
	setenv("SAMEPAGE_SOCKET", sock, 1);
	return 0;
}

static bool allowed_verb(const char *w)
{
	static const char *const ok[] = {"check",   "status", "set", "start", "stop",
					 "unmerge", "apply",  "top", "doctor"};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (!strcmp(w, ok[i]))
			return true;
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char words[16][128];
	char *argv[32] = {"ksmctl", "--sysfs-root", sys, "--proc-root", proc, "--boot-root", boot};
	int argc = 7, nw = 0;
	size_t i = 0;
	bool json = false, verb_seen = false, dashdash = false;

	while (i < size && nw < 16) {
		size_t n = 0;
		while (i < size && data[i] != '\n' && data[i] != 0 && n < sizeof(words[0]) - 1)
			words[nw][n++] = (char)data[i++];
		words[nw][n] = 0;
		i++;
		char *w = words[nw++];
		if (strchr(w, '/') || !strncmp(w, "--sysfs-root", 12) ||
		    !strncmp(w, "--proc-root", 11) || !strncmp(w, "--boot-root", 11) ||
		    !strncmp(w, "--socket", 8) || !strncmp(w, "--w", 3) || !strcmp(w, "-"))
			return 0; /* this machine's state, or a run without end */
		if (!strcmp(w, "--"))
			dashdash = true;
		if (!verb_seen && !dashdash && w[0] != '-') {
			if (!allowed_verb(w))
				return 0;
			verb_seen = true;
		}
		json |= !strcmp(w, "--json");
		argv[argc++] = w;
		for (int c = 0; c < 4; c++)
			if (!strcmp(w, confs[c]))
				argv[argc - 1] = conf_path[c];
	}
	argv[argc] = NULL;

	tree_clear(tree);
	for (int f = 0; f < nfiles; f++)
		tree_put(tree, files[f].rel, files[f].data, files[f].len);

	const char *out;
	size_t len;
	int status = ksmctl_run(argc, argv, &out, &len);
	FUZZ_ASSERT(status >= 0 && status <= 5, "exit status %d", status);
	/* Help (--help, or an abbreviation of it) wins over --json: only what
	 * starts as JSON must be JSON. */
	if (json && len && (out[0] == '{' || out[0] == '[') && fuzz_check("json")) {
		const char *why = json_error(out, len);
		FUZZ_ASSERT(!why, "invalid JSON (%s):\n%.*s", why, (int)(len < 2000 ? len : 2000),
			    out);
	}
	return 0;
}
