// SPDX-License-Identifier: MIT
/*
 * test_merge.c - the kernel selftests' ksm_tests -M, -U and -Z scenarios,
 * and the max_page_sharing oracle, against libsamepage.
 */
#include "util.h"

#include <errno.h>
#include <sys/resource.h>
#include <sys/wait.h>

/* -M: page_count identical pages merge into the oracle's counts, and the
 * memory really goes back (smaps_rollup Anonymous). */
static void test_merge(size_t npages, const char *mps)
{
	samepage_t *sp = open_fast();
	wr(sp, "max_page_sharing", mps);
	char *p = map_pages(npages);
	memset(p, '*', npages * PG);
	long long before = anon_kb();
	CHECK_EQ_INT(samepage_madvise(sp, p, npages * PG, SAMEPAGE_MERGEABLE), 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 2) == 0);
	check_ksm_pages_count(sp, (long long)npages);
	/* A run that needs several KSM pages maps them as a strip: the dups
	 * side by side in the pool, one mapping for a page of each (issue
	 * 13.2), not one mapping per page. */
	long long shared = rd(sp, "pages_shared"), maps = pool_mappings();
	if (shared >= 2)
		CHECK_CMP(maps, <=, (long long)npages / shared + 2, long long, "%lld");
	long long after = anon_kb();
	long long saved_kb = (rd(sp, "pages_sharing")) * 4;
	/* What the engine says it saved, the kernel took back (within 5%;
	 * below 512 pages the engine's own metadata is in the noise). */
#ifndef SAMEPAGE_SANITIZE /* the sanitizer's shadow memory moves Anonymous */
	if (npages >= 512)
#else
	if (0)
#endif
		CHECK_CMP(before - after, >=, saved_kb * 95 / 100, long long, "%lld");
	for (size_t i = 0; i < npages * PG; i += 997)
		REQUIRE(p[i] == '*');
	munmap(p, npages * PG);
	samepage_close(sp);
}

/* -U: after a write to each of two merged pages and one more full scan,
 * nothing is shared any more; the writes are there. */
static void test_unmerge(void)
{
	samepage_t *sp = open_fast();
	char *p = map_pages(2);
	memset(p, '*', 2 * PG);
	CHECK_EQ_INT(samepage_madvise(sp, p, 2 * PG, SAMEPAGE_MERGEABLE), 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 2) == 0);
	CHECK_EQ_INT(rd(sp, "pages_shared"), 1);
	CHECK_EQ_INT(rd(sp, "pages_sharing"), 1);
	p[0] = '-';
	p[PG] = '+';
	REQUIRE(wait_scans(sp, 2) == 0); /* the scan under way may be past them */
	CHECK_EQ_INT(rd(sp, "pages_shared"), 0);
	CHECK_EQ_INT(rd(sp, "pages_sharing"), 0);
	CHECK(p[0] == '-' && p[PG] == '+' && p[1] == '*' && p[PG + 1] == '*');
	munmap(p, 2 * PG);
	samepage_close(sp);
}

/* -Z: zero pages with use_zero_pages 1 go to ksm_zero_pages only; with 0
 * they merge like any content. */
static void test_zero(int use_zero)
{
	const size_t n = 10;
	samepage_t *sp = open_fast();
	wr(sp, "use_zero_pages", use_zero ? "1" : "0");
	char *p = map_pages(n);
	for (size_t i = 0; i < n; i++)
		p[i * PG] = 0; /* present, all zero */
	CHECK_EQ_INT(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE), 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 2) == 0);
	if (use_zero) {
		CHECK_EQ_INT(rd(sp, "pages_shared"), 0);
		CHECK_EQ_INT(rd(sp, "pages_sharing"), 0);
		CHECK_EQ_INT(rd(sp, "ksm_zero_pages"), (long long)n);
	} else {
		check_ksm_pages_count(sp, (long long)n);
		CHECK_EQ_INT(rd(sp, "ksm_zero_pages"), 0);
	}
	for (size_t i = 0; i < n * PG; i += 331)
		REQUIRE(p[i] == 0);
	p[5] = 7; /* a write after a zero merge is a normal write */
	CHECK(p[5] == 7);
	munmap(p, n * PG);
	samepage_close(sp);
}

/* run = 2 unmerges everything and resets full_scans. */
static int count_any_mapping(const struct procfs_map *m, void *arg)
{
	(void)m;
	++*(long long *)arg;
	return 0;
}

static void test_run2(void)
{
	samepage_t *sp = open_fast();
	char *p = map_pages(64);
	for (size_t i = 0; i < 64; i++)
		memset(p + i * PG, (int)(i % 4), PG);
	CHECK_EQ_INT(samepage_madvise(sp, p, 64 * PG, SAMEPAGE_MERGEABLE), 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 2) == 0);
	CHECK_EQ_INT(rd(sp, "pages_shared"), 4);
	CHECK_EQ_INT(rd(sp, "pages_sharing"), 60);
	CHECK_EQ_INT(samepage_write(sp, "max_page_sharing", "10"), -EBUSY);
	long long maps = rd(sp, "map_count"), slab = rd(sp, "metadata_bytes");
	wr(sp, "run", "2");
	CHECK_EQ_INT(rd(sp, "full_scans"), 0);
	/* The mappings the merges made are gone, and counted gone, though no
	 * full scan comes to count them again (was: 30 more, and their slab
	 * in metadata_bytes, until run=1). */
	long long all = 0;
	REQUIRE(procfs_maps("/proc/self/maps", count_any_mapping, &all) == 0);
	CHECK_CMP(rd(sp, "map_count"), <=, all + 2, long long, "%lld");
	CHECK_CMP(rd(sp, "map_count"), <, maps - 16, long long, "%lld");
	CHECK_CMP(rd(sp, "metadata_bytes"), <, slab, long long, "%lld");
	CHECK_EQ_INT(rd(sp, "pages_shared"), 0);
	CHECK_EQ_INT(rd(sp, "pages_sharing"), 0);
	CHECK_EQ_INT(rd(sp, "pool_pages"), 0);
	CHECK_EQ_INT(samepage_write(sp, "max_page_sharing", "10"), 0);
	for (size_t i = 0; i < 64; i++)
		REQUIRE(p[i * PG + 100] == (char)(i % 4));
	munmap(p, 64 * PG);
	samepage_close(sp);
}

/* The scanner thread's minor faults so far (field 10 of its stat file):
 * the faults it takes for madvise(MADV_POPULATE_READ) count there. */
static long long scanner_minflt(void)
{
	char path[64], buf[1024];
	int tid = procfs_find_comm("/proc/self/task", "samepage-ksmd");
	REQUIRE(tid > 0);
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	REQUIRE(procfs_read(path, buf, sizeof(buf)) == 0);
	const char *f = strrchr(buf, ')');
	REQUIRE(f);
	long long minflt = -1;
	REQUIRE(sscanf(f + 1, " %*c %*d %*d %*d %*d %*d %*u %lld", &minflt) == 1);
	return minflt;
}

/* Merged runs are mapped (read) the way the kernel's fault-around maps a
 * file: 16 pages a fault, not one.  The merge maps the pool over a run and
 * reads its pages in; it used to register the new mapping for the merge
 * windows' userfaultfd write-protection first, and the kernel does no
 * fault-around in such a mapping: a fault per merged page, 14-20% of a
 * merging scan's CPU (BENCHMARKS.md). */
static void test_populate_fault_around(void)
{
	const size_t n = 8192;
	char text[32];
	long long around = procfs_read("/sys/kernel/debug/fault_around_bytes", text, sizeof(text))
			       ? -1
			       : atoll(text);
	if (around > 0 && around < 16 * (long long)PG) {
		printf("# fault_around_bytes is %lld: no fault-around to see\n", around);
		return;
	}
	samepage_t *sp = open_fast();
	char *p = map_pages(n);
	memset(p, 'f', n * PG);
	CHECK_EQ_INT(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE), 0);
	long long before = scanner_minflt();
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 2) == 0);
	CHECK_EQ_INT(rd(sp, "pages_sharing"), (long long)(n - n / 256));
	/* Every merged page is mapped (pagemap: present, a file page). */
	CHECK_EQ_INT((long long)pages_mapping_pool(p, n), (long long)n);
	long long faults = scanner_minflt() - before;
	printf("# %zu pages merged: %lld minor faults in the scanner\n", n, faults);
	CHECK_CMP(faults, <, (long long)n / 4, long long, "%lld");
	for (size_t i = 0; i < n * PG; i += 1009)
		REQUIRE(p[i] == 'f');
	munmap(p, n * PG);
	samepage_close(sp);
}

/* Regression: a strip below a region scanned before it.  Regions are
 * scanned in the order they were registered (under merge-any the stack,
 * at the top of the address space, is first), and the end of the last run
 * found too short to be a strip, an address, kept every run below it from
 * being one for the rest of the full scan: one mapping per merged page
 * (600 here, 51,045 for 200 MiB under `ksmctl --user run`). */
static void test_strip_below_scanned_region(void)
{
	const size_t n = 600, hi = 8;
	samepage_t *sp = open_fast();
	char *p = map_pages(n + 8 + hi), *top = p + (n + 8) * PG;
	memset(p, '*', n * PG);
	for (size_t i = 0; i < hi; i++)
		memset(top + i * PG, 'a' + (int)i, PG); /* unique pages: no run */
	CHECK_EQ_INT(samepage_madvise(sp, top, hi * PG, SAMEPAGE_MERGEABLE), 0);
	CHECK_EQ_INT(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE), 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 2) == 0);
	check_ksm_pages_count(sp, (long long)n);
	long long shared = rd(sp, "pages_shared"), maps = pool_mappings();
	CHECK_CMP(shared, >=, 2, long long, "%lld");
	CHECK_CMP(maps, <=, (long long)n / shared + 2, long long, "%lld");
	for (size_t i = 0; i < n * PG; i += 997)
		REQUIRE(p[i] == '*');
	munmap(p, (n + 8 + hi) * PG);
	samepage_close(sp);
}

/* Runs shorter than max_page_sharing, many of one content, each after a
 * page of its own: malloc'd blocks (a header page, then the block).  The
 * kernel maps them onto one KSM page after another, a mapping per page
 * here: 64 blocks of 48 pages took 3,072 mappings.  Once the contents
 * have merged a run's worth and their KSM pages have no room for the
 * next, the runs map lap strips: a mapping or two per block.  The memory
 * still goes back, and the counters hold together. */
static void test_lap_strips(void)
{
	const size_t blocks = 64, run = 48, n = blocks * (run + 1);
	samepage_t *sp = open_fast();
	char *p = map_pages(n);
	for (size_t b = 0; b < blocks; b++) {
		char *h = p + b * (run + 1) * PG;
		memset(h, 'h', PG);
		memcpy(h, &b, sizeof(b)); /* a header of its own */
		memset(h + PG, '=', run * PG);
	}
	long long before = anon_kb();
	CHECK_EQ_INT(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE), 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 3) == 0);
	long long shared = rd(sp, "pages_shared"), sharing = rd(sp, "pages_sharing");
	long long maps = pool_mappings(), after = anon_kb();
	printf("lap strips: %zu blocks of %zu pages: %lld mappings, pages_shared %lld, "
	       "pages_sharing %lld\n",
	       blocks, run, maps, shared, sharing);
	CHECK_EQ_INT(shared + sharing, (long long)(blocks * run));
	CHECK_EQ_U64(pages_mapping_pool(p, n), blocks * run);
	/* The kernel's way until the first KSM page is full (256 / 48 = 5
	 * blocks), then a lap strip: at most two mappings a block. */
	CHECK_CMP(maps, <=, (long long)(6 * run + 2 * blocks), long long, "%lld");
	CHECK_CMP(sharing, >=, (long long)(blocks * run * 8 / 10), long long, "%lld");
#ifndef SAMEPAGE_SANITIZE /* the sanitizer's shadow memory moves Anonymous */
	CHECK_CMP(before - after, >=, sharing * 4 * 95 / 100, long long, "%lld");
#else
	(void)before, (void)after;
#endif
	for (size_t b = 0; b < blocks; b++) {
		const char *h = p + b * (run + 1) * PG;
		size_t got;
		memcpy(&got, h, sizeof(got));
		REQUIRE(got == b && h[PG - 1] == 'h' && h[PG] == '=' &&
			h[(run + 1) * PG - 1] == '=');
	}
	p[3 * PG] = 'w'; /* copy-on-write inside a lap */
	CHECK(p[3 * PG] == 'w' && p[2 * PG] == '=' && p[4 * PG] == '=');
	munmap(p, n * PG);
	samepage_close(sp);
}

#ifndef SAMEPAGE_SANITIZE /* the address-space tests' helpers */
/* 64 pages of '#' at p merged fast: pages_sharing after three full scans,
 * or -1. */
static long long merge_64(samepage_t *sp, char *p)
{
	long long sharing = 0;
	memset(p, '#', 64 * PG);
	if (samepage_write(sp, "pages_to_scan", "100000") ||
	    samepage_write(sp, "sleep_millisecs", "0") ||
	    samepage_madvise(sp, p, 64 * PG, SAMEPAGE_MERGEABLE) ||
	    samepage_write(sp, "run", "1") || wait_scans(sp, 3) ||
	    samepage_read_number(sp, "pages_sharing", &sharing))
		return -1;
	return sharing;
}
#endif

/* A process whose address space is limited (RLIMIT_AS, what `ulimit -v`
 * and systemd's LimitAS= set; valgrind's is 32 GiB): the engine maps what
 * it can of its pool and merges.  Before, samepage_open() failed for the
 * pool's 64 GiB view, and no program linked with the library ran under
 * valgrind.  (Not under the sanitizers: their shadow memory needs far
 * more address space than any such limit.) */
static void test_address_space_limit(void)
{
#ifndef SAMEPAGE_SANITIZE
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		struct rlimit rl = {8ULL << 30, 8ULL << 30};
		samepage_t *sp;
		if (setrlimit(RLIMIT_AS, &rl) || samepage_open(&sp))
			_exit(2);
		char *p = map_pages(64);
		long long sharing = merge_64(sp, p);
		if (sharing < 0)
			_exit(3);
		p[5 * PG] = 'w'; /* copy-on-write still works */
		_exit(sharing == 63 && p[5 * PG] == 'w' && p[6 * PG] == '#' ? 0 : 4);
	}
	int st;
	REQUIRE(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st));
	CHECK_EQ_INT(WEXITSTATUS(st), 0);
#endif
}

#ifndef SAMEPAGE_SANITIZE
/* The address space this process maps (VmSize), in bytes. */
static unsigned long long vm_size(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	unsigned long long kb = 0;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmSize: %llu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb << 10;
}
#endif

/* Under an address-space limit the program keeps nearly all of it
 * (RELIABILITY.md 79).  With `room` bytes left under the limit, an
 * engine opens, takes at most 1/8 of the limit (its pool view, its index,
 * the library's arena), leaves a mapping of 3/4 of the room possible, and
 * merges.  Before, its pool's view took the largest power of two that
 * fitted (4 GiB here of 8), its index 387 MiB and the arena 1 GiB: 5 GiB
 * could not be mapped, and with 1 GiB of room the engine did not open.
 * Run first in main(): the arena, kept for the process's life, is then
 * made under the limit too.  (Not under the sanitizers: their shadow
 * memory needs far more address space than any such limit.) */
static void test_address_space_left(unsigned long long room)
{
#ifndef SAMEPAGE_SANITIZE
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		unsigned long long before = vm_size(), limit = before + room;
		struct rlimit rl = {limit, limit};
		samepage_t *sp;
		if (!before || setrlimit(RLIMIT_AS, &rl))
			_exit(2);
		int err = samepage_open(&sp);
		if (err) {
			printf("# %llu MiB of room: samepage_open: %s\n", room >> 20,
			       samepage_strerror(err));
			fflush(stdout);
			_exit(3);
		}
		unsigned long long taken = vm_size() - before;
		printf("# %llu MiB of room: the engine took %llu MiB\n", room >> 20, taken >> 20);
		fflush(stdout);
		if (taken > limit / 8)
			_exit(4);
		size_t big = (size_t)(room / 4 * 3);
		void *m =
		    mmap(NULL, big, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (m == MAP_FAILED)
			_exit(5);
		munmap(m, big);
		char *p = map_pages(64);
		long long sharing = merge_64(sp, p);
		if (sharing < 0)
			_exit(6);
		_exit(sharing == 63 && p[6 * PG] == '#' ? 0 : 7);
	}
	int st;
	REQUIRE(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st));
	CHECK_EQ_INT(WEXITSTATUS(st), 0);
#else
	(void)room;
#endif
}

int main(void)
{
	test_address_space_left(8ULL << 30);
	test_address_space_left(1ULL << 30);
	test_merge(10, "256");
	test_merge(1000, "256");  /* n % mps not 0 or 1: a chain of dups */
	test_merge(257, "256");	  /* n % mps == 1: one page stays unshared */
	test_merge(512, "256");	  /* n % mps == 0 */
	test_merge(100, "2");	  /* the smallest max_page_sharing */
	test_merge(16384, "256"); /* 64 MiB: 64 dups, 256 mappings (was 16,384) */
	test_merge(1001, "3");	  /* 1000 pages in 334 dups, the last page alone */
	test_unmerge();
	test_zero(0);
	test_zero(1);
	test_run2();
	test_populate_fault_around();
	test_strip_below_scanned_region();
	test_lap_strips();
	test_address_space_limit();
	return check_report("merge");
}
