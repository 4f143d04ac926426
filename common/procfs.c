// SPDX-License-Identifier: MIT
/*
 * procfs.c - the /proc reader of the programs (see procfs.h).
 */
#include "procfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *procfs_path(char *buf, size_t len, const char *root, int pid, const char *file)
{
	if (file)
		snprintf(buf, len, "%s/%d/%s", root, pid, file);
	else
		snprintf(buf, len, "%s/%d", root, pid);
	return buf;
}

int procfs_read(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t got = 0;
	ssize_t n;

	if (fd < 0)
		return -errno;
	/* sysfs returns the whole value in one read, /proc files may not. */
	while (got + 1 < len && (n = read(fd, buf + got, len - 1 - got)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			n = -errno;
			close(fd);
			return (int)n;
		}
		got += (size_t)n;
	}
	close(fd);
	if (len)
		buf[got] = '\0';
	while (got && (buf[got - 1] == '\n' || buf[got - 1] == ' '))
		buf[--got] = '\0';
	return 0;
}

const char *procfs_find_key(const char *text, const char *key)
{
	size_t klen = strlen(key);

	for (const char *line = text; line && *line;) {
		if (strncmp(line, key, klen) == 0 && (line[klen] == ':' || line[klen] == ' '))
			return line + klen + strspn(line + klen, ": \t");
		line = strchr(line, '\n');
		line = line ? line + 1 : NULL;
	}
	return NULL;
}

bool procfs_vmflag(const char *flags, const char *flag)
{
	for (const char *f = flags; *f;) {
		size_t n = strcspn(f, " \n");

		if (n == 2 && !memcmp(f, flag, 2))
			return true;
		f += n;
		f += strspn(f, " \n");
	}
	return false;
}

long long procfs_number(const char *path, const char *key)
{
	char text[16384];
	const char *v;
	char *end;

	if (procfs_read(path, text, sizeof(text)) || !(v = procfs_find_key(text, key)))
		return -1;
	long long n = strtoll(v, &end, 10);
	return end == v ? -1 : n;
}

int procfs_stat(const char *path, struct procfs_stat *st)
{
	char text[1024];
	unsigned long long f[23] = {0};
	int err = procfs_read(path, text, sizeof(text));
	char *p, *save = NULL;
	int i = 3;

	if (err)
		return err;
	/* "pid (comm) S ...": comm may hold ") ", so take the last ")". */
	if (!(p = strrchr(text, ')')) || p[1] != ' ' || !p[2] || p[3] != ' ')
		return -EINVAL;
	st->state = p[2];
	for (p = strtok_r(p + 4, " ", &save); p && i < 22; p = strtok_r(NULL, " ", &save))
		f[++i] = strtoull(p, NULL, 10);
	if (i < 22)
		return -EINVAL;
	st->ppid = (int)f[4];
	st->utime = f[14];
	st->stime = f[15];
	st->starttime = f[22];
	return 0;
}

int procfs_comm(const char *path, char *buf, size_t len)
{
	char text[64];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, text, sizeof(text) - 1);
	if (n < 0)
		n = -errno;
	close(fd);
	if (n < 0)
		return (int)n;
	/* The kernel ends comm with one newline; a newline inside is the name's. */
	if (n > 0 && text[n - 1] == '\n')
		n--;
	snprintf(buf, len, "%.*s", (int)n, text);
	return 0;
}

int procfs_cmdline(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t got = 0;
	ssize_t n = 0;

	if (fd < 0)
		return -errno;
	while (got < len && (n = read(fd, buf + got, len - got)) > 0)
		got += (size_t)n;
	if (n < 0)
		n = -errno;
	close(fd);
	if (n < 0)
		return (int)n;
	/* Every argument ends with a NUL inside the bytes returned, for the
	 * callers' strlen(): a cut line, and one whose last argument has none
	 * (a process that rewrote its argv, as setproctitle() does). */
	if (got == len && len)
		buf[len - 1] = '\0';
	else if (got && buf[got - 1])
		buf[got++] = '\0';
	return (int)got;
}

int procfs_cgroup(const char *path, char *buf, size_t len)
{
	char text[8192];
	int err = procfs_read(path, text, sizeof(text));
	const char *s;

	if (err)
		return err;
	if (strncmp(text, "0::", 3) == 0)
		s = text + 3;
	else if ((s = strstr(text, "\n0::")))
		s += 4;
	else if ((s = strstr(text, "name=systemd:")))
		s += strlen("name=systemd:");
	if (!s)
		return -ENOENT;
	snprintf(buf, len, "%.*s", (int)strcspn(s, "\n"), s);
	return 0;
}

/* limit - usage of one cgroup directory, or -1 when it has no limit. */
static long long memcg_dir_room(const char *dir, bool v2)
{
	char path[4800], text[64];
	long long limit, usage;
	snprintf(path, sizeof(path), "%s/%s", dir, v2 ? "memory.max" : "memory.limit_in_bytes");
	if (procfs_read(path, text, sizeof(text)) || !strcmp(text, "max"))
		return -1;
	limit = strtoll(text, NULL, 10);
	if (limit <= 0 || limit >= (1LL << 62)) /* v1's "unlimited": 2^63 - a page */
		return -1;
	snprintf(path, sizeof(path), "%s/%s", dir, v2 ? "memory.current" : "memory.usage_in_bytes");
	if (procfs_read(path, text, sizeof(text)))
		return -1;
	usage = strtoll(text, NULL, 10);
	return limit > usage ? limit - usage : 0;
}

/* cgroup v1: the path on the line "N:controllers:/path" whose controllers
 * include memory, or NULL. */
static const char *v1_memory_path(const char *text)
{
	for (const char *s = text; *s;) {
		const char *end = s + strcspn(s, "\n");
		const char *c = memchr(s, ':', (size_t)(end - s));
		const char *p = c ? memchr(c + 1, ':', (size_t)(end - c - 1)) : NULL;
		for (const char *w = c ? c + 1 : end; p && w < p;) {
			size_t k = strcspn(w, ",:");
			if (k == 6 && !strncmp(w, "memory", 6))
				return p + 1;
			w += k + 1;
		}
		s = *end ? end + 1 : end;
	}
	return NULL;
}

long long procfs_memcg_room(const char *path, const char *root)
{
	char text[8192], dir[4700], base[512], rel[4096];
	const char *line;
	bool v2 = false;

	if (procfs_read(path, text, sizeof(text)))
		return -1;
	if ((line = v1_memory_path(text))) {
		snprintf(base, sizeof(base), "%s/memory", root);
		snprintf(rel, sizeof(rel), "%.*s", (int)strcspn(line, "\n"), line);
	} else {
		/* v2: its "0::" line, where the root enables the controller */
		char have[512];
		snprintf(base, sizeof(base), "%s/cgroup.controllers", root);
		if (procfs_read(base, have, sizeof(have)) || !strstr(have, "memory") ||
		    procfs_cgroup(path, rel, sizeof(rel)))
			return -1;
		v2 = true;
		snprintf(base, sizeof(base), "%s", root);
	}
	long long least = -1;
	for (;;) {
		snprintf(dir, sizeof(dir), "%s%s", base, rel);
		long long room = memcg_dir_room(dir, v2);
		if (room >= 0 && (least < 0 || room < least))
			least = room;
		char *slash = strrchr(rel, '/');
		if (!slash || slash == rel)
			break;
		*slash = '\0';
	}
	return least;
}

int procfs_parse_map(char *line, struct procfs_map *m)
{
	int pos = 0;

	line[strcspn(line, "\n")] = '\0';
	if (sscanf(line, "%llx-%llx %4s %llx %x:%x %lu %n", &m->start, &m->end, m->perms,
		   &m->offset, &m->dev_major, &m->dev_minor, &m->inode, &pos) < 7 ||
	    !pos)
		return -EINVAL;
	m->path = line + pos;
	return 0;
}

int procfs_maps(const char *path, int (*fn)(const struct procfs_map *m, void *arg), void *arg)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	int ret = 0;

	if (!f)
		return -errno;
	while (!ret && getline(&line, &cap, f) > 0) {
		struct procfs_map m;

		if (procfs_parse_map(line, &m) == 0)
			ret = fn(&m, arg);
	}
	if (!ret && ferror(f))
		ret = -EIO;
	free(line);
	fclose(f);
	return ret;
}

long long procfs_count_maps(const char *path)
{
	char buf[65536];
	long long lines = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		for (ssize_t i = 0; i < n; i++)
			lines += buf[i] == '\n';
	close(fd);
	return lines;
}

static int by_number(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

int procfs_pids(const char *dir, int **pids)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int *v = NULL, n = 0, cap = 0;

	*pids = NULL;
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		char *end;
		long id = strtol(e->d_name, &end, 10);

		if (*end || end == e->d_name || id <= 0 || id > 0x7fffffff)
			continue;
		if (n == cap) {
			int *nv = realloc(v, sizeof(int) * (size_t)(cap = cap ? 2 * cap : 256));
			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
		}
		v[n++] = (int)id;
	}
	closedir(d);
	if (n)
		qsort(v, (size_t)n, sizeof(int), by_number);
	*pids = v;
	return n;
}

int procfs_find_comm(const char *dir, const char *name)
{
	int *ids, n = procfs_pids(dir, &ids), found = -ENOENT;

	for (int i = 0; i < n && found < 0; i++) {
		char path[4096], comm[64];

		if (procfs_comm(procfs_path(path, sizeof(path), dir, ids[i], "comm"), comm,
				sizeof(comm)) == 0 &&
		    strcmp(comm, name) == 0)
			found = ids[i];
	}
	free(ids);
	return n < 0 ? n : found;
}

/* Overlong forms, surrogates and C1 controls are not printable either, nor
 * are the characters that show nothing or reorder what follows: the soft
 * hyphen, zero-width spaces and joiners, the line and paragraph
 * separators, bidirectional controls, the word joiner and invisible
 * operators, and the byte-order mark (a name made of them would print as
 * another, or as nothing). */
static bool invisible(unsigned cp)
{
	return cp == 0xad || (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202e) ||
	       (cp >= 0x2060 && cp <= 0x2064) || (cp >= 0x2066 && cp <= 0x206f) || cp == 0xfeff;
}

size_t procfs_printable(const unsigned char *s)
{
	unsigned cp;
	size_t n;

	if (s[0] >= 0x20 && s[0] < 0x7f)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp < 0xa0) || invisible(cp))
		return 0;
	return n;
}

const char *procfs_escape_n(const char *in, size_t len, char *out, size_t outlen)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t o = 0, i = 0;

	if (!outlen)
		return out;
	while (i < len) {
		size_t n = s[i] ? procfs_printable(s + i) : 0;
		const char *piece = (const char *)s + i;
		char esc[8];

		if (!n || n > len - i)
			n = (size_t)snprintf(esc, sizeof(esc), "\\x%02x", s[i]), piece = esc;
		if (o + n >= outlen)
			break;
		memcpy(out + o, piece, n);
		o += n;
		i += piece == esc ? 1 : n;
	}
	out[o] = '\0';
	return out;
}

const char *procfs_escape(const char *in, char *out, size_t outlen)
{
	return procfs_escape_n(in, strlen(in), out, outlen);
}
