"""``network("veth")``: a free /30 per container, the loopback up, real errors, rootless refusals.

Every test that links containers runs its "host" in a network namespace made
for the test (a child process, its loopback up): the veth pairs, their
addresses and all the traffic stay in namespaces the test made.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import nsprim
from nsprim._sys.netlink import HostNetwork
from nsprim.container import Container, Veth
from nsprim.container.veth import free_subnet
from nsprim.errors import ConfigError

from ..conftest import IS_ROOT, requires_root, run_as_nobody

SRC = str(Path(nsprim.__file__).resolve().parent.parent)

# What every container runs: the loopback works (127.0.0.1 bound, and reached),
# then it calls its host side (its default gateway) and answers the host side's call.
PAYLOAD = textwrap.dedent(
    """
    import socket, struct, sys
    lo = socket.socket(); lo.bind(("127.0.0.1", 0)); lo.listen()
    c = socket.create_connection(lo.getsockname(), timeout=10); a, _ = lo.accept()
    c.sendall(b"lo"); assert a.recv(2) == b"lo"
    up = int(open("/sys/class/net/lo/flags").read(), 16) & 1
    for line in open("/proc/net/route").read().splitlines()[1:]:
        f = line.split()
        if f[1] == "00000000":
            gateway = socket.inet_ntoa(struct.pack("<I", int(f[2], 16)))
    server = socket.socket(); server.bind(("0.0.0.0", 7000)); server.listen()
    s = socket.create_connection((gateway, int(sys.argv[1])), timeout=20)
    s.sendall(f"lo-up={up} lo-bound=1 gateway={gateway}".encode()); s.close()
    server.settimeout(30)
    conn, _ = server.accept(); conn.sendall(b"pong"); conn.close()
    """
)


def in_test_netns(code: str, timeout: float = 120, **env: str) -> dict[str, object]:
    """Run *code* as the host of the containers it starts, in a new network
    namespace (with *env* added); it prints one JSON object, which is returned."""
    r = nsprim.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        new={"net"},
        env={**os.environ, "PYTHONPATH": SRC, **env},
        capture_output=True,
        timeout=timeout,
        steps=[nsprim.plan.InterfaceUp("lo")],
    )
    out = (r.stdout or b"").decode()
    assert r.returncode == 0, (out, (r.stderr or b"").decode())
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


HOST_PART = """
import ipaddress, json, os, socket, sys
from pathlib import Path
from nsprim._sys.netlink import Rtnl
from nsprim.container import Container, Veth

def ours():  # the 10.200/16 addresses and veth links of this namespace
    with Rtnl("test") as rt:
        pool = ipaddress.IPv4Network("10.200.0.0/16")
        nets = sorted({str(n.network) for n in rt.ipv4_in_use() if n.network.subnet_of(pool)})
    return nets, sorted(n for _, n in socket.if_nameindex() if n.startswith("nsv"))

def ended():  # once the containers ended: no address left at once, no link once the kernel freed their namespaces
    import time
    nets = ours()[0]
    deadline = time.monotonic() + 60
    while ours()[1] and time.monotonic() < deadline:
        time.sleep(0.05)
    return [nets, ours()[1]]
"""


@requires_root
def test_two_veth_containers_at_once_reach_their_host_sides_with_lo_up() -> None:
    result = in_test_netns(
        HOST_PART
        + f"""
payload = {PAYLOAD!r}
listeners, boxes = [], []
for i in range(2):
    ls = socket.socket(); ls.bind(("0.0.0.0", 0)); ls.listen(); ls.settimeout(60)
    listeners.append(ls)
    box = Container([sys.executable, "-c", payload, str(ls.getsockname()[1])]).host_root().network("veth")
    boxes.append(box.start())
during = ours()  # both running: each waits for the host side's call
report = []
for ls, box in zip(listeners, boxes):
    conn, (peer, _) = ls.accept()
    said = conn.recv(200).decode(); local = conn.getsockname()[0]; conn.close()
    back = socket.create_connection((str(box.veth.container_address.ip), 7000), timeout=20)
    pong = back.recv(4).decode(); back.close()
    report.append(dict(said=said, peer=peer, local=local, pong=pong, host=str(box.veth.host_address),
                       container=str(box.veth.container_address), interface=box.veth.host_interface))
codes = [box.wait(timeout=60) for box in boxes]
for box in boxes: box.close()
print(json.dumps(dict(report=report, during=during, after=ended(), codes=codes)))
"""
    )
    report = result["report"]
    assert isinstance(report, list) and len(report) == 2
    nets = set()
    for entry in report:
        host, container = ipaddress.IPv4Interface(entry["host"]), ipaddress.IPv4Interface(entry["container"])
        assert host.network == container.network and host.network.prefixlen == 30
        assert host.network.subnet_of(ipaddress.IPv4Network("10.200.0.0/16"))
        nets.add(host.network)
        assert entry["said"] == f"lo-up=1 lo-bound=1 gateway={host.ip}"
        assert (entry["peer"], entry["local"], entry["pong"]) == (str(container.ip), str(host.ip), "pong")
    assert len(nets) == 2  # two at once: two different /30s
    assert result["codes"] == [0, 0]
    during_nets, during_links = result["during"]  # type: ignore[misc]
    assert sorted(during_nets) == sorted(str(n) for n in nets)
    assert sorted(during_links) == sorted(e["interface"] for e in report)
    assert result["after"] == [[], []]  # both /30s free again as their containers ended; the pairs gone


@requires_root
def test_concurrent_starts_from_processes_and_threads_never_share_a_subnet() -> None:
    # Three processes, three threads each, all starting at once; each container is alive
    # until every one has been started and reported its addresses.
    result = in_test_netns(
        HOST_PART
        + """
import subprocess, threading
child = '''
import sys, threading
from nsprim.container import Container
boxes, lock = [], threading.Lock()
def start():
    box = Container(["sleep", "60"]).host_root().network("veth").start()
    with lock: boxes.append(box)
threads = [threading.Thread(target=start) for _ in range(3)]
for t in threads: t.start()
for t in threads: t.join()
for box in boxes: print(box.veth.host_address, box.veth.container_address, flush=True)
sys.stdin.readline()
for box in boxes: box.close()
'''
procs = [subprocess.Popen([sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
         for _ in range(3)]
lines = [p.stdout.readline().split() for p in procs for _ in range(3)]
alive = ours()
for p in procs: p.stdin.write("\\n"); p.stdin.flush()
codes = [p.wait(timeout=60) for p in procs]
print(json.dumps(dict(lines=lines, alive=alive, codes=codes, after=ended())))
""",
        timeout=240,
    )
    lines = result["lines"]
    assert isinstance(lines, list) and len(lines) == 9 and all(len(x) == 2 for x in lines), result
    nets = {ipaddress.IPv4Interface(h).network for h, _ in lines}
    assert len(nets) == 9 and all(ipaddress.IPv4Interface(c).network in nets for _, c in lines)
    assert sorted(result["alive"][0]) == sorted(str(n) for n in nets)  # type: ignore[index]
    assert result["codes"] == [0, 0, 0] and result["after"] == [[], []]


@requires_root
def test_given_addresses_are_used_and_a_collision_or_an_empty_pool_refused() -> None:
    result = in_test_netns(
        HOST_PART
        + """
from nsprim.errors import ConfigError
probe = "import socket, sys; s = socket.create_connection(('10.99.0.1', int(sys.argv[1])), timeout=10); s.recv(1)"
ls = socket.socket(); ls.bind(("0.0.0.0", 0)); ls.listen(); ls.settimeout(30)
given = Veth(host_address="10.99.0.1/24", container_address="10.99.0.7/24")
out = {}
template = Container([sys.executable, "-c", probe, str(ls.getsockname()[1])]).host_root()
with template.network("veth", given).start() as box:
    conn, (peer, _) = ls.accept()  # it waits for this connection to close
    out["peer"] = peer
    try:
        Container(["true"]).host_root().network("veth", Veth("10.99.0.201/30", "10.99.0.202/30")).run()
    except ConfigError as exc:
        out["collision"] = str(exc)
    conn.close()
    out["wait"] = box.wait(timeout=30)
tiny = Veth(pool="10.201.0.0/30")
with Container(["sleep", "60"]).host_root().network("veth", tiny).start() as first:
    out["first"] = str(first.veth.container_address)
    try:
        Container(["true"]).host_root().network("veth", tiny).run()
    except ConfigError as exc:
        out["exhausted"] = str(exc)
out["after"] = ended()
out["links"] = sorted(n for _, n in socket.if_nameindex() if n != "lo")
print(json.dumps(out))
"""
    )
    assert result["peer"] == "10.99.0.7" and result["wait"] == 0
    assert "host_address `10.99.0.201/30`: its network overlaps the host's address 10.99.0.1/24 on nsv" in str(
        result["collision"]
    )
    assert result["first"] == "10.201.0.2/30"
    assert "no free /30 left in the pool `10.201.0.0/30`" in str(result["exhausted"])
    assert result["after"] == [[], []] and result["links"] == []


@requires_root
def test_a_failed_veth_step_reports_the_kernels_error() -> None:
    # The peer cannot be called `lo` in a namespace that has a loopback: the kernel says EEXIST.
    result = in_test_netns(
        HOST_PART
        + """
from nsprim.errors import SyscallError
try:
    Container(["true"]).host_root().network("veth", Veth(container_interface="lo")).run()
except SyscallError as exc:
    err = dict(errno=exc.errno, text=str(exc), op=exc.operation)
print(json.dumps(dict(err=err, after=ended())))
"""
    )
    err = result["err"]
    assert isinstance(err, dict)
    assert err["errno"] == 17 and err["op"] == "netlink", err
    assert str(err["text"]).startswith("veth: create `nsv") and "its peer `lo`" in str(err["text"])
    assert ": File exists" in str(err["text"]) and "Input/output" not in str(err["text"])
    assert result["after"] == [[], []]


@pytest.mark.skipif(not IS_ROOT, reason="needs root (to become nobody)")
def test_rootless_veth_and_host_networks_are_one_line_errors_with_the_fix() -> None:
    def body() -> str:
        import contextlib
        import io

        from nsprim.cli import main

        lines = []
        for net in ("veth", "host"):
            try:
                Container(["true"]).host_root().network(net).run()
                lines.append(f"{net}: ran")
            except ConfigError as exc:
                lines.append(f"{net}: {exc}")
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                status = main(["run", "--net", net, "--", "true"])
            text = err.getvalue()
            lines.append(f"cli {status} {text.count(chr(10))} {text.strip()}")
        return "\n".join(lines)

    lines = run_as_nobody(body).split("\n")
    assert lines[0].startswith("veth: network `veth` needs root") and "run as root" in lines[0]
    assert lines[1].startswith("cli 125 1 nsprim run: network `veth` needs root")  # one line
    assert lines[2].startswith("host: network `host` with a user namespace") and "run as root" in lines[2]
    assert "--net none" in lines[0] and "--net none" in lines[2]
    assert lines[3].startswith("cli 125 1 nsprim run: network `host` with a user namespace")


@requires_root
def test_host_network_with_a_user_namespace_is_refused_before_starting() -> None:
    with pytest.raises(ConfigError, match=r"network `host` with a user namespace.*no user namespace"):
        Container(["true"]).host_root().user_namespace().network("host").run()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"host_address": "10.1.0.1/30"},
        {"host_address": "10.1.0.1", "container_address": "10.1.0.2"},
        {"host_address": "10.1.0.1/30", "container_address": "10.1.0.9/30"},
        {"host_address": "10.1.0.0/30", "container_address": "10.1.0.1/30"},
        {"host_address": "nonsense/30", "container_address": "10.1.0.2/30"},
        {"pool": "10.1.0.0/31"},
        {"pool": "10.1.0.1/16"},
        {"pool": None},
        {"container_interface": "a/b"},
        {"container_interface": "x" * 16},
    ],
)
def test_bad_veth_settings_are_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="veth"):
        Veth(**kwargs)  # type: ignore[arg-type]


networks = st.builds(
    lambda a, p: HostNetwork(ipaddress.IPv4Network((a, p), strict=False), "test"),
    st.integers(0x0AC80000 - 4096, 0x0AC80000 + 4096),
    st.integers(8, 32),
)


@given(st.lists(networks, max_size=12))
def test_the_chosen_subnet_is_the_first_free_one(used: list[HostNetwork]) -> None:
    pool = ipaddress.IPv4Network("10.200.0.0/24")
    chosen = free_subnet(pool, used)
    subnets = list(pool.subnets(new_prefix=30))
    free = [s for s in subnets if not any(s.overlaps(u.network) for u in used)]
    assert chosen == (free[0] if free else None)


@requires_root
def test_a_detached_container_keeps_its_address_until_it_ends(tmp_path: Path) -> None:
    # A state directory of its own: other runs' checks look for leftovers in the shared one.
    result = in_test_netns(
        HOST_PART
        + """
import secrets
from nsprim.container import find
name = f"veth-detached-{secrets.token_hex(4)}"
box = Container(["sleep", "60"]).name(name).host_root().network("veth").detach().start()
address = str(box.veth.host_address)
box.close()  # only the handle: the container goes on, and keeps its /30
kept = ours()[0]
found = find(name)
found.stop(timeout=10)
found.remove()
import time
deadline = time.monotonic() + 60  # freed with its network namespace, which the kernel frees in the background
while ours() != ([], []) and time.monotonic() < deadline:
    time.sleep(0.05)
print(json.dumps(dict(address=address, kept=kept, after=ours())))
""",
        NSPRIM_STATE_DIR=str(tmp_path / "state"),
    )
    net = str(ipaddress.IPv4Interface(str(result["address"])).network)
    assert result["kept"] == [net] and result["after"] == [[], []]
    assert not (tmp_path / "state" / "containers").exists() or not any((tmp_path / "state" / "containers").iterdir())
