// SPDX-License-Identifier: MIT
/*
 * test_stress.c - nothing is lost while pages merge.
 *
 * Writer threads own interleaved pages of one mergeable range and keep a
 * shadow copy of each; they fill pages with a few patterns (so pages keep
 * merging) and poke single bytes (so merged pages keep breaking), and
 * check their pages against the shadow all along.  Meanwhile another
 * thread maps, fills, registers, moves (mremap), re-protects (mprotect) and
 * unmaps other mergeable ranges.  At the end every byte must equal its
 * shadow, merges and copy-on-write breaks must have happened, and no range
 * the application unmapped may map the pool again.
 */
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define NPAGES 2048
#define WRITERS 3
#define OPS 1500000

static samepage_t *sp;
static char *area;
static char *shadow;
static atomic_int failures;
static atomic_int writers_done;

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void *writer(void *arg)
{
	long t = (long)arg;
	uint64_t s = 0x9e3779b97f4a7c15ULL * (uint64_t)(t + 1);
	for (int op = 0; op < OPS; op++) {
		size_t pg = (rnd(&s) % (NPAGES / WRITERS)) * WRITERS + (size_t)t;
		char *p = area + pg * PG, *sh = shadow + pg * PG;
		switch (rnd(&s) % 8) {
		case 0: { /* a whole page of one of 4 patterns: duplicates */
			int v = (int)(rnd(&s) % 4);
			memset(p, v, PG);
			memset(sh, v, PG);
			break;
		}
		case 1:
		case 2: { /* a few bytes: breaks a merged page */
			for (int k = 0; k < 3; k++) {
				size_t off = rnd(&s) % PG;
				char v = (char)rnd(&s);
				p[off] = v;
				sh[off] = v;
			}
			break;
		}
		default: /* read and check */
			if (memcmp(p, sh, PG)) {
				fprintf(stderr, "writer %ld: page %zu differs from its shadow\n", t,
					pg);
				atomic_fetch_add(&failures, 1);
			}
			break;
		}
		if (op % 64 == 0)
			sched_yield(); /* give pages time to stay unchanged and merge */
	}
	atomic_fetch_add(&writers_done, 1);
	return NULL;
}

/* Maps, registers, moves, re-protects and unmaps ranges while merging goes on. */
static void *churn(void *arg)
{
	uint64_t s = 42;
	for (int round = 0; atomic_load(&writers_done) < WRITERS; round++) {
		size_t n = 64 + rnd(&s) % 192;
		char *p = map_pages(n);
		memset(p, 'z', n * PG);
		REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
		usleep(2000);
		if (round % 3 == 0) {
			REQUIRE(mprotect(p, n * PG, PROT_READ) == 0);
			usleep(1000);
			REQUIRE(mprotect(p, n * PG, PROT_READ | PROT_WRITE) == 0);
		}
		if (round % 2 == 0) {
			char *q = mremap(p, n * PG, n * PG, MREMAP_MAYMOVE);
			REQUIRE(q != MAP_FAILED);
			p = q;
		}
		for (size_t i = 0; i < n * PG; i += 257)
			if (p[i] != 'z') {
				fprintf(stderr, "churn: byte %zu of a moved range is %d\n", i,
					p[i]);
				atomic_fetch_add(&failures, 1);
				break;
			}
		p[0] = 'y'; /* writable after the protections came back */
		REQUIRE(munmap(p, n * PG) == 0);
	}
	return NULL;
}

int main(void)
{
	pthread_t w[WRITERS], c;
	sp = open_fast();
	area = map_pages(NPAGES);
	shadow = malloc(NPAGES * PG);
	REQUIRE(shadow);
	for (size_t i = 0; i < NPAGES; i++) {
		memset(area + i * PG, (int)(i % 4), PG);
		memset(shadow + i * PG, (int)(i % 4), PG);
	}
	CHECK_EQ_INT(samepage_madvise(sp, area, NPAGES * PG, SAMEPAGE_MERGEABLE), 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 2) == 0);
	CHECK(rd(sp, "pages_sharing") > NPAGES / 2);

	for (long t = 0; t < WRITERS; t++)
		REQUIRE(pthread_create(&w[t], NULL, writer, (void *)t) == 0);
	REQUIRE(pthread_create(&c, NULL, churn, NULL) == 0);
	for (int t = 0; t < WRITERS; t++)
		pthread_join(w[t], NULL);
	pthread_join(c, NULL);

	REQUIRE(wait_scans(sp, 2) == 0);
	CHECK_EQ_INT(atomic_load(&failures), 0);
	CHECK(memcmp(area, shadow, NPAGES * PG) == 0);
	CHECK(rd(sp, "cow_ksm") > 0); /* merged pages were written */
	/* ...and pages merge again: smart scan may skip much-written pages
	 * for up to 8 scans, so give it up to 20. */
	for (int k = 0; k < 20 && rd(sp, "pages_sharing") == 0; k++)
		REQUIRE(wait_scans(sp, 1) == 0);
	CHECK(rd(sp, "pages_sharing") > 0);
	/* Everything the application mapped is unmapped now: no merge may
	 * have put a pool mapping back anywhere (a range that was moved or
	 * unmapped while it was being merged). */
	munmap(area, NPAGES * PG);
	CHECK_EQ_INT(pool_mappings(), 0);
	CHECK_EQ_INT(rd(sp, "pool_pages"), 0);
	CHECK_EQ_INT(rd(sp, "pages_tracked"), 0);
	printf("merge_window_waits %lld, cow_ksm %lld, pool_pages_reclaimed %lld\n",
	       rd(sp, "merge_window_waits"), rd(sp, "cow_ksm"), rd(sp, "pool_pages_reclaimed"));
	samepage_close(sp);
	free(shadow);
	return check_report("stress");
}
