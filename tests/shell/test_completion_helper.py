"""The store helper (xetool/completion.py) and the generator's tables, tested as Python."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.shell.conftest import ROOT
from xetool import completion, paths
from xetool.cli.registry import commands
from xetool.datamodel import CLASSES


def _load_generator() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("gen_completion", str(ROOT / "scripts" / "gen-completion"))
    spec = importlib.util.spec_from_loader("gen_completion", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


gen = _load_generator()


# --- the helper reads the schema the datamodel declares ------------------------------------------
def test_labels_name_only_persisted_columns_of_real_tables() -> None:
    labels = completion.labels_from_datamodel()
    assert set(labels) == set(CLASSES)
    for cls, spec in labels.items():
        for column, joined in spec["label"]:
            field = CLASSES[cls].field(column)
            assert field is not None and field.persisted and field.name == column, (cls, column)
            if joined:
                assert CLASSES[joined].has_name_label and field.ref == joined
        for column, _ in spec["where"]:
            assert CLASSES[cls].field(column).persisted  # type: ignore[union-attr]
        assert spec["names"] == CLASSES[cls].has_name_label


def test_every_query_runs_on_a_real_store(pool: Path) -> None:
    db = completion.open_readonly(str(pool))
    assert db is not None
    for cls in CLASSES:
        completion.uuids(db, cls)
        completion.names(db, cls)


def test_embedded_helper_carries_the_datamodel_labels() -> None:
    namespace: dict[str, object] = {"__name__": "embedded"}
    exec(compile(gen.helper_source(), "helper", "exec"), namespace)
    assert namespace["LABELS"] == completion.labels_from_datamodel()


def test_helper_imports_only_the_standard_library(pool: Path) -> None:
    """Run as bash does (no site, isolated), with the package nowhere on the path."""
    run = subprocess.run([sys.executable, "-S", "-I", "-X", "importtime", "-c", gen.helper_source(), "n", "vm", "", str(pool)],
                         capture_output=True, text=True, cwd="/")
    assert run.returncode == 0 and run.stdout.split() == ["web01", "db01", "win01"]
    imported = {line.split("|")[-1].strip() for line in run.stderr.splitlines() if "|" in line}
    assert "sqlite3" in imported and not {m for m in imported if m.split(".")[0] in ("xetool", "click", "rich", "typing", "site")}


# --- what it finds -------------------------------------------------------------------------------------
def test_uuids_carry_labels(pool: Path, vm_uuids: dict[str, str]) -> None:
    db = completion.open_readonly(str(pool))
    assert db is not None
    assert dict(completion.uuids(db, "vm")) == {u: n for n, u in vm_uuids.items()}
    vbds = completion.uuids(db, "vbd")
    assert vbds and all(label.split()[0] in vm_uuids for _, label in vbds)  # "web01 <disk name>"


def test_uuid_prefix(pool: Path, vm_uuids: dict[str, str]) -> None:
    db = completion.open_readonly(str(pool))
    u = vm_uuids["web01"]
    assert [x for x, _ in completion.uuids(db, "vm", u[:8])] == [u]  # type: ignore[arg-type]
    assert completion.uuids(db, "vm", u[:8].upper())[0][0] == u  # type: ignore[arg-type]


def test_names_and_uuid_fallback(pool: Path, vm_uuids: dict[str, str]) -> None:
    db = completion.open_readonly(str(pool))
    assert completion.names(db, "vm") == ["web01", "db01", "win01"]  # type: ignore[arg-type]
    assert completion.names(db, "host", "host") == ["host1", "host2", "host3"]  # type: ignore[arg-type]
    u = vm_uuids["db01"]
    assert completion.names(db, "vm", u[:6]) == [u]  # type: ignore[arg-type]  # no name starts so: uuids
    assert len(completion.names(db, "vbd")) == 4  # type: ignore[arg-type]  # no names at all: uuids


def test_templates_are_left_out_as_vm_list_does(fresh_pool: Path) -> None:
    from tests.shell.conftest import xetool

    u = xetool("vm-list", "name-label=db01", "--minimal", state=fresh_pool).stdout.strip()
    xetool("vm-param-set", f"uuid={u}", "is-a-template=true", state=fresh_pool)
    db = completion.open_readonly(str(fresh_pool))
    assert "db01" not in completion.names(db, "vm")  # type: ignore[arg-type]


def test_main_prints_lines(pool: Path, capsys: pytest.CaptureFixture[str], vm_uuids: dict[str, str]) -> None:
    assert completion.main(["u", "vm", "", str(pool)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"{vm_uuids['web01']}\tweb01" in lines
    assert completion.main(["n", "host", "host2", str(pool)]) == 0
    assert capsys.readouterr().out == "host2\n"


def test_no_database_no_candidates_and_nothing_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert completion.main(["n", "vm", "", str(tmp_path / "none")]) == 0
    assert capsys.readouterr().out == ""
    assert not (tmp_path / "none").exists()


def test_database_is_opened_read_only(pool: Path) -> None:
    db = completion.open_readonly(str(pool))
    with pytest.raises(sqlite3.OperationalError):
        db.execute("DELETE FROM vm")  # type: ignore[union-attr]


@pytest.mark.parametrize("env, euid, expected", [
    ({"XETOOL_STATE_DIR": "/srv/pool"}, 1000, "/srv/pool"),
    ({}, 0, "/var/lib/xetool"),
    ({"XDG_STATE_HOME": "/x/state"}, 1000, "/x/state/xetool"),
    ({"HOME": "/home/op"}, 1000, "/home/op/.local/state/xetool"),
])
def test_state_dir_matches_xetool_paths(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], euid: int, expected: str) -> None:
    for name in ("XETOOL_STATE_DIR", "XDG_STATE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    assert completion.state_dir() == paths.state_dir_name() == expected
    assert completion.state_dir("/given") == paths.state_dir_name("/given")


# --- the generator's tables --------------------------------------------------------------------------
def test_value_specs() -> None:
    table = commands()
    assert gen.value_spec(table["vbd-create"], "mode") == "e:RO RW"
    assert gen.value_spec(table["vbd-create"], "type") == "e:Disk CD Floppy"
    assert gen.value_spec(table["vbd-create"], "vm-uuid") == "u:vm"
    assert gen.value_spec(table["vbd-create"], "bootable") == "e:true false"
    assert gen.value_spec(table["vm-param-get"], "uuid") == "u:vm"
    assert gen.value_spec(table["vm-guest-metrics-param-get"], "uuid") == "u:vm_guest_metrics"
    assert gen.value_spec(table["host-enable"], "host") == "n:host"
    assert gen.value_spec(table["pool-import"], "file") == "f"
    assert gen.value_spec(table["help"], "command") == "c"
    assert gen.value_spec(table["event-wait"], "uuid") == "u:@class"
    params = gen.value_spec(table["vm-list"], "params").split(":", 1)[1].split()
    assert params[0] == "all" and "power-state" in params and "start-time" in params
    assert "last-booted-record" not in params and "last-boot-record" in params  # xe's name
    assert gen.value_spec(table["vm-param-add"], "param-name") == "e:blocked-operations VCPUs-params HVM-boot-params platform bios-strings xenstore-data other-config tags"


def test_field_words_and_specs() -> None:
    t = gen.tables()
    assert t["F"]["vm-list"] == "vm" and t["F"]["vm-param-set"] == "vm/rw" and t["F"]["event-wait"] == "@class"
    assert "vm-param-add" not in t["F"]
    filters, settable = t["FW"]["vm"].split(), t["FW"]["vm/rw"].split()
    assert {"power-state=", "other-config:", "tags:contains="} <= set(filters)
    assert "power-state=" not in settable and "name-label=" in settable and "tags:contains=" not in settable
    assert t["FV"]["vm power-state"] == "e:halted paused running suspended"
    assert t["FV"]["vm resident-on"] == "u:host"
    assert t["FV"]["vm name-label"] == "n:vm" and "vm/rw name-label" not in t["FV"]
