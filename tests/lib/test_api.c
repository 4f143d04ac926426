// SPDX-License-Identifier: MIT
/*
 * test_api.c - every pointer and length of the public API is checked
 * (issue 9.7): NULL or too-small arguments give -EINVAL (or the errno the
 * header names), never a crash, and change nothing.
 */
#include "util.h"

#include <errno.h>

int main(void)
{
	samepage_t *sp = open_fast();
	char buf[64];
	long long v;
	unsigned long long u;
	void *p;

	/* samepage_read: buf and len */
	CHECK_EQ_INT(samepage_read(sp, "run", NULL, 10), -EINVAL);
	CHECK_EQ_INT(samepage_read(sp, "run", buf, 0), -EINVAL);
	CHECK_EQ_INT(samepage_read(sp, "run", buf, 1), -ERANGE);
	CHECK_EQ_INT(samepage_read(sp, NULL, buf, sizeof(buf)), -ENOENT);
	CHECK_EQ_INT(samepage_read(NULL, "run", buf, sizeof(buf)), -EINVAL);
	CHECK_EQ_INT(samepage_read(sp, "run", buf, sizeof(buf)), 0);
	CHECK(!strcmp(buf, "0"));
	/* samepage_read_number */
	CHECK_EQ_INT(samepage_read_number(sp, "run", NULL), -EINVAL);
	CHECK_EQ_INT(samepage_read_number(NULL, "run", &v), -EINVAL);
	CHECK_EQ_INT(samepage_read_number(sp, NULL, &v), -ENOENT);
	/* samepage_write */
	CHECK_EQ_INT(samepage_write(NULL, "run", "1"), -EINVAL);
	CHECK_EQ_INT(samepage_write(sp, NULL, "1"), -ENOENT);
	CHECK_EQ_INT(samepage_write(sp, "run", NULL), -EINVAL);
	CHECK_EQ_INT(rd(sp, "run"), 0); /* nothing changed */
	/* samepage_madvise */
	CHECK_EQ_INT(samepage_madvise(NULL, buf, PG, SAMEPAGE_MERGEABLE), -EINVAL);
	CHECK_EQ_INT(samepage_madvise(sp, (void *)1, PG, SAMEPAGE_MERGEABLE), -EINVAL);
	CHECK_EQ_INT(samepage_madvise(sp, NULL, PG, SAMEPAGE_MERGEABLE), -ENOMEM);
	CHECK_EQ_INT(samepage_madvise(sp, NULL, 0, SAMEPAGE_MERGEABLE), 0);
	CHECK_EQ_INT(samepage_madvise(sp, (void *)PG, SIZE_MAX, SAMEPAGE_MERGEABLE), -EINVAL);
	CHECK_EQ_INT(samepage_madvise(sp, NULL, PG, 99), -EINVAL);
	/* knob table */
	CHECK(samepage_knob_at(-1) == NULL);
	CHECK(samepage_knob_at(samepage_knob_count()) == NULL);
	CHECK(samepage_knob_find(NULL) == NULL);
	CHECK_EQ_INT(samepage_knob_parse(NULL, "1", &u), -ENOENT);
	CHECK_EQ_INT(samepage_knob_parse("run", NULL, &u), -EINVAL);
	CHECK_EQ_INT(samepage_knob_parse("run", "1", NULL), -EINVAL);
	CHECK(samepage_strerror(0) != NULL && samepage_strerror(-99999) != NULL);
	CHECK(samepage_strerror(-EACCES) != NULL);
	/* samepaged */
	CHECK_EQ_INT(samepage_connect(NULL, "vm"), -EINVAL);
	samepage_t *c = (samepage_t *)1;
	CHECK_EQ_INT(samepage_connect(&c, NULL), -EINVAL);
	CHECK(c == NULL);
	CHECK_EQ_INT(samepage_connect(&c, ""), -EINVAL);
	CHECK_EQ_INT(samepage_socket_path(NULL, 10), -EINVAL);
	CHECK_EQ_INT(samepage_socket_path(buf, 0), -EINVAL);
	CHECK_EQ_INT(samepage_socket_path(buf, 2), -ENAMETOOLONG);
	CHECK_EQ_INT(samepage_control(NULL, NULL, buf, sizeof(buf)), -EINVAL);
	CHECK_EQ_INT(samepage_control(NULL, "GET", NULL, 10), -EINVAL);
	CHECK_EQ_INT(samepage_control(NULL, "GET", buf, 1), -EINVAL);
	/* memory owned by the library */
	CHECK_EQ_INT(samepage_alloc(NULL, PG, &p), -EINVAL);
	CHECK_EQ_INT(samepage_alloc(sp, PG, NULL), -EINVAL);
	CHECK_EQ_INT(samepage_alloc(sp, 0, &p), -EINVAL);
	CHECK_EQ_INT(samepage_alloc(sp, SIZE_MAX, &p), -EINVAL);
	CHECK_EQ_INT(samepage_free(NULL, buf, PG), -EINVAL);
	CHECK_EQ_INT(samepage_free(sp, (void *)1, PG), -EINVAL);
	CHECK_EQ_INT(samepage_discard(NULL, buf, PG), -EINVAL);
	CHECK_EQ_INT(samepage_discard(sp, (void *)1, PG), -EINVAL);
	CHECK_EQ_INT(samepage_discard(sp, (void *)PG, SIZE_MAX), -EINVAL);
	samepage_close(NULL);
	samepage_close(sp);
	return check_report("api");
}
