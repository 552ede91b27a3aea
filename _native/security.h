/*
 * Child-side security steps (capabilities, seccomp).  Private to the core;
 * run between clone and exec: system calls only, no allocation.
 */
#ifndef NSPRIM_SECURITY_H
#define NSPRIM_SECURITY_H

#include "compat.h"

/* The phases of NSP_STEP_CAPS, in s->flags: enum nsp_caps_flag (nsprim.h). */

/* NSP_STEP_CAPS: set the bounding, effective, permitted, inheritable and
 * ambient sets from s->ints (10 words: lo, hi per set).  Returns 0 or -errno. */
int nsp_child_set_caps(const struct nsp_step *s);

/* NSP_STEP_SECCOMP: install the classic-BPF program in s->str (s->a filters)
 * with seccomp(SECCOMP_SET_MODE_FILTER, s->flags).  Returns 0 or -errno. */
int nsp_child_seccomp(const struct nsp_step *s);

#endif
