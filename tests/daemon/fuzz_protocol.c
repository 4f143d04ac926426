// SPDX-License-Identifier: MIT
/*
 * fuzz_protocol.c - a libFuzzer target for samepaged's protocol: the bytes
 * of an input are requests of three connections to one daemon state
 * (daemon/state.c and daemon/protocol.c, as samepaged runs them, with a
 * state directory in /dev/shm).
 *
 * An input is packets separated by the byte 0xff; a packet's first byte
 * says what happens:
 *   bit 7 clear: the rest is a request of connection (byte % 3);
 *   bit 7 set:   connection ((byte & 0x7f) % 3) closes (a later request
 *                opens a new one);
 *   bit 6 set:   connection (byte % 3), once in a domain, writes what a
 *                client may: a count into its ledger, the domain's page
 *                count (scribble()).
 * Connections 0 and 1 are one process's (two engines of one process),
 * connection 2 another's: two idle children of the fuzzer, which (unlike
 * the fuzzer, which plays the daemon) map no pool, so that a closed
 * connection is a gone process.  Connection 2 is a tenant's
 * (--allow-user TENANT_UID:TENANT_DOMAINS).
 *
 * Checked after every request: the reply is "OK..." or "ERR <errno> ...",
 * its length is its text's, descriptors come only with an OK to HELLO;
 * the tenant gets no OK to SET, and no OK to HELLO or MAY or a CLIENTS
 * line for a domain outside its own.
 * Checked after every input, once its connections are closed: no domain
 * is left open (nothing was merged, so every
 * domain must have been closed with its last connection), and no
 * descriptor of a file of the state directory is open.
 *
 * Built with -DSAMEPAGE_FUZZ=ON (clang, -fsanitize=fuzzer,address,undefined)
 * as fuzz_protocol; built with fuzz_replay.c as a plain program, it replays
 * the seed corpus (tests/daemon/fuzz_corpus) in every `make test`.
 */
#include "../../daemon/protocol.h"
#include "../../daemon/state.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define CONNS 3
#define TENANT_UID 65534
#define TENANT_DOMAINS "vm,t*"

static struct state st;
static unsigned long long knob[64], knob_default[64];
static struct proto_reply reply;
static pid_t peers[2]; /* the processes at the other end of the connections */

/* Descriptors of this process open on files of the state directory (the
 * library and libFuzzer keep descriptors of their own). */
static int open_state_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	for (struct dirent *e; d && (e = readdir(d));) {
		char path[300], target[600];
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		ssize_t len = readlink(path, target, sizeof(target) - 1);
		if (len > 0) {
			target[len] = 0;
			n += !strncmp(target, st.dir, strlen(st.dir));
		}
	}
	if (d)
		closedir(d);
	return n;
}

static void end_peers(void)
{
	for (int i = 0; i < 2; i++)
		if (peers[i] > 0) {
			kill(peers[i], SIGKILL);
			waitpid(peers[i], NULL, 0);
		}
}

static void remove_state_dir(void)
{
	DIR *d = opendir(st.dir);
	for (struct dirent *e; d && (e = readdir(d));) {
		char path[600];
		snprintf(path, sizeof(path), "%s/%s", st.dir, e->d_name);
		if (e->d_name[0] != '.')
			unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(st.dir);
}

static void setup(void)
{
	static char dir[] = "/dev/shm/samepaged-fuzz-XXXXXX";
	const struct limits lim = {.connections = 8,
				   .connections_per_process = 4,
				   .domains = 4,
				   .domains_per_process = 2,
				   .idle_timeout = 10};
	if (!mkdtemp(dir))
		abort();
	snprintf(st.dir, sizeof(st.dir), "%s", dir);
	for (int i = 0; i < samepage_knob_count(); i++)
		knob_default[i] = samepage_knob_at(i)->def;
	st.knob = knob;
	st.config_given = true; /* the knobs are the fuzzer's, not a file's */
	st.allow[0] = (struct allowed){.uid = TENANT_UID, .domains = TENANT_DOMAINS};
	st.nallow = 1;
	if (state_init(&st, &lim))
		abort();
	atexit(remove_state_dir);
	for (int i = 0; i < 2; i++) {
		peers[i] = fork();
		if (peers[i] < 0)
			abort();
		if (peers[i] == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			for (;;)
				pause();
		}
	}
	atexit(end_peers);
	logmsg_quiet = true;
}

/* The index of connection k in st.clients, opened if needed. */
static int conn(int k)
{
	for (int i = 0; i < st.nclients; i++)
		if (st.clients[i].fd == k)
			return i;
	pid_t pid = peers[k == 2];
	uid_t uid = k == 2 ? TENANT_UID : getuid();
	char why[200];
	return state_client_add(&st, k, pid, uid, why, sizeof(why)) ? -1 : st.nclients - 1;
}

static void close_conn(int k)
{
	for (int i = 0; i < st.nclients; i++)
		if (st.clients[i].fd == k)
			return state_client_remove(&st, i);
}

/* What a client may write into its files: its ledger's counts, and the
 * domain's page count (payload: node, count, nr; little-endian u32s). */
static void scribble(int k, const uint8_t *p, size_t len)
{
	int i = conn(k);
	uint32_t v[3];
	if (i < 0 || !st.clients[i].d || len < 8)
		return;
	memcpy(v, p, len < sizeof(v) ? len : sizeof(v));
	char path[512];
	state_ledger_path(&st, path, sizeof(path), st.clients[i].d->name, st.clients[i].pid);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		off_t at = (off_t)(LEDGER_OFF_REFS + (v[0] % 65536) * sizeof(uint32_t));
		if (pwrite(fd, &v[1], sizeof(v[1]), at) != sizeof(v[1]))
			abort();
		close(fd);
	}
	if (len >= sizeof(v))
		st.clients[i].d->sp->dom->nr = v[2];
}

/* Whether a domain is the tenant's (fnmatch's patterns, written out). */
static bool tenants(const char *domain, size_t n)
{
	return (n == 2 && !memcmp(domain, "vm", 2)) || (n >= 1 && domain[0] == 't');
}

/* The tenant's request got what it may not have. */
static bool tenant_escaped(const char *req, size_t len, bool ok)
{
	const char *t = reply.text;
	if (!ok)
		return false;
	if (len >= 4 && !memcmp(req, "SET ", 4))
		return true;
	if ((len >= 6 && !memcmp(req, "HELLO ", 6)) || (len >= 4 && !memcmp(req, "MAY ", 4))) {
		const char *d = req + (req[0] == 'H' ? 6 : 4),
			   *e = memchr(d, ' ', len - (size_t)(d - req));
		return !tenants(d, e ? (size_t)(e - d) : len - (size_t)(d - req));
	}
	for (const char *at = strstr(t, " domain="); at; at = strstr(at + 1, " domain=")) {
		const char *d = at + 8;
		if (!tenants(d, strcspn(d, " ")))
			return true;
	}
	return false;
}

static void check_reply(int k, const char *req, size_t len)
{
	const struct proto_reply *r = &reply;
	bool ok = !strncmp(r->text, "OK", 2), err = !strncmp(r->text, "ERR ", 4);
	if (k == 2 && tenant_escaped(req, len, ok)) {
		fprintf(stderr, "the tenant got %.200s to %.*s\n", r->text, (int)len, req);
		abort();
	}
	if (r->len != strlen(r->text) || r->len >= sizeof(r->text) || (!ok && !err) ||
	    (r->nfds && (!ok || len < 6 || memcmp(req, "HELLO ", 6) || r->nfds != HELLO_FDS)) ||
	    (r->close_fd >= 0 && r->close_fd != r->fds[2])) {
		fprintf(stderr, "bad reply to %.*s: %.200s (len %zu, nfds %d)\n", (int)len, req,
			r->text, r->len, r->nfds);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!st.doms)
		setup();
	memcpy(knob, knob_default, sizeof(knob));
	const uint8_t *end = data + size;
	while (data < end) {
		const uint8_t *sep = memchr(data, 0xff, (size_t)(end - data));
		const uint8_t *stop = sep ? sep : end;
		if (stop > data) {
			int k = (data[0] & 0x7f) % CONNS;
			if (data[0] & 0x80) {
				close_conn(k);
			} else if (data[0] & 0x40) {
				scribble(k, data + 1, (size_t)(stop - data - 1));
			} else {
				int i = conn(k);
				if (i >= 0) {
					const char *req = (const char *)data + 1;
					size_t len = (size_t)(stop - data - 1);
					proto_answer(&st, &st.clients[i], req, len, &reply);
					check_reply(k, req, len);
					proto_reply_done(&reply);
				}
			}
		}
		data = sep ? sep + 1 : end;
	}
	for (int k = 0; k < CONNS; k++)
		close_conn(k);
	for (int i = 0; i < st.lim.domains; i++)
		if (st.doms[i].sp) {
			fprintf(stderr, "domain %s left open with no connection\n",
				st.doms[i].name);
			abort();
		}
	int fds = open_state_fds();
	if (fds) {
		fprintf(stderr, "%d descriptors of %s left open\n", fds, st.dir);
		abort();
	}
	return 0;
}
