"""A TCP proxy on 127.0.0.1 in front of a registry that misbehaves on purpose: it cuts (or stalls) the
answer to one blob request midway, once, and can strip ``Range`` from requests (a registry that
ignores it).  Its threads stop when the ``with`` block ends.

It reads the requests it forwards (their heads, and their bodies by ``Content-Length``) and records
them, so that a test can see which were sent with ``Range``; with *cut_body_after* it cuts the first
request body (a push's upload) longer than that, once.
"""

from __future__ import annotations

import re
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

__all__ = ["FaultyProxy", "Forwarded"]

_RANGE = re.compile(rb"^range:[^\r\n]*\r\n", re.IGNORECASE | re.MULTILINE)
_CONTENT_TYPE = re.compile(rb"^content-type:[^\r\n]*\r\n", re.IGNORECASE | re.MULTILINE)


@dataclass
class Forwarded:
    """A request the proxy forwarded: its method and path, the ``Range`` the client sent, and when
    (:func:`time.monotonic`)."""

    method: str
    path: str
    range: str = ""
    at: float = 0.0


@dataclass
class _Connection:
    client: socket.socket
    upstream: socket.socket
    head: bytes = b""
    counting: bool = False  # forwarding the answer to the blob that is to fail
    counted: int = 0
    stalled: bool = False
    done: bool = False
    retype: bool = False  # the next answer is a manifest's, its Content-Type to be replaced
    requests: int = 0
    body_left: int = 0  # of the request being forwarded
    body_sent: int = 0
    cutting: bool = False  # the request being forwarded is to be cut


@dataclass
class FaultyProxy:
    """In front of ``127.0.0.1:upstream_port``: the first answer to a ``GET`` of *blob* is cut after
    *after* bytes (``stall``: not forwarded further, the connection kept open) if *blob* is given;
    *strip_range* drops every ``Range`` header; *delay* slows every answer down; *manifest_type*
    replaces the ``Content-Type`` of manifests."""

    upstream_port: int
    blob: str | None = None
    after: int = 0
    stall: bool = False
    strip_range: bool = False
    delay: float = 0.0  # seconds before each piece of an answer is forwarded (a slow registry)
    manifest_type: str = ""  # the Content-Type every manifest is answered with, if given
    cut_body_after: int = 0  # the first request body longer than this is cut after so many bytes
    requests: list[Forwarded] = field(default_factory=list)
    faults: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> FaultyProxy:
        self._spawn(self._accept)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(10)
        self._listener.close()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._spawn(self._pump, _Connection(client, upstream))

    def _pump(self, conn: _Connection) -> None:
        with conn.client, conn.upstream:
            while not self._stop.is_set() and not conn.done:
                sources = [conn.client] if conn.stalled else [conn.client, conn.upstream]
                ready, _, _ = select.select(sources, [], [], 0.1)
                for sock in ready:
                    data = sock.recv(1 << 16)
                    if not data:
                        conn.done = True
                        break
                    if sock is conn.client:
                        self._to_upstream(conn, data)
                    else:
                        self._to_client(conn, data)

    def _to_upstream(self, conn: _Connection, data: bytes) -> None:
        conn.head += data
        if not conn.requests and not conn.head[:1].isalpha():  # a TLS hello: refused, as a plain HTTP server does
            conn.done = True
            return
        while conn.head:
            if conn.body_left:  # a request's body (a push): forwarded as it is, unless it is to be cut
                piece, conn.head = conn.head[: conn.body_left], conn.head[conn.body_left :]
                conn.body_left -= len(piece)
                if conn.cutting and conn.body_sent + len(piece) > self.cut_body_after:
                    conn.upstream.sendall(piece[: self.cut_body_after - conn.body_sent])
                    self.faults += 1
                    conn.done = True
                    return
                conn.body_sent += len(piece)
                conn.upstream.sendall(piece)
                continue
            if b"\r\n\r\n" not in conn.head:
                return
            head, _, conn.head = conn.head.partition(b"\r\n\r\n")
            head += b"\r\n\r\n"
            conn.requests += 1
            method, path = head.split(b" ", 2)[:2]
            found = re.search(rb"^range:\s*([^\r\n]*)", head, re.IGNORECASE | re.MULTILINE)
            self.requests.append(
                Forwarded(method.decode(), path.decode(), found.group(1).decode() if found else "", time.monotonic())
            )
            length = re.search(rb"^content-length:\s*(\d+)", head, re.IGNORECASE | re.MULTILINE)
            conn.body_left, conn.body_sent = (int(length.group(1)) if length else 0), 0
            conn.cutting = bool(self.cut_body_after) and conn.body_left > self.cut_body_after and not self.faults
            if self.strip_range:
                head = _RANGE.sub(b"", head)
            if self.blob and method == b"GET" and path.endswith(f"/blobs/{self.blob}".encode()) and not self.faults:
                conn.counting, conn.counted = True, 0
            if self.manifest_type and b"/manifests/" in path:
                conn.retype = True
            conn.upstream.sendall(head)

    def _to_client(self, conn: _Connection, data: bytes) -> None:
        if self.delay:
            time.sleep(self.delay)
        if conn.retype and data.startswith(b"HTTP/"):  # the head comes whole in the first piece
            data = _CONTENT_TYPE.sub(b"Content-Type: " + self.manifest_type.encode() + b"\r\n", data, count=1)
            conn.retype = False
        if conn.counting and conn.counted + len(data) > self.after:
            conn.client.sendall(data[: self.after - conn.counted])
            conn.counting = False
            self.faults += 1
            if self.stall:
                conn.stalled = True
            else:
                conn.done = True  # both sockets closed: the connection cut midway
            return
        conn.counted += len(data)
        conn.client.sendall(data)
