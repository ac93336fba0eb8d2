"""Host commands beyond the generated ones: free memory, overhead, and the simulated hosts."""

from __future__ import annotations

from xetool.cli.context import Context
from xetool.cli.grammar import Args
from xetool.cli.output import Message, Output, Records, Value
from xetool.cli.registry import Command
from xetool.cli.selectors import require_count, select, split_filters
from xetool.datamodel import get_class
from xetool.errors import XeError
from xetool.host.backend import HOST_FIELDS
from xetool.store.db import Row


def selected_hosts(ctx: Context, args: Args, one: bool = False) -> list[Row]:
    spec = get_class("host")
    with ctx.store.read() as txn:
        rows = select(txn, spec, split_filters(spec, args.params), list(HOST_FIELDS) + ["backend", "live"])
    return require_count(spec, rows, args.flag("multiple") and not one)


def host_compute_free_memory(ctx: Context, cmd: Command, args: Args) -> Output:
    from xetool.master import host_half, resync

    host = selected_hosts(ctx, args, one=True)[0]
    c = host_half.client(ctx.store, ctx.state_dir, host)
    resync.touch(ctx.store, ctx.state_dir, c)  # a restarted host first settles what it lost
    return Message(str(c.call("memory_free")["available_kib"] * 1024))


def host_compute_memory_overhead(ctx: Context, cmd: Command, args: Args) -> Output:
    host = selected_hosts(ctx, args, one=True)[0]
    with ctx.store.read() as txn:
        return Message(str(txn.must("host", host["uuid"], ["memory_overhead"])["memory_overhead"]))


def _simulated(host: Row) -> None:
    if host["backend"] != "simulator":
        raise XeError("OPERATION_NOT_ALLOWED", f"host {host['name_label']} is a real Xen host, not a simulated one")


def host_sim_list(ctx: Context, cmd: Command, args: Args) -> Output:
    from xetool.cli.params import record_fields
    from xetool.cli.selectors import matching
    from xetool.cli.views import HOST_SIM
    from xetool.host import janitor
    from xetool.master import host_half

    fields = record_fields(HOST_SIM, args.get("params"))
    filters = split_filters(HOST_SIM, {k: v for k, v in args.params.items() if k != "params"})
    janitor.reconcile_hosts(ctx.store)
    with ctx.store.read() as txn:
        hosts = txn.select("host", list(HOST_FIELDS), {"backend": "simulator"})
    rows = []
    for h in hosts:
        try:  # asked through its half: a remote host's process runs there
            p = host_half.client(ctx.store, ctx.state_dir, h).call("host_process")
        except XeError as err:
            if err.code != "HOST_OFFLINE":
                raise
            p = {"state": "unreachable", "pid": -1, "xenstore_socket": ""}
        rows.append({"uuid": h["uuid"], "name_label": h["name_label"], **p})
    return Records(HOST_SIM, matching(HOST_SIM, rows, filters), fields)


def host_sim_start(ctx: Context, cmd: Command, args: Args) -> Output:
    from xetool.host import janitor
    from xetool.master import host_half, resync

    for host in selected_hosts(ctx, args):
        _simulated(host)
        janitor.reconcile_hosts(ctx.store)  # a crashed host comes back empty: settle its VMs first
        # started, then matched with the store (a new boot)
        resync.touch(ctx.store, ctx.state_dir, host_half.client(ctx.store, ctx.state_dir, host))
    return None


def host_sim_stop(ctx: Context, cmd: Command, args: Args) -> Output:
    from xetool.master import host_half, resync

    for host in selected_hosts(ctx, args):
        _simulated(host)
        c = host_half.client(ctx.store, ctx.state_dir, host)
        c.call("host_stop")
        resync.resync_host(ctx.store, c)  # its VMs went with it: Halted, each with a message
    return None


def host_xenstore_socket(ctx: Context, cmd: Command, args: Args) -> Output:
    """The socket's path on the host itself (for a remote host: there, not here)."""
    from xetool.master import host_half

    host = selected_hosts(ctx, args, one=True)[0]
    return Value(host_half.client(ctx.store, ctx.state_dir, host).call("host_process")["xenstore_socket"])


def host_xenstore_ls(ctx: Context, cmd: Command, args: Args) -> Output:
    """What `xenstore-ls -f` prints, through xetool's own client (no xenstore-utils needed)."""
    from xetool.master import host_half

    host = selected_hosts(ctx, args, one=True)[0]
    return Message("\n".join(host_half.client(ctx.store, ctx.state_dir, host).call(
        "xenstore_ls", path=args.get("path") or "/local/domain")["lines"]))


def host_agent(ctx: Context, cmd: Command, args: Args) -> Output:
    from xetool.host import agent
    from xetool.paths import ensure_state_dir

    ensure_state_dir(str(ctx.state), create=True)
    if args.flag("daemon"):
        agent.daemon(ctx.state_dir)
    elif args.flag("stop"):
        return Message(agent.stop(ctx.state_dir))
    elif args.flag("listen"):
        import json

        return Message(json.dumps(agent.listen(ctx.state_dir)))
    else:
        agent.serve(ctx.state_dir)
    return None
