/*
 * Root file system assembly in the child: mounts and files whose path must be
 * resolved *inside* the new root, so that a symlink in an image can never
 * point a mount at the host.  Private to the core; used by spawn.c.
 *
 * Every function runs between clone and exec: system calls only, stack
 * buffers, no allocation; each returns 0 or -errno.
 */
#ifndef NSPRIM_ROOTFS_H
#define NSPRIM_ROOTFS_H

#include "compat.h"

/* Bits of nsp_step.flags for the in-root steps (NSP_STEP_OPTIONAL is 256). */
#define NSP_ROOT_MKDIR 1        /* create the target (and parents) as a directory */
#define NSP_ROOT_MKFILE 2       /* create the target as an empty file; with MKDIR:
                                   whichever the bind source is                  */
#define NSP_ROOT_SRC_IN_ROOT 4  /* the source is a path inside the root too       */
#define NSP_ROOT_MASK 8         /* hide the target: bind `path` (/dev/null) over a
                                   file, an empty read-only tmpfs over a dir      */
#define NSP_ROOT_NOFOLLOW 16    /* refuse any symlink on the way (default: follow
                                   symlinks, but only inside the root)            */
#define NSP_ROOT_EXIST_OK 32    /* CREATE: an existing entry is fine              */

/* NSP_STEP_MOUNT_IN_ROOT: strv[0] = root; path = source (host path, or in the
 * root with SRC_IN_ROOT; may be NULL); path2 = target inside the root; str =
 * fstype; str2 = data; a = mount flags; b = flags for a second, remounting
 * call (MS_REMOUNT|MS_BIND|b, keeping the flags the kernel locks), 0: none. */
int nsp_root_mount(const struct nsp_step *s);

/* NSP_STEP_CREATE_IN_ROOT: strv[0] = root; path2 = path inside the root;
 * a = mode with the type bits (S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR, S_IFBLK,
 * S_IFIFO); b = device; path = symlink target.  Parents are created (0755).
 * The mode is set exactly (the umask does not apply). */
int nsp_root_create(const struct nsp_step *s);

/* NSP_STEP_ENTER_ROOT: path = new root (a mount point).  flags 0: pivot_root,
 * the old root detached; 1: pivot_root, falling back to move + chroot when the
 * root cannot be pivoted (an initramfs); 2: move + chroot only. */
int nsp_root_enter(const struct nsp_step *s);

/* NSP_STEP_MOUNT_FS: the new mount API.  str = fstype; strv = "key=value" or
 * "key" (a flag) parameters, in order (repeatable keys such as lowerdir+);
 * path2 = target; a = MOUNT_ATTR_* flags for fsmount. */
int nsp_root_mount_fs(const struct nsp_step *s);

#endif
