"""Pool definitions in TOML: `pool-import` and `pool-export`.

A definition names hosts, SRs, networks and VMs (with their disks and VIFs). Objects are matched
to the pool by uuid when the file gives one, else by name-label; matched objects get the declared
fields, missing ones are created, nothing is removed. The whole import is one write transaction:
a bad value anywhere imports nothing. `pool-export` writes uuids too, so its output imports back
to the same pool.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from xetool import limits
from xetool.datamodel import get_class
from xetool.datamodel.types import Field, Kind
from xetool.errors import XeError
from xetool.records import field, record
from xetool.store import objects
from xetool.store.codec import UUID_RE, map_entry, parse_cli, show
from xetool.store.db import Row, Txn
from xetool.units import parse_size

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Collection
    from typing import Any

    from xetool.storage.disks import Made

RESERVED_HOST_MEMORY = 72 << 20  # squeezed keeps this back on every host (xapi reference 3.3)
_LINE = re.compile(r"line (\d+), column (\d+)")


def load(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise XeError("FILE_NOT_READABLE", path, err.strerror) from None
    except UnicodeDecodeError as err:
        raise XeError("TOML_SYNTAX_ERROR", path, "?", "?", f"not UTF-8 ({err.reason})") from None
    try:
        data: dict[str, Any] = tomllib.loads(text)  # tomli (Python 3.10) has no types
        return data
    except tomllib.TOMLDecodeError as err:
        m = _LINE.search(str(err))
        line, col = (m.group(1), m.group(2)) if m else ("?", "?")
        raise XeError("TOML_SYNTAX_ERROR", path, line, col, str(err).split(" (at")[0]) from None


@record
class Importer:
    txn: Txn
    file: str
    state_dir: Path
    created_files: list[Made] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    names: dict[str, dict[str, str]] = field(default_factory=dict)  # class -> name -> uuid

    def bad(self, table: str, key: str, reason: str) -> XeError:
        return XeError("POOL_DEFINITION_INVALID", self.file, table, key, reason)

    def within(self, table: str, step: Callable[..., None], *args: Any) -> None:
        """Import one table; a registry error from below (a bound, a reference) is reported as a
        bad value of that table, with the key it names."""
        try:
            step(self, table, *args)
        except XeError as err:
            if err.code in ("POOL_DEFINITION_INVALID", "TOML_SYNTAX_ERROR"):
                raise
            key = err.params.get("field") or err.params.get("param") or err.params.get("device") or "-"
            detail = ", ".join(f"{k}={v}" for k, v in err.params.items())
            raise self.bad(table, key, f"{err.code}: {err.spec.doc} {detail}".strip()) from None

    # --- values --------------------------------------------------------------------------------
    def value(self, table: str, f: Field, raw: Any) -> Any:
        """A TOML value as the field's kind, with the table and key named on failure."""
        try:
            if f.kind is Kind.MAP:
                if not isinstance(raw, dict):
                    raise self.bad(table, f.cli_name, "expected a table of strings")
                return dict(map_entry(f, str(k), str(v).lower() if isinstance(v, bool) else str(v))
                            for k, v in raw.items())
            if f.kind is Kind.SET:
                if not isinstance(raw, list):
                    raise self.bad(table, f.cli_name, "expected a list")
                return [parse_cli(f, str(v)) for v in raw]
            if isinstance(raw, int) and not isinstance(raw, bool) and f.kind is Kind.INT:
                raw = str(raw)
            if f.kind is Kind.BOOL and isinstance(raw, bool):
                return raw
            if f.kind is Kind.REF:
                return self.ref(table, f, str(raw))
            if isinstance(raw, (dict, list)):
                raise self.bad(table, f.cli_name, f"expected a {f.kind.value}")
            return parse_cli(f, str(raw).lower() if isinstance(raw, bool) else str(raw))
        except XeError as err:
            if err.code == "POOL_DEFINITION_INVALID":
                raise
            raise self.bad(table, f.cli_name, err.spec.doc + " " + ", ".join(f"{k}={v}" for k, v in err.params.items())) from None

    def size(self, table: str, key: str, raw: Any, bound: tuple[str, str] | None = None) -> int:
        """A size; with `bound` (class, field), also within that field's limits."""
        try:
            value = parse_size(raw, key)
            if bound is not None:
                limits.check_int(get_class(bound[0]).field_named(bound[1]), value, key)
            return value
        except XeError as err:
            detail = err.params.get("expected") or err.params.get("reason") or ""
            raise self.bad(table, key, f"{err.spec.doc} {detail}".strip()) from None

    def ref(self, table: str, f: Field, text: str, key: str | None = None) -> str | None:
        if not text:
            return None
        if UUID_RE.match(text):
            self.txn.must(f.ref, text.lower(), ["uuid"])
            return text.lower()
        found = self.names.get(f.ref, {}).get(text)
        if found is None:
            rows = self.txn.select(f.ref, ["uuid"], {"name_label": text})
            if len(rows) != 1:
                raise self.bad(table, key or f.cli_name, f"no single {f.ref} is named {text!r}")
            found = rows[0]["uuid"]
        return found

    def fields(self, cls: str, table: str, data: dict[str, Any], skip: set[str]) -> dict[str, Any]:
        """Datamodel fields given by CLI name (writable ones, plus `uuid`)."""
        spec = get_class(cls)
        out: dict[str, Any] = {}
        for key, raw in data.items():
            if key in skip:
                continue
            f = spec.field(key)
            if f is None or not (f.settable or f.name in ("uuid", "name_label")):
                raise self.bad(table, key, "unknown key" if f is None else "read-only field")
            out[f.name] = self.value(table, f, raw)
        return out

    # --- matching and writing ------------------------------------------------------------------
    def upsert(self, cls: str, table: str, values: dict[str, Any], match: dict[str, Any] | None = None,
               create: Callable[[dict[str, Any]], str] | None = None) -> str:
        existing: Row | None = None
        if values.get("uuid"):
            existing = self.txn.get(cls, values["uuid"])
        elif match is not None:
            rows = self.txn.select(cls, None, match)
            if len(rows) > 1:
                raise self.bad(table, "name-label", f"{len(rows)} existing {cls}s match; give uuid=")
            existing = rows[0] if rows else None
        if existing is None:
            uuid = create(values) if create else self.txn.insert(cls, values)
            self.changes.append(f"created {cls} {values.get('name_label') or uuid}")
            return uuid
        diff = {k: v for k, v in values.items() if existing.get(k) != v and k != "uuid"}
        if diff:
            from xetool import constraints

            constraints.check_update(self.txn, cls, existing, diff)
            self.txn.update(cls, existing["uuid"], diff)
            spec = get_class(cls)  # the report names fields as the CLI does (name-label, not name_label)
            names = sorted(f.cli_name if (f := spec.field(k)) is not None else k for k in diff)
            self.changes.append(f"updated {cls} {existing.get('name_label') or existing['uuid']}: {', '.join(names)}")
        return str(existing["uuid"])

    def named(self, cls: str, name: str, uuid: str) -> None:
        table = self.names.setdefault(cls, {})
        if name in table and table[name] != uuid:
            raise self.bad(cls, "name-label", f"{name!r} is declared twice")
        table[name] = uuid


def _tables(doc: dict[str, Any], key: str, file: str) -> list[dict[str, Any]]:
    items = doc.get(key, [])
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise XeError("POOL_DEFINITION_INVALID", file, key, key, f"expected [[{key}]] tables")
    return items


def _check_duplicates(imp: Importer, doc: dict[str, Any]) -> None:
    """Two tables that declare the same object (by name-label or uuid) would be merged into one
    by the matching; refuse them before anything is made. So do two disks or two VIFs of one VM
    on the same device."""
    for cls in ("host", "sr", "network", "vm"):
        seen: dict[tuple[str, str], str] = {}
        for n, data in enumerate(_tables(doc, cls, imp.file)):
            table = f"{cls}[{n}]"
            for key in ("name-label", "uuid"):
                value = data.get(key)
                if not isinstance(value, str) or not value:
                    continue
                mark = (key, value.lower() if key == "uuid" else value)
                if mark in seen:
                    raise imp.bad(table, key, f"{value!r} is declared twice (also in {seen[mark]})")
                seen[mark] = table
            if cls == "vm":
                for part in ("disk", "vif"):
                    _check_devices(imp, table, part, _tables(data, part, imp.file))


def _check_devices(imp: Importer, table: str, part: str, items: list[dict[str, Any]]) -> None:
    seen: dict[str, int] = {}
    for n, item in enumerate(items):
        device = str(item.get("device", "autodetect"))
        if device == "autodetect":
            continue
        number = str(int(device)) if device.isdigit() else device
        if number in seen:
            raise imp.bad(f"{table}.{part}[{n}]", "device",
                          f"device {device} is declared twice (also in {table}.{part}[{seen[number]}])")
        seen[number] = n


def _need_name(imp: Importer, table: str, data: dict[str, Any]) -> str:
    name = data.get("name-label")
    if not isinstance(name, str) or not name:
        raise imp.bad(table, "name-label", "every object needs a name-label")
    return name


def _host_names(imp: Importer, table: str, data: dict[str, Any]) -> list[str]:
    hosts = data.get("hosts")
    if hosts is None:
        return list(imp.names.get("host", {}).values()) or imp.txn.uuids("host")
    if not isinstance(hosts, list):
        raise imp.bad(table, "hosts", "expected a list of host names")
    host_ref = get_class("pif").field_named("host")
    found = []
    for h in hosts:
        host = imp.ref(table, host_ref, str(h), "hosts")
        if host is None:
            raise imp.bad(table, "hosts", "an empty host name")
        found.append(host)
    return found


def import_pool(txn: Txn, doc: dict[str, Any], file: str, state_dir: Path,
                created_files: list[Made] | None = None) -> Importer:
    """Import `doc`; the disk files made are appended to `created_files` as they are made, so
    that the caller can remove them if the transaction fails."""
    imp = Importer(txn, file, state_dir, created_files if created_files is not None else [])
    known = {"pool", "host", "sr", "network", "vm"}
    for key in doc:
        if key not in known:
            raise imp.bad(key, key, "unknown table (pool, host, sr, network, vm)")
    pool = doc.get("pool", {})
    if pool:
        imp.upsert("pool", "pool", imp.fields("pool", "pool", pool, {"master"}) | {"uuid": txn.pool()["uuid"]})
    _check_duplicates(imp, doc)
    for n, h in enumerate(_tables(doc, "host", file)):
        imp.within(f"host[{n}]", _import_host, h)
    if pool.get("master"):
        master = imp.ref("pool", get_class("pool").field_named("master"), str(pool["master"]), "master")
        imp.upsert("pool", "pool", {"uuid": txn.pool()["uuid"], "master": master})
    elif txn.pool()["master"] is None and txn.uuids("host"):
        txn.update("pool", txn.pool()["uuid"], {"master": txn.uuids("host")[0]})
    for n, s in enumerate(_tables(doc, "sr", file)):
        imp.within(f"sr[{n}]", _import_sr, s)
    for n, net in enumerate(_tables(doc, "network", file)):
        imp.within(f"network[{n}]", _import_network, net)
    for n, vm in enumerate(_tables(doc, "vm", file)):
        imp.within(f"vm[{n}]", _import_vm, vm)
    return imp


def _import_host(imp: Importer, table: str, data: dict[str, Any]) -> None:
    name = _need_name(imp, table, data)
    special = {"memory", "dom0-memory", "cpus", "capabilities", "backend", "hostname"}
    values = imp.fields("host", table, data, special)
    total = imp.size(table, "memory", data.get("memory", "16GiB"), ("host", "memory_total"))
    dom0 = imp.size(table, "dom0-memory", data.get("dom0-memory", "1GiB"), ("host", "dom0_memory"))
    if dom0 >= total:
        raise imp.bad(table, "dom0-memory", "must be less than memory")
    caps = data.get("capabilities", ["pv", "hvm"])
    if not isinstance(caps, list) or not set(caps) <= {"pv", "hvm", "hap"}:
        raise imp.bad(table, "capabilities", "a list of pv, hvm, hap")
    backend = data.get("backend", "simulator")
    if backend not in ("simulator", "xen"):
        raise imp.bad(table, "backend", "simulator or xen")
    cpus = data.get("cpus", 4)
    if not isinstance(cpus, int) or isinstance(cpus, bool) or not 1 <= cpus <= 4096:
        raise imp.bad(table, "cpus", "a whole number of CPUs")
    overhead = dom0 + RESERVED_HOST_MEMORY
    static = {"memory_total": total, "dom0_memory": dom0, "cpu_count": cpus, "cpu_info": cpu_info(cpus, backend),
              "capabilities": list(caps),
              "backend": backend, "hostname": str(data.get("hostname", name))}
    values = {**values, **static}
    existing = imp.txn.get("host", values["uuid"]) if values.get("uuid") else None
    if existing is None and not values.get("uuid"):
        rows = imp.txn.select("host", ["uuid"], {"name_label": name})
        existing = rows[0] if len(rows) == 1 else None
    if existing is None:
        # until its memory broker first reports: the hypervisor's free memory at boot, and that
        # less the broker's reserve
        values |= {"memory_overhead": overhead, "memory_free": total - dom0, "memory_free_computed": total - overhead}
    uuid = imp.upsert("host", table, values, {"name_label": name})
    imp.named("host", name, uuid)


def cpu_info(cpus: int, backend: str) -> dict[str, str]:
    """Host.cpu_info as far as xetool knows it: the count, and for a simulated host what it is."""
    info = {"cpu_count": str(cpus)}
    if backend == "simulator":
        info |= {"vendor": "xetool", "modelname": "simulated CPU"}
    return info


def _import_sr(imp: Importer, table: str, data: dict[str, Any]) -> None:
    from xetool.master.ssh import is_remote

    name = _need_name(imp, table, data)
    if data.get("type", "file") != "file":
        raise imp.bad(table, "type", "xetool has the file SR driver only")
    values = imp.fields("sr", table, data, {"type", "hosts", "path", "shared", "content-type"})
    values |= {"shared": bool(data.get("shared", True)), "content_type": str(data.get("content-type", "user"))}
    uuid = imp.upsert("sr", table, values, {"name_label": name})
    imp.named("sr", name, uuid)
    hosts = _host_names(imp, table, data)
    if hosts and all(is_remote(imp.txn.must("host", h, ["address", "ssh_alias"])) for h in hosts) \
            and not Path(str(data.get("path") or "")).is_absolute():
        raise imp.bad(table, "path", "the SR's directory on its hosts, an absolute path (its hosts are all remote)")
    path = str(data.get("path") or imp.state_dir / "srs" / uuid)
    if not Path(path).is_absolute():
        path = str(imp.state_dir / path)
    for host in hosts:
        match = {"host": host, "SR": uuid}
        imp.upsert("pbd", table, {**match, "device_config": {"path": path}}, match)


def _import_network(imp: Importer, table: str, data: dict[str, Any]) -> None:
    name = _need_name(imp, table, data)
    values = imp.fields("network", table, data, {"bridge", "hosts", "guest-installer"})
    if data.get("bridge"):
        values["bridge"] = str(data["bridge"])
    if data.get("guest-installer"):
        values["other_config"] = {**values.get("other_config", {}), "is_guest_installer_network": "true"}
    uuid = imp.upsert("network", table, values, {"name_label": name}, lambda v: objects.create_network(imp.txn, v))
    imp.named("network", name, uuid)
    for host in _host_names(imp, table, data):
        if not imp.txn.select("pif", ["uuid"], {"host": host, "network": uuid}):
            objects.create_pif(imp.txn, host, uuid)
            imp.changes.append(f"created pif of {name}")


def _import_vm(imp: Importer, table: str, data: dict[str, Any]) -> None:
    name = _need_name(imp, table, data)
    values = imp.fields("vm", table, data, {"memory", "vcpus", "hvm", "disk", "vif"})
    if "memory" in data:
        shortcut = objects.memory_of_size(imp.size(table, "memory", data["memory"], ("vm", "memory_static_max")))
        # an explicit dynamic-min below 128 MiB pulls static-min down with it
        dynamic_min = values.get("memory_dynamic_min", shortcut["memory_dynamic_min"])
        shortcut["memory_static_min"] = min(shortcut["memory_static_min"], dynamic_min)
        for key, value in shortcut.items():
            values.setdefault(key, value)
    if "vcpus" in data:
        vcpus = data["vcpus"]
        if not isinstance(vcpus, int) or isinstance(vcpus, bool):
            raise imp.bad(table, "vcpus", "a whole number")
        if not 1 <= vcpus <= limits.VCPUS_MAX:
            raise imp.bad(table, "vcpus", f"1 to {limits.VCPUS_MAX} vCPUs")
        values.setdefault("VCPUs_max", vcpus)
        values.setdefault("VCPUs_at_startup", vcpus)
    if data.get("hvm"):
        values.setdefault("HVM_boot_policy", "BIOS order")
        values.setdefault("HVM_boot_params", {"order": "cd"})
        values.setdefault("domain_type", "hvm")
    elif "hvm" in data:
        values.setdefault("domain_type", "pv")
    uuid = imp.upsert("vm", table, values, {"name_label": name, "is_a_template": False},
                      lambda v: objects.create_vm(imp.txn, v))
    imp.named("vm", name, uuid)
    for n, disk in enumerate(_tables(data, "disk", imp.file)):
        imp.within(f"{table}.disk[{n}]", _import_disk, uuid, name, disk)
    for n, vif in enumerate(_tables(data, "vif", imp.file)):
        imp.within(f"{table}.vif[{n}]", _import_vif, uuid, name, vif)


def _import_disk(imp: Importer, table: str, vm: str, vm_name: str, data: dict[str, Any]) -> None:
    allowed = {"device", "size", "sr", "name-label", "bootable", "mode", "type", "vdi-uuid", "uuid", "boot", "read-only"}
    for key in data:
        if key not in allowed:
            raise imp.bad(table, key, "unknown key (" + ", ".join(sorted(allowed)) + ")")
    device = str(data.get("device", "autodetect"))
    vbd_spec = get_class("vbd")
    vbd_values: dict[str, Any] = {k: imp.value(table, vbd_spec.field_named(k), data[k]) for k in ("bootable", "mode", "type") if k in data}
    existing = imp.txn.select("vbd", None, {"VM": vm, "userdevice": device}) if device != "autodetect" else []
    if existing:
        diff = {k: v for k, v in vbd_values.items() if existing[0][k] != v}
        if diff:
            imp.txn.update("vbd", existing[0]["uuid"], diff)
            imp.changes.append(f"updated vbd {device} of {vm_name}")
        return
    vdi = data.get("vdi-uuid")
    if vdi is not None and not (UUID_RE.match(str(vdi)) and imp.txn.get("vdi", str(vdi).lower(), ["uuid"])):
        if not UUID_RE.match(str(vdi)) or "size" not in data:
            raise imp.bad(table, "vdi-uuid", f"no VDI {vdi} (give size= and sr= to create it)")
    else:
        vdi = str(vdi).lower() if vdi else None
    if vdi is not None and imp.txn.get("vdi", vdi.lower(), ["uuid"]) is None or vdi is None and data.get("type") != "CD":
        sr = imp.ref(table, get_class("vdi").field_named("SR"), str(data.get("sr", "")), "sr")
        if sr is None:
            sr = imp.txn.pool()["default_SR"] or next(iter(imp.names.get("sr", {}).values()), None)
        if sr is None:
            raise imp.bad(table, "sr", "no SR given and the pool has no default SR")
        size = imp.size(table, "size", data.get("size", "1GiB"), ("vdi", "virtual_size"))
        vdi_values = {"name_label": str(data.get("name-label", f"{vm_name} disk {device}"[:limits.NAME_MAX])), "virtual_size": size,
                      "read_only": bool(data.get("read-only", False))}
        if isinstance(data.get("boot"), dict):
            vdi_values["other_config"] = {f"boot-{k}": str(v) for k, v in data["boot"].items()}
        if vdi is not None:
            vdi_values["uuid"] = vdi.lower()
        vdi = objects.create_vdi(imp.txn, sr, vdi_values, imp.created_files)
    values = {**vbd_values, "userdevice": device, "uuid": data.get("uuid")}
    if vdi:
        values["VDI"] = vdi
    objects.create_vbd(imp.txn, vm, {k: v for k, v in values.items() if v is not None})
    imp.changes.append(f"created vbd {device} of {vm_name}")


def _import_vif(imp: Importer, table: str, vm: str, vm_name: str, data: dict[str, Any]) -> None:
    for key in data:
        if key not in ("device", "network", "mac", "uuid"):
            raise imp.bad(table, key, "unknown key (device, network, mac, uuid)")
    device = str(data.get("device", "autodetect"))
    net = imp.ref(table, get_class("vif").field_named("network"), str(data.get("network", "")), "network")
    if net is None:
        raise imp.bad(table, "network", "every VIF needs a network")
    if device != "autodetect" and imp.txn.select("vif", ["uuid"], {"VM": vm, "device": device}):
        return
    made = objects.create_vif(imp.txn, vm, net, device, data.get("mac"), data.get("uuid"))
    imp.changes.append(f"created vif {imp.txn.must('vif', made, ['device'])['device']} of {vm_name}")


# --- export ----------------------------------------------------------------------------------------

def _export_fields(cls: str, row: Row, skip: Collection[str] = frozenset()) -> dict[str, Any]:
    spec = get_class(cls)
    out: dict[str, Any] = {"uuid": row["uuid"]}
    for f in spec.fields:
        if not f.settable or f.name in skip or not f.persisted:
            continue
        value = row[f.name]
        if value == f.initial() and f.name != "name_label":
            continue
        out[f.cli_name] = value if f.kind in (Kind.MAP, Kind.SET, Kind.INT, Kind.FLOAT, Kind.BOOL) else show(f, value)
        if f.kind is Kind.REF:
            out[f.cli_name] = value
    return out


def _export_path(path: str, state_dir: Path | None) -> str:
    """An SR directory inside the state directory is written relative to it, so that the file
    imports into another state directory without sharing (and colliding on) its disk files."""
    if state_dir is not None and Path(path).is_relative_to(state_dir):
        return str(Path(path).relative_to(state_dir))
    return path


def export_pool(txn: Txn, state_dir: Path | None = None) -> dict[str, Any]:
    pool = txn.pool()
    doc: dict[str, Any] = {"pool": _export_fields("pool", pool)}
    if pool["master"]:
        doc["pool"]["master"] = pool["master"]
    del doc["pool"]["uuid"]
    doc["host"] = []
    for h in txn.select("host"):
        doc["host"].append(_export_fields("host", h) | {
            "memory": h["memory_total"], "dom0-memory": h["dom0_memory"], "cpus": h["cpu_count"],
            "capabilities": h["capabilities"], "backend": h["backend"], "hostname": h["hostname"]})
    doc["sr"] = []
    for s in txn.select("sr"):
        pbds = txn.select("pbd", ["host", "device_config"], {"SR": s["uuid"]})
        doc["sr"].append(_export_fields("sr", s) | {"type": s["type"], "shared": s["shared"],
                         "hosts": [p["host"] for p in pbds], "path": _export_path(pbds[0]["device_config"].get("path", ""), state_dir) if pbds else ""})
    doc["network"] = []
    for n in txn.select("network"):
        doc["network"].append(_export_fields("network", n) | {
            "bridge": n["bridge"], "hosts": [p["host"] for p in txn.select("pif", ["host"], {"network": n["uuid"]})]})
    doc["vm"] = []
    for vm in txn.select("vm", None, {"is_a_template": False, "is_control_domain": False}):
        entry = _export_fields("vm", vm)
        entry["disk"] = [_export_disk(txn, vbd) for vbd in txn.select("vbd", None, {"VM": vm["uuid"]})]
        entry["vif"] = [{"uuid": v["uuid"], "device": v["device"], "network": v["network"], "mac": v["MAC"]}
                        for v in txn.select("vif", None, {"VM": vm["uuid"]})]
        doc["vm"].append(entry)
    return doc


def _export_disk(txn: Txn, vbd: Row) -> dict[str, Any]:
    out: dict[str, Any] = {"uuid": vbd["uuid"], "device": vbd["userdevice"], "bootable": vbd["bootable"],
                           "mode": vbd["mode"], "type": vbd["type"]}
    if vbd["VDI"]:
        vdi = txn.must("vdi", vbd["VDI"])
        out |= {"vdi-uuid": vdi["uuid"], "name-label": vdi["name_label"], "size": vdi["virtual_size"],
                "sr": vdi["SR"], "read-only": vdi["read_only"]}
        boot = {k[5:]: v for k, v in vdi["other_config"].items() if k.startswith("boot-")}
        if boot:
            out["boot"] = boot
    return out
