"""Secure defaults for payloads: capabilities, seccomp, no_new_privs, dumpability.

:class:`SecurityPolicy` holds the defaults (Docker's capabilities and seccomp
profile, ``no_new_privs``, a non-dumpable setup) and produces the plan steps
that apply them; :mod:`nsprim.security.capabilities` and
:mod:`nsprim.security.seccomp` are the building blocks.
"""

from __future__ import annotations

from .._lazy import lazy_names, names_of

TYPE_CHECKING = False  # (typing itself is not imported)
if TYPE_CHECKING:
    from .capabilities import DOCKER_DEFAULT_CAPS, Capabilities, Capability, CapabilitySet, last_cap
    from .errors import SeccompProfileError, SecurityConfigError, UnknownCapabilityError, UnknownSyscallError
    from .seccomp import (
        Action,
        Profile,
        Program,
        Rule,
        Seccomp,
        compile_profile,
        docker_default_profile,
        load_profile,
        parse_profile,
    )
    from .steps import CapsPhase, LoadSeccomp, SecurityPolicy, SetCapabilities, SetDumpable

# Each name is imported when first used: a container without a seccomp
# profile does not pay for the seccomp compiler's import.
_LAZY = {
    **names_of(
        "capabilities",
        (
            "DOCKER_DEFAULT_CAPS",
            "Capabilities",
            "Capability",
            "CapabilitySet",
            "last_cap",
        ),
    ),
    **names_of(
        "errors", ("SeccompProfileError", "SecurityConfigError", "UnknownCapabilityError", "UnknownSyscallError")
    ),
    **names_of(
        "seccomp",
        (
            "Action",
            "Profile",
            "Program",
            "Rule",
            "Seccomp",
            "compile_profile",
            "docker_default_profile",
            "load_profile",
            "parse_profile",
        ),
    ),
    **names_of(
        "steps",
        (
            "CapsPhase",
            "LoadSeccomp",
            "SecurityPolicy",
            "SetCapabilities",
            "SetDumpable",
        ),
    ),
}

__all__ = [
    "Capability",
    "CapabilitySet",
    "Capabilities",
    "DOCKER_DEFAULT_CAPS",
    "last_cap",
    "SecurityConfigError",
    "UnknownCapabilityError",
    "SeccompProfileError",
    "UnknownSyscallError",
    "Action",
    "Profile",
    "Program",
    "Rule",
    "Seccomp",
    "compile_profile",
    "docker_default_profile",
    "load_profile",
    "parse_profile",
    "CapsPhase",
    "SetCapabilities",
    "LoadSeccomp",
    "SetDumpable",
    "SecurityPolicy",
]


__getattr__, __dir__ = lazy_names(__name__, _LAZY)
