// SPDX-License-Identifier: MIT
/*
 * samepaged - merging across processes, inside security domains.
 *
 * The daemon owns, per security domain, the two files every client of that
 * domain maps (the stable index and the pool, see lib/domain.c and
 * lib/client.c), and one ledger per client process.  It never reads a
 * client's memory: clients scan and merge their own pages.  What it does:
 *
 *  - hands a connecting process (same user, or root: SO_PEERCRED) its
 *    domain's files and its ledger (HELLO); domains never share pages;
 *  - keeps the daemon-wide knobs, with the kernel's rules (SET, GET), and
 *    reports the domains' and clients' counters (GET, CLIENTS);
 *  - when a client's connection closes (it exited, was killed, or exec'd),
 *    drops the references its ledger counts, so that no pool page stays
 *    that nobody maps; a client that died while the daemon was down is
 *    found by its ledger file at start-up;
 *  - keeps its state in files (--state-dir), so that a restarted daemon
 *    takes the same domains back and its clients resume merging.
 *
 * This file is the program: options, the socket, the poll loop, signals.
 * The state it keeps is state.c's; a request is answered by protocol.c.
 *
 * Usage: samepaged [--foreground] [--socket PATH] [--state-dir DIR]
 *                  [--config FILE] [--pid-file FILE]
 * The state directory (default /dev/shm/samepaged-UID) must be on tmpfs.
 * Socket activation (LISTEN_FDS) and readiness (NOTIFY_SOCKET) as systemd
 * does them.
 */
#include "protocol.h"
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <unistd.h>

static struct {
	char socket_path[108], pid_file[256];
	const char *config;
	bool foreground, own_socket;
	int listen_fd;
	unsigned long long knob[64]; /* daemon-wide */
	struct state st;
	struct proto_reply reply;
	volatile sig_atomic_t stop;
} g;

static void on_signal(int sig)
{
	(void)sig;
	g.stop = 1;
}

/* ---- configuration ---- */

/* "name = value" lines, '#' comments: the knobs of samepage.h's table,
 * checked as the kernel checks them.  Exits 2 on the first bad line. */
static void load_config(const char *path)
{
	char line[512];
	int lineno = 0;
	FILE *f = fopen(path, "re");
	if (!f) {
		logmsg("cannot read config %s: %s (fix: give an existing file to --config)", path,
		       strerror(errno));
		exit(2);
	}
	while (fgets(line, sizeof(line), f)) {
		char name[128], value[256];
		unsigned long long v;
		bool unmerge;
		lineno++;
		char *h = strchr(line, '#');
		if (h)
			*h = 0;
		if (strspn(line, " \t\r\n") == strlen(line))
			continue;
		if (sscanf(line, " %127[A-Za-z0-9_] = %255s", name, value) != 2) {
			logmsg("%s:%d: expected 'name = value', got: %s", path, lineno, line);
			exit(2);
		}
		int err = samepage_knob_parse(name, value, &v);
		if (!err)
			err = knob_store(g.knob, knob_index(name), v, false, &unmerge);
		if (err) {
			logmsg("%s:%d: %s = %s: %s (fix: see samepage(3) for the knobs and their "
			       "ranges)",
			       path, lineno, name, value, samepage_strerror(err));
			exit(2);
		}
	}
	fclose(f);
}

/* ---- connections ---- */

static void send_reply(int fd, struct proto_reply *r)
{
	char cbuf[CMSG_SPACE(sizeof(r->fds))];
	struct iovec iov = {.iov_base = r->text, .iov_len = r->len};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	if (r->nfds) {
		memset(cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)r->nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)r->nfds);
		memcpy(CMSG_DATA(c), r->fds, sizeof(int) * (size_t)r->nfds);
	}
	sendmsg(fd, &msg, MSG_NOSIGNAL);
	proto_reply_done(r);
}

static void refuse(int fd, int err, const char *what)
{
	proto_error(&g.reply, err, what);
	send_reply(fd, &g.reply);
	close(fd);
}

static void drop_client(int i)
{
	close(g.st.clients[i].fd);
	state_client_remove(&g.st, i);
}

static void accept_client(void)
{
	int fd = accept4(g.listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	struct ucred cr;
	socklen_t l = sizeof(cr);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l) < 0) {
		close(fd);
		return;
	}
	if (cr.uid != geteuid() && cr.uid != 0) {
		/* Only the daemon's user, or root: another user's process could
		 * learn which pages exist by merging (a side channel). */
		refuse(fd, -EACCES, "this samepaged belongs to another user");
		logmsg("refused process %d of uid %d", (int)cr.pid, (int)cr.uid);
		return;
	}
	if (!state_client_add(&g.st, fd, cr.pid))
		refuse(fd, -EAGAIN, "too many clients");
}

/* ---- start-up ---- */

static void notify_ready(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (!path || (*path != '/' && *path != '@'))
		return;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (*path == '@')
		a.sun_path[0] = 0;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	const char *msg = "READY=1\nSTATUS=merging pages for its domains";
	sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&a,
	       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path)));
	close(fd);
}

static int listen_socket(void)
{
	const char *lf = getenv("LISTEN_FDS"), *lp = getenv("LISTEN_PID");
	if (lf && lp && atoi(lf) == 1 && atoi(lp) == (int)getpid())
		return 3; /* systemd socket activation */
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(g.socket_path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, g.socket_path);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A socket file left by a daemon that died: take it over only if
	 * nothing answers there. */
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
		close(fd);
		return -EADDRINUSE;
	}
	unlink(g.socket_path);
	mode_t old = umask(0077); /* the socket is the user's alone */
	int rc = bind(fd, (struct sockaddr *)&a, sizeof(a));
	umask(old);
	if (rc < 0 || listen(fd, 64) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	g.own_socket = true;
	return fd;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: samepaged [--foreground] [--socket PATH] [--state-dir DIR]\n"
		   "                 [--config FILE] [--pid-file FILE]\n"
		   "       samepaged --help | --version\n"
		   "Merges identical pages across the processes of each security domain\n"
		   "(clients use samepage_connect(3)).  See samepaged(8).\n");
}

int main(int argc, char **argv)
{
	for (int i = 0; i < samepage_knob_count(); i++)
		g.knob[i] = samepage_knob_at(i)->def;
	g.st.knob = g.knob;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--foreground") || !strcmp(a, "-f")) {
			g.foreground = true;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--version")) {
			printf("samepaged %s\n", SAMEPAGE_VERSION_STRING);
			return 0;
		} else if (v && !strcmp(a, "--socket")) {
			snprintf(g.socket_path, sizeof(g.socket_path), "%s", v), i++;
		} else if (v && !strcmp(a, "--state-dir")) {
			snprintf(g.st.dir, sizeof(g.st.dir), "%s", v), i++;
		} else if (v && !strcmp(a, "--config")) {
			g.config = v, i++;
		} else if (v && !strcmp(a, "--pid-file")) {
			snprintf(g.pid_file, sizeof(g.pid_file), "%s", v), i++;
		} else {
			fprintf(stderr, "samepaged: unknown option or missing value: %s\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (!g.socket_path[0] && samepage_socket_path(g.socket_path, sizeof(g.socket_path))) {
		logmsg("socket path too long (fix: --socket PATH)");
		return 2;
	}
	if (!g.st.dir[0]) /* memory, not disk: /dev/shm is tmpfs on every Linux */
		snprintf(g.st.dir, sizeof(g.st.dir), "/dev/shm/samepaged-%d", (int)geteuid());
	if (g.config)
		load_config(g.config);
	g.st.config_given = g.config != NULL;
	if (mkdir(g.st.dir, 0700) < 0 && errno != EEXIST) {
		logmsg("cannot make the state directory %s: %s (fix: --state-dir DIR)", g.st.dir,
		       strerror(errno));
		return 1;
	}
	struct statfs sfs;
	if (statfs(g.st.dir, &sfs) == 0 && sfs.f_type != TMPFS_MAGIC)
		logmsg("warning: %s is not tmpfs: the pool would be a disk file's page cache, "
		       "written back to disk (fix: --state-dir on tmpfs, e.g. /dev/shm)",
		       g.st.dir);
	g.listen_fd = listen_socket();
	if (g.listen_fd < 0) {
		logmsg("cannot listen on %s: %s%s", g.socket_path, strerror(-g.listen_fd),
		       g.listen_fd == -EADDRINUSE ? " (another samepaged answers there)" : "");
		return 1;
	}
	if (!g.foreground) {
		pid_t p = fork();
		if (p < 0)
			return 1;
		if (p > 0)
			return 0;
		setsid();
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			close(null);
		}
	}
	if (g.pid_file[0]) {
		FILE *f = fopen(g.pid_file, "we");
		if (f) {
			fprintf(f, "%d\n", (int)getpid());
			fclose(f);
		}
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* Take back the domains and the clients of a previous run. */
	state_take_back(&g.st);
	logmsg("listening on %s, state in %s", g.socket_path, g.st.dir);
	notify_ready();

	uint64_t last_sweep = prim_now_ns();
	while (!g.stop) {
		struct pollfd p[MAX_CLIENTS + 1];
		p[0] = (struct pollfd){.fd = g.listen_fd, .events = POLLIN};
		for (int i = 0; i < g.st.nclients; i++)
			p[i + 1] = (struct pollfd){.fd = g.st.clients[i].fd, .events = POLLIN};
		int n = poll(p, (nfds_t)g.st.nclients + 1, 1000);
		if (n < 0 && errno != EINTR)
			break;
		for (int i = g.st.nclients; n > 0 && i-- > 0;) {
			if (!p[i + 1].revents)
				continue;
			char msg[1024];
			ssize_t got = recv(g.st.clients[i].fd, msg, sizeof(msg) - 1, 0);
			if (got <= 0) {
				drop_client(i);
				continue;
			}
			struct client *c = &g.st.clients[i];
			proto_answer(&g.st, c, msg, (size_t)got, &g.reply);
			send_reply(c->fd, &g.reply);
		}
		if (n > 0 && (p[0].revents & POLLIN))
			accept_client();
		if (prim_now_ns() - last_sweep > 5000000000ULL) {
			state_reap_orphans(&g.st);
			last_sweep = prim_now_ns();
		}
	}
	logmsg("stopping; clients keep their memory and resume when samepaged is back");
	if (g.own_socket)
		unlink(g.socket_path);
	if (g.pid_file[0])
		unlink(g.pid_file);
	return 0;
}
