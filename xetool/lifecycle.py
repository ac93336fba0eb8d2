"""Allowed and current operations of VMs, VBDs, VIFs and hosts: check, then act.

The tables are xapi's (Xapi_vm_lifecycle, Xapi_vbd_helpers, Xapi_vif_helpers), cut to the
operations xetool has. `*_operation_error` returns the first error or None and changes nothing;
`mark`/`unmark` record an operation in `current_operations` under the caller's write
transaction and refresh `allowed_operations`, which is only advice derived from the same checks.
"""

from __future__ import annotations

from xetool.datamodel.classes import HOST_OPERATIONS, VBD_OPERATIONS, VIF_OPERATIONS, VM_OPERATIONS
from xetool.errors import XeError
from xetool.store.db import Row, Txn

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any

H, P, R, S = "Halted", "Paused", "Running", "Suspended"
VM_POWER_STATES: dict[str, tuple[str, ...]] = {
    "start": (H,), "start_on": (H,),
    "unpause": (P,),
    "clean_shutdown": (R,), "clean_reboot": (R,), "pause": (R,),
    "hard_shutdown": (P, R, S), "hard_reboot": (P, R),
    "destroy": (H, S),
    "changing_dynamic_range": (H, R),
    "changing_VCPUs": (H,), "changing_static_range": (H,), "changing_memory_limits": (H,),
    "changing_shadow_memory": (H,), "make_into_template": (H,),
    "snapshot": (H, P, R, S), "clone": (H, S),
}
# Operations a control domain may be asked for (xapi: start is allowed, destroy not on dom0).
CONTROL_DOMAIN_OPS = frozenset({"changing_dynamic_range", "changing_memory_limits", "changing_static_range", "start", "start_on"})
TEMPLATE_OPS = frozenset({"changing_dynamic_range", "changing_static_range", "changing_memory_limits",
                          "changing_shadow_memory", "changing_VCPUs", "clone", "destroy"})


def _busy(cls: str, obj: str, current: dict[str, str]) -> XeError:
    tasks, ops = list(current), list(current.values())
    op = ops[0] if len(ops) == 1 else "{" + ",".join(ops) + "}"
    task = tasks[0] if len(tasks) == 1 else "{" + ",".join(tasks) + "}"
    return XeError("OTHER_OPERATION_IN_PROGRESS", cls, obj, op, task)


def _vm_concurrent_ok(op: str, current: dict[str, str]) -> bool:
    ops = set(current.values())
    if op == "hard_shutdown":
        return "hard_shutdown" not in ops
    if op == "hard_reboot":
        return not ops & {"hard_shutdown", "hard_reboot"}
    if op in ("snapshot", "clone"):
        return ops <= {"snapshot", "clone"}
    return False


def vm_operation_error(vm: Row, op: str) -> XeError | None:
    """xapi's check_operation_error, in its order; the first failing check wins."""
    if op in vm["blocked_operations"]:
        return XeError("OPERATION_BLOCKED", vm["uuid"], vm["blocked_operations"][op])
    allowed = VM_POWER_STATES.get(op)
    if allowed is None:
        return XeError("OPERATION_NOT_ALLOWED", f"xetool does not know the VM operation {op}")
    if vm["power_state"] not in allowed:
        return XeError("VM_BAD_POWER_STATE", vm["uuid"], ", ".join(s.lower() for s in allowed), vm["power_state"].lower())
    current = vm["current_operations"]
    if current and not _vm_concurrent_ok(op, current):
        return _busy("VM", vm["uuid"], current)
    if vm["is_a_template"] and op not in TEMPLATE_OPS:
        return XeError("VM_IS_TEMPLATE", vm["uuid"], op)
    if vm["is_control_domain"] and op not in CONTROL_DOMAIN_OPS:
        return XeError("OPERATION_NOT_ALLOWED", "This operation is not allowed on a control domain")
    return None


def vbd_operation_error(vbd: Row, vm: Row, op: str) -> XeError | None:
    current = vbd["current_operations"]
    if current and op not in ("pause", "unpause"):
        return _busy("VBD", vbd["uuid"], current)
    if op in ("unplug", "unplug_force") and not vbd["unpluggable"]:
        return XeError("VBD_NOT_UNPLUGGABLE", vbd["uuid"])
    if op in ("plug", "unplug", "unplug_force"):
        if vm["power_state"] != R:
            return XeError("VM_BAD_POWER_STATE", vm["uuid"], "running", vm["power_state"].lower())
        if op == "plug" and vbd["currently_attached"]:
            return XeError("DEVICE_ALREADY_ATTACHED", vbd["uuid"])
        if op != "plug" and not vbd["currently_attached"]:
            return XeError("DEVICE_ALREADY_DETACHED", vbd["uuid"])
        busy = set(vm["current_operations"].values()) & {"clean_shutdown", "hard_shutdown", "pause"}
        if busy:
            return XeError("OPERATION_NOT_ALLOWED", f"Current operation on VM:{vm['uuid']} is {busy.pop()}")
    return None


ACTIVE_VM_STATES = (R, P)
DISK_OPS = ("attach", "plug")  # the operations that give a VM the disk (xapi: also insert)


def vdi_users(txn: Txn, vdi: str, vbd: Row, starting: bool) -> list[Row]:
    """The other VBDs of `vdi` that hold or are taking it (xapi's vbds_to_check): attached to a
    running or paused VM, or with an operation in progress (another start marks them `attach`);
    never a suspended VM's or a control domain's. With `starting`, the VM's own other VBDs count
    too: the start marks them all, as xapi marks them one after the other."""
    out = []
    for other in txn.select("vbd", ["uuid", "VM", "mode", "currently_attached", "current_operations"], {"VDI": vdi}):
        if other["uuid"] == vbd["uuid"]:
            continue
        owner = txn.get("vm", other["VM"], ["uuid", "name_label", "power_state", "is_control_domain", "resident_on"])
        if owner is None or owner["power_state"] == S or owner["is_control_domain"]:
            continue
        attached = other["currently_attached"] and owner["power_state"] in ACTIVE_VM_STATES
        if attached or other["current_operations"] or (starting and other["VM"] == vbd["VM"]):
            out.append({**other, "owner": owner})
    return out


def vdi_attach_error(txn: Txn, vbd: Row, vm: Row, op: str, starting: bool = False) -> XeError | None:
    """The disk behind a VBD that is being attached or plugged (xapi's sharing checks, which
    its allowed_operations skip and its assert always runs): the VDI must exist, have no other
    operation, not be written by two VMs unless sharable, not be written if read-only, and its
    file must be in its SR. Reads the store (and stats the file); changes nothing."""
    if vbd["empty"] or not vbd["VDI"] or op not in DISK_OPS:
        return None
    vdi = txn.get("vdi", vbd["VDI"], ["uuid", "SR", "sharable", "read_only", "location", "current_operations"])
    if vdi is None:
        return XeError("VDI_MISSING", "", vbd["VDI"])  # no record, so no SR to name
    busy = {t: o for t, o in vdi["current_operations"].items() if o not in ("copy", "mirror")}
    if busy:
        return _busy("VDI", vdi["uuid"], busy)
    need_write = vbd["mode"] == "RW"
    if not vbd["currently_attached"] and not vm["is_control_domain"] and not vdi["sharable"]:
        users = vdi_users(txn, vdi["uuid"], vbd, starting)
        if any(u["mode"] == "RW" for u in users) or (need_write and users):
            return XeError("VDI_IN_USE", vdi["uuid"], op)
    if need_write and vdi["read_only"]:
        return XeError("VDI_READONLY", vdi["uuid"])
    from xetool.storage import disks
    from xetool.store.objects import sr_path

    if disks.present(txn, vdi["SR"], sr_path(txn, vdi["SR"]), vdi["location"]) is False:
        return XeError("VDI_MISSING", vdi["SR"], vdi["uuid"])
    return None


def vbd_attach_error(txn: Txn, vbd: Row, vm: Row, op: str, starting: bool = False) -> XeError | None:
    """xapi's assert_operation_valid for a VBD: the table's checks, then the disk's."""
    return vbd_operation_error(vbd, vm, op) or vdi_attach_error(txn, vbd, vm, op, starting)


def vif_operation_error(vif: Row, vm: Row, op: str) -> XeError | None:
    current = vif["current_operations"]
    if current:
        return _busy("VIF", vif["uuid"], current)
    if op in ("plug", "unplug"):
        if vm["is_control_domain"] and op == "plug":
            return XeError("OPERATION_NOT_ALLOWED", "Control domain does not support hotplug")
        if vm["power_state"] != R:
            return XeError("VM_BAD_POWER_STATE", vm["uuid"], "running", vm["power_state"].lower())
        if op == "plug" and vif["currently_attached"]:
            return XeError("DEVICE_ALREADY_ATTACHED", vif["uuid"])
        if op == "unplug" and not vif["currently_attached"]:
            return XeError("DEVICE_ALREADY_DETACHED", vif["uuid"])
        busy = set(vm["current_operations"].values()) & {"clean_shutdown", "hard_shutdown", "pause"}
        if busy:
            return XeError("OPERATION_NOT_ALLOWED", f"Current operation on VM:{vm['uuid']} is {busy.pop()}")
    return None


def host_operation_error(host: Row, op: str) -> XeError | None:
    """vm_start and friends may overlap each other but not evacuate/reboot/shutdown (xapi)."""
    current = set(host["current_operations"].values())
    exclusive = {"evacuate", "reboot", "shutdown"}
    if op in exclusive and current:
        return _busy("host", host["uuid"], host["current_operations"])
    if current & exclusive:
        return _busy("host", host["uuid"], host["current_operations"])
    return None


def assert_vm_operation_valid(txn: Txn, vm: Row, op: str) -> None:
    err = vm_operation_error(vm, op)
    if err is not None:
        raise err


# --- marks ---------------------------------------------------------------------------------------

def _allowed(cls: str, row: Row, txn: Txn) -> list[str]:
    if cls == "vm":
        return [op for op in VM_OPERATIONS if vm_operation_error(row, op) is None]
    if cls == "host":
        return [op for op in HOST_OPERATIONS if host_operation_error(row, op) is None]
    vm = txn.must("vm", row["VM"])
    check = vbd_operation_error if cls == "vbd" else vif_operation_error
    ops = VBD_OPERATIONS if cls == "vbd" else VIF_OPERATIONS
    return [op for op in ops if check(row, vm, op) is None]


def update_allowed_operations(txn: Txn, cls: str, uuid: str) -> None:
    row = txn.must(cls, uuid)
    txn.update(cls, uuid, {"allowed_operations": _allowed(cls, row, txn)})


def mark(txn: Txn, cls: str, uuid: str, task: str, op: str) -> None:
    row = txn.must(cls, uuid, ["uuid", "current_operations"])
    txn.update(cls, uuid, {"current_operations": {**row["current_operations"], task: op}})
    update_allowed_operations(txn, cls, uuid)


def unmark(txn: Txn, cls: str, uuid: str, task: str) -> None:
    row = txn.get(cls, uuid, ["uuid", "current_operations"])
    if row is None or task not in row["current_operations"]:
        return
    current: dict[str, Any] = {k: v for k, v in row["current_operations"].items() if k != task}
    txn.update(cls, uuid, {"current_operations": current})
    update_allowed_operations(txn, cls, uuid)
