// SPDX-License-Identifier: MIT
/*
 * adv_window.c - a merge nothing can notice (issue 11): reads of every kind
 * into memory that merges and unmerges continuously never fail, never come
 * back short and never lose what they read; threads that block every
 * signal write into it and live; unmerging under load fails no read.
 *
 * CMake runs each of these under every window mechanism the machine
 * allows: the default (userfaultfd handling kernel faults, as root),
 * SAMEPAGE_WINDOW=uffd-user and SAMEPAGE_WINDOW=mprotect.
 */
#include "adv_util.h"

#include <stdbool.h>
#include <sys/socket.h>
#include <grp.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>

#define IO_PAGES 1024 /* 4 MiB: two contents, merging into two KSM pages */
#define IO_THREADS 4

static char *io_area;
static atomic_long io_calls, io_efault, io_short, io_lost;
static int src_fd, direct_fd = -1;
static char *src_a, *src_b; /* what the two sources hold */

/* The direct-I/O source: a file on a file system that takes O_DIRECT
 * (tmpfs does not).  Tries the working directory (ctest's build tree). */
static void open_direct_source(void)
{
	char path[] = "samepage-direct-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return;
	unlink(path);
	if (pwrite(fd, src_a, PG, 0) != (ssize_t)PG || pwrite(fd, src_b, PG, PG) != (ssize_t)PG ||
	    fsync(fd)) {
		close(fd);
		return;
	}
	char fdpath[64];
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", fd);
	direct_fd = open(fdpath, O_RDONLY | O_DIRECT);
	close(fd);
	if (direct_fd >= 0) {
		char *probe = aligned_alloc(PG, PG);
		if (pread(direct_fd, probe, PG, 0) != (ssize_t)PG) {
			close(direct_fd);
			direct_fd = -1;
		}
		free(probe);
	}
}

/* One reader: reads content A or B into its own pages with one kind of
 * call, and checks the page holds what was read. */
static void *reader(void *arg)
{
	long t = (long)arg;
	int sv[2] = {-1, -1};
	uint64_t s = 0x9e3779b97f4a7c15ULL * (uint64_t)(t + 1);
	if (t == 3)
		REQUIRE(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
	while (!atomic_load(&stop_flag)) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		size_t pg = (s % (IO_PAGES / IO_THREADS)) * IO_THREADS + (size_t)t;
		char *p = io_area + pg * PG;
		bool b = s & 1;
		const char *want = b ? src_b : src_a;
		ssize_t n;
		switch (t) {
		case 0: n = pread(src_fd, p, PG, b ? PG : 0); break;
		case 1: {
			struct iovec iov[2] = {{p, PG / 2}, {p + PG / 2, PG / 2}};
			n = preadv(src_fd, iov, 2, b ? PG : 0);
			break;
		}
		case 2:
			n = direct_fd >= 0 ? pread(direct_fd, p, PG, b ? PG : 0)
					   : pread(src_fd, p, PG, b ? PG : 0);
			break;
		default:
			REQUIRE(send(sv[0], want, PG, 0) == (ssize_t)PG);
			n = recv(sv[1], p, PG, 0);
			break;
		}
		atomic_fetch_add(&io_calls, 1);
		if (n < 0 && errno == EFAULT)
			atomic_fetch_add(&io_efault, 1);
		else if (n != (ssize_t)PG)
			atomic_fetch_add(&io_short, 1);
		else if (memcmp(p, want, PG))
			atomic_fetch_add(&io_lost, 1);
	}
	if (sv[0] >= 0) {
		close(sv[0]);
		close(sv[1]);
	}
	return NULL;
}

/* Reads of every kind while the area merges and unmerges continuously
 * (run 1, then run 2, over and over): none fails, none is short, none is
 * lost. */
void test_io_during_merge(void)
{
	samepage_t *sp = open_fast();
	src_a = malloc(PG);
	src_b = malloc(PG);
	memset(src_a, 'A', PG);
	memset(src_b, 'B', PG);
	src_fd = memfd_create("src", 0);
	REQUIRE(src_fd >= 0);
	REQUIRE(pwrite(src_fd, src_a, PG, 0) == (ssize_t)PG);
	REQUIRE(pwrite(src_fd, src_b, PG, PG) == (ssize_t)PG);
	open_direct_source();
	io_area = map_pages(IO_PAGES);
	memset(io_area, 'A', IO_PAGES * PG);
	REQUIRE(samepage_madvise(sp, io_area, IO_PAGES * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	pthread_t t[IO_THREADS];
	for (long i = 0; i < IO_THREADS; i++)
		REQUIRE(pthread_create(&t[i], NULL, reader, (void *)i) == 0);
	long long merged = 0;
	for (int round = 0; round < 40; round++) {
		wr(sp, "run", "1");
		REQUIRE(wait_scans(sp, 2) == 0);
		merged += rd(sp, "pages_sharing");
		wr(sp, "run", "2");
	}
	atomic_store(&stop_flag, 1);
	for (int i = 0; i < IO_THREADS; i++)
		pthread_join(t[i], NULL);
	printf("window %lld, direct I/O %s: %ld reads, %ld EFAULT, %ld short, %ld lost; "
	       "pages_sharing summed over rounds %lld, merges_skipped_io %lld\n",
	       rd(sp, "merge_window"), direct_fd >= 0 ? "yes" : "no (no O_DIRECT here)",
	       atomic_load(&io_calls), atomic_load(&io_efault), atomic_load(&io_short),
	       atomic_load(&io_lost), merged, rd(sp, "merges_skipped_io"));
	CHECK(atomic_load(&io_calls) > 0);
	CHECK_EQ_INT(atomic_load(&io_efault), 0);
	CHECK_EQ_INT(atomic_load(&io_short), 0);
	CHECK_EQ_INT(atomic_load(&io_lost), 0);
	CHECK(merged > 0); /* the pages did merge meanwhile */
	samepage_close(sp);
}

/* Writers that block every signal (as VM monitors' vCPU and I/O threads
 * do) write into pages that merge continuously: the process lives and no
 * write is lost. */
static char *sb_area, *sb_shadow;
static atomic_long sb_bad, sb_writes;
#define SB_PAGES 512

static void *blocked_writer(void *arg)
{
	long t = (long)arg;
	sigset_t all;
	sigfillset(&all);
	REQUIRE(pthread_sigmask(SIG_BLOCK, &all, NULL) == 0);
	uint64_t s = 0x2545f4914f6cdd1dULL * (uint64_t)(t + 1);
	while (!atomic_load(&stop_flag)) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		size_t pg = (s % (SB_PAGES / 2)) * 2 + (size_t)t;
		char v = (char)('a' + (s >> 20) % 3); /* few contents: they merge again */
		memset(sb_area + pg * PG, v, PG);
		memset(sb_shadow + pg * PG, v, PG);
		atomic_fetch_add(&sb_writes, 1);
		if (memcmp(sb_area + pg * PG, sb_shadow + pg * PG, PG))
			atomic_fetch_add(&sb_bad, 1);
	}
	return NULL;
}

void test_signal_blocking_writer(void)
{
	samepage_t *sp = open_fast();
	sb_area = map_pages(SB_PAGES);
	sb_shadow = malloc(SB_PAGES * PG);
	memset(sb_area, 'a', SB_PAGES * PG);
	memset(sb_shadow, 'a', SB_PAGES * PG);
	REQUIRE(samepage_madvise(sp, sb_area, SB_PAGES * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	pthread_t t[2];
	for (long i = 0; i < 2; i++)
		REQUIRE(pthread_create(&t[i], NULL, blocked_writer, (void *)i) == 0);
	REQUIRE(wait_scans(sp, 200) == 0);
	atomic_store(&stop_flag, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	printf("window %lld: %ld writes by signal-blocking threads, %lld waited for a merge\n",
	       rd(sp, "merge_window"), atomic_load(&sb_writes), rd(sp, "merge_window_waits"));
	CHECK_EQ_INT(atomic_load(&sb_bad), 0);
	CHECK(memcmp(sb_area, sb_shadow, SB_PAGES * PG) == 0);
	/* The scanner's copy of a page may hold other bytes than the checksum
	 * it took a moment before: a strip linked KSM pages of such copies
	 * into the chain of another content (the sanitizer build's invariant
	 * aborted about once in 150 runs).  Once all is unmerged, no chain
	 * may be left counted. */
	wr(sp, "run", "2");
	CHECK_EQ_INT(rd(sp, "pages_shared"), 0);
	CHECK_EQ_INT(rd(sp, "stable_node_chains"), 0);
	CHECK_EQ_INT(rd(sp, "stable_node_dups"), 0);
	CHECK(memcmp(sb_area, sb_shadow, SB_PAGES * PG) == 0);
	samepage_close(sp);
}

/* run = 2 on a large merged area while readers read into it: no read
 * fails or is lost (unmerging works a chunk at a time). */
void test_unmerge_under_load(void)
{
	samepage_t *sp = open_fast();
	src_a = malloc(PG);
	src_b = malloc(PG);
	memset(src_a, 'A', PG);
	memset(src_b, 'B', PG);
	src_fd = memfd_create("src", 0);
	REQUIRE(pwrite(src_fd, src_a, PG, 0) == (ssize_t)PG);
	REQUIRE(pwrite(src_fd, src_b, PG, PG) == (ssize_t)PG);
	const size_t n = 32768; /* 128 MiB */
	char *big = map_pages(n);
	memset(big, 'A', n * PG);
	io_area = big;
	REQUIRE(samepage_madvise(sp, big, n * PG, SAMEPAGE_MERGEABLE) == 0);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 2) == 0);
	CHECK(rd(sp, "pages_sharing") > (long long)n / 2);
	pthread_t t[2];
	for (long i = 0; i < 2; i++)
		REQUIRE(pthread_create(&t[i], NULL, reader, (void *)i) == 0);
	for (int round = 0; round < 3; round++) {
		wr(sp, "run", "2");
		wr(sp, "run", "1");
		REQUIRE(wait_scans(sp, 2) == 0);
	}
	wr(sp, "run", "2");
	atomic_store(&stop_flag, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	printf("window %lld: %ld reads during unmerges, %ld EFAULT, %ld short, %ld lost\n",
	       rd(sp, "merge_window"), atomic_load(&io_calls), atomic_load(&io_efault),
	       atomic_load(&io_short), atomic_load(&io_lost));
	CHECK_EQ_INT(atomic_load(&io_efault), 0);
	CHECK_EQ_INT(atomic_load(&io_short), 0);
	CHECK_EQ_INT(atomic_load(&io_lost), 0);
	CHECK_EQ_INT(rd(sp, "pages_shared"), 0);
	CHECK_EQ_U64(pages_mapping_pool(big, n), 0);
	samepage_close(sp);
}

/* SAMEPAGE_WINDOW=uffd where kernel-mode userfaultfd is refused (an
 * unprivileged process, vm.unprivileged_userfaultfd 0): the next
 * mechanism, as samepage(3) says, uffd-user; it fell to mprotect. */
void test_window_forced_uffd_falls_back(void)
{
	pid_t pid = adv_fork_as_nobody();
	if (pid == 0) {
		setenv("SAMEPAGE_WINDOW", "uffd", 1);
		samepage_t *sp;
		if (samepage_open(&sp))
			_exit(3);
		long long w = rd(sp, "merge_window");
		printf("# as nobody, SAMEPAGE_WINDOW=uffd: merge_window %lld\n", w);
		fflush(stdout);
		samepage_close(sp);
		_exit(w == 0 ? 1 : 0);
	}
	CHECK_EQ_INT(adv_wait(pid), 0);
}

/* Two datagram sockets bound to abstract names, so that a receive has a
 * sender's address to write. */
static void dgram_pair(int *tx, int *rx)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	for (int i = 0; i < 2; i++) {
		int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		REQUIRE(fd >= 0);
		snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, "samepage-test-%d-%d", getpid(),
			 i);
		REQUIRE(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
		*(i ? rx : tx) = fd;
	}
	REQUIRE(getsockname(*rx, (struct sockaddr *)&a, &(socklen_t){sizeof(a)}) == 0);
	REQUIRE(connect(*tx, (struct sockaddr *)&a, sizeof(a)) == 0);
}

/* Finding 49: recvfrom's address and its length, and recvmsg's header
 * (msg_namelen, msg_controllen, msg_flags come back in it), are written
 * by the kernel as the data is: in pages that merge, under the uffd-user
 * and mprotect windows, the call failed with EFAULT and the datagram,
 * already taken off the socket, was lost.  The pages here get the same
 * bytes at every call and have a twin, so they merge again and again; the
 * debug build holds each window open 5 ms. */
void test_recv_side_buffers_during_merges(void)
{
	const size_t n = 16;
	setenv("SAMEPAGE_DEBUG_PAUSE", "merge_window:5000", 1);
	char *p;
	samepage_t *sp = adv_registered(&p, n, 'r');
	int tx, rx;
	dgram_pair(&tx, &rx);
	/* Page 0: recvfrom's address and length; page 2: recvmsg's header
	 * (its buffer and its address are the test's own).  Pages 1 and 3
	 * are their twins. */
	struct sockaddr_un *from = (struct sockaddr_un *)p;
	socklen_t *fromlen = (socklen_t *)(p + PG - sizeof(socklen_t));
	struct msghdr *mh = (struct msghdr *)(p + 2 * PG);
	char data[64], got[64];
	struct iovec iov = {got, sizeof(got)};
	struct sockaddr_un name;
	*fromlen = sizeof(*from);
	memset(from, 0, sizeof(*from));
	*mh = (struct msghdr){
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_name = &name, .msg_namelen = sizeof(name)};
	wr(sp, "run", "1");
	long calls = 0, failed = 0, lost = 0;
	for (int round = 0; round < 20; round++) {
		for (int k = 0; k < 40; k++, calls++) {
			snprintf(data, sizeof(data), "datagram %ld", calls);
			REQUIRE(send(tx, data, sizeof(data), 0) == (ssize_t)sizeof(data));
			ssize_t r;
			memset(got, 0, sizeof(got));
			if (k & 1) {
				mh->msg_namelen = sizeof(name);
				r = recvmsg(rx, mh, MSG_DONTWAIT);
			} else {
				r = recvfrom(rx, got, sizeof(got), MSG_DONTWAIT,
					     (struct sockaddr *)from, fromlen);
			}
			if (r < 0) {
				if (!failed)
					fprintf(stderr, "%s: %s\n", k & 1 ? "recvmsg" : "recvfrom",
						strerror(errno));
				failed++;
				if (recv(rx, got, sizeof(got), MSG_DONTWAIT) < 0)
					lost++; /* taken by the failed call */
			} else if (r != (ssize_t)sizeof(data) || memcmp(got, data, sizeof(data))) {
				lost++;
			}
			if (calls == 0) /* the bytes every call writes: the twins */
				memcpy(p + PG, p, PG), memcpy(p + 3 * PG, p + 2 * PG, PG);
			usleep(500);
		}
		check_tick();
	}
	printf("# %ld calls: %ld failed, %ld datagrams lost; merged at the end %zu, "
	       "merge_window_waits %lld\n",
	       calls, failed, lost, pages_mapping_pool(p, n), rd(sp, "merge_window_waits"));
	CHECK_EQ_INT(failed, 0);
	CHECK_EQ_INT(lost, 0);
	CHECK(rd(sp, "pages_sharing") > 0);
	close(tx);
	close(rx);
	samepage_close(sp);
}

/* Regression: readv, recvmsg and recvmmsg given a bad pointer (an iovec
 * array, a message header) crashed the program with SIGSEGV in the
 * library's wrapper, which read them to mark the buffers in flight; the
 * kernel refuses them with EFAULT, and so must the call here.  A page
 * never mapped and a PROT_NONE page, with an engine open, under each
 * window mechanism.  (sigprocmask is not among them: the C library reads
 * its set itself.) */
void test_reads_with_bad_pointers(void)
{
	char *p;
	samepage_t *sp = adv_registered(&p, 4, 'b');
	char *none = mmap(NULL, PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	/* Below vm.mmap_min_addr: never mapped (a page unmapped here was
	 * mapped again by the time of the calls once, under ASan). */
	char *gone = (char *)(uintptr_t)PG;
	REQUIRE(none != MAP_FAILED);
	int tx, rx;
	dgram_pair(&tx, &rx);
	char *bad[] = {none, gone};
	for (int b = 0; b < 2; b++) {
		ssize_t r;
		errno = 0;
		r = readv(rx, (const struct iovec *)bad[b], 1);
		CHECK(r == -1 && errno == EFAULT);
		errno = 0;
		r = recvmsg(rx, (struct msghdr *)bad[b], MSG_DONTWAIT);
		CHECK(r == -1 && errno == EFAULT);
		errno = 0;
		r = recvmmsg(rx, (struct mmsghdr *)bad[b], 1, MSG_DONTWAIT, NULL);
		CHECK(r == -1 && errno == EFAULT);
		REQUIRE(send(tx, "x", 1, 0) == 1);
		errno = 0;
		r = recvfrom(rx, p, 1, MSG_DONTWAIT, (struct sockaddr *)p, (socklen_t *)bad[b]);
		CHECK(r == -1 && errno == EFAULT);
		recv(rx, p, 1, MSG_DONTWAIT); /* the datagram, if the kernel kept it */
	}
	close(tx);
	close(rx);
	munmap(none, PG);
	samepage_close(sp);
}

/* A receive that blocks, with its header on a thread's stack and its
 * buffer in the program's data or heap, kept every page mapped between the
 * two from merging while it waited (its buffers were marked in flight as
 * one span): now the buffers of a call far apart are spans of their own.
 * Here the buffer is the page below a registered range and the header and
 * address the page above it. */
static char *blocked_buf;
static struct msghdr *blocked_mh;
static int blocked_rx;
static atomic_int blocked_tid;

static void *blocked_receiver(void *arg)
{
	(void)arg;
	atomic_store(&blocked_tid, (int)syscall(SYS_gettid));
	return (void *)(intptr_t)recvmsg(blocked_rx, blocked_mh, 0);
}

void test_blocked_recv_spares_merging(void)
{
	const size_t n = 256;
	int tx;
	dgram_pair(&tx, &blocked_rx);
	samepage_t *sp = open_fast();
	char *all = map_pages(n + 2), *p = all + PG;
	blocked_buf = all;
	blocked_mh = (struct msghdr *)(all + (n + 1) * PG);
	struct iovec *iov = (struct iovec *)(blocked_mh + 1);
	*iov = (struct iovec){blocked_buf, 64};
	*blocked_mh = (struct msghdr){.msg_iov = iov,
				      .msg_iovlen = 1,
				      .msg_name = iov + 1,
				      .msg_namelen = sizeof(struct sockaddr_un)};
	memset(p, 'b', n * PG);
	REQUIRE(samepage_madvise(sp, p, n * PG, SAMEPAGE_MERGEABLE) == 0);
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, blocked_receiver, NULL) == 0);
	while (!atomic_load(&blocked_tid))
		usleep(1000);
	/* Waits until the thread is inside the system call, past the wrapper. */
	char path[64], line[64] = "";
	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", atomic_load(&blocked_tid));
	for (int i = 0; i < 5000 && atoi(line) != SYS_recvmsg; i++) {
		usleep(1000);
		FILE *f = fopen(path, "r");
		REQUIRE(f);
		if (!fgets(line, sizeof(line), f))
			line[0] = 0;
		fclose(f);
	}
	REQUIRE(atoi(line) == SYS_recvmsg);
	wr(sp, "run", "1");
	REQUIRE(wait_scans(sp, 3) == 0);
	printf("# with a receive blocked: merged %zu of %zu, merges_skipped_io %lld\n",
	       pages_mapping_pool(p, n), n, rd(sp, "merges_skipped_io"));
	CHECK_EQ_U64(pages_mapping_pool(p, n), n);
	REQUIRE(send(tx, "wake", 5, 0) == 5);
	void *r;
	pthread_join(t, &r);
	CHECK_EQ_INT((intptr_t)r, 5);
	CHECK(strcmp(blocked_buf, "wake") == 0);
	close(tx);
	close(blocked_rx);
	samepage_close(sp);
}
