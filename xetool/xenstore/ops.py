"""One handler per XenStore message type. Each returns the reply payload (or None when it has
already replied itself) and raises XsError for an error reply."""

from __future__ import annotations

from xetool.xenstore.tree import format_perms, parse_perms
from xetool.xenstore.wire import OK, XENSTORE_PAYLOAD_MAX, Op, XsError, decode, split_args

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable

    from xetool.xenstore.server import Connection, XenstoreServer

    Handler = Callable[[XenstoreServer, Connection, int, int, bytes], "bytes | None"]

# The xetool-specific CONTROL commands (XS_CONTROL is xenstored's debug channel).
CONTROL_HELP = b"act-as <domid>: this connection now acts for an unprivileged domain\n" \
    b"eagain <probability>: fail commits with EAGAIN at random (fault injection)\n"


def _one_path(payload: bytes) -> bytes:
    """The single NUL-terminated argument (one scan: the first NUL must be the last byte)."""
    if payload.find(b"\0") != len(payload) - 1:
        raise XsError("EINVAL", "expected one NUL-terminated path")
    return payload[:-1]


def _domid(raw: bytes) -> int:
    text = decode(raw)
    if not text.isdigit():
        raise XsError("EINVAL", f"bad domid {text!r}")
    return int(text)


def read(s: XenstoreServer, conn: Connection, req_id: int, tx_id: int, payload: bytes) -> bytes:
    _, path = s.resolve(conn, _one_path(payload))
    return s.tree.read(conn.caller, path, conn.transactions[tx_id] if tx_id else None)


def write(s: XenstoreServer, conn: Connection, req_id: int, tx_id: int, payload: bytes) -> bytes:
    i = payload.find(b"\0")
    if i < 0:
        raise XsError("EINVAL", "no NUL after the path")
    _, path = s.resolve(conn, payload[:i])
    s.tree.write(conn.caller, path, payload[i + 1:], conn.transactions[tx_id] if tx_id else None)
    return OK


def mkdir(s: XenstoreServer, conn: Connection, req_id: int, tx_id: int, payload: bytes) -> bytes:
    _, path = s.resolve(conn, _one_path(payload))
    s.tree.mkdir(conn.caller, path, conn.transactions[tx_id] if tx_id else None)
    return OK


def rm(s: XenstoreServer, conn: Connection, req_id: int, tx_id: int, payload: bytes) -> bytes:
    _, path = s.resolve(conn, _one_path(payload))
    s.tree.rm(conn.caller, path, conn.transactions[tx_id] if tx_id else None)
    return OK


def directory(s: XenstoreServer, conn: Connection, req_id: int, tx_id: int, payload: bytes) -> bytes:
    _, path = s.resolve(conn, _one_path(payload))
    children, _ = s.tree.directory(conn.caller, path, conn.transactions[tx_id] if tx_id else None)
    return b"".join(c.encode() + b"\0" for c in children)


def directory_part(s: XenstoreServer, conn: Connection, req_id: int, tx_id: int, payload: bytes) -> bytes:
    """`gencnt\\0child\\0...`; the chunk that reaches the end carries an extra empty string.
    As C xenstored: an offset at or past the end answers an empty list and the current gencnt
    (a client that sees the gencnt change starts over), not an error."""
    args = split_args(payload)
    if len(args) != 2 or not args[1].isdigit():
        raise XsError("EINVAL", "expected path and offset")
    _, path = s.resolve(conn, args[0])
    offset = int(args[1])
    children, gen = s.tree.directory(conn.caller, path, conn.transactions[tx_id] if tx_id else None)
    data = b"".join(c.encode() + b"\0" for c in children)
    head = f"{gen}\0".encode()
    if offset >= len(data):  # past the end: an empty last chunk, with the current generation
        return head + b"\0"
    room = XENSTORE_PAYLOAD_MAX - len(head) - 1
    rest = data[offset:]
    if len(rest) <= room:
        return head + rest + b"\0"
    cut = rest.rfind(b"\0", 0, room) + 1  # whole names only
    if cut == 0:
        raise XsError("E2BIG", "child name too long")
    return head + rest[:cut]


def get_perms(s: XenstoreServer, conn: Connection, req_id: int, tx_id: int, payload: bytes) -> bytes:
    _, path = s.resolve(conn, _one_path(payload), special_ok=True)
    perms = s.tree.get_perms(conn.caller, path, conn.transactions[tx_id] if tx_id else None)
    return b"".join(p.encode() + b"\0" for p in format_perms(perms))


def set_perms(s: XenstoreServer, conn: Connection, req_id: int, tx_id: int, payload: bytes) -> bytes:
    args = split_args(payload)
    _, path = s.resolve(conn, args[0], special_ok=True)
    perms = parse_perms([decode(a) for a in args[1:] if a])
    s.tree.set_perms(conn.caller, path, perms, conn.transactions[tx_id] if tx_id else None)
    return OK


def watch(s: XenstoreServer, conn: Connection, req_id: int, tx_id: int, payload: bytes) -> None:
    args = split_args(payload)
    if len(args) not in (2, 3):
        raise XsError("EINVAL", "expected path, token and an optional depth")
    given, path = s.resolve(conn, args[0], special_ok=True)
    token = decode(args[1])
    depth = None
    if len(args) == 3:
        if not args[2].isdigit():
            raise XsError("EINVAL", "bad depth")
        depth = int(args[2])
    w = s.tree.watch(conn, conn.caller, given, path, token, depth)
    conn.send(Op.XS_WATCH, req_id, tx_id, OK)  # the reply, then the event "fired once up front"
    s.tree.initial_event(w)
    return None


def unwatch(s: XenstoreServer, conn: Connection, req_id: int, tx_id: int, payload: bytes) -> bytes:
    args = split_args(payload)
    if len(args) != 2:
        raise XsError("EINVAL", "expected path and token")
    given, path = s.resolve(conn, args[0], special_ok=True)
    s.tree.unwatch(conn, given, path, decode(args[1]))
    return OK


def transaction_start(s: XenstoreServer, conn: Connection, req_id: int, tx_id: int, payload: bytes) -> bytes:
    if tx_id != 0:
        raise XsError("EBUSY", "transactions do not nest")
    tx = s.tree.transaction_start(conn.caller)
    tid = conn.next_tx
    conn.next_tx = (conn.next_tx % 0xFFFFFFFF) + 1
    conn.transactions[tid] = tx
    return f"{tid}\0".encode()


def transaction_end(s: XenstoreServer, conn: Connection, req_id: int, tx_id: int, payload: bytes) -> bytes:
    arg = split_args(payload)
    if arg not in ([b"T"], [b"F"]):
        raise XsError("EINVAL", "expected T or F")
    tx = conn.transactions.pop(tx_id, None) if tx_id else None
    if tx is None:
        raise XsError("ENOENT", f"no transaction {tx_id}")
    s.tree.transaction_end(tx, commit=arg == [b"T"])
    return OK


def introduce(s: XenstoreServer, conn: Connection, req_id: int, tx_id: int, payload: bytes) -> bytes:
    args = split_args(payload)
    if len(args) != 3:
        raise XsError("EINVAL", "expected domid, gfn, evtchn")
    domid = _domid(args[0])
    try:
        int(args[1])
        evtchn = int(args[2])
    except ValueError:
        raise XsError("EINVAL", "bad gfn or event channel") from None
    if domid == 0 or evtchn <= 0:
        raise XsError("EINVAL", "bad domid or event channel")
    s.tree.introduce(domid)
    return OK


def release(s: XenstoreServer, conn: Connection, req_id: int, tx_id: int, payload: bytes) -> bytes:
    s.tree.release(_domid(_one_path(payload)))
    return OK


def resume(s: XenstoreServer, conn: Connection, req_id: int, tx_id: int, payload: bytes) -> bytes:
    s.tree.resume(_domid(_one_path(payload)))
    return OK


def set_target(s: XenstoreServer, conn: Connection, req_id: int, tx_id: int, payload: bytes) -> bytes:
    args = split_args(payload)
    if len(args) != 2:
        raise XsError("EINVAL", "expected domid and target")
    s.tree.set_target(_domid(args[0]), _domid(args[1]))
    return OK


def get_domain_path(s: XenstoreServer, conn: Connection, req_id: int, tx_id: int, payload: bytes) -> bytes:
    return f"/local/domain/{_domid(_one_path(payload))}\0".encode()


def is_domain_introduced(s: XenstoreServer, conn: Connection, req_id: int, tx_id: int, payload: bytes) -> bytes:
    domid = _domid(_one_path(payload))
    return b"T\0" if domid == 0 or domid in s.tree.introduced else b"F\0"


def reset_watches(s: XenstoreServer, conn: Connection, req_id: int, tx_id: int, payload: bytes) -> bytes:
    s.tree.reset_watches(conn)
    for tx in conn.transactions.values():
        s.tree.transaction_end(tx, commit=False)
    conn.transactions.clear()
    return OK


def control(s: XenstoreServer, conn: Connection, req_id: int, tx_id: int, payload: bytes) -> bytes:
    args = [decode(a) for a in split_args(payload)]
    if args[0] == "help":
        return CONTROL_HELP + b"\0"
    if args[0] == "act-as" and len(args) == 2 and args[1].isdigit():
        conn.caller = s.tree.caller_for(int(args[1]))
        return OK
    if args[0] == "eagain" and len(args) == 2:
        try:
            p = float(args[1])
        except ValueError:
            raise XsError("EINVAL", "bad probability") from None
        if not 0.0 <= p <= 1.0:
            raise XsError("EINVAL", "bad probability")
        s.tree.eagain_probability = p
        return OK
    raise XsError("EINVAL", f"unknown control command {args[0]!r}")


# Only the privileged domain (and socket clients) may send these: EACCES before anything else
# is looked at, as `XS_FLAG_PRIV` in C xenstored's process_message.
PRIVILEGED = frozenset((Op.XS_CONTROL, Op.XS_INTRODUCE, Op.XS_RELEASE, Op.XS_IS_DOMAIN_INTRODUCED,
                        Op.XS_RESUME, Op.XS_SET_TARGET))
# These ignore the header's tx_id (`XS_FLAG_NOTID`); every other type with an unknown nonzero
# tx_id is answered ENOENT without being run.
IGNORES_TX = frozenset((Op.XS_WATCH, Op.XS_UNWATCH))

HANDLERS: dict[int, Handler] = {
    Op.XS_CONTROL: control,
    Op.XS_DIRECTORY: directory,
    Op.XS_READ: read,
    Op.XS_GET_PERMS: get_perms,
    Op.XS_WATCH: watch,
    Op.XS_UNWATCH: unwatch,
    Op.XS_TRANSACTION_START: transaction_start,
    Op.XS_TRANSACTION_END: transaction_end,
    Op.XS_INTRODUCE: introduce,
    Op.XS_RELEASE: release,
    Op.XS_GET_DOMAIN_PATH: get_domain_path,
    Op.XS_WRITE: write,
    Op.XS_MKDIR: mkdir,
    Op.XS_RM: rm,
    Op.XS_SET_PERMS: set_perms,
    Op.XS_IS_DOMAIN_INTRODUCED: is_domain_introduced,
    Op.XS_RESUME: resume,
    Op.XS_SET_TARGET: set_target,
    Op.XS_RESET_WATCHES: reset_watches,
    Op.XS_DIRECTORY_PART: directory_part,
}
