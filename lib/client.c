// SPDX-License-Identifier: MIT
/*
 * client.c - an engine connected to samepaged (samepage_connect).
 *
 * The split: the daemon owns a domain's files (the stable
 * index and the pool) and each client's ledger; every client scans its own
 * memory with its own scanner thread, looks pages up in the domain's
 * shared index and does its own remaps, so no process ever reads another's
 * memory.  What is shared is only the pool, which every client may read.
 *
 * Across processes the unstable tree cannot compare two pages (neither
 * process can read the other's), so the domain keeps a small lossy table of
 * "hints": the 64-bit hash of a page waiting in some process's unstable
 * tree, with that process's pid.  A process that finds another's hint for
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
 * every second; a daemon that comes back with the same files resumes.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

static struct ledger *ledger_map(int fd)
{
	void *m;
	return prim_mmap(&m, NULL, LEDGER_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
			 fd, 0)
		   ? NULL
		   : m;
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
}

/* Called by the scanner between batches: publishes the counters, notices
 * a daemon that went away (pause merging) and one that came back with the
 * same files (resume). */
static void client_poll(struct samepage *sp)
{
	ledger_publish(sp);
	if (!sp->detached) {
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
	int conn, fds[3];
	if (control_hello(sp->socket_path, sp->domain_name, &conn, fds))
		return;
	dev_t dev;
	ino_t ino;
	bool same =
	    prim_file_id(fds[1], &dev, &ino) == 0 && dev == sp->pool.dev && ino == sp->pool.ino;
	for (int i = 0; i < 3; i++)
		prim_close(fds[i]);
	if (!same) {
		/* A daemon that lost its files made a new domain: ours stays
		 * valid but cannot merge with the new one.  Stay paused. */
		prim_close(conn);
		return;
	}
	sp->conn_fd = conn;
	sp->detached = false;
}

/* samepage_close: the connection stays open until the process exits (see
 * the top of this file); the ledger mapping goes with the engine. */
static void client_detach(struct samepage *sp)
{
	if (sp->ledger) {
		ledger_publish(sp);
		sp->stable.refs = NULL;
		prim_munmap(sp->ledger, LEDGER_SIZE);
		sp->ledger = NULL;
	}
}

int samepage_connect(samepage_t **out, const char *domain)
{
	char path[108];
	int conn, fds[3], err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!domain_name_ok(domain))
		return -EINVAL;
	err = samepage_socket_path(path, sizeof(path));
	if (err)
		return err;
	err = control_hello(path, domain, &conn, fds);
	if (err)
		return err;
	struct ledger *lg = ledger_map(fds[2]);
	prim_close(fds[2]);
	if (!lg) {
		prim_close(fds[0]);
		prim_close(fds[1]);
		prim_close(conn);
		return -ENOMEM;
	}
	err = engine_open(out, fds[0], fds[1]);
	if (err) {
		prim_munmap(lg, LEDGER_SIZE);
		prim_close(conn);
		return err;
	}
	struct samepage *sp = *out;
	sp->ledger = lg;
	sp->stable.refs = (uint32_t *)((char *)lg + LEDGER_OFF_REFS);
	sp->conn_fd = conn;
	sp->poll = client_poll;
	sp->detach = client_detach;
	snprintf(sp->domain_name, sizeof(sp->domain_name), "%s", domain);
	snprintf(sp->socket_path, sizeof(sp->socket_path), "%s", path);
	err = engine_start(sp);
	if (err) {
		engine_free(sp);
		prim_close(conn);
		*out = NULL;
	}
	return err;
}
