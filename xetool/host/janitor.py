"""Cleaning up after the dead: a command killed half-way through a start, and a simulated host
that crashed. Registered with tasks.reap_dead_tasks, and run by `reconcile_hosts`. The master's
side: what the host holds is asked for and released through the host's calls."""

from __future__ import annotations

from pathlib import Path

from xetool.errors import XeError
from xetool.host.backend import HOST_FIELDS
from xetool.store.db import Row, Store


def cleanup_dead_task(store: Store, task: Row) -> None:
    """A start whose process died: if it finished on the host, its recorded result goes into
    the store (the VM runs); otherwise what it built there (domain, devices, processes, leases,
    reservation) is released. A host that does not answer is left to its next resync."""
    from xetool.master import host_half

    with store.write() as txn:
        txn.db.execute("DELETE FROM reservation WHERE task = ? AND domid = -1", (task["uuid"],))
    host, vm = task["other_config"].get("host"), task["other_config"].get("vm")
    if not host or not vm:
        return
    with store.read() as txn:
        host_row = txn.get("host", host, HOST_FIELDS)
    if host_row is None:
        return
    try:
        answer = host_half.client(store, Path(store.state_dir), host_row).call("vm_recover", vm=vm, task=task["uuid"])
    except XeError:
        return
    if answer["result"] is not None:
        host_half.record_start(store, vm, host, answer["result"])
        return
    with store.write() as txn:
        txn.db.execute("DELETE FROM reservation WHERE task = ?", (task["uuid"],))
    if answer["released"]:
        host_half.halt_in_store(store, vm)


def reconcile_hosts(store: Store) -> list[str]:
    """A simulated host of this machine whose process was started and is gone has crashed: resynchronised as a
    host that is down (its VMs Halted and released, each with a message; marked not live).
    A process that runs but does not answer is not a crash: nothing is assumed about it.
    Returns the hosts found down."""
    from xetool.backends import simulator
    from xetool.host import runtime
    from xetool.master import host_half, resync, ssh

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
        rows = [r for r in txn.select("host", list(HOST_FIELDS) + ["live"])
                if r["uuid"] in crashed and r["backend"] == "simulator" and not ssh.is_remote(r)]
    for row in rows:
        with store.read() as txn:
            resident = txn.uuids("vm", {"resident_on": row["uuid"]})
        if not row["live"] and not resident and not runtime.all_on(state_dir, row["uuid"]):
            continue
        resync.resync_host(store, host_half.client(store, state_dir, row))
        down.append(row["uuid"])
    return down


__all__ = ["cleanup_dead_task", "reconcile_hosts"]
