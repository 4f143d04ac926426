// SPDX-License-Identifier: MIT
/*
 * bench_churn.c - workload 9: the application's own address-space calls
 * while memory merges (issue 9, item 9: with 10-16k mappings, mixing
 * mmap/mprotect/munmap into a workload cut its throughput ~500-fold, and
 * fork() took up to 2.8 s with 64-128 MiB registered).
 *
 * 128 MiB of pairs of duplicate pages is merged, and 16,000 other one-page
 * mappings are made (alternate protections: they cannot join); then, with
 * the scanner running, for 2 s: mmap a page elsewhere, mprotect it, munmap
 * it (one operation: the three calls), and five fork()s whose child exits
 * at once.  The kernel's KSM is the baseline: it sees none of these calls.
 */
#include "harness.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define REGISTERED_MIB 128
#define OTHER_MAPPINGS 16000

int main(int argc, char **argv)
{
	struct bench b;
	size_t n = (size_t)REGISTERED_MIB << 20 >> 12;

	bench_init(&b, argc, argv, "9-churn");
	char *p = map_pages(n);
	for (size_t i = 0; i < n; i++)
		fill_page(p + i * PG, i / 2);
	if (bench_advise(&b.e, p, n * PG, true))
		bench_die("madvise(MERGEABLE)");
	static void *other[OTHER_MAPPINGS];
	for (int k = 0; k < OTHER_MAPPINGS; k++) {
		other[k] = mmap(NULL, PG, k % 2 ? PROT_READ : PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (other[k] == MAP_FAILED)
			bench_die("mmap");
	}
	bench_run(&b.e, 1);
	if (wait_full_scans(&b.e, 2, 300) < 0)
		return 1;
	long long merged = bench_counter(&b.e, "pages_sharing");

	uint64_t ops = 0, t0 = now_ns();
	while (secs_since(t0) < 2) {
		char *m =
		    mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			bench_die("mmap");
		m[0] = 1;
		mprotect(m, PG, PROT_READ);
		munmap(m, PG);
		ops++;
	}
	double churn = (double)ops / secs_since(t0);

	double fork_max = 0, fork_sum = 0;
	for (int k = 0; k < 5; k++) {
		uint64_t f0 = now_ns();
		pid_t pid = fork();
		if (pid == 0)
			_exit(0);
		if (pid < 0)
			bench_die("fork");
		double t = secs_since(f0);
		waitpid(pid, NULL, 0);
		fork_sum += t;
		fork_max = t > fork_max ? t : fork_max;
	}
	uint64_t c0 = now_ns();
	bench_close(&b.e);
	double close_t = secs_since(c0);

	bench_result(&b.o, "churn_ops", "ops/s", churn);
	bench_result(&b.o, "fork_time", "ms", fork_sum / 5 * 1e3);
	bench_result(&b.o, "fork_time_max", "ms", fork_max * 1e3);
	bench_result(&b.o, "close_time", "ms", close_t * 1e3);
	bench_result(&b.o, "pages_merged", "pages", (double)merged);
	for (int k = 0; k < OTHER_MAPPINGS; k++)
		munmap(other[k], PG);
	munmap(p, n * PG);
	return 0;
}
