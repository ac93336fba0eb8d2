"""The narrow interface between the toolstack and a host's hypervisor.

Everything above this line is the same for every backend: the toolstack writes and watches
xenstore itself (through ``xetool.xenstore.client``) and asks the backend only for what only the
hypervisor, or dom0's own machinery, can do. Two implementations exist:

- ``simulator``: a simulated Xen host, one long-lived process per host started on demand, with a
  xenstored-compatible server, a simulated hypervisor, and dom0 backends and guests that react
  through xenstore watches as real ones do.
- ``xen``: a real Xen host, driven through ``xl`` (libxl/libxenguest) and the real xenstored.

Units: memory in KiB, as Xen counts it. Domain ids are ints; 0 is dom0.
Every method raises ``XeError`` (HYPERVISOR_ERROR, HOST_OFFLINE, SIMULATOR_FAILED, ...) on
failure, never a bare exception, and never blocks without a bound.
"""

from __future__ import annotations

import abc
import subprocess
from pathlib import Path

from xetool.records import field, record

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

PLATFORM_FLAGS = ("nx", "viridian", "pae", "acpi", "apic", "acpi_s3", "acpi_s4")


@record(frozen=True)
class PhysInfo:
    """What `xl info` reports about the host, in KiB."""

    total_memory_kib: int
    free_memory_kib: int
    nr_cpus: int
    capabilities: frozenset[str]  # "pv", "hvm", "hap", ... as in xl info's virt_caps
    xen_version: str = ""


@record(frozen=True)
class DomainConfig:
    """Everything the hypervisor needs to create and build one domain."""

    uuid: str
    name: str
    hvm: bool
    memory_static_max_kib: int
    memory_target_kib: int
    vcpus_max: int
    vcpus_at_startup: int
    shadow_multiplier: float = 1.0
    kernel: str = ""  # PV: a path in dom0; HVM: the firmware (hvmloader)
    ramdisk: str = ""
    cmdline: str = ""
    platform: Mapping[str, str] = field(default_factory=dict)  # PLATFORM_FLAGS and the rest
    address_size: int | None = None  # machine address size (other-config:machine-address-size)
    vcpu_affinity: tuple[int, ...] = ()  # hard affinity of every vCPU; () for all pCPUs
    sched_weight: int = 256  # credit scheduler weight
    sched_cap: int = 0  # credit scheduler cap, in % of one pCPU; 0 for none


@record(frozen=True)
class DomainInfo:
    """One domain as the hypervisor sees it (`xl list`)."""

    domid: int
    uuid: str
    name: str
    memory_kib: int
    vcpus: int
    paused: bool
    hvm: bool
    shutdown_reason: str | None = None  # poweroff, reboot, suspend, crash, watchdog, halt
    dying: bool = False
    built: bool = True


class Backend(abc.ABC):
    """One host's hypervisor. Instances are cheap; connect lazily."""

    name: str = "abstract"
    # True where create_domain also builds (xl create): the toolstack must then choose the
    # kernel before creating the domain rather than after.
    kernel_at_create: bool = False

    @abc.abstractmethod
    def xenstore_socket(self) -> str:
        """The path of the host's xenstored Unix socket (what XENSTORED_PATH would be)."""

    @abc.abstractmethod
    def ensure_running(self) -> None:
        """Make the host reachable: the simulator starts its host process if none answers."""

    @abc.abstractmethod
    def is_live(self) -> bool:
        """True if the host answers now. Never starts anything, never blocks for long."""

    @abc.abstractmethod
    def physinfo(self) -> PhysInfo:
        """Total and free memory, CPUs and capabilities."""

    @abc.abstractmethod
    def create_domain(self, config: DomainConfig) -> int:
        """Create an empty, paused domain and return its domid. No devices, nothing built yet."""

    @abc.abstractmethod
    def build_domain(self, domid: int, config: DomainConfig) -> None:
        """Run the domain builder: load the kernel (or firmware), set memory and vCPUs, apply the
        platform flags, vCPU affinity and scheduling weight and cap, write what Xen and libxl
        write at build time (store and console rings, memory/static-max and target, domid) and
        introduce the domain to xenstored."""

    @abc.abstractmethod
    def set_vcpu_affinity(self, domid: int, vcpu: int, cpus: Sequence[int]) -> None:
        """Hard affinity of one vCPU (an empty list means every CPU)."""

    @abc.abstractmethod
    def set_sched_params(self, domid: int, weight: int, cap: int) -> None:
        """Credit scheduler weight (default 256) and cap (0 = none)."""

    @abc.abstractmethod
    def set_memory_target(self, domid: int, target_kib: int) -> None:
        """The balloon target; the guest follows it within its dynamic range."""

    @abc.abstractmethod
    def pause(self, domid: int) -> None: ...

    @abc.abstractmethod
    def unpause(self, domid: int) -> None: ...

    @abc.abstractmethod
    def shutdown(self, domid: int, reason: str) -> None:
        """Hypervisor-level shutdown (SCHEDOP_remote_shutdown): poweroff, reboot, halt, crash."""

    @abc.abstractmethod
    def destroy(self, domid: int) -> None:
        """Destroy the domain, releasing its memory; also removes it from xenstore."""

    @abc.abstractmethod
    def list_domains(self) -> list[DomainInfo]:
        """Every domain, dom0 included."""

    def domain_info(self, domid: int) -> DomainInfo | None:
        return next((d for d in self.list_domains() if d.domid == domid), None)

    def find_domain(self, uuid: str) -> DomainInfo | None:
        """The guest domain whose handle is the VM's `uuid` (xenopsd's way of finding a VM's
        domain): a stored domid alone may name another VM's domain after the host restarted.
        A dying domain is on its way out and is not returned."""
        return next((d for d in self.list_domains() if d.uuid == uuid and d.domid != 0 and not d.dying), None)

    def domains_by_uuid(self) -> dict[str, DomainInfo]:
        """Every guest domain, by its handle: what a resync compares with the store."""
        return {d.uuid: d for d in self.list_domains() if d.domid != 0 and not d.dying and d.uuid}

    @abc.abstractmethod
    def boot_id(self) -> str:
        """The host's per-boot identity: a new value after every restart of the host (or of the
        simulated host's process). Residency recorded under an earlier boot is void."""

    def reachability(self) -> str:
        """"live"; "down" when the host is known not to run (its domains are gone); or
        "unresponsive" when it may run but does not answer (nothing may be assumed)."""
        return "live" if self.is_live() else "unresponsive"

    def memory_snapshot(self) -> tuple[int, list[DomainInfo]]:
        """The host's free memory (KiB) and every domain, read as close together as the backend
        allows: the memory broker adds one to the others, and a guest ballooning in between
        would be counted twice or not at all."""
        return self.physinfo().free_memory_kib, self.list_domains()

    @abc.abstractmethod
    def ensure_bridge(self, bridge: str) -> None:
        """Create the network's bridge in dom0 if it is not there."""

    @abc.abstractmethod
    def hotplug(self, kind: str, domid: int, devid: int, action: str) -> None:
        """Run dom0's hotplug script for a device (kind vbd/vif, action add/remove/online/offline),
        where the platform needs the toolstack to run it; a no-op where udev or the simulated
        backends do it. Completion is reported in xenstore (`hotplug-status`), not here."""

    @abc.abstractmethod
    def device_model_argv(self, domid: int, vnc_display_base: int, nics: Sequence[tuple[str, str]]) -> list[str]:
        """The command line of the HVM device model for this domain: RTL8139 NICs for
        (mac, bridge) pairs, a USB tablet, VNC on 127.0.0.1 only. It writes its VNC port to
        /local/domain/<domid>/console/vnc-port."""

    def start_service(self, kind: str, domid: int, nics: Sequence[tuple[str, str]], log: Path,
                      secret: Path | None = None) -> int:
        """Start the domain's device model (kind "device-model") or PV console server ("console")
        as a process detached from the caller, logging to `log`; return its pid. The process
        writes its VNC port to xenstore itself, and asks VNC clients for the password in `secret`.
        By default, the argv below, spawned here."""
        argv = self.device_model_argv(domid, 0, nics) if kind == "device-model" else self.console_server_argv(domid)
        if secret is not None:
            argv += ["--password-file", str(secret)]
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True, close_fds=True)
        return proc.pid

    @abc.abstractmethod
    def console_server_argv(self, domid: int) -> list[str]:
        """The command line of the PV console server (vncterm's role): exports the guest
        console over VNC on 127.0.0.1 and writes its port to xenstore."""
