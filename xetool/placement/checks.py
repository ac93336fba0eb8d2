"""assert_can_boot_here: the per-host checks, in the seed's order, and their "explain" form.

Each check returns the registry error it would raise, or None, so the same code serves the
strict form (stop at the first failure), the chooser (a yes/no per host) and the explain table
(every check on every host, for --dry-run and the NO_HOSTS_AVAILABLE table).
"""

from __future__ import annotations

from xetool.errors import XeError
from xetool.placement.ha import placement_preserves_ha_plan
from xetool.placement.memory import (
    MIB,
    host_compute_free_memory_with_maximum_compression,
    host_free_memory,
    memory_figures,
    vm_compute_start_memory,
    vm_reservation_memory,
)
from xetool.placement.snapshot import HostView, PoolView, VmView
from xetool.placement.validate import validate_basic_parameters
from xetool.records import record

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

EVACUATE = "evacuate"
UNRESTRICTED = ("true", "1")
RESERVE_BYTES = 72 * MIB  # what the host's memory broker keeps free (squeezed's reserve)


@record(frozen=True)
class VmFacts:
    """What the checks derive from the VM alone, computed once per placement, not per host."""

    vm: VmView
    invalid: XeError | None  # the first validate_basic_parameters failure
    start_memory: int  # bytes, vm_compute_start_memory
    vcpus_unrestricted: bool
    reservation_memory: int = 0  # bytes, the bottom of the broker's reservation range

    @classmethod
    def of(cls, vm: VmView) -> VmFacts:
        try:
            validate_basic_parameters(vm)
            invalid = None
        except XeError as e:
            invalid = e
        unrestricted = vm.platform.get("vcpu-unrestricted", "").lower() in UNRESTRICTED
        return cls(vm, invalid, vm_compute_start_memory(vm), unrestricted, vm_reservation_memory(vm))


@record(frozen=True)
class CheckResult:
    name: str
    passed: bool
    reason: str | None = None  # why it failed, with the numbers
    error: XeError | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"check": self.name, "passed": self.passed}
        if not self.passed:
            out["reason"] = self.reason
            out["error"] = self.error.to_json() if self.error else None
        return out


# A failed check: an XeError, or (code, params) to build one only if anyone asks (the
# chooser only needs yes or no, and a refused host costs no error object).
Failure = XeError | tuple[str, tuple[object, ...]]
if TYPE_CHECKING:  # a check: None, or why the host fails
    Check = Callable[[VmFacts, HostView, PoolView], Failure | None]


def as_error(failure: Failure) -> XeError:
    return failure if isinstance(failure, XeError) else XeError(failure[0], *failure[1])


def _validate(f: VmFacts, host: HostView, pool: PoolView) -> Failure | None:
    return f.invalid


def _disks(f: VmFacts, host: HostView, pool: PoolView) -> Failure | None:
    return f.vm.disk_failure


def _live(f: VmFacts, host: HostView, pool: PoolView) -> Failure | None:
    return None if host.live else ("HOST_NOT_LIVE", ())


def _control_domain(f: VmFacts, host: HostView, pool: PoolView) -> Failure | None:
    if f.vm.is_control_domain and f.vm.affinity != host.uuid:
        return ("OPERATION_NOT_ALLOWED", ("Cannot boot a control domain on a host different from its affinity",))
    return None


def _enabled(f: VmFacts, host: HostView, pool: PoolView) -> Failure | None:
    # A control domain boots on its own host even when that host is disabled (xapi).
    return None if host.enabled or f.vm.is_control_domain else ("HOST_DISABLED", (host.uuid,))


def _not_evacuating(f: VmFacts, host: HostView, pool: PoolView) -> Failure | None:
    return ("HOST_EVACUATE_IN_PROGRESS", (host.uuid,)) if EVACUATE in host.current_operations else None


def _srs(f: VmFacts, host: HostView, pool: PoolView) -> Failure | None:
    for sr in f.vm.required_srs:
        if sr not in host.srs:
            return ("VM_REQUIRES_SR", (f.vm.uuid, sr))
    return None


def _networks(f: VmFacts, host: HostView, pool: PoolView) -> Failure | None:
    for net in f.vm.required_networks:
        if net not in host.networks and net not in pool.shared_networks:
            return ("VM_REQUIRES_NETWORK", (f.vm.uuid, net))
    return None


def _hvm(f: VmFacts, host: HostView, pool: PoolView) -> Failure | None:
    return ("VM_HVM_REQUIRED", (f.vm.uuid,)) if f.vm.hvm and not host.supports_hvm else None


def _memory(f: VmFacts, host: HostView, pool: PoolView) -> Failure | None:
    """The broker's figure where it has reported (what it could free there), else the model's."""
    if host.memory_free_computed is None:
        free = host_compute_free_memory_with_maximum_compression(host, pool.load_without(host.uuid, f.vm))
        return ("HOST_NOT_ENOUGH_FREE_MEMORY", (f.start_memory, free)) if f.start_memory > free else None
    free = host_free_memory(host, pool, f.vm)
    return ("HOST_NOT_ENOUGH_FREE_MEMORY", (f.reservation_memory, free)) if f.reservation_memory > free else None


def _pcpus(f: VmFacts, host: HostView, pool: PoolView) -> Failure | None:
    if f.vcpus_unrestricted or host.cpus >= f.vm.vcpus_max:
        return None
    return ("HOST_NOT_ENOUGH_PCPUS", (f.vm.vcpus_max, host.cpus))


def _ha_plan(f: VmFacts, host: HostView, pool: PoolView) -> Failure | None:
    if placement_preserves_ha_plan(f.vm, host, pool):
        return None
    return ("HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN", ())


# The seed's order (xapi's, less the vGPU/USB/SR-IOV/CPUID checks xetool has no model for).
# "evacuate" is not part of xapi's assert_can_boot_here: the chooser skips such hosts and
# start_on refuses them, so the explain table shows it where it applies.
CHECKS: tuple[tuple[str, Check], ...] = (
    ("validate", _validate),
    ("disks", _disks),
    ("live", _live),
    ("control-domain", _control_domain),
    ("enabled", _enabled),
    ("evacuate", _not_evacuating),
    ("srs", _srs),
    ("networks", _networks),
    ("hvm", _hvm),
    ("memory", _memory),
    ("pcpus", _pcpus),
    ("ha-plan", _ha_plan),
)
CHECK_NAMES: tuple[str, ...] = tuple(name for name, _ in CHECKS)
_PASSED = {name: CheckResult(name, True) for name in CHECK_NAMES}  # immutable: shared by every row


_SELECTED = {
    (mem, evac): tuple((n, c) for n, c in CHECKS if (mem or n != "memory") and (evac or n != "evacuate"))
    for mem in (False, True) for evac in (False, True)
}


def _selected(do_memory_check: bool, evacuate: bool) -> tuple[tuple[str, Check], ...]:
    return _SELECTED[(do_memory_check, evacuate)]


def first_failure(facts: VmFacts, host: HostView, pool: PoolView, *, do_memory_check: bool = True,
                  evacuate: bool = True) -> XeError | None:
    for _, check in _selected(do_memory_check, evacuate):
        failure = check(facts, host, pool)
        if failure is not None:
            return as_error(failure)
    return None


def assert_can_boot_here(vm: VmView, host: HostView, pool: PoolView, do_memory_check: bool = True) -> None:
    """Raise the first failing check's error (xapi's assert_can_boot_here, plus the HA plan)."""
    err = first_failure(VmFacts.of(vm), host, pool, do_memory_check=do_memory_check, evacuate=False)
    if err is not None:
        raise err


def vm_can_run_on_host(facts: VmFacts, host: HostView, pool: PoolView) -> bool:
    """The chooser's validator: every check, the memory check included, and not evacuating."""
    for _, check in _SELECTED[(True, True)]:
        if check(facts, host, pool) is not None:
            return False
    return True


def explain_host(facts: VmFacts, host: HostView, pool: PoolView, *, do_memory_check: bool = True,
                 evacuate: bool = True) -> tuple[CheckResult, ...]:
    """Every check on `host`, none skipped because an earlier one failed."""
    out = []
    for name, check in _selected(do_memory_check, evacuate):
        if name == "control-domain" and not facts.vm.is_control_domain:
            continue  # says nothing for an ordinary VM; keep the table short
        failure = check(facts, host, pool)
        if failure is None:
            out.append(_PASSED[name])
        else:
            err = as_error(failure)
            reason = describe(err, pool)
            if name == "memory" and host.memory_free_computed is not None:
                reason += "; " + broker_figures(host, pool, facts.vm)
            out.append(CheckResult(name, False, reason, err))
    return tuple(out)


def broker_figures(host: HostView, pool: PoolView, vm: VmView) -> str:
    """Where the memory check's figure comes from on a host whose broker has reported."""
    f = memory_figures(host, pool, vm)
    free, available, queued = int(f["free"]), int(f["broker_available"]), int(f["queued"])
    giveable = available - free + RESERVE_BYTES
    text = (f"the host's memory broker: {free // MIB} MiB free + {max(0, giveable) // MIB} MiB balloonable guests "
            f"could give back - {RESERVE_BYTES // MIB} MiB reserve")
    return text + (f" - {queued // MIB} MiB for starts queued there" if queued else "")


def _mib(n: str, up: bool) -> str:
    b = int(n)
    return str(-(-b // MIB) if up else b // MIB)


def describe(err: XeError, pool: PoolView | None = None, names: Mapping[str, str] | None = None) -> str:
    """A human reason in xe's words (print_assert_exception), with the numbers; `names` turns
    the uuids of SRs, networks and disks into their name-labels."""
    p = {k: (f'"{names[v]}"' if names and names.get(v) else v) for k, v in err.params.items()}
    code = err.code
    if code == "HOST_NOT_LIVE":
        return "Host down"
    if code == "HOST_DISABLED":
        return "Host disabled (use 'xetool host-enable' to re-enable)"
    if code == "HOST_EVACUATE_IN_PROGRESS":
        return "Host is being evacuated"
    if code == "VM_REQUIRES_SR":
        return f"VM requires access to SR: {p.get('sr')}"
    if code == "VM_REQUIRES_NETWORK":
        return f"VM requires access to network: {p.get('network')}"
    if code == "VM_HVM_REQUIRED":
        return "HVM not supported by this host"
    if code == "HOST_NOT_ENOUGH_FREE_MEMORY":
        return (
            f"Not enough free memory (needs {_mib(p['needed'], True)} MiB, "
            f"has {_mib(p['available'], False)} MiB)"
        )
    if code == "HOST_NOT_ENOUGH_PCPUS":
        return f"Not enough CPUs (VM needs {p.get('vcpus')}, but host has {p.get('pcpus')})"
    if code == "HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN":
        n = pool.ha_host_failures_to_tolerate if pool is not None else "?"
        return f"Would break the HA failover plan (host failures to tolerate: {n})"
    if code == "OPERATION_NOT_ALLOWED":
        return p.get("reason", err.spec.doc)
    if code == "INVALID_VALUE":
        return f"Invalid value for {p.get('field')}: {p.get('value')}"
    if code == "VALUE_NOT_SUPPORTED":
        return f"{p.get('field')}={p.get('value')} not supported: {p.get('reason')}"
    if code == "VM_BAD_POWER_STATE":
        return f"the VM is {p.get('actual')}; this needs {p.get('expected')}"
    if code == "VDI_IN_USE":
        return f"Disk {p.get('vdi')} is in use by another VM (and is not sharable)"
    if code == "VDI_READONLY":
        return f"Disk {p.get('vdi')} is read-only, and the VBD is read-write"
    if code == "VDI_MISSING":
        return f"Disk {p.get('vdi')} is missing" + (f" from SR {p['sr']}" if p.get("sr") else "")
    if code == "OTHER_OPERATION_IN_PROGRESS":
        return f"{p.get('class')} {p.get('object')} is busy with {p.get('operation_type')}"
    if code == "MEMORY_CONSTRAINT_VIOLATION":
        return f"Memory constraint violated: {p.get('constraint')}"
    return err.spec.doc


def explain_hosts(vm: VmView, hosts: Sequence[HostView], pool: PoolView) -> list[tuple[HostView, tuple[CheckResult, ...]]]:
    facts = VmFacts.of(vm)
    return [(h, explain_host(facts, h, pool)) for h in hosts]
