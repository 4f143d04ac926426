// SPDX-License-Identifier: MIT
/*
 * prim-linux.c - the only file that calls mmap, mprotect, madvise, mremap,
 * memfd_create and reads /proc/self/{pagemap,mem,maps}.
 *
 * The calls go straight to the kernel through syscall(2), never through the
 * C library's symbols: libsamepage interposes mmap/munmap/mremap/mprotect/
 * madvise (interpose.c) to keep the application's address-space changes
 * from racing with a merge, and its own calls must not wait on that lock.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

void *prim_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

int prim_munmap(void *addr, size_t len)
{
	return (int)syscall(SYS_munmap, addr, len);
}

int prim_mprotect(void *addr, size_t len, int prot)
{
	return (int)syscall(SYS_mprotect, addr, len, prot);
}

int prim_madvise(void *addr, size_t len, int advice)
{
	return (int)syscall(SYS_madvise, addr, len, advice);
}

void *prim_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr)
{
	return (void *)syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
}

int prim_memfd(const char *name)
{
	return (int)syscall(SYS_memfd_create, name, MFD_CLOEXEC);
}

/* The file descriptors are opened once per process and reopened after a
 * fork (they name "self", which /proc resolves at open time). */
static int pagemap_fd = -1, mem_fd = -1;
static pid_t fds_pid;

static void open_self_files(void)
{
	pid_t pid = getpid();
	if (fds_pid == pid && pagemap_fd >= 0 && mem_fd >= 0)
		return;
	if (pagemap_fd >= 0)
		close(pagemap_fd);
	if (mem_fd >= 0)
		close(mem_fd);
	pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	mem_fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	fds_pid = pid;
}

int prim_pagemap(uintptr_t addr, size_t npages, uint64_t *out)
{
	size_t want = npages * sizeof(uint64_t);
	open_self_files();
	if (pagemap_fd < 0)
		return -errno;
	ssize_t n = pread(pagemap_fd, out, want, (off_t)((addr >> PAGE_SHIFT) * sizeof(uint64_t)));
	if (n < 0)
		return -errno;
	/* A short read means the end of the address space: not present. */
	if ((size_t)n < want)
		memset((char *)out + n, 0, want - (size_t)n);
	return 0;
}

/* /proc/self/mem reads and writes with FOLL_FORCE: they reach PROT_NONE and
 * read-only pages, and fail (EIO) instead of faulting where nothing is
 * mapped. */
ssize_t prim_mem_read(uintptr_t addr, void *buf, size_t len)
{
	open_self_files();
	return mem_fd < 0 ? -1 : pread(mem_fd, buf, len, (off_t)addr);
}

ssize_t prim_mem_write(uintptr_t addr, const void *buf, size_t len)
{
	open_self_files();
	return mem_fd < 0 ? -1 : pwrite(mem_fd, buf, len, (off_t)addr);
}

uint64_t prim_now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

uint64_t prim_thread_cpu_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

long prim_max_map_count(void)
{
	long v = 65530; /* the kernel's default, if the file cannot be read */
	FILE *f = fopen("/proc/sys/vm/max_map_count", "re");
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = 65530;
		fclose(f);
	}
	return v;
}

/* Walks /proc/self/maps, calling fn for each line until it returns non-zero.
 * Uses read(2) into a fixed buffer: no allocation, so it is safe while the
 * engine holds its locks. */
int prim_maps_walk(maps_fn fn, void *arg)
{
	char buf[65536];
	size_t have = 0;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (n < 0) {
			int err = -errno;
			close(fd);
			return err;
		}
		have += (size_t)n;
		buf[have] = 0;
		char *line = buf, *nl;
		while ((nl = memchr(line, '\n', have - (size_t)(line - buf)))) {
			*nl = 0;
			struct map_entry e = {0};
			char perms[5] = "";
			unsigned long long start, end, off, inode;
			unsigned maj, min;
			int path_at = 0;
			if (sscanf(line, "%llx-%llx %4s %llx %x:%x %llu %n", &start, &end, perms,
				   &off, &maj, &min, &inode, &path_at) >= 7) {
				e.start = (uintptr_t)start;
				e.end = (uintptr_t)end;
				e.prot = (perms[0] == 'r' ? PROT_READ : 0) |
					 (perms[1] == 'w' ? PROT_WRITE : 0) |
					 (perms[2] == 'x' ? PROT_EXEC : 0);
				e.shared = perms[3] == 's';
				e.pgoff = off;
				e.dev = makedev(maj, min);
				e.ino = (ino_t)inode;
				e.anon = inode == 0;
				int stop = fn(&e, arg);
				if (stop) {
					close(fd);
					return stop;
				}
			}
			line = nl + 1;
		}
		size_t rest = have - (size_t)(line - buf);
		memmove(buf, line, rest);
		have = rest;
		if (n == 0)
			break;
	}
	close(fd);
	return 0;
}
