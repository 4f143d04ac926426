// SPDX-License-Identifier: MIT
/*
 * test_trust.c - a client trusts only its own daemon (issue 9.2).
 *
 *  - samepaged run by another user (nobody) may not serve a root client:
 *    samepage_connect() and samepage_control() say -EACCES, and nothing of
 *    the client's memory is handed to that daemon;
 *  - a daemon of the right user that hands over a file anyone may write
 *    (mode 0666) is refused with -EACCES;
 *  - a daemon that refuses the client says why, and the client reports
 *    that errno (-EACCES), not the broken pipe it may have seen first;
 *  - a tenant (--allow-user nobody:vmA,vm-b*) joins only its domains,
 *    lists only their processes and changes no knob; root still may.
 *
 * Usage: test_trust PATH-TO-SAMEPAGED (as root; skips otherwise)
 */
#include "daemon_util.h" /* fork_as() */
#include "../../lib/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

static char dir[] = "/tmp/samepage-trust-XXXXXX";
static char sock[100];

static int listen_at(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	REQUIRE(fd >= 0);
	unlink(path);
	REQUIRE(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	REQUIRE(listen(fd, 4) == 0);
	return fd;
}

/* samepaged as `nobody`, in a directory nobody may write. */
static void test_foreign_daemon(const char *bin)
{
	struct passwd *pw = getpwnam("nobody");
	if (!pw) {
		printf("no user nobody: foreign-daemon case skipped\n");
		return;
	}
	char sub[64], state[80];
	snprintf(sub, sizeof(sub), "%s/nobody", dir);
	snprintf(state, sizeof(state), "%s/state", sub);
	snprintf(sock, sizeof(sock), "%s/sock", sub);
	REQUIRE(mkdir(sub, 0755) == 0);
	REQUIRE(chown(sub, pw->pw_uid, pw->pw_gid) == 0);
	pid_t pid = fork_as(pw);
	if (pid == 0) {
		execl(bin, bin, "--foreground", "--socket", sock, "--state-dir", state,
		      (char *)NULL);
		_exit(127);
	}
	struct stat st;
	for (int i = 0; i < 5000 && stat(sock, &st); i++)
		usleep(2000);
	REQUIRE(stat(sock, &st) == 0);
	REQUIRE(chmod(sock, 0777) == 0 || errno == EPERM); /* root may connect anyway */

	setenv("SAMEPAGE_SOCKET", sock, 1);
	samepage_t *sp = NULL;
	char reply[256];
	CHECK_EQ_INT(samepage_connect(&sp, "vm"), -EACCES);
	CHECK(sp == NULL);
	CHECK_EQ_INT(samepage_control(sock, "GET run", reply, sizeof(reply)), -EACCES);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
}

/* A fake daemon of our own user: answers HELLO with three descriptors,
 * the first of them a file anyone may write. */
static void *fake_daemon(void *arg)
{
	int lfd = *(int *)arg, files[3];
	char path[64], msg[256];
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/file%d", dir, i);
		files[i] = open(path, O_RDWR | O_CREAT, 0600);
		REQUIRE(files[i] >= 0 && ftruncate(files[i], 1 << 20) == 0);
	}
	REQUIRE(fchmod(files[0], 0666) == 0);
	int c = accept(lfd, NULL, NULL);
	REQUIRE(c >= 0);
	if (recv(c, msg, sizeof(msg), 0) > 0) {
		send_fds(c, "OK 0000000000000001", 19, files, 3);
	}
	close(c);
	for (int i = 0; i < 3; i++)
		close(files[i]);
	return NULL;
}

static void test_writable_file(void)
{
	snprintf(sock, sizeof(sock), "%s/fake", dir);
	int lfd = listen_at(sock);
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, fake_daemon, &lfd) == 0);
	setenv("SAMEPAGE_SOCKET", sock, 1);
	samepage_t *sp = NULL;
	CHECK_EQ_INT(samepage_connect(&sp, "vm"), -EACCES);
	CHECK(sp == NULL);
	pthread_join(t, NULL);
	close(lfd);
}

/* samepaged (root) refuses a process of another user (nobody): the client
 * says -EACCES whether the refusal came before or after its request was
 * sent (before it, send() fails with EPIPE and the reason is still there
 * to read). */
static void test_refusal_reason(const char *bin)
{
	struct passwd *pw = getpwnam("nobody");
	if (!pw) {
		printf("no user nobody: refusal case skipped\n");
		return;
	}
	char state[64];
	snprintf(state, sizeof(state), "%s/rootstate", dir);
	snprintf(sock, sizeof(sock), "%s/rootsock", dir);
	pid_t d = fork();
	REQUIRE(d >= 0);
	if (d == 0) {
		execl(bin, bin, "--foreground", "--socket", sock, "--state-dir", state,
		      (char *)NULL);
		_exit(127);
	}
	struct stat st;
	for (int i = 0; i < 5000 && stat(sock, &st); i++)
		usleep(2000);
	REQUIRE(chmod(sock, 0777) == 0);
	pid_t c = fork_as(pw);
	if (c == 0) {
		int wrong = 0, last = 0;
		char reply[256];
		for (int i = 0; i < 200; i++) {
			int err = samepage_control(sock, "GET run", reply, sizeof(reply));
			if (err != -EACCES) {
				wrong++;
				last = err;
			}
		}
		if (wrong)
			fprintf(stderr, "%d of 200 refusals said %s, not EACCES\n", wrong,
				samepage_strerror(last));
		_exit(wrong ? 1 : 0);
	}
	int status;
	REQUIRE(waitpid(c, &status, 0) == c);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	kill(d, SIGTERM);
	waitpid(d, NULL, 0);
}

/* samepaged (as this process's user) on sock with its state in state and
 * --allow-user allow (NULL: none); returns once it answers. */
static pid_t start_daemon(const char *bin, const char *state, const char *allow)
{
	char reply[256];
	pid_t d = fork();
	REQUIRE(d >= 0);
	if (d == 0) {
		if (allow)
			execl(bin, bin, "--foreground", "--socket", sock, "--state-dir", state,
			      "--allow-user", allow, (char *)NULL);
		else
			execl(bin, bin, "--foreground", "--socket", sock, "--state-dir", state,
			      (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 5000 && samepage_control(sock, "GET run", reply, sizeof(reply)); i++)
		usleep(2000);
	return d;
}

/* samepaged (root) with --allow-user nobody:vmA,vm-b*: nobody's processes
 * are a tenant's.  Before the option took domains, nobody could join any
 * domain (and so merge with, and time, any other tenant's VMs), list
 * every process, and stop every domain's merging with SET run 0. */
static void test_tenant(const char *bin)
{
	struct passwd *pw = getpwnam("nobody");
	if (!pw) {
		printf("no user nobody: tenant case skipped\n");
		return;
	}
	char state[64], reply[4096];
	snprintf(state, sizeof(state), "%s/tenantstate", dir);
	snprintf(sock, sizeof(sock), "%s/tenantsock", dir);
	pid_t d = start_daemon(bin, state, "nobody:vmA,vm-b*");
	setenv("SAMEPAGE_SOCKET", sock, 1);
	/* Root's process in a domain of its own, which the tenant must not
	 * see, then root may join one of the tenant's too. */
	samepage_t *mine = NULL, *theirs = NULL;
	REQUIRE(samepage_connect(&mine, "rootdom") == 0);
	CHECK_EQ_INT(samepage_connect(&theirs, "vmA"), 0);
	if (theirs)
		samepage_close(theirs);
	int p[2];
	REQUIRE(pipe(p) == 0);
	pid_t c = fork_as(pw);
	if (c == 0) {
		close(p[0]);
		samepage_t *sp = NULL;
		CHECK_EQ_INT(samepage_control(sock, "MAY vmB", reply, sizeof(reply)), -EACCES);
		CHECK(strstr(reply, "vmA,vm-b*") && strstr(reply, "not vmB"));
		CHECK_EQ_INT(samepage_control(sock, "MAY rootdom", reply, sizeof(reply)), -EACCES);
		CHECK_EQ_INT(samepage_control(sock, "MAY vm-b7", reply, sizeof(reply)), 0);
		CHECK_EQ_INT(samepage_connect(&sp, "rootdom"), -EACCES);
		CHECK(sp == NULL);
		CHECK_EQ_INT(samepage_connect(&sp, "vmB"), -EACCES);
		CHECK(sp == NULL);
		char before[256];
		CHECK_EQ_INT(samepage_control(sock, "GET run", before, sizeof(before)), 0);
		CHECK_EQ_INT(samepage_control(sock,
					      strstr(before, "run 1") ? "SET run 0" : "SET run 1",
					      reply, sizeof(reply)),
			     -EACCES);
		CHECK(strstr(reply, "knobs") != NULL);
		CHECK_EQ_INT(samepage_control(sock, "GET run", reply, sizeof(reply)), 0);
		CHECK(strcmp(reply, before) == 0);
		CHECK_EQ_INT(samepage_connect(&sp, "vmA"), 0);
		CHECK_EQ_INT(samepage_control(sock, "CLIENTS", reply, sizeof(reply)), 0);
		char me[32];
		snprintf(me, sizeof(me), "pid=%d ", (int)getpid());
		CHECK(strstr(reply, me) != NULL);
		CHECK(strstr(reply, "domain=rootdom") == NULL);
		if (sp)
			samepage_close(sp);
		_exit(check_report("trust (tenant)"));
	}
	close(p[1]);
	int status;
	REQUIRE(waitpid(c, &status, 0) == c);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(p[0]);
	/* Root lists every domain's processes, and may change the knobs. */
	CHECK_EQ_INT(samepage_control(sock, "CLIENTS", reply, sizeof(reply)), 0);
	CHECK(strstr(reply, "domain=rootdom") != NULL);
	CHECK_EQ_INT(samepage_control(sock, "SET pages_to_scan 200", reply, sizeof(reply)), 0);
	samepage_close(mine);
	kill(d, SIGTERM);
	waitpid(d, NULL, 0);
}

/* A tenant writes a knob into its domain's index (it may: the index is
 * shared and writable), then the daemon is restarted without the
 * --allow-user that made it a tenant, no knob ever set or configured:
 * the restarted daemon took its knobs from that index (12345) before the
 * first start saved DIR/knobs. */
static void test_tenant_revoked(const char *bin)
{
	struct passwd *pw = getpwnam("nobody");
	if (!pw) {
		printf("no user nobody: revoked-tenant case skipped\n");
		return;
	}
	char state[64], reply[256];
	snprintf(state, sizeof(state), "%s/revokedstate", dir);
	snprintf(sock, sizeof(sock), "%s/revokedsock", dir);
	pid_t d = start_daemon(bin, state, "nobody:vmA");
	setenv("SAMEPAGE_SOCKET", sock, 1);
	int ready[2];
	REQUIRE(pipe(ready) == 0);
	pid_t c = fork_as(pw);
	if (c == 0) {
		samepage_t *sp = NULL;
		if (samepage_connect(&sp, "vmA"))
			_exit(1);
		sp->dom->knob[KNOB_pages_to_scan] = 12345;
		if (write(ready[1], "w", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	char ch;
	REQUIRE(read(ready[0], &ch, 1) == 1);
	kill(d, SIGTERM);
	waitpid(d, NULL, 0);
	d = start_daemon(bin, state, NULL);
	CHECK_EQ_INT(samepage_control(sock, "GET pages_to_scan", reply, sizeof(reply)), 0);
	CHECK(strstr(reply, "pages_to_scan 100") && !strstr(reply, "12345"));
	kill(c, SIGKILL);
	waitpid(c, NULL, 0);
	kill(d, SIGTERM);
	waitpid(d, NULL, 0);
	close(ready[0]), close(ready[1]);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_trust PATH-TO-SAMEPAGED\n");
		return 2;
	}
	if (geteuid() != 0)
		SKIP("needs root to run a daemon as another user");
	signal(SIGPIPE, SIG_IGN);
	REQUIRE(mkdtemp(dir));
	REQUIRE(chmod(dir, 0755) == 0);
	test_foreign_daemon(argv[1]);
	test_writable_file();
	test_refusal_reason(argv[1]);
	test_tenant(argv[1]);
	test_tenant_revoked(argv[1]);
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd))
		fprintf(stderr, "could not remove %s\n", dir);
	return check_report("trust");
}
