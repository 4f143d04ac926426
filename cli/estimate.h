/* SPDX-License-Identifier: MIT */
/*
 * estimate.h - `ksmctl estimate`: how much would the kernel's KSM save on
 * the processes running now, measured without enabling KSM and without
 * stopping them.  See docs/estimate.md for what is counted and how.
 */
#ifndef KSMCTL_ESTIMATE_H
#define KSMCTL_ESTIMATE_H

/*
 * The verb's entry point: argv[0] is "estimate"; it parses its own options
 * (--help included) and returns the exit status: 0 when at least one target
 * could be read, 1 when none could, 2 on a bad command line.
 */
int ksmctl_estimate(int argc, char **argv);

#endif
