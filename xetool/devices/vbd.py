"""Virtual block devices: names, Xen device numbers and the xenstore layout of a disk."""

from __future__ import annotations

from pathlib import Path

from xetool.backends.base import Backend
from xetool.devices import common
from xetool.records import record
from xetool.xenstore.client import XsClient

HVM_IDE = {0: ("hda", 768), 1: ("hdb", 832), 2: ("hdc", 5632), 3: ("hdd", 5696)}


def device_name(userdevice: int, hvm: bool) -> str:
    """xvda.. for PV guests; the first four disks of an HVM guest are IDE (hda..hdd)."""
    if hvm and userdevice in HVM_IDE:
        return HVM_IDE[userdevice][0]
    return "xvd" + _letters(userdevice)


def devid(userdevice: int, hvm: bool) -> int:
    """Xen's virtual-device number: 202<<8 | n<<4 for xvd (n < 16), the extended form above."""
    if hvm and userdevice in HVM_IDE:
        return HVM_IDE[userdevice][1]
    if userdevice < 16:
        return (202 << 8) | (userdevice << 4)
    return (1 << 28) | (userdevice << 8)


def _letters(n: int) -> str:
    out = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        out = chr(ord("a") + r) + out
    return out


@record(frozen=True)
class Disk:
    userdevice: int
    path: Path | None  # None: an empty CD drive
    mode: str  # RO | RW
    vbd_type: str  # Disk | CD | Floppy
    bootable: bool
    name: str  # the VBD's uuid, for errors
    unpluggable: bool  # the backend's `removable`, as xenopsd writes it


def plug(xs: XsClient, backend: Backend, domid: int, hvm: bool, disks: list[Disk]) -> list[str]:
    """Connect disks (all at once); returns the guest's device name of each."""
    devices = []
    for disk in disks:
        dname = device_name(disk.userdevice, hvm)
        device_type = {"CD": "cdrom", "Floppy": "floppy"}.get(disk.vbd_type, "disk")
        paths = common.DevicePaths("vbd", domid, devid(disk.userdevice, hvm))
        front = {"virtual-device": str(paths.devid), "device-type": device_type, "protocol": "x86_64-abi"}
        back = {
            "params": str(disk.path) if disk.path else "", "script": "/etc/xen/scripts/block", "type": "phy",
            "mode": "w" if disk.mode == "RW" else "r", "dev": dname, "device-type": device_type,
            "removable": "1" if disk.unpluggable else "0", "bootable": "1" if disk.bootable else "0",
        }
        devices.append(common.Device(paths, front, back, disk.name))
    common.add(xs, backend, devices)
    return [device_name(d.userdevice, hvm) for d in disks]


def unplug(xs: XsClient, backend: Backend, domid: int, userdevice: int, hvm: bool, name: str, force: bool = False) -> None:
    common.remove(xs, backend, common.DevicePaths("vbd", domid, devid(userdevice, hvm)), name, force)
