"""The click app: the full parser for the command lines that `main`'s plain path leaves to it.

That is a line without a command (`xetool`, `xetool --help`, `--version`), or one with an option,
a command name or a `--` that click must judge, so that help and usage errors read the same
whichever way a line came in. Imported only then: click costs more start-up than a whole
`host-list` (issue 2, Speed).
"""

from __future__ import annotations

import click

from xetool.cli.context import Context
from xetool.cli.grammar import check_utf8
from xetool.cli.main import FORMATS, apply_options, command_words, help_or_version, run
from xetool.cli.registry import Command, command, commands, lookup
from xetool.errors import XeError


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
        obj = click.get_current_context().find_object(Context)
        assert obj is not None  # the group made it before any command runs
        run(obj, cmd, list(words))

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
    # --version and --help never reach here: `invoke` answers them before the group runs.
    obj = ctx.find_object(Context)
    if obj is None:
        obj = ctx.obj = Context.from_options(state_dir)
    apply_options(obj, state_dir, fmt, minimal=minimal, debug=debug, trace=trace, quiet=quiet)
    ctx.call_on_close(obj.close)
    if ctx.invoked_subcommand is None:
        run(obj, command("help"), [])


def invoke(argv: list[str], obj: Context) -> int:
    """Run one command line through click; XeError is the caller's to report."""
    try:
        with cli.make_context("xetool", argv, obj=obj) as cctx:
            p = cctx.params
            if p["version"] or p["show_help"]:  # before the group runs: never the command
                apply_options(obj, p["state_dir"], p["fmt"], minimal=p["minimal"], quiet=p["quiet"])
                help_or_version(obj, command_words(argv), p["version"])
                return 0
            cli.invoke(cctx)
        return 0
    except click.exceptions.Exit as ex:
        return int(ex.exit_code)
    except click.ClickException as ex:
        raise XeError("SYNTAX_ERROR", ex.format_message()) from None
