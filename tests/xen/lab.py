"""Helpers of the Xen lab tests (imported as tests.xen.lab)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from xetool.backends.base import DomainConfig


def mark_lab_tests(items: list[pytest.Item], here: Path, reason: str | None) -> None:
    """The `xen` marker on the collected tests under `here`; a skip with the reason where the lab's
    Xen cannot be reached (a conftest's pytest_collection_modifyitems)."""
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.xen)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def emit(line: str) -> None:
    """A line on the lab's console (XENLAB TIME ...), past pytest's output capture; on the
    master's side of the SSH phase, the harness's pipe ($XENLAB_CONSOLE)."""
    try:
        with open(os.environ.get("XENLAB_CONSOLE", "/dev/console"), "w") as con:
            con.write("\n" + line + "\n")  # pytest -v may have left a line open
    except OSError:
        print(line)


def guest_config(name: str, **overrides: object) -> DomainConfig:
    """The lab's PV guest: the Debian kernel and the busybox initrd (scripts/xenlab/guest)."""
    fields: dict[str, object] = dict(
        uuid=str(uuid.uuid4()),
        name=name,
        hvm=False,
        memory_static_max_kib=256 * 1024,
        memory_target_kib=128 * 1024,
        vcpus_max=2,
        vcpus_at_startup=1,
        kernel=os.environ.get("XENLAB_GUEST_KERNEL", "/opt/xenlab/guest/vmlinuz"),
        ramdisk=os.environ.get("XENLAB_GUEST_RAMDISK", "/opt/xenlab/guest/initrd.gz"),
        cmdline="console=hvc0 loglevel=4",
    )
    fields.update(overrides)
    return DomainConfig(**fields)  # type: ignore[arg-type]


def console_log(name: str) -> Path:
    return Path(os.environ.get("XENLAB_CONSOLE_LOG_DIR", "/var/log/xen/console")) / f"guest-{name}.log"


def wait_console(name: str, marker: str, timeout: float = 180.0) -> str:
    """The guest's console log once it contains marker (xenconsoled writes it)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        try:
            text = console_log(name).read_text(errors="replace")
        except OSError:
            text = ""
        if marker in text:
            return text
        time.sleep(0.5)
    raise AssertionError(f"no {marker!r} on {name}'s console after {timeout:g}s; log so far:\n{text[-2000:]}")
