// SPDX-License-Identifier: MIT
/*
 * adv_addrspace.c - adversarial tests: the application stays in charge of
 * its address space.
 *
 * Each test runs in its own process under a hang guard (adv_main.c,
 * adv_util.h); the list of tests and their hang limits is adversarial.def.
 */
#include "../../lib/internal.h"
#include "adv_util.h"

#include <elf.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/userfaultfd.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

/* Regression test (failed at 2be579c, passes since samepage_madvise() calls
 * engine_enter(), which syncs first).  Was: munmap, mmap at the same address (address reuse), then
 * samepage_madvise(MERGEABLE) of the new range: the registration is lost.
 * The munmap is queued on the forget list (engine.c:142) and applied only
 * at the next engine_sync(), after regions_mark() has re-marked the same
 * pages (region.c:339-358 does not sync first), so the new range is
 * forgotten and never merges. */
void test_reregister_after_reuse(void)
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

/* Regression: many munmaps between two syncs are all remembered (the
 * forget list grows), so memory mapped again at the same addresses and
 * never marked mergeable is never tracked or merged. */
void test_forget_list_overflow(void)
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

/* Regression: mremap() of engine A's range keeps it registered with A
 * only; engine B never tracks memory it was not given. */
void test_mremap_two_engines(void)
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

/* mremap() over the regions of nine engines: each engine's part stays
 * mergeable with it where it moves to.  The wrapper held eight engines at
 * most: the ninth's merged pages were copied and its registration left
 * at the old address (RELIABILITY.md, "Seen and left alone" until the
 * twenty-second session). */
void test_mremap_nine_engines(void)
{
	enum { ENGINES = 9, EACH = 8 };
	samepage_t *sp[ENGINES];
	char *p = map_pages(ENGINES * EACH);
	for (int k = 0; k < ENGINES; k++) {
		sp[k] = open_fast();
		memset(p + k * EACH * PG, 'a' + k, EACH * PG);
		REQUIRE(samepage_madvise(sp[k], p + k * EACH * PG, EACH * PG, SAMEPAGE_MERGEABLE) ==
			0);
		wr(sp[k], "run", "1");
	}
	for (int k = 0; k < ENGINES; k++)
		REQUIRE(wait_scans(sp[k], 2) == 0);
	CHECK_EQ_U64(pages_mapping_pool(p, ENGINES * EACH), ENGINES * EACH);
	char *dst = mmap(NULL, ENGINES * EACH * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(dst != MAP_FAILED);
	char *q =
	    mremap(p, ENGINES * EACH * PG, ENGINES * EACH * PG, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	REQUIRE(q == dst);
	for (int k = 0; k < ENGINES; k++)
		REQUIRE(wait_scans(sp[k], 2) == 0);
	int moved = 0;
	for (int k = 0; k < ENGINES; k++) {
		size_t merged = pages_mapping_pool(q + k * EACH * PG, EACH);
		long long tracked = rd(sp[k], "pages_tracked");
		if (merged == EACH && tracked == EACH)
			moved++;
		else
			printf("# engine %d: %zu of %d merged where they moved, %lld tracked\n", k,
			       merged, EACH, tracked);
		for (size_t i = 0; i < EACH * PG; i += 97)
			REQUIRE(q[k * EACH * PG + i] == 'a' + k);
	}
	CHECK_EQ_INT(moved, ENGINES);
	for (int k = 0; k < ENGINES; k++)
		samepage_close(sp[k]);
}

/* RELIABILITY.md 52: an unmerge that cannot make the merged pages
 * private (here RLIMIT_AS leaves no room for its scratch mapping; the same
 * with vm.max_map_count or RLIMIT_MEMLOCK) forgot them all the same: their
 * pool pages were punched under them, and they read zeros.  Now the call
 * fails (MADV_UNMERGEABLE, or mremap with ENOMEM) and those pages keep
 * their contents, merged still. */
static size_t pairs_wrong(const char *p, size_t n)
{
	size_t bad = 0;
	for (size_t i = 0; i < n; i++)
		for (size_t b = 0; b < PG; b += 61)
			if ((unsigned char)p[i * PG + b] != (unsigned char)(i / 2 + 1)) {
				bad++;
				break;
			}
	return bad;
}

static samepage_t *merged_pairs(char **out, size_t n)
{
	samepage_t *sp = open_fast();
	char *p = map_pages(n + 1); /* and a neighbour: a grown range must move */
	for (size_t i = 0; i < n; i++)
		memset(p + i * PG, (int)(i / 2 + 1), PG); /* pairs of one content */
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 3) == 0);
	REQUIRE(pages_mapping_pool(p, n) == n);
	wr(sp, "run", "0");
	*out = p;
	return sp;
}

/* RLIMIT_AS at what the process maps now, plus a little. */
static struct rlimit tight_as(size_t slack)
{
	struct rlimit old, lim;
	REQUIRE(getrlimit(RLIMIT_AS, &old) == 0);
	lim = old;
	lim.rlim_cur = (rlim_t)(proc_kb("/proc/self/status", "VmSize") * 1024 + (long long)slack);
	REQUIRE(setrlimit(RLIMIT_AS, &lim) == 0);
	return old;
}

void test_unmerge_failed_keeps_contents(void)
{
	const size_t n = 256;
	char *p;
	samepage_t *sp = merged_pairs(&p, n);
	struct rlimit old = tight_as(n * PG / 2);
	int err = samepage_madvise(sp, p, n * PG, SAMEPAGE_UNMERGEABLE);
	REQUIRE(setrlimit(RLIMIT_AS, &old) == 0);
	size_t bad = pairs_wrong(p, n);
	printf("# MADV_UNMERGEABLE under RLIMIT_AS: %d (%s), %zu of %zu pages wrong, %zu still "
	       "merged\n",
	       err, strerror(-err), bad, n, pages_mapping_pool(p, n));
	CHECK_EQ_U64(bad, 0);
	/* Once there is room, the unmerge goes through. */
	CHECK_EQ_INT(samepage_madvise(sp, p, n * PG, SAMEPAGE_UNMERGEABLE), 0);
	CHECK_EQ_U64(pages_mapping_pool(p, n), 0);
	CHECK_EQ_U64(pairs_wrong(p, n), 0);
	samepage_close(sp);

	/* An mremap that must move: the range must first be one mapping
	 * again. */
	sp = merged_pairs(&p, n);
	old = tight_as(n * PG / 2);
	char *q = mremap(p, n * PG, (n + 1) * PG, MREMAP_MAYMOVE);
	int e = errno;
	REQUIRE(setrlimit(RLIMIT_AS, &old) == 0);
	if (q != MAP_FAILED)
		p = q;
	bad = pairs_wrong(p, n);
	printf("# mremap under RLIMIT_AS: %s, %zu of %zu pages wrong\n",
	       q == MAP_FAILED ? strerror(e) : "moved", bad, n);
	CHECK_EQ_U64(bad, 0);
	samepage_close(sp);

	/* run = 2: it fails as the kernel's does (run back to 0). */
	sp = merged_pairs(&p, n);
	old = tight_as(n * PG / 2);
	err = samepage_write(sp, "run", "2");
	REQUIRE(setrlimit(RLIMIT_AS, &old) == 0);
	bad = pairs_wrong(p, n);
	printf("# run=2 under RLIMIT_AS: %d (%s), run %lld, %zu of %zu pages wrong\n", err,
	       strerror(-err), rd(sp, "run"), bad, n);
	CHECK_EQ_U64(bad, 0);
	CHECK(err == 0 || rd(sp, "run") == 0);
	wr(sp, "run", "2");
	CHECK_EQ_U64(pages_mapping_pool(p, n), 0);
	CHECK_EQ_U64(pairs_wrong(p, n), 0);
	samepage_close(sp);
}

/* The same for mbind (its merged pages are copied first), over two
 * regions registered the upper one first, one page that is not merged
 * between them: the pages still merged after the failed copy were looked
 * up in address order, the regions' order is not, and the lower region's
 * pages were forgotten (a review of 52's first version; 64 of 64 read
 * zeros). */
long mbind(void *addr, unsigned long len, int mode, const unsigned long *nodes,
	   unsigned long maxnode, unsigned flags);

void test_mbind_failed_keeps_contents(void)
{
	const size_t n = 64; /* pages a half */
	samepage_t *sp = open_fast();
	char *p = map_pages(2 * n + 2), *hi = p + (n + 1) * PG;
	for (size_t i = 0; i < n; i++) {
		memset(p + i * PG, (int)(i / 2 + 1), PG);
		memset(hi + i * PG, (int)(i / 2 + 101), PG);
	}
	memset(p + n * PG, 0xEE, PG); /* unique: two spans of the pool */
	REQUIRE(samepage_madvise(sp, hi, n * PG, SAMEPAGE_MERGEABLE) == 0);
	REQUIRE(samepage_madvise(sp, p, (n + 1) * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 3) == 0);
	wr(sp, "run", "0");
	REQUIRE(pages_mapping_pool(p, n) == n && pages_mapping_pool(hi, n) == n);
	struct rlimit old = tight_as(n * PG / 2);
	long rc = mbind(p, (2 * n + 1) * PG, 0 /* MPOL_DEFAULT */, NULL, 0, 0);
	int e = errno;
	REQUIRE(setrlimit(RLIMIT_AS, &old) == 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 2) == 0);
	size_t bad = pairs_wrong(p, n);
	for (size_t i = 0; i < n; i++)
		bad += (unsigned char)hi[i * PG + 7] != (unsigned char)(i / 2 + 101);
	printf("# mbind under RLIMIT_AS: %s; %zu of %zu pages wrong\n", rc ? strerror(e) : "done",
	       bad, 2 * n);
	CHECK_EQ_U64(bad, 0);
	samepage_close(sp);
}

/* Merge-any off, whose unmerge fails: it looped for ever (the regions it
 * unmerges one by one stayed), holding the address-space lock (a review
 * of 52's first version).  Now merge-any stays on, with the error. */
void test_merge_any_off_failed(void)
{
	const size_t n = 64;
	char *p;
	samepage_t *sp = merged_pairs(&p, n);
	REQUIRE(samepage_merge_any(sp, 1) == 0);
	struct rlimit old = tight_as(n * PG / 2);
	int err = samepage_merge_any(sp, 0);
	REQUIRE(setrlimit(RLIMIT_AS, &old) == 0);
	printf("# merge-any off under RLIMIT_AS: %d (%s), merge-any %d, %zu of %zu pages wrong\n",
	       err, strerror(-err), samepage_merge_any_get(sp), pairs_wrong(p, n), n);
	CHECK_EQ_U64(pairs_wrong(p, n), 0);
	CHECK(err == 0 || samepage_merge_any_get(sp) == 1);
	CHECK_EQ_INT(samepage_merge_any(sp, 0), 0); /* with room */
	CHECK_EQ_U64(pages_mapping_pool(p, n), 0);
	CHECK_EQ_U64(pairs_wrong(p, n), 0);
	samepage_close(sp);
}

/* Regression: mremap() of a mapping of which only a part was marked
 * mergeable keeps only that part mergeable where it moves to (the kernel
 * splits the VMA at MADV_MERGEABLE). */
void test_mremap_partial_registration(void)
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

/* Pages [z0, z1) of the n at p read zeros (discarded), the others c:
 * checked, and how many discarded pages read old contents said. */
static void check_discarded(const char *p, size_t n, size_t z0, size_t z1, char c)
{
	size_t old = 0, kept = 0;
	for (size_t i = 0; i < n; i++) {
		bool discarded = i >= z0 && i < z1;
		old += discarded && p[i * PG + 7] != 0;
		kept += !discarded && p[i * PG + 7] == c;
	}
	if (old)
		fprintf(stderr, "%zu discarded pages read old contents\n", old);
	CHECK_EQ_U64(old, 0);
	CHECK_EQ_U64(kept, n - (z1 - z0));
}

/*
 * Finding 2 (RELIABILITY.md): memory merged by an engine that was closed
 * is still made of private mappings of that engine's pool.  There:
 * samepage_discard() of another engine read the old contents back instead
 * of zeros (only the interposed madvise knew such "stale" pools), and
 * mremap failed with EFAULT (the range is many mappings, mremap wants one).
 * Each case with the range registered with the new engine, and without.
 */
static char *merged_then_closed(size_t n, int val)
{
	char *p;
	samepage_t *old = adv_merged(&p, n, val);
	REQUIRE(rd(old, "ksm_merging_pages") == (long long)n);
	samepage_close(old);
	return p;
}

void test_discard_after_close(void)
{
	const size_t n = 64;
	samepage_t *sp = open_fast(); /* run=0: it merges nothing itself */
	for (int registered = 0; registered < 2; registered++) {
		char *p = merged_then_closed(n, 'z');
		if (registered)
			REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
		CHECK_EQ_INT(samepage_discard(sp, p + 8 * PG, 16 * PG), 0);
		check_discarded(p, n, 8, 24, 'z');
	}
	samepage_close(sp);
}

/* Regression: samepage_discard() through one engine on pages another
 * engine of the process merged (here a merge-any engine, which takes every
 * private mapping): only the caller's own merged pages were made
 * anonymous before the discard, and the other's read their old contents
 * back (the soak under merge-any).  The interposed madvise was right. */
void test_discard_merged_by_another_engine(void)
{
	const size_t n = 64;
	samepage_t *any = open_fast(), *own = open_fast();
	for (int via_api = 0; via_api < 2; via_api++) {
		char *p = map_pages(n);
		memset(p, 'y', n * PG);
		REQUIRE(samepage_madvise(own, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
		REQUIRE(samepage_merge_any(any, 1) == 0);
		wr(any, "run", "1");
		for (int k = 0; k < 50 && pages_mapping_pool(p, n) < n; k++)
			REQUIRE(wait_scans(any, 1) == 0);
		REQUIRE(pages_mapping_pool(p, n) == n); /* merged by `any` */
		if (via_api)
			CHECK_EQ_INT(samepage_discard(own, p + 8 * PG, 16 * PG), 0);
		else
			CHECK_EQ_INT(madvise(p + 8 * PG, 16 * PG, MADV_DONTNEED), 0);
		check_discarded(p, n, 8, 24, 'y');
		wr(any, "run", "2");
		REQUIRE(samepage_merge_any(any, 0) == 0);
		REQUIRE(samepage_madvise(own, p, n * PG, SAMEPAGE_UNMERGEABLE) == 0);
		munmap(p, n * PG);
	}
	samepage_close(own);
	samepage_close(any);
}

/* Two engines with the same range (merge-any registers every private
 * mapping, another engine's too; here both register it): `first` merges
 * it, the application then writes zeros over the merged pages (private
 * copies in a mapping of first's pool), and `own`, which read the maps
 * before that merge, finds them all zeros and drops them.  MADV_DONTNEED in a private
 * mapping of a pool brings the pool's page back, not zeros: the soak's
 * one failure of the twenty-seventh session (pages of samepage_alloc()
 * memory reading their old contents where zeros were written).  Also
 * where the kernel cannot say what a mapping is (no PROCMAP_QUERY, before
 * Linux 6.11: refused here by a seccomp filter). */
static bool kernel_has_procmap_query(void);

static void zero_drop_in_another_engines_merge(bool query)
{
	const size_t n = 64;
	if (!query) {
		struct sock_filter f[] = {
		    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 4),
		    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
		    /* PROCMAP_QUERY ('f', 17), whatever size the caller's
		     * struct has */
		    BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xffff),
		    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ('f' << 8) | 17, 0, 1),
		    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOTTY),
		    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		};
		struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};
		REQUIRE(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
		REQUIRE(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0);
		REQUIRE(!kernel_has_procmap_query());
	} else if (!kernel_has_procmap_query()) {
		SKIP("the kernel has no PROCMAP_QUERY (Linux 6.11)");
	}
	for (int round = 0; round < 8; round++) {
		samepage_t *first = open_fast(), *own = open_fast();
		char *p = map_pages(n);
		memset(p, 'w', n * PG);
		/* own reads the maps now: the range is anonymous */
		REQUIRE(samepage_madvise(own, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
		REQUIRE(samepage_madvise(first, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
		wr(first, "run", "1");
		for (int k = 0; k < 50 && pages_mapping_pool(p, n) < n; k++)
			REQUIRE(wait_scans(first, 1) == 0);
		REQUIRE(pages_mapping_pool(p, n) == n); /* merged by `first` */
		wr(first, "run", "0");
		memset(p, 0, n * PG); /* private copies, in first's pool mapping */
		adv_maps_fresh(own);  /* own's maps, read before first merged */
		wr(own, "run", "1");
		adv_scans_or_untracked(own, 3);
		size_t bad = 0;
		for (size_t i = 0; i < n * PG; i++)
			bad += p[i] != 0;
		CHECK_EQ_U64(bad, 0);
		wr(own, "run", "2");
		wr(first, "run", "2");
		munmap(p, n * PG);
		samepage_close(own);
		samepage_close(first);
	}
}

void test_zero_drop_in_another_engines_merge(void)
{
	zero_drop_in_another_engines_merge(true);
}

void test_zero_drop_in_another_engines_merge_no_query(void)
{
	zero_drop_in_another_engines_merge(false);
}

/* samepage_free() unmaps an engine's memory; merge-any registers it in
 * every other engine that merges any, which must forget it too, as the
 * munmap() wrapper makes them: `any` dropped own's zero pages (its
 * zero pages, use_zero_pages 1), own freed them, and any's run=2 then
 * touched pages that were gone (-EIO, run left at 0: the soak's one API
 * error of the twenty-eighth session).  With memory mapped at the same
 * address since (`reuse`), the unmerge must leave its contents alone. */
void test_free_forgotten_by_other_engines(void)
{
	const size_t n = 64;
	for (int reuse = 0; reuse < 2; reuse++) {
		samepage_t *any = open_fast(), *own = open_fast();
		char *p;
		REQUIRE(samepage_alloc(own, n * PG, (void **)&p) == 0);
		memset(p, 0, n * PG); /* present, all zeros */
		wr(any, "use_zero_pages", "1");
		REQUIRE(samepage_merge_any(any, 1) == 0);
		wr(any, "run", "1"); /* own stays at run 0: only any merges */
		for (int k = 0; k < 50 && rd(any, "ksm_zero_pages") < (long long)n; k++)
			REQUIRE(wait_scans(any, 1) == 0);
		REQUIRE(rd(any, "ksm_zero_pages") >= (long long)n);
		wr(any, "run", "0"); /* its scanner must not see the unmap first */
		REQUIRE(samepage_free(own, p, n * PG) == 0);
		if (reuse) {
			char *q = mmap(p, n * PG, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
			REQUIRE(q == p);
			memset(p, 'r', n * PG);
		}
		int err = samepage_write(any, "run", "2");
		printf("reuse %d: run=2 returned %d (%s), run reads %lld\n", reuse, err,
		       err ? strerror(-err) : "ok", rd(any, "run"));
		CHECK_EQ_INT(err, 0);
		CHECK_EQ_INT(rd(any, "run"), 2);
		if (reuse) {
			size_t bad = 0;
			for (size_t i = 0; i < n * PG; i++)
				bad += p[i] != 'r';
			CHECK_EQ_U64(bad, 0);
			munmap(p, n * PG);
		}
		REQUIRE(samepage_merge_any(any, 0) == 0);
		samepage_close(own);
		samepage_close(any);
	}
}

/* The kernel's own mappings ([vdso], [vvar], [vvar_vclock]: VM_SPECIAL)
 * have no file, as anonymous memory: MADV_MERGEABLE there succeeds and
 * changes nothing for the kernel's KSM, and merge-any leaves them out;
 * registered, their pages were scanned (some fault when read) and a merge
 * would map the pool over what the vDSO reads.  Each must register no
 * page.  ([vsyscall] is above the address space: left out.) */
void test_kernel_mappings_not_registered(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	REQUIRE(f != NULL);
	char line[512];
	int seen = 0;
	samepage_t *sp = open_fast();
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		char name[64] = "";
		if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %63s", &s, &e, name) < 2 ||
		    !kernel_mapping_named(name) || e > (1UL << 47))
			continue;
		seen++;
		int err = samepage_madvise(sp, (void *)s, e - s, SAMEPAGE_MERGEABLE);
		long long tracked = rd(sp, "pages_tracked");
		printf("%s: %lu pages, madvise %d, pages_tracked %lld\n", name, (e - s) / PG, err,
		       tracked);
		CHECK_EQ_INT(err, 0);
		CHECK_EQ_INT(tracked, 0);
	}
	fclose(f);
	CHECK(seen > 0);
	samepage_close(sp);
}

/* The descriptor of the library's pool (its memfd's name), or -1. */
static int library_pool_fd(void)
{
	char path[64], target[256];
	for (int fd = 3; fd < 4096; fd++) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		ssize_t len = readlink(path, target, sizeof(target) - 1);
		if (len <= 0)
			continue;
		target[len] = 0;
		if (strstr(target, "memfd:samepage-pool"))
			return fd;
	}
	return -1;
}

/* A dup2() onto the library's pool is refused (EBUSY): it would have
 * replaced the pool by the program's file. */
static int dup2_onto_pool_refused(void)
{
	int pool = library_pool_fd(), other = open("/dev/null", O_RDONLY | O_CLOEXEC);
	REQUIRE(pool >= 0 && other >= 0);
	errno = 0;
	int rc = dup2(other, pool), err = errno;
	int rc3 = dup3(other, pool, O_CLOEXEC), err3 = errno;
	printf("the pool's descriptor %d: dup2 onto it %d (%s), dup3 %d (%s)\n", pool, rc,
	       strerror(err), rc3, strerror(err3));
	close(other);
	return !(rc == -1 && err == EBUSY && rc3 == -1 && err3 == EBUSY &&
		 library_pool_fd() == pool);
}

/* A program that closes every descriptor it did not open (a daemon's
 * start) and opens files after: they took the numbers of the library's
 * memfds and /proc/self files, and the unmerge that followed punched the
 * holes of the freed KSM pages in one of them (32 KiB of 4 MiB of 'X'
 * read zeros), where the kernel's KSM has no descriptor to lose.  In a
 * child, by close_range(), closefrom() and a loop of close(): the files
 * stay as written, the engine merges and unmerges as before. */
static int close_all_child(int how)
{
	const size_t n = 256, files = 16, fsize = 1 << 20;
	samepage_t *sp = open_fast();
	char *p = map_pages(n);
	for (size_t i = 0; i < n; i++)
		memset(p + i * PG, 'a' + (int)(i % 8), PG);
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	for (int k = 0; k < 50 && rd(sp, "ksm_merging_pages") < (long long)n; k++)
		REQUIRE(wait_scans(sp, 1) == 0);
	int bad = rd(sp, "ksm_merging_pages") != (long long)n;
	if (bad)
		printf("how %d: %lld of %zu pages merged before\n", how,
		       rd(sp, "ksm_merging_pages"), n);
	if (how == 0)
		REQUIRE(close_range(3, ~0U, 0) == 0);
	else if (how == 1)
		closefrom(3);
	else if (how == 2)
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
	else
		bad += dup2_onto_pool_refused();
	int fds[16];
	char *x = malloc(fsize), *back = malloc(fsize);
	memset(x, 'X', fsize);
	for (size_t i = 0; i < files; i++) {
		FILE *t = tmpfile();
		REQUIRE(t != NULL);
		fds[i] = dup(fileno(t));
		fclose(t);
		REQUIRE(fds[i] >= 0);
		int want = 3 + (int)i; /* how 3: a shell's "exec 3>file" */
		if (how == 3 && fds[i] != want) {
			int rc = dup2(fds[i], want);
			if (rc != want)
				printf("dup2 onto %d: %d (%s)\n", want, rc, strerror(errno));
			REQUIRE(rc == want);
			close(fds[i]);
			fds[i] = want;
		}
		REQUIRE(pwrite(fds[i], x, fsize, 0) == (ssize_t)fsize);
	}
	for (int round = 0; round < 2; round++) {
		wr(sp, "run", "2");
		wr(sp, "run", "1");
		for (int k = 0; k < 50 && rd(sp, "ksm_merging_pages") < (long long)n; k++)
			REQUIRE(wait_scans(sp, 1) == 0);
		long long merging = rd(sp, "ksm_merging_pages");
		if (merging != (long long)n)
			printf("how %d, round %d: %lld of %zu pages merged\n", how, round, merging,
			       n);
		bad += merging != (long long)n;
	}
	wr(sp, "run", "2");
	for (size_t i = 0; i < files; i++) {
		REQUIRE(pread(fds[i], back, fsize, 0) == (ssize_t)fsize);
		size_t changed = 0;
		for (size_t k = 0; k < fsize; k++)
			changed += back[k] != 'X';
		if (changed)
			printf("how %d: file %zu (descriptor %d): %zu bytes changed\n", how, i,
			       fds[i], changed);
		bad += changed != 0;
	}
	size_t wrong = 0;
	for (size_t i = 0; i < n * PG; i++)
		wrong += p[i] != 'a' + (int)(i / PG % 8);
	if (wrong)
		printf("how %d: %zu bytes of the memory changed\n", how, wrong);
	bad += wrong != 0;
	free(x);
	free(back);
	fflush(stdout);
	return bad;
}

void test_close_all_keeps_library_files(void)
{
	for (int how = 0; how < 3; how++) {
		fflush(stdout);
		pid_t c = fork();
		REQUIRE(c >= 0);
		if (c == 0)
			_exit(close_all_child(how) ? 1 : 0);
		int st = adv_wait(c);
		printf("how %d (%s): child exited %d\n", how,
		       how == 0	  ? "close_range"
		       : how == 1 ? "closefrom"
				  : "close",
		       st);
		CHECK_EQ_INT(st, 0);
	}
}

/* A program that puts its files at the low numbers it chooses (a shell's
 * "exec 3>file", dup2(fd, 3)): they took the library's memfds and /proc/self
 * files from under it, and the unmerges punched holes in the program's
 * files, as above.  The library keeps its descriptors above the numbers
 * programs choose, and refuses a dup2() onto one of them. */
void test_dup2_keeps_library_files(void)
{
	fflush(stdout);
	pid_t c = fork();
	REQUIRE(c >= 0);
	if (c == 0)
		_exit(close_all_child(3) ? 1 : 0);
	int st = adv_wait(c);
	printf("dup2 onto 3..18: child exited %d\n", st);
	CHECK_EQ_INT(st, 0);
}

/* A program linked with the library whose main thread ends by
 * pthread_exit(), with an atexit handler that closes its engine: the
 * engine's thread ends the process once no thread of the program is left
 * (RELIABILITY.md 77) and runs that handler itself, whose
 * samepage_close() must not join or free the thread it runs on. */
static samepage_t *atexit_sp;
static void close_at_exit(void)
{
	samepage_close(atexit_sp);
	printf("closed at exit\n");
}

void test_main_exit_closes_engine(void)
{
	fflush(stdout);
	pid_t c = fork();
	REQUIRE(c >= 0);
	if (c == 0) {
		atexit_sp = open_fast();
		char *p = map_pages(16);
		memset(p, 'e', 16 * PG);
		REQUIRE(samepage_madvise(atexit_sp, p, 16 * PG, SAMEPAGE_MERGEABLE) == 0);
		wr(atexit_sp, "run", "1");
		atexit(close_at_exit);
		pthread_exit(NULL);
	}
	int st = adv_wait(c);
	printf("main thread ended by pthread_exit(): child exited %d\n", st);
	CHECK_EQ_INT(st, 0);
}

void test_mremap_after_close(void)
{
	const size_t n = 64;
	samepage_t *sp = open_fast();
	for (int registered = 0; registered < 3; registered++) {
		char *p = merged_then_closed(n, 'g');
		if (registered == 1)
			REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
		if (registered == 2) { /* no engine left at all */
			samepage_close(sp);
			sp = NULL;
		}
		char *q = mremap(p, n * PG, (n + 1) * PG, MREMAP_MAYMOVE);
		if (q == MAP_FAILED)
			fprintf(stderr, "registered %d: mremap to grow: %s\n", registered,
				strerror(errno));
		CHECK(q != MAP_FAILED);
		if (q == MAP_FAILED)
			continue;
		size_t kept = 0;
		for (size_t i = 0; i < n; i++)
			kept += q[i * PG] == 'g' && q[i * PG + PG - 1] == 'g';
		CHECK_EQ_U64(kept, n);
		CHECK_EQ_INT(q[n * PG], 0);
		munmap(q, (n + 1) * PG);
	}
	samepage_close(sp);
}

/* The pattern of the two tests below: even pages all 'u', odd ones 'u'
 * with their index first (unique). */
static void pattern_fill(char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		memset(p + i * PG, 'u', PG);
		if (i % 2)
			memcpy(p + i * PG, &i, sizeof(i));
	}
}

/* The pages of [q, q + n pages) that still hold that pattern. */
static size_t pattern_kept(const char *q, size_t n)
{
	size_t kept = 0;
	for (size_t i = 0; i < n; i++) {
		size_t v = 0;
		memcpy(&v, q + i * PG, sizeof(v));
		kept += q[i * PG + 9] == 'u' && (i % 2 ? v == i : q[i * PG] == 'u');
	}
	return kept;
}
/*
 * Finding 4 (RELIABILITY.md): after run=2 (or MADV_UNMERGEABLE) a region
 * that was one mapping stayed many: every merged run was replaced by its
 * own copy, mapped MAP_NORESERVE and without the range's MADV_NOHUGEPAGE,
 * so that no replacement joined its neighbours.  Then mremap to grow it
 * failed with EFAULT (the kernel's KSM leaves one VMA), and the mapping
 * budget paid for it.  Here every other page of a region merges, run=2
 * unmerges, and the region must be one mapping again, growable.
 */
void test_unmerge_leaves_one_mapping(void)
{
	const size_t n = 256;
	samepage_t *sp = open_fast();
	char *p = map_pages(n); /* MADV_NOHUGEPAGE, as the soak's regions */
	pattern_fill(p, n);
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 3) == 0);
	CHECK(rd(sp, "ksm_merging_pages") >= (long long)n / 2);
	CHECK(mappings_in(p, n * PG, NULL) > 1); /* merging split it */
	wr(sp, "run", "2");
	int maps = mappings_in(p, n * PG, NULL);
	if (maps != 1)
		fprintf(stderr, "%d mappings in the region after run=2\n", maps);
	CHECK_EQ_INT(maps, 1);
	char *q = mremap(p, n * PG, (n + 1) * PG, MREMAP_MAYMOVE);
	CHECK(q != MAP_FAILED);
	if (q != MAP_FAILED) {
		CHECK_EQ_U64(pattern_kept(q, n), n);
		p = q;
	}
	samepage_close(sp);
}

/*
 * Found by the ten-minute soak: run=2 while part of a region was read-only
 * (the application's mprotect) unmerged it run by run (a range of several
 * protections cannot be copied whole), and once all of it was writable
 * again it stayed many mappings (each copy its own anon_vma): mremap could
 * not grow it (EFAULT; 26 mappings in a soak region).  mremap now makes a
 * range of one protection that is several mappings one mapping first.
 */
void test_mremap_after_partial_unmerge(void)
{
	const size_t n = 64;
	samepage_t *sp = open_fast();
	char *p = mmap(NULL, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(p != MAP_FAILED);
	pattern_fill(p, n);
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 3) == 0);
	REQUIRE(mprotect(p, 8 * PG, PROT_READ) == 0);
	wr(sp, "run", "2");
	REQUIRE(mprotect(p, 8 * PG, PROT_READ | PROT_WRITE) == 0);
	char *q = mremap(p, n * PG, (n + 1) * PG, MREMAP_MAYMOVE);
	if (q == MAP_FAILED)
		fprintf(stderr, "mremap to grow: %s, %d mappings\n", strerror(errno),
			mappings_in(p, n * PG, NULL));
	CHECK(q != MAP_FAILED);
	if (q != MAP_FAILED) {
		CHECK_EQ_U64(pattern_kept(q, n), n);
	}
	samepage_close(sp);
}

/*
 * RELIABILITY.md 57: a THP block that a merge splits into small pages was
 * copied through a scratch mapping marked MADV_NOHUGEPAGE, and the flag
 * moved in with the copy: memory the application never marked lost THP,
 * and once a registration read the flag back as the application's, run=2
 * left the range 13 mappings and its mremap failed with EFAULT.  Here THPs
 * the application made (MADV_COLLAPSE, as THP "always" makes them) merge
 * in part; the range must keep its flags (no nh), and after a second
 * registration and run=2 be one mapping again, growable, contents kept.
 */
void test_thp_split_keeps_flags(void)
{
	const size_t n = 2048, huge = (size_t)2 << 20; /* four huge pages */
	char *raw =
	    mmap(NULL, n * PG + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(raw != MAP_FAILED);
	char *p = (char *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
	pattern_fill(p, n);
	if (madvise(p, n * PG, 25 /* MADV_COLLAPSE, Linux 6.1 */) != 0 ||
	    proc_kb("/proc/self/smaps_rollup", "AnonHugePages") < (long long)(n * PG / 1024))
		SKIP("the kernel made no THP of the range (MADV_COLLAPSE)");
	samepage_t *sp = open_fast();
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 3) == 0);
	CHECK_CMP(rd(sp, "ksm_merging_pages"), >=, (long long)n / 2, long long, "%lld");
	int nohuge, maps = mappings_in(p, n * PG, &nohuge);
	printf("merged: %d mappings, %d of them MADV_NOHUGEPAGE\n", maps, nohuge);
	CHECK_EQ_INT(nohuge, 0);
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0); /* reads flags again */
	wr(sp, "run", "2");
	maps = mappings_in(p, n * PG, &nohuge);
	printf("after run=2: %d mappings, %d of them MADV_NOHUGEPAGE\n", maps, nohuge);
	CHECK_EQ_INT(maps, 1);
	CHECK_EQ_INT(nohuge, 0);
	char *q = mremap(p, n * PG, n * PG + huge, MREMAP_MAYMOVE);
	if (q == MAP_FAILED)
		fprintf(stderr, "mremap to grow: %s\n", strerror(errno));
	CHECK(q != MAP_FAILED);
	if (q != MAP_FAILED)
		CHECK_EQ_U64(pattern_kept(q, n), n);
	samepage_close(sp);
}

static uint64_t maps_reads(samepage_t *sp)
{
	struct samepage *e = (struct samepage *)sp;
	pthread_mutex_lock(&e->lock);
	uint64_t n = e->maps_reads;
	pthread_mutex_unlock(&e->lock);
	return n;
}

static double secs_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * Regression (9-churn): the scanner read /proc/self/maps at the start of
 * every full scan, holding the address-space lock the application's mmap,
 * mprotect and munmap wait for; a small range scanned with
 * sleep_millisecs 0 beside 32k mappings cut the application's mmap rate
 * 20-fold.  With nothing changed, the maps are read again at most once a
 * second; a change the wrappers see is read at the next batch.
 */
void test_maps_not_reread_every_scan(void)
{
	char *p;
	samepage_t *sp = adv_merged(&p, 64, 'm');
	uint64_t r0 = maps_reads(sp);
	double t0 = secs_now();
	REQUIRE(wait_scans(sp, 20) == 0);
	uint64_t r1 = maps_reads(sp);
	double secs = secs_now() - t0;
	/* One read a second at most, and one at the edge of each. */
	CHECK_CMP((double)(r1 - r0), <=, secs + 1, double, "%g");
	REQUIRE(mprotect(p, PG, PROT_READ) == 0);
	REQUIRE(wait_scans(sp, 2) == 0);
	CHECK(maps_reads(sp) > r1);
	REQUIRE(mprotect(p, PG, PROT_READ | PROT_WRITE) == 0);
	p[0] = 'w';
	CHECK(p[0] == 'w' && p[1] == 'm' && p[PG] == 'm');

#ifndef SAMEPAGE_SANITIZE /* merge-any takes in the sanitizers' shadow: see lib.adv_merge_any */
	/* Merge-any read them at every full scan too, for new mappings: now
	 * once a second at most (every 10 s with PROCMAP_QUERY), and at once
	 * after an mmap the wrappers see. */
	REQUIRE(samepage_merge_any(sp, 1) == 0);
	r0 = maps_reads(sp);
	t0 = secs_now();
	REQUIRE(wait_scans(sp, 20) == 0);
	r1 = maps_reads(sp);
	secs = secs_now() - t0;
	CHECK_CMP((double)(r1 - r0), <=, 2 * (secs + 1), double, "%g");
	char *q = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(q != MAP_FAILED);
	memset(q, 'm', 16 * PG);
	REQUIRE(wait_scans(sp, 3) == 0);
	CHECK_EQ_U64(pages_mapping_pool(q, 16), 16);
	REQUIRE(samepage_merge_any(sp, 0) == 0);
	munmap(q, 16 * PG);
#endif
	samepage_close(sp);
}

/*
 * Regression (a VM monitor's balloon): QEMU gives a guest's ballooned
 * memory back with one madvise(MADV_DONTNEED) per 4 KiB page.  Each on a
 * merged page read the whole maps twice (for the pool's mappings in the
 * range, then again at the next engine_enter()); with the 10,000s of
 * mappings of a merged guest, inflating a balloon by 96 MiB took minutes
 * against the kernel's half second.  Page by page over merged runs here:
 * every discarded page reads zeros, every other keeps its contents, and
 * the maps are not read again per discard (with PROCMAP_QUERY; without
 * it the pool's mappings are still found in the maps).
 */
/* Does this kernel answer PROCMAP_QUERY (Linux 6.11)?  The ioctl's
 * number and its 104-byte argument, from include/uapi/linux/fs.h. */
static bool kernel_has_procmap_query(void)
{
	uint64_t q[13] = {sizeof(q), 0, (uintptr_t)&kernel_has_procmap_query};
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	bool yes = fd >= 0 && ioctl(fd, _IOWR('f', 17, uint64_t[13]), q) == 0;
	if (fd >= 0)
		close(fd);
	return yes;
}

void test_discard_page_by_page(void)
{
	const size_t n = 512;
	char *p = map_pages(n);
	for (size_t i = 0; i < n; i++)
		memset(p + i * PG, i % 4 == 3 ? (int)(i / 4 % 200) + 1 : 'b', PG); /* runs of 3 */
	samepage_t *sp = open_fast();
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	for (int k = 0; k < 50 && pages_mapping_pool(p, n) < n * 3 / 4; k++)
		REQUIRE(wait_scans(sp, 1) == 0);
	wr(sp, "run", "0");
	size_t merged = pages_mapping_pool(p, n), odd_merged = 0;
	CHECK_CMP(merged, >=, n * 3 / 4, size_t, "%zu");
	for (size_t i = 1; i < n; i += 2)
		odd_merged += pages_mapping_pool(p + i * PG, 1);
	uint64_t r0 = maps_reads(sp);
	for (size_t i = 0; i < n; i += 2)
		REQUIRE(madvise(p + i * PG, PG, MADV_DONTNEED) == 0);
	uint64_t reads = maps_reads(sp) - r0;
	if (kernel_has_procmap_query())
		CHECK_CMP((unsigned long long)reads, <=, 2ULL, unsigned long long, "%llu");
	size_t wrong = 0;
	for (size_t i = 0; i < n; i++) {
		int want = i % 2 == 0 ? 0 : i % 4 == 3 ? (int)(i / 4 % 200) + 1 : 'b';
		wrong +=
		    (unsigned char)p[i * PG] != want || (unsigned char)p[i * PG + PG - 1] != want;
	}
	CHECK_EQ_U64(wrong, 0);
	CHECK_EQ_U64(pages_mapping_pool(p, n), odd_merged); /* the discarded ones: none */
	samepage_close(sp);
	munmap(p, n * PG);
}

/*
 * Regression (a JVM): G1 commits and uncommits its heap's bookkeeping 4 KiB
 * at a time, mmap(MAP_FIXED) over memory merge-any registered, hundreds of
 * times a second.  Each such unmap made the scanner's next batch read the
 * whole maps twice (to forget the pages, then to read the regions again):
 * 41 reads a second of 57,000 mappings, a third of the process's time, the
 * JVM at two thirds of its throughput under the kernel's KSM.  Unmerged pages are
 * forgotten without the maps now; here a page mapped anew at each full
 * scan, 32 times, beside merged pages: they read what they should, and
 * the maps are not read for each.
 */
void test_remap_page_by_page(void)
{
	const size_t n = 64, remaps = 32;
	char *p = map_pages(n);
	for (size_t i = 0; i < n; i++)
		memset(p + i * PG, i < n / 2 ? 'j' : (int)i, PG); /* half merge, half unique */
	samepage_t *sp = open_fast();
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	for (int k = 0; k < 50 && pages_mapping_pool(p, n / 2) < n / 2; k++)
		REQUIRE(wait_scans(sp, 1) == 0);
	REQUIRE(pages_mapping_pool(p, n / 2) == n / 2);
	uint64_t r0 = maps_reads(sp);
	for (size_t k = 0; k < remaps; k++) {
		char *at = p + (n / 2 + k) * PG; /* an unmerged page, as the JVM's */
		REQUIRE(mmap(at, PG, PROT_NONE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0) == at);
		REQUIRE(mmap(at, PG, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == at);
		REQUIRE(wait_scans(sp, 1) == 0);
	}
	uint64_t reads = maps_reads(sp) - r0;
	printf("# %zu pages mapped anew, one a full scan: %llu reads of the maps\n", remaps,
	       (unsigned long long)reads);
	CHECK_CMP((unsigned long long)reads, <=, (unsigned long long)remaps / 4, unsigned long long,
		  "%llu");
	size_t wrong = 0;
	for (size_t i = 0; i < n; i++) {
		int want = i < n / 2 ? 'j' : i < n / 2 + remaps ? 0 : (int)i;
		wrong += p[i * PG] != (char)want || p[i * PG + PG - 1] != (char)want;
	}
	CHECK_EQ_U64(wrong, 0);
	CHECK_EQ_U64(pages_mapping_pool(p, n / 2), n / 2);
	samepage_close(sp);
	munmap(p, n * PG);
}

struct writable_in {
	uintptr_t start, end;
	int n;
};

static int count_writable(const struct procfs_map *m, void *arg)
{
	struct writable_in *w = arg;
	if (m->start < w->end && m->end > w->start && m->perms[1] == 'w')
		w->n++;
	return 0;
}

/*
 * A raw mprotect(2), which the wrappers do not see, then content that
 * merges, in maps read over a second before: where the kernel answers
 * PROCMAP_QUERY (Linux 6.11) the maps are read again only every 10 s, and
 * a merge asks the kernel about its run before it maps the pool there
 * (regions_range_current()).  The merged pages keep the protection the
 * application set; without the question the pool was mapped writable
 * (rw-p) over memory the application had made read-only.  (Without
 * PROCMAP_QUERY the next full scan reads the maps again, and passes too.)
 */
void test_raw_mprotect_before_merge(void)
{
	const size_t n = 64;
	samepage_t *sp = open_fast();
	wr(sp, "smart_scan", "0"); /* a failed merge is tried again at the next scan */
	char *p = map_pages(n);
	for (size_t i = 0; i < n; i++)
		memset(p + i * PG, (int)i + 1, PG); /* nothing to merge yet */
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 2) == 0);
	wr(sp, "run", "0");
	memset(p, 'r', n * PG);
	REQUIRE(syscall(SYS_mprotect, p, n * PG, PROT_READ) == 0);
	struct samepage *e = (struct samepage *)sp;
	pthread_mutex_lock(&e->lock);
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts); /* prim_now_ns()'s clock */
	e->maps_read_ns = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec -
			  2 * MAPS_REREAD_NS; /* read a while ago */
	pthread_mutex_unlock(&e->lock);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 8) == 0);
	CHECK_CMP(pages_mapping_pool(p, n), >, (size_t)0, size_t, "%zu");
	struct writable_in w = {(uintptr_t)p, (uintptr_t)p + n * PG, 0};
	REQUIRE(procfs_maps("/proc/self/maps", count_writable, &w) == 0);
	CHECK_EQ_INT(w.n, 0);
	for (size_t i = 0; i < n * PG; i += 997)
		REQUIRE(p[i] == 'r');
	samepage_close(sp);
}

/* The core file the kernel wrote for pid in dir ("core" or "core.PID"):
 * an open fd, or -1. */
static int open_core(const char *dir, pid_t pid)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/core", dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(path, sizeof(path), "%s/core.%d", dir, (int)pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	if (fd >= 0)
		unlink(path);
	return fd;
}

/* The bytes [addr, addr + len) as the core holds them, segment after
 * segment: how many it holds before the first it does not. */
static size_t core_read(int fd, uintptr_t addr, char *out, size_t len)
{
	Elf64_Ehdr eh;
	REQUIRE(pread(fd, &eh, sizeof(eh), 0) == (ssize_t)sizeof(eh));
	REQUIRE(!memcmp(eh.e_ident, ELFMAG, SELFMAG) && eh.e_type == ET_CORE);
	size_t done = 0;
	for (bool more = true; more && done < len;) {
		more = false;
		for (unsigned i = 0; i < eh.e_phnum; i++) {
			Elf64_Phdr ph;
			REQUIRE(
			    pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + i * eh.e_phentsize)) ==
			    (ssize_t)sizeof(ph));
			uintptr_t a = addr + done;
			if (ph.p_type != PT_LOAD || a < ph.p_vaddr || a >= ph.p_vaddr + ph.p_memsz)
				continue;
			uint64_t off = a - ph.p_vaddr;
			if (off >= ph.p_filesz)
				return done;
			size_t want = len - done,
			       have = ph.p_filesz - off < want ? (size_t)(ph.p_filesz - off) : want;
			if (pread(fd, out + done, have, (off_t)(ph.p_offset + off)) !=
			    (ssize_t)have)
				return done;
			done += have;
			more = true;
			break;
		}
	}
	return done;
}

/*
 * A process that merged, then crashed: its core dump must hold the merged
 * pages, as it holds the kernel's KSM pages (anonymous memory), and must
 * not hold the library's own mappings.  Before: a merged page is a private
 * mapping of the pool, which the default coredump_filter leaves out (the
 * core read nothing there), and the local engine's 64 GiB pool and its
 * index, shared memfds, were dumped whole: the kernel filled every hole to
 * write it (here it stopped at the 256 MiB RLIMIT_CORE the test sets).
 */
void test_core_dump(void)
{
	char pat[256] = "";
	procfs_read("/proc/sys/kernel/core_pattern", pat, sizeof(pat)); /* no newline */
	if (strcmp(pat, "core")) {
		printf(
		    "# skipped: core_pattern is '%s': this test reads the file 'core' the kernel "
		    "writes in the crashed process's directory\n",
		    pat);
		exit(77);
	}
	const size_t n = 64;
	char dir[] = "/tmp/samepage-core-XXXXXX";
	REQUIRE(mkdtemp(dir));
	int fds[2];
	REQUIRE(pipe(fds) == 0);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		struct rlimit lim = {256UL << 20, 256UL << 20}; /* a bound on what a bug dumps */
		REQUIRE(chdir(dir) == 0 && setrlimit(RLIMIT_CORE, &lim) == 0);
		char *p;
		samepage_t *sp = adv_merged(&p, n, 'Q');
		for (int i = 0; i < 10000 && rd(sp, "ksm_merging_pages") < (long long)n; i++)
			usleep(1000);
		REQUIRE(rd(sp, "ksm_merging_pages") == (long long)n);
		REQUIRE(write(fds[1], &p, sizeof(p)) == (ssize_t)sizeof(p));
		abort();
	}
	close(fds[1]);
	char *p = NULL;
	REQUIRE(read(fds[0], &p, sizeof(p)) == (ssize_t)sizeof(p));
	close(fds[0]);
	CHECK_EQ_INT(adv_wait(pid), 128 + SIGABRT);
	int fd = open_core(dir, pid);
	rmdir(dir);
	REQUIRE(fd >= 0);
	struct stat st;
	REQUIRE(fstat(fd, &st) == 0);
	/* Its blocks: the holes it skipped (pages never touched) cost none. */
	long long written = (long long)st.st_blocks * 512;
	printf("# core of %lld bytes written\n", written);
	CHECK_CMP(written, <, 64LL << 20, long long, "%lld");
	static char buf[64 * PG];
	size_t got = core_read(fd, (uintptr_t)p, buf, n * PG);
	printf("# the core holds %zu of the %zu merged bytes\n", got, n * PG);
	CHECK_EQ_INT(got, n * PG);
	size_t bad = 0;
	for (size_t i = 0; i < got; i++)
		bad += buf[i] != 'Q';
	CHECK_EQ_INT(bad, 0);
	close(fd);
}

/* The application's own userfaultfd (skipped, 77, where it gets none). */
static int app_uffd(void)
{
	int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0) {
		printf("# skipped: userfaultfd: %s\n", strerror(errno));
		exit(77);
	}
	struct uffdio_api api = {.api = UFFD_API};
	REQUIRE(ioctl(uffd, UFFDIO_API, &api) == 0);
	return uffd;
}

/*
 * The application registers mergeable memory with its own userfaultfd, as
 * QEMU does with guest RAM on a postcopy migration's incoming side.  A
 * range takes one userfaultfd only, and the library's merge windows had
 * registered it: UFFDIO_REGISTER failed with EBUSY (so did the migration).
 * Now the range stops merging while the application has it registered
 * (its merged pages get private copies, counted in pages_kept_uffd), and
 * merges again after UFFDIO_UNREGISTER.
 */
void test_app_userfaultfd(void)
{
	const size_t n = 64;
	char *p;
	samepage_t *sp = adv_merged(&p, n, 'U');
	for (int i = 0; i < 10000 && rd(sp, "ksm_merging_pages") < (long long)n; i++)
		usleep(1000);
	REQUIRE(rd(sp, "ksm_merging_pages") == (long long)n);
	int uffd = app_uffd();
	struct uffdio_register reg = {.range = {(uintptr_t)p, n * PG},
				      .mode = UFFDIO_REGISTER_MODE_MISSING};
	int rc = ioctl(uffd, UFFDIO_REGISTER, &reg);
	printf("# the application's UFFDIO_REGISTER: %s\n", rc ? strerror(errno) : "done");
	CHECK_EQ_INT(rc, 0);
	REQUIRE(wait_scans(sp, 2) == 0);
	CHECK_EQ_INT(rd(sp, "ksm_merging_pages"), 0);
	CHECK_EQ_INT(rd(sp, "pages_kept_uffd"), (long long)n);
	for (size_t i = 0; i < n; i++)
		REQUIRE(p[i * PG] == 'U' && p[i * PG + PG - 1] == 'U');
	/* Unregistered, the pages merge again. */
	CHECK_EQ_INT(ioctl(uffd, UFFDIO_UNREGISTER, &reg.range), 0);
	for (int i = 0; i < 10000 && rd(sp, "ksm_merging_pages") < (long long)n; i++) {
		if (i % 100 == 0)
			check_tick();
		usleep(1000);
	}
	CHECK_EQ_INT(rd(sp, "ksm_merging_pages"), (long long)n);
	REQUIRE(wait_scans(sp, 1) == 0);
	CHECK_EQ_INT(rd(sp, "pages_kept_uffd"), 0);
	for (size_t i = 0; i < n; i++)
		REQUIRE(p[i * PG] == 'U' && p[i * PG + PG - 1] == 'U');
	close(uffd);
	samepage_close(sp);
}

/* Regression: the ioctl wrapper read UFFDIO_REGISTER's and
 * UFFDIO_UNREGISTER's range from the application's pointer directly: a
 * bad one crashed the program (SIGSEGV) where the kernel says EFAULT. */
void test_uffd_ioctl_bad_pointer(void)
{
	int uffd = app_uffd();
	/* Below vm.mmap_min_addr: never mapped, whatever the engine maps. */
	char *gone = (char *)(uintptr_t)PG;
	/* Before any engine (no fault handler of the library yet), then with
	 * one. */
	samepage_t *sp = NULL;
	for (int round = 0; round < 2; round++) {
		errno = 0;
		CHECK(ioctl(uffd, UFFDIO_REGISTER, gone) == -1 && errno == EFAULT);
		errno = 0;
		CHECK(ioctl(uffd, UFFDIO_UNREGISTER, gone) == -1 && errno == EFAULT);
		char *p;
		if (!sp)
			sp = adv_registered(&p, 4, 'u');
	}
	close(uffd);
	samepage_close(sp);
}

/* Regression: a device DMA mapping (VFIO's, iommufd's) of memory that may
 * merge pins it for a device that writes into it later; a merge meanwhile
 * loses those writes (RELIABILITY.md 62).  With no engine open the
 * request goes to the kernel (here ENOTTY: /dev/null is no VFIO device);
 * with one, it is refused (EPERM). */
void test_dma_map_refused(void)
{
	static char buf[1 << 16];
	struct vfio_iommu_type1_dma_map map = {.argsz = sizeof(map),
					       .flags =
						   VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
					       .vaddr = (uintptr_t)buf,
					       .size = sizeof(buf)};
	uint64_t ioas[6] = {sizeof(ioas), 0, 0, (uintptr_t)buf, sizeof(buf), 0};
	const unsigned long ioas_map = _IO(';', 0x85); /* IOMMU_IOAS_MAP */
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	REQUIRE(fd >= 0);
	errno = 0;
	CHECK(ioctl(fd, VFIO_IOMMU_MAP_DMA, &map) == -1 && errno == ENOTTY);
	errno = 0;
	CHECK(ioctl(fd, ioas_map, ioas) == -1 && errno == ENOTTY);
	char *p;
	samepage_t *sp = adv_registered(&p, 4, 'd');
	errno = 0;
	CHECK(ioctl(fd, VFIO_IOMMU_MAP_DMA, &map) == -1 && errno == EPERM);
	errno = 0;
	CHECK(ioctl(fd, ioas_map, ioas) == -1 && errno == EPERM);
	close(fd);
	samepage_close(sp);
}

/* Pages of [p, p + n pages) in memory, from pagemap. */
static size_t present_pages(const char *p, size_t n)
{
	size_t in = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	REQUIRE(fd >= 0);
	for (size_t i = 0; i < n; i++) {
		uint64_t e = 0;
		REQUIRE(pread(fd, &e, sizeof(e), (off_t)(((uintptr_t)p / PG + i) * sizeof(e))) ==
			(ssize_t)sizeof(e));
		in += (e >> 63) & 1;
	}
	close(fd);
	return in;
}

/*
 * The same with zero pages the engine dropped, which the application then
 * discarded itself: QEMU's postcopy discards guest RAM that must come again
 * from the source, registers it, and places the pages with UFFDIO_COPY.
 * Before, a discard forgot the engine's dropped zero pages only in a range
 * where a page had merged into the pool: here none had, so stopping the
 * merge at UFFDIO_REGISTER wrote them back as private zero pages, and the
 * application's placement failed (EEXIST; a real postcopy migration of a
 * QEMU guest paused with "postcopy_place_page: File exists").
 */
void test_app_userfaultfd_after_discard(void)
{
	const size_t n = 64;
	char *p;
	samepage_t *sp = adv_merged(&p, n, 0); /* zero pages: dropped */
	for (int i = 0; i < 10000 && present_pages(p, n); i++)
		usleep(1000);
	REQUIRE(present_pages(p, n) == 0);
	REQUIRE(madvise(p, n * PG, MADV_DONTNEED) == 0); /* the application's */
	int uffd = app_uffd();
	struct uffdio_register reg = {.range = {(uintptr_t)p, n * PG},
				      .mode = UFFDIO_REGISTER_MODE_MISSING};
	REQUIRE(ioctl(uffd, UFFDIO_REGISTER, &reg) == 0);
	size_t in = present_pages(p, n);
	printf("# %zu of %zu discarded pages in memory after UFFDIO_REGISTER\n", in, n);
	CHECK_EQ_INT(in, 0);
	static char src[4096];
	memset(src, 'C', sizeof(src));
	struct uffdio_copy copy = {.dst = (uintptr_t)p, .src = (uintptr_t)src, .len = PG};
	int rc = ioctl(uffd, UFFDIO_COPY, &copy);
	printf("# UFFDIO_COPY into a discarded page: %s\n", rc ? strerror(errno) : "done");
	CHECK_EQ_INT(rc, 0);
	if (!rc)
		CHECK_EQ_INT(p[PG - 1], 'C');
	CHECK_EQ_INT(ioctl(uffd, UFFDIO_UNREGISTER, &reg.range), 0);
	close(uffd);
	samepage_close(sp);
}

/*
 * Finding 46 (RELIABILITY.md): an engine that had no region in the range
 * when a wrapper held the engines there registered it (a merge-any engine
 * does so from its own thread, at the start of its next full scan; here
 * another thread's samepage_madvise) and merged its pages before the
 * wrapper's system call: mremap then failed with EFAULT (the range was
 * several mappings; soak.minute once), and MADV_DONTNEED discarded
 * private mappings of the pool, whose pages then read their old contents,
 * not zeros.  The wrappers now end under the address-space lock, once no
 * engine added a region since they held the engines.  The window is a few
 * microseconds; the debug (sanitizer) build widens it to 50 ms with
 * SAMEPAGE_DEBUG_PAUSE, where both tests failed in every round before.
 */
struct late_register {
	samepage_t *sp;
	char *p;
	size_t len;
	pthread_barrier_t start;
	unsigned delay_us; /* after the barrier */
	int err;	   /* the registration's */
};

/* Registers the range delay_us after the barrier: inside the wrapper's
 * pause, in a debug build (elsewhere a moved range may be gone: -ENOMEM,
 * as from the kernel's madvise). */
static void *register_late(void *arg)
{
	struct late_register *l = arg;
	pthread_barrier_wait(&l->start);
	usleep(l->delay_us);
	l->err = samepage_madvise(l->sp, l->p, l->len, SAMEPAGE_MERGEABLE);
	REQUIRE(l->err == 0 || l->err == -ENOMEM);
	return NULL;
}

/* A fresh range of n pages of val, registered with sp by another thread
 * delay_us after the caller passes the barrier. */
static char *range_registered_late(samepage_t *sp, size_t n, int val, unsigned delay_us,
				   struct late_register *l, pthread_t *t)
{
	char *p = map_pages(n);
	memset(p, val, n * PG);
	*l = (struct late_register){.sp = sp, .p = p, .len = n * PG, .delay_us = delay_us};
	pthread_barrier_init(&l->start, NULL, 2);
	REQUIRE(pthread_create(t, NULL, register_late, l) == 0);
	pthread_barrier_wait(&l->start);
	return p;
}

static samepage_t *engine_with_anchor(int val)
{
	samepage_t *sp = open_fast();
	char *anchor = map_pages(4);
	memset(anchor, val, 4 * PG);
	REQUIRE(samepage_madvise(sp, anchor, 4 * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	for (int k = 0; k < 50 && pages_mapping_pool(anchor, 4) < 4; k++)
		REQUIRE(wait_scans(sp, 1) == 0);
	REQUIRE(pages_mapping_pool(anchor, 4) == 4);
	return sp;
}

/* The range of one round: where it is and how long (an mremap moves and
 * grows it). */
struct round_range {
	char *p;
	size_t len;
	bool registered; /* the other thread's registration took */
};

/* Ten rounds of: a fresh range of 64 pages of val, registered by another
 * thread 5 ms into call() (or call() 15 ms into the registration: late),
 * which this thread makes on it with SAMEPAGE_DEBUG_PAUSE=pause; then
 * check() once that thread is done.  Each says what went wrong, and
 * returns how many things did. */
static size_t late_region_rounds(const char *pause, int val, bool late,
				 size_t (*call)(struct round_range *r, size_t round),
				 size_t (*check)(samepage_t *sp, struct round_range *r,
						 size_t round))
{
	const size_t n = 64;
	setenv("SAMEPAGE_DEBUG_PAUSE", pause, 1);
	samepage_t *sp = engine_with_anchor(val);
	size_t bad = 0;
	for (size_t k = 0; k < 10; k++) {
		struct late_register l;
		pthread_t t;
		char *p = range_registered_late(sp, n, val, late ? 0 : 5000, &l, &t);
		struct round_range r = {p, n * PG, false};
		if (late)
			usleep(15000);
		bad += call(&r, k);
		pthread_join(t, NULL);
		r.registered = l.err == 0;
		bad += check(sp, &r, k);
		REQUIRE(samepage_madvise(sp, r.p, r.len, SAMEPAGE_UNMERGEABLE) == 0);
		munmap(r.p, r.len);
		check_tick();
	}
	samepage_close(sp);
	return bad;
}

static size_t grow(struct round_range *r, size_t round)
{
	char *q = mremap(r->p, r->len, r->len + PG, MREMAP_MAYMOVE);
	if (q == MAP_FAILED) {
		fprintf(stderr, "round %zu: mremap to grow: %s\n", round, strerror(errno));
		return 1;
	}
	r->p = q;
	r->len += PG;
	return 0;
}

/* The pages of 64 that do not read c, and the page grown after them
 * that does not read zeros. */
static size_t unlike(const struct round_range *r, char c, size_t round)
{
	size_t n = 0;
	for (size_t i = 0; i < 64; i++)
		n += r->p[i * PG + 7] != c;
	if (r->len > 64 * PG)
		n += r->p[64 * PG] != 0;
	if (n)
		fprintf(stderr, "round %zu: %zu pages do not read what they should\n", round, n);
	return n;
}

/* The contents moved, and so did the registration (as VM_MERGEABLE moves
 * with a kernel VMA): the pages merge where they are now. */
static size_t contents_moved(samepage_t *sp, struct round_range *r, size_t round)
{
	size_t bad = unlike(r, 'm', round);
	for (int k = 0; k < 20 && r->registered && pages_mapping_pool(r->p, 64) < 64; k++)
		REQUIRE(wait_scans(sp, 1) == 0);
	if (r->registered && pages_mapping_pool(r->p, 64) < 64) {
		fprintf(stderr, "round %zu: the moved range merges no more\n", round);
		bad++;
	}
	return bad;
}

void test_mremap_vs_new_region(void)
{
	CHECK_EQ_U64(late_region_rounds("mremap:50000", 'm', false, grow, contents_moved), 0);
}

static size_t discard(struct round_range *r, size_t round)
{
	(void)round;
	REQUIRE(madvise(r->p, r->len, MADV_DONTNEED) == 0);
	return 0;
}

static size_t zeros(samepage_t *sp, struct round_range *r, size_t round)
{
	(void)sp;
	return unlike(r, 0, round);
}

void test_discard_vs_new_region(void)
{
	CHECK_EQ_U64(late_region_rounds("discard:50000", 'd', false, discard, zeros), 0);
}

/* The same race for MADV_WIPEONFORK (finding 47): a range registered
 * between the wrapper's look at the engines and its madvise read the
 * mappings' flags before the kernel set wipe-on-fork, so it was not kept
 * out; its pages merged, and the kernel refused the advice on the pool's
 * mappings (EINVAL), or, merged after it, a forked child read the
 * parent's data there instead of zeros.  Registration now also reads the
 * advice from the promises, which the wrapper sets first. */
static size_t wipe_on_fork(struct round_range *r, size_t round)
{
	if (!madvise(r->p, r->len, MADV_WIPEONFORK))
		return 0;
	fprintf(stderr, "round %zu: madvise(MADV_WIPEONFORK): %s\n", round, strerror(errno));
	return 1;
}

static size_t child_reads_zeros(samepage_t *sp, struct round_range *r, size_t round)
{
	REQUIRE(wait_scans(sp, 2) == 0); /* what merges later must keep out too */
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0)
		_exit(unlike(r, 0, round) != 0);
	return adv_wait(pid) != 0;
}

void test_wipeonfork_vs_new_region(void)
{
	CHECK_EQ_U64(
	    late_region_rounds("wipeonfork:50000", 'w', false, wipe_on_fork, child_reads_zeros), 0);
}

/* The same, the discard made while the region is being added (finding
 * 46's first fix bumped regions_added before the engine's span grew): the
 * wrapper read the new count but the old span, left the engine alone, and
 * the engine merged the range before the discard.  The count is now
 * bumped once the region is there. */
void test_discard_vs_region_being_added(void)
{
	CHECK_EQ_U64(
	    late_region_rounds("region_add:50000,discard:300000", 'a', true, discard, zeros), 0);
}

/* The same race for the advice the promises remember (finding 48): the
 * wrapper changed the promise, then called the kernel; a registration in
 * between read the mapping's flags from smaps (still `dc`) and put
 * MADV_DONTFORK back in the promises after MADV_DOFORK had taken it
 * out; every later merge gave it to its mapping of the pool, and a forked
 * child did not read the range's contents.  The flag is set here with a
 * raw system call, as by another library; the pages are written and
 * merged again before the fork (the kernel's MADV_DOFORK cleared the
 * flag on the mappings merged during the call). */
static size_t dofork(struct round_range *r, size_t round)
{
	REQUIRE(syscall(SYS_madvise, r->p, r->len, MADV_DONTFORK) == 0);
	if (!madvise(r->p, r->len, MADV_DOFORK))
		return 0;
	fprintf(stderr, "round %zu: madvise(MADV_DOFORK): %s\n", round, strerror(errno));
	return 1;
}

static size_t child_reads_contents(samepage_t *sp, struct round_range *r, size_t round)
{
	/* Written again (copies), then merged again: what do merges give? */
	REQUIRE(wait_scans(sp, 2) == 0);
	memset(r->p, 'f', r->len);
	REQUIRE(wait_scans(sp, 2) == 0);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0)
		_exit(unlike(r, 'f', round) != 0);
	int st = adv_wait(pid);
	if (st)
		fprintf(stderr, "round %zu: a forked child could not read the range (%d)\n", round,
			st);
	return st != 0;
}

void test_dofork_vs_new_region(void)
{
	CHECK_EQ_U64(late_region_rounds("advice:50000", 'f', false, dofork, child_reads_contents),
		     0);
}

/*
 * Finding 48: a discard the kernel refuses changed nothing under the
 * kernel's KSM, but here the merged pages were made zeros first, then the
 * kernel said EINVAL (MADV_DONTNEED and MADV_FREE on locked memory,
 * MADV_REMOVE on private memory): the application's data was gone.  Now
 * the locked part is refused as the kernel refuses it (after the
 * mappings before it, which the kernel discards first), and MADV_REMOVE
 * goes to the kernel alone.
 */
void test_discard_refused_keeps_contents(void)
{
	const size_t n = 64, half = 32;
	char *p;
	samepage_t *sp = adv_merged(&p, n, 'k');
	REQUIRE(pages_mapping_pool(p, n) == n);
	REQUIRE(mlock(p + half * PG, half * PG) == 0);
	static const int refused[] = {MADV_DONTNEED, MADV_FREE, MADV_REMOVE};
	for (size_t k = 0; k < sizeof(refused) / sizeof(refused[0]); k++) {
		errno = 0;
		CHECK_EQ_INT(madvise(p + half * PG, half * PG, refused[k]), -1);
		CHECK(errno == EINVAL || errno == EACCES);
	}
	/* The whole range: the unlocked half discarded, then EINVAL. */
	errno = 0;
	CHECK_EQ_INT(madvise(p, n * PG, MADV_DONTNEED), -1);
	CHECK_EQ_INT(errno, EINVAL);
	size_t zeros = 0, kept = 0;
	for (size_t i = 0; i < n; i++) {
		zeros += i < half && p[i * PG + 7] == 0;
		kept += i >= half && p[i * PG + 7] == 'k';
	}
	CHECK_EQ_U64(zeros, half);
	CHECK_EQ_U64(kept, half);
	munlock(p + half * PG, half * PG);
	samepage_close(sp);
}

/* Finding 48: MADV_GUARD_INSTALL zaps the pages of its range; once the
 * guard is removed, anonymous pages read zeros.  On merged pages (private
 * mappings of the pool, which Linux 6.15 lets take guards) they read the
 * pool's pages again, the old contents.  Now they are made anonymous
 * first, as for MADV_DONTNEED. */
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#define MADV_GUARD_REMOVE 103
#endif
void test_guard_on_merged_pages(void)
{
	const size_t n = 64;
	char *p;
	samepage_t *sp = adv_merged(&p, n, 'g');
	REQUIRE(pages_mapping_pool(p, n) == n);
	wr(sp, "run", "0");
	if (madvise(p + 8 * PG, 4 * PG, MADV_GUARD_INSTALL) && errno == EINVAL &&
	    syscall(SYS_madvise, map_pages(1), PG, MADV_GUARD_INSTALL))
		SKIP("the kernel has no guard regions (MADV_GUARD_INSTALL, Linux 6.13)");
	REQUIRE(madvise(p + 8 * PG, 4 * PG, MADV_GUARD_REMOVE) == 0);
	check_discarded(p, n, 8, 12, 'g');
	samepage_close(sp);
}

/* Finding 48: MADV_POPULATE_WRITE (QEMU preallocates hot-plugged memory
 * with it) over pages a batch of merges had in its window failed under
 * the uffd-user and mprotect windows (the kernel's write faults there
 * fail, EFAULT or EINVAL), where under the kernel's KSM it breaks the KSM
 * pages.  Now it waits for the batch (the address-space lock).  The debug
 * build holds each window open 20 ms. */
void test_populate_write_during_merges(void)
{
	const size_t n = 64;
	setenv("SAMEPAGE_DEBUG_PAUSE", "merge_window:20000", 1);
	char *p;
	samepage_t *sp = adv_registered(&p, n, 'p');
	wr(sp, "run", "1");
	size_t failed = 0, calls = 0;
	for (int round = 0; round < 10; round++) {
		REQUIRE(wait_scans(sp, 2) == 0); /* merged again */
		for (int k = 0; k < 20; k++, calls++) {
			if (madvise(p, n * PG, MADV_POPULATE_WRITE)) {
				if (!failed)
					fprintf(stderr, "madvise(MADV_POPULATE_WRITE): %s\n",
						strerror(errno));
				failed++;
			}
			usleep(2000);
		}
		check_tick();
	}
	printf("# %zu of %zu calls failed; merged at the end %zu\n", failed, calls,
	       pages_mapping_pool(p, n));
	CHECK_EQ_U64(failed, 0);
	for (size_t i = 0; i < n * PG; i += 97)
		REQUIRE(p[i] == 'p');
	samepage_close(sp);
}

/* Finding 48: the application's UFFDIO_REGISTER failed with EBUSY when an
 * engine registered the range during the call: a registration put the
 * merge windows' userfaultfd on all of it, the pages the application's
 * own userfaultfd keeps out too, after the wrapper had taken it off.  A
 * registration now leaves those ranges alone (QEMU registers guest RAM
 * so for a postcopy migration's incoming side). */
static int round_uffd = -1;

static size_t uffd_register(struct round_range *r, size_t round)
{
	round_uffd = app_uffd();
	struct uffdio_register reg = {.range = {(uintptr_t)r->p, r->len},
				      .mode = UFFDIO_REGISTER_MODE_MISSING};
	if (!ioctl(round_uffd, UFFDIO_REGISTER, &reg))
		return 0;
	fprintf(stderr, "round %zu: the application's UFFDIO_REGISTER: %s\n", round,
		strerror(errno));
	return 1;
}

static size_t uffd_unregister(samepage_t *sp, struct round_range *r, size_t round)
{
	(void)sp;
	struct uffdio_range range = {(uintptr_t)r->p, r->len};
	ioctl(round_uffd, UFFDIO_UNREGISTER, &range);
	close(round_uffd);
	return unlike(r, 'u', round);
}

void test_uffd_register_vs_new_region(void)
{
	CHECK_EQ_U64(
	    late_region_rounds("uffd_register:50000", 'u', false, uffd_register, uffd_unregister),
	    0);
}

/* Finding 48: a length that is not a multiple of the page size covers
 * its last page too (munmap(p, 4097) unmaps two pages); the wrappers'
 * bookkeeping rounded it down: the engine kept the last page registered,
 * and memory mapped there later, which nobody made mergeable, was
 * tracked (and merged). */
void test_unaligned_munmap_forgets_last_page(void)
{
	const size_t n = 64;
	char *p;
	samepage_t *sp = adv_merged(&p, n, 'e');
	REQUIRE(munmap(p + (n - 2) * PG, PG + 1) == 0); /* the last two pages */
	char *q = mmap(p + (n - 2) * PG, 2 * PG, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (q != p + (n - 2) * PG)
		SKIP("could not map the same address again");
	memset(q, 'e', 2 * PG); /* never made mergeable */
	REQUIRE(wait_scans(sp, 3) == 0);
	CHECK_EQ_INT(rd(sp, "pages_tracked"), (long long)n - 2);
	CHECK_EQ_U64(pages_mapping_pool(q, 2), 0);
	samepage_close(sp);
}

/* mseal(2) (Linux 6.10; no wrapper in glibc 2.36): the library's, when it
 * has one, else the kernel's by syscall(), as a program would call it. */
int mseal(void *addr, size_t len, unsigned long flags) __attribute__((weak));

static int seal(void *p, size_t len, bool raw)
{
	if (!raw && mseal)
		return mseal(p, len, 0);
	return (int)syscall(462 /* SYS_mseal */, p, len, 0UL);
}

/* Whether the n pages at p all read byte c. */
static bool all_read(const char *p, size_t n, char c)
{
	for (size_t i = 0; i < n * PG; i++)
		if (p[i] != c)
			return false;
	return true;
}

/*
 * RELIABILITY.md 113: mseal(2) on merged pages.  A merged page is a
 * mapping of the pool, and its discard or unmerge maps new memory over it,
 * which a seal refuses: madvise(MADV_DONTNEED) of 32 merged, then sealed,
 * pages failed with EPERM and left them unchanged, and run=2 failed with
 * EPERM.  Memory sealed before it merged was tried at every full scan
 * (each merge's mmap refused) and counted nowhere.  Now the library's
 * mseal() gives merged pages private copies before the seal, and sealed
 * memory (by its mseal(), by a seal found in the maps at registration, or
 * by a merge the seal refused) is kept out and counted in
 * pages_kept_sealed.
 */
void test_sealed_kept(void)
{
	const size_t n = 32;
	char *probe = map_pages(1);
	if (seal(probe, PG, true) != 0) /* (left mapped: a seal is for good) */
		SKIP("no mseal(2) in this kernel (%s): Linux 6.10 has it", strerror(errno));
	/* 0: merged, then sealed by the library's mseal(); 1: sealed by the
	 * kernel's, then registered; 2: registered, then sealed by the
	 * kernel's before any merge. */
	for (int how = 0; how < 3; how++) {
		samepage_t *sp = open_fast();
		char *p = map_pages(n);
		memset(p, 'm', n * PG);
		if (how == 1)
			REQUIRE(seal(p, n * PG, true) == 0);
		REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
		if (how == 2)
			REQUIRE(seal(p, n * PG, true) == 0);
		wr(sp, "run", "1");
		REQUIRE(wait_scans(sp, 2) == 0);
		if (how == 0) {
			CHECK_EQ_U64(pages_mapping_pool(p, n), n);
			REQUIRE(seal(p, n * PG, false) == 0);
		}
		REQUIRE(wait_scans(sp, 2) == 0);
		CHECK_EQ_U64(pages_mapping_pool(p, n), 0);
		CHECK(all_read(p, n, 'm'));
		/* A discard reads zeros, as the kernel lets a sealed writable
		 * private mapping discard; run=2 has nothing to refuse. */
		CHECK_EQ_INT(madvise(p, n * PG, MADV_DONTNEED), 0);
		CHECK(all_read(p, n, 0));
		memset(p, 'm', n * PG);
		CHECK_EQ_INT(samepage_write(sp, "run", "2"), 0);
		wr(sp, "run", "1");
		REQUIRE(wait_scans(sp, 2) == 0);
		CHECK_EQ_U64(pages_mapping_pool(p, n), 0);
		CHECK(all_read(p, n, 'm'));
		CHECK_EQ_INT(rd(sp, "pages_kept_sealed"), (long long)n); /* and said so */
		samepage_close(sp);
		CHECK(all_read(p, n, 'm')); /* (sealed: never unmapped) */
	}
}

/* RELIABILITY.md 114: madvise(MADV_REMOVE) of merged pages failed with
 * EACCES, where the kernel says EINVAL for the application's private
 * anonymous memory (a merged page is a private mapping of the pool, a
 * file: the kernel's EACCES).  Nothing is removed either way. */
void test_remove_merged_errno(void)
{
	const size_t n = 16;
	char *p = map_pages(n);
	memset(p, 'r', n * PG);
	errno = 0;
	CHECK_EQ_INT(madvise(p, n * PG, MADV_REMOVE), -1);
	int unmerged = errno; /* the kernel's, for private anonymous memory */
	samepage_t *sp = adv_merged_all(p, n, 20);
	errno = 0;
	CHECK_EQ_INT(madvise(p, n * PG, MADV_REMOVE), -1);
	CHECK_EQ_INT(errno, unmerged);
	CHECK_EQ_INT(errno, EINVAL);
	CHECK(all_read(p, n, 'r'));
	CHECK_EQ_U64(pages_mapping_pool(p, n), n);
	samepage_close(sp);
	munmap(p, n * PG);
}
