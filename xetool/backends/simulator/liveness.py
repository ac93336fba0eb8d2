"""A cheap look for crashed simulated hosts, for listings: read each started host's pid file and
ask /proc whether the process is alive. Only when one is found dead is the janitor (and all it
imports) brought in to settle its VMs."""

from __future__ import annotations

from pathlib import Path

from xetool.store.db import Store


def _alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().strip())
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except (OSError, ValueError, IndexError):
        return False


def notice_crashed_hosts(store: Store) -> None:
    root = Path(store.state_dir) / "hosts"
    if not root.is_dir():
        return
    from xetool.backends.simulator.layout import host_files

    for d in root.iterdir():
        files = host_files(Path(store.state_dir), d.name)
        if files.pid_file.exists() and not _alive(files.pid_file):
            from xetool.host import janitor

            janitor.reconcile_hosts(store)
            return
