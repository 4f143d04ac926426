// SPDX-License-Identifier: MIT
/*
 * main.c - ksmctl: check, enable, tune, persist and observe the kernel's
 * Kernel Samepage Merging (KSM), or samepaged's (user-space KSM) with --user.
 *
 * This file parses the global options (the back-end: the kernel, or
 * samepaged with --user; the roots of the recorded trees that tests use),
 * then hands argv to one verb from the table below.  The verbs live in one
 * file each; ksmctl(1) documents them and the exit statuses of util.h.
 */
#include "ksmctl.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "estimate.h"
#include "json.h"

struct ksmctl_options opt = {
    .sys_root = "/sys",
    .proc_root = "/proc",
    .boot_root = "/boot",
    .live = true,
    .self = "ksmctl",
};

#define V(n, s)                                                                                    \
	{                                                                                          \
#n, cmd_##n, usage_##n, s                                                          \
	}
static const struct verb verbs[] = {
    V(check, "is KSM supported, running, and can this user change it"),
    V(status, "every knob and counter, savings, cost and scan speed"),
    V(set, "validate and write knobs, all or nothing"),
    V(start, "start ksmd (run=1); start NPAGES [SLEEP] sets pages_to_scan, sleep first"),
    V(stop, "stop ksmd, keep merged pages (run=0)"),
    V(unmerge, "stop ksmd and unmerge every page (run=2)"),
    V(apply, "apply a declarative file of knobs (default /etc/ksm.conf)"),
    {"install-service", cmd_install_service, usage_install_service,
     "install and enable a systemd unit that applies /etc/ksm.conf at boot"},
    V(run, "run a program with its memory mergeable"),
    V(top, "KSM savings per process or per cgroup"),
    V(doctor, "explain why KSM is not merging, with the fix"),
    V(wait, "wait for N full scans, or until merging converged"),
    V(tune, "a daemon that drives pages_to_scan, sleep and run: ksmtuned's successor"),
    {"estimate", ksmctl_estimate, NULL, "estimate what KSM would save, before enabling it"},
    V(info, "the original ksmctl's one line: flags (run), pages_to_scan, sleep_time"),
};
#undef V
#define NVERBS (sizeof(verbs) / sizeof(verbs[0]))

static const char global_usage[] =
    "usage: ksmctl [GLOBAL OPTIONS] VERB [ARGS...]\n"
    "\n"
    "Global options:\n"
    "  --sysfs-root DIR  read KSM from DIR/kernel/mm/ksm instead of /sys (recorded trees;\n"
    "                    this and the other roots are the kernel's, not for --user)\n"
    "  --proc-root DIR   read processes and meminfo from DIR instead of /proc\n"
    "  --boot-root DIR   read the kernel config from DIR instead of /boot\n"
    "  --user            use samepaged (user-space KSM) instead of the kernel\n"
    "  --socket PATH     samepaged's control socket (implies --user; default\n"
    "                    $SAMEPAGE_SOCKET, $XDG_RUNTIME_DIR/samepaged.sock,\n"
    "                    /run/samepaged.sock)\n"
    "  --version         print the version\n"
    "  -h, --help        this help; VERB --help describes a verb\n"
    "\n"
    "Verbs:\n";

static int print_global_usage(FILE *f, int status)
{
	fputs(global_usage, f);
	for (size_t i = 0; i < NVERBS; i++)
		fprintf(f, "  %-16s %s\n", verbs[i].name, verbs[i].summary);
	fputs("\nExit status: 0 ok, 1 no (not supported, not running, problems found),\n"
	      "2 usage or input error, 3 permission, 4 timeout, 5 refused by the kernel.\n"
	      "See ksmctl(1).\n",
	      f);
	return status;
}

/* The verb's arguments, for verb_usage()'s message. */
static int verb_argc;
static char **verb_argv;

int verb_usage(const char *usage, int status)
{
	char fix[PATH_MAX + 64];

	if (status == KSMCTL_OK) {
		printf("usage: ksmctl %s", usage);
		return status;
	}
	/* getopt_long's '?' (opterr is 0): optind is past the option it
	 * refused; optopt is 0 for an unknown long option, the option's own
	 * value for one that lacks its argument or has one it does not take. */
	const char *bad = optind > 1 && optind <= verb_argc ? verb_argv[optind - 1] : "";
	const char *why = strncmp(bad, "--", 2) || !optopt ? "unknown option"
			  : strchr(bad, '=')		   ? "this option takes no value"
							   : "this option needs a value";

	snprintf(fix, sizeof(fix), "see %s %s --help", opt.self, verb_argv[0]);
	return ksmctl_fail(status, bad, fix, "%s: %s", verb_argv[0], why);
}

int ksm_unavailable(int err, const char *kernel_fix)
{
	char cause[PATH_MAX + 128], fix[PATH_MAX + 128];

	if (!opt.be->explain)
		return ksmctl_fail(KSMCTL_NO, opt.be->where, kernel_fix, "KSM is not available: %s",
				   strerror(-err));
	opt.be->explain(opt.be, err, cause, sizeof(cause), fix, sizeof(fix));
	return ksmctl_fail(err == -EACCES || err == -EPERM ? KSMCTL_PERM : KSMCTL_NO, opt.be->where,
			   fix, "%s", cause);
}

int verb_json_only(int argc, char **argv, const char *usage, bool *json)
{
	static const struct option lo[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c != 'j')
			return verb_usage(usage, KSMCTL_USAGE);
		*json = true;
	}
	if (optind < argc)
		return ksmctl_fail(KSMCTL_USAGE, argv[optind], "it takes no arguments but --json",
				   "%s: unexpected argument", argv[0]);
	return 0;
}

int knob_number(const char *name, long long *out)
{
	char text[128], sel[128];
	int err = opt.be->read(opt.be, name, text, sizeof(text));

	if (err)
		return err;
	if (strcmp(name, "advisor_mode") == 0) {
		knob_selected(text, sel, sizeof(sel));
		*out = strcmp(sel, "scan-time") == 0;
		return 0;
	}
	return parse_ll(text, out);
}

long long knob_or(const char *name, long long def)
{
	long long v;

	return knob_number(name, &v) ? def : v;
}

bool knob_present(const char *name)
{
	char text[128];

	return opt.be->read(opt.be, name, text, sizeof(text)) != -ENOENT;
}

bool others_unseen(void)
{
	return opt.live && !opt.user && geteuid() != 0;
}

void knob_selected(const char *text, char *buf, size_t len)
{
	const char *open = strchr(text, '[');
	const char *close = open ? strchr(open, ']') : NULL;

	if (open && close)
		snprintf(buf, len, "%.*s", (int)(close - open - 1), open + 1);
	else
		snprintf(buf, len, "%s", text);
}

/* Drops argv[i] and the used - 1 words after it. */
static void take_words(int *argc, char **argv, int i, int used)
{
	memmove(&argv[i], &argv[i + used], sizeof(char *) * (size_t)(*argc - i - used + 1));
	*argc -= used;
}

/* The first of --sysfs-root, --proc-root, --boot-root given, if any. */
static const char *root_given;

/* Takes a global option out of argv wherever it appears before the verb's
 * own "--", so "ksmctl status --sysfs-root DIR" works too. */
static int take_global(int *argc, char **argv, int i)
{
	static const struct {
		const char *name;
		const char **dst;
		const char *what;
		bool root; /* a recorded tree: not this machine's; else samepaged's */
	} globals[] = {
	    {"--sysfs-root", &opt.sys_root, "a directory", true},
	    {"--proc-root", &opt.proc_root, "a directory", true},
	    {"--boot-root", &opt.boot_root, "a directory", true},
	    {"--socket", &opt.socket, "a socket path", false},
	};

	for (size_t r = 0; r < sizeof(globals) / sizeof(globals[0]); r++) {
		size_t n = strlen(globals[r].name);
		const char *val = NULL;
		int used = 1;

		if (strncmp(argv[i], globals[r].name, n))
			continue;
		if (argv[i][n] == '=')
			val = argv[i] + n + 1;
		else if (argv[i][n] == '\0' && i + 1 < *argc)
			val = argv[i + 1], used = 2;
		else if (argv[i][n])
			continue;
		if (!val || !*val) {
			char fix[64];
			snprintf(fix, sizeof(fix), "give %s after it", globals[r].what);
			return -ksmctl_fail(KSMCTL_USAGE, argv[i], fix, "%s needs %s",
					    globals[r].name, globals[r].what);
		}
		*globals[r].dst = val;
		if (globals[r].root && !root_given)
			root_given = globals[r].name;
		if (globals[r].root)
			opt.live = false;
		else
			opt.user = true;
		take_words(argc, argv, i, used);
		return 1;
	}
	if (strcmp(argv[i], "--user") == 0) {
		opt.user = true;
		take_words(argc, argv, i, 1);
		return 1;
	}
	return 0;
}

/* A root given on the command line must be a directory: a typo would
 * otherwise read as a machine without KSM or without processes. */
static int check_roots(void)
{
	static const struct {
		const char *option, *const *value, *def, *example;
	} roots[] = {
	    {"--sysfs-root", &opt.sys_root, "/sys", "a recorded tree's sys/"},
	    {"--proc-root", &opt.proc_root, "/proc", "a recorded tree's proc/"},
	    {"--boot-root", &opt.boot_root, "/boot", "a recorded tree's boot/"},
	};

	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
		struct stat st;
		const char *dir = *roots[i].value;
		char fix[128];

		if (dir == roots[i].def || (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)))
			continue;
		snprintf(fix, sizeof(fix), "give an existing directory (%s, or %s)", roots[i].def,
			 roots[i].example);
		return ksmctl_fail(KSMCTL_USAGE, dir, fix, "%s: %s", roots[i].option,
				   stat(dir, &st) ? strerror(errno) : "not a directory");
	}
	return 0;
}

/* Verbs that only the kernel's KSM has, and what to do for samepaged. */
static const struct {
	const char *verb, *why, *fix;
} kernel_only[] = {
    {"install-service",
     "install-service: the unit it installs applies /etc/ksm.conf to the kernel's KSM",
     "for samepaged: systemctl --user enable --now samepaged.socket (its knobs at start: "
     "samepaged --config FILE); or drop --user for the kernel's unit"},
    {"estimate",
     "estimate: it predicts what the kernel's KSM would save from the processes' memory "
     "(samepaged's domains report what they save: ksmctl --user status)",
     "drop --user; for programs run with `ksmctl --user run`, add --all-memory (the kernel "
     "does not see their memory as mergeable)"},
};

static int refuse_kernel_only(const struct verb *v)
{
	for (size_t i = 0; i < sizeof(kernel_only) / sizeof(kernel_only[0]); i++)
		if (strcmp(v->name, kernel_only[i].verb) == 0)
			return ksmctl_fail(KSMCTL_USAGE, "--user", kernel_only[i].fix, "%s",
					   kernel_only[i].why);
	return 0;
}

static const struct verb *find_verb(const char *name)
{
	for (size_t i = 0; i < NVERBS; i++)
		if (strcmp(verbs[i].name, name) == 0)
			return &verbs[i];
	return NULL;
}

/* "VERB --help" anywhere before "--" (for run: right after the verb). */
static bool wants_help(const struct verb *v, int argc, char **argv)
{
	int last = v->run == cmd_run ? (argc > 1 ? 1 : 0) : argc - 1;

	for (int i = 1; i <= last && strcmp(argv[i], "--"); i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return true;
	return false;
}

/* --json given to the verb (verb_argv, up to its "--"), as getopt_long
 * takes it: "--json" or an abbreviation down to "--j".  run's words after
 * the verb are the command's. */
static bool json_wanted;
static const char *json_verb;

static void note_json(const struct verb *v, int argc, char **argv)
{
	for (int i = 1; i < argc && v->run != cmd_run && strcmp(argv[i], "--"); i++) {
		size_t n = strlen(argv[i]);
		if (n >= 3 && strncmp(argv[i], "--json", n) == 0)
			json_wanted = true;
	}
	json_verb = argv[0];
}

static int run_ksmctl(int argc, char **argv)
{
	const struct verb *v = NULL;
	int vi = 0;

	for (int i = 1; i < argc; i++) {
		/* run's arguments after the verb belong to the command. */
		if (strcmp(argv[i], "--") == 0 || (v && v->run == cmd_run))
			break;
		int t = take_global(&argc, argv, i);
		if (t < 0) {
			if (v)
				note_json(v, argc - vi, argv + vi);
			return -t;
		}
		if (t) {
			i--;
			continue;
		}
		if (!v && argv[i][0] != '-') {
			v = find_verb(argv[i]);
			if (!v)
				return ksmctl_fail(KSMCTL_USAGE, argv[i],
						   "run `ksmctl --help` for the verbs",
						   "unknown verb");
			vi = i;
		} else if (!v && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) {
			return print_global_usage(stdout, KSMCTL_OK);
		} else if (!v && strcmp(argv[i], "--version") == 0) {
			printf("ksmctl %s\n", SAMEPAGE_VERSION_STRING);
			return KSMCTL_OK;
		} else if (!v) {
			return ksmctl_fail(KSMCTL_USAGE, argv[i],
					   "run `ksmctl --help` for the options",
					   "unknown global option");
		}
	}
	if (!v)
		return print_global_usage(stderr, KSMCTL_USAGE);
	note_json(v, argc - vi, argv + vi);
	/* The roots are the kernel back-end's (a recorded tree): samepaged is
	 * a live daemon, whose numbers and a tree's would not belong together. */
	if (opt.user && root_given) {
		char fix[128];
		snprintf(fix, sizeof(fix),
			 "leave %s out with --user (samepaged is asked through its socket), or "
			 "drop --user",
			 root_given);
		return ksmctl_fail(KSMCTL_USAGE, root_given, fix,
				   "%s is the kernel back-end's option, not samepaged's (--user)",
				   root_given);
	}
	int bad_root = check_roots();
	if (bad_root)
		return bad_root;
	/* --help before any refusal; a verb without a usage text (estimate)
	 * prints its own. */
	bool help = wants_help(v, argc - vi, argv + vi);
	if (help && !v->usage) {
		char *args[] = {argv[vi], "--help", NULL};
		optind = 0, opterr = 0;
		return v->run(2, args);
	}
	if (v->run == ksmctl_estimate && !opt.live)
		return ksmctl_fail(KSMCTL_USAGE, "--sysfs-root/--proc-root/--boot-root",
				   "leave them out: estimate reads this machine's processes",
				   "estimate: recorded trees hold no process memory to read");
	if (opt.user) {
		static char self[PATH_MAX + 32];
		snprintf(self, sizeof(self), "ksmctl %s%s", opt.socket ? "--socket " : "--user",
			 opt.socket ? opt.socket : "");
		opt.be = backend_samepaged(opt.socket);
		opt.self = self;
	} else {
		opt.be = backend_kernel(opt.sys_root, opt.proc_root);
	}
	if (help)
		return verb_usage(v->usage, KSMCTL_OK);
	int refused = opt.user ? refuse_kernel_only(v) : 0;
	if (refused)
		return refused;
	optind = 0; /* each verb runs getopt_long on its own argv */
	opterr = 0; /* and verb_usage() says what it refused, in ksmctl's shape */
	verb_argc = argc - vi, verb_argv = argv + vi;
	return v->run(argc - vi, argv + vi);
}

/*
 * A verb given --json that failed before writing its JSON (a bad value, a
 * knob the kernel refused, a timeout) still writes a JSON object on stdout,
 * {"verb": ..., "error": {"cause", "input", "fix", "exit_status"}}, from
 * the last ksmctl_fail() (as apply --check --json's "error" member), beside
 * the same message on stderr: a script reading stdout gets something to
 * parse, and the exit status is the verb's.
 */
static void json_failure(int rc)
{
	const struct ksmctl_error *e = ksmctl_last_error();
	struct json j;

	if (rc == KSMCTL_OK || !json_wanted || json_stdout_used())
		return;
	json_init(&j, stdout);
	json_object_begin(&j, NULL);
	json_string(&j, "verb", json_verb);
	json_object_begin(&j, "error");
	json_string(&j, "cause", e->cause[0] ? e->cause : NULL);
	json_string(&j, "input", e->input[0] ? e->input : NULL);
	json_string(&j, "fix", e->fix[0] ? e->fix : NULL);
	json_int(&j, "exit_status", rc);
	json_object_end(&j);
	json_object_end(&j);
}

/* A report that did not reach standard output (a full disk under
 * "> FILE", an I/O error) must not exit 0: a script that installs the file
 * on success (the textfile collector's "> ksm.prom.tmp && mv") would
 * install half a report.  Exit status 1 unless the verb failed already;
 * what a verb changed stays changed. */
static int stdout_written(int rc)
{
	errno = 0;
	if (fflush(stdout) == 0 && !ferror(stdout))
		return rc;
	ksmctl_fail(KSMCTL_NO, "standard output",
		    "make room where it goes, or send it elsewhere; a change the verb made is "
		    "kept",
		    "cannot write the output: %s", errno ? strerror(errno) : "a write failed");
	return rc ? rc : KSMCTL_NO;
}

int main(int argc, char **argv)
{
	/* Each call its own (the fuzzers' seam calls main() many times). */
	json_wanted = false;
	json_verb = NULL;
	json_stdout_reset();
	int rc = run_ksmctl(argc, argv);

	json_failure(rc);
	return stdout_written(rc);
}
