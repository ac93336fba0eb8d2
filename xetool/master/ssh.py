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
from xetool.paths import make_private_dirs, socket_dir
from xetool.master.host_half import Stream

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any

    from xetool.store.db import Row

AGENT_COMMAND = "xetool host-agent"
CONTROL_PERSIST = 300  # seconds a shared connection outlives its last command
GREET_TIMEOUT = 30.0  # an agent connected and silent for longer does not run (a fork under emulation is slow)
# ssh's exit status when it fails itself (connect, authenticate, lose the connection), as
# opposed to the remote command's status; a shell's for a command it cannot find
SSH_FAILED, NOT_FOUND = 255, 127
# in a control directory ssh binds %C (40 hex digits) + "." + a 16-character temporary suffix,
# then renames it
_CONTROL_NAME = 57


def is_remote(host: Row) -> bool:
    return bool(host.get("address") or host.get("ssh_alias"))


def control_dir(state_dir: Path) -> Path:
    """Where the shared connections' sockets live: the state directory's `ssh/`, unless it is too
    long for what ssh binds there (paths.socket_dir)."""
    return socket_dir(state_dir / "ssh", _CONTROL_NAME, limit=107)


def options(state_dir: Path, host: Row, ssh_config: str = "", ssh_identity: str = "") -> list[str]:
    """ssh and its options for the host, up to the destination."""
    control = control_dir(state_dir)
    make_private_dirs(control)
    cmd = ["ssh", "-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
           # a link that dies during a call is noticed in seconds, not at TCP's timeout
           "-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3",
           "-o", "ControlMaster=auto", "-o", f"ControlPersist={CONTROL_PERSIST}",
           "-o", f"ControlPath={control}/%C"]
    return cmd + reach(host, ssh_config, ssh_identity) + (["-o", "IdentitiesOnly=yes"] if ssh_identity else [])


def reach(host: Row, ssh_config: str, ssh_identity: str) -> list[str]:
    """The options that say how this host is reached: the pool's config and key, its user and port."""
    out = ["-F", ssh_config] if ssh_config else []
    out += ["-i", ssh_identity] if ssh_identity else []
    out += ["-l", host["ssh_user"]] if host.get("ssh_user") else []
    out += ["-p", str(host["ssh_port"])] if host.get("ssh_port") else []
    return out


def destination(host: Row) -> str:
    return str(host.get("ssh_alias") or host["address"])


def agent_command(host: Row) -> str:
    return str(host.get("agent_command") or AGENT_COMMAND)


def console_tunnel(host: Row, ssh_config: str, ssh_identity: str, local: int, port: int) -> list[str]:
    """The ssh command line that forwards localhost:local to a console on the host's 127.0.0.1
    (a connection of its own: it lives as long as the operator keeps it)."""
    return ["ssh", "-N", "-L", f"127.0.0.1:{local}:127.0.0.1:{port}", *reach(host, ssh_config, ssh_identity),
            destination(host)]


def offline(host: Row, status: int | None, said: str, command: str) -> XeError:
    """HOST_OFFLINE for an ssh that failed before the agent greeted, in ssh's own words."""
    if status == SSH_FAILED:
        reason = f"ssh: {said.removeprefix('ssh: ')}" if said else "ssh could not reach it"
    elif status == NOT_FOUND:
        reason = f"the agent command was not found there ({said or command}): install xetool on the host"
    elif status is None:
        reason = f"ssh did not finish ({command})"
    else:
        reason = f"the agent ({command}) exited with status {status}" + (f": {said}" if said else "")
    return XeError("HOST_OFFLINE", host["uuid"], name=host["name_label"], reason=reason)


def _last_lines(f: Any) -> str:
    f.seek(0)
    lines = [ln.strip() for ln in f.read()[-4096:].decode(errors="replace").splitlines() if ln.strip()]
    return "; ".join(lines[-3:])


class Ssh(Stream):
    """An agent at the far end of an ssh process."""

    def __init__(self, host: Row, command: list[str]) -> None:
        self.row, self.command = host, command
        self.errors = tempfile.TemporaryFile()  # ssh's messages (and the agent's stderr)
        try:
            # its own session: a ^C at the terminal reaches the command, which then undoes its
            # work on the host through this very connection
            self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self.errors, start_new_session=True)
        except OSError as err:
            self.errors.close()
            raise XeError("HOST_OFFLINE", host["uuid"], name=host["name_label"],
                          reason=f"cannot run ssh: {err.strerror or err}") from None
        super().__init__(host["uuid"], self.proc.stdout, self.proc.stdin)

    def said(self) -> str:
        """What ssh (or the agent) wrote on its stderr, the last lines."""
        return _last_lines(self.errors)

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
        raise offline(self.row, self._status(), self.said(), self.command[-1])

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


class Forwarded(Stream):
    """The host's long-running agent (`xetool host-agent --daemon`), reached through a Unix
    socket that the shared SSH connection forwards to the agent's socket on the host: a command
    opens no SSH session and starts no process on the host."""

    def __init__(self, host: Row, sock: Any) -> None:
        self.sock = sock
        super().__init__(host["uuid"], sock.makefile("rb"), sock.makefile("wb"))

    def alive(self) -> bool:
        return not self.writer.closed

    def close(self) -> None:
        for f in (self.writer, self.reader, self.sock):
            try:
                f.close()
            except OSError:
                pass

    def lost(self, reason: str) -> XeError:
        self.close()
        return XeError("HOST_AGENT_CONNECTION_LOST", self.host, reason + " (the shared SSH connection or the agent went)")


_open: dict[tuple[str, ...], Ssh | Forwarded] = {}


def transport(state_dir: Path, host: Row, ssh_config: str = "", ssh_identity: str = "") -> Ssh | Forwarded:
    """The open connection to the host's agent, or a new one (kept for the rest of the command):
    the long-running agent through the shared connection's forwarding, unless
    XETOOL_SSH_AGENT=session asks for an agent started for each command (or the host's sshd
    refuses the forwarding)."""
    base = options(state_dir, host, ssh_config, ssh_identity)
    key = (*base, destination(host), agent_command(host))
    t = _open.get(key)
    if t is None or not t.alive():
        if not _open:
            import atexit

            atexit.register(close_all)
        t = None
        if os.environ.get("XETOOL_SSH_AGENT", "forward") != "session":
            t = forwarded(state_dir, host, base)
        t = _open[key] = t or Ssh(host, [*base, "--", destination(host), agent_command(host)])
    return t


def _run(host: Row, command: list[str]) -> str:
    """One ssh command to completion, its output; HOST_OFFLINE with ssh's words if it fails. The
    output goes through files, not pipes: a connection master that ssh leaves in the background
    would hold a pipe open for minutes."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            status: int | None = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                                timeout=120, start_new_session=True).returncode
        except subprocess.TimeoutExpired:
            status = None
        except OSError as e:
            raise XeError("HOST_OFFLINE", host["uuid"], name=host["name_label"],
                          reason=f"cannot run ssh: {e.strerror or e}") from None
        if status != 0:
            raise offline(host, status, _last_lines(err), command[-1])
        out.seek(0)
        return out.read().decode(errors="replace")


def _connect(host: Row, local: Path) -> Forwarded | None:
    """The agent through the forwarded socket, greeted; None if nothing answers there."""
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(local))
    except OSError:
        s.close()
        return None
    t = Forwarded(host, s)
    s.settimeout(GREET_TIMEOUT)
    try:
        t.greet()
    except XeError as err:
        t.close()
        if err.code == "HOST_AGENT_CONNECTION_LOST":  # the forward is there, the agent is not
            return None
        raise
    except OSError:  # connected, and no greeting: the agent is there and does not run
        t.close()
        raise XeError("HOST_OFFLINE", host["uuid"], name=host["name_label"],
                      reason=f"its long-running agent does not greet within {GREET_TIMEOUT:.0f} s "
                      "(stopped? `xetool host-agent --stop` there, and the next command starts it again)") from None
    s.settimeout(None)  # a call takes what it takes: a lost link is ssh's to notice (ServerAlive)
    return t


def _listening(path: Path) -> bool:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def forwarded(state_dir: Path, host: Row, base: list[str]) -> Forwarded | None:
    """The long-running agent through the shared connection; set up (the agent started on the
    host, the forwarding added to the connection) when it does not answer. None if the host's
    sshd refuses to forward (its AllowStreamLocalForwarding)."""
    import fcntl

    dest = destination(host)
    name = hashlib.sha1("\0".join([*base, dest, agent_command(host)]).encode()).hexdigest()[:16]
    local = control_dir(state_dir) / f"{name}.agent"
    t = _connect_current(host, local)
    if t is not None:
        return t
    # one command sets it up; the others that found it missing meanwhile wait, then use it
    with open(os.open(control_dir(state_dir) / f"{name}.lock", os.O_WRONLY | os.O_CREAT, 0o600), "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        return _connect_current(host, local) or _set_up(host, base, dest, local)


def _connect_current(host: Row, local: Path) -> Forwarded | None:
    """As _connect; None also for an agent of another protocol: one still running from before
    the host's xetool was upgraded (it serves the connection it holds when it sees the new code),
    which `--listen` replaces. After that, another version is the host's own: refused."""
    try:
        return _connect(host, local)
    except XeError as err:
        if err.code != "HOST_AGENT_PROTOCOL_MISMATCH":
            raise
        return None


def _set_up(host: Row, base: list[str], dest: str, local: Path) -> Forwarded | None:
    import json

    answer = _run(host, [*base, "--", dest, agent_command(host) + " --listen"])
    try:
        remote = json.loads(answer.strip().splitlines()[-1])["socket"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise XeError("HOST_OFFLINE", host["uuid"], name=host["name_label"],
                      reason=f"its agent did not say where it listens: {answer[-200:]!r}") from None
    if (t := _connect(host, local)) is not None:  # the forwarding was there: the agent was not
        return t
    if _listening(local):  # a forwarding to an agent that is gone: replaced
        try:
            _run(host, [*base, "-O", "cancel", "-L", f"{local}:{remote}", dest])
        except XeError:
            pass
    local.unlink(missing_ok=True)
    try:
        _run(host, [*base, "-O", "forward", "-L", f"{local}:{remote}", dest])
    except XeError:
        return None
    t = _connect(host, local)
    if t is None:
        raise XeError("HOST_OFFLINE", host["uuid"], name=host["name_label"],
                      reason=f"its agent's socket {remote}, forwarded over SSH, does not answer")
    return t


def end_shared_connections(state_dir: Path) -> None:
    """End this state directory's shared connections now (ControlPersist would keep each a
    while): the background ssh processes go, and with them their agents' forwardings."""
    import re

    for sock in control_dir(state_dir).glob("*"):
        if re.fullmatch(r"[0-9a-f]{40}", sock.name):  # %C; the forwardings' sockets end with the connection
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "shared"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)


def close_all() -> None:
    while _open:
        _, t = _open.popitem()
        t.close()
