/*
 * NSP_STEP_WAIT_START: a created container's init, waiting for `start`.
 * Private to the core.
 */
#ifndef NSPRIM_WAIT_START_H
#define NSPRIM_WAIT_START_H

#include "compat.h"

/* Report "ready" (a struct nsp_report with err 0 for step `index`) on
 * *report_fd, accept one connection on the listening socket `sock`, read the
 * one-byte start message, close `sock`, and make the connection *report_fd
 * (close-on-exec): the exec closes it, a later failure is written to it.
 * Refused (EINVAL) in vfork mode, whose parent would wait for ever.
 * Returns 0 or -errno. */
int nsp_child_wait_start(long long sock, int index, int vfork, int *report_fd);

#endif
