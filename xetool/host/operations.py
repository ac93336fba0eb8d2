"""The rest of the lifecycle on the host: shutdown (clean, through control/shutdown, or hard),
reboot, pause, unpause; and devices plugged into and out of a running VM.

Each operation marks its object in the store (check and mark in one write transaction, so a
concurrent command gets OTHER_OPERATION_IN_PROGRESS), holds the VM's lock for the host work, and
always unmarks. Every stop releases what the start took, through `teardown`.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

from xetool import lifecycle, tasks
from xetool.backends.base import Backend
from xetool.devices import vbd, vif
from xetool.errors import XeError
from xetool.host import runtime, teardown
from xetool.host.backend import HOST_FIELDS, backend_for
from xetool.host.locks import vm_lock
from xetool.paths import host_dir
from xetool.records import record
from xetool.storage import file_sr
from xetool.store.db import Row, Store
from xetool.store.objects import sr_path
from xetool.xenstore.client import XsClient

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Iterator


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


def resident(store: Store, state_dir: Path, vm: str) -> tuple[Row, Row, Backend]:
    """The VM, its host and the host's backend; VM_BAD_POWER_STATE if it has no domain. The
    VM's row carries the domid of the domain found on the host by the VM's uuid (the domain
    handle), never the stored number alone; HOST_OFFLINE if the host does not answer."""
    with store.read() as txn:
        row = txn.must("vm", vm)
        if not row["resident_on"] or row["domid"] < 0:
            raise XeError("VM_BAD_POWER_STATE", vm, "running", row["power_state"].lower())
        host = txn.must("host", row["resident_on"], HOST_FIELDS)
    backend = backend_for(state_dir, host)
    if backend.reachability() != "live":
        raise XeError("HOST_OFFLINE", host["uuid"], name=host["name_label"], reason="it does not answer")
    info = backend.find_domain(vm)
    if info is None:
        raise XeError("VM_BAD_POWER_STATE", vm, "running", "halted (no domain on its host)")
    return {**row, "domid": info.domid}, host, backend


def before(store: Store, state_dir: Path, vm: str) -> None:
    """Before an operation on a running VM: the first touch of its host resyncs it, so that what
    the store says of the VM is what the host runs."""
    from xetool.master import resync

    resync.touch_vm_host(store, state_dir, vm)


def shutdown(store: Store, state_dir: Path, vm: str, force: bool, timeout: float, reason: str = "poweroff") -> str:
    """Clean: ask the guest through control/shutdown and wait (VM_SHUTDOWN_TIMEOUT); hard:
    destroy at once. Either way everything the start took is released and the VM is Halted."""
    op = "hard_shutdown" if force else "clean_shutdown"
    before(store, state_dir, vm)
    with operation(store, "vm", vm, op):
        row, host, backend = resident(store, state_dir, vm)
        with vm_lock(state_dir, vm):
            if not force:
                _clean_shutdown(backend, row, timeout, reason)
            problems = teardown.release_vm(store, state_dir, backend, host["uuid"], vm)
    return "; ".join(problems)


def _clean_shutdown(backend: Backend, vm: Row, timeout: float, reason: str) -> None:
    domid = vm["domid"]
    with XsClient(backend.xenstore_socket()) as xs:
        xs.write(f"/local/domain/{domid}/control/shutdown", reason)
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        info = backend.find_domain(vm["uuid"])
        if info is None or info.domid != domid or info.shutdown_reason:
            return
        if time.monotonic() >= deadline:
            raise XeError("VM_SHUTDOWN_TIMEOUT", vm["uuid"], timeout)
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def set_paused(store: Store, state_dir: Path, vm: str, paused: bool) -> None:
    before(store, state_dir, vm)
    with operation(store, "vm", vm, "pause" if paused else "unpause"):
        row, host, backend = resident(store, state_dir, vm)
        with vm_lock(state_dir, vm):
            (backend.pause if paused else backend.unpause)(row["domid"])
            with store.write() as txn:
                txn.update("vm", vm, {"power_state": "Paused" if paused else "Running"})
                lifecycle.update_allowed_operations(txn, "vm", vm)


# --- devices on a running VM ------------------------------------------------------------------------

@record
class _Live:
    """A device, its running VM and what the host holds for it, while a device op runs."""

    row: Row
    vm: Row
    host: Row
    backend: Backend
    rt: runtime.Runtime
    xs: XsClient


@contextmanager
def _device_operation(store: Store, state_dir: Path, cls: str, uuid: str, op: str) -> Iterator[_Live]:
    """Mark the device, lock its VM, reach its host; save the VM's runtime record afterwards."""
    with store.read() as txn:
        row = txn.must(cls, uuid)
    before(store, state_dir, row["VM"])
    with operation(store, cls, uuid, op):
        vm, host, backend = resident(store, state_dir, row["VM"])
        with vm_lock(state_dir, vm["uuid"]):
            rt = runtime.load(state_dir, host["uuid"], vm["uuid"]) or runtime.Runtime(vm["uuid"], host["uuid"])
            with XsClient(backend.xenstore_socket()) as xs:
                yield _Live(row, vm, host, backend, rt, xs)
            runtime.save(state_dir, rt)


def _set_attached(store: Store, cls: str, uuid: str, attached: bool, **more: str) -> None:
    with store.write() as txn:
        txn.update(cls, uuid, {"currently_attached": attached, **more})


def vbd_plug(store: Store, state_dir: Path, vbd_uuid: str) -> str:
    with _device_operation(store, state_dir, "vbd", vbd_uuid, "plug") as d:
        path = None
        if d.row["VDI"]:
            with store.read() as txn:
                vdi = txn.must("vdi", d.row["VDI"])
                path = file_sr.attach(vdi["SR"], sr_path(txn, vdi["SR"]), vdi["uuid"], vdi["location"])
        userdevice = int(d.row["userdevice"])
        disk = vbd.Disk(userdevice, path, d.row["mode"], d.row["type"], d.row["bootable"], vbd_uuid, d.row["unpluggable"])
        try:
            name, = vbd.plug(d.xs, d.backend, d.vm["domid"], d.rt.hvm, [disk])
        except BaseException:  # no half-plugged disk: both halves go again
            vbd.unplug(d.xs, d.backend, d.vm["domid"], userdevice, d.rt.hvm, vbd_uuid, force=True)
            raise
        d.rt.vbds[vbd_uuid] = userdevice
        # Attached before the plug mark goes: the disk is never held by neither, so a start of
        # another VM sharing it cannot slip in between.
        _set_attached(store, "vbd", vbd_uuid, True, device=name)
    return name


def vbd_unplug(store: Store, state_dir: Path, vbd_uuid: str, force: bool) -> None:
    with _device_operation(store, state_dir, "vbd", vbd_uuid, "unplug_force" if force else "unplug") as d:
        vbd.unplug(d.xs, d.backend, d.vm["domid"], int(d.row["userdevice"]), d.rt.hvm, vbd_uuid, force)
        d.rt.vbds.pop(vbd_uuid, None)
    _set_attached(store, "vbd", vbd_uuid, False)


def vif_plug(store: Store, state_dir: Path, vif_uuid: str) -> None:
    with _device_operation(store, state_dir, "vif", vif_uuid, "plug") as d:
        with store.read() as txn:
            net = txn.must("network", d.row["network"])
        d.backend.ensure_bridge(net["bridge"])
        if net["other_config"].get("is_guest_installer_network") == "true":
            vif.add_lease(host_dir(state_dir, d.host["uuid"]), net["bridge"], d.row["MAC"], d.vm["name_label"])
            d.rt.leases.append((net["bridge"], d.row["MAC"]))
        nic = vif.Nic(int(d.row["device"]), d.row["MAC"], net["bridge"], d.row["MTU"], vif_uuid)
        try:
            vif.plug(d.xs, d.backend, d.vm["domid"], [nic])
        except BaseException:  # no half-plugged interface, and no lease for it
            vif.unplug(d.xs, d.backend, d.vm["domid"], nic.device, vif_uuid, force=True)
            if (net["bridge"], nic.mac) in d.rt.leases:
                vif.remove_lease(host_dir(state_dir, d.host["uuid"]), net["bridge"], nic.mac)
                d.rt.leases.remove((net["bridge"], nic.mac))
            raise
        d.rt.vifs[vif_uuid] = nic.device
    _set_attached(store, "vif", vif_uuid, True)


def vif_unplug(store: Store, state_dir: Path, vif_uuid: str, force: bool) -> None:
    with _device_operation(store, state_dir, "vif", vif_uuid, "unplug") as d:
        vif.unplug(d.xs, d.backend, d.vm["domid"], int(d.row["device"]), vif_uuid, force)
        for bridge, mac in [lease for lease in d.rt.leases if lease[1] == d.row["MAC"]]:
            vif.remove_lease(host_dir(state_dir, d.host["uuid"]), bridge, mac)
            d.rt.leases.remove((bridge, mac))
        d.rt.vifs.pop(vif_uuid, None)
    _set_attached(store, "vif", vif_uuid, False)
