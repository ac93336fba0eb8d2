"""What a host tells the master for a resync: its boot id, its guest domains by VM uuid, and
which of them a start finished building.

Self-contained answers from the host's hypervisor and its own xenstore, never from the master's
store: the `inventory` call (host/handlers.py) carries them to the master."""

from __future__ import annotations

from xetool.backends.base import Backend, DomainInfo


def half_built(backend: Backend, domains: list[DomainInfo]) -> set[int]:
    """The domids among `domains` that no start finished: not built by the hypervisor, without
    the toolstack's own entries (`unique-domain-id`, written with `action-request` in one
    transaction: `xl create` writes neither), or still carrying `action-request` (removed by a
    start's last step, finish_build). One pipelined round trip to xenstore for all of them."""
    out = {d.domid for d in domains if not d.built}
    rest = [d for d in domains if d.built]
    if not rest:
        return out
    from xetool.devices.domain import home
    from xetool.xenstore.client import XsClient

    with XsClient(backend.xenstore_socket()) as xs:
        values = xs.read_many([f"{home(d.domid)}/{k}" for d in rest for k in ("unique-domain-id", "action-request")])
    for n, d in enumerate(rest):
        unique, request = values[2 * n], values[2 * n + 1]
        if unique is None or request is not None:
            out.add(d.domid)
    return out
