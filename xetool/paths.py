"""Where xetool keeps its state (DESIGN.md, "State").

The state directory is resolved as a string: a read command's whole path (context, store) works
on strings, since pathlib costs a command about 8 ms of start-up (it imports urllib.parse).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from pathlib import Path

HOSTS = "hosts"  # <state>/hosts/<host uuid>/: a host's runtime files
HOSTD_PID = "hostd.pid"  # a simulated host's pid file, in its host directory


def state_dir_name(explicit: str | os.PathLike[str] | None = None) -> str:
    """`--state-dir`, else $XETOOL_STATE_DIR, else /var/lib/xetool for root and
    $XDG_STATE_HOME/xetool (default ~/.local/state/xetool) for everyone else."""
    if explicit:
        return os.fspath(explicit)
    env = os.environ.get("XETOOL_STATE_DIR")
    if env:
        return env
    if os.geteuid() == 0:
        return "/var/lib/xetool"
    xdg = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(xdg, "xetool")


def host_dir(state: Path, host_uuid: str) -> Path:
    """Per-host runtime files: the simulated host's sockets, locks, leases."""
    return state / HOSTS / host_uuid
