"""The fast paths import only what they need (issue 2, Speed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

HEAVY = ("rich", "json", "tomllib", "tomli_w", "pyxs", "xetool.pooldef", "xetool.placement", "xetool.master",
         "xetool.host", "hashlib",
         "click", "dataclasses", "inspect", "uuid")  # a plain command line needs no click (cli/app.py)

PROBE = """
import sys
at_start = set(sys.modules)  # what the interpreter's site loaded is not xetool's doing
from xetool.cli.main import main
rc = main(sys.argv[1:])
sys.stdout.flush()
sys.stderr.write("\\nMODULES " + " ".join(sorted(set(sys.modules) - at_start)) + "\\n")
sys.exit(rc)
"""


@pytest.mark.parametrize("argv", [["host-list", "--minimal"], ["vm-list"], ["vm-param-get", "uuid={vm}", "param-name=power-state"]])
def test_read_commands_stay_light(argv, pool, ok):
    vm = ok("vm-list", "name-label=web01", "--minimal").strip()
    p = subprocess.run([sys.executable, "-c", PROBE, *[a.format(vm=vm) for a in argv]], capture_output=True, text=True,
                       env={"PYTHONPATH": str(ROOT), "XETOOL_STATE_DIR": str(pool), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    loaded = set(p.stderr.split("MODULES ")[1].split())
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY or any(m.startswith(h + ".") or m == h for h in HEAVY))
    assert heavy == []
