"""Command line of the VM runner: ``python3 tools/vm/run.py [options] -- CMD...``."""

from __future__ import annotations

import argparse
import base64
import os
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from . import VMError, initramfs, kernel, qemu

PROJECT = Path(__file__).resolve().parents[3]
DEFAULT_TIMEOUT = 900.0
# Exit statuses of the runner itself (the command's own status is passed through otherwise).
EXIT_TIMEOUT = 124
EXIT_VM_FAILED = 125
EXIT_INTERRUPTED = 130
# Paths the guest mounts its own file systems on (the project share is mounted last, on top).
GUEST_MOUNTS = ("/tmp", "/run", "/dev", "/proc", "/sys")
# Beyond this many base64 characters the command goes through a file in the cache instead of the kernel cmdline.
MAX_INLINE_COMMAND = 1200


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the runner's options; the command follows ``--``."""
    parser = argparse.ArgumentParser(
        prog="tools/vm/run.py",
        description="Run a command in a throw-away QEMU VM booted in pure cgroup v2 mode (host root read-only, "
        "project read-write, same paths). Exits with the command's status; 124 on timeout, 125 if the VM failed.",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds for the whole VM run (900)")
    parser.add_argument("--cache", type=Path, default=None, help="cache directory (default: PROJECT/.vm)")
    parser.add_argument("--project", type=Path, default=PROJECT, help="directory shared read-write (the repo)")
    parser.add_argument(
        "--accel",
        default=os.environ.get("NSPRIM_VM_ACCEL", "tcg"),
        help="tcg (default), kvm or auto; or set NSPRIM_VM_ACCEL",
    )
    parser.add_argument(
        "--kernel-release",
        default=os.environ.get("NSPRIM_VM_KERNEL"),
        help="kernel release to boot (default: newest /boot/vmlinuz-* with modules)",
    )
    parser.add_argument(
        "--work-cache",
        choices=("loose", "none"),
        default=os.environ.get("NSPRIM_VM_WORK_CACHE", "loose"),
        help="9p cache mode of the project share: loose (default, fast) or none (or set NSPRIM_VM_WORK_CACHE)",
    )
    parser.add_argument("--smp", type=int, default=2, help="virtual CPUs (2)")
    parser.add_argument("--memory", default="1G", help="guest memory (1G)")
    parser.add_argument(
        "-e",
        "--env",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="set a variable in the guest (NAME alone copies the host's value); repeatable",
    )
    parser.add_argument("--build-only", action="store_true", help="build the cached kernel and initramfs, then exit")
    parser.add_argument("-q", "--quiet", action="store_true", help="no 'vm:' progress lines on stderr")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARG...]")
    args = parser.parse_args(argv)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    if not args.command and not args.build_only:
        parser.error("no command given: tools/vm/run.py [options] -- CMD...")
    return args


def guest_path() -> str:
    """PATH for the guest: the running Python's bin directory first (not a pyenv shim), then the host's PATH."""
    dirs = [os.path.dirname(sys.executable), *os.environ.get("PATH", "").split(os.pathsep)]
    dirs += ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    return os.pathsep.join(dict.fromkeys(d for d in dirs if d))


def guest_env(extra: list[str]) -> dict[str, str]:
    """The guest command's whole environment."""
    env = {"PATH": guest_path(), "HOME": "/root", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    # The guest's console is a tty, but our stdout may not be: only let programs use colours if it is.
    env["TERM"] = os.environ.get("TERM", "dumb") if sys.stdout.isatty() else "dumb"
    env["COLUMNS"] = str(shutil.get_terminal_size().columns)
    # The project's own switches travel (not the runner's NSPRIM_VM_*); NSPRIM_IN_VM=1 tells tests where they are.
    env.update({k: v for k, v in os.environ.items() if k.startswith("NSPRIM_") and not k.startswith("NSPRIM_VM_")})
    env["NSPRIM_IN_VM"] = "1"
    if "VIRTUAL_ENV" in os.environ:
        env["VIRTUAL_ENV"] = os.environ["VIRTUAL_ENV"]
    for item in extra:
        name, sep, value = item.partition("=")
        if not sep:
            if name not in os.environ:
                continue
            value = os.environ[name]
        env[name] = value
    return env


def guest_script(command: list[str], cwd: str, env: dict[str, str]) -> str:
    """The POSIX sh script /init runs in the chroot: cd to the caller's directory, exec the command in ``env``.

    Standard input is /dev/null (nothing is ever typed on the guest console).
    """
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    return (
        f"cd {shlex.quote(cwd)} || {{ echo 'vm: cannot cd to {shlex.quote(cwd)} in the guest' >&2; exit 125; }}\n"
        f"exec /usr/bin/env -i {assignments} {shlex.join(command)} </dev/null\n"
    )


def b64(text: str) -> str:
    """Base64 of a UTF-8 string (safe on the kernel command line)."""
    return base64.b64encode(text.encode()).decode()


def command_args(script: str, cache: Path) -> tuple[list[str], Path | None]:
    """Kernel arguments that carry ``script``: inline if short, else a file in the cache read through the host root."""
    encoded = b64(script)
    if len(encoded) <= MAX_INLINE_COMMAND:
        return [f"nsprim.cmd={encoded}"], None
    # /init reads it through the host root before it mounts anything there, so any host path will do.
    path = cache.resolve() / f"cmd-{os.getpid()}-{time.monotonic_ns()}.sh"
    path.write_text(script)
    return [f"nsprim.cmdfile={b64(str(path))}"], path


def hidden_in_guest(path: Path, project: Path) -> bool:
    """Whether the guest mounts something of its own over ``path`` (so the host's files there are not visible)."""
    if path == project or project in path.parents:
        return False
    return any(path == Path(m) or Path(m) in path.parents for m in GUEST_MOUNTS)


def log(args: argparse.Namespace, message: str) -> None:
    """Print a progress line on stderr unless --quiet."""
    if not args.quiet:
        print(f"vm: {message}", file=sys.stderr, flush=True)


def prepare(args: argparse.Namespace, cache: Path) -> tuple[kernel.Kernel, Path, Path]:
    """Find the kernel, build or reuse the cached vmlinux and initramfs."""
    kern = kernel.find_kernel(args.kernel_release)
    start = time.monotonic()
    vmlinux, built_kernel = kernel.cached_vmlinux(kern, cache)
    if built_kernel:
        log(args, f"extracted {vmlinux.name} in {time.monotonic() - start:.1f} s")
    start = time.monotonic()
    initrd, built_initrd = initramfs.cached_initramfs(kern, cache)
    if built_initrd:
        log(args, f"built {initrd.name} in {time.monotonic() - start:.1f} s")
    return kern, vmlinux, initrd


def report(args: argparse.Namespace, kern: kernel.Kernel, accel: str, result: qemu.VMResult) -> int:
    """Turn a VM result into the runner's exit status, with a clear message when the VM itself failed."""
    if result.timed_out:
        log(args, f"timed out after {args.timeout:.0f} s: killed the VM")
        return EXIT_TIMEOUT
    if result.status is None:
        hint = ": the kvm accelerator may not work here, try NSPRIM_VM_ACCEL=tcg" if accel == "kvm" else ""
        log(
            args, f"the VM stopped without reporting the command's status (qemu exit status {result.qemu_status}){hint}"
        )
        return EXIT_VM_FAILED
    if result.boot_seconds is not None:
        command = result.total_seconds - result.boot_seconds
        log(
            args,
            f"{kern.release}, accel {accel}: boot {result.boot_seconds:.1f} s, command+poweroff "
            f"{command:.1f} s, total {result.total_seconds:.1f} s, status {result.status}",
        )
    return result.status


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so that the QEMU child gets killed on the way out."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGHUP, _raise_exit)
    cache = (args.cache or args.project / ".vm").resolve()
    cmdfile: Path | None = None
    try:
        kern, vmlinux, initrd = prepare(args, cache)
        if args.build_only:
            log(args, f"ready: {vmlinux} {initrd}")
            return 0
        accel = qemu.choose_accel(args.accel)
        project = args.project.resolve()
        cwd = os.getcwd()
        if hidden_in_guest(Path(cwd), project):
            log(args, f"warning: the guest has its own empty {cwd} (only / read-only and {project} are shared)")
        script = guest_script(args.command, cwd, guest_env(args.env))
        cmd_args, cmdfile = command_args(script, cache)
        config = qemu.VMConfig(
            vmlinux=vmlinux,
            initramfs=initrd,
            work=project,
            accel=accel,
            smp=args.smp,
            memory=args.memory,
            append=[f"nsprim.work={b64(str(project))}", f"nsprim.wcache={args.work_cache}", *cmd_args],
        )
        return report(args, kern, accel, qemu.run(config, args.timeout))
    except VMError as exc:
        print(f"vm: {exc}", file=sys.stderr)
        return EXIT_VM_FAILED
    except KeyboardInterrupt:
        print("vm: interrupted: killed the VM", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if cmdfile is not None:
            cmdfile.unlink(missing_ok=True)
