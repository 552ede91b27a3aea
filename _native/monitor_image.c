/*
 * The monitor's own image.  The forked monitor is a copy of the caller's
 * memory: for a Python caller some 15 MB that it never touches but keeps
 * alive for as long as the container runs.  So once the container is cloned,
 * the monitor executes the core's own file through the dynamic loader
 * (`ld.so .../_nsprim_native.so`, the way glibc's libc.so.6 runs as a
 * program): the file's entry point, nsp_monitor_entry, takes over the
 * descriptors and a memfd holding what the monitor must know, and runs the
 * same loop in an image of its own, about a megabyte.  No binary to install,
 * nothing but the C library to load.
 *
 * Whether that works here (a loader to find, the file loadable as a program:
 * not linked with BIND_NOW against Python's symbols, not on a noexec mount)
 * is probed once per process with a run that exits at once; if it does not,
 * the monitor stays a fork and nothing else changes.
 */
#include "compat.h"

#include <link.h>
#include <poll.h>
#include <sys/auxv.h>
#include <sys/mman.h>

#include "monitor.h"

#if defined(__x86_64__) || defined(__aarch64__)
#define NSP_MONITOR_IMAGE 1
#endif

#define BLOB_MAGIC 0x6d70736eU /* "nspm" */
#define BLOB_MAX_CGROUPS 32    /* far more than there are hierarchies */
#define BLOB_MAX_SIZE (64 << 20)
#define PROBE_OK 42 /* the entry point's status when it finds no memfd: the probe */

struct blob_header {
    unsigned int magic;
    unsigned int size;   /* sizeof(struct blob_header) */
    char version[32];    /* NSPRIM_VERSION: the file may have been replaced since the caller loaded it */
    int remove_state;
    struct monitor_hello hello;
    long long prefix_len;
    int ncgroups;
    int has_state_dir;
    int has_oom_file;
    int pad;
    /* then: state_dir\0, oom_file\0 (each if present), ncgroups cgroup directories\0, the prefix */
};

#ifdef NSP_MONITOR_IMAGE

/* The PT_INTERP of the running program (the caller's interpreter binary). */
static const char *program_interpreter(void)
{
    const ElfW(Phdr) *ph = (const ElfW(Phdr) *)getauxval(AT_PHDR);
    unsigned long n = getauxval(AT_PHNUM);
    if (ph == NULL || n == 0)
        return NULL;
    uintptr_t bias = 0;
    const ElfW(Phdr) *interp = NULL;
    for (unsigned long i = 0; i < n; i++) {
        if (ph[i].p_type == PT_PHDR)
            bias = (uintptr_t)ph - ph[i].p_vaddr;
        else if (ph[i].p_type == PT_INTERP)
            interp = &ph[i];
    }
    return interp != NULL ? (const char *)(bias + interp->p_vaddr) : NULL;
}

static void exec_image(const char *loader, const char *exe)
{
    char *argv[] = {(char *)"nsprim-monitor", (char *)exe, NULL};
    char *envp[] = {NULL}; /* nothing for the loader to act on (LD_PRELOAD...) */
    execve(loader, argv, envp);
}

/* Run the image once without a memfd: it must load and exit with PROBE_OK. */
static int probe(const char *loader, const char *exe)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = nsp_raw_fork();
    if (pid == 0) {
        if (syscall(__NR_close_range, 3U, ~0U, 0U) < 0)
            for (int fd = 3; fd < 65536; fd++)
                close(fd);
        int null = open("/dev/null", O_RDWR);
        for (int fd = 0; fd < 3 && null >= 0; fd++)
            dup3(null, fd, 0);
        exec_image(loader, exe);
        _exit(127);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0)
        return 0;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return 0; /* reaped by someone else: no verdict */
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == PROBE_OK;
}

static int probed; /* 0: not yet; 1: the image runs; -1: it does not */

const char *nsp_monitor_loader(const char *exe)
{
    const char *loader = program_interpreter();
    if (probed == 0) /* two threads may both probe: same answer */
        probed = loader != NULL && access(loader, X_OK) == 0 && probe(loader, exe) ? 1 : -1;
    return probed > 0 ? loader : NULL;
}

static int put(int fd, const void *p, size_t len)
{
    const char *c = p;
    while (len > 0) {
        ssize_t n = write(fd, c, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        c += n;
        len -= (size_t)n;
    }
    return 0;
}

static int put_string(int fd, const char *s)
{
    return put(fd, s, strlen(s) + 1);
}

void nsp_monitor_reexec(const char *loader, const struct nsp_monitor_config *mon, const struct monitor_hello *h)
{
    struct blob_header b;
    memset(&b, 0, sizeof b);
    b.magic = BLOB_MAGIC;
    b.size = sizeof b;
    strncpy(b.version, NSPRIM_VERSION, sizeof b.version - 1);
    b.remove_state = mon->remove_state;
    b.hello = *h;
    b.prefix_len = mon->state_prefix_len;
    while (mon->cgroup_dirs != NULL && mon->cgroup_dirs[b.ncgroups] != NULL)
        b.ncgroups++;
    b.has_state_dir = mon->state_dir != NULL;
    b.has_oom_file = mon->oom_file != NULL;
    if (b.ncgroups > BLOB_MAX_CGROUPS)
        return;
    int fd = memfd_create("nsprim-monitor", 0); /* no close-on-exec: the new image reads it */
    if (fd < 0)
        return;
    if (fd != 6) {
        int moved = dup3(fd, 6, 0);
        close(fd);
        if (moved < 0)
            return;
    }
    int bad = put(6, &b, sizeof b) < 0 || (b.has_state_dir && put_string(6, mon->state_dir) < 0)
              || (b.has_oom_file && put_string(6, mon->oom_file) < 0);
    for (int i = 0; !bad && i < b.ncgroups; i++)
        bad = put_string(6, mon->cgroup_dirs[i]) < 0;
    if (!bad)
        bad = put(6, mon->state_prefix, (size_t)mon->state_prefix_len) < 0;
    if (!bad) {
        for (int i = 3; i <= 5; i++)
            fcntl(i, F_SETFD, 0);
        exec_image(loader, mon->exe);
        for (int i = 3; i <= 5; i++)
            fcntl(i, F_SETFD, FD_CLOEXEC);
    }
    close(6);
}

/* Read a NUL-terminated string at *off in [base, base+size); NULL if it runs off the end. */
static const char *take_string(const char *base, size_t size, size_t *off)
{
    const char *s = base + *off;
    const char *end = memchr(s, 0, size - *off);
    if (end == NULL)
        return NULL;
    *off += (size_t)(end - s) + 1;
    return s;
}

static __attribute__((noreturn)) void entry_main(void)
{
    prctl(PR_SET_NAME, (unsigned long)"nsprim-monitor", 0, 0, 0);
    struct stat st;
    if (fstat(6, &st) < 0)
        _exit(PROBE_OK);
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL); /* as before the exec (it keeps the mask) */
    static struct nsp_monitor_config mon;
    static char *dirs[BLOB_MAX_CGROUPS + 1];
    size_t size = (size_t)st.st_size, off = sizeof(struct blob_header);
    const char *base = size >= off && size <= BLOB_MAX_SIZE ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, 6, 0)
                                                          : MAP_FAILED;
    close(6);
    if (base == MAP_FAILED)
        goto broken;
    const struct blob_header *b = (const struct blob_header *)base;
    if (b->magic != BLOB_MAGIC || b->size != sizeof *b || strncmp(b->version, NSPRIM_VERSION, sizeof b->version) != 0
        || b->ncgroups < 0 || b->ncgroups > BLOB_MAX_CGROUPS || b->prefix_len < 0)
        goto broken;
    mon.state_dirfd = -1;
    mon.remove_state = b->remove_state;
    if (b->has_state_dir && (mon.state_dir = take_string(base, size, &off)) == NULL)
        goto broken;
    if (b->has_oom_file && (mon.oom_file = take_string(base, size, &off)) == NULL)
        goto broken;
    for (int i = 0; i < b->ncgroups; i++)
        if ((dirs[i] = (char *)take_string(base, size, &off)) == NULL)
            goto broken;
    mon.cgroup_dirs = dirs;
    if ((unsigned long long)b->prefix_len != size - off)
        goto broken;
    mon.state_prefix = base + off;
    mon.state_prefix_len = b->prefix_len;
    nsp_monitor_loop(&mon, &b->hello, 4);
broken:
    /* Another build of the core (replaced since the caller loaded it) or a bug:
     * without the record's part there is nothing to write, but the container is
     * still ours to reap.  It is reported lost once it ended. */
    for (;;) {
        struct pollfd pf = {3, POLLIN, 0};
        if (poll(&pf, 1, -1) > 0) {
            siginfo_t si;
            waitid((idtype_t)3 /* P_PIDFD */, 3, &si, WEXITED);
            _exit(1);
        }
    }
}

/* The file's entry point when the loader runs it as a program (-Wl,-e): the
 * stack holds argc/argv, not a return address, and nothing may return. */
#if defined(__x86_64__)
__attribute__((noreturn, used, force_align_arg_pointer)) void nsp_monitor_entry(void)
#else
__attribute__((noreturn, used)) void nsp_monitor_entry(void)
#endif
{
    entry_main();
}

#else /* no image of its own on this architecture: the monitor stays a fork */

const char *nsp_monitor_loader(const char *exe)
{
    return NULL;
}

void nsp_monitor_reexec(const char *loader, const struct nsp_monitor_config *mon, const struct monitor_hello *h)
{
}

__attribute__((noreturn, used)) void nsp_monitor_entry(void)
{
    _exit(127);
}

#endif
