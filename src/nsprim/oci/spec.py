"""The OCI runtime specification's ``config.json``, as typed values.

Runtime-spec 1.0 through 1.3 (the Linux parts).  Classes and fields are named
after the spec's own Go bindings (``specs-go``), in Python spelling:
``linux.uidMappings`` is ``Spec.linux.uid_mappings``.  Loading validates types
and ranges and names the field of any error::

    Spec.from_dict({"ociVersion": "1.2.0", "linux": {"namespaces": [{"type": "nett"}]}})
    # SpecError: linux.namespaces[0].type: unknown namespace type "nett" (one of "pid", ...)

Fields the model does not know are kept (``extra``) and written back by
:meth:`Spec.to_dict`, so load + dump changes nothing but layout.  Whether nsprim
can *honour* a spec is a separate question, answered by the runtime, which
refuses by name what it cannot do.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping
from pathlib import Path

from ..errors import SpecError
from ._codec import JSON, Model, decode, encode, enum_label, spec_field
from .runtime import jsonio  # the C codec alone (the json package costs ~1 ms to import)

__all__ = [
    "SPEC_VERSION",
    "Spec",
    "Process",
    "User",
    "Box",
    "LinuxCapabilities",
    "POSIXRlimit",
    "Scheduler",
    "LinuxIOPriority",
    "CPUAffinity",
    "Root",
    "Mount",
    "LinuxIDMapping",
    "Hook",
    "Hooks",
    "Linux",
    "LinuxNamespace",
    "LinuxNamespaceType",
    "LinuxTimeOffset",
    "LinuxDevice",
    "LinuxNetDevice",
    "LinuxDeviceCgroup",
    "LinuxResources",
    "LinuxMemory",
    "LinuxCPU",
    "LinuxPids",
    "LinuxBlockIO",
    "LinuxWeightDevice",
    "LinuxThrottleDevice",
    "LinuxHugepageLimit",
    "LinuxNetwork",
    "LinuxInterfacePriority",
    "LinuxRdma",
    "LinuxSeccomp",
    "LinuxSeccompAction",
    "LinuxSeccompOperator",
    "LinuxSyscall",
    "LinuxSeccompArg",
    "LinuxIntelRdt",
    "LinuxMemoryPolicy",
    "LinuxPersonality",
]

#: The newest runtime-spec version this model knows.
SPEC_VERSION = "1.3.0"

_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


@enum_label("namespace type")
class LinuxNamespaceType(str, enum.Enum):
    """A namespace type as config.json names it."""

    PID = "pid"
    NETWORK = "network"
    MOUNT = "mount"
    IPC = "ipc"
    UTS = "uts"
    USER = "user"
    CGROUP = "cgroup"
    TIME = "time"


@enum_label("seccomp action")
class LinuxSeccompAction(str, enum.Enum):
    KILL = "SCMP_ACT_KILL"
    KILL_PROCESS = "SCMP_ACT_KILL_PROCESS"
    KILL_THREAD = "SCMP_ACT_KILL_THREAD"
    TRAP = "SCMP_ACT_TRAP"
    ERRNO = "SCMP_ACT_ERRNO"
    TRACE = "SCMP_ACT_TRACE"
    ALLOW = "SCMP_ACT_ALLOW"
    LOG = "SCMP_ACT_LOG"
    NOTIFY = "SCMP_ACT_NOTIFY"


@enum_label("seccomp operator")
class LinuxSeccompOperator(str, enum.Enum):
    NE = "SCMP_CMP_NE"
    LT = "SCMP_CMP_LT"
    LE = "SCMP_CMP_LE"
    EQ = "SCMP_CMP_EQ"
    GE = "SCMP_CMP_GE"
    GT = "SCMP_CMP_GT"
    MASKED_EQ = "SCMP_CMP_MASKED_EQ"


# ---- process ---------------------------------------------------------------------------------


class Box(Model):
    """A terminal's size (``process.consoleSize``)."""

    height: int = spec_field(kind="u32", required=True)
    width: int = spec_field(kind="u32", required=True)
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class User(Model):
    """``process.user``: the ids the process runs as."""

    uid: int = spec_field(default=0, kind="u32", required=True)
    gid: int = spec_field(default=0, kind="u32", required=True)
    umask: int | None = spec_field(default=None, kind="u32")
    additional_gids: tuple[int, ...] = spec_field(default=(), kind="u32")
    username: str = spec_field(default="")
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class LinuxCapabilities(Model):
    """``process.capabilities``: the five capability sets, by ``CAP_*`` name."""

    bounding: tuple[str, ...] = ()
    effective: tuple[str, ...] = ()
    inheritable: tuple[str, ...] = ()
    permitted: tuple[str, ...] = ()
    ambient: tuple[str, ...] = ()
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class POSIXRlimit(Model):
    """One of ``process.rlimits``: ``type`` is ``RLIMIT_*``."""

    type: str = spec_field(required=True)
    hard: int = spec_field(kind="u64", required=True)
    soft: int = spec_field(kind="u64", required=True)
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class Scheduler(Model):
    """``process.scheduler``: ``sched_setattr(2)`` parameters."""

    policy: str = spec_field(required=True)
    nice: int = spec_field(default=0, kind="i32")
    priority: int = spec_field(default=0, kind="i32")
    flags: tuple[str, ...] = ()
    runtime: int = spec_field(default=0, kind="u64")
    deadline: int = spec_field(default=0, kind="u64")
    period: int = spec_field(default=0, kind="u64")
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class LinuxIOPriority(Model):
    """``process.ioPriority``: ``ioprio_set(2)`` class and level."""

    class_: str = spec_field(key="class", required=True)
    priority: int = spec_field(default=0, kind="i32", required=True)
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class CPUAffinity(Model):
    """``process.execCPUAffinity``: CPU lists before and after exec."""

    initial: str = ""
    final: str = ""
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class Process(Model):
    """``process``: what runs in the container, and how."""

    terminal: bool = False
    console_size: Box | None = None
    user: User = spec_field(default=User(), required=True)
    args: tuple[str, ...] = ()
    command_line: str = ""
    env: tuple[str, ...] = ()
    cwd: str = spec_field(default="/", required=True)
    capabilities: LinuxCapabilities | None = None
    rlimits: tuple[POSIXRlimit, ...] = ()
    no_new_privileges: bool = False
    apparmor_profile: str = ""
    oom_score_adj: int | None = spec_field(default=None, kind="i32")
    scheduler: Scheduler | None = None
    selinux_label: str = ""
    io_priority: LinuxIOPriority | None = None
    exec_cpu_affinity: CPUAffinity | None = spec_field(default=None, key="execCPUAffinity")
    extra: Mapping[str, JSON] = spec_field(factory=dict)

    @classmethod
    def from_dict(cls, data: object, path: str = "process") -> Process:
        """A process from its JSON object (``exec --process FILE`` reads one alone)."""
        return decode(cls, data, path)

    def to_dict(self) -> dict[str, JSON]:
        return encode(self)


# ---- root, mounts, hooks -------------------------------------------------------------------


class Root(Model):
    """``root``: the container's root file system, relative to the bundle or absolute."""

    path: str = spec_field(required=True)
    readonly: bool = False
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class LinuxIDMapping(Model):
    """One range of ``uidMappings``/``gidMappings``."""

    container_id: int = spec_field(key="containerID", kind="u32", required=True)
    host_id: int = spec_field(key="hostID", kind="u32", required=True)
    size: int = spec_field(kind="u32", required=True)
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class Mount(Model):
    """One of ``mounts``: ``options`` as ``mount(8)`` takes them, plus ``bind``/``rbind``,
    ``rro``, propagation and ``idmap``/``ridmap``."""

    destination: str = spec_field(required=True)
    type: str = ""
    source: str = ""
    options: tuple[str, ...] = ()
    uid_mappings: tuple[LinuxIDMapping, ...] = ()
    gid_mappings: tuple[LinuxIDMapping, ...] = ()
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class Hook(Model):
    """A program the runtime runs at a point of the life cycle, with the state on stdin."""

    path: str = spec_field(required=True)
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    timeout: int | None = spec_field(default=None, kind="i64")
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class Hooks(Model):
    """``hooks``: the six kinds, each run in order."""

    prestart: tuple[Hook, ...] = ()
    create_runtime: tuple[Hook, ...] = ()
    create_container: tuple[Hook, ...] = ()
    start_container: tuple[Hook, ...] = ()
    poststart: tuple[Hook, ...] = ()
    poststop: tuple[Hook, ...] = ()
    extra: Mapping[str, JSON] = spec_field(factory=dict)


# ---- linux -----------------------------------------------------------------------------------


class LinuxNamespace(Model):
    """One of ``linux.namespaces``: a new one, or the one at ``path`` to join."""

    type: LinuxNamespaceType = spec_field(required=True)
    path: str = ""
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class LinuxTimeOffset(Model):
    """An offset of a time namespace's clock (``linux.timeOffsets``)."""

    secs: int = spec_field(default=0, kind="i64")
    nanosecs: int = spec_field(default=0, kind="u32")
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class LinuxDevice(Model):
    """One of ``linux.devices``: a node made in the container's ``/dev``."""

    path: str = spec_field(required=True)
    type: str = spec_field(required=True)
    major: int = spec_field(default=0, kind="i64")
    minor: int = spec_field(default=0, kind="i64")
    file_mode: int | None = spec_field(default=None, kind="u32")
    uid: int | None = spec_field(default=None, kind="u32")
    gid: int | None = spec_field(default=None, kind="u32")
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class LinuxNetDevice(Model):
    """One of ``linux.netDevices``: a host interface moved into the container."""

    name: str = ""
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class LinuxDeviceCgroup(Model):
    """A device cgroup rule (``linux.resources.devices``)."""

    allow: bool = spec_field(default=False, required=True)
    type: str = ""
    major: int | None = spec_field(default=None, kind="i64")
    minor: int | None = spec_field(default=None, kind="i64")
    access: str = ""
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class LinuxMemory(Model):
    limit: int | None = spec_field(default=None, kind="i64")
    reservation: int | None = spec_field(default=None, kind="i64")
    swap: int | None = spec_field(default=None, kind="i64")
    kernel: int | None = spec_field(default=None, kind="i64")
    kernel_tcp: int | None = spec_field(default=None, key="kernelTCP", kind="i64")
    swappiness: int | None = spec_field(default=None, kind="u64")
    disable_oom_killer: bool | None = spec_field(default=None, key="disableOOMKiller")
    use_hierarchy: bool | None = None
    check_before_update: bool | None = None
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class LinuxCPU(Model):
    shares: int | None = spec_field(default=None, kind="u64")
    quota: int | None = spec_field(default=None, kind="i64")
    burst: int | None = spec_field(default=None, kind="u64")
    period: int | None = spec_field(default=None, kind="u64")
    realtime_runtime: int | None = spec_field(default=None, kind="i64")
    realtime_period: int | None = spec_field(default=None, kind="u64")
    cpus: str = ""
    mems: str = ""
    idle: int | None = spec_field(default=None, kind="i64")
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class LinuxPids(Model):
    limit: int | None = spec_field(default=None, kind="i64")
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class LinuxWeightDevice(Model):
    major: int = spec_field(kind="i64", required=True)
    minor: int = spec_field(kind="i64", required=True)
    weight: int | None = spec_field(default=None, kind="u16")
    leaf_weight: int | None = spec_field(default=None, kind="u16")
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class LinuxThrottleDevice(Model):
    major: int = spec_field(kind="i64", required=True)
    minor: int = spec_field(kind="i64", required=True)
    rate: int = spec_field(kind="u64", required=True)
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class LinuxBlockIO(Model):
    weight: int | None = spec_field(default=None, kind="u16")
    leaf_weight: int | None = spec_field(default=None, kind="u16")
    weight_device: tuple[LinuxWeightDevice, ...] = ()
    throttle_read_bps_device: tuple[LinuxThrottleDevice, ...] = ()
    throttle_write_bps_device: tuple[LinuxThrottleDevice, ...] = ()
    throttle_read_iops_device: tuple[LinuxThrottleDevice, ...] = spec_field(default=(), key="throttleReadIOPSDevice")
    throttle_write_iops_device: tuple[LinuxThrottleDevice, ...] = spec_field(default=(), key="throttleWriteIOPSDevice")
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class LinuxHugepageLimit(Model):
    page_size: str = spec_field(required=True)
    limit: int = spec_field(kind="u64", required=True)
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class LinuxInterfacePriority(Model):
    name: str = spec_field(required=True)
    priority: int = spec_field(kind="u32", required=True)
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class LinuxNetwork(Model):
    class_id: int | None = spec_field(default=None, key="classID", kind="u32")
    priorities: tuple[LinuxInterfacePriority, ...] = ()
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class LinuxRdma(Model):
    hca_handles: int | None = spec_field(default=None, kind="u32")
    hca_objects: int | None = spec_field(default=None, kind="u32")
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class LinuxResources(Model):
    """``linux.resources``: the container's cgroup limits."""

    devices: tuple[LinuxDeviceCgroup, ...] = ()
    memory: LinuxMemory | None = None
    cpu: LinuxCPU | None = None
    pids: LinuxPids | None = None
    block_io: LinuxBlockIO | None = spec_field(default=None, key="blockIO")
    hugepage_limits: tuple[LinuxHugepageLimit, ...] = ()
    network: LinuxNetwork | None = None
    rdma: Mapping[str, LinuxRdma] = spec_field(factory=dict)
    unified: Mapping[str, str] = spec_field(factory=dict)
    extra: Mapping[str, JSON] = spec_field(factory=dict)

    @classmethod
    def from_dict(cls, data: object, path: str = "linux.resources") -> LinuxResources:
        """Resources from their JSON object (``update --resources FILE`` reads one alone)."""
        return decode(cls, data, path)

    def to_dict(self) -> dict[str, JSON]:
        return encode(self)


class LinuxSeccompArg(Model):
    index: int = spec_field(kind="u32", required=True)
    value: int = spec_field(kind="u64", required=True)
    value_two: int = spec_field(default=0, kind="u64")
    op: LinuxSeccompOperator = spec_field(required=True)
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class LinuxSyscall(Model):
    names: tuple[str, ...] = spec_field(required=True)
    action: LinuxSeccompAction = spec_field(required=True)
    errno_ret: int | None = spec_field(default=None, kind="u32")
    args: tuple[LinuxSeccompArg, ...] = ()
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class LinuxSeccomp(Model):
    """``linux.seccomp``: a system call filter, in libseccomp's terms."""

    default_action: LinuxSeccompAction = spec_field(required=True)
    default_errno_ret: int | None = spec_field(default=None, kind="u32")
    architectures: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    listener_path: str = ""
    listener_metadata: str = ""
    syscalls: tuple[LinuxSyscall, ...] = ()
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class LinuxIntelRdt(Model):
    clos_id: str = spec_field(default="", key="closID")
    schemata: tuple[str, ...] = ()
    l3_cache_schema: str = ""
    mem_bw_schema: str = ""
    enable_monitoring: bool = False
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class LinuxMemoryPolicy(Model):
    mode: str = spec_field(required=True)
    nodes: str = ""
    flags: tuple[str, ...] = ()
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class LinuxPersonality(Model):
    domain: str = spec_field(required=True)
    flags: tuple[str, ...] = ()
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class Linux(Model):
    """``linux``: namespaces, id maps, cgroups, devices and the kernel's security knobs."""

    uid_mappings: tuple[LinuxIDMapping, ...] = ()
    gid_mappings: tuple[LinuxIDMapping, ...] = ()
    sysctl: Mapping[str, str] = spec_field(factory=dict)
    resources: LinuxResources | None = None
    cgroups_path: str = ""
    namespaces: tuple[LinuxNamespace, ...] = ()
    devices: tuple[LinuxDevice, ...] = ()
    net_devices: Mapping[str, LinuxNetDevice] = spec_field(factory=dict)
    seccomp: LinuxSeccomp | None = None
    rootfs_propagation: str = ""
    masked_paths: tuple[str, ...] = ()
    readonly_paths: tuple[str, ...] = ()
    mount_label: str = ""
    intel_rdt: LinuxIntelRdt | None = None
    memory_policy: LinuxMemoryPolicy | None = None
    personality: LinuxPersonality | None = None
    time_offsets: Mapping[str, LinuxTimeOffset] = spec_field(factory=dict)
    extra: Mapping[str, JSON] = spec_field(factory=dict)

    def namespace(self, kind: LinuxNamespaceType) -> LinuxNamespace | None:
        """The entry for namespace type *kind*, if the spec names one."""
        return next((ns for ns in self.namespaces if ns.type is kind), None)


# ---- the document ------------------------------------------------------------------------------


class Spec(Model):
    """A whole ``config.json``."""

    oci_version: str = spec_field(default=SPEC_VERSION, key="ociVersion", required=True)
    process: Process | None = None
    root: Root | None = None
    hostname: str = ""
    domainname: str = ""
    mounts: tuple[Mount, ...] = ()
    hooks: Hooks | None = None
    annotations: Mapping[str, str] = spec_field(factory=dict)
    linux: Linux | None = None
    extra: Mapping[str, JSON] = spec_field(factory=dict)

    @classmethod
    def from_dict(cls, data: object) -> Spec:
        """Validate and build a spec from parsed JSON; :class:`SpecError` names the bad field."""
        spec = decode(cls, data)
        _check_version(spec.oci_version)
        return spec

    @classmethod
    def loads(cls, text: str | bytes, *, source: str = "config.json") -> Spec:
        """Parse JSON text; malformed JSON is a :class:`SpecError` with line and column."""
        try:
            data = _parse_json(text)
        except (RecursionError, UnicodeDecodeError) as exc:
            raise SpecError(f"parse `{source}`: {type(exc).__name__}: {exc}") from None
        except ValueError as exc:
            import json

            if not isinstance(exc, json.JSONDecodeError):
                raise
            raise SpecError(f"parse `{source}`: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Spec:
        """Load ``config.json``, or ``config.json`` of a bundle directory."""
        p = Path(path)
        if p.is_dir():
            p = p / "config.json"
        try:
            text = p.read_bytes()
        except OSError as exc:
            raise SpecError(f"open `{p}`: {exc.strerror}") from None
        return cls.loads(text, source=str(p))

    def to_dict(self) -> dict[str, JSON]:
        """The JSON object, as the spec's bindings write it, unknown fields included."""
        return encode(self)

    def dumps(self, *, indent: int | None = 2) -> str:
        return jsonio.dumps(self.to_dict(), indent=indent)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``config.json`` atomically (a concurrent reader never sees half of it)."""
        p = Path(path)
        if p.is_dir():
            p = p / "config.json"
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(self.dumps() + "\n")
            os.replace(tmp, p)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise SpecError(f"write `{p}`: {exc.strerror}") from None


def _check_version(version: str) -> None:
    m = _VERSION.match(version)
    if m is None:
        raise SpecError(f'ociVersion: "{version}" is not a version (MAJOR.MINOR.PATCH)', field="ociVersion")
    if int(m.group(1)) != 1:
        raise SpecError(
            f'ociVersion: "{version}" is not supported (this runtime implements 1.0.0 to {SPEC_VERSION})',
            field="ociVersion",
        )


def _parse_json(text: str | bytes) -> object:
    """``json.loads(text)``, through the C scanner alone where the text is UTF-8 (as ``json`` detects
    it: no byte-order mark, no NUL in the first four bytes): the ``json`` package costs ~1 ms to import."""
    boms = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
    if isinstance(text, bytes) and not text.startswith(boms) and b"\x00" not in text[:4]:
        text = text.decode("utf-8", "surrogatepass")
    if isinstance(text, str):
        return jsonio.loads(text)
    import json

    return json.loads(text)
