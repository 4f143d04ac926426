/* SPDX-License-Identifier: MIT */
/*
 * adv_util.h - helpers for the adversarial tests (test_adversarial.c):
 * a runner that executes one named test in a child process under a hang
 * guard (a deadlock becomes a failure with a message, not a ctest timeout),
 * and small helpers to merge a range and to wait for a child.
 */
#ifndef SAMEPAGE_ADV_UTIL_H
#define SAMEPAGE_ADV_UTIL_H

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>

/* Tells a test's helper threads to stop (each test file has its own). */
static atomic_int stop_flag __attribute__((unused));

struct adv_test {
	const char *name;
	void (*fn)(void);
	int hang_s; /* hang guard only: the test is a failure if it has not ended by then */
};

/* Opens a fast engine, fills n new pages with val and registers them. */
static inline samepage_t *adv_registered(char **out, size_t n, int val)
{
	samepage_t *sp = open_fast();
	char *p = map_pages(n);
	memset(p, val, n * PG);
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	*out = p;
	return sp;
}

/* The same, then run=1 and two full scans (the kernel selftests'
 * convergence rule). */
static inline samepage_t *adv_merged(char **out, size_t n, int val)
{
	samepage_t *sp = adv_registered(out, n, val);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 2) == 0);
	return sp;
}

/* A MAP_GROWSDOWN mapping of n pages with room to grow below it: 1024
 * pages of PROT_NONE below a hole of 64 pages, which no other mapping
 * takes.  *whole is what to unmap, *whole_len its length. */
static inline char *map_growsdown(size_t n, char **whole, size_t *whole_len)
{
	const size_t hole = 64, below = 1024;
	*whole_len = (below + hole + n) * PG;
	char *r =
	    mmap(NULL, *whole_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	REQUIRE(r != MAP_FAILED);
	char *p = mmap(r + (below + hole) * PG, n * PG, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_GROWSDOWN, -1, 0);
	REQUIRE(p == r + (below + hole) * PG);
	REQUIRE(munmap(r + below * PG, hole * PG) == 0);
	*whole = r;
	return p;
}

/* Registers p's n pages with a new fast engine, run=1, and waits (tries
 * full scans at most) until every page maps the pool. */
static inline samepage_t *adv_merged_all(char *p, size_t n, int tries)
{
	samepage_t *sp = open_fast();
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	for (int k = 0; k < tries && pages_mapping_pool(p, n) < n; k++)
		REQUIRE(wait_scans(sp, 1) == 0);
	CHECK_EQ_U64(pages_mapping_pool(p, n), n);
	return sp;
}

/* Waits until sp has made n more full scans, or tracks no page any more
 * (its scanner then waits for a region, and counts no full scan). */
static inline void adv_scans_or_untracked(samepage_t *sp, long long n)
{
	long long start = rd(sp, "full_scans");
	for (int i = 0; i < 120000 && rd(sp, "full_scans") < start + n; i++) {
		if (rd(sp, "pages_tracked") == 0)
			return;
		if (i % 100 == 0)
			check_tick();
		usleep(1000);
	}
	REQUIRE(rd(sp, "full_scans") >= start + n);
}

#ifdef SAMEPAGE_INTERNAL_H
/* Makes sp take the maps it read last as current (read under
 * MAPS_REREAD_NS ago) at its next merges, as they are for a second after
 * each read: a test's interleaving then needs no luck with time.  Only
 * while sp's scanner waits (run=0): samepage_write(run) orders it. */
static inline void adv_maps_fresh(samepage_t *sp)
{
	struct timespec t; /* prim_now_ns()'s clock */
	clock_gettime(CLOCK_MONOTONIC, &t);
	sp->maps_read_ns = (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}
#endif

/* Forks a child that runs as user nobody (65534, no groups), its
 * /proc/self files its own again: 0 in the child, its pid in the parent.
 * A test that needs it is skipped when not run as root. */
static inline pid_t adv_fork_as_nobody(void)
{
	if (geteuid() != 0)
		SKIP("not root: cannot become another user");
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0 && (setgroups(0, NULL) || setresgid(65534, 65534, 65534) ||
			 setresuid(65534, 65534, 65534) || prctl(PR_SET_DUMPABLE, 1)))
		_exit(2);
	return pid;
}

/* Waits for pid; returns its exit status, or 128+signal. */
static inline int adv_wait(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Runs test `name` in a child process; a child that makes no progress
 * (no check, no full scan waited for: check_tick()) for hang_s seconds is
 * reported as hung (deadlock) and killed.  A slow machine is not a hang. */
static inline int adv_run(const struct adv_test *t, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(t[i].name, name))
			continue;
		printf("# [RUN] %s\n", name);
		fflush(stdout);
		fflush(stderr);
		check_beat =
		    mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		REQUIRE(check_beat != MAP_FAILED);
		pid_t pid = fork();
		if (pid < 0)
			return 1;
		if (pid == 0) {
			setpgid(0, 0);
			t[i].fn();
			exit(check_report(name));
		}
		unsigned long seen = *check_beat;
		for (long idle_ms = 0; idle_ms < t[i].hang_s * 1000L; idle_ms += 10) {
			int st;
			pid_t r = waitpid(pid, &st, WNOHANG);
			if (r == pid) {
				/* What the test left of its process group (a client
				 * child a failed REQUIRE did not kill) goes with it:
				 * it would scan on and hold ctest's output pipe. */
				kill(-pid, SIGKILL);
				if (WIFSIGNALED(st)) {
					fprintf(stderr, "%s: killed by signal %d\n", name,
						WTERMSIG(st));
					return 1;
				}
				if (WEXITSTATUS(st) > 1 && WEXITSTATUS(st) != 77)
					fprintf(stderr, "%s: exit status %d\n", name,
						WEXITSTATUS(st));
				return WEXITSTATUS(st);
			}
			usleep(10000);
			if (*check_beat != seen) {
				seen = *check_beat;
				idle_ms = 0;
			}
		}
		fprintf(stderr, "%s: HANG: no progress for %d s (deadlock?); killing it\n", name,
			t[i].hang_s);
		kill(pid, SIGKILL);
		adv_wait(pid);
		/* children of the test (a forked child, a grandchild) are its
		 * process group's */
		kill(-pid, SIGKILL);
		return 1;
	}
	fprintf(stderr, "no test named %s\n", name);
	return 2;
}

#endif
