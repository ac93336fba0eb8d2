"""The hosts are the truth (DESIGN.md): the store is matched with each host's domains by VM uuid,
as xapi does with xenopsd after its restarts.

On one host:
- a host that restarted is a new boot: every VM resident there under an earlier boot is Halted;
- a VM resident there with no domain (or a domain that has shut down) is Halted, and what it
  held (reservation, marks, lease, runtime files, services) is released;
- a domain of a VM the store thinks Halted makes the VM Running/Paused there (xapi's rule), if a
  start finished building it; a half-built one is what a start that died left, an orphan;
- any other domain (no Running/Paused VM on that host in the store) is an orphan, destroyed with
  its devices, console, device model and lease;
- a stored domid or power state that differs from the domain's is corrected; runtime files and
  lease lines of VMs not on the host go.
In the store: marks, reservations and schedules that no live task holds, and tasks whose
process died.

A VM held by a live task (a start or stop in progress) is never touched, nor one whose lock
another process holds: each repair takes the VM's lock without waiting and checks again under it.
Every repair is a message (message-list) saying what was found and what was done.
"""

from __future__ import annotations

from pathlib import Path

from xetool import lifecycle, messages, tasks
from xetool.backends.base import DomainInfo
from xetool.errors import XeError
from xetool.host.backend import HOST_FIELDS
from xetool.host.locks import vm_lock
from xetool.master.host_half import HostClient, client, halt_in_store
from xetool.paths import host_dir
from xetool.records import record
from xetool.store.db import Row, Store, Txn

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any

VM_FIELDS = ["uuid", "name_label", "power_state", "resident_on", "scheduled_to_be_resident_on", "domid",
             "current_operations", "is_control_domain"]
ACTIVE = ("Running", "Paused")

# kind -> (message name, the class the message is about)
KINDS: dict[str, tuple[str, str]] = {
    "host-offline": ("HOST_OFFLINE", "Host"),
    "vm-of-earlier-boot": ("VM_HALTED_HOST_REBOOTED", "VM"),
    "vm-without-domain": ("VM_HALTED_NO_DOMAIN", "VM"),
    "domain-shut-down": ("VM_HALTED_DOMAIN_SHUT_DOWN", "VM"),
    "halted-vm-with-domain": ("VM_RESIDENT_FROM_DOMAIN", "VM"),
    "orphan-domain": ("ORPHAN_DOMAIN_DESTROYED", "Host"),
    "domid-differs": ("VM_DOMID_RESYNCED", "VM"),
    "power-state-differs": ("VM_POWER_STATE_RESYNCED", "VM"),
    "stale-runtime-file": ("STALE_RUNTIME_RELEASED", "Host"),
    "stale-lease": ("STALE_LEASE_REMOVED", "Host"),
    "dead-task": ("DEAD_TASK_CLEANED", "Pool"),
    "stale-mark": ("STALE_MARK_CLEARED", "Pool"),
    "stale-schedule": ("STALE_MARK_CLEARED", "VM"),
    "reservation-without-task": ("STALE_RESERVATION_RELEASED", "Host"),
}


@record(frozen=True)
class Divergence:
    kind: str
    host: str  # host uuid, "" for the store's own
    obj: str  # what it is about: a VM uuid, a task, a MAC, a host
    found: str  # what was found
    repair: str  # what the repair does
    domid: int = -1

    def row(self, names: dict[str, str]) -> tuple[str, str, str, str, str]:
        return (names.get(self.host, self.host) or "-", self.kind, names.get(self.obj, self.obj) or "-",
                self.found, self.repair)


def _live_tasks(txn: Txn) -> set[str]:
    pending = txn.select("task", ["uuid", "pid", "process_start", "hostname"], {"status": "pending"})
    return {t["uuid"] for t in pending if tasks.task_alive(t)}


def _held(vm: Row, live: set[str], own_task: str) -> bool:
    """A live task other than ours is working on the VM: hands off."""
    return any(t in live and t != own_task for t in vm["current_operations"])


# --- one host -------------------------------------------------------------------------------------

@record
class _Seen:
    """What a plan saw of the host (its `inventory` answer), for the repairs and the host record."""

    state: str  # live | down | unresponsive
    boot_id: str = ""
    domains: dict[str, DomainInfo] | None = None
    unfinished: frozenset[int] = frozenset()  # domids no start finished building
    runtimes: list[dict[str, Any]] | None = None  # the host's runtime records: vm, task, domid, leases
    leases: dict[str, list[str]] | None = None  # bridge -> its lease lines
    reservations: list[dict[str, Any]] | None = None  # the host's memory broker's: id, vm, task, kib


def look(c: HostClient, start: bool = False) -> _Seen:
    """Ask the host what it holds. HOST_OFFLINE (from the transport) when it cannot be reached."""
    from xetool.host.handlers import domain_from

    inv = c.call("inventory", start=start)
    return _Seen(inv["state"], inv["boot_id"], {u: domain_from(d) for u, d in inv["domains"].items()},
                 frozenset(inv["unfinished"]), inv["runtimes"], inv["leases"], inv["reservations"])


def _vm_divergences(vm: Row, host: Row, dom: DomainInfo | None, earlier: str) -> list[Divergence]:
    """A VM the store places on `host`, against the host's domain for it (None: none there)."""
    name, h = vm["name_label"], host["uuid"]
    where = host["name_label"]
    if dom is None:
        if earlier:
            return [Divergence("vm-of-earlier-boot", h, vm["uuid"],
                               f"{name} was resident on {where} under boot {earlier}; the host has restarted",
                               "Halted, everything it held released")]
        return [Divergence("vm-without-domain", h, vm["uuid"],
                           f"{name} is {vm['power_state']} on {where} in the store, and the host has no domain for it",
                           "Halted, everything it held released")]
    if dom.shutdown_reason:
        return [Divergence("domain-shut-down", h, vm["uuid"],
                           f"the domain {dom.domid} of {name} on {where} has shut down ({dom.shutdown_reason})",
                           "domain destroyed, VM Halted, everything it held released", dom.domid)]
    state = "Paused" if dom.paused else "Running"
    if vm["power_state"] not in ACTIVE:
        return [Divergence("halted-vm-with-domain", h, vm["uuid"],
                           f"{name} is {vm['power_state']} in the store but resident on {where} as domain {dom.domid}",
                           f"{state} on {where}, domid {dom.domid}", dom.domid)]
    out = []
    if dom.domid != vm["domid"]:
        out.append(Divergence("domid-differs", h, vm["uuid"],
                              f"{name} has domid {vm['domid']} in the store, domain {dom.domid} on {where}",
                              f"domid {dom.domid}", dom.domid))
    if state != vm["power_state"]:
        out.append(Divergence("power-state-differs", h, vm["uuid"],
                              f"{name} is {vm['power_state']} in the store, its domain {dom.domid} is {state.lower()}",
                              state, dom.domid))
    return out


def _domain_divergence(dom: DomainInfo, vm: Row | None, host: Row, half_built: bool) -> Divergence | None:
    """A domain on the host whose VM the store does not place there."""
    h, where = host["uuid"], host["name_label"]
    if vm is not None and vm["power_state"] == "Halted" and not dom.shutdown_reason and not half_built:
        return _vm_divergences(vm, host, dom, "")[0]  # xapi's rule: the domain runs, so the VM is resident
    if vm is None:
        why = "no VM in the store has this uuid"
    elif vm["power_state"] in ACTIVE and vm["resident_on"] != h:
        why = f"{vm['name_label']} is {vm['power_state']} on another host in the store"
    elif half_built:
        why = f"{vm['name_label']} is {vm['power_state']} and its start never finished building the domain"
    elif dom.shutdown_reason:
        why = f"{vm['name_label']} is {vm['power_state']} and the domain has shut down ({dom.shutdown_reason})"
    else:
        why = f"{vm['name_label']} is {vm['power_state']} in the store"
    return Divergence("orphan-domain", h, dom.uuid, f"domain {dom.domid} ({dom.name or dom.uuid}) on {where}: {why}",
                      "destroyed with its devices, console, device model and lease", dom.domid)


def plan_host(store: Store, c: HostClient, own_task: str = "", seen: _Seen | None = None,
              start: bool = False) -> list[Divergence]:
    """Every divergence between the store and one host; changes nothing on it (`start`: a
    simulated host that does not run is started first)."""
    host = c.host
    seen = seen if seen is not None else _Seen("")
    got = look(c, start)  # the host first, then the store: see _repair's re-check
    seen.state, seen.boot_id, seen.domains, seen.unfinished = got.state, got.boot_id, got.domains, got.unfinished
    seen.runtimes, seen.leases, seen.reservations = got.runtimes, got.leases, got.reservations
    if seen.state == "unresponsive":
        return [Divergence("host-offline", host["uuid"], host["uuid"],
                           f"{host['name_label']} does not answer: its domains cannot be compared with the store",
                           "none until it answers (host-sim-stop and host-sim-start restart a simulated one)")]
    domains = seen.domains or {}
    with store.read() as txn:
        recorded_boot = txn.must("host", host["uuid"], ["boot_id"])["boot_id"]
        vms = {v["uuid"]: v for v in txn.select("vm", VM_FIELDS) if not v["is_control_domain"]}
        live = _live_tasks(txn)
    earlier = recorded_boot if recorded_boot and seen.boot_id and recorded_boot != seen.boot_id else ""
    if seen.state == "down":
        earlier = ""
    out: list[Divergence] = []
    here = {u: v for u, v in vms.items() if v["resident_on"] == host["uuid"]}
    for uuid, vm in here.items():
        if not _held(vm, live, own_task):
            for d in _vm_divergences(vm, host, domains.get(uuid), earlier):
                if seen.state == "down":
                    d = Divergence(d.kind, d.host, d.obj, f"{d.found} ({host['name_label']}'s process is gone)", d.repair)
                out.append(d)
    others = [d for u, d in domains.items() if u not in here and not (u in vms and _held(vms[u], live, own_task))]
    for dom in others:
        found = _domain_divergence(dom, vms.get(dom.uuid), host, dom.uuid in vms and dom.domid in seen.unfinished)
        if found is not None:
            out.append(found)
    out += _plan_host_files(store, host, vms, live, own_task, domains, out, seen)
    with store.read() as txn:
        pending = {t["uuid"] for t in txn.select("task", ["uuid"], {"status": "pending"})}
    for r in seen.reservations or []:
        if r["task"] not in pending and r["task"] != own_task:  # a dead task's: the janitor's
            out.append(Divergence("reservation-without-task", host["uuid"], r["id"],
                                  f"{host['name_label']}'s memory broker holds {r['kib']} KiB for VM {r['vm']} "
                                  f"for task {r['task']}, which is not running", "reservation released"))
    return out


def _plan_host_files(store: Store, host: Row, vms: dict[str, Row], live: set[str], own_task: str,
                     domains: dict[str, DomainInfo], found: list[Divergence], seen: _Seen) -> list[Divergence]:
    """Runtime records of VMs that are not on the host, and lease lines that no VM holds."""
    h, where = host["uuid"], host["name_label"]
    out = []
    gone = {d.obj for d in found if d.kind in ("vm-of-earlier-boot", "vm-without-domain", "domain-shut-down",
                                                 "orphan-domain")}
    recorded: set[tuple[str, str]] = set()  # leases some runtime record holds: they go with it
    for rt in seen.runtimes or []:
        recorded |= {(b, m) for b, m in rt["leases"]}
        vm = vms.get(rt["vm"])
        mine = vm is not None and (vm["resident_on"] == h or _held(vm, live, own_task)
                                   or (rt["vm"] in domains and rt["vm"] not in gone))
        if vm is not None and rt["task"] and rt["task"] in live and rt["task"] != own_task:
            mine = True  # a start in progress writes its runtime record before the store knows
        if not mine and rt["vm"] not in gone:
            name = vm["name_label"] if vm else rt["vm"]
            out.append(Divergence("stale-runtime-file", h, rt["vm"], f"{where} keeps runtime records of {name}, "
                                  "which is not on it", "its services, leases and records released"))
    busy = _macs_of(store, [u for u, v in vms.items() if _held(v, live, own_task)])  # a start may not have recorded its lease yet
    for bridge, lines in sorted((seen.leases or {}).items()):
        for line in lines:
            mac = line.split(",")[0].strip().lower()
            if mac and mac not in busy and not any(b == bridge and m.lower() == mac for b, m in recorded):
                out.append(Divergence("stale-lease", h, f"{bridge}/{mac}", f"{where} gives {line} on {bridge}, "
                                      "and no VM on the host holds it", "lease removed"))
    return out


def _macs_of(store: Store, vms: list[str]) -> set[str]:
    if not vms:
        return set()
    with store.read() as txn:
        return {v["MAC"].lower() for vm in vms for v in txn.select("vif", ["MAC"], {"VM": vm})}


def resync_host(store: Store, c: HostClient, own_task: str = "", start: bool = False) -> list[Divergence]:
    """Plan, then repair each divergence (with a message); returns those repaired. HOST_OFFLINE
    if the host does not answer."""
    host = c.host
    seen = _Seen("")
    plan = plan_host(store, c, own_task, seen, start)
    if seen.state == "unresponsive":
        raise XeError("HOST_OFFLINE", host["uuid"], name=host["name_label"],
                      reason="it does not answer; its VMs cannot be checked or changed")
    done = [d for d in plan if _repair(store, c, d, seen, own_task)]
    with store.write() as txn:
        row = txn.must("host", host["uuid"], ["live", "boot_id"])
        values: dict[str, object] = {}
        if seen.state == "live" and seen.boot_id and row["boot_id"] != seen.boot_id:
            values["boot_id"] = seen.boot_id
        if row["live"] != (seen.state == "live"):
            values["live"] = seen.state == "live"
        if values:
            txn.update("host", host["uuid"], values)
    return done


def _repair(store: Store, c: HostClient, d: Divergence, seen: _Seen, own_task: str) -> bool:
    """One repair, under the VM's lock (taken without waiting: a holder is at work on it) and
    after checking again that the divergence is still there. True if repaired."""
    host = c.host
    h = host["uuid"]
    if d.kind == "stale-lease":
        bridge, mac = d.obj.split("/", 1)
        if not c.call("remove_lease", bridge=bridge, mac=mac)["removed"]:
            return False
        _message(store, d, "lease removed")
        return True
    if d.kind == "reservation-without-task":
        if not c.call("memory_release", ids=[d.obj])["released"]:
            return False
        _message(store, d, "reservation released")
        return True
    try:
        lock = vm_lock(Path(store.state_dir), d.obj).acquire(timeout=0)
    except XeError:
        return False  # another process works on this VM now; the next resync looks again
    try:
        if not _still(store, c, d, own_task):
            return False
        if d.kind in ("vm-of-earlier-boot", "vm-without-domain", "domain-shut-down", "orphan-domain",
                      "stale-runtime-file"):
            # the host takes the VM's own lock without waiting, too: a start there holds it
            answer = c.call("vm_release", vm=d.obj, nowait=True, domid=d.domid if d.kind == "orphan-domain" else -1)
            if not answer["released"]:
                return False
            problems = answer["problems"]
            if d.kind in ("orphan-domain", "stale-runtime-file"):
                note = "domain destroyed with its devices, services and lease" if d.kind == "orphan-domain" else \
                    "services, leases and runtime records released"
            else:
                halt_in_store(store, d.obj)
                _release_vm_marks(store, d.obj, h)
                note = "Halted; reservation, marks, lease and runtime files released"
        else:
            problems = []
            note = _adopt(store, d)
        if problems:
            note += "; not undone: " + "; ".join(problems)
        _message(store, d, note)
        return True
    finally:
        lock.release()


def _still(store: Store, c: HostClient, d: Divergence, own_task: str) -> bool:
    """Under the VM's lock: is the divergence still there, found the same way?"""
    host = c.host
    now = look(c)
    if d.kind == "stale-runtime-file":
        with store.read() as txn:
            vm = txn.get("vm", d.obj, VM_FIELDS)
            live = _live_tasks(txn)
        has = any(rt["vm"] == d.obj for rt in now.runtimes or [])
        return has and (vm is None or (vm["resident_on"] != host["uuid"] and not _held(vm, live, own_task)))
    dom = (now.domains or {}).get(d.obj) if now.state == "live" else None
    with store.read() as txn:
        vm = txn.get("vm", d.obj, VM_FIELDS)
        live = _live_tasks(txn)
        recorded_boot = txn.must("host", host["uuid"], ["boot_id"])["boot_id"]
    if vm is not None and _held(vm, live, own_task):
        return False
    if d.kind == "orphan-domain":
        if dom is None or dom.domid != d.domid:
            return False
        unfinished = vm is not None and dom.domid in now.unfinished
        again = _domain_divergence(dom, vm, host, unfinished) if vm is None or vm["resident_on"] != host["uuid"] else None
        return again is not None and again.kind == "orphan-domain"
    if vm is None:
        return False
    if d.kind != "halted-vm-with-domain" and vm["resident_on"] != host["uuid"]:
        return False
    if d.kind == "halted-vm-with-domain":
        if dom is None or vm["power_state"] in ACTIVE or dom.domid in now.unfinished:
            return False
    earlier = d.kind == "vm-of-earlier-boot" and bool(recorded_boot)
    return d.kind in [x.kind for x in _vm_divergences(vm, host, dom, recorded_boot if earlier else "")]


def _release_vm_marks(store: Store, vm: str, host: str) -> None:
    """What the store still holds for a VM that is now Halted: reservations, and marks of tasks
    that are gone (a live task's marks stay with it)."""
    with store.write() as txn:
        live = _live_tasks(txn)
        row = txn.get("vm", vm, ["current_operations"])
        for task in list(row["current_operations"]) if row else []:
            if task not in live:
                lifecycle.unmark(txn, "vm", vm, task)
        txn.db.execute("DELETE FROM reservation WHERE vm = ? AND host = ? AND task NOT IN (%s)"
                       % ",".join("?" * len(live)), (vm, host, *live))


def _adopt(store: Store, d: Divergence) -> str:
    """The domain's truth into the store: resident there, its domid and power state."""
    with store.write() as txn:
        txn.db.execute("DELETE FROM reservation WHERE vm = ? AND domid >= 0", (d.obj,))  # handed to the domain
        values: dict[str, object] = {"domid": d.domid}
        if d.kind != "domid-differs":
            values["power_state"] = d.repair.split(" ", 1)[0]  # Running or Paused, as the domain is
        if d.kind == "halted-vm-with-domain":
            values |= {"resident_on": d.host, "scheduled_to_be_resident_on": None}
        txn.update("vm", d.obj, values)
        lifecycle.update_allowed_operations(txn, "vm", d.obj)
    return d.repair


def _message(store: Store, d: Divergence, done: str) -> None:
    name, cls = KINDS[d.kind]
    obj = {"VM": d.obj, "Host": d.host}.get(cls, "")
    with store.write() as txn:
        if cls == "Pool":
            obj = txn.pool()["uuid"]
        messages.create(txn, name, 3, cls, obj or d.host, f"{d.found}: {done}.")


# --- the store's own marks --------------------------------------------------------------------------

def plan_store(store: Store) -> list[Divergence]:
    """Marks, reservations and schedules no live task holds; pending tasks whose process died."""
    out = []
    with store.read() as txn:
        pending = txn.select("task", ["uuid", "name_label", "pid", "process_start", "hostname"], {"status": "pending"})
        live = {t["uuid"] for t in pending if tasks.task_alive(t)}
        for t in pending:
            if t["uuid"] not in live:
                out.append(Divergence("dead-task", "", t["uuid"], f"task {t['name_label']} ({t['uuid']}) is pending, "
                                      f"and its process {t['pid']} is gone", "what it left undone, its marks failed"))
        dead = {t["uuid"] for t in pending} - live
        for cls in tasks.MARKED_CLASSES:
            for row in txn.select(cls, ["uuid", "current_operations"]):
                for task, op in row["current_operations"].items():
                    if task not in live and task not in dead:
                        out.append(Divergence("stale-mark", "", f"{cls}/{row['uuid']}/{task}",
                                              f"{cls} {row['uuid']} is marked {op} by task {task}, which is not running",
                                              "mark cleared"))
        for vm in txn.select("vm", ["uuid", "name_label", "scheduled_to_be_resident_on", "current_operations"]):
            if vm["scheduled_to_be_resident_on"] and not any(t in live or t in dead for t in vm["current_operations"]):
                out.append(Divergence("stale-schedule", vm["scheduled_to_be_resident_on"], vm["uuid"],
                                      f"{vm['name_label']} is scheduled to be resident on a host, and no start is running",
                                      "scheduled-to-be-resident-on cleared"))
        for rid, host, vm, task, kib in txn.db.execute("SELECT id, host, vm, task, kib FROM reservation").fetchall():
            if task not in live and task not in dead:
                out.append(Divergence("reservation-without-task", host, rid,
                                      f"{kib} KiB reserved for VM {vm} by task {task}, which is not running",
                                      "reservation released"))
    return out


def repair_store(store: Store, plan: list[Divergence]) -> list[Divergence]:
    done = []
    released: list[Divergence] = []  # the master's copies of reservations: the hosts' go too
    if any(d.kind == "dead-task" for d in plan):
        reaped = set(tasks.reap_dead_tasks(store))
        for d in plan:
            if d.kind == "dead-task" and d.obj in reaped:
                _message(store, d, "cleaned")
                done.append(d)
    with store.write() as txn:
        live = _live_tasks(txn)
        for d in plan:
            if d.kind == "stale-mark":
                cls, uuid, task = d.obj.split("/")
                row = txn.get(cls, uuid, ["current_operations"])
                if row is None or task not in row["current_operations"] or task in live:
                    continue
                lifecycle.unmark(txn, cls, uuid, task)
            elif d.kind == "stale-schedule":
                vm = txn.get("vm", d.obj, ["current_operations", "scheduled_to_be_resident_on"])
                if vm is None or not vm["scheduled_to_be_resident_on"] or any(t in live for t in vm["current_operations"]):
                    continue
                txn.update("vm", d.obj, {"scheduled_to_be_resident_on": None})
            elif d.kind == "reservation-without-task":
                if txn.db.execute("DELETE FROM reservation WHERE id = ? AND task NOT IN (%s)" % ",".join("?" * len(live)),
                                  (d.obj, *live)).rowcount == 0:
                    continue
                released.append(d)
            else:
                continue
            done.append(d)
    for d in released:
        _release_on_host(store, d.host, d.obj)
    for d in done:
        if d.kind != "dead-task":
            _message(store, d, d.repair)
    return done


def _release_on_host(store: Store, host: str, rid: str) -> None:
    """The host's own copy of a reservation the store no longer holds (if the host answers:
    else its next resync finds it)."""
    with store.read() as txn:
        row = txn.get("host", host, HOST_FIELDS)
    if row is None:
        return
    try:
        client(store, Path(store.state_dir), row).call("memory_release", ids=[rid])
    except XeError:
        pass


# --- the pool, and the first touch of a host by a command ----------------------------------------

def _hosts(store: Store) -> list[Row]:
    with store.read() as txn:
        return txn.select("host", list(HOST_FIELDS))


def _worth_a_look(state_dir: Path, host: Row) -> bool:
    """A simulated host that has never run, with nothing placed on it, has nothing to compare
    (a remote host is always asked: what ran there is known there)."""
    from xetool.master.ssh import is_remote

    if host["backend"] != "simulator" or is_remote(host):
        return True
    return (host_dir(state_dir, host["uuid"]) / "hostd.log").exists()


def check_pool(store: Store, state_dir: Path) -> list[Divergence]:
    """Every divergence, in the store and between the store and each host; changes nothing
    (a host that is not running is not started)."""
    out = plan_store(store)
    for host in _hosts(store):
        if _worth_a_look(state_dir, host) or _has_residents(store, host["uuid"]):
            try:
                out += plan_host(store, client(store, state_dir, host))
            except XeError as err:
                if err.code != "HOST_OFFLINE":
                    raise
                out.append(Divergence("host-offline", host["uuid"], host["uuid"],
                                      f"{host['name_label']} cannot be reached ({err.params.get('reason', '')}): its "
                                      "domains cannot be compared with the store", "none until it answers"))
    return out


def repair_pool(store: Store, state_dir: Path) -> tuple[list[Divergence], list[Divergence]]:
    """The resync of every host and of the store's own marks: (repaired, left)."""
    done = repair_store(store, plan_store(store))
    for host in _hosts(store):
        if not (_worth_a_look(state_dir, host) or _has_residents(store, host["uuid"])):
            continue
        try:
            done += resync_host(store, client(store, state_dir, host))
        except XeError:
            pass  # offline: check_pool below reports it as left
        _touched.add((str(state_dir), host["uuid"]))
    return done, check_pool(store, state_dir)


def _has_residents(store: Store, host: str) -> bool:
    with store.read() as txn:
        return bool(txn.uuids("vm", {"resident_on": host}))


_touched: set[tuple[str, str]] = set()


def touch(store: Store, state_dir: Path, c: HostClient, *, start: bool = True, own_task: str = "") -> list[Divergence]:
    """A command reaches a host: start it if it is a simulated host that does not run (`start`),
    HOST_OFFLINE if it runs but does not answer, and resync it the first time this process
    touches it. Returns the repairs made."""
    key = (str(state_dir), c.uuid)
    if key in _touched:
        return []
    done = resync_host(store, c, own_task, start)
    _touched.add(key)
    return done


def touch_vm_host(store: Store, state_dir: Path, vm: str) -> None:
    """Before an operation on a VM: resync the host the store places it on (not started if it
    does not run: its VMs are then Halted)."""
    with store.read() as txn:
        row = txn.must("vm", vm, ["resident_on"])
        host = txn.get("host", row["resident_on"], HOST_FIELDS) if row["resident_on"] else None
    if host is not None:
        touch(store, state_dir, client(store, state_dir, host), start=False)


def forget_touch(state_dir: str, host: str) -> None:
    """The host may have changed in ways this process did not see (a lost connection): the next
    command that reaches it resyncs it."""
    _touched.discard((state_dir, host))


def forget_touches() -> None:
    """For tests that run several commands in one process."""
    _touched.clear()
