"""In-process xenstore access for the simulated host's components (dom0 backends, guests,
xenconsoled). They share the server's thread and Tree, so calls are direct, but they see the
store exactly as a client would: with their domain's permissions, and through watches whose
callbacks run on the next loop iteration (never inside another component's write)."""

from __future__ import annotations

import itertools
import logging

from xetool.xenstore.server import Loop
from xetool.xenstore.tree import Caller, Tree, Watch, parse_perms
from xetool.xenstore.wire import XsError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger("xetool.simulator")


class LocalXs:
    """One in-process xenstore client acting for `caller` (dom0 or a guest domain)."""

    def __init__(self, tree: Tree, loop: Loop, caller: Caller, name: str) -> None:
        self.tree = tree
        self.loop = loop
        self.caller = caller
        self.name = name
        self._callbacks: dict[str, Callable[[str], None]] = {}
        self._watches: dict[str, Watch] = {}
        self._tokens = itertools.count(1)
        self.closed = False

    # WatchOwner
    def deliver(self, path: str, token: str) -> None:
        cb = self._callbacks.get(token)
        if cb is not None:
            self.loop.call_soon(self._run, token, cb, path)

    def _run(self, token: str, cb: Callable[[str], None], path: str) -> None:
        if not self.closed and token in self._callbacks:
            cb(path)

    def read(self, path: str) -> str | None:
        """The value, or None if the node is missing or unreadable for this domain."""
        try:
            return self.tree.read(self.caller, path).decode("utf-8", "surrogateescape")
        except XsError as e:
            if e.name == "EACCES":
                log.warning("%s: cannot read %s: permission denied", self.name, path)
            return None

    def ls(self, path: str) -> list[str]:
        try:
            return self.tree.directory(self.caller, path)[0]
        except XsError:
            return []

    def write(self, path: str, value: str) -> bool:
        """Write; on failure log it (as a kernel would printk) and return False."""
        try:
            self.tree.write(self.caller, path, value.encode("utf-8", "surrogateescape"))
            return True
        except XsError as e:
            log.warning("%s: cannot write %s: %s", self.name, path, e)
            return False

    def write_many(self, values: dict[str, str]) -> bool:
        return all([self.write(p, v) for p, v in values.items()])

    def mkdir(self, path: str) -> None:
        self.tree.mkdir(self.caller, path)

    def rm(self, path: str) -> None:
        try:
            self.tree.rm(self.caller, path)
        except XsError as e:
            if e.name != "ENOENT":
                log.warning("%s: cannot remove %s: %s", self.name, path, e)

    def set_perms(self, path: str, perms: list[str]) -> None:
        self.tree.set_perms(self.caller, path, parse_perms(perms))

    def watch(self, path: str, callback: Callable[[str], None], depth: int | None = None) -> str:
        """Watch `path`; `callback(event_path)` runs for the initial event and each change."""
        token = f"{self.name}-{next(self._tokens)}"
        self._callbacks[token] = callback
        try:
            w = self.tree.watch(self, self.caller, path, path, token, depth)
        except XsError:
            del self._callbacks[token]
            raise
        self._watches[token] = w
        self.tree.initial_event(w)
        return token

    def unwatch(self, token: str) -> None:
        w = self._watches.pop(token, None)
        self._callbacks.pop(token, None)
        if w is not None:
            try:
                self.tree.unwatch(self, w.given, w.path, w.token)
            except XsError:
                pass  # dropped by RELEASE already

    def close(self) -> None:
        self.closed = True
        self.tree.reset_watches(self)
        self._watches.clear()
        self._callbacks.clear()
