// SPDX-License-Identifier: MIT
/* basic.c - the README's usage example: merge 64 MiB of identical pages. */
#include <samepage.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void)
{
	size_t len = 64 << 20;
	samepage_t *sp;
	char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(mem, 'x', len); /* 16384 identical pages */
	if (samepage_open(&sp) || samepage_madvise(sp, mem, len, SAMEPAGE_MERGEABLE))
		return 1;
	samepage_write(sp, "pages_to_scan", "20000");
	samepage_write(sp, "sleep_millisecs", "0");
	samepage_write(sp, "run", "1");
	long long scans = 0, sharing = 0;
	while (scans < 2 && !samepage_read_number(sp, "full_scans", &scans))
		usleep(10000); /* two full scans: merged */
	samepage_read_number(sp, "pages_sharing", &sharing);
	printf("pages_sharing %lld: %lld MiB saved\n", sharing, sharing * 4096 >> 20);
	mem[0] = 'y'; /* copy-on-write, as usual */
	samepage_close(sp);
	return 0;
}
