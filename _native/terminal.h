/*
 * The container's pseudo-terminal, made in the child.  Private to the core.
 */
#ifndef NSPRIM_TERMINAL_H
#define NSPRIM_TERMINAL_H

#include "compat.h"

/* NSP_STEP_TERMINAL: open a pseudo-terminal pair from /dev/ptmx (the
 * container's devpts, once its root is entered), give the slave the size
 * read from socket s->a (NSP_TERMINAL_CONSOLE: the size in s->ints) and the
 * owner uid s->b / gid s->c (-1: unchanged), make it the controlling
 * terminal (after a setsid unless already a session leader) and fds 0-2,
 * and send the master over the socket (closed afterwards; with CONSOLE the
 * pty's name goes with it as data).  Returns 0 or -errno. */
int nsp_child_terminal(const struct nsp_step *s);

#endif
