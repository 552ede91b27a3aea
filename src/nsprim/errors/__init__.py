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

from . import base, call, images
from .base import *  # noqa: F403
from .base import CGroupTimeout as CGroupTimeout  # deprecated aliases, kept for one release
from .base import ProcessLookupFailed as ProcessLookupFailed
from .call import *  # noqa: F403
from .images import *  # noqa: F403
from .images import UnsafeTarEntry as UnsafeTarEntry

__all__ = [*base.__all__, *images.__all__, *call.__all__]

# One module to the user: tracebacks, the documentation and pickles name nsprim.errors.X.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type):
        _value.__module__ = __name__
del _name, _value
