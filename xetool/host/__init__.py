"""The host's half of each operation, reached through one narrow call per operation."""

from __future__ import annotations

from pathlib import Path

from xetool.store.db import Store

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from xetool.steps import Observer


class LocalHostHalf:
    """The host half run in this process, against the host's backend (simulator or Xen).

    The master calls `vm_start(vm, host, task, paused, force)` with identifiers only, so the same call
    can be carried to another machine of the pool (over SSH) without changing either half."""

    def __init__(self, store: Store, state_dir: Path, observer: Observer | None = None) -> None:
        self.store, self.state_dir, self.observer = store, state_dir, observer

    def vm_start(self, vm: str, host: str, task: str, paused: bool, force: bool = False) -> None:
        from xetool.host.vm_start import HostStart

        HostStart(self.store, self.state_dir, vm, host, task, paused, self.observer, force).run()

    def vm_start_undo(self, vm: str, host: str, task: str) -> None:
        """A master step after the hand-off failed: release everything the start took."""
        from xetool.host import teardown
        from xetool.host.backend import HOST_FIELDS, backend_for
        from xetool.host.locks import vm_lock

        with self.store.read() as txn:
            row = txn.must("host", host, HOST_FIELDS)
        backend = backend_for(self.state_dir, row)
        with vm_lock(self.state_dir, vm):
            teardown.release_vm(self.store, self.state_dir, backend if backend.is_live() else None, host, vm)
