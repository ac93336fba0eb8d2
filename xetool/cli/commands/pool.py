"""pool-import and pool-export: the pool as a TOML file people write by hand."""

from __future__ import annotations

import os
from pathlib import Path

from xetool import pooldef
from xetool.cli.context import Context
from xetool.cli.grammar import Args
from xetool.cli.output import Message, Output
from xetool.cli.registry import Command
from xetool.errors import XeError
from xetool.storage import file_sr


class _DryRun(Exception):
    """Raised inside the transaction to roll a --dry-run import back."""


def pool_import(ctx: Context, cmd: Command, args: Args) -> Output:
    path = Path(args.params["file"])
    doc = pooldef.load(path)
    imp: pooldef.Importer | None = None
    created: list[tuple[str, str, str]] = []
    try:
        with ctx.store.write() as txn:
            imp = pooldef.import_pool(txn, doc, str(path), ctx.state_dir, created)
            if args.flag("dry-run"):
                raise _DryRun
    except BaseException as err:
        for sr, sr_path, location in created:
            file_sr.destroy(sr, sr_path, location)
        for sr_path in {c[1] for c in created}:
            try:
                os.rmdir(sr_path)  # only if the import made it and left it empty
            except OSError:
                pass
        if not isinstance(err, _DryRun):
            raise
    assert imp is not None
    if not imp.changes:
        return Message("No changes: the pool already matches the definition.")
    verb = "Would make" if args.flag("dry-run") else "Made"
    return Message(f"{verb} {len(imp.changes)} changes:\n" + "\n".join("  " + c for c in imp.changes))


def pool_export(ctx: Context, cmd: Command, args: Args) -> Output:
    import tomli_w

    with ctx.store.read() as txn:
        doc = pooldef.export_pool(txn, ctx.state_dir)
    text = "# xetool pool definition (pool-export); import with: xetool pool-import file=THIS\n" + tomli_w.dumps(doc)
    target = args.get("file")
    if not target or target == "-":
        ctx.out.write(text)
        return None
    tmp = Path(target).with_name(f".{Path(target).name}.tmp{os.getpid()}")
    try:  # same-directory temporary file, then rename: never a half-written definition
        tmp.write_text(text)
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
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

    parts = []
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
