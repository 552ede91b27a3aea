"""The test suite's own contract: tools found without tools a fresh machine lacks, and
no test silently skipped for a missing tool under ``CI=true``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .tools import is_static_elf, need_tool, static_busybox

ROOT = Path(__file__).resolve().parents[1]
PROBE = "NSPRIM_TOOLS_PROBE"


def test_static_elf_is_read_from_the_program_headers(tmp_path: Path) -> None:
    assert is_static_elf(static_busybox())
    assert not is_static_elf(os.path.realpath(sys.executable))  # a dynamically linked interpreter
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    assert not is_static_elf(script)
    assert not is_static_elf(tmp_path / "missing")


def test_probe_needs_a_tool_nobody_has() -> None:
    """Run only by the test below, in a pytest of its own."""
    if not os.environ.get(PROBE):
        return
    need_tool("nsprim-no-such-tool", "nsprim-no-such-package")


def _probe(ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env[PROBE] = "1"
    if ci is not None:
        env["CI"] = ci
    test = f"{Path(__file__).relative_to(ROOT)}::test_probe_needs_a_tool_nobody_has"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_skip_for_a_missing_tool_fails_under_ci() -> None:
    outside = _probe(None)
    assert outside.returncode == 0 and "1 skipped" in outside.stdout, outside.stdout + outside.stderr
    inside = _probe("true")
    assert inside.returncode == 1, inside.stdout + inside.stderr
    assert "missing dependency" in inside.stdout and "nsprim-no-such-package" in inside.stdout
