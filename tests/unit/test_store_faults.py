"""The store under faults (issue 11): a full disk, a read-only file system, a permission problem,
a damaged pool.db, a state directory that others could change, and the GC of tasks. Each error is
a registry entry naming the file, exit 1, never 70; nothing is re-initialised."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE, ROOT, run_xe
from xetool import tasks
from xetool.errors import REGISTRY, XeError
from xetool.store.db import Store

NOBODY = 65534


@pytest.fixture
def open_tmp():
    """A directory anyone may traverse (pytest's tmp_path is under a 0700 one), for tests in
    which another user must reach the state directory to be refused by xetool, not by the path."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="xetool-faults-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _xetool(state: Path, *args: str, umask: int | None = None) -> subprocess.CompletedProcess:
    """The real command in a fresh process, under another umask if asked."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XETOOL_STATE_DIR": str(state)}
    return subprocess.run([sys.executable, "-m", "xetool", *args], env=env, capture_output=True, text=True,
                          preexec_fn=(lambda: os.umask(umask)) if umask is not None else None, timeout=60)


def as_user(uid: int, fn: Callable[[], str]) -> str:
    """fn() in a forked child running as `uid` (the interpreter may live where that user cannot
    read, so no new process is exec'd: what fn needs is loaded already); its result string."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        out = "CHILD-FAILED"
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            out = fn()
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            out = f"CHILD-FAILED {type(e).__name__}: {e}"
        finally:
            os.write(w, out.encode())
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read().decode()
    os.waitpid(pid, 0)
    return data


def xetool_as(uid: int, state: Path, *args: str) -> tuple[int, str]:
    """One command line in-process as `uid`: (exit status, stderr)."""
    out = as_user(uid, lambda: "{}\n{}".format(*((r := run_xe(state, *args)).rc, r.err)))
    rc, _, err = out.partition("\n")
    assert rc.lstrip("-").isdigit(), out
    return int(rc), err


def _refused(p: subprocess.CompletedProcess, code: str) -> None:
    assert p.returncode == REGISTRY[code].status == 1, (p.returncode, p.stderr)
    assert p.stderr.startswith(REGISTRY[code].doc + "\n"), p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""


def _mount(*args: str) -> None:
    r = subprocess.run(["mount", *args], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount here (mount {' '.join(args)}: {r.stderr.strip()}); needs root and CAP_SYS_ADMIN")


@pytest.fixture
def tmpfs(tmp_path: Path):
    """A small tmpfs of our own (2 MiB), unmounted afterwards."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    d = tmp_path / "fs"
    d.mkdir()
    _mount("-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(d))
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


# --- a damaged pool.db: refused, named, left as it is -----------------------------------------------
@pytest.mark.parametrize("content, code", [
    (b"", "EMPTY"),
    (b"this is not sqlite\n" * 20, "SQLITE_NOTADB"),
])
def test_damaged_pool_db_is_refused_and_kept(tmp_path: Path, content: bytes, code: str) -> None:
    state = tmp_path / "s"
    state.mkdir(mode=0o700)
    (state / "pool.db").write_bytes(content)
    for create in (False, True):  # not even pool-import re-initialises it
        with pytest.raises(XeError) as err:
            Store(state, create=create)
        assert err.value.code == "STORE_CORRUPT" and err.value.params["code"] == code
        assert err.value.params["path"] == str(state / "pool.db")
    assert (state / "pool.db").read_bytes() == content
    p = _xetool(state, "vm-list")
    _refused(p, "STORE_CORRUPT")
    assert f"path: {state / 'pool.db'}" in p.stderr
    p = _xetool(state, "pool-import", f"file={EXAMPLE}")
    _refused(p, "STORE_CORRUPT")
    assert (state / "pool.db").read_bytes() == content


def test_truncated_pool_db_is_refused(tmp_path: Path) -> None:
    Store(tmp_path).close()
    run_xe(tmp_path, "pool-import", f"file={EXAMPLE}")
    db = tmp_path / "pool.db"
    data = db.read_bytes()
    assert len(data) > 8192
    db.write_bytes(data[:4096])
    with pytest.raises(XeError) as err:
        Store(tmp_path)
    assert err.value.code == "STORE_CORRUPT" and "truncated" in err.value.params["reason"]
    assert db.stat().st_size == 4096


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    con = sqlite3.connect(tmp_path / "pool.db")
    con.execute("CREATE TABLE songs (title TEXT)")
    con.commit()
    con.close()
    with pytest.raises(XeError) as err:
        Store(tmp_path)
    assert err.value.code == "STORE_CORRUPT" and err.value.params["code"] == "NOT_A_POOL"
    con = sqlite3.connect(tmp_path / "pool.db")
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master")] == ["songs"]
    con.close()


def test_corruption_found_while_reading_is_a_store_error(tmp_path: Path) -> None:
    """Damage inside a page SQLite only meets on a query: STORE_CORRUPT with its code, exit 1."""
    run_xe(tmp_path, "pool-import", f"file={EXAMPLE}")
    db = tmp_path / "pool.db"
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for at in range(page, len(data)):  # every page after the first: its headers and cells
        data[at] = 0xFF
    db.write_bytes(bytes(data))
    r = run_xe(tmp_path, "vm-list")
    assert r.rc == 1 and r.err.startswith(REGISTRY["STORE_CORRUPT"].doc), r.err
    assert "code: SQLITE_CORRUPT" in r.err and f"path: {db}" in r.err


# --- no pool: read commands say so and make none; pool-import makes one ---------------------------
def test_read_command_on_no_pool_creates_nothing(tmp_path: Path) -> None:
    state = tmp_path / "new"
    for args in (("vm-list",), ("host-list", "--minimal"), ("task-list",), ("pool-export",)):
        p = _xetool(state, *args)
        _refused(p, "POOL_NOT_FOUND")
        assert f"path: {state}" in p.stderr
    assert not state.exists()
    state.mkdir(mode=0o700)
    _refused(_xetool(state, "vm-list"), "POOL_NOT_FOUND")
    assert list(state.iterdir()) == []
    p = _xetool(state, "pool-import", f"file={EXAMPLE}")
    assert p.returncode == 0, p.stderr
    assert sorted(x.name for x in state.iterdir() if x.name.startswith("pool.db")) == ["pool.db"]
    assert _xetool(state, "vm-list", "--minimal").returncode == 0


def test_new_state_dir_and_pool_are_private_under_a_loose_umask(tmp_path: Path) -> None:
    state = tmp_path / "a" / "b"
    assert _xetool(state, "pool-import", f"file={EXAMPLE}", umask=0o000).returncode == 0
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "pool.db").stat().st_mode & 0o777 == 0o600
    disks = list(state.rglob("*.raw"))
    assert disks and all(d.stat().st_mode & 0o777 == 0o600 for d in disks)


# --- a state directory that someone else could change ----------------------------------------------
@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_group_or_world_writable_state_dir_is_refused(tmp_path: Path, mode: int) -> None:
    state = tmp_path / "s"
    assert _xetool(state, "pool-import", f"file={EXAMPLE}").returncode == 0
    os.chmod(state, mode)
    p = _xetool(state, "vm-list")
    _refused(p, "STATE_DIR_UNSAFE")
    assert f"fix: chmod go-w {state}" in p.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_state_dir_of_another_user_is_refused(open_tmp: Path) -> None:
    state = open_tmp / "s"
    assert _xetool(state, "pool-import", f"file={EXAMPLE}").returncode == 0
    os.chown(state, NOBODY, NOBODY)
    p = _xetool(state, "vm-list")  # root, on nobody's directory
    _refused(p, "STATE_DIR_UNSAFE")
    assert f"owned by uid {NOBODY}" in p.stderr and f"fix: chown 0 {state}" in p.stderr
    os.chown(state, 0, 0)
    os.chmod(state, 0o755)  # so that nobody can even look: still not theirs
    rc, err = xetool_as(NOBODY, state, "vm-list")  # nobody, on root's directory
    assert rc == 1 and err.startswith(REGISTRY["STATE_DIR_UNSAFE"].doc) and "owned by uid 0" in err, err


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_permission_problem_is_not_a_read_only_file_system(open_tmp: Path) -> None:
    """nobody's own state directory, with pool.db made read-only: a permission error."""
    state = open_tmp / "s"
    assert _xetool(state, "pool-import", f"file={EXAMPLE}").returncode == 0
    for p in [state, *state.rglob("*")]:
        os.chown(p, NOBODY, NOBODY)
    os.chmod(state / "pool.db", 0o400)
    rc, err = xetool_as(NOBODY, state, "vm-list")
    assert rc == 1 and err.startswith(REGISTRY["STATE_DIR_NOT_WRITABLE"].doc + "\n"), err
    assert f"path: {state / 'pool.db'}" in err and "permission" in err


# --- the file system fails under the store ------------------------------------------------------------
def test_read_only_file_system(tmpfs: Path) -> None:
    state = tmpfs / "s"
    assert _xetool(state, "pool-import", f"file={EXAMPLE}").returncode == 0
    _mount("-o", "remount,ro", str(tmpfs))
    p = _xetool(state, "vm-list")
    _refused(p, "STATE_DIR_READ_ONLY")
    p = _xetool(state, "vm-param-set", "uuid=" + "0" * 8 + "-0000-0000-0000-" + "0" * 12, "name-label=x")
    assert p.returncode == 1 and "STATE_DIR_READ_ONLY" not in p.stdout
    assert p.stderr.startswith(REGISTRY["STATE_DIR_READ_ONLY"].doc)
    _refused(_xetool(tmpfs / "other", "pool-import", f"file={EXAMPLE}"), "STATE_DIR_READ_ONLY")


def test_disk_full(tmpfs: Path) -> None:
    """Fill the file system, then write: STORE_DISK_FULL naming the file, nothing changed, and the
    store works again once there is room."""
    state = tmpfs / "s"
    assert _xetool(state, "pool-import", f"file={EXAMPLE}").returncode == 0
    before = _xetool(state, "vm-list", "params=name-label", "--minimal").stdout
    store = Store(state, create=False)  # open (its shared memory made) before the disk fills
    with store.read() as txn:
        txn.pool()
    filler = tmpfs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\1" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    with pytest.raises(XeError) as err:
        with store.write() as txn:
            for n in range(2000):  # more than the WAL can take without growing
                txn.insert("vm", {"name_label": f"filler-{n}", "name_description": "x" * 1000})
    store.close()
    assert err.value.code == "STORE_DISK_FULL", err.value
    assert err.value.params == {"path": str(state / "pool.db"), "code": err.value.params["code"]}
    assert err.value.params["code"].startswith("SQLITE_FULL")
    p = _xetool(state, "vm-create", "name-label=big", "name-description=" + "y" * 4000, "other-config:a=" + "z" * 4000)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.startswith(REGISTRY["STORE_DISK_FULL"].doc + "\n"), p.stderr
    assert not [x for x in state.rglob(".*tmp*")], "a temporary file was left behind"
    filler.unlink()
    assert _xetool(state, "vm-list", "params=name-label", "--minimal").stdout == before
    assert _xetool(state, "vm-create", "name-label=after").returncode == 0


def test_write_atomic_leaves_no_temporary_file_on_a_full_disk(tmpfs: Path) -> None:
    from xetool.paths import write_atomic

    target = tmpfs / "file.json"
    with pytest.raises(OSError):
        write_atomic(target, "x" * (4 << 20))
    assert list(tmpfs.iterdir()) == []


# --- tasks are collected as xapi does --------------------------------------------------------------
def test_finished_tasks_are_collected(tmp_path: Path) -> None:
    import time

    store = Store(tmp_path)
    old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 2 * 3600))
    recent = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    with store.write() as txn:
        stale = [txn.insert("task", {"name_label": "old", "status": "success", "finished": old}) for _ in range(5)]
        young = [txn.insert("task", {"name_label": "young", "status": "failure", "finished": recent})
                 for _ in range(tasks.MAX_TASKS + 50)]
        pending = txn.insert("task", {"name_label": "running", "status": "pending", "created": old,
                                      "pid": os.getpid(), "process_start": 0})
        live = tasks.create(txn, "VM.start")
    tasks.finish(store, live)
    with store.read() as txn:
        left = set(txn.uuids("task"))
    store.close()
    assert not left & set(stale), "tasks finished over 65 minutes ago are kept"
    assert pending in left and live in left
    assert len(left) == tasks.MAX_TASKS
    gone = len(young) + 2 - tasks.MAX_TASKS  # the oldest finished go first; the pending one stays
    assert set(young[:gone]).isdisjoint(left) and set(young[gone:]) <= left


def test_task_list_does_not_grow_forever(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_xe(tmp_path, "pool-import", f"file={EXAMPLE}").rc == 0
    store = Store(tmp_path)
    with store.write() as txn:
        for _ in range(tasks.MAX_TASKS + 20):
            txn.insert("task", {"name_label": "done", "status": "success", "finished": "2020-01-01T00:00:00Z"})
    store.close()
    monkeypatch.setenv("XETOOL_FIST", "with_vbds_marked")  # a start that fails at once: one task
    assert "step: with_vbds_marked" in run_xe(tmp_path, "vm-start", "vm=web01").err
    assert len(run_xe(tmp_path, "task-list", "--minimal").out.strip().split(",")) == 1
