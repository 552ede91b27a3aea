"""Read seccomp profiles in the OCI runtime-spec form and in Docker's form.

The OCI form is the ``linux.seccomp`` object of a bundle's ``config.json``::

    {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
     "architectures": ["SCMP_ARCH_X86_64"], "flags": ["SECCOMP_FILTER_FLAG_LOG"],
     "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                  {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                   "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]}]}

Docker's form (``docker run --security-opt seccomp=file.json``) adds
``archMap`` (architectures by host), ``includes``/``excludes`` (by
capabilities, host architecture, ``minKernel``) and the old single ``name``.
Both parse into one :class:`~.profile.Profile`.  Errors name the entry:
``seccomp profile: syscalls[3].names[1]: unknown syscall `foo` for x86_64``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

from ...errors import SyscallError
from ..capabilities import CapabilitySet
from ..errors import SeccompProfileError, UnknownCapabilityError, UnknownSyscallError
from .arch import Arch, arch_from_scmp, get_arch, known_syscall, native_arch
from .profile import Action, ArgCmp, Condition, Op, Profile, Rule, kernel_version

__all__ = ["parse_profile", "load_profile", "profile_to_dict", "FILTER_FLAGS"]

#: seccomp(2) filter flags by their OCI names.
FILTER_FLAGS: Mapping[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32,
}


#: Nesting a profile needs: object > syscalls > entry > args > comparison (includes: 4).
MAX_DEPTH = 32
# A string (escapes included), or one bracket; anything else is skipped over.
_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def _loads(data: str | bytes | bytearray) -> Any:
    """``json.loads``, refusing documents nested deeper than :data:`MAX_DEPTH`
    before the parser recurses into them (it would raise ``RecursionError``)."""
    try:
        text = data if isinstance(data, str) else bytes(data).decode(json.detect_encoding(data))
    except (UnicodeDecodeError, LookupError) as exc:
        raise SeccompProfileError("", f"invalid JSON: {exc}") from None
    depth = 0
    for m in _STRUCTURE.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise SeccompProfileError("", f"invalid profile: nested deeper than {MAX_DEPTH} levels")
        elif c in "]}":
            depth -= 1
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # (a bracket the scan took for a string's)
        raise SeccompProfileError("", f"invalid JSON: {exc}") from None


def _expect(value: object, kind: type | tuple[type, ...], where: str, what: str) -> Any:
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise SeccompProfileError(where, f"expected {what}, got {type(value).__name__}")
    return value


def _uint(value: object, where: str, bits: int = 64) -> int:
    v = _expect(value, int, where, "an unsigned integer")
    if not 0 <= v < 1 << bits:
        raise SeccompProfileError(where, f"{v} is out of the unsigned {bits}-bit range")
    return int(v)


def _strings(value: object, where: str) -> list[str]:
    items = _expect(value, list, where, "a list of strings")
    for i, s in enumerate(items):
        _expect(s, str, f"{where}[{i}]", "a string")
    return list(items)


def _action(obj: Mapping[str, Any], key: str, errno_key: str, where: str, default_errno: int | None) -> Action:
    if key not in obj:
        raise SeccompProfileError(f"{where}{key}", "missing")
    name = _expect(obj[key], str, f"{where}{key}", "an action name")
    errno_ret = default_errno
    if obj.get(errno_key) is not None:
        errno_ret = _uint(obj[errno_key], f"{where}{errno_key}", 16)
    return Action.parse(name, errno_ret, where=f"{where}{key}")


def _condition(value: object, where: str) -> Condition | None:
    if value is None:
        return None
    obj = _expect(value, dict, where, "an object")
    caps = CapabilitySet()
    for i, name in enumerate(_strings(obj.get("caps") or [], f"{where}.caps")):
        try:
            caps |= CapabilitySet.of(name)
        except UnknownCapabilityError:
            raise UnknownCapabilityError(name, where=f"seccomp profile: {where}.caps[{i}]") from None
    arches = tuple(_strings(obj.get("arches") or [], f"{where}.arches"))
    min_kernel = None
    if obj.get("minKernel"):
        text = _expect(obj["minKernel"], str, f"{where}.minKernel", "a version string")
        min_kernel = kernel_version(text)
        if min_kernel == (0, 0):
            raise SeccompProfileError(f"{where}.minKernel", f"invalid kernel version `{text}`")
    cond = Condition(caps, arches, min_kernel)
    return None if cond.is_empty() else cond


def _arg(value: object, where: str) -> ArgCmp:
    obj = _expect(value, dict, where, "an object")
    for key in ("index", "value", "op"):
        if key not in obj:
            raise SeccompProfileError(f"{where}.{key}", "missing")
    index = _uint(obj["index"], f"{where}.index")
    if index > 5:
        raise SeccompProfileError(f"{where}.index", f"argument index {index} out of range 0..5")
    op = Op.parse(obj["op"], f"{where}.op")
    return ArgCmp(index, op, _uint(obj["value"], f"{where}.value"), _uint(obj.get("valueTwo", 0), f"{where}.valueTwo"))


def _architectures(obj: Mapping[str, Any], host: Arch) -> tuple[str, ...]:
    names: list[tuple[str, str]] = []  # (scmp name, where)
    if obj.get("archMap") and obj.get("architectures"):
        raise SeccompProfileError("archMap", "use either `architectures` or `archMap`, not both")
    if obj.get("architectures"):
        names = [(n, f"architectures[{i}]") for i, n in enumerate(_strings(obj["architectures"], "architectures"))]
    elif obj.get("archMap"):
        entries = _expect(obj["archMap"], list, "archMap", "a list")
        for i, entry in enumerate(entries):
            where = f"archMap[{i}]"
            entry = _expect(entry, dict, where, "an object")
            main = _expect(entry.get("architecture"), str, f"{where}.architecture", "an architecture name")
            arch = arch_from_scmp(main, f"{where}.architecture")
            if arch is not host:
                continue
            names.append((main, f"{where}.architecture"))
            subs = _strings(entry.get("subArchitectures") or [], f"{where}.subArchitectures")
            names.extend((s, f"{where}.subArchitectures[{j}]") for j, s in enumerate(subs))
    if not names:
        return ()
    out = [host.name]  # as libseccomp: the native architecture is always in the filter
    for name, where in names:
        found = arch_from_scmp(name, where)
        if found is not None and found.name not in out:
            out.append(found.name)
    return tuple(out)


def parse_profile(
    data: Mapping[str, object] | str | bytes,
    *,
    host: Arch | str | None = None,
    strict: bool = True,
) -> Profile:
    """Parse a profile in either JSON form (a mapping, or JSON text).

    *host* is the machine the filter is for (default: this one): it picks the
    ``archMap`` entry.  With *strict*, a system call name that no known
    architecture has is an error (runc ignores such names: ``strict=False``).
    """
    if isinstance(data, (str, bytes, bytearray)):
        data = _loads(data)
    obj = _expect(data, dict, "", "a JSON object")
    host_arch = get_arch(host) if host is not None else native_arch()
    default = _action(obj, "defaultAction", "defaultErrnoRet", "", None)
    architectures = _architectures(obj, host_arch)
    label = architectures[0] if architectures else host_arch.name
    flags = 0
    for i, name in enumerate(_strings(obj.get("flags") or [], "flags")):
        if name not in FILTER_FLAGS:
            raise SeccompProfileError(f"flags[{i}]", f"unknown seccomp filter flag `{name}`")
        flags |= FILTER_FLAGS[name]
    rules: list[Rule] = []
    for i, entry in enumerate(_expect(obj.get("syscalls") or [], list, "syscalls", "a list")):
        where = f"syscalls[{i}]"
        entry = _expect(entry, dict, where, "an object")
        if "names" in entry and entry["names"] is not None:
            names = _strings(entry["names"], f"{where}.names")
            spots = [f"{where}.names[{j}]" for j in range(len(names))]
        elif entry.get("name"):
            names = [_expect(entry["name"], str, f"{where}.name", "a string")]
            spots = [f"{where}.name"]
        else:
            raise SeccompProfileError(f"{where}.names", "missing")
        for name, spot in zip(names, spots, strict=True):
            if not name:
                raise SeccompProfileError(spot, "empty syscall name")
            if strict and not known_syscall(name):
                raise UnknownSyscallError(name, label, spot)
        if not strict:
            names = [n for n in names if known_syscall(n)]
        action = _action(entry, "action", "errnoRet", f"{where}.", None)
        raw_args = _expect(entry.get("args") or [], list, f"{where}.args", "a list")
        args = tuple(_arg(a, f"{where}.args[{j}]") for j, a in enumerate(raw_args))
        rules.append(
            Rule(
                tuple(names),
                action,
                args,
                _condition(entry.get("includes"), f"{where}.includes"),
                _condition(entry.get("excludes"), f"{where}.excludes"),
                _expect(entry.get("comment") or "", str, f"{where}.comment", "a string"),
            )
        )
    return Profile(default, tuple(rules), architectures, flags=flags)


def load_profile(path: str | os.PathLike[str], *, host: Arch | str | None = None, strict: bool = True) -> Profile:
    """Read and parse a JSON profile file (see :func:`parse_profile`)."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as exc:
        raise SyscallError(exc.errno, "read seccomp profile", path) from None
    try:
        return parse_profile(text, host=host, strict=strict)
    except SeccompProfileError as exc:
        raise type(exc)(*_error_args(exc, os.fspath(path))) from None


def _error_args(exc: SeccompProfileError, path: str) -> tuple[Any, ...]:
    if isinstance(exc, UnknownSyscallError):
        return (exc.name, exc.arch, f"{path}: {exc.where}")
    return (f"{path}: {exc.where}" if exc.where else path, exc.reason)


def _action_dict(action: Action, key: str, errno_key: str) -> dict[str, Any]:
    out: dict[str, Any] = {key: action.scmp_name}
    if action.kind.name in ("ERRNO", "TRACE"):
        out[errno_key] = action.data
    return out


def _cond_dict(cond: Condition) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if cond.caps:
        out["caps"] = cond.caps.names()
    if cond.arches:
        out["arches"] = list(cond.arches)
    if cond.min_kernel is not None:
        out["minKernel"] = f"{cond.min_kernel[0]}.{cond.min_kernel[1]}"
    return out


def profile_to_dict(profile: Profile) -> dict[str, object]:
    """The profile as OCI JSON (Docker's form when it has includes/excludes)."""
    out = _action_dict(profile.default_action, "defaultAction", "defaultErrnoRet")
    if profile.architectures:
        out["architectures"] = [get_arch(a).scmp_name for a in profile.architectures]
    if profile.flags:
        out["flags"] = [name for name, bit in FILTER_FLAGS.items() if profile.flags & bit]
    calls: list[dict[str, Any]] = []
    for rule in profile.rules:
        entry: dict[str, Any] = {"names": list(rule.names), **_action_dict(rule.action, "action", "errnoRet")}
        if rule.args:
            entry["args"] = [
                {"index": a.index, "value": a.value, "valueTwo": a.value_two, "op": a.op.value} for a in rule.args
            ]
        if rule.includes is not None:
            entry["includes"] = _cond_dict(rule.includes)
        if rule.excludes is not None:
            entry["excludes"] = _cond_dict(rule.excludes)
        if rule.comment:
            entry["comment"] = rule.comment
        calls.append(entry)
    out["syscalls"] = calls
    return out
