// SPDX-License-Identifier: MIT
/*
 * bench.c - estimate_bench: how fast `ksmctl estimate` reads and counts
 * another process's memory.  Not a test: it prints figures, for
 * docs/estimate.md and BENCHMARKS.md, and fails only if the counts are wrong.
 *
 * Each case forks child processes that fill private anonymous memory with a
 * known mix, then times the engine over them (wall clock and the CPU time
 * of this process, which is what "per core" means: the engine is one
 * thread), pass by pass: the estimate reads every page twice by default,
 * a first pass that only hashes and records, and the pass that counts.
 * Usage: estimate_bench [MiB [mixed|unique|image|sampled [PASSES]]]
 * (default: 1024 MiB, every case, 2 passes).
 */
#include "estimate-scan.h"
#include "splitmix.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define BASE 0x6e0000000000ULL

static void fill(unsigned char *p, uint64_t id)
{
	uint64_t *w = (uint64_t *)p;

	for (int i = 0; i < PAGE / 8; i++)
		w[i] = splitmix(id * 4099 + (uint64_t)i);
}

enum mix { MIXED, UNIQUE, IMAGE };

/*
 * MIXED: per 8 pages, 2 zero, 2 copies of one of 1024 contents, 4 unique.
 * UNIQUE: every page different (the cost of reading and hashing alone).
 * IMAGE: the same pages in every process (two VMs booted from one image):
 * every content has exactly one copy per process, the worst case for
 * confirmation, which must read each first copy again.
 */
static pid_t spawn(size_t pages, enum mix mix, int salt)
{
	int fds[2];
	char c;
	pid_t pid;

	if (pipe(fds))
		exit(1);
	pid = fork();
	if (pid == 0) {
		/* At a fixed address, so that the scan can be limited to it: the
		 * rest of the child is the parent's memory, shared since fork. */
		unsigned char *m = mmap((void *)BASE, pages * PAGE, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (m == MAP_FAILED)
			_exit(1);
		for (size_t i = 0; i < pages; i++) {
			unsigned char *p = m + i * PAGE;

			switch (mix) {
			case MIXED:
				if (i % 8 < 2)
					memset(p, 0, PAGE);
				else if (i % 8 < 4)
					fill(p, 1000000 + splitmix(i) % 1024);
				else
					fill(p, ((uint64_t)salt << 40) + i);
				break;
			case UNIQUE: fill(p, ((uint64_t)salt << 40) + i); break;
			case IMAGE: fill(p, i); break;
			}
		}
		if (write(fds[1], "r", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	if (read(fds[0], &c, 1) != 1)
		exit(1);
	close(fds[0]);
	close(fds[1]);
	return pid;
}

static double cpu_now(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run(const char *name, enum mix mix, int nprocs, size_t pages_each, double sample,
	       int passes)
{
	/* The children's memory is not marked mergeable: read it all. */
	struct est_config cfg = {.max_page_sharing = 256,
				 .sample = sample,
				 .confirm_budget = 256ULL << 20,
				 .range_start = BASE,
				 .range_end = BASE + pages_each * PAGE,
				 .all_memory = true,
				 .passes = passes};
	struct est_totals t;
	struct est *e;
	pid_t pids[8];

	for (int i = 0; i < nprocs; i++)
		pids[i] = spawn(pages_each, mix, i + 1);
	if (est_new(&cfg, &e))
		return 1;
	int cg = est_add_cgroup(e, "/");
	for (int i = 0; i < nprocs; i++)
		est_add_proc(e, pids[i], cg);
	for (int pass = 1; pass <= passes; pass++) {
		uint64_t b0 = est_bytes_read(e);
		double w0 = wall_now(), c0 = cpu_now(), w, c, gb;

		est_begin_pass(e, pass);
		for (int i = 0; i < nprocs; i++)
			est_scan_proc(e, i);
		if (pass == passes)
			est_finish(e, &t);
		w = wall_now() - w0;
		c = cpu_now() - c0;
		gb = (double)(est_bytes_read(e) - b0) / 1e9;
		printf(
		    "%-8s %2d x %5zu MiB  sample %-4g  pass %d/%d %-6s read %6.0f MiB  wall %6.3f s"
		    "  cpu %6.3f s  %5.2f GB/s wall  %5.2f GB/s per core",
		    name, nprocs, pages_each * PAGE >> 20, sample, pass, passes,
		    pass < passes ? "(hash)" : "(count)", gb * 1e9 / (1 << 20), w, c, gb / w,
		    gb / c);
		if (pass == passes)
			printf("  saved %llu pages  rereads %llu",
			       (unsigned long long)(t.u.zero_saved + t.u.tbl_saved),
			       (unsigned long long)t.rereads);
		putchar('\n');
		fflush(stdout);
	}
	for (int i = 0; i < nprocs; i++) {
		kill(pids[i], SIGKILL);
		waitpid(pids[i], NULL, 0);
	}
	/* The counts are known from the construction: check them. */
	uint64_t total = (uint64_t)nprocs * pages_each, want;
	if (mix == UNIQUE)
		want = 0;
	else if (mix == IMAGE)
		want = total - pages_each;
	else
		want = 0; /* checked below */
	uint64_t got = t.u.zero_saved + t.u.tbl_saved;
	est_free(e);
	if (t.u.scanned != total) {
		fprintf(stderr, "estimate_bench: scanned %llu pages, expected %llu\n",
			(unsigned long long)t.u.scanned, (unsigned long long)total);
		return 1;
	}
	if (mix != MIXED && sample >= 1 && got != want) {
		fprintf(stderr, "estimate_bench: saved %llu pages, expected %llu\n",
			(unsigned long long)got, (unsigned long long)want);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
	size_t pages = mib << 20 >> 12;
	int bad = 0;

	const char *only = argc > 2 ? argv[2] : "";
	int passes = argc > 3 ? atoi(argv[3]) : 2;

	if (passes < 1)
		passes = 1;
	printf("estimate_bench: %zu MiB per case, one scanning thread, %d passes\n", mib, passes);
	if (!*only || !strcmp(only, "mixed"))
		bad |= run("mixed", MIXED, 1, pages, 1.0, passes);
	if (!*only || !strcmp(only, "unique"))
		bad |= run("unique", UNIQUE, 1, pages, 1.0, passes);
	if (!*only || !strcmp(only, "image"))
		bad |= run("image", IMAGE, 2, pages / 2, 1.0, passes);
	if (!*only || !strcmp(only, "sampled"))
		bad |= run("mixed", MIXED, 1, pages, 0.1, passes);
	return bad;
}
