"""The SQLite schema, derived from the datamodel, and its ordered migrations.

Each class is one table keyed by uuid, one column per persisted field; sets and maps are JSON;
one-to-many sets (host.resident_VMs, vm.VBDs, ...) are not stored but read back through the
foreign key on the other side, as xapi does. Migrations are named and applied in order; after
them, columns that a newer datamodel declares are added (with their defaults), so the schema
never has to be written out twice.
"""

from __future__ import annotations

import sqlite3
import zlib

from xetool.datamodel import CLASSES
from xetool.datamodel.types import ClassSpec, Kind
from xetool.store.codec import SQL_TYPES, to_column

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable

SCHEMA_VERSION = 1


def _column(f) -> str:  # type: ignore[no-untyped-def]
    default = to_column(f, f.initial())
    literal = "NULL" if default is None else repr(default) if not isinstance(default, str) else _quote(default)
    return f'"{f.name}" {SQL_TYPES[f.kind]} DEFAULT {literal}'


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def create_table(spec: ClassSpec) -> list[str]:
    cols = ", ".join(_column(f) for f in spec.persisted_fields if f.name != "uuid")
    stmts = [f'CREATE TABLE IF NOT EXISTS "{spec.table}" (uuid TEXT PRIMARY KEY NOT NULL, {cols})']
    for f in spec.persisted_fields:
        if f.kind is Kind.REF or f.name in ("name_label", "power_state", "name"):
            stmts.append(f'CREATE INDEX IF NOT EXISTS "idx__{spec.table}__{f.name}" ON "{spec.table}" ("{f.name}")')
    return stmts


def _initial(db: sqlite3.Connection) -> None:
    for spec in CLASSES.values():
        for stmt in create_table(spec):
            db.execute(stmt)
    # Host-local bookkeeping that is not part of the pool's datamodel: the memory broker's
    # reservations (squeezed's role), each owned by the task that made it.
    db.execute(
        "CREATE TABLE IF NOT EXISTS reservation (id TEXT PRIMARY KEY, host TEXT NOT NULL, vm TEXT NOT NULL,"
        " task TEXT NOT NULL, kib INTEGER NOT NULL, domid INTEGER DEFAULT -1, created REAL NOT NULL)"
    )


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("0001-initial", _initial),
]


def fingerprint() -> str:
    """Changes whenever a persisted field is added: triggers add_missing_columns."""
    text = "|".join(f"{c.name}.{f.name}:{f.kind.value}" for c in CLASSES.values() for f in c.persisted_fields)
    return f"{zlib.crc32(text.encode()):08x}"  # zlib is loaded at startup anyway; hashlib is not


def add_missing_columns(db: sqlite3.Connection) -> None:
    for spec in CLASSES.values():
        for stmt in create_table(spec):
            db.execute(stmt)
        have = {row[1] for row in db.execute(f'PRAGMA table_info("{spec.table}")')}
        for f in spec.persisted_fields:
            if f.name not in have:
                db.execute(f'ALTER TABLE "{spec.table}" ADD COLUMN {_column(f)}')
