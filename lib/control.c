// SPDX-License-Identifier: MIT
/*
 * control.c - talking to samepaged: the socket's path, one request and its
 * answer, and the trust checks.
 *
 * The protocol is text, one message per SOCK_SEQPACKET packet (see
 * PROTO_MAX in types.h); an error answer is "ERR <errno> <message>".  A
 * client trusts only its own daemon: one run by its user or by root
 * (SO_PEERCRED), handing over regular files of that user (or root) that
 * nobody else may write.  Anyone else's daemon could otherwise rewrite
 * files under the client's merged pages.
 *
 * Nothing here opens an engine: ksmctl links this file (with knobs.c and
 * counters.c) and not the scanner.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

/* A file the daemon hands over: a regular file of the daemon's user (or
 * root) that nobody else may write. */
static int file_trusted(int fd, uid_t peer)
{
	uid_t owner;
	mode_t mode;
	int err = prim_file_owner(fd, &owner, &mode);
	if (err)
		return err;
	if (!S_ISREG(mode) || (owner != peer && owner != 0) || (mode & (S_IWGRP | S_IWOTH)))
		return -EACCES;
	return 0;
}

/* Connects to the daemon at path, if it is ours: this user's or root's.
 * A request waits timeout_ms at most for its answer (-ETIMEDOUT): a
 * daemon stopped (SIGSTOP, a debugger, a frozen cgroup) still takes
 * connections into its socket's backlog and answers nothing, and a
 * caller waiting for ever would hold what it holds meanwhile (a client's
 * scanner, its engine's lock). */
static int dial(const char *path, unsigned timeout_ms)
{
	uid_t peer;
	int fd = prim_unix_connect(path, &peer);
	if (fd >= 0 && peer != prim_geteuid() && peer != 0) {
		prim_close(fd);
		return -EACCES;
	}
	if (fd >= 0)
		prim_sock_timeout(fd, timeout_ms);
	return fd;
}

/* Sends one request and reads the answer (and up to nfds descriptors,
 * each checked).  Returns how many descriptors came, or -errno.  slow: see
 * control_request(). */
static int exchange_slow(int fd, const char *request, char *reply, size_t len, int *fds, int nfds,
			 void (*slow)(void *), void *arg)
{
	int got = 0;
	bool refused = false;
	int err = prim_send(fd, request, strlen(request), false);
	if (err) {
		/* A daemon that refuses us says why, then closes: read that. */
		if (err != -EPIPE && err != -ECONNRESET)
			return err == -EAGAIN ? -ETIMEDOUT : err;
		refused = true;
		err = 0;
	}
	if (slow && !refused && !prim_readable(fd, CONTROL_QUICK_MS))
		slow(arg);
	ssize_t n = prim_recv_fds(fd, reply, len - 1, refused, fds, nfds, &got);
	if (n == -EAGAIN && !refused)
		return -ETIMEDOUT; /* no answer in time: stopped, or stuck */
	if (n == -ECONNRESET)	   /* reported before the answer still queued */
		n = prim_recv_fds(fd, reply, len - 1, true, fds, nfds, &got);
	if (n < 0)
		return refused ? -EPIPE : n == -EAGAIN ? -ECONNRESET : (int)n;
	if (n == 0)
		return -ECONNRESET;
	reply[n] = 0;
	uid_t peer = 0;
	if (got) {
		/* The daemon's credentials, for the files it handed over. */
		if (prim_unix_peer(fd, &peer))
			err = -EACCES;
		for (int i = 0; i < got && !err; i++)
			err = file_trusted(fds[i], peer);
	}
	if (!err && !strncmp(reply, "ERR ", 4)) {
		int e = atoi(reply + 4);
		err = e > 0 ? -e : -EPROTO;
	} else if (!err && strncmp(reply, "OK", 2)) {
		err = -EPROTO;
	}
	if (err) {
		for (int i = 0; i < got; i++)
			prim_close(fds[i]);
		return err;
	}
	return got;
}

static int exchange(int fd, const char *request, char *reply, size_t len, int *fds, int nfds)
{
	return exchange_slow(fd, request, reply, len, fds, nfds, NULL, NULL);
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
	fd = dial(socket_path, CONTROL_TIMEOUT_MS);
	if (fd < 0)
		return fd;
	err = exchange(fd, request, reply, len, NULL, 0);
	prim_close(fd);
	return err < 0 ? err : 0;
}

/* One request on an open connection (a client's, after HELLO). */
int control_request(int fd, const char *request, char *reply, size_t len, void (*slow)(void *),
		    void *arg)
{
	int err = exchange_slow(fd, request, reply, len, NULL, 0, slow, arg);
	return err < 0 ? err : 0;
}

/* HELLO: the connection, and the domain's index, pool (read-only), this
 * process's ledger and the domain's guard (read-only): fds[0..3], each
 * checked. */
int control_hello(const char *socket_path, const char *domain, unsigned timeout_ms, int *conn,
		  int fds[HELLO_FDS])
{
	char req[128], reply[256];
	int fd = dial(socket_path, timeout_ms);
	if (fd < 0)
		return fd;
	snprintf(req, sizeof(req), "HELLO %s %d", domain, SHARED_LAYOUT);
	int got = exchange(fd, req, reply, sizeof(reply), fds, HELLO_FDS);
	if (got != HELLO_FDS) {
		for (int i = 0; i < got; i++)
			prim_close(fds[i]);
		prim_close(fd);
		/* A samepaged older than the layout in HELLO reads "NAME LAYOUT"
		 * as a domain name, and refuses it. */
		if (got == -EINVAL && domain_name_ok(domain))
			return -EPROTONOSUPPORT;
		return got < 0 ? got : -EPROTO;
	}
	prim_sock_timeout(fd, 0); /* the client's connection: its PLACEs wait */
	*conn = prim_own_fd(fd);
	return 0;
}
