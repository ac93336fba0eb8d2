"""A host as its own half sees it while it runs one request: its record (what its backend is
built from), its state directory, and the stream of events back to the master."""

from __future__ import annotations

from pathlib import Path

from xetool.backends.base import Backend
from xetool.paths import host_dir

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any


class HostSide:
    def __init__(self, state_dir: Path, host: Mapping[str, Any], emit: Callable[[dict[str, Any]], None]) -> None:
        from xetool.errors import XeError

        if not host.get("uuid"):
            raise XeError("MESSAGE_PARAMETER_COUNT_MISMATCH", "host", "the host's record", "none")
        self.state_dir = state_dir  # the host's own: runtime files, leases, locks, consoles
        self.host = dict(host)
        self.uuid: str = host["uuid"]
        self.name: str = host.get("name_label") or self.uuid
        self.dir = host_dir(state_dir, self.uuid)
        self.emit = emit
        self._backend: Backend | None = None

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            from xetool.host.backend import backend_for

            self._backend = backend_for(self.state_dir, self.host)
        return self._backend

    def live_backend(self) -> Backend | None:
        """The backend if the host answers; None when it is down (its domains are gone with it).
        HOST_OFFLINE when it runs and does not answer: nothing may be assumed then."""
        from xetool.errors import XeError

        state = self.backend.reachability()
        if state == "unresponsive":
            raise XeError("HOST_OFFLINE", self.uuid, name=self.name, reason="it does not answer")
        return self.backend if state == "live" else None

    def offline(self) -> Exception:
        from xetool.errors import XeError

        return XeError("HOST_OFFLINE", self.uuid, name=self.name, reason="it does not answer")
