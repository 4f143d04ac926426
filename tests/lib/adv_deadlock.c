// SPDX-License-Identifier: MIT
/*
 * adv_deadlock.c - adversarial tests: two calls that must never wait for
 * each other.
 *
 * Each test runs in its own process under a hang guard (adv_main.c,
 * adv_util.h); the list of tests and their hang limits is adversarial.def.
 */
#include "../../lib/internal.h"
#include "adv_util.h"

/* Maps and unmaps (and re-protects) a private scratch page, forever. */
static void *scratch_churn(void *arg)
{
	while (!atomic_load(&stop_flag)) {
		void *m =
		    mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			continue;
		mprotect(m, PG, PROT_READ);
		munmap(m, PG);
	}
	return NULL;
}

/* Regression: fork() while other threads munmap() and mprotect() completes:
 * the wrappers note unmaps under engines_rw, never engines_lock, so fork
 * (which holds engines_lock, then the address-space lock) cannot meet them
 * in the other order. */
void test_fork_vs_munmap(void)
{
	samepage_t *sp = open_fast();
	char *p = map_pages(16);
	memset(p, 'f', 16 * PG);
	REQUIRE(samepage_madvise(sp, p, 16 * PG, SAMEPAGE_MERGEABLE) == 0);
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		REQUIRE(pthread_create(&t[i], NULL, scratch_churn, NULL) == 0);
	int forks = 0;
	for (; forks < 3000; forks++) {
		pid_t pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0)
			_exit(p[forks % 16 * PG] == 'f' ? 0 : 1);
		CHECK_EQ_INT(adv_wait(pid), 0);
	}
	atomic_store(&stop_flag, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ_INT(forks, 3000);
	samepage_close(sp);
}

static char *dn_area;
static void *dontneed_loop(void *arg)
{
	for (int k = 0; k < 20000 && !atomic_load(&stop_flag); k++)
		madvise(dn_area, 64 * PG, MADV_DONTNEED);
	return NULL;
}

/* Regression: madvise(MADV_DONTNEED) on a registered range while other
 * threads munmap() and mprotect() completes (the same lock order). */
void test_dontneed_vs_munmap(void)
{
	samepage_t *sp = adv_merged(&dn_area, 64, 'd');
	pthread_t c, d;
	REQUIRE(pthread_create(&c, NULL, scratch_churn, NULL) == 0);
	REQUIRE(pthread_create(&d, NULL, dontneed_loop, NULL) == 0);
	pthread_join(d, NULL);
	atomic_store(&stop_flag, 1);
	pthread_join(c, NULL);
	for (size_t i = 0; i < 64 * PG; i += 511)
		REQUIRE(dn_area[i] == 0);
	samepage_close(sp);
}

/* Regression: pages_to_scan = 0 with sleep_millisecs = 0 is accepted, as by
 * the kernel (ksmd then only sleeps), and every later call still returns:
 * the scanner lets go of its lock between rounds. */
void test_pages_to_scan_zero(void)
{
	samepage_t *sp = open_fast();
	char *p = map_pages(16);
	memset(p, 'z', 16 * PG);
	REQUIRE(samepage_madvise(sp, p, 16 * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "pages_to_scan", "0");
	wr(sp, "run", "1");
	usleep(100000);
	CHECK_EQ_INT(samepage_write(sp, "run", "0"), 0);
	CHECK_EQ_INT(rd(sp, "pages_shared"), 0);
	samepage_close(sp);
}

/* Regression: with no present page in the mergeable ranges, ksmd sleeps
 * after each full scan, as the kernel's ksm_do_scan() returns when a full
 * scan ends.  With sleep_millisecs 3000, at most two full scans end in
 * 0.5 s (one per wake-up). */
void test_idle_no_spin(void)
{
	samepage_t *sp;
	REQUIRE(samepage_open(&sp) == 0);
	char *p = map_pages(64); /* never touched: nothing present */
	REQUIRE(samepage_madvise(sp, p, 64 * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "sleep_millisecs", "3000");
	wr(sp, "run", "1");
	usleep(500000);
	long long scans = rd(sp, "full_scans");
	printf("full scans in 0.5 s with sleep_millisecs 3000: %lld\n", scans);
	CHECK_LE_U64(scans, 2);
	samepage_close(sp);
}

/* The test's own fork handler: registered before the library's, so it runs
 * after the library's prepare handler has taken every engine's lock (the
 * prepare handlers run in the reverse order of registration). */
static atomic_int in_prepare, reads_done, prepare_armed;
static void hold_prepare(void)
{
	if (!atomic_load(&prepare_armed))
		return;
	atomic_store(&in_prepare, 1);
	while (!atomic_load(&reads_done))
		sched_yield(); /* no progress here is a deadlock: the hang guard */
}

static samepage_t *held_sp;
static long long read_during_hold[3];
static int read_err[3];
static void *read_while_held(void *arg)
{
	while (!atomic_load(&in_prepare))
		sched_yield();
	static const char *names[] = {"pages_scanned", "full_scans", "pages_sharing"};
	for (int i = 0; i < 3; i++)
		read_err[i] = samepage_read_number(held_sp, names[i], &read_during_hold[i]);
	atomic_store(&reads_done, 1);
	return NULL;
}

/* Regression (issue 13, 5): reading a counter never waits for the engine's
 * lock.  BENCHMARKS.md measured samepage_read_number() at up to 1.5 s while
 * the scanner ran with sleep_millisecs 0; here the lock is held for as long
 * as the reads take (fork's prepare handler holds it, and the test's own
 * handler waits for the reads): a read that takes the lock never returns.
 * The values read are the last ones the scanner published. */
void test_counters_never_wait(void)
{
	REQUIRE(pthread_atfork(hold_prepare, NULL, NULL) == 0);
	char *p;
	held_sp = adv_merged(&p, 64, 'r');
	long long sharing = 0, scanned = 0;
	REQUIRE(samepage_read_number(held_sp, "pages_sharing", &sharing) == 0);
	REQUIRE(samepage_read_number(held_sp, "pages_scanned", &scanned) == 0);
	CHECK(sharing > 0);
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, read_while_held, NULL) == 0);
	atomic_store(&prepare_armed, 1);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0)
		_exit(0);
	atomic_store(&prepare_armed, 0);
	CHECK_EQ_INT(adv_wait(pid), 0);
	pthread_join(t, NULL);
	for (int i = 0; i < 3; i++)
		CHECK_EQ_INT(read_err[i], 0);
	CHECK(read_during_hold[0] >= scanned);
	CHECK(read_during_hold[2] >= sharing);
	samepage_close(held_sp);
}

static atomic_int live_child_read_done;
static long long live_child_value;

static void *read_sharing(void *arg)
{
	samepage_read_number(arg, "pages_sharing", &live_child_value);
	atomic_store(&live_child_read_done, 1);
	return NULL;
}

/* Regression: with a forked child alive, reading a counter still never
 * waits for the engine's lock.  While any child lived, the read took the
 * lock to reap the children first (nothing to reap: the child maps the
 * pool), so every read waited for the scanner's batch; here the lock is
 * held until the read is done, and a read that takes it never returns. */
void test_counters_never_wait_live_child(void)
{
	char *p;
	samepage_t *sp = adv_merged(&p, 64, 'l');
	int go[2];
	REQUIRE(pipe(go) == 0);
	pid_t child = fork();
	REQUIRE(child >= 0);
	if (child == 0) {
		char c;
		close(go[1]);
		_exit(read(go[0], &c, 1) == 1 && p[5] == 'l' ? 0 : 1);
	}
	close(go[0]);
	long long sharing = rd(sp, "pages_sharing"); /* the child is registered since */
	struct samepage *e = (struct samepage *)sp;
	pthread_mutex_lock(&e->lock);
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, read_sharing, sp) == 0);
	while (!atomic_load(&live_child_read_done)) /* the hang guard ends a read that waits */
		usleep(1000);
	pthread_mutex_unlock(&e->lock);
	pthread_join(t, NULL);
	CHECK_EQ_INT(live_child_value, sharing);
	REQUIRE(write(go[1], "x", 1) == 1);
	CHECK_EQ_INT(adv_wait(child), 0);
	close(go[1]);
	samepage_close(sp);
}
