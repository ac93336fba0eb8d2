#!/usr/bin/env python3
"""How long each kind of TAB takes, against floors measured in the same run.

    PYTHONPATH=. python3 bench/completion_bench.py [--state-dir DIR] [--runs N]

One bash sources completions/xetool.bash and calls the completion function as readline would,
N times per kind of TAB, timing each call with $EPOCHREALTIME; the same bash times the floors
(`python3 -c pass`, the helper's interpreter with and without site). Without --state-dir the
example pool is imported into a temporary directory. Exits 1 if a median is over the budget.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "completions" / "xetool.bash"
BUDGET_MS = 100.0
BREAKS = " \t\n\"'><=;|&(:"

# (what, line typed before TAB); uuids are filled in from the pool
CASES = [
    ("command name", "xetool vm-param-g"),
    ("command groups", "xetool "),
    ("parameter names", "xetool vm-list "),
    ("params, some given", "xetool vm-param-get uuid=x "),
    ("enum value", "xetool vbd-create mode="),
    ("boolean value", "xetool vm-list is-a-template="),
    ("params= fields", "xetool vm-list params=uuid,na"),
    ("file=", "xetool pool-import file="),
    ("vm= names (store)", "xetool vm-list vm="),
    ("host= names (store)", "xetool host-enable host=h"),
    ("uuid= of vm (store)", "xetool vm-param-get uuid="),
    ("vm-uuid= (store)", "xetool vbd-create vm-uuid="),
    ("uuid= of vbd, joined (store)", "xetool vbd-param-get uuid="),
    ("-- options", "xetool vm-start --"),
    ("param-key= of a map (store)", "xetool vm-param-get param-name=platform param-key="),
    ("platform: keys (store)", "xetool vm-param-set uuid=x platform:"),
]


def split(line: str) -> list[str]:
    brk = re.escape(BREAKS.strip())
    words: list[str] = []
    for chunk in line.split(" "):
        words += re.findall(rf"[{brk}]+|[^{brk}]+", chunk) if chunk else [""]
    return words


def bash_program(runs: int) -> str:
    q = shlex.quote
    lines = [
        "compopt() { :; }",
        "us() { local t=${EPOCHREALTIME/./}; echo $((t - start)); }",
        f"for ((r = 0; r < {runs}; r++)); do",
        f"  start=${{EPOCHREALTIME/./}}; source {q(str(SCRIPT))}; echo \"load $(us)\"",
        "  start=${EPOCHREALTIME/./}; python3 -c pass; echo \"floor:python3 -c pass $(us)\"",
        "  start=${EPOCHREALTIME/./}; \"$PY\" -c pass; echo \"floor:interpreter -c pass $(us)\"",
        "  start=${EPOCHREALTIME/./}; \"$PY\" -S -I -c pass; echo \"floor:interpreter -S -I -c pass $(us)\"",
        "  start=${EPOCHREALTIME/./}; \"$PY\" -S -I -c 'import sqlite3'; echo \"floor:-S -I import sqlite3 $(us)\"",
    ]
    for n, (_, line) in enumerate(CASES):
        words = " ".join(q(w) for w in split(line))
        lines += [
            f"  COMP_WORDBREAKS={q(BREAKS)} COMP_LINE={q(line)} COMP_POINT={len(line)} COMP_WORDS=({words}) COMP_CWORD={len(split(line)) - 1}",
            f"  start=${{EPOCHREALTIME/./}}; _xetool; echo \"case:{n} $(us) ${{#COMPREPLY[@]}}\"",
        ]
    lines.append("done")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--state-dir", type=Path)
    ap.add_argument("--runs", type=int, default=15)
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state = opts.state_dir
        if state is None:
            state = Path(tmp) / "pool"
            subprocess.run([sys.executable, "-m", "xetool", f"--state-dir={state}", "pool-import",
                            f"file={ROOT / 'examples' / 'pool.toml'}"], env={**os.environ, "PYTHONPATH": str(ROOT)},
                           check=True, capture_output=True)
        env = {**os.environ, "XETOOL_STATE_DIR": str(state), "PY": sys.executable,
               # the interpreter an installed xetool's #! line names; this run has none installed
               "XETOOL_COMPLETION_PYTHON": sys.executable}
        out = subprocess.run(["bash", "--norc", "--noprofile", "-c", bash_program(opts.runs)], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=True).stdout
    times: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for line in out.splitlines():
        key, _, rest = line.rpartition(" ") if not line.startswith("case:") else (line.split()[0], "", line.split()[1])
        if line.startswith("case:"):
            counts[key] = int(line.split()[2])
        times.setdefault(key, []).append(int(rest) / 1000)
    floor = statistics.median(times["floor:python3 -c pass"])
    print(f"{'':34} {'median':>8} {'max':>8} {'/floor':>7}  candidates")
    for key in [k for k in times if k.startswith("floor:")] + ["load"]:
        med = statistics.median(times[key])
        print(f"{key.removeprefix('floor:'):34} {med:7.1f}ms {max(times[key]):7.1f}ms {med / floor:6.2f}x")
    over = []
    for n, (what, _) in enumerate(CASES):
        ts = times[f"case:{n}"]
        med = statistics.median(ts)
        print(f"TAB {what:30} {med:7.1f}ms {max(ts):7.1f}ms {med / floor:6.2f}x  {counts[f'case:{n}']}")
        if med > BUDGET_MS:
            over.append(what)
    print(f"floor = `python3 -c pass` on PATH ({floor:.1f} ms); budget {BUDGET_MS:.0f} ms a TAB; {opts.runs} runs each")
    if over:
        print("over budget: " + ", ".join(over))
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
