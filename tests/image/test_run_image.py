"""Running an image of the store: ``Container.from_image`` pulls on first use from a real registry
(docker-registry, the image put in by skopeo) and the container is what the configuration says:
Entrypoint and Cmd (either replaced), Env, WorkingDir, User resolved in the image's /etc/passwd and
/etc/group, StopSignal; a user the image has not is refused, a symlinked /etc/passwd not followed."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import secrets
import signal
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nsprim.container import Container, find, list_containers
from nsprim.errors import ImageError, ImageNotFoundError
from nsprim.image import ContainerSettings, ImageConfig, ImageLayout, ImageRootFS, Manifest, MediaType, Platform
from nsprim.image.runconfig import parse_stop_signal, read_image_file, resolve_user
from nsprim.image.store import ImageStore

from ..conftest import requires_root
from ..oci.bundles import make_rootfs
from .registries import Registry, plain_registry

__all__ = ["plain_registry"]  # fixtures, imported

pytestmark = requires_root

PASSWD = b"root:x:0:0:root:/root:/bin/sh\nworker:x:1234:2345:a worker:/home/worker:/bin/sh\n"
GROUP = b"root:x:0:\nstaff:x:2345:\nextra:x:3456:someone,worker\nother:x:4567:\n"
SCRIPT = 'cat greeting; echo "$MOOD $HOME"; pwd; id -u; id -g; id -G'


def _tar(files: dict[str, bytes], root: Path | None = None) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        if root is not None:
            tar.add(root, arcname=".")
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def _image(layout: ImageLayout, tars: list[bytes], settings: ContainerSettings, tag: str) -> None:
    layers = tuple(layout.write_blob(gzip.compress(t, mtime=0), MediaType.OCI_LAYER_GZIP) for t in tars)
    config = ImageConfig(
        architecture=Platform.host().architecture, os="linux", config=settings,
        rootfs=ImageRootFS(type="layers", diff_ids=tuple("sha256:" + hashlib.sha256(t).hexdigest() for t in tars)),
    )  # fmt: skip
    manifest = Manifest(schema_version=2, media_type=MediaType.OCI_MANIFEST,
                        config=layout.write_blob(config.dumps(), MediaType.OCI_CONFIG), layers=layers)  # fmt: skip
    layout.add_image(manifest, tag)


@pytest.fixture(scope="module")
def app(plain_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``run/app:1`` in the registry: busybox, then /etc/passwd, /etc/group and /srv/greeting."""
    root = tmp_path_factory.mktemp("run-image")
    layout = ImageLayout.create(root / "layout")
    base = _tar({}, make_rootfs(root / "rootfs"))
    top = _tar({"etc/passwd": PASSWD, "etc/group": GROUP, "srv/greeting": b"hello from the image\n"})
    settings = ContainerSettings(entrypoint=("/bin/sh", "-c"), cmd=(SCRIPT,), env=("MOOD=fine", "PATH=/bin"),
                                 working_dir="/srv", user="worker", stop_signal="SIGUSR1")  # fmt: skip
    _image(layout, [base, top], settings, "app")
    plain_registry.skopeo_copy(f"oci:{layout.path}:app", "run/app:1")
    return f"{plain_registry.host}/run/app:1"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    d = tmp_path / "state"
    monkeypatch.setenv("NSPRIM_STATE_DIR", str(d))
    yield d
    for box in list_containers():
        box.remove(force=True)


def test_from_image_pulls_on_first_use_and_runs_as_the_configuration_says(app: str, tmp_path: Path) -> None:
    root = tmp_path / "store"
    with pytest.raises(ImageNotFoundError):
        Container.from_image(app, store=root, pull=False)
    box = Container.from_image(app, store=root, tls_verify=False)
    r = box.run(capture_output=True)
    assert (r.returncode, r.stderr) == (0, b"")
    assert r.stdout.decode().splitlines() == [
        "hello from the image", "fine /home/worker", "/srv", "1234", "2345", "2345 3456",
    ]  # fmt: skip
    assert box.config.stop_signal == signal.SIGUSR1
    # the second time the store has it: nothing is pulled (the registry is not asked)
    store = ImageStore(root)
    assert Container.from_image(app, store=store, pull=False).config == box.config


def test_the_command_and_the_entrypoint_are_replaced(app: str, tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    store.pull(app, tls_verify=False)
    r = Container.from_image(app, ["echo replaced; id -un"], store=store).run(capture_output=True)
    assert r.stdout == b"replaced\nworker\n", r.stderr
    r = Container.from_image(app, ["one", "two"], store=store, entrypoint=["/bin/echo"]).run(capture_output=True)
    assert r.stdout == b"one two\n", r.stderr


def test_a_detached_container_of_the_image_is_stopped_with_its_stop_signal(app: str, tmp_path: Path,
                                                                            state: Path) -> None:  # fmt: skip
    name = f"img-{secrets.token_hex(4)}"
    script = "trap 'echo stopped by usr1; exit 3' USR1; echo up; while :; do sleep 0.05; done"
    box = Container.from_image(app, [script], store=tmp_path / "store", tls_verify=False).name(name).detach()
    box.start().close()
    detached = find(name)
    deadline = time.monotonic() + 20
    while b"up" not in detached.log_path.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    detached.stop(timeout=20)
    assert detached.returncode == 3 and b"stopped by usr1" in detached.log_path.read_bytes()
    detached.remove()


# ---- User, as the image's files say -----------------------------------------------------------


def _layer(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    root.mkdir(parents=True, exist_ok=True)
    return root


def test_users_and_groups_resolve_by_name_number_and_mixture(tmp_path: Path) -> None:
    layers = [_layer(tmp_path / "top", {"etc/passwd": PASSWD, "etc/group": GROUP})]
    assert resolve_user("", layers) == resolve_user("0", layers)
    root = resolve_user("", layers)
    assert (root.uid, root.gid, root.home) == (0, 0, "/root")
    worker = resolve_user("worker", layers)
    assert (worker.uid, worker.gid, worker.groups, worker.home) == (1234, 2345, (3456,), "/home/worker")
    assert resolve_user("1234", layers) == worker
    assert resolve_user("worker:other", layers).gid == 4567
    assert resolve_user("1234:99", layers).gid == 99
    stranger = resolve_user("777:88", layers)  # numbers the image does not know are taken as they are
    assert (stranger.uid, stranger.gid, stranger.groups, stranger.home) == (777, 88, (), "")
    with pytest.raises(ImageError, match="no user `nobody` in the image's /etc/passwd"):
        resolve_user("nobody", layers)
    with pytest.raises(ImageError, match="no group `wheel` in the image's /etc/group"):
        resolve_user("worker:wheel", layers)


def test_files_are_read_as_the_overlay_shows_them_and_never_through_a_link(tmp_path: Path) -> None:
    base = _layer(tmp_path / "base", {"etc/passwd": PASSWD, "etc/group": GROUP})
    top = _layer(tmp_path / "top", {"etc/motd": b"hi\n"})
    assert read_image_file([top, base], "etc/passwd") == PASSWD
    os.mknod(top / "etc/passwd", 0o600 | 0o020000, 0)  # a whiteout: deleted in the top layer
    assert read_image_file([top, base], "etc/passwd") is None
    with pytest.raises(ImageError, match="no user `worker`"):
        resolve_user("worker", [top, base])
    opaque = _layer(tmp_path / "opaque", {"etc/motd": b"hi\n"})
    os.setxattr(opaque / "etc", "trusted.overlay.opaque", b"y")
    assert read_image_file([opaque, base], "etc/group") is None
    linked = _layer(tmp_path / "linked", {})
    (linked / "etc").mkdir()
    (linked / "etc/passwd").symlink_to("/etc/shadow")
    with pytest.raises(ImageError, match="`/etc/passwd` is a symbolic link"):
        resolve_user("root", [linked, base])


def test_stop_signals_are_names_numbers_and_realtime_offsets() -> None:
    assert parse_stop_signal("SIGTERM") == parse_stop_signal("term") == parse_stop_signal("15") == signal.SIGTERM
    assert parse_stop_signal("SIGRTMIN+3") == signal.SIGRTMIN + 3
    for bad in ("SIGNOPE", "0", "999", "RTMIN+x"):
        with pytest.raises(ImageError, match="not a signal"):
            parse_stop_signal(bad)


def test_a_commit_of_a_containers_upper_dir_keeps_its_changes_deletions_included(app: str, tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    base = store.pull(app, tls_verify=False)
    upper = tmp_path / "upper"
    upper.mkdir()
    change = ["rm /srv/greeting; echo new > /srv/new"]
    r = Container.from_image(app, change, store=store, upper=upper).user(0).run(capture_output=True)
    assert r.returncode == 0, r.stderr
    changed = store.commit(base, upper, "localhost/app:changed", comment="greeting out, new in")
    assert changed.layers[:2] == base.layers and len(changed.layers) == 3
    assert changed.config.config == base.config.config and changed.config.history[-1].comment == "greeting out, new in"
    assert changed.manifest.layers[:2] == base.manifest.layers
    r = Container.from_image("localhost/app:changed", ["ls /srv; cat /srv/new"], store=store).run(capture_output=True)
    assert (r.returncode, r.stdout) == (0, b"new\nnew\n"), r.stderr
    assert not any(p.name == "layer.tar" for p in store.layers.root.rglob("*"))
    assert len(store.layers.layers()) == 3


def test_a_bundle_of_the_image_runs_under_nsprim_runtime_as_the_configuration_says(app: str, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from nsprim.image.bundle import STOP_SIGNAL_ANNOTATION, image_bundle

    from ..oci.conftest import runtime_command

    store = ImageStore(tmp_path / "store")
    store.pull(app, tls_verify=False)
    bundle = image_bundle(store, app, tmp_path / "bundle")
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["user"] == {"uid": 1234, "gid": 2345, "additionalGids": [3456]}
    assert config["annotations"][STOP_SIGNAL_ANNOTATION] == str(int(signal.SIGUSR1))
    parent = os.environ.get("NSPRIM_CGROUP_PARENT", "/nsprim-test-oci")
    config["linux"]["cgroupsPath"] = f"{parent}/bundle-{secrets.token_hex(4)}"
    (bundle / "config.json").write_text(json.dumps(config))
    r = subprocess.run([*runtime_command(), "--root", str(tmp_path / "rt"), "run", "--bundle", str(bundle),
                        f"img-{secrets.token_hex(4)}"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["hello from the image", "fine /home/worker", "/srv", "1234", "2345", "2345 3456"]
    with pytest.raises(Exception, match="not an empty directory"):
        image_bundle(store, app, bundle)
    # the command line: the same bundle, the command replaced
    env = {**os.environ, "NSPRIM_STORE": str(tmp_path / "store")}
    r = subprocess.run([sys.executable, "-m", "nsprim", "image", "bundle", "-o", str(tmp_path / "b2"), app, "echo hi"],
                       capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert (r.returncode, r.stdout) == (0, f"{tmp_path / 'b2'}\n"), r.stderr
    assert json.loads((tmp_path / "b2/config.json").read_text())["process"]["args"] == ["/bin/sh", "-c", "echo hi"]
