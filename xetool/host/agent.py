"""`xetool host-agent`: the host half on its own machine, speaking host/calls.py's protocol on
stdin and stdout (as libvirt's virt-ssh-helper does behind `qemu+ssh://`): it greets with its
protocol version, then answers one request a line, streaming each step's progress before the
result or the registry error. It never opens the master's store; what the host holds lives in
the state directory it is given.

The protocol's descriptors are moved off 0 and 1 first, so that nothing the agent starts (a
simulated host, a console server) can write into the stream or keep it open after the agent
exits (ssh waits for every holder of its pipes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any, BinaryIO


def _protocol_streams() -> tuple[BinaryIO, BinaryIO]:
    """The stream as private descriptors (not inherited), with /dev/null on 0 and 1."""
    rfd, wfd = os.dup(0), os.dup(1)  # os.dup's copies are close-on-exec
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    return os.fdopen(rfd, "rb"), os.fdopen(wfd, "wb")


def serve(state_dir: Path, reader: BinaryIO | None = None, writer: BinaryIO | None = None,
          daemon_pid: int = 0) -> None:
    from xetool import __version__
    from xetool.host.calls import PROTOCOL, dispatch, error_message

    if reader is None or writer is None:
        reader, writer = _protocol_streams()

    def send(message: dict[str, Any]) -> None:
        writer.write(json.dumps(message).encode() + b"\n")
        writer.flush()

    hello: dict[str, Any] = {"protocol": PROTOCOL, "xetool": __version__}
    if daemon_pid:  # the long-running agent's, and its code: `listen` replaces it after an upgrade
        hello["pid"], hello["code"] = daemon_pid, _STAMP
    send({"hello": hello})
    for line in iter(reader.readline, b""):
        try:
            request = json.loads(line)
            ident = request["id"]
        except (ValueError, TypeError, KeyError):
            from xetool.errors import XeError

            send({"id": None, "error": error_message(XeError("INTERNAL_ERROR", f"not a request: {line[:200]!r}"))})
            continue

        def emit(event: dict[str, Any], ident: Any = ident) -> None:
            send({"id": ident, **event})

        try:
            send(dispatch(state_dir, request, emit))
        except Exception as err:  # a bug in a handler: reported as one, and the agent goes on
            from xetool.errors import XeError

            send({"id": ident, "error": error_message(XeError("INTERNAL_ERROR", f"{type(err).__name__}: {err}"))})


# --- the long-running agent ----------------------------------------------------------------------
# A request should not pay an interpreter's start-up on the host (under emulation that alone is
# seconds). So the agent can also stay running, as libvirtd does behind virt-ssh-helper: one
# process per host and user that listens on a Unix socket in the state directory, with the host
# half's modules loaded, and forks a child to serve each connection. The master reaches that
# socket through its shared SSH connection's stream forwarding (master/ssh.py), so a command
# opens no SSH session and starts no process on the host.

_STAMP = ""  # the long-running agent's code_stamp() when it started


# every module a request may import on the host (a fork inherits them: under emulation each
# import costs tens of milliseconds), Xen's own binding of libxenctrl among them
PRELOAD = ("xetool.host.calls", "xetool.host.handlers", "xetool.host.vm_start", "xetool.host.side",
           "xetool.host.memory", "xetool.host.teardown", "xetool.host.backend", "xetool.host.env",
           "xetool.host.inventory", "xetool.host.runtime", "xetool.host.locks", "xetool.host.parameters",
           "xetool.steps", "xetool.units", "xetool.storage.file_sr", "xetool.xenstore.client",
           "xetool.devices.domain", "xetool.devices.vbd", "xetool.devices.vif", "xetool.devices.console",
           "xetool.devices.bootloader", "xetool.devices.vncauth", "xetool.backends.simulator.backend",
           "xetool.backends.simulator.liveness", "xetool.backends.xen.backend", "xetool.backends.xen.vncterm",
           "xetool.backends.xen.hypercalls")


def code_stamp() -> str:
    """The xetool code on disk, as a digest of its modules' sizes and times: a long-running
    agent whose code was replaced (an upgrade, a developer's edit) makes way for a new one."""
    import hashlib

    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha1()
    for d, dirs, files in sorted(os.walk(root)):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            st = os.stat(os.path.join(d, name))
            h.update(f"{d}/{name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def agent_socket(state_dir: Path) -> Path:
    """The long-running agent's socket: in the state directory, or a short /tmp directory when
    that path is too long for a socket (paths.socket_dir)."""
    from xetool.paths import socket_dir

    return socket_dir(state_dir, len("agent.sock")) / "agent.sock"


def _greeting(sock_path: Path, timeout: float = 5.0) -> dict[str, Any] | None:
    """The hello of the agent listening there, or None if none answers."""
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(sock_path))
        line = s.makefile("rb").readline()
        hello: dict[str, Any] = json.loads(line)["hello"]
        return hello
    except (OSError, ValueError, KeyError, TypeError):
        return None
    finally:
        s.close()


def listen(state_dir: Path, wait: float = 60.0) -> dict[str, Any]:
    """`xetool host-agent --listen`: make sure this host's long-running agent runs (and runs the
    code on disk: one left from before an upgrade is replaced), and say where it listens."""
    import signal
    import subprocess
    import sys
    import time

    from xetool import __version__
    from xetool.errors import XeError
    from xetool.host.calls import PROTOCOL

    path = agent_socket(state_dir)
    hello = _greeting(path)
    stamp = code_stamp()
    if hello is not None and hello.get("code") != stamp and hello.get("pid"):
        try:
            os.kill(int(hello["pid"]), signal.SIGTERM)
        except ProcessLookupError:
            pass
        hello = None
    if hello is None:
        log = os.fdopen(os.open(state_dir / "agent.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
        subprocess.Popen([sys.executable, "-m", "xetool", "host-agent", "--daemon", f"--state-dir={state_dir}"],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True)
        log.close()
        deadline = time.monotonic() + wait
        while (hello := _greeting(path)) is None or hello.get("code") != stamp:
            if time.monotonic() > deadline:
                raise XeError("HOST_OFFLINE", os.uname().nodename,
                              reason=f"the long-running agent did not start listening on {path} within {wait:.0f} s "
                              f"(see {state_dir / 'agent.log'})")
            time.sleep(0.05)
    return {"socket": str(path), "protocol": PROTOCOL, "xetool": __version__, "pid": hello.get("pid")}


def stop(state_dir: Path, wait: float = 10.0) -> str:
    """`xetool host-agent --stop`: stop the long-running agent (the connections it serves finish)."""
    import signal
    import time

    hello = _greeting(agent_socket(state_dir))
    if hello is None or not hello.get("pid"):
        return "No long-running agent runs here."
    pid = int(hello["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "No long-running agent runs here."
    deadline = time.monotonic() + wait
    while _greeting(agent_socket(state_dir), 1.0) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    return f"Stopped the long-running agent (pid {pid})."


def daemon(state_dir: Path) -> None:
    """The long-running agent: the host half loaded once, a forked child per connection. Only
    this user's processes are served (SO_PEERCRED); one agent runs per state directory."""
    import fcntl
    import importlib
    import signal
    import socket
    import time

    from xetool.backends.simulator.control import peer_uid
    from xetool.paths import make_private_dirs

    global _STAMP
    _STAMP = code_stamp()
    lock = os.fdopen(os.open(state_dir / "agent.lock", os.O_WRONLY | os.O_CREAT, 0o600), "w")
    deadline = time.monotonic() + 10
    while True:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:  # another one runs: this code's, or an old one on its way out
            hello = _greeting(agent_socket(state_dir), 1.0)
            if (hello is not None and hello.get("code") == _STAMP) or time.monotonic() > deadline:
                lock.close()
                return
            time.sleep(0.05)
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # what this host cannot load (Xen's bindings elsewhere) loads per request, and fails there
            pass
    from xetool.backends.xen.hypercalls import preload

    preload()
    path = agent_socket(state_dir)
    make_private_dirs(path.parent)
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old)
    bound = os.stat(path).st_ino  # (a socket's fstat names sockfs, not the file)
    listener.listen(64)
    daemon_pid = os.getpid()
    listener.settimeout(1.0)
    watch = _CodeWatch(_STAMP)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    try:
        while not stopping:
            _reap()
            try:
                conn, _ = listener.accept()
            except (TimeoutError, InterruptedError):
                if watch.replaced(handed_off=False):
                    break
                continue
            if peer_uid(conn) != os.getuid():
                conn.close()
                continue
            if os.fork() == 0:
                _child(state_dir, listener, lock, conn, daemon_pid)
            conn.close()
            # after the hand-off, not before it: the look at the code on disk is a walk over
            # the package (a second under the lab's emulation, over 9p). Replaced: this
            # connection is served by the code it reached, and the next `listen` starts the new
            if watch.replaced(handed_off=True):
                break
    finally:
        if _bound_here(path, bound):
            path.unlink(missing_ok=True)
        listener.close()
        lock.close()


class _CodeWatch:
    """Whether the code on disk is still the agent's: looked at once after connections were
    handed off (at most every few seconds: a walk over a 9p share is slow), never while nobody
    calls."""

    EVERY = 2.0

    def __init__(self, stamp: str) -> None:
        self.stamp, self.seen, self.due = stamp, 0.0, False

    def replaced(self, handed_off: bool) -> bool:
        import time

        self.due = self.due or handed_off
        now = time.monotonic()
        if not self.due or now - self.seen < self.EVERY:
            return False
        self.seen, self.due = now, False
        return code_stamp() != self.stamp


def _bound_here(path: Path, inode: int) -> bool:
    """The socket file is still the one this agent bound (not a newer agent's)."""
    try:
        return os.stat(path).st_ino == inode
    except OSError:
        return False


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _child(state_dir: Path, listener: Any, lock: Any, conn: Any, daemon_pid: int) -> None:
    """One connection, served by a fork of the long-running agent; never returns."""
    import signal

    status = 0
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        listener.close()
        lock.close()
        conn.settimeout(None)
        serve(state_dir, conn.makefile("rb"), conn.makefile("wb"), daemon_pid)
    except BaseException:  # nosec: a connection that broke; the parent goes on
        status = 1
    finally:
        os._exit(status)
