"""Functions the call tests run inside containers: importable, and importing nothing heavy."""

from __future__ import annotations

import os
import sys


def add(a: int, b: int) -> int:
    return a + b


def shout(text: str) -> str:
    print(text.upper())
    print("to stderr", file=sys.stderr)
    return text + "!"


def identity(value: object) -> object:
    return value


def whoami() -> dict[str, object]:
    return {"pid": os.getpid(), "uid": os.getuid(), "hostname": os.uname().nodename}


class Oops(Exception):
    pass


def fail(what: str) -> None:
    raise Oops(what, 3)


def leave(code: int) -> None:
    sys.exit(code)


def die(code: int) -> None:
    os._exit(code)


def sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


def hog(mib: int) -> int:
    chunks = [bytearray(1 << 20) for _ in range(mib)]
    return len(chunks)


def fork_bomb() -> list[object]:
    """Fork until refused; report how many children were made and the error."""
    import errno
    import time

    children = 0
    while children < 500:
        try:
            pid = os.fork()
        except OSError as exc:
            return [children, errno.errorcode[exc.errno or 0]]
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        children += 1
    return [children, None]


def a_path() -> object:
    from pathlib import PurePosixPath

    return PurePosixPath("/etc/hostname")


class Opener:
    """What unpickling this does: create the file *path* (as the caller, were it unpickled there)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (open, (self.path, "w"))


def _answer_raw(data: bytes) -> None:
    import socket

    sock = socket.socket(fileno=3)
    sock.sendall(data)
    sock.close()
    os._exit(0)


def answer_pickle(marker: str) -> None:
    import pickle

    _answer_raw(pickle.dumps(Opener(marker)))


def answer_claimed_pickle(marker: str) -> None:
    import base64
    import json
    import pickle

    _answer_raw(json.dumps(["pickle", base64.b64encode(pickle.dumps(Opener(marker))).decode()]).encode())


def answer_deep() -> None:
    _answer_raw(b'["value",' + b"[" * 100_000 + b"]" * 100_000 + b"]")


def answer_huge() -> None:
    import socket

    sock = socket.socket(fileno=3)
    chunk = b" " * (1 << 20)
    for _ in range(300):
        sock.sendall(chunk)
    os._exit(0)


def fork_and_return() -> str:
    """Its child returns too, and raises in a second child: neither may answer for it."""
    first = os.fork()
    if first == 0:
        return "child"
    second = os.fork()
    if second == 0:
        raise RuntimeError("second child")
    os.waitpid(first, 0)
    os.waitpid(second, 0)
    return "parent"


def hang_up() -> None:
    """Close the answer's socket, then never end."""
    import time

    os.close(3)
    time.sleep(60)


def spew() -> None:
    chunk = b"x" * (1 << 20)
    for _ in range(300):
        os.write(1, chunk)
