"""Transactions see their own copy of the store (docs/misc/xenstore.txt: "When transaction is
started whole db is copied; reads and writes happen on the copy"), checked on the pure tree, over
the wire with pyxs, and with Xen's own C client library (libxenstore, as xenstore-utils use it);
plus the C daemon's answers to an unknown transaction id and to DIRECTORY_PART past the end."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno

import pyxs
import pytest

from xetool.xenstore.tree import DOM0, Caller, Quotas, Tree
from xetool.xenstore.wire import Op, XsError

from .conftest import Raw


def err(fn, *args) -> str:
    with pytest.raises(XsError) as e:
        fn(*args)
    return e.value.name


# --- the pure tree -------------------------------------------------------------------------------

def test_read_keeps_seeing_the_snapshot_after_an_outside_write() -> None:
    tree = Tree()
    tree.write(DOM0, "/a", b"1")
    tx = tree.transaction_start(DOM0)
    assert tree.read(DOM0, "/a", tx) == b"1"
    tree.write(DOM0, "/a", b"2")
    assert tree.read(DOM0, "/a", tx) == b"1"
    assert tree.read(DOM0, "/a") == b"2"
    assert err(tree.transaction_end, tx, True) == "EAGAIN"


def test_directory_keeps_seeing_the_snapshot() -> None:
    tree = Tree()
    tree.write(DOM0, "/d/x", b"old")
    tx = tree.transaction_start(DOM0)
    assert tree.directory(DOM0, "/d", tx)[0] == ["x"]
    tree.write(DOM0, "/d/y", b"")
    tree.rm(DOM0, "/d/x")
    assert tree.directory(DOM0, "/d", tx)[0] == ["x"]
    assert tree.directory(DOM0, "/d")[0] == ["y"]
    assert err(tree.transaction_end, tx, True) == "EAGAIN"


def test_the_whole_store_is_as_it_was_at_the_start() -> None:
    """Nodes the transaction had not looked at yet are as they were when it started too, also
    after another transaction's commit."""
    tree = Tree()
    tree.write(DOM0, "/s/a", b"1")
    tree.write(DOM0, "/s/gone/deep", b"2")
    tx = tree.transaction_start(DOM0)
    other = tree.transaction_start(DOM0)
    tree.write(DOM0, "/s/a", b"x", other)
    tree.write(DOM0, "/s/new", b"y", other)
    tree.rm(DOM0, "/s/gone", other)
    tree.transaction_end(other, True)
    tree.write(DOM0, "/s/a", b"z")
    assert tree.read(DOM0, "/s/a", tx) == b"1"
    assert tree.read(DOM0, "/s/gone/deep", tx) == b"2"
    assert sorted(tree.directory(DOM0, "/s", tx)[0]) == ["a", "gone"]
    assert not tree.exists("/s/new", tx)
    tree.write(DOM0, "/s/mine", b"m", tx)  # its own change on top of its view
    assert sorted(tree.directory(DOM0, "/s", tx)[0]) == ["a", "gone", "mine"]
    assert err(tree.transaction_end, tx, True) == "EAGAIN"
    assert sorted(tree.directory(DOM0, "/s")[0]) == ["a", "new"]


def test_a_transaction_that_read_nothing_changed_commits_on_top_of_newer_writes() -> None:
    tree = Tree()
    tree.write(DOM0, "/n/a", b"1")
    tx = tree.transaction_start(DOM0)
    tree.write(DOM0, "/n/a", b"2")
    tree.write(DOM0, "/n/b", b"tx", tx)
    tree.transaction_end(tx, True)
    assert tree.read(DOM0, "/n/a") == b"2" and tree.read(DOM0, "/n/b") == b"tx"


def test_an_absent_node_stays_absent_for_the_transaction() -> None:
    tree = Tree()
    tx = tree.transaction_start(DOM0)
    assert err(tree.read, DOM0, "/late", tx) == "ENOENT"
    tree.write(DOM0, "/late", b"1")
    assert err(tree.read, DOM0, "/late", tx) == "ENOENT"
    assert not tree.exists("/late", tx)


def test_a_parent_touched_by_a_write_is_a_snapshot_too() -> None:
    """The transaction created /d/mine (and so copied /d); a child added outside afterwards is
    not in its view, but both are there after the commit (the children lists are merged)."""
    tree = Tree()
    tree.mkdir(DOM0, "/d")
    tx = tree.transaction_start(DOM0)
    tree.write(DOM0, "/d/mine", b"1", tx)
    tree.write(DOM0, "/d/theirs", b"2")
    assert tree.directory(DOM0, "/d", tx)[0] == ["mine"]
    tree.transaction_end(tx, True)
    assert sorted(tree.directory(DOM0, "/d")[0]) == ["mine", "theirs"]


def test_a_write_inside_the_transaction_moves_the_generation_on() -> None:
    """DIRECTORY_PART's gencnt inside a transaction: the transaction's own change is visible."""
    tree = Tree()
    tree.mkdir(DOM0, "/d")
    tx = tree.transaction_start(DOM0)
    _, gen = tree.directory(DOM0, "/d", tx)
    tree.write(DOM0, "/d/x", b"", tx)
    children, gen2 = tree.directory(DOM0, "/d", tx)
    assert children == ["x"] and gen2 != gen


def test_read_then_write_in_the_transaction_still_conflicts() -> None:
    tree = Tree()
    tree.write(DOM0, "/a", b"1")
    tx = tree.transaction_start(DOM0)
    tree.read(DOM0, "/a", tx)
    tree.write(DOM0, "/a", b"tx", tx)
    tree.write(DOM0, "/a", b"outside")
    assert tree.read(DOM0, "/a", tx) == b"tx"
    assert err(tree.transaction_end, tx, True) == "EAGAIN"
    assert tree.read(DOM0, "/a") == b"outside"


def test_reads_count_against_the_transaction_node_quota() -> None:
    tree = Tree(Quotas(nodes_per_transaction=3))
    tree.mkdir(DOM0, "/local/domain/5")
    tree.set_perms(DOM0, "/local/domain/5", (("n", 5),))
    for i in range(4):
        tree.write(DOM0, f"/local/domain/5/k{i}", b"v")
    guest = Caller(5)
    tx = tree.transaction_start(guest)
    with pytest.raises(XsError) as e:
        for i in range(4):
            tree.read(guest, f"/local/domain/5/k{i}", tx)
    assert e.value.name == "ENOSPC"


# --- over the wire: pyxs -------------------------------------------------------------------------

def test_pyxs_reads_inside_a_transaction_see_its_copy(sock_path: str) -> None:
    with pyxs.Client(unix_socket_path=sock_path) as c, pyxs.Client(unix_socket_path=sock_path) as other:
        c.write(b"/t/a", b"1")
        c.transaction()
        assert c.read(b"/t/a") == b"1"
        assert c.list(b"/t") == [b"a"]
        other.write(b"/t/a", b"2")
        other.write(b"/t/b", b"3")
        assert c.read(b"/t/a") == b"1"
        assert c.list(b"/t") == [b"a"]
        assert c.commit() is False  # EAGAIN: what it read changed
        assert c.read(b"/t/a") == b"2"


# --- over the wire: unknown transaction ids and DIRECTORY_PART -----------------------------------

# Every request type with a well-formed payload, and whether it ignores the header's tx_id.
REQUESTS: list[tuple[int, bytes]] = [
    (Op.XS_CONTROL, b"help\0"),
    (Op.XS_DIRECTORY, b"/\0"),
    (Op.XS_READ, b"/tool\0"),
    (Op.XS_GET_PERMS, b"/\0"),
    (Op.XS_TRANSACTION_START, b"\0"),
    (Op.XS_TRANSACTION_END, b"T\0"),
    (Op.XS_INTRODUCE, b"7\0001\0001\0"),
    (Op.XS_RELEASE, b"7\0"),
    (Op.XS_GET_DOMAIN_PATH, b"7\0"),
    (Op.XS_WRITE, b"/w\0v"),
    (Op.XS_MKDIR, b"/m\0"),
    (Op.XS_RM, b"/tool/none\0"),
    (Op.XS_SET_PERMS, b"/tool\0n0\0"),
    (Op.XS_IS_DOMAIN_INTRODUCED, b"7\0"),
    (Op.XS_RESUME, b"7\0"),
    (Op.XS_SET_TARGET, b"7\0008\0"),
    (Op.XS_RESET_WATCHES, b"\0"),
    (Op.XS_DIRECTORY_PART, b"/\0000\0"),
]


@pytest.mark.parametrize("op,payload", REQUESTS, ids=[Op(o).name for o, _ in REQUESTS])
def test_unknown_transaction_id_is_enoent_and_changes_nothing(raw: Raw, op: int, payload: bytes) -> None:
    assert raw.call(op, payload, tx_id=42) == (Op.XS_ERROR, b"ENOENT\0")
    assert raw.call(Op.XS_READ, b"/w\0") == (Op.XS_ERROR, b"ENOENT\0")
    assert raw.call(Op.XS_DIRECTORY, b"/\0") == (Op.XS_DIRECTORY, b"tool\0")


def test_watch_and_unwatch_ignore_the_transaction_id(raw: Raw) -> None:
    assert raw.call(Op.XS_WATCH, b"/wt\0tok\0", tx_id=42) == (Op.XS_WATCH, b"OK\0")
    assert raw.recv()[0] == Op.XS_WATCH_EVENT
    assert raw.call(Op.XS_UNWATCH, b"/wt\0tok\0", tx_id=42) == (Op.XS_UNWATCH, b"OK\0")


def test_privileged_types_answer_eacces_before_the_transaction_is_looked_up(raw: Raw) -> None:
    assert raw.call(Op.XS_CONTROL, b"act-as\x005\0") == (Op.XS_CONTROL, b"OK\0")
    assert raw.call(Op.XS_INTRODUCE, b"7\0001\0001\0", tx_id=42) == (Op.XS_ERROR, b"EACCES\0")
    assert raw.call(Op.XS_GET_DOMAIN_PATH, b"7\0", tx_id=42) == (Op.XS_ERROR, b"ENOENT\0")


def test_known_transaction_id_in_transaction_start_is_ebusy(raw: Raw) -> None:
    op, tid = raw.call(Op.XS_TRANSACTION_START, b"\0")
    assert op == Op.XS_TRANSACTION_START
    assert raw.call(Op.XS_TRANSACTION_START, b"\0", tx_id=int(tid[:-1])) == (Op.XS_ERROR, b"EBUSY\0")
    assert raw.call(Op.XS_TRANSACTION_END, b"T\0") == (Op.XS_ERROR, b"ENOENT\0")  # tx_id 0


def test_directory_part_past_the_end_is_an_empty_list_with_the_generation(raw: Raw) -> None:
    raw.call(Op.XS_WRITE, b"/dp/a\0")
    raw.call(Op.XS_WRITE, b"/dp/b\0")
    op, first = raw.call(Op.XS_DIRECTORY_PART, b"/dp\0000\0")
    gen = first.split(b"\0", 1)[0]
    assert (op, first) == (Op.XS_DIRECTORY_PART, gen + b"\0a\0b\0\0")
    assert raw.call(Op.XS_DIRECTORY_PART, b"/dp\0004\0") == (Op.XS_DIRECTORY_PART, gen + b"\0\0")
    assert raw.call(Op.XS_DIRECTORY_PART, b"/dp\0009999\0") == (Op.XS_DIRECTORY_PART, gen + b"\0\0")
    raw.call(Op.XS_WRITE, b"/dp/c\0")  # the generation moves on: a client starts over
    op, past = raw.call(Op.XS_DIRECTORY_PART, b"/dp\0009999\0")
    assert op == Op.XS_DIRECTORY_PART and past.endswith(b"\0\0") and past.split(b"\0")[0] != gen
    raw.call(Op.XS_MKDIR, b"/empty\0")
    op, empty = raw.call(Op.XS_DIRECTORY_PART, b"/empty\0000\0")
    assert op == Op.XS_DIRECTORY_PART and empty.split(b"\0")[1:] == [b"", b""]


# --- Xen's C client library ----------------------------------------------------------------------

class LibXenstore:
    """libxenstore (Debian's libxenstore4, what xenstore-utils link) through ctypes."""

    def __init__(self, path: str) -> None:
        self.lib = ctypes.CDLL(path, use_errno=True)
        self.libc = ctypes.CDLL(ctypes.util.find_library("c"))
        lib = self.lib
        lib.xs_open.restype = ctypes.c_void_p
        lib.xs_open.argtypes = [ctypes.c_ulong]
        lib.xs_close.argtypes = [ctypes.c_void_p]
        lib.xs_transaction_start.restype = ctypes.c_uint32
        lib.xs_transaction_start.argtypes = [ctypes.c_void_p]
        lib.xs_transaction_end.restype = ctypes.c_bool
        lib.xs_transaction_end.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_bool]
        lib.xs_read.restype = ctypes.c_void_p
        lib.xs_read.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint)]
        lib.xs_write.restype = ctypes.c_bool
        lib.xs_write.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
        lib.xs_directory.restype = ctypes.c_void_p
        lib.xs_directory.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint)]
        self.libc.free.argtypes = [ctypes.c_void_p]

    def open(self) -> int:
        h = self.lib.xs_open(0)
        assert h, f"xs_open failed: errno {ctypes.get_errno()}"
        return h

    def read(self, h: int, t: int, path: str) -> bytes:
        n = ctypes.c_uint()
        p = self.lib.xs_read(h, t, path.encode(), ctypes.byref(n))
        assert p, f"xs_read {path}: errno {ctypes.get_errno()}"
        try:
            return ctypes.string_at(p, n.value)
        finally:
            self.libc.free(p)

    def directory(self, h: int, t: int, path: str) -> list[str]:
        n = ctypes.c_uint()
        p = self.lib.xs_directory(h, t, path.encode(), ctypes.byref(n))
        assert p, f"xs_directory {path}: errno {ctypes.get_errno()}"
        try:
            names = ctypes.cast(p, ctypes.POINTER(ctypes.c_char_p))
            return [names[i].decode() for i in range(n.value)]
        finally:
            self.libc.free(p)

    def write(self, h: int, t: int, path: str, value: bytes) -> None:
        assert self.lib.xs_write(h, t, path.encode(), value, len(value))


@pytest.fixture
def libxs(sock_path: str, monkeypatch: pytest.MonkeyPatch) -> LibXenstore:
    found = ctypes.util.find_library("xenstore")
    if found is None:
        pytest.skip("libxenstore is not installed (apt-get install xenstore-utils)")
    monkeypatch.setenv("XENSTORED_PATH", sock_path)  # read by xs_open
    return LibXenstore(found)


def test_libxenstore_transaction_sees_its_copy(libxs: LibXenstore) -> None:
    names = [f"n{i:04d}{'z' * 50}" for i in range(90)]  # about 5 KB: xs_directory pages with DIRECTORY_PART
    h, other = libxs.open(), libxs.open()
    try:
        libxs.write(h, 0, "/c/a", b"1")
        for n in names:
            libxs.write(h, 0, f"/c/big/{n}", b"")
        t = libxs.lib.xs_transaction_start(h)
        assert t
        assert libxs.read(h, t, "/c/a") == b"1"
        assert libxs.directory(h, t, "/c/big") == names
        libxs.write(other, 0, "/c/a", b"2")
        libxs.write(other, 0, "/c/big/extra", b"")
        assert libxs.read(h, t, "/c/a") == b"1"
        assert libxs.directory(h, t, "/c/big") == names
        assert not libxs.lib.xs_transaction_end(h, t, False)
        assert ctypes.get_errno() == errno.EAGAIN
        assert libxs.read(h, 0, "/c/a") == b"2"
        assert libxs.directory(h, 0, "/c/big") == names + ["extra"]
    finally:
        libxs.lib.xs_close(h)
        libxs.lib.xs_close(other)


def test_libxenstore_unknown_transaction_is_enoent(libxs: LibXenstore) -> None:
    h = libxs.open()
    try:
        n = ctypes.c_uint()
        assert not libxs.lib.xs_read(h, 99, b"/tool", ctypes.byref(n))
        assert ctypes.get_errno() == errno.ENOENT
        assert not libxs.lib.xs_write(h, 99, b"/x", b"v", 1)
        assert ctypes.get_errno() == errno.ENOENT
    finally:
        libxs.lib.xs_close(h)


def test_c_clients_redo_their_transaction_on_eagain(raw: Raw, sock_path: str) -> None:
    """xenstore-utils run each command in a transaction and start over on EAGAIN."""
    from .test_protocol import needs_c_tools, xs_tool

    if needs_c_tools.args[0]:
        pytest.skip(needs_c_tools.kwargs["reason"])
    assert raw.call(Op.XS_CONTROL, b"eagain\x000.5\0") == (Op.XS_CONTROL, b"OK\0")
    for i in range(5):
        assert xs_tool(sock_path, "xenstore-write", f"/eg/k{i}", str(i)).returncode == 0
    assert xs_tool(sock_path, "xenstore-ls", "/eg").stdout.split("\n")[:5] == [f'k{i} = "{i}"' for i in range(5)]
