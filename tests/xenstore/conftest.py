"""Shared fixtures: a real xenstore server on a real Unix socket (in a thread of the test
process), and a raw protocol client for malformed-input tests."""

from __future__ import annotations

import shutil
import socket
import struct
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from xetool.xenstore.server import ThreadedServer

HDR = struct.Struct("=IIII")


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a Unix socket address is limited to 108 bytes."""
    d = Path(tempfile.mkdtemp(prefix="xs-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def server(short_dir: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(short_dir / "xenstored.sock") as s:
        yield s


@pytest.fixture
def sock_path(server: ThreadedServer) -> str:
    return server.server.socket_path


class Raw:
    """Speaks the wire protocol by hand, for what no well-behaved client would send."""

    def __init__(self, path: str, timeout: float = 3.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def send(self, op: int, payload: bytes, req_id: int = 1, tx_id: int = 0) -> None:
        self.sock.sendall(HDR.pack(op, req_id, tx_id, len(payload)) + payload)

    def recv(self) -> tuple[int, int, int, bytes]:
        while len(self.buf) < 16:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        op, req_id, tx_id, n = HDR.unpack_from(self.buf)
        while len(self.buf) < 16 + n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        payload, self.buf = self.buf[16:16 + n], self.buf[16 + n:]
        return op, req_id, tx_id, payload

    def call(self, op: int, payload: bytes, req_id: int = 1, tx_id: int = 0) -> tuple[int, bytes]:
        self.send(op, payload, req_id, tx_id)
        rop, rreq, rtx, rpayload = self.recv()
        assert rreq == req_id
        return rop, rpayload

    def closed_by_server(self) -> bool:
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(sock_path: str) -> Iterator[Raw]:
    r = Raw(sock_path)
    yield r
    r.close()
