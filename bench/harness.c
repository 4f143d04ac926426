// SPDX-License-Identifier: MIT
/*
 * harness.c - the benchmarks' shared machinery (see harness.h): options and
 * results, time and CPU, memory, workloads, the engine (libsamepage or the
 * kernel's KSM), idle and busy runs, waiting for convergence.  The care the
 * kernel's KSM needs (its lock, its knobs saved and put back) is in
 * kernel-ksm.c.
 */
#include "harness.h"
#include "kernel-ksm.h"
#include "procfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *case_name(const struct bench_opts *o)
{
	return o->busy ? "busy" : "idle";
}

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s --engine lib|kernel [--case idle|busy] [--quick] [--zero 0|1] "
		"[--series FILE] [--mib N] [--max-map-count N]\n",
		argv0);
	exit(2);
}

void bench_parse(int argc, char **argv, const char *workload, struct bench_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->engine = ENGINE_LIB;
	o->workload = workload;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--quick")) {
			o->quick = true;
			continue;
		}
		if (!v)
			usage(argv[0]);
		i++;
		if (!strcmp(a, "--engine") && (!strcmp(v, "lib") || !strcmp(v, "kernel")))
			o->engine = !strcmp(v, "lib") ? ENGINE_LIB : ENGINE_KERNEL;
		else if (!strcmp(a, "--case") && (!strcmp(v, "idle") || !strcmp(v, "busy")))
			o->busy = !strcmp(v, "busy");
		else if (!strcmp(a, "--zero") && (!strcmp(v, "0") || !strcmp(v, "1")))
			o->use_zero_pages = atoi(v);
		else if (!strcmp(a, "--series"))
			o->series = v;
		else if (!strcmp(a, "--mib") && atol(v) > 0)
			o->mib = (size_t)atol(v);
		else if (!strcmp(a, "--max-map-count") && atol(v) >= 65530)
			o->max_map_count = atol(v);
		else
			usage(argv[0]);
	}
}

void bench_result(const struct bench_opts *o, const char *metric, const char *unit, double v)
{
	printf("%s\t%s\t%s\t%s\t%s\t%.6g\n", o->workload, case_name(o),
	       o->engine == ENGINE_LIB ? "engine" : "kernel", metric, unit, v);
	fflush(stdout);
}

void bench_die(const char *what)
{
	fprintf(stderr, "bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* ---- time and CPU ---- */

uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

double secs_since(uint64_t t0_ns)
{
	return (double)(now_ns() - t0_ns) / 1e9;
}

void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* The kernel's CPU clock ids (include/linux/posix-timers_types.h): the
 * scheduler's nanosecond accounting of one thread or one process, the
 * same time /proc/<pid>/stat shows in utime+stime, without the 10 ms
 * granularity of clock ticks. */
#define CPUCLOCK_SCHED 2
#define CPUCLOCK_PERTHREAD 4
static clockid_t cpu_clock_of(pid_t id, bool thread)
{
	return (clockid_t)((~(unsigned)id) << 3) | CPUCLOCK_SCHED |
	       (thread ? CPUCLOCK_PERTHREAD : 0);
}

/* utime+stime of /proc/<pid>/stat (or /proc/self/task/<tid>/stat), in ns. */
static uint64_t proc_stat_cpu_ns(pid_t id, bool thread)
{
	char path[64];
	struct procfs_stat st;

	procfs_path(path, sizeof(path), thread ? "/proc/self/task" : "/proc", id, "stat");
	if (procfs_stat(path, &st))
		return 0;
	return (st.utime + st.stime) * (1000000000ULL / (uint64_t)sysconf(_SC_CLK_TCK));
}

/* ---- memory ---- */

long long meminfo_kb(const char *field)
{
	return procfs_number("/proc/meminfo", field);
}

long long mem_used_kb(void)
{
	long long anon = meminfo_kb("AnonPages"), shmem = meminfo_kb("Shmem");

	return anon < 0 || shmem < 0 ? -1 : anon + shmem;
}

long long self_rollup_kb(const char *field)
{
	return procfs_number("/proc/self/smaps_rollup", field);
}

long long self_map_count(void)
{
	return procfs_count_maps("/proc/self/maps");
}

/* ---- workloads ---- */

char *map_pages(size_t npages)
{
	char *p =
	    mmap(NULL, npages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		bench_die("mmap");
	madvise(p, npages * PG, MADV_NOHUGEPAGE);
	return p;
}

uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void fill_page(char *page, uint64_t key)
{
	uint64_t s = key * 0x2545f4914f6cdd1dULL + 1, *w = (uint64_t *)page;
	for (size_t i = 0; i < PG / sizeof(uint64_t); i++)
		w[i] = rng_next(&s);
}

/* The first entry of dir (/proc or /proc/self/task) whose comm is name:
 * the kthread ksmd, or the library's thread samepage-ksmd; -1 if none. */
static pid_t find_by_comm(const char *dir, const char *name)
{
	int id = procfs_find_comm(dir, name);

	return id > 0 ? id : -1;
}

unsigned char *vm_layout(size_t npages)
{
	unsigned char *kind = malloc(npages);
	uint64_t rng = 42;

	if (!kind)
		bench_die("malloc");
	for (size_t i = 0; i < npages;) {
		size_t run = 1 + rng_next(&rng) % 256;
		unsigned roll = (unsigned)(rng_next(&rng) % 100);
		enum vm_page_kind k = roll < 70 ? VM_IMAGE : roll < 80 ? VM_PRIVATE : VM_ZERO;
		for (size_t j = 0; j < run && i < npages; j++)
			kind[i++] = (unsigned char)k;
	}
	return kind;
}

void vm_fill(char *p, size_t npages, const unsigned char *layout, unsigned guest)
{
	for (size_t i = 0; i < npages; i++) {
		char *page = p + i * PG;
		if (layout[i] == VM_IMAGE)
			fill_page(page, (1ULL << 40) + i);
		else if (layout[i] == VM_PRIVATE)
			fill_page(page, ((uint64_t)(guest + 1) << 32) + i);
		else
			memset(page, 0, PG); /* touched: a present zero page */
	}
}

/* ---- the engine ---- */

static void lib_write(struct engine *e, const char *name, const char *value)
{
	int err = samepage_write(e->sp, name, value);
	if (err) {
		fprintf(stderr, "bench: samepage_write(%s, %s): %s\n", name, value,
			samepage_strerror(err));
		exit(1);
	}
}

static void set_knob(struct engine *e, const char *name, const char *value)
{
	if (e->kind == ENGINE_LIB)
		lib_write(e, name, value);
	else
		kernel_ksm_write(name, value);
}

void bench_open(struct engine *e, const struct bench_opts *o, unsigned pages_to_scan)
{
	char v[32];
	if (o->max_map_count) { /* before the engine reads it */
		snprintf(v, sizeof(v), "%ld", o->max_map_count);
		bench_sysctl_set("/proc/sys/vm/max_map_count", v);
	}
	memset(e, 0, sizeof(*e));
	e->kind = o->engine;
	e->busy = o->busy;
	if (e->kind == ENGINE_LIB) {
		int err = samepage_open(&e->sp);
		if (err) {
			fprintf(stderr, "bench: samepage_open: %s\n", samepage_strerror(err));
			exit(1);
		}
		/* pthread_setname_np runs right after pthread_create: wait for it. */
		for (int i = 0; i < 1000 && (e->cpu_task = find_by_comm("/proc/self/task",
									"samepage-ksmd")) < 0;
		     i++)
			sleep_ms(1);
		e->cpu_is_thread = true;
	} else {
		kernel_ksm_acquire();
		kernel_ksm_write("run", "2");
		e->cpu_task = find_by_comm("/proc", "ksmd");
		e->cpu_is_thread = false;
	}
	if (e->cpu_task < 0) {
		fprintf(stderr, "bench: cannot find the scanner thread\n");
		exit(1);
	}
	e->cpu_clock = cpu_clock_of(e->cpu_task, e->cpu_is_thread);
	snprintf(v, sizeof(v), "%u", pages_to_scan);
	set_knob(e, "pages_to_scan", v);
	set_knob(e, "sleep_millisecs", "0");
	set_knob(e, "use_zero_pages", o->use_zero_pages ? "1" : "0");
}

int bench_advise(struct engine *e, void *addr, size_t len, bool mergeable)
{
	if (e->kind == ENGINE_LIB)
		return samepage_madvise(e->sp, addr, len,
					mergeable ? SAMEPAGE_MERGEABLE : SAMEPAGE_UNMERGEABLE);
	return madvise(addr, len, mergeable ? MADV_MERGEABLE : MADV_UNMERGEABLE) ? -errno : 0;
}

void bench_run(struct engine *e, int run)
{
	char v[4] = {(char)('0' + run), 0};
	set_knob(e, "run", v);
}

long long bench_counter(struct engine *e, const char *name)
{
	if (e->kind == ENGINE_LIB) {
		long long v;
		if (samepage_read_number(e->sp, name, &v))
			return -1;
		return v;
	}
	if (!strncmp(name, "ksm_", 4) && strcmp(name, "ksm_zero_pages")) {
		return procfs_number("/proc/self/ksm_stat", name);
	}
	return kernel_ksm_number(name);
}

long long bench_saved_pages(struct engine *e)
{
	return bench_counter(e, "pages_sharing") + bench_counter(e, "ksm_zero_pages");
}

uint64_t bench_cpu_ns(struct engine *e)
{
	struct timespec ts;
	if (!clock_gettime(e->cpu_clock, &ts))
		return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	return proc_stat_cpu_ns(e->cpu_task, e->cpu_is_thread);
}

void bench_close(struct engine *e)
{
	if (e->kind == ENGINE_LIB) {
		samepage_close(e->sp);
		e->sp = NULL;
		return;
	}
	kernel_ksm_release();
}

/* ---- idle and busy ---- */

static atomic_bool spin_stop;
static pthread_t spinner;
static bool spinning;

static void *spin(void *arg)
{
	(void)arg;
	while (!atomic_load_explicit(&spin_stop, memory_order_relaxed))
		;
	return NULL;
}

void busy_start(struct engine *e)
{
	if (!e->busy || spinning)
		return;
	atomic_store(&spin_stop, false);
	if (pthread_create(&spinner, NULL, spin, NULL)) {
		fprintf(stderr, "bench: cannot start the busy thread\n");
		exit(1);
	}
	spinning = true;
}

void busy_stop(struct engine *e)
{
	(void)e;
	if (!spinning)
		return;
	atomic_store(&spin_stop, true);
	pthread_join(spinner, NULL);
	spinning = false;
}

/* ---- waiting ---- */

double wait_full_scans(struct engine *e, long long n, double timeout_s)
{
	uint64_t t0 = now_ns();
	long long target = bench_counter(e, "full_scans") + n;
	while (bench_counter(e, "full_scans") < target) {
		if (secs_since(t0) > timeout_s)
			return -1;
		sleep_ms(1);
	}
	return secs_since(t0);
}

/* The memory-returned sampler: a thread of its own, so that the samples
 * keep their 50 ms pace even while a counter read waits for the engine. */
/* Bytes of this process's memfds named samepage-* (the library's pool and
 * index), from their allocated blocks: what the library keeps in shared
 * memory, seen from outside it. */
static long long samepage_memfd_kb(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	long long kb = 0;
	while (d && (de = readdir(d))) {
		char path[300], link[128];
		struct stat st;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
		ssize_t n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = 0;
		if (!strncmp(link, "/memfd:samepage", 15) && !stat(path, &st))
			kb += (long long)st.st_blocks / 2;
	}
	if (d)
		closedir(d);
	return kb;
}

long long process_memory_kb(struct engine *e)
{
	long long anon = procfs_number("/proc/self/status", "RssAnon");
	if (e->kind == ENGINE_LIB)
		return anon + samepage_memfd_kb();
	/* RssAnon counts a KSM page once per mapping: take the mappings KSM
	 * saved off (sysfs, this process being the only KSM user). */
	return anon - (kernel_ksm_number("pages_sharing") + kernel_ksm_number("ksm_zero_pages")) *
			  (long long)(PG / 1024);
}

/* The memory-returned sampler: a thread of its own, so that the samples
 * keep their 50 ms pace even while a counter read waits for the engine. */
struct sampler {
	pthread_t thread;
	FILE *out;
	struct engine *e;
	const struct merge_run *m;
	atomic_bool stop;
};

static void *sample(void *arg)
{
	struct sampler *s = arg;
	while (!atomic_load(&s->stop)) {
		fprintf(s->out, "%.3f\t%.1f\t%.1f\n", secs_since(s->m->t0),
			(double)(s->m->base_proc_kb - process_memory_kb(s->e)) / 1024.0,
			(double)(s->m->base_kb - mem_used_kb()) / 1024.0);
		sleep_ms(50);
	}
	return NULL;
}

double wait_converged(struct engine *e, struct merge_run *m, FILE *series, double timeout_s)
{
	struct sampler smp = {.out = series, .e = e, .m = m};
	long long scans = bench_counter(e, "full_scans"), last_value = -1;
	int same = 0;
	double t_value = -1, result = -1;
	uint64_t t0_ns = m->t0;
	double *read_max_s = &m->read_max_s;

	*read_max_s = 0;
	atomic_init(&smp.stop, false);
	if (series && pthread_create(&smp.thread, NULL, sample, &smp))
		series = NULL;
	for (;;) {
		/* The time is taken after the read: a read that waited for the
		 * engine must not date a scan end too early. */
		uint64_t r0 = now_ns();
		long long s = bench_counter(e, "full_scans");
		double t = secs_since(t0_ns), r = secs_since(r0);
		if (r > *read_max_s)
			*read_max_s = r;
		if (s > scans) {
			/* A scan ended: compare what it saved with the last one. */
			long long saved = bench_saved_pages(e);
			scans = s;
			if (saved == last_value && saved > 0) {
				if (++same == 2) {
					result = t_value;
					break;
				}
			} else {
				last_value = saved;
				t_value = t;
				same = 0;
			}
		}
		if (t > timeout_s)
			break;
		sleep_ms(1);
	}
	if (series) {
		atomic_store(&smp.stop, true);
		pthread_join(smp.thread, NULL);
	}
	return result;
}

/* ---- one merge measurement ---- */

void bench_merge_begin(struct engine *e, const struct span *spans, size_t nspans,
		       struct merge_run *m)
{
	memset(m, 0, sizeof(*m));
	m->base_kb = mem_used_kb();
	m->base_proc_kb = process_memory_kb(e);
	m->base_pss_kb = self_rollup_kb("Pss");
	m->base_maps = self_map_count();
	busy_start(e);
	m->cpu0 = bench_cpu_ns(e);
	m->t0 = now_ns();
	for (size_t i = 0; i < nspans; i++) {
		int err = bench_advise(e, spans[i].addr, spans[i].len, true);
		if (err) {
			fprintf(stderr, "bench: madvise(MERGEABLE): %s\n", strerror(-err));
			exit(1);
		}
	}
	bench_run(e, 1);
}

void bench_merge_end(struct engine *e, struct merge_run *m)
{
	busy_stop(e);
	m->cpu_s = (double)(bench_cpu_ns(e) - m->cpu0) / 1e9;
	/* The counters first: a library read can wait for a batch, and the
	 * memory read after it must not see more merges than they say. */
	long long saved = bench_saved_pages(e);
	m->saved_mib = (double)saved * PG / MIB;
	m->returned_mib = (double)(m->base_kb - mem_used_kb()) / 1024.0;
	m->pss_returned_mib = (double)(m->base_pss_kb - self_rollup_kb("Pss")) / 1024.0;
	m->maps_added = self_map_count() - m->base_maps;
	/* The kernel's metadata lives in slab caches, outside this process's
	 * Pss; the library's is inside it (heap and mmap).  Net of it, both
	 * count the same thing. */
	m->net_returned_mib = m->pss_returned_mib;
	if (e->kind == ENGINE_LIB && m->maps_added > 0) /* the mappings' slab */
		m->net_returned_mib -= (double)m->maps_added * MAPPING_SLAB_BYTES / MIB;
	if (e->kind == ENGINE_KERNEL)
		m->net_returned_mib -=
		    metadata_per_page(e) * (double)bench_counter(e, "ksm_rmap_items") / MIB;
}

void bench_merge_report(const struct bench_opts *o, const struct merge_run *m)
{
	bench_result(o, "cpu", "s", m->cpu_s);
	/* This process's Pss is exact for both engines (a KSM page or a pool
	 * page counts once however often it is mapped) and immune to other
	 * processes; the system-wide meminfo drop is noisier on a shared
	 * machine but sees everything (the pool is Shmem). */
	bench_result(o, "returned", "MiB", m->pss_returned_mib);
	bench_result(o, "returned_net", "MiB", m->net_returned_mib);
	bench_result(o, "returned_meminfo", "MiB", m->returned_mib);
	bench_result(o, "saved_by_counters", "MiB", m->saved_mib);
	bench_result(o, "mappings_added", "VMAs", (double)m->maps_added);
	if (m->read_max_s > 0)
		bench_result(o, "counter_read_max", "ms", m->read_max_s * 1e3);
}

/* The size of one object of a kernel slab cache (merged caches are
 * symlinks in /sys/kernel/slab, and absent from /proc/slabinfo). */
static double slab_size(const char *cache)
{
	char path[128], buf[32];
	snprintf(path, sizeof(path), "/sys/kernel/slab/%s/slab_size", cache);
	return procfs_read(path, buf, sizeof(buf)) ? 0 : atof(buf);
}

double metadata_per_page(struct engine *e)
{
	if (e->kind == ENGINE_LIB)
		return (double)bench_counter(e, "metadata_bytes_per_page");
	long long items = bench_counter(e, "ksm_rmap_items");
	if (items <= 0)
		return -1;
	/* One rmap_item per scanned page, one stable_node per KSM page and
	 * per chain head, one mm_slot for this process. */
	double nodes =
	    (double)(bench_counter(e, "pages_shared") + bench_counter(e, "stable_node_chains"));
	return ((double)items * slab_size("ksm_rmap_item") + nodes * slab_size("ksm_stable_node") +
		slab_size("ksm_mm_slot")) /
	       (double)items;
}

int bench_converge(struct bench *b, void *addr, size_t len, double timeout_s)
{
	struct span s = {addr, len};
	bench_merge_begin(&b->e, &s, 1, &b->m);
	b->m.wait_s = wait_converged(&b->e, &b->m, NULL, timeout_s);
	bench_merge_end(&b->e, &b->m);
	if (b->m.wait_s < 0) {
		fprintf(stderr, "%s: not converged in %.0f s\n", b->o.workload, timeout_s);
		return 1;
	}
	bench_result(&b->o, "converge", "s", b->m.wait_s);
	bench_merge_report(&b->o, &b->m);
	return 0;
}

void bench_init(struct bench *b, int argc, char **argv, const char *workload)
{
	memset(b, 0, sizeof(*b));
	bench_parse(argc, argv, workload, &b->o);
	bench_open(&b->e, &b->o, BENCH_PAGES_TO_SCAN);
}
