/* SPDX-License-Identifier: MIT */
/*
 * procfs.h - the one reader of /proc for the programs of this tree (ksmctl,
 * the benchmarks, the tests, the demo): not installed, not part of
 * libsamepage.
 *
 * Every function takes the path of the file (or directory) it reads, so a
 * recorded tree ("tests/cli/trees/.../proc") answers as the machine it was
 * recorded on would; procfs_path() builds "ROOT/PID/FILE".  Errors are
 * returned as -errno, never through errno.
 *
 * Names that come from /proc (a process's comm, a cgroup path, a mapping's
 * path) are bytes chosen by whoever runs the process.  procfs_escape() is
 * the one way they are shown: the result is printable UTF-8 with no control
 * character, valid in a text table, a JSON string and a Prometheus label.
 */
#ifndef SAMEPAGE_COMMON_PROCFS_H
#define SAMEPAGE_COMMON_PROCFS_H

#include <stdbool.h>
#include <stddef.h>

/* "ROOT/PID/FILE" ("ROOT/PID" when file is NULL) into buf; returns buf. */
const char *procfs_path(char *buf, size_t len, const char *root, int pid, const char *file);

/* Reads a whole small file into buf, without its trailing newlines and
 * spaces: 0, or -errno (-ERANGE never: a long file is cut at len - 1). */
int procfs_read(const char *path, char *buf, size_t len);

/* The value after "KEY:" or "KEY " on a line of text that starts with KEY
 * ("MemAvailable:   1234 kB", "ksm_rmap_items 12", "ksm_merge_any: yes"):
 * a pointer into text, or NULL when no line has that key. */
const char *procfs_find_key(const char *text, const char *key);
/* Whether the two-letter flag ("mg", "sh", "ht") is among the VmFlags of
 * an smaps area (the text after "VmFlags:"). */
bool procfs_vmflag(const char *flags, const char *flag);
/* The same, read from a file, as a number (kB for "Key: N kB" files):
 * the number, or -1 when the file or the key is missing. */
long long procfs_number(const char *path, const char *key);

/* Fields of /proc/PID/stat (man 5 proc), counted from 1. */
struct procfs_stat {
	char state;			 /* field 3: R, S, D, Z, X, ... */
	int ppid;			 /* field 4 */
	unsigned long long utime, stime; /* fields 14, 15: clock ticks */
	unsigned long long starttime;	 /* field 22: clock ticks after boot */
};
/* Parses a stat file (PROC/PID/stat or PROC/PID/task/TID/stat), whose comm
 * may hold spaces and ")": 0, -errno, or -EINVAL. */
int procfs_stat(const char *path, struct procfs_stat *st);

/* A process's comm, as the kernel keeps it (raw bytes, no newline): 0 or
 * -errno.  Escape it with procfs_escape() before printing. */
int procfs_comm(const char *path, char *buf, size_t len);

/* A process's command line, PROC/PID/cmdline: its arguments one after the
 * other, each ended by a NUL (one is added after a last argument that has
 * none, or where a longer line is cut at len).  Returns the number of bytes
 * (0 for a kernel thread or a zombie) or -errno. */
int procfs_cmdline(const char *path, char *buf, size_t len);

/* The cgroup v2 path of a PROC/PID/cgroup file (its "0::" line; on a v1
 * host the name=systemd line): 0, -errno, or -ENOENT. */
int procfs_cgroup(const char *path, char *buf, size_t len);

/* The room left in a process's memory cgroup: the least of (limit - usage)
 * in bytes over its cgroup and their ancestors, read from the PROC/PID/cgroup
 * file `path` and the cgroup file systems under `root` (/sys/fs/cgroup):
 * cgroup v2 (memory.max, memory.current) or v1's memory controller
 * (memory.limit_in_bytes, memory.usage_in_bytes).  -1 when no limit applies
 * or none can be read; 0 when a cgroup is at or over its limit. */
long long procfs_memcg_room(const char *path, const char *root);

/* One line of /proc/PID/maps. */
struct procfs_map {
	unsigned long long start, end, offset;
	unsigned long inode;
	unsigned dev_major, dev_minor; /* the file's device ("00:1a") */
	char perms[5];		       /* "rw-p" */
	const char *path; /* "" for anonymous memory, "[heap]", a file; into the line */
};
/* Parses one line (its newline, if any, is cut): 0 or -EINVAL. */
int procfs_parse_map(char *line, struct procfs_map *m);
/* Calls fn for every line of a maps file; stops on fn's non-zero value and
 * returns it; 0 at the end; -errno if the file cannot be read. */
int procfs_maps(const char *path, int (*fn)(const struct procfs_map *m, void *arg), void *arg);
/* The number of lines of a maps file (the mappings a process holds), or
 * -errno. */
long long procfs_count_maps(const char *path);

/* The numeric entries of a directory (ROOT for processes, PROC/PID/task for
 * threads), ascending, in a malloc'd array the caller frees: the count, or
 * -errno. */
int procfs_pids(const char *dir, int **pids);
/* The first numeric entry of dir whose comm is exactly name (the kernel
 * thread "ksmd", a library thread "samepage-ksmd"): its id, or -ENOENT. */
int procfs_find_comm(const char *dir, const char *name);

/*
 * Copies in to out as printable text: valid UTF-8 sequences of printable
 * characters are kept, and every other byte (control characters, newline,
 * DEL, bytes that are not UTF-8, invisible or reordering characters such
 * as zero-width spaces and bidirectional controls) becomes "\xHH", as systemd escapes unit
 * names, so a cgroup path keeps its "machine-qemu\x2d1.scope" as it is.
 * The result is always terminated, cut on a whole character if out is too
 * small.  Returns out.
 */
const char *procfs_escape(const char *in, char *out, size_t outlen);
/* The same for the first len bytes of in, a NUL among them escaped too
 * ("\x00"); in[len] must be readable (a string's NUL, getline's). */
const char *procfs_escape_n(const char *in, size_t len, char *out, size_t outlen);
/* The length of the printable UTF-8 character at s (1 to 4), or 0 when s
 * does not start one: the test procfs_escape applies to each byte. */
size_t procfs_printable(const unsigned char *s);
/* The room procfs_escape needs for any input of n bytes, with its NUL. */
#define PROCFS_ESCAPED_SIZE(n) (4 * (n) + 1)

#endif
