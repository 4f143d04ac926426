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
#include "state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
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

/* ---- domains ---- */

static int open_state(const struct state *s, const char *name, const char *suffix, size_t size,
		      bool *created)
{
	char path[512];
	state_path(s, path, sizeof(path), name, suffix);
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
 * the state directory: 0, -ENOENT (not open, and not to be made),
 * -ENFILE (no free slot: --max-domains), or -EIO (its files; logged). */
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
	bool new_index, new_pool;
	int ifd = open_state(s, name, ".index", DOM_SIZE, &new_index);
	int pfd = open_state(s, name, ".pool", (size_t)DOM_NODES << PAGE_SHIFT, &new_pool);
	if (ifd < 0 || pfd < 0) {
		logmsg("domain %s: cannot open its files in %s: %s", name, s->dir,
		       strerror(ifd < 0 ? -ifd : -pfd));
		if (ifd >= 0)
			close(ifd);
		if (pfd >= 0)
			close(pfd);
		return -EIO;
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
				memcpy(((struct domain *)dst)->knob, s->knob,
				       sizeof(((struct domain *)dst)->knob));
				prim_munmap(dst, PAGE_SIZE);
			}
			close(tmp_i);
			close(tmp_p);
		}
	}
	if (engine_open(&d->sp, ifd, pfd)) {
		logmsg("domain %s: cannot map its files", name);
		return -EIO;
	}
	if (d->sp->dom->magic != DOM_MAGIC) {
		logmsg("domain %s: %s/%s.index is not a samepage domain file; move it away", name,
		       s->dir, name);
		engine_free(d->sp);
		d->sp = NULL;
		return -EIO;
	}
	if (!new_index && !s->config_given && !s->knobs_taken) {
		/* Restarted without a config: the knobs the domain ran with. */
		memcpy(s->knob, d->sp->dom->knob, sizeof(d->sp->dom->knob));
		s->knobs_taken = true;
	}
	memcpy(d->sp->dom->knob, s->knob, sizeof(d->sp->dom->knob)); /* one set for the daemon */
	snprintf(d->name, sizeof(d->name), "%s", name);
	logmsg("domain %s: %s (%u KSM pages)", name, new_index ? "created" : "taken back",
	       d->sp->dom->live);
	*out = d;
	return 0;
}

/* Whether a ledger of domain `name` is in the state directory. */
static bool domain_has_ledgers(const struct state *s, const char *name)
{
	DIR *dir = opendir(s->dir);
	struct dirent *e;
	bool found = false;
	while (dir && !found && (e = readdir(dir))) {
		char dom[72];
		pid_t pid;
		found = ledger_name_parse(e->d_name, dom, &pid) && !strcmp(dom, name);
	}
	if (dir)
		closedir(dir);
	return found;
}

/* Closes d if nothing holds it any more: no connection, no ledger (of a
 * process that will reconnect), no pool page in use.  Its files go with
 * it: a domain of that name made later starts empty. */
void state_domain_close_if_unused(struct state *s, struct dom *d)
{
	for (int i = 0; i < s->nclients; i++)
		if (s->clients[i].d == d)
			return;
	if (d->sp->dom->live || domain_has_ledgers(s, d->name))
		return;
	char path[512];
	s->reclaimed_closed += d->sp->dom->reclaimed;
	engine_free(d->sp);
	d->sp = NULL;
	state_path(s, path, sizeof(path), d->name, ".index");
	unlink(path);
	state_path(s, path, sizeof(path), d->name, ".pool");
	unlink(path);
	logmsg("domain %s: no process left, closed and its files removed", d->name);
}

/* The domains process pid is in (HELLO), other than `except`. */
int state_domains_of(const struct state *s, pid_t pid, const char *except)
{
	int n = 0;
	for (int i = 0; i < s->lim.domains; i++) {
		const struct dom *d = &s->doms[i];
		if (!d->sp || (except && !strcmp(d->name, except)))
			continue;
		for (int k = 0; k < s->nclients; k++)
			if (s->clients[k].pid == pid && s->clients[k].d == d) {
				n++;
				break;
			}
	}
	return n;
}

/*
 * The daemon-wide knobs, kept in DIR/knobs as well as in every domain's
 * file, so that a daemon restarted without --config keeps them even when
 * no domain is left.  Binary, of this build's knob table: a file of any
 * other size or magic is ignored (and rewritten at the next SET).
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
	if (!got || k.magic != KNOBS_MAGIC || k.count != (uint32_t)samepage_knob_count()) {
		logmsg("%s is not a knobs file of this samepaged: ignored (it is rewritten at the "
		       "next SET)",
		       path);
		return;
	}
	memcpy(s->knob, k.knob, sizeof(k.knob));
	s->knobs_taken = true;
	logmsg("knobs taken back from %s", path);
}

/* A knob written (SET): the daemon's, then every domain's.  0 or -errno,
 * with the kernel's rules (knob_store). */
int state_knob_store(struct state *s, int idx, unsigned long long v)
{
	long long live = 0;
	bool unmerge;
	state_value(s, KNOB_pool_pages, &live);
	int err = knob_store(s->knob, idx, v, live > 0, &unmerge);
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

/* At start-up: the domains of a previous run, then the ledgers of the
 * processes that died meanwhile. */
void state_take_back(struct state *s)
{
	if (!s->config_given)
		knobs_load(s);
	DIR *dir = opendir(s->dir);
	struct dirent *e;
	while (dir && (e = readdir(dir))) {
		size_t n = strlen(e->d_name);
		if (n > 6 && !strcmp(e->d_name + n - 6, ".index")) {
			char name[72];
			snprintf(name, sizeof(name), "%.*s", (int)(n - 6), e->d_name);
			struct dom *d;
			if (domain_name_ok(name) && state_domain_get(s, name, true, &d) == -ENFILE)
				logmsg("domain %s: not taken back: %d domains open, the most "
				       "--max-domains allows (fix: a larger --max-domains)",
				       name, s->lim.domains);
		}
	}
	if (dir)
		closedir(dir);
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

/* The ledger of c in d, made if new: its descriptor, or -errno. */
int state_ledger_open(struct state *s, const struct dom *d, const struct client *c)
{
	char path[512];
	state_ledger_path(s, path, sizeof(path), d->name, c->pid);
	int lfd = open(path, O_RDWR | O_CLOEXEC | O_CREAT, 0600);
	struct stat st;
	if (lfd < 0 || fstat(lfd, &st) < 0)
		return -errno;
	if (st.st_size == 0) {
		struct ledger lg = {
		    .magic = LEDGER_MAGIC, .pid = c->pid, .starttime = proc_starttime(c->pid)};
		snprintf(lg.comm, sizeof(lg.comm), "%s", c->comm);
		if (ftruncate(lfd, (off_t)LEDGER_SIZE) < 0 ||
		    pwrite(lfd, &lg, sizeof(lg), 0) != (ssize_t)sizeof(lg)) {
			int err = -errno;
			close(lfd);
			return err;
		}
	}
	return lfd;
}

/* Drops every reference a gone process's ledger counts, then removes it. */
void state_reap(struct state *s, struct dom *d, pid_t pid)
{
	char path[512];
	state_ledger_path(s, path, sizeof(path), d->name, pid);
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

/* At start-up, and every few seconds: ledgers of processes that died while
 * nobody watched (the daemon was down, or they never reconnected). */
void state_reap_orphans(struct state *s)
{
	DIR *dir = opendir(s->dir);
	struct dirent *e;
	while (dir && (e = readdir(dir))) {
		char dom[72];
		pid_t pid;
		if (!ledger_name_parse(e->d_name, dom, &pid))
			continue;
		bool connected = false;
		for (int c = 0; c < s->nclients; c++)
			connected |= s->clients[c].pid == pid && s->clients[c].d &&
				     !strcmp(s->clients[c].d->name, dom);
		if (connected)
			continue;
		struct ledger lg;
		unsigned long long st = state_ledger_header(s, dom, pid, &lg) ? lg.starttime : 0;
		if (pid_alive(pid, st))
			continue; /* alive: it will reconnect, or be reaped when it dies */
		struct dom *d;
		if (state_domain_get(s, dom, true, &d) == 0) {
			state_reap(s, d, pid);
			state_domain_close_if_unused(s, d);
		}
	}
	if (dir)
		closedir(dir);
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

/* A new connection: 0, -EMFILE (the process holds
 * --max-connections-per-process) or -ENFILE (the table is full). */
int state_client_add(struct state *s, int fd, pid_t pid, uid_t uid)
{
	if (state_connections_of(s, pid) >= s->lim.connections_per_process)
		return -EMFILE;
	if (s->nclients == s->lim.connections)
		return -ENFILE;
	struct client *c = &s->clients[s->nclients++];
	*c = (struct client){.fd = fd, .pid = pid, .uid = uid, .active_ns = prim_now_ns()};
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	FILE *f = fopen(path, "re");
	if (f) {
		if (fgets(c->comm, sizeof(c->comm), f))
			c->comm[strcspn(c->comm, "\n")] = 0;
		fclose(f);
	}
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
	s->clients[i] = s->clients[--s->nclients];
	if (!d)
		return;
	/* The process may hold another connection to the same domain (two
	 * engines): its ledger is shared, reap after the last one. */
	for (int k = 0; k < s->nclients; k++)
		if (s->clients[k].pid == pid && s->clients[k].d == d)
			return;
	state_reap(s, d, pid);
	state_domain_close_if_unused(s, d);
}

/* ---- counters ---- */

/* A field of every connected process's ledger, summed. */
static long long ledger_sum(const struct state *s, size_t field_offset)
{
	long long sum = 0;
	for (int i = 0; i < s->nclients; i++) {
		const struct client *c = &s->clients[i];
		struct ledger lg;
		int64_t v;
		if (!c->d || !state_ledger_header(s, c->d->name, c->pid, &lg))
			continue;
		memcpy(&v, (const char *)&lg + field_offset, sizeof(v));
		sum += v;
	}
	return sum;
}

#define LEDGER_SUM(field) ledger_sum(s, offsetof(struct ledger, field))
#define DOM_SUM(field)                                                                             \
	({                                                                                         \
		long long s_ = 0;                                                                  \
		for (int i_ = 0; i_ < s->lim.domains; i_++)                                        \
			if (s->doms[i_].sp)                                                        \
				s_ += (long long)s->doms[i_].sp->dom->field;                       \
		s_;                                                                                \
	})

bool state_value(const struct state *s, int idx, long long *v)
{
	switch (idx) {
	case KNOB_pages_shared: *v = DOM_SUM(pages_shared); return true;
	case KNOB_pages_sharing: *v = DOM_SUM(pages_sharing); return true;
	case KNOB_stable_node_chains: *v = DOM_SUM(chains); return true;
	case KNOB_stable_node_dups: *v = DOM_SUM(dups); return true;
	case KNOB_pool_pages: *v = DOM_SUM(live); return true;
	case KNOB_pool_pages_reclaimed:
		*v = DOM_SUM(reclaimed) + (long long)s->reclaimed_closed;
		return true;
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
		for (int i = 0; i < s->nclients; i++) {
			const struct client *c = &s->clients[i];
			struct ledger lg;
			if (!c->d)
				continue;
			long long fs = state_ledger_header(s, c->d->name, c->pid, &lg)
					   ? (long long)lg.full_scans
					   : 0;
			if (min < 0 || fs < min)
				min = fs;
		}
		*v = min < 0 ? 0 : min;
		return true;
	}
	default:
		if (samepage_knob_at(idx)->kind == SAMEPAGE_KNOB_TUNABLE) {
			*v = (long long)s->knob[idx];
			return true;
		}
		return false; /* per-process only, or not known to the daemon */
	}
}
