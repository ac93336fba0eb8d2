"""validate_basic_parameters: the VM-level checks run before any host is looked at (xapi
xapi_vm_helpers.ml), with xapi's errors and parameter values."""

from __future__ import annotations

from xetool.errors import XeError
from xetool.placement.snapshot import VmView

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    pass

CRASH_ACTIONS = frozenset(
    {"destroy", "restart", "preserve", "rename_restart", "coredump_and_destroy", "coredump_and_restart"}
)
CRASH_FIELD = "VM.actions_after_crash"


def check_vm_parameters(vm: VmView) -> None:
    """The seed-era start checks (xapi's vmops check_vm_parameters), in its order: at least one
    vCPU, not too many, enough memory to start, and no two VBDs on one guest device."""
    from xetool.limits import VCPUS_MAX, VM_MEMORY_MIN

    if vm.vcpus_max <= 0:
        raise XeError("VM_NO_VCPUS", vm.uuid)
    if vm.vcpus_max > VCPUS_MAX:
        raise XeError("VM_TOOMANY_VCPUS", vm.uuid)
    if vm.memory_static_max < VM_MEMORY_MIN:
        raise XeError("VM_MEMORY_SIZE_TOO_LOW", vm.uuid)
    seen: set[str] = set()
    for vbd, userdevice in vm.vbd_devices:
        number = str(int(userdevice)) if userdevice.isdigit() else userdevice
        if number in seen:
            raise XeError("VM_DUPLICATE_VBD_DEVICE", vm.uuid, vbd, _guest_device(number, vm.hvm))
        seen.add(number)


def _guest_device(userdevice: str, hvm: bool) -> str:
    """The device the guest sees (xvda, hdb), as xapi names it in the error; imported only on
    this error path (the devices package is not pure)."""
    if not userdevice.isdigit():
        return userdevice
    from xetool.devices.vbd import device_name

    return device_name(int(userdevice), hvm)


def validate_vcpus(vm: VmView) -> None:
    if vm.vcpus_max < 1:
        raise XeError("INVALID_VALUE", "VCPUs_max", vm.vcpus_max)
    if vm.vcpus_at_startup < 1:
        raise XeError("INVALID_VALUE", "VCPUs-at-startup", vm.vcpus_at_startup)
    if vm.vcpus_at_startup > vm.vcpus_max:
        raise XeError("VALUE_NOT_SUPPORTED", "VCPUs-at-startup", vm.vcpus_at_startup, "value greater than VCPUs-max")


def validate_memory(vm: VmView) -> None:
    """Permissive, as xapi at start: only an inverted static or dynamic range fails. (xapi
    raises with no parameter; naming the broken constraint costs nothing and helps.)"""
    if vm.memory_static_max < vm.memory_static_min:
        raise XeError("MEMORY_CONSTRAINT_VIOLATION", "static_min <= static_max")
    if vm.memory_dynamic_max < vm.memory_dynamic_min:
        raise XeError("MEMORY_CONSTRAINT_VIOLATION", "dynamic_min <= dynamic_max")


def coerce_memory(vm: VmView) -> tuple[int, int, int, int]:
    """xapi's Vm_memory_constraints.transform: the dynamic range clamped into the static one.
    Nothing is written back; placement itself uses the recorded dynamic_min, as xapi does."""
    lo, hi = vm.memory_static_min, vm.memory_static_max
    dmin = min(max(vm.memory_dynamic_min, lo), hi)
    dmax = min(max(vm.memory_dynamic_max, lo), hi)
    return lo, dmin, max(dmin, dmax), hi


def validate_shadow_multiplier(vm: VmView) -> None:
    # `not >=` also refuses NaN.
    if not vm.hvm_shadow_multiplier >= 1.0:
        raise XeError("INVALID_VALUE", "HVM_shadow_multiplier", vm.hvm_shadow_multiplier)


def validate_actions_after_crash(vm: VmView) -> None:
    action = vm.actions_after_crash
    if action not in CRASH_ACTIONS:
        raise XeError("INVALID_VALUE", CRASH_FIELD, action)
    if action == "rename_restart":
        raise XeError(
            "VALUE_NOT_SUPPORTED", CRASH_FIELD, action,
            "option would leak a domain; VMs and not domains are managed by this API",
        )
    if action.startswith("coredump_") and vm.hvm:
        raise XeError(
            "VALUE_NOT_SUPPORTED", CRASH_FIELD, action, "cannot invoke a coredump of an HVM, PVH or PV-in-PVH domain"
        )


def validate_basic_parameters(vm: VmView) -> None:
    check_vm_parameters(vm)
    validate_vcpus(vm)
    validate_memory(vm)
    validate_shadow_multiplier(vm)
    validate_actions_after_crash(vm)
