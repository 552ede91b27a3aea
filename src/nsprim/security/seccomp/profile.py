"""The seccomp profile model: actions, argument comparisons, rules, profiles.

A :class:`Profile` is what Docker's and the OCI runtime-spec's JSON describe
(see :mod:`.parse`), as frozen dataclasses.  Its meaning, which the BPF
compiler (:mod:`.bpf`) implements and :meth:`Profile.evaluate` states
directly:

1. a system call of an architecture the profile does not list (or of the x32
   ABI: bit 30 set in the number, except for -1) gets
   :attr:`Profile.foreign_action` (kill the process);
2. the rules are tried in order; a rule applies when it names the call and
   all its argument comparisons hold; the first that applies decides.  A
   rule whose action is the default action decides too: it keeps a call
   from reaching a later rule (``Seccomp.default().denying("uname")``
   denies ``uname`` with ``EPERM``, the default's own errno, although a
   later rule allows it);
3. with :attr:`Profile.enosys_newer`, a call numbered above every call the
   rules name for that architecture fails with ``ENOSYS`` (a newer call the
   profile cannot know about: the C library then falls back, as runc does);
4. otherwise :attr:`Profile.default_action`.

``includes``/``excludes`` (Docker's form) make a rule depend on the
container's capabilities, the host's architecture or the kernel version;
:meth:`Profile.resolve` removes them for one container.
"""

from __future__ import annotations

import enum
import errno as _errno
import os
import re
from collections.abc import Iterable, Sequence

from ..._dataclass import dataclass, field, replace
from ..capabilities import Capability, CapabilitySet
from ..errors import SeccompProfileError, UnknownSyscallError
from .arch import Arch, get_arch, known_syscall, native_arch

__all__ = ["ActionKind", "Action", "Op", "ArgCmp", "Condition", "Rule", "Profile", "kernel_version"]

U64 = (1 << 64) - 1


class ActionKind(enum.IntEnum):
    """``SECCOMP_RET_*`` action values (the high 16 bits of a filter's result)."""

    KILL_PROCESS = 0x80000000
    KILL_THREAD = 0x00000000
    TRAP = 0x00030000
    ERRNO = 0x00050000
    USER_NOTIF = 0x7FC00000
    TRACE = 0x7FF00000
    LOG = 0x7FFC0000
    ALLOW = 0x7FFF0000


_SCMP_ACTIONS = {
    "SCMP_ACT_KILL": ActionKind.KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": ActionKind.KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": ActionKind.KILL_PROCESS,
    "SCMP_ACT_TRAP": ActionKind.TRAP,
    "SCMP_ACT_ERRNO": ActionKind.ERRNO,
    "SCMP_ACT_TRACE": ActionKind.TRACE,
    "SCMP_ACT_LOG": ActionKind.LOG,
    "SCMP_ACT_ALLOW": ActionKind.ALLOW,
    "SCMP_ACT_NOTIFY": ActionKind.USER_NOTIF,
}


@dataclass(frozen=True)
class Action:
    """A filter result: a kind and its 16-bit data (the errno for ``ERRNO``)."""

    kind: ActionKind
    data: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.kind, ActionKind):
            raise SeccompProfileError("action", f"expected an ActionKind, got {type(self.kind).__name__}")
        if isinstance(self.data, bool) or not isinstance(self.data, int) or not 0 <= self.data <= 0xFFFF:
            raise SeccompProfileError("action", f"action data (an errno) must be 0..65535, not {self.data!r:.40}")

    @classmethod
    def allow(cls) -> Action:
        """Let the call run."""
        return cls(ActionKind.ALLOW)

    @classmethod
    def errno(cls, err: int = _errno.EPERM) -> Action:
        """Fail the call with *err* without running it."""
        return cls(ActionKind.ERRNO, err)

    @classmethod
    def kill_process(cls) -> Action:
        """Kill the whole process with SIGSYS."""
        return cls(ActionKind.KILL_PROCESS)

    @classmethod
    def parse(cls, name: str, errno_ret: int | None = None, *, where: str = "action") -> Action:
        """From a libseccomp name (``SCMP_ACT_ERRNO``) and an optional ``errnoRet``."""
        kind = _SCMP_ACTIONS.get(name.strip().upper()) if isinstance(name, str) else None
        if kind is None:
            raise SeccompProfileError(where, f"unknown action `{name}`")
        if kind is ActionKind.USER_NOTIF:
            raise SeccompProfileError(where, "SCMP_ACT_NOTIFY needs a seccomp agent, which nsprim does not run")
        if kind in (ActionKind.ERRNO, ActionKind.TRACE):
            return cls(kind, _errno.EPERM if errno_ret is None else errno_ret)
        return cls(kind)

    @property
    def ret(self) -> int:
        """The 32-bit value a filter returns for this action."""
        return int(self.kind) | self.data

    @property
    def scmp_name(self) -> str:
        """The libseccomp spelling of the kind."""
        return {v: k for k, v in _SCMP_ACTIONS.items() if k != "SCMP_ACT_KILL"}[self.kind]

    def __str__(self) -> str:
        if self.kind is ActionKind.ERRNO:
            return f"errno({_errno.errorcode.get(self.data, self.data)})"
        return self.kind.name.lower()


class Op(enum.Enum):
    """Argument comparisons (libseccomp's ``SCMP_CMP_*``), on unsigned 64-bit values."""

    NE = "SCMP_CMP_NE"
    LT = "SCMP_CMP_LT"
    LE = "SCMP_CMP_LE"
    EQ = "SCMP_CMP_EQ"
    GE = "SCMP_CMP_GE"
    GT = "SCMP_CMP_GT"
    MASKED_EQ = "SCMP_CMP_MASKED_EQ"

    @classmethod
    def parse(cls, name: object, where: str) -> Op:
        """From ``SCMP_CMP_EQ`` (or ``EQ``, ``==``)."""
        if isinstance(name, str):
            key = name.strip().upper()
            for op in cls:
                if key in (op.value, op.name):
                    return op
            symbols = {"!=": cls.NE, "<": cls.LT, "<=": cls.LE, "==": cls.EQ, ">=": cls.GE, ">": cls.GT}
            if key in symbols:
                return symbols[key]
        raise SeccompProfileError(where, f"unknown operator `{name}`")


@dataclass(frozen=True)
class ArgCmp:
    """``args[index] <op> value``; for ``MASKED_EQ``: ``args[index] & value == value_two & value``
    (the mask applies to both sides, as in libseccomp)."""

    index: int
    op: Op
    value: int
    value_two: int = 0

    def __post_init__(self) -> None:
        if not _is_int(self.index) or not 0 <= self.index <= 5:
            raise SeccompProfileError("index", f"argument index {self.index!r} out of range 0..5")
        if not isinstance(self.op, Op):
            raise SeccompProfileError("op", f"expected an Op, got {type(self.op).__name__}")
        for v in (self.value, self.value_two):
            if not _is_int(v) or not 0 <= v <= U64:
                raise SeccompProfileError("value", f"argument value {v} out of the unsigned 64-bit range")

    def matches(self, args: Sequence[int]) -> bool:
        """Evaluate against six 64-bit argument values."""
        a = args[self.index] & U64
        v = self.value
        if self.op is Op.NE:
            return a != v
        if self.op is Op.LT:
            return a < v
        if self.op is Op.LE:
            return a <= v
        if self.op is Op.EQ:
            return a == v
        if self.op is Op.GE:
            return a >= v
        if self.op is Op.GT:
            return a > v
        return a & v == self.value_two & v  # libseccomp masks the datum too


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def kernel_version(release: str | None = None) -> tuple[int, int]:
    """``(major, minor)`` of *release* (default: the running kernel); ``(0, 0)`` if it is none."""
    text = release if release is not None else os.uname().release
    m = re.match(r"(\d{1,9})\.(\d{1,9})(?!\d)", text) if isinstance(text, str) else None
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


@dataclass(frozen=True)
class Condition:
    """Docker's ``includes``/``excludes``: capabilities, host architectures, minimum kernel."""

    caps: CapabilitySet = field(default_factory=CapabilitySet)
    arches: tuple[str, ...] = ()
    min_kernel: tuple[int, int] | None = None

    def is_empty(self) -> bool:
        """Whether the condition names nothing."""
        return not self.caps and not self.arches and self.min_kernel is None


@dataclass(frozen=True)
class Rule:
    """An action for the calls in *names* when every comparison in *args* holds."""

    names: tuple[str, ...]
    action: Action
    args: tuple[ArgCmp, ...] = ()
    includes: Condition | None = None
    excludes: Condition | None = None
    comment: str = ""

    def __post_init__(self) -> None:
        # A bare string would be taken for its letters, each an unknown call: refuse it.
        if not isinstance(self.names, tuple) or not all(isinstance(n, str) and n for n in self.names):
            raise SeccompProfileError("names", f"expected a tuple of system call names, got {self.names!r:.60}")
        if not isinstance(self.action, Action):
            raise SeccompProfileError("action", f"expected an Action, got {type(self.action).__name__}")
        if not isinstance(self.args, tuple) or not all(isinstance(a, ArgCmp) for a in self.args):
            raise SeccompProfileError("args", f"expected a tuple of ArgCmp, got {self.args!r:.60}")
        for cond in (self.includes, self.excludes):
            if cond is not None and not isinstance(cond, Condition):
                raise SeccompProfileError("includes", f"expected a Condition, got {type(cond).__name__}")

    def matches_args(self, args: Sequence[int]) -> bool:
        """Whether all argument comparisons hold."""
        return all(c.matches(args) for c in self.args)

    def applies(self, caps: CapabilitySet, arch: Arch, kernel: tuple[int, int]) -> bool:
        """Whether Docker's includes/excludes keep this rule for a container."""
        inc, exc = self.includes, self.excludes
        if inc is not None:
            if inc.caps and inc.caps.mask & ~caps.mask:
                return False
            if inc.arches and not any(a in arch.go_names or a == arch.name for a in inc.arches):
                return False
            if inc.min_kernel is not None and kernel < inc.min_kernel:
                return False
        if exc is not None:
            if exc.caps and exc.caps.mask & caps.mask == exc.caps.mask:
                return False
            if exc.arches and any(a in arch.go_names or a == arch.name for a in exc.arches):
                return False
            if exc.min_kernel is not None and kernel >= exc.min_kernel:
                return False
        return True


@dataclass(frozen=True)
class Profile:
    """A whole seccomp policy.  ``architectures`` empty means this machine's."""

    default_action: Action
    rules: tuple[Rule, ...] = ()
    architectures: tuple[str, ...] = ()
    foreign_action: Action = field(default_factory=Action.kill_process)
    enosys_newer: bool = True
    flags: int = 0

    def __post_init__(self) -> None:
        for what, action in (("defaultAction", self.default_action), ("foreign_action", self.foreign_action)):
            if not isinstance(action, Action):
                raise SeccompProfileError(what, f"expected an Action, got {type(action).__name__}")
        if not isinstance(self.rules, tuple) or not all(isinstance(r, Rule) for r in self.rules):
            raise SeccompProfileError("syscalls", f"expected a tuple of Rule, got {self.rules!r:.60}")
        if not isinstance(self.architectures, tuple) or not all(isinstance(a, str) for a in self.architectures):
            raise SeccompProfileError("architectures", f"expected a tuple of names, got {self.architectures!r:.60}")
        if not _is_int(self.flags) or not 0 <= self.flags < 1 << 32:
            raise SeccompProfileError("flags", f"expected seccomp filter flags, got {self.flags!r:.60}")

    # ---- constructors ---------------------------------------------------------------

    @classmethod
    def deny(cls, *names: str, errno: int = _errno.EPERM, arches: Sequence[str] = ()) -> Profile:
        """Allow everything except *names*, which fail with *errno*: ``Profile.deny("mount", "keyctl")``."""
        profile = cls(Action.allow(), (Rule(tuple(names), Action.errno(errno)),), tuple(arches), enosys_newer=False)
        profile.check_names()
        return profile

    @classmethod
    def allow_only(cls, *names: str, errno: int = _errno.EPERM, arches: Sequence[str] = ()) -> Profile:
        """Deny everything (with *errno*) except *names*."""
        profile = cls(Action.errno(errno), (Rule(tuple(names), Action.allow()),), tuple(arches))
        profile.check_names()
        return profile

    def with_rules(self, *rules: Rule, first: bool = True) -> Profile:
        """A copy with *rules* tried before (or, ``first=False``, after) the others."""
        return replace(self, rules=rules + self.rules if first else self.rules + rules)

    def denying(self, *names: str, errno: int = _errno.EPERM) -> Profile:
        """A copy that also denies *names* (before any other rule), whatever
        the default action: the rule takes effect even when *errno* is the
        default's own."""
        rule = Rule(tuple(names), Action.errno(errno))
        _check_rule_names(rule, "denying")
        return self.with_rules(rule)

    # ---- resolution -------------------------------------------------------------------

    def arches(self) -> tuple[Arch, ...]:
        """The architectures the filter accepts (this machine's if none are listed)."""
        if not self.architectures:
            return (native_arch(),)
        out: list[Arch] = []
        for name in self.architectures:
            arch = get_arch(name)
            if arch not in out:
                out.append(arch)
        return tuple(out)

    def resolve(
        self,
        caps: CapabilitySet | Iterable[Capability | str] | None = None,
        *,
        host: Arch | str | None = None,
        kernel: tuple[int, int] | None = None,
    ) -> Profile:
        """Keep the rules whose includes/excludes hold for a container with
        bounding set *caps* (default: all) on *host* running *kernel*."""
        if caps is None:
            capset = CapabilitySet.all()
        elif isinstance(caps, CapabilitySet):
            capset = caps
        else:
            capset = CapabilitySet.of(caps)
        arch = get_arch(host) if host is not None else native_arch()
        kv = kernel if kernel is not None else kernel_version()
        rules = tuple(replace(r, includes=None, excludes=None) for r in self.rules if r.applies(capset, arch, kv))
        return replace(self, rules=rules)

    def check_names(self, *, strict: bool = True) -> None:
        """Raise :class:`UnknownSyscallError` for a name no known architecture has."""
        if not strict:
            return
        for i, rule in enumerate(self.rules):
            _check_rule_names(rule, f"syscalls[{i}]", self.arches()[0].name)

    def effective_rules(self) -> tuple[Rule, ...]:
        """The rules whose absence would change a decision, in order.

        A rule with the default action matters only where it shadows a later
        rule with another action for one of its calls; without such a rule
        after it, a call it matches would end at the default action anyway.
        """
        kept: list[Rule] = []
        shadowed: set[str] = set()  # calls a later rule decides otherwise than the default
        for rule in reversed(self.rules):
            if rule.action != self.default_action:
                kept.append(rule)
                shadowed.update(rule.names)
            elif shadowed.intersection(rule.names):
                kept.append(rule)
        return tuple(reversed(kept))

    def max_number(self, arch: Arch) -> int:
        """The highest number of a call any rule names on *arch* (-1 if none).

        Every rule counts, those with the default action too: a call the
        profile names is one it knows, never "newer than the profile"."""
        nrs = [arch.syscalls[n] for r in self.rules for n in r.names if n in arch.syscalls]
        return max(nrs, default=-1)

    def uses_enosys_stub(self) -> bool:
        """Whether rule 3 of the module doc applies to this profile."""
        return self.enosys_newer and self.default_action.kind not in (ActionKind.ALLOW, ActionKind.LOG)

    # ---- meaning ---------------------------------------------------------------------

    def evaluate(self, audit_arch: int, nr: int, args: Sequence[int] = (0, 0, 0, 0, 0, 0)) -> int:
        """The filter's 32-bit result for one call, computed from the profile directly.

        Includes/excludes must be resolved first (:meth:`resolve`).
        """
        arch = next((a for a in self.arches() if a.audit_arch == audit_arch), None)
        if arch is None or (nr >= arch.nr_limit and nr != 0xFFFFFFFF):
            return self.foreign_action.ret
        for rule in self.rules:  # all of them: this states the meaning, effective_rules() is the compiler's
            if rule.includes is not None or rule.excludes is not None:
                raise SeccompProfileError("", "resolve() the profile's includes/excludes before evaluating it")
            if any(arch.syscalls.get(n) == nr for n in rule.names) and rule.matches_args(args):
                return rule.action.ret
        top = self.max_number(arch)
        if self.uses_enosys_stub() and top >= 0 and nr > top:
            return Action.errno(_errno.ENOSYS).ret
        return self.default_action.ret


def _check_rule_names(rule: Rule, where: str, arch: str | None = None) -> None:
    for j, name in enumerate(rule.names):
        if not known_syscall(name):
            raise UnknownSyscallError(name, arch or native_arch().name, f"{where}.names[{j}]")
