// SPDX-License-Identifier: MIT
/*
 * demo.c - `make demo`: the seed blog post's scenario, with libsamepage.
 *
 * One process holds the memory of several "guests" booted from the same
 * image: a part every guest has at the same offsets (kernel, libraries),
 * zero pages, and data of its own.  Merging is turned on the way the blog
 * post does it for the kernel (run = 1, pages_to_scan = 20000,
 * sleep_millisecs = 200), a live line shows the memory saved so far as
 * /proc/meminfo sees it, and a table sums up when the scanner converges.
 *
 * Usage: demo [--guests N] [--mib M] [--pages-to-scan N] [--sleep-ms N]
 */
#include <samepage.h>

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PG 4096UL

static long long kb(const char *path, const char *field)
{
	char line[256];
	long long v = 0;
	size_t n = strlen(field);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, n) && line[n] == ':')
			v = atoll(line + n + 1);
	fclose(f);
	return v;
}

static long long system_kb(void)
{
	return kb("/proc/meminfo", "AnonPages") + kb("/proc/meminfo", "Shmem");
}

static long long process_kb(void)
{
	return kb("/proc/self/smaps_rollup", "Pss_Anon") + kb("/proc/self/smaps_rollup", "Pss_Shmem");
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* CPU seconds of the engine's scanner thread ("samepage-ksmd"). */
static double scanner_cpu(void)
{
	char path[300], comm[64], stat[1024];
	double s = 0;
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		int is = fgets(comm, sizeof(comm), f) && !strncmp(comm, "samepage-ksmd", 13);
		fclose(f);
		snprintf(path, sizeof(path), "/proc/self/task/%s/stat", e->d_name);
		if (!is || !(f = fopen(path, "r")))
			continue;
		if (fgets(stat, sizeof(stat), f)) {
			unsigned long ut = 0, st = 0;
			char *p = strrchr(stat, ')');
			if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
					&ut, &st) == 2)
				s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
		}
		fclose(f);
	}
	if (d)
		closedir(d);
	return s;
}

static long long rd(samepage_t *sp, const char *name)
{
	long long v = 0;
	samepage_read_number(sp, name, &v);
	return v;
}

static void set(samepage_t *sp, const char *name, const char *value)
{
	int err = samepage_write(sp, name, value);
	if (err) {
		fprintf(stderr, "demo: %s = %s: %s\n", name, value, samepage_strerror(err));
		exit(2);
	}
	printf("  echo %-6s > %s\n", value, name);
}

/* The image: 60% shared (same contents at the same offsets in every
 * guest), 20% zero pages, 20% private (different in every guest). */
static void boot_guest(char *mem, size_t pages, unsigned guest)
{
	for (size_t i = 0; i < pages; i++) {
		uint64_t *w = (uint64_t *)(mem + i * PG);
		unsigned kind = (unsigned)(i * 7 % 10);
		if (kind < 6)
			for (size_t k = 0; k < PG / 8; k++)
				w[k] = (i * 0x9e3779b97f4a7c15ULL) ^ k;
		else if (kind < 8)
			mem[i * PG] = 0; /* touched: a present zero page */
		else
			for (size_t k = 0; k < PG / 8; k++)
				w[k] = ((uint64_t)guest << 56) ^ (i * 0xc2b2ae3d27d4eb4fULL) ^ k;
	}
}

int main(int argc, char **argv)
{
	unsigned guests = 4, mib = 256;
	const char *pages_to_scan = "20000", *sleep_ms = "200";
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--guests"))
			guests = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--mib"))
			mib = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--pages-to-scan"))
			pages_to_scan = argv[i + 1];
		else if (!strcmp(argv[i], "--sleep-ms"))
			sleep_ms = argv[i + 1];
		else {
			fprintf(stderr, "usage: demo [--guests N] [--mib M] [--pages-to-scan N] "
					"[--sleep-ms N]\n");
			return 2;
		}
	}
	if (!guests || !mib) {
		fprintf(stderr, "demo: --guests and --mib must be at least 1\n");
		return 2;
	}
	size_t pages = (size_t)mib * 256;
	samepage_t *sp;
	int err = samepage_open(&sp);
	if (err) {
		fprintf(stderr, "demo: samepage_open: %s\n", samepage_strerror(err));
		return 1;
	}

	printf("samepage demo: %u guests x %u MiB from one image (60%% shared, 20%% zero, 20%% "
	       "private)\n",
	       guests, mib);
	long long sys0 = system_kb();
	char **mem = calloc(guests, sizeof(*mem));
	for (unsigned g = 0; g < guests; g++) {
		mem[g] = mmap(NULL, pages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			      -1, 0);
		if (mem[g] == MAP_FAILED) {
			perror("demo: mmap");
			return 1;
		}
		madvise(mem[g], pages * PG, MADV_NOHUGEPAGE);
		boot_guest(mem[g], pages, g);
		err = samepage_madvise(sp, mem[g], pages * PG, SAMEPAGE_MERGEABLE);
		if (err) {
			fprintf(stderr, "demo: samepage_madvise: %s\n", samepage_strerror(err));
			return 1;
		}
	}
	long long sys1 = system_kb(), proc1 = process_kb();
	printf("guests booted: %lld MiB in use (system AnonPages+Shmem grew %lld MiB)\n",
	       proc1 / 1024, (sys1 - sys0) / 1024);
	printf("turning merging on, as the seed blog post does:\n");
	set(sp, "pages_to_scan", pages_to_scan);
	set(sp, "sleep_millisecs", sleep_ms);
	set(sp, "run", "1");

	/* Converged: pages_sharing unchanged over two full scans. */
	double t0 = now(), cpu0 = scanner_cpu();
	long long last_sharing = -1, stable_scans = 0, last_scans = 0;
	int tty = isatty(1);
	while (stable_scans < 2 && now() - t0 < 600) {
		usleep(250000);
		long long scans = rd(sp, "full_scans"), sharing = rd(sp, "pages_sharing");
		if (scans != last_scans) {
			stable_scans = sharing == last_sharing && scans >= 2 ? stable_scans + 1 : 0;
			last_sharing = sharing;
			last_scans = scans;
		}
		printf("%s[%5.1fs] full scans %lld | saved %5lld MiB (process) %5lld MiB (meminfo) | "
		       "pages_shared %lld pages_sharing %lld zero %lld%s",
		       tty ? "\r" : "", now() - t0, scans, (proc1 - process_kb()) / 1024,
		       (sys1 - system_kb()) / 1024,
		       rd(sp, "pages_shared"), sharing, rd(sp, "ksm_zero_pages"),
		       tty ? "   " : "\n");
		fflush(stdout);
	}
	double secs = now() - t0, cpu = scanner_cpu() - cpu0;
	long long sys2 = system_kb(), proc2 = process_kb();
	printf("\n\n");
	printf("  %-34s %12s\n", "", "MiB");
	printf("  %-34s %12.1f\n", "guest memory", (double)guests * mib);
	printf("  %-34s %12.1f\n", "before merging (process)", proc1 / 1024.0);
	printf("  %-34s %12.1f\n", "after merging (process)", proc2 / 1024.0);
	printf("  %-34s %12.1f\n", "saved (process, smaps_rollup)", (proc1 - proc2) / 1024.0);
	printf("  %-34s %12.1f\n", "saved (system, /proc/meminfo)", (sys1 - sys2) / 1024.0);
	printf("  %-34s %12lld\n", "pages_shared", rd(sp, "pages_shared"));
	printf("  %-34s %12lld\n", "pages_sharing", rd(sp, "pages_sharing"));
	printf("  %-34s %12lld\n", "pages_unshared", rd(sp, "pages_unshared"));
	printf("  %-34s %12lld\n", "full_scans", rd(sp, "full_scans"));
	printf("  %-34s %12lld\n", "general_profit (bytes)", rd(sp, "general_profit"));
	printf("  %-34s %12lld\n", "metadata bytes per page", rd(sp, "metadata_bytes_per_page"));
	printf("  %-34s %12.1f\n", "all metadata (KiB)", rd(sp, "metadata_bytes") / 1024.0);
	printf("  %-34s %12.2f\n", "time to converge (s)", secs);
	printf("  %-34s %12.2f\n", "scanner CPU (s)", cpu);

	/* Every guest still reads its own memory. */
	for (unsigned g = 0; g < guests; g++) {
		char *check = malloc(PG);
		for (size_t i = 0; i < pages; i += 97) {
			memset(check, 0, PG);
			uint64_t *w = (uint64_t *)check;
			unsigned kind = (unsigned)(i * 7 % 10);
			for (size_t k = 0; kind != 6 && kind != 7 && k < PG / 8; k++)
				w[k] = kind < 6 ? (i * 0x9e3779b97f4a7c15ULL) ^ k
						: ((uint64_t)g << 56) ^ (i * 0xc2b2ae3d27d4eb4fULL) ^ k;
			if (memcmp(check, mem[g] + i * PG, PG)) {
				fprintf(stderr, "demo: guest %u page %zu is wrong!\n", g, i);
				return 1;
			}
		}
		free(check);
	}
	printf("\nevery guest's memory checked: contents intact\n");
	samepage_close(sp);
	return 0;
}
