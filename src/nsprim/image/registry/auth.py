"""Registry credentials, found where podman and docker keep them, and the challenges that ask for them.

:func:`find_credentials` reads the ``auths`` map of the auth files in the order
podman reads them: an explicit file alone if one is given; otherwise
``$REGISTRY_AUTH_FILE`` (or, without it, ``${XDG_RUNTIME_DIR}/containers/auth.json``),
``${XDG_CONFIG_HOME:-~/.config}/containers/auth.json``, then ``~/.docker/config.json``.
An entry is keyed by a registry (``127.0.0.1:5000``, ``https://index.docker.io/v1/``)
or a repository in it (``quay.io/team``, the longest match wins) and holds
``auth``, the base64 of ``user:password`` (or ``username`` and ``password``).
Credential helpers (``credHelpers``, ``credsStore``) are not run.

:func:`parse_challenge` reads a ``WWW-Authenticate`` header: ``Basic realm=...``
or ``Bearer realm=...,service=...,scope=...`` (the token flow of the
distribution spec, anonymous or with the credentials found).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from ..._dataclass import dataclass, field
from ...errors import RegistryAuthError

__all__ = ["Credentials", "Challenge", "auth_files", "find_credentials", "parse_challenge"]

_HUB_KEYS = ("docker.io", "index.docker.io", "registry-1.docker.io")
_PARAM = re.compile(r'\s*([A-Za-z][\w-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')


@dataclass(frozen=True)
class Credentials:
    """A user name and password (or token) for a registry, and the file they came from."""

    username: str
    password: str = field(repr=False)
    source: str = ""

    def basic(self) -> str:
        """The ``Authorization`` header's value for basic auth."""
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


@dataclass(frozen=True)
class Challenge:
    """What a ``401`` asks for: its scheme (``basic``, ``bearer``, lowercase) and parameters."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def scopes(self) -> tuple[str, ...]:
        """The bearer challenge's ``scope`` (several separated by spaces)."""
        return tuple(self.params.get("scope", "").split())


def parse_challenge(header: str) -> Challenge:
    """The first challenge of a ``WWW-Authenticate`` header (a registry sends one)."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None:  # another challenge, or a token68: what follows is not ours
            break
        value = m.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[m.group(1).lower()] = value
        pos = m.end()
    return Challenge(scheme.lower(), params)


def auth_files(auth_file: str | os.PathLike[str] | None = None) -> list[Path]:
    """The files credentials are looked for in, in order (existing or not)."""
    if auth_file is not None:
        return [Path(auth_file)]
    env = os.environ
    files = []
    if env.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env["REGISTRY_AUTH_FILE"]))
    elif env.get("XDG_RUNTIME_DIR"):
        files.append(Path(env["XDG_RUNTIME_DIR"]) / "containers/auth.json")
    config_home = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    files.append(config_home / "containers/auth.json")
    files.append(Path.home() / ".docker/config.json")
    return files


def _normalise(key: str) -> str:
    """An ``auths`` key as ``host[/path]``: no scheme, no docker's ``/v1/`` or ``/v2/``, no slash at the end."""
    key = re.sub(r"^[a-z]+://", "", key.strip()).rstrip("/")
    key = re.sub(r"/v[12]$", "", key)
    host, sep, path = key.partition("/")
    if host in _HUB_KEYS:
        host = "docker.io"
    return host + sep + path


def _candidates(registry: str, repository: str) -> Iterator[str]:
    """The keys that match *repository* in *registry*, most specific first."""
    host = "docker.io" if registry in _HUB_KEYS else registry
    parts = repository.split("/")
    for n in range(len(parts), 0, -1):
        yield f"{host}/{'/'.join(parts[:n])}"
    yield host


def _decode(entry: object, path: Path, key: str) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    if entry.get("auth"):
        try:
            user, sep, password = base64.b64decode(str(entry["auth"]), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise RegistryAuthError(f"read `{path}`: auths[{key!r}].auth is not base64 of user:password") from None
        if not sep:
            raise RegistryAuthError(f"read `{path}`: auths[{key!r}].auth has no `:` between user and password")
        return Credentials(user, password, str(path))
    if entry.get("username") and "password" in entry:
        return Credentials(str(entry["username"]), str(entry["password"]), str(path))
    return None


def find_credentials(
    registry: str, repository: str = "", auth_file: str | os.PathLike[str] | None = None
) -> Credentials | None:
    """The credentials the auth files hold for *repository* in *registry*, or ``None``.

    A file that is there but is not JSON (or whose entry is malformed) is a
    :class:`~nsprim.errors.RegistryAuthError` naming it; an explicit
    *auth_file* that is missing is one too.
    """
    for path in auth_files(auth_file):
        try:
            document = json.loads(path.read_text())
        except FileNotFoundError:
            if auth_file is not None:
                raise RegistryAuthError(f"read `{path}`: no such auth file", registry=registry) from None
            continue
        except (OSError, ValueError) as exc:
            raise RegistryAuthError(f"read `{path}`: {exc}", registry=registry) from None
        auths = document.get("auths") if isinstance(document, dict) else None
        if not isinstance(auths, dict):
            continue
        by_key = {_normalise(k): (k, v) for k, v in auths.items()}
        for wanted in _candidates(registry, repository):
            if wanted in by_key:
                key, entry = by_key[wanted]
                found = _decode(entry, path, key)
                if found is not None:
                    return found
    return None
