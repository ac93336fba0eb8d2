"""Making and removing pool objects, with the rules xapi applies at creation time.

Used by the object commands (vm-create, vbd-create, ...) and by pool-import, inside the
caller's write transaction. Files (VDI images) are made by the SR driver; the caller removes
them again if the transaction fails (see `pending_files`).
"""

from __future__ import annotations

import re

from xetool import constraints
from xetool.clock import now_iso
from xetool.errors import XeError
from xetool.storage import disks
from xetool.store.db import Row, Txn, new_uuid

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from xetool.storage.disks import Made
    from typing import Any

MAX_VBD_DEVICE = 254
MAX_VIF_DEVICE = 15
BRIDGE_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,15}$")
MAC_RE = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")


def create_vm(txn: Txn, values: dict[str, Any]) -> str:
    fields = dict(values)
    fields.setdefault("uuid", new_uuid())
    if fields.get("HVM_boot_policy") and fields.get("domain_type", "unspecified") == "unspecified":
        fields["domain_type"] = "hvm"
    constraints.check_update(txn, "vm", {"uuid": fields["uuid"], "power_state": "Halted"}, _vm_defaults(fields))
    metrics = txn.insert("vm_metrics", {"VM": fields["uuid"], "install_time": now_iso()})
    fields["metrics"] = metrics
    return _with_allowed_operations(txn, "vm", txn.insert("vm", fields))


def _with_allowed_operations(txn: Txn, cls: str, uuid: str) -> str:
    """A new object's allowed operations are known from the start (xapi computes them at create)."""
    from xetool import lifecycle

    lifecycle.update_allowed_operations(txn, cls, uuid)
    return uuid


def memory_of_size(size: int) -> dict[str, int]:
    """`memory=SIZE` (vm-create, pool definitions): static-max, dynamic-max and dynamic-min at
    SIZE, static-min at most 128 MiB."""
    return {"memory_static_max": size, "memory_dynamic_max": size, "memory_dynamic_min": size,
            "memory_static_min": min(size, 128 << 20)}


def _vm_defaults(fields: dict[str, Any]) -> dict[str, Any]:
    from xetool.datamodel.classes import VM

    return {f.name: fields.get(f.name, f.initial()) for f in VM.persisted_fields}


def destroy_vm(txn: Txn, vm: Row) -> None:
    for vbd in txn.uuids("vbd", {"VM": vm["uuid"]}):
        txn.delete("vbd", vbd)
    for vif in txn.uuids("vif", {"VM": vm["uuid"]}):
        txn.delete("vif", vif)
    for cls in ("vm_metrics", "vm_guest_metrics"):
        for uuid in txn.uuids(cls, {"VM": vm["uuid"]}):
            txn.delete(cls, uuid)
    txn.delete("vm", vm["uuid"])


def sr_path(txn: Txn, sr: str) -> str:
    """Where a file SR keeps its disks (every PBD of this machine names the same directory)."""
    for pbd in txn.select("pbd", ["device_config"], {"SR": sr}):
        path = pbd["device_config"].get("path")
        if path:
            return str(path)
    raise XeError("SR_BACKEND_FAILURE", sr, "the SR has no PBD with device-config:path")


def create_vdi(txn: Txn, sr: str, values: dict[str, Any], created: list[Made]) -> str:
    """The record and the sparse file; `created` collects files to remove if the caller fails."""
    txn.must("sr", sr, ["uuid"])
    size = int(values.get("virtual_size", 0))
    if size <= 0:
        raise XeError("INVALID_VALUE", "virtual-size", size)
    from xetool import limits
    from xetool.datamodel.classes import VDI

    limits.check_int(VDI.field_named("virtual_size"), size)  # before the file is made
    if values.get("name_label") is not None:
        limits.check_field(VDI.field_named("name_label"), values["name_label"])
    uuid = values.get("uuid") or new_uuid()
    path = sr_path(txn, sr)
    location = disks.create(txn, sr, path, uuid, size, created)
    return txn.insert("vdi", {**values, "uuid": uuid, "SR": sr, "location": location})


def destroy_vdi(txn: Txn, vdi: Row) -> Made:
    """Remove the record; return what the caller deletes after commit (disks.destroy)."""
    users = txn.uuids("vbd", {"VDI": vdi["uuid"]})
    if users:
        raise XeError("VDI_IN_USE", vdi["uuid"], "destroy")
    path = sr_path(txn, vdi["SR"])
    txn.delete("vdi", vdi["uuid"])
    return vdi["SR"], path, vdi["location"], disks.seen_from(txn, vdi["SR"])


def _device_number(text: str, taken: set[str], limit: int) -> str:
    if text == "autodetect":
        for n in range(limit + 1):
            if str(n) not in taken:
                return str(n)
        raise XeError("INVALID_DEVICE", text)
    if not text.isdigit() or int(text) > limit:
        raise XeError("INVALID_DEVICE", text)
    text = str(int(text))
    if text in taken:
        raise XeError("DEVICE_ALREADY_EXISTS", text)
    return text


def create_vbd(txn: Txn, vm: str, values: dict[str, Any]) -> str:
    txn.must("vm", vm, ["uuid"])
    taken = {r["userdevice"] for r in txn.select("vbd", ["userdevice"], {"VM": vm})}
    device = _device_number(str(values.get("userdevice", "autodetect")), taken, MAX_VBD_DEVICE)
    vdi = values.get("VDI")
    vbd_type = values.get("type", "Disk")
    if vdi:
        row = txn.must("vdi", vdi, ["uuid", "read_only"])
        if row["read_only"] and values.get("mode", "RW") == "RW":
            raise XeError("VDI_READONLY", vdi)
    elif vbd_type != "CD":
        raise XeError("VALUE_NOT_SUPPORTED", "vdi-uuid", "", "Empty VBDs can only be made for type=CD")
    uuid = txn.insert("vbd", {**values, "VM": vm, "userdevice": device, "empty": not vdi})
    return _with_allowed_operations(txn, "vbd", uuid)


def mac_for(vif_uuid: str) -> str:
    """A stable MAC in Xen's OUI (00:16:3e), derived from the VIF's uuid."""
    import hashlib

    digest = hashlib.sha1(vif_uuid.encode()).digest()
    return "00:16:3e:%02x:%02x:%02x" % (digest[0] & 0x7F, digest[1], digest[2])


def create_vif(txn: Txn, vm: str, network: str, device: str, mac: str | None, uuid: str | None = None) -> str:
    txn.must("vm", vm, ["uuid"])
    net = txn.must("network", network, ["uuid", "MTU"])
    taken = {r["device"] for r in txn.select("vif", ["device"], {"VM": vm})}
    device = _device_number(device, taken, MAX_VIF_DEVICE)
    uuid = uuid or new_uuid()
    if not mac or mac == "random":
        mac = mac_for(uuid)
    elif not MAC_RE.match(mac):
        raise XeError("INVALID_VALUE", "mac", mac)
    txn.insert("vif", {"uuid": uuid, "VM": vm, "network": network, "device": device, "MAC": mac.lower(), "MTU": net["MTU"]})
    return _with_allowed_operations(txn, "vif", uuid)


def next_bridge(txn: Txn) -> str:
    used = {r["bridge"] for r in txn.select("network", ["bridge"])}
    n = 0
    while f"xetbr{n}" in used:
        n += 1
    return f"xetbr{n}"


def create_network(txn: Txn, values: dict[str, Any]) -> str:
    bridge = values.get("bridge") or next_bridge(txn)
    if not BRIDGE_RE.match(bridge):
        raise XeError("INVALID_VALUE", "bridge", bridge)
    if txn.select("network", ["uuid"], {"bridge": bridge}) and not values.get("uuid"):
        raise XeError("INVALID_VALUE", "bridge", f"{bridge} (already used by another network)")
    return txn.insert("network", {**values, "bridge": bridge})


def create_pif(txn: Txn, host: str, network: str, device: str = "", mac: str = "", uuid: str | None = None) -> str:
    txn.must("host", host, ["uuid"])
    txn.must("network", network, ["uuid"])
    if txn.select("pif", ["uuid"], {"host": host, "network": network}):
        raise XeError("DEVICE_ALREADY_EXISTS", f"PIF of host {host} on network {network}")
    uuid = uuid or new_uuid()
    if not device:
        device = f"eth{len(txn.uuids('pif', {'host': host}))}"
    return txn.insert("pif", {"uuid": uuid, "host": host, "network": network, "device": device,
                              "MAC": mac or mac_for(uuid)})
