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
 * Usage: samepaged [--foreground] [--socket PATH] [--state-dir DIR]
 *                  [--config FILE] [--pid-file FILE]
 * The state directory (default /dev/shm/samepaged-UID) must be on tmpfs.
 * Socket activation (LISTEN_FDS) and readiness (NOTIFY_SOCKET) as systemd
 * does them.
 */
#include "../lib/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_CLIENTS 1024
#define MAX_DOMAINS 64

struct dom {
	char name[72];
	struct samepage *sp; /* an engine over the domain's files, never started */
};

struct client {
	int fd;
	pid_t pid;
	struct dom *d; /* after HELLO */
	char comm[32];
};

static struct {
	char socket_path[108], state_dir[256], pid_file[256];
	const char *config;
	bool foreground, own_socket, knobs_taken;
	int listen_fd;
	unsigned long long knob[64]; /* daemon-wide */
	struct dom doms[MAX_DOMAINS];
	int ndoms;
	struct client clients[MAX_CLIENTS];
	int nclients;
	volatile sig_atomic_t stop;
} g;

static void logmsg(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "samepaged: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

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

/* ---- domains ---- */

static int open_state(const char *name, const char *suffix, size_t size, bool *created)
{
	char path[512];
	snprintf(path, sizeof(path), "%.255s/%.72s%s", g.state_dir, name, suffix);
	int fd = open(path, O_RDWR | O_CLOEXEC | O_CREAT, 0600);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return -errno;
	*created = st.st_size == 0;
	if (*created && ftruncate(fd, (off_t)size) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* The domain's engine (index and pool mapped), made or taken back from
 * the state directory. */
static struct dom *domain_get(const char *name, bool create)
{
	for (int i = 0; i < g.ndoms; i++)
		if (!strcmp(g.doms[i].name, name))
			return &g.doms[i];
	if (!create || g.ndoms == MAX_DOMAINS)
		return NULL;
	bool new_index, new_pool;
	int ifd = open_state(name, ".index", DOM_SIZE, &new_index);
	int pfd = open_state(name, ".pool", (size_t)DOM_NODES << PAGE_SHIFT, &new_pool);
	if (ifd < 0 || pfd < 0) {
		logmsg("domain %s: cannot open its files in %s: %s", name, g.state_dir,
		       strerror(ifd < 0 ? -ifd : -pfd));
		return NULL;
	}
	if (new_index) {
		/* A fresh domain file: initialise it like a local engine's. */
		int tmp_i, tmp_p;
		if (domain_create(&tmp_i, &tmp_p, name) == 0) {
			char *src = prim_mmap(NULL, PAGE_SIZE, PROT_READ, MAP_SHARED, tmp_i, 0);
			char *dst =
			    prim_mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ifd, 0);
			if (src != MAP_FAILED && dst != MAP_FAILED)
				memcpy(dst, src, sizeof(struct domain));
			if (src != MAP_FAILED)
				prim_munmap(src, PAGE_SIZE);
			if (dst != MAP_FAILED) {
				memcpy(((struct domain *)dst)->knob, g.knob, sizeof(g.knob));
				prim_munmap(dst, PAGE_SIZE);
			}
			close(tmp_i);
			close(tmp_p);
		}
	}
	struct dom *d = &g.doms[g.ndoms];
	if (engine_open(&d->sp, ifd, pfd)) {
		logmsg("domain %s: cannot map its files", name);
		return NULL;
	}
	if (d->sp->dom->magic != DOM_MAGIC) {
		logmsg("domain %s: %s/%s.index is not a samepage domain file; move it away", name,
		       g.state_dir, name);
		engine_free(d->sp);
		return NULL;
	}
	if (!new_index && !g.config && !g.knobs_taken) {
		/* Restarted without a config: the knobs the domain ran with. */
		memcpy(g.knob, d->sp->dom->knob, sizeof(g.knob));
		g.knobs_taken = true;
	}
	memcpy(d->sp->dom->knob, g.knob, sizeof(g.knob)); /* one set for the daemon */
	snprintf(d->name, sizeof(d->name), "%s", name);
	g.ndoms++;
	logmsg("domain %s: %s (%u KSM pages)", name, new_index ? "created" : "taken back",
	       d->sp->dom->live);
	return d;
}

static void ledger_path(char *buf, size_t len, const char *domain, pid_t pid)
{
	snprintf(buf, len, "%.255s/%.72s.%d.ledger", g.state_dir, domain, (int)pid);
}

/* Drops every reference a gone client's ledger counts, then removes it. */
static void reap(struct dom *d, pid_t pid)
{
	char path[512];
	ledger_path(path, sizeof(path), d->name, pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	const char *m = prim_mmap(NULL, LEDGER_SIZE, PROT_READ, MAP_SHARED | MAP_NORESERVE, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return;
	const uint32_t *refs = (const uint32_t *)(m + LEDGER_OFF_REFS);
	struct samepage *sp = d->sp;
	uint64_t dropped = 0, before = sp->dom->live;
	domain_lock(sp);
	for (uint32_t i = 0; i < sp->dom->nr; i++)
		if (refs[i]) {
			dropped += refs[i];
			stable_drop(sp, i, refs[i], false);
		}
	uint64_t after = sp->dom->live;
	domain_unlock(sp);
	prim_munmap((void *)m, LEDGER_SIZE);
	unlink(path);
	logmsg("domain %s: process %d gone: %llu references dropped, %llu pool pages freed",
	       d->name, (int)pid, (unsigned long long)dropped,
	       (unsigned long long)(before - after));
}

static bool pid_alive(pid_t pid, unsigned long long starttime)
{
	unsigned long long now = proc_starttime(pid);
	return now && (!starttime || now == starttime);
}

/* "DOMAIN.PID.ledger" -> DOMAIN and PID.  A domain name may hold dots
 * ("vm.A"), a pid never does: the pid is what follows the last dot before
 * ".ledger".  False for any other name. */
static bool ledger_name_parse(const char *fname, char dom[72], pid_t *pid)
{
	size_t n = strlen(fname), sl = strlen(".ledger");
	if (n <= sl || strcmp(fname + n - sl, ".ledger"))
		return false;
	const char *end = fname + n - sl, *dot = end;
	while (dot > fname && dot[-1] != '.')
		dot--;
	if (dot == fname || dot == end || (size_t)(dot - 1 - fname) >= 72)
		return false;
	long long v = 0;
	for (const char *p = dot; p < end; p++) {
		if (*p < '0' || *p > '9' || (v = v * 10 + (*p - '0')) > INT32_MAX)
			return false;
	}
	memcpy(dom, fname, (size_t)(dot - 1 - fname));
	dom[dot - 1 - fname] = 0;
	*pid = (pid_t)v;
	return v > 0 && domain_name_ok(dom);
}

/* At start-up, and every few seconds: ledgers of processes that died while
 * nobody watched (the daemon was down, or they never reconnected). */
static void reap_orphans(void)
{
	DIR *dir = opendir(g.state_dir);
	struct dirent *e;
	while (dir && (e = readdir(dir))) {
		char dom[72];
		pid_t pid;
		if (!ledger_name_parse(e->d_name, dom, &pid))
			continue;
		bool connected = false;
		for (int c = 0; c < g.nclients; c++)
			connected |= g.clients[c].pid == pid && g.clients[c].d &&
				     !strcmp(g.clients[c].d->name, dom);
		if (connected)
			continue;
		char path[512];
		ledger_path(path, sizeof(path), dom, pid);
		unsigned long long st = 0;
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			struct ledger lg;
			if (pread(fd, &lg, sizeof(lg), 0) == (ssize_t)sizeof(lg))
				st = lg.starttime;
			close(fd);
		}
		if (pid_alive(pid, st))
			continue; /* alive: it will reconnect, or be reaped when it dies */
		struct dom *d = domain_get(dom, true);
		if (d)
			reap(d, pid);
	}
	if (dir)
		closedir(dir);
}

/* ---- the protocol ---- */

static void reply(int fd, const char *text, const int *fds, int nfds)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	if (nfds) {
		memset(cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	sendmsg(fd, &msg, MSG_NOSIGNAL);
}

static void reply_err(int fd, int err, const char *what)
{
	char buf[1024];
	snprintf(buf, sizeof(buf), "ERR %d %.200s: %s", -err, what, samepage_strerror(err));
	reply(fd, buf, NULL, 0);
}

static void do_hello(struct client *c, const char *domain)
{
	char path[512];
	if (!domain_name_ok(domain))
		return reply_err(c->fd, -EINVAL, "domain name (1 to 64 of A-Za-z0-9._-)");
	if (c->d)
		return reply_err(c->fd, -EISCONN, "already connected to a domain");
	struct dom *d = domain_get(domain, true);
	if (!d)
		return reply_err(c->fd, -EIO, "domain files");
	ledger_path(path, sizeof(path), domain, c->pid);
	int lfd = open(path, O_RDWR | O_CLOEXEC | O_CREAT, 0600);
	struct stat st;
	if (lfd < 0 || fstat(lfd, &st) < 0)
		return reply_err(c->fd, -errno, "ledger file");
	if (st.st_size == 0) {
		struct ledger lg = {
		    .magic = LEDGER_MAGIC, .pid = c->pid, .starttime = proc_starttime(c->pid)};
		snprintf(lg.comm, sizeof(lg.comm), "%s", c->comm);
		if (ftruncate(lfd, (off_t)LEDGER_SIZE) < 0 ||
		    pwrite(lfd, &lg, sizeof(lg), 0) != (ssize_t)sizeof(lg)) {
			close(lfd);
			return reply_err(c->fd, -errno, "ledger file");
		}
	}
	c->d = d;
	char ok[64];
	snprintf(ok, sizeof(ok), "OK %016llx", (unsigned long long)d->sp->dom->instance);
	int fds[3] = {d->sp->stable.fd, d->sp->pool.fd, lfd};
	reply(c->fd, ok, fds, 3);
	close(lfd);
}

/* A counter of the whole daemon: the domains' sums, and the clients'. */
static long long ledger_sum(size_t field_offset)
{
	long long sum = 0;
	char path[512];
	for (int i = 0; i < g.nclients; i++) {
		struct client *c = &g.clients[i];
		if (!c->d)
			continue;
		ledger_path(path, sizeof(path), c->d->name, c->pid);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		int64_t v = 0;
		if (fd >= 0) {
			if (pread(fd, &v, sizeof(v), (off_t)field_offset) != (ssize_t)sizeof(v))
				v = 0;
			close(fd);
		}
		sum += v;
	}
	return sum;
}

#define LEDGER_SUM(field) ledger_sum(offsetof(struct ledger, field))
#define DOM_SUM(field)                                                                             \
	({                                                                                         \
		long long s_ = 0;                                                                  \
		for (int i_ = 0; i_ < g.ndoms; i_++)                                               \
			s_ += (long long)g.doms[i_].sp->dom->field;                                \
		s_;                                                                                \
	})

static bool value_of(int idx, long long *v)
{
	switch (idx) {
	case KNOB_pages_shared: *v = DOM_SUM(pages_shared); return true;
	case KNOB_pages_sharing: *v = DOM_SUM(pages_sharing); return true;
	case KNOB_stable_node_chains: *v = DOM_SUM(chains); return true;
	case KNOB_stable_node_dups: *v = DOM_SUM(dups); return true;
	case KNOB_pool_pages: *v = DOM_SUM(live); return true;
	case KNOB_pool_pages_reclaimed: *v = DOM_SUM(reclaimed); return true;
	case KNOB_pages_unshared: *v = LEDGER_SUM(unshared); return true;
	case KNOB_ksm_zero_pages: *v = LEDGER_SUM(zero_pages); return true;
	case KNOB_ksm_rmap_items: *v = LEDGER_SUM(rmap_items); return true;
	case KNOB_ksm_merging_pages: *v = LEDGER_SUM(merging_pages); return true;
	case KNOB_pages_scanned: *v = LEDGER_SUM(pages_scanned); return true;
	case KNOB_pages_skipped: *v = LEDGER_SUM(pages_skipped); return true;
	case KNOB_pages_tracked: *v = LEDGER_SUM(tracked_pages); return true;
	case KNOB_metadata_bytes: *v = LEDGER_SUM(metadata_bytes); return true;
	case KNOB_pages_volatile:
		*v = LEDGER_SUM(rmap_items) - LEDGER_SUM(merging_pages) - LEDGER_SUM(unshared);
		if (*v < 0)
			*v = 0;
		return true;
	case KNOB_general_profit:
		*v = (DOM_SUM(pages_sharing) + LEDGER_SUM(zero_pages)) * (long long)PAGE_SIZE -
		     LEDGER_SUM(metadata_bytes);
		return true;
	case KNOB_full_scans: {
		/* The full scans every connected process has completed. */
		long long min = -1;
		char path[512];
		for (int i = 0; i < g.nclients; i++) {
			struct client *c = &g.clients[i];
			int64_t fs = 0;
			if (!c->d)
				continue;
			ledger_path(path, sizeof(path), c->d->name, c->pid);
			int fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd >= 0) {
				if (pread(fd, &fs, sizeof(fs),
					  offsetof(struct ledger, full_scans)) !=
				    (ssize_t)sizeof(fs))
					fs = 0;
				close(fd);
			}
			if (min < 0 || fs < min)
				min = fs;
		}
		*v = min < 0 ? 0 : min;
		return true;
	}
	default:
		if (samepage_knob_at(idx)->kind == SAMEPAGE_KNOB_TUNABLE) {
			*v = (long long)g.knob[idx];
			return true;
		}
		return false; /* per-process only, or not known to the daemon */
	}
}

static void format_value(char *buf, size_t len, int idx, long long v)
{
	const struct samepage_knob *k = samepage_knob_at(idx);
	if (idx == KNOB_advisor_mode)
		snprintf(buf, len, "%s", v ? "none [scan-time]" : "[none] scan-time");
	else if (k->format == SAMEPAGE_FMT_SIGNED)
		snprintf(buf, len, "%lld", v);
	else
		snprintf(buf, len, "%llu", (unsigned long long)v);
}

static void do_get(struct client *c, const char *name)
{
	static char out[PROTO_MAX];
	size_t n = (size_t)snprintf(out, sizeof(out), "OK");
	for (int i = 0; i < samepage_knob_count(); i++) {
		long long v;
		char val[64];
		if (name && *name && strcmp(samepage_knob_at(i)->name, name))
			continue;
		if (!value_of(i, &v))
			continue;
		format_value(val, sizeof(val), i, v);
		n += (size_t)snprintf(out + n, sizeof(out) - n, "\n%s %s",
				      samepage_knob_at(i)->name, val);
	}
	if (name && *name && n == 2)
		return reply_err(c->fd, -ENOENT, name);
	reply(c->fd, out, NULL, 0);
}

static void do_set(struct client *c, const char *args)
{
	char name[128], value[256];
	unsigned long long v;
	bool unmerge;
	if (sscanf(args, "%127s %255s", name, value) != 2)
		return reply_err(c->fd, -EINVAL, "SET needs a name and a value");
	int err = samepage_knob_parse(name, value, &v), idx = knob_index(name);
	if (!err) {
		bool busy = DOM_SUM(live) > 0;
		err = knob_store(g.knob, idx, v, busy, &unmerge);
		if (!err) {
			for (int i = 0; i < g.ndoms; i++) {
				struct domain *dm = g.doms[i].sp->dom;
				memcpy(dm->knob, g.knob, sizeof(g.knob));
				if (unmerge) /* every client unmerges its own pages */
					atomic_fetch_add(&dm->unmerge_epoch, 1);
			}
			logmsg("%s = %s (by process %d)", name, value, (int)c->pid);
		}
	}
	if (err)
		return reply_err(c->fd, err, name);
	reply(c->fd, "OK", NULL, 0);
}

static void do_clients(struct client *c)
{
	static char out[PROTO_MAX];
	char path[512];
	size_t n = (size_t)snprintf(out, sizeof(out), "OK");
	for (int i = 0; i < g.nclients && n < sizeof(out) - 512; i++) {
		struct client *k = &g.clients[i];
		struct ledger lg;
		if (!k->d)
			continue;
		ledger_path(path, sizeof(path), k->d->name, k->pid);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t got = pread(fd, &lg, sizeof(lg), 0);
		close(fd);
		if (got != (ssize_t)sizeof(lg))
			continue;
		n += (size_t)snprintf(out + n, sizeof(out) - n,
				      "\npid=%d domain=%s comm=%s ksm_rmap_items=%lld "
				      "ksm_merging_pages=%lld ksm_zero_pages=%lld "
				      "ksm_process_profit=%lld pages_tracked=%lld full_scans=%lld",
				      (int)k->pid, k->d->name, lg.comm, (long long)lg.rmap_items,
				      (long long)lg.merging_pages, (long long)lg.zero_pages,
				      (long long)lg.process_profit, (long long)lg.tracked_pages,
				      (long long)lg.full_scans);
	}
	reply(c->fd, out, NULL, 0);
}

static void handle(struct client *c, char *msg)
{
	msg[strcspn(msg, "\r\n")] = 0;
	if (!strncmp(msg, "HELLO ", 6))
		do_hello(c, msg + 6);
	else if (!strcmp(msg, "GET") || !strncmp(msg, "GET ", 4))
		do_get(c, msg[3] ? msg + 4 : NULL);
	else if (!strncmp(msg, "SET ", 4))
		do_set(c, msg + 4);
	else if (!strcmp(msg, "CLIENTS"))
		do_clients(c);
	else
		reply_err(c->fd, -EINVAL, "unknown request (HELLO, GET, SET, CLIENTS)");
}

static void drop_client(int i)
{
	struct client *c = &g.clients[i];
	struct dom *d = c->d;
	pid_t pid = c->pid;
	close(c->fd);
	g.clients[i] = g.clients[--g.nclients];
	if (!d)
		return;
	/* The process may hold another connection to the same domain (two
	 * engines): its ledger is shared, reap after the last one. */
	for (int k = 0; k < g.nclients; k++)
		if (g.clients[k].pid == pid && g.clients[k].d == d)
			return;
	reap(d, pid);
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
		reply_err(fd, -EACCES, "this samepaged belongs to another user");
		close(fd);
		logmsg("refused process %d of uid %d", (int)cr.pid, (int)cr.uid);
		return;
	}
	if (g.nclients == MAX_CLIENTS) {
		reply_err(fd, -EAGAIN, "too many clients");
		close(fd);
		return;
	}
	struct client *c = &g.clients[g.nclients++];
	*c = (struct client){.fd = fd, .pid = cr.pid};
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)cr.pid);
	FILE *f = fopen(path, "re");
	if (f) {
		if (fgets(c->comm, sizeof(c->comm), f))
			c->comm[strcspn(c->comm, "\n")] = 0;
		fclose(f);
	}
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
			snprintf(g.state_dir, sizeof(g.state_dir), "%s", v), i++;
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
	if (!g.state_dir[0]) /* memory, not disk: /dev/shm is tmpfs on every Linux */
		snprintf(g.state_dir, sizeof(g.state_dir), "/dev/shm/samepaged-%d", (int)geteuid());
	if (g.config)
		load_config(g.config);
	if (mkdir(g.state_dir, 0700) < 0 && errno != EEXIST) {
		logmsg("cannot make the state directory %s: %s (fix: --state-dir DIR)", g.state_dir,
		       strerror(errno));
		return 1;
	}
	struct statfs sfs;
	if (statfs(g.state_dir, &sfs) == 0 && sfs.f_type != TMPFS_MAGIC)
		logmsg("warning: %s is not tmpfs: the pool would be a disk file's page cache, "
		       "written back to disk (fix: --state-dir on tmpfs, e.g. /dev/shm)",
		       g.state_dir);
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
	DIR *dir = opendir(g.state_dir);
	struct dirent *e;
	while (dir && (e = readdir(dir))) {
		size_t n = strlen(e->d_name);
		if (n > 6 && !strcmp(e->d_name + n - 6, ".index")) {
			char name[72];
			snprintf(name, sizeof(name), "%.*s", (int)(n - 6), e->d_name);
			if (domain_name_ok(name))
				domain_get(name, true);
		}
	}
	if (dir)
		closedir(dir);
	reap_orphans();
	logmsg("listening on %s, state in %s", g.socket_path, g.state_dir);
	notify_ready();

	uint64_t last_sweep = prim_now_ns();
	while (!g.stop) {
		struct pollfd p[MAX_CLIENTS + 1];
		p[0] = (struct pollfd){.fd = g.listen_fd, .events = POLLIN};
		for (int i = 0; i < g.nclients; i++)
			p[i + 1] = (struct pollfd){.fd = g.clients[i].fd, .events = POLLIN};
		int n = poll(p, (nfds_t)g.nclients + 1, 1000);
		if (n < 0 && errno != EINTR)
			break;
		for (int i = g.nclients; n > 0 && i-- > 0;) {
			if (!p[i + 1].revents)
				continue;
			char msg[1024];
			ssize_t got = recv(g.clients[i].fd, msg, sizeof(msg) - 1, 0);
			if (got <= 0) {
				drop_client(i);
				continue;
			}
			msg[got] = 0;
			handle(&g.clients[i], msg);
		}
		if (n > 0 && (p[0].revents & POLLIN))
			accept_client();
		if (prim_now_ns() - last_sweep > 5000000000ULL) {
			reap_orphans();
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
