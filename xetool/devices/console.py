"""The device model (qemu's role, HVM) and the PV console server (vncterm's role): processes the
toolstack starts per domain, which listen for VNC on 127.0.0.1 only, ask each client for the
domain's console password (VNC Authentication: 127.0.0.1 is open to every local user), and write
their port to /local/domain/<domid>/console/vnc-port, where the toolstack reads it back."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from xetool.backends.base import Backend
from xetool.devices import vncauth
from xetool.errors import XeError
from xetool.processes import alive
from xetool.xenstore.client import XsClient

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Sequence



def start_timeout() -> float:
    """XETOOL_DM_TIMEOUT seconds for a service to report its VNC port (from the request)."""
    from xetool.host import env

    return float(env.get("XETOOL_DM_TIMEOUT") or "10")


def secret_file(host_dir: Path, domid: int) -> Path:
    """The domain's console password (VNC Authentication, devices/vncauth.py), 0600 on its host."""
    return Path(vncauth.password_file(host_dir, domid))


def spawn(backend: Backend, kind: str, domid: int, nics: Sequence[tuple[str, str]], log: Path, vm: str,
          name: str, xs: XsClient, pid_key: str, secret: Path | None = None) -> tuple[int, int]:
    """Start the service through the backend and wait for its VNC port: (pid, port). With
    `secret`, a new password is written there first and the console asks every client for it."""
    try:
        if secret is not None:
            vncauth.write_password(str(secret), vncauth.new_password())
        pid = backend.start_service(kind, domid, nics, log, secret=secret)
    except OSError as err:
        raise XeError("FAILED_TO_START_EMULATOR", vm, name, err.strerror or str(err)) from None
    xs.write(f"/local/domain/{domid}/{pid_key}", str(pid))
    port_path = f"/local/domain/{domid}/console/vnc-port"
    timeout = start_timeout()
    deadline = time.monotonic() + timeout
    while True:
        try:
            port = xs.wait_until(port_path, lambda v: bool(v), min(0.5, max(0.05, deadline - time.monotonic())))
            return pid, int(port or 0)
        except XeError as err:
            if err.code != "EVENT_WAIT_TIMEOUT":
                stop(pid)
                raise
        if not alive(pid):
            raise XeError("FAILED_TO_START_EMULATOR", vm, name, f"it exited before listening; see {log}")
        if time.monotonic() >= deadline:
            stop(pid)
            raise XeError("FAILED_TO_START_EMULATOR", vm, name, f"no VNC port in xenstore after {timeout:g} s")


def stop(pid: int, timeout: float = 3.0) -> bool:
    """SIGTERM, then SIGKILL after `timeout`; True if a process was there to stop."""
    if not alive(pid):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return True
        except ChildProcessError:  # not our child: its parent reaps it
            pass
        if not alive(pid):
            return True
        time.sleep(0.005)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True
