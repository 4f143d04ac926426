// SPDX-License-Identifier: MIT
/*
 * test_statedir_full.c - samepaged and its clients when the filesystem of
 * the state directory (tmpfs) fills up.
 *
 * A page that tmpfs cannot allocate is a SIGBUS in whichever process
 * touches it first.  Before, with the state directory on a 96 MiB tmpfs,
 * samepaged and its client both died of SIGBUS: when the pool grew into
 * the last pages, and again when another program filled the filesystem
 * while the client kept writing and merging.  Now samepaged keeps 64 MiB
 * (or 1%) of it free and refuses new KSM pages past that (counted,
 * logged), every page of the index, the guard and a ledger is allocated
 * before its first write (MADV_POPULATE_WRITE), and a client never reads a
 * pool page samepaged could not write.
 *
 *  1. A client of 64 MiB of pairs (8192 contents, 32 MiB of KSM pages) on
 *     a 96 MiB tmpfs: some KSM pages are refused, the rest merge.
 *  2. Another program fills the filesystem to the last byte; the client
 *     writes a third of its pages, twice, and goes on merging: nobody dies,
 *     every byte reads back right.
 *  3. A new domain while the filesystem is full: refused (EIO), the log
 *     says why and what to do, samepaged runs on.
 *
 * The test mounts its own tmpfs over the daemon's state directory and
 * unmounts it at exit.  Skipped (77) where it cannot mount (not root).
 *
 * Usage: test_statedir_full PATH-TO-SAMEPAGED
 */
#include "daemon_util.h"

#include <sys/mman.h>
#include <sys/mount.h>

static struct daemon D;
static bool mounted;
static char filler[600];

static void unmount_state(void)
{
	if (!mounted)
		return;
	daemon_stop(&D, SIGKILL);
	unlink(filler);
	umount2(D.state, MNT_DETACH);
}

/* Fills the filesystem of dir to its last byte. */
static void fill_up(void)
{
	int fd = open(filler, O_WRONLY | O_CREAT | O_APPEND, 0600);
	REQUIRE(fd >= 0);
	static char block[1 << 16];
	memset(block, 0x5a, sizeof(block));
	while (write(fd, block, sizeof(block)) > 0)
		;
	while (write(fd, block, 4096) > 0)
		;
	close(fd);
}

/* The client, in a child: merges, then writes and merges on while the
 * filesystem is full.  Exit 0 if every page reads back right, 2 if not. */
static void client(int go_fd, int ready_fd)
{
	const size_t n = 16384;
	samepage_t *sp;
	if (samepage_connect(&sp, "full"))
		_exit(3);
	char *p = mmap(NULL, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		_exit(3);
	madvise(p, n * PG, MADV_NOHUGEPAGE);
	for (size_t i = 0; i < n; i++) {
		size_t k = i / 2;
		memset(p + i * PG, (int)(k % 251) + 1, PG);
		memcpy(p + i * PG, &k, sizeof(k));
	}
	if (samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) || wait_scans(sp, 4))
		_exit(3);
	char c = 'r';
	if (write(ready_fd, &c, 1) != 1 || read(go_fd, &c, 1) != 1) /* the filesystem is full */
		_exit(3);
	for (int round = 0; round < 2; round++) {
		for (size_t i = (size_t)round; i < n; i += 3)
			p[i * PG + 64] = 'w';
		for (size_t i = (size_t)round; i < n; i += 3)
			p[i * PG + 64] = (char)((i / 2) % 251 + 1);
		if (wait_scans(sp, 3))
			_exit(3);
	}
	for (size_t i = 0; i < n; i++) {
		size_t k = i / 2, got;
		memcpy(&got, p + i * PG, sizeof(got));
		if (got != k || p[i * PG + 64] != (char)(k % 251 + 1) ||
		    p[i * PG + PG - 1] != (char)(k % 251 + 1))
			_exit(2);
	}
	_exit(0);
}

int main(int argc, char **argv)
{
	REQUIRE(argc == 2);
	daemon_init(&D, argv[1]);
	REQUIRE(mkdir(D.state, 0700) == 0);
	if (mount("tmpfs", D.state, "tmpfs", 0, "size=96m,mode=0700")) {
		printf("# skipped: cannot mount a tmpfs on %s: %s (run as root)\n", D.state,
		       strerror(errno));
		return 77;
	}
	mounted = true;
	snprintf(filler, sizeof(filler), "%s/filler", D.state);
	atexit(unmount_state);
	daemon_start(&D, NULL);
	daemon_set(&D, "pages_to_scan", "100000");
	daemon_set(&D, "sleep_millisecs", "0");
	daemon_set(&D, "run", "1");

	int go[2], ready[2];
	REQUIRE(pipe(go) == 0 && pipe(ready) == 0);
	pid_t child = fork();
	REQUIRE(child >= 0);
	if (child == 0)
		client(go[0], ready[1]);
	char c;
	REQUIRE(read(ready[0], &c, 1) == 1);
	long long refused = daemon_value(&D, "pool_pages_refused");
	long long shared = daemon_value(&D, "pages_shared");
	printf("# before the filesystem filled: pages_shared %lld, pool_pages_refused %lld\n",
	       shared, refused);
	CHECK_CMP(refused, >, 0LL, long long, "%lld");
	CHECK_CMP(shared, >, 0LL, long long, "%lld");
	CHECK(daemon_logged(&D, "is nearly full"));

	fill_up();
	REQUIRE(write(go[1], "g", 1) == 1);
	int st;
	REQUIRE(waitpid(child, &st, 0) == child);
	printf("# the client %s %d\n", WIFEXITED(st) ? "exited" : "was killed by signal",
	       WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	CHECK(WIFEXITED(st));
	CHECK_EQ_INT(WIFEXITED(st) ? WEXITSTATUS(st) : -1, 0);
	CHECK_EQ_INT(waitpid(D.pid, &st, WNOHANG), 0); /* samepaged runs on */

	/* A new domain on the full filesystem (filled again: the client's
	 * pages went with it): refused, said. */
	for (int i = 0; i < 10000 && state_files(&D, "full.", "") > 0; i++)
		usleep(1000); /* reaped and closed */
	CHECK_EQ_INT(state_files(&D, "full.", ""), 0);
	fill_up();
	int fd = raw_dial(&D, false);
	char reply[256];
	REQUIRE(fd >= 0);
	CHECK(raw_asks(fd, HELLO("other"), reply, sizeof(reply)) > 0);
	CHECK(reply_errno(reply) != 0);
	close(fd);
	CHECK(daemon_logged(&D, "domain other: cannot write its index"));
	CHECK_EQ_INT(waitpid(D.pid, &st, WNOHANG), 0);

	unlink(filler);
	CHECK_EQ_INT(daemon_stop(&D, SIGTERM), 0);
	return check_report("statedir_full");
}
