/* SPDX-License-Identifier: MIT */
/*
 * check.h - the tests' assertions.  A failed check prints both operands
 * with the file and line, counts the failure and goes on; check_report()
 * prints "N passed, N failed" and gives the exit status.  A test that
 * cannot run here prints why and exits 77 (ctest's SKIP_RETURN_CODE).
 */
#ifndef SAMEPAGE_CHECK_H
#define SAMEPAGE_CHECK_H

#include <stdio.h>
#include <stdlib.h>

/* One pair of counters for the whole test program, whatever number of
 * files include this header (weak: the linker keeps one of them). */
__attribute__((weak)) int check_passed, check_failed;

/* A heartbeat for a runner that watches for hangs (adv_util.h): it maps a
 * shared word here; every check and every full scan waited for counts as
 * progress. */
__attribute__((weak)) volatile unsigned long *check_beat;
static inline void check_tick(void)
{
	if (check_beat)
		__atomic_fetch_add(check_beat, 1, __ATOMIC_RELAXED);
}

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		check_tick();                                                                      \
		if (cond) {                                                                        \
			check_passed++;                                                            \
		} else {                                                                           \
			check_failed++;                                                            \
			fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);   \
		}                                                                                  \
	} while (0)

#define CHECK_CMP(a, op, b, T, fmt)                                                                \
	do {                                                                                       \
		T check_a_ = (a), check_b_ = (b);                                                  \
		check_tick();                                                                      \
		if (check_a_ op check_b_) {                                                        \
			check_passed++;                                                            \
		} else {                                                                           \
			check_failed++;                                                            \
			fprintf(stderr, "%s:%d: %s %s %s failed: " fmt " vs " fmt "\n", __FILE__,  \
				__LINE__, #a, #op, #b, check_a_, check_b_);                        \
		}                                                                                  \
	} while (0)

#define CHECK_EQ_INT(a, b) CHECK_CMP(a, ==, b, long long, "%lld")
#define CHECK_EQ_U64(a, b) CHECK_CMP(a, ==, b, unsigned long long, "%llu")
#define CHECK_GE_U64(a, b) CHECK_CMP(a, >=, b, unsigned long long, "%llu")
#define CHECK_LE_U64(a, b) CHECK_CMP(a, <=, b, unsigned long long, "%llu")

/* Stops the test at once: for failures that make the rest meaningless. */
#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: REQUIRE(%s) failed\n", __FILE__, __LINE__, #cond); \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

#define SKIP(...)                                                                                  \
	do {                                                                                       \
		printf("SKIP: ");                                                                  \
		printf(__VA_ARGS__);                                                               \
		printf("\n");                                                                      \
		exit(77);                                                                          \
	} while (0)

static inline int check_report(const char *name)
{
	printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
	return check_failed ? 1 : 0;
}

#endif
