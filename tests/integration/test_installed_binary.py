"""The installed `xetool` console script, driven by pexpect on a pseudo-terminal."""

from __future__ import annotations

import os
import shutil

import pytest

pexpect = pytest.importorskip("pexpect")

from tests.conftest import EXAMPLE  # noqa: E402

XETOOL = shutil.which("xetool")
pytestmark = pytest.mark.skipif(XETOOL is None, reason="the xetool console script is not installed "
                                                        "(pip install . puts it on PATH)")


def spawn(state_dir, *args: str):
    env = {**os.environ, "XETOOL_STATE_DIR": str(state_dir)}
    env.pop("PYTHONPATH", None)  # the installed package, not the source tree
    return pexpect.spawn(XETOOL, list(args), env=env, encoding="utf-8", timeout=30)


def finish(child) -> tuple[str, int]:
    out = child.read()
    child.close()
    return out, child.exitstatus


def test_import_and_list(tmp_path):
    out, rc = finish(spawn(tmp_path, "pool-import", f"file={EXAMPLE}"))
    assert rc == 0 and "created vm web01" in out
    child = spawn(tmp_path, "vm-list", "params=name-label,power-state")
    child.expect(r"name-label \( RW\) *: web01\r\n")
    child.expect(r"power-state \( RO\): halted")
    out, rc = finish(child)
    assert rc == 0 and "win01" in out and "Traceback" not in out
    out, rc = finish(spawn(tmp_path, "host-list", "--minimal"))
    assert rc == 0 and len(out.strip().split(",")) == 3


def test_error_on_the_terminal(tmp_path):
    assert finish(spawn(tmp_path, "pool-import", f"file={EXAMPLE}"))[1] == 0
    child = spawn(tmp_path, "vm-param-get", "uuid=nope", "param-name=power-state")
    child.expect("The uuid you supplied was invalid.")
    out, rc = finish(child)
    assert rc == 2 and "uuid: nope" in out and "Traceback" not in out


def test_help(tmp_path):
    child = spawn(tmp_path, "help", "vm-list")
    child.expect("command name +: vm-list")
    child.expect("optional params : params")
    assert finish(child)[1] == 0


def test_no_pool_on_the_terminal(tmp_path):
    """A read command where there is no pool says so, and makes none."""
    state = tmp_path / "nothing-here"
    child = spawn(state, "vm-list")
    child.expect("The state directory holds no pool")
    out, rc = finish(child)
    assert rc == 1 and f"path: {state}" in out and "Traceback" not in out
    assert not state.exists()
