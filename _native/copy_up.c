/* Copying a directory's entries into a new mount on it (the runtime spec's
 * tmpcopyup), in the child between clone and exec.
 *
 * The child runs on a 64 KiB stack in a copy of a possibly multi-threaded
 * process: no malloc (no opendir), small buffers, a bounded depth.  Every
 * name is opened relative to its directory with O_NOFOLLOW, so nothing a
 * symlink in the tree points at is read or written. */
#include "rootfs.h"
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define COPY_MAX_DEPTH 24 /* deeper trees are refused (ELOOP): the stack is small */

struct linux_dirent64 {
    unsigned long long d_ino;
    long long d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static int keep_metadata(int fd, const struct stat *st)
{
    struct timespec times[2] = {st->st_atim, st->st_mtim};
    if (fchown(fd, st->st_uid, st->st_gid) < 0 || fchmod(fd, st->st_mode & 07777) < 0 || futimens(fd, times) < 0)
        return -errno;
    return 0;
}

static int copy_data(int from, int to, off_t size)
{
    char buf[1024];
    while (size > 0) {
        ssize_t n = sendfile(to, from, NULL, (size_t)size);
        if (n > 0) {
            size -= n;
            continue;
        }
        if (n == 0)
            return 0; /* the file shrank meanwhile */
        if (errno == EINTR)
            continue;
        if (errno != EINVAL && errno != ENOSYS)
            return -errno;
        /* a file system without sendfile: plain reads and writes */
        for (;;) {
            ssize_t r = read(from, buf, sizeof buf);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                return r < 0 ? -errno : 0;
            for (ssize_t done = 0; done < r;) {
                ssize_t w = write(to, buf + done, (size_t)(r - done));
                if (w < 0 && errno != EINTR)
                    return -errno;
                done += w > 0 ? w : 0;
            }
        }
    }
    return 0;
}

static int copy_file(int src, int dst, const char *name, const struct stat *st)
{
    int from = openat(src, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (from < 0)
        return -errno;
    int to = openat(dst, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    int ret = to < 0 ? -errno : copy_data(from, to, st->st_size);
    if (ret == 0)
        ret = keep_metadata(to, st);
    if (to >= 0)
        close(to);
    close(from);
    return ret;
}

static int copy_link(int src, int dst, const char *name, const struct stat *st)
{
    char target[4096];
    ssize_t n = readlinkat(src, name, target, sizeof target - 1);
    if (n < 0)
        return -errno;
    target[n] = '\0';
    if (symlinkat(target, dst, name) < 0)
        return -errno;
    struct timespec times[2] = {st->st_atim, st->st_mtim};
    if (fchownat(dst, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0
        || utimensat(dst, name, times, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    return 0;
}

static int copy_node(int dst, const char *name, const struct stat *st)
{
    if (mknodat(dst, name, st->st_mode, st->st_rdev) < 0)
        return -errno;
    struct timespec times[2] = {st->st_atim, st->st_mtim};
    if (fchownat(dst, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0
        || fchmodat(dst, name, st->st_mode & 07777, 0) < 0 || utimensat(dst, name, times, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    return 0;
}

static int copy_dir(int src, int dst, int depth);

static int copy_subdir(int src, int dst, const char *name, const struct stat *st, int depth)
{
    if (mkdirat(dst, name, 0700) < 0)
        return -errno;
    int from = openat(src, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (from < 0)
        return -errno;
    int to = openat(dst, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int ret = to < 0 ? -errno : copy_dir(from, to, depth + 1);
    if (ret == 0)
        ret = keep_metadata(to, st); /* last: a read-only mode would stop the copy into it */
    if (to >= 0)
        close(to);
    close(from);
    return ret;
}

static int copy_entry(int src, int dst, const char *name, int depth)
{
    struct stat st;
    if (fstatat(src, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    switch (st.st_mode & S_IFMT) {
    case S_IFDIR:
        return copy_subdir(src, dst, name, &st, depth);
    case S_IFREG:
        return copy_file(src, dst, name, &st);
    case S_IFLNK:
        return copy_link(src, dst, name, &st);
    case S_IFIFO:
    case S_IFCHR:
    case S_IFBLK:
        return copy_node(dst, name, &st);
    default:
        return 0; /* a socket is a listener's, not content: there is nothing to copy */
    }
}

static int copy_dir(int src, int dst, int depth)
{
    if (depth > COPY_MAX_DEPTH)
        return -ELOOP;
    /* getdents on a descriptor of our own: its offset is this level's cursor */
    int it = openat(src, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (it < 0)
        return -errno;
    char buf[512] __attribute__((aligned(8)));
    int ret = 0;
    for (;;) {
        long n = syscall(SYS_getdents64, it, buf, sizeof buf);
        if (n < 0) {
            ret = -errno;
            break;
        }
        if (n == 0)
            break;
        for (long off = 0; off < n && ret == 0;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
            off += d->d_reclen;
            if (strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0)
                ret = copy_entry(src, dst, d->d_name, depth);
        }
        if (ret < 0)
            break;
    }
    close(it);
    return ret;
}

int nsp_copy_tree(int src, int dst)
{
    return copy_dir(src, dst, 0);
}
