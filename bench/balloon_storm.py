"""Balloon storm (issue 14): processes starting and stopping VMs whose guests balloon, on a few
simulated hosts with less memory than the VMs' dynamic maxima, so that most starts squeeze.

    PYTHONPATH=. python3 bench/balloon_storm.py [--hosts 4] [--vms 200] [--procs 16] [--ops 40]

Each process owns a share of the VMs and, --ops times, picks one of them: a halted one is
started with `xetool vm-start vm=NAME` (placement chooses the host), a running one is stopped
with `vm-shutdown --force`. While they run, the hypervisors' free memory is sampled.

A late refusal is a start that placement accepted and the host's memory broker then refused
(HOST_NOT_ENOUGH_FREE_MEMORY from vm-start: placement itself refuses with NO_HOSTS_AVAILABLE).
Checks: no hypervisor's free memory ever below zero (sampled every 20 ms, and at the end), no
mark or reservation left, late refusals under 1 % of starts, no guest failing to cooperate.
Exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from start_storm import check, prepare, stop_all  # noqa: E402

LATE = "HOST_NOT_ENOUGH_FREE_MEMORY"


def generate(hosts: int, vms: int, host_memory: str, static_max: str, dynamic_min: str) -> str:
    out = ['[pool]\nname-label = "balloons"\nmaster = "h0"\n']
    for i in range(hosts):
        out.append(f'[[host]]\nname-label = "h{i}"\nmemory = "{host_memory}"\ndom0-memory = "1GiB"\ncpus = 16\n')
    for j in range(vms):
        out.append(f'[[vm]]\nname-label = "vm{j:04d}"\nmemory = "{static_max}"\nmemory-dynamic-min = "{dynamic_min}"\n'
                   'vcpus = 1\nPV-kernel = "/boot/vmlinuz"\n')
    return "\n".join(out)


def worker(names: list[str], ops: int, seed: int) -> None:
    """One storm process: prints one JSON line per command (verb, error code or "ok", seconds)."""
    rng = random.Random(seed)
    running: set[str] = set()
    for _ in range(ops):
        name = rng.choice(names)
        verb = "stop" if name in running else "start"
        args = ["vm-shutdown", f"vm={name}", "--force"] if verb == "stop" else ["vm-start", f"vm={name}"]
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "xetool", "--format", "json", *args], capture_output=True,
                             text=True, stdin=subprocess.DEVNULL, timeout=300)
        code, detail = "ok", ""
        if out.returncode:
            text = out.stderr.strip()
            try:  # --format json: the error object is the last thing on stderr
                err = json.loads(text[text.index("{"):]) if "{" in text else {}
                err = err.get("error", err)
                code, detail = err["code"], json.dumps(err.get("params", ""))[:300]
            except (ValueError, KeyError, TypeError, AttributeError):
                code, detail = "UNPARSED", text[-300:]
        if code == "ok":
            (running.discard if verb == "stop" else running.add)(name)
        print(json.dumps({"verb": verb, "code": code, "detail": detail, "seconds": time.perf_counter() - t0}),
              flush=True)


def sample_free(state_dir: Path, stop: threading.Event, lowest: dict[str, int]) -> None:
    from xetool.host.backend import HOST_FIELDS, backend_for
    from xetool.store.db import Store

    store = Store(state_dir)
    with store.read() as txn:
        backends = [(h["name_label"], backend_for(state_dir, h)) for h in txn.select("host", list(HOST_FIELDS))]
    store.close()
    while not stop.is_set():
        for name, b in backends:
            try:
                free = b.physinfo().free_memory_kib
            except Exception:  # a host busy for a moment: the next sample will do
                continue
            lowest[name] = min(lowest.get(name, free), free)
        stop.wait(0.02)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--vms", type=int, default=200)
    ap.add_argument("--procs", type=int, default=16)
    ap.add_argument("--ops", type=int, default=40, help="commands per process")
    ap.add_argument("--host-memory", default="8GiB")
    ap.add_argument("--static-max", default="1GiB")
    ap.add_argument("--dynamic-min", default="256MiB")
    ap.add_argument("--balloon-delay", default="0.02", help="seconds a simulated guest takes to balloon")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        spec = json.loads(a.worker)
        worker(spec["names"], spec["ops"], spec["seed"])
        return 0
    os.environ["XETOOL_SIM_BALLOON_DELAY"] = a.balloon_delay  # the hosts inherit it
    state = Path(tempfile.mkdtemp(prefix="xetool-balloons-")) / "state"
    try:
        env = prepare(state, generate(a.hosts, a.vms, a.host_memory, a.static_max, a.dynamic_min))
        names = [f"vm{j:04d}" for j in range(a.vms)]
        stop, lowest = threading.Event(), {}
        sampler = threading.Thread(target=sample_free, args=(state, stop, lowest), daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(
            {"names": names[i::a.procs], "ops": a.ops, "seed": a.seed * 1000 + i})], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL) for i in range(a.procs)]
        lines = []
        for p in procs:
            out, err = p.communicate(timeout=3600)
            lines += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            if p.returncode:
                print(f"  a worker failed: {err.strip()[-400:]}")
        wall = time.perf_counter() - t0
        stop.set()
        sampler.join()
        problems = check(state)
        outcomes = Counter((r["verb"], r["code"]) for r in lines)
        starts = sum(n for (verb, _), n in outcomes.items() if verb == "start")
        late = outcomes[("start", LATE)]
        uncooperative = outcomes[("start", "VMS_FAILED_TO_COOPERATE")]
        start_times = sorted(r["seconds"] for r in lines if r["verb"] == "start" and r["code"] == "ok")
        print(f"balloon storm: {a.vms} VMs ({a.static_max}, dynamic-min {a.dynamic_min}), {a.hosts} hosts of "
              f"{a.host_memory}, {a.procs} processes x {a.ops} commands, guests balloon in {a.balloon_delay} s")
        print(f"  wall {wall:.1f} s; {len(lines)} commands; {starts} starts")
        for (verb, code), n in sorted(outcomes.items()):
            example = next((r["detail"] for r in lines if (r["verb"], r["code"]) == (verb, code) and r["detail"]), "")
            print(f"    {verb:5} {code:32} {n:5}  {example[:200]}")
        if start_times:
            print(f"  successful vm-start: median {start_times[len(start_times) // 2]:.2f} s, "
                  f"90th percentile {start_times[int(len(start_times) * 0.9)]:.2f} s (16 commands at once on 2 cores)")
        print(f"  lowest free memory seen per host (KiB): {dict(sorted(lowest.items()))}")
        share = late / starts if starts else 0.0
        print(f"  late refusals: {late} of {starts} starts = {100 * share:.2f} % (target < 1 %)")
        if any(v < 0 for v in lowest.values()):
            problems.append(f"a hypervisor's free memory went below zero: {lowest}")
        other = {code: n for (verb, code), n in outcomes.items()
                 if verb == "start" and code not in ("ok", LATE, "NO_HOSTS_AVAILABLE")}
        if other:
            problems.append(f"starts failed otherwise: {other}")
        if uncooperative:
            problems.append(f"{uncooperative} starts failed on guests that did not cooperate (all of them balloon)")
        if len(lines) != a.procs * a.ops:
            problems.append(f"{a.procs * a.ops - len(lines)} commands did not report")
        for p in problems:
            print(f"  PROBLEM: {p}")
        ok = not problems and share < 0.01 and starts > 0
        print("  OK" if ok else "  TARGET MISSED or CHECK FAILED")
        return 0 if ok else 1
    finally:
        stop_all(state)


if __name__ == "__main__":
    sys.exit(main())
