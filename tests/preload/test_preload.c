// SPDX-License-Identifier: MIT
/*
 * test_preload.c - unmodified programs on libsamepage through `ksmctl
 * --user run` (issue 12), memory measured from outside (the programs'
 * /proc/PID/smaps_rollup).
 *
 *   private   merge-any with a private engine: the program's memory merges
 *   madvise   --no-merge-any: what the program marks MADV_MERGEABLE merges
 *   prctl     --no-merge-any: prctl(PR_SET_MEMORY_MERGE) turns merge-any on
 *   dontfork  MADV_DONTFORK guest RAM (as QEMU's) merges, and stays so
 *   fork      a forked child merges its memory too
 *   exec      an exec'd program stays on libsamepage
 *   domain    two programs in one samepaged domain share their pages; a
 *             third, in another domain, shares none of them
 *   static    a statically linked program is refused (exit 1), with why, and
 *             so is a script whose "#!" interpreter is one (named, or
 *             found in PATH by #!/usr/bin/env), naming the interpreter
 *   malloc    merge-any under a malloc/calloc/realloc/malloc_trim storm of
 *             several threads: no block ever reads wrong
 *   kvm       with the mprotect window, /dev/kvm is refused (EPERM), by
 *             any name (only "/dev/kvm" was: "kvm" in /dev opened it);
 *             with the userfaultfd window (as root), opened by every name
 *   dma       VFIO's and iommufd's device DMA mappings are refused (EPERM),
 *             with why: the device writes into pinned pages a merge loses
 *   uring     a ring liburing would make is refused (EPERM), with why: reads
 *             into pinned pages (direct I/O) would be lost in a merge
 *   syscall   a program's syscall() of a call the library interposes is
 *             the wrapper's: MADV_MERGEABLE merges, MADV_DONTNEED of merged
 *             memory reads zeros (it read the merged contents back), and
 *             io_uring_setup, /dev/kvm (openat, openat2, mprotect window)
 *             and blocking SIGSEGV are refused as through the C library;
 *             libaio, which makes its calls with syscall(), still reads
 *   uffd_device  an unprivileged process with access to /dev/userfaultfd
 *             (what the library's messages advise) runs: it hung at its
 *             first open (the /dev/kvm check probed userfaultfd through
 *             the open wrapper, which waited for itself)
 *   opennull  open of NULL or of an unmapped address fails with EFAULT
 *             (the /dev/kvm check, which read the path, crashed on them)
 *   sigwait   a signal every thread of the program blocks (it waits for
 *             it with sigwait) is not taken by the engine's thread
 *   signal    a program that sends itself SIGSEGV or SIGBUS (kill) dies of
 *             it, 128+n as without the library (the fault handler took
 *             it for a fault to retry, and the program went on)
 *   forks     forks while other threads are in the library's wrappers
 *             (madvise, read, mmap, munmap): no child finds a lock held
 *             by a thread the fork did not copy
 *   environment  SAMEPAGE_MERGE_ANY and SAMEPAGE_WINDOW take what
 *             samepage(3) lists (1/0; uffd/uffd-user/mprotect or 2/1/0);
 *             another value is said on standard error once, naming it and
 *             the fix, and taken as unset (both were silently ignored, and
 *             SAMEPAGE_WINDOW=0 was not mprotect)
 *   late      a program preloaded (by hand, not through ksmctl, which refuses
 *             then) with a domain before its samepaged starts: what it marks
 *             meanwhile (MADV_MERGEABLE; merge-any from the environment) is
 *             merged once samepaged starts, and every byte reads right (it
 *             ran without merging for good before)
 *   upgrade   the same, started under an older samepaged that refuses the
 *             library's HELLO: they merge once samepaged restarts from
 *             their version (they stopped asking before)
 *   pools     Python's multiprocessing pools (fork, spawn, forkserver)
 *             under merge-any in a domain merging hot (pools.py) end with
 *             every result right (a worker's windows hung its parent)
 *   fork_away a process in a domain (merge-any, or a range marked) forks
 *             while samepaged is away: the child merges what its parent
 *             had once samepaged is back (it lost it, merging nothing)
 *   execenv   a program exec'd or spawned with an environment of its own
 *             (execve, execle, execvpe, fexecve, clearenv, syscall, vfork,
 *             posix_spawn) stays on the library, merge-any as it was at
 *             the exec (it ran without the library)
 *   mainexit  a program whose main thread ends by pthread_exit() ends
 *             with its last thread (exit 0, its output flushed), one in
 *             SECCOMP_MODE_STRICT with its exit call's status (both ran
 *             for ever, the library's thread alive)
 *   shell     a bash script merging hot that puts its files at 3..8
 *             ("exec 3<>file"), then makes and drops strings of spaces:
 *             its files read as written (they had taken the library's
 *             numbers, and the library punched holes in them); a dup2()
 *             or dup3() onto the library's pool, or syscall()'s, is
 *             refused with EBUSY
 *   jvm       two JVMs (Heap.java, beside pools.py) in a domain merging
 *             hot whose state directory is on a disk where there is one:
 *             their arrays merge, every byte reads right, and neither
 *             stops (a thread waited for ever on a page a window fell
 *             back from: RELIABILITY.md 65)
 *
 * Usage: test_preload CASE KSMCTL WORKLOAD SAMEPAGED [STATIC_WORKLOAD [POOLS_PY]]
 */
#include "../../lib/types.h" /* struct domain: who holds its lock */
#include "../lib/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <sys/wait.h>

static const char *ksmctl, *workload, *samepaged;
static pid_t daemon_pid;
static char dir[] = "/tmp/samepage-preload-XXXXXX";
static char sock[128];

struct prog {
	pid_t pid;
	FILE *out; /* its stdout */
	int in;	   /* its stdin */
};

/* Runs path with args, its stdin and stdout piped to the test; preloaded:
 * into domain vms of the samepaged at sock, by hand (merge-any if any). */
static struct prog spawn(const char *path, const char *const *args, bool preloaded, bool any)
{
	int i[2], o[2];
	const char *preload = getenv("SAMEPAGE_PRELOAD");
	REQUIRE((!preloaded || preload) && pipe(i) == 0 && pipe(o) == 0);
	struct prog p = {.pid = fork()};
	REQUIRE(p.pid >= 0);
	if (p.pid == 0) {
		if (preloaded) {
			setenv("LD_PRELOAD", preload, 1);
			setenv("SAMEPAGE_DOMAIN", "vms", 1);
			setenv("SAMEPAGE_SOCKET", sock, 1);
			if (any)
				setenv("SAMEPAGE_MERGE_ANY", "1", 1);
		}
		dup2(i[0], 0);
		dup2(o[1], 1);
		close(i[1]);
		close(o[0]);
		execv(path, (char **)args);
		_exit(127);
	}
	close(i[0]);
	close(o[1]);
	p.in = i[1];
	p.out = fdopen(o[0], "r");
	return p;
}

/* Starts `ksmctl --user [--socket S] run OPTS -- workload ARGS`; argv is
 * the part after "run", ending with NULL. */
static struct prog start(const char *const *argv)
{
	const char *args[32] = {ksmctl, "--user"};
	int n = 2;
	if (sock[0]) {
		args[n++] = "--socket";
		args[n++] = sock;
	}
	args[n++] = "run";
	for (int k = 0; argv[k] && n < 31; k++)
		args[n++] = argv[k];
	args[n] = NULL;
	return spawn(ksmctl, args, false, false);
}

static bool ready(struct prog *p)
{
	char line[64];
	return fgets(line, sizeof(line), p->out) && !strncmp(line, "ready", 5);
}

static int finish(struct prog *p)
{
	if (write(p->in, "check\n", 6) != 6)
		return -1;
	close(p->in);
	fclose(p->out);
	int st;
	REQUIRE(waitpid(p->pid, &st, 0) == p->pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* What a process's memory costs, as the kernel counts it (kB). */
static long long cost_kb(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	long long a = proc_kb(path, "Pss_Anon"), s = proc_kb(path, "Pss_Shmem");
	return a < 0 || s < 0 ? -1 : a + s;
}

/* Waits until the process's memory costs at most limit kB (a generous
 * time limit only stops a hung test): its cost at the end. */
static long long wait_cost(pid_t pid, long long limit)
{
	long long c = cost_kb(pid);
	for (int i = 0; i < 1200 && c > limit; i++) {
		usleep(100000);
		c = cost_kb(pid);
	}
	return c;
}

#define FAST "--set", "pages_to_scan=100000", "--set", "sleep_millisecs=0"

/* The most memory the process ever had resident (kB): VmHWM. */
static long long peak_kb(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	return proc_kb(path, "VmHWM");
}

/* One program of MIB, its memory expected to merge down to a quarter. */
static void merges(const char *const *argv, long long mib)
{
	struct prog p = start(argv);
	REQUIRE(ready(&p));
	long long before = cost_kb(p.pid), after = wait_cost(p.pid, mib * 1024 / 4);
	printf("%lld MiB: %lld -> %lld kB (peak %lld kB)\n", mib, before, after, peak_kb(p.pid));
	/* It held its memory first: its peak, since merging may have begun
	 * before the first look (it starts with the program). */
	CHECK_GE_U64(peak_kb(p.pid), mib * 1024 * 9 / 10);
	CHECK_LE_U64(after, mib * 1024 / 4);
	CHECK_EQ_INT(finish(&p), 0); /* every byte reads what it wrote */
}

static pid_t child_of(pid_t pid)
{
	char path[64], buf[64] = "";
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
	for (int i = 0; i < 1000 && !buf[0]; i++) {
		FILE *f = fopen(path, "r");
		if (f) {
			if (!fgets(buf, sizeof(buf), f))
				buf[0] = 0;
			fclose(f);
		}
		if (!buf[0])
			usleep(10000);
	}
	return (pid_t)atoi(buf);
}

/* samepaged's state directory: on tmpfs, named as dir; or disk_state. */
static char disk_state[160];

static const char *state_dir(void)
{
	static char state[160];
	if (disk_state[0])
		return disk_state;
	snprintf(state, sizeof(state), "/dev/shm/%s", strrchr(dir, '/') + 1);
	return state;
}

static void start_daemon(void)
{
	char req[64], reply[256];
	const char *state = state_dir();
	snprintf(sock, sizeof(sock), "%s/sock", dir);
	pid_t d = daemon_pid = fork();
	REQUIRE(d >= 0);
	if (d == 0) {
		execl(samepaged, samepaged, "--foreground", "--socket", sock, "--state-dir", state,
		      (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 5000 && samepage_control(sock, "GET run", reply, sizeof(reply)); i++)
		usleep(2000);
	const char *set[] = {"pages_to_scan 100000", "sleep_millisecs 0", "run 1"};
	for (int k = 0; k < 3; k++) {
		snprintf(req, sizeof(req), "SET %s", set[k]);
		REQUIRE(samepage_control(sock, req, reply, sizeof(reply)) == 0);
	}
}

static void test_domain(void)
{
	start_daemon();
	const char *vm[] = {"--domain", "vms", "--", workload, "fill", "32", "5", "distinct", NULL};
	const char *other[] = {"--domain", "other", "--",	workload, "fill",
			       "32",	   "5",	    "distinct", NULL};
	struct prog a = start(vm), b = start(vm), c = start(other);
	REQUIRE(ready(&a) && ready(&b) && ready(&c));
	/* Two processes of one domain: one image between them, about. */
	long long sum = 0;
	for (int i = 0; i < 1200; i++) {
		sum = cost_kb(a.pid) + cost_kb(b.pid);
		if (sum <= 32 * 1024 * 13 / 10)
			break;
		usleep(100000);
	}
	long long third = cost_kb(c.pid);
	printf("domain vms: two processes of 32 MiB cost %lld kB; domain other: %lld kB\n", sum,
	       third);
	CHECK_LE_U64(sum, 32 * 1024 * 13 / 10);
	CHECK_GE_U64(third, 32 * 1024 * 9 / 10); /* nothing shared across domains */
	CHECK_EQ_INT(finish(&a), 0);
	CHECK_EQ_INT(finish(&b), 0);
	CHECK_EQ_INT(finish(&c), 0);
}

/* The workload (MODE MIB 5 [how], MODE fill or fork) preloaded by hand
 * into domain vms, without ksmctl; merge-any from the environment if any. */
static struct prog start_preloaded(const char *mode, const char *mib, const char *how, bool any)
{
	const char *args[] = {workload, mode, mib, "5", how, NULL};
	return spawn(workload, args, true, any);
}

/* Whether the thread named name of process pid blocks SIGSEGV or SIGBUS
 * (its SigBlk in /proc): -1 if there is no such thread. */
static int thread_blocks_faults(pid_t pid, const char *name)
{
	char path[400], line[256];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	int found = -1;
	for (struct dirent *e; d && found < 0 && (e = readdir(d));) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/status", (int)pid, e->d_name);
		FILE *f = fopen(path, "r");
		bool named = false;
		while (f && fgets(line, sizeof(line), f)) {
			if (!strncmp(line, "Name:", 5))
				named = strstr(line, name) != NULL;
			if (named && !strncmp(line, "SigBlk:", 7)) {
				unsigned long long blk = strtoull(line + 7, NULL, 16);
				found =
				    !!(blk & ((1ULL << (SIGSEGV - 1)) | (1ULL << (SIGBUS - 1))));
			}
		}
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	return found;
}

/* An older samepaged at sock (upgrade): "NAME LAYOUT" is no domain name
 * to it, so it refuses every HELLO of this version's library, until its
 * socket is shut down. */
static void *old_daemon(void *arg)
{
	int lfd = *(int *)arg, c;
	while ((c = accept(lfd, NULL, NULL)) >= 0) {
		char buf[256];
		ssize_t n = recv(c, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = 0;
		const char *no =
		    strncmp(buf, "HELLO ", 6)
			? "OK"
			: "ERR 22 domain name (1 to 64 of A-Za-z0-9._-): Invalid argument";
		send(c, no, strlen(no), MSG_NOSIGNAL);
		close(c);
	}
	return NULL;
}

/* Programs started before their samepaged (late), or under an older one
 * that refuses them until samepaged restarts from their version (upgrade):
 * both merge once it answers. */
static void test_late(bool upgrade)
{
	int lfd = -1;
	pthread_t old;
	snprintf(sock, sizeof(sock), "%s/sock", dir); /* where start_daemon() puts it */
	if (upgrade) {
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		REQUIRE(strlen(sock) < sizeof(a.sun_path));
		memcpy(a.sun_path, sock, strlen(sock) + 1);
		lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		REQUIRE(lfd >= 0 && bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
			listen(lfd, 8) == 0 && pthread_create(&old, NULL, old_daemon, &lfd) == 0);
	}
	struct prog a = start_preloaded("fill", "32", "madvise", false),
		    b = start_preloaded("fill", "32", NULL, true),
		    c = start_preloaded("fork", "32", NULL, true); /* a child fills */
	REQUIRE(ready(&a) && ready(&b) && ready(&c));
	pid_t child = child_of(c.pid);
	REQUIRE(child > 0);
	/* They run, merging nothing: no samepaged (of their version) yet.
	 * The library's thread that waits for it takes none of the program's
	 * signals but its own faults: blocked, the fault of a guarded read of
	 * the program's memory killed the program when it joined. */
	CHECK_EQ_INT(thread_blocks_faults(b.pid, "samepage-wait"), 0);
	CHECK_GE_U64(cost_kb(a.pid), 32 * 1024 * 9 / 10);
	CHECK_GE_U64(cost_kb(b.pid), 32 * 1024 * 9 / 10);
	CHECK_GE_U64(cost_kb(child), 32 * 1024 * 9 / 10);
	if (upgrade) {
		sleep(3); /* each has been refused at least once */
		shutdown(lfd, SHUT_RDWR);
		pthread_join(old, NULL);
		close(lfd);
		unlink(sock);
	}
	start_daemon();
	long long ca = wait_cost(a.pid, 32 * 1024 / 4), cb = wait_cost(b.pid, 32 * 1024 / 4),
		  cc = wait_cost(child, 32 * 1024 / 4);
	printf("after samepaged started: %lld kB (marked mergeable), %lld kB (merge-any), "
	       "%lld kB (a forked child, merge-any)\n",
	       ca, cb, cc);
	CHECK_LE_U64(ca, 32 * 1024 / 4);
	CHECK_LE_U64(cb, 32 * 1024 / 4);
	CHECK_LE_U64(cc, 32 * 1024 / 4);
	CHECK_EQ_INT(finish(&a), 0); /* every byte reads what it wrote */
	CHECK_EQ_INT(finish(&b), 0);
	CHECK_EQ_INT(finish(&c), 0);
}

/* A process in a domain forks while samepaged is away: the child waits
 * for it with what its parent had (merge-any, the ranges it marked), and
 * merges them once samepaged is back.  It merged nothing before: its
 * engine's first connection failed, and the parent's were dropped. */
static void test_fork_away(void)
{
	static const char *const hows[] = {NULL, "madvise"};
	start_daemon();
	for (int k = 0; k < 2; k++) {
		struct prog c = start_preloaded("forklater", "32", hows[k], hows[k] == NULL);
		REQUIRE(ready(&c));
		long long before = wait_cost(c.pid, 32 * 1024 / 4);
		kill(daemon_pid, SIGTERM);
		REQUIRE(waitpid(daemon_pid, NULL, 0) == daemon_pid);
		daemon_pid = 0;
		REQUIRE(write(c.in, "fork\n", 5) == 5);
		REQUIRE(ready(&c)); /* the child's, once it wrote its pages */
		pid_t child = child_of(c.pid);
		REQUIRE(child > 0);
		long long own = cost_kb(child);
		start_daemon();
		long long after = wait_cost(child, 32 * 1024 / 4);
		printf("%s: the parent %lld kB; its child %lld kB with samepaged away, %lld kB "
		       "after it started again\n",
		       hows[k] ? "marked mergeable" : "merge-any", before, own, after);
		CHECK_LE_U64(before, 32 * 1024 / 4);
		CHECK_GE_U64(own, (hows[k] ? 32 : 64) * 1024 * 9 / 10);
		CHECK_LE_U64(after, own / 4); /* merged (the library's own memory stays) */
		CHECK_EQ_INT(finish(&c), 0);  /* every byte reads what it wrote */
	}
}

static void test_fork(void)
{
	const char *argv[] = {FAST, "--", workload, "fork", "64", "9", NULL};
	struct prog p = start(argv);
	REQUIRE(ready(&p));
	pid_t child = child_of(p.pid);
	REQUIRE(child > 0);
	long long after = wait_cost(child, 64 * 1024 / 4);
	printf("forked child: %lld kB\n", after);
	CHECK_LE_U64(after, 64 * 1024 / 4);
	CHECK_EQ_INT(finish(&p), 0);
}

static int output_of(struct prog p, char *err, size_t len)
{
	close(p.in);
	size_t n = fread(err, 1, len - 1, p.out);
	err[n] = 0;
	fclose(p.out);
	int st;
	waitpid(p.pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int run_plain(const char *const *argv, char *err, size_t len)
{
	return output_of(start(argv), err, len);
}

/* argv run as it is, not preloaded: its exit status (spawn's), its
 * standard output in out if out is not NULL. */
static int run_unpreloaded(const char *const *argv, char *out, size_t len)
{
	char buf[256];
	return out ? output_of(spawn(argv[0], argv, false, false), out, len)
		   : output_of(spawn(argv[0], argv, false, false), buf, sizeof(buf));
}

/* The processes whose ancestors include root (root too): their pids in
 * pids, how many as the result. */
static int tree(pid_t root, pid_t *pids, int max)
{
	int n = 0;
	pids[n++] = root;
	for (int grew = 1; grew && n < max;) {
		grew = 0;
		DIR *d = opendir("/proc");
		struct dirent *e;
		while (d && (e = readdir(d)) && n < max) {
			char path[300], buf[512];
			pid_t pid = (pid_t)atoi(e->d_name), ppid = 0;
			snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
			FILE *f = pid > 0 ? fopen(path, "r") : NULL;
			char *close_paren =
			    f && fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
			if (f)
				fclose(f);
			if (!close_paren || sscanf(close_paren + 2, "%*c %d", &ppid) != 1)
				continue;
			bool known = false, parent_known = false;
			for (int k = 0; k < n; k++) {
				known |= pids[k] == pid;
				parent_known |= pids[k] == ppid;
			}
			if (!known && parent_known) {
				pids[n++] = pid;
				grew = 1;
			}
		}
		if (d)
			closedir(d);
	}
	return n;
}

/* Prints what every thread of pid waits for: its kernel stack, its
 * system call, and its user stack when gdb is installed. */
static void dump_process(pid_t pid)
{
	char cmd[1024];
	printf("=== process %d\n", (int)pid);
	fflush(stdout);
	snprintf(
	    cmd, sizeof(cmd),
	    "cd /proc/%d && tr '\\0' ' ' < cmdline && echo && grep -E '^(State|Sig)' status;"
	    " for t in task/*; do echo \"-- $t $(cat $t/comm) wchan=$(cat $t/wchan)"
	    " syscall=$(cat $t/syscall)\"; cat $t/stack; done;"
	    " command -v gdb >/dev/null && gdb -p %d -batch -ex 'thread apply all bt' 2>/dev/null"
	    " | grep -E '^(#|Thread)'",
	    (int)pid, (int)pid);
	if (system(cmd) == -1)
		printf("could not run the shell\n");
}

/* Who holds each domain lock of samepaged's state directory, and who
 * waits (glibc's futex word: the owner's thread id). */
static void dump_domain_locks(void)
{
	char path[450];
	const char *state = state_dir();
	DIR *d = opendir(state);
	for (struct dirent *e; d && (e = readdir(d));) {
		size_t len = strlen(e->d_name);
		if (len < 7 || strcmp(e->d_name + len - 6, ".index"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", state, e->d_name);
		struct domain dom;
		int fd = open(path, O_RDONLY);
		if (fd >= 0 && pread(fd, &dom, sizeof(dom), 0) == (ssize_t)sizeof(dom)) {
			int word = dom.lock.__data.__lock;
			printf("=== %s: lock word %#x (owner thread %d), %u counted waiters\n",
			       e->d_name, (unsigned)word, word & 0x3fffffff,
			       (unsigned)atomic_load(&dom.lock_waiters));
		}
		if (fd >= 0)
			close(fd);
	}
	if (d)
		closedir(d);
	fflush(stdout);
}

/*
 * A watchdog for a program that may hang: a child process that, if not
 * killed within seconds, stops every process of the program's tree,
 * prints what each of them and samepaged wait for, and kills the tree (so
 * the test fails with the reason in its log, not at ctest's timeout with
 * nothing).  stop_watch() says whether it fired.
 */
static int *watch_fired; /* shared with the watchdog */

static pid_t watch(pid_t root, unsigned seconds)
{
	if (!watch_fired) {
		watch_fired = mmap(NULL, sizeof(int), PROT_READ | PROT_WRITE,
				   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		REQUIRE(watch_fired != MAP_FAILED);
	}
	*watch_fired = 0;
	fflush(stdout);
	pid_t w = fork();
	REQUIRE(w >= 0);
	if (w > 0)
		return w;
	for (int fd = 3; fd < 1024; fd++)
		close(fd); /* the program's pipes: its stdin must see EOF */
	sleep(seconds);
	*watch_fired = 1;
	pid_t pids[256];
	int n = tree(root, pids, 256);
	for (int k = 0; k < n; k++)
		kill(pids[k], SIGSTOP); /* as they are: none may finish now */
	printf("hung after %u s: %d processes\n", seconds, n);
	for (int k = 0; k < n; k++)
		dump_process(pids[k]);
	if (daemon_pid > 0)
		dump_process(daemon_pid);
	dump_domain_locks();
	for (int k = 0; k < n; k++)
		kill(pids[k], SIGKILL);
	fflush(stdout);
	_exit(0);
}

static bool stop_watch(pid_t w)
{
	kill(w, SIGKILL);
	REQUIRE(waitpid(w, NULL, 0) == w);
	return *watch_fired;
}

/* run_plain with its stderr, not its stdout, in err. */
static int run_err(const char *const *argv, char *err, size_t len)
{
	char path[128], out[256];
	snprintf(path, sizeof(path), "%s/stderr", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), saved = dup(2);
	REQUIRE(fd >= 0 && saved >= 0);
	fflush(stderr);
	dup2(fd, 2);
	int rc = run_plain(argv, out, sizeof(out));
	dup2(saved, 2);
	close(saved);
	close(fd);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, err, len - 1);
	err[n > 0 ? n : 0] = 0;
	if (fd >= 0)
		close(fd);
	printf("exit %d: %s", rc, err);
	return rc;
}

/* The workload with ARGS, the preload library in LD_PRELOAD and NAME=VALUE
 * in its environment (not through ksmctl, which sets SAMEPAGE_MERGE_ANY
 * itself): its exit status, its standard error in err. */
static int run_preloaded(const char *name, const char *value, const char *arg, char *err,
			 size_t len)
{
	char path[128];
	const char *lib = getenv("SAMEPAGE_PRELOAD");
	REQUIRE(lib && *lib);
	snprintf(path, sizeof(path), "%s/stderr", dir);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || dup2(fd, 2) < 0)
			_exit(126);
		setenv("LD_PRELOAD", lib, 1);
		setenv(name, value, 1);
		execl(workload, workload, arg, (char *)NULL);
		_exit(127);
	}
	int st, fd;
	REQUIRE(waitpid(pid, &st, 0) == pid);
	ssize_t n = (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 ? -1 : read(fd, err, len - 1);
	err[n > 0 ? n : 0] = 0;
	if (fd >= 0)
		close(fd);
	int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	printf("%s=%s %s: exit %d: %s%s", name, value, arg, rc, err,
	       err[0] && err[strlen(err) - 1] == '\n' ? "" : "\n");
	return rc;
}

/* How many times needle is in hay. */
static int occurrences(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* Each of values of variable var said once on standard error, with a fix
 * (bad), or nothing said (good); the program runs either way. */
static void environment_said(const char *var, const char *const *values, size_t n, bool bad)
{
	char err[4096], said[128];
	for (size_t i = 0; i < n; i++) {
		CHECK_EQ_INT(run_preloaded(var, values[i], "opennull", err, sizeof(err)), 0);
		snprintf(said, sizeof(said), "%s=%s:", var, values[i]);
		CHECK_EQ_INT(occurrences(err, said), bad ? 1 : 0);
		CHECK_EQ_INT(strstr(err, "(fix: ") != NULL, bad);
		if (!bad)
			CHECK_EQ_INT(err[0], 0);
	}
}

static void test_environment(void)
{
	char err[4096];
	static const char *const bad_any[] = {"yes", "2", "true", " 1"};
	static const char *const good_any[] = {"1", "0", ""};
	static const char *const bad_window[] = {"bogus", "3", "UFFD", "full"};
	static const char *const good_window[] = {"uffd", "2", "uffd-user", "1", "mprotect", "0"};
	environment_said("SAMEPAGE_MERGE_ANY", bad_any, sizeof(bad_any) / sizeof(bad_any[0]), true);
	environment_said("SAMEPAGE_MERGE_ANY", good_any, sizeof(good_any) / sizeof(good_any[0]),
			 false);
	environment_said("SAMEPAGE_WINDOW", bad_window, sizeof(bad_window) / sizeof(bad_window[0]),
			 true);
	environment_said("SAMEPAGE_WINDOW", good_window,
			 sizeof(good_window) / sizeof(good_window[0]), false);
	/* 0 is mprotect: /dev/kvm is refused (EPERM), as with "mprotect" (it
	 * was taken for unset: userfaultfd where the process may use it). */
	if (access("/dev/kvm", R_OK | W_OK) == 0) {
		int rc = run_preloaded("SAMEPAGE_WINDOW", "mprotect", "kvm", err, sizeof(err));
		CHECK_EQ_INT(rc, 1);
		CHECK_EQ_INT(run_preloaded("SAMEPAGE_WINDOW", "0", "kvm", err, sizeof(err)), rc);
		/* The refusal names the cause, the variable, not the privilege
		 * (it said to run as root, which this test is). */
		CHECK(strstr(err, "SAMEPAGE_WINDOW=0") != NULL);
		CHECK(strstr(err, "unset SAMEPAGE_WINDOW") != NULL);
	} else {
		printf("# no /dev/kvm to open: SAMEPAGE_WINDOW=0's mechanism not seen\n");
	}
}

/* A script in dir whose first line is "#!line": its path in path. */
static void script(char *path, size_t len, const char *name, const char *line)
{
	snprintf(path, len, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	REQUIRE(f);
	fprintf(f, "#!%s\nexit 0\n", line);
	REQUIRE(fclose(f) == 0 && chmod(path, 0755) == 0);
}

/* A statically linked program is refused (exit 1), and so is a script
 * whose "#!" interpreter is one, named or found in PATH by env or env -S
 * (none was refused: the script ran, without the library); the message names
 * the interpreter.  A script of a dynamically linked interpreter runs. */
static void test_static(const char *stat)
{
	char err[2048], path[256], line[256], expect[512];
	const char *a[] = {"--", stat, "fill", "1", "1", NULL};
	CHECK_EQ_INT(run_err(a, err, sizeof(err)), 1);
	CHECK(strstr(err, "it is statically linked") != NULL);

	snprintf(expect, sizeof(expect), "its interpreter %s is statically linked", stat);
	const char *s[] = {"--", path, NULL};
	script(path, sizeof(path), "static.sh", stat);
	CHECK_EQ_INT(run_err(s, err, sizeof(err)), 1);
	CHECK(strstr(err, expect) != NULL);

	/* #!/usr/bin/env NAME: NAME from PATH, as env finds it. */
	char *old = getenv("PATH") ? strdup(getenv("PATH")) : NULL, newpath[4096];
	snprintf(newpath, sizeof(newpath), "%.*s:%s", (int)(strrchr(stat, '/') - stat), stat,
		 old ? old : "/usr/bin:/bin");
	setenv("PATH", newpath, 1);
	snprintf(line, sizeof(line), "/usr/bin/env %s", strrchr(stat, '/') + 1);
	script(path, sizeof(path), "env.sh", line);
	if (access("/usr/bin/env", X_OK) == 0) {
		CHECK_EQ_INT(run_err(s, err, sizeof(err)), 1);
		CHECK(strstr(err, expect) != NULL);
		/* env -S [VAR=VALUE...] NAME ARGS: env splits the line (it ran
		 * without the library, without a word). */
		snprintf(line, sizeof(line), "/usr/bin/env -S V=1 %s fill", strrchr(stat, '/') + 1);
		script(path, sizeof(path), "env-s.sh", line);
		CHECK_EQ_INT(run_err(s, err, sizeof(err)), 1);
		CHECK(strstr(err, expect) != NULL);
	}
	if (old)
		setenv("PATH", old, 1);
	free(old);

	if (access("/bin/sh", X_OK) == 0) {
		script(path, sizeof(path), "sh.sh", "/bin/sh");
		CHECK_EQ_INT(run_err(s, err, sizeof(err)), 0);
	}
}

/* RELIABILITY.md 65: two JVMs in one domain, merging hot, with the
 * state directory on a disk (ctest's working directory, the build tree,
 * where it is not tmpfs: samepaged warns and goes on), where merge
 * windows over merged pages fall back to mprotect.  A JVM's thread then
 * waited for ever on a page that a window left write-protected by
 * userfaultfd (two of two runs of three JVMs for 60 s). */
static void test_jvm(const char *heap_java)
{
	const char *probe[] = {"/bin/sh", "-c",
			       "java --list-modules 2>/dev/null | grep -q '^jdk.compiler@'", NULL};
	if (run_unpreloaded(probe, NULL, 0) != 0)
		SKIP("no JDK in PATH (java with jdk.compiler; CI installs default-jdk-headless)");
	struct statfs fs;
	char cwd[PATH_MAX];
	if (statfs(".", &fs) == 0 && fs.f_type != TMPFS_MAGIC && getcwd(cwd, sizeof(cwd))) {
		int n =
		    snprintf(disk_state, sizeof(disk_state), "%s/jvm-state.%d", cwd, (int)getpid());
		if (n < 0 || (size_t)n >= sizeof(disk_state))
			disk_state[0] = '\0'; /* does not fit: /dev/shm, as state_dir() says */
	}
	printf("# state directory %s\n", state_dir());
	start_daemon();
	char cmd[2 * PATH_MAX + 128];
	snprintf(cmd, sizeof(cmd),
		 "java -Xmx512m %s 40 & a=$!; java -Xmx512m %s 40 & b=$!; "
		 "wait $a; x=$?; wait $b; y=$?; exit $((x | y))",
		 heap_java, heap_java);
	const char *a[] = {"--domain", "vms", "--", "/bin/sh", "-c", cmd, NULL};
	struct prog p = start(a);
	close(p.in);
	pid_t w = watch(p.pid, 300); /* a run takes 45 s */
	long long most = 0;
	int st;
	while (waitpid(p.pid, &st, WNOHANG) == 0) {
		char reply[128];
		if (samepage_control(sock, "GET pages_sharing", reply, sizeof(reply)) == 0) {
			const char *v = strchr(reply, ' ');
			long long n = v ? atoll(v + 1) : 0;
			most = n > most ? n : most;
		}
		usleep(200000);
	}
	CHECK(!stop_watch(w));
	char out[512];
	size_t len = fread(out, 1, sizeof(out) - 1, p.out);
	out[len] = 0;
	fclose(p.out);
	int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	printf("exit %d, pages_sharing at most %lld, the JVMs said:\n%s", rc, most, out);
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(occurrences(out, "ok "), 2);
	/* 96 arrays of one byte value a JVM, 24,576 pages, nearly all alike */
	CHECK_CMP(most, >=, 24576LL, long long, "%lld");
}

/* As user nobody, in a mount namespace of its own where /dev/userfaultfd
 * is a node of the same device that anyone may open: nothing outside the
 * namespace changes (RELIABILITY.md 64). */
static void test_uffd_device(void)
{
	struct stat st;
	struct passwd *pw = getpwnam("nobody");
	char un[8] = "";
	procfs_read("/proc/sys/vm/unprivileged_userfaultfd", un, sizeof(un));
	if (geteuid() != 0)
		SKIP("not root: cannot give a user its own /dev/userfaultfd");
	if (stat("/dev/userfaultfd", &st) || !S_ISCHR(st.st_mode))
		SKIP("no /dev/userfaultfd (Linux 6.1 or later has it)");
	if (!pw)
		SKIP("no user nobody to run the program as");
	if (un[0] == '1')
		SKIP("vm.unprivileged_userfaultfd=1: the library never opens the device");
	const char *lib = getenv("SAMEPAGE_PRELOAD");
	REQUIRE(lib && *lib);
	char mnt[] = "/tmp/samepage-uffd-XXXXXX";
	REQUIRE(mkdtemp(mnt));
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		char node[64];
		snprintf(node, sizeof(node), "%s/userfaultfd", mnt);
		if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
		    mount("tmpfs", mnt, "tmpfs", 0, "mode=0755") ||
		    mknod(node, S_IFCHR | 0666, st.st_rdev) || chmod(node, 0666) ||
		    mount(node, "/dev/userfaultfd", NULL, MS_BIND, NULL) || setgid(pw->pw_gid) ||
		    setuid(pw->pw_uid))
			_exit(125);
		setenv("LD_PRELOAD", lib, 1);
		setenv("SAMEPAGE_MERGE_ANY", "1", 1);
		alarm(60); /* kept across exec: a program that hangs dies of it */
		execl(workload, workload, "open", (char *)NULL);
		_exit(127);
	}
	int st2;
	REQUIRE(waitpid(pid, &st2, 0) == pid);
	rmdir(mnt);
	int rc = WIFEXITED(st2) ? WEXITSTATUS(st2) : 128 + WTERMSIG(st2);
	if (rc == 125)
		SKIP("cannot make a private /dev/userfaultfd here (mount namespace, tmpfs, mknod)");
	printf("as nobody with /dev/userfaultfd: exit %d (%d: hung, killed by SIGALRM)\n", rc,
	       128 + SIGALRM);
	CHECK_EQ_INT(rc, 0);
}

/* Raw syscall()s reach the wrappers (RELIABILITY.md 63). */
static void test_syscall(void)
{
	/* Marked and discarded by syscall(): merged, then zeros; under
	 * merge-any too (it read the merged pages' 7s back). */
	const char *f[] = {"--no-merge-any", FAST, "--", workload, "fill", "64", "7",
			   "syscall",	     NULL};
	merges(f, 64);
	merges(f + 1, 64);
	/* The refusals, against what the kernel says without the library. */
	const char *a[] = {workload, "rawcalls", NULL};
	char plain[64], out[64];
	int k[6], w[6];
	CHECK_EQ_INT(run_unpreloaded(a, plain, sizeof(plain)), 0);
	REQUIRE(sscanf(plain, "%d %d %d %d %d %d", &k[0], &k[1], &k[2], &k[3], &k[4], &k[5]) == 6);
	printf("without the library: %s", plain);
	setenv("SAMEPAGE_WINDOW", "mprotect", 1);
	const char *r[] = {"--", workload, "rawcalls", NULL};
	CHECK_EQ_INT(run_plain(r, out, sizeof(out)), 0);
	unsetenv("SAMEPAGE_WINDOW");
	REQUIRE(sscanf(out, "%d %d %d %d %d %d", &w[0], &w[1], &w[2], &w[3], &w[4], &w[5]) == 6);
	printf("with it, the mprotect window: %s", out);
	if (k[0] == 0)
		CHECK_EQ_INT(w[0], EPERM); /* io_uring_setup */
	else
		printf("# io_uring refused on this host without the library (%d)\n", k[0]);
	for (int i = 1; i <= 2; i++) /* /dev/kvm by openat, openat2 */
		if (k[i] == 0)
			CHECK_EQ_INT(w[i], EPERM);
		else
			printf("# /dev/kvm not opened here without the library (%d)\n", k[i]);
	CHECK_EQ_INT(k[3], 1); /* SIGSEGV blocked by the kernel's rule, */
	CHECK_EQ_INT(w[3], 0); /* not under the mprotect window */
	CHECK_EQ_INT(k[4], EINVAL);
	CHECK_EQ_INT(w[4], EINVAL); /* syscall()'s -1 and errno, not -EINVAL */
	CHECK_EQ_INT(k[5], EBADF);
	CHECK_EQ_INT(w[5], EBADF); /* a number not routed: the same answer */
	/* A signal stack set by syscall(SYS_sigaltstack) is kept from merge
	 * windows, as sigaltstack()'s is (RELIABILITY.md 97): before, the
	 * probe was killed by SIGSEGV under the mprotect window. */
	setenv("SAMEPAGE_WINDOW", "mprotect", 1);
	const char *s[] = {FAST, "--", workload, "altstack", "3000", NULL};
	CHECK_EQ_INT(run_plain(s, out, sizeof(out)), 0);
	unsetenv("SAMEPAGE_WINDOW");
	/* Merged pages sealed by syscall(SYS_mseal) get private copies
	 * first (RELIABILITY.md 113): a discard works (before: EPERM). */
	const char *m[] = {FAST, "--", workload, "seal", NULL};
	int sealed = run_plain(m, out, sizeof(out));
	if (sealed == 2)
		printf("# no mseal(2) in this kernel: Linux 6.10 has it\n");
	else
		CHECK_EQ_INT(sealed, 0);
	/* libaio, which makes its calls through syscall(), reads as ever
	 * (it recursed through the wrappers until the stack overflowed). */
	const char *l[] = {FAST, "--", workload, "libaio", NULL};
	int rc = run_plain(l, out, sizeof(out));
	if (rc == 2)
		printf("# no libaio.so.1 here (CI installs it with QEMU)\n");
	else
		CHECK_EQ_INT(rc, 0);
}

/* argv under ksmctl --user run: its exit status (-1 if it was still
 * running after a minute, then killed), its standard output in out. */
static int run_bounded(const char *const *argv, char *out, size_t len)
{
	struct prog p = start(argv);
	close(p.in);
	int st = 0;
	for (int i = 0; i < 600 && waitpid(p.pid, &st, WNOHANG) == 0; i++)
		usleep(100000);
	if (kill(p.pid, 0) == 0 && waitpid(p.pid, &st, WNOHANG) == 0) {
		kill(p.pid, SIGKILL);
		waitpid(p.pid, &st, 0);
		st = -1;
	}
	size_t n = fread(out, 1, len - 1, p.out);
	out[n] = 0;
	fclose(p.out);
	return st < 0 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A program whose main thread ends by pthread_exit() ends when its last
 * thread does, its output flushed; one in SECCOMP_MODE_STRICT ends with
 * its exit system call's status.  Both went on for ever (the engine's
 * thread alive, blocking the program's signals: not even a SIGTERM ended
 * them), the strict one at 100% of a CPU. */
static void test_mainexit(void)
{
	char out[256];
	const char *m[] = {FAST, "--", workload, "mainexit", NULL};
	int rc = run_bounded(m, out, sizeof(out));
	printf("main thread ended by pthread_exit(): exit %d, output \"%s\"\n", rc, out);
	CHECK_EQ_INT(rc, 0);
	CHECK(strstr(out, "the last thread") != NULL);
	const char *k[] = {FAST, "--", workload, "strict", "3", NULL};
	rc = run_bounded(k, out, sizeof(out));
	printf("SECCOMP_MODE_STRICT, exit(3): exit %d, output \"%s\"\n", rc, out);
	CHECK_EQ_INT(rc, 3);
	CHECK(strstr(out, "strict") != NULL);
}

/* A program that execs (or spawns) another with an environment of its own
 * (env -i, subprocess's env=, ProcessBuilder's environment().clear()):
 * the program it runs is on the library still, merge-any as the kernel
 * keeps it across exec (on, or off once the program turned it off).  It
 * ran without the library. */
static void test_execenv(void)
{
	static const char *const hows[] = {"execve",  "execle",	     "execvpe",
					   "fexecve", "clearenv",    "syscall",
					   "vfork",   "posix_spawn", "anyoff"};
	for (size_t k = 0; k < sizeof(hows) / sizeof(hows[0]); k++) {
		char out[128];
		const char *a[] = {"--", workload, "execenv", hows[k], NULL};
		int rc = run_plain(a, out, sizeof(out));
		int on = -1, any = -1;
		sscanf(out, "preload=%d any=%d", &on, &any);
		printf("%s: exit %d, %s", hows[k], rc, out[0] ? out : "(nothing)\n");
		CHECK_EQ_INT(rc, 0);
		CHECK_EQ_INT(on, 1);
		CHECK_EQ_INT(any, strcmp(hows[k], "anyoff") ? 1 : 0);
	}
}

static void test_shell(void)
{
	static const char script[] =
	    "exec 3<>\"$1/f3\" 4<>\"$1/f4\" 5<>\"$1/f5\" 6<>\"$1/f6\" 7<>\"$1/f7\" "
	    "8<>\"$1/f8\" || exit 3\n"
	    "for n in 3 4 5 6 7 8; do head -c 1048576 /dev/zero | tr '\\0' X >&$n || exit 4; done\n"
	    "for r in 1 2 3 4 5 6; do\n"
	    "  a=$(printf '%*s' 8000000 ''); b=$(printf '%*s' 8000000 ''); sleep 0.5\n"
	    "  unset a b; sleep 0.2\n"
	    "done\n";
	const char *a[] = {FAST, "--", "/bin/bash", "-c", script, "shell", dir, NULL};
	char out[256];
	if (access("/bin/bash", X_OK)) {
		printf("# no /bin/bash here: the script's part not run\n");
	} else {
		CHECK_EQ_INT(run_plain(a, out, sizeof(out)), 0);
		char *got = malloc((1 << 20) + 1);
		REQUIRE(got);
		for (int n = 3; n <= 8; n++) {
			char path[160];
			snprintf(path, sizeof(path), "%s/f%d", dir, n);
			int fd = open(path, O_RDONLY | O_CLOEXEC);
			ssize_t len = fd < 0 ? -1 : read(fd, got, (1 << 20) + 1);
			size_t changed = 0;
			for (ssize_t i = 0; i < len && i < (1 << 20); i++)
				changed += got[i] != 'X';
			printf("%s: %zd bytes, %zu not as written\n", path, len, changed);
			CHECK_EQ_INT(len, 1 << 20);
			CHECK_EQ_U64(changed, 0);
			if (fd >= 0)
				close(fd);
			unlink(path);
		}
		free(got);
	}
	const char *d[] = {"--", workload, "dupown", NULL};
	int pool, e[4];
	CHECK_EQ_INT(run_plain(d, out, sizeof(out)), 0);
	REQUIRE(sscanf(out, "%d %d %d %d %d", &pool, &e[0], &e[1], &e[2], &e[3]) == 5);
	printf("the pool at %d; dup2, dup3, syscall()'s onto it: %d %d %d %d\n", pool, e[0], e[1],
	       e[2], e[3]);
	for (int i = 0; i < 4; i++)
		CHECK_EQ_INT(e[i], EBUSY);
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: test_preload CASE KSMCTL WORKLOAD SAMEPAGED [STATIC]\n");
		return 2;
	}
	const char *c = argv[1];
	ksmctl = argv[2], workload = argv[3], samepaged = argv[4];
	signal(SIGPIPE, SIG_IGN);
	REQUIRE(mkdtemp(dir));
	if (!strcmp(c, "private")) {
		const char *a[] = {FAST, "--", workload, "fill", "64", "7", NULL};
		merges(a, 64);
	} else if (!strcmp(c, "madvise")) {
		const char *a[] = {"--no-merge-any", FAST, "--", workload, "fill", "64", "7",
				   "madvise",	     NULL};
		merges(a, 64);
	} else if (!strcmp(c, "prctl")) {
		const char *a[] = {"--no-merge-any", FAST, "--", workload, "fill", "64", "7",
				   "prctl",	     NULL};
		merges(a, 64);
	} else if (!strcmp(c, "dontfork")) {
		const char *a[] = {"--no-merge-any", FAST, "--", workload, "fill", "64", "7",
				   "dontfork",	     NULL};
		merges(a, 64);
	} else if (!strcmp(c, "exec")) {
		const char *a[] = {FAST, "--", workload, "exec", "64", "3", NULL};
		merges(a, 64);
	} else if (!strcmp(c, "fork")) {
		test_fork();
	} else if (!strcmp(c, "domain")) {
		test_domain();
	} else if (!strcmp(c, "static")) {
		if (argc < 6 || access(argv[5], X_OK))
			SKIP("no statically linked workload (glibc's static libraries missing)");
		test_static(argv[5]);
	} else if (!strcmp(c, "malloc")) {
		char out[1024];
		const char *a[] = {FAST, "--", workload, "malloc", "20", "4", NULL};
		CHECK_EQ_INT(run_plain(a, out, sizeof(out)), 0);
	} else if (!strcmp(c, "blocks")) {
		/* malloc's blocks merge (free and realloc interposed), and a
		 * block freed and allocated again never reads what a merge
		 * compared before (RELIABILITY.md 41). */
		const char *a[] = {FAST, "--", workload, "blocks", "64", "7", NULL};
		merges(a, 64);
		/* And in a program without PIE that takes free's address
		 * (Node.js's builds): dlsym() finds the program's own PLT entry
		 * for free, which calls the library's; its blocks were kept out
		 * as if the program's free were another malloc's. */
		char nopie[PATH_MAX];
		snprintf(nopie, sizeof(nopie), "%s_nopie", workload);
		const char *np[] = {FAST, "--", nopie, "blocks", "64", "7", NULL};
		merges(np, 64);
		char out[1024];
		const char *r[] = {FAST, "--", workload, "reuse", "20", "4", NULL};
		CHECK_EQ_INT(run_plain(r, out, sizeof(out)), 0);
	} else if (!strcmp(c, "atfork")) {
		/* Fork handlers run before the preload library's free a block
		 * and map, re-protect, discard and unmap memory while the
		 * forking thread holds its locks: the child hung in free()
		 * (RELIABILITY.md 42), then in munmap() and the others (44). */
		const char *lib = getenv("SAMEPAGE_TEST_ATFORK");
		REQUIRE(lib && *lib);
		setenv("LD_PRELOAD", lib, 1); /* after the preload library */
		char out[64];
		const char *a[] = {FAST, "--", workload, "forks", "40", NULL};
		CHECK_EQ_INT(run_plain(a, out, sizeof(out)), 0);
		unsetenv("LD_PRELOAD");
	} else if (!strcmp(c, "kvm")) {
		if (access("/dev/kvm", F_OK))
			SKIP("no /dev/kvm on this machine");
		char out[64];
		setenv("SAMEPAGE_WINDOW", "mprotect", 1);
		const char *a[] = {"--", workload, "kvm", NULL};
		int rc = run_plain(a, out, sizeof(out)), e[5] = {0};
		/* Refused by every name, not only "/dev/kvm" (a relative path
		 * or openat in /dev opened it). */
		CHECK_EQ_INT(rc, 1);
		CHECK_EQ_INT(sscanf(out, "%d %d %d %d %d", &e[0], &e[1], &e[2], &e[3], &e[4]), 5);
		for (int i = 0; i < 5; i++)
			CHECK_EQ_INT(e[i], EPERM);
		/* With the userfaultfd window (root here; CI runs as root) KVM
		 * is let in, by every name: QEMU with KVM runs. */
		unsetenv("SAMEPAGE_WINDOW");
		if (geteuid() == 0 && access("/dev/kvm", R_OK | W_OK) == 0) {
			CHECK_EQ_INT(run_plain(a, out, sizeof(out)), 0);
			CHECK_EQ_INT(strncmp(out, "0 0 0 0 0", 9), 0);
		} else {
			printf("# not root: the userfaultfd window's /dev/kvm not checked\n");
		}
	} else if (!strcmp(c, "dma")) {
		/* The kernel's answer without the library; refused with it. */
		const char *a[] = {workload, "dma", NULL};
		CHECK_EQ_INT(run_unpreloaded(a, NULL, 0), 0);
		char err[4096];
		CHECK_EQ_INT(run_preloaded("SAMEPAGE_MERGE_ANY", "1", "dma", err, sizeof(err)), 1);
		CHECK(strstr(err, "refusing a device DMA mapping (VFIO_IOMMU_MAP_DMA)") != NULL);
		CHECK(strstr(err, "refusing a device DMA mapping (IOMMU_IOAS_MAP)") != NULL);
	} else if (!strcmp(c, "uring")) {
		/* Without the library the ring is made (else this host has no
		 * io_uring to refuse); with it, refused with the reason. */
		const char *a[] = {workload, "uring", NULL};
		int rc = run_unpreloaded(a, NULL, 0);
		if (rc == 2)
			SKIP("no liburing.so.2 (CI installs it with QEMU)");
		if (rc != 0)
			SKIP("io_uring is refused on this host without the library");
		char err[4096];
		CHECK_EQ_INT(run_preloaded("SAMEPAGE_MERGE_ANY", "1", "uring", err, sizeof(err)),
			     1);
		CHECK(strstr(err, "refusing io_uring (io_uring_queue_init)") != NULL);
		CHECK(strstr(err, "fix: ") != NULL);
	} else if (!strcmp(c, "syscall")) {
		test_syscall();
	} else if (!strcmp(c, "uffd_device")) {
		test_uffd_device();
	} else if (!strcmp(c, "opennull")) {
		char out[64];
		const char *a[] = {"--", workload, "opennull", NULL};
		CHECK_EQ_INT(run_plain(a, out, sizeof(out)), 0);
	} else if (!strcmp(c, "fork_away")) {
		test_fork_away();
	} else if (!strcmp(c, "execenv")) {
		test_execenv();
	} else if (!strcmp(c, "mainexit")) {
		test_mainexit();
	} else if (!strcmp(c, "shell")) {
		test_shell();
	} else if (!strcmp(c, "sigwait")) {
		char out[64];
		const char *a[] = {FAST, "--", workload, "sigwait", NULL};
		CHECK_EQ_INT(run_plain(a, out, sizeof(out)), 0);
	} else if (!strcmp(c, "signal")) {
		char out[64], num[8];
		int sigs[] = {SIGSEGV, SIGBUS};
		for (int k = 0; k < 2; k++) {
			snprintf(num, sizeof(num), "%d", sigs[k]);
			const char *a[] = {FAST, "--", workload, "kill", num, NULL};
			CHECK_EQ_INT(run_plain(a, out, sizeof(out)), 128 + sigs[k]);
		}
	} else if (!strcmp(c, "forks")) {
		char out[64];
		const char *a[] = {FAST, "--", workload, "forks", "300", NULL};
		CHECK_EQ_INT(run_plain(a, out, sizeof(out)), 0);
	} else if (!strcmp(c, "environment")) {
		test_environment();
	} else if (!strcmp(c, "late") || !strcmp(c, "upgrade")) {
		test_late(!strcmp(c, "upgrade"));
	} else if (!strcmp(c, "jvm")) {
		if (argc < 7)
			SKIP("no path of pools.py, beside which Heap.java is");
		char heap[PATH_MAX];
		snprintf(heap, sizeof(heap), "%.*s/Heap.java",
			 (int)(strrchr(argv[6], '/') - argv[6]), argv[6]);
		test_jvm(heap);
	} else if (!strcmp(c, "pools")) {
		if (argc < 7 || access("/usr/bin/python3", X_OK))
			SKIP("no /usr/bin/python3 (CI installs it)");
		start_daemon();
		char out[4096] = "";
		const char *a[] = {"--domain", "vms", "--", "/usr/bin/python3", argv[6], NULL};
		for (int k = 0; k < 2; k++) {
			struct prog p = start(a);
			pid_t w = watch(p.pid, 240); /* a run takes 10-60 s */
			int rc = output_of(p, out, sizeof(out));
			CHECK(!stop_watch(w));
			printf("run %d: exit %d, %s", k + 1, rc, out);
			CHECK_EQ_INT(rc, 0);
			CHECK(!strcmp(out, "done\n"));
		}
	} else {
		fprintf(stderr, "no case %s\n", c);
		return 2;
	}
	if (daemon_pid > 0) {
		kill(daemon_pid, SIGTERM);
		waitpid(daemon_pid, NULL, 0);
	}
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf %s %s", dir, state_dir());
	if (system(cmd))
		fprintf(stderr, "could not remove %s\n", dir);
	return check_report(c);
}
