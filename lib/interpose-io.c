// SPDX-License-Identifier: MIT
/*
 * interpose-io.c - the C library's reading calls, so that a merge never
 * makes them fail or lose what they read.
 *
 * A read into memory that is being merged meets the merge window.  With
 * userfaultfd handling kernel faults (guard.c's "uffd"), the kernel makes
 * the read wait; with the other mechanisms it would fail with EFAULT or
 * come back short.  And a direct-I/O read pins the page and writes it
 * later, whatever the window: if the page merged meanwhile, the data would
 * land in the page that was replaced.  So every reading call below marks
 * what the kernel writes for it in flight for its duration (io_begin/
 * io_end, guard.c): its buffers, and a receive's sender address, message
 * header and timeout too (written as the data is: an EFAULT there loses a
 * datagram already taken off the socket).  It waits for a window open
 * there to close before it starts, and no window opens over it until it
 * returns.  libaio's reads (io_submit) stay in
 * flight until their completion is seen: returned by io_getevents, or
 * found in the completion ring (programs such as QEMU read the ring
 * themselves), io_cancel or io_destroy.
 *
 * The calls: read, pread, readv, preadv (and their 64-bit, v2 and
 * _FORTIFY_SOURCE variants), recv, recvfrom, recvmsg, recvmmsg; libaio's
 * io_submit, io_getevents, io_cancel, io_destroy; and, while windows use
 * mprotect, sigprocmask and pthread_sigmask, which may not block SIGSEGV
 * or SIGBUS (the window's writer waits in the SIGSEGV handler).
 *
 * A program's syscall() of these reaches them under the preload library
 * (preload.c).  Not seen: system call instructions in the program's own
 * code, the C library's internal reads (stdio's buffers), io_uring.  With
 * no engine open, each call is one atomic load and the real call.
 */
#include "internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <linux/aio_abi.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#define EXPORT __attribute__((visibility("default")))

#define active() interpose_active()

/* The next definition of name: the C library's (or libaio's). */
static void *real(const char *name, void *_Atomic *cache)
{
	void *f = atomic_load(cache);
	if (!f) {
		f = dlsym(RTLD_NEXT, name);
		atomic_store(cache, f);
	}
	return f;
}
#define REAL(name, type) ((type)real(#name, &real_##name))

/* Addresses, not pointers: gcc takes a const pointer argument as a read
 * of the buffer the call is about to fill (-Wmaybe-uninitialized). */
static uintptr_t page_down(uintptr_t p)
{
	return p & ~(PAGE_SIZE - 1);
}

static uintptr_t page_up(uintptr_t p, size_t len)
{
	return (p + len + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
}

/*
 * The buffers one call writes, as a few spans of pages.  Buffers near each
 * other share a span (the pages between them lose a little merging while
 * the call lasts); distant ones (a header on the stack, data on the heap)
 * get spans of their own, so a call that blocks keeps only its own pages
 * from merging, not everything mapped between them.  Past FLIGHT_SPANS, a
 * buffer joins the nearest span.
 */
#define FLIGHT_SPANS 8
#define FLIGHT_GAP (16 * PAGE_SIZE)
#define FLIGHT_MAX_VECS 1024 /* UIO_MAXIOV: the kernel refuses more (or reads no more) */

struct flight {
	int n;
	uintptr_t start[FLIGHT_SPANS], end[FLIGHT_SPANS];
};

static void flight_add(struct flight *f, uintptr_t p, size_t len)
{
	if (!p || !len)
		return;
	uintptr_t s = page_down(p), e = page_up(p, len), best_gap = UINTPTR_MAX;
	int best = -1;
	for (int i = 0; i < f->n; i++) {
		uintptr_t gap = s > f->end[i]	  ? s - f->end[i]
				: f->start[i] > e ? f->start[i] - e
						  : 0;
		if (gap < best_gap) {
			best = i;
			best_gap = gap;
		}
	}
	if (best < 0 || (best_gap > FLIGHT_GAP && f->n < FLIGHT_SPANS)) {
		f->start[f->n] = s;
		f->end[f->n++] = e;
		return;
	}
	f->start[best] = s < f->start[best] ? s : f->start[best];
	f->end[best] = e > f->end[best] ? e : f->end[best];
}

/* The application's arrays and headers are read guarded, as the kernel
 * reads them: a bad pointer is the kernel's to refuse (EFAULT), not a
 * crash here.  What cannot be read adds nothing. */
static void flight_iov(struct flight *f, const struct iovec *iov, size_t n)
{
	struct iovec v[32];
	for (size_t i = 0; iov && i < n && i < FLIGHT_MAX_VECS; i += 32) {
		size_t k = n - i < 32 ? n - i : 32;
		if (!guarded_copy(v, iov + i, k * sizeof(*v)))
			return;
		for (size_t j = 0; j < k; j++)
			flight_add(f, (uintptr_t)v[j].iov_base, v[j].iov_len);
	}
}

/* What recvmsg writes: the data, the control messages, the sender's
 * address, and the header itself (msg_namelen, msg_controllen, msg_flags). */
static void flight_msg(struct flight *f, const struct msghdr *mp)
{
	struct msghdr m;
	if (!guarded_copy(&m, mp, sizeof(m)))
		return;
	flight_iov(f, m.msg_iov, m.msg_iovlen);
	flight_add(f, (uintptr_t)m.msg_control, m.msg_controllen);
	flight_add(f, (uintptr_t)m.msg_name, m.msg_namelen);
	flight_add(f, (uintptr_t)mp, sizeof(m));
}

static void flight_begin(const struct flight *f, uintptr_t key)
{
	for (int i = 0; i < f->n; i++)
		io_begin(f->start[i], f->end[i], key);
}

/* Runs the call with the flight's spans in flight; saves the call's errno.
 * Its key (odd: never an iocb's address) ends every span at once. */
#define FLIGHT(f, call)                                                                            \
	({                                                                                         \
		uintptr_t k_ = (uintptr_t)(f) | 1;                                                 \
		bool on_ = (f)->n > 0; /* built only when active() */                              \
		if (on_)                                                                           \
			flight_begin(f, k_);                                                       \
		__typeof__(call) r_ = (call);                                                      \
		int saved_ = errno;                                                                \
		if (on_)                                                                           \
			io_end(k_);                                                                \
		errno = saved_;                                                                    \
		r_;                                                                                \
	})

/* Runs the call with one buffer's pages in flight (a flight of one span). */
#define BUF_IN_FLIGHT(buf, len, call)                                                              \
	({                                                                                         \
		struct flight f__ = {0};                                                           \
		if (active())                                                                      \
			flight_add(&f__, (uintptr_t)(buf), len);                                   \
		FLIGHT(&f__, call);                                                                \
	})

/* ---- read(2) and its kin ---- */

static void *_Atomic real_read, *_Atomic real___read_chk, *_Atomic real_pread,
    *_Atomic real_pread64, *_Atomic real___pread_chk, *_Atomic real___pread64_chk,
    *_Atomic real_readv, *_Atomic real_preadv, *_Atomic real_preadv64, *_Atomic real_preadv2,
    *_Atomic real_preadv64v2, *_Atomic real_recv, *_Atomic real___recv_chk, *_Atomic real_recvfrom,
    *_Atomic real___recvfrom_chk, *_Atomic real_recvmsg, *_Atomic real_recvmmsg;

typedef ssize_t (*read_fn)(int, void *, size_t);
typedef ssize_t (*read_chk_fn)(int, void *, size_t, size_t);
typedef ssize_t (*pread_fn)(int, void *, size_t, off_t);
typedef ssize_t (*pread_chk_fn)(int, void *, size_t, off_t, size_t);
typedef ssize_t (*readv_fn)(int, const struct iovec *, int);
typedef ssize_t (*preadv_fn)(int, const struct iovec *, int, off_t);
typedef ssize_t (*preadv2_fn)(int, const struct iovec *, int, off_t, int);
typedef ssize_t (*recv_fn)(int, void *, size_t, int);
typedef ssize_t (*recv_chk_fn)(int, void *, size_t, size_t, int);
typedef ssize_t (*recvfrom_fn)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
typedef ssize_t (*recvfrom_chk_fn)(int, void *, size_t, size_t, int, struct sockaddr *,
				   socklen_t *);
typedef ssize_t (*recvmsg_fn)(int, struct msghdr *, int);
typedef int (*recvmmsg_fn)(int, struct mmsghdr *, unsigned int, int, struct timespec *);

EXPORT ssize_t read(int fd, void *buf, size_t len)
{
	return BUF_IN_FLIGHT(buf, len, REAL(read, read_fn)(fd, buf, len));
}

EXPORT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
	return BUF_IN_FLIGHT(buf, len, REAL(__read_chk, read_chk_fn)(fd, buf, len, buflen));
}

EXPORT ssize_t pread(int fd, void *buf, size_t len, off_t off)
{
	return BUF_IN_FLIGHT(buf, len, REAL(pread, pread_fn)(fd, buf, len, off));
}

EXPORT ssize_t pread64(int fd, void *buf, size_t len, off_t off)
{
	return BUF_IN_FLIGHT(buf, len, REAL(pread64, pread_fn)(fd, buf, len, off));
}

EXPORT ssize_t __pread_chk(int fd, void *buf, size_t len, off_t off, size_t buflen)
{
	return BUF_IN_FLIGHT(buf, len, REAL(__pread_chk, pread_chk_fn)(fd, buf, len, off, buflen));
}

EXPORT ssize_t __pread64_chk(int fd, void *buf, size_t len, off_t off, size_t buflen)
{
	return BUF_IN_FLIGHT(buf, len,
			     REAL(__pread64_chk, pread_chk_fn)(fd, buf, len, off, buflen));
}

#define IOV_IN_FLIGHT(iov, n, call)                                                                \
	({                                                                                         \
		struct flight f__ = {0};                                                           \
		if ((n) > 0 && active())                                                           \
			flight_iov(&f__, iov, (size_t)(n));                                        \
		FLIGHT(&f__, call);                                                                \
	})

EXPORT ssize_t readv(int fd, const struct iovec *iov, int n)
{
	return IOV_IN_FLIGHT(iov, n, REAL(readv, readv_fn)(fd, iov, n));
}

EXPORT ssize_t preadv(int fd, const struct iovec *iov, int n, off_t off)
{
	return IOV_IN_FLIGHT(iov, n, REAL(preadv, preadv_fn)(fd, iov, n, off));
}

EXPORT ssize_t preadv64(int fd, const struct iovec *iov, int n, off_t off)
{
	return IOV_IN_FLIGHT(iov, n, REAL(preadv64, preadv_fn)(fd, iov, n, off));
}

EXPORT ssize_t preadv2(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
	return IOV_IN_FLIGHT(iov, n, REAL(preadv2, preadv2_fn)(fd, iov, n, off, flags));
}

EXPORT ssize_t preadv64v2(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
	return IOV_IN_FLIGHT(iov, n, REAL(preadv64v2, preadv2_fn)(fd, iov, n, off, flags));
}

EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	return BUF_IN_FLIGHT(buf, len, REAL(recv, recv_fn)(fd, buf, len, flags));
}

EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
	return BUF_IN_FLIGHT(buf, len, REAL(__recv_chk, recv_chk_fn)(fd, buf, len, buflen, flags));
}

/* What recvfrom writes: the data, the sender's address and its length. */
static void flight_from(struct flight *f, const void *buf, size_t len, const struct sockaddr *from,
			const socklen_t *fromlen)
{
	if (!active())
		return;
	flight_add(f, (uintptr_t)buf, len);
	socklen_t n;
	/* A bad pointer is the kernel's to refuse (EFAULT), not a crash here. */
	if (from && fromlen && guarded_copy(&n, fromlen, sizeof(n))) {
		flight_add(f, (uintptr_t)from, n);
		flight_add(f, (uintptr_t)fromlen, sizeof(*fromlen));
	}
}

EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from,
			socklen_t *fromlen)
{
	struct flight f = {0};
	flight_from(&f, buf, len, from, fromlen);
	return FLIGHT(&f, REAL(recvfrom, recvfrom_fn)(fd, buf, len, flags, from, fromlen));
}

EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
			      struct sockaddr *from, socklen_t *fromlen)
{
	struct flight f = {0};
	flight_from(&f, buf, len, from, fromlen);
	return FLIGHT(
	    &f, REAL(__recvfrom_chk, recvfrom_chk_fn)(fd, buf, len, buflen, flags, from, fromlen));
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	struct flight f = {0};
	if (msg && active())
		flight_msg(&f, msg);
	return FLIGHT(&f, REAL(recvmsg, recvmsg_fn)(fd, msg, flags));
}

/* recvmmsg writes each message as recvmsg does, each msg_len, and what is
 * left of the timeout. */
EXPORT int recvmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags, struct timespec *t)
{
	struct flight f = {0};
	if (v && active()) {
		for (unsigned int i = 0; i < n && i < FLIGHT_MAX_VECS; i++)
			flight_msg(&f, &v[i].msg_hdr);
		flight_add(&f, (uintptr_t)v,
			   (n < FLIGHT_MAX_VECS ? n : FLIGHT_MAX_VECS) * sizeof(*v));
		flight_add(&f, (uintptr_t)t, t ? sizeof(*t) : 0);
	}
	return FLIGHT(&f, REAL(recvmmsg, recvmmsg_fn)(fd, v, n, flags, t));
}

/* ---- libaio ---- */

/* libaio's struct iocb and io_event are the kernel's (linux/aio_abi.h);
 * its io_context_t is the address of the completion ring.
 *
 * One of libaio's calls, made here: as libaio answers, -errno, errno left
 * as it was.  Not through libaio: libaio makes them with the C library's
 * syscall(), which the preload library interposes and routes back to
 * these wrappers (preload.c). */
#define AIO_CALL(...)                                                                              \
	({                                                                                         \
		int saved_ = errno;                                                                \
		long rc_ = prim_syscall(__VA_ARGS__);                                              \
		int r_ = rc_ == -1 ? -errno : (int)rc_;                                            \
		errno = saved_;                                                                    \
		r_;                                                                                \
	})

/* The iocb ios[i] (its address: the key), or NULL where ios cannot be
 * read (the kernel refuses it with EFAULT). */
static struct iocb *iocb_at(struct iocb **ios, long i)
{
	struct iocb *cb;
	return guarded_copy(&cb, &ios[i], sizeof(cb)) ? cb : NULL;
}

/* Marks the buffers of the reads among iocbs in flight (keyed by iocb). */
static void aio_begin(aio_context_t ctx, long n, struct iocb **ios)
{
	io_ring_reap(ctx); /* completions seen since the last call */
	for (long i = 0; i < n; i++) {
		struct iocb *p = iocb_at(ios, i), cb;
		struct flight f = {0};
		if (!p || !guarded_copy(&cb, p, sizeof(cb)))
			continue;
		if (cb.aio_lio_opcode == IOCB_CMD_PREAD)
			flight_add(&f, (uintptr_t)cb.aio_buf, (size_t)cb.aio_nbytes);
		else if (cb.aio_lio_opcode == IOCB_CMD_PREADV)
			flight_iov(&f, (const struct iovec *)(uintptr_t)cb.aio_buf,
				   (size_t)cb.aio_nbytes);
		flight_begin(&f, (uintptr_t)p);
	}
}

EXPORT int io_submit(aio_context_t ctx, long n, struct iocb **ios)
{
	if (!active() || n <= 0 || !ios)
		return AIO_CALL(SYS_io_submit, ctx, n, ios);
	aio_begin(ctx, n, ios);
	int r = AIO_CALL(SYS_io_submit, ctx, n, ios);
	/* The iocbs the kernel did not take are not in flight. */
	for (long i = r < 0 ? 0 : r; i < n; i++)
		io_end((uintptr_t)iocb_at(ios, i));
	return r;
}

EXPORT int io_getevents(aio_context_t ctx, long min, long n, struct io_event *ev,
			struct timespec *t)
{
	int r = AIO_CALL(SYS_io_getevents, ctx, min, n, ev, t);
	for (int i = 0; i < r; i++)
		io_end((uintptr_t)ev[i].obj);
	if (active())
		io_ring_reap(ctx);
	return r;
}

EXPORT int io_cancel(aio_context_t ctx, struct iocb *cb, struct io_event *ev)
{
	int r = AIO_CALL(SYS_io_cancel, ctx, cb, ev);
	if (r == 0)
		io_end((uintptr_t)cb);
	return r;
}

EXPORT int io_destroy(aio_context_t ctx)
{
	io_ring_forget(ctx); /* waits for nothing: the kernel cancels or completes */
	return AIO_CALL(SYS_io_destroy, ctx);
}

/* ---- signal masks (mprotect windows) ---- */

static void *_Atomic real_sigprocmask, *_Atomic real_pthread_sigmask;
typedef int (*sigmask_fn)(int, const sigset_t *, sigset_t *);

/* Under mprotect windows, a thread that blocked SIGSEGV would be killed by
 * the kernel at its first write into a window: it may not block them. */
static const sigset_t *unblock_faults(int how, const sigset_t *set, sigset_t *copy)
{
	if (!set || how == SIG_UNBLOCK || guard_window_kind() != WINDOW_MPROTECT)
		return set;
	if (!sigismember(set, SIGSEGV) && !sigismember(set, SIGBUS))
		return set;
	*copy = *set;
	sigdelset(copy, SIGSEGV);
	sigdelset(copy, SIGBUS);
	return copy;
}

/* rt_sigprocmask(2) made through syscall() (preload.c): the kernel's mask
 * of size bytes, under the same rule.  What cannot be read, or is not the
 * kernel's size, goes to the kernel as it is (EFAULT, EINVAL). */
long interpose_rt_sigprocmask(int how, const void *set, void *old, size_t size)
{
	sigset_t in, copy;
	const void *pass = set;
	if (set && size == _NSIG / 8 && guard_window_kind() == WINDOW_MPROTECT) {
		sigemptyset(&in);
		if (guarded_copy(&in, set, size))
			pass = unblock_faults(how, &in, &copy);
	}
	return prim_syscall(SYS_rt_sigprocmask, how, pass, old, size);
}

EXPORT int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
	sigset_t copy;
	return REAL(sigprocmask, sigmask_fn)(how, unblock_faults(how, set, &copy), old);
}

EXPORT int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
	sigset_t copy;
	return REAL(pthread_sigmask, sigmask_fn)(how, unblock_faults(how, set, &copy), old);
}
