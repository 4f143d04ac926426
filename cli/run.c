// SPDX-License-Identifier: MIT
/*
 * run.c - `ksmctl run -- COMMAND`: runs a program with all its memory
 * mergeable, the whole-process opt-in of prctl(PR_SET_MEMORY_MERGE).
 *
 * The flag is set on ksmctl's own process, then exec'd into COMMAND: the
 * kernel keeps it across fork since 6.4 and across exec since 6.7.  On
 * older kernels the exec would silently drop it, so ksmctl says so and
 * what to do instead, rather than pretend.
 */
#include "ksmctl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#endif

const char usage_run[] =
    "run [--] COMMAND [ARGS...]\n"
    "\n"
    "Runs COMMAND with its memory mergeable by KSM (prctl(PR_SET_MEMORY_MERGE),\n"
    "kept across exec since Linux 6.7, inherited by its children).  No root is\n"
    "needed; ksmd must be running (`ksmctl start`) for pages to merge.  The exit\n"
    "status is COMMAND's; 126/127 if it cannot be run.\n";

int cmd_run(int argc, char **argv)
{
	char release[128] = "";
	int first = 1;

	if (first < argc && strcmp(argv[first], "--") == 0)
		first++;
	if (first >= argc)
		return ksmctl_fail(KSMCTL_USAGE, "run", "give a command: ksmctl run -- myprogram",
				   "run: no command");
	host_release(release, sizeof(release));
	if (prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0)) {
		int err = errno;
		return ksmctl_fail(
		    KSMCTL_NO, argv[first],
		    "use a kernel with CONFIG_KSM=y, 6.4 or later (6.7+ to keep it "
		    "across exec); or make the program call madvise(MADV_MERGEABLE) on "
		    "its memory, or preload a madvise shim such as ksm_preload",
		    "run: this kernel (Linux %s) refuses prctl(PR_SET_MEMORY_MERGE): %s", release,
		    strerror(err));
	}
	if (version_cmp(release, "6.7") < 0)
		return ksmctl_fail(
		    KSMCTL_NO, argv[first],
		    "use Linux 6.7 or later, or make the program call "
		    "prctl(PR_SET_MEMORY_MERGE, 1) or madvise(MADV_MERGEABLE) itself",
		    "run: this kernel (Linux %s) drops the merge flag at exec", release);
	if (knob_or("run", 1) != 1)
		ksmctl_warn("ksmd is not running (run = %lld): nothing merges until `ksmctl start`",
			    knob_or("run", 0));
	execvp(argv[first], argv + first);
	int err = errno;
	ksmctl_fail(err == ENOENT ? 127 : 126, argv[first], "check the command's name and PATH",
		    "run: cannot execute: %s", strerror(err));
	return err == ENOENT ? 127 : 126;
}
