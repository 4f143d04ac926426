// SPDX-License-Identifier: MIT
/*
 * adv_main.c - a reviewer's tests of libsamepage's promises: nothing is
 * lost while pages merge, fork keeps private copies, the application's
 * SIGSEGV handler keeps working, the MADV_DONTNEED hazard is handled, the
 * application stays in charge of its address space, all calls are
 * thread-safe, and the kernel's counters and rules hold.  Each began as a
 * bug found by an adversarial review and stays as a regression test.
 *
 * "test_adversarial NAME" runs one test in a child process under a hang
 * guard (adv_util.h), so that a deadlock is reported as such; with no
 * argument, every test of adversarial.def runs in turn.
 */
#include "adv_util.h"

#define ADV_TEST(name, hang, windows) void test_##name(void);
#include "adversarial.def"
#undef ADV_TEST

static const struct adv_test tests[] = {
#define ADV_TEST(name, hang, windows) {#name, test_##name, hang},
#include "adversarial.def"
#undef ADV_TEST
};

int main(int argc, char **argv)
{
	size_t n = sizeof(tests) / sizeof(tests[0]);
	if (argc > 1)
		return adv_run(tests, n, argv[1]);
	int failed = 0;
	for (size_t i = 0; i < n; i++) {
		int rc = adv_run(tests, n, tests[i].name);
		if (rc && rc != 77) {
			printf("# [FAIL] %s\n", tests[i].name);
			failed++;
		}
	}
	printf("adversarial: %d of %zu failed\n", failed, n);
	return failed ? 1 : 0;
}
