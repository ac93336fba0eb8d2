"""The one place in xetool that talks xenstore, through pyxs (reference: protocols-and-peers 2.3, 2.4).

What this adds to pyxs:
- a deadline on every call: pyxs's RVar.get() waits forever, so we wait on its condition in
  short slices and check that the router thread is still alive (it dies on any receive error,
  e.g. when the server goes away): a dead server is XENSTORE_UNREACHABLE at once, a silent one
  XENSTORE_TIMEOUT after `timeout` seconds, never a hang;
- str paths and values, empty values included (we build packets ourselves; PyPI pyxs 0.4.1
  refuses empty values);
- watch tokens unique across processes and clients, events drained with a timeout (never
  Monitor.wait(), which can spin at 100 % CPU);
- transactions retried as a whole on EAGAIN;
- a fresh Router for every client, never a reused closed one;
- errors as XeError: XENSTORE_ERROR carries the server's error name (unknown names and an
  empty one are kept readable, never errno 0 "Success").
"""

from __future__ import annotations

import itertools
import os
import queue
import random
import threading
import time
import uuid
from collections import namedtuple

from pyxs.client import Router
from pyxs.connection import UnixSocketConnection
from pyxs.exceptions import ConnectionError as PyxsConnectionError
from pyxs.exceptions import PyXSError, UnexpectedPacket

from xetool.errors import XeError
from xetool.xenstore.wire import XENSTORE_PAYLOAD_MAX, Op, XsError, validate_path

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
    from typing import Any, Protocol, TypeVar

    T = TypeVar("T")

    class _Event(Protocol):
        """What pyxs's router queues for a watch (its Event tuple; pyxs has no types)."""
        path: bytes
        token: bytes

# pyxs's Packet refuses types outside its own table; the router only reads these fields.
_Packet = namedtuple("_Packet", "op rq_id tx_id size payload")
_rq_ids = itertools.count(1)
_tokens = itertools.count(1)
_TOKEN_PREFIX = f"xetool-{os.getpid()}-{uuid.uuid4().hex[:8]}"
_SLICE = 0.05  # how often a waiting call checks that the router thread is alive
DEFAULT_TIMEOUT = 5.0
TRANSACTION_ATTEMPTS = 30


class XenstoreError(XeError):
    """XENSTORE_ERROR with the server's error name kept as `errname` (ENOENT, EACCES, EAGAIN...)."""

    def __init__(self, operation: str, path: str, errname: str) -> None:
        self.errname = errname or "unknown xenstore error"
        super().__init__("XENSTORE_ERROR", operation, path, self.errname)


def _encode(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _check_path(operation: str, path: str, special_ok: bool = False) -> bytes:
    try:
        validate_path(path, special_ok=special_ok)
    except XsError:
        raise XenstoreError(operation, path, "EINVAL") from None
    return path.encode("ascii")


class _Ops:
    """Requests shared by a client and a transaction (which only adds its tx_id)."""

    _client: XsClient
    _tx_id: int

    def _req(self, op: int, operation: str, path: str, payload: bytes) -> bytes:
        return self._client._call(op, payload, self._tx_id, operation, path)

    def read(self, path: str) -> str:
        return _decode(self._req(Op.XS_READ, "read", path, _check_path("read", path) + b"\0"))

    def read_or(self, path: str, default: str | None = None) -> str | None:
        """The value, or `default` if the node does not exist."""
        try:
            return self.read(path)
        except XenstoreError as e:
            if e.errname == "ENOENT":
                return default
            raise

    def read_many(self, paths: Sequence[str]) -> list[str | None]:
        """Each value, or None where the node does not exist; pipelined: one round trip."""
        sent = [(self._client._send(Op.XS_READ, _check_path("read", p) + b"\0", self._tx_id, "read", p), p)
                for p in paths]
        out: list[str | None] = []
        for rvar, path in sent:
            try:
                out.append(_decode(self._client._await(rvar, "read", path)))
            except XenstoreError as e:
                if e.errname != "ENOENT":
                    raise
                out.append(None)
        return out

    def write(self, path: str, value: str) -> None:
        self._req(Op.XS_WRITE, "write", path, _check_path("write", path) + b"\0" + _encode(value))

    def write_all(self, values: Mapping[str, str], perms: Iterable[tuple[str, Iterable[str]]] = ()) -> None:
        """Set permissions (first, in order) and write keys (then, in order), pipelined: every
        request is sent before the first reply is awaited, and the server handles them in the
        order sent, so a directory whose permissions are set here passes them on to the keys
        written below it. N requests cost one round trip."""
        requests: list[tuple[int, bytes, int, str, str]] = []
        for path, plist in perms:
            body = b"".join(p.encode("ascii") + b"\0" for p in plist)
            requests.append((Op.XS_WRITE, _check_path("write", path) + b"\0", self._tx_id, "write", path))
            requests.append((Op.XS_SET_PERMS, _check_path("set_perms", path, True) + b"\0" + body, self._tx_id,
                             "set_perms", path))
        requests += [(Op.XS_WRITE, _check_path("write", p) + b"\0" + _encode(v), self._tx_id, "write", p)
                     for p, v in values.items()]
        self._client._call_many(requests)

    def mkdir(self, path: str) -> None:
        self._req(Op.XS_MKDIR, "mkdir", path, _check_path("mkdir", path) + b"\0")

    def rm(self, path: str) -> None:
        """Remove a subtree; fine if it is already gone (but not if its parent is gone too)."""
        self._req(Op.XS_RM, "rm", path, _check_path("rm", path) + b"\0")

    def ls(self, path: str) -> list[str]:
        raw = self._req(Op.XS_DIRECTORY, "ls", path, _check_path("ls", path) + b"\0")
        return [_decode(c) for c in raw.split(b"\0")[:-1]] if raw else []

    def exists(self, path: str) -> bool:
        try:
            self.ls(path)
        except XenstoreError as e:
            if e.errname == "ENOENT":
                return False
            raise
        return True

    def get_perms(self, path: str) -> list[str]:
        raw = self._req(Op.XS_GET_PERMS, "get_perms", path, _check_path("get_perms", path, True) + b"\0")
        return [_decode(p) for p in raw.split(b"\0")[:-1]]

    def set_perms(self, path: str, perms: Iterable[str]) -> None:
        body = b"".join(p.encode("ascii") + b"\0" for p in perms)
        self._req(Op.XS_SET_PERMS, "set_perms", path, _check_path("set_perms", path, True) + b"\0" + body)

    def write_with_perms(self, path: str, value: str, perms: Iterable[str]) -> None:
        self.write(path, value)
        self.set_perms(path, perms)


class XsTransaction(_Ops):
    """The operations of one transaction; handed to the function given to XsClient.transaction."""

    def __init__(self, client: XsClient, tx_id: int) -> None:
        self._client = client
        self._tx_id = tx_id


class XsWatch:
    """One watch with a globally unique token. `get(timeout)` returns the next event's path, or
    None when the time is up. Events may be spurious: re-read the state, never count events."""

    def __init__(self, client: XsClient, path: str, depth: int | None = None) -> None:
        self._client = client
        self.path = path
        self.token = f"{_TOKEN_PREFIX}-{next(_tokens)}"
        self.events: queue.Queue[_Event] = queue.Queue()  # pyxs's router puts Event tuples here
        self._btoken = self.token.encode()
        payload = _check_path("watch", path, special_ok=True) + b"\0" + self._btoken + b"\0"
        if depth is not None:
            payload += str(depth).encode() + b"\0"
        router = client._connect()
        router.subscribe(self._btoken, self)
        try:
            client._call(Op.XS_WATCH, payload, 0, "watch", path)
        except BaseException:
            router.unsubscribe(self._btoken, self)
            raise
        self._active = True

    def get(self, timeout: float) -> str | None:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            remaining = deadline - time.monotonic()
            try:
                event = self.events.get(timeout=max(0.0, min(remaining, _SLICE)))
            except queue.Empty:
                if not self._client._alive():
                    raise self._client._unreachable("the connection was lost") from None
                if remaining <= 0:
                    return None
                continue
            return _decode(event.path)

    def close(self) -> None:
        if not self._active:
            return
        self._active = False
        router = self._client._router
        if router is not None and self._client._alive():
            try:
                self._client._call(Op.XS_UNWATCH, self.path.encode() + b"\0" + self._btoken + b"\0", 0, "unwatch", self.path)
            except XeError:
                pass  # the server dropped it already, or is gone: either way nothing fires
        if router is not None:
            try:
                router.unsubscribe(self._btoken, self)
            except ValueError:
                pass

    def __enter__(self) -> XsWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class XsClient(_Ops):
    """A connection to one xenstored. Cheap to create (connects on first use); one per command.

    with XsClient(socket_path) as xs:
        xs.write("/local/domain/5/name", "vm1")
        xs.write_many({"/a": "1", "/b": ""}, perms={"/a": ["n0", "r5"]})   # one transaction
        xs.transaction(lambda t: t.write("/c", str(int(t.read("/c")) + 1)))  # redone on EAGAIN
        xs.wait_for_value(f"{backend}/state", "4", timeout=10)
    """

    def __init__(self, socket_path: str | os.PathLike[str], timeout: float = DEFAULT_TIMEOUT) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout
        self._router: Router | None = None
        self._closed = False
        self._client = self
        self._tx_id = 0
        self._lock = threading.Lock()

    # --- connection ----------------------------------------------------------------------------

    def __enter__(self) -> XsClient:
        self._connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unreachable(self, reason: str) -> XeError:
        return XeError("XENSTORE_UNREACHABLE", self.socket_path, reason)

    def _connect(self) -> Router:
        with self._lock:
            if self._closed:
                raise self._unreachable("the client was closed; create a new one")
            if self._router is not None:
                return self._router
            router = Router(UnixSocketConnection(self.socket_path))
            # Replace pyxs's thread so that its death (the server went away) is quiet: we
            # notice it through is_alive(), and a traceback on the CLI's stderr helps nobody.
            router.thread = threading.Thread(target=self._route, args=(router,), name="xs-router", daemon=True)
            try:
                router.start()
            except PyxsConnectionError as e:
                raise self._unreachable(str(e)) from None
            self._router = router
            return router

    @staticmethod
    def _route(router: Router) -> None:
        try:
            router()
        except (PyxsConnectionError, UnexpectedPacket, PyXSError, OSError, ValueError) as e:
            import logging  # here: the import costs a command 10 ms, and this is rare

            logging.getLogger(__name__).debug("xenstore router stopped: %s", e)

    def _alive(self) -> bool:
        return self._router is not None and self._router.thread.is_alive()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            router, self._router = self._router, None
        if router is not None and router.thread.is_alive():
            try:
                router.terminate()
            except OSError:
                pass

    # --- requests ------------------------------------------------------------------------------

    def _call(self, op: int, payload: bytes, tx_id: int, operation: str, path: str) -> bytes:
        return self._await(self._send(op, payload, tx_id, operation, path), operation, path)

    def _call_many(self, requests: list[tuple[int, bytes, int, str, str]]) -> list[bytes]:
        """Send every request, then collect the replies in order (the first error is raised)."""
        sent = [(self._send(*req), req[3], req[4]) for req in requests]
        return [self._await(rvar, operation, path) for rvar, operation, path in sent]

    def _send(self, op: int, payload: bytes, tx_id: int, operation: str, path: str) -> Any:
        if len(payload) > XENSTORE_PAYLOAD_MAX:
            raise XenstoreError(operation, path, "E2BIG")
        router = self._connect()
        if not router.thread.is_alive():
            raise self._unreachable("the connection was lost")
        rq_id = next(_rq_ids) & 0xFFFFFFFF
        try:
            rvar = router.send(_Packet(op, rq_id, tx_id, len(payload), payload))
        except (PyxsConnectionError, OSError) as e:
            raise self._unreachable(str(e)) from None
        return rvar

    def _await(self, rvar: Any, operation: str, path: str) -> bytes:
        router = self._router
        if router is None:
            raise self._unreachable("the client was closed")
        deadline = time.monotonic() + self.timeout
        cond = rvar.condition
        with cond:
            while rvar.target is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise XeError("XENSTORE_TIMEOUT", operation, path, self.timeout)
                cond.wait(min(remaining, _SLICE))
                if rvar.target is None and not router.thread.is_alive():
                    raise self._unreachable("the connection was lost")
        packet = rvar.target
        payload: bytes = packet.payload  # pyxs has no types: its Packet's payload is bytes
        if packet.op == Op.XS_ERROR:
            raise XenstoreError(operation, path, payload.rstrip(b"\0").decode("ascii", "replace"))
        return payload

    def transaction(self, fn: Callable[[XsTransaction], T], attempts: int = TRANSACTION_ATTEMPTS) -> T:
        """Run `fn` in a transaction and commit; on EAGAIN run the whole function again (it must
        therefore only compute from what it reads inside the transaction)."""
        for attempt in range(attempts):
            tid = int(self._call(Op.XS_TRANSACTION_START, b"\0", 0, "transaction_start", "").rstrip(b"\0"))
            try:
                result = fn(XsTransaction(self, tid))
            except BaseException:
                try:
                    self._call(Op.XS_TRANSACTION_END, b"F\0", tid, "transaction_end", "")
                except XeError:
                    pass
                raise
            try:
                self._call(Op.XS_TRANSACTION_END, b"T\0", tid, "transaction_end", "")
                return result
            except XenstoreError as e:
                if e.errname != "EAGAIN":
                    raise
            time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise XenstoreError("transaction", "", "EAGAIN")

    def write_many(self, values: Mapping[str, str], perms: Mapping[str, Iterable[str]] | None = None) -> None:
        """Write several keys (and optionally their permissions) in one transaction."""
        perm_lists = {k: list(v) for k, v in (perms or {}).items()}

        def work(t: XsTransaction) -> None:
            t.write_all(values)
            for path, plist in perm_lists.items():
                t.set_perms(path, plist)

        self.transaction(work)

    # --- watches -------------------------------------------------------------------------------

    def watch(self, path: str, depth: int | None = None) -> XsWatch:
        """A watch on `path` (or @introduceDomain / @releaseDomain); use as a context manager."""
        return XsWatch(self, path, depth)

    def wait_until(self, path: str, predicate: Callable[[str | None], bool], timeout: float) -> str | None:
        """Wait until predicate(value of path, None if absent) holds; return that value.
        EVENT_WAIT_TIMEOUT if it does not hold within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.watch(path) as w:
            while True:
                value = self.read_or(path)
                if predicate(value):
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (w.get(remaining) is None and time.monotonic() >= deadline):
                    value = self.read_or(path)
                    if predicate(value):
                        return value
                    raise XeError("EVENT_WAIT_TIMEOUT", f"xenstore path {path}", timeout)

    def wait_for_value(self, path: str, values: str | Collection[str], timeout: float) -> str:
        wanted = {values} if isinstance(values, str) else set(values)
        got = self.wait_until(path, lambda v: v in wanted, timeout)
        assert got is not None
        return got

    def wait_for_absence(self, path: str, timeout: float) -> None:
        self.wait_until(path, lambda v: v is None, timeout)

    # --- domains (privileged) ------------------------------------------------------------------

    def get_domain_path(self, domid: int) -> str:
        return _decode(self._call(Op.XS_GET_DOMAIN_PATH, f"{domid}\0".encode(), 0, "get_domain_path", "")).rstrip("\0")

    def is_domain_introduced(self, domid: int) -> bool:
        return self._call(Op.XS_IS_DOMAIN_INTRODUCED, f"{domid}\0".encode(), 0, "is_domain_introduced", "") == b"T\0"

    def introduce_domain(self, domid: int, gfn: int, evtchn: int) -> None:
        self._call(Op.XS_INTRODUCE, f"{domid}\0{gfn}\0{evtchn}\0".encode(), 0, "introduce", "")

    def release_domain(self, domid: int) -> None:
        self._call(Op.XS_RELEASE, f"{domid}\0".encode(), 0, "release", "")

    def resume_domain(self, domid: int) -> None:
        self._call(Op.XS_RESUME, f"{domid}\0".encode(), 0, "resume", "")

    def set_target(self, domid: int, target: int) -> None:
        self._call(Op.XS_SET_TARGET, f"{domid}\0{target}\0".encode(), 0, "set_target", "")

    def control(self, *args: str) -> str:
        """xenstored's CONTROL channel; the simulator's server knows `act-as N` and `eagain P`."""
        payload = b"".join(a.encode() + b"\0" for a in args)
        return _decode(self._call(Op.XS_CONTROL, payload, 0, "control", "")).rstrip("\0")
