"""The default seccomp profile: Docker's, rule for rule.

Deny by default with ``EPERM``; allow about 350 ordinary calls; allow the
administrative ones (``mount``, ``unshare``, ``setns``, module loading,
``ptrace`` before 4.8, ``bpf``, ...) only when the container holds the
capability that guards them; ``clone`` without namespace flags; ``clone3``
fails with ``ENOSYS`` (its flags are in memory a filter cannot read, so the C
library must fall back to ``clone``); ``socket(AF_VSOCK)`` denied;
``personality`` only for the harmless personas.  Rules that depend on the
container's capabilities, the host architecture or the kernel are kept as
Docker's ``includes``/``excludes`` and resolved when the filter is compiled.
"""

from __future__ import annotations

import errno
import functools

from ..capabilities import Capability, CapabilitySet
from .profile import Action, ArgCmp, Condition, Op, Profile, Rule

__all__ = ["docker_default_profile", "DEFAULT_ALLOWED", "CLONE_NAMESPACE_FLAGS"]

#: CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
CLONE_NAMESPACE_FLAGS = 0x7E020000
AF_VSOCK = 40


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


#: Calls every container may make.
DEFAULT_ALLOWED: tuple[str, ...] = _names(
    """
    accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32
    clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
    clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3
    epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old
    eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate
    fanotify_mark fchdir fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr
    flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate
    ftruncate64 futex futex_time64 futex_waitv futimesat getcpu getcwd getdents getdents64 getegid
    getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp
    getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32 getrlimit
    get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid gettimeofday getuid
    getuid32 getxattr inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl
    io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit
    io_uring_enter io_uring_register io_uring_setup ipc kill landlock_add_rule landlock_create_ruleset
    landlock_restrict_self lchown lchown32 lgetxattr link linkat listen listxattr llistxattr _llseek
    lremovexattr lseek lsetxattr lstat lstat64 madvise membarrier memfd_create memfd_secret mincore mkdir
    mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open
    mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget
    msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open
    openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll
    ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6 pselect6_time64
    pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg
    recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir
    rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
    rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr
    sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
    sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam sched_setscheduler
    sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send sendfile sendfile64
    sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32
    setitimer setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid
    setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32
    setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn
    socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync sync_file_range
    syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun timer_gettime
    timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64
    timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink
    unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
    """
)

# Calls allowed when the container holds one capability.
_BY_CAP: tuple[tuple[Capability, str], ...] = (
    (Capability.DAC_READ_SEARCH, "open_by_handle_at"),
    (
        Capability.SYS_ADMIN,
        "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount mount_setattr "
        "move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname setns syslog "
        "umount umount2 unshare",
    ),
    (Capability.SYS_BOOT, "reboot"),
    (Capability.SYS_CHROOT, "chroot"),
    (Capability.SYS_MODULE, "delete_module init_module finit_module"),
    (Capability.SYS_PACCT, "acct"),
    (Capability.SYS_PTRACE, "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace"),
    (Capability.SYS_RAWIO, "iopl ioperm"),
    (Capability.SYS_TIME, "settimeofday stime clock_settime clock_settime64"),
    (Capability.SYS_TTY_CONFIG, "vhangup"),
    (Capability.SYS_NICE, "get_mempolicy mbind set_mempolicy set_mempolicy_home_node"),
    (Capability.SYSLOG, "syslog"),
    (Capability.BPF, "bpf"),
    (Capability.PERFMON, "perf_event_open"),
)

# Calls of one host architecture (Go names, as Docker matches them).
_BY_ARCH: tuple[tuple[tuple[str, ...], str], ...] = (
    (("ppc64le",), "sync_file_range2 swapcontext"),
    (("arm", "arm64"), "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls"),
    (("amd64", "x32"), "arch_prctl"),
    (("amd64", "x32", "x86"), "modify_ldt"),
    (("s390", "s390x"), "s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr"),
    (("riscv64",), "riscv_flush_icache"),
)

# personality(2) values that change nothing dangerous: PER_LINUX, PER_LINUX32,
# UNAME26, PER_LINUX32|UNAME26, and 0xffffffff (query).
_PERSONAS = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)


@functools.cache
def docker_default_profile() -> Profile:
    """Docker's default profile (moby ``profiles/seccomp/default.json``), for this machine's architecture."""
    allow = Action.allow()
    rules: list[Rule] = [Rule(DEFAULT_ALLOWED, allow)]
    rules.append(
        Rule(("process_vm_readv", "process_vm_writev", "ptrace"), allow, includes=Condition(min_kernel=(4, 8)))
    )
    rules.append(Rule(("socket",), allow, (ArgCmp(0, Op.NE, AF_VSOCK),)))
    rules.extend(Rule(("personality",), allow, (ArgCmp(0, Op.EQ, v),)) for v in _PERSONAS)
    rules.extend(Rule(tuple(names.split()), allow, includes=Condition(arches=arches)) for arches, names in _BY_ARCH)
    no_admin = CapabilitySet.of(Capability.SYS_ADMIN)
    for cap, names in _BY_CAP:
        rules.append(Rule(tuple(names.split()), allow, includes=Condition(caps=CapabilitySet.of(cap))))
        if cap is Capability.SYS_ADMIN:
            # Without CAP_SYS_ADMIN: clone only without namespace flags (s390 swaps
            # clone's first two arguments), and clone3 fails with ENOSYS.
            rules.append(
                Rule(
                    ("clone",),
                    allow,
                    (ArgCmp(0, Op.MASKED_EQ, CLONE_NAMESPACE_FLAGS, 0),),
                    excludes=Condition(caps=no_admin, arches=("s390", "s390x")),
                )
            )
            rules.append(
                Rule(
                    ("clone",),
                    allow,
                    (ArgCmp(1, Op.MASKED_EQ, CLONE_NAMESPACE_FLAGS, 0),),
                    includes=Condition(arches=("s390", "s390x")),
                    excludes=Condition(caps=no_admin),
                    comment="s390 parameter ordering for clone is different",
                )
            )
            rules.append(Rule(("clone3",), Action.errno(errno.ENOSYS), excludes=Condition(caps=no_admin)))
    profile = Profile(Action.errno(errno.EPERM), tuple(rules))
    profile.check_names()
    return profile
