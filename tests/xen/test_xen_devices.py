"""Devices written by hand in xenstore (as xetool's toolstack writes them, not libxl), brought up
by XenBackend.hotplug: a file-backed disk through blkback and the block script, a vif through
netback and vif-bridge on a bridge made by ensure_bridge. The guest must see both; then it is
asked to power off through control/shutdown, and the teardown must leave nothing behind."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.xen.lab import emit, guest_config, wait_console
from xetool.backends.xen.backend import XenBackend

BRIDGE = "xenbr-lab"
DISK_DEVID = 51712  # xvda: (202 << 8) | (0 << 4)
MAC = "00:16:3e:5a:11:01"
MAGIC = b"XETOOLDISK"


def wait_for(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:g}s")


def add_device(xs: Any, domid: int, kind: str, devid: int, back: dict[str, str], front: dict[str, str]) -> None:
    """Frontend and backend directories in one transaction, with libxl's permissions: the
    frontend owned by the guest and readable by dom0, the backend owned by dom0."""
    fe = f"/local/domain/{domid}/device/{kind}/{devid}".encode()
    be = f"/local/domain/0/backend/{kind}/{domid}/{devid}".encode()
    xs.transaction()
    for path, perms, keys in (
        (fe, [f"n{domid}".encode(), b"r0"], {**front, "backend": be.decode(), "backend-id": "0", "state": "1"}),
        (be, [b"n0", f"r{domid}".encode()], {**back, "frontend": fe.decode(), "frontend-id": str(domid),
                                               "online": "1", "state": "1"}),
    ):
        xs.mkdir(path)
        xs.set_perms(path, perms)
        for key, value in keys.items():
            xs.write(path + b"/" + key.encode(), value.encode())
    assert xs.commit()


def test_disk_and_vif_hotplug(backend: XenBackend, xs: Any, reaper: list[str], tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    with open(disk, "wb") as f:  # sparse 64 MiB with a marker the guest reads back
        f.write(MAGIC)
        f.truncate(64 << 20)

    backend.ensure_bridge(BRIDGE)
    backend.ensure_bridge(BRIDGE)  # idempotent
    assert Path(f"/sys/class/net/{BRIDGE}/bridge").is_dir()

    cfg = guest_config("xetool-devs")
    reaper.append(cfg.name)
    free_before = backend.physinfo().free_memory_kib
    domid = backend.create_domain(cfg)
    backend.build_domain(domid, cfg)

    add_device(
        xs, domid, "vbd", DISK_DEVID,
        back={"params": str(disk), "script": "/etc/xen/scripts/block", "type": "phy", "mode": "w",
              "dev": "xvda", "device-type": "disk", "removable": "0", "bootable": "1", "discard-enable": "0"},
        front={"virtual-device": str(DISK_DEVID), "device-type": "disk", "protocol": "x86_64-abi"},
    )
    add_device(
        xs, domid, "vif", 0,
        back={"script": "/etc/xen/scripts/vif-bridge", "mac": MAC, "bridge": BRIDGE, "handle": "0", "type": "vif"},
        front={"handle": "0", "mac": MAC},
    )
    t = time.monotonic()
    backend.hotplug("vbd", domid, DISK_DEVID, "add")
    backend.hotplug("vif", domid, 0, "online")
    emit(f"XENLAB TIME hotplug vbd+vif: {time.monotonic() - t:.2f}s")
    vbe = f"/local/domain/0/backend/vbd/{domid}/{DISK_DEVID}".encode()
    nbe = f"/local/domain/0/backend/vif/{domid}/0".encode()
    assert xs.read(vbe + b"/hotplug-status") == b"connected"
    assert xs.read(vbe + b"/physical-device")  # major:minor of the loop device
    assert xs.read(nbe + b"/hotplug-status") == b"connected"
    assert Path(f"/sys/class/net/{BRIDGE}/brif/vif{domid}.0").exists()

    backend.unpause(domid)
    log = wait_console(cfg.name, "GUEST-READY")
    assert f"GUEST-DISK xvda sectors={64 << 11} magic={MAGIC.decode()}" in log, log[-1500:]
    assert f"GUEST-NIC eth0 mac={MAC}" in log, log[-1500:]
    assert wait_for("vbd connected", lambda: xs.read(vbe + b"/state") == b"4")
    assert wait_for("vif connected", lambda: xs.read(nbe + b"/state") == b"4")

    # a clean shutdown, asked of the guest through control/shutdown as the toolstack does
    xs.write(f"/local/domain/{domid}/control/shutdown".encode(), b"poweroff")

    def reason() -> str | None:
        dom = backend.domain_info(domid)
        return dom.shutdown_reason if dom else None

    assert wait_for("guest powered off", reason, 120) == "poweroff"

    # teardown as the toolstack must do it on Xen: libxl knows nothing of these devices
    backend.destroy(domid)
    backend.hotplug("vbd", domid, DISK_DEVID, "remove")
    backend.hotplug("vif", domid, 0, "offline")
    xs.delete(f"/local/domain/0/backend/vbd/{domid}".encode())
    xs.delete(f"/local/domain/0/backend/vif/{domid}".encode())
    loops = subprocess.run(["losetup", "-j", str(disk)], capture_output=True, text=True, timeout=10).stdout
    assert loops.strip() == "", loops
    wait_for("vif gone", lambda: not Path(f"/sys/class/net/vif{domid}.0").exists())
    assert not xs.exists(f"/local/domain/{domid}".encode())
    wait_for("free memory back", lambda: backend.physinfo().free_memory_kib >= free_before - 1024)
    os.unlink(disk)
