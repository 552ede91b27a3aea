/*
 * The cleanup watcher (nsp_watcher_start, nsprim.h) and its removal
 * functions.  Private to the core.
 */
#ifndef NSPRIM_WATCHER_H
#define NSPRIM_WATCHER_H

#include "compat.h"

/* For the monitor: kill the members of cgroup directory `dir` and remove it
 * (the watcher's way); remove the directory tree at `path` (one file system). */
void nsp_cgroup_kill_remove(const char *dir);
void nsp_tree_remove(const char *path);

#endif
