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
from typing import Iterator

from xetool import lifecycle, tasks
from xetool.backends.base import Backend
from xetool.devices import vbd, vif
from xetool.errors import XeError
from xetool.host import runtime, teardown
from xetool.host.backend import HOST_FIELDS, backend_for
from xetool.host.locks import vm_lock
from xetool.storage import file_sr
from xetool.store.db import Row, Store
from xetool.store.objects import sr_path
from xetool.xenstore.client import XsClient


@contextmanager
def operation(store: Store, cls: str, uuid: str, op: str, check_vm: str | None = None) -> Iterator[str]:
    """Check and mark `op` on the object (and create its task); always unmark and finish."""
    with store.write() as txn:
        row = txn.must(cls, uuid)
        if cls == "vm":
            lifecycle.assert_vm_operation_valid(txn, row, op)
        else:
            vm = txn.must("vm", row["VM"])
            err = (lifecycle.vbd_operation_error if cls == "vbd" else lifecycle.vif_operation_error)(row, vm, op)
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
    """The VM, its host and the host's backend; VM_BAD_POWER_STATE if it has no domain."""
    with store.read() as txn:
        row = txn.must("vm", vm)
        if not row["resident_on"] or row["domid"] < 0:
            raise XeError("VM_BAD_POWER_STATE", vm, "running", row["power_state"].lower())
        host = txn.must("host", row["resident_on"], HOST_FIELDS)
    return row, host, backend_for(state_dir, host)


def _live_backend(backend: Backend, host: Row) -> Backend:
    if not backend.is_live():
        raise XeError("HOST_OFFLINE", host["uuid"])
    return backend


def shutdown(store: Store, state_dir: Path, vm: str, force: bool, timeout: float, reason: str = "poweroff") -> str:
    """Clean: ask the guest through control/shutdown and wait (VM_SHUTDOWN_TIMEOUT); hard:
    destroy at once. Either way everything the start took is released and the VM is Halted."""
    op = "hard_shutdown" if force else "clean_shutdown"
    with operation(store, "vm", vm, op):
        row, host, backend = resident(store, state_dir, vm)
        with vm_lock(state_dir, vm):
            if not force and backend.is_live():
                _clean_shutdown(backend, row, timeout, reason)
            live = backend if backend.is_live() else None
            problems = teardown.release_vm(store, state_dir, live, host["uuid"], vm)
    return "; ".join(problems)


def _clean_shutdown(backend: Backend, vm: Row, timeout: float, reason: str) -> None:
    domid = vm["domid"]
    with XsClient(backend.xenstore_socket()) as xs:
        xs.write(f"/local/domain/{domid}/control/shutdown", reason)
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        info = backend.domain_info(domid)
        if info is None or info.uuid != vm["uuid"] or info.shutdown_reason:
            return
        if time.monotonic() >= deadline:
            raise XeError("VM_SHUTDOWN_TIMEOUT", vm["uuid"], timeout)
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def set_paused(store: Store, state_dir: Path, vm: str, paused: bool) -> None:
    with operation(store, "vm", vm, "pause" if paused else "unpause"):
        row, host, backend = resident(store, state_dir, vm)
        with vm_lock(state_dir, vm):
            _live_backend(backend, host)
            (backend.pause if paused else backend.unpause)(row["domid"])
            with store.write() as txn:
                txn.update("vm", vm, {"power_state": "Paused" if paused else "Running"})
                lifecycle.update_allowed_operations(txn, "vm", vm)


# --- devices on a running VM ------------------------------------------------------------------------

def vbd_plug(store: Store, state_dir: Path, vbd_uuid: str) -> str:
    with store.read() as txn:
        row = txn.must("vbd", vbd_uuid)
    with operation(store, "vbd", vbd_uuid, "plug"):
        vm, host, backend = resident(store, state_dir, row["VM"])
        with vm_lock(state_dir, vm["uuid"]):
            rt = runtime.load(state_dir, host["uuid"], vm["uuid"]) or runtime.Runtime(vm["uuid"], host["uuid"])
            path = None
            with store.read() as txn:
                if row["VDI"]:
                    vdi = txn.must("vdi", row["VDI"])
                    path = file_sr.attach(vdi["SR"], sr_path(txn, vdi["SR"]), vdi["uuid"], vdi["location"])
            userdevice = int(row["userdevice"])
            with XsClient(_live_backend(backend, host).xenstore_socket()) as xs:
                name = vbd.plug(xs, backend, vm["domid"], userdevice, rt.hvm, path, row["mode"], row["type"],
                                row["bootable"], vbd_uuid)
            rt.vbds[vbd_uuid] = userdevice
            runtime.save(state_dir, rt)
            with store.write() as txn:
                txn.update("vbd", vbd_uuid, {"currently_attached": True, "device": name})
    return name


def vbd_unplug(store: Store, state_dir: Path, vbd_uuid: str, force: bool) -> None:
    with store.read() as txn:
        row = txn.must("vbd", vbd_uuid)
    with operation(store, "vbd", vbd_uuid, "unplug_force" if force else "unplug"):
        vm, host, backend = resident(store, state_dir, row["VM"])
        with vm_lock(state_dir, vm["uuid"]):
            rt = runtime.load(state_dir, host["uuid"], vm["uuid"]) or runtime.Runtime(vm["uuid"], host["uuid"])
            with XsClient(_live_backend(backend, host).xenstore_socket()) as xs:
                vbd.unplug(xs, backend, vm["domid"], int(row["userdevice"]), rt.hvm, vbd_uuid, force)
            rt.vbds.pop(vbd_uuid, None)
            runtime.save(state_dir, rt)
            with store.write() as txn:
                txn.update("vbd", vbd_uuid, {"currently_attached": False})


def vif_plug(store: Store, state_dir: Path, vif_uuid: str) -> None:
    with store.read() as txn:
        row = txn.must("vif", vif_uuid)
        net = txn.must("network", row["network"])
    with operation(store, "vif", vif_uuid, "plug"):
        vm, host, backend = resident(store, state_dir, row["VM"])
        with vm_lock(state_dir, vm["uuid"]):
            rt = runtime.load(state_dir, host["uuid"], vm["uuid"]) or runtime.Runtime(vm["uuid"], host["uuid"])
            _live_backend(backend, host).ensure_bridge(net["bridge"])
            if net["other_config"].get("is_guest_installer_network") == "true":
                vif.add_lease(state_dir / "hosts" / host["uuid"], net["bridge"], row["MAC"], vm["name_label"])
                rt.leases.append((net["bridge"], row["MAC"]))
            with XsClient(backend.xenstore_socket()) as xs:
                vif.plug(xs, backend, vm["domid"], int(row["device"]), row["MAC"], net["bridge"], row["MTU"], vif_uuid)
            rt.vifs[vif_uuid] = int(row["device"])
            runtime.save(state_dir, rt)
            with store.write() as txn:
                txn.update("vif", vif_uuid, {"currently_attached": True})


def vif_unplug(store: Store, state_dir: Path, vif_uuid: str, force: bool) -> None:
    with store.read() as txn:
        row = txn.must("vif", vif_uuid)
        net = txn.must("network", row["network"])
    with operation(store, "vif", vif_uuid, "unplug"):
        vm, host, backend = resident(store, state_dir, row["VM"])
        with vm_lock(state_dir, vm["uuid"]):
            rt = runtime.load(state_dir, host["uuid"], vm["uuid"]) or runtime.Runtime(vm["uuid"], host["uuid"])
            with XsClient(_live_backend(backend, host).xenstore_socket()) as xs:
                vif.unplug(xs, backend, vm["domid"], int(row["device"]), vif_uuid, force)
            if (net["bridge"], row["MAC"]) in rt.leases:
                vif.remove_lease(state_dir / "hosts" / host["uuid"], net["bridge"], row["MAC"])
                rt.leases.remove((net["bridge"], row["MAC"]))
            rt.vifs.pop(vif_uuid, None)
            runtime.save(state_dir, rt)
            with store.write() as txn:
                txn.update("vif", vif_uuid, {"currently_attached": False})
