/*
 * container_same: the steps of nsprim's default container, one for one, in plain C.
 *
 *   container_same [--pace-us=N] [--seccomp=FILE] [--caps=HEX] N ROOT STATE CGDIR... [-- CMD [ARG...]]
 *
 * What bench_container.py's nsprim case does (`Container(["/bin/true"]).image([ROOT]).memory("64M").pids(64)
 * .run()`, its plan as `python -m nsprim --debug run` lists it), as plain system calls: no Python, no plan
 * interpreter, no path resolution inside the root (plain paths and mount(2) where nsprim resolves each path
 * with openat2 and mounts onto the descriptor, or uses open_tree/move_mount), no descriptor caching.  N times,
 * each iteration timed with CLOCK_MONOTONIC from the first mkdir to the last rmdir:
 *
 *   host   mkdir STATE/root (it exists: EEXIST, stat); mkdir CGDIR/cs-K in every CGDIR (a parent group right
 *          below a hierarchy's mount point: nsprim's memory, pids and cgroup2 directories here); limits as
 *          nsprim writes them: memory.limit_in_bytes, memory.memsw.limit_in_bytes (where present), and
 *          memory.limit_in_bytes again if the first was refused (64M; a v2 group with memory: memory.max and
 *          memory.swap.max 0), pids.max 64; open the cgroup2 group O_PATH; block all signals, save the
 *          dumpable flag; clone3(CLONE_NEWNS|NEWUTS|NEWIPC|NEWPID|NEWNET | CLONE_VM|CLONE_VFORK|CLONE_PIDFD
 *          |CLONE_CLEAR_SIGHAND|CLONE_INTO_CGROUP) on a stack of ours
 *   child  (the numbers are the step numbers of nsprim's plan with two v1 groups, as on a hybrid host; the
 *          child exits 100+step if one fails)
 *           -  SIGPIPE/SIGXFSZ back to default if ignored (nsprim's reset_signals after CLONE_CLEAR_SIGHAND)
 *           0, 1  write "0" to `tasks` of each v1 group           2  close_range(3, ~0, CLOSE_RANGE_CLOEXEC)
 *           3  PR_SET_DUMPABLE 0     4  unshare(CLONE_NEWCGROUP)   5  / MS_REC|MS_PRIVATE
 *           6  tmpfs on STATE (nosuid,nodev,mode=700)            7-10  mkdir root, scratch, scratch/{upper,work}
 *          11  overlay on STATE/root (lowerdir=ROOT)              12  bind STATE/root onto itself (MS_REC)
 *          13  sysfs on /sys (ro,nosuid,nodev,noexec)             14  tmpfs on /dev (nosuid,noexec,mode=755,size=64k)
 *       15-20  mknod null zero full random urandom tty 0666 + chmod 0666
 *          21  mkdir /dev/pts, devpts (newinstance,ptmxmode=0666,mode=0620; nosuid,noexec)
 *       22-26  symlinks /dev/fd, stdin, stdout, stderr, ptmx      27  mkdir /dev/shm, tmpfs (mode=1777,size=64m)
 *          28  proc on /proc (nosuid,nodev,noexec)
 *       29-39  masks (those that exist): /dev/null bound over a file, an empty ro tmpfs (size=0,mode=000) over a
 *              directory: /proc/acpi asound kcore keys latency_stats timer_list timer_stats sched_debug scsi,
 *              /sys/firmware, /sys/devices/virtual/powercap
 *       40-44  read-only (those that exist): bind MS_REC onto itself, remount ro (+nosuid,nodev,noexec):
 *              /proc/bus fs irq sys sysrq-trigger
 *       45-54  tmpfs on /sys/fs/cgroup (nosuid,nodev,noexec,mode=755); per CGDIR mkdir, then for a v1 group a
 *              bind of the group itself and its read-only remount (ro,nosuid,nodev,noexec; nsprim binds each
 *              group over its hierarchy's mount point first, in its prefix, and binds that: its plan's body is
 *              the same for every container), for the v2 one a cgroup2 mount (ro,...); remount the tmpfs ro
 *          55  pivot_root(".", ".") in the root, umount2(".", MNT_DETACH), chdir /
 *          56  remount / nodev                                    57  lo up (SIOCGIFFLAGS, SIOCSIFFLAGS)
 *          58  umask 022     59  drop the bounding set to the --caps set, PR_SET_KEEPCAPS 1
 *          60  setgroups(0)  61  setresgid 0  62  setresuid 0 (raw system calls)
 *          63  capget, read the bounding set, capset effective = permitted = the --caps set (inheritable none),
 *              clear the ambient set, PR_SET_KEEPCAPS 0
 *          64  PR_SET_NO_NEW_PRIVS   65  seccomp(SECCOMP_SET_MODE_FILTER) of the --seccomp program
 *          66  chdir /       67  restore the signal mask, execve CMD (default /bin/true) with nsprim's environment
 *   host   restore the dumpable flag and the signal mask; close the cgroup2 descriptor; waitid(P_PIDFD); read
 *          the exit statistics nsprim reads (memory.usage_in_bytes, memory.limit_in_bytes,
 *          memory.memsw.usage_in_bytes, memory.max_usage_in_bytes; cpu.stat; pids.current, pids.peak,
 *          pids.max; memory.oom_control); stat every group, read its cgroup.procs, rmdir it
 *
 * Not here: nsprim's report pipe (a failing step is this program's exit status instead) and its cleanup
 * watcher (a pipe write per container telling a helper process which groups to remove should Python die).
 *
 * --seccomp=FILE: a `struct sock_filter` array (bench_container.py writes nsprim's compiled default program);
 * without it step 63 does nothing.  --caps=HEX: the capability mask to keep (default: Docker's 14 minus
 * CAP_MKNOD, as nsprim).  Safe: every mount happens in the child's new mount namespace, after making /
 * private there.  Prints {"n": N, ..., "us": [...]} on stdout; exit status 0, or 1 with a message on stderr.
 * x86-64 and aarch64 only (clone3 on a stack of ours needs a few lines of assembly).
 *
 * Built by benchmarks/_harness.py with `cc -O2`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/magic.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if !defined(__x86_64__) && !defined(__aarch64__)
#error "container_same: clone3 on a stack of ours is written for x86-64 and aarch64 only"
#endif

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_CLEAR_SIGHAND
#define CLONE_CLEAR_SIGHAND 0x100000000ULL
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef __NR_clone3
#define __NR_clone3 435
#endif
#ifndef __NR_close_range
#define __NR_close_range 436
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

#define MAX_CG 8
#define STACK_SIZE (256 * 1024)
#define STATS_BUF 4096

/* Docker's default capabilities less CAP_MKNOD: chown dac_override fowner fsetid kill setgid setuid setpcap
 * net_bind_service net_raw sys_chroot audit_write setfcap. */
#define DEFAULT_CAPS 0xa00425fbULL

struct clone3_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

enum cg_kind { CG_V2, CG_MEMORY, CG_PIDS, CG_OTHER };

struct cgdir {
    const char *parent; /* the parent group's directory */
    enum cg_kind kind;
    int v2;
    int has_memory, has_pids; /* a v2 group: controllers enabled for children of the parent */
    char name[64];            /* the hierarchy's directory name: mount point and v1 mount options */
    char group[PATH_MAX];     /* this iteration's group */
    char tasks[PATH_MAX];
    char fs_dir[PATH_MAX + 160]; /* its mount point inside the root (before pivot_root) */
};

/* ---- configuration, set up before the loop (the child only makes system calls) ---- */

static int ncg;
static struct cgdir cgs[MAX_CG];
static int cg2_index = -1;
static const char *state, *root_src;
static char p_root[PATH_MAX], p_scratch[PATH_MAX], p_upper[PATH_MAX], p_work[PATH_MAX], ovl_data[3 * PATH_MAX];
/* inside the root: STATE/root + a path of up to 64 bytes */
#define IN_ROOT_MAX (PATH_MAX + 64)
static char p_sys[IN_ROOT_MAX], p_dev[IN_ROOT_MAX], p_pts[IN_ROOT_MAX], p_shm[IN_ROOT_MAX], p_proc[IN_ROOT_MAX];
static char p_cgfs[IN_ROOT_MAX];

static const struct {
    const char *name;
    unsigned maj, min;
} devices[] = {{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
#define NDEV (sizeof devices / sizeof devices[0])
static char p_devices[NDEV][IN_ROOT_MAX];

static const char *const links[][2] = {{"fd", "/proc/self/fd"},
                                       {"stdin", "/proc/self/fd/0"},
                                       {"stdout", "/proc/self/fd/1"},
                                       {"stderr", "/proc/self/fd/2"},
                                       {"ptmx", "pts/ptmx"}};
#define NLINK (sizeof links / sizeof links[0])
static char p_links[NLINK][IN_ROOT_MAX];

static const char *const masked[] = {"/proc/acpi",        "/proc/asound",      "/proc/kcore",
                                     "/proc/keys",        "/proc/latency_stats", "/proc/timer_list",
                                     "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                                     "/sys/firmware",     "/sys/devices/virtual/powercap"};
#define NMASK (sizeof masked / sizeof masked[0])
static char p_masked[NMASK][IN_ROOT_MAX];

static const char *const readonly[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};
#define NRO (sizeof readonly / sizeof readonly[0])
static char p_readonly[NRO][IN_ROOT_MAX];

static uint64_t keep_caps = DEFAULT_CAPS;
static struct sock_fprog filter;
static char *const default_argv[] = {"/bin/true", NULL};
static char *const *payload = default_argv;
static char *const envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm",
                             "HOME=/root", NULL};
static sigset_t saved_mask;
static volatile int child_errno; /* written by the (vfork-like) child before it exits */

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
    int err = errno;
    if (close(fd) < 0 || n != (ssize_t)strlen(data)) {
        errno = n < 0 ? err : errno;
        return -1;
    }
    return 0;
}

/* ---- child steps ---- */

static void reset_signals(void)
{
    static const int sigs[] = {SIGPIPE, SIGXFSZ};
    struct sigaction old, dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_DFL)
            sigaction(sigs[i], &dfl, NULL);
}

static int make_dev(const char *path, unsigned maj, unsigned min)
{
    if (mknod(path, S_IFCHR | 0666, makedev(maj, min)) < 0)
        return -1;
    return chmod(path, 0666);
}

static int mount_new_dir(const char *src, const char *path, const char *fs, unsigned long flags, const char *data)
{
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return -1;
    return mount(src, path, fs, flags, data);
}

/* The null device, checked once per container before it is bound over a file (nsprim: CVE-2025-31133). */
static int null_checked;

static int mask(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -1;
    if (S_ISDIR(st.st_mode))
        return mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0,mode=000");
    if (!null_checked) {
        struct stat null;
        if (lstat("/dev/null", &null) < 0)
            return -1;
        if (!S_ISCHR(null.st_mode) || null.st_rdev != makedev(1, 3)) {
            errno = EPERM;
            return -1;
        }
        null_checked = 1;
    }
    return mount("/dev/null", path, NULL, MS_BIND, NULL);
}

static int make_readonly(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -1;
    if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0)
        return -1;
    /* proc's own flags are locked in: keep them in the remount */
    return mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
}

static int enter_root(void)
{
    if (chdir(p_root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 || umount2(".", MNT_DETACH) < 0)
        return -1;
    return chdir("/");
}

static int lo_up(void)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    int r = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (r == 0 && !(ifr.ifr_flags & IFF_UP)) {
        ifr.ifr_flags |= IFF_UP;
        r = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int err = errno;
    close(s);
    errno = err;
    return r;
}

static int drop_bounding(void)
{
    for (int cap = 0; cap < 64; cap++) {
        if (keep_caps & (1ULL << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, (unsigned long)cap, 0, 0, 0) == 0)
            continue;
        if (errno == EINVAL)
            break; /* past the kernel's last capability */
        return -1;
    }
    return prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
}

static int set_caps(void)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &hdr, data) < 0)
        return -1;
    uint64_t old_prm = (uint64_t)data[0].permitted | ((uint64_t)data[1].permitted << 32);
    uint64_t old_inh = (uint64_t)data[0].inheritable | ((uint64_t)data[1].inheritable << 32);
    uint64_t bounding = 0;
    for (int cap = 0; cap < 64; cap++) {
        int r = prctl(PR_CAPBSET_READ, (unsigned long)cap, 0, 0, 0);
        if (r < 0)
            break;
        if (r)
            bounding |= 1ULL << cap;
    }
    const uint64_t want_inh = 0; /* nothing inheritable (nor ambient), as nsprim's default */
    uint64_t prm = keep_caps & old_prm;
    uint64_t inh = want_inh & (old_inh | (bounding & old_prm));
    uint64_t eff = keep_caps & prm;
    data[0].effective = (uint32_t)eff;
    data[1].effective = (uint32_t)(eff >> 32);
    data[0].permitted = (uint32_t)prm;
    data[1].permitted = (uint32_t)(prm >> 32);
    data[0].inheritable = (uint32_t)inh;
    data[1].inheritable = (uint32_t)(inh >> 32);
    hdr.version = _LINUX_CAPABILITY_VERSION_3;
    hdr.pid = 0;
    if (syscall(SYS_capset, &hdr, data) < 0)
        return -1;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
        return -1;
    return prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
}

#define STEP(expr)                                                                                                    \
    do {                                                                                                              \
        step++;                                                                                                       \
        if ((expr) < 0)                                                                                               \
            goto fail;                                                                                                \
    } while (0)

static int child_main(void *arg)
{
    (void)arg;
    int step = -1;
    null_checked = 0;
    reset_signals();
    for (int i = 0; i < ncg; i++)
        if (!cgs[i].v2)
            STEP(write_file(cgs[i].tasks, "0"));
    STEP(syscall(__NR_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC));
    STEP(prctl(PR_SET_DUMPABLE, 0, 0, 0, 0));
    STEP(unshare(CLONE_NEWCGROUP));
    STEP(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
    STEP(mount("tmpfs", state, "tmpfs", MS_NOSUID | MS_NODEV, "mode=700"));
    STEP(mkdir(p_root, 0755));
    STEP(mkdir(p_scratch, 0700));
    STEP(mkdir(p_upper, 0755));
    STEP(mkdir(p_work, 0700));
    STEP(mount("overlay", p_root, "overlay", 0, ovl_data));
    STEP(mount(p_root, p_root, NULL, MS_BIND | MS_REC, NULL));
    STEP(mount("sysfs", p_sys, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL));
    STEP(mount("tmpfs", p_dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k"));
    for (size_t i = 0; i < NDEV; i++)
        STEP(make_dev(p_devices[i], devices[i].maj, devices[i].min));
    STEP(mount_new_dir("devpts", p_pts, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"));
    for (size_t i = 0; i < NLINK; i++)
        STEP(symlink(links[i][1], p_links[i]));
    STEP(mount_new_dir("tmpfs", p_shm, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=64m"));
    STEP(mount("proc", p_proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL));
    for (size_t i = 0; i < NMASK; i++)
        STEP(mask(p_masked[i]));
    for (size_t i = 0; i < NRO; i++)
        STEP(make_readonly(p_readonly[i]));
    if (ncg > 0) {
        STEP(mount("tmpfs", p_cgfs, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755"));
        for (int i = 0; i < ncg; i++) {
            STEP(mkdir(cgs[i].fs_dir, 0755));
            if (cgs[i].v2)
                STEP(mount("cgroup2", cgs[i].fs_dir, "cgroup2", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL));
            else {
                /* A bind, not a cgroup v1 mount: before each of those the kernel drains every group of
                 * the v2 tree (cgroup_lock_and_drain_offline), a walk that grows with the groups alive. */
                STEP(mount(cgs[i].group, cgs[i].fs_dir, NULL, MS_BIND, NULL));
                STEP(mount(NULL, cgs[i].fs_dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                           NULL));
            }
        }
        STEP(mount(NULL, p_cgfs, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL));
    }
    STEP(enter_root());
    STEP(mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_NODEV, NULL));
    STEP(lo_up());
    STEP((umask(022), 0));
    STEP(drop_bounding());
    STEP(syscall(SYS_setgroups, 0, NULL));
    STEP(syscall(SYS_setresgid, 0, 0, 0));
    STEP(syscall(SYS_setresuid, 0, 0, 0));
    STEP(set_caps());
    STEP(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    STEP(filter.len ? syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &filter) : 0);
    STEP(chdir("/"));
    step++;
    sigprocmask(SIG_SETMASK, &saved_mask, NULL);
    execve(payload[0], payload, envp);
fail:
    child_errno = errno;
    _exit(100 + step);
}

/* ---- clone3 with CLONE_VM|CLONE_VFORK on a stack of ours: the child must call child_main at once ---- */

static __attribute__((noinline)) long clone3_run(struct clone3_args *args, int (*fn)(void *), void *arg)
{
#if defined(__x86_64__)
    register long rax __asm__("rax") = __NR_clone3;
    register struct clone3_args *rdi __asm__("rdi") = args;
    register size_t rsi __asm__("rsi") = sizeof *args;
    register int (*r12)(void *) __asm__("r12") = fn;
    register void *r13 __asm__("r13") = arg;
    __asm__ __volatile__("syscall\n\t"
                         "test %%rax, %%rax\n\t"
                         "jnz 1f\n\t"
                         "xor %%ebp, %%ebp\n\t"
                         "mov %%r13, %%rdi\n\t"
                         "call *%%r12\n\t"
                         "mov %%eax, %%edi\n\t"
                         "mov $60, %%eax\n\t"
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
                         "mov x29, xzr\n\t"
                         "mov x0, x21\n\t"
                         "blr x20\n\t"
                         "mov x8, #93\n\t"
                         "svc #0\n\t"
                         "1:\n\t"
                         : "+r"(x0)
                         : "r"(x8), "r"(x1), "r"(x20), "r"(x21)
                         : "x30", "memory");
    return x0;
#endif
}

/* ---- host side ---- */

static char stats_buf[STATS_BUF];
static unsigned long long stats_sum; /* what was read, so that the reads are used */

static void read_stat(const char *dir, const char *file)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return; /* pids.peak and others may be missing */
    ssize_t n = read(fd, stats_buf, sizeof stats_buf - 1);
    close(fd);
    if (n <= 0)
        return;
    stats_buf[n] = '\0';
    for (char *p = stats_buf; *p;) { /* every number in it */
        if (*p >= '0' && *p <= '9')
            stats_sum += strtoull(p, &p, 10);
        else
            p++;
    }
}

static void read_exit_stats(void)
{
    const struct cgdir *mem = NULL, *pids = NULL, *v2 = NULL;
    for (int i = 0; i < ncg; i++) {
        if (cgs[i].kind == CG_MEMORY || (cgs[i].v2 && cgs[i].has_memory))
            mem = &cgs[i];
        if (cgs[i].kind == CG_PIDS || (cgs[i].v2 && cgs[i].has_pids))
            pids = &cgs[i];
        if (cgs[i].v2)
            v2 = &cgs[i];
    }
    if (mem && !mem->v2) {
        read_stat(mem->group, "memory.usage_in_bytes");
        read_stat(mem->group, "memory.limit_in_bytes");
        read_stat(mem->group, "memory.memsw.usage_in_bytes");
        read_stat(mem->group, "memory.max_usage_in_bytes");
    } else if (mem) {
        read_stat(mem->group, "memory.current");
        read_stat(mem->group, "memory.peak");
        read_stat(mem->group, "memory.max");
        read_stat(mem->group, "memory.swap.current");
    }
    if (v2)
        read_stat(v2->group, "cpu.stat");
    if (pids) {
        read_stat(pids->group, "pids.current");
        read_stat(pids->group, "pids.peak");
        read_stat(pids->group, "pids.max");
    }
    if (mem)
        read_stat(mem->group, mem->v2 ? "memory.events" : "memory.oom_control");
}

/* nsprim's delete: is it there, walk it (a leaf: one stat each), no process left in any, rmdir each. */
static int remove_groups(int made)
{
    struct stat st;
    char path[PATH_MAX];
    int failed = 0;
    if (made > 0)
        (void)stat(cgs[0].group, &st);
    for (int i = 0; i < made; i++)
        (void)stat(cgs[i].group, &st);
    for (int i = 0; i < made; i++) {
        snprintf(path, sizeof path, "%s/cgroup.procs", cgs[i].group);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t n = read(fd, stats_buf, sizeof stats_buf);
            close(fd);
            if (n > 0)
                fprintf(stderr, "container_same: %s is not empty\n", cgs[i].group);
        }
    }
    for (int i = 0; i < made; i++) {
        int tries = 0;
        while (rmdir(cgs[i].group) < 0) {
            if (errno != EBUSY || ++tries > 20000) { /* EBUSY: the last task is still being released */
                fprintf(stderr, "container_same: rmdir %s: %s\n", cgs[i].group, strerror(errno));
                failed = 1;
                break;
            }
            usleep(100);
        }
    }
    return failed ? -1 : 0;
}

static int apply_limits(const struct cgdir *c)
{
    char path[PATH_MAX];
    if (c->kind == CG_MEMORY) { /* limit <= memsw.limit at every moment: limit, memsw, and the limit
                                   again only if the first write was refused (as nsprim does) */
        snprintf(path, sizeof path, "%s/memory.limit_in_bytes", c->group);
        int first = write_file(path, "67108864");
        if (first < 0 && errno != EINVAL)
            return -1;
        snprintf(path, sizeof path, "%s/memory.memsw.limit_in_bytes", c->group);
        if (write_file(path, "67108864") < 0 && errno != ENOENT)
            return -1;
        snprintf(path, sizeof path, "%s/memory.limit_in_bytes", c->group);
        return first == 0 ? 0 : write_file(path, "67108864");
    }
    if (c->v2 && c->has_memory) {
        snprintf(path, sizeof path, "%s/memory.max", c->group);
        if (write_file(path, "67108864") < 0)
            return -1;
        snprintf(path, sizeof path, "%s/memory.swap.max", c->group);
        if (write_file(path, "0") < 0 && errno != ENOENT)
            return -1;
    }
    if (c->kind == CG_PIDS || (c->v2 && c->has_pids)) {
        snprintf(path, sizeof path, "%s/pids.max", c->group);
        return write_file(path, "64");
    }
    return 0;
}

static int setup_cgdir(struct cgdir *c, const char *dir)
{
    struct statfs sf;
    char path[PATH_MAX], buf[256];
    c->parent = dir;
    if (statfs(dir, &sf) < 0) {
        fprintf(stderr, "container_same: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    c->v2 = sf.f_type == CGROUP2_SUPER_MAGIC;
    /* the hierarchy's mount point is the parent group's parent directory */
    snprintf(path, sizeof path, "%s", dir);
    char *slash = strrchr(path, '/');
    if (!slash || slash == path) {
        fprintf(stderr, "container_same: %s: not a group below a hierarchy's mount point\n", dir);
        return -1;
    }
    *slash = '\0';
    slash = strrchr(path, '/');
    snprintf(c->name, sizeof c->name, "%.63s", slash ? slash + 1 : path);
    if (c->v2) {
        c->kind = CG_V2;
        snprintf(path, sizeof path, "%s/cgroup.subtree_control", dir);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : 0;
        if (fd >= 0)
            close(fd);
        buf[n > 0 ? n : 0] = '\0';
        c->has_memory = strstr(buf, "memory") != NULL;
        c->has_pids = strstr(buf, "pids") != NULL;
    } else {
        snprintf(path, sizeof path, "%s/memory.limit_in_bytes", dir);
        if (access(path, F_OK) == 0) {
            c->kind = CG_MEMORY;
        } else {
            snprintf(path, sizeof path, "%s/pids.max", dir);
            c->kind = access(path, F_OK) == 0 ? CG_PIDS : CG_OTHER;
        }
    }
    char name[sizeof c->name];
    memcpy(name, c->name, sizeof name);
    snprintf(c->fs_dir, sizeof c->fs_dir, "%s/%s", p_cgfs, name);
    return 0;
}

static int load_filter(const char *file)
{
    FILE *f = fopen(file, "rb");
    if (!f) {
        fprintf(stderr, "container_same: %s: %s\n", file, strerror(errno));
        return -1;
    }
    static struct sock_filter insns[BPF_MAXINSNS + 1];
    size_t n = fread(insns, sizeof insns[0], BPF_MAXINSNS + 1, f);
    fclose(f);
    if (n == 0 || n > BPF_MAXINSNS) {
        fprintf(stderr, "container_same: %s: not a seccomp program (%zu instructions)\n", file, n);
        return -1;
    }
    filter.len = (unsigned short)n;
    filter.filter = insns;
    return 0;
}

static void in_root(char *out, const char *path)
{
    snprintf(out, IN_ROOT_MAX, "%s%.63s", p_root, path);
}

int main(int argc, char **argv)
{
    long pace_us = 0;
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0 && argv[i][2] != '\0'; i++) {
        if (strncmp(argv[i], "--pace-us=", 10) == 0) {
            pace_us = strtol(argv[i] + 10, NULL, 10);
        } else if (strncmp(argv[i], "--seccomp=", 10) == 0) {
            if (load_filter(argv[i] + 10) < 0)
                return 1;
        } else if (strncmp(argv[i], "--caps=", 7) == 0) {
            keep_caps = strtoull(argv[i] + 7, NULL, 16);
        } else {
            fprintf(stderr, "container_same: unknown option %s\n", argv[i]);
            return 1;
        }
    }
    if (argc - i < 3) {
        fprintf(stderr, "usage: container_same [--pace-us=N] [--seccomp=FILE] [--caps=HEX] N ROOT STATE CGDIR... "
                        "[-- CMD [ARG...]]\n");
        return 1;
    }
    long n = strtol(argv[i++], NULL, 10);
    root_src = argv[i++];
    state = argv[i++];
    snprintf(p_root, sizeof p_root, "%s/root", state);
    snprintf(p_scratch, sizeof p_scratch, "%s/scratch", state);
    snprintf(p_upper, sizeof p_upper, "%s/scratch/upper", state);
    snprintf(p_work, sizeof p_work, "%s/scratch/work", state);
    snprintf(ovl_data, sizeof ovl_data, "lowerdir=%s,upperdir=%s,workdir=%s", root_src, p_upper, p_work);
    in_root(p_sys, "/sys");
    in_root(p_dev, "/dev");
    in_root(p_pts, "/dev/pts");
    in_root(p_shm, "/dev/shm");
    in_root(p_proc, "/proc");
    in_root(p_cgfs, "/sys/fs/cgroup");
    char rel[64];
    for (size_t d = 0; d < NDEV; d++) {
        snprintf(rel, sizeof rel, "/dev/%s", devices[d].name);
        in_root(p_devices[d], rel);
    }
    for (size_t d = 0; d < NLINK; d++) {
        snprintf(rel, sizeof rel, "/dev/%s", links[d][0]);
        in_root(p_links[d], rel);
    }
    for (size_t d = 0; d < NMASK; d++)
        in_root(p_masked[d], masked[d]);
    for (size_t d = 0; d < NRO; d++)
        in_root(p_readonly[d], readonly[d]);
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (ncg == MAX_CG) {
            fprintf(stderr, "container_same: at most %d cgroup directories\n", MAX_CG);
            return 1;
        }
        if (setup_cgdir(&cgs[ncg], argv[i]) < 0)
            return 1;
        if (cgs[ncg].v2)
            cg2_index = ncg;
        ncg++;
    }
    if (i < argc && strcmp(argv[i], "--") == 0 && i + 1 < argc)
        payload = &argv[i + 1];
    double *us = calloc((size_t)(n > 0 ? n : 1), sizeof *us);
    char *stack = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (n <= 0 || us == NULL || stack == MAP_FAILED) {
        fprintf(stderr, "container_same: bad count or no memory\n");
        return 1;
    }
    struct stat st;
    sigset_t all;
    sigfillset(&all);
    for (long k = 0; k < n; k++) {
        if (pace_us > 0)
            usleep((useconds_t)pace_us);
        double t0 = now_us();
        /* nsprim's state directory: made once, checked per container (mkdir -p) */
        if (mkdir(p_root, 0700) < 0 && !(errno == EEXIST && stat(p_root, &st) == 0 && S_ISDIR(st.st_mode))) {
            fprintf(stderr, "container_same: mkdir %s: %s\n", p_root, strerror(errno));
            return 1;
        }
        int made = 0;
        for (int c = 0; c < ncg; c++) {
            snprintf(cgs[c].group, sizeof cgs[c].group, "%s/cs-%ld", cgs[c].parent, k);
            snprintf(cgs[c].tasks, sizeof cgs[c].tasks, "%s/tasks", cgs[c].group);
            if (mkdir(cgs[c].group, 0755) < 0) {
                fprintf(stderr, "container_same: mkdir %s: %s\n", cgs[c].group, strerror(errno));
                remove_groups(made);
                return 1;
            }
            made++;
        }
        for (int c = 0; c < ncg; c++) {
            if (apply_limits(&cgs[c]) < 0) {
                fprintf(stderr, "container_same: limits in %s: %s\n", cgs[c].group, strerror(errno));
                remove_groups(made);
                return 1;
            }
        }
        int cgfd = -1;
        if (cg2_index >= 0) {
            cgfd = open(cgs[cg2_index].group, O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (cgfd < 0) {
                fprintf(stderr, "container_same: open %s: %s\n", cgs[cg2_index].group, strerror(errno));
                remove_groups(made);
                return 1;
            }
        }
        int pidfd = -1;
        struct clone3_args args;
        memset(&args, 0, sizeof args);
        args.flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET | CLONE_VM | CLONE_VFORK |
                     CLONE_PIDFD | CLONE_CLEAR_SIGHAND;
        if (cgfd >= 0) {
            args.flags |= CLONE_INTO_CGROUP;
            args.cgroup = (uint64_t)cgfd;
        }
        args.pidfd = (uint64_t)(uintptr_t)&pidfd;
        args.exit_signal = SIGCHLD;
        args.stack = (uint64_t)(uintptr_t)stack;
        args.stack_size = STACK_SIZE;
        child_errno = 0;
        sigprocmask(SIG_SETMASK, &all, &saved_mask);
        int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
        long pid = clone3_run(&args, child_main, NULL);
        /* the child's PR_SET_DUMPABLE 0 was on our shared memory map */
        if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != dumpable)
            prctl(PR_SET_DUMPABLE, (unsigned long)dumpable, 0, 0, 0);
        sigprocmask(SIG_SETMASK, &saved_mask, NULL);
        if (cgfd >= 0)
            close(cgfd);
        if (pid < 0) {
            fprintf(stderr, "container_same: clone3: %s\n", strerror((int)-pid));
            remove_groups(made);
            return 1;
        }
        siginfo_t info;
        memset(&info, 0, sizeof info);
        if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED) < 0) {
            perror("container_same: waitid");
            return 1;
        }
        close(pidfd);
        read_exit_stats();
        if (remove_groups(made) < 0)
            return 1;
        us[k] = now_us() - t0;
        if (info.si_code != CLD_EXITED || info.si_status != 0) {
            if (info.si_code == CLD_EXITED && info.si_status >= 100)
                fprintf(stderr, "container_same: the child failed at step %d: %s\n", info.si_status - 100,
                        strerror(child_errno));
            else
                fprintf(stderr, "container_same: the payload ended with code %d status %d\n", info.si_code,
                        info.si_status);
            return 1;
        }
    }
    printf("{\"n\": %ld, \"seccomp_insns\": %u, \"caps\": \"%#llx\", \"cgroups\": %d, \"stats_sum\": %llu, \"us\": [",
           n, (unsigned)filter.len, (unsigned long long)keep_caps, ncg, stats_sum);
    for (long k = 0; k < n; k++)
        printf(k ? ", %.1f" : "%.1f", us[k]);
    printf("]}\n");
    return 0;
}
