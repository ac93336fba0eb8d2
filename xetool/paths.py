"""Where xetool keeps its state and configuration (DESIGN.md, "State")."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """`--state-dir`, else $XETOOL_STATE_DIR, else /var/lib/xetool for root and
    $XDG_STATE_HOME/xetool (default ~/.local/state/xetool) for everyone else."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("XETOOL_STATE_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/xetool")
    xdg = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(xdg) / "xetool"


def config_file() -> Path:
    """/etc/xetool/xetool.toml for root, else $XDG_CONFIG_HOME/xetool/xetool.toml."""
    if os.geteuid() == 0:
        return Path("/etc/xetool/xetool.toml")
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(xdg) / "xetool" / "xetool.toml"


def host_dir(state: Path, host_uuid: str) -> Path:
    """Per-host runtime files: the simulated host's sockets, locks, leases."""
    return state / "hosts" / host_uuid
