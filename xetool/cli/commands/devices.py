"""VBDs and VIFs on running VMs: vbd-attach, vbd-plug, vbd-unplug, vif-plug, vif-unplug."""

from __future__ import annotations

from xetool.cli.commands.objects import vbd_create
from xetool.cli.context import Context
from xetool.cli.grammar import Args
from xetool.cli.output import Output, Value
from xetool.cli.registry import Command
from xetool.master import operations


def vbd_attach(ctx: Context, cmd: Command, args: Args) -> Output:
    """vbd-create, then vbd-plug if the VM is running (xapi's create_vbd_and_plug)."""
    created = vbd_create(ctx, cmd, args)
    assert isinstance(created, Value)
    with ctx.store.read() as txn:
        running = txn.must("vm", args.params["vm-uuid"], ["power_state"])["power_state"] == "Running"
    if running:
        try:
            operations.vbd_plug(ctx.store, ctx.state_dir, created.text)
        except BaseException:
            with ctx.store.write() as txn:  # all or nothing: no half-attached disk record
                txn.delete("vbd", created.text)
            raise
    return created


def vbd_plug(ctx: Context, cmd: Command, args: Args) -> Output:
    operations.vbd_plug(ctx.store, ctx.state_dir, args.params["uuid"])
    return None


def vbd_unplug(ctx: Context, cmd: Command, args: Args) -> Output:
    operations.vbd_unplug(ctx.store, ctx.state_dir, args.params["uuid"], args.flag("force"))
    return None


def vif_plug(ctx: Context, cmd: Command, args: Args) -> Output:
    operations.vif_plug(ctx.store, ctx.state_dir, args.params["uuid"])
    return None


def vif_unplug(ctx: Context, cmd: Command, args: Args) -> Output:
    operations.vif_unplug(ctx.store, ctx.state_dir, args.params["uuid"], args.flag("force"))
    return None
