"""Xen's block hotplug script's work (/etc/xen/scripts/block), done in this process: the script
is a shell script that costs seconds a disk under emulation, and xenopsd too writes a disk's
device itself. The same lock as the scripts, the same sharing rule, the same keys in xenstore."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from contextlib import contextmanager

from xetool.backends.xen import loop
from xetool.errors import XeError
from xetool.xenstore.client import XenstoreError, XsClient

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Iterator

HOTPLUG_LOCKS = "/var/run/xen-hotplug"  # Xen's locking.sh: the scripts' claim_lock


def hotplug(xenstore_socket: str, be: str, name: str, adding: bool) -> None:
    """The disk of backend `be` (`name` for errors). Adding: a disk file gets a loop device
    (read-only for mode r), a block device is used as it is; its major:minor goes in
    ``physical-device`` for blkback, then ``hotplug-status``. Removing: the loop device made
    for the file is released. As the script, nothing is done twice: a backend with a
    ``physical-device`` already has its device."""
    with XsClient(xenstore_socket) as xs:
        params, device = xs.read_or(be + "/params") or "", xs.read_or(be + "/physical-device-path") or ""
        if not adding:  # the loop device made here for the file (one given as params is the operator's)
            backing = loop.backing_file(device) if device and device != params else None
            if backing is not None and backing.startswith(os.path.realpath(params)):  # "... (deleted)" too
                try:
                    loop.detach(device)
                except OSError as err:
                    raise XeError("HOTPLUG_FAILED", "vbd", name, f"releasing {device}: {err.strerror}") from None
            return
        if xs.read_or(be + "/physical-device"):
            return
        if not params:  # an empty CD drive: nothing to attach
            xs.write(be + "/hotplug-status", "connected")
            return
        writable = xs.read_or(be + "/mode") == "w"
        try:
            st = os.stat(params)
            if stat.S_ISBLK(st.st_mode):
                with hotplug_lock("block"):
                    check_sharing(xs, be, {major_minor(params)}, writable)
                device = params
            elif stat.S_ISREG(st.st_mode):
                if writable and not st.st_mode & 0o222:
                    raise OSError(errno.EACCES, "the file is read-only, so it is not attached read-write")
                with hotplug_lock("block"):
                    check_sharing(xs, be, {major_minor(d) for d in loop.users(params)}, writable)
                    device = loop.attach(params, read_only=not writable)
            else:
                raise OSError(errno.EINVAL, "neither a disk file nor a block device")
            number = major_minor(device)
        except OSError as err:  # what failed: the disk's file, or a device node (say which)
            reason = f"{params}: {err.strerror}" + (f" ({err.filename})" if err.filename not in (None, params) else "")
            xs.write_many({be + "/hotplug-error": reason, be + "/hotplug-status": "error"})
            raise XeError("HOTPLUG_FAILED", "vbd", name, reason) from None
        xs.write_many({be + "/physical-device": number,
                       be + "/physical-device-path": device, be + "/node": device,
                       be + "/hotplug-status": "connected"})


@contextmanager
def hotplug_lock(name: str, base: str = HOTPLUG_LOCKS) -> Iterator[None]:
    """Xen's hotplug scripts' lock of that name (locking.sh's claim_lock / release_lock), so
    that this process and any script xl or an operator runs take turns: flock the file, keep it
    only if it is still the file at that path, and remove it on release."""
    os.makedirs(base, exist_ok=True)
    path = os.path.join(base, name)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            held, there = os.fstat(fd), os.stat(path)
            if (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino):
                break
        except FileNotFoundError:  # released and removed meanwhile: take the next one
            pass
        os.close(fd)
    try:
        yield
    finally:
        os.unlink(path)
        os.close(fd)


def major_minor(device: str) -> str:
    """A block device's number as Xen's scripts and blkback write it: hex major:minor."""
    rdev = os.stat(device).st_rdev
    return f"{os.major(rdev):x}:{os.minor(rdev):x}"


def check_sharing(xs: XsClient, be: str, devices: set[str], writable: bool) -> None:
    """The block script's sharing rule (check_sharing), for the devices (major:minor) behind
    the disk: one mounted in dom0, or the device of another VM's disk, is refused if either use
    writes (EBUSY, saying where it is in use). Another domain of the same VM may share it."""
    if not devices:
        return
    with open("/proc/mounts") as mounts:
        for line in mounts:
            source, _, _, options = (line.split() + ["", "", "", ""])[:4]
            try:
                mm = major_minor(source) if source.startswith("/dev/") else ""
            except OSError:
                continue
            if mm in devices and (writable or "rw" in options.split(",")):
                raise OSError(errno.EBUSY, f"in use: {source} is mounted in dom0")
    base = be.rsplit("/", 2)[0]  # /local/domain/0/backend/vbd
    mine = xs.read_or(f"/local/domain/{be.rsplit('/', 2)[1]}/vm") or ""
    for dom in _children(xs, base):
        vm = xs.read_or(f"/local/domain/{dom}/vm") or ""
        if mine and vm == mine:
            continue
        for dev in _children(xs, f"{base}/{dom}"):
            other = f"{base}/{dom}/{dev}"
            if other != be and xs.read_or(other + "/physical-device") in devices and \
                    (writable or xs.read_or(other + "/mode") == "w"):
                raise OSError(errno.EBUSY, f"in use by domain {dom}'s disk {dev}")


def _children(xs: XsClient, path: str) -> list[str]:
    """The node's children; none if it went meanwhile (a domain torn down)."""
    try:
        return xs.ls(path)
    except XenstoreError as err:
        if err.errname != "ENOENT":
            raise
        return []
