// SPDX-License-Identifier: MIT
/*
 * cg_shim.c - lets libsamepage run under Valgrind, for the callgrind counts
 * of bench_scanpath only.
 *
 * The library reserves 64 GiB of address space for its pool view
 * (lib/pool.c, POOL_VIEW_PAGES), which Valgrind's address-space manager
 * refuses (mmap fails with EINVAL), so samepage_open() fails under any
 * Valgrind tool.  bench/CMakeLists.txt builds a second copy of the library
 * sources with syscall() renamed to cg_syscall(): this shrinks any mmap
 * larger than 8 GiB at a kernel-chosen address (only that reservation,
 * PROT_NONE or a MAP_SHARED view of the pool memfd) to 1 GiB, far more than the driver's pool
 * needs, and passes every other system call through unchanged.  Nothing else differs, so the
 * instruction counts are those of the real scan path.
 */
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

long cg_syscall(long nr, ...);

long cg_syscall(long nr, ...)
{
	va_list ap;
	long a[6];
	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (nr == SYS_mmap && a[0] == 0 && (unsigned long)a[1] > (1UL << 33))
		a[1] = 1L << 30;
	return syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
