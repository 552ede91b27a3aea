/*
 * Root file system assembly in the child: mounts and files whose path must be
 * resolved *inside* the new root, so that a symlink in an image can never
 * point a mount at the host.  Private to the core; used by child.c.
 *
 * Every function runs between clone and exec: system calls only, stack
 * buffers, no allocation; each returns 0 or -errno.
 */
#ifndef NSPRIM_ROOTFS_H
#define NSPRIM_ROOTFS_H

#include "compat.h"

/* The bits of nsp_step.flags for the in-root steps: enum nsp_root_flag
 * (nsprim.h). */

/* What consecutive in-root steps of one spawn share, so that each need not
 * open again what the one before had open.  It lives in the child's context,
 * never in static storage: a vfork child shares our memory, and several
 * threads may spawn at once.  Every descriptor is O_CLOEXEC; the spawn drops
 * them all at each step that is not MOUNT_IN_ROOT or CREATE_IN_ROOT (an FDMAP
 * may renumber descriptors, a plain mount may cover the root path) and before
 * exec or exit. */
struct nsp_root_cache {
    const char *root;      /* the path rootfd was opened by (a step's strv[0]) */
    int rootfd;            /* -1: none */
    dev_t root_dev;        /* what rootfd is, to see a mount onto the root itself */
    ino_t root_ino;
    const char *parent;    /* the parent directory of the last create, as text */
    size_t parent_len;     /* inside the root (a prefix of that step's path2) */
    int parent_nofollow;
    int parentfd;          /* -1: none; dropped by any mount */
    const char *null_path; /* the mask source nullfd was opened and checked by */
    int nullfd;
    int maskfd;            /* an empty read-only tmpfs, attached once: cloned
                              over every further masked directory           */
    int classic;           /* the new mount API said ENOSYS: mount(2) only  */
};

void nsp_root_cache_init(struct nsp_root_cache *c);
void nsp_root_cache_drop(struct nsp_root_cache *c);

/* The step functions below store in *part (enum nsp_step_part, nsprim.h)
 * what they are doing, so that a failure reports which part it was. */

/* NSP_STEP_MOUNT_IN_ROOT: strv[0] = root; path = source (host path, or in the
 * root with SRC_IN_ROOT; may be NULL); path2 = target inside the root; str =
 * fstype; str2 = data; a = mount flags; b = flags for a second, remounting
 * call (MS_REMOUNT|MS_BIND|b, keeping the flags the kernel locks), 0: none;
 * for a bind whose b is among MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC, where
 * the kernel can, mount_setattr on the new mount instead (with MS_REC: on
 * all of its tree). */
int nsp_root_mount(struct nsp_root_cache *c, const struct nsp_step *s, int *part);

/* NSP_STEP_CREATE_IN_ROOT: strv[0] = root; path2 = path inside the root;
 * a = mode with the type bits (S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR, S_IFBLK,
 * S_IFIFO); b = device; path = symlink target.  Parents are created (0755).
 * The mode is set exactly (the umask does not apply). */
int nsp_root_create(struct nsp_root_cache *c, const struct nsp_step *s, int *part);

/* NSP_STEP_ENTER_ROOT: path = new root (a mount point).  flags 0: pivot_root,
 * the old root detached; NSP_ENTER_ROOT_FALLBACK: pivot_root, falling back to
 * move + chroot when the root cannot be pivoted (an initramfs);
 * NSP_ENTER_ROOT_CHROOT: move + chroot only. */
int nsp_root_enter(const struct nsp_step *s);

/* NSP_STEP_MOUNT_FS: the new mount API.  str = fstype; strv = "key=value" or
 * "key" (a flag) parameters, in order (repeatable keys such as lowerdir+);
 * path2 = target; a = MOUNT_ATTR_* flags for fsmount. */
int nsp_root_mount_fs(const struct nsp_step *s, int *part);

/* ---- shared by rootfs.c, rootfs_mount.c and copy_up.c only ---- */

/* Copy the entries of directory `src` into directory `dst` (both O_RDONLY
 * descriptors, not consumed): directories, regular files, symlinks, FIFOs
 * and device nodes, with their modes, owners and times; sockets are not
 * files to copy.  Nothing is followed; 0 or -errno. */
int nsp_copy_tree(int src, int dst);

/* The root of step s (strv[0]), from the cache or opened anew; not to be
 * closed by the caller. */
int nsp_root_fd(struct nsp_root_cache *c, const struct nsp_step *s);
/* After a mount onto `st` (the target): forget the parent directory of the
 * last create, and the root if it was covered. */
void nsp_root_mounted_on(struct nsp_root_cache *c, const struct stat *st);
/* "/proc/self/fd/N" into buf (at least 32 bytes). */
const char *nsp_fd_path(char *buf, int fd);
/* An O_PATH descriptor of `path` inside the root `rootfd` (see rootfs.c). */
int nsp_open_in_root(int rootfd, const char *path, int nofollow, int oflags);
/* mkdir -p inside the root; an O_PATH descriptor of the directory.
 * missing: the whole path was just seen missing. */
int nsp_mkdir_in_root(int rootfd, const char *path, int nofollow, int missing);
/* Create the last component of `path` (parents as needed), mode exact;
 * *part: NSP_PART_PARENT while making the parents, then NSP_PART_CREATE. */
int nsp_create_in_root(struct nsp_root_cache *c, int rootfd, const char *path, mode_t mode, dev_t dev,
                       const char *link_target, int nofollow, int exist_ok, int *part);

#endif
