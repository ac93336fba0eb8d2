from __future__ import annotations

import pytest
from placement_factory import host, vm

from xetool.errors import XeError
from xetool.placement.checks import CHECK_NAMES, VmFacts, assert_can_boot_here, explain_host
from xetool.placement.memory import MIB
from xetool.placement.snapshot import PoolView

SR, NET = "sr-1", "net-1"


def good_host(uuid: str = "h", **kw):
    kw.setdefault("srs", frozenset({SR}))
    kw.setdefault("networks", frozenset({NET}))
    return host(uuid, **kw)


def needy(**kw):
    kw.setdefault("required_srs", (SR,))
    kw.setdefault("required_networks", (NET,))
    return vm("v", mib=1024, vcpus=2, hvm=True, **kw)


def error_of(v, h, pool=None, **kw) -> XeError:
    with pytest.raises(XeError) as ei:
        assert_can_boot_here(v, h, pool or PoolView.build([h], []), **kw)
    return ei.value


def test_passes_on_a_good_host() -> None:
    h = good_host()
    assert_can_boot_here(needy(), h, PoolView.build([h], []))


@pytest.mark.parametrize(
    "host_kw, vm_kw, code, params",
    [
        ({"live": False}, {}, "HOST_NOT_LIVE", {}),
        ({"enabled": False}, {}, "HOST_DISABLED", {"host": "h"}),
        ({"srs": frozenset()}, {}, "VM_REQUIRES_SR", {"vm": "v", "sr": SR}),
        ({"networks": frozenset()}, {}, "VM_REQUIRES_NETWORK", {"vm": "v", "network": NET}),
        ({"capabilities": frozenset({"xen-3.0-x86_64"})}, {}, "VM_HVM_REQUIRED", {"vm": "v"}),
        ({"mib": 1000}, {}, "HOST_NOT_ENOUGH_FREE_MEMORY", {"needed": str(1037 * MIB), "available": str(1000 * MIB)}),
        ({"cpus": 1}, {}, "HOST_NOT_ENOUGH_PCPUS", {"vcpus": "2", "pcpus": "1"}),
        ({}, {"vcpus_at_startup": 0}, "INVALID_VALUE", {"field": "VCPUs-at-startup", "value": "0"}),
    ],
)
def test_each_check_raises_its_registry_error(host_kw, vm_kw, code, params) -> None:
    e = error_of(needy(**vm_kw), good_host(**host_kw))
    assert (e.code, e.params) == (code, params)


def test_first_failure_in_the_seeds_order() -> None:
    h = good_host(live=False, enabled=False, srs=frozenset(), cpus=1)
    assert error_of(needy(), h).code == "HOST_NOT_LIVE"
    h = good_host(enabled=False, srs=frozenset(), cpus=1)
    assert error_of(needy(), h).code == "HOST_DISABLED"
    h = good_host(networks=frozenset(), mib=10, cpus=1)
    assert error_of(needy(), h).code == "VM_REQUIRES_NETWORK"
    # validations come before every host check
    assert error_of(needy(vcpus_max=0, vcpus_at_startup=0), good_host(live=False)).code == "VM_NO_VCPUS"


def test_memory_check_can_be_disabled() -> None:
    h = good_host(mib=100)
    assert_can_boot_here(needy(), h, PoolView.build([h], []), do_memory_check=False)


def test_vcpu_unrestricted_platform_flag() -> None:
    h = good_host(cpus=1)
    assert_can_boot_here(needy(platform={"vcpu-unrestricted": "true"}), h, PoolView.build([h], []))


def test_control_domain_only_on_its_affinity_host_even_if_disabled() -> None:
    a, b = good_host("a", enabled=False), good_host("b")
    pool = PoolView.build([a, b], [])
    dom0 = needy(is_control_domain=True, affinity="a")
    assert_can_boot_here(dom0, a, pool)
    e = error_of(dom0, b, pool)
    assert e.code == "OPERATION_NOT_ALLOWED"


def test_shared_network_needs_no_pif() -> None:
    h = good_host(networks=frozenset())
    pool = PoolView.build([h], [], shared_networks=frozenset({NET}))
    assert_can_boot_here(needy(), h, pool)


def test_memory_counts_resident_and_scheduled_guests() -> None:
    h = good_host(mib=4096, overhead=1024)
    guests = [vm("r", mib=1024, memory_overhead=MIB, resident_on="h"),
              vm("s", mib=1024, memory_overhead=MIB, scheduled_to_be_resident_on="h")]
    e = error_of(needy(), h, PoolView.build([h], guests))
    assert e.params == {"needed": str(1037 * MIB), "available": str((4096 - 1024 - 2050) * MIB)}


def test_explain_reports_every_check_with_reasons_and_numbers() -> None:
    h = good_host(enabled=False, srs=frozenset(), mib=1000, cpus=1, current_operations=frozenset({"evacuate"}))
    rows = explain_host(VmFacts.of(needy()), h, PoolView.build([h], []))
    names = [r.name for r in rows]
    assert names == [n for n in CHECK_NAMES if n != "control-domain"]
    failed = {r.name: r.reason for r in rows if not r.passed}
    assert failed == {
        "enabled": "Host disabled (use 'xetool host-enable' to re-enable)",
        "evacuate": "Host is being evacuated",
        "srs": f"VM requires access to SR: {SR}",
        "memory": "Not enough free memory (needs 1037 MiB, has 1000 MiB)",
        "pcpus": "Not enough CPUs (VM needs 2, but host has 1)",
    }
    down = explain_host(VmFacts.of(needy()), good_host(live=False), PoolView.build([], []))
    assert [r.reason for r in down if not r.passed] == ["Host down"]
