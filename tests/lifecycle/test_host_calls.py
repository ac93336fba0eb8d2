"""The host half's calls (issue 12): declared once in host/calls.py, dispatched by lookup, and
reached through the same JSON round trip whether the host is in this process or not."""

from __future__ import annotations

import importlib
import json

import pytest
from conftest import Pool

from xetool.errors import XeError
from xetool.host.calls import CALLS, PROTOCOL, dispatch
from xetool.master import host_half


@pytest.mark.parametrize("name", sorted(CALLS))
def test_every_call_has_a_handler_and_a_doc(name: str) -> None:
    call = CALLS[name]
    module, _, func = call.handler.partition(":")
    assert callable(getattr(importlib.import_module(module), func))
    assert call.doc.endswith(".") and len(set(call.args)) == len(call.args)


def _host(p: Pool, name: str = "host1") -> dict:
    from xetool.host.backend import HOST_FIELDS

    uuid = p.uuid("host", name)
    with p.store.read() as txn:
        return txn.must("host", uuid, HOST_FIELDS)


def test_unknown_call_and_missing_arguments_are_registry_errors(pool: Pool) -> None:
    host = _host(pool)
    events: list[dict] = []
    out = dispatch(pool.state_dir, {"id": 7, "call": "vm_explode", "host": host, "args": {}}, events.append)
    assert out == {"id": 7, "error": {"code": "MESSAGE_METHOD_UNKNOWN", "fields": {"method": "vm_explode"}}}
    out = dispatch(pool.state_dir, {"id": 8, "call": "vm_set_paused", "host": host, "args": {"vm": "x"}}, events.append)
    assert out["error"]["code"] == "MESSAGE_PARAMETER_COUNT_MISMATCH" and out["error"]["fields"]["expected"] == "vm paused"
    assert events == []


def test_hello_names_the_protocol(pool: Pool) -> None:
    answer = host_half.client(pool.store, pool.state_dir, _host(pool)).call("hello")
    assert answer["protocol"] == PROTOCOL and answer["state_dir"] == str(pool.state_dir)


def test_a_running_vm_through_the_calls_with_a_registry_error_across(pool: Pool) -> None:
    pool.xe("vm-start", "vm=web01", "on=host1")
    vm = pool.vm("web01")
    c = host_half.client(pool.store, pool.state_dir, _host(pool))
    inv = c.call("inventory", start=False)
    assert inv["state"] == "live" and list(inv["domains"]) == [vm["uuid"]] and inv["unfinished"] == []
    assert inv["domains"][vm["uuid"]]["domid"] == vm["domid"] and [r["vm"] for r in inv["runtimes"]] == [vm["uuid"]]
    assert any(line.startswith(tuple(v["MAC"] for v in pool.devices("vif", vm["uuid"]))) for line in inv["leases"]["xenbr1"])
    assert c.call("vm_set_paused", vm=vm["uuid"], paused=True) == {"domid": vm["domid"]}
    assert c.call("vm_set_paused", vm=vm["uuid"], paused=False) == {"domid": vm["domid"]}
    other = host_half.client(pool.store, pool.state_dir, _host(pool, "host2"))
    with pytest.raises(XeError) as err:  # a simulated host that does not run: nothing to ask
        other.call("console", vm=vm["uuid"])
    assert err.value.code == "HOST_OFFLINE"
    assert other.call("inventory", start=True)["domains"] == {}
    with pytest.raises(XeError) as err:  # not there: the host's own answer, as a registry error here
        other.call("console", vm=vm["uuid"])
    assert err.value.code == "VM_BAD_POWER_STATE"
    pool.xe("vm-shutdown", "vm=web01", "--force")
    pool.assert_halted_clean(vm["uuid"])


class _Recording(host_half.Hosts):
    """The real host half, keeping each vm_start request and its answer as the wire carried them."""

    sent: list[tuple[str, str, dict]] = []

    def vm_start(self, vm: str, host: str, task: str, paused: bool, force: bool = False) -> None:
        request = host_half.start_request(self.store, vm, task, paused, force)
        super().vm_start(vm, host, task, paused, force)
        self.sent.append((host, json.dumps(request), pool_row(self.store, vm)))


def pool_row(store, vm: str) -> dict:  # type: ignore[no-untyped-def]
    with store.read() as txn:
        return txn.must("vm", vm, ["domid", "power_state", "resident_on"])


def test_a_repeated_start_with_the_same_task_answers_the_recorded_result(pool: Pool) -> None:
    from xetool.master.vm_start import MasterStart, StartRequest

    vm = pool.uuid("vm", "web01")
    _Recording.sent = []
    MasterStart(pool.store, pool.state_dir, StartRequest(vm), _Recording(pool.store, pool.state_dir)).run()
    host, request, row = _Recording.sent[0]
    assert row["power_state"] == "Running" and row["resident_on"] == host
    request = json.loads(request)
    # self-contained: the VM, its disks with their files, its VIFs with bridges and MACs
    assert request["record"]["uuid"] == vm and all(d["path"].endswith(d["location"]) for d in request["disks"])
    assert {v["bridge"] for v in request["vifs"]} == {"xenbr0", "xenbr1"} and all(v["mac"] for v in request["vifs"])
    c = host_half.client_for(pool.store, pool.state_dir, host)
    again = c.call("vm_start", **request)  # the connection dropped after the host finished: ask again
    assert again["domid"] == row["domid"] and again["power_state"] == "Running"
    assert [d.domid for _, d in pool.domains(vm)] == [row["domid"]]  # no second domain
    pool.xe("vm-shutdown", "vm=web01", "--force")
    pool.assert_halted_clean(vm)


def test_faults_and_timeouts_travel_in_the_request(pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XETOOL_FIST", "create_vifs")
    monkeypatch.setenv("XETOOL_HOTPLUG_TIMEOUT", "7")
    c = host_half.client(pool.store, pool.state_dir, _host(pool))
    request = c.request("hello", {})
    assert request["env"] == {"XETOOL_FIST": "create_vifs", "XETOOL_HOTPLUG_TIMEOUT": "7"}
    from xetool.host import env

    monkeypatch.delenv("XETOOL_FIST")
    with env.applied(request["env"]):  # what the host reads, whatever its own environment holds
        assert env.get("XETOOL_FIST") == "create_vifs"
        from xetool.devices.common import hotplug_timeout

        assert hotplug_timeout() == 7.0
    assert env.get("XETOOL_FIST") is None


def test_the_protocol_page_lists_every_call_with_its_arguments() -> None:
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "agent-protocol.md").read_text()
    for call in CALLS.values():
        line = next((line for line in page.splitlines() if line.startswith(f"| `{call.name}` |")), None)
        assert line is not None, call.name
        assert line.split("|")[2].strip() == (" ".join(f"`{a}`" for a in call.args) or "—"), call.name
