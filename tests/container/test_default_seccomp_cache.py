"""A container's default seccomp program is compiled once per host, kept in the state directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from nsprim.container.build import _default_security_compiled, default_security

from ..conftest import requires_root


def test_the_cached_default_is_the_compiled_default(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    fresh = default_security()
    compiled = fresh.program()
    assert compiled is not None
    first = _default_security_compiled(tmp_path)
    _default_security_compiled.cache_clear()  # the next one reads the program back from the file
    again = _default_security_compiled(tmp_path)
    assert len(os.listdir(tmp_path / "seccomp")) == 1
    for policy in (first, again):
        program = policy.program()
        assert program is not None and program.to_bytes() == compiled.to_bytes()
        assert policy.caps == fresh.caps and policy.no_new_privs == fresh.no_new_privs
        assert policy.epilogue(uid=0, gid=0) == fresh.epilogue(uid=0, gid=0, program=compiled)


@requires_root
def test_a_container_with_a_cached_default_imports_no_compiler(tmp_path: Path) -> None:
    code = (
        "import sys; from nsprim.container import Container;"
        "r = Container(['true']).host_root().run();"
        "print(r.returncode, 'nsprim.security.seccomp.bpf' in sys.modules)"
    )
    env = {**os.environ, "NSPRIM_STATE_DIR": str(tmp_path / "state")}
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout.split()
        for _ in range(2)
    ]
    assert runs == [["0", "True"], ["0", "False"]]
