// SPDX-License-Identifier: MIT
/* test_index.c - the stable index (lib/index.c), tested directly: the
 * chains of dups of one content, which debug.c's index_chains_ok() checks
 * under SAMEPAGE_DEBUG, kept right by every insert and free; the
 * unstable index's size; and a pool that is full. */
#include "../../lib/internal.h"
#include "check.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

static unsigned char page_a[PAGE_SIZE] __attribute__((aligned(PAGE_SIZE)));
static unsigned char page_b[PAGE_SIZE] __attribute__((aligned(PAGE_SIZE)));

/* The index's checksum of a page: the low half of its XXH3-64. */
static uint32_t checksum_of(const void *page)
{
	return (uint32_t)XXH3_64bits(page, PAGE_SIZE);
}

/* The length of the chain from head, by its links alone. */
static uint32_t chain_length(struct samepage *sp, uint32_t head)
{
	uint32_t n = 0;
	for (uint32_t i = head; i != NIL && n <= sp->dom->nr; n++) {
		uint32_t l = sp->stable.nodes[i].dupnext;
		i = l ? l - 1 : NIL;
	}
	return n;
}

/* Three dups of one content, made one after the other as a strip makes
 * them: one chain of 3, newest first; freed middle first, the counts
 * follow. */
static void test_chain_of_three(struct samepage *sp)
{
	memset(page_a, 0xa5, sizeof(page_a));
	uint32_t x, y, z, checksum = checksum_of(page_a);

	index_lock(sp);
	CHECK_EQ_INT(stable_insert(sp, page_a, checksum, NIL, &x), 0);
	CHECK_EQ_INT(stable_insert(sp, page_a, checksum, NIL, &y), 0);
	uint32_t want = sp->dom->nr;
	CHECK_EQ_INT(stable_insert(sp, page_a, checksum, want, &z), 0);
	CHECK_EQ_U64(z, want); /* at the place asked for, as a strip asks */
	CHECK_EQ_U64(stable_chain_head(sp, page_a, checksum), z);
	CHECK_EQ_U64(chain_length(sp, z), 3);
	CHECK_EQ_U64(sp->dom->chains, 1);
	CHECK_EQ_U64(sp->dom->dups, 3);
	CHECK(index_chains_ok(sp));

	stable_drop(sp, y, 0, false);
	CHECK(index_chains_ok(sp));
	CHECK_EQ_U64(chain_length(sp, z), 2);
	CHECK_EQ_U64(sp->dom->dups, 2);
	stable_drop(sp, z, 0, false); /* the head */
	CHECK(index_chains_ok(sp));
	CHECK_EQ_U64(stable_chain_head(sp, page_a, checksum), x);
	CHECK_EQ_U64(sp->dom->chains, 0);
	CHECK_EQ_U64(sp->dom->dups, 0);
	stable_drop(sp, x, 0, false);
	CHECK(index_chains_ok(sp));
	CHECK_EQ_U64(sp->dom->live, 0);
	index_unlock(sp);
}

/*
 * The scanner takes a page's checksum, then copies it: a writer in between
 * leaves a copy whose contents are not those of the checksum, and a KSM
 * page made of it holds other bytes than its checksum says.  It must stay
 * out of the chain of the checksum's contents, and a later dup of either
 * contents must join its own.  A strip (scan.c) that named the dup it made
 * last instead of looking the head up linked such pages into one chain:
 * lib.adv_signal_blocking_writer's invariant aborts.
 */
static void test_copy_changed_after_checksum(struct samepage *sp)
{
	memset(page_a, 0x11, sizeof(page_a));
	memset(page_b, 0x11, sizeof(page_b));
	page_b[100] = 0x12; /* written after its checksum was taken */
	uint32_t x, w, z, checksum = checksum_of(page_a);

	index_lock(sp);
	CHECK_EQ_INT(stable_insert(sp, page_a, checksum, NIL, &x), 0);
	CHECK_EQ_INT(stable_insert(sp, page_b, checksum, NIL, &w), 0);
	CHECK_EQ_INT(stable_insert(sp, page_a, checksum, NIL, &z), 0);
	CHECK_EQ_U64(stable_chain_head(sp, page_a, checksum), z);
	CHECK_EQ_U64(stable_chain_head(sp, page_b, checksum), w);
	CHECK_EQ_U64(chain_length(sp, w), 1);
	CHECK_EQ_U64(chain_length(sp, z), 2);
	CHECK_EQ_U64(sp->dom->chains, 1);
	CHECK_EQ_U64(sp->dom->dups, 2);
	CHECK(index_chains_ok(sp));
	stable_drop(sp, w, 0, false);
	CHECK(index_chains_ok(sp));
	CHECK_EQ_U64(chain_length(sp, z), 2);
	stable_drop(sp, x, 0, false);
	stable_drop(sp, z, 0, false);
	CHECK(index_chains_ok(sp));
	CHECK_EQ_U64(sp->dom->chains, 0);
	CHECK_EQ_U64(sp->dom->live, 0);
	index_unlock(sp);
}

static long long number(samepage_t *sp, const char *name)
{
	long long v = -1;
	CHECK_EQ_INT(samepage_read_number(sp, name, &v), 0);
	return v;
}

/* The unstable index is sized for the pages present, not for the range
 * registered: merge-any registers whole address spaces (a QEMU guest's
 * 1.6 GiB tracked for 190 MiB present), and its heads were sized by the
 * range, 1 MiB a guest rewritten at every full scan. */
/* Registers pages at p and scans them at full speed for `scans` full
 * scans (30 s at most: a hung test, not a timing). */
static void scan_fast(samepage_t *sp, char *p, size_t pages, long long scans)
{
	REQUIRE(samepage_madvise(sp, p, pages * PAGE_SIZE, SAMEPAGE_MERGEABLE) == 0);
	REQUIRE(samepage_write(sp, "pages_to_scan", "100000") == 0);
	REQUIRE(samepage_write(sp, "sleep_millisecs", "0") == 0);
	REQUIRE(samepage_write(sp, "run", "1") == 0);
	for (int i = 0; i < 30000 && number(sp, "full_scans") < scans; i++)
		usleep(1000);
	CHECK(number(sp, "full_scans") >= scans);
}

static void test_unstable_sized_for_present(void)
{
	const size_t pages = 65536, present = 64; /* 256 MiB, 256 KiB of it touched */
	samepage_t *sp;
	REQUIRE(samepage_open(&sp) == 0);
	char *p = mmap(NULL, pages * PAGE_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	REQUIRE(p != MAP_FAILED);
	for (size_t i = 0; i < present; i++)
		memset(p + i * PAGE_SIZE, (int)i + 1, PAGE_SIZE);
	scan_fast(sp, p, pages, 3);
	CHECK_EQ_INT(number(sp, "ksm_rmap_items"), (long long)present);
	pthread_mutex_lock(&sp->lock);
	uint64_t heads = (uint64_t)sp->unstable.mask + 1;
	pthread_mutex_unlock(&sp->lock);
	CHECK_LE_U64(heads, 1024); /* 32768 when sized by the range */
	samepage_close(sp);
	munmap(p, pages * PAGE_SIZE);
}

/* A local engine that could map only part of its pool (RLIMIT_AS,
 * valgrind: pool_open) holds that many KSM pages, and counts the pages
 * it could not merge for it (merges_skipped_pool_full).  Here its view is
 * cut to 16 pages by hand; 64 pairs of duplicates want 64 KSM pages. */
static void test_pool_full(void)
{
	const size_t pairs = 64, cap = 16;
	samepage_t *sp;
	REQUIRE(samepage_open(&sp) == 0);
	pthread_mutex_lock(&sp->lock);
	size_t view = sp->pool.view_pages;
	sp->pool.view_pages = cap;
	pthread_mutex_unlock(&sp->lock);
	char *p = mmap(NULL, 2 * pairs * PAGE_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(p != MAP_FAILED);
	for (size_t i = 0; i < 2 * pairs; i++)
		memset(p + i * PAGE_SIZE, (int)(i / 2) + 1, PAGE_SIZE);
	scan_fast(sp, p, 2 * pairs, 4);
	CHECK_EQ_INT(number(sp, "pages_shared"), (long long)cap);
	CHECK_EQ_INT(number(sp, "pages_sharing"), (long long)cap);
	CHECK(number(sp, "merges_skipped_pool_full") >= (long long)(2 * (pairs - cap)));
	for (size_t i = 0; i < 2 * pairs; i++)
		CHECK(p[i * PAGE_SIZE + 100] == (char)(i / 2 + 1));
	REQUIRE(samepage_write(sp, "run", "0") == 0);
	pthread_mutex_lock(&sp->lock);
	sp->pool.view_pages = view; /* for the unmap at close */
	pthread_mutex_unlock(&sp->lock);
	samepage_close(sp);
	munmap(p, 2 * pairs * PAGE_SIZE);
}

int main(void)
{
	samepage_t *sp;
	if (samepage_open(&sp)) {
		fprintf(stderr, "samepage_open failed\n");
		return 1;
	}
	test_chain_of_three(sp);
	test_copy_changed_after_checksum(sp);
	samepage_close(sp);
	test_unstable_sized_for_present();
	test_pool_full();
	return check_report("lib.index");
}
