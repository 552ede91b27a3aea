/*
 * nsp_spawn: clone a child into new namespaces and run a plan of steps in it,
 * in C only, up to exec.
 *
 * Protocol with the parent:
 *   - report pipe (child -> parent, close-on-exec): on the first failed step
 *     the child writes one struct nsp_report and exits with status 127.  EOF
 *     means exec, or the child's death: which one, the shared progress
 *     record (struct nsp_progress) says; it also keeps a failure whose
 *     report could not be written.
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

#include "child.h"

struct nsp_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
        set_tid, set_tid_size, cgroup;
};


/* The vfork-like child runs on a buffer in this frame, as musl's posix_spawn
 * does: we are suspended until it execs or exits, so the frame outlives it,
 * and no mmap/munmap is paid per spawn.  The deepest child path (a PATH
 * search, a walk inside the new root) needs a few PATH_MAX buffers. */
#define VFORK_STACK_SIZE (64 * 1024)

static __attribute__((noinline)) int clone_vfork(struct child_ctx *ctx, int *pidfd, int exit_signal)
{
    char stack[VFORK_STACK_SIZE] __attribute__((aligned(64)));
    int flags = (int)ctx->cfg->clone_flags | CLONE_VM | CLONE_VFORK | CLONE_PIDFD | exit_signal;
    int pid = clone(nsp_child_main, stack + sizeof stack, flags, ctx, pidfd);
    return pid < 0 ? -errno : pid;
}

/* clone3 with CLONE_VM|CLONE_VFORK and a stack of our own: the child starts
 * on that stack, so it must call nsp_child_main before touching any frame of
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
    long pid = raw_clone3_run(&args, nsp_child_main, ctx);
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
        nsp_child_main(ctx); /* never returns */
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

/* The progress records of fork-mode spawns: slots of one shared page kept
 * for the life of the process, as a page mapped and unmapped per spawn costs
 * ~20 us of one.  A slot is free again once its report was read or given up
 * (the child exec'd, or is dead or killed: nothing writes to it any more).
 * A forked copy of this process takes a page of its own (the old one is
 * shared with its parent).  Never waits: when the lock is held (or held
 * forever, by a thread that is not in a forked copy), or every slot is in
 * use, the caller maps a page of its own. */
#define PROGRESS_SLOTS (4096 / (int)sizeof(struct nsp_progress))
static struct nsp_progress *progress_pool;
static pid_t progress_pool_pid;
static unsigned long long progress_used[(PROGRESS_SLOTS + 63) / 64];
static pthread_mutex_t progress_lock = PTHREAD_MUTEX_INITIALIZER;

static struct nsp_progress *progress_take(void)
{
    struct nsp_progress *slot = NULL;
    if (pthread_mutex_trylock(&progress_lock) != 0)
        return NULL;
    pid_t me = getpid();
    if (progress_pool_pid != me) {
        void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        progress_pool = page == MAP_FAILED ? NULL : page;
        memset(progress_used, 0, sizeof progress_used);
        progress_pool_pid = me;
    }
    for (int w = 0; progress_pool && !slot && w < (PROGRESS_SLOTS + 63) / 64; w++) {
        unsigned long long used = __atomic_load_n(&progress_used[w], __ATOMIC_ACQUIRE);
        for (int b = 0; b < 64 && w * 64 + b < PROGRESS_SLOTS; b++) {
            if (!(used & (1ULL << b))) {
                __atomic_fetch_or(&progress_used[w], 1ULL << b, __ATOMIC_ACQ_REL);
                slot = &progress_pool[w * 64 + b];
                break;
            }
        }
    }
    pthread_mutex_unlock(&progress_lock);
    return slot;
}

static void progress_give(struct nsp_progress *slot)
{
    /* A slot of a pool this process no longer uses (taken before a fork) stays taken. */
    if (!progress_pool || progress_pool_pid != getpid() || slot < progress_pool || slot >= progress_pool + PROGRESS_SLOTS)
        return;
    int i = (int)(slot - progress_pool);
    __atomic_fetch_and(&progress_used[i / 64], ~(1ULL << (i % 64)), __ATOMIC_ACQ_REL);
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

    /* A vfork-mode child shares our memory; any other gets one shared page,
     * faulted in here (and charged to us) so that the child's stores need no
     * allocation of its own.  A page given (a monitor's, shared with its
     * caller) is used as it is. */
    if (!res->progress) {
        res->progress = &res->own;
        res->progress_slot = 0;
        if (!cfg->use_vfork) {
            res->progress = progress_take();
            res->progress_slot = res->progress != NULL;
            if (!res->progress)
                res->progress = nsp_progress_map();
            if (!res->progress)
                return -errno;
        }
    }
    res->progress->step = -1;
    res->progress->kind = 0;
    res->progress->err = 0;
    res->progress->part = 0;
    res->progress->total = cfg->nprefix + cfg->nsteps;

    if (pipe2(report, O_CLOEXEC) < 0) {
        ret = -errno;
        goto fail;
    }
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
    ctx.progress = res->progress;
    ctx.handlers_cleared = 0;
    nsp_root_cache_init(&ctx.root);
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &ctx.mask);

    int pidfd = -1;
    long long *times = cfg->use_vfork ? cfg->step_ns : NULL;
    if (times)
        times[0] = nsp_clock_ns();
    if (cfg->use_vfork)
        dumpable_enter();
    ret = clone_child(&ctx, &pidfd);
    if (cfg->use_vfork)
        dumpable_leave();
    if (times)
        times[cfg->nprefix + cfg->nsteps + 2] = nsp_clock_ns();

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
    nsp_spawn_release(res);
    return ret;
}

struct nsp_progress *nsp_progress_map(void)
{
    void *page = mmap(NULL, sizeof(struct nsp_progress), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return page == MAP_FAILED ? NULL : page;
}

int nsp_spawn_release(struct nsp_spawn_result *res)
{
    if (res->progress_slot)
        progress_give(res->progress);
    else if (res->progress && res->progress != &res->own)
        munmap(res->progress, sizeof *res->progress);
    res->progress = NULL;
    res->progress_slot = 0;
    return 0;
}

int nsp_read_report(struct nsp_spawn_result *res, struct nsp_report *report)
{
    size_t got = 0;
    char *p = (char *)report;
    while (got < sizeof *report) {
        ssize_t n = read(res->report_fd, p + got, sizeof *report - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    if (got == sizeof *report) {
        nsp_spawn_release(res);
        /* A WAIT_START step's "ready": the setup ran, the child waits. */
        return report->err == 0 && report->kind == NSP_STEP_WAIT_START ? 3 : 1;
    }
    if (got > 0 || !res->progress) {
        nsp_spawn_release(res);
        return -EPROTO;
    }
    /* EOF: every copy of the write end is closed, by exec or by exit. */
    struct nsp_progress seen;
    seen.step = __atomic_load_n(&res->progress->step, __ATOMIC_ACQUIRE);
    seen.kind = __atomic_load_n(&res->progress->kind, __ATOMIC_RELAXED);
    seen.err = __atomic_load_n(&res->progress->err, __ATOMIC_ACQUIRE);
    seen.part = __atomic_load_n(&res->progress->part, __ATOMIC_RELAXED);
    seen.total = res->progress->total;
    nsp_spawn_release(res);
    memset(report, 0, sizeof *report);
    report->index = seen.step;
    report->kind = seen.kind;
    if (seen.err > 0) {
        report->err = seen.err; /* failed, and the report did not get through */
        report->part = seen.part;
        return 1;
    }
    if (seen.kind == NSP_STEP_EXEC || seen.step == seen.total)
        return 0;
    return 2;
}
