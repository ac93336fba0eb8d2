"""What VBDs and VIFs share: the frontend/backend pair in xenstore, the wait for the backend's
hotplug, and the Closing/Closed handshake on unplug (libxl's device add/remove, xenopsd's
Device.add / Device.clean_shutdown).
"""

from __future__ import annotations

from xetool.backends.base import Backend
from xetool.devices.domain import home, private_home, vm_uuid_of, write_tree, xenops_home
from xetool.errors import XeError
from xetool.records import field, record
from xetool.xenstore.client import XsClient

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Mapping

CLOSING, CLOSED = "5", "6"


def hotplug_timeout() -> float:
    from xetool.host import env

    return float(env.get("XETOOL_HOTPLUG_TIMEOUT") or "10")


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

    @property
    def frontend_ro(self) -> str:
        """xenopsd's copy of the frontend's backend link, out of the guest's reach."""
        return f"{xenops_home(self.domid)}/device/{self.kind}/{self.devid}"

    @property
    def xenserver(self) -> str:
        """The device's extra XenServer keys, writable by the guest."""
        return f"{home(self.domid)}/xenserver/device/{self.kind}/{self.devid}"

    def private(self, vm_uuid: str) -> str:
        """xenopsd's private data of the device (backend kind and id, a VIF's MAC, bridge...)."""
        return f"{private_home(vm_uuid)}/private/{self.kind}/{self.devid}"

    def hotplug(self, vm_uuid: str) -> str:
        """Where xenopsd keeps the device's hotplug state (XenServer's vif script reports here)."""
        return f"{private_home(vm_uuid)}/hotplug/{self.domid}/{self.kind}/{self.devid}"


@record(frozen=True)
class Device:
    """One device to add: where it goes, its frontend and backend keys, and its name for errors."""

    paths: DevicePaths
    front: Mapping[str, str]
    back: Mapping[str, str]
    name: str
    private: Mapping[str, str] = field(default_factory=dict)  # beside backend-kind and backend-id


def add(xs: XsClient, backend: Backend, devices: list[Device]) -> None:
    """Write every device's two halves in one transaction, run the hotplug where dom0 needs it,
    then wait for each hotplug-status: `connected`, or `error` with hotplug-error, or
    DEVICE_ATTACH_TIMEOUT. The backends work on all of them at once."""
    if not devices:
        return
    vm_uuid = vm_uuid_of(xs, devices[0].paths.domid)
    values: dict[str, str] = {}
    dirs: list[tuple[str, list[str]]] = []
    for d in devices:
        dev = d.paths
        values |= {f"{dev.frontend}/{k}": v for k, v in
                   {"backend": dev.backend, "backend-id": "0", "state": "1", **d.front}.items()}
        values |= {f"{dev.backend}/{k}": v for k, v in
                   {"frontend": dev.frontend, "frontend-id": str(dev.domid), "online": "1", "state": "1", **d.back}.items()}
        values[f"{dev.frontend_ro}/backend"] = dev.backend
        values |= {f"{dev.private(vm_uuid)}/{k}": v for k, v in
                   {"backend-kind": dev.kind, "backend-id": "0", **d.private}.items()}
        # The guest owns its frontend and may read the backend (libxl's device add); xenopsd's
        # private copies are dom0's alone; the extra XenServer keys are the guest's.
        dirs += [(dev.frontend, [f"n{dev.domid}", "r0"]), (dev.backend, ["n0", f"r{dev.domid}"]),
                 (dev.frontend_ro, ["n0"]), (dev.private(vm_uuid), ["n0"]), (dev.hotplug(vm_uuid), ["n0"]),
                 (dev.xenserver, [f"n{dev.domid}"])]
    xs.transaction(lambda t: write_tree(t, dirs, values))
    _hotplug_all(backend, devices)
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


def _hotplug_all(backend: Backend, devices: list[Device]) -> None:
    """Every device's hotplug at once, as libxl adds a domain's devices: each script waits on
    its own backend (a second or more under emulation), not on the other devices' scripts. The
    first device's error, in the order given, is raised once all have finished."""
    def one(d: Device) -> None:
        backend.hotplug(d.paths.kind, d.paths.domid, d.paths.devid, "add" if d.paths.kind == "vbd" else "online")

    if len(devices) == 1:
        one(devices[0])
        return
    import threading

    errors: list[BaseException | None] = [None] * len(devices)

    def run(i: int) -> None:
        try:
            one(devices[i])
        except BaseException as err:  # raised below, in the caller's thread
            errors[i] = err

    threads = [threading.Thread(target=run, args=(i,), name=f"hotplug {d.name}") for i, d in enumerate(devices)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for err in errors:
        if err is not None:
            raise err


def remove(xs: XsClient, backend: Backend, dev: DevicePaths, name: str, force: bool = False) -> None:
    """Ask the backend to close (online=0, state Closing), wait for Closed, then remove both
    halves. With `force`, or when the domain is gone, just remove them."""
    if not xs.exists(dev.backend):
        _remove_paths(xs, dev, dev.frontend)
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
    _remove_paths(xs, dev, dev.frontend, dev.backend)
    # the per-domain directory above the backend (backend/<kind>/<domid>) outlives the domain
    # in dom0's tree unless removed with its last device, as libxl does
    parent = dev.backend.rsplit("/", 1)[0]
    if xs.exists(parent) and not xs.ls(parent):
        xs.rm(parent)


def _remove_paths(xs: XsClient, dev: DevicePaths, *halves: str) -> None:
    """The given halves, and what xenopsd keeps of the device (Hotplug.release): its private
    copy of the frontend link, its private data and hotplug state, its extra XenServer keys."""
    vm_uuid = vm_uuid_of(xs, dev.domid)
    private = (dev.private(vm_uuid), dev.hotplug(vm_uuid)) if vm_uuid else ()
    for path in (*halves, dev.frontend_ro, dev.xenserver, *private):
        if xs.exists(path):
            xs.rm(path)
