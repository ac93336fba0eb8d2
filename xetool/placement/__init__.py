"""Placement: pure decisions over a frozen snapshot of the pool (no store, no I/O but wlb).

  snapshot  VmView, HostView, PoolView (+ HostLoad sums), WlbConfig: what the master fills in
  memory    the overhead model; start memory; host free memory with maximum compression
  validate  validate_vcpus / _memory / _shadow_multiplier / _actions_after_crash
  checks    assert_can_boot_here, the per-host checks and their explain rows
  choose    choose_host_for_vm, placement_order, explain_placement, start_on
  report    the explain table (PlacementReport) and its text lines
  ha        the HA failover-plan check
  wlb       the external recommender (imported on demand: it pulls in subprocess and urllib)
"""

from xetool.placement.checks import assert_can_boot_here
from xetool.placement.choose import FirstChoice, choose_host_for_vm, explain_placement, placement_order, start_on
from xetool.placement.memory import vm_compute_memory_overhead, vm_compute_start_memory
from xetool.placement.snapshot import HostLoad, HostView, PoolView, VmView, WlbConfig

__all__ = [
    "FirstChoice", "HostLoad", "HostView", "PoolView", "VmView", "WlbConfig",
    "assert_can_boot_here", "choose_host_for_vm", "explain_placement", "placement_order", "start_on",
    "vm_compute_memory_overhead", "vm_compute_start_memory",
]
