"""The per-domain xenstore entries the toolstack writes, as xenopsd does for a domain (xapi
reference section 8; xen-api ocaml/xenopsd/xc/domain.ml `make` and xenops_server_xen.ml
`create_exn`): the domain's home with its permissions, platform flags and BIOS strings, the
guest-writable directories, the /vm/<uuid> back-link, xenopsd's private /xenops/domain/<domid>
tree, vCPU availability and the memory keys. tests/data/xenopsd-pv-domain-keys.txt lists them.

Everything written here lives under a path removed with the domain (`remove_domain_entries`):
/local/domain/<domid>, /vm/<uuid>/domains/<domid>, /xenops/domain/<domid>, /xapi/<uuid>.

Permission lists follow libxl: "ro" = n0 then r<domid> (readable by the guest), "rw" = n<domid>
(owned by the guest).
"""

from __future__ import annotations

import time
import uuid as uuidlib

from xetool.xenstore.client import XsClient, XsTransaction

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Mapping

# Created empty for the guest to write in (Domain.make's rw subdirectories, device/* included).
GUEST_RW_DIRS = ("data", "drivers", "feature", "attr", "xenserver/attr", "error", "vm-data", "messages", "control",
                 "hvmloader", "rrd", "device/vbd", "device/vif", "device/9pfs")
# xenopsd's own copy of each frontend's backend link, which the guest cannot touch.
XENOPS_DIRS = ("device", "device/vbd", "device/vif", "device/9pfs")
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


def xenops_home(domid: int) -> str:
    return f"/xenops/domain/{domid}"


def private_home(vm_uuid: str) -> str:
    """xenopsd's private data of a VM's devices and hotplug state (kept by uuid)."""
    return f"/xapi/{vm_uuid}"


def vm_uuid_of(xs: XsClient, domid: int) -> str:
    """The VM of a domain, from its `vm` link (/vm/<uuid>), as xenopsd's uuid_of_domid."""
    return (xs.read_or(f"{home(domid)}/vm") or "").rsplit("/", 1)[-1]


def write_domain_entries(xs: XsClient, domid: int, vm_uuid: str, name: str, hvm: bool,
                         platform: Mapping[str, str], bios_strings: Mapping[str, str],
                         xenstore_data: Mapping[str, str], vcpus_max: int, vcpus_at_startup: int,
                         weight: int, cap: int, initial_target_kib: int) -> None:
    """Domain make: everything before any device, in one transaction, retried on EAGAIN.
    `initial_target_kib` is the balloon target the reservation allows (create_exn's
    min(dynamic-max, reserved - overhead))."""
    h = home(domid)
    vm = f"/vm/{vm_uuid}"
    values: dict[str, str] = {
        f"{h}/vm": vm, f"{h}/name": name, f"{h}/unique-domain-id": str(uuidlib.uuid4()),
        f"{h}/domain-type": "hvm" if hvm else "pv", f"{h}/action-request": "poweroff",
        f"{h}/control/shutdown": "", f"{h}/control/platform-feature-multiprocessor-suspend": "1",
        f"{h}/control/platform-feature-xs_reset_watches": "1", f"{h}/control/has-vendor-device": "0",
        f"{vm}/uuid": vm_uuid, f"{vm}/name": name, f"{vm}/domains/{domid}": h,
        f"{vm}/domains/{domid}/create-time": str(time.monotonic_ns()),
        f"{h}/memory/initial-target": str(initial_target_kib), f"{h}/serial/0/limit": "65536",
        f"{h}/platform/vcpu/number": str(vcpus_max), f"{h}/platform/vcpu/current": str(vcpus_at_startup),
        f"{h}/platform/vcpu/weight": str(weight), f"{h}/platform/vcpu/cap": str(cap),
        f"{h}/platform/acpi_s3": platform.get("acpi_s3", "0"), f"{h}/platform/acpi_s4": platform.get("acpi_s4", "0"),
    }
    for key, value in platform.items():
        values[f"{h}/platform/{key}"] = value
    for key, value in bios_strings.items():  # every domain, PV too: the guest agent reads them
        values[f"{h}/bios-strings/{key}"] = value
    for key, value in xenstore_data.items():
        if key.startswith(("vm-data/", "FIST/")):
            values[f"{h}/{key}"] = value
    # Directories first, each with its permissions, so that what is written below them
    # inherits those permissions (xenstored copies a parent's list to a new child).
    dirs: list[tuple[str, list[str]]] = [(h, ro(domid)), (f"{h}/cpu", ro(domid)), (f"{h}/memory", ro(domid)),
                                         (f"{h}/device", ro(domid))]
    dirs += [(f"{h}/{d}", rw(domid)) for d in GUEST_RW_DIRS]
    dirs += [(xenops_home(domid), ["n0"])] + [(f"{xenops_home(domid)}/{d}", ["n0"]) for d in XENOPS_DIRS]

    # Added to what the hypervisor side made (on Xen, `xl create` has written the rings and
    # console already), never replacing it.
    xs.transaction(lambda t: write_tree(t, dirs, values))


def write_tree(t: XsTransaction, dirs: list[tuple[str, list[str]]], values: Mapping[str, str]) -> None:
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


def write_memory_reservation(xs: XsClient, domid: int, reservation_id: str, kib: int) -> None:
    """What squeezed records when a reservation is handed to the domain (transfer_reservation_to_domain)."""
    h = home(domid)
    xs.write_many({f"{h}/memory/initial-reservation": str(kib), f"{h}/memory/reservation-id": reservation_id})


def finish_build(xs: XsClient, domid: int) -> None:
    """The last step of a start: the domain is no longer half-built (xenopsd's action-request)."""
    xs.rm(f"{home(domid)}/action-request")


def remove_domain_entries(xs: XsClient, domid: int, vm_uuid: str) -> None:
    """What a destroyed domain leaves in xenstore: its home, xenopsd's private trees of it, its
    device model's node in dom0's tree, the backend halves of its devices, and its entry under
    /vm/<uuid> (remove_vm_entries takes /vm/<uuid> itself once the VM has no domain left)."""
    paths = [home(domid), xenops_home(domid), f"/local/domain/0/device-model/{domid}",
             f"/vm/{vm_uuid}/domains/{domid}", private_home(vm_uuid)]
    kinds = xs.ls("/local/domain/0/backend") if xs.exists("/local/domain/0/backend") else []
    paths += [f"/local/domain/0/backend/{kind}/{domid}" for kind in kinds]
    for path in paths:
        if xs.exists(path):
            xs.rm(path)


def remove_vm_entries(xs: XsClient, vm_uuid: str) -> None:
    """/vm/<uuid>, once the VM has no domain left on this host (libxl removes it on destroy)."""
    if xs.exists(f"/vm/{vm_uuid}"):
        xs.rm(f"/vm/{vm_uuid}")
