"""pool-import and pool-export: the pool as a TOML file people write by hand."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from xetool import pooldef
from xetool.cli.context import Context
from xetool.cli.grammar import Args
from xetool.cli.output import Message, Output
from xetool.cli.registry import Command
from xetool.errors import XeError
from xetool.storage import disks
from xetool.store.db import DB_NAME

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from xetool.storage.disks import Made


class _DryRun(Exception):
    """Raised inside the transaction to roll a --dry-run import back."""


def pool_import(ctx: Context, cmd: Command, args: Args) -> Output:
    path = Path(args.params["file"])
    doc = pooldef.load(path)
    imp: pooldef.Importer | None = None
    created: list[Made] = []
    dry_run = args.flag("dry-run")
    ctx.create_pool = not dry_run  # the one command that makes a pool where there is none
    db_file = os.path.join(ctx.state, DB_NAME)
    fresh = not dry_run and not os.path.lexists(db_file)  # a refused first import leaves no pool
    scratch = _scratch_store(ctx) if dry_run else None  # a dry run where there is no pool yet
    store = scratch.store if scratch else ctx.store
    try:
        with store.write() as txn:
            imp = pooldef.import_pool(txn, doc, str(path), store.state_dir, created)
            if dry_run:
                raise _DryRun
    except BaseException as err:
        disks.undo(created)
        if not isinstance(err, _DryRun):
            if fresh:
                ctx.close()
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(db_file + suffix)
                with contextlib.suppress(OSError):
                    os.rmdir(ctx.state)  # only if this import made it and nothing else is there
            raise
    finally:
        if scratch:
            scratch.close()
    assert imp is not None
    if not imp.changes:
        return Message("No changes: the pool already matches the definition.")
    verb = "Would make" if args.flag("dry-run") else "Made"
    count = len(imp.changes)
    return Message(f"{verb} {count} change{'' if count == 1 else 's'}:\n" + "\n".join("  " + c for c in imp.changes))


class _Scratch:
    """A throw-away pool in a temporary directory, for `pool-import --dry-run` on a state
    directory that holds no pool: the dry run shows what a first import would make, and creates
    no pool where the operator asked for none."""

    def __init__(self) -> None:
        import tempfile

        from xetool.store.db import Store

        self.dir = tempfile.mkdtemp(prefix="xetool-dry-run-")
        self.store = Store(self.dir, create=True)

    def close(self) -> None:
        import shutil

        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _scratch_store(ctx: Context) -> _Scratch | None:
    try:
        ctx.store  # noqa: B018 - opening it is the question
        return None
    except XeError as err:
        if err.code != "POOL_NOT_FOUND":
            raise
    return _Scratch()


def pool_export(ctx: Context, cmd: Command, args: Args) -> Output:
    import tomli_w

    with ctx.store.read() as txn:
        doc = pooldef.export_pool(txn, ctx.state_dir)
    text = "# xetool pool definition (pool-export); import with: xetool pool-import file=THIS\n" + tomli_w.dumps(doc)
    target = args.get("file")
    if not target or target == "-":
        ctx.out.write(text)
        return None
    from xetool.paths import write_atomic

    try:  # never a half-written definition, nor a stray temporary file
        write_atomic(target, text, None)  # the operator's file: their umask
    except OSError as err:
        raise XeError("FILE_NOT_READABLE", target, err.strerror) from None
    return Message(f"Wrote {target}")


def pool_check(ctx: Context, cmd: Command, args: Args) -> Output:
    """Every divergence between the store and the hosts (and inside the store); --repair applies
    the resync. Exit 1 (POOL_CHECK_FAILED) while a divergence is left."""
    from xetool.cli.output import Many, Table, render
    from xetool.master import resync

    repair = args.flag("repair")
    if repair:
        done, left = resync.repair_pool(ctx.store, ctx.state_dir)
    else:
        done, left = [], resync.check_pool(ctx.store, ctx.state_dir)
    with ctx.store.read() as txn:
        names = {r["uuid"]: r["name_label"] for cls in ("host", "vm") for r in txn.select(cls, ["uuid", "name_label"])}
    columns = ("host", "kind", "object", "found", "repair")

    def table(items: list[resync.Divergence], title: str) -> Table:
        return Table(columns, [d.row(names) for d in items], title,
                     {"divergences": [{"kind": d.kind, "host": d.host, "object": d.obj, "found": d.found,
                                       "repair": d.repair, "domid": d.domid} for d in items]})

    parts: list[Output] = []
    if done:
        parts.append(table(done, f"Repaired {len(done)}:"))
    if left:
        parts.append(table(left, f"{'Left' if repair else 'Found'} {len(left)} (the store and the hosts disagree):"))
    if not left:
        parts.append(Message("No divergence: the store matches the hosts."))
    if left:
        render(Many(parts) if len(parts) > 1 else parts[0], ctx.out, minimal=ctx.minimal, fmt=ctx.fmt)
        raise XeError("POOL_CHECK_FAILED", len(left), "pool-check --repair" if not repair else "see the rows above")
    return Many(parts) if len(parts) > 1 else parts[0]
