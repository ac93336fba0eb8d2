"""The host agent's calls, declared once: the master's client, the agent's dispatcher and the
tests all read this table (as ganeti's rpc_defs), so the local and remote host halves cannot
drift apart.

A request is one JSON object: {"id", "call", "host" (the host's record: what its backend is
built from), "env" (fault plan and timeouts, host/env.py), "args"}. While it runs the host sends
events ({"id", "event": "step" | "done" | "failed" | "undo" | "memory", ...}); it ends with {"id",
"result": {...}} or {"id", "error": {"code", "fields"}}, a registry error. docs/agent-protocol.md
describes the wire format; `dispatch` runs one request wherever the host half runs.
"""

from __future__ import annotations

import json
from pathlib import Path

from xetool.errors import XeError
from xetool.records import record

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from xetool.host.side import HostSide

    Emit = Callable[[dict[str, Any]], None]

PROTOCOL = 1  # the version of this table and its messages; an agent of another version is refused


@record(frozen=True)
class Call:
    name: str
    handler: str  # "module:function", imported when the call is first made
    args: tuple[str, ...]  # what the request's args must hold
    answer: tuple[str, ...]  # what the result holds
    doc: str
    by_task: bool = False  # a repeated request with the same task answers the recorded result


def _c(name: str, handler: str, args: str, answer: str, doc: str, by_task: bool = False) -> Call:
    return Call(name, handler, tuple(args.split()), tuple(answer.split()), doc, by_task)


_H = "xetool.host.handlers:"

CALLS: dict[str, Call] = {c.name: c for c in (
    _c("hello", _H + "hello", "", "protocol xetool state_dir",
       "The agent's protocol version and xetool version; sent first on every connection."),
    _c("inventory", _H + "inventory", "start", "state boot_id domains unfinished reservations runtimes leases",
       "For a resync: live, down or unresponsive; the boot id; the guest domains by VM uuid; the "
       "domids no start finished building; the broker's outstanding reservations; the runtime "
       "records (VM, task, domid, leases) and DHCP lease lines (by bridge) it keeps. `start` "
       "starts a simulated host that does not run."),
    _c("vm_start", "xetool.host.vm_start:handle",
       "vm record boot_record hvm overhead userdevices disks vifs dm_nics paused force task",
       "domid devices attached_vbds attached_vifs vnc_port start_time memory_actual vcpus power_state "
       "bios_strings ha_always_run boot_record",
       "The seed's host half of vm-start, from a self-contained request.", by_task=True),
    _c("vm_recover", _H + "vm_recover", "vm task", "result released",
       "After the master lost a start (its process died): the start's recorded result, or what "
       "it left on the host released."),
    _c("vm_release", _H + "vm_release", "vm nowait domid", "released problems",
       "Release everything a VM holds on the host (its domain, devices, services, leases, "
       "reservation). `nowait`: give up at once (released false) if another process holds the "
       "VM; `domid`: the domain to destroy when the host's record names another (or none)."),
    _c("vm_shutdown", _H + "vm_shutdown", "vm clean timeout reason", "problems",
       "Shut a VM down (clean: through control/shutdown, bounded; else at once) and release "
       "everything it held."),
    _c("vm_set_paused", _H + "vm_set_paused", "vm paused", "domid", "Pause or unpause a VM's domain."),
    _c("vbd_plug", _H + "vbd_plug", "vm vbd", "device", "Plug a disk into a running VM."),
    _c("vbd_unplug", _H + "vbd_unplug", "vm vbd userdevice force", "", "Unplug a disk from a running VM."),
    _c("vif_plug", _H + "vif_plug", "vm vif name_label", "", "Plug a network interface into a running VM."),
    _c("vif_unplug", _H + "vif_unplug", "vm vif device mac force", "", "Unplug a network interface."),
    _c("memory_free", _H + "memory_free", "", "available_kib",
       "What a new reservation could get now (host-compute-free-memory), in KiB."),
    _c("memory_release_task", _H + "memory_release_task", "task", "released",
       "Release the reservations a task made (its process died)."),
    _c("memory_release", _H + "memory_release", "ids", "released", "Release reservations by id."),
    _c("vm_set_memory_dynamic_range", _H + "vm_set_memory_dynamic_range", "vm lo_kib hi_kib", "target_kib",
       "A running VM's new dynamic range, through the host's memory broker."),
    _c("remove_lease", _H + "remove_lease", "bridge mac", "removed", "Remove one DHCP lease line."),
    _c("xenstore_ls", _H + "xenstore_ls", "path", "lines", "`xenstore-ls -f` of a subtree."),
    _c("console", _H + "console", "vm", "port password domid secret", "Where a VM's VNC console listens on the host, and its password."),
    _c("host_process", _H + "host_process", "", "state pid xenstore_socket",
       "The host's own process: a simulated host's running, stopped (it ran and is gone) or not-started, "
       "and its pid; a Xen host's xenstored state. And its xenstore socket, on the host."),
    _c("vdi_create", _H + "vdi_create", "sr sr_path vdi size", "location",
       "Make a disk's sparse file in a file SR's directory on the host; its location (file name)."),
    _c("vdi_destroy", _H + "vdi_destroy", "sr sr_path location", "", "Remove a disk's file from a file SR on the host."),
    _c("host_stop", _H + "host_stop", "", "stopped",
       "Stop a simulated host's process (to its VMs, a crash); refused for a Xen host."),
)}


def error_message(err: XeError) -> dict[str, Any]:
    return {"code": err.code, "fields": dict(err.params)}


def error_from(message: dict[str, Any]) -> XeError:
    return XeError(str(message.get("code", "INTERNAL_ERROR")), **{str(k): v for k, v in (message.get("fields") or {}).items()})


def dispatch(state_dir: Path, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """Run one request on this host; returns its final message (result or error). Never raises
    for a registry error: it is the answer."""
    ident = request.get("id", 0)
    try:
        return {"id": ident, "result": _run(state_dir, request, emit)}
    except XeError as err:
        return {"id": ident, "error": error_message(err)}


def _run(state_dir: Path, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    name = request.get("call")
    call = CALLS.get(name) if isinstance(name, str) else None
    if call is None:
        raise XeError("MESSAGE_METHOD_UNKNOWN", name)
    args = request.get("args") or {}
    missing = [a for a in call.args if a not in args]
    if missing:
        raise XeError("MESSAGE_PARAMETER_COUNT_MISMATCH", call.name, " ".join(call.args), " ".join(sorted(args)))
    from xetool.host import env
    from xetool.host.side import HostSide

    side = HostSide(state_dir, request.get("host") or {}, emit)
    module, _, func = call.handler.partition(":")
    import importlib

    handler = getattr(importlib.import_module(module), func)
    with env.applied(request.get("env") or {}):
        if call.by_task:
            done = recorded(side, args["task"])
            if done is not None:
                return done
        answer: dict[str, Any] = handler(side, args)
    missing = [a for a in call.answer if a not in answer]
    if missing:  # the table is the contract: a handler that breaks it is a bug, reported as one
        raise XeError("INTERNAL_ERROR", f"the host's {call.name} answered without {', '.join(missing)}")
    return answer


# --- a start's result, kept by task on the host --------------------------------------------------

def _journal(side: HostSide, task: str) -> Path:
    return side.dir / "tasks" / f"{task}.json"


def record_result(side: HostSide, task: str, result: dict[str, Any]) -> None:
    """Keep a finished operation's result, so that a repeated request (the connection dropped
    after the host finished) or the janitor (the master died) gets it instead of a second run."""
    from xetool.paths import write_atomic

    path = _journal(side, task)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(result))
    _forget_old(path.parent)


def recorded(side: HostSide, task: str) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = json.loads(_journal(side, task).read_text())
        return result
    except (OSError, ValueError):
        return None


def forget_result(side: HostSide, task: str) -> None:
    _journal(side, task).unlink(missing_ok=True)


def _forget_old(directory: Path, age: float = 3900.0) -> None:
    """Results older than a finished task's lifetime in the store (65 minutes) go."""
    import os
    import time

    now = time.time()
    for entry in os.scandir(directory):
        try:
            if now - entry.stat().st_mtime > age:
                os.unlink(entry.path)
        except OSError:
            pass
