// SPDX-License-Identifier: MIT
/* test_prim.c - the engine's system layer (lib/prim-linux.c), tested
 * directly: it is linked with the library's internal symbols. */
#include "../../lib/internal.h"
#include "check.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096UL

/* Every line of /proc/self/maps, parsed independently with sscanf(3). */
struct maps_copy {
	struct map_entry e[4096];
	size_t n;
};

static int maps_copy_add(const struct map_entry *e, void *arg)
{
	struct maps_copy *c = arg;
	if (c->n < 4096)
		c->e[c->n] = *e;
	c->n++;
	return 0;
}

/* /proc/self/maps into buf with read(2) alone (no allocation that could
 * change the maps); its length. */
static size_t read_maps(char *buf, size_t cap)
{
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	size_t have = 0;
	ssize_t n;
	REQUIRE(fd >= 0);
	while ((n = read(fd, buf + have, cap - 1 - have)) > 0)
		have += (size_t)n;
	close(fd);
	REQUIRE(have < cap - 1);
	buf[have] = 0;
	return have;
}

/* Is line (without its newline) a whole line of text? */
static bool line_in(const char *text, const char *line)
{
	size_t len = strlen(line);
	for (const char *p = text; (p = strstr(p, line)); p++)
		if ((p == text || p[-1] == '\n') && p[len] == '\n')
			return true;
	return false;
}

/* The engine parses /proc/self/maps by hand (sscanf was a sixth of a
 * scanner's time with a few hundred thousand mappings): every line of a
 * real maps file must read as sscanf(3) reads it, and mappings made to
 * show each field (a 64-bit file offset, shared and private, each
 * protection, a path with spaces) must read as what was mapped. */
static void test_maps_parse(void)
{
	int fd = memfd_create("samepage test maps", 0);
	REQUIRE(fd >= 0);
	REQUIRE(ftruncate(fd, 1LL << 40) == 0); /* sparse: offsets above 4 GiB */
	struct stat st;
	REQUIRE(fstat(fd, &st) == 0);
	const off_t far = (off_t)0x876543000LL;
	char *shared = mmap(NULL, 2 * PG, PROT_READ, MAP_SHARED, fd, far);
	char *priv = mmap(NULL, PG, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, PG);
	char *anon = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(shared != MAP_FAILED && priv != MAP_FAILED && anon != MAP_FAILED);

	/* The maps as text just before and just after the engine's walk: a
	 * line the same in both (a mapping nothing changed meanwhile: the
	 * sanitizers' runtimes map and grow their own as they please) must
	 * read as sscanf reads it. */
	static char before[1 << 20], after[1 << 20];
	static struct maps_copy got;
	got.n = 0;
	REQUIRE(read_maps(before, sizeof(before)) > 0);
	REQUIRE(prim_maps_walk(0, maps_copy_add, &got) == 0);
	REQUIRE(read_maps(after, sizeof(after)) > 0);
	REQUIRE(got.n <= 4096);

	size_t k = 0, seen = 0, lines = 0, queried = 0, above = 0;
	for (char *line = before, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
		*nl = 0;
		lines++;
		if (!line_in(after, line))
			continue;
		unsigned long long start, end, off, inode;
		unsigned maj, min;
		char perms[5];
		REQUIRE(sscanf(line, "%llx-%llx %4s %llx %x:%x %llu", &start, &end, perms, &off,
			       &maj, &min, &inode) == 7);
		while (k < got.n && got.e[k].start < start)
			k++;
		CHECK(k < got.n && got.e[k].start == start); /* the walk saw this line too */
		if (k == got.n || got.e[k].start != start)
			continue;
		const struct map_entry *e = &got.e[k];
		CHECK_EQ_U64(e->end, end);
		CHECK_EQ_U64(e->pgoff, off);
		CHECK_EQ_U64(e->dev, makedev(maj, min));
		CHECK_EQ_U64(e->ino, inode);
		/* No file and not one of the kernel's own mappings ([vdso],
		 * [vvar], ...: no region holds them) */
		CHECK_EQ_INT(e->anon, inode == 0 && !kernel_mapping_named(strchr(line, '[')));
		CHECK_EQ_INT(e->shared, perms[3] == 's');
		CHECK_EQ_INT(e->prot, (perms[0] == 'r' ? PROT_READ : 0) |
					  (perms[1] == 'w' ? PROT_WRITE : 0) |
					  (perms[2] == 'x' ? PROT_EXEC : 0));
		seen++;
		/* A merge asks the kernel about one mapping (PROCMAP_QUERY):
		 * the same answer as the line.  ([vsyscall], above user space,
		 * is no mapping of the process: nothing to ask.) */
		struct map_entry q;
		if (!prim_map_at_works() || end > (1ULL << 47)) {
			above += end > (1ULL << 47);
			continue;
		}
		CHECK_EQ_INT(prim_map_at((uintptr_t)start + (end - start) / 2, &q), 0);
		CHECK_EQ_U64(q.start, start);
		CHECK_EQ_U64(q.end, end);
		CHECK_EQ_U64(q.pgoff, off);
		CHECK_EQ_U64(q.dev, e->dev);
		CHECK_EQ_U64(q.ino, e->ino);
		CHECK_EQ_INT(q.anon, inode == 0); /* the query says no name */
		CHECK_EQ_INT(q.shared, e->shared);
		CHECK_EQ_INT(q.prot, e->prot);
		queried++;
	}
	CHECK(seen * 2 > lines); /* most mappings did not change */
	struct map_entry none;
	if (prim_map_at_works()) {
		CHECK_EQ_U64(queried + above, seen);
		CHECK_EQ_INT(prim_map_at(0, &none), -ENOENT); /* nothing maps page 0 */
	} else {
		printf("SKIP: PROCMAP_QUERY (Linux 6.11): this kernel has none\n");
	}

	/* prim_maps_walk_range(): the full walk's mappings that meet the
	 * range, in order, the first one entered in its middle (without
	 * PROCMAP_QUERY: the full walk itself). */
	uintptr_t lo = (uintptr_t)anon + PG, hi = (uintptr_t)anon + 3 * PG;
	if ((uintptr_t)shared + 2 * PG > hi)
		hi = (uintptr_t)shared + 2 * PG;
	if ((uintptr_t)priv + PG > hi)
		hi = (uintptr_t)priv + PG;
	static struct maps_copy ranged;
	ranged.n = 0;
	REQUIRE(prim_maps_walk_range(lo, hi, maps_copy_add, &ranged) == 0);
	size_t meet = 0;
	for (size_t i = 0; i < got.n && i < 4096; i++) {
		const struct map_entry *e = &got.e[i];
		if (e->end <= lo || e->start >= hi)
			continue;
		if (prim_map_at_works() && meet < ranged.n) {
			const struct map_entry *r = &ranged.e[meet];
			CHECK(r->start == e->start && r->end == e->end && r->prot == e->prot &&
			      r->ino == e->ino && r->pgoff == e->pgoff && r->shared == e->shared);
		}
		meet++;
	}
	CHECK(meet >= 3); /* anon, priv and shared at least */
	CHECK_EQ_U64(ranged.n, prim_map_at_works() ? meet : got.n);

	int found = 0;
	for (size_t i = 0; i < got.n; i++) {
		const struct map_entry *e = &got.e[i];
		if (e->start == (uintptr_t)shared) {
			CHECK_EQ_U64(e->end, (uintptr_t)shared + 2 * PG);
			CHECK_EQ_U64(e->pgoff, (unsigned long long)far);
			CHECK_EQ_U64(e->dev, st.st_dev);
			CHECK_EQ_U64(e->ino, st.st_ino);
			CHECK(e->shared && !e->anon && e->prot == PROT_READ);
			found |= 1;
		} else if (e->start == (uintptr_t)priv) {
			CHECK_EQ_U64(e->pgoff, PG);
			CHECK_EQ_U64(e->ino, st.st_ino);
			CHECK(!e->shared && !e->anon && e->prot == (PROT_READ | PROT_EXEC));
			found |= 2;
		} else if (e->start <= (uintptr_t)anon && e->end >= (uintptr_t)anon + 3 * PG) {
			CHECK(!e->shared && e->anon && e->prot == (PROT_READ | PROT_WRITE));
			found |= 4;
		}
	}
	CHECK_EQ_INT(found, 7);
	munmap(shared, 2 * PG);
	munmap(priv, PG);
	munmap(anon, 3 * PG);
	close(fd);
}

/* The domain lock tells its unlocker whether a thread of another process
 * waited (domain_unlock(), from the futex word): what a scanner looks at
 * before it lets that thread have the lock (domain_hand_over()). */
static void test_domain_lock_waiters(void)
{
	struct domain *d =
	    mmap(NULL, sizeof(*d), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	REQUIRE(d != MAP_FAILED);
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&d->lock, &a);
	CHECK(!prim_mutex_held(&d->lock));
	CHECK_EQ_INT(domain_lock(d), 0);
	CHECK(prim_mutex_held(&d->lock));
	CHECK(!domain_unlock(d)); /* nobody waited */
	CHECK_EQ_INT(domain_lock(d), 0);
	int got[2];
	REQUIRE(pipe(got) == 0);
	pid_t child = fork();
	REQUIRE(child >= 0);
	if (child == 0) {
		domain_lock(d);
		_exit(write(got[1], "x", 1) == 1 ? 0 : 1); /* dies holding it */
	}
	for (int i = 0; i < 100000 && !prim_mutex_waiters(&d->lock); i++)
		usleep(100); /* the limit only stops a hang */
	CHECK(prim_mutex_waiters(&d->lock));
	CHECK(domain_unlock(d)); /* the child waited */
	domain_hand_over(d);
	char c;
	CHECK_EQ_INT(read(got[0], &c, 1), 1); /* it had the lock */
	int st;
	REQUIRE(waitpid(child, &st, 0) == child);
	CHECK_EQ_INT(domain_lock(d), EOWNERDEAD); /* robust, as before */
	pthread_mutex_consistent(&d->lock);
	domain_unlock(d);
	close(got[0]);
	close(got[1]);
	munmap(d, sizeof(*d));
}

int main(void)
{
	if (sysconf(_SC_PAGESIZE) != (long)PG)
		SKIP("the test's offsets assume 4 KiB pages; this kernel's are %ld bytes",
		     sysconf(_SC_PAGESIZE));
	test_maps_parse();
	test_domain_lock_waiters();
	return check_report("prim");
}
