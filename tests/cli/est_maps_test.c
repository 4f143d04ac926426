// SPDX-License-Identifier: MIT
/*
 * est_maps_test.c - the smaps parser of `ksmctl estimate` (est_maps_line()
 * and est_smaps_line(), cli/estimate-read.c): every line of this process's
 * own /proc/self/maps is read as the kernel wrote it; its /proc/self/smaps
 * gives the areas ksmd could scan ([heap] and [stack] with every compatible
 * area wanted, never [vvar], [vsyscall] or a shared mapping); and made-up
 * lines: proc(5)'s examples, file paths with spaces, deleted files, the
 * highest addresses, and lines the kernel never writes (refused, where
 * sscanf took a sign, a "0x", a short permission word or a reversed area).
 * tests/fuzz/fuzz_est_maps.c checks the same on any text.
 */
#include "estimate-scan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../lib/check.h"

/* One line: est_maps_line's answer, and the bounds when it accepts. */
static void expect(const char *line, int want, uint64_t start, uint64_t end)
{
	uint64_t s = 1, e = 1;
	int r = est_maps_line(line, &s, &e);

	if (r != want || (r >= 0 && (s != start || e != end)) || (r < 0 && (s != 1 || e != 1))) {
		fprintf(stderr, "FAIL: [%s]: %d %llx-%llx, want %d %llx-%llx\n", line, r,
			(unsigned long long)s, (unsigned long long)e, want,
			(unsigned long long)start, (unsigned long long)end);
		check_failed++;
	}
}

static void test_lines(void)
{
	/* proc(5)'s example, a 32-bit process's addresses. */
	expect("08048000-08056000 r-xp 00000000 03:0c 64593   /usr/sbin/gpm\n", 1, 0x08048000,
	       0x08056000);
	expect("bfffa000-c0000000 rwxp 00000000 00:00 0       [stack]", 1, 0xbfffa000, 0xc0000000);
	/* As this machine's kernel writes them (6.18, x86-64). */
	expect("5626ffe73000-5626ffe94000 rw-p 00000000 00:00 0                          [heap]\n",
	       1, 0x5626ffe73000, 0x5626ffe94000);
	expect("7ffd5d4f5000-7ffd5d516000 rw-p 00000000 00:00 0                          [stack]\n",
	       1, 0x7ffd5d4f5000, 0x7ffd5d516000);
	expect("7f0a08e2f000-7f0a08e33000 r--p 00000000 00:00 0                          [vvar]\n",
	       1, 0x7f0a08e2f000, 0x7f0a08e33000); /* its VmFlags refuse it: below */
	expect("7f0a08ba0000-7f0a08ba3000 rw-p 00000000 00:00 0 \n", 1, 0x7f0a08ba0000,
	       0x7f0a08ba3000);
	expect("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  "
	       "[vsyscall]\n",
	       0, 0xffffffffff600000, 0xffffffffff601000);
	/* A path with spaces, a deleted file, a shared one. */
	expect("7f645cda2000-7f645cdf9000 rw-p 00001000 fe:00 320475                     "
	       "/tmp/my file (1).so\n",
	       1, 0x7f645cda2000, 0x7f645cdf9000);
	expect("7f645cda2000-7f645cdf9000 rw-p 00000000 00:01 1033 /memfd:guest (deleted)\n", 1,
	       0x7f645cda2000, 0x7f645cdf9000);
	expect("7f645cda2000-7f645cdf9000 rw-s 00000000 00:01 1033 /dev/shm/x (deleted)\n", 0,
	       0x7f645cda2000, 0x7f645cdf9000);
	expect("7f645cda2000-7f645cdf9000 rw-p 00000000 00:01 1033 [vsyscall] (not)\n", 1,
	       0x7f645cda2000, 0x7f645cdf9000);
	/* The highest addresses, a 64-bit offset and inode, a large device. */
	expect("fffffffffffff000-fffffffffffff000 rw-p 00000000 00:00 0\n", -EINVAL, 0, 0);
	expect("ffffffffffffe000-fffffffffffff000 rw-p ffffffffffffffff fff:fffff "
	       "18446744073709551615 /x\n",
	       1, 0xffffffffffffe000, 0xfffffffffffff000);
	expect("1000-2000 rw-p 0 0:0 0", 1, 0x1000, 0x2000);
	expect("ABCDE000-ABCDF000 rw-p 0 0:0 0", 1, 0xabcde000, 0xabcdf000);

	/* Lines the kernel never writes: smaps's others, and near misses. */
	static const char *const bad[] = {
	    "",
	    "\n",
	    "Size:                  4 kB\n",
	    "VmFlags: rd wr mr mw me ac sd \n",
	    "1000-2000 rw-p 00000000 00:00", /* no inode */
	    "0x1000-0x2000 rw-p 00000000 00:00 0\n",
	    "+1000-2000 rw-p 00000000 00:00 0\n",
	    "-1000-2000 rw-p 00000000 00:00 0\n",
	    " 1000-2000 rw-p 00000000 00:00 0\n",
	    "1000 - 2000 rw-p 00000000 00:00 0\n",
	    "1000-2000  rw-p 00000000 00:00 0\n",
	    "1000-2000 rw 00000000 00:00 0\n",
	    "1000-2000 rw-q 00000000 00:00 0\n",
	    "1000-2000 rwxpp 00000000 00:00 0\n",
	    "1000-2000 wr-p 00000000 00:00 0\n",
	    "1000-2000 rw-p 00000000 00-00 0\n",
	    "1000-2000 rw-p 00000000 00:00 -1\n",
	    "1000-2000 rw-p 00000000 00:00 0x5\n",
	    "1000-2000 rw-p 00000000 00:00 18446744073709551616\n",
	    "1000-2000 rw-p 00000000 100000000:00 0\n",
	    "1000-2000 rw-p 00000000000000000 00:00 0\n",
	    "10000000000000000-20000000000000000 rw-p 0 00:00 0\n",
	    "00000000000001000-2000 rw-p 0 00:00 0\n",
	    "2000-1000 rw-p 00000000 00:00 0\n",
	    "1000-1000 rw-p 00000000 00:00 0\n",
	    "1001-2000 rw-p 00000000 00:00 0\n",
	    "1000-2001 rw-p 00000000 00:00 0\n",
	    "1000-2000 rw-p 00000000 00:00 0\t/x\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect(bad[i], -EINVAL, 0, 0);
}

/* Every line of /proc/self/maps is a maps line, read with the bounds and
 * permissions sscanf finds in it. */
static void test_self_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char *line = NULL;
	size_t cap = 0;
	int n = 0;

	if (!f) {
		perror("/proc/self/maps");
		check_failed++;
		return;
	}
	while (getline(&line, &cap, f) > 0) {
		unsigned long long s, e;
		char perms[8] = "";
		int pos = 0;
		if (sscanf(line, "%llx-%llx %7s %*x %*x:%*x %*u %n", &s, &e, perms, &pos) < 3) {
			fprintf(stderr, "FAIL: this test cannot read [%s]\n", line);
			check_failed++;
			continue;
		}
		const char *path = line + pos;
		bool vsyscall = !strcmp(path, "[vsyscall]\n");
		expect(line, perms[3] == 'p' && !vsyscall, s, e);
		n++;
	}
	free(line);
	fclose(f);
	CHECK(n > 5);
}

/*
 * The areas /proc/self/smaps gives, each time with this process holding a
 * private and a shared anonymous mapping of its own: with every compatible
 * area wanted, the private one, [heap] and [stack], never [vvar]
 * (VM_PFNMAP, VM_IO), [vsyscall] or the shared one; with only the mergeable
 * ones, none of those (nothing here is marked mergeable).
 */
static void test_self_smaps(void)
{
	const size_t len = 6 * 4096;
	char *priv = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *shared = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (priv == MAP_FAILED || shared == MAP_FAILED) {
		perror("mmap");
		check_failed++;
		return;
	}
	/* A guard page at each end keeps the kernel from joining the private
	 * area to a neighbour: [priv + 4096, priv + len - 4096) stays its own. */
	if (mprotect(priv, 4096, PROT_NONE) || mprotect(priv + len - 4096, 4096, PROT_NONE)) {
		perror("mprotect");
		check_failed++;
		return;
	}
	priv[4096] = shared[0] = 1;
	for (int every = 0; every <= 1; every++) {
		FILE *f = fopen("/proc/self/smaps", "re");
		struct est_smaps sm = {.every = every};
		char *line = NULL, head[512] = "";
		size_t cap = 0;
		int kept = 0, headers = 0;
		bool heap = false, stack = false, mine = false, stray = false, has_heap = false;

		if (!f) {
			perror("/proc/self/smaps");
			check_failed++;
			break;
		}
		while (getline(&line, &cap, f) > 0) {
			uint64_t s, e;

			if (est_maps_line(line, &s, &e) >= 0) {
				snprintf(head, sizeof(head), "%s", line);
				headers++;
				has_heap |= strstr(head, " [heap]") != NULL;
			}
			if (est_smaps_line(&sm, line, &s, &e) != 1)
				continue;
			kept++;
			heap |= strstr(head, " [heap]") != NULL;
			stack |= strstr(head, " [stack]") != NULL;
			mine |= s == (uintptr_t)priv + 4096 && e == (uintptr_t)priv + len - 4096;
			if (strstr(head, "[vvar]") || strstr(head, "[vsyscall]") ||
			    (s <= (uintptr_t)shared && (uintptr_t)shared < e) ||
			    head[strcspn(head, " ") + 4] != 'p') {
				fprintf(stderr, "FAIL: kept %s", head);
				stray = true;
			}
		}
		free(line);
		fclose(f);
		CHECK(sm.areas == headers && headers > 5);
		CHECK(!stray);
		if (every) {
			CHECK(heap || !has_heap); /* none under ASan: its malloc uses mmap */
			CHECK(stack);
			CHECK(mine);
		} else {
			CHECK(kept == 0);
		}
	}
	munmap(priv, len);
	munmap(shared, len);
}

/* Made-up smaps: only a "VmFlags:" line ends an area, once. */
static void test_flags(void)
{
	static const struct {
		bool every;
		const char *text;
		int kept; /* areas kept */
	} cases[] = {
	    {false, "1000-2000 rw-p 0 00:00 0\nSize: 4 kB\nVmFlags: rd wr mr mw me ac sd mg \n", 1},
	    {false, "1000-2000 rw-p 0 00:00 0\nVmFlags: rd wr mr mw me ac sd\n", 0},
	    {true, "1000-2000 rw-p 0 00:00 0\nVmFlags: rd wr mr mw me ac sd\n", 1},
	    {true, "1000-2000 rw-s 0 00:00 0\nVmFlags: rd wr mr mw me ac sd mg\n", 0},
	    {true, "1000-2000 rw-p 0 00:00 0\nVmFlags: rd wr mg ht\n", 0},
	    {true, "1000-2000 rw-p 0 00:00 0\nVmFlags: rd pf io\n", 0},
	    {true, "1000-2000 rw-p 0 00:00 0\nVmFlags: mgdp\n", 1}, /* one flag, "mgdp" */
	    {true, "VmFlags: rd wr mg\n", 0},
	    {true, "1000-2000 rw-p 0 00:00 0\nVmFlags: rd wr\nVmFlags: rd wr\n", 1},
	    {true, "ffffffffff600000-ffffffffff601000 --xp 0 00:00 0  [vsyscall]\nVmFlags: ex\n",
	     0},
	    {true, "1000-2000 rw-p 0 00:00 0\n3000-2000 rw-p 0 00:00 0\nVmFlags: rd\n", 1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *text = strdup(cases[i].text), *save = NULL;
		struct est_smaps sm = {.every = cases[i].every};
		int kept = 0;

		for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
			uint64_t s = 0, e = 0;
			if (est_smaps_line(&sm, l, &s, &e) == 1) {
				kept++;
				CHECK(s == 0x1000 && e == 0x2000);
			}
		}
		if (kept != cases[i].kept) {
			fprintf(stderr, "FAIL: case %zu: %d areas kept, want %d\n", i, kept,
				cases[i].kept);
			check_failed++;
		}
		free(text);
	}
}

int main(void)
{
	test_lines();
	test_self_maps();
	test_self_smaps();
	test_flags();
	return check_report("est_maps");
}
