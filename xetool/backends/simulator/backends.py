"""Simulated dom0 device backends (blkback, netback with their hotplug scripts) and
xenconsoled, driven only by xenstore watches as the real ones are.

A backend directory /local/domain/0/backend/<kind>/<domid>/<devid> written by the toolstack
(state=1, online=1, frontend, ...) is probed: the "hotplug script" checks the device (a vbd's
`params` file must exist, a vif's `bridge` must have been created with ensure_bridge) and
writes hotplug-status (`connected`, or `error` with hotplug-error); the backend moves to
InitWait, then to Connected once the frontend is Initialised. Writing online=0 and state=5
(Closing) makes it go to Closed; the toolstack then removes the directories.
"""

from __future__ import annotations

import logging
import os

from xetool.backends.simulator.localxs import LocalXs
from xetool.records import record
from xetool.xenstore.tree import DOM0
from xetool.xenstore.wire import XenbusState

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from xetool.backends.simulator.hypervisor import Hypervisor

log = logging.getLogger("xetool.simulator")

BACKEND_ROOT = "/local/domain/0/backend"
BLOCK_KINDS = ("vbd", "vbd3", "qdisk")
NET_KINDS = ("vif",)
S = XenbusState


@record
class Device:
    kind: str
    domid: int
    devid: str
    path: str
    hotplug_ok: bool | None = None  # None: the script has not run yet
    frontend: str = ""
    fe_watch: str = ""


class Dom0Backends:
    def __init__(self, hv: Hypervisor) -> None:
        self.hv = hv
        self.xs = LocalXs(hv.tree, hv.loop, DOM0, "dom0-backends")
        self.devices: dict[str, Device] = {}
        self._pending: set[str] = set()
        self.xs.watch(BACKEND_ROOT, self._on_backend)

    def _on_backend(self, path: str) -> None:
        parts = path[len(BACKEND_ROOT) + 1:].split("/") if path.startswith(BACKEND_ROOT + "/") else []
        if len(parts) >= 3:
            key = "/".join([BACKEND_ROOT] + parts[:3])
            if key not in self._pending:  # coalesce a burst of writes into one look
                self._pending.add(key)
                self.hv.loop.call_soon(self._check, key)
        else:  # a whole kind or domain directory changed (often: removed)
            for key in list(self.devices):
                if key.startswith(path + "/") or path == BACKEND_ROOT:
                    self._pending.add(key)
                    self.hv.loop.call_soon(self._check, key)

    def _check(self, key: str) -> None:
        self._pending.discard(key)
        xs = self.xs
        state = xs.read(f"{key}/state")
        dev = self.devices.get(key)
        if state is None:  # the directory was removed: forget the device
            if dev is not None:
                del self.devices[key]
                if dev.fe_watch:
                    xs.unwatch(dev.fe_watch)
            return
        kind, domid, devid = key[len(BACKEND_ROOT) + 1:].split("/")
        if kind not in BLOCK_KINDS + NET_KINDS or not domid.isdigit():
            return
        if dev is None:
            frontend = xs.read(f"{key}/frontend")
            if not frontend or xs.read(f"{key}/online") is None:
                return  # not fully written yet; the next write brings us back
            dev = self.devices[key] = Device(kind, int(domid), devid, key, frontend=frontend)
            def frontend_changed(_path: str, key: str = key) -> None:
                self._schedule(key)

            dev.fe_watch = xs.watch(f"{frontend}/state", frontend_changed)
        online = xs.read(f"{key}/online")
        fe_state = xs.read(f"{dev.frontend}/state")
        if dev.hotplug_ok is None and state == str(S.Initialising) and online == "1":
            dev.hotplug_ok = self._hotplug(dev)
            xs.write(f"{key}/state", str(S.InitWait))
            return
        if online == "0" and state == str(S.Closing):
            xs.write(f"{key}/state", str(S.Closed))
            return
        if (dev.hotplug_ok and state in (str(S.InitWait), str(S.Initialised))
                and fe_state in (str(S.Initialised), str(S.Connected))):
            xs.write(f"{key}/state", str(S.Connected))
        elif state == str(S.Connected) and fe_state in (str(S.Closing), str(S.Closed)):
            xs.write(f"{key}/state", str(S.Closing))  # the frontend went away: follow it

    def _schedule(self, key: str) -> None:
        if key not in self._pending:
            self._pending.add(key)
            self.hv.loop.call_soon(self._check, key)

    def _hotplug(self, dev: Device) -> bool:
        """The udev hotplug script's job (block / vif-bridge)."""
        xs, key = self.xs, dev.path
        if dev.domid not in self.hv.domains:
            error = f"domain {dev.domid} does not exist"
        elif dev.kind in BLOCK_KINDS:
            params = xs.read(f"{key}/params") or ""
            target = params.split(":", 1)[1] if ":" in params and not params.startswith("/") else params
            error = "" if target and os.path.exists(target) else f"{params or 'params'}: no such file or device"
            if not error:
                xs.write_many({f"{key}/physical-device": "ca:fe", f"{key}/physical-device-path": target})
        else:
            bridge = xs.read(f"{key}/bridge") or ""
            error = "" if bridge in self.hv.bridges else f"bridge {bridge or '(none)'} does not exist"
            if not error:
                xs.write(f"{key}/vifname", f"vif{dev.domid}.{dev.devid}")
        if error:
            log.info("hotplug %s failed: %s", key, error)
            xs.write_many({f"{key}/hotplug-error": error, f"{key}/hotplug-status": "error"})
            return False
        xs.write(f"{key}/hotplug-status", "connected")
        return True

    def close(self) -> None:
        self.xs.close()


class Xenconsoled:
    """The PV console daemon: on @introduceDomain it connects each new domain's console ring
    and publishes a pty for it in ~/console/tty."""

    def __init__(self, hv: Hypervisor) -> None:
        self.hv = hv
        self.xs = LocalXs(hv.tree, hv.loop, DOM0, "xenconsoled")
        self.ptys: dict[int, tuple[int, int]] = {}
        self.xs.watch("@introduceDomain", self._scan)
        self.xs.watch("@releaseDomain", self._scan)

    def _scan(self, _path: str) -> None:
        live = {d for d, dom in self.hv.domains.items() if d and dom.shutdown_reason is None}
        for domid in [d for d in self.ptys if d not in live]:
            for fd in self.ptys.pop(domid):
                os.close(fd)
        for domid in sorted(live - set(self.ptys)):
            if domid not in self.hv.tree.introduced or self.xs.read(f"/local/domain/{domid}/console/port") is None:
                continue
            master, slave = os.openpty()
            os.set_blocking(master, False)
            self.ptys[domid] = (master, slave)
            self.xs.write(f"/local/domain/{domid}/console/tty", os.ttyname(slave))
            try:
                os.write(master, f"Xen simulated console for domain {domid}\r\n".encode())
            except OSError:
                pass

    def close(self) -> None:
        self.xs.close()
        for fds in self.ptys.values():
            for fd in fds:
                os.close(fd)
        self.ptys.clear()
