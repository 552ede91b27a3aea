/*
 * NSP_STEP_WAIT_START: the created container's init reports that its whole
 * setup succeeded, then waits for `start` on a listening socket it got before
 * the root changed (no path lookup inside the container, unlike runc's
 * exec.fifo reopened through /proc).  Runs between clone and exec.
 */
#include "wait_start.h"

#include <limits.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int nsp_child_wait_start(long long sock, int index, int vfork, int *report_fd)
{
    if (vfork || sock < 0 || sock > INT_MAX)
        return -EINVAL;
    int lfd = (int)sock;
    int type = 0;
    socklen_t len = sizeof type;
    /* A listening stream socket, or nothing: never block on a wrong fd. */
    int listening = 0;
    socklen_t llen = sizeof listening;
    if (getsockopt(lfd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
        return -errno;
    if (getsockopt(lfd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &llen) < 0)
        return -errno;
    if (type != SOCK_STREAM || !listening)
        return -EINVAL;
    struct nsp_report ready;
    memset(&ready, 0, sizeof ready);
    ready.index = index;
    ready.kind = NSP_STEP_WAIT_START;
    int r = write_all(*report_fd, &ready, sizeof ready);
    if (r < 0)
        return r;
    int conn;
    do
        conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    while (conn < 0 && errno == EINTR);
    if (conn < 0)
        return -errno;
    /* A second `start` finds nobody listening. */
    close(lfd);
    char byte;
    ssize_t n;
    do
        n = read(conn, &byte, 1);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        int e = n < 0 ? errno : ECANCELED; /* `start` went away without a word */
        close(conn);
        return -e;
    }
    /* The report pipe's reader (`create`) is gone: from here on the
     * connection carries the failure record, and the exec closes it. */
    if (dup3(conn, *report_fd, O_CLOEXEC) < 0) {
        int e = errno;
        close(conn);
        return -e;
    }
    close(conn);
    return 0;
}

int nsp_unix_socket_at(int dirfd, const char *name, int listening, int floor)
{
    /* By the directory's /proc/self/fd link: sun_path holds 108 bytes and a
     * state directory's path may be longer (the name itself is short). */
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    int n = snprintf(addr.sun_path, sizeof addr.sun_path, "/proc/self/fd/%d/%s", dirfd, name);
    if (n < 0 || (size_t)n >= sizeof addr.sun_path)
        return -ENAMETOOLONG;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int ret = listening ? bind(fd, (struct sockaddr *)&addr, sizeof addr) : connect(fd, (struct sockaddr *)&addr, sizeof addr);
    if (ret == 0 && listening)
        ret = listen(fd, 1);
    if (ret == 0 && floor > fd) {
        int lifted = fcntl(fd, F_DUPFD_CLOEXEC, floor);
        if (lifted < 0)
            ret = -1;
        else {
            close(fd);
            fd = lifted;
        }
    }
    if (ret < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}
