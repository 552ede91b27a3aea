"""Namespaces by hand, with nsprim: what people do with /proc/<pid>/ns, mount --bind and `ip netns exec`.

1. start a process in new namespaces (pid, net, uts, ipc, mnt, cgroup);
2. list its namespace ids against ours;
3. persist its network namespace as /run/netns/NAME, so iproute2 sees it;
4. run `ip addr` inside it, with `ip netns exec` and with nsprim's own join;
5. clean up: unpersist, kill, reap.

Run as root: ``python examples/inspect_namespaces.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import nsprim
from nsprim import NamespaceType


def main() -> int:
    if os.geteuid() != 0:
        print("run me as root (or see examples/rootless.py)", file=sys.stderr)
        return 1
    # The bind mount below must not reach the host's mount table: work in a
    # private mount namespace of our own (its / is made rprivate).
    nsprim.unshare("mnt")

    name = f"nsprim-demo-{os.getpid()}"
    new = {"pid", "net", "uts", "ipc", "mnt", "cgroup"}
    with nsprim.spawn(["sleep", "60"], new=new, hostname="demo-box") as child:
        print(f"started pid {child.pid} in new {', '.join(sorted(new))} namespaces\n")
        ours, theirs = nsprim.namespace_ids(), child.namespace_ids()
        print(f"{'type':8} {'this process':22} {'child':22}")
        for t in NamespaceType:
            if t in ours:
                mark = "  (shared)" if ours[t] == theirs[t] else ""
                print(f"{t.value:8} {ours[t]!s:22} {theirs[t]!s:22}{mark}")

        with child.namespace("net") as net:
            path = net.persist_net(name)
        print(f"\npersisted the child's network namespace at {path}")
        try:
            if shutil.which("ip"):
                listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
                print(f"`ip netns list` shows: {listed.split()[0] if listed else '(nothing)'} ...")
                print(f"\n$ ip netns exec {name} ip -brief addr")
                subprocess.run(["ip", "netns", "exec", name, "ip", "-brief", "addr"], check=True)
            with nsprim.Namespace.from_path(path, "net") as net, child.namespace("uts") as uts:
                print("\nthe same with nsprim.run(join=[net, uts]):")
                script = "echo hostname: $(hostname); tail -n +3 /proc/self/net/dev"
                nsprim.run(["sh", "-c", script], join=[net, uts])
        finally:
            nsprim.unpersist(path)
            print(f"\nremoved {path}")
        child.kill()
        print(f"child exited with {child.wait()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
