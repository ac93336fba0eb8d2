"""Loop devices for disk files, made and released in-process with the kernel's loop ioctls:
what Xen's block hotplug script does with `losetup` (block.py), without a process."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

LOOP_CONTROL = "/dev/loop-control"
LOOP_SET_FD, LOOP_CLR_FD, LOOP_CTL_GET_FREE = 0x4C00, 0x4C01, 0x4C82


def users(path: str) -> list[str]:
    """The loop devices already backed by this file."""
    real = os.path.realpath(path)
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            if backing.read_text().strip() == real:
                found.append(f"/dev/{backing.parent.parent.name}")
        except OSError:  # released meanwhile
            pass
    return sorted(found)


def attach(path: str, read_only: bool) -> str:
    """A free loop device backed by the file (read-only if asked, as the file is opened); its
    path. OSError with the kernel's reason if none can be had."""
    backing = os.open(path, os.O_RDONLY if read_only else os.O_RDWR)
    try:
        ctl = os.open(LOOP_CONTROL, os.O_RDWR)
        try:
            for _ in range(64):  # another process may take the free device first: ask again
                dev = f"/dev/loop{fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)}"
                fd = os.open(dev, os.O_RDONLY if read_only else os.O_RDWR)
                try:
                    fcntl.ioctl(fd, LOOP_SET_FD, backing)
                    return dev
                except OSError as err:
                    if err.errno != errno.EBUSY:
                        raise
                finally:
                    os.close(fd)
            raise OSError(errno.EBUSY, "every free loop device was taken by others meanwhile")
        finally:
            os.close(ctl)
    finally:
        os.close(backing)


def backing_file(dev: str) -> str | None:
    """The file behind a loop device (/dev/loopN), or None if it is not one, or unbound."""
    name = os.path.basename(dev)
    if not name.startswith("loop") or not name[4:].isdigit():
        return None
    try:
        with open(f"/sys/block/{name}/loop/backing_file") as f:
            return f.read().strip() or None
    except OSError:
        return None


def detach(dev: str) -> None:
    """Release the loop device. One still held (a backend that has not let go) is released by
    the kernel when its last user closes it."""
    fd = os.open(dev, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, LOOP_CLR_FD)
    except OSError as err:
        if err.errno != errno.ENXIO:  # ENXIO: not bound (released already)
            raise
    finally:
        os.close(fd)
