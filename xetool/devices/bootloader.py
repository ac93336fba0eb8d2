"""Choosing the kernel (Vmops.create_kernel): the PV kernel from dom0, a bootloader that reads it
from the guest's disk (pygrub's role), or the HVM firmware.

On the simulator the guest's disk carries a small boot description (the VDI's
other-config:boot-kernel, boot-ramdisk, boot-args, as pool definitions write it). On Xen, pygrub
itself reads the disk image."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from xetool.errors import XeError
from xetool.records import record

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any

HVMLOADER = "/usr/lib/xen-4.17/boot/hvmloader"
KNOWN_BOOTLOADERS = ("pygrub",)


@record(frozen=True)
class Kernel:
    kernel: str
    ramdisk: str
    args: str
    source: str  # what chose it: PV-kernel, pygrub, hvmloader


def choose(vm: dict[str, Any], hvm: bool, boot_disk: tuple[Path, dict[str, str]] | None, simulated: bool, work_dir: Path) -> Kernel:
    """`boot_disk` is (the bootable disk's file, its VDI other-config) or None."""
    kernel = precheck(vm, hvm, boot_disk, simulated)
    if kernel is not None:
        return kernel
    assert boot_disk is not None
    return _pygrub(vm, str(boot_disk[0]), work_dir)


def precheck(vm: dict[str, Any], hvm: bool, boot_disk: tuple[Path, dict[str, Any]] | None, simulated: bool) -> Kernel | None:
    """`choose` short of running pygrub (which --dry-run must not): the kernel, the same error,
    or None when only pygrub reading the disk can tell."""
    if hvm:
        return Kernel(HVMLOADER, "", "", "hvmloader")
    loader = vm["PV_bootloader"]
    if not loader:
        if not vm["PV_kernel"]:
            raise XeError("INVALID_VALUE", "PV-kernel", "(empty: a PV VM needs PV-kernel or PV-bootloader)")
        return Kernel(vm["PV_kernel"], vm["PV_ramdisk"], vm["PV_args"], "PV-kernel")
    name = Path(loader).name
    if name not in KNOWN_BOOTLOADERS:
        raise XeError("UNKNOWN_BOOTLOADER", vm["uuid"], loader)
    if boot_disk is None:
        raise XeError("BOOTLOADER_FAILED", vm["uuid"], "the VM has no bootable disk for pygrub to read")
    path, other = boot_disk
    if simulated:
        if "boot-kernel" not in other:
            raise XeError("BOOTLOADER_FAILED", vm["uuid"], f"no boot description on the disk {path.name} (VDI other-config:boot-kernel)")
        args = " ".join(filter(None, (other.get("boot-args", ""), vm["PV_args"])))
        return Kernel(other["boot-kernel"], other.get("boot-ramdisk", ""), args, "pygrub")
    return None


_SIMPLE = re.compile(r"^(kernel|ramdisk|args) (.*)$", re.M)


def _pygrub(vm: dict[str, Any], disk: str, work_dir: Path) -> Kernel:
    exe = shutil.which("pygrub") or "/usr/lib/xen-4.17/bin/pygrub"
    work_dir.mkdir(parents=True, exist_ok=True)
    argv = [exe, "--output-format=simple", f"--output-directory={work_dir}", *vm["PV_bootloader_args"].split(), disk]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise XeError("BOOTLOADER_FAILED", vm["uuid"], str(err)) from None
    if out.returncode != 0:
        raise XeError("BOOTLOADER_FAILED", vm["uuid"], (out.stderr or out.stdout).strip()[-300:])
    found = dict(_SIMPLE.findall(out.stdout))
    if "kernel" not in found:
        raise XeError("BOOTLOADER_FAILED", vm["uuid"], "pygrub named no kernel")
    args = " ".join(filter(None, (found.get("args", ""), vm["PV_args"])))
    return Kernel(found["kernel"], found.get("ramdisk", ""), args, "pygrub")
