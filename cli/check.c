// SPDX-License-Identifier: MIT
/*
 * check.c - `ksmctl check`: is KSM supported (CONFIG_KSM, the sysfs
 * directory, prctl(PR_SET_MEMORY_MERGE)), which knobs this kernel has and
 * which known ones it lacks, is ksmd running, and can this user change it.
 * With --user: is samepaged reachable, does it merge, how many clients it
 * has and which knobs and counters it reports.
 * Exit 0: supported (reachable); 1: not supported; 2: error; 3: refused.
 */
#include "ksmctl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "json.h"

const char usage_check[] =
    "check [--json]\n"
    "\n"
    "Says whether this kernel supports KSM (CONFIG_KSM, /sys/kernel/mm/ksm,\n"
    "prctl(PR_SET_MEMORY_MERGE)), which knobs it has, whether ksmd runs and\n"
    "whether this user can change it.  Exit 0 supported, 1 not, 2 error.\n"
    "With --user: whether samepaged answers on its socket, whether it merges,\n"
    "its clients and the knobs and counters it reports (exit 3: it refuses\n"
    "this user).\n";

enum knob_state { PRESENT, MISSING, LATER };

static enum knob_state knob_state(const struct samepage_knob *k, const char *release)
{
	if (knob_present(k->name))
		return PRESENT;
	if (opt.user)
		return MISSING; /* samepaged has no kernel version */
	return version_cmp(release, k->since) >= 0 ? MISSING : LATER;
}

/* Why a file expected for this version may be missing. */
static const char *missing_why(const struct samepage_knob *k)
{
	if (opt.user)
		return "not reported by samepaged";
	if (strcmp(k->name, "merge_across_nodes") == 0)
		return "needs CONFIG_NUMA";
	return "not built in, or a patched kernel";
}

static const char *can_change(char *why, size_t len)
{
	int err = opt.be->writable(opt.be, "run");
	char path[320], reason[256], fix[512];

	if (!err)
		return "yes";
	snprintf(path, sizeof(path), "%s/run", opt.be->where);
	if (err == -EROFS)
		snprintf(why, len, "no: sysfs is read-only (a container?)");
	else if (root_refusal(path, err, reason, sizeof(reason), fix, sizeof(fix)))
		snprintf(why, len, "no, though ksmctl runs as root: %s; fix: %s", reason, fix);
	else if (err == -EACCES || err == -EPERM)
		snprintf(why, len, "no: writing needs root");
	else
		snprintf(why, len, "no: %s", strerror(-err));
	return why;
}

/* The kernel's files; for samepaged also its own counters that it reports. */
static bool listed(const struct samepage_knob *k, enum knob_state want, const char *release)
{
	if (k->kind <= SAMEPAGE_KNOB_COUNTER)
		return knob_state(k, release) == want;
	return opt.user && k->kind == SAMEPAGE_KNOB_EXTRA && want == PRESENT &&
	       knob_present(k->name);
}

static void knob_list_text(const char *label, enum knob_state want, const char *release)
{
	int n = 0, col = 21;

	printf("  %-18s", label);
	for (int i = 0; i < samepage_knob_count(); i++) {
		const struct samepage_knob *k = samepage_knob_at(i);
		char item[160];

		if (!listed(k, want, release))
			continue;
		if (want == PRESENT)
			snprintf(item, sizeof(item), " %s", k->name);
		else if (want == LATER)
			snprintf(item, sizeof(item), " %s (%s)", k->name, k->since);
		else
			snprintf(item, sizeof(item), " %s (%s, %s)", k->name, k->since,
				 missing_why(k));
		/* Wrap at 80 columns, continuing under the first item. */
		if (n && col + (int)strlen(item) > 80) {
			printf("\n  %-18s", "");
			col = 21;
		}
		fputs(item, stdout);
		col += (int)strlen(item);
		n++;
	}
	printf("%s\n", n ? "" : " none");
}

static void knob_list_json(struct json *j, const char *key, enum knob_state want,
			   const char *release)
{
	json_array_begin(j, key);
	for (int i = 0; i < samepage_knob_count(); i++) {
		const struct samepage_knob *k = samepage_knob_at(i);
		if (listed(k, want, release))
			json_string(j, NULL, k->name);
	}
	json_array_end(j);
}

static int count_one(const struct ksm_process *p, void *arg)
{
	(void)p;
	++*(int *)arg;
	return 0;
}

/* --user: samepaged's side of check. */
static int check_user(bool json)
{
	static const char can[] = "yes: samepaged accepts its own user (and root)";
	int err = opt.be->available(opt.be), clients = 0;
	long long run = err ? -1 : knob_or("run", -1);
	char cause[512] = "", fix[512];

	if (err)
		opt.be->explain(opt.be, err, cause, sizeof(cause), fix, sizeof(fix));
	else if (opt.be->for_each_process(opt.be, count_one, &clients))
		clients = -1;
	if (json) {
		struct json j;
		json_init(&j, stdout);
		json_object_begin(&j, NULL);
		json_string(&j, "backend", opt.be->name);
		json_string(&j, "socket", opt.be->where);
		json_bool(&j, "supported", !err);
		json_bool(&j, "reachable", !err);
		json_string(&j, "error", err ? cause : NULL);
		json_bool(&j, "running", run == 1);
		if (run < 0) /* not reachable: no value, not -1 */
			json_null(&j, "run");
		else
			json_int(&j, "run", run);
		if (err)
			json_null(&j, "clients");
		else
			json_int(&j, "clients", clients);
		json_bool(&j, "can_change", !err);
		json_string(&j, "can_change_detail", err ? "no: not reachable" : can);
		knob_list_json(&j, "knobs_present", PRESENT, NULL);
		knob_list_json(&j, "knobs_missing", MISSING, NULL);
		json_object_end(&j);
		return err ? ksm_unavailable(err, NULL) : KSMCTL_OK;
	}
	printf("samepaged at %s\n", opt.be->where);
	if (err) {
		printf("  %-18s no: %s\n", "reachable", cause);
		return ksm_unavailable(err, NULL);
	}
	printf("  %-18s yes\n", "reachable");
	if (run == 1)
		printf("  %-18s yes (run = 1)\n", "running");
	else
		printf("  %-18s no (run = %lld%s): %s start\n", "running", run,
		       run == 2 ? ", unmerged" : "", opt.self);
	printf("  %-18s %d process%s\n", "clients", clients, clients == 1 ? "" : "es");
	printf("  %-18s %s\n", "can change it", can);
	knob_list_text("knobs present", PRESENT, NULL);
	knob_list_text("knobs missing", MISSING, NULL);
	printf("samepaged is reachable.\n");
	return KSMCTL_OK;
}

int cmd_check(int argc, char **argv)
{
	char release[128] = "unknown", src[512], why[1024];
	const char *prctl_how, *change;
	bool json = false, sysfs;
	int c, kconfig, prctl_ok;
	long long run;

	if ((c = verb_json_only(argc, argv, usage_check, &json)))
		return c;
	if (opt.user)
		return check_user(json);
	host_release(release, sizeof(release));
	kconfig = host_kconfig_ksm(src, sizeof(src));
	sysfs = opt.be->available(opt.be) == 0;
	prctl_ok = host_prctl_merge(release, &prctl_how);
	run = knob_or("run", -1);
	change = sysfs ? can_change(why, sizeof(why)) : "no: KSM is absent";

	if (json) {
		struct json j;
		json_init(&j, stdout);
		json_object_begin(&j, NULL);
		json_bool(&j, "supported", sysfs);
		json_string(&j, "kernel", release);
		if (kconfig < 0)
			json_null(&j, "config_ksm");
		else
			json_bool(&j, "config_ksm", kconfig);
		json_string(&j, "config_source", src);
		json_string(&j, "sysfs", opt.be->where);
		json_bool(&j, "sysfs_present", sysfs);
		json_bool(&j, "prctl_merge", prctl_ok);
		json_bool(&j, "prctl_kept_across_exec",
			  prctl_ok && version_cmp(release, "6.7") >= 0);
		json_bool(&j, "running", run == 1);
		if (run < 0) /* no KSM (or no run file): no value, not -1 */
			json_null(&j, "run");
		else
			json_int(&j, "run", run);
		json_bool(&j, "can_change", strcmp(change, "yes") == 0);
		json_string(&j, "can_change_detail", change);
		knob_list_json(&j, "knobs_present", PRESENT, release);
		knob_list_json(&j, "knobs_missing", MISSING, release);
		knob_list_json(&j, "knobs_added_later", LATER, release);
		json_object_end(&j);
		return sysfs ? KSMCTL_OK : KSMCTL_NO;
	}
	printf("KSM on Linux %s\n", release);
	printf("  %-18s %s (%s)\n", "CONFIG_KSM",
	       kconfig < 0 ? "unknown"
	       : kconfig   ? "y"
			   : "not set",
	       src);
	printf("  %-18s %s (%s)\n", "sysfs interface", sysfs ? "yes" : "no", opt.be->where);
	printf("  %-18s %s (%s)\n", "prctl opt-in",
	       !prctl_ok			  ? (version_cmp(release, "6.4") >= 0
							 ? "no (needs CONFIG_KSM)"
							 : "no (needs 6.4): use madvise(MADV_MERGEABLE)")
	       : version_cmp(release, "6.7") >= 0 ? "yes, kept across exec"
						  : "yes, but lost at exec (needs 6.7)",
	       prctl_how);
	if (sysfs) {
		printf("  %-18s %s\n", "running",
		       run == 1	  ? "yes (run = 1)"
		       : run == 2 ? "no (run = 2, unmerged): ksmctl start"
				  : "no (run = 0): ksmctl start");
		printf("  %-18s %s\n", "can change it", change);
		knob_list_text("knobs present", PRESENT, release);
		knob_list_text("knobs missing", MISSING, release);
		knob_list_text("added later", LATER, release);
		printf("KSM is supported.\n");
		return KSMCTL_OK;
	}
	printf("KSM is not supported: %s\n",
	       kconfig == 0 ? "the kernel was built without CONFIG_KSM; rebuild with "
			      "CONFIG_KSM=y, or use libsamepage/samepaged (user space)"
			    : "no /sys/kernel/mm/ksm (CONFIG_KSM off, or /sys not mounted)");
	return KSMCTL_NO;
}
