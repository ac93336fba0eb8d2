"""The pool's truth: one SQLite file, WAL mode, `BEGIN IMMEDIATE` for every write.

`Store.write()` is xapi's global lock: a check and the act it guards happen in one immediate
transaction, so two processes never both pass the same check. Reads take a deferred transaction,
which in WAL mode is a consistent snapshot that never blocks a writer.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager

from xetool import limits
from xetool.datamodel import CLASSES, get_class
from xetool.datamodel.types import ClassSpec, Field
from xetool.errors import XeError
from xetool.store import schema
from xetool.store.codec import UUID_RE, from_column, needs_decoding, to_column

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from pathlib import Path
    from typing import Any

DB_NAME = "pool.db"
Row = dict[str, "Any"]  # (a string: typing is not imported at run time)


def new_uuid() -> str:
    import uuid  # not needed by commands that only read

    return str(uuid.uuid4())


class Txn:
    """Typed access to the tables inside one transaction. Rows are dicts keyed by field name."""

    def __init__(self, db: sqlite3.Connection, writable: bool) -> None:
        self.db = db
        self.writable = writable

    # --- reading ------------------------------------------------------------------------------
    def get(self, cls: str, uuid: str, fields: Sequence[str] | None = None) -> Row | None:
        rows = self.select(cls, fields, {"uuid": uuid})
        return rows[0] if rows else None

    def must(self, cls: str, uuid: str, fields: Sequence[str] | None = None) -> Row:
        if not UUID_RE.match(uuid or ""):
            raise XeError("UUID_INVALID", cls, uuid)
        row = self.get(cls, uuid.lower(), fields)
        if row is None:
            raise XeError("HANDLE_INVALID", cls, uuid)
        return row

    def select(
        self,
        cls: str,
        fields: Sequence[str] | None = None,
        where: dict[str, Any] | None = None,
        order: str | None = None,
    ) -> list[Row]:
        spec = get_class(cls)
        wanted = _fields(spec, fields)
        stored = [f for f in wanted if f.persisted]
        if not any(f.name == "uuid" for f in stored):
            stored.insert(0, spec.field("uuid"))  # type: ignore[arg-type]
        sql = "SELECT " + ", ".join(f'"{f.name}"' for f in stored) + f' FROM "{spec.table}"'
        args: list[Any] = []
        if where:
            clauses = []
            for key, value in where.items():
                f = spec.field(key)
                if value is None:
                    clauses.append(f'"{f.name}" IS NULL')  # type: ignore[union-attr]
                else:
                    clauses.append(f'"{f.name}" = ?')  # type: ignore[union-attr]
                    args.append(to_column(f, value))  # type: ignore[arg-type]
            sql += " WHERE " + " AND ".join(clauses)
        sql += f' ORDER BY "{order}"' if order else " ORDER BY rowid"
        names = [f.name for f in stored]
        convert = [(f.name, f) for f in stored if needs_decoding(f)]  # the rest are stored as is
        out = []
        for raw in self.db.execute(sql, args):
            row = dict(zip(names, raw))
            for name, f in convert:
                row[name] = from_column(f, row[name])
            out.append(row)
        derived = [f for f in wanted if f.derived_from is not None]
        for f in derived:
            other, key = f.derived_from  # type: ignore[misc]
            for row in out:
                row[f.name] = [r[0] for r in self.db.execute(
                    f'SELECT uuid FROM "{other}" WHERE "{key}" = ? ORDER BY rowid', (row["uuid"],))]
        for f in wanted:
            if f.via is not None and out:
                self._read_via(f, out)
            elif f.computed:
                import importlib

                module, _, func = f.computed.partition(":")
                compute = getattr(importlib.import_module(module), func)
                for row in out:
                    row[f.name] = compute(self, row)
        return out

    def _read_via(self, f: Field, rows: list[Row]) -> None:
        """The field from the object that refers to each row (a VM's metrics), in one query."""
        other, key, name = f.via  # type: ignore[misc]
        there = get_class(other).field(name)
        found: dict[str, Any] = {}
        uuids = [r["uuid"] for r in rows]
        for i in range(0, len(uuids), 500):
            chunk = uuids[i:i + 500]
            sql = f'SELECT "{key}", "{name}" FROM "{other}" WHERE "{key}" IN ({", ".join("?" * len(chunk))})'
            for ref, raw in self.db.execute(sql, chunk):
                found[ref] = from_column(there, raw)  # type: ignore[arg-type]
        for row in rows:
            row[f.name] = found.get(row["uuid"], f.initial())

    def uuids(self, cls: str, where: dict[str, Any] | None = None) -> list[str]:
        return [r["uuid"] for r in self.select(cls, ["uuid"], where)]

    def count(self, cls: str) -> int:
        return int(self.db.execute(f'SELECT COUNT(*) FROM "{get_class(cls).table}"').fetchone()[0])

    def pool(self) -> Row:
        rows = self.select("pool")
        if not rows:
            raise XeError("STORE_CORRUPT", "pool", "the database holds no pool record")
        return rows[0]

    # --- writing ------------------------------------------------------------------------------
    def _writing(self) -> None:
        if not self.writable:
            raise XeError("INTERNAL_ERROR", "write attempted in a read transaction")

    def insert(self, cls: str, values: dict[str, Any]) -> str:
        self._writing()
        spec = get_class(cls)
        row = {f.name: f.initial() for f in spec.persisted_fields}
        for key, value in values.items():
            f = _field(spec, key)
            _bounded(spec, f, value)
            row[f.name] = value
        row["uuid"] = (row.get("uuid") or new_uuid()).lower()
        names = list(row)
        self.db.execute(
            f'INSERT INTO "{spec.table}" (' + ", ".join(f'"{n}"' for n in names) + ") VALUES ("
            + ", ".join("?" * len(names)) + ")",
            [to_column(spec.field(n), row[n]) for n in names],  # type: ignore[arg-type]
        )
        return str(row["uuid"])

    def update(self, cls: str, uuid: str, values: dict[str, Any]) -> None:
        self._writing()
        if not values:
            return
        spec = get_class(cls)
        fields = [_field(spec, k) for k in values]
        for f, v in zip(fields, values.values()):
            _bounded(spec, f, v)
        cur = self.db.execute(
            f'UPDATE "{spec.table}" SET ' + ", ".join(f'"{f.name}" = ?' for f in fields) + " WHERE uuid = ?",
            [to_column(f, v) for f, v in zip(fields, values.values())] + [uuid],
        )
        if cur.rowcount == 0:
            raise XeError("HANDLE_INVALID", cls, uuid)

    def delete(self, cls: str, uuid: str) -> None:
        self._writing()
        self.db.execute(f'DELETE FROM "{get_class(cls).table}" WHERE uuid = ?', (uuid,))


def _bounded(spec: ClassSpec, f: Field, value: Any) -> None:
    """Every write is within the field's bounds (xetool.limits): no path into the store can
    leave a number SQLite cannot hold or a name that breaks the record layout."""
    if isinstance(value, int) or (isinstance(value, str) and f.name in limits.NAME_FIELDS):
        limits.check_field(spec.name, f, value)


def _field(spec: ClassSpec, name: str) -> Field:
    f = spec.field(name)
    if f is None or not f.persisted:
        raise XeError("UNKNOWN_FIELD", spec.name, name)
    return f


def _fields(spec: ClassSpec, names: Iterable[str] | None) -> list[Field]:
    if names is None:  # the whole record: what is stored, and the one-to-many sets
        return [f for f in spec.fields if not f.on_demand]
    return [_field_any(spec, n) for n in names]


def _field_any(spec: ClassSpec, name: str) -> Field:
    f = spec.field(name)
    if f is None:
        raise XeError("UNKNOWN_FIELD", spec.name, name)
    return f


class Store:
    """The pool database in a state directory. Opening it creates and migrates it."""

    def __init__(self, state_dir: str | os.PathLike[str], busy_timeout: float | None = None) -> None:
        self.state = os.fspath(state_dir)  # strings, not Paths: see xetool.paths
        self.db_file = os.path.join(self.state, DB_NAME)
        timeout = busy_timeout if busy_timeout is not None else float(os.environ.get("XETOOL_DB_TIMEOUT", "30"))
        self.db = _open(self.state, self.db_file, timeout)
        self._migrate()

    @property
    def state_dir(self) -> Path:
        from pathlib import Path

        return Path(self.state)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def write(self) -> Iterator[Txn]:
        """One immediate write transaction: the pool's global lock, held briefly."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield Txn(self.db, True)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[Txn]:
        """A consistent snapshot for reading."""
        self.db.execute("BEGIN")
        try:
            yield Txn(self.db, False)
        finally:
            self.db.execute("COMMIT")

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > schema.SCHEMA_VERSION:
            raise XeError("SCHEMA_TOO_NEW", self.db_file, version, schema.SCHEMA_VERSION)
        fp = schema.fingerprint()
        if version == schema.SCHEMA_VERSION and self._meta("fingerprint") == fp:
            return
        with self.write() as txn:
            version = self.db.execute("PRAGMA user_version").fetchone()[0]  # re-read under the lock
            for number, (_name, apply) in enumerate(schema.MIGRATIONS[version:], start=version + 1):
                apply(self.db)
                self.db.execute(f"PRAGMA user_version = {number}")
            schema.add_missing_columns(self.db)
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('fingerprint', ?)", (fp,))
            if txn.count("pool") == 0:
                txn.insert("pool", {"name_label": "xetool pool"})

    def _meta(self, key: str) -> str | None:
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:
            return None
        return row[0] if row else None


def _open(state_dir: str, path: str, timeout: float) -> sqlite3.Connection:
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        if not os.path.exists(path):
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        if not os.access(state_dir, os.W_OK) or not os.access(path, os.W_OK):
            raise PermissionError("permission denied")
        db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db
    except (OSError, sqlite3.Error) as err:
        reason = getattr(err, "strerror", None) or str(err)
        if isinstance(err, sqlite3.DatabaseError) and "not a database" in str(err):
            raise XeError("STORE_CORRUPT", path, str(err)) from None
        raise XeError("STATE_DIR_NOT_WRITABLE", state_dir, reason) from None


__all__ = ["Store", "Txn", "Row", "new_uuid", "CLASSES"]
