"""Remote hosts over real SSH (issue 12): `ssh_lab` is an SshLab of 3 hosts, one per test module
(its hosts' state starts empty in each module), restored after each test that took a link or an
sshd down. Where the lab cannot run (not root, no `ip netns`, no sshd), the tests that use it
are skipped with the reason."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.remote.netns import SshLab, skip_unless_a_lab_can_run

LAB_HOSTS = 3


@pytest.fixture(scope="module")
def ssh_lab_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshLab]:
    skip_unless_a_lab_can_run()
    with SshLab(LAB_HOSTS, tmp_path_factory.mktemp("sshlab") / "lab") as lab:
        yield lab


@pytest.fixture
def ssh_lab(ssh_lab_module: SshLab) -> Iterator[SshLab]:
    """The module's lab; every link up and every sshd running again after the test."""
    yield ssh_lab_module
    ssh_lab_module.restore()
