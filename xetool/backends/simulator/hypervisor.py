"""The simulated hypervisor: domains and the host's memory and CPUs, plus what Xen and libxl
write into xenstore for them. Runs on the host process's loop thread; every failure is an
XeError (HYPERVISOR_ERROR), which the control server sends back to the caller."""

from __future__ import annotations

import logging
import time

from xetool.backends.simulator.localxs import LocalXs
from xetool.errors import XeError
from xetool.placement.memory import overhead_mib
from xetool.records import asdict, field, record
from xetool.xenstore.server import Loop
from xetool.xenstore.tree import DOM0, Tree

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any

log = logging.getLogger("xetool.simulator")

SHUTDOWN_REASONS = ("poweroff", "reboot", "suspend", "crash", "watchdog", "halt")
XEN_VERSION = "4.17.0-sim"


@record
class Domain:
    domid: int
    uuid: str
    name: str
    hvm: bool
    static_max_kib: int
    target_kib: int
    vcpus_max: int
    vcpus: int
    memory_kib: int = 0  # allocated now: 0 until built, then follows the balloon target
    overhead_kib: int = 0  # what Xen itself allocates for the domain (shadow, p2m, vCPU structures)
    paused: bool = True
    built: bool = False
    kernel: str = ""
    ramdisk: str = ""
    cmdline: str = ""
    platform: dict[str, str] = field(default_factory=dict)
    affinity: dict[int, list[int]] = field(default_factory=dict)
    weight: int = 256
    cap: int = 0
    shutdown_reason: str | None = None
    dying: bool = False
    created: float = field(default_factory=time.time)

    def info(self) -> dict[str, Any]:
        """The fields of xetool.backends.base.DomainInfo."""
        return {"domid": self.domid, "uuid": self.uuid, "name": self.name, "memory_kib": self.memory_kib,
                "vcpus": self.vcpus, "paused": self.paused, "hvm": self.hvm,
                "shutdown_reason": self.shutdown_reason, "dying": self.dying, "built": self.built}

    def details(self) -> dict[str, Any]:
        """Everything, for `list` with details (tests, operators)."""
        d = asdict(self)
        d["affinity"] = {str(k): v for k, v in self.affinity.items()}
        return d


class Hypervisor:
    def __init__(self, tree: Tree, loop: Loop, *, memory_total_kib: int, dom0_memory_kib: int, cpus: int,
                 capabilities: frozenset[str], hostname: str) -> None:
        self.tree = tree
        self.loop = loop
        self.memory_total_kib = memory_total_kib
        self.cpus = cpus
        self.capabilities = capabilities
        self.hostname = hostname
        self.xs = LocalXs(tree, loop, DOM0, "xen")
        self.domains: dict[int, Domain] = {}
        self.bridges: set[str] = set()
        self._next_domid = 1
        self.guests: dict[int, Any] = {}  # domid -> Guest (xetool.backends.simulator.guest)
        dom0 = Domain(0, "00000000-0000-0000-0000-000000000000", "Domain-0", False, dom0_memory_kib,
                      dom0_memory_kib, cpus, cpus, memory_kib=dom0_memory_kib, paused=False, built=True)
        self.domains[0] = dom0
        self.xs.write_many({"/local/domain/0/name": "Domain-0", "/local/domain/0/domid": "0",
                            "/local/domain/0/memory/target": str(dom0_memory_kib),
                            "/local/domain/0/memory/static-max": str(dom0_memory_kib),
                            "/tool/xenstored/domid": "0"})
        self.xs.mkdir("/local/domain/0/backend")
        self.xs.mkdir("/local/domain/0/device-model")
        self.xs.mkdir("/vm")
        self.xs.mkdir("/libxl")

    def _error(self, operation: str, domid: int | str, reason: str) -> XeError:
        return XeError("HYPERVISOR_ERROR", operation, domid, reason)

    def _domain(self, operation: str, domid: int, *, guest_only: bool = True, live: bool = False) -> Domain:
        d = self.domains.get(domid)
        if d is None:
            raise self._error(operation, domid, "no such domain")
        if guest_only and domid == 0:
            raise self._error(operation, domid, "not allowed on dom0")
        if live and d.shutdown_reason is not None:
            raise self._error(operation, domid, f"the domain has shut down ({d.shutdown_reason})")
        return d

    # --- the host -------------------------------------------------------------------------------

    def free_memory_kib(self) -> int:
        return self.memory_total_kib - sum(d.memory_kib + d.overhead_kib for d in self.domains.values())

    def physinfo(self) -> dict[str, Any]:
        return {"total_memory_kib": self.memory_total_kib, "free_memory_kib": self.free_memory_kib(),
                "nr_cpus": self.cpus, "capabilities": sorted(self.capabilities), "xen_version": XEN_VERSION,
                "hostname": self.hostname}

    def ensure_bridge(self, bridge: str) -> None:
        if not bridge or not bridge.replace("-", "").replace("_", "").replace(".", "").isalnum() or len(bridge) > 15:
            raise XeError("NETWORK_BRIDGE_FAILED", "", bridge, "not a valid interface name")
        self.bridges.add(bridge)

    # --- domain lifecycle -----------------------------------------------------------------------

    def create(self, config: dict[str, Any]) -> int:
        """XEN_DOMCTL_createdomain, and the skeleton libxl makes: an empty paused domain."""
        if config.get("hvm") and "hvm" not in self.capabilities:
            raise self._error("create", "", "the host has no HVM capability")
        if any(d.uuid == config["uuid"] and d.domid != 0 for d in self.domains.values()):
            raise self._error("create", "", f"a domain with uuid {config['uuid']} exists")
        domid = self._next_domid
        self._next_domid += 1
        d = Domain(domid, config["uuid"], config["name"], bool(config["hvm"]), int(config["memory_static_max_kib"]),
                   int(config["memory_target_kib"]), int(config["vcpus_max"]), int(config["vcpus_at_startup"]))
        self.domains[domid] = d
        home = f"/local/domain/{domid}"
        self.xs.rm(home)
        self.xs.write_many({f"{home}/vm": f"/vm/{d.uuid}", f"{home}/name": d.name,
                            f"/vm/{d.uuid}/uuid": d.uuid, f"/vm/{d.uuid}/name": d.name})
        self.xs.set_perms(home, ["n0", f"r{domid}"])  # libxl's "ro": the guest reads, dom0 owns
        self.xs.rm(f"/libxl/{domid}")
        self.xs.write(f"/libxl/{domid}/type", "hvm" if d.hvm else "pv")  # libxl__domain_make's own record
        for sub in ("vm", "name"):
            self.xs.set_perms(f"{home}/{sub}", ["n0", f"r{domid}"])
        log.info("created domain %d (%s, %s)", domid, d.name, d.uuid)
        return domid

    def build(self, domid: int, config: dict[str, Any]) -> None:
        """The domain builder, then libxl__build_post: memory, vCPUs, rings, and INTRODUCE."""
        d = self._domain("build", domid)
        if d.built:
            raise self._error("build", domid, "already built")
        kernel = config.get("kernel", "")
        if not d.hvm and not kernel:
            raise self._error("build", domid, "a PV domain needs a kernel")
        target = int(config.get("memory_target_kib", d.target_kib))
        static_max = int(config.get("memory_static_max_kib", d.static_max_kib))
        if target > static_max:
            raise self._error("build", domid, f"target {target} KiB is above static-max {static_max} KiB")
        vcpus_max = int(config.get("vcpus_max", d.vcpus_max))
        overhead = 1024 * overhead_mib(static_max // 1024, vcpus_max, float(config.get("shadow_multiplier", 1.0)), d.hvm)
        if target + overhead > self.free_memory_kib():
            raise self._error("build", domid, f"not enough memory: {target + overhead} KiB needed "
                              f"({overhead} KiB of it Xen's overhead), {self.free_memory_kib()} KiB free")
        d.kernel, d.ramdisk, d.cmdline = kernel, config.get("ramdisk", ""), config.get("cmdline", "")
        d.platform = dict(config.get("platform") or {})
        d.static_max_kib, d.target_kib, d.memory_kib, d.overhead_kib = static_max, target, target, overhead
        d.vcpus_max = int(config.get("vcpus_max", d.vcpus_max))
        d.vcpus = int(config.get("vcpus_at_startup", d.vcpus))
        affinity = [int(c) for c in config.get("vcpu_affinity") or ()]
        if affinity:
            for vcpu in range(d.vcpus_max):
                self.set_vcpu_affinity(domid, vcpu, affinity)
        self.set_sched_params(domid, int(config.get("sched_weight", 256)), int(config.get("sched_cap", 0)))
        d.built = True
        home = f"/local/domain/{domid}"
        values = {f"{home}/domid": str(domid),
                  f"{home}/memory/static-max": str(static_max), f"{home}/memory/target": str(target),
                  f"{home}/store/port": "1", f"{home}/store/ring-ref": str(0xFEFFF),
                  f"{home}/console/port": "2", f"{home}/console/ring-ref": str(0xFEFFE),
                  f"{home}/console/limit": "65536", f"{home}/console/type": "xenconsoled"}
        for i in range(d.vcpus_max):
            values[f"{home}/cpu/{i}/availability"] = "online" if i < d.vcpus else "offline"
        values[f"/vm/{d.uuid}/image/ostype"] = "hvm" if d.hvm else "linux"
        values[f"/vm/{d.uuid}/image/kernel"] = kernel
        values[f"/vm/{d.uuid}/start_time"] = f"{time.time():.2f}"
        self.xs.write_many(values)
        for key in ("domid", "memory", "store", "console", "cpu"):
            self.xs.set_perms(f"{home}/{key}", ["n0", f"r{domid}"])
        self.tree.introduce(domid)  # fires @introduceDomain
        log.info("built domain %d: %d KiB, %d vCPUs", domid, target, d.vcpus)

    def set_vcpu_affinity(self, domid: int, vcpu: int, cpus: list[int]) -> None:
        d = self._domain("set_vcpu_affinity", domid, guest_only=False)
        if not 0 <= vcpu < d.vcpus_max:
            raise self._error("set_vcpu_affinity", domid, f"no vCPU {vcpu}")
        bad = [c for c in cpus if not 0 <= c < self.cpus]
        if bad:
            raise self._error("set_vcpu_affinity", domid, f"no such pCPU {bad[0]}")
        d.affinity[vcpu] = sorted(set(cpus))

    def set_sched_params(self, domid: int, weight: int, cap: int) -> None:
        d = self._domain("set_sched_params", domid, guest_only=False)
        if not 1 <= weight <= 65535 or not 0 <= cap <= 100 * d.vcpus_max:
            raise self._error("set_sched_params", domid, f"weight {weight} or cap {cap} out of range")
        d.weight, d.cap = weight, cap

    def set_memory_target(self, domid: int, target_kib: int) -> None:
        """libxl_set_memory_target: write memory/target; the guest's balloon driver follows it."""
        d = self._domain("set_memory_target", domid, live=True)
        if not 0 < target_kib <= d.static_max_kib:
            raise self._error("set_memory_target", domid, f"target {target_kib} KiB outside 1..{d.static_max_kib}")
        d.target_kib = target_kib
        self.xs.write(f"/local/domain/{domid}/memory/target", str(target_kib))

    def pause(self, domid: int) -> None:
        d = self._domain("pause", domid, live=True)
        d.paused = True
        guest = self.guests.get(domid)
        if guest is not None:
            guest.paused()

    def unpause(self, domid: int) -> None:
        d = self._domain("unpause", domid, live=True)
        if not d.built:
            raise self._error("unpause", domid, "the domain is not built")
        d.paused = False
        guest = self.guests.get(domid)
        if guest is None:
            from xetool.backends.simulator.guest import Guest

            guest = self.guests[domid] = Guest(self, d)
        guest.running()

    def shutdown(self, domid: int, reason: str) -> None:
        """SCHEDOP_shutdown (the guest itself) or SCHEDOP_remote_shutdown: the domain stops and
        stays as a shut-down domain with its reason, until destroyed; @releaseDomain fires."""
        if reason not in SHUTDOWN_REASONS:
            raise self._error("shutdown", domid, f"unknown reason {reason!r}")
        d = self._domain("shutdown", domid, live=True)
        d.shutdown_reason = "poweroff" if reason == "halt" else reason  # Xen has no halt code
        d.paused = True
        guest = self.guests.pop(domid, None)
        if guest is not None:
            guest.stop()
        log.info("domain %d shut down: %s", domid, d.shutdown_reason)
        self.tree.domain_shutdown(domid)

    def destroy(self, domid: int) -> None:
        """Free the domain's memory and remove it from xenstore (as libxl's destroy does)."""
        d = self._domain("destroy", domid)
        guest = self.guests.pop(domid, None)
        if guest is not None:
            guest.stop()
        del self.domains[domid]
        self.xs.rm(f"/local/domain/{domid}")
        self.xs.rm(f"/libxl/{domid}")
        if domid in self.tree.introduced:
            self.tree.release(domid)
        else:
            self.tree.fire_special("@releaseDomain", domid)
        log.info("destroyed domain %d (%s)", domid, d.name)

    def list(self, details: bool = False) -> list[dict[str, Any]]:
        return [d.details() if details else d.info() for d in sorted(self.domains.values(), key=lambda d: d.domid)]

    def find(self, uuid: str) -> dict[str, Any] | None:
        """The live guest domain whose handle is `uuid`."""
        return next((d.info() for d in self.domains.values() if d.uuid == uuid and d.domid != 0 and not d.dying), None)

    def stop_all(self) -> None:
        for guest in list(self.guests.values()):
            guest.stop()
        self.guests.clear()
