"""A simulated host in a temporary state directory, always stopped afterwards."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from xetool.backends.base import DomainConfig
from xetool.backends.simulator import SimulatorBackend, stop_host
from xetool.xenstore.client import XsClient

GiB = 1 << 20  # in KiB


@pytest.fixture
def state_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="xsim-", dir="/tmp"))
    yield d
    for h in (d / "hosts").iterdir() if (d / "hosts").is_dir() else []:
        stop_host(d, h.name)
    shutil.rmtree(d, ignore_errors=True)


def make_backend(state_dir: Path, host_uuid: str | None = None) -> SimulatorBackend:
    return SimulatorBackend(state_dir, host_uuid or str(uuid.uuid4()), memory_total_kib=16 * GiB,
                            dom0_memory_kib=2 * GiB, cpus=4, capabilities=frozenset({"pv", "hvm", "hap"}),
                            hostname="sim1")


@pytest.fixture
def host(state_dir: Path) -> SimulatorBackend:
    b = make_backend(state_dir)
    b.ensure_running()
    return b


@pytest.fixture
def xs(host: SimulatorBackend) -> Iterator[XsClient]:
    with XsClient(host.xenstore_socket(), timeout=5) as c:
        yield c


def pv_config(name: str = "vm1", target: int = GiB // 2) -> DomainConfig:
    return DomainConfig(uuid=str(uuid.uuid4()), name=name, hvm=False, memory_static_max_kib=GiB,
                        memory_target_kib=target, vcpus_max=2, vcpus_at_startup=1, kernel="/boot/vmlinuz-sim")


def pv_overhead_kib() -> int:
    """What Xen itself charges for a pv_config() domain (shadow, p2m, vCPU structures)."""
    from xetool.placement.memory import overhead_mib

    return 1024 * overhead_mib(GiB // 1024, 2, 1.0, False)


def start_pv(host: SimulatorBackend, xs: XsClient, name: str = "vm1") -> int:
    """What the toolstack does for a PV guest, libxl-style: create, the rw/ro directories, build."""
    cfg = pv_config(name)
    domid = host.create_domain(cfg)
    home = f"/local/domain/{domid}"

    def make(t) -> None:
        for sub in ("device", "control", "data", "error", "drivers", "feature", "attr"):
            t.mkdir(f"{home}/{sub}")
            t.set_perms(f"{home}/{sub}", [f"n{domid}", "r0"] if sub != "device" else ["n0", f"r{domid}"])
        t.write(f"{home}/control/shutdown", "")
        t.set_perms(f"{home}/control/shutdown", [f"n{domid}", "r0"])

    xs.transaction(make)
    host.build_domain(domid, cfg)
    return domid


def add_device(xs: XsClient, domid: int, kind: str, devid: int, backend_keys: dict[str, str]) -> tuple[str, str]:
    """Write a frontend/backend pair the way libxl__device_generic_add does."""
    be = f"/local/domain/0/backend/{kind}/{domid}/{devid}"
    fe = f"/local/domain/{domid}/device/{kind}/{devid}"

    def add(t) -> None:
        t.mkdir(be)
        t.set_perms(be, ["n0", f"r{domid}"])
        t.mkdir(fe)
        t.set_perms(fe, [f"n{domid}", "r0"])
        for k, v in {"frontend": fe, "frontend-id": str(domid), "online": "1", "state": "1", **backend_keys}.items():
            t.write(f"{be}/{k}", v)
        for k, v in {"backend": be, "backend-id": "0", "state": "1", "virtual-device": str(devid)}.items():
            t.write(f"{fe}/{k}", v)

    xs.transaction(add)
    return be, fe
