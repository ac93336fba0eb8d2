"""What VBDs and VIFs share: the frontend/backend pair in xenstore, the wait for the backend's
hotplug, and the Closing/Closed handshake on unplug (libxl's device add/remove, xenopsd's
Device.add / Device.clean_shutdown).
"""

from __future__ import annotations

import os

from xetool.backends.base import Backend
from xetool.devices.domain import home, write_tree
from xetool.errors import XeError
from xetool.records import record
from xetool.xenstore.client import XsClient

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Mapping

CLOSING, CLOSED = "5", "6"


def hotplug_timeout() -> float:
    return float(os.environ.get("XETOOL_HOTPLUG_TIMEOUT", "10"))


@record(frozen=True)
class DevicePaths:
    kind: str  # vbd | vif
    domid: int
    devid: int

    @property
    def frontend(self) -> str:
        return f"{home(self.domid)}/device/{self.kind}/{self.devid}"

    @property
    def backend(self) -> str:
        return f"/local/domain/0/backend/{self.kind}/{self.domid}/{self.devid}"


@record(frozen=True)
class Device:
    """One device to add: where it goes, its frontend and backend keys, and its name for errors."""

    paths: DevicePaths
    front: Mapping[str, str]
    back: Mapping[str, str]
    name: str


def add(xs: XsClient, backend: Backend, devices: list[Device]) -> None:
    """Write every device's two halves in one transaction, run the hotplug where dom0 needs it,
    then wait for each hotplug-status: `connected`, or `error` with hotplug-error, or
    DEVICE_ATTACH_TIMEOUT. The backends work on all of them at once."""
    values: dict[str, str] = {}
    dirs: list[tuple[str, list[str]]] = []
    for d in devices:
        dev = d.paths
        values |= {f"{dev.frontend}/{k}": v for k, v in
                   {"backend": dev.backend, "backend-id": "0", "state": "1", **d.front}.items()}
        values |= {f"{dev.backend}/{k}": v for k, v in
                   {"frontend": dev.frontend, "frontend-id": str(dev.domid), "online": "1", "state": "1", **d.back}.items()}
        # The guest owns its frontend and may read the backend (libxl's device add).
        dirs += [(dev.frontend, [f"n{dev.domid}", "r0"]), (dev.backend, ["n0", f"r{dev.domid}"])]
    if not devices:
        return
    xs.transaction(lambda t: write_tree(t, dirs, values))
    for d in devices:
        backend.hotplug(d.paths.kind, d.paths.domid, d.paths.devid, "add" if d.paths.kind == "vbd" else "online")
    timeout = hotplug_timeout()
    for d in devices:
        try:
            status = xs.wait_until(f"{d.paths.backend}/hotplug-status", lambda v: v in ("connected", "error"), timeout)
        except XeError as err:
            if err.code == "EVENT_WAIT_TIMEOUT":
                raise XeError("DEVICE_ATTACH_TIMEOUT", d.paths.kind, d.name, timeout) from None
            raise
        if status == "error":
            reason = xs.read_or(f"{d.paths.backend}/hotplug-error") or "the hotplug script failed"
            raise XeError("HOTPLUG_FAILED", d.paths.kind, d.name, reason)


def remove(xs: XsClient, backend: Backend, dev: DevicePaths, name: str, force: bool = False) -> None:
    """Ask the backend to close (online=0, state Closing), wait for Closed, then remove both
    halves. With `force`, or when the domain is gone, just remove them."""
    if not xs.exists(dev.backend):
        if xs.exists(dev.frontend):
            xs.rm(dev.frontend)
        return
    if not force:
        xs.write_many({f"{dev.backend}/online": "0", f"{dev.backend}/state": CLOSING})
        try:
            xs.wait_until(f"{dev.backend}/state", lambda v: v in (CLOSED, None), hotplug_timeout())
        except XeError as err:
            if err.code == "EVENT_WAIT_TIMEOUT":
                raise XeError("DEVICE_DETACH_TIMEOUT", dev.kind, name, hotplug_timeout()) from None
            raise
    backend.hotplug(dev.kind, dev.domid, dev.devid, "remove" if dev.kind == "vbd" else "offline")
    for path in (dev.frontend, dev.backend):
        if xs.exists(path):
            xs.rm(path)
    # the per-domain directory above the backend (backend/<kind>/<domid>) outlives the domain
    # in dom0's tree unless removed with its last device, as libxl does
    parent = dev.backend.rsplit("/", 1)[0]
    if xs.exists(parent) and not xs.ls(parent):
        xs.rm(parent)
