"""The store: WAL, file mode, schema version, migrations, BEGIN IMMEDIATE, rollback."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from xetool.errors import XeError
from xetool.store import schema
from xetool.store.db import Store

ROOT = Path(__file__).resolve().parents[2]


def test_wal_mode_mode_0600_and_version(tmp_path):
    store = Store(tmp_path / "s")
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert stat.S_IMODE(os.stat(store.db_file).st_mode) == 0o600
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION == len(schema.MIGRATIONS)
    store.close()
    raw = sqlite3.connect(tmp_path / "s" / "pool.db")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent, not per connection
    raw.close()


def test_busy_timeout_is_set(tmp_path):
    store = Store(tmp_path, busy_timeout=7)
    assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] == 7000
    store.close()


def _schema_sql(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return sorted(r[0] or "" for r in db.execute("SELECT sql FROM sqlite_master"))
    finally:
        db.close()


def test_migrations_idempotent(tmp_path):
    Store(tmp_path).close()
    first = _schema_sql(tmp_path / "pool.db")
    s = Store(tmp_path)
    with s.read() as txn:
        assert txn.count("pool") == 1
    s.close()
    db = sqlite3.connect(tmp_path / "pool.db")
    schema.add_missing_columns(db)  # again, by hand
    for _, apply in schema.MIGRATIONS:
        apply(db)
    db.close()
    assert _schema_sql(tmp_path / "pool.db") == first
    s = Store(tmp_path)
    with s.read() as txn:
        assert txn.count("pool") == 1  # one pool record, never a second
    s.close()


def test_schema_too_new_refused(tmp_path):
    Store(tmp_path).close()
    db = sqlite3.connect(tmp_path / "pool.db")
    db.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(XeError) as err:
        Store(tmp_path)
    assert err.value.code == "SCHEMA_TOO_NEW"


def test_not_a_database(tmp_path):
    (tmp_path / "pool.db").write_bytes(b"this is not sqlite" * 100)
    os.chmod(tmp_path / "pool.db", 0o600)
    with pytest.raises(XeError) as err:
        Store(tmp_path)
    assert err.value.code == "STORE_CORRUPT"


def test_failed_write_transaction_leaves_nothing(tmp_path):
    store = Store(tmp_path)
    with store.read() as txn:
        before = txn.select("vm"), txn.pool()
    with pytest.raises(XeError):
        with store.write() as txn:
            txn.insert("vm", {"name_label": "ghost"})
            txn.update("pool", txn.pool()["uuid"], {"name_label": "changed"})
            raise XeError("INVALID_VALUE", "x", "y")
    with store.read() as txn:
        assert (txn.select("vm"), txn.pool()) == before
    # and the connection is usable again: no transaction was left open
    with store.write() as txn:
        txn.insert("vm", {"name_label": "real"})
    store.close()


def test_read_transaction_refuses_writes(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(XeError) as err:
        with store.read() as txn:
            txn.insert("vm", {"name_label": "x"})
    assert err.value.code == "INTERNAL_ERROR"
    store.close()


def test_write_is_begin_immediate(tmp_path):
    """A second writer cannot even start while one write transaction is open."""
    a, b = Store(tmp_path), Store(tmp_path, busy_timeout=0.05)
    with a.write():
        with pytest.raises(XeError) as err:
            with b.write():
                pass
        assert err.value.code == "LOCK_TIMEOUT" and str(tmp_path / "pool.db") in err.value.params["lock"]
    with b.write() as txn:  # free again
        txn.insert("vm", {"name_label": "after"})
    a.close(), b.close()


def _increment(state_dir: str, uuid: str, n: int) -> None:
    store = Store(Path(state_dir))
    for _ in range(n):
        with store.write() as txn:
            vm = txn.must("vm", uuid, ["domid"])
            txn.update("vm", uuid, {"domid": vm["domid"] + 1})
    store.close()


def test_concurrent_read_modify_write_loses_nothing(tmp_path):
    store = Store(tmp_path)
    with store.write() as txn:
        uuid = txn.insert("vm", {"name_label": "counter", "domid": 0})
    store.close()
    n, procs = 200, 3
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_increment, args=(str(tmp_path), uuid, n)) for _ in range(procs)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    store = Store(tmp_path)
    with store.read() as txn:
        assert txn.get("vm", uuid, ["domid"])["domid"] == n * procs
    store.close()


def _regular_file_parent(tmp_path: Path) -> Path:
    f = tmp_path / "file"
    f.write_text("not a directory")
    return f / "sub"  # cannot be created, even by root


def test_unwritable_state_dir_is_an_error(tmp_path):
    with pytest.raises(XeError) as err:
        Store(_regular_file_parent(tmp_path))
    assert err.value.code == "STATE_DIR_NOT_WRITABLE"


def test_unwritable_state_dir_through_the_cli(tmp_path):
    bad = _regular_file_parent(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XETOOL_STATE_DIR": str(bad)}
    p = subprocess.run([sys.executable, "-m", "xetool", "host-list"], env=env, capture_output=True, text=True)
    assert p.returncode == 1
    assert p.stdout == ""
    assert p.stderr.startswith("The state directory cannot be written.\n")
    assert f"path: {bad}" in p.stderr and "Traceback" not in p.stderr


def test_host_load_follows_every_vm_change(tmp_path: Path) -> None:
    """Placement reads each host's load from host_load, kept by triggers: after any mix of
    inserts, moves, schedules, memory changes and deletes it equals the sum over the VM rows."""
    import random

    from xetool.master.snapshot import host_loads

    store = Store(tmp_path)
    rng = random.Random(7)
    with store.write() as txn:
        hosts = [txn.insert("host", {"name_label": f"h{i}"}) for i in range(4)]
    vms: list[str] = []
    aggregate = """
        SELECT h, COUNT(*), SUM(memory_overhead), SUM(memory_static_min), SUM(memory_dynamic_min),
               SUM(memory_dynamic_max), SUM(memory_static_max)
        FROM (SELECT resident_on AS h, * FROM vm WHERE resident_on IS NOT NULL UNION ALL
              SELECT scheduled_to_be_resident_on AS h, * FROM vm WHERE scheduled_to_be_resident_on IS NOT NULL
              AND (resident_on IS NULL OR resident_on != scheduled_to_be_resident_on)) GROUP BY h"""
    for step in range(400):
        with store.write() as txn:
            pick = rng.random()
            if pick < 0.3 or not vms:
                vms.append(txn.insert("vm", {"name_label": f"v{step}", "memory_overhead": rng.randrange(1 << 20),
                                             "resident_on": rng.choice(hosts + [None])}))
            elif pick < 0.8:
                txn.update("vm", rng.choice(vms), {
                    rng.choice(("resident_on", "scheduled_to_be_resident_on")): rng.choice(hosts + [None]),
                    "memory_dynamic_min": rng.randrange(1, 1 << 30)})
            else:
                txn.delete("vm", vms.pop(rng.randrange(len(vms))))
            expected = {row[0]: tuple(row[1:]) for row in txn.db.execute(aggregate)}
            got = {h: tuple(vars(load).values()) for h, load in host_loads(txn).items() if load.count}
            assert got == expected, f"step {step}"
    store.close()
