"""The guest installer network's DHCP lease, read by a real dnsmasq and handed to a real client.

vm-start (simulated host) writes the VM's lease to <state>/hosts/<host>/dnsmasq/<bridge>.hosts in
dnsmasq's dhcp-hostsfile format. Here dnsmasq serves that file on a veth pair between two network
namespaces made for the test, with a *static* range, so that only MACs listed in the file get an
address; busybox udhcpc in the other namespace asks with the VM's MAC and must get the VM's
address, and with another MAC must get none. Needs root, iproute2 (ip netns), dnsmasq
(Debian: dnsmasq-base) and busybox; skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

DNSMASQ = shutil.which("dnsmasq") or ("/usr/sbin/dnsmasq" if os.path.exists("/usr/sbin/dnsmasq") else None)
BUSYBOX = shutil.which("busybox")
IP = shutil.which("ip")
HOST_ADDR = "192.168.128.1/24"  # the host's end of the installer network (vif.INSTALLER_SUBNET)


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if IP is None:
        return "no ip(8) (Debian: iproute2)"
    if DNSMASQ is None:
        return "no dnsmasq (Debian: apt-get install dnsmasq-base)"
    if BUSYBOX is None or "udhcpc" not in subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                                                          timeout=10).stdout.split():
        return "no busybox with udhcpc (Debian: busybox)"
    probe = f"xtprobe{os.getpid()}"
    res = subprocess.run([IP, "netns", "add", probe], capture_output=True, text=True, timeout=10)
    if res.returncode != 0:
        return f"cannot make a network namespace: {res.stderr.strip()}"
    subprocess.run([IP, "netns", "del", probe], capture_output=True, timeout=10)
    return None


REASON = _why_not()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"DHCP lease test: {REASON}")


def sh(*argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, f"{' '.join(argv)}: {res.stderr.strip()}"
    return res


@pytest.fixture
def netns() -> Iterator[tuple[str, str]]:
    """Two namespaces joined by a veth pair: (server ns, client ns); the server end addressed."""
    tag = f"{os.getpid() % 100000}"
    srv, cli = f"xtdhcp-s{tag}", f"xtdhcp-c{tag}"
    try:
        sh(IP, "netns", "add", srv)  # type: ignore[arg-type]
        sh(IP, "netns", "add", cli)  # type: ignore[arg-type]
        sh(IP, "-n", srv, "link", "add", "vs", "type", "veth", "peer", "name", "vc", "netns", cli)  # type: ignore[arg-type]
        sh(IP, "-n", srv, "addr", "add", HOST_ADDR, "dev", "vs")  # type: ignore[arg-type]
        for ns, dev in ((srv, "vs"), (srv, "lo"), (cli, "lo")):
            sh(IP, "-n", ns, "link", "set", dev, "up")  # type: ignore[arg-type]
        yield srv, cli
    finally:
        for ns in (srv, cli):
            subprocess.run([IP, "netns", "del", ns], capture_output=True, timeout=10)  # type: ignore[list-item]


def udhcpc(cli: str, mac: str, tries: int) -> str | None:
    """The address busybox udhcpc obtains for `mac` in namespace `cli`, or None."""
    sh(IP, "-n", cli, "link", "set", "vc", "down")  # type: ignore[arg-type]
    sh(IP, "-n", cli, "link", "set", "vc", "address", mac)  # type: ignore[arg-type]
    sh(IP, "-n", cli, "link", "set", "vc", "up")  # type: ignore[arg-type]
    # -n: give up if no lease; -q: quit once leased; -s /bin/true: configure nothing
    res = subprocess.run([IP, "netns", "exec", cli, BUSYBOX, "udhcpc", "-i", "vc", "-n", "-q", "-f",  # type: ignore[list-item]
                          "-t", str(tries), "-T", "1", "-A", "1", "-s", "/bin/true"],
                         capture_output=True, text=True, timeout=tries * 3 + 10)
    m = re.search(r"lease of (\S+) obtained", res.stdout + res.stderr)
    return m.group(1) if m else None


@contextlib.contextmanager
def dnsmasq(srv: str, hostsfile: Path, tmp_path: Path, pid_file: str = "") -> Iterator[Path]:
    """dnsmasq in namespace `srv` serving `hostsfile` with a static range; yields its log once
    it has read the file."""
    log = tmp_path / "dnsmasq.log"
    argv = [IP, "netns", "exec", srv, DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
            "--interface=vs", "--bind-interfaces", "--user=root", "--group=root",
            "--dhcp-range=192.168.128.0,static,255.255.255.0", f"--dhcp-hostsfile={hostsfile}",
            f"--dhcp-leasefile={tmp_path / 'leases'}", "--log-dhcp", f"--log-facility={log}", f"--pid-file={pid_file}"]
    server = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        # (dnsmasq 2.90 logs "read FILE" for a hostsfile, with no count: the exchanges show that
        # the entries were understood)
        while f"read {hostsfile}" not in (log.read_text() if log.exists() else ""):
            assert server.poll() is None, f"dnsmasq exited: {server.stderr.read().decode()}"  # type: ignore[union-attr]
            assert time.monotonic() < deadline, f"dnsmasq did not read {hostsfile}"
            time.sleep(0.1)
        yield log
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


def test_dnsmasq_serves_the_lease_vm_start_wrote(ok, pool: Path, netns: tuple[str, str], tmp_path: Path) -> None:
    ok("vm-start", "vm=web01")  # its VIF 1 is on the guest installer network (examples/pool.toml)
    files = list(pool.glob("hosts/*/dnsmasq/xenbr1.hosts"))
    assert len(files) == 1, files
    hostsfile = files[0]
    entry = hostsfile.read_text().splitlines()
    mac, ip, name = entry[0].split(",")
    assert len(entry) == 1 and name == "web01" and ip.startswith("192.168.128.")

    srv, cli = netns
    with dnsmasq(srv, hostsfile, tmp_path) as log:
        assert udhcpc(cli, mac, tries=5) == ip  # the VM's MAC gets the VM's address
        assert udhcpc(cli, "00:16:3e:00:00:99", tries=2) is None  # static range: unknown MACs get nothing
        text = log.read_text()
        assert re.search(rf"DHCPACK\(vs\) {re.escape(ip)} {mac} web01", text), text[-2000:]
        assert "no address available" in text, text[-2000:]


def test_a_running_dnsmasq_is_told_of_each_change(ok, pool: Path, netns: tuple[str, str], tmp_path: Path) -> None:
    """A dnsmasq started with --pid-file=<bridge>.pid beside the hosts file is sent SIGHUP when a
    lease is given or taken back, and serves the change without a restart."""
    ok("vm-start", "vm=web01")
    hostsfile = next(pool.glob("hosts/*/dnsmasq/xenbr1.hosts"))
    host = hostsfile.parent.parent.name
    mac, ip, _ = hostsfile.read_text().strip().split(",")
    ok("vm-shutdown", "vm=web01", "--force")
    assert hostsfile.read_text() == ""  # the lease went with the VM

    srv, cli = netns
    with dnsmasq(srv, hostsfile, tmp_path, pid_file=str(hostsfile.with_suffix(".pid"))) as log:
        assert udhcpc(cli, mac, tries=2) is None  # no lease yet
        ok("vm-start", "vm=web01", f"on={host}")  # the same host: the same file, the same address
        assert udhcpc(cli, mac, tries=5) == ip, log.read_text()[-2000:]
        ok("vm-shutdown", "vm=web01", "--force")
        assert udhcpc(cli, mac, tries=2) is None, log.read_text()[-2000:]
