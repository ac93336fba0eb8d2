"""The hosts are the truth (issue 11): domains found by the VM's uuid, a host's new boot, the
resync's repairs with their messages, pool-check, HOST_OFFLINE for a host that does not answer,
and what a stopped VM leaves behind. Real simulated host processes, the real CLI."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid as uuidlib
from pathlib import Path

import pytest
from conftest import Pool, processes_under, stand_ins

from xetool.backends.base import DomainConfig


def _host(p: Pool, name: str) -> str:
    return p.uuid("host", name)


def _host_pid(p: Pool, host: str) -> int:
    return int((p.state_dir / "hosts" / host / "hostd.pid").read_text())


def _messages(p: Pool, name: str) -> list[dict]:
    with p.store.read() as txn:
        return txn.select("message", ["name", "cls", "obj_uuid", "body"], {"name": name})


def _xs_paths(p: Pool, host: str, *paths: str) -> dict[str, bool]:
    from xetool.xenstore.client import XsClient

    with XsClient(p.backend(host).xenstore_socket()) as xs:
        return {path: xs.exists(path) for path in paths}


def _pool_check(p: Pool, *args: str) -> tuple[int, dict]:
    out = p.run("pool-check", "--format", "json", *args)
    assert "Traceback" not in out.stderr, out.stderr
    data = json.loads(out.stdout)
    parts = data if isinstance(data, list) else [data]
    found = [d for part in parts if "divergences" in part for d in part["divergences"]]
    return out.returncode, {"found": found, "stderr": out.stderr, "parts": parts}


def _kinds(items: list[dict]) -> list[str]:
    return sorted(d["kind"] for d in items)


def _store_write(p: Pool, cls: str, uuid: str, values: dict) -> None:
    with p.store.write() as txn:
        txn.update(cls, uuid, values)


def test_operator_example_after_a_host_crash(pool: Pool) -> None:
    """The issue's session: a crashed host comes back as a new boot; its VMs are Halted before
    anything else runs there, and a stale domid never reaches another VM's domain."""
    p = pool
    host1, web, db = _host(p, "host1"), p.uuid("vm", "web01"), p.uuid("vm", "db01")
    p.xe("vm-start", "vm=web01", "on=host1")
    assert p.row("vm", web)["domid"] == 1
    os.kill(_host_pid(p, host1), signal.SIGKILL)
    time.sleep(0.1)
    p.xe("host-compute-free-memory", "host=host1")
    assert p.row("vm", web)["power_state"] == "Halted"
    halted = _messages(p, "VM_HALTED_HOST_REBOOTED")
    assert [m["obj_uuid"] for m in halted] == [web] and "host1" in halted[0]["body"]
    p.assert_halted_clean(web)
    p.xe("vm-start", "vm=db01", "on=host1")
    assert p.row("vm", db)["domid"] == 1  # the number web01 had: only the uuid tells them apart
    p.fails("vm-shutdown", "vm=web01", "--force", code="VM_BAD_POWER_STATE")
    p.assert_running_clean(db)
    assert [(h, d.domid) for h, d in p.domains(db)] == [(host1, 1)]
    rc, res = _pool_check(p)
    assert rc == 0 and res["found"] == [], res
    p.xe("vm-shutdown", "vm=db01", "--force")
    p.assert_halted_clean(db)


def test_crash_noticed_by_an_operation_on_the_vm(pool: Pool) -> None:
    """Without a command touching the host in between: the operation on the VM finds its host
    gone, the VM is Halted (with its message), and nothing is destroyed anywhere."""
    p = pool
    host1, web = _host(p, "host1"), p.uuid("vm", "web01")
    p.xe("vm-start", "vm=web01", "on=host1")
    os.kill(_host_pid(p, host1), signal.SIGKILL)
    time.sleep(0.1)
    p.fails("vm-pause", "vm=web01", code="VM_BAD_POWER_STATE")
    p.assert_halted_clean(web)
    assert _messages(p, "VM_HALTED_NO_DOMAIN") or _messages(p, "VM_HALTED_HOST_REBOOTED")


def test_kill_between_domain_creation_and_its_record(pool: Pool) -> None:
    """SIGKILL after the hypervisor made the domain, before the host half recorded it: the
    orphan is found by the VM's uuid, and the next start of that VM on that host succeeds."""
    p = pool
    host1, web = _host(p, "host1"), p.uuid("vm", "web01")
    out = p.run("vm-start", "vm=web01", "on=host1", fist="domain_created:kill")
    assert out.returncode == -signal.SIGKILL, (out.returncode, out.stderr)
    orphan = p.domains(web)
    assert len(orphan) == 1 and not orphan[0][1].built  # the window: a domain nobody recorded
    rc, res = _pool_check(p)
    assert rc == 1 and {"dead-task", "orphan-domain"} <= set(_kinds(res["found"])), res
    assert "POOL_CHECK_FAILED" in res["stderr"] and "disagree" in res["stderr"]
    p.xe("vm-start", "vm=web01", "on=host1")
    p.assert_running_clean(web)
    assert len(p.domains(web)) == 1 and p.domains(web)[0][1].domid != orphan[0][1].domid
    p.xe("vm-shutdown", "vm=web01", "--force")
    p.assert_halted_clean(web)
    assert p.domains() == [] and stand_ins(p.state_dir) == {}
    assert _pool_check(p)[0] == 0


def test_kill_at_domain_created_then_resync_alone(pool: Pool) -> None:
    """The same orphan when no janitor record leads to it (its runtime file lost): the resync of
    the host destroys it, with a message."""
    p = pool
    host1, web = _host(p, "host1"), p.uuid("vm", "web01")
    out = p.run("vm-start", "vm=web01", "on=host1", fist="domain_created:kill")
    assert out.returncode == -signal.SIGKILL
    for f in p.runtime_files(web):
        f.unlink()
    rc, res = _pool_check(p, "--repair")
    assert rc == 0, res
    assert p.domains(web) == []
    msgs = _messages(p, "ORPHAN_DOMAIN_DESTROYED")
    assert len(msgs) == 1 and msgs[0]["obj_uuid"] == host1 and "web01" in msgs[0]["body"]
    p.assert_halted_clean(web)
    p.xe("vm-start", "vm=web01", "on=host1")
    p.xe("vm-shutdown", "vm=web01", "--force")


def test_stopped_host_is_offline_and_never_replaced(pool: Pool) -> None:
    p = pool
    host1 = _host(p, "host1")
    p.xe("host-sim-start", "host=host1")
    pid = _host_pid(p, host1)
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        err = p.fails("vm-start", "vm=web01", "on=host1", code="HOST_OFFLINE")
        assert err["host"] == host1 and time.monotonic() - started < 10
        p.fails("host-compute-free-memory", "host=host1", code="HOST_OFFLINE")
        out = p.run("vm-start", "vm=web01", "on=host1")
        assert "name: host1" in out.stderr and "does not answer" in out.stderr
        hostds = [q for q, cmd in processes_under(p.state_dir).items() if "simulator.hostd" in cmd and host1 in cmd]
        assert hostds == [pid], hostds
        rc, res = _pool_check(p)
        assert rc == 1 and _kinds(res["found"]) == ["host-offline"]
        p.assert_halted_clean(p.uuid("vm", "web01"))
    finally:
        os.kill(pid, signal.SIGCONT)
    assert _pool_check(p)[0] == 0
    p.xe("vm-start", "vm=web01", "on=host1")
    assert _host_pid(p, host1) == pid
    p.xe("vm-shutdown", "vm=web01", "--force")


def test_vm_whose_domain_vanished_is_halted(pool: Pool) -> None:
    p = pool
    host1, web = _host(p, "host1"), p.uuid("vm", "web01")
    p.xe("vm-start", "vm=web01", "on=host1")
    assert p.leases() and p.runtime_files(web)
    p.backend(host1).destroy(p.row("vm", web)["domid"])
    rc, res = _pool_check(p)
    assert rc == 1 and _kinds(res["found"]) == ["vm-without-domain"]
    assert p.row("vm", web)["power_state"] == "Running"  # pool-check changes nothing
    p.fails("vm-pause", "vm=web01", code="VM_BAD_POWER_STATE")  # its host is resynced first
    p.assert_halted_clean(web)
    assert p.leases() == [] and stand_ins(p.state_dir) == {}
    msgs = _messages(p, "VM_HALTED_NO_DOMAIN")
    assert [m["obj_uuid"] for m in msgs] == [web] and "no domain" in msgs[0]["body"]


def test_domain_that_shut_down_halts_its_vm(pool: Pool) -> None:
    p = pool
    host1, web = _host(p, "host1"), p.uuid("vm", "web01")
    p.xe("vm-start", "vm=web01", "on=host1")
    p.backend(host1).shutdown(p.row("vm", web)["domid"], "poweroff")  # the guest powered itself off
    p.xe("host-compute-free-memory", "host=host1")
    p.assert_halted_clean(web)
    assert len(_messages(p, "VM_HALTED_DOMAIN_SHUT_DOWN")) == 1


def test_orphan_domain_is_destroyed(pool: Pool) -> None:
    p = pool
    host1 = _host(p, "host1")
    p.xe("host-sim-start", "host=host1")
    stranger = str(uuidlib.uuid4())
    backend = p.backend(host1)
    backend.create_domain(DomainConfig(stranger, "stranger", False, 65536, 65536, 1, 1))
    rc, res = _pool_check(p)
    assert rc == 1 and _kinds(res["found"]) == ["orphan-domain"] and "no VM" in res["found"][0]["found"]
    p.xe("host-compute-free-memory", "host=host1")
    assert backend.find_domain(stranger) is None
    msgs = _messages(p, "ORPHAN_DOMAIN_DESTROYED")
    assert len(msgs) == 1 and msgs[0]["cls"] == "Host" and msgs[0]["obj_uuid"] == host1
    assert not _xs_paths(p, host1, f"/vm/{stranger}")[f"/vm/{stranger}"]


def test_domain_of_a_halted_vm_makes_it_resident(pool: Pool) -> None:
    """xapi's rule: the store lost track of a running VM; its finished domain makes it Running."""
    p = pool
    host1, web = _host(p, "host1"), p.uuid("vm", "web01")
    p.xe("vm-start", "vm=web01", "on=host1")
    domid = p.row("vm", web)["domid"]
    _store_write(p, "vm", web, {"power_state": "Halted", "resident_on": None, "domid": -1})
    rc, res = _pool_check(p)
    assert rc == 1 and _kinds(res["found"]) == ["halted-vm-with-domain"]
    rc, res = _pool_check(p, "--repair")
    assert rc == 0, res
    row = p.row("vm", web)
    assert (row["power_state"], row["resident_on"], row["domid"]) == ("Running", host1, domid)
    assert len(_messages(p, "VM_RESIDENT_FROM_DOMAIN")) == 1
    p.xe("vm-shutdown", "vm=web01", "--force")
    p.assert_halted_clean(web)


def test_domid_and_power_state_follow_the_domain(pool: Pool) -> None:
    p = pool
    host1, web = _host(p, "host1"), p.uuid("vm", "web01")
    p.xe("vm-start", "vm=web01", "on=host1")
    domid = p.row("vm", web)["domid"]
    _store_write(p, "vm", web, {"domid": domid + 40})
    p.backend(host1).pause(domid)
    rc, res = _pool_check(p)
    assert rc == 1 and _kinds(res["found"]) == ["domid-differs", "power-state-differs"]
    assert _pool_check(p, "--repair")[0] == 0
    assert (p.row("vm", web)["domid"], p.row("vm", web)["power_state"]) == (domid, "Paused")
    assert len(_messages(p, "VM_DOMID_RESYNCED")) == 1 and len(_messages(p, "VM_POWER_STATE_RESYNCED")) == 1
    p.xe("vm-unpause", "vm=web01")
    p.xe("vm-shutdown", "vm=web01", "--force")


def test_stale_runtime_file_and_lease(pool: Pool) -> None:
    from xetool.devices import vif
    from xetool.host import runtime
    from xetool.paths import host_dir

    p = pool
    host1, db = _host(p, "host1"), p.uuid("vm", "db01")
    p.xe("host-sim-start", "host=host1")
    hd = host_dir(p.state_dir, host1)
    runtime.save(p.state_dir, runtime.Runtime(db, host1, task=str(uuidlib.uuid4()), leases=[("xenbr9", "aa:00:00:00:00:01")]))
    vif.add_lease(hd, "xenbr9", "aa:00:00:00:00:01", "db01")
    vif.add_lease(hd, "xenbr9", "aa:00:00:00:00:02", "nobody")
    rc, res = _pool_check(p)
    assert rc == 1 and _kinds(res["found"]) == ["stale-lease", "stale-runtime-file"], res
    assert _pool_check(p, "--repair")[0] == 0
    assert p.runtime_files(db) == [] and p.leases() == []
    assert len(_messages(p, "STALE_RUNTIME_RELEASED")) == 1 and len(_messages(p, "STALE_LEASE_REMOVED")) == 1


def test_store_marks_without_live_tasks(pool: Pool) -> None:
    p = pool
    web, host1 = p.uuid("vm", "web01"), _host(p, "host1")
    ghost = str(uuidlib.uuid4())
    with p.store.write() as txn:
        txn.update("vm", web, {"current_operations": {ghost: "start"}})
        txn.db.execute("INSERT INTO reservation (id, host, vm, task, kib, domid, created) VALUES (?, ?, ?, ?, ?, -1, 0)",
                       ("r1", host1, web, ghost, 1024))
        dead = txn.insert("task", {"name_label": "VM.start", "status": "pending", "pid": 2 ** 22 + 7,
                                   "process_start": "1", "hostname": os.uname().nodename, "other_config": {}})
    rc, res = _pool_check(p)
    assert rc == 1 and _kinds(res["found"]) == ["dead-task", "reservation-without-task", "stale-mark"], res
    before = p.dump()
    assert _pool_check(p)[0] == 1 and p.dump() == before  # looking changes nothing
    rc, res = _pool_check(p, "--repair")
    assert rc == 0, res
    p.assert_no_marks()
    assert p.reservations() == [] and p.row("task", dead)["status"] == "failure"
    for name in ("DEAD_TASK_CLEANED", "STALE_MARK_CLEARED", "STALE_RESERVATION_RELEASED"):
        assert len(_messages(p, name)) == 1, name


def test_a_start_in_progress_is_left_alone(pool: Pool) -> None:
    """A half-built domain of a VM that a live task is starting is not an orphan: only marks of
    dead tasks are cleaned."""
    p = pool
    host1, web = _host(p, "host1"), p.uuid("vm", "web01")
    p.xe("host-sim-start", "host=host1")
    backend = p.backend(host1)
    from xetool import tasks

    with p.store.write() as txn:
        task = tasks.create(txn, "VM.start", "a start in this test's process", vm=web, host=host1)  # alive: this pid
        txn.update("vm", web, {"current_operations": {task: "start"}, "scheduled_to_be_resident_on": host1})
    domid = backend.create_domain(DomainConfig(web, "web01", False, 65536, 65536, 1, 1))
    try:
        rc, res = _pool_check(p, "--repair")
        assert rc == 0 and res["found"] == [], res
        assert backend.find_domain(web).domid == domid  # type: ignore[union-attr]
    finally:
        with p.store.write() as txn:
            txn.update("vm", web, {"current_operations": {}, "scheduled_to_be_resident_on": None})
        tasks.finish(p.store, task)
    rc, res = _pool_check(p)
    assert rc == 1 and _kinds(res["found"]) == ["orphan-domain"]
    assert _pool_check(p, "--repair")[0] == 0 and backend.find_domain(web) is None


def test_stop_leaves_no_lease_runtime_file_or_xenstore_node(pool: Pool) -> None:
    p = pool
    host1 = _host(p, "host1")
    for name in ("web01", "win01"):
        vm = p.uuid("vm", name)
        p.xe("vm-start", f"vm={name}", "on=host1")
        domid = p.row("vm", vm)["domid"]
        paths = (f"/vm/{vm}", f"/local/domain/{domid}", f"/local/domain/0/device-model/{domid}",
                 f"/local/domain/0/backend/vbd/{domid}", f"/local/domain/0/backend/vif/{domid}")
        assert _xs_paths(p, host1, *paths)[f"/vm/{vm}"]
        p.xe("vm-shutdown", f"vm={name}", "--force")
        p.assert_halted_clean(vm)
        assert not any(_xs_paths(p, host1, *paths).values()), _xs_paths(p, host1, *paths)
        logs = list((p.state_dir / "hosts" / host1 / "logs").glob(f"*-{domid}.log"))
        assert all(f.stat().st_size > 0 for f in logs), logs  # empty per-start logs go
    assert p.leases() == [] and p.runtime_files() == []
    assert _pool_check(p)[0] == 0


def test_pool_check_is_clean_on_a_fresh_pool(pool: Pool) -> None:
    rc, res = _pool_check(pool)
    assert rc == 0 and res["found"] == []
    out = pool.run("pool-check")
    assert out.returncode == 0 and "No divergence" in out.stdout
    assert list((pool.state_dir / "hosts").glob("*/hostd.pid")) == [] if (pool.state_dir / "hosts").exists() else True
