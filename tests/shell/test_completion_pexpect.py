"""Completion in a real interactive bash, with Debian's bash-completion loaded and then ours, as a
user's shell has them. `xetool` is a shell function that prints its arguments, so a completed line
can be run and read back; a file named xetool on PATH gives the helper's interpreter, as an
installed one does."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.shell.conftest import BASH_COMPLETION, SCRIPT
from xetool.cli.registry import commands

pexpect = pytest.importorskip("pexpect")
pytestmark = pytest.mark.skipif(not BASH_COMPLETION.exists(), reason="bash-completion is not installed (.ci/run installs it)")

PROMPT = "PROMPT> "
RC = f"""
source {BASH_COMPLETION}
source {SCRIPT}
PS1='{PROMPT}'
bind 'set show-all-if-ambiguous on'
bind 'set completion-query-items 10000'
bind 'set page-completions off'
bind 'set bell-style none'
xetool() {{ printf 'ARGS:%s\\n' "$*"; }}
"""


class Shell:
    def __init__(self, child: "pexpect.spawn") -> None:
        self.child = child

    def listing(self, text: str) -> list[str]:
        """Type text and TAB; return the candidates bash lists, and clear the line."""
        self.child.send(text + "\t")
        self.child.expect_exact(PROMPT, timeout=10)
        shown = self.child.before.split("\n", 1)[-1]  # after the echo of what was typed
        self.child.send("\x15\n")  # kill the line, then a fresh prompt
        self.child.expect_exact(PROMPT, timeout=10)
        return shown.split()

    def run(self, text: str) -> str:
        """Type text (TABs included) and Enter; return the arguments xetool was called with."""
        self.child.send(text + "\n")
        self.child.expect(r"ARGS:([^\r\n]*)\r\n", timeout=10)
        args = self.child.match.group(1)
        self.child.expect_exact(PROMPT, timeout=10)
        return args


@pytest.fixture
def sh(pool: Path, tmp_path: Path) -> Iterator[Shell]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "xetool"  # what pip writes: a #! line naming the interpreter
    fake.write_text(f"#!{sys.executable}\nraise SystemExit('the shell function runs instead')\n")
    fake.chmod(0o755)
    rc = tmp_path / "rc"
    rc.write_text(RC)
    work = tmp_path / "work"
    work.mkdir()
    (work / "pool.toml").write_text("")
    (work / "pools").mkdir()
    env = {"PATH": f"{bindir}:{os.environ['PATH']}", "HOME": str(tmp_path), "TERM": "dumb", "INPUTRC": "/dev/null",
           "XETOOL_STATE_DIR": str(pool), "LANG": "C.UTF-8"}
    child = pexpect.spawn("bash", ["--rcfile", str(rc), "-i"], env=env, cwd=str(work), encoding="utf-8",
                          dimensions=(50, 400), timeout=10)
    child.expect_exact(PROMPT)
    yield Shell(child)
    child.sendeof()
    child.close(force=True)


def test_command_names(sh: Shell) -> None:
    assert sh.run("xetool pool-imp\t") == "pool-import"
    assert sh.run("xetool vm-param-l\t") == "vm-param-list"
    assert set(sh.listing("xetool vm-param-")) == {c for c in commands() if c.startswith("vm-param-")}


@pytest.mark.parametrize("command", ["vm-start", "host-enable"])
def test_selector_params(sh: Shell, command: str) -> None:
    cls = command.split("-")[0]
    shown = sh.listing(f"xetool {command} ")
    assert {f"{cls}=", "multiple=", "name-label=", "uuid=", "other-config:"} <= set(shown)


def test_vm_names(sh: Shell) -> None:
    command = "vm-start" if "vm-start" in commands() else "vm-list"
    assert sorted(sh.listing(f"xetool {command} vm=")) == ["db01", "web01", "win01"]
    assert sh.run(f"xetool {command} vm=we\t") == f"{command} vm=web01"  # and a space after it


def test_uuids(sh: Shell, vm_uuids: dict[str, str]) -> None:
    shown = " ".join(sh.listing("xetool vm-param-get uuid="))
    for name, uuid in vm_uuids.items():
        assert f"{uuid} ({name})" in shown
    u = vm_uuids["db01"]
    assert sh.run(f"xetool vm-param-get uuid={u[:13]}\tparam-name=power-s\t") == f"vm-param-get uuid={u} param-name=power-state"


def test_enums(sh: Shell) -> None:
    assert sh.listing("xetool vbd-create mode=") == ["RO", "RW"]
    assert sh.run("xetool vbd-create type=F\t") == "vbd-create type=Floppy"


def test_params_fields(sh: Shell) -> None:
    shown = sh.listing("xetool vm-list params=")
    assert {"all", "uuid", "name-label", "power-state", "resident-on"} <= set(shown)
    assert sh.run("xetool vm-list params=uuid,power-\t") == "vm-list params=uuid,power-state"


def test_files(sh: Shell) -> None:
    assert sorted(sh.listing("xetool pool-import file=pool")) == ["pool.toml", "pools/"]
    assert sh.run("xetool pool-import file=pool.\t") == "pool-import file=pool.toml"


def test_given_param_not_offered_and_no_space_after_equals(sh: Shell) -> None:
    assert sh.listing("xetool vm-param-get uuid=x ") == ["param-key=", "param-name="]
    assert sh.run("xetool vm-param-get uuid=x param-name=y \tk") == "vm-param-get uuid=x param-name=y param-key=k"


def test_map_param_no_space_after_colon(sh: Shell) -> None:
    assert sh.run("xetool vm-param-set uuid=x other-c\towner=ops") == "vm-param-set uuid=x other-config:owner=ops"


def test_helper_interpreter_is_the_one_the_xetool_script_names(sh: Shell) -> None:
    sh.child.send("xetool vm-list vm=\t")  # run the helper once, then ask what was used
    sh.child.expect_exact(PROMPT)
    sh.child.send("\x15\n")
    sh.child.expect_exact(PROMPT)
    sh.child.send("echo PY=${_xetool_py}\n")
    sh.child.expect(r"PY=(/\S+)\r\n")
    assert sh.child.match.group(1) == sys.executable
