"""Shared fixtures: a temporary state directory, an `xe(*args)` runner through the real click
app, a pool imported from examples/pool.toml, and a full dump of the store for before/after."""

from __future__ import annotations

import contextlib
import io
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

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


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "state"
    monkeypatch.setenv("XETOOL_STATE_DIR", str(d))
    return d


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
