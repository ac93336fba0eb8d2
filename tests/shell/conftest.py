"""Fixtures for the shell-citizen tests: the example pool, the repo's generated files, and a bash
that has loaded the completion script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "completions" / "xetool.bash"
BASH_COMPLETION = Path("/usr/share/bash-completion/bash_completion")


def xetool(*args: str, state: Path, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "xetool", f"--state-dir={state}", *args], env=env,
                          capture_output=True, text=True, check=check, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="session")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory holding examples/pool.toml (treat as read-only)."""
    state = tmp_path_factory.mktemp("pool")
    xetool("pool-import", f"file={ROOT / 'examples' / 'pool.toml'}", state=state)
    return state


@pytest.fixture
def fresh_pool(tmp_path: Path) -> Path:
    """A state directory of its own, for tests that change the pool."""
    xetool("pool-import", f"file={ROOT / 'examples' / 'pool.toml'}", state=tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def vm_uuids(pool: Path) -> dict[str, str]:
    out = xetool("vm-list", "params=name-label,uuid", "--format=json", state=pool).stdout
    import json

    return {r["name-label"]: r["uuid"] for r in json.loads(out)}
