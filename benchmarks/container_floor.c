/*
 * container_floor: the same sandbox as bench_container.py's nsprim case, written directly in C.
 *
 *   container_floor [--pace-us=N] [--attach=procs|tasks] N ROOT STATE CGDIR...
 *
 * Runs N times, each iteration timed with CLOCK_MONOTONIC from the first mkdir to the last rmdir:
 *
 *   host side   mkdir CGDIR/cf-K in every given cgroup directory; memory.limit_in_bytes (v1) or memory.max
 *               (v2) = 64M where the directory is a memory hierarchy, pids.max = 64 where it is a pids one
 *   child       clone(CLONE_NEWNS|NEWUTS|NEWIPC|NEWPID|NEWNET | CLONE_VM|CLONE_VFORK) and then: write "0" to
 *               cgroup.procs (or, with --attach=tasks, a v1 group's tasks) of each group; unshare(NEWCGROUP);
 *               / rprivate; a tmpfs on STATE; mkdir root, upper, work on it; overlay (lowerdir=ROOT) on
 *               STATE/root; proc on root/proc; a tmpfs on root/dev with null zero full random urandom tty;
 *               pivot_root into it and detach the old root; bring lo up; execve("/bin/true")
 *   host side   waitpid; rmdir every CGDIR/cf-K
 *
 * That is nsprim's container without what it adds on top (masked /proc paths, /sys and the cgroup file
 * systems, devpts, /dev/shm, capability drop, seccomp, the cleanup watcher, stats): the physical floor of
 * "a full sandbox with cgroup limits" on this host.  Safe: every mount happens in the child's new mount
 * namespace, after making / private there.  Prints {"n": N, "us": [...]} on stdout; exit status 0, or 1
 * with a message on stderr (the failing child step as its exit status 100+step).
 *
 * Built by benchmarks/_harness.py with `cc -O2`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif

#define MAX_CG 16
#define STACK_SIZE (256 * 1024)

static const char *root_src, *state;
static int ncg;
static const char *cgdirs[MAX_CG];
static char groups[MAX_CG][512];
static char attach_files[MAX_CG][560];

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int write_file(const char *path, const char *data)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, data, strlen(data));
    close(fd);
    return n == (ssize_t)strlen(data) ? 0 : -1;
}

static int is_v2(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/cgroup.controllers", dir);
    return access(path, F_OK) == 0;
}

static int make_dev(const char *dev, const char *name, unsigned maj, unsigned min)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dev, name);
    if (mknod(path, S_IFCHR | 0666, makedev(maj, min)) < 0)
        return -1;
    return chmod(path, 0666);
}

static int child_fn(void *arg)
{
    (void)arg;
    char root[600], upper[600], work[600], scratch[600], data[2048], path[700];
    int step = 0;
    for (int i = 0; i < ncg; i++) {
        step = 1;
        if (write_file(attach_files[i], "0") < 0)
            goto fail;
    }
    step = 2;
    if (unshare(CLONE_NEWCGROUP) < 0)
        goto fail;
    step = 3;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        goto fail;
    step = 4;
    if (mount("tmpfs", state, "tmpfs", MS_NOSUID | MS_NODEV, "mode=700") < 0)
        goto fail;
    snprintf(root, sizeof root, "%s/root", state);
    snprintf(scratch, sizeof scratch, "%s/scratch", state);
    snprintf(upper, sizeof upper, "%s/scratch/upper", state);
    snprintf(work, sizeof work, "%s/scratch/work", state);
    step = 5;
    if (mkdir(root, 0755) < 0 || mkdir(scratch, 0700) < 0 || mkdir(upper, 0755) < 0 || mkdir(work, 0700) < 0)
        goto fail;
    snprintf(data, sizeof data, "lowerdir=%s,upperdir=%s,workdir=%s", root_src, upper, work);
    step = 6;
    if (mount("overlay", root, "overlay", 0, data) < 0)
        goto fail;
    step = 7;
    snprintf(path, sizeof path, "%s/proc", root);
    if (mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        goto fail;
    step = 8;
    snprintf(path, sizeof path, "%s/dev", root);
    if (mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k") < 0)
        goto fail;
    step = 9;
    if (make_dev(path, "null", 1, 3) < 0 || make_dev(path, "zero", 1, 5) < 0 || make_dev(path, "full", 1, 7) < 0 ||
        make_dev(path, "random", 1, 8) < 0 || make_dev(path, "urandom", 1, 9) < 0 || make_dev(path, "tty", 5, 0) < 0)
        goto fail;
    step = 10;
    if (chdir(root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 || umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
        goto fail;
    step = 11;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        goto fail;
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        goto fail;
    close(s);
    step = 12;
    static char *const argv[] = {"true", NULL};
    static char *const envp[] = {"PATH=/usr/bin:/bin", NULL};
    execve("/bin/true", argv, envp);
fail:
    _exit(100 + step);
}

int main(int argc, char **argv)
{
    long pace_us = 0;
    int use_tasks = 0;
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strncmp(argv[i], "--pace-us=", 10) == 0)
            pace_us = strtol(argv[i] + 10, NULL, 10);
        else if (strcmp(argv[i], "--attach=tasks") == 0)
            use_tasks = 1;
        else if (strcmp(argv[i], "--attach=procs") == 0)
            use_tasks = 0;
        else {
            fprintf(stderr, "container_floor: unknown option %s\n", argv[i]);
            return 1;
        }
    }
    if (argc - i < 3) {
        fprintf(stderr, "usage: container_floor [--pace-us=N] [--attach=procs|tasks] N ROOT STATE CGDIR...\n");
        return 1;
    }
    long n = strtol(argv[i++], NULL, 10);
    root_src = argv[i++];
    state = argv[i++];
    for (; i < argc && ncg < MAX_CG; i++)
        cgdirs[ncg++] = argv[i];
    int v2[MAX_CG];
    for (int c = 0; c < ncg; c++)
        v2[c] = is_v2(cgdirs[c]);
    double *us = calloc((size_t)(n > 0 ? n : 1), sizeof *us);
    char *stack = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (n <= 0 || us == NULL || stack == MAP_FAILED) {
        fprintf(stderr, "container_floor: bad count or no memory\n");
        return 1;
    }
    char file[700];
    for (long k = 0; k < n; k++) {
        if (pace_us > 0)
            usleep((useconds_t)pace_us);
        double t0 = now_us();
        for (int c = 0; c < ncg; c++) {
            snprintf(groups[c], sizeof groups[c], "%s/cf-%ld", cgdirs[c], k);
            if (mkdir(groups[c], 0755) < 0) {
                fprintf(stderr, "container_floor: mkdir %s: %s\n", groups[c], strerror(errno));
                return 1;
            }
            if (strstr(cgdirs[c], "/memory/") || v2[c]) {
                snprintf(file, sizeof file, "%s/%s", groups[c], v2[c] ? "memory.max" : "memory.limit_in_bytes");
                (void)write_file(file, "67108864"); /* absent on a v2 group without the memory controller */
            }
            if (strstr(cgdirs[c], "/pids/") || v2[c]) {
                snprintf(file, sizeof file, "%s/pids.max", groups[c]);
                (void)write_file(file, "64");
            }
            snprintf(attach_files[c], sizeof attach_files[c], "%s/%s", groups[c],
                     use_tasks && !v2[c] ? "tasks" : "cgroup.procs");
        }
        long pid = clone(child_fn, stack + STACK_SIZE,
                         (int)(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET | CLONE_VM |
                               CLONE_VFORK | SIGCHLD),
                         NULL);
        if (pid < 0) {
            fprintf(stderr, "container_floor: clone: %s\n", strerror(errno));
            return 1;
        }
        int status;
        if (waitpid((pid_t)pid, &status, 0) < 0) {
            perror("container_floor: waitpid");
            return 1;
        }
        for (int c = ncg - 1; c >= 0; c--) {
            while (rmdir(groups[c]) < 0) {
                if (errno != EBUSY) {
                    fprintf(stderr, "container_floor: rmdir %s: %s\n", groups[c], strerror(errno));
                    return 1;
                }
                usleep(100);
            }
        }
        us[k] = now_us() - t0;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "container_floor: child failed (status %#x%s)\n", status,
                    WIFEXITED(status) && WEXITSTATUS(status) >= 100 ? ": see the step numbers in the source" : "");
            return 1;
        }
    }
    printf("{\"n\": %ld, \"us\": [", n);
    for (long k = 0; k < n; k++)
        printf(k ? ", %.1f" : "%.1f", us[k]);
    printf("]}\n");
    return 0;
}
