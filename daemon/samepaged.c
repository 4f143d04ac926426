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
#include "ksmconf.h" /* common/: the config file parser ksmctl apply uses */
#include "pool.h"
#include "protocol.h"
#include "state.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <unistd.h>

static struct {
	char socket_path[108], pid_file[256];
	bool pid_opened; /* pid_file opened (a regular file): removed on a failed start */
	const char *config;
	bool foreground, own_socket;
	int listen_fd, lock_fd;
	unsigned long long knob[64]; /* daemon-wide */
	struct state st;
	struct limits lim;
	struct proto_reply reply;
	uint64_t accept_paused_until; /* out of descriptors: accept again then */
	uint64_t watchdog_ns;	      /* systemd's WatchdogSec=, halved; 0: none */
	int notify_fd;		      /* to NOTIFY_SOCKET, or -1 */
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
	/* common/ksmconf.c: the parser `ksmctl apply` uses, same messages
	 * and rules (pages_to_scan with advisor_mode=scan-time refused). */
	static struct ksmconf_file conf;
	struct ksmconf_error err;
	int ret = ksmconf_read(path, &conf, &err);
	for (int i = 0; !ret && i < conf.n; i++) {
		bool unmerge;
		const struct ksmconf_entry *e = &conf.e[i];
		ret = knob_store(g.knob, knob_index(e->knob->name), e->v, false, &unmerge);
		if (ret) {
			snprintf(err.cause, sizeof(err.cause), "%s refused: %s", e->knob->name,
				 samepage_strerror(ret));
			snprintf(err.input, sizeof(err.input), "%.800s: %s = %s", e->origin,
				 e->knob->name, e->value);
			snprintf(err.fix, sizeof(err.fix),
				 "see samepage(3) for the knobs, their ranges and rules");
		}
	}
	if (ret) {
		logmsg("%s\n  input: %s\n  fix: %s", err.cause, err.input, err.fix);
		exit(2);
	}
}

/* ---- connections ---- */

/* Sends a reply: 0, or -errno (EAGAIN: the client does not read). */
static int send_reply(int fd, struct proto_reply *r)
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
	int err = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 ? -errno : 0;
	proto_reply_done(r);
	return err;
}

/* --allow-user USER[:DOMAINS]: the users (beside the daemon's and root)
 * whose processes may connect, and the domains they may join.  Run as
 * root, samepaged then serves VM monitors of other users, which cannot
 * write the pool; a user given DOMAINS is a tenant, kept to them
 * (samepaged(8), SECURITY). */
static void allow_user(const char *arg)
{
	char name[256];
	const char *colon = strchr(arg, ':'), *domains = colon ? colon + 1 : "";
	snprintf(name, sizeof(name), "%.*s", colon ? (int)(colon - arg) : 255, arg);
	struct passwd *pw = getpwnam(name);
	char *end;
	unsigned long uid = strtoul(name, &end, 10);
	if (pw)
		uid = pw->pw_uid;
	else if (!*name || *end) {
		fprintf(stderr,
			"samepaged: --allow-user %s: no such user \"%s\" (fix: a user name or "
			"number, then :DOMAIN,... if its processes may join only those domains)\n",
			arg, name);
		exit(2);
	}
	/* Patterns of domain names: what a name may hold, and * ? [ ] !. */
	size_t len = strlen(domains);
	bool bad = colon &&
		   (!len || domains[0] == ',' || domains[len - 1] == ',' || strstr(domains, ",,") ||
		    domains[strspn(domains, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					    "0123456789._-*?[]!,")]);
	if (bad || len >= sizeof(g.st.allow[0].domains)) {
		fprintf(
		    stderr,
		    "samepaged: --allow-user %s: bad domains \"%s\" (fix: USER:DOMAIN[,DOMAIN...], "
		    "each a domain name or a shell pattern of one, e.g. tenant-a:vm-a-*; at "
		    "most %zu bytes)\n",
		    arg, domains, sizeof(g.st.allow[0].domains) - 1);
		exit(2);
	}
	if (g.st.nallow == ALLOW_MAX) {
		fprintf(stderr, "samepaged: --allow-user %s: at most %d users\n", arg, ALLOW_MAX);
		exit(2);
	}
	struct allowed *a = &g.st.allow[g.st.nallow++];
	a->uid = (uid_t)uid;
	snprintf(a->domains, sizeof(a->domains), "%s", domains);
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

/* Closes connection i (never one that said HELLO), telling it why. */
static void close_client(int i, int err, const char *what)
{
	struct client *c = &g.st.clients[i];
	logmsg_throttled(&g.st.log_limit, "closed a connection of process %d (%s): %s", (int)c->pid,
			 c->comm, what);
	proto_error(&g.reply, err, what);
	send_reply(c->fd, &g.reply);
	drop_client(i);
}

/* Connections that never said HELLO, idle for --idle-timeout. */
static void close_idle(uint64_t now)
{
	char what[200];
	uint64_t limit = (uint64_t)g.st.lim.idle_timeout * 1000000000ULL;
	snprintf(what, sizeof(what), "closed after %d s without HELLO or request (--idle-timeout)",
		 g.st.lim.idle_timeout);
	for (int i = g.st.nclients; i-- > 0;)
		if (!g.st.clients[i].d && g.st.clients[i].active_ns + limit < now)
			close_client(i, -ETIMEDOUT, what);
}

static void accept_client(int fd)
{
	struct ucred cr;
	socklen_t l = sizeof(cr);
	char what[200];
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l) < 0) {
		close(fd);
		return;
	}
	if (!state_user_may_connect(&g.st, cr.uid)) {
		/* Only the daemon's user, root, or a user --allow-user names:
		 * another user's process could learn which pages exist by
		 * merging (a side channel). */
		refuse(fd, -EACCES, "this samepaged belongs to another user");
		logmsg_throttled(&g.st.log_limit, "refused process %d of uid %d", (int)cr.pid,
				 (int)cr.uid);
		return;
	}
	/* The limits (a tenant's share, a process's, the table's) are
	 * state_client_add()'s; a full table makes room first. */
	int err = state_client_add(&g.st, fd, cr.pid, cr.uid, what, sizeof(what));
	int idlest = err == -ENFILE ? state_client_idlest(&g.st) : -1;
	if (idlest >= 0) {
		/* Room for the newcomer: a flood of idle connections never
		 * locks a client out. */
		char room[200];
		snprintf(room, sizeof(room),
			 "closed to make room: %d connections open, the most --max-connections "
			 "allows, and this one idle the longest without HELLO",
			 g.st.lim.connections);
		close_client(idlest, -ENFILE, room);
		err = state_client_add(&g.st, fd, cr.pid, cr.uid, what, sizeof(what));
	}
	if (err) {
		/* A tenant's refusals in its own throttle: its flood hides no
		 * other user's. */
		logmsg_throttled(state_user_throttle(&g.st, cr.uid),
				 "refused a connection of process %d: %s", (int)cr.pid, what);
		refuse(fd, err, what);
	}
}

/* The connections waiting in the listen backlog (a bounded batch). */
static void accept_clients(void)
{
	for (int k = 0; k < 64; k++) {
		int fd = accept4(g.listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0) {
			accept_client(fd);
			continue;
		}
		if (errno == EMFILE || errno == ENFILE) {
			/* Out of descriptors: stop polling the backlog for a
			 * while instead of spinning on it. */
			g.accept_paused_until = prim_now_ns() + 100000000ULL;
			logmsg_throttled(
			    &g.st.log_limit,
			    "cannot accept a connection: %s (fix: a larger LimitNOFILE= "
			    "or ulimit -n, or a smaller --max-connections)",
			    strerror(errno));
		}
		return;
	}
}

/* A request of connection i, answered; or its end.  A request may be
 * empty (recv 0 with no end of the stream seen) or too long (it is read
 * whole, up to PROTO_MAX bytes, and refused). */
static void serve_client(int i, short revents, uint64_t now)
{
	static char msg[PROTO_MAX];
	struct client *c = &g.st.clients[i];
	ssize_t got = recv(c->fd, msg, sizeof(msg), MSG_DONTWAIT);
	if (got < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (got < 0 || (got == 0 && (revents & (POLLRDHUP | POLLHUP | POLLERR)))) {
		drop_client(i); /* closed, or shut down: state.c decides if it is gone */
		return;
	}
	c->active_ns = now;
	proto_answer(&g.st, c, msg, (size_t)got, &g.reply);
	if (send_reply(c->fd, &g.reply) == -EAGAIN && !c->d) {
		/* A control connection that does not read its answers. */
		logmsg_throttled(&g.st.log_limit,
				 "closed a connection of process %d (%s): it does not read its "
				 "answers",
				 (int)c->pid, c->comm);
		drop_client(i);
	}
}

static void notify(const char *msg);

/* The poll loop, until SIGTERM or SIGINT (blocked but in ppoll, so that
 * one arriving between two rounds is never missed). */
static void serve(void)
{
	struct pollfd *p = calloc((size_t)g.st.lim.connections + 1, sizeof(*p));
	sigset_t blocked, during_poll;
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGTERM);
	sigaddset(&blocked, SIGINT);
	sigprocmask(SIG_BLOCK, &blocked, &during_poll);
	sigdelset(&during_poll, SIGTERM);
	sigdelset(&during_poll, SIGINT);
	if (!p) {
		logmsg("out of memory for %d connections (fix: a smaller --max-connections)",
		       g.st.lim.connections);
		return;
	}
	uint64_t last_sweep = prim_now_ns(), last_ping = 0;
	while (!g.stop) {
		bool accepting = prim_now_ns() >= g.accept_paused_until;
		p[0] = (struct pollfd){.fd = g.listen_fd, .events = accepting ? POLLIN : 0};
		for (int i = 0; i < g.st.nclients; i++)
			p[i + 1] =
			    (struct pollfd){.fd = g.st.clients[i].fd, .events = POLLIN | POLLRDHUP};
		uint64_t tick_ns = accepting ? 1000000000ULL : 100000000ULL;
		if (g.watchdog_ns && g.watchdog_ns < tick_ns)
			tick_ns = g.watchdog_ns;
		struct timespec tick = {.tv_sec = (time_t)(tick_ns / 1000000000ULL),
					.tv_nsec = (long)(tick_ns % 1000000000ULL)};
		int n = ppoll(p, (nfds_t)g.st.nclients + 1, &tick, &during_poll);
		if (n < 0 && errno != EINTR)
			break;
		uint64_t now = prim_now_ns();
		if (g.watchdog_ns && now - last_ping >= g.watchdog_ns) {
			notify("WATCHDOG=1");
			last_ping = now;
		}
		for (int i = g.st.nclients; n > 0 && i-- > 0;)
			if (p[i + 1].revents)
				serve_client(i, p[i + 1].revents, now);
		if (n > 0 && (p[0].revents & POLLIN))
			accept_clients();
		close_idle(now);
		state_count_scanners(&g.st);
		bool every5s = now - last_sweep > 5000000000ULL;
		if (every5s) {
			state_dir_check(&g.st);
			state_reap_orphans(&g.st);
			state_budget_watch(&g.st);
			last_sweep = now;
		}
		/* Pool pages the clients freed go back to the kernel (pool.c). */
		for (int i = 0; i < g.st.lim.domains; i++)
			if (g.st.doms[i].sp)
				dpool_sweep(&g.st, &g.st.doms[i], every5s);
	}
	free(p);
}

/* ---- start-up ---- */

/* systemd's notification socket (NOTIFY_SOCKET, Type=notify): READY=1 once
 * the daemon answers, then WATCHDOG=1 from the poll loop every half of
 * WatchdogSec= (WATCHDOG_USEC, for this process if WATCHDOG_PID says
 * one), so that a daemon stuck or stopped, whose clients' merges wait for
 * it, is killed and restarted (samepaged.service: Restart=on-failure). */
static void notify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET"), *usec = getenv("WATCHDOG_USEC"),
		   *wpid = getenv("WATCHDOG_PID");
	g.notify_fd = -1;
	if (!path || (*path != '/' && *path != '@') ||
	    strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	memcpy(a.sun_path, path, strlen(path));
	if (*path == '@')
		a.sun_path[0] = 0;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (connect(fd, (struct sockaddr *)&a,
		    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path)))) {
		logmsg("cannot reach systemd's notification socket %s: %s", path, strerror(errno));
		close(fd);
		return;
	}
	g.notify_fd = fd;
	char *end;
	unsigned long long us = usec ? strtoull(usec, &end, 10) : 0;
	if (us && !*end && (!wpid || !*wpid || atoi(wpid) == (int)getpid()))
		g.watchdog_ns = us * 1000 / 2;
}

static void notify(const char *msg)
{
	if (g.notify_fd >= 0)
		send(g.notify_fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT);
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
	 * nothing answers there.  Anything else at that path is not ours to
	 * remove. */
	struct stat st;
	if (lstat(g.socket_path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
		close(fd);
		return -EEXIST;
	}
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
		close(fd);
		return -EADDRINUSE;
	}
	unlink(g.socket_path);
	/* Bound and listening under a temporary name, then renamed: the path
	 * appears only when a connect there is accepted (a client that waits
	 * for the file, as a unit's ExecStartPost or a script does, never
	 * gets ECONNREFUSED from a socket not listening yet).  A path too
	 * long for the temporary name is bound in place. */
	struct sockaddr_un t = a;
	bool renamed = snprintf(t.sun_path, sizeof(t.sun_path), "%s.%d~", g.socket_path,
				(int)getpid()) < (int)sizeof(t.sun_path);
	if (renamed)
		unlink(t.sun_path);
	/* The socket is the user's alone (0600), unless --allow-user names
	 * others: then anyone may connect (0666), and SO_PEERCRED decides.
	 * Nobody executes a socket. */
	mode_t old = umask(g.st.nallow ? 0111 : 0177);
	int rc = bind(fd, (struct sockaddr *)(renamed ? &t : &a), sizeof(a));
	umask(old);
	if (rc < 0 || listen(fd, 64) < 0 || (renamed && rename(t.sun_path, g.socket_path) < 0)) {
		int err = -errno;
		if (renamed && rc == 0)
			unlink(t.sun_path);
		close(fd);
		return err;
	}
	g.own_socket = true;
	return fd;
}

/* The state directory holds every domain's pages: it must be a directory
 * (not a link to one) of this daemon's user, which nobody else may enter.
 * /dev/shm is world-writable: another user could have made it first. */
static bool state_dir_ok(const char *dir)
{
	struct stat st;
	if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		logmsg("state directory %s is not a directory%s (fix: move it away, or "
		       "--state-dir DIR)",
		       dir, S_ISLNK(st.st_mode) ? " but a symbolic link" : "");
		return false;
	}
	if (st.st_uid != geteuid()) {
		logmsg("state directory %s belongs to uid %d, not to this daemon's user %d: that "
		       "user could read and change every domain's pages (fix: move it away, or "
		       "--state-dir DIR of your own)",
		       dir, (int)st.st_uid, (int)geteuid());
		return false;
	}
	if (st.st_mode & 0077) {
		logmsg("state directory %s is mode %04o: other users could see or change the "
		       "domains (fix: chmod 700 %s)",
		       dir, (unsigned)(st.st_mode & 07777), dir);
		return false;
	}
	return true;
}

static void usage(FILE *f)
{
	const struct limits def = LIMITS_DEFAULT;
	fprintf(f,
		"usage: samepaged [--foreground] [--socket PATH] [--state-dir DIR]\n"
		"                 [--config FILE] [--pid-file FILE]\n"
		"                 [--allow-user USER[:DOMAIN,...]]... [LIMITS]\n"
		"       samepaged --help | --version\n"
		"Merges identical pages across the processes of each security domain\n"
		"(clients use samepage_connect(3)).  See samepaged(8).\n"
		"  --allow-user USER             processes of USER may connect too (beside\n"
		"                                this daemon's user and root); with :DOMAIN,...\n"
		"                                (names or shell patterns) they may join only\n"
		"                                those domains and change no knob\n"
		"Limits (one process cannot lock the others out):\n"
		"  --max-connections N               connections at once (%d); when full, the\n"
		"                                    one idle the longest without HELLO is closed\n"
		"  --max-connections-per-process N   connections of one process (%d)\n"
		"  --max-domains N                   domains open at once (%d)\n"
		"  --max-domains-per-process N       domains one process is in (%d)\n"
		"  --idle-timeout SECONDS            a connection without HELLO is closed after\n"
		"                                    this long without a request (%d)\n"
		"  --max-connections-per-user N      connections of one tenant's processes\n"
		"                                    (--max-connections / (tenants + 1))\n"
		"  --max-domains-per-user N          domains one tenant's processes are in\n"
		"                                    (--max-domains / (tenants + 1))\n",
		def.connections, def.connections_per_process, def.domains, def.domains_per_process,
		def.idle_timeout);
}

/* The numeric options: name, where, accepted range. */
static const struct numeric_option {
	const char *name;
	size_t offset; /* in struct limits */
	int min, max;
} numeric_options[] = {
    {"--max-connections", offsetof(struct limits, connections), 1, 65536},
    {"--max-connections-per-process", offsetof(struct limits, connections_per_process), 1, 65536},
    /* Each open domain maps its 64 GiB pool (address space, not memory). */
    {"--max-domains", offsetof(struct limits, domains), 1, 1024},
    {"--max-domains-per-process", offsetof(struct limits, domains_per_process), 1, 1024},
    {"--idle-timeout", offsetof(struct limits, idle_timeout), 1, 86400},
    {"--max-connections-per-user", offsetof(struct limits, connections_per_user), 1, 65536},
    {"--max-domains-per-user", offsetof(struct limits, domains_per_user), 1, 1024},
};

/* 1 if a is a numeric option (its value stored), 0 if not; exits 2 on a
 * bad value. */
static int numeric_option(const char *a, const char *v)
{
	for (size_t i = 0; i < sizeof(numeric_options) / sizeof(numeric_options[0]); i++) {
		const struct numeric_option *o = &numeric_options[i];
		if (strcmp(a, o->name))
			continue;
		char *end;
		errno = 0;
		long n = v ? strtol(v, &end, 10) : 0;
		if (!v || !*v || *end || errno || n < o->min || n > o->max) {
			fprintf(stderr, "samepaged: %s %s: expected a whole number from %d to %d\n",
				a, v ? v : "(missing)", o->min, o->max);
			exit(2);
		}
		*(int *)((char *)&g.lim + o->offset) = (int)n;
		return 1;
	}
	return 0;
}

/* Raises the soft descriptor limit to the hard one, and says so if the
 * limits may need more. */
static void check_descriptors(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl))
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	rlim_t need = (rlim_t)g.lim.connections + 2 * (rlim_t)g.lim.domains + 16;
	if (rl.rlim_cur < need)
		logmsg("warning: --max-connections %d and --max-domains %d need %llu descriptors, "
		       "the limit is %llu: connections past it wait (fix: LimitNOFILE=%llu in the "
		       "unit, or ulimit -n %llu)",
		       g.lim.connections, g.lim.domains, (unsigned long long)need,
		       (unsigned long long)rl.rlim_cur, (unsigned long long)need,
		       (unsigned long long)need);
}

/* A path option's value into buf: false, said, if it is empty (an unset
 * variable) or longer than buf holds (it would name another file). */
static bool path_option(const char *opt, const char *v, char *buf, size_t len)
{
	if (!*v || strlen(v) >= len) {
		fprintf(stderr,
			"samepaged: %s \"%.64s%s\": %s (fix: give a path of 1 to %zu bytes)\n", opt,
			v, strlen(v) > 64 ? "..." : "", *v ? "too long" : "empty", len - 1);
		return false;
	}
	memcpy(buf, v, strlen(v) + 1);
	return true;
}

/* A start that failed leaves nothing it made: the socket it bound, the pid
 * file it opened, the state directory if it made it (never one that was
 * there, and only while still empty).  The exit status. */
static int start_failed(bool made_dir)
{
	if (g.own_socket)
		unlink(g.socket_path);
	g.own_socket = false;
	if (g.pid_opened) /* a regular file it opened: no daemon's pid in it */
		unlink(g.pid_file);
	g.pid_opened = false;
	if (made_dir) {
		char lock[PATH_MAX + 8];
		snprintf(lock, sizeof(lock), "%s/lock", g.st.dir);
		unlink(lock);
		rmdir(g.st.dir);
	}
	return 1;
}

/* One daemon a state directory: a second one would take the first one's
 * domains, clear its guard marks and reap its clients as gone (their
 * pages punched).  DIR/lock, locked for the daemon's life (the lock goes
 * with the fork, and with the process), says whose it is.  false (logged)
 * if another daemon holds it. */
static bool state_dir_lock(void)
{
	char path[PATH_MAX + 8];
	snprintf(path, sizeof(path), "%s/lock", g.st.dir);
	g.lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (g.lock_fd < 0) {
		logmsg("cannot open %s: %s (fix: move it away, or --state-dir DIR)", path,
		       strerror(errno));
		return false;
	}
	if (flock(g.lock_fd, LOCK_EX | LOCK_NB) == 0)
		return true;
	int err = errno;
	char pid[16] = "";
	ssize_t n = pread(g.lock_fd, pid, sizeof(pid) - 1, 0);
	pid[n > 0 ? n : 0] = 0;
	pid[strcspn(pid, "\n")] = 0;
	if (err == EWOULDBLOCK)
		logmsg("another samepaged%s%s%s uses the state directory %s (fix: stop it, or "
		       "give this one --state-dir DIR of its own)",
		       pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "", g.st.dir);
	else
		logmsg("cannot lock %s: %s (fix: --state-dir on a file system with flock)", path,
		       strerror(err));
	close(g.lock_fd);
	g.lock_fd = -1;
	return false;
}

/* The daemon's pid in DIR/lock, for the message of a second one. */
static void state_dir_lock_owner(void)
{
	char pid[16];
	int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(g.lock_fd, 0) || pwrite(g.lock_fd, pid, (size_t)n, 0) != n)
		logmsg("cannot write the pid in %s/lock: %s", g.st.dir, strerror(errno));
}

int main(int argc, char **argv)
{
	g.lim = (struct limits)LIMITS_DEFAULT;
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
			if (!path_option(a, v, g.socket_path, sizeof(g.socket_path)))
				return 2;
			i++;
		} else if (v && !strcmp(a, "--state-dir")) {
			if (!path_option(a, v, g.st.dir, sizeof(g.st.dir)))
				return 2;
			i++;
		} else if (v && !strcmp(a, "--config")) {
			g.config = v, i++;
		} else if (v && !strcmp(a, "--pid-file")) {
			if (!path_option(a, v, g.pid_file, sizeof(g.pid_file)))
				return 2;
			i++;
		} else if (v && !strcmp(a, "--allow-user")) {
			allow_user(v), i++;
		} else if (numeric_option(a, v)) {
			i++;
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
	bool made_dir = mkdir(g.st.dir, 0700) == 0;
	if (!made_dir && errno != EEXIST) {
		logmsg("cannot make the state directory %s: %s (fix: --state-dir DIR)", g.st.dir,
		       strerror(errno));
		return 1;
	}
	if (!state_dir_ok(g.st.dir))
		return start_failed(made_dir);
	/* The kernel names the pool in /proc/PID/maps by its resolved path,
	 * which is how samepaged tells whether a process still maps it: a
	 * trailing slash or a symbolic link in --state-dir made every live
	 * process look gone, and their pages were punched (RELIABILITY.md 55). */
	char real[PATH_MAX];
	bool resolved = realpath(g.st.dir, real) != NULL;
	if (!resolved || strlen(real) >= sizeof(g.st.dir)) {
		logmsg("cannot resolve the state directory %s: %s (fix: --state-dir with a "
		       "shorter path)",
		       g.st.dir, resolved ? "its resolved path is too long" : strerror(errno));
		return start_failed(made_dir);
	}
	memcpy(g.st.dir, real, strlen(real) + 1); /* fits: checked above */
	if (!state_dir_lock())
		return start_failed(made_dir);
	struct statfs sfs;
	if (statfs(g.st.dir, &sfs) == 0 && sfs.f_type != TMPFS_MAGIC)
		logmsg("warning: %s is not tmpfs: the pool would be a disk file's page cache, "
		       "written back to disk, and userfaultfd cannot write-protect merged pages "
		       "there (their merge windows fall back to mprotect) (fix: --state-dir on "
		       "tmpfs, e.g. /dev/shm)",
		       g.st.dir);
	g.listen_fd = listen_socket();
	if (g.listen_fd < 0) {
		logmsg("cannot listen on %s: %s%s", g.socket_path, strerror(-g.listen_fd),
		       g.listen_fd == -EADDRINUSE ? " (another samepaged answers there)"
		       : g.listen_fd == -EEXIST
			   ? " and it is not a socket (fix: move it away, or --socket PATH)"
			   : "");
		return start_failed(made_dir);
	}
	/* accept_clients() takes the backlog until it is empty. */
	fcntl(g.listen_fd, F_SETFL, fcntl(g.listen_fd, F_GETFL) | O_NONBLOCK);
	/* The pid file is opened before the fork (and after the socket, so that
	 * a second daemon does not truncate the first one's), while the error
	 * can still be told and the exit status seen: a daemon without its pid
	 * file cannot be stopped by it.  The parent writes the child's pid
	 * before it exits, so the file is whole once the start command returns. */
	FILE *pidf = NULL;
	struct stat pst;
	if (g.pid_file[0] && (!stat(g.pid_file, &pst) && !S_ISREG(pst.st_mode))) {
		logmsg("the pid file %s is not a regular file (fix: give --pid-file a file's "
		       "path)",
		       g.pid_file);
		return start_failed(made_dir);
	}
	if (g.pid_file[0] && !(pidf = fopen(g.pid_file, "we"))) {
		logmsg("cannot write the pid file %s: %s (fix: create its directory, or give "
		       "--pid-file a writable path)",
		       g.pid_file, strerror(errno));
		return start_failed(made_dir);
	}
	g.pid_opened = pidf != NULL;
	if (!g.foreground) {
		pid_t p = fork();
		if (p < 0) {
			logmsg("cannot fork: %s", strerror(errno));
			return start_failed(made_dir);
		}
		if (p > 0) {
			if (pidf && (fprintf(pidf, "%d\n", (int)p) < 0 || fclose(pidf))) {
				logmsg("cannot write the pid file %s: %s", g.pid_file,
				       strerror(errno));
				kill(p, SIGKILL); /* not started: no daemon to stop by it */
				waitpid(p, NULL, 0);
				return start_failed(made_dir);
			}
			return 0;
		}
		setsid();
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			close(null);
		}
	}
	if (pidf && !g.foreground) {
		fclose(pidf); /* the parent wrote the pid: nothing is buffered here */
	} else if (pidf && (fprintf(pidf, "%d\n", (int)getpid()) < 0 || fclose(pidf))) {
		logmsg("cannot write the pid file %s: %s", g.pid_file, strerror(errno));
		return start_failed(made_dir);
	}
	state_dir_lock_owner();
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Sent if a ledger is opened in the instant state.c holds a lease on
	 * it (ledger_open_nowhere_else()): not the default, which ends samepaged. */
	signal(SIGIO, SIG_IGN);

	if (state_init(&g.st, &g.lim)) {
		logmsg("out of memory for the tables (fix: smaller --max-connections, "
		       "--max-domains)");
		return start_failed(made_dir);
	}
	check_descriptors();
	/* Take back the domains and the clients of a previous run. */
	state_take_back(&g.st);
	logmsg("listening on %s, state in %s", g.socket_path, g.st.dir);
	notify_init();
	notify("READY=1\nSTATUS=merging pages for its domains");

	serve();
	state_log_stop(&g.st);
	if (g.own_socket)
		unlink(g.socket_path);
	if (g.pid_file[0])
		unlink(g.pid_file);
	return 0;
}
