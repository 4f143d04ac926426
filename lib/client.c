// SPDX-License-Identifier: MIT
/*
 * client.c - an engine connected to samepaged (samepage_connect).
 *
 * The split (design.md §5): the daemon owns a domain's files (the stable
 * index and the pool) and each client's ledger; every client scans its own
 * memory with its own scanner thread, looks pages up in the domain's
 * shared index and does its own remaps, so no process ever reads another's
 * memory.  What is shared is only the pool, which every client may read.
 *
 * Across processes the unstable tree cannot compare two pages (neither
 * process can read the other's), so the domain keeps a small lossy table of
 * "hints": the 64-bit hash of a page waiting in some process's unstable
 * tree, with that process's pid.  A process that finds another's hint for
 * its own page makes the KSM page from its copy (a "solo" node, one
 * mapping: no memory is lost by it), and the other process, at its next
 * visit, finds that KSM page in the stable index and merges onto it after
 * a full memcmp.  A false hint costs one pool page, never a wrong merge.
 *
 * The connection stays open until the process exits (even after
 * samepage_close), so that the daemon keeps the KSM pages the process
 * still maps; when it closes, the daemon drops the process's references
 * counted in its ledger.  If the daemon goes away, merging pauses (the
 * files stay mapped, merged memory stays valid) and the scanner reconnects
 * every second; a daemon that comes back with the same files resumes.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int samepage_socket_path(char *buf, size_t len)
{
	const char *env = getenv("SAMEPAGE_SOCKET"), *xdg = getenv("XDG_RUNTIME_DIR");
	int n;
	if (!buf || !len)
		return -EINVAL;
	if (env && *env)
		n = snprintf(buf, len, "%s", env);
	else if (xdg && *xdg)
		n = snprintf(buf, len, "%s/samepaged.sock", xdg);
	else
		n = snprintf(buf, len, "/run/samepaged.sock");
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

bool domain_name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > 64 || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
		      (name[i] >= '0' && name[i] <= '9') || strchr("._-", name[i])))
			return false;
	return true;
}

unsigned long long proc_starttime(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long long st = 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	/* Fields after the comm: state is field 3, starttime field 22. */
	for (int field = 2; p && field < 22; field++)
		p = strchr(p + 1, ' ');
	if (p)
		st = strtoull(p + 1, NULL, 10);
	return st;
}

/* The daemon must be ours: run by this user, or by root (SO_PEERCRED).
 * Anyone else's daemon could hand us files it can rewrite under our
 * merged pages. */
static int peer_trusted(int fd, uid_t *peer)
{
	struct ucred cr;
	socklen_t l = sizeof(cr);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l) < 0)
		return -errno;
	if (cr.uid != geteuid() && cr.uid != 0)
		return -EACCES;
	*peer = cr.uid;
	return 0;
}

/* A file the daemon hands over: a regular file of the daemon's user (or
 * root) that nobody else may write. */
static int file_trusted(int fd, uid_t peer)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || (st.st_uid != peer && st.st_uid != 0) ||
	    (st.st_mode & (S_IWGRP | S_IWOTH)))
		return -EACCES;
	return 0;
}

static int dial(const char *path, uid_t *peer)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int err = connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ? -errno : 0;
	if (!err)
		err = peer_trusted(fd, peer);
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

/* Sends one request and reads the answer (and up to nfds descriptors). */
static int exchange(int fd, const char *request, char *reply, size_t len, int *fds, int nfds)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov = {.iov_base = reply, .iov_len = len - 1};
	struct msghdr msg = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	int got = 0;

	int flags = MSG_CMSG_CLOEXEC;
	if (send(fd, request, strlen(request), MSG_NOSIGNAL) < 0) {
		/* A daemon that refuses us says why, then closes: read that. */
		if (errno != EPIPE && errno != ECONNRESET)
			return -errno;
		flags |= MSG_DONTWAIT;
	}
	ssize_t n = recvmsg(fd, &msg, flags);
	if (n < 0 && errno == ECONNRESET) { /* reported before the queued answer */
		n = recvmsg(fd, &msg, flags | MSG_DONTWAIT);
		if (n < 0)
			return -ECONNRESET;
	}
	if (n < 0)
		return flags & MSG_DONTWAIT ? -EPIPE : -errno;
	if (n == 0)
		return -ECONNRESET;
	reply[n] = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (int i = 0; i < k; i++) {
			int f;
			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (got < nfds)
				fds[got++] = f;
			else
				close(f);
		}
	}
	if (!strncmp(reply, "ERR ", 4)) {
		for (int i = 0; i < got; i++)
			close(fds[i]);
		int e = atoi(reply + 4);
		return e > 0 ? -e : -EPROTO;
	}
	if (strncmp(reply, "OK", 2)) {
		for (int i = 0; i < got; i++)
			close(fds[i]);
		return -EPROTO;
	}
	return got;
}

int samepage_control(const char *socket_path, const char *request, char *reply, size_t len)
{
	char path[108];
	int fd, err;
	if (!request || !reply || len < 2)
		return -EINVAL;
	if (!socket_path) {
		err = samepage_socket_path(path, sizeof(path));
		if (err)
			return err;
		socket_path = path;
	}
	uid_t peer;
	fd = dial(socket_path, &peer);
	if (fd < 0)
		return fd;
	err = exchange(fd, request, reply, len, NULL, 0);
	close(fd);
	return err < 0 ? err : 0;
}

int client_write(struct samepage *sp, const char *name, const char *value)
{
	char req[256], reply[512];
	unsigned long long v;
	int err = samepage_knob_parse(name, value, &v); /* refuse before asking */
	if (err)
		return err;
	snprintf(req, sizeof(req), "SET %s %s", name, value);
	/* Strip the newline the kernel's parsing accepts: one line per field. */
	req[strcspn(req, "\n")] = 0;
	err = samepage_control(sp->socket_path, req, reply, sizeof(reply));
	if (err == -ENOENT || err == -ECONNREFUSED)
		return -ENOTCONN; /* the daemon is not running */
	return err;
}

/* HELLO: the domain's index and pool and this process's ledger. */
static int hello(const char *socket_path, const char *domain, int *conn, int fds[3])
{
	char req[128], reply[256];
	uid_t peer;
	int fd = dial(socket_path, &peer), got;
	if (fd < 0)
		return fd;
	snprintf(req, sizeof(req), "HELLO %s", domain);
	got = exchange(fd, req, reply, sizeof(reply), fds, 3);
	int err = got < 0 ? got : got != 3 ? -EPROTO : 0;
	for (int i = 0; !err && i < 3; i++)
		err = file_trusted(fds[i], peer);
	if (err) {
		for (int i = 0; i < got; i++)
			close(fds[i]);
		close(fd);
		return err;
	}
	*conn = fd;
	return 0;
}

static struct ledger *ledger_map(int fd)
{
	void *m =
	    prim_mmap(NULL, LEDGER_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	return m == MAP_FAILED ? NULL : m;
}

int samepage_connect(samepage_t **out, const char *domain)
{
	char path[108];
	int conn, fds[3], err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!domain_name_ok(domain))
		return -EINVAL;
	err = samepage_socket_path(path, sizeof(path));
	if (err)
		return err;
	err = hello(path, domain, &conn, fds);
	if (err)
		return err;
	struct ledger *lg = ledger_map(fds[2]);
	close(fds[2]);
	if (!lg) {
		close(fds[0]);
		close(fds[1]);
		close(conn);
		return -ENOMEM;
	}
	err = engine_open(out, fds[0], fds[1]);
	if (err) {
		prim_munmap(lg, LEDGER_SIZE);
		close(conn);
		return err;
	}
	struct samepage *sp = *out;
	sp->ledger = lg;
	sp->stable.refs = (uint32_t *)((char *)lg + LEDGER_OFF_REFS);
	sp->conn_fd = conn;
	snprintf(sp->domain_name, sizeof(sp->domain_name), "%s", domain);
	snprintf(sp->socket_path, sizeof(sp->socket_path), "%s", path);
	err = engine_start(sp);
	if (err) {
		engine_free(sp);
		close(conn);
		*out = NULL;
	}
	return err;
}

/* This process's counters, for the daemon (ksmctl --user top). */
int ledger_publish(struct samepage *sp)
{
	struct ledger *lg = sp->ledger;
	if (!lg)
		return 0;
	atomic_store(&lg->rmap_items, (int64_t)sp->c.rmap_items);
	atomic_store(&lg->merging_pages, (int64_t)sp->c.merging_pages);
	atomic_store(&lg->zero_pages, (int64_t)sp->c.zero_pages);
	atomic_store(&lg->unshared, (int64_t)sp->c.pages_unshared);
	atomic_store(&lg->full_scans, (int64_t)sp->c.full_scans);
	atomic_store(&lg->tracked_pages, (int64_t)sp->tracked_pages);
	atomic_store(&lg->metadata_bytes, (int64_t)metadata_bytes(sp));
	atomic_store(&lg->pages_scanned, (int64_t)sp->c.pages_scanned);
	atomic_store(&lg->pages_skipped, (int64_t)sp->c.pages_skipped);
	atomic_store(&lg->process_profit,
		     (int64_t)((sp->c.merging_pages + sp->c.zero_pages) * PAGE_SIZE) -
			 (int64_t)metadata_bytes(sp));
	return 0;
}

/* Called by the scanner between batches: notices a daemon that went away
 * (pause merging) and one that came back with the same files (resume). */
void client_poll(struct samepage *sp)
{
	if (!sp->socket_path[0])
		return;
	ledger_publish(sp);
	if (!sp->detached) {
		struct pollfd p = {.fd = sp->conn_fd, .events = POLLRDHUP};
		if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR))) {
			close(sp->conn_fd);
			sp->conn_fd = -1;
			sp->detached = true;
			sp->reconnect_ns = prim_now_ns();
		}
		return;
	}
	uint64_t now = prim_now_ns();
	if (now - sp->reconnect_ns < 1000000000ULL)
		return;
	sp->reconnect_ns = now;
	int conn, fds[3];
	if (hello(sp->socket_path, sp->domain_name, &conn, fds))
		return;
	struct stat a, b;
	bool same = fstat(fds[1], &a) == 0 && a.st_dev == sp->pool.dev && a.st_ino == sp->pool.ino;
	struct stat l;
	same = same && fstat(fds[2], &l) == 0 && fstat(fds[0], &b) == 0;
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	if (!same) {
		/* A daemon that lost its files made a new domain: ours stays
		 * valid but cannot merge with the new one.  Stay paused. */
		close(conn);
		return;
	}
	sp->conn_fd = conn;
	sp->detached = false;
}

/* samepage_close: the connection stays open until the process exits (see
 * the top of this file); the ledger mapping goes with the engine. */
void engine_detach(struct samepage *sp)
{
	if (sp->ledger) {
		ledger_publish(sp);
		sp->stable.refs = NULL;
		prim_munmap(sp->ledger, LEDGER_SIZE);
		sp->ledger = NULL;
	}
}
