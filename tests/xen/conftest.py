"""Tests that need a real Xen dom0 (the xenlab lane: scripts/xenlab/run). Elsewhere every test
here is skipped, with the reason printed by `pytest -rs`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.xen.lab import mark_lab_tests
from xetool.backends.xen import XenBackend

CAPS = Path("/proc/xen/capabilities")


def dom0_reason() -> str | None:
    """None on a Xen dom0, else why these tests cannot run here."""
    try:
        caps = CAPS.read_text()
    except OSError:
        return f"not a Xen dom0: no {CAPS} (run scripts/xenlab/run to boot one under QEMU)"
    if "control_d" not in caps:
        return f"not a Xen dom0: {CAPS} has no control_d (a domU?)"
    if os.geteuid() != 0:
        return "dom0 tests need root (xl)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_lab_tests(items, Path(__file__).parent, dom0_reason())


@pytest.fixture
def backend() -> XenBackend:
    return XenBackend()


@pytest.fixture
def xs() -> Iterator[object]:
    from pyxs import Client

    with Client(unix_socket_path="/run/xenstored/socket") as client:
        yield client


@pytest.fixture
def reaper() -> Iterator[list[str]]:
    """Names of domains a test creates; any still there at the end are destroyed."""
    names: list[str] = []
    yield names
    for name in names:
        subprocess.run(["xl", "destroy", name], capture_output=True, timeout=60)
