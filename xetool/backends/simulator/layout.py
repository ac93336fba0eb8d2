"""Where a simulated host's runtime files live: paths.host_dir(state, uuid) holds the pid file,
the start lock and the log; the two sockets live there too unless the path would pass the
108-byte limit of a Unix socket address, in which case they go to a short per-user directory
under /tmp named after the host directory (both sides compute the same name)."""

from __future__ import annotations

import os
from pathlib import Path

from xetool.paths import HOSTD_PID, host_dir, socket_dir
from xetool.records import record

@record(frozen=True)
class HostFiles:
    dir: Path
    xenstored_socket: Path
    control_socket: Path
    pid_file: Path
    lock_file: Path
    log_file: Path


def host_files(state_dir: Path, host_uuid: str) -> HostFiles:
    hd = host_dir(Path(state_dir), host_uuid).absolute()
    sock_dir = socket_dir(hd, len("xenstored.sock"))
    return HostFiles(hd, sock_dir / "xenstored.sock", sock_dir / "control.sock", hd / HOSTD_PID,
                     hd / "hostd.lock", hd / "hostd.log")
