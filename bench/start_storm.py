"""Start storm: many processes starting many VMs on a few simulated hosts at once (issue 5).

    PYTHONPATH=. python3 bench/start_storm.py [--hosts 4] [--vms 200] [--procs 8] [--host-memory 8GiB]

Generates a pool (hosts, one shared file SR, one network, small PV VMs with PV-kernel), imports
it, starts the simulated hosts, then runs `xetool vm-start name-description=group-N --multiple`
in --procs processes at once. Prints the rate (target >= 10 starts/s), beside the floor: the
same processes each running `xetool host-list --minimal` once per VM, measured in the same run.
Checks no host is over-committed and no mark is left. Exits 1 if a check or the target fails.
tests/lifecycle/test_load.py imports generate() and storm() from here.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def generate(hosts: int, vms: int, groups: int, host_memory: str = "8GiB", vm_memory: str = "128MiB") -> str:
    out = ['[pool]\nname-label = "storm"\nmaster = "h0"\n']
    for i in range(hosts):
        out.append(f'[[host]]\nname-label = "h{i}"\nmemory = "{host_memory}"\ndom0-memory = "1GiB"\ncpus = 16\n'
                   'capabilities = ["pv", "hvm"]\n')
    out.append('[[sr]]\nname-label = "shared"\ntype = "file"\nshared = true\n')
    out.append('[[network]]\nname-label = "lan"\nbridge = "xenbr0"\n')
    for j in range(vms):
        out.append(f'[[vm]]\nname-label = "vm{j:04d}"\nname-description = "group-{j % groups}"\nmemory = "{vm_memory}"\n'
                   'vcpus = 1\nPV-kernel = "/boot/vmlinuz"\n'
                   '  [[vm.disk]]\n  device = 0\n  size = "64MiB"\n  sr = "shared"\n  bootable = true\n'
                   '  [[vm.vif]]\n  device = 0\n  network = "lan"\n')
    return "\n".join(out)


def env_for(state_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "xetool-test-pycache")
    env["PYTHONPATH"] = str(ROOT)
    env["XETOOL_STATE_DIR"] = str(state_dir)
    env.pop("XETOOL_FIST", None)
    return env


def xe(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xetool", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def prepare(state_dir: Path, toml: str) -> dict[str, str]:
    env = env_for(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "storm.toml"
    path.write_text(toml)
    for args in (("pool-import", f"file={path}"), ("host-sim-start", "--multiple")):
        out = xe(env, *args)
        if out.returncode:
            raise SystemExit(f"xetool {' '.join(args)}: {out.stderr}")
    return env


def storm(env: dict[str, str], groups: int, timeout: float = 600) -> tuple[float, list[subprocess.CompletedProcess[str]]]:
    """All groups at once, one process each; (seconds, results)."""
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "xetool", "--quiet", "vm-start", f"name-description=group-{g}", "--multiple"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
             for g in range(groups)]
    results = []
    deadline = started + timeout
    for p in procs:
        out, err = p.communicate(timeout=max(1.0, deadline - time.perf_counter()))
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return time.perf_counter() - started, results


def floor(env: dict[str, str], procs: int, per_proc: int) -> float:
    """The same number of processes each running `host-list --minimal` per_proc times, at once."""
    script = f"for i in $(seq {per_proc}); do {sys.executable} -m xetool host-list --minimal >/dev/null; done"
    started = time.perf_counter()
    ps = [subprocess.Popen(["sh", "-c", script], env=env) for _ in range(procs)]
    for p in ps:
        p.wait(timeout=600)
    return time.perf_counter() - started


def check(state_dir: Path) -> list[str]:
    """Over-commitment and leftover marks; returns the problems found."""
    from xetool.backends.simulator.backend import SimulatorBackend  # noqa: F401
    from xetool.host.backend import HOST_FIELDS, backend_for
    from xetool.store.db import Store

    problems = []
    store = Store(state_dir)
    try:
        with store.read() as txn:
            hosts = txn.select("host", list(HOST_FIELDS) + ["memory_overhead"])
            for h in hosts:
                vms = txn.select("vm", ["memory_dynamic_min", "memory_overhead"], {"resident_on": h["uuid"]})
                used = sum(v["memory_dynamic_min"] + v["memory_overhead"] for v in vms)
                if used > h["memory_total"] - h["memory_overhead"]:
                    problems.append(f"host {h['name_label']} over-committed: {used} > {h['memory_total'] - h['memory_overhead']}")
                info = backend_for(state_dir, h).physinfo()
                if info.free_memory_kib < 0:
                    problems.append(f"host {h['name_label']}: the hypervisor's free memory is {info.free_memory_kib} KiB")
            for cls in ("vm", "vbd", "vif", "host"):
                marked = [r["uuid"] for r in txn.select(cls, ["uuid", "current_operations"]) if r["current_operations"]]
                if marked:
                    problems.append(f"{len(marked)} {cls} marks left")
            for r in txn.select("vm", ["uuid", "scheduled_to_be_resident_on"]):
                if r["scheduled_to_be_resident_on"]:
                    problems.append(f"VM {r['uuid']} still scheduled")
            pending = txn.select("task", ["uuid"], {"status": "pending"})
            if pending:
                problems.append(f"{len(pending)} tasks pending")
            if txn.db.execute("SELECT COUNT(*) FROM reservation WHERE domid = -1").fetchone()[0]:
                problems.append("outstanding memory reservations")
    finally:
        store.close()
    return problems


def counts(state_dir: Path) -> dict[str, int]:
    from xetool.store.db import Store

    store = Store(state_dir)
    try:
        with store.read() as txn:
            rows = txn.db.execute("SELECT power_state, COUNT(*) FROM vm GROUP BY power_state").fetchall()
        return {k: n for k, n in rows}
    finally:
        store.close()


def stop_all(state_dir: Path) -> None:
    from xetool.backends import simulator
    from xetool.host import janitor
    from xetool.store.db import Store

    for d in (state_dir / "hosts").glob("*"):
        simulator.stop_host(state_dir, d.name)
    store = Store(state_dir)
    try:
        janitor.reconcile_hosts(store)  # stops the stand-ins of the VMs that were running
    finally:
        store.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--vms", type=int, default=200)
    ap.add_argument("--procs", type=int, default=8)
    ap.add_argument("--host-memory", default="8GiB")
    ap.add_argument("--target", type=float, default=10.0, help="starts per second")
    a = ap.parse_args()
    state = Path(tempfile.mkdtemp(prefix="xetool-storm-")) / "state"
    try:
        env = prepare(state, generate(a.hosts, a.vms, a.procs, a.host_memory))
        xe(env, "host-list", "--minimal")  # warm the byte-code cache
        floor_s = floor(env, a.procs, max(1, a.vms // a.procs))
        seconds, results = storm(env, a.procs)
        n = counts(state)
        failed = [r.stderr.strip().splitlines()[:2] for r in results if r.returncode]
        problems = check(state)
        rate = n.get("Running", 0) / seconds
        floor_rate = a.vms / floor_s
        print(f"start storm: {a.vms} VMs, {a.hosts} hosts, {a.procs} processes")
        print(f"  wall {seconds:.2f} s; power states {n}")
        print(f"  rate {rate:.1f} starts/s (target >= {a.target:g}); floor: host-list --minimal at "
              f"{floor_rate:.1f} commands/s in the same processes; rate / floor = {rate / floor_rate:.2f}")
        for f in failed:
            print(f"  a process failed: {f}")
        for p in problems:
            print(f"  PROBLEM: {p}")
        ok = not problems and n.get("Running", 0) == a.vms and rate >= a.target
        print("  OK" if ok else "  TARGET MISSED or CHECK FAILED")
        return 0 if ok else 1
    finally:
        stop_all(state)


if __name__ == "__main__":
    sys.exit(main())
