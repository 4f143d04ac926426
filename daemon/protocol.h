/* SPDX-License-Identifier: MIT */
/*
 * protocol.h - samepaged's control protocol: one request in, one reply out.
 *
 * One message per SOCK_SEQPACKET packet, text (the requests are listed in
 * lib/internal.h and samepaged(8)).  proto_answer() is a function of the
 * state and the request's bytes: no socket inside, so that samepaged.c's
 * poll loop and the fuzz target (fuzz_protocol.c) call the same code.
 */
#ifndef SAMEPAGED_PROTOCOL_H
#define SAMEPAGED_PROTOCOL_H

#include "state.h"

/* The answer to one request: text, and the descriptors to pass with it
 * (SCM_RIGHTS).  fds[0..nfds) belong to the state, except close_fd (one
 * of them, or -1), which the caller closes once the reply is sent. */
struct proto_reply {
	char text[PROTO_MAX];
	size_t len;
	int fds[HELLO_FDS];
	int nfds;
	int close_fd;
};

/* Answers request (len bytes, not NUL-terminated) of connection c. */
void proto_answer(struct state *s, struct client *c, const char *request, size_t len,
		  struct proto_reply *r);

/* "ERR <errno> <what>: <strerror>" */
void proto_error(struct proto_reply *r, int err, const char *what);

/* Closes close_fd, if any: the reply was sent (or never will be). */
void proto_reply_done(struct proto_reply *r);

#endif
