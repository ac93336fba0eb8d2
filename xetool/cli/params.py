"""The generic per-class commands, generated from the datamodel:
<class>-list, -param-list, -param-get, -param-set, -param-add, -param-remove, -param-clear.
"""

from __future__ import annotations

from xetool import constraints
from xetool.cli.context import Context
from xetool.cli.grammar import Args
from xetool.cli.output import Output, Records, Value, json_value
from xetool.cli.registry import Command
from xetool.cli.selectors import select, split_filters
from xetool.datamodel import get_class
from xetool.datamodel.types import ClassSpec, Field, Kind
from xetool.errors import XeError
from xetool.store.codec import map_entry, parse_cli, show, split_escaped

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any


def record_fields(spec: ClassSpec, params: str | None) -> list[Field]:
    """Fields to print, in record order: params=a,b / params=all / the class's defaults."""
    if params is None:
        wanted = set(spec.list_params)
        return [f for f in spec.fields if f.name in wanted]
    if params.strip() == "all":
        return [f for f in spec.fields if not f.hidden]
    names = [n.strip() for n in split_escaped(params) if n.strip()]
    picked = set()
    for name in names:
        f = spec.field(name)
        if f is None:
            raise XeError("UNKNOWN_FIELD", spec.name, name)
        picked.add(f.name)
    return [f for f in spec.fields if f.name in picked]


def list_cmd(ctx: Context, cmd: Command, args: Args) -> Output:
    spec = get_class(cmd.cls or "")
    fields = record_fields(spec, args.get("params"))
    filters = split_filters(spec, {k: v for k, v in args.params.items() if k != "params"})
    for name, value in spec.list_filter:
        f = spec.field(name)
        if f is not None and f.cli_name not in filters:
            filters[f.cli_name] = show(f, value)
    if spec.name in ("host", "vm"):  # listings show a crashed host and a dead command's marks cleared
        from xetool.backends.simulator.liveness import notice_crashed_hosts
        from xetool.tasks import notice_dead_tasks

        notice_crashed_hosts(ctx.store)
        notice_dead_tasks(ctx.store)
    with ctx.store.read() as txn:  # expensive fields are not computed for a listing (xe)
        rows = select(txn, spec, filters, [f.name for f in fields if not f.expensive])
    return Records(spec, rows, fields, listing=True)


def param_list(ctx: Context, cmd: Command, args: Args) -> Output:
    spec = get_class(cmd.cls or "")
    fields = [f for f in spec.fields if not f.hidden]
    with ctx.store.read() as txn:
        row = txn.must(spec.name, args.params["uuid"], [f.name for f in fields])
    return Records(spec, [row], fields)


def _field(spec: ClassSpec, name: str) -> Field:
    f = spec.field(name)
    if f is None:
        raise XeError("UNKNOWN_FIELD", spec.name, name)
    return f


def param_get(ctx: Context, cmd: Command, args: Args) -> Output:
    spec = get_class(cmd.cls or "")
    f = _field(spec, args.params["param-name"])
    with ctx.store.read() as txn:
        row = txn.must(spec.name, args.params["uuid"], ["uuid", f.name])
    value = row[f.name]
    key = args.get("param-key")
    if key is not None:
        if f.kind is not Kind.MAP:
            raise XeError("FIELD_TYPE_ERROR", f.cli_name, key, "a map field for param-key")
        if key not in value:
            raise XeError("MAP_KEY_NOT_FOUND", f.cli_name, key)
        return Value(value[key], value[key], True)
    return Value(show(f, value), json_value(f, value), True)


def _writable(spec: ClassSpec, name: str) -> Field:
    f = _field(spec, name)
    if not f.settable:
        raise XeError("FIELD_READ_ONLY", f.cli_name)
    return f


def param_set(ctx: Context, cmd: Command, args: Args) -> Output:
    spec = get_class(cmd.cls or "")
    changes = {k: v for k, v in args.params.items() if k != "uuid"}
    if not changes:
        raise XeError("MISSING_PARAMETER", "field=value")
    with ctx.store.write() as txn:
        row = txn.must(spec.name, args.params["uuid"])
        new: dict[str, Any] = {}
        for key, text in changes.items():
            base, colon, sub = key.partition(":")
            f = _writable(spec, base)
            if f.kind is Kind.MAP:
                if not colon or not sub:
                    raise XeError("SYNTAX_ERROR", f"set one key of a map with {f.cli_name}:KEY=VALUE")
                k, v = map_entry(f, sub, text)
                new.setdefault(f.name, dict(row[f.name]))[k] = v
            elif f.kind is Kind.SET:
                raise XeError("OPERATION_NOT_ALLOWED", f"cannot param-set the set field {f.cli_name}; use {cmd.group}-param-add")
            else:
                new[f.name] = parse_cli(f, text)
        constraints.check_update(txn, spec.name, row, new)
        txn.update(spec.name, row["uuid"], new)
    return None


def param_add(ctx: Context, cmd: Command, args: Args) -> Output:
    """Add keys to a map (MAP_DUPLICATE_KEY if one is there already, as xapi's add_to_*) or a
    member to a set (adding a member that is there changes nothing, as xapi's add_to_*)."""
    spec = get_class(cmd.cls or "")
    f = _writable(spec, args.params["param-name"])
    extra = {k: v for k, v in args.params.items() if k not in ("uuid", "param-name", "param-key")}
    with ctx.store.write() as txn:
        row = txn.must(spec.name, args.params["uuid"], ["uuid", f.name])
        value: dict[str, str] | list[Any]  # the map with the new keys, or the set with the member
        if f.kind is Kind.MAP:
            if not extra:
                raise XeError("MISSING_PARAMETER", "key=value")
            value = dict(row[f.name])
            for key, text in extra.items():
                key, text = map_entry(f, key, text)
                if key in value:
                    raise XeError("MAP_DUPLICATE_KEY", spec.name, f.cli_name, row["uuid"], key)
                value[key] = text
        elif f.kind is Kind.SET:
            member = args.get("param-key")
            if member is None:
                raise XeError("MISSING_PARAMETER", "param-key")
            if extra:
                raise XeError("UNKNOWN_PARAMETER", next(iter(extra)), cmd.name)
            value = list(row[f.name]) + ([parse_cli(f, member)] if member not in row[f.name] else [])
        else:
            raise XeError("FIELD_TYPE_ERROR", f.cli_name, "", "a set or map field")
        new = {f.name: value}
        constraints.check_update(txn, spec.name, txn.must(spec.name, row["uuid"]), new)
        txn.update(spec.name, row["uuid"], new)
    return None


def param_remove(ctx: Context, cmd: Command, args: Args) -> Output:
    spec = get_class(cmd.cls or "")
    f = _writable(spec, args.params["param-name"])
    key = args.params["param-key"]
    with ctx.store.write() as txn:
        row = txn.must(spec.name, args.params["uuid"], ["uuid", f.name])
        if f.kind is Kind.MAP:
            if key not in row[f.name]:
                raise XeError("MAP_KEY_NOT_FOUND", f.cli_name, key)
            value: Any = {k: v for k, v in row[f.name].items() if k != key}
        elif f.kind is Kind.SET:
            value = [m for m in row[f.name] if m != key]
        else:
            raise XeError("FIELD_TYPE_ERROR", f.cli_name, key, "a set or map field")
        txn.update(spec.name, row["uuid"], {f.name: value})
    return None


def param_clear(ctx: Context, cmd: Command, args: Args) -> Output:
    """Empty a set or map field. As in xe, only sets and maps are clearable: a name or a
    number is changed with -param-set, never blanked by a clear."""
    spec = get_class(cmd.cls or "")
    f = _writable(spec, args.params["param-name"])
    if f.kind not in (Kind.SET, Kind.MAP):
        raise XeError("OPERATION_NOT_ALLOWED",
                      f"{f.cli_name} is not a set or map field and cannot be cleared; use {cmd.group}-param-set")
    with ctx.store.write() as txn:
        row = txn.must(spec.name, args.params["uuid"])
        new = {f.name: f.initial()}
        constraints.check_update(txn, spec.name, row, new)
        txn.update(spec.name, row["uuid"], new)
    return None
