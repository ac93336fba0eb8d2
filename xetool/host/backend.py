"""The backend of a host, from its record: the simulator (default) or real Xen."""

from __future__ import annotations

from pathlib import Path

from xetool.backends.base import Backend
from xetool.store.db import Row

HOST_FIELDS = ("uuid", "name_label", "backend", "memory_total", "dom0_memory", "cpu_count", "capabilities", "hostname",
               # how the master reaches it (master/ssh.py): none of these for a host on this machine
               "address", "ssh_user", "ssh_port", "ssh_alias", "agent_command")


def backend_for(state_dir: Path, host: Row) -> Backend:
    if host["backend"] == "xen":
        from xetool.backends.xen.backend import XenBackend

        return XenBackend()
    from xetool.backends.simulator.backend import SimulatorBackend

    return SimulatorBackend(
        state_dir, host["uuid"], memory_total_kib=host["memory_total"] // 1024,
        dom0_memory_kib=host["dom0_memory"] // 1024, cpus=host["cpu_count"],
        capabilities=frozenset(host["capabilities"]), hostname=host["hostname"] or host["name_label"],
    )
