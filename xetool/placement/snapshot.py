"""The frozen view of the pool that placement decides over.

The master half reads the store once, inside its write transaction, and builds these; every
function in `xetool.placement` is pure over them. Memory is in bytes everywhere.

Per-host guest sums (`HostLoad`) are computed once per snapshot so that placing one VM on a
pool of 1,000 hosts and 20,000 VMs never walks the guests: either give `PoolView.build` the
resident and scheduled VMs, or give `PoolView` the sums directly (one SQL GROUP BY) plus the
HA-protected VMs.
"""

from __future__ import annotations

from xetool.placement.memory import guest_footprint, stored_overhead
from xetool.records import field, record

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

RESTART = "restart"  # the ha_restart_priority that makes a VM protected


@record(frozen=True)
class VmView:
    """What placement needs of one VM (xapi field names, lower-cased)."""

    uuid: str
    memory_static_min: int
    memory_static_max: int
    memory_dynamic_min: int
    memory_dynamic_max: int
    vcpus_max: int = 1
    vcpus_at_startup: int = 1
    name_label: str = ""
    power_state: str = "halted"
    is_control_domain: bool = False
    hvm: bool = False  # HVM_boot_policy is non-empty
    # VM.memory_overhead as stored; None means "compute it from the model" (memory.py).
    memory_overhead: int | None = None
    hvm_shadow_multiplier: float = 1.0
    actions_after_crash: str = "restart"
    platform: Mapping[str, str] = field(default_factory=dict)
    affinity: str | None = None  # host uuid
    required_srs: tuple[str, ...] = ()  # SRs of non-empty VBDs' VDIs, then the suspend VDI's
    required_networks: tuple[str, ...] = ()  # networks of the VIFs
    vbd_devices: tuple[tuple[str, str], ...] = ()  # (VBD uuid, userdevice) of each VBD
    ha_restart_priority: str = ""
    ha_always_run: bool = False
    resident_on: str | None = None  # host uuid
    scheduled_to_be_resident_on: str | None = None  # host uuid
    # The first of its disks that cannot be attached (VDI_IN_USE, VDI_READONLY, VDI_MISSING, ...)
    # as (code, params): read with its devices; like validate, the same answer on every host.
    disk_failure: tuple[str, tuple[str, ...]] | None = None

    @property
    def ha_protected(self) -> bool:
        return self.ha_restart_priority == RESTART

    def hosts_charged(self) -> tuple[str, ...]:
        """The hosts whose memory this VM counts against: resident_on ∪ scheduled (xapi)."""
        r, s = self.resident_on, self.scheduled_to_be_resident_on
        if r and s and r != s:
            return (r, s)
        return (r,) if r else ((s,) if s else ())


@record(frozen=True)
class HostView:
    uuid: str
    memory_total: int
    memory_overhead: int = 0  # Host.memory_overhead (dom0 + the balloon daemon's reserve)
    cpus: int = 1
    name_label: str = ""
    enabled: bool = True
    live: bool = True  # host_metrics.live
    capabilities: frozenset[str] = frozenset({"hvm"})
    srs: frozenset[str] = frozenset()  # SRs with a currently-attached PBD on this host
    networks: frozenset[str] = frozenset()  # networks with a PIF on this host
    current_operations: frozenset[str] = frozenset()  # e.g. {"evacuate", "vm_start"}
    is_master: bool = False
    # The host's memory broker's last report (host/memory.py), None until it has reported:
    # free memory, and what a new VM could get (free + what balloonable guests could give
    # back − the broker's reserve). Placement's memory check uses the latter when it is known.
    memory_free: int | None = None
    memory_free_computed: int | None = None

    @property
    def supports_hvm(self) -> bool:
        caps = self.capabilities
        return "hvm" in caps or any(c.startswith("hvm-") for c in caps)


@record(frozen=True)
class HostLoad:
    """Sums over one host's resident ∪ scheduled VMs (bytes). `footprint` = Σ(dynamic_min +
    memory_overhead), what the memory check subtracts; the rest feed the placement categories."""

    count: int = 0
    overhead: int = 0
    static_min: int = 0
    dynamic_min: int = 0
    dynamic_max: int = 0
    static_max: int = 0

    @property
    def footprint(self) -> int:
        return self.dynamic_min + self.overhead

    def plus(self, vm: VmView, sign: int = 1) -> HostLoad:
        return HostLoad(
            self.count + sign,
            self.overhead + sign * stored_overhead(vm),
            self.static_min + sign * vm.memory_static_min,
            self.dynamic_min + sign * vm.memory_dynamic_min,
            self.dynamic_max + sign * vm.memory_dynamic_max,
            self.static_max + sign * vm.memory_static_max,
        )


EMPTY_LOAD = HostLoad()


@record(frozen=True)
class WlbConfig:
    """An external recommender: `command` (argv, JSON on stdin/stdout) or `url` (HTTP POST)."""

    command: tuple[str, ...] = ()
    url: str = ""
    timeout: float = 30.0
    enabled: bool = True
    choose_host_disable: bool = False  # pool.other_config:wlb_choose_host_disable

    @property
    def active(self) -> bool:
        return self.enabled and not self.choose_host_disable and bool(self.command or self.url)


@record(frozen=True)
class PoolView:
    hosts: tuple[HostView, ...]
    loads: Mapping[str, HostLoad] = field(default_factory=dict)  # host uuid -> sums
    # Resident or scheduled VMs placement may look at one by one: at least the HA-protected
    # ones (restart priority "restart"); any VM here is also used to undo its own share of the
    # sums when it is the VM being placed. Keyed by uuid.
    guests: Mapping[str, VmView] = field(default_factory=dict)
    ha_enabled: bool = False
    ha_host_failures_to_tolerate: int = 0
    ha_allow_overcommit: bool = False
    coordinator_bias: bool = True
    shared_networks: frozenset[str] = frozenset()  # other_config:assume_network_is_shared=true
    wlb: WlbConfig | None = None
    # host uuid -> Σ(dynamic_min + overhead) of the VMs scheduled there that the host's broker
    # has not yet counted (no reservation, no domain): starts queued behind the host's queue
    pending: Mapping[str, int] = field(default_factory=dict)
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False, hash=False)

    @classmethod
    def build(cls, hosts: Iterable[HostView], guests: Iterable[VmView], **config: Any) -> PoolView:
        """Sum the loads from every resident or scheduled VM (one pass); keep only the
        HA-protected ones (and, unless `keep_all_guests=False`, all) for later lookups."""
        keep_all = bool(config.pop("keep_all_guests", True))
        acc: dict[str, list[int]] = {}
        kept: dict[str, VmView] = {}
        for vm in guests:
            r, sch = vm.resident_on, vm.scheduled_to_be_resident_on
            if not (r or sch):
                continue
            ovh = vm.memory_overhead
            if ovh is None:
                ovh = stored_overhead(vm)
            smin, dmin, dmax, smax = (vm.memory_static_min, vm.memory_dynamic_min,
                                      vm.memory_dynamic_max, vm.memory_static_max)
            for h in (r, sch if sch != r else None):  # resident there, and scheduled elsewhere
                if h is None:
                    continue
                a = acc.get(h)
                if a is None:
                    acc[h] = [1, ovh, smin, dmin, dmax, smax]
                else:  # unrolled: this loop runs once per guest of the pool
                    a[0] += 1
                    a[1] += ovh
                    a[2] += smin
                    a[3] += dmin
                    a[4] += dmax
                    a[5] += smax
            if keep_all or vm.ha_restart_priority == RESTART:
                kept[vm.uuid] = vm
        loads = {h: HostLoad(*a) for h, a in acc.items()}
        return cls(hosts=tuple(hosts), loads=loads, guests=kept, **config)

    def load(self, host_uuid: str) -> HostLoad:
        return self.loads.get(host_uuid, EMPTY_LOAD)

    def host(self, uuid: str) -> HostView | None:
        by_uuid = self._cache.get("by_uuid")
        if by_uuid is None:
            by_uuid = self._cache["by_uuid"] = {h.uuid: h for h in self.hosts}
        return by_uuid.get(uuid)

    def load_without(self, host_uuid: str, vm: VmView) -> HostLoad:
        """The host's sums with `vm`'s own share taken out (it is the VM being placed)."""
        load = self.load(host_uuid)
        known = self.guests.get(vm.uuid, vm)
        if host_uuid in known.hosts_charged():
            return load.plus(known, -1)
        return load

    def protected_vms(self) -> tuple[VmView, ...]:
        prot = self._cache.get("protected")
        if prot is None:
            prot = tuple(v for v in self.guests.values() if v.ha_protected and v.hosts_charged())
            self._cache["protected"] = prot
        return prot


def protected_footprint(vm: VmView) -> int:
    """What an HA-protected VM needs to restart elsewhere (its maximum-compression share)."""
    return guest_footprint(vm)
