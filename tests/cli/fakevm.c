// SPDX-License-Identifier: MIT
/*
 * fakevm.c - guest memory as VM monitors map it, for `ksmctl doctor`'s
 * guest-memory check.  Built as "qemu-system-x86_64" (the check finds VM
 * monitors by their command name), it maps MIB of guest RAM the way QEMU
 * does with each memory backend, writes every page, says "ready" and
 * waits until its standard input closes:
 *   --shared   memory-backend-memfd,share=on: a shared memfd mapping;
 *   --hugetlb  -mem-path on hugetlbfs: private MAP_HUGETLB memory;
 *   --private  private anonymous memory, not marked mergeable: QEMU's
 *              -machine mem-merge=off (libvirt's <nosharepages/>);
 *   --mergeable  the same, marked MADV_MERGEABLE: QEMU's default;
 *   --file     -mem-path on tmpfs with share=off: a private mapping of a
 *              file in $TMPDIR (or /tmp), marked MADV_MERGEABLE.
 *
 * usage: qemu-system-x86_64 --shared|--hugetlb|--private|--mergeable|--file MIB
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s --shared|--hugetlb|--private|--mergeable MIB\n",
			argv[0]);
		return 2;
	}
	size_t len = (size_t)atol(argv[2]) << 20;
	void *m = MAP_FAILED;

	if (!strcmp(argv[1], "--shared")) {
		int fd = memfd_create("memory-backend-memfd", MFD_CLOEXEC);
		if (fd >= 0 && ftruncate(fd, (off_t)len) == 0)
			m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	} else if (!strcmp(argv[1], "--hugetlb")) {
		m = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	} else if (!strcmp(argv[1], "--file")) {
		const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
		char path[4096];
		snprintf(path, sizeof(path), "%s/fakevm-ram.XXXXXX", dir);
		int fd = mkstemp(path);
		if (fd >= 0 && ftruncate(fd, (off_t)len) == 0)
			m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
		if (fd >= 0)
			unlink(path);
		if (m != MAP_FAILED && madvise(m, len, MADV_MERGEABLE)) {
			perror("fakevm: madvise(MADV_MERGEABLE)");
			return 1;
		}
	} else if (!strcmp(argv[1], "--private") || !strcmp(argv[1], "--mergeable")) {
		m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m != MAP_FAILED && !strcmp(argv[1], "--mergeable") &&
		    madvise(m, len, MADV_MERGEABLE)) {
			perror("fakevm: madvise(MADV_MERGEABLE)");
			return 1;
		}
	}
	if (m == MAP_FAILED) {
		perror("fakevm: mmap");
		return 1;
	}
	memset(m, 1, len);
	printf("ready\n");
	fflush(stdout);
	char c;
	while (read(0, &c, 1) > 0)
		;
	return 0;
}
