"""What an xe user reads: --minimal with commas in values, pool-import's report, filters with a
value the field cannot have."""

from __future__ import annotations

import json

from tests.conftest import EXAMPLE


def test_minimal_escapes_commas_and_backslashes_as_xe(pool, ok):
    """xe's cli_printer joins --minimal values with commas, each escaped: `,` as `\\,`, `\\` as `\\\\`."""
    a = ok("vm-create", "name-label=a,b").strip()
    b = ok("vm-create", "name-label=c\\d").strip()
    out = ok("vm-list", f"uuid={a}", "params=name-label", "--minimal")
    assert out == "a\\,b\n"
    out = ok("vm-list", "params=name-label", "--minimal", "power-state=halted")
    names = out.rstrip("\n").split(",")
    assert "a\\" in names and "b" in names  # a naive split on commas breaks the escaped one
    assert "a\\,b" in out and "c\\\\d" in out
    assert ok("vm-list", f"uuid={b}", "params=name-label", "--minimal") == "c\\\\d\n"
    assert ok("vm-list", "name-label=nothing-so-named", "--minimal") == "\n"  # none: an empty line


def _report(out: str) -> list[str]:
    return out.splitlines()


def test_pool_import_report_reads_as_xe(tmp_path, xe, ok, state_dir):
    out = _report(ok("pool-import", f"file={EXAMPLE}"))
    assert out[0] == f"Made {len(out) - 1} changes:"
    assert "  updated pool xetool pool: name-label" in out  # the CLI's field names, not Python's
    assert not [line for line in out if "_" in line.split(":")[-1] and line.startswith("  updated")]
    vifs = [line for line in out if line.startswith("  created vif")]
    assert vifs == ["  created vif 0 of web01", "  created vif 1 of web01", "  created vif 0 of db01",
                    "  created vif 0 of win01"]
    renamed = tmp_path / "renamed.toml"
    renamed.write_text(EXAMPLE.read_text().replace('name-label = "demo"', 'name-label = "demo2"', 1))
    assert _report(ok("pool-import", f"file={renamed}")) == ["Made 1 change:", "  updated pool demo: name-label"]
    assert _report(ok("pool-import", f"file={renamed}", "--dry-run")) == [
        "No changes: the pool already matches the definition."]
    assert _report(ok("pool-import", f"file={EXAMPLE}", "--dry-run")) == [
        "Would make 1 change:", "  updated pool demo2: name-label"]


def test_a_filter_value_the_field_cannot_have_lists_nothing(pool, xe, ok, snapshot):
    """xe compares printed values: power-state=bogus matches no VM, and the listing is empty."""
    before = snapshot()
    r = xe("vm-list", "power-state=bogus")
    assert (r.rc, r.out, r.err) == (0, "", "")
    assert ok("vm-list", "power-state=bogus", "--minimal") == "\n"
    assert json.loads(ok("vm-list", "power-state=bogus", "--format=json")) == []
    assert ok("vm-list", "power-state=HALTED", "params=name-label", "--minimal") != "\n"  # case as xe's
    r = xe("vm-start", "power-state=bogus")  # a command needs a VM: none matches
    assert r.rc == 1 and "No matching objects found." in r.err
    assert xe("vm-list", "power-state=bogus", "resident-on=host1").rc == 2  # the other filters still count
    r = xe("event-wait", "class=vm", "power-state=bogus", "timeout=0")  # it would wait in vain: refused
    assert r.rc == 2 and "power-state" in r.err
    assert snapshot() == before
