// SPDX-License-Identifier: MIT
/*
 * adv_lost.c - adversarial tests: nothing is lost (writes, reads and system
 * calls while pages merge).
 *
 * Each test runs in its own process under a hang guard (adv_main.c,
 * adv_util.h); the list of tests and their hang limits is adversarial.def.
 */
#include "adv_util.h"

/* Regression (issue 11): a system call that writes into a mergeable page
 * while it is being merged (pread into pages merging continuously) never
 * fails, and the data is intact. */
void test_syscall_write_during_merge(void)
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
	/* Under every window mechanism: the read waits for the window (the
	 * kernel makes it wait, or the interposed pread does), never fails. */
	CHECK_EQ_INT(bad, 0);
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
void test_zero_page_after_cow(void)
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

/* Regression: the application's SIGSEGV handler (installed before
 * samepage_open) is never called for a fault it did not cause: a write
 * that faults in a merge window whose closing races with the handler's
 * check is retried, not chained. */
void test_no_spurious_app_sigsegv(void)
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

/* Regression: an application SIGSEGV handler installed after samepage_open
 * (as a crash reporter would be) never sees the scanner's own guarded
 * reads of a PROT_NONE mergeable range. */
void test_late_app_handler_prot_none(void)
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

/*
 * Finding 5 (RELIABILITY.md): a crash reporter installed after
 * samepage_open() saves the engine's SIGSEGV handler as its previous one
 * and chains to it; the engine re-installs its handler on top (before every
 * batch) and chains to the reporter: a real segmentation fault then went
 * from one to the other for ever instead of killing the process (under
 * libFuzzer, a NULL dereference in the library hung the fuzzer).  Here, in
 * a child, a reporter counts its calls and chains; the child then writes
 * to a PROT_NONE page: it must die of SIGSEGV after a few calls.
 */
static struct sigaction reporter_prev;
static atomic_int reporter_calls;
static void reporter(int sig, siginfo_t *si, void *uc)
{
	if (atomic_fetch_add(&reporter_calls, 1) == 1000)
		_exit(3); /* the recursion: no end in sight */
	if (reporter_prev.sa_flags & SA_SIGINFO)
		reporter_prev.sa_sigaction(sig, si, uc);
	else if (reporter_prev.sa_handler == SIG_DFL)
		signal(sig, SIG_DFL);
}

void test_chained_handler_crashes(void)
{
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		samepage_t *sp = open_fast();
		char *p = map_pages(16);
		memset(p, 'c', 16 * PG);
		REQUIRE(samepage_madvise(sp, p, 16 * PG, SAMEPAGE_MERGEABLE) == 0);
		struct sigaction sa = {0};
		sa.sa_sigaction = reporter;
		sa.sa_flags = SA_SIGINFO | SA_NODEFER;
		sigemptyset(&sa.sa_mask);
		REQUIRE(sigaction(SIGSEGV, &sa, &reporter_prev) == 0);
		wr(sp, "run", "1");
		REQUIRE(wait_scans(sp, 2) == 0); /* the engine's handler is on top again */
		struct sigaction cur;
		REQUIRE(sigaction(SIGSEGV, NULL, &cur) == 0);
		if (cur.sa_sigaction == reporter)
			_exit(4); /* not re-installed: nothing to test */
		/* A real fault (a page nobody may touch: not NULL, which the
		 * sanitizer build reports before it faults). */
		char *none = mmap(NULL, PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		REQUIRE(none != MAP_FAILED);
		*(volatile char *)none = 1;
		_exit(0);
	}
	int st = adv_wait(pid);
	if (st != 128 + SIGSEGV)
		fprintf(stderr, "the child %s\n",
			st == 3 ? "recursed between the two handlers" : "did not die of SIGSEGV");
	CHECK_EQ_INT(st, 128 + SIGSEGV);
}

/*
 * Finding 1 (RELIABILITY.md): MADV_DONTNEED on registered memory now and
 * then read a page's old contents back.  The interposed madvise made the
 * range's merged pages anonymous, let the engine go, and only then called
 * the kernel's madvise: a page the scanner merged in between was a private
 * mapping of the pool when the kernel discarded it, and read the pool's
 * page (its own old contents) instead of zeros.  Here one region is merged
 * onto one KSM page; a second is written with the same contents (the
 * scanner merges it at its next visit) and discarded at once, again and
 * again.  A pool of a closed engine makes the call look at the process's
 * mappings once more after the engine's part, and many mappings make that
 * look slow: the window the scanner needs.
 */
void test_dontneed_vs_merge(void)
{
	const size_t n = 32;
	samepage_t *old = open_fast();
	samepage_close(old); /* a stale pool: the discard walks the maps again */
	enum { GAPS = 3000 };
	char *gaps = mmap(NULL, 2 * GAPS * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(gaps != MAP_FAILED);
	for (size_t i = 0; i < GAPS; i++) /* every other page: one mapping each */
		REQUIRE(mprotect(gaps + 2 * i * PG, PG, PROT_READ) == 0);

	char *a, *b = map_pages(n);
	samepage_t *sp = adv_merged(&a, n, 'd');
	REQUIRE(samepage_madvise(sp, b, n * PG, SAMEPAGE_MERGEABLE) == 0);
	long rounds = 0, bad_rounds = 0, bad_pages = 0;
	while (rounds < 500 && !bad_rounds) {
		memset(b, 'd', n * PG);
		REQUIRE(madvise(b, n * PG, MADV_DONTNEED) == 0);
		long bad = 0;
		for (size_t i = 0; i < n; i++)
			bad += b[i * PG] != 0 || b[i * PG + PG - 1] != 0;
		bad_rounds += bad > 0;
		bad_pages += bad;
		if (++rounds % 100 == 0)
			check_tick();
	}
	printf("%ld discards of %zu pages the scanner was merging: %ld pages of %ld discards read "
	       "old contents\n",
	       rounds, n, bad_pages, bad_rounds);
	CHECK_EQ_INT(bad_pages, 0);
	CHECK(rd(sp, "pages_sharing") > 0); /* the first region stayed merged */
	samepage_close(sp);
	munmap(gaps, 2 * GAPS * PG);
}
