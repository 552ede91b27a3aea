#!/usr/bin/env bash
# One-command setup for a fresh Debian/Ubuntu machine, as root.
#   bash scripts/quickstart.sh demo   # set up, then run the demo
#   bash scripts/quickstart.sh test   # set up, then run the test suite (host + cgroup v2 VM)
# Anything after the first word is passed on to nox (e.g. `test -- -k namespace`).
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-test}
shift || true

if [ "$(id -u)" -ne 0 ]; then
    echo "quickstart: run as root (nsprim's demo and tests create namespaces, mounts and cgroups)" >&2
    exit 1
fi

# System packages: a C compiler and Python headers for the cffi core, the tools
# the tests compare against or drive (iproute2, util-linux, uidmap), and for the
# cgroup v2 VM: QEMU, a stock Debian kernel and busybox.  Every tool any test
# uses is listed here: under CI=true a test skipped for a missing tool fails.
packages=(gcc libc6-dev python3 python3-dev python3-venv iproute2 util-linux uidmap procps)
if [ "$what" = test ] || [ "$what" = bench ]; then
    # busybox-static: the tests' root file systems; linux-libc-dev: the syscall and
    # capability tables are checked against the kernel headers; libseccomp2: the
    # seccomp compiler is checked against libseccomp; tar: GNU tar reads our layers.
    # runc: the OCI tests compare generated specs and exported bundles with it;
    # podman (with conmon) and containerd (ctr, the runc shim) drive nsprim-runtime;
    # skopeo reads and writes the image layouts nsprim makes and fills the tests'
    # docker-registry (htpasswd from apache2-utils, its TLS certificate from openssl);
    # umoci unpacks what skopeo pulled in bench_images.py.
    packages+=(linux-libc-dev libseccomp2 tar busybox-static runc podman conmon containerd skopeo)
    packages+=(docker-registry apache2-utils openssl umoci)
    packages+=(qemu-system-x86 kmod xz-utils zstd cpio)
    if grep -qi debian /etc/os-release; then packages+=(linux-image-amd64); else packages+=(linux-image-generic); fi
fi
if [ "$what" = bench ]; then
    packages+=(bubblewrap crun runc)
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# nox in a private virtual environment (system pip may be externally managed).
python=${PYTHON:-python3}
if [ ! -x .venv-tools/bin/nox ]; then
    "$python" -m venv .venv-tools
    .venv-tools/bin/pip install -q --upgrade pip
    .venv-tools/bin/pip install -q nox
fi

case "$what" in
    demo) exec .venv-tools/bin/nox -s demo "$@" ;;
    test) exec .venv-tools/bin/nox -s tests vm "$@" ;;
    bench) exec .venv-tools/bin/nox -s bench "$@" ;;
    *) exec .venv-tools/bin/nox -s "$what" "$@" ;;
esac
