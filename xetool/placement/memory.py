"""The memory model xapi and xenopsd share (xapi-idl memory.ml, xapi memory_check.ml).

The model works in MiB (a page is 4 KiB, 256 pages a MiB, page counts rounded up to whole
MiB); the functions named after xapi's take and return bytes.
"""

from __future__ import annotations

from xetool.records import record

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from xetool.placement.snapshot import HostLoad, HostView, PoolView, VmView

KIB = 1024
MIB = 1024 * 1024
PAGES_PER_MIB = 256
VCPU_STRUCT_PAGES = 38  # per-vCPU Xen structures (CA-423172)


@record(frozen=True)
class DomainModel:
    """The fixed extras of one domain type, in MiB."""

    extra_internal_mib: int
    extra_external_mib: int


HVM_MODEL = DomainModel(1, 1)  # also PVH
PV_MODEL = DomainModel(0, 1)


def mib_of_bytes_used(n: int) -> int:
    """Bytes to MiB, rounding up: a partly used MiB is used."""
    return -(-n // MIB)


def mib_of_pages_used(pages: int) -> int:
    return -(-pages // PAGES_PER_MIB)


def shadow_mib(static_max_mib: int, vcpus: int, multiplier: float) -> int:
    # 256 pages per vCPU, plus the p2m map and the shadow pages (one page per MiB each).
    pages = PAGES_PER_MIB * vcpus + static_max_mib + static_max_mib
    return max(1, int(mib_of_pages_used(pages) * multiplier))


def overhead_mib(static_max_mib: int, vcpus: int, multiplier: float, hvm: bool) -> int:
    model = HVM_MODEL if hvm else PV_MODEL
    return (
        model.extra_internal_mib
        + model.extra_external_mib
        + shadow_mib(static_max_mib, vcpus, multiplier)
        + mib_of_pages_used(VCPU_STRUCT_PAGES * vcpus)
    )


def footprint_mib(target_mib: int, static_max_mib: int, vcpus: int, multiplier: float, hvm: bool) -> int:
    """What a domain needs on the host: its guest memory plus the overhead."""
    return target_mib + overhead_mib(static_max_mib, vcpus, multiplier, hvm)


def vm_compute_memory_overhead(vm: VmView) -> int:
    """VM.memory_overhead in bytes. Like xapi, the VM's shadow multiplier is used for every
    domain type (PV included), so the cached figure can exceed the start requirement."""
    mib = overhead_mib(mib_of_bytes_used(vm.memory_static_max), vm.vcpus_max, vm.hvm_shadow_multiplier, vm.hvm)
    return mib * MIB


def vm_compute_start_memory(vm: VmView) -> int:
    """Bytes the host must have free to start `vm`: dynamic_min + overhead, where the shadow
    multiplier is the VM's for HVM and 1.0 for PV (PV guests have no shadow tables)."""
    mult = vm.hvm_shadow_multiplier if vm.hvm else 1.0
    mib = footprint_mib(
        mib_of_bytes_used(vm.memory_dynamic_min), mib_of_bytes_used(vm.memory_static_max), vm.vcpus_max, mult, vm.hvm
    )
    return mib * MIB


def stored_overhead(vm: VmView) -> int:
    """VM.memory_overhead as recorded, or the model's figure when the record has none."""
    return vm.memory_overhead if vm.memory_overhead is not None else vm_compute_memory_overhead(vm)


def guest_footprint(vm: VmView) -> int:
    """One resident VM's share of its host under maximum compression (dynamic_min + overhead)."""
    return vm.memory_dynamic_min + stored_overhead(vm)


def host_compute_free_memory_with_maximum_compression(host: HostView, load: HostLoad) -> int:
    """total − host overhead − Σ(dynamic_min + overhead) of the guests in `load`, never < 0.
    Pass `PoolView.load_without(host, vm)` to leave the VM being placed out, as xapi does."""
    return max(0, host.memory_total - host.memory_overhead - load.footprint)


def vm_reservation_memory(vm: VmView) -> int:
    """Bytes the host's memory broker must find to start `vm`: dynamic_min + VM.memory_overhead
    (the bottom of its reservation range, host/vm_start.py), never less than the start memory."""
    return max(vm_compute_start_memory(vm), vm.memory_dynamic_min + vm_compute_memory_overhead(vm))


def host_free_memory(host: HostView, pool: PoolView, vm: VmView) -> int:
    """What placement's memory check may count on for `vm` on `host`: the broker's figure (free
    memory plus what balloonable guests could give back, less its reserve) less the starts queued
    there that it has not counted yet; the maximum-compression model until the broker reports."""
    if host.memory_free_computed is None:
        return host_compute_free_memory_with_maximum_compression(host, pool.load_without(host.uuid, vm))
    return max(0, host.memory_free_computed - pool.pending.get(host.uuid, 0))


def needed_memory(host: HostView, vm: VmView) -> int:
    """What the memory check asks of `host` for `vm`, in the terms of the figure it uses."""
    return vm_compute_start_memory(vm) if host.memory_free_computed is None else vm_reservation_memory(vm)


def memory_figures(host: HostView, pool: PoolView, vm: VmView) -> dict[str, int | str]:
    """The memory check's numbers for --dry-run (bytes): what it needs, what it counts on, and
    where that comes from (the broker's report: free memory, what balloonable guests could give
    back beyond the 72 MiB reserve, starts queued there), or "model" before the broker reports."""
    out: dict[str, int | str] = {"needed": needed_memory(host, vm), "available": host_free_memory(host, pool, vm)}
    if host.memory_free_computed is None:
        out["source"] = "model"
    else:
        out.update(source="broker", free=host.memory_free or 0, broker_available=host.memory_free_computed,
                   queued=pool.pending.get(host.uuid, 0))
    return out
