"""The exception hierarchy of nsprim.

Every error nsprim raises derives from :class:`NsprimError`.  The classes say *what kind* of thing
went wrong; the attributes say *where*:

* :class:`ConfigError` (also a :class:`ValueError`): bad input, found before any system call was
  made, so nothing needs undoing.
* :class:`SyscallError` (also an :class:`OSError`): the kernel refused an operation.  ``errno``,
  ``strerror`` and ``filename`` are set as on any ``OSError``; ``operation`` names the call ("mount", ...).
* :class:`StepError` (a :class:`SyscallError`): a step of a spawn plan failed in the child, between
  ``clone`` and ``exec``.  ``step`` is the failed step and ``index`` its position in the plan.
* :class:`ChildDiedError` (a :class:`StepError`): the child died before ``exec`` without reporting a
  failed step (killed, or out of memory).
* :class:`UnsupportedError`: the kernel or host lacks a feature; :class:`CgroupUnavailableError`
  when resource limits have no cgroup the caller may write.
* :class:`LayerError` (a :class:`ConfigError`): a layer tar that cannot be used as given:
  :class:`CorruptLayerError` (not a tar, truncated), :class:`LayerLimitError` (over an extraction
  limit) and :class:`UnsafeTarEntryError`.  ``layer`` names the tar, ``entry`` the member.
* :class:`SecurityConfigError` (a :class:`ConfigError`): a capability, seccomp profile or BPF
  program that cannot be used.
* :class:`ImageError`: an image that cannot be used as given; :class:`RegistryError` when a
  registry refused or failed (``registry``, ``repository``, ``digest``, ``status``, ``code``).
* :class:`CallError`: a function run in a sandbox (:mod:`nsprim.call`) did not return a value:
  :class:`RemoteError` (it raised), :class:`CallDiedError` (its container ended first),
  :class:`UnsafeResultError` (its answer was refused) and the others below.

Every exception class of nsprim is in this package, one module per family (:mod:`.base`,
:mod:`.images`, :mod:`.call`), and named, printed, documented and pickled as ``nsprim.errors.X``;
the modules that raise them re-export theirs.
``ProcessLookupFailed``, ``CGroupTimeout`` and ``UnsafeTarEntry`` are deprecated aliases of
:class:`NoSuchProcessError`, :class:`CGroupTimeoutError` and :class:`UnsafeTarEntryError`.

Messages follow crun's style: verb, backticked path, reason, and where it helps, a hint —
"pivot_root `/x/rootfs`: Invalid argument (is it a mount point?)".
"""

from __future__ import annotations

from . import base
from .base import *  # noqa: F403
from .base import CGroupTimeout as CGroupTimeout  # deprecated aliases, kept for one release
from .base import ProcessLookupFailed as ProcessLookupFailed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from . import call as call
    from . import images as images
    from .call import *  # noqa: F403
    from .images import *  # noqa: F403
    from .images import UnsafeTarEntry as UnsafeTarEntry

# The image and call families are imported when first named: a runtime command raises neither.
_FAMILIES = {
    "images": (
        "LayerError", "ImageError", "BlobDigestError", "ImageNotFoundError", "ImageReferenceError", "RegistryError",
        "RegistryAuthError", "RegistryNotFoundError", "RegistryUnavailableError", "RegistryDigestError",
        "CorruptLayerError", "LayerLimitError", "UnsafeTarEntryError", "UnsafeTarEntry",
    ),
    "call": (
        "CallError", "RemoteError", "UnsafeResultError", "CallDiedError", "CallTimeoutError", "CallCancelledError",
        "PythonNotFoundError", "PythonVersionError",
    ),
}  # fmt: skip
_LAZY = {name: family for family, names in _FAMILIES.items() for name in names}

__all__ = [*base.__all__, *(n for n in _LAZY if n != "UnsafeTarEntry")]


def _one_module(names: list[str], where: dict[str, object]) -> None:
    # One module to the user: tracebacks, the documentation and pickles name nsprim.errors.X.
    for name in names:
        value = where[name]
        if isinstance(value, type):
            value.__module__ = __name__


_one_module(base.__all__, globals())


def __getattr__(name: str) -> object:
    family = _LAZY.get(name)
    if family is None:
        if name in _FAMILIES:  # the submodules themselves
            import importlib

            return importlib.import_module(f"{__name__}.{name}")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module = importlib.import_module(f"{__name__}.{family}")
    names = [n for n in _FAMILIES[family] if hasattr(module, n)]
    _one_module([n for n in names if n in module.__all__], vars(module))
    globals().update({n: getattr(module, n) for n in names})
    return globals()[name]


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
