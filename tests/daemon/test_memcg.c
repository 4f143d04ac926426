// SPDX-License-Identifier: MIT
/*
 * test_memcg.c - samepaged in a memory cgroup too small for its domain's
 * KSM pages.
 *
 * The pool is samepaged's to write, so its cgroup is charged for every KSM
 * page.  Before, a PLACE past the cgroup's limit had the kernel's OOM
 * killer end samepaged (measured: killed with 8 MiB of pool in an 8 MiB
 * cgroup, its clients cut off).  Now it writes only what the cgroup has room
 * for, counts the rest (pool_pages_refused), says so in its log, and goes on:
 * the client's pages stay right, some merged, the others not.
 *
 * The test makes a cgroup of its own (v2, or v1's memory controller) with
 * a limit 8 MiB above what the daemon uses, and removes it at the end, even
 * when it fails.  Skipped (77) where it cannot: not root, or no memory
 * controller.
 *
 * Usage: test_memcg PATH-TO-SAMEPAGED PATH-TO-KSMCTL
 */
#include "daemon_util.h"

#include <sys/mman.h>

static struct daemon D;
static char cg[256]; /* the test's cgroup directory */
static bool v2;	     /* cgroup v2 (else v1's memory controller) */

static void cg_remove(void)
{
	if (!cg[0])
		return;
	daemon_stop(&D, SIGKILL); /* a cgroup with a process in it stays */
	rmdir(cg);
}

static bool write_file(const char *dir, const char *name, const char *value)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	bool ok = fd >= 0 && write(fd, value, strlen(value)) == (ssize_t)strlen(value);
	if (fd >= 0)
		close(fd);
	return ok;
}

static long long read_number(const char *dir, const char *name)
{
	char path[512], text[64] = "";
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	if (!fgets(text, sizeof(text), f))
		text[0] = 0;
	fclose(f);
	return atoll(text);
}

/* Makes the test's cgroup: false (and says why) when this host cannot. */
static bool cg_make(void)
{
	char have[512] = "";
	procfs_read("/sys/fs/cgroup/cgroup.subtree_control", have, sizeof(have));
	if (strstr(have, "memory")) {
		v2 = true;
		snprintf(cg, sizeof(cg), "/sys/fs/cgroup/samepage-test-%d", (int)getpid());
	} else if (access("/sys/fs/cgroup/memory/memory.limit_in_bytes", F_OK) == 0) {
		snprintf(cg, sizeof(cg), "/sys/fs/cgroup/memory/samepage-test-%d", (int)getpid());
	} else {
		printf("# skipped: no memory cgroup controller (neither cgroup v2's memory in "
		       "/sys/fs/cgroup/cgroup.subtree_control nor v1's /sys/fs/cgroup/memory)\n");
		return false;
	}
	if (mkdir(cg, 0755)) {
		printf("# skipped: cannot make %s: %s (run as root)\n", cg, strerror(errno));
		cg[0] = 0;
		return false;
	}
	atexit(cg_remove);
	return true;
}

int main(int argc, char **argv)
{
	REQUIRE(argc == 3);
	daemon_init(&D, argv[1]);
	if (!cg_make())
		return 77;
	daemon_start(&D, NULL);
	char pid[32], limit[32];
	snprintf(pid, sizeof(pid), "%d", (int)D.pid);
	REQUIRE(write_file(cg, "cgroup.procs", pid));
	long long used = read_number(cg, v2 ? "memory.current" : "memory.usage_in_bytes");
	REQUIRE(used >= 0);
	snprintf(limit, sizeof(limit), "%lld", used + (8LL << 20));
	REQUIRE(write_file(cg, v2 ? "memory.max" : "memory.limit_in_bytes", limit));
	daemon_set(&D, "pages_to_scan", "100000");
	daemon_set(&D, "sleep_millisecs", "0");
	daemon_set(&D, "run", "1");

	/* 8192 contents, each twice: 32 MiB of KSM pages, 4 times the room. */
	const size_t n = 16384;
	samepage_t *sp;
	int err = samepage_connect(&sp, "mc");
	if (err)
		fprintf(stderr, "samepage_connect: %s\n", samepage_strerror(err));
	REQUIRE(err == 0);
	char *p = mmap(NULL, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(p != MAP_FAILED);
	madvise(p, n * PG, MADV_NOHUGEPAGE);
	for (size_t i = 0; i < n; i++) {
		size_t k = i % (n / 2);
		memset(p + i * PG, (int)(k % 251) + 1, PG);
		memcpy(p + i * PG, &k, sizeof(k));
	}
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	/* The second full scan makes the KSM pages: the daemon has refused
	 * some by the fifth, or is gone. */
	REQUIRE(wait_scans(sp, 5) == 0);

	int st;
	bool alive = waitpid(D.pid, &st, WNOHANG) == 0;
	if (!alive)
		D.pid = 0; /* reaped */
	printf("# samepaged %s; memory.failcnt %lld\n", alive ? "is alive" : "is gone",
	       v2 ? -1 : read_number(cg, "memory.failcnt"));
	CHECK_EQ_INT(alive, true);
	if (alive) {
		long long refused = daemon_value(&D, "pool_pages_refused");
		long long shared = daemon_value(&D, "pages_shared");
		printf("# pages_shared %lld, pool_pages_refused %lld\n", shared, refused);
		CHECK_CMP(refused, >, 0LL, long long, "%lld");
		CHECK_CMP(shared, >, 0LL, long long, "%lld");
		CHECK_CMP(shared, <, (long long)n / 2, long long, "%lld");
		CHECK_EQ_INT(daemon_logged(&D, "memory cgroup is within 4 MiB of its limit"), true);
		/* ksmctl --user doctor names it, and the fix. */
		char cmd[1024], out[8192] = "";
		snprintf(cmd, sizeof(cmd), "%s --user --socket %s doctor --json", argv[2], D.sock);
		FILE *f = popen(cmd, "r");
		REQUIRE(f);
		size_t got = fread(out, 1, sizeof(out) - 1, f);
		out[got] = 0;
		int rc = pclose(f);
		CHECK_EQ_INT(WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, 1); /* a warning */
		CHECK_EQ_INT(strstr(out, "\"pool-room\"") != NULL, true);
		CHECK_EQ_INT(strstr(out, "MemoryMax=") != NULL, true);
	}
	for (size_t i = 0; i < n; i++) {
		size_t k = i % (n / 2);
		REQUIRE(!memcmp(p + i * PG, &k, sizeof(k)) &&
			p[i * PG + PG - 1] == (char)(k % 251 + 1));
	}
	samepage_close(sp);
	if (alive)
		CHECK_EQ_INT(daemon_stop(&D, SIGTERM), 0);
	return check_report("memcg");
}
