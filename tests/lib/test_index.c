// SPDX-License-Identifier: MIT
/* test_index.c - the stable index (lib/index.c), tested directly: the
 * chains of dups of one content, which debug.c's index_chains_ok() checks
 * under SAMEPAGE_DEBUG, kept right by every insert and free; the
 * unstable index's size; a pool that is full; and the buckets, which
 * grow with the nodes, even when a process dies in the middle. */
#include "../../lib/internal.h"
#include "check.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

/* Page i of the bucket tests: contents of its own, except 0, 1 and 2,
 * three dups of one contents (one chain). */
static void node_page(unsigned char *page, uint32_t i)
{
	memset(page, 0, PAGE_SIZE);
	snprintf((char *)page, 64, "node %u", i < 3 ? 0 : i);
}

/* Inserts nodes first..last-1 (node_page), pinned: no mapping frees them,
 * nor the repair of a dead process's lock. */
static void insert_nodes(struct samepage *sp, uint32_t first, uint32_t last)
{
	for (uint32_t i = first; i < last; i++) {
		uint32_t idx;
		node_page(page_a, i);
		CHECK_EQ_INT(stable_insert(sp, page_a, checksum_of(page_a), NIL, &idx), 0);
		sp->stable.nodes[idx].pinned = 1;
	}
}

/* Every node inserted is found by its contents, the three dups as one
 * chain with the newest at its head. */
static void check_nodes_found(struct samepage *sp, uint32_t count)
{
	uint32_t missing = 0;
	for (uint32_t i = 2; i < count; i++) {
		node_page(page_a, i);
		uint32_t head = stable_chain_head(sp, page_a, checksum_of(page_a));
		missing += head == NIL;
		if (i == 2 && head != NIL)
			CHECK_EQ_U64(chain_length(sp, head), 3);
	}
	CHECK_EQ_U64(missing, 0);
	CHECK(index_chains_ok(sp));
}

/* The buckets start at 1 << DOM_BUCKET_BITS_MIN (4 KiB of heads) and
 * double as the nodes outgrow them.  A fixed table of DOM_BUCKETS heads
 * took 1 MiB once a few thousand nodes had touched each of its pages. */
static void test_buckets_grow(void)
{
	samepage_t *sp;
	REQUIRE(samepage_open(&sp) == 0);
	index_lock(sp);
	CHECK_EQ_U64(stable_buckets(sp), 1u << DOM_BUCKET_BITS_MIN);
	insert_nodes(sp, 0, 5000);
	CHECK_EQ_U64(stable_buckets(sp), 8192); /* doubled at 1025, 2049 and 4097 */
	check_nodes_found(sp, 5000);
	index_unlock(sp);
	samepage_close(sp);
}

/* A process died in the middle of a split (half of the buckets split, the
 * lock held): the next taker of the lock finishes it.  The half split is
 * made here by hand, the death by a child that takes the lock and exits. */
static void test_split_finished_after_death(void)
{
	samepage_t *sp;
	REQUIRE(samepage_open(&sp) == 0);
	index_lock(sp);
	uint32_t n = stable_buckets(sp);
	insert_nodes(sp, 0, n); /* full: the next node would split */
	CHECK_EQ_U64(stable_buckets(sp), n);
	struct stable_index *s = &sp->stable;
	for (uint32_t b = 0; b < n / 2; b++) { /* half of what buckets_split() does */
		uint32_t *lo = &s->heads[b], *hi = &s->heads[b + n];
		while (*lo) {
			struct stable_node *x = &s->nodes[*lo - 1];
			if (!(x->checksum & n)) {
				lo = &x->hnext;
				continue;
			}
			uint32_t l = *lo;
			*lo = x->hnext;
			x->hnext = 0;
			*hi = l;
			hi = &x->hnext;
		}
	}
	sp->dom->buckets_splitting = (uint8_t)(DOM_BUCKET_BITS_MIN + 1);
	index_unlock(sp);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		domain_lock(sp->dom);
		_exit(0); /* holding it */
	}
	int status;
	REQUIRE(waitpid(pid, &status, 0) == pid);
	index_lock(sp); /* EOWNERDEAD: index_repair() */
	CHECK_EQ_U64(stable_buckets(sp), 2 * n);
	CHECK_EQ_U64(sp->dom->buckets_splitting, 0);
	check_nodes_found(sp, n);
	CHECK_EQ_U64(sp->dom->live, n);
	index_unlock(sp);
	samepage_close(sp);
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

/* The bytes the kernel holds for a local engine's index file (memfd). */
static long long index_bytes(void)
{
	char path[64];
	long long bytes = -1;
	for (int fd = 0; fd < 1024; fd++) {
		char target[256];
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		ssize_t n = readlink(path, target, sizeof(target) - 1);
		struct stat st;
		if (n <= 0)
			continue;
		target[n] = '\0';
		if (strstr(target, "memfd:samepage-index") && stat(path, &st) == 0)
			bytes = (long long)st.st_blocks * 512;
	}
	return bytes;
}

/* 1,000 pairs merged by a local engine: the index costs what its 1,000
 * nodes and their buckets need, not the whole table of heads (1008 KiB
 * for these 4 MiB of KSM pages when the heads were fixed). */
static void test_index_sized_for_nodes(void)
{
	const size_t pairs = 1000;
	samepage_t *sp;
	REQUIRE(samepage_open(&sp) == 0);
	char *p = mmap(NULL, 2 * pairs * PAGE_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(p != MAP_FAILED);
	for (size_t i = 0; i < 2 * pairs; i++)
		snprintf(p + i * PAGE_SIZE, 64, "pair %zu", i % pairs);
	scan_fast(sp, p, 2 * pairs, 3);
	CHECK_EQ_INT(number(sp, "pages_shared"), (long long)pairs);
	long long bytes = index_bytes();
	printf("index of %zu KSM pages: %lld KiB\n", pairs, bytes >> 10);
	CHECK_CMP(bytes, >, 0, long long, "%lld");
	CHECK_CMP(bytes, <=, 128 << 10, long long, "%lld");
	samepage_close(sp);
	munmap(p, 2 * pairs * PAGE_SIZE);
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
	test_buckets_grow();
	test_split_finished_after_death();
	test_index_sized_for_nodes();
	test_unstable_sized_for_present();
	test_pool_full();
	return check_report("lib.index");
}
