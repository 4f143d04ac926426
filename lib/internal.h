/* SPDX-License-Identifier: MIT */
/*
 * internal.h - libsamepage's cross-file declarations.
 */
#ifndef SAMEPAGE_INTERNAL_H
#define SAMEPAGE_INTERNAL_H

#include "samepage.h"

/* knobs.c */
int knob_index(const char *name);

#endif
