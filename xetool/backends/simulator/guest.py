"""A simulated guest kernel: a xenstore client acting for its own (unprivileged) domain.

Like Linux's xenbus frontend drivers, it reacts only to watches: it connects each frontend
under ~/device when its backend waits for it, follows its backend to Closed on unplug, answers
control/shutdown and lets its balloon driver follow memory/target. It acts only while its
domain runs (unpaused); a paused guest catches up when it is unpaused.

The balloon driver moves the domain's allocation to memory/target after BALLOON_DELAY seconds
(XETOOL_SIM_BALLOON_DELAY in the host process's environment). For tests, a guest can be told
otherwise through its xenstore-data key `vm-data/sim-balloon`: a number of seconds (a slow
driver), `refuse` (a driver that never moves), or `short:KIB` (a driver that, going down, stops
KIB above its target, as Linux's does on Xen by a few hundred KiB).
"""

from __future__ import annotations

import logging
import os

from xetool.backends.simulator.localxs import LocalXs
from xetool.xenstore.wire import XenbusState

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from xetool.backends.simulator.hypervisor import Domain, Hypervisor

log = logging.getLogger("xetool.simulator")

SHUTDOWN_REQUESTS = {"poweroff": "poweroff", "halt": "poweroff", "reboot": "reboot", "suspend": "suspend"}
SHUTDOWN_DELAY = 0.02  # seconds between the acknowledgement and the domain stopping


def _delay_from_env() -> float:
    try:
        return max(0.0, float(os.environ.get("XETOOL_SIM_BALLOON_DELAY", "0.005")))
    except ValueError:
        return 0.005


BALLOON_DELAY = _delay_from_env()  # seconds a balloon driver takes to react to a new target
S = XenbusState


class Guest:
    def __init__(self, hv: Hypervisor, domain: Domain) -> None:
        self.hv = hv
        self.domain = domain
        self.home = f"/local/domain/{domain.domid}"
        self.xs = LocalXs(hv.tree, hv.loop, hv.tree.caller_for(domain.domid), f"guest{domain.domid}")
        self.active = False
        self.booted = False
        self.shutting_down = False
        self._backend_watches: dict[str, str] = {}  # frontend path -> token of its backend's state watch

    # --- run state --------------------------------------------------------------------------

    def running(self) -> None:
        self.active = True
        if not self.booted:
            self.booted = True
            self._boot()
        else:
            self._rescan()

    def paused(self) -> None:
        self.active = False

    def stop(self) -> None:
        self.active = False
        self.xs.close()

    def _boot(self) -> None:
        """What a PV-aware kernel does at boot: advertise features, then watch its devices,
        control/shutdown and its balloon target."""
        for feature in ("feature-poweroff", "feature-reboot", "feature-suspend", "feature-balloon"):
            self.xs.write(f"{self.home}/control/{feature}", "1")
        self.xs.watch(f"{self.home}/device", self._on_device)
        self.xs.watch(f"{self.home}/control/shutdown", self._on_shutdown)
        self.xs.watch(f"{self.home}/memory", self._on_memory)

    def _rescan(self) -> None:
        for kind in self.xs.ls(f"{self.home}/device"):
            for devid in self.xs.ls(f"{self.home}/device/{kind}"):
                self._frontend(f"{self.home}/device/{kind}/{devid}")
        self._on_shutdown("")
        self._on_memory("")

    # --- frontends ----------------------------------------------------------------------------

    def _on_device(self, path: str) -> None:
        parts = path[len(self.home) + 1:].split("/")  # device/<kind>/<devid>/...
        if len(parts) >= 3:
            self._frontend("/".join([self.home] + parts[:3]))
        elif len(parts) <= 2 and self.active:
            self._rescan_devices_only()

    def _rescan_devices_only(self) -> None:
        for kind in self.xs.ls(f"{self.home}/device"):
            for devid in self.xs.ls(f"{self.home}/device/{kind}"):
                self._frontend(f"{self.home}/device/{kind}/{devid}")

    def _frontend(self, fe: str) -> None:
        if not self.active:
            return
        fe_state = self.xs.read(f"{fe}/state")
        backend = self.xs.read(f"{fe}/backend")
        if fe_state is None or not backend:
            token = self._backend_watches.pop(fe, None)
            if token is not None:
                self.xs.unwatch(token)
            return
        if fe not in self._backend_watches:
            def backend_changed(_path: str, fe: str = fe) -> None:
                self._frontend(fe)

            self._backend_watches[fe] = self.xs.watch(f"{backend}/state", backend_changed)
            return  # the initial event calls us again
        be_state = self.xs.read(f"{backend}/state")
        kind = fe.rsplit("/", 2)[1]
        if be_state == str(S.InitWait) and fe_state == str(S.Initialising):
            rings = {"vif": {"tx-ring-ref": "8", "rx-ring-ref": "9", "event-channel": "10", "request-rx-copy": "1",
                             "feature-rx-notify": "1", "feature-sg": "1"},
                     "vbd": {"ring-ref": "8", "event-channel": "10", "protocol": "x86_64-abi"}}.get(kind, {})
            values = {f"{fe}/{k}": v for k, v in rings.items()}
            values[f"{fe}/state"] = str(S.Initialised)
            self.xs.write_many(values)
        elif be_state == str(S.Connected) and fe_state in (str(S.Initialised), str(S.Connected)):
            if fe_state != str(S.Connected):
                self.xs.write(f"{fe}/state", str(S.Connected))
        elif be_state in (str(S.Closing), str(S.Closed)) and fe_state != str(S.Closed):
            self.xs.write(f"{fe}/state", str(S.Closed))

    # --- control/shutdown ---------------------------------------------------------------------

    def _on_shutdown(self, _path: str) -> None:
        if not self.active or self.shutting_down:
            return
        request = self.xs.read(f"{self.home}/control/shutdown")
        if not request:
            return
        reason = SHUTDOWN_REQUESTS.get(request)
        if reason is None:
            log.warning("guest %d: ignoring unknown shutdown request %r", self.domain.domid, request)
            return
        self.shutting_down = True
        self.xs.write(f"{self.home}/control/shutdown", "")  # the acknowledgement
        log.info("guest %d: %s requested", self.domain.domid, request)
        self.hv.loop.call_later(SHUTDOWN_DELAY, self._halt, reason)

    def _halt(self, reason: str) -> None:
        if self.domain.domid in self.hv.domains and self.domain.shutdown_reason is None:
            self.hv.shutdown(self.domain.domid, reason)

    # --- balloon ------------------------------------------------------------------------------

    def _on_memory(self, _path: str) -> None:
        if not self.active:
            return
        mode = self.xs.read(f"{self.home}/vm-data/sim-balloon") or ""
        if mode == "refuse":
            return
        short = int(mode[6:]) if mode.startswith("short:") and mode[6:].isdigit() else 0
        try:
            delay = float(mode) if mode and not short else BALLOON_DELAY
        except ValueError:
            delay = BALLOON_DELAY
        self.hv.loop.call_later(delay, self._balloon, short)

    def _balloon(self, short: int = 0) -> None:
        d = self.domain
        if not self.active or d.shutdown_reason is not None:
            return
        target = _int(self.xs.read(f"{self.home}/memory/target"))
        if target is None:
            return
        low = _int(self.xs.read(f"{self.home}/memory/dynamic-min")) or 0
        high = _int(self.xs.read(f"{self.home}/memory/dynamic-max")) or d.static_max_kib
        want = max(low, min(target, high, d.static_max_kib))
        if want < d.memory_kib:
            want = min(d.memory_kib, want + short)
        # Ballooning up takes pages from the host's free memory; stop where it runs out.
        want = min(want, d.memory_kib + self.hv.free_memory_kib())
        if want != d.memory_kib:
            log.info("guest %d: balloon %d -> %d KiB", d.domid, d.memory_kib, want)
            d.memory_kib = want


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
