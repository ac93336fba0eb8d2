"""A cheap look for crashed simulated hosts, for listings: read each started host's pid file and
ask /proc whether the process is alive. Only when one is found dead is the janitor (and all it
imports) brought in to settle its VMs."""

from __future__ import annotations

import os

from xetool.paths import HOSTD_PID, HOSTS
from xetool.store.db import Store


def _alive(pid_file: str) -> bool:
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except (OSError, ValueError, IndexError):
        return False


def notice_crashed_hosts(store: Store) -> None:
    # strings, not Paths, as on the rest of a listing's path (see xetool.paths)
    root = os.path.join(store.state, HOSTS)
    try:
        hosts = os.listdir(root)
    except OSError:
        return
    for name in hosts:
        pid_file = os.path.join(root, name, HOSTD_PID)
        if os.path.exists(pid_file) and not _alive(pid_file):
            from xetool.host import janitor

            janitor.reconcile_hosts(store)
            return
