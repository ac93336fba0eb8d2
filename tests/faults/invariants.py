"""What must hold of a pool after any storm of commands and faults, checked from the outside:
the SQLite file, each simulated host's hypervisor and xenstore, its files and its processes.

The checker trusts none of xetool's own reports (pool-check is under test too): it reads the
store with plain SQL and asks each host directly. `violations(state)` returns one line per
broken invariant; an empty list is a consistent pool.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from xetool.backends.base import Backend, DomainInfo
from xetool.paths import HOSTD_PID, HOSTS
from xetool.processes import alive, read_pid

RUNNING = ("Running", "Paused")
# write-then-rename temp files: ".<name>.<pid>" beside their target, or "*.tmp"
TEMP = re.compile(r"^\..+\.\d+$|\.tmp$")


def violations(state: Path, *, exits: list[int] | None = None) -> list[str]:
    state = Path(state)
    out: list[str] = []
    if exits is not None:
        crashed = sum(1 for rc in exits if rc == 70)
        if crashed:
            out.append(f"{crashed} command(s) exited 70 (a bug: an unhandled exception)")
    db_file = state / "pool.db"
    db = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=30)
    try:
        check = db.execute("PRAGMA integrity_check").fetchall()
        if check != [("ok",)]:
            return out + [f"pool.db integrity_check: {check[:3]}"]
        out += _store_marks(db)
        hosts = db.execute("SELECT uuid, name_label, memory_total, memory_overhead FROM host").fetchall()
        for uuid, name, total, overhead in hosts:
            out += [f"host {name}: {v}" for v in _host(state, db, uuid, total, overhead)]
    finally:
        db.close()
    out += [f"temp file left: {p.relative_to(state)}" for p in state.rglob("*") if TEMP.search(p.name) and p.is_file()]
    return out


# (what to count, what a non-zero count means)
_STORE_CHECKS = [
    *((f"SELECT COUNT(*) FROM {t} WHERE current_operations NOT IN ('{{}}', '')",
       f"{t} row(s) still carry current_operations") for t in ("vm", "vbd", "vif", "host")),
    ("SELECT COUNT(*) FROM vm WHERE scheduled_to_be_resident_on IS NOT NULL",
     "VM(s) still scheduled_to_be_resident_on a host"),
    ("SELECT COUNT(*) FROM vm WHERE power_state IN ('Running', 'Paused') AND resident_on IS NULL",
     "running VM(s) resident nowhere"),
    ("SELECT COUNT(*) FROM vm WHERE power_state NOT IN ('Running', 'Paused', 'Suspended') AND resident_on IS NOT NULL",
     "halted VM(s) still resident on a host"),
    ("SELECT COUNT(*) FROM task WHERE status = 'pending'", "task(s) still pending after every command ended"),
    ("SELECT COUNT(*) FROM reservation WHERE domid = -1", "memory reservation(s) handed to no domain"),
]


def _store_marks(db: sqlite3.Connection) -> list[str]:
    counts = ((db.execute(sql).fetchone()[0], what) for sql, what in _STORE_CHECKS)
    return [f"{n} {what}" for n, what in counts if n]


def _host(state: Path, db: sqlite3.Connection, host: str, total: int, overhead: int) -> list[str]:
    out = []
    resident = {uuid: (power, domid) for uuid, power, domid in db.execute(
        "SELECT uuid, power_state, domid FROM vm WHERE resident_on = ? AND power_state IN ('Running', 'Paused')",
        (host,))}
    charged = db.execute("SELECT COALESCE(SUM(memory_dynamic_min + memory_overhead), 0) FROM vm "
                         "WHERE resident_on = ? OR scheduled_to_be_resident_on = ?", (host, host)).fetchone()[0]
    if charged > total - overhead:
        out.append(f"memory charged {charged} above the host's {total - overhead} for guests")
    hdir = state / HOSTS / host
    pid = read_pid(str(hdir / HOSTD_PID))
    if pid is None or not alive(pid):
        # a host that is down runs no domain: the store must not say otherwise once resynced
        if resident:
            out.append(f"down, yet {len(resident)} VM(s) recorded running there")
        domains: list[DomainInfo] = []
    else:
        backend = _backend(state, host)
        domains = [d for d in backend.list_domains() if not d.dying]
        free = int(backend.physinfo().free_memory_kib)
        if free < 0:
            out.append(f"the hypervisor's free memory is {free} KiB")
    guests = {d.uuid: d for d in domains if d.domid != 0}
    for uuid in sorted(set(guests) - set(resident)):
        out.append(f"domain {guests[uuid].domid} of VM {uuid} runs, the store says it is not resident there")
    for uuid in sorted(set(resident) - set(guests)):
        out.append(f"VM {uuid} recorded {resident[uuid][0]} with no domain")
    for uuid in sorted(set(resident) & set(guests)):
        power, domid = resident[uuid]
        d = guests[uuid]
        if domid != d.domid:
            out.append(f"VM {uuid}: store domid {domid}, the host's domain {d.domid}")
        if (power == "Paused") != d.paused:
            out.append(f"VM {uuid}: store {power}, domain {'paused' if d.paused else 'running'}")
    live_domids = {d.domid for d in domains}
    out += _files(hdir, set(resident), live_domids)
    if domains:
        out += _xenstore(backend.xenstore_socket(), set(guests), live_domids)
    out += _leases(hdir, db, set(resident))
    return out


def _backend(state: Path, host: str) -> Backend:
    from xetool.host.backend import HOST_FIELDS, backend_for
    from xetool.store.db import Store

    store = Store(state, create=False)
    try:
        with store.read() as txn:
            row = txn.must("host", host, list(HOST_FIELDS))
    finally:
        store.close()
    return backend_for(state, row)


def _files(hdir: Path, resident: set[str], domids: set[int]) -> list[str]:
    out = []
    run = hdir / "run"
    for f in run.glob("*.json") if run.is_dir() else ():
        if f.stem not in resident:
            out.append(f"runtime file of a VM not running there: run/{f.name}")
            continue
        data = json.loads(f.read_text())
        for key in ("dm_pid", "console_pid"):
            if data.get(key) and not alive(data[key]):
                out.append(f"VM {f.stem}: its {key} {data[key]} is not running")
    logs = hdir / "logs"
    for f in logs.glob("*-*.log") if logs.is_dir() else ():
        m = re.match(r".*-(\d+)\.log$", f.name)
        if m and int(m.group(1)) not in domids and f.stat().st_size == 0:
            out.append(f"empty per-start log of a stopped domain: logs/{f.name}")
    return out


def _xenstore(socket: str, running: set[str], domids: set[int]) -> list[str]:
    from xetool.xenstore.client import XsClient

    out = []
    with XsClient(socket) as xs:
        for d in xs.ls("/local/domain"):
            if d.isdigit() and int(d) not in domids:
                out.append(f"xenstore /local/domain/{d} of a domain that is gone")
        for uuid in xs.ls("/vm") if xs.read_or("/vm") is not None else ():
            if uuid not in running:
                out.append(f"xenstore /vm/{uuid} of a VM not running there")
        for path in ("/local/domain/0/device-model",):
            for d in xs.ls(path) if xs.read_or(path) is not None else ():
                if d.isdigit() and int(d) not in domids:
                    out.append(f"xenstore {path}/{d} of a domain that is gone")
        for kind in xs.ls("/local/domain/0/backend") if xs.read_or("/local/domain/0/backend") is not None else ():
            for d in xs.ls(f"/local/domain/0/backend/{kind}"):
                if d.isdigit() and int(d) not in domids:
                    out.append(f"xenstore backend/{kind}/{d} of a domain that is gone")
    return out


def _leases(hdir: Path, db: sqlite3.Connection, resident: set[str]) -> list[str]:
    macs = {mac.lower() for (vm, mac) in db.execute("SELECT VM, MAC FROM vif") if vm in resident}
    out = []
    leases = hdir / "dnsmasq"
    for f in leases.glob("*.hosts") if leases.is_dir() else ():
        for line in f.read_text().splitlines():
            mac = line.split(",", 1)[0].strip().lower()
            if mac and not line.startswith("#") and mac not in macs:
                out.append(f"lease {line!r} in {f.name} outlives its VM")
    return out


def hostd_pids(state: Path) -> dict[str, int]:
    """Each started simulated host's pid, by host uuid."""
    out = {}
    for d in (Path(state) / HOSTS).glob("*"):
        pid = read_pid(str(d / HOSTD_PID))
        if pid is not None and alive(pid):
            out[d.name] = pid
    return out
