/*
 * nsp_spawn: clone a child into new namespaces and run a plan of steps in it,
 * in C only, up to exec.
 *
 * Protocol with the parent:
 *   - report pipe (child -> parent, close-on-exec): on the first failed step
 *     the child writes one struct nsp_report and exits with status 127.  EOF
 *     without a record means exec succeeded.
 *   - sync pipe (parent -> child): a SYNC step blocks until the parent writes
 *     one byte (after writing uid/gid maps, say).  EOF means "give up".
 *
 * Two ways to clone:
 *   - fork-like clone3 (the default): the child gets a copy of the address
 *     space, so it may wait for the parent at SYNC steps.  CLONE_INTO_CGROUP
 *     and a pidfd come from clone3 itself.
 *   - vfork-like CLONE_VM|CLONE_VFORK (clone3 on a stack of ours where it
 *     exists, else glibc's clone): no page tables to copy, which matters for
 *     a large Python process; the parent is suspended until exec, so plans
 *     with SYNC steps or an unshare of a user namespace (refused while memory
 *     is shared) cannot use it.  Python chooses.
 * Both ask for CLONE_CLEAR_SIGHAND where the kernel has it (5.5+): the
 * caller's handlers are reset at clone, not by the child one by one.
 *
 * Between clone and exec the child only makes system calls: no allocation, no
 * locks, no Python.  It is therefore safe to call from a threaded program.
 */
#include "compat.h"

#include <limits.h>
#include <time.h>
#include <pthread.h>
#include <sys/mman.h>

#include "container.h"
#include "rootfs.h"
#include "security.h"

struct nsp_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
        set_tid, set_tid_size, cgroup;
};

struct child_ctx {
    const struct nsp_spawn_config *cfg;
    int report_fd;
    int sync_fd;
    sigset_t mask; /* the caller's signal mask, restored before exec */
    int handlers_cleared; /* cloned with CLONE_CLEAR_SIGHAND (set before clone) */
    struct nsp_root_cache root; /* descriptors shared by consecutive in-root steps */
};

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
    r.pad = 0;
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

static int do_fdmap(struct child_ctx *ctx, const struct nsp_step *s)
{
    int npairs = s->nints / 2;
    int maxdst = 2;
    for (int i = 0; i < npairs; i++)
        if (s->ints[2 * i + 1] > maxdst)
            maxdst = s->ints[2 * i + 1];
    /* Our own pipes must survive the renumbering. */
    int r = lift_fd(ctx->report_fd, maxdst); /* the report fd is always open */
    if (r < 0)
        return r;
    ctx->report_fd = r;
    if (ctx->sync_fd >= 0) {
        r = lift_fd(ctx->sync_fd, maxdst);
        if (r < 0)
            return r;
        ctx->sync_fd = r;
    }
    /* Stage every source above all targets first, so that a target never
     * overwrites a source still to be used (e.g. 3->4 and 4->3). */
    int tmp[npairs > 0 ? npairs : 1];
    for (int i = 0; i < npairs; i++) {
        tmp[i] = fcntl(s->ints[2 * i], F_DUPFD_CLOEXEC, maxdst + 1);
        if (tmp[i] < 0)
            return -errno;
    }
    if (!(s->flags & 1))
        mark_cloexec_from(3);
    for (int i = 0; i < npairs; i++) {
        if (dup3(tmp[i], s->ints[2 * i + 1], 0) < 0)
            return -errno;
        close(tmp[i]);
    }
    return 0;
}

extern char **environ;

static int do_exec(const struct nsp_step *s)
{
    /* No environment given: the caller's own, as CPython's subprocess does. */
    char *const *envp = s->strv2 ? s->strv2 : environ;
    const char *file = s->path;
    if (strchr(file, '/') || s->str == NULL) {
        execve(file, s->strv, envp);
        return -errno;
    }
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
            execve(buf, s->strv, envp);
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

static int do_pivot_root(const char *new_root)
{
    /* pivot_root(".", "."): the old root is stacked under the new one and
     * detached right away, so no put_old directory is needed. */
    if (chdir(new_root) < 0)
        return -errno;
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return -errno;
    if (umount2(".", MNT_DETACH) < 0)
        return -errno;
    if (chdir("/") < 0)
        return -errno;
    return 0;
}

static int do_write_file(const struct nsp_step *s)
{
    int fd = open(s->path, O_WRONLY | O_CLOEXEC | ((s->flags & 1) ? O_CREAT | O_TRUNC : 0), 0644);
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

#define CHECK(expr) ((expr) < 0 ? -errno : 0)

static int run_step(struct child_ctx *ctx, const struct nsp_step *s)
{
    switch (s->kind) {
    case NSP_STEP_SYNC:
        return wait_for_parent(ctx);
    case NSP_STEP_SETNS:
        return CHECK(setns((int)s->a, (int)s->b));
    case NSP_STEP_UNSHARE:
        return CHECK(unshare((int)s->a));
    case NSP_STEP_SETHOSTNAME:
        return CHECK(sethostname(s->str, strlen(s->str)));
    case NSP_STEP_SETDOMAINNAME:
        return CHECK(setdomainname(s->str, strlen(s->str)));
    case NSP_STEP_MOUNT:
        return CHECK(mount(s->path, s->path2, s->str, (unsigned long)s->a, s->str2));
    case NSP_STEP_UMOUNT:
        return CHECK(umount2(s->path, (int)s->a));
    case NSP_STEP_MKDIR:
        if (mkdir(s->path, (mode_t)s->a) < 0 && !((s->flags & 1) && errno == EEXIST))
            return -errno;
        return 0;
    case NSP_STEP_PIVOT_ROOT:
        return do_pivot_root(s->path);
    case NSP_STEP_CHROOT:
        if (chroot(s->path) < 0)
            return -errno;
        return CHECK(chdir("/"));
    case NSP_STEP_CHDIR:
        return CHECK(chdir(s->path));
    case NSP_STEP_WRITE_FILE:
        return do_write_file(s);
    case NSP_STEP_SETGROUPS: {
        gid_t groups[s->nints > 0 ? s->nints : 1];
        for (int i = 0; i < s->nints; i++)
            groups[i] = (gid_t)s->ints[i];
        /* The raw call: glibc's setgroups broadcasts to all threads. */
        return CHECK(syscall(SYS_setgroups, (size_t)s->nints, groups));
    }
    case NSP_STEP_SETRESGID:
        return CHECK(syscall(SYS_setresgid, (gid_t)s->a, (gid_t)s->a, (gid_t)s->a));
    case NSP_STEP_SETRESUID:
        return CHECK(syscall(SYS_setresuid, (uid_t)s->a, (uid_t)s->a, (uid_t)s->a));
    case NSP_STEP_FDMAP:
        return do_fdmap(ctx, s);
    case NSP_STEP_SETSID:
        return CHECK(setsid());
    case NSP_STEP_SETCTTY:
        return CHECK(ioctl((int)s->a, TIOCSCTTY, 0));
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
    case NSP_STEP_SYMLINK:
        if (symlink(s->path, s->path2) < 0 && !((s->flags & 1) && errno == EEXIST))
            return -errno;
        return 0;
    case NSP_STEP_MKNOD:
        if (mknod(s->path, (mode_t)s->a, (dev_t)s->b) < 0 && !((s->flags & 1) && errno == EEXIST))
            return -errno;
        return 0;
    case NSP_STEP_CLOSE_FD:
        return CHECK(close((int)s->a));
    case NSP_STEP_EXEC:
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
    case NSP_STEP_MASK:
        return nsp_child_mask(s->path);
    case NSP_STEP_MOUNT_IN_ROOT:
        return nsp_root_mount(&ctx->root, s);
    case NSP_STEP_CREATE_IN_ROOT:
        return nsp_root_create(&ctx->root, s);
    case NSP_STEP_ENTER_ROOT:
        return nsp_root_enter(s);
    case NSP_STEP_MOUNT_FS:
        return nsp_root_mount_fs(s);
    default:
        return -EINVAL;
    }
}

static long long clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int child_main(void *arg)
{
    struct child_ctx *ctx = arg;
    const struct nsp_spawn_config *cfg = ctx->cfg;
    long long *times = cfg->use_vfork ? cfg->step_ns : NULL; /* shared memory only */
    reset_signals(ctx->handlers_cleared);
    if (times)
        times[1] = clock_ns();
    for (int i = 0; i < cfg->nprefix + cfg->nsteps; i++) {
        const struct nsp_step *s = i < cfg->nprefix ? &cfg->prefix[i] : &cfg->steps[i - cfg->nprefix];
        if (s->kind != NSP_STEP_MOUNT_IN_ROOT && s->kind != NSP_STEP_CREATE_IN_ROOT)
            nsp_root_cache_drop(&ctx->root); /* see rootfs.h: not across other steps */
        int r = run_step(ctx, s);
        if (times)
            times[i + 2] = clock_ns();
        if (r == -ENOENT && (s->flags & NSP_STEP_OPTIONAL))
            continue;
        if (r < 0) {
            /* exec may have restored the mask before failing */
            sigset_t all;
            sigfillset(&all);
            sigprocmask(SIG_SETMASK, &all, NULL);
            child_fail(ctx, i, -r);
        }
    }
    /* A plan without an exec step: the setup itself was the job. */
    nsp_root_cache_drop(&ctx->root);
    _exit(0);
}

/* The vfork-like child runs on a buffer in this frame, as musl's posix_spawn
 * does: we are suspended until it execs or exits, so the frame outlives it,
 * and no mmap/munmap is paid per spawn.  The deepest child path (a PATH
 * search, a walk inside the new root) needs a few PATH_MAX buffers. */
#define VFORK_STACK_SIZE (64 * 1024)

static __attribute__((noinline)) int clone_vfork(struct child_ctx *ctx, int *pidfd, int exit_signal)
{
    char stack[VFORK_STACK_SIZE] __attribute__((aligned(64)));
    int flags = (int)ctx->cfg->clone_flags | CLONE_VM | CLONE_VFORK | CLONE_PIDFD | exit_signal;
    int pid = clone(child_main, stack + sizeof stack, flags, ctx, pidfd);
    return pid < 0 ? -errno : pid;
}

/* clone3 with CLONE_VM|CLONE_VFORK and a stack of our own: the child starts
 * on that stack, so it must call child_main before touching any frame of
 * ours.  glibc has no public wrapper (its clone() cannot place a child into a
 * cgroup or a time namespace), hence these few lines per architecture. */
#if defined(__x86_64__) || defined(__aarch64__)
#define NSP_HAVE_CLONE3_VFORK 1
static __attribute__((noinline)) long raw_clone3_run(struct nsp_clone_args *args, int (*fn)(void *), void *arg)
{
#if defined(__x86_64__)
    register long rax __asm__("rax") = __NR_clone3;
    register struct nsp_clone_args *rdi __asm__("rdi") = args;
    register size_t rsi __asm__("rsi") = sizeof *args;
    register int (*r12)(void *) __asm__("r12") = fn;
    register void *r13 __asm__("r13") = arg;
    __asm__ __volatile__("syscall\n\t"
                         "test %%rax, %%rax\n\t"
                         "jnz 1f\n\t"
                         "xor %%ebp, %%ebp\n\t" /* child: a fresh stack, no frames */
                         "mov %%r13, %%rdi\n\t"
                         "call *%%r12\n\t"
                         "mov %%eax, %%edi\n\t"
                         "mov $60, %%eax\n\t" /* exit */
                         "syscall\n\t"
                         "hlt\n\t"
                         "1:\n\t"
                         : "+r"(rax)
                         : "r"(rdi), "r"(rsi), "r"(r12), "r"(r13)
                         : "rcx", "r11", "memory");
    return rax;
#else
    register long x8 __asm__("x8") = __NR_clone3;
    register long x0 __asm__("x0") = (long)args;
    register long x1 __asm__("x1") = (long)sizeof *args;
    register int (*x20)(void *) __asm__("x20") = fn;
    register void *x21 __asm__("x21") = arg;
    __asm__ __volatile__("svc #0\n\t"
                         "cbnz x0, 1f\n\t"
                         "mov x29, xzr\n\t" /* child: a fresh stack, no frames */
                         "mov x0, x21\n\t"
                         "blr x20\n\t"
                         "mov x8, #93\n\t" /* exit */
                         "svc #0\n\t"
                         "1:\n\t"
                         : "+r"(x0)
                         : "r"(x8), "r"(x1), "r"(x20), "r"(x21)
                         : "x30", "memory");
    return x0;
#endif
}

static __attribute__((noinline)) int clone3_vfork(struct child_ctx *ctx, int *pidfd, int exit_signal,
                                                  uint64_t extra)
{
    char stack[VFORK_STACK_SIZE] __attribute__((aligned(64)));
    const struct nsp_spawn_config *cfg = ctx->cfg;
    struct nsp_clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = cfg->clone_flags | CLONE_VM | CLONE_VFORK | CLONE_PIDFD | extra;
    args.pidfd = (uint64_t)(uintptr_t)pidfd;
    args.exit_signal = (uint64_t)exit_signal;
    args.stack = (uint64_t)(uintptr_t)stack;
    args.stack_size = sizeof stack;
    if (cfg->cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cfg->cgroup_fd;
    }
    long pid = raw_clone3_run(&args, child_main, ctx);
    return pid < 0 ? (int)pid : (int)pid; /* the raw call returns -errno itself */
}
#endif

static int clone_child(struct child_ctx *ctx, int *pidfd)
{
    const struct nsp_spawn_config *cfg = ctx->cfg;
    int exit_signal = cfg->exit_signal > 0 ? cfg->exit_signal : SIGCHLD;
    int needs_clone3 = cfg->cgroup_fd >= 0 || (cfg->clone_flags & CLONE_NEWTIME);

    /* clone3 first wherever it serves: CLONE_CLEAR_SIGHAND (5.5+) resets the
     * handlers in the kernel, EINVAL before (then without it). */
#ifdef NSP_HAVE_CLONE3_VFORK
    /* Also what a cgroup placement (no attach, hence no wait for an RCU
     * grace period) or a time namespace needs, still without a copy of our
     * page tables. */
    if (cfg->use_vfork && nsp_have_clone3()) {
        ctx->handlers_cleared = 1;
        int r = clone3_vfork(ctx, pidfd, exit_signal, CLONE_CLEAR_SIGHAND);
        if (r == -EINVAL) {
            ctx->handlers_cleared = 0;
            r = clone3_vfork(ctx, pidfd, exit_signal, 0);
        }
        if (r != -ENOSYS && r != -EINVAL)
            return r;
        ctx->handlers_cleared = 0;
    }
#endif
    if (cfg->use_vfork && !needs_clone3)
        return clone_vfork(ctx, pidfd, exit_signal);

    struct nsp_clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = cfg->clone_flags | CLONE_PIDFD | CLONE_CLEAR_SIGHAND;
    args.pidfd = (uint64_t)(uintptr_t)pidfd;
    args.exit_signal = (uint64_t)exit_signal;
    if (cfg->cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cfg->cgroup_fd;
    }
    ctx->handlers_cleared = 1; /* the child's copy of ctx is taken at clone */
    long pid = syscall(__NR_clone3, &args, sizeof args);
    if (pid < 0 && errno == EINVAL) {
        ctx->handlers_cleared = 0;
        args.flags &= ~(uint64_t)CLONE_CLEAR_SIGHAND;
        pid = syscall(__NR_clone3, &args, sizeof args);
    }
    if (pid < 0)
        ctx->handlers_cleared = 0;
    if (pid < 0 && errno == ENOSYS) {
        if (cfg->cgroup_fd >= 0 || (cfg->clone_flags & CLONE_NEWTIME))
            return -ENOSYS; /* only clone3 can do these */
        /* x86-64 order: flags, stack, parent_tid, child_tid, tls.  With
         * CLONE_PIDFD the pidfd lands in parent_tid. */
        pid = syscall(SYS_clone, (unsigned long)(cfg->clone_flags | CLONE_PIDFD | exit_signal), 0, pidfd,
                      0, 0);
    }
    if (pid < 0)
        return -errno;
    if (pid == 0)
        child_main(ctx); /* never returns */
    return (int)pid;
}

/* Dumpability belongs to the memory map, which a vfork-like child shares with
 * us until exec: its setuid or PR_SET_DUMPABLE must not stick to the parent.
 * Several threads may spawn at once, each child flipping the shared flag, so
 * the first spawn in flight saves the parent's value and the last one out
 * puts it back. */
static pthread_mutex_t dumpable_lock = PTHREAD_MUTEX_INITIALIZER;
static int dumpable_inflight;
static int dumpable_saved = -1;

static void dumpable_enter(void)
{
    pthread_mutex_lock(&dumpable_lock);
    if (dumpable_inflight++ == 0)
        dumpable_saved = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    pthread_mutex_unlock(&dumpable_lock);
}

static void dumpable_leave(void)
{
    pthread_mutex_lock(&dumpable_lock);
    if (--dumpable_inflight == 0 && dumpable_saved >= 0 && prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != dumpable_saved)
        prctl(PR_SET_DUMPABLE, (unsigned long)dumpable_saved, 0, 0, 0);
    pthread_mutex_unlock(&dumpable_lock);
}

int nsp_spawn(const struct nsp_spawn_config *cfg, struct nsp_spawn_result *res)
{
    int report[2] = {-1, -1}, sync[2] = {-1, -1};
    int need_sync = 0, ret, saved_pidns = -1;
    for (int i = 0; i < cfg->nprefix; i++)
        if (cfg->prefix[i].kind == NSP_STEP_SYNC)
            need_sync = 1;
    for (int i = 0; i < cfg->nsteps; i++)
        if (cfg->steps[i].kind == NSP_STEP_SYNC)
            need_sync = 1;

    if (pipe2(report, O_CLOEXEC) < 0)
        return -errno;
    if (need_sync && pipe2(sync, O_CLOEXEC) < 0) {
        ret = -errno;
        goto fail;
    }
    if (cfg->pidns_fd >= 0) {
        /* A pid namespace applies to children only: enter it on this thread
         * around the clone, then go back. */
        saved_pidns = open("/proc/thread-self/ns/pid_for_children", O_RDONLY | O_CLOEXEC);
        if (saved_pidns < 0) {
            ret = -errno;
            goto fail;
        }
        if (setns(cfg->pidns_fd, CLONE_NEWPID) < 0) {
            ret = -errno;
            goto fail;
        }
    }

    struct child_ctx ctx;
    ctx.cfg = cfg;
    ctx.report_fd = report[1];
    ctx.sync_fd = sync[0];
    ctx.handlers_cleared = 0;
    nsp_root_cache_init(&ctx.root);
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &ctx.mask);

    int pidfd = -1;
    long long *times = cfg->use_vfork ? cfg->step_ns : NULL;
    if (times)
        times[0] = clock_ns();
    if (cfg->use_vfork)
        dumpable_enter();
    ret = clone_child(&ctx, &pidfd);
    if (cfg->use_vfork)
        dumpable_leave();
    if (times)
        times[cfg->nprefix + cfg->nsteps + 2] = clock_ns();

    pthread_sigmask(SIG_SETMASK, &ctx.mask, NULL);
    if (saved_pidns >= 0) {
        setns(saved_pidns, CLONE_NEWPID); /* back to our own; cannot fail for our own ns */
        close(saved_pidns);
        saved_pidns = -1;
    }
    if (ret < 0)
        goto fail;

    close(report[1]);
    if (sync[0] >= 0)
        close(sync[0]);
    res->pid = ret;
    res->pidfd = pidfd;
    res->report_fd = report[0];
    res->sync_fd = sync[1];
    return 0;

fail:
    if (saved_pidns >= 0) {
        setns(saved_pidns, CLONE_NEWPID);
        close(saved_pidns);
    }
    for (int i = 0; i < 2; i++) {
        if (report[i] >= 0)
            close(report[i]);
        if (sync[i] >= 0)
            close(sync[i]);
    }
    return ret;
}

int nsp_read_report(int report_fd, struct nsp_report *report)
{
    size_t got = 0;
    char *p = (char *)report;
    while (got < sizeof *report) {
        ssize_t n = read(report_fd, p + got, sizeof *report - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    if (got == 0)
        return 0;
    if (got < sizeof *report)
        return -EPROTO;
    return 1;
}
