// SPDX-License-Identifier: MIT
/*
 * adv_positive.c - adversarial tests: the kernel's rules and counters, and
 * the common cases, hold.
 *
 * Each test runs in its own process under a hang guard (adv_main.c,
 * adv_util.h); the list of tests and their hang limits is adversarial.def.
 */
#include "../../lib/internal.h"
#include "adv_util.h"

#include <malloc.h>

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

/* The writers' area and its shadow copy, filled alike: three contents. */
static void shadowed(char *area)
{
	w_area = area;
	w_shadow = malloc(W_PAGES * PG);
	REQUIRE(w_shadow);
	for (size_t i = 0; i < W_PAGES; i++) {
		memset(w_area + i * PG, (int)(i % 3), PG);
		memset(w_shadow + i * PG, (int)(i % 3), PG);
	}
}

/* Writers keep their pages equal to a shadow copy while the main thread
 * flips run 1/2, UNMERGEABLE/MERGEABLE and samepage_discard()s nothing of
 * theirs (a separate range).  No write may be lost.
 * Regression: writers running while ranges are unmerged (UNMERGEABLE,
 * run=2) are never killed and never see a fault they did not cause: a fault
 * whose window just closed is retried, never reset to SIG_DFL. */
void test_writers_during_unmerge(void)
{
	samepage_t *sp = open_fast();
	shadowed(map_pages(W_PAGES));
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
 * Regression: growing (moving) a merged range with mremap() works and keeps
 * its contents: the range is one anonymous mapping again before the call
 * (merging split it into pool mappings). */
void test_mremap_contents(void)
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
void test_smart_scan_ksm07(void)
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
void test_counter_definitions(void)
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

/* Older kernels' ksm.c searched the stable tree before it looked at the
 * checksum; today's cmp_and_merge_page() looks at the checksum first for a
 * page that is not a KSM page, so a page whose new contents already have a
 * KSM page still waits for a second visit with the same checksum, and so
 * does a zero page with use_zero_pages=0.  Measured on Linux 6.18 with this
 * test's layout and steps (sysfs, pages_to_scan 100000, one full scan per
 * wake-up): pages_sharing 126 after the first full scan, 254 after the
 * second.  The engine must count visits as the kernel does: merging after
 * one visit would merge pages being written (the checksum's point), and
 * convergence figures compared with the kernel's would not be like with
 * like. */
void test_second_visit_merges(void)
{
	const size_t n = 64;
	samepage_t *sp = open_fast();
	wr(sp, "smart_scan", "0"); /* the unique pages are visited at every scan */
	wr(sp, "use_zero_pages", "0");
	char *p = map_pages(4 * n);
	memset(p, 'x', n * PG);		       /* [0, n): one content */
	memset(p + n * PG, 0, n * PG);	       /* [n, 2n): zeros */
	for (size_t i = 2 * n; i < 4 * n; i++) /* [2n, 4n): unique */
		memset(p + i * PG, (int)i, PG), p[i * PG + 1] = 'u';
	REQUIRE(samepage_madvise(sp, p, 4 * n * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 3) == 0);
	CHECK_EQ_INT(rd(sp, "pages_sharing"), 2 * ((long long)n - 1));
	/* Let the scanner sleep a minute after each full scan, so that the one
	 * full scan after the rewrite below is the only one. */
	wr(sp, "sleep_millisecs", "60000");
	REQUIRE(wait_scans(sp, 1) == 0);

	pthread_mutex_lock(&sp->lock);
	CHECK(!sp->scan_running); /* between two full scans: asleep */
	uint64_t f0 = sp->c.full_scans;
	for (size_t i = 2 * n; i < 3 * n; i++)
		memset(p + i * PG, 'x', PG); /* now the KSM page's contents */
	memset(p + 3 * n * PG, 0, n * PG);   /* now zeros */
	pthread_mutex_unlock(&sp->lock);
	for (int visit = 1; visit <= 2; visit++) {
		pthread_cond_broadcast(&sp->wake); /* one full scan now */
		REQUIRE(wait_scans(sp, 1) == 0);
		pthread_mutex_lock(&sp->lock);
		bool once = sp->c.full_scans == f0 + (uint64_t)visit && !sp->scan_running;
		long long zero = (long long)sp->c.zero_pages;
		pthread_mutex_unlock(&sp->lock);
		REQUIRE(once); /* every rewritten page was visited `visit` times */
		long long sharing = rd(sp, "pages_sharing");
		long long want = visit == 1 ? 2 * ((long long)n - 1) : 2 * (2 * (long long)n - 1);
		printf("after visit %d: pages_sharing %lld (Linux 6.18: %lld), zero pages %lld\n",
		       visit, sharing, want, zero);
		CHECK_EQ_INT(sharing, want);
		CHECK_EQ_INT(zero, visit == 1 ? (long long)n : 2 * (long long)n);
	}
	for (size_t i = 0; i < 4 * n; i++) {
		char want = i < n || (i >= 2 * n && i < 3 * n) ? 'x' : 0;
		CHECK(p[i * PG] == want && p[i * PG + PG - 1] == want);
	}
	samepage_close(sp);
}

/* Two engines on disjoint ranges: each merges its own, counts its own. */
void test_two_engines(void)
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

/* n pages at a huge page's boundary, MADV_HUGEPAGE (the test is skipped
 * where the kernel has no THP). */
static char *thp_area(size_t n)
{
	char *raw =
	    mmap(NULL, (n + 512) * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(raw != MAP_FAILED);
	char *p = (char *)(((uintptr_t)raw + (2 << 20) - 1) & ~((uintptr_t)(2 << 20) - 1));
	if (madvise(p, n * PG, MADV_HUGEPAGE))
		SKIP("no THP");
	return p;
}

/* A THP-backed range (MADV_HUGEPAGE) of identical pages merges, reads
 * right and gives its memory back. */
void test_thp_range(void)
{
	const size_t n = 2048; /* 8 MiB: four huge pages */
	char *p = thp_area(n);
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

/* Whether the page at p is part of a transparent huge page (kpageflags
 * bit 22, KPF_THP): 1, 0, or -1 if this process cannot see PFNs (root
 * only). */
static int page_in_thp(const void *p)
{
	uint64_t pm = 0, flags = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY), kf = open("/proc/kpageflags", O_RDONLY);
	int ret = -1;
	if (fd >= 0 && kf >= 0 &&
	    pread(fd, &pm, sizeof(pm), (off_t)((uintptr_t)p / PG * sizeof(pm))) == sizeof(pm) &&
	    (pm & (1ULL << 63)) && (pm & ((1ULL << 55) - 1)) &&
	    pread(kf, &flags, sizeof(flags), (off_t)((pm & ((1ULL << 55) - 1)) * sizeof(flags))) ==
		sizeof(flags))
		ret = !!(flags & (1ULL << 22));
	if (fd >= 0)
		close(fd);
	if (kf >= 0)
		close(kf);
	return ret;
}

/* Regression: pages merged out of a THP left the THP partially mapped,
 * and the kernel frees such a THP's unmapped pages only when memory runs
 * short (its deferred split): the memory merged was not available until
 * then.  Now the THP is replaced by small pages before the merge: the
 * pages that stay are small pages, and the THP is gone whole. */
void test_thp_partial(void)
{
	const size_t n = 2048; /* 8 MiB: four huge pages */
	char *p = thp_area(n);
	for (size_t i = 0; i < n; i++) {
		memset(p + i * PG, 'h', PG);
		if (i % 2)
			memcpy(p + i * PG, &i, sizeof(i)); /* every other page unique */
	}
	if (proc_kb("/proc/self/smaps_rollup", "AnonHugePages") < (long long)(n * 4))
		SKIP("the kernel gave no THP for the range");
	if (page_in_thp(p + PG) != 1)
		SKIP("no PFNs in pagemap or no /proc/kpageflags (root only)");
	samepage_t *sp = open_fast();
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 2) == 0);
	CHECK_EQ_INT(rd(sp, "ksm_merging_pages"), (long long)n / 2);
	int in_thp = 0;
	for (size_t i = 1; i < n; i += 2)
		in_thp += page_in_thp(p + i * PG) == 1;
	CHECK_EQ_INT(in_thp, 0);
	for (size_t i = 0; i < n; i++) {
		size_t v = 0;
		memcpy(&v, p + i * PG, sizeof(v));
		REQUIRE(i % 2 ? v == i : p[i * PG] == 'h');
		REQUIRE(p[i * PG + PG - 1] == 'h');
	}
	samepage_close(sp);
}

/* Writers keep their pages equal to a shadow copy while the range's THP
 * blocks are copied into small pages before they merge; every round the
 * range is unmerged and made THPs again (MADV_COLLAPSE, Linux 6.1).  No
 * write may be lost. */
void test_thp_writers(void)
{
	samepage_t *sp = open_fast();
	shadowed(thp_area(W_PAGES));
	REQUIRE(samepage_madvise(sp, w_area, W_PAGES * PG, SAMEPAGE_MERGEABLE) == 0);
	pthread_t t[2];
	for (long i = 0; i < 2; i++)
		REQUIRE(pthread_create(&t[i], NULL, shadow_writer, (void *)i) == 0);
	wr(sp, "run", "1");
	int collapsed = 0;
	for (int round = 0; round < 20; round++) {
		REQUIRE(wait_scans(sp, 2) == 0);
		CHECK_EQ_INT(samepage_madvise(sp, w_area, W_PAGES * PG, SAMEPAGE_UNMERGEABLE), 0);
		collapsed += madvise(w_area, W_PAGES * PG, 25 /* MADV_COLLAPSE */) == 0;
		CHECK_EQ_INT(samepage_madvise(sp, w_area, W_PAGES * PG, SAMEPAGE_MERGEABLE), 0);
	}
	REQUIRE(wait_scans(sp, 2) == 0);
	atomic_store(&stop_flag, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	printf("THPs made again in %d of 20 rounds; %lld pages merged at the end\n", collapsed,
	       rd(sp, "ksm_merging_pages"));
	CHECK_EQ_INT(atomic_load(&w_bad), 0);
	CHECK(memcmp(w_area, w_shadow, W_PAGES * PG) == 0);
	samepage_close(sp);
}

/* A page-aligned block from malloc (posix_memalign) can be registered,
 * merges, is written and freed. */
void test_malloc_block(void)
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
void test_fork_during_merge(void)
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

void test_mprotect_munmap_during_merge(void)
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
	/* Regression: pages_tracked (and metadata_bytes, hence general_profit)
	 * stop counting an unmapped half of a range. */
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

/* merge-any (issue 12): a mapping made after it is on merges without any
 * madvise; malloc's heaps are kept out and counted (the heaps of glibc's
 * secondary arenas, and its main heap, which brk grows and shrinks: merged
 * before, RELIABILITY.md 41), and so are the threads' stacks; the blocks
 * malloc maps by themselves merge (free() and realloc(), which unmap them,
 * are the library's: kept out, and sometimes missed, before, RELIABILITY.md
 * 42); the library's own memory never merges; off, everything is unmerged,
 * as prctl(PR_SET_MEMORY_MERGE, 0) does for the kernel. */
static void *arena_user(void *arg)
{
	/* A thread's malloc uses a secondary arena: its heap is 64 MiB
	 * aligned, with the arena's header at its start.  (Blocks under
	 * malloc's mmap threshold, 128 KiB, come from the heap.) */
	char **b = arg;
	for (int i = 0; i < 8; i++) {
		b[i] = malloc(100 << 10);
		memset(b[i], 'h', 100 << 10);
	}
	return NULL;
}

/* Merge-any: memory mapped where part of a registered mapping was (here
 * mmap(MAP_FIXED) over its middle; the same when the kernel puts a new
 * mapping in a hole left by munmap) is new memory and merges.  It was
 * left out for good: its pages were registered but off since the unmap. */
static void mapped_again_merges(samepage_t *sp, char *at, size_t n, int flags, int val,
				const char *what)
{
	char *q =
	    mmap(at, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
	REQUIRE(q == at);
	memset(q, val, n * PG);
	REQUIRE(wait_scans(sp, 3) == 0);
	printf("# %s: %zu of %zu pages merged\n", what, pages_mapping_pool(q, n), n);
	CHECK_EQ_U64(pages_mapping_pool(q, n), n);
}

void test_merge_any_mapped_again(void)
{
	samepage_t *sp = open_fast();
	REQUIRE(samepage_merge_any(sp, 1) == 0);
	char *p = mmap(NULL, 64 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(p != MAP_FAILED);
	memset(p, 'a', 64 * PG);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 3) == 0);
	CHECK_EQ_U64(pages_mapping_pool(p, 64), 64);
	mapped_again_merges(sp, p + 16 * PG, 16, MAP_FIXED, 'b', "mapped over");
	/* A hole, then a mapping in it (MAP_FIXED_NOREPLACE: where the kernel
	 * may put the next mmap). */
	REQUIRE(munmap(p + 40 * PG, 8 * PG) == 0);
	REQUIRE(wait_scans(sp, 1) == 0);
	mapped_again_merges(sp, p + 40 * PG, 8, MAP_FIXED_NOREPLACE, 'c', "in the hole");
	CHECK_EQ_U64(pages_mapping_pool(p, 16) + pages_mapping_pool(p + 32 * PG, 8) +
			 pages_mapping_pool(p + 48 * PG, 16),
		     40);
	for (size_t i = 0; i < 64 * PG; i += 97)
		REQUIRE(p[i] == (i / PG >= 16 && i / PG < 32   ? 'b'
				 : i / PG >= 40 && i / PG < 48 ? 'c'
							       : 'a'));
	samepage_close(sp);
}

/* A thread whose stack holds 16 pages alike until it is told to go. */
static _Atomic int stack_state; /* 1: filled, 2: go */
static char *_Atomic stack_pages;
static void *stack_user(void *arg)
{
	(void)arg;
	char buf[17 * 4096];
	memset(buf, 's', sizeof(buf));
	atomic_store(&stack_pages, buf);
	atomic_store(&stack_state, 1);
	while (atomic_load(&stack_state) != 2)
		usleep(1000);
	return (void *)(uintptr_t)buf[100];
}

void test_merge_any(void)
{
	samepage_t *sp = open_fast();
	char *heap_block[8], *main_block[8], *mapped_block;
	pthread_t t, st;
	REQUIRE(pthread_create(&t, NULL, arena_user, heap_block) == 0);
	pthread_join(t, NULL);
	REQUIRE(pthread_create(&st, NULL, stack_user, NULL) == 0);
	while (atomic_load(&stack_state) != 1)
		usleep(1000);
	/* This thread's blocks: from the main arena's heap (brk), and one of
	 * 1 MiB that malloc maps by itself (its threshold fixed at 128 KiB,
	 * which freeing mapped blocks raises). */
	REQUIRE(mallopt(M_MMAP_THRESHOLD, 128 << 10) == 1);
	for (int i = 0; i < 8; i++) {
		main_block[i] = malloc(100 << 10);
		memset(main_block[i], 'h', 100 << 10);
	}
	mapped_block = malloc(1 << 20);
	memset(mapped_block, 'h', 1 << 20);
	REQUIRE(samepage_merge_any(sp, 1) == 0);
	CHECK_EQ_INT(samepage_merge_any_get(sp), 1);
	char *p = mmap(NULL, 64 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(p != MAP_FAILED);
	memset(p, 'a', 64 * PG);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 3) == 0);
	CHECK_EQ_U64(pages_mapping_pool(p, 64), 64); /* no madvise: merged all the same */
#ifndef SAMEPAGE_SANITIZE /* malloc is then the sanitizer's, with no arenas */
	/* the blocks of the arena and of the main heap kept out; the mapped
	 * one merged */
	CHECK(rd(sp, "pages_kept_malloc") >= 8 * 25 + 8 * 25);
	/* Kept pages are not volatile (they had rmap items, neither merged
	 * nor unshared, and doctor called them pages that change too fast). */
	printf("pages_volatile %lld, pages_kept_malloc %lld\n", rd(sp, "pages_volatile"),
	       rd(sp, "pages_kept_malloc"));
	CHECK(rd(sp, "pages_volatile") < rd(sp, "pages_kept_malloc"));
	for (int i = 0; i < 8; i++) {
		CHECK_EQ_U64(pages_mapping_pool(heap_block[i] + PG, 20), 0);
		CHECK_EQ_U64(pages_mapping_pool(main_block[i] + PG, 20), 0);
	}
	CHECK_EQ_U64(pages_mapping_pool(mapped_block + PG, 250), 250);
#endif
	/* A thread's stack is the C library's too: kept out (x86-64). */
#if !defined(SAMEPAGE_SANITIZE) && defined(__x86_64__) /* ASan may move buf off the stack */
	char *sb = (char *)(((uintptr_t)atomic_load(&stack_pages) + PG - 1) & ~(PG - 1));
	CHECK_EQ_U64(pages_mapping_pool(sb, 16), 0);
#endif
	atomic_store(&stack_state, 2);
	void *ret;
	pthread_join(st, &ret);
	CHECK_EQ_INT((int)(uintptr_t)ret, 's');
	for (size_t i = 0; i < 64 * PG; i += 513)
		REQUIRE(p[i] == 'a');
	/* A range made unmergeable stays so under merge-any. */
	REQUIRE(samepage_madvise(sp, p, 32 * PG, SAMEPAGE_UNMERGEABLE) == 0);
	REQUIRE(wait_scans(sp, 3) == 0);
	CHECK_EQ_U64(pages_mapping_pool(p, 32), 0);
	CHECK_EQ_U64(pages_mapping_pool(p + 32 * PG, 32), 32);
	REQUIRE(samepage_merge_any(sp, 0) == 0);
	CHECK_EQ_INT(samepage_merge_any_get(sp), 0);
	CHECK_EQ_U64(pages_mapping_pool(p, 64), 0);
	CHECK_EQ_INT(rd(sp, "pages_tracked"), 0);
	for (size_t i = 0; i < 64 * PG; i += 513)
		REQUIRE(p[i] == 'a');
	for (int i = 0; i < 8; i++) {
		free(heap_block[i]);
		free(main_block[i]);
	}
	free(mapped_block);
	samepage_close(sp);
}
