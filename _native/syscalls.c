/*
 * Thin wrappers over the system calls nsprim needs.  Each returns >= 0 on
 * success or -errno, read right after the call, so that no later library call
 * can clobber it.  Calls with no C library wrapper go through syscall(2).
 */
#include "compat.h"

#include <stdlib.h>
#include <sys/mman.h>

#ifndef NSPRIM_VERSION
#error "NSPRIM_VERSION must be defined by the build"
#endif

#define RET(expr)                        \
    do {                                 \
        long r_ = (long)(expr);          \
        return r_ < 0 ? -errno : (int)r_; \
    } while (0)

const char *nsp_version(void) { return NSPRIM_VERSION; }

int nsp_unshare(int flags) { RET(unshare(flags)); }

int nsp_setns(int fd, int nstype) { RET(setns(fd, nstype)); }

int nsp_mount(const char *source, const char *target, const char *fstype,
              unsigned long flags, const char *data)
{
    RET(mount(source, target, fstype, flags, data));
}

int nsp_umount2(const char *target, int flags) { RET(umount2(target, flags)); }

int nsp_pivot_root(const char *new_root, const char *put_old)
{
    RET(syscall(SYS_pivot_root, new_root, put_old));
}

int nsp_sethostname(const char *name, size_t len) { RET(sethostname(name, len)); }

int nsp_setdomainname(const char *name, size_t len) { RET(setdomainname(name, len)); }

int nsp_pidfd_open(int pid, unsigned int flags) { RET(syscall(__NR_pidfd_open, pid, flags)); }

int nsp_pidfd_send_signal(int pidfd, int sig, unsigned int flags)
{
    RET(syscall(__NR_pidfd_send_signal, pidfd, sig, NULL, flags));
}

int nsp_ns_ioctl(int fd, unsigned long request) { RET(ioctl(fd, request)); }

int nsp_gettid(void) { return (int)syscall(SYS_gettid); }

int nsp_fsopen(const char *fsname, unsigned int flags) { RET(syscall(__NR_fsopen, fsname, flags)); }

int nsp_fsconfig(int fd, unsigned int cmd, const char *key, const char *value, int aux)
{
    RET(syscall(__NR_fsconfig, fd, cmd, key, value, aux));
}

int nsp_fsmount(int fd, unsigned int flags, unsigned int attr_flags)
{
    RET(syscall(__NR_fsmount, fd, flags, attr_flags));
}

int nsp_move_mount(int from_dfd, const char *from_path, int to_dfd, const char *to_path,
                   unsigned int flags)
{
    RET(syscall(__NR_move_mount, from_dfd, from_path, to_dfd, to_path, flags));
}

int nsp_open_tree(int dfd, const char *path, unsigned int flags)
{
    RET(syscall(__NR_open_tree, dfd, path, flags));
}

struct nsp_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};

int nsp_mount_setattr(int dfd, const char *path, unsigned int flags, unsigned long long attr_set,
                      unsigned long long attr_clr, unsigned long long propagation, int userns_fd)
{
    struct nsp_mount_attr attr = {attr_set, attr_clr, propagation, userns_fd < 0 ? 0 : (uint64_t)userns_fd};
    RET(syscall(__NR_mount_setattr, dfd, path, flags, &attr, sizeof attr));
}

struct nsp_open_how {
    uint64_t flags, mode, resolve;
};

int nsp_openat2(int dfd, const char *path, unsigned long long flags, unsigned long long mode,
                unsigned long long resolve)
{
    struct nsp_open_how how = {flags, mode, resolve};
    RET(syscall(__NR_openat2, dfd, path, &how, sizeof how));
}

int nsp_close_range(unsigned int first, unsigned int last, unsigned int flags)
{
    RET(syscall(__NR_close_range, first, last, flags));
}

int nsp_inotify_init1(int flags) { RET(inotify_init1(flags)); }

int nsp_inotify_add_watch(int fd, const char *path, uint32_t mask) { RET(inotify_add_watch(fd, path, mask)); }

long nsp_resident_pages(int fd, size_t length)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), pages, i;
    unsigned char *vec;
    void *addr;
    long resident = 0;
    int err = 0;

    if (length == 0)
        return 0;
    pages = (length + page - 1) / page;
    /* A shared read-only mapping: mincore then tells the page cache's own pages. */
    addr = mmap(NULL, length, PROT_READ, MAP_SHARED, fd, 0);
    if (addr == MAP_FAILED)
        return -errno;
    vec = malloc(pages);
    if (vec == NULL)
        err = ENOMEM;
    else if (mincore(addr, length, vec) < 0)
        err = errno;
    else
        for (i = 0; i < pages; i++)
            resident += vec[i] & 1;
    free(vec);
    munmap(addr, length);
    return err ? -err : resident;
}

int nsp_have_clone3(void)
{
    static int cached = -1;
    if (cached < 0) {
        /* clone3 with a too-small size fails with EINVAL where it exists. */
        long r = syscall(__NR_clone3, NULL, 0);
        cached = !(r < 0 && errno == ENOSYS);
    }
    return cached;
}

int nsp_have_new_mount_api(void)
{
    static int cached = -1;
    if (cached < 0) {
        long r = syscall(__NR_fsopen, NULL, 0);
        cached = !(r < 0 && errno == ENOSYS);
    }
    return cached;
}
