"""scripts/demo, the README's first command after the install: it honours an exported
XETOOL_STATE_DIR, never wipes a directory it did not make, and its hosts stop as it says."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, marked_processes

pytestmark = pytest.mark.skipif(shutil.which("xetool") is None,
                                reason="the xetool console script is not installed (pip install . puts it on PATH)")
DEMO = ROOT / "scripts" / "demo"


def run(cmd: list[str], state: Path | None, **kw: object) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("XETOOL_STATE_DIR", None)
    if state is not None:
        env["XETOOL_STATE_DIR"] = str(state)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload]


def hostd_pids(state: Path) -> list[int]:
    return [p for p in marked_processes()
            if f"--state-dir\0{state}\0".encode() in Path(f"/proc/{p}/cmdline").read_bytes()]


def test_demo_uses_the_exported_state_dir_and_its_hosts_stop(tmp_path: Path) -> None:
    state = tmp_path / "mine"
    try:
        demo = run([str(DEMO)], state)
        assert demo.returncode == 0, demo.stderr[-2000:]
        assert (state / "pool.db").exists()
        assert "VNC console of web01" in demo.stdout
        assert "xetool host-sim-stop --multiple" in demo.stdout
        assert hostd_pids(state), "the demo's simulated hosts run until stopped"
        again = run([str(DEMO)], state)  # a demo directory is reset and the demo runs again
        assert again.returncode == 0, again.stderr[-2000:]
    finally:
        stop = run(["xetool", "host-sim-stop", "--multiple"], state)
    assert stop.returncode == 0, stop.stderr
    assert hostd_pids(state) == []


def test_demo_refuses_a_pool_it_did_not_make(tmp_path: Path) -> None:
    state = tmp_path / "operators-pool"
    state.mkdir(mode=0o700)
    (state / "pool.db").write_bytes(b"not the demo's")
    demo = run([str(DEMO)], state)
    assert demo.returncode == 1
    assert "not resetting it" in demo.stderr
    assert (state / "pool.db").read_bytes() == b"not the demo's"
