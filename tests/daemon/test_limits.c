// SPDX-License-Identifier: MIT
/*
 * test_limits.c - one process cannot lock everyone else out of samepaged
 * (issue 9 item 5), spoken in the raw protocol as any process could:
 *
 *  - a flood of idle connections from one process is refused past
 *    --max-connections-per-process, and a new client still gets through;
 *  - a flood from several processes past --max-connections makes room by
 *    closing the connection idle the longest that never said HELLO;
 *  - a connection that never says HELLO, or a control connection that
 *    holds still, is closed after --idle-timeout; a client's (HELLO) is
 *    never;
 *  - more than 64 domain names, one after the other, do not fill the
 *    domain table: a domain is closed, and its files removed, when its
 *    last process goes;
 *  - --max-domains-per-process and --max-domains refuse with an error
 *    that names the option, and the log says it too;
 *  - a tenant (--allow-user nobody:t*) holds its share of the connections
 *    and of the domains at most, and root still gets both (as root only);
 *  - a ledger a tenant's gone process leaves for its forked children is
 *    kept only while a process maps it, whatever its fork area says, and
 *    counts in the tenant's shares meanwhile (as root only);
 *  - a domain is closed when its last process leaves it, and kept open
 *    while a ledger of it is kept (for a process that still maps its
 *    pool, or for a gone process's forked child).
 *
 * Usage: test_limits PATH-TO-SAMEPAGED
 */
#include "daemon_util.h"

#include <pwd.h>

static struct daemon D;

static void restart(const char *const *options)
{
	daemon_stop(&D, SIGTERM);
	daemon_start(&D, options);
}

/* A child process asks GET run (a new client): 0 if answered. */
static int new_client_gets_through(void)
{
	pid_t p = fork();
	REQUIRE(p >= 0);
	if (p == 0) {
		char reply[256];
		alarm(20); /* a daemon that never answers fails the test, not hangs it */
		int err = samepage_control(D.sock, "GET run", reply, sizeof(reply));
		if (err)
			fprintf(stderr, "new client: %s (%s)\n", samepage_strerror(err), reply);
		_exit(err ? 1 : 0);
	}
	int st;
	waitpid(p, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Opens up to n idle connections (fds[]); the number opened.  A full
 * listen backlog (EAGAIN) is waited out, 10 s in all at most. */
static int flood(int *fds, int n)
{
	int k = 0;
	for (int waits = 0; k < n && waits < 10000;) {
		fds[k] = raw_dial(&D, true);
		if (fds[k] == -EAGAIN) {
			waits++;
			usleep(1000);
			continue;
		}
		if (fds[k] < 0)
			break;
		k++;
	}
	return k;
}

static void close_all(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

static void test_flood_from_one_process(void)
{
	static int fds[1100];
	int n = flood(fds, 1100);
	printf("one process opened %d connections\n", n);
	CHECK_EQ_INT(n, 1100);
	CHECK_EQ_INT(new_client_gets_through(), 0);
	/* Past its 16th, each was answered with an error naming the option. */
	char reply[512];
	int got = raw_recv(fds[n - 1], reply, sizeof(reply));
	CHECK(got > 0 && reply_errno(reply) == EMFILE &&
	      strstr(reply, "--max-connections-per-process"));
	if (got > 0)
		printf("the last one was answered: %s\n", reply);
	CHECK(daemon_logged(&D, "--max-connections-per-process"));
	close_all(fds, n);
}

static void test_flood_from_many_processes(void)
{
	restart((const char *[]){"--max-connections", "24", "--max-connections-per-process", "8",
				 NULL});
	pid_t kids[4];
	int ready[2];
	REQUIRE(pipe(ready) == 0);
	for (int k = 0; k < 4; k++) {
		kids[k] = fork();
		REQUIRE(kids[k] >= 0);
		if (kids[k] == 0) {
			int fds[8], n = flood(fds, 8);
			if (write(ready[1], &n, sizeof(n)) != sizeof(n))
				_exit(1);
			pause();
			_exit(0);
		}
	}
	int total = 0;
	for (int k = 0; k < 4; k++) {
		int n = 0;
		REQUIRE(read(ready[0], &n, sizeof(n)) == sizeof(n));
		total += n;
	}
	close(ready[0]);
	close(ready[1]);
	printf("4 processes opened %d idle connections, --max-connections 24\n", total);
	CHECK_EQ_INT(new_client_gets_through(), 0);
	CHECK(daemon_logged(&D, "--max-connections"));
	for (int k = 0; k < 4; k++) {
		kill(kids[k], SIGKILL);
		waitpid(kids[k], NULL, 0);
	}
}

static void test_idle_timeout(void)
{
	restart((const char *[]){"--idle-timeout", "1", NULL});
	char reply[512];
	int silent = raw_dial(&D, false), still = raw_dial(&D, false), client = raw_dial(&D, false);
	REQUIRE(silent >= 0 && still >= 0 && client >= 0);
	CHECK_EQ_INT(reply_errno((raw_asks(still, "GET run", reply, sizeof(reply)), reply)), 0);
	CHECK_EQ_INT(reply_errno((raw_asks(client, HELLO("idle"), reply, sizeof(reply)), reply)),
		     0);
	/* The two without HELLO are told why, then closed (10 s at most). */
	for (int *fd = (int[]){silent, still, -1}; *fd >= 0; fd++) {
		int got = raw_recv(*fd, reply, sizeof(reply));
		CHECK(got > 0 && strstr(reply, "--idle-timeout"));
		CHECK_EQ_INT(raw_recv(*fd, reply, sizeof(reply)), 0);
		close(*fd);
	}
	CHECK(daemon_logged(&D, "--idle-timeout"));
	/* The client's connection outlived them and still answers. */
	CHECK_EQ_INT(reply_errno((raw_asks(client, "GET run", reply, sizeof(reply)), reply)), 0);
	close(client);
}

/* HELLO on a new connection: the errno of the answer (0: OK); the
 * connection stays open in *fd. */
static int hello(int *fd, const char *domain)
{
	char req[128], reply[512];
	*fd = raw_dial(&D, false);
	REQUIRE(*fd >= 0);
	snprintf(req, sizeof(req), "HELLO %s %d", domain, SHARED_LAYOUT);
	int got = raw_asks(*fd, req, reply, sizeof(reply));
	REQUIRE(got > 0);
	if (reply_errno(reply))
		printf("HELLO %s: %s\n", domain, reply);
	return reply_errno(reply);
}

/* Waits (10 s at most) until the state directory holds n files of the
 * prefix and suffix. */
static int wait_state_files(const char *prefix, const char *suffix, int n)
{
	int k = -1;
	for (int i = 0; i < 1000 && (k = state_files(&D, prefix, suffix)) != n; i++)
		usleep(10000);
	return k;
}

static void test_domain_churn(void)
{
	restart(NULL);
	for (int i = 0; i < 100; i++) {
		char name[32];
		int fd;
		snprintf(name, sizeof(name), "churn-%d", i);
		CHECK_EQ_INT(hello(&fd, name), 0);
		close(fd);
	}
	int fd;
	CHECK_EQ_INT(hello(&fd, "after-churn"), 0);
	close(fd);
	/* Every one closed when its process went, its files removed. */
	CHECK_EQ_INT(wait_state_files("churn-", "", 0), 0);
	CHECK_EQ_INT(wait_state_files("after-churn", "", 0), 0);
	CHECK_EQ_INT(daemon_value(&D, "pool_pages"), 0);
}

static void test_domains_per_process(void)
{
	int fd[6];
	for (int i = 0; i < 4; i++)
		CHECK_EQ_INT(hello(&fd[i], (const char *[]){"a", "b", "c", "d"}[i]), 0);
	CHECK_EQ_INT(hello(&fd[4], "e"), EMFILE);
	CHECK(daemon_logged(&D, "--max-domains-per-process"));
	CHECK_EQ_INT(hello(&fd[5], "a"), 0); /* a domain it is in already */
	close_all(fd, 6);
	CHECK_EQ_INT(wait_state_files("", ".index", 0), 0);
}

static void test_domain_table_full(void)
{
	restart((const char *[]){"--max-domains", "2", NULL});
	int fd[3];
	CHECK_EQ_INT(hello(&fd[0], "one"), 0);
	CHECK_EQ_INT(hello(&fd[1], "two"), 0);
	CHECK_EQ_INT(hello(&fd[2], "three"), ENFILE);
	CHECK(daemon_logged(&D, "--max-domains"));
	close(fd[0]);
	close(fd[2]);
	/* "one" is closed when its process leaves it: room for "three". */
	CHECK_EQ_INT(wait_state_files("one.", "", 0), 0);
	CHECK_EQ_INT(hello(&fd[2], "three"), 0);
	close(fd[1]);
	close(fd[2]);
}

/* HELLO domain, keeping a page of the pool mapped, as a client does:
 * the reply's errno; the connection in *fd. */
static int hello_map_pool(int *fd, const char *domain)
{
	char req[128], reply[256], cbuf[CMSG_SPACE(sizeof(int) * 4)];
	*fd = raw_dial(&D, false);
	REQUIRE(*fd >= 0);
	snprintf(req, sizeof(req), "HELLO %s %d", domain, SHARED_LAYOUT);
	REQUIRE(send(*fd, req, strlen(req), MSG_NOSIGNAL) > 0);
	struct iovec iov = {.iov_base = reply, .iov_len = sizeof(reply) - 1};
	struct msghdr m = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	ssize_t n = recvmsg(*fd, &m, MSG_CMSG_CLOEXEC);
	REQUIRE(n > 0);
	reply[n] = 0;
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	if (c && c->cmsg_type == SCM_RIGHTS) {
		int fds[4];
		memcpy(fds, CMSG_DATA(c), sizeof(fds));
		REQUIRE(mmap(NULL, 4096, PROT_READ, MAP_SHARED, fds[1], 0) != MAP_FAILED);
		for (int i = 0; i < 4; i++)
			close(fds[i]);
	}
	return reply_errno(reply);
}

/* A tenant's share: with one tenant, half of --max-connections 12 and of
 * --max-domains 4.  Before, nobody's processes took all 12 connections
 * (root's requests then waited for its idle ones to be closed) and every
 * domain (root's HELLO: ENFILE). */
static void test_tenant_share(void)
{
	struct passwd *pw = getpwnam("nobody");
	if (geteuid() != 0 || !pw) {
		printf("not root, or no user nobody: the tenant case skipped\n");
		return;
	}
	REQUIRE(chmod(D.dir, 0755) == 0);
	restart((const char *[]){"--allow-user", "nobody:t*", "--max-connections", "12",
				 "--max-domains", "4", NULL});
	int ready[2], go[2];
	REQUIRE(pipe(ready) == 0 && pipe(go) == 0);
	pid_t p = fork_as(pw);
	if (p == 0) {
		int fd[3], fds[12], n;
		char reply[512];
		CHECK_EQ_INT(hello_map_pool(&fd[0], "t1"), 0);
		CHECK_EQ_INT(hello(&fd[1], "t2"), 0);
		CHECK_EQ_INT(hello(&fd[2], "t3"), EMFILE);
		/* Its connection to t1 closed, the pool still mapped: the
		 * daemon keeps its ledger, and t1 still counts (the review
		 * filled the domain table so, past both limits). */
		close(fd[0]);
		char k = 'c'; /* the daemon's log is root's: the test reads it */
		if (write(ready[1], &k, 1) != 1 || read(go[0], &k, 1) != 1)
			_exit(1);
		CHECK_EQ_INT(hello(&fd[0], "t4"), EMFILE);
		/* Three connections held: three more, then refusals. */
		n = flood(fds, 12);
		int got = raw_recv(fds[n - 1], reply, sizeof(reply));
		CHECK(got > 0 && reply_errno(reply) == EMFILE &&
		      strstr(reply, "--max-connections-per-user"));
		/* A flood of refused requests: throttled in the log, for this
		 * user alone. */
		for (int i = 0; i < 200; i++)
			raw_asks(fd[0], "MAY elsewhere", reply, sizeof(reply));
		char c = 'r';
		if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(1);
		_exit(check_report("limits (tenant)"));
	}
	char c;
	REQUIRE(read(ready[0], &c, 1) == 1); /* t1's connection closed */
	bool kept = false;
	for (int i = 0; i < 1000 && !(kept = daemon_logged(&D, "still maps the pool")); i++)
		usleep(10000);
	CHECK(kept); /* the ledger kept, so its domain is still held */
	REQUIRE(write(go[1], "g", 1) == 1);
	REQUIRE(read(ready[0], &c, 1) == 1);
	/* Within the flood's second, a user not allowed at all (daemon, uid
	 * 1) is refused: its line is not hidden among the tenant's (it was,
	 * as "and N more like it"). */
	struct passwd *other = getpwnam("daemon");
	if (other) {
		pid_t o = fork_as(other);
		if (o == 0) {
			char r[256];
			_exit(samepage_control(D.sock, "GET run", r, sizeof(r)) == -EACCES ? 0 : 1);
		}
		int ost;
		REQUIRE(waitpid(o, &ost, 0) == o);
		CHECK(WIFEXITED(ost) && WEXITSTATUS(ost) == 0);
		char line[64];
		snprintf(line, sizeof(line), "of uid %d", (int)other->pw_uid);
		bool logged = false;
		for (int i = 0; i < 200 && !(logged = daemon_logged(&D, line)); i++)
			usleep(10000);
		CHECK(logged);
	}
	CHECK_EQ_INT(new_client_gets_through(), 0);
	int fd;
	CHECK_EQ_INT(hello(&fd, "rootdom"), 0);
	CHECK(daemon_logged(&D, "--max-domains-per-user"));
	REQUIRE(write(go[1], "g", 1) == 1);
	int st;
	REQUIRE(waitpid(p, &st, 0) == p);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	close(fd);
	close(ready[0]), close(ready[1]), close(go[0]), close(go[1]);
}

/* What keeps the ledger of tenant_with_pins's process once it exits. */
enum keeper {
	KEEPER_FORGED,	/* nothing: its fork area forged to say a child may live (pid 0) */
	KEEPER_CHILD,	/* a child that maps it, which the area names */
	KEEPER_UNNAMED, /* such a child, the area forged to name none (every pid 0) */
	KEEPER_HIDDEN,	/* KEEPER_UNNAMED, the child not dumpable (its maps unread) */
	KEEPER_OTHER,	/* nothing: the area forged to name another user's process */
};

/* The fork area of this process's ledger, as it maps it. */
static struct fork_shared *own_fork_area(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	unsigned long lo = 0, off = 1;
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, ".ledger") && sscanf(line, "%lx-%*x %*s %lx", &lo, &off) == 2 &&
		    off == 0)
			break;
	if (f)
		fclose(f);
	return off == 0 ? (struct fork_shared *)(lo + LEDGER_OFF_FORK) : NULL;
}

/* The tenant's process (forked as its user): merges 64 pages of one content in domain
 * t1 through the library, forks a child that exits at once (the fork
 * pins the pages, for its children: the ledger now keeps pins), and then
 * leaves `keeper` (a child that lives, maps the pool and the ledger, and
 * waits for a byte on `hold`, then says on `ready` whether its 64 pages
 * still hold what they did: 'g' or 'b').  It says so on `ready`, waits
 * for a byte on `go` if go >= 0, and exits. */
static void tenant_with_pins(enum keeper keeper, pid_t other, int ready, int hold, int go)
{
	prctl(PR_SET_DUMPABLE, 1); /* its /proc/self files, for the library */
	samepage_t *sp;
	int err = samepage_connect(&sp, "t1");
	if (err) {
		fprintf(stderr, "tenant: samepage_connect: %s\n", samepage_strerror(err));
		_exit(10);
	}
	const size_t n = 64;
	char *p = mmap(NULL, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(p != MAP_FAILED);
	memset(p, 'f', n * PG);
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	for (int i = 0; i < 30000 && pages_mapping_pool(p, n) < n / 2; i++)
		usleep(1000);
	if (pages_mapping_pool(p, n) < n / 2)
		_exit(11);
	pid_t c = fork();
	if (c == 0)
		_exit(0);
	waitpid(c, NULL, 0);
	if (keeper != KEEPER_FORGED && keeper != KEEPER_OTHER && (c = fork()) == 0) {
		/* It maps what its parent maps; its copy of the parent's
		 * connection closed, so that samepaged sees the parent go. */
		for (int fd = 3; fd < 1024; fd++)
			if (fd != hold && fd != ready)
				close(fd);
		if (keeper == KEEPER_HIDDEN)
			prctl(PR_SET_DUMPABLE, 0); /* a daemon not root cannot read its maps */
		char k;
		if (read(hold, &k, 1) < 0)
			_exit(1);
		size_t same = 0;
		for (size_t i = 0; i < n * PG; i++)
			same += p[i] == 'f';
		k = same == n * PG ? 'g' : 'b';
		_exit(write(ready, &k, 1) == 1 ? 0 : 1);
	}
	struct fork_shared *area = own_fork_area();
	if (!area)
		_exit(12);
	/* Every child registered (a child writes its own pid), then forged. */
	for (int i = 0;
	     i < 10000 && (atomic_load(&area->registered) != atomic_load(&area->started) ||
			   !atomic_load(&area->pids[atomic_load(&area->registered) - 1]));
	     i++)
		usleep(1000);
	uint32_t reg = atomic_load(&area->registered);
	if (reg < 1 || reg > MAX_FORK_CHILDREN)
		_exit(13);
	if (keeper == KEEPER_FORGED)
		atomic_store(&area->pids[0], 0);
	if (keeper == KEEPER_OTHER)
		atomic_store(&area->pids[0], other);
	for (uint32_t k = 0; k < reg && (keeper == KEEPER_UNNAMED || keeper == KEEPER_HIDDEN); k++)
		atomic_store(&area->pids[k], 0);
	char k = 'r';
	if (write(ready, &k, 1) != 1 || (go >= 0 && read(go, &k, 1) != 1))
		_exit(14);
	_exit(0);
}

/* Waits (12 s at most: a pass over the ledgers is every 5 s) until the
 * state directory holds n files of the prefix and suffix. */
static int wait_state_files_long(const char *prefix, const char *suffix, int n)
{
	int k = -1;
	for (int i = 0; i < 1200 && (k = state_files(&D, prefix, suffix)) != n; i++)
		usleep(10000);
	return k;
}

/* As nobody: HELLO t2 and t3 (the errnos in *t2, *t3), then connections
 * asking GET run until one is refused: how many were answered. */
static int tenant_shares_left(const struct passwd *pw, int *t2, int *t3)
{
	int out[2];
	REQUIRE(pipe(out) == 0);
	pid_t q = fork_as(pw);
	if (q == 0) {
		int fd[2], r[3] = {hello(&fd[0], "t2"), hello(&fd[1], "t3"), 0};
		char reply[512];
		for (int i = 0; i < 20; i++) {
			int c = raw_dial(&D, false);
			if (c < 0 || raw_asks(c, "GET run", reply, sizeof(reply)) <= 0 ||
			    reply_errno(reply))
				break;
			r[2]++;
		}
		_exit(write(out[1], r, sizeof(r)) == sizeof(r) ? 0 : 1);
	}
	int r[3] = {-1, -1, -1};
	REQUIRE(read(out[0], r, sizeof(r)) == sizeof(r));
	REQUIRE(waitpid(q, NULL, 0) == q);
	close(out[0]), close(out[1]);
	*t2 = r[0], *t3 = r[1];
	return r[2];
}

/*
 * RELIABILITY.md 82: a tenant's process wrote into its ledger's fork area
 * that a child might still live; once it exited, samepaged kept its ledger
 * (t1.PID.forked) and the domain for good, across restarts, counted in no
 * one's share.  Now a kept ledger stays only while a process maps it (a
 * forked child does), and counts in the tenant's shares meanwhile: with
 * --max-domains 4 and --max-connections 12 (a share of 2 and 6), a tenant
 * whose gone process's ledger a child keeps in t1 gets t2, not t3, and
 * three connections more (t2's, t3's and the ledger hold three).
 */
static void test_tenant_kept_ledgers(void)
{
	struct passwd *pw = getpwnam("nobody");
	if (geteuid() != 0 || !pw) {
		printf("not root, or no user nobody: the kept ledgers' case skipped\n");
		return;
	}
	REQUIRE(chmod(D.dir, 0755) == 0);
	restart((const char *[]){"--allow-user", "nobody:t*", "--max-connections", "12",
				 "--max-domains", "4", NULL});
	daemon_set(&D, "run", "1"); /* kept in the daemon's knobs file across the restarts */
	int ready[2], hold[2];
	char k;
	REQUIRE(pipe(ready) == 0 && pipe(hold) == 0);
	/* Forged: nothing maps the ledger once the process is gone. */
	pid_t t = fork_as(pw);
	if (t == 0)
		tenant_with_pins(KEEPER_FORGED, 0, ready[1], -1, -1);
	REQUIRE(read(ready[0], &k, 1) == 1);
	int st;
	REQUIRE(waitpid(t, &st, 0) == t);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	int forked = wait_state_files_long("t1.", ".forked", 0);
	printf("a forged fork area: %d kept ledgers of t1 left\n", forked);
	CHECK_EQ_INT(forked, 0);
	CHECK_EQ_INT(wait_state_files_long("t1.", ".index", 0), 0);
	restart((const char *[]){"--allow-user", "nobody:t*", "--max-connections", "12",
				 "--max-domains", "4", NULL});
	CHECK_EQ_INT(wait_state_files_long("t1.", ".forked", 0), 0);
	CHECK_EQ_INT(wait_state_files_long("t1.", ".index", 0), 0);
	/* Kept for a child that maps it: charged to the tenant. */
	if ((t = fork_as(pw)) == 0)
		tenant_with_pins(KEEPER_CHILD, 0, ready[1], hold[0], -1);
	REQUIRE(read(ready[0], &k, 1) == 1);
	REQUIRE(waitpid(t, &st, 0) == t);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK_EQ_INT(wait_state_files_long("t1.", ".forked", 1), 1);
	char owned[32];
	snprintf(owned, sizeof(owned), ".u%d.forked", (int)pw->pw_uid);
	CHECK_EQ_INT(state_files(&D, "t1.", owned), 1);
	int t2, t3, more = tenant_shares_left(pw, &t2, &t3);
	printf("with t1's kept ledger: HELLO t2 %d, t3 %d, then %d connections\n", t2, t3, more);
	CHECK_EQ_INT(t2, 0);
	CHECK_EQ_INT(t3, EMFILE);
	CHECK_EQ_INT(more, 3);
	/* And across a restart, from its name. */
	restart((const char *[]){"--allow-user", "nobody:t*", "--max-connections", "12",
				 "--max-domains", "4", NULL});
	CHECK_EQ_INT(state_files(&D, "t1.", owned), 1);
	more = tenant_shares_left(pw, &t2, &t3);
	CHECK_EQ_INT(t3, EMFILE);
	CHECK_EQ_INT(more, 3);
	/* The child gone, so are the ledger and the domain. */
	REQUIRE(write(hold[1], "e", 1) == 1);
	CHECK_EQ_INT(wait_state_files_long("t1.", ".forked", 0), 0);
	CHECK_EQ_INT(wait_state_files_long("t1.", ".index", 0), 0);
	CHECK(daemon_logged(&D, "forked children are gone"));
	close(ready[0]), close(ready[1]), close(hold[0]);
}

/*
 * RELIABILITY.md 98: a kept ledger whose fork area names no child (every
 * pid 0, as a client killed in the middle of a fork leaves it, or as a
 * tenant writes it) had every process's maps read at each 5 s pass while
 * a child kept it.  The child found is now looked at first: the ledger is
 * kept while it maps it (two passes here), the child's pages unchanged,
 * and reaped once it is gone.
 */
static void test_tenant_unnamed_keeper(void)
{
	struct passwd *pw = getpwnam("nobody");
	if (geteuid() != 0 || !pw) {
		printf("not root, or no user nobody: the unnamed keeper's case skipped\n");
		return;
	}
	int ready[2], hold[2], st;
	char k = 0, owned[32];
	REQUIRE(pipe(ready) == 0 && pipe(hold) == 0);
	pid_t t = fork_as(pw);
	if (t == 0)
		tenant_with_pins(KEEPER_UNNAMED, 0, ready[1], hold[0], -1);
	REQUIRE(read(ready[0], &k, 1) == 1);
	REQUIRE(waitpid(t, &st, 0) == t);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	snprintf(owned, sizeof(owned), ".u%d.forked", (int)pw->pw_uid);
	CHECK_EQ_INT(wait_state_files_long("t1.", owned, 1), 1);
	sleep(11); /* two passes more: its child, found before, still keeps it */
	CHECK_EQ_INT(state_files(&D, "t1.", owned), 1);
	REQUIRE(write(hold[1], "e", 1) == 1);
	REQUIRE(read(ready[0], &k, 1) == 1);
	printf("an unnamed child kept the ledger; its pages: %s\n",
	       k == 'g' ? "unchanged" : "changed");
	CHECK_EQ_INT(k, 'g');
	CHECK_EQ_INT(wait_state_files_long("t1.", ".forked", 0), 0);
	CHECK_EQ_INT(wait_state_files_long("t1.", ".index", 0), 0);
	close(ready[0]), close(ready[1]), close(hold[0]), close(hold[1]);
}

/* This process joins domain and leaves it (its ledger reaped): whether
 * samepaged closed the domain then. */
static bool closed_after_one_leaves(const char *domain)
{
	char said[128], mine[96];
	int fd;
	snprintf(said, sizeof(said), "domain %s: no process left, closed", domain);
	snprintf(mine, sizeof(mine), "%s.%d.", domain, (int)getpid());
	int before = daemon_log_count(&D, said);
	CHECK_EQ_INT(hello(&fd, domain), 0);
	close(fd);
	CHECK_EQ_INT(wait_state_files(mine, ".ledger", 0), 0);
	daemon_value(&D, "run"); /* answered once it has decided (it does one thing at a time) */
	snprintf(mine, sizeof(mine), "%s.", domain);
	return daemon_log_count(&D, said) > before || state_files(&D, mine, ".index") == 0;
}

/*
 * RELIABILITY.md 106: a domain is closed when its last process leaves it
 * and no ledger of it is left.  Whether one is left, samepaged now tells
 * from the ledgers it lists (the ones held without a connection), not by
 * a walk of the state directory at every process that leaves.  The same
 * decisions, in the cases the list must get right:
 *  - a domain whose last process leaves is closed at once;
 *  - a process that closed its connection but still maps the pool keeps
 *    its domain open when another process leaves it (before an orphan
 *    pass lists its ledger, and after a restart), until it exits;
 *  - so does a gone process's ledger kept for its forked child, until the
 *    child exits (root: it reads its pages' frames).
 */
static void test_close_decisions(void)
{
	restart(NULL);
	daemon_set(&D, "run", "1");
	CHECK(closed_after_one_leaves("plain"));
	CHECK_EQ_INT(wait_state_files("plain.", "", 0), 0);
	int hold[2], ready[2], st;
	char k = 0, said[128];
	REQUIRE(pipe(hold) == 0 && pipe(ready) == 0);
	pid_t keeper = fork();
	if (keeper == 0) {
		int c;
		close(hold[1]);
		if (hello_map_pool(&c, "kept"))
			_exit(1);
		close(c); /* a pool page still mapped */
		_exit(read(hold[0], &k, 1) == 1 ? 0 : 1);
	}
	snprintf(said, sizeof(said), "domain kept: process %d closed its connection but still maps",
		 (int)keeper);
	for (int i = 0; i < 1000 && !daemon_logged(&D, said); i++)
		usleep(10000);
	CHECK(daemon_logged(&D, said));
	bool closed = closed_after_one_leaves("kept");
	printf("a ledger kept for a process that still maps the pool: its domain %s\n",
	       closed ? "closed" : "kept open");
	CHECK(!closed);
	restart(NULL);
	CHECK(!closed_after_one_leaves("kept"));
	REQUIRE(write(hold[1], "e", 1) == 1);
	REQUIRE(waitpid(keeper, &st, 0) == keeper);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK_EQ_INT(wait_state_files_long("kept.", "", 0), 0);
	if (geteuid() != 0) {
		printf("not root: the forked child's case skipped\n");
		close(hold[0]), close(ready[0]), close(ready[1]);
		return;
	}
	/* A gone process's ledger kept for its child (t1.PID.u0.forked). */
	pid_t t = fork();
	if (t == 0)
		tenant_with_pins(KEEPER_CHILD, 0, ready[1], hold[0], -1);
	REQUIRE(read(ready[0], &k, 1) == 1);
	REQUIRE(waitpid(t, &st, 0) == t);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK_EQ_INT(wait_state_files_long("t1.", ".forked", 1), 1);
	closed = closed_after_one_leaves("t1");
	printf("a ledger kept for a forked child: its domain %s\n",
	       closed ? "closed" : "kept open");
	CHECK(!closed);
	REQUIRE(write(hold[1], "e", 1) == 1);
	REQUIRE(read(ready[0], &k, 1) == 1);
	CHECK_EQ_INT(k, 'g');
	CHECK_EQ_INT(wait_state_files_long("t1.", "", 0), 0);
	close(hold[0]), close(hold[1]), close(ready[0]), close(ready[1]);
}

/* A process of pw's that a daemon not root cannot read (not dumpable),
 * idle until a byte on idle. */
static pid_t hidden_process(const struct passwd *pw, int idle)
{
	pid_t h = fork_as(pw);
	if (h == 0) {
		char k;
		prctl(PR_SET_DUMPABLE, 0);
		_exit(read(idle, &k, 1) == 1 ? 0 : 1);
	}
	return h;
}

/* A client of pw's whose fork area names no child (tenant_with_pins,
 * KEEPER_FORGED), beside a hidden process of pw's started 0.1 s before it
 * (younger: after it), which lives until the client is gone and its
 * ledger reaped: how many ledgers are kept for the client's children
 * then (waited for to be none, as a pass may leave them). */
static int kept_beside_hidden(const struct passwd *pw, bool younger, int ready[2], int go[2])
{
	int idle[2], st;
	char k, mine[32];
	REQUIRE(pipe(idle) == 0);
	pid_t hidden = younger ? -1 : hidden_process(pw, idle[0]);
	usleep(100000); /* a start time of its own: they count in 10 ms ticks */
	pid_t t = fork_as(pw);
	if (t == 0)
		tenant_with_pins(KEEPER_FORGED, 0, ready[1], -1, go[0]);
	REQUIRE(read(ready[0], &k, 1) == 1);
	if (younger) {
		usleep(100000);
		hidden = hidden_process(pw, idle[0]);
	}
	REQUIRE(write(go[1], "x", 1) == 1);
	REQUIRE(waitpid(t, &st, 0) == t);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	snprintf(mine, sizeof(mine), "t1.%d.", (int)t);
	CHECK_EQ_INT(wait_state_files_long(mine, ".ledger", 0), 0);
	int kept = wait_state_files_long(mine, ".forked", 0);
	REQUIRE(write(idle[1], "e", 1) == 1);
	REQUIRE(waitpid(hidden, &st, 0) == hidden);
	close(idle[0]), close(idle[1]);
	return kept;
}

/*
 * ffab5c8 (RELIABILITY.md 82), under a samepaged that is not root (here
 * nobody's, serving nobody's processes), which cannot read the maps of
 * another user's process nor of one that is not dumpable:
 *  - a fork area that names another user's process (the test's, root's)
 *    no longer keeps a gone client's ledger (it did, whoever ran it): the
 *    pins are given back at once;
 *  - a process of the owner's it cannot read, started before the client,
 *    no longer keeps a ledger whose area names no child (RELIABILITY.md
 *    105), nor does one started after it (107);
 *  - a client gone while no samepaged ran (its owner not known), whose
 *    child is not dumpable and unnamed in the area: the ledger is kept
 *    (it was reaped and the pins given away while the child mapped
 *    them), under a name without an owner (no process was seen to map
 *    it).
 * Last: it leaves the daemon nobody's.
 */
static void test_daemon_not_root(void)
{
	struct passwd *pw = getpwnam("nobody");
	if (geteuid() != 0 || !pw) {
		printf("not root, or no user nobody: the unprivileged daemon's case skipped\n");
		return;
	}
	char cmd[400], reply[256], k = 0;
	daemon_stop(&D, SIGTERM);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", D.state);
	REQUIRE(system(cmd) == 0);
	REQUIRE(chown(D.dir, pw->pw_uid, pw->pw_gid) == 0);
	D.user = pw;
	daemon_start(&D, NULL);
	int c = raw_dial(&D, false);
	REQUIRE(c >= 0 && raw_asks(c, "SET run 1", reply, sizeof(reply)) > 0);
	CHECK_EQ_INT(reply_errno(reply), 0);
	close(c);
	int ready[2], hold[2], go[2], st;
	REQUIRE(pipe(ready) == 0 && pipe(hold) == 0 && pipe(go) == 0);
	/* The area names the test's process: unreadable, and not the owner's. */
	pid_t me = getpid(), t = fork_as(pw);
	if (t == 0)
		tenant_with_pins(KEEPER_OTHER, me, ready[1], -1, -1);
	REQUIRE(read(ready[0], &k, 1) == 1);
	REQUIRE(waitpid(t, &st, 0) == t);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	char mine[32];
	snprintf(mine, sizeof(mine), "t1.%d.", (int)t);
	CHECK_EQ_INT(wait_state_files_long(mine, ".ledger", 0), 0); /* the daemon saw it go */
	int kept = state_files(&D, mine, ".forked");
	printf("a daemon not root, an area naming root's process: %d kept ledgers\n", kept);
	CHECK_EQ_INT(kept, 0);
	CHECK_EQ_INT(wait_state_files_long("t1.", ".index", 0), 0);
	/* RELIABILITY.md 105: the area names no child (a pid 0: every process
	 * is looked at) and none lives; a process of the owner's that the
	 * daemon cannot read, started before the client, could not be its
	 * child.  It kept the ledger (as an ssh-agent would, for good). */
	kept = kept_beside_hidden(pw, false, ready, go);
	printf("a daemon not root, no child, an older hidden process of the owner's: %d kept "
	       "ledgers\n",
	       kept);
	CHECK_EQ_INT(kept, 0);
	CHECK_EQ_INT(wait_state_files_long("t1.", ".index", 0), 0);
	/* RELIABILITY.md 107: the same, the owner's hidden process started
	 * after the client (as an agent the user starts later is).  It could
	 * be its child, and kept the ledger for as long as it ran; the
	 * daemon now asks the kernel whether any process has the ledger
	 * open (maps it), and none has. */
	kept = kept_beside_hidden(pw, true, ready, go);
	printf("a daemon not root, no child, a younger hidden process of the owner's: %d kept "
	       "ledgers\n",
	       kept);
	CHECK_EQ_INT(kept, 0);
	CHECK_EQ_INT(wait_state_files_long("t1.", ".index", 0), 0);
	/* Gone while the daemon was stopped; its child hidden and unnamed. */
	if ((t = fork_as(pw)) == 0)
		tenant_with_pins(KEEPER_HIDDEN, 0, ready[1], hold[0], go[0]);
	REQUIRE(read(ready[0], &k, 1) == 1);
	daemon_stop(&D, SIGTERM);
	REQUIRE(write(go[1], "x", 1) == 1);
	REQUIRE(waitpid(t, &st, 0) == t);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	daemon_start(&D, NULL); /* its ledger is reaped, or kept, before it answers */
	snprintf(mine, sizeof(mine), "t1.%d.", (int)t);
	kept = state_files(&D, mine, ".forked");
	snprintf(mine, sizeof(mine), "t1.%d.u", (int)t);
	int named = state_files(&D, mine, ".forked");
	printf("a daemon not root, a hidden child, its owner unknown: %d kept ledgers (%d named "
	       "with an owner)\n",
	       kept, named);
	CHECK_EQ_INT(kept, 1);
	CHECK_EQ_INT(named, 0);
	REQUIRE(write(hold[1], "e", 1) == 1);
	REQUIRE(read(ready[0], &k, 1) == 1);
	printf("the hidden child's pages: %s\n", k == 'g' ? "unchanged" : "changed");
	CHECK_EQ_INT(k, 'g');
	close(ready[0]), close(ready[1]), close(hold[0]), close(hold[1]), close(go[0]),
	    close(go[1]);
}

int main(int argc, char **argv)
{
	REQUIRE(argc == 2);
	daemon_init(&D, argv[1]);
	daemon_start(&D, NULL);

	test_flood_from_one_process();
	test_domain_churn();
	test_domains_per_process();
	test_flood_from_many_processes();
	test_idle_timeout();
	test_domain_table_full();
	test_tenant_share();
	test_tenant_kept_ledgers();
	test_tenant_unnamed_keeper();
	test_close_decisions();
	test_daemon_not_root(); /* last: the daemon is nobody's from then on */

	CHECK_EQ_INT(daemon_stop(&D, SIGTERM), 0);
	return check_report("limits");
}
