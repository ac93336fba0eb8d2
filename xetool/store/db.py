"""The pool's truth: one SQLite file, WAL mode, `BEGIN IMMEDIATE` for every write.

`Store.write()` is xapi's global lock: a check and the act it guards happen in one immediate
transaction, so two processes never both pass the same check. Reads take a deferred transaction,
which in WAL mode is a consistent snapshot that never blocks a writer.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager

from xetool import limits, paths
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

    def __init__(self, db: sqlite3.Connection, writable: bool, path: str = DB_NAME) -> None:
        self.db = db
        self.writable = writable
        self.path = path  # the database file, for errors

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
            stored.insert(0, spec.field_named("uuid"))
        sql = "SELECT " + ", ".join(f'"{f.name}"' for f in stored) + f' FROM "{spec.table}"'
        args: list[Any] = []
        if where:
            clauses = []
            for key, value in where.items():
                f = _field_any(spec, key)
                if value is None:
                    clauses.append(f'"{f.name}" IS NULL')
                else:
                    clauses.append(f'"{f.name}" = ?')
                    args.append(to_column(f, value))
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
        for f in wanted:
            if f.derived_from is None:
                continue
            other, key = f.derived_from
            for row in out:
                row[f.name] = [r[0] for r in self.db.execute(
                    f'SELECT uuid FROM "{other}" WHERE "{key}" = ? ORDER BY rowid', (row["uuid"],))]
        for f in wanted:
            if f.via is not None and out:
                self._read_via(f, f.via, out)
            elif f.computed:
                import importlib

                module, _, func = f.computed.partition(":")
                compute = getattr(importlib.import_module(module), func)
                for row in out:
                    row[f.name] = compute(self, row)
        return out

    def _read_via(self, f: Field, via: tuple[str, str, str], rows: list[Row]) -> None:
        """The field from the object that refers to each row (a VM's metrics), in one query;
        `via` is the field's (class, its ref to us, its field)."""
        other, key, name = via
        there = get_class(other).field_named(name)
        found: dict[str, Any] = {}
        uuids = [r["uuid"] for r in rows]
        for i in range(0, len(uuids), 500):
            chunk = uuids[i:i + 500]
            sql = f'SELECT "{key}", "{name}" FROM "{other}" WHERE "{key}" IN ({", ".join("?" * len(chunk))})'
            for ref, raw in self.db.execute(sql, chunk):
                found[ref] = from_column(there, raw)
        for row in rows:
            row[f.name] = found.get(row["uuid"], f.initial())

    def uuids(self, cls: str, where: dict[str, Any] | None = None) -> list[str]:
        return [r["uuid"] for r in self.select(cls, ["uuid"], where)]

    def count(self, cls: str) -> int:
        return int(self.db.execute(f'SELECT COUNT(*) FROM "{get_class(cls).table}"').fetchone()[0])

    def pool(self) -> Row:
        rows = self.select("pool")
        if not rows:
            raise XeError("STORE_CORRUPT", self.path, "NO_POOL_RECORD", "the database holds no pool record")
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
            [to_column(spec.field_named(n), row[n]) for n in names],
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
        limits.check_field(f, value)


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
    """The pool database in a state directory.

    `create=True` (pool-import, tests, benchmarks) makes a new pool where there is none; every
    other command opens an existing one, and a state directory with no pool is POOL_NOT_FOUND.
    An existing `pool.db` is never re-initialised: an empty, truncated, foreign or non-SQLite
    file is STORE_CORRUPT, left as it is. Every SQLite error becomes a registry error naming the
    file (`store_error`)."""

    def __init__(self, state_dir: str | os.PathLike[str], busy_timeout: float | None = None,
                 create: bool = True) -> None:
        self.state = os.fspath(state_dir)  # strings, not Paths: see xetool.paths
        self.db_file = os.path.join(self.state, DB_NAME)
        self.timeout = busy_timeout if busy_timeout is not None else float(os.environ.get("XETOOL_DB_TIMEOUT", "30"))
        if not paths.ensure_state_dir(self.state, create) or not os.path.lexists(self.db_file):
            if not create:
                raise XeError("POOL_NOT_FOUND", self.state)
            _create(self.db_file, self.timeout)
        self.db = _open(self.db_file, self.timeout)
        try:
            self._migrate()
        except BaseException:
            self.db.close()
            raise

    @property
    def state_dir(self) -> Path:
        from pathlib import Path

        return Path(self.state)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def write(self) -> Iterator[Txn]:
        """One immediate write transaction: the pool's global lock, held briefly."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield Txn(self.db, True, self.db_file)
            except BaseException:
                self._rollback()
                raise
            self.db.execute("COMMIT")
        except sqlite3.Error as err:
            self._rollback()
            raise store_error(err, self.db_file, self.timeout) from None

    @contextmanager
    def read(self) -> Iterator[Txn]:
        """A consistent snapshot for reading."""
        try:
            self.db.execute("BEGIN")
            try:
                yield Txn(self.db, False, self.db_file)
            finally:
                if self.db.in_transaction:
                    self.db.execute("COMMIT")
        except sqlite3.Error as err:
            self._rollback()
            raise store_error(err, self.db_file, self.timeout) from None

    def _rollback(self) -> None:
        """Roll back if a transaction is still open (a failed COMMIT may have ended it already);
        a rollback that fails too must not hide the error that caused it."""
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def _migrate(self) -> None:
        try:
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > schema.SCHEMA_VERSION:
                raise XeError("SCHEMA_TOO_NEW", self.db_file, version, schema.SCHEMA_VERSION)
            fp = schema.fingerprint()
            if version == schema.SCHEMA_VERSION and self._meta("fingerprint") == fp:
                return
        except sqlite3.Error as err:
            raise store_error(err, self.db_file, self.timeout) from None
        with self.write() as txn:
            version = self.db.execute("PRAGMA user_version").fetchone()[0]  # re-read under the lock
            if version == 0 and self.db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
                raise XeError("STORE_CORRUPT", self.db_file, "NOT_A_POOL",
                              "an SQLite database, but not one of xetool's (it has tables and no schema version)")
            for number, (_name, apply) in enumerate(schema.MIGRATIONS[version:], start=version + 1):
                apply(self.db)
                self.db.execute(f"PRAGMA user_version = {number}")
            schema.add_missing_columns(self.db)
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('fingerprint', ?)", (fp,))
            if version == 0:  # a new database: its one pool record (an old one missing it is corrupt)
                txn.insert("pool", {"name_label": "xetool pool"})

    def _meta(self, key: str) -> str | None:
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:
            return None
        return row[0] if row else None


# The store's durability: see README, "What survives a power cut". In WAL mode NORMAL keeps the
# database consistent through a power cut but may lose the last commits; FULL syncs the WAL on
# every commit. XETOOL_DB_SYNCHRONOUS overrides it (the benchmark measures both).
SYNCHRONOUS = "FULL"
HEADER = b"SQLite format 3\x00"


def _check_file(path: str) -> None:
    """Refuse, before SQLite sees it, a pool.db that SQLite would silently treat as a new empty
    database (a zero-length file) or that is plainly not one: a truncated or foreign file."""
    try:
        with open(path, "rb") as f:
            header = f.read(100)
            size = os.fstat(f.fileno()).st_size
    except OSError as err:
        raise paths.state_dir_error(path, err) from None
    if size == 0:
        raise XeError("STORE_CORRUPT", path, "EMPTY", "the file is empty (0 bytes); it was not re-initialised")
    if len(header) < 100 or not header.startswith(HEADER):
        raise XeError("STORE_CORRUPT", path, "SQLITE_NOTADB", "the file is not an SQLite database")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    in_wal = os.path.exists(path + "-wal") and os.path.getsize(path + "-wal") > 0  # the rest may be there
    if pages and header[24:28] == header[92:96] and size < page_size * pages and not in_wal:
        raise XeError("STORE_CORRUPT", path, "SQLITE_CORRUPT",
                      f"the file is truncated: {size} bytes of {page_size * pages}")


def _connect(path: str, timeout: float) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={os.environ.get('XETOOL_DB_SYNCHRONOUS') or SYNCHRONOUS}")
    return db


def _open(path: str, timeout: float) -> sqlite3.Connection:
    _check_file(path)
    if not os.access(path, os.W_OK):  # SQLite would open it read-only and fail at the first write
        raise paths.state_dir_error(path, PermissionError(13, "permission denied on the file"))
    try:
        return _connect(path, timeout)
    except sqlite3.Error as err:
        raise store_error(err, path, timeout) from None


def _create(path: str, timeout: float) -> None:
    """A new, complete pool database, or none: it is built under a temporary name and linked into
    place, so nobody ever sees (and no later command ever re-initialises) a half-made pool.db.
    If another process links its own first, that one is the pool."""
    tmp = f"{path}.new-{os.getpid()}"
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        db = _connect(tmp, timeout)
        try:
            db.execute("PRAGMA user_version")  # makes the file: header, WAL mode
        finally:
            db.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    except OSError as err:
        raise paths.state_dir_error(os.path.dirname(path) or ".", err) from None
    except sqlite3.Error as err:
        raise store_error(err, path, timeout) from None
    finally:
        for leftover in (tmp, tmp + "-wal", tmp + "-shm"):
            try:
                os.unlink(leftover)
            except OSError:
                pass


# SQLite's primary result codes (the low byte of an extended code) that need their own advice.
_BUSY, _LOCKED, _PERM, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 3, 8, 10, 11, 13, 14, 26


def store_error(err: Exception, path: str, timeout: float = 0.0) -> XeError:
    """Any exception of the sqlite3 module as a registry error naming the file and SQLite's code
    (exit 1, never 70): a full disk, an I/O error, a read-only file system or a permission problem
    (told apart by the file system's mount flags), a corrupt file, or a lock held past the busy
    timeout."""
    code = getattr(err, "sqlite_errorname", None) or type(err).__name__
    primary = (getattr(err, "sqlite_errorcode", None) or 1) & 0xFF
    reason = str(err)
    if primary in (_BUSY, _LOCKED):
        return XeError("LOCK_TIMEOUT", f"the pool database {path}", "another xetool command", f"{timeout:g}")
    if primary == _FULL or (primary == _IOERR and paths.no_space_left(path)):
        return XeError("STORE_DISK_FULL", path, code)
    if primary in (_CORRUPT, _NOTADB):
        return XeError("STORE_CORRUPT", path, code, reason)
    if primary in (_READONLY, _PERM, _CANTOPEN) or (primary == _IOERR and paths.on_read_only_fs(path)):
        if paths.on_read_only_fs(path):
            return XeError("STATE_DIR_READ_ONLY", os.path.dirname(path), code)
        if primary != _CANTOPEN or not os.access(os.path.dirname(path) or ".", os.W_OK):
            return XeError("STATE_DIR_NOT_WRITABLE", os.path.dirname(path), f"{code}: {reason}")
    if primary == _IOERR or primary == _CANTOPEN:
        return XeError("STORE_IO_ERROR", path, code, reason)
    return XeError("STORE_ERROR", path, code, reason)


__all__ = ["Store", "Txn", "Row", "new_uuid", "CLASSES"]
