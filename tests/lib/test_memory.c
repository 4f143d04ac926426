// SPDX-License-Identifier: MIT
/*
 * test_memory.c - memory really comes back, measured outside the engine.
 *
 *  - 256 MiB of pages with 1024 distinct contents: at least 95% of the
 *    duplicate bytes are returned to the kernel (/proc/meminfo AnonPages +
 *    Shmem, system-wide), and the whole range costs few mappings (the runs
 *    of the pool stay contiguous);
 *  - when every merged page has been written, the pool pages nobody maps
 *    any more are reclaimed (Shmem goes back down);
 *  - scattered duplicates cannot exhaust vm.max_map_count: the engine
 *    skips merges past its budget, counts them, and the application can
 *    still map memory.
 */
#include "util.h"

#include <errno.h>
#include <stdint.h>

#define MiB (1024 * 1024ULL)

/* This process's memory as the kernel accounts it: its anonymous pages and
 * its share of shmem pages (the pool is shmem), from smaps_rollup.  The
 * system-wide /proc/meminfo figure is printed too, but other processes
 * move it. */
static long long footprint_kb(void)
{
	return proc_kb("/proc/self/smaps_rollup", "Pss_Anon") +
	       proc_kb("/proc/self/smaps_rollup", "Pss_Shmem");
}

static long long meminfo_kb(void)
{
	return proc_kb("/proc/meminfo", "AnonPages") + proc_kb("/proc/meminfo", "Shmem");
}

static int count_maps(void)
{
	long long n = procfs_count_maps("/proc/self/maps");
	REQUIRE(n >= 0);
	return (int)n;
}

static void fill(char *p, size_t i, uint64_t content)
{
	uint64_t *w = (uint64_t *)(p + i * PG);
	for (size_t k = 0; k < PG / 8; k++)
		w[k] = content * 0x9e3779b97f4a7c15ULL + k;
}

static void test_returned(void)
{
	const size_t n = 256 * MiB / PG, distinct = 1024;
	samepage_t *sp = open_fast();
	char *p = map_pages(n);
	for (size_t i = 0; i < n; i++)
		fill(p, i, i % distinct);
	int maps_before = count_maps();
	long long before = footprint_kb(), sys_before = meminfo_kb();
	CHECK_EQ_INT(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE), 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 2) == 0);
	long long after = footprint_kb(), sys_after = meminfo_kb();
	long long dup_kb = (long long)(n - distinct) * 4;
	printf(
	    "256 MiB, %zu contents: Pss_Anon+Pss_Shmem %lld -> %lld kB, returned %lld kB of %lld "
	    "duplicate kB (%.1f%%); system AnonPages+Shmem fell %lld kB; pages_sharing %lld, "
	    "mappings %d -> %d, metadata %lld B/page\n",
	    distinct, before, after, before - after, dup_kb, 100.0 * (before - after) / dup_kb,
	    sys_before - sys_after, rd(sp, "pages_sharing"), maps_before, count_maps(),
	    rd(sp, "metadata_bytes_per_page"));
	CHECK_CMP(before - after, >=, dup_kb * 95 / 100, long long, "%lld");
	CHECK_EQ_INT(rd(sp, "pages_shared"), (long long)distinct);
	CHECK_EQ_INT(rd(sp, "pages_sharing"), (long long)(n - distinct));
	/* One mapping per repeat of the image, give or take the ends. */
	CHECK_CMP(count_maps() - maps_before, <=, (int)(n / distinct) * 2 + 4, int, "%d");
	CHECK_LE_U64(rd(sp, "metadata_bytes_per_page"), 16);
	for (size_t i = 0; i < n; i += 61) {
		uint64_t *w = (uint64_t *)(p + i * PG);
		REQUIRE(w[5] == (i % distinct) * 0x9e3779b97f4a7c15ULL + 5);
	}

	/* Write every page with something unique: each gets a private copy,
	 * nothing can merge again, and the pool empties. */
	for (size_t i = 0; i < n; i++)
		*(uint64_t *)(p + i * PG) = ~(uint64_t)i;
	REQUIRE(wait_scans(sp, 2) == 0); /* the scan under way may be past them */
	CHECK_EQ_INT(rd(sp, "pages_shared"), 0);
	CHECK_EQ_INT(rd(sp, "pool_pages"), 0);
	CHECK_GE_U64(rd(sp, "pool_pages_reclaimed"), distinct);
	CHECK_CMP(footprint_kb(), >=, before * 95 / 100, long long, "%lld"); /* all private again */
	munmap(p, n * PG);
	samepage_close(sp);
}

static void test_map_budget(void)
{
	const size_t n = 60000; /* 30000 scattered duplicates: 60000 mappings */
	samepage_t *sp = open_fast();
	char *p = map_pages(n);
	for (size_t i = 0; i < n; i++)
		fill(p, i, i % 2 ? i : 7); /* even pages alike, odd pages unique */
	CHECK_EQ_INT(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE), 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 3) == 0);
	long long max = rd(sp, "max_map_count"), skipped = rd(sp, "merges_skipped_map_budget");
	int maps = count_maps();
	printf("scattered: pages_sharing %lld, merges skipped %lld, mappings %d of %lld\n",
	       rd(sp, "pages_sharing"), skipped, maps, max);
	CHECK(skipped > 0);
	CHECK(rd(sp, "pages_sharing") > 0);
	/* What would let them all merge: a mapping of the pool and a split
	 * for each of the 30000 duplicates, more than the limit today. */
	long long needed = rd(sp, "max_map_count_needed");
	printf("max_map_count_needed %lld, metadata_bytes %lld\n", needed,
	       rd(sp, "metadata_bytes"));
	CHECK_CMP(needed, >, max, long long, "%lld");
	CHECK_CMP(needed, >=, (long long)n, long long, "%lld");
	/* The mappings' slab is the engine's metadata: ~240 bytes for each
	 * mapping of the pool and for the split it makes. */
	CHECK_CMP(rd(sp, "metadata_bytes"), >=, (long long)pool_mappings() * 2 * 240, long long,
		  "%lld");
	/* Within the budget, give or take the mappings other threads (the
	 * sanitizer's runtime, say) made since the engine last counted. */
	CHECK_CMP(maps, <=, (int)(max - max / 8) + 64, int, "%d");
	/* The application can still map memory of its own. */
	void *m[2000];
	int ok = 0;
	for (int k = 0; k < 2000; k++) {
		m[k] = mmap(NULL, PG, k % 2 ? PROT_READ : PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ok += m[k] != MAP_FAILED;
	}
	CHECK_EQ_INT(ok, 2000);
	for (int k = 0; k < 2000; k++)
		if (m[k] != MAP_FAILED)
			munmap(m[k], PG);
	for (size_t i = 0; i < n; i += 2)
		REQUIRE(((uint64_t *)(p + i * PG))[1] == 7 * 0x9e3779b97f4a7c15ULL + 1);
	munmap(p, n * PG);
	samepage_close(sp);
}

int main(void)
{
	test_returned();
	test_map_budget();
	return check_report("memory");
}
