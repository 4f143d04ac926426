// SPDX-License-Identifier: MIT
/*
 * test_shmem_thp.c - a local engine's pool never holds huge pages, so its
 * freed pages go back to the kernel whatever shmem's THP setting
 * (shmem_thp.sh sets shmem_enabled and runs this).
 *
 * Regression: a range the application made MADV_HUGEPAGE (QEMU's guest
 * RAM) passed the promise to its merged mappings of the pool; with
 * shmem_enabled "advise" or "always" khugepaged collapsed the pool's
 * pages into huge ones through them, and the holes of pages freed since
 * came back as zeros: 64 MiB of pairs merged onto a 32 MiB pool, 7/8 of
 * the contents then written away, the pool went back from 4 MiB to 32
 * MiB.  (And with "always" every write to the pool file allocated huge
 * pages.)  The pool's size is its memfd's allocated blocks.
 *
 * Regression (registered_again): with shmem_enabled "always" a merged
 * page's mapping of the pool is MADV_NOHUGEPAGE (ours, not the
 * application's).  A range registered again after merging (an mremap's
 * new place, merge-any) read that flag from /proc/self/smaps as the
 * application's promise, and the pages' copies kept it at the unmerge:
 * the range stayed split, one mapping per merged run, and the
 * application's mremap of it failed with EFAULT (the soak's "mremap ...
 * to grow by a page: Bad address").
 */
#include "check.h"
#include "util.h"

#include <dirent.h>
#include <sys/stat.h>

/* The bytes the kernel holds for this process's local pool (its memfd). */
static long long pool_bytes(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long long bytes = -1;
	REQUIRE(d);
	while ((e = readdir(d))) {
		char path[300], target[256];
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		ssize_t n = readlink(path, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		struct stat st;
		if (strstr(target, "memfd:samepage-pool") && stat(path, &st) == 0)
			bytes = (long long)st.st_blocks * 512;
	}
	closedir(d);
	return bytes;
}

static void registered_again(void)
{
	const size_t n = 256;
	samepage_t *sp = open_fast();
	char *p = mmap(NULL, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(p != MAP_FAILED);
	for (size_t i = 0; i < n; i++) { /* every 4th page a pair with the next */
		memset(p + i * PG, 0, PG);
		snprintf(p + i * PG, 64, "page %zu", i % 4 == 1 ? i - 1 : i);
	}
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	for (int k = 0; k < 100 && rd(sp, "pages_sharing") < (long long)(n / 4); k++)
		REQUIRE(wait_scans(sp, 1) == 0);
	CHECK_EQ_INT(rd(sp, "pages_sharing"), (long long)(n / 4));
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_UNMERGEABLE) == 0);
	int nohuge, maps = mappings_in(p, n * PG, &nohuge);
	printf("after the unmerge: %d mappings, %d of them MADV_NOHUGEPAGE\n", maps, nohuge);
	CHECK_EQ_INT(nohuge, 0);
	CHECK_EQ_INT(maps, 1);
	char *q = mremap(p, n * PG, (n + 1) * PG, MREMAP_MAYMOVE);
	CHECK(q != MAP_FAILED);
	if (q != MAP_FAILED) {
		for (size_t i = 0; i < n; i++) {
			char want[64];
			snprintf(want, sizeof(want), "page %zu", i % 4 == 1 ? i - 1 : i);
			CHECK(!strcmp(q + i * PG, want));
		}
		munmap(q, (n + 1) * PG);
	}
	samepage_close(sp);
}

int main(void)
{
	registered_again();

	const size_t n = (64 << 20) / PG, half = n / 2;
	samepage_t *sp = open_fast();
	char *p = mmap(NULL, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(p != MAP_FAILED);
	REQUIRE(madvise(p, n * PG, MADV_HUGEPAGE) == 0);
	for (size_t i = 0; i < half; i++) { /* pairs: page i and page half + i */
		memset(p + i * PG, 0, PG);
		snprintf(p + i * PG, 64, "content %zu", i);
		memcpy(p + (half + i) * PG, p + i * PG, PG);
	}
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	for (int k = 0; k < 100 && rd(sp, "pages_sharing") < (long long)half; k++)
		REQUIRE(wait_scans(sp, 1) == 0);
	CHECK_EQ_INT(rd(sp, "pages_sharing"), (long long)half);
	long long merged = pool_bytes();
	printf("pool after merging: %lld KiB for %zu KSM pages\n", merged >> 10, half);
	CHECK_CMP(merged, <=, (long long)(half * PG) + (2 << 20), long long, "%lld");

	/* 7 contents of 8 written away in both copies: their KSM pages go. */
	for (size_t i = 0; i < half; i++)
		if (i % 8) {
			p[i * PG] = 'x';
			p[(half + i) * PG] = 'y';
		}
	REQUIRE(wait_scans(sp, 3) == 0);
	long long kept = (long long)(half / 8) * PG, most = 0;
	/* khugepaged scans every 10 ms here (shmem_thp.sh): it has had many
	 * passes over these mappings within the 5 s. */
	for (int t = 0; t < 50; t++) {
		long long b = pool_bytes();
		most = b > most ? b : most;
		usleep(100000);
	}
	printf("pool after the writes: at most %lld KiB in 5 s for %lld KiB of KSM pages\n",
	       most >> 10, kept >> 10);
	CHECK_CMP(most, <=, kept + kept / 4 + (1 << 20), long long, "%lld");
	for (size_t i = 0; i < n; i += 509)
		REQUIRE(p[i * PG] == (i % half % 8 ? (i < half ? 'x' : 'y') : 'c'));
	samepage_close(sp);
	return check_report("shmem_thp");
}
