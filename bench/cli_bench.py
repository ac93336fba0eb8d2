#!/usr/bin/env python3
"""The speed targets of issue 2, measured in one run:

    python3 bench/cli_bench.py [--runs N] [--module] [--venv]

- the floor: `python3 -c pass` (this interpreter, sys.executable);
- `xetool host-list --minimal` on the example pool: median <= 50 ms and <= 6x the floor;
- on a generated pool of 1,000 hosts and 20,000 VMs: `vm-list` <= 1 s and
  `vm-param-get uuid=... param-name=power-state` <= 80 ms.

The installed `xetool` console script is measured if it is on PATH, else `python3 -m xetool` from
this tree (or always with --module); with --venv, the console script and python of a fresh venv
(bench/clean_venv.py says why). Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def median_ms(argv: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        p = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append((time.perf_counter() - t) * 1000)
        if p.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed: {p.stderr.decode(errors='replace')}")
    return statistics.median(times)


def generate(state_dir: Path, hosts: int, vms: int) -> str:
    """A large pool, written through the Store API in one transaction; returns one VM's uuid."""
    from xetool.store.db import Store

    store = Store(state_dir)
    with store.write() as txn:
        host_uuids = [txn.insert("host", {"name_label": f"host{i:04d}", "memory_total": 256 << 30,
                                          "memory_free": 200 << 30, "cpu_count": 64,
                                          "capabilities": ["pv", "hvm"]}) for i in range(hosts)]
        txn.update("pool", txn.pool()["uuid"], {"master": host_uuids[0]})
        vm = ""
        for i in range(vms):
            running = i % 3 == 0
            vm = txn.insert("vm", {"name_label": f"vm{i:05d}", "VCPUs_max": 2, "VCPUs_at_startup": 2,
                                   "power_state": "Running" if running else "Halted",
                                   "resident_on": host_uuids[i % hosts] if running else None,
                                   "domid": i + 1 if running else -1, "other_config": {"n": str(i)},
                                   "platform": {"acpi": "1", "apic": "1"}})
    store.close()
    return vm


def installed_script() -> str | None:
    """This interpreter's own `xetool` console script, if it runs this tree's code. Not a PATH
    lookup: a wrapper there (a pyenv shim is a bash script) would be measured with it."""
    script = Path(sys.executable).parent / "xetool"
    if not script.exists():
        return None
    found = subprocess.run([sys.executable, "-c", "import xetool; print(xetool.__file__)"], cwd="/",
                           capture_output=True, text=True).stdout.strip()
    package = Path(found).parent if found else None
    ours = sorted(p.relative_to(ROOT / "xetool") for p in (ROOT / "xetool").rglob("*.py"))
    if package is None or any(not (package / p).exists() or (package / p).read_bytes() != (ROOT / "xetool" / p).read_bytes()
                              for p in ours):
        print(f"note: {script} runs another xetool than this tree's; measuring the tree")
        return None
    return str(script)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=21, help="runs per figure (median; default 21)")
    ap.add_argument("--module", action="store_true", help="measure `python3 -m xetool` from this tree")
    ap.add_argument("--venv", action="store_true", help="measure in a fresh venv (bench/clean_venv.py)")
    opts = ap.parse_args()
    if opts.venv:
        sys.path.insert(0, str(ROOT / "bench"))
        from clean_venv import reexec_in_venv

        with tempfile.TemporaryDirectory(prefix="xetool-venv-") as tmp:
            return reexec_in_venv(Path(tmp) / "venv", __file__, [a for a in sys.argv[1:] if a != "--venv"])
    runs = max(opts.runs, 15)

    installed = None if opts.module else installed_script()
    xetool = [installed] if installed else [sys.executable, "-m", "xetool"]
    env = dict(os.environ)
    if env.pop("PYTHONDONTWRITEBYTECODE", None):
        # An installed package has its bytecode compiled; without it every run would compile
        # xetool's sources. The warm-up import below writes __pycache__ for the source tree.
        print("note: PYTHONDONTWRITEBYTECODE is set here; unset for the measured commands")
    if not installed:
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    print(f"python: {sys.executable} ({sys.version.split()[0]})")
    print(f"xetool: {' '.join(xetool)}{'' if installed else '  (not installed: run from the source tree)'}")
    print(f"runs:   {runs} per figure, median wall time\n")

    rows: list[tuple[str, float, float | None, float | None]] = []
    with tempfile.TemporaryDirectory(prefix="xetool-bench-") as tmp:
        small, big = Path(tmp) / "small", Path(tmp) / "big"
        e_small = {**env, "XETOOL_STATE_DIR": str(small)}
        e_big = {**env, "XETOOL_STATE_DIR": str(big)}
        subprocess.run(xetool + ["pool-import", f"file={ROOT / 'examples' / 'pool.toml'}"], env=e_small,
                       check=True, stdout=subprocess.DEVNULL)
        t = time.perf_counter()
        vm = generate(big, 1000, 20000)
        print(f"generated 1,000 hosts and 20,000 VMs in {time.perf_counter() - t:.1f} s\n")

        floor = median_ms([sys.executable, "-c", "pass"], env, runs)
        rows.append(("python3 -c pass (floor)", floor, None, None))
        # What any console script that reads SQLite pays before its own code: pip's script
        # template imports re, and sqlite3 brings datetime. Shown, not judged.
        least = median_ms([sys.executable, "-c", "import re, sqlite3"], env, runs)
        rows.append(("python3 -c 'import re, sqlite3'", least, None, None))
        hl = median_ms(xetool + ["host-list", "--minimal"], e_small, runs)
        rows.append(("host-list --minimal, example pool", hl, 50.0, 6.0))
        vl = median_ms(xetool + ["vm-list"], e_big, max(5, runs // 3))
        rows.append(("vm-list, 20,000 VMs", vl, 1000.0, None))
        pg = median_ms(xetool + ["vm-param-get", f"uuid={vm}", "param-name=power-state"], e_big, runs)
        rows.append(("vm-param-get power-state, 20,000 VMs", pg, 80.0, None))

    missed = 0
    print(f"{'figure':40} {'median':>10} {'target':>10} {'x floor':>8}  result")
    for name, ms, target, ratio_max in rows:
        ratio = ms / floor
        verdicts = []
        if target is not None:
            verdicts.append("ok" if ms <= target else f"MISSED (> {target:.0f} ms)")
        if ratio_max is not None:
            verdicts.append("ok" if ratio <= ratio_max else f"MISSED (> {ratio_max:.0f}x floor)")
        missed += sum(v != "ok" for v in verdicts)
        tgt = f"{target:.0f} ms" if target is not None else "-"
        if ratio_max is not None:
            tgt += f", {ratio_max:.0f}x"
        print(f"{name:40} {ms:8.1f} ms {tgt:>14} {ratio:6.2f}x  {'; '.join(verdicts) or '-'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
