"""Cleaning up after the dead: a command killed half-way through a start, and a simulated host
that crashed. Registered with tasks.reap_dead_tasks, and run by `reconcile_hosts`."""

from __future__ import annotations

from pathlib import Path

from xetool.host import memory, runtime, teardown
from xetool.host.backend import HOST_FIELDS, backend_for
from xetool.store.db import Row, Store


def cleanup_dead_task(store: Store, task: Row) -> None:
    """Undo a start whose process died: its domain, devices, processes, leases and reservation.
    A start that had completed (`started`) is left alone: the VM is fine."""
    memory.release_task(store, task["uuid"])
    host, vm = task["other_config"].get("host"), task["other_config"].get("vm")
    if not host or not vm:
        return
    state_dir = Path(store.state_dir)
    rt = runtime.load(state_dir, host, vm)
    if rt is None or rt.task != task["uuid"] or rt.started:
        return
    with store.read() as txn:
        host_row = txn.get("host", host, HOST_FIELDS)
    backend = backend_for(state_dir, host_row) if host_row else None
    if backend is not None and not backend.is_live():
        backend = None
    teardown.release_vm(store, state_dir, backend, host, vm)


def reconcile_hosts(store: Store) -> list[str]:
    """A simulated host whose process was started and is gone has crashed: it is marked not
    live, its VMs are Halted and its reservations released. Returns the hosts found down."""
    from xetool.backends import simulator

    state_dir = Path(store.state_dir)
    down = []
    try:
        known = simulator.list_hosts(state_dir)
    except OSError:
        return down
    crashed = {h.uuid for h in known if not h.live}
    if not crashed:
        return down
    with store.read() as txn:
        rows = [r for r in txn.select("host", ["uuid", "live", "backend"]) if r["uuid"] in crashed and r["backend"] == "simulator"]
    for row in rows:
        with store.read() as txn:
            resident = txn.uuids("vm", {"resident_on": row["uuid"]})
        if not row["live"] and not resident:
            continue
        for vm in resident:
            teardown.release_vm(store, state_dir, None, row["uuid"], vm)
        for rt in runtime.all_on(state_dir, row["uuid"]):
            runtime.remove(state_dir, row["uuid"], rt.vm)
        memory.release_host(store, row["uuid"])
        with store.write() as txn:
            txn.update("host", row["uuid"], {"live": False})
        down.append(row["uuid"])
    return down


def mark_live(store: Store, host: str) -> None:
    with store.write() as txn:
        if not txn.must("host", host, ["live"])["live"]:
            txn.update("host", host, {"live": True})


__all__ = ["cleanup_dead_task", "reconcile_hosts", "mark_live"]
