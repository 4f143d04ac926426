// SPDX-License-Identifier: MIT
/*
 * preload.c - libsamepage for programs that were not written for it.
 *
 *   LD_PRELOAD=libsamepage-preload.so PROGRAM ARGS...
 *
 * (what `ksmctl --user run` does).  The program's madvise(MADV_MERGEABLE /
 * MADV_UNMERGEABLE) and prctl(PR_SET_MEMORY_MERGE / PR_GET_MEMORY_MERGE)
 * go to libsamepage instead of the kernel's KSM; its mmap, munmap, mremap,
 * mprotect, madvise, mlock and reading calls are interposed as for any
 * program linked with the library.  The environment says the rest:
 *
 *   SAMEPAGE_DOMAIN     merge with the processes of this samepaged domain
 *                       (samepage_connect); unset, a private engine
 *   SAMEPAGE_MERGE_ANY  1: every private anonymous mapping is mergeable from
 *                       the start (merge-any), as prctl(PR_SET_MEMORY_MERGE);
 *                       0 or unset: what the program marks
 *   SAMEPAGE_KNOBS      a private engine's knobs: "name=value,name=value"
 *                       (run is 1 unless it says otherwise); with a domain,
 *                       the knobs are the daemon's (ksmctl --user set)
 *   SAMEPAGE_SOCKET     samepaged's socket (samepage_socket_path)
 *   SAMEPAGE_WAIT_SAID  1: `ksmctl --user run` already said that no
 *                       samepaged answers; the process does not say it again
 *
 * With a domain and no samepaged answering yet (the program started first,
 * or during a restart), the process waits for it: what the program marks
 * meanwhile (MADV_MERGEABLE ranges, merge-any) is remembered, samepaged is
 * asked every WAIT_RETRY_S seconds from a thread of the library's, and the
 * process joins the domain with it when it answers.
 *
 * The environment goes to children and exec'd programs, as the kernel keeps
 * merge-any across fork and exec (6.7+): a forked child opens its own
 * engine at its first interposed call, with the parent's ranges.  A
 * process that opens /dev/kvm is refused it unless merge windows use
 * userfaultfd for kernel-mode faults: KVM writes guest memory from the
 * kernel, and only that window makes it wait.
 */
#include "internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#define PR_GET_MEMORY_MERGE 68
#endif

#define EXPORT __attribute__((visibility("default")))

static pthread_mutex_t preload_lock = PTHREAD_MUTEX_INITIALIZER;
static samepage_t *engine;
static bool engine_failed;
static struct samepage *parent_engine; /* a forked child's copy of its parent's */

/* Waiting for samepaged (see the top): what the program marked meanwhile,
 * under preload_lock. */
#define WAIT_RETRY_S 2
#define WAIT_MARKS 256
static bool waiting, waiter_started, wait_any;
static struct {
	uintptr_t start, end;
} marks[WAIT_MARKS];
static size_t nmarks;
static bool marks_lost; /* more ranges than WAIT_MARKS: said once */

/* SAMEPAGE_KNOBS: "name=value,name=value" (spaces allowed as separators). */
static void apply_knobs(samepage_t *sp, const char *spec)
{
	char buf[1024], *save = NULL;
	snprintf(buf, sizeof(buf), "%s", spec);
	for (char *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		char *eq = strchr(tok, '=');
		int err = eq ? (*eq = 0, samepage_write(sp, tok, eq + 1)) : -EINVAL;
		if (err)
			prim_say("samepage: SAMEPAGE_KNOBS: %s%s%s: %s (fix: name=value pairs of "
				 "samepage(3)'s knobs)\n",
				 tok, eq ? "=" : "", eq ? eq + 1 : "", samepage_strerror(err));
	}
}

static samepage_t *preload_engine_locked(void);

/* The range [start, end) marked (MADV_MERGEABLE) or unmarked while
 * waiting: the remembered ranges are kept apart and sorted by nothing;
 * an unmark cuts them. */
static void wait_mark(uintptr_t start, uintptr_t end, bool on)
{
	size_t n = nmarks;
	for (size_t i = 0; i < n; i++) {
		uintptr_t s = marks[i].start, e = marks[i].end;
		if (e <= start || s >= end)
			continue;
		/* Take the overlap out of the kept range: what remains on
		 * either side stays (the right side at the end of the list). */
		marks[i].end = s < start ? start : s;
		if (e > end) {
			if (nmarks < WAIT_MARKS)
				marks[nmarks++] = (typeof(marks[0])){end, e};
			else
				marks_lost = true;
		}
	}
	size_t k = 0; /* drop the emptied ones */
	for (size_t i = 0; i < nmarks; i++)
		if (marks[i].end > marks[i].start)
			marks[k++] = marks[i];
	nmarks = k;
	if (!on)
		return;
	if (nmarks < WAIT_MARKS)
		marks[nmarks++] = (typeof(marks[0])){start, end};
	else
		marks_lost = true;
}

/* The library's thread that asks samepaged every WAIT_RETRY_S seconds and,
 * when it answers, joins the domain with what the program marked. */
static void *waiter(void *arg)
{
	(void)arg;
	/* The program's signals are not ours; this thread's own faults are
	 * (merge-any's guarded reads of the program's memory, once joined:
	 * blocked, a fault there killed the program). */
	sigset_t all;
	prim_sigset_async(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	prim_thread_mine(true);
	for (;;) {
		sleep(WAIT_RETRY_S);
		int status;
		if (prim_program_gone(&status))
			prim_end_as_program(status); /* no thread of the program left */
		pthread_mutex_lock(&preload_lock);
		if (!waiting) { /* joined meanwhile (by a program call), or forked away */
			pthread_mutex_unlock(&preload_lock);
			prim_thread_mine(false);
			return NULL;
		}
		engine_failed = false;
		samepage_t *sp = preload_engine_locked();
		if (sp) {
			/* Under the lock, so that no call of the program's
			 * comes between (an unmark must come after the marks). */
			if (wait_any)
				samepage_merge_any(sp, 1);
			for (size_t i = 0; i < nmarks; i++)
				samepage_madvise(sp, (void *)marks[i].start,
						 marks[i].end - marks[i].start, SAMEPAGE_MERGEABLE);
			if (marks_lost)
				prim_say(
				    "samepage: the program marked more than %d ranges mergeable "
				    "while it waited for samepaged: the first %d are merged\n",
				    WAIT_MARKS, WAIT_MARKS);
			nmarks = 0;
			prim_say("samepage: joined samepaged's domain %s\n",
				 getenv("SAMEPAGE_DOMAIN"));
		}
		pthread_mutex_unlock(&preload_lock);
		if (sp) {
			prim_thread_mine(false);
			return NULL;
		}
	}
}

/* No samepaged yet: wait for it.  Locked by the caller. */
static void wait_for_daemon_locked(void)
{
	waiting = true;
	if (waiter_started)
		return;
	pthread_t t;
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	waiter_started = pthread_create(&t, &a, waiter, NULL) == 0;
	pthread_attr_destroy(&a);
	if (waiter_started)
		pthread_setname_np(t, "samepage-wait");
	else
		waiting = false; /* as before: without merging */
}

/* The process's engine, made at the first need.  Locked by the caller. */
static samepage_t *preload_engine_locked(void)
{
	if (engine || engine_failed)
		return engine;
	const char *domain = getenv("SAMEPAGE_DOMAIN"), *knobs = getenv("SAMEPAGE_KNOBS");
	int err;
	if (domain && *domain) {
		err = samepage_connect(&engine, domain);
		if (err == -EINVAL) {
			prim_say(
			    "samepage: cannot join domain %.80s: not a domain name (fix: set "
			    "SAMEPAGE_DOMAIN to 1 to 64 of A-Za-z0-9._-, not starting with a dot); "
			    "this process runs without merging\n",
			    domain);
		} else if (err) {
			char path[108] = "";
			samepage_socket_path(path, sizeof(path));
			/* Not running there, or it answered and refused (its
			 * log says why). */
			bool absent = err == -ENOENT || err == -ECONNREFUSED || err == -ENOTCONN;
			/* Of another samepage version: it may be restarted from
			 * this one (an upgrade), so the process asks again. */
			bool other = err == -EPROTONOSUPPORT;
			const char *said = getenv("SAMEPAGE_WAIT_SAID");
			if (other && !waiting)
				prim_say(
				    "samepage: samepaged at %s is of another samepage version than "
				    "this library (the layouts of their shared files differ): this "
				    "process merges nothing until a samepaged of its version "
				    "answers "
				    "there, and joins domain %s then (fix: restart samepaged from "
				    "this version)\n",
				    path, domain);
			else if (absent && !waiting && !(said && *said == '1'))
				prim_say(
				    "samepage: samepaged is not running at %s (%s): this process "
				    "merges nothing until it starts there, and joins domain %s "
				    "then (fix: start samepaged, or set SAMEPAGE_SOCKET)\n",
				    path, strerror(-err), domain);
			else if (err == -ENOMEM)
				prim_say(
				    "samepage: cannot join domain %s of samepaged at %s: this "
				    "process cannot map the domain's files (about 64 GiB of "
				    "address "
				    "space, not memory) (fix: lift its address-space limit: ulimit "
				    "-v, systemd's LimitAS=); this process runs without merging\n",
				    domain, path);
			else if (err == -ENOSPC)
				prim_say(
				    "samepage: cannot join domain %s of samepaged at %s: its state "
				    "directory's filesystem is full (fix: make room there, or give "
				    "samepaged a larger tmpfs with --state-dir); this process runs "
				    "without merging\n",
				    domain, path);
			else if (err == -EACCES)
				prim_say(
				    "samepage: cannot join domain %s of samepaged at %s: refused "
				    "(EACCES): samepaged's --allow-user does not give this user "
				    "that "
				    "domain, or the daemon is another user's, which this process "
				    "does not trust (fix: a domain samepaged allows this user; its "
				    "log says which); this process runs without merging\n",
				    domain, path);
			else if (!absent && !other)
				prim_say(
				    "samepage: cannot join domain %s of samepaged at %s: %s (fix: "
				    "samepaged refused it: its log says why); this process runs "
				    "without merging\n",
				    domain, path, samepage_strerror(err));
			if (absent || other)
				wait_for_daemon_locked();
			else
				waiting = false; /* refused: asking again would not help */
		} else if (knobs && *knobs) {
			prim_say(
			    "samepage: SAMEPAGE_KNOBS ignored: domain %s uses samepaged's knobs "
			    "(ksmctl --user set)\n",
			    domain);
		}
	} else {
		err = samepage_open(&engine);
		uint64_t limit = err == -ENOMEM ? as_limit() : 0;
		if (limit) /* RELIABILITY.md 79 */
			prim_say("samepage: cannot open an engine: the address-space limit "
				 "(RLIMIT_AS, ulimit -v: %llu KiB) leaves no room for its pool and "
				 "index (about 20 MiB at least); this process runs without merging "
				 "(fix: raise the limit, ulimit -v or systemd's LimitAS=, or run "
				 "without ksmctl --user run)\n",
				 (unsigned long long)(limit >> 10));
		else if (err)
			prim_say("samepage: cannot open an engine: %s; this process runs without "
				 "merging\n",
				 samepage_strerror(err));
		else {
			samepage_write(engine, "run", "1");
			if (knobs && *knobs)
				apply_knobs(engine, knobs);
		}
	}
	engine_failed = !engine;
	if (engine)
		waiting = false;
	return engine;
}

/* MADV_MERGEABLE / MADV_UNMERGEABLE from the program (interpose.c). */
static int preload_madvise(void *addr, size_t len, int advice)
{
	pthread_mutex_lock(&preload_lock);
	samepage_t *sp = preload_engine_locked();
	if (!sp && waiting) { /* remembered for when samepaged answers */
		uintptr_t a = (uintptr_t)addr;
		int err = a % PAGE_SIZE || a + len < a ? -EINVAL : 0;
		if (!err)
			wait_mark(a, (a + len + PAGE_SIZE - 1) & ~(uintptr_t)(PAGE_SIZE - 1),
				  advice == SAMEPAGE_MERGEABLE);
		pthread_mutex_unlock(&preload_lock);
		return err;
	}
	pthread_mutex_unlock(&preload_lock);
	return sp ? samepage_madvise(sp, addr, len, advice) : -EAGAIN;
}

/* ---- fork ---- */

/* The ranges a forked child's parent had mergeable (its engine's regions,
 * less what was unmarked): to the child's engine, or, while the child
 * waits for samepaged, to what it marks when samepaged answers (under
 * preload_lock then). */
static void carry_parent_ranges(const struct samepage *old, samepage_t *sp)
{
	for (size_t ri = 0; ri < old->nregions; ri++) {
		const struct region *r = &old->regions[ri];
		for (size_t i = 0; i < r->npages;) {
			size_t j = i;
			while (j < r->npages && !(r->meta[j].flags & PM_OFF))
				j++;
			if (j > i && sp)
				samepage_madvise(sp, (void *)region_addr(r, i),
						 (j - i) << PAGE_SHIFT, SAMEPAGE_MERGEABLE);
			else if (j > i)
				wait_mark(region_addr(r, i), region_addr(r, j), true);
			i = j + 1;
		}
	}
}

/* In a forked child, at its first interposed call: an engine of its own,
 * with what its parent had mergeable (the kernel keeps VM_MERGEABLE and
 * merge-any across fork); if samepaged is away, that is what the child
 * joins with when it answers. */
static void child_engine(void)
{
	pthread_mutex_lock(&preload_lock);
	struct samepage *old = parent_engine;
	parent_engine = NULL;
	samepage_t *sp = old ? preload_engine_locked() : NULL;
	if (old && !sp && waiting) {
		wait_any = old->merge_any;
		carry_parent_ranges(old, NULL);
	}
	pthread_mutex_unlock(&preload_lock);
	if (!sp)
		return;
	if (old->merge_any)
		samepage_merge_any(sp, 1);
	carry_parent_ranges(old, sp);
	/* The parent's engine stays as it was: its copy here is inert. */
}

/* fork: preload_lock is held across it, so that the child finds it free
 * and no engine half made.  It comes before every lock of fork.c's (an
 * engine is made under it), so its handler is registered after fork.c's:
 * prepare handlers run last registered first. */
static void preload_fork_prepare(void)
{
	pthread_mutex_lock(&preload_lock);
}

static void preload_fork_parent(void)
{
	pthread_mutex_unlock(&preload_lock);
}

/* A forked child of a process waiting for samepaged waits too, with a
 * thread of its own (the parent's is not copied), made at its first
 * interposed call. */
static void child_wait(void)
{
	pthread_mutex_lock(&preload_lock);
	if (waiting && !engine) {
		engine_failed = false;
		preload_engine_locked();
	}
	pthread_mutex_unlock(&preload_lock);
}

static void preload_fork_child(void)
{
	pthread_mutex_unlock(&preload_lock);
	waiter_started = false; /* the parent's (if any) is not copied */
	if (!engine && waiting) {
		interpose_pending = child_wait;
		return;
	}
	if (!engine)
		return;
	parent_engine = engine;
	engine = NULL;
	engine_failed = false;
	interpose_pending = child_engine;
}

/* ---- start ---- */

static void exec_keep_init(void);

__attribute__((constructor)) static void preload_init(void)
{
	interpose_merge_advice = preload_madvise;
	exec_keep_init();
	fork_init();
	pthread_atfork(preload_fork_prepare, preload_fork_parent, preload_fork_child);
	/* The environment's values as samepage(3) lists them; another is said
	 * once (here, at the start) and taken as unset. */
	const char *any = getenv("SAMEPAGE_MERGE_ANY");
	if (any && *any && strcmp(any, "1") && strcmp(any, "0"))
		prim_say(
		    "samepage: SAMEPAGE_MERGE_ANY=%.40s: neither 1 nor 0 (fix: 1 for merge-any "
		    "from "
		    "the start, 0 or unset for only what the program marks mergeable); merge-any "
		    "is off\n",
		    any);
	guard_window_env_check();
	if (any && !strcmp(any, "1")) {
		pthread_mutex_lock(&preload_lock);
		samepage_t *sp = preload_engine_locked();
		if (!sp && waiting)
			wait_any = true; /* when samepaged answers */
		pthread_mutex_unlock(&preload_lock);
		if (sp)
			samepage_merge_any(sp, 1);
	}
}

/* ---- exec ---- */

/*
 * The kernel keeps merge-any across exec (6.7+), whatever the environment
 * the program passes; this library stays on by the environment only
 * (LD_PRELOAD and SAMEPAGE_*).  A program that execs another with an
 * environment of its own (env -i, Python's subprocess with env=, Java's
 * ProcessBuilder after environment().clear(), execle) dropped it, and the
 * program it ran merged nothing.  So every exec and posix_spawn passes an
 * environment that keeps them: LD_PRELOAD with this library first, and
 * the SAMEPAGE_* values this process started with where the environment
 * has none, SAMEPAGE_MERGE_ANY being merge-any's state now, as the
 * kernel's is the state at the exec.  Built on the stack, not with
 * malloc: an exec after vfork() runs in the parent's memory.
 */
static const char *const kept_names[] = {"SAMEPAGE_DOMAIN", "SAMEPAGE_SOCKET", "SAMEPAGE_KNOBS",
					 "SAMEPAGE_WINDOW", "SAMEPAGE_WAIT_SAID"};
#define KEPT_N (sizeof(kept_names) / sizeof(kept_names[0]))
static char *kept_values[KEPT_N]; /* "NAME=value", as the process started */
static char self_path[4096];	  /* this library's file */
static bool exec_keep;		  /* both known: exec keeps them */

static void exec_keep_init(void)
{
	Dl_info info;
	if (!dladdr((void *)exec_keep_init, &info) || !info.dli_fname || info.dli_fname[0] != '/' ||
	    strpbrk(info.dli_fname, " :") || strlen(info.dli_fname) >= sizeof(self_path))
		return;
	strcpy(self_path, info.dli_fname);
	for (size_t i = 0; i < KEPT_N; i++) {
		const char *v = getenv(kept_names[i]);
		size_t len = strlen(kept_names[i]) + (v ? strlen(v) : 0) + 2;
		if (v && (kept_values[i] = lib_calloc(1, len)))
			snprintf(kept_values[i], len, "%s=%s", kept_names[i], v);
	}
	exec_keep = true;
}

/* Without a lock: an exec after vfork() runs beside the parent's threads
 * (and the parent's engine is the child's memory's). */
static bool merge_any_now(void)
{
	struct samepage *e = engine ? engine : parent_engine; /* a forked child's */
	return e ? e->merge_any : wait_any;
}

static size_t env_count(char *const *envp)
{
	size_t n = 0;
	while (envp && envp[n])
		n++;
	return n;
}

static bool named(const char *entry, const char *name)
{
	size_t len = strlen(name);
	return !strncmp(entry, name, len) && entry[len] == '=';
}

/* envp with what keeps the program on this library, into out (room for
 * env_count(envp) + KEPT_N + 3 entries) and ld (the LD_PRELOAD entry);
 * envp itself if this library's path is unknown. */
static char *const *env_keep(char *const *envp, char **out, char *ld, size_t ldlen, char *any)
{
	if (!exec_keep)
		return envp;
	size_t n = 0;
	bool has[KEPT_N] = {false}, preload = false;
	for (size_t i = 0; envp && envp[i]; i++) {
		const char *e = envp[i];
		if (named(e, "SAMEPAGE_MERGE_ANY"))
			continue; /* said below, as it is now */
		if (named(e, "LD_PRELOAD")) {
			preload = true;
			const char *v = e + 11;
			size_t k = strlen(self_path);
			/* Already first (ksmctl's, inherited): as it is. */
			if (!strncmp(v, self_path, k) && (v[k] == 0 || v[k] == ':' || v[k] == ' '))
				out[n++] = (char *)e;
			else if ((size_t)snprintf(ld, ldlen, "LD_PRELOAD=%s%s%s", self_path,
						  *v ? ":" : "", v) < ldlen)
				out[n++] = ld;
			else
				out[n++] = (char *)e; /* too long to change: as it is */
			continue;
		}
		for (size_t k = 0; k < KEPT_N; k++)
			has[k] |= named(e, kept_names[k]);
		out[n++] = (char *)e;
	}
	if (!preload) {
		snprintf(ld, ldlen, "LD_PRELOAD=%s", self_path);
		out[n++] = ld;
	}
	for (size_t k = 0; k < KEPT_N; k++)
		if (!has[k] && kept_values[k])
			out[n++] = kept_values[k];
	strcpy(any, merge_any_now() ? "SAMEPAGE_MERGE_ANY=1" : "SAMEPAGE_MERGE_ANY=0");
	out[n++] = any;
	out[n] = NULL;
	return out;
}

#define KEEP_ENV(envp, kept)                                                                       \
	char *kept##_arr[env_count(envp) + KEPT_N + 3], kept##_ld[8192], kept##_any[24];           \
	char *const *kept = env_keep(envp, kept##_arr, kept##_ld, sizeof(kept##_ld), kept##_any)

typedef int (*execve_fn)(const char *, char *const[], char *const[]);
typedef int (*fexecve_fn)(int, char *const[], char *const[]);
typedef int (*spawn_fn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			const posix_spawnattr_t *, char *const[], char *const[]);
static void *_Atomic real_execve, *_Atomic real_execvpe, *_Atomic real_fexecve, *_Atomic real_spawn,
    *_Atomic real_spawnp;

static int raw_execve(const char *path, char *const argv[], char *const envp[])
{
	return (int)prim_syscall(SYS_execve, path, argv, envp);
}

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	KEEP_ENV(envp, env);
	return ((execve_fn)interpose_next("execve", &real_execve, (void *)raw_execve))(path, argv,
										       env);
}

EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	KEEP_ENV(envp, env);
	execve_fn f = (execve_fn)interpose_next("execvpe", &real_execvpe, NULL);
	if (!f) {
		errno = ENOSYS;
		return -1;
	}
	return f(file, argv, env);
}

EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	KEEP_ENV(envp, env);
	fexecve_fn f = (fexecve_fn)interpose_next("fexecve", &real_fexecve, NULL);
	if (!f) {
		errno = ENOSYS;
		return -1;
	}
	return f(fd, argv, env);
}

EXPORT int execv(const char *path, char *const argv[])
{
	return execve(path, argv, environ);
}

EXPORT int execvp(const char *file, char *const argv[])
{
	return execvpe(file, argv, environ);
}

/* execl, execlp and execle: their arguments, on the stack. */
#define EXEC_LIST(arg0, ap, argv, then)                                                            \
	size_t argc_ = 1;                                                                          \
	va_start(ap, arg0);                                                                        \
	while (va_arg(ap, char *))                                                                 \
		argc_++;                                                                           \
	va_end(ap);                                                                                \
	char *argv[argc_ + 1];                                                                     \
	argv[0] = (char *)arg0;                                                                    \
	va_start(ap, arg0);                                                                        \
	for (size_t i_ = 1; i_ <= argc_; i_++)                                                     \
		argv[i_] = va_arg(ap, char *);                                                     \
	then;                                                                                      \
	va_end(ap)

EXPORT int execl(const char *path, const char *arg0, ...)
{
	va_list ap;
	EXEC_LIST(arg0, ap, argv, (void)0);
	return execve(path, argv, environ);
}

EXPORT int execlp(const char *file, const char *arg0, ...)
{
	va_list ap;
	EXEC_LIST(arg0, ap, argv, (void)0);
	return execvpe(file, argv, environ);
}

EXPORT int execle(const char *path, const char *arg0, ...)
{
	va_list ap;
	char *const *envp;
	EXEC_LIST(arg0, ap, argv, envp = va_arg(ap, char *const *));
	return execve(path, argv, envp);
}

static int spawn(void *_Atomic *cache, const char *name, pid_t *pid, const char *path,
		 const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *attr,
		 char *const argv[], char *const envp[])
{
	KEEP_ENV(envp, env);
	spawn_fn f = (spawn_fn)interpose_next(name, cache, NULL);
	return f ? f(pid, path, fa, attr, argv, env) : ENOSYS;
}

EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
		       const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	return spawn(&real_spawn, "posix_spawn", pid, path, fa, attr, argv, envp);
}

EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
			const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	return spawn(&real_spawnp, "posix_spawnp", pid, file, fa, attr, argv, envp);
}

/* ---- prctl ---- */

EXPORT int prctl(int option, ...)
{
	va_list ap;
	unsigned long a[4];
	va_start(ap, option);
	for (int i = 0; i < 4; i++)
		a[i] = va_arg(ap, unsigned long);
	va_end(ap);
	if (option == PR_SET_MEMORY_MERGE || option == PR_GET_MEMORY_MERGE) {
		/* The kernel's rules: unused arguments must be 0; any
		 * non-zero value turns merge-any on. */
		bool get = option == PR_GET_MEMORY_MERGE;
		bool bad = (get && a[0]) || a[1] || a[2] || a[3];
		pthread_mutex_lock(&preload_lock);
		samepage_t *sp = preload_engine_locked();
		int err = -EAGAIN;
		if (!sp && waiting) { /* for when samepaged answers */
			err = bad ? -EINVAL : get ? wait_any : (wait_any = a[0] != 0, 0);
			sp = NULL;
		}
		pthread_mutex_unlock(&preload_lock);
		if (sp)
			err = bad   ? -EINVAL
			      : get ? samepage_merge_any_get(sp)
				    : samepage_merge_any(sp, a[0] != 0);
		if (err < 0) {
			errno = -err;
			return -1;
		}
		return err;
	}
	return (int)prim_syscall(SYS_prctl, option, a[0], a[1], a[2], a[3]);
}

/* ---- /dev/kvm ---- */

/* KVM writes guest memory from the kernel: only the userfaultfd window that
 * handles kernel-mode faults makes it wait; with the others its KVM_RUN
 * would fail with EFAULT.  Refused, with the reason, before it starts.
 * What is refused is the device, whatever the name it was opened by
 * ("kvm" in /dev, /proc/self/cwd/kvm, a link): fd, just opened, is closed
 * if it is /dev/kvm (the misc device 10:232, Documentation/admin-guide/
 * devices.txt), which costs an fstat per open with the other windows.
 * The path itself is never read here: the kernel checked it (a bad
 * pointer is its EFAULT, not a crash in this library). */
#define KVM_MAJOR 10
#define KVM_MINOR 232
static bool kvm_refused(int fd, int flags)
{
	struct stat st;
	if (fd < 0 || (flags & O_PATH) || guard_window_kind() == WINDOW_UFFD || fstat(fd, &st) ||
	    !S_ISCHR(st.st_mode) || major(st.st_rdev) != KVM_MAJOR ||
	    minor(st.st_rdev) != KVM_MINOR)
		return false;
	prim_syscall(SYS_close, fd);
	const char *env = getenv("SAMEPAGE_WINDOW");
	bool chosen = env && *env; /* then it may be why */
	prim_say(
	    "samepage: refusing /dev/kvm to this process: KVM writes guest memory from the "
	    "kernel, which waits for a merge only with the userfaultfd window, %s%.40s%s (fix: %s; "
	    "see samepage(3))\n",
	    chosen ? "and SAMEPAGE_WINDOW=" : "not available here", chosen ? env : "",
	    chosen ? " chose another or it is not available here" : "",
	    chosen ? "unset SAMEPAGE_WINDOW"
		   : "run as root or with CAP_SYS_PTRACE, give access to /dev/userfaultfd, or "
		     "set vm.unprivileged_userfaultfd=1");
	errno = EPERM;
	return true;
}

/* ---- io_uring ---- */

/* io_uring moves data into the process's memory where no wrapper sees it:
 * from the kernel's workers, and for direct I/O and registered buffers
 * into pages pinned when the request was submitted.  A merge of such a
 * page in the meantime loses the data (the pinned page is no longer
 * mapped when it arrives): measured with QEMU's aio=io_uring,cache=none,
 * a guest read back a block wrong within minutes.  The kernel's KSM skips
 * pages with pins; user space cannot see them.  So the rings that liburing
 * would set up are refused (EPERM, as the kernel's io_uring_disabled
 * gives), with the reason: programs fall back to other I/O, or stop with
 * the error (QEMU with aio=io_uring).  syscall(SYS_io_uring_setup) is
 * refused the same way (below); the program's own system call instruction
 * is not seen (samepage(3), BUGS).  liburing returns -errno; -EPERM is also -1.
 * The reason is said once a process. */
static int uring_refused(const char *call)
{
	static _Atomic bool said; /* QEMU asks once per I/O context */
	if (!atomic_exchange(&said, true))
		prim_say("samepage: refusing io_uring (%s) to this process: its reads land in "
			 "memory where the merging engine cannot see them, and a read into a page "
			 "merged meanwhile would be lost (fix: another I/O method, e.g. QEMU's "
			 "aio=threads or aio=native; see samepage(3))\n",
			 call);
	errno = EPERM;
	return -EPERM;
}

/* liburing's entry points that make a ring (liburing.h's prototypes; the
 * structures are not read). */
EXPORT int io_uring_queue_init(unsigned entries, void *ring, unsigned flags)
{
	(void)entries, (void)ring, (void)flags;
	return uring_refused("io_uring_queue_init");
}

EXPORT int io_uring_queue_init_params(unsigned entries, void *ring, void *params)
{
	(void)entries, (void)ring, (void)params;
	return uring_refused("io_uring_queue_init_params");
}

EXPORT int io_uring_queue_init_mem(unsigned entries, void *ring, void *params, void *buf,
				   size_t size)
{
	(void)entries, (void)ring, (void)params, (void)buf, (void)size;
	return uring_refused("io_uring_queue_init_mem");
}

EXPORT int io_uring_setup(unsigned entries, void *params)
{
	(void)entries, (void)params;
	return uring_refused("io_uring_setup");
}

static int open_mode(int flags, va_list ap)
{
	return flags & (O_CREAT | O_TMPFILE) ? va_arg(ap, int) : 0;
}

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
static void *_Atomic real_open, *_Atomic real_openat;

EXPORT int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	int mode = open_mode(flags, ap);
	va_end(ap);
	int fd = ((open_fn)interpose_next("open", &real_open, NULL))(path, flags, mode);
	return kvm_refused(fd, flags) ? -1 : fd;
}

EXPORT int open64(const char *path, int flags, ...) __attribute__((alias("open")));

EXPORT int __open_2(const char *path, int flags)
{
	return open(path, flags);
}

EXPORT int __open64_2(const char *path, int flags) __attribute__((alias("__open_2")));

EXPORT int openat(int dir, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	int mode = open_mode(flags, ap);
	va_end(ap);
	int fd = ((openat_fn)interpose_next("openat", &real_openat, NULL))(dir, path, flags, mode);
	return kvm_refused(fd, flags) ? -1 : fd;
}

EXPORT int openat64(int dir, const char *path, int flags, ...) __attribute__((alias("openat")));

EXPORT int __openat_2(int dir, const char *path, int flags)
{
	return openat(dir, path, flags);
}

EXPORT int __openat64_2(int dir, const char *path, int flags) __attribute__((alias("__openat_2")));

/* ---- syscall(2) ---- */

/* libaio's calls, as interpose-io.c defines them (-errno). */
int io_submit(aio_context_t ctx, long n, struct iocb **ios);
int io_getevents(aio_context_t ctx, long min, long n, struct io_event *ev, struct timespec *t);
int io_cancel(aio_context_t ctx, struct iocb *cb, struct io_event *ev);
int io_destroy(aio_context_t ctx);
long mbind(void *addr, unsigned long len, int mode, const unsigned long *nodes,
	   unsigned long maxnode, unsigned flags);
int mseal(void *addr, size_t len, unsigned long flags); /* (no wrapper in glibc 2.36) */

/* -errno as syscall(2) answers it: -1 and errno. */
static long as_syscall(long rc)
{
	if (rc >= 0)
		return rc;
	errno = (int)-rc;
	return -1;
}

/* openat2(2) (no C library wrapper): /dev/kvm as open's check.  The
 * flags are open_how's first member. */
static long openat2_checked(const long *a)
{
	long fd = prim_syscall(SYS_openat2, a[0], a[1], a[2], a[3]);
	uint64_t flags = 0;
	if (fd >= 0 && !guarded_copy(&flags, (const void *)a[2], sizeof(flags)))
		flags = 0;
	return kvm_refused((int)fd, (int)flags) ? -1 : fd;
}

/*
 * A program's syscall() of a call the library interposes goes where the
 * C library's function would have taken it: to the wrapper (the
 * address-space lock, the merge window's reads, the refusals above), so
 * that a raw madvise(MADV_DONTNEED) of merged memory reads zeros, a raw
 * read into merging pages waits for the window, and a raw io_uring_setup
 * is refused as liburing's is.  Every other call goes to the kernel as it
 * is.  Six arguments are taken whatever the call, as the C library's own
 * syscall() does.  Not seen: the system call instruction in a program's
 * own code (Go's runtime, a liburing built into the program).
 */
#ifdef PRIM_OWN_SYSCALL
static long syscall_routed(long nr, const long *a)
{
	void *p = (void *)a[0];
	switch (nr) {
	case SYS_mmap:
		return (long)mmap(p, (size_t)a[1], (int)a[2], (int)a[3], (int)a[4], (off_t)a[5]);
	case SYS_munmap: return munmap(p, (size_t)a[1]);
	case SYS_mprotect: return mprotect(p, (size_t)a[1], (int)a[2]);
	case SYS_pkey_mprotect: return pkey_mprotect(p, (size_t)a[1], (int)a[2], (int)a[3]);
	case SYS_madvise: return madvise(p, (size_t)a[1], (int)a[2]);
	case SYS_sigaltstack: return sigaltstack((const stack_t *)a[0], (stack_t *)a[1]);
	case SYS_mseal: return mseal(p, (size_t)a[1], (unsigned long)a[2]);
	case SYS_process_madvise:
		return process_madvise((int)a[0], (const struct iovec *)a[1], (size_t)a[2],
				       (int)a[3], (unsigned)a[4]);
	case SYS_mremap:
		return (long)mremap(p, (size_t)a[1], (size_t)a[2], (int)a[3], (void *)a[4]);
	case SYS_mlock: return mlock(p, (size_t)a[1]);
	case SYS_mlock2: return mlock2(p, (size_t)a[1], (unsigned)a[2]);
	case SYS_munlock: return munlock(p, (size_t)a[1]);
	case SYS_mlockall: return mlockall((int)a[0]);
	case SYS_munlockall: return munlockall();
	case SYS_mbind:
		return mbind(p, (unsigned long)a[1], (int)a[2], (const unsigned long *)a[3],
			     (unsigned long)a[4], (unsigned)a[5]);
	case SYS_ioctl: return ioctl((int)a[0], (unsigned long)a[1], (void *)a[2]);
	case SYS_prctl: return prctl((int)a[0], a[1], a[2], a[3], a[4]);
#ifdef SYS_open
	case SYS_open: return open((const char *)a[0], (int)a[1], (int)a[2]);
#endif
	case SYS_openat: return openat((int)a[0], (const char *)a[1], (int)a[2], (int)a[3]);
	case SYS_openat2: return openat2_checked(a);
	case SYS_io_uring_setup: return as_syscall(uring_refused("io_uring_setup(2)"));
	case SYS_execve:
		return execve((const char *)a[0], (char *const *)a[1], (char *const *)a[2]);
	case SYS_close: return close((int)a[0]);
	case SYS_close_range: return close_range((unsigned)a[0], (unsigned)a[1], (int)a[2]);
#ifdef SYS_dup2
	case SYS_dup2: return dup2((int)a[0], (int)a[1]);
#endif
	case SYS_dup3: return dup3((int)a[0], (int)a[1], (int)a[2]);
	case SYS_read: return read((int)a[0], (void *)a[1], (size_t)a[2]);
	case SYS_pread64: return pread((int)a[0], (void *)a[1], (size_t)a[2], (off_t)a[3]);
	case SYS_readv: return readv((int)a[0], (const struct iovec *)a[1], (int)a[2]);
	case SYS_preadv: /* the offset's high half (a[4]) is 0 on 64-bit */
		return preadv((int)a[0], (const struct iovec *)a[1], (int)a[2], (off_t)a[3]);
	case SYS_preadv2:
		return preadv2((int)a[0], (const struct iovec *)a[1], (int)a[2], (off_t)a[3],
			       (int)a[5]);
	case SYS_recvfrom:
		return recvfrom((int)a[0], (void *)a[1], (size_t)a[2], (int)a[3],
				(struct sockaddr *)a[4], (socklen_t *)a[5]);
	case SYS_recvmsg: return recvmsg((int)a[0], (struct msghdr *)a[1], (int)a[2]);
	case SYS_recvmmsg:
		return recvmmsg((int)a[0], (struct mmsghdr *)a[1], (unsigned)a[2], (int)a[3],
				(struct timespec *)a[4]);
	case SYS_io_submit:
		return as_syscall(io_submit((aio_context_t)a[0], a[1], (struct iocb **)a[2]));
	case SYS_io_getevents:
		return as_syscall(io_getevents((aio_context_t)a[0], a[1], a[2],
					       (struct io_event *)a[3], (struct timespec *)a[4]));
	case SYS_io_cancel:
		return as_syscall(
		    io_cancel((aio_context_t)a[0], (struct iocb *)a[1], (struct io_event *)a[2]));
	case SYS_io_destroy: return as_syscall(io_destroy((aio_context_t)a[0]));
	case SYS_rt_sigprocmask:
		return interpose_rt_sigprocmask((int)a[0], (const void *)a[1], (void *)a[2],
						(size_t)a[3]);
	}
	return prim_syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

EXPORT long syscall(long nr, ...)
{
	/* A wrapper whose real call is a library's that makes it through
	 * syscall() (libaio was one, before interpose-io.c made its calls
	 * itself) reaches the kernel, not the wrapper again.  (A routed call
	 * left by a longjmp leaves this thread's syscall() going straight to
	 * the kernel, as before the library interposed it.) */
	static __thread bool routing;
	va_list ap;
	long a[6];
	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (routing)
		return prim_syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
	routing = true;
	long rc = syscall_routed(nr, a);
	routing = false;
	return rc;
}
#endif
