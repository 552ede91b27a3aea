/*
 * The container's pseudo-terminal, made in the child.  Private to the core.
 */
#ifndef NSPRIM_TERMINAL_H
#define NSPRIM_TERMINAL_H

#include "compat.h"

/* NSP_STEP_TERMINAL: open a pseudo-terminal pair from /dev/ptmx (the
 * container's devpts, once its root is entered), give the slave the size
 * read from `sock` and the owner uid/gid (-1: unchanged), make it the
 * controlling terminal (after a setsid unless already a session leader) and
 * fds 0-2, and send the master back over `sock` (closed afterwards).
 * Returns 0 or -errno. */
int nsp_child_terminal(int sock, long long uid, long long gid);

#endif
