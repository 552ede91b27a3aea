/*
 * NSP_STEP_IFUP: bring a network interface up in the child (the loopback of a
 * new network namespace); also used by netns.c for namespaces made ahead.
 */
#include "netif.h"

#include <net/if.h>
#include <sys/socket.h>

int nsp_child_ifup(const char *name)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int ret = 0;
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
        ret = -errno;
    } else if (!(ifr.ifr_flags & IFF_UP)) {
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
            ret = -errno;
    }
    close(fd);
    return ret;
}
