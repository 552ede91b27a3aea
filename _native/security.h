/*
 * Child-side security steps (capabilities, seccomp).  Private to the core;
 * run between clone and exec: system calls only, no allocation.
 */
#ifndef NSPRIM_SECURITY_H
#define NSPRIM_SECURITY_H

#include "compat.h"

/* Phases of NSP_STEP_CAPS, in s->flags (0 means BOUNDING | SETS).  A switch
 * to a non-root uid clears the permitted, effective and ambient sets, so a
 * plan that changes uid runs the step twice:
 *   BOUNDING | KEEP   before setgroups/setresgid/setresuid (which still need
 *                     CAP_SETGID/CAP_SETUID), keeping the permitted set;
 *   SETS | CLAMP      after the switch: capset and the ambient set.          */
#define NSP_CAPS_BOUNDING 0x1 /* drop every bounding cap not in the set      */
#define NSP_CAPS_KEEP 0x2     /* prctl(PR_SET_KEEPCAPS, 1) for a uid switch  */
#define NSP_CAPS_SETS 0x4     /* capset E/P/I, reset and raise ambient,
                                 PR_SET_KEEPCAPS back to 0                  */
#define NSP_CAPS_CLAMP 0x8    /* ask only for what the process can have
                                 (runtime lacks a cap: skip it, not EPERM)  */

/* NSP_STEP_CAPS: set the bounding, effective, permitted, inheritable and
 * ambient sets from s->ints (10 words: lo, hi per set).  Returns 0 or -errno. */
int nsp_child_set_caps(const struct nsp_step *s);

/* NSP_STEP_SECCOMP: install the classic-BPF program in s->str (s->a filters)
 * with seccomp(SECCOMP_SET_MODE_FILTER, s->flags).  Returns 0 or -errno. */
int nsp_child_seccomp(const struct nsp_step *s);

#endif
