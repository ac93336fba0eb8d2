"""vm-start on a host reached over SSH against the same start on a local host (issue 12).

    sudo PYTHONPATH=. python3 bench/ssh_bench.py [--starts 15]

One pool, two simulated hosts: `local` on this machine, and `remote` in a network namespace of
its own with its own sshd (tests/remote/netns.py's lab, over a veth: real SSH, real TCP). A PV VM
with 2 VBDs and 2 VIFs is started with `on=` and shut down, on each host in turn, so both are
measured side by side under the same load; each figure is the median wall time of the whole
`xetool vm-start` command. The remote starts go through the shared SSH connection (its
ControlMaster up, as after a first command) to the host's long-running agent. Also measured, for
the record and the design's choice: the remote start with an agent started for each command
(XETOOL_SSH_AGENT=session), and a first remote start with no shared connection yet (the SSH
handshake and the agent's start-up included).

Target: remote / local <= 1.3. Exits 1 if it is missed; needs root (namespaces).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.remote.netns import SshLab, unavailable  # noqa: E402
from xetool.master.ssh import end_shared_connections  # noqa: E402

TARGET = 1.3

POOL = """\
[pool]
name-label = "bench"
ssh-config = "{ssh_config}"
ssh-identity = "{identity}"

[[host]]
name-label = "local"
memory = "8GiB"

[[host]]
name-label = "remote"
memory = "8GiB"
address = "{address}"
ssh-alias = "{alias}"
agent-command = "{agent}"

[[sr]]
name-label = "nfs"
shared = true
path = "{sr}"

[[network]]
name-label = "lan"
bridge = "xenbr0"

[[network]]
name-label = "install"
bridge = "xenbr1"
guest-installer = true

[[vm]]
name-label = "web01"
memory = "512MiB"
vcpus = 2
PV-kernel = "/boot/vmlinuz-guest"
  [[vm.disk]]
  device = 0
  size = "1GiB"
  sr = "nfs"
  bootable = true
  [[vm.disk]]
  device = 1
  size = "1GiB"
  sr = "nfs"
  [[vm.vif]]
  device = 0
  network = "lan"
  [[vm.vif]]
  device = 1
  network = "install"
"""


def xe(env: dict[str, str], *args: str) -> float:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "xetool", *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"xetool {' '.join(args)}: {r.stderr}")
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=15)
    a = ap.parse_args()
    why = unavailable()
    if why:
        print(f"ssh_bench: cannot run here: {why}")
        return 1
    work = Path(tempfile.mkdtemp(prefix="xetool-sshbench-"))
    state = work / "master"
    env = {**os.environ, "XETOOL_STATE_DIR": str(state)}
    env.pop("XETOOL_FIST", None)
    session = {**env, "XETOOL_SSH_AGENT": "session"}
    try:
        with SshLab(1, work / "lab") as lab:
            h = lab.host(0)
            pool = work / "pool.toml"
            pool.write_text(POOL.format(ssh_config=lab.ssh_config, identity=lab.identity, address=h.address,
                                        alias=h.alias, agent=lab.agent_command, sr=work / "nfs"))
            xe(env, "pool-import", f"file={pool}")
            try:
                # the first remote command of all: no shared connection, no agent running there
                cold = xe(env, "vm-start", "vm=web01", "on=remote")
                xe(env, "vm-shutdown", "vm=web01", "--force")
                for host in ("local", "remote"):  # warm: byte code, bridges, the RRD archive
                    xe(env, "vm-start", "vm=web01", f"on={host}")
                    xe(env, "vm-shutdown", "vm=web01", "--force")
                times: dict[str, list[float]] = {"local": [], "remote": [], "session": []}
                for _ in range(a.starts):
                    for name, host, e in (("local", "local", env), ("remote", "remote", env), ("session", "remote", session)):
                        times[name].append(xe(e, "vm-start", "vm=web01", f"on={host}"))
                        xe(env, "vm-shutdown", "vm=web01", "--force")
                end_shared_connections(state)
                reconnect = xe(env, "vm-start", "vm=web01", "on=remote")  # the agent runs; the handshake again
                xe(env, "vm-shutdown", "vm=web01", "--force")
            finally:
                subprocess.run([sys.executable, "-m", "xetool", "host-sim-stop", "--multiple"], env=env, capture_output=True)
                end_shared_connections(state)
    finally:
        from xetool.master.ssh import control_dir

        shutil.rmtree(control_dir(state), ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["remote"] / med["local"]
    print(f"vm-start of a PV VM with 2 VBDs and 2 VIFs, median of {a.starts} each, side by side:")
    print(f"  local simulated host (the floor):                 {med['local'] * 1000:6.0f} ms")
    print(f"  remote host, shared connection, long-running agent: {med['remote'] * 1000:6.0f} ms  "
          f"ratio {ratio:.2f} (target <= {TARGET})  {'OK' if ratio <= TARGET else 'MISSED'}")
    print(f"  remote host, an agent started for each command:     {med['session'] * 1000:6.0f} ms  "
          f"ratio {med['session'] / med['local']:.2f}")
    print(f"  first remote command (handshake, agent started):    {cold * 1000:6.0f} ms")
    print(f"  after the shared connection closed (handshake):     {reconnect * 1000:6.0f} ms")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
