/*
 * NSP_STEP_TERMINAL: the container's own pseudo-terminal, made in the child
 * once its root (and devpts) is in place; the master goes back to the parent
 * over a socket.  Runs between clone and exec: system calls only.
 */
#include "terminal.h"

#include <sys/socket.h>

static int pty_name(int master, char *buf);

static int open_slave(int master)
{
    /* TIOCGPTPEER (4.13+) opens the peer of this very master: no path
     * lookup in /dev/pts that a payload could have prepared. */
    int fd = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd >= 0 || (errno != EINVAL && errno != ENOTTY))
        return fd < 0 ? -errno : fd;
    char path[32];
    int len = pty_name(master, path);
    if (len < 0)
        return len;
    fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* "/dev/pts/N" of the master's peer, into buf (at least 32 bytes). */
static int pty_name(int master, char *buf)
{
    unsigned int n;
    if (ioctl(master, TIOCGPTN, &n) < 0)
        return -errno;
    char digits[12];
    int len = 0;
    do {
        digits[len++] = (char)('0' + n % 10);
        n /= 10;
    } while (n && len < (int)sizeof digits);
    memcpy(buf, "/dev/pts/", 9);
    char *p = buf + 9;
    while (len > 0)
        *p++ = digits[--len];
    *p = '\0';
    return (int)(p - buf);
}

static int send_fd(int sock, int fd, const char *data, size_t len)
{
    char byte = 't';
    struct iovec iov = {&byte, 1};
    if (data) {
        iov.iov_base = (void *)data;
        iov.iov_len = len;
    }
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
        if (n == (ssize_t)iov.iov_len)
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 ? -errno : -EPROTO;
    }
}

static int terminal_setup(const struct nsp_step *s, int master)
{
    int sock = (int)s->a;
    long long uid = s->b, gid = s->c;
    int console = s->flags & NSP_TERMINAL_CONSOLE;
    struct winsize ws;
    memset(&ws, 0, sizeof ws);
    if (console) {
        if (s->nints == 2 && s->ints) {
            if (s->ints[0] < 0 || s->ints[0] > 65535 || s->ints[1] < 0 || s->ints[1] > 65535)
                return -EINVAL;
            ws.ws_row = (unsigned short)s->ints[0];
            ws.ws_col = (unsigned short)s->ints[1];
        } else if (s->nints != 0) {
            return -EINVAL;
        }
    } else {
        ssize_t got;
        /* The parent wrote the size before the clone: never waits. */
        do
            got = recv(sock, &ws, sizeof ws, MSG_DONTWAIT);
        while (got < 0 && errno == EINTR);
        if (got < 0)
            return -errno;
        if (got != (ssize_t)sizeof ws)
            return -EPROTO;
    }
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
    if (r == 0) {
        char name[32];
        int len = console ? pty_name(master, name) : 0;
        if (len < 0)
            r = len;
        else
            r = send_fd(sock, master, console ? name : NULL, (size_t)len);
    }
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

int nsp_child_terminal(const struct nsp_step *s)
{
    int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        return -errno;
    int r = terminal_setup(s, master);
    close(master);
    close((int)s->a);
    return r;
}
