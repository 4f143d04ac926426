// SPDX-License-Identifier: MIT
/*
 * adv_daemon.c - adversarial tests of engines connected to samepaged
 * (samepage_connect), against a daemon of the test's own: the path of
 * samepaged is in SAMEPAGE_TEST_SAMEPAGED (tests/lib/CMakeLists.txt sets
 * it); without it the tests are skipped (77).
 */
#include "../../lib/internal.h"
#include "../daemon/daemon_util.h"
#include "adv_util.h"

#include <dirent.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <xxhash.h>

static struct daemon D;

/* slash: --state-dir DIR/, as a user may type it. */
static void daemon_up_slash(bool slash)
{
	const char *bin = getenv("SAMEPAGE_TEST_SAMEPAGED");
	if (!bin || !*bin) {
		printf("# skipped: SAMEPAGE_TEST_SAMEPAGED does not name samepaged\n");
		exit(77);
	}
	daemon_init(&D, bin);
	if (slash)
		strcat(D.state, "/");
	daemon_start(&D, NULL);
	daemon_set(&D, "pages_to_scan", "100000");
	daemon_set(&D, "sleep_millisecs", "0");
	daemon_set(&D, "run", "1");
}

static void daemon_up(void)
{
	daemon_up_slash(false);
}

/* As a daemon's helper does: every descriptor closed but a and b (the
 * connection to samepaged a child inherited too, so that samepaged reaps
 * its parent when the parent dies). */
static void close_all_but(int a, int b)
{
	for (int fd = 3; fd < 1024; fd++)
		if (fd != a && fd != b)
			close(fd);
}

static samepage_t *connect_or_die(const char *domain)
{
	samepage_t *sp;
	int err = samepage_connect(&sp, domain);
	if (err) {
		fprintf(stderr, "samepage_connect(%s): %s\n", domain, samepage_strerror(err));
		exit(1);
	}
	return sp;
}

/* Waits (a limit only against a hang) until sp has merged n pages. */
static void wait_merging(samepage_t *sp, long long n)
{
	for (int i = 0; i < 60000 && rd(sp, "ksm_merging_pages") < n; i++) {
		if (i % 100 == 0)
			check_tick();
		usleep(1000);
	}
	REQUIRE(rd(sp, "ksm_merging_pages") >= n);
}

/* A child connected to domain, with n pages of val merged: it writes one
 * byte into the pipe when they are, then waits to be killed. */
static pid_t merged_client(const char *domain, size_t n, int val)
{
	int fds[2];
	REQUIRE(pipe(fds) == 0);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		samepage_t *sp = connect_or_die(domain);
		char *p = map_pages(n);
		memset(p, val, n * PG);
		REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
		wait_merging(sp, (long long)n - 1);
		REQUIRE(write(fds[1], "m", 1) == 1);
		for (;;)
			pause();
	}
	close(fds[1]);
	char c;
	REQUIRE(read(fds[0], &c, 1) == 1);
	close(fds[0]);
	return pid;
}

/* Process B, forked before A has an engine (no fork for it to see): in B,
 * returns 0 once told to go (a byte on go), connected to domain "adv"
 * (*sb); in A, B's pid. */
static pid_t fork_waiting(int go, samepage_t **sb)
{
	pid_t b = fork();
	REQUIRE(b >= 0);
	if (b == 0) {
		char c;
		REQUIRE(read(go, &c, 1) == 1);
		*sb = connect_or_die("adv");
	}
	return b;
}

/* Takes a's lock between two of its full scans: its scanner, which sleeps
 * without the lock, cannot start another until it is let go. */
static void hold_between_scans(samepage_t *a)
{
	for (;;) {
		pthread_mutex_lock(&a->lock);
		if (!a->scan_running)
			return;
		pthread_mutex_unlock(&a->lock);
		usleep(1000);
	}
}

/* Holds a between two full scans, tells process B to go (a byte on go)
 * and returns the byte B answers on done when it is through; a's lock is
 * still held. */
static char release_b_while_held(samepage_t *a, int go, int done)
{
	char c;
	hold_between_scans(a);
	REQUIRE(write(go, "g", 1) == 1);
	REQUIRE(read(done, &c, 1) == 1);
	return c;
}

/* GET run on a connection of its own, with a receive limit: 0 if the
 * daemon answered, -1 if not within limit_s. */
static int daemon_answers_within(int limit_s)
{
	int fd = raw_dial(&D, false);
	REQUIRE(fd >= 0);
	struct timeval tv = {.tv_sec = limit_s};
	REQUIRE(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
	char reply[PROTO_MAX];
	const char *req = "GET run";
	int got = send(fd, req, strlen(req), 0) == (ssize_t)strlen(req)
		      ? (int)recv(fd, reply, sizeof(reply) - 1, 0)
		      : -1;
	close(fd);
	return got > 0 ? 0 : -1;
}

/* The domain's index file of the state directory, mapped as every client
 * maps it: its lock is the one a client's scanner takes. */
static struct domain *map_domain(const char *name)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/%s.index", D.state, name);
	int ifd = open(path, O_RDWR | O_CLOEXEC);
	REQUIRE(ifd >= 0);
	struct domain *dom = mmap(NULL, sizeof(*dom), PROT_READ | PROT_WRITE, MAP_SHARED, ifd, 0);
	REQUIRE(dom != MAP_FAILED);
	close(ifd);
	return dom;
}

/*
 * Finding 12 (RELIABILITY.md): a client's scanner holds the domain's lock
 * while it waits for samepaged's answer to PLACE; samepaged, told that
 * another client of the domain died, reaped its ledger under the same lock
 * and waited for it: the daemon and every client of the domain deadlocked.
 * Here the test holds the domain's lock as a scanner does in a batch, a
 * client with merged pages is SIGKILLed, and samepaged must go on
 * answering; once the lock is let go the dead client's references are
 * dropped all the same (its pages are no longer counted).
 */
void test_daemon_reap_while_locked(void)
{
	daemon_up();
	pid_t victim = merged_client("adv", 32, 'k');
	samepage_t *me = connect_or_die("adv");
	long long sharing = daemon_value(&D, "pages_sharing");
	CHECK(sharing > 0);

	/* The lock, as a client's scanner takes it. */
	struct domain *dom = map_domain("adv");
	REQUIRE(pthread_mutex_lock(&dom->lock) == 0);
	kill(victim, SIGKILL);
	CHECK_EQ_INT(adv_wait(victim), 128 + SIGKILL);
	/* The daemon sees the connection close at once; each GET is one more
	 * chance for it to have reached the reap first. */
	for (int i = 0; i < 3; i++) {
		usleep(300000);
		int answered = daemon_answers_within(15);
		if (answered)
			fprintf(stderr, "samepaged did not answer within 15 s while a client "
					"held the domain's lock (reaping the killed client)\n");
		CHECK_EQ_INT(answered, 0);
	}
	pthread_mutex_unlock(&dom->lock);
	munmap(dom, sizeof(*dom));

	/* Reaped later: the killed client's ledger goes, and its pages with it. */
	int ledgers = 2;
	for (int i = 0; i < 60000 && (ledgers = state_files(&D, "adv.", ".ledger")) > 1; i++) {
		if (i % 100 == 0)
			check_tick();
		usleep(1000);
	}
	CHECK_EQ_INT(ledgers, 1);
	CHECK_EQ_INT(daemon_value(&D, "pages_sharing"), 0);
	CHECK_EQ_INT(daemon_value(&D, "pages_shared"), 0);
	samepage_close(me);
}

/*
 * Finding 45 (RELIABILITY.md): another process of the domain stops while
 * it holds the domain's lock (SIGSTOP, a debugger, a frozen cgroup: the
 * test holds the lock itself here).  This process's scanner then waits
 * for the lock; it waited holding the address-space lock, so every mmap
 * with MAP_FIXED, munmap, mprotect and free() of a mapped block of the
 * process (a VM monitor's threads) waited too, for as long as the other
 * stayed stopped; and so did a discard (MADV_DONTNEED) or an mremap of
 * memory no engine has, which waited for the engine's lock its scanner
 * held.  Now a thread maps, discards, grows, re-protects and unmaps 100
 * times while the lock is held; once it is let go, pages merge again.
 */
static atomic_int mm_calls_done;

static void *mm_calls(void *arg)
{
	(void)arg;
	for (int i = 0; i < 100; i++) {
		char *m =
		    mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		REQUIRE(m != MAP_FAILED);
		m[0] = 1;
		REQUIRE(madvise(m, 16 * PG, MADV_DONTNEED) == 0);
		REQUIRE(m[0] == 0);
		char *g = mremap(m, 16 * PG, 17 * PG, MREMAP_MAYMOVE);
		REQUIRE(g != MAP_FAILED);
		m = g;
		REQUIRE(mprotect(m, 17 * PG, PROT_READ) == 0);
		REQUIRE(munmap(m, 17 * PG) == 0);
	}
	atomic_store(&mm_calls_done, 1);
	return NULL;
}

/* Runs mm_calls() in a thread and checks that it ends while the test
 * holds what `what` says (30 s: a limit only against the hang the test is
 * about); the thread, to join once that is let go. */
static pthread_t mm_calls_meanwhile(const char *what)
{
	pthread_t t;
	atomic_store(&mm_calls_done, 0);
	REQUIRE(pthread_create(&t, NULL, mm_calls, NULL) == 0);
	for (int i = 0; i < 30000 && !atomic_load(&mm_calls_done); i++) {
		if (i % 100 == 0)
			check_tick();
		usleep(1000);
	}
	int done = atomic_load(&mm_calls_done);
	if (!done)
		fprintf(stderr, "mmap/mprotect/munmap waited 30 s for %s\n", what);
	CHECK(done);
	return t;
}

void test_daemon_peer_stopped_holding_lock(void)
{
	daemon_up();
	samepage_t *me = connect_or_die("adv");
	char *p = map_pages(64);
	memset(p, 's', 64 * PG);
	REQUIRE(samepage_madvise(me, p, 64 * PG, SAMEPAGE_MERGEABLE) == 0);
	wait_merging(me, 63);

	struct domain *dom = map_domain("adv");
	REQUIRE(pthread_mutex_lock(&dom->lock) == 0);
	for (int i = 0; i < 60000 && !atomic_load(&dom->lock_waiters); i++) {
		if (i % 100 == 0)
			check_tick();
		usleep(1000); /* until this process's scanner waits for it */
	}
	REQUIRE(atomic_load(&dom->lock_waiters) > 0);
	pthread_t t = mm_calls_meanwhile("the domain's lock, which another process held");
	pthread_mutex_unlock(&dom->lock);
	pthread_join(t, NULL);
	munmap(dom, sizeof(*dom));

	memset(p, 't', 64 * PG); /* new copies, merged once the lock is back */
	wait_merging(me, 63);
	for (size_t i = 0; i < 64 * PG; i += 97)
		REQUIRE(p[i] == 't');
	samepage_close(me);
}

/*
 * Finding 6 (RELIABILITY.md): samepage_write() on a samepage_connect()
 * engine whose daemon dies during the request returned -ECONNRESET (or
 * -EPIPE), where samepage.h promises -ENOTCONN for a daemon that is not
 * there.  Here the daemon is killed and a socket in its place takes each
 * request and closes without an answer, as a daemon dying then does.
 */
static void *answer_nothing(void *arg)
{
	int lfd = *(int *)arg;
	for (int i = 0; i < 2; i++) {
		int c = accept(lfd, NULL, NULL);
		if (c < 0)
			break;
		char buf[256];
		if (i == 0 && recv(c, buf, sizeof(buf), 0) < 0)
			perror("recv");
		close(c); /* the second without reading: EPIPE or ECONNRESET */
	}
	return NULL;
}

/* A socket in the killed daemon's place, answering nothing (two
 * connections, then it is closed): its descriptor. */
static int fake_daemon(pthread_t *t)
{
	static int lfd;
	unlink(D.sock);
	lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	REQUIRE(strlen(D.sock) < sizeof(addr.sun_path));
	memcpy(addr.sun_path, D.sock, strlen(D.sock) + 1);
	REQUIRE(lfd >= 0 && bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
	REQUIRE(listen(lfd, 4) == 0);
	REQUIRE(pthread_create(t, NULL, answer_nothing, &lfd) == 0);
	return lfd;
}

static void fake_daemon_end(pthread_t t, int lfd)
{
	pthread_join(t, NULL);
	close(lfd);
	unlink(D.sock);
}

void test_daemon_dies_during_write(void)
{
	daemon_up();
	samepage_t *sp = connect_or_die("adv");
	daemon_stop(&D, SIGKILL);
	pthread_t t;
	int lfd = fake_daemon(&t);
	for (int i = 0; i < 2; i++) {
		int err = samepage_write(sp, "sleep_millisecs", "20");
		if (err != -ENOTCONN)
			fprintf(stderr, "write %d: %s\n", i, samepage_strerror(err));
		CHECK_EQ_INT(err, -ENOTCONN);
	}
	fake_daemon_end(t, lfd);
	/* No daemon at all: the same. */
	CHECK_EQ_INT(samepage_write(sp, "sleep_millisecs", "20"), -ENOTCONN);
	samepage_close(sp);
}

/* The same for samepage_connect() (found by the soak once finding 6 was
 * fixed: a daemon killed during a client's HELLO gave -ECONNRESET, which
 * samepage.h did not name either). */
void test_daemon_dies_during_connect(void)
{
	daemon_up();
	daemon_stop(&D, SIGKILL);
	pthread_t t;
	int lfd = fake_daemon(&t);
	for (int i = 0; i < 2; i++) {
		samepage_t *sp = NULL;
		int err = samepage_connect(&sp, "adv");
		if (err != -ENOTCONN)
			fprintf(stderr, "connect %d: %s\n", i, samepage_strerror(err));
		CHECK_EQ_INT(err, -ENOTCONN);
		CHECK(sp == NULL);
	}
	fake_daemon_end(t, lfd);
}

/* A daemon stopped (SIGSTOP, a debugger, a frozen cgroup) still takes
 * connections into its socket's backlog and answers nothing: a knob
 * write, a connect and a control request waited for ever (the test's
 * hang guard), a client's scanner asking it again held its engine's lock
 * meanwhile.  Each now ends after 10 s: -ENOTCONN (samepage.h: the daemon
 * is not there), -ETIMEDOUT for samepage_control(); and all is as before
 * once the daemon goes on. */
static volatile sig_atomic_t alarms;
static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

void test_daemon_stopped_answers_nothing(void)
{
	daemon_up();
	samepage_t *sp = connect_or_die("adv");
	CHECK_EQ_INT(kill(D.pid, SIGSTOP), 0);
	CHECK_EQ_INT(samepage_write(sp, "sleep_millisecs", "20"), -ENOTCONN);
	samepage_t *other = NULL;
	CHECK_EQ_INT(samepage_connect(&other, "adv"), -ENOTCONN);
	CHECK(other == NULL);
	char reply[256];
	CHECK_EQ_INT(samepage_control(D.sock, "GET run", reply, sizeof(reply)), -ETIMEDOUT);
	CHECK_EQ_INT(kill(D.pid, SIGCONT), 0);
	CHECK_EQ_INT(samepage_write(sp, "sleep_millisecs", "20"), 0);
	CHECK_EQ_INT(daemon_value(&D, "sleep_millisecs"), 20);
	/* A signal handler that runs while the request waits (SA_RESTART:
	 * a socket with a timeout is never restarted by the kernel) is no
	 * error: it gave -EINTR (the soak's ASan run, found by the CI run of
	 * this fix).  The daemon goes on half a second later, from a child. */
	CHECK_EQ_INT(kill(D.pid, SIGSTOP), 0);
	pid_t cont = fork();
	REQUIRE(cont >= 0);
	if (cont == 0) {
		usleep(500000);
		_exit(kill(D.pid, SIGCONT) != 0);
	}
	struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = SA_RESTART}, old;
	sigaction(SIGALRM, &sa, &old);
	struct itimerval it = {.it_value = {.tv_usec = 100000}};
	setitimer(ITIMER_REAL, &it, NULL);
	CHECK_EQ_INT(samepage_write(sp, "sleep_millisecs", "30"), 0);
	sigaction(SIGALRM, &old, NULL);
	CHECK_EQ_INT(adv_wait(cont), 0);
	CHECK(alarms == 1);
	CHECK_EQ_INT(daemon_value(&D, "sleep_millisecs"), 30);
	samepage_close(sp);
}

/* Whether a thread of this process named name waits in recvmsg(). */
static bool thread_in_recvmsg(const char *name)
{
	DIR *d = opendir("/proc/self/task");
	bool found = false;
	for (struct dirent *e; d && !found && (e = readdir(d));) {
		char path[300], buf[128] = "";
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		bool named = fgets(buf, sizeof(buf), f) && !strncmp(buf, name, strlen(name));
		fclose(f);
		snprintf(path, sizeof(path), "/proc/self/task/%s/syscall", e->d_name);
		f = named ? fopen(path, "r") : NULL;
		if (!f)
			continue;
		found = fgets(buf, sizeof(buf), f) && atoi(buf) == SYS_recvmsg;
		fclose(f);
	}
	if (d)
		closedir(d);
	return found;
}

/* RELIABILITY.md 81: a client's scanner that hands samepaged new KSM pages
 * (PLACE) waits for its answer; it did so holding the address-space lock,
 * so while samepaged was stopped (or stuck) every mmap, munmap, mprotect
 * and free() of a mapped block in the client waited too: a VM monitor
 * stopped with its daemon.  Now the wait lets the lock go: a thread maps,
 * grows, re-protects and unmaps while the scanner waits in PLACE, and
 * once the daemon goes on, the pages merge. */
void test_daemon_stopped_during_place(void)
{
	daemon_up();
	samepage_t *me = connect_or_die("adv");
	CHECK_EQ_INT(kill(D.pid, SIGSTOP), 0);
	char *p = map_pages(64);
	memset(p, 'q', 64 * PG); /* a new content: a new KSM page, placed by samepaged */
	REQUIRE(samepage_madvise(me, p, 64 * PG, SAMEPAGE_MERGEABLE) == 0);
	bool waiting = false;
	for (int i = 0; i < 60000 && !(waiting = thread_in_recvmsg("samepage-ksmd")); i++) {
		if (i % 100 == 0)
			check_tick();
		usleep(1000);
	}
	REQUIRE(waiting); /* the scanner waits for PLACE's answer */
	pthread_t t = mm_calls_meanwhile("a PLACE that a stopped samepaged did not answer");
	/* Pages of the waiting batch mapped anew meanwhile, with other
	 * contents: no merge may map the pool over them once it goes on. */
	REQUIRE(mmap(p, 8 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
		     0) == p);
	memset(p, 'z', 8 * PG);
	CHECK_EQ_INT(kill(D.pid, SIGCONT), 0);
	pthread_join(t, NULL);
	wait_merging(me, 55);
	for (size_t i = 0; i < 64 * PG; i += 97)
		REQUIRE(p[i] == (i < 8 * PG ? 'z' : 'q'));
	samepage_close(me);
}

/*
 * Finding 13 (RELIABILITY.md): a client's ledger counts its mappings of
 * each pool page, and also its merges under way and its pins for forked
 * children; samepaged, reaping a killed client, took all of them off the
 * page's mapping count, so the pages another client of the domain shared
 * with it were counted too few (and that client's own count of merged
 * pages drifted: the sanitizer build's invariant check aborted it).  Here
 * a client merges, forks a child, and is killed; the child then execs
 * (closing the connection it inherited); the test's own engine merged onto
 * the same KSM pages: the domain must count exactly the test's mappings
 * once the killed client is reaped.
 */
void test_daemon_reap_counts_mappings_only(void)
{
	const size_t n = 16;
	daemon_up();
	int fds[2], go[2];
	REQUIRE(pipe(fds) == 0 && pipe(go) == 0);
	pid_t victim = fork();
	REQUIRE(victim >= 0);
	if (victim == 0) {
		samepage_t *sp = connect_or_die("adv");
		char *p = map_pages(n);
		memset(p, 'x', n * PG);
		REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
		wait_merging(sp, (long long)n);
		pid_t child = fork(); /* pins the KSM pages it maps */
		REQUIRE(child >= 0);
		if (child == 0) {
			/* Once its parent is dead: exec, which closes the
			 * connection it inherited (samepaged reaps then). */
			char c;
			if (read(go[0], &c, 1) == 1)
				execl("/bin/sleep", "sleep", "600", (char *)NULL);
			_exit(1);
		}
		REQUIRE(write(fds[1], &child, sizeof(child)) == sizeof(child));
		for (;;)
			pause();
	}
	pid_t child;
	REQUIRE(read(fds[0], &child, sizeof(child)) == sizeof(child));
	samepage_t *me = connect_or_die("adv");
	char *p = map_pages(n);
	memset(p, 'x', n * PG);
	REQUIRE(samepage_madvise(me, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wait_merging(me, (long long)n);
	/* The scanners scan hot (sleep_millisecs 0), holding the domain's
	 * lock batch after batch: samepaged's reap gets it when a scanner
	 * sees it waiting and hands it over (it waited 67 s once, and the
	 * test paused the scanners: RELIABILITY.md, finding 29). */
	kill(victim, SIGKILL);
	CHECK_EQ_INT(adv_wait(victim), 128 + SIGKILL);
	REQUIRE(write(go[1], "g", 1) == 1);
	for (int i = 0; i < 60000 && state_files(&D, "adv.", ".ledger") > 1; i++) {
		if (i % 100 == 0)
			check_tick();
		usleep(1000); /* the limit only stops a hang */
	}
	CHECK_EQ_INT(state_files(&D, "adv.", ".ledger"), 1);
	long long mine = rd(me, "ksm_merging_pages");
	long long counted = daemon_value(&D, "pages_shared") + daemon_value(&D, "pages_sharing");
	if (counted != mine)
		fprintf(stderr,
			"the domain counts %lld mappings of KSM pages, the client maps %lld\n",
			counted, mine);
	CHECK_EQ_INT(mine, (long long)n);
	CHECK_EQ_INT(counted, mine);
	kill(child, SIGKILL);
	samepage_close(me);
}

/* The memory the kernel holds for domain adv's pool (its blocks, bytes):
 * 0 once the domain is closed and its files removed. */
static long long pool_bytes(void)
{
	char path[600];
	struct stat st;
	snprintf(path, sizeof(path), "%s/adv.pool", D.state);
	if (stat(path, &st) < 0 && errno == ENOENT)
		return 0;
	REQUIRE(stat(path, &st) == 0);
	return (long long)st.st_blocks * 512;
}

/* Waits (a limit that only stops a hang) until the state directory holds
 * want files of that suffix for domain adv. */
static void wait_state_files(const char *suffix, int want)
{
	for (int i = 0; i < 60000 && state_files(&D, "adv.", suffix) != want; i++) {
		if (i % 100 == 0)
			check_tick();
		usleep(1000);
	}
	CHECK_EQ_INT(state_files(&D, "adv.", suffix), want);
}

/* n pages of contents no two alike. */
static void fill_distinct(char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		memset(p + i * PG, (int)(i % 251), PG);
		memcpy(p + i * PG, &i, sizeof(i));
	}
}

/* What client pid's ledger of domain adv counts (suffix "ledger", or
 * "forked" once samepaged has reaped it for its children): its pins (one
 * reference, marked as the pin), other references, and the last pool page
 * it counts, over the first 65,536 pool pages. */
struct census {
	size_t pins, odd, last;
};

static struct census ledger_census(const char *suffix, pid_t pid)
{
	static uint32_t refs[4 * 16384], held[4 * 16384];
	const size_t nr = sizeof(refs) / sizeof(refs[0]);
	char path[600];
	/* A kept ledger's name says its owner too: adv.PID.uUID.forked. */
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "adv.%d.", (int)pid);
	DIR *dir = opendir(D.state);
	REQUIRE(dir);
	path[0] = 0;
	for (struct dirent *e; !path[0] && (e = readdir(dir));) {
		size_t n = strlen(e->d_name);
		if (!strncmp(e->d_name, prefix, strlen(prefix)) && n > strlen(suffix) &&
		    !strcmp(e->d_name + n - strlen(suffix), suffix))
			snprintf(path, sizeof(path), "%s/%s", D.state, e->d_name);
	}
	closedir(dir);
	int fd = open(path, O_RDONLY);
	REQUIRE(fd >= 0);
	REQUIRE(pread(fd, refs, sizeof(refs), LEDGER_OFF_REFS) == sizeof(refs));
	REQUIRE(pread(fd, held, sizeof(held), LEDGER_OFF_HELD) == sizeof(held));
	close(fd);
	struct census c = {0, 0, 0};
	for (size_t i = 0; i < nr; i++) {
		bool pin = refs[i] == 1 && held[i] == LEDGER_PIN;
		c.pins += pin;
		c.odd += !pin && (refs[i] || held[i]);
		c.last = refs[i] ? i : c.last;
	}
	return c;
}

/*
 * Finding 28 (RELIABILITY.md): a client pins the KSM pages it maps when
 * it forks (its child's copies map them).  Killed, its mappings were
 * reaped but its pins stayed for good: samepaged did not know when the
 * children were gone, and the pool pages stayed until it restarted.  Here
 * a client merges k contents, forks, merges k more, and is killed: the
 * pages it pinned must stay while the child lives (the child reads them,
 * right), counted alone in what stays of its ledger, and go back to the
 * kernel (the pool file's blocks) once the child has exited.  samepaged
 * reads a ledger 16,384 pool pages at a time: the KSM pages merged after
 * the fork reach past the first such chunk, into one that holds no pin
 * (cb30fa7: such a chunk was left as it was, its references to be
 * dropped a second time).
 */
void test_daemon_reap_pins_after_children(void)
{
	const size_t k = 8, n = 2 * k; /* two pages of each of k contents */
	const size_t m = 16384;	       /* contents merged after the fork, in pairs */
	/* The child outlives its parent: this process reaps it. */
	REQUIRE(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
	daemon_up(); /* scanning hot: the reaps get the lock all the same */
	int fds[2], go[2], done[2];
	REQUIRE(pipe(fds) == 0 && pipe(go) == 0 && pipe(done) == 0);
	pid_t victim = fork();
	REQUIRE(victim >= 0);
	if (victim == 0) {
		samepage_t *sp = connect_or_die("adv");
		char *p = map_pages(n);
		for (size_t i = 0; i < n; i++)
			memset(p + i * PG, 'a' + (int)(i % k), PG);
		REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
		wait_merging(sp, (long long)n);
		pid_t child = fork(); /* pins the KSM pages it maps */
		REQUIRE(child >= 0);
		if (child == 0) {
			close_all_but(go[0], done[1]);
			char c;
			size_t bad = 0;
			if (read(go[0], &c, 1) != 1)
				_exit(1);
			for (size_t i = 0; i < n * PG; i++)
				bad += p[i] != 'a' + (int)((i / PG) % k);
			REQUIRE(write(done[1], &bad, sizeof(bad)) == sizeof(bad));
			if (read(go[0], &c, 1) != 1)
				_exit(1);
			_exit(0); /* its mappings of the pool go */
		}
		/* Merged after the fork: KSM pages it maps and has not pinned,
		 * m of them first, then k that come after the first chunk. */
		char *f = map_pages(2 * m);
		fill_distinct(f, m);
		memcpy(f + m * PG, f, m * PG);
		REQUIRE(samepage_madvise(sp, f, 2 * m * PG, SAMEPAGE_MERGEABLE) == 0);
		wait_merging(sp, (long long)(n + 2 * m));
		char *q = map_pages(n);
		for (size_t i = 0; i < n; i++)
			memset(q + i * PG, 'A' + (int)(i % k), PG);
		REQUIRE(samepage_madvise(sp, q, n * PG, SAMEPAGE_MERGEABLE) == 0);
		wait_merging(sp, (long long)(2 * n + 2 * m));
		REQUIRE(write(fds[1], &child, sizeof(child)) == sizeof(child));
		for (;;)
			pause();
	}
	pid_t child;
	REQUIRE(read(fds[0], &child, sizeof(child)) == sizeof(child));
	long long merged = pool_bytes();
	printf("# pool: %lld bytes while the client lives\n", merged);
	CHECK_CMP(merged, >=, (long long)(k * PG), long long, "%lld");
	/* The premise: its ledger counts pool pages past the first chunk. */
	size_t last = ledger_census("ledger", victim).last;
	printf("# the client's ledger counts pool pages up to %zu\n", last);
	CHECK_CMP(last, >=, (size_t)16384, size_t, "%zu");
	kill(victim, SIGKILL);
	CHECK_EQ_INT(adv_wait(victim), 128 + SIGKILL);
	/* Reaped, its pins kept for the child: which reads every page. */
	wait_state_files(".ledger", 0);
	wait_state_files(".forked", 1);
	/* What stays counts its k pins alone: each one reference, marked as
	 * the pin (the next reap drops no mapping twice). */
	struct census c = ledger_census("forked", victim);
	printf("# .forked: %zu pins, %zu other references\n", c.pins, c.odd);
	CHECK_EQ_INT(c.pins, k);
	CHECK_EQ_INT(c.odd, 0);
	REQUIRE(write(go[1], "g", 1) == 1);
	size_t bad = 1;
	REQUIRE(read(done[0], &bad, sizeof(bad)) == sizeof(bad));
	CHECK_EQ_INT(bad, 0);
	CHECK_CMP(pool_bytes(), >=, (long long)(k * PG), long long, "%lld");
	/* The child gone, so are the pins and the pool's pages. */
	REQUIRE(write(go[1], "e", 1) == 1);
	CHECK_EQ_INT(adv_wait(child), 0);
	wait_state_files(".forked", 0);
	long long left = pool_bytes();
	for (int i = 0; i < 60000 && left > 0; i++) {
		if (i % 100 == 0)
			check_tick();
		usleep(1000); /* samepaged punches freed pages at its next sweep */
		left = pool_bytes();
	}
	printf("# pool: %lld bytes once the child is gone\n", left);
	CHECK_EQ_INT(left, 0);
	CHECK(daemon_logged(&D, "forked children are gone"));
}

/*
 * RELIABILITY.md 53: a client that closes its engine and then forks (its
 * merged pages stay mappings of the pool, the child's copies too), the
 * child closing its descriptors as a daemon's does; the client exits
 * while another client keeps the domain open.  samepaged reaped its
 * references, nothing counting the child, and punched the pages under
 * it: the child read zeros.  Now the close pins the pages it maps and its
 * forks count in its ledger's fork area, as before the close.
 */
static void fork_after_close(bool slash)
{
	const size_t n = 64;
	REQUIRE(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
	daemon_up_slash(slash);
	pid_t keeper = merged_client("adv", 4, 'k'); /* the domain stays open */
	int tell[2], go[2], done[2];
	REQUIRE(pipe(tell) == 0 && pipe(go) == 0 && pipe(done) == 0);
	pid_t client = fork();
	REQUIRE(client >= 0);
	if (client == 0) {
		samepage_t *sp = connect_or_die("adv");
		char *p = map_pages(n);
		fill_distinct(p, n / 2);
		memcpy(p + n / 2 * PG, p, n / 2 * PG);
		REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
		wait_merging(sp, (long long)n);
		samepage_close(sp);
		pid_t child = fork();
		REQUIRE(child >= 0);
		if (child == 0) {
			close_all_but(go[0], done[1]);
			char c;
			if (read(go[0], &c, 1) != 1)
				_exit(1);
			char *want = map_pages(n / 2);
			fill_distinct(want, n / 2);
			size_t bad = 0;
			for (size_t i = 0; i < n; i++)
				bad += memcmp(p + i * PG, want + (i % (n / 2)) * PG, PG) != 0;
			REQUIRE(write(done[1], &bad, sizeof(bad)) == sizeof(bad));
			_exit(0);
		}
		REQUIRE(write(tell[1], &child, sizeof(child)) == sizeof(child));
		_exit(0); /* the client goes; its child stays */
	}
	pid_t child;
	REQUIRE(read(tell[0], &child, sizeof(child)) == sizeof(child));
	CHECK_EQ_INT(adv_wait(client), 0);
	/* samepaged reaps the client (its log says so), and its next sweeps
	 * punch what it dropped. */
	char gone[64];
	snprintf(gone, sizeof(gone), "process %d gone", (int)client);
	for (int i = 0; i < 60000 && !daemon_logged(&D, gone); i++) {
		if (i % 100 == 0)
			check_tick();
		usleep(1000);
	}
	REQUIRE(daemon_logged(&D, gone));
	usleep(200000);
	REQUIRE(write(go[1], "g", 1) == 1);
	size_t bad = n;
	REQUIRE(read(done[0], &bad, sizeof(bad)) == sizeof(bad));
	printf("# the child of a client that closed its engine: %zu of %zu pages wrong\n", bad, n);
	CHECK_EQ_INT(bad, 0);
	CHECK_EQ_INT(adv_wait(child), 0);
	/* The child gone, so are the pins (nothing leaks). */
	wait_state_files(".forked", 0);
	CHECK(daemon_logged(&D, "forked children are gone"));
	kill(keeper, SIGKILL);
	adv_wait(keeper);
}

void test_daemon_fork_after_close(void)
{
	fork_after_close(false);
}

/* RELIABILITY.md 55: the same (a forked child, its parent gone, the child
 * having closed its descriptors), with --state-dir given with a trailing
 * slash: samepaged read every process's maps for a pool path of its own
 * making (DIR//adv.pool), found none, took the child for gone and
 * punched its pages (a helper's review found it). */
void test_daemon_state_dir_slash(void)
{
	fork_after_close(true);
}

/* The domain's counters, as samepaged says them. */
static void check_domain(long long shared, long long sharing, long long chains, long long dups)
{
	CHECK_EQ_INT(daemon_value(&D, "pages_shared"), shared);
	CHECK_EQ_INT(daemon_value(&D, "pages_sharing"), sharing);
	CHECK_EQ_INT(daemon_value(&D, "stable_node_chains"), chains);
	CHECK_EQ_INT(daemon_value(&D, "stable_node_dups"), dups);
}

/*
 * Issue 13.2: a samepaged client merges a run of one content onto a strip
 * of dups, as a local engine does.  The daemon writes a client's new KSM
 * pages only when the batch merges, so the strip names each new dup's
 * chain head itself: the domain's chain counts must be the kernel's.
 */
void test_daemon_strip(void)
{
	const size_t n = 1000; /* 4 dups of 250 at max_page_sharing 256 */
	daemon_up();
	samepage_t *sp = connect_or_die("adv");
	char *p = map_pages(n);
	memset(p, 's', n * PG);
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wait_merging(sp, (long long)n);
	check_domain(4, (long long)n - 4, 1, 4);
	CHECK_CMP(pool_mappings(), <=, (int)(n / 4 + 2), int, "%d");
	for (size_t i = 0; i < n * PG; i += 4093)
		REQUIRE(p[i] == 's');
	p[7 * PG] = 'w'; /* copy-on-write inside a strip */
	CHECK(p[7 * PG] == 'w' && p[8 * PG] == 's' && p[6 * PG + PG - 1] == 's');
	samepage_close(sp);
}

/*
 * The same for contents that make no run (a, b, a, b...): a KSM page a
 * client made earlier in the batch, which samepaged has not written yet,
 * is found by the next page of its contents (it made a new KSM page for
 * every pair before: 373 for 1000 pages of one content).
 */
void test_daemon_same_batch(void)
{
	const size_t n = 1000; /* 500 of each: 2 dups each at 256 */
	daemon_up();
	samepage_t *sp = connect_or_die("adv");
	char *p = map_pages(n);
	for (size_t i = 0; i < n; i++)
		memset(p + i * PG, i % 2 ? 'a' : 'b', PG);
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wait_merging(sp, (long long)n);
	check_domain(4, (long long)n - 4, 2, 4);
	for (size_t i = 0; i < n; i++)
		REQUIRE(p[i * PG + (i % PG)] == (i % 2 ? 'a' : 'b'));
	samepage_close(sp);
}

/*
 * Issue 12: a page whose twin is in another process merged a full scan
 * after the kernel would merge it.  The kernel merges both pages of an
 * unstable match at once; across a domain, the page that finds the other
 * process's hint makes the KSM page, and the twin found it only at its
 * own next visit.  Here process A has done its full scans alone (its
 * pages wait in its unstable tree, with hints) and is held between two
 * full scans; process B makes the KSM pages.  A must then merge its twins
 * before it visits them again: more pages merged than visited.  Before,
 * every merge of A's needed a visit, so it could never merge more than
 * it visited.
 */
void test_daemon_partner(void)
{
	const size_t n = 2000;
	int go[2], done[2];
	REQUIRE(pipe(go) == 0 && pipe(done) == 0);
	daemon_up();
	/* 200 pages a wake-up for the domain: a full scan takes many. */
	daemon_set(&D, "pages_to_scan", "200");
	daemon_set(&D, "sleep_millisecs", "50");
	samepage_t *sb;
	pid_t b = fork_waiting(go[0], &sb);
	if (b == 0) {
		char *q = map_pages(n);
		fill_distinct(q, n);
		REQUIRE(samepage_madvise(sb, q, n * PG, SAMEPAGE_MERGEABLE) == 0);
		/* All but the few whose hint another of A's pages took. */
		wait_merging(sb, (long long)(n - n / 10));
		REQUIRE(write(done[1], "m", 1) == 1);
		for (;;)
			pause();
	}
	samepage_t *a = connect_or_die("adv");
	char *p = map_pages(n);
	fill_distinct(p, n);
	REQUIRE(samepage_madvise(a, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	REQUIRE(wait_scans(a, 3) == 0); /* from the second, every page waits with a hint */
	CHECK_EQ_INT(rd(a, "ksm_merging_pages"), 0);

	release_b_while_held(a, go[1], done[0]);
	long long visits0 = (long long)a->c.pages_scanned;
	pthread_mutex_unlock(&a->lock);

	long long merged = 0;
	for (int i = 0; i < 60000 && (merged = rd(a, "ksm_merging_pages")) < (long long)n / 2;
	     i++) {
		if (i % 100 == 0)
			check_tick();
		usleep(1000); /* the limit only stops a hang */
	}
	long long visits = rd(a, "pages_scanned") - visits0;
	printf("# A merged %lld pages with %lld visits since B made the KSM pages\n", merged,
	       visits);
	CHECK_CMP(merged, >=, (long long)n / 2, long long, "%lld");
	CHECK_CMP(merged, >, visits, long long, "%lld");
	kill(b, SIGKILL);
	CHECK_EQ_INT(adv_wait(b), 128 + SIGKILL);
	for (size_t i = 0; i < n; i++)
		REQUIRE(!memcmp(p + i * PG, &i, sizeof(i)) &&
			p[i * PG + PG - 1] == (char)(i % 251));
	samepage_close(a);
}

/* A page of 'h' whose XXH3 (the engine's page hash) falls in hint slot
 * `slot` (slot < 0: any), counted from *seed. */
static void page_in_slot(char *page, long long slot, uint64_t *seed)
{
	memset(page, 'h', PG);
	do {
		++*seed;
		memcpy(page, seed, sizeof(*seed));
	} while (slot >= 0 && (long long)(XXH3_64bits(page, PG) % DOM_HINTS) != slot);
}

/*
 * The domain's hints were one a slot.  A process posts the hints of its
 * waiting pages again at every full scan, so its unique pages overwrote
 * the hint of a page whose twin had not come yet: the twin, coming later,
 * found no hint, and the two merged only when the first process visited
 * its page again, which the smart scan was by then skipping (4 processes
 * of one image: 11-22 full scans to converge instead of the kernel's 4-5).
 * Here A holds page X and 7 unique pages whose hashes fall in X's slot,
 * scans, and is then held between two full scans; B maps X.  B must find
 * A's hint and merge X within 3 of its own full scans (before: never,
 * while A was held).
 */
void test_daemon_hint_collision(void)
{
	const size_t n = 8;
	int go[2], done[2];
	REQUIRE(pipe(go) == 0 && pipe(done) == 0);
	static char pages[8][4096];
	uint64_t seed = 0;
	page_in_slot(pages[0], -1, &seed);
	long long slot = (long long)(XXH3_64bits(pages[0], PG) % DOM_HINTS);
	for (size_t i = 1; i < n; i++)
		page_in_slot(pages[i], slot, &seed);
	daemon_up();
	daemon_set(&D, "sleep_millisecs", "20");
	samepage_t *sb;
	pid_t b = fork_waiting(go[0], &sb);
	if (b == 0) {
		char *q = map_pages(1);
		memcpy(q, pages[0], PG);
		REQUIRE(samepage_madvise(sb, q, PG, SAMEPAGE_MERGEABLE) == 0);
		long long scans0 = rd(sb, "full_scans"), scans = 0;
		while (rd(sb, "ksm_merging_pages") < 1 && scans < 10) {
			REQUIRE(wait_scans(sb, 1) == 0);
			scans = rd(sb, "full_scans") - scans0;
		}
		char r = (char)(rd(sb, "ksm_merging_pages") >= 1 ? scans : 100);
		REQUIRE(write(done[1], &r, 1) == 1);
		for (;;)
			pause();
	}
	samepage_t *a = connect_or_die("adv");
	char *p = map_pages(n);
	for (size_t i = 0; i < n; i++)
		memcpy(p + i * PG, pages[i], PG);
	REQUIRE(samepage_madvise(a, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	REQUIRE(wait_scans(a, 4) == 0); /* from the second, every page waits with a hint */
	CHECK_EQ_INT(rd(a, "ksm_merging_pages"), 0);

	char r = release_b_while_held(a, go[1], done[0]);
	pthread_mutex_unlock(&a->lock);
	printf("# B merged X after %d of its full scans (100: not in 10)\n", r);
	CHECK_CMP((int)r, <=, 3, int, "%d");
	kill(b, SIGKILL);
	CHECK_EQ_INT(adv_wait(b), 128 + SIGKILL);
	for (size_t i = 0; i < n; i++)
		REQUIRE(!memcmp(p + i * PG, pages[i], PG));
	samepage_close(a);
}

/* Pages of the mapping [p, p + n pages) that are in memory (mincore). */
static size_t resident_pages(const void *p, size_t n)
{
	unsigned char vec[PLACE_MAX];
	size_t in = 0;
	REQUIRE(n <= PLACE_MAX && mincore((void *)p, n * PG, vec) == 0);
	for (size_t i = 0; i < n; i++)
		in += vec[i] & 1;
	return in;
}

/*
 * Issue 12: a samepaged client stages every new KSM page in its ledger (a
 * file of the daemon's state directory) for the daemon to copy into the
 * pool.  That area, up to 2 MiB a process, stayed in memory for ever once
 * written: on 3 QEMU guests, 6 MiB that the kernel's KSM does not spend.
 * Once a whole full scan has staged nothing, it must go back.
 */
void test_daemon_staging_released(void)
{
	const size_t n = 2048; /* 1024 contents, two pages each */
	daemon_up();
	samepage_t *sp = connect_or_die("adv");
	char *p = map_pages(n);
	for (size_t i = 0; i < n; i++) {
		memset(p + i * PG, (int)(i % 1024 % 251), PG);
		memcpy(p + i * PG, &(size_t){i % 1024}, sizeof(size_t));
	}
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wait_merging(sp, (long long)n);
	const char *staging = (const char *)sp->ledger + LEDGER_OFF_STAGING;
	REQUIRE(wait_scans(sp, 3) == 0);
	size_t in = resident_pages(staging, PLACE_MAX);
	printf("# %zu of %u staging pages in memory after 3 full scans with nothing new\n", in,
	       PLACE_MAX);
	CHECK_EQ_INT(in, 0);
	CHECK_EQ_INT(rd(sp, "ksm_merging_pages"), (long long)n);
	/* New contents stage again (the area is written anew) and merge. */
	char *q = map_pages(64);
	for (size_t i = 0; i < 64; i++)
		memset(q + i * PG, 'q', PG);
	REQUIRE(samepage_madvise(sp, q, 64 * PG, SAMEPAGE_MERGEABLE) == 0);
	wait_merging(sp, (long long)n + 64);
	for (size_t i = 0; i < n; i++)
		REQUIRE(*(size_t *)(p + i * PG) == i % 1024 &&
			p[i * PG + PG - 1] == (char)(i % 1024 % 251));
	for (size_t i = 0; i < 64; i++)
		REQUIRE(q[i * PG + i] == 'q');
	samepage_close(sp);
}

/* The sum over CLIENTS' lines of field (name=value), and of one pid's
 * line in *own. */
/* How many times needle is in hay. */
static int count_of(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *at = hay; (at = strstr(at, needle)); at++)
		n++;
	return n;
}

static long long clients_sum(const char *reply, const char *field, pid_t pid, long long *own)
{
	char key[64], me[32];
	long long sum = 0;
	snprintf(key, sizeof(key), " %s=", field);
	snprintf(me, sizeof(me), "pid=%d ", (int)pid);
	for (const char *l = strchr(reply, '\n'); l; l = strchr(l + 1, '\n')) {
		const char *end = strchr(l + 1, '\n'), *v = strstr(l, key);
		if (!v || (end && v > end))
			continue;
		long long n = atoll(v + strlen(key));
		sum += n;
		if (!strncmp(l + 1, me, strlen(me)))
			*own = n;
	}
	return sum;
}

/*
 * samepaged's CLIENTS gave each client's zero pages as ksm_zero_pages
 * with use_zero_pages 0, and left them out of its ksm_merging_pages and
 * ksm_rmap_items, while GET (counter_value()) counted them as KSM pages:
 * `ksmctl --user top` said ZERO 23 where `ksmctl --user status` said 0.
 * Two clients with zero pages: CLIENTS' numbers sum to GET's, and the
 * client's line says what its engine says.
 */
void test_daemon_clients_zero_pages(void)
{
	const size_t n = 300, zeros = 22, unique = 20;
	int fds[2];
	daemon_up();
	daemon_set(&D, "use_zero_pages", "0");
	REQUIRE(pipe(fds) == 0);
	pid_t child = fork();
	REQUIRE(child >= 0);
	if (child == 0) { /* 100 pages of 'c' and 11 zero pages */
		samepage_t *sb = connect_or_die("adv");
		char *q = map_pages(111);
		memset(q, 'c', 100 * PG);
		memset(q + 100 * PG, 0, 11 * PG); /* present, all zero */
		REQUIRE(samepage_madvise(sb, q, 111 * PG, SAMEPAGE_MERGEABLE) == 0);
		wait_merging(sb, 111);
		REQUIRE(write(fds[1], "m", 1) == 1);
		for (;;)
			pause();
	}
	char c;
	REQUIRE(read(fds[0], &c, 1) == 1);
	samepage_t *sp = connect_or_die("adv");
	char *p = map_pages(n + zeros + unique);
	memset(p, 'c', n * PG);
	memset(p + n * PG, 0, zeros * PG);
	fill_distinct(p + (n + zeros) * PG, unique);
	for (size_t i = n + zeros; i < n + zeros + unique; i++)
		p[i * PG + PG - 2] = 'u'; /* the first is all zeros otherwise */
	REQUIRE(samepage_madvise(sp, p, (n + zeros + unique) * PG, SAMEPAGE_MERGEABLE) == 0);
	wait_merging(sp, (long long)(n + zeros));
	REQUIRE(wait_scans(sp, 2) == 0);
	/* Stopped, so that the ledgers stop changing (full_scans, in CLIENTS
	 * too, moved at every scan: under load the two never agreed). */
	daemon_set(&D, "run", "0");

	static const char *const names[] = {"ksm_merging_pages", "ksm_zero_pages",
					    "ksm_rmap_items"};
	static char reply[PROTO_MAX], again[PROTO_MAX];
	long long sum[3], own[3], get[3];
	/* Both counted between two publications of the ledgers: read until
	 * CLIENTS says the same before and after GET. */
	for (int tries = 0; tries < 1000; tries++) {
		if (tries % 100 == 0)
			check_tick();
		REQUIRE(samepage_control(D.sock, "CLIENTS", reply, sizeof(reply)) == 0);
		for (int i = 0; i < 3; i++)
			get[i] = daemon_value(&D, names[i]);
		REQUIRE(samepage_control(D.sock, "CLIENTS", again, sizeof(again)) == 0);
		if (!strcmp(reply, again))
			break;
		usleep(10000);
	}
	REQUIRE(!strcmp(reply, again));
	/* CLIENTS FROM: from the FROM'th client on; the first is 0 */
	REQUIRE(samepage_control(D.sock, "CLIENTS 0", again, sizeof(again)) == 0);
	CHECK_EQ_INT(count_of(again, "\npid="), count_of(reply, "\npid="));
	CHECK(count_of(reply, "\npid=") >= 1);
	CHECK_EQ_INT(samepage_control(D.sock, "CLIENTS 100000", again, sizeof(again)), 0);
	CHECK_EQ_INT(count_of(again, "\npid="), 0);
	CHECK_EQ_INT(samepage_control(D.sock, "CLIENTS x", again, sizeof(again)), -EINVAL);
	CHECK_EQ_INT(samepage_control(D.sock, "CLIENTS 1 2", again, sizeof(again)), -EINVAL);
	for (int i = 0; i < 3; i++) {
		own[i] = -1;
		sum[i] = clients_sum(reply, names[i], getpid(), &own[i]);
		printf("# %s: CLIENTS %lld (this process %lld), GET %lld, this engine %lld\n",
		       names[i], sum[i], own[i], get[i], rd(sp, names[i]));
		CHECK_EQ_INT(sum[i], get[i]);
		CHECK_EQ_INT(own[i], rd(sp, names[i]));
	}
	CHECK_EQ_INT(get[1], 0);
	CHECK_EQ_INT(own[0], (long long)(n + zeros));
	kill(child, SIGKILL);
	CHECK_EQ_INT(adv_wait(child), 128 + SIGKILL);
	samepage_close(sp);
}

/*
 * Pages a client keeps out for a protection key and for a stack that
 * grows down (RELIABILITY.md 94, 95) were counted nowhere: samepaged's
 * GET and CLIENTS, which ksmctl --user doctor and top read, now give them
 * (pages_kept_pkey, pages_kept_stack), as the client's engine does.
 */
void test_daemon_kept_counts(void)
{
	const size_t n = 24, m = 40;
	daemon_up();
	samepage_t *sp = connect_or_die("adv");
	char *r;
	size_t rlen;
	char *stack = map_growsdown(n, &r, &rlen);
	memset(stack, 's', n * PG);
	REQUIRE(samepage_madvise(sp, stack, n * PG, SAMEPAGE_MERGEABLE) == 0);
	int key = pkey_alloc(0, 0);
	char *keyed = map_pages(m);
	memset(keyed, 'k', m * PG);
	if (key >= 0)
		REQUIRE(pkey_mprotect(keyed, m * PG, PROT_READ | PROT_WRITE, key) == 0);
	REQUIRE(samepage_madvise(sp, keyed, m * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 3) == 0);
	daemon_set(&D, "run", "0"); /* the ledgers stop changing */
	const long long want[2] = {key >= 0 ? (long long)m : 0, (long long)n};
	static const char *const names[2] = {"pages_kept_pkey", "pages_kept_stack"};
	static char reply[PROTO_MAX];
	REQUIRE(samepage_control(D.sock, "CLIENTS", reply, sizeof(reply)) == 0);
	for (int i = 0; i < 2; i++) {
		long long own = -1, sum = clients_sum(reply, names[i], getpid(), &own);
		printf("# %s: engine %lld, CLIENTS %lld (this process %lld), GET %lld\n", names[i],
		       rd(sp, names[i]), sum, own, daemon_value(&D, names[i]));
		CHECK_EQ_INT(rd(sp, names[i]), want[i]);
		CHECK_EQ_INT(own, want[i]);
		CHECK_EQ_INT(daemon_value(&D, names[i]), sum);
	}
	if (key < 0)
		printf("# no protection keys here: pages_kept_pkey is 0\n");
	samepage_close(sp);
	munmap(keyed, m * PG);
	munmap(r, rlen);
	if (key >= 0)
		pkey_free(key);
}

/*
 * Clients merge with their domain's lock let go (merge_batch()): one
 * killed in the middle of a batch's merges leaves the pending counts of
 * the nodes it was merging into, which only samepaged's reaper takes off
 * (the merges under way its ledger holds, ledger_reap()).  A count left
 * behind keeps its node, and its pool page, while the domain lives.
 * Beside a client that stays (one KSM page), pairs of clients of one
 * image killed at moments spread over their merging; once they are
 * reaped, the pool holds the one page that stays, and at most one page
 * more for each killed client: a kill between the two halves of a count's
 * update (the node's count and the ledger's, index.c and finish_page())
 * leaves that node's count one too high, by design never one too low.
 * (Without the reaper's part, 251 pages stayed; the sanitizer build hit
 * such a window once in a CI run, 2 pages.)
 */
void test_daemon_killed_while_merging(void)
{
	daemon_up();
	pid_t stays = merged_client("killed", 64, 'S');
	CHECK_EQ_INT(daemon_value(&D, "pool_pages"), 1);
	const long long stayer = daemon_value(&D, "ksm_merging_pages");
	const size_t n = 8192; /* 32 MiB a client, 251 contents */
	long long merged_seen = 0;
	for (int round = 0; round < 16; round++) {
		pid_t pid[2];
		int ready[2];
		REQUIRE(pipe(ready) == 0);
		for (int k = 0; k < 2; k++) {
			pid[k] = fork();
			REQUIRE(pid[k] >= 0);
			if (pid[k] == 0) {
				close(ready[0]);
				samepage_t *sp = connect_or_die("killed");
				char *p = map_pages(n);
				for (size_t i = 0; i < n; i++)
					memset(p + i * PG, (int)(i % 251) + 1, PG);
				REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
				REQUIRE(write(ready[1], "r", 1) == 1);
				for (;;)
					pause();
			}
		}
		close(ready[1]);
		char c;
		for (int k = 0; k < 2; k++)
			REQUIRE(read(ready[0], &c, 1) == 1);
		close(ready[0]);
		/* Killed 0 to 60 ms after their first merge (a wait from their
		 * start could end before it on a loaded machine) */
		for (int i = 0; i < 20000 && daemon_value(&D, "ksm_merging_pages") <= stayer; i++) {
			if (i % 100 == 0)
				check_tick();
			usleep(1000);
		}
		usleep((useconds_t)(round * 4000));
		merged_seen += daemon_value(&D, "ksm_merging_pages") - stayer;
		for (int k = 0; k < 2; k++) {
			kill(pid[k], SIGKILL);
			waitpid(pid[k], NULL, 0);
		}
		check_tick();
	}
	printf("the killed clients' merging pages at the kills, summed: %lld\n", merged_seen);
	CHECK(merged_seen > 0); /* the kills came once pages merged */
	const long long killed = 2 * 16;
	for (int i = 0; i < 20000 && (state_files(&D, "killed.", ".ledger") > 1 ||
				      daemon_value(&D, "pool_pages") > 1 + killed);
	     i++) {
		if (i % 100 == 0)
			check_tick();
		usleep(1000);
	}
	for (int i = 0; i < 2000 && daemon_value(&D, "pool_pages") > 1; i++)
		usleep(1000); /* the sweep's punches, if any are due */
	CHECK_EQ_INT(state_files(&D, "killed.", ".ledger"), 1);
	long long left = daemon_value(&D, "pool_pages");
	printf("pool pages left: %lld (1 the client that stays)\n", left);
	CHECK_CMP(left, >=, 1LL, long long, "%lld");
	CHECK_CMP(left, <=, 1 + killed, long long, "%lld");
	kill(stays, SIGKILL);
	waitpid(stays, NULL, 0);
	for (int i = 0; i < 20000 && state_files(&D, "killed.", "") > 0; i++)
		usleep(1000);
	CHECK_EQ_INT(state_files(&D, "killed.", ""), 0);
}

/*
 * RELIABILITY.md 67, found by review: an engine connected again to a
 * domain whose pool this process still maps (pages its engine merged
 * before it was closed; a forked child that connects again, as the
 * preload library's does, has its parent's) registered those pages as if
 * they were anonymous.  Zeroed by the application (private copies, still
 * in the pool's mapping), they were dropped with MADV_DONTNEED, which read
 * the pool's pages back: the contents before the zeros.
 */
static size_t zeroed_then_scanned(char *p, size_t n)
{
	daemon_set(&D, "run", "0");
	samepage_t *again = connect_or_die("zdrop");
	REQUIRE(samepage_madvise(again, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	memset(p, 0, n * PG); /* private copies, in the pool's mapping */
	adv_maps_fresh(again);
	daemon_set(&D, "run", "1");
	adv_scans_or_untracked(again, 3);
	size_t bad = 0;
	for (size_t i = 0; i < n * PG; i++)
		bad += p[i] != 0;
	samepage_close(again);
	return bad;
}

void test_daemon_zero_drop_after_reconnect(void)
{
	const size_t n = 64;
	daemon_up();
	for (int round = 0; round < 4; round++) {
		bool forked = round % 2;
		char *p = map_pages(n);
		memset(p, 'r', n * PG);
		samepage_t *first = connect_or_die("zdrop");
		REQUIRE(samepage_madvise(first, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
		wait_merging(first, (long long)n);
		REQUIRE(pages_mapping_pool(p, n) == n);
		if (!forked) {
			samepage_close(first); /* the pages stay merged */
			CHECK_EQ_U64(zeroed_then_scanned(p, n), 0);
		} else {
			pid_t pid = fork();
			REQUIRE(pid >= 0);
			if (pid == 0)
				_exit(zeroed_then_scanned(p, n) ? 3 : 0);
			CHECK_EQ_INT(adv_wait(pid), 0);
			samepage_close(first);
		}
		munmap(p, n * PG);
	}
}

/*
 * RELIABILITY.md 82: a client reconnecting to a restarted samepaged
 * checked that the pool handed back was its own, not the ledger.  Its
 * ledger removed while samepaged was away (by hand, a clean-up), the
 * daemon made a new one, empty, and the client went on writing the one it
 * maps (another client holds the domain, whose files are taken back):
 * its next PLACE had the daemon read the new file's place list
 * (zeros) and staging pages (zeros), and write them over pool page 0,
 * which this client's 64 pages map (the daemon checks every ledger but the
 * placing client's own).  Now the client stays paused, its memory as
 * written.
 */
void test_daemon_ledger_gone_at_reconnect(void)
{
	const size_t n = 64;
	daemon_up();
	samepage_t *sp = connect_or_die("swap");
	char *p = map_pages(n);
	memset(p, 'w', n * PG);
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wait_merging(sp, (long long)n);
	REQUIRE(pages_mapping_pool(p, n) == n);	     /* pool page 0 */
	pid_t other = merged_client("swap", 8, 'o'); /* holds the domain across the restart */
	daemon_stop(&D, SIGKILL);
	char ledger[600], away[600];
	snprintf(ledger, sizeof(ledger), "%s/swap.%d.ledger", D.state, (int)getpid());
	snprintf(away, sizeof(away), "%s/swap.%d.away", D.state, (int)getpid());
	REQUIRE(rename(ledger, away) == 0);
	daemon_start(&D, NULL);
	/* The client's HELLO again (each second) makes a new ledger. */
	for (int i = 0; i < 10000 && access(ledger, F_OK) < 0; i++) {
		if (i % 100 == 0)
			check_tick();
		usleep(1000);
	}
	CHECK_EQ_INT(access(ledger, F_OK), 0);
	usleep(500000);
	/* A new content to merge: a new KSM page to place. */
	char *q = map_pages(n);
	memset(q, 'x', n * PG);
	REQUIRE(samepage_madvise(sp, q, n * PG, SAMEPAGE_MERGEABLE) == 0);
	for (int i = 0; i < 30; i++) {
		check_tick();
		usleep(100000);
	}
	size_t bad = 0;
	for (size_t i = 0; i < n * PG; i++)
		bad += p[i] != 'w';
	printf("# bytes of the merged pages changed: %zu\n", bad);
	CHECK_EQ_U64(bad, 0);
	bad = 0;
	for (size_t i = 0; i < n * PG; i++)
		bad += q[i] != 'x';
	CHECK_EQ_U64(bad, 0);
	samepage_close(sp);
	unlink(away);
	kill(other, SIGKILL);
	CHECK_EQ_INT(adv_wait(other), 128 + SIGKILL);
}

/* test_daemon_noexec_not_sealed: the mount made over the daemon's state
 * directory, taken off at exit (before the directory is removed). */
static char noexec_mount[sizeof(D.state)];

static void noexec_umount(void)
{
	if (*noexec_mount)
		umount2(noexec_mount, MNT_DETACH);
}

/*
 * A review's finding on RELIABILITY.md 113: a merge's mmap of the pool
 * PROT_EXEC is refused with EPERM from a noexec mount (samepaged's state
 * directory on a hardened /dev/shm), which the merge took for a seal:
 * executable memory was counted in pages_kept_sealed, and kept out for
 * good.  EPERM says sealed of memory that is not executable only.
 */
void test_daemon_noexec_not_sealed(void)
{
	const size_t n = 16;
	const char *bin = getenv("SAMEPAGE_TEST_SAMEPAGED");
	if (!bin || !*bin) {
		printf("# skipped: SAMEPAGE_TEST_SAMEPAGED does not name samepaged\n");
		exit(77);
	}
	daemon_init(&D, bin);
	REQUIRE(mkdir(D.state, 0700) == 0);
	if (mount("tmpfs", D.state, "tmpfs", MS_NOEXEC | MS_NOSUID | MS_NODEV, "mode=0700")) {
		printf("# skipped: cannot mount a noexec tmpfs here (%s): root's test\n",
		       strerror(errno));
		exit(77);
	}
	snprintf(noexec_mount, sizeof(noexec_mount), "%s", D.state);
	atexit(noexec_umount);
	daemon_start(&D, NULL);
	daemon_set(&D, "pages_to_scan", "100000");
	daemon_set(&D, "sleep_millisecs", "0");
	daemon_set(&D, "run", "1");
	samepage_t *sp = connect_or_die("adv");
	char *p = mmap(NULL, n * PG, PROT_READ | PROT_WRITE | PROT_EXEC,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(p != MAP_FAILED);
	memset(p, 'x', n * PG);
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 3) == 0);
	printf("# executable pages from a noexec state directory: %zu of %zu merged, "
	       "pages_kept_sealed %lld\n",
	       pages_mapping_pool(p, n), n, rd(sp, "pages_kept_sealed"));
	CHECK_EQ_INT(rd(sp, "pages_kept_sealed"), 0);
	/* Not executable any more: they merge (a seal would have kept them). */
	REQUIRE(mprotect(p, n * PG, PROT_READ | PROT_WRITE) == 0);
	for (int k = 0; k < 20 && pages_mapping_pool(p, n) < n; k++)
		REQUIRE(wait_scans(sp, 1) == 0);
	CHECK_EQ_U64(pages_mapping_pool(p, n), n);
	samepage_close(sp);
	munmap(p, n * PG);
}
