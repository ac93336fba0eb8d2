"""pool-import / pool-export: the example, idempotence, round trip, all-or-nothing errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE, dump, run_xe
from xetool.errors import REGISTRY


def test_example_pool_imports(pool, ok):
    assert len(ok("host-list", "--minimal").strip().split(",")) == 3
    assert ok("vm-list", "params=name-label", "--minimal") == "web01,db01,win01\n"
    assert ok("pool-list", "params=name-label", "--minimal") == "demo\n"
    win = ok("vm-list", "name-label=win01", "--minimal").strip()
    assert ok("vm-param-get", f"uuid={win}", "param-name=HVM-boot-policy") == "BIOS order\n"
    assert ok("vm-param-get", f"uuid={win}", "param-name=platform", "param-key=viridian") == "1\n"
    web = ok("vm-list", "name-label=web01", "--minimal").strip()
    assert len(ok("vm-param-get", f"uuid={web}", "param-name=VBDs").split(";")) == 2
    assert ok("network-list", "name-label=lan", "params=bridge", "--minimal") == "xenbr0\n"
    vdis = [p for p in (pool / "srs").rglob("*.raw")]
    assert len(vdis) == 4  # web01 x2, db01, win01: sparse files
    assert all(p.stat().st_blocks == 0 for p in vdis)


def test_second_import_changes_nothing(pool, ok):
    before = dump(pool)
    out = ok("pool-import", f"file={EXAMPLE}")
    assert "No changes" in out
    assert dump(pool) == before


def test_export_import_export_round_trip(pool, ok, tmp_path):
    first = ok("pool-export")
    f = tmp_path / "exported.toml"
    f.write_text(first)
    fresh = tmp_path / "fresh"
    r = run_xe(fresh, "pool-import", f"file={f}")
    assert r.rc == 0, r.err
    second = run_xe(fresh, "pool-export").out
    assert second == first
    # and the export imports back onto the pool it came from without a change
    assert "No changes" in ok("pool-import", f"file={f}")
    # the same objects, by uuid (PBDs, PIFs and VM metrics are not in the file: they are remade)
    for cls in ("host", "sr", "vdi", "network", "vm", "vbd", "vif"):
        uuids = lambda d: run_xe(d, f"{cls}-list", "--minimal").out
        assert uuids(fresh) == uuids(pool) != "\n", cls


def test_export_to_file(pool, ok, tmp_path):
    target = tmp_path / "out.toml"
    ok("pool-export", f"file={target}")
    assert target.read_text() == ok("pool-export")


def _broken(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "broken.toml"
    f.write_text(text)
    return f


def _empty_pool(xe, tmp_path: Path) -> None:
    """A pool with nothing in it: the first pool-import of a definition with no objects."""
    if xe("pool-list").rc != 0:
        empty = tmp_path / "empty.toml"
        empty.write_text("")
        assert xe("pool-import", f"file={empty}").rc == 0
    assert xe("pool-list").rc == 0


def _refused(xe, snapshot, f: Path, code: str) -> str:
    _empty_pool(xe, f.parent)  # the store exists (an empty pool) before the import
    before = snapshot()
    r = xe("pool-import", f"file={f}")
    spec = REGISTRY[code]
    assert r.rc == spec.status and r.err.startswith(spec.doc + "\n"), r.err
    assert "Traceback" not in r.err
    assert snapshot() == before  # tables unchanged, no VDI file left in any SR directory
    return r.err


@pytest.mark.parametrize("into", ["empty", "pool"])
def test_syntax_error_names_file_and_line(into, request, tmp_path, xe, snapshot):
    if into == "pool":
        request.getfixturevalue("pool")
    text = EXAMPLE.read_text()
    lines = text.splitlines()
    n = next(i for i, line in enumerate(lines) if line.startswith('name-label = "win01"'))
    lines[n] = 'name-label = "win01'  # unterminated string
    f = _broken(tmp_path, "\n".join(lines) + "\n")
    err = _refused(xe, snapshot, f, "TOML_SYNTAX_ERROR")
    assert f"file: {f}\n" in err and f"line: {n + 1}\n" in err


BAD_VALUES = [
    ("vm", "vcpus", "vcpus = 2", 'vcpus = "two"'),
    ("vm", "memory", 'memory = "2GiB"', 'memory = "lots"'),
    ("vm", "VCPUs-max", 'hvm = true', 'hvm = true\nVCPUs-max = "x"'),
    ("vm", "power-state", 'hvm = true', 'hvm = true\npower-state = "Running"'),
    ("vm", "bogus", 'hvm = true', 'hvm = true\nbogus = 1'),
    ("network", "hosts", 'hosts = ["host1", "host2"]', 'hosts = ["host1", ""]'),
    ("vif", "network", 'network = "lan"\n\n[[vm]]\nname-label = "win01"', 'network = "nowhere"\n\n[[vm]]\nname-label = "win01"'),
    ("host", "cpus", "\ncpus = 2", '\ncpus = "many"'),
    ("host", "memory", 'memory = "4GiB"', 'memory = "4 bananas"'),
]


@pytest.mark.parametrize("table,key,old,new", BAD_VALUES, ids=[f"{t}.{k}" for t, k, _, _ in BAD_VALUES])
@pytest.mark.parametrize("into", ["empty", "pool"])
def test_bad_value_names_table_and_key(table, key, old, new, into, request, tmp_path, xe, snapshot):
    if into == "pool":
        request.getfixturevalue("pool")
    text = EXAMPLE.read_text()
    i = text.rindex(old)  # the last occurrence: after disks and VIFs of earlier VMs were made
    f = _broken(tmp_path, text[:i] + new + text[i + len(old):])
    err = _refused(xe, snapshot, f, "POOL_DEFINITION_INVALID")
    assert f"file: {f}\n" in err
    assert re.search(rf"^table: .*{table}", err, re.M), err
    assert f"\nkey: {key}\n" in err


def test_late_failure_removes_created_disk_files(tmp_path, xe, snapshot, state_dir):
    """A bad value after disks were made: the transaction is rolled back and the files go."""
    f = _broken(tmp_path, EXAMPLE.read_text() + '\n[[vm]]\nname-label = "late"\nvcpus = "x"\n')
    _refused(xe, snapshot, f, "POOL_DEFINITION_INVALID")
    assert not list(state_dir.rglob("*.raw"))


def test_dry_run_changes_nothing(state_dir, xe, snapshot, tmp_path):
    _empty_pool(xe, tmp_path)
    before = snapshot()
    r = xe("pool-import", f"file={EXAMPLE}", "--dry-run")
    assert r.rc == 0 and "Would make" in r.out
    assert snapshot() == before


def test_dry_run_where_there_is_no_pool_creates_none(state_dir, xe):
    """A dry run on a new state directory shows the first import's changes, and makes no pool."""
    r = xe("pool-import", f"file={EXAMPLE}", "--dry-run")
    assert r.rc == 0 and "Would make" in r.out, r.err
    assert not (state_dir / "pool.db").exists()
    assert xe("pool-list").rc == REGISTRY["POOL_NOT_FOUND"].status
