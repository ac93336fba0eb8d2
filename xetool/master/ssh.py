"""Reaching a host's agent over SSH: the system `ssh` client runs `xetool host-agent` on the host
and carries its stream (as libvirt's `qemu+ssh://` runs virt-ssh-helper).

ssh runs with the operator's own keys, known_hosts and ssh_config (or the pool's `ssh-config` and
`ssh-identity`), in BatchMode: it never asks a question a script cannot answer. Connections are
shared (ControlMaster, a socket under the state directory, kept for a while after the last
command), so a command pays the handshake once per host, not once per request, and the next
command none. Within a command the agent's stream stays open and serves every call to its host.

What ssh reports is kept: a host it cannot reach, authenticate to or run the agent on is
HOST_OFFLINE with ssh's own words; a connection lost during a call is HOST_AGENT_CONNECTION_LOST
(the outcome is unknown: the host's next resync tells).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

from xetool.errors import XeError
from xetool.master.host_half import Stream

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any

    from xetool.store.db import Row

AGENT_COMMAND = "xetool host-agent"
CONTROL_PERSIST = 300  # seconds a shared connection outlives its last command
# ssh's exit status when it fails itself (connect, authenticate, lose the connection), as
# opposed to the remote command's status; a shell's for a command it cannot find
SSH_FAILED, NOT_FOUND = 255, 127
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes; ssh appends a temporary suffix while binding


def is_remote(host: Row) -> bool:
    return bool(host.get("address") or host.get("ssh_alias"))


def control_dir(state_dir: Path) -> Path:
    """Where the shared connections' sockets live: under the state directory, unless its path
    is too long for a socket (then a private directory in /tmp named after it)."""
    here = state_dir / "ssh"
    if len(str(here)) + 42 <= _SOCKET_PATH_MAX:  # "/" and %C (40 hex digits) and ssh's suffix
        return here
    digest = hashlib.sha1(str(state_dir.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"xetool-ssh-{os.getuid()}-{digest}"


def _private_dir(path: Path) -> Path:
    """The directory, made 0700 and refused unless it is ours and nobody else's."""
    path.mkdir(mode=0o700, parents=False, exist_ok=True)
    st = path.lstat()
    if not path.is_dir() or path.is_symlink() or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise XeError("STATE_DIR_NOT_WRITABLE", str(path), "it is not a private directory of this user "
                      "(ssh's shared connections live there)")
    return path


def argv(state_dir: Path, host: Row, ssh_config: str = "", ssh_identity: str = "") -> list[str]:
    """The ssh command line that runs the host's agent."""
    cmd = ["ssh", "-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
           # a link that dies during a call is noticed in seconds, not at TCP's timeout
           "-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3",
           "-o", "ControlMaster=auto", "-o", f"ControlPersist={CONTROL_PERSIST}",
           "-o", f"ControlPath={_private_dir(control_dir(state_dir))}/%C"]
    if ssh_config:
        cmd += ["-F", ssh_config]
    if ssh_identity:
        cmd += ["-i", ssh_identity, "-o", "IdentitiesOnly=yes"]
    if host.get("ssh_user"):
        cmd += ["-l", host["ssh_user"]]
    if host.get("ssh_port"):
        cmd += ["-p", str(host["ssh_port"])]
    cmd += ["--", host.get("ssh_alias") or host["address"], host.get("agent_command") or AGENT_COMMAND]
    return cmd


class Ssh(Stream):
    """An agent at the far end of an ssh process."""

    def __init__(self, host: Row, command: list[str]) -> None:
        self.name = host["name_label"]
        self.command = command
        self.errors = tempfile.TemporaryFile()  # ssh's messages (and the agent's stderr)
        try:
            # its own session: a ^C at the terminal reaches the command, which then undoes its
            # work on the host through this very connection
            self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self.errors, start_new_session=True)
        except OSError as err:
            self.errors.close()
            raise XeError("HOST_OFFLINE", host["uuid"], name=self.name,
                          reason=f"cannot run ssh: {err.strerror or err}") from None
        super().__init__(host["uuid"], self.proc.stdout, self.proc.stdin)

    def said(self) -> str:
        """What ssh (or the agent) wrote on its stderr, the last lines."""
        self.errors.seek(0)
        lines = [ln.strip() for ln in self.errors.read()[-4096:].decode(errors="replace").splitlines() if ln.strip()]
        return "; ".join(lines[-3:])

    def _status(self) -> int | None:
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            return None

    def greet(self) -> dict[str, Any]:
        try:
            return super().greet()
        except XeError as err:
            if err.code != "HOST_AGENT_CONNECTION_LOST":
                raise
        # it never greeted: ssh could not connect or log in, or the host has no agent to run
        self.close()
        status, said = self._status(), self.said()
        if status == SSH_FAILED:
            reason = f"ssh: {said}" if said else "ssh could not reach it"
        elif status == NOT_FOUND:
            reason = f"the agent command was not found there ({said or self.command[-1]}): install xetool on the host"
        else:
            reason = f"the agent ({self.command[-1]}) exited with status {status}" + (f": {said}" if said else "")
        raise XeError("HOST_OFFLINE", self.host, name=self.name, reason=reason)

    def lost(self, reason: str) -> XeError:
        self.close()
        status, said = self._status(), self.said()
        if status == SSH_FAILED and said:
            reason += f" (ssh: {said})"
        elif said:
            reason += f" (the agent said: {said})"
        return XeError("HOST_AGENT_CONNECTION_LOST", self.host, reason)

    def alive(self) -> bool:
        return self.proc.poll() is None and not self.writer.closed

    def close(self) -> None:
        """End the stream: the agent sees its input close and exits; ssh with it."""
        for f in (self.writer, self.reader):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_open: dict[tuple[str, ...], Ssh] = {}


def transport(state_dir: Path, host: Row, ssh_config: str = "", ssh_identity: str = "") -> Ssh:
    """The open connection to the host's agent, or a new one (kept for the rest of the command)."""
    command = argv(state_dir, host, ssh_config, ssh_identity)
    key = tuple(command)
    t = _open.get(key)
    if t is None or not t.alive():
        if not _open:
            import atexit

            atexit.register(close_all)
        t = _open[key] = Ssh(host, command)
    return t


def close_all() -> None:
    while _open:
        _, t = _open.popitem()
        t.close()
