"""A fresh virtualenv with xetool installed from this tree: the interpreter a new machine has.

The figures of issues 2 and 5 are start-up figures, and an interpreter's start-up depends on
what its site-packages run at start (`.pth` files). This machine's own Python runs a sandbox
`.pth` that imports certifi and importlib.resources, about 60 ms, before any program; a venv
without system site-packages runs only its own. `--venv` on cli_bench.py and vm_start_bench.py
measures in one (built with this interpreter's `venv` and pip, offline if pip is configured so).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(where: Path) -> Path:
    """Create the venv under `where`, install xetool into it; return its python."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    python = where / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(ROOT)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return python


def reexec_in_venv(where: Path, script: str, argv: list[str]) -> int:
    """Run `script` again with the venv's python (the benchmark then measures that interpreter)."""
    python = build(where)
    env = dict(os.environ, XETOOL_BENCH_VENV=str(where))
    print(f"clean venv: {where} (xetool installed from {ROOT})", flush=True)
    return subprocess.run([str(python), script, *argv], env=env).returncode
