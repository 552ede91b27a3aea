/*
 * The monitor of a detached container: a small process of the core that is
 * the container's parent for its whole life, as conmon is for podman.  It
 * reaps the container's pid 1 (no zombie, whoever started it), records how it
 * ended in the container's state file and removes its cgroup.
 *
 * Why a forked monitor that clones the container itself, and not a double
 * fork that leaves the payload to a subreaper: only the parent learns the
 * exact exit status (waitid), and a subreaper is the parent only of orphans
 * of its own descendants, so it would have to be an ancestor of the caller
 * (init, systemd) -- nothing nsprim can rely on.  The monitor is the parent
 * from the clone on, so there is no window in which the payload is nobody's.
 * It is a fork of the caller (no binary to install, no interpreter): like
 * the cleanup watcher and the init, it only makes system calls, with no
 * allocation and no locks, since the caller may be a threaded Python program.
 * Once the container is cloned it sheds its copy of the caller's memory by
 * running the core's own file as a program (monitor_image.c), where that works.
 *
 * Protocol with the caller (a SOCK_SEQPACKET pair):
 *   monitor -> caller: struct monitor_hello, with the container's pidfd, the
 *       report pipe's read end and the sync pipe's write end (SCM_RIGHTS):
 *       the caller drives the start as for a child of its own.
 *   caller -> monitor: one byte: 'g' the start went through and the state
 *       file says "running"; 'a' it failed, the caller cleans up.  EOF first
 *       means the caller died while starting: the monitor kills the
 *       container and removes its cgroup and state directory itself.
 *   monitor -> caller, after 'g': struct nsp_monitor_exit once the container
 *       ended, was recorded and its cgroup removed (if the caller still
 *       listens; closing the socket after 'g' only lets the container go).
 */
#include "compat.h"

#include <poll.h>
#include <stdio.h> /* renameat */
#include <sys/socket.h>
#include <time.h>

#include "child.h" /* nsp_progress_map */
#include "watcher.h" /* nsp_cgroup_kill_remove, nsp_tree_remove */
#include "monitor.h"


static void write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

/* Field 22 of /proc/PID/stat (start time in clock ticks since boot), or -1:
 * with the pid, it names one process across pid reuse. */
static long long proc_starttime(const char *stat_path)
{
    char buf[1024];
    int fd = open(stat_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    char *p = NULL;
    for (char *q = buf; *q; q++) /* the command may hold ')' and spaces: the last ')' ends it */
        if (*q == ')')
            p = q;
    if (p == NULL)
        return -1;
    int field = 2; /* ')' closes field 2 */
    while (*p && field < 22) {
        if (*p++ == ' ')
            field++;
    }
    long long v = 0;
    if (*p < '0' || *p > '9')
        return -1;
    while (*p >= '0' && *p <= '9')
        v = v * 10 + (*p++ - '0');
    return v;
}

static char *put_str(char *p, const char *s)
{
    while (*s)
        *p++ = *s++;
    return p;
}

static char *put_int(char *p, long long v)
{
    char tmp[24];
    int n = 0;
    unsigned long long u = v < 0 ? -(unsigned long long)v : (unsigned long long)v;
    do
        tmp[n++] = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        *p++ = '-';
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

/* The OOM-kill counter of memory.events (v2) or memory.oom_control (v1). */
static long long read_oom_kills(const char *path)
{
    char buf[4096];
    if (path == NULL)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    static const char key[] = "oom_kill ";
    for (char *line = buf; *line;) {
        if (strncmp(line, key, sizeof key - 1) == 0) {
            long long v = 0;
            for (char *p = line + sizeof key - 1; *p >= '0' && *p <= '9'; p++)
                v = v * 10 + (*p - '0');
            return v;
        }
        char *nl = strchr(line, '\n');
        if (nl == NULL)
            break;
        line = nl + 1;
    }
    return 0;
}

/* state.json = the caller's prefix + what only the monitor knows, through a
 * temporary file and a rename: a reader sees the old record or the new one. */
static void write_state(const struct nsp_monitor_config *mon, int dirfd, const struct monitor_hello *h,
                        const siginfo_t *si, long long oom_kills)
{
    char tail[512];
    char *p = tail;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int killed = si->si_code == CLD_KILLED || si->si_code == CLD_DUMPED;
    p = put_str(p, "\"pid\": ");
    p = put_int(p, h->pid);
    p = put_str(p, ", \"starttime\": ");
    p = put_int(p, h->starttime);
    p = put_str(p, ", \"monitor_pid\": ");
    p = put_int(p, h->monitor_pid);
    p = put_str(p, ", \"monitor_starttime\": ");
    p = put_int(p, h->monitor_starttime);
    p = put_str(p, ", \"status\": \"exited\", \"exit_code\": ");
    p = put_int(p, killed ? 128 + si->si_status : si->si_status);
    p = put_str(p, ", \"signal\": ");
    p = killed ? put_int(p, si->si_status) : put_str(p, "null");
    p = put_str(p, ", \"oom_killed\": ");
    p = put_str(p, oom_kills > 0 ? "true" : "false");
    p = put_str(p, ", \"finished\": ");
    p = put_int(p, now.tv_sec);
    *p++ = '.';
    long usec = now.tv_nsec / 1000;
    for (long div = 100000; div > 0; div /= 10)
        *p++ = (char)('0' + (usec / div) % 10);
    p = put_str(p, "}\n");

    int fd = openat(dirfd, "state.json.monitor", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return; /* removed meanwhile (`rm -f`): nothing to record */
    write_all(fd, mon->state_prefix, (size_t)mon->state_prefix_len);
    write_all(fd, tail, (size_t)(p - tail));
    fsync(fd);
    close(fd);
    renameat(dirfd, "state.json.monitor", dirfd, "state.json");
}

static void remove_cgroups(const struct nsp_monitor_config *mon)
{
    for (int i = 0; mon->cgroup_dirs != NULL && mon->cgroup_dirs[i] != NULL; i++)
        nsp_cgroup_kill_remove(mon->cgroup_dirs[i]);
}

static void reap(int pidfd, siginfo_t *si)
{
    memset(si, 0, sizeof *si);
    while (waitid((idtype_t)3 /* P_PIDFD */, (id_t)pidfd, si, WEXITED) < 0 && errno == EINTR)
        ;
}

/* Keep fd as `slot` (slots above every descriptor the caller lent us are
 * closed later); returns slot, or -1. */
static int move_to(int fd, int slot)
{
    if (fd < 0)
        return -1;
    return dup3(fd, slot, O_CLOEXEC) < 0 ? -1 : slot;
}

/* Wait for the verdict, then for the end; record it, remove the group.  The
 * pidfd is descriptor 3, the socket 4 (ctl: -1 if the hello was not sent),
 * the state directory 5 if open.  Runs in the forked monitor, or in the
 * re-executed one (monitor_image.c). */
__attribute__((noreturn)) void nsp_monitor_loop(const struct nsp_monitor_config *mon,
                                                const struct monitor_hello *h, int ctl)
{
    int pidfd = 3;
    int dirfd = fcntl(5, F_GETFD) >= 0 ? 5 : -1;
    siginfo_t si;
    int ended = 0;
    char verdict = 0;
    while (ctl >= 0) {
        struct pollfd pf[2] = {{ctl, POLLIN, 0}, {pidfd, POLLIN, 0}};
        if (poll(pf, ended ? 1 : 2, -1) < 0)
            continue; /* EINTR only: every signal is blocked */
        if (!ended && (pf[1].revents & POLLIN)) {
            reap(pidfd, &si); /* ended before the verdict: no zombie meanwhile */
            ended = 1;
            continue;
        }
        if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(ctl, &verdict, 1, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n != 1)
                verdict = 0;
            break;
        }
    }
    if (verdict != 'g') {
        if (!ended) {
            syscall(__NR_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
            reap(pidfd, &si);
        }
        if (verdict != 'a') { /* the caller died while starting: clean up after it */
            remove_cgroups(mon);
            if (mon->state_dir != NULL)
                nsp_tree_remove(mon->state_dir);
        }
        _exit(0);
    }
    if (!ended)
        reap(pidfd, &si);
    long long oom_kills = read_oom_kills(mon->oom_file); /* before the group goes */
    write_state(mon, dirfd, h, &si, oom_kills);
    remove_cgroups(mon);
    if (mon->remove_state && mon->state_dir != NULL)
        nsp_tree_remove(mon->state_dir);
    struct nsp_monitor_exit e;
    e.code = si.si_code;
    e.status = si.si_status;
    e.oom_killed = oom_kills > 0;
    e.pad = 0;
    send(ctl, &e, sizeof e, MSG_NOSIGNAL | MSG_DONTWAIT); /* nobody may listen: fine */
    _exit(0);
}

static __attribute__((noreturn)) void monitor_main(const struct nsp_spawn_config *spawn,
                                                   const struct nsp_monitor_config *mon, int ctl,
                                                   const sigset_t *caller_mask, const char *loader,
                                                   struct nsp_progress *progress)
{
    /* A session of its own: the caller's terminal (^C, hang-up) reaches
     * neither the monitor nor the container. */
    setsid();
    prctl(PR_SET_NAME, (unsigned long)"nsprim-monitor", 0, 0, 0);
    /* The caller's handlers are Python's: back to the defaults, ignored
     * signals kept for the payload, as a spawn from the caller would. */
    struct sigaction dfl, old;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP && sigaction(sig, NULL, &old) == 0 && old.sa_handler != SIG_DFL
            && old.sa_handler != SIG_IGN)
            sigaction(sig, &dfl, NULL);

    /* Fork mode: this process is single-threaded but its memory is a copy of
     * a threaded one (the vfork path's mutex may be held by a thread that is
     * not here); no timings or kept descriptors for a monitored start. */
    struct nsp_spawn_config cfg = *spawn;
    cfg.use_vfork = 0;
    cfg.step_ns = NULL;
    cfg.kept_fds = NULL;
    cfg.nkept = 0;
    struct nsp_spawn_result r;
    memset(&r, 0, sizeof r);
    r.progress = progress; /* the caller's page: it, not we, reads how far the child got */
    struct monitor_hello h;
    memset(&h, 0, sizeof h);
    /* nsp_spawn hands the mask it finds to the child for its exec. */
    pthread_sigmask(SIG_SETMASK, caller_mask, NULL);
    int ret = nsp_spawn(&cfg, &r);
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, NULL); /* from now on only SIGKILL ends the monitor */
    if (ret < 0) {
        h.err = -ret;
        send(ctl, &h, sizeof h, MSG_NOSIGNAL);
        _exit(1);
    }
    h.pid = r.pid;
    h.monitor_pid = getpid();
    h.has_sync = r.sync_fd >= 0;
    char path[64], *p = put_str(path, "/proc/");
    p = put_int(p, r.pid);
    put_str(p, "/stat")[0] = 0;
    h.starttime = proc_starttime(path); /* not reaped before we wait: the pid is still its own */
    h.monitor_starttime = proc_starttime("/proc/self/stat");

    int fds[3] = {r.pidfd, r.report_fd, r.sync_fd};
    char control[CMSG_SPACE(sizeof fds)];
    memset(control, 0, sizeof control);
    struct iovec iov = {&h, sizeof h};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * (h.has_sync ? 3 : 2));
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * (h.has_sync ? 3 : 2));
    memcpy(CMSG_DATA(cm), fds, sizeof(int) * (h.has_sync ? 3 : 2));
    int sent = sendmsg(ctl, &msg, MSG_NOSIGNAL) == (ssize_t)sizeof h;
    /* The caller holds the pipe ends now: ours would hide its EOFs. */
    close(r.report_fd);
    if (r.sync_fd >= 0)
        close(r.sync_fd);

    /* Keep the pidfd, the socket and the state directory as 3, 4, 5; lifted
     * above the low slots first so that no dup3 overwrites another keeper,
     * and every other descriptor of the caller's closed. */
    int pidfd = fcntl(r.pidfd, F_DUPFD_CLOEXEC, 16);
    int sock = fcntl(ctl, F_DUPFD_CLOEXEC, 16);
    int dirfd = mon->state_dirfd >= 0 ? fcntl(mon->state_dirfd, F_DUPFD_CLOEXEC, 16) : -1;
    if (pidfd < 0 || sock < 0 || move_to(pidfd, 3) < 0 || move_to(sock, 4) < 0) {
        /* Cannot happen with a table this small; the container must not run unwatched. */
        syscall(__NR_pidfd_send_signal, r.pidfd, SIGKILL, NULL, 0);
        _exit(1);
    }
    if (move_to(dirfd, 5) < 0)
        close(5);
    if (syscall(__NR_close_range, 6U, ~0U, 0U) < 0)
        for (int fd = 6; fd < 65536; fd++)
            close(fd);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    for (int fd = 0; fd < 3 && null >= 0; fd++)
        dup3(null, fd, 0);
    if (null > 5)
        close(null);
    if (chdir("/") < 0) /* hold no directory of the caller's busy */
        null = -1;
    if (sent && loader != NULL)
        nsp_monitor_reexec(loader, mon, &h); /* returns only if it failed: go on as we are */
    nsp_monitor_loop(mon, &h, sent ? 4 : -1);
}

int nsp_monitor_spawn(const struct nsp_spawn_config *spawn, const struct nsp_monitor_config *mon,
                      struct nsp_spawn_result *res, struct nsp_monitor_result *mres)
{
    /* Found before the fork: looking for it may run a probe process. */
    const char *loader = mon->exe != NULL ? nsp_monitor_loader(mon->exe) : NULL;
    int sv[2];
    /* Mapped before the forks, so that the monitor's child writes where we read. */
    res->progress = nsp_progress_map();
    if (!res->progress)
        return -errno;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        int e = errno;
        nsp_spawn_release(res);
        return -e;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    /* Double fork: the monitor is nobody's zombie, and not ours to reap. */
    pid_t mid = nsp_raw_fork();
    if (mid == 0) {
        close(sv[0]);
        pid_t m = nsp_raw_fork();
        if (m == 0)
            monitor_main(spawn, mon, sv[1], &old, loader, res->progress);
        _exit(m < 0 ? 1 : 0);
    }
    int err = mid < 0 ? errno : 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(sv[1]);
    if (mid < 0) {
        close(sv[0]);
        nsp_spawn_release(res);
        return -err;
    }
    int status;
    while (waitpid(mid, &status, 0) < 0 && errno == EINTR)
        ;
    struct monitor_hello h;
    int fds[3] = {-1, -1, -1};
    char control[CMSG_SPACE(sizeof fds)];
    struct iovec iov = {&h, sizeof h};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n;
    while ((n = recvmsg(sv[0], &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
        ;
    int nfds = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); n > 0 && cm != NULL; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            nfds = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            if (nfds > 3)
                nfds = 3;
            memcpy(fds, CMSG_DATA(cm), sizeof(int) * (size_t)nfds);
        }
    }
    int e = n < 0 ? errno : 0;
    if (n != (ssize_t)sizeof h || h.err != 0 || nfds != (h.has_sync ? 3 : 2)) {
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        close(sv[0]);
        nsp_spawn_release(res);
        if (n == (ssize_t)sizeof h && h.err != 0)
            return -h.err;
        return e ? -e : -ECHILD; /* the monitor died before it could start the container */
    }
    res->pid = h.pid;
    res->pidfd = fds[0];
    res->report_fd = fds[1];
    res->sync_fd = h.has_sync ? fds[2] : -1;
    mres->control_fd = sv[0];
    mres->monitor_pid = h.monitor_pid;
    mres->starttime = h.starttime;
    mres->monitor_starttime = h.monitor_starttime;
    return 0;
}
