// SPDX-License-Identifier: MIT
/*
 * procfs_test.c - common/procfs.c on made-up files: a stat line whose comm
 * holds ") " and spaces, "Key: N kB" files, ksm_stat's two line shapes,
 * cgroup v1 and v2, maps lines, pid lists, and procfs_escape() on every
 * byte value (the output is printable UTF-8 and gives the input back).
 *
 * usage: procfs_test TMPDIR
 */
#include "procfs.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../lib/check.h"

static const char *dir;

static const char *put(const char *name, const char *text)
{
	static char path[8400]; /* dir and name: p of test_pids is 4200 */
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f) {
		perror(path);
		exit(1);
	}
	fputs(text, f);
	fclose(f);
	return path;
}

/* Undoes procfs_escape's "\xHH". */
static size_t unescape(const char *s, char *out)
{
	size_t n = 0;

	while (*s) {
		if (s[0] == '\\' && s[1] == 'x') {
			unsigned v;
			sscanf(s + 2, "%2x", &v);
			out[n++] = (char)v, s += 4;
		} else
			out[n++] = *s++;
	}
	out[n] = '\0';
	return n;
}

/* True when s is valid UTF-8 without control characters (C0, DEL, C1). */
static bool printable_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		int n = *p < 0x80 ? 1 : *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc2 ? 2 : 0;
		if (!n || (*p < 0x80 && (*p < 0x20 || *p == 0x7f)))
			return false;
		if (n == 2 && *p == 0xc2 && p[1] < 0xa0)
			return false; /* C1 control */
		for (int i = 1; i < n; i++)
			if ((p[i] & 0xc0) != 0x80)
				return false;
		p += n;
	}
	return true;
}

static void test_escape(void)
{
	char in[8], out[64], back[16];

	/* Every byte alone, between two letters, and before a UTF-8 tail. */
	for (int b = 1; b < 256; b++) {
		snprintf(in, sizeof(in), "q%cz", b);
		procfs_escape(in, out, sizeof(out));
		CHECK(printable_utf8(out));
		CHECK(!strchr(out, '\n'));
		unescape(out, back);
		CHECK(strcmp(back, in) == 0);
		snprintf(in, sizeof(in), "%c\xa9", b);
		procfs_escape(in, out, sizeof(out));
		CHECK(printable_utf8(out));
		unescape(out, back);
		CHECK(strcmp(back, in) == 0);
	}
	procfs_escape("caf\xc3\xa9 \xe2\x82\xac", out, sizeof(out));
	CHECK(strcmp(out, "caf\xc3\xa9 \xe2\x82\xac") == 0); /* UTF-8 kept */
	procfs_escape("q\xffx\xfe", out, sizeof(out));
	CHECK(strcmp(out, "q\\xffx\\xfe") == 0);
	procfs_escape("a\\x2db\nc", out, sizeof(out)); /* systemd's escapes stay */
	CHECK(strcmp(out, "a\\x2db\\x0ac") == 0);
	procfs_escape("\xc0\xaf\xed\xa0\x80\xc2\x85", out,
		      sizeof(out)); /* overlong, surrogate, C1 */
	CHECK(strcmp(out, "\\xc0\\xaf\\xed\\xa0\\x80\\xc2\\x85") == 0);
	/* Invisible or reordering: a zero-width space, a right-to-left
	 * override, a byte-order mark (the name "ab" and these would look
	 * alike). */
	procfs_escape("a\xe2\x80\x8b\xe2\x80\xae\xef\xbb\xbf"
		      "b",
		      out, sizeof(out));
	CHECK(strcmp(out, "a\\xe2\\x80\\x8b\\xe2\\x80\\xae\\xef\\xbb\\xbfb") == 0);
	procfs_escape("\xff\xff\xff", out, 9); /* cut on a whole escape */
	CHECK(strcmp(out, "\\xff\\xff") == 0);
}

static void test_files(void)
{
	struct procfs_stat st;
	char buf[256];

	CHECK(procfs_stat(put("stat", "42 (a) b (c) S 7 0 0 0 -1 0 0 0 0 0 150 25 0 0 20 0 1 0 "
				      "9876 1000 10\n"),
			  &st) == 0);
	CHECK(st.state == 'S' && st.ppid == 7 && st.utime == 150 && st.stime == 25 &&
	      st.starttime == 9876);
	CHECK(procfs_stat(put("stat2", "42 (x) S 1 2\n"), &st) < 0);

	const char *mi = put("meminfo", "MemTotal:  100 kB\nMemAvailable:   1234 kB\n");
	CHECK(procfs_number(mi, "MemAvailable") == 1234);
	CHECK(procfs_number(mi, "MemAvail") == -1);
	CHECK(procfs_number(mi, "Shmem") == -1);
	const char *ks = put("ksm_stat", "ksm_rmap_items 12\nksm_merging_pages 5\n"
					 "ksm_merge_any: yes\n");
	CHECK(procfs_number(ks, "ksm_rmap_items") == 12);
	CHECK(procfs_number(ks, "ksm_merging_pages") == 5);
	procfs_read(ks, buf, sizeof(buf));
	CHECK(procfs_find_key(buf, "ksm_merge_any") &&
	      strcmp(procfs_find_key(buf, "ksm_merge_any"), "yes") == 0);

	CHECK(procfs_comm(put("comm", "q\xffx\n\n"), buf, sizeof(buf)) == 0);
	CHECK(strcmp(buf, "q\xffx\n") == 0); /* only the kernel's own newline goes */

	CHECK(procfs_cgroup(put("cg2", "0::/system.slice/x.service\n"), buf, sizeof(buf)) == 0);
	CHECK(strcmp(buf, "/system.slice/x.service") == 0);
	CHECK(procfs_cgroup(put("cg1", "3:memory:/a\n1:name=systemd:/user.slice/b.scope\n"), buf,
			    sizeof(buf)) == 0);
	CHECK(strcmp(buf, "/user.slice/b.scope") == 0);
	CHECK(procfs_cgroup(put("cg0", "3:memory:/a\n"), buf, sizeof(buf)) == -ENOENT);
}

/* mkdir -p DIR/rel */
static void mkdirs(const char *rel)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	for (char *s = path + strlen(dir) + 1; (s = strchr(s, '/')); s++) {
		*s = '\0';
		mkdir(path, 0755);
		*s = '/';
	}
	mkdir(path, 0755);
}

/* The room of a memory cgroup: the least (limit - usage) up the tree. */
static void test_memcg_room(void)
{
	char root[4096];
	snprintf(root, sizeof(root), "%s/fs", dir);
	/* v1: memory's line, limits at two levels; the root is unlimited. */
	mkdirs("fs/memory/system.slice/s.service");
	put("fs/memory/memory.limit_in_bytes", "9223372036854771712\n");
	put("fs/memory/system.slice/memory.limit_in_bytes", "100000000\n");
	put("fs/memory/system.slice/memory.usage_in_bytes", "99000000\n");
	put("fs/memory/system.slice/s.service/memory.limit_in_bytes", "50000000\n");
	put("fs/memory/system.slice/s.service/memory.usage_in_bytes", "10000000\n");
	char v1[4096], v2[4096]; /* put()'s path is overwritten by the next */
	snprintf(v1, sizeof(v1), "%s",
		 put("cgv1", "12:pids:/x\n5:cpu,memory:/system.slice/s.service\n"
			     "1:name=systemd:/system.slice/s.service\n0::/\n"));
	CHECK(procfs_memcg_room(v1, root) == 1000000); /* the parent's is the least */
	put("fs/memory/system.slice/memory.usage_in_bytes", "1000\n");
	CHECK(procfs_memcg_room(v1, root) == 40000000);
	put("fs/memory/system.slice/s.service/memory.usage_in_bytes", "60000000\n");
	CHECK(procfs_memcg_room(v1, root) == 0); /* over the limit */
	/* v2: "0::", the controller enabled, "max" is no limit. */
	char root2[4096];
	snprintf(root2, sizeof(root2), "%s/fs2", dir);
	mkdirs("fs2/machine.slice/vm.scope");
	put("fs2/cgroup.controllers", "cpuset cpu io memory pids\n");
	put("fs2/machine.slice/memory.max", "max\n");
	put("fs2/machine.slice/memory.current", "5\n");
	put("fs2/machine.slice/vm.scope/memory.max", "8388608\n");
	put("fs2/machine.slice/vm.scope/memory.current", "4194304\n");
	snprintf(v2, sizeof(v2), "%s", put("cgv2", "0::/machine.slice/vm.scope\n"));
	CHECK(procfs_memcg_room(v2, root2) == 4194304);
	put("fs2/machine.slice/vm.scope/memory.max", "max\n");
	CHECK(procfs_memcg_room(v2, root2) == -1); /* no limit anywhere */
	put("fs2/cgroup.controllers", "cpu io pids\n");
	put("fs2/machine.slice/vm.scope/memory.max", "8388608\n");
	CHECK(procfs_memcg_room(v2, root2) == -1); /* no memory controller */
	CHECK(procfs_memcg_room(put("cgnone", ""), root2) == -1);
}

static int count_anon(const struct procfs_map *m, void *arg)
{
	if (m->inode == 0 && m->perms[3] == 'p')
		++*(int *)arg;
	return 0;
}

static void test_maps(void)
{
	char line[] = "7f00-7f10 rw-p 00001000 08:01 1234   /usr/lib/a b.so\n";
	struct procfs_map m;
	int anon = 0;

	CHECK(procfs_parse_map(line, &m) == 0);
	CHECK(m.start == 0x7f00 && m.end == 0x7f10 && m.offset == 0x1000 && m.inode == 1234);
	CHECK(strcmp(m.perms, "rw-p") == 0 && strcmp(m.path, "/usr/lib/a b.so") == 0);
	const char *maps = put("maps", "1000-2000 rw-p 00000000 00:00 0 \n"
				       "2000-3000 rw-p 00000000 00:00 0    [heap]\n"
				       "3000-4000 r--s 00000000 00:05 77   /memfd:x (deleted)\n");
	CHECK(procfs_maps(maps, count_anon, &anon) == 0 && anon == 2);
	CHECK(procfs_count_maps(maps) == 3);
	CHECK(procfs_maps("/nonexistent/maps", count_anon, &anon) == -ENOENT);
}

static void test_pids(void)
{
	char d[2048], p[4200];
	int *pids, n;

	snprintf(d, sizeof(d), "%s/proc", dir);
	mkdir(d, 0755);
	for (int i = 0; i < 3; i++) {
		static const int ids[] = {300, 2, 41};
		static const char *const comms[] = {"ksmd\n", "init\n", "ksmd2\n"};
		snprintf(p, sizeof(p), "%s/%d", d, ids[i]);
		mkdir(p, 0755);
		snprintf(p, sizeof(p), "proc/%d/comm", ids[i]);
		put(p, comms[i]);
	}
	snprintf(p, sizeof(p), "%s/self", d);
	mkdir(p, 0755);
	n = procfs_pids(d, &pids);
	CHECK(n == 3 && pids[0] == 2 && pids[1] == 41 && pids[2] == 300);
	free(pids);
	CHECK(procfs_find_comm(d, "ksmd") == 300);
	CHECK(procfs_find_comm(d, "kswapd0") == -ENOENT);
	/* A directory with no process in it (a container's, a fuzzer's tree):
	 * none, and no qsort(NULL, 0) (UBSan in the sanitizer build). */
	snprintf(d, sizeof(d), "%s/empty", dir);
	mkdir(d, 0755);
	n = procfs_pids(d, &pids);
	CHECK(n == 0);
	free(pids);
	CHECK(procfs_find_comm(d, "ksmd") == -ENOENT);
}

/* A command line whose last argument has no NUL (a process that rewrote
 * its argv, as setproctitle() does, or a recorded tree) still comes back
 * with every argument ended by a NUL inside the bytes returned: the callers
 * walk it with strlen() up to the count and would otherwise read what the
 * buffer held before (another process's cgroup, in top --by vm). */
static void test_cmdline(void)
{
	static const char line[] = "qemu-system-x86_64\0-name\0guest=b";
	char buf[64], small[8];
	const char *path = put("cmdline", "");
	FILE *f = fopen(path, "w");
	int n;

	CHECK(f && fwrite(line, 1, sizeof(line) - 1, f) == sizeof(line) - 1);
	if (f)
		fclose(f);
	memset(buf, 'X', sizeof(buf));
	n = procfs_cmdline(path, buf, sizeof(buf));
	CHECK(n == (int)sizeof(line)); /* the bytes and the NUL that ends the last */
	CHECK(n > 0 && buf[n - 1] == '\0');
	CHECK(strcmp(buf + 25, "guest=b") == 0);
	memset(small, 'X', sizeof(small));
	n = procfs_cmdline(path, small, sizeof(small)); /* cut: still ended */
	CHECK(n == (int)sizeof(small) && small[n - 1] == '\0');
	CHECK(procfs_cmdline(put("cmdline3", ""), buf, sizeof(buf)) == 0); /* kernel thread */
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: procfs_test TMPDIR\n");
		return 2;
	}
	dir = argv[1];
	test_escape();
	test_files();
	test_memcg_room();
	test_maps();
	test_pids();
	test_cmdline();
	return check_report("procfs");
}
