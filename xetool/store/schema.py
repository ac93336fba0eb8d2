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
from xetool.datamodel.types import ClassSpec, Field, Kind
from xetool.store.codec import SQL_TYPES, to_column

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable

SCHEMA_VERSION = 4


def _column(f: Field) -> str:
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
    # The master's copy of each host's memory broker reservations (squeezed's role; the host
    # keeps the originals), each owned by the task that made it: placement counts a start once.
    db.execute(
        "CREATE TABLE IF NOT EXISTS reservation (id TEXT PRIMARY KEY, host TEXT NOT NULL, vm TEXT NOT NULL,"
        " task TEXT NOT NULL, kib INTEGER NOT NULL, domid INTEGER DEFAULT -1, created REAL NOT NULL)"
    )


# Placement charges each host with the VMs resident there plus those scheduled there and not yet
# resident (master/snapshot.py), at every start. Summing 20,000 VM rows costs 8-30 ms; the
# database keeps the sums itself instead, in host_load, by triggers inside the very transaction
# that changes a VM, so they can never drift from the rows they sum.
_LOAD_SUMS = ("n", "overhead", "static_min", "dynamic_min", "dynamic_max", "static_max")
_LOAD_OF = ("1", "memory_overhead", "memory_static_min", "memory_dynamic_min", "memory_dynamic_max",
            "memory_static_max")


def _charge(row: str, sign: str) -> list[str]:
    """Statements adding (sign "+") or removing ("-") one VM row (NEW or OLD) to its hosts."""
    values = ", ".join(f"{sign}coalesce({row}.{c}, 0)" if c != "1" else f"{sign}1" for c in _LOAD_OF)
    update = ", ".join(f"{name} = {name} + excluded.{name}" for name in _LOAD_SUMS)
    out = []
    for host, only_if in ((f"{row}.resident_on", f"{row}.resident_on IS NOT NULL"),
                          (f"{row}.scheduled_to_be_resident_on",
                           f"{row}.scheduled_to_be_resident_on IS NOT NULL AND ({row}.resident_on IS NULL"
                           f" OR {row}.resident_on != {row}.scheduled_to_be_resident_on)")):
        out.append(f"INSERT INTO host_load (host, {', '.join(_LOAD_SUMS)}) SELECT {host}, {values} WHERE {only_if}"
                   f" ON CONFLICT(host) DO UPDATE SET {update};")
    return out


def _host_load(db: sqlite3.Connection) -> None:
    cols = ", ".join(f"{name} INTEGER NOT NULL DEFAULT 0" for name in _LOAD_SUMS)
    db.execute(f"CREATE TABLE IF NOT EXISTS host_load (host TEXT PRIMARY KEY, {cols})")
    watched = ", ".join(("resident_on", "scheduled_to_be_resident_on") + _LOAD_OF[1:])
    for name, when, body in (
        ("insert", "AFTER INSERT ON vm", _charge("NEW", "+")),
        ("delete", "AFTER DELETE ON vm", _charge("OLD", "-")),
        ("update", f"AFTER UPDATE OF {watched} ON vm", _charge("OLD", "-") + _charge("NEW", "+")),
    ):
        db.execute(f"CREATE TRIGGER IF NOT EXISTS host_load_{name} {when} BEGIN {' '.join(body)} END")
    # the VMs already there, summed once
    sums = ", ".join(f"SUM({'1' if c == '1' else f'coalesce({c}, 0)'})" for c in _LOAD_OF)
    db.execute("DELETE FROM host_load")
    db.execute(f"INSERT INTO host_load (host, {', '.join(_LOAD_SUMS)}) SELECT h, {sums} FROM ("
               "SELECT resident_on AS h, * FROM vm WHERE resident_on IS NOT NULL UNION ALL "
               "SELECT scheduled_to_be_resident_on AS h, * FROM vm WHERE scheduled_to_be_resident_on IS NOT NULL"
               " AND (resident_on IS NULL OR resident_on != scheduled_to_be_resident_on)) GROUP BY h")


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


def _host_memory_report(db: sqlite3.Connection) -> None:
    """The last memory report recorded from each host's broker (issue 12): the broker numbers
    its reports, and one that arrives after a later one is not recorded (the hosts' answers
    reach the master over separate connections)."""
    db.execute("CREATE TABLE IF NOT EXISTS host_memory_report (host TEXT PRIMARY KEY, epoch TEXT NOT NULL,"
               " seq INTEGER NOT NULL)")


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("0001-initial", _initial),
    ("0002-host-load", _host_load),
    ("0003-cpu-info-memory-target", _cpu_info_and_memory_target),
    ("0004-host-memory-report", _host_memory_report),
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
