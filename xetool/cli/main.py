"""The `xetool` command line: global options, then a command from the registry, then xe's
grammar (`cli/grammar.py`) for the words after it.

A plain line (known options, a known command) is dispatched here without click; anything else
goes to the click app in `cli/app.py`, which owns help, `--version` and usage errors. This is the
one place where an error becomes text on stderr and an exit status.
"""

from __future__ import annotations

import importlib
import os
import sys

from xetool.cli.context import Context
from xetool.cli.grammar import Args, parse
from xetool.cli.registry import Command, command, lookup
from xetool.errors import XeError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

FORMATS = ("xe", "json")
# The options before the command: the flags, and those that take a value.
FLAGS = {"--minimal": "minimal", "--debug": "debug", "--trace": "trace", "--quiet": "quiet"}
VALUED = ("--state-dir", "--format")


def requested_format(argv: Sequence[str]) -> str | None:
    """The output format the line asks for, wherever it does (`--format json`, `--format=json`,
    `format=json` after the command): an error found before the options are applied, a usage
    error among them, is printed in it too."""
    fmt = None
    for n, word in enumerate(argv):
        if word == "--":
            break
        if word == "--format" and n + 1 < len(argv):
            fmt = argv[n + 1]
        elif word.startswith(("--format=", "format=")):
            fmt = word.partition("=")[2]
    return fmt if fmt in FORMATS else None


def command_words(argv: Sequence[str]) -> list[str]:
    """The command and what follows it: the words after the options before the command."""
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "--":
        i += 2 if argv[i] in VALUED else 1
    return list(argv[i + (i < len(argv) and argv[i] == "--"):])


def help_or_version(ctx: Context, words: Sequence[str], version: bool) -> None:
    """`--version` or `--help` anywhere before the command's words end: print, and run nothing.
    Help names the command if there is one (`--help vm-start vm=web01` is `help vm-start`)."""
    if version:
        from xetool import __version__
        from xetool.cli.output import Value, render

        render(Value(f"xetool {__version__}"), ctx.out, fmt=ctx.fmt)
        return
    name = words[0] if words and not words[0].startswith("-") and "=" not in words[0] else None
    if name is not None and lookup(name) is None:
        raise XeError("UNKNOWN_COMMAND", name)
    run(ctx, command("help"), [name] if name else [])


def plain_line(argv: list[str], ctx: Context) -> list[str] | None:
    """The command and its words if the line needs no judging by click: known options with
    good values before a known command. Their values go into `ctx`, as the click group's would."""
    given: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        option, eq, value = argv[i].partition("=")
        if argv[i] in FLAGS:
            given[argv[i]] = ""
        elif option in VALUED and (eq or i + 1 < len(argv)):
            if not eq:
                i += 1
                value = argv[i]
            given[option] = value
        else:
            return None
        i += 1
    fmt = given.get("--format", "xe")
    if i == len(argv) or lookup(argv[i]) is None or "--" in argv[i:] or fmt not in FORMATS \
            or given.get("--state-dir") == "":
        return None
    apply_options(ctx, given.get("--state-dir"), fmt, **{name: flag in given for flag, name in FLAGS.items()})
    return argv[i:]


def apply_options(ctx: Context, state_dir: str | None, fmt: str, **flags: bool) -> None:
    """The options before the command into the context: the plain path's and click's alike."""
    if state_dir:
        from xetool.paths import state_dir_name

        ctx.state = state_dir_name(state_dir)
    if fmt != "xe":
        ctx.fmt = fmt
    for name, given in flags.items():
        if given:
            setattr(ctx, name, True)


def _apply_globals(ctx: Context, args: Args) -> None:
    """xe accepts output options after the command too: `vm-list --minimal`, `minimal=true`."""
    if "state-dir" in args.params:
        from xetool.paths import state_dir_name

        ctx.state = state_dir_name(args.params.pop("state-dir"))
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
        from xetool.cli.views import spec_of

        name = cmd.selector or cmd.cls or args.params.get("class")  # event-wait names its class
        if name is None:
            raise XeError("MISSING_PARAMETER", "class")
        spec = spec_of(name)
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
    if "--help" in words or "--version" in words:  # before parsing: a bad word must not hide them
        help_or_version(ctx, [cmd.name], "--version" in words)
        return
    if cmd.name == "help":  # `xetool help vm-start` names the command without a key
        words = [w if "=" in w or w.startswith("--") else f"command={w}" for w in words]
    args = parse(list(words))
    _apply_globals(ctx, args)
    if "help" in args.params:  # help=true, as xe's other flags may be given
        args = Args({"command": cmd.name})
        cmd = command("help")
    else:
        check_params(cmd, args)
    module, _, func = cmd.impl.partition(":")
    impl = getattr(importlib.import_module(module), func)
    out = impl(ctx, cmd, args)
    from xetool.cli.output import render

    render(out, ctx.out, minimal=ctx.minimal, fmt=ctx.fmt)


class MultipleFailures(Exception):
    """Some of the objects of a --multiple command failed: (object, error) each. The text form was
    printed as each failed; the exit status is the first failure's."""

    def __init__(self, failures: list[tuple[dict[str, str], XeError]]) -> None:
        super().__init__(f"{len(failures)} failed")
        self.failures = failures


def report_failures(many: MultipleFailures, ctx: Context) -> int:
    if ctx.fmt == "json":  # one document: the first error, as any error, and every failure
        import json

        first = many.failures[0][1]
        ctx.err.write(json.dumps({"error": first.to_json(), "failures": [
            {**obj, "error": err.to_json()} for obj, err in many.failures]}) + "\n")
    return int(many.failures[0][1].status)


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
    fmt = requested_format(argv)
    if fmt is not None:
        obj.fmt = fmt
    try:
        line = plain_line(argv, obj)
        if line is None:
            from xetool.cli.app import invoke

            return invoke(argv, obj)
        run(obj, command(line[0]), line[1:])  # plain_line found it
        return 0
    except XeError as err:
        return report(err, obj, obj.err)
    except MultipleFailures as many:
        return report_failures(many, obj)
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as ex:  # a bug: one line, the traceback only with --debug
        if type(ex).__module__ == "sqlite3":  # a store error outside Store's transactions: still not a bug
            from xetool.store.db import DB_NAME, store_error

            return report(store_error(ex, os.path.join(os.fspath(obj.state), DB_NAME)), obj, obj.err)
        if debug:
            import traceback

            traceback.print_exc()
        return report(XeError("INTERNAL_ERROR", f"{type(ex).__name__}: {ex}"), obj, obj.err)
    finally:
        obj.close()


def program() -> None:
    """The `xetool` executable: run the command line, then leave without the interpreter's
    teardown, which costs a short command about 4 ms (every module and object freed in turn).
    Nothing of xetool's runs at exit: by now the store is closed; the output is flushed here."""
    rc = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):  # a reader that went away, or a closed stream
        pass
    os._exit(rc)
