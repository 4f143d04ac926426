// SPDX-License-Identifier: MIT
/* test_guard.c - the merge windows (lib/guard.c), tested directly: it is
 * linked with the library's internal symbols. */
#include "../../lib/internal.h"
#include "check.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <unistd.h>

#define PG 4096UL

/* Whether the page at p is write-protected by userfaultfd (pagemap's bit
 * 57). */
static bool uffd_wp_bit(const void *p)
{
	uint64_t e = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	REQUIRE(fd >= 0);
	REQUIRE(pread(fd, &e, sizeof(e), (off_t)((uintptr_t)p / PG * sizeof(e))) ==
		(ssize_t)sizeof(e));
	close(fd);
	return e >> 57 & 1;
}

/* RELIABILITY.md 65: a merge window over a run whose mappings userfaultfd
 * could not all write-protect: a page of the application's, registered,
 * then a merged page of a samepaged whose pool is a file on a disk (a
 * private mapping of such a file cannot be registered).  The kernel
 * protected the first and stopped at the second; the window fell back to
 * mprotect and, closed, gave the protection back with mprotect: the first
 * page stayed write-protected by userfaultfd, and the next write to it
 * waited for ever (a JVM under `ksmctl --user run`, its main thread in
 * handle_userfault).  Here the same two mappings: a page of this test's
 * own executable (a file, not on tmpfs) stands for the pool's. */
static void test_window_partly_protected(void)
{
	if (guard_window_kind() == WINDOW_MPROTECT)
		SKIP("no userfaultfd in this process: its windows are mprotect's");
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	struct statfs fs;
	REQUIRE(fd >= 0 && fstatfs(fd, &fs) == 0);
	if (fs.f_type == TMPFS_MAGIC)
		SKIP("the test's executable is on tmpfs, which userfaultfd can protect");
	char *p = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(p != MAP_FAILED);
	memset(p, 'w', PG);
	REQUIRE(mmap(p + PG, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0) == p + PG);
	close(fd);
	guard_arm((uintptr_t)p, (uintptr_t)p + PG); /* as a mergeable range is */
	int slot = window_open((uintptr_t)p, (uintptr_t)p + 2 * PG, PROT_READ | PROT_WRITE);
	REQUIRE(slot >= 0);
	window_restore(slot, (uintptr_t)p, (uintptr_t)p + 2 * PG, PROT_READ | PROT_WRITE);
	window_close(slot);
	bool wp = uffd_wp_bit(p);
	printf("# after the window the page is %swrite-protected by userfaultfd\n",
	       wp ? "" : "not ");
	CHECK(!wp);
	if (!wp) { /* else this write would wait for ever */
		p[0] = 'x';
		CHECK_EQ_INT(p[0], 'x');
	}
	munmap(p, 2 * PG);
}

int main(void)
{
	if (sysconf(_SC_PAGESIZE) != (long)PG)
		SKIP("the test's offsets assume 4 KiB pages; this kernel's are %ld bytes",
		     sysconf(_SC_PAGESIZE));
	test_window_partly_protected();
	return check_report("guard");
}
