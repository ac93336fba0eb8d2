"""The `xetool` command: a click group whose commands come from the registry.

click parses only the options before the command (`--state-dir`, `--debug`, ...); everything
after the command name is xe's grammar (`cli/grammar.py`). This is the one place where an error
becomes text on stderr and an exit status.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Sequence

import click

from xetool import __version__
from xetool.cli.context import Context
from xetool.cli.grammar import Args, check_utf8, parse
from xetool.cli.registry import Command, commands, lookup
from xetool.errors import XeError

FORMATS = ("xe", "json")


class XeGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(commands())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = lookup(name)
        return _click_command(cmd) if cmd else None

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str, click.Command, list[str]]:
        name = args[0]
        check_utf8(name, "command")
        if "=" in name:
            raise XeError("SYNTAX_ERROR", f"the command name is missing before '{name}'")
        found = self.get_command(ctx, name)
        if found is None:
            raise XeError("UNKNOWN_COMMAND", name)
        return name, found, args[1:]


def _click_command(cmd: Command) -> click.Command:
    def callback(words: tuple[str, ...]) -> None:
        run(click.get_current_context().find_object(Context), cmd, list(words))  # type: ignore[arg-type]

    return click.Command(
        cmd.name,
        callback=callback,
        params=[click.Argument(["words"], nargs=-1, type=click.UNPROCESSED)],
        help=cmd.help,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    )


@click.group(cls=XeGroup, invoke_without_command=True, context_settings={"help_option_names": []})
@click.option("--state-dir", type=click.Path(file_okay=False), default=None, help="Pool state directory.")
@click.option("--minimal", is_flag=True, help="Print only the first field of each record, comma-separated.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="xe", help="Output format.")
@click.option("--debug", is_flag=True, help="Show a traceback on internal errors.")
@click.option("--trace", is_flag=True, help="Print each step of long operations with its duration.")
@click.option("--quiet", is_flag=True, help="No notes or warnings on stderr.")
@click.option("--version", is_flag=True, help="Print the version.")
@click.option("--help", "show_help", is_flag=True, help="Show help.")
@click.pass_context
def cli(ctx: click.Context, state_dir: str | None, minimal: bool, fmt: str, debug: bool, trace: bool,
        quiet: bool, version: bool, show_help: bool) -> None:
    """xe-style toolstack for Xen pools."""
    obj = ctx.find_object(Context)
    if obj is None:
        obj = Context.from_options(state_dir)
        ctx.obj = obj
    elif state_dir:
        from xetool.paths import state_dir as resolve

        obj.state_dir = resolve(state_dir)
    obj.minimal = obj.minimal or minimal
    obj.fmt = fmt if fmt != "xe" else obj.fmt
    obj.debug, obj.trace, obj.quiet = obj.debug or debug, obj.trace or trace, obj.quiet or quiet
    ctx.call_on_close(obj.close)
    if version:
        click.echo(f"xetool {__version__}")
    elif ctx.invoked_subcommand is None:
        run(obj, lookup("help"), [])  # type: ignore[arg-type]


def _apply_globals(ctx: Context, args: Args) -> None:
    """xe accepts output options after the command too: `vm-list --minimal`, `minimal=true`."""
    if "state-dir" in args.params:
        from xetool.paths import state_dir

        ctx.state_dir = state_dir(args.params.pop("state-dir"))
    fmt = args.params.pop("format", None)
    if fmt is not None:
        if fmt not in FORMATS:
            raise XeError("FIELD_TYPE_ERROR", "format", fmt, "one of " + ", ".join(FORMATS))
        ctx.fmt = fmt
    for name in ("minimal", "debug", "trace", "quiet"):
        if name in args.params:
            setattr(ctx, name, getattr(ctx, name) or args.flag(name))
            del args.params[name]


def check_params(cmd: Command, args: Args) -> None:
    """Unknown, missing and empty parameters, before anything is looked up."""
    allowed = set(cmd.reqd) | set(cmd.optn) | {"multiple"}
    spec = None
    if cmd.selector or cmd.any_field:
        from xetool.datamodel import get_class

        name = cmd.selector or cmd.cls or args.params.get("class")  # event-wait names its class
        if name is None:
            raise XeError("MISSING_PARAMETER", "class")
        spec = get_class(name)
    for key in args.params:
        if key in allowed or cmd.free_keys:
            continue
        base = key.split(":", 1)[0]
        if spec is not None and (key == spec.name.replace("_", "-") or spec.field(base) is not None):
            continue
        if ":" in key and f"{base}:" in {k.split(":", 1)[0] + ":" for k in allowed if ":" in k}:
            continue
        raise XeError("UNKNOWN_PARAMETER", key, cmd.name)
    for key in cmd.reqd:
        if key not in args.params:
            raise XeError("MISSING_PARAMETER", key)
        if args.params[key] == "":
            raise XeError("EMPTY_VALUE", key)


def run(ctx: Context, cmd: Command, words: Sequence[str]) -> None:
    if cmd.name == "help":  # `xetool help vm-start` names the command without a key
        words = [w if "=" in w or w.startswith("--") else f"command={w}" for w in words]
    args = parse(list(words))
    _apply_globals(ctx, args)
    if "help" in args.params:
        args = Args({"command": cmd.name})
        cmd = lookup("help")  # type: ignore[assignment]
    else:
        check_params(cmd, args)
    module, _, func = cmd.impl.partition(":")
    impl = getattr(importlib.import_module(module), func)
    out = impl(ctx, cmd, args)
    from xetool.cli.output import render

    render(out, ctx.out, minimal=ctx.minimal, fmt=ctx.fmt)


def report(err: XeError, ctx: Context | None, stream: Any) -> int:
    if ctx is not None and ctx.fmt == "json":
        import json

        stream.write(json.dumps({"error": err.to_json()}) + "\n")
    else:
        stream.write(err.render() + "\n")
    return int(err.status)


def main(argv: Sequence[str] | None = None, ctx: Context | None = None) -> int:
    """Run one command line; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    obj = ctx if ctx is not None else Context.from_options(None)  # errors need its --format
    try:
        with cli.make_context("xetool", list(argv), obj=obj) as cctx:
            cli.invoke(cctx)
        return 0
    except XeError as err:
        return report(err, obj, obj.err)
    except click.exceptions.Exit as ex:
        return int(ex.exit_code)
    except click.ClickException as ex:
        return report(XeError("SYNTAX_ERROR", ex.format_message()), obj, obj.err)
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as ex:  # a bug: one line, the traceback only with --debug
        if debug:
            import traceback

            traceback.print_exc()
        return report(XeError("INTERNAL_ERROR", f"{type(ex).__name__}: {ex}"), obj, obj.err)
