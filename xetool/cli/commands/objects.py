"""Making and removing what a pool definition holds: VMs, SRs, VDIs, networks, PIFs, VIFs, VBDs."""

from __future__ import annotations

from xetool import limits
from xetool.cli.context import Context
from xetool.cli.grammar import Args
from xetool.cli.output import Output, Value
from xetool.cli.registry import Command
from xetool.cli.selectors import require_count, select, split_filters
from xetool.datamodel import get_class
from xetool.errors import XeError
from xetool.storage import disks
from xetool.store import objects
from xetool.store.codec import map_entry, parse_cli
from xetool.units import parse_size

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any

    from xetool.storage.disks import Made


def _flag(args: Args, key: str, default: bool) -> bool:
    return args.flag(key) if args.has(key) else default


def vm_create(ctx: Context, cmd: Command, args: Args) -> Output:
    spec = get_class("vm")
    values: dict[str, Any] = {}
    memory = args.pop("memory")
    if memory is not None:
        size = parse_size(memory, "memory")
        limits.check_int(spec.field_named("memory_static_max"), size, "memory")
        values.update(objects.memory_of_size(size))
    for key, text in args.params.items():
        base, colon, sub = key.partition(":")
        f = spec.field(base)
        if f is None or not f.settable:
            raise XeError("FIELD_READ_ONLY" if f else "UNKNOWN_FIELD", *((f.cli_name,) if f else ("vm", key)))
        if colon:
            k, v = map_entry(f, sub, text)
            values.setdefault(f.name, {})[k] = v
        else:
            values[f.name] = parse_cli(f, text)
    with ctx.store.write() as txn:
        uuid = objects.create_vm(txn, values)
    return Value(uuid)


def vm_destroy(ctx: Context, cmd: Command, args: Args) -> Output:
    from xetool import lifecycle
    from xetool.cli.commands.vm import wait_seconds, while_busy

    def destroy() -> None:
        with ctx.store.write() as txn:
            vm = txn.must("vm", args.params["uuid"])
            lifecycle.assert_vm_operation_valid(txn, vm, "destroy")
            objects.destroy_vm(txn, vm)

    while_busy(ctx, wait_seconds(args), destroy)
    return None


def sr_create(ctx: Context, cmd: Command, args: Args) -> Output:
    sr_type = args.get("type", "file")
    if sr_type != "file":
        raise XeError("VALUE_NOT_SUPPORTED", "type", sr_type, "xetool has the file SR driver only")
    with ctx.store.write() as txn:
        uuid = txn.insert("sr", {"name_label": args.params["name-label"], "type": "file",
                                 "name_description": args.get("name-description", ""),
                                 "content_type": args.get("content-type", "user"),
                                 "shared": _flag(args, "shared", False)})
        path = args.get("device-config:path") or str(ctx.state_dir / "srs" / uuid)
        hosts = [args.params["host-uuid"]] if args.has("host-uuid") else txn.uuids("host")
        for host in hosts:
            txn.must("host", host, ["uuid"])
            txn.insert("pbd", {"host": host, "SR": uuid, "device_config": {"path": path}})
    return Value(uuid)


def _destroy_unless_used(ctx: Context, cls: str, uuid: str, user: str, connection: str, key: str,
                         reason: str) -> Output:
    """Remove an SR or network record with its hosts' connections (PBDs, PIFs), unless a `user`
    object (VDI, VIF) still refers to it through `key`."""
    with ctx.store.write() as txn:
        row = txn.must(cls, uuid, ["uuid"])
        if txn.uuids(user, {key: row["uuid"]}):
            raise XeError("OBJECT_IN_USE", cls, row["uuid"], reason)
        for conn in txn.uuids(connection, {key: row["uuid"]}):
            txn.delete(connection, conn)
        txn.delete(cls, row["uuid"])
    return None


def sr_destroy(ctx: Context, cmd: Command, args: Args) -> Output:
    return _destroy_unless_used(ctx, "sr", args.params["uuid"], "vdi", "pbd", "SR", "the SR still holds VDIs")


def vdi_create(ctx: Context, cmd: Command, args: Args) -> Output:
    spec = get_class("vdi")
    values = {"name_label": args.params["name-label"], "name_description": args.get("name-description", ""),
              "virtual_size": parse_size(args.params["virtual-size"], "virtual-size")}
    for key in ("type", "sharable", "read-only"):
        if args.has(key):
            f = spec.field_named(key)
            values[f.name] = parse_cli(f, args.params[key])
    created: list[Made] = []
    try:
        with ctx.store.write() as txn:
            uuid = objects.create_vdi(txn, args.params["sr-uuid"], values, created)
    except BaseException:
        disks.undo(created)
        raise
    return Value(uuid)


def vdi_destroy(ctx: Context, cmd: Command, args: Args) -> Output:
    with ctx.store.write() as txn:
        vdi = txn.must("vdi", args.params["uuid"])
        made = objects.destroy_vdi(txn, vdi)
    disks.destroy(made)
    return None


def network_create(ctx: Context, cmd: Command, args: Args) -> Output:
    values: dict[str, Any] = {"name_label": args.params["name-label"],
                              "name_description": args.get("name-description", "")}
    if args.get("bridge"):
        values["bridge"] = args.params["bridge"]
    if args.has("MTU"):
        values["MTU"] = parse_cli(get_class("network").field_named("MTU"), args.params["MTU"])
    with ctx.store.write() as txn:
        return Value(objects.create_network(txn, values))


def network_destroy(ctx: Context, cmd: Command, args: Args) -> Output:
    return _destroy_unless_used(ctx, "network", args.params["uuid"], "vif", "pif", "network",
                                "VIFs are still on the network")


def pif_create(ctx: Context, cmd: Command, args: Args) -> Output:
    with ctx.store.write() as txn:
        return Value(objects.create_pif(txn, args.params["host-uuid"], args.params["network-uuid"],
                                        args.get("device", "") or "", args.get("MAC", "") or ""))


def vif_create(ctx: Context, cmd: Command, args: Args) -> Output:
    with ctx.store.write() as txn:
        return Value(objects.create_vif(txn, args.params["vm-uuid"], args.params["network-uuid"],
                                        args.params["device"], args.get("mac")))


def _destroy_unplugged(ctx: Context, cls: str, uuid: str) -> Output:
    """Remove a VBD or VIF record that is neither plugged nor in an operation."""
    with ctx.store.write() as txn:
        row = txn.must(cls, uuid, ["uuid", "currently_attached", "current_operations"])
        if row["currently_attached"] or row["current_operations"]:
            raise XeError("OPERATION_NOT_ALLOWED", f"the {cls.upper()} is plugged or busy; unplug it first")
        txn.delete(cls, row["uuid"])
    return None


def vif_destroy(ctx: Context, cmd: Command, args: Args) -> Output:
    return _destroy_unplugged(ctx, "vif", args.params["uuid"])


def vbd_create(ctx: Context, cmd: Command, args: Args) -> Output:
    spec = get_class("vbd")
    values: dict[str, Any] = {"userdevice": args.params["device"]}
    if args.get("vdi-uuid"):
        values["VDI"] = parse_cli(spec.field_named("VDI"), args.params["vdi-uuid"])
    for key in ("bootable", "type", "mode", "unpluggable"):
        if args.has(key):
            values[key] = parse_cli(spec.field_named(key), args.params[key])
    with ctx.store.write() as txn:
        return Value(objects.create_vbd(txn, args.params["vm-uuid"], values))


def vbd_destroy(ctx: Context, cmd: Command, args: Args) -> Output:
    return _destroy_unplugged(ctx, "vbd", args.params["uuid"])


def _set_hosts_enabled(ctx: Context, args: Args, enabled: bool) -> Output:
    spec = get_class("host")
    filters = split_filters(spec, args.params)
    with ctx.store.write() as txn:
        rows = require_count(spec, select(txn, spec, filters, ["uuid"]), args.flag("multiple"))
        for row in rows:
            txn.update("host", row["uuid"], {"enabled": enabled})
    return None


def host_enable(ctx: Context, cmd: Command, args: Args) -> Output:
    return _set_hosts_enabled(ctx, args, True)


def host_disable(ctx: Context, cmd: Command, args: Args) -> Output:
    return _set_hosts_enabled(ctx, args, False)

