// SPDX-License-Identifier: MIT
/*
 * test_adversarial.c - a reviewer's tests of libsamepage's promises: nothing
 * is lost while pages merge, fork keeps private copies, the application's
 * SIGSEGV handler keeps working, the MADV_DONTNEED hazard is handled, the
 * application stays in charge of its address space, all calls are
 * thread-safe, and the kernel's counters and rules hold.
 *
 * Each test runs in its own process (ctest runs "test_adversarial NAME"),
 * itself run in a child under a hang guard (adv_util.h), so that a deadlock
 * is reported as such.  Tests marked BUG fail until the library is fixed.
 * file:line references in the comments are those of commit 2be579c, where
 * the review started; the report gives them at the final HEAD too.
 */
#include "adv_util.h"

#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/resource.h>

static atomic_int stop_flag;

/* ------------------------------------------------------------------ */
/* Deadlocks                                                           */
/* ------------------------------------------------------------------ */

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

/* BUG: fork() while another thread munmap()s deadlocks.  fork_prepare
 * (engine.c:45-52) takes engines_lock, then the address-space lock
 * exclusive; the munmap/mprotect wrappers (interpose.c:63-67, 77-81) hold
 * the address-space lock shared and then take engines_lock
 * (engine_note_unmap / engine_note_change): lock-order inversion. */
static void test_fork_vs_munmap(void)
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

/* BUG: madvise(MADV_DONTNEED) on a registered range while another thread
 * munmap()s or mprotect()s anything deadlocks.  The madvise wrapper takes
 * engines_lock, sp->lock, then the address-space lock exclusive
 * (interpose.c:93-104 -> engine_discard, engine.c:365); munmap/mprotect hold
 * it shared and wait for engines_lock (engine.c:137, 155). */
static void test_dontneed_vs_munmap(void)
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

/* BUG: pages_to_scan = 0 with sleep_millisecs = 0 makes ksmd spin holding
 * sp->lock forever (scan.c:326-345: ksm_do_scan(sp, 0) returns at once and
 * no wait releases the mutex), so every later call (here: run = 0) hangs.
 * The kernel accepts pages_to_scan 0 (ksmd then only sleeps). */
static void test_pages_to_scan_zero(void)
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

/* BUG: with no present page in the mergeable ranges, ksmd never sleeps: it
 * loops full scan after full scan (each rereading /proc/self/maps) until
 * pages_to_scan present pages were processed, which never happens
 * (scan.c:300-317).  The kernel's ksm_do_scan() returns when a full scan
 * ends (scan_get_next_rmap_item returns NULL), then sleeps
 * sleep_millisecs.  Here sleep_millisecs is 3000: over 0.5 s at most two
 * full scans may end (one per wake-up). */
static void test_idle_no_spin(void)
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

/* ------------------------------------------------------------------ */
/* Nothing is lost                                                     */
/* ------------------------------------------------------------------ */

/* BUG: a system call that writes into a mergeable page while it is being
 * merged fails with EFAULT (or returns short): merge_run() write-protects
 * the run with mprotect (merge.c:292), and a kernel-mode write does not
 * raise SIGSEGV, so the fault handler's wait cannot help.  With the
 * kernel's KSM, read(2) into a KSM page simply breaks COW. */
static void test_syscall_write_during_merge(void)
{
	const size_t n = 256;
	char *p;
	samepage_t *sp = adv_merged(&p, n, 'k');
	int fd = memfd_create("src", 0);
	REQUIRE(fd >= 0);
	REQUIRE(write(fd, p, PG) == (ssize_t)PG);
	long long start = rd(sp, "full_scans");
	long bad = 0, calls = 0;
	int err = 0;
	while (rd(sp, "full_scans") < start + 100000 && calls < 4000000) {
		for (size_t i = 0; i < n; i++) {
			ssize_t r = pread(fd, p + i * PG, PG, 0);
			calls++;
			if (r != (ssize_t)PG) {
				bad++;
				err = r < 0 ? errno : 0;
			}
		}
	}
	printf("pread into merging pages: %ld of %ld failed (last errno %d), merge_window_waits "
	       "%lld\n",
	       bad, calls, err, rd(sp, "merge_window_waits"));
	/* The documented limit (samepage.h, README "Limits"): a system call
	 * that writes into a page during its merge window fails with EFAULT
	 * (signals cannot make the kernel wait).  It must be EFAULT and
	 * nothing else, rare, and the data must be intact afterwards. */
	CHECK(bad == 0 || err == EFAULT);
	CHECK_CMP(bad, <=, calls / 1000, long, "%ld");
	for (size_t i = 0; i < n * PG; i += 509)
		REQUIRE(p[i] == 'k');
	close(fd);
	samepage_close(sp);
}

/* Regression (issue 9.1): a page that was merged, then written with zeros
 * (copy-on-write gave it a private copy inside the pool's mapping), then
 * merged with the zero page once use_zero_pages is on, reads zeros: it
 * must not be discarded back to the pool page it was copied from.  A
 * forked child sees the same memory. */
static void test_zero_page_after_cow(void)
{
	const size_t n = 8;
	char *p;
	samepage_t *sp = adv_merged(&p, n, 0xab);
	REQUIRE(rd(sp, "pages_sharing") == (long long)n - 1);
	memset(p, 0, PG); /* copy-on-write: a private page of zeros */
	REQUIRE(wait_scans(sp, 2) == 0);
	wr(sp, "use_zero_pages", "1");
	REQUIRE(wait_scans(sp, 3) == 0);
	CHECK_EQ_INT(rd(sp, "ksm_zero_pages"), 1);
	size_t bad = 0;
	for (size_t i = 0; i < PG; i++)
		bad += p[i] != 0;
	CHECK_EQ_U64(bad, 0);
	for (size_t i = PG; i < n * PG; i++)
		REQUIRE((unsigned char)p[i] == 0xab);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		for (size_t i = 0; i < PG; i++)
			if (p[i])
				_exit(1);
		_exit((unsigned char)p[PG] == 0xab ? 0 : 2);
	}
	CHECK_EQ_INT(adv_wait(pid), 0);
	/* Written again, it reads what was written. */
	memset(p, 0x5a, PG);
	REQUIRE(wait_scans(sp, 2) == 0);
	CHECK((unsigned char)p[100] == 0x5a);
	samepage_close(sp);
}

static char *sg_lo, *sg_hi;
static atomic_long sg_spurious;
static void sg_handler(int sig, siginfo_t *si, void *uc)
{
	char *a = si->si_addr;
	if (a >= sg_lo && a < sg_hi) {
		atomic_fetch_add(&sg_spurious, 1);
		return; /* retry the write */
	}
	_exit(44);
}

static void *sg_writer(void *arg)
{
	long t = (long)arg;
	uint64_t s = 77 + (uint64_t)t;
	while (!atomic_load(&stop_flag)) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		size_t pg = s % 512;
		sg_lo[pg * PG + (s >> 20) % PG] = 's'; /* the same byte: pages stay identical */
	}
	return NULL;
}

/* BUG (race): the application's SIGSEGV handler (installed before
 * samepage_open) is called for faults on mergeable pages that it did not
 * cause: a write faults while a merge window is open, and the window closes
 * before fault_handler() checks in_window() (merge.c:150), so the fault is
 * chained to the application as if it were its own.  A crash reporter
 * would abort the program.  Fix: remember that the window sequence moved
 * (window_seq) since before the fault / retry once when the page is in a
 * registered writable span, and chain only a fault that repeats. */
static void test_no_spurious_app_sigsegv(void)
{
	struct sigaction sa = {0};
	sa.sa_sigaction = sg_handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	REQUIRE(sigaction(SIGSEGV, &sa, NULL) == 0);
	char *p = map_pages(512);
	sg_lo = p;
	sg_hi = p + 512 * PG;
	memset(p, 's', 512 * PG);
	samepage_t *sp = open_fast();
	REQUIRE(samepage_madvise(sp, p, 512 * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	pthread_t t[2];
	for (long i = 0; i < 2; i++)
		REQUIRE(pthread_create(&t[i], NULL, sg_writer, (void *)i) == 0);
	long long start = rd(sp, "full_scans");
	for (int k = 0; k < 20000 && rd(sp, "full_scans") < start + 3000; k++)
		usleep(1000);
	atomic_store(&stop_flag, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	printf("merge_window_waits %lld, faults chained to the application %ld\n",
	       rd(sp, "merge_window_waits"), atomic_load(&sg_spurious));
	CHECK_EQ_INT(atomic_load(&sg_spurious), 0);
	for (size_t i = 0; i < 512 * PG; i += 4093)
		REQUIRE(p[i] == 's');
	samepage_close(sp);
}

static char *late_lo, *late_hi;
static void late_handler(int sig, siginfo_t *si, void *uc)
{
	char *a = si->si_addr;
	_exit(a >= late_lo && a < late_hi ? 42 : 43);
}

/* BUG: an application SIGSEGV handler installed after samepage_open (as a
 * crash reporter would be) receives the scanner's own faults: the scanner
 * reads PROT_NONE pages directly under a guard (merge.c:196-208, called from
 * cmp_and_merge_page, scan.c:105) but re-installs its handler only in
 * merge_batch() (merge.c:350), after the reads.  Here the application's
 * handler sees a fault on its PROT_NONE mergeable range it never touched
 * and exits 42.  Fix: never fault on purpose (read pages whose span lacks
 * PROT_READ through /proc/self/mem), or call handler_ensure() before any
 * guarded access. */
static void test_late_app_handler_prot_none(void)
{
	samepage_t *sp = open_fast();
	char *p = map_pages(64);
	memset(p, 'n', 64 * PG);
	REQUIRE(mprotect(p, 64 * PG, PROT_NONE) == 0);
	late_lo = p;
	late_hi = p + 64 * PG;
	REQUIRE(samepage_madvise(sp, p, 64 * PG, SAMEPAGE_MERGEABLE) == 0);
	struct sigaction sa = {0};
	sa.sa_sigaction = late_handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	REQUIRE(sigaction(SIGSEGV, &sa, NULL) == 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 3) == 0);
	CHECK_EQ_INT(rd(sp, "ksm_merging_pages"), 64);
	samepage_close(sp);
}

/* ------------------------------------------------------------------ */
/* fork                                                                */
/* ------------------------------------------------------------------ */

/* BUG: a forked child deadlocks on its first munmap/mprotect/mremap/
 * MAP_FIXED mmap/fork.  fork_prepare() write-locks the address-space rwlock
 * (engine.c:52) and fork_child() "unlocks" it (engine.c:72), but glibc's
 * pthread_rwlock_unlock() recognises a writer by its TID (__cur_writer), and
 * the child's TID differs: the unlock is taken for a reader's, the lock
 * stays write-locked in the child for ever, and the interposed calls wait
 * on it (interpose.c:63).  Fix: pthread_rwlock_init() the lock again in
 * fork_child() (nothing else can hold it in the child). */
static void test_child_munmap(void)
{
	char *p;
	samepage_t *sp = adv_merged(&p, 16, 'u');
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		void *m =
		    mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED || mprotect(m, PG, PROT_READ) || munmap(m, PG))
			_exit(2);
		p[0] = 'w';
		if (munmap(p, 16 * PG))
			_exit(3);
		_exit(0);
	}
	CHECK_EQ_INT(adv_wait(pid), 0);
	CHECK(p[0] == 'u');
	samepage_close(sp);
}

#ifndef GC_FORK
#define GC_FORK fork
#endif
/* BUG: a grandchild (fork from the forked child: the daemon double-fork)
 * reads zeros.  fork_child() registers only children of the engine's owner
 * (engine.c:73-75) and fork_prepare() skips inert engines, so when the
 * child exits, fork_reap() unpins and punches the pool pages the grandchild
 * still maps (engine.c:102-125, index.c:202). */
static void test_grandchild_keeps_contents(void)
{
	const size_t n = 64;
	char *p;
	samepage_t *sp = adv_merged(&p, n, 'g');
	REQUIRE(rd(sp, "ksm_merging_pages") == (long long)n);
	REQUIRE(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
	int go[2], tell[2];
	REQUIRE(pipe(go) == 0 && pipe(tell) == 0);
	pid_t child = fork();
	REQUIRE(child >= 0);
	if (child == 0) {
		pid_t gc = GC_FORK();
		if (gc == 0) {
			char c;
			close(go[1]);
			if (read(go[0], &c, 1) != 1)
				_exit(2);
			for (size_t i = 0; i < n * PG; i += 97)
				if (p[i] != 'g')
					_exit(1);
			_exit(0);
		}
		_exit(write(tell[1], &gc, sizeof(gc)) == sizeof(gc) ? 0 : 3);
	}
	pid_t gc;
	REQUIRE(read(tell[0], &gc, sizeof(gc)) == sizeof(gc));
	CHECK_EQ_INT(adv_wait(child), 0);
	fprintf(stderr, "child gone, grandchild %d lives\n", (int)gc);
	/* The parent writes every page: its mappings of the pool are gone. */
	for (size_t i = 0; i < n; i++)
		p[i * PG] = 'P';
	REQUIRE(wait_scans(sp, 3) == 0);
	printf("pool_pages %lld, pool_pages_reclaimed %lld while the grandchild lives\n",
	       rd(sp, "pool_pages"), rd(sp, "pool_pages_reclaimed"));
	REQUIRE(write(go[1], "x", 1) == 1);
	CHECK_EQ_INT(adv_wait(gc), 0);
	samepage_close(sp);
}

/* Regression (issue 9.6): after run=2, max_page_sharing may be changed, as
 * the kernel allows, also once the process has forked (the child exited
 * and was reaped): the pool pages kept for the fork are not KSM pages. */
static void test_max_page_sharing_after_fork(void)
{
	char *p;
	samepage_t *sp = adv_merged(&p, 32, 'm');
	REQUIRE(rd(sp, "pages_sharing") == 31);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0)
		_exit(p[0] == 'm' ? 0 : 1);
	CHECK_EQ_INT(adv_wait(pid), 0);
	wr(sp, "run", "2");
	CHECK_EQ_INT(samepage_write(sp, "max_page_sharing", "10"), 0);
	CHECK_EQ_INT(rd(sp, "pages_shared"), 0);
	CHECK_EQ_INT(rd(sp, "max_page_sharing"), 10);
	/* And it is honoured: 32 pages in chains of 10. */
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 3) == 0);
	check_ksm_pages_count(sp, 32);
	for (size_t i = 0; i < 32 * PG; i += 997)
		REQUIRE(p[i] == 'm');
	samepage_close(sp);
}

/* BUG: after more than MAX_FORK_CHILDREN (64) forks between two reaps, the
 * pool pages pinned at fork are never given back: fork_reap() returns early
 * for ever once registered > 64 (engine.c:106), and the counters are only
 * reset past that test.  The kernel frees a KSM page when its last mapping
 * goes. */
static void test_many_forks_pool_reclaimed(void)
{
	const size_t n = 64;
	char *p;
	samepage_t *sp = adv_merged(&p, n, 'm');
	wr(sp, "run", "0"); /* no reap between the forks */
	for (int k = 0; k < 70; k++) {
		pid_t pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0)
			_exit(0);
		CHECK_EQ_INT(adv_wait(pid), 0);
	}
	CHECK_EQ_INT(samepage_madvise(sp, p, n * PG, SAMEPAGE_UNMERGEABLE), 0);
	/* Every child is gone: samepage_read_number() reaps (fork_reap). */
	CHECK_EQ_INT(rd(sp, "pool_pages"), 0);
	samepage_close(sp);
}

/* BUG: in a forked child, madvise(MADV_DONTNEED) on merged pages reads the
 * pool's contents back, not zeros: the child's inherited engine is inert
 * and the madvise wrapper skips it (interpose.c:95), so the hazard that
 * samepage.h says is handled is not, in the child. */
static void test_child_dontneed_zeros(void)
{
	const size_t n = 64;
	char *p;
	samepage_t *sp = adv_merged(&p, n, 'c');
	REQUIRE(rd(sp, "ksm_merging_pages") == (long long)n);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		if (madvise(p, n * PG, MADV_DONTNEED))
			_exit(2);
		for (size_t i = 0; i < n * PG; i += 97)
			if (p[i] != 0)
				_exit(1);
		_exit(0);
	}
	CHECK_EQ_INT(adv_wait(pid), 0);
	for (size_t i = 0; i < n * PG; i += 97)
		REQUIRE(p[i] == 'c');
	samepage_close(sp);
}

/* BUG: after samepage_close(), merged pages stay pool mappings
 * (engine.c:265-266) and the interposer is off (nengines == 0), so
 * madvise(MADV_DONTNEED) brings back the old contents instead of zeros. */
static void test_close_then_dontneed(void)
{
	const size_t n = 64;
	char *p;
	samepage_t *sp = adv_merged(&p, n, 'q');
	REQUIRE(rd(sp, "ksm_merging_pages") == (long long)n);
	samepage_close(sp);
	for (size_t i = 0; i < n * PG; i += 97)
		REQUIRE(p[i] == 'q');
	REQUIRE(madvise(p, n * PG, MADV_DONTNEED) == 0);
	size_t nonzero = 0;
	for (size_t i = 0; i < n; i++)
		nonzero += p[i * PG + 5] != 0;
	CHECK_EQ_U64(nonzero, 0);
}

/* BUG: MADV_WIPEONFORK is lost when a page merges: the pool mapping that
 * replaces the page (merge.c:317) is a new VMA without VM_WIPEONFORK, so a
 * forked child reads the parent's data (e.g. a CSPRNG state) instead of
 * zeros.  Kernel KSM keeps the VMA and its flags.  The same holds for
 * MADV_DONTFORK, MADV_DONTDUMP and mlock (next test).  Fix: do not merge
 * VMAs with VmFlags wf (smaps), re-apply dc/dd/lo after the mmap. */
static void test_wipeonfork_kept(void)
{
	const size_t n = 64;
	samepage_t *sp = open_fast();
	char *p = map_pages(n);
	memset(p, 'w', n * PG);
	REQUIRE(madvise(p, n * PG, MADV_WIPEONFORK) == 0);
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 2) == 0);
	printf("ksm_merging_pages %lld\n", rd(sp, "ksm_merging_pages"));
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		for (size_t i = 0; i < n * PG; i += 97)
			if (p[i] != 0)
				_exit(1);
		_exit(0);
	}
	CHECK_EQ_INT(adv_wait(pid), 0);
	samepage_close(sp);
}

static long long vmlck_kb(void)
{
	return proc_kb("/proc/self/status", "VmLck");
}

/* BUG: mlock() is undone by merging: VmLck falls because the pool mapping
 * that replaces a locked page is a new VMA without VM_LOCKED
 * (merge.c:317), so locked secrets may go to swap. */
static void test_mlock_kept(void)
{
	const size_t n = 64;
	struct rlimit rl;
	REQUIRE(getrlimit(RLIMIT_MEMLOCK, &rl) == 0);
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 2 * n * PG)
		SKIP("RLIMIT_MEMLOCK too small");
	samepage_t *sp = open_fast();
	char *p = map_pages(n);
	memset(p, 'l', n * PG);
	REQUIRE(mlock(p, n * PG) == 0);
	long long before = vmlck_kb();
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 2) == 0);
	printf("VmLck %lld -> %lld kB, ksm_merging_pages %lld\n", before, vmlck_kb(),
	       rd(sp, "ksm_merging_pages"));
	CHECK_CMP(vmlck_kb(), >=, before, long long, "%lld");
	samepage_close(sp);
}

/* ------------------------------------------------------------------ */
/* The application stays in charge of its address space                */
/* ------------------------------------------------------------------ */

/* Regression test (failed at 2be579c, passes since samepage_madvise() calls
 * engine_enter(), which syncs first).  Was: munmap, mmap at the same address (address reuse), then
 * samepage_madvise(MERGEABLE) of the new range: the registration is lost.
 * The munmap is queued on the forget list (engine.c:142) and applied only
 * at the next engine_sync(), after regions_mark() has re-marked the same
 * pages (region.c:339-358 does not sync first), so the new range is
 * forgotten and never merges. */
static void test_reregister_after_reuse(void)
{
	const size_t n = 64;
	char *p;
	samepage_t *sp = adv_merged(&p, n, 'a');
	CHECK_EQ_INT(rd(sp, "pages_sharing"), (long long)n - 1);
	char *anchor = map_pages(4); /* keeps the scanner scanning if the range is lost */
	REQUIRE(samepage_madvise(sp, anchor, 4 * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "0");
	REQUIRE(munmap(p, n * PG) == 0);
	char *q = mmap(p, n * PG, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (q != p)
		SKIP("could not map the same address again");
	memset(q, 'b', n * PG);
	CHECK_EQ_INT(samepage_madvise(sp, q, n * PG, SAMEPAGE_MERGEABLE), 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 3) == 0);
	CHECK_EQ_INT(rd(sp, "pages_tracked"), (long long)n + 4);
	CHECK_EQ_INT(rd(sp, "pages_sharing"), (long long)n - 1);
	for (size_t i = 0; i < n * PG; i += 97)
		REQUIRE(q[i] == 'b');
	samepage_close(sp);
}

/* BUG: more than 128 munmaps between two syncs overflow the forget list
 * (engine.c:142 drops the entry); the refresh from /proc/self/maps cannot
 * tell a new anonymous mapping at the same address from the old one
 * (region.c:102-107), so memory the application never marked mergeable
 * is tracked and merged.  Fix: on overflow, sync in the caller (take
 * sp->lock and the lock exclusive after the munmap) or grow the list. */
static void test_forget_list_overflow(void)
{
	const size_t n = 64;
	char *p;
	samepage_t *sp = adv_merged(&p, n, 'o');
	wr(sp, "run", "0");
	for (int k = 0; k < 200; k++) {
		void *m = mmap(NULL, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		REQUIRE(m != MAP_FAILED);
		REQUIRE(munmap(m, PG) == 0);
	}
	REQUIRE(munmap(p, n * PG) == 0);
	char *q = mmap(p, n * PG, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (q != p)
		SKIP("could not map the same address again");
	memset(q, 'x', n * PG); /* never registered */
	/* Another range, so that full scans go on (with no mergeable range at
	 * all, the scanner idles, as ksmd does with no mm registered). */
	char *other = map_pages(4);
	memset(other, 'z', 4 * PG);
	REQUIRE(samepage_madvise(sp, other, 4 * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 3) == 0);
	CHECK_EQ_INT(rd(sp, "pages_tracked"), 4);
	CHECK_EQ_INT(rd(sp, "pages_sharing"), 3); /* only the other range */
	CHECK_EQ_INT(rd(sp, "pool_pages"), 1);
	CHECK_EQ_U64(pages_mapping_pool(q, n), 0);
	samepage_close(sp);
}

/* BUG: mremap() of engine A's range registers the new range with every
 * engine of the process (interpose.c:175-186 calls remark() on all alive
 * engines), so engine B starts tracking memory it was never given. */
static void test_mremap_two_engines(void)
{
	samepage_t *a = open_fast(), *b = open_fast();
	char *pa = map_pages(32), *pb = map_pages(32);
	memset(pa, 'A', 32 * PG);
	memset(pb, 'B', 32 * PG);
	REQUIRE(samepage_madvise(a, pa, 32 * PG, SAMEPAGE_MERGEABLE) == 0);
	REQUIRE(samepage_madvise(b, pb, 32 * PG, SAMEPAGE_MERGEABLE) == 0);
	char *dst = mmap(NULL, 32 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(dst != MAP_FAILED);
	char *q = mremap(pa, 32 * PG, 32 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	REQUIRE(q == dst);
	CHECK_EQ_INT(rd(a, "pages_tracked"), 32);
	CHECK_EQ_INT(rd(b, "pages_tracked"), 32);
	wr(a, "run", "1");
	wr(b, "run", "1");
	REQUIRE(wait_scans(a, 2) == 0 && wait_scans(b, 2) == 0);
	CHECK_EQ_INT(rd(a, "pages_sharing"), 31);
	CHECK_EQ_INT(rd(b, "pages_sharing"), 31);
	for (size_t i = 0; i < 32 * PG; i += 97)
		REQUIRE(q[i] == 'A' && pb[i] == 'B');
	samepage_close(a);
	samepage_close(b);
}

/* BUG: mremap() of a mapping of which only a part was marked mergeable
 * makes the whole new range mergeable (interpose.c:183, remark of
 * [m, m+new_len)): pages the application never marked merge.  (The kernel
 * splits the VMA at MADV_MERGEABLE, so only marked pages are ever
 * merged.) */
static void test_mremap_partial_registration(void)
{
	samepage_t *sp = open_fast();
	char *p = map_pages(8);
	memset(p, 'p', 8 * PG);
	REQUIRE(samepage_madvise(sp, p, 4 * PG, SAMEPAGE_MERGEABLE) == 0);
	char *q = mremap(p, 8 * PG, 16 * PG, MREMAP_MAYMOVE);
	REQUIRE(q != MAP_FAILED);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 3) == 0);
	CHECK_LE_U64(rd(sp, "pages_tracked"), 4);
	CHECK_EQ_INT(rd(sp, "pages_sharing"), 3);
	CHECK_EQ_U64(pages_mapping_pool(q + 4 * PG, 4), 0);
	for (size_t i = 0; i < 8 * PG; i += 97)
		REQUIRE(q[i] == 'p');
	samepage_close(sp);
}

/* ------------------------------------------------------------------ */
/* Leaks and metadata                                                  */
/* ------------------------------------------------------------------ */

/* BUG: page ids are never reused (region.c:248, next_page_id only grows):
 * registering and freeing ranges consumes them for ever, and after 2^32
 * pages (16 TiB cumulative, e.g. 65536 cycles of a 256 MiB buffer)
 * samepage_madvise/samepage_alloc fail with ENOMEM.  Fix: reuse ids of
 * freed regions (a free list of id ranges), or renumber when idle. */
static void test_page_id_reuse(void)
{
	samepage_t *sp;
	REQUIRE(samepage_open(&sp) == 0);
	const size_t len = 1ULL << 34; /* 16 GiB of address space, never touched */
	int err = 0, k;
	for (k = 0; k < 1100 && !err; k++) {
		void *m =
		    mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		REQUIRE(m != MAP_FAILED);
		err = samepage_madvise(sp, m, len, SAMEPAGE_MERGEABLE);
		CHECK_EQ_INT(samepage_free(sp, m, len), 0);
	}
	printf("%d cycles of a 16 GiB range, last samepage_madvise: %s\n", k,
	       samepage_strerror(err));
	CHECK_EQ_INT(err, 0);
	CHECK_EQ_INT(rd(sp, "pages_tracked"), 0);
	samepage_close(sp);
}

/* BUG: registering a large range that is never touched costs 12 bytes of
 * resident metadata per page: region_add() writes every page_meta
 * (region.c:270-273), although internal.h promises that "untouched parts of
 * a sparse range cost no memory".  4 GiB reserved for a guest cost 12 MiB
 * before a single page is used.  Allowed here: the unstable index's 2 to
 * 4 bytes per page, plus 1 MiB. */
static void test_sparse_range_metadata(void)
{
	samepage_t *sp;
	REQUIRE(samepage_open(&sp) == 0);
	const size_t len = 4ULL << 30, npages = len / PG;
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	REQUIRE(m != MAP_FAILED);
	long long before = proc_kb("/proc/self/status", "RssAnon");
	REQUIRE(samepage_madvise(sp, m, len, SAMEPAGE_MERGEABLE) == 0);
	long long after = proc_kb("/proc/self/status", "RssAnon");
	printf("registering %zu untouched pages: RssAnon +%lld kB\n", npages, after - before);
	CHECK_CMP((after - before) * 1024, <=, (long long)(npages * 4 + (1 << 20)), long long,
		  "%lld");
	munmap(m, len);
	samepage_close(sp);
}

/* ------------------------------------------------------------------ */
/* Positive checks: these hold today                                   */
/* ------------------------------------------------------------------ */

#ifndef ADV_OPS_MASK
#define ADV_OPS_MASK 7 /* run=2, UNMERGEABLE/MERGEABLE, discard */
#endif
#define W_PAGES 1024
static char *w_area, *w_shadow;
static atomic_int w_bad;

static void *shadow_writer(void *arg)
{
	long t = (long)arg;
	uint64_t s = 0x1234567ULL * (uint64_t)(t + 3);
	while (!atomic_load(&stop_flag)) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		size_t pg = (s % (W_PAGES / 2)) * 2 + (size_t)t;
		char *p = w_area + pg * PG, *sh = w_shadow + pg * PG;
		if (s % 5 == 0) {
			int v = (int)(s >> 40) % 3;
			memset(p, v, PG);
			memset(sh, v, PG);
		} else if (s % 5 == 1) {
			size_t off = (s >> 12) % PG;
			p[off] = (char)(s >> 32);
			sh[off] = (char)(s >> 32);
		} else if (memcmp(p, sh, PG)) {
			atomic_fetch_add(&w_bad, 1);
		}
	}
	return NULL;
}

/* Writers keep their pages equal to a shadow copy while the main thread
 * flips run 1/2, UNMERGEABLE/MERGEABLE and samepage_discard()s nothing of
 * theirs (a separate range).  No write may be lost.
 * BUG (at 9209d05 and later): the process is killed by SIGSEGV during
 * UNMERGEABLE (ADV_OPS_MASK=2 alone reproduces it).  unmerge_range() now
 * opens merge windows from the caller's thread (replace_with_anon,
 * merge.c:472-505) without handler_ensure(); a writer's fault whose window
 * closes before fault_handler() checks in_window() (merge.c:150) goes to
 * chain(), which with no application handler sets SIGSEGV to SIG_DFL
 * (merge.c:140); the next writer that hits a window dies.  With an
 * application handler that returns, the process survives and that handler
 * is called for 2 faults it never caused (same race as
 * no_spurious_app_sigsegv).  Fix: never reset to SIG_DFL for a fault that
 * may be a closed window's (retry it once), and re-check in_window after
 * a window_seq change. */
static void test_writers_during_unmerge(void)
{
	samepage_t *sp = open_fast();
	w_area = map_pages(W_PAGES);
	w_shadow = malloc(W_PAGES * PG);
	REQUIRE(w_shadow);
	for (size_t i = 0; i < W_PAGES; i++) {
		memset(w_area + i * PG, (int)(i % 3), PG);
		memset(w_shadow + i * PG, (int)(i % 3), PG);
	}
	char *other;
	REQUIRE(samepage_alloc(sp, 64 * PG, (void **)&other) == 0);
	REQUIRE(samepage_madvise(sp, w_area, W_PAGES * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 2) == 0);
	pthread_t t[2];
	for (long i = 0; i < 2; i++)
		REQUIRE(pthread_create(&t[i], NULL, shadow_writer, (void *)i) == 0);
	for (int round = 0; round < 30; round++) {
		REQUIRE(wait_scans(sp, 2) == 0);
		if (!(ADV_OPS_MASK & (1 << (round % 3))))
			continue;
		switch (round % 3) {
		case 0:
			wr(sp, "run", "2");
			wr(sp, "run", "1");
			break;
		case 1:
			CHECK_EQ_INT(
			    samepage_madvise(sp, w_area, W_PAGES * PG, SAMEPAGE_UNMERGEABLE), 0);
			CHECK_EQ_INT(samepage_madvise(sp, w_area, W_PAGES * PG, SAMEPAGE_MERGEABLE),
				     0);
			break;
		default:
			memset(other, 'o', 64 * PG);
			CHECK_EQ_INT(samepage_discard(sp, other, 64 * PG), 0);
			break;
		}
	}
	atomic_store(&stop_flag, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ_INT(atomic_load(&w_bad), 0);
	CHECK(memcmp(w_area, w_shadow, W_PAGES * PG) == 0);
	for (size_t i = 0; i < 64 * PG; i += 97)
		REQUIRE(other[i] == 0);
	samepage_close(sp);
}

/* mremap grows, shrinks and moves a merged range: contents survive, the
 * moved range merges again, nothing maps the pool where it was.
 * BUG: growing (moving) a merged range fails with EFAULT: merging split the
 * one anonymous VMA into pool-file VMAs (one per run, merge.c:317), and
 * mremap(2) needs the old range inside one VMA; unmerge_for_move()
 * (interpose.c:163) gives the pages private copies but leaves the VMAs
 * split.  With the kernel's KSM the VMA is untouched and mremap works.
 * Fix: when the range spans several VMAs, move it piece by piece
 * (MREMAP_FIXED into a reserved destination) and map the growth, or rebuild
 * the unmerged range as one anonymous mapping before the call. */
static void test_mremap_contents(void)
{
	const size_t n = 128;
	char *p;
	samepage_t *sp = open_fast();
	p = map_pages(n);
	for (size_t i = 0; i < n; i++)
		memset(p + i * PG, 'a' + (int)(i % 4), PG);
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 2) == 0);
	CHECK_EQ_INT(rd(sp, "pages_sharing"), (long long)n - 4);
	char *q = mremap(p, n * PG, 2 * n * PG, MREMAP_MAYMOVE); /* grow */
	if (q == MAP_FAILED)
		fprintf(stderr, "mremap of the merged range: %s\n", strerror(errno));
	REQUIRE(q != MAP_FAILED);
	for (size_t i = 0; i < n; i++)
		REQUIRE(q[i * PG + 17] == 'a' + (int)(i % 4));
	for (size_t i = n; i < 2 * n; i++)
		REQUIRE(q[i * PG + 17] == 0);
	char *r = mremap(q, 2 * n * PG, n / 2 * PG, 0); /* shrink in place */
	REQUIRE(r == q);
	REQUIRE(wait_scans(sp, 3) == 0);
	CHECK_EQ_INT(rd(sp, "pages_shared"), 4);
	CHECK_EQ_INT(rd(sp, "pages_sharing"), (long long)n / 2 - 4);
	for (size_t i = 0; i < n / 2; i++)
		REQUIRE(r[i * PG + 4095] == 'a' + (int)(i % 4));
	CHECK_EQ_U64(pages_mapping_pool(r + n / 2 * PG, n / 2), 0);
	/* MAP_FIXED over the merged range: zeros, and the pool empties. */
	char *z = mmap(r, n / 2 * PG, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	REQUIRE(z == r);
	for (size_t i = 0; i < n / 2 * PG; i += 97)
		REQUIRE(z[i] == 0);
	CHECK_EQ_INT(rd(sp, "pages_shared"), 0);
	CHECK_EQ_INT(rd(sp, "pool_pages"), 0);
	samepage_close(sp);
}

/* LTP ksm07: one unique page, pages_to_scan 100, sleep 0: after three or
 * more full scans, pages_skipped grew by at least half of full_scans. */
static void test_smart_scan_ksm07(void)
{
	samepage_t *sp;
	REQUIRE(samepage_open(&sp) == 0);
	wr(sp, "sleep_millisecs", "0");
	wr(sp, "smart_scan", "1");
	char *p = map_pages(1);
	memset(p, 'a', PG);
	REQUIRE(samepage_madvise(sp, p, PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 3) == 0); /* ages 0-2 are never skipped */
	long long s0 = rd(sp, "pages_skipped"), f0 = rd(sp, "full_scans");
	REQUIRE(wait_scans(sp, 30) == 0);
	long long ds = rd(sp, "pages_skipped") - s0, df = rd(sp, "full_scans") - f0;
	printf("pages_skipped +%lld, full_scans +%lld\n", ds, df);
	CHECK(df >= 3);
	CHECK(ds * 2 >= df);
	samepage_close(sp);
}

/* The counters' definitions: pages_volatile = rmap_items - shared - sharing
 * - unshared; general_profit = (sharing + zero) * 4096 - metadata_bytes. */
static void test_counter_definitions(void)
{
	samepage_t *sp = open_fast();
	char *p = map_pages(300);
	for (size_t i = 0; i < 300; i++) {
		memset(p + i * PG, 0, PG);
		if (i < 200)
			memset(p + i * PG, i < 100 ? 'x' : (int)i + 28,
			       PG); /* 100 alike, 100 unique */
	}
	wr(sp, "use_zero_pages", "1");
	/* Smart scan would take the unique pages out of the unstable tree
	 * after three visits: how many scans run before run=0 lands is
	 * timing, so this test counts without it. */
	wr(sp, "smart_scan", "0");
	REQUIRE(samepage_madvise(sp, p, 300 * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 2) == 0);
	wr(sp, "run", "0");
	long long items = rd(sp, "ksm_rmap_items"), sh = rd(sp, "pages_shared"),
		  sg = rd(sp, "pages_sharing"), un = rd(sp, "pages_unshared"),
		  vol = rd(sp, "pages_volatile"), zero = rd(sp, "ksm_zero_pages"),
		  meta = rd(sp, "metadata_bytes"), profit = rd(sp, "general_profit");
	printf("items %lld shared %lld sharing %lld unshared %lld volatile %lld zero %lld\n", items,
	       sh, sg, un, vol, zero);
	CHECK_EQ_INT(sh, 1);
	CHECK_EQ_INT(sg, 99);
	CHECK_EQ_INT(zero, 100);
	CHECK_EQ_INT(un, 100);
	CHECK_EQ_INT(vol, items - sh - sg - un > 0 ? items - sh - sg - un : 0);
	CHECK_EQ_INT(profit, (sg + zero) * 4096 - meta);
	CHECK_EQ_INT(rd(sp, "ksm_merging_pages"), sh + sg);
	samepage_close(sp);
}

/* Two engines on disjoint ranges: each merges its own, counts its own. */
static void test_two_engines(void)
{
	samepage_t *a = open_fast(), *b = open_fast();
	char *pa = map_pages(100), *pb = map_pages(50);
	memset(pa, 'A', 100 * PG);
	memset(pb, 'A', 50 * PG); /* same contents: still not merged across engines */
	REQUIRE(samepage_madvise(a, pa, 100 * PG, SAMEPAGE_MERGEABLE) == 0);
	REQUIRE(samepage_madvise(b, pb, 50 * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(a, "run", "1");
	wr(b, "run", "1");
	REQUIRE(wait_scans(a, 2) == 0 && wait_scans(b, 2) == 0);
	CHECK_EQ_INT(rd(a, "pages_shared"), 1);
	CHECK_EQ_INT(rd(a, "pages_sharing"), 99);
	CHECK_EQ_INT(rd(b, "pages_shared"), 1);
	CHECK_EQ_INT(rd(b, "pages_sharing"), 49);
	pa[0] = 1;
	pb[0] = 1;
	REQUIRE(wait_scans(a, 2) == 0 && wait_scans(b, 2) == 0);
	CHECK_EQ_INT(rd(a, "pages_sharing"), 98);
	CHECK_EQ_INT(rd(b, "pages_sharing"), 48);
	samepage_close(a);
	CHECK(pb[PG] == 'A' && pa[PG] == 'A');
	CHECK_EQ_INT(rd(b, "pages_sharing"), 48);
	samepage_close(b);
}

/* A THP-backed range (MADV_HUGEPAGE) of identical pages merges, reads
 * right and gives its memory back. */
static void test_thp_range(void)
{
	const size_t n = 2048; /* 8 MiB: four huge pages */
	char *raw =
	    mmap(NULL, (n + 512) * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(raw != MAP_FAILED);
	char *p = (char *)(((uintptr_t)raw + (2 << 20) - 1) & ~((uintptr_t)(2 << 20) - 1));
	if (madvise(p, n * PG, MADV_HUGEPAGE))
		SKIP("no THP");
	memset(p, 'h', n * PG);
	long long thp = proc_kb("/proc/self/smaps_rollup", "AnonHugePages");
	samepage_t *sp = open_fast();
	long long before = anon_kb();
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 2) == 0);
	long long after = anon_kb();
	printf("AnonHugePages %lld kB before; Anonymous %lld -> %lld kB; sharing %lld\n", thp,
	       before, after, rd(sp, "pages_sharing"));
	check_ksm_pages_count(sp, (long long)n);
#ifndef SAMEPAGE_SANITIZE /* the sanitizer's shadow memory moves Anonymous */
	CHECK_CMP(before - after, >=, (long long)(n - 1) * 4 * 9 / 10, long long, "%lld");
#endif
	for (size_t i = 0; i < n * PG; i += 4091)
		REQUIRE(p[i] == 'h');
	p[5 * PG] = 'x';
	CHECK(p[5 * PG] == 'x' && p[6 * PG] == 'h');
	samepage_close(sp);
}

/* A page-aligned block from malloc (posix_memalign) can be registered,
 * merges, is written and freed. */
static void test_malloc_block(void)
{
	samepage_t *sp = open_fast();
	char *b;
	REQUIRE(posix_memalign((void **)&b, PG, 64 * PG) == 0);
	memset(b, 'M', 64 * PG);
	REQUIRE(samepage_madvise(sp, b, 64 * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 2) == 0);
	CHECK_EQ_INT(rd(sp, "pages_sharing"), 63);
	b[3 * PG + 1] = 'z';
	CHECK(b[3 * PG + 1] == 'z' && b[3 * PG] == 'M');
	REQUIRE(samepage_madvise(sp, b, 64 * PG, SAMEPAGE_UNMERGEABLE) == 0);
	free(b);
	void *more[64];
	for (int k = 0; k < 64; k++) {
		more[k] = malloc(3000);
		REQUIRE(more[k]);
		memset(more[k], k, 3000);
	}
	for (int k = 0; k < 64; k++)
		free(more[k]);
	CHECK_EQ_INT(rd(sp, "pages_shared"), 0);
	samepage_close(sp);
}

/* fork() while the scanner merges: each child writes its pages and sees
 * its writes and the parent's contents; the parent never sees them. */
static void test_fork_during_merge(void)
{
	const size_t n = 512;
	samepage_t *sp = open_fast();
	char *p = map_pages(n);
	memset(p, 'F', n * PG);
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	for (int k = 0; k < 40; k++) {
		pid_t pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0) {
			for (size_t i = 0; i < n; i += 3)
				p[i * PG + 9] = 'c';
			for (size_t i = 0; i < n; i++)
				if (p[i * PG + 9] != (i % 3 ? 'F' : 'c') || p[i * PG] != 'F')
					_exit(1);
			_exit(0);
		}
		CHECK_EQ_INT(adv_wait(pid), 0);
		usleep(2000);
	}
	for (size_t i = 0; i < n * PG; i += 97)
		REQUIRE(p[i] == 'F');
	REQUIRE(wait_scans(sp, 2) == 0);
	check_ksm_pages_count(sp, (long long)n);
	samepage_close(sp);
}

/* mprotect PROT_NONE and back, and munmap of parts, from other threads
 * while pages merge: no crash, no memory mapped back, contents kept. */
static char *mp_area;
static void *prot_flipper(void *arg)
{
	for (int k = 0; k < 400; k++) {
		mprotect(mp_area, 256 * PG, PROT_NONE);
		usleep(200);
		mprotect(mp_area, 256 * PG, PROT_READ);
		mprotect(mp_area, 256 * PG, PROT_READ | PROT_WRITE);
		mp_area[(size_t)(k % 256) * PG + 1] = 'm'; /* the same byte: still alike */
	}
	return NULL;
}

static void test_mprotect_munmap_during_merge(void)
{
	samepage_t *sp = open_fast();
	mp_area = map_pages(512);
	memset(mp_area, 'm', 512 * PG);
	REQUIRE(samepage_madvise(sp, mp_area, 512 * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, prot_flipper, NULL) == 0);
	/* Unmap the second half, page run by page run, while merging. */
	for (size_t i = 256; i < 512; i += 16) {
		REQUIRE(munmap(mp_area + i * PG, 16 * PG) == 0);
		usleep(1000);
	}
	pthread_join(t, NULL);
	REQUIRE(wait_scans(sp, 3) == 0);
	/* BUG (minor): pages_tracked (and metadata_bytes, hence general_profit)
	 * keep counting the unmapped half: a region only shrinks when all of it
	 * is gone (region.c:236-238); its meta[] stays allocated. */
	CHECK_EQ_INT(rd(sp, "pages_tracked"), 256);
	CHECK_EQ_INT(rd(sp, "pages_sharing"), 255);
	for (size_t i = 0; i < 256 * PG; i += 97)
		REQUIRE(mp_area[i] == 'm');
	/* Nothing was mapped back where the application unmapped. */
	void *probe = mmap(mp_area + 256 * PG, 256 * PG, PROT_READ,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	CHECK(probe == mp_area + 256 * PG);
	samepage_close(sp);
}

static const struct adv_test tests[] = {
    {"fork_vs_munmap", test_fork_vs_munmap, 60},
    {"dontneed_vs_munmap", test_dontneed_vs_munmap, 60},
    {"pages_to_scan_zero", test_pages_to_scan_zero, 20},
    {"idle_no_spin", test_idle_no_spin, 30},
    {"syscall_write_during_merge", test_syscall_write_during_merge, 120},
    {"zero_page_after_cow", test_zero_page_after_cow, 60},
    {"no_spurious_app_sigsegv", test_no_spurious_app_sigsegv, 120},
    {"late_app_handler_prot_none", test_late_app_handler_prot_none, 60},
    {"child_munmap", test_child_munmap, 30},
    {"grandchild_keeps_contents", test_grandchild_keeps_contents, 60},
    {"many_forks_pool_reclaimed", test_many_forks_pool_reclaimed, 60},
    {"max_page_sharing_after_fork", test_max_page_sharing_after_fork, 60},
    {"child_dontneed_zeros", test_child_dontneed_zeros, 60},
    {"close_then_dontneed", test_close_then_dontneed, 60},
    {"wipeonfork_kept", test_wipeonfork_kept, 60},
    {"mlock_kept", test_mlock_kept, 60},
    {"reregister_after_reuse", test_reregister_after_reuse, 60},
    {"forget_list_overflow", test_forget_list_overflow, 60},
    {"mremap_two_engines", test_mremap_two_engines, 60},
    {"mremap_partial_registration", test_mremap_partial_registration, 60},
    {"page_id_reuse", test_page_id_reuse, 290},
    {"sparse_range_metadata", test_sparse_range_metadata, 60},
    {"writers_during_unmerge", test_writers_during_unmerge, 240},
    {"mremap_contents", test_mremap_contents, 60},
    {"smart_scan_ksm07", test_smart_scan_ksm07, 60},
    {"counter_definitions", test_counter_definitions, 60},
    {"two_engines", test_two_engines, 60},
    {"thp_range", test_thp_range, 60},
    {"malloc_block", test_malloc_block, 60},
    {"fork_during_merge", test_fork_during_merge, 120},
    {"mprotect_munmap_during_merge", test_mprotect_munmap_during_merge, 120},
};

int main(int argc, char **argv)
{
	size_t n = sizeof(tests) / sizeof(tests[0]);
	if (argc > 1)
		return adv_run(tests, n, argv[1]);
	int failed = 0;
	for (size_t i = 0; i < n; i++) {
		int rc = adv_run(tests, n, tests[i].name);
		if (rc && rc != 77) {
			printf("# [FAIL] %s\n", tests[i].name);
			failed++;
		}
	}
	printf("adversarial: %d of %zu failed\n", failed, n);
	return failed ? 1 : 0;
}
