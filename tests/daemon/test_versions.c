// SPDX-License-Identifier: MIT
/*
 * test_versions.c - a library and a samepaged of different samepage
 * versions never share a file (samepaged(8): HELLO, UPGRADES).
 *
 *  - samepaged refuses a HELLO that names no layout, or another one, with
 *    EPROTONOSUPPORT and a log line naming both; it makes no ledger and
 *    opens no domain for it;
 *  - samepage_connect() says -EPROTONOSUPPORT to an older samepaged, which
 *    reads "NAME LAYOUT" as a domain name and refuses it (EINVAL), and to
 *    one that hands over a domain or a ledger of another layout;
 *  - after an upgrade (samepaged restarted from another version): the
 *    domain files the old version made are removed and made anew, a live
 *    process of the old version keeps its mapping of the old pool, its
 *    ledger is removed, and a new client joins the new domain.
 *
 * Usage: test_versions PATH-TO-SAMEPAGED
 */
#include "daemon_util.h"

#include <pthread.h>

static struct daemon D;

/* ---- samepaged refuses another layout ---- */

static void test_daemon_refuses(void)
{
	const char *asks[] = {"HELLO old", "HELLO old 1", "HELLO old 3", "HELLO old 4294967298"};
	char reply[512];
	for (size_t i = 0; i < sizeof(asks) / sizeof(asks[0]); i++) {
		int fd = raw_dial(&D, false);
		REQUIRE(fd >= 0);
		CHECK(raw_asks(fd, asks[i], reply, sizeof(reply)) > 0);
		printf("%s: %s\n", asks[i], reply);
		CHECK_EQ_INT(reply_errno(reply), EPROTONOSUPPORT);
		CHECK(strstr(reply, "another samepage version") != NULL);
		char theirs[64];
		snprintf(theirs, sizeof(theirs), "files in layout %s, this samepaged",
			 i ? asks[i] + 10 : "none (an older version)");
		CHECK(strstr(reply, theirs) != NULL);
		close(fd);
	}
	CHECK(daemon_logged(&D, "refused HELLO old of process"));
	CHECK(daemon_logged(&D, "in layout none (an older version), this samepaged"));
	CHECK_EQ_INT(state_files(&D, "old.", ""), 0); /* no ledger, no domain */
	/* Malformed layouts are not a version question. */
	const char *bad[] = {"HELLO old x", "HELLO old -2", "HELLO old  2", "HELLO old 2 3"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int fd = raw_dial(&D, false);
		REQUIRE(fd >= 0);
		CHECK(raw_asks(fd, bad[i], reply, sizeof(reply)) > 0);
		CHECK_EQ_INT(reply_errno(reply), EINVAL);
		close(fd);
	}
	/* This build's HELLO is answered. */
	int fd = raw_dial(&D, false);
	REQUIRE(fd >= 0);
	CHECK(raw_asks(fd, HELLO("old"), reply, sizeof(reply)) > 0);
	CHECK_EQ_INT(reply_errno(reply), 0);
	close(fd);
}

/* ---- the client refuses another layout ---- */

enum fake { FAKE_OLD_NAME, FAKE_OLD_DOMAIN, FAKE_OLD_LEDGER };

struct fake_daemon {
	int lfd;
	enum fake kind;
	char request[128]; /* what the client asked */
};

/* A file of size bytes in the test's directory, owned by us, 0600, with
 * head (hlen bytes) at its start. */
static int fake_file(const char *name, size_t size, const void *head, size_t hlen)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/%s", D.dir, name);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	REQUIRE(fd >= 0 && ftruncate(fd, (off_t)size) == 0);
	REQUIRE(!hlen || pwrite(fd, head, hlen, 0) == (ssize_t)hlen);
	unlink(path);
	return fd;
}

/* Answers one HELLO as an older samepaged would: refusing "NAME LAYOUT"
 * as a domain name, or handing over files with another layout. */
static void *fake_daemon(void *arg)
{
	struct fake_daemon *f = arg;
	int c = accept(f->lfd, NULL, NULL);
	REQUIRE(c >= 0);
	ssize_t n = recv(c, f->request, sizeof(f->request) - 1, 0);
	f->request[n > 0 ? n : 0] = 0;
	if (f->kind == FAKE_OLD_NAME) {
		const char *no = "ERR 22 domain name (1 to 64 of A-Za-z0-9._-)";
		send(c, no, strlen(no), MSG_NOSIGNAL);
		close(c);
		return NULL;
	}
	struct domain dom = {.magic = DOM_MAGIC, .layout = SHARED_LAYOUT};
	struct ledger lg = {.magic = LEDGER_MAGIC, .pid = getpid(), .layout = SHARED_LAYOUT};
	if (f->kind == FAKE_OLD_DOMAIN)
		dom.layout = 0; /* as a samepaged before layouts wrote it */
	else
		lg.layout = 0;
	int files[4] = {
	    fake_file("index", DOM_SIZE, &dom, sizeof(dom)),
	    fake_file("pool", (size_t)DOM_NODES << PAGE_SHIFT, NULL, 0),
	    fake_file("ledger", LEDGER_SIZE, &lg, sizeof(lg)),
	    fake_file("guard", GUARD_SIZE, NULL, 0),
	};
	send_fds(c, "OK 0000000000000001", 19, files, 4);
	for (int i = 0; i < 4; i++)
		close(files[i]);
	/* The client keeps its connection: wait for it to go. */
	char buf[64];
	while (recv(c, buf, sizeof(buf), 0) > 0)
		;
	close(c);
	return NULL;
}

static void test_client_refuses(void)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	char *path = a.sun_path;
	REQUIRE(strlen(D.dir) + 11 < sizeof(a.sun_path));
	snprintf(path, sizeof(a.sun_path), "%.90s/fake.sock", D.dir);
	setenv("SAMEPAGE_SOCKET", path, 1);
	for (enum fake k = FAKE_OLD_NAME; k <= FAKE_OLD_LEDGER; k++) {
		struct fake_daemon f = {.lfd = socket(AF_UNIX, SOCK_SEQPACKET, 0), .kind = k};
		unlink(path);
		REQUIRE(f.lfd >= 0 && bind(f.lfd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
			listen(f.lfd, 1) == 0);
		pthread_t t;
		REQUIRE(pthread_create(&t, NULL, fake_daemon, &f) == 0);
		samepage_t *sp = NULL;
		int err = samepage_connect(&sp, "vm");
		printf("fake daemon %d: samepage_connect: %s\n", (int)k, samepage_strerror(err));
		CHECK_EQ_INT(err, -EPROTONOSUPPORT);
		CHECK(sp == NULL);
		if (sp)
			samepage_close(sp);
		pthread_join(t, NULL);
		close(f.lfd);
		printf("it asked: %s\n", f.request);
		CHECK(!strcmp(f.request, "HELLO vm " LAYOUT_STR(SHARED_LAYOUT)));
	}
	setenv("SAMEPAGE_SOCKET", D.sock, 1);
}

/* ---- an upgrade: the old version's domain made anew ---- */

/* A process of the "old version": says HELLO to domain up, maps the pool
 * it is handed, and reports through out (one byte) each time it is asked
 * through in whether the pool is still mapped. */
static pid_t old_process(int *in, int *out)
{
	int p[2], q[2];
	REQUIRE(pipe2(p, O_CLOEXEC) == 0 && pipe2(q, O_CLOEXEC) == 0); /* not the daemon's */
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		close(p[1]);
		close(q[0]);
		int s = raw_dial(&D, false), fds[4];
		char buf[256], cbuf[CMSG_SPACE(sizeof(fds))];
		struct iovec iov = {buf, sizeof(buf)};
		struct msghdr m = {.msg_iov = &iov,
				   .msg_iovlen = 1,
				   .msg_control = cbuf,
				   .msg_controllen = sizeof(cbuf)};
		const char *hello = HELLO("up");
		if (s < 0 || send(s, hello, strlen(hello), 0) < 0 || recvmsg(s, &m, 0) <= 0 ||
		    !CMSG_FIRSTHDR(&m))
			_exit(1);
		memcpy(fds, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(fds));
		const volatile char *pool =
		    mmap(NULL, (size_t)DOM_NODES << PAGE_SHIFT, PROT_READ, MAP_SHARED, fds[1], 0);
		if (pool == MAP_FAILED)
			_exit(1);
		char c;
		while (read(p[0], &c, 1) == 1) {
			c = pool[0] == 0 ? 'y' : 'n'; /* a SIGBUS if its file were cut */
			if (write(q[1], &c, 1) != 1)
				_exit(1);
		}
		_exit(0);
	}
	close(p[0]);
	close(q[1]);
	*in = p[1];
	*out = q[0];
	return pid;
}

static bool old_process_maps_pool(int in, int out)
{
	char c = '?';
	return write(in, "?", 1) == 1 && read(out, &c, 1) == 1 && c == 'y';
}

/* Writes layout into the file's 32-bit field at off. */
static void set_layout(const char *name, size_t off, uint32_t layout)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/%s", D.state, name);
	int fd = open(path, O_WRONLY);
	REQUIRE(fd >= 0 && pwrite(fd, &layout, sizeof(layout), (off_t)off) == sizeof(layout));
	close(fd);
}

static uint32_t layout_of(const char *name, size_t off, ino_t *ino)
{
	char path[400];
	struct stat st;
	uint32_t layout = 0;
	snprintf(path, sizeof(path), "%s/%s", D.state, name);
	int fd = open(path, O_RDONLY);
	REQUIRE(fd >= 0 && fstat(fd, &st) == 0 &&
		pread(fd, &layout, sizeof(layout), (off_t)off) == sizeof(layout));
	close(fd);
	*ino = st.st_ino;
	return layout;
}

static void test_upgrade(void)
{
	int in, out;
	pid_t old = old_process(&in, &out);
	CHECK(old_process_maps_pool(in, out));
	char ledger[64];
	snprintf(ledger, sizeof(ledger), "up.%d.ledger", (int)old);
	ino_t before, after;
	CHECK_EQ_INT(layout_of("up.index", offsetof(struct domain, layout), &before),
		     SHARED_LAYOUT);

	/* The old version's files: its daemon stopped, the process runs. */
	CHECK_EQ_INT(daemon_stop(&D, SIGTERM), 0);
	set_layout("up.index", offsetof(struct domain, layout), 1);
	set_layout(ledger, offsetof(struct ledger, layout), 1);
	daemon_start(&D, NULL);

	CHECK(daemon_logged(&D, "domain up: its files were made by another samepage version "
				"(shared layout 1;"));
	CHECK(daemon_logged(&D, "a ledger of another samepage version, whose domain is gone: "
				"removed"));
	CHECK_EQ_INT(state_files(&D, ledger, ""), 0);
	CHECK(old_process_maps_pool(in, out)); /* its merged memory stays valid */
	/* A client of this version merges in the new domain. */
	samepage_t *sp = NULL;
	CHECK_EQ_INT(samepage_connect(&sp, "up"), 0);
	CHECK_EQ_INT(layout_of("up.index", offsetof(struct domain, layout), &after), SHARED_LAYOUT);
	CHECK(after != before);
	if (sp) {
		char *m = NULL;
		REQUIRE(samepage_write(sp, "sleep_millisecs", "0") == 0 &&
			samepage_write(sp, "run", "1") == 0 &&
			samepage_alloc(sp, 64 * PAGE_SIZE, (void **)&m) == 0);
		memset(m, 'u', 64 * PAGE_SIZE);
		long long sharing = 0;
		for (int i = 0; i < 3000 && sharing < 63; i++) {
			usleep(10000);
			REQUIRE(samepage_read_number(sp, "pages_sharing", &sharing) == 0);
		}
		CHECK_EQ_INT(sharing, 63);
		for (size_t i = 0; i < 64 * PAGE_SIZE; i += PAGE_SIZE)
			CHECK_EQ_INT(m[i], 'u');
		samepage_close(sp);
	}
	close(in);
	close(out);
	int st;
	REQUIRE(waitpid(old, &st, 0) == old);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(int argc, char **argv)
{
	REQUIRE(argc == 2);
	signal(SIGPIPE, SIG_IGN);
	daemon_init(&D, argv[1]);
	daemon_start(&D, NULL);
	test_daemon_refuses();
	test_client_refuses();
	test_upgrade();
	CHECK_EQ_INT(daemon_stop(&D, SIGTERM), 0);
	return check_report("versions");
}
