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
    dry_run = args.flag("dry-run")
    ctx.create_pool = not dry_run  # the one command that makes a pool where there is none
    scratch = _scratch_store(ctx) if dry_run else None  # a dry run where there is no pool yet
    store = scratch.store if scratch else ctx.store
    try:
        with store.write() as txn:
            imp = pooldef.import_pool(txn, doc, str(path), store.state_dir, created)
            if dry_run:
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
