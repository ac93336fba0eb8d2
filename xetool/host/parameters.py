"""The host half's checks of the VM's own record before anything is built: Vmops.check_vm_parameter,
the pre-boot memory pinning check, and the parameters the domain builder parses. Pure over the
boot record, so that `vm-start --dry-run` makes exactly the checks the host half will make."""

from __future__ import annotations

from xetool.errors import XeError
from xetool.records import record

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

MIN_MEMORY = 16 << 20  # check_vm_parameter's global minimum
MAX_VCPUS = 64
TRUE = ("true", "1")


@record(frozen=True)
class DomainParameters:
    """What the builder takes from VCPUs-params and other-config, parsed."""

    vcpu_affinity: tuple[int, ...]
    sched_weight: int
    sched_cap: int
    address_size: int | None  # other-config:machine-address-size


def check_vm_parameter(vm: Mapping[str, Any], userdevices: Sequence[str]) -> str:
    """0 < VCPUs < 64, each VBD's device unique, at least 16 MiB; a note saying what passed."""
    if not 0 < vm["VCPUs_max"] < MAX_VCPUS:
        raise XeError("INVALID_VALUE", "VCPUs_max", f"{vm['VCPUs_max']} (must be more than 0 and fewer than {MAX_VCPUS})")
    dupes = {n for n in userdevices if list(userdevices).count(n) > 1}
    if dupes:
        raise XeError("DEVICE_ALREADY_EXISTS", ", ".join(sorted(dupes)))
    if vm["memory_static_max"] < MIN_MEMORY:
        raise XeError("INVALID_VALUE", "memory-static-max", f"{vm['memory_static_max']} (at least {MIN_MEMORY} bytes)")
    return f"{vm['VCPUs_max']} vCPUs, {len(userdevices)} VBDs"


def assert_memory_constraints(vm: Mapping[str, Any], force: bool) -> str:
    """xapi's pre-boot safety check, skipped by --force: a nested-virt guest cannot balloon,
    so its memory must be pinned at static-max."""
    if vm["platform"].get("nested-virt", "").lower() not in TRUE:
        return "no memory pinning needed"
    if vm["memory_dynamic_min"] == vm["memory_dynamic_max"] == vm["memory_static_max"]:
        return "nested-virt: memory pinned"
    if force:
        return "nested-virt memory not pinned: allowed by --force"
    raise XeError("MEMORY_CONSTRAINT_VIOLATION_MAXPIN", "platform:nested-virt needs dynamic-min = dynamic-max = static-max (or --force)")


def domain_parameters(vm: Mapping[str, Any]) -> DomainParameters:
    params = vm["VCPUs_params"]
    size = vm["other_config"].get("machine-address-size")
    if size and not size.isdigit():
        raise XeError("INVALID_VALUE", "other-config:machine-address-size", size)
    return DomainParameters(_cpu_list(params.get("mask", "")), _int_param(params, "weight", 256),
                            _int_param(params, "cap", 0), int(size) if size else None)


def _cpu_list(mask: str) -> tuple[int, ...]:
    """VCPUs-params:mask, a comma list of pCPUs ("0,2,3")."""
    try:
        return tuple(int(c) for c in mask.split(",") if c.strip())
    except ValueError:
        raise XeError("INVALID_VALUE", "VCPUs-params:mask", mask) from None


def _int_param(params: Mapping[str, str], key: str, default: int) -> int:
    try:
        return int(params.get(key, default))
    except ValueError:
        raise XeError("INVALID_VALUE", f"VCPUs-params:{key}", params[key]) from None
