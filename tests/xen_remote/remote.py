"""Helpers of the xenlab lane's SSH phase (imported as tests.xen_remote.remote)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


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
            raise AssertionError(f"in dom0: {script}: exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
        return res

    def ssh_config(self, path: Path) -> Path:
        """An ssh_config for the pool (its ssh-config): the run's known_hosts, strictly."""
        path.write_text(f"Host *\n  UserKnownHostsFile {self.known_hosts}\n  StrictHostKeyChecking yes\n")
        return path

    def close(self) -> None:
        subprocess.run(["ssh", "-o", f"ControlPath={self.control}", "-O", "exit", self.host],
                       capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
