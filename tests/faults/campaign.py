"""The fault campaign: real xetool commands against real simulated hosts, under the faults an
operator meets, each scenario ending with the invariant checker (tests/faults/invariants.py).

    python3 -m tests.faults.campaign [--scale full|small] [--seconds 600] [--only NAME ...]

Scenarios (each bounded in time; `small` is the form the test suite runs):
  storm         16 processes looping start / clean shutdown / forced shutdown on 4 hosts and
                200 VMs, beside a reader listing the pool
  kill-random   vm-start killed with SIGKILL at a random moment, again and again
  kill-steps    vm-start killed right after each step of the host half (each hypervisor or
                device call, before its record), then the VM started again
  host-kill     a simulated host killed (SIGKILL) during starts: a host crash
  host-stop     a simulated host stopped (SIGSTOP) during starts, then continued
  disk-full     the state directory on a small tmpfs that fills up (root only)
  umask         every command under umask 000: nothing group- or world-accessible
  damaged-db    an empty, a truncated and a corrupted pool.db: refused, never re-created
Exits 1 when an invariant breaks in any scenario; prints each scenario's figures.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import start_storm  # noqa: E402

from tests.faults.invariants import hostd_pids, violations  # noqa: E402

SCALES = {  # hosts, VMs, processes, seconds of storm, kills
    "full": (4, 200, 16, 60.0, 40),
    "small": (2, 12, 4, 6.0, 6),
}
# exit statuses a command may end with under faults: done, refused, busy, wait ran out; and a
# SIGKILL the campaign sent itself
ALLOWED = {0, 1, 3, 4, -signal.SIGKILL}


class Skipped(Exception):
    """A scenario this machine cannot run, with the reason."""


class Campaign:
    def __init__(self, scale: str, seed: int, workdir: Path) -> None:
        self.hosts, self.vms, self.procs, self.storm_seconds, self.kills = SCALES[scale]
        self.rng = random.Random(seed)
        self.workdir = workdir
        self.exits: list[int] = []
        self.stderr: list[str] = []

    # --- plumbing --------------------------------------------------------------------------------
    def pool(self, name: str, host_memory: str = "6GiB", disk: str = "64MiB") -> tuple[Path, dict[str, str]]:
        """A generated pool whose state directory xetool itself creates (its modes are checked)."""
        state = self.workdir / name / "state"
        state.parent.mkdir(parents=True, exist_ok=True)
        toml = state.parent / "pool.toml"
        toml.write_text(start_storm.generate(self.hosts, self.vms, self.procs, host_memory).replace(
            'size = "64MiB"', f'size = "{disk}"'))
        env = start_storm.env_for(state)
        for args in (("pool-import", f"file={toml}"), ("host-sim-start", "--multiple")):
            out = start_storm.xe(env, *args)
            if out.returncode:
                raise RuntimeError(f"xetool {' '.join(args)}: {out.stderr}")
        return state, env

    def xe(self, env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        out = start_storm.xe(env, *args, timeout=timeout)
        self.note(out.returncode, out.stderr)
        return out

    def note(self, rc: int, err: str) -> None:
        self.exits.append(rc)
        if rc not in ALLOWED or "Traceback" in err:
            self.stderr.append(f"exit {rc}: {err.strip()[-400:]}")

    def spawn(self, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "xetool", "--quiet", *args], env=env, text=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)

    def reap(self, p: subprocess.Popen[str], timeout: float = 120) -> None:
        _, err = p.communicate(timeout=timeout)
        self.note(p.returncode, err)

    def settle(self, env: dict[str, str]) -> None:
        """The next command that reaches each host resyncs it (issue 11): touch every host."""
        for host in self.xe(env, "host-list", "--minimal").stdout.strip().split(","):
            if host:
                self.xe(env, "host-compute-free-memory", f"uuid={host}")

    def verdict(self, name: str, state: Path, started: float, extra: list[str] | None = None) -> list[str]:
        found = violations(state, exits=self.exits) + [f"unexpected exit: {e}" for e in self.stderr] + (extra or [])
        counts: dict[int, int] = {}
        for rc in self.exits:
            counts[rc] = counts.get(rc, 0) + 1
        print(f"{name}: {len(self.exits)} commands in {time.monotonic() - started:.1f} s, exits {dict(sorted(counts.items()))}"
              f" -> {'ok' if not found else f'{len(found)} violation(s)'}")
        for v in found[:20]:
            print(f"  {v}")
        self.exits, self.stderr = [], []
        return found

    def vm_names(self) -> list[str]:
        return [f"vm{j:04d}" for j in range(self.vms)]

    # --- scenarios -------------------------------------------------------------------------------
    def storm(self) -> list[str]:
        t0 = time.monotonic()
        state, env = self.pool("storm")
        deadline = time.monotonic() + self.storm_seconds
        script = ("import random, subprocess, sys, time\n"
                  "rng = random.Random(int(sys.argv[1])); names = sys.argv[3:]; end = float(sys.argv[2])\n"
                  "ops = [['vm-start'], ['vm-shutdown'], ['vm-shutdown', '--force']]\n"
                  "while time.time() < end:\n"
                  "    op = rng.choice(ops)\n"
                  "    r = subprocess.run([sys.executable, '-m', 'xetool', '--quiet', op[0], 'vm=' + rng.choice(names),"
                  " *op[1:]], capture_output=True, text=True)\n"
                  "    print(r.returncode, (r.stderr.strip().replace(chr(10), ' ')[-300:] if r.returncode not in (0, 1, 3, 4)"
                  " or 'Traceback' in r.stderr else ''), flush=True)\n")
        end = str(time.time() + self.storm_seconds)
        workers = [subprocess.Popen([sys.executable, "-c", script, str(self.rng.randrange(1 << 30)), end, *self.vm_names()],
                                    env=env, stdout=subprocess.PIPE, text=True) for _ in range(self.procs)]
        reader = "while time.time() < end:\n    subprocess.run([sys.executable, '-m', 'xetool', 'vm-list', 'params=power-state'], capture_output=True)\n"
        reading = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time\nend = float(sys.argv[1])\n" + reader, end],
                                   env=env)
        for w in workers:
            out, _ = w.communicate(timeout=self.storm_seconds + 300)
            for line in out.splitlines():
                rc, _, err = line.partition(" ")
                self.note(int(rc), err)
        reading.wait(timeout=max(1.0, deadline - time.monotonic() + 60))
        try:
            return self.verdict("storm", state, t0)
        finally:
            start_storm.stop_all(state)

    def kill_random(self) -> list[str]:
        t0 = time.monotonic()
        state, env = self.pool("kill-random")
        try:
            for _ in range(self.kills):
                vm = self.rng.choice(self.vm_names())
                p = self.spawn(env, "vm-start", f"vm={vm}")
                time.sleep(self.rng.uniform(0.0, 0.4))
                p.send_signal(signal.SIGKILL)
                self.reap(p)
                if self.rng.random() < 0.3:
                    self.xe(env, "vm-shutdown", f"vm={vm}", "--force")
            self.settle(env)
            return self.verdict("kill-random", state, t0)
        finally:
            start_storm.stop_all(state)

    def kill_steps(self) -> list[str]:
        from xetool.host.vm_start import HostStart

        t0 = time.monotonic()
        state, env = self.pool("kill-steps")
        found: list[str] = []
        try:
            for step in [s.name for s in HostStart.__new__(HostStart).steps()]:
                vm = self.rng.choice(self.vm_names())
                killed = self.xe({**env, "XETOOL_FIST": f"{step}:kill-after"}, "vm-start", f"vm={vm}")
                self.settle(env)
                problems = violations(state)
                again = self.xe(env, "vm-start", f"vm={vm}")
                running = self.xe(env, "vm-list", f"name-label={vm}", "params=power-state", "--minimal").stdout.strip()
                if killed.returncode == -signal.SIGKILL and running not in ("running", "paused"):
                    problems.append(f"start after the kill refused: {again.stderr.strip()[-200:]}")
                self.xe(env, "vm-shutdown", f"vm={vm}", "--force")
                found += [f"after {step}: {p}" for p in problems]
            return self.verdict("kill-steps", state, t0, found)
        finally:
            start_storm.stop_all(state)

    def _host_fault(self, name: str, fault: signal.Signals) -> list[str]:
        t0 = time.monotonic()
        state, env = self.pool(name)
        try:
            victims = list(hostd_pids(state).values())
            starters = [self.spawn(env, "vm-start", f"name-description=group-{g}", "--multiple")
                        for g in range(self.procs)]
            time.sleep(self.rng.uniform(0.2, 1.0))
            victim = self.rng.choice(victims)
            os.kill(victim, fault)
            if fault == signal.SIGSTOP:
                time.sleep(3.0)
                os.kill(victim, signal.SIGCONT)
            for p in starters:
                self.reap(p, timeout=300)
            self.settle(env)
            extra = []
            if fault == signal.SIGSTOP:
                stopped_pids = [p for p in hostd_pids(state).values()]
                if len(stopped_pids) != len(victims):
                    extra.append(f"{len(stopped_pids)} simulated hosts after the stop, {len(victims)} before")
            return self.verdict(name, state, t0, extra)
        finally:
            start_storm.stop_all(state)

    def host_kill(self) -> list[str]:
        return self._host_fault("host-kill", signal.SIGKILL)

    def host_stop(self) -> list[str]:
        return self._host_fault("host-stop", signal.SIGSTOP)

    def disk_full(self) -> list[str]:
        if os.geteuid() != 0:
            raise Skipped("mounting a tmpfs needs root")
        t0 = time.monotonic()
        mount = self.workdir / "disk-full"
        mount.mkdir(parents=True)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(mount)]).returncode:
            raise Skipped("mount -t tmpfs was refused here")
        try:
            state, env = self.pool("disk-full", disk="1MiB")
            filler = mount / "filler"
            with open(filler, "wb") as f:  # fill what is left
                try:
                    while True:
                        f.write(b"\0" * (1 << 20))
                        f.flush()
                except OSError:
                    pass
            for vm in self.vm_names()[: self.kills]:
                self.xe(env, "vm-start", f"vm={vm}")
            filler.unlink()
            self.settle(env)
            for vm in self.vm_names()[: self.kills]:
                self.xe(env, "vm-shutdown", f"vm={vm}", "--force")
            return self.verdict("disk-full", state, t0)
        finally:
            if (mount / "state").exists():
                start_storm.stop_all(mount / "state")
            subprocess.run(["umount", "-l", str(mount)])

    def umask(self) -> list[str]:
        t0 = time.monotonic()
        old = os.umask(0)
        try:
            state, env = self.pool("umask")
            try:
                for vm in self.vm_names()[:2]:
                    self.xe(env, "vm-start", f"vm={vm}")
                # what issue 11 asks whatever the umask: the state directory 0700, the store,
                # sockets and disk images 0600
                private = [state, *state.glob("pool.db*"), *state.rglob("*.raw"),
                           *(p for p in state.rglob("*") if stat.S_ISSOCK(p.lstat().st_mode))]
                loose = [f"{p.relative_to(state.parent)} is {stat.filemode(p.lstat().st_mode)}"
                         for p in private if p.lstat().st_mode & 0o077]
                return self.verdict("umask", state, t0, loose)
            finally:
                start_storm.stop_all(state)
        finally:
            os.umask(old)

    def damaged_db(self) -> list[str]:
        t0 = time.monotonic()
        state, env = self.pool("damaged-db")
        start_storm.stop_all(state)
        good = (state / "pool.db").read_bytes()
        found = []
        for damage, data in (("empty", b""), ("truncated", good[: len(good) // 2]),
                             ("corrupted", good[:100] + bytes(self.rng.randrange(256) for _ in range(4096)) + good[4196:]),
                             ("not SQLite", b"this is not a database\n" * 100)):
            for wal in ("pool.db-wal", "pool.db-shm"):
                (state / wal).unlink(missing_ok=True)
            (state / "pool.db").write_bytes(data)
            for args in (("vm-list",), ("vm-start", "vm=vm0000"), ("host-list", "--minimal")):
                out = self.xe(env, *args)
                if out.returncode != 1 or "pool.db" not in out.stderr:
                    found.append(f"{damage} pool.db, xetool {' '.join(args)}: exit {out.returncode}, {out.stderr.strip()[-200:]!r}")
            if (state / "pool.db").read_bytes() != data:
                found.append(f"{damage} pool.db was rewritten")
        (state / "pool.db").write_bytes(good)
        print(f"damaged-db: {len(found)} problem(s) in {time.monotonic() - t0:.1f} s")
        for v in found:
            print(f"  {v}")
        self.exits, self.stderr = [], []
        return found


SCENARIOS = {"storm": Campaign.storm, "kill-random": Campaign.kill_random, "kill-steps": Campaign.kill_steps,
             "host-kill": Campaign.host_kill, "host-stop": Campaign.host_stop, "disk-full": Campaign.disk_full,
             "umask": Campaign.umask, "damaged-db": Campaign.damaged_db}


def run(names: list[str], scale: str, seed: int, budget: float) -> dict[str, list[str] | None]:
    """Each scenario's violations (None: skipped, with the reason printed)."""
    workdir = Path(tempfile.mkdtemp(prefix="xetool-faults-"))
    results: dict[str, list[str] | None] = {}
    deadline = time.monotonic() + budget
    try:
        for name in names:
            if time.monotonic() > deadline:
                results[name] = [f"not run: the campaign's {budget:.0f} s were spent"]
                continue
            try:
                results[name] = SCENARIOS[name](Campaign(scale, seed, workdir))
            except Skipped as why:
                print(f"{name}: skipped ({why})")
                results[name] = None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", choices=sorted(SCALES), default="full")
    ap.add_argument("--seconds", type=float, default=900, help="the whole campaign's bound")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), default=list(SCENARIOS))
    a = ap.parse_args(argv)
    print(f"fault campaign: scale {a.scale}, seed {a.seed}")
    results = run(a.only, a.scale, a.seed, a.seconds)
    bad = {k: v for k, v in results.items() if v}
    skipped = sum(1 for v in results.values() if v is None)
    print(f"{len(results) - len(bad) - skipped} passed, {len(bad)} failed, {skipped} skipped")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
