"""The command line through the real click app: grammar, output layouts, every listing."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tests.conftest import EXAMPLE
from xetool.cli.app import cli
from xetool.cli.registry import commands
from xetool.cli.views import VIEWS, spec_of
from xetool.datamodel import CLASSES


def test_click_runner_separate_streams(state_dir):
    runner = CliRunner()
    r = runner.invoke(cli, [f"--state-dir={state_dir}", "pool-import", f"file={EXAMPLE}"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, [f"--state-dir={state_dir}", "host-list", "--minimal"])
    assert r.exit_code == 0 and r.stderr == ""
    assert len(r.stdout.strip().split(",")) == 3


def test_vm_list_record_layout(pool, ok):
    out = ok("vm-list", "name-label=web01")
    lines = out.split("\n")
    assert lines[0].startswith("uuid ( RO)") and lines[1].lstrip() == "name-label ( RW): web01"
    assert lines[2].lstrip() == "power-state ( RO): halted"
    assert len({line.index(": ") for line in lines[:3]}) == 1
    assert out.endswith("halted\n\n\n")


def test_records_separated_by_two_blank_lines(pool, ok):
    out = ok("host-list")
    assert out.count("\n\n\n") == 3 and not out.endswith("\n\n\n\n")


def test_params_in_record_order(pool, ok):
    out = ok("vm-list", "name-label=web01", "params=power-state,name-label,uuid")
    keys = [line.split("(")[0].strip() for line in out.splitlines() if line]
    assert keys == ["uuid", "name-label", "power-state"]


def test_params_all(pool, ok):
    out = ok("vm-list", "name-label=web01", "params=all")
    keys = [line.split(" (")[0].strip() for line in out.splitlines() if line]
    vm = CLASSES["vm"]
    assert keys == [f.cli_name for f in vm.fields if not f.hidden]
    assert "platform (MRW): " in out and "allowed-operations (SRO)" in out and "VBDs (SRO)" in out


def test_minimal_escapes_commas(pool, ok):
    ok("vm-create", "name-label=a,b")
    ok("vm-create", "name-label=back\\slash")
    out = ok("vm-list", "params=name-label", "--minimal")
    assert out == "web01,db01,win01,a\\,b,back\\\\slash\n"


def test_minimal_before_or_after_command(pool, ok):
    assert ok("--minimal", "host-list") == ok("host-list", "--minimal") == ok("host-list", "minimal=true")


def test_value_with_equals_and_map_keys(pool, ok):
    vm = ok("vm-list", "name-label=web01", "--minimal").strip()
    ok("vm-param-set", f"uuid={vm}", "PV-args=root=/dev/xvda1 console=hvc0 a=b", "platform:acpi=0",
       "other-config:owner=ops")
    assert ok("vm-param-get", f"uuid={vm}", "param-name=PV-args") == "root=/dev/xvda1 console=hvc0 a=b\n"
    assert ok("vm-param-get", f"uuid={vm}", "param-name=platform", "param-key=acpi") == "0\n"
    assert ok("vm-list", "other-config:owner=ops", "--minimal") == vm + "\n"
    ok("vm-param-add", f"uuid={vm}", "param-name=other-config", "site=lon", "rack=4")
    assert ok("vm-param-get", f"uuid={vm}", "param-name=other-config") == "owner: ops; site: lon; rack: 4\n"
    ok("vm-param-remove", f"uuid={vm}", "param-name=other-config", "param-key=site")
    ok("vm-param-add", f"uuid={vm}", "param-name=tags", "param-key=web")
    assert ok("vm-list", "tags:contains=web", "--minimal") == vm + "\n"
    ok("vm-param-clear", f"uuid={vm}", "param-name=other-config")
    assert ok("vm-param-get", f"uuid={vm}", "param-name=other-config") == "\n"


def test_flag_forms_are_equal(pool, ok):
    ok("host-disable", "--multiple")
    ok("host-enable", "multiple=true")
    assert ok("host-list", "enabled=false", "--minimal") == "\n"


def test_field_filters(pool, ok):
    assert ok("vm-list", "power-state=halted", "params=name-label", "--minimal") == "web01,db01,win01\n"
    assert ok("vm-list", "power-state=running", "--minimal") == "\n"
    assert ok("vm-list", "VCPUs-max=2", "name-label=db01", "params=name-label", "--minimal") == "db01\n"
    assert ok("vm-list", "vm=db01", "params=name-label", "--minimal") == "db01\n"


def test_param_set_is_type_checked_and_kept(pool, ok):
    vm = ok("vm-list", "name-label=web01", "--minimal").strip()
    ok("vm-param-set", f"uuid={vm}", "VCPUs-max=4", "VCPUs-at-startup=3", "ha-always-run=true",
       "actions-after-crash=preserve")
    assert ok("vm-param-get", f"uuid={vm}", "param-name=VCPUs-at-startup") == "3\n"
    assert ok("vm-param-get", f"uuid={vm}", "param-name=ha-always-run") == "true\n"


def test_hidden_field_readable_by_param_get_only(pool, ok, state_dir):
    from xetool.store.db import Store

    store = Store(state_dir)
    with store.write() as txn:
        task = txn.insert("task", {"name_label": "t", "process_start": "12345"})
    store.close()
    assert "process-start" not in ok("task-param-list", f"uuid={task}")
    assert "process-start" not in ok("task-list", "params=all")
    assert ok("task-param-get", f"uuid={task}", "param-name=process-start") == "12345\n"


def test_expensive_fields_are_computed_by_param_list_only(pool, ok):
    vm = ok("vm-list", "name-label=web01", "--minimal").strip()
    listed = ok("vm-list", f"uuid={vm}", "params=possible-hosts,last-boot-record")
    assert listed.count("<expensive field>") == 2
    hosts = ok("host-list", "--minimal").strip().split(",")
    assert set(ok("vm-param-get", f"uuid={vm}", "param-name=possible-hosts").strip().split("; ")) <= set(hosts)
    assert "possible-hosts ( RO)" in ok("vm-param-list", f"uuid={vm}") or "possible-hosts (SRO)" in ok(
        "vm-param-list", f"uuid={vm}")


def test_create_and_destroy_objects(pool, ok, xe):
    sr = ok("sr-create", "name-label=more", "type=file").strip()
    vdi = ok("vdi-create", f"sr-uuid={sr}", "name-label=d", "virtual-size=64MiB").strip()
    net = ok("network-create", "name-label=back").strip()
    vm = ok("vm-create", "name-label=new", "memory=512MiB", "VCPUs-max=2").strip()
    vbd = ok("vbd-create", f"vm-uuid={vm}", f"vdi-uuid={vdi}", "device=0", "bootable=true").strip()
    vif = ok("vif-create", f"vm-uuid={vm}", f"network-uuid={net}", "device=0").strip()
    assert ok("vm-param-get", f"uuid={vm}", "param-name=VBDs") == vbd + "\n"
    assert ok("vm-param-get", f"uuid={vm}", "param-name=VIFs") == vif + "\n"
    assert ok("vm-param-get", f"uuid={vm}", "param-name=memory-static-max") == str(512 << 20) + "\n"
    assert ok("network-param-get", f"uuid={net}", "param-name=bridge").strip()
    assert xe("vdi-destroy", f"uuid={vdi}").rc == 1  # still used by the VBD
    ok("vm-destroy", f"uuid={vm}")
    assert ok("vbd-list", f"uuid={vbd}", "--minimal") == "\n"
    ok("vdi-destroy", f"uuid={vdi}")
    ok("network-destroy", f"uuid={net}")
    ok("sr-destroy", f"uuid={sr}")


LISTS = [name for name, c in commands().items() if c.cls and name == c.cls.replace("_", "-") + "-list"]


def test_every_class_has_a_list():
    assert {commands()[n].cls for n in LISTS} == set(CLASSES) | set(VIEWS)  # host-sim-list is a view


@pytest.mark.parametrize("command", LISTS)
def test_format_json_on_every_listing(command, pool, ok):
    spec = spec_of(commands()[command].cls)
    for args in ([command, "--format=json"], ["--format", "json", command], [command, "format=json", "params=all"]):
        data = json.loads(ok(*args))
        assert isinstance(data, list)
        for rec in data:
            assert "uuid" in rec
            assert set(rec) <= {f.cli_name for f in spec.fields}
    xe_uuids = [u for u in ok(command, "--minimal").strip().split(",") if u]
    assert [rec["uuid"] for rec in json.loads(ok(command, "--format=json"))] == xe_uuids


@pytest.mark.parametrize("command", [n for n, c in commands().items() if n.endswith("-param-list")])
def test_format_json_on_every_param_list(command, pool, ok):
    spec = CLASSES[commands()[command].cls]
    lister = f"{command[:-len('-param-list')]}-list"
    lst = [u for u in ok(lister, "--minimal").strip().split(",") if u]
    if not lst:  # what the example pool has none of, made the way the toolstack makes it
        _make_one(spec.name, pool, ok)
        lst = [u for u in ok(lister, "--minimal").strip().split(",") if u]
    data = json.loads(ok(command, f"uuid={lst[0]}", "--format=json"))
    assert data[0]["uuid"] == lst[0] and set(data[0]) == {f.cli_name for f in spec.fields if not f.hidden}


def _make_one(cls: str, pool, ok) -> None:
    if cls in ("task", "message"):  # a start leaves its task and a VM_STARTED message
        ok("vm-start", "vm=web01")
        ok("vm-shutdown", "vm=web01", "--force")
    elif cls == "vm_guest_metrics":  # a guest agent's report (the simulated guests run none)
        from xetool.store.db import Store

        store = Store(pool)
        with store.write() as txn:
            vm = txn.select("vm", ["uuid"], {"name_label": "web01"})[0]["uuid"]
            txn.update("vm", vm, {"guest_metrics": txn.insert("vm_guest_metrics", {"VM": vm})})
        store.close()


def test_json_errors(pool, xe):
    r = xe("--format=json", "vm-param-get", "uuid=bad", "param-name=uuid")
    assert r.rc == 2 and json.loads(r.err)["error"]["code"] == "UUID_INVALID"


def test_help(xe):
    r = xe("help")
    assert r.rc == 0 and "Common command list" in r.out and "vm-list" in r.out
    r = xe("help", "vm-param-get")
    assert r.out.splitlines() == [
        "command name            : vm-param-get",
        "        reqd params     : uuid, param-name",
        "        optional params : param-key",
        "        description     : " + commands()["vm-param-get"].help,
        "        parameters      :",
        "          uuid        The uuid of the object.",
        "          param-name  The field, by its name as listed (name-label, other-config).",
        "          param-key   One key of a map field (or one member of a set).",
    ]


def test_version(xe):
    r = xe("--version")
    assert r.rc == 0 and r.out.startswith("xetool ")


def test_memory_fields_take_units_on_param_set(pool, ok):
    vm = ok("vm-list", "name-label=web01", "--minimal").strip()
    ok("vm-param-set", f"uuid={vm}", "memory-static-max=1GiB", "memory-dynamic-max=768MiB")
    assert ok("vm-param-get", f"uuid={vm}", "param-name=memory-static-max") == f"{1 << 30}\n"
    assert ok("vm-param-get", f"uuid={vm}", "param-name=memory-dynamic-max") == f"{768 << 20}\n"


@pytest.mark.parametrize("where", ["before", "after"])
def test_format_option_takes_its_value_after_a_space(pool, ok, where):
    argv = ["--format", "json", "vm-list"] if where == "before" else ["vm-list", "--format", "json"]
    assert json.loads(ok(*argv))[0]["name-label"] == "web01"


GLOBAL_FORMS = [
    ["--minimal", "host-list"],
    ["--format", "json", "--quiet", "host-list"],
    ["--format=json", "--debug", "host-list", "params=name-label"],
    ["--state-dir", "{state}", "--minimal", "vm-list", "power-state=halted"],
    ["--state-dir={state}", "--trace", "host-list", "--minimal"],
    ["--format=yaml", "host-list"],  # a bad value: click's usage error
    ["--state-dir"],  # no value
    ["--bogus", "host-list"],  # an unknown option
    ["--minimal", "no-such-command"],
    ["--minimal", "host-list", "--", "name-label=host1"],
]


@pytest.mark.parametrize("argv", GLOBAL_FORMS, ids=" ".join)
def test_plain_path_and_click_agree(pool, argv):
    """A plain line skips click (cli/main.py): whatever the line, the outcome is click's."""
    import io

    from tests.conftest import run_xe
    from xetool.cli.app import invoke
    from xetool.cli.context import Context
    from xetool.cli.main import plain_line
    from xetool.errors import XeError

    argv = [a.format(state=pool) for a in argv]
    plain = plain_line(list(argv), Context(pool)) is not None
    ours = run_xe(pool, *argv)
    ctx = Context(pool, out=io.StringIO(), err=io.StringIO())
    try:
        rc = invoke(list(argv), ctx)
    except XeError as err:
        rc, _ = int(err.status), ctx.err.write(err.render() + "\n")
    assert (ours.rc, ours.out, ours.err) == (rc, ctx.out.getvalue(), ctx.err.getvalue())
    assert not plain or (rc == 0 and ours.out != "")
    assert plain == (argv[0] != "--bogus" and "yaml" not in argv[0] and len(argv) > 1 and "no-such-command" not in argv
                     and "--" not in argv)
