/*
 * Child-side security steps.  See security.h.
 */
#include "security.h"

int nsp_child_set_caps(const struct nsp_step *s)
{
    (void)s;
    return -ENOSYS; /* filled in with the capabilities work */
}

int nsp_child_seccomp(const struct nsp_step *s)
{
    (void)s;
    return -ENOSYS; /* filled in with the seccomp work */
}
