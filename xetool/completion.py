"""Candidates for bash completion that live in the pool database: uuids and name-labels.

Everything else (commands, parameter names, enums, field lists, files) is answered by tables in
completions/xetool.bash without running a process. This module is what that script runs for the
rest, and it must answer in a few milliseconds: scripts/gen-completion embeds its source in the
script, which runs it as `python3 -S -I -c SOURCE mode class prefix state-dir`. So it imports
nothing but the standard library (no site, no click, no xetool), opens pool.db read-only, and
learns the tables and columns it reads from LABELS, which the generator fills in from the
datamodel (tests/shell check the two agree, and that the queries run on a real store).

Output: one candidate per line; for uuids `uuid<TAB>label`, so the script can show which
object each uuid is.
"""

from __future__ import annotations

import os
import sqlite3
import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing would cost the helper ~10 ms
if TYPE_CHECKING:
    from typing import Any

# class -> {"label": [[column, joined table or None], ...], "names": bool, "where": [[column, value]],
#           "keyed": {cli name: [column, "map" or "set"]}}
# None when imported from the package: derived from the datamodel on first use.
LABELS: dict[str, dict[str, Any]] | None = None


def labels_from_datamodel() -> dict[str, dict[str, Any]]:
    """What the helper reads of each class: how to describe a uuid, and the default filter."""
    from xetool.datamodel import CLASSES
    from xetool.datamodel.types import Kind

    out: dict[str, dict[str, Any]] = {}
    for spec in CLASSES.values():
        if spec.has_name_label:
            label: list[list[Any]] = [["name_label", None]]
        else:  # two default columns of <class>-list, references first: a vif is "web01 lan"
            label = []
            shown = [spec.field(n) for n in spec.list_params if n != "uuid"]
            for f in sorted((f for f in shown if f is not None and f.persisted), key=lambda f: f.kind is not Kind.REF):
                named = f.kind is Kind.REF and f.ref in CLASSES and CLASSES[f.ref].has_name_label
                label.append([f.name, f.ref if named else None])
            label = label[:2]
        where = [[name, int(v) if isinstance(v, bool) else v] for name, v in spec.list_filter]
        keyed = {f.cli_name: [f.name, f.kind.value] for f in spec.fields
                 if f.kind in (Kind.MAP, Kind.SET) and f.persisted}
        out[spec.name] = {"label": label, "names": spec.has_name_label, "where": where, "keyed": keyed}
    return out


def _labels() -> dict[str, dict[str, Any]]:
    global LABELS
    if LABELS is None:
        LABELS = labels_from_datamodel()
    return LABELS


def state_dir(explicit: str = "") -> str:
    """The same resolution as xetool.paths.state_dir_name, without importing it."""
    if explicit:
        return os.path.expanduser(explicit)
    env = os.environ.get("XETOOL_STATE_DIR")
    if env:
        return env
    if os.geteuid() == 0:
        return "/var/lib/xetool"
    xdg = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(xdg, "xetool")


def open_readonly(state: str) -> sqlite3.Connection | None:
    """pool.db opened read-only (never created, never migrated); None if there is none."""
    path = os.path.join(state, "pool.db")
    if not os.path.isfile(path):
        return None
    uri = "file:" + path.replace("%", "%25").replace("?", "%3f").replace("#", "%23") + "?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=0.05)
        db.execute("PRAGMA query_only = 1")
        return db
    except sqlite3.Error:
        return None


def _where(spec: dict[str, Any]) -> tuple[str, list[Any]]:
    clauses = [f't."{col}" = ?' for col, _ in spec["where"]]
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), [v for _, v in spec["where"]]


def uuids(db: sqlite3.Connection, cls: str, prefix: str = "") -> list[tuple[str, str]]:
    """(uuid, label) of the class's objects whose uuid starts with prefix."""
    spec = _labels().get(cls)
    if spec is None:
        return []
    cols, joins = [], []
    for n, (col, joined) in enumerate(spec["label"]):
        if joined:
            joins.append(f' LEFT JOIN "{joined}" j{n} ON j{n}.uuid = t."{col}"')
            cols.append(f'coalesce(j{n}.name_label, t."{col}")')
        else:
            cols.append(f't."{col}"')
    label = " || ' ' || ".join(f"coalesce({c}, '')" for c in cols) or "''"
    where, args = _where(spec)
    sql = f'SELECT t.uuid, {label} FROM "{cls}" t{"".join(joins)}{where} ORDER BY t.rowid'
    return [(u, lab.strip()) for u, lab in db.execute(sql, args) if u.startswith(prefix.lower())]


def names(db: sqlite3.Connection, cls: str, prefix: str = "") -> list[str]:
    """Name-labels for `vm=`-style selectors; uuids when nothing is named so (or no names)."""
    spec = _labels().get(cls)
    if spec is None:
        return []
    found: list[str] = []
    if spec["names"]:
        where, args = _where(spec)
        rows = db.execute(f'SELECT DISTINCT t.name_label FROM "{cls}" t{where} ORDER BY t.rowid', args)
        found = [n for (n,) in rows if n and n.startswith(prefix)]
    if not found and (prefix or not spec["names"]):
        found = [u for u, _ in uuids(db, cls, prefix)]
    return found


def keys(db: sqlite3.Connection, cls: str, field: str, prefix: str = "", uuid: str = "") -> list[str]:
    """The keys a map field has (the members of a set) in the pool: on the object `uuid`, or on
    any object of the class; stored as JSON, read with SQLite's json_each."""
    spec = _labels().get(cls)
    if not spec:
        return []
    keyed = spec["keyed"].get(field)
    if keyed is None:
        return []
    column, kind = keyed
    part = "j.key" if kind == "map" else "j.value"
    where, args = _where(spec) if not uuid else (" WHERE t.uuid = ?", [uuid.lower()])
    sql = f'SELECT DISTINCT {part} FROM "{cls}" t, json_each(t."{column}") j{where} ORDER BY 1'
    return [k for (k,) in db.execute(sql, args) if isinstance(k, str) and k.startswith(prefix)]


def main(argv: list[str]) -> int:
    """argv: mode (u, n or k), class, prefix, state dir (may be empty); for k, the field's CLI
    name and, if one is given, the object's uuid."""
    if len(argv) < 2:
        return 2
    mode, cls = argv[0], argv[1]
    prefix = argv[2] if len(argv) > 2 else ""
    db = open_readonly(state_dir(argv[3] if len(argv) > 3 else ""))
    if db is None:
        return 0
    try:
        if mode == "u":
            lines = [f"{u}\t{lab}" for u, lab in uuids(db, cls, prefix)]
        elif mode == "k":
            lines = keys(db, cls, argv[4] if len(argv) > 4 else "", prefix, argv[5] if len(argv) > 5 else "")
        else:
            lines = names(db, cls, prefix)
    except sqlite3.Error:  # a locked or older database: no candidates rather than an error
        return 0
    finally:
        db.close()
    sys.stdout.write("".join(line.replace("\n", " ") + "\n" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
