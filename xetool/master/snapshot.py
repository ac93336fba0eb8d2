"""The placement snapshot, read from the store inside the caller's transaction.

Per-host memory sums come from one SQL aggregate over the VMs resident on or scheduled to each
host, so a pool of 20,000 VMs is not read row by row; only HA-protected guests are read one by
one, since the HA planner needs them individually.
"""

from __future__ import annotations

import shlex

from xetool import lifecycle
from xetool.placement.snapshot import HostLoad, HostView, PoolView, VmView, WlbConfig
from xetool.store.db import Row, Txn

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any

_VM_FIELDS = (
    "uuid", "name_label", "power_state", "is_control_domain", "HVM_boot_policy", "domain_type",
    "memory_static_min", "memory_static_max", "memory_dynamic_min", "memory_dynamic_max", "memory_overhead",
    "VCPUs_max", "VCPUs_at_startup", "HVM_shadow_multiplier", "actions_after_crash", "platform", "affinity",
    "ha_restart_priority", "ha_always_run", "resident_on", "scheduled_to_be_resident_on", "suspend_VDI",
)

_VBD_FIELDS = ("uuid", "VM", "VDI", "empty", "mode", "currently_attached", "userdevice")


def host_loads(txn: Txn) -> dict[str, HostLoad]:
    """Each host's load: kept by the database itself (store/schema.py's host_load triggers)."""
    return {host: HostLoad(*figures) for host, *figures in txn.db.execute(
        "SELECT host, n, overhead, static_min, dynamic_min, dynamic_max, static_max FROM host_load")}


def is_hvm(vm: Row) -> bool:
    if vm.get("domain_type") in ("hvm", "pv"):
        return bool(vm["domain_type"] == "hvm")
    return bool(vm.get("HVM_boot_policy"))


def vm_view(txn: Txn, vm: Row, with_devices: bool = True) -> VmView:
    srs: list[str] = []
    nets: list[str] = []
    disk_failure = None
    devices: list[tuple[str, str]] = []
    if with_devices:
        for vbd in txn.select("vbd", _VBD_FIELDS, {"VM": vm["uuid"]}):
            devices.append((vbd["uuid"], vbd["userdevice"]))
            err = lifecycle.vdi_attach_error(txn, vbd, vm, "attach", starting=True)
            if err is not None and disk_failure is None:
                disk_failure = (err.code, tuple(err.params.values()))
            if vbd["VDI"] and not vbd["empty"]:
                row = txn.get("vdi", vbd["VDI"], ["SR"])
                if row is not None and row["SR"] not in srs:
                    srs.append(row["SR"])
        if vm.get("suspend_VDI") and vm["power_state"] == "Suspended":
            srs.append(txn.must("vdi", vm["suspend_VDI"], ["SR"])["SR"])
        nets = list(dict.fromkeys(v["network"] for v in txn.select("vif", ["network"], {"VM": vm["uuid"]})))
    return VmView(
        uuid=vm["uuid"], name_label=vm["name_label"], power_state=vm["power_state"].lower(),
        memory_static_min=vm["memory_static_min"], memory_static_max=vm["memory_static_max"],
        memory_dynamic_min=vm["memory_dynamic_min"], memory_dynamic_max=vm["memory_dynamic_max"],
        memory_overhead=vm["memory_overhead"] or None, vcpus_max=vm["VCPUs_max"], vcpus_at_startup=vm["VCPUs_at_startup"],
        is_control_domain=vm["is_control_domain"], hvm=is_hvm(vm), hvm_shadow_multiplier=vm["HVM_shadow_multiplier"],
        actions_after_crash=vm["actions_after_crash"], platform=vm["platform"], affinity=vm["affinity"],
        required_srs=tuple(srs), required_networks=tuple(nets), vbd_devices=tuple(devices),
        ha_restart_priority=vm["ha_restart_priority"],
        ha_always_run=vm["ha_always_run"], resident_on=vm["resident_on"],
        scheduled_to_be_resident_on=vm["scheduled_to_be_resident_on"], disk_failure=disk_failure,
    )


def read_vm(txn: Txn, uuid: str) -> VmView:
    return vm_view(txn, txn.must("vm", uuid, _VM_FIELDS))


def pool_view(txn: Txn) -> PoolView:
    """Every start reads this, so the pool-wide queries are plain SQL on the columns placement
    needs, not the generic codec's rows: 1,000 hosts cost a few milliseconds this way."""
    import json

    pool = txn.pool()
    master = pool["master"]
    srs: dict[str, set[str]] = {}
    for host, sr in txn.db.execute("SELECT host, SR FROM pbd WHERE currently_attached"):
        srs.setdefault(host, set()).add(sr)
    nets: dict[str, set[str]] = {}
    for host, net in txn.db.execute("SELECT host, network FROM pif"):
        nets.setdefault(host, set()).add(net)
    capabilities: dict[str, frozenset[str]] = {}  # a pool has a handful of distinct lists
    hosts = []
    for uuid, name, total, overhead, cpus, enabled, live, caps, ops, free, computed in txn.db.execute(
            "SELECT uuid, name_label, memory_total, memory_overhead, cpu_count, enabled, live, capabilities,"
            " current_operations, memory_free, memory_free_computed FROM host ORDER BY rowid"):
        if caps not in capabilities:
            capabilities[caps] = frozenset(json.loads(caps or "[]"))
        hosts.append(HostView(
            uuid=uuid, name_label=name, memory_total=total, memory_overhead=overhead, cpus=cpus,
            enabled=bool(enabled), live=bool(live), capabilities=capabilities[caps],
            srs=frozenset(srs.get(uuid, ())), networks=frozenset(nets.get(uuid, ())),
            current_operations=frozenset(json.loads(ops).values()) if ops and ops != "{}" else frozenset(),
            is_master=uuid == master, memory_free=free if computed >= 0 else None,
            memory_free_computed=computed if computed >= 0 else None,
        ))
    loads = host_loads(txn)
    guests: dict[str, VmView] = {}
    for vm in txn.select("vm", _VM_FIELDS, {"ha_restart_priority": "restart"}):
        if vm["resident_on"] or vm["scheduled_to_be_resident_on"]:
            guests[vm["uuid"]] = vm_view(txn, vm, with_devices=False)
    shared = frozenset(n["uuid"] for n in txn.select("network", ["uuid", "other_config"])
                       if n["other_config"].get("assume_network_is_shared") == "true")
    return PoolView(
        hosts=tuple(hosts), loads=loads, guests=guests, ha_enabled=pool["ha_enabled"],
        ha_host_failures_to_tolerate=pool["ha_host_failures_to_tolerate"],
        ha_allow_overcommit=pool["ha_allow_overcommit"], coordinator_bias=pool["coordinator_bias"],
        shared_networks=shared, wlb=wlb_config(pool), pending=pending_starts(txn),
    )


def pending_starts(txn: Txn) -> dict[str, int]:
    """Per host, Σ(dynamic_min + overhead) of the VMs scheduled there that its memory broker has
    not counted yet: no reservation and no domain (their starts wait in the host's queue)."""
    return {host: int(n) for host, n in txn.db.execute(
        "SELECT scheduled_to_be_resident_on, SUM(memory_dynamic_min + memory_overhead) FROM vm"
        " WHERE scheduled_to_be_resident_on IS NOT NULL AND domid < 0"
        " AND uuid NOT IN (SELECT vm FROM reservation) GROUP BY scheduled_to_be_resident_on")}


def wlb_config(pool: Row) -> WlbConfig | None:
    if not (pool["wlb_url"] or pool["wlb_command"]):
        return None
    other: dict[str, Any] = pool["other_config"]
    return WlbConfig(
        command=tuple(shlex.split(pool["wlb_command"])), url=pool["wlb_url"], timeout=float(pool["wlb_timeout"]),
        enabled=pool["wlb_enabled"], choose_host_disable=other.get("wlb_choose_host_disable") == "true",
    )


def possible_hosts(txn: Txn, row: Row) -> list[str]:
    """VM.possible-hosts: the host a running (or paused) VM is on; otherwise every host on which
    each placement check passes now, in the pool's host order (xapi's get_possible_hosts)."""
    vm = txn.must("vm", row["uuid"], _VM_FIELDS)
    if vm["power_state"] in ("Running", "Paused") and vm["resident_on"]:
        return [vm["resident_on"]]
    from xetool.placement.checks import explain_hosts

    pool = pool_view(txn)
    return [h.uuid for h, checks in explain_hosts(vm_view(txn, vm), pool.hosts, pool) if all(c.passed for c in checks)]
