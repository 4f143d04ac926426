// SPDX-License-Identifier: MIT
/*
 * state.c - samepaged's domains, ledgers and reaping (see state.h).
 *
 * A process that says HELLO gets its domain's two files and a ledger of
 * its own, in which it counts, per KSM page, how many of its pages map it.
 * When the process is gone (its last connection to the domain closed, or
 * its ledger names a pid that no longer runs), the daemon drops every
 * reference the ledger counts ("reaps" it): no pool page stays that nobody
 * maps, even after a SIGKILL.
 */
#include "pool.h"
#include "state.h"
#include "procfs.h" /* common/: the one reader of /proc */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

bool logmsg_quiet;

void logmsg(const char *fmt, ...)
{
	va_list ap;
	if (logmsg_quiet)
		return;
	va_start(ap, fmt);
	fprintf(stderr, "samepaged: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

void logmsg_throttled(struct throttle *t, const char *fmt, ...)
{
	uint64_t now = prim_now_ns();
	if (t->last_ns && now - t->last_ns < 1000000000ULL) {
		t->suppressed++;
		return;
	}
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (t->suppressed)
		logmsg("%s (and %u more like it in the last second)", line, t->suppressed);
	else
		logmsg("%s", line);
	t->last_ns = now;
	t->suppressed = 0;
}

/* The tables, at the sizes the limits give: 0 or -ENOMEM. */
int state_init(struct state *s, const struct limits *lim)
{
	s->lim = *lim;
	s->doms = calloc((size_t)lim->domains, sizeof(*s->doms));
	s->clients = calloc((size_t)lim->connections, sizeof(*s->clients));
	s->held_lost = true; /* until the first orphan pass lists them */
	return s->doms && s->clients ? 0 : -ENOMEM;
}

/* ---- file names ---- */

static void state_path(const struct state *s, char *buf, size_t len, const char *name,
		       const char *suffix)
{
	snprintf(buf, len, "%.255s/%.72s%s", s->dir, name, suffix);
}

void state_ledger_path(const struct state *s, char *buf, size_t len, const char *domain, pid_t pid)
{
	snprintf(buf, len, "%.255s/%.72s.%d.ledger", s->dir, domain, (int)pid);
}

/* A gone client's ledger kept for its forked children: its pins only.
 * DOMAIN.PID.uUID.forked: UID is the uid of the process the ledger was
 * (or of the children that keep it), which the daemon's share counts
 * charge it to (a tenant cannot rename a file of the state directory,
 * while it can write anything into a ledger it maps).  DOMAIN.PID.forked,
 * of a samepaged before this, has no owner: renamed once one is known. */
static void state_forked_path(const struct state *s, char *buf, size_t len, const char *domain,
			      pid_t pid, long long owner)
{
	if (owner >= 0)
		snprintf(buf, len, "%.255s/%.72s.%d.u%lld.forked", s->dir, domain, (int)pid, owner);
	else
		snprintf(buf, len, "%.255s/%.72s.%d.forked", s->dir, domain, (int)pid);
}

/* "DOMAIN.PID.ledger" (or "DOMAIN.PID[.uUID].forked", a gone client's
 * pins kept for its forked children: *forked true, *owner UID or -1) ->
 * DOMAIN and PID.  A domain name may hold dots ("vm.A"), a pid never does:
 * the pid is what follows the last dot before the suffix (and the owner).
 * A pid is digits, an owner "u" and digits: the two never read as each
 * other.  False for any other name. */
bool state_ledger_name_owner(const char *fname, char dom[72], pid_t *pid, bool *forked,
			     long long *owner)
{
	size_t n = strlen(fname), sl = strlen(".ledger");
	*owner = -1;
	*forked = n > sl && !strcmp(fname + n - sl, ".forked");
	if (n <= sl || (strcmp(fname + n - sl, ".ledger") && !*forked))
		return false;
	const char *end = fname + n - sl, *dot = end;
	while (dot > fname && dot[-1] != '.')
		dot--;
	if (*forked && dot < end && *dot == 'u') {
		long long v = 0;
		if (dot + 1 == end || dot - 1 <= fname)
			return false;
		for (const char *p = dot + 1; p < end; p++)
			if (*p < '0' || *p > '9' || (v = v * 10 + (*p - '0')) > UINT32_MAX)
				return false;
		*owner = v;
		end = dot - 1;
		dot = end;
		while (dot > fname && dot[-1] != '.')
			dot--;
	}
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

bool state_ledger_name_parse(const char *fname, char dom[72], pid_t *pid, bool *forked)
{
	long long owner;
	return state_ledger_name_owner(fname, dom, pid, forked, &owner);
}

/* ---- ledgers held without a connection (struct held_ledger) ---- */

static void held_note(struct state *s, const char *dom, pid_t pid, bool forked, long long owner)
{
	for (int i = 0; i < s->nheld; i++)
		if (s->held[i].pid == pid && s->held[i].forked == forked &&
		    s->held[i].owner == owner && !strcmp(s->held[i].dom, dom))
			return;
	if (s->nheld == s->held_cap) {
		int cap = s->held_cap ? 2 * s->held_cap : 16;
		struct held_ledger *more = realloc(s->held, (size_t)cap * sizeof(*more));
		if (!more) { /* not counted until the next pass lists it */
			s->held_lost = true;
			return;
		}
		s->held = more, s->held_cap = cap;
	}
	struct held_ledger *h = &s->held[s->nheld++];
	*h = (struct held_ledger){.pid = pid, .forked = forked, .owner = owner};
	snprintf(h->dom, sizeof(h->dom), "%s", dom);
}

/* Whether the ledger h names is still in the state directory. */
static bool held_exists(const struct state *s, const struct held_ledger *h)
{
	char path[512];
	if (h->forked)
		state_forked_path(s, path, sizeof(path), h->dom, h->pid, h->owner);
	else
		state_ledger_path(s, path, sizeof(path), h->dom, h->pid);
	return access(path, F_OK) == 0;
}

/* Whether process pid is connected to domain dom. */
static bool connected_to(const struct state *s, pid_t pid, const char *dom)
{
	for (int c = 0; c < s->nclients; c++)
		if (s->clients[c].pid == pid && s->clients[c].d &&
		    !strcmp(s->clients[c].d->name, dom))
			return true;
	return false;
}

/* The list made anew from the state directory: every kept ledger, and
 * every ledger of a process not connected to its domain.  Every ledger
 * made or renamed since is noted as it is (a connection closed, a reap
 * that must wait, a ledger kept for forked children), so that the list,
 * with the connected processes, names every ledger of the directory
 * (some gone since) unless held_lost. */
static void held_list(struct state *s)
{
	DIR *dir = opendir(s->dir);
	s->nheld = 0;
	s->held_lost = !dir; /* unread: as a walk of it would, find nothing */
	for (struct dirent *e; dir && (e = readdir(dir));) {
		char dom[72];
		pid_t pid;
		bool forked;
		long long owner;
		if (state_ledger_name_owner(e->d_name, dom, &pid, &forked, &owner) &&
		    (forked || !connected_to(s, pid, dom)))
			held_note(s, dom, pid, forked, owner);
	}
	if (dir)
		closedir(dir);
}

/* ---- domains ---- */

/* The state directory was removed while the daemon ran (by hand, a
 * tmpfiles clean-up, logind's RemoveIPC= for the user's /dev/shm files):
 * the open domains go on with their open files, but no domain can be made
 * or taken back, no ledger opened or reaped.  Said once, until it is back
 * (state_dir_check). */
static bool dir_gone_said;

void state_dir_gone(const struct state *s)
{
	if (dir_gone_said)
		return;
	dir_gone_said = true;
	logmsg("the state directory %s was removed while samepaged ran: no process can join a "
	       "domain and no gone process's pages are freed (fix: restart samepaged, which "
	       "makes it again; the processes connected now keep their merged memory, but "
	       "merge no more)",
	       s->dir);
}

/* Every 5 s: is the state directory still there? */
void state_dir_check(const struct state *s)
{
	if (access(s->dir, F_OK) < 0 && errno == ENOENT)
		state_dir_gone(s);
	else
		dir_gone_said = false;
}

/* A domain file (index or pool), made empty-sized if new: its descriptor,
 * or -EIO after a log line naming it and the fix.  A file of this name
 * that is not one (a link, a directory, a FIFO, another size) is never
 * opened for writing, followed or changed. */
static int open_state(const struct state *s, const char *name, const char *suffix, size_t size,
		      bool *created)
{
	char path[512];
	struct stat st;
	state_path(s, path, sizeof(path), name, suffix);
	int fd = open(path, O_RDWR | O_CLOEXEC | O_CREAT | O_NOFOLLOW | O_NONBLOCK, 0600);
	if (fd < 0 && errno == ENOENT && access(s->dir, F_OK) < 0) {
		state_dir_gone(s);
		return -EIO;
	}
	if (fd < 0) {
		logmsg("%s: %s (fix: move it away)", path,
		       errno == ELOOP ? "a symbolic link, not a domain file" : strerror(errno));
		return -EIO;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (st.st_size != 0 && st.st_size != (off_t)size)) {
		logmsg("%s: not a domain file of this samepaged (%s of %lld bytes; a domain's is "
		       "%zu) (fix: move it away)",
		       path, S_ISREG(st.st_mode) ? "a file" : "not a regular file",
		       (long long)st.st_size, size);
		close(fd);
		return -EIO;
	}
	*created = st.st_size == 0;
	if (*created && ftruncate(fd, (off_t)size) < 0) {
		logmsg("%s: %s", path, strerror(errno));
		close(fd);
		return -EIO;
	}
	return fd;
}

static bool domain_has_ledgers(const struct state *s, const char *name);

/* A domain of another samepage version (its index has the magic, and
 * another SHARED_LAYOUT: an upgrade) cannot be used by this samepaged, nor
 * this samepaged's clients by it.  Its files are unlinked so that the
 * domain is made anew: processes of that version keep what they merged (a
 * mapping holds its file), merge no more, and their ledgers are removed as
 * they are reaped (ledger_unfit). */
static void drop_other_version(const struct state *s, const char *name)
{
	char path[512];
	struct domain head;
	struct stat st;
	state_path(s, path, sizeof(path), name, ".index");
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return;
	bool other = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		     pread(fd, &head, sizeof(head), 0) == (ssize_t)sizeof(head) &&
		     head.magic == DOM_MAGIC && head.layout != SHARED_LAYOUT;
	close(fd);
	if (!other || unlink(path) < 0)
		return;
	state_path(s, path, sizeof(path), name, ".pool");
	unlink(path);
	logmsg("domain %s: its files were made by another samepage version (shared layout %u; "
	       "this samepaged's is %u): removed, and the domain made anew (processes of that "
	       "version keep what they merged, and merge again once restarted)",
	       name, head.layout, (unsigned)SHARED_LAYOUT);
}

/* Empties a domain file of size bytes (sparse again), unless it was just
 * made. */
static bool remake(int fd, size_t size, bool made)
{
	return made || (ftruncate(fd, 0) == 0 && ftruncate(fd, (off_t)size) == 0);
}

/* The domain's engine (index and pool mapped), made or taken back from
 * the state directory: 0, -ENOENT (not open, and not to be made),
 * -ENFILE (no free slot: --max-domains), or -EIO (its files; logged). */
/* Whether --allow-user named a tenant (a user with domains). */
static bool has_tenants(const struct state *s)
{
	for (int i = 0; i < s->nallow; i++)
		if (s->allow[i].domains[0])
			return true;
	return false;
}

int state_domain_get(struct state *s, const char *name, bool create, struct dom **out)
{
	struct dom *d = NULL;
	for (int i = 0; i < s->lim.domains; i++) {
		if (s->doms[i].sp && !strcmp(s->doms[i].name, name)) {
			*out = &s->doms[i];
			return 0;
		}
		if (!s->doms[i].sp && !d)
			d = &s->doms[i];
	}
	if (!create)
		return -ENOENT;
	if (!d)
		return -ENFILE;
	drop_other_version(s, name);
	bool new_index = false, new_pool = false;
	int ifd = open_state(s, name, ".index", DOM_SIZE, &new_index);
	int pfd = ifd < 0
		      ? -EIO
		      : open_state(s, name, ".pool", (size_t)DOM_NODES << PAGE_SHIFT, &new_pool);
	/* What a samepaged killed in the middle of making or closing a domain
	 * leaves, with no ledger (nothing can refer to it): one file without
	 * the other (closed midway), or an index never initialised.  Both
	 * are made anew. */
	uint64_t magic = DOM_MAGIC;
	if (ifd >= 0 && pfd >= 0 && !new_index && pread(ifd, &magic, sizeof(magic), 0) < 0)
		magic = DOM_MAGIC;
	if (ifd >= 0 && pfd >= 0 && (new_index != new_pool || magic == 0) &&
	    !domain_has_ledgers(s, name) && remake(ifd, DOM_SIZE, new_index) &&
	    remake(pfd, (size_t)DOM_NODES << PAGE_SHIFT, new_pool)) {
		if (magic == 0)
			logmsg("domain %s: %s/%s.index was never initialised (samepaged stopped "
			       "while it made the domain): made anew",
			       name, s->dir, name);
		else
			logmsg("domain %s: %s/%s%s was left without %s by a domain closed midway "
			       "(no process holds it): made anew",
			       name, s->dir, name, new_index ? ".pool" : ".index",
			       new_index ? ".index" : ".pool");
		new_index = new_pool = true;
	}
	if (ifd >= 0 && pfd >= 0 && new_index != new_pool) {
		/* One file without the other: its pages, or the index saying
		 * which are used, are lost.  The one just made goes again. */
		char path[512];
		state_path(s, path, sizeof(path), name, new_index ? ".index" : ".pool");
		unlink(path);
		logmsg("domain %s: %s/%s%s exists without %s (fix: move it away)", name, s->dir,
		       name, new_index ? ".pool" : ".index", new_index ? ".index" : ".pool");
		close(ifd);
		close(pfd);
		return -EIO;
	}
	if (ifd < 0 || pfd < 0) {
		if (ifd >= 0)
			close(ifd);
		if (new_index) { /* made just now: no trace of a domain that failed */
			char path[512];
			state_path(s, path, sizeof(path), name, ".index");
			unlink(path);
		}
		return -EIO;
	}
	bool written = !new_index;
	if (new_index) {
		/* A fresh domain file: initialise it like a local engine's. */
		int tmp_i, tmp_p;
		if (domain_create(&tmp_i, &tmp_p, name, DOM_NODES) == 0) {
			char *src = mmap(NULL, PAGE_SIZE, PROT_READ, MAP_SHARED, tmp_i, 0);
			char *dst =
			    mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ifd, 0);
			if (dst != MAP_FAILED && prim_populate(dst, PAGE_SIZE)) {
				munmap(dst, PAGE_SIZE); /* no room: a write would be a SIGBUS */
				dst = MAP_FAILED;
			}
			written = src != MAP_FAILED && dst != MAP_FAILED;
			if (written)
				memcpy(dst, src, sizeof(struct domain));
			if (src != MAP_FAILED)
				munmap(src, PAGE_SIZE);
			if (dst != MAP_FAILED) {
				memcpy(((struct domain *)dst)->knob, s->knob,
				       sizeof(((struct domain *)dst)->knob));
				munmap(dst, PAGE_SIZE);
			}
			close(tmp_i);
			close(tmp_p);
		}
	}
	if (!written) {
		/* Not even the index's first page: an engine would read a hole,
		 * a SIGBUS on a full tmpfs.  The files go (nothing refers to
		 * them yet). */
		logmsg("domain %s: cannot write its index in %s (fix: make room there, or give "
		       "samepaged a larger tmpfs with --state-dir)",
		       name, s->dir);
		close(ifd);
		close(pfd);
		char path[512];
		state_path(s, path, sizeof(path), name, ".index");
		unlink(path);
		state_path(s, path, sizeof(path), name, ".pool");
		unlink(path);
		return -EIO;
	}
	if (engine_open(&d->sp, ifd, pfd, DOM_NODES)) {
		logmsg("domain %s: cannot map its files", name);
		return -EIO;
	}
	if (pool_capacity(d->sp) < DOM_NODES) {
		logmsg("domain %s: cannot map all of %s/%s.pool (%zu GiB of address space; fix: "
		       "lift samepaged's address-space limit, ulimit -v or LimitAS=)",
		       name, s->dir, name, ((size_t)DOM_NODES << PAGE_SHIFT) >> 30);
		engine_free(d->sp);
		d->sp = NULL;
		return -EIO;
	}
	if (d->sp->dom->magic != DOM_MAGIC) {
		logmsg("domain %s: %s/%s.index is not a samepage domain file; move it away", name,
		       s->dir, name);
		engine_free(d->sp);
		d->sp = NULL;
		return -EIO;
	}
	/* The index's bucket heads and hints, which every client writes
	 * anywhere, allocated now: on a full tmpfs a first write there would
	 * be a SIGBUS in a client (ledger_ready() in lib/pool.c). */
	if (prim_populate((char *)d->sp->dom + DOM_OFF_HEADS, DOM_SIZE - DOM_OFF_HEADS)) {
		logmsg("domain %s: no room for its index on the filesystem of %s (fix: make room "
		       "there, or give samepaged a larger tmpfs with --state-dir)",
		       name, s->dir);
		engine_free(d->sp);
		d->sp = NULL;
		return -EIO;
	}
	if (!new_index && !s->config_given && !s->knobs_taken && !has_tenants(s)) {
		/* Restarted without a config or a knobs file (a state
		 * directory of before knobs files): the knobs the domain ran
		 * with.  Not where a tenant's process could have written them
		 * into its domain's index, to set every domain's. */
		memcpy(s->knob, d->sp->dom->knob, sizeof(d->sp->dom->knob));
		s->knobs_taken = true;
	}
	memcpy(d->sp->dom->knob, s->knob, sizeof(d->sp->dom->knob)); /* one set for the daemon */
	snprintf(d->name, sizeof(d->name), "%s", name);
	char gpath[512], ppath[512];
	state_path(s, gpath, sizeof(gpath), name, ".guard");
	state_path(s, ppath, sizeof(ppath), name, ".pool");
	if (dpool_open(gpath, ppath, d)) {
		logmsg("domain %s: cannot open %s (fix: move it away)", name, gpath);
		engine_free(d->sp);
		d->sp = NULL;
		return -EIO;
	}
	logmsg("domain %s: %s (%u KSM pages)", name, new_index ? "created" : "taken back",
	       d->sp->dom->live);
	*out = d;
	return 0;
}

/* Whether a ledger of domain `name` is in the state directory: with pid 0,
 * any (a kept one too); else the one kept for process pid's children,
 * whose owner is then *owner. */
static bool find_ledger(const struct state *s, const char *name, pid_t pid, long long *owner)
{
	DIR *dir = opendir(s->dir);
	struct dirent *e;
	bool found = false;
	while (dir && !found && (e = readdir(dir))) {
		char dom[72];
		pid_t p;
		bool forked;
		found = state_ledger_name_owner(e->d_name, dom, &p, &forked, owner) &&
			!strcmp(dom, name) && (!pid || (forked && p == pid));
	}
	if (dir)
		closedir(dir);
	return found;
}

static bool domain_has_ledgers(const struct state *s, const char *name)
{
	long long owner;
	return find_ledger(s, name, 0, &owner);
}

/* Whether a ledger of domain `name` is in the state directory, for a
 * domain no process is connected to: from the list of the ledgers held
 * without a connection, each looked up, not by a walk of the directory
 * (one at every process that left: a directory of N clients' ledgers
 * read N times as they all go).  The same answer as the walk, which it
 * is when the list may miss one. */
static bool domain_holds_ledgers(const struct state *s, const char *name)
{
	if (s->held_lost)
		return domain_has_ledgers(s, name);
	for (int j = 0; j < s->nheld; j++)
		if (!strcmp(s->held[j].dom, name) && held_exists(s, &s->held[j]))
			return true;
	return false;
}

/* Closes d if nothing holds it any more: no connection, no ledger (of a
 * process that will reconnect, or of forked children that may still map
 * its pool).  Every process that could map a pool page or merge onto one
 * has a ledger until it is reaped, so a KSM page the index still counts
 * then is a count nobody holds (a client killed between two of its
 * steps), freed with the domain.  Its files go with it: a domain of that
 * name made later starts empty. */
void state_domain_close_if_unused(struct state *s, struct dom *d)
{
	for (int i = 0; i < s->nclients; i++)
		if (s->clients[i].d == d)
			return;
	if (domain_holds_ledgers(s, d->name))
		return;
	if (d->sp->dom->live)
		logmsg("domain %s: %u KSM pages still counted with no process left: freed with "
		       "the domain",
		       d->name, d->sp->dom->live);
	char path[512];
	s->reclaimed_closed += d->sp->dom->reclaimed;
	s->refused_closed += atomic_load(&d->sp->dom->refused);
	dpool_close(d);
	engine_free(d->sp);
	d->sp = NULL;
	state_path(s, path, sizeof(path), d->name, ".index");
	unlink(path);
	state_path(s, path, sizeof(path), d->name, ".pool");
	unlink(path);
	state_path(s, path, sizeof(path), d->name, ".guard");
	unlink(path);
	logmsg("domain %s: no process left, closed and its files removed", d->name);
}

/* The line samepaged logs when it stops: what it leaves behind.  Its open
 * domains' files stay, and so does what their processes leave when they
 * exit while no daemon runs (their ledgers, the pool pages only they
 * referred to): only a daemon started again with this directory reaps
 * them and closes the domains. */
void state_log_stop(const struct state *s)
{
	int domains = 0, processes = 0;
	unsigned long long pages = 0;
	for (int i = 0; i < s->lim.domains; i++)
		if (s->doms[i].sp) {
			domains++;
			pages += s->doms[i].sp->dom->live;
		}
	for (int k = 0; k < s->nclients; k++) {
		bool first = s->clients[k].d != NULL;
		for (int j = 0; j < k && first; j++)
			first = s->clients[j].pid != s->clients[k].pid || !s->clients[j].d;
		processes += first;
	}
	if (!domains) {
		logmsg("stopping; no domain open");
		return;
	}
	logmsg("stopping; domains open: %d, processes connected: %d; they keep their merged "
	       "memory and resume when samepaged is back; the domains' files (%llu KSM pages) "
	       "stay in %s, and what a process leaves when it exits is freed only when "
	       "samepaged runs again with this directory",
	       domains, processes, pages, s->dir);
}

/* The domains process pid is in (HELLO), other than `except`. */
/* Whether process pid holds a ledger in domain d: connected to it, or gone
 * from its connection while it still maps the pool (its ledger kept,
 * state_client_remove), which holds the domain open as much. */
static bool holds_ledger(const struct state *s, const struct dom *d, pid_t pid)
{
	char path[512];
	for (int k = 0; k < s->nclients; k++)
		if (s->clients[k].pid == pid && s->clients[k].d == d)
			return true;
	state_ledger_path(s, path, sizeof(path), d->name, pid);
	return access(path, F_OK) == 0;
}

int state_domains_of(const struct state *s, pid_t pid, const char *except)
{
	int n = 0;
	for (int i = 0; i < s->lim.domains; i++) {
		const struct dom *d = &s->doms[i];
		if (d->sp && !(except && !strcmp(d->name, except)))
			n += holds_ledger(s, d, pid);
	}
	return n;
}

/*
 * The daemon-wide knobs, kept in DIR/knobs as well as in every domain's
 * file, so that a daemon restarted without --config keeps them even when
 * no domain is left.  Binary, the knob table's values by index: the
 * tunables come first in every version, and only they are read back (a
 * version with more or fewer counters wrote the same tunables, as its
 * domains' files do), each within its range or left at its default.  A
 * file of another size or magic is ignored (and rewritten at the next SET).
 */
#define KNOBS_MAGIC 0x3153424f4e4b5353ULL /* "SSKNOBS1" */
struct knobs_file {
	uint64_t magic;
	uint32_t count;
	uint32_t zero;
	unsigned long long knob[64];
};

static void knobs_save(const struct state *s)
{
	char path[512], tmp[512];
	struct knobs_file k = {.magic = KNOBS_MAGIC, .count = (uint32_t)samepage_knob_count()};
	memcpy(k.knob, s->knob, sizeof(k.knob));
	state_path(s, path, sizeof(path), "knobs", "");
	state_path(s, tmp, sizeof(tmp), "knobs", ".tmp");
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	bool ok = fd >= 0 && write(fd, &k, sizeof(k)) == (ssize_t)sizeof(k);
	if (fd >= 0)
		close(fd);
	if (!ok || rename(tmp, path) < 0) {
		logmsg("cannot write %s: %s (the knobs hold until the daemon stops)", path,
		       strerror(errno));
		unlink(tmp);
	}
}

static void knobs_load(struct state *s)
{
	char path[512];
	struct knobs_file k;
	state_path(s, path, sizeof(path), "knobs", "");
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	struct stat st;
	bool sized = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == sizeof(k);
	bool got = sized && read(fd, &k, sizeof(k)) == (ssize_t)sizeof(k);
	close(fd);
	if (!got || k.magic != KNOBS_MAGIC || k.count > 64) {
		logmsg("%s is not a knobs file of this samepaged: ignored (it is rewritten at the "
		       "next SET)",
		       path);
		return;
	}
	int n = samepage_knob_count(), bad = 0;
	for (int i = 0; i < n && i < (int)k.count; i++) {
		const struct samepage_knob *kb = samepage_knob_at(i);
		if (kb->kind != SAMEPAGE_KNOB_TUNABLE)
			continue;
		if (k.knob[i] >= kb->min && k.knob[i] <= kb->max)
			s->knob[i] = k.knob[i];
		else
			bad++;
	}
	s->knobs_taken = true;
	if (bad)
		logmsg("knobs taken back from %s, but %d out of range: left at their defaults",
		       path, bad);
	else
		logmsg("knobs taken back from %s", path);
}

/* A knob written (SET): the daemon's, then every domain's.  0 or -errno,
 * with the kernel's rules (knob_store). */
int state_knob_store(struct state *s, int idx, unsigned long long v)
{
	long long shared = 0;
	bool unmerge;
	/* The kernel's rule: refused (EBUSY) while KSM pages exist; pool pages
	 * kept only for forked children are not KSM pages. */
	state_value(s, KNOB_pages_shared, &shared);
	int err = knob_store(s->knob, idx, v, shared > 0, &unmerge);
	if (err)
		return err;
	for (int i = 0; i < s->lim.domains; i++) {
		if (!s->doms[i].sp)
			continue;
		struct domain *dm = s->doms[i].sp->dom;
		memcpy(dm->knob, s->knob, sizeof(dm->knob));
		if (unmerge) /* every client unmerges its own pages */
			atomic_fetch_add(&dm->unmerge_epoch, 1);
	}
	knobs_save(s);
	return 0;
}

/* At start-up: the domains of a previous run (by their index or pool
 * files), then the ledgers of the processes that died meanwhile. */
void state_take_back(struct state *s)
{
	if (!s->config_given)
		knobs_load(s);
	bool had_file = s->knobs_taken;
	DIR *dir = opendir(s->dir);
	struct dirent *e;
	while (dir && (e = readdir(dir))) {
		/* A pool without its index too: a domain closed midway, whose
		 * pages are freed once it is taken back and closed again. */
		size_t n = strlen(e->d_name), sl = 0;
		if (n > 6 && !strcmp(e->d_name + n - 6, ".index"))
			sl = 6;
		else if (n > 5 && !strcmp(e->d_name + n - 5, ".pool"))
			sl = 5;
		if (sl) {
			char name[72], index[512];
			snprintf(name, sizeof(name), "%.*s", (int)(n - sl), e->d_name);
			state_path(s, index, sizeof(index), name, ".index");
			if (sl == 5 && access(index, F_OK) == 0)
				continue; /* taken back by its index */
			struct dom *d;
			if (domain_name_ok(name) && state_domain_get(s, name, true, &d) == -ENFILE)
				logmsg("domain %s: not taken back: %d domains open, the most "
				       "--max-domains allows (fix: a larger --max-domains)",
				       name, s->lim.domains);
		}
	}
	if (dir)
		closedir(dir);
	/* The knobs this start runs with (--config's, the defaults, or a
	 * domain's of a directory older than knobs files) saved: a later
	 * start without --config takes them from the daemon's own file,
	 * never from an index a client may have written since (a tenant's,
	 * even once --allow-user no longer names it). */
	if (s->config_given || !had_file)
		knobs_save(s);
	s->knobs_taken = true;
	state_reap_orphans(s);
	for (int i = 0; i < s->lim.domains; i++)
		if (s->doms[i].sp)
			state_domain_close_if_unused(s, &s->doms[i]);
}

/* ---- ledgers ---- */

/* The counters a process published in its ledger (read, never mapped). */
bool state_ledger_header(const struct state *s, const char *domain, pid_t pid, struct ledger *lg)
{
	char path[512];
	state_ledger_path(s, path, sizeof(path), domain, pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t got = pread(fd, lg, sizeof(*lg), 0);
	close(fd);
	return got == (ssize_t)sizeof(*lg);
}

/* Why the ledger open at fd cannot be trusted, or NULL: a ledger is a
 * regular file of at most LEDGER_SIZE bytes that starts with the magic
 * and the pid of its name.  One cut short is read as far as it goes. */
static const char ledger_other_version[] = "a ledger of another samepage version";

static const char *ledger_unfit(int fd, pid_t pid, struct stat *st)
{
	struct ledger lg;
	size_t head = offsetof(struct ledger, pid) + sizeof(lg.pid);
	if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode))
		return "not a regular file";
	if (st->st_size > (off_t)LEDGER_SIZE)
		return "longer than a ledger";
	if (pread(fd, &lg, head, 0) != (ssize_t)head)
		return "shorter than a ledger's header";
	if (lg.magic != LEDGER_MAGIC)
		return "not a ledger of this samepaged";
	if (lg.pid != pid)
		return "the ledger of another pid";
	if (pread(fd, &lg.layout, sizeof(lg.layout), offsetof(struct ledger, layout)) !=
		(ssize_t)sizeof(lg.layout) ||
	    lg.layout != SHARED_LAYOUT)
		return ledger_other_version;
	return NULL;
}

/* A ledger that cannot be trusted is set aside (NAME.broken), never
 * reaped: its counts might be anyone's. */
static void ledger_set_aside(const char *path, const char *why)
{
	char broken[600];
	if (why == ledger_other_version) {
		/* Its domain went when this samepaged took the domain's name
		 * (drop_other_version): nothing to drop its counts from. */
		if (unlink(path) == 0)
			logmsg("%s: %s, whose domain is gone: removed", path, why);
		return;
	}
	snprintf(broken, sizeof(broken), "%s.broken", path);
	/* Its header and fork area kept, to look at: the rest a client may
	 * have filled (130 MB of the state directory's tmpfs a ledger, which
	 * a tenant's process could repeat until no domain could place a
	 * page). */
	if (truncate(path, (off_t)LEDGER_OFF_STAGING) < 0 && errno != ENOENT)
		logmsg("%s: cannot cut it to its header: %s", path, strerror(errno));
	if (rename(path, broken) == 0)
		logmsg("%s: %s: set aside as %s (its header), its counts not dropped (fix: look "
		       "at it, then remove it)",
		       path, why, broken);
	else
		logmsg("%s: %s, and it cannot be set aside: %s (fix: move it away)", path, why,
		       strerror(errno));
}

static bool may_map_pool(const struct state *s, const char *name, pid_t pid,
			 unsigned long long starttime);

/* What reaping a ledger did. */
struct reaped {
	uint64_t dropped; /* references dropped */
	uint64_t pins;	  /* of the pages the client pinned: kept, or unpinned */
};

/* Drops the references counted in the ledger open at fd (size bytes) from
 * d: read in chunks, its holes skipped, never past the end of the file or
 * of the domain's pool (whose page count a client may have written
 * anything into).  Its pins for forked children go too if children_gone;
 * else they stay.  Each chunk of the ledger is rewritten to count what
 * stays (nothing, or the pins) before its references drop, so that no
 * later reap drops one twice: not the one once the children are gone, nor
 * one after this samepaged died in the middle.
 * The domain is locked only if there is something to drop, and never
 * waited for (a client holds it through a batch, in which it waits for
 * this daemon's answer to PLACE): -EBUSY, nothing dropped, if a client
 * holds it.  0 and *out otherwise. */
static int ledger_drop(struct dom *d, int fd, off_t size, bool children_gone, struct reaped *out)
{
	static uint32_t refs[16384], held[16384], stay_refs[16384], stay_held[16384];
	struct samepage *sp = d->sp;
	uint32_t nr = sp->dom->nr < DOM_NODES ? sp->dom->nr : DOM_NODES;
	off_t end = (off_t)(LEDGER_OFF_REFS + (size_t)nr * sizeof(uint32_t));
	struct reaped r = {0, 0};
	bool locked = false, unwritten = false;
	if (end > size)
		end = size;
	for (off_t off = LEDGER_OFF_REFS; off < end;) {
		off_t data = lseek(fd, off, SEEK_DATA);
		if (data < 0 || data >= end)
			break;
		data &= ~(off_t)(sizeof(uint32_t) - 1);
		if (data < off)
			data = off;
		size_t want =
		    end - data < (off_t)sizeof(refs) ? (size_t)(end - data) : sizeof(refs);
		ssize_t got = pread(fd, refs, want, data);
		if (got < (ssize_t)sizeof(uint32_t))
			break;
		size_t n = (size_t)got / sizeof(uint32_t);
		uint32_t first = (uint32_t)((data - (off_t)LEDGER_OFF_REFS) / sizeof(uint32_t));
		off_t held_at = data - (off_t)LEDGER_OFF_REFS + (off_t)LEDGER_OFF_HELD;
		/* Of those, the ones that are no mappings (none past a ledger
		 * cut short). */
		ssize_t hgot = pread(fd, held, n * sizeof(uint32_t), held_at);
		memset((char *)held + (hgot > 0 ? hgot : 0), 0,
		       n * sizeof(uint32_t) - (size_t)(hgot > 0 ? hgot : 0));
		/* What stays of the chunk is written to the ledger before its
		 * references are dropped, or a reap that dies in between (its
		 * samepaged killed) would drop them again at the next start,
		 * from other processes' counts: a reap cut short leaves counts
		 * too high (pages kept until the domain closes), never too low. */
		bool changed = false;
		for (size_t i = 0; i < n; i++) {
			bool pin = refs[i] && !children_gone && (held[i] & LEDGER_PIN);
			stay_refs[i] = pin, stay_held[i] = pin ? LEDGER_PIN : 0;
			changed |= refs[i] != 0;
		}
		ssize_t bytes = (ssize_t)(n * sizeof(uint32_t));
		if (changed) {
			if (!locked && !index_trylock(sp))
				return -EBUSY;
			locked = true;
			if (pwrite(fd, stay_refs, (size_t)bytes, data) != bytes ||
			    pwrite(fd, stay_held, (size_t)bytes, held_at) != bytes)
				unwritten = true;
		}
		for (size_t i = 0; i < n; i++) {
			if (!refs[i])
				continue;
			bool pin =
			    ledger_reap(sp, first + (uint32_t)i, refs[i], held[i], children_gone);
			r.dropped += refs[i] - (pin && !children_gone);
			r.pins += pin;
		}
		off = data + bytes;
	}
	if (locked)
		index_unlock(sp);
	if (unwritten)
		r.pins = 0; /* what stays cannot be told: the pins stay for good */
	*out = r;
	return 0;
}

static long long pid_euid(pid_t pid);
static unsigned long long proc_start(pid_t pid);

struct pool_file {
	const char *path;
	dev_t dev;
	ino_t ino;
};

/* A mapping of the pool file (or of a ledger): its inode, on its device or under its path
 * (the device alone misses a file of overlayfs, whose maps say the real
 * file's; the path alone a state directory reached by another path, a
 * bind mount: every live client then looked gone, its pages punched). */
static int maps_pool(const struct procfs_map *m, void *arg)
{
	const struct pool_file *p = arg;
	return m->inode == (unsigned long)p->ino &&
	       (makedev(m->dev_major, m->dev_minor) == p->dev ||
		!strncmp(m->path, p->path, strlen(p->path)));
}

/* Whether process pid maps file f: 1, 0, or -errno (its maps unread). */
static int pid_maps_file(pid_t pid, const struct pool_file *f)
{
	char maps[64];
	procfs_path(maps, sizeof(maps), "/proc", (int)pid, "maps");
	return procfs_maps(maps, maps_pool, (void *)f);
}

/* Results of ledger_holder(): no process keeps the ledger; one cannot be
 * told (/proc unreadable): its pins stay. */
#define HOLDER_NONE 0
#define HOLDER_UNKNOWN (-1)

/*
 * Whether no process but this daemon has the ledger open at fd (the
 * daemon's one descriptor of it), wherever it runs and whoever it is.  A
 * client maps its ledger from the descriptor HELLO gave it and closes the
 * descriptor (lib/client.c); its forked children inherit the mapping; a
 * mapping holds the file open.  So a ledger open nowhere else is mapped
 * by no process, and none can map it again.  The kernel says so without
 * /proc: a write lease is granted only on a file open nowhere else
 * (fcntl(2) F_SETLEASE; the daemon made the file, so it may ask), and it
 * is given back at once.  Asked of tmpfs files only, whose mappings hold
 * the file they were made from (a stacked file system's, overlayfs's,
 * hold another: a lease there could be granted while a child maps the
 * file).  A lease refused (the file open elsewhere, leases off, a file of
 * another user) says nothing: false.  Another opener of the file in that
 * instant waits for the lease to be given back, and samepaged is sent
 * SIGIO (ignored: samepaged.c).
 */
static bool ledger_open_nowhere_else(int fd)
{
	struct statfs fs;
	if (fstatfs(fd, &fs) < 0 || fs.f_type != TMPFS_MAGIC || fcntl(fd, F_SETLEASE, F_WRLCK) < 0)
		return false;
	fcntl(fd, F_SETLEASE, F_UNLCK);
	return true;
}

/* Whether pid keeps the ledger me: it maps it, or its maps cannot be read
 * and it may (it runs as the owner, or the owner is not known: cannot
 * tell, so its pins stay, as a child's pages must never be given away),
 * being no older than the client (born: the ledger's start time, 0 if
 * not known), as every child and grandchild of it is: an older process
 * (pid 1 to a daemon not root; the owner's ssh-agent, not dumpable)
 * kept a ledger for good (RELIABILITY.md 105). */
static bool may_hold(pid_t pid, const struct pool_file *me, long long owner,
		     unsigned long long born, bool *seen)
{
	int maps = pid_maps_file(pid, me);
	*seen = maps == 1;
	return maps == 1 || (maps == -EACCES && (owner < 0 || pid_euid(pid) == owner) &&
			     (!born || proc_start(pid) >= born));
}

/* What ledger_holder() asks of each process: whether it keeps the ledger
 * me (may_hold()); the first that does is the holder. */
struct holder_ask {
	const struct pool_file *me;
	long long owner;
	unsigned long long born; /* the client's start time, 0 if not known */
	bool *seen;
	pid_t holder;
};

static bool holder_maps(pid_t pid, void *arg)
{
	struct holder_ask *a = arg;
	if (pid <= 0 || pid == getpid() || !may_hold(pid, a->me, a->owner, a->born, a->seen))
		return false;
	a->holder = pid;
	return true;
}

/* The holder last found for the ledger of inode (dev, ino), or NULL. */
static struct holder_seen *holder_cached(struct state *s, dev_t dev, ino_t ino)
{
	for (int i = 0; i < s->nholders; i++)
		if (s->holders[i].dev == dev && s->holders[i].ino == ino)
			return &s->holders[i];
	return NULL;
}

/* Remembers pid as the holder of that ledger (h: its entry, or NULL); or,
 * pid not a holder, forgets it.  Without memory, nothing is remembered:
 * the next pass reads every process's maps again. */
static void holder_note(struct state *s, struct holder_seen *h, dev_t dev, ino_t ino, pid_t pid)
{
	unsigned long long start = pid > 0 ? proc_start(pid) : 0;
	if (!start) {
		if (h)
			*h = s->holders[--s->nholders];
		return;
	}
	if (!h && s->nholders == s->holders_cap) {
		int cap = s->holders_cap ? 2 * s->holders_cap : 16;
		struct holder_seen *more = realloc(s->holders, (size_t)cap * sizeof(*more));
		if (!more)
			return;
		s->holders = more, s->holders_cap = cap;
	}
	if (!h)
		h = &s->holders[s->nholders++];
	*h = (struct holder_seen){dev, ino, pid, start, s->pass};
}

/* The holders no pass asked for since the one before this one: their
 * ledgers are gone. */
static void holders_forget_old(struct state *s)
{
	for (int i = s->nholders; i-- > 0;)
		if (s->holders[i].pass + 1 < s->pass)
			s->holders[i] = s->holders[--s->nholders];
}

/*
 * A process that keeps a gone client's ledger (open at fd, at path): one
 * of its forked children, which all map the ledger (its copy of the
 * client's engine does; once that is closed, the library keeps the fork
 * area's page mapped while it maps pool pages: lib/unmerge.c).  Its pid,
 * HOLDER_NONE, or HOLDER_UNKNOWN.
 *
 * The fork area (fork.c) is the client's to write, so it is a hint, never
 * a proof (RELIABILITY.md 82: a tenant's process wrote one that said a
 * child might still live, and its ledger and domain were kept for good).
 * A child it names counts only if that pid maps this very file (by its
 * inode: a pid reused since maps no ledger).  Where the area cannot name
 * every child (a pid not written yet, a fork begun and not registered,
 * more children than it holds), every process is looked at: one that maps
 * the file keeps it, and if none does, nothing can map its pages through
 * it.  A process whose maps cannot be read (a daemon not root) keeps it if
 * it runs as the ledger's owner, or if the owner is not known, and started
 * no earlier than the client (may_hold()); only a process seen to map the
 * file gives its owner.
 * The holder found so is looked at first the next time (the same process,
 * by its start time, that still keeps it), and every process only when it
 * no longer does: a tenant's fork area with one pid 0 made each 5 s pass
 * read every maps file of the host (RELIABILITY.md 98).  Then the
 * processes started no earlier than the client (its children are) come
 * first, told by their start time, and the others' maps are read only if
 * none of those keeps it.
 *
 * Before all that, the kernel is asked whether any process has the
 * ledger open (ledger_open_nowhere_else(); a state directory on tmpfs).
 * None: no process keeps it, whatever /proc shows or hides (a process the
 * daemon cannot read, started after the client, kept it for as long as
 * it ran: RELIABILITY.md 107).  Some, or not known: the processes are
 * looked at, as above.  (Some is no proof that a process maps it: a
 * process that exits releases its connection before its mappings, and
 * the daemon often sees the client gone while its ledger is still open:
 * its next pass finds it open nowhere.)
 */
static pid_t ledger_holder(struct state *s, int fd, const char *path, long long owner, bool *seen)
{
	struct fork_shared f;
	struct stat st;
	*seen = false;
	if (ledger_open_nowhere_else(fd))
		return HOLDER_NONE;
	if (fstat(fd, &st) < 0)
		return HOLDER_UNKNOWN;
	struct pool_file me = {path, st.st_dev, st.st_ino};
	struct ledger lg;
	bool head = pread(fd, &lg, sizeof(lg), 0) == (ssize_t)sizeof(lg);
	struct holder_ask ask = {&me, owner, head ? lg.starttime : 0, seen, HOLDER_NONE};
	/* The area's rules are the library's own (fork_area_live): a child
	 * it names that keeps the file, or an area that cannot name them
	 * all; unread, it names none. */
	bool got = pread(fd, &f, sizeof(f), (off_t)LEDGER_OFF_FORK) == (ssize_t)sizeof(f);
	if (got && !fork_area_live(&f, atomic_load(&f.started), atomic_load(&f.registered),
				   holder_maps, &ask))
		return HOLDER_NONE;
	if (ask.holder != HOLDER_NONE)
		return ask.holder;
	struct holder_seen *h = holder_cached(s, st.st_dev, st.st_ino);
	if (h && proc_start(h->pid) == h->start && holder_maps(h->pid, &ask)) {
		h->pass = s->pass;
		return h->pid;
	}
	int *pids = NULL, n = procfs_pids("/proc", &pids), older = 0;
	if (n < 0)
		return HOLDER_UNKNOWN;
	/* A child or grandchild of the client started no earlier than it
	 * (/proc/PID/stat, which takes no lock of the process's memory as
	 * its maps do): those are looked at first, the others only if none
	 * keeps it. */
	for (int i = 0; i < n && ask.holder == HOLDER_NONE; i++)
		if (ask.born && proc_start(pids[i]) < ask.born)
			pids[older++] = pids[i];
		else
			holder_maps(pids[i], &ask);
	for (int i = 0; i < older && ask.holder == HOLDER_NONE; i++)
		holder_maps(pids[i], &ask);
	free(pids);
	holder_note(s, h, st.st_dev, st.st_ino, ask.holder);
	return ask.holder;
}

/* The kept ledger of domain d and process pid, if there is one (another
 * process's with this pid, gone before): its path and owner. */
static bool find_forked(const struct state *s, const char *domain, pid_t pid, char *path,
			size_t len, long long *owner)
{
	bool found = find_ledger(s, domain, pid, owner);
	if (found)
		state_forked_path(s, path, len, domain, pid, *owner);
	return found;
}

/*
 * Drops every reference a gone process's ledger counts, then removes it:
 * 0, or -EBUSY if a client holds the domain's lock (the ledger stays, for
 * state_reap_orphans() to reap later).  While a forked child keeps it
 * (ledger_holder), its pins stay: the ledger becomes
 * DOMAIN.PID.uUID.forked, counting them alone, charged to UID (the
 * process's owner, if known, else the child's), until a later pass finds
 * no process keeping it.
 */
static int reap_file(struct state *s, struct dom *d, pid_t pid, bool forked, long long owner)
{
	char path[512], kept[512];
	struct stat st;
	if (forked)
		state_forked_path(s, path, sizeof(path), d->name, pid, owner);
	else
		state_ledger_path(s, path, sizeof(path), d->name, pid);
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return 0;
	const char *why = ledger_unfit(fd, pid, &st);
	if (why) {
		close(fd);
		ledger_set_aside(path, why);
		return 0;
	}
	bool seen;
	pid_t holder = ledger_holder(s, fd, path, owner, &seen);
	bool gone = holder == HOLDER_NONE;
	if (owner < 0 && holder > 0 && seen)
		owner = pid_euid(holder); /* its children's uid is its own */
	if (forked && !gone) {
		close(fd); /* the children still live: nothing changed */
		state_forked_path(s, kept, sizeof(kept), d->name, pid, owner);
		if (strcmp(kept, path) && rename(path, kept) == 0) { /* a name without its owner */
			logmsg("domain %s: %s: its owner is uid %lld (a process that keeps it)",
			       d->name, kept, owner);
			held_note(s, d->name, pid, true, owner);
		}
		return 0;
	}
	uint64_t before = d->sp->dom->live;
	struct reaped r;
	int err = ledger_drop(d, fd, st.st_size, gone, &r);
	close(fd);
	if (err) {
		logmsg("domain %s: process %d gone: its references are dropped later (a client "
		       "holds the domain's lock)",
		       d->name, (int)pid);
		return err;
	}
	uint64_t after = d->sp->dom->live;
	unsigned long long freed = before > after ? before - after : 0;
	if (forked) {
		/* Said before the file goes: whoever sees it gone finds it
		 * said (lib.adv_daemon_fork_after_close failed one run in
		 * three, reading the log between the two). */
		logmsg("domain %s: process %d's forked children are gone: %llu KSM pages unpinned, "
		       "%llu pool pages freed",
		       d->name, (int)pid, (unsigned long long)r.pins, freed);
		unlink(path);
		return 0;
	}
	long long earlier;
	if (!gone && r.pins && find_forked(s, d->name, pid, kept, sizeof(kept), &earlier))
		reap_file(s, d, pid, true, earlier); /* an earlier process of this pid's */
	/* Still there after that reap: kept for its children, not replaced. */
	bool had = !gone && r.pins && find_forked(s, d->name, pid, kept, sizeof(kept), &earlier);
	if (!had)
		state_forked_path(s, kept, sizeof(kept), d->name, pid, owner);
	bool keep = !gone && r.pins && !had && rename(path, kept) == 0;
	if (keep)
		held_note(s, d->name, pid, true, owner);
	else
		unlink(path);
	logmsg("domain %s: process %d gone: %llu references dropped, %llu pool pages freed%s%s",
	       d->name, (int)pid, (unsigned long long)r.dropped, freed,
	       st.st_size < (off_t)LEDGER_SIZE
		   ? " (its ledger was cut short: the pages counted past its end stay)"
		   : "",
	       keep ? "; the KSM pages it pinned for its forked children stay until they are gone"
		    : "");
	if (!gone && r.pins && !keep)
		logmsg("domain %s: process %d gone: the %llu KSM pages it pinned for its forked "
		       "children stay pinned (%s, of an earlier process with this pid, has "
		       "children alive)",
		       d->name, (int)pid, (unsigned long long)r.pins, kept);
	return 0;
}

int state_reap(struct state *s, struct dom *d, pid_t pid, long long owner)
{
	return reap_file(s, d, pid, false, owner);
}

/* A process's start time (/proc/PID/stat field 22), 0 if it is gone. */
static unsigned long long proc_start(pid_t pid)
{
	char path[64];
	struct procfs_stat st;
	procfs_path(path, sizeof(path), "/proc", (int)pid, "stat");
	return procfs_stat(path, &st) ? 0 : st.starttime;
}

/* Process pid's name now (/proc/PID/comm, escaped as samepaged shows every
 * name) into buf: false if it cannot be read (gone). */
static bool proc_comm(pid_t pid, char *buf, size_t len)
{
	char path[64], comm[32];
	procfs_path(path, sizeof(path), "/proc", (int)pid, "comm");
	if (procfs_comm(path, comm, sizeof(comm)))
		return false;
	procfs_escape(comm, buf, len);
	return true;
}

/* The ledger of c in d, made if new: its descriptor, or -errno.  A ledger
 * of this name that is not c's (an earlier process with the same pid, or
 * not a ledger) is reaped or set aside first: a client is handed only a
 * full-sized ledger of its own (-EAGAIN while that reap must wait for the
 * domain's lock). */
int state_ledger_open(struct state *s, struct dom *d, const struct client *c)
{
	char path[512];
	struct stat st;
	struct ledger lg;
	unsigned long long starttime = proc_start(c->pid);
	state_ledger_path(s, path, sizeof(path), d->name, c->pid);
	int lfd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (lfd >= 0) {
		const char *why = ledger_unfit(lfd, c->pid, &st);
		if (!why && st.st_size != (off_t)LEDGER_SIZE)
			why = "cut short";
		if (!why && pread(lfd, &lg, sizeof(lg), 0) == (ssize_t)sizeof(lg) &&
		    lg.starttime == starttime)
			return lfd; /* its own: a client reconnecting */
		close(lfd);
		if (why)
			ledger_set_aside(path, why);
		else if (state_reap(s, d, c->pid, -1)) /* a gone process's, with the same pid */
			return -EAGAIN;		       /* not reaped yet: the client tries again */
	}
	lfd = open(path, O_RDWR | O_CLOEXEC | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
	if (lfd < 0 && errno == ENOENT && access(s->dir, F_OK) < 0) {
		state_dir_gone(s);
		return -EIO;
	}
	if (lfd < 0)
		return -errno;
	lg = (struct ledger){
	    .magic = LEDGER_MAGIC, .pid = c->pid, .starttime = starttime, .layout = SHARED_LAYOUT};
	snprintf(lg.comm, sizeof(lg.comm), "%s", c->comm);
	if (ftruncate(lfd, (off_t)LEDGER_SIZE) < 0 ||
	    pwrite(lfd, &lg, sizeof(lg), 0) != (ssize_t)sizeof(lg)) {
		int err = -errno;
		close(lfd);
		unlink(path);
		return err;
	}
	return lfd;
}

/* Whether process pid may still map a page of the pool of domain `name`:
 * it runs (with that start time, if known) and its mappings name the pool
 * file, or they cannot be read.  A process that closed its connection
 * but kept running (a daemon closing every descriptor, say) keeps its
 * pages; one that exited or exec'd maps nothing any more. */
static bool pid_runs(pid_t pid, unsigned long long starttime)
{
	unsigned long long now = proc_start(pid);
	return now && (!starttime || now == starttime);
}

const char *state_client_comm(const struct ledger *lg, char *buf, size_t len)
{
	if (pid_runs(lg->pid, lg->starttime) && proc_comm(lg->pid, buf, len))
		return buf;
	snprintf(buf, len, "%.*s", (int)sizeof(lg->comm), lg->comm);
	return buf;
}

static bool may_map_pool(const struct state *s, const char *name, pid_t pid,
			 unsigned long long starttime)
{
	if (!pid_runs(pid, starttime))
		return false;
	char path[512];
	struct stat pool;
	state_path(s, path, sizeof(path), name, ".pool");
	if (stat(path, &pool) < 0)
		return false;
	struct pool_file want = {path, pool.st_dev, pool.st_ino};
	return pid_maps_file(pid, &want) != 0; /* unreadable (< 0): cannot tell, keep its pages */
}

/* The start time a process's ledger recorded, or 0. */
static unsigned long long ledger_starttime(const struct state *s, const char *domain, pid_t pid)
{
	struct ledger lg;
	return state_ledger_header(s, domain, pid, &lg) ? lg.starttime : 0;
}

/* Tells each domain how many engines scan it (struct domain's scanners):
 * they share pages_to_scan. */
void state_count_scanners(struct state *s)
{
	for (int i = 0; i < s->lim.domains; i++) {
		struct dom *d = &s->doms[i];
		if (!d->sp)
			continue;
		uint32_t n = 0;
		for (int k = 0; k < s->nclients; k++)
			n += s->clients[k].d == d;
		atomic_store(&d->sp->dom->scanners, n);
	}
}

/* Says in the log when a client's mapping budget refused merges, and what
 * would let them happen: once, and again when the need grew by 1/8. */
void state_budget_watch(struct state *s)
{
	for (int i = 0; i < s->nclients; i++) {
		struct client *k = &s->clients[i];
		struct ledger lg;
		if (!k->d || !state_ledger_header(s, k->d->name, k->pid, &lg))
			continue;
		int64_t need = lg.map_count_needed;
		if (need <= lg.max_map_count || need <= k->budget_said + k->budget_said / 8)
			continue;
		k->budget_said = need;
		char comm[sizeof(lg.comm)];
		logmsg("domain %s: process %d (%s): the mapping budget refused %lld merges "
		       "(%lld of vm.max_map_count %lld mappings); vm.max_map_count %lld would let "
		       "them all happen (sysctl -w vm.max_map_count=%lld; ~240 bytes of kernel "
		       "memory per mapping)",
		       k->d->name, (int)k->pid, state_client_comm(&lg, comm, sizeof(comm)),
		       (long long)lg.skipped_map_budget, (long long)lg.map_count,
		       (long long)lg.max_map_count, (long long)need, (long long)need);
	}
}

/* At start-up, and every few seconds: ledgers of processes that are gone
 * while nobody watched (the daemon was down, or they never reconnected),
 * or that closed their connection and have since exited or exec'd.  The
 * ledgers of the directory are listed first (held_list(): its one walk,
 * the connected processes' left out), then each is looked at as it was
 * listed; what the pass renames is noted after them, for the next pass
 * (one the list had no memory for is looked at by a later pass). */
void state_reap_orphans(struct state *s)
{
	s->pass++;
	held_list(s);
	for (int j = 0, listed = s->nheld; j < listed; j++) {
		char dom[72];
		const struct held_ledger *h = &s->held[j]; /* s->held moves as the pass notes */
		pid_t pid = h->pid;
		bool forked = h->forked; /* a gone process's pins, whatever runs with its pid now */
		long long owner = h->owner;
		snprintf(dom, sizeof(dom), "%s", h->dom);
		if (!forked && (connected_to(s, pid, dom) ||
				may_map_pool(s, dom, pid, ledger_starttime(s, dom, pid))))
			continue; /* it will reconnect, or be reaped when it is gone */
		struct dom *d;
		char path[512];
		state_path(s, path, sizeof(path), dom, ".index");
		if (access(path, F_OK) < 0) {
			/* No domain: nothing to drop; not a ledger: set aside. */
			if (!forked && pid_runs(pid, ledger_starttime(s, dom, pid)))
				continue;
			if (forked)
				state_forked_path(s, path, sizeof(path), dom, pid, owner);
			else
				state_ledger_path(s, path, sizeof(path), dom, pid);
			int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
			struct stat st;
			const char *why = fd >= 0 ? ledger_unfit(fd, pid, &st) : NULL;
			if (fd >= 0)
				close(fd);
			if (why)
				ledger_set_aside(path, why);
			else if (fd >= 0 && unlink(path) == 0)
				logmsg("%s: a ledger of no domain: removed", path);
		} else if (state_domain_get(s, dom, true, &d) == 0) {
			reap_file(s, d, pid, forked, owner);
			state_domain_close_if_unused(s, d);
		}
	}
	holders_forget_old(s);
}

/* ---- clients ---- */

/* The connections of process pid. */
int state_connections_of(const struct state *s, pid_t pid)
{
	int n = 0;
	for (int i = 0; i < s->nclients; i++)
		n += s->clients[i].pid == pid;
	return n;
}

/* ---- users ---- */

static bool user_trusted(uid_t uid)
{
	return uid == 0 || uid == geteuid();
}

bool state_user_may_connect(const struct state *s, uid_t uid)
{
	for (int i = 0; i < s->nallow; i++)
		if (s->allow[i].uid == uid)
			return true;
	return user_trusted(uid);
}

/* Whether domain matches one of the comma-separated patterns. */
static bool domain_matches(const char *patterns, const char *domain)
{
	char p[sizeof(((struct allowed *)0)->domains)];
	snprintf(p, sizeof(p), "%s", patterns);
	for (char *save, *one = strtok_r(p, ",", &save); one; one = strtok_r(NULL, ",", &save))
		if (fnmatch(one, domain, 0) == 0)
			return true;
	return false;
}

bool state_user_may_join(const struct state *s, uid_t uid, const char *domain)
{
	if (user_trusted(uid))
		return true;
	for (int i = 0; i < s->nallow; i++)
		if (s->allow[i].uid == uid &&
		    (!s->allow[i].domains[0] || domain_matches(s->allow[i].domains, domain)))
			return true;
	return false;
}

bool state_user_is_tenant(const struct state *s, uid_t uid)
{
	bool named = false;
	if (user_trusted(uid))
		return false;
	for (int i = 0; i < s->nallow; i++)
		if (s->allow[i].uid == uid) {
			if (!s->allow[i].domains[0])
				return false; /* named without domains too: any */
			named = true;
		}
	return named;
}

int state_user_share(const struct state *s, int limit, int per_user)
{
	int tenants = 0;
	if (per_user > 0)
		return per_user;
	for (int i = 0; i < s->nallow; i++) {
		bool first = true;
		for (int j = 0; j < i && first; j++)
			first = s->allow[j].uid != s->allow[i].uid;
		tenants += first && state_user_is_tenant(s, s->allow[i].uid);
	}
	int share = limit / (tenants + 1);
	return share > 0 ? share : 1;
}

struct throttle *state_user_throttle(struct state *s, uid_t uid)
{
	for (int i = 0; i < s->nallow; i++)
		if (s->allow[i].uid == uid)
			return &s->allow[i].log;
	return &s->log_limit;
}

/* The effective uid of process pid (what SO_PEERCRED gave), -1 if gone. */
static long long pid_euid(pid_t pid)
{
	char path[64], text[2048];
	unsigned long ruid, euid;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (procfs_read(path, text, sizeof(text)) < 0)
		return -1;
	const char *v = procfs_find_key(text, "Uid");
	return v && sscanf(v, "%lu %lu", &ruid, &euid) == 2 ? (long long)euid : -1;
}

/*
 * The ledgers uid holds without a connection, each marked in in[] by its
 * domain's slot (if in is not NULL): a process's that closed its
 * connection but still maps the pool (by the process's effective uid),
 * and a gone process's kept for its forked children (by the owner its
 * name records).  Each holds what a connection does, a domain open and
 * its pages, so each counts in the tenant's shares as one.  From the list
 * of such ledgers (held_list()), not the state directory, which a
 * tenant's every connection had walked.
 */
static int ledgers_held_by(const struct state *s, uid_t uid, bool *in)
{
	int n = 0;
	for (int j = 0; j < s->nheld; j++) {
		const struct held_ledger *h = &s->held[j];
		int slot = -1;
		for (int i = 0; i < s->lim.domains && slot < 0; i++)
			if (s->doms[i].sp && !strcmp(s->doms[i].name, h->dom))
				slot = i;
		if (slot < 0 || (h->forked ? h->owner : pid_euid(h->pid)) != (long long)uid ||
		    (!h->forked && connected_to(s, h->pid, h->dom)))
			continue;
		if (!held_exists(s, h))
			continue; /* reaped, or renamed: listed under its new name */
		n++;
		if (in)
			in[slot] = true;
	}
	return n;
}

int state_connections_of_user(const struct state *s, uid_t uid)
{
	int n = 0;
	for (int i = 0; i < s->nclients; i++)
		n += s->clients[i].uid == uid;
	return n + ledgers_held_by(s, uid, NULL);
}

int state_domains_of_user(const struct state *s, uid_t uid, const char *except)
{
	int n = 0;
	bool *in = calloc((size_t)s->lim.domains, sizeof(*in));
	if (!in)
		return s->lim.domains; /* no memory to count: as if full */
	for (int k = 0; k < s->nclients; k++)
		if (s->clients[k].uid == uid && s->clients[k].d)
			in[s->clients[k].d - s->doms] = true;
	ledgers_held_by(s, uid, in); /* and the ledgers it keeps without a connection */
	for (int i = 0; i < s->lim.domains; i++)
		n += in[i] && !(except && !strcmp(s->doms[i].name, except));
	free(in);
	return n;
}

const char *state_user_domains(const struct state *s, uid_t uid, char *buf, size_t len)
{
	size_t n = 0;
	buf[0] = 0;
	for (int i = 0; i < s->nallow && n < len; i++)
		if (s->allow[i].uid == uid && s->allow[i].domains[0]) {
			int w =
			    snprintf(buf + n, len - n, "%s%s", n ? "," : "", s->allow[i].domains);
			n += w > 0 ? (size_t)w : 0;
		}
	return buf;
}

/* Both connection limits, the tenant's share and the process's, are
 * checked here, and named in why (state.h). */
int state_client_add(struct state *s, int fd, pid_t pid, uid_t uid, char *why, size_t len)
{
	int n, share = state_user_share(s, s->lim.connections, s->lim.connections_per_user);
	/* A tenant holds its share of the connections at most: it cannot
	 * take the others' (its own idle ones are what it closes; the
	 * ledgers it keeps without one count as connections). */
	if (state_user_is_tenant(s, uid) && state_connections_of_user(s, uid) >= share) {
		snprintf(why, len,
			 "uid %d holds %d connections, the most a tenant may "
			 "(--max-connections-per-user)",
			 (int)uid, share);
		return -EMFILE;
	}
	if ((n = state_connections_of(s, pid)) >= s->lim.connections_per_process) {
		snprintf(why, len,
			 "process %d holds %d connections, the most --max-connections-per-process "
			 "allows",
			 (int)pid, n);
		return -EMFILE;
	}
	if (s->nclients == s->lim.connections) {
		snprintf(why, len,
			 "%d connections open, all said HELLO: the most --max-connections allows",
			 s->lim.connections);
		return -ENFILE;
	}
	struct client *c = &s->clients[s->nclients++];
	*c = (struct client){.fd = fd, .pid = pid, .uid = uid, .active_ns = prim_now_ns()};
	proc_comm(pid, c->comm, sizeof(c->comm));
	return 0;
}

/* The connection without HELLO idle the longest, or -1. */
int state_client_idlest(const struct state *s)
{
	int best = -1;
	for (int i = 0; i < s->nclients; i++)
		if (!s->clients[i].d &&
		    (best < 0 || s->clients[i].active_ns < s->clients[best].active_ns))
			best = i;
	return best;
}

/* Connection i closed (its descriptor is the caller's to close).  After a
 * process's last connection to a domain, its ledger is reaped; after the
 * domain's last process, the domain is closed. */
void state_client_remove(struct state *s, int i)
{
	struct client *c = &s->clients[i];
	struct dom *d = c->d;
	pid_t pid = c->pid;
	uid_t uid = c->uid;
	s->clients[i] = s->clients[--s->nclients];
	if (!d)
		return;
	/* The process may hold another connection to the same domain (two
	 * engines): its ledger is shared, reap after the last one. */
	for (int k = 0; k < s->nclients; k++)
		if (s->clients[k].pid == pid && s->clients[k].d == d)
			return;
	if (may_map_pool(s, d->name, pid, ledger_starttime(s, d->name, pid))) {
		logmsg("domain %s: process %d closed its connection but still maps the pool: "
		       "its pages are kept until it exits",
		       d->name, (int)pid);
		held_note(s, d->name, pid, false, -1);
		return;
	}
	if (state_reap(s, d, pid, uid)) /* not yet: the next pass reaps it */
		held_note(s, d->name, pid, false, -1);
	state_domain_close_if_unused(s, d);
}

/* ---- counters ---- */

/* One client's counts, from its ledger, as its engine's counts for
 * counter_value() (process; the domain's are not in them); false if it has
 * no ledger (yet), with zeros. */
bool state_client_counts(const struct state *s, const struct client *k, struct ledger *lg,
			 struct ksm_counts *c)
{
	bool got = k->d && state_ledger_header(s, k->d->name, k->pid, lg);
	if (!got)
		*lg = (struct ledger){0};
	*c = (struct ksm_counts){
	    .process = true,
	    .use_zero_pages = s->knob[KNOB_use_zero_pages],
	    .max_page_sharing = s->knob[KNOB_max_page_sharing],
	    .rmap_items = (uint64_t)lg->rmap_items,
	    .merging_pages = (uint64_t)lg->merging_pages,
	    .unshared = (uint64_t)lg->unshared,
	    .zero_pages = (uint64_t)lg->zero_pages,
	    .full_scans = (uint64_t)lg->full_scans,
	    .pages_scanned = (uint64_t)lg->pages_scanned,
	    .pages_skipped = (uint64_t)lg->pages_skipped,
	    .pages_tracked = (uint64_t)lg->tracked_pages,
	    .metadata_bytes = (uint64_t)lg->metadata_bytes,
	    .skipped_map_budget = (uint64_t)lg->skipped_map_budget,
	    .map_count = (uint64_t)lg->map_count,
	    .max_map_count = (uint64_t)lg->max_map_count,
	    .map_count_needed = (uint64_t)lg->map_count_needed,
	};
	for (int r = 0; r < KEPT_COUNT; r++)
		c->kept[r] = (uint64_t)lg->kept[r];
	return got;
}

/* The daemon's counts: its domains' sums, and its clients' from their
 * ledgers (counts_add_process); full_scans is the least any connected
 * process has done.  pool_pages_reclaimed and pool_pages_refused keep the
 * closed domains' too: they count for the daemon's life (Prometheus
 * counters, which never go down). */
static void state_counts(const struct state *s, struct ksm_counts *c)
{
	bool any = false;
	*c = (struct ksm_counts){.process = false,
				 .reclaimed = s->reclaimed_closed,
				 .refused = s->refused_closed,
				 .use_zero_pages = s->knob[KNOB_use_zero_pages],
				 .max_page_sharing = s->knob[KNOB_max_page_sharing]};
	for (int i = 0; i < s->lim.domains; i++) {
		if (!s->doms[i].sp)
			continue;
		const struct domain *d = s->doms[i].sp->dom;
		c->pages_shared += d->pages_shared;
		c->pages_sharing += d->pages_sharing;
		c->chains += d->chains;
		c->dups += d->dups;
		c->pool_pages += d->live;
		c->reclaimed += d->reclaimed;
		c->refused += atomic_load(&d->refused);
	}
	for (int i = 0; i < s->nclients; i++) {
		const struct client *k = &s->clients[i];
		struct ledger lg;
		struct ksm_counts one;
		if (!k->d)
			continue;
		state_client_counts(s, k, &lg, &one);
		counts_add_process(c, &one);
		if (!any || one.full_scans < c->full_scans)
			c->full_scans = one.full_scans;
		any = true;
	}
}

/* A knob, or a counter as counters.c defines it from the daemon's counts. */
bool state_value(const struct state *s, int idx, long long *v)
{
	struct ksm_counts c;
	if (samepage_knob_at(idx)->kind == SAMEPAGE_KNOB_TUNABLE) {
		*v = (long long)s->knob[idx];
		return true;
	}
	state_counts(s, &c);
	return counter_value(&c, idx, v);
}
