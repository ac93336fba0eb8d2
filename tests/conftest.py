"""Shared fixtures: a temporary state directory, an `xe(*args)` runner through the real click
app, a pool imported from examples/pool.toml, and a full dump of the store for before/after."""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.stopping import stop_processes  # noqa: F401 (the suite's name for it)
from xetool.cli.context import Context
from xetool.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "pool.toml"


@dataclass
class Result:
    out: str
    err: str
    rc: int

    def __iter__(self):  # out, err, rc = xe(...)
        return iter((self.out, self.err, self.rc))


def run_xe(state_dir: Path, *args: str) -> Result:
    """One `xetool` command line through xetool.cli.main.main (the click app and its error
    reporting), with separate stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(Path(state_dir), out=out, err=err)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args), ctx=ctx)
    return Result(out.getvalue(), err.getvalue(), rc)


# Every process the suite starts (simulated hosts, their consoles and device models, dnsmasq)
# inherits this mark in its environment, so what a test forgot can be found and stopped.
SESSION_MARK = "XETOOL_TEST_SESSION"


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault(SESSION_MARK, f"{os.getpid()}-{time.time_ns()}")


def marked_processes() -> list[int]:
    """The live processes carrying this session's mark, other than this one."""
    mark = f"{SESSION_MARK}={os.environ[SESSION_MARK]}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if mark in f.read().split(b"\0"):
                    found.append(int(name))
        except OSError:
            continue
    return found


def stop_simulated_hosts(state: Path) -> None:
    """Stop every simulated host started under a state directory (hosts/<uuid>/)."""
    from xetool.backends.simulator import stop_host

    hosts = Path(state) / "hosts"
    if hosts.is_dir():
        for h in hosts.iterdir():
            stop_host(Path(state), h.name)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Whatever the tests left running is stopped, and counted in the output so a leak shows."""
    if os.environ.get(SESSION_MARK) is None:
        return
    # multiprocessing's resource tracker leaves with this process, by itself
    left = [p for p in marked_processes() if "multiprocessing.resource_tracker" not in _cmdline(p)]
    if left:
        what = [_cmdline(pid) for pid in left]
        stop_processes(left)
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"stopped {len(left)} process(es) the tests left running:")
            for line in what:
                reporter.write_line(f"  {line}")


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f"{pid}: " + f.read().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return f"{pid}: (gone)"


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    d = tmp_path / "state"
    monkeypatch.setenv("XETOOL_STATE_DIR", str(d))
    yield d
    stop_simulated_hosts(d)


@pytest.fixture
def xe(state_dir: Path):
    """xe("vm-list", "--minimal") -> Result(out, err, rc)."""
    return lambda *args: run_xe(state_dir, *args)


@pytest.fixture
def ok(xe):
    """Like xe, but the command must succeed; returns stdout."""

    def run(*args: str) -> str:
        r = xe(*args)
        assert r.rc == 0, f"xetool {' '.join(args)} failed ({r.rc}):\n{r.err}"
        return r.out

    return run


@pytest.fixture
def pool(ok, state_dir: Path) -> Path:
    """The example pool, imported into the temporary state directory."""
    ok("pool-import", f"file={EXAMPLE}")
    return state_dir


def dump(state_dir: Path) -> dict[str, object]:
    """Every row of every table, plus the files under the state directory (SR contents)."""
    db_path = Path(state_dir) / "pool.db"
    tables: dict[str, object] = {}
    if db_path.exists():
        db = sqlite3.connect(db_path)
        try:
            names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
            for name in names:
                tables[name] = sorted(map(repr, db.execute(f'SELECT * FROM "{name}"')))
            tables["@user_version"] = db.execute("PRAGMA user_version").fetchone()[0]
        finally:
            db.close()
    files = sorted(str(p.relative_to(state_dir)) for p in Path(state_dir).rglob("*")
                   if p.is_file() and not p.name.startswith("pool.db")) if Path(state_dir).exists() else []
    return {"tables": tables, "files": files}


@pytest.fixture
def snapshot(state_dir: Path):
    return lambda: dump(state_dir)
