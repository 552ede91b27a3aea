/*
 * NSP_STEP_TERMINAL: the container's own pseudo-terminal, made in the child
 * once its root (and devpts) is in place; the master goes back to the parent
 * over a socket.  Runs between clone and exec: system calls only.
 */
#include "terminal.h"

#include <sys/socket.h>

static int open_slave(int master)
{
    /* TIOCGPTPEER (4.13+) opens the peer of this very master: no path
     * lookup in /dev/pts that a payload could have prepared. */
    int fd = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd >= 0 || (errno != EINVAL && errno != ENOTTY))
        return fd < 0 ? -errno : fd;
    unsigned int n;
    if (ioctl(master, TIOCGPTN, &n) < 0)
        return -errno;
    char path[32] = "/dev/pts/";
    char digits[12];
    int len = 0;
    do {
        digits[len++] = (char)('0' + n % 10);
        n /= 10;
    } while (n && len < (int)sizeof digits);
    char *p = path + 9;
    while (len > 0)
        *p++ = digits[--len];
    *p = '\0';
    fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

static int send_fd(int sock, int fd)
{
    char byte = 't';
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    for (;;) {
        ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (n == 1)
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 ? -errno : -EPROTO;
    }
}

static int terminal_setup(int sock, int master, long long uid, long long gid)
{
    struct winsize ws;
    ssize_t got;
    /* The parent wrote the size before the clone: never waits. */
    do
        got = recv(sock, &ws, sizeof ws, MSG_DONTWAIT);
    while (got < 0 && errno == EINTR);
    if (got < 0)
        return -errno;
    if (got != (ssize_t)sizeof ws)
        return -EPROTO;
    int unlock = 0;
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
        return -errno;
    int slave = open_slave(master);
    if (slave < 0)
        return slave;
    int r = 0;
    if ((ws.ws_row || ws.ws_col) && ioctl(slave, TIOCSWINSZ, &ws) < 0)
        r = -errno;
    /* The payload's own terminal, as a login gives it one. */
    if (r == 0 && (uid >= 0 || gid >= 0) && fchown(slave, (uid_t)uid, (gid_t)gid) < 0)
        r = -errno;
    if (r == 0)
        r = send_fd(sock, master);
    /* With an init the payload is its child, in its session: a session of
     * its own then, since only a session leader may take a terminal. */
    if (r == 0 && getsid(0) != getpid() && setsid() < 0)
        r = -errno;
    if (r == 0 && ioctl(slave, TIOCSCTTY, 0) < 0)
        r = -errno;
    for (int fd = 0; r == 0 && fd < 3; fd++)
        if (fd == slave ? fcntl(fd, F_SETFD, 0) < 0 : dup3(slave, fd, 0) < 0)
            r = -errno;
    if (slave > 2)
        close(slave);
    return r;
}

int nsp_child_terminal(int sock, long long uid, long long gid)
{
    int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        return -errno;
    int r = terminal_setup(sock, master, uid, gid);
    close(master);
    close(sock);
    return r;
}
