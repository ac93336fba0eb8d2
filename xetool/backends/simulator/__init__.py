"""The simulated Xen host (DESIGN.md, "Two backends, one code path").

Public API (from xetool.backends.simulator.backend, imported lazily so that the host process,
which lives in this package too, starts without the client-side modules):
- SimulatorBackend(state_dir, host_uuid, *, memory_total_kib, dom0_memory_kib, cpus, capabilities, hostname)
- list_hosts(state_dir) -> [HostStatus], stop_host(state_dir, host_uuid) -> bool,
  xenstore_socket_path(state_dir, host_uuid) -> str
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["HostStatus", "SimulatorBackend", "list_hosts", "stop_host", "xenstore_socket_path"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from xetool.backends.simulator import backend

        return getattr(backend, name)
    raise AttributeError(name)
