"""Every malformed command line gets a registry error, its exit status, no traceback, and
leaves the store exactly as it was."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid as uuidlib

import pytest

from tests.conftest import ROOT
from xetool.cli.registry import commands
from xetool.errors import REGISTRY

NOWHERE = str(uuidlib.uuid4())

CASES = [
    ("unknown command", ["no-such-command"], "UNKNOWN_COMMAND"),
    ("unknown command with args", ["vm-frobnicate", "uuid={vm}"], "UNKNOWN_COMMAND"),
    ("command missing", ["name-label=x"], "SYNTAX_ERROR"),
    ("unknown key", ["vm-list", "bogus=1"], "UNKNOWN_PARAMETER"),
    ("unknown key on param-get", ["vm-param-get", "uuid={vm}", "param-name=uuid", "vm=web01"], "UNKNOWN_PARAMETER"),
    ("unknown key on create", ["vm-create", "name-label=x", "bogus=1"], "UNKNOWN_PARAMETER"),
    ("repeated key", ["vm-list", "name-label=a", "name-label=b"], "REPEATED_PARAMETER"),
    ("repeated key on set", ["vm-param-set", "uuid={vm}", "VCPUs-max=2", "VCPUs-max=3"], "REPEATED_PARAMETER"),
    ("missing required key", ["vm-param-get", "uuid={vm}"], "MISSING_PARAMETER"),
    ("missing uuid", ["vm-param-set", "name-label=x"], "MISSING_PARAMETER"),
    ("not key=value", ["vm-list", "web01"], "SYNTAX_ERROR"),
    ("malformed uuid", ["vm-param-get", "uuid=not-a-uuid", "param-name=power-state"], "UUID_INVALID"),
    ("malformed uuid on set", ["vm-param-set", "uuid=1234", "name-label=x"], "UUID_INVALID"),
    ("malformed ref filter", ["vm-list", "resident-on=host1"], "UUID_INVALID"),
    ("malformed ref value", ["vm-param-set", "uuid={vm}", "affinity=host1"], "UUID_INVALID"),
    ("dangling ref value", ["vm-param-set", "uuid={vm}", f"affinity={NOWHERE}"], "HANDLE_INVALID"),
    ("no such object", ["vm-param-get", f"uuid={NOWHERE}", "param-name=power-state"], "HANDLE_INVALID"),
    ("wrong type", ["vm-param-set", "uuid={vm}", "VCPUs-max=two"], "FIELD_TYPE_ERROR"),
    ("wrong type bool", ["vm-param-set", "uuid={vm}", "ha-always-run=perhaps"], "FIELD_TYPE_ERROR"),
    ("wrong enum", ["vm-param-set", "uuid={vm}", "actions-after-crash=explode"], "FIELD_TYPE_ERROR"),
    ("wrong type filter", ["vm-list", "VCPUs-max=two"], "FIELD_TYPE_ERROR"),
    ("wrong type create", ["vm-create", "name-label=x", "VCPUs-max=two"], "FIELD_TYPE_ERROR"),
    ("bad size", ["vdi-create", "sr-uuid={sr}", "name-label=d", "virtual-size=lots"], "FIELD_TYPE_ERROR"),
    ("read-only field", ["vm-param-set", "uuid={vm}", "power-state=running"], "FIELD_READ_ONLY"),
    ("read-only field uuid", ["vm-param-set", "uuid={vm}", "dom-id=3"], "FIELD_READ_ONLY"),
    ("read-only on create", ["vm-create", "name-label=x", "power-state=Running"], "FIELD_READ_ONLY"),
    ("read-only map add", ["vm-param-add", "uuid={vm}", "param-name=current-operations", "a=b"], "FIELD_READ_ONLY"),
    ("read-only host field", ["host-param-set", "uuid={host}", "memory-total=1"], "FIELD_READ_ONLY"),
    ("unknown field in params", ["vm-list", "params=uuid,nosuch"], "UNKNOWN_FIELD"),
    ("unknown param-name", ["vm-param-get", "uuid={vm}", "param-name=nosuch"], "UNKNOWN_FIELD"),
    ("missing map key", ["vm-param-get", "uuid={vm}", "param-name=platform", "param-key=nosuch"], "MAP_KEY_NOT_FOUND"),
    ("remove missing map key", ["vm-param-remove", "uuid={vm}", "param-name=other-config", "param-key=nosuch"], "MAP_KEY_NOT_FOUND"),
    ("selector matches nothing", ["host-disable", "host=no-such-host"], "NO_MATCHING_OBJECTS"),
    ("filter matches nothing", ["host-disable", "name-label=no-such-host"], "NO_MATCHING_OBJECTS"),
    ("several hosts without --multiple", ["host-disable"], "MULTIPLE_MATCHES"),
    ("non-UTF-8 value", ["vm-list", "name-label=\udcff"], "NOT_UTF8"),
    ("non-UTF-8 command", ["vm-\udcfflist"], "NOT_UTF8"),
    ("non-UTF-8 key", ["vm-list", "name\udcff=x"], "NOT_UTF8"),
    ("empty required value", ["vm-create", "name-label="], "EMPTY_VALUE"),
    ("empty uuid", ["vm-param-get", "uuid=", "param-name=power-state"], "EMPTY_VALUE"),
    ("empty file", ["pool-import", "file="], "EMPTY_VALUE"),
    ("memory order", ["vm-param-set", "uuid={vm}", "memory-static-min=8589934592"], "MEMORY_CONSTRAINT_VIOLATION_ORDER"),
    ("memory order dynamic", ["vm-param-set", "uuid={vm}", "memory-dynamic-max=1", "memory-dynamic-min=2"],
     "MEMORY_CONSTRAINT_VIOLATION_ORDER"),
    ("memory order on create", ["vm-create", "name-label=x", "memory-static-min=1GiB", "memory-static-max=256MiB"],
     "MEMORY_CONSTRAINT_VIOLATION_ORDER"),
    ("VCPUs-at-startup > VCPUs-max", ["vm-param-set", "uuid={vm}", "VCPUs-at-startup=5"], "INVALID_VALUE"),
    ("VCPUs-max below at-startup", ["vm-param-set", "uuid={vm}", "VCPUs-max=1"], "INVALID_VALUE"),
    ("VCPUs on create", ["vm-create", "name-label=x", "VCPUs-max=1", "VCPUs-at-startup=4"], "INVALID_VALUE"),
    ("param-set on a set", ["vm-param-set", "uuid={vm}", "tags=a"], "OPERATION_NOT_ALLOWED"),
    ("bad format", ["vm-list", "format=xml"], "FIELD_TYPE_ERROR"),
    ("bad flag value", ["host-disable", "host=host1", "multiple=maybe"], "FIELD_TYPE_ERROR"),
    ("import missing file", ["pool-import", "file=/nonexistent/pool.toml"], "FILE_NOT_READABLE"),
    ("vif on missing network", ["vif-create", "vm-uuid={vm}", f"network-uuid={NOWHERE}", "device=5"], "HANDLE_INVALID"),
    ("vif device taken", ["vif-create", "vm-uuid={vm}", "network-uuid={net}", "device=0"], "DEVICE_ALREADY_EXISTS"),
    ("sr type", ["sr-create", "name-label=s", "type=lvm"], "VALUE_NOT_SUPPORTED"),
    ("destroy SR with disks", ["sr-destroy", "uuid={sr}"], "OBJECT_IN_USE"),
]


@pytest.fixture
def ids(pool, ok):
    first = lambda *a: ok(*a, "--minimal").strip().split(",")[0]
    return {"vm": first("vm-list", "name-label=web01"), "host": first("host-list", "name-label=host1"),
            "sr": first("sr-list"), "net": first("network-list", "name-label=lan")}


def check_refused(r, code, before, after):
    spec = REGISTRY[code]
    assert r.rc == spec.status, f"exit {r.rc}, wanted {int(spec.status)}; stderr:\n{r.err}"
    assert r.err.startswith(spec.doc + "\n"), r.err
    for name in spec.params:
        assert f"\n{name}: " in r.err
    assert "Traceback" not in r.err and "Traceback" not in r.out
    assert r.out == ""
    assert after == before, "the store changed"


@pytest.mark.parametrize("what,argv,code", CASES, ids=[c[0] for c in CASES])
def test_refused_and_store_unchanged(what, argv, code, ids, xe, snapshot):
    argv = [a.format(**ids) for a in argv]
    before = snapshot()
    r = xe(*argv)
    check_refused(r, code, before, snapshot())


def _ambiguous_commands():
    """Every registered command that selects VMs or hosts, vm-start and friends included."""
    return [c.name for c in commands().values() if c.selector in ("vm", "host")]


@pytest.mark.parametrize("command", _ambiguous_commands())
def test_ambiguous_name_needs_multiple(command, pool, ok, xe, snapshot):
    cls = commands()[command].selector
    if cls == "vm":
        ok("vm-create", "name-label=twin")
        ok("vm-create", "name-label=twin")
    else:
        h2 = ok("host-list", "name-label=host2", "--minimal").strip()
        ok("host-param-set", f"uuid={h2}", "name-label=twin")
        h1 = ok("host-list", "name-label=host1", "--minimal").strip()
        ok("host-param-set", f"uuid={h1}", "name-label=twin")
    required = [f"{p}=host3" for p in commands()[command].reqd]  # so selection is what fails
    before = snapshot()
    r = xe(command, f"{cls}=twin", *required)
    check_refused(r, "MULTIPLE_MATCHES", before, snapshot())


def test_multiple_allows_it(pool, ok):
    ok("host-disable", "--multiple")
    assert ok("host-list", "enabled=true", "--minimal") == "\n"
    ok("host-enable", "host=host1")
    assert ok("host-list", "enabled=true", "params=name-label", "--minimal") == "host1\n"


def _binary(state_dir, *argv: bytes):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XETOOL_STATE_DIR": str(state_dir)}
    return subprocess.run([sys.executable.encode(), b"-m", b"xetool", *argv], env=env, capture_output=True)


@pytest.mark.parametrize("argv", [
    [b"vm-list", b"name-label=\xff"], [b"vm-\xfflist"], [b"vm-list", b"na\xc3me=x"], [b"vm-create", b"name-label=\xc3\x28"],
])
def test_non_utf8_bytes_from_the_real_process(argv, pool, snapshot):
    before = snapshot()
    p = _binary(pool, *argv)
    assert p.returncode == REGISTRY["NOT_UTF8"].status
    err = p.stderr.decode("utf-8")  # what we print is UTF-8 even when the input was not
    assert err.startswith(REGISTRY["NOT_UTF8"].doc + "\nparam: ") and "Traceback" not in err
    assert p.stdout == b""
    assert snapshot() == before


def test_unwritable_state_dir_in_process(tmp_path, xe):
    (tmp_path / "file").write_text("")
    bad = tmp_path / "file" / "sub"
    r = xe(f"--state-dir={bad}", "vm-list")
    assert r.rc == 1 and r.err.startswith(REGISTRY["STATE_DIR_NOT_WRITABLE"].doc) and "Traceback" not in r.err
    assert not bad.exists()
