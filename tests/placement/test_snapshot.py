"""The two ways to fill a PoolView give the same decisions."""

from __future__ import annotations

import random

from placement_factory import host, vm

from xetool.placement import HostLoad, PoolView, choose_host_for_vm, explain_placement
from xetool.placement.checks import assert_can_boot_here
from xetool.placement.memory import MIB


def guests():
    out = []
    for i in range(30):
        out.append(vm(f"g{i}", mib=512 * (1 + i % 4), dmin=256 * (1 + i % 4), memory_overhead=(i % 5) * MIB,
                      resident_on=f"h{i % 3}", ha_restart_priority="restart" if i % 7 == 0 else ""))
    return out


def test_precomputed_sums_match_build() -> None:
    hosts = [host(f"h{i}", mib=16384) for i in range(3)]
    built = PoolView.build(hosts, guests())
    # what one SQL GROUP BY over resident_on gives, plus only the protected VMs
    sums: dict[str, list[int]] = {}
    for g in guests():
        a = sums.setdefault(g.resident_on, [0] * 6)
        for i, x in enumerate((1, g.memory_overhead, g.memory_static_min, g.memory_dynamic_min,
                               g.memory_dynamic_max, g.memory_static_max)):
            a[i] += x
    direct = PoolView(hosts=tuple(hosts), loads={h: HostLoad(*a) for h, a in sums.items()},
                      guests={g.uuid: g for g in guests() if g.ha_protected})
    assert dict(built.loads) == dict(direct.loads)
    assert {v.uuid for v in built.protected_vms()} == {v.uuid for v in direct.protected_vms()}
    v = vm("new", mib=2048, dmin=1024)
    for seed in range(5):
        assert (choose_host_for_vm(v, built, random.Random(seed)).host
                == choose_host_for_vm(v, direct, random.Random(seed)).host)
    assert explain_placement(v, built, random.Random(0)) == explain_placement(v, direct, random.Random(0))


def test_keep_only_protected_guests() -> None:
    pool = PoolView.build([host("h0")], guests(), keep_all_guests=False)
    assert all(g.ha_protected for g in pool.guests.values()) and pool.guests


def test_vm_already_scheduled_is_not_counted_twice() -> None:
    # a retried start: the VM is already scheduled on h (its own share must not count)
    v = vm("v", mib=3000, memory_overhead=12 * MIB, scheduled_to_be_resident_on="h")
    pool = PoolView.build([host("h", mib=3100)], [v])
    assert_can_boot_here(v, pool.host("h"), pool)
    ha_pool = PoolView.build([host("h", mib=3100), host("k", mib=3100)], [v], ha_enabled=True,
                             ha_host_failures_to_tolerate=1)
    assert_can_boot_here(v, ha_pool.host("h"), ha_pool)
