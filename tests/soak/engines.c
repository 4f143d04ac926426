// SPDX-License-Identifier: MIT
/*
 * engines.c - the processes that hold registered memory: the engine
 * process (engines of samepage_open(), workers, signal-blocking writers and
 * the knob thread) and the samepaged clients (samepage_connect()).
 *
 * The knob thread changes every tunable of the table (samepage_knob_at), by
 * the kernel's rules, and checks each answer: a write the kernel accepts
 * must return 0 and read back; pages_to_scan under the scan-time advisor,
 * and a value that is not a clean number, must return -EINVAL and change
 * nothing; after run=2, max_page_sharing and merge_across_nodes must be
 * accepted (the kernel accepts them once run=2 has unmerged everything).
 * A knob the soak has no rule for is written with its default, and said.
 */
#include "soak.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A samepaged client: the knobs are the daemon's, written by every client
 * (so a read-back may see another client's write), and a write fails with
 * ENOTCONN while the daemon is down or when it dies during the request
 * (any other error is a failure). */
static bool daemon_engine;

static void api_refused(const char *what, const char *name, const char *value, int err,
			int expected)
{
	atomic_fetch_add(&stats->api_errors, 1);
	note("%s: samepage_write(%s, %s) returned %d (%s), expected %d (%s engine)", what, name,
	     value, err, err ? samepage_strerror(err) : "success", expected,
	     daemon_engine ? "a samepaged client's" : "the engine process's");
}

static void peak(_Atomic uint64_t *max, long long v)
{
	uint64_t cur = atomic_load(max);
	while (v > 0 && (uint64_t)v > cur && !atomic_compare_exchange_weak(max, &cur, (uint64_t)v))
		;
}

/* Writes a knob and checks the answer; 0 or the error. */
static int knob_write(samepage_t *sp, const char *what, const char *name, const char *value,
		      int expected)
{
	long long before = 0, after = 0;
	unsigned long long v = 0;
	samepage_read_number(sp, name, &before);
	int err = samepage_write(sp, name, value);
	atomic_fetch_add(&stats->knob_writes, 1);
	if (err == -ENOTCONN && daemon_engine) {
		atomic_fetch_add(&stats->knobs_enotconn, 1);
		return err;
	}
	if (err != expected) {
		api_refused(what, name, value, err, expected);
		return err;
	}
	if (daemon_engine)
		return err;
	int rerr = samepage_read_number(sp, name, &after);
	if (rerr) {
		api_refused("reading back", name, value, rerr, 0);
	} else if (err) { /* a refused write changes nothing (the advisor moves pages_to_scan) */
		long long advisor = 0;
		samepage_read_number(sp, "advisor_mode", &advisor);
		if (after != before && !(advisor == 1 && !strcmp(name, "pages_to_scan"))) {
			atomic_fetch_add(&stats->api_errors, 1);
			note("%s: samepage_write(%s, %s) was refused but changed it from %lld to "
			     "%lld",
			     what, name, value, before, after);
		}
	} else if (samepage_knob_parse(name, value, &v) == 0 && (unsigned long long)after != v) {
		atomic_fetch_add(&stats->api_errors, 1);
		note("%s: samepage_write(%s, %s) returned 0 but it reads %lld", what, name, value,
		     after);
	}
	return err;
}

/*
 * A value for a tunable under the soak's rules, or NULL to leave it alone:
 * run and the knobs that need run=2 have their own sequence; use_zero_pages
 * and smart_scan are toggled with their own kinds ("zero-pages",
 * "smart-scan"), every other knob with "knobs"; sleep_millisecs and
 * pages_to_scan stay where merging goes on all the time.
 */
static const char *knob_value(const struct samepage_knob *k, uint64_t *rng, char *buf, size_t len)
{
	static const char *const bools[] = {"0", "1", "n", "y", "off", "on"};
	const char *n = k->name;
	if (!strcmp(n, "run") || !strcmp(n, "max_page_sharing") || !strcmp(n, "merge_across_nodes"))
		return NULL;
	if (!strcmp(n, "use_zero_pages"))
		return opts->on[OP_ZERO_PAGES] ? bools[rnd_below(rng, 6)] : NULL;
	if (!strcmp(n, "smart_scan"))
		return opts->on[OP_SMART_SCAN] ? bools[rnd_below(rng, 6)] : NULL;
	if (!opts->on[OP_KNOBS])
		return NULL;
	if (!strcmp(n, "advisor_mode"))
		return rnd_below(rng, 4) ? "none" : "scan-time";
	static const unsigned long long scan[] = {100, 1000, 5000, 25600};
	static const unsigned long long sleep_ms[] = {0, 1, 5, 20};
	static const unsigned long long prune[] = {0, 10, 2000};
	static const unsigned long long target[] = {1, 2, 200};
	static const unsigned long long cpu[] = {0, 10, 70, 100};
	static const unsigned long long minp[] = {500, 5000};
	static const unsigned long long maxp[] = {30000, 100000};
	unsigned long long v = k->def;
#define PICK(a) (a)[rnd_below(rng, sizeof(a) / sizeof((a)[0]))]
	if (!strcmp(n, "pages_to_scan"))
		v = PICK(scan);
	else if (!strcmp(n, "sleep_millisecs"))
		v = PICK(sleep_ms);
	else if (!strcmp(n, "stable_node_chains_prune_millisecs"))
		v = PICK(prune);
	else if (!strcmp(n, "advisor_target_scan_time"))
		v = PICK(target);
	else if (!strcmp(n, "advisor_max_cpu"))
		v = PICK(cpu);
	else if (!strcmp(n, "advisor_min_pages_to_scan"))
		v = PICK(minp);
	else if (!strcmp(n, "advisor_max_pages_to_scan"))
		v = PICK(maxp);
	else {
		static _Atomic int told;
		if (!atomic_exchange(&told, 1))
			fprintf(stderr, "soak: no rule for the knob %s: written with its default\n",
				n);
	}
#undef PICK
	snprintf(buf, len, "%llu", v);
	return buf;
}

/* The engine process's state, for the knob thread. */
static struct env local;
static struct worker *workers;
static int nworkers;

/* The first engine of the engine process, with "merge-any". */
static void engine_merge_any(samepage_t *sp)
{
	int err = samepage_merge_any(sp, 1);
	if (err) {
		atomic_fetch_add(&stats->api_errors, 1);
		note("samepage_merge_any: %s", samepage_strerror(err));
	}
}

static void engine_start(samepage_t *sp)
{
	knob_write(sp, "start", "pages_to_scan", "5000", 0);
	knob_write(sp, "start", "sleep_millisecs", "1", 0);
	knob_write(sp, "start", "run", "1", 0);
}

static void engine_counters(samepage_t *sp)
{
	long long v;
	if (!samepage_read_number(sp, "pages_sharing", &v))
		peak(&stats->merged_peak, v);
}

/* One tunable, chosen at random, written by the rules. */
static void knob_change(samepage_t *sp, uint64_t *rng)
{
	int n = samepage_knob_count(), tries = 0;
	char buf[32];
	const struct samepage_knob *k;
	const char *value = NULL;
	do {
		k = samepage_knob_at((int)rnd_below(rng, (uint64_t)n));
		if (k && k->kind == SAMEPAGE_KNOB_TUNABLE)
			value = knob_value(k, rng, buf, sizeof(buf));
	} while (!value && ++tries < 100);
	if (!value)
		return;
	long long advisor = 0;
	samepage_read_number(sp, "advisor_mode", &advisor);
	int expected = !strcmp(k->name, "pages_to_scan") && advisor == 1 ? -EINVAL : 0;
	knob_write(sp, "a knob change", k->name, value, expected);
	if (opts->on[OP_KNOBS] && rnd_below(rng, 8) == 0) /* no parser takes it: refused */
		knob_write(sp, "a bad value", k->name, "x12", -EINVAL);
}

/* Every name of the table reads (counters included). */
static void knob_read_all(samepage_t *sp)
{
	char buf[64];
	for (int i = 0; i < samepage_knob_count(); i++) {
		const struct samepage_knob *k = samepage_knob_at(i);
		int err = samepage_read(sp, k->name, buf, sizeof(buf));
		atomic_fetch_add(&stats->knob_reads, 1);
		if (err) {
			atomic_fetch_add(&stats->api_errors, 1);
			note("samepage_read(%s): %s", k->name, samepage_strerror(err));
		}
	}
}

/* run=2 (everything unmerged), then, with "mps", the knobs that need it. */
static void run2_sequence(samepage_t *sp, uint64_t *rng)
{
	static const char *const mps[] = {"2", "3", "8", "64", "256", "1024"};
	if (knob_write(sp, "run=2", "run", "2", 0))
		return;
	atomic_fetch_add(&stats->runs2, 1);
	if (opts->on[OP_MPS]) {
		const char *v = mps[rnd_below(rng, 6)];
		int children = atomic_load(&local.children_alive);
		int err = knob_write(sp, "after run=2", "max_page_sharing", v, 0);
		if (err && children)
			note("(max_page_sharing refused after run=2 while %d fork children were "
			     "alive)",
			     children);
		else if (err && atomic_load(&stats->children))
			note(
			    "(max_page_sharing refused after run=2 with no fork child alive, after "
			    "%llu forks in the run)",
			    (unsigned long long)atomic_load(&stats->children));
		knob_write(sp, "after run=2", "merge_across_nodes", rnd_below(rng, 2) ? "0" : "1",
			   0);
	}
	usleep(20000); /* the workers go on writing into unmerged memory */
	knob_write(sp, "after run=2", "run", "1", 0);
}

/* Closes an engine and opens a new one for its regions. */
static void engine_reopen(int e)
{
	struct engine *eng = &local.engines[e];
	long long v;
	pthread_rwlock_wrlock(&eng->lock);
	if (!samepage_read_number(eng->sp, "cow_ksm", &v))
		atomic_fetch_add(&stats->cow_ksm, (uint64_t)v);
	samepage_close(eng->sp);
	int err = samepage_open(&eng->sp);
	if (err) {
		fprintf(stderr, "soak: samepage_open: %s\n", samepage_strerror(err));
		exit(2);
	}
	engine_start(eng->sp);
	if (e == 0 && opts->on[OP_MERGE_ANY] && !SOAK_SANITIZED)
		engine_merge_any(eng->sp);
	for (int i = 0; i < nworkers; i++)
		for (int j = 0; j < workers[i].nregions; j++) {
			struct region *r = &workers[i].regions[j];
			if (r->engine != e || !r->addr)
				continue;
			err =
			    samepage_madvise(eng->sp, r->addr, r->npages * PG, SAMEPAGE_MERGEABLE);
			if (err) {
				atomic_fetch_add(&stats->api_errors, 1);
				note("samepage_madvise after reopening an engine: %s",
				     samepage_strerror(err));
			}
		}
	atomic_fetch_add(&stats->engines_reopened, 1);
	pthread_rwlock_unlock(&eng->lock);
}

static void *knob_thread(void *arg)
{
	uint64_t rng = *(uint64_t *)arg;
	int round = 0;
	while (!soak_stopping()) {
		usleep(20000 + (useconds_t)rnd_below(&rng, 80000));
		round++;
		for (int e = 0; e < local.nengines; e++)
			engine_counters(local.engines[e].sp);
		samepage_t *sp = local.engines[rnd_below(&rng, (uint64_t)local.nengines)].sp;
		uint64_t x = rnd_below(&rng, 100);
		if (x < 60)
			knob_change(sp, &rng); /* as far as the kinds switched on allow */
		else if (opts->on[OP_KNOBS] && x < 70)
			knob_read_all(sp);
		else if ((opts->on[OP_KNOBS] || opts->on[OP_MPS]) && x < 76)
			run2_sequence(sp, &rng);
		if (opts->on[OP_ENGINES] && round % 30 == 0)
			engine_reopen((int)rnd_below(&rng, (uint64_t)local.nengines));
	}
	return NULL;
}

static void open_file(struct env *env)
{
	env->fd = open(opts->file, O_RDONLY | O_CLOEXEC);
	env->fd_direct =
	    opts->on[OP_DIRECT] ? open(opts->file, O_RDONLY | O_DIRECT | O_CLOEXEC) : -1;
	env->file_shadow = malloc(FILE_PAGES * PG);
	if (env->fd < 0 || (opts->on[OP_DIRECT] && env->fd_direct < 0) || !env->file_shadow ||
	    pread(env->fd, env->file_shadow, FILE_PAGES * PG, 0) != (ssize_t)(FILE_PAGES * PG)) {
		fprintf(stderr, "soak: cannot read %s: %s\n", opts->file, strerror(errno));
		exit(2);
	}
}

static void close_file(struct env *env)
{
	close(env->fd);
	if (env->fd_direct >= 0)
		close(env->fd_direct);
	free(env->file_shadow);
}

static void engine_close(struct engine *e)
{
	long long v;
	if (!samepage_read_number(e->sp, "cow_ksm", &v))
		atomic_fetch_add(&stats->cow_ksm, (uint64_t)v);
	samepage_close(e->sp);
	pthread_rwlock_destroy(&e->lock);
}

/* Starts the workers of a process (nsig of them blocking every signal),
 * waits for the stop, and checks every region once more after the
 * engines are closed. */
static void run_workers(struct env *env, int nw, int nsig, int regions, uint64_t seed,
			void (*main_loop)(uint64_t seed))
{
	nworkers = nw + nsig;
	workers = calloc((size_t)nworkers, sizeof(*workers));
	if (!workers)
		exit(2);
	for (int i = 0; i < nworkers; i++)
		worker_setup(&workers[i], env, regions, i, seed_for(seed, 1, (uint64_t)i), i >= nw);
	for (int i = 0; i < nworkers; i++)
		if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i])) {
			fprintf(stderr, "soak: pthread_create failed\n");
			exit(2);
		}
	main_loop(seed_for(seed, 2, 0));
	for (int i = 0; i < nworkers; i++)
		pthread_join(workers[i].thread, NULL);
	long long waits; /* a figure of the whole process */
	if (!samepage_read_number(env->engines[0].sp, "merge_window_waits", &waits))
		atomic_fetch_add(&stats->merge_window_waits, (uint64_t)waits);
	for (int e = 0; e < env->nengines; e++)
		engine_close(&env->engines[e]);
	for (int i = 0; i < nworkers; i++)
		worker_teardown(&workers[i]);
	free(workers);
	free(env->engines);
}

static void engine_loop(uint64_t seed)
{
	pthread_t t;
	if (pthread_create(&t, NULL, knob_thread, &seed)) {
		fprintf(stderr, "soak: pthread_create failed\n");
		exit(2);
	}
	pthread_join(t, NULL);
}

int engine_process_main(int generation)
{
	uint64_t seed = seed_for(opts->seed, 100, (uint64_t)generation);
	local.who = "engine";
	local.nengines = opts->on[OP_ENGINES] ? opts->engines : 1;
	local.engines = calloc((size_t)local.nengines, sizeof(*local.engines));
	if (!local.engines)
		return 2;
	open_file(&local);
	for (int e = 0; e < local.nengines; e++) {
		int err = samepage_open(&local.engines[e].sp);
		if (err) {
			fprintf(stderr, "soak: samepage_open: %s\n", samepage_strerror(err));
			return 2;
		}
		pthread_rwlock_init(&local.engines[e].lock, NULL);
		engine_start(local.engines[e].sp);
	}
	if (opts->on[OP_MERGE_ANY] && !SOAK_SANITIZED)
		engine_merge_any(local.engines[0].sp);
	run_workers(&local, opts->workers, opts->on[OP_SIGBLOCK] ? opts->sigblock_threads : 0,
		    opts->regions, seed, engine_loop);
	close_file(&local);
	return 0;
}

/* ---- a samepaged client ---- */

static struct env client;

/* The knobs are the daemon's: a write goes to it, or fails with ENOTCONN
 * while it is down. */
static void client_loop(uint64_t seed)
{
	uint64_t rng = seed;
	samepage_t *sp = client.engines[0].sp;
	static const char *const bools[] = {"0", "1"};
	for (int round = 0; !soak_stopping(); round++) {
		/* The daemon starts with run=0, as the kernel: the clients turn
		 * it on, and again after it was restarted. */
		if (round % 10 == 0) {
			knob_write(sp, "a client's start", "pages_to_scan", "5000", 0);
			knob_write(sp, "a client's start", "sleep_millisecs", "1", 0);
			knob_write(sp, "a client's start", "run", "1", 0);
		}
		usleep(100000 + (useconds_t)rnd_below(&rng, 200000));
		long long v;
		if (!samepage_read_number(sp, "pages_sharing", &v))
			peak(&stats->merged_peak_daemon, v);
		const char *name = NULL, *value = NULL;
		switch (rnd_below(&rng, 5)) {
		case 0:
			if (opts->on[OP_KNOBS])
				name = "pages_to_scan",
				value = rnd_below(&rng, 2) ? "5000" : "1000";
			break;
		case 1:
			if (opts->on[OP_KNOBS])
				name = "sleep_millisecs", value = rnd_below(&rng, 2) ? "1" : "10";
			break;
		case 2:
			if (opts->on[OP_SMART_SCAN])
				name = "smart_scan", value = bools[rnd_below(&rng, 2)];
			break;
		case 3:
			if (opts->on[OP_ZERO_PAGES])
				name = "use_zero_pages", value = bools[rnd_below(&rng, 2)];
			break;
		default:
			if (opts->on[OP_KNOBS])
				name = "run", value = bools[rnd_below(&rng, 5) != 0];
			break;
		}
		if (name)
			knob_write(sp, "a client's knob change", name, value, 0);
	}
	samepage_write(sp, "run", "1"); /* merging goes on until the end */
}

int client_process_main(int domain, int index, uint64_t seed)
{
	static char who[24];
	const char *name = domain ? "soak.B" : "soakA";
	snprintf(who, sizeof(who), "client %c%d", domain ? 'B' : 'A', index);
	client.who = who;
	daemon_engine = true;
	client.pattern_base = domain ? 1000 : 0;
	client.nengines = 1;
	client.engines = calloc(1, sizeof(*client.engines));
	if (!client.engines)
		return 2;
	setenv("SAMEPAGE_SOCKET", opts->socket, 1);
	for (;;) { /* the daemon may be down: it comes back */
		int err = samepage_connect(&client.engines[0].sp, name);
		if (!err)
			break;
		if (soak_stopping())
			return 0;
		if (err != -ENOENT && err != -ECONNREFUSED && err != -ENOTCONN) {
			atomic_fetch_add(&stats->api_errors, 1);
			note("%s: samepage_connect(%s): %s", who, name, samepage_strerror(err));
			return 1;
		}
		usleep(50000);
	}
	pthread_rwlock_init(&client.engines[0].lock, NULL);
	open_file(&client);
	run_workers(&client, 2, 0, 2, seed, client_loop);
	close_file(&client);
	return 0;
}
