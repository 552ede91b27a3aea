/*
 * nsprim native core: the public C interface of the cffi extension.
 *
 * This header is read twice: by the C compiler (included from the .c files)
 * and by cffi as the cdef of the extension.  It must therefore hold plain
 * declarations only: no #include, no #ifdef, no macros.  Constants that come
 * from system headers are listed in constants.cdef instead.
 *
 * Conventions: every function returns a value >= 0 on success and -errno on
 * failure.  errno itself is never read by the Python side.
 */

/* ---- thin system call wrappers ------------------------------------------ */

const char *nsp_version(void);

int nsp_unshare(int flags);
int nsp_setns(int fd, int nstype);
int nsp_mount(const char *source, const char *target, const char *fstype,
              unsigned long flags, const char *data);
int nsp_umount2(const char *target, int flags);
int nsp_pivot_root(const char *new_root, const char *put_old);
int nsp_sethostname(const char *name, size_t len);
int nsp_setdomainname(const char *name, size_t len);
int nsp_pidfd_open(int pid, unsigned int flags);
int nsp_pidfd_send_signal(int pidfd, int sig, unsigned int flags);
int nsp_ns_ioctl(int fd, unsigned long request);
int nsp_gettid(void);

/* The new mount API (Linux 5.2+); each returns -ENOSYS on older kernels. */
int nsp_fsopen(const char *fsname, unsigned int flags);
int nsp_fsconfig(int fd, unsigned int cmd, const char *key, const char *value, int aux);
int nsp_fsmount(int fd, unsigned int flags, unsigned int attr_flags);
int nsp_move_mount(int from_dfd, const char *from_path, int to_dfd,
                   const char *to_path, unsigned int flags);
int nsp_open_tree(int dfd, const char *path, unsigned int flags);
int nsp_mount_setattr(int dfd, const char *path, unsigned int flags,
                      unsigned long long attr_set, unsigned long long attr_clr,
                      unsigned long long propagation, int userns_fd);
int nsp_openat2(int dfd, const char *path, unsigned long long flags,
                unsigned long long mode, unsigned long long resolve);
int nsp_close_range(unsigned int first, unsigned int last, unsigned int flags);
int nsp_inotify_init1(int flags);
int nsp_inotify_add_watch(int fd, const char *path, uint32_t mask);
/* How many pages of the first length bytes of the file open as fd are in the page cache (mincore). */
long nsp_resident_pages(int fd, size_t length);

/* Which of the modern interfaces this kernel has (probed once). */
int nsp_have_clone3(void);
int nsp_have_new_mount_api(void);

/* ---- the child-side plan -------------------------------------------------- */

/* Kinds of plan steps.  Python mirrors these through the compiled enum. */
enum nsp_step_kind {
    NSP_STEP_SYNC = 1,        /* wait until the parent says go (uid maps...) */
    NSP_STEP_SETNS,           /* a = fd, b = nstype (0: any; pidfd: flags);
                                 c > 0: then make directory fd c-1 the root
                                 (joining a mount namespace resets it)        */
    NSP_STEP_UNSHARE,         /* a = CLONE_NEW* flags                          */
    NSP_STEP_SETHOSTNAME,     /* str                                           */
    NSP_STEP_SETDOMAINNAME,   /* str                                           */
    NSP_STEP_MOUNT,           /* path = source, path2 = target, str = fstype,
                                 a = flags, str2 = data                        */
    NSP_STEP_MKDIR,           /* path, a = mode; flags: NSP_MKDIR_*            */
    NSP_STEP_CHROOT,          /* path                                          */
    NSP_STEP_CHDIR,           /* path                                          */
    NSP_STEP_WRITE_FILE,      /* path, str = contents, a = length; flags:
                                 NSP_WRITE_FILE_*                              */
    NSP_STEP_SETGROUPS,       /* ints[nints] (gid_t bit patterns), nints at
                                 most NSP_MAX_GROUPS                          */
    NSP_STEP_SETRESGID,       /* a = gid, 0..NSP_MAX_ID                        */
    NSP_STEP_SETRESUID,       /* a = uid, 0..NSP_MAX_ID                        */
    NSP_STEP_FDMAP,           /* ints = src0, dst0, src1, dst1, ... (at most
                                 NSP_MAX_FDMAP_PAIRS pairs), then c kept fds
                                 (CLOSE_OTHERS); then all other fds >= 3
                                 become close-on-exec (flags: NSP_FDMAP_*)  */
    NSP_STEP_SETSID,
    NSP_STEP_PDEATHSIG,       /* a = signal                                    */
    NSP_STEP_NO_NEW_PRIVS,
    NSP_STEP_RLIMIT,          /* a = resource, b = soft, c = hard              */
    NSP_STEP_UMASK,           /* a = mask                                      */
    NSP_STEP_EXEC,            /* path = file (searched in str = PATH if no
                                 '/'), strv = argv, strv2 = envp              */
    NSP_STEP_DUMPABLE,        /* a = 0 or 1: prctl(PR_SET_DUMPABLE)           */
    NSP_STEP_CAPS,            /* ints = 5 sets (bounding, effective, permitted,
                                 inheritable, ambient), each as lo, hi words */
    NSP_STEP_SECCOMP,         /* str = struct sock_filter[a], flags = filter
                                 flags for seccomp(SECCOMP_SET_MODE_FILTER)  */
    NSP_STEP_IFUP,            /* str = interface name: set IFF_UP             */
    NSP_STEP_INIT,            /* fork: the parent stays as pid 1, reaping
                                 zombies and forwarding signals; the child
                                 runs the remaining steps (fork mode only)   */
    NSP_STEP_MOUNT_IN_ROOT,   /* mount with the target resolved inside the root
                                 strv[0] (see rootfs.h for all fields)        */
    NSP_STEP_CREATE_IN_ROOT,  /* mkdir/mknod/symlink/file inside root strv[0] */
    NSP_STEP_ENTER_ROOT,      /* path: pivot_root, detach (NSP_ENTER_ROOT_*)  */
    NSP_STEP_MOUNT_FS,        /* new mount API: str = fstype, strv = params,
                                 path2 = target, a = MOUNT_ATTR_* flags       */
    NSP_STEP_KEEP_FD,         /* path: open it (O_RDONLY | b) and leave the
                                 descriptor to the parent in kept_fds[a]
                                 (vfork mode with CLONE_FILES only)          */
    NSP_STEP_TERMINAL,        /* a new pseudo-terminal from /dev/ptmx: its
                                 size read from socket a (a struct winsize),
                                 the slave chowned to uid b / gid c (-1: keep)
                                 made the controlling terminal (in a new
                                 session if need be) and fds 0-2; the master
                                 sent back over socket a (SCM_RIGHTS), which
                                 is then closed; flags: NSP_TERMINAL_*       */
    NSP_STEP_WAIT_START       /* a = a listening AF_UNIX socket: report
                                 "ready" on the report pipe (a report with
                                 err 0), accept one connection, read one
                                 byte (the start), close the listener; the
                                 connection is then the report channel
                                 (close-on-exec): a later failure is
                                 reported there, the exec closes it          */
};

/* The bits of nsp_step.flags, by step kind: the child refuses (EINVAL) a
 * step with a bit its kind does not know, so that a bit meant for another
 * kind never means something by accident.  Enums, not macros: this header is
 * also the cdef Python reads them from. */
enum nsp_step_flag {
    /* MOUNT, MKDIR, CHROOT, CHDIR, WRITE_FILE, KEEP_FD and the root steps
     * (MOUNT_IN_ROOT, CREATE_IN_ROOT, ENTER_ROOT, MOUNT_FS): a missing path
     * (ENOENT) is not a failure. */
    NSP_STEP_OPTIONAL = 256
};

enum nsp_mkdir_flag {
    NSP_MKDIR_EXIST_OK = 1       /* an existing entry is fine                  */
};

enum nsp_write_file_flag {
    NSP_WRITE_FILE_CREATE = 1    /* O_CREAT | O_TRUNC (default: it must exist) */
};

/* NSP_STEP_TERMINAL; none: the size is read from socket a and the master
 * sent back over it with one byte of data. */
enum nsp_terminal_flag {
    NSP_TERMINAL_CONSOLE = 1     /* socket a is an engine's console socket: the
                                    size is ints[0] rows, ints[1] columns (no
                                    ints: left as it is), and the master goes
                                    with the pty's name as data (as runc)     */
};

enum nsp_fdmap_flag {
    NSP_FDMAP_KEEP_OTHERS = 1,   /* leave the other fds >= 3 as they are       */
    NSP_FDMAP_CLOSE_OTHERS = 2   /* close them instead (close_range): the last
                                    c ints are descriptors kept as they are
                                    (close-on-exec), not pairs; an inherited
                                    lock or pipe end must not outlive the
                                    caller in a child that waits (not with
                                    KEEP_OTHERS)                              */
};

/* NSP_STEP_EXEC. */
enum nsp_exec_flag {
    NSP_EXEC_LOOKUP = 1          /* only find the file as execve would (an
                                    executable regular file, PATH searched)
                                    and go on: a missing program is reported
                                    before the plan waits                     */
};

/* NSP_STEP_ENTER_ROOT; neither: pivot_root, the old root detached. */
enum nsp_enter_root_flag {
    NSP_ENTER_ROOT_FALLBACK = 1, /* pivot_root, else move + chroot when the root
                                    cannot be pivoted (an initramfs)           */
    NSP_ENTER_ROOT_CHROOT = 2    /* move + chroot only (not with FALLBACK)     */
};

/* MOUNT_IN_ROOT and CREATE_IN_ROOT (see rootfs.h). */
enum nsp_root_flag {
    NSP_ROOT_MKDIR = 1,          /* MOUNT: create the target (and parents) as a
                                    directory                                  */
    NSP_ROOT_MKFILE = 2,         /* MOUNT: create the target as an empty file;
                                    with MKDIR: whichever the bind source is   */
    NSP_ROOT_SRC_IN_ROOT = 4,    /* MOUNT: the source is a path inside the root */
    NSP_ROOT_MASK = 8,           /* MOUNT: hide the target: bind `path` (the
                                    null device, checked) over a file, an empty
                                    read-only tmpfs over a directory           */
    NSP_ROOT_NOFOLLOW = 16,      /* both: refuse any symlink on the way
                                    (default: follow them, inside the root)    */
    NSP_ROOT_EXIST_OK = 32,      /* CREATE: an existing entry is fine          */
    NSP_ROOT_COPY_UP = 64        /* MOUNT: copy what the target directory held
                                    into the new mount, before any remount
                                    (the runtime spec's tmpcopyup)            */
};

/* The phases of NSP_STEP_CAPS (0 means BOUNDING | SETS).  A switch to a
 * non-root uid clears the permitted, effective and ambient sets, so a plan
 * that changes uid runs the step twice:
 *   BOUNDING | KEEP   before setgroups/setresgid/setresuid (which still need
 *                     CAP_SETGID/CAP_SETUID), keeping the permitted set;
 *   SETS | CLAMP      after the switch: capset and the ambient set.          */
enum nsp_caps_flag {
    NSP_CAPS_BOUNDING = 1,       /* drop every bounding cap not in the set     */
    NSP_CAPS_KEEP = 2,           /* prctl(PR_SET_KEEPCAPS, 1) for a uid switch */
    NSP_CAPS_SETS = 4,           /* capset E/P/I, reset and raise ambient,
                                    PR_SET_KEEPCAPS back to 0                 */
    NSP_CAPS_CLAMP = 8           /* ask only for what the process can have
                                    (runtime lacks a cap: skip it, not EPERM) */
};

/* NSP_STEP_SECCOMP's flags are the kernel's SECCOMP_FILTER_FLAG_* bits, which
 * it checks itself; nsprim's own bits (OPTIONAL) are refused there. */
enum nsp_seccomp_flag {
    NSP_SECCOMP_KERNEL_FLAGS = 255
};

/* Bounds the child checks again (Python checks them first): the largest
 * uid/gid ((uid_t)-1 means "unchanged" to the kernel), the kernel's
 * NGROUPS_MAX, and the descriptors one FDMAP step may place. */
#define NSP_MAX_ID 4294967294
#define NSP_MAX_GROUPS 65536
#define NSP_MAX_FDMAP_PAIRS 1024

struct nsp_step {
    int kind;
    int flags;
    long long a;
    long long b;
    long long c;
    const char *path;
    const char *path2;
    const char *str;
    const char *str2;
    char *const *strv;
    char *const *strv2;
    const int *ints;
    int nints;
};

struct nsp_spawn_config {
    unsigned long long clone_flags;  /* CLONE_NEW* to create at clone time     */
    int cgroup_fd;                   /* cgroup v2 dir for CLONE_INTO_CGROUP, or -1 */
    int pidns_fd;                    /* pid namespace to create the child in, or -1 */
    int exit_signal;                 /* usually SIGCHLD                         */
    const struct nsp_step *prefix;   /* steps run first: the per-spawn part of   */
    int nprefix;                     /* a plan whose body is encoded once       */
    const struct nsp_step *steps;
    int nsteps;
    int use_vfork;                   /* share memory until exec (no SYNC steps) */
    int *kept_fds;                   /* where NSP_STEP_KEEP_FD stores its fds */
    int nkept;
    long long *step_ns;              /* NULL, or nprefix + nsteps + 3 clock
                                        readings (CLOCK_MONOTONIC, ns): before
                                        clone, child start, after each step,
                                        clone returned; vfork mode only */
};

/* How far the child got, in memory it shares with the parent: EOF on the
 * report pipe means exec *or* death, and a report the child could not write
 * (a pipe buffer is memory, charged to the child's cgroup) must not read as
 * an exec.  The child stores each step's index and kind before running it,
 * and a failure's errno before it writes the report. */
struct nsp_progress {
    int step;   /* the step the child is at; -1 before the first            */
    int kind;   /* that step's kind                                         */
    int err;    /* > 0: that step failed with this errno                    */
    int part;   /* and in this part of it (enum nsp_step_part)              */
    int total;  /* nprefix + nsteps: step == total, the plan ran to its end */
};

struct nsp_spawn_result {
    int pid;
    int pidfd;
    int report_fd;  /* read end: a struct nsp_report on failure, EOF on exec */
    int sync_fd;    /* write end: one byte releases one SYNC step, or -1    */
    struct nsp_progress *progress;  /* shared with the child: ours (vfork
                                       mode) or in a MAP_SHARED page; released
                                       by nsp_read_report/nsp_spawn_release */
    int progress_slot;              /* 1: a slot of the process's shared page */
    struct nsp_progress own;        /* the vfork-mode child writes here     */
};

/* What the child sends when a step fails; 0-based step index (prefix steps
 * first, then the body's), the step's kind, positive errno, and which part
 * of a composite step failed (enum nsp_step_part; 0 for the others). */
struct nsp_report {
    int index;
    int kind;
    int err;
    int part;
};

/* The parts of the composite steps (MOUNT_IN_ROOT, CREATE_IN_ROOT,
 * MOUNT_FS), so that an error says which one failed. */
enum nsp_step_part {
    NSP_PART_NONE = 0,        /* the step as a whole                          */
    NSP_PART_ROOT,            /* opening the root (strv[0])                   */
    NSP_PART_SOURCE,          /* resolving the source                         */
    NSP_PART_TARGET,          /* resolving the target inside the root         */
    NSP_PART_CREATE,          /* creating the missing target                  */
    NSP_PART_PARENT,          /* creating the parent directories of a target  */
    NSP_PART_NULL,            /* checking the null device a mask binds        */
    NSP_PART_ATTACH,          /* the mount itself (mount(2), move_mount)      */
    NSP_PART_REMOUNT,         /* applying the flags of the second call        */
    NSP_PART_FS_OPEN,         /* MOUNT_FS: fsopen                             */
    NSP_PART_FS_CREATE,       /* MOUNT_FS: creating the superblock            */
    NSP_PART_FS_MOUNT,        /* MOUNT_FS: fsmount                            */
    NSP_PART_COPY_UP,         /* MOUNT_IN_ROOT: copying the target's entries
                                 into the new mount                           */
    NSP_PART_FS_PARAM = 64    /* MOUNT_FS: setting parameter strv[part - 64]  */
};

int nsp_spawn(const struct nsp_spawn_config *config, struct nsp_spawn_result *result);

/* Run a plan's steps in the calling process, as a child would after clone
 * (for a process forked by a warm interpreter, which then goes on in
 * Python): no clone, no exec.  clone_flags, cgroup_fd, pidns_fd, use_vfork,
 * kept_fds and step_ns are ignored; SYNC, INIT, KEEP_FD, WAIT_START and EXEC
 * steps are refused (EINVAL) before any step runs.  Returns 0 once every
 * step ran, or 1 with *report naming the step that failed. */
int nsp_run_plan_here(const struct nsp_spawn_config *config, struct nsp_report *report);

/* A Unix stream socket named `name` in the directory `dirfd`: bound and
 * listening (a created container's start socket) if listening, else
 * connected to it; at or above `floor` (0: the lowest free descriptor),
 * O_CLOEXEC.  Returns the descriptor or -errno. */
int nsp_unix_socket_at(int dirfd, const char *name, int listening, int floor);

/* A new network namespace, made on (and left by) the calling thread, with
 * its loopback up if lo_up: returns a descriptor of it (O_CLOEXEC) or -errno.
 * For pools that prepare namespaces before the containers that join them. */
int nsp_netns_new(int lo_up);

/* The cleanup watcher: a small process, not a child of the caller, that
 * outlives it.  When the caller dies (its pidfd becomes readable) it kills
 * and removes what was registered: cgroups, processes, directories.
 * Returns the watcher's pid and the write end of its registration pipe. */
int nsp_watcher_start(int *register_fd);

/* Records for the registration pipe (one write each, atomic). */
enum nsp_watch_op {
    NSP_WATCH_CGROUP = 1,     /* path: a cgroup directory to kill and remove  */
    NSP_WATCH_PID,            /* pid: a process to SIGKILL                     */
    NSP_WATCH_TREE,           /* path: a directory tree to remove              */
    NSP_WATCH_FORGET_CGROUP,  /* undo one registration (the owner cleaned up) */
    NSP_WATCH_FORGET_PID,
    NSP_WATCH_FORGET_TREE
};

/* A record on the registration pipe: this header, then `len` bytes of path
 * (no terminating NUL; len < 4088).  Several records may share one write. */
struct nsp_watch_record {
    int op;
    int pid;
    int len;
};

/* A detached container's monitor (monitor.c): a process of the core, not a
 * child of the caller, that clones the container with `spawn` and stays its
 * parent: it reaps it, records how it ended and removes its cgroup. */
struct nsp_monitor_config {
    int state_dirfd;             /* the container's state directory (state.json is rewritten in it) */
    const char *state_dir;       /* its path: removed with remove_state, or if the caller dies starting */
    const char *state_prefix;    /* the state's JSON object up to the fields only the monitor knows, */
    long long state_prefix_len;  /* ending in ", " */
    char *const *cgroup_dirs;    /* NULL-terminated: killed and removed once the container ended */
    const char *oom_file;        /* memory.events or memory.oom_control (oom_kill N), or NULL */
    int remove_state;            /* remove state_dir too when the container ended */
    const char *exe;             /* the core's own file: the monitor re-executes it (through the
                                    dynamic loader) to drop its copy of the caller's memory; NULL:
                                    it stays a fork */
};

struct nsp_monitor_result {
    int control_fd;              /* send 'g' (started, state written) or 'a' (failed); then read */
    int monitor_pid;             /* one struct nsp_monitor_exit when the container ended */
    long long starttime;         /* /proc/PID/stat start times, against pid reuse */
    long long monitor_starttime;
};

/* What the monitor sends on control_fd after the container ended (waitid's
 * si_code and si_status; whether the OOM killer struck in its group). */
struct nsp_monitor_exit {
    int code;
    int status;
    int oom_killed;
    int pad;
};

/* Start the monitor and, in it, nsp_spawn(spawn): *res is filled as by
 * nsp_spawn (pidfd, report and sync pipe ends, passed over from the monitor),
 * *mres with the monitor's side.  Returns 0 or -errno. */
int nsp_monitor_spawn(const struct nsp_spawn_config *spawn, const struct nsp_monitor_config *mon,
                      struct nsp_spawn_result *res, struct nsp_monitor_result *mres);

/* Wait for the child's exec or failure (blocks, without the GIL): returns
 * 1 if a step failed (*report filled: by the pipe, or from the shared
 * progress when the child could not write), 0 if the child reached its exec
 * (or ran its plan to the end), 3 if it reached a WAIT_START step and waits
 * there (*report names it), 2 if it died before exec without a report
 * (report->index and kind: the step it was at; err 0), or -errno.  Then
 * releases the progress memory, as nsp_spawn_release does. */
int nsp_read_report(struct nsp_spawn_result *result, struct nsp_report *report);

/* Release the progress memory of a spawn whose report is never read
 * (idempotent; nsp_read_report does it itself).  Returns 0: no function of
 * the core returns void, whose wrapper would bind Python's None at load time,
 * and the monitor runs this file as a program (monitor_image.c). */
int nsp_spawn_release(struct nsp_spawn_result *result);
