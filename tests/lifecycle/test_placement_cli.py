"""Why a VM cannot start, through the CLI (issue 4): each placement error with its parameters,
NO_HOSTS_AVAILABLE's per-host table, --dry-run and vm-assert-can-boot-here changing nothing,
workload balancing with a real recommender process, and the HA failover plan."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest
from conftest import Pool, make_pool

POOL = '''
[pool]
name-label = "errors"
master = "h1"

[[host]]
name-label = "h1"
memory = "8GiB"
dom0-memory = "1GiB"
cpus = 4
capabilities = ["pv", "hvm"]

[[host]]
name-label = "h2"
memory = "3GiB"
dom0-memory = "512MiB"
cpus = 2
capabilities = ["pv"]

[[sr]]
name-label = "shared"
type = "file"
shared = true

[[sr]]
name-label = "only-h1"
type = "file"
shared = false
hosts = ["h1"]

[[network]]
name-label = "lan"
bridge = "xenbr0"

[[network]]
name-label = "only-h1-net"
bridge = "xenbr9"
hosts = ["h1"]
'''


def _vm(name: str, memory: str = "256MiB", vcpus: int = 1, sr: str = "shared", net: str = "lan", extra: str = "") -> str:
    return f'''
[[vm]]
name-label = "{name}"
memory = "{memory}"
vcpus = {vcpus}
PV-kernel = "/boot/vmlinuz"
{extra}
  [[vm.disk]]
  device = 0
  size = "1GiB"
  sr = "{sr}"
  bootable = true
  [[vm.vif]]
  device = 0
  network = "{net}"
'''


VMS = (_vm("small") + _vm("needs-sr", sr="only-h1") + _vm("needs-net", net="only-h1-net")
       + _vm("hvm", extra="hvm = true") + _vm("big", memory="4GiB") + _vm("wide", vcpus=4)
       + _vm("huge", memory="64GiB") + _vm("prot", memory="1536MiB", extra='ha-restart-priority = "restart"')
       + _vm("filler", memory="6GiB"))


@pytest.fixture(scope="module")
def epool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    p = make_pool(tmp_path_factory.mktemp("errors") / "state", POOL + VMS)
    yield p
    assert p.stop_everything() == []


def _set_host(p: Pool, field: str, value: bool) -> Callable[[], None]:
    uuid = p.uuid("host", "h2")
    with p.store.write() as txn:
        txn.update("host", uuid, {field: value})

    def undo() -> None:
        with p.store.write() as txn:
            txn.update("host", uuid, {field: not value})
    return undo


def _stable(p: Pool) -> dict:
    return {k: v for k, v in p.dump().items() if k != "task"}


CASES = [
    ("small", "HOST_DISABLED", lambda p: _set_host(p, "enabled", False), lambda p, vm: {"host": p.uuid("host", "h2")}),
    ("small", "HOST_NOT_LIVE", lambda p: _set_host(p, "live", False), lambda p, vm: {}),
    ("needs-sr", "VM_REQUIRES_SR", None, lambda p, vm: {"vm": vm, "sr": p.uuid("sr", "only-h1")}),
    ("needs-net", "VM_REQUIRES_NETWORK", None, lambda p, vm: {"vm": vm, "network": p.uuid("network", "only-h1-net")}),
    ("hvm", "VM_HVM_REQUIRED", None, lambda p, vm: {"vm": vm}),
    ("big", "HOST_NOT_ENOUGH_FREE_MEMORY", None, None),
    ("wide", "HOST_NOT_ENOUGH_PCPUS", None, lambda p, vm: {"vcpus": "4", "pcpus": "2"}),
]


@pytest.mark.parametrize("vm_name, code, setup, expect", CASES, ids=[c[1] for c in CASES])
def test_start_on_refused(epool: Pool, vm_name: str, code: str, setup, expect) -> None:  # type: ignore[no-untyped-def]
    undo = setup(epool) if setup else None
    try:
        vm = epool.uuid("vm", vm_name)
        epool.fails("vm-start", f"vm={vm_name}", "on=h2", code=code)  # the first try stores the overhead
        before = _stable(epool)
        params = epool.fails("vm-start", f"vm={vm_name}", "on=h2", code=code)
        assert _stable(epool) == before  # nothing changed but the failed task's record
        if expect:
            assert params == {k: str(v) for k, v in expect(epool, vm).items()}
        else:
            assert int(params["needed"]) > int(params["available"])
        epool.assert_halted_clean(vm)
        # the same refusal from vm-assert-can-boot-here, with the table on stderr
        out = epool.run("vm-assert-can-boot-here", f"vm={vm_name}", "host=h2")
        assert out.returncode == 1 and "h2" in out.stderr and "Traceback" not in out.stderr
    finally:
        if undo:
            undo()


def test_no_hosts_available_prints_every_host(epool: Pool) -> None:
    epool.fails("vm-start", "vm=huge", code="NO_HOSTS_AVAILABLE")  # the first try stores the overhead
    before = _stable(epool)
    out = epool.run("vm-start", "vm=huge")
    for host in ("h1", "h2"):
        assert any(host in line and ("memory" in line.lower() or "pcpu" in line.lower()) for line in out.stderr.splitlines()), out.stderr
    assert _stable(epool) == before
    epool.assert_halted_clean(epool.uuid("vm", "huge"))


def test_dry_run_and_assert_change_nothing(epool: Pool) -> None:
    epool.xe("vm-start", "vm=needs-sr", "--dry-run")  # overheads etc. settle
    before = epool.dump()
    text = epool.xe("vm-start", "vm=needs-sr", "--dry-run")
    for host in ("h1", "h2"):
        assert host in text
    assert "would start on h1" in text
    assert epool.uuid("sr", "only-h1") in text or "SR" in text  # h2's reason names the SR
    data = json.loads(epool.xe("--format", "json", "vm-start", "vm=needs-sr", "--dry-run"))
    flat = json.dumps(data)
    assert epool.uuid("host", "h1") in flat and epool.uuid("host", "h2") in flat and "VM_REQUIRES_SR" in flat
    ok = epool.xe("vm-assert-can-boot-here", "vm=needs-sr", "host=h1")
    assert "h1" in ok and "h2" not in ok
    assert epool.dump() == before  # no task, no mark, no message: nothing


RECOMMENDER = '''
import json, sys
req = json.load(sys.stdin)
if sys.argv[1] == "fail":
    sys.stderr.write("recommender database unavailable\\n")
    sys.exit(3)
hosts = sorted(req["pool"]["hosts"], key=lambda h: h["name_label"] != sys.argv[1])
print(json.dumps({"recommendations": [{"host": h["uuid"], "score": 10 - i, "reason": "test"} for i, h in enumerate(hosts)]}))
'''


def test_wlb_recommender_and_fallback(epool: Pool, tmp_path: Path) -> None:
    script = tmp_path / "recommender.py"
    script.write_text(RECOMMENDER)
    pool_uuid = epool.xe("pool-list", "--minimal").strip()
    small = epool.uuid("vm", "small")
    try:
        epool.xe("pool-param-set", f"uuid={pool_uuid}", f"wlb-command={sys.executable} {script} h2", "wlb-enabled=true")
        recs = epool.xe("vm-retrieve-wlb-recommendations", "vm=small")
        assert recs.index("h2") < recs.index("h1")
        epool.xe("vm-start", "vm=small")
        assert epool.vm("small")["resident_on"] == epool.uuid("host", "h2")
        epool.xe("vm-shutdown", "vm=small", "--force")
        epool.xe("pool-param-set", f"uuid={pool_uuid}", f"wlb-command={sys.executable} {script} fail")
        out = epool.run("vm-start", "vm=small")
        assert out.returncode == 0 and "Warning" in out.stderr, out.stderr
        assert epool.vm("small")["power_state"] == "Running"
        assert epool.xe("message-list", "name=WLB_CONSULTATION_FAILED", "--minimal").strip()
        epool.xe("vm-shutdown", "vm=small", "--force")
    finally:
        epool.xe("pool-param-set", f"uuid={pool_uuid}", "wlb-enabled=false", "wlb-command=")
    epool.assert_halted_clean(small)


def test_ha_plan_refuses_a_breaking_placement(epool: Pool) -> None:
    pool_uuid = epool.xe("pool-list", "--minimal").strip()
    epool.xe("vm-start", "vm=prot", "on=h2")
    try:
        epool.xe("pool-param-set", f"uuid={pool_uuid}", "ha-enabled=true", "ha-host-failures-to-tolerate=1")
        epool.fails("vm-start", "vm=filler", "on=h1", code="HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN")
        before = _stable(epool)
        epool.fails("vm-start", "vm=filler", "on=h1", code="HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN")
        assert _stable(epool) == before
        epool.assert_halted_clean(epool.uuid("vm", "filler"))
        epool.xe("vm-start", "vm=small", "on=h1")  # a small one keeps the plan
        epool.xe("vm-shutdown", "vm=small", "--force")
    finally:
        epool.xe("pool-param-set", f"uuid={pool_uuid}", "ha-enabled=false", "ha-host-failures-to-tolerate=0")
        epool.xe("vm-shutdown", "vm=prot", "--force")
    epool.assert_no_marks()
