"""The simulated host end to end: the process, the hypervisor, dom0's backends and the guests."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from xetool.backends.simulator import SimulatorBackend, list_hosts, stop_host, xenstore_socket_path
from xetool.errors import XeError
from xetool.xenstore.client import XsClient
from .conftest import GiB, add_device, make_backend, pv_config, pv_overhead_kib, start_pv


def test_start_is_fast_and_idempotent(state_dir: Path) -> None:
    b = make_backend(state_dir)
    assert not b.is_live()
    t0 = time.monotonic()
    b.ensure_running()
    started = time.monotonic() - t0
    assert b.is_live()
    assert started < 5  # typically ~0.1 s; bounded loosely for loaded CI machines
    pid = list_hosts(state_dir)[0].pid
    b.ensure_running()
    assert list_hosts(state_dir)[0].pid == pid
    phys = b.physinfo()
    assert (phys.total_memory_kib, phys.free_memory_kib, phys.nr_cpus) == (16 * GiB, 14 * GiB, 4)
    assert "hvm" in phys.capabilities


def _start(args: tuple[str, str]) -> int:
    state, host_uuid = args
    b = make_backend(Path(state), host_uuid)
    b.ensure_running()
    return list_hosts(Path(state))[0].pid or -1


def test_concurrent_starts_make_one_host(state_dir: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        pids = pool.map(_start, [(str(state_dir), "11111111-2222-3333-4444-555555555555")] * 4, chunksize=1)
    assert len(set(pids)) == 1 and pids[0] > 0


def test_dom0_and_initial_layout(host: SimulatorBackend, xs: XsClient) -> None:
    assert xs.read("/local/domain/0/name") == "Domain-0"
    assert xs.read("/local/domain/0/domid") == "0"
    assert xs.read("/tool/xenstored/domid") == "0"
    assert [d.domid for d in host.list_domains()] == [0]


def test_create_and_build_write_what_xen_and_libxl_write(host: SimulatorBackend, xs: XsClient) -> None:
    cfg = pv_config()
    with xs.watch("@introduceDomain") as w:
        assert w.get(2) == "@introduceDomain"
        domid = host.create_domain(cfg)
        info = host.domain_info(domid)
        assert info is not None and info.paused and info.memory_kib == 0
        home = f"/local/domain/{domid}"
        assert xs.read(f"{home}/vm") == f"/vm/{cfg.uuid}"
        assert xs.read(f"{home}/name") == "vm1"
        host.build_domain(domid, cfg)
        assert w.get(2) == "@introduceDomain"
    assert xs.read(f"{home}/domid") == str(domid)
    assert xs.read(f"{home}/memory/static-max") == str(GiB)
    assert xs.read(f"{home}/memory/target") == str(GiB // 2)
    assert xs.read(f"{home}/store/port") and xs.read(f"{home}/console/port")
    assert xs.read(f"{home}/cpu/0/availability") == "online"
    assert xs.read(f"{home}/cpu/1/availability") == "offline"
    assert xs.is_domain_introduced(domid)
    assert xs.read(f"{home}/console/tty").startswith("/dev/pts/")
    assert host.physinfo().free_memory_kib == 14 * GiB - GiB // 2 - pv_overhead_kib()


def test_hypervisor_settings_and_errors(host: SimulatorBackend, xs: XsClient) -> None:
    domid = start_pv(host, xs)
    host.set_vcpu_affinity(domid, 0, [1, 3])
    host.set_sched_params(domid, 512, 50)
    details = host.domain_details(domid)
    assert details is not None
    assert details["affinity"] == {"0": [1, 3]} and (details["weight"], details["cap"]) == (512, 50)
    assert details["kernel"] == "/boot/vmlinuz-sim"
    for call in (lambda: host.set_vcpu_affinity(domid, 5, [0]), lambda: host.set_vcpu_affinity(domid, 0, [9]),
                 lambda: host.set_sched_params(domid, 0, 0), lambda: host.pause(99),
                 lambda: host.shutdown(domid, "explode"), lambda: host.build_domain(domid, pv_config())):
        with pytest.raises(XeError) as e:
            call()
        assert e.value.code == "HYPERVISOR_ERROR"
    big = pv_config("big", target=15 * GiB)
    big_domid = host.create_domain(big)
    with pytest.raises(XeError) as e:
        host.build_domain(big_domid, type(big)(**{**big.__dict__, "memory_static_max_kib": 15 * GiB}))
    assert "not enough memory" in e.value.params["reason"]


def test_pv_guest_connects_its_devices(host: SimulatorBackend, xs: XsClient, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * 512)
    host.ensure_bridge("xenbr0")
    domid = start_pv(host, xs)
    vbd_be, vbd_fe = add_device(xs, domid, "vbd", 51712, {"params": str(disk), "mode": "w", "type": "phy",
                                                          "dev": "xvda", "device-type": "disk"})
    vif_be, vif_fe = add_device(xs, domid, "vif", 0, {"mac": "00:16:3e:00:00:01", "bridge": "xenbr0",
                                                      "script": "/etc/xen/scripts/vif-bridge", "handle": "0"})
    for be in (vbd_be, vif_be):
        assert xs.wait_for_value(f"{be}/hotplug-status", "connected", 5) == "connected"
        assert xs.wait_for_value(f"{be}/state", "2", 5) == "2"  # InitWait until the guest runs
    assert xs.read(f"{vbd_fe}/state") == "1"
    host.unpause(domid)
    for be, fe in ((vbd_be, vbd_fe), (vif_be, vif_fe)):
        xs.wait_for_value(f"{be}/state", "4", 5)
        xs.wait_for_value(f"{fe}/state", "4", 5)
    assert xs.read(f"/local/domain/{domid}/control/feature-poweroff") == "1"
    assert xs.read(f"{vbd_be}/physical-device-path") == str(disk)
    # unplug: the toolstack asks the backend to close; it goes to Closed and the frontend follows
    xs.write_many({f"{vbd_be}/online": "0", f"{vbd_be}/state": "5"})
    xs.wait_for_value(f"{vbd_be}/state", "6", 5)
    xs.wait_for_value(f"{vbd_fe}/state", "6", 5)
    xs.rm(vbd_be)
    xs.rm(vbd_fe)
    # hotplug again on the same devid works from scratch
    vbd_be, vbd_fe = add_device(xs, domid, "vbd", 51712, {"params": str(disk), "mode": "r", "type": "phy"})
    xs.wait_for_value(f"{vbd_be}/state", "4", 5)
    xs.wait_for_value(f"{vbd_fe}/state", "4", 5)


def test_hotplug_errors(host: SimulatorBackend, xs: XsClient) -> None:
    domid = start_pv(host, xs)
    vbd_be, _ = add_device(xs, domid, "vbd", 51712, {"params": "/nonexistent/disk.img", "mode": "w", "type": "phy"})
    vif_be, _ = add_device(xs, domid, "vif", 0, {"mac": "00:16:3e:00:00:02", "bridge": "nobridge", "handle": "0"})
    for be, needle in ((vbd_be, "/nonexistent/disk.img"), (vif_be, "nobridge")):
        assert xs.wait_for_value(f"{be}/hotplug-status", "error", 5) == "error"
        assert needle in xs.read(f"{be}/hotplug-error")
    host.unpause(domid)
    time.sleep(0.2)
    assert xs.read(f"{vbd_be}/state") != "4"


@pytest.mark.parametrize("request_, reason", [("poweroff", "poweroff"), ("reboot", "reboot"), ("halt", "poweroff"),
                                              ("suspend", "suspend")])
def test_shutdown_through_control_shutdown(host: SimulatorBackend, xs: XsClient, request_: str, reason: str) -> None:
    domid = start_pv(host, xs)
    host.unpause(domid)
    with xs.watch(f"@releaseDomain/{domid}") as w:
        assert w.get(2) == f"@releaseDomain/{domid}"
        xs.write(f"/local/domain/{domid}/control/shutdown", request_)
        assert w.get(5) == f"@releaseDomain/{domid}"
    assert xs.read(f"/local/domain/{domid}/control/shutdown") == ""  # the acknowledgement
    info = host.domain_info(domid)
    assert info is not None and info.shutdown_reason == reason
    host.destroy(domid)
    assert host.domain_info(domid) is None
    assert not xs.exists(f"/local/domain/{domid}")
    assert host.physinfo().free_memory_kib == 14 * GiB


def test_paused_guest_ignores_shutdown_until_unpaused(host: SimulatorBackend, xs: XsClient) -> None:
    domid = start_pv(host, xs)
    host.unpause(domid)
    host.pause(domid)
    xs.write(f"/local/domain/{domid}/control/shutdown", "poweroff")
    time.sleep(0.2)
    assert host.domain_info(domid).shutdown_reason is None  # type: ignore[union-attr]
    host.unpause(domid)
    xs.wait_for_value(f"/local/domain/{domid}/control/shutdown", "", 5)
    deadline = time.monotonic() + 5
    while host.domain_info(domid).shutdown_reason is None:  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_hypervisor_shutdown_and_destroy_fire_release(host: SimulatorBackend, xs: XsClient) -> None:
    domid = start_pv(host, xs)
    with xs.watch("@releaseDomain") as w:
        w.get(2)
        host.shutdown(domid, "crash")
        assert w.get(2) == "@releaseDomain"
        host.destroy(domid)
        assert w.get(2) == "@releaseDomain"
    assert not xs.is_domain_introduced(domid)


def wait_memory(host: SimulatorBackend, domid: int, kib: int) -> None:
    deadline = time.monotonic() + 5
    while host.domain_info(domid).memory_kib != kib:  # type: ignore[union-attr]
        assert time.monotonic() < deadline, host.domain_info(domid)
        time.sleep(0.01)


def test_memory_follows_target_within_dynamic_range(host: SimulatorBackend, xs: XsClient) -> None:
    domid = start_pv(host, xs)
    home = f"/local/domain/{domid}"
    xs.write_many({f"{home}/memory/dynamic-min": str(GiB // 4), f"{home}/memory/dynamic-max": str(3 * GiB // 4)})
    host.set_memory_target(domid, GiB // 3)
    time.sleep(0.1)
    assert host.domain_info(domid).memory_kib == GiB // 2  # type: ignore[union-attr]  # paused: no balloon
    host.unpause(domid)
    wait_memory(host, domid, GiB // 3)
    host.set_memory_target(domid, GiB // 8)
    wait_memory(host, domid, GiB // 4)  # clamped to dynamic-min
    xs.write(f"{home}/memory/target", str(GiB))
    wait_memory(host, domid, 3 * GiB // 4)  # clamped to dynamic-max
    assert host.physinfo().free_memory_kib == 14 * GiB - 3 * GiB // 4 - pv_overhead_kib()


def test_operator_helpers(state_dir: Path, host: SimulatorBackend) -> None:
    [status] = list_hosts(state_dir)
    assert status.uuid == host.host_uuid and status.live and status.pid
    assert xenstore_socket_path(state_dir, host.host_uuid) == host.xenstore_socket() == status.xenstore_socket
    assert stop_host(state_dir, host.host_uuid) is True
    assert not host.is_live()
    assert list_hosts(state_dir)[0].live is False
    assert stop_host(state_dir, host.host_uuid) is False


def test_long_state_dir_gets_short_socket_paths(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    b = make_backend(deep)
    try:
        b.ensure_running()
        assert len(b.xenstore_socket()) <= 100
        with XsClient(b.xenstore_socket()) as xs:
            assert xs.read("/local/domain/0/name") == "Domain-0"
    finally:
        stop_host(deep, b.host_uuid)
