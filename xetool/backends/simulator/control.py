"""The host process's control interface: one JSON object per line over a Unix socket.

Request:  {"op": "create", "args": {...}}
Reply:    {"ok": true, "result": ...}  or  {"ok": false, "error": {"code": ..., "params": {...}}}

The server side runs on the host's loop (non-blocking, like the xenstore server); the client
side is a short blocking call with a deadline, used by SimulatorBackend.
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import socket
import struct
import time

from xetool.errors import XeError
from xetool.paths import socket_dirs_private

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from xetool.xenstore.server import Loop  # the server side only: clients never load it

    Dispatch = Callable[[str, dict[str, Any]], Any]


MAX_LINE = 1 << 20


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED: pid, uid, gid)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    uid: int = struct.unpack("3i", creds)[1]
    return uid


class ControlServer:
    """Serves the host's operations to the state directory's owner and root only: the socket is
    0600 in a 0700 directory, and each connection's peer credentials are checked besides, so a
    loose umask or mode cannot let another local user create or destroy domains."""

    def __init__(self, loop: Loop, path: str, dispatch: Dispatch, allowed_uids: frozenset[int] = frozenset()) -> None:
        self.loop = loop
        self.dispatch = dispatch
        self.allowed_uids = allowed_uids | {0, os.geteuid()}
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        os.chmod(path, 0o600)
        self.path = path
        self._inode = os.stat(path).st_ino
        self.listener.listen(64)
        self.listener.setblocking(False)
        loop.selector.register(self.listener, selectors.EVENT_READ, self._accept)
        self.clients: dict[socket.socket, bytearray] = {}

    def _accept(self, _mask: int) -> None:
        try:
            sock, _ = self.listener.accept()
        except BlockingIOError:
            return
        uid = peer_uid(sock)
        if uid not in self.allowed_uids:
            import logging  # the host daemon has it loaded

            logging.getLogger("xetool.simulator").warning("control connection from uid %d refused", uid)
            try:
                sock.settimeout(1.0)
                sock.sendall(json.dumps({"ok": False, "error": {"code": "PERMISSION_DENIED", "params": {
                    "message": f"uid {uid} may not control this host (allowed: {sorted(self.allowed_uids)})"}}}).encode() + b"\n")
            except OSError:
                pass
            sock.close()
            return
        sock.setblocking(False)
        self.clients[sock] = bytearray()
        def readable(_mask: int, sock: socket.socket = sock) -> None:
            self._read(sock)

        self.loop.selector.register(sock, selectors.EVENT_READ, readable)

    def _read(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        buf = self.clients.get(sock)
        if not data or buf is None:
            self._close(sock)
            return
        buf += data
        if len(buf) > MAX_LINE:
            self._close(sock)
            return
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            reply = self._handle(line)
            try:
                sock.setblocking(True)
                sock.settimeout(2.0)  # replies are small; a client that never reads is dropped
                sock.sendall(json.dumps(reply).encode() + b"\n")
                sock.setblocking(False)
            except OSError:
                self._close(sock)
                return

    def _handle(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
            op, args = req["op"], req.get("args") or {}
            return {"ok": True, "result": self.dispatch(op, args)}
        except XeError as e:
            return {"ok": False, "error": {"code": e.code, "params": e.params}}
        except (ValueError, KeyError, TypeError) as e:
            return {"ok": False, "error": {"code": "INTERNAL_ERROR", "params": {"message": f"bad request: {e}"}}}
        except Exception as e:  # a simulator bug: report it, keep the host up
            import logging  # the host daemon has it loaded; a command importing this module need not

            logging.getLogger("xetool.simulator").exception("control request failed")
            return {"ok": False, "error": {"code": "INTERNAL_ERROR", "params": {"message": repr(e)}}}

    def _close(self, sock: socket.socket) -> None:
        self.clients.pop(sock, None)
        try:
            self.loop.selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    def close(self) -> None:
        for sock in list(self.clients):
            self._close(sock)
        from xetool.xenstore.server import close_listener  # the server side only

        close_listener(self.loop, self.listener, self.path, self._inode)


class HostUnreachable(Exception):
    """Nobody answers on the control socket (not started, or crashed)."""


def call(path: str, op: str, args: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
    """One request. HostUnreachable if nothing listens; TimeoutError if it does not answer."""
    deadline = time.monotonic() + timeout
    try:
        socket_dirs_private(path)
    except FileNotFoundError as e:
        raise HostUnreachable(str(e)) from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK, errno.EACCES):
                raise HostUnreachable(str(e)) from None
            raise
        sock.sendall(json.dumps({"op": op, "args": args or {}}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                raise TimeoutError(f"no answer to {op} within {timeout} s") from None
            if not chunk:
                raise HostUnreachable("the host closed the connection")
            buf += chunk
    finally:
        sock.close()
    reply = json.loads(buf)
    if reply["ok"]:
        return reply["result"]
    err = reply["error"]
    raise XeError(err["code"], **err["params"])
