"""Plan steps for capabilities, seccomp and dumpability, and the policy that orders them.

The steps lower to the native core's ``NSP_STEP_CAPS``, ``NSP_STEP_SECCOMP``
and ``NSP_STEP_DUMPABLE``.  :class:`SecurityPolicy` bundles the defaults
(Docker's capabilities, Docker's seccomp profile, ``no_new_privs``, a
non-dumpable setup) and returns the steps in the one order that works::

    prologue  SetDumpable(False)                 first: nothing of the container
                                                 may ptrace or open /proc/<pid>/exe
    ...       (namespaces, root file system, ...)
    epilogue  SetRlimit..., Umask                 while CAP_SYS_RESOURCE may still be there
              SetCapabilities(BOUNDING | KEEP)   bounding set, keep permitted
              SetGroups / SetGid / SetUid        still with CAP_SETGID/SETUID
              SetCapabilities(SETS)              capset + ambient, for the new uid
              NoNewPrivs
              LoadSeccomp                        last before exec
    ...       Exec
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from .._dataclass import dataclass, field, replace
from .._sys.spawn import CapsFlag, RawStep, StepKind
from ..plan import NoNewPrivs, SetRlimit, Step, Umask, credential_steps
from .capabilities import Capabilities, CapabilitySet
from .errors import SecurityConfigError

if TYPE_CHECKING:
    from .seccomp.profile import Profile
    from .seccomp.program import Program

__all__ = ["CapsPhase", "SetCapabilities", "LoadSeccomp", "SetDumpable", "SecurityPolicy"]


class CapsPhase(enum.IntFlag):
    """What one :class:`SetCapabilities` step does (``enum nsp_caps_flag`` in ``_native/nsprim.h``)."""

    BOUNDING = CapsFlag.BOUNDING  #: drop every bounding capability not in the set
    KEEP = CapsFlag.KEEP  #: PR_SET_KEEPCAPS: keep the permitted set across the coming uid switch
    SETS = CapsFlag.SETS  #: capset effective/permitted/inheritable, then the ambient set
    CLAMP = CapsFlag.CLAMP  #: skip capabilities the process itself lacks instead of failing
    ALL = BOUNDING | SETS | CLAMP


@dataclass(frozen=True)
class SetCapabilities(Step):
    """Set the five capability sets of the child (or one phase of it, see :class:`CapsPhase`)."""

    caps: Capabilities
    phase: CapsPhase = CapsPhase.ALL
    operation: ClassVar[str] = "set capabilities"

    def describe(self) -> str:
        what = "bounding set" if not self.phase & CapsPhase.SETS else "capabilities"
        return f"set {what} to [{self.caps.describe()}]"

    def lower(self) -> RawStep:
        return RawStep(StepKind.CAPS, flags=int(self.phase), ints=self.caps.clamped().to_ints())


@dataclass(frozen=True)
class LoadSeccomp(Step):
    """Install a compiled seccomp filter; ``flags`` are ``SECCOMP_FILTER_FLAG_*``.

    Without ``no_new_privs`` the kernel wants ``CAP_SYS_ADMIN`` for this, so
    the step must then come before the capabilities are dropped.
    """

    program: Program
    flags: int = 0
    operation: ClassVar[str] = "seccomp"

    def describe(self) -> str:
        return f"load seccomp filter ({len(self.program)} instructions)"

    def lower(self) -> RawStep:
        return RawStep(StepKind.SECCOMP, flags=self.flags, a=len(self.program), str=self.program.to_bytes())


@dataclass(frozen=True)
class SetDumpable(Step):
    """prctl(PR_SET_DUMPABLE): a non-dumpable process cannot be ptraced, and its
    ``/proc/<pid>`` files (``exe``, ``mem``, ``fd``) belong to root; ``exec``
    makes the payload dumpable again."""

    dumpable: bool = False
    operation: ClassVar[str] = "prctl PR_SET_DUMPABLE"

    def describe(self) -> str:
        return f"prctl PR_SET_DUMPABLE {int(self.dumpable)}"

    def lower(self) -> RawStep:
        return RawStep(StepKind.DUMPABLE, a=int(self.dumpable))


@functools.lru_cache(maxsize=64)
def _compiled(profile: Profile, bounding: CapabilitySet) -> Program:
    """Compile once per (profile, capabilities): profiles are immutable and hashable."""
    from .seccomp.bpf import compile_profile

    return compile_profile(profile, caps=bounding)


def _oci_rlimit(lim: object, where: str) -> tuple[int, int, int]:
    import resource

    if not isinstance(lim, Mapping):
        raise SecurityConfigError(f"{where}: expected an object", what=where)
    name = lim.get("type")
    res = getattr(resource, str(name), None) if isinstance(name, str) and name.startswith("RLIMIT_") else None
    if not isinstance(res, int):
        raise SecurityConfigError(f"{where}.type: unknown rlimit `{name}`", what=f"{where}.type")
    values = []
    for key in ("soft", "hard"):
        v = lim.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise SecurityConfigError(f"{where}.{key}: expected an unsigned integer", what=f"{where}.{key}")
        values.append(-1 if v >= (1 << 64) - 1 else v)
    return res, values[0], values[1]


def _default_caps() -> Capabilities:
    return Capabilities.docker_default()


def _is_filter(value: object) -> bool:
    # Imported here: a policy without a filter does not import the compiler, nor
    # one with a compiled program the profile model (and the system call tables).
    from .seccomp.program import Program

    if isinstance(value, Program):
        return True
    from .seccomp.profile import Profile

    return isinstance(value, Profile)


def _default_seccomp() -> Profile:
    from .seccomp.default import docker_default_profile

    return docker_default_profile()


@dataclass(frozen=True)
class SecurityPolicy:
    """What a container's payload may do: capabilities, seccomp, ``no_new_privs``.

    The defaults are Docker's.  ``seccomp=None`` disables the filter (as
    ``--security-opt seccomp=unconfined``); a :class:`Profile` is compiled
    for this machine's architecture, with ``includes``/``excludes`` resolved
    against :attr:`caps`.  ``dumpable=False`` keeps the setup process
    non-dumpable until ``exec``.
    """

    caps: Capabilities = field(default_factory=_default_caps)
    seccomp: Profile | Program | None = field(default_factory=_default_seccomp)
    no_new_privs: bool = True
    dumpable: bool = False
    clamp_caps: bool = True
    seccomp_flags: int = 0
    #: ``(resource, soft, hard)`` for setrlimit(2), applied before the capabilities drop (-1: unlimited)
    rlimits: tuple[tuple[int, int, int], ...] = ()
    #: the payload's umask (Docker's is 0o022); ``None`` keeps the caller's
    umask: int | None = 0o022

    def __post_init__(self) -> None:
        # A wrong type would otherwise fail only while the plan is built, as a TypeError.
        if not isinstance(self.caps, Capabilities):
            raise SecurityConfigError(f"caps: expected Capabilities, got {type(self.caps).__name__}", what="caps")
        if self.seccomp is not None and not _is_filter(self.seccomp):
            kind = type(self.seccomp).__name__
            raise SecurityConfigError(f"seccomp: expected a Profile, a Program or None, got {kind}", what="seccomp")
        if isinstance(self.seccomp_flags, bool) or not isinstance(self.seccomp_flags, int) or self.seccomp_flags < 0:
            raise SecurityConfigError(f"seccomp_flags: expected filter flags, got {self.seccomp_flags!r}", what="flags")
        if self.umask is not None and (not isinstance(self.umask, int) or not 0 <= self.umask <= 0o777):
            raise SecurityConfigError(f"umask: expected 0 to 0o777 or None, got {self.umask!r}", what="umask")

    @classmethod
    def from_oci(
        cls, process_object: Mapping[str, object], linux_object: Mapping[str, object] | None = None
    ) -> SecurityPolicy:
        """From an OCI bundle's ``process`` and ``linux`` objects (``config.json``).

        ``process.capabilities`` (absent: none, as the spec says), ``process.noNewPrivileges``,
        ``process.rlimits`` and ``linux.seccomp`` (absent: no filter).
        """
        # each value is checked where it is parsed
        process: Mapping[str, Any] = process_object
        linux: Mapping[str, Any] | None = linux_object
        caps = Capabilities.from_oci(process.get("capabilities") or {})
        seccomp: Profile | None = None
        if linux and linux.get("seccomp"):
            from .seccomp.parse import parse_profile

            seccomp = parse_profile(linux["seccomp"])
        rlimits: list[tuple[int, int, int]] = []
        for i, lim in enumerate(process.get("rlimits") or []):
            rlimits.append(_oci_rlimit(lim, f"process.rlimits[{i}]"))
        return cls(caps, seccomp, bool(process.get("noNewPrivileges", False)), rlimits=tuple(rlimits), umask=None)

    def unconfined(self) -> SecurityPolicy:
        """The same policy without seccomp, with every capability, and without ``no_new_privs``."""
        return replace(self, caps=Capabilities.all(), seccomp=None, no_new_privs=False)

    def program(self) -> Program | None:
        """The seccomp program, compiled for :attr:`caps` (cached per profile and capabilities)."""
        from .seccomp.program import Program

        if self.seccomp is None or isinstance(self.seccomp, Program):
            return self.seccomp
        return _compiled(self.seccomp, self.caps.bounding)

    def prologue(self) -> tuple[Step, ...]:
        """Steps for the very start of the plan."""
        return () if self.dumpable else (SetDumpable(False),)

    def epilogue(
        self,
        *,
        uid: int | None = None,
        gid: int | None = None,
        groups: Sequence[int] | None = None,
        program: Program | None = None,
    ) -> tuple[Step, ...]:
        """Steps for the end of the plan, right before ``Chdir``/``Exec``.

        They include the switch to *groups*, *gid* and *uid* (do not add
        those steps again): dropping capabilities and switching users must
        interleave.  Pass a precompiled *program* to skip compiling.
        """
        caps = self.caps.for_user(uid if uid is not None else 0)
        clamp = CapsPhase.CLAMP if self.clamp_caps else CapsPhase(0)
        prog = program if program is not None else self.program()
        # A Profile carries its filter flags; a compiled Program has none.
        flags = self.seccomp_flags | getattr(self.seccomp, "flags", 0)
        steps: list[Step] = [SetRlimit(res, soft, hard) for res, soft, hard in self.rlimits]
        if self.umask is not None:
            steps.append(Umask(self.umask))
        steps.append(SetCapabilities(caps, CapsPhase.BOUNDING | CapsPhase.KEEP))
        if prog is not None and not self.no_new_privs:
            # Without no_new_privs the filter needs CAP_SYS_ADMIN: load it while
            # the setup still has it (the filter then sees the rest of the setup).
            steps.append(LoadSeccomp(prog, flags))
        steps += credential_steps(uid, gid, groups)
        steps.append(SetCapabilities(caps, CapsPhase.SETS | clamp))
        if self.no_new_privs:
            steps.append(NoNewPrivs())
            if prog is not None:
                steps.append(LoadSeccomp(prog, flags))
        return tuple(steps)

    def steps(
        self,
        *,
        uid: int | None = None,
        gid: int | None = None,
        groups: Sequence[int] | None = None,
        program: Program | None = None,
    ) -> tuple[Step, ...]:
        """:meth:`prologue` + :meth:`epilogue`, for a plan with nothing in between."""
        return self.prologue() + self.epilogue(uid=uid, gid=gid, groups=groups, program=program)
