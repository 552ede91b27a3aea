/*
 * Root file system assembly in the child (see rootfs.h).
 *
 * Paths inside the new root are opened relative to a descriptor of the root
 * with openat2(RESOLVE_IN_ROOT): an absolute symlink in the image resolves
 * against the new root, ".." stops at it, and magic links (/proc/self/...)
 * are refused.  With NSP_ROOT_NOFOLLOW no symlink is followed at all.  On
 * kernels without openat2 (before 5.6) a careful walk opens one component at
 * a time with O_NOFOLLOW and refuses symlinks and "..".  A mount then goes
 * onto /proc/self/fd/N of the opened target, which is exactly the inode that
 * was checked: no second lookup an attacker could race.
 */
#include "rootfs.h"

#include <sys/sysmacros.h>

#include <limits.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>

struct root_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

/* "/proc/self/fd/N" into buf (at least 32 bytes), without snprintf. */
static const char *fd_path(char *buf, int fd)
{
    static const char prefix[] = "/proc/self/fd/";
    char digits[12];
    int n = 0;
    unsigned v = (unsigned)fd;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < (int)sizeof digits);
    memcpy(buf, prefix, sizeof prefix - 1);
    char *p = buf + sizeof prefix - 1;
    while (n > 0)
        *p++ = digits[--n];
    *p = '\0';
    return buf;
}

static const char *skip_slashes(const char *p)
{
    while (*p == '/')
        p++;
    return p;
}

/* The fallback walk: one component at a time, no symlinks, no "..". */
static int walk_nofollow(int dirfd, const char *path, int oflags)
{
    char comp[NAME_MAX + 1];
    int cur = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
    if (cur < 0)
        return -errno;
    const char *p = skip_slashes(path);
    if (*p == '\0') {
        int fd = openat(cur, ".", O_PATH | O_CLOEXEC | oflags);
        int err = errno;
        close(cur);
        return fd < 0 ? -err : fd;
    }
    while (*p) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > NAME_MAX) {
            close(cur);
            return -ENAMETOOLONG;
        }
        memcpy(comp, p, len);
        comp[len] = '\0';
        p = end ? skip_slashes(end) : p + len;
        if (strcmp(comp, ".") == 0)
            continue;
        if (strcmp(comp, "..") == 0) {
            close(cur);
            return -EXDEV;
        }
        int next = openat(cur, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC | (*p ? O_DIRECTORY : oflags));
        int err = errno;
        if (next < 0 && err == ENOTDIR) {
            struct stat lst; /* say "symlink" rather than "not a directory" */
            if (fstatat(cur, comp, &lst, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(lst.st_mode))
                err = ELOOP;
        }
        close(cur);
        if (next < 0)
            return -err;
        struct stat st;
        if (fstat(next, &st) < 0) {
            err = errno;
            close(next);
            return -err;
        }
        if (S_ISLNK(st.st_mode)) {
            close(next);
            return -ELOOP;
        }
        cur = next;
    }
    return cur;
}

/* An O_PATH descriptor of `path` inside the root `rootfd`. */
static int open_in_root(int rootfd, const char *path, int nofollow, int oflags)
{
    struct root_open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(O_PATH | O_CLOEXEC | oflags);
    how.resolve = RESOLVE_NO_MAGICLINKS | (nofollow ? RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH : RESOLVE_IN_ROOT);
    const char *rel = skip_slashes(path);
    if (*rel == '\0')
        rel = ".";
    int fd = (int)syscall(__NR_openat2, rootfd, rel, &how, sizeof how);
    if (fd >= 0)
        return fd;
    if (errno != ENOSYS)
        return -errno;
    return walk_nofollow(rootfd, rel, oflags);
}

/* Split `path` (inside the root) into its parent, copied to buf, and its last
 * component; returns the last component or NULL if there is none. */
static const char *split_last(const char *path, char *buf, size_t size)
{
    const char *rel = skip_slashes(path);
    size_t len = strlen(rel);
    while (len > 0 && rel[len - 1] == '/')
        len--;
    if (len == 0 || len + 3 >= size)
        return NULL;
    memcpy(buf, rel, len);
    buf[len] = '\0';
    char *slash = strrchr(buf, '/');
    if (!slash) {
        memmove(buf + 2, buf, len + 1);
        buf[0] = '.';
        buf[1] = '\0';
        return buf + 2;
    }
    *slash = '\0';
    return slash + 1;
}

/* mkdir -p inside the root, one component at a time (no recursion: this may
 * run on the small stack of a vfork child); returns an O_PATH descriptor of
 * the directory.  Each prefix is resolved from the root again, so a symlink
 * on the way is followed inside the root (or refused with nofollow). */
static int mkdir_p(int rootfd, const char *path, int nofollow)
{
    int fd = open_in_root(rootfd, path, nofollow, O_DIRECTORY);
    if (fd != -ENOENT)
        return fd;
    char buf[PATH_MAX];
    const char *rel = skip_slashes(path);
    size_t len = strlen(rel);
    if (len >= sizeof buf)
        return -ENAMETOOLONG;
    memcpy(buf, rel, len + 1);
    while (len > 0 && buf[len - 1] == '/')
        buf[--len] = '\0';
    int parent = open_in_root(rootfd, ".", nofollow, O_DIRECTORY);
    size_t start = 0;
    while (parent >= 0 && start < len) {
        size_t end = start;
        while (end < len && buf[end] != '/')
            end++;
        char saved = buf[end];
        buf[end] = '\0';
        const char *comp = buf + start;
        int next;
        if (strcmp(comp, "..") == 0) {
            next = -EINVAL; /* never climb while creating */
        } else {
            next = open_in_root(rootfd, buf, nofollow, O_DIRECTORY);
            if (next == -ENOENT) {
                if (mkdirat(parent, comp, 0755) < 0 && errno != EEXIST)
                    next = -errno;
                else
                    next = open_in_root(rootfd, buf, nofollow, O_DIRECTORY);
            }
        }
        close(parent);
        parent = next;
        buf[end] = saved;
        start = end;
        while (start < len && buf[start] == '/')
            start++;
    }
    return parent;
}

/* Create the last component of `path` with `mode` (type bits included). */
static int create_at(int rootfd, const char *path, mode_t mode, dev_t dev, const char *link_target,
                     int nofollow, int exist_ok)
{
    char buf[PATH_MAX];
    const char *last = split_last(path, buf, sizeof buf);
    if (!last)
        return exist_ok && S_ISDIR(mode) ? 0 : -EEXIST; /* the root itself */
    if (strcmp(last, "..") == 0 || strcmp(last, ".") == 0)
        return -EINVAL;
    int parent = mkdir_p(rootfd, buf, nofollow);
    if (parent < 0)
        return parent;
    int r = 0;
    switch (mode & S_IFMT) {
    case S_IFDIR:
        r = mkdirat(parent, last, mode & 07777);
        break;
    case S_IFLNK:
        r = symlinkat(link_target ? link_target : "", parent, last);
        break;
    case S_IFREG: {
        int fd = openat(parent, last, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 07777);
        if (fd < 0)
            r = -1;
        else
            close(fd);
        break;
    }
    default:
        r = mknodat(parent, last, mode, dev);
    }
    int err = r < 0 ? errno : 0;
    if (r < 0 && !(err == EEXIST && exist_ok)) {
        close(parent);
        return -err;
    }
    if (r == 0 && !S_ISLNK(mode) && fchmodat(parent, last, mode & 07777, 0) < 0) {
        err = errno;
        close(parent);
        return -err;
    }
    close(parent);
    return 0;
}

static int open_root(const struct nsp_step *s)
{
    if (!s->strv || !s->strv[0])
        return -EINVAL;
    int fd = open(s->strv[0], O_PATH | O_DIRECTORY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* The flags a remount must keep (the kernel refuses to clear locked ones). */
static unsigned long locked_flags(int fd)
{
    struct statfs st;
    if (fstatfs(fd, &st) < 0)
        return 0;
    unsigned long keep = 0;
    if (st.f_flags & ST_NOSUID)
        keep |= MS_NOSUID;
    if (st.f_flags & ST_NODEV)
        keep |= MS_NODEV;
    if (st.f_flags & ST_NOEXEC)
        keep |= MS_NOEXEC;
    if (st.f_flags & ST_RDONLY)
        keep |= MS_RDONLY;
    if (st.f_flags & ST_NOATIME)
        keep |= MS_NOATIME;
    if (st.f_flags & ST_NODIRATIME)
        keep |= MS_NODIRATIME;
    if (st.f_flags & ST_RELATIME)
        keep |= MS_RELATIME;
    return keep;
}

struct root_mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

/* mount_setattr(AT_RECURSIVE) with the MOUNT_ATTR_* equivalents of `flags`. */
static int setattr_recursive(int fd, unsigned long flags)
{
    struct root_mount_attr attr;
    memset(&attr, 0, sizeof attr);
    if (flags & MS_RDONLY)
        attr.attr_set |= MOUNT_ATTR_RDONLY;
    if (flags & MS_NOSUID)
        attr.attr_set |= MOUNT_ATTR_NOSUID;
    if (flags & MS_NODEV)
        attr.attr_set |= MOUNT_ATTR_NODEV;
    if (flags & MS_NOEXEC)
        attr.attr_set |= MOUNT_ATTR_NOEXEC;
    if (syscall(__NR_mount_setattr, fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0)
        return -errno;
    return 0;
}

int nsp_root_mount(const struct nsp_step *s)
{
    char tbuf[32], sbuf[32];
    int nofollow = (s->flags & NSP_ROOT_NOFOLLOW) != 0;
    int rootfd = open_root(s);
    if (rootfd < 0)
        return rootfd;
    int srcfd = -1, target = -1, ret = 0;
    const char *source = s->path;

    if (source && (s->flags & NSP_ROOT_SRC_IN_ROOT)) {
        srcfd = open_in_root(rootfd, source, nofollow, 0);
        if (srcfd < 0) {
            ret = srcfd;
            goto out;
        }
        source = fd_path(sbuf, srcfd);
    }

    target = open_in_root(rootfd, s->path2, nofollow, 0);
    if (target == -ENOENT && (s->flags & (NSP_ROOT_MKDIR | NSP_ROOT_MKFILE))) {
        int as_dir = (s->flags & NSP_ROOT_MKDIR) != 0;
        if ((s->flags & NSP_ROOT_MKDIR) && (s->flags & NSP_ROOT_MKFILE)) {
            struct stat st; /* whichever the source is */
            if (!source || stat(source, &st) < 0)
                as_dir = 1;
            else
                as_dir = S_ISDIR(st.st_mode);
        }
        if (as_dir) {
            target = mkdir_p(rootfd, s->path2, nofollow);
        } else {
            int r = create_at(rootfd, s->path2, S_IFREG | 0644, 0, NULL, nofollow, 1);
            target = r < 0 ? r : open_in_root(rootfd, s->path2, nofollow, 0);
        }
    }
    if (target < 0) {
        ret = target;
        goto out;
    }

    const char *tpath = fd_path(tbuf, target);
    if (s->flags & NSP_ROOT_MASK) {
        struct stat st;
        if (fstat(target, &st) < 0) {
            ret = -errno;
            goto out;
        }
        if (S_ISDIR(st.st_mode)) {
            ret = mount("tmpfs", tpath, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0,mode=000");
            ret = ret < 0 ? -errno : 0;
            goto out;
        }
        /* The mask must be the null device itself, checked through the
         * descriptor that is then bound (CVE-2025-31133: a /dev/null replaced
         * by a symlink turned runc's mask into a writable bind of its target). */
        int null_fd = open(source ? source : "/dev/null", O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (null_fd < 0) {
            ret = -errno;
            goto out;
        }
        struct stat nst;
        if (fstat(null_fd, &nst) < 0 || !S_ISCHR(nst.st_mode) || nst.st_rdev != makedev(1, 3)) {
            close(null_fd);
            ret = -EPERM;
            goto out;
        }
        char nbuf[64];
        ret = mount(fd_path(nbuf, null_fd), tpath, NULL, MS_BIND, NULL);
        ret = ret < 0 ? -errno : 0;
        close(null_fd);
        goto out;
    }

    if (mount(source, tpath, s->str, (unsigned long)s->a, s->str2) < 0) {
        ret = -errno;
        goto out;
    }
    if (s->b) {
        /* Reopen: the old descriptor still points below the new mount. */
        close(target);
        target = open_in_root(rootfd, s->path2, nofollow, 0);
        if (target < 0) {
            ret = target;
            goto out;
        }
        tpath = fd_path(tbuf, target);
        if (s->a & MS_REC) {
            /* A recursive bind: make every mount of the tree read-only (and
             * the rest), not just the top one, where the kernel can (5.12+). */
            int r = setattr_recursive(target, (unsigned long)s->b);
            if (r != -ENOSYS) {
                ret = r;
                goto out;
            }
        }
        unsigned long fl = MS_REMOUNT | MS_BIND | (unsigned long)s->b | locked_flags(target);
        if (mount(NULL, tpath, NULL, fl, NULL) < 0)
            ret = -errno;
    }
out:
    if (target >= 0)
        close(target);
    if (srcfd >= 0)
        close(srcfd);
    close(rootfd);
    return ret;
}

int nsp_root_create(const struct nsp_step *s)
{
    int rootfd = open_root(s);
    if (rootfd < 0)
        return rootfd;
    int r = create_at(rootfd, s->path2, (mode_t)s->a, (dev_t)s->b, s->path, (s->flags & NSP_ROOT_NOFOLLOW) != 0,
                      (s->flags & NSP_ROOT_EXIST_OK) != 0);
    close(rootfd);
    return r;
}

static int move_and_chroot(const char *root)
{
    if (chdir(root) < 0)
        return -errno;
    if (mount(".", "/", NULL, MS_MOVE, NULL) < 0)
        return -errno;
    if (chroot(".") < 0)
        return -errno;
    return chdir("/") < 0 ? -errno : 0;
}

/* Whether "/" is the initial ramfs/tmpfs root, which pivot_root refuses
 * (EINVAL).  Only then does "auto" fall back to the weaker move + chroot; any
 * other EINVAL (a root that is not a mount point, say) stays an error. */
static int root_is_initramfs(void)
{
    struct statfs st;
    if (statfs("/", &st) < 0)
        return 0;
    return st.f_type == (typeof(st.f_type))0x858458f6 /* RAMFS_MAGIC */
        || st.f_type == (typeof(st.f_type))0x01021994 /* TMPFS_MAGIC */;
}

int nsp_root_enter(const struct nsp_step *s)
{
    if (s->flags == 2)
        return move_and_chroot(s->path);
    if (chdir(s->path) < 0)
        return -errno;
    /* pivot_root(".", "."): the old root ends up stacked on "." and is
     * detached at once: no put_old directory to create or remove. */
    if (syscall(SYS_pivot_root, ".", ".") < 0) {
        int err = errno;
        if (s->flags == 1 && err == EINVAL && root_is_initramfs())
            return move_and_chroot(s->path);
        return -err;
    }
    if (umount2(".", MNT_DETACH) < 0)
        return -errno;
    return chdir("/") < 0 ? -errno : 0;
}

int nsp_root_mount_fs(const struct nsp_step *s)
{
    char key[256];
    int fd = (int)syscall(__NR_fsopen, s->str, FSOPEN_CLOEXEC);
    if (fd < 0)
        return -errno;
    int ret = 0, mfd = -1;
    for (char *const *kv = s->strv; kv && *kv; kv++) {
        const char *eq = strchr(*kv, '=');
        size_t klen = eq ? (size_t)(eq - *kv) : strlen(*kv);
        if (klen >= sizeof key) {
            ret = -EINVAL;
            goto out;
        }
        memcpy(key, *kv, klen);
        key[klen] = '\0';
        long r = eq ? syscall(__NR_fsconfig, fd, FSCONFIG_SET_STRING, key, eq + 1, 0)
                    : syscall(__NR_fsconfig, fd, FSCONFIG_SET_FLAG, key, NULL, 0);
        if (r < 0) {
            ret = -errno;
            goto out;
        }
    }
    if (syscall(__NR_fsconfig, fd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
        ret = -errno;
        goto out;
    }
    mfd = (int)syscall(__NR_fsmount, fd, FSMOUNT_CLOEXEC, (unsigned)s->a);
    if (mfd < 0) {
        ret = -errno;
        goto out;
    }
    if (syscall(__NR_move_mount, mfd, "", AT_FDCWD, s->path2, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        ret = -errno;
out:
    if (mfd >= 0)
        close(mfd);
    close(fd);
    return ret;
}
