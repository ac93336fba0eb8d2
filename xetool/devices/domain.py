"""The per-domain xenstore entries the toolstack writes (xapi reference section 8, libxl's
domain make): the domain's home with its permissions, platform flags and BIOS strings, the
guest-writable directories, vCPU availability and the memory range.

Permission lists follow libxl: "ro" = n0 then r<domid> (readable by the guest), "rw" = n<domid>
(owned by the guest).
"""

from __future__ import annotations

import uuid as uuidlib

from xetool.xenstore.client import XsClient

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Mapping

GUEST_RW_DIRS = ("data", "drivers", "feature", "attr", "error", "vm-data", "messages", "control", "device/vbd", "device/vif")
GENERIC_BIOS_STRINGS = {
    "bios-vendor": "Xen", "bios-version": "", "system-manufacturer": "Xen", "system-product-name": "HVM domU",
    "system-version": "", "system-serial-number": "", "baseboard-manufacturer": "", "baseboard-product-name": "",
    "baseboard-version": "", "baseboard-serial-number": "", "baseboard-asset-tag": "", "baseboard-location-in-chassis": "",
    "enclosure-asset-tag": "", "hp-rombios": "", "oem-1": "Xen", "oem-2": "MS_VM_CERT/SHA1/bdbeb6e0a816d43fa6d3fe8aaef04c2bad9d3e3d",
}


def home(domid: int) -> str:
    return f"/local/domain/{domid}"


def ro(domid: int) -> list[str]:
    return ["n0", f"r{domid}"]


def rw(domid: int) -> list[str]:
    return [f"n{domid}"]


def write_domain_entries(xs: XsClient, domid: int, vm_uuid: str, name: str, hvm: bool,
                         platform: Mapping[str, str], bios_strings: Mapping[str, str],
                         xenstore_data: Mapping[str, str], vcpus: int, weight: int, cap: int) -> None:
    """Domain make: everything before any device, in one transaction, retried on EAGAIN."""
    h = home(domid)
    values: dict[str, str] = {
        f"{h}/vm": f"/vm/{vm_uuid}", f"{h}/name": name, f"{h}/unique-domain-id": str(uuidlib.uuid4()),
        f"{h}/domain-type": "hvm" if hvm else "pv", f"{h}/action-request": "poweroff",
        f"{h}/control/shutdown": "", f"{h}/control/platform-feature-multiprocessor-suspend": "1",
        f"{h}/control/platform-feature-xs_reset_watches": "1",
        f"/vm/{vm_uuid}/uuid": vm_uuid, f"/vm/{vm_uuid}/name": name, f"/vm/{vm_uuid}/domains/{domid}": h,
        f"{h}/platform/vcpu/number": str(vcpus), f"{h}/platform/vcpu/current": str(vcpus),
        f"{h}/platform/vcpu/weight": str(weight), f"{h}/platform/vcpu/cap": str(cap),
        f"{h}/platform/acpi_s3": platform.get("acpi_s3", "0"), f"{h}/platform/acpi_s4": platform.get("acpi_s4", "0"),
    }
    for key, value in platform.items():
        values[f"{h}/platform/{key}"] = value
    if hvm:
        values[f"{h}/hvmloader"] = ""
        for key, value in bios_strings.items():
            values[f"{h}/bios-strings/{key}"] = value
    for key, value in xenstore_data.items():
        if key.startswith(("vm-data/", "FIST/")):
            values[f"{h}/{key}"] = value
    # Directories first, each with its permissions, so that what is written below them
    # inherits those permissions (xenstored copies a parent's list to a new child).
    dirs: list[tuple[str, list[str]]] = [(h, ro(domid)), (f"{h}/cpu", ro(domid)), (f"{h}/memory", ro(domid)),
                                         (f"{h}/device", ro(domid))]
    dirs += [(f"{h}/{d}", rw(domid)) for d in GUEST_RW_DIRS]

    # Added to what the hypervisor side made (on Xen, `xl create` has written the rings and
    # console already), never replacing it.
    xs.transaction(lambda t: write_tree(t, dirs, values))


def write_tree(t, dirs: list[tuple[str, list[str]]], values: Mapping[str, str]) -> None:  # type: ignore[no-untyped-def]
    """Inside a transaction: each directory (an empty value; what it holds stays) with its
    permissions, then the values below them, which inherit those permissions."""
    t.write_all(values, dirs)


def write_vcpu_availability(xs: XsClient, domid: int, vcpus_max: int) -> None:
    """cpu/N/availability for every possible vCPU, offline until marked online."""
    h = home(domid)
    xs.write_many({f"{h}/cpu/{n}/availability": "offline" for n in range(vcpus_max)})


def set_cpus_online(xs: XsClient, domid: int, vcpus_at_startup: int, vcpus_max: int) -> None:
    h = home(domid)
    xs.write_many({f"{h}/cpu/{n}/availability": "online" if n < vcpus_at_startup else "offline" for n in range(vcpus_max)})


def write_memory_range(xs: XsClient, domid: int, dynamic_min_kib: int, dynamic_max_kib: int) -> None:
    h = home(domid)
    xs.write_many({f"{h}/memory/dynamic-min": str(dynamic_min_kib), f"{h}/memory/dynamic-max": str(dynamic_max_kib)})


def finish_build(xs: XsClient, domid: int) -> None:
    """The last step of a start: the domain is no longer half-built (xenopsd's action-request)."""
    xs.rm(f"{home(domid)}/action-request")


def remove_domain_entries(xs: XsClient, domid: int, vm_uuid: str) -> None:
    """What a destroyed domain leaves in xenstore: its home, its device model's node in dom0's
    tree, the backend halves of its devices, and its entry under /vm/<uuid>."""
    paths = [home(domid), f"/local/domain/0/device-model/{domid}", f"/vm/{vm_uuid}/domains/{domid}"]
    kinds = xs.ls("/local/domain/0/backend") if xs.exists("/local/domain/0/backend") else []
    paths += [f"/local/domain/0/backend/{kind}/{domid}" for kind in kinds]
    for path in paths:
        if xs.exists(path):
            xs.rm(path)


def remove_vm_entries(xs: XsClient, vm_uuid: str) -> None:
    """/vm/<uuid>, once the VM has no domain left on this host (libxl removes it on destroy)."""
    if xs.exists(f"/vm/{vm_uuid}"):
        xs.rm(f"/vm/{vm_uuid}")
