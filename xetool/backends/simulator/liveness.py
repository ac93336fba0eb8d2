"""A cheap look for crashed simulated hosts, for listings: read each started host's pid file and
ask /proc whether the process is alive. Only when one is found dead is the janitor (and all it
imports) brought in to settle its VMs."""

from __future__ import annotations

import os

from xetool.paths import HOSTD_PID, HOSTS
from xetool.processes import alive, read_pid
from xetool.store.db import Store


def notice_crashed_hosts(store: Store) -> None:
    # strings, not Paths, as on the rest of a listing's path (see xetool.paths)
    root = os.path.join(store.state, HOSTS)
    try:
        hosts = os.listdir(root)
    except OSError:
        return
    for name in hosts:
        pid_file = os.path.join(root, name, HOSTD_PID)
        if not os.path.exists(pid_file):
            continue  # never started, or stopped cleanly
        pid = read_pid(pid_file)
        if pid is None or not alive(pid):
            from xetool.host import janitor

            janitor.reconcile_hosts(store)
            return
