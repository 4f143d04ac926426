// SPDX-License-Identifier: MIT
/*
 * test_functional.c - the kernel's ksm_functional_tests scenarios against
 * libsamepage (unmerge, zero pages, discarded pages, PROT_NONE, fork), and
 * the promises of samepage.h: DONTNEED reads zeros, the application's
 * SIGSEGV handler keeps working, bad arguments get the kernel's errors.
 */
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define SIZE_PAGES 512 /* 2 MiB, as the selftests */

static samepage_t *merged_range(char **out, int val, int prot)
{
	samepage_t *sp = open_fast();
	char *p = map_pages(SIZE_PAGES);
	memset(p, val, SIZE_PAGES * PG);
	REQUIRE(mprotect(p, SIZE_PAGES * PG, prot) == 0);
	CHECK_EQ_INT(samepage_madvise(sp, p, SIZE_PAGES * PG, SAMEPAGE_MERGEABLE), 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 2) == 0);
	if (val)
		CHECK(rd(sp, "ksm_merging_pages") > 0);
	*out = p;
	return sp;
}

static void test_unmerge(void)
{
	char *p;
	samepage_t *sp = merged_range(&p, 0xcf, PROT_READ | PROT_WRITE);
	CHECK_EQ_U64(pages_mapping_pool(p, SIZE_PAGES), SIZE_PAGES);
	CHECK_EQ_INT(samepage_madvise(sp, p, SIZE_PAGES * PG, SAMEPAGE_UNMERGEABLE), 0);
	CHECK_EQ_U64(pages_mapping_pool(p, SIZE_PAGES), 0);
	CHECK_EQ_INT(rd(sp, "ksm_merging_pages"), 0);
	CHECK_EQ_INT(rd(sp, "pool_pages"), 0);
	for (size_t i = 0; i < SIZE_PAGES * PG; i += 511)
		REQUIRE((unsigned char)p[i] == 0xcf);
	munmap(p, SIZE_PAGES * PG);
	samepage_close(sp);
}

static void test_unmerge_zero_pages(void)
{
	samepage_t *sp = open_fast();
	wr(sp, "use_zero_pages", "1");
	char *p = map_pages(SIZE_PAGES);
	for (size_t i = 0; i < SIZE_PAGES; i++)
		p[i * PG] = 0;
	CHECK_EQ_INT(samepage_madvise(sp, p, SIZE_PAGES * PG, SAMEPAGE_MERGEABLE), 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 2) == 0);
	CHECK_EQ_INT(rd(sp, "ksm_zero_pages"), SIZE_PAGES);
	CHECK_EQ_INT(samepage_madvise(sp, p, SIZE_PAGES / 2 * PG, SAMEPAGE_UNMERGEABLE), 0);
	CHECK_EQ_INT(rd(sp, "ksm_zero_pages"), SIZE_PAGES / 2);
	/* Writes to the zero pages: the kernel counts them at once, we at the
	 * next visit of each page (one full scan). */
	for (size_t i = SIZE_PAGES / 2; i < SIZE_PAGES; i++)
		p[i * PG + 7] = 1;
	REQUIRE(wait_scans(sp, 2) == 0); /* the scan under way may be past them */
	CHECK_EQ_INT(rd(sp, "ksm_zero_pages"), 0);
	for (size_t i = 0; i < SIZE_PAGES; i++)
		REQUIRE(p[i * PG + 7] == (i >= SIZE_PAGES / 2));
	munmap(p, SIZE_PAGES * PG);
	samepage_close(sp);
}

static void test_unmerge_discarded(void)
{
	char *p;
	samepage_t *sp = merged_range(&p, 0xcf, PROT_READ | PROT_WRITE);
	/* MADV_DONTNEED on merged pages must read back zeros, as on plain
	 * anonymous memory (the hazard that samepage.h describes). */
	REQUIRE(madvise(p, SIZE_PAGES / 2 * PG, MADV_DONTNEED) == 0);
	for (size_t i = 0; i < SIZE_PAGES / 2 * PG; i += 509)
		REQUIRE(p[i] == 0);
	CHECK_EQ_INT(samepage_madvise(sp, p, SIZE_PAGES * PG, SAMEPAGE_UNMERGEABLE), 0);
	CHECK_EQ_U64(pages_mapping_pool(p, SIZE_PAGES), 0);
	for (size_t i = SIZE_PAGES / 2 * PG; i < SIZE_PAGES * PG; i += 509)
		REQUIRE((unsigned char)p[i] == 0xcf);
	munmap(p, SIZE_PAGES * PG);
	samepage_close(sp);
}

/* Pages copied at a write stay in the pool's mapping; a discard of them,
 * and a discard after UNMERGEABLE, must still read zeros, and a write
 * after UNMERGEABLE must not come back after MADV_DONTNEED either. */
static void test_discard_after_cow(void)
{
	char *p;
	samepage_t *sp = merged_range(&p, 'x', PROT_READ | PROT_WRITE);
	p[0] = 'y'; /* copy-on-write: page 0 is private now, in the pool's mapping */
	REQUIRE(wait_scans(sp, 2) == 0);
	CHECK_EQ_INT(samepage_discard(sp, p, 2 * PG), 0);
	CHECK(p[0] == 0 && p[1] == 0 && p[PG] == 0 && p[2 * PG] == 'x');
	CHECK_EQ_INT(samepage_madvise(sp, p, SIZE_PAGES * PG, SAMEPAGE_UNMERGEABLE), 0);
	REQUIRE(madvise(p + 4 * PG, 4 * PG, MADV_DONTNEED) == 0);
	CHECK(p[4 * PG] == 0 && p[8 * PG] == 'x');
	/* Unmerged memory is anonymous again: raw MADV_DONTNEED reads zeros. */
	REQUIRE(syscall(SYS_madvise, p + 8 * PG, PG, MADV_DONTNEED) == 0);
	CHECK(p[8 * PG] == 0 && p[9 * PG] == 'x');
	CHECK_EQ_U64(pages_mapping_pool(p, SIZE_PAGES), 0);
	munmap(p, SIZE_PAGES * PG);
	samepage_close(sp);
}

/* PROT_NONE pages merge (read through /proc/self/mem), a forced write
 * through /proc/self/mem gets a copy, and UNMERGEABLE unmerges the rest. */
static void test_prot_none(void)
{
	char *p;
	samepage_t *sp = merged_range(&p, 0x11, PROT_NONE);
	CHECK(rd(sp, "ksm_merging_pages") == SIZE_PAGES);
	int fd = open("/proc/self/mem", O_RDWR);
	REQUIRE(fd >= 0);
	for (unsigned i = 0; i < SIZE_PAGES / 2; i++)
		REQUIRE(pwrite(fd, &i, sizeof(i), (off_t)(uintptr_t)(p + i * PG)) == sizeof(i));
	CHECK_EQ_INT(samepage_madvise(sp, p + SIZE_PAGES / 2 * PG, SIZE_PAGES / 2 * PG,
				      SAMEPAGE_UNMERGEABLE),
		     0);
	CHECK_EQ_U64(pages_mapping_pool(p, SIZE_PAGES), 0);
	REQUIRE(mprotect(p, SIZE_PAGES * PG, PROT_READ) == 0);
	for (unsigned i = 0; i < SIZE_PAGES / 2; i++)
		REQUIRE(*(unsigned *)(p + i * PG) == i);
	for (size_t i = SIZE_PAGES / 2 * PG; i < SIZE_PAGES * PG; i += 509)
		REQUIRE(p[i] == 0x11);
	close(fd);
	munmap(p, SIZE_PAGES * PG);
	samepage_close(sp);
}

/* fork() after merging: parent and child each keep their own contents; the
 * pool pages the child maps stay readable after the parent unmerges; the
 * child's inherited handle is inert; the pool is reclaimed once the child
 * is gone. */
static void test_fork(void)
{
	char *p;
	samepage_t *sp = merged_range(&p, 0x5a, PROT_READ | PROT_WRITE);
	int go[2], done[2];
	REQUIRE(pipe(go) == 0 && pipe(done) == 0);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		char c;
		long long v;
		int bad = samepage_read_number(sp, "pages_sharing", &v) != -ECHILD;
		for (size_t i = 0; i < SIZE_PAGES; i += 2)
			p[i * PG] = 'c';
		if (write(done[1], "x", 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(2);
		/* The parent has written, unmerged and scanned meanwhile. */
		for (size_t i = 0; i < SIZE_PAGES; i++) {
			bad |= p[i * PG] != (i % 2 ? 0x5a : 'c');
			bad |= p[i * PG + 1] != 0x5a;
		}
		_exit(bad);
	}
	char c;
	REQUIRE(read(done[0], &c, 1) == 1);
	for (size_t i = 1; i < SIZE_PAGES; i += 2)
		p[i * PG] = 'p';
	CHECK_EQ_INT(samepage_madvise(sp, p, SIZE_PAGES * PG, SAMEPAGE_UNMERGEABLE), 0);
	/* The child may still map pool pages: they must stay. */
	CHECK(rd(sp, "pool_pages") > 0);
	REQUIRE(write(go[1], "x", 1) == 1);
	int st;
	REQUIRE(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	for (size_t i = 0; i < SIZE_PAGES; i++)
		REQUIRE(p[i * PG] == (i % 2 ? 'p' : 0x5a));
	/* The child is gone: its pool pages are given back. */
	CHECK_EQ_INT(rd(sp, "pool_pages"), 0);
	munmap(p, SIZE_PAGES * PG);
	samepage_close(sp);
}

static sigjmp_buf app_jmp;
static volatile sig_atomic_t app_faults;
static void app_handler(int sig)
{
	app_faults++;
	siglongjmp(app_jmp, 1);
}

/* A SIGSEGV handler installed after the engine started still gets the
 * application's own faults, while merging goes on. */
static void test_app_sigsegv(void)
{
	char *p;
	samepage_t *sp = merged_range(&p, 0x33, PROT_READ | PROT_WRITE);
	char *guard = mmap(NULL, PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct sigaction sa = {.sa_handler = app_handler};
	sigemptyset(&sa.sa_mask);
	REQUIRE(sigaction(SIGSEGV, &sa, NULL) == 0);
	for (int k = 0; k < 3; k++) {
		if (sigsetjmp(app_jmp, 1) == 0)
			*(volatile char *)guard = 1;
		/* Writes to merged pages still work (copy-on-write). */
		p[k * PG] = 'w';
		REQUIRE(wait_scans(sp, 2) == 0); /* the scan under way may be past them */
	}
	CHECK_EQ_INT(app_faults, 3);
	CHECK(p[0] == 'w' && p[PG] == 'w' && p[2 * PG] == 'w' && p[3 * PG] == 0x33);
	signal(SIGSEGV, SIG_DFL);
	munmap(guard, PG);
	munmap(p, SIZE_PAGES * PG);
	samepage_close(sp);
}

static void test_bad_input(void)
{
	samepage_t *sp = open_fast();
	char buf[64];
	char *p = map_pages(4);
	CHECK_EQ_INT(samepage_madvise(sp, p + 1, PG, SAMEPAGE_MERGEABLE), -EINVAL);
	CHECK_EQ_INT(samepage_madvise(sp, p, PG, 99), -EINVAL);
	munmap(p + 2 * PG, PG);
	CHECK_EQ_INT(samepage_madvise(sp, p, 4 * PG, SAMEPAGE_MERGEABLE), -ENOMEM);
	CHECK_EQ_INT(rd(sp, "pages_tracked"), 0); /* nothing registered */
	CHECK_EQ_INT(samepage_write(sp, "run", "3"), -EINVAL);
	CHECK_EQ_INT(samepage_write(sp, "nonsense", "1"), -ENOENT);
	CHECK_EQ_INT(samepage_write(sp, "pages_shared", "1"), -EACCES);
	CHECK_EQ_INT(samepage_write(sp, "max_page_sharing", "1"), -EINVAL);
	CHECK_EQ_INT(samepage_read(sp, "nonsense", buf, sizeof(buf)), -ENOENT);
	CHECK_EQ_INT(samepage_read(sp, "advisor_mode", buf, 4), -ERANGE);
	CHECK_EQ_INT(samepage_read(sp, "advisor_mode", buf, sizeof(buf)), 0);
	CHECK(strcmp(buf, "[none] scan-time") == 0);
	wr(sp, "advisor_mode", "scan-time");
	CHECK_EQ_INT(samepage_read(sp, "advisor_mode", buf, sizeof(buf)), 0);
	CHECK(strcmp(buf, "none [scan-time]") == 0);
	CHECK_EQ_INT(rd(sp, "pages_to_scan"), 500); /* advisor_min_pages_to_scan */
	CHECK_EQ_INT(samepage_write(sp, "pages_to_scan", "100"), -EINVAL);
	wr(sp, "advisor_mode", "none");
	CHECK_EQ_INT(rd(sp, "pages_to_scan"), 100);
	CHECK_EQ_INT(samepage_read(sp, "sleep_millisecs", buf, sizeof(buf)), 0);
	CHECK(strcmp(buf, "0") == 0);
	munmap(p, 2 * PG);
	munmap(p + 3 * PG, PG);
	samepage_close(sp);
}

/* samepage_alloc'd memory: discard gives zeros and stays mergeable. */
static void test_alloc_discard(void)
{
	samepage_t *sp = open_fast();
	char *p;
	CHECK_EQ_INT(samepage_alloc(sp, 64 * PG, (void **)&p), 0);
	memset(p, 'a', 64 * PG);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 2) == 0);
	CHECK_EQ_INT(rd(sp, "pages_sharing"), 63);
	CHECK_EQ_INT(samepage_discard(sp, p, 32 * PG), 0);
	for (size_t i = 0; i < 32 * PG; i += 97)
		REQUIRE(p[i] == 0);
	for (size_t i = 32 * PG; i < 64 * PG; i += 97)
		REQUIRE(p[i] == 'a');
	memset(p, 'a', 32 * PG);
	REQUIRE(wait_scans(sp, 3) == 0);
	CHECK_EQ_INT(rd(sp, "pages_sharing"), 63);
	CHECK_EQ_INT(samepage_free(sp, p, 64 * PG), 0);
	CHECK_EQ_INT(rd(sp, "pages_tracked"), 0);
	CHECK_EQ_INT(rd(sp, "pool_pages"), 0);
	samepage_close(sp);
}

/* Pages rewritten while the scanner reads them: what a page's checksum
 * says and the copy the scanner compares must be one read.  They were two:
 * a page read unchanged since its last visit, then written before it was
 * copied, became a KSM page of its new contents filed under its old
 * contents' checksum, where no page of its contents finds it again (a KSM
 * page of one mapping for good: pages_shared 2, pages_sharing 62 in
 * alloc_discard, 1 run in 100 under ASan).  A thread flips the first half
 * between 'b' and 'c' during many full scans; the debug build's
 * invariants_check() aborts at the first KSM page filed under another
 * contents' checksum (4 runs of 4 under ASan before the fix).  Then the
 * first half reads 'c', and each content must end on one KSM page. */
static atomic_int flipping;

static void *flip(void *arg)
{
	char *p = arg;
	for (unsigned k = 0; atomic_load(&flipping); k++)
		for (size_t i = 0; i < 32; i++)
			memset(p + i * PG, k & 1 ? 'b' : 'c', PG);
	return NULL;
}

static void test_rewrite_while_scanning(void)
{
	samepage_t *sp = open_fast();
	char *p;
	pthread_t t;
	CHECK_EQ_INT(samepage_alloc(sp, 64 * PG, (void **)&p), 0);
	memset(p, 'a', 64 * PG);
	wr(sp, "smart_scan", "0"); /* else failed pages wait up to 8 scans more */
	wr(sp, "run", "1");
	atomic_store(&flipping, 1);
	REQUIRE(pthread_create(&t, NULL, flip, p) == 0);
	REQUIRE(wait_scans(sp, 5000) == 0);
	atomic_store(&flipping, 0);
	pthread_join(t, NULL);
	for (size_t i = 0; i < 32; i++)
		if (p[i * PG] != 'c') /* not the others: a merged page stays merged */
			memset(p + i * PG, 'c', PG);
	REQUIRE(wait_scans(sp, 3) == 0);
	CHECK_EQ_INT(rd(sp, "pages_shared"), 2);
	CHECK_EQ_INT(rd(sp, "pages_sharing"), 62);
	for (size_t i = 0; i < 64 * PG; i += 97)
		REQUIRE(p[i] == (i < 32 * PG ? 'c' : 'a'));
	CHECK_EQ_INT(samepage_free(sp, p, 64 * PG), 0);
	samepage_close(sp);
}

/* The nice value of this process's thread named comm (-100: none). */
static int thread_nice(const char *comm)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int nice = -100;
	while (d && (e = readdir(d)) && nice == -100) {
		char path[300], name[32] = "", stat[512];
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		FILE *f = fopen(path, "re");
		if (!f)
			continue;
		if (fgets(name, sizeof(name), f))
			name[strcspn(name, "\n")] = 0;
		fclose(f);
		snprintf(path, sizeof(path), "/proc/self/task/%s/stat", e->d_name);
		f = fopen(path, "re");
		if (f && !strcmp(name, comm) && fgets(stat, sizeof(stat), f)) {
			/* after "(comm) ": state is field 3, nice field 19 */
			const char *s = strrchr(stat, ')');
			int v;
			if (s && sscanf(s + 2,
					"%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u "
					"%*d %*d %*d %d",
					&v) == 1)
				nice = v;
		}
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	return nice;
}

/* The scanner runs at nice 5 above the program, as ksmd does
 * (set_user_nice(current, 5)): on a busy host it yields to the program's
 * threads (before: the program's nice). */
static void test_scanner_nice(void)
{
	errno = 0;
	int mine = getpriority(PRIO_PROCESS, 0);
	REQUIRE(errno == 0);
	samepage_t *sp = open_fast();
	int want = mine + 5 > 19 ? 19 : mine + 5;
	int got = -100;
	/* (named as it is made, it sets its nice once it runs) */
	for (int i = 0; i < 200 && got != want; i++) {
		got = thread_nice("samepage-ksmd");
		if (got != want)
			usleep(10000);
	}
	CHECK_EQ_INT(got, want);
	CHECK_EQ_INT(getpriority(PRIO_PROCESS, 0), mine); /* the program's own unchanged */
	samepage_close(sp);
}

static const struct {
	const char *name;
	void (*fn)(void);
} tests[] = {
    {"unmerge", test_unmerge},
    {"unmerge_zero_pages", test_unmerge_zero_pages},
    {"unmerge_discarded", test_unmerge_discarded},
    {"discard_after_cow", test_discard_after_cow},
    {"prot_none", test_prot_none},
    {"fork", test_fork},
    {"app_sigsegv", test_app_sigsegv},
    {"bad_input", test_bad_input},
    {"alloc_discard", test_alloc_discard},
    {"rewrite_while_scanning", test_rewrite_while_scanning},
    {"scanner_nice", test_scanner_nice},
};

/* With an argument, runs only the test of that name. */
int main(int argc, char **argv)
{
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		if (argc > 1 && strcmp(argv[1], tests[i].name))
			continue;
		printf("# [RUN] %s\n", tests[i].name);
		fflush(stdout);
		tests[i].fn();
	}
	return check_report("functional");
}
