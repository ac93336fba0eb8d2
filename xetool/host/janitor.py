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
    """A simulated host whose process was started and is gone has crashed: resynchronised as a
    host that is down (its VMs Halted and released, each with a message; marked not live).
    A process that runs but does not answer is not a crash: nothing is assumed about it.
    Returns the hosts found down."""
    from xetool.backends import simulator
    from xetool.master import resync

    state_dir = Path(store.state_dir)
    down: list[str] = []
    try:
        known = simulator.list_hosts(state_dir)
    except OSError:
        return down
    crashed = {h.uuid for h in known if not h.live and h.pid is None}
    if not crashed:
        return down
    with store.read() as txn:
        rows = [r for r in txn.select("host", list(HOST_FIELDS) + ["live"]) if r["uuid"] in crashed and r["backend"] == "simulator"]
    for row in rows:
        with store.read() as txn:
            resident = txn.uuids("vm", {"resident_on": row["uuid"]})
        if not row["live"] and not resident and not runtime.all_on(state_dir, row["uuid"]):
            continue
        resync.resync_host(store, state_dir, row, backend_for(state_dir, row))
        down.append(row["uuid"])
    return down


__all__ = ["cleanup_dead_task", "reconcile_hosts"]
