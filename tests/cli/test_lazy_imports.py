"""The fast paths import only what they need (issue 2, Speed)."""

from __future__ import annotations

import os
import site
import subprocess
import sys

import pytest

from tests.conftest import ROOT

HEAVY = ("rich", "json", "tomllib", "tomli_w", "pyxs", "xetool.pooldef", "xetool.placement", "xetool.master",
         "xetool.host", "hashlib",
         "click", "dataclasses", "inspect", "uuid", "typing", "logging", "pathlib")  # and no click (cli/app.py)
# vm-start needs the host's half, pyxs and uuids, but none of what only some starts or errors need
START_HEAVY = ("rich", "click", "dataclasses", "inspect", "typing", "logging", "whisper", "tomllib", "xetool.pooldef")

PROBE = """
import sys
at_start = set(sys.modules)  # what the interpreter's site loaded is not xetool's doing
from xetool.cli.main import main
rc = main(sys.argv[1:])
sys.stdout.flush()
sys.stderr.write("\\nMODULES " + " ".join(sorted(set(sys.modules) - at_start)) + "\\n")
sys.exit(rc)
"""


def _loaded(pool, argv: list[str]) -> set[str]:
    # -S: no .pth files run at start (this machine's import certifi, pathlib and typing); the
    # site-packages directories are given by hand instead, as a clean venv would have them
    path = os.pathsep.join([str(ROOT), *site.getsitepackages()])
    p = subprocess.run([sys.executable, "-S", "-c", PROBE, *argv], capture_output=True, text=True,
                       env={"PYTHONPATH": path, "XETOOL_STATE_DIR": str(pool), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"})
    assert p.returncode == 0, p.stderr
    return set(p.stderr.split("MODULES ")[1].split())


def _among(loaded: set[str], heavy: tuple[str, ...]) -> list[str]:
    return sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in heavy))


@pytest.mark.parametrize("argv", [["host-list", "--minimal"], ["vm-list"], ["vm-param-get", "uuid={vm}", "param-name=power-state"]])
def test_read_commands_stay_light(argv, pool, ok):
    vm = ok("vm-list", "name-label=web01", "--minimal").strip()
    assert _among(_loaded(pool, [a.format(vm=vm) for a in argv]), HEAVY) == []


def test_vm_start_stays_light(pool, ok):
    ok("vm-start", "vm=web01")  # the archive exists after a first start: whisper is for creating one
    ok("vm-shutdown", "vm=web01", "--force")
    loaded = _loaded(pool, ["vm-start", "vm=web01"])
    ok("vm-shutdown", "vm=web01", "--force")
    assert "xetool.host.vm_start" in loaded and "pyxs" in loaded  # the probe did start it here
    assert _among(loaded, START_HEAVY) == []
