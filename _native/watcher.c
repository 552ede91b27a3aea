/*
 * The cleanup watcher: a process, not a child of its owner, that outlives it.
 * The owner registers cgroups, processes and directories over a pipe; when
 * the owner dies (its pidfd becomes readable) the watcher kills and removes
 * them.  The monitor of detached containers uses its removal functions too.
 * A copy of a (possibly threaded) Python process that never execs: system
 * calls only, no malloc, no locks.
 */
#include "watcher.h"

#include <dirent.h>
#include <poll.h>
#include <sys/mman.h>
#include <time.h>

/* What the owner registered, oldest first, packed in one anonymous mapping
 * that grows (mremap) as needed: no fixed limit, and no malloc in a copy of a
 * Python process.  A forgotten entry is marked free and squeezed out later. */
struct watch_entry {
    int op; /* NSP_WATCH_CGROUP / PID / TREE, or 0 once forgotten or done */
    int pid;
    int pidfd;
    int len; /* of path, without its NUL */
    char path[];
};

static struct {
    char *base;
    size_t size; /* bytes mapped */
    size_t used; /* bytes of entries, forgotten ones included */
    size_t dead; /* bytes of forgotten entries */
} table;

#define TABLE_MIN_SIZE ((size_t)64 * 1024)

static size_t entry_size(int len)
{
    return (sizeof(struct watch_entry) + (size_t)len + 1 + 7) & ~(size_t)7;
}

/* The entry at *off, with *off moved past it; NULL after the last one. */
static struct watch_entry *next_entry(size_t *off)
{
    if (*off >= table.used)
        return NULL;
    struct watch_entry *e = (struct watch_entry *)(table.base + *off);
    *off += entry_size(e->len);
    return e;
}

static void table_compact(void)
{
    size_t to = 0, off = 0;
    struct watch_entry *e;
    while ((e = next_entry(&off)) != NULL) {
        if (e->op == 0)
            continue;
        size_t n = entry_size(e->len);
        if (table.base + to != (char *)e)
            memmove(table.base + to, e, n);
        to += n;
    }
    table.used = to;
    table.dead = 0;
}

/* Room for `need` more bytes.  Without memory for it, wait for some rather
 * than drop a registration (the owner's writes block meanwhile). */
static void table_reserve(size_t need)
{
    while (table.used + need > table.size) {
        if (table.dead >= need && table.dead * 2 >= table.used) {
            table_compact();
            continue;
        }
        size_t size = table.size ? table.size * 2 : TABLE_MIN_SIZE;
        while (size < table.used + need)
            size *= 2;
        void *p = table.base == NULL
                      ? mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                      : mremap(table.base, table.size, size, MREMAP_MAYMOVE);
        if (p != MAP_FAILED) {
            table.base = p;
            table.size = size;
        } else if (table.dead > 0) {
            table_compact();
        } else {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

static void watch_add(const struct nsp_watch_record *r, const char *path)
{
    size_t n = entry_size(r->len);
    table_reserve(n);
    struct watch_entry *e = (struct watch_entry *)(table.base + table.used);
    e->op = r->op;
    e->pid = r->pid;
    e->pidfd = r->op == NSP_WATCH_PID ? (int)syscall(__NR_pidfd_open, r->pid, 0) : -1;
    e->len = r->len;
    memcpy(e->path, path, (size_t)r->len + 1);
    table.used += n;
}

/* Undo the oldest matching registration: a pid or a path is registered again
 * only once its first owner ended (a reused pid, a group of the same name),
 * so the oldest one is what the owner has just cleaned up. */
static void watch_forget(const struct nsp_watch_record *r, const char *path)
{
    int op = r->op - (NSP_WATCH_FORGET_CGROUP - NSP_WATCH_CGROUP);
    size_t off = 0;
    struct watch_entry *e;
    while ((e = next_entry(&off)) != NULL) {
        if (e->op != op)
            continue;
        if (op == NSP_WATCH_PID ? e->pid != r->pid
                                : e->len != r->len || memcmp(e->path, path, (size_t)r->len) != 0)
            continue;
        if (e->pidfd >= 0)
            close(e->pidfd);
        e->op = 0;
        e->pidfd = -1;
        table.dead += entry_size(e->len);
        if (table.dead >= TABLE_MIN_SIZE && table.dead * 2 >= table.used)
            table_compact(); /* keep the scans short */
        return;
    }
}

static int join_path(char *out, size_t size, const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    if (a + 1 + b + 1 > size)
        return -1;
    memcpy(out, dir, a);
    out[a] = '/';
    memcpy(out + a + 1, name, b + 1);
    return 0;
}

/* Signal every member of the group: cgroup.kill (v2), else each pid in
 * cgroup.procs (v1), then thaw a v1 freezer (frozen tasks die only thawed). */
static void kill_cgroup(const char *dir)
{
    char path[4200];
    char buf[4096];
    if (join_path(path, sizeof path, dir, "cgroup.kill") == 0) {
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t n = write(fd, "1", 1);
            close(fd);
            if (n == 1)
                return;
        }
    }
    if (join_path(path, sizeof path, dir, "cgroup.procs") != 0)
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return; /* not (or no longer, or not yet) there */
    long pid = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++) { /* a number may span two reads */
            if (buf[i] >= '0' && buf[i] <= '9') {
                pid = pid * 10 + (buf[i] - '0');
                continue;
            }
            if (pid > 0)
                kill((pid_t)pid, SIGKILL);
            pid = 0;
        }
    }
    if (pid > 0)
        kill((pid_t)pid, SIGKILL);
    close(fd);
    if (join_path(path, sizeof path, dir, "freezer.state") == 0) {
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t n = write(fd, "THAWED", 6);
            (void)n;
            close(fd);
        }
    }
}

/* Kill the members of every registered group, then remove the groups in
 * rounds until all are gone (or ~10 s passed): members take a moment to die, a
 * parent goes once its children went, and a v1 member that forked meanwhile
 * is signalled again.  A path that does not exist (any more) is done. */
static void remove_cgroups(void)
{
    size_t off = 0;
    struct watch_entry *e;
    while ((e = next_entry(&off)) != NULL)
        if (e->op == NSP_WATCH_CGROUP)
            kill_cgroup(e->path);
    for (int round = 1; round <= 2000; round++) {
        int left = 0;
        off = 0;
        while ((e = next_entry(&off)) != NULL) {
            if (e->op != NSP_WATCH_CGROUP)
                continue;
            if (rmdir(e->path) < 0 && errno == EBUSY) {
                left = 1;
                if (round % 20 == 0)
                    kill_cgroup(e->path);
                continue;
            }
            e->op = 0; /* removed, never made, or not ours to remove */
        }
        if (!left)
            return;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Remove everything below dirfd (same file system only), then nothing else. */
static void remove_tree_at(int dirfd, dev_t dev, int depth)
{
    char buf[8192];
    if (depth > 256)
        return;
    for (;;) {
        long n = syscall(SYS_getdents64, dirfd, buf, sizeof buf);
        if (n <= 0)
            break;
        int removed = 0;
        for (long off = 0; off < n;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
            off += d->d_reclen;
            const char *name = d->d_name;
            if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0)))
                continue;
            if (unlinkat(dirfd, name, 0) == 0) {
                removed = 1;
                continue;
            }
            if (errno != EISDIR && errno != EPERM)
                continue;
            int sub = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0)
                continue;
            struct stat st;
            if (fstat(sub, &st) == 0 && st.st_dev == dev)
                remove_tree_at(sub, dev, depth + 1);
            close(sub);
            if (unlinkat(dirfd, name, AT_REMOVEDIR) == 0)
                removed = 1;
        }
        if (removed)
            lseek(dirfd, 0, SEEK_SET); /* entries moved under us: read again */
    }
}

static void remove_tree(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    struct stat st;
    if (fstat(fd, &st) == 0)
        remove_tree_at(fd, st.st_dev, 0);
    close(fd);
    rmdir(path);
}

void nsp_cgroup_kill_remove(const char *dir)
{
    kill_cgroup(dir);
    for (int i = 1; i <= 400; i++) { /* up to ~2 s for the members to go */
        if (rmdir(dir) == 0 || errno != EBUSY)
            return;
        if (i % 20 == 0)
            kill_cgroup(dir); /* a v1 member that forked meanwhile */
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

void nsp_tree_remove(const char *path)
{
    remove_tree(path);
}

/* Read exactly len bytes unless EOF or an error comes first; returns what was read. */
static ssize_t read_full(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

static __attribute__((noreturn)) void watcher_main(int owner_pidfd, int pipe_r)
{
    setsid(); /* keep out of the owner's terminal signals (^C) */
    prctl(PR_SET_NAME, (unsigned long)"nsprim-watcher", 0, 0, 0);
    /* A pidfd per watched process: as many descriptors as we may have. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    table_reserve(TABLE_MIN_SIZE);
    struct nsp_watch_record rec;
    char path[4088];
    int pipe_open = 1;
    for (;;) {
        struct pollfd fds[2] = {{owner_pidfd, POLLIN, 0}, {pipe_r, POLLIN, 0}};
        int n = poll(fds, pipe_open ? 2 : 1, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pipe_open && (fds[1].revents & POLLIN)) {
            ssize_t got = read_full(pipe_r, &rec, sizeof rec);
            if (got == (ssize_t)sizeof rec && rec.len >= 0 && (size_t)rec.len < sizeof path
                && read_full(pipe_r, path, (size_t)rec.len) == rec.len) {
                path[rec.len] = 0;
                if (rec.op >= NSP_WATCH_FORGET_CGROUP)
                    watch_forget(&rec, path);
                else
                    watch_add(&rec, path);
                continue;
            }
            if (got <= 0)
                pipe_open = 0; /* the owner closed it: it is exiting */
            else
                break; /* a torn or malformed record: the owner died writing it */
        } else if (pipe_open && (fds[1].revents & (POLLHUP | POLLERR))) {
            pipe_open = 0;
        }
        if (fds[0].revents & POLLIN)
            break; /* the owner died */
    }
    /* Processes first (pid namespaces die with their init), then cgroups,
     * then directories no process uses any more. */
    size_t off = 0;
    struct watch_entry *e;
    while ((e = next_entry(&off)) != NULL) {
        if (e->op != NSP_WATCH_PID)
            continue;
        if (e->pidfd >= 0)
            syscall(__NR_pidfd_send_signal, e->pidfd, SIGKILL, NULL, 0);
        else if (e->pid > 0)
            kill(e->pid, SIGKILL); /* no pidfd (out of descriptors): by its pid */
    }
    remove_cgroups();
    off = 0;
    while ((e = next_entry(&off)) != NULL)
        if (e->op == NSP_WATCH_TREE)
            remove_tree(e->path);
    _exit(0);
}

int nsp_watcher_start(int *register_fd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    int owner = (int)syscall(__NR_pidfd_open, getpid(), 0);
    if (owner < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return -e;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    /* Double fork: the watcher is nobody's zombie and outlives us.  The middle
     * process is a vfork: it shares our memory and only forks the watcher and
     * exits, so our page tables are copied once (for the watcher), not twice. */
    pid_t mid = vfork();
    if (mid == 0) {
        pid_t w = nsp_raw_fork();
        if (w == 0) {
            /* Keep only the pidfd (as 3) and the pipe (as 4): an inherited
             * pipe end would keep someone else waiting for EOF. */
            int a = fcntl(owner, F_DUPFD_CLOEXEC, 10);
            int b = fcntl(p[0], F_DUPFD_CLOEXEC, 10);
            if (a < 0 || b < 0 || dup3(a, 3, O_CLOEXEC) < 0 || dup3(b, 4, O_CLOEXEC) < 0)
                _exit(1);
            if (syscall(__NR_close_range, 5U, ~0U, 0U) < 0)
                for (int fd = 5; fd < 65536; fd++)
                    close(fd);
            int null = open("/dev/null", O_RDWR | O_CLOEXEC);
            for (int fd = 0; fd < 3 && null >= 0; fd++)
                dup3(null, fd, 0);
            if (null > 2)
                close(null);
            owner = 3;
            p[0] = 4;
            struct sigaction dfl;
            memset(&dfl, 0, sizeof dfl);
            dfl.sa_handler = SIG_DFL;
            for (int sig = 1; sig < NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                    sigaction(sig, &dfl, NULL);
            signal(SIGPIPE, SIG_IGN);
            watcher_main(owner, p[0]);
        }
        _exit(w < 0 ? 1 : 0);
    }
    int err = mid < 0 ? errno : 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(owner);
    close(p[0]);
    if (mid < 0) {
        close(p[1]);
        return -err;
    }
    int status;
    while (waitpid(mid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        close(p[1]);
        return -ECHILD;
    }
    *register_fd = p[1];
    return 0;
}
