"""The datamodel: the issue's classes and fields, markers, and what is derived from it."""

from __future__ import annotations

from xetool import records

import pytest

from xetool.datamodel import CLASSES, Kind, Qualifier
from xetool.datamodel.types import Field
from xetool.store.db import Store

# What issue 2 names, class by class (xapi's spellings).
REQUIRED = {
    "pool": ["uuid", "name_label", "master", "default_SR", "other_config"],
    "host": ["uuid", "name_label", "enabled", "live", "memory_total", "memory_free", "capabilities",
             "PBDs", "PIFs", "resident_VMs", "other_config"],
    "vm": ["uuid", "name_label", "power_state", "current_operations", "allowed_operations", "affinity",
           "scheduled_to_be_resident_on", "resident_on", "domid", "memory_static_min", "memory_dynamic_min",
           "memory_dynamic_max", "memory_static_max", "memory_overhead", "VCPUs_max", "VCPUs_at_startup",
           "VCPUs_params", "HVM_boot_policy", "HVM_shadow_multiplier", "PV_kernel", "PV_ramdisk", "PV_args",
           "PV_bootloader", "platform", "bios_strings", "other_config", "ha_restart_priority", "ha_always_run",
           "actions_after_crash", "last_booted_record", "VBDs", "VIFs"],
    "vm_metrics": ["uuid", "VM"],
    "vm_guest_metrics": ["uuid", "VM"],
    "vbd": ["uuid", "VM", "VDI", "device", "userdevice", "mode", "type", "bootable"],
    "vdi": ["uuid", "name_label", "SR", "virtual_size"],
    "sr": ["uuid", "name_label", "type", "VDIs", "PBDs"],
    "pbd": ["uuid", "host", "SR", "device_config"],
    "vif": ["uuid", "VM", "network", "device", "MAC"],
    "network": ["uuid", "name_label", "bridge", "VIFs", "PIFs"],
    "pif": ["uuid", "host", "network", "device", "MAC"],
    "task": ["uuid", "name_label", "status", "progress"],
    "message": ["uuid", "name", "priority", "body"],
}


def test_every_class_of_the_issue_exists():
    assert set(REQUIRED) <= set(CLASSES)


@pytest.mark.parametrize("cls,name", [(c, f) for c, fs in REQUIRED.items() for f in fs])
def test_field_declared_with_doc(cls, name):
    f = CLASSES[cls].field(name)
    assert f is not None, f"{cls}.{name} missing"
    assert f.doc.strip() and isinstance(f.kind, Kind) and isinstance(f.qualifier, Qualifier)


@pytest.mark.parametrize("spec", CLASSES.values(), ids=list(CLASSES))
def test_class_invariants(spec):
    names = [f.name for f in spec.fields]
    assert len(names) == len(set(names)), "duplicate field"
    assert spec.fields[0].name == "uuid" and spec.fields[0].qualifier is not Qualifier.RW
    clis = [f.cli_name for f in spec.fields]
    assert len(clis) == len(set(clis)), "duplicate CLI name"
    for f in spec.fields:
        if f.kind is Kind.REF:
            assert f.ref in CLASSES, f"{spec.name}.{f.name} refers to unknown {f.ref}"
        if f.kind is Kind.ENUM:
            assert f.default in f.values, f"{spec.name}.{f.name} default not a value"
        if f.derived_from:
            other, key = f.derived_from
            fk = CLASSES[other].field(key)
            assert fk is not None and fk.kind is Kind.REF and fk.ref == spec.name
    for p in spec.list_params:
        assert spec.field(p) is not None


@pytest.mark.parametrize("kind,q,marker", [
    (Kind.STR, Qualifier.RO, "( RO)"), (Kind.INT, Qualifier.RW, "( RW)"), (Kind.ENUM, Qualifier.DRO, "( RO)"),
    (Kind.SET, Qualifier.RO, "(SRO)"), (Kind.SET, Qualifier.RW, "(SRW)"),
    (Kind.MAP, Qualifier.DRO, "(MRO)"), (Kind.MAP, Qualifier.RW, "(MRW)"),
])
def test_markers(kind, q, marker):
    assert Field("x", kind, q, "doc").marker == marker


def test_known_markers_of_vm():
    vm = CLASSES["vm"]
    assert vm.field("platform").marker == "(MRW)"
    assert vm.field("allowed_operations").marker == "(SRO)"
    assert vm.field("power_state").marker == "( RO)"
    assert vm.field("VCPUs_max").marker == "( RW)"
    assert vm.field("tags").marker == "(SRW)"


def test_schema_columns_are_the_persisted_fields(tmp_path):
    store = Store(tmp_path)
    for spec in CLASSES.values():
        cols = [r[1] for r in store.db.execute(f'PRAGMA table_info("{spec.table}")')]
        assert cols == [f.name for f in spec.persisted_fields]
        assert not any(f.name in cols for f in spec.fields if not f.persisted)  # derived sets: no column
    store.close()


def test_new_field_gets_a_column_on_reopening(tmp_path, monkeypatch):
    Store(tmp_path).close()
    vm = CLASSES["vm"]
    extra = Field("test_added", Kind.INT, Qualifier.RW, "A field added by a newer datamodel.", 42)
    newer = records.replace(vm, fields=vm.fields + (extra,), _index={})
    monkeypatch.setitem(CLASSES, "vm", newer)
    store = Store(tmp_path)
    cols = {r[1]: r[4] for r in store.db.execute('PRAGMA table_info("vm")')}
    assert "test_added" in cols and cols["test_added"] == "42"
    with store.write() as txn:
        uuid = txn.insert("vm", {"name_label": "x"})
    with store.read() as txn:
        assert txn.get("vm", uuid, ["test_added"])["test_added"] == 42
    store.close()


def test_derived_one_to_many_sets(tmp_path):
    store = Store(tmp_path)
    with store.write() as txn:
        host = txn.insert("host", {"name_label": "h"})
        vms = [txn.insert("vm", {"name_label": f"v{i}", "resident_on": host}) for i in range(3)]
        txn.insert("vm", {"name_label": "elsewhere"})
        net = txn.insert("network", {"name_label": "n"})
        vif = txn.insert("vif", {"VM": vms[0], "network": net, "device": "0"})
    with store.read() as txn:
        assert txn.get("host", host, ["resident_VMs"])["resident_VMs"] == vms
        assert txn.get("vm", vms[0], ["VIFs"])["VIFs"] == [vif]
        assert txn.get("network", net, ["VIFs"])["VIFs"] == [vif]
        assert txn.get("vm", vms[1], ["VIFs", "VBDs"]) == {"uuid": vms[1], "VIFs": [], "VBDs": []}
    store.close()
