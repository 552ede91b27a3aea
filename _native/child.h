/*
 * The child side of nsp_spawn: the step runner that executes a plan between
 * clone and exec.  Private to the core (spawn.c clones, child.c runs).
 *
 * Everything here runs in the child: system calls and stack buffers only, no
 * allocation, no locks, no static mutable state (a vfork-mode child shares
 * the caller's memory, and several threads may spawn at once).
 */
#ifndef NSPRIM_CHILD_H
#define NSPRIM_CHILD_H

#include "compat.h"

#include <time.h>

#include "rootfs.h"

struct child_ctx {
    const struct nsp_spawn_config *cfg;
    int report_fd;
    int sync_fd;
    struct nsp_progress *progress; /* shared with the parent (see nsprim.h) */
    sigset_t mask; /* the caller's signal mask, restored before exec */
    int handlers_cleared; /* cloned with CLONE_CLEAR_SIGHAND (set before clone) */
    struct nsp_root_cache root; /* descriptors shared by consecutive in-root steps */
    int part; /* the part of the running step that failed (enum nsp_step_part) */
    int index; /* the running step's index (prefix steps first) */
};

/* Run the plan of ctx->cfg (prefix, then body); never returns: exec, or
 * _exit(127) after reporting the failed step, or _exit(0) without an exec. */
int nsp_child_main(void *arg);

/* A shared page for a child's progress record (see nsprim.h), or NULL with
 * errno set: for a fork-mode child, or one started by a monitor. */
struct nsp_progress *nsp_progress_map(void);

/* CLOCK_MONOTONIC in ns, for the optional step timings. */
static inline long long nsp_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

#endif
