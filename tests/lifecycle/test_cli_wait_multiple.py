"""Through the CLI: --wait on every lifecycle command where another operation can hold the VM,
and --multiple reporting each failure once."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.lifecycle.conftest import Pool
from xetool import lifecycle, tasks


def _hold(pool: Pool, vm: str) -> str:
    """A live task (this test process) holds the VM, as a concurrent command would."""
    with pool.store.write() as txn:
        task = tasks.create(txn, "VM.test", "held by the test")
        lifecycle.mark(txn, "vm", vm, task, "hard_shutdown")  # blocks every other operation
    return task


def _release(pool: Pool, vm: str, task: str) -> None:
    with pool.store.write() as txn:
        lifecycle.unmark(txn, "vm", vm, task)
    tasks.finish(pool.store, task)


# (command, the power state it needs, the power state it leaves)
LIFECYCLE = [
    (["vm-shutdown", "vm=web01", "--force"], "running", "halted"),
    (["vm-reboot", "vm=web01", "--force"], "running", "running"),
    (["vm-pause", "vm=web01"], "running", "paused"),
    (["vm-unpause", "vm=web01"], "paused", "running"),
    (["vm-destroy", "uuid={vm}"], "halted", None),
]


def _into(pool: Pool, state: str) -> None:
    if state in ("running", "paused"):
        pool.xe("vm-start", "vm=web01", *(["--paused"] if state == "paused" else []))


@pytest.mark.parametrize("line, needs, leaves", LIFECYCLE, ids=lambda v: v[0] if isinstance(v, list) else None)
def test_wait_runs_out_with_exit_4_and_changes_nothing(pool: Pool, line, needs, leaves) -> None:
    vm = pool.uuid("vm", "web01")
    _into(pool, needs)
    words = [w.format(vm=vm) for w in line]
    task = _hold(pool, vm)
    try:
        pool.fails(*words, code="OTHER_OPERATION_IN_PROGRESS", status=3)  # without --wait: at once
        t0 = time.monotonic()
        params = pool.fails(*words, "wait=1", code="OPERATION_WAIT_TIMEOUT", status=4)
        assert 0.9 < time.monotonic() - t0 < 10
        assert params["object"] == vm and params["operation_ref"] == task and params["seconds"] == "1"
        assert pool.row("vm", vm)["power_state"].lower() == needs
    finally:
        _release(pool, vm, task)
    pool.assert_no_marks()
    if needs != "halted":
        pool.xe("vm-shutdown", "vm=web01", "--force")


@pytest.mark.parametrize("line, needs, leaves", LIFECYCLE, ids=lambda v: v[0] if isinstance(v, list) else None)
def test_wait_goes_ahead_when_the_holder_finishes(pool: Pool, line, needs, leaves) -> None:
    vm = pool.uuid("vm", "web01")
    _into(pool, needs)
    task = _hold(pool, vm)
    timer = threading.Timer(1.0, _release, (pool, vm, task))
    timer.start()
    try:
        pool.xe(*[w.format(vm=vm) for w in line], "--wait")
    finally:
        timer.join()
    if leaves is None:
        with pool.store.read() as txn:
            assert txn.get("vm", vm, ["uuid"]) is None
        return
    assert pool.row("vm", vm)["power_state"].lower() == leaves
    pool.assert_no_marks()
    if leaves != "halted":
        pool.xe("vm-shutdown", "vm=web01", "--force")


def test_each_failure_is_printed_once(pool: Pool) -> None:
    web, db = pool.uuid("vm", "web01"), pool.uuid("vm", "db01")
    pool.xe("vm-start", "vm=web01")
    pool.xe("vm-start", "vm=db01")
    out = pool.run("vm-start", "--multiple")  # web01 and db01 run already; win01 starts
    assert out.returncode == 1 and "Traceback" not in out.stderr
    doc = "You attempted an operation on a VM that was not in an appropriate power state at the time."
    assert out.stderr.count(doc) == 2
    assert out.stderr.count(f"vm: {web}") == 1 and out.stderr.count(f"vm: {db}") == 1
    assert out.stderr.count("operation failed on") == 2
    assert pool.vm("win01")["power_state"] == "Running"
    js = pool.run("vm-start", "--multiple", "--format=json")
    assert js.returncode == 1
    doc = json.loads(js.stderr)  # one document: the first error, then every failure with its VM
    assert doc["error"]["code"] == "VM_BAD_POWER_STATE"
    assert [(f["name-label"], f["error"]["code"]) for f in doc["failures"]] == \
        [("web01", "VM_BAD_POWER_STATE"), ("db01", "VM_BAD_POWER_STATE"), ("win01", "VM_BAD_POWER_STATE")]
    pool.xe("vm-shutdown", "--multiple", "--force")


def test_no_hosts_failure_once_under_multiple(pool: Pool) -> None:
    pool.xe("host-disable", "--multiple")
    out = pool.run("vm-start", "--multiple", "power-state=halted")
    assert out.returncode == 1
    doc = "There were no servers available to complete the specified operation."
    assert out.stderr.count(doc) == 3, out.stderr  # web01, db01, win01: once each
    pool.xe("host-enable", "--multiple")


def test_host_sim_list_is_a_listing_of_records(pool: Pool) -> None:
    pool.xe("vm-start", "vm=web01", "on=host2")
    host2 = pool.uuid("host", "host2")
    assert pool.xe("host-sim-list", "state=running", "--minimal") == host2 + "\n"
    assert pool.xe("host-sim-list", "state=running", "params=name-label", "--minimal") == "host2\n"
    records = json.loads(pool.xe("host-sim-list", "--format=json", "params=name-label,state,pid"))
    by_name = {r["name-label"]: r for r in records}
    assert set(by_name) == {"host1", "host2", "host3"} and by_name["host2"]["state"] == "running"
    assert isinstance(by_name["host2"]["pid"], int) and by_name["host2"]["pid"] > 0
    assert by_name["host1"] == {"name-label": "host1", "state": "not-started", "pid": -1}
    text = pool.xe("host-sim-list", "host-sim=host2", "params=state,pid")
    assert text.splitlines()[0].startswith("state ( RO)") and "running" in text
    assert pool.xe("host-sim-list", "state=bogus") == ""  # as any listing: a value no record has
    pool.fails("host-sim-list", "nosuch=1", code="UNKNOWN_PARAMETER", status=2)
    pool.xe("host-sim-stop", "host=host2")
    assert json.loads(pool.xe("host-sim-list", "host-sim=host2", "--format=json"))[0]["state"] == "stopped"


@pytest.mark.parametrize("arg, code, status", [("wait=90000", "VALUE_NOT_SUPPORTED", 1), ("wait=soon", "FIELD_TYPE_ERROR", 2),
                                               ("timeout=1e9", "VALUE_NOT_SUPPORTED", 1), ("timeout=nan", "FIELD_TYPE_ERROR", 2)])
def test_a_wait_or_timeout_beyond_a_day_or_not_a_number_is_refused(pool: Pool, arg: str, code: str, status: int) -> None:
    pool.xe("vm-start", "vm=web01")
    pool.fails("vm-shutdown", "vm=web01", arg, code=code, status=status)
    assert pool.xe("vm-list", "name-label=web01", "params=power-state", "--minimal").strip() == "running"
