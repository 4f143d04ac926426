// SPDX-License-Identifier: MIT
/*
 * driver.c - a stand-alone `ksmctl estimate` for the tests: it runs the
 * verb exactly as ksmctl's main() would (argv[0] = "estimate"), so the tests
 * do not depend on the rest of ksmctl being built.
 */
#include "estimate.h"

int main(int argc, char **argv)
{
	argv[0] = "estimate";
	return ksmctl_estimate(argc, argv);
}
