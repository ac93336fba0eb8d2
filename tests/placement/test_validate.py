from __future__ import annotations

import math

import pytest
from placement_factory import vm

from xetool.errors import XeError
from xetool.placement.validate import (
    check_vm_parameters,
    coerce_memory,
    validate_actions_after_crash,
    validate_basic_parameters,
    validate_memory,
    validate_shadow_multiplier,
    validate_vcpus,
)


def raises(fn, v) -> XeError:
    with pytest.raises(XeError) as ei:
        fn(v)
    return ei.value


def test_vcpus() -> None:
    e = raises(validate_vcpus, vm(vcpus_max=0, vcpus_at_startup=0))
    assert (e.code, e.params) == ("INVALID_VALUE", {"field": "VCPUs_max", "value": "0"})
    # at start, the seed-era check comes first and names the VM
    e = raises(validate_basic_parameters, vm("v0", vcpus_max=0, vcpus_at_startup=0))
    assert (e.code, e.params) == ("VM_NO_VCPUS", {"vm": "v0"})
    e = raises(validate_vcpus, vm(vcpus_max=2, vcpus_at_startup=0))
    assert (e.code, e.params) == ("INVALID_VALUE", {"field": "VCPUs-at-startup", "value": "0"})
    e = raises(validate_vcpus, vm(vcpus_max=2, vcpus_at_startup=3))
    assert e.code == "VALUE_NOT_SUPPORTED"
    assert e.params == {"field": "VCPUs-at-startup", "value": "3", "reason": "value greater than VCPUs-max"}
    validate_vcpus(vm(vcpus_max=4, vcpus_at_startup=2))


def test_memory_is_permissive_but_refuses_inverted_ranges() -> None:
    validate_memory(vm(mib=1024, dmin=512))
    # dynamic range outside the static one is coerced, not refused
    odd = vm(mib=1024, dmin=512, memory_dynamic_max=4096 * 2**20)
    validate_memory(odd)
    assert coerce_memory(odd)[2] == 1024 * 2**20
    e = raises(validate_memory, vm(mib=512, memory_static_min=1024 * 2**20))
    assert e.code == "MEMORY_CONSTRAINT_VIOLATION"
    e = raises(validate_memory, vm(mib=1024, dmin=512, memory_dynamic_max=256 * 2**20))
    assert e.params == {"constraint": "dynamic_min <= dynamic_max"}


@pytest.mark.parametrize("m", [0.5, 0.0, -1.0, math.nan])
def test_shadow_multiplier_below_one_is_invalid(m: float) -> None:
    e = raises(validate_shadow_multiplier, vm(hvm_shadow_multiplier=m))
    assert (e.code, e.params["field"]) == ("INVALID_VALUE", "HVM_shadow_multiplier")


def test_actions_after_crash() -> None:
    for ok in ("destroy", "restart", "preserve"):
        validate_actions_after_crash(vm(actions_after_crash=ok, hvm=True))
    validate_actions_after_crash(vm(actions_after_crash="coredump_and_restart"))
    e = raises(validate_actions_after_crash, vm(actions_after_crash="rename_restart"))
    assert e.params["field"] == "VM.actions_after_crash" and e.code == "VALUE_NOT_SUPPORTED"
    assert "leak a domain" in e.params["reason"]
    e = raises(validate_actions_after_crash, vm(actions_after_crash="coredump_and_destroy", hvm=True))
    assert e.params["reason"] == "cannot invoke a coredump of an HVM, PVH or PV-in-PVH domain"
    e = raises(validate_actions_after_crash, vm(actions_after_crash="explode"))
    assert e.code == "INVALID_VALUE"


def test_basic_parameters_run_in_xapi_order() -> None:
    # both vCPUs and the multiplier are wrong: vCPUs is reported
    e = raises(validate_basic_parameters, vm(vcpus_max=2, vcpus_at_startup=0, hvm_shadow_multiplier=0.1))
    assert e.params["field"] == "VCPUs-at-startup"


@pytest.mark.parametrize("kw,code,params", [
    (dict(vcpus_max=0, vcpus_at_startup=0), "VM_NO_VCPUS", {"vm": "v1"}),
    (dict(vcpus_max=-3, vcpus_at_startup=1), "VM_NO_VCPUS", {"vm": "v1"}),
    (dict(vcpus_max=65, vcpus_at_startup=1), "VM_TOOMANY_VCPUS", {"vm": "v1"}),
    (dict(memory_static_max=16 * 2**20 - 1, memory_static_min=0, memory_dynamic_min=0,
          memory_dynamic_max=1), "VM_MEMORY_SIZE_TOO_LOW", {"vm": "v1"}),
    (dict(vbd_devices=(("vbd-a", "0"), ("vbd-b", "1"), ("vbd-c", "1"))), "VM_DUPLICATE_VBD_DEVICE",
     {"vm": "v1", "vbd": "vbd-c", "device": "xvdb"}),
    (dict(hvm=True, vbd_devices=(("vbd-a", "0"), ("vbd-b", "0"))), "VM_DUPLICATE_VBD_DEVICE",
     {"vm": "v1", "vbd": "vbd-b", "device": "hda"}),
])
def test_seed_era_start_checks(kw, code, params) -> None:
    e = raises(check_vm_parameters, vm("v1", **kw))
    assert (e.code, e.params) == (code, params)
    assert raises(validate_basic_parameters, vm("v1", **kw)).code == code


def test_seed_era_checks_pass_at_the_limits() -> None:
    check_vm_parameters(vm("v", vcpus=64, memory_static_max=16 * 2**20, memory_static_min=0, memory_dynamic_min=0,
                           memory_dynamic_max=16 * 2**20, vbd_devices=(("a", "0"), ("b", "1"), ("c", "3"))))
