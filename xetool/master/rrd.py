"""A VM's metrics archive, kept in whisper's round-robin format beside the host it runs on.

xapi pushes the VM's RRD to the host that runs it (Monitor_rrds.push_rrd); here the archive is a
file under <state>/rrd/<host uuid>/<vm uuid>.wsp and moving it is the push.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

# 5 s for an hour, a minute for a day, an hour for a year (whisper "precision:retention" pairs).
RETENTIONS = [(5, 720), (60, 1440), (3600, 8760)]


def archive(state_dir: Path, host: str, vm: str) -> Path:
    return state_dir / "rrd" / host / f"{vm}.wsp"


def push_rrd(state_dir: Path, vm: str, host: str) -> str:
    """Move the VM's archive to `host` (creating it on first start); return what was done."""
    target = archive(state_dir, host, vm)
    if target.exists():
        return f"archive already on host {host}"
    target.parent.mkdir(parents=True, exist_ok=True)
    for other in (state_dir / "rrd").glob(f"*/{vm}.wsp"):
        os.replace(other, target)
        return f"moved from host {other.parent.name}"
    import whisper  # only here: it costs a start about 14 ms (it loads ctypes)

    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:  # whole or not at all: a full disk leaves no half-made archive, nor the temporary file
        whisper.create(str(tmp), RETENTIONS, xFilesFactor=0.0)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return "created"


def record(state_dir: Path, host: str, vm: str, value: float, when: float | None = None) -> None:
    """One sample (the VM's actual memory, in bytes) into its archive, if it has one."""
    path = archive(state_dir, host, vm)
    if path.exists():
        import whisper

        whisper.update(str(path), value, int(when or time.time()))
