"""``nsprim-runtime``'s command line: runc's global options, errors and logs, ``spec``, ``features``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nsprim.oci import SPEC_VERSION, default_spec
from nsprim.oci.runtime.cli import COMMANDS, EXIT_UNKNOWN_COMMAND

from ..tools import need_tool
from .conftest import Runtime, runtime_command

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def test_version_names_the_runtime_and_the_spec(runtime: Runtime) -> None:
    for flag in ("--version", "-v"):
        lines = runtime.ok(flag, root=False).splitlines()
        assert lines[0].startswith("nsprim-runtime version ")
        assert f"spec: {SPEC_VERSION}" in lines


def test_python_m_runs_the_same_command(runtime: Runtime) -> None:
    out = subprocess.run([sys.executable, "-m", "nsprim.oci.runtime", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == runtime.ok("--version", root=False)


def test_unknown_commands_and_options_are_refused_by_name(runtime: Runtime) -> None:
    assert runtime.fails("frobnicate", status=EXIT_UNKNOWN_COMMAND) == (
        "unknown command `frobnicate` (see `nsprim-runtime --help`)"
    )
    # crun's option, which runc does not have either.
    message = runtime.fails("--cgroup-manager", "cgroupfs", "list")
    assert message == "unknown global option `--cgroup-manager` (see `nsprim-runtime --help`)"
    assert "unknown list option `--all`" in runtime.fails("list", "--all")
    assert "unknown kill option `-9`" in runtime.fails("kill", "box", "-9")


def test_options_runc_ignores_are_accepted(runtime: Runtime) -> None:
    runtime.ok("--criu", "/usr/sbin/criu", "list")
    runtime.ok("--criu=criu", "--rootless", "false", "--debug=false", "list", "-q")
    assert "invalid --rootless `maybe`" in runtime.fails("--rootless", "maybe", "list")


def test_systemd_cgroup_is_refused_clearly(runtime: Runtime) -> None:
    message = runtime.fails("--systemd-cgroup", "list")
    assert message.startswith("--systemd-cgroup: nsprim-runtime manages cgroups through cgroupfs")
    runtime.ok("--systemd-cgroup=false", "list")


def test_every_command_is_built() -> None:
    assert [name for name, command in COMMANDS.items() if command[1] is None] == []


def test_checkpoint_is_unsupported(runtime: Runtime) -> None:
    assert "checkpoint needs CRIU" in runtime.fails("checkpoint", "box")


def test_usage_errors(runtime: Runtime) -> None:
    assert "state: needs exactly 1 argument(s)" in runtime.fails("state")
    assert "state: needs exactly 1 argument(s)" in runtime.fails("state", "a", "b")
    assert "kill: needs 1 to 2 argument(s)" in runtime.fails("kill", "a", "TERM", "x")
    assert "option `--format` needs a value" in runtime.fails("list", "--format")
    assert "invalid --format `xml`" in runtime.fails("list", "--format", "xml")
    assert "option `-force` takes true or false" in runtime.fails("delete", "--force=maybe", "x")
    assert "invalid --log-format `xml`" in runtime.fails("--log-format", "xml", "list")


def test_go_flag_syntax(runtime: Runtime, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert runtime.ok("-root", str(other), "list", root=False).startswith("ID")
    assert json.loads(runtime.ok(f"--root={other}", "list", "-f=json", root=False)) == []
    runtime.ok("delete", "box", "-f")  # options after the arguments, as urfave/cli reorders them
    assert "container `-f` does not exist" in runtime.fails("delete", "--", "-f")  # after --, an argument


def test_help(runtime: Runtime) -> None:
    text = runtime.ok("--help", root=False)
    assert all(name in text for name in COMMANDS)
    assert runtime.ok("help", "kill", root=False).startswith(
        "Usage: nsprim-runtime kill [command options] <container-id>"
    )
    assert "--all, -a" in runtime.ok("kill", "--help")
    runtime.fails("help", "nope", status=EXIT_UNKNOWN_COMMAND)


# ---- errors and the log ------------------------------------------------------------------------


def test_an_error_is_one_line_on_stderr_and_a_json_line_in_the_log(runtime: Runtime, tmp_path: Path) -> None:
    log = tmp_path / "log.json"
    message = runtime.fails("--log", str(log), "--log-format", "json", "state", "nope")
    assert message == f"container `nope` does not exist in `{runtime.root}`"
    (line,) = log.read_text().splitlines()
    entry = json.loads(line)
    assert list(entry) == ["level", "msg", "time"]  # logrus's order, which the shim reads
    assert entry["level"] == "error" and entry["msg"] == message and RFC3339.fullmatch(entry["time"])
    runtime.fails("--log", str(log), "--log-format", "json", "kill", "nope")
    assert len(log.read_text().splitlines()) == 2  # appended


def test_without_a_log_file_json_errors_go_to_stderr(runtime: Runtime) -> None:
    entry = json.loads(runtime.fails("--log-format", "json", "state", "nope"))
    assert entry["level"] == "error" and "does not exist" in entry["msg"]


def test_a_text_log_is_logrus_text(runtime: Runtime, tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    runtime.fails("--log", str(log), "state", "nope")
    m = re.fullmatch(r'time="(\S+)" level=error msg="(.*)"\n', log.read_text())
    assert m is not None and RFC3339.fullmatch(m.group(1)) and "does not exist" in m.group(2)


def test_debug_lines_go_to_the_log(runtime: Runtime, tmp_path: Path) -> None:
    log = tmp_path / "debug.json"
    r = runtime("--debug", "--log", str(log), "--log-format", "json", "list")
    assert r.returncode == 0 and r.stderr == ""
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert entries and all(e["level"] == "debug" for e in entries)
    assert any("list" in e["msg"] for e in entries)


def test_a_log_that_is_stderr_gets_one_line(runtime: Runtime) -> None:
    message = runtime.fails("--log", "/dev/stderr", "state", "nope")
    assert "does not exist" in message


# ---- spec ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("rootless", [False, True])
def test_spec_writes_what_runc_spec_writes(runtime: Runtime, tmp_path: Path, rootless: bool) -> None:
    runc = need_tool("runc", "runc")
    flags = ["--rootless"] if rootless else []
    theirs_dir, ours_dir = tmp_path / "runc", tmp_path / "ours"
    theirs_dir.mkdir()
    ours_dir.mkdir()
    subprocess.run([runc, "spec", *flags], cwd=theirs_dir, check=True)
    runtime.ok("spec", *flags, "--bundle", str(ours_dir))
    theirs = json.loads((theirs_dir / "config.json").read_text())
    ours = json.loads((ours_dir / "config.json").read_text())
    assert ours["ociVersion"] == SPEC_VERSION and ours["hostname"] == "nsprim"
    for doc in (theirs, ours):
        doc.pop("ociVersion")
        doc.pop("hostname")
    assert ours == theirs
    assert ours_dir.joinpath("config.json").read_text().startswith('{\n\t"ociVersion"')  # runc's tab layout
    assert json.loads((ours_dir / "config.json").read_text()) == default_spec(rootless=rootless).to_dict()


def test_spec_never_overwrites(runtime: Runtime, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("mine")
    message = runtime.fails("spec", "-b", str(tmp_path))
    assert message == f"write `{tmp_path}/config.json`: File exists (remove it first)"
    assert (tmp_path / "config.json").read_text() == "mine"
    message = runtime.fails("spec", "--bundle", str(tmp_path / "missing"))
    assert message == f"write `{tmp_path}/missing/config.json`: No such file or directory"


def test_spec_writes_into_the_working_directory(tmp_path: Path) -> None:
    r = subprocess.run([*runtime_command(), "spec"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "config.json").read_text())["process"]["args"] == ["sh"]


# ---- features -----------------------------------------------------------------------------------

# The runtime spec's schema of the document (schema/features-schema.json, features-linux.json and the
# enumerations of defs-linux.json), as the checks below need it.
NAMESPACE_TYPES = {"mount", "pid", "network", "uts", "ipc", "user", "cgroup", "time"}
SECCOMP_ACTIONS = {
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY",
}  # fmt: skip
SECCOMP_OPERATORS = {"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
                     "SCMP_CMP_MASKED_EQ"}  # fmt: skip
SECCOMP_ARCHES = {
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB",
    "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",
}  # fmt: skip
SECCOMP_FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                 "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"}  # fmt: skip
HOOKS = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]
LINUX_KEYS = {"namespaces", "capabilities", "cgroup", "seccomp", "apparmor", "selinux", "intelRdt",
              "memoryPolicy", "mountExtensions", "netDevices"}  # fmt: skip
TOP_KEYS = {"ociVersionMin", "ociVersionMax", "hooks", "mountOptions", "annotations",
            "potentiallyUnsafeConfigAnnotations", "linux"}  # fmt: skip


def _strings(value: object, allowed: set[str] | None = None) -> list[str]:
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), value
    assert len(set(value)) == len(value)
    if allowed is not None:
        assert set(value) <= allowed, set(value) - allowed
    return value


def _bools(value: object, keys: set[str]) -> dict[str, bool]:
    assert isinstance(value, dict) and set(value) <= keys and all(isinstance(v, bool) for v in value.values())
    return value


def test_features_follow_the_schema_and_describe_this_host(runtime: Runtime) -> None:
    doc = json.loads(runtime.ok("features"))
    assert set(doc) <= TOP_KEYS
    assert (doc["ociVersionMin"], doc["ociVersionMax"]) == ("1.0.0", SPEC_VERSION)  # required
    assert _strings(doc["hooks"]) == HOOKS
    options = _strings(doc["mountOptions"])
    assert {"ro", "rw", "bind", "rbind", "rprivate", "nosuid", "rro", "tmpcopyup"} <= set(options)
    assert not {"idmap", "acl"} & set(options)  # refused by nsprim: not claimed
    assert isinstance(doc["annotations"], dict) and all(isinstance(v, str) for v in doc["annotations"].values())
    _strings(doc["potentiallyUnsafeConfigAnnotations"])
    linux = doc["linux"]
    assert set(linux) <= LINUX_KEYS
    kernel_ns = {"mnt": "mount", "net": "network"}
    here = {kernel_ns.get(n, n) for n in os.listdir("/proc/self/ns") if not n.endswith("_for_children")}
    assert set(_strings(linux["namespaces"], NAMESPACE_TYPES)) == here & NAMESPACE_TYPES
    caps = _strings(linux["capabilities"])
    assert all(re.fullmatch(r"CAP_[A-Z_]+", c) for c in caps) and "CAP_SYS_ADMIN" in caps
    with open("/proc/sys/kernel/cap_last_cap") as f:
        assert len(caps) == int(f.read()) + 1
    assert _bools(linux["cgroup"], {"v1", "v2", "systemd", "systemdUser", "rdma"}) == {
        "v1": True, "v2": True, "systemd": False, "systemdUser": False, "rdma": False,
    }  # fmt: skip
    seccomp = linux["seccomp"]
    assert seccomp["enabled"] is True
    actions = _strings(seccomp["actions"], SECCOMP_ACTIONS)
    assert "SCMP_ACT_ERRNO" in actions and "SCMP_ACT_NOTIFY" not in actions  # nsprim runs no seccomp agent
    assert set(_strings(seccomp["operators"], SECCOMP_OPERATORS)) == SECCOMP_OPERATORS
    assert "SCMP_ARCH_X86_64" in _strings(seccomp["archs"], SECCOMP_ARCHES) or os.uname().machine != "x86_64"
    known = set(_strings(seccomp["knownFlags"], SECCOMP_FLAGS))
    assert set(_strings(seccomp["supportedFlags"], SECCOMP_FLAGS)) <= known
    assert "SECCOMP_FILTER_FLAG_LOG" in seccomp["supportedFlags"]  # any kernel of the last years
    for key in ("apparmor", "selinux", "netDevices"):
        assert _bools(linux[key], {"enabled"}) == {"enabled": False}
    assert _bools(linux["intelRdt"], {"enabled", "schemata", "monitoring"})["enabled"] is False
    assert linux["mountExtensions"] == {"idmap": {"enabled": False}}
    assert linux["memoryPolicy"] == {"modes": [], "flags": []}
