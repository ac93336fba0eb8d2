"""Releasing everything a VM holds on its host: devices, device model and console server, leases,
the domain, the memory reservation; then the VM is Halted in the store.

One path for a shutdown, a failed start's undo, the janitor after a killed command, and a host
that crashed (where the domain and processes are already gone and only the records remain).
"""

from __future__ import annotations

from pathlib import Path

from xetool.backends.base import Backend
from xetool.devices import console, domain, vbd, vif
from xetool.errors import XeError
from xetool.host import memory, runtime
from xetool.host.runtime import Runtime
from xetool.paths import host_dir
from xetool.store.db import Store
from xetool.xenstore.client import XsClient


def release_on_host(state_dir: Path, backend: Backend | None, rt: Runtime) -> list[str]:
    """Undo what `rt` records on a live host; returns what could not be undone (best effort)."""
    problems: list[str] = []
    if rt.dm_pid:
        console.stop(rt.dm_pid)
    if rt.console_pid:
        console.stop(rt.console_pid)
    for bridge, mac in rt.leases:
        vif.remove_lease(host_dir(state_dir, rt.host), bridge, mac)
    if backend is None or rt.domid < 0:
        return problems
    try:
        with XsClient(backend.xenstore_socket()) as xs:
            for uuid, device in rt.vifs.items():
                vif.unplug(xs, backend, rt.domid, device, uuid, force=True)
            for uuid, userdevice in rt.vbds.items():
                vbd.unplug(xs, backend, rt.domid, userdevice, rt.hvm, uuid, force=True)
            info = backend.domain_info(rt.domid)
            if info is not None and info.uuid == rt.vm:
                backend.destroy(rt.domid)
            domain.remove_domain_entries(xs, rt.domid, rt.vm)
    except XeError as err:
        problems.append(err.render().replace("\n", "; "))
    return problems


def halt_in_store(store: Store, vm: str) -> None:
    """The store's side of a halted VM (xapi's force_state_reset)."""
    with store.write() as txn:
        if txn.get("vm", vm, ["uuid"]) is None:
            return
        txn.update("vm", vm, {"power_state": "Halted", "resident_on": None, "scheduled_to_be_resident_on": None,
                              "domid": -1, "memory_target": 0})
        for cls in ("vbd", "vif"):
            for uuid in txn.uuids(cls, {"VM": vm}):
                txn.update(cls, uuid, {"currently_attached": False})
        for m in txn.uuids("vm_metrics", {"VM": vm}):
            txn.update("vm_metrics", m, {"memory_actual": 0, "VCPUs_number": 0})
        from xetool import lifecycle

        lifecycle.update_allowed_operations(txn, "vm", vm)


def release_vm(store: Store, state_dir: Path, backend: Backend | None, host: str, vm: str) -> list[str]:
    rt = runtime.load(state_dir, host, vm) or Runtime(vm, host)
    problems = release_on_host(state_dir, backend, rt)
    if rt.reservation:
        memory.release(store, rt.reservation)
    halt_in_store(store, vm)
    runtime.remove(state_dir, host, vm)
    if backend is not None and rt.domid >= 0:  # what it held goes back to the others
        try:
            memory.rebalance(store, state_dir, backend, host)
        except XeError as err:
            problems.append(err.render().replace("\n", "; "))
    return problems
