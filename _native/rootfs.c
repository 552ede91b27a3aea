/*
 * Root file system assembly in the child (see rootfs.h).
 *
 * Paths inside the new root are opened relative to a descriptor of the root
 * with openat2(RESOLVE_IN_ROOT): an absolute symlink in the image resolves
 * against the new root, ".." stops at it, and magic links (/proc/self/...)
 * are refused.  With NSP_ROOT_NOFOLLOW no symlink is followed at all.  On
 * kernels without openat2 (before 5.6) a careful walk opens one component at
 * a time with O_NOFOLLOW and refuses symlinks and "..".  A mount then goes
 * onto the opened target itself, which is exactly the inode that was checked
 * (move_mount to the descriptor, or mount(2) onto /proc/self/fd/N): no
 * second lookup an attacker could race.
 *
 * The mounts themselves are in rootfs_mount.c.  Here: resolving, creating,
 * the per-spawn cache of descriptors (struct nsp_root_cache), entering the
 * root and the new mount API's MOUNT_FS.
 */
#include "rootfs.h"

#include <limits.h>
#include <sys/stat.h>
#include <sys/statfs.h>

struct root_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

/* Without snprintf. */
const char *nsp_fd_path(char *buf, int fd)
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

int nsp_open_in_root(int rootfd, const char *path, int nofollow, int oflags)
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
 * component; returns the last component or NULL if there is none.  *plen:
 * the length of the parent's text at the start of the path with its slash
 * ("dev/" of "/dev/null"), 0 for the root. */
static const char *split_last(const char *path, char *buf, size_t size, size_t *plen)
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
        *plen = 0;
        return buf + 2;
    }
    *slash = '\0';
    *plen = (size_t)(slash + 1 - buf);
    return slash + 1;
}

/* mkdir -p inside the root, one component at a time (no recursion: this may
 * run on the small stack of a vfork child); returns an O_PATH descriptor of
 * the directory.  Each existing prefix is resolved from the root again, so a
 * symlink on the way is followed inside the root (or refused with nofollow);
 * a directory just made is opened in its parent with O_NOFOLLOW, and what
 * follows it is missing too: no lookups that cannot find anything.
 * `missing`: the caller saw the whole path missing (ENOENT). */
int nsp_mkdir_in_root(int rootfd, const char *path, int nofollow, int missing)
{
    if (!missing) {
        int fd = nsp_open_in_root(rootfd, path, nofollow, O_DIRECTORY);
        if (fd != -ENOENT)
            return fd;
    }
    char buf[PATH_MAX];
    const char *rel = skip_slashes(path);
    size_t len = strlen(rel);
    if (len >= sizeof buf)
        return -ENAMETOOLONG;
    memcpy(buf, rel, len + 1);
    while (len > 0 && buf[len - 1] == '/')
        buf[--len] = '\0';
    if (len == 0)
        return nsp_open_in_root(rootfd, ".", nofollow, O_DIRECTORY);
    int parent = rootfd; /* borrowed: never closed here */
    int created = 0;
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
            next = created || end == len ? -ENOENT : nsp_open_in_root(rootfd, buf, nofollow, O_DIRECTORY);
            if (next == -ENOENT) {
                if (mkdirat(parent, comp, 0755) == 0) {
                    created = 1;
                    next = openat(parent, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                    if (next < 0)
                        next = -errno;
                } else {
                    /* EEXIST: there after all (a race, a dangling symlink):
                     * resolve it as any other prefix. */
                    next = errno == EEXIST ? nsp_open_in_root(rootfd, buf, nofollow, O_DIRECTORY) : -errno;
                }
            }
        }
        if (parent != rootfd)
            close(parent);
        parent = next;
        buf[end] = saved;
        start = end;
        while (start < len && buf[start] == '/')
            start++;
    }
    return parent;
}

/* ---- the per-spawn cache ---- */

void nsp_root_cache_init(struct nsp_root_cache *c)
{
    memset(c, 0, sizeof *c);
    c->rootfd = c->parentfd = c->nullfd = c->maskfd = -1;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void drop_root(struct nsp_root_cache *c)
{
    close_fd(&c->parentfd);
    close_fd(&c->rootfd);
    c->root = NULL;
}

void nsp_root_cache_drop(struct nsp_root_cache *c)
{
    drop_root(c);
    close_fd(&c->nullfd);
    close_fd(&c->maskfd);
    c->null_path = NULL;
}

/* Create the last component of `path` with `mode` (type bits included). */
int nsp_create_in_root(struct nsp_root_cache *c, int rootfd, const char *path, mode_t mode, dev_t dev,
                       const char *link_target, int nofollow, int exist_ok, int *part)
{
    *part = NSP_PART_PARENT;
    char buf[PATH_MAX];
    size_t plen;
    const char *last = split_last(path, buf, sizeof buf, &plen);
    if (!last)
        return exist_ok && S_ISDIR(mode) ? 0 : -EEXIST; /* the root itself */
    if (strcmp(last, "..") == 0 || strcmp(last, ".") == 0)
        return -EINVAL;
    /* Consecutive creates in one directory (/dev/null, /dev/zero...) share
     * its descriptor until the next mount; the key is the parent's text. */
    const char *rel = skip_slashes(path);
    int parent;
    if (c->parentfd >= 0 && c->parent_nofollow == nofollow && c->parent_len == plen
        && memcmp(c->parent, rel, plen) == 0) {
        parent = c->parentfd;
    } else {
        parent = nsp_mkdir_in_root(rootfd, buf, nofollow, 0);
        if (parent < 0)
            return parent;
        close_fd(&c->parentfd);
        c->parentfd = parent;
        c->parent = rel;
        c->parent_len = plen;
        c->parent_nofollow = nofollow;
    }
    *part = NSP_PART_CREATE;
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
    if (r < 0 && !(err == EEXIST && exist_ok))
        return -err;
    if (r == 0 && !S_ISLNK(mode) && fchmodat(parent, last, mode & 07777, 0) < 0)
        return -errno;
    return 0;
}

int nsp_root_fd(struct nsp_root_cache *c, const struct nsp_step *s)
{
    if (!s->strv || !s->strv[0])
        return -EINVAL;
    if (c->rootfd >= 0 && strcmp(c->root, s->strv[0]) == 0)
        return c->rootfd;
    drop_root(c);
    int fd = open(s->strv[0], O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    c->rootfd = fd;
    c->root = s->strv[0];
    c->root_dev = st.st_dev;
    c->root_ino = st.st_ino;
    return fd;
}

void nsp_root_mounted_on(struct nsp_root_cache *c, const struct stat *st)
{
    /* A mount may cover the cached parent directory (or one of its
     * ancestors): resolve again.  The same inode as the root's may be
     * reachable elsewhere (a bind of the root inside it): then the root is
     * opened again for nothing, which is harmless. */
    close_fd(&c->parentfd);
    if (c->rootfd >= 0 && st->st_dev == c->root_dev && st->st_ino == c->root_ino)
        drop_root(c);
}

int nsp_root_create(struct nsp_root_cache *c, const struct nsp_step *s, int *part)
{
    *part = NSP_PART_ROOT;
    int rootfd = nsp_root_fd(c, s);
    if (rootfd < 0)
        return rootfd;
    return nsp_create_in_root(c, rootfd, s->path2, (mode_t)s->a, (dev_t)s->b, s->path,
                              (s->flags & NSP_ROOT_NOFOLLOW) != 0, (s->flags & NSP_ROOT_EXIST_OK) != 0, part);
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
    if ((s->flags & NSP_ENTER_ROOT_CHROOT) && (s->flags & NSP_ENTER_ROOT_FALLBACK))
        return -EINVAL;
    if (s->flags & NSP_ENTER_ROOT_CHROOT)
        return move_and_chroot(s->path);
    if (chdir(s->path) < 0)
        return -errno;
    /* pivot_root(".", "."): the old root ends up stacked on "." and is
     * detached at once: no put_old directory to create or remove. */
    if (syscall(SYS_pivot_root, ".", ".") < 0) {
        int err = errno;
        if ((s->flags & NSP_ENTER_ROOT_FALLBACK) && err == EINVAL && root_is_initramfs())
            return move_and_chroot(s->path);
        return -err;
    }
    if (umount2(".", MNT_DETACH) < 0)
        return -errno;
    return chdir("/") < 0 ? -errno : 0;
}

int nsp_root_mount_fs(const struct nsp_step *s, int *part)
{
    char key[256];
    *part = NSP_PART_FS_OPEN;
    int fd = (int)syscall(__NR_fsopen, s->str, FSOPEN_CLOEXEC);
    if (fd < 0)
        return -errno;
    int ret = 0, mfd = -1;
    for (char *const *kv = s->strv; kv && *kv; kv++) {
        *part = NSP_PART_FS_PARAM + (int)(kv - s->strv); /* which one: a layer's path, say */
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
    *part = NSP_PART_FS_CREATE;
    if (syscall(__NR_fsconfig, fd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
        ret = -errno;
        goto out;
    }
    *part = NSP_PART_FS_MOUNT;
    mfd = (int)syscall(__NR_fsmount, fd, FSMOUNT_CLOEXEC, (unsigned)s->a);
    if (mfd < 0) {
        ret = -errno;
        goto out;
    }
    *part = NSP_PART_ATTACH;
    if (syscall(__NR_move_mount, mfd, "", AT_FDCWD, s->path2, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        ret = -errno;
out:
    if (mfd >= 0)
        close(mfd);
    close(fd);
    return ret;
}
