/*
 * The monitor of detached containers (monitor.c), and its re-executed image
 * (monitor_image.c).  Private to the core.
 */
#ifndef NSPRIM_MONITOR_H
#define NSPRIM_MONITOR_H

#include "compat.h"

/* The monitor's first message to the caller; also what its re-executed image
 * needs to know of the container. */
struct monitor_hello {
    int err; /* positive errno: the spawn failed, no descriptors follow */
    int pid;
    int monitor_pid;
    int has_sync;
    long long starttime;
    long long monitor_starttime;
};

/* The monitor's life after the start: descriptors 3 (the container's pidfd),
 * 4 (the socket, or ctl -1) and 5 (the state directory, if open). */
__attribute__((noreturn)) void nsp_monitor_loop(const struct nsp_monitor_config *mon,
                                                const struct monitor_hello *h, int ctl);

/* The dynamic loader that can run `exe` (the core's file) as the monitor's
 * program, or NULL (then the monitor stays a fork).  Called in the caller. */
const char *nsp_monitor_loader(const char *exe);

/* Replace the monitor's image (a copy of the caller's memory) by the core's
 * file run through `loader`, with mon and h passed in a memfd; returns only
 * if that failed. */
void nsp_monitor_reexec(const char *loader, const struct nsp_monitor_config *mon, const struct monitor_hello *h);

#endif
