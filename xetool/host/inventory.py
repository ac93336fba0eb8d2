"""What a host tells the master for a resync: its boot id, its guest domains by VM uuid, and
which of them a start finished building.

Host-half calls: self-contained answers from the host's hypervisor and its own xenstore, never
from the master's store, so that the same calls can be carried to a host agent over SSH."""

from __future__ import annotations

from xetool.backends.base import Backend, DomainInfo
from xetool.records import record


@record(frozen=True)
class HostInventory:
    boot_id: str
    domains: dict[str, DomainInfo]  # VM uuid (the domain handle) -> domain


def inventory(backend: Backend) -> HostInventory:
    return HostInventory(backend.boot_id(), backend.domains_by_uuid())


def half_built(backend: Backend, domains: list[DomainInfo]) -> set[int]:
    """The domids among `domains` that no start finished: not built by the hypervisor, without
    the toolstack's own entries (`unique-domain-id`, written with `action-request` in one
    transaction: `xl create` writes neither), or still carrying `action-request` (removed by a
    start's last step, finish_build)."""
    out = {d.domid for d in domains if not d.built}
    rest = [d for d in domains if d.built]
    if not rest:
        return out
    from xetool.devices.domain import home
    from xetool.xenstore.client import XsClient

    with XsClient(backend.xenstore_socket()) as xs:
        for d in rest:
            h = home(d.domid)
            if xs.read_or(f"{h}/unique-domain-id") is None or xs.read_or(f"{h}/action-request") is not None:
                out.add(d.domid)
    return out
