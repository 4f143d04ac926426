/* SPDX-License-Identifier: MIT */
/*
 * util.h - helpers for libsamepage's tests: waiting for full scans (the
 * kernel selftests' convergence rule) and reading memory from outside the
 * engine (/proc/self/smaps_rollup, /proc/meminfo).
 */
#ifndef SAMEPAGE_TEST_UTIL_H
#define SAMEPAGE_TEST_UTIL_H

#include "check.h"
#include "procfs.h" /* common/: the /proc reader of the tree's programs */

#include <samepage.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PG 4096UL

/* Sends len bytes of buf with n (at most 256) descriptors on a socket, as
 * samepaged hands over its files: what sendmsg() returns. */
static inline ssize_t send_fds(int sock, const void *buf, size_t len, const int *fds, int n)
{
	union { /* aligned for the cmsghdr */
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * 256)];
	} c;
	memset(&c, 0, sizeof(c));
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr m = {.msg_iov = &iov,
			   .msg_iovlen = 1,
			   .msg_control = c.buf,
			   .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
	memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)n);
	return sendmsg(sock, &m, MSG_NOSIGNAL);
}

static inline long long rd(samepage_t *sp, const char *name)
{
	long long v = -1;
	int err = samepage_read_number(sp, name, &v);
	if (err) {
		fprintf(stderr, "samepage_read_number(%s): %s\n", name, samepage_strerror(err));
		exit(1);
	}
	return v;
}

static inline void wr(samepage_t *sp, const char *name, const char *value)
{
	int err = samepage_write(sp, name, value);
	if (err) {
		fprintf(stderr, "samepage_write(%s, %s): %s\n", name, value,
			samepage_strerror(err));
		exit(1);
	}
}

/* Waits until full_scans has grown by n; a generous time limit only stops
 * a hung test (it is not a timing assertion). */
static inline int wait_scans(samepage_t *sp, long long n)
{
	long long start = rd(sp, "full_scans"), last = start;
	for (int i = 0; i < 120000; i++) {
		long long now = rd(sp, "full_scans");
		if (now >= start + n)
			return 0;
		if (now != last)
			check_tick(); /* progress, for a hang guard */
		last = now;
		usleep(1000);
	}
	fprintf(stderr, "timed out waiting for %lld full scans\n", n);
	return -1;
}

/* A field of a /proc file, in kB (common/procfs.h). */
static inline long long proc_kb(const char *path, const char *field)
{
	return procfs_number(path, field);
}

/* This process's private anonymous memory, as the kernel counts it. */
static inline long long anon_kb(void)
{
	return proc_kb("/proc/self/smaps_rollup", "Anonymous");
}

/* Is a maps line's name one of the kernel's own mappings ([vdso], [vvar],
 * ...), which no engine registers?  Anonymous memory's names are [heap],
 * [stack] and [anon:NAME]. */
static inline bool kernel_mapping_named(const char *name)
{
	return name && name[0] == '[' && strncmp(name, "[heap]", 6) && strncmp(name, "[stack", 6) &&
	       strncmp(name, "[anon:", 6);
}

static inline void *map_pages(size_t n)
{
	void *p = mmap(NULL, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(p != MAP_FAILED);
	madvise(p, n * PG, MADV_NOHUGEPAGE);
	return p;
}

static inline samepage_t *open_fast(void)
{
	samepage_t *sp;
	int err = samepage_open(&sp);
	if (err) {
		fprintf(stderr, "samepage_open: %s\n", samepage_strerror(err));
		exit(1);
	}
	wr(sp, "pages_to_scan", "100000");
	wr(sp, "sleep_millisecs", "0");
	return sp;
}

/* The kernel selftest's oracle (ksm_tests.c assert_ksm_pages_count). */
static inline void check_ksm_pages_count(samepage_t *sp, long long n)
{
	long long mps = rd(sp, "max_page_sharing"), shared = rd(sp, "pages_shared"),
		  sharing = rd(sp, "pages_sharing");
	if (n % mps == 0 || n % mps == 1) {
		CHECK_EQ_INT(shared, n / mps);
		CHECK_EQ_INT(sharing, (n / mps) * (mps - 1));
	} else {
		CHECK_EQ_INT(shared, n / mps + 1);
		CHECK_EQ_INT(sharing, n - (n / mps + 1));
	}
	/* A content with two or more KSM pages is one chain of that many dups. */
	shared = rd(sp, "pages_shared");
	CHECK_EQ_INT(rd(sp, "stable_node_chains"), shared >= 2 ? 1 : 0);
	CHECK_EQ_INT(rd(sp, "stable_node_dups"), shared >= 2 ? shared : 0);
}

static inline int count_pool_mapping(const struct procfs_map *m, void *arg)
{
	/* The engine's own view is the shared (rw-s) one. */
	if (strstr(m->path, "samepage-pool") && strcmp(m->perms, "rw-s"))
		++*(int *)arg;
	return 0;
}

/* How many mappings meet [p, p + len), and (nohuge not NULL) how many of
 * them have MADV_NOHUGEPAGE (VmFlags nh). */
static inline int mappings_in(const void *p, size_t len, int *nohuge)
{
	char line[512];
	int n = 0, in = 0, nh = 0;
	FILE *f = fopen("/proc/self/smaps", "r");
	REQUIRE(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		char c;
		if (sscanf(line, "%lx-%lx %c", &lo, &hi, &c) == 3) {
			in = hi > (uintptr_t)p && lo < (uintptr_t)p + len;
			n += in;
		} else if (in && !strncmp(line, "VmFlags:", 8) && strstr(line, " nh")) {
			nh++;
		}
	}
	fclose(f);
	if (nohuge)
		*nohuge = nh;
	return n;
}

/* Counts the private mappings of the pool left in the process. */
static inline int pool_mappings(void)
{
	int n = 0;
	REQUIRE(procfs_maps("/proc/self/maps", count_pool_mapping, &n) == 0);
	return n;
}

/* Does any present page of [p, p+n pages) still map the pool (a file page)?
 * The kernel selftests ask "does the range map duplicates"; for us a page
 * that maps the pool is a merged page. */
static inline size_t pages_mapping_pool(const void *p, size_t n)
{
	FILE *f = fopen("/proc/self/pagemap", "r");
	size_t hits = 0;
	REQUIRE(f);
	for (size_t i = 0; i < n; i++) {
		unsigned long long e = 0;
		REQUIRE(fseek(f, (long)(((uintptr_t)p / PG + i) * 8), SEEK_SET) == 0);
		if (fread(&e, 8, 1, f) != 1)
			e = 0;
		if ((e >> 63) & 1 && (e >> 61) & 1)
			hits++;
	}
	fclose(f);
	return hits;
}

#endif
