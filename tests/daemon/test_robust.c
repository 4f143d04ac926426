// SPDX-License-Identifier: MIT
/*
 * test_robust.c - samepaged against what a production host throws at it:
 *
 *  - requests: a 64 KiB packet (EMSGSIZE, the connection goes on), packets
 *    carrying descriptors (none kept), a NUL byte or a second line in a
 *    request, SET with a word too many (EINVAL, the knob unchanged), SET
 *    with a value longer than ksmctl and a config file take (EINVAL with
 *    their cause and fix, the knob unchanged: RELIABILITY.md 108);
 *  - a control connection that never reads its answers is closed, and the
 *    daemon serves the others meanwhile;
 *  - a state directory holding junk: files, directories, a FIFO and a
 *    symbolic link named like domain files, ledgers of no domain, empty
 *    ledgers: the daemon starts, says what it ignores, changes none of
 *    them, and the file a link points to stays as it was;
 *  - ledgers a restarted daemon finds broken: cut short (reaped as far as
 *    they go, never read past their end), of another format (set aside as
 *    .broken, never reaped: their counts would drop other processes'
 *    pages), and a domain file whose page count was overwritten;
 *  - a ledger left by an earlier process with the same pid is not handed
 *    to a new one; a ledger of the wrong size is never handed out;
 *  - SIGTERM while HELLOs are in flight: a clean exit, and after a restart
 *    every ledger reaped and every domain closed;
 *  - samepaged killed in the middle of reaping a gone process's ledger:
 *    the next start drops none of its references twice; killed in the
 *    middle of closing a domain, or of making one: the next start frees
 *    what it left, and the domain's name works again;
 *  - under an address-space limit too small for a pool, a domain is
 *    refused with the fix in the log;
 *  - restarted with its state directory named by another path (a bind
 *    mount), it still sees its live clients map the pool.
 *
 * Usage: test_robust PATH-TO-SAMEPAGED PATH-TO-DIE_AT_UNLINK.so
 */
#include "../../lib/internal.h"
#include "daemon_util.h"
#include "ksmconf.h" /* common/: the value rules SET shares with ksmctl */

#include <stddef.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>

static struct daemon D;

static void path_of(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", D.state, name);
}

static long long file_size(const char *name)
{
	char path[512];
	struct stat st;
	path_of(path, sizeof(path), name);
	return lstat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static void write_file(const char *name, const void *data, size_t len)
{
	char path[512];
	path_of(path, sizeof(path), name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	REQUIRE(fd >= 0 && write(fd, data, len) == (ssize_t)len);
	close(fd);
}

/* ---- requests ---- */

static void test_requests(void)
{
	char reply[PROTO_MAX];
	int fd = raw_dial(&D, false);
	REQUIRE(fd >= 0);

	static char big[65536];
	memcpy(big, "GET ", 4);
	memset(big + 4, 'x', sizeof(big) - 4);
	CHECK(raw_ask(fd, big, sizeof(big), reply, sizeof(reply)) > 0);
	CHECK_EQ_INT(reply_errno(reply), EMSGSIZE);
	CHECK_EQ_INT(reply_errno((raw_asks(fd, "GET run", reply, sizeof(reply)), reply)), 0);

	/* Descriptors sent along: the daemon keeps none. */
	int before = daemon_fds(&D), null = open("/dev/null", O_RDONLY);
	REQUIRE(null >= 0);
	for (int round = 0; round < 50; round++) {
		int fds[200];
		for (int i = 0; i < 200; i++)
			fds[i] = null;
		REQUIRE(send_fds(fd, big, round % 2 ? sizeof(big) : 7, fds, 200) > 0);
		CHECK(raw_recv(fd, reply, sizeof(reply)) > 0);
	}
	close(null);
	CHECK_EQ_INT(daemon_fds(&D), before);

	/* One request is one line of text. */
	static const char nul[] = "GET run\0SET run 2";
	CHECK(raw_ask(fd, nul, sizeof(nul) - 1, reply, sizeof(reply)) > 0);
	CHECK_EQ_INT(reply_errno(reply), EINVAL);
	CHECK(raw_asks(fd, "GET run\nSET run 2", reply, sizeof(reply)) > 0);
	CHECK_EQ_INT(reply_errno(reply), EINVAL);
	CHECK(raw_asks(fd, "GET run\n", reply, sizeof(reply)) > 0); /* one line end is fine */
	CHECK_EQ_INT(reply_errno(reply), 0);
	long long sleep_ms = daemon_value(&D, "sleep_millisecs");
	CHECK(raw_asks(fd, "SET sleep_millisecs 5 junk", reply, sizeof(reply)) > 0);
	CHECK_EQ_INT(reply_errno(reply), EINVAL);
	CHECK_EQ_INT(daemon_value(&D, "sleep_millisecs"), sleep_ms);
	CHECK_EQ_INT(daemon_value(&D, "run"), 0);
	close(fd);
}

/* SET from a client that is not ksmctl: a value ksmctl set, apply and
 * samepaged --config refuse (over 63 characters: leading zeros) is refused
 * with their cause and fix, from the one check (ksmconf_check_value), and
 * changes nothing; one of 63 characters is taken.  Before 108 a value of
 * 64 to 255 characters was stored, and one of 256 or more was called "not
 * two words". */
static void test_set_value_length(void)
{
	char reply[PROTO_MAX], req[400], zeros[300];
	struct ksmconf_error e;
	int fd = raw_dial(&D, false);
	REQUIRE(fd >= 0);
	long long sleep_ms = daemon_value(&D, "sleep_millisecs");
	REQUIRE(sleep_ms != 7);
	static const size_t lengths[] = {64, 65, 256, 299};
	for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		size_t len = lengths[i];
		memset(zeros, '0', len - 1);
		zeros[len - 1] = '7';
		zeros[len] = 0;
		snprintf(req, sizeof(req), "SET sleep_millisecs %s", zeros);
		CHECK(raw_asks(fd, req, reply, sizeof(reply)) > 0);
		printf("SET sleep_millisecs with %zu characters: %.300s\n", len, reply);
		CHECK_EQ_INT(reply_errno(reply), EINVAL);
		/* ksmctl's and a config file's message, named the same way */
		CHECK_EQ_INT(ksmconf_check_value("sleep_millisecs", zeros, NULL, NULL, NULL, &e),
			     -EINVAL);
		CHECK(strstr(reply, e.cause) != NULL);
		CHECK(strstr(reply, e.fix) != NULL);
		char said[64];
		snprintf(said, sizeof(said), "sleep_millisecs: %zu characters long", len);
		CHECK(strstr(reply, said) != NULL);
		CHECK_EQ_INT(daemon_value(&D, "sleep_millisecs"), sleep_ms);
	}
	/* The longest value taken is as long as a config file's. */
	memset(zeros, '0', KSMCONF_VALUE_MAX - 1);
	zeros[KSMCONF_VALUE_MAX - 1] = '7';
	zeros[KSMCONF_VALUE_MAX] = 0;
	snprintf(req, sizeof(req), "SET sleep_millisecs %s", zeros);
	CHECK(raw_asks(fd, req, reply, sizeof(reply)) > 0);
	CHECK_EQ_INT(reply_errno(reply), 0);
	CHECK_EQ_INT(daemon_value(&D, "sleep_millisecs"), 7);
	snprintf(req, sizeof(req), "SET sleep_millisecs %lld", sleep_ms);
	CHECK(raw_asks(fd, req, reply, sizeof(reply)) > 0);
	CHECK_EQ_INT(daemon_value(&D, "sleep_millisecs"), sleep_ms);
	close(fd);
}

static void test_reader_that_never_reads(void)
{
	char reply[PROTO_MAX];
	int fd = raw_dial(&D, false);
	REQUIRE(fd >= 0);
	/* 4000 answers of a full GET are more than a socket buffer holds:
	 * the daemon cannot send them all, and closes the connection. */
	int sent = 0;
	alarm(60); /* a send blocked for ever fails the test */
	for (; sent < 4000; sent++)
		if (send(fd, "GET", 3, MSG_NOSIGNAL) < 0)
			break;
	alarm(0);
	/* The others are served meanwhile. */
	CHECK_EQ_INT(daemon_value(&D, "run"), 0);
	int got, answers = 0;
	while ((got = raw_recv(fd, reply, sizeof(reply))) > 0)
		answers++;
	printf("sent %d requests without reading: %d answers, then %s\n", sent, answers,
	       got == 0 ? "closed" : strerror(-got));
	CHECK(got == 0 || got == -ECONNRESET); /* reset: it closed with requests unread */
	CHECK(answers < sent);
	CHECK(daemon_logged(&D, "does not read its answers"));
	close(fd);
}

/* ---- the state directory ---- */

static void test_junk_in_state_dir(void)
{
	daemon_stop(&D, SIGTERM);
	char path[512], target[512];
	write_file("junk", "hello\n", 6);
	write_file("a.index", "not a domain", 12);
	path_of(path, sizeof(path), "b.index");
	REQUIRE(mkdir(path, 0700) == 0);
	snprintf(target, sizeof(target), "%s/link-target", D.dir);
	write_file("../link-target", "", 0);
	path_of(path, sizeof(path), "c.index");
	REQUIRE(symlink(target, path) == 0);
	write_file("d.pool", "x", 1);
	write_file("e.99999999.ledger", "x", 1); /* no such pid, no such domain */
	write_file("f.1.ledger", "", 0);	 /* pid 1 lives: not an orphan */
	path_of(path, sizeof(path), "g.index");
	REQUIRE(mkfifo(path, 0600) == 0);
	write_file("h i.index", "", 0); /* not a domain name */
	daemon_start(&D, NULL);

	CHECK_EQ_INT(daemon_value(&D, "pool_pages"), 0);
	CHECK_EQ_INT(file_size("junk"), 6);
	CHECK_EQ_INT(file_size("a.index"), 12);
	CHECK_EQ_INT(file_size("d.pool"), 1);
	CHECK_EQ_INT(file_size("f.1.ledger"), 0);
	CHECK_EQ_INT(file_size("h i.index"), 0);
	CHECK_EQ_INT(file_size("../link-target"), 0); /* never followed */
	CHECK(daemon_logged(&D, "a.index"));
	CHECK(daemon_logged(&D, "c.index"));
	/* A HELLO to a domain whose files are junk is refused, and says so. */
	int fd = raw_dial(&D, false);
	char reply[512];
	REQUIRE(fd >= 0);
	CHECK(raw_asks(fd, HELLO("a"), reply, sizeof(reply)) > 0);
	CHECK_EQ_INT(reply_errno(reply), EIO);
	close(fd);
	CHECK_EQ_INT(file_size("a.index"), 12);
	/* The daemon works: a new domain comes and goes. */
	fd = raw_dial(&D, false);
	REQUIRE(fd >= 0);
	CHECK(raw_asks(fd, HELLO("fresh"), reply, sizeof(reply)) > 0);
	CHECK_EQ_INT(reply_errno(reply), 0);
	close(fd);

	/* Clean up for the next tests. */
	daemon_stop(&D, SIGTERM);
	const char *junk[] = {
	    "junk",	  "a.index", "d.pool",	"e.99999999.ledger", "e.99999999.ledger.broken",
	    "f.1.ledger", "c.index", "g.index", "h i.index"};
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		path_of(path, sizeof(path), junk[i]);
		unlink(path);
	}
	path_of(path, sizeof(path), "b.index");
	rmdir(path);
	daemon_start(&D, NULL);
}

/* ---- ledgers ---- */

/* A child process that says HELLO to domain and waits to be killed. */
/* A process that says HELLO to domain and waits; with map_pool, it maps
 * the domain's pool too, as a client that merged does (samepaged then
 * counts it alive when it starts again). */
static pid_t hello_child_mapping(const char *domain, bool map_pool)
{
	int ready[2];
	REQUIRE(pipe(ready) == 0);
	pid_t p = fork();
	REQUIRE(p >= 0);
	if (p == 0) {
		char req[128], reply[256], pool[512];
		int fd = raw_dial(&D, false);
		snprintf(req, sizeof(req), "HELLO %s %d", domain, SHARED_LAYOUT);
		char ok = fd >= 0 && raw_asks(fd, req, reply, sizeof(reply)) > 0 &&
			  reply_errno(reply) == 0;
		if (ok && map_pool) {
			snprintf(pool, sizeof(pool), "%s/%s.pool", D.state, domain);
			int pfd = open(pool, O_RDONLY);
			ok = pfd >= 0 &&
			     mmap(NULL, 4096, PROT_READ, MAP_SHARED, pfd, 0) != MAP_FAILED;
		}
		if (write(ready[1], &ok, 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	char ok = 0;
	REQUIRE(read(ready[0], &ok, 1) == 1 && ok == 1);
	close(ready[0]);
	close(ready[1]);
	return p;
}

static pid_t hello_child(const char *domain)
{
	return hello_child_mapping(domain, false);
}

static void kill_child(pid_t p)
{
	kill(p, SIGKILL);
	waitpid(p, NULL, 0);
}

static void ledger_name(char *buf, size_t len, const char *domain, pid_t pid)
{
	snprintf(buf, len, "%s.%d.ledger", domain, (int)pid);
}

/* Writes v at offset off of a state file. */
static void poke(const char *name, off_t off, const void *v, size_t len)
{
	char path[512];
	path_of(path, sizeof(path), name);
	int fd = open(path, O_WRONLY);
	REQUIRE(fd >= 0 && pwrite(fd, v, len, off) == (ssize_t)len);
	close(fd);
}

static void test_broken_ledgers_after_restart(void)
{
	pid_t cut = hello_child("cut"), junk = hello_child("junk"), wide = hello_child("wide");
	char cut_l[128], junk_l[128], wide_l[128], path[512];
	ledger_name(cut_l, sizeof(cut_l), "cut", cut);
	ledger_name(junk_l, sizeof(junk_l), "junk", junk);
	ledger_name(wide_l, sizeof(wide_l), "wide", wide);
	daemon_stop(&D, SIGKILL);
	kill_child(cut);
	kill_child(junk);
	kill_child(wide);

	/* cut: its domain has 10 KSM pages' worth of nodes, its ledger 100
	 * bytes (a header, no counts). */
	uint32_t nr = 10;
	poke("cut.index", offsetof(struct domain, nr), &nr, sizeof(nr));
	path_of(path, sizeof(path), cut_l);
	REQUIRE(truncate(path, 100) == 0);
	/* junk: a ledger of the right size but another format, with counts. */
	uint64_t bad_magic = 0x4b4e554a4b4e554aULL;
	uint32_t refs[4] = {7, 7, 7, 7};
	poke(junk_l, 0, &bad_magic, sizeof(bad_magic));
	poke(junk_l, LEDGER_OFF_REFS, refs, sizeof(refs));
	/* wide: the domain file says its pool has more pages than it can. */
	nr = UINT32_MAX;
	poke("wide.index", offsetof(struct domain, nr), &nr, sizeof(nr));

	daemon_start(&D, NULL);
	CHECK_EQ_INT(daemon_value(&D, "pool_pages"), 0);
	CHECK_EQ_INT(file_size(cut_l), -1); /* reaped as far as it went */
	CHECK_EQ_INT(file_size(wide_l), -1);
	CHECK_EQ_INT(file_size(junk_l), -1);
	char broken[200];
	snprintf(broken, sizeof(broken), "%s.broken", junk_l);
	/* Set aside, not reaped, and cut to its header and fork area: a
	 * client may have filled the rest (130 MB of the state directory a
	 * ledger; the session's review filled a tmpfs so with a tenant's
	 * broken ledgers, and no domain could place a page). */
	CHECK_EQ_INT(file_size(broken), (long long)LEDGER_OFF_STAGING);
	CHECK(daemon_logged(&D, broken));
	path_of(path, sizeof(path), broken);
	unlink(path);
}

/* The ledger HELLO hands to this process, as the daemon wrote it. */
static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static bool ledger_header(const char *domain, pid_t pid, struct ledger *lg)
{
	char name[128], path[512];
	ledger_name(name, sizeof(name), domain, pid);
	path_of(path, sizeof(path), name);
	int fd = open(path, O_RDONLY);
	bool ok = fd >= 0 && pread(fd, lg, sizeof(*lg), 0) == (ssize_t)sizeof(*lg);
	if (fd >= 0)
		close(fd);
	return ok;
}

static void test_ledger_left_by_same_pid(void)
{
	/* What an earlier process with this pid left, since the last sweep:
	 * another start time, and counts that are not this process's. */
	struct ledger old = {.magic = LEDGER_MAGIC, .pid = getpid(), .starttime = 1};
	char name[128], path[512], reply[256];
	ledger_name(name, sizeof(name), "reuse", getpid());
	write_file(name, &old, sizeof(old));
	path_of(path, sizeof(path), name);
	REQUIRE(truncate(path, (off_t)LEDGER_SIZE) == 0);
	int fd = raw_dial(&D, false);
	REQUIRE(fd >= 0 && raw_asks(fd, HELLO("reuse"), reply, sizeof(reply)) > 0);
	CHECK_EQ_INT(reply_errno(reply), 0);
	struct ledger now;
	CHECK(ledger_header("reuse", getpid(), &now));
	CHECK(now.starttime != 1 && now.starttime != 0);
	close(fd);

	/* A ledger of the wrong size for this pid: never handed out. */
	ledger_name(name, sizeof(name), "short", getpid());
	write_file(name, &old, sizeof(old));
	fd = raw_dial(&D, false);
	REQUIRE(fd >= 0 && raw_asks(fd, HELLO("short"), reply, sizeof(reply)) > 0);
	CHECK_EQ_INT(reply_errno(reply), 0);
	CHECK_EQ_INT(file_size(name), (long long)LEDGER_SIZE);
	close(fd);
}

/* ---- signals ---- */

static void test_sigterm_during_hellos(void)
{
	pid_t kids[4];
	for (int k = 0; k < 4; k++) {
		kids[k] = fork();
		REQUIRE(kids[k] >= 0);
		if (kids[k] == 0) {
			/* HELLO after HELLO, 3 s: some land as the daemon stops. */
			char req[64], reply[256];
			snprintf(req, sizeof(req), "HELLO term-%d %d", k, SHARED_LAYOUT);
			for (uint64_t end = now_ns() + 3000000000ULL; now_ns() < end;) {
				int fd = raw_dial(&D, false);
				if (fd < 0) {
					usleep(1000);
					continue;
				}
				raw_asks(fd, req, reply, sizeof(reply));
				close(fd);
			}
			_exit(0);
		}
	}
	usleep(300000);
	CHECK_EQ_INT(daemon_stop(&D, SIGTERM), 0); /* exited 0, at once */
	daemon_start(&D, NULL);
	for (int k = 0; k < 4; k++)
		waitpid(kids[k], NULL, 0);
	/* Every ledger reaped (at once, or by the sweep of dead processes'
	 * ledgers), every domain closed. */
	int left = -1;
	for (int i = 0; i < 1500 && left; i++) {
		usleep(10000);
		left = state_files(&D, "term-", "");
	}
	CHECK_EQ_INT(left, 0);
	CHECK_EQ_INT(daemon_value(&D, "pool_pages"), 0);
}

/* A count that no ledger holds: a client killed between two of its steps
 * (it merges with the domain's lock let go) can leave a node's pending
 * count one too high, which no reap takes off.  Once no process is left
 * (none connected, no ledger), nothing can map the pool or merge onto it:
 * the domain closes all the same, with a line in the log.  Before, it
 * stayed open, with its files, for as long as samepaged ran. */
static void test_count_nobody_holds(void)
{
	pid_t p = hello_child("held");
	daemon_stop(&D, SIGKILL);
	kill_child(p);
	uint32_t nr = 1, live = 1;
	struct stable_node n = {.checksum = 1, .pending = 1, .in_use = NODE_USED};
	poke("held.index", offsetof(struct domain, nr), &nr, sizeof(nr));
	poke("held.index", offsetof(struct domain, live), &live, sizeof(live));
	poke("held.index", DOM_OFF_NODES, &n, sizeof(n));
	daemon_start(&D, NULL); /* answers once the orphans of the last run are reaped */
	CHECK_EQ_INT(file_size("held.index"), -1);
	CHECK(daemon_logged(&D, "domain held: 1 KSM pages still counted with no process left"));
}

/* The node idx of a domain's index file. */
static struct stable_node node_of(const char *index, uint32_t idx)
{
	char path[512];
	struct stable_node n;
	path_of(path, sizeof(path), index);
	int fd = open(path, O_RDONLY);
	REQUIRE(fd >= 0);
	REQUIRE(pread(fd, &n, sizeof(n), (off_t)(DOM_OFF_NODES + idx * sizeof(n))) ==
		(ssize_t)sizeof(n));
	close(fd);
	return n;
}

/* Starts samepaged with the shim that kills it when it unlinks a file
 * whose name ends with tail; with answer, returns once it answers (and
 * D.pid is it).  Its pid. */
static pid_t daemon_dying_at(const char *shim, const char *tail, bool answer)
{
	char asan[256];
	const char *old = getenv("ASAN_OPTIONS");
	snprintf(asan, sizeof(asan), "%s%sverify_asan_link_order=0", old ? old : "",
		 old && *old ? ":" : "");
	pid_t p = fork();
	REQUIRE(p >= 0);
	if (p == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int fd = open(D.log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0)
			dup2(fd, 2);
		setenv("LD_PRELOAD", shim, 1);
		setenv("ASAN_OPTIONS", asan, 1); /* the shim comes before libasan */
		setenv("SAMEPAGE_TEST_DIE_AT_UNLINK", tail, 1);
		execl(D.bin, D.bin, "--foreground", "--socket", D.sock, "--state-dir", D.state,
		      (char *)NULL);
		_exit(127);
	}
	char reply[256];
	for (int i = 0; answer && i < 5000; i++) {
		if (samepage_control(D.sock, "GET run", reply, sizeof(reply)) == 0) {
			D.pid = p;
			return p;
		}
		usleep(2000);
	}
	REQUIRE(!answer);
	return p;
}

/* Whether p ends killed by SIGKILL within 10 s (it is killed if not). */
static bool killed(pid_t p)
{
	int st = 0, i;
	for (i = 0; i < 10000 && waitpid(p, &st, WNOHANG) != p; i++)
		usleep(1000);
	if (i == 10000) {
		kill(p, SIGKILL);
		waitpid(p, &st, 0);
	}
	if (D.pid == p)
		D.pid = 0;
	return i < 10000 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
}

/* samepaged killed in the middle of a reap (after the drops, before the
 * unlink: the shim kills it there): the next start reaps the ledger again,
 * and must not drop its references twice from the pages another process
 * still maps.  Before the ledger was rewritten ahead of the drops, node 0
 * lost both mappings: freed, with a live process's reference on it. */
static void test_reap_killed_midway(const char *shim)
{
	pid_t stays = hello_child_mapping("twice", true), goes = hello_child("twice");
	char goes_l[128], stays_l[128];
	ledger_name(goes_l, sizeof(goes_l), "twice", goes);
	ledger_name(stays_l, sizeof(stays_l), "twice", stays);
	daemon_stop(&D, SIGKILL);
	kill_child(goes);

	/* One KSM page that both processes map. */
	uint32_t nr = 1, live = 1, one = 1;
	uint64_t shared = 1, sharing = 1;
	struct stable_node n = {.checksum = 1, .mapcount = 2, .in_use = NODE_USED};
	poke("twice.index", offsetof(struct domain, nr), &nr, sizeof(nr));
	poke("twice.index", offsetof(struct domain, live), &live, sizeof(live));
	poke("twice.index", offsetof(struct domain, pages_shared), &shared, sizeof(shared));
	poke("twice.index", offsetof(struct domain, pages_sharing), &sharing, sizeof(sharing));
	poke("twice.index", DOM_OFF_NODES, &n, sizeof(n));
	poke(goes_l, LEDGER_OFF_REFS, &one, sizeof(one));
	poke(stays_l, LEDGER_OFF_REFS, &one, sizeof(one));

	/* samepaged reaps the gone process's ledger at start, and dies at
	 * its unlink. */
	CHECK(killed(daemon_dying_at(shim, goes_l, false)));
	CHECK(file_size(goes_l) > 0); /* killed before the unlink */
	CHECK_EQ_INT(node_of("twice.index", 0).mapcount, 1);

	daemon_start(&D, NULL); /* reaps the same ledger again */
	CHECK_EQ_INT(file_size(goes_l), -1);
	struct stable_node after = node_of("twice.index", 0);
	CHECK_EQ_INT(after.mapcount, 1);
	CHECK_EQ_INT(after.in_use & NODE_USED, NODE_USED);
	kill_child(stays);
}

/* samepaged killed while it closes a domain nothing holds, between the
 * unlinks of its index and of its pool: the pool left behind is removed
 * at the next start (its KSM pages freed), and the domain's name works
 * again.  Before, the pool stayed, and every HELLO of that domain was
 * refused (EIO: "left.pool exists without .index") until someone moved
 * the file away. */
static void test_close_killed_midway(const char *shim)
{
	daemon_stop(&D, SIGTERM);
	pid_t p = daemon_dying_at(shim, "/left.pool", true);
	kill_child(hello_child("left")); /* the domain closes: its files go */
	CHECK(killed(p));
	CHECK_EQ_INT(file_size("left.index"), -1);
	CHECK(file_size("left.pool") > 0);

	daemon_start(&D, NULL);
	CHECK_EQ_INT(file_size("left.pool"), -1);
	CHECK(daemon_logged(&D, "left.pool was left without .index by a domain closed midway"));
	kill_child(hello_child("left"));
}

/* samepaged stopped while it made a domain, after sizing its files and
 * before writing its index: the next start makes it anew (before, the
 * index was "not a samepage domain file" and the name refused for good). */
static void test_index_never_initialised(void)
{
	char path[512];
	daemon_stop(&D, SIGKILL);
	write_file("zero.index", "", 0);
	write_file("zero.pool", "", 0);
	path_of(path, sizeof(path), "zero.index");
	REQUIRE(truncate(path, (off_t)DOM_SIZE) == 0);
	path_of(path, sizeof(path), "zero.pool");
	REQUIRE(truncate(path, (off_t)((size_t)DOM_NODES << PAGE_SHIFT)) == 0);
	daemon_start(&D, NULL);
	CHECK(daemon_logged(&D, "zero.index was never initialised"));
	CHECK_EQ_INT(file_size("zero.index"), -1);
	CHECK_EQ_INT(file_size("zero.pool"), -1);
	kill_child(hello_child("zero"));
}

/* samepaged under an address-space limit (LimitAS=, ulimit -v) that
 * cannot hold a domain's whole pool: the domain is refused (EIO) with a
 * log line that names the limit, never a part of the pool that another
 * process's KSM pages might be past.  (Not under the sanitizers, whose
 * shadow memory needs more address space than any such limit.) */
static void test_address_space_limit(void)
{
#ifndef SAMEPAGE_SANITIZE
	struct rlimit old, rl;
	REQUIRE(getrlimit(RLIMIT_AS, &old) == 0);
	daemon_stop(&D, SIGTERM);
	rl = (struct rlimit){8ULL << 30, old.rlim_max};
	REQUIRE(setrlimit(RLIMIT_AS, &rl) == 0);
	daemon_start(&D, NULL); /* inherits the limit */
	REQUIRE(setrlimit(RLIMIT_AS, &old) == 0);
	char reply[256];
	int fd = raw_dial(&D, false);
	REQUIRE(fd >= 0);
	CHECK(raw_asks(fd, HELLO("limited"), reply, sizeof(reply)) > 0);
	CHECK_EQ_INT(reply_errno(reply), EIO);
	close(fd);
	CHECK(daemon_logged(&D, "domain limited: cannot map all of"));
	CHECK(daemon_logged(&D, "LimitAS="));
	daemon_stop(&D, SIGTERM);
	daemon_start(&D, NULL);
#endif
}

/* ---- a restart that names the state directory by another path ---- */

/* A bind mount of the state directory is the same directory by another
 * path; the clients' maps name the pool by the path they opened it by.
 * samepaged started again under the other path must still see that a
 * client maps its pool (its device and inode), not reap it as gone:
 * before, all 256 of the client's references were dropped and the domain
 * closed while the client lived (a helper's probe, twenty-ninth session),
 * which left it paused for good; with the domain held open, its pages
 * were punched and read zeros.  In a mount namespace of the test's own. */
static void test_restart_by_another_path(void)
{
	if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) {
		printf("SKIP restart_by_another_path: no mount namespace of its own (%s): "
		       "needs CAP_SYS_ADMIN\n",
		       strerror(errno));
		return;
	}
	const size_t n = 256;
	int go[2], ready[2];
	REQUIRE(pipe(go) == 0 && pipe(ready) == 0);
	daemon_set(&D, "pages_to_scan", "100000");
	daemon_set(&D, "sleep_millisecs", "0");
	daemon_set(&D, "run", "1");
	pid_t c = fork();
	REQUIRE(c >= 0);
	if (c == 0) {
		samepage_t *sp;
		REQUIRE(samepage_connect(&sp, "bindpath") == 0);
		char *p = map_pages(n);
		for (size_t i = 0; i < n; i++)
			memset(p + i * PG, 'a' + (int)(i % 8), PG);
		REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
		long long merged = 0;
		for (int i = 0; i < 20000 && merged < (long long)n; i++) {
			usleep(1000);
			samepage_read_number(sp, "ksm_merging_pages", &merged);
		}
		REQUIRE(merged == (long long)n);
		REQUIRE(write(ready[1], "r", 1) == 1);
		char x;
		REQUIRE(read(go[0], &x, 1) == 1);
		/* Back in its domain, as after a restart with the same path. */
		for (int i = 0; i < 300 && (sp->detached || sp->stale); i++)
			usleep(100000);
		size_t bad = 0;
		for (size_t i = 0; i < n * PG; i++)
			bad += p[i] != 'a' + (int)(i / PG % 8);
		printf("client %d: detached %d, stale %d, %zu bytes wrong\n", (int)getpid(),
		       (int)sp->detached, (int)sp->stale, bad);
		fflush(stdout);
		char ok = sp->detached || sp->stale || bad ? 'n' : 'y';
		REQUIRE(write(ready[1], &ok, 1) == 1);
		REQUIRE(read(go[0], &x, 1) == 1); /* alive while the log is read */
		_exit(0);
	}
	char x;
	REQUIRE(read(ready[0], &x, 1) == 1);
	CHECK_EQ_INT(daemon_stop(&D, SIGKILL), SIGKILL);
	char bind[264], state[300];
	snprintf(bind, sizeof(bind), "%s.bind", D.dir);
	REQUIRE(mkdir(bind, 0700) == 0);
	REQUIRE(mount(D.dir, bind, NULL, MS_BIND, NULL) == 0);
	memcpy(state, D.state, sizeof(state));
	snprintf(D.state, sizeof(D.state), "%s/state", bind);
	daemon_start(&D, NULL);
	REQUIRE(write(go[1], "g", 1) == 1);
	REQUIRE(read(ready[0], &x, 1) == 1);
	CHECK_EQ_INT(x, 'y'); /* merged again, its pages as written */
	char gone[64];
	snprintf(gone, sizeof(gone), "process %d gone", (int)c);
	CHECK(!daemon_logged(&D, gone)); /* while it lived */
	REQUIRE(write(go[1], "g", 1) == 1);
	int st;
	REQUIRE(waitpid(c, &st, 0) == c);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK_EQ_INT(daemon_stop(&D, SIGTERM), 0);
	umount2(bind, MNT_DETACH);
	rmdir(bind);
	memcpy(D.state, state, sizeof(state));
	daemon_start(&D, NULL);
	close(go[0]), close(go[1]), close(ready[0]), close(ready[1]);
}

/* The next message on the notification socket within ms (NUL-ended in
 * buf), or false. */
static bool notified(int fd, char *buf, size_t len, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, ms) != 1)
		return false;
	ssize_t n = recv(fd, buf, len - 1, 0);
	buf[n > 0 ? n : 0] = 0;
	return n > 0;
}

/* systemd's notification socket: READY=1 once samepaged answers, then
 * WATCHDOG=1 every half of WATCHDOG_USEC (so that a daemon stuck or
 * stopped, on which its clients' merges wait, is restarted under
 * WatchdogSec=), and none when WATCHDOG_PID names another process.  There
 * was no ping before, only READY=1. */
static void test_watchdog(void)
{
	char path[400], buf[256];
	snprintf(path, sizeof(path), "%s/notify", D.dir);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	REQUIRE(strlen(path) < sizeof(a.sun_path));
	strcpy(a.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	REQUIRE(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	for (int other = 0; other < 2; other++) {
		daemon_stop(&D, SIGTERM);
		setenv("NOTIFY_SOCKET", path, 1);
		setenv("WATCHDOG_USEC", "200000", 1);
		if (other)
			setenv("WATCHDOG_PID", "1", 1);
		daemon_start(&D, NULL);
		unsetenv("NOTIFY_SOCKET");
		unsetenv("WATCHDOG_USEC");
		unsetenv("WATCHDOG_PID");
		CHECK(notified(fd, buf, sizeof(buf), 10000) && !strncmp(buf, "READY=1", 7));
		int pings = 0;
		while (pings < 3 && notified(fd, buf, sizeof(buf), other ? 1000 : 10000))
			pings += !strcmp(buf, "WATCHDOG=1");
		printf("watchdog %s: %d pings\n", other ? "of another process" : "of samepaged",
		       pings);
		CHECK_EQ_INT(pings, other ? 0 : 3);
	}
	close(fd);
	unlink(path);
}

int main(int argc, char **argv)
{
	REQUIRE(argc == 3);
	daemon_init(&D, argv[1]);
	daemon_start(&D, NULL);

	test_requests();
	test_set_value_length();
	test_reader_that_never_reads();
	test_junk_in_state_dir();
	test_broken_ledgers_after_restart();
	test_ledger_left_by_same_pid();
	test_sigterm_during_hellos();
	test_count_nobody_holds();
	test_reap_killed_midway(argv[2]);
	test_close_killed_midway(argv[2]);
	test_index_never_initialised();
	test_address_space_limit();
	test_restart_by_another_path();
	test_watchdog();

	CHECK_EQ_INT(daemon_stop(&D, SIGTERM), 0);
	return check_report("robust");
}
