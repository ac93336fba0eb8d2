"""choose_host_for_vm without WLB (xapi vm_placement.ml, xapi_vm_helpers.ml), and start_on.

Hosts are tried in categories — the affinity host, then definite, probable, possible — each
sorted by its memory value, highest first, and drawn from at index floor(n·u²), which favours
the roomiest. A host that fails validation is removed and never drawn again. The draws depend
only on how many hosts remain, so the order is a pure function of (snapshot, VM, RNG state):
`placement_order` shows the whole of it and `choose_host_for_vm` walks the same one.

Unlike xapi there is no second pass without the memory check. xapi's retry trusts squeezed on
the chosen host to have the last word; xetool's host half would refuse the same memory the
master computed, and a NO_HOSTS_AVAILABLE with the per-host table is clearer than a late
HOST_NOT_ENOUGH_FREE_MEMORY from one arbitrary host.
"""

from __future__ import annotations

import random

from xetool.errors import XeError
from xetool.placement.checks import VmFacts, as_error, explain_host, first_failure, vm_can_run_on_host
from xetool.placement.memory import stored_overhead
from xetool.placement.report import HostReport, PlacementReport, TryStep
from xetool.placement.snapshot import HostView, PoolView, VmView
from xetool.records import record

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Protocol

    class RandomSource(Protocol):
        def random(self) -> float: ...

POSSIBLE_SCALE = 1000


class FirstChoice:
    """A RandomSource that always draws 0: the best host of each category (xapi's
    fist_deterministic_host_selection), for tests and for operators who want no randomness."""

    def random(self) -> float:
        return 0.0


@record(frozen=True)
class Placement:
    host: HostView
    category: str  # affinity | definite | probable | possible | start_on | wlb
    tried: tuple[TryStep, ...]  # the hosts tried, in order, ending with the chosen one


def _half_towards_zero(v: int) -> int:
    # OCaml's (v - 1) / 2 truncates towards zero: a master at 0 stays at 0, in the category.
    x = v - 1
    return x // 2 if x >= 0 else -((-x) // 2)


def _host_rows(pool: PoolView) -> list[tuple[HostView, int, int, int, int]]:
    """Per host, once per snapshot: (host, total − host overhead − Σ guest overhead, Σ static_max,
    Σ dynamic_max, Σ dynamic_min) over its guests."""
    rows = pool._cache.get("placement_rows")
    if rows is None:
        rows = []
        for h in pool.hosts:
            ld = pool.load(h.uuid)
            rows.append((h, h.memory_total - h.memory_overhead - ld.overhead,
                         ld.static_max, ld.dynamic_max, ld.dynamic_min))
        pool._cache["placement_rows"] = rows
    return rows


def host_values(vm: VmView, pool: PoolView) -> list[tuple[HostView, int, int, int]]:
    """(host, definite, probable, possible) for each host, counting `vm` among its guests."""
    own_ovh = stored_overhead(vm)
    smax, dmax, dmin = vm.memory_static_max, vm.memory_dynamic_max, vm.memory_dynamic_min
    known = pool.guests.get(vm.uuid, vm)
    charged = known.hosts_charged()  # almost always empty: the VM is halted
    bias = pool.coordinator_bias
    out = []
    for h, base, l_smax, l_dmax, l_dmin in _host_rows(pool):
        avail = base - own_ovh
        s_smax, s_dmax, s_dmin = l_smax + smax, l_dmax + dmax, l_dmin + dmin
        if charged and h.uuid in charged:  # its own share is already in the sums
            avail += stored_overhead(known)
            s_smax -= known.memory_static_max
            s_dmax -= known.memory_dynamic_max
            s_dmin -= known.memory_dynamic_min
        definite = avail - s_smax
        probable = avail - s_dmax
        if avail >= s_dmax:
            possible = POSSIBLE_SCALE
        elif avail < s_dmin:
            possible = -1
        else:
            possible = POSSIBLE_SCALE * (avail - s_dmin) // (s_dmax - s_dmin)
        if bias and h.is_master:
            definite, probable = _half_towards_zero(definite), _half_towards_zero(probable)
        out.append((h, definite, probable, possible))
    return out


_CATEGORY_COLUMN = (("definite", 1), ("probable", 2), ("possible", 3))


def host_order(vm: VmView, pool: PoolView, rng: RandomSource) -> Iterator[tuple[HostView, str]]:
    """The hosts in the order the chooser tries them, supposing each one tried fails.
    Consumes one `rng.random()` per host yielded."""
    values = host_values(vm, pool)
    tried: set[str] = set()
    categories: list[tuple[str, int, list[tuple[HostView, int, int, int]]]] = []
    if vm.affinity:
        categories.append(("affinity", 3, [row for row in values if row[0].uuid == vm.affinity]))
    categories += [(name, col, values) for name, col in _CATEGORY_COLUMN]
    for name, col, rows in categories:
        # Highest value first; ties by uuid (unique) so the order does not depend on the
        # store's, and hosts themselves are never compared. Built only when reached.
        cand = sorted((-value, row[0].uuid, row[0]) for row in rows
                      if (value := row[1:][col - 1]) >= 0 and row[0].uuid not in tried)
        while cand:
            u = rng.random()
            host = cand.pop(int(len(cand) * u * u))[2]
            tried.add(host.uuid)
            yield host, name


def placement_order(vm: VmView, pool: PoolView, rng: RandomSource) -> tuple[TryStep, ...]:
    return tuple(TryStep(h.uuid, cat) for h, cat in host_order(vm, pool, rng))


def explain_placement(vm: VmView, pool: PoolView, rng: RandomSource | None = None) -> PlacementReport:
    """Every check on every host, and the chooser's order with the host it would pick.
    Given an RNG in the same state, `chosen` is what choose_host_for_vm returns."""
    facts = VmFacts.of(vm)
    reports = tuple(HostReport(h.uuid, h.name_label, explain_host(facts, h, pool)) for h in pool.hosts)
    order = placement_order(vm, pool, rng if rng is not None else random.Random())
    ok = {r.uuid for r in reports if r.ok}
    chosen = next((s.host for s in order if s.host in ok), None)
    return PlacementReport(vm.uuid, reports, order, chosen)


def no_hosts_available(vm: VmView, pool: PoolView, tried: tuple[TryStep, ...] = ()) -> XeError:
    """NO_HOSTS_AVAILABLE (no parameters, as xapi) carrying `.report`, the explain table."""
    err = XeError("NO_HOSTS_AVAILABLE")
    facts = VmFacts.of(vm)
    err.report = PlacementReport(  # type: ignore[attr-defined]
        vm.uuid, tuple(HostReport(h.uuid, h.name_label, explain_host(facts, h, pool)) for h in pool.hosts), tried
    )
    return err


def choose_host_for_vm(vm: VmView, pool: PoolView, rng: RandomSource | None = None) -> Placement:
    """The first host in `host_order` that passes every check.

    A VM whose own parameters are invalid gets that error (INVALID_VALUE, ...) at once rather
    than xapi's bare NO_HOSTS_AVAILABLE: no host could differ, and the parameters say why; so
    does a VM with a disk that cannot be attached (VDI_IN_USE, ...)."""
    facts = VmFacts.of(vm)
    if facts.invalid is not None:
        raise facts.invalid
    if vm.disk_failure is not None:  # likewise: a disk no host can attach
        raise as_error(vm.disk_failure)
    tried: list[TryStep] = []
    for host, category in host_order(vm, pool, rng if rng is not None else random.Random()):
        tried.append(TryStep(host.uuid, category))
        if vm_can_run_on_host(facts, host, pool):
            return Placement(host, category, tuple(tried))
    raise no_hosts_available(vm, pool, tuple(tried))


def start_on(vm: VmView, host_uuid: str, pool: PoolView) -> Placement:
    """`vm-start on=HOST`: every check strictly on that host, evacuation included; the first
    failure is raised with its parameters."""
    host = pool.host(host_uuid)
    if host is None:
        raise XeError("HANDLE_INVALID", "host", host_uuid)
    err = first_failure(VmFacts.of(vm), host, pool)
    if err is not None:
        raise err
    return Placement(host, "start_on", (TryStep(host.uuid, "start_on"),))
