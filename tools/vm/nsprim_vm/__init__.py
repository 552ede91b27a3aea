"""Boot a throw-away QEMU VM in pure cgroup v2 mode and run one command in it.

The host root is shared read-only over 9p and the project directory read-write, so the guest sees the same files
(Python, editable installs, the test tree) at the same paths.  See ``docs/vm.rst``.
"""

from __future__ import annotations


class VMError(Exception):
    """A failure of the VM machinery itself (not of the command run inside it)."""
