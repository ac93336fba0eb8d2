"""Helpers of the xenlab lane's SSH phase (imported as tests.xen_remote.remote)."""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.xen.test_xetool_lane import xl_info, xl_list


@dataclass
class Dom0:
    """The lab's dom0 as the run's SSH settings reach it. The tests' own commands (xl, xenstore)
    share one connection; the master under test makes its own."""

    host: str
    port: int
    user: str
    key: Path
    known_hosts: Path
    control: Path

    def options(self) -> list[str]:
        return ["-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes"]

    def argv(self, shared: bool = True) -> list[str]:
        mux = ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.control}", "-o", "ControlPersist=600"]
        return ["ssh", "-i", str(self.key), "-p", str(self.port), "-l", self.user, *self.options(),
                *(mux if shared else ["-o", "ControlPath=none"]), self.host]

    def sh(self, script: str, timeout: float = 300, check: bool = True, shared: bool = True,
           stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """`script` run by root's shell in dom0."""
        res = subprocess.run([*self.argv(shared), script], capture_output=True, text=True, timeout=timeout,
                             input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)
        if check and res.returncode != 0:
            key = subprocess.run(["ssh-keygen", "-lf", str(self.key)], capture_output=True, text=True).stdout.strip()
            raise AssertionError(f"in dom0: {script}: exit {res.returncode} (key {key or 'unreadable'})\n"
                                 f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
        return res

    def ssh_config(self, path: Path) -> Path:
        """An ssh_config for the pool (its ssh-config): the run's known_hosts, strictly."""
        path.write_text(f"Host *\n  UserKnownHostsFile {self.known_hosts}\n  StrictHostKeyChecking yes\n")
        return path

    def close(self) -> None:
        subprocess.run(["ssh", "-o", f"ControlPath={self.control}", "-O", "exit", self.host],
                       capture_output=True, timeout=30, stdin=subprocess.DEVNULL)

    def xl(self, *args: str) -> str:
        """`xl ARGS` in dom0 (the lane's helpers take it in place of their local one)."""
        return self.sh(" ".join(["xl", *map(shlex.quote, args)]), 60).stdout

    def free_mib(self) -> int:
        return int(xl_info(self.xl)["free_memory"])

    def facts(self, domid: int, vm_uuid: str, disk: Path, bridge: str, devid: int, leases: str,
              console_pid: int = 0) -> Facts:
        """What dom0 holds for a domain (running or gone), in one round trip."""
        d = domid
        be = f"/local/domain/0/backend"
        reads = [f"/local/domain/{d}/{k}" for k in ("name", "vm", "console/vnc-port")] + [
            f"{be}/vbd/{d}/{devid}/{k}" for k in ("params", "hotplug-status")] + [
            f"{be}/vif/{d}/0/{k}" for k in ("bridge", "hotplug-status")]
        gone = [f"/local/domain/{d}", f"/vm/{vm_uuid}", f"/libxl/{d}", f"{be}/vbd/{d}", f"{be}/vif/{d}"]
        q = shlex.quote
        script = f"""
xl list | sed 's/^/xl /'
for p in {' '.join(reads)}; do v=$(xenstore-read "$p" 2>/dev/null) && echo "xs $p $v"; done
for p in {' '.join(gone)}; do xenstore-exists "$p" 2>/dev/null && echo "exists $p"; done
echo "domains $(xenstore-list /local/domain | tr '\\n' ' ')"
[ -e /sys/class/net/{bridge}/brif/vif{d}.0 ] && echo bridged
[ -e /sys/class/net/vif{d}.0 ] && echo vif
losetup -j {q(str(disk))} | sed 's/^/loop /'
sed 's/^/lease /' {q(leases)} 2>/dev/null
s=$(ps -o stat= -p {console_pid or 1 << 22}) && [ "${{s#Z}}" = "$s" ] && echo console-server
xl info | awk -F: '$1 ~ /^free_memory/ {{print "free", $2 + 0}}'
"""
        f = Facts()
        xl_lines = ["header"]
        for line in self.sh(script, 120, check=False).stdout.splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "xl":
                xl_lines.append(rest)
            elif kind == "xs":
                path, _, value = rest.partition(" ")
                f.xs[path] = value
            elif kind == "exists":
                f.exists.append(rest)
            elif kind == "domains":
                f.domains = rest.split()
            elif kind in ("bridged", "vif", "console-server"):
                setattr(f, kind.replace("-", "_"), True)
            elif kind == "loop":
                f.loops.append(rest)
            elif kind == "lease":
                f.leases.append(rest)
            elif kind == "free":
                f.free_mib = int(rest)
        f.xl = xl_list(lambda *_: "\n".join(xl_lines[1:]))
        return f

@dataclass
class Facts:
    xl: dict[str, tuple[int, str]] = field(default_factory=dict)
    xs: dict[str, str] = field(default_factory=dict)
    exists: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    bridged: bool = False
    vif: bool = False
    loops: list[str] = field(default_factory=list)
    leases: list[str] = field(default_factory=list)
    console_server: bool = False
    free_mib: int = 0
