// SPDX-License-Identifier: MIT
/*
 * client.c - an engine connected to samepaged (samepage_connect).
 *
 * The split: the daemon owns a domain's files (the stable
 * index and the pool) and each client's ledger; every client scans its own
 * memory with its own scanner thread, looks pages up in the domain's
 * shared index and does its own remaps, so no process ever reads another's
 * memory.  What is shared is only the pool, which every client may read
 * and none may write: the daemon hands it over read-only, and writes the
 * new KSM pages itself (PLACE: the client stages their contents in its
 * ledger), into pool pages no other client refers to.  Pool pages are
 * punched by the daemon only, once no ledger refers to them.  Each check
 * is ordered with the clients' by the guard file: the daemon marks a page
 * before it checks the references; a client takes its reference before it
 * checks the mark (index.c).  So one compromised client cannot change the
 * memory of another: it can only fail its own merges, or keep pool pages
 * alive.
 *
 * Across processes the unstable tree cannot compare two pages (neither
 * process can read the other's), so the domain keeps a small lossy table of
 * "hints": the hash of a page waiting in some process's unstable tree,
 * with that process's pid, in buckets of 8 where the oldest hint makes way
 * (other_process_has() in scan.c).  A process that finds another's hint for
 * its own page makes the KSM page from its copy (a "solo" node, one
 * mapping: no memory is lost by it), and the other process, at its next
 * visit, finds that KSM page in the stable index and merges onto it after
 * a full memcmp.  A false hint costs one pool page, never a wrong merge.
 *
 * The connection stays open until the process exits (even after
 * samepage_close), so that the daemon keeps the KSM pages the process
 * still maps; when it closes, the daemon drops the process's references
 * counted in its ledger.  If the daemon goes away, merging pauses (the
 * files stay mapped, merged memory stays valid) and the scanner reconnects
 * every second; a daemon that comes back with the same files resumes.  One
 * that has other files (its state directory was removed, or it runs with
 * another) is not asked again until its socket changes, or for 10 minutes
 * (client_poll).
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

static void *map_file(int fd, size_t len, int prot)
{
	void *m;
	return prim_map_own(&m, len, prot, fd) ? NULL : m;
}

/* A new KSM page: staged in the ledger for the daemon to write. */
static void client_place(struct samepage *sp, uint32_t off, const void *page)
{
	char *lg = (char *)sp->ledger;
	if (sp->nplace == PLACE_MAX)
		sp->place_flush(sp, false); /* in a batch: the lock stays */
	uint32_t k = sp->nplace++;
	memcpy(lg + LEDGER_OFF_STAGING + (size_t)k * PAGE_SIZE, page, PAGE_SIZE);
	((uint32_t *)(lg + LEDGER_OFF_PLACE))[k] = off;
	if (sp->nplace > sp->staging_touched)
		sp->staging_touched = sp->nplace;
	sp->staged_scan = sp->c.full_scans;
}

/* Room for the next staged page (ledger_ready() in pool.c says why):
 * its staging page allocated, if it was not. */
static bool client_place_room(struct samepage *sp)
{
	uint32_t k = sp->nplace == PLACE_MAX ? 0 : sp->nplace;
	return k < sp->staging_touched ||
	       !prim_populate((char *)sp->ledger + LEDGER_OFF_STAGING + (size_t)k * PAGE_SIZE,
			      PAGE_SIZE);
}

/* The staging area is up to 2 MiB of the ledger (shmem), written while new
 * KSM pages are made and then idle: once a whole full scan has staged
 * nothing, it goes back to the kernel (MADV_REMOVE punches the ledger
 * file), as a converged domain needs no staging. */
static void staging_release(struct samepage *sp)
{
	if (!sp->staging_touched || sp->nplace || sp->c.full_scans < sp->staged_scan + 2)
		return;
	char *lg = (char *)sp->ledger;
	if (prim_madvise(lg + LEDGER_OFF_STAGING, (size_t)sp->staging_touched * PAGE_SIZE,
			 MADV_REMOVE) == 0)
		sp->staging_touched = 0;
}

/* The contents of pool page off if it was placed in this batch and the
 * daemon has not written it yet (NULL if not): the stable index compares
 * with them, so that a content made a KSM page in this batch is found by
 * the next page that holds it. */
static const void *client_staged(struct samepage *sp, uint32_t off)
{
	const char *lg = (const char *)sp->ledger;
	const uint32_t *place = (const uint32_t *)(lg + LEDGER_OFF_PLACE);
	for (uint32_t k = sp->nplace; k-- > 0;)
		if (place[k] == off)
			return lg + LEDGER_OFF_STAGING + (size_t)k * PAGE_SIZE;
	return NULL;
}

/* Before a batch merges: the daemon writes the staged pages into the pool
 * (those it refuses, because another client refers to the page, simply
 * fail their compare and do not merge).  The domain lock stays held: no
 * other process may find a node whose page is not written yet.  With
 * let_go, the address-space lock does not once the answer is late
 * (CONTROL_QUICK_MS; it takes well under a millisecond): a samepaged
 * stopped (SIGSTOP, a debugger) or stuck answers nothing until its
 * watchdog restarts it, and meanwhile the application's mmap, munmap and
 * mprotect go on (RELIABILITY.md 81); returns whether it was let go. */
static void let_as_go(void *arg)
{
	struct samepage *sp = arg;
	pthread_mutex_lock(&sp->forget_lock);
	sp->forget_mark = sp->nforget;
	pthread_mutex_unlock(&sp->forget_lock);
	as_unlock();
	sp->place_let_go = true;
}

static bool client_place_flush(struct samepage *sp, bool let_go)
{
	char req[32], reply[64];
	unsigned placed = 0, refused = 0;
	bool answered = false;
	sp->place_let_go = false;
	if (!sp->detached && sp->conn_fd >= 0) {
		snprintf(req, sizeof(req), "PLACE %u", sp->nplace);
		/* "OK placed refused": refused when samepaged's memory cgroup
		 * or state directory had no room; make no more until the next
		 * full scan. */
		answered = control_request(sp->conn_fd, req, reply, sizeof(reply),
					   let_go ? let_as_go : NULL, sp) == 0 &&
			   sscanf(reply, "OK %u %u", &placed, &refused) == 2;
		if (answered && refused)
			sp->pool_full_scan = sp->c.full_scans + 1;
	}
	/* Pages it did not write are holes of the pool: this batch's merges
	 * onto them must not read them (a hole of a full tmpfs is a SIGBUS
	 * at the read).  The ones written are in the page cache (mincore). */
	const uint32_t *place = (const uint32_t *)((char *)sp->ledger + LEDGER_OFF_PLACE);
	for (uint32_t k = 0; k < sp->nplace && (!answered || placed < sp->nplace); k++)
		if (place[k] < sp->dom->nr && sp->nunplaced < PLACE_MAX &&
		    !prim_resident(pool_page(&sp->pool, place[k]))) {
			sp->unplaced[sp->nunplaced++] = place[k];
			stable_hide(sp, place[k]);
		}
	sp->nplace = 0;
	if (sp->place_let_go)
		index_as_retake(sp);
	return sp->place_let_go;
}

/* This process's counters, for the daemon (ksmctl --user top). */
static void ledger_publish(struct samepage *sp)
{
	struct ledger *lg = sp->ledger;
	struct ksm_counts c;
	long long profit = 0;
	if (!lg)
		return;
	engine_counts(sp, &c);
	counter_value(&c, KNOB_ksm_process_profit, &profit);
	atomic_store(&lg->rmap_items, (int64_t)c.rmap_items);
	atomic_store(&lg->merging_pages, (int64_t)c.merging_pages);
	atomic_store(&lg->zero_pages, (int64_t)c.zero_pages);
	atomic_store(&lg->unshared, (int64_t)c.unshared);
	atomic_store(&lg->full_scans, (int64_t)c.full_scans);
	atomic_store(&lg->tracked_pages, (int64_t)c.pages_tracked);
	atomic_store(&lg->metadata_bytes, (int64_t)c.metadata_bytes);
	atomic_store(&lg->pages_scanned, (int64_t)c.pages_scanned);
	atomic_store(&lg->pages_skipped, (int64_t)c.pages_skipped);
	atomic_store(&lg->process_profit, (int64_t)profit);
	atomic_store(&lg->map_count, (int64_t)c.map_count);
	atomic_store(&lg->max_map_count, (int64_t)c.max_map_count);
	atomic_store(&lg->map_count_needed, (int64_t)c.map_count_needed);
	atomic_store(&lg->skipped_map_budget, (int64_t)c.skipped_map_budget);
	for (int k = 0; k < KEPT_COUNT; k++)
		atomic_store(&lg->kept[k], (int64_t)c.kept[k]);
}

/* Called by the scanner between batches: publishes the counters, notices
 * a daemon that went away (pause merging) and one that came back with the
 * same files (resume). */
static void client_poll(struct samepage *sp)
{
	ledger_publish(sp);
	staging_release(sp);
	if (!sp->detached && sp->conn_fd >= 0) {
		if (prim_hung_up(sp->conn_fd)) {
			prim_close(sp->conn_fd);
			sp->conn_fd = -1;
			sp->detached = true;
			sp->reconnect_ns = prim_now_ns();
		}
		return;
	}
	uint64_t now = prim_now_ns();
	if (now - sp->reconnect_ns < 1000000000ULL)
		return;
	sp->reconnect_ns = now;
	dev_t sdev = 0, dev;
	ino_t sino = 0, ino;
	prim_path_id(sp->socket_path, &sdev, &sino);
	if (sp->stale && sdev == sp->stale_dev && sino == sp->stale_ino &&
	    now - sp->stale_ns < 600000000000ULL)
		return; /* the daemon that has other files: see below */
	int conn, fds[HELLO_FDS];
	if (control_hello(sp->socket_path, sp->domain_name, RECONNECT_TIMEOUT_MS, &conn, fds))
		return;
	bool same =
	    prim_file_id(fds[1], &dev, &ino) == 0 && dev == sp->pool.dev && ino == sp->pool.ino;
	/* And the ledger must be the one this process maps and writes: the
	 * daemon reads the place list, the staging area and the references
	 * from the file it handed back.  Another (a ledger removed while
	 * samepaged was away, so that it made a new one; one it set aside
	 * or reaped) counts none of this process's references, and the
	 * next PLACE would write that file's zeros over pool page 0, which
	 * this process may map (RELIABILITY.md 82). */
	bool own_ledger =
	    prim_file_id(fds[2], &dev, &ino) == 0 && dev == sp->ledger_dev && ino == sp->ledger_ino;
	for (int i = 0; i < HELLO_FDS; i++)
		prim_close(fds[i]);
	if (!same || !own_ledger) {
		/* A daemon that lost its files (its state directory was
		 * removed, or it runs with another) made a new domain: ours
		 * stays valid but cannot merge with the new one.  Stay paused,
		 * and do not ask this daemon again: every HELLO would make it
		 * create the domain, reap this process as gone and close the
		 * domain, once a second for as long as the process runs.  A
		 * daemon started again binds a new socket: that one is asked;
		 * the same socket (systemd's, under socket activation) is
		 * asked again after 10 minutes.  The same for another ledger
		 * in the same domain. */
		prim_close(conn);
		if (!sp->stale)
			fprintf(
			    stderr,
			    "libsamepage: samepaged at %s %s domain %s %s: merged memory stays "
			    "valid, merging stays paused%s\n",
			    sp->socket_path,
			    same ? "handed back another ledger for" : "has other files for",
			    sp->domain_name,
			    same ? "than this process's (it was removed or set aside while "
				   "samepaged was away)"
				 : "(its state directory was removed, or it runs with another one)",
			    same ? "" : " until samepaged runs with the files it had");
		sp->stale = true;
		sp->stale_ns = now;
		sp->stale_dev = sdev;
		sp->stale_ino = sino;
		return;
	}
	sp->stale = false;
	sp->conn_fd = conn;
	sp->detached = false;
}

/* samepage_close: the connection stays open until the process exits (see
 * the top of this file); the ledger mapping goes with the engine. */
static void client_detach(struct samepage *sp)
{
	if (sp->ledger) {
		ledger_publish(sp);
		sp->stable.refs = sp->stable.held = NULL;
		if (sp->fork) {
			prim_munmap(sp->ledger, LEDGER_SIZE);
		} else { /* its fork area stays: the stale pools count forks there */
			prim_munmap(sp->ledger, LEDGER_OFF_FORK);
			prim_munmap((char *)sp->ledger + LEDGER_OFF_STAGING,
				    LEDGER_SIZE - LEDGER_OFF_STAGING);
		}
		sp->fork = NULL; /* it was the ledger's */
		sp->ledger = NULL;
	}
	if (sp->stable.guard) {
		prim_munmap((void *)sp->stable.guard, GUARD_SIZE);
		sp->stable.guard = NULL;
	}
}

int samepage_connect(samepage_t **out, const char *domain)
{
	char path[108];
	int conn, fds[HELLO_FDS], err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!domain_name_ok(domain))
		return -EINVAL;
	err = samepage_socket_path(path, sizeof(path));
	if (err)
		return err;
	err = control_hello(path, domain, CONTROL_TIMEOUT_MS, &conn, fds);
	/* The daemon died during HELLO, or answered nothing in time (as
	 * samepage_write). */
	if (err == -ECONNRESET || err == -EPIPE || err == -ETIMEDOUT)
		return -ENOTCONN;
	if (err)
		return err;
	struct ledger *lg = map_file(fds[2], LEDGER_SIZE, PROT_READ | PROT_WRITE);
	const _Atomic uint8_t *guard = map_file(fds[3], GUARD_SIZE, PROT_READ);
	dev_t ledger_dev = 0;
	ino_t ledger_ino = 0;
	prim_file_id(fds[2], &ledger_dev, &ledger_ino);
	prim_close(fds[2]);
	prim_close(fds[3]);
	/* The ledger's pages this process writes from the start (its header,
	 * the place list, the fork area) are allocated now: without room on
	 * samepaged's tmpfs, a write there would be a SIGBUS (ledger_ready()). */
	err = !lg || !guard ? -ENOMEM : prim_populate(lg, LEDGER_OFF_STAGING) ? -ENOSPC : 0;
	if (err) {
		if (lg)
			prim_munmap(lg, LEDGER_SIZE);
		if (guard)
			prim_munmap((void *)guard, GUARD_SIZE);
		prim_close(fds[0]);
		prim_close(fds[1]);
		prim_close(conn);
		return err;
	}
	err = engine_open(out, fds[0], fds[1], DOM_NODES);
	if (!err && ((*out)->dom->magic != DOM_MAGIC || (*out)->dom->layout != SHARED_LAYOUT ||
		     lg->magic != LEDGER_MAGIC || lg->layout != SHARED_LAYOUT)) {
		/* Files of another samepage version (answer_hello refuses the
		 * library's; this is for a samepaged that does not say). */
		engine_free(*out);
		*out = NULL;
		err = -EPROTONOSUPPORT;
	}
	if (!err && pool_capacity(*out) < DOM_NODES) {
		/* The other processes' KSM pages may be anywhere in the pool:
		 * a view of part of it cannot merge with them. */
		engine_free(*out);
		*out = NULL;
		err = -ENOMEM;
	}
	if (err) {
		prim_munmap(lg, LEDGER_SIZE);
		prim_munmap((void *)guard, GUARD_SIZE);
		prim_close(conn);
		return err;
	}
	struct samepage *sp = *out;
	sp->ledger = lg;
	sp->ledger_dev = ledger_dev;
	sp->ledger_ino = ledger_ino;
	sp->stable.refs = (_Atomic uint32_t *)((char *)lg + LEDGER_OFF_REFS);
	sp->stable.held = (_Atomic uint32_t *)((char *)lg + LEDGER_OFF_HELD);
	sp->stable.guard = guard;
	/* The daemon sees this process's forked children in its ledger. */
	prim_munmap(sp->fork, PAGE_SIZE);
	sp->fork = (struct fork_shared *)((char *)lg + LEDGER_OFF_FORK);
	sp->conn_fd = conn;
	sp->poll = client_poll;
	sp->detach = client_detach;
	sp->place = client_place;
	sp->place_room = client_place_room;
	sp->place_flush = client_place_flush;
	sp->staged = client_staged;
	snprintf(sp->domain_name, sizeof(sp->domain_name), "%s", domain);
	snprintf(sp->socket_path, sizeof(sp->socket_path), "%s", path);
	err = engine_start(sp);
	if (err) {
		client_detach(sp);
		engine_free(sp);
		prim_close(conn);
		*out = NULL;
	}
	return err;
}
