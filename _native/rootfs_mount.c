/*
 * NSP_STEP_MOUNT_IN_ROOT (see rootfs.h): a mount whose target, and source
 * with SRC_IN_ROOT, is resolved inside the new root by rootfs.c, then mounted
 * onto the descriptor that was opened: no second lookup an attacker could
 * race.
 *
 * Binds and masks use the new mount API where the kernel has it (5.2+;
 * mount_setattr 5.12+): open_tree(OPEN_TREE_CLONE) of the source descriptor,
 * mount_setattr on that detached copy, move_mount onto the target descriptor.
 * That saves the two path walks through /proc/self/fd of a mount(2), the
 * reopen of the target for the read-only second call, and, for masked
 * directories, a new tmpfs each.  Everything else, and every case the new
 * API refuses, is mount(2) onto /proc/self/fd/N as before.
 */
#include "rootfs.h"

#include <sys/sysmacros.h>

#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>

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

/* The per-mount flags a bind's second call may set with mount_setattr. */
#define SETATTR_FLAGS (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)

/* mount_setattr (at: AT_RECURSIVE or 0) of the mount `fd` names, with the
 * MOUNT_ATTR_* equivalents of `flags` (others are ignored). */
static int setattr(int fd, unsigned long flags, unsigned at)
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
    if (syscall(__NR_mount_setattr, fd, "", AT_EMPTY_PATH | at, &attr, sizeof attr) < 0)
        return -errno;
    return 0;
}

/* Attach the detached mount `tree` onto `target` (a descriptor). */
static int move_tree(int tree, int target)
{
    if (syscall(__NR_move_mount, tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        return -errno;
    return 0;
}

/* A bind without a path walk: a copy of the mount at `from` (AT_RECURSIVE:
 * with its submounts) attached onto `target`. */
static int attach_copy(int from, int target, unsigned recursive)
{
    int tree = (int)syscall(__NR_open_tree, from, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | recursive);
    if (tree < 0)
        return -errno;
    int r = move_tree(tree, target);
    close(tree);
    return r;
}

/* Where the new mount API is missing (ENOSYS: not tried again in this
 * spawn), refuses a case the classic call handles (EINVAL), or is denied by a
 * filter that knows only mount(2) (EPERM): do it the classic way, which
 * reports its own error if any. */
static int classic_instead(struct nsp_root_cache *c, int r)
{
    if (r == -ENOSYS)
        c->classic = 1;
    return r == -ENOSYS || r == -EINVAL || r == -EPERM;
}

/* The null device of masks, opened and checked once per spawn.  It must be
 * the device itself, checked through the descriptor that is then bound
 * (CVE-2025-31133: a /dev/null replaced by a symlink turned runc's mask into
 * a writable bind of its target). */
static int null_device(struct nsp_root_cache *c, const char *source)
{
    if (!source)
        source = "/dev/null";
    if (c->nullfd >= 0 && strcmp(c->null_path, source) == 0)
        return c->nullfd;
    int fd = open(source, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3)) {
        close(fd);
        return -EPERM;
    }
    if (c->nullfd >= 0)
        close(c->nullfd);
    c->nullfd = fd;
    c->null_path = source;
    return fd;
}

/* A new empty read-only tmpfs, detached (fsmount), or -errno. */
static int empty_tmpfs(void)
{
    int fd = (int)syscall(__NR_fsopen, "tmpfs", FSOPEN_CLOEXEC);
    if (fd < 0)
        return -errno;
    int mfd = -1;
    if (syscall(__NR_fsconfig, fd, FSCONFIG_SET_STRING, "source", "tmpfs", 0) < 0
        || syscall(__NR_fsconfig, fd, FSCONFIG_SET_STRING, "size", "0", 0) < 0
        || syscall(__NR_fsconfig, fd, FSCONFIG_SET_STRING, "mode", "000", 0) < 0
        || syscall(__NR_fsconfig, fd, FSCONFIG_SET_FLAG, "ro", NULL, 0) < 0
        || syscall(__NR_fsconfig, fd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        mfd = -errno;
    else
        mfd = (int)syscall(__NR_fsmount, fd, FSMOUNT_CLOEXEC,
                           MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
    if (mfd == -1)
        mfd = -errno;
    close(fd);
    return mfd;
}

/* An empty read-only tmpfs (mode 000) over the directory `target`.  All the
 * masked directories of a spawn share one: the first is attached, the others
 * are copies of that mount (no new superblock to make, nor to tear down when
 * the container ends).  The classic way makes one per directory. */
static int mask_dir(struct nsp_root_cache *c, int target)
{
    int r;
    if (c->maskfd >= 0) {
        r = attach_copy(c->maskfd, target, 0);
        if (!classic_instead(c, r))
            return r;
        close(c->maskfd); /* its mount may be gone: start again */
        c->maskfd = -1;
    }
    int mfd = c->classic ? -ENOSYS : empty_tmpfs();
    if (mfd >= 0) {
        r = move_tree(mfd, target);
        if (r == 0) {
            c->maskfd = mfd; /* now names the attached mount */
            return 0;
        }
        close(mfd);
    } else {
        r = mfd;
    }
    if (!classic_instead(c, r))
        return r;
    char tbuf[32];
    if (mount("tmpfs", nsp_fd_path(tbuf, target), "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "size=0,mode=000") < 0)
        return -errno;
    return 0;
}

/* Hide `target` (st: what it is): the null device over a file, an empty
 * read-only tmpfs over a directory. */
static int mask(struct nsp_root_cache *c, const char *source, int target, const struct stat *st, int *part)
{
    *part = NSP_PART_ATTACH;
    if (S_ISDIR(st->st_mode))
        return mask_dir(c, target);
    *part = NSP_PART_NULL;
    int null_fd = null_device(c, source);
    if (null_fd < 0)
        return null_fd;
    *part = NSP_PART_ATTACH;
    int r = c->classic ? -ENOSYS : attach_copy(null_fd, target, 0);
    if (!classic_instead(c, r))
        return r;
    char tbuf[32], nbuf[32];
    if (mount(nsp_fd_path(nbuf, null_fd), nsp_fd_path(tbuf, target), NULL, MS_BIND, NULL) < 0)
        return -errno;
    return 0;
}

/* A bind (MS_BIND, maybe MS_REC) of `srcfd`, or of the host path `source`
 * if srcfd < 0, onto `target`, its second call's flags (s->b) set on the
 * copy before it is attached: no path walk through /proc/self/fd, no reopen
 * of the target.  The copy keeps the source's other flags (the locked ones
 * among them).  -ENOSYS etc. (classic_instead) where it cannot. */
static int bind_onto(struct nsp_root_cache *c, const struct nsp_step *s, int srcfd, const char *source, int target,
                     int *part)
{
    if (c->classic)
        return -ENOSYS;
    unsigned rec = (s->a & MS_REC) ? AT_RECURSIVE : 0;
    unsigned fl = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | rec;
    /* A host path is looked up here: a missing one is the source's fault. */
    *part = srcfd >= 0 ? NSP_PART_ATTACH : NSP_PART_SOURCE;
    int tree = srcfd >= 0 ? (int)syscall(__NR_open_tree, srcfd, "", fl | AT_EMPTY_PATH)
                          : (int)syscall(__NR_open_tree, AT_FDCWD, source, fl);
    if (tree < 0)
        return -errno;
    *part = NSP_PART_REMOUNT;
    int r = s->b ? setattr(tree, (unsigned long)s->b, rec) : 0;
    if (r == 0) {
        *part = NSP_PART_ATTACH;
        r = move_tree(tree, target);
    }
    close(tree); /* (not attached: freed, at some cost, on this error path only) */
    return r;
}

/* The classic way: mount(2) onto /proc/self/fd/N of the target, then the
 * second call (s->b) on the new mount, reopened. */
static int mount_onto(int rootfd, const struct nsp_step *s, const char *source, int target, int *part)
{
    char tbuf[32];
    int nofollow = (s->flags & NSP_ROOT_NOFOLLOW) != 0;
    int below = -1; /* what the target held, for a copy-up: open before the mount covers it */
    if (s->flags & NSP_ROOT_COPY_UP) {
        *part = NSP_PART_COPY_UP;
        below = openat(target, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (below < 0)
            return -errno;
    }
    *part = NSP_PART_ATTACH;
    if (mount(source, nsp_fd_path(tbuf, target), s->str, (unsigned long)s->a, s->str2) < 0) {
        int err = -errno;
        if (below >= 0)
            close(below);
        return err;
    }
    if (below >= 0) {
        *part = NSP_PART_TARGET;
        int top = nsp_open_in_root(rootfd, s->path2, nofollow, 0);
        int ret = top;
        if (top >= 0) {
            *part = NSP_PART_COPY_UP;
            int dir = openat(top, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            ret = dir < 0 ? -errno : nsp_copy_tree(below, dir);
            if (dir >= 0)
                close(dir);
            close(top);
        }
        close(below);
        if (ret < 0)
            return ret;
    }
    if (!s->b)
        return 0;
    /* Reopen: the old descriptor still points below the new mount. */
    *part = NSP_PART_TARGET;
    int fd = nsp_open_in_root(rootfd, s->path2, nofollow, 0);
    if (fd < 0)
        return fd;
    *part = NSP_PART_REMOUNT;
    int ret;
    if (s->a & MS_REC) {
        /* A recursive bind: make every mount of the tree read-only (and
         * the rest), not just the top one, where the kernel can (5.12+). */
        ret = setattr(fd, (unsigned long)s->b, AT_RECURSIVE);
        if (ret != -ENOSYS)
            goto out;
    }
    unsigned long fl = MS_REMOUNT | MS_BIND | (unsigned long)s->b | locked_flags(fd);
    ret = mount(NULL, nsp_fd_path(tbuf, fd), NULL, fl, NULL) < 0 ? -errno : 0;
out:
    close(fd);
    return ret;
}

int nsp_root_mount(struct nsp_root_cache *c, const struct nsp_step *s, int *part)
{
    char sbuf[32];
    int nofollow = (s->flags & NSP_ROOT_NOFOLLOW) != 0;
    *part = NSP_PART_ROOT;
    int rootfd = nsp_root_fd(c, s);
    if (rootfd < 0)
        return rootfd;
    int srcfd = -1, target = -1, ret = 0;
    const char *source = s->path;

    if (source && (s->flags & NSP_ROOT_SRC_IN_ROOT)) {
        *part = NSP_PART_SOURCE;
        srcfd = nsp_open_in_root(rootfd, source, nofollow, 0);
        if (srcfd < 0) {
            ret = srcfd;
            goto out;
        }
        source = nsp_fd_path(sbuf, srcfd);
    }

    *part = NSP_PART_TARGET;
    if (srcfd >= 0 && strcmp(s->path, s->path2) == 0)
        target = srcfd; /* a path bound onto itself (read-only paths): one lookup */
    else
        target = nsp_open_in_root(rootfd, s->path2, nofollow, 0);
    if (target == -ENOENT && (s->flags & (NSP_ROOT_MKDIR | NSP_ROOT_MKFILE))) {
        *part = NSP_PART_CREATE;
        int as_dir = (s->flags & NSP_ROOT_MKDIR) != 0;
        if ((s->flags & NSP_ROOT_MKDIR) && (s->flags & NSP_ROOT_MKFILE)) {
            struct stat st; /* whichever the source is */
            if (!source || stat(source, &st) < 0)
                as_dir = 1;
            else
                as_dir = S_ISDIR(st.st_mode);
        }
        if (as_dir) {
            target = nsp_mkdir_in_root(rootfd, s->path2, nofollow, 1);
        } else {
            int r = nsp_create_in_root(c, rootfd, s->path2, S_IFREG | 0644, 0, NULL, nofollow, 1, part);
            target = r < 0 ? r : nsp_open_in_root(rootfd, s->path2, nofollow, 0);
        }
    }
    if (target < 0) {
        ret = target;
        goto out;
    }

    struct stat st;
    if (fstat(target, &st) < 0) {
        ret = -errno;
        goto out;
    }
    if (s->flags & NSP_ROOT_MASK) {
        ret = mask(c, s->path, target, &st, part);
    } else {
        int bind = (s->a & (MS_BIND | MS_REMOUNT)) == MS_BIND && s->path && !(s->b & ~(long long)SETATTR_FLAGS);
        ret = bind ? bind_onto(c, s, srcfd, s->path, target, part) : -ENOSYS;
        if (!bind || classic_instead(c, ret))
            ret = mount_onto(rootfd, s, source, target, part);
    }
    nsp_root_mounted_on(c, &st); /* even on failure: a second call may be what failed */
out:
    if (target >= 0 && target != srcfd)
        close(target);
    if (srcfd >= 0)
        close(srcfd);
    return ret;
}
