"""Help and --version never run the command, whichever way the line is dispatched: the plain path
(a known command first: xetool/cli/main.py) or click's (options first: xetool/cli/app.py). With
--format json a usage error is a JSON error on stderr like any other."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import dump, run_xe
from xetool import __version__
from xetool.cli.commands.help import describe
from xetool.cli.main import plain_line
from xetool.cli.context import Context
from xetool.cli.registry import commands

XETOOL = shutil.which("xetool")

# (line, the command whose help it prints); {vm} is web01's uuid. Each would change the pool.
HELP_LINES = [
    (["--help", "vm-start", "vm=web01"], "vm-start"),
    (["--quiet", "--help", "vm-param-set", "uuid={vm}", "name-label=changed"], "vm-param-set"),
    (["--help", "vm-destroy", "uuid={vm}"], "vm-destroy"),
    (["vm-start", "vm=web01", "--help"], "vm-start"),
    (["vm-param-set", "uuid={vm}", "name-label=changed", "--help"], "vm-param-set"),
    (["vm-start", "--help", "vm=web01", "not-key-value"], "vm-start"),
    (["--minimal", "vm-destroy", "uuid={vm}", "--help"], "vm-destroy"),
]
VERSION_LINES = [
    ["--version", "vm-start", "vm=web01"],
    ["--version", "vm-param-set", "uuid={vm}", "name-label=changed"],
    ["--trace", "--version", "vm-destroy", "uuid={vm}"],
    ["vm-start", "vm=web01", "--version"],
    ["vm-param-set", "uuid={vm}", "name-label=changed", "--version"],
]


def _path(line: list[str]) -> str:
    return "click" if plain_line(list(line), Context(".")) is None else "plain"


def test_the_lines_cover_both_paths():
    paths = {_path(line) for line, _ in HELP_LINES} | {_path(line) for line in VERSION_LINES}
    assert paths == {"plain", "click"}


def _vm(state: Path) -> str:
    return run_xe(state, "vm-list", "name-label=web01", "--minimal").out.strip()


@pytest.mark.parametrize("line, name", HELP_LINES, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_help_describes_and_runs_nothing(pool, line, name):
    before = dump(pool)
    r = run_xe(pool, *[w.format(vm=_vm(pool)) for w in line])
    assert (r.rc, r.err) == (0, "")
    assert r.out == describe(commands()[name])  # the one renderer `help <command>` uses
    assert r.out == run_xe(pool, "help", name).out
    assert dump(pool) == before


@pytest.mark.parametrize("line", VERSION_LINES, ids=" ".join)
def test_version_prints_and_runs_nothing(pool, line):
    before = dump(pool)
    r = run_xe(pool, *[w.format(vm=_vm(pool)) for w in line])
    assert (r.rc, r.out, r.err) == (0, f"xetool {__version__}\n", "")
    assert dump(pool) == before


def test_help_for_an_unknown_command_is_a_usage_error(pool):
    r = run_xe(pool, "--help", "vm-frobnicate", "vm=web01")
    assert r.rc == 2 and "Unknown command" in r.err


@pytest.mark.parametrize("line", [
    ["--format", "json", "--bogus", "vm-list"],  # click refuses the option
    ["--bogus", "--format=json", "vm-list"],
    ["--format=json", "vm-list", "web01"],  # the grammar refuses the word, before options apply
    ["vm-list", "web01", "--format=json"],
    ["vm-list", "bogus=1", "format=json"],
    ["--format=json", "--help", "vm-frobnicate"],
    ["--format=json", "name-label=x"],
], ids=" ".join)
def test_usage_errors_in_json(pool, line):
    before = dump(pool)
    r = run_xe(pool, *line)
    assert r.rc == 2 and r.out == ""
    err = json.loads(r.err)
    assert set(err) == {"error"} and set(err["error"]) == {"code", "params", "message", "fields"}
    assert dump(pool) == before


@pytest.mark.skipif(XETOOL is None, reason="the xetool console script is not installed (pip install .)")
def test_installed_script_runs_nothing_for_help_or_version(pool):
    env = {**os.environ, "XETOOL_STATE_DIR": str(pool)}
    env.pop("PYTHONPATH", None)
    vm = _vm(pool)
    before = dump(pool)
    lines = [[w.format(vm=vm) for w in line] for line, _ in HELP_LINES] + \
            [[w.format(vm=vm) for w in line] for line in VERSION_LINES]
    for line in lines:
        p = subprocess.run([XETOOL, *line], capture_output=True, text=True, env=env, timeout=60)
        assert p.returncode == 0 and p.stderr == "", (line, p.stderr)
        assert p.stdout.startswith(("command name", "xetool ")), line
    p = subprocess.run([XETOOL, "--format", "json", "--bogus", "vm-start", "vm=web01"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert p.returncode == 2 and json.loads(p.stderr)["error"]["code"] == "SYNTAX_ERROR"
    assert dump(pool) == before


def test_every_parameter_has_its_line():
    for name, cmd in commands().items():
        text = describe(cmd)
        listed = text.split("parameters      :\n")[1].splitlines() if "parameters      :" in text else []
        wanted = list(cmd.reqd) + list(cmd.optn) + (["multiple"] if cmd.selector else [])
        for param in wanted:
            line = next((ln for ln in listed if ln.split()[0] == param), None)
            assert line is not None and len(line.split(None, 1)[1]) > 10, (name, param)


def test_start_help_explains_seed_wait_and_force(pool):
    out = run_xe(pool, "help", "vm-start").out
    lines = {ln.split()[0]: ln for ln in out.split("parameters      :\n")[1].splitlines()}
    assert "reproducible" in lines["seed"] and "exit 4" in lines["wait"] and "pre-boot" in lines["force"]
    assert set(lines) == {"on", "paused", "force", "dry-run", "wait", "seed", "<vm-selectors>", "multiple"}
