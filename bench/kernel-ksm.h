/* SPDX-License-Identifier: MIT */
/*
 * kernel-ksm.h - the benchmarks' use of the kernel's KSM: the lock every
 * test and benchmark of it takes, and its knobs saved and put back.
 */
#ifndef BENCH_KERNEL_KSM_H
#define BENCH_KERNEL_KSM_H

/* Takes /tmp/samepage-kernel-ksm.lock (unless $SAMEPAGE_KSM_LOCK_HELD says
 * run.sh holds it for us), waits until nobody else uses the kernel's KSM
 * (15 minutes at most, then exits 1), saves every tunable and puts them
 * back at exit and on SIGINT/SIGTERM/SIGHUP.  Exits 77 without KSM. */
void kernel_ksm_acquire(void);
/* Puts every knob back, checks that each reads as it did, and releases the
 * lock; exits 1 if a knob could not be put back. */
void kernel_ksm_release(void);
/* Writes a knob of /sys/kernel/mm/ksm; exits 1 on failure. */
void kernel_ksm_write(const char *name, const char *value);
/* Writes value into the file at path (open/write/close only: safe in a
 * signal handler): 0, or -1 with errno set. */
int bench_write_file(const char *path, const char *value);
/* Writes a sysctl (e.g. /proc/sys/vm/max_map_count) for the run, and puts
 * its value back at exit and on SIGINT/SIGTERM/SIGHUP, as the knobs. */
void bench_sysctl_set(const char *path, const char *value);
/* A knob or counter of /sys/kernel/mm/ksm as a number, -1 if unreadable. */
long long kernel_ksm_number(const char *name);

#endif
