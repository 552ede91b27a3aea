/*
 * Network interfaces in the child.  Private to the core.
 */
#ifndef NSPRIM_NETIF_H
#define NSPRIM_NETIF_H

#include "compat.h"

/* NSP_STEP_IFUP: set IFF_UP on interface `name` (the loopback of a new
 * network namespace, usually).  Returns 0 or -errno. */
int nsp_child_ifup(const char *name);

#endif
