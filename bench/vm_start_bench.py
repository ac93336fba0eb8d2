"""vm-start benchmarks (issues 4 and 5).

    PYTHONPATH=. python3 bench/vm_start_bench.py [--starts 10] [--hosts 1000] [--vms 20000] [--venv]
                                                 [--synchronous NORMAL,FULL] [--dir /var/tmp] [--no-dry-run]

1. A fresh `xetool vm-start` of a PV VM with 2 VBDs and 2 VIFs on the simulator (web01 of
   examples/pool.toml, hosts already running), median over --starts starts, each followed by an
   untimed `vm-shutdown --force`: target <= 300 ms; floor `xetool host-list --minimal`, same run.
   No `on=`: every start pays the chooser (the snapshot read and choose_host_for_vm), as an
   operator's does.
   Then one `--trace` run, whose per-step durations are printed.
2. `vm-start --dry-run` of one VM on a generated store of --hosts hosts and --vms VMs: target
   <= 500 ms wall, beside the same floor on that store. choose_host_for_vm alone (<= 20 ms) is
   bench/placement_bench.py's, run here on the same sizes rather than duplicated.
Exits 1 if a target is missed.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bigpool import generated_store  # noqa: E402
from start_storm import env_for, stop_all, xe  # noqa: E402

from xetool.store.db import SYNCHRONOUS  # noqa: E402


def wall(env: dict[str, str], *args: str) -> float:
    t = time.perf_counter()
    out = xe(env, *args)
    seconds = time.perf_counter() - t
    if out.returncode:
        raise SystemExit(f"xetool {' '.join(args)}: {out.stderr}")
    return seconds


def report(name: str, values: list[float], target: float, floor: float) -> bool:
    med = statistics.median(values)
    ok = med <= target
    print(f"  {name}: median {med * 1000:.0f} ms over {len(values)} (min {min(values) * 1000:.0f}, max "
          f"{max(values) * 1000:.0f}); target <= {target * 1000:.0f} ms; floor {floor * 1000:.0f} ms; "
          f"ratio to floor {med / floor:.2f}  {'OK' if ok else 'MISSED'}")
    return ok


def start_bench(starts: int, where: str | None = None) -> bool:
    state = Path(tempfile.mkdtemp(prefix="xetool-bench-", dir=where)) / "state"
    env = env_for(state)
    try:
        wall(env, "pool-import", f"file={ROOT / 'examples' / 'pool.toml'}")
        wall(env, "host-sim-start", "--multiple")
        wall(env, "vm-start", "vm=web01")  # warm: byte code, bridges, the RRD archive
        wall(env, "vm-shutdown", "vm=web01", "--force")
        floor = statistics.median(wall(env, "host-list", "--minimal") for _ in range(starts))
        times = []
        for _ in range(starts):
            times.append(wall(env, "vm-start", "vm=web01"))
            wall(env, "vm-shutdown", "vm=web01", "--force")
        sync = os.environ.get("XETOOL_DB_SYNCHRONOUS") or "the default (" + SYNCHRONOUS + ")"
        print(f"vm-start of a PV VM with 2 VBDs and 2 VIFs, hosts running; store synchronous={sync} on {state}:")
        ok = report("vm-start", times, 0.300, floor)
        out = xe(env, "--trace", "vm-start", "vm=web01")
        print("  --trace of one start:")
        print("\n".join("    " + line for line in (out.stderr + out.stdout).splitlines()))
        wall(env, "vm-shutdown", "vm=web01", "--force")
        return ok
    finally:
        stop_all(state)


def dry_run_bench(hosts: int, vms: int, runs: int) -> bool:
    state = Path(tempfile.mkdtemp(prefix="xetool-bench-big-")) / "state"
    state.mkdir(parents=True)
    generated_store(state, hosts, vms)
    env = env_for(state)
    wall(env, "vm-start", "vm=probe", "--dry-run")  # warm
    floor = statistics.median(wall(env, "host-list", "--minimal", "name-label=h0") for _ in range(runs))
    times = [wall(env, "vm-start", "vm=probe", "--dry-run") for _ in range(runs)]
    print(f"vm-start --dry-run on {hosts} hosts and {vms} VMs (floor: host-list --minimal name-label=h0, same store):")
    ok = report("vm-start --dry-run", times, 0.500, floor)
    print("choose_host_for_vm alone: bench/placement_bench.py on the same sizes:")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "placement_bench.py"), "--hosts", str(hosts), "--vms", str(vms)],
                         env=env, capture_output=True, text=True, timeout=600)
    print("\n".join("    " + line for line in out.stdout.splitlines()))
    return ok and out.returncode == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--starts", type=int, default=10)
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--vms", type=int, default=20000)
    ap.add_argument("--venv", action="store_true", help="measure in a fresh venv (bench/clean_venv.py)")
    ap.add_argument("--synchronous", default="", help="compare the store's settings, e.g. NORMAL,FULL "
                    "(PRAGMA synchronous; the cost of durability on vm-start)")
    ap.add_argument("--dir", help="where the state directory goes (a disk, not a tmpfs, to measure fsync)")
    ap.add_argument("--no-dry-run", action="store_true", help="only the vm-start of section 1")
    a = ap.parse_args()
    if a.venv:
        from clean_venv import reexec_in_venv

        with tempfile.TemporaryDirectory(prefix="xetool-venv-") as tmp:
            argv = [x for x in sys.argv[1:] if x != "--venv"]
            return reexec_in_venv(Path(tmp) / "venv", __file__, argv)
    print(f"python: {sys.executable} ({sys.version.split()[0]})")
    ok = True
    for sync in a.synchronous.split(",") if a.synchronous else [""]:
        os.environ["XETOOL_DB_SYNCHRONOUS"] = sync
        ok = start_bench(a.starts, a.dir) and ok
    os.environ.pop("XETOOL_DB_SYNCHRONOUS")
    if not a.no_dry_run:
        ok = dry_run_bench(a.hosts, a.vms, max(5, a.starts // 2)) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
