"""Malformed input: an error reply or a closed connection, never a crash or a stuck server,
and the other clients keep being served."""

from __future__ import annotations

import socket
import struct
import time

import pytest

from xetool.xenstore.server import OUTPUT_LIMIT, ThreadedServer
from xetool.xenstore.wire import Op
from .conftest import HDR, Raw


def still_serving(path: str) -> None:
    """A fresh client gets prompt answers."""
    other = Raw(path, timeout=2.0)
    try:
        t0 = time.monotonic()
        assert other.call(Op.XS_WRITE, b"/probe\0ok") == (Op.XS_WRITE, b"OK\0")
        assert other.call(Op.XS_READ, b"/probe\0") == (Op.XS_READ, b"ok")
        assert time.monotonic() - t0 < 1.0
    finally:
        other.close()


def test_short_header_then_disconnect(raw: Raw, sock_path: str) -> None:
    raw.sock.sendall(b"\x02\x00\x00")  # 3 of 16 header bytes
    still_serving(sock_path)
    raw.close()
    still_serving(sock_path)


def test_disconnect_mid_message(raw: Raw, sock_path: str) -> None:
    raw.sock.sendall(HDR.pack(Op.XS_WRITE, 1, 0, 100) + b"/half\0")
    still_serving(sock_path)
    raw.close()
    still_serving(sock_path)


def test_length_over_the_limit_closes_the_connection(raw: Raw, sock_path: str) -> None:
    raw.sock.sendall(HDR.pack(Op.XS_WRITE, 1, 0, 4097))
    assert raw.closed_by_server()
    still_serving(sock_path)


def test_huge_length_closes_without_waiting_for_the_payload(raw: Raw, sock_path: str) -> None:
    raw.sock.sendall(HDR.pack(Op.XS_READ, 1, 0, 0xFFFFFFFF))
    assert raw.closed_by_server()
    still_serving(sock_path)


@pytest.mark.parametrize("op", [20, 23, 25, 99, 0xFFFF, Op.XS_WATCH_EVENT, Op.XS_ERROR])
def test_unknown_or_unsupported_type(raw: Raw, sock_path: str, op: int) -> None:
    assert raw.call(op, b"/x\0", req_id=77) == (Op.XS_ERROR, b"ENOSYS\0")
    still_serving(sock_path)


@pytest.mark.parametrize("path", [b"/a b", b"/a//b", b"/a/", b"/\xff", b"/x@y", b"@releaseDomain", b"/" + b"a" * 3100])
def test_bad_paths(raw: Raw, sock_path: str, path: bytes) -> None:
    assert raw.call(Op.XS_READ, path + b"\0") == (Op.XS_ERROR, b"EINVAL\0")
    still_serving(sock_path)


def test_payload_without_nul(raw: Raw, sock_path: str) -> None:
    assert raw.call(Op.XS_READ, b"/a") == (Op.XS_ERROR, b"EINVAL\0")
    assert raw.call(Op.XS_WRITE, b"/a") == (Op.XS_ERROR, b"EINVAL\0")  # no NUL between path and value
    assert raw.call(Op.XS_WATCH, b"/a\0tok") == (Op.XS_ERROR, b"EINVAL\0")
    assert raw.call(Op.XS_READ, b"") == (Op.XS_ERROR, b"EINVAL\0")
    still_serving(sock_path)


def test_wrong_argument_counts(raw: Raw) -> None:
    assert raw.call(Op.XS_INTRODUCE, b"5\0") == (Op.XS_ERROR, b"EINVAL\0")
    assert raw.call(Op.XS_SET_PERMS, b"/a\0") == (Op.XS_ERROR, b"EINVAL\0")
    assert raw.call(Op.XS_SET_PERMS, b"/a\0q5\0") == (Op.XS_ERROR, b"EINVAL\0")
    assert raw.call(Op.XS_TRANSACTION_END, b"T\0", tx_id=9) == (Op.XS_ERROR, b"ENOENT\0")
    assert raw.call(Op.XS_READ, b"/a\0", tx_id=9) == (Op.XS_ERROR, b"ENOENT\0")


def test_disconnect_mid_transaction_discards_it(raw: Raw, sock_path: str, server: ThreadedServer) -> None:
    _, tid = raw.call(Op.XS_TRANSACTION_START, b"\0")
    raw.call(Op.XS_WRITE, b"/txonly\0v", tx_id=int(tid[:-1]))
    raw.close()
    still_serving(sock_path)
    other = Raw(sock_path)
    try:
        assert other.call(Op.XS_READ, b"/txonly\0") == (Op.XS_ERROR, b"ENOENT\0")
    finally:
        other.close()
    assert server.call(lambda: server.tree._tx_count.get(0, 0)) == 0


def test_many_messages_in_one_write_and_split_across_writes(raw: Raw) -> None:
    batch = b"".join(HDR.pack(Op.XS_WRITE, i, 0, len(p)) + p for i, p in
                     ((i, f"/batch/{i}\0{i}".encode()) for i in range(1, 200)))
    for i in range(0, len(batch), 7):  # dribbled in 7-byte pieces
        raw.sock.sendall(batch[i:i + 7])
    for i in range(1, 200):
        op, req_id, _, payload = raw.recv()
        assert (op, req_id, payload) == (Op.XS_WRITE, i, b"OK\0")


def test_client_that_never_reads_its_events(raw: Raw, sock_path: str, server: ThreadedServer) -> None:
    """The lazy client is dropped once its output backs up; writers never wait for it."""
    token = b"t" * 2000
    assert raw.call(Op.XS_WATCH, b"/\0" + token + b"\0")[0] == Op.XS_WATCH
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    writer = Raw(sock_path)
    try:
        n = (OUTPUT_LIMIT // 2000) * 3
        t0 = time.monotonic()
        for i in range(n):
            assert writer.call(Op.XS_WRITE, f"/flood/{i % 50}\0x".encode(), req_id=i + 1)[0] == Op.XS_WRITE
        elapsed = time.monotonic() - t0
        assert elapsed < 10
        still_serving(sock_path)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and server.call(lambda: len(server.server.connections)) > 1:
            time.sleep(0.05)
        assert server.call(lambda: len(server.server.connections)) == 1  # only the writer is left
    finally:
        writer.close()


def test_garbage_stream(raw: Raw, sock_path: str) -> None:
    raw.sock.sendall(bytes(range(256)) * 4)  # header says type 0x03020100... with a big length
    assert raw.closed_by_server()
    still_serving(sock_path)


def test_reply_header_echoes_request(raw: Raw) -> None:
    raw.send(Op.XS_GET_DOMAIN_PATH, b"3\0", req_id=0xDEADBEEF, tx_id=0)
    assert raw.recv() == (Op.XS_GET_DOMAIN_PATH, 0xDEADBEEF, 0, b"/local/domain/3\0")
    _, tid = raw.call(Op.XS_TRANSACTION_START, b"\0")
    t = int(tid[:-1])
    raw.send(Op.XS_READ, b"/nope\0", req_id=5, tx_id=t)
    assert raw.recv() == (Op.XS_ERROR, 5, t, b"ENOENT\0")
    assert struct.calcsize("=IIII") == 16


def test_pipelining_client_is_paused_not_dropped(raw: Raw, sock_path: str, server: ThreadedServer) -> None:
    """Requests sent far ahead of reading the replies (2 MB of them) are all answered, in order."""
    value = b"v" * 4000
    raw.call(Op.XS_WRITE, b"/bigval\0" + value)
    n = 500
    batch = b"".join(HDR.pack(Op.XS_READ, i, 0, 8) + b"/bigval\0" for i in range(1, n + 1))
    server.loop.call_threadsafe(time.sleep, 0.3)  # so that the whole batch is read in one go
    raw.sock.sendall(batch)
    time.sleep(0.35)
    still_serving(sock_path)  # others are served while this one is paused
    for i in range(1, n + 1):
        op, req_id, _, payload = raw.recv()
        assert (op, req_id, payload) == (Op.XS_READ, i, value)
