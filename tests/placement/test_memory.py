from __future__ import annotations

from placement_factory import host, vm

from xetool.placement.memory import (
    MIB,
    host_compute_free_memory_with_maximum_compression,
    overhead_mib,
    shadow_mib,
    vm_compute_memory_overhead,
    vm_compute_start_memory,
)
from xetool.placement.snapshot import PoolView


def test_worked_example_hvm() -> None:
    v = vm(mib=4096, dmin=2048, vcpus=2, hvm=True)
    assert shadow_mib(4096, 2, 1.0) == 34
    assert vm_compute_memory_overhead(v) == 37 * MIB
    assert vm_compute_start_memory(v) == 2085 * MIB


def test_worked_example_pv() -> None:
    v = vm(mib=1024, dmin=512, vcpus=1)
    assert shadow_mib(1024, 1, 1.0) == 9
    assert vm_compute_memory_overhead(v) == 11 * MIB
    assert vm_compute_start_memory(v) == 523 * MIB


def test_shadow_multiplier_applies_to_pv_overhead_but_not_pv_start_memory() -> None:
    v = vm(mib=1024, dmin=512, hvm_shadow_multiplier=2.0)
    assert vm_compute_memory_overhead(v) == (1 + 18 + 1) * MIB  # xapi: VM's multiplier for all types
    assert vm_compute_start_memory(v) == 523 * MIB  # PV starts with multiplier 1.0


def test_hvm_start_memory_uses_the_multiplier() -> None:
    v = vm(mib=4096, dmin=2048, vcpus=2, hvm=True, hvm_shadow_multiplier=1.5)
    assert vm_compute_start_memory(v) == (2048 + 1 + 1 + 51 + 1) * MIB


def test_shadow_is_at_least_one_mib_and_vcpu_term_rounds_up() -> None:
    assert shadow_mib(0, 0, 1.0) == 1
    assert overhead_mib(0, 7, 1.0, hvm=False) == 1 + 7 + 2  # ceil(38*7/256) = 2


def test_byte_sizes_round_up_to_whole_mib() -> None:
    v = vm(mib=1024, dmin=512)
    odd = type(v)(**{**v.__dict__, "memory_dynamic_min": 512 * MIB + 1})
    assert vm_compute_start_memory(odd) == 524 * MIB


def test_host_free_memory_excludes_the_vm_itself_and_clamps() -> None:
    h = host("h", mib=4096, overhead=512)
    a = vm("a", mib=1024, memory_overhead=11 * MIB, resident_on="h")
    b = vm("b", mib=512, memory_overhead=7 * MIB, scheduled_to_be_resident_on="h")
    c = vm("c", mib=2048, memory_overhead=20 * MIB)  # halted: not counted
    pool = PoolView.build([h], [a, b, c])
    free = host_compute_free_memory_with_maximum_compression
    assert free(h, pool.load("h")) == (4096 - 512 - 1035 - 519) * MIB
    assert free(h, pool.load_without("h", b)) == (4096 - 512 - 1035) * MIB
    assert free(h, pool.load_without("h", c)) == (4096 - 512 - 1035 - 519) * MIB
    big = vm("big", mib=8192, memory_overhead=0, resident_on="h")
    assert free(h, PoolView.build([h], [big]).load("h")) == 0


def test_migrating_vm_is_charged_on_both_hosts() -> None:
    g = vm("g", mib=1024, memory_overhead=MIB, resident_on="a", scheduled_to_be_resident_on="b")
    pool = PoolView.build([host("a"), host("b")], [g])
    assert pool.load("a").footprint == pool.load("b").footprint == 1025 * MIB
