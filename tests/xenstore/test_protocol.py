"""The server over a real socket, used by pyxs and by Xen's own C clients (xenstore-utils)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pyxs
from pyxs._internal import Op as PyxsOp
import pytest

from xetool.xenstore.wire import Op
from .conftest import Raw

C_TOOLS = ("xenstore-ls", "xenstore-read", "xenstore-write", "xenstore-rm", "xenstore-list",
           "xenstore-exists", "xenstore-watch", "xenstore-chmod")
needs_c_tools = pytest.mark.skipif(any(shutil.which(t) is None for t in C_TOOLS),
                                   reason="Debian's xenstore-utils is not installed (apt-get install xenstore-utils)")


def xs_tool(sock: str, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, XENSTORED_PATH=sock)
    return subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=timeout)


# --- pyxs ----------------------------------------------------------------------------------------

def test_pyxs_basic_operations(sock_path: str) -> None:
    with pyxs.Client(unix_socket_path=sock_path) as c:
        c.write(b"/a/b", b"1")
        c.mkdir(b"/a/dir")
        assert c.read(b"/a/b") == b"1"
        assert sorted(c.list(b"/a")) == [b"b", b"dir"]
        assert c.exists(b"/a/dir") and not c.exists(b"/a/none")
        c.set_perms(b"/a/b", [b"n0", b"r5"])
        assert c.get_perms(b"/a/b") == [b"n0", b"r5"]
        c.delete(b"/a")
        assert not c.exists(b"/a")
        with pytest.raises(pyxs.PyXSError) as e:
            c.read(b"/a/b")
        assert e.value.args[0] == 2  # ENOENT by name


def test_pyxs_transactions_and_conflict(sock_path: str) -> None:
    with pyxs.Client(unix_socket_path=sock_path) as c, pyxs.Client(unix_socket_path=sock_path) as other:
        c.write(b"/cnt", b"0")
        c.transaction()
        v = int(c.read(b"/cnt"))
        other.write(b"/cnt", b"5")
        c.write(b"/cnt", str(v + 1).encode())
        assert c.commit() is False  # EAGAIN: redo
        c.transaction()
        c.write(b"/cnt", str(int(c.read(b"/cnt")) + 1).encode())
        assert c.commit() is True
        assert c.read(b"/cnt") == b"6"


def test_pyxs_watch(sock_path: str) -> None:
    with pyxs.Client(unix_socket_path=sock_path) as c:
        m = c.monitor()
        m.watch(b"/w", b"tok")
        assert m.events.get(timeout=2) == (b"/w", b"tok")
        c.write(b"/w/x", b"1")
        assert m.events.get(timeout=2) == (b"/w/x", b"tok")
        m.unwatch(b"/w", b"tok")


def test_pyxs_domain_messages(sock_path: str) -> None:
    with pyxs.Client(unix_socket_path=sock_path) as c:
        m = c.monitor()
        m.watch(b"@introduceDomain", b"i")
        assert m.events.get(timeout=2) == (b"@introduceDomain", b"i")
        assert c.get_domain_path(7) == b"/local/domain/7"
        assert c.is_domain_introduced(7) is False
        c.introduce_domain(7, 1234, 3)
        assert m.events.get(timeout=2) == (b"@introduceDomain", b"i")
        assert c.is_domain_introduced(7) is True
        c.ack(PyxsOp.RELEASE, b"7\0")  # pyxs refuses release_domain off Xen (Client.SU)
        assert c.is_domain_introduced(7) is False


def test_relative_paths_resolve_under_dom0(raw: Raw) -> None:
    assert raw.call(Op.XS_WRITE, b"rel/key\0v") == (Op.XS_WRITE, b"OK\0")
    assert raw.call(Op.XS_READ, b"/local/domain/0/rel/key\0") == (Op.XS_READ, b"v")


def test_directory_part_pages_large_directories(raw: Raw) -> None:
    names = [f"child-{i:04d}-{'x' * 40}" for i in range(150)]  # about 7 KB of names
    for n in names:
        raw.call(Op.XS_WRITE, f"/big/{n}\0".encode())
    assert raw.call(Op.XS_DIRECTORY, b"/big\0") == (Op.XS_ERROR, b"E2BIG\0")
    got: list[bytes] = []
    offset = 0
    while True:
        op, payload = raw.call(Op.XS_DIRECTORY_PART, f"/big\0{offset}\0".encode())
        assert op == Op.XS_DIRECTORY_PART
        gen, _, rest = payload.partition(b"\0")
        assert gen.isdigit()
        done = rest.endswith(b"\0\0") or rest == b"\0"
        chunk = rest[:-1] if done else rest
        got += chunk.split(b"\0")[:-1]
        offset += len(chunk)
        if done:
            break
    assert [g.decode() for g in got] == names


def test_unprivileged_connection_mode(raw: Raw, sock_path: str) -> None:
    raw.call(Op.XS_WRITE, b"/local/domain/5/x\0secret")
    raw.call(Op.XS_MKDIR, b"/local/domain/5/data\0")
    raw.call(Op.XS_SET_PERMS, b"/local/domain/5/data\0n5\0")
    guest = Raw(sock_path)
    try:
        assert guest.call(Op.XS_CONTROL, b"act-as\x005\0") == (Op.XS_CONTROL, b"OK\0")
        assert guest.call(Op.XS_READ, b"/local/domain/5/x\0") == (Op.XS_ERROR, b"EACCES\0")
        assert guest.call(Op.XS_WRITE, b"data/mine\0v") == (Op.XS_WRITE, b"OK\0")  # relative to its home
        assert guest.call(Op.XS_GET_PERMS, b"data/mine\0") == (Op.XS_GET_PERMS, b"n5\0")
        assert guest.call(Op.XS_INTRODUCE, b"9\0001\0001\0") == (Op.XS_ERROR, b"EACCES\0")
        big = b"data/big\0" + b"x" * 3000
        assert guest.call(Op.XS_WRITE, big) == (Op.XS_ERROR, b"ENOSPC\0")
        assert guest.call(Op.XS_CONTROL, b"act-as\x000\0") == (Op.XS_ERROR, b"EACCES\0")
    finally:
        guest.close()


def test_transaction_ids_are_per_connection(raw: Raw, sock_path: str) -> None:
    op, tid = raw.call(Op.XS_TRANSACTION_START, b"\0")
    assert op == Op.XS_TRANSACTION_START
    other = Raw(sock_path)
    try:
        assert other.call(Op.XS_TRANSACTION_END, b"T\0", tx_id=int(tid[:-1])) == (Op.XS_ERROR, b"ENOENT\0")
    finally:
        other.close()
    assert raw.call(Op.XS_TRANSACTION_START, b"\0", tx_id=int(tid[:-1])) == (Op.XS_ERROR, b"EBUSY\0")
    assert raw.call(Op.XS_TRANSACTION_END, b"X\0", tx_id=int(tid[:-1])) == (Op.XS_ERROR, b"EINVAL\0")
    assert raw.call(Op.XS_TRANSACTION_END, b"T\0", tx_id=int(tid[:-1])) == (Op.XS_TRANSACTION_END, b"OK\0")


def test_eagain_fault_injection_switch(raw: Raw) -> None:
    assert raw.call(Op.XS_CONTROL, b"eagain\x001\0") == (Op.XS_CONTROL, b"OK\0")
    _, tid = raw.call(Op.XS_TRANSACTION_START, b"\0")
    assert raw.call(Op.XS_TRANSACTION_END, b"T\0", tx_id=int(tid[:-1])) == (Op.XS_ERROR, b"EAGAIN\0")


# --- Xen's C clients -----------------------------------------------------------------------------

@needs_c_tools
def test_c_clients(sock_path: str) -> None:
    assert xs_tool(sock_path, "xenstore-write", "/vm/a", "1", "/vm/b", "").returncode == 0
    assert xs_tool(sock_path, "xenstore-read", "/vm/a").stdout == "1\n"
    assert xs_tool(sock_path, "xenstore-read", "/vm/b").stdout == "\n"
    assert xs_tool(sock_path, "xenstore-list", "/vm").stdout.split() == ["a", "b"]
    assert xs_tool(sock_path, "xenstore-exists", "/vm/a").returncode == 0
    assert xs_tool(sock_path, "xenstore-exists", "/vm/zz").returncode != 0
    assert xs_tool(sock_path, "xenstore-chmod", "/vm/a", "n0", "r5").returncode == 0
    ls = xs_tool(sock_path, "xenstore-ls", "-p", "/vm").stdout
    assert 'a = "1"' in ls and "(n0,r5)" in ls
    assert xs_tool(sock_path, "xenstore-rm", "/vm/a").returncode == 0
    assert xs_tool(sock_path, "xenstore-list", "/vm").stdout.split() == ["b"]
    missing = xs_tool(sock_path, "xenstore-read", "/vm/a")
    assert missing.returncode != 0


@needs_c_tools
def test_c_ls_of_a_large_directory_uses_directory_part(sock_path: str) -> None:
    names = [f"n{i:04d}{'y' * 50}" for i in range(120)]
    args = [a for n in names for a in (f"/large/{n}", "v")]
    assert xs_tool(sock_path, "xenstore-write", *args).returncode == 0
    assert xs_tool(sock_path, "xenstore-list", "/large").stdout.split() == names


@needs_c_tools
def test_c_watch(sock_path: str) -> None:
    env = dict(os.environ, XENSTORED_PATH=sock_path)
    w = subprocess.Popen(["xenstore-watch", "-n", "3", "/cw"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert w.stdout is not None
        assert w.stdout.readline().strip() == "/cw"  # the initial event
        xs_tool(sock_path, "xenstore-write", "/cw/x", "1")
        assert w.stdout.readline().strip() == "/cw/x"
        xs_tool(sock_path, "xenstore-rm", "/cw")
        assert w.stdout.readline().strip() == "/cw"
        assert w.wait(timeout=5) == 0
    finally:
        if w.poll() is None:
            w.kill()
            w.wait()


def test_reset_watches_drops_watches_and_transactions(raw: Raw, sock_path: str) -> None:
    assert raw.call(Op.XS_WATCH, b"/rw\0tok\0")[0] == Op.XS_WATCH
    assert raw.recv()[0] == Op.XS_WATCH_EVENT  # the initial event
    _, tid = raw.call(Op.XS_TRANSACTION_START, b"\0")
    assert raw.call(Op.XS_RESET_WATCHES, b"\0") == (Op.XS_RESET_WATCHES, b"OK\0")
    assert raw.call(Op.XS_TRANSACTION_END, b"T\0", tx_id=int(tid[:-1])) == (Op.XS_ERROR, b"ENOENT\0")
    assert raw.call(Op.XS_WRITE, b"/rw/x\0v") == (Op.XS_WRITE, b"OK\0")  # no event comes before this reply
    assert raw.call(Op.XS_UNWATCH, b"/rw\0tok\0") == (Op.XS_ERROR, b"ENOENT\0")


def test_set_target_gives_the_target_domains_rights(raw: Raw, sock_path: str) -> None:
    raw.call(Op.XS_WRITE, b"/local/domain/7/k\0v")
    raw.call(Op.XS_SET_PERMS, b"/local/domain/7/k\0n7\0")
    raw.call(Op.XS_INTRODUCE, b"7\0001\0001\0")
    raw.call(Op.XS_INTRODUCE, b"8\0001\0001\0")
    stubdom = Raw(sock_path)  # a connection takes its domain's rights when it starts acting for it
    try:
        stubdom.call(Op.XS_CONTROL, b"act-as\x008\0")
        assert stubdom.call(Op.XS_READ, b"/local/domain/7/k\0") == (Op.XS_ERROR, b"EACCES\0")
        assert raw.call(Op.XS_SET_TARGET, b"8\0007\0") == (Op.XS_SET_TARGET, b"OK\0")
    finally:
        stubdom.close()
    stubdom = Raw(sock_path)  # a connection takes its domain's rights when it starts acting for it
    try:
        stubdom.call(Op.XS_CONTROL, b"act-as\x008\0")
        assert stubdom.call(Op.XS_READ, b"/local/domain/7/k\0") == (Op.XS_READ, b"v")
    finally:
        stubdom.close()
