// SPDX-License-Identifier: MIT
/*
 * protocol.c - parsing and answering one request of samepaged's control
 * protocol (see protocol.h).
 *
 * Each request is a line of the table below: its verb, whether it takes
 * arguments, and the function that answers it.  A new request is one more
 * line and one more function.
 */
#include "protocol.h"
#include "pool.h"

#include "ksmconf.h" /* common/: the value rules ksmctl and config files share */

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REQUEST_MAX 1024 /* the longest request read, its NUL included */

/* Appends to the reply's text; false once it is full. */
static bool reply_add(struct proto_reply *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static bool reply_add(struct proto_reply *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(r->text + r->len, sizeof(r->text) - r->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(r->text) - r->len) {
		r->len = sizeof(r->text) - 1;
		return false;
	}
	r->len += (size_t)n;
	return true;
}

void proto_error(struct proto_reply *r, int err, const char *what)
{
	r->len = 0;
	r->nfds = 0;
	r->close_fd = -1;
	reply_add(r, "ERR %d %.500s: %s", -err, what, samepage_strerror(err));
}

void proto_reply_done(struct proto_reply *r)
{
	if (r->close_fd >= 0)
		close(r->close_fd);
	r->close_fd = -1;
}

/* Refuses a tenant a domain --allow-user did not give it: true if refused. */
static bool refuse_domain(struct state *s, const struct client *c, const char *verb,
			  const char *domain, struct proto_reply *r)
{
	char what[300], mine[120];
	if (state_user_may_join(s, c->uid, domain))
		return false;
	snprintf(what, sizeof(what),
		 "uid %d may join only domains %.100s (--allow-user), not %.64s", (int)c->uid,
		 state_user_domains(s, c->uid, mine, sizeof(mine)), domain);
	logmsg_throttled(state_user_throttle(s, c->uid), "refused %s %s of process %d (%s): %s",
			 verb, domain, (int)c->pid, c->comm, what);
	proto_error(r, -EACCES, what);
	return true;
}

/* HELLO <domain> <layout>: the domain's index and pool, and the process's
 * ledger, if the process's library shares them in this samepaged's layout
 * (SHARED_LAYOUT in types.h): one of another samepage version must not map
 * them. */
static void answer_hello(struct state *s, struct client *c, const char *args, struct proto_reply *r)
{
	char what[200], domain[72];
	const char *sp = strchr(args, ' ');
	char *end;
	unsigned long layout = sp ? strtoul(sp + 1, &end, 10) : 0;
	snprintf(domain, sizeof(domain), "%.*s", sp ? (int)(sp - args) : 71, args);
	if (sp && (sp[1] < '0' || sp[1] > '9' || *end || (size_t)(sp - args) >= 72))
		return proto_error(r, -EINVAL,
				   "HELLO needs a domain and a layout, one space apart");
	if (layout != SHARED_LAYOUT) {
		char theirs[40] = "none (an older version)";
		if (sp)
			snprintf(theirs, sizeof(theirs), "%lu", layout);
		snprintf(what, sizeof(what),
			 "the process's library shares files in layout %s, this samepaged (%s) in "
			 "layout %u",
			 theirs, SAMEPAGE_VERSION_STRING, (unsigned)SHARED_LAYOUT);
		logmsg_throttled(
		    &s->log_limit,
		    "refused HELLO %s of process %d (%s): %s (fix: restart the process "
		    "or samepaged, so that both are of one samepage version)",
		    domain, (int)c->pid, c->comm, what);
		return proto_error(r, -EPROTONOSUPPORT, what);
	}
	if (!domain_name_ok(domain))
		return proto_error(r, -EINVAL, "domain name (1 to 64 of A-Za-z0-9._-)");
	if (refuse_domain(s, c, "HELLO", domain, r))
		return;
	if (c->d)
		return proto_error(r, -EISCONN, "already connected to a domain");
	int in = state_domains_of(s, c->pid, domain);
	if (in >= s->lim.domains_per_process) {
		snprintf(what, sizeof(what),
			 "process %d is in %d domains, the most --max-domains-per-process allows",
			 (int)c->pid, in);
		logmsg_throttled(&s->log_limit, "refused HELLO %s of process %d (%s): %s", domain,
				 (int)c->pid, c->comm, what);
		return proto_error(r, -EMFILE, what);
	}
	/* A tenant's share of the domain table, so that it cannot fill it. */
	int share = state_user_share(s, s->lim.domains, s->lim.domains_per_user);
	if (state_user_is_tenant(s, c->uid) &&
	    (in = state_domains_of_user(s, c->uid, domain)) >= share) {
		snprintf(what, sizeof(what),
			 "uid %d is in %d domains, the most a tenant may (--max-domains-per-user)",
			 (int)c->uid, in);
		logmsg_throttled(state_user_throttle(s, c->uid),
				 "refused HELLO %s of process %d (%s): %s", domain, (int)c->pid,
				 c->comm, what);
		return proto_error(r, -EMFILE, what);
	}
	struct dom *d;
	int err = state_domain_get(s, domain, true, &d);
	if (err == -ENFILE) {
		snprintf(what, sizeof(what), "%d domains open, the most --max-domains allows",
			 s->lim.domains);
		logmsg_throttled(&s->log_limit, "refused HELLO %s of process %d (%s): %s", domain,
				 (int)c->pid, c->comm, what);
		return proto_error(r, err, what);
	}
	if (err)
		return proto_error(r, err, "domain files");
	int lfd = state_ledger_open(s, d, c);
	if (lfd < 0) {
		state_domain_close_if_unused(s, d);
		return proto_error(r, lfd, "ledger file");
	}
	c->d = d;
	reply_add(r, "OK %016llx", (unsigned long long)d->sp->dom->instance);
	r->fds[0] = d->sp->stable.fd;
	r->fds[1] = d->pool_ro; /* read-only: the daemon writes the pool (pool.c) */
	r->fds[2] = r->close_fd = lfd;
	r->fds[3] = d->guard_ro;
	r->nfds = 4;
}

/* MAY <domain>: whether HELLO would let this process join domain, as far
 * as who it is goes (ksmctl --user run asks before it starts a program). */
static void answer_may(struct state *s, struct client *c, const char *domain, struct proto_reply *r)
{
	if (!domain_name_ok(domain))
		return proto_error(r, -EINVAL, "domain name (1 to 64 of A-Za-z0-9._-)");
	if (!refuse_domain(s, c, "MAY", domain, r))
		reply_add(r, "OK");
}

/* PLACE <n>: the daemon writes the n new KSM pages the process staged in
 * its ledger into the pool (pool.c).  "OK <placed> <refused>": refused for
 * want of room in samepaged's memory cgroup. */
static void answer_place(struct state *s, struct client *c, const char *args, struct proto_reply *r)
{
	char *end;
	unsigned long n = strtoul(args, &end, 10);
	unsigned placed, refused = 0;
	if (!c->d)
		return proto_error(r, -ENOTCONN, "PLACE before HELLO");
	if (*end || end == args || n > PLACE_MAX)
		return proto_error(r, -EINVAL, "PLACE needs a count of at most 512 pages");
	int err = dpool_place(s, c, (unsigned)n, &placed, &refused);
	if (err)
		return proto_error(r, err, "PLACE");
	reply_add(r, "OK %u %u", placed, refused);
}

/* GET [name]: every knob and counter the daemon knows, or one. */
static void answer_get(struct state *s, struct client *c, const char *name, struct proto_reply *r)
{
	reply_add(r, "OK");
	for (int i = 0; i < samepage_knob_count(); i++) {
		long long v;
		char val[64];
		if (name && *name && strcmp(samepage_knob_at(i)->name, name))
			continue;
		if (!state_value(s, i, &v))
			continue;
		knob_format(i, v, val, sizeof(val));
		reply_add(r, "\n%s %s", samepage_knob_at(i)->name, val);
	}
	if (name && *name && r->len == 2)
		return proto_error(r, -ENOENT, name);
}

/* SET <name> <value>: a daemon-wide knob, with the kernel's rules and the
 * value rules of `ksmctl set` and a config file (ksmconf_check_value, in
 * common/: one parser), so that a client that is not ksmctl can set no
 * value they refuse, and is told why as they tell it. */
static void answer_set(struct state *s, struct client *c, const char *args, struct proto_reply *r)
{
	char name[128], what[600];
	unsigned long long v;
	struct ksmconf_error e;
	size_t n = strcspn(args, " ");
	const char *value = args + n + (args[n] == ' ');
	if (!n || !args[n] || !*value || strchr(value, ' ') || n >= sizeof(name))
		return proto_error(r, -EINVAL, "SET needs a name and a value, one space apart");
	/* The knobs are every domain's: as the kernel's are root's, these
	 * are the daemon's user's and root's, not a tenant's. */
	if (state_user_is_tenant(s, c->uid)) {
		snprintf(what, sizeof(what),
			 "uid %d may not change samepaged's knobs (a tenant: --allow-user with "
			 "domains); samepaged's user or root may",
			 (int)c->uid);
		logmsg_throttled(state_user_throttle(s, c->uid),
				 "refused SET %.64s of process %d (%s): %s", args, (int)c->pid,
				 c->comm, what);
		return proto_error(r, -EACCES, what);
	}
	snprintf(name, sizeof(name), "%.*s", (int)n, args);
	int err = ksmconf_check_value(name, value, NULL, &v, "use a name GET lists", &e);
	if (err) {
		snprintf(what, sizeof(what), "%s; fix: %s", e.cause, e.fix);
		return proto_error(r, err, what);
	}
	err = state_knob_store(s, knob_index(name), v);
	if (err)
		return proto_error(r, err, name);
	logmsg("%s = %s (by process %d)", name, value, (int)c->pid);
	reply_add(r, "OK");
}

/* CLIENTS [FROM]: one line per connected process, its ksm_stat counters,
 * as counter_value() says them (what GET says is their sum), from the
 * FROM'th client on (0).  An answer is one packet: when the next line may
 * not fit, it ends with "more=N", where the next request starts. */
static void answer_clients(struct state *s, struct client *c, const char *args,
			   struct proto_reply *r)
{
	static const int fields[] = {
	    KNOB_ksm_rmap_items,
	    KNOB_ksm_merging_pages,
	    KNOB_ksm_zero_pages,
	    KNOB_ksm_process_profit,
	    KNOB_pages_tracked,
	    KNOB_full_scans,
	    KNOB_map_count,
	    KNOB_max_map_count,
	    KNOB_max_map_count_needed,
	    KNOB_merges_skipped_map_budget,
#define SAMEPAGE_KEPT(n, promises, why) KNOB_pages_kept_##n,
#include "kept.def"
	};
	char *end;
	unsigned long from = args ? strtoul(args, &end, 10) : 0;
	if (args && (!isdigit((unsigned char)*args) || *end || from > INT_MAX))
		return proto_error(r, -EINVAL, "CLIENTS takes one number: where to start");
	reply_add(r, "OK");
	for (int i = (int)from; i < s->nclients; i++) {
		if (r->len >= sizeof(r->text) - 1024) {
			reply_add(r, "\nmore=%d", i);
			break;
		}
		const struct client *k = &s->clients[i];
		struct ledger lg;
		struct ksm_counts counts;
		char comm[sizeof(lg.comm)];
		/* A tenant sees the processes of its own domains only. */
		if (!k->d || !state_user_may_join(s, c->uid, k->d->name) ||
		    !state_client_counts(s, k, &lg, &counts))
			continue;
		reply_add(r, "\npid=%d domain=%s comm=%s", (int)k->pid, k->d->name,
			  state_client_comm(&lg, comm, sizeof(comm)));
		for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
			long long v = 0;
			counter_value(&counts, fields[f], &v);
			reply_add(r, " %s=%lld", samepage_knob_at(fields[f])->name, v);
		}
	}
}

enum args { ARGS_NONE, ARGS_OPTIONAL, ARGS_REQUIRED };

static const struct request {
	const char *verb;
	enum args args;
	void (*answer)(struct state *s, struct client *c, const char *args, struct proto_reply *r);
} requests[] = {
    {"HELLO", ARGS_REQUIRED, answer_hello}, {"GET", ARGS_OPTIONAL, answer_get},
    {"SET", ARGS_REQUIRED, answer_set},	    {"CLIENTS", ARGS_OPTIONAL, answer_clients},
    {"PLACE", ARGS_REQUIRED, answer_place}, {"MAY", ARGS_REQUIRED, answer_may},
};

void proto_answer(struct state *s, struct client *c, const char *request, size_t len,
		  struct proto_reply *r)
{
	char msg[REQUEST_MAX];
	r->len = 0;
	r->text[0] = 0;
	r->nfds = 0;
	r->close_fd = -1;
	if (len > sizeof(msg) - 1) {
		char what[80];
		snprintf(what, sizeof(what), "a request of %zu bytes: the most is %zu", len,
			 sizeof(msg) - 1);
		return proto_error(r, -EMSGSIZE, what);
	}
	/* One line of text: a line end at the end is allowed, nothing else
	 * that is not printable. */
	if (len && request[len - 1] == '\n')
		len -= 1 + (len > 1 && request[len - 2] == '\r');
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)request[i] < ' ' || request[i] == 0x7f)
			return proto_error(r, -EINVAL,
					   "a request is one line of text (a control character or "
					   "NUL byte in it)");
	memcpy(msg, request, len);
	msg[len] = 0;
	for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
		const struct request *q = &requests[i];
		size_t n = strlen(q->verb);
		if (strncmp(msg, q->verb, n) || (msg[n] && msg[n] != ' '))
			continue;
		const char *args = msg[n] ? msg + n + 1 : NULL;
		if ((q->args == ARGS_NONE && args) || (q->args == ARGS_REQUIRED && !args))
			continue;
		return q->answer(s, c, args, r);
	}
	proto_error(r, -EINVAL, "unknown request (HELLO, GET, SET, CLIENTS, MAY)");
}
