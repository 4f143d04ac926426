// SPDX-License-Identifier: MIT
/*
 * backend-samepaged.c - samepaged (user-space KSM across processes) as a
 * ksm_backend, for `ksmctl --user`.
 *
 * Everything goes through the daemon's control socket, one request per
 * SOCK_SEQPACKET message (samepage_control()): "GET" lists every knob and
 * counter the daemon knows as "name value" lines, "GET name" reads one,
 * "SET name value" writes one with the kernel's rules and errnos, and
 * "CLIENTS" gives one line per connected process.  The daemon speaks the
 * kernel's names and text formats, so the verbs need no translation; it
 * also checks the caller's user itself, so writable() has nothing to ask.
 */
#include "backend.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "samepage.h"

/* The largest answer samepaged sends (its PROTO_MAX), with room for the NUL. */
#define REPLY_MAX (65536 + 1)

struct samepaged_priv {
	char socket[PATH_MAX]; /* longer than sun_path: samepage_control says so */
};

static const struct samepaged_priv *priv(const struct ksm_backend *be)
{
	return be->priv;
}

/* One request; *reply is a heap buffer the caller frees: 0 or -errno. */
static int ask(const struct ksm_backend *be, const char *request, char **reply)
{
	int err;

	*reply = malloc(REPLY_MAX);
	if (!*reply)
		return -ENOMEM;
	err = samepage_control(priv(be)->socket, request, *reply, REPLY_MAX);
	if (err) {
		free(*reply);
		*reply = NULL;
	}
	return err;
}

/* A name or value goes into one space-separated line of the protocol. */
static bool one_word(const char *s)
{
	return *s && !strpbrk(s, " \t\r\n");
}

static int samepaged_available(const struct ksm_backend *be)
{
	char *reply;
	int err = ask(be, "GET", &reply);

	free(reply);
	return err;
}

static void samepaged_explain(const struct ksm_backend *be, int err, char *cause, size_t clen,
			      char *fix, size_t flen)
{
	const char *sock = priv(be)->socket;
	struct stat st;

	if (err == -ECONNREFUSED && stat(sock, &st) == 0 && !S_ISSOCK(st.st_mode)) {
		/* A path mistyped for the socket: "not running" would send
		 * the admin to start a daemon that may well be running. */
		snprintf(cause, clen, "%s is %s, not a socket: no samepaged listens there", sock,
			 S_ISDIR(st.st_mode)   ? "a directory"
			 : S_ISREG(st.st_mode) ? "a regular file"
					       : "a file of another kind");
		snprintf(
		    fix, flen,
		    "name samepaged's socket with --socket PATH or $SAMEPAGE_SOCKET (where "
		    "samepaged listens: its --socket, or `systemctl status samepaged.socket`)");
	} else if (err == -ENOENT || err == -ECONNREFUSED) {
		/* Its clients (if it had any) run on, paused: say what the
		 * gap costs, as an administrator restarting it asks. */
		snprintf(cause, clen,
			 "samepaged is not running at %s (%s); processes it served keep their "
			 "merged memory, but merge no more and free nothing until it runs again",
			 sock, strerror(-err));
		/* Without $XDG_RUNTIME_DIR (root by sudo, a service) the socket is
		 * the system unit's: a user unit listens elsewhere. */
		bool system = !strcmp(sock, "/run/samepaged.sock");
		snprintf(fix, flen,
			 "start it with `samepaged` or `systemctl %sstart samepaged.socket`%s "
			 "(with the state directory it had), or name its socket with --socket PATH",
			 system ? "" : "--user ", system ? " (as root)" : "");
	} else if (err == -ETIMEDOUT) {
		snprintf(cause, clen,
			 "samepaged at %s took the connection but answered nothing in 10 s: it is "
			 "stopped (SIGSTOP, a debugger, a frozen cgroup) or stuck",
			 sock);
		snprintf(fix, flen,
			 "look at it (`systemctl status samepaged`, its log, its state in `ps -o "
			 "stat`); `kill -CONT PID` if it was stopped");
	} else if ((err == -EACCES || err == -EPERM) && access(sock, W_OK) < 0 && errno == EACCES) {
		/* The kernel refused the connect: the socket's mode, which
		 * systemd sets (SocketMode=0600 in samepaged.socket). */
		snprintf(cause, clen,
			 "this user may not connect to %s (mode %04o): samepaged serves only its "
			 "own user and root there",
			 sock, stat(sock, &st) == 0 ? (unsigned)(st.st_mode & 07777) : 0);
		snprintf(
		    fix, flen,
		    "run ksmctl as samepaged's user; or, for samepaged to serve this user too, "
		    "give it --allow-user and its socket mode 0666 (`systemctl edit "
		    "samepaged.socket`: SocketMode=0666), see samepaged(8) SYSTEMD");
	} else if (err == -EACCES || err == -EPERM) {
		snprintf(cause, clen, "samepaged at %s refuses this user (%s)", sock,
			 strerror(-err));
		snprintf(fix, flen,
			 "run ksmctl as the daemon's user, or start your own samepaged and give "
			 "its socket with --socket PATH (or $SAMEPAGE_SOCKET)");
	} else {
		snprintf(cause, clen, "cannot talk to samepaged at %s: %s", sock, strerror(-err));
		snprintf(fix, flen, "check that %s is samepaged's socket (samepaged --socket PATH)",
			 sock);
	}
}

/* Asks request and calls fn for each line of the answer after "OK";
 * stops on fn's non-zero value and returns it. */
static int ask_lines(const struct ksm_backend *be, const char *request,
		     int (*fn)(char *line, void *arg), void *arg)
{
	char *reply, *line;
	int ret = ask(be, request, &reply);

	for (line = ret ? NULL : strchr(reply, '\n'); !ret && line;) {
		char *next = strchr(++line, '\n');
		if (next)
			*next = '\0';
		if (*line)
			ret = fn(line, arg);
		line = next;
	}
	free(reply);
	return ret;
}

struct list_arg {
	ksm_name_fn fn;
	void *arg;
};

static int list_one(char *line, void *arg)
{
	const struct list_arg *la = arg;

	line[strcspn(line, " ")] = '\0';
	return la->fn(line, la->arg);
}

static int samepaged_list(const struct ksm_backend *be, ksm_name_fn fn, void *arg)
{
	struct list_arg la = {fn, arg};

	return ask_lines(be, "GET", list_one, &la);
}

static int samepaged_read(const struct ksm_backend *be, const char *name, char *buf, size_t len)
{
	char request[160], *reply, *line, *value;
	size_t n = strlen(name);
	int err;

	if (!one_word(name) || n > 128)
		return -ENOENT;
	snprintf(request, sizeof(request), "GET %s", name);
	if ((err = ask(be, request, &reply)))
		return err;
	/* "OK\nname value" */
	line = strchr(reply, '\n');
	if (!line || strncmp(line + 1, name, n) || line[1 + n] != ' ') {
		free(reply);
		return -EPROTO;
	}
	value = line + 2 + n;
	value[strcspn(value, "\n")] = '\0';
	if (strlen(value) >= len)
		err = -ERANGE;
	else
		memcpy(buf, value, strlen(value) + 1);
	free(reply);
	return err;
}

static int samepaged_write(const struct ksm_backend *be, const char *name, const char *value)
{
	char request[320], *reply;
	int err;

	if (!one_word(name))
		return -ENOENT;
	/* The kernel's parsing takes one trailing newline; the protocol none. */
	int vlen = (int)strcspn(value, "\n");
	if (!vlen || (value[vlen] && value[vlen + 1]) || strpbrk(value, " \t\r") ||
	    (size_t)snprintf(request, sizeof(request), "SET %s %.*s", name, vlen, value) >=
		sizeof(request))
		return -EINVAL;
	err = ask(be, request, &reply);
	free(reply);
	return err;
}

static int samepaged_writable(const struct ksm_backend *be, const char *name)
{
	/* The daemon accepts its own user (and root) and refuses others when
	 * connecting: there is no file mode to check beforehand. */
	(void)be, (void)name;
	return 0;
}

/* The clients, one entry per process and domain (a process connected to
 * two domains has two ledgers: two entries); a process with two engines in
 * one domain is listed twice by the daemon and counted once. */
struct clients {
	struct ksm_process *p;
	int n;
	char (*seen)[80]; /* "pid domain" pairs already counted */
	int nseen;
	long more; /* the answer's "more=N": where the next request starts */
};

/* The number after " key=" in s, or -1. */
static long long field(const char *s, const char *key)
{
	char pat[48];
	const char *at;

	snprintf(pat, sizeof(pat), " %s=", key);
	at = strstr(s, pat);
	return at ? strtoll(at + strlen(pat), NULL, 10) : -1;
}

static void add_counter(long long *sum, long long v)
{
	if (v >= 0)
		*sum = *sum < 0 ? v : *sum + v;
}

/* "pid=P domain=D comm=C ksm_rmap_items=N ...": comm may hold spaces, so
 * it runs up to " ksm_rmap_items=". */
static int client_line(char *line, void *arg)
{
	struct clients *c = arg;
	const char *dom = strstr(line, " domain="), *comm = strstr(line, " comm=");
	const char *rest = strstr(line, " ksm_rmap_items=");
	char key[80];
	struct ksm_process *p;
	int pid, i;

	if (!strncmp(line, "more=", 5)) {
		c->more = atol(line + 5);
		return 0;
	}
	if (strncmp(line, "pid=", 4) || !dom || !comm || !rest || comm > rest)
		return 0; /* a line of a later protocol: skip it */
	pid = atoi(line + 4);
	snprintf(key, sizeof(key), "%d %.*s", pid, (int)strcspn(dom + 8, " "), dom + 8);
	for (i = 0; i < c->nseen; i++)
		if (strcmp(c->seen[i], key) == 0)
			return 0;
	char(*seen)[80] = realloc(c->seen, sizeof(*seen) * (size_t)(c->nseen + 1));
	if (!seen)
		return -ENOMEM;
	c->seen = seen;
	snprintf(c->seen[c->nseen++], sizeof(c->seen[0]), "%s", key);
	char domain[PROCFS_ESCAPED_SIZE(64)], raw[64];
	snprintf(raw, sizeof(raw), "%.*s", (int)strcspn(dom + 8, " "), dom + 8);
	procfs_escape(raw, domain, sizeof(domain));
	for (i = 0; i < c->n && (c->p[i].pid != pid || strcmp(c->p[i].domain, domain)); i++)
		;
	if (i == c->n) {
		p = realloc(c->p, sizeof(*p) * (size_t)(c->n + 1));
		if (!p)
			return -ENOMEM;
		c->p = p;
		p = &c->p[c->n++];
		ksm_process_init(p, pid);
		snprintf(raw, sizeof(raw), "%.*s", (int)(rest - comm - 6), comm + 6);
		procfs_escape(raw, p->comm, sizeof(p->comm));
		snprintf(p->domain, sizeof(p->domain), "%s", domain);
		p->mergeable = 0;
	}
	p = &c->p[i];
	add_counter(&p->rmap_items, field(rest, "ksm_rmap_items"));
	add_counter(&p->merging_pages, field(rest, "ksm_merging_pages"));
	add_counter(&p->zero_pages, field(rest, "ksm_zero_pages"));
#define SAMEPAGE_KEPT(n, promises, why)                                                            \
	add_counter(&p->kept[KEPT_##n], field(rest, "pages_kept_" #n));
#include "../lib/kept.def"
	if (strstr(rest, " ksm_process_profit=")) {
		long long profit = field(rest, "ksm_process_profit");
		p->profit = p->profit == LLONG_MIN ? profit : p->profit + profit;
	}
	/* One process's mapping budget and full scans: the largest of its
	 * engines'. */
	static const struct {
		const char *key;
		size_t off;
	} budget[] = {
	    {"map_count", offsetof(struct ksm_process, map_count)},
	    {"max_map_count", offsetof(struct ksm_process, max_map_count)},
	    {"max_map_count_needed", offsetof(struct ksm_process, map_count_needed)},
	    {"merges_skipped_map_budget", offsetof(struct ksm_process, skipped_map_budget)},
	    {"full_scans", offsetof(struct ksm_process, full_scans)},
	};
	for (size_t k = 0; k < sizeof(budget) / sizeof(budget[0]); k++) {
		long long v = field(rest, budget[k].key),
			  *at = (long long *)((char *)p + budget[k].off);
		if (v > *at)
			*at = v;
	}
	/* ksm_stat's ksm_mergeable: some memory was marked mergeable. */
	p->mergeable |= field(rest, "pages_tracked") > 0;
	return 0;
}

static int by_pid(const void *a, const void *b)
{
	const struct ksm_process *x = a, *y = b;

	return x->pid != y->pid ? x->pid - y->pid : strcmp(x->domain, y->domain);
}

static int samepaged_for_each_process(const struct ksm_backend *be, ksm_process_fn fn, void *arg)
{
	struct clients c = {.n = 0, .more = -1};
	int ret = ask_lines(be, "CLIENTS", client_line, &c);
	/* An answer is one packet, so with many clients samepaged says where
	 * to go on (older ones did not: they listed what fitted).  Clients
	 * that come or go meanwhile may shift the rest: one counted twice is
	 * counted once; one missed is what a later look sees. */
	for (long from = 0; !ret && c.more > from;) {
		char req[32];
		from = c.more;
		c.more = -1;
		snprintf(req, sizeof(req), "CLIENTS %ld", from);
		ret = ask_lines(be, req, client_line, &c);
	}

	free(c.seen);
	if (c.n)
		qsort(c.p, (size_t)c.n, sizeof(*c.p), by_pid);
	for (int i = 0; !ret && i < c.n; i++) {
		/* The daemon and ksmctl normally share the pid namespace. */
		ksm_process_read_cgroup("/proc", &c.p[i]);
		ksm_process_read_vm("/proc", &c.p[i]);
		ret = fn(&c.p[i], arg);
	}
	free(c.p);
	return ret;
}

const struct ksm_backend *backend_samepaged(const char *socket_path)
{
	static struct samepaged_priv sp;
	static struct ksm_backend be = {
	    .name = "samepaged",
	    .who = "samepaged",
	    .available = samepaged_available,
	    .list = samepaged_list,
	    .read = samepaged_read,
	    .write = samepaged_write,
	    .writable = samepaged_writable,
	    .for_each_process = samepaged_for_each_process,
	    .explain = samepaged_explain,
	    .priv = &sp,
	};

	if (socket_path)
		snprintf(sp.socket, sizeof(sp.socket), "%s", socket_path);
	else if (samepage_socket_path(sp.socket, sizeof(sp.socket)))
		snprintf(sp.socket, sizeof(sp.socket), "/run/samepaged.sock");
	be.where = sp.socket;
	return &be;
}
