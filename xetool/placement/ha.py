"""The HA failover plan: can every protected VM be restarted after any N host failures?

xapi's rule (xapi_ha_vm_failover.ml, assert_configuration_change_preserves_ha_plan): with HA on
and overcommit not allowed, a change is refused only if a plan exists now and would not after
it. A "plan" here is a packing of the failed hosts' protected VMs (each needing dynamic_min +
overhead, as the memory check counts them) into the surviving live, enabled hosts' free memory
(maximum compression).

Deciding that exactly is bin packing over C(hosts, N) scenarios, so it is approximated, always
on the side of "no plan" (never claims a plan that does not exist):

1. A dominating instance, O(H log H): the K largest protected VMs of the pool (K = the N largest
   per-host counts summed) into the surviving bins left when the N roomiest hosts fail. Every
   real scenario has fewer, smaller VMs and roomier bins, so a packing here is a packing there.
2. If that fails and the scenarios are few (at most `MAX_SCENARIOS`), each scenario exactly:
   every set of j ≤ N hosts holding protected VMs, plus the N − j roomiest other hosts.
3. Each packing is best-fit decreasing; a heuristic miss counts as no plan.

So in a large, nearly full pool the check can refuse a placement a perfect planner would allow;
it never lets through one that breaks a plan it had found.
"""

from __future__ import annotations

import bisect
import itertools
import math

from xetool.errors import XeError
from xetool.placement.memory import host_compute_free_memory_with_maximum_compression as free_of
from xetool.placement.memory import vm_compute_start_memory
from xetool.placement.snapshot import HostView, PoolView, VmView, protected_footprint

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

MAX_SCENARIOS = 512  # exact scenarios tried when the dominating instance does not pack


def ha_check_active(pool: PoolView) -> bool:
    return pool.ha_enabled and not pool.ha_allow_overcommit


def best_fit_decreasing(items_desc: Sequence[int], bins_asc: list[int]) -> bool:
    """Pack items (largest first) each into the tightest bin with room. Mutates `bins_asc`."""
    for size in items_desc:
        i = bisect.bisect_left(bins_asc, size)
        if i == len(bins_asc):
            return False
        rest = bins_asc.pop(i) - size
        bisect.insort(bins_asc, rest)
    return True


class HaState:
    """Free memory of the live hosts and the protected VMs on them, for one configuration,
    with the sorted lists the dominating instance needs computed once."""

    def __init__(self, free: dict[str, int], can_receive: dict[str, bool], prot: dict[str, list[int]]) -> None:
        self.free = free  # live host -> free bytes (negative once an arrival overfills it)
        self.can_receive = can_receive  # live host -> enabled (a disabled host takes no restart)
        self.prot = {h: sorted(v, reverse=True) for h, v in prot.items() if v}
        self.bins_asc = sorted(f for h, f in free.items() if can_receive[h])
        self.counts_desc = sorted((len(v) for v in self.prot.values()), reverse=True)
        self.items_desc = sorted((s for v in self.prot.values() for s in v), reverse=True)

    def with_arrival(self, host: str, need: int, protected: bool) -> HaState:
        free = dict(self.free)
        free[host] = free[host] - need
        prot = {h: list(v) for h, v in self.prot.items()}
        if protected:
            prot.setdefault(host, []).append(need)
        return HaState(free, self.can_receive, prot)


def ha_state(pool: PoolView, exclude: VmView | None = None) -> HaState:
    live = [h for h in pool.hosts if h.live]
    free = {}
    for h in live:
        load = pool.load_without(h.uuid, exclude) if exclude is not None else pool.load(h.uuid)
        free[h.uuid] = free_of(h, load)
    prot: dict[str, list[int]] = {}
    for vm in pool.protected_vms():
        if exclude is not None and vm.uuid == exclude.uuid:
            continue
        home = vm.hosts_charged()[0]
        if home in free:
            prot.setdefault(home, []).append(protected_footprint(vm))
    return HaState(free, {h.uuid: h.enabled for h in live}, prot)


def _dominating_packs(bins_asc: list[int], counts_desc: list[int], items_desc: list[int], n: int) -> bool:
    k = sum(counts_desc[:n])
    if k == 0:
        return True
    bins = bins_asc[:-n] if n < len(bins_asc) else []  # the N roomiest hosts fail
    return best_fit_decreasing(items_desc[:k], bins)


def _dominating_packs_after(state: HaState, host: str, need: int, protected: bool, n: int) -> bool:
    """The dominating instance of `state.with_arrival(...)`, from `state`'s sorted lists in
    O(H) rather than rebuilding them: this runs once per host in an explain table."""
    bins = list(state.bins_asc)
    if state.can_receive[host]:
        del bins[bisect.bisect_left(bins, state.free[host])]
        bisect.insort(bins, state.free[host] - need)
    counts, items = state.counts_desc, state.items_desc
    if protected:
        had = len(state.prot.get(host, ()))
        top = counts[: n + 1]
        if had and had in top:
            top = list(top)
            top[top.index(had)] = had + 1
        else:
            top = top + [1]
        counts = sorted(top, reverse=True)
        k = sum(counts[:n])
        items = sorted(items[:k] + [need], reverse=True)[:k]
    return _dominating_packs(bins, counts, items, n)


def _scenarios_pack(state: HaState, n: int, budget: int) -> bool | None:
    """Every N-failure scenario packed exactly; None when there are more than `budget`."""
    if n >= len(state.free):
        return not state.prot  # every live host fails: nothing can be restarted
    holders = sorted(state.prot)
    others = sorted(
        (h for h in state.free if h not in state.prot),
        key=lambda h: state.free[h] if state.can_receive[h] else -math.inf,
        reverse=True,
    )
    lo, hi = max(1, n - len(others)), min(n, len(holders))
    if sum(math.comb(len(holders), j) for j in range(lo, hi + 1)) > budget:
        return None
    all_bins = state.bins_asc
    for j in range(lo, hi + 1):
        filler = others[: n - j]
        for failed in itertools.combinations(holders, j):
            bins = list(all_bins)
            for h in itertools.chain(failed, filler):
                if state.can_receive[h]:
                    del bins[bisect.bisect_left(bins, state.free[h])]
            items = sorted((s for h in failed for s in state.prot[h]), reverse=True)
            if not best_fit_decreasing(items, bins):
                return False
    return True


def plan_exists(state: HaState, n: int, budget: int = MAX_SCENARIOS) -> bool:
    if n <= 0 or not state.prot:
        return True
    if _dominating_packs(state.bins_asc, state.counts_desc, state.items_desc, n):
        return True
    return bool(_scenarios_pack(state, n, budget))


def _base(pool: PoolView) -> tuple[Any, ...]:
    cached = pool._cache.get("ha_base")
    if cached is None:
        state = ha_state(pool)
        cached = pool._cache["ha_base"] = (state, plan_exists(state, pool.ha_host_failures_to_tolerate))
    return cached


def placement_preserves_ha_plan(vm: VmView, host: HostView, pool: PoolView) -> bool:
    """False only if a plan exists now and would not with `vm` started on `host`."""
    if not ha_check_active(pool) or not host.live:
        return True
    n = pool.ha_host_failures_to_tolerate
    known = pool.guests.get(vm.uuid)
    if known is not None and known.hosts_charged():
        state = ha_state(pool, exclude=known)
        now = plan_exists(state, n)
    else:
        state, now = _base(pool)
    if not now:
        return True
    need = vm_compute_start_memory(vm)
    if _dominating_packs_after(state, host.uuid, need, vm.ha_protected, n):
        return True
    after = state.with_arrival(host.uuid, need, vm.ha_protected)
    return bool(_scenarios_pack(after, n, MAX_SCENARIOS)) if after.prot else True


def assert_vm_placement_preserves_ha_plan(vm: VmView, host: HostView, pool: PoolView) -> None:
    """xapi's check_vm_preserves_ha_plan. A newly protected VM (restart priority without
    ha_always_run) and a placement of any VM both come down to one arrival on `host`."""
    if not placement_preserves_ha_plan(vm, host, pool):
        raise XeError("HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN")
