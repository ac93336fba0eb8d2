""".ci/run runs the README's two commands as written: it reads them from the README's
"## Two commands" section, and this checks that it finds the install-and-demo command and the
test command there."""

from __future__ import annotations

import re
import subprocess

from tests.shell.conftest import ROOT


def test_ci_reads_the_readmes_two_commands() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    function = re.search(r"^readme_command\(\) \{\n.*?\n\}\n", script, re.M | re.S)
    assert function, "readme_command is gone from .ci/run"
    out = subprocess.run(["bash", "-c", function.group(0) + "readme_command 1; readme_command 2"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["python3 -m pip install . && scripts/demo",
                   "python3 -m pip install '.[test]' && python3 -m pytest -q"]
    assert 'bash -c "$first"' in script and 'bash -c "$second"' in script
