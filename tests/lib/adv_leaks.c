// SPDX-License-Identifier: MIT
/*
 * adv_leaks.c - adversarial tests: ids, metadata and pool pages are given
 * back.
 *
 * Each test runs in its own process under a hang guard (adv_main.c,
 * adv_util.h); the list of tests and their hang limits is adversarial.def.
 */
#include "adv_util.h"

/* Regression: page ids are reused: registering and freeing ranges many
 * times (more than 2^32 pages over the process's life) never makes
 * samepage_madvise()/samepage_alloc() fail with ENOMEM. */
void test_page_id_reuse(void)
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

/* Regression: registering a large range that is never touched costs no
 * per-page metadata until pages are touched; allowed here: the unstable
 * index's 2 to 4 bytes per page, plus 1 MiB. */
void test_sparse_range_metadata(void)
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

/* Regression: an engine's scanner stack has a PROT_NONE guard page, and
 * samepage_close() gave the stack back to the library's arena with the
 * guard still PROT_NONE: the library's next allocation there (another
 * engine's metadata) crashed (seen in lib.adv_two_engines under ASan).
 * Engine A is closed while B lives; B then registers 600 separate ranges,
 * whose metadata takes more of the arena than A's stack held. */
void test_reopen_reuses_stack(void)
{
	samepage_t *a = open_fast(), *b = open_fast();
	char *pa = map_pages(16);
	memset(pa, 'a', 16 * PG);
	REQUIRE(samepage_madvise(a, pa, 16 * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(a, "run", "1");
	REQUIRE(wait_scans(a, 1) == 0);
	samepage_close(a);
	/* Separate ranges: every other page of one mapping. */
	const size_t n = 600;
	char *p = map_pages(2 * n);
	for (size_t i = 0; i < n; i++) {
		memset(p + 2 * i * PG, 'b', PG);
		REQUIRE(samepage_madvise(b, p + 2 * i * PG, PG, SAMEPAGE_MERGEABLE) == 0);
		check_tick();
	}
	wr(b, "run", "1");
	REQUIRE(wait_scans(b, 2) == 0);
	CHECK_EQ_INT(rd(b, "pages_tracked"), (long long)n);
	CHECK(rd(b, "pages_sharing") > 0);
	for (size_t i = 0; i < n; i++)
		REQUIRE(p[2 * i * PG] == 'b');
	samepage_close(b);
}
