"""Values between Python, SQLite columns and the command line, by field kind."""

from __future__ import annotations

import re

from xetool.datamodel.types import Field, Kind
from xetool.errors import XeError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any

SQL_TYPES = {
    Kind.STR: "TEXT", Kind.INT: "INTEGER", Kind.FLOAT: "REAL", Kind.BOOL: "INTEGER",
    Kind.DATETIME: "TEXT", Kind.ENUM: "TEXT", Kind.REF: "TEXT", Kind.SET: "TEXT", Kind.MAP: "TEXT",
}
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def to_column(f: Field, value: Any) -> Any:
    if f.kind in (Kind.SET, Kind.MAP):
        import json  # imported on first use: listings of scalar fields never need it

        return json.dumps(value, separators=(",", ":"))
    if f.kind is Kind.BOOL:
        return int(bool(value))
    return value


def from_column(f: Field, raw: Any) -> Any:
    if f.kind in (Kind.SET, Kind.MAP):
        if raw == "{}":  # most maps and sets are empty: no parser needed
            return {}
        if raw == "[]":
            return []
        if not raw:
            return f.initial()
        import json

        return json.loads(raw)
    if f.kind is Kind.BOOL:
        return bool(raw)
    return raw


def needs_decoding(f: Field) -> bool:
    """False if from_column returns the column's value unchanged for this field."""
    return f.kind in (Kind.SET, Kind.MAP, Kind.BOOL)


def parse_bool(text: str) -> bool | None:
    low = text.strip().lower()
    return True if low in _TRUE else False if low in _FALSE else None


def is_size(f: Field) -> bool:
    """Byte counts (memory, disk sizes) take units on the command line and in pool files."""
    return f.name.startswith("memory") or f.name == "virtual_size"


def parse_cli(f: Field, text: str) -> Any:
    """A CLI string as a value of the field's kind (scalars and enums; refs must be uuids)."""
    kind = f.kind
    if kind is Kind.INT and is_size(f):
        from xetool.units import parse_size

        return parse_size(text, f.cli_name)
    try:
        if kind is Kind.INT:
            return int(text, 0) if text.strip().lower().startswith(("0x", "0o", "0b")) else int(text)
        if kind is Kind.FLOAT:
            number = float(text)
            if number != number or number in (float("inf"), float("-inf")):  # SQLite stores NaN as NULL
                raise ValueError(text)
            return number
    except ValueError:
        raise XeError("FIELD_TYPE_ERROR", f.cli_name, text, kind.value) from None
    if kind is Kind.BOOL:
        parsed = parse_bool(text)
        if parsed is None:
            raise XeError("FIELD_TYPE_ERROR", f.cli_name, text, "bool (true or false)")
        return parsed
    if kind is Kind.ENUM:
        for v in f.values:
            if v.lower() == text.lower():
                return v
        raise XeError("FIELD_TYPE_ERROR", f.cli_name, text, "one of " + ", ".join(v or '""' for v in f.values))
    if kind is Kind.REF:
        if text == "":
            return None
        if not UUID_RE.match(text):
            raise XeError("UUID_INVALID", f.ref, text)
        return text.lower()
    from xetool import limits

    limits.check_text(f.cli_name, text)
    return text


def map_entry(f: Field, key: str, value: str) -> tuple[str, str]:
    """One key and value of a map field as given on the command line or in a pool file."""
    from xetool import limits

    if not key:
        raise XeError("EMPTY_VALUE", f"{f.cli_name}:")
    limits.check_text(f"{f.cli_name}:{key}", key, limit=limits.NAME_MAX, line=True)
    limits.check_text(f"{f.cli_name}:{key}", value)
    return key, value


def show(f: Field, value: Any) -> str:
    """A value as xe prints it: maps as `k: v; k2: v2`, sets as `a; b`, enums of power state lower case."""
    kind = f.kind
    if kind is Kind.MAP:
        return "; ".join(f"{k}: {v}" for k, v in value.items())
    if kind is Kind.SET:
        return "; ".join(str(v) for v in value)
    if kind is Kind.BOOL:
        return "true" if value else "false"
    if kind is Kind.REF:
        return value or "<not in database>"
    if kind is Kind.ENUM and f.name in ("power_state", "status"):
        return str(value).lower()
    if value is None:
        return ""
    if kind is Kind.FLOAT:
        return repr(float(value))
    return str(value)


def escape_minimal(text: str) -> str:
    """--minimal joins values with commas: escape backslashes and commas as xe does."""
    return text.replace("\\", "\\\\").replace(",", "\\,")


def split_escaped(text: str, sep: str = ",") -> list[str]:
    """Split a comma list honouring `\\,` and `\\\\` escapes."""
    out, cur, it = [], [], iter(text)
    for ch in it:
        if ch == "\\":
            nxt = next(it, "")
            cur.append(nxt)
        elif ch == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out
