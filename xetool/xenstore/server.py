"""A xenstored-compatible server on a Unix socket: one thread, one selector, many clients.

Robustness rules: a request over XENSTORE_PAYLOAD_MAX closes that connection; anything else
malformed gets an error reply. A client that sends requests faster than it reads the replies
is simply not read (as C xenstored) while READ_PAUSE bytes wait for it; one that stops reading
its watch events is closed once its pending output passes OUTPUT_LIMIT. Neither can stall the
loop or the other clients.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import logging
import os
import select
import selectors
import signal
import socket
import threading
import time
from collections import deque
from pathlib import Path

from xetool.xenstore.tree import DOM0, Caller, Transaction, Tree
from xetool.xenstore.wire import (
    HEADER,
    HEADER_SIZE,
    XENSTORE_PAYLOAD_MAX,
    Op,
    XsError,
    decode,
    error_payload,
    validate_path,
)

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger("xetool.xenstore.server")

OUTPUT_LIMIT = 512 * 1024  # bytes of unsent replies and events before a connection is dropped
# Below glibc's mmap threshold (128 KiB): a larger recv buffer costs an mmap and munmap per
# message, more than the message itself. A request is at most 4 KiB of payload anyway.
RECV_SIZE = 65536
READ_PAUSE = 64 * 1024  # stop reading a client's requests while this much of its output waits


class Poller:
    """epoll with the part of the selectors API the components use (register/modify/unregister
    with a callback as the data); Loop.run dispatches epoll's results straight from the fd
    table, with no per-event key objects."""

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.callbacks: dict[int, Callable[[int], None]] = {}

    @staticmethod
    def _events(mask: int) -> int:
        return (select.EPOLLIN if mask & selectors.EVENT_READ else 0) | \
            (select.EPOLLOUT if mask & selectors.EVENT_WRITE else 0)

    def register(self, fileobj: socket.socket, mask: int, callback: Callable[[int], None]) -> None:
        fd = fileobj.fileno()
        self.epoll.register(fd, self._events(mask))
        self.callbacks[fd] = callback

    def modify(self, fileobj: socket.socket, mask: int, callback: Callable[[int], None]) -> None:
        fd = fileobj.fileno()
        self.epoll.modify(fd, self._events(mask))
        self.callbacks[fd] = callback

    def unregister(self, fileobj: socket.socket) -> None:
        fd = fileobj.fileno()
        if self.callbacks.pop(fd, None) is None:
            raise KeyError(fd)
        self.epoll.unregister(fd)

    def close(self) -> None:
        self.epoll.close()


_READABLE = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR


class Loop:
    """A minimal event loop: selector readers/writers, call_soon, call_later, thread wake-up."""

    def __init__(self) -> None:
        self.selector = Poller()
        self._ready: deque[tuple[Callable[..., None], tuple[object, ...]]] = deque()
        self._timers: list[tuple[float, int, Callable[..., None], tuple[object, ...]]] = []
        self._seq = itertools.count()
        self._idle: list[Callable[[], None]] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._threadsafe: deque[tuple[Callable[..., None], tuple[object, ...]]] = deque()
        self.selector.register(self._wake_r, selectors.EVENT_READ, self._drain_wake)
        self.stopping = False

    def call_soon(self, fn: Callable[..., None], *args: object) -> None:
        self._ready.append((fn, args))

    def call_later(self, delay: float, fn: Callable[..., None], *args: object) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), fn, args))

    def call_threadsafe(self, fn: Callable[..., None], *args: object) -> None:
        self._threadsafe.append((fn, args))
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already awake, or closing

    def add_idle(self, fn: Callable[[], None]) -> None:
        """Run after every iteration (the server flushes its output there, in one send each)."""
        self._idle.append(fn)

    def stop(self) -> None:
        self.stopping = True
        self.call_threadsafe(lambda: None)

    def _drain_wake(self, _mask: int) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def run(self) -> None:
        poll = self.selector.epoll.poll
        callbacks = self.selector.callbacks
        readable, writable = _READABLE, select.EPOLLOUT
        EV_READ, EV_WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
        while not self.stopping:
            if self._ready or self._threadsafe:
                timeout: float = 0
            elif self._timers:
                timeout = max(0.0, self._timers[0][0] - time.monotonic())
            else:
                timeout = -1
            for fd, ev in poll(timeout):
                callback = callbacks.get(fd)
                if callback is not None:  # (unregistered by an earlier callback of this round)
                    callback((EV_READ if ev & readable else 0) | (EV_WRITE if ev & writable else 0))
            while self._threadsafe:
                fn, args = self._threadsafe.popleft()
                fn(*args)
            if self._timers:
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    _, _, fn, args = heapq.heappop(self._timers)
                    self._ready.append((fn, args))
            for _ in range(len(self._ready)):
                fn, args = self._ready.popleft()
                try:
                    fn(*args)
                except Exception:  # a simulated component's bug must not take the host down
                    log.exception("callback %r failed", fn)
            for idle in self._idle:
                idle()
        self.selector.close()
        self._wake_r.close()
        self._wake_w.close()


class Connection:
    """One socket client: its buffers, its identity, its transactions."""

    __slots__ = ("server", "sock", "inbuf", "out", "caller", "transactions", "next_tx", "closed", "interest")

    def __init__(self, server: XenstoreServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.inbuf = bytearray()
        self.out = bytearray()
        self.caller: Caller = DOM0
        self.transactions: dict[int, Transaction] = {}
        self.next_tx = 1
        self.closed = False
        self.interest = selectors.EVENT_READ

    def on_io(self, mask: int) -> None:
        self.server._on_io(self, mask)

    def deliver(self, path: str, token: str) -> None:
        payload = f"{path}\0{token}\0".encode()
        if len(payload) > XENSTORE_PAYLOAD_MAX:
            return  # as C xenstored: an oversize event is silently dropped
        self.send(Op.XS_WATCH_EVENT, 0, 0, payload)

    def send(self, op: int, req_id: int, tx_id: int, payload: bytes) -> None:
        if self.closed:
            return
        self.out += HEADER.pack(op, req_id, tx_id, len(payload))
        self.out += payload
        self.server.dirty.add(self)


def close_listener(loop: Loop, listener: socket.socket, path: str, inode: int) -> None:
    """Stop listening, and remove the socket file unless a successor has replaced it."""
    try:
        loop.selector.unregister(listener)
    except (KeyError, ValueError):
        pass
    listener.close()
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
    except FileNotFoundError:
        pass


class XenstoreServer:
    """Serves a Tree on a Unix socket, inside a Loop (which may also run other components)."""

    def __init__(self, tree: Tree, loop: Loop, socket_path: str | os.PathLike[str]) -> None:
        self.tree = tree
        self.loop = loop
        self.socket_path = str(socket_path)
        self.dirty: set[Connection] = set()
        self.connections: set[Connection] = set()
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.socket_path)
        self._inode = os.stat(self.socket_path).st_ino  # unlink at shutdown only if still ours
        self.listener.listen(128)
        self.listener.setblocking(False)
        loop.selector.register(self.listener, selectors.EVENT_READ, self._accept)
        loop.add_idle(self.flush)
        from xetool.xenstore import ops  # the per-message handlers

        self.handlers = ops.HANDLERS
        self.privileged_ops = ops.PRIVILEGED
        self.ops_ignoring_tx = ops.IGNORES_TX

    # --- I/O -----------------------------------------------------------------------------------

    def _accept(self, _mask: int) -> None:
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        sock.setblocking(False)
        conn = Connection(self, sock)
        self.connections.add(conn)
        self.loop.selector.register(sock, selectors.EVENT_READ, conn.on_io)

    def _on_io(self, conn: Connection, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush_one(conn)
        if mask & selectors.EVENT_READ and not conn.closed:
            try:
                data = conn.sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self.close(conn)
                return
            conn.inbuf += data
            self._process(conn)
            if conn.out:  # answer at once: each client waits for its reply before the next request
                self._flush_one(conn)

    def _process(self, conn: Connection) -> None:
        buf = conn.inbuf
        pos, end = 0, len(buf)
        unpack = HEADER.unpack_from
        handlers = self.handlers
        privileged, ignores_tx = self.privileged_ops, self.ops_ignoring_tx
        while end - pos >= HEADER_SIZE and not conn.closed and len(conn.out) < READ_PAUSE:
            op, req_id, tx_id, length = unpack(buf, pos)
            if length > XENSTORE_PAYLOAD_MAX:
                log.info("closing a connection that sent %d bytes of payload", length)
                self.close(conn)
                return
            if end - pos < HEADER_SIZE + length:
                break
            payload = bytes(buf[pos + HEADER_SIZE:pos + HEADER_SIZE + length])
            pos += HEADER_SIZE + length
            handler = handlers.get(op)
            try:
                if handler is None:
                    raise XsError("ENOSYS", f"message type {op}")
                if op in privileged and not conn.caller.privileged:
                    raise XsError("EACCES", "privileged message")
                if tx_id and tx_id not in conn.transactions and op not in ignores_tx:
                    raise XsError("ENOENT", f"no transaction {tx_id}")
                reply = handler(self, conn, req_id, tx_id, payload)
            except XsError as e:
                conn.send(Op.XS_ERROR, req_id, tx_id, error_payload(e.name))
                continue
            except Exception:
                log.exception("message type %d failed", op)
                conn.send(Op.XS_ERROR, req_id, tx_id, error_payload("EIO"))
                continue
            if reply is not None:
                if len(reply) > XENSTORE_PAYLOAD_MAX:
                    conn.send(Op.XS_ERROR, req_id, tx_id, error_payload("E2BIG"))
                else:
                    conn.send(op, req_id, tx_id, reply)
        if pos:
            del buf[:pos]
        if len(conn.out) >= READ_PAUSE:
            self._update_interest(conn)

    def flush(self) -> None:
        while self.dirty:
            self._flush_one(self.dirty.pop())

    def _flush_one(self, conn: Connection) -> None:
        self.dirty.discard(conn)
        if conn.closed or not conn.out:
            return
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.close(conn)
            return
        del conn.out[:sent]
        if len(conn.out) > OUTPUT_LIMIT:
            log.info("closing a connection that does not read: %d bytes pending", len(conn.out))
            self.close(conn)
            return
        paused = (conn.interest & selectors.EVENT_READ) == 0
        self._update_interest(conn)
        if paused and len(conn.out) < READ_PAUSE and conn.inbuf:
            self._process(conn)  # requests that arrived while it was paused

    def _update_interest(self, conn: Connection) -> None:
        interest = (selectors.EVENT_READ if len(conn.out) < READ_PAUSE else 0) | \
            (selectors.EVENT_WRITE if conn.out else 0)
        if interest != conn.interest and not conn.closed:
            conn.interest = interest
            self.loop.selector.modify(conn.sock, interest, conn.on_io)

    def close(self, conn: Connection) -> None:
        """Drop a client: its transactions are aborted and its watches removed."""
        if conn.closed:
            return
        conn.closed = True
        for tx in conn.transactions.values():
            self.tree.transaction_end(tx, commit=False)
        conn.transactions.clear()
        self.tree.reset_watches(conn)
        self.connections.discard(conn)
        self.dirty.discard(conn)
        try:
            self.loop.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def shutdown(self) -> None:
        for conn in list(self.connections):
            self.close(conn)
        close_listener(self.loop, self.listener, self.socket_path, self._inode)

    # --- helpers for the handlers --------------------------------------------------------------

    _valid: dict[bytes, str] = {}  # absolute paths already validated (bounded below)

    @classmethod
    def resolve(cls, conn: Connection, raw: bytes, *, special_ok: bool = False) -> tuple[str, str]:
        """(as given, absolute): relative paths are under the caller's /local/domain/<domid>."""
        known = cls._valid.get(raw)
        if known is not None:
            return known, known
        given = decode(raw)
        validate_path(given, special_ok=special_ok)
        if given.startswith("/"):
            if len(cls._valid) > 50000:
                cls._valid.clear()
            cls._valid[raw] = given
            return given, given
        if given.startswith("@"):
            return given, given
        return given, f"/local/domain/{conn.caller.domid}/{given}"


class ThreadedServer:
    """A server on its own thread, for tests and benchmarks: `with ThreadedServer(path) as s:`."""

    def __init__(self, socket_path: str | os.PathLike[str], tree: Tree | None = None) -> None:
        self.tree = tree or Tree()
        self.loop = Loop()
        self.server = XenstoreServer(self.tree, self.loop, socket_path)
        self.thread = threading.Thread(target=self.loop.run, name="xenstored", daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, fn: Callable[[], object], timeout: float = 5.0) -> object:
        """Run `fn` on the server's thread (where the tree may be touched) and return its result."""
        box: list[object] = []
        done = threading.Event()

        def run() -> None:
            try:
                box.append(fn())
            except BaseException as e:  # handed back to the caller
                box.append(e)
            done.set()

        self.loop.call_threadsafe(run)
        if not done.wait(timeout):
            raise TimeoutError("the server thread did not answer")
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_threadsafe(self.server.shutdown)
            self.loop.stop()
            self.thread.join(5)


def main(argv: list[str] | None = None) -> int:
    """`python -m xetool.xenstore.server --socket PATH`: a standalone xenstored."""
    ap = argparse.ArgumentParser(prog="xetool-xenstored")
    ap.add_argument("--socket", required=True, type=Path)
    ap.add_argument("--eagain", type=float, default=0.0, help="probability of a random EAGAIN at commit")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    loop = Loop()
    server = XenstoreServer(Tree(eagain_probability=args.eagain), loop, args.socket)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: loop.stop())
    try:
        loop.run()
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
