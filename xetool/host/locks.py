"""File locks for the host's lifecycle queue, a VM's lock and the memory broker.

fcntl.flock on a file opened close-on-exec (Python's default), so a device model or console
server that the toolstack spawns never inherits a lock; the kernel drops the lock with the
process, so a SIGKILLed command never leaves a stale one. Waits are bounded and say who holds
the lock (the holder writes its pid and purpose into the file).
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from xetool.errors import XeError


class FileLock:
    def __init__(self, path: Path, purpose: str) -> None:
        self.path = path
        self.purpose = purpose
        self.fd: int | None = None

    def acquire(self, timeout: float = 120.0) -> FileLock:
        """Take the lock, waiting at most `timeout` seconds (0: do not wait)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise
            if time.monotonic() + delay > deadline:
                holder = self._holder()
                os.close(fd)
                raise XeError("LOCK_TIMEOUT", f"{self.purpose} ({self.path})", holder, timeout)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {self.purpose}\n".encode(), 0)
        self.fd = fd
        return self

    def _holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> FileLock:
        return self.acquire() if self.fd is None else self

    def __exit__(self, *exc: object) -> None:
        self.release()


def host_queue(hd: Path) -> FileLock:
    """The seed's host-local vm_lifecycle_op queue: one lifecycle operation at a time per host."""
    return FileLock(hd / "lifecycle.lock", f"lifecycle queue of host {hd.name}")


def host_vm_lock(hd: Path, vm: str) -> FileLock:
    """A VM's lock on its host, held by the host half while it works on the VM's domain."""
    return FileLock(hd / "locks" / f"vm-{vm}.lock", f"VM {vm} on host {hd.name}")


def vm_lock(state_dir: Path, vm: str) -> FileLock:
    """A VM's lock on the master, held by a master's resync repair or operation on it."""
    return FileLock(state_dir / "locks" / f"vm-{vm}.lock", f"VM {vm}")


def broker_lock(hd: Path) -> FileLock:
    return FileLock(hd / "memory-broker.lock", f"memory broker of host {hd.name}")
