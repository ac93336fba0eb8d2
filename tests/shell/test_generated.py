"""The committed man page and completion script are what the generators make from the registry
now, cover every command, and pass mandoc's lint."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from tests.shell.conftest import ROOT
from xetool.cli.registry import commands
from xetool.errors import ExitStatus

MAN = ROOT / "man" / "xetool.1"


@pytest.mark.parametrize("generator", ["gen-man", "gen-completion"])
def test_committed_files_are_current(generator: str) -> None:
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / generator), "--check"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr + f"\n(run scripts/{generator} and commit the result)"


def test_installed_completion_is_the_generated_script() -> None:
    assert (ROOT / "completions" / "xetool").read_text() == (ROOT / "completions" / "xetool.bash").read_text()


def _man_commands() -> set[str]:
    text = MAN.read_text()
    return {m.replace("\\-", "-") for m in re.findall(r"^\.B (\S+)$", text, re.M)}


def test_every_command_is_in_the_man_page() -> None:
    assert set(commands()) <= _man_commands()


def test_every_command_is_in_the_completion_script() -> None:
    text = (ROOT / "completions" / "xetool.bash").read_text()
    listed = re.search(r"^_xetool_commands='?([^'\n]*)'?$", text, re.M)
    assert listed is not None and listed.group(1).split() == list(commands())
    for name in commands():
        assert f"    [{name}]=" in text or f"    ['{name}']=" in text, name


def test_man_page_documents_every_exit_status() -> None:
    text = MAN.read_text()
    section = text.split(".SH EXIT STATUS", 1)[1].split(".SH", 1)[0]
    for status in ExitStatus:
        assert f"\\fB{int(status)}\\fR" in section, status


@pytest.mark.skipif(shutil.which("mandoc") is None, reason="mandoc is not installed (.ci/run installs it)")
def test_mandoc_lint_finds_nothing() -> None:
    # -W all: style notes too (long source lines, sections out of order); all are fixed, none waived.
    run = subprocess.run(["mandoc", "-Tlint", "-W", "all", str(MAN)], capture_output=True, text=True)
    assert run.returncode == 0 and not run.stdout and not run.stderr, run.stdout + run.stderr


def test_generators_notice_a_new_command(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A command added to the registry without regenerating makes --check fail."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from xetool.cli import registry\n"
        "extra = registry.Command('zz-probe', 'A probe.', 'x:y', reqd=('uuid',))\n"
        "registry.commands.cache_clear()\n"
        "orig = registry._extra\n"
        "registry._extra = lambda: orig() + (extra,)\n"
        "sys.argv = [sys.argv[1], '--check']\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    for generator in ("gen-man", "gen-completion"):
        run = subprocess.run([sys.executable, str(probe), str(ROOT / "scripts" / generator)], capture_output=True, text=True)
        assert run.returncode == 1, (generator, run.stdout, run.stderr)
        assert "stale" in run.stderr
