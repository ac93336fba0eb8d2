"""The rest of the lifecycle, the master's side: shutdown (clean, through control/shutdown, or
hard), reboot, pause, unpause; devices plugged into and out of a running VM; memory ranges.

Each operation marks its object in the store (check and mark in one write transaction, so a
concurrent command gets OTHER_OPERATION_IN_PROGRESS), holds the VM's lock on the master, sends
the host half its request (host/handlers.py) and records the answer, and always unmarks.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from xetool import lifecycle, tasks
from xetool.errors import XeError
from xetool.host.backend import HOST_FIELDS
from xetool.host.locks import vm_lock
from xetool.master.host_half import HostClient, client, halt_in_store
from xetool.store.db import Row, Store

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any


@contextmanager
def operation(store: Store, cls: str, uuid: str, op: str, check_vm: str | None = None) -> Iterator[str]:
    """Check and mark `op` on the object (and create its task); always unmark and finish."""
    with store.write() as txn:
        row = txn.must(cls, uuid)
        if cls == "vm":
            lifecycle.assert_vm_operation_valid(txn, row, op)
        else:
            vm = txn.must("vm", row["VM"])
            if cls == "vbd":  # the disk's checks too, decided under the mark that others see
                err = lifecycle.vbd_attach_error(txn, row, vm, op)
            else:
                err = lifecycle.vif_operation_error(row, vm, op)
            if err is not None:
                raise err
        task = tasks.create(txn, f"{cls.upper()}.{op}", f"{op} {uuid}", **{cls: uuid})
        lifecycle.mark(txn, cls, uuid, task, op)
    error: BaseException | None = None
    try:
        yield task
    except BaseException as err:
        error = err
        raise
    finally:
        with store.write() as txn:
            lifecycle.unmark(txn, cls, uuid, task)
        tasks.finish(store, task, error)


def resident(store: Store, state_dir: Path, vm: str) -> tuple[Row, HostClient]:
    """The VM and a client of its host; VM_BAD_POWER_STATE if the store gives it no domain.
    The host finds the domain by the VM's uuid (the domain handle), never by the stored domid."""
    with store.read() as txn:
        row = txn.must("vm", vm)
        if not row["resident_on"] or row["domid"] < 0:
            raise XeError("VM_BAD_POWER_STATE", vm, "running", row["power_state"].lower())
        host = txn.must("host", row["resident_on"], HOST_FIELDS)
    return row, client(store, state_dir, host)


def before(store: Store, state_dir: Path, vm: str) -> None:
    """Before an operation on a running VM: the first touch of its host resyncs it, so that what
    the store says of the VM is what the host runs."""
    from xetool.master import resync

    resync.touch_vm_host(store, state_dir, vm)


def shutdown(store: Store, state_dir: Path, vm: str, force: bool, timeout: float, reason: str = "poweroff") -> str:
    """Clean: the guest is asked and waited for (VM_SHUTDOWN_TIMEOUT); hard: destroyed at once.
    Either way everything the start took is released and the VM is Halted."""
    op = "hard_shutdown" if force else "clean_shutdown"
    before(store, state_dir, vm)
    with operation(store, "vm", vm, op):
        row, host = resident(store, state_dir, vm)
        with vm_lock(state_dir, vm):
            problems = host.call("vm_shutdown", vm=vm, clean=not force, timeout=timeout, reason=reason)["problems"]
            halt_in_store(store, vm)
    return "; ".join(problems)


def set_paused(store: Store, state_dir: Path, vm: str, paused: bool) -> None:
    before(store, state_dir, vm)
    with operation(store, "vm", vm, "pause" if paused else "unpause"):
        row, host = resident(store, state_dir, vm)
        with vm_lock(state_dir, vm):
            domid = host.call("vm_set_paused", vm=vm, paused=paused)["domid"]
            with store.write() as txn:
                txn.update("vm", vm, {"power_state": "Paused" if paused else "Running", "domid": domid})
                lifecycle.update_allowed_operations(txn, "vm", vm)


# --- devices on a running VM ------------------------------------------------------------------------

@contextmanager
def _device_operation(store: Store, state_dir: Path, cls: str, uuid: str, op: str) -> Iterator[tuple[Row, Row, HostClient]]:
    """Mark the device, lock its VM, reach its host."""
    with store.read() as txn:
        row = txn.must(cls, uuid)
    before(store, state_dir, row["VM"])
    with operation(store, cls, uuid, op):
        vm, host = resident(store, state_dir, row["VM"])
        with vm_lock(state_dir, vm["uuid"]):
            yield row, vm, host


def _set_attached(store: Store, cls: str, uuid: str, attached: bool, **more: str) -> None:
    with store.write() as txn:
        txn.update(cls, uuid, {"currently_attached": attached, **more})


def vbd_plug(store: Store, state_dir: Path, vbd_uuid: str) -> str:
    from xetool.master.host_half import disk_request

    with _device_operation(store, state_dir, "vbd", vbd_uuid, "plug") as (row, vm, host):
        with store.read() as txn:
            disk = disk_request(txn, row)
        name = str(host.call("vbd_plug", vm=vm["uuid"], vbd=disk)["device"])
        # Attached before the plug mark goes: the disk is never held by neither, so a start of
        # another VM sharing it cannot slip in between.
        _set_attached(store, "vbd", vbd_uuid, True, device=name)
    return name


def vbd_unplug(store: Store, state_dir: Path, vbd_uuid: str, force: bool) -> None:
    with _device_operation(store, state_dir, "vbd", vbd_uuid, "unplug_force" if force else "unplug") as (row, vm, host):
        host.call("vbd_unplug", vm=vm["uuid"], vbd=vbd_uuid, userdevice=int(row["userdevice"]), force=force)
    _set_attached(store, "vbd", vbd_uuid, False)


def vif_plug(store: Store, state_dir: Path, vif_uuid: str) -> None:
    from xetool.master.host_half import vif_request

    with _device_operation(store, state_dir, "vif", vif_uuid, "plug") as (row, vm, host):
        with store.read() as txn:
            nic = vif_request(txn, row)
        host.call("vif_plug", vm=vm["uuid"], vif=nic, name_label=vm["name_label"])
    _set_attached(store, "vif", vif_uuid, True)


def vif_unplug(store: Store, state_dir: Path, vif_uuid: str, force: bool) -> None:
    with _device_operation(store, state_dir, "vif", vif_uuid, "unplug") as (row, vm, host):
        host.call("vif_unplug", vm=vm["uuid"], vif=vif_uuid, device=int(row["device"]), mac=row["MAC"], force=force)
    _set_attached(store, "vif", vif_uuid, False)


# --- memory --------------------------------------------------------------------------------------------

def set_memory_dynamic_range(store: Store, state_dir: Path, vm: str, lo: int, hi: int) -> None:
    """VM.set_memory_dynamic_range (bytes): checked and marked as xapi does; a halted VM's record
    changes; a running VM's target moves into the new range through its host's broker first."""
    from xetool import constraints

    with store.read() as txn:
        row = txn.must("vm", vm)
    new = {"memory_dynamic_min": lo, "memory_dynamic_max": hi}
    _check_order(row, new)
    with operation(store, "vm", vm, "changing_dynamic_range"):
        if row["power_state"] == "Halted":
            with store.write() as txn:
                constraints.check_update(txn, "vm", txn.must("vm", vm), new)
                txn.update("vm", vm, new)
            return
        row, host = resident(store, state_dir, vm)
        host.call("vm_set_memory_dynamic_range", vm=vm, lo_kib=lo // 1024, hi_kib=hi // 1024)
        with store.write() as txn:  # checked above; a running VM's range may change (xapi)
            txn.update("vm", vm, new)


def set_memory_limits(store: Store, state_dir: Path, vm: str, values: dict[str, int]) -> None:
    """VM.set_memory_limits: all four at once, on a halted VM (xapi's changing_memory_limits)."""
    from xetool import constraints

    with operation(store, "vm", vm, "changing_memory_limits"):
        with store.write() as txn:
            constraints.check_update(txn, "vm", txn.must("vm", vm), values)
            txn.update("vm", vm, values)


def _check_order(row: dict[str, Any], new: dict[str, int]) -> None:
    from xetool.constraints import MEMORY

    values = [new.get(m, row[m]) for m in MEMORY]
    if any(v < 0 for v in values) or values != sorted(values):
        raise XeError("MEMORY_CONSTRAINT_VIOLATION_ORDER")
