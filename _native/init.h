/*
 * A minimal init for pid 1, in the child.  Private to the core.
 */
#ifndef NSPRIM_INIT_H
#define NSPRIM_INIT_H

#include "compat.h"

/* NSP_STEP_INIT: fork.  In the new child, return 0 (it goes on with the plan).
 * The caller itself becomes a minimal init: it closes the given pipe ends,
 * reaps every child, forwards signals to the payload, and exits with the
 * payload's status (128+N for signal N) when it ends.  Returns -errno only if
 * the fork fails. */
int nsp_child_become_init(int report_fd, int sync_fd);

#endif
