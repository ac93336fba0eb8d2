"""The device model (qemu's role, HVM) and the PV console server (vncterm's role): processes the
toolstack starts per domain, which listen for VNC on 127.0.0.1 only and write their port to
/local/domain/<domid>/console/vnc-port, where the toolstack reads it back."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Sequence

from xetool.errors import XeError
from xetool.xenstore.client import XsClient

START_TIMEOUT = float(os.environ.get("XETOOL_DM_TIMEOUT", "10"))


def spawn(argv: Sequence[str], log: Path, vm: str, name: str, xs: XsClient, domid: int,
          pid_key: str) -> tuple[int, int]:
    """Start the process detached from our session, wait for its VNC port; (pid, port)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log, "ab") as out:
            proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True, close_fds=True)
    except OSError as err:
        raise XeError("FAILED_TO_START_EMULATOR", vm, name, f"{argv[0]}: {err.strerror}") from None
    xs.write(f"/local/domain/{domid}/{pid_key}", str(proc.pid))
    port_path = f"/local/domain/{domid}/console/vnc-port"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            port = xs.wait_until(port_path, lambda v: bool(v), min(0.5, max(0.05, deadline - time.monotonic())))
            return proc.pid, int(port or 0)
        except XeError as err:
            if err.code != "EVENT_WAIT_TIMEOUT":
                stop(proc.pid)
                raise
        if proc.poll() is not None:
            raise XeError("FAILED_TO_START_EMULATOR", vm, name, f"exited with status {proc.returncode}; see {log}")
        if time.monotonic() >= deadline:
            stop(proc.pid)
            raise XeError("FAILED_TO_START_EMULATOR", vm, name, f"no VNC port in xenstore after {START_TIMEOUT:g} s")


def stop(pid: int, timeout: float = 3.0) -> bool:
    """SIGTERM, then SIGKILL after `timeout`; True if a process was there to stop."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return True
        except ChildProcessError:  # not our child: poll for its disappearance
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
        time.sleep(0.01)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True
