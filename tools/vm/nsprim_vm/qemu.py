"""Start QEMU, stream the guest console and read the command's exit status from it."""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from . import VMError

START_MARKER = b"NSPRIM-VM-START"
EXIT_MARKER = b"NSPRIM-VM-EXIT="
# Not anchored at the line start: the command may end its output without a newline.
EXIT_RE = re.compile(rb"NSPRIM-VM-EXIT=(\d+)\r?\n")
KERNEL_ARGS = ("console=ttyS0", "quiet", "loglevel=3", "panic=-1", "cgroup_no_v1=all", "mitigations=off")
# x86 COMMAND_LINE_SIZE is 2048; keep a margin for the fixed arguments.
MAX_CMDLINE = 2000


@dataclass
class VMConfig:
    """Everything needed to start one VM."""

    vmlinux: Path
    initramfs: Path
    work: Path
    append: list[str]
    accel: str = "tcg"
    smp: int = 2
    memory: str = "1G"
    extra: list[str] = field(default_factory=list)


@dataclass
class VMResult:
    """What happened in the VM: the command's status (None if no marker was seen) and timings in seconds."""

    status: int | None
    qemu_status: int | None
    boot_seconds: float | None
    total_seconds: float
    timed_out: bool = False


def qemu_binary() -> str:
    """Return the path of qemu-system-x86_64."""
    path = shutil.which("qemu-system-x86_64")
    if path is None:
        raise VMError("qemu-system-x86_64 not found: install qemu-system-x86")
    return path


def kvm_usable() -> bool:
    """Whether /dev/kvm can be opened (NOT a proof that it can run a stock kernel: see :func:`kvm_works`)."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def kvm_works(grace: float = 1.0) -> bool:
    """Probe KVM: start a paused q35 VM and see whether QEMU survives the vCPU set-up for ``grace`` seconds.

    Some nested or paravirtual /dev/kvm devices open fine but make QEMU abort at once (e.g. "failed to set MSR
    0x10a"), which is how they fail with a stock kernel.
    """
    if not kvm_usable():
        return False
    argv = [qemu_binary(), "-machine", "q35", "-accel", "kvm", "-cpu", "host", "-nodefaults", "-display", "none"]
    argv += ["-monitor", "none", "-serial", "none", "-S", "-no-reboot"]
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        return True
    finally:
        _stop(proc)
    return False


def choose_accel(requested: str) -> str:
    """Map ``tcg``/``kvm``/``auto`` to a QEMU accelerator; ``auto`` picks kvm only if the probe passes."""
    if requested == "tcg":
        return "tcg"
    if requested == "kvm":
        if not kvm_usable():
            raise VMError("accelerator kvm requested but /dev/kvm cannot be opened")
        return "kvm"
    if requested == "auto":
        return "kvm" if kvm_works() else "tcg"
    raise VMError(f"unknown accelerator {requested!r}: use tcg, kvm or auto (NSPRIM_VM_ACCEL)")


def command_line(config: VMConfig) -> list[str]:
    """Return the qemu-system-x86_64 argv for ``config``."""
    append = " ".join([*KERNEL_ARGS, *config.append])
    if len(append) > MAX_CMDLINE:
        raise VMError(f"kernel command line too long ({len(append)} > {MAX_CMDLINE})")
    accel = "kvm" if config.accel == "kvm" else "tcg,thread=multi"
    cpu = "host" if config.accel == "kvm" else "max"
    return [
        qemu_binary(),
        "-machine",
        "q35",
        "-accel",
        accel,
        "-cpu",
        cpu,
        "-smp",
        str(config.smp),
        "-m",
        config.memory,
        "-nodefaults",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-kernel",
        str(config.vmlinux),
        "-initrd",
        str(config.initramfs),
        "-append",
        append,
        "-fsdev",
        "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device",
        "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
        "-fsdev",
        f"local,id=work,path={config.work},security_model=none,multidevs=remap",
        "-device",
        "virtio-9p-pci,fsdev=work,mount_tag=work",
        *config.extra,
    ]


class _Console:
    """Copies guest console bytes to an output stream (CRLF -> LF) and keeps the tail for the markers."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.seen = b""
        self.started_at: float | None = None
        self.finished = False
        self.carry = b""  # a trailing "\r" held back in case the next chunk starts with "\n"

    def feed(self, chunk: bytes) -> None:
        """Forward one chunk (nothing after the exit marker's line: only power-off noise) and look for the markers."""
        self.seen = (self.seen + chunk)[-65536:]
        if self.started_at is None and START_MARKER in self.seen:
            self.started_at = time.monotonic()
        if self.finished:
            return
        window = self.seen[-len(chunk) - len(EXIT_MARKER) - 8 :]
        matches = list(EXIT_RE.finditer(window))
        if matches:
            self.finished = True
            chunk = chunk[: max(0, len(chunk) - (len(window) - matches[-1].end()))]
        self._write(chunk)

    def _write(self, chunk: bytes) -> None:
        """Write with CRLF turned into LF, even across chunk boundaries."""
        data = self.carry + chunk
        self.carry = b""
        if data.endswith(b"\r") and not self.finished:
            data, self.carry = data[:-1], b"\r"
        self.out.write(data.replace(b"\r\n", b"\n"))
        self.out.flush()

    def status(self) -> int | None:
        """The exit status from the last ``NSPRIM-VM-EXIT=`` line, if any."""
        matches = EXIT_RE.findall(self.seen)
        return int(matches[-1]) if matches else None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill our QEMU child (it runs in its own process group) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run(config: VMConfig, timeout: float, out: BinaryIO | None = None) -> VMResult:
    """Boot the VM, stream its console to ``out`` (stdout) until QEMU exits or ``timeout`` seconds pass."""
    stream = out if out is not None else sys.stdout.buffer
    console = _Console(stream)
    argv = command_line(config)
    begin = time.monotonic()
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    assert proc.stdout is not None
    timed_out = False
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while True:
                left = begin + timeout - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                if not sel.select(min(left, 1.0)):
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                console.feed(chunk)
    finally:
        _stop(proc)
        proc.stdout.close()
    boot = console.started_at - begin if console.started_at is not None else None
    return VMResult(console.status(), proc.returncode, boot, time.monotonic() - begin, timed_out)
