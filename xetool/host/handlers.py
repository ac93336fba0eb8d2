"""The host half of every operation but vm-start (host/vm_start.py): one function per call of
host/calls.py, each working from its request and the host itself (hypervisor, xenstore, the
host's own files), never from the master's store. Each answers plain JSON values."""

from __future__ import annotations

import time

from xetool.errors import XeError
from xetool.host import memory, runtime, teardown
from xetool.host.locks import host_vm_lock
from xetool.host.side import HostSide
from xetool.records import asdict

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any

    from xetool.backends.base import Backend, DomainInfo

    Args = dict[str, Any]
    Answer = dict[str, Any]


def hello(side: HostSide, args: Args) -> Answer:
    from xetool import __version__
    from xetool.host.calls import PROTOCOL

    return {"protocol": PROTOCOL, "xetool": __version__, "state_dir": str(side.state_dir)}


# --- what the host holds, for a resync ----------------------------------------------------------------

def inventory(side: HostSide, args: Args) -> Answer:
    from xetool.devices import vif
    from xetool.host.inventory import half_built

    if args["start"]:
        side.backend.ensure_running()
    state = side.backend.reachability()
    out: Answer = {"state": state, "boot_id": "", "domains": {}, "unfinished": []}
    if state == "live":
        backend = side.backend
        domains = backend.domains_by_uuid()
        out["boot_id"] = backend.boot_id()
        out["domains"] = {u: asdict(d) for u, d in domains.items()}
        out["unfinished"] = sorted(half_built(backend, list(domains.values())))
    ledger = memory.load_ledger(side)
    out["reservations"] = [{"id": rid, **r} for rid, r in ledger.reservations.items()]
    out["runtimes"] = [{"vm": rt.vm, "task": rt.task, "domid": rt.domid, "leases": rt.leases}
                       for rt in runtime.all_on(side.state_dir, side.uuid)]
    leases = side.dir / "dnsmasq"
    out["leases"] = {f.stem: vif.leases_file(side.dir, f.stem).read_text().splitlines()
                     for f in sorted(leases.glob("*.hosts"))} if leases.is_dir() else {}
    return out


def domain_from(data: dict[str, Any]) -> DomainInfo:
    from xetool.backends.base import DomainInfo

    return DomainInfo(**data)


def remove_lease(side: HostSide, args: Args) -> Answer:
    from xetool.devices import vif

    return {"removed": bool(vif.remove_lease(side.dir, args["bridge"], args["mac"]))}


# --- releasing ------------------------------------------------------------------------------------------

def vm_release(side: HostSide, args: Args) -> Answer:
    vm = args["vm"]
    try:
        lock = host_vm_lock(side.dir, vm).acquire(timeout=0 if args["nowait"] else 120.0)
    except XeError:
        if args["nowait"]:
            return {"released": False, "problems": []}  # another process works on it: look again later
        raise
    try:
        problems = teardown.release_vm(side, vm, side.live_backend(), int(args["domid"]))
    finally:
        lock.release()
    return {"released": True, "problems": problems}


def vm_recover(side: HostSide, args: Args) -> Answer:
    """A start whose master died: its recorded result if it finished on the host (the master
    records it), else what it left here released (a finished start's VM is left alone)."""
    from xetool.host.calls import recorded

    vm, task = args["vm"], args["task"]
    done = recorded(side, task)
    if done is not None:
        return {"result": done, "released": False}
    memory.release_task(side, task)
    rt = runtime.load(side.state_dir, side.uuid, vm)
    if rt is None or rt.task != task or rt.started:
        return {"result": None, "released": False}
    with host_vm_lock(side.dir, vm):
        teardown.release_vm(side, vm, side.live_backend())
    return {"result": None, "released": True}


def memory_release_task(side: HostSide, args: Args) -> Answer:
    return {"released": memory.release_task(side, args["task"])}


def memory_release(side: HostSide, args: Args) -> Answer:
    return {"released": memory.release(side, list(args["ids"]))}


def memory_free(side: HostSide, args: Args) -> Answer:
    if side.live_backend() is None:
        raise side.offline()
    return {"available_kib": memory.free_kib(side)}


def vm_set_memory_dynamic_range(side: HostSide, args: Args) -> Answer:
    backend, info = _running(side, args["vm"])
    return {"target_kib": memory.set_dynamic_range(side, backend, args["vm"], info.domid, int(args["lo_kib"]),
                                                   int(args["hi_kib"]))}


# --- a running VM ---------------------------------------------------------------------------------------

def _running(side: HostSide, vm: str) -> tuple[Backend, DomainInfo]:
    """The VM's domain, found by its uuid (the domain handle), never by a stored domid."""
    backend = side.live_backend()
    if backend is None:
        raise side.offline()
    info = backend.find_domain(vm)
    if info is None:
        raise XeError("VM_BAD_POWER_STATE", vm, "running", "halted (no domain on its host)")
    return backend, info


def vm_shutdown(side: HostSide, args: Args) -> Answer:
    """Clean: ask the guest through control/shutdown and wait (VM_SHUTDOWN_TIMEOUT); hard:
    destroy at once. Either way everything the start took is released."""
    vm = args["vm"]
    with host_vm_lock(side.dir, vm):
        backend, info = _running(side, vm)
        if args["clean"]:
            _clean_shutdown(backend, vm, info.domid, float(args["timeout"]), args["reason"])
        return {"problems": teardown.release_vm(side, vm, backend)}


def _clean_shutdown(backend: Backend, vm: str, domid: int, timeout: float, reason: str) -> None:
    from xetool.xenstore.client import XsClient

    with XsClient(backend.xenstore_socket()) as xs:
        xs.write(f"/local/domain/{domid}/control/shutdown", reason)
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        info = backend.find_domain(vm)
        if info is None or info.domid != domid or info.shutdown_reason:
            return
        if time.monotonic() >= deadline:
            raise XeError("VM_SHUTDOWN_TIMEOUT", vm, timeout)
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def vm_set_paused(side: HostSide, args: Args) -> Answer:
    vm = args["vm"]
    with host_vm_lock(side.dir, vm):
        backend, info = _running(side, vm)
        (backend.pause if args["paused"] else backend.unpause)(info.domid)
    return {"domid": info.domid}


def _device_op(side: HostSide, vm: str):  # type: ignore[no-untyped-def]
    """The VM's lock, domain, runtime record and xenstore, for a device plug or unplug."""
    from contextlib import contextmanager

    from xetool.xenstore.client import XsClient

    @contextmanager
    def run():  # type: ignore[no-untyped-def]
        with host_vm_lock(side.dir, vm):
            backend, info = _running(side, vm)
            rt = runtime.load(side.state_dir, side.uuid, vm) or runtime.Runtime(vm, side.uuid)
            with XsClient(backend.xenstore_socket()) as xs:
                yield backend, info.domid, rt, xs
            runtime.save(side.state_dir, rt)
    return run()


def vbd_plug(side: HostSide, args: Args) -> Answer:
    from pathlib import Path

    from xetool.devices import vbd
    from xetool.storage import file_sr

    d = args["vbd"]
    with _device_op(side, args["vm"]) as (backend, domid, rt, xs):
        path: Path | None = None
        if d["vdi"]:
            path = file_sr.attach(d["sr"], d["sr_path"], d["vdi"], d["location"])
        userdevice = int(d["userdevice"])
        disk = vbd.Disk(userdevice, path, d["mode"], d["type"], d["bootable"], d["uuid"], d["unpluggable"])
        try:
            name, = vbd.plug(xs, backend, domid, rt.hvm, [disk])
        except BaseException:  # no half-plugged disk: both halves go again
            vbd.unplug(xs, backend, domid, userdevice, rt.hvm, d["uuid"], force=True)
            raise
        rt.vbds[d["uuid"]] = userdevice
    return {"device": name}


def vbd_unplug(side: HostSide, args: Args) -> Answer:
    from xetool.devices import vbd

    uuid = args["vbd"]
    with _device_op(side, args["vm"]) as (backend, domid, rt, xs):
        vbd.unplug(xs, backend, domid, int(args["userdevice"]), rt.hvm, uuid, bool(args["force"]))
        rt.vbds.pop(uuid, None)
    return {}


def vif_plug(side: HostSide, args: Args) -> Answer:
    from xetool.devices import vif

    v = args["vif"]
    with _device_op(side, args["vm"]) as (backend, domid, rt, xs):
        backend.ensure_bridge(v["bridge"])
        if v["guest_installer"]:
            vif.add_lease(side.dir, v["bridge"], v["mac"], args["name_label"])
            rt.leases.append((v["bridge"], v["mac"]))
        nic = vif.Nic(int(v["device"]), v["mac"], v["bridge"], int(v["mtu"]), v["uuid"])
        try:
            vif.plug(xs, backend, domid, [nic])
        except BaseException:  # no half-plugged interface, and no lease for it
            vif.unplug(xs, backend, domid, nic.device, nic.name, force=True)
            if (nic.bridge, nic.mac) in rt.leases:
                vif.remove_lease(side.dir, nic.bridge, nic.mac)
                rt.leases.remove((nic.bridge, nic.mac))
            raise
        rt.vifs[nic.name] = nic.device
    return {}


def vif_unplug(side: HostSide, args: Args) -> Answer:
    from xetool.devices import vif

    uuid, mac = args["vif"], args["mac"]
    with _device_op(side, args["vm"]) as (backend, domid, rt, xs):
        vif.unplug(xs, backend, domid, int(args["device"]), uuid, bool(args["force"]))
        for bridge, m in [lease for lease in rt.leases if lease[1] == mac]:
            vif.remove_lease(side.dir, bridge, m)
            rt.leases.remove((bridge, m))
        rt.vifs.pop(uuid, None)
    return {}


# --- looking inside ---------------------------------------------------------------------------------------

def xenstore_ls(side: HostSide, args: Args) -> Answer:
    """What `xenstore-ls -f` prints, through xetool's own client (no xenstore-utils needed)."""
    from xetool.xenstore.client import XsClient

    backend = side.live_backend()
    if backend is None:
        raise side.offline()
    lines: list[str] = []
    with XsClient(backend.xenstore_socket()) as xs:
        def walk(path: str) -> None:
            for child in xs.ls(path):
                sub = f"{path.rstrip('/')}/{child}"
                lines.append(f'{sub} = "{xs.read_or(sub) or ""}"')
                walk(sub)
        walk(args["path"] or "/local/domain")
    return {"lines": lines}


def console(side: HostSide, args: Args) -> Answer:
    """The port the VM's console listens on (127.0.0.1 of this host) and its password."""
    from xetool.devices import console as consoles
    from xetool.devices import vncauth

    vm = args["vm"]
    _, info = _running(side, vm)
    rt = runtime.load(side.state_dir, side.uuid, vm)
    if rt is None or not rt.vnc_port:
        raise XeError("OPERATION_NOT_ALLOWED", "the VM has no console server")
    secret = consoles.secret_file(side.dir, rt.domid)
    try:
        password = vncauth.read_password(str(secret))
    except OSError as err:
        raise XeError("FILE_NOT_READABLE", secret, err.strerror) from None
    return {"port": rt.vnc_port, "password": password, "domid": info.domid, "secret": str(secret)}


# --- the host's own process (host-sim-list, host-sim-stop, host-xenstore-socket) ------------------------

def host_process(side: HostSide, args: Args) -> Answer:
    if side.host.get("backend") != "simulator":
        return {"state": side.backend.reachability(), "pid": -1, "xenstore_socket": side.backend.xenstore_socket()}
    from xetool.backends import simulator

    status = {s.uuid: s for s in simulator.list_hosts(side.state_dir)}.get(side.uuid)
    return {"state": "running" if status and status.live else ("stopped" if status else "not-started"),
            "pid": status.pid if status and status.pid else -1,
            "xenstore_socket": simulator.xenstore_socket_path(side.state_dir, side.uuid)}


def host_stop(side: HostSide, args: Args) -> Answer:
    if side.host.get("backend") != "simulator":
        raise XeError("OPERATION_NOT_ALLOWED", f"host {side.name} is a real Xen host, not a simulated one")
    from xetool.backends import simulator

    return {"stopped": simulator.stop_host(side.state_dir, side.uuid)}


# --- a file SR's disks, for an SR that only remote hosts see (storage/disks.py) --------------------------

def vdi_create(side: HostSide, args: Args) -> Answer:
    from xetool.storage import file_sr

    return {"location": file_sr.create(args["sr"], args["sr_path"], args["vdi"], int(args["size"]))}


def vdi_destroy(side: HostSide, args: Args) -> Answer:
    from xetool.storage import file_sr

    file_sr.destroy(args["sr"], args["sr_path"], args["location"])
    return {}
