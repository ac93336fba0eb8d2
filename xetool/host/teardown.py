"""Releasing everything a VM holds on its host: devices, device model and console server, leases,
the domain, the memory reservation. The master then records the VM as Halted.

One path on the host for a shutdown, a failed start's undo, the janitor after a killed command,
a resync's repair, and a host that crashed (where the domain and processes are already gone and
only the records remain).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from xetool import processes
from xetool.backends.base import Backend
from xetool.devices import console, domain, vbd, vif
from xetool.errors import XeError
from xetool.host import memory, runtime
from xetool.host.runtime import Runtime
from xetool.paths import host_dir
from xetool.host.side import HostSide
from xetool.xenstore.client import XsClient


def release_on_host(state_dir: Path, backend: Backend | None, rt: Runtime) -> list[str]:
    """Undo what `rt` records on a host; returns what could not be undone (best effort).

    The domain is found by the VM's uuid, never by the recorded domid alone: after the host
    restarted that number may be another VM's domain, which must not be touched. `backend` is
    None when the host is down (its domains and processes are gone with it)."""
    problems: list[str] = []
    _stop(rt.dm_pid, rt.dm_start)
    _stop(rt.console_pid, rt.console_start)
    hd = host_dir(state_dir, rt.host)
    if rt.domid >= 0:
        console.secret_file(hd, rt.domid).unlink(missing_ok=True)
    for bridge, mac in rt.leases:
        vif.remove_lease(hd, bridge, mac)
    shutil.rmtree(hd / "boot" / rt.vm, ignore_errors=True)  # a kernel the bootloader extracted
    if backend is None:
        _remove_empty_logs(hd, rt.domid)
        return problems
    try:
        info = backend.find_domain(rt.vm)
        domid = info.domid if info is not None else rt.domid
        if info is None and domid >= 0 and backend.domain_info(domid) is not None:
            domid = -1  # the recorded number belongs to another domain now
        _remove_empty_logs(hd, domid)
        with XsClient(backend.xenstore_socket()) as xs:
            if domid >= 0:
                for uuid, device in rt.vifs.items():
                    vif.unplug(xs, backend, domid, device, uuid, force=True)
                for uuid, userdevice in rt.vbds.items():
                    vbd.unplug(xs, backend, domid, userdevice, rt.hvm, uuid, force=True)
                if info is not None:
                    _stop_unrecorded_services(xs, domid, rt)
                    backend.destroy(domid)
                domain.remove_domain_entries(xs, domid, rt.vm)
            domain.remove_vm_entries(xs, rt.vm)
    except XeError as err:
        problems.append(err.render().replace("\n", "; "))
    return problems


def _stop(pid: int, started: str) -> None:
    """Stop a device model or console server, unless its pid now names another process."""
    if pid and (not started or processes.start_time(pid) == started):
        console.stop(pid)


def _stop_unrecorded_services(xs: XsClient, domid: int, rt: Runtime) -> None:
    """A start killed between spawning a service and recording it left its pid only in the
    domain's xenstore home; stop it if the process there is still that domain's service."""
    for key in ("image/device-model-pid", "vncterm-pid"):
        text = xs.read_or(f"{domain.home(domid)}/{key}") or ""
        pid = int(text) if text.isdigit() else 0
        if pid and pid not in (rt.dm_pid, rt.console_pid) and \
                processes.command_name(pid) in (f"qemu-dm-{domid}", f"vncterm-{domid}"):
            console.stop(pid)


def _remove_empty_logs(hd: Path, domid: int) -> None:
    """A start's service logs are kept only when something was written to them."""
    if domid < 0:
        return
    for name in (f"qemu-dm-{domid}.log", f"vncterm-{domid}.log"):
        log = hd / "logs" / name
        try:
            if log.stat().st_size == 0:
                log.unlink()
        except OSError:
            pass


def release_vm(side: HostSide, vm: str, backend: Backend | None, domid: int = -1) -> list[str]:
    """Everything a VM holds on the host (its runtime record, or, where the host keeps none or
    one of another domain, what `domid` names), its reservation too; what it held goes back to
    the other guests. Returns what could not be undone."""
    rt = runtime.load(side.state_dir, side.uuid, vm)
    if rt is None or (domid >= 0 and rt.domid not in (-1, domid)):
        rt = Runtime(vm, side.uuid, domid=domid, leases=rt.leases if rt else [])
    problems = release_on_host(side.state_dir, backend, rt)
    if rt.reservation:
        memory.release(side, [rt.reservation])
    runtime.remove(side.state_dir, side.uuid, vm)
    if backend is not None and rt.domid >= 0:  # what it held goes back to the others
        try:
            memory.rebalance(side, backend)
        except XeError as err:
            problems.append(err.render().replace("\n", "; "))
    return problems
