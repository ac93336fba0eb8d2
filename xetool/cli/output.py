"""Commands return values; this module prints them.

Renderers: xe's record text (the default), `--minimal` (the first field of each record, joined
by commas with `\\,` escaping) and `--format json`. Nothing here imports rich: decoration lives
in `progress.py` and only on a terminal.
"""

from __future__ import annotations

from xetool.datamodel.types import ClassSpec, Field, Kind
from xetool.records import field, record
from xetool.store.codec import escape_minimal, show

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, TextIO


@record
class Records:
    """Objects of one class, with the fields to print in record order."""

    spec: ClassSpec
    rows: list[dict[str, Any]]
    fields: Sequence[Field]
    listing: bool = False  # a -list: expensive fields print `<expensive field>`, as xe does


@record
class Value:
    """One value on one line (param-get, a new object's uuid); `data` is the typed value for
    --format json (a map as an object, a number as a number), when there is one."""

    text: str
    data: Any = None
    typed: bool = False  # `data` is set (None is a value: a null reference)


@record
class Message:
    """Informational text; dropped under --minimal, as xe does."""

    text: str


@record
class Table:
    """Rows of named columns (placement tables, simulated hosts)."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    title: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # more for --format json


@record
class Many:
    """Several outputs, printed in order (for --multiple)."""

    parts: list[Any]


Output = Records | Value | Message | Table | Many | None


def xe_record(pairs: Sequence[tuple[str, str]]) -> str:
    """xe's layout: the first key left-aligned, the rest right-aligned, then two blank lines."""
    if not pairs:
        return ""
    width = 4 + max(len(k) for k, _ in pairs)
    (k0, v0), rest = pairs[0], pairs[1:]
    lines = [f"{k0.ljust(width)}: {v0}"]
    lines += [f"{k.rjust(width)}: {v}" for k, v in rest]
    return "\n".join(lines) + "\n\n\n"


def json_value(f: Field, value: Any) -> Any:
    """A field's value for --format json: maps as objects, sets as lists, numbers and booleans
    as themselves, enums of state lower case (as printed)."""
    if f.kind is Kind.ENUM and f.name in ("power_state", "status"):
        return str(value).lower()
    if f.kind is Kind.MAP:
        return dict(value or {})
    if f.kind is Kind.SET:
        return list(value or [])
    return value


def render(out: Output, stream: TextIO, *, minimal: bool = False, fmt: str = "xe") -> None:
    if out is None:
        return
    if isinstance(out, Many):
        if fmt == "json":
            import json

            stream.write(json.dumps([_json(p) for p in out.parts], indent=2) + "\n")
            return
        for part in out.parts:
            render(part, stream, minimal=minimal, fmt=fmt)
        return
    if fmt == "json":
        import json

        stream.write(json.dumps(_json(out), indent=2) + "\n")
        return
    if isinstance(out, Records):
        if minimal:
            first = out.fields[0] if out.fields else None
            vals = [escape_minimal(show(first, r.get(first.name))) for r in out.rows] if first else []
            stream.write(",".join(vals) + "\n")
            return
        if not out.rows or not out.fields:
            return
        # Every record of a listing has the same keys: lay them out once (xe_record's layout).
        prefixes = xe_record([(f"{f.cli_name} {f.marker}", "") for f in out.fields]).split("\n")[:len(out.fields)]
        cols = [(p, f, f.name) for p, f in zip(prefixes, out.fields)]
        value = _listed if out.listing else (lambda f, row: show(f, row.get(f.name)))
        stream.write("".join(
            "\n".join(p + value(f, row) for p, f, name in cols) + "\n\n\n" for row in out.rows))
    elif isinstance(out, Value):
        stream.write(out.text + "\n")
    elif isinstance(out, Message):
        if not minimal:
            stream.write(out.text + ("" if out.text.endswith("\n") else "\n"))
    elif isinstance(out, Table):
        if minimal:
            stream.write(",".join(escape_minimal(str(r[0])) for r in out.rows) + "\n")
            return
        stream.write(format_table(out))


EXPENSIVE = "<expensive field>"


def _listed(f: Field, row: dict[str, Any]) -> str:
    return EXPENSIVE if f.expensive else show(f, row.get(f.name))


def format_table(t: Table) -> str:
    cells = [list(map(str, t.columns))] + [[str(c) for c in r] for r in t.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(t.columns))]
    lines = [t.title] if t.title else []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def _json(out: Output) -> Any:
    if isinstance(out, Records):
        return [{f.cli_name: EXPENSIVE if out.listing and f.expensive else json_value(f, r.get(f.name))
                 for f in out.fields} for r in out.rows]
    if isinstance(out, Value):
        return out.data if out.typed else out.text
    if isinstance(out, Message):
        return {"message": out.text}
    if isinstance(out, Table):
        return {"columns": list(out.columns), "rows": [list(r) for r in out.rows], **out.extra}
    if isinstance(out, Many):
        return [_json(p) for p in out.parts]
    return None
