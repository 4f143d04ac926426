/* SPDX-License-Identifier: MIT */
/*
 * pool.h - samepaged, the only writer of its domains' pools (pool.c).
 */
#ifndef SAMEPAGED_POOL_H
#define SAMEPAGED_POOL_H

#include "state.h"

/* Opens (or makes) the domain's guard file, maps it, and opens the
 * read-only descriptors of the pool and the guard that HELLO hands out:
 * 0 or -errno. */
int dpool_open(const char *guard_path, const char *pool_path, struct dom *d);
void dpool_close(struct dom *d);
/* PLACE n: writes the n pages process c staged in its ledger into the
 * pool, each only if no other process refers to its pool page. */
int dpool_place(const struct state *s, struct client *c, unsigned n, unsigned *placed,
		unsigned *refused);
/* Punches the free pool pages no ledger refers to (after clients freed
 * some, or when forced). */
void dpool_sweep(const struct state *s, struct dom *d, bool force);

#endif
