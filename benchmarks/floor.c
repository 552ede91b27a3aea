/*
 * floor: the physical floor of "spawn /bin/true in new namespaces" on this host.
 *
 *   floor [--mode=fork|vfork|clone3] [--pace-us=N] N [mnt] [uts] [ipc] [pid] [net] [user] [cgroup] [time]
 *
 * Runs N times: clone with the given CLONE_NEW* flags, execve("/bin/true") in
 * the child, waitpid in the parent.  Nothing else: no pipes, no pidfd, no
 * mount (the new mount namespace is left exactly as the clone made it).  Each
 * iteration is timed with CLOCK_MONOTONIC around clone..waitpid and printed in
 * microseconds as one JSON object on stdout:
 *
 *   {"mode": "vfork", "flags": 1879179264, "n": 3, "us": [1203.1, 1188.0, 1191.4]}
 *
 * Modes: "fork" is clone(flags|SIGCHLD) without a stack (fork-like, copies page
 * tables); "vfork" is clone(CLONE_VM|CLONE_VFORK) on a small private stack
 * (what nsprim uses when a plan allows); "clone3" is the clone3 system call,
 * fork-like.  --pace-us sleeps that long between iterations (outside the timed
 * region), to let asynchronous namespace teardown catch up.
 *
 * Built by benchmarks/_harness.py with `cc -O2`; exit status 0, or 1 with a
 * message on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

struct clone3_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size,
        cgroup;
};

static char *const child_argv[] = {"true", NULL};
static char *const child_envp[] = {"PATH=/usr/bin:/bin", NULL};

static int child_fn(void *arg)
{
    (void)arg;
    execve("/bin/true", child_argv, child_envp);
    _exit(127);
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int parse_flag(const char *name, unsigned long *flags)
{
    static const struct {
        const char *name;
        unsigned long flag;
    } table[] = {
        {"mnt", CLONE_NEWNS},    {"uts", CLONE_NEWUTS},       {"ipc", CLONE_NEWIPC},
        {"pid", CLONE_NEWPID},   {"net", CLONE_NEWNET},       {"user", CLONE_NEWUSER},
        {"cgroup", CLONE_NEWCGROUP}, {"time", CLONE_NEWTIME},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(name, table[i].name) == 0) {
            *flags |= table[i].flag;
            return 0;
        }
    }
    return -1;
}

#define STACK_SIZE (64 * 1024)

int main(int argc, char **argv)
{
    const char *mode = "vfork";
    long pace_us = 0;
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strncmp(argv[i], "--mode=", 7) == 0)
            mode = argv[i] + 7;
        else if (strncmp(argv[i], "--pace-us=", 10) == 0)
            pace_us = strtol(argv[i] + 10, NULL, 10);
        else {
            fprintf(stderr, "floor: unknown option %s\n", argv[i]);
            return 1;
        }
    }
    if (i >= argc) {
        fprintf(stderr, "usage: floor [--mode=fork|vfork|clone3] [--pace-us=N] N [namespace...]\n");
        return 1;
    }
    long n = strtol(argv[i++], NULL, 10);
    unsigned long flags = 0;
    for (; i < argc; i++) {
        if (parse_flag(argv[i], &flags) < 0) {
            fprintf(stderr, "floor: unknown namespace %s\n", argv[i]);
            return 1;
        }
    }
    int m = strcmp(mode, "fork") == 0 ? 0 : strcmp(mode, "vfork") == 0 ? 1 : strcmp(mode, "clone3") == 0 ? 2 : -1;
    if (m < 0 || n <= 0) {
        fprintf(stderr, "floor: bad mode or count\n");
        return 1;
    }
    double *us = calloc((size_t)n, sizeof *us);
    char *stack = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (us == NULL || stack == MAP_FAILED) {
        perror("floor: alloc");
        return 1;
    }
    for (long k = 0; k < n; k++) {
        if (pace_us > 0)
            usleep((useconds_t)pace_us);
        double t0 = now_us();
        long pid;
        if (m == 1) {
            pid = clone(child_fn, stack + STACK_SIZE, (int)(flags | CLONE_VM | CLONE_VFORK | SIGCHLD), NULL);
        } else if (m == 0) {
            pid = syscall(SYS_clone, flags | SIGCHLD, 0, NULL, NULL, 0);
            if (pid == 0)
                child_fn(NULL);
        } else {
            struct clone3_args a;
            memset(&a, 0, sizeof a);
            a.flags = flags;
            a.exit_signal = SIGCHLD;
            pid = syscall(SYS_clone3, &a, sizeof a);
            if (pid == 0)
                child_fn(NULL);
        }
        if (pid < 0) {
            fprintf(stderr, "floor: clone: %s\n", strerror(errno));
            return 1;
        }
        int status;
        if (waitpid((pid_t)pid, &status, 0) < 0) {
            perror("floor: waitpid");
            return 1;
        }
        us[k] = now_us() - t0;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "floor: child failed (status %#x)\n", status);
            return 1;
        }
    }
    printf("{\"mode\": \"%s\", \"flags\": %lu, \"n\": %ld, \"us\": [", mode, flags, n);
    for (long k = 0; k < n; k++)
        printf(k ? ", %.1f" : "%.1f", us[k]);
    printf("]}\n");
    return 0;
}
