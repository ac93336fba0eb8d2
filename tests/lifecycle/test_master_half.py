"""vm-start, the master's half (issue 4), against a host half that only records what it was
asked (RecordingHostHalf, a test double), then the options through the real CLI."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest
from conftest import Pool

from xetool import lifecycle, tasks
from xetool.errors import XeError
from xetool.master import rrd
from xetool.master.vm_start import MasterStart, StartRequest


@dataclass
class RecordingHostHalf:
    """Test double of the host half: records each call and what the store held at that moment."""

    pool: Pool
    fail: bool = False
    calls: list[tuple] = field(default_factory=list)
    seen: dict = field(default_factory=dict)
    undone: list[tuple] = field(default_factory=list)

    def vm_start(self, vm: str, host: str, task: str, paused: bool, force: bool = False) -> None:
        self.calls.append((vm, host, task, paused))
        with self.pool.store.read() as txn:
            row = txn.must("vm", vm)
            self.seen = {
                "vm": row["current_operations"], "scheduled": row["scheduled_to_be_resident_on"],
                "overhead": row["memory_overhead"], "host": txn.must("host", host)["current_operations"],
                "vbds": [v["current_operations"] for v in txn.select("vbd", None, {"VM": vm})],
                "vifs": [v["current_operations"] for v in txn.select("vif", None, {"VM": vm})],
                "boot_record": bool(row["last_booted_record"]),
            }
        if self.fail:
            raise XeError("HOST_OFFLINE", host)

    def vm_start_undo(self, vm: str, host: str, task: str) -> None:
        self.undone.append((vm, host, task))


def _start(p: Pool, name: str, double: RecordingHostHalf, **req: object):  # type: ignore[no-untyped-def]
    return MasterStart(p.store, p.state_dir, StartRequest(p.uuid("vm", name), **req), double).run()  # type: ignore[arg-type]


def _messages(p: Pool, name: str, obj: str) -> list[dict]:
    with p.store.read() as txn:
        return txn.select("message", None, {"name": name, "obj_uuid": obj})


def test_handoff_marks_during_and_none_after(pool: Pool) -> None:
    double = RecordingHostHalf(pool)
    vm = pool.uuid("vm", "web01")
    result = _start(pool, "web01", double)
    (called_vm, host, task, paused), = double.calls
    assert (called_vm, host, task, paused) == (vm, result.host, result.task, False)
    s = double.seen
    assert s["vm"] == {task: "start"} and s["host"] == {task: "vm_start"}
    assert s["vbds"] == [{task: "attach"}] * 2 and s["vifs"] == [{task: "attach"}] * 2
    assert s["scheduled"] == host and s["boot_record"]
    assert s["overhead"] > 0
    from xetool.master.snapshot import read_vm
    from xetool.placement.memory import vm_compute_memory_overhead

    with pool.store.read() as txn:
        assert s["overhead"] == vm_compute_memory_overhead(read_vm(txn, vm))
    pool.assert_no_marks()
    row = pool.vm("web01")
    assert row["scheduled_to_be_resident_on"] is None and row["memory_overhead"] == s["overhead"]
    assert "start" in row["allowed_operations"]
    assert len(_messages(pool, "VM_STARTED", vm)) == 1
    assert rrd.archive(pool.state_dir, host, vm).exists()
    assert pool.row("task", task)["status"] == "success"
    assert pool.xe("message-list", "name=VM_STARTED", "params=obj-uuid", "--minimal").strip() == vm


def test_handoff_failure_unmarks_everything(pool: Pool) -> None:
    double = RecordingHostHalf(pool, fail=True)
    vm = pool.uuid("vm", "web01")
    before = pool.vm("web01")["allowed_operations"]
    with pytest.raises(XeError) as err:
        _start(pool, "web01", double)
    assert err.value.code == "HOST_OFFLINE" and len(double.calls) == 1 and double.undone == []
    pool.assert_no_marks()
    row = pool.vm("web01")
    assert row["scheduled_to_be_resident_on"] is None and "start" in row["allowed_operations"]
    assert row["allowed_operations"] == before  # a failed start leaves the advice as it was
    assert _messages(pool, "VM_STARTED", vm) == []
    assert list(pool.state_dir.glob(f"rrd/*/{vm}.wsp")) == []
    task = double.calls[0][2]
    assert pool.row("task", task)["status"] == "failure"


def test_step_after_handoff_fails_and_start_is_taken_back(pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XETOOL_FIST", "unmark_vm")
    double = RecordingHostHalf(pool)
    with pytest.raises(XeError):
        _start(pool, "web01", double)
    assert [u[:2] for u in double.undone] == [c[:2] for c in double.calls]
    pool.assert_no_marks()


@pytest.mark.parametrize("step", ["create_vm_started_message", "push_rrd"])
def test_message_or_rrd_failure_never_undoes_the_start(pool: Pool, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """xapi ignores a failure to make the VM_STARTED message or push the RRD: so does xetool."""
    monkeypatch.setenv("XETOOL_FIST", step)
    double = RecordingHostHalf(pool)
    result = _start(pool, "web01", double)
    assert double.undone == [] and len(double.calls) == 1
    assert any(f"{step} failed: FIST" in w for w in result.warnings), result.warnings
    pool.assert_no_marks()


def test_rrd_push_on_a_full_disk_keeps_the_start(pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real failure of the push (here: whisper cannot write its archive) is a warning only."""
    import errno

    def full(*_a: object, **_k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    import whisper

    monkeypatch.setattr(whisper, "create", full)
    double = RecordingHostHalf(pool)
    result = _start(pool, "web01", double)
    assert double.undone == [] and any("push_rrd failed" in w for w in result.warnings)
    assert not list((pool.state_dir / "rrd").rglob("*.wsp*")) and not list((pool.state_dir / "rrd").rglob(".*"))


def test_rrd_archive_moves_with_the_vm(pool: Pool) -> None:
    vm = pool.uuid("vm", "web01")
    h1, h2 = pool.uuid("host", "host1"), pool.uuid("host", "host2")
    old = rrd.archive(pool.state_dir, h2, vm)
    old.parent.mkdir(parents=True)
    import whisper

    whisper.create(str(old), rrd.RETENTIONS)
    whisper.update(str(old), 42.0)
    _start(pool, "web01", RecordingHostHalf(pool), on=h1)
    new = rrd.archive(pool.state_dir, h1, vm)
    assert new.exists() and not old.exists()
    assert 42.0 in [v for v in whisper.fetch(str(new), int(time.time()) - 600)[1] if v is not None]


def test_start_on_and_paused_reach_the_host_half(pool: Pool) -> None:
    double = RecordingHostHalf(pool)
    h3 = pool.uuid("host", "host2")
    result = _start(pool, "web01", double, on=h3, paused=True)
    assert double.calls[0][1] == h3 == result.host and double.calls[0][3] is True
    assert double.seen["vm"] == {result.task: "start_on"}


def test_seed_makes_the_choice_reproducible(pool: Pool) -> None:
    hosts = set()
    for _ in range(3):
        hosts.add(_start(pool, "web01", RecordingHostHalf(pool), seed=7).host)
    assert len(hosts) == 1


# --- through the CLI ---------------------------------------------------------------------------

def _mark_busy(pool: Pool, vm: str, op: str = "clean_shutdown") -> str:
    """A live task (this test process) holds the VM."""
    with pool.store.write() as txn:
        task = tasks.create(txn, "VM.test", "held by the test")
        lifecycle.mark(txn, "vm", vm, task, op)
    return task


def _unmark(pool: Pool, vm: str, task: str) -> None:
    with pool.store.write() as txn:
        lifecycle.unmark(txn, "vm", vm, task)
    tasks.finish(pool.store, task)


def test_busy_vm_refused_at_once(pool: Pool) -> None:
    vm = pool.uuid("vm", "web01")
    task = _mark_busy(pool, vm)
    t0 = time.monotonic()
    params = pool.fails("vm-start", "vm=web01", code="OTHER_OPERATION_IN_PROGRESS", status=3)
    assert time.monotonic() - t0 < 10  # two CLI runs, no waiting
    assert params == {"class": "VM", "object": vm, "operation_type": "clean_shutdown", "operation_ref": task}
    t0 = time.monotonic()
    params = pool.fails("vm-start", "vm=web01", "wait=1.5", code="OPERATION_WAIT_TIMEOUT", status=4)
    assert 1.4 < time.monotonic() - t0 < 8  # waited, bounded
    assert params == {"class": "VM", "object": vm, "operation_type": "clean_shutdown", "operation_ref": task,
                      "seconds": "1.5"}
    _unmark(pool, vm, task)
    pool.assert_no_marks()


def test_wait_succeeds_when_the_holder_finishes(pool: Pool) -> None:
    vm = pool.uuid("vm", "web01")
    task = _mark_busy(pool, vm)
    timer = threading.Timer(1.0, _unmark, (pool, vm, task))
    timer.start()
    try:
        pool.xe("vm-start", "vm=web01", "--wait")
    finally:
        timer.join()
    pool.assert_running_clean(vm)
    pool.xe("vm-shutdown", "vm=web01", "--force")


def test_wait_reaps_a_dead_holder(pool: Pool) -> None:
    vm = pool.uuid("vm", "web01")
    with pool.store.write() as txn:  # a task whose process is gone (pid 1's start time differs)
        task = tasks.create(txn, "VM.dead", "")
        txn.update("task", task, {"pid": 2 ** 22 - 3, "process_start": "1"})
        lifecycle.mark(txn, "vm", vm, task, "clean_shutdown")
    pool.xe("vm-start", "vm=web01")
    assert pool.row("task", task)["status"] == "failure"
    pool.assert_running_clean(vm)
    pool.xe("vm-shutdown", "vm=web01", "--force")


def test_bad_power_state_and_multiple_and_force(pool: Pool) -> None:
    web = pool.uuid("vm", "web01")
    pool.xe("vm-start", "vm=web01")
    params = pool.fails("vm-start", "vm=web01", code="VM_BAD_POWER_STATE")
    assert params == {"vm": web, "expected": "halted", "actual": "running"}
    pool.xe("vm-shutdown", "vm=web01", "--force")
    # --multiple over a selector (every halted VM, HVM included), --force accepted
    pool.fails("vm-start", "power-state=halted", code="MULTIPLE_MATCHES", status=2)
    pool.xe("vm-start", "power-state=halted", "--multiple", "--force")
    for name in ("web01", "db01", "win01"):
        pool.assert_running_clean(pool.uuid("vm", name))
    pool.xe("vm-shutdown", "power-state=running", "--multiple", "--force")
    pool.assert_no_marks()
    assert pool.domains() == []


def test_template_refused(pool: Pool) -> None:
    vm = pool.uuid("vm", "web01")
    with pool.store.write() as txn:
        txn.update("vm", vm, {"is_a_template": True})
    before = pool.dump()
    params = pool.fails("vm-start", f"uuid={vm}", "is-a-template=true", code="VM_IS_TEMPLATE")
    assert params == {"vm": vm, "operation": "start"}
    assert pool.dump() == before
