// SPDX-License-Identifier: MIT
/*
 * cg_shim.c - lets libsamepage run under Valgrind, for the callgrind counts
 * of bench_scanpath only.
 *
 * The library reserves 64 GiB of address space for its pool view
 * (lib/pool.c), which Valgrind's address-space manager refuses (mmap fails
 * with EINVAL), so samepage_open() fails under any Valgrind tool.
 * bench/CMakeLists.txt builds a second copy of the library with its one
 * operating-system file, lib/prim-linux.c, compiled with prim_mmap renamed
 * to prim_mmap_linux, and this file in front of it: any mmap larger than
 * 8 GiB at a kernel-chosen address (only the pool's and the domain's
 * reservations) shrinks to 1 GiB, far more than the driver needs; every
 * other call is the real one.  So the instruction counts are those of the
 * real scan path.
 */
#include <stdint.h>
#include <sys/types.h>

int prim_mmap_linux(void **out, void *addr, size_t len, int prot, int flags, int fd, off_t off);
int prim_mmap(void **out, void *addr, size_t len, int prot, int flags, int fd, off_t off);

int prim_mmap(void **out, void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if (!addr && len > (1UL << 33))
		len = 1UL << 30;
	return prim_mmap_linux(out, addr, len, prot, flags, fd, off);
}
