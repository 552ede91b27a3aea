/*
 * Container support in the core: bringing an interface up, a minimal init
 * for pid 1, and the cleanup watcher.  Private to the core.
 */
#ifndef NSPRIM_CONTAINER_H
#define NSPRIM_CONTAINER_H

#include "compat.h"

/* NSP_STEP_IFUP: set IFF_UP on interface `name` (the loopback of a new
 * network namespace, usually).  Returns 0 or -errno. */
int nsp_child_ifup(const char *name);

/* NSP_STEP_INIT: fork.  In the new child, return 0 (it goes on with the plan).
 * The caller itself becomes a minimal init: it closes the given pipe ends,
 * reaps every child, forwards signals to the payload, and exits with the
 * payload's status (128+N for signal N) when it ends.  Returns -errno only if
 * the fork fails. */
int nsp_child_become_init(int report_fd, int sync_fd);

/* For the monitor: kill the members of cgroup directory `dir` and remove it
 * (the watcher's way); remove the directory tree at `path` (one file system). */
void nsp_cgroup_kill_remove(const char *dir);
void nsp_tree_remove(const char *path);

/* NSP_STEP_TERMINAL: open a pseudo-terminal pair from /dev/ptmx (the
 * container's devpts, once its root is entered), give the slave the size
 * read from `sock` and the owner uid/gid (-1: unchanged), make it the
 * controlling terminal (after a setsid unless already a session leader) and
 * fds 0-2, and send the master back over `sock` (closed afterwards).
 * Returns 0 or -errno. */
int nsp_child_terminal(int sock, long long uid, long long gid);

#endif
