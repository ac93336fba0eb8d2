"""After `pip install .`, man finds the page and bash-completion loads the completion (slow: it
builds and installs the package into a scratch venv)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.shell.conftest import BASH_COMPLETION, ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(where)], check=True)
    src = tmp_path_factory.mktemp("src") / "xetool"  # a clean copy: no build/ or egg-info left in the tree
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    run = subprocess.run([str(where / "bin" / "pip"), "install", "-q", "--no-deps", str(src)],
                         capture_output=True, text=True)
    # no skip: .ci/run has already installed the package the same way, so a failure here is ours
    assert run.returncode == 0, f"pip install failed: {run.stderr[-500:]}"
    return where


def test_data_files_are_installed(venv: Path) -> None:
    assert (venv / "share" / "man" / "man1" / "xetool.1").read_text() == (ROOT / "man" / "xetool.1").read_text()
    installed = venv / "share" / "bash-completion" / "completions" / "xetool"
    assert installed.read_text() == (ROOT / "completions" / "xetool.bash").read_text()


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_man_finds_the_page_through_path(venv: Path) -> None:
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    env.pop("MANPATH", None)
    run = subprocess.run(["man", "-w", "xetool"], env=env, capture_output=True, text=True)
    assert run.stdout.strip() == str(venv / "share" / "man" / "man1" / "xetool.1"), run.stderr


@pytest.mark.skipif(not BASH_COMPLETION.exists(), reason="bash-completion is not installed")
def test_bash_completion_loads_it(venv: Path, pool: Path) -> None:
    """bash-completion 2.11 (Debian 12) looks in $XDG_DATA_DIRS/bash-completion/completions; from
    2.12 it also looks beside each PATH entry, so a venv then needs nothing at all."""
    program = f"""
source {BASH_COMPLETION}
__load_completion xetool || exit 3
COMP_WORDBREAKS=$' \\t\\n"\\'><=;|&(:'
COMP_LINE='xetool vm-list vm=w' COMP_POINT=19 COMP_WORDS=(xetool vm-list vm = w) COMP_CWORD=4
compopt() {{ :; }}
_xetool
printf '%s\\n' "$_xetool_py" "${{COMPREPLY[@]}}"
"""
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "XETOOL_STATE_DIR": str(pool),
           "XDG_DATA_DIRS": f"{venv / 'share'}:/usr/local/share:/usr/share", "HOME": str(venv)}
    env.pop("XETOOL_COMPLETION_PYTHON", None)
    run = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    # the interpreter pip wrote into the script (a venv made by `python3 -m venv` from another
    # venv's python names bin/python3.11, from the system's bin/python3): the script's own
    shebang = (venv / "bin" / "xetool").read_text().splitlines()[0].removeprefix("#!")
    assert Path(shebang).parent == venv / "bin"
    assert run.stdout.split() == [shebang, "web01", "win01"]
