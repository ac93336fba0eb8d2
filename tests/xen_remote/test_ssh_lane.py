"""The lane over SSH: the pool master on this machine (its store here), the lab's dom0 a host
reached over SSH, where `xetool host-agent` (the lab's /usr/local/bin/xetool: the checkout over
9p) serves its half. The same pool, VM and guest as tests/xen/test_xetool_lane.py; the file SR is
a directory both machines see at one path (the lab's io share), as a shared SR is. The tests run
in file order and share the pool; each leaves the VM Halted."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.xen.lab import emit
from tests.xen.test_xetool_lane import (BRIDGE, DEVID, DISK_MIB, MAC, MAGIC, MEMORY_MIB, POWERED_OFF, VM, Lane,
                                        import_lane, pool_toml, trace_pid, trace_summary, vm_start,
                                        wait_for, xl_create_config, xl_list)
from tests.xen_remote.remote import Dom0, Facts
from xetool.master.ssh import end_shared_connections

AGENT_STATE = "/var/lib/xetool"  # root's default state directory: the agent's in dom0


def test_agent_greets_over_ssh(dom0: Dom0) -> None:
    """sshd takes the run's key and no other; `xetool host-agent` greets first."""
    from xetool.host.calls import PROTOCOL

    t = time.monotonic()
    dom0.sh("true", shared=False)
    fresh = time.monotonic() - t
    dom0.sh("true")  # opens the shared connection
    t = time.monotonic()
    dom0.sh("true")
    reused = time.monotonic() - t
    t = time.monotonic()
    res = dom0.sh("xetool host-agent", stdin="")  # input closed at once: greet, then exit
    hello = time.monotonic() - t
    greeting = json.loads(res.stdout.splitlines()[0])["hello"]
    assert greeting["protocol"] == PROTOCOL, greeting
    emit(f"XENLAB TIME ssh into dom0: a new connection {fresh:.2f}s, over the shared one {reused:.2f}s; "
         f"`xetool host-agent` to its hello and exit {hello:.2f}s")
    refused = subprocess.run(["ssh", "-p", str(dom0.port), "-l", dom0.user, *dom0.options(),
                              "-o", "IdentitiesOnly=yes", "-o", "IdentityFile=/dev/null", "-o", "ControlPath=none",
                              dom0.host, "true"], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused.stderr


@pytest.fixture(scope="module")
def lane(dom0: Dom0) -> Iterator[Lane]:
    # the master's store, on this machine; a short path: ssh's control sockets live under it
    here = Path(tempfile.mkdtemp(prefix="xenlab-m-"))
    shared = Path(os.environ["XENLAB_SSH_SHARED"])
    sr = shared / "ssh-lane-sr"
    sr.mkdir()
    reach = dict(xl=dom0.xl,
                 pool=f'ssh-config = "{dom0.ssh_config(here / "ssh_config")}"\nssh-identity = "{dom0.key}"\n',
                 host=f'address = "{dom0.host}"\nssh-port = {dom0.port}\nssh-user = "{dom0.user}"\n')
    (here / "pool.toml").write_text(pool_toml(sr, by="tests/xen_remote/test_ssh_lane.py", **reach))
    lane = import_lane(here / "pool.toml", here / "state", sr)  # the marker: written here, read in dom0
    try:
        yield lane
        # whatever a failed test left: the domain (the VM's own name) and the store's view of it
        if VM in xl_list(dom0.xl):
            lane.xe("vm-shutdown", f"uuid={lane.vm_uuid}", "--force", check=False)
            dom0.sh(f"xl destroy {VM}", check=False)
    finally:
        end_shared_connections(lane.state)
        shutil.rmtree(here, ignore_errors=True)


def facts(dom0: Dom0, lane: Lane, domid: int, console_pid: int = 0) -> Facts:
    return dom0.facts(domid, vm_uuid=lane.vm_uuid, disk=lane.disk, bridge=BRIDGE, devid=DEVID,
                      leases=f"{AGENT_STATE}/hosts/{lane.host_uuid}/dnsmasq/{BRIDGE}.hosts", console_pid=console_pid)


def check_running(dom0: Dom0, lane: Lane, console_pid: int) -> int:
    """In dom0: the domain running, its xenstore tree and backends, the vif on the bridge, the
    loop device, the lease, the console server; returns the domid."""
    domid = lane.domid()
    got = facts(dom0, lane, domid, console_pid)
    assert got.xl.get(VM, (None, ""))[0] == domid, got.xl
    assert "p" not in got.xl[VM][1] and "d" not in got.xl[VM][1], got.xl
    h, be = f"/local/domain/{domid}", f"/local/domain/0/backend"
    assert got.xs[f"{h}/name"] == VM and got.xs[f"{h}/vm"] == f"/vm/{lane.vm_uuid}", got.xs
    assert got.xs[f"{be}/vbd/{domid}/{DEVID}/params"] == str(lane.disk), got.xs
    assert got.xs[f"{be}/vif/{domid}/0/bridge"] == BRIDGE, got.xs
    for kind, dev in (("vbd", DEVID), ("vif", 0)):
        assert got.xs[f"{be}/{kind}/{domid}/{dev}/hotplug-status"] == "connected", got.xs
    assert 5900 < int(got.xs[f"{h}/console/vnc-port"]) < 6100, got.xs
    assert got.bridged and got.loops, got
    assert any(f"{MAC},192.168.128." in line for line in got.leases), got.leases
    assert got.console_server, f"console server {console_pid} not running in dom0"
    return domid


def check_guest_up(console: RemoteConsole) -> None:
    log = console.wait("GUEST-READY")
    assert "GUEST-BOOTED: Linux" in log and "hypervisor=xen" in log, log[-1500:]
    assert f"GUEST-DISK xvda sectors={DISK_MIB << 11} magic={MAGIC.decode()}" in log, log[-1500:]
    assert f"GUEST-NIC eth0 mac={MAC}" in log, log[-1500:]


def check_nothing_left(dom0: Dom0, lane: Lane, domid: int, free_before: int, console_pid: int) -> None:
    """In dom0: no domain, no xenstore entries, no loop device, no vif, no console server, no
    lease, the memory back; the VM Halted in the master's store."""
    def settled() -> Facts | None:  # the vif goes, and freed pages are scrubbed, after the call returns
        f = facts(dom0, lane, domid, console_pid)
        return f if not f.vif and f.free_mib >= free_before - 1 else None

    got: Facts = wait_for("the vif gone and the memory back in dom0", settled, 60)
    assert VM not in got.xl, got.xl
    assert got.exists == [], got.exists
    assert got.domains == ["0"], got.domains
    assert got.loops == [], got.loops
    assert not got.console_server, f"console server {console_pid} still running in dom0"
    assert not any(MAC in line for line in got.leases), got.leases
    assert lane.power_state() == "halted"


class RemoteConsole:
    """The guest's console log in dom0 (xenconsoled), from where it ends now: one boot's output."""

    def __init__(self, dom0: Dom0) -> None:
        self.dom0, self.path = dom0, f"/var/log/xen/console/guest-{VM}.log"
        self.start = int(dom0.sh(f"stat -c %s {self.path} 2>/dev/null || echo 0").stdout.strip() or 0)

    def text(self) -> str:
        return self.dom0.sh(f"tail -c +{self.start + 1} {self.path} 2>/dev/null", check=False).stdout

    def wait(self, marker: str, timeout: float = 180.0) -> str:
        try:
            text: str = wait_for(f"{marker} on the console", lambda: t if marker in (t := self.text()) else "", timeout)
            return text
        except AssertionError:
            raise AssertionError(f"no {marker!r} on {VM}'s console; log:\n{self.text()[-2000:]}") from None


def test_vm_start_over_ssh_then_clean_shutdown(dom0: Dom0, lane: Lane) -> None:
    free_before = dom0.free_mib()
    console = RemoteConsole(dom0)
    res, seconds = vm_start(lane)
    out = res.stdout + res.stderr
    emit(f"XENLAB TIME xetool vm-start over SSH (PV, disk, vif): {seconds:.1f}s ({res.to_first_line:.1f}s to its "
         f"first line, {res.after_last_line:.1f}s after its last); {trace_summary(out)}")
    assert lane.power_state() == "running"
    pid = trace_pid(out, "start_console_server")
    domid = check_running(dom0, lane, pid)
    check_guest_up(console)
    assert dom0.free_mib() <= free_before - MEMORY_MIB

    # clean shutdown: the guest powers off through control/shutdown, the agent releases the rest
    lane.xe("vm-shutdown", f"uuid={lane.vm_uuid}")
    assert re.search(POWERED_OFF, console.text()), console.text()[-500:]
    check_nothing_left(dom0, lane, domid, free_before, pid)


def test_failed_start_over_ssh_leaves_nothing(dom0: Dom0, lane: Lane) -> None:
    """The fault injection set in the master's environment reaches the agent in the request: the
    start fails in dom0 once the console server runs, and the undo leaves nothing there."""
    free_before = dom0.free_mib()
    res, _ = vm_start(lane, env={"XETOOL_FIST": "start_console_server:fail-after"}, check=False)
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "FIST" in out, out[-2000:]
    domid = int(re.search(r"create_domain\s+[\d.]+ m?s\s+domid (\d+)", out).group(1))  # type: ignore[union-attr]
    assert re.search(r"create_vifs\s+[\d.]+ m?s\s+vif\d+\.\d+ on \S+ \(lease ", out), out[-2000:]
    check_nothing_left(dom0, lane, domid, free_before, trace_pid(out, "start_console_server"))


ROUNDS = 3  # each side's figure is the median of this many, taken in turns
TARGET = 1.2  # vm-start over SSH against xl create in dom0 (issue 12)


def test_vm_start_over_ssh_against_xl_create(dom0: Dom0, lane: Lane) -> None:
    """Wall time of `xetool vm-start` on the master against `xl create` of the same guest in dom0
    (timed there, and as seen from here over the shared connection), each to a running domain,
    in turns, ROUNDS times; each start is checked and forced down, leaving nothing. The medians'
    ratio must be at most TARGET: one run of either moves by seconds with the emulation's load."""
    import statistics

    cfg = "/tmp/lane-xl.cfg"
    dom0.sh(f"cat > {cfg}", stdin=xl_create_config(lane.disk))
    dom0.sh(f"[ -e /sys/class/net/{BRIDGE} ] || {{ ip link add name {BRIDGE} type bridge && ip link set dev {BRIDGE} up; }}")
    xl: list[float] = []
    seen: list[float] = []
    ours: list[tuple[float, str]] = []
    for n in range(ROUNDS):
        t = time.monotonic()
        xl.append(float(dom0.sh(f"t=$(date +%s.%N); xl create {cfg} >&2 && "
                                "awk -v a=$t -v b=$(date +%s.%N) 'BEGIN{print b-a}'").stdout.strip()))
        seen.append(time.monotonic() - t)
        dom0.sh("xl destroy lane-xl")
        wait_for("lane-xl gone", lambda: "lane-xl" not in xl_list(dom0.xl), 60)
        wait_for("loop device released", lambda: not dom0.sh(f"losetup -j {lane.disk}").stdout.strip(), 30)

        free_before = dom0.free_mib()
        console = RemoteConsole(dom0)
        res, seconds = vm_start(lane)
        out = res.stdout + res.stderr
        ours.append((seconds, trace_summary(out)))
        pid = trace_pid(out, "start_console_server")
        domid = check_running(dom0, lane, pid)
        if n == 0:
            check_guest_up(console)
        lane.xe("vm-shutdown", f"uuid={lane.vm_uuid}", "--force")
        assert not re.search(POWERED_OFF, console.text())
        check_nothing_left(dom0, lane, domid, free_before, pid)

    mine, theirs = statistics.median(s for s, _ in ours), statistics.median(xl)
    middle = sorted(ours)[len(ours) // 2][1]
    emit(f"XENLAB TIME vm-start over SSH vs xl create in dom0 (PV {MEMORY_MIB} MiB, 1 vCPU, disk+vif, to a running "
         f"domain; medians of {ROUNDS} in turns): xetool vm-start {mine:.1f}s ({', '.join(f'{s:.1f}' for s, _ in ours)}), "
         f"xl create {theirs:.1f}s ({', '.join(f'{s:.1f}' for s in xl)}; {statistics.median(seen):.1f}s seen over ssh), "
         f"ratio {mine / theirs:.2f} (target {TARGET}); the median start's slowest steps: {middle}")
    assert mine <= TARGET * theirs, f"vm-start over SSH {mine:.1f}s against xl create {theirs:.1f}s: over {TARGET}x"
