"""`xetool help`: the common commands, every command, or one command's parameters."""

from __future__ import annotations

import textwrap

from xetool.cli.context import Context
from xetool.cli.grammar import Args
from xetool.cli.output import Message, Output, Value
from xetool.cli.registry import SELECTOR_HELP, Command, commands, lookup, param_doc
from xetool.errors import XeError

USAGE = """\
Usage: xetool [--state-dir=DIR] <command> [key=value ...] [map-param:key=value ...] [--flag ...]

Global options (before or after the command):
    --state-dir=DIR   the pool's state directory (default: $XETOOL_STATE_DIR, /var/lib/xetool
                      for root, $XDG_STATE_HOME/xetool otherwise)
    --minimal         print only the first field of each record, comma-separated
    --format=json     print records, values and errors as JSON
    --quiet           no notes or warnings on stderr
    --trace           print each step of long operations with its duration
    --debug           show a traceback on internal errors

To get help on a specific command: xetool help <command>
To get a full listing of commands: xetool help --all
"""


def optional_params(cmd: Command) -> list[str]:
    extra = [f"<{cmd.selector}-selectors>"] if cmd.selector else []
    if cmd.any_field:
        extra.append(f"<{cmd.cls.replace('_', '-')}-fields>" if cmd.cls else "<fields of the class>")
    return list(cmd.optn) + extra


def described_params(cmd: Command) -> list[tuple[str, str]]:
    """Every parameter of the command with its one line: required, optional, then --multiple."""
    names = list(cmd.reqd) + optional_params(cmd) + (["multiple"] if cmd.selector else [])
    return [(name, param_doc(cmd, name) or "") for name in names]


def describe(cmd: Command) -> str:
    """One command's help: `help CMD`, `CMD --help` and `--help CMD` all print this."""
    text = cmd.help + (" " + SELECTOR_HELP if cmd.selector else "")
    # xe's rio_help layout: the keys of the last three lines indented by 8 and padded to 16.
    out = (f"{'command name':<24}: {cmd.name}\n"
           f"        {'reqd params':<16}: {', '.join(cmd.reqd)}\n"
           f"        {'optional params':<16}: {', '.join(optional_params(cmd))}\n"
           f"        {'description':<16}: {text}\n")
    params = described_params(cmd)
    if params:
        width = max(len(name) for name, _ in params)
        out += f"        {'parameters':<16}:\n" + "".join(f"          {name:<{width}}  {doc}\n" for name, doc in params)
    return out


def _wrapped(names: list[str]) -> str:
    return textwrap.fill(", ".join(names), width=74, initial_indent="    ", subsequent_indent="    ",
                         break_on_hyphens=False)


def help_cmd(ctx: Context, _cmd: Command, args: Args) -> Output:
    table = commands()
    wanted = args.get("command")
    if wanted:
        found = lookup(wanted)
        if found is None:
            raise XeError("UNKNOWN_COMMAND", wanted)
        text = describe(found)  # a help page, not a listing: --minimal does not drop it
        return Value(text.rstrip("\n")) if ctx.minimal else Message(text)
    show_all = args.flag("all")
    names = list(table) if show_all else [n for n, c in table.items() if c.standard]
    if ctx.minimal:
        return Value(",".join(names))
    if not show_all:
        return Message(USAGE + "\nCommon command list\n-------------------\n" + _wrapped(names))
    hosts = [n for n in names if n.startswith("host-")]
    vms = [n for n in names if n.startswith("vm-")]
    rest = [n for n in names if n not in hosts and n not in vms]
    body = "\n\n".join(_wrapped(group) for group in (hosts, vms, rest))
    return Message(USAGE + "\nFull command list\n-----------------\n" + body)
