"""Stopping the processes a test or a bench started: one definition for the suite's conftest and
the SSH lab's harness (tests/remote/netns.py), which the bench loads without pytest."""

from __future__ import annotations

import contextlib
import os
import signal
import time

from xetool.processes import alive


def stop_processes(pids: list[int], grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL to those still running after `grace` seconds (a zombie is gone)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.02)
