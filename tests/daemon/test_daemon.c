// SPDX-License-Identifier: MIT
/*
 * test_daemon.c - samepaged end to end, with real processes.
 *
 *  - four "VM" processes holding the same image in domain "vm" cost little
 *    more than one (Pss_Anon + Pss_Shmem summed over them, from their
 *    smaps_rollup); a fifth with the same image in domain "other" shares
 *    nothing with them;
 *  - a client killed with SIGKILL leaves no pool page that nobody maps:
 *    when every client of the domain is gone, the domain is closed and its
 *    files removed (which the daemon does only once its pool is empty);
 *  - a daemon killed with SIGKILL leaves every client's memory valid and
 *    writable; knob writes say ENOTCONN; a restarted daemon takes the
 *    domain back, the clients reconnect and merge new pages again;
 *  - a daemon restarted with other files (its state directory removed, or
 *    another one) is asked once by a paused client, not every second for
 *    as long as it runs, and does not scan meanwhile; a daemon started
 *    again with the files it had is asked, and the client resumes;
 *  - a client that closes or shuts down its connection and runs on keeps
 *    its pages, until it exits;
 *  - another user may not connect;
 *  - the knobs outlive the domains (closed with their last process);
 *  - samepaged's last log line says what it leaves behind when it stops.
 *
 * Usage: test_daemon PATH-TO-SAMEPAGED
 */
#include "daemon_util.h"

#define IMAGE_MIB 64
#define NPAGES (IMAGE_MIB * 256)
#define PRIVATE_PAGES (NPAGES / 10)

static struct daemon D;

/* ---- a client process, driven through a pipe ---- */

struct vm {
	pid_t pid;
	int cmd, res; /* our ends: commands out, answers in */
};

static void fill_image(char *p, size_t npages, int guest)
{
	for (size_t i = 0; i < npages; i++) {
		uint64_t *w = (uint64_t *)(p + i * PG);
		bool priv = i < PRIVATE_PAGES;
		for (size_t k = 0; k < PG / 8; k++)
			w[k] = (i * 0x9e3779b97f4a7c15ULL) ^ k ^
			       (priv ? (uint64_t)(guest + 1) << 48 : 0);
	}
}

static bool image_ok(const char *p, size_t npages, int guest)
{
	for (size_t i = 0; i < npages; i += 13) {
		const uint64_t *w = (const uint64_t *)(p + i * PG);
		bool priv = i < PRIVATE_PAGES;
		if (w[7] !=
		    ((i * 0x9e3779b97f4a7c15ULL) ^ 7 ^ (priv ? (uint64_t)(guest + 1) << 48 : 0)))
			return false;
	}
	return true;
}

/* This process's share of all the memory it maps (Pss): merged pages map
 * the pool privately, which smaps counts as file pages, so Pss_Anon +
 * Pss_Shmem would miss them. */
static long long footprint_kb(void)
{
	return proc_kb("/proc/self/smaps_rollup", "Pss");
}

/* This process's connection to the daemon (its one SOCK_SEQPACKET
 * socket), or -1. */
static int daemon_connection(void)
{
	for (int fd = 3; fd < 1024; fd++) {
		int type;
		socklen_t len = sizeof(type);
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_SEQPACKET)
			return fd;
	}
	return -1;
}

/* Commands: 'm' measure footprint, 'v' verify, 'w' write a page and check,
 * 'k' try a knob write (answers the errno), 'n' a new shared region,
 * 's' ksm_merging_pages, 'f' full_scans, 'c' close the connection to the daemon (as a
 * daemon closing every descriptor does), 'h' shut its writing side down,
 * 'q' quit. */
static void client_main(const char *domain, int guest, int cmd, int res)
{
	samepage_t *sp;
	int err = samepage_connect(&sp, domain);
	if (err) {
		fprintf(stderr, "client: samepage_connect: %s\n", samepage_strerror(err));
		_exit(3);
	}
	char *p = map_pages(NPAGES), *extra = NULL;
	fill_image(p, NPAGES, guest);
	REQUIRE(samepage_madvise(sp, p, NPAGES * PG, SAMEPAGE_MERGEABLE) == 0);
	long long ready = 1;
	if (write(res, &ready, sizeof(ready)) != sizeof(ready)) /* registered */
		_exit(4);
	char c;
	while (read(cmd, &c, 1) == 1) {
		long long v = 0;
		switch (c) {
		case 'm': v = footprint_kb(); break;
		case 'v':
			v = image_ok(p, NPAGES, guest);
			for (size_t i = 0; extra && i < 1024 * PG; i += PG / 2)
				v = v && extra[i] == 'e';
			break;
		case 'c': v = close(daemon_connection()) == 0; break;
		case 'h': v = shutdown(daemon_connection(), SHUT_WR) == 0; break;
		case 'w': { /* a shared page: copy-on-write, then back */
			volatile char *b = p + (PRIVATE_PAGES + 1) * PG + 56;
			char old = *b;
			*b = (char)(old ^ 0x5a);
			v = *b == (char)(old ^ 0x5a);
			*b = old;
			v = v && image_ok(p, NPAGES, guest);
			break;
		}
		case 'k': v = -samepage_write(sp, "sleep_millisecs", "0"); break;
		case 'n':
			extra = map_pages(1024);
			memset(extra, 'e', 1024 * PG);
			v = samepage_madvise(sp, extra, 1024 * PG, SAMEPAGE_MERGEABLE);
			break;
		case 's': samepage_read_number(sp, "ksm_merging_pages", &v); break;
		case 'f': samepage_read_number(sp, "full_scans", &v); break;
		case 'q': _exit(0);
		}
		if (write(res, &v, sizeof(v)) != sizeof(v))
			_exit(4);
	}
	_exit(0);
}

static struct vm spawn(const char *domain, int guest)
{
	int a[2], b[2];
	REQUIRE(pipe(a) == 0 && pipe(b) == 0);
	struct vm v = {.pid = fork()};
	REQUIRE(v.pid >= 0);
	if (v.pid == 0) {
		close(a[1]);
		close(b[0]);
		client_main(domain, guest, a[0], b[1]);
	}
	close(a[0]);
	close(b[1]);
	v.cmd = a[1];
	v.res = b[0];
	long long ready = 0;
	REQUIRE(read(v.res, &ready, sizeof(ready)) == sizeof(ready) && ready == 1);
	return v;
}

static long long ask(struct vm *v, char c)
{
	long long r = -1;
	REQUIRE(write(v->cmd, &c, 1) == 1);
	REQUIRE(read(v->res, &r, sizeof(r)) == sizeof(r));
	return r;
}

static void end(struct vm *v, int sig)
{
	if (sig)
		kill(v->pid, sig);
	else
		REQUIRE(write(v->cmd, "q", 1) == 1);
	int st;
	waitpid(v->pid, &st, 0);
	close(v->cmd);
	close(v->res);
}

/* Waits until the daemon's pages_sharing stays put over two full scans of
 * every client (the convergence signal), with a hang guard. */
static void converge(void)
{
	long long last = -1, stable = 0, scans = daemon_value(&D, "full_scans");
	for (int i = 0; i < 60000 && stable < 2; i++) {
		usleep(2000);
		long long s = daemon_value(&D, "full_scans");
		if (s == scans)
			continue;
		scans = s;
		long long sh = daemon_value(&D, "pages_sharing");
		stable = sh == last && sh > 0 && s >= 2 ? stable + 1 : 0;
		last = sh;
	}
	REQUIRE(stable >= 2);
}

static long long pool_blocks(const char *domain)
{
	char path[512];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s.pool", D.state, domain);
	return stat(path, &st) == 0 ? (long long)st.st_blocks : -1;
}

/* Waits (20 s at most: the sweep of gone processes' ledgers runs every 5 s)
 * until the domain's files are gone: with its last process, a domain is
 * closed and its files removed, once its pool holds no page.  True if they
 * went. */
static bool domain_files_gone(const char *domain)
{
	char index[512], pool[512];
	struct stat st;
	snprintf(index, sizeof(index), "%s/%s.index", D.state, domain);
	snprintf(pool, sizeof(pool), "%s/%s.pool", D.state, domain);
	for (int i = 0; i < 10000; i++) {
		if (stat(index, &st) < 0 && stat(pool, &st) < 0)
			return true;
		usleep(2000);
	}
	return false;
}

static void test_domains_and_kill(void)
{
	struct vm vm[4], other;
	for (int g = 0; g < 4; g++)
		vm[g] = spawn("vm", g);
	other = spawn("other", 9);
	long long before = 0;
	for (int g = 0; g < 4; g++)
		before += ask(&vm[g], 'm');
	long long other_before = ask(&other, 'm');
	converge();
	long long after = 0;
	for (int g = 0; g < 4; g++) {
		after += ask(&vm[g], 'm');
		CHECK_EQ_INT(ask(&vm[g], 'v'), 1);
	}
	long long image_kb = IMAGE_MIB * 1024LL;
	printf("4 processes x %d MiB image (10%% private): %lld kB before, %lld kB after "
	       "merging (%.2f images); domain pages_shared %lld pages_sharing %lld\n",
	       IMAGE_MIB, before, after, (double)after / (double)image_kb,
	       daemon_value(&D, "pages_shared"), daemon_value(&D, "pages_sharing"));
	/* One image, three more private tenths, and metadata: under 1.5 images
	 * (the sanitizers' shadow memory adds to every process's Pss). */
#ifdef SAMEPAGE_SANITIZE
	CHECK_CMP(after, <, image_kb * 2, long long, "%lld"); /* shadow memory varies */
#else
	CHECK_CMP(after, <, image_kb * 3 / 2, long long, "%lld");
#endif
	CHECK(after > image_kb * 9 / 10);
	/* The other domain has the same image and shares nothing. */
	CHECK_EQ_INT(ask(&other, 's'), 0);
	CHECK_CMP(ask(&other, 'm'), >=, other_before * 95 / 100, long long, "%lld");
	CHECK_EQ_INT(ask(&other, 'v'), 1);

	/* Writes to merged pages still work, in every process. */
	for (int g = 0; g < 4; g++)
		CHECK_EQ_INT(ask(&vm[g], 'w'), 1);

	/* SIGKILL one: the others keep their memory; then all: nothing left. */
	end(&vm[0], SIGKILL);
	usleep(200000);
	for (int g = 1; g < 4; g++)
		CHECK_EQ_INT(ask(&vm[g], 'v'), 1);
	CHECK(pool_blocks("vm") > 0);
	for (int g = 1; g < 4; g++)
		end(&vm[g], SIGKILL);
	CHECK(domain_files_gone("vm"));
	CHECK_EQ_INT(daemon_value(&D, "pool_pages"), 0); /* "other" never made one */
	end(&other, 0);
}

static void test_daemon_restart(void)
{
	struct vm vm[2] = {spawn("vm", 0), spawn("vm", 1)};
	converge();
	long long merged = ask(&vm[0], 's');
	CHECK(merged > 0);
	daemon_stop(&D, SIGKILL);
	for (int g = 0; g < 2; g++) {
		CHECK_EQ_INT(ask(&vm[g], 'v'), 1);
		CHECK_EQ_INT(ask(&vm[g], 'w'), 1);
		CHECK_EQ_INT(ask(&vm[g], 'k'), ENOTCONN); /* knobs need the daemon */
	}
	daemon_start(&D, NULL);
	/* The clients reconnect within a few seconds. */
	long long k = -1;
	for (int i = 0; i < 100 && k != 0; i++) {
		usleep(100000);
		k = ask(&vm[0], 'k');
	}
	CHECK_EQ_INT(k, 0);
	/* New duplicate pages merge again, across the two processes. */
	CHECK_EQ_INT(ask(&vm[0], 'n'), 0);
	CHECK_EQ_INT(ask(&vm[1], 'n'), 0);
	long long m = 0;
	for (int i = 0; i < 3000 && m < merged + 1024; i++) {
		usleep(10000);
		m = ask(&vm[1], 's');
	}
	CHECK_GE_U64(m, merged + 1024);
	for (int g = 0; g < 2; g++) {
		CHECK_EQ_INT(ask(&vm[g], 'v'), 1);
		end(&vm[g], 0);
	}
	CHECK(domain_files_gone("vm"));
}

/* Regression: a daemon restarted without its files (its state directory
 * removed, or another --state-dir) made the domain anew for each HELLO of
 * a paused client, reaped the client as "gone" (it runs) and closed the
 * domain, every second for as long as the client ran.  The client asks
 * that daemon once; it keeps its memory; a daemon started again with the
 * files it had is asked, and the client resumes. */
static void test_daemon_restart_with_other_files(void)
{
	char kept[400];
	snprintf(kept, sizeof(kept), "%s.kept", D.state);
	struct vm vm = spawn("moved", 0);
	CHECK_EQ_INT(ask(&vm, 'n'), 0); /* 1024 pages of one content */
	long long merged = 0;
	for (int i = 0; i < 3000 && merged < 1000; i++) {
		usleep(10000);
		merged = ask(&vm, 's');
	}
	CHECK_CMP(merged, >=, 1000, long long, "%lld");
	CHECK_EQ_INT(daemon_stop(&D, SIGTERM), 0);
	/* The log says what the stopped daemon leaves. */
	CHECK(daemon_logged(&D, "stopping; domains open: 1, processes connected: 1;"));
	CHECK(daemon_logged(&D, "freed only when samepaged runs again with this directory"));
	REQUIRE(rename(D.state, kept) == 0);
	int before = daemon_log_count(&D, "domain moved: created");
	daemon_start(&D, NULL);
	/* Its first try comes within a second or two (hang guard: 20 s). */
	for (int i = 0; i < 2000 && daemon_log_count(&D, "domain moved: created") == before; i++)
		usleep(10000);
	CHECK_EQ_INT(daemon_log_count(&D, "domain moved: created"), before + 1);
	/* Three more seconds: one more try each second, before the fix.  A
	 * paused client does not scan, as ksmd with run 0: its full_scans
	 * stays put (it counted scans that merged nothing, and `ksmctl wait
	 * --converged` after a restart took them for convergence). */
	long long scans = ask(&vm, 'f');
	usleep(3500000);
	CHECK_EQ_INT(daemon_log_count(&D, "domain moved: created"), before + 1);
	CHECK_EQ_INT(ask(&vm, 'f'), scans);
	CHECK_EQ_INT(daemon_value(&D, "ksm_merging_pages"), 0); /* not its client */
	CHECK_EQ_INT(ask(&vm, 'v'), 1);
	CHECK_EQ_INT(ask(&vm, 'w'), 1);
	/* The daemon with the files it had: the client resumes. */
	CHECK_EQ_INT(daemon_stop(&D, SIGTERM), 0);
	char cmd[1400];
	snprintf(cmd, sizeof(cmd), "rm -rf %s && mv %s %s", D.state, kept, D.state);
	REQUIRE(system(cmd) == 0);
	daemon_start(&D, NULL);
	long long counted = 0;
	for (int i = 0; i < 100 && counted < 1000; i++) {
		usleep(100000);
		counted = daemon_value(&D, "ksm_merging_pages"); /* its client's, once back */
	}
	CHECK_CMP(counted, >=, 1000, long long, "%lld");
	CHECK_EQ_INT(ask(&vm, 'v'), 1);
	end(&vm, 0);
	CHECK(domain_files_gone("moved"));
}

/* Regression (issue 9 item 4): a domain name with a dot.  Its clients die
 * while the daemon is down; the restarted daemon reaps their ledgers
 * ("vm.A.PID.ledger": the domain is what comes before the last dot but
 * one) and frees their pool pages. */
static void test_dotted_domain_reaped_after_restart(void)
{
	struct vm vm[2] = {spawn("vm.A", 0), spawn("vm.A", 1)};
	converge();
	CHECK(daemon_value(&D, "pool_pages") > 0);
	CHECK_EQ_INT(state_files(&D, "vm.A.", ".ledger"), 2);
	daemon_stop(&D, SIGKILL);
	for (int g = 0; g < 2; g++)
		end(&vm[g], SIGKILL);
	daemon_start(&D, NULL); /* answers once the orphans of the last run are reaped */
	CHECK_EQ_INT(daemon_value(&D, "pool_pages"), 0);
	CHECK_EQ_INT(state_files(&D, "vm.A.", ".ledger"), 0);
	CHECK(domain_files_gone("vm.A"));
}

/* Regression: a client that closes its connection (as a daemon closing
 * every descriptor does) or shuts it down, and runs on, keeps its merged
 * pages: they were freed under it, its memory read zeros.  Only a process
 * that exited or exec'd is reaped; this one is, once it exits. */
static void test_connection_closed_by_live_client(void)
{
	struct vm vm[2] = {spawn("live", 0), spawn("live", 1)};
	for (int g = 0; g < 2; g++)
		CHECK_EQ_INT(ask(&vm[g], 'n'), 0); /* 1024 pages of one content */
	long long merged = 0;
	for (int i = 0; i < 3000 && merged < 2 * 1000; i++) {
		usleep(10000);
		merged = ask(&vm[0], 's') + ask(&vm[1], 's');
	}
	CHECK_CMP(merged, >=, 2 * 1000, long long, "%lld");
	CHECK_EQ_INT(ask(&vm[0], 'c'), 1);
	CHECK_EQ_INT(ask(&vm[1], 'h'), 1);
	/* The daemon has seen both ends (the log says so), and kept their
	 * pages: their memory reads what it held. */
	bool seen = false;
	for (int i = 0; i < 1000 && !seen; i++, usleep(10000))
		seen = daemon_logged(&D, "closed its connection but still maps the pool");
	CHECK(seen);
	usleep(200000);
	for (int g = 0; g < 2; g++)
		CHECK_EQ_INT(ask(&vm[g], 'v'), 1);
	CHECK(daemon_value(&D, "pool_pages") > 0);
	for (int g = 0; g < 2; g++)
		end(&vm[g], SIGKILL);
	CHECK(domain_files_gone("live")); /* the sweep of gone processes' ledgers */
}

static void test_other_user(void)
{
	if (geteuid() != 0)
		SKIP("needs root to switch to another user");
	pid_t p = fork();
	if (p == 0) {
		if (chmod(D.dir, 0755) || setgid(65534) || setuid(65534))
			_exit(2);
		samepage_t *sp;
		_exit(samepage_connect(&sp, "vm") == -EACCES ? 0 : 1);
	}
	int st;
	waitpid(p, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	chmod(D.dir, 0700);
}

static unsigned long long knob_default(const char *name)
{
	for (int i = 0; i < samepage_knob_count(); i++)
		if (!strcmp(samepage_knob_at(i)->name, name))
			return samepage_knob_at(i)->def;
	REQUIRE(!"no such knob");
	return 0;
}

/* Domains are closed with their last process; the knobs are not lost
 * with them: a daemon restarted with no domain left keeps them (DIR/knobs),
 * and a junk knobs file is ignored, never fatal. */
static void test_knobs_kept_without_domains(void)
{
	CHECK_EQ_INT(state_files(&D, "", ".index"), 0);
	daemon_set(&D, "sleep_millisecs", "7");
	CHECK_EQ_INT(daemon_stop(&D, SIGTERM), 0);
	CHECK(daemon_logged(&D, "stopping; no domain open"));
	daemon_start(&D, NULL);
	CHECK_EQ_INT(daemon_value(&D, "sleep_millisecs"), 7);
	CHECK_EQ_INT(daemon_value(&D, "run"), 1);

	CHECK_EQ_INT(daemon_stop(&D, SIGTERM), 0);
	char path[512];
	snprintf(path, sizeof(path), "%s/knobs", D.state);
	FILE *f = fopen(path, "w");
	REQUIRE(f);
	fputs("sleep_millisecs = 7\n", f); /* not its format */
	fclose(f);
	daemon_start(&D, NULL);
	CHECK_EQ_INT(daemon_value(&D, "sleep_millisecs"), knob_default("sleep_millisecs"));
	CHECK(daemon_logged(&D, "is not a knobs file"));

	/* A knobs file of a version with one counter fewer (an upgrade):
	 * its tunables are taken back (they were ignored, and a daemon
	 * upgraded with no domain open lost its knobs); one out of its range
	 * is left at its default. */
	CHECK_EQ_INT(daemon_stop(&D, SIGTERM), 0);
	struct {
		uint64_t magic;
		uint32_t count, zero;
		unsigned long long knob[64];
	} k = {.magic = 0x3153424f4e4b5353ULL, .count = (uint32_t)samepage_knob_count() - 1};
	for (int i = 0; i < samepage_knob_count(); i++)
		k.knob[i] = samepage_knob_at(i)->def;
	k.knob[samepage_knob_find("sleep_millisecs") - samepage_knob_at(0)] = 9;
	k.knob[samepage_knob_find("run") - samepage_knob_at(0)] = 7; /* 0 to 2 */
	f = fopen(path, "w");
	REQUIRE(f && fwrite(&k, sizeof(k), 1, f) == 1);
	fclose(f);
	daemon_start(&D, NULL);
	CHECK_EQ_INT(daemon_value(&D, "sleep_millisecs"), 9);
	CHECK_EQ_INT(daemon_value(&D, "run"), knob_default("run"));
	CHECK(daemon_logged(&D, "but 1 out of range: left at their defaults"));
}

int main(int argc, char **argv)
{
	REQUIRE(argc == 2);
	daemon_init(&D, argv[1]);
	daemon_start(&D, NULL);
	daemon_set(&D, "pages_to_scan", "100000");
	daemon_set(&D, "sleep_millisecs", "0");
	daemon_set(&D, "run", "1");
	CHECK_EQ_INT(samepage_control(D.sock, "SET run 3", (char[256]){0}, 256), -EINVAL);
	CHECK_EQ_INT(samepage_control(D.sock, "SET bogus 1", (char[256]){0}, 256), -ENOENT);

	test_domains_and_kill();
	test_daemon_restart();
	test_daemon_restart_with_other_files();
	test_dotted_domain_reaped_after_restart();
	test_connection_closed_by_live_client();
	test_other_user();
	test_knobs_kept_without_domains();

	CHECK_EQ_INT(daemon_stop(&D, SIGTERM), 0);
	return check_report("daemon");
}
