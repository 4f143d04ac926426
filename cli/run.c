// SPDX-License-Identifier: MIT
/*
 * run.c - `ksmctl run -- COMMAND`: runs a program with all its memory
 * mergeable, the whole-process opt-in of prctl(PR_SET_MEMORY_MERGE).
 *
 * The flag is set on ksmctl's own process, then exec'd into COMMAND: the
 * kernel keeps it across fork since 6.4 and across exec since 6.7.  On
 * older kernels the exec would silently drop it, so ksmctl says so and
 * what to do instead, rather than pretend.
 *
 * `ksmctl --user run [--domain NAME] -- COMMAND` runs it on libsamepage
 * instead: LD_PRELOAD=libsamepage-preload.so (lib/preload.c), merge-any,
 * in samepaged's domain NAME or with a private engine.  A program that
 * cannot be preloaded (statically linked, set-user-ID, file capabilities),
 * or a script whose "#!" interpreter cannot, is refused, with the reason.
 */
#include "ksmctl.h"
#include "plan.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "ksmconf.h"

#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#endif

const char usage_run[] =
    "run [--] COMMAND [ARGS...]\n"
    "       ksmctl --user run [--domain NAME] [--no-merge-any] [--set NAME=VALUE]...\n"
    "                         [--] COMMAND [ARGS...]\n"
    "\n"
    "Runs COMMAND with its memory mergeable by KSM (prctl(PR_SET_MEMORY_MERGE),\n"
    "kept across exec since Linux 6.7, inherited by its children).  No root is\n"
    "needed; ksmd must be running (`ksmctl start`) for pages to merge.\n"
    "\n"
    "With --user, COMMAND runs unmodified on libsamepage (LD_PRELOAD of\n"
    "libsamepage-preload.so): its madvise(MADV_MERGEABLE) and prctl go to the\n"
    "library, and every private anonymous mapping is mergeable (merge-any).\n"
    "  --domain NAME     merge with samepaged's domain NAME (its knobs: ksmctl\n"
    "                    --user set); without it, a private engine per process\n"
    "  --no-merge-any    only what COMMAND itself marks mergeable\n"
    "  --set NAME=VALUE  a knob of the private engine (run is 1 unless set)\n"
    "Statically linked and set-user-ID programs, and those given capabilities\n"
    "by their file, cannot be preloaded: refused (exit 1), as are scripts whose\n"
    "\"#!\" interpreter is one (through env NAME or env -S NAME too).\n"
    "\n"
    "The exit status is COMMAND's; 126/127 if it cannot be run.\n";

/* The preload library: $SAMEPAGE_PRELOAD, the build tree's (beside this
 * ksmctl), the installed one where this ksmctl is installed, or where
 * make install put it. */
static bool preload_path(char *buf, size_t len)
{
	const char *env = getenv("SAMEPAGE_PRELOAD");
	char exe[PATH_MAX];
	ssize_t n;
	if (env && *env) {
		snprintf(buf, len, "%s", env);
		return access(buf, R_OK) == 0;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = 0;
			snprintf(buf, len, "%.*s/../lib/libsamepage-preload.so", (int)(len - 40),
				 exe);
			if (access(buf, R_OK) == 0)
				return true;
			snprintf(buf, len, "%.*s/%s", (int)(len / 2), exe,
				 SAMEPAGE_PRELOAD_FROM_BINDIR);
			if (access(buf, R_OK) == 0)
				return true;
		}
	}
	snprintf(buf, len, "%s", SAMEPAGE_PRELOAD_INSTALLED);
	return access(buf, R_OK) == 0;
}

/* The file execvp would run for name: its path in buf, or false (none in
 * PATH).  As glibc's execvp: a name with a slash is that file; otherwise
 * each entry of PATH in turn (confstr's _CS_PATH if PATH is unset), an
 * empty one meaning the current directory (POSIX), and the first regular
 * file there that this user may execute.  A name found only without
 * execute permission (or as a directory) is the first such file: the exec
 * then fails with the shell's reason (EACCES: 126, not 127). */
static bool find_command(const char *name, char *buf, size_t len)
{
	if (!*name)
		return false; /* execvp: ENOENT */
	if (strchr(name, '/')) {
		snprintf(buf, len, "%s", name);
		return true;
	}
	char cs[256], denied[PATH_MAX] = "";
	const char *path = getenv("PATH"), *end;
	if (!path) {
		size_t n = confstr(_CS_PATH, cs, sizeof(cs));
		if (n == 0 || n > sizeof(cs))
			snprintf(cs, sizeof(cs), "/bin:/usr/bin");
		path = cs;
	}
	for (const char *d = path;; d = end + 1) {
		struct stat st;
		end = strchrnul(d, ':');
		int n = (int)(end - d);
		if ((size_t)snprintf(buf, len, "%.*s/%s", n ? n : 1, n ? d : ".", name) < len) {
			bool x = access(buf, X_OK) == 0, no_x = !x && errno == EACCES;
			bool reg = stat(buf, &st) == 0 && S_ISREG(st.st_mode);
			if (x && reg)
				return true;
			if (!*denied && (x || no_x)) /* not a regular file, or not executable */
				snprintf(denied, sizeof(denied), "%s", buf);
		}
		if (!*end)
			break;
	}
	snprintf(buf, len, "%s", denied);
	return *denied;
}

/* A capability set ("CapPrm") in this process's /proc/self/status text: 0
 * when it is missing. */
static uint64_t own_caps(const char *status, const char *name)
{
	const char *v = procfs_find_key(status, name);
	return v ? strtoull(v, NULL, 16) : 0;
}

/* Whether exec'ing file gives this process capabilities it lacks (file
 * capabilities, security.capability): the kernel then runs it in secure
 * mode (AT_SECURE), as a set-user-ID program, and the dynamic linker
 * ignores LD_PRELOAD.  Its permitted set, within the bounding set, beyond
 * what this process has permitted or ambient. */
static bool caps_grow(const char *file)
{
	uint32_t cap[6] = {0}; /* magic_etc, {permitted, inheritable} x 2, rootid */
	ssize_t n = getxattr(file, "security.capability", cap, sizeof(cap));
	if (n < 12)
		return false;
	uint64_t fp = cap[1] | (n >= 20 ? (uint64_t)cap[3] << 32 : 0);
	char status[16384];
	if (procfs_read("/proc/self/status", status, sizeof(status)))
		return false; /* no bounding set read: none to grow within */
	return (fp & own_caps(status, "CapBnd") &
		~(own_caps(status, "CapPrm") | own_caps(status, "CapAmb"))) != 0;
}

/* Why the file itself cannot be preloaded, or NULL: statically linked (an
 * ELF without an interpreter), or set-user/group-ID or given capabilities
 * by the file (the dynamic linker ignores LD_PRELOAD for it).  A script is
 * judged by its interpreter: see not_preloadable. */
static const char *file_not_preloadable(const char *file)
{
	struct stat st;
	if (stat(file, &st) == 0 && (st.st_mode & (S_ISUID | S_ISGID)))
		return "is set-user-ID or set-group-ID: the dynamic linker ignores LD_PRELOAD "
		       "for it";
	if (caps_grow(file))
		return "has file capabilities (security.capability) this user lacks: the "
		       "dynamic linker ignores LD_PRELOAD for it";
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	Elf64_Ehdr eh;
	if (fd < 0)
		return NULL; /* execvp says why */
	bool elf = pread(fd, &eh, sizeof(eh), 0) == (ssize_t)sizeof(eh) &&
		   !memcmp(eh.e_ident, ELFMAG, SELFMAG) && eh.e_ident[EI_CLASS] == ELFCLASS64;
	bool interp = false;
	for (int i = 0; elf && i < eh.e_phnum && !interp; i++) {
		Elf64_Phdr ph;
		if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + (size_t)i * eh.e_phentsize)) !=
		    (ssize_t)sizeof(ph))
			break;
		interp = ph.p_type == PT_INTERP;
	}
	close(fd);
	return elf && !interp ? "is statically linked: LD_PRELOAD cannot reach it" : NULL;
}

/* A script's "#!" line as the kernel reads it (fs/binfmt_script.c): the
 * interpreter's path into interp and its one optional argument (the rest
 * of the line, blanks around it cut) into arg; false if file does not
 * start with "#!" or the line fills the buffer before its interpreter ends. */
static bool shebang(const char *file, char *interp, size_t ilen, char *arg, size_t alen)
{
	char line[256]; /* BINPRM_BUF_SIZE */
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : pread(fd, line, sizeof(line) - 1, 0);
	if (fd >= 0)
		close(fd);
	if (n < 2 || line[0] != '#' || line[1] != '!')
		return false;
	line[n] = 0;
	char *nl = strchr(line, '\n'), *p = line + 2, *end;
	if (nl)
		*nl = 0;
	p += strspn(p, " \t");
	end = p + strcspn(p, " \t");
	if (end == p || (!nl && !*end && (size_t)n == sizeof(line) - 1))
		return false; /* the kernel's ENOEXEC: the path may go on */
	snprintf(interp, ilen, "%.*s", (int)(end - p), p);
	end += strspn(end, " \t");
	size_t k = strlen(end);
	while (k && (end[k - 1] == ' ' || end[k - 1] == '\t'))
		k--;
	snprintf(arg, alen, "%.*s", (int)k, end);
	return true;
}

/* The program "#!/usr/bin/env ARG" runs, from ARG (the rest of the line,
 * one argument): a plain NAME, or "-S [VAR=VALUE...] NAME [ARGS]" (env
 * splits it); "" for anything else (other options: not followed). */
static void env_program(const char *arg, char *name, size_t len)
{
	const char *p = arg;
	*name = 0;
	if (!strncmp(p, "-S", 2) && (p[2] == ' ' || p[2] == '\t')) {
		p += 2;
		for (;;) { /* the assignments env makes first */
			p += strspn(p, " \t");
			size_t w = strcspn(p, " \t");
			if (!memchr(p, '=', w))
				break;
			p += w;
		}
	} else if (strpbrk(p, " \t")) {
		return;
	}
	size_t w = strcspn(p, " \t");
	if (w && *p != '-' && !memchr(p, '=', w) && !memchr(p, '\\', w) && !memchr(p, '$', w))
		snprintf(name, len, "%.*s", (int)w, p);
}

/* Why a program cannot be preloaded, or NULL; culprit is the interpreter
 * the reason is about, or "" when it is about the program itself.  A script
 * runs its "#!" interpreter, which the kernel follows up to 5 scripts deep,
 * and "#!/usr/bin/env NAME" (or env -S NAME ARGS) runs NAME from PATH. */
static const char *not_preloadable(const char *file, char *culprit, size_t len)
{
	char interp[PATH_MAX], arg[256], name[256], next[PATH_MAX] = "";
	snprintf(culprit, len, "%s", file);
	for (int depth = 0; depth < 8; depth++) {
		const char *why = file_not_preloadable(culprit);
		if (why && !depth)
			*culprit = 0;
		if (why)
			return why;
		if (*next) { /* env's NAME, after env itself */
			snprintf(culprit, len, "%s", next);
			*next = 0;
			continue;
		}
		if (!shebang(culprit, interp, sizeof(interp), arg, sizeof(arg)))
			return NULL;
		const char *base = strrchr(interp, '/');
		if (!strcmp(base ? base + 1 : interp, "env")) {
			env_program(arg, name, sizeof(name));
			if (*name && !find_command(name, next, sizeof(next)))
				*next = 0; /* not in PATH: env says so */
		}
		snprintf(culprit, len, "%s", interp);
	}
	return NULL; /* too deep: the exec fails (ELOOP) and says so */
}

/* The socket the program is to reach samepaged at, exported as
 * SAMEPAGE_SOCKET: --socket's, or the caller's $SAMEPAGE_SOCKET, made
 * absolute against the current directory, since a program that changes
 * directory (a daemon, QEMU's -daemonize) would look for a relative one
 * elsewhere.  0, or an exit status (no current directory to resolve
 * it against).  An absolute path too long for a socket's address stays
 * relative, with a warning. */
static int export_socket(const char *cmd)
{
	const char *given = opt.socket ? opt.socket : getenv("SAMEPAGE_SOCKET");
	char cwd[PATH_MAX], full[PATH_MAX * 2];

	if (!given || !*given || given[0] == '/') {
		if (opt.socket)
			setenv("SAMEPAGE_SOCKET", opt.socket, 1);
		return 0;
	}
	if (!getcwd(cwd, sizeof(cwd)))
		return ksmctl_fail(
		    KSMCTL_NO, given,
		    "give the socket's absolute path (--socket /run/user/UID/samepaged.sock)",
		    "run: cannot make the relative socket path absolute: the current "
		    "directory: %s",
		    strerror(errno));
	snprintf(full, sizeof(full), "%s/%s", strcmp(cwd, "/") ? cwd : "", given);
	if (strlen(full) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		ksmctl_warn("run: the socket's absolute path %s is longer than a socket address "
			    "(%zu bytes at most): %s gets the relative %s, which it misses if it "
			    "changes directory (fix: give a shorter absolute path of the socket)",
			    full, sizeof(((struct sockaddr_un *)0)->sun_path) - 1, cmd, given);
		setenv("SAMEPAGE_SOCKET", given, 1);
		return 0;
	}
	setenv("SAMEPAGE_SOCKET", full, 1);
	return 0;
}

/* The rule of a domain's name: lib/control.c's, in samepage_ctl, which
 * ksmctl links; samepage_connect and samepaged apply the same function. */
bool domain_name_ok(const char *name);

/* ksmctl --user run. */
static int run_user(int argc, char **argv)
{
	const char *domain = NULL;
	static struct plan knobs; /* the private engine's --set, checked */
	char spec[1024] = "", preload[PATH_MAX], file[PATH_MAX], env[PATH_MAX + 64];
	bool any = true;
	int i = 1, ret;
	for (; i < argc && strcmp(argv[i], "--"); i++) {
		if ((!strcmp(argv[i], "--domain") || !strcmp(argv[i], "--set")) && i + 1 >= argc) {
			return ksmctl_fail(
			    KSMCTL_USAGE, argv[i],
			    !strcmp(argv[i], "--set") ? "--set pages_to_scan=20000 -- myprogram"
						      : "--domain vms -- myprogram",
			    "run: %s needs %s", argv[i],
			    !strcmp(argv[i], "--set") ? "NAME=VALUE" : "a domain's name");
		} else if (!strcmp(argv[i], "--domain")) {
			domain = argv[++i];
		} else if (!strcmp(argv[i], "--no-merge-any")) {
			any = false;
		} else if (!strcmp(argv[i], "--set")) {
			/* Checked as `ksmctl set` checks its arguments (plan_add). */
			char name[64], *eq = strchr(argv[++i], '=');
			if (!eq || eq == argv[i] || (size_t)(eq - argv[i]) >= sizeof(name))
				return ksmctl_fail(KSMCTL_USAGE, argv[i],
						   "give NAME=VALUE: --set pages_to_scan=20000",
						   "run: --set %s: not NAME=VALUE", argv[i]);
			snprintf(name, sizeof(name), "%.*s", (int)(eq - argv[i]), argv[i]);
			if ((ret = plan_add(&knobs, name, eq + 1, "--set")))
				return ret;
		} else if (argv[i][0] == '-') {
			return ksmctl_fail(KSMCTL_USAGE, argv[i], "see ksmctl --user run --help",
					   "run: unknown option %s", argv[i]);
		} else {
			break; /* the command, without "--" */
		}
	}
	if (i < argc && !strcmp(argv[i], "--"))
		i++;
	if (i >= argc)
		return ksmctl_fail(KSMCTL_USAGE, "run",
				   "give a command: ksmctl --user run --domain vms -- myprogram",
				   "run: no command");
	if (domain && !domain_name_ok(domain))
		return ksmctl_fail(KSMCTL_USAGE, domain,
				   "name the domain with 1 to 64 of A-Za-z0-9._-, not starting "
				   "with a dot: --domain vms",
				   "run: bad domain name");
	/* SAMEPAGE_KNOBS, canonical values: 13 tunables fit in spec. */
	for (int k = 0; k < knobs.n; k++)
		snprintf(spec + strlen(spec), sizeof(spec) - strlen(spec), "%s%s=%s", k ? "," : "",
			 knobs.c[k].k->name, knobs.c[k].value);
	if (domain && knobs.n)
		return ksmctl_fail(
		    KSMCTL_USAGE, spec,
		    "set the domain's knobs with `ksmctl --user set`, or drop --domain "
		    "for a private engine",
		    "run: --set is for a private engine; domain %s uses samepaged's knobs", domain);
	if ((ret = export_socket(argv[i])))
		return ret;
	/* The rules between knobs, as `set` and `apply` check them (the
	 * engine would refuse pages_to_scan under the advisor once the
	 * program runs, and merge at the advisor's rate instead). */
	static struct ksmconf_file conf;
	struct ksmconf_error cerr;
	conf.n = knobs.n;
	for (int k = 0; k < knobs.n; k++) {
		conf.e[k] = (struct ksmconf_entry){.knob = knobs.c[k].k, .v = knobs.c[k].v};
		snprintf(conf.e[k].value, sizeof(conf.e[k].value), "%s", knobs.c[k].value);
		snprintf(conf.e[k].origin, sizeof(conf.e[k].origin), "%s", knobs.c[k].origin);
	}
	if (ksmconf_check_advisor(&conf, &cerr))
		return ksmctl_fail(KSMCTL_USAGE, cerr.input, cerr.fix, "%s", cerr.cause);
	if (!preload_path(preload, sizeof(preload)))
		return ksmctl_fail(KSMCTL_NO, preload,
				   "reinstall samepage (its package, or make install), or set "
				   "SAMEPAGE_PRELOAD to libsamepage-preload.so",
				   "run: the preload library is missing");
	if (strpbrk(preload, " :"))
		/* The dynamic linker splits LD_PRELOAD at spaces and colons,
		 * with no escape: the program would run without the library. */
		return ksmctl_fail(KSMCTL_NO, preload,
				   "install samepage where its path has no space or colon, or set "
				   "SAMEPAGE_PRELOAD to a link to libsamepage-preload.so at such a "
				   "path",
				   "run: the preload library's path has a space or a colon, which "
				   "LD_PRELOAD cannot name");
	/* No samepaged at this socket yet: said once the program is found. */
	char no_daemon[108] = "";
	bool no_daemon_system = false;
	if (domain) {
		char reply[256], sock[108] = "";
		if (opt.socket)
			snprintf(sock, sizeof(sock), "%s", opt.socket);
		else
			samepage_socket_path(sock, sizeof(sock));
		char may_req[80];
		snprintf(may_req, sizeof(may_req), "MAY %s", domain);
		int err = samepage_control(opt.socket, "GET run", reply, sizeof(reply));
		/* /run/samepaged.sock (no $XDG_RUNTIME_DIR) is the system unit's. */
		bool system = !strcmp(sock, "/run/samepaged.sock");
		/* No daemon yet: said below, and the program runs. */
		if (err == -ENOENT || err == -ECONNREFUSED) {
			snprintf(no_daemon, sizeof(no_daemon), "%s", sock);
			no_daemon_system = system;
		} else if (err)
			return ksmctl_fail(err == -EACCES ? KSMCTL_PERM : KSMCTL_NO, sock,
					   "start samepaged as this user, or give its socket with "
					   "--socket PATH",
					   "run: samepaged at %s: %s", sock,
					   samepage_strerror(err));
		/* A tenant of samepaged (--allow-user USER:DOMAINS) may join
		 * only its domains: said now, not by the program's first line.
		 * A daemon of before MAY answers EINVAL: HELLO decides then. */
		char answer[256] = "";
		int may = err ? 0 : samepage_control(opt.socket, may_req, answer, sizeof(answer));
		if (may == -EACCES) {
			const char *why = strncmp(answer, "ERR ", 4) ? answer : answer + 4;
			why += strspn(why, "0123456789 ");
			/* The daemon's text ends with the errno's general words,
			 * which name other causes: the text before says it. */
			char *general = strstr(answer, samepage_strerror(may));
			if (general && general - answer >= 2 && general[-2] == ':')
				general[-2] = '\0';
			return ksmctl_fail(KSMCTL_PERM, domain,
					   "run with a domain samepaged's --allow-user gives this "
					   "user, or ask its administrator for this one",
					   "run: samepaged at %s refuses domain %s: %s", sock,
					   domain, why);
		}
		if (!err && !strstr(reply, "run 1"))
			ksmctl_warn("samepaged is not merging (run is not 1): nothing merges until "
				    "`%s set run=1`",
				    opt.self);
	}
	if (!*argv[i])
		return ksmctl_fail(127, "\"\"", "give the command's name or path",
				   "run: the command's name is empty");
	if (!find_command(argv[i], file, sizeof(file)))
		return ksmctl_fail(127, argv[i], "check the command's name and PATH",
				   "run: %s: not found in PATH", argv[i]);
	char culprit[PATH_MAX];
	const char *why = not_preloadable(file, culprit, sizeof(culprit));
	if (why && !*culprit)
		return ksmctl_fail(
		    KSMCTL_NO, file,
		    "link it with libsamepage (samepage_connect, samepage_merge_any), "
		    "or use the kernel's KSM: ksmctl run",
		    "run: %s cannot run on libsamepage: it %s", argv[i], why);
	if (why)
		return ksmctl_fail(KSMCTL_NO, file,
				   "run it with an interpreter that can be preloaded, or use the "
				   "kernel's KSM: ksmctl run",
				   "run: %s cannot run on libsamepage: its interpreter %s %s",
				   argv[i], culprit, why);
	/* No daemon yet (the program starts first, or samepaged is being
	 * restarted): the program runs, and the preload library joins the
	 * domain when samepaged starts (samepage(3)).  As with the kernel's
	 * KSM, merging never keeps a program from starting. */
	if (*no_daemon)
		ksmctl_warn("no samepaged listens at %s: %s runs without merging and joins domain "
			    "%s when samepaged starts there (fix: start samepaged (systemctl %s"
			    "start samepaged.socket%s), or give its socket with --socket PATH)",
			    no_daemon, argv[i], domain, no_daemon_system ? "" : "--user ",
			    no_daemon_system ? ", as root" : "");
	/* Said here, with the systemctl line: the preload library, which
	 * would say it again from inside the program, keeps quiet. */
	if (*no_daemon)
		setenv("SAMEPAGE_WAIT_SAID", "1", 1);
	else
		unsetenv("SAMEPAGE_WAIT_SAID");
	const char *old = getenv("LD_PRELOAD");
	snprintf(env, sizeof(env), "%s%s%s", preload, old && *old ? ":" : "", old ? old : "");
	setenv("LD_PRELOAD", env, 1);
	if (domain)
		setenv("SAMEPAGE_DOMAIN", domain, 1);
	else
		unsetenv("SAMEPAGE_DOMAIN");
	setenv("SAMEPAGE_MERGE_ANY", any ? "1" : "0", 1);
	if (knobs.n)
		setenv("SAMEPAGE_KNOBS", spec, 1);
	else
		unsetenv("SAMEPAGE_KNOBS"); /* the private engine's are --set's */
	execv(file, argv + i);
	int err = errno;
	if (err == ENOEXEC) {
		/* A script without "#!": the shell runs it, as execvp and the
		 * shell itself do (and `ksmctl run`). */
		int n = argc - i;
		char **sh = calloc((size_t)n + 2, sizeof(*sh));
		if (sh) {
			sh[0] = "/bin/sh";
			sh[1] = file;
			memcpy(sh + 2, argv + i + 1, (size_t)n * sizeof(*sh)); /* with NULL */
			execv(sh[0], sh);
			free(sh);
		}
		errno = err;
	}
	ksmctl_fail(err == ENOENT ? 127 : 126, argv[i], "check the command's name and PATH",
		    "run: cannot execute: %s", strerror(err));
	return err == ENOENT ? 127 : 126;
}

int cmd_run(int argc, char **argv)
{
	char release[128] = "";
	int first = 1;

	if (opt.user)
		return run_user(argc, argv);
	if (first < argc && strncmp(argv[first], "--domain", 8) == 0)
		return ksmctl_fail(
		    KSMCTL_USAGE, argv[first],
		    "a domain is samepaged's: ksmctl --user run --domain NAME -- PROGRAM",
		    "run: --domain needs --user");
	if (first < argc && argv[first][0] == '-' && strcmp(argv[first], "--") != 0)
		return ksmctl_fail(KSMCTL_USAGE, argv[first],
				   "put -- before the command: ksmctl run -- PROGRAM ARGS...",
				   "run: unknown option");
	if (first < argc && strcmp(argv[first], "--") == 0)
		first++;
	if (first >= argc)
		return ksmctl_fail(KSMCTL_USAGE, "run", "give a command: ksmctl run -- myprogram",
				   "run: no command");
	host_release(release, sizeof(release));
	if (prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0)) {
		int err = errno;
		return ksmctl_fail(
		    KSMCTL_NO, argv[first],
		    "use a kernel with CONFIG_KSM=y, 6.4 or later (6.7+ to keep it "
		    "across exec); or make the program call madvise(MADV_MERGEABLE) on "
		    "its memory, or preload a madvise shim such as ksm_preload",
		    "run: this kernel (Linux %s) refuses prctl(PR_SET_MEMORY_MERGE): %s", release,
		    strerror(err));
	}
	if (version_cmp(release, "6.7") < 0)
		return ksmctl_fail(
		    KSMCTL_NO, argv[first],
		    "use Linux 6.7 or later, or make the program call "
		    "prctl(PR_SET_MEMORY_MERGE, 1) or madvise(MADV_MERGEABLE) itself",
		    "run: this kernel (Linux %s) drops the merge flag at exec", release);
	if (knob_or("run", 1) != 1)
		ksmctl_warn("ksmd is not running (run = %lld): nothing merges until `ksmctl start`",
			    knob_or("run", 0));
	execvp(argv[first], argv + first);
	int err = errno;
	ksmctl_fail(err == ENOENT ? 127 : 126, argv[first], "check the command's name and PATH",
		    "run: cannot execute: %s", strerror(err));
	return err == ENOENT ? 127 : 126;
}
