"""vm-start --dry-run: every check the start makes, in the start's order, with nothing changed.

The checks are the start's own functions, fed what the start would feed them: the VM's operation
(power state, allowed and current operations), each VBD's and VIF's attach check with the disk
behind it, the memory overhead the start computes, the placement checks on every host with the
chooser's order, and the host half's checks of the record it would be given. The first failure
in the start's order is the error the start would give.
"""

from __future__ import annotations

from xetool import lifecycle
from xetool.errors import XeError
from xetool.master.snapshot import pool_view, read_vm
from xetool.placement import choose
from xetool.placement.checks import VmFacts, describe
from xetool.placement.memory import MIB, host_free_memory, needed_memory, vm_compute_memory_overhead
from xetool.placement.report import PlacementReport
from xetool.records import field, record, replace

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from xetool.store.db import Row, Store, Txn

CATEGORY_MEANING = {
    "affinity": "the VM's affinity host, tried before any other",
    "definite": "room for the VM even with every guest at its static-max",
    "probable": "room with every guest at its dynamic-max",
    "possible": "room only with guests squeezed towards dynamic-min",
    "start_on": "named by on=",
}
TRY_MEANING = ("try: the order the chooser tries the hosts in (it starts the VM on the first one that passes "
               "every check); '-' for a host outside every category, which it never tries")
DRAW_MEANING = ("within a category hosts are sorted by room, roomiest first, and each try draws index "
                "floor(n * u * u) of the n left (u uniform in [0, 1)): a draw biased to the roomiest; "
                "seed=N repeats one")


@record(frozen=True)
class Item:
    """One checked thing before the hosts: the operation, a disk, a VIF, the parameters."""

    kind: str  # operation | disk | vif | parameters | host-half
    label: str
    detail: str
    error: XeError | None = None
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "label": self.label, "detail": self.detail, "passed": self.error is None,
                "reason": self.reason or None, "error": self.error.to_json() if self.error else None}


@record(frozen=True)
class HostLine:
    uuid: str
    name: str
    try_index: int | None
    category: str
    verdict: str  # "would start", "passes (tried later)", "refused: <reasons>"
    needed: int  # bytes: the memory check's figures
    free: int
    room: int  # the value the host was sorted by in its category (bytes; possible: per mille)

    @property
    def after(self) -> int:
        return self.free - self.needed

    def to_json(self) -> dict[str, Any]:
        return {"host": self.uuid, "name_label": self.name, "try": self.try_index, "category": self.category,
                "verdict": self.verdict, "memory": {"needed": self.needed, "free": self.free, "after": self.after}}


@record
class Preview:
    vm: str
    name: str
    op: str
    items: list[Item] = field(default_factory=list)
    hosts: list[HostLine] = field(default_factory=list)
    report: PlacementReport | None = None
    host: str | None = None  # where the start would run
    host_name: str = ""
    category: str = ""
    error: XeError | None = None  # the first failure in the start's order
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.error is None:
            return f"would start on {self.host_name} ({self.category})"
        return f"refused: {self.error.code} ({self.reason_of(self.error)})"

    def reason_of(self, err: XeError) -> str:
        for item in self.items:
            if item.error is err:
                return item.reason
        return describe(err)

    def lines(self) -> list[str]:
        out = [f"vm-start {self.name} ({self.vm}) --dry-run: {self.verdict}"]
        before = [i for i in self.items if i.kind != "host-half"]
        after = [i for i in self.items if i.kind == "host-half"]
        out += ["", "The VM, its disks and VIFs (checked once, before any host, in the start's order):"]
        out += _item_lines(before)
        out += ["", "The hosts (memory in MiB: what the VM needs, what is free, what is left after the start, as"
                    " the memory check counts them, the broker's figure where it has reported; room: what the"
                    " chooser sorts by in the host's category):"]
        out += self.host_lines()
        where = f"on {self.host_name}" if self.host else "on the host the start would choose"
        out += ["", f"The host half, {where} (its checks of the VM record it is given):"]
        out += _item_lines(after)
        out += ["", "Why this order:", f"  {TRY_MEANING}."]
        used = [c for c in CATEGORY_MEANING if any(h.category == c for h in self.hosts)]
        out += [f"  category {c}: {CATEGORY_MEANING[c]}" for c in used]
        out.append(f"  {DRAW_MEANING}.")
        out += [f"  {note}" for note in self.notes]
        return out

    def host_lines(self) -> list[str]:
        """The table of hosts: one verdict per host, with the memory check's figures."""
        rows = [("host", "try", "category", "room", "needed", "free", "after", "verdict")]
        for h in self.hosts:
            room = "-" if h.category not in ("definite", "probable", "possible") else (
                f"{h.room}/1000" if h.category == "possible" else str(h.room // MIB))
            rows.append((h.name, str(h.try_index or "-"), h.category, room, str(-(-h.needed // MIB)),
                         str(h.free // MIB), str(h.after // MIB) if h.after >= 0 else f"short {-(h.after // MIB)}",
                         h.verdict))
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
        return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]

    def to_json(self) -> dict[str, Any]:
        return {"vm": self.vm, "name_label": self.name, "operation": self.op, "would_start": self.error is None,
                "host": self.host, "category": self.category or None, "verdict": self.verdict,
                "error": self.error.to_json() if self.error else None, "checks": [i.to_json() for i in self.items],
                "hosts": [h.to_json() for h in self.hosts], "placement": self.report.to_json() if self.report else None,
                "notes": self.notes}


def _item_lines(items: list[Item]) -> list[str]:
    width = max((len(i.label) for i in items), default=0)
    out = []
    for i in items:
        if i.error is None:
            out.append(f"  {i.label.ljust(width)}  pass     {i.detail}")
        else:
            out.append(f"  {i.label.ljust(width)}  refused  {i.detail}: {i.reason} [{i.error.code}]")
    return out


def preview_start(store: Store, vm_uuid: str, on: str | None, seed: int | None,
                  force: bool = False) -> Preview:
    """Every check `vm-start` makes for the VM, in its order; nothing is written."""
    from xetool.master.vm_start import rng_for

    with store.read() as txn:
        vm = txn.must("vm", vm_uuid)
        names = _names(txn)
        p = Preview(vm_uuid, vm["name_label"], "start_on" if on else "start")
        err = lifecycle.vm_operation_error(vm, p.op)
        p.items.append(Item("operation", "operation", f"{p.op}, power state {vm['power_state'].lower()}", err,
                            describe(err) if err else ""))
        _devices(txn, p, vm, names)
        view = read_vm(txn, vm_uuid)
        view = replace(view, memory_overhead=vm_compute_memory_overhead(view))  # compute_memory_overhead's figure
        pool = pool_view(txn)
        host_rows = {h["uuid"]: h for h in txn.select("host", ["uuid", "name_label", "backend", "memory_total",
                                                                 "dom0_memory", "cpu_count", "capabilities",
                                                                 "hostname", "current_operations"])}
        boot_disk = _boot_disk(txn, vm_uuid)
        devices = [v["userdevice"] for v in txn.select("vbd", ["userdevice"], {"VM": vm_uuid})]
    facts = VmFacts.of(view)
    report = choose.explain_placement(view, pool, rng_for(seed))
    p.report = report
    _placement(p, view, facts, pool, report, on, names)
    _host_half(p, vm, view, devices, boot_disk, host_rows, force)
    if pool.wlb is not None and pool.wlb.active and not on:
        p.notes.append("workload balancing is on: the start asks the recommender first and checks its host "
                       "the same way; shown is the default chooser")
    return p


def _names(txn: Txn) -> dict[str, str]:
    out = {}
    for cls in ("sr", "network", "vdi", "host", "vm"):
        out.update({r["uuid"]: r["name_label"] for r in txn.select(cls, ["uuid", "name_label"])})
    return out


def _devices(txn: Txn, p: Preview, vm: Row, names: dict[str, str]) -> None:
    """with_vbds_marked's and with_vifs_marked's checks, each device in the order they mark them."""
    for uuid in txn.uuids("vbd", {"VM": vm["uuid"]}):
        vbd = txn.must("vbd", uuid)
        vdi = txn.get("vdi", vbd["VDI"], ["name_label", "SR", "sharable", "read_only"]) if vbd["VDI"] else None
        if vbd["empty"] or not vbd["VDI"]:
            detail = f"empty {vbd['type']} drive"
        elif vdi is None:
            detail = f"VDI {vbd['VDI']} (no record)"
        else:
            flags = ", ".join(f for f, on in (("sharable", vdi["sharable"]), ("read-only", vdi["read_only"])) if on)
            detail = (f"VDI \"{vdi['name_label']}\" on SR \"{names.get(vdi['SR'], vdi['SR'])}\", "
                      f"{vbd['mode']}" + (f" ({flags})" if flags else ""))
        err = lifecycle.vbd_attach_error(txn, vbd, vm, "attach", starting=True)
        reason = ""
        if err is not None:
            reason = describe(err, None, names)
            if err.code == "VDI_IN_USE":
                users = lifecycle.vdi_users(txn, vbd["VDI"], vbd, starting=True)
                reason += ": " + ", ".join(_holder(u, names) for u in users)
        p.items.append(Item("disk", f"disk {vbd['userdevice']}", detail, err, reason))
    for uuid in txn.uuids("vif", {"VM": vm["uuid"]}):
        vif = txn.must("vif", uuid)
        net = txn.get("network", vif["network"], ["name_label", "bridge", "other_config"])
        detail = f"MAC {vif['MAC']}"
        if net is not None:
            detail = f"network \"{net['name_label']}\" ({net['bridge']}), " + detail
            if net["other_config"].get("is_guest_installer_network") == "true":
                detail += ", a DHCP lease on the host at start"
        err = lifecycle.vif_operation_error(vif, vm, "attach")
        p.items.append(Item("vif", f"vif {vif['device']}", detail, err, describe(err) if err else ""))


def _holder(vbd: dict[str, Any], names: dict[str, str]) -> str:
    owner = vbd["owner"]
    where = f" on {names.get(owner['resident_on'], owner['resident_on'])}" if owner["resident_on"] else ""
    state = "starting" if vbd["current_operations"] and not vbd["currently_attached"] else owner["power_state"].lower()
    return f"VM \"{owner['name_label']}\" ({state}{where}, {vbd['mode']})"


def _boot_disk(txn: Txn, vm: str) -> tuple[Path, dict[str, str]] | None:
    from pathlib import Path

    from xetool.store.objects import sr_path

    for vbd in txn.select("vbd", ["VDI", "bootable"], {"VM": vm}):
        if vbd["bootable"] and vbd["VDI"]:
            vdi = txn.get("vdi", vbd["VDI"], ["SR", "location", "other_config"])
            if vdi is not None:
                return Path(sr_path(txn, vdi["SR"])) / vdi["location"], vdi["other_config"]
    return None


def _placement(p: Preview, view: Any, facts: VmFacts, pool: Any, report: PlacementReport, on: str | None,
               names: dict[str, str]) -> None:
    """allocate_vm_to_host: the VM's own parameters and disks first, then every host."""
    rooms = {h.uuid: (d, pr, po) for h, d, pr, po in choose.host_values(view, pool)}
    order = {s.host: (i, s.category) for i, s in enumerate(report.order, 1)}
    chosen = report.chosen
    if on:
        chosen = on if all(h.ok for h in report.hosts if h.uuid == on) else None
        order = {on: (1, "start_on")}
    for h in report.hosts:
        index, category = order.get(h.uuid, (None, "not tried"))
        if h.ok:
            verdict = "would start" if h.uuid == chosen else ("passes (tried later)" if index else "passes (not tried)")
        else:
            verdict = "refused: " + "; ".join(describe(c.error, pool, names) if c.error else c.reason or c.name
                                              for c in h.failures)
        host = pool.host(h.uuid)  # the memory check's own figures: the broker's once it has reported
        needed, free = needed_memory(host, view), host_free_memory(host, pool, view)
        col = {"definite": 0, "probable": 1, "possible": 2}.get(category, 0)
        p.hosts.append(HostLine(h.uuid, h.name_label or h.uuid, index, category, verdict, needed, free,
                                rooms.get(h.uuid, (0, 0, 0))[col]))
    if any(i.error for i in p.items):
        p.error = next(i.error for i in p.items if i.error)
        return
    if on:
        failures = next((h.failures for h in report.hosts if h.uuid == on), ())
        err = failures[0].error if failures else None
    elif facts.invalid is not None:
        err = facts.invalid
    elif view.disk_failure is not None:
        err = XeError(view.disk_failure[0], *view.disk_failure[1])
    else:
        err = None if chosen else choose.no_hosts_available(view, pool, report.order)
    if err is not None:
        p.items.append(Item("placement", "placement", "allocate_vm_to_host", err, describe(err, pool, names)))
        p.error = err
        return
    p.host = chosen
    p.host_name = names.get(chosen or "", chosen or "")
    p.category = order[chosen][1] if chosen in order else "start_on"


def _host_half(p: Preview, vm: Row, view: Any, devices: list[str], boot_disk: Any, host_rows: dict[str, Row],
               force: bool) -> None:
    """The host half's checks of the record it would be given, on the host the start would use."""
    from xetool.devices import bootloader
    from xetool.host import parameters

    host = host_rows.get(p.host or "")
    checks: list[tuple[str, str, Any]] = [
        ("check_vm_parameters", "VCPUs, VBD devices, minimum memory", lambda: parameters.check_vm_parameter(vm, devices)),
        ("memory pinning", "platform:nested-virt", lambda: parameters.assert_memory_constraints(vm, force)),
        ("domain parameters", "VCPUs-params, other-config:machine-address-size", lambda: parameters.domain_parameters(vm)),
    ]
    checks.append(("kernel", "PV-kernel, bootloader or hvmloader", lambda: _kernel(bootloader.precheck(
        vm, view.hvm, boot_disk, host is None or host["backend"] == "simulator"))))
    if host is not None:
        op_err = lifecycle.host_operation_error(host, "vm_start")
        if op_err is not None:
            checks.insert(0, ("host operations", f"{host['name_label']} current operations", _raiser(op_err)))
    for label, detail, check in checks:
        try:
            note = check()
            err = None
        except XeError as e:
            note, err = "", e
        item = Item("host-half", label, detail + (f": {note}" if isinstance(note, str) and note else ""),
                    err, describe(err) if err else "")
        p.items.append(item)
        if err is not None and p.error is None:
            p.error = err


def _raiser(err: XeError) -> Any:
    def check() -> None:
        raise err
    return check


def _kernel(kernel: Any) -> str:
    return f"{kernel.source} {kernel.kernel}" if kernel is not None else "pygrub reads the disk at start"
