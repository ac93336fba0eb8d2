"""What a running VM holds on its host, beside the store: the domain, its devices, processes,
leases and memory reservation. Written as the start proceeds, so that a stop, a failed start's
undo, or the janitor after a crash knows exactly what to release."""

from __future__ import annotations

import json
from pathlib import Path

from xetool.paths import host_dir, write_atomic
from xetool.records import asdict, field, record


@record
class Runtime:
    vm: str
    host: str
    task: str = ""
    domid: int = -1
    hvm: bool = False
    reservation: str = ""
    vbds: dict[str, int] = field(default_factory=dict)  # vbd uuid -> userdevice
    vifs: dict[str, int] = field(default_factory=dict)  # vif uuid -> device
    leases: list[tuple[str, str]] = field(default_factory=list)  # (bridge, mac)
    dm_pid: int = 0
    dm_start: str = ""  # the process's start time (processes.start_time): a pid alone may be reused
    console_pid: int = 0
    console_start: str = ""
    vnc_port: int = 0
    started: bool = False  # the start completed: the janitor must leave this VM alone


def path(state_dir: Path, host: str, vm: str) -> Path:
    return host_dir(state_dir, host) / "run" / f"{vm}.json"


def load(state_dir: Path, host: str, vm: str) -> Runtime | None:
    try:
        data = json.loads(path(state_dir, host, vm).read_text())
    except (OSError, ValueError):
        return None
    data["leases"] = [tuple(x) for x in data.get("leases", [])]
    return Runtime(**data)


def save(state_dir: Path, rt: Runtime) -> None:
    target = path(state_dir, rt.host, rt.vm)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, json.dumps(asdict(rt)))


def remove(state_dir: Path, host: str, vm: str) -> None:
    path(state_dir, host, vm).unlink(missing_ok=True)


def all_on(state_dir: Path, host: str) -> list[Runtime]:
    out = []
    for p in (host_dir(state_dir, host) / "run").glob("*.json"):
        rt = load(state_dir, host, p.stem)
        if rt is not None:
            out.append(rt)
    return out
