// SPDX-License-Identifier: MIT
/*
 * test_immutable.c - one client cannot change the memory of another client
 * of its domain (issue 9.3).
 *
 * samepaged runs as root and serves processes of another user (nobody,
 * --allow-user), as a VM host's system service serves its VM monitors.  A
 * victim merges pages; an attacker of the same domain, holding everything
 * HELLO hands out, tries every way to change the pool under them: write
 * the pool or the guard through their descriptors, map them shared and
 * writable, reopen or re-permission them, punch the pool, have the daemon
 * PLACE its contents over the victim's KSM pages, corrupt the shared index
 * so that the daemon's sweep punches them.  Every attempt must fail, and
 * the victim's memory must read what it wrote.  Both are a tenant's
 * (--allow-user nobody:vm): the attacker also writes a knob into its
 * domain's index, and a daemon restarted without its --config must not
 * take it as every domain's.
 *
 * Usage: test_immutable PATH-TO-SAMEPAGED (as root; skips otherwise)
 */
#include "../lib/util.h"
#include "../../lib/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#define VICTIM_PAGES 256
static char dir[] = "/tmp/samepage-immutable-XXXXXX";
static char sock[100], state[100];
static struct passwd *pw;

static void become_nobody(void)
{
	if (setgid(pw->pw_gid) || setuid(pw->pw_uid))
		_exit(126);
	/* A process that changed its user is not dumpable: its /proc/self
	 * files stay root's.  A VM monitor started as its user is. */
	prctl(PR_SET_DUMPABLE, 1);
	setenv("SAMEPAGE_SOCKET", sock, 1);
}

/* The victim: merges its pages, says so, waits, then checks them. */
static void victim(int ready, int go)
{
	become_nobody();
	samepage_t *sp;
	int err = samepage_connect(&sp, "vm");
	if (err) {
		fprintf(stderr, "victim: samepage_connect: %s\n", samepage_strerror(err));
		_exit(10);
	}
	char *p = mmap(NULL, VICTIM_PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	memset(p, 'v', VICTIM_PAGES * PG);
	for (size_t i = 0; i < VICTIM_PAGES / 2; i++) /* half of them: a run of contents */
		p[i * PG] = (char)i;
	if (samepage_madvise(sp, p, VICTIM_PAGES * PG, SAMEPAGE_MERGEABLE))
		_exit(11);
	for (int i = 0; i < 30000 && pages_mapping_pool(p, VICTIM_PAGES) < VICTIM_PAGES / 2; i++)
		usleep(1000);
	size_t merged = pages_mapping_pool(p, VICTIM_PAGES);
	REQUIRE(write(ready, &merged, sizeof(merged)) == sizeof(merged));
	char c;
	REQUIRE(read(go, &c, 1) == 1);
	size_t bad = 0;
	for (size_t i = 0; i < VICTIM_PAGES; i++)
		for (size_t k = 0; k < PG; k++)
			bad += p[i * PG + k] != (i < VICTIM_PAGES / 2 && k == 0 ? (char)i : 'v');
	if (bad)
		fprintf(stderr, "victim: %zu bytes of its memory changed\n", bad);
	_exit(bad ? 1 : 0);
}

/* HELLO on a raw connection: the four descriptors. */
static int hello(int fds[4])
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
	int s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0)
		return -1;
	char req[32];
	int n = snprintf(req, sizeof(req), "HELLO vm %d", SHARED_LAYOUT);
	send(s, req, (size_t)n, 0);
	char buf[256], cbuf[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov = {buf, sizeof(buf)};
	struct msghdr m = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	if (recvmsg(s, &m, 0) <= 0 || !CMSG_FIRSTHDR(&m))
		return -1;
	memcpy(fds, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(int) * 4);
	return s;
}

/* Every way to write a read-only file handed over: each must fail. */
static int try_write(int fd, const char *what)
{
	int got = 0;
	char path[64], x[PG];
	memset(x, 'X', sizeof(x));
	if ((fcntl(fd, F_GETFL) & O_ACCMODE) != O_RDONLY)
		got++, fprintf(stderr, "attacker: %s is not read-only\n", what);
	if (pwrite(fd, x, PG, 0) >= 0)
		got++, fprintf(stderr, "attacker: wrote %s\n", what);
	void *m = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m != MAP_FAILED)
		got++, fprintf(stderr, "attacker: mapped %s shared and writable\n", what);
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 1 << 20) == 0)
		got++, fprintf(stderr, "attacker: punched %s\n", what);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int rw = open(path, O_RDWR);
	if (rw >= 0)
		got++, fprintf(stderr, "attacker: reopened %s for writing\n", what);
	if (fchmod(fd, 0666) == 0)
		got++, fprintf(stderr, "attacker: changed the mode of %s\n", what);
	return got;
}

/* The attacker: exits with the number of attempts that succeeded. */
static void attacker(void)
{
	become_nobody();
	int fds[4];
	int conn = hello(fds);
	if (conn < 0)
		_exit(100);
	int got = try_write(fds[1], "the pool") + try_write(fds[3], "the guard");
	/* The index is shared and writable: find the victim's KSM pages. */
	char *ix =
	    mmap(NULL, DOM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fds[0], 0);
	char *lg =
	    mmap(NULL, LEDGER_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fds[2], 0);
	if (ix == MAP_FAILED || lg == MAP_FAILED)
		_exit(101);
	struct domain *d = (struct domain *)ix;
	struct stable_node *nodes = (struct stable_node *)(ix + DOM_OFF_NODES);
	uint32_t used[PLACE_MAX], n = 0;
	for (uint32_t i = 0; i < d->nr && i < DOM_NODES && n < PLACE_MAX; i++)
		if (nodes[i].in_use)
			used[n++] = i;
	if (!n)
		_exit(102);
	/* PLACE its own contents over them. */
	for (uint32_t k = 0; k < n; k++) {
		memset(lg + LEDGER_OFF_STAGING + (size_t)k * PG, 'X', PG);
		((uint32_t *)(lg + LEDGER_OFF_PLACE))[k] = used[k];
	}
	char req[32], reply[64] = "";
	snprintf(req, sizeof(req), "PLACE %u", n);
	send(conn, req, strlen(req), 0);
	ssize_t r = recv(conn, reply, sizeof(reply) - 1, 0);
	if (r > 0 && atoi(reply + 3) > 0)
		got++, fprintf(stderr, "attacker: the daemon placed %s of its pages\n", reply + 3);
	/* Say every KSM page is free, and that pages were freed: the sweep
	 * must still find the victim's references. */
	for (uint32_t i = 0; i < d->nr && i < DOM_NODES; i++)
		nodes[i].in_use = 0, nodes[i].mapcount = 0, nodes[i].pinned = 0;
	d->reclaimed += 1000;
	/* The index's knobs are the domain's, which a client may write:
	 * they must not become the daemon's. */
	d->knob[KNOB_pages_to_scan] = 12345;
	sleep(7); /* past the daemon's forced sweep (every 5 s) */
	_exit(got);
}

/* samepaged as root for nobody's tenant (its domain: vm), with a config
 * file or none; returns once it answers. */
static pid_t start_daemon(const char *bin, const char *conf)
{
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		if (conf)
			execl(bin, bin, "--foreground", "--socket", sock, "--state-dir", state,
			      "--allow-user", "nobody:vm", "--config", conf, (char *)NULL);
		else
			execl(bin, bin, "--foreground", "--socket", sock, "--state-dir", state,
			      "--allow-user", "nobody:vm", (char *)NULL);
		_exit(127);
	}
	char reply[256];
	for (int i = 0; i < 5000 && samepage_control(sock, "GET run", reply, sizeof(reply)); i++)
		usleep(2000);
	return pid;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_immutable PATH-TO-SAMEPAGED\n");
		return 2;
	}
	if (geteuid() != 0)
		SKIP("needs root to run samepaged for another user's clients");
	pw = getpwnam("nobody");
	if (!pw)
		SKIP("no user nobody");
	signal(SIGPIPE, SIG_IGN);
	REQUIRE(mkdtemp(dir));
	REQUIRE(chmod(dir, 0755) == 0);
	snprintf(sock, sizeof(sock), "%s/sock", dir);
	snprintf(state, sizeof(state), "/dev/shm/%s", strrchr(dir, '/') + 1);
	/* The knobs from a config file, as a system unit may start it. */
	char conf[160];
	snprintf(conf, sizeof(conf), "%s/samepaged.conf", dir);
	FILE *f = fopen(conf, "w");
	REQUIRE(f && fputs("pages_to_scan = 100000\nsleep_millisecs = 0\nrun = 1\n", f) >= 0 &&
		fclose(f) == 0);
	pid_t daemon = start_daemon(argv[1], conf);
	char reply[256];

	int ready[2], go[2];
	REQUIRE(pipe(ready) == 0 && pipe(go) == 0);
	pid_t v = fork();
	REQUIRE(v >= 0);
	if (v == 0)
		victim(ready[1], go[0]);
	close(ready[1]);
	size_t merged = 0;
	if (read(ready[0], &merged, sizeof(merged)) != sizeof(merged)) {
		int st;
		waitpid(v, &st, 0);
		fprintf(stderr, "the victim ended before its pages merged: status %d\n",
			WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
		kill(daemon, SIGTERM);
		return 1;
	}
	CHECK_GE_U64(merged, VICTIM_PAGES / 2); /* the victim's pages did merge */
	pid_t a = fork();
	REQUIRE(a >= 0);
	if (a == 0)
		attacker();
	int st;
	REQUIRE(waitpid(a, &st, 0) == a);
	CHECK(WIFEXITED(st));
	CHECK_EQ_INT(WEXITSTATUS(st), 0); /* no attempt of the attacker succeeded */
	/* Restarted without --config while the victim runs: the domain is
	 * taken back, and the knobs are the config's, not the index's. */
	kill(daemon, SIGTERM);
	waitpid(daemon, NULL, 0);
	daemon = start_daemon(argv[1], NULL);
	CHECK_EQ_INT(samepage_control(sock, "GET pages_to_scan", reply, sizeof(reply)), 0);
	CHECK(strstr(reply, "pages_to_scan 100000") != NULL);
	REQUIRE(write(go[1], "g", 1) == 1);
	REQUIRE(waitpid(v, &st, 0) == v);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0); /* the victim's memory is intact */
	kill(daemon, SIGTERM);
	waitpid(daemon, NULL, 0);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf %s %s", dir, state);
	if (system(cmd))
		fprintf(stderr, "could not remove %s\n", dir);
	return check_report("immutable");
}
