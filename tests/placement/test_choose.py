from __future__ import annotations

import random
from collections import Counter

import pytest
from placement_factory import host, vm

from xetool.errors import XeError
from xetool.placement.choose import (
    FirstChoice,
    choose_host_for_vm,
    explain_placement,
    host_values,
    placement_order,
    start_on,
)
from xetool.placement.memory import MIB
from xetool.placement.snapshot import PoolView


def roomy_pool(n: int = 4, **kw) -> PoolView:
    # host i has i GiB of guests: h0 is the roomiest
    hosts = [host(f"h{i}", mib=16384) for i in range(n)]
    guests = [vm(f"g{i}-{j}", mib=1024, memory_overhead=0, resident_on=f"h{i}") for i in range(n) for j in range(i)]
    return PoolView.build(hosts, guests, **kw)


def test_first_choice_takes_the_roomiest_host() -> None:
    assert choose_host_for_vm(vm(), roomy_pool(), FirstChoice()).host.uuid == "h0"


def test_seed_makes_the_order_reproducible_and_choice_matches_it() -> None:
    pool, v = roomy_pool(8), vm()
    a = placement_order(v, pool, random.Random(42))
    assert a == placement_order(v, pool, random.Random(42))
    assert sorted(s.host for s in a) == sorted(f"h{i}" for i in range(8))
    chosen = choose_host_for_vm(v, pool, random.Random(42))
    assert chosen.host.uuid == a[0].host and chosen.tried == a[:1]
    assert explain_placement(v, pool, random.Random(42)).chosen == a[0].host


def test_draw_is_biased_towards_index_zero_like_floor_n_u_squared() -> None:
    pool, v = roomy_pool(4), vm()
    rng = random.Random(7)
    picks = Counter(choose_host_for_vm(v, pool, rng).host.uuid for _ in range(20000))
    expected = {"h0": 0.5, "h1": 0.2071, "h2": 0.1589, "h3": 0.1340}
    for h, p in expected.items():
        assert abs(picks[h] / 20000 - p) < 0.015


def test_categories_definite_before_probable_before_possible() -> None:
    # a: room for static_max (definite); b: only for dynamic_max; c: only between dmin and dmax
    v = vm("v", mib=4096, dmin=1024, memory_overhead=0, memory_dynamic_max=2048 * MIB)
    pool = PoolView.build([host("c", mib=1500), host("b", mib=3000), host("a", mib=5000)], [])
    vals = {h.uuid: (d, p, q) for h, d, p, q in host_values(v, pool)}
    assert vals["a"][0] >= 0 and vals["b"][0] < 0 <= vals["b"][1] and vals["c"][1] < 0 <= vals["c"][2]
    order = placement_order(v, pool, random.Random(3))
    assert [(s.host, s.category) for s in order] == [("a", "definite"), ("b", "probable"), ("c", "possible")]


def test_possible_value_scales_between_dynamic_min_and_max() -> None:
    v = vm("v", mib=2048, dmin=1024, memory_overhead=0)
    pool = PoolView.build([host("h", mib=1536)], [])
    (_, _, _, possible), = host_values(v, pool)
    assert possible == 500
    # below dynamic_min: in no category at all, never tried
    pool = PoolView.build([host("h", mib=1000)], [])
    assert placement_order(v, pool, random.Random()) == ()


def test_coordinator_bias_halves_the_masters_value() -> None:
    v = vm(mib=1024, memory_overhead=0)
    hosts = [host("m", mib=4097, is_master=True), host("s", mib=3000)]
    vals = {h.uuid: d for h, d, _, _ in host_values(v, PoolView.build(hosts, []))}
    assert vals["m"] == (3073 * MIB - 1) // 2
    assert placement_order(v, PoolView.build(hosts, []), FirstChoice())[0].host == "s"
    unbiased = PoolView.build(hosts, [], coordinator_bias=False)
    assert placement_order(v, unbiased, FirstChoice())[0].host == "m"


def test_master_with_zero_room_stays_in_its_category() -> None:
    v = vm(mib=1024, memory_overhead=0)
    (h, d, _, _), = host_values(v, PoolView.build([host("m", mib=1024, is_master=True)], []))
    assert d == 0  # (0 - 1) / 2 truncates to 0, as OCaml's integer division


def test_affinity_host_first_if_it_passes() -> None:
    pool = roomy_pool(4)
    assert choose_host_for_vm(vm(affinity="h3"), pool, FirstChoice()).host.uuid == "h3"
    order = placement_order(vm(affinity="h3"), pool, FirstChoice())
    assert order[0].category == "affinity" and "h3" not in [s.host for s in order[1:]]
    hosts = [host("h0"), host("h1", enabled=False)]
    p = choose_host_for_vm(vm(affinity="h1"), PoolView.build(hosts, []), FirstChoice())
    assert p.host.uuid == "h0" and [s.host for s in p.tried] == ["h1", "h0"]


def test_failed_hosts_are_skipped_and_not_redrawn() -> None:
    hosts = [host("a", live=False), host("b", enabled=False), host("c", srs=frozenset({"sr"}))]
    p = choose_host_for_vm(vm(required_srs=("sr",)), PoolView.build(hosts, []), random.Random(1))
    assert p.host.uuid == "c"
    assert len({s.host for s in p.tried}) == len(p.tried)


def test_evacuating_host_is_not_chosen() -> None:
    hosts = [host("a", current_operations=frozenset({"evacuate"})), host("b", mib=2048)]
    assert choose_host_for_vm(vm(), PoolView.build(hosts, []), FirstChoice()).host.uuid == "b"


def test_no_hosts_available_carries_the_table() -> None:
    hosts = [host("a", live=False), host("b", mib=512, name_label="small"), host("c", cpus=1)]
    with pytest.raises(XeError) as ei:
        choose_host_for_vm(vm(vcpus=2), PoolView.build(hosts, []), random.Random(0))
    err = ei.value
    assert err.code == "NO_HOSTS_AVAILABLE" and err.params == {}
    report = err.report
    lines = report.no_hosts_lines()
    assert lines[0] == "There are no suitable hosts to start this VM on."
    assert "a     : Cannot start here [Host down]" in lines
    assert "small : Cannot start here [Not enough free memory (needs 1036 MiB, has 512 MiB)]" in lines
    assert "c     : Cannot start here [Not enough CPUs (VM needs 2, but host has 1)]" in lines
    assert report.failure_counts() == {"live": 1, "memory": 1, "pcpus": 1}
    assert report.to_json()["refused_by"] == {"live": 1, "memory": 1, "pcpus": 1}


def test_invalid_vm_gets_its_own_error_not_no_hosts() -> None:
    with pytest.raises(XeError) as ei:
        choose_host_for_vm(vm(hvm_shadow_multiplier=0.5), roomy_pool())
    assert ei.value.code == "INVALID_VALUE"


def test_memory_check_is_always_on() -> None:
    # xapi would retry without the memory check; xetool refuses with the table.
    with pytest.raises(XeError) as ei:
        choose_host_for_vm(vm(mib=4096), PoolView.build([host("a", mib=2048)], []))
    assert ei.value.code == "NO_HOSTS_AVAILABLE"


def test_start_on_is_strict() -> None:
    hosts = [host("a", current_operations=frozenset({"evacuate"})), host("b", mib=512), host("c")]
    pool = PoolView.build(hosts, [])
    for uuid, code in (("a", "HOST_EVACUATE_IN_PROGRESS"), ("b", "HOST_NOT_ENOUGH_FREE_MEMORY"), ("x", "HANDLE_INVALID")):
        with pytest.raises(XeError) as ei:
            start_on(vm(), uuid, pool)
        assert ei.value.code == code
    assert start_on(vm(), "c", pool).host.uuid == "c"


def test_dry_run_report_lists_order_and_chosen() -> None:
    hosts = [host("a", live=False), host("b")]
    rep = explain_placement(vm(), PoolView.build(hosts, []), FirstChoice())
    assert rep.chosen == "b"
    assert [s.host for s in rep.order] == ["a", "b"]
    assert rep.order_lines()[1].endswith("<- chosen")
