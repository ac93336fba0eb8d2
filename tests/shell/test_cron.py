"""scripts/xetool-cron-ha: quiet when all is well, exit 0 with a note when skipped."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.shell.conftest import ROOT, xetool

CRON = ROOT / "scripts" / "xetool-cron-ha"


@pytest.fixture
def fake(tmp_path: Path, fresh_pool: Path) -> tuple[Path, Path]:
    """An XETOOL that runs the real one but records vm-start and answers it from a table
    (vm-start is the lifecycle work's; here only the script's handling of its statuses counts)."""
    log = tmp_path / "starts"
    shim = tmp_path / "xetool"
    shim.write_text(f"""#!/bin/bash
for a in "$@"; do
    if [[ $a == vm-start ]]; then
        for b in "$@"; do [[ $b == uuid=* ]] && u=${{b#uuid=}}; done
        echo "$@" >>{log}
        code=$(grep -s "^$u " {tmp_path}/answers | cut -d' ' -f2)
        exit ${{code:-0}}
    fi
done
PYTHONPATH={ROOT} exec {sys.executable} -m xetool --state-dir={fresh_pool} "$@"
""")
    shim.chmod(0o755)
    return shim, log


def _run(shim: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XETOOL": str(shim), "XETOOL_CRON_LOCK": str(tmp_path / "lock")}
    return subprocess.run([str(CRON), *args], env=env, capture_output=True, text=True, timeout=60)


def _ha(state: Path, *names: str) -> dict[str, str]:
    uuids = {}
    for name in names:
        u = xetool("vm-list", f"name-label={name}", "--minimal", state=state).stdout.strip()
        xetool("vm-param-set", f"uuid={u}", "ha-always-run=true", state=state)
        uuids[name] = u
    return uuids


def test_starts_halted_ha_vms_quietly(fake: tuple[Path, Path], fresh_pool: Path, tmp_path: Path) -> None:
    shim, log = fake
    uuids = _ha(fresh_pool, "web01", "win01")
    run = _run(shim, tmp_path)
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
    started = log.read_text().splitlines()
    assert sorted(started) == sorted(f"--quiet vm-start uuid={u}" for u in uuids.values())
    assert _run(shim, tmp_path, "-v").stdout.count("started") == 2


def test_nothing_to_do(fake: tuple[Path, Path], tmp_path: Path) -> None:
    shim, log = fake
    run = _run(shim, tmp_path)
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "") and not log.exists()


def test_busy_vm_is_skipped_with_a_note(fake: tuple[Path, Path], fresh_pool: Path, tmp_path: Path) -> None:
    shim, _ = fake
    uuids = _ha(fresh_pool, "web01", "db01")
    (tmp_path / "answers").write_text(f"{uuids['web01']} 3\n")
    run = _run(shim, tmp_path)
    assert run.returncode == 0 and f"skipped {uuids['web01']}" in run.stderr and "db01" not in run.stderr


def test_failure_is_reported_after_trying_the_rest(fake: tuple[Path, Path], fresh_pool: Path, tmp_path: Path) -> None:
    shim, log = fake
    uuids = _ha(fresh_pool, "web01", "db01")
    (tmp_path / "answers").write_text(f"{uuids['web01']} 1\n")
    run = _run(shim, tmp_path)
    assert run.returncode == 1 and f"could not start {uuids['web01']}" in run.stderr
    assert len(log.read_text().splitlines()) == 2


def test_overlapping_run_exits_0_with_a_note(fake: tuple[Path, Path], fresh_pool: Path, tmp_path: Path) -> None:
    shim, log = fake
    _ha(fresh_pool, "web01")
    with open(tmp_path / "lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a previous run, still going
        run = _run(shim, tmp_path)
    assert run.returncode == 0 and "skipped: a previous run still holds" in run.stderr
    assert not log.exists()
