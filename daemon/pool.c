// SPDX-License-Identifier: MIT
/*
 * pool.c - samepaged is the only writer of a domain's pool.
 *
 * Every client maps the pool, and a client that could write it could change
 * the memory of every other client of its domain (the pages they merged
 * are private mappings of it).  So the daemon hands each client the pool
 * and the guard file read-only, and:
 *
 *  - writes new KSM pages itself (PLACE n: the client staged their
 *    contents and pool offsets in its ledger), only into pool pages no
 *    other client refers to;
 *  - punches pool pages (the sweep) only when no ledger refers to them.
 *
 * A client's references (its ledger's refs[]) count its mappings of a pool
 * page, its merges under way and its pins for forked children; it takes a
 * merge's reference before it compares its page with the pool page.  The
 * daemon marks a page in the guard file before it reads the references,
 * and a client reads the mark after it took its reference (with full
 * fences on both sides): so either the daemon sees the reference and
 * leaves the page alone, or the client sees the mark and does not merge.
 * Nothing a client writes in the shared index (which it may) is trusted
 * for this: only the ledgers, each written by its own process.
 */
#include "pool.h"
#include "procfs.h" /* common/: the memory cgroup's room */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* The daemon's engine over the domain never punches on its own: the sweep
 * does, after the check. */
static void no_punch(struct samepage *sp, uint32_t off)
{
	(void)sp;
	(void)off;
}

int dpool_open(const char *guard_path, const char *pool_path, struct dom *d)
{
	int g = open(guard_path, O_RDWR | O_CLOEXEC | O_CREAT | O_NOFOLLOW, 0600);
	struct stat st;
	if (g < 0 || fstat(g, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (st.st_size != (off_t)GUARD_SIZE && ftruncate(g, (off_t)GUARD_SIZE) < 0)) {
		int err = -errno;
		if (g >= 0)
			close(g);
		return err ? err : -EIO;
	}
	/* Mapped as the library maps its own files (not in core dumps). */
	void *m;
	if (prim_map_own(&m, GUARD_SIZE, PROT_READ | PROT_WRITE, g))
		m = MAP_FAILED;
	/* A daemon that died in the middle of a check left marks: clear.
	 * Then the marks of every pool page there is are allocated: clients
	 * read them, and a hole of a full tmpfs is a SIGBUS at the read. */
	uint32_t nr = d->sp->dom->nr < DOM_NODES ? d->sp->dom->nr : DOM_NODES;
	if (m != MAP_FAILED && (madvise(m, GUARD_SIZE, MADV_REMOVE), nr && prim_populate(m, nr))) {
		munmap(m, GUARD_SIZE);
		m = MAP_FAILED;
	}
	int gro = open(guard_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	int pro = open(pool_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	close(g);
	if (m == MAP_FAILED || gro < 0 || pro < 0) {
		if (m != MAP_FAILED)
			munmap(m, GUARD_SIZE);
		if (gro >= 0)
			close(gro);
		if (pro >= 0)
			close(pro);
		return -EIO;
	}
	d->guard = m;
	d->guard_ro = gro;
	d->pool_ro = pro;
	d->sp->punch = no_punch;
	d->swept = 0;
	d->sweep = true;
	return 0;
}

void dpool_close(struct dom *d)
{
	if (d->guard)
		munmap((void *)d->guard, GUARD_SIZE);
	if (d->guard_ro >= 0)
		close(d->guard_ro);
	if (d->pool_ro >= 0)
		close(d->pool_ro);
	free(d->punched);
	d->guard = NULL;
	d->guard_ro = d->pool_ro = -1;
	d->punched = NULL;
}

/* ---- the references of every ledger of the domain ---- */

#define MAX_LEDGERS 1024
struct ledgers {
	int fd[MAX_LEDGERS];
	int n;
	bool overflow; /* more ledgers than we could open: refuse everything */
};

/* Opens every ledger file of domain d, but process `except`'s. */
static void ledgers_open(const struct state *s, const struct dom *d, pid_t except,
			 struct ledgers *l)
{
	DIR *dir = opendir(s->dir);
	struct dirent *e;
	l->n = 0;
	l->overflow = !dir;
	while (dir && (e = readdir(dir))) {
		char dom[72];
		pid_t pid;
		bool forked; /* a gone client's pins: refers to its pages too */
		if (!state_ledger_name_parse(e->d_name, dom, &pid, &forked) ||
		    strcmp(dom, d->name) || (pid == except && !forked))
			continue;
		int fd =
		    openat(dirfd(dir), e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
		if (fd < 0 || l->n == MAX_LEDGERS) {
			l->overflow = true;
			if (fd >= 0)
				close(fd);
			continue;
		}
		l->fd[l->n++] = fd;
	}
	if (dir)
		closedir(dir);
}

static void ledgers_close(struct ledgers *l)
{
	for (int i = 0; i < l->n; i++)
		close(l->fd[i]);
	l->n = 0;
}

/* held[k] = whether any ledger refers to pool page first + k, k < n. */
static void ledgers_refs(const struct ledgers *l, uint32_t first, uint32_t n, bool *held)
{
	static uint32_t refs[PLACE_MAX];
	memset(held, l->overflow, n * sizeof(*held));
	for (int i = 0; i < l->n; i++) {
		ssize_t got = pread(l->fd[i], refs, n * sizeof(uint32_t),
				    (off_t)(LEDGER_OFF_REFS + (size_t)first * sizeof(uint32_t)));
		for (uint32_t k = 0; got > 0 && k < (uint32_t)got / sizeof(uint32_t); k++)
			held[k] |= refs[k] != 0;
	}
}

/* Marks [first, first + n) dying, then reads who still refers to it. */
static bool mark_and_check(struct dom *d, const struct ledgers *l, uint32_t first, uint32_t n,
			   bool *held)
{
	/* Marks are allocated before they are written (clients read them):
	 * without room, the pages count as held, and are not written. */
	if (prim_populate((void *)&d->guard[first], n)) {
		memset(held, 1, n * sizeof(*held));
		return false;
	}
	for (uint32_t k = 0; k < n; k++)
		atomic_store(&d->guard[first + k], 1);
	atomic_thread_fence(memory_order_seq_cst);
	ledgers_refs(l, first, n, held);
	return true;
}

static void unmark(struct dom *d, uint32_t first, uint32_t n)
{
	for (uint32_t k = 0; k < n; k++)
		atomic_store(&d->guard[first + k], 0);
}

static bool punched(const struct dom *d, uint32_t off)
{
	return d->punched && (d->punched[off / 64] >> (off % 64)) & 1;
}

static void set_punched(struct dom *d, uint32_t off, bool on)
{
	if (!d->punched && on)
		d->punched = calloc(DOM_NODES / 64, sizeof(uint64_t));
	if (!d->punched)
		return;
	if (on)
		d->punched[off / 64] |= 1ULL << (off % 64);
	else
		d->punched[off / 64] &= ~(1ULL << (off % 64));
}

/* ---- PLACE ---- */

/* The pool is samepaged's to write, so its memory cgroup is charged for
 * every KSM page of its domains.  A page written past the cgroup's limit
 * would have the kernel's OOM killer end samepaged (and merging, and a
 * restarted daemon again): so a PLACE writes only the pages the cgroup has
 * room for, 4 MiB kept for the daemon's own needs, and counts the others
 * (pool_pages_refused), whose merges do not happen.
 *
 * The state directory's filesystem (tmpfs) is the other bound.  A page
 * that tmpfs cannot allocate is a SIGBUS in whichever process touches it
 * first: samepaged, or a client (a VM) writing its ledger or the index,
 * or reading a pool page that was not written (measured: with an 8 MiB
 * tmpfs, samepaged and its client both died of SIGBUS).  So a PLACE also
 * keeps 64 MiB or 1% of that filesystem free, whichever is more: room for
 * the ledgers, the index and the reads of pool pages not written, and for
 * the filesystem's other users; past it, new KSM pages are refused, as
 * for the cgroup.  Both rooms are read at most every 100 ms, and what was
 * written since is taken off them. */
#define ROOM_KEEP (4LL << 20)
#define STATE_KEEP (64LL << 20)

/* Why the last PLACE refused pages. */
enum { ROOM_CGROUP, ROOM_STATE_DIR };
static int room_why;

/* The bytes the state directory's filesystem may still give the pool, or
 * -1 if it cannot be told. */
static long long state_dir_room(const char *dir)
{
	struct statvfs v;
	if (statvfs(dir, &v) < 0)
		return -1;
	long long total = (long long)v.f_blocks * (long long)v.f_frsize,
		  free = (long long)v.f_bavail * (long long)v.f_frsize;
	long long keep = total / 100 > STATE_KEEP ? total / 100 : STATE_KEEP;
	return free > keep ? free - keep : 0;
}

static long long room_pages(const char *dir, unsigned want)
{
	static uint64_t read_ns;
	static long long room = -1;
	uint64_t now = prim_now_ns();
	if (!read_ns || now - read_ns >= 100000000ULL) {
		long long bytes = procfs_memcg_room("/proc/self/cgroup", "/sys/fs/cgroup");
		room = bytes < 0	   ? -1
		       : bytes > ROOM_KEEP ? (bytes - ROOM_KEEP) / (long long)PAGE_SIZE
					   : 0;
		room_why = ROOM_CGROUP;
		long long state = state_dir_room(dir);
		if (state >= 0 && (room < 0 || state / (long long)PAGE_SIZE < room)) {
			room = state / (long long)PAGE_SIZE;
			room_why = ROOM_STATE_DIR;
		}
		read_ns = now;
	}
	if (room < 0)
		return want;
	long long give = room < (long long)want ? room : (long long)want;
	room -= give;
	return give;
}

/* Says that the cgroup or the state directory stops new KSM pages: once a
 * minute at most, with how many it stopped since the last time it said
 * so. */
static void say_refused(const struct state *s, const struct dom *d, unsigned refused)
{
	static uint64_t said_ns;
	static unsigned long long since;
	uint64_t now = prim_now_ns();
	since += refused;
	if (said_ns && now - said_ns < 60000000000ULL)
		return;
	if (room_why == ROOM_STATE_DIR)
		logmsg("domain %s: %llu new KSM pages not written%s: the filesystem of the state "
		       "directory %s is nearly full (samepaged keeps 64 MiB or 1%% of it free: a "
		       "full tmpfs would kill its clients with SIGBUS), and the pool has %u pages; "
		       "they stay unmerged until it has room: make room there, or give samepaged a "
		       "larger tmpfs with --state-dir (samepaged(8), --state-dir)",
		       d->name, since, said_ns ? " in the last minute" : "", s->dir,
		       d->sp->dom->live);
	else
		logmsg("domain %s: %llu new KSM pages not written%s: samepaged's memory cgroup is "
		       "within 4 MiB of its limit, and the pool (%u pages) is charged to it; they "
		       "stay unmerged until it has room: raise MemoryMax= of samepaged.service "
		       "(samepaged(8), Memory accounting)",
		       d->name, since, said_ns ? " in the last minute" : "", d->sp->dom->live);
	said_ns = now;
	since = 0;
}

/* Writes the n pages process c staged in its ledger into the pool, each
 * only if no other process refers to its pool page.  The number placed. */
int dpool_place(const struct state *s, struct client *c, unsigned n, unsigned *placed,
		unsigned *refused_out)
{
	static uint32_t offs[PLACE_MAX];
	bool held[PLACE_MAX];
	char path[512];
	struct dom *d = c->d;
	*placed = *refused_out = 0;
	if (!d || n > PLACE_MAX)
		return -EINVAL;
	state_ledger_path(s, path, sizeof(path), d->name, c->pid);
	int lfd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (lfd < 0)
		return -errno;
	if (pread(lfd, offs, n * sizeof(uint32_t), LEDGER_OFF_PLACE) !=
	    (ssize_t)(n * sizeof(uint32_t))) {
		close(lfd);
		return -EIO;
	}
	struct ledgers l;
	ledgers_open(s, d, c->pid, &l);
	char *view = d->sp->pool.view;
	long long room = room_pages(s->dir, n);
	unsigned refused = 0;
	for (unsigned k = 0; k < n;) {
		/* A run of consecutive pool pages is checked at once. */
		unsigned j = k + 1;
		while (j < n && offs[j] == offs[j - 1] + 1)
			j++;
		if (offs[k] >= DOM_NODES || offs[k] + (j - k) > DOM_NODES) {
			k = j;
			continue;
		}
		bool marked = mark_and_check(d, &l, offs[k], j - k, held);
		for (unsigned i = k; i < j; i++) {
			if (held[i - k]) {
				if (!marked) { /* no room for the marks */
					refused++;
					room_why = ROOM_STATE_DIR;
				}
				continue;
			}
			if (room-- <= 0) {
				refused++;
				continue;
			}
			/* A page the filesystem cannot allocate fails the read
			 * (EFAULT), not the daemon (SIGBUS). */
			off_t from = (off_t)(LEDGER_OFF_STAGING + (size_t)i * PAGE_SIZE);
			if (pread(lfd, view + ((size_t)offs[i] << PAGE_SHIFT), PAGE_SIZE, from) ==
			    (ssize_t)PAGE_SIZE) {
				set_punched(d, offs[i], false);
				(*placed)++;
			} else {
				refused++;
				room_why = ROOM_STATE_DIR;
			}
		}
		if (marked)
			unmark(d, offs[k], j - k);
		k = j;
	}
	ledgers_close(&l);
	close(lfd);
	*refused_out = refused;
	if (refused) {
		atomic_fetch_add(&d->sp->dom->refused, refused);
		say_refused(s, d, refused);
	}
	return 0;
}

/* ---- the sweep ---- */

/* Punches the pool pages the index says are free and no ledger refers to,
 * when a client freed some since the last sweep (the domain's reclaimed
 * count moved) or when asked to (force). */
void dpool_sweep(const struct state *s, struct dom *d, bool force)
{
	static bool held[PLACE_MAX];
	struct samepage *sp = d->sp;
	uint64_t reclaimed = ((volatile struct domain *)sp->dom)->reclaimed;
	if (!force && !d->sweep && reclaimed == d->swept)
		return;
	d->swept = reclaimed;
	d->sweep = false;
	uint32_t nr = sp->dom->nr < DOM_NODES ? sp->dom->nr : DOM_NODES;
	struct ledgers l;
	bool opened = false;
	for (uint32_t off = 0; off < nr;) {
		const struct stable_node *nd = &sp->stable.nodes[off];
		if (nd->in_use || nd->pending || nd->pinned || punched(d, off)) {
			off++;
			continue;
		}
		uint32_t n = 1;
		while (n < PLACE_MAX && off + n < nr && !sp->stable.nodes[off + n].in_use &&
		       !sp->stable.nodes[off + n].pending && !sp->stable.nodes[off + n].pinned &&
		       !punched(d, off + n))
			n++;
		if (!opened) {
			ledgers_open(s, d, 0, &l);
			opened = true;
		}
		bool marked = mark_and_check(d, &l, off, n, held);
		for (uint32_t k = 0; k < n;) {
			uint32_t j = k;
			while (j < n && !held[j])
				j++;
			if (j > k &&
			    fallocate(sp->pool.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				      (off_t)(off + k) << PAGE_SHIFT,
				      (off_t)(j - k) << PAGE_SHIFT) == 0)
				for (uint32_t i = k; i < j; i++)
					set_punched(d, off + i, true);
			k = j + 1;
		}
		if (marked)
			unmark(d, off, n);
		off += n;
	}
	if (opened)
		ledgers_close(&l);
}
