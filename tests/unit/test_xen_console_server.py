"""XenBackend.start_service("console"): xetool's vncterm forked, detached, serving the guest's
console pty over VNC and writing its port to xenstore; console.stop (teardown's) ends it.
No Xen needed: the console is a pty pair, xenstore is xetool's own xenstored on a real socket."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import pytest

from tests.unit.test_vncterm import psf2_font
from xetool.devices import vncauth
from xetool.backends.xen.backend import CmdResult, XenBackend
from xetool.backends.xen.hypercalls import Hypercalls
from xetool.devices import console
from xetool.errors import XeError
from xetool.xenstore.client import XsClient
from xetool.xenstore.server import ThreadedServer

DOMID = 3


class NoHypercalls(Hypercalls):
    def handle(self) -> None:
        return None


def no_commands(argv: Sequence[str], timeout: float, env: Mapping[str, str] | None = None) -> CmdResult:
    raise AssertionError(f"no command expected, got {argv}")


@pytest.fixture
def dom() -> Iterator[tuple[Path, str, int]]:
    """(work dir, xenstored socket, pty master) with the pty as the domain's console/tty."""
    d = Path(tempfile.mkdtemp(prefix="xcon-", dir="/tmp"))
    master, slave = os.openpty()
    try:
        (d / "font.psf").write_bytes(psf2_font())
        with ThreadedServer(d / "xs.sock") as server:
            sock = str(server.server.socket_path)
            with XsClient(sock) as xs:
                xs.write(f"/local/domain/{DOMID}/console/tty", os.ttyname(slave))
            yield d, sock, master
    finally:
        os.close(master)
        os.close(slave)
        shutil.rmtree(d, ignore_errors=True)


def test_console_server_forked_detached_and_stopped(dom: tuple[Path, str, int]) -> None:
    d, sock, master = dom
    backend = XenBackend(no_commands, sock, console_font=str(d / "font.psf"), hypercalls=NoHypercalls())
    sentinel = open(d / "sentinel", "w")  # a descriptor of ours the server must not hold
    log = d / "logs" / "vncterm-3.log"
    secret = d / "consoles" / "vnc-3.passwd"
    vncauth.write_password(str(secret), "xen-pw")
    pid = backend.start_service("console", DOMID, [], log, secret=secret)
    try:
        with XsClient(sock) as xs:
            port = int(xs.wait_until(f"/local/domain/{DOMID}/console/vnc-port", bool, 20) or 0)
            assert xs.wait_until(f"/local/domain/{DOMID}/vncterm-pid", bool, 10) == str(pid)
        assert os.getsid(pid) == pid != os.getsid(0)  # its own session: no terminal, no signals of ours
        fds = {os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")}
        assert str(d / "sentinel") not in fds and str(log) in fds and "/dev/null" in fds
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            with pytest.raises(PermissionError):
                vncauth.client_login(c, "not-it")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            assert vncauth.client_login(c, "xen-pw")[24:] == f"domain {DOMID} console".encode()
        assert "127.0.0.1:" in log.read_text()
    finally:
        sentinel.close()
        assert console.stop(pid)
    assert not console.alive(pid)


def test_unknown_service_is_refused(dom: tuple[Path, str, int]) -> None:
    _d, sock, _master = dom
    with pytest.raises(XeError) as e:
        XenBackend(no_commands, sock, hypercalls=NoHypercalls()).start_service("teleporter", DOMID, [], Path("/nonexistent"))
    assert e.value.code == "INVALID_VALUE"
