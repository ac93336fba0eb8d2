"""vm-start --dry-run and --trace (issue 13), and disks shared between VMs (issue 11).

The dry run must refuse exactly what the start refuses, with the same error: each case below
sets up one refusal, and the dry run and then the real start must both fail with it (same code,
same parameters), the start leaving the VM halted and clean."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest
from conftest import ROOT, Pool, make_pool

SHARED_VDI = "5e5e5e5e-0000-4000-8000-000000000001"

POOL = f'''
[pool]
name-label = "dry"
master = "h1"

[[host]]
name-label = "h1"
memory = "4GiB"
dom0-memory = "512MiB"
cpus = 4
capabilities = ["pv"]

[[host]]
name-label = "h2"
memory = "3GiB"
dom0-memory = "512MiB"
cpus = 4
capabilities = ["pv"]

[[sr]]
name-label = "shared-sr"
type = "file"
shared = true

[[network]]
name-label = "lan"
bridge = "xenbr0"

[[network]]
name-label = "install"
bridge = "xenbr1"
guest-installer = true

[[vm]]
name-label = "a"
memory = "256MiB"
PV-kernel = "/boot/vmlinuz"
affinity = "h1"
  [[vm.disk]]
  device = 0
  size = "64MiB"
  sr = "shared-sr"
  vdi-uuid = "{SHARED_VDI}"
  bootable = true
  [[vm.vif]]
  device = 0
  network = "lan"
  [[vm.vif]]
  device = 1
  network = "install"

[[vm]]
name-label = "b"
memory = "256MiB"
PV-kernel = "/boot/vmlinuz"
affinity = "h2"
  [[vm.disk]]
  device = 0
  vdi-uuid = "{SHARED_VDI}"
  bootable = true

[[vm]]
name-label = "c"
memory = "256MiB"
PV-kernel = "/boot/vmlinuz"
  [[vm.disk]]
  device = 0
  size = "64MiB"
  sr = "shared-sr"
  bootable = true
  [[vm.vif]]
  device = 0
  network = "lan"

[[vm]]
name-label = "huge"
memory = "16GiB"
PV-kernel = "/boot/vmlinuz"
'''


@pytest.fixture(scope="module")
def dpool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    p = make_pool(tmp_path_factory.mktemp("dry") / "state", POOL)
    yield p
    assert p.stop_everything() == []


def _error(stderr: str) -> tuple[str, dict[str, str]]:
    """The registry error at the end of stderr: (code, params)."""
    from xetool.errors import REGISTRY

    lines = stderr.splitlines()
    for at in range(len(lines) - 1, -1, -1):
        for spec in REGISTRY.values():
            if lines[at] == spec.doc:
                return spec.code, dict(line.split(": ", 1) for line in lines[at + 1:at + 1 + len(spec.params)])
    raise AssertionError(f"no registry error in:\n{stderr}")


def _set(p: Pool, cls: str, uuid: str, values: dict) -> Callable[[], None]:
    old = {k: v for k, v in p.row(cls, uuid).items() if k in values}
    with p.store.write() as txn:
        txn.update(cls, uuid, values)

    def undo() -> None:
        with p.store.write() as txn:
            txn.update(cls, uuid, old)
    return undo


def _vdi_file(p: Pool, vdi: str) -> Path:
    from xetool.store.objects import sr_path

    with p.store.read() as txn:
        row = txn.must("vdi", vdi)
        return Path(sr_path(txn, row["SR"])) / row["location"]


def _running(p: Pool, name: str) -> Callable[[], None]:
    p.xe("vm-start", f"vm={name}")
    return lambda: p.xe("vm-shutdown", f"vm={name}", "--force")


def _missing_file(p: Pool) -> Callable[[], None]:
    f = _vdi_file(p, p.devices("vbd", p.uuid("vm", "c"))[0]["VDI"])
    f.rename(f.with_suffix(".away"))
    return lambda: f.with_suffix(".away").rename(f)


def _missing_record(p: Pool) -> Callable[[], None]:
    vbd = p.devices("vbd", p.uuid("vm", "c"))[0]
    return _set(p, "vbd", vbd["uuid"], {"VDI": "0badbad0-0000-4000-8000-000000000000"})


def _readonly(p: Pool) -> Callable[[], None]:
    return _set(p, "vdi", p.devices("vbd", p.uuid("vm", "c"))[0]["VDI"], {"read_only": True})


def _vdi_busy(p: Pool) -> Callable[[], None]:
    vdi = p.devices("vbd", p.uuid("vm", "c"))[0]["VDI"]
    return _set(p, "vdi", vdi, {"current_operations": {"9a9a9a9a-0000-4000-8000-000000000000": "clone"}})


def _vif_busy(p: Pool) -> Callable[[], None]:
    vif = p.devices("vif", p.uuid("vm", "c"))[0]["uuid"]
    return _set(p, "vif", vif, {"current_operations": {"9a9a9a9a-0000-4000-8000-000000000000": "plug"}})


def _vm(p: Pool, values: dict) -> Callable[[], None]:
    return _set(p, "vm", p.uuid("vm", "c"), values)


def _duplicate_device(p: Pool) -> Callable[[], None]:
    vm = p.uuid("vm", "c")
    with p.store.write() as txn:  # an empty CD drive on the disk's device number
        extra = txn.insert("vbd", {"VM": vm, "userdevice": "0", "type": "CD", "empty": True, "mode": "RO"})

    def undo() -> None:
        with p.store.write() as txn:
            txn.delete("vbd", extra)
    return undo


def _not_pinned(p: Pool) -> Callable[[], None]:
    return _vm(p, {"platform": {"nested-virt": "true"}, "memory_dynamic_min": 128 << 20})


# (name, VM to start, extra start args, setup returning its undo, expected code)
CASES = [
    ("halted-only op", "a", (), lambda p: _running(p, "a"), "VM_BAD_POWER_STATE"),
    ("blocked op", "c", (), lambda p: _vm(p, {"blocked_operations": {"start": "maintenance"}}), "OPERATION_BLOCKED"),
    ("bad vcpus", "c", (), lambda p: _vm(p, {"VCPUs_at_startup": 3, "VCPUs_max": 2}), "VALUE_NOT_SUPPORTED"),
    ("bad crash action", "c", (), lambda p: _vm(p, {"actions_after_crash": "rename_restart"}), "VALUE_NOT_SUPPORTED"),
    ("too many vcpus", "c", (), lambda p: _vm(p, {"VCPUs_max": 64, "VCPUs_at_startup": 1,
                                                                "platform": {"vcpu-unrestricted": "true"}}), "INVALID_VALUE"),
    ("vcpu mask", "c", (), lambda p: _vm(p, {"VCPUs_params": {"mask": "0,x"}}), "INVALID_VALUE"),
    ("address size", "c", (), lambda p: _vm(p, {"other_config": {"machine-address-size": "big"}}), "INVALID_VALUE"),
    ("nested-virt pinning", "c", (), _not_pinned, "MEMORY_CONSTRAINT_VIOLATION_MAXPIN"),
    ("no kernel", "c", (), lambda p: _vm(p, {"PV_kernel": ""}), "INVALID_VALUE"),
    ("vif busy", "c", (), _vif_busy, "OTHER_OPERATION_IN_PROGRESS"),
    ("duplicate device", "c", (), _duplicate_device, "VM_DUPLICATE_VBD_DEVICE"),
    ("vdi busy", "c", (), _vdi_busy, "OTHER_OPERATION_IN_PROGRESS"),
    ("vdi in use", "b", (), lambda p: _running(p, "a"), "VDI_IN_USE"),
    ("vdi read-only", "c", (), _readonly, "VDI_READONLY"),
    ("vdi file missing", "c", (), _missing_file, "VDI_MISSING"),
    ("vdi record missing", "c", (), _missing_record, "VDI_MISSING"),
    ("memory, any host", "huge", (), None, "NO_HOSTS_AVAILABLE"),
    ("memory, on a host", "huge", ("on=h2",), None, "HOST_NOT_ENOUGH_FREE_MEMORY"),
]


@pytest.mark.parametrize("vm_name, extra, setup, code", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_dry_run_refuses_as_the_start_does(dpool: Pool, vm_name: str, extra: tuple, setup, code: str) -> None:  # type: ignore[no-untyped-def]
    undo = setup(dpool) if setup else None
    try:
        vm = dpool.uuid("vm", vm_name)
        before = {k: v for k, v in dpool.dump().items() if k != "task"}
        dry = dpool.run("vm-start", f"vm={vm_name}", "--dry-run", *extra)
        status = 3 if code == "OTHER_OPERATION_IN_PROGRESS" else 1  # the start's own status: held by another
        assert dry.returncode == status, dry.stdout + dry.stderr
        assert "Traceback" not in dry.stderr
        assert f"--dry-run: refused: {code}" in dry.stdout.splitlines()[0]
        assert "h1" in dry.stdout and "h2" in dry.stdout  # the whole table, also when refused
        dry_error = _error(dry.stderr)
        assert dry_error[0] == code
        data = json.loads(dpool.run("--format", "json", "vm-start", f"vm={vm_name}", "--dry-run", *extra).stdout)
        assert data["would_start"] is False and data["error"]["code"] == code
        assert data["error"]["fields"] == dry_error[1]
        assert {k: v for k, v in dpool.dump().items() if k != "task"} == before  # the dry run changed nothing
        real = dpool.run("vm-start", f"vm={vm_name}", *extra)
        assert real.returncode == status and "Traceback" not in real.stderr, real.stderr
        assert _error(real.stderr) == dry_error  # the same error, the same parameters
    finally:
        if undo:
            undo()
    dpool.assert_halted_clean(vm)  # with the set-up undone (a VM stopped, a mark taken away)


def test_refused_start_prints_the_dry_run_table(dpool: Pool) -> None:
    dry = dpool.run("vm-start", "vm=huge", "--dry-run").stdout.splitlines()
    table = dry[dry.index(next(ln for ln in dry if ln.startswith("  host ") and "verdict" in ln)):][:3]
    real = dpool.run("vm-start", "vm=huge")
    assert real.returncode == 1
    assert "\n".join(table) in real.stderr, real.stderr  # the same rows, the same figures
    assert all("refused: Not enough free memory" in row for row in table[1:])


def test_json_error_on_stderr(dpool: Pool) -> None:
    out = dpool.run("--format", "json", "vm-start", "vm=huge", "--dry-run")
    assert out.returncode == 1
    assert json.loads(out.stderr.strip().splitlines()[-1])["error"]["code"] == "NO_HOSTS_AVAILABLE"


def test_dry_run_table_says_why(dpool: Pool) -> None:
    out = dpool.run("vm-start", "vm=a", "--dry-run", "seed=3")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].endswith("--dry-run: would start on h1 (affinity)")
    text = out.stdout
    # the devices by name: the SR, the networks, the disk; the lease the guest installer gives
    assert 'SR "shared-sr"' in text and 'network "lan" (xenbr0)' in text and 'network "install" (xenbr1)' in text
    assert "DHCP lease" in text
    # one verdict line per host, with the memory check's figures
    rows = {ln.split()[0]: ln.split() for ln in lines if re.match(r"  h[12] ", ln)}
    assert set(rows) == {"h1", "h2"}
    assert rows["h1"][1:3] == ["1", "affinity"] and "would start" in " ".join(rows["h1"])
    assert rows["h2"][1:3] == ["2", "definite"] and "passes (tried later)" in " ".join(rows["h2"])
    header = next(ln for ln in lines if ln.strip().startswith("host ") and "needed" in ln).split()
    for row in rows.values():
        fig = dict(zip(header, row))
        needed, free, after = int(fig["needed"]), int(fig["free"]), int(fig["after"])
        assert needed > 256 and free > needed and abs(after - (free - needed)) <= 1
    free_h2 = int(dpool.xe("host-compute-free-memory", "host=h2").strip()) // (1 << 20)
    assert int(dict(zip(header, rows["h2"]))["free"]) == free_h2
    # what try and category mean, and the draw that orders a category
    assert "try: the order the chooser tries the hosts in" in text
    assert "category affinity: the VM's affinity host" in text and "category definite:" in text
    assert "floor(n * u * u)" in text
    # the host half's checks of the record, on the chosen host
    assert re.search(r"check_vm_parameters\s+pass", text) and re.search(r"kernel\s+pass\s+.*/boot/vmlinuz", text)
    data = json.loads(dpool.xe("--format", "json", "vm-start", "vm=a", "--dry-run", "seed=3"))
    assert data["would_start"] and data["host"] == dpool.uuid("host", "h1") and data["category"] == "affinity"
    mem = {h["name_label"]: h["memory"] for h in data["hosts"]}
    assert mem["h1"]["after"] == mem["h1"]["free"] - mem["h1"]["needed"]
    assert [c["kind"] for c in data["checks"]][:4] == ["operation", "disk", "vif", "vif"]


def test_refused_host_reasons_use_names(dpool: Pool) -> None:
    undo = _set(dpool, "pif", dpool.xe("pif-list", "host-uuid=" + dpool.uuid("host", "h2"),
                                       "network-uuid=" + dpool.uuid("network", "install"), "--minimal").strip(),
                {"network": dpool.uuid("network", "lan")})
    try:
        out = dpool.xe("vm-start", "vm=a", "--dry-run")
        h2 = next(ln for ln in out.splitlines() if ln.startswith("  h2 "))
        assert 'refused: VM requires access to network: "install"' in h2
    finally:
        undo()


def _trace(stderr: str) -> list[tuple[str, str]]:
    """(guides, step name) of each step line of a --trace."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^  ([│└ ]*)(?:undo )?(\w+)", stderr, re.M)]


def test_trace_nests_the_host_half(dpool: Pool) -> None:
    out = dpool.run("vm-start", "vm=a", "--trace")
    try:
        assert out.returncode == 0, out.stderr
        lines = out.stderr.splitlines()
        at = lines.index("  execute_on_host")  # the parent's name when its first child starts
        end = next(i for i, ln in enumerate(lines) if ln.startswith("  └ execute_on_host"))
        assert re.match(r"  └ execute_on_host\s+[\d.]+ ms  running$", lines[end])
        children = lines[at + 1:end]
        names = [re.match(r"  │ (\w+)\s+[\d.]+ ms", ln).group(1) for ln in children]  # type: ignore[union-attr]
        assert names[0] == "acquire_host_queue" and names[-1] == "unlock_vm" and "create_domain" in names
        assert all(re.match(r"  \w+\s+[\d.]+ ms", ln) for ln in lines[1:at] + lines[end + 1:]), out.stderr
        assert re.search(r"^  with_vm_operation\s", out.stderr, re.M) and re.search(r"^  push_rrd\s", out.stderr, re.M)
        vifs = next(ln for ln in children if "create_vifs" in ln)
        mac = dpool.devices("vif", dpool.uuid("vm", "a"))
        install = next(v for v in mac if v["device"] == "1")["MAC"]
        # the lease beside the VIF that owns it
        assert re.search(rf"vif\d+\.1 on xenbr1 \(lease 192\.168\.128\.\d+ for {install}\)", vifs), vifs
        assert re.search(r"vif\d+\.0 on xenbr0(,|$)", vifs), vifs
    finally:
        dpool.xe("vm-shutdown", "vm=a", "--force")


def test_trace_of_a_failed_host_step(dpool: Pool) -> None:
    out = dpool.run("vm-start", "vm=c", "--trace", fist="create_kernel")
    assert out.returncode == 1
    text = out.stderr
    assert re.search(r"^  │ create_kernel\s+[\d.]+ ms  failed: FIST$", text, re.M), text
    assert re.search(r"^  │ undo create_domain\s+done$", text, re.M), text
    assert re.search(r"^  └ execute_on_host\s+[\d.]+ ms  failed: FIST$", text, re.M), text
    assert re.search(r"^  undo allocate_vm_to_host\s+done$", text, re.M), text
    dpool.assert_halted_clean(dpool.uuid("vm", "c"))


def test_two_vms_one_disk_on_two_hosts(dpool: Pool) -> None:
    a, b, c = dpool.uuid("vm", "a"), dpool.uuid("vm", "b"), dpool.uuid("vm", "c")
    dpool.xe("vm-start", "vm=a", "on=h1")
    try:
        for extra in ((), ("on=h2",)):
            params = dpool.fails("vm-start", "vm=b", *extra, code="VDI_IN_USE")
            assert params == {"vdi": SHARED_VDI, "operation": "attach"}
            dpool.assert_halted_clean(b)
        # a disk plugged into a running VM on the other host is checked the same way, read-only
        # too while a writer holds it (xapi: someone has RW access)
        dpool.xe("vm-start", "vm=c", "on=h2")
        try:
            before = dpool.devices("vbd", c)
            for mode in ("RW", "RO"):
                dpool.fails("vbd-attach", f"vm-uuid={c}", f"vdi-uuid={SHARED_VDI}", "device=3", f"mode={mode}",
                            code="VDI_IN_USE")
                assert dpool.devices("vbd", c) == before  # nothing half-made
        finally:
            dpool.xe("vm-shutdown", "vm=c", "--force")
    finally:
        dpool.xe("vm-shutdown", "vm=a", "--force")
    dpool.xe("vm-start", "vm=b")  # the disk is free again
    assert dpool.vm("b")["resident_on"] == dpool.uuid("host", "h2")
    dpool.xe("vm-shutdown", "vm=b", "--force")
    for vm in (a, b, c):
        dpool.assert_halted_clean(vm)


@pytest.mark.parametrize("how", ["sharable", "read-only"])
def test_disks_that_may_be_shared(dpool: Pool, how: str) -> None:
    """A sharable VDI, or one every VM opens read-only, runs in both VMs at once."""
    vbds = [dpool.devices("vbd", dpool.uuid("vm", n))[0]["uuid"] for n in ("a", "b")]
    if how == "sharable":
        undos = [_set(dpool, "vdi", SHARED_VDI, {"sharable": True})]
    else:
        undos = [_set(dpool, "vbd", v, {"mode": "RO"}) for v in vbds]
    try:
        dpool.xe("vm-start", "vm=a", "on=h1")
        dpool.xe("vm-start", "vm=b", "on=h2")
        assert {dpool.vm(n)["power_state"] for n in ("a", "b")} == {"Running"}
        for n in ("a", "b"):
            dpool.xe("vm-shutdown", f"vm={n}", "--force")
    finally:
        for undo in undos:
            undo()
    dpool.assert_no_marks()


def test_concurrent_starts_never_share_a_writable_disk(dpool: Pool) -> None:
    """Two processes start a and b at the same moment, ten times: exactly one runs each time,
    the other is refused with VDI_IN_USE; the decision is taken under the VBD marks."""
    a, b = dpool.uuid("vm", "a"), dpool.uuid("vm", "b")
    winners = []
    for _ in range(10):
        procs = [subprocess.Popen([sys.executable, "-m", "xetool", "vm-start", f"uuid={vm}"], env=dpool.env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for vm in (a, b)]
        results = [(p.wait(60), p.stderr.read() if p.stderr else "") for p in procs]
        for p in procs:
            p.stdout.close() if p.stdout else None
            p.stderr.close() if p.stderr else None
        running = [vm for vm in (a, b) if dpool.row("vm", vm)["power_state"] == "Running"]
        assert len(running) == 1, results
        loser = [r for vm, r in zip((a, b), results) if vm not in running][0]
        assert loser[0] == 1 and _error(loser[1])[0] == "VDI_IN_USE", loser
        assert [h for h, _ in dpool.domains(a) + dpool.domains(b)] == [dpool.row("vm", running[0])["resident_on"]]
        winners.append(running[0])
        dpool.xe("vm-shutdown", f"uuid={running[0]}", "--force")
    dpool.assert_halted_clean(a)
    dpool.assert_halted_clean(b)
