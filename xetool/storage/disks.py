"""A file SR's disk files, made and removed on a host that sees the SR.

That is this machine when one of its own hosts has a PBD for the SR (a shared SR is mounted here
as on every host); otherwise a remote host with a PBD, through its agent (a local SR of a remote
host, or a shared SR that this machine does not mount), as xapi's storage manager runs on a host.
"""

from __future__ import annotations

from pathlib import Path

from xetool.errors import XeError
from xetool.storage import file_sr

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any

    from xetool.store.db import Row, Txn

    # a disk file made: its SR, the SR's directory, its location, and the remote host that made
    # it (None: this machine), with the pool's SSH settings to reach that host again
    Made = tuple[str, str, str, "Remote | None"]


class Remote:
    """A remote host that sees an SR, with what reaching it takes."""

    def __init__(self, state_dir: Path, host: Row, ssh_config: str, ssh_identity: str) -> None:
        self.state_dir, self.host, self.ssh_config, self.ssh_identity = state_dir, host, ssh_config, ssh_identity

    def call(self, name: str, **args: Any) -> dict[str, Any]:
        from xetool.master.host_half import call_plain

        return call_plain(self.state_dir, self.host, self.ssh_config, self.ssh_identity, name, args)


def seen_from(txn: Txn, sr: str) -> Remote | None:
    """Where the SR's files are reached: None for this machine, else a remote host with a PBD
    (a live one first)."""
    from xetool.host.backend import HOST_FIELDS
    from xetool.master.ssh import is_remote

    found = (txn.get("host", p["host"], [*HOST_FIELDS, "live"]) for p in txn.select("pbd", ["host"], {"SR": sr}))
    hosts = [h for h in found if h is not None]
    if not hosts or any(not is_remote(h) for h in hosts):
        return None
    pool = txn.pool()
    best = sorted(hosts, key=lambda h: (not h["live"], h["name_label"]))[0]
    return Remote(Path(txn.path).parent, best, pool["ssh_config"], pool["ssh_identity"])


def create(txn: Txn, sr: str, path: str, vdi: str, size: int, made: list[Made]) -> str:
    """The sparse file of a new disk; returns its location, and notes it in `made` so that a
    caller that fails can remove it."""
    remote = seen_from(txn, sr)
    if remote is None:
        location = file_sr.create(sr, path, vdi, size)
    else:
        location = str(remote.call("vdi_create", sr=sr, sr_path=path, vdi=vdi, size=size)["location"])
    made.append((sr, path, location, remote))
    return location


def destroy(entry: Made) -> None:
    sr, path, location, remote = entry
    if remote is None:
        file_sr.destroy(sr, path, location)
    else:
        remote.call("vdi_destroy", sr=sr, sr_path=path, location=location)


def undo(made: list[Made]) -> None:
    """Remove the files a failed command made (and an SR directory it made and left empty);
    a remote host that does not answer keeps its file, said on stderr."""
    import os
    import sys

    for entry in made:
        try:
            destroy(entry)
        except XeError as err:
            print(f"xetool: left {entry[2]} in SR {entry[0]}: {err.render().splitlines()[0]}", file=sys.stderr)
    for path in {e[1] for e in made if e[3] is None}:
        try:
            os.rmdir(path)  # only if the command made it and left it empty
        except OSError:
            pass


def present(txn: Txn, sr: str, path: str, location: str) -> bool | None:
    """Whether the disk's file is there; None when only a remote host can tell (it checks
    when it attaches the disk: VDI_MISSING then)."""
    if seen_from(txn, sr) is not None:
        return None
    return file_sr.vdi_path(path, location).is_file()
