"""What a squeeze costs a vm-start (issue 14).

    PYTHONPATH=. python3 bench/squeeze_bench.py [--starts 9] [--balloon-delay 0.1]

Two hosts of 3 GiB. On h1 two guests (1 GiB, dynamic-min 256 MiB) hold their maximum, so a VM of
512 MiB fits there only when both balloon down; h2 is empty. The same VM is started --starts
times on each (`vm-start on=`), each start followed by an untimed `vm-shutdown --force` and a
pause for the guests to grow back. Target: the median start on h1 exceeds the one on h2 by no
more than the guests' configured reaction time (--balloon-delay) plus 50 ms. Exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from start_storm import prepare, stop_all, xe  # noqa: E402

POOL = '''[pool]
name-label = "squeeze"
master = "h1"

[[host]]
name-label = "h1"
memory = "3GiB"
dom0-memory = "512MiB"
cpus = 4

[[host]]
name-label = "h2"
memory = "3GiB"
dom0-memory = "512MiB"
cpus = 4
''' + "".join(f'''
[[vm]]
name-label = "{name}"
memory = "{mem}"
memory-dynamic-min = "{dmin}"
vcpus = 1
PV-kernel = "/boot/vmlinuz"
''' for name, mem, dmin in (("a", "1GiB", "256MiB"), ("b", "1GiB", "256MiB"), ("c", "512MiB", "512MiB")))


def timed(env: dict[str, str], *args: str) -> float:
    t = time.perf_counter()
    out = xe(env, *args)
    if out.returncode:
        raise SystemExit(f"xetool {' '.join(args)}: {out.stderr}")
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--starts", type=int, default=9)
    ap.add_argument("--balloon-delay", type=float, default=0.1, help="seconds a simulated guest takes to balloon")
    a = ap.parse_args()
    os.environ["XETOOL_SIM_BALLOON_DELAY"] = str(a.balloon_delay)  # the hosts inherit it
    state = Path(tempfile.mkdtemp(prefix="xetool-squeeze-")) / "state"
    try:
        env = prepare(state, POOL)
        for name in ("a", "b"):
            timed(env, "vm-start", f"vm={name}", "on=h1")
        time.sleep(a.balloon_delay + 0.2)
        times: dict[str, list[float]] = {"h1": [], "h2": []}
        for _ in range(a.starts):
            for host in ("h2", "h1"):
                times[host].append(timed(env, "vm-start", "vm=c", f"on={host}"))
                timed(env, "vm-shutdown", "vm=c", "--force")
                time.sleep(a.balloon_delay + 0.2)  # a and b grow back to their maximum
        trace = xe(env, "vm-start", "vm=c", "on=h1", "--trace")
        targets = xe(env, "vm-list", "params=name-label,memory-target", "--format", "json").stdout
        squeeze, plain = statistics.median(times["h1"]), statistics.median(times["h2"])
        budget = a.balloon_delay + 0.050
        print(f"squeeze: vm-start of a 512 MiB VM, guests balloon in {a.balloon_delay * 1000:.0f} ms; "
              f"median over {a.starts}")
        print(f"  no squeeze (h2): {plain * 1000:.0f} ms (target <= 300 ms)")
        print(f"  squeezing two guests (h1): {squeeze * 1000:.0f} ms; added {1000 * (squeeze - plain):.0f} ms "
              f"(target <= {budget * 1000:.0f} ms: their reaction time + 50 ms)")
        for line in trace.stderr.splitlines() + trace.stdout.splitlines():
            if "reserve_memory" in line:
                print(f"  --trace: {line.strip()}")
        shown = ", ".join(f"{t['name-label']} {int(t['memory-target']) >> 20} MiB" for t in json.loads(targets))
        print(f"  memory targets after the last start: {shown}")
        ok = squeeze - plain <= budget and plain <= 0.300
        print("  OK" if ok else "  TARGET MISSED")
        return 0 if ok else 1
    finally:
        stop_all(state)


if __name__ == "__main__":
    sys.exit(main())
