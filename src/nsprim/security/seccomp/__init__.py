"""seccomp filters: a profile model, JSON parsers, Docker's default, and a BPF compiler.

    >>> from nsprim.security.seccomp import Seccomp, compile_profile
    >>> program = compile_profile(Seccomp.deny("mount", "keyctl"))
    >>> len(program) > 0
    True

The compiler emits classic BPF in Python (no libseccomp); the child only
installs the finished program, as the last step before ``exec``.
"""

from __future__ import annotations

from ..._lazy import lazy_names, names_of

TYPE_CHECKING = False  # (typing itself is not imported)
if TYPE_CHECKING:
    from .arch import ARCHES, Arch, get_arch, native_arch
    from .bpf import compile_profile
    from .default import docker_default_profile
    from .interp import run_seccomp
    from .parse import load_profile, parse_profile
    from .profile import Action, ActionKind, ArgCmp, Condition, Op, Profile, Rule
    from .program import Program

# Each name is imported when first used: the system call tables, the parser
# and the compiler only by a program that filters system calls.
_LAZY = {
    **names_of("arch", ("ARCHES", "Arch", "get_arch", "native_arch")),
    **names_of("bpf", ("compile_profile",)),
    **names_of("program", ("Program",)),
    **names_of("default", ("docker_default_profile",)),
    **names_of("interp", ("run_seccomp",)),
    **names_of("parse", ("load_profile", "parse_profile")),
    **names_of("profile", ("Action", "ActionKind", "ArgCmp", "Condition", "Op", "Profile", "Rule")),
}

__all__ = [
    "ARCHES",
    "Arch",
    "get_arch",
    "native_arch",
    "Program",
    "compile_profile",
    "docker_default_profile",
    "run_seccomp",
    "load_profile",
    "parse_profile",
    "Action",
    "ActionKind",
    "ArgCmp",
    "Condition",
    "Op",
    "Profile",
    "Rule",
    "Seccomp",
]


class Seccomp:
    """Short-hands for common profiles."""

    @staticmethod
    def default() -> Profile:
        """Docker's default profile."""
        from .default import docker_default_profile

        return docker_default_profile()

    @staticmethod
    def deny(*names: str, errno: int = 1) -> Profile:
        """Allow everything except *names* (which fail with *errno*, EPERM by default)."""
        from .profile import Profile

        return Profile.deny(*names, errno=errno)

    @staticmethod
    def allow_only(*names: str, errno: int = 1) -> Profile:
        """Deny everything except *names*."""
        from .profile import Profile

        return Profile.allow_only(*names, errno=errno)

    @staticmethod
    def load(path: str) -> Profile:
        """Read an OCI or Docker JSON profile from *path*."""
        from .parse import load_profile

        return load_profile(path)


__getattr__, __dir__ = lazy_names(__name__, _LAZY)
