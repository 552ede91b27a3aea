/*
 * Network namespaces made ahead of time, for a warm pool of containers.
 *
 * A new network namespace is the most expensive namespace to create (its
 * loopback device registration and per-namespace tables: about half the cost
 * of a container's clone here).  A pool thread makes them in advance: the
 * calling thread unshares a new one, keeps a descriptor of it, brings its
 * loopback up, and goes back to its own, so that only that thread ever sits
 * in the new namespace and only for the duration of this call.
 */
#include "netif.h"

int nsp_netns_new(int lo_up)
{
    int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0)
        return -errno;
    if (unshare(CLONE_NEWNET) < 0) {
        int err = errno;
        close(home);
        return -err;
    }
    int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int ret = fd < 0 ? -errno : fd;
    if (fd >= 0 && lo_up) {
        int r = nsp_child_ifup("lo");
        if (r < 0) {
            close(fd);
            ret = r;
        }
    }
    /* Back home.  This cannot fail for our own namespace while we hold its
     * descriptor and CAP_SYS_ADMIN (which the unshare just proved). */
    if (setns(home, CLONE_NEWNET) < 0) {
        int err = errno;
        if (ret >= 0)
            close(ret);
        close(home);
        return -err;
    }
    close(home);
    return ret;
}
