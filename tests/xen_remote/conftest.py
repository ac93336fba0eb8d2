"""The xenlab lane's SSH phase: this machine is the pool master and the lab's dom0 a host reached
over SSH (its `xetool host-agent` on the far end). scripts/xenlab/run sets XENLAB_SSH_* once
dom0's sshd is up; elsewhere every test here is skipped, with the reason printed by `pytest -rs`."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.xen.lab import mark_lab_tests
from tests.xen_remote.remote import Dom0


def ssh_reason() -> str | None:
    """None when the lab's dom0 can be reached over SSH, else why these tests cannot run."""
    if not os.environ.get("XENLAB_SSH_PORT"):
        return "no lab dom0 to reach over SSH: XENLAB_SSH_PORT is unset (scripts/xenlab/run test sets it)"
    for tool in ("ssh", "ssh-keygen"):
        if not shutil.which(tool):
            return f"no {tool} on this machine (openssh-client)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_lab_tests(items, Path(__file__).parent, ssh_reason())


@pytest.fixture(scope="session")
def dom0() -> Iterator[Dom0]:
    env = os.environ
    with tempfile.TemporaryDirectory(prefix="xenlab-ssh-") as tmp:
        d = Dom0(env.get("XENLAB_SSH_HOST", "127.0.0.1"), int(env["XENLAB_SSH_PORT"]),
                 env.get("XENLAB_SSH_USER", "root"), Path(env["XENLAB_SSH_KEY"]), Path(env["XENLAB_SSH_KNOWN_HOSTS"]),
                 Path(tmp) / "mux")
        try:
            yield d
        finally:
            d.close()
