/* SPDX-License-Identifier: MIT */
/*
 * daemon_util.h - helpers for samepaged's tests: a daemon of the test's
 * own (private socket and state directory in /dev/shm, its log in a file),
 * and the raw protocol as any process could speak it.
 *
 * Waits have generous limits that only stop a hung test; none is a timing
 * assertion.
 */
#ifndef SAMEPAGE_TEST_DAEMON_UTIL_H
#define SAMEPAGE_TEST_DAEMON_UTIL_H

#include "../../lib/types.h" /* SHARED_LAYOUT */
#include "../lib/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

struct daemon {
	const char *bin;
	pid_t pid;
	char dir[256];		   /* everything of this test, removed at the end */
	char sock[300];		   /* DIR/s.sock */
	char state[300];	   /* DIR/state */
	char log[300];		   /* DIR/log: the daemon's standard error */
	const struct passwd *user; /* run as this user (NULL: the test's); set by the test */
};

/* fork(), the child then running as user pw (its uid and group): the
 * child's pid in the parent, 0 in the child, which exits 126 if it cannot
 * become pw. */
static inline pid_t fork_as(const struct passwd *pw)
{
	pid_t p = fork();
	REQUIRE(p >= 0);
	if (p == 0 && (setgid(pw->pw_gid) || setuid(pw->pw_uid)))
		_exit(126);
	return p;
}

static struct daemon *daemon_of_test;
static pid_t daemon_test_pid; /* a forked child's exit leaves the daemon alone */

/* Sends sig and waits for the daemon; its exit status. */
static inline int daemon_stop(struct daemon *d, int sig)
{
	int st = -1;
	if (d->pid > 0) {
		kill(d->pid, sig);
		waitpid(d->pid, &st, 0);
	}
	d->pid = 0;
	return st;
}

/* At exit, whatever the way (REQUIRE exits at once): the daemon is killed,
 * its log shown if anything failed, the directory removed. */
static void daemon_at_exit(void)
{
	struct daemon *d = daemon_of_test;
	if (getpid() != daemon_test_pid)
		return;
	bool failed = check_failed || d->pid > 0;
	daemon_stop(d, SIGKILL);
	char cmd[700];
	if (failed) {
		snprintf(cmd, sizeof(cmd), "echo '--- samepaged log:'; tail -n 40 %s", d->log);
		if (system(cmd))
			fprintf(stderr, "no log at %s\n", d->log);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d->dir);
	if (system(cmd))
		fprintf(stderr, "could not remove %s\n", d->dir);
}

/* A directory of its own in /dev/shm (tmpfs, as the daemon wants), and
 * SAMEPAGE_SOCKET pointing at its socket for samepage_connect().  One
 * daemon per test program, cleaned up at exit. */
static inline void daemon_init(struct daemon *d, const char *bin)
{
	daemon_of_test = d;
	daemon_test_pid = getpid();
	atexit(daemon_at_exit);
	d->bin = bin;
	d->pid = 0;
	snprintf(d->dir, sizeof(d->dir), "/dev/shm/samepaged-test-XXXXXX");
	REQUIRE(mkdtemp(d->dir));
	snprintf(d->sock, sizeof(d->sock), "%s/s.sock", d->dir);
	snprintf(d->state, sizeof(d->state), "%s/state", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/log", d->dir);
	setenv("SAMEPAGE_SOCKET", d->sock, 1);
	/* Floods need more descriptors than a default soft limit. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static inline int raw_dial(const struct daemon *d, bool nonblock);
static inline int raw_asks(int fd, const char *req, char *reply, size_t rlen);

/* Whether the daemon answers GET run with OK (in the raw protocol). */
static inline bool daemon_answers(const struct daemon *d)
{
	char reply[256];
	int fd = raw_dial(d, false);
	bool ok = fd >= 0 && raw_asks(fd, "GET run", reply, sizeof(reply)) > 0 &&
		  !strncmp(reply, "OK", 2);
	if (fd >= 0)
		close(fd);
	return ok;
}

/* Starts the daemon with extra options (NULL-terminated list, or NULL);
 * returns once it answers GET. */
static inline void daemon_start(struct daemon *d, const char *const *extra)
{
	const char *argv[32] = {d->bin,	 "--foreground", "--socket",
				d->sock, "--state-dir",	 d->state};
	int n = 6;
	for (; extra && *extra && n < 30; extra++)
		argv[n++] = *extra;
	argv[n] = NULL;
	int log = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	d->pid = d->user ? fork_as(d->user) : fork();
	REQUIRE(d->pid >= 0);
	if (d->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* a test killed by its timeout */
		if (log >= 0)
			dup2(log, 2);
		execv(d->bin, (char *const *)argv);
		_exit(127);
	}
	if (log >= 0)
		close(log);
	char reply[256];
	for (int i = 0; i < 5000; i++) {
		/* A daemon of another user is answered in the raw protocol:
		 * the library trusts no daemon but its own user's. */
		if (d->user ? daemon_answers(d)
			    : samepage_control(d->sock, "GET run", reply, sizeof(reply)) == 0)
			return;
		int st;
		if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
			fprintf(stderr, "samepaged exited (status %d) at start-up\n", st);
			d->pid = 0;
			REQUIRE(!"samepaged did not start");
		}
		usleep(2000);
	}
	REQUIRE(!"samepaged did not start");
}

/* A knob or counter, from GET name. */
static inline long long daemon_value(const struct daemon *d, const char *name)
{
	char req[128], reply[512];
	snprintf(req, sizeof(req), "GET %s", name);
	int err = samepage_control(d->sock, req, reply, sizeof(reply));
	if (err)
		fprintf(stderr, "GET %s: %s\n", name, samepage_strerror(err));
	REQUIRE(err == 0);
	char *nl = strchr(reply, '\n');
	REQUIRE(nl);
	return atoll(strchr(nl, ' ') + 1);
}

static inline void daemon_set(const struct daemon *d, const char *name, const char *value)
{
	char req[128], reply[512];
	snprintf(req, sizeof(req), "SET %s %s", name, value);
	int err = samepage_control(d->sock, req, reply, sizeof(reply));
	if (err)
		fprintf(stderr, "SET %s %s: %s (%s)\n", name, value, samepage_strerror(err), reply);
	REQUIRE(err == 0);
}

/* Lines of the daemon's log that hold text. */
static inline int daemon_log_count(const struct daemon *d, const char *text)
{
	char line[1024];
	int n = 0;
	FILE *f = fopen(d->log, "r");
	while (f && fgets(line, sizeof(line), f))
		n += strstr(line, text) != NULL;
	if (f)
		fclose(f);
	return n;
}

/* Whether the daemon's log holds text. */
static inline bool daemon_logged(const struct daemon *d, const char *text)
{
	return daemon_log_count(d, text) > 0;
}

/* Files of the state directory whose name starts with prefix and ends
 * with suffix. */
static inline int state_files(const struct daemon *d, const char *prefix, const char *suffix)
{
	int n = 0;
	DIR *dir = opendir(d->state);
	REQUIRE(dir);
	for (struct dirent *e; (e = readdir(dir));) {
		size_t len = strlen(e->d_name), sl = strlen(suffix);
		n += !strncmp(e->d_name, prefix, strlen(prefix)) && len >= sl &&
		     !strcmp(e->d_name + len - sl, suffix);
	}
	closedir(dir);
	return n;
}

/* The daemon's open descriptors. */
static inline int daemon_fds(const struct daemon *d)
{
	char path[64];
	int n = 0;
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)d->pid);
	DIR *dir = opendir(path);
	REQUIRE(dir);
	for (struct dirent *e; (e = readdir(dir));)
		n += e->d_name[0] != '.';
	closedir(dir);
	return n;
}

/* ---- the raw protocol ---- */

/* A connection to the daemon: its descriptor, or -errno. */
static inline int raw_dial(const struct daemon *d, bool nonblock)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%.107s", d->sock);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* Waits (10 s at most) for one packet: its length (0: closed), -ETIMEDOUT,
 * or -errno.  Descriptors passed with it are closed. */
static inline int raw_recv(int fd, char *buf, size_t len)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, 10000) == 0)
		return -ETIMEDOUT;
	char cbuf[CMSG_SPACE(sizeof(int) * 8)];
	struct iovec iov = {.iov_base = buf, .iov_len = len - 1};
	struct msghdr msg = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
				int f;
				memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(f));
				close(f);
			}
	return (int)n;
}

/* One request of len bytes, and its answer in reply: as raw_recv. */
static inline int raw_ask(int fd, const void *req, size_t len, char *reply, size_t rlen)
{
	if (send(fd, req, len, MSG_NOSIGNAL) < 0)
		return -errno;
	return raw_recv(fd, reply, rlen);
}

/* "HELLO <domain>" as this build's clients say it (control_hello), with
 * the shared files' layout after the name. */
#define LAYOUT_STR_(x) #x
#define LAYOUT_STR(x) LAYOUT_STR_(x)
#define HELLO(domain) "HELLO " domain " " LAYOUT_STR(SHARED_LAYOUT)

static inline int raw_asks(int fd, const char *req, char *reply, size_t rlen)
{
	return raw_ask(fd, req, strlen(req), reply, rlen);
}

/* The errno of an "ERR <errno> ..." reply, 0 for OK, -1 otherwise. */
static inline int reply_errno(const char *reply)
{
	if (!strncmp(reply, "OK", 2))
		return 0;
	return strncmp(reply, "ERR ", 4) ? -1 : atoi(reply + 4);
}

#endif
