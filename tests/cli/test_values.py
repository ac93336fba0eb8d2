"""Sizes, counts, names and map keys: bounded and checked where they enter the pool (the command
line and pool-import), in xe's error form, with nothing changed and nothing left on disk."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE
from xetool.errors import REGISTRY
from xetool.units import parse_size

GiB, MiB = 1 << 30, 1 << 20


def refused(r, code: str, before, after, **params: str) -> None:
    spec = REGISTRY[code]
    assert r.rc == spec.status, f"exit {r.rc}, wanted {int(spec.status)}:\n{r.err}"
    assert r.err.startswith(spec.doc + "\n"), r.err
    for name in spec.params:
        assert f"\n{name}: " in r.err, r.err
    for name, value in params.items():
        assert f"\n{name}: {value}" in r.err, r.err
    assert "Traceback" not in r.err + r.out and r.out == ""
    assert after == before, "the pool changed"


@pytest.fixture
def ids(pool, ok):
    first = lambda *a: ok(*a, "--minimal").strip().split(",")[0]
    return {"vm": first("vm-list", "name-label=web01"), "sr": first("sr-list"), "host": first("host-list"),
            "pool": first("pool-list")}


# --- units -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,size", [
    ("512MiB", 512 * MiB), ("512M", 512 * MiB), ("512m", 512 * MiB), ("4G", 4 * GiB), ("1.5GiB", 3 * GiB // 2),
    ("1073741824", GiB), ("2 TiB", 2 << 40), ("100b", 100), ("7 bytes", 7), ("0.5KiB", 512),
])
def test_binary_units(text, size):
    assert parse_size(text, "memory") == size


@pytest.mark.parametrize("text", ["512MB", "4GB", "1kb", "2TB"])
def test_decimal_looking_units_are_refused_as_ambiguous(text):
    from xetool.errors import XeError

    with pytest.raises(XeError) as ei:
        parse_size(text, "memory")
    assert ei.value.code == "FIELD_TYPE_ERROR" and ei.value.params["field"] == "memory"
    assert "ambiguous" in ei.value.params["expected"] and "iB" in ei.value.params["expected"]


@pytest.mark.parametrize("text", ["1.3", "lots", "-1GiB", "1e9", "9" * 40, "4 bananas", "0.1b"])
def test_bad_sizes(text):
    from xetool.errors import XeError

    with pytest.raises(XeError) as ei:
        parse_size(text, "size")
    assert ei.value.code == "FIELD_TYPE_ERROR"


# --- the command line ------------------------------------------------------------------------------

CLI_CASES = [
    ("memory overflows", ["vm-create", "name-label=x", "memory=99999999TiB"], "VALUE_NOT_SUPPORTED", "memory"),
    ("memory 0", ["vm-create", "name-label=x", "memory=0"], "VALUE_NOT_SUPPORTED", "memory"),
    ("memory 1 byte", ["vm-create", "name-label=x", "memory=1"], "VALUE_NOT_SUPPORTED", "memory"),
    ("memory below 16 MiB", ["vm-create", "name-label=x", "memory=15MiB"], "VALUE_NOT_SUPPORTED", "memory"),
    ("memory in MB", ["vm-create", "name-label=x", "memory=512MB"], "FIELD_TYPE_ERROR", "memory"),
    ("memory beyond 1.5 TiB", ["vm-create", "name-label=x", "memory=2TiB"], "VALUE_NOT_SUPPORTED", "memory"),
    ("static-max on create", ["vm-create", "name-label=x", "memory-static-max=1"], "VALUE_NOT_SUPPORTED",
     "memory-static-max"),
    ("static-max set", ["vm-param-set", "uuid={vm}", "memory-static-max=8MiB"], "VALUE_NOT_SUPPORTED",
     "memory-static-max"),
    ("static-max in GB", ["vm-param-set", "uuid={vm}", "memory-static-max=1GB"], "FIELD_TYPE_ERROR",
     "memory-static-max"),
    ("huge int", ["vm-param-set", "uuid={vm}", "start-delay=" + "9" * 30], "VALUE_NOT_SUPPORTED", "start-delay"),
    ("VCPUs-max 0", ["vm-param-set", "uuid={vm}", "VCPUs-max=0"], "VALUE_NOT_SUPPORTED", "VCPUs-max"),
    ("VCPUs-max 65", ["vm-param-set", "uuid={vm}", "VCPUs-max=65"], "VALUE_NOT_SUPPORTED", "VCPUs-max"),
    ("VCPUs on create", ["vm-create", "name-label=x", "VCPUs-max=100", "VCPUs-at-startup=100"],
     "VALUE_NOT_SUPPORTED", "VCPUs-max"),
    ("disk too big", ["vdi-create", "sr-uuid={sr}", "name-label=d", "virtual-size=3TiB"], "VALUE_NOT_SUPPORTED",
     "virtual-size"),
    ("disk overflows", ["vdi-create", "sr-uuid={sr}", "name-label=d", "virtual-size=99999999TiB"],
     "VALUE_NOT_SUPPORTED", "virtual-size"),
    ("disk 0", ["vdi-create", "sr-uuid={sr}", "name-label=d", "virtual-size=0"], "INVALID_VALUE", "virtual-size"),
    ("disk in GB", ["vdi-create", "sr-uuid={sr}", "name-label=d", "virtual-size=10GB"], "FIELD_TYPE_ERROR",
     "virtual-size"),
    ("huge filter", ["vm-list", "VCPUs-max=" + "9" * 25], "VALUE_NOT_SUPPORTED", "VCPUs-max"),
    ("huge size filter", ["vm-list", "memory-static-max=99999999TiB"], "VALUE_NOT_SUPPORTED", "memory-static-max"),
    ("NaN", ["pool-param-set", "uuid={pool}", "wlb-timeout=nan"], "FIELD_TYPE_ERROR", "wlb-timeout"),
    ("infinity", ["vm-param-set", "uuid={vm}", "HVM-shadow-multiplier=inf"], "FIELD_TYPE_ERROR",
     "HVM-shadow-multiplier"),
    ("MTU", ["network-create", "name-label=n", "MTU=100000"], "VALUE_NOT_SUPPORTED", "MTU"),
    ("long name-label", ["vm-param-set", "uuid={vm}", "name-label=" + "x" * 256], "VALUE_NOT_SUPPORTED", "name-label"),
    ("1 MB name-label", ["vm-create", "name-label=" + "x" * (1 << 20)], "VALUE_NOT_SUPPORTED", "name-label"),
    ("newline in name", ["vm-param-set", "uuid={vm}", "name-label=a\nb"], "VALUE_NOT_SUPPORTED", "name-label"),
    ("NUL in name", ["vm-create", "name-label=a\0b"], "VALUE_NOT_SUPPORTED", "name-label"),
    ("newline in description", ["vm-param-set", "uuid={vm}", "name-description=a\nb"], "VALUE_NOT_SUPPORTED",
     "name-description"),
    ("long SR name", ["sr-create", "name-label=" + "s" * 300], "VALUE_NOT_SUPPORTED", "name-label"),
    ("long disk name", ["vdi-create", "sr-uuid={sr}", "name-label=" + "d" * 300, "virtual-size=1MiB"],
     "VALUE_NOT_SUPPORTED", "name-label"),
    ("long host name", ["host-param-set", "uuid={host}", "name-label=" + "h" * 300], "VALUE_NOT_SUPPORTED",
     "name-label"),
    ("huge PV-args", ["vm-param-set", "uuid={vm}", "PV-args=" + "a" * 5000], "VALUE_NOT_SUPPORTED", "PV-args"),
    ("NUL in map value", ["vm-param-set", "uuid={vm}", "other-config:k=a\0b"], "VALUE_NOT_SUPPORTED",
     "other-config:k"),
    ("long map key", ["vm-param-add", "uuid={vm}", "param-name=other-config", "k" * 300 + "=1"],
     "VALUE_NOT_SUPPORTED", "other-config:kkk"),
    ("huge map value on create", ["vm-create", "name-label=x", "platform:k=" + "v" * 5000], "VALUE_NOT_SUPPORTED",
     "platform:k"),
    ("NUL in a tag", ["vm-param-add", "uuid={vm}", "param-name=tags", "param-key=a\0"], "VALUE_NOT_SUPPORTED",
     "tags"),
]


@pytest.mark.parametrize("what,argv,code,field", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_values_refused(what, argv, code, field, ids, xe, snapshot):
    argv = [a.format(**ids) for a in argv]
    before = snapshot()
    r = xe(*argv)
    refused(r, code, before, snapshot(), field=field)


def test_limits_themselves_are_accepted(pool, ok):
    uuid = ok("vm-create", "name-label=" + "n" * 255, "memory=16MiB", "VCPUs-max=64", "VCPUs-at-startup=64").strip()
    assert ok("vm-param-get", f"uuid={uuid}", "param-name=memory-static-max") == f"{16 * MiB}\n"
    sr = ok("sr-list", "--minimal").strip().split(",")[0]
    vdi = ok("vdi-create", f"sr-uuid={sr}", "name-label=big", "virtual-size=2040GiB").strip()
    assert ok("vdi-param-get", f"uuid={vdi}", "param-name=virtual-size") == f"{2040 * GiB}\n"
    ok("vm-param-set", f"uuid={uuid}", "name-description=" + "d" * 4000, "memory-static-max=1536GiB")


# --- param-add and param-clear ---------------------------------------------------------------------

def test_param_add_refuses_an_existing_key(ids, ok, xe, snapshot):
    vm = ids["vm"]
    ok("vm-param-add", f"uuid={vm}", "param-name=other-config", "owner=ops")
    before = snapshot()
    r = xe("vm-param-add", f"uuid={vm}", "param-name=other-config", "owner=x")
    refused(r, "MAP_DUPLICATE_KEY", before, snapshot(), type="vm", param_name="other-config", uuid=vm, key="owner")
    assert ok("vm-param-get", f"uuid={vm}", "param-name=other-config", "param-key=owner") == "ops\n"
    # several pairs: one duplicate refuses them all
    r = xe("vm-param-add", f"uuid={vm}", "param-name=other-config", "fresh=1", "owner=y")
    refused(r, "MAP_DUPLICATE_KEY", before, snapshot(), key="owner")
    ok("vm-param-add", f"uuid={vm}", "param-name=other-config", "fresh=1")


def test_param_add_to_a_set_is_idempotent(ids, ok):
    vm = ids["vm"]
    ok("vm-param-add", f"uuid={vm}", "param-name=tags", "param-key=a")
    ok("vm-param-add", f"uuid={vm}", "param-name=tags", "param-key=a")
    assert ok("vm-param-get", f"uuid={vm}", "param-name=tags") == "a\n"


@pytest.mark.parametrize("field", ["name-label", "name-description", "VCPUs-max", "memory-static-max", "affinity",
                                   "ha-always-run"])
def test_param_clear_refuses_what_is_not_a_set_or_map(field, ids, xe, snapshot):
    before = snapshot()
    r = xe("vm-param-clear", f"uuid={ids['vm']}", f"param-name={field}")
    refused(r, "OPERATION_NOT_ALLOWED", before, snapshot())
    assert field in r.err and "vm-param-set" in r.err


def test_param_clear_empties_sets_and_maps(ids, ok):
    vm = ids["vm"]
    ok("vm-param-add", f"uuid={vm}", "param-name=tags", "param-key=a")
    ok("vm-param-set", f"uuid={vm}", "other-config:k=v")
    ok("vm-param-clear", f"uuid={vm}", "param-name=tags")
    ok("vm-param-clear", f"uuid={vm}", "param-name=other-config")
    assert ok("vm-param-get", f"uuid={vm}", "param-name=tags") == "\n"
    assert ok("vm-param-get", f"uuid={vm}", "param-name=other-config") == "\n"
    assert ok("vm-param-get", f"uuid={vm}", "param-name=name-label") == "web01\n"


# --- pool-import -----------------------------------------------------------------------------------

def _file(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "values.toml"
    f.write_text(text)
    return f


BASE = EXAMPLE.read_text()

IMPORT_CASES = [
    ("duplicate host name", BASE + '\n[[host]]\nname-label = "host1"\n', r"host\[3\]", "name-label"),
    ("duplicate vm name", BASE + '\n[[vm]]\nname-label = "web01"\n', r"vm\[3\]", "name-label"),
    ("duplicate sr name", BASE + '\n[[sr]]\nname-label = "local-files"\n', r"sr\[\d\]", "name-label"),
    ("duplicate network name", BASE + '\n[[network]]\nname-label = "lan"\nbridge = "xenbr9"\n', r"network\[\d\]",
     "name-label"),
    ("duplicate vm uuid", BASE + '\n[[vm]]\nname-label = "a"\nuuid = "11111111-1111-1111-1111-111111111111"\n'
     '\n[[vm]]\nname-label = "b"\nuuid = "11111111-1111-1111-1111-111111111111"\n', r"vm\[4\]", "uuid"),
    ("duplicate disk device", BASE + '\n[[vm]]\nname-label = "twodisks"\n[[vm.disk]]\ndevice = 0\nsize = "1MiB"\n'
     '[[vm.disk]]\ndevice = "0"\nsize = "1MiB"\n', r"vm\[3\]\.disk\[1\]", "device"),
    ("duplicate vif device", BASE + '\n[[vm]]\nname-label = "twovifs"\n[[vm.vif]]\ndevice = 1\nnetwork = "lan"\n'
     '[[vm.vif]]\ndevice = 1\nnetwork = "lan"\n', r"vm\[3\]\.vif\[1\]", "device"),
    ("1 MB name", BASE + '\n[[vm]]\nname-label = "' + "x" * (1 << 20) + '"\n', r"vm\[3\]", "name-label"),
    ("newline in name", BASE + '\n[[vm]]\nname-label = "a\\nb"\n', r"vm\[3\]", "name-label"),
    ("NUL in name", BASE + '\n[[vm]]\nname-label = "a\\u0000b"\n', r"vm\[3\]", "name-label"),
    ("disk size overflows", BASE + '\n[[vm]]\nname-label = "big"\n[[vm.disk]]\nsize = "99999999TiB"\n',
     r"vm\[3\]\.disk\[0\]", "size"),
    ("disk size too big", BASE + '\n[[vm]]\nname-label = "big"\n[[vm.disk]]\nsize = "3TiB"\n',
     r"vm\[3\]\.disk\[0\]", "size"),
    ("disk size as a huge number", BASE + '\n[[vm]]\nname-label = "big"\n[[vm.disk]]\nsize = 9223372036854775807\n',
     r"vm\[3\]\.disk\[0\]", "size"),
    ("disk in GB", BASE + '\n[[vm]]\nname-label = "big"\n[[vm.disk]]\nsize = "10GB"\n', r"vm\[3\]\.disk\[0\]", "size"),
    ("vm memory 1", BASE + '\n[[vm]]\nname-label = "m"\nmemory = 1\n', r"vm\[3\]", "memory"),
    ("vm memory overflows", BASE + '\n[[vm]]\nname-label = "m"\nmemory = "99999999TiB"\n', r"vm\[3\]", "memory"),
    ("vm memory-static-max", BASE + '\n[[vm]]\nname-label = "m"\nmemory-static-max = "8MiB"\n', r"vm\[3\]",
     "memory-static-max"),
    ("vcpus 0", BASE + '\n[[vm]]\nname-label = "c"\nvcpus = 0\n', r"vm\[3\]", "vcpus"),
    ("vcpus 65", BASE + '\n[[vm]]\nname-label = "c"\nvcpus = 65\n', r"vm\[3\]", "vcpus"),
    ("host memory", BASE + '\n[[host]]\nname-label = "h9"\nmemory = "99999999TiB"\n', r"host\[3\]", "memory"),
    ("host memory in MB", BASE + '\n[[host]]\nname-label = "h9"\nmemory = "4096MB"\n', r"host\[3\]", "memory"),
    ("map value with NUL", BASE + '\n[[vm]]\nname-label = "p"\nplatform = { k = "a\\u0000" }\n', r"vm\[3\]",
     "platform"),
]


@pytest.mark.parametrize("into", ["empty", "pool"])
@pytest.mark.parametrize("what,text,table,key", IMPORT_CASES, ids=[c[0] for c in IMPORT_CASES])
def test_pool_import_refuses(what, text, table, key, into, request, tmp_path, xe, snapshot, state_dir):
    if into == "pool":
        request.getfixturevalue("pool")
    before = snapshot()
    r = xe("pool-import", f"file={_file(tmp_path, text)}")
    refused(r, "POOL_DEFINITION_INVALID", before, snapshot())
    assert re.search(rf"^table: {table}$", r.err, re.M), r.err
    assert re.search(rf"^key: {re.escape(key)}", r.err, re.M), r.err
    assert len(r.err) < 2000  # a huge bad value is cut in the message
    # nothing left on disk (the snapshot holds every file): no disk file, no SR directory either
    if into == "empty":
        assert not (state_dir / "srs").exists() or not any((state_dir / "srs").iterdir())
