/*
 * The plan runner of a spawned child (see child.h and spawn.c's protocol):
 * each step is a few system calls; the first failure is reported to the
 * parent as (step index, errno) and the child exits.
 */
#include "child.h"

#include <limits.h>

#include "init.h"
#include "netif.h"
#include "security.h"
#include "terminal.h"
#include "wait_start.h"

#define CHECK(expr) ((expr) < 0 ? -errno : 0)

static void write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

static __attribute__((noreturn)) void child_fail(struct child_ctx *ctx, int index, int err)
{
    struct nsp_report r;
    r.index = index;
    r.kind = 0;
    if (index >= 0 && index < ctx->cfg->nprefix)
        r.kind = ctx->cfg->prefix[index].kind;
    else if (index >= ctx->cfg->nprefix && index < ctx->cfg->nprefix + ctx->cfg->nsteps)
        r.kind = ctx->cfg->steps[index - ctx->cfg->nprefix].kind;
    r.err = err > 0 ? err : EIO;
    r.part = ctx->part;
    /* First where no allocation can fail: the pipe write below needs a
     * buffer page, which a memory limit may refuse. */
    __atomic_store_n(&ctx->progress->part, r.part, __ATOMIC_RELAXED);
    __atomic_store_n(&ctx->progress->err, r.err, __ATOMIC_RELEASE);
    nsp_root_cache_drop(&ctx->root);
    write_all(ctx->report_fd, &r, sizeof r);
    _exit(127);
}

static void reset_signals(int cleared)
{
    struct sigaction dfl, old;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        /* CLONE_CLEAR_SIGHAND did the rest (handled -> default, ignored
         * kept) instead of ~60 sigaction calls, 9 us of a spawn. */
        if (cleared && sig != SIGPIPE && sig != SIGXFSZ)
            continue;
        if (sigaction(sig, NULL, &old) < 0)
            continue;
        /* Keep what the caller ignores, except the two Python ignores for
         * itself (as subprocess' restore_signals does). */
        if (old.sa_handler == SIG_IGN && sig != SIGPIPE && sig != SIGXFSZ)
            continue;
        if (old.sa_handler != SIG_DFL)
            sigaction(sig, &dfl, NULL);
    }
}

/* Move fd above 'floor' if it is at or below it; returns the fd to use. */
static int lift_fd(int fd, int floor)
{
    if (fd < 0 || fd > floor)
        return fd;
    int n = fcntl(fd, F_DUPFD_CLOEXEC, floor + 1);
    return n < 0 ? -errno : n;
}

static int mark_cloexec_from(int first)
{
    if (syscall(__NR_close_range, (unsigned)first, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
        return 0;
    /* Kernels before 5.11: walk the plausible range. */
    struct rlimit rl;
    long max = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (long)rl.rlim_cur < max)
        max = (long)rl.rlim_cur;
    for (int fd = first; fd < max; fd++) {
        int fl = fcntl(fd, F_GETFD);
        if (fl >= 0 && !(fl & FD_CLOEXEC))
            fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
    }
    return 0;
}

static void close_fd_range(int lo, int hi)
{
    if (lo > hi)
        return;
    if (syscall(__NR_close_range, (unsigned)lo, (unsigned)hi, 0) == 0)
        return;
    struct rlimit rl;
    long max = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (long)rl.rlim_cur < max)
        max = (long)rl.rlim_cur;
    for (long fd = lo; fd <= hi && fd < max; fd++)
        close((int)fd);
}

/* Close every fd >= 3 but those in keep[0..n) (sorted here, in place). */
static void close_others(int *keep, int n)
{
    for (int i = 1; i < n; i++) { /* insertion sort: n is small */
        int v = keep[i], j = i - 1;
        while (j >= 0 && keep[j] > v) {
            keep[j + 1] = keep[j];
            j--;
        }
        keep[j + 1] = v;
    }
    int lo = 3;
    for (int i = 0; i < n; i++) {
        if (keep[i] < lo)
            continue;
        close_fd_range(lo, keep[i] - 1);
        lo = keep[i] + 1;
    }
    close_fd_range(lo, INT_MAX);
}

#define NSP_MAX_FDMAP_KEEP 64

static int do_fdmap(struct child_ctx *ctx, const struct nsp_step *s)
{
    /* Fixed arrays: this may run on the 64 KiB stack of a vfork child,
     * which lies in the suspended caller's frame. */
    int tmp[NSP_MAX_FDMAP_PAIRS];
    int closing = (s->flags & NSP_FDMAP_CLOSE_OTHERS) != 0;
    if (closing && (s->flags & NSP_FDMAP_KEEP_OTHERS))
        return -EINVAL;
    long long nkeep = closing ? s->c : 0;
    if (nkeep < 0 || nkeep > NSP_MAX_FDMAP_KEEP || (!closing && s->c != 0))
        return -EINVAL;
    int npaired = s->nints - (int)nkeep;
    if (s->nints < 0 || npaired < 0 || npaired % 2 != 0 || npaired / 2 > NSP_MAX_FDMAP_PAIRS
        || (s->nints > 0 && !s->ints))
        return -EINVAL;
    int npairs = npaired / 2;
    int maxdst = 2;
    for (int i = 0; i < s->nints; i++)
        if (s->ints[i] < 0)
            return -EBADF;
    for (int i = 0; i < npairs; i++)
        if (s->ints[2 * i + 1] > maxdst)
            maxdst = s->ints[2 * i + 1];
    /* Our own pipes must survive the renumbering (no report pipe: a plan run in place). */
    int r;
    if (ctx->report_fd >= 0) {
        r = lift_fd(ctx->report_fd, maxdst);
        if (r < 0)
            return r;
        ctx->report_fd = r;
    }
    if (ctx->sync_fd >= 0) {
        r = lift_fd(ctx->sync_fd, maxdst);
        if (r < 0)
            return r;
        ctx->sync_fd = r;
    }
    /* Stage every source above all targets first, so that a target never
     * overwrites a source still to be used (e.g. 3->4 and 4->3). */
    for (int i = 0; i < npairs; i++) {
        tmp[i] = fcntl(s->ints[2 * i], F_DUPFD_CLOEXEC, maxdst + 1);
        if (tmp[i] < 0)
            return -errno;
    }
    if (!(s->flags & NSP_FDMAP_KEEP_OTHERS))
        mark_cloexec_from(3);
    for (int i = 0; i < npairs; i++) {
        if (dup3(tmp[i], s->ints[2 * i + 1], 0) < 0)
            return -errno;
        close(tmp[i]);
    }
    if (closing) {
        /* Targets, the kept fds and our own pipes stay; nothing else. */
        int keep[NSP_MAX_FDMAP_PAIRS + NSP_MAX_FDMAP_KEEP + 2];
        int n = 0;
        for (int i = 0; i < npairs; i++)
            keep[n++] = s->ints[2 * i + 1];
        for (int i = 0; i < (int)nkeep; i++)
            keep[n++] = s->ints[npaired + i];
        keep[n++] = ctx->report_fd;
        if (ctx->sync_fd >= 0)
            keep[n++] = ctx->sync_fd;
        close_others(keep, n);
    }
    return 0;
}

static int id_ok(long long id)
{
    return id >= 0 && id <= NSP_MAX_ID;
}

_Static_assert(sizeof(gid_t) == sizeof(int), "SETGROUPS passes its ints as the gid_t array");

static int do_setgroups(const struct nsp_step *s)
{
    if (s->nints < 0 || s->nints > NSP_MAX_GROUPS || (s->nints > 0 && !s->ints))
        return -EINVAL;
    /* The ints are the gids' bit patterns: handed to the kernel as they are,
     * with no copy (up to 256 KiB, far more than a vfork child's stack). */
    const gid_t *groups = (const gid_t *)s->ints;
    for (int i = 0; i < s->nints; i++)
        if (groups[i] == (gid_t)-1)
            return -EINVAL;
    /* The raw call: glibc's setgroups broadcasts to all threads. */
    return CHECK(syscall(SYS_setgroups, (size_t)s->nints, s->nints > 0 ? groups : NULL));
}

extern char **environ;

/* execve, or with NSP_EXEC_LOOKUP what it would see first: an executable
 * regular file; 0 then means found (execve itself only returns on failure). */
static int try_exec(const struct nsp_step *s, const char *path, char *const *envp)
{
    if (!(s->flags & NSP_EXEC_LOOKUP)) {
        execve(path, s->strv, envp);
        return -1;
    }
    struct stat st;
    if (stat(path, &st) < 0)
        return -1;
    if (!S_ISREG(st.st_mode)) {
        errno = EACCES; /* what execve says of a directory or a device */
        return -1;
    }
    return access(path, X_OK);
}

static int do_exec(const struct nsp_step *s)
{
    /* No environment given: the caller's own, as CPython's subprocess does. */
    char *const *envp = s->strv2 ? s->strv2 : environ;
    const char *file = s->path;
    if (strchr(file, '/') || s->str == NULL)
        return try_exec(s, file, envp) == 0 ? 0 : -errno;
    /* PATH search, as execvpe does, without allocating. */
    char buf[PATH_MAX];
    size_t flen = strlen(file);
    int seen_eacces = 0, last = ENOENT;
    const char *p = s->str;
    for (;;) {
        const char *colon = strchr(p, ':');
        size_t dlen = colon ? (size_t)(colon - p) : strlen(p);
        if (dlen == 0) {
            dlen = 1;
            p = "."; /* an empty entry means the current directory */
        }
        if (dlen + 1 + flen + 1 <= sizeof buf) {
            memcpy(buf, p, dlen);
            buf[dlen] = '/';
            memcpy(buf + dlen + 1, file, flen + 1);
            if (try_exec(s, buf, envp) == 0)
                return 0;
            switch (errno) {
            case EACCES:
                seen_eacces = 1;
                break;
            case ENOENT:
            case ENOTDIR:
            case ELOOP:
            case ENAMETOOLONG:
            case ENODEV:
            case ETIMEDOUT:
            case ESTALE:
                break;
            default:
                return -errno;
            }
            last = errno;
        }
        if (!colon)
            break;
        p = colon + 1;
    }
    return seen_eacces ? -EACCES : -last;
}

static int do_write_file(const struct nsp_step *s)
{
    int fd = open(s->path, O_WRONLY | O_CLOEXEC | ((s->flags & NSP_WRITE_FILE_CREATE) ? O_CREAT | O_TRUNC : 0), 0644);
    if (fd < 0)
        return -errno;
    const char *p = s->str;
    size_t len = (size_t)s->a;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            return -e;
        }
        p += n;
        len -= (size_t)n;
    }
    if (close(fd) < 0)
        return -errno;
    return 0;
}

static int wait_for_parent(struct child_ctx *ctx)
{
    char c;
    for (;;) {
        ssize_t n = read(ctx->sync_fd, &c, 1);
        if (n == 1)
            return 0;
        if (n == 0)
            return -ECANCELED; /* the parent gave up */
        if (errno != EINTR)
            return -errno;
    }
}

/* The flags a kind knows (nsprim.h), or -1 for no kind.  A switch on the
 * enum with no default: the compiler names a kind missing here (-Wswitch). */
static int known_flags(int kind)
{
    switch ((enum nsp_step_kind)kind) {
    case NSP_STEP_MKDIR:
        return NSP_MKDIR_EXIST_OK | NSP_STEP_OPTIONAL;
    case NSP_STEP_WRITE_FILE:
        return NSP_WRITE_FILE_CREATE | NSP_STEP_OPTIONAL;
    case NSP_STEP_FDMAP:
        return NSP_FDMAP_KEEP_OTHERS | NSP_FDMAP_CLOSE_OTHERS;
    case NSP_STEP_CAPS:
        return NSP_CAPS_BOUNDING | NSP_CAPS_KEEP | NSP_CAPS_SETS | NSP_CAPS_CLAMP;
    case NSP_STEP_SECCOMP:
        return NSP_SECCOMP_KERNEL_FLAGS;
    case NSP_STEP_MOUNT_IN_ROOT:
        return NSP_ROOT_MKDIR | NSP_ROOT_MKFILE | NSP_ROOT_SRC_IN_ROOT | NSP_ROOT_MASK | NSP_ROOT_NOFOLLOW
            | NSP_ROOT_COPY_UP | NSP_STEP_OPTIONAL;
    case NSP_STEP_CREATE_IN_ROOT:
        return NSP_ROOT_NOFOLLOW | NSP_ROOT_EXIST_OK | NSP_STEP_OPTIONAL;
    case NSP_STEP_ENTER_ROOT:
        return NSP_ENTER_ROOT_FALLBACK | NSP_ENTER_ROOT_CHROOT | NSP_STEP_OPTIONAL;
    case NSP_STEP_MOUNT:
    case NSP_STEP_CHROOT:
    case NSP_STEP_CHDIR:
    case NSP_STEP_MOUNT_FS:
    case NSP_STEP_KEEP_FD:
        return NSP_STEP_OPTIONAL;
    case NSP_STEP_SYNC:
    case NSP_STEP_SETNS:
    case NSP_STEP_UNSHARE:
    case NSP_STEP_SETHOSTNAME:
    case NSP_STEP_SETDOMAINNAME:
    case NSP_STEP_SETGROUPS:
    case NSP_STEP_SETRESGID:
    case NSP_STEP_SETRESUID:
    case NSP_STEP_SETSID:
    case NSP_STEP_PDEATHSIG:
    case NSP_STEP_NO_NEW_PRIVS:
    case NSP_STEP_RLIMIT:
    case NSP_STEP_UMASK:
    case NSP_STEP_EXEC:
        return NSP_EXEC_LOOKUP;
    case NSP_STEP_DUMPABLE:
    case NSP_STEP_IFUP:
    case NSP_STEP_INIT:
    case NSP_STEP_WAIT_START:
        return 0;
    case NSP_STEP_TERMINAL:
        return NSP_TERMINAL_CONSOLE;
    }
    return -1;
}

static int run_step(struct child_ctx *ctx, const struct nsp_step *s)
{
    int known = known_flags(s->kind);
    if (known < 0 || (s->flags & ~known))
        return -EINVAL;
    /* No default: -Wswitch (an error here) names a kind left out. */
    switch ((enum nsp_step_kind)s->kind) {
    case NSP_STEP_SYNC:
        return wait_for_parent(ctx);
    case NSP_STEP_SETNS:
        if (setns((int)s->a, (int)s->b) < 0)
            return -errno;
        if (s->c > 0) {
            /* setns into a mount namespace puts the root (and cwd) at the
             * namespace's own root: a chrooted caller's root is elsewhere. */
            if (fchdir((int)(s->c - 1)) < 0 || chroot(".") < 0 || chdir("/") < 0)
                return -errno;
        }
        return 0;
    case NSP_STEP_UNSHARE:
        return CHECK(unshare((int)s->a));
    case NSP_STEP_SETHOSTNAME:
        return CHECK(sethostname(s->str, strlen(s->str)));
    case NSP_STEP_SETDOMAINNAME:
        return CHECK(setdomainname(s->str, strlen(s->str)));
    case NSP_STEP_MOUNT:
        return CHECK(mount(s->path, s->path2, s->str, (unsigned long)s->a, s->str2));
    case NSP_STEP_MKDIR:
        if (mkdir(s->path, (mode_t)s->a) < 0 && !((s->flags & NSP_MKDIR_EXIST_OK) && errno == EEXIST))
            return -errno;
        return 0;
    case NSP_STEP_CHROOT:
        if (chroot(s->path) < 0)
            return -errno;
        return CHECK(chdir("/"));
    case NSP_STEP_CHDIR:
        return CHECK(chdir(s->path));
    case NSP_STEP_WRITE_FILE:
        return do_write_file(s);
    case NSP_STEP_SETGROUPS:
        return do_setgroups(s);
    case NSP_STEP_SETRESGID:
        /* A value past gid_t would wrap (2**32 to root, -1 to "unchanged"). */
        if (!id_ok(s->a))
            return -EINVAL;
        return CHECK(syscall(SYS_setresgid, (gid_t)s->a, (gid_t)s->a, (gid_t)s->a));
    case NSP_STEP_SETRESUID:
        if (!id_ok(s->a))
            return -EINVAL;
        return CHECK(syscall(SYS_setresuid, (uid_t)s->a, (uid_t)s->a, (uid_t)s->a));
    case NSP_STEP_FDMAP:
        return do_fdmap(ctx, s);
    case NSP_STEP_SETSID:
        return CHECK(setsid());
    case NSP_STEP_PDEATHSIG:
        return CHECK(prctl(PR_SET_PDEATHSIG, (unsigned long)s->a, 0, 0, 0));
    case NSP_STEP_NO_NEW_PRIVS:
        return CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    case NSP_STEP_RLIMIT: {
        struct rlimit rl;
        rl.rlim_cur = s->b < 0 ? RLIM_INFINITY : (rlim_t)s->b;
        rl.rlim_max = s->c < 0 ? RLIM_INFINITY : (rlim_t)s->c;
        return CHECK(setrlimit((int)s->a, &rl));
    }
    case NSP_STEP_UMASK:
        umask((mode_t)s->a);
        return 0;
    case NSP_STEP_EXEC:
        if (s->flags & NSP_EXEC_LOOKUP)
            return do_exec(s);
        /* The caller's signal mask comes back only now: until here no
         * handler of the parent's may run in the child. */
        sigprocmask(SIG_SETMASK, &ctx->mask, NULL);
        return do_exec(s);
    case NSP_STEP_DUMPABLE:
        return CHECK(prctl(PR_SET_DUMPABLE, (unsigned long)s->a, 0, 0, 0));
    case NSP_STEP_CAPS:
        return nsp_child_set_caps(s);
    case NSP_STEP_SECCOMP:
        return nsp_child_seccomp(s);
    case NSP_STEP_IFUP:
        return nsp_child_ifup(s->str);
    case NSP_STEP_INIT: {
        /* Only the payload side returns; pid 1 must not hold our pipes, or
         * the parent would never see EOF on exec. */
        int r = nsp_child_become_init(ctx->report_fd, ctx->sync_fd);
        return r;
    }
    case NSP_STEP_MOUNT_IN_ROOT:
        return nsp_root_mount(&ctx->root, s, &ctx->part);
    case NSP_STEP_CREATE_IN_ROOT:
        return nsp_root_create(&ctx->root, s, &ctx->part);
    case NSP_STEP_ENTER_ROOT:
        return nsp_root_enter(s);
    case NSP_STEP_MOUNT_FS:
        return nsp_root_mount_fs(s, &ctx->part);
    case NSP_STEP_TERMINAL:
        if ((s->b != -1 && !id_ok(s->b)) || (s->c != -1 && !id_ok(s->c)))
            return -EINVAL;
        return nsp_child_terminal(s);
    case NSP_STEP_WAIT_START:
        return nsp_child_wait_start(s->a, ctx->index, ctx->cfg->use_vfork, &ctx->report_fd);
    case NSP_STEP_KEEP_FD: {
        /* Only a child that shares the parent's memory and descriptor table
         * can leave it a descriptor this way. */
        const struct nsp_spawn_config *cfg = ctx->cfg;
        if (!cfg->kept_fds || s->a < 0 || s->a >= cfg->nkept || !cfg->use_vfork || !(cfg->clone_flags & CLONE_FILES))
            return -EINVAL;
        int fd = open(s->path, O_RDONLY | O_CLOEXEC | (int)s->b);
        if (fd < 0)
            return -errno;
        cfg->kept_fds[s->a] = fd;
        return 0;
    }
    }
    return -EINVAL; /* not a kind */
}

/* Run the steps of ctx->cfg from the first; -1 when all ran, else the index
 * of the step that failed, its errno in *err. */
static int run_plan(struct child_ctx *ctx, long long *times, int *err)
{
    const struct nsp_spawn_config *cfg = ctx->cfg;
    for (int i = 0; i < cfg->nprefix + cfg->nsteps; i++) {
        const struct nsp_step *s = i < cfg->nprefix ? &cfg->prefix[i] : &cfg->steps[i - cfg->nprefix];
        if (s->kind != NSP_STEP_MOUNT_IN_ROOT && s->kind != NSP_STEP_CREATE_IN_ROOT)
            nsp_root_cache_drop(&ctx->root); /* see rootfs.h: not across other steps */
        ctx->part = NSP_PART_NONE;
        ctx->index = i;
        __atomic_store_n(&ctx->progress->kind, s->kind, __ATOMIC_RELAXED);
        __atomic_store_n(&ctx->progress->step, i, __ATOMIC_RELEASE);
        int r = run_step(ctx, s);
        if (times)
            times[i + 2] = nsp_clock_ns();
        if (r == -ENOENT && (s->flags & NSP_STEP_OPTIONAL))
            continue;
        if (r < 0) {
            *err = -r;
            return i;
        }
    }
    nsp_root_cache_drop(&ctx->root);
    return -1;
}

int nsp_child_main(void *arg)
{
    struct child_ctx *ctx = arg;
    const struct nsp_spawn_config *cfg = ctx->cfg;
    long long *times = cfg->use_vfork ? cfg->step_ns : NULL; /* shared memory only */
    reset_signals(ctx->handlers_cleared);
    if (times)
        times[1] = nsp_clock_ns();
    int err = 0;
    int failed = run_plan(ctx, times, &err);
    if (failed >= 0) {
        /* exec may have restored the mask before failing */
        sigset_t all;
        sigfillset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        child_fail(ctx, failed, err);
    }
    /* A plan without an exec step: the setup itself was the job. */
    __atomic_store_n(&ctx->progress->kind, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&ctx->progress->step, cfg->nprefix + cfg->nsteps, __ATOMIC_RELEASE);
    _exit(0);
}

/* The kinds a plan run in the calling process may not have: they need a
 * parent on the other side of a clone, or would end the process. */
static int here_refused(int kind)
{
    return kind == NSP_STEP_SYNC || kind == NSP_STEP_INIT || kind == NSP_STEP_KEEP_FD
        || kind == NSP_STEP_WAIT_START || kind == NSP_STEP_EXEC;
}

int nsp_run_plan_here(const struct nsp_spawn_config *cfg, struct nsp_report *report)
{
    struct nsp_progress progress;
    struct child_ctx ctx;
    memset(&progress, 0, sizeof progress);
    memset(&ctx, 0, sizeof ctx);
    progress.step = -1;
    ctx.cfg = cfg;
    ctx.report_fd = -1;
    ctx.sync_fd = -1;
    ctx.progress = &progress;
    nsp_root_cache_init(&ctx.root);
    for (int i = 0; i < cfg->nprefix + cfg->nsteps; i++) {
        const struct nsp_step *s = i < cfg->nprefix ? &cfg->prefix[i] : &cfg->steps[i - cfg->nprefix];
        if (here_refused(s->kind)) {
            report->index = i;
            report->kind = s->kind;
            report->err = EINVAL;
            report->part = NSP_PART_NONE;
            return 1;
        }
    }
    int err = 0;
    int failed = run_plan(&ctx, NULL, &err);
    if (failed < 0)
        return 0;
    nsp_root_cache_drop(&ctx.root);
    report->index = failed;
    report->kind = failed < cfg->nprefix ? cfg->prefix[failed].kind : cfg->steps[failed - cfg->nprefix].kind;
    report->err = err;
    report->part = ctx.part;
    return 1;
}
