"""Virtual network interfaces: the xenstore layout of a NIC, and the guest installer network's
DHCP leases, kept as a dnsmasq hosts file (`dhcp-hostsfile`) per bridge on the host.

dnsmasq reads a hosts file at start and again on SIGHUP. A dnsmasq serving `<bridge>.hosts` that
was started with `--pid-file=<bridge>.pid` in the same directory is sent SIGHUP on every change,
so a lease given or taken back takes effect at once."""

from __future__ import annotations

import ipaddress
import os
import signal
from pathlib import Path

from xetool.backends.base import Backend
from xetool.devices import common
from xetool.host.locks import FileLock
from xetool.processes import command_name, read_pid
from xetool.records import record
from xetool.xenstore.client import XsClient

INSTALLER_SUBNET = ipaddress.ip_network("192.168.128.0/24")  # xapi's guest installer network range


@record(frozen=True)
class Nic:
    device: int
    mac: str
    bridge: str
    mtu: int
    name: str  # the VIF's uuid, for errors


def plug(xs: XsClient, backend: Backend, domid: int, nics: list[Nic]) -> None:
    """Connect network interfaces (all at once)."""
    devices = []
    for nic in nics:
        front = {"handle": str(nic.device), "mac": nic.mac, "disconnect": "0", "mtu": str(nic.mtu)}
        # no "vifname": it asks vif-bridge to rename the interface netback made, and netback already
        # names it vif<domid>.<device> (vif-bridge refuses a rename to the name it has)
        back = {"script": "/etc/xen/scripts/vif-bridge", "mac": nic.mac, "bridge": nic.bridge, "handle": str(nic.device),
                "type": "vif", "mtu": str(nic.mtu)}
        # what xenopsd keeps of a VIF in its private tree (Device.Vif.add)
        private = {"mac": nic.mac, "MTU": str(nic.mtu), "bridge": nic.bridge, "bridge-MAC": "fe:ff:ff:ff:ff:ff"}
        devices.append(common.Device(common.DevicePaths("vif", domid, nic.device), front, back, nic.name, private))
    common.add(xs, backend, devices)


def unplug(xs: XsClient, backend: Backend, domid: int, device: int, name: str, force: bool = False) -> None:
    common.remove(xs, backend, common.DevicePaths("vif", domid, device), name, force)


def leases_file(host_dir: Path, bridge: str) -> Path:
    return host_dir / "dnsmasq" / f"{bridge}.hosts"


def dnsmasq_pid_file(host_dir: Path, bridge: str) -> Path:
    return host_dir / "dnsmasq" / f"{bridge}.pid"


def add_lease(host_dir: Path, bridge: str, mac: str, hostname: str) -> str:
    """Give `mac` an address on the installer network; returns it. Idempotent per MAC."""
    path = leases_file(host_dir, bridge)
    with FileLock(path.with_suffix(".lock"), f"DHCP leases of {bridge}"):
        lines = path.read_text().splitlines() if path.exists() else []
        taken = set()
        for line in lines:
            parts = line.split(",")
            if parts[0] == mac:
                return parts[1]
            taken.add(parts[1])
        for ip in list(INSTALLER_SUBNET.hosts())[9:]:  # .10 upwards; the host keeps the low ones
            if str(ip) not in taken:
                break
        else:
            raise OSError("no free address on the guest installer network")
        _write(path, lines + [f"{mac},{ip},{hostname}"])
    reload_dnsmasq(host_dir, bridge)
    return str(ip)


def remove_lease(host_dir: Path, bridge: str, mac: str) -> bool:
    path = leases_file(host_dir, bridge)
    if not path.exists():
        return False
    with FileLock(path.with_suffix(".lock"), f"DHCP leases of {bridge}"):
        lines = path.read_text().splitlines()
        kept = [line for line in lines if line.split(",")[0] != mac]
        _write(path, kept)
    if len(kept) != len(lines):
        reload_dnsmasq(host_dir, bridge)
    return len(kept) != len(lines)


def reload_dnsmasq(host_dir: Path, bridge: str) -> bool:
    """SIGHUP to the dnsmasq that serves the bridge's hosts file, if one registered its pid file;
    True if one was told. A pid that is not a dnsmasq's (a stale file) is left alone."""
    pid = read_pid(str(dnsmasq_pid_file(host_dir, bridge)))
    if pid is None or command_name(pid) != "dnsmasq":  # none running: one started later reads the file
        return False
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError:
        return False
    return True


def _write(path: Path, lines: list[str]) -> None:
    """Same-directory temporary file and rename: dnsmasq never reads half a file."""
    from xetool.paths import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "".join(line + "\n" for line in lines), 0o644)  # dnsmasq may run as another user
