/* SPDX-License-Identifier: MIT */
/*
 * state.h - what samepaged holds: the domains it has open, the processes
 * connected to it, and the ledgers that count what each process maps.
 *
 * The daemon has no socket in here (samepaged.c has them) and no request
 * parsing (protocol.c): this is the state both act on, kept in files of
 * the state directory so that a restarted daemon takes it back.
 *
 * Files of the state directory:
 *   DOMAIN.index        the domain's stable index, allocator, knobs, counters
 *   DOMAIN.pool         the domain's pool of KSM pages (sparse): written by the
 *                       daemon only (pool.c), read-only to clients
 *   DOMAIN.guard        one byte per pool page: being rewritten or punched
 *   DOMAIN.PID.ledger   how many of process PID's pages map each KSM page
 *   DOMAIN.PID.uUID.forked  a gone process's ledger, its pins alone, kept
 *                       while its forked children (of uid UID) map it
 * A domain name may contain dots ("vm.A"); a pid never does.
 */
#ifndef SAMEPAGED_STATE_H
#define SAMEPAGED_STATE_H

#include "../lib/internal.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* What one process, or all of them, may hold at once (samepaged(8)
 * lists the options and why the defaults are what they are). */
struct limits {
	int connections;	     /* --max-connections */
	int connections_per_process; /* --max-connections-per-process */
	int domains;		     /* --max-domains */
	int domains_per_process;     /* --max-domains-per-process */
	int idle_timeout;	     /* --idle-timeout, seconds without HELLO */
	int connections_per_user;    /* --max-connections-per-user: a tenant's; 0 its share */
	int domains_per_user;	     /* --max-domains-per-user: a tenant's; 0 its share */
};
#define LIMITS_DEFAULT                                                                             \
	{                                                                                          \
		1024, 16, 64, 4, 10, 0, 0                                                          \
	}

/* A domain the daemon has open: an engine over its two files that never
 * scans (the daemon reads no process's memory), used to reap ledgers and
 * to read the domain's counters.  A free slot has sp == NULL. */
struct dom {
	char name[72];
	struct samepage *sp;
	/* pool.c: the guard file (read-write here), the read-only descriptors
	 * of the pool and the guard that clients get, the pool pages known
	 * to be holes, and when the pool was last swept. */
	_Atomic uint8_t *guard;
	int pool_ro, guard_ro;
	uint64_t *punched;
	uint64_t swept;
	bool sweep;
};

/* A connection.  d is set by HELLO: from then on the process's ledger
 * exists, and its references are dropped when its last connection to d
 * closes; such a connection is never closed by the daemon. */
struct client {
	int fd; /* samepaged.c's; the protocol never touches it */
	pid_t pid;
	uid_t uid;
	struct dom *d;
	char comm[32];
	uint64_t active_ns;  /* accepted, or its last request (CLOCK_MONOTONIC) */
	int64_t budget_said; /* the max_map_count_needed last logged for it */
};

/* --allow-user USER[:DOMAINS]: a user, beside the daemon's and root, whose
 * processes may connect; with DOMAINS (comma-separated names or shell
 * patterns), a tenant: its processes join only those domains, see only
 * their clients, and change no knob (samepaged(8), SECURITY). */
/* A log line that a flood would repeat: at most one a second. */
struct throttle {
	uint64_t last_ns;
	unsigned suppressed;
};

#define ALLOW_MAX 32
struct allowed {
	uid_t uid;
	char domains[256];   /* "" for any domain */
	struct throttle log; /* its processes' refusals: one user's flood hides no other's */
};

/* The process last found keeping a gone client's ledger (ledger_holder),
 * by the ledger's inode: looked at first at the next pass, so that a
 * ledger whose fork area cannot name its children has every process's
 * maps read only when that one let go of it (RELIABILITY.md 98).  start:
 * its /proc/PID/stat start time (a reused pid has another); pass: the
 * last orphan sweep that asked (older ones are forgotten). */
struct holder_seen {
	dev_t dev;
	ino_t ino;
	pid_t pid;
	unsigned long long start;
	uint64_t pass;
};

/* A ledger a process may hold without a connection (state.c's
 * ledgers_held_by() counts them in a tenant's shares): one kept for a gone
 * process's forked children (its owner from its name), or a process's
 * whose connection closed.  Listed at each orphan pass and whenever the
 * daemon keeps one, so that a connection is counted, and a domain's last
 * process leaving it closed (state_domain_close_if_unused), without a
 * walk of the state directory; each is looked up when counted (gone
 * since: not). */
struct held_ledger {
	char dom[72];
	pid_t pid;
	bool forked;
	long long owner; /* forked: the uid its name records, or -1 */
};

/* Invariants: every clients[i].d is an open slot of doms[]; an open
 * domain has a connected client, a ledger file, or a pool page in use
 * (otherwise it is closed and its files removed). */
struct state {
	char dir[256];		  /* the state directory */
	bool config_given;	  /* knobs came from --config: keep them */
	bool knobs_taken;	  /* knobs already taken back from the state directory */
	unsigned long long *knob; /* the daemon-wide knobs, by knob_index() */
	struct limits lim;
	struct dom *doms;	/* lim.domains slots */
	struct client *clients; /* [0, nclients) of lim.connections */
	int nclients;
	uint64_t reclaimed_closed; /* pool_pages_reclaimed of the domains closed */
	uint64_t refused_closed;   /* pool_pages_refused of the domains closed */
	struct throttle log_limit; /* refusals and closings for a limit */
	struct allowed allow[ALLOW_MAX];
	int nallow;
	struct holder_seen *holders; /* [0, nholders) of holders_cap */
	int nholders, holders_cap;
	uint64_t pass;		  /* orphan sweeps so far */
	struct held_ledger *held; /* [0, nheld) of held_cap */
	int nheld, held_cap;
	bool held_lost; /* the list may miss one (not made yet, no memory): walk the directory */
};

/* "samepaged: " + the message, on standard error. */
void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern bool logmsg_quiet; /* the fuzz target's: no log lines */

int state_init(struct state *s, const struct limits *lim);
void logmsg_throttled(struct throttle *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Domains */
int state_domain_get(struct state *s, const char *name, bool create, struct dom **out);
void state_domain_close_if_unused(struct state *s, struct dom *d);
int state_domains_of(const struct state *s, pid_t pid, const char *except);
void state_take_back(struct state *s);
void state_log_stop(const struct state *s);
void state_dir_gone(const struct state *s);
void state_dir_check(const struct state *s);
int state_knob_store(struct state *s, int idx, unsigned long long v);

/* Ledgers */
bool state_ledger_name_parse(const char *fname, char dom[72], pid_t *pid, bool *forked);
/* The same, and the owner a kept ledger's name records (-1: none). */
bool state_ledger_name_owner(const char *fname, char dom[72], pid_t *pid, bool *forked,
			     long long *owner);
void state_ledger_path(const struct state *s, char *buf, size_t len, const char *domain, pid_t pid);
bool state_ledger_header(const struct state *s, const char *domain, pid_t pid, struct ledger *lg);
int state_ledger_open(struct state *s, struct dom *d, const struct client *c);
/* The name of a ledger's process, into buf: its /proc/PID/comm now while it
 * runs (the ledger's is the one it had when the ledger was made, which an
 * exec or a rename since made stale), else the ledger's.  Returns buf. */
const char *state_client_comm(const struct ledger *lg, char *buf, size_t len);
/* owner: the uid of process pid, if known (-1: not). */
int state_reap(struct state *s, struct dom *d, pid_t pid, long long owner);
void state_reap_orphans(struct state *s);
void state_budget_watch(struct state *s);
void state_count_scanners(struct state *s);

/* Users: whether processes of uid may connect at all; whether they may
 * join domain (and see its clients); whether they may change knobs.  The
 * daemon's user and root may do everything. */
bool state_user_may_connect(const struct state *s, uid_t uid);
bool state_user_may_join(const struct state *s, uid_t uid, const char *domain);
bool state_user_is_tenant(const struct state *s, uid_t uid);
/* What a tenant may hold of a limit (connections or domains): per_user
 * if given, else the limit shared out among the tenants and everyone
 * else (the limit / (tenants + 1)), so that no tenant locks another out. */
int state_user_share(const struct state *s, int limit, int per_user);
int state_connections_of_user(const struct state *s, uid_t uid);
/* The open domains uid has a process in, except `except` (NULL: none). */
int state_domains_of_user(const struct state *s, uid_t uid, const char *except);
/* Where refusals of uid's processes are throttled: its own, for a user
 * --allow-user names, else the daemon's. */
struct throttle *state_user_throttle(struct state *s, uid_t uid);
/* The domains a tenant may join, as --allow-user gave them, into buf. */
const char *state_user_domains(const struct state *s, uid_t uid, char *buf, size_t len);

/* Clients */
/* A new connection: 0, -EMFILE (the process holds
 * --max-connections-per-process, or a tenant its share) or -ENFILE (the
 * table is full), with why (naming the option) in why[len]. */
int state_client_add(struct state *s, int fd, pid_t pid, uid_t uid, char *why, size_t len);
int state_connections_of(const struct state *s, pid_t pid);
int state_client_idlest(const struct state *s);
void state_client_remove(struct state *s, int i);

/* Counters: a knob, or a counter summed over the domains and the
 * connected processes; false if the daemon does not know it. */
bool state_value(const struct state *s, int idx, long long *v);
bool state_client_counts(const struct state *s, const struct client *k, struct ledger *lg,
			 struct ksm_counts *c);

#endif
