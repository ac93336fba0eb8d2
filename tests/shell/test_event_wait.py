"""event-wait: returns when an object matches, exits with EVENT_WAIT_TIMEOUT's status when none
does in time, and refuses bad requests at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.shell.conftest import xetool
from xetool.errors import ExitStatus
from xetool.store.db import Store


def _uuid(state: Path, name: str) -> str:
    return xetool("vm-list", f"name-label={name}", "--minimal", state=state).stdout.strip()


def test_already_matching_returns_at_once(pool: Path) -> None:
    u = _uuid(pool, "web01")
    run = xetool("event-wait", "class=vm", f"uuid={u}", "power-state=halted", state=pool)
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")


def test_times_out_with_its_own_status(pool: Path) -> None:
    u = _uuid(pool, "web01")
    t0 = time.monotonic()
    run = xetool("event-wait", "class=vm", f"uuid={u}", "power-state=running", "timeout=0.5", state=pool, check=False)
    assert run.returncode == ExitStatus.TIMEOUT == 4
    assert "No matching object appeared before the timeout." in run.stderr and run.stdout == ""
    assert time.monotonic() - t0 < 10


def test_json_error(pool: Path) -> None:
    run = xetool("--format=json", "event-wait", "class=host", "enabled=false", "timeout=0", state=pool, check=False)
    assert run.returncode == 4 and '"EVENT_WAIT_TIMEOUT"' in run.stderr


def test_wakes_on_a_change(fresh_pool: Path) -> None:
    u = _uuid(fresh_pool, "db01")

    def change() -> None:
        time.sleep(0.7)
        store = Store(fresh_pool)
        with store.write() as txn:
            txn.update("vm", u, {"power_state": "Running"})
        store.close()

    threading.Thread(target=change).start()
    t0 = time.monotonic()
    run = xetool("event-wait", "class=vm", f"uuid={u}", "power-state=running", "timeout=20", state=fresh_pool, check=False)
    assert run.returncode == 0, run.stderr
    assert time.monotonic() - t0 < 15


def test_not_equal_and_filters_without_uuid(pool: Path) -> None:
    assert xetool("event-wait", "class=vm", "name-label=db01", "power-state=/=running", "timeout=0", state=pool).returncode == 0
    run = xetool("event-wait", "class=vm", "power-state=/=halted", "timeout=0", state=pool, check=False)
    assert run.returncode == 4
    assert xetool("event-wait", "class=host", "name-label=host2", "enabled=true", "timeout=0", state=pool).returncode == 0


@pytest.mark.parametrize("args, status, text", [
    (["power-state=running"], 2, "param: class"),
    (["class=vm", "timeout=soon"], 2, "seconds"),
    (["class=vm", "timeout=-1"], 2, "seconds"),
    (["class=vm", "timeout=1e9"], 1, "at most a day"),
    (["class=nosuch"], 2, "nosuch"),
    (["class=vm", "uuid=not-a-uuid"], 2, "uuid you supplied was invalid"),
    (["class=vm", "uuid=00000000-0000-0000-0000-000000000000"], 1, "invalid object reference"),
    (["class=vm", "nosuch-field=1"], 2, "nosuch-field"),
    (["class=vm", "power-state=sleeping"], 2, "one of"),
])
def test_bad_requests_fail_at_once(pool: Path, args: list[str], status: int, text: str) -> None:
    run = xetool("event-wait", *args, state=pool, check=False, timeout=20)
    assert run.returncode == status and text in run.stderr, run.stderr
