"""xe's memory commands: a VM's dynamic range, its target, and all four limits at once."""

from __future__ import annotations

from xetool.cli.commands.vm import for_each, housekeeping, selected_vms
from xetool.cli.context import Context
from xetool.cli.grammar import Args
from xetool.cli.output import Output
from xetool.cli.registry import Command
from xetool.errors import XeError
from xetool.units import parse_size


def _size(args: Args, key: str) -> int:
    value = args.get(key)
    if value is None:
        raise XeError("MISSING_PARAMETER", key)
    return parse_size(value, key)


def vm_memory_dynamic_range_set(ctx: Context, cmd: Command, args: Args) -> Output:
    from xetool.master import operations as memory

    vms = selected_vms(ctx, args)
    lo, hi = _size(args, "min"), _size(args, "max")
    housekeeping(ctx)
    return for_each(ctx, vms, lambda vm: memory.set_memory_dynamic_range(
        ctx.store, ctx.state_dir, vm["uuid"], lo, hi))


def vm_memory_target_set(ctx: Context, cmd: Command, args: Args) -> Output:
    """xe's vm-memory-target-set: the dynamic range pinned at the target (xapi's deprecated
    VM.set_memory_target does the same)."""
    from xetool.master import operations as memory

    vms = selected_vms(ctx, args)
    target = _size(args, "target")
    housekeeping(ctx)
    return for_each(ctx, vms, lambda vm: memory.set_memory_dynamic_range(
        ctx.store, ctx.state_dir, vm["uuid"], target, target))


def vm_memory_limits_set(ctx: Context, cmd: Command, args: Args) -> Output:
    from xetool.master import operations as memory

    vms = selected_vms(ctx, args)
    values = {f"memory_{k.replace('-', '_')}": _size(args, k)
              for k in ("static-min", "static-max", "dynamic-min", "dynamic-max")}
    housekeeping(ctx)
    return for_each(ctx, vms, lambda vm: memory.set_memory_limits(
        ctx.store, ctx.state_dir, vm["uuid"], values))
