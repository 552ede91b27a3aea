"""Developer tasks: ``nox -s tests vm lint typecheck docs demo bench``.

Every session installs nsprim from this checkout into its own virtual
environment, which compiles the cffi core from ``_native/``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
# cloudpickle: nsprim[call]'s closures and lambdas; zstandard: nsprim[zstd]'s decompressor;
# trio: nsprim[trio] (and anyio, whose two backends the async API runs on)
TEST_DEPS = ["pytest>=7", "hypothesis>=6", "cloudpickle>=2", "zstandard>=0.19", "trio>=0.22", "anyio>=4"]


def _install(session: nox.Session, *extra: str) -> None:
    session.install("-e", ".", *extra)


def _venv_python(session: nox.Session) -> str:
    bin_dir = session.bin
    return str(Path(bin_dir) / "python")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite on this host (as root: all of it; otherwise the unprivileged part)."""
    _install(session, *TEST_DEPS)
    session.run("python", "-m", "pytest", *(session.posargs or ["-q"]))


@nox.session(python=PYTHON)
def vm(session: nox.Session) -> None:
    """The cgroup v2 tests, in a QEMU virtual machine booted in pure cgroup v2 mode."""
    _install(session, *TEST_DEPS)
    args = session.posargs or [
        "-q",
        "-m",
        "cgroup_v2",
        "tests/cgroup",
        "tests/container/test_on_any_cgroup_host.py",
        "tests/container/test_events.py",
        "tests/oci/test_runtime_replay.py",
        "tests/test_cli.py",
    ]
    # Nothing can be written back in the guest: without plugin autoloading,
    # pytest does not re-rewrite every module of hypothesis on each run.
    session.run(
        "python",
        str(ROOT / "tools" / "vm" / "run.py"),
        "-e",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1",
        "-e",
        "CI",
        "--",
        _venv_python(session),
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-p",
        "_hypothesis_pytestplugin",
        *args,
    )


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "examples", "benchmarks", "tools", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "examples", "noxfile.py")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, including the typed layer over the cffi lib."""
    _install(session, "mypy", *TEST_DEPS)
    session.run("mypy", "--strict", "src/nsprim")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Sphinx, warnings as errors, and the doctests in the docs and docstrings."""
    _install(session, "sphinx>=7", *TEST_DEPS)
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "doctest", "docs", "docs/_build/doctest")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The README's demo: namespaces by hand, then a sandbox."""
    _install(session)
    for example in session.posargs or ["sandbox.py", "inspect_namespaces.py", "limits.py"]:
        session.run("python", str(ROOT / "examples" / example))


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks, as ratios against the real tools measured in the same run."""
    _install(session)
    quick = ["--quick"] if os.environ.get("CI") or "--quick" in session.posargs else []
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        session.run("python", str(script), *quick)
