"""Small builders for placement tests: sizes in MiB, views in bytes."""

from __future__ import annotations

from typing import Any

from xetool.placement.memory import MIB
from xetool.placement.snapshot import HostView, VmView


def vm(uuid: str = "vm", mib: int = 1024, dmin: int | None = None, vcpus: int = 1, **kw: Any) -> VmView:
    dmin = mib if dmin is None else dmin
    fields: dict[str, Any] = dict(
        memory_static_min=dmin * MIB, memory_static_max=mib * MIB,
        memory_dynamic_min=dmin * MIB, memory_dynamic_max=mib * MIB,
        vcpus_max=vcpus, vcpus_at_startup=vcpus, name_label=uuid,
    )
    fields.update(kw)
    return VmView(uuid, **fields)


def host(uuid: str, mib: int = 8192, overhead: int = 0, cpus: int = 8, **kw: Any) -> HostView:
    kw.setdefault("name_label", uuid)
    return HostView(uuid, mib * MIB, overhead * MIB, cpus, **kw)
