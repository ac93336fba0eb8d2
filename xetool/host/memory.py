"""The host's memory broker (squeezed's role): reservations between a VM's dynamic minimum and
maximum (plus its overhead), serialised per host, each owned by the task that made it.

Free memory = what the hypervisor reports free − reservations not yet handed to a domain − the
broker's own reserve. A reservation is released on failure and deleted when it is handed to the
domain (the domain's memory then shows in the hypervisor's own figure).
"""

from __future__ import annotations

import time
import uuid as uuidlib
from pathlib import Path

from xetool.backends.base import Backend
from xetool.errors import XeError
from xetool.host.locks import broker_lock
from xetool.store.db import Store

RESERVE_KIB = 72 * 1024  # squeezed's low-memory emergency pool + extra kept back (xapi reference 3.3)


def outstanding_kib(store: Store, host: str) -> int:
    with store.read() as txn:
        row = txn.db.execute("SELECT COALESCE(SUM(kib), 0) FROM reservation WHERE host = ? AND domid = -1",
                             (host,)).fetchone()
    return int(row[0])


def free_kib(store: Store, backend: Backend, host: str) -> int:
    """What a new reservation could get now (host-compute-free-memory, in KiB)."""
    return max(0, backend.physinfo().free_memory_kib - outstanding_kib(store, host) - RESERVE_KIB)


def reserve(store: Store, state_dir: Path, backend: Backend, host: str, vm: str, task: str,
            min_kib: int, max_kib: int) -> tuple[str, int]:
    """Reserve as much of [min_kib, max_kib] as is free; HOST_NOT_ENOUGH_FREE_MEMORY (bytes) if
    not even min_kib is. Returns (reservation id, KiB reserved)."""
    with broker_lock(state_dir, host):
        free = free_kib(store, backend, host)
        if free < min_kib:
            raise XeError("HOST_NOT_ENOUGH_FREE_MEMORY", min_kib * 1024, free * 1024)
        amount = min(max_kib, free)
        rid = str(uuidlib.uuid4())
        with store.write() as txn:
            txn.db.execute("INSERT INTO reservation (id, host, vm, task, kib, domid, created) VALUES (?, ?, ?, ?, ?, -1, ?)",
                           (rid, host, vm, task, amount, time.time()))
    return rid, amount


def transfer_to_domain(store: Store, rid: str) -> None:
    """The domain now holds the memory: the reservation has done its job."""
    with store.write() as txn:
        txn.db.execute("DELETE FROM reservation WHERE id = ?", (rid,))


def release(store: Store, rid: str) -> None:
    with store.write() as txn:
        txn.db.execute("DELETE FROM reservation WHERE id = ?", (rid,))


def release_task(store: Store, task: str) -> int:
    """Release every reservation a (dead) task made; returns how many."""
    with store.write() as txn:
        return txn.db.execute("DELETE FROM reservation WHERE task = ?", (task,)).rowcount


def release_host(store: Store, host: str) -> int:
    """A crashed host's reservations are gone with it."""
    with store.write() as txn:
        return txn.db.execute("DELETE FROM reservation WHERE host = ?", (host,)).rowcount
