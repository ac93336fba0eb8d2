"""Selecting objects as xe does: `vm=<name-label or uuid>`, `uuid=`, and field filters.

Scalar filters become SQL; map filters (`other-config:owner=ops`) and set filters
(`tags:contains=x`) are applied to the rows read back.
"""

from __future__ import annotations

from xetool.datamodel.types import ClassSpec, Field, Kind
from xetool.errors import XeError
from xetool.store.codec import UUID_RE, parse_cli, show
from xetool.store.db import Row, Txn

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


def split_filters(spec: ClassSpec, params: dict[str, str]) -> dict[str, str]:
    """The filter part of a command's parameters: the class pseudo-field and field names."""
    out = {}
    for key, value in params.items():
        base = key.split(":", 1)[0]
        if key == spec.name.replace("_", "-") or spec.field(base) is not None:
            out[key] = value
    return out


def select(
    txn: Txn,
    spec: ClassSpec,
    filters: dict[str, str],
    fields: Sequence[str] | None = None,
    strict: bool = False,
) -> list[Row]:
    """Rows of `spec` matching every filter, with `fields` (plus those the filters need).

    A value an enum field cannot have matches nothing (`power-state=bogus` lists nothing), as in
    xe, which compares the printed values; `strict` refuses it instead (event-wait would wait for
    it until its timeout)."""
    where: dict[str, Any] = {}
    post: list[tuple[Field, str | None, str]] = []  # (field, map key or None, value)
    by_name: str | None = None
    impossible = False
    for key, value in filters.items():
        if key == spec.name.replace("_", "-"):
            by_name = value
            continue
        base, _, sub = key.partition(":")
        f = spec.field(base)
        if f is None:
            raise XeError("UNKNOWN_FIELD", spec.name, key)
        if f.kind in (Kind.MAP, Kind.SET) or not f.persisted:
            post.append((f, sub or None, value))
        elif f.kind is Kind.REF and value and not UUID_RE.match(value):
            raise XeError("UUID_INVALID", f.ref, value)
        elif f.kind is Kind.ENUM and not strict and not any(v.lower() == value.lower() for v in f.values):
            impossible = True  # the other filters are still checked
        else:
            where[f.name] = parse_cli(f, value)
            if isinstance(where[f.name], int):  # a filter needs no field's range, only SQLite's
                from xetool.limits import INT64_MAX

                if not -INT64_MAX - 1 <= where[f.name] <= INT64_MAX:
                    raise XeError("VALUE_NOT_SUPPORTED", f.cli_name, value, "beyond a 64-bit integer")
    if impossible:
        return []
    want = None
    if fields is not None:
        want = list(dict.fromkeys(["uuid", *fields, *(f.name for f, _, _ in post)]))
        if by_name is not None and spec.has_name_label:
            want.append("name_label")
    if by_name is not None:
        if UUID_RE.match(by_name):
            rows = txn.select(spec.name, want, {**where, "uuid": by_name.lower()})
        elif spec.has_name_label:
            rows = txn.select(spec.name, want, {**where, "name_label": by_name})
        else:
            raise XeError("UUID_INVALID", spec.name, by_name)
    else:
        rows = txn.select(spec.name, want, where or None)
    for f, map_key, wanted in post:
        rows = [r for r in rows if _matches(f, map_key, wanted, r.get(f.name))]
    return rows


def matching(spec: ClassSpec, rows: list[Row], filters: dict[str, str]) -> list[Row]:
    """Rows of a view (records made in memory) matching every filter, as `select` matches the
    store's: `<class>=` by name-label or uuid, fields by value, maps and sets by key or member."""
    out = rows
    for key, value in filters.items():
        if key == spec.name.replace("_", "-"):
            out = [r for r in out if value in (r.get("uuid"), r.get("name_label"))]
            continue
        base, _, sub = key.partition(":")
        f = spec.field(base)
        if f is None:
            raise XeError("UNKNOWN_FIELD", spec.name, key)
        if f.kind in (Kind.MAP, Kind.SET):
            out = [r for r in out if _matches(f, sub or None, value, r.get(f.name))]
        elif f.kind is Kind.ENUM and not any(v.lower() == value.lower() for v in f.values):
            out = []  # as select: a value the field cannot have matches nothing
        else:
            want = parse_cli(f, value)
            out = [r for r in out if r.get(f.name) == want]
    return out


def _matches(f: Field, sub: str | None, value: str, have: Any) -> bool:
    if f.kind not in (Kind.MAP, Kind.SET):  # a scalar read from elsewhere (a VM's start-time)
        return show(f, have) == value
    if f.kind is Kind.MAP:
        if sub is None:
            raise XeError("SYNTAX_ERROR", f"filter on map {f.cli_name} needs a key: {f.cli_name}:KEY=VALUE")
        found: str | None = have.get(sub)  # `have` is the map's dict
        return found == value
    # sets: `tags:contains=x` (xe), or `tags=x` meaning "contains"
    if sub not in (None, "contains"):
        raise XeError("SYNTAX_ERROR", f"set filters are {f.cli_name}:contains=VALUE")
    return value in have


def resolve_one(txn: Txn, spec: ClassSpec, text: str, param: str) -> Row:
    """A `host=`/`vm=`-style value (name-label or uuid) naming exactly one object."""
    rows = select(txn, spec, {spec.name.replace("_", "-"): text}, ["uuid", "name_label"] if spec.has_name_label else ["uuid"])
    if not rows:
        raise XeError("NO_MATCHING_OBJECTS", f"{spec.name} ({param}={text})")
    if len(rows) > 1:
        raise XeError("MULTIPLE_MATCHES", f"{spec.name} ({param}={text}: use the uuid)", len(rows))
    return rows[0]


def require_count(spec: ClassSpec, rows: list[Row], multiple: bool) -> list[Row]:
    if not rows:
        raise XeError("NO_MATCHING_OBJECTS", spec.name)
    if len(rows) > 1 and not multiple:
        raise XeError("MULTIPLE_MATCHES", spec.name, len(rows))
    return rows
