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
from xetool.backends.base import Backend, DomainInfo
from xetool.errors import XeError
from xetool.host import inventory, memory, runtime, teardown
from xetool.host.backend import HOST_FIELDS, backend_for
from xetool.host.locks import vm_lock
from xetool.paths import host_dir
from xetool.records import record
from xetool.store.db import Row, Store, Txn

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
    """What a plan saw of the host, for the repairs and the host record."""

    state: str  # live | down | unresponsive
    boot_id: str = ""
    domains: dict[str, DomainInfo] | None = None


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


def plan_host(store: Store, state_dir: Path, host: Row, backend: Backend, own_task: str = "",
              seen: _Seen | None = None) -> list[Divergence]:
    """Every divergence between the store and one host; changes nothing."""
    seen = seen if seen is not None else _Seen("")
    seen.state = backend.reachability()
    if seen.state == "unresponsive":
        return [Divergence("host-offline", host["uuid"], host["uuid"],
                           f"{host['name_label']} does not answer: its domains cannot be compared with the store",
                           "none until it answers (host-sim-stop and host-sim-start restart a simulated one)")]
    if seen.state == "live":
        inv = inventory.inventory(backend)  # the host first, then the store: see _repair's re-check
        seen.boot_id, seen.domains = inv.boot_id, inv.domains
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
    unfinished = inventory.half_built(backend, [d for d in others if d.uuid in vms]) if others else set()
    for dom in others:
        found = _domain_divergence(dom, vms.get(dom.uuid), host, dom.domid in unfinished)
        if found is not None:
            out.append(found)
    out += _plan_host_files(store, state_dir, host, vms, live, own_task, domains, out)
    return out


def _plan_host_files(store: Store, state_dir: Path, host: Row, vms: dict[str, Row], live: set[str], own_task: str,
                     domains: dict[str, DomainInfo], found: list[Divergence]) -> list[Divergence]:
    """Runtime files of VMs that are not on the host, and lease lines that no VM holds."""
    from xetool.devices import vif

    h, where = host["uuid"], host["name_label"]
    out = []
    gone = {d.obj for d in found if d.kind in ("vm-of-earlier-boot", "vm-without-domain", "domain-shut-down",
                                                 "orphan-domain")}
    recorded: set[tuple[str, str]] = set()  # leases some runtime file holds: they go with it
    for rt in runtime.all_on(state_dir, h):
        recorded |= set(rt.leases)
        vm = vms.get(rt.vm)
        mine = vm is not None and (vm["resident_on"] == h or _held(vm, live, own_task)
                                   or (rt.vm in domains and rt.vm not in gone))
        if vm is not None and rt.task and rt.task in live and rt.task != own_task:
            mine = True  # a start in progress writes its runtime file before the store knows
        if not mine and rt.vm not in gone:
            name = vm["name_label"] if vm else rt.vm
            out.append(Divergence("stale-runtime-file", h, rt.vm, f"{where} keeps runtime records of {name}, "
                                  "which is not on it", "its services, leases and records released"))
    busy = _macs_of(store, [u for u, v in vms.items() if _held(v, live, own_task)])  # a start may not have recorded its lease yet
    hd = host_dir(state_dir, h)
    for hosts_file in sorted((hd / "dnsmasq").glob("*.hosts")) if (hd / "dnsmasq").is_dir() else []:
        bridge = hosts_file.stem
        for line in vif.leases_file(hd, bridge).read_text().splitlines():
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


def resync_host(store: Store, state_dir: Path, host: Row, backend: Backend, own_task: str = "") -> list[Divergence]:
    """Plan, then repair each divergence (with a message); returns those repaired. HOST_OFFLINE
    if the host does not answer."""
    seen = _Seen("")
    plan = plan_host(store, state_dir, host, backend, own_task, seen)
    if seen.state == "unresponsive":
        raise XeError("HOST_OFFLINE", host["uuid"], name=host["name_label"],
                      reason="it does not answer; its VMs cannot be checked or changed")
    done = [d for d in plan if _repair(store, state_dir, host, backend, d, seen, own_task)]
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


def _repair(store: Store, state_dir: Path, host: Row, backend: Backend, d: Divergence, seen: _Seen,
            own_task: str) -> bool:
    """One repair, under the VM's lock (taken without waiting: a holder is at work on it) and
    after checking again that the divergence is still there. True if repaired."""
    from xetool.devices import vif

    h = host["uuid"]
    live_backend = backend if seen.state == "live" else None
    if d.kind == "stale-lease":
        bridge, mac = d.obj.split("/", 1)
        if not vif.remove_lease(host_dir(state_dir, h), bridge, mac):
            return False
        _message(store, d, "lease removed")
        return True
    try:
        lock = vm_lock(state_dir, d.obj).acquire(timeout=0)
    except XeError:
        return False  # another process works on this VM now; the next resync looks again
    try:
        if not _still(store, state_dir, host, live_backend, d, own_task):
            return False
        if d.kind in ("vm-of-earlier-boot", "vm-without-domain", "domain-shut-down"):
            problems = teardown.release_vm(store, state_dir, live_backend, h, d.obj)
            _release_vm_marks(store, d.obj, h)
            note = "Halted; reservation, marks, lease and runtime files released"
        elif d.kind in ("orphan-domain", "stale-runtime-file"):
            rt = runtime.load(state_dir, h, d.obj)
            if rt is None or (d.domid >= 0 and rt.domid not in (-1, d.domid)):
                rt = runtime.Runtime(d.obj, h, domid=d.domid, leases=rt.leases if rt else [])
            problems = teardown.release_on_host(state_dir, live_backend, rt)
            runtime.remove(state_dir, h, d.obj)
            note = "domain destroyed with its devices, services and lease" if d.kind == "orphan-domain" else \
                "services, leases and runtime records released"
        else:
            problems = []
            note = _adopt(store, d)
        if problems:
            note += "; not undone: " + "; ".join(problems)
        _message(store, d, note)
        return True
    finally:
        lock.release()


def _still(store: Store, state_dir: Path, host: Row, backend: Backend | None, d: Divergence, own_task: str) -> bool:
    """Under the VM's lock: is the divergence still there, found the same way?"""
    if d.kind == "stale-runtime-file":
        with store.read() as txn:
            vm = txn.get("vm", d.obj, VM_FIELDS)
            live = _live_tasks(txn)
        rt = runtime.load(state_dir, host["uuid"], d.obj)
        return rt is not None and (vm is None or (vm["resident_on"] != host["uuid"] and not _held(vm, live, own_task)))
    dom = backend.find_domain(d.obj) if backend is not None else None
    with store.read() as txn:
        vm = txn.get("vm", d.obj, VM_FIELDS)
        live = _live_tasks(txn)
        recorded_boot = txn.must("host", host["uuid"], ["boot_id"])["boot_id"]
    if vm is not None and _held(vm, live, own_task):
        return False
    if d.kind == "orphan-domain":
        if dom is None or dom.domid != d.domid:
            return False
        unfinished = backend is not None and vm is not None and dom.domid in inventory.half_built(backend, [dom])
        again = _domain_divergence(dom, vm, host, unfinished) if vm is None or vm["resident_on"] != host["uuid"] else None
        return again is not None and again.kind == "orphan-domain"
    if vm is None:
        return False
    if d.kind != "halted-vm-with-domain" and vm["resident_on"] != host["uuid"]:
        return False
    if d.kind == "halted-vm-with-domain":
        if dom is None or vm["power_state"] in ACTIVE or dom.domid in inventory.half_built(backend, [dom]):  # type: ignore[arg-type]
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
            else:
                continue
            done.append(d)
    for d in done:
        if d.kind != "dead-task":
            _message(store, d, d.repair)
    return done


# --- the pool, and the first touch of a host by a command ----------------------------------------

def _hosts(store: Store) -> list[Row]:
    with store.read() as txn:
        return txn.select("host", list(HOST_FIELDS))


def _worth_a_look(state_dir: Path, host: Row, backend: Backend) -> bool:
    """A simulated host that has never run, with nothing placed on it, has nothing to compare."""
    if host["backend"] != "simulator":
        return True
    return (host_dir(state_dir, host["uuid"]) / "hostd.log").exists()


def check_pool(store: Store, state_dir: Path) -> list[Divergence]:
    """Every divergence, in the store and between the store and each host; changes nothing
    (a host that is not running is not started)."""
    out = plan_store(store)
    for host in _hosts(store):
        backend = backend_for(state_dir, host)
        if _worth_a_look(state_dir, host, backend) or _has_residents(store, host["uuid"]):
            out += plan_host(store, state_dir, host, backend)
    return out


def repair_pool(store: Store, state_dir: Path) -> tuple[list[Divergence], list[Divergence]]:
    """The resync of every host and of the store's own marks: (repaired, left)."""
    done = repair_store(store, plan_store(store))
    for host in _hosts(store):
        backend = backend_for(state_dir, host)
        if not (_worth_a_look(state_dir, host, backend) or _has_residents(store, host["uuid"])):
            continue
        try:
            done += resync_host(store, state_dir, host, backend)
        except XeError:
            pass  # offline: check_pool below reports it as left
        _touched.add((str(state_dir), host["uuid"]))
    return done, check_pool(store, state_dir)


def _has_residents(store: Store, host: str) -> bool:
    with store.read() as txn:
        return bool(txn.uuids("vm", {"resident_on": host}))


_touched: set[tuple[str, str]] = set()


def touch(store: Store, state_dir: Path, host: Row, backend: Backend | None = None, *, start: bool = True,
          own_task: str = "") -> list[Divergence]:
    """A command reaches a host: start it if it is a simulated host that does not run (`start`),
    HOST_OFFLINE if it runs but does not answer, and resync it the first time this process
    touches it. Returns the repairs made."""
    backend = backend or backend_for(state_dir, host)
    if start:
        backend.ensure_running()
    key = (str(state_dir), host["uuid"])
    if key in _touched:
        return []
    done = resync_host(store, state_dir, host, backend, own_task)
    _touched.add(key)
    return done


def touch_vm_host(store: Store, state_dir: Path, vm: str) -> None:
    """Before an operation on a VM: resync the host the store places it on (not started if it
    does not run: its VMs are then Halted)."""
    with store.read() as txn:
        row = txn.must("vm", vm, ["resident_on"])
        host = txn.get("host", row["resident_on"], HOST_FIELDS) if row["resident_on"] else None
    if host is not None:
        touch(store, state_dir, host, start=False)


def forget_touches() -> None:
    """For tests that run several commands in one process."""
    _touched.clear()
