"""vm-start end to end on the simulator (issue 5): the domain, its xenstore tree, the console,
the device model, leases, the memory broker; the rest of the lifecycle; devices on a running VM;
a simulated host that crashes."""

from __future__ import annotations

import os
import signal
import socket

import pytest
import time

from conftest import Pool, proc_name, proc_running, stand_ins

from xetool.devices import console, vncauth
from xetool.host import runtime
from xetool.xenstore.client import XsClient


def _xs(p: Pool, vm: dict) -> XsClient:
    return XsClient(p.backend(vm["resident_on"]).xenstore_socket())


def _rfb(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        return s.recv(12)


def _free(p: Pool, host: str) -> int:
    return int(p.xe("host-compute-free-memory", f"uuid={host}").strip())


def _rt(p: Pool, vm: dict) -> runtime.Runtime:
    rt = runtime.load(p.state_dir, vm["resident_on"], vm["uuid"])
    assert rt is not None
    return rt


def test_pv_start_end_to_end_and_clean_shutdown(pool: Pool) -> None:
    h1 = pool.uuid("host", "host1")
    free_before = _free(pool, h1)
    pool.xe("vm-start", "vm=web01", "on=host1")
    vm = pool.vm("web01")
    pool.assert_running_clean(vm["uuid"])
    assert vm["resident_on"] == h1
    d = vm["domid"]
    h = f"/local/domain/{d}"
    with _xs(pool, vm) as xs:
        assert xs.read(f"{h}/vm") == f"/vm/{vm['uuid']}" and xs.read(f"{h}/name") == "web01"
        assert xs.read(f"/vm/{vm['uuid']}/uuid") == vm["uuid"]
        assert xs.exists(f"{h}/platform") and xs.read(f"{h}/bios-strings/bios-vendor") == "Xen"  # every domain
        assert [xs.read(f"{h}/cpu/{n}/availability") for n in range(2)] == ["online", "online"]
        mem = {k: int(xs.read(f"{h}/memory/{k}")) for k in ("static-max", "target", "dynamic-min", "dynamic-max")}
        assert mem == {k: 512 * 1024 for k in mem}
        assert xs.get_perms(h)[:1] == ["n0"] and xs.get_perms(f"{h}/control")[0] == f"n{d}"
        for kind, n in (("vbd", 2), ("vif", 2)):
            devs = xs.ls(f"{h}/device/{kind}")
            assert len(devs) == n
            for dev in devs:
                back = xs.read(f"{h}/device/{kind}/{dev}/backend")
                assert xs.read(f"{back}/hotplug-status") == "connected"
                assert xs.read(f"{back}/state") == "4" and xs.read(f"{h}/device/{kind}/{dev}/state") == "4"
        port = int(xs.read(f"{h}/console/vnc-port"))
    assert _rfb(port).startswith(b"RFB 003.")
    assert pool.xe("vm-vnc", "vm=web01", "--minimal").strip() == str(port)
    shown = pool.xe("vm-vnc", "vm=web01")
    assert "127.0.0.1" in shown
    password = shown.split("Password: ", 1)[1].split()[0]  # the operator's way in
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        assert vncauth.client_login(s, password)[24:] == b"web01"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s, pytest.raises(PermissionError):
        vncauth.client_login(s, "guessed!")
    secret = console.secret_file(pool.state_dir / "hosts" / h1, d)
    assert secret.stat().st_mode & 0o777 == 0o600 and secret.read_text().strip() == password
    rt = _rt(pool, vm)
    assert rt.dm_pid == 0 and proc_running(rt.console_pid) and proc_name(rt.console_pid).startswith("vncterm")
    mac = next(v["MAC"] for v in pool.devices("vif", vm["uuid"]) if v["device"] == "1")
    leases = (pool.state_dir / "hosts" / h1 / "dnsmasq" / "xenbr1.hosts").read_text()
    assert f"{mac},192.168.128." in leases
    assert free_before - _free(pool, h1) >= vm["memory_dynamic_min"]
    dom = pool.backend(h1).domain_details(d)
    assert dom["kernel"] == "/boot/vmlinuz-guest" and not dom["paused"]
    assert pool.xe("vm-param-get", f"uuid={vm['uuid']}", "param-name=resident-on").strip() == h1

    pool.xe("vm-shutdown", "vm=web01")  # clean, through control/shutdown
    pool.assert_halted_clean(vm["uuid"])
    assert not proc_running(rt.console_pid) and stand_ins(pool.state_dir) == {}
    assert mac not in (pool.state_dir / "hosts" / h1 / "dnsmasq" / "xenbr1.hosts").read_text()
    assert _free(pool, h1) >= free_before - 16 * 1024 * 1024


def test_hvm_device_model_reboot_and_force(pool: Pool) -> None:
    pool.xe("vm-start", "vm=win01")
    vm = pool.vm("win01")
    assert vm["resident_on"] != pool.uuid("host", "host3")  # host3 has no HVM
    h = f"/local/domain/{vm['domid']}"
    with _xs(pool, vm) as xs:
        assert xs.read(f"{h}/bios-strings/bios-vendor") == "Xen"
        assert xs.read(f"{h}/platform/viridian") == "1" and xs.read(f"{h}/platform/acpi") == "1"
        port = int(xs.read(f"{h}/console/vnc-port"))
        cmd = xs.read(f"/local/domain/0/device-model/{vm['domid']}/command")
    assert _rfb(port).startswith(b"RFB 003.")
    rt = _rt(pool, vm)
    assert rt.console_pid == 0 and proc_name(rt.dm_pid).startswith("qemu-dm")
    assert "-device rtl8139,mac=" in cmd and "-device usb-tablet" in cmd and "-vnc 127.0.0.1:" in cmd
    assert pool.vm("win01")["bios_strings"]["bios-vendor"] == "Xen"
    pool.xe("vm-reboot", "vm=win01", "--force")
    after = pool.vm("win01")
    pool.assert_running_clean(after["uuid"])
    assert after["domid"] != vm["domid"] and not proc_running(rt.dm_pid)
    pool.xe("vm-shutdown", "vm=win01", "--force")
    pool.assert_halted_clean(vm["uuid"])
    assert stand_ins(pool.state_dir) == {}


def test_pygrub_pause_destroy(pool: Pool) -> None:
    pool.xe("vm-start", "vm=db01", "paused=true")
    vm = pool.vm("db01")
    assert vm["power_state"] == "Paused" and vm["resident_on"] == pool.uuid("host", "host2")  # its affinity
    dom = pool.backend(vm["resident_on"]).domain_details(vm["domid"])
    assert dom["paused"] and dom["kernel"] == "/boot/vmlinuz-6.1" and dom["cmdline"].startswith("root=/dev/xvda1")
    assert vm["ha_always_run"]  # ha-restart-priority=restart
    pool.xe("vm-unpause", "vm=db01")
    assert pool.vm("db01")["power_state"] == "Running"
    pool.xe("vm-pause", "vm=db01")
    assert pool.backend(vm["resident_on"]).domain_details(vm["domid"])["paused"]
    pool.fails("vm-pause", "vm=db01", code="VM_BAD_POWER_STATE")
    pool.fails("vm-destroy", f"uuid={vm['uuid']}", code="VM_BAD_POWER_STATE")
    pool.xe("vm-shutdown", "vm=db01", "--force")
    pool.assert_halted_clean(vm["uuid"])
    pool.xe("vm-destroy", f"uuid={vm['uuid']}")
    with pool.store.read() as txn:
        assert txn.get("vm", vm["uuid"]) is None


def test_devices_on_a_running_vm(pool: Pool) -> None:
    pool.xe("vm-start", "vm=web01")
    vm = pool.vm("web01")
    vbds = {v["userdevice"]: v for v in pool.devices("vbd", vm["uuid"])}
    vifs = {v["device"]: v for v in pool.devices("vif", vm["uuid"])}
    xvdb, vif1 = vbds["1"]["uuid"], vifs["1"]["uuid"]
    front = f"/local/domain/{vm['domid']}/device"
    pool.fails("vbd-plug", f"uuid={xvdb}", code="DEVICE_ALREADY_ATTACHED")
    pool.xe("vbd-unplug", f"uuid={xvdb}")
    with _xs(pool, vm) as xs:
        assert not xs.exists(f"{front}/vbd/{202 << 8 | 16}")
    assert not pool.row("vbd", xvdb)["currently_attached"]
    pool.fails("vbd-unplug", f"uuid={xvdb}", code="DEVICE_ALREADY_DETACHED")
    pool.xe("vbd-plug", f"uuid={xvdb}")
    with _xs(pool, vm) as xs:
        assert xs.read(f"{front}/vbd/{202 << 8 | 16}/state") == "4"
    # a new disk, attached to the running VM
    sr = pool.uuid("sr", "local-files")
    vdi = pool.xe("vdi-create", f"sr-uuid={sr}", "name-label=extra", "virtual-size=64MiB").strip()
    new = pool.xe("vbd-attach", f"vm-uuid={vm['uuid']}", f"vdi-uuid={vdi}", "device=3").strip()
    assert pool.row("vbd", new)["currently_attached"]
    with _xs(pool, vm) as xs:
        dev = f"{front}/vbd/{202 << 8 | 48}"
        assert xs.read(f"{dev}/state") == "4"
        assert xs.read(f"{xs.read(f'{dev}/backend')}/hotplug-status") == "connected"
    pool.fails("vbd-destroy", f"uuid={new}", code="OPERATION_NOT_ALLOWED")
    pool.xe("vbd-unplug", f"uuid={new}")
    pool.xe("vbd-destroy", f"uuid={new}")
    # VIFs
    pool.xe("vif-unplug", f"uuid={vif1}")
    with _xs(pool, vm) as xs:
        assert not xs.exists(f"{front}/vif/1")
    pool.fails("vif-unplug", f"uuid={vif1}", code="DEVICE_ALREADY_DETACHED")
    pool.xe("vif-plug", f"uuid={vif1}")
    with _xs(pool, vm) as xs:
        assert xs.read(f"{front}/vif/1/state") == "4"
    pool.assert_running_clean(vm["uuid"])
    pool.xe("vm-shutdown", "vm=web01", "--force")
    pool.assert_halted_clean(vm["uuid"])
    pool.fails("vbd-plug", f"uuid={xvdb}", code="VM_BAD_POWER_STATE")
    pool.fails("vif-plug", f"uuid={vif1}", code="VM_BAD_POWER_STATE")


def test_simulated_host_crash(pool: Pool) -> None:
    pool.xe("vm-start", "vm=web01", "on=host1")
    vm = pool.vm("web01")
    h1 = vm["resident_on"]
    console = _rt(pool, vm).console_pid
    pid = int((pool.state_dir / "hosts" / h1 / "hostd.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while proc_running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    pool.xe("host-sim-list")  # the next command notices
    assert pool.xe("host-list", "name-label=host1", "params=host-metrics-live", "--minimal").strip() == "false"
    pool.assert_halted_clean(vm["uuid"])
    assert not proc_running(console)
    pool.fails("vm-start", "vm=web01", "on=host1", code="HOST_NOT_LIVE")
    pool.xe("host-sim-start", "host=host1")
    assert pool.xe("host-list", "name-label=host1", "params=host-metrics-live", "--minimal").strip() == "true"
    assert pool.domains() == []
    pool.xe("vm-start", "vm=web01", "on=host1")
    pool.assert_running_clean(vm["uuid"])
    pool.xe("vm-shutdown", "vm=web01", "--force")


def test_host_list_alone_notices_a_crash(pool: Pool) -> None:
    pool.xe("host-sim-start", "host=host3")
    h3 = pool.uuid("host", "host3")
    os.kill(int((pool.state_dir / "hosts" / h3 / "hostd.pid").read_text()), signal.SIGKILL)
    time.sleep(0.2)
    assert pool.xe("host-list", "name-label=host3", "params=host-metrics-live", "--minimal").strip() == "false"


def test_free_memory_drops_by_dynamic_min_plus_overhead(pool: Pool) -> None:
    h1 = pool.uuid("host", "host1")
    free_before = _free(pool, h1)
    pool.xe("vm-start", "vm=web01", "on=host1")
    vm = pool.vm("web01")
    try:
        assert free_before - _free(pool, h1) >= vm["memory_dynamic_min"] + vm["memory_overhead"]
    finally:
        pool.xe("vm-shutdown", "vm=web01", "--force")


def test_force_skips_the_memory_pinning_check(pool: Pool) -> None:
    """xapi's VM.start force: a nested-virt guest must have its memory pinned, unless forced."""
    vm = pool.uuid("vm", "web01")
    pool.xe("vm-param-set", f"uuid={vm}", "platform:nested-virt=true", "memory-dynamic-min=256MiB")
    pool.fails("vm-start", "vm=web01", code="MEMORY_CONSTRAINT_VIOLATION_MAXPIN")
    pool.assert_halted_clean(vm)
    pool.xe("vm-start", "vm=web01", "--force")
    pool.assert_running_clean(vm)
    pool.xe("vm-shutdown", "vm=web01", "--force")
