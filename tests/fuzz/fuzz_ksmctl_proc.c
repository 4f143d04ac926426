// SPDX-License-Identifier: MIT
/*
 * fuzz_ksmctl_proc.c - ksmctl's read-only verbs on sysfs/procfs trees of
 * any content: what the kernel (or anyone who can name a process) puts in
 * /sys/kernel/mm/ksm, /proc/PID/{ksm_stat,ksm_merging_pages,smaps_rollup,
 * stat,comm,cgroup}, /proc/meminfo, /proc/uptime and /boot/config-*.
 *
 * Input: one byte choosing the verb, then files in the form `head` prints
 * them ("==> proc/4100/comm <==" on a line, then the contents up to the
 * next such line); the seeds are the golden tests' trees (seeds.sh).  The
 * tree is written under a scratch directory and ksmctl runs on it in this
 * process (--sysfs-root/--proc-root/--boot-root).  Promises checked: no
 * crash, no memory error, an exit status of ksmctl(1) (0..5), with the
 * "json" check --json output that is one valid JSON value, and with the
 * "prometheus" check --prometheus output that node_exporter's parser takes
 * (issue 14).  Both checks are on unless SAMEPAGE_FUZZ_EXCLUDE names them.
 */
#include "fuzz.h"
#include "ksmctl_seam.h"

#include <stdint.h>

static const char *const verbs[][4] = {
    {"status"},
    {"status", "--json"},
    {"status", "--prometheus"},
    {"top"},
    {"top", "--json"},
    {"top", "--by", "cgroup"},
    {"top", "--by", "cgroup", "--json"},
    {"check"},
    {"check", "--json"},
    {"doctor"},
    {"doctor", "--json"},
};
#define NVERBS (sizeof(verbs) / sizeof(verbs[0]))

/* Writes the files of the input under root. */
static void unpack(const char *root, const char *p, size_t n)
{
	static const char head[] = "==> ", tail[] = " <=="; /* as head(1) prints */
	const char *end = p + n;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (ll < 8 || memcmp(p, head, 4) || memcmp(p + ll - 4, tail, 4)) {
			p += ll + 1; /* not a header: skip the line */
			continue;
		}
		char rel[256];
		size_t rl = ll - 8 < sizeof(rel) - 1 ? ll - 8 : sizeof(rel) - 1;
		memcpy(rel, p + 4, rl);
		rel[rl] = 0;
		const char *body = nl ? nl + 1 : end;
		const char *next = memmem(body, (size_t)(end - body), "\n==> ", 5);
		next = next ? next + 1 : end;
		/* sysfs names are the kernel's identifiers (ksmctl makes metric
		 * names of them): a '-' there is not a kernel's tree */
		if (strncmp(rel, "sys/", 4) || !strchr(rel, '-'))
			tree_put(root, rel, body, (size_t)(next - body));
		p = next;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	char root[128], sys[160], proc[160], boot[160];
	snprintf(root, sizeof(root), "%s/t", scratch_dir());
	tree_clear(root);
	unpack(root, (const char *)data + 1, size - 1);
	snprintf(sys, sizeof(sys), "%s/sys", root);
	snprintf(proc, sizeof(proc), "%s/proc", root);
	snprintf(boot, sizeof(boot), "%s/boot", root);

	const char *const *v = verbs[data[0] % NVERBS];
	char *argv[16] = {"ksmctl", "--sysfs-root", sys, "--proc-root", proc, "--boot-root", boot};
	int argc = 7;
	for (int i = 0; i < 4 && v[i]; i++)
		argv[argc++] = (char *)v[i];
	argv[argc] = NULL;

	const char *out;
	size_t len;
	int status = ksmctl_run(argc, argv, &out, &len);
	FUZZ_ASSERT(status >= 0 && status <= 5, "%s: exit status %d", v[0], status);
	if (!len)
		return 0;
	bool json = false, prom = false;
	for (int i = 1; i < 4 && v[i]; i++) {
		json |= !strcmp(v[i], "--json");
		prom |= !strcmp(v[i], "--prometheus");
	}
	if ((json && !fuzz_check("json")) || (prom && !fuzz_check("prometheus")))
		return 0;
	const char *why = json ? json_error(out, len) : prom ? prometheus_error(out, len) : NULL;
	FUZZ_ASSERT(!why, "ksmctl %s %s printed invalid %s (%s):\n%.*s", v[0], v[1],
		    json ? "JSON" : "Prometheus text", why, (int)(len < 2000 ? len : 2000), out);
	return 0;
}
