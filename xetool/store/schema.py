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

SCHEMA_VERSION = 2


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


def _cpu_info_and_memory_target(db: sqlite3.Connection) -> None:
    """Host.cpu_info and VM.memory_target (issue 13): the columns, then their values for what
    the pool already holds (a running VM's target is what its metrics say it has)."""
    add_missing_columns(db)
    for uuid, cpus, backend in db.execute("SELECT uuid, cpu_count, backend FROM host WHERE cpu_info = '{}'").fetchall():
        import json

        from xetool.pooldef import cpu_info

        db.execute("UPDATE host SET cpu_info = ? WHERE uuid = ?", (json.dumps(cpu_info(cpus, backend)), uuid))
    db.execute("UPDATE vm SET memory_target = COALESCE((SELECT memory_actual FROM vm_metrics"
               " WHERE vm_metrics.VM = vm.uuid LIMIT 1), 0) WHERE power_state IN ('Running', 'Paused')")


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("0001-initial", _initial),
    ("0002-cpu-info-memory-target", _cpu_info_and_memory_target),
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
