"""vm-start and the rest of the VM lifecycle on the command line."""

from __future__ import annotations

import time

from xetool.cli.context import Context
from xetool.cli.grammar import Args
from xetool.cli.output import Many, Message, Output, Table, Value
from xetool.cli.registry import Command
from xetool.cli.selectors import require_count, resolve_one, select, split_filters
from xetool.datamodel import get_class
from xetool.errors import XeError
from xetool.store.db import Row

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")

VM_DEFAULTS = {"is-a-template": "false"}


def selected_vms(ctx: Context, args: Args, fields: tuple[str, ...] = ("uuid", "name_label")) -> list[Row]:
    spec = get_class("vm")
    filters = {**VM_DEFAULTS, **split_filters(spec, args.params)}
    with ctx.store.read() as txn:
        return require_count(spec, select(txn, spec, filters, list(fields)), args.flag("multiple"))


def housekeeping(ctx: Context) -> None:
    """Before a lifecycle command: notice crashed hosts and clean after dead commands (cheap
    looks first; the janitor runs only when they find something)."""
    from xetool.backends.simulator.liveness import notice_crashed_hosts
    from xetool.tasks import notice_dead_tasks

    notice_crashed_hosts(ctx.store)
    notice_dead_tasks(ctx.store)


def for_each(ctx: Context, vms: list[Row], action: Callable[[Row], str | None], verb: str = "") -> Output:
    """Run `action` per VM; with several, a failure on one does not stop the others. Each failure
    is reported once: as it happens in xe's text, or all together at the end in JSON. With a
    `verb`, the terminal shows which VM is being worked on (vm-start shows its own steps)."""
    from xetool.cli.main import MultipleFailures
    from xetool.cli.progress import progress

    failures: list[tuple[Row, XeError]] = []
    notes = []
    for n, vm in enumerate(vms, 1):
        title = f"{verb} {vm['name_label']}" + (f" ({n} of {len(vms)})" if len(vms) > 1 else "")
        try:
            if verb:
                with progress(ctx, title):
                    note = action(vm)
            else:
                note = action(vm)
            if note:
                notes.append(note)
        except XeError as err:
            if len(vms) == 1:
                raise
            failures.append((vm, err))
            if ctx.fmt != "json":
                ctx.err.write(f"operation failed on {vm['uuid']} ({vm['name_label']}):\n{err.render()}\n")
    if failures:
        raise MultipleFailures([({"uuid": vm["uuid"], "name-label": vm["name_label"]}, err) for vm, err in failures])
    return Message("\n".join(notes)) if notes else None


def while_busy(ctx: Context, seconds: float, attempt: Callable[[], T]) -> T:
    """`attempt()`, tried again while another operation holds the object, for at most `seconds`
    (none: OTHER_OPERATION_IN_PROGRESS at once). An attempt refused so has changed nothing: the
    check and the mark are one transaction. A wait that runs out is OPERATION_WAIT_TIMEOUT."""
    from xetool import tasks

    deadline = time.monotonic() + seconds
    delay = 0.05
    while True:
        try:
            return attempt()
        except XeError as err:
            if err.code != "OTHER_OPERATION_IN_PROGRESS" or seconds <= 0:
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise XeError("OPERATION_WAIT_TIMEOUT", seconds=f"{seconds:g}", **err.params) from None
        if tasks.reap_dead_tasks(ctx.store):
            continue  # the holder was dead and is cleaned up: try again at once
        time.sleep(min(delay, remaining))  # the last try is at the deadline, not before
        delay = min(delay * 2, 1.0)


def _timeout(args: Args, default: float) -> float:
    from xetool.units import parse_seconds

    text = args.get("timeout")
    return default if text is None else parse_seconds(text, "timeout")


def wait_seconds(args: Args) -> float:
    """`--wait` waits up to 30 s for another operation on the VM; `wait=SECONDS` sets the bound."""
    from xetool.units import parse_seconds

    text = args.get("wait")
    if text is None or text.lower() == "false":
        return 0.0
    return 30.0 if text.lower() == "true" else parse_seconds(text, "wait")


# --- vm-start -------------------------------------------------------------------------------------

def vm_start(ctx: Context, cmd: Command, args: Args) -> Output:
    from xetool.cli.steps_view import StepView
    from xetool.master.host_half import Hosts
    from xetool.master.vm_start import MasterStart, StartRequest

    housekeeping(ctx)
    vms = selected_vms(ctx, args)
    on = None
    if args.get("on"):
        with ctx.store.read() as txn:
            on = resolve_one(txn, get_class("host"), args.params["on"], "on")["uuid"]
    seed = None
    if args.get("seed"):
        try:
            seed = int(args.params["seed"])
        except ValueError:
            raise XeError("FIELD_TYPE_ERROR", "seed", args.params["seed"], "an integer") from None
    if args.flag("dry-run"):
        return _dry_run(ctx, vms, on, seed, args.flag("force"))
    if on is not None:
        _ask_if_down(ctx, on)
    paused, wait = args.flag("paused"), wait_seconds(args)

    def start(vm: Row) -> str | None:
        n = vms.index(vm) + 1
        view = StepView(ctx, f"Starting {vm['name_label']}" + (f" ({n} of {len(vms)})" if len(vms) > 1 else ""))
        req = StartRequest(vm["uuid"], on=on, paused=paused, force=args.flag("force"), seed=seed)
        while True:
            try:
                with view:
                    result = while_busy(ctx, wait, lambda: MasterStart(  # a fresh one per attempt
                        ctx.store, ctx.state_dir, req, Hosts(ctx.store, ctx.state_dir, view), view).run())
                break
            except XeError as err:
                if err.code == "NO_HOSTS_AVAILABLE":
                    _print_no_hosts(ctx, vm, err, on, seed)
                if on is None and _unreachable(ctx, err):
                    # nothing ran there, and it is marked not live now: the chooser passes it by
                    ctx.warn(f"host {err.params.get('name') or err.params.get('host')} could not be reached "
                             f"({err.params.get('reason', 'no reason given')}); choosing another")
                    continue
                raise
        for warning in result.warnings:
            ctx.warn(warning)
        return None

    return for_each(ctx, vms, start)


def _ask_if_down(ctx: Context, host: str) -> None:
    """A start aimed at a remote host marked not live asks it first: if it answers again it is
    live (after its resync), else the start fails with what ssh said, not with "Host down"."""
    from xetool.host.backend import HOST_FIELDS
    from xetool.master import host_half, resync, ssh

    with ctx.store.read() as txn:
        row = txn.must("host", host, [*HOST_FIELDS, "live", "enabled"])
    if not row["live"] and row["enabled"] and ssh.is_remote(row):
        resync.touch(ctx.store, ctx.state_dir, host_half.client(ctx.store, ctx.state_dir, row))


def _unreachable(ctx: Context, err: XeError) -> bool:
    """HOST_OFFLINE from a host that could not be reached at all (SSH failed before any request
    ran there): the host client marked it not live."""
    if err.code != "HOST_OFFLINE" or not err.params.get("host"):
        return False
    with ctx.store.read() as txn:
        host = txn.get("host", err.params["host"], ["live"])
    return host is not None and not host["live"]


def _print_no_hosts(ctx: Context, vm: Row, err: XeError, on: str | None, seed: int | None) -> None:
    """xe's two sentences, then the per-host table --dry-run prints (a verdict per host with the
    memory figures), then the one-line summary of what refused the hosts; with --format json it
    goes into the error's JSON instead, so that stderr is one JSON document."""
    from xetool.master.dry_run import preview_start

    report = getattr(err, "report", None)
    if report is None:
        return
    if ctx.fmt == "json":
        err.extra["vm"] = vm["uuid"]
        err.extra["placement"] = report.to_json()
        return
    if ctx.quiet:
        return
    head, summary = report.no_hosts_lines()[:3], report.no_hosts_lines()[-2:]
    table = preview_start(ctx.store, vm["uuid"], on, seed).host_lines()
    ctx.err.write(f"VM {vm['name_label']} ({vm['uuid']}):\n" + "\n".join(head + table + summary) + "\n")


def _placement_report(ctx: Context, vm_uuid: str, seed: int | None):  # type: ignore[no-untyped-def]
    from xetool.master.snapshot import pool_view, read_vm
    from xetool.master.vm_start import rng_for
    from xetool.placement import choose

    with ctx.store.read() as txn:
        view, pool = read_vm(txn, vm_uuid), pool_view(txn)
        names = {h.uuid: h.name_label for h in pool.hosts}
    return choose.explain_placement(view, pool, rng_for(seed)), names


def _placement_tables(ctx: Context, vms: list[Row], on: str | None, seed: int | None) -> list[tuple[Table, Any]]:
    """Per VM: every check on every host (or on `on` only), with the chooser's order, as a table."""
    out = []
    for vm in vms:
        report, names = _placement_report(ctx, vm["uuid"], seed)
        order = {s.host: (i, s.category) for i, s in enumerate(report.order, 1)}
        rows = []
        for h in report.hosts:
            if on and h.uuid != on:
                continue
            position, category = order.get(h.uuid, ("-", "not tried"))
            rows += [(h.name_label or h.uuid, position, category, c.name, "pass" if c.passed else c.reason) for c in h.checks]
        if on:
            chosen = on if all(h.ok for h in report.hosts if h.uuid == on) else None
        else:
            chosen = report.chosen
        title = (f"Placement of VM {vm['name_label']} ({vm['uuid']}): "
                 + (f"would start on {names.get(chosen, chosen)}" if chosen else "no host can start it"))
        out.append((Table(("host", "try", "category", "check", "result"), rows, title,
                          {"vm": vm["uuid"], "chosen": chosen, "report": report.to_json()}), report))
    return out


def _tables_output(tables: list[Table]) -> Output:
    return tables[0] if len(tables) == 1 else Many(list(tables))


def _dry_run(ctx: Context, vms: list[Row], on: str | None, seed: int | None, force: bool) -> Output:
    """Every check the start would make, shown on stdout; then, as the start would, the first
    refusal as the error (exit 1), or nothing more (exit 0) when it would start."""
    from xetool.master.dry_run import preview_start

    previews = [preview_start(ctx.store, vm["uuid"], on, seed, force) for vm in vms]
    if ctx.fmt == "json":
        import json

        docs = [p.to_json() for p in previews]
        ctx.out.write(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2) + "\n")
    elif ctx.minimal:
        ctx.out.write(",".join(p.host or "" for p in previews) + "\n")
    else:
        ctx.out.write("\n\n".join("\n".join(p.lines()) for p in previews) + "\n")
    refused = [p for p in previews if p.error is not None]
    if len(previews) > 1:
        for p in refused:
            ctx.err.write(f"operation failed on {p.vm} ({p.name}):\n{p.error.render()}\n")  # type: ignore[union-attr]
    if refused:
        raise refused[0].error  # type: ignore[misc]
    return None


def vm_assert_can_boot_here(ctx: Context, cmd: Command, args: Args) -> Output:
    """Every check of the VM on the host; the first failure is raised after the table is shown."""
    vms = selected_vms(ctx, args)
    with ctx.store.read() as txn:
        host = resolve_one(txn, get_class("host"), args.params["host"], "host")["uuid"]
    results = _placement_tables(ctx, vms, host, None)
    for table, report in results:
        failures = [c for h in report.hosts if h.uuid == host for c in h.checks if not c.passed]
        if failures:
            from xetool.cli.output import render

            render(_tables_output([t for t, _ in results]), ctx.err, fmt=ctx.fmt)
            raise failures[0].error or XeError("NO_HOSTS_AVAILABLE")
    return _tables_output([t for t, _ in results])


# --- the rest of the lifecycle --------------------------------------------------------------------

def vm_shutdown(ctx: Context, cmd: Command, args: Args) -> Output:
    from xetool.master import operations

    housekeeping(ctx)
    timeout, force, wait = _timeout(args, 60.0), args.flag("force"), wait_seconds(args)
    return for_each(ctx, selected_vms(ctx, args), lambda vm: while_busy(ctx, wait, lambda: operations.shutdown(
        ctx.store, ctx.state_dir, vm["uuid"], force, timeout)) or None, "Shutting down")


def vm_reboot(ctx: Context, cmd: Command, args: Args) -> Output:
    from xetool.master import operations
    from xetool.master.host_half import Hosts
    from xetool.master.vm_start import MasterStart, StartRequest

    housekeeping(ctx)
    timeout, force, wait = _timeout(args, 60.0), args.flag("force"), wait_seconds(args)

    def reboot(vm: Row) -> str | None:
        with ctx.store.read() as txn:
            host = txn.must("vm", vm["uuid"], ["resident_on"])["resident_on"]
        while_busy(ctx, wait, lambda: operations.shutdown(ctx.store, ctx.state_dir, vm["uuid"], force, timeout,
                                                          reason="reboot"))
        while_busy(ctx, wait, lambda: MasterStart(ctx.store, ctx.state_dir, StartRequest(vm["uuid"], on=host),
                                                  Hosts(ctx.store, ctx.state_dir)).run())
        return None

    return for_each(ctx, selected_vms(ctx, args), reboot, "Rebooting")


def _set_paused(ctx: Context, args: Args, paused: bool, verb: str) -> Output:
    from xetool.master import operations

    housekeeping(ctx)
    wait = wait_seconds(args)
    return for_each(ctx, selected_vms(ctx, args), lambda vm: while_busy(
        ctx, wait, lambda: operations.set_paused(ctx.store, ctx.state_dir, vm["uuid"], paused)), verb)


def vm_pause(ctx: Context, cmd: Command, args: Args) -> Output:
    return _set_paused(ctx, args, True, "Pausing")


def vm_unpause(ctx: Context, cmd: Command, args: Args) -> Output:
    return _set_paused(ctx, args, False, "Unpausing")


def vm_compute_memory_overhead(ctx: Context, cmd: Command, args: Args) -> Output:
    from xetool.master.snapshot import read_vm
    from xetool.placement.memory import vm_compute_memory_overhead as overhead

    vms = selected_vms(ctx, args)
    with ctx.store.read() as txn:
        return Value(str(overhead(read_vm(txn, vms[0]["uuid"]))))


def vm_retrieve_wlb_recommendations(ctx: Context, cmd: Command, args: Args) -> Output:
    from xetool.master.snapshot import pool_view, read_vm
    from xetool.placement import wlb

    vm = selected_vms(ctx, args)[0]
    with ctx.store.read() as txn:
        view, pool = read_vm(txn, vm["uuid"]), pool_view(txn)
        names = {h.uuid: h.name_label for h in pool.hosts}
    recs = wlb.retrieve_wlb_recommendations(view, pool)
    rows = [(f"{names.get(r.host, '?')}({r.host})", "WLB", f"{r.score:g}", "impossible" if r.impossible else "",
             r.reason or "") for r in recs]
    return Table(("Host(Uuid)", "Source", "Stars", "", "Reason"), rows, extra={"recommendations": [r.to_json() for r in recs]})


def vm_vnc(ctx: Context, cmd: Command, args: Args) -> Output:
    from xetool.master import operations

    uuid = selected_vms(ctx, args)[0]["uuid"]
    operations.before(ctx.store, ctx.state_dir, uuid)
    with ctx.store.read() as txn:
        vm = txn.must("vm", uuid, ["uuid", "name_label", "resident_on", "power_state"])
    if not vm["resident_on"]:
        raise XeError("VM_BAD_POWER_STATE", vm["uuid"], "running, paused", vm["power_state"].lower())
    _, host_client = operations.resident(ctx.store, ctx.state_dir, uuid)
    where_on = host_client.call("console", vm=uuid)  # its domain, found on the host by the VM's uuid
    port = int(where_on["port"])
    from xetool.host.backend import HOST_FIELDS
    from xetool.master import ssh

    with ctx.store.read() as txn:
        host = txn.must("host", vm["resident_on"], HOST_FIELDS)
        pool = txn.pool()
    display = f" (display :{port - 5900})" if 5900 <= port < 6000 else ""
    text = f"VNC console of {vm['name_label']}: 127.0.0.1:{port} on host {host['name_label']}{display}"
    password = f"\nPassword: {where_on['password']} (VNC Authentication; kept 0600 in {where_on['secret']} on the host)"
    if ctx.minimal:
        return Value(str(port))
    if not ssh.is_remote(host):
        if args.flag("forward"):
            raise XeError("OPERATION_NOT_ALLOWED", f"the console is on this machine already (host {host['name_label']} "
                          "has no address): connect to 127.0.0.1:{port}")
        return Message(text + password + f"\nFrom another machine: ssh -L 5900:127.0.0.1:{port} <this machine>, then "
                       "connect to localhost:5900 with that password")
    local = _local_port(args.get("local-port")) or _free_port()
    tunnel = ssh.console_tunnel(host, pool["ssh_config"], pool["ssh_identity"], local, port)
    if not args.flag("forward"):
        return Message(text + password + f"\nFrom this machine: {' '.join(shlex_quote(a) for a in tunnel)}, then "
                       f"connect to localhost:{local}\n(or: xetool vm-vnc uuid={uuid} --forward, which runs it)")
    import os
    import sys

    print(text + password + f"\nForwarding localhost:{local} to it over SSH; connect there. Interrupt to end.", flush=True)
    sys.stderr.flush()
    os.execvp(tunnel[0], [*tunnel[:1], "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", *tunnel[1:]])


def _local_port(text: str | None) -> int:
    if not text:
        return 0
    if not text.isdigit():
        raise XeError("FIELD_TYPE_ERROR", "local-port", text, "a TCP port (1-65535)")
    if not 1 <= int(text) <= 65535:
        raise XeError("INVALID_VALUE", "local-port", text)
    return int(text)


def _free_port() -> int:
    """A port of 127.0.0.1 free now, for a console's forward."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def shlex_quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
