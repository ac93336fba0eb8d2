"""Checks on field values that the datamodel's types alone cannot express.

Run inside the write transaction of every change (param-set, param-add, creation), so what is
checked is what is written. xapi enforces the same rules at set time
(Xapi_vm_memory_constraints, set_VCPUs_*).
"""

from __future__ import annotations

from xetool.datamodel import get_class
from xetool.datamodel.types import Kind
from xetool.errors import XeError
from xetool.store.db import Txn

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any

MEMORY = ("memory_static_min", "memory_dynamic_min", "memory_dynamic_max", "memory_static_max")
# Fields that shape the domain when it is built: changed only while the VM is halted.
STATIC_VM_FIELDS = frozenset(MEMORY) | {
    "VCPUs_max", "VCPUs_at_startup", "HVM_boot_policy", "HVM_shadow_multiplier", "domain_type",
    "PV_kernel", "PV_ramdisk", "PV_bootloader",
}


def check_update(txn: Txn, cls: str, row: dict[str, Any], new: dict[str, Any]) -> None:
    """Refuse `new` (field -> value) for the object `row` if the result would be invalid."""
    from xetool import limits

    spec = get_class(cls)
    for name, value in new.items():  # each value's own bounds before the rules between fields
        f = spec.field(name)
        if f is not None:
            limits.check_field(f, value)
    for name, value in new.items():
        f = spec.field(name)
        if f is not None and f.kind is Kind.REF and value:
            txn.must(f.ref, value, ["uuid"])
    merged = {**row, **new}
    if cls == "vm":
        _check_vm(row, merged, new)


def _check_vm(before: dict[str, Any], vm: dict[str, Any], new: dict[str, Any]) -> None:
    changed_static = STATIC_VM_FIELDS.intersection(k for k in new if new[k] != before.get(k))
    if changed_static and before.get("power_state", "Halted") != "Halted":
        raise XeError("VM_BAD_POWER_STATE", vm["uuid"], "halted", str(before["power_state"]).lower())
    if any(m in new for m in MEMORY):
        values = [vm[m] for m in MEMORY]
        if any(v < 0 for v in values) or values != sorted(values):
            raise XeError("MEMORY_CONSTRAINT_VIOLATION_ORDER")
    if "VCPUs_max" in new or "VCPUs_at_startup" in new:
        if vm["VCPUs_max"] < 1:
            raise XeError("INVALID_VALUE", "VCPUs-max", vm["VCPUs_max"])
        if not 0 < vm["VCPUs_at_startup"] <= vm["VCPUs_max"]:
            raise XeError("INVALID_VALUE", "VCPUs-at-startup", f"{vm['VCPUs_at_startup']} (VCPU values must satisfy: 0 < VCPUs_at_startup <= VCPUs_max)")
    if "HVM_shadow_multiplier" in new and vm["HVM_shadow_multiplier"] < 1.0:
        raise XeError("INVALID_VALUE", "HVM-shadow-multiplier", vm["HVM_shadow_multiplier"])
