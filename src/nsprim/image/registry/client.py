"""One registry over HTTP(S): connections kept alive and shared by threads, auth, redirects and errors.

:class:`RegistryClient` speaks to one registry host.  Its first request is the
distribution spec's ``GET /v2/``, which settles the scheme (HTTPS; with
``tls_verify=False`` an unverified HTTPS, or plain HTTP where the registry does
not speak TLS) and the challenge: basic auth with the credentials of the auth
files, or a bearer token asked of the challenge's realm for the client's
scopes (anonymously without credentials).  A ``401`` later (a token of too
small a scope) asks once again with the challenge's scope added.  A redirect
to another host (blob storage) is followed without the registry's
``Authorization``.  Failures are :class:`~nsprim.errors.RegistryError` kinds
naming the registry, the repository, what was asked for and the HTTP status.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import ssl
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import BinaryIO

from ...errors import (
    RegistryAuthError,
    RegistryError,
    RegistryNotFoundError,
    RegistryUnavailableError,
)
from .auth import Challenge, Credentials, auth_files, find_credentials, parse_challenge

__all__ = ["RegistryClient", "Response"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_API_HOSTS = {"docker.io": "registry-1.docker.io"}
_Origin = tuple[str, str, int]  # scheme, host, port
Body = bytes | BinaryIO | io.RawIOBase | None  # a stream: seekable, sent again after a 401


def _origin(scheme: str, host: str, port: int | None) -> _Origin:
    return scheme, host, port or (443 if scheme == "https" else 80)


class Response:
    """An answer whose body is read as a stream; its connection goes back to the pool once read whole."""

    def __init__(self, client: RegistryClient, origin: _Origin, conn: http.client.HTTPConnection,
                 resp: http.client.HTTPResponse) -> None:  # fmt: skip
        self._client, self._origin, self._conn, self._resp = client, origin, conn, resp
        self.status = resp.status
        self.reason = resp.reason
        self.headers = resp.headers

    def read(self, n: int = -1) -> bytes:
        return self._resp.read() if n < 0 else self._resp.read(n)

    def read1(self, n: int) -> bytes:
        """Up to *n* bytes, what has arrived (at least one byte, or none at the body's end)."""
        return self._resp.read1(n)

    def header(self, name: str) -> str:
        return self.headers.get(name, "") or ""

    def close(self) -> None:
        """Done with the answer: its connection is kept for another request if the body was read whole."""
        if self._resp.isclosed() and not self._resp.will_close and self._conn.sock is not None:
            self._client._release(self._origin, self._conn)
        else:
            self.discard()

    def discard(self) -> None:
        """Done with the answer, its connection closed (a transfer that failed midway)."""
        self._resp.close()
        self._conn.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RegistryClient:
    """Requests to the registry *registry* (``host[:port]`` as an image reference names it)."""

    def __init__(self, registry: str, *, scopes: Iterable[str] = (), tls_verify: bool = True,
                 auth_file: str | os.PathLike[str] | None = None, ca_file: str | os.PathLike[str] | None = None,
                 timeout: float = 60.0) -> None:  # fmt: skip
        self.registry = registry
        host = _API_HOSTS.get(registry, registry)
        parsed = urllib.parse.urlsplit(f"//{host}")
        self._host = parsed.hostname or host
        self._port = parsed.port
        self._tls_verify = tls_verify
        self._scheme = "https"
        self._auth_file = auth_file
        self._timeout = timeout
        if tls_verify:
            self._context = ssl.create_default_context(cafile=os.fspath(ca_file) if ca_file else None)
        else:
            self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            self._context.check_hostname = False
            self._context.verify_mode = ssl.CERT_NONE
        self._lock = threading.Lock()
        self._ping_lock = threading.Lock()
        self._pool: dict[_Origin, list[http.client.HTTPConnection]] = {}
        self._pinged = False
        self._challenge: Challenge | None = None
        self._credentials: Credentials | None = None
        self._credentials_read = False
        self._tokens: dict[tuple[str, ...], str] = {}
        self.scopes: list[str] = list(scopes)

    # ---- connections --------------------------------------------------------------------

    @property
    def origin(self) -> _Origin:
        return _origin(self._scheme, self._host, self._port)

    def _connection(self, origin: _Origin) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            idle = self._pool.get(origin)
            if idle:
                return idle.pop(), True
        scheme, host, port = origin
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=self._timeout, context=self._context), False
        return http.client.HTTPConnection(host, port, timeout=self._timeout), False

    def _release(self, origin: _Origin, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._pool.setdefault(origin, []).append(conn)

    def close(self) -> None:
        """Close the idle connections."""
        with self._lock:
            pools, self._pool = self._pool, {}
        for conns in pools.values():
            for conn in conns:
                conn.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, origin: _Origin, target: str, headers: Mapping[str, str], body: Body,
              where: str) -> Response:  # fmt: skip
        start = body.tell() if body is not None and not isinstance(body, bytes) else 0
        for attempt in range(2):
            conn, reused = self._connection(origin)
            try:
                conn.request(method, target, body=body, headers=dict(headers))
                return Response(self, origin, conn, conn.getresponse())
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                # a kept-alive connection the server has closed meanwhile: once more on a new one
                if reused and attempt == 0 and not isinstance(exc, TimeoutError | ssl.SSLError):
                    if body is not None and not isinstance(body, bytes):
                        body.seek(start)
                    continue
                reason = str(exc) or type(exc).__name__
                raise RegistryUnavailableError(f"{where}: {reason}", registry=self.registry) from None
            except BaseException:
                conn.close()  # a body that gave up midway (its transfer was stopped): the connection is spent
                raise
        raise AssertionError("unreachable")

    # ---- auth ---------------------------------------------------------------------------

    def credentials(self) -> Credentials | None:
        """The credentials the auth files hold for this registry (read once)."""
        if not self._credentials_read:
            repository = next((s.split(":")[1] for s in self.scopes if s.count(":") >= 2), "")
            self._credentials = find_credentials(self.registry, repository, self._auth_file)
            self._credentials_read = True
        return self._credentials

    def _ping(self) -> None:
        # one ping, however many threads ask at once: it settles the scheme they all use
        with self._ping_lock:
            if not self._pinged:
                self._ping_once()

    def _ping_once(self) -> None:
        where = f"ping `{self.registry}`"
        try:
            resp = self._send("GET", self.origin, "/v2/", {}, None, where)
        except RegistryUnavailableError:
            if self._tls_verify or self._scheme != "https":
                raise
            self._scheme = "http"  # asked not to verify: a registry that does not speak TLS at all
            resp = self._send("GET", self.origin, "/v2/", {}, None, where)
        with resp:
            resp.read()
        if resp.status == 401:
            self._challenge = parse_challenge(resp.header("WWW-Authenticate"))
        self._pinged = True

    def _authorization(self, extra_scopes: Iterable[str] = (), refresh: bool = False) -> str | None:
        challenge = self._challenge
        if challenge is None:
            return None
        credentials = self.credentials()
        if challenge.scheme == "basic":
            return credentials.basic() if credentials else None
        if challenge.scheme != "bearer":
            raise RegistryAuthError(
                f"login `{self.registry}`: unsupported auth scheme `{challenge.scheme}`", registry=self.registry
            )
        scopes = tuple(sorted({*self.scopes, *extra_scopes}))
        with self._lock:
            token = None if refresh else self._tokens.get(scopes)
        if token is None:
            token = self._fetch_token(challenge, scopes, credentials)
            with self._lock:
                self._tokens[scopes] = token
        return f"Bearer {token}"

    def _fetch_token(self, challenge: Challenge, scopes: tuple[str, ...], credentials: Credentials | None) -> str:
        realm = challenge.params.get("realm", "")
        url = urllib.parse.urlsplit(realm)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise RegistryAuthError(f"login `{self.registry}`: bearer realm `{realm}` is not a URL",
                                    registry=self.registry)  # fmt: skip
        query = [("service", challenge.params["service"])] if "service" in challenge.params else []
        query += [("scope", s) for s in scopes]
        target = (url.path or "/") + "?" + "&".join(filter(None, (url.query, urllib.parse.urlencode(query))))
        headers = {"Authorization": credentials.basic()} if credentials else {}
        origin = _origin(url.scheme, url.hostname, url.port)
        where = f"login `{self.registry}` at `{realm}`"
        with self._send("GET", origin, target, headers, None, where) as resp:
            data = resp.read()
        if resp.status in (401, 403):
            who = f"as `{credentials.username}` (from `{credentials.source}`)" if credentials else "anonymously"
            raise RegistryAuthError(f"{where}: HTTP {resp.status}, no token {who}", registry=self.registry,
                                    status=resp.status)  # fmt: skip
        try:
            document = json.loads(data) if resp.status == 200 else {}
            token = document.get("token") or document.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryAuthError(f"{where}: HTTP {resp.status}, no token in the answer", registry=self.registry,
                                    status=resp.status)  # fmt: skip
        return token

    # ---- requests -----------------------------------------------------------------------

    def request(self, method: str, path: str, *, repository: str, what: str, digest: str | None = None,
                headers: Mapping[str, str] | None = None, body: Body = None,
                ok: Iterable[int] = (200,)) -> Response:  # fmt: skip
        """*method* on *path* (``/v2/...``, or a URL the registry gave); the answer if its status is one
        of *ok*, else the error it means.  *what* names what is asked (``manifest `latest```)."""
        self._ping()
        ok = frozenset(ok)
        where = f"{method} `{self.registry}/{repository}` {what}"
        headers = dict(headers or {})
        authorization = self._authorization()
        origin, target = self._resolve(self.origin, path)
        extra: tuple[str, ...] = ()
        for _hop in range(8):
            sent = dict(headers)
            if authorization and origin[1:] == self.origin[1:]:
                sent["Authorization"] = authorization
            resp = self._send(method, origin, target, sent, body, where)
            if resp.status in _REDIRECTS and resp.status not in ok and resp.header("Location"):
                with resp:
                    resp.read()
                origin, target = self._resolve(origin, resp.header("Location"))
                if resp.status == 303:
                    method, body = "GET", None
                continue
            rewindable = body is None or isinstance(body, bytes) or body.seekable()
            if resp.status == 401 and not extra and self._challenge is not None and rewindable:
                challenge = parse_challenge(resp.header("WWW-Authenticate"))
                if challenge.scheme == "bearer" and set(challenge.scopes) - set(self.scopes):
                    with resp:
                        resp.read()
                    extra = challenge.scopes
                    authorization = self._authorization(extra, refresh=True)
                    if body is not None and not isinstance(body, bytes):
                        body.seek(0)
                    continue
            if resp.status in ok:
                return resp
            raise self._error(resp, where, repository, digest)
        raise RegistryError(f"{where}: too many redirects", registry=self.registry, repository=repository,
                            digest=digest)  # fmt: skip

    def _resolve(self, origin: _Origin, location: str) -> tuple[_Origin, str]:
        url = urllib.parse.urlsplit(location)
        if url.scheme and url.hostname:
            origin = _origin(url.scheme, url.hostname, url.port)
        target = url.path or "/"
        return origin, target + (f"?{url.query}" if url.query else "")

    def _error(self, resp: Response, where: str, repository: str, digest: str | None) -> RegistryError:
        with resp:
            data = resp.read(1 << 16)
        code = detail = None
        with contextlib.suppress(ValueError, AttributeError, IndexError, KeyError, TypeError):
            first = json.loads(data)["errors"][0]
            code, detail = str(first.get("code", "")) or None, str(first.get("message", "")) or None
        reason = f"HTTP {resp.status} {resp.reason}".rstrip()
        if code:
            reason += f" ({code}{': ' + detail if detail else ''})"
        kind: type[RegistryError] = RegistryError
        if resp.status in (401, 403):
            kind = RegistryAuthError
            credentials = self.credentials()
            if credentials is None:
                looked = ", ".join(f"`{p}`" for p in auth_files(self._auth_file))
                reason += f"; no credentials for `{self.registry}` in {looked}"
            else:
                reason += f"; as `{credentials.username}` (from `{credentials.source}`)"
        elif resp.status == 404:
            kind = RegistryNotFoundError
        elif resp.status in (502, 503, 504):
            kind = RegistryUnavailableError
        return kind(f"{where}: {reason}", registry=self.registry, repository=repository, digest=digest,
                    status=resp.status, code=code)  # fmt: skip
