// SPDX-License-Identifier: MIT
/*
 * die_at_unlink.c - an LD_PRELOAD shim for samepaged in tests: the process
 * is killed (SIGKILL, as by the OOM killer or `kill -9`) when it is about
 * to unlink a file whose path ends with $SAMEPAGE_TEST_DIE_AT_UNLINK, so
 * that a test can restart samepaged from the state such a death leaves.
 */

#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int unlink(const char *path)
{
	const char *tail = getenv("SAMEPAGE_TEST_DIE_AT_UNLINK");
	size_t pl = strlen(path), tl = tail ? strlen(tail) : 0;
	if (tl && pl >= tl && !strcmp(path + pl - tl, tail))
		raise(SIGKILL);
	int (*real)(const char *) = (int (*)(const char *))dlsym(RTLD_NEXT, "unlink");
	return real(path);
}
